//! The flow of one ticket: triage → reply → escalation → checks → gate → commit.
//!
//! Plugins propose; this module validates, gates, and hands the result to the committer,
//! which makes it durable together with its audit records.

pub mod checks;
/// The committer lives in the store crate (it is the one writer of decisions).
pub use deskhost_store::commit;
pub mod gate;

use crate::audit::AuditEntry;
use crate::bindings::types;
use crate::caps::{Answers, HostCall, RunScope, Services};
use crate::config::WorkspaceConfig;
use crate::manifest::PolicyKind;
use crate::records::{TicketRecord, redact_ticket};
use crate::runtime::convert;
use crate::runtime::fault::{Fault, FaultKind};
use crate::runtime::{Invocation, LoadedPlugin, PolicyInput, PolicyOutput, Runtime};
use crate::store::{Claim, WorkerId};
use crate::util::{new_id, now_rfc3339};
use arc_swap::ArcSwap;
use commit::{Committed, Committer, NewReview, RunBundle, ShadowRow, StageRow};
use deskhost_protocol::json::JsonText;
use deskhost_protocol::outbox::Outgoing;
use deskhost_protocol::proposal::{EscalationPacket, ReplyProposal, TriageProposal};
use deskhost_protocol::run::{
    GateOutcome, GateReport, PluginRef, ReviewPayload, ReviewRef, RunInputs, RunLine, RunRecord,
    ShadowRef, StageFault, StageOutcome, StageReport,
};
use gate::{GateDecision, GateInput};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Errors that stop a ticket from being decided at all (plugin faults do not: they go to
/// review).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The ticket version is not in the store.
    #[error("ticket {0} version {1} is not in the store")]
    UnknownTicket(String, u32),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The committer failed; the ticket stays pending and is decided on the next run.
    #[error("could not store the decision for ticket {ticket}: {message}; it stays pending")]
    Commit {
        /// Ticket.
        ticket: String,
        /// Why.
        message: String,
    },
}

/// The line for a version this process could not claim.
pub fn unclaimed_line(ticket_id: &str, version: u32, claim: Option<&Claim>) -> RunLine {
    match claim {
        Some(Claim::Done) => RunLine::AlreadyDecided {
            ticket_id: ticket_id.to_string(),
            ticket_version: version,
        },
        Some(Claim::Held { owner, until_ms }) => RunLine::Error {
            ticket_id: ticket_id.to_string(),
            ticket_version: version,
            error: format!(
                "ticket {} version {version} is being decided by worker {} (its lease runs {} s more); it stays pending",
                crate::sanitize::field(ticket_id),
                crate::sanitize::field(owner),
                (until_ms - crate::store::unix_ms()).max(0) / 1000
            ),
        },
        _ => RunLine::Error {
            ticket_id: ticket_id.to_string(),
            ticket_version: version,
            error: format!("ticket {ticket_id} version {version} is not in the work queue"),
        },
    }
}

/// The active plugin of each slot.
#[derive(Clone)]
pub struct ActivePlugins {
    /// Triage (required).
    pub triage: Arc<LoadedPlugin>,
    /// Reply.
    pub reply: Option<Arc<LoadedPlugin>>,
    /// Escalation.
    pub escalation: Option<Arc<LoadedPlugin>>,
    /// Shadow candidates per slot: run beside the active plugin, never applied.
    pub shadow: BTreeMap<PolicyKind, Arc<LoadedPlugin>>,
    /// The slot event these plugins reflect (0: deskhost.toml only).
    pub seq: i64,
}

impl ActivePlugins {
    /// The plugins in pipeline order with their slots.
    pub fn iter(&self) -> impl Iterator<Item = (PolicyKind, &Arc<LoadedPlugin>)> {
        std::iter::once((PolicyKind::Triage, &self.triage))
            .chain(self.reply.iter().map(|p| (PolicyKind::Reply, p)))
            .chain(self.escalation.iter().map(|p| (PolicyKind::Escalation, p)))
    }
}

