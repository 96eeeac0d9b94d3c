//! `deskhost replay RUN_ID`: re-executes a recorded run from its stored inputs, answering
//! every capability call from the run's transcript, with the same clock and the same
//! randomness; against the recorded plugin the output is byte-identical, against another
//! version the report shows what changed. `--export` turns the stages into fixtures.

use crate::caps::{Answers, HostCall, RunScope, Services};
use crate::manifest::PolicyKind;
use crate::plugin_test::{DecodedInput, Expect, Fixture};
use crate::runtime::{LoadedPlugin, Runtime};
use crate::store::StoreError;
use crate::workspace::{Workspace, WorkspaceError};
use serde::Serialize;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

/// A field that differs between the recorded and the replayed output.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Difference {
    /// JSON path, e.g. `/Triage/category/value`.
    pub path: String,
    /// Recorded value.
    pub recorded: Value,
    /// Replayed value.
    pub replayed: Value,
}

/// One replayed stage.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StageReplay {
    /// Stage.
    pub stage: PolicyKind,
    /// The plugin that decided it in the recorded run.
    pub recorded_plugin: String,
    /// The plugin replayed.
    pub replayed_plugin: String,
    /// The replayed component differs from the recorded one.
    pub other_component: bool,
    /// Recorded outcome (`ok` or fault kind).
    pub recorded_outcome: String,
    /// Replayed outcome.
    pub replayed_outcome: String,
    /// Output bytes are identical.
    pub identical: bool,
    /// Where outputs differ.
    pub differences: Vec<Difference>,
    /// Capability calls the transcript had no answer for.
    pub unanswered_calls: usize,
}

/// The whole replay.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ReplayReport {
    /// Run.
    pub run_id: String,
    /// Ticket.
    pub ticket_id: String,
    /// Ticket version.
    pub ticket_version: u32,
    /// Stages.
    pub stages: Vec<StageReplay>,
}

fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<Difference>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                diff(
                    &format!("{path}/{k}"),
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}/{i}"), p, q, out);
            }
        }
        _ if a != b => out.push(Difference {
            path: if path.is_empty() {
                "/".into()
            } else {
                path.to_string()
            },
            recorded: a.clone(),
            replayed: b.clone(),
        }),
        _ => {}
    }
}

/// A stored JSON column of run `run_id`; one that does not parse is a corrupt record.
/// What replay reads of a stage transcript: the host calls and their answers.
#[derive(serde::Deserialize)]
struct Transcript {
    calls: Vec<HostCall>,
}

fn stored_json<T: serde::de::DeserializeOwned>(
    run_id: &str,
    what: &str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what: format!("{what} of run {run_id}"),
        detail: e.to_string(),
    })
}

