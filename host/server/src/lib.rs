//! The HTTP API of `deskhost serve`, thin over the pipeline.
//!
//! - `POST /v1/tickets`: one ticket (object) or several (array), as in the JSON Lines input
//!   of `deskhost run`; answers with the decision of each, in order.
//! - `GET /v1/runs/{run_id}`: a recorded decision.
//! - `GET /v1/plugins`: the active plugins and shadows (they change on promote/rollback).
//! - `GET /healthz`.
//!
//! Errors are `{"message", "code", "type"}` with stable codes, mapped in [`ApiError`].

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use deskhost_engine::pipeline::Pipeline;
use deskhost_engine::records::TicketInput;
use deskhost_engine::workspace::Workspace;
use deskhost_protocol::api::{ActivePlugins, ApiErrorBody, Health, OneOrMany};
use deskhost_protocol::run::RunLine;
use futures::StreamExt;
use serde_json::Value;
use std::future::Future;

#[derive(Clone)]
struct AppState {
    ws: Workspace,
    pipeline: Pipeline,
    concurrency: usize,
}

/// API errors and their stable codes.
#[derive(Debug)]
pub enum ApiError {
    /// A ticket in the request is not valid.
    InvalidTicket(String),
    /// No run with that id.
    RunNotFound(String),
    /// The host failed.
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str, &str) {
        match self {
            ApiError::InvalidTicket(m) => (
                StatusCode::BAD_REQUEST,
                "invalid_ticket",
                "invalid_request",
                m,
            ),
            ApiError::RunNotFound(m) => {
                (StatusCode::NOT_FOUND, "run_not_found", "invalid_request", m)
            }
            ApiError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal", m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, kind, message) = self.parts();
        let body = ApiErrorBody {
            message: message.to_string(),
            code: code.into(),
            kind: kind.into(),
        };
        (status, Json(body)).into_response()
    }
}

/// The router over a workspace and its pipeline.
pub fn router(ws: Workspace, pipeline: Pipeline, concurrency: usize) -> Router {
    Router::new()
        .route("/v1/tickets", post(tickets))
        .route("/v1/runs/{run_id}", get(run))
        .route("/v1/plugins", get(plugins))
        .route(
            "/healthz",
            get(|| async {
                Json(Health {
                    status: "ok".into(),
                })
            }),
        )
        .with_state(AppState {
            ws,
            pipeline,
            concurrency: concurrency.max(1),
        })
}

/// Serves until `shutdown` resolves, then finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ws: Workspace,
    pipeline: Pipeline,
    concurrency: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(ws, pipeline, concurrency))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn tickets(
    State(state): State<AppState>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<OneOrMany<RunLine>>, ApiError> {
    let Json(body) = body.map_err(|e| {
        ApiError::InvalidTicket(format!(
            "the request body must be a JSON ticket object or an array of them: {}",
            e.body_text()
        ))
    })?;
    let (items, single) = match body {
        Value::Array(items) => (items, false),
        other => (vec![other], true),
    };
    let mut inputs = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let where_ = if single {
            "ticket".to_string()
        } else {
            format!("ticket[{i}]")
        };
        let t: TicketInput = serde_json::from_value(item)
            .map_err(|e| ApiError::InvalidTicket(format!("{where_}: {e}")))?;
        t.check()
            .map_err(|e| ApiError::InvalidTicket(format!("{where_}: {e}")))?;
        inputs.push(t);
    }
    let ingested = state
        .ws
        .store
        .ingest_tickets(&inputs)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let pipeline = &state.pipeline;
    let mut results: Vec<RunLine> = futures::stream::iter(ingested)
        .map(|i| async move {
            if !i.pending {
                return RunLine::AlreadyDecided {
                    ticket_id: i.id,
                    ticket_version: i.version,
                };
            }
            pipeline.decide_line(&i.id, i.version).await
        })
        .buffered(state.concurrency)
        .collect()
        .await;
    Ok(Json(match results.pop() {
        Some(one) if single => OneOrMany::One(one),
        last => {
            results.extend(last);
            OneOrMany::Many(results)
        }
    }))
}

/// The run record as stored (it was checked when it was written), not re-encoded.
async fn run(
    State(state): State<AppState>,
    Path(run_id): Path<String>,
) -> Result<Response, ApiError> {
    let text = state
        .ws
        .store
        .run_result(&run_id)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .ok_or_else(|| ApiError::RunNotFound(format!("no run {run_id}")))?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        text,
    )
        .into_response())
}

async fn plugins(State(state): State<AppState>) -> Json<ActivePlugins> {
    let active = state.pipeline.active();
    let keys = |slots: &mut dyn Iterator<Item = (String, String)>| slots.collect();
    Json(ActivePlugins {
        seq: active.seq,
        active: keys(
            &mut active
                .iter()
                .map(|(s, p)| (s.as_str().into(), p.identity.key())),
        ),
        shadow: keys(
            &mut active
                .shadow
                .iter()
                .map(|(s, p)| (s.as_str().into(), p.identity.key())),
        ),
    })
}