/// Decides tickets.
#[derive(Clone)]
pub struct Pipeline {
    /// The engine.
    pub runtime: Arc<Runtime>,
    /// Data sources for capabilities.
    pub services: Arc<Services>,
    /// Workspace config.
    pub config: Arc<WorkspaceConfig>,
    /// sha256 of `deskhost.toml`.
    pub config_hash: String,
    /// Active plugins: swapped atomically while tickets are decided; a ticket runs on the
    /// snapshot it started with.
    pub plugins: Arc<ArcSwap<ActivePlugins>>,
    committer: Committer,
    worker: WorkerId,
    /// This process's decision counters and latencies (`GET /metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// The result of one stage.
pub struct StageRun {
    /// Which stage.
    pub stage: PolicyKind,
    /// The exact input (WIT values as JSON text), for replay.
    pub input: JsonText,
    /// The plugin that ran.
    pub plugin: Arc<LoadedPlugin>,
    /// Its output or fault, stats and host calls.
    pub invocation: Invocation,
    /// Problems found by the host checks (the output is then not used).
    pub problems: Vec<String>,
}

/// What the policies proposed for one ticket, after the host checks.
pub struct Proposals {
    /// The run's scope: articles returned, CRM versions read.
    pub scope: RunScope,
    /// The stages that ran, in order.
    pub stages: Vec<StageRun>,
    /// The triage decision, if valid.
    pub triage: Option<types::TriageDecision>,
    /// The reply proposal, if valid.
    pub reply: Option<types::ReplyProposal>,
    /// The escalation packet, if valid.
    pub escalation: Option<types::EscalationSummary>,
}

/// When the escalation policy runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EscalationMode {
    /// When the triage decision asks for it (production).
    WhenRequested,
    /// Always (evaluating hand-off summaries).
    Always,
}

impl StageRun {
    /// The output, if it passed the host checks.
    pub fn valid_output(&self) -> Option<&PolicyOutput> {
        match &self.invocation.result {
            Ok(o) if self.problems.is_empty() => Some(o),
            _ => None,
        }
    }

    /// The fault, including a failed host check as `invalid-output`.
    pub fn fault(&self) -> Option<Fault> {
        match &self.invocation.result {
            Err(f) => Some(f.clone()),
            Ok(_) if !self.problems.is_empty() => Some(Fault::new(
                FaultKind::InvalidOutput,
                self.problems.join("; "),
            )),
            Ok(_) => None,
        }
    }

    /// What the stage proposed, as recorded (also when the checks refused it).
    fn proposal(&self) -> Option<Proposal> {
        self.invocation.result.as_ref().ok().map(|o| match o {
            PolicyOutput::Triage(d) => Proposal::Triage(convert::triage_proposal(d)),
            PolicyOutput::Reply(r) => Proposal::Reply(convert::reply_proposal(r)),
            PolicyOutput::Escalation(e) => Proposal::Escalation(convert::escalation_packet(e)),
        })
    }

    fn proposal_json(&self) -> Option<JsonText> {
        self.proposal().map(|p| JsonText::of(&p))
    }

    fn outcome(&self) -> StageOutcome {
        self.fault()
            .map_or(StageOutcome::Ok, |f| StageOutcome::Fault(f.kind))
    }

    /// The stage as a run record reports it, with its proposal picked by `pick`.
    fn report<P>(&self, pick: impl FnOnce(Proposal) -> Option<P>) -> StageReport<P> {
        StageReport {
            plugin: self.plugin.identity.key(),
            outcome: self.outcome(),
            proposal: self.proposal().and_then(pick),
            fault: self.fault(),
            stats: self.invocation.stats.clone(),
        }
    }
}

/// A stage's proposal, whichever kind.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Proposal {
    Triage(TriageProposal),
    Reply(ReplyProposal),
    Escalation(EscalationPacket),
}

/// What `decide` returns.
#[derive(Debug, Clone)]
pub struct TicketOutcome {
    /// The run (one line of `deskhost run` output).
    pub record: RunRecord,
    /// Gate outcome.
    pub outcome: GateOutcome,
    /// Faulted stages as (stage, kind).
    pub faults: Vec<(String, FaultKind)>,
    /// Whether an escalation packet was produced.
    pub escalated: bool,
    /// Whether the reply policy abstained.
    pub abstained: bool,
    /// Host calls made across stages.
    pub host_calls: u32,
    /// Already decided by an earlier run (nothing written).
    pub already_decided: bool,
}

