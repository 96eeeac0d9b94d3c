//! The HTTP API of `deskhost serve`, thin over the engine's use cases.
//!
//! - `POST /v1/tickets` (role `ingest`): one ticket (object) or several (array), as in the
//!   JSON Lines input of `deskhost run`. Stores and queues them and answers 202 with each
//!   version (`?wait=true`: 200 with each decision, in order); 429 with `Retry-After` when
//!   the queue holds `--max-pending` versions (nothing is stored).
//! - `GET /v1/tickets/{id}/versions/{version}` (any token): pending or done; with a `reviewer`
//!   or `admin` token, the decision too (it can carry CRM context an ingest client must not read).
//! - `GET /v1/runs/{run_id}` (`reviewer`): a recorded decision.
//! - `GET /v1/reviews` (`reviewer`): the review queue, riskiest first; `?status=`, `reason=`,
//!   `queue=`, `plugin=`, `assignee=`, `limit=`.
//! - `GET /v1/reviews/report` (`reviewer`): kept-unchanged share per plugin version and
//!   field, reply and escalation outcomes, automation rate, backlog.
//! - `GET /v1/reviews/{id}` (`reviewer`), `POST /v1/reviews/{id}/actions` (`reviewer`):
//!   `{"action": "approve", "edits": {…}}`, `{"action": "reject", "reason": …}`,
//!   `{"action": "assign", "to": …}`; a second verdict on one item is a 409.
//! - `GET /v1/plugins` (any token): the active plugins and shadows.
//! - `GET /metrics` (any token): Prometheus text — tickets ingested and decided, gate
//!   outcomes, faults by class and plugin version, per-stage latency histograms, queue
//!   depth, review backlog and the oldest item's age.
//! - `/ui/…`: the review UI for browsers (sign in with a reviewer token; see `ui/mod.rs`).
//! - `POST /v1/connectors/{name}/webhook` (no token: the help desk's signature instead):
//!   a Zendesk webhook naming a changed ticket; 401 for a missing, stale or wrong signature,
//!   400 for a body that names no ticket (nothing stored either way), 202 once it is taken in.
//! - `GET /healthz`, `GET /v1/openapi.json` (no token): liveness; the OpenAPI 3 document,
//!   its schemas generated from the protocol types ([`openapi`]).
//!
//! Every request must name an allowed host (`Host`, and `Origin` when a browser sends one:
//! a DNS-rebinding page cannot reach the API), bodies are limited (413), and every endpoint
//! but health needs `Authorization: Bearer <token>` of a role that may (401, 403; nothing is
//! stored). Errors are `{"message", "code", "type"}` with stable codes, mapped in [`ApiError`].

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use deskhost_engine::pipeline::Pipeline;
use deskhost_engine::records::TicketInput;
use deskhost_engine::review::{self, ReviewError, ReviewQuery};
use deskhost_engine::workspace::Workspace;
use deskhost_protocol::api::{
    Accepted, ActivePlugins, ApiErrorBody, Health, OneOrMany, ReviewDetail, VersionState,
};
use deskhost_protocol::review::{ReviewActed, ReviewAction, Role, TokenInfo};
use deskhost_protocol::run::{ReviewItem, ReviewStatus, RunLine};
use futures::StreamExt;
use serde_json::Value;
use std::future::Future;

pub mod openapi;
mod ui;
use std::sync::Arc;

#[derive(Clone)]
struct AppState {
    ws: Workspace,
    pipeline: Pipeline,
    concurrency: usize,
    hosts: Arc<Vec<String>>,
    max_pending: u64,
    secure_cookies: bool,
    connectors: Arc<Vec<Arc<deskhost_connectors::Connector>>>,
}

/// How the server is reached and bounded.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Decisions in flight per request.
    pub concurrency: usize,
    /// Host names (without port) requests may name in `Host` and `Origin`; loopback names
    /// are always allowed.
    pub allowed_hosts: Vec<String>,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Pending ticket versions beyond which ingest answers 429 (0: no limit).
    pub max_pending: u64,
    /// Mark the review UI's session cookie `Secure` (when a TLS proxy is in front).
    pub secure_cookies: bool,
    /// The workspace's help-desk connectors (their webhooks are served).
    pub connectors: Vec<Arc<deskhost_connectors::Connector>>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            concurrency: 4,
            allowed_hosts: Vec::new(),
            max_body_bytes: 1 << 20,
            max_pending: 10_000,
            secure_cookies: false,
            connectors: Vec::new(),
        }
    }
}

