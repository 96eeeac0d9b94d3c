//! Help-desk connectors: tickets in (polling with a durable cursor; Zendesk also pushes by
//! webhook), decisions out (the outbox, delivered once each with retries, backoff, Retry-After
//! and a dead letter), and close-time feedback.
//!
//! A connector is named in `deskhost.toml` (`[connectors.NAME]`); its tickets are deskhost
//! tickets `NAME:ID`. [`Connector::intake`] takes in what changed since the cursor and
//! records the final fields of closed tickets; [`Connector::deliver_due`] sends what the
//! outbox holds for it. `deskhost connector sync` runs both once, `deskhost serve` and
//! `deskhost connector run` keep running them.

pub mod rt;
pub mod webhook;
pub mod zendesk;

use deskhost_engine::outbox::{Attempt, Claimed, Incoming};
use deskhost_engine::store::Store;
use deskhost_protocol::config::{ConnectorConfig, ConnectorKind};
use deskhost_protocol::outbox::{ConnectorStatus, OutboxState};
use deskhost_protocol::records::TicketInput;
use std::time::Duration;

/// Why a help-desk call failed; each kind is handled differently by the delivery worker.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The credentials were refused (401/403): the connector pauses.
    #[error("the help desk refused the credentials: {0}")]
    Auth(String),
    /// Too many requests: try again after this many seconds.
    #[error("the help desk asks to slow down (retry after {1} s): {0}")]
    RateLimited(String, u64),
    /// Not reachable, or a server error: retry with backoff.
    #[error("the help desk is unavailable: {0}")]
    Unreachable(String),
    /// Refused for good (bad request, no such ticket): dead-lettered.
    #[error("the help desk refused it: {0}")]
    Refused(String),
    /// The answer was not what the API documents.
    #[error("unexpected answer: {0}")]
    Protocol(String),
    /// The configuration is not usable (missing secret).
    #[error("{0}")]
    Config(String),
    /// deskhost's store failed.
    #[error(transparent)]
    Store(#[from] deskhost_engine::store::StoreError),
}

/// What a successful delivery left in the help desk.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Delivery {
    /// Its reference there (a transaction or comment id), when there is one.
    pub reference: Option<String>,
}

/// A help-desk ticket as intake reads it.
#[derive(Clone, Debug)]
pub struct HelpDeskTicket {
    /// The help desk's id.
    pub external_id: String,
    /// The ticket as deskhost takes it in (`NAME:ID`).
    pub ticket: TicketInput,
    /// Closed (resolved, rejected, solved).
    pub closed: bool,
    /// Its last update, in the form the cursor takes.
    pub updated_at: String,
    /// Its fields now (for close-time feedback): queue, priority, category, language.
    pub final_fields: Vec<(String, String)>,
}

/// The `Retry-After` header in seconds (delta-seconds form; an HTTP date counts as 60 s).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    Some(value.trim().parse().unwrap_or(60).min(3600))
}

/// At most 300 bytes of a body, on one line, for an error message.
pub(crate) fn excerpt(body: &str) -> String {
    let cut: String = body.chars().take(300).collect();
    deskhost_engine::sanitize::field(&cut).into_owned()
}

/// Sends `request` with basic auth as `user`/`secret` and reads the JSON answer (`Null` for
/// an empty body); the status is classified by [`classify`]. Both clients call through here.
pub(crate) async fn send_json(
    request: reqwest::RequestBuilder,
    user: &str,
    secret: &str,
    what: &str,
) -> Result<serde_json::Value, Error> {
    let response = request
        .basic_auth(user, Some(secret))
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| Error::Unreachable(format!("{what}: {e}")))?;
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let body = response.text().await.unwrap_or_default();
    classify(status, retry_after, what, &body)?;
    if body.trim().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(&body).map_err(|e| {
        Error::Protocol(format!(
            "{what}: the answer is not JSON ({e}): {}",
            excerpt(&body)
        ))
    })
}

/// Maps an HTTP status to the error kinds above (2xx is fine).
pub(crate) fn classify(
    status: reqwest::StatusCode,
    retry_after: Option<u64>,
    what: &str,
    body: &str,
) -> Result<(), Error> {
    use reqwest::StatusCode as S;
    if status.is_success() {
        return Ok(());
    }
    let detail = format!("{what}: HTTP {status}: {}", excerpt(body));
    Err(match status {
        S::UNAUTHORIZED | S::FORBIDDEN => Error::Auth(detail),
        S::TOO_MANY_REQUESTS => Error::RateLimited(detail, retry_after.unwrap_or(60)),
        s if s.is_server_error() || s == S::REQUEST_TIMEOUT => Error::Unreachable(detail),
        _ => Error::Refused(detail),
    })
}