impl Pipeline {
    /// A pipeline over loaded plugins; starts the committer (needs a tokio runtime).
    pub fn new(
        runtime: Arc<Runtime>,
        services: Arc<Services>,
        config: Arc<WorkspaceConfig>,
        config_hash: String,
        plugins: ActivePlugins,
    ) -> Self {
        let committer = Committer::start(services.store.clone());
        Self {
            runtime,
            services,
            config,
            config_hash,
            plugins: Arc::new(ArcSwap::from_pointee(plugins)),
            committer,
            worker: WorkerId::current(),
            metrics: Arc::default(),
        }
    }

    async fn stage(
        &self,
        stage: PolicyKind,
        plugin: &Arc<LoadedPlugin>,
        scope: &RunScope,
        input: PolicyInput<'_>,
        answers: Answers,
    ) -> StageRun {
        let input_json = JsonText::of(&input);
        let invocation = self
            .runtime
            .invoke(plugin, self.services.clone(), scope.clone(), input, answers)
            .await;
        let problems = match &invocation.result {
            Ok(PolicyOutput::Triage(d)) => checks::triage(d, &self.config.taxonomy).0,
            Ok(PolicyOutput::Reply(r)) => {
                let seen = scope
                    .articles_seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                checks::reply(r, &seen).0
            }
            Ok(PolicyOutput::Escalation(e)) => {
                let seen = scope
                    .articles_seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                checks::escalation(e, &self.config.taxonomy, &seen).0
            }
            Err(_) => Vec::new(),
        };
        StageRun {
            stage,
            input: input_json,
            plugin: plugin.clone(),
            invocation,
            problems,
        }
    }

    /// The same pipeline with `plugin` in its slot (a candidate for evaluation).
    pub fn with_plugin(&self, plugin: Arc<LoadedPlugin>) -> Pipeline {
        let mut plugins = (*self.active()).clone();
        match plugin.identity.kind {
            PolicyKind::Triage => plugins.triage = plugin,
            PolicyKind::Reply => plugins.reply = Some(plugin),
            PolicyKind::Escalation => plugins.escalation = Some(plugin),
        }
        let mut next = self.clone();
        next.plugins = Arc::new(ArcSwap::from_pointee(plugins));
        next
    }

    /// The current plugins (what a ticket starting now runs on).
    pub fn active(&self) -> Arc<ActivePlugins> {
        self.plugins.load_full()
    }

    /// Switches to `plugins` for tickets that start from now on.
    pub fn swap(&self, plugins: ActivePlugins) {
        self.plugins.store(Arc::new(plugins));
    }

    /// The KB collections the reply policy searches (where retrieval is measured).
    pub fn retrieval_collections(&self) -> Vec<String> {
        self.active()
            .reply
            .as_ref()
            .and_then(|p| p.identity.grants.kb.as_ref())
            .map(|g| g.collections.clone())
            .unwrap_or_else(|| vec!["public".into()])
    }

    /// Runs the policies on `ticket` and checks their proposals; applies nothing, writes
    /// nothing. `decide` and `deskhost eval` both go through here.
    pub async fn propose(
        &self,
        plugins: &ActivePlugins,
        ticket: Arc<TicketRecord>,
        scope: RunScope,
        mode: EscalationMode,
    ) -> Proposals {
        let mut stages: Vec<StageRun> = Vec::new();

        let triage_plugin = &plugins.triage;
        let triage_ticket = redact_ticket(&ticket, &triage_plugin.identity.grants);
        let triage = self
            .stage(
                PolicyKind::Triage,
                triage_plugin,
                &scope,
                PolicyInput::Triage {
                    ticket: &triage_ticket,
                },
                Answers::Live,
            )
            .await;
        let decision: Option<types::TriageDecision> = match triage.valid_output() {
            Some(PolicyOutput::Triage(d)) => Some(d.clone()),
            _ => None,
        };
        stages.push(triage);

        let mut reply: Option<types::ReplyProposal> = None;
        if let (Some(d), Some(plugin)) = (&decision, &plugins.reply)
            && !self
                .config
                .pipeline
                .no_reply_categories
                .contains(&d.category.value)
        {
            let t = redact_ticket(&ticket, &plugin.identity.grants);
            let run = self
                .stage(
                    PolicyKind::Reply,
                    plugin,
                    &scope,
                    PolicyInput::Reply {
                        ticket: &t,
                        triage: d,
                    },
                    Answers::Live,
                )
                .await;
            if let Some(PolicyOutput::Reply(r)) = run.valid_output() {
                reply = Some(r.clone());
            }
            stages.push(run);
        }

        let mut escalation: Option<types::EscalationSummary> = None;
        let escalated = decision.as_ref().and_then(|d| match (&d.escalate, mode) {
            (Some(_), _) => Some(d.clone()),
            (None, EscalationMode::WhenRequested) => None,
            (None, EscalationMode::Always) => Some(types::TriageDecision {
                escalate: Some(types::EscalationRequest {
                    code: "evaluation".into(),
                    detail: "hand-off packet requested by deskhost eval".into(),
                    evidence: Vec::new(),
                }),
                ..d.clone()
            }),
        });
        if let (Some(d), Some(plugin)) = (&escalated, &plugins.escalation) {
            let t = redact_ticket(&ticket, &plugin.identity.grants);
            let input = PolicyInput::Escalation {
                ticket: &t,
                triage: d,
                reply: reply.as_ref(),
            };
            let run = self
                .stage(PolicyKind::Escalation, plugin, &scope, input, Answers::Live)
                .await;
            if let Some(PolicyOutput::Escalation(e)) = run.valid_output() {
                escalation = Some(e.clone());
            }
            stages.push(run);
        }

        Proposals {
            scope,
            stages,
            triage: decision,
            reply,
            escalation,
        }
    }