/// API errors and their stable codes.
#[derive(Debug)]
pub enum ApiError {
    /// A ticket in the request is not valid.
    InvalidTicket(String),
    /// The request is not valid (other than a ticket).
    Invalid(String),
    /// No run with that id.
    RunNotFound(String),
    /// No review item with that id.
    ReviewNotFound(String),
    /// Someone decided the item first.
    Conflict(String),
    /// No such ticket version.
    VersionNotFound(String),
    /// The queue is full: try again later.
    Busy(String),
    /// No token, or not a live one.
    Unauthorized(String),
    /// The token's role may not do this, or the host or origin is not allowed.
    Forbidden(&'static str, String),
    /// The body is over the limit.
    TooLarge(String),
    /// No such connector (or it takes no webhooks).
    ConnectorNotFound(String),
    /// The help desk failed or refused a call deskhost made for this request.
    Upstream(String),
    /// The host failed.
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str, &str) {
        use StatusCode as S;
        match self {
            ApiError::InvalidTicket(m) => (S::BAD_REQUEST, "invalid_ticket", "invalid_request", m),
            ApiError::Invalid(m) => (S::BAD_REQUEST, "invalid_request", "invalid_request", m),
            ApiError::RunNotFound(m) => (S::NOT_FOUND, "run_not_found", "invalid_request", m),
            ApiError::ReviewNotFound(m) => (S::NOT_FOUND, "review_not_found", "invalid_request", m),
            ApiError::Conflict(m) => (S::CONFLICT, "review_conflict", "invalid_request", m),
            ApiError::VersionNotFound(m) => {
                (S::NOT_FOUND, "version_not_found", "invalid_request", m)
            }
            ApiError::Busy(m) => (S::TOO_MANY_REQUESTS, "queue_full", "busy", m),
            ApiError::Unauthorized(m) => (S::UNAUTHORIZED, "unauthorized", "auth", m),
            ApiError::Forbidden(code, m) => (S::FORBIDDEN, code, "auth", m),
            ApiError::TooLarge(m) => (S::PAYLOAD_TOO_LARGE, "body_too_large", "invalid_request", m),
            ApiError::ConnectorNotFound(m) => {
                (S::NOT_FOUND, "connector_not_found", "invalid_request", m)
            }
            ApiError::Upstream(m) => (S::BAD_GATEWAY, "help_desk_failed", "upstream", m),
            ApiError::Internal(m) => (S::INTERNAL_SERVER_ERROR, "internal", "internal", m),
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
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("2"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<ReviewError> for ApiError {
    fn from(e: ReviewError) -> Self {
        match e {
            ReviewError::NotFound(_) => ApiError::ReviewNotFound(e.to_string()),
            ReviewError::Conflict { .. } => ApiError::Conflict(e.to_string()),
            ReviewError::Invalid(m) => ApiError::Invalid(m),
            ReviewError::Store(e) => ApiError::Internal(e.to_string()),
        }
    }
}

/// The router over a workspace and its pipeline.
pub fn router(ws: Workspace, pipeline: Pipeline, options: ServerOptions) -> Router {
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "[::1]", "::1"]
        .iter()
        .map(|h| h.to_string())
        .collect();
    hosts.extend(options.allowed_hosts.iter().map(|h| h.to_ascii_lowercase()));
    let state = AppState {
        ws,
        pipeline,
        concurrency: options.concurrency.max(1),
        hosts: Arc::new(hosts),
        max_pending: options.max_pending,
        secure_cookies: options.secure_cookies,
        connectors: Arc::new(options.connectors.clone()),
    };
    let needs =
        |role: Option<Role>| middleware::from_fn_with_state((state.clone(), role), authorize);
    let ingest = Router::new()
        .route("/v1/tickets", post(tickets))
        .route_layer(needs(Some(Role::Ingest)));
    let reviewer = Router::new()
        .route("/v1/runs/{run_id}", get(run))
        .route("/v1/reviews", get(reviews))
        .route("/v1/reviews/report", get(review_report))
        .route("/v1/reviews/{id}", get(review_item))
        .route("/v1/reviews/{id}/actions", post(review_action))
        .route_layer(needs(Some(Role::Reviewer)));
    let anyone = Router::new()
        .route("/v1/plugins", get(plugins))
        .route("/v1/tickets/{id}/versions/{version}", get(version_state))
        .route("/metrics", get(metrics))
        .route_layer(needs(None));
    Router::new()
        .merge(ingest)
        .merge(reviewer)
        .merge(anyone)
        .merge(ui::routes(state.clone()))
        .route("/v1/connectors/{name}/webhook", post(webhook))
        .route(
            "/v1/openapi.json",
            get(|| async { Json(openapi::document()) }),
        )
        .route(
            "/healthz",
            get(|| async {
                Json(Health {
                    status: "ok".into(),
                })
            }),
        )
        .layer(middleware::from_fn_with_state(state.clone(), check_host))
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .with_state(state)
}

/// The host part of a `Host` header or an origin's authority, lowercased, without port.
fn host_of(authority: &str) -> String {
    let a = authority.trim().to_ascii_lowercase();
    if a.starts_with('[') {
        return a
            .split_inclusive(']')
            .next()
            .unwrap_or_default()
            .to_string();
    }
    match a.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host.to_string(),
        _ => a,
    }
}

/// Refuses requests that name a host this server is not (DNS rebinding) or come from a web
/// page of another origin.
async fn check_host(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let allowed = |h: &str| state.hosts.iter().any(|a| a == h);
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(host_of)
        .unwrap_or_default();
    if !allowed(&host) {
        return Err(ApiError::Forbidden(
            "host_not_allowed",
            format!(
                "requests must be addressed to an allowed host, not {:?}; start `deskhost serve` with --allowed-host NAME to add one",
                deskhost_engine::sanitize::field(&host)
            ),
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        let authority = origin
            .split_once("://")
            .map(|(_, rest)| rest)
            .unwrap_or_default();
        if !allowed(&host_of(authority)) {
            return Err(ApiError::Forbidden(
                "origin_not_allowed",
                format!(
                    "requests from the web origin {:?} are not allowed",
                    deskhost_engine::sanitize::field(origin)
                ),
            ));
        }
    }
    Ok(next.run(request).await)
}

/// Resolves the bearer token and checks its role; the handler sees the token's holder.
async fn authorize(
    State((state, needed)): State<(AppState, Option<Role>)>,
    headers: HeaderMap,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "send `Authorization: Bearer <token>`; `deskhost token create` makes one".into(),
            )
        })?;
    let token = state
        .ws
        .store
        .token_for(secret)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .ok_or_else(|| ApiError::Unauthorized("the token is not valid or was revoked".into()))?;
    if let Some(needed) = needed
        && !token.role.allows(needed)
    {
        return Err(ApiError::Forbidden(
            "forbidden",
            format!(
                "a {} token may not do this; it needs the {} role",
                token.role.as_str(),
                needed.as_str()
            ),
        ));
    }
    request.extensions_mut().insert(token);
    Ok(next.run(request).await)
}

/// Serves until `shutdown` resolves, then finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ws: Workspace,
    pipeline: Pipeline,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(ws, pipeline, options))
        .with_graceful_shutdown(shutdown)
        .await
}

