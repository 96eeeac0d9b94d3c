//! The review UI in a real browser: headless Chromium driven through WebDriver (Debian's
//! `chromium-driver`, the `fantoccini` client) against `deskhost serve` on 127.0.0.1:0.
//! A reviewer signs in with a token, walks the queue with the keyboard, opens an item, edits
//! and approves it, rejects another, and the API shows both verdicts under their name; the
//! session cookie is HttpOnly and SameSite=Strict, a form without the session's CSRF token is
//! refused, revoking the token ends the session, and a ticket whose subject is markup shows as
//! text. Screenshots of the queue, an item and the report are saved under
//! `$CARGO_TARGET_DIR/e2e-artifacts/ui/`.

use super::support::{Server, Ws, target_dir};
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const HOSTILE_SUBJECT: &str =
    "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">";

fn chromedriver() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DESKHOST_CHROMEDRIVER") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("chromedriver"))
            .find(|p| p.exists())
    })
}

/// chromedriver on a free loopback port, stopped on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start(path: &PathBuf) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port: {e}"));
        let child = Command::new(path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": std::env::var("DESKHOST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,800",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let mut last = String::new();
    // chromedriver takes a moment to listen.
    for _ in 0..100 {
        match ClientBuilder::new(connector.clone())
            .capabilities(caps.clone())
            .connect(&driver.url)
            .await
        {
            Ok(c) => return c,
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no WebDriver session at {}: {last}", driver.url)
}

async fn press(c: &Client, key: char) {
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key });
    c.perform_actions(keys)
        .await
        .unwrap_or_else(|e| panic!("press {key}: {e}"));
}

async fn text(c: &Client, css: &str) -> String {
    match c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
    {
        Ok(e) => e.text().await.unwrap_or_else(|e| panic!("{e}")),
        Err(e) => panic!(
            "no {css} on {}: {e}; the page: {}",
            path(c).await,
            c.source().await.unwrap_or_default()
        ),
    }
}

