//! The review UI: server-rendered HTML under `/ui`, for reviewers in a browser.
//!
//! Sign-in takes an API token of the `reviewer` (or `admin`) role and opens a session: a
//! random secret in an `HttpOnly`, `SameSite=Strict` cookie scoped to `/ui` (add `Secure`
//! with `deskhost serve --secure-cookies` behind TLS); the store keeps its SHA-256
//! ([`deskhost_engine::store`]'s `ui_sessions`), and revoking the token ends it at once.
//! Every form carries the session's CSRF secret, compared in constant time; the host and
//! origin checks of the API apply here too. Pages are [`maud`] templates, so every value is
//! HTML-escaped, and text from tickets and plugins also has its control and bidi characters
//! made visible ([`deskhost_engine::sanitize`]). Assets (one stylesheet, one small script for
//! the keyboard shortcuts) are compiled in; the content security policy allows nothing else.

mod pages;

use crate::AppState;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Extension, Form, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use deskhost_engine::review::{self, ReviewError, ReviewQuery};
use deskhost_engine::sessions::UiSession;
use deskhost_engine::store::StoreError;
use deskhost_protocol::proposal::ReplyProposal;
use deskhost_protocol::review::{ReviewAction, ReviewEdits, Role};
use deskhost_protocol::run::ReviewStatus;
use maud::Markup;
use serde::Deserialize;

/// The session cookie's name.
const COOKIE: &str = "deskhost_session";
/// How long a session lasts.
const SESSION_SECONDS: u64 = 12 * 3600;
/// The policy every UI response carries: nothing but this server's own script and styles,
/// no framing, forms post only here.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The `/ui` routes.
pub(crate) fn routes(state: AppState) -> Router<AppState> {
    let signed_in = Router::new()
        .route("/ui/queue", get(queue))
        .route("/ui/items/{id}", get(item).post(act))
        .route("/ui/report", get(report))
        .route("/ui/outbox", get(outbox))
        .route("/ui/outbox/{id}/retry", axum::routing::post(outbox_retry))
        .route("/ui/sign-out", axum::routing::post(sign_out))
        .route_layer(middleware::from_fn_with_state(state, require_session));
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/queue") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/queue") }))
        .route("/ui/sign-in", get(sign_in_page).post(sign_in))
        .route("/ui/assets/{name}", get(asset))
        .merge(signed_in)
        .layer(middleware::from_fn(security_headers))
}

/// A page or a redirect, or a page saying what went wrong.
type UiResult = Result<Response, UiError>;

/// What the UI answers when it cannot do what was asked.
pub(crate) struct UiError {
    status: StatusCode,
    message: String,
    session: Option<Box<UiSession>>,
}

impl UiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            session: None,
        }
    }
}

impl From<StoreError> for UiError {
    fn from(e: StoreError) -> Self {
        UiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let page = pages::error(self.session.as_deref(), self.status, &self.message);
        (self.status, html(page)).into_response()
    }
}

fn html(markup: Markup) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The session cookie's secret, if the request carries one.
fn session_secret(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
}

/// Pages past sign-in see the session; without a live one the browser goes to sign-in.
async fn require_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    mut request: Request,
    next: Next,
) -> Response {
    let session = match session_secret(&headers) {
        Some(secret) => state.ws.store.session_for(&secret).await,
        None => Ok(None),
    };
    match session {
        Ok(Some(s)) if s.token.role.allows(Role::Reviewer) => {
            request.extensions_mut().insert(s);
            next.run(request).await
        }
        Ok(_) => Redirect::to("/ui/sign-in").into_response(),
        Err(e) => UiError::from(e).into_response(),
    }
}