/// `GET /v1/reviews` filters.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewFilter {
    status: Option<String>,
    reason: Option<String>,
    queue: Option<String>,
    plugin: Option<String>,
    assignee: Option<String>,
    limit: Option<usize>,
}

async fn reviews(
    State(state): State<AppState>,
    filter: Result<Query<ReviewFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<ReviewItem>>, ApiError> {
    let Query(f) = filter.map_err(|e| ApiError::Invalid(e.body_text()))?;
    let status = match f.status.as_deref() {
        None | Some("open") => Some(ReviewStatus::Open),
        Some("approved") => Some(ReviewStatus::Approved),
        Some("rejected") => Some(ReviewStatus::Rejected),
        Some("all") => None,
        Some(other) => {
            return Err(ApiError::Invalid(format!(
                "status {:?} is not open, approved, rejected or all",
                deskhost_engine::sanitize::field(other)
            )));
        }
    };
    let query = ReviewQuery {
        status,
        reason: f.reason,
        queue: f.queue,
        plugin: f.plugin,
        assignee: f.assignee,
        limit: f.limit.unwrap_or(100).min(1000),
    };
    let items = state
        .ws
        .store
        .review_items(&query)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(items))
}

async fn review_report(
    State(state): State<AppState>,
) -> Result<Json<deskhost_protocol::review::ReviewReport>, ApiError> {
    state
        .ws
        .store
        .review_report()
        .await
        .map(Json)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

async fn review_item(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ReviewDetail>, ApiError> {
    review::detail(&state.ws, &id)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map(Json)
        .ok_or_else(|| {
            ApiError::ReviewNotFound(format!(
                "no review item {}",
                deskhost_engine::sanitize::field(&id)
            ))
        })
}

async fn review_action(
    State(state): State<AppState>,
    Extension(token): Extension<TokenInfo>,
    Path(id): Path<String>,
    body: Result<Json<ReviewAction>, JsonRejection>,
) -> Result<Json<ReviewActed>, ApiError> {
    let Json(action) = body.map_err(|e| {
        body_error(
            &e,
            "a review action: {\"action\": \"approve\"|\"reject\"|\"assign\", …}",
        )
    })?;
    Ok(Json(
        review::act(&state.ws, &id, &token.name, &action).await?,
    ))
}

/// A JSON body that did not arrive whole or does not parse.
fn body_error(e: &JsonRejection, expected: &str) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge(format!(
            "the request body is over the server's limit; send {expected} in smaller requests"
        ))
    } else {
        ApiError::Invalid(format!(
            "the request body must be {expected}: {}",
            e.body_text()
        ))
    }
}

