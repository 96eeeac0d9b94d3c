//! The Request Tracker loop against a real RT 5 (tests/support/rt.rs starts one): tickets
//! created in RT through REST2 are taken in by `deskhost connector sync`, decided, and their
//! applied effects appear in RT (queue, priority, custom fields, internal notes as comments);
//! an approved reply appears in RT's history as correspondence; a ticket resolved in RT gives
//! its "unchanged at close" figures. Wrong credentials pause the connector and lose nothing;
//! a help desk that is down makes the outbox retry and drain when it is back; SIGKILL of the
//! delivery process mid-send, several times, still leaves each reply in RT exactly once.

use super::support::Ws;
use crate::rt;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const SECRET_VAR: &str = "DESKHOST_TEST_RT_SECRET";

/// A ticket's state in deskhost: id, queue, priority, category.
type State = (String, Option<String>, Option<String>, Option<String>);

struct Rt {
    http: reqwest::Client,
    api: String,
    user: String,
    password: String,
}

impl Rt {
    fn of(server: &rt::RtServer) -> Self {
        Rt {
            http: reqwest::Client::new(),
            api: server.api(),
            user: server.user.clone(),
            password: server.password.clone(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.api))
            .basic_auth(&self.user, Some(&self.password));
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("RT {path}: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "RT {path}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn search(&self, path: &str, query: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.api))
            .query(&[("query", query), ("per_page", "100")])
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        response.json().await.unwrap_or(Value::Null)
    }

    async fn create_queue(&self, name: &str) {
        // An existing queue is fine (the RT is shared by this test process).
        let _ = self
            .http
            .post(format!("{}/queue", self.api))
            .basic_auth(&self.user, Some(&self.password))
            .json(&json!({ "Name": name }))
            .send()
            .await;
    }

    async fn create_ticket(&self, queue: &str, t: &Value) -> String {
        let created = self
            .call(
                reqwest::Method::POST,
                "/ticket",
                Some(json!({
                    "Queue": queue,
                    "Subject": t["subject"],
                    "Requestor": format!("{}@customers.example", t["id"].as_str().unwrap_or("x").to_lowercase()),
                    "Content": t["body"],
                    "ContentType": "text/plain",
                })),
            )
            .await;
        created["id"]
            .as_str()
            .map(str::to_string)
            .or_else(|| created["id"].as_i64().map(|n| n.to_string()))
            .unwrap_or_else(|| panic!("no ticket id in {created}"))
    }

    /// Ticket `id`'s transactions (type, field, new value), oldest first.
    async fn history(&self, id: &str) -> Vec<Value> {
        let mut out = Vec::new();
        for page in 1..=20 {
            let found = self
                .http
                .get(format!("{}/ticket/{id}/history", self.api))
                .query(&[
                    ("fields", "Type,Field,NewValue"),
                    ("per_page", "100"),
                    ("page", &page.to_string()),
                ])
                .basic_auth(&self.user, Some(&self.password))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .json::<Value>()
                .await
                .unwrap_or(Value::Null);
            let items = found["items"].as_array().cloned().unwrap_or_default();
            out.extend(items);
            if f64::from(page) >= found["pages"].as_f64().unwrap_or(1.0) {
                break;
            }
        }
        out
    }

    /// A ticket custom field's value.
    async fn field(&self, id: &str, name: &str) -> Option<String> {
        let t = self.get(&format!("/ticket/{id}")).await;
        t["CustomFields"]
            .as_array()
            .and_then(|c| c.iter().find(|f| f["name"] == name))
            .and_then(|f| f["values"][0].as_str())
            .map(str::to_string)
    }