/// Exponential backoff with jitter: a random wait between half and all of 1 s × 2^(attempt-1),
/// capped at 5 minutes.
pub fn backoff(attempt: u32) -> Duration {
    let cap_ms = (1000u64 << attempt.saturating_sub(1).min(9)).min(300_000);
    let mut bytes = [0u8; 8];
    let r = getrandom::fill(&mut bytes).map_or(u64::MAX / 2, |()| u64::from_le_bytes(bytes));
    Duration::from_millis(cap_ms / 2 + r % (cap_ms / 2 + 1))
}

/// The client of one help desk.
enum Client {
    Rt(rt::RtClient),
    Zendesk(zendesk::ZendeskClient),
}

/// A configured connector.
pub struct Connector {
    /// Its name.
    pub name: String,
    /// Its configuration.
    pub config: ConnectorConfig,
    client: Client,
}

impl std::fmt::Debug for Connector {
    // Names and URL only: the secret never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("name", &self.name)
            .field("kind", &self.config.kind)
            .field("base_url", &self.config.base_url)
            .finish_non_exhaustive()
    }
}

/// What one intake pass did.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct IntakeSummary {
    /// Help-desk tickets read.
    pub read: usize,
    /// New ticket versions (to be decided).
    pub new_versions: usize,
    /// Closed tickets whose final fields were recorded.
    pub closed: usize,
}

/// What one delivery pass did.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct DeliverySummary {
    /// Delivered (including found already delivered).
    pub delivered: usize,
    /// Of those, found already in the help desk (not sent again).
    pub already_there: usize,
    /// Skipped by `write_back`.
    pub skipped: usize,
    /// Failed, to be retried.
    pub retrying: usize,
    /// Dead-lettered.
    pub dead: usize,
}

impl DeliverySummary {
    fn add(&mut self, other: &DeliverySummary) {
        self.delivered += other.delivered;
        self.already_there += other.already_there;
        self.skipped += other.skipped;
        self.retrying += other.retrying;
        self.dead += other.dead;
    }
}

/// After one item: go on with the ticket's next, wait (it failed and will be retried), or
/// stop everything (the credentials were refused).
enum Step {
    Next,
    Wait,
    Paused,
}

fn read_secret(name: &str, config: &ConnectorConfig) -> Result<String, Error> {
    if let Some(var) = &config.secret_env {
        return std::env::var(var).map_err(|_| {
            Error::Config(format!(
                "connector {name}: the environment variable {var} (secret_env) is not set"
            ))
        });
    }
    if let Some(path) = &config.secret_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!(
                "connector {name}: cannot read secret_file {}: {e}",
                path.display()
            ))
        })?;
        return Ok(text.lines().next().unwrap_or_default().trim().to_string());
    }
    Err(Error::Config(format!(
        "connector {name}: set secret_env or secret_file"
    )))
}

