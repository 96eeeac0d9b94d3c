//! `deskhost plugin test`: runs a plugin on fixtures and reports outcome, fuel, host calls
//! and output size per case.
//!
//! A fixture is one recorded policy call: its kind, its exact input (WIT values as JSON, the
//! form `deskhost replay --export` writes), the host-call transcript that answers the
//! plugin's capability calls, and what to expect: an exact output, or properties that any
//! correct implementation shares (conformance fixtures: "escalates as legal-threat",
//! "priority at least urgent", ...). Fixtures never touch live data: a call that is not in
//! the transcript is answered `unavailable`.

use crate::bindings::types;
use crate::caps::{Answers, HostCall, RunScope, Services};
use crate::manifest::PolicyKind;
use crate::pipeline::checks;
use crate::records::{TicketInput, TicketRecord};
use crate::runtime::{Invocation, LoadedPlugin, PolicyInput, PolicyOutput, Runtime};
use crate::workspace::{Workspace, WorkspaceError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

/// One recorded policy call.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// A name for reports (default: the file name).
    #[serde(default)]
    pub name: Option<String>,
    /// What the fixture checks, for the people reading it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The policy kind.
    pub kind: PolicyKind,
    /// `{"ticket": …}` plus `"triage"` (reply, escalation) and `"reply"` (escalation).
    pub input: Value,
    /// Host calls and their answers.
    #[serde(default)]
    pub transcript: Vec<HostCall>,
    /// What must hold.
    #[serde(default)]
    pub expect: Expect,
}

/// Expectations of a fixture. Unset fields are not checked.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Expect {
    /// The exact output (WIT values as JSON).
    pub output: Option<Value>,
    /// The fault kind the call must end with (e.g. `deadline`); unset: no fault and the
    /// output passes the host's checks.
    pub fault: Option<String>,
    /// Triage: the escalation code, or `none`.
    pub escalate: Option<String>,
    /// Triage: the category.
    pub category: Option<String>,
    /// Triage: the queue.
    pub queue: Option<String>,
    /// Triage: the lowest acceptable priority.
    pub priority_at_least: Option<String>,
    /// Triage: the language.
    pub language: Option<String>,
    /// Triage: tags that must be present.
    pub tags: Vec<String>,
    /// Reply: `draft` or `abstain`.
    pub reply: Option<String>,
}

/// One case's result.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CaseResult {
    /// Fixture name.
    pub name: String,
    /// Whether every expectation held.
    pub passed: bool,
    /// What did not hold.
    pub problems: Vec<String>,
    /// `ok` or the fault kind.
    pub outcome: String,
    /// Fuel consumed (when metered).
    pub fuel_used: Option<u64>,
    /// Host calls made.
    pub host_calls: u32,
    /// Output size as JSON, bytes.
    pub output_bytes: usize,
    /// Wall time of one call (a fresh instance, all limits on), microseconds; the median
    /// when the case ran more than once.
    pub wall_us: u64,
    /// How many times the case ran.
    pub runs: u32,
}

/// All cases.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct TestReport {
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed.
    pub failed: usize,
    /// Each case.
    pub cases: Vec<CaseResult>,
}

impl TestReport {
    /// The failing cases, one per line.
    pub fn failures(&self) -> String {
        self.cases
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("  {}: {}", c.name, c.problems.join("; ")))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Reads every `*.json` fixture in `dir` (sorted) and runs those of the plugin's kind,
/// each `repeat` times (at least once) for a steadier latency.
pub async fn run_dir(
    ws: &Workspace,
    runtime: &Runtime,
    plugin: &LoadedPlugin,
    dir: &Path,
    repeat: u32,
) -> Result<TestReport, WorkspaceError> {
    let mut fixtures = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|source| WorkspaceError::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path).map_err(|source| WorkspaceError::Io {
            path: path.clone(),
            source,
        })?;
        let fixture: Fixture = serde_json::from_str(&text).map_err(|e| {
            WorkspaceError::Init(format!("fixture {} is not valid: {e}", path.display()))
        })?;
        if fixture.kind != plugin.identity.kind {
            continue;
        }
        let name = fixture.name.clone().unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        fixtures.push((name, fixture));
    }
    let services = Arc::new(Services {
        store: ws.store.clone(),
        kb: ws.kb().await?,
    });
    let mut report = TestReport::default();
    for (name, fixture) in fixtures {
        let case = run_case(
            ws,
            runtime,
            services.clone(),
            plugin,
            &name,
            &fixture,
            repeat,
        )
        .await;
        if case.passed {
            report.passed += 1;
        } else {
            report.failed += 1;
        }
        report.cases.push(case);
    }
    Ok(report)
}

