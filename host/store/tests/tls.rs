//! PostgreSQL over TLS: a store on another machine is reached with `sslmode=verify-full` and
//! the team's CA, and a server whose certificate the client cannot verify is refused with an
//! error that says what to check. Runs its own TLS-enabled server (tests/support/postgres.rs).

// Test code: a failed `expect` is the test failing, with its message.
#![allow(clippy::expect_used)]

#[path = "../../../tests/support/postgres.rs"]
mod postgres;

use deskhost_store::db::{Location, Migrations};
use deskhost_store::store::Store;

fn server() -> Option<postgres::PgServer> {
    match postgres::PgServer::start_tls() {
        Ok(s) => Some(s),
        Err(why) if std::env::var("DESKHOST_REQUIRE_POSTGRES").as_deref() != Ok("1") => {
            eprintln!("SKIPPED: PostgreSQL TLS test: {why}");
            None
        }
        Err(why) => panic!("PostgreSQL is required (DESKHOST_REQUIRE_POSTGRES=1) but: {why}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_the_ca_connects_over_tls_and_without_it_is_refused() {
    let Some(server) = server() else { return };
    let ca = server.ca.clone().expect("a TLS server has a CA file");
    let url = server.database("tls");

    let verified = format!("{url}?sslmode=verify-full&sslrootcert={}", ca.display());
    let store = Store::connect(&Location::Url(verified), 2, Migrations::CreateOnly)
        .await
        .expect("verify-full with the CA connects");
    let on_tls: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(store.pool())
            .await
            .expect("pg_stat_ssl");
    assert!(on_tls, "the connection is not encrypted");
    store
        .ingest_tickets(&[serde_json::from_str(
            r#"{"id":"T-1","subject":"s","body":"b","customer_id":"C-1"}"#,
        )
        .expect("ticket")])
        .await
        .expect("a write over TLS");

    // The system's roots do not know the test CA: verification must fail, and say so.
    let unverified = format!("{url}?sslmode=verify-full");
    let err = match Store::connect(&Location::Url(unverified), 2, Migrations::CreateOnly).await {
        Ok(_) => panic!("a certificate from an unknown CA was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("sslrootcert") && err.contains("127.0.0.1"),
        "the error names the server and what to check: {err}"
    );
    assert!(!err.contains(&password_of(&url)), "password leaked: {err}");
}

fn password_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_string))
        .unwrap_or_default()
}
