//! The capabilities the host gives plugins, behind one choke point.
//!
//! Every capability function is a method on [`HostState`] that goes through
//! [`CallContext::call`]: [`CallContext::admit`] (grant, scope and call-count checks; a
//! refusal stops the plugin), the recorded answer when replaying or the live one otherwise,
//! and [`CallContext::finish`] (latency, result size, outcome, and the transcript entry the
//! audit log and replay are built from). `log` and `config` answer from the call context
//! itself and use admit/finish directly. Nothing else in the host implements the generated
//! `Host` traits, so no capability code is reachable around it.

use crate::bindings::types;

mod config;
mod crm;
mod helpdesk;
mod kb;
mod log;
use crate::kb::KbIndex;
use crate::manifest::{CapabilityName, Grants, Limits, PolicyKind};
use crate::records::{ArticleRecord, TicketRecord, redact_customer, redact_ticket};
use crate::runtime::fault::HostTrap;
use crate::store::Store;
use deskhost_protocol::digest::sha256_json;
use deskhost_protocol::json::JsonText;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// What the capabilities read from.
#[derive(Clone, Debug)]
pub struct Services {
    /// Tickets and customers.
    pub store: Store,
    /// Articles.
    pub kb: KbIndex,
}

/// Who is calling: the loaded plugin's identity, grants and limits.
#[derive(Debug)]
pub struct PluginIdentity {
    /// Plugin id.
    pub id: String,
    /// Version.
    pub version: String,
    /// Slot.
    pub kind: PolicyKind,
    /// sha256 of the component as installed.
    pub digest: String,
    /// sha256 over settings and data.
    pub config_digest: String,
    /// Effective grants (manifest within the operator's ceiling).
    pub grants: Grants,
    /// Limits.
    pub limits: Limits,
    /// Settings document (served by `config.settings`).
    pub settings: Arc<[u8]>,
    /// Data (served by `config.data`).
    pub data: Arc<[u8]>,
}

impl PluginIdentity {
    /// `id@version`.
    pub fn key(&self) -> String {
        format!("{}@{}", self.id, self.version)
    }
}

/// What one run may read and what it has read: shared by the run's policy stages.
#[derive(Clone, Debug)]
pub struct RunScope {
    /// Run id.
    pub run_id: String,
    /// The ticket version being decided (unredacted: scope checks use it).
    pub ticket: Arc<TicketRecord>,
    /// Articles returned to this run, by id: the ones a proposal may cite.
    pub articles_seen: Arc<Mutex<BTreeMap<String, ArticleRecord>>>,
    /// CRM record versions read in this run.
    pub crm_versions: Arc<Mutex<BTreeMap<String, u32>>>,
    /// The wall clock plugins see, Unix milliseconds: fixed for the run so a replay sees the
    /// same time.
    pub clock_ms: u64,
}

impl RunScope {
    /// A fresh scope for `ticket`.
    pub fn new(run_id: String, ticket: Arc<TicketRecord>) -> Self {
        let clock_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Self {
            run_id,
            ticket,
            articles_seen: Arc::default(),
            crm_versions: Arc::default(),
            clock_ms,
        }
    }

    /// A copy whose records (articles seen, CRM versions) are separate from this one's.
    pub fn fork(&self) -> Self {
        let copy = |m: &Mutex<BTreeMap<String, ArticleRecord>>| {
            m.lock().unwrap_or_else(|p| p.into_inner()).clone()
        };
        let versions = self
            .crm_versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Self {
            run_id: self.run_id.clone(),
            ticket: self.ticket.clone(),
            articles_seen: Arc::new(Mutex::new(copy(&self.articles_seen))),
            crm_versions: Arc::new(Mutex::new(versions)),
            clock_ms: self.clock_ms,
        }
    }

    /// The same scope with the clock set to `clock_ms` (replaying a recorded run).
    pub fn at(mut self, clock_ms: u64) -> Self {
        self.clock_ms = clock_ms;
        self
    }

    fn customer_id(&self) -> Option<&str> {
        self.ticket.input.customer_id.as_deref()
    }
}

/// How a host call ended.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallOutcome {
    /// Answered.
    #[default]
    Ok,
    /// Answered with a `capability-error` (not found, invalid argument, unavailable).
    Error,
    /// Refused: outside the grants (the plugin was stopped).
    Denied,
    /// Refused: over a call limit (the plugin was stopped).
    Limited,
}