    /// Runs the shadow candidates beside the active plugins: same ticket, same upstream
    /// proposals, capability reads answered from the incumbent's transcript (live and
    /// read-only where it made no such call), in a scope of their own so nothing they read
    /// changes the run's record. Their proposals are checked and stored, never applied.
    async fn shadows(
        &self,
        plugins: &ActivePlugins,
        ticket: &Arc<TicketRecord>,
        proposals: &Proposals,
    ) -> Vec<StageRun> {
        let mut out = Vec::new();
        for (slot, plugin) in &plugins.shadow {
            let recorded: Vec<HostCall> = proposals
                .stages
                .iter()
                .find(|s| s.stage == *slot)
                .map(|s| s.invocation.calls.clone())
                .unwrap_or_default();
            let answers = Answers::Recorded {
                calls: Arc::new(recorded),
                live_fallback: true,
            };
            let scope = proposals.scope.fork();
            let t = redact_ticket(ticket, &plugin.identity.grants);
            let input = match slot {
                PolicyKind::Triage => PolicyInput::Triage { ticket: &t },
                PolicyKind::Reply => match &proposals.triage {
                    Some(d) => PolicyInput::Reply {
                        ticket: &t,
                        triage: d,
                    },
                    None => continue,
                },
                PolicyKind::Escalation => match &proposals.triage {
                    Some(d) if d.escalate.is_some() => PolicyInput::Escalation {
                        ticket: &t,
                        triage: d,
                        reply: proposals.reply.as_ref(),
                    },
                    _ => continue,
                },
            };
            out.push(self.stage(*slot, plugin, &scope, input, answers).await);
        }
        out
    }

    /// Claims one ticket version for this process and decides it as a line of output, for
    /// a caller that must answer with the decision (`POST /v1/tickets?wait=true`) while
    /// background workers share the queue: a version another worker holds is waited for (up
    /// to `patience`) and the decision it committed is returned; one decided before is
    /// returned as stored. Otherwise an error line (the version stays pending).
    pub async fn decide_or_wait(
        &self,
        ticket_id: &str,
        version: u32,
        patience: Duration,
    ) -> RunLine {
        let deadline = Instant::now() + patience;
        let store = &self.services.store;
        let error = |e: String| RunLine::Error {
            ticket_id: ticket_id.to_string(),
            ticket_version: version,
            error: e,
        };
        loop {
            let claims = store
                .claim(
                    &self.worker,
                    &[(ticket_id.to_string(), version)],
                    self.lease(),
                )
                .await;
            match claims.as_deref() {
                // Unknown: decide reports the missing version itself.
                Ok([Claim::Claimed | Claim::Unknown]) => {
                    return self.decide_claimed_line(ticket_id, version).await;
                }
                Ok([Claim::Done]) => {
                    return match store.version_state(ticket_id, version).await {
                        Ok(Some((_, Some(text)))) => {
                            serde_json::from_str(&text).unwrap_or_else(|e| {
                                error(format!("the stored decision does not decode: {e}"))
                            })
                        }
                        Ok(_) => unclaimed_line(ticket_id, version, Some(&Claim::Done)),
                        Err(e) => error(e.to_string()),
                    };
                }
                Ok([Claim::Held { until_ms, .. }]) if Instant::now() < deadline => {
                    // Wait by reading (a claim is a write transaction) until the holder has
                    // committed or its lease may have run out, then claim again.
                    loop {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        let done = matches!(
                            store.version_state(ticket_id, version).await,
                            Ok(Some((state, _))) if state == "done"
                        );
                        if done
                            || crate::store::unix_ms() >= *until_ms
                            || Instant::now() >= deadline
                        {
                            break;
                        }
                    }
                }
                Ok(other) => return unclaimed_line(ticket_id, version, other.first()),
                Err(e) => return error(e.to_string()),
            }
        }
    }