async fn path(c: &Client) -> String {
    let url = c.current_url().await.unwrap_or_else(|e| panic!("{e}"));
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

async fn wait_for_path(c: &Client, prefix: &str) {
    for _ in 0..100 {
        if path(c).await.starts_with(prefix) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the browser did not reach {prefix}; it is at {}",
        path(c).await
    );
}

async fn screenshot(c: &Client, name: &str) -> PathBuf {
    let dir = target_dir().join("e2e-artifacts").join("ui");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let file = dir.join(format!("{name}.png"));
    let png = c.screenshot().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
    std::fs::write(&file, png).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("screenshot: {}", file.display());
    file
}

/// Whether the page is wider than the 1280-pixel window (a horizontal scroll bar).
async fn overflows(c: &Client) -> bool {
    c.execute(
        "return document.documentElement.scrollWidth > window.innerWidth;",
        vec![],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
        == Value::Bool(true)
}

async fn sign_in(c: &Client, server: &Server, token: &str) {
    c.goto(&format!("{}/ui/sign-in", server.url))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let field = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#token"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    field
        .send_keys(token)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    c.find(Locator::Css("form button[type=submit]"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_signs_in_edits_and_approves_in_the_browser() {
    let Some(chromedriver) = chromedriver() else {
        assert!(
            std::env::var_os("DESKHOST_REQUIRE_BROWSER").is_none(),
            "DESKHOST_REQUIRE_BROWSER is set but no chromedriver was found; tests/run.sh installs chromium-driver"
        );
        eprintln!(
            "skipping the review UI test: no chromedriver on PATH (tests/run.sh installs chromium-driver)"
        );
        return;
    };
    let ws = Ws::trained();
    let server = ws.serve(&[]);
    let ingest = ws.token("intake", "ingest");
    let alice = ws.token("alice", "reviewer");
    let mut tickets = ws.demo_tickets();
    tickets.push(json!({"id": "T-XSS", "subject": HOSTILE_SUBJECT, "body": ""}));
    let decided = server
        .client_with(&ingest)
        .post(format!("{}/v1/tickets?wait=true", server.url))
        .json(&tickets)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(decided.status().is_success(), "{decided:?}");
    let items = server.get_json(&alice, "/v1/reviews?limit=1000").await;
    let items = items.as_array().cloned().unwrap_or_default();
    // The item to edit: it has a triage proposal and a reply draft.
    let target = items
        .iter()
        .find(|i| i["payload"]["triage"].is_object() && i["payload"]["reply"]["draft"].is_object())
        .unwrap_or_else(|| panic!("no review item with a reply draft: {items:?}"))
        .clone();
    let target_id = target["id"].as_str().unwrap_or_default().to_string();
    let proposed_priority = target["payload"]["triage"]["priority"]["value"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let new_priority = if proposed_priority == "urgent" {
        "low"
    } else {
        "urgent"
    };

    let driver = Driver::start(&chromedriver);
    let profile = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let c = browser(&driver, profile.path()).await;

    // Not signed in: every page leads to sign-in; a wrong token or an ingest token is refused.
    c.goto(&format!("{}/ui/queue", server.url))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_for_path(&c, "/ui/sign-in").await;
    sign_in(&c, &server, "dh_not-a-token").await;
    assert!(text(&c, "p.error").await.contains("not valid"));
    sign_in(&c, &server, &ingest).await;
    assert!(text(&c, "p.error").await.contains("reviewer or admin"));

    sign_in(&c, &server, &alice).await;
    wait_for_path(&c, "/ui/queue").await;
    assert_eq!(text(&c, "#who").await, "alice");
    let cookie = c
        .get_named_cookie("deskhost_session")
        .await
        .unwrap_or_else(|e| panic!("no session cookie: {e}"));
    assert_eq!(cookie.http_only(), Some(true), "{cookie:?}");
    assert_eq!(
        format!("{:?}", cookie.same_site()),
        "Some(Strict)",
        "{cookie:?}"
    );
    let script_sees = c
        .execute("return document.cookie;", vec![])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !script_sees
            .as_str()
            .unwrap_or_default()
            .contains("deskhost_session"),
        "page scripts cannot read the session: {script_sees}"
    );

    // The queue: every open item, riskiest first; the hostile subject is text, nothing ran.
    let rows = c
        .find_all(Locator::Css("#queue tr.row"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows.len(), items.len(), "one row per open item");
    let hostile = c
        .find(Locator::XPath(
            "//tr[contains(@class,'row')][td[@class='ticket']/a[starts-with(normalize-space(.),'T-XSS')]]/td[@class='subject']",
        ))
        .await
        .unwrap_or_else(|e| panic!("the T-XSS row: {e}"));
    assert_eq!(
        hostile.text().await.unwrap_or_default(),
        HOSTILE_SUBJECT,
        "markup in a subject is shown as text"
    );
    let title = c.title().await.unwrap_or_default();
    assert_eq!(
        title, "Queue · deskhost review",
        "no script from the ticket ran"
    );
    let injected = c
        .execute(
            "return document.querySelectorAll('main script, main img').length;",
            vec![],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(injected, json!(0), "no element came from the ticket");
    assert!(!overflows(&c).await, "the queue fits 1280 pixels");
    let queue_png = screenshot(&c, "queue").await;

    // Keyboard: j selects the first row, j the second, k the first again, o opens it.
    press(&c, 'j').await;
    press(&c, 'j').await;
    press(&c, 'k').await;
    let selected = c
        .execute(
            "const r = [...document.querySelectorAll('#queue tr.row')]; return r.findIndex(x => x.classList.contains('selected'));",
            vec![],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(selected, json!(0), "j, j, k leaves the first row selected");
    let first_id = rows[0]
        .attr("data-id")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_default();
    press(&c, 'o').await;
    wait_for_path(&c, "/ui/items/").await;
    assert_eq!(
        text(&c, "#item-id").await,
        first_id,
        "o opens the selected item"
    );
    // On an item, j goes to the next open item.
    press(&c, 'j').await;
    for _ in 0..100 {
        if text(&c, "#item-id").await != first_id {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(
        text(&c, "#item-id").await,
        first_id,
        "j moves to the next item"
    );

    // The item to edit: ticket text, proposals with confidence and evidence, citations that
    // link to the article text on the page.
    c.goto(&format!("{}/ui/items/{target_id}", server.url))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(text(&c, "#item-id").await, target_id);
    let ticket = ws
        .demo_tickets()
        .into_iter()
        .find(|t| t["id"] == target["ticket_id"])
        .unwrap_or_else(|| panic!("the ticket of {target_id}"));
    assert_eq!(
        text(&c, "#subject").await,
        ticket["subject"].as_str().unwrap_or_default()
    );
    assert!(
        text(&c, "table.fields").await.contains('%'),
        "confidences are shown"
    );
    let citation = c
        .find(Locator::Css("ol.citations a[href^='#cited-']"))
        .await
        .unwrap_or_else(|e| panic!("a citation links to its article: {e}"));
    let anchor = citation
        .attr("href")
        .await
        .unwrap_or_default()
        .unwrap_or_default();
    citation.click().await.unwrap_or_else(|e| panic!("{e}"));
    let article = text(&c, &anchor).await;
    assert!(
        article.len() > 40,
        "the cited article's text is on the page: {article}"
    );
    assert!(!overflows(&c).await, "an item fits 1280 pixels");
    c.execute("window.scrollTo(0, 0);", vec![])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let item_png = screenshot(&c, "item").await;

    // Edit and approve: another priority and the reviewer's own reply, then `a`.
    c.find(Locator::Css("#edit-priority"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .select_by_value(new_priority)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let reply = c
        .find(Locator::Css("#edit-reply"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    reply.clear().await.unwrap_or_else(|e| panic!("{e}"));
    reply
        .send_keys("Hello, a reviewer wrote this reply.")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    c.execute("document.activeElement.blur();", vec![])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    press(&c, 'a').await;
    wait_for_path(&c, "/ui/queue?done=").await;
    let notice = text(&c, "#done").await;
    assert!(
        notice.contains("approved by alice"),
        "the queue says what happened: {notice}"
    );

    // The API sees the verdict, the edit beside the proposal, the effect and the reply.
    let detail = server
        .get_json(&alice, &format!("/v1/reviews/{target_id}"))
        .await;
    assert_eq!(detail["status"], "approved", "{detail}");
    assert_eq!(detail["decided_by"], "alice");
    let ticket_id = target["ticket_id"].as_str().unwrap_or_default();
    let db = ws.db().await;
    let (action, detail_json): (String, String) =
        sqlx::query_as("SELECT action, detail_json FROM review_actions WHERE item_id = $1")
            .bind(&target_id)
            .fetch_one(&db)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(action, "approve");
    let stored: Value = serde_json::from_str(&detail_json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        stored["edits"],
        json!({"priority": new_priority, "reply": "Hello, a reviewer wrote this reply."}),
        "only what the reviewer changed is an edit: {stored}"
    );
    let priority: Option<String> =
        sqlx::query_scalar("SELECT priority FROM ticket_state WHERE id = $1")
            .bind(ticket_id)
            .fetch_one(&db)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        priority.as_deref(),
        Some(new_priority),
        "the edit reached the ticket"
    );
    let body: String = sqlx::query_scalar(
        "SELECT body FROM outbound_messages WHERE review_item = $1 AND state = 'pending'",
    )
    .bind(&target_id)
    .fetch_one(&db)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(body, "Hello, a reviewer wrote this reply.");

    // Reject from the queue with the keyboard: select, r, type the reason, submit.
    c.goto(&format!("{}/ui/queue", server.url))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let next_id = c
        .find(Locator::Css("#queue tr.row"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .attr("data-id")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_default();
    press(&c, 'j').await;
    press(&c, 'r').await;
    wait_for_path(&c, "/ui/items/").await;
    for _ in 0..100 {
        let focused = c
            .execute(
                "return document.activeElement && document.activeElement.id;",
                vec![],
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if focused == json!("reason") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reason = c.active_element().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        reason.attr("id").await.unwrap_or_default().as_deref(),
        Some("reason")
    );
    reason
        .send_keys("Needs the billing team.")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    c.find(Locator::Css("#reject button[type=submit]"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_for_path(&c, "/ui/queue?done=").await;
    let rejected = server
        .get_json(&alice, &format!("/v1/reviews/{next_id}"))
        .await;
    assert_eq!(rejected["status"], "rejected", "{rejected}");
    assert_eq!(rejected["decided_by"], "alice");

    // A form without this session's CSRF token is refused and changes nothing; without the
    // cookie the server sends the browser to sign in.
    let open_id = server.get_json(&alice, "/v1/reviews").await[0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let form_url = format!("{}/ui/items/{open_id}", server.url);
    let forged = no_redirects
        .post(&form_url)
        .header("Cookie", format!("deskhost_session={}", cookie.value()))
        .form(&[("action", "approve"), ("csrf", "0000")])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(forged.status(), reqwest::StatusCode::FORBIDDEN);
    let anonymous = no_redirects
        .post(&form_url)
        .form(&[("action", "approve")])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(anonymous.status(), reqwest::StatusCode::SEE_OTHER);
    let still = server
        .get_json(&alice, &format!("/v1/reviews/{open_id}"))
        .await;
    assert_eq!(still["status"], "open", "refused forms change nothing");

    // The report page: the same figures as the API's.
    c.goto(&format!("{}/ui/report", server.url))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let report = server.get_json(&alice, "/v1/reviews/report").await;
    let open = report["backlog"]["open"].as_u64().unwrap_or_default();
    assert_eq!(text(&c, "#backlog .big").await, open.to_string());
    let kept = text(&c, "#fields").await;
    let priority_row = report["fields"]
        .as_array()
        .and_then(|f| f.iter().find(|r| r["field"] == "priority"))
        .unwrap_or_else(|| panic!("no priority figure in {report}"));
    assert!(
        kept.contains(&format!(
            "priority {} {}",
            priority_row["decided"], priority_row["unchanged"]
        )),
        "the report page shows the API's figures: {kept}"
    );
    let report_png = screenshot(&c, "report").await;
    c.goto(&format!("{}/ui/outbox", server.url))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        text(&c, "#outbox-counts").await.contains("no connector"),
        "the outbox page says there is nothing to deliver without a connector"
    );

    // Revoking the token ends the session at once; sign-out ends it too.
    ws.ok(&["token", "revoke", "alice"]);
    c.goto(&format!("{}/ui/queue", server.url))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_for_path(&c, "/ui/sign-in").await;
    let bob = ws.token("bob", "reviewer");
    sign_in(&c, &server, &bob).await;
    wait_for_path(&c, "/ui/queue").await;
    c.find(Locator::Css("header form button"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_for_path(&c, "/ui/sign-in").await;
    c.goto(&format!("{}/ui/report", server.url))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_for_path(&c, "/ui/sign-in").await;

    c.close().await.unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "review UI screenshots (1280x800): {}, {}, {}",
        queue_png.display(),
        item_png.display(),
        report_png.display()
    );
}