/// Whether a form's CSRF field is this session's secret (constant time).
fn csrf_ok(session: &UiSession, sent: &str) -> bool {
    let (a, b) = (session.csrf.as_bytes(), sent.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn check_csrf(session: &UiSession, sent: &str) -> Result<(), UiError> {
    if csrf_ok(session, sent) {
        Ok(())
    } else {
        Err(UiError {
            status: StatusCode::FORBIDDEN,
            message: "this form is stale or did not come from this page (its CSRF token does not match your session); reload the page and try again".into(),
            session: Some(Box::new(session.clone())),
        })
    }
}

fn cookie(state: &AppState, value: &str, max_age: u64) -> HeaderValue {
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("deskhost_session=; Path=/ui; Max-Age=0"))
}

async fn sign_in_page() -> Response {
    html(pages::sign_in(None))
}

#[derive(Deserialize)]
struct SignIn {
    #[serde(default)]
    token: String,
}

async fn sign_in(
    State(state): State<AppState>,
    form: Result<Form<SignIn>, FormRejection>,
) -> UiResult {
    let refuse = |status: StatusCode, message: &str| {
        Ok((status, html(pages::sign_in(Some(message)))).into_response())
    };
    let Ok(Form(form)) = form else {
        return refuse(StatusCode::BAD_REQUEST, "Paste a token to sign in.");
    };
    let Some(token) = state.ws.store.token_for(form.token.trim()).await? else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "That token is not valid or was revoked. `deskhost token create --name NAME --role reviewer` makes one.",
        );
    };
    if !token.role.allows(Role::Reviewer) {
        return refuse(
            StatusCode::FORBIDDEN,
            "That token may only send tickets; signing in to review needs a reviewer or admin token.",
        );
    }
    let opened = state.ws.store.open_session(&token, SESSION_SECONDS).await?;
    let mut response = Redirect::to("/ui/queue").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        cookie(&state, &opened.secret, SESSION_SECONDS),
    );
    Ok(response)
}

#[derive(Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

async fn sign_out(
    State(state): State<AppState>,
    Extension(session): Extension<UiSession>,
    headers: HeaderMap,
    form: Result<Form<CsrfOnly>, FormRejection>,
) -> UiResult {
    let sent = form.map(|Form(f)| f.csrf).unwrap_or_default();
    check_csrf(&session, &sent)?;
    if let Some(secret) = session_secret(&headers) {
        state.ws.store.close_session(&secret).await?;
    }
    let mut response = Redirect::to("/ui/sign-in").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie(&state, "", 0));
    Ok(response)
}

/// The queue page's filters (the API's, as a form) and the item a just-taken action was on.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct QueueFilter {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub queue: String,
    #[serde(default)]
    pub plugin: String,
    #[serde(default)]
    pub assignee: String,
    #[serde(default)]
    pub done: String,
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

fn status_of(text: &str) -> Result<Option<ReviewStatus>, String> {
    match text {
        "" | "open" => Ok(Some(ReviewStatus::Open)),
        "approved" => Ok(Some(ReviewStatus::Approved)),
        "rejected" => Ok(Some(ReviewStatus::Rejected)),
        "all" => Ok(None),
        _ => Err("the status filter is one of open, approved, rejected, all".into()),
    }
}

async fn queue(
    State(state): State<AppState>,
    Extension(session): Extension<UiSession>,
    filter: Result<Query<QueueFilter>, axum::extract::rejection::QueryRejection>,
) -> UiResult {
    let with_session = |e: UiError| UiError {
        session: Some(Box::new(session.clone())),
        ..e
    };
    let Query(filter) =
        filter.map_err(|e| with_session(UiError::new(StatusCode::BAD_REQUEST, e.body_text())))?;
    let status = status_of(&filter.status)
        .map_err(|m| with_session(UiError::new(StatusCode::BAD_REQUEST, m)))?;
    let query = ReviewQuery {
        status,
        reason: non_empty(&filter.reason),
        queue: non_empty(&filter.queue),
        plugin: non_empty(&filter.plugin),
        assignee: non_empty(&filter.assignee),
        limit: 200,
    };
    let store = &state.ws.store;
    let items = store.review_items(&query).await.map_err(UiError::from)?;
    let mut rows = Vec::with_capacity(items.len());
    for item in items {
        let subject = store
            .ticket(&item.ticket_id, item.ticket_version)
            .await?
            .map(|t| t.input.subject)
            .unwrap_or_default();
        rows.push((item, subject));
    }
    let done = match non_empty(&filter.done) {
        Some(id) => store.review_item(&id).await?,
        None => None,
    };
    let backlog = store.review_backlog().await?;
    Ok(html(pages::queue(
        &session,
        &filter,
        &rows,
        done.as_ref(),
        &backlog,
        now_secs(),
    )))
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What the reviewer typed into an item's forms (kept when an action is refused).
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct ActionForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub queue: String,
    #[serde(default)]
    pub priority: String,
    #[serde(default)]
    pub language: String,
    #[serde(default)]
    pub reply: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub to: String,
}