    /// Decides a ticket version this process has claimed (see [`Store::claim`]) as a line
    /// of output; on an error the claim is given back so another worker may try.
    ///
    /// [`Store::claim`]: crate::store::Store::claim
    pub async fn decide_claimed_line(&self, ticket_id: &str, version: u32) -> RunLine {
        let line = self.decide_claimed(ticket_id, version, None).await;
        self.metrics.observe(&line);
        line
    }

    /// [`Pipeline::decide_claimed_line`] of a claimed version already read (a batch read
    /// with [`Store::tickets`]: one statement for many tickets instead of one each).
    ///
    /// [`Store::tickets`]: crate::store::Store::tickets
    pub async fn decide_claimed_record(&self, ticket: TicketRecord) -> RunLine {
        let (id, version) = (ticket.input.id.clone(), ticket.version);
        let line = self.decide_claimed(&id, version, Some(ticket)).await;
        self.metrics.observe(&line);
        line
    }

    /// [`Pipeline::decide_claimed_record`] (or, with nothing read, the line read by id) in
    /// a task of its own, so the plugins of tickets decided at once run on every core; a
    /// task that panicked is an error line (its claim runs out with its lease).
    pub async fn decide_claimed_in_task(
        &self,
        ticket_id: String,
        version: u32,
        read: Option<TicketRecord>,
    ) -> RunLine {
        let pipeline = self.clone();
        let task = tokio::spawn({
            let ticket_id = ticket_id.clone();
            async move {
                match read {
                    Some(ticket) => pipeline.decide_claimed_record(ticket).await,
                    None => pipeline.decide_claimed_line(&ticket_id, version).await,
                }
            }
        });
        task.await.unwrap_or_else(|e| RunLine::Error {
            ticket_id,
            ticket_version: version,
            error: format!("deciding stopped: {e}"),
        })
    }

    async fn decide_claimed(
        &self,
        ticket_id: &str,
        version: u32,
        read: Option<TicketRecord>,
    ) -> RunLine {
        let decided = match read {
            Some(ticket) => self.decide_record(Arc::new(ticket)).await,
            None => self.decide(ticket_id, version).await,
        };
        match decided {
            Ok(o) if o.already_decided => RunLine::AlreadyDecided {
                ticket_id: ticket_id.to_string(),
                ticket_version: version,
            },
            Ok(o) => RunLine::Decided(Box::new(o.record)),
            Err(e) => {
                let _ = self
                    .services
                    .store
                    .release(&self.worker, ticket_id, version)
                    .await;
                RunLine::Error {
                    ticket_id: ticket_id.to_string(),
                    ticket_version: version,
                    error: e.to_string(),
                }
            }
        }
    }