/// `POST /v1/tickets` options.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct IngestParams {
    /// Answer with the decisions (200) instead of accepting for the background workers (202).
    #[serde(default)]
    wait: bool,
}

async fn tickets(
    State(state): State<AppState>,
    params: Result<Query<IngestParams>, axum::extract::rejection::QueryRejection>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::Invalid(e.body_text()))?;
    let Json(body) =
        body.map_err(
            |e| match body_error(&e, "a JSON ticket object or an array of them") {
                ApiError::Invalid(m) => ApiError::InvalidTicket(m),
                other => other,
            },
        )?;
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
    if state.max_pending > 0 {
        let pending = state
            .ws
            .store
            .pending_count()
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        if pending >= state.max_pending {
            return Err(ApiError::Busy(format!(
                "{pending} ticket versions wait for a decision (the limit is {}); nothing was stored, send again after Retry-After",
                state.max_pending
            )));
        }
    }
    // A caller that waits has its new versions claimed as they are stored: the background
    // worker cannot take them in between and make the request wait on its lease.
    let store = &state.ws.store;
    let pipeline = &state.pipeline;
    let ingested = if params.wait {
        store
            .ingest_tickets_claimed(&inputs, pipeline.worker(), pipeline.lease())
            .await
    } else {
        store.ingest_tickets(&inputs).await
    }
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    state
        .pipeline
        .metrics
        .ingested(ingested.iter().filter(|i| i.new_version).count() as u64);
    if !params.wait {
        let mut accepted: Vec<Accepted> = ingested
            .into_iter()
            .map(|i| Accepted {
                ticket_id: i.id,
                ticket_version: i.version,
                new_version: i.new_version,
                pending: i.pending,
            })
            .collect();
        let body = match accepted.pop() {
            Some(one) if single => OneOrMany::One(one),
            last => {
                accepted.extend(last);
                OneOrMany::Many(accepted)
            }
        };
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }
    let patience = std::time::Duration::from_secs(state.ws.config.store.lease_seconds.max(1));
    let mut results: Vec<RunLine> = futures::stream::iter(ingested)
        .map(|i| async move {
            if !i.pending {
                return RunLine::AlreadyDecided {
                    ticket_id: i.id,
                    ticket_version: i.version,
                };
            }
            if i.new_version {
                // Claimed by this request's ingest; decided in a task of its own, so the
                // tickets of one request use every core.
                return pipeline.decide_claimed_in_task(i.id, i.version, None).await;
            }
            pipeline.decide_or_wait(&i.id, i.version, patience).await
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
    })
    .into_response())
}