/// The WIT input of a fixture or recorded stage, decoded.
pub struct DecodedInput {
    /// The ticket.
    pub ticket: types::Ticket,
    /// The triage decision (reply, escalation).
    pub triage: Option<types::TriageDecision>,
    /// The reply proposal (escalation).
    pub reply: Option<types::ReplyProposal>,
}

impl DecodedInput {
    /// Decodes `{"ticket", "triage", "reply"}`.
    pub fn from_json(input: &Value) -> Result<Self, String> {
        let ticket = serde_json::from_value(input["ticket"].clone())
            .map_err(|e| format!("input.ticket: {e}"))?;
        let triage = match &input["triage"] {
            Value::Null => None,
            v => Some(serde_json::from_value(v.clone()).map_err(|e| format!("input.triage: {e}"))?),
        };
        let reply = match &input["reply"] {
            Value::Null => None,
            v => Some(serde_json::from_value(v.clone()).map_err(|e| format!("input.reply: {e}"))?),
        };
        Ok(Self {
            ticket,
            triage,
            reply,
        })
    }

    /// The policy input for `kind`.
    pub fn policy_input(&self, kind: PolicyKind) -> Result<PolicyInput<'_>, String> {
        Ok(match kind {
            PolicyKind::Triage => PolicyInput::Triage {
                ticket: &self.ticket,
            },
            PolicyKind::Reply => PolicyInput::Reply {
                ticket: &self.ticket,
                triage: self
                    .triage
                    .as_ref()
                    .ok_or("a reply fixture needs input.triage")?,
            },
            PolicyKind::Escalation => PolicyInput::Escalation {
                ticket: &self.ticket,
                triage: self
                    .triage
                    .as_ref()
                    .ok_or("an escalation fixture needs input.triage")?,
                reply: self.reply.as_ref(),
            },
        })
    }

    /// A ticket record with the ids the capability scope checks need.
    pub fn ticket_record(&self) -> TicketRecord {
        let t = &self.ticket;
        let input = TicketInput {
            id: t.id.clone(),
            subject: t.subject.clone(),
            body: t.body.clone(),
            channel: t.channel.clone(),
            language: t.language.clone(),
            customer_id: t.customer_id.clone(),
            requester: None,
            tags: t.tags.clone().unwrap_or_default(),
            messages: Vec::new(),
            created_at: t.created_at.clone(),
            labels: Default::default(),
            reference_answer: None,
            customer: None,
            handle_seconds: None,
        };
        TicketRecord {
            content_hash: input.content_hash(),
            input,
            version: t.version,
        }
    }
}