    /// The lease a claim takes (`[store] lease_seconds`).
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.config.store.lease_seconds)
    }

    /// This process's identity on the work queue.
    pub fn worker(&self) -> &WorkerId {
        &self.worker
    }

    /// The same pipeline (same plugins, following the same swaps) claiming as `worker`.
    pub fn as_worker(&self, worker: WorkerId) -> Pipeline {
        Pipeline {
            worker,
            ..self.clone()
        }
    }

    /// Renews this process's leases every third of a lease until the handle is aborted, so
    /// long batches keep their claims and a killed process's claims run out.
    pub fn keep_leases(&self) -> tokio::task::JoinHandle<()> {
        let store = self.services.store.clone();
        let worker = self.worker.clone();
        let lease = self.lease();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(lease / 3);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = store.renew_leases(&worker, lease).await {
                    tracing::warn!("cannot renew leases: {e}");
                }
            }
        })
    }

    /// Decides one ticket version and commits the decision.
    pub async fn decide(
        &self,
        ticket_id: &str,
        version: u32,
    ) -> Result<TicketOutcome, PipelineError> {
        let ticket = self
            .services
            .store
            .ticket(ticket_id, version)
            .await?
            .ok_or_else(|| PipelineError::UnknownTicket(ticket_id.to_string(), version))?;
        self.decide_record(Arc::new(ticket)).await
    }

    /// Decides a ticket version already read from the store and commits the decision.
    #[tracing::instrument(
        name = "decide",
        skip_all,
        fields(ticket = %ticket.input.id, version = ticket.version, run_id = tracing::field::Empty)
    )]
    pub async fn decide_record(
        &self,
        ticket: Arc<TicketRecord>,
    ) -> Result<TicketOutcome, PipelineError> {
        let started = Instant::now();
        let started_at = now_rfc3339();
        let run_id = new_id("run");
        tracing::Span::current().record("run_id", run_id.as_str());
        let plugins = self.active();
        let scope = RunScope::new(run_id.clone(), ticket.clone());
        // A ticket with nothing to read is not guessed at: a human opens it (attachments,
        // a channel that lost the text).
        let blank = ticket.input.is_blank();
        let proposals = if blank {
            Proposals {
                scope,
                stages: Vec::new(),
                triage: None,
                reply: None,
                escalation: None,
            }
        } else {
            self.propose(
                &plugins,
                ticket.clone(),
                scope,
                EscalationMode::WhenRequested,
            )
            .await
        };
        let shadows = if blank {
            Vec::new()
        } else {
            self.shadows(&plugins, &ticket, &proposals).await
        };
        let Proposals {
            scope,
            stages,
            triage: decision,
            reply,
            escalation,
        } = proposals;

        // The host reads the tier itself: the gate must not depend on what a plugin was granted.
        let customer_tier = match ticket.input.customer_id.as_deref() {
            Some(id) => self
                .services
                .store
                .customer(id)
                .await?
                .and_then(|(c, _)| c.tier),
            None => None,
        };
        let faults: Vec<(String, FaultKind, String)> = stages
            .iter()
            .filter_map(|s| {
                s.fault()
                    .map(|f| (s.stage.as_str().to_string(), f.kind, f.message))
            })
            .collect();
        let gate_input = GateInput {
            triage: decision.as_ref(),
            reply: reply.as_ref(),
            escalation: escalation.as_ref(),
            faults,
            customer_tier,
        };
        let mut gated = gate::decide(&self.config.gate, &gate_input);
        if blank {
            gated.reasons.insert(0, gate::ReviewReason::empty_ticket());
        }
        let outcome = match (gated.apply.is_empty(), gated.reasons.is_empty()) {
            (_, true) => GateOutcome::Applied,
            (true, false) => GateOutcome::Review,
            (false, false) => GateOutcome::AppliedAndReview,
        };
        let review_id = (!gated.reasons.is_empty()).then(|| new_id("rev"));

        let crm_versions = scope
            .crm_versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let inputs = RunInputs {
            ticket_id: ticket.input.id.clone(),
            ticket_version: ticket.version,
            ticket_content_hash: ticket.content_hash.clone(),
            clock_ms: scope.clock_ms,
            shadow: plugins
                .shadow
                .iter()
                .map(|(slot, p)| ShadowRef {
                    slot: slot.as_str().into(),
                    plugin: p.identity.key(),
                })
                .collect(),
            plugins: plugins
                .iter()
                .map(|(slot, p)| PluginRef {
                    slot: slot.as_str().into(),
                    plugin: p.identity.key(),
                    digest: p.identity.digest.clone(),
                    config_digest: p.identity.config_digest.clone(),
                })
                .collect(),
            kb_index_version: self.services.kb.version().to_string(),
            config_hash: self.config_hash.clone(),
            crm_versions: crm_versions.into_iter().collect(),
            // What the plugins saw is shorter than the ticket: say what was left out.
            cuts: crate::records::plugin_cuts(&ticket.input),
        };
        let stage = |kind: PolicyKind| stages.iter().find(|s| s.stage == kind);
        let record = RunRecord {
            ticket_id: ticket.input.id.clone(),
            ticket_version: ticket.version,
            run_id: run_id.clone(),
            triage: stage(PolicyKind::Triage).map(|s| {
                s.report(|p| match p {
                    Proposal::Triage(t) => Some(t),
                    _ => None,
                })
            }),
            reply: stage(PolicyKind::Reply).map(|s| {
                s.report(|p| match p {
                    Proposal::Reply(r) => Some(r),
                    _ => None,
                })
            }),
            escalation: stage(PolicyKind::Escalation).map(|s| {
                s.report(|p| match p {
                    Proposal::Escalation(e) => Some(e),
                    _ => None,
                })
            }),
            gate: GateReport {
                outcome,
                applied: gated.apply.clone(),
                held: gated.held.clone(),
                review: review_id.as_ref().map(|id| ReviewRef {
                    item_id: id.clone(),
                    reasons: gated.reasons.clone(),
                }),
            },
            inputs,
            elapsed_us: started.elapsed().as_micros() as u64,
        };
        let bundle = self.bundle(&record, &ticket, started_at, &stages, &shadows, &gated);
        let host_calls = stages.iter().map(|s| s.invocation.calls.len() as u32).sum();
        let faults = stages
            .iter()
            .filter_map(|s| s.fault().map(|f| (s.stage.as_str().to_string(), f.kind)))
            .collect();
        let committed =
            self.committer
                .commit(bundle)
                .await
                .map_err(|message| PipelineError::Commit {
                    ticket: ticket.input.id.clone(),
                    message,
                })?;
        tracing::debug!(
            outcome = record.gate.outcome.as_str(),
            elapsed_us = record.elapsed_us,
            "decided"
        );
        Ok(TicketOutcome {
            record,
            outcome,
            faults,
            escalated: escalation.is_some(),
            abstained: matches!(reply, Some(types::ReplyProposal::Abstain(_))),
            host_calls,
            already_decided: committed == Committed::AlreadyDecided,
        })
    }

    fn bundle(
        &self,
        record: &RunRecord,
        ticket: &TicketRecord,
        started_at: String,
        stages: &[StageRun],
        shadows: &[StageRun],
        gated: &GateDecision,
    ) -> RunBundle {
        let run_id = record.run_id.as_str();
        let inputs = JsonText::of(&record.inputs);
        let mut audit = vec![AuditEntry::run(run_id, "run-inputs", inputs.clone())];
        let mut rows = Vec::new();
        for s in stages {
            let identity = &s.plugin.identity;
            let fault = audit_stage(run_id, s.stage.as_str(), s, &mut audit);
            rows.push(StageRow {
                stage: s.stage.as_str().into(),
                plugin: identity.key(),
                digest: identity.digest.clone(),
                outcome: s.outcome().as_str().into(),
                proposal: s.proposal_json(),
                fault: fault.map(|f| JsonText::of(&f)),
                stats: JsonText::of(&s.invocation.stats),
                transcript: JsonText::of(&TranscriptRecord {
                    calls: &s.invocation.calls,
                    logs: &s.invocation.logs,
                    stderr: &s.invocation.stderr,
                }),
                input: s.input.clone(),
                output: s.invocation.result.as_ref().ok().map(JsonText::of),
            });
        }
        let mut shadow_rows = Vec::new();
        for s in shadows {
            let identity = &s.plugin.identity;
            let fault = audit_stage(run_id, &format!("shadow:{}", s.stage), s, &mut audit);
            shadow_rows.push(ShadowRow {
                slot: s.stage.as_str().into(),
                plugin: identity.key(),
                digest: identity.digest.clone(),
                outcome: s.outcome().as_str().into(),
                proposal: s.proposal_json(),
                fault: fault.map(|f| JsonText::of(&f)),
                stats: JsonText::of(&s.invocation.stats),
            });
        }
        let review_id = record.gate.review.as_ref().map(|r| r.item_id.clone());
        audit.push(AuditEntry::run(
            run_id,
            "decision",
            JsonText::of(&DecisionRecord {
                outcome: record.gate.outcome,
                applied: &gated.apply,
                held: &gated.held,
                reasons: &gated.reasons,
                review_item: review_id.as_deref(),
            }),
        ));
        let review = review_id.map(|id| NewReview {
            id,
            reasons: JsonText::of(&gated.reasons),
            payload: JsonText::of(&ReviewPayload {
                triage: record.triage.as_ref().and_then(|s| s.proposal.clone()),
                reply: record.reply.as_ref().and_then(|s| s.proposal.clone()),
                escalation: record.escalation.as_ref().and_then(|s| s.proposal.clone()),
                held_effects: gated.held.clone(),
                faults: stages
                    .iter()
                    .filter_map(|s| {
                        s.fault().map(|fault| StageFault {
                            stage: s.stage.as_str().into(),
                            fault,
                        })
                    })
                    .collect(),
            }),
        });
        RunBundle {
            run_id: run_id.to_string(),
            ticket_id: ticket.input.id.clone(),
            ticket_version: ticket.version,
            started_at,
            outcome: record.gate.outcome.as_str().to_string(),
            inputs,
            result: JsonText::of(&DecidedLine::Decided(record)),
            stages: rows,
            effects: gated.apply.clone(),
            assessment: record
                .triage
                .as_ref()
                .and_then(|s| s.proposal.as_ref())
                .map(Outgoing::assessment),
            status: if review.is_some() {
                "in-review".into()
            } else {
                "triaged".into()
            },
            review,
            shadows: shadow_rows,
            audit,
        }
    }
}