/// Prometheus text: this process's counters and latencies, the store's queue and backlog.
async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let store = &state.ws.store;
    let internal = |e: deskhost_engine::store::StoreError| ApiError::Internal(e.to_string());
    let backlog = store.review_backlog().await.map_err(internal)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    // Seconds since an RFC 3339 time.
    let age = |at: Option<&str>| {
        at.and_then(deskhost_protocol::digest::parse_rfc3339_secs)
            .map(|t| u64::try_from(now - t).unwrap_or(0))
    };
    let mut gauges = deskhost_engine::metrics::StoreGauges {
        pending: store.pending_count().await.map_err(internal)?,
        review_open: backlog.open,
        review_oldest_seconds: age(backlog.oldest.as_deref()),
        outbox: store.outbox_states().await.map_err(internal)?,
        connectors: Vec::new(),
    };
    for name in state.ws.config.connectors.keys() {
        let status = store.connector_status(name).await.map_err(internal)?;
        let up = status.last_error.is_none() && status.paused.is_none();
        gauges
            .connectors
            .push((name.clone(), up, age(status.oldest_waiting.as_deref())));
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.pipeline.metrics.render(&gauges),
    )
        .into_response())
}

/// Where a ticket version stands, and its decision once made.
async fn version_state(
    State(state): State<AppState>,
    Extension(token): Extension<TokenInfo>,
    Path((id, version)): Path<(String, u32)>,
) -> Result<Json<VersionState>, ApiError> {
    let (queue_state, decision) = state
        .ws
        .store
        .version_state(&id, version)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .ok_or_else(|| {
            ApiError::VersionNotFound(format!(
                "ticket {} has no version {version}",
                deskhost_engine::sanitize::field(&id)
            ))
        })?;
    let decision = decision
        .filter(|_| token.role.allows(Role::Reviewer))
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|e| ApiError::Internal(format!("a stored decision does not decode: {e}")))?;
    Ok(Json(VersionState {
        state: queue_state,
        decision,
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

/// A help desk's push: checks the signature before reading the body, then fetches the named
/// ticket and takes it in.
async fn webhook(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    use deskhost_connectors::webhook::{self as hook, WebhookError};
    let connector = state
        .connectors
        .iter()
        .find(|c| c.name == name && c.pushes())
        .ok_or_else(|| {
            ApiError::ConnectorNotFound(format!(
                "no connector {} takes webhooks here (a kind = \"zendesk\" connector in deskhost.toml)",
                deskhost_engine::sanitize::field(&name)
            ))
        })?;
    let secret = connector.webhook_secret().ok_or_else(|| {
        ApiError::Unauthorized(format!(
            "connector {} has no webhook secret (webhook_secret_env); its webhooks are refused",
            connector.name
        ))
    })?;
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    hook::verify_zendesk(
        &secret,
        header("x-zendesk-webhook-signature"),
        header("x-zendesk-webhook-signature-timestamp"),
        &body,
        now,
    )
    .map_err(|e| ApiError::Unauthorized(e.to_string()))?;
    let id = hook::ticket_id(&body).map_err(|e| match e {
        WebhookError::Malformed(m) => ApiError::Invalid(m),
        other => ApiError::Invalid(other.to_string()),
    })?;
    let taken = connector
        .take_in(&state.ws.store, &id)
        .await
        .map_err(|e| ApiError::Upstream(format!("ticket {id}: {e}")))?;
    if taken.new_versions > 0 {
        state.pipeline.metrics.ingested(taken.new_versions as u64);
    }
    Ok((StatusCode::ACCEPTED, Json(taken)).into_response())
}
