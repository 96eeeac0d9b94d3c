//! The Zendesk client against a local server that checks every request against Zendesk's
//! documented contract (no Zendesk can be reached from here): API-token basic auth, the
//! cursor-based incremental ticket export, ticket updates with `custom_fields`, `group_id`,
//! `priority`, `additional_tags` and private or public `comment`s, `Idempotency-Key` (a
//! repeated key answers the first response and writes nothing; the same key with another
//! body is refused), and 429 with `Retry-After`.

#![allow(clippy::expect_used)]

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use deskhost_connectors::zendesk::ZendeskClient;
use deskhost_connectors::{Connector, Error};
use deskhost_protocol::config::{ConnectorConfig, ConnectorKind};
use deskhost_protocol::gate::Effect;
use deskhost_protocol::outbox::{
    AssessmentKind, OutboxItem, OutboxState, Outgoing, OutgoingAssessment,
};
use deskhost_protocol::proposal::Sentiment;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

const EMAIL: &str = "agent@example.com";
const TOKEN: &str = "zd-token-123";

#[derive(Default)]
struct Desk {
    /// Writes that took effect: (ticket id, ticket object).
    writes: Vec<(String, Value)>,
    /// Idempotency key → (body, response).
    keys: HashMap<String, (Value, Value)>,
    /// Contract violations seen (the test fails on any).
    violations: Vec<String>,
    rate_limited_once: bool,
    /// Comments per ticket, oldest first, as `GET /tickets/ID/comments.json` lists them.
    comments: HashMap<String, Vec<Value>>,
    /// Reads of a ticket's comments.
    comment_reads: usize,
    /// Tickets the export lists as changed after the cursor `c2`.
    changed: Vec<u64>,
}

type Shared = Arc<Mutex<Desk>>;

fn authorized(headers: &HeaderMap) -> bool {
    let expected = format!(
        "Basic {}",
        base64_encode(format!("{EMAIL}/token:{TOKEN}").as_bytes())
    );
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == expected)
}

fn base64_encode(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": "Couldn't authenticate you"})),
    )
        .into_response()
}

async fn me(headers: HeaderMap) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    Json(json!({"user": {"id": 7, "email": EMAIL}})).into_response()
}

async fn export(
    State(desk): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    let ticket = |id: u64, status: &str, subject: &str| {
        json!({
            "id": id, "subject": subject, "description": format!("{subject}: details"),
            "status": status, "priority": "normal", "group_id": 100, "tags": ["vip"],
            "custom_fields": [{"id": 11, "value": "billing"}, {"id": 12, "value": null}],
            "requester_id": 900 + id, "via": {"channel": "email"},
            "created_at": "2026-12-01T10:00:00Z", "updated_at": "2026-12-01T11:00:00Z"
        })
    };
    // Exactly one of start_time and cursor (the documented cursor-based export).
    match (q.get("start_time"), q.get("cursor").map(String::as_str)) {
        (Some(t), None) if t == "0" => Json(json!({
            "tickets": [ticket(1, "new", "Charged twice"), ticket(2, "open", "Refund")],
            "after_cursor": "c1", "after_url": "…", "before_cursor": null, "end_of_stream": false
        }))
        .into_response(),
        (None, Some("c1")) => Json(json!({
            "tickets": [ticket(3, "solved", "Old question")],
            "after_cursor": "c2", "after_url": "…", "end_of_stream": true
        }))
        .into_response(),
        (None, Some("c2")) => {
            let changed = std::mem::take(&mut desk.lock().expect("lock").changed);
            let tickets: Vec<Value> = changed
                .iter()
                .map(|&id| ticket(id, "open", "Refund"))
                .collect();
            Json(json!({
                "tickets": tickets, "after_cursor": "c2", "end_of_stream": true
            }))
            .into_response()
        }
        _ => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "InvalidPaginationParameter"})),
        )
            .into_response(),
    }
}

/// Checks a ticket update body against the documented fields and types.
fn check_update(body: &Value) -> Result<&Value, String> {
    let t = body["ticket"]
        .as_object()
        .ok_or("the body must be {\"ticket\": {…}}")?;
    for (k, v) in t {
        let ok = match k.as_str() {
            "custom_fields" => v.as_array().is_some_and(|a| {
                a.iter()
                    .all(|f| f["id"].is_u64() && (f["value"].is_string() || f["value"].is_null()))
            }),
            "group_id" => v.is_u64(),
            "priority" => matches!(v.as_str(), Some("low" | "normal" | "high" | "urgent")),
            "additional_tags" => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
            "comment" => v["body"].is_string() && v["public"].is_boolean(),
            _ => false,
        };
        if !ok {
            return Err(format!(
                "ticket.{k} = {v} is not a documented field of that type"
            ));
        }
    }
    Ok(&body["ticket"])
}