async fn item(
    State(state): State<AppState>,
    Extension(session): Extension<UiSession>,
    Path(id): Path<String>,
) -> UiResult {
    render_item(&state, &session, &id, None, StatusCode::OK).await
}

/// The item page, with a refused form's input and the reason when there is one.
async fn render_item(
    state: &AppState,
    session: &UiSession,
    id: &str,
    refused: Option<(&ActionForm, &str)>,
    status: StatusCode,
) -> UiResult {
    let Some(detail) = review::detail(&state.ws, id).await? else {
        return Err(UiError {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "There is no review item {}.",
                deskhost_engine::sanitize::field(id)
            ),
            session: Some(Box::new(session.clone())),
        });
    };
    // Previous and next in the open queue, for j/k.
    let open = state
        .ws
        .store
        .review_items(&ReviewQuery {
            status: Some(ReviewStatus::Open),
            limit: 1000,
            ..ReviewQuery::default()
        })
        .await?;
    let at = open.iter().position(|i| i.id == detail.item.id);
    let (prev, next) = match at {
        Some(i) => (
            i.checked_sub(1)
                .and_then(|p| open.get(p))
                .map(|x| x.id.clone()),
            open.get(i + 1).map(|x| x.id.clone()),
        ),
        None => (None, open.first().map(|x| x.id.clone())),
    };
    let page = pages::item(
        session,
        &detail,
        &state.ws.config.taxonomy,
        pages::Neighbours { prev, next },
        refused,
        now_secs(),
    );
    Ok((status, html(page)).into_response())
}

/// The edits an approve form makes: only the fields the reviewer changed from the proposal.
fn edits_from(form: &ActionForm, detail: &deskhost_protocol::api::ReviewDetail) -> ReviewEdits {
    let triage = detail.item.payload.triage.as_ref();
    let changed = |sent: &str, proposed: Option<String>| {
        let sent = sent.trim();
        (!sent.is_empty() && Some(sent) != proposed.as_deref()).then(|| sent.to_string())
    };
    let draft = match &detail.item.payload.reply {
        Some(ReplyProposal::Draft(d)) => Some(d.body.replace("\r\n", "\n")),
        _ => None,
    };
    let reply = form.reply.replace("\r\n", "\n");
    let reply = (!reply.trim().is_empty() && draft.as_deref().map(str::trim) != Some(reply.trim()))
        .then_some(reply);
    ReviewEdits {
        category: changed(&form.category, triage.map(|t| t.category.value.clone())),
        queue: changed(&form.queue, triage.map(|t| t.queue.value.clone())),
        priority: changed(
            &form.priority,
            triage.map(|t| pages::tag(&t.priority.value)),
        ),
        language: changed(&form.language, triage.map(|t| t.language.value.clone())),
        reply,
    }
}

