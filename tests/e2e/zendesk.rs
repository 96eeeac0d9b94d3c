//! The Zendesk side through `deskhost serve`: a signed webhook naming a changed ticket is
//! verified, the ticket fetched from (a local stand-in for) Zendesk and taken in, decided in
//! the background, and its effects written back with idempotency keys. Requests with a
//! missing, stale or wrong signature get 401 and a body naming no ticket 400, with nothing
//! stored. The stand-in answers only what Zendesk's API documents for these calls (the
//! client's request shapes are checked in detail in host/connectors/tests/zendesk_contract.rs).

use super::support::Ws;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use deskhost_connectors::webhook::zendesk_signature;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOKEN_VAR: &str = "DESKHOST_TEST_ZD_TOKEN";
const HOOK_VAR: &str = "DESKHOST_TEST_ZD_HOOK";
const HOOK_SECRET: &str = "hook-secret-42";

type Writes = Arc<Mutex<Vec<(String, Option<String>, Value)>>>;

async fn stand_in() -> (String, Writes) {
    let writes: Writes = Arc::default();
    let app = Router::new()
        .route("/api/v2/users/me.json", get(|| async { Json(json!({"user": {"id": 7}})) }))
        .route(
            "/api/v2/incremental/tickets/cursor.json",
            get(|| async { Json(json!({"tickets": [], "after_cursor": "c0", "end_of_stream": true})) }),
        )
        .route(
            "/api/v2/tickets/{id}/comments.json",
            get(|| async {
                Json(json!({"comments": [
                    {"id": 1, "author_id": 901, "public": true, "created_at": "2026-12-02T08:00:00Z",
                     "body": "I was charged twice for my invoice, please refund the duplicate."},
                    {"id": 2, "author_id": 901, "public": true, "created_at": "2026-12-02T08:05:00Z",
                     "body": "It was on my credit card."}
                ], "meta": {"has_more": false}, "links": {"next": null}}))
            }),
        )
        .route(
            "/api/v2/tickets/{file}",
            get(|Path(file): Path<String>| async move {
                let id: u64 = file.trim_end_matches(".json").parse().unwrap_or(0);
                Json(json!({"ticket": {
                    "id": id, "subject": "Charged twice this month",
                    "description": "I was charged twice for my invoice, please refund the duplicate.",
                    "status": "new", "priority": null, "group_id": null, "tags": [],
                    "custom_fields": [], "requester_id": 901,
                    "created_at": "2026-12-02T08:00:00Z", "updated_at": "2026-12-02T08:00:00Z"
                }}))
            })
            .put(
                |State(writes): State<Writes>, Path(file): Path<String>, headers: HeaderMap, Json(body): Json<Value>| async move {
                    let key = headers
                        .get("idempotency-key")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let mut w = writes.lock().unwrap_or_else(|e| e.into_inner());
                    w.push((file, key, body));
                    let n = w.len();
                    Json(json!({"ticket": {}, "audit": {"id": 9000 + n}}))
                },
            ),
        )
        .with_state(writes.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = format!(
        "http://{}",
        listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, writes)
}

fn now_rfc3339(offset: i64) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
        + offset;
    deskhost_protocol::digest::format_rfc3339(secs, 0)
        .split('.')
        .next()
        .map(|s| format!("{s}Z"))
        .unwrap_or_default()
}

async fn tickets(ws: &Ws) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM tickets")
        .fetch_one(&ws.db().await)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_zendesk_webhook_brings_a_ticket_in_and_its_effects_go_back() {
    let (zendesk, writes) = stand_in().await;
    let ws = Ws::trained();
    let path = ws.path().join("deskhost.toml");
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    text.push_str(&format!(
        "\n[connectors.zd]\nkind = \"zendesk\"\nbase_url = \"{zendesk}\"\nuser = \"agent@example.com\"\nsecret_env = \"{TOKEN_VAR}\"\nwebhook_secret_env = \"{HOOK_VAR}\"\npoll_seconds = 1\nfield_ids = {{ category = 11, language = 12, sentiment = 13, confidence = 14 }}\n"
    ));
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    let server = ws.serve(&[(TOKEN_VAR, "zd-token"), (HOOK_VAR, HOOK_SECRET)]);
    let url = format!("{}/v1/connectors/zd/webhook", server.url);
    let http = reqwest::Client::new();
    let post = |body: &'static str, ts: String, sig: Option<String>| {
        let mut r = http
            .post(&url)
            .header("content-type", "application/json")
            .header("x-zendesk-webhook-signature-timestamp", ts)
            .body(body);
        if let Some(s) = sig {
            r = r.header("x-zendesk-webhook-signature", s);
        }
        r.send()
    };
    let before = tickets(&ws).await;
    let body = r#"{"type": "zen:event-type:ticket.created", "detail": {"id": "77"}}"#;
    let ts = now_rfc3339(0);
    let cases = [
        ("no signature", post(body, ts.clone(), None).await, 401),
        (
            "wrong secret",
            post(
                body,
                ts.clone(),
                Some(zendesk_signature("other", &ts, body.as_bytes())),
            )
            .await,
            401,
        ),
        (
            "stale timestamp",
            {
                let old = now_rfc3339(-3600);
                let sig = zendesk_signature(HOOK_SECRET, &old, body.as_bytes());
                post(body, old, Some(sig)).await
            },
            401,
        ),
        (
            "names no ticket",
            post(
                "{\"hello\": 1}",
                ts.clone(),
                Some(zendesk_signature(HOOK_SECRET, &ts, b"{\"hello\": 1}")),
            )
            .await,
            400,
        ),
    ];
    for (what, response, status) in cases {
        let response = response.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status().as_u16(), status, "{what}");
    }
    assert_eq!(
        tickets(&ws).await,
        before,
        "a refused webhook stores nothing"
    );

    let signed = post(
        body,
        ts.clone(),
        Some(zendesk_signature(HOOK_SECRET, &ts, body.as_bytes())),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(signed.status().as_u16(), 202);
    let taken: Value = signed.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(taken["new_versions"], 1, "{taken}");
    let input: String = sqlx::query_scalar("SELECT input_json FROM tickets WHERE id = 'zd:77'")
        .fetch_one(&ws.db().await)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let input: Value = serde_json::from_str(&input).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        input["messages"],
        json!([{"author": "customer", "body": "It was on my credit card.", "sent_at": "2026-12-02T08:05:00Z"}]),
        "the follow-up comment is a message: {input}"
    );
    // Decided in the background; the effects reach Zendesk with idempotency keys.
    let mut written = Vec::new();
    for _ in 0..200 {
        written = writes.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if !written.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !written.is_empty(),
        "the decision's effects reach Zendesk: {}",
        server.log()
    );
    for (file, key, body) in &written {
        assert_eq!(file, "77.json");
        assert!(
            key.as_deref().is_some_and(|k| k.starts_with("ob_")),
            "{key:?}"
        );
        assert!(body["ticket"].is_object(), "{body}");
    }
    let unknown = http
        .post(format!("{}/v1/connectors/nope/webhook", server.url))
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(unknown.status().as_u16(), 404);
}