/// `GET /api/v2/tickets/{id}/comments.json`: newest first with `sort_order=desc`, cursor
/// pagination (`page[size]` up to 100).
async fn comments(
    State(desk): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    let mut desk = desk.lock().expect("lock");
    desk.comment_reads += 1;
    let size: usize = q
        .get("page[size]")
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    if size == 0 || size > 100 {
        desk.violations.push(format!(
            "comments of {id}: page[size] {size} is not 1..=100"
        ));
    }
    let mut list = desk.comments.get(&id).cloned().unwrap_or_default();
    if q.get("sort_order").map(String::as_str) == Some("desc") {
        list.reverse();
    }
    list.truncate(size);
    Json(json!({
        "comments": list,
        "meta": {"has_more": false},
        "links": {"next": null, "prev": null},
    }))
    .into_response()
}

async fn update(
    State(desk): State<Shared>,
    Path(file): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    let mut desk = desk.lock().expect("lock");
    let id = file.trim_end_matches(".json").to_string();
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
        desk.violations
            .push(format!("ticket {id}: not application/json"));
    }
    if id == "429" && !desk.rate_limited_once {
        desk.rate_limited_once = true;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "7")],
            Json(json!({"error": "APIRateLimitExceeded"})),
        )
            .into_response();
    }
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        desk.violations
            .push(format!("ticket {id}: no Idempotency-Key"));
        return StatusCode::BAD_REQUEST.into_response();
    };
    let body: Value = match serde_json::from_str(&body) {
        Ok(b) => b,
        Err(e) => {
            desk.violations
                .push(format!("ticket {id}: body is not JSON: {e}"));
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    if let Some((first, answer)) = desk.keys.get(&key).cloned() {
        if first != body {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "IdempotentRequestError"})),
            )
                .into_response();
        }
        return ([("x-idempotency-lookup", "hit")], Json(answer)).into_response();
    }
    let ticket = match check_update(&body) {
        Ok(t) => t.clone(),
        Err(e) => {
            desk.violations.push(format!("ticket {id}: {e}"));
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "RecordInvalid"})),
            )
                .into_response();
        }
    };
    if let Some(c) = ticket.get("comment") {
        let list = desk.comments.entry(id.clone()).or_default();
        let n = 9000 + list.len();
        list.push(json!({
            "id": n,
            "body": c["body"],
            "public": c["public"],
            "created_at": deskhost_protocol::digest::now_rfc3339(),
        }));
    }
    desk.writes.push((id.clone(), ticket));
    let answer = json!({"ticket": {"id": id.parse::<u64>().unwrap_or(0)}, "audit": {"id": 5000 + desk.writes.len()}});
    desk.keys.insert(key, (body, answer.clone()));
    ([("x-idempotency-lookup", "miss")], Json(answer)).into_response()
}

async fn zendesk() -> (String, Shared) {
    let desk: Shared = Arc::default();
    let app = Router::new()
        .route("/api/v2/users/me.json", get(me))
        .route("/api/v2/incremental/tickets/cursor.json", get(export))
        .route("/api/v2/tickets/{file}", put(update))
        .route("/api/v2/tickets/{id}/comments.json", get(comments))
        .with_state(desk.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, desk)
}

fn fields() -> BTreeMap<String, u64> {
    BTreeMap::from([
        ("category".into(), 11),
        ("language".into(), 12),
        ("sentiment".into(), 13),
        ("confidence".into(), 14),
    ])
}

fn client(url: &str, token: &str) -> ZendeskClient {
    ZendeskClient::new(reqwest::Client::new(), url, EMAIL, token, fields())
}

fn item(id: &str, ticket: &str, payload: Outgoing) -> OutboxItem {
    OutboxItem {
        seq: 1,
        id: id.into(),
        connector: "zd".into(),
        ticket_id: format!("zd:{ticket}"),
        external_id: ticket.into(),
        payload,
        origin: "run:r1".into(),
        state: OutboxState::Sending,
        attempts: 1,
        last_error: None,
        delivered_ref: None,
        created_at: String::new(),
        updated_at: String::new(),
    }
}