async fn run_case(
    ws: &Workspace,
    runtime: &Runtime,
    services: Arc<Services>,
    plugin: &LoadedPlugin,
    name: &str,
    f: &Fixture,
    repeat: u32,
) -> CaseResult {
    let failed = |problem: String| CaseResult {
        name: name.to_string(),
        passed: false,
        problems: vec![problem],
        outcome: "not-run".into(),
        fuel_used: None,
        host_calls: 0,
        output_bytes: 0,
        wall_us: 0,
        runs: 0,
    };
    let decoded = match DecodedInput::from_json(&f.input) {
        Ok(d) => d,
        Err(e) => return failed(e),
    };
    let input = match decoded.policy_input(f.kind) {
        Ok(i) => i,
        Err(e) => return failed(e),
    };
    let answers = Answers::Recorded {
        calls: Arc::new(f.transcript.clone()),
        live_fallback: false,
    };
    // Every run gets a fresh scope; the first one is judged, the others only timed.
    let mut walls = Vec::new();
    let mut first = None;
    for _ in 0..repeat.max(1) {
        let scope = RunScope::new(format!("test_{name}"), Arc::new(decoded.ticket_record()));
        let invocation = runtime
            .invoke(
                plugin,
                services.clone(),
                scope.clone(),
                input,
                answers.clone(),
            )
            .await;
        walls.push(invocation.stats.wall_us);
        first.get_or_insert((scope, invocation));
    }
    let Some((scope, mut invocation)) = first else {
        return failed("no run".into());
    };
    walls.sort_unstable();
    invocation.stats.wall_us = walls[walls.len() / 2];
    let problems = judge(ws, &scope, &invocation, &f.expect);
    CaseResult {
        name: name.to_string(),
        passed: problems.is_empty(),
        problems,
        outcome: invocation
            .result
            .as_ref()
            .err()
            .map_or("ok".into(), |e| e.kind.as_str().to_string()),
        fuel_used: invocation.stats.fuel_used,
        host_calls: invocation.stats.host_calls,
        output_bytes: invocation
            .result
            .as_ref()
            .map_or(0, PolicyOutput::json_size),
        wall_us: invocation.stats.wall_us,
        runs: walls.len() as u32,
    }
}

fn rank(p: &str) -> u8 {
    match p {
        "low" => 0,
        "medium" => 1,
        "high" => 2,
        _ => 3,
    }
}

fn judge(ws: &Workspace, scope: &RunScope, invocation: &Invocation, e: &Expect) -> Vec<String> {
    let mut problems = Vec::new();
    let output = match (&invocation.result, &e.fault) {
        (Err(fault), Some(want)) if fault.kind.as_str() == want => return problems,
        (Err(fault), _) => {
            problems.push(format!("faulted: {fault}"));
            return problems;
        }
        (Ok(_), Some(want)) => {
            problems.push(format!("expected fault {want}, got an output"));
            return problems;
        }
        (Ok(o), None) => o,
    };
    let seen = scope
        .articles_seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let host = match output {
        PolicyOutput::Triage(d) => checks::triage(d, &ws.config.taxonomy),
        PolicyOutput::Reply(r) => checks::reply(r, &seen),
        PolicyOutput::Escalation(x) => checks::escalation(x, &ws.config.taxonomy, &seen),
    };
    problems.extend(host.0.into_iter().map(|p| format!("host check: {p}")));
    if let Some(want) = &e.output
        && !output.json_values().contains(want)
    {
        problems.push("output differs from the expected output".into());
    }
    match output {
        PolicyOutput::Triage(d) => {
            let mut eq = |what: &str, want: &Option<String>, got: &str| {
                if let Some(w) = want
                    && w != got
                {
                    problems.push(format!("{what}: expected {w}, got {got}"));
                }
            };
            eq(
                "escalate",
                &e.escalate,
                d.escalate.as_ref().map_or("none", |x| x.code.as_str()),
            );
            eq("category", &e.category, &d.category.value);
            eq("queue", &e.queue, &d.queue.value);
            eq("language", &e.language, &d.language.value);
            let priority = crate::pipeline::gate::priority_name(d.priority.value);
            if let Some(min) = &e.priority_at_least
                && rank(priority) < rank(min)
            {
                problems.push(format!("priority: expected at least {min}, got {priority}"));
            }
            for tag in &e.tags {
                if !d.tags.contains(tag) {
                    problems.push(format!("tags: {tag} missing from {:?}", d.tags));
                }
            }
        }
        PolicyOutput::Reply(r) => {
            let got = match r {
                types::ReplyProposal::Draft(_) => "draft",
                types::ReplyProposal::Abstain(_) => "abstain",
            };
            if let Some(want) = &e.reply
                && want != got
            {
                problems.push(format!("reply: expected {want}, got {got}"));
            }
        }
        PolicyOutput::Escalation(_) => {}
    }
    problems
}