    /// Transactions of `kind` on ticket `id` that carry a deskhost outbox id.
    async fn delivered(&self, id: &str, kind: &str) -> Vec<String> {
        let found = self
            .search(
                "/transactions",
                &format!(
                    "ObjectType = 'RT::Ticket' AND ObjectId = '{id}' AND Type = '{kind}' AND CF.{{deskhost-outbox}} LIKE 'ob_'"
                ),
            )
            .await;
        found["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|t| t["id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn taxonomy_queues(ws: &Ws) -> Vec<String> {
    let text = std::fs::read_to_string(ws.path().join("deskhost.toml")).unwrap_or_default();
    let config: toml::Value = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    config["taxonomy"]["queues"]
        .as_array()
        .map(|q| {
            q.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn configure(ws: &Ws, url: &str, user: &str) {
    let path = ws.path().join("deskhost.toml");
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    text.push_str(&format!(
        "\n[connectors.rt]\nkind = \"rt\"\nbase_url = \"{url}\"\nuser = \"{user}\"\nsecret_env = \"{SECRET_VAR}\"\npoll_seconds = 1\nmax_attempts = 20\nrequest_timeout_seconds = 3\n"
    ));
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
}

fn sync(ws: &Ws, secret: &str) -> Value {
    let out = ws.cmd_env(
        &["connector", "sync", "rt", "--json"],
        &[(SECRET_VAR, secret)],
    );
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("connector sync: {e}: {out:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_tracker_loop_delivers_each_effect_once() {
    let Some(server) = rt::shared() else {
        return;
    };
    let rt = Rt::of(server);
    let ws = Ws::trained();
    for q in taxonomy_queues(&ws) {
        rt.create_queue(&q).await;
    }
    configure(&ws, &server.url, &server.user);
    let secret = server.password.clone();

    // Tickets created in RT.
    let tickets: Vec<Value> = ws.demo_tickets().into_iter().take(12).collect();
    let started = Instant::now();
    let mut ids = Vec::new();
    for t in &tickets {
        ids.push(rt.create_ticket("General", t).await);
    }
    let synced = sync(&ws, &secret);
    let loop_time = started.elapsed();
    assert_eq!(synced["intake"]["read"], json!(tickets.len()), "{synced}");
    assert_eq!(
        synced["intake"]["new_versions"],
        json!(tickets.len()),
        "{synced}"
    );
    assert_eq!(synced["decided"], json!(tickets.len()), "{synced}");
    assert_eq!(synced["delivery"]["dead"], 0, "{synced}");
    eprintln!(
        "RT loop: {} tickets created in RT → decided → fields visible in RT in {:.2} s (intake {:.2} s, decide {:.2} s, deliver {:.2} s: {} outbox items)",
        tickets.len(),
        loop_time.as_secs_f64(),
        synced["seconds"]["intake"].as_f64().unwrap_or(0.0),
        synced["seconds"]["decide"].as_f64().unwrap_or(0.0),
        synced["seconds"]["deliver"].as_f64().unwrap_or(0.0),
        synced["delivery"]["delivered"]
    );

    // What deskhost applied is what RT shows.
    let db = ws.db().await;
    let states: Vec<State> = sqlx::query_as(
        "SELECT id, queue, priority, category FROM ticket_state WHERE id LIKE 'rt:%' ORDER BY id",
    )
    .fetch_all(&db)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(states.len(), tickets.len());
    let mut checked = 0;
    for (id, queue, _priority, category) in &states {
        let rt_id = id.trim_start_matches("rt:");
        let t = rt.get(&format!("/ticket/{rt_id}")).await;
        let queue_name = rt
            .get(&format!(
                "/queue/{}",
                t["Queue"]["id"].as_str().unwrap_or("1")
            ))
            .await["Name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let cf_category = t["CustomFields"]
            .as_array()
            .and_then(|c| c.iter().find(|f| f["name"] == "category"))
            .and_then(|f| f["values"][0].as_str())
            .map(str::to_string);
        if let Some(q) = queue {
            assert_eq!(&queue_name, q, "ticket {id}: RT's queue is the applied one");
            checked += 1;
        }
        if category.is_some() {
            assert_eq!(&cf_category, category, "ticket {id}: RT's category");
        }
    }
    assert!(
        checked > 0,
        "some tickets had their queue applied: {states:?}"
    );

    // The triage's sentiment and confidence are in RT's custom fields.
    let assessed: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT external_id, origin, payload_json FROM outbox WHERE kind = 'assessment' AND state = 'delivered' ORDER BY seq",
    )
    .fetch_all(&db)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(assessed.len(), tickets.len(), "one assessment per decision");
    for (rt_id, origin, payload) in &assessed {
        let payload: Value = serde_json::from_str(payload).unwrap_or_else(|e| panic!("{e}"));
        let run_id = origin.trim_start_matches("run:");
        let proposal: String = sqlx::query_scalar(
            "SELECT proposal_json FROM run_stages WHERE run_id = $1 AND stage = 'triage'",
        )
        .bind(run_id)
        .fetch_one(&db)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let proposal: Value = serde_json::from_str(&proposal).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            payload["sentiment"], proposal["sentiment"]["value"],
            "the decision's sentiment"
        );
        assert_eq!(
            rt.field(rt_id, "sentiment").await.as_deref(),
            payload["sentiment"].as_str(),
            "ticket {rt_id}: RT's sentiment"
        );
        let confidence = payload["confidence"].as_f64().unwrap_or(f64::NAN);
        assert!((0.0..=1.0).contains(&confidence), "{payload}");
        assert_eq!(
            rt.field(rt_id, "confidence").await,
            Some(format!("{confidence:.4}")),
            "ticket {rt_id}: RT's confidence"
        );
    }

    // Nothing new after a second sync: RT's own updates (ours) make no new versions.
    let again = sync(&ws, &secret);
    assert_eq!(again["intake"]["new_versions"], 0, "{again}");
    assert_eq!(again["delivery"]["delivered"], 0, "{again}");

    // Approve the replies waiting for review: each appears in RT as correspondence.
    let items = ws.ok(&["review", "list", "--json"]).json();
    let with_draft: Vec<Value> = items
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| {
            i["ticket_id"]
                .as_str()
                .is_some_and(|t| t.starts_with("rt:"))
        })
        .filter(|i| i["payload"]["reply"]["draft"].is_object())
        .collect();
    assert!(
        !with_draft.is_empty(),
        "a reply draft waits for review: {items}"
    );
    for i in &with_draft {
        ws.ok(&[
            "review",
            "approve",
            i["id"].as_str().unwrap_or_default(),
            "--as",
            "rt-test",
        ]);
    }

    // With a wrong password, the connector pauses and keeps everything.
    let listed = ws
        .ok(&[
            "outbox", "list", "--state", "pending", "--limit", "1000", "--json",
        ])
        .json();
    let waiting = listed.as_array().map_or(0, Vec::len);
    assert!(
        waiting > with_draft.len(),
        "approved effects and replies wait: {waiting}"
    );
    let paused = ws.cmd_env(
        &["connector", "sync", "rt", "--json"],
        &[(SECRET_VAR, "wrong")],
    );
    assert_eq!(paused.code, 2, "{paused:?}");
    let status = ws
        .ok_env(
            &["connector", "status", "rt", "--json"],
            &[(SECRET_VAR, "wrong")],
        )
        .json();
    assert!(
        status[0]["paused"]
            .as_str()
            .is_some_and(|p| p.contains("credentials")),
        "{status}"
    );
    assert_eq!(
        status[0]["backlog"],
        json!(waiting),
        "nothing lost: {status}"
    );
    assert_eq!(status[0]["dead"], 0, "nothing given up: {status}");

    // Killed mid-delivery, several times: every reply still lands exactly once. Each kill
    // comes a random moment after the worker has recorded a delivery, while it is sending
    // the next one.
    let delivered_count = async || -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE state = 'delivered'")
            .fetch_one(&db)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let delivered_so_far = async || delivered_count().await as usize;
    let before = delivered_so_far().await;
    let mut kills = 0;
    let mut seed: u64 = 0x00c0_ffee;
    for _ in 0..6 {
        let start = delivered_count().await;
        let mut child = ws.spawn_env(&["connector", "run", "rt"], &[(SECRET_VAR, &secret)]);
        let deadline = Instant::now() + Duration::from_secs(60);
        while delivered_count().await == start && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        tokio::time::sleep(Duration::from_millis(50 + (seed >> 33) % 400)).await;
        if child.try_wait().ok().flatten().is_none() {
            kills += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        if delivered_count().await as usize >= before + waiting {
            break;
        }
    }
    let during = delivered_so_far().await - before;
    // An attempt cut short is looked for once it must have finished at RT (the connector's
    // request timeout, 3 s here, plus 2 s).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let last = sync(&ws, &secret);
    assert_eq!(last["status"]["backlog"], 0, "{last}");
    assert_eq!(last["status"]["dead"], 0, "{last}");
    let mut replies = 0;
    for i in &with_draft {
        let rt_id = i["ticket_id"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("rt:");
        let sent = rt.delivered(rt_id, "Correspond").await;
        assert_eq!(
            sent.len(),
            1,
            "ticket {rt_id}: one correspondence per approved reply: {sent:?}"
        );
        replies += 1;
    }
    // Every effect once: per ticket, one comment per internal note, one correspondence per
    // reply, and one field transaction per value change of queue, priority and the custom
    // fields (a repeated set of the same value makes none in RT). `tags` is left out: a
    // multi-value field records one transaction per value.
    let mut cf_names: std::collections::HashMap<String, String> = Default::default();
    let mut counted = std::collections::BTreeMap::<String, usize>::new();
    for (id, ..) in &states {
        let rt_id = id.trim_start_matches("rt:");
        let items: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT kind, payload_json, state FROM outbox WHERE ticket_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&db)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let mut expected = std::collections::BTreeMap::<String, usize>::new();
        let mut current: std::collections::HashMap<&str, String> = [
            ("queue", "General".to_string()),
            ("priority", "low".to_string()),
        ]
        .into();
        for (kind, payload, state) in &items {
            assert_eq!(state, "delivered", "{id}: {kind} {payload}");
            let p: Value = serde_json::from_str(payload).unwrap_or_else(|e| panic!("{e}"));
            let mut change = |field: &'static str, value: String| {
                if current.get(field) != Some(&value) {
                    current.insert(field, value);
                    Some(field.to_string())
                } else {
                    None
                }
            };
            let changed: Vec<Option<String>> = match kind.as_str() {
                "internal_note" => vec![Some("Comment".into())],
                "reply" => vec![Some("Correspond".into())],
                "queue" | "priority" | "category" | "language" => {
                    let field = ["queue", "priority", "category", "language"]
                        .into_iter()
                        .find(|f| f == kind)
                        .unwrap_or("queue");
                    vec![change(
                        field,
                        p["value"].as_str().unwrap_or_default().to_string(),
                    )]
                }
                "assessment" => vec![
                    change(
                        "sentiment",
                        p["sentiment"].as_str().unwrap_or_default().to_string(),
                    ),
                    change(
                        "confidence",
                        format!("{:.4}", p["confidence"].as_f64().unwrap_or(f64::NAN)),
                    ),
                ],
                _ => vec![],
            };
            for name in changed.into_iter().flatten() {
                *expected.entry(name).or_default() += 1;
            }
        }
        let mut seen = std::collections::BTreeMap::<String, usize>::new();
        for txn in rt.history(rt_id).await {
            let field = txn["Field"].as_str().unwrap_or_default().to_string();
            let name = match txn["Type"].as_str().unwrap_or_default() {
                t @ ("Comment" | "Correspond") => t.to_string(),
                "Set" if field == "Queue" => "queue".into(),
                "Set" if field == "Priority" => "priority".into(),
                "CustomField" => {
                    if !cf_names.contains_key(&field) {
                        let cf = rt.get(&format!("/customfield/{field}")).await;
                        let name = cf["Name"].as_str().unwrap_or_default().to_string();
                        cf_names.insert(field.clone(), name);
                    }
                    cf_names.get(&field).cloned().unwrap_or_default()
                }
                _ => continue,
            };
            if name == "tags" {
                continue;
            }
            *seen.entry(name).or_default() += 1;
        }
        assert_eq!(
            seen, expected,
            "ticket {rt_id}: RT's transactions per kind are deskhost's deliveries, once each"
        );
        for (k, n) in seen {
            *counted.entry(k).or_default() += n;
        }
    }
    eprintln!(
        "crash test: {kills} SIGKILLs of `connector run`; {during} of {waiting} outbox items delivered between kills, {} by the final sync ({} of them found already in RT, not sent again); {replies} replies, each in RT exactly once; RT transactions counted on the {} tickets: {counted:?}, each matching deskhost's deliveries",
        last["delivery"]["delivered"],
        last["delivery"]["already_there"],
        states.len()
    );
    let outbox = ws
        .ok(&[
            "outbox",
            "list",
            "--state",
            "delivered",
            "--limit",
            "500",
            "--json",
        ])
        .json();
    let delivered_replies = outbox.as_array().map_or(0, |o| {
        o.iter().filter(|i| i["payload"]["kind"] == "reply").count()
    });
    assert_eq!(delivered_replies, with_draft.len());

    // Resolved in RT with another category: close-time feedback.
    let (first_id, _, _, first_category) = &states[0];
    let rt_id = first_id.trim_start_matches("rt:");
    let other = if first_category.as_deref() == Some("billing") {
        "how_to"
    } else {
        "billing"
    };
    rt.call(
        reqwest::Method::PUT,
        &format!("/ticket/{rt_id}"),
        Some(json!({ "Status": "resolved", "CustomFields": { "category": other } })),
    )
    .await;
    let closed = sync(&ws, &secret);
    assert_eq!(closed["intake"]["closed"], 1, "{closed}");
    let report = ws.ok(&["review", "report", "--json"]).json();
    let at_close = report["at_close"].as_array().cloned().unwrap_or_default();
    let category = at_close
        .iter()
        .find(|f| f["field"] == "category")
        .unwrap_or_else(|| panic!("no category at close in {report}"));
    assert_eq!(
        (category["decided"].clone(), category["unchanged"].clone()),
        (json!(1), json!(0)),
        "{report}"
    );

    // RT down: deliveries fail and wait in the outbox (status and error say so); when it is
    // back, the outbox drains.
    let open_item = ws
        .ok(&["review", "list", "--json"])
        .json()
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .find(|i| {
                    i["ticket_id"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("rt:"))
                })
                .cloned()
        })
        .unwrap_or_else(|| panic!("an open review item of an RT ticket"));
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    ws.edit(
        "deskhost.toml",
        &format!("base_url = \"{}\"", server.url),
        &format!("base_url = \"http://127.0.0.1:{dead_port}\""),
    );
    ws.ok(&[
        "review",
        "approve",
        open_item["id"].as_str().unwrap_or_default(),
        "--as",
        "rt-test",
    ]);
    // `serve` runs the connector against the dead address; its metrics show the help desk
    // down and the outbox waiting.
    let desk = ws.serve(&[(SECRET_VAR, &secret)]);
    let gauge = |text: &str, name: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let down = loop {
        let text = desk.metrics().await;
        let up = gauge(&text, "deskhost_connector_up{connector=\"rt\"}");
        let pending = gauge(
            &text,
            "deskhost_outbox_items{connector=\"rt\",state=\"pending\"}",
        );
        if up == Some(0.0) && pending.is_some_and(|n| n > 0.0) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed RT down with items waiting: {text}\n{}",
            desk.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        gauge(
            &down,
            "deskhost_outbox_oldest_waiting_seconds{connector=\"rt\"}"
        )
        .is_some(),
        "{down}"
    );
    desk.terminate();
    let status = ws
        .ok_env(
            &["connector", "status", "rt", "--json"],
            &[(SECRET_VAR, &secret)],
        )
        .json();
    let backlog = status[0]["backlog"].as_u64().unwrap_or(0);
    assert!(
        backlog > 0 && status[0]["dead"] == 0,
        "the outbox holds what RT missed: {status} {down:?}"
    );
    assert!(
        status[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("unavailable")),
        "{status}"
    );
    ws.edit(
        "deskhost.toml",
        &format!("base_url = \"http://127.0.0.1:{dead_port}\""),
        &format!("base_url = \"{}\"", server.url),
    );
    // Synced until the retries' backoff has passed (a few seconds at most here).
    let mut drained = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    let back = loop {
        let back = sync(&ws, &secret);
        drained += back["delivery"]["delivered"].as_u64().unwrap_or(0);
        if back["status"]["backlog"] == 0 || Instant::now() > deadline {
            break back;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        back["status"]["backlog"], 0,
        "drained when RT is back: {back}"
    );
    assert_eq!(drained, backlog, "{back}");
    ws.ok(&["audit", "verify"]);
}