#[tokio::test]
async fn credentials_are_checked() {
    let (url, _) = zendesk().await;
    assert!(client(&url, TOKEN).probe().await.is_ok());
    assert!(matches!(
        client(&url, "wrong").probe().await,
        Err(Error::Auth(_))
    ));
}

#[tokio::test]
async fn intake_follows_the_cursor_to_the_end_of_the_stream() {
    let (url, desk) = zendesk().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("token");
    std::fs::write(&secret, format!("{TOKEN}\n")).expect("secret");
    let config = ConnectorConfig {
        kind: ConnectorKind::Zendesk,
        base_url: url,
        user: EMAIL.into(),
        secret_env: None,
        secret_file: Some(secret),
        write_back: vec![],
        intake_queues: vec![],
        queue_map: BTreeMap::from([("billing".into(), "100".into())]),
        poll_seconds: 30,
        max_attempts: 8,
        request_timeout_seconds: 5,
        concurrency: 4,
        webhook_secret_env: None,
        field_ids: fields(),
    };
    config.check("zd").expect("valid config");
    let store = deskhost_engine::store::Store::open(&dir.path().join("deskhost.db"))
        .await
        .expect("store");
    let connector = Connector::new("zd", &config).expect("connector");
    let first = connector.intake(&store).await.expect("intake");
    assert_eq!((first.read, first.new_versions), (3, 2), "{first:?}");
    let status = connector.status(&store).await.expect("status");
    assert_eq!(
        status.cursor.as_deref(),
        Some("c2"),
        "the cursor is the last after_cursor"
    );
    let ticket = store
        .ticket("zd:1", 1)
        .await
        .expect("read")
        .expect("zd:1 stored");
    assert_eq!(ticket.input.subject, "Charged twice");
    assert_eq!(
        store
            .ticket_for_external("zd", "2")
            .await
            .expect("source")
            .as_deref(),
        Some("zd:2")
    );
    let again = connector.intake(&store).await.expect("intake");
    assert_eq!((again.read, again.new_versions), (0, 0), "{again:?}");

    // The customer writes again: the ticket changes, and its public comments after the
    // description (not the agent's private note, not deskhost's own reply) are its messages.
    {
        let mut desk = desk.lock().expect("lock");
        let comment = |id: u64, author: u64, public: bool, body: &str| json!({"id": id, "author_id": author, "public": public, "body": body, "created_at": "2026-12-01T12:00:00Z"});
        desk.comments.insert(
            "2".into(),
            vec![
                comment(1, 902, true, "Refund: details"),
                comment(2, 7, true, "We are on it."),
                comment(3, 5, false, "check the ledger"),
                comment(4, 902, true, "Any news?"),
                comment(5, 5, true, "Tomorrow."),
            ],
        );
        desk.changed.push(2);
    }
    let followed = connector.intake(&store).await.expect("intake");
    assert_eq!(
        (followed.read, followed.new_versions),
        (1, 1),
        "{followed:?}"
    );
    let v2 = store
        .ticket("zd:2", 2)
        .await
        .expect("read")
        .expect("zd:2 version 2");
    let messages: Vec<(&str, &str)> = v2
        .input
        .messages
        .iter()
        .map(|m| (m.author.as_str(), m.body.as_str()))
        .collect();
    assert_eq!(
        messages,
        [("customer", "Any news?"), ("agent", "Tomorrow.")]
    );
    desk.lock().expect("lock").changed.push(2);
    let same = connector.intake(&store).await.expect("intake");
    assert_eq!(
        (same.read, same.new_versions),
        (1, 0),
        "unchanged: {same:?}"
    );
}