async fn act(
    State(state): State<AppState>,
    Extension(session): Extension<UiSession>,
    Path(id): Path<String>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> UiResult {
    let form = match form {
        Ok(Form(f)) => f,
        Err(e) => {
            return Err(UiError {
                status: e.status(),
                message: format!("The form did not arrive whole: {}", e.body_text()),
                session: Some(Box::new(session.clone())),
            });
        }
    };
    check_csrf(&session, &form.csrf)?;
    let Some(detail) = review::detail(&state.ws, &id).await? else {
        return Err(UiError {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "There is no review item {}.",
                deskhost_engine::sanitize::field(&id)
            ),
            session: Some(Box::new(session.clone())),
        });
    };
    let action = match form.action.as_str() {
        "approve" => ReviewAction::Approve {
            edits: edits_from(&form, &detail),
        },
        "reject" => ReviewAction::Reject {
            reason: form.reason.trim().to_string(),
        },
        "assign" => ReviewAction::Assign {
            to: form.to.trim().to_string(),
        },
        _ => {
            let m = "Choose approve, reject or assign.";
            return render_item(
                &state,
                &session,
                &id,
                Some((&form, m)),
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
    };
    if let Err(m) = action.check() {
        return render_item(
            &state,
            &session,
            &id,
            Some((&form, &m)),
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    match review::act(&state.ws, &id, &session.token.name, &action).await {
        Ok(_) => {
            Ok(Redirect::to(&format!("/ui/queue?done={}", url_component(&id))).into_response())
        }
        Err(e) => {
            let status = match &e {
                ReviewError::Conflict { .. } => StatusCode::CONFLICT,
                ReviewError::NotFound(_) => StatusCode::NOT_FOUND,
                ReviewError::Invalid(_) => StatusCode::BAD_REQUEST,
                ReviewError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let message = e.to_string();
            render_item(&state, &session, &id, Some((&form, &message)), status).await
        }
    }
}

/// `s` percent-encoded for a URL path segment or query value.
pub(crate) fn url_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn report(
    State(state): State<AppState>,
    Extension(session): Extension<UiSession>,
) -> UiResult {
    let report = state.ws.store.review_report().await?;
    Ok(html(pages::report(&session, &report, now_secs())))
}

/// The outbox page's filter.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct OutboxFilter {
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub connector: String,
}

async fn outbox(
    State(state): State<AppState>,
    Extension(session): Extension<UiSession>,
    filter: Result<Query<OutboxFilter>, axum::extract::rejection::QueryRejection>,
) -> UiResult {
    let bad = |m: String| UiError {
        status: StatusCode::BAD_REQUEST,
        message: m,
        session: Some(Box::new(session.clone())),
    };
    let Query(filter) = filter.map_err(|e| bad(e.body_text()))?;
    let wanted = match non_empty(&filter.state) {
        Some(s) => Some(s.parse().map_err(|e: String| bad(format!("state {e}")))?),
        None => None,
    };
    let connector = non_empty(&filter.connector);
    let items = state
        .ws
        .store
        .outbox_items(connector.as_deref(), wanted, 200)
        .await?;
    let counts = state.ws.store.outbox_states().await?;
    Ok(html(pages::outbox(&session, &filter, &items, &counts)))
}

async fn outbox_retry(
    State(state): State<AppState>,
    Extension(session): Extension<UiSession>,
    Path(id): Path<String>,
    form: Result<Form<CsrfOnly>, FormRejection>,
) -> UiResult {
    let sent = form.map(|Form(f)| f.csrf).unwrap_or_default();
    check_csrf(&session, &sent)?;
    match state
        .ws
        .store
        .retry_outbox(&id, &session.token.name)
        .await?
    {
        Some(_) => Ok(Redirect::to("/ui/outbox?state=pending").into_response()),
        None => Err(UiError {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "There is no outbox item {}.",
                deskhost_engine::sanitize::field(&id)
            ),
            session: Some(Box::new(session.clone())),
        }),
    }
}

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

async fn asset(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "app.css" => (CSS, "text/css; charset=utf-8"),
        "app.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; deskhost_session=abc ; b=2"),
        );
        assert_eq!(session_secret(&h).as_deref(), Some("abc"));
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("xdeskhost_session=abc"),
        );
        assert_eq!(session_secret(&h), None);
    }

    #[test]
    fn url_components_escape_everything_but_unreserved() {
        assert_eq!(url_component("rev_1-a.b~"), "rev_1-a.b~");
        assert_eq!(url_component("a b/?&<"), "a%20b%2F%3F%26%3C");
    }
}