/// Audit records of one stage (each host call and the outcome); returns its fault.
fn audit_stage(
    run_id: &str,
    label: &str,
    s: &StageRun,
    audit: &mut Vec<AuditEntry>,
) -> Option<Fault> {
    let identity = &s.plugin.identity;
    let plugin = identity.key();
    for call in &s.invocation.calls {
        let record = HostCallRecord {
            stage: label,
            plugin: &plugin,
            digest: &identity.digest,
            seq: call.seq,
            capability: &call.capability,
            function: &call.function,
            args_digest: &call.args_digest,
            result_bytes: call.result_bytes,
            latency_us: call.latency_us,
            outcome: &call.outcome,
        };
        audit.push(AuditEntry::run(run_id, "host-call", JsonText::of(&record)));
    }
    let fault = s.fault();
    let outcome = PluginOutcomeRecord {
        stage: label,
        plugin: &plugin,
        digest: &identity.digest,
        outcome: fault.as_ref().map_or("ok", |f| f.kind.as_str()),
        fault: fault.as_ref(),
        stats: &s.invocation.stats,
        stderr_bytes: s.invocation.stderr.len(),
    };
    audit.push(AuditEntry::run(
        run_id,
        "plugin-outcome",
        JsonText::of(&outcome),
    ));
    fault
}