impl Connector {
    /// The connector `name` of a workspace's configuration.
    pub fn new(name: &str, config: &ConnectorConfig) -> Result<Self, Error> {
        let secret = read_secret(name, config)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.request_timeout_seconds.max(1)))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("deskhost/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("connector {name}: {e}")))?;
        let client = match config.kind {
            ConnectorKind::Rt => Client::Rt(rt::RtClient::new(
                http,
                &config.base_url,
                &config.user,
                &secret,
            )),
            ConnectorKind::Zendesk => Client::Zendesk(zendesk::ZendeskClient::new(
                http,
                &config.base_url,
                &config.user,
                &secret,
                config.field_ids.clone(),
            )),
        };
        Ok(Self {
            name: name.to_string(),
            config: config.clone(),
            client,
        })
    }

    /// Its stored state, with its kind and URL.
    pub async fn status(&self, store: &Store) -> Result<ConnectorStatus, Error> {
        let mut status = store.connector_status(&self.name).await?;
        status.kind = self.config.kind.as_str().into();
        status.base_url = self.config.base_url.clone();
        Ok(status)
    }

    /// Records that the help desk refused the credentials (`error`): intake and delivery
    /// wait until a credentials check passes.
    async fn pause(&self, store: &Store, error: &str) -> Result<(), Error> {
        store
            .set_connector_state(
                &self.name,
                None,
                Some(error),
                Some("the help desk refused the credentials; fix the user or secret, deliveries wait"),
            )
            .await?;
        Ok(())
    }

    /// Checks the credentials; a refusal pauses the connector (recorded), success clears a
    /// pause.
    pub async fn check_credentials(&self, store: &Store) -> Result<bool, Error> {
        let probe = match &self.client {
            Client::Rt(c) => c.probe().await,
            Client::Zendesk(c) => c.probe().await,
        };
        match probe {
            Ok(()) => {
                let status = store.connector_status(&self.name).await?;
                if status.paused.is_some() {
                    store
                        .set_connector_state(&self.name, None, None, None)
                        .await?;
                }
                Ok(true)
            }
            Err(Error::Auth(m)) => {
                self.pause(store, &m).await?;
                Ok(false)
            }
            Err(e) => {
                store
                    .set_connector_state(&self.name, None, Some(&e.to_string()), None)
                    .await?;
                Err(e)
            }
        }
    }

    /// Takes in the tickets changed since the cursor; records the final fields of closed
    /// ones. The cursor moves only after everything read is stored.
    pub async fn intake(&self, store: &Store) -> Result<IntakeSummary, Error> {
        let status = store.connector_status(&self.name).await?;
        let read = match &self.client {
            Client::Rt(c) => {
                c.updated_since(
                    status.cursor.as_deref(),
                    &self.config.intake_queues,
                    &self.name,
                )
                .await
            }
            Client::Zendesk(c) => {
                c.changed_since(status.cursor.as_deref(), &self.name, &self.config.queue_map)
                    .await
            }
        };
        let (tickets, cursor) = match read {
            Ok(r) => r,
            Err(e) => {
                store
                    .set_connector_state(&self.name, None, Some(&e.to_string()), None)
                    .await?;
                return Err(e);
            }
        };
        let mut summary = IntakeSummary {
            read: tickets.len(),
            ..IntakeSummary::default()
        };
        let open: Vec<Incoming> = tickets
            .iter()
            .filter(|t| !t.closed)
            .map(|t| Incoming {
                external_id: t.external_id.clone(),
                ticket: t.ticket.clone(),
            })
            .collect();
        for chunk in open.chunks(100) {
            let ingested = store.ingest_from(&self.name, chunk).await?;
            summary.new_versions += ingested.iter().filter(|i| i.new_version).count();
        }
        for t in tickets.iter().filter(|t| t.closed) {
            if let Some(ticket_id) = store
                .ticket_for_external(&self.name, &t.external_id)
                .await?
                && !store
                    .record_close(&ticket_id, &self.name, &t.final_fields)
                    .await?
                    .is_empty()
            {
                summary.closed += 1;
            }
        }
        store
            .set_connector_state(
                &self.name,
                Some(cursor.as_deref().unwrap_or("1970-01-01 00:00:00")),
                None,
                None,
            )
            .await?;
        Ok(summary)
    }

    /// Takes in one ticket the help desk pushed (a webhook named it): stores a new version
    /// when it changed, records the close when it is closed. Only Zendesk pushes.
    pub async fn take_in(&self, store: &Store, external_id: &str) -> Result<IntakeSummary, Error> {
        let ticket = match &self.client {
            Client::Zendesk(c) => {
                c.ticket(external_id, &self.name, &self.config.queue_map)
                    .await?
            }
            Client::Rt(_) => {
                return Err(Error::Config(format!(
                    "connector {}: Request Tracker does not push; its tickets come in by polling",
                    self.name
                )));
            }
        };
        let mut summary = IntakeSummary::default();
        let Some(t) = ticket else {
            return Ok(summary);
        };
        summary.read = 1;
        if t.closed {
            if let Some(id) = store
                .ticket_for_external(&self.name, &t.external_id)
                .await?
                && !store
                    .record_close(&id, &self.name, &t.final_fields)
                    .await?
                    .is_empty()
            {
                summary.closed = 1;
            }
        } else {
            let ingested = store
                .ingest_from(
                    &self.name,
                    &[Incoming {
                        external_id: t.external_id.clone(),
                        ticket: t.ticket,
                    }],
                )
                .await?;
            summary.new_versions = ingested.iter().filter(|i| i.new_version).count();
        }
        Ok(summary)
    }

    /// The webhook signing secret (from `webhook_secret_env`), if the connector has one.
    pub fn webhook_secret(&self) -> Option<String> {
        self.config
            .webhook_secret_env
            .as_ref()
            .and_then(|var| std::env::var(var).ok())
            .filter(|s| !s.is_empty())
    }

    /// Whether the help desk pushes changes (Zendesk).
    pub fn pushes(&self) -> bool {
        matches!(self.client, Client::Zendesk(_))
    }

    /// Sends every due outbox item of this connector until none is due: up to
    /// `concurrency` tickets at once, each ticket's items in order. An item that fails (to
    /// be retried) holds back the rest of its ticket; refused credentials stop everything.
    pub async fn deliver_due(&self, store: &Store) -> Result<DeliverySummary, Error> {
        use futures::StreamExt;
        let mut summary = DeliverySummary::default();
        let width = self.config.concurrency.clamp(1, 32) as usize;
        let settle_ms = i64::try_from(self.config.request_timeout_seconds.max(1) * 1000 + 2000)
            .unwrap_or(i64::MAX / 4);
        loop {
            let claimed = store
                .claim_outbox(
                    &self.name,
                    &deskhost_engine::store::WorkerId::current(),
                    u32::try_from(width * 5).unwrap_or(20),
                    settle_ms.max(120_000),
                    settle_ms,
                )
                .await?;
            if claimed.is_empty() {
                return Ok(summary);
            }
            // Per ticket, in claim (= outbox) order.
            let mut tickets: Vec<Vec<Claimed>> = Vec::new();
            for c in claimed {
                match tickets
                    .iter_mut()
                    .find(|t| t[0].item.ticket_id == c.item.ticket_id)
                {
                    Some(t) => t.push(c),
                    None => tickets.push(vec![c]),
                }
            }
            let paused = std::sync::atomic::AtomicBool::new(false);
            // Collected first: a lazily mapped iterator inside the stream would make the
            // future not Send for every lifetime.
            let sends: Vec<_> = tickets
                .iter()
                .map(|t| self.deliver_ticket(store, t, &paused))
                .collect();
            let results: Vec<Result<DeliverySummary, Error>> = futures::stream::iter(sends)
                .buffer_unordered(width)
                .collect()
                .await;
            for r in results {
                summary.add(&r?);
            }
            if paused.load(std::sync::atomic::Ordering::SeqCst) {
                return Ok(summary);
            }
        }
    }

    /// Delivers one ticket's claimed items in order; what it does not get to is released.
    async fn deliver_ticket(
        &self,
        store: &Store,
        items: &[Claimed],
        paused: &std::sync::atomic::AtomicBool,
    ) -> Result<DeliverySummary, Error> {
        use std::sync::atomic::Ordering;
        let mut summary = DeliverySummary::default();
        let mut sent = 0;
        let mut failed = None;
        while let Some(c) = items.get(sent) {
            if paused.load(Ordering::SeqCst) {
                break;
            }
            sent += 1;
            match self.deliver_one(store, c, &mut summary).await {
                Ok(Step::Next) => {}
                Ok(Step::Wait) => break,
                Ok(Step::Paused) => {
                    paused.store(true, Ordering::SeqCst);
                    break;
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        // What was not attempted goes back untouched (after a store error, as far as the
        // store lets it: the lease runs out otherwise).
        for c in &items[sent..] {
            let released = store.release_outbox(&c.item.id).await;
            if failed.is_none() {
                released?;
            }
        }
        failed.map_or(Ok(summary), Err)
    }

    /// Delivers one claimed item; says whether the ticket's next item may follow.
    async fn deliver_one(
        &self,
        store: &Store,
        c: &Claimed,
        summary: &mut DeliverySummary,
    ) -> Result<Step, Error> {
        let item = &c.item;
        let kind = item.payload.kind();
        let max = self.config.max_attempts;
        if !self.config.write_back.iter().any(|k| k == kind) {
            store
                .finish_outbox(
                    &item.id,
                    &Attempt::Skipped(format!(
                        "connector {} may not write {kind} (write_back)",
                        self.name
                    )),
                    max,
                )
                .await?;
            summary.skipped += 1;
            return Ok(Step::Next);
        }
        // Each client looks for an earlier landing of an uncertain item before a resend
        // (RT: the transaction field; Zendesk: the idempotency key, and for comments older
        // than its key window, the ticket's comments).
        let now_ms = deskhost_engine::store::unix_ms();
        let outcome = match &self.client {
            Client::Rt(client) => {
                client
                    .deliver_once(item, &self.config.queue_map, c.uncertain)
                    .await
            }
            Client::Zendesk(client) => {
                client
                    .deliver_once(item, &self.config.queue_map, c.uncertain, now_ms / 1000)
                    .await
            }
        }
        .map(|(delivery, found)| {
            if found {
                summary.already_there += 1;
            }
            delivery
        });
        let attempt = match outcome {
            Ok(d) => Attempt::Delivered(d.reference),
            Err(Error::Auth(m)) => {
                self.pause(store, &m).await?;
                store.release_outbox(&item.id).await?;
                return Ok(Step::Paused);
            }
            Err(Error::RateLimited(m, secs)) => Attempt::Failed {
                error: m,
                retry_at_ms: now_ms
                    + i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX / 2),
                permanent: false,
            },
            Err(e @ (Error::Unreachable(_) | Error::Protocol(_))) => Attempt::Failed {
                error: e.to_string(),
                retry_at_ms: now_ms
                    + i64::try_from(backoff(item.attempts).as_millis()).unwrap_or(300_000),
                permanent: false,
            },
            Err(e @ (Error::Refused(_) | Error::Config(_))) => Attempt::Failed {
                error: e.to_string(),
                retry_at_ms: now_ms,
                permanent: true,
            },
            Err(Error::Store(e)) => return Err(Error::Store(e)),
        };
        Ok(match store.finish_outbox(&item.id, &attempt, max).await? {
            OutboxState::Delivered => {
                summary.delivered += 1;
                Step::Next
            }
            OutboxState::Dead => {
                summary.dead += 1;
                Step::Next
            }
            OutboxState::Skipped => {
                summary.skipped += 1;
                Step::Next
            }
            _ => {
                summary.retrying += 1;
                Step::Wait
            }
        })
    }
}

/// Every connector of a workspace's configuration.
pub fn connectors(
    config: &deskhost_protocol::config::WorkspaceConfig,
) -> Result<Vec<Connector>, Error> {
    config
        .connectors
        .iter()
        .map(|(name, c)| Connector::new(name, c))
        .collect()
}

/// Keeps connector `c` running until `shutdown`: intake every `poll_seconds`, delivery of
/// what is due every second; while the credentials are refused, only a check every poll.
pub async fn run_loop(
    c: &Connector,
    store: &Store,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let poll = Duration::from_secs(c.config.poll_seconds.max(1));
    let mut next_intake = tokio::time::Instant::now();
    loop {
        let now = tokio::time::Instant::now();
        let paused = store
            .connector_status(&c.name)
            .await
            .map(|s| s.paused.is_some())
            .unwrap_or(false);
        if paused {
            if now >= next_intake {
                next_intake = now + poll;
                if let Err(e) = c.check_credentials(store).await {
                    tracing::warn!(connector = %c.name, "credentials check: {e}");
                }
            }
        } else {
            // What is due goes out first: a restarted worker resumes delivery at once.
            if let Err(e) = c.deliver_due(store).await {
                tracing::warn!(connector = %c.name, "delivery: {e}");
            }
            if now >= next_intake {
                next_intake = now + poll;
                match c.intake(store).await {
                    Ok(s) if s.read > 0 => {
                        tracing::info!(connector = %c.name, read = s.read, new_versions = s.new_versions, closed = s.closed, "intake")
                    }
                    Ok(_) => {}
                    Err(Error::Auth(_)) => {
                        let _ = c.check_credentials(store).await;
                    }
                    Err(e) => tracing::warn!(connector = %c.name, "intake: {e}"),
                }
            }
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..20 {
            let d = backoff(attempt);
            let cap = (1000u64 << attempt.saturating_sub(1).min(9)).min(300_000);
            assert!(
                d.as_millis() as u64 >= cap / 2 && d.as_millis() as u64 <= cap,
                "{attempt}: {d:?}"
            );
        }
    }

    #[test]
    fn statuses_map_to_what_the_worker_does() {
        use reqwest::StatusCode as S;
        assert!(matches!(
            classify(S::UNAUTHORIZED, None, "x", ""),
            Err(Error::Auth(_))
        ));
        assert!(matches!(
            classify(S::TOO_MANY_REQUESTS, Some(7), "x", ""),
            Err(Error::RateLimited(_, 7))
        ));
        assert!(matches!(
            classify(S::BAD_GATEWAY, None, "x", ""),
            Err(Error::Unreachable(_))
        ));
        assert!(matches!(
            classify(S::NOT_FOUND, None, "x", ""),
            Err(Error::Refused(_))
        ));
        assert!(classify(S::CREATED, None, "x", "").is_ok());
    }
}
