//! Zendesk Support through its REST API (`/api/v2`), with API-token basic auth
//! (`EMAIL/token:TOKEN`).
//!
//! - Intake: the cursor-based incremental ticket export
//!   (`/incremental/tickets/cursor.json?start_time=0`, then `?cursor=AFTER_CURSOR` until
//!   `end_of_stream`); the stored cursor is the last `after_cursor`. An open ticket's public
//!   comments after the description, except the connector's own, are its follow-up messages
//!   (a new one makes a new version).
//! - Delivery: `PUT /tickets/ID.json` — category and language as custom fields (`field_ids`),
//!   the queue as the group in `queue_map`, priority (medium is Zendesk's `normal`), tags as
//!   `additional_tags`, internal notes as private comments, approved replies as public ones.
//!   Every write carries `Idempotency-Key: <outbox id>`: Zendesk answers a repeated key with
//!   the first answer instead of writing again, so an attempt whose outcome is unknown is
//!   simply sent again — while Zendesk still holds the key (two hours, per its API
//!   documentation). A comment whose outcome is unknown and whose item is older than that is
//!   first looked for among the ticket's comments (`GET /tickets/ID/comments.json`).
//! - Close: a ticket `solved` or `closed` yields its final group (back through `queue_map`),
//!   priority, category and language.

use crate::{Delivery, Error, HelpDeskTicket};
use deskhost_protocol::digest::parse_rfc3339_secs;
use deskhost_protocol::gate::Effect;
use deskhost_protocol::outbox::{OutboxItem, Outgoing};
use deskhost_protocol::records::{MAX_MESSAGES, MessageInput, TicketInput};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::ops::ControlFlow;

/// How long Zendesk keeps an idempotency key, seconds (two hours, per its API
/// documentation), less ten minutes for clocks and requests under way.
pub const KEY_LIFETIME_SECS: i64 = 2 * 3600 - 600;

/// A Zendesk REST client.
pub struct ZendeskClient {
    http: reqwest::Client,
    api: String,
    user: String,
    token: String,
    field_ids: BTreeMap<String, u64>,
    /// The connector's own Zendesk user id (its comments are not the conversation).
    own_id: std::sync::OnceLock<String>,
}

fn zendesk_priority(p: &str) -> Option<&'static str> {
    match p {
        "low" => Some("low"),
        "medium" => Some("normal"),
        "high" => Some("high"),
        "urgent" => Some("urgent"),
        _ => None,
    }
}

fn deskhost_priority(p: &str) -> Option<&'static str> {
    match p {
        "low" => Some("low"),
        "normal" => Some("medium"),
        "high" => Some("high"),
        "urgent" => Some("urgent"),
        _ => None,
    }
}

fn id_text(v: &Value) -> Option<String> {
    v.as_u64()
        .map(|n| n.to_string())
        .or_else(|| v.as_str().map(str::to_string))
}