/// One host call: the audit record's content plus the transcript (arguments and answer).
///
/// In a hand-written fixture only `capability`, `function`, `args` and `result` are needed:
/// a call with no `args_digest` is matched by its arguments, and `outcome` defaults to `ok`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostCall {
    /// Order within the plugin call, from 0.
    #[serde(default)]
    pub seq: u32,
    /// Capability.
    pub capability: CapabilityName,
    /// Function (the host's own names need no copy).
    pub function: Cow<'static, str>,
    /// Arguments as JSON.
    pub args: serde_json::Value,
    /// sha256 of the arguments' JSON.
    #[serde(default)]
    pub args_digest: String,
    /// The answer as JSON text (`null` when refused), kept as written.
    pub result: JsonText,
    /// Size of the answer's JSON in bytes.
    #[serde(default)]
    pub result_bytes: usize,
    /// Time inside the host, microseconds.
    #[serde(default)]
    pub latency_us: u64,
    /// Outcome.
    #[serde(default)]
    pub outcome: CallOutcome,
}

/// A line the plugin logged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// `trace` .. `error`.
    pub level: String,
    /// Text (at most 1 KiB).
    pub message: String,
}

/// Where capability answers come from.
#[derive(Clone, Debug, Default)]
pub enum Answers {
    /// The live services.
    #[default]
    Live,
    /// A recorded transcript (replay, shadow runs): a call is answered by the first unused
    /// recorded call with the same capability, function and arguments. A call with no match
    /// is answered live when `live_fallback` is set (read-only capabilities only), else with
    /// `capability-error::unavailable`. `log` and `config` are the plugin's own and always
    /// answered locally.
    Recorded {
        /// The recorded calls.
        calls: Arc<Vec<HostCall>>,
        /// Answer unmatched calls from the live services.
        live_fallback: bool,
    },
}

/// Per-call state of the choke point.
#[derive(Debug)]
pub struct CallContext {
    /// The calling plugin.
    pub plugin: Arc<PluginIdentity>,
    /// The run.
    pub scope: RunScope,
    /// Data sources.
    pub services: Arc<Services>,
    /// Calls made so far (audit + transcript).
    pub calls: Vec<HostCall>,
    /// Lines logged.
    pub logs: Vec<LogLine>,
    /// Where answers come from.
    pub answers: Answers,
    /// Recorded calls already used (by index).
    used: Vec<bool>,
    /// Calls answered from the live services although a transcript was given.
    pub unmatched: u32,
    per_capability: BTreeMap<CapabilityName, u32>,
    /// Bytes of log text the plugin may still hand back (`limits.output_kib`).
    log_budget: usize,
    /// Log lines refused for the line count or the byte budget.
    logs_dropped: u32,
}

/// A call that passed admission.
pub struct Admitted {
    capability: CapabilityName,
    function: &'static str,
    args: serde_json::Value,
    started: Instant,
}

/// What a capability body produced.
pub enum CapResult<T> {
    /// The answer.
    Ok(T),
    /// A `capability-error` for the guest.
    Err(types::CapabilityError),
    /// Outside the grants: stop the plugin.
    Denied(String),
}

const MAX_LOG_LINES: usize = 200;
const MAX_LOG_LINE: usize = 1024;
const MAX_LIST: u32 = 20;
/// Longest string argument a plugin may pass (a query, an id); longer ones are refused with
/// `invalid-argument` and recorded cut.
pub const MAX_ARG_BYTES: usize = 2048;

/// A string argument as recorded (cut to [`MAX_ARG_BYTES`]), and whether it was too long.
fn arg(s: &str) -> (String, bool) {
    let cut = crate::sanitize::truncate(s, MAX_ARG_BYTES);
    let too_long = matches!(cut, std::borrow::Cow::Owned(_));
    (cut.into_owned(), too_long)
}

fn too_long(what: &str, len: usize) -> types::CapabilityError {
    types::CapabilityError::InvalidArgument(format!(
        "{what} is {len} bytes; at most {MAX_ARG_BYTES} are accepted"
    ))
}

impl CallContext {
    /// A context for one plugin call.
    pub fn new(plugin: Arc<PluginIdentity>, scope: RunScope, services: Arc<Services>) -> Self {
        Self {
            scope,
            services,
            calls: Vec::new(),
            logs: Vec::new(),
            answers: Answers::Live,
            used: Vec::new(),
            unmatched: 0,
            per_capability: BTreeMap::new(),
            log_budget: plugin.limits.output_kib as usize * 1024,
            logs_dropped: 0,
            plugin,
        }
    }