/// Replays `run_id`; `candidate` replaces the plugin of its kind; `export` writes one fixture
/// per stage into that directory.
pub async fn replay(
    ws: &Workspace,
    runtime: &Runtime,
    run_id: &str,
    candidate: Option<&LoadedPlugin>,
    export: Option<&Path>,
) -> Result<ReplayReport, WorkspaceError> {
    let run = ws.store.run(run_id).await?.ok_or_else(|| {
        WorkspaceError::Init(format!(
            "no run {run_id} in this workspace (run ids are in `deskhost run` output)"
        ))
    })?;
    let (ticket_id, ticket_version) = (run.ticket_id, run.ticket_version);
    let inputs: Value = stored_json(run_id, "the inputs", &run.inputs_json)?;
    let clock_ms = inputs["clock_ms"].as_u64().unwrap_or(0);
    let ticket = ws
        .store
        .ticket(&ticket_id, ticket_version)
        .await?
        .ok_or_else(|| {
            WorkspaceError::Init(format!(
                "ticket {ticket_id} v{ticket_version} of run {run_id} is no longer in the store"
            ))
        })?;
    let ticket = Arc::new(ticket);
    let services = Arc::new(Services {
        store: ws.store.clone(),
        kb: ws.kb().await?,
    });
    let rows = ws.store.run_stages(run_id).await?;
    let mut stages = Vec::new();
    for r in rows {
        let stage_name = r.stage;
        let Some(stage) = PolicyKind::ALL
            .into_iter()
            .find(|k| k.as_str() == stage_name)
        else {
            continue;
        };
        let recorded_plugin = r.plugin;
        let recorded_digest = r.digest;
        let recorded_outcome = r.outcome;
        let Transcript { calls } = stored_json(
            run_id,
            "the host calls in a stage transcript",
            &r.transcript_json,
        )?;
        let Some(input_text) = r.input_json else {
            return Err(WorkspaceError::Init(format!(
                "run {run_id} was recorded before inputs were kept; it cannot be replayed"
            )));
        };
        let input: Value = stored_json(run_id, "a stage input", &input_text)?;
        let recorded_output: Option<Value> = r
            .output_json
            .as_deref()
            .map(|s| stored_json(run_id, "a stage output", s))
            .transpose()?;

        let owned;
        let plugin: &LoadedPlugin = match candidate {
            Some(c) if c.identity.kind == stage => c,
            _ => {
                let path = ws.manifest_for(stage, &recorded_plugin)?;
                owned = runtime.load_plugin(&path, stage, &ws.config.ceiling)?;
                &owned
            }
        };
        if let Some(dir) = export {
            let fixture = Fixture {
                name: Some(format!("{run_id}-{stage}")),
                description: Some(format!(
                    "{stage} stage of {run_id} (ticket {} v{}): the recorded output, exactly",
                    ticket_id, ticket_version
                )),
                kind: stage,
                input: input.clone(),
                transcript: calls.clone(),
                expect: Expect {
                    output: recorded_output.clone(),
                    ..Expect::default()
                },
            };
            std::fs::create_dir_all(dir).map_err(|source| WorkspaceError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
            let file = dir.join(format!("{run_id}-{stage}.json"));
            let text = serde_json::to_string_pretty(&fixture).unwrap_or_default();
            std::fs::write(&file, text).map_err(|source| WorkspaceError::Io {
                path: file.clone(),
                source,
            })?;
        }
        let decoded = DecodedInput::from_json(&input)
            .map_err(|e| WorkspaceError::Init(format!("run {run_id} {stage}: {e}")))?;
        let policy_input = decoded.policy_input(stage).map_err(WorkspaceError::Init)?;
        let scope = RunScope::new(run_id.to_string(), ticket.clone()).at(clock_ms);
        let answers = Answers::Recorded {
            calls: Arc::new(calls.clone()),
            live_fallback: false,
        };
        let invocation = runtime
            .invoke(plugin, services.clone(), scope, policy_input, answers)
            .await;
        let unanswered = invocation
            .calls
            .iter()
            .filter(|c| {
                c.outcome == crate::caps::CallOutcome::Error
                    && c.result.as_str().contains("not in the recorded transcript")
            })
            .count();
        // Of the output's two JSON renderings, the one the recorded run was written in.
        let replayed_output = invocation.result.as_ref().ok().map(|o| {
            let [as_text, widened] = o.json_values();
            if recorded_output.as_ref() == Some(&widened) {
                widened
            } else {
                as_text
            }
        });
        let replayed_outcome = invocation
            .result
            .as_ref()
            .err()
            .map_or("ok".to_string(), |f| f.kind.as_str().to_string());
        // The stored output against the replayed one in the same rendering, as JSON values:
        // equal text reads back equal, and runs stored before outputs were kept as text
        // (keys sorted, f32 widened) compare against that rendering.
        let identical = match (&recorded_output, &replayed_output) {
            (Some(a), Some(b)) => a == b,
            (None, None) => recorded_outcome == replayed_outcome,
            _ => false,
        };
        let mut differences = Vec::new();
        diff(
            "",
            recorded_output.as_ref().unwrap_or(&Value::Null),
            replayed_output.as_ref().unwrap_or(&Value::Null),
            &mut differences,
        );
        stages.push(StageReplay {
            stage,
            recorded_plugin,
            replayed_plugin: plugin.identity.key(),
            other_component: plugin.identity.digest != recorded_digest,
            recorded_outcome,
            replayed_outcome,
            identical,
            differences,
            unanswered_calls: unanswered,
        });
    }
    Ok(ReplayReport {
        run_id: run_id.to_string(),
        ticket_id,
        ticket_version,
        stages,
    })
}