impl ZendeskClient {
    /// A client of the Zendesk at `base_url` for agent `email` with API token `token`.
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        email: &str,
        token: &str,
        field_ids: BTreeMap<String, u64>,
    ) -> Self {
        Self {
            http,
            api: format!("{}/api/v2", base_url.trim_end_matches('/')),
            user: format!("{email}/token"),
            token: token.to_string(),
            field_ids,
            own_id: std::sync::OnceLock::new(),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> Result<Value, Error> {
        crate::send_json(request, &self.user, &self.token, what).await
    }

    /// Checks the credentials (`GET /users/me.json`).
    pub async fn probe(&self) -> Result<(), Error> {
        let me = self
            .send(
                self.http.get(format!("{}/users/me.json", self.api)),
                "check the Zendesk credentials",
            )
            .await?;
        // Zendesk answers an unauthenticated /users/me with an anonymous user (id null).
        let Some(id) = id_text(&me["user"]["id"]) else {
            return Err(Error::Auth(
                "check the Zendesk credentials: Zendesk treats them as anonymous".into(),
            ));
        };
        let _ = self.own_id.set(id);
        Ok(())
    }

    /// The ticket's follow-up conversation: its public comments after the first (which is
    /// the description), oldest first, except the connector's own (`GET
    /// /tickets/ID/comments.json`, cursor pages of 100).
    async fn conversation(&self, t: &mut HelpDeskTicket) -> Result<(), Error> {
        if self.own_id.get().is_none() {
            self.probe().await?;
        }
        let own = self.own_id.get().cloned().unwrap_or_default();
        let requester = t.ticket.requester.clone();
        let mut first = true;
        let mut messages = Vec::new();
        self.each_comment(&t.external_id, "asc", |c| {
            let author = id_text(&c["author_id"]).unwrap_or_default();
            if !std::mem::take(&mut first) && c["public"].as_bool() == Some(true) && author != own {
                messages.push(MessageInput {
                    author: if Some(&author) == requester.as_ref() {
                        "customer".into()
                    } else {
                        "agent".into()
                    },
                    body: c["body"].as_str().unwrap_or_default().to_string(),
                    sent_at: c["created_at"].as_str().map(str::to_string),
                });
            }
            ControlFlow::Continue(())
        })
        .await?;
        // The newest are kept when a ticket has more than deskhost keeps.
        let skip = messages.len().saturating_sub(MAX_MESSAGES);
        t.ticket.messages = messages.split_off(skip);
        Ok(())
    }

    /// Tickets changed since `cursor` (all from the start without one), with the new cursor.
    pub async fn changed_since(
        &self,
        cursor: Option<&str>,
        prefix: &str,
        queue_map: &BTreeMap<String, String>,
    ) -> Result<(Vec<HelpDeskTicket>, Option<String>), Error> {
        let mut out = Vec::new();
        let mut cursor = cursor.map(str::to_string);
        // A bound on pages per pass; the next pass continues from the cursor.
        for _ in 0..100 {
            let query: Vec<(&str, String)> = match &cursor {
                Some(c) => vec![("cursor", c.clone())],
                None => vec![("start_time", "0".into())],
            };
            let page = self
                .send(
                    self.http
                        .get(format!("{}/incremental/tickets/cursor.json", self.api))
                        .query(&query),
                    "export changed tickets",
                )
                .await?;
            for t in page["tickets"].as_array().cloned().unwrap_or_default() {
                if let Some(mut ticket) = self.ticket_of(&t, prefix, queue_map) {
                    if !ticket.closed {
                        self.conversation(&mut ticket).await?;
                    }
                    out.push(ticket);
                }
            }
            if let Some(next) = page["after_cursor"].as_str() {
                cursor = Some(next.to_string());
            }
            if page["end_of_stream"].as_bool().unwrap_or(true) {
                break;
            }
        }
        Ok((out, cursor))
    }

    fn ticket_of(
        &self,
        t: &Value,
        prefix: &str,
        queue_map: &BTreeMap<String, String>,
    ) -> Option<HelpDeskTicket> {
        let id = id_text(&t["id"])?;
        let status = t["status"].as_str().unwrap_or_default();
        if status == "deleted" {
            return None;
        }
        let field = |name: &str| -> Option<String> {
            let wanted = self.field_ids.get(name)?;
            t["custom_fields"].as_array()?.iter().find_map(|f| {
                (f["id"].as_u64() == Some(*wanted))
                    .then(|| f["value"].as_str().map(str::to_string))
                    .flatten()
            })
        };
        let group = id_text(&t["group_id"]);
        let queue = group.and_then(|g| {
            queue_map
                .iter()
                .find(|(_, v)| **v == g)
                .map(|(k, _)| k.clone())
        });
        let tags: Vec<String> = t["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Some(HelpDeskTicket {
            external_id: id.clone(),
            closed: matches!(status, "solved" | "closed"),
            updated_at: t["updated_at"].as_str().unwrap_or_default().to_string(),
            final_fields: [
                ("queue", queue),
                (
                    "priority",
                    t["priority"]
                        .as_str()
                        .and_then(deskhost_priority)
                        .map(str::to_string),
                ),
                ("category", field("category")),
                ("language", field("language")),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
            .collect(),
            ticket: TicketInput {
                id: format!("{prefix}:{id}"),
                subject: t["subject"].as_str().unwrap_or_default().to_string(),
                body: t["description"].as_str().unwrap_or_default().to_string(),
                channel: t["via"]["channel"].as_str().map(str::to_string),
                requester: id_text(&t["requester_id"]),
                tags,
                created_at: t["created_at"].as_str().map(str::to_string),
                ..TicketInput::default()
            },
        })
    }

    /// One ticket (`GET /tickets/ID.json`), as deskhost takes it in.
    pub async fn ticket(
        &self,
        id: &str,
        prefix: &str,
        queue_map: &BTreeMap<String, String>,
    ) -> Result<Option<HelpDeskTicket>, Error> {
        let found = self
            .send(
                self.http.get(format!("{}/tickets/{id}.json", self.api)),
                "read a ticket",
            )
            .await?;
        let mut ticket = self.ticket_of(&found["ticket"], prefix, queue_map);
        if let Some(t) = ticket.as_mut().filter(|t| !t.closed) {
            self.conversation(t).await?;
        }
        Ok(ticket)
    }

    /// The `ticket` object of the update that writes `item`.
    fn update_of(
        &self,
        item: &OutboxItem,
        queue_map: &BTreeMap<String, String>,
    ) -> Result<Value, Error> {
        let field = |name: &str, value: &str| match self.field_ids.get(name) {
            Some(id) => Ok(json!({ "custom_fields": [{ "id": id, "value": value }] })),
            None => Err(Error::Refused(format!(
                "the connector has no Zendesk field id for {name} (field_ids.{name} in deskhost.toml)"
            ))),
        };
        match &item.payload {
            Outgoing::Effect(Effect::Category { value }) => field("category", value),
            Outgoing::Effect(Effect::Language { value }) => field("language", value),
            Outgoing::Effect(Effect::Queue { value }) => {
                match queue_map.get(value).and_then(|g| g.parse::<u64>().ok()) {
                    Some(group) => Ok(json!({ "group_id": group })),
                    None => Err(Error::Refused(format!(
                        "queue {value:?} has no Zendesk group id in queue_map"
                    ))),
                }
            }
            Outgoing::Effect(Effect::Priority { value }) => match zendesk_priority(value) {
                Some(p) => Ok(json!({ "priority": p })),
                None => Err(Error::Refused(format!(
                    "priority {value:?} has no Zendesk equivalent"
                ))),
            },
            Outgoing::Effect(Effect::Tags { values }) => Ok(json!({ "additional_tags": values })),
            Outgoing::Effect(Effect::InternalNote { body }) => {
                Ok(json!({ "comment": { "body": body, "public": false } }))
            }
            Outgoing::Reply(reply) => {
                Ok(json!({ "comment": { "body": reply.body, "public": true } }))
            }
            Outgoing::Assessment(a) => {
                let confidence = a
                    .confidence
                    .is_finite()
                    .then(|| format!("{:.4}", a.confidence));
                let fields: Vec<Value> = [
                    ("sentiment", Some(a.sentiment.as_str().to_string())),
                    ("confidence", confidence),
                ]
                .into_iter()
                .filter_map(|(name, value)| {
                    Some(json!({ "id": self.field_ids.get(name)?, "value": value? }))
                })
                .collect();
                if fields.is_empty() {
                    return Err(Error::Refused(
                        "the connector has no Zendesk field id for sentiment or confidence (field_ids.sentiment, field_ids.confidence in deskhost.toml; or leave assessment out of write_back)".into(),
                    ));
                }
                Ok(json!({ "custom_fields": fields }))
            }
        }
    }

    /// A comment on ticket `id` with `body` and visibility `public`, made at or after
    /// `since` (RFC 3339): its id. Reads the newest comments first, up to 1,000.
    pub async fn find_comment(
        &self,
        id: &str,
        body: &str,
        public: bool,
        since: &str,
    ) -> Result<Option<String>, Error> {
        let since = parse_rfc3339_secs(since).unwrap_or(0);
        let mut found = None;
        self.each_comment(id, "desc", |c| {
            let at = c["created_at"].as_str().and_then(parse_rfc3339_secs);
            if at.is_some_and(|t| t < since) {
                return ControlFlow::Break(());
            }
            if c["public"].as_bool() == Some(public)
                && c["body"].as_str().map(str::trim) == Some(body.trim())
            {
                found = id_text(&c["id"]);
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })
        .await?;
        Ok(found)
    }

    /// Calls `visit` on ticket `id`'s comments in `order` (`asc` or `desc`) until it breaks,
    /// following the cursor pages of 100 (`GET /tickets/ID/comments.json`), up to 1,000.
    async fn each_comment(
        &self,
        id: &str,
        order: &str,
        mut visit: impl FnMut(&Value) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let mut url = format!(
            "{}/tickets/{id}/comments.json?sort_order={order}&page[size]=100",
            self.api
        );
        for _ in 0..10 {
            let page = self
                .send(self.http.get(&url), "read a ticket's comments")
                .await?;
            for c in page["comments"].as_array().into_iter().flatten() {
                if visit(c).is_break() {
                    return Ok(());
                }
            }
            match page["links"]["next"].as_str() {
                Some(next) if page["meta"]["has_more"] == true && next.starts_with(&self.api) => {
                    url = next.to_string();
                }
                _ => break,
            }
        }
        Ok(())
    }

    /// Delivers `item` once: a comment whose earlier attempt may have landed longer ago than
    /// Zendesk keeps idempotency keys is looked for first. Returns the delivery and whether it
    /// was found already there.
    pub async fn deliver_once(
        &self,
        item: &OutboxItem,
        queue_map: &BTreeMap<String, String>,
        uncertain: bool,
        now_secs: i64,
    ) -> Result<(Delivery, bool), Error> {
        let comment = match &item.payload {
            Outgoing::Effect(Effect::InternalNote { body }) => Some((body, false)),
            Outgoing::Reply(reply) => Some((&reply.body, true)),
            _ => None,
        };
        let created = parse_rfc3339_secs(&item.created_at).unwrap_or(0);
        if let Some((body, public)) = comment
            && uncertain
            && now_secs - created > KEY_LIFETIME_SECS
            && let Some(found) = self
                .find_comment(&item.external_id, body, public, &item.created_at)
                .await?
        {
            return Ok((
                Delivery {
                    reference: Some(found),
                },
                true,
            ));
        }
        Ok((self.deliver(item, queue_map).await?, false))
    }

    /// Writes one outbox item to its ticket (idempotent by the outbox id).
    pub async fn deliver(
        &self,
        item: &OutboxItem,
        queue_map: &BTreeMap<String, String>,
    ) -> Result<Delivery, Error> {
        let ticket = self.update_of(item, queue_map)?;
        let answer = self
            .send(
                self.http
                    .put(format!("{}/tickets/{}.json", self.api, item.external_id))
                    .header("Idempotency-Key", &item.id)
                    .json(&json!({ "ticket": ticket })),
                &format!(
                    "write {} to Zendesk ticket {}",
                    item.payload.kind(),
                    item.external_id
                ),
            )
            .await?;
        Ok(Delivery {
            reference: id_text(&answer["audit"]["id"]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_map_both_ways() {
        for p in ["low", "medium", "high", "urgent"] {
            let z = zendesk_priority(p).unwrap_or_default();
            assert_eq!(deskhost_priority(z), Some(p));
        }
        assert_eq!(zendesk_priority("critical"), None);
    }
}