    /// Ends the plugin's log: if lines were refused, one line says how many and why.
    pub fn close_logs(&mut self) {
        if self.logs_dropped > 0 {
            self.logs.push(LogLine {
                level: "warn".into(),
                message: format!(
                    "[deskhost] {} more log line(s) dropped: a call keeps at most {MAX_LOG_LINES} lines and limits.output_kib bytes of log text",
                    self.logs_dropped
                ),
            });
            self.logs_dropped = 0;
        }
    }

    /// Admission: the capability must be granted and the call limits not reached. A refusal
    /// is recorded and stops the plugin.
    pub fn admit(
        &mut self,
        capability: CapabilityName,
        function: &'static str,
        args: serde_json::Value,
    ) -> wasmtime::Result<Admitted> {
        let started = Instant::now();
        let grants = &self.plugin.grants;
        let refusal = if !grants.has(capability) {
            // Unreachable for linked plugins (ungranted interfaces are not linked), kept so
            // the choke point does not depend on the linker being right.
            Some((
                CallOutcome::Denied,
                HostTrap::CapabilityDenied {
                    capability,
                    function: function.into(),
                    reason: format!(
                        "not granted; add {} to the plugin's manifest",
                        capability.grant_hint()
                    ),
                },
            ))
        } else if self.calls.len() as u32 >= self.plugin.limits.host_calls {
            Some((
                CallOutcome::Limited,
                HostTrap::HostCallLimit {
                    detail: format!(
                        "{} host calls per invocation (limits.host_calls)",
                        self.plugin.limits.host_calls
                    ),
                },
            ))
        } else if let Some(max) = grants.max_calls(capability)
            && self.per_capability.get(&capability).copied().unwrap_or(0) >= max
        {
            Some((
                CallOutcome::Limited,
                HostTrap::HostCallLimit {
                    detail: format!(
                        "{max} {capability} calls per invocation (grants.{capability}.max_calls)"
                    ),
                },
            ))
        } else {
            None
        };
        if let Some((outcome, trap)) = refusal {
            self.push(
                capability,
                function,
                args,
                JsonText::default(),
                0,
                started,
                outcome,
            );
            return Err(wasmtime::Error::new(trap));
        }
        *self.per_capability.entry(capability).or_default() += 1;
        Ok(Admitted {
            capability,
            function,
            args,
            started,
        })
    }

    /// Marks the articles named in a recorded KB answer as returned to this run.
    fn note_articles<T: Serialize>(&self, value: &T) {
        let json = serde_json::to_value(value).unwrap_or_default();
        let ids: Vec<String> = match &json {
            serde_json::Value::Array(hits) => hits
                .iter()
                .filter_map(|h| h["article_id"].as_str().map(str::to_string))
                .collect(),
            other => other["id"]
                .as_str()
                .map(str::to_string)
                .into_iter()
                .collect(),
        };
        let mut seen = self
            .scope
            .articles_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for id in ids {
            if let Some(a) = self.services.kb.article(&id) {
                seen.insert(a.id.clone(), a);
            }
        }
    }

    /// The recorded answer to an admitted call, when answers come from a transcript.
    /// `None`: answer it live.
    pub fn replayed<T: serde::de::DeserializeOwned>(
        &mut self,
        call: &Admitted,
    ) -> Option<CapResult<T>> {
        let Answers::Recorded {
            calls,
            live_fallback,
        } = &self.answers
        else {
            return None;
        };
        let digest = sha256_json(&call.args);
        self.used.resize(calls.len(), false);
        let matches = |c: &HostCall| {
            c.capability == call.capability
                && c.function == call.function
                && (c.args_digest == digest || (c.args_digest.is_empty() && c.args == call.args))
        };
        let index = calls
            .iter()
            .enumerate()
            .position(|(i, c)| !self.used[i] && matches(c))
            .or_else(|| calls.iter().position(matches));
        let Some(i) = index else {
            if *live_fallback {
                self.unmatched += 1;
                return None;
            }
            return Some(CapResult::Err(types::CapabilityError::Unavailable(
                format!(
                    "{}.{} with these arguments is not in the recorded transcript",
                    call.capability, call.function
                ),
            )));
        };
        self.used[i] = true;
        let recorded = &calls[i];
        Some(match recorded.outcome {
            CallOutcome::Ok => match recorded.result.decode::<T>() {
                Ok(v) => CapResult::Ok(v),
                Err(e) => CapResult::Err(types::CapabilityError::Unavailable(format!(
                    "recorded answer does not decode: {e}"
                ))),
            },
            CallOutcome::Error => match recorded.result.decode::<types::CapabilityError>() {
                Ok(e) => CapResult::Err(e),
                Err(e) => CapResult::Err(types::CapabilityError::Unavailable(format!(
                    "recorded error does not decode: {e}"
                ))),
            },
            CallOutcome::Denied | CallOutcome::Limited => {
                CapResult::Denied("refused in the recorded run".into())
            }
        })
    }