/// [`RunLine::Decided`] by reference: the same JSON without cloning the record.
#[derive(serde::Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
enum DecidedLine<'a> {
    Decided(&'a RunRecord),
}

/// A stage row's `transcript`: what replay answers host calls from.
#[derive(serde::Serialize)]
struct TranscriptRecord<'a> {
    calls: &'a [HostCall],
    logs: &'a [crate::caps::LogLine],
    stderr: &'a str,
}

/// The payload of a `host-call` audit record (the arguments and answer are in the
/// transcript; the record keeps their digest and size).
#[derive(serde::Serialize)]
struct HostCallRecord<'a> {
    stage: &'a str,
    plugin: &'a str,
    digest: &'a str,
    seq: u32,
    capability: &'a crate::manifest::CapabilityName,
    function: &'a str,
    args_digest: &'a str,
    result_bytes: usize,
    latency_us: u64,
    outcome: &'a crate::caps::CallOutcome,
}

/// The payload of a `plugin-outcome` audit record.
#[derive(serde::Serialize)]
struct PluginOutcomeRecord<'a> {
    stage: &'a str,
    plugin: &'a str,
    digest: &'a str,
    outcome: &'a str,
    fault: Option<&'a Fault>,
    stats: &'a crate::runtime::InvocationStats,
    stderr_bytes: usize,
}

/// The payload of a `decision` audit record.
#[derive(serde::Serialize)]
struct DecisionRecord<'a> {
    outcome: deskhost_protocol::run::GateOutcome,
    applied: &'a [deskhost_protocol::gate::Effect],
    held: &'a [deskhost_protocol::gate::Effect],
    reasons: &'a [deskhost_protocol::gate::ReviewReason],
    review_item: Option<&'a str>,
}