#[tokio::test]
async fn every_write_has_the_documented_shape_and_an_idempotency_key() {
    let (url, desk) = zendesk().await;
    let zd = client(&url, TOKEN);
    let queues = BTreeMap::from([("billing".to_string(), "100".to_string())]);
    let cases = [
        (
            Outgoing::Effect(Effect::Category {
                value: "billing".into(),
            }),
            json!({"custom_fields": [{"id": 11, "value": "billing"}]}),
        ),
        (
            Outgoing::Effect(Effect::Language { value: "de".into() }),
            json!({"custom_fields": [{"id": 12, "value": "de"}]}),
        ),
        (
            Outgoing::Effect(Effect::Queue {
                value: "billing".into(),
            }),
            json!({"group_id": 100}),
        ),
        (
            Outgoing::Effect(Effect::Priority {
                value: "medium".into(),
            }),
            json!({"priority": "normal"}),
        ),
        (
            Outgoing::Effect(Effect::Tags {
                values: vec!["refund".into()],
            }),
            json!({"additional_tags": ["refund"]}),
        ),
        (
            Outgoing::Effect(Effect::InternalNote {
                body: "note".into(),
            }),
            json!({"comment": {"body": "note", "public": false}}),
        ),
        (
            Outgoing::reply("Hello", vec![]),
            json!({"comment": {"body": "Hello", "public": true}}),
        ),
        (
            Outgoing::Assessment(OutgoingAssessment {
                kind: AssessmentKind::Assessment,
                sentiment: Sentiment::Negative,
                confidence: 0.61234,
            }),
            json!({"custom_fields": [{"id": 13, "value": "negative"}, {"id": 14, "value": "0.6123"}]}),
        ),
    ];
    for (i, (payload, _)) in cases.iter().enumerate() {
        let delivered = zd
            .deliver(&item(&format!("ob_{i}"), "42", payload.clone()), &queues)
            .await
            .expect("delivered");
        assert!(
            delivered.reference.is_some(),
            "the audit id is the reference"
        );
    }
    // A resend of the reply (its first outcome unknown) writes nothing again.
    zd.deliver(&item("ob_6", "42", cases[6].0.clone()), &queues)
        .await
        .expect("resend");
    let desk = desk.lock().expect("lock");
    assert!(desk.violations.is_empty(), "{:?}", desk.violations);
    let written: Vec<Value> = desk.writes.iter().map(|(_, t)| t.clone()).collect();
    let expected: Vec<Value> = cases.iter().map(|(_, t)| t.clone()).collect();
    assert_eq!(
        written, expected,
        "one write per item, in the documented shape"
    );
}

#[tokio::test]
async fn a_comment_older_than_zendesks_key_window_is_looked_for_before_a_resend() {
    let (url, desk) = zendesk().await;
    let zd = client(&url, TOKEN);
    let queues = BTreeMap::new();
    let now =
        deskhost_protocol::digest::parse_rfc3339_secs(&deskhost_protocol::digest::now_rfc3339())
            .expect("now");
    let mut old = item(
        "ob_old",
        "42",
        Outgoing::reply("Your refund is on its way.", vec![]),
    );
    old.created_at = "2026-01-01T00:00:00Z".into();
    let (_, found) = zd
        .deliver_once(&old, &queues, false, now)
        .await
        .expect("first attempt");
    assert!(!found);
    // Its answer was lost; by the time it is retried Zendesk has forgotten the key.
    desk.lock().expect("lock").keys.clear();
    let (again, found) = zd
        .deliver_once(&old, &queues, true, now)
        .await
        .expect("retry");
    assert!(found, "the comment is found among the ticket's comments");
    assert_eq!(again.reference.as_deref(), Some("9000"));
    // An uncertain comment inside the window relies on the key: no read, one write.
    let mut fresh = item("ob_new", "42", Outgoing::reply("Second", vec![]));
    fresh.created_at = deskhost_protocol::digest::now_rfc3339();
    let reads = desk.lock().expect("lock").comment_reads;
    zd.deliver_once(&fresh, &queues, true, now)
        .await
        .expect("fresh");
    let desk = desk.lock().expect("lock");
    assert_eq!(desk.comment_reads, reads);
    assert_eq!(
        desk.writes.len(),
        2,
        "each comment written once: {:?}",
        desk.writes
    );
    assert!(desk.violations.is_empty(), "{:?}", desk.violations);
}

#[tokio::test]
async fn refusals_and_rate_limits_are_classified() {
    let (url, _) = zendesk().await;
    let zd = client(&url, TOKEN);
    let none = BTreeMap::new();
    let queue = item(
        "ob_q",
        "42",
        Outgoing::Effect(Effect::Queue {
            value: "legal".into(),
        }),
    );
    assert!(
        matches!(zd.deliver(&queue, &none).await, Err(Error::Refused(_))),
        "no group id"
    );
    let limited = item(
        "ob_r",
        "429",
        Outgoing::Effect(Effect::Priority {
            value: "high".into(),
        }),
    );
    match zd.deliver(&limited, &none).await {
        Err(Error::RateLimited(_, secs)) => assert_eq!(secs, 7, "Retry-After is honoured"),
        other => panic!("expected a rate limit, got {other:?}"),
    }
    assert!(
        zd.deliver(&limited, &none).await.is_ok(),
        "the retry goes through"
    );
    let wrong = client(&url, "wrong");
    assert!(matches!(
        wrong.deliver(&limited, &none).await,
        Err(Error::Auth(_))
    ));
}