    /// One capability call, the only sequence a capability function runs: admit (grant,
    /// budget; a refusal stops the plugin), answer from the transcript when replaying or
    /// from `live` otherwise, then finish (latency, size, outcome, transcript). `cites`:
    /// articles in a replayed answer become citable in this run, as a live answer's are.
    pub async fn call<T>(
        &mut self,
        capability: CapabilityName,
        function: &'static str,
        args: serde_json::Value,
        cites: bool,
        live: impl AsyncFnOnce(&CallContext) -> CapResult<T>,
    ) -> wasmtime::Result<Result<T, types::CapabilityError>>
    where
        T: Serialize + serde::de::DeserializeOwned,
    {
        let admitted = self.admit(capability, function, args)?;
        if let Some(answer) = self.replayed(&admitted) {
            if cites && let CapResult::Ok(value) = &answer {
                self.note_articles(value);
            }
            return self.finish(admitted, answer);
        }
        let result = live(self).await;
        self.finish(admitted, result)
    }

    /// Records the call's outcome and turns the body's result into the guest's answer.
    pub fn finish<T: Serialize>(
        &mut self,
        call: Admitted,
        result: CapResult<T>,
    ) -> wasmtime::Result<Result<T, types::CapabilityError>> {
        let Admitted {
            capability,
            function,
            args,
            started,
        } = call;
        match result {
            CapResult::Ok(value) => {
                let json = JsonText::of(&value);
                let bytes = json.len();
                self.push(
                    capability,
                    function,
                    args,
                    json,
                    bytes,
                    started,
                    CallOutcome::Ok,
                );
                Ok(Ok(value))
            }
            CapResult::Err(e) => {
                let json = JsonText::of(&e);
                self.push(
                    capability,
                    function,
                    args,
                    json,
                    0,
                    started,
                    CallOutcome::Error,
                );
                Ok(Err(e))
            }
            CapResult::Denied(reason) => {
                self.push(
                    capability,
                    function,
                    args,
                    JsonText::default(),
                    0,
                    started,
                    CallOutcome::Denied,
                );
                Err(wasmtime::Error::new(HostTrap::CapabilityDenied {
                    capability,
                    function: function.into(),
                    reason,
                }))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        capability: CapabilityName,
        function: &'static str,
        args: serde_json::Value,
        result: JsonText,
        result_bytes: usize,
        started: Instant,
        outcome: CallOutcome,
    ) {
        let args_digest = sha256_json(&args);
        self.calls.push(HostCall {
            seq: self.calls.len() as u32,
            capability,
            function: Cow::Borrowed(function),
            args,
            args_digest,
            result,
            result_bytes,
            latency_us: started.elapsed().as_micros() as u64,
            outcome,
        });
    }
}

/// A `wasmtime::ResourceLimiter` enforcing `limits.memory_mib` (plus the bound config).
#[derive(Debug)]
pub struct MemoryLimiter {
    /// Bytes allowed.
    pub limit: usize,
    /// Largest size reached.
    pub peak: usize,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            return Err(wasmtime::Error::new(HostTrap::MemoryLimit {
                requested: desired,
                limit: self.limit,
            }));
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// The store data of one plugin call.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Memory limit.
    pub limiter: MemoryLimiter,
    /// The choke point.
    pub call: CallContext,
}

impl HostState {
    /// State for one call.
    pub fn new(wasi: WasiCtx, limiter: MemoryLimiter, call: CallContext) -> Self {
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter,
            call,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> types::CapabilityError {
    tracing::warn!("capability backend failed: {e}");
    types::CapabilityError::Unavailable(e.to_string())
}

impl types::Host for HostState {}
