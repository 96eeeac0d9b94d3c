//! Request Tracker 5 through REST2 (`/REST/2.0`), with basic auth.
//!
//! - Intake: TicketSQL `LastUpdated >= 'CURSOR'` ordered by `LastUpdated`; each ticket's
//!   subject, requestor, first message (its `Create` transaction) and later correspondence
//!   by anyone but the connector's own user (deskhost's writes never make a new version).
//! - Delivery: queue and priority by `PUT /ticket/ID`; category, language, sentiment and
//!   confidence (the assessment) as ticket custom fields (a set that changes nothing makes
//!   no transaction: safe to repeat); tags as
//!   a multi-value `tags` custom field, internal notes as comments and approved replies as
//!   correspondence. Comments and correspondence carry the outbox id in the transaction
//!   custom field `deskhost-outbox`; before sending one whose earlier attempt may have landed,
//!   the connector searches for it (TransactionSQL) and does not send it twice.
//! - Close: a ticket in `resolved` or `rejected` yields its final queue, priority, category
//!   and language.
//!
//! Custom fields `category`, `language`, `sentiment`, `confidence`, `tags` (ticket) and
//! `deskhost-outbox`
//! (transaction) must exist and apply to the queues deskhost writes to (an RT admin creates
//! them; the test suite does it through RT's own API).

use crate::{Delivery, Error, HelpDeskTicket};
use deskhost_protocol::gate::Effect;
use deskhost_protocol::outbox::{OutboxItem, Outgoing};
use deskhost_protocol::records::{MessageInput, TicketInput};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Mutex;

/// The transaction custom field that carries the outbox id of a comment or reply.
pub const OUTBOX_CF: &str = "deskhost-outbox";

/// A REST2 client.
pub struct RtClient {
    http: reqwest::Client,
    api: String,
    user: String,
    password: String,
    queue_names: Mutex<HashMap<String, String>>,
}

/// RT priority numbers for deskhost's priorities, and back (nearest).
const PRIORITIES: [(&str, i64); 4] = [("low", 0), ("medium", 50), ("high", 75), ("urgent", 100)];

fn priority_number(p: &str) -> Option<i64> {
    PRIORITIES.iter().find(|(n, _)| *n == p).map(|(_, v)| *v)
}

fn priority_name(n: i64) -> &'static str {
    PRIORITIES
        .iter()
        .min_by_key(|(_, v)| (v - n).abs())
        .map_or("low", |(name, _)| name)
}

impl RtClient {
    /// A client of the RT at `base_url` acting as `user`.
    pub fn new(http: reqwest::Client, base_url: &str, user: &str, password: &str) -> Self {
        Self {
            http,
            api: format!("{}/REST/2.0", base_url.trim_end_matches('/')),
            user: user.to_string(),
            password: password.to_string(),
            queue_names: Mutex::new(HashMap::new()),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> Result<Value, Error> {
        crate::send_json(request, &self.user, &self.password, what).await
    }

    async fn get(&self, path: &str, query: &[(&str, &str)], what: &str) -> Result<Value, Error> {
        let request = self.http.get(format!("{}{path}", self.api)).query(query);
        self.send(request, what).await
    }

    /// Checks the credentials (`GET /REST/2.0/rt`).
    pub async fn probe(&self) -> Result<(), Error> {
        self.get("/rt", &[], "check the RT credentials")
            .await
            .map(|_| ())
    }

    async fn queue_name(&self, id: &str) -> Result<String, Error> {
        if let Ok(names) = self.queue_names.lock()
            && let Some(name) = names.get(id)
        {
            return Ok(name.clone());
        }
        let queue = self
            .get(&format!("/queue/{id}"), &[], "read a queue")
            .await?;
        let name = queue["Name"].as_str().unwrap_or_default().to_string();
        if let Ok(mut names) = self.queue_names.lock() {
            names.insert(id.to_string(), name.clone());
        }
        Ok(name)
    }

    /// Tickets updated at or after `cursor` (RT's `YYYY-MM-DD HH:MM:SS`, UTC), oldest first;
    /// with the new cursor (the last one's `LastUpdated`).
    pub async fn updated_since(
        &self,
        cursor: Option<&str>,
        queues: &[String],
        prefix: &str,
    ) -> Result<(Vec<HelpDeskTicket>, Option<String>), Error> {
        let mut query = format!(
            "LastUpdated >= '{}'",
            cursor.unwrap_or("1970-01-01 00:00:00").replace('\'', "")
        );
        if !queues.is_empty() {
            let names: Vec<String> = queues
                .iter()
                .map(|q| format!("Queue = '{}'", q.replace('\'', "")))
                .collect();
            query = format!("{query} AND ({})", names.join(" OR "));
        }
        let mut out = Vec::new();
        let mut last = cursor.map(str::to_string);
        let mut page = 1u32;
        loop {
            let page_text = page.to_string();
            let found = self
                .get(
                    "/tickets",
                    &[
                        ("query", query.as_str()),
                        ("orderby", "LastUpdated"),
                        ("order", "ASC"),
                        ("per_page", "100"),
                        ("page", &page_text),
                    ],
                    "search updated tickets",
                )
                .await?;
            let items = found["items"].as_array().cloned().unwrap_or_default();
            for item in &items {
                let Some(id) = item["id"]
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| item["id"].as_i64().map(|n| n.to_string()))
                else {
                    continue;
                };
                let ticket = self.ticket(&id, prefix).await?;
                last = Some(ticket.updated_at.clone());
                out.push(ticket);
            }
            let pages = found["pages"].as_f64().unwrap_or(0.0);
            if items.is_empty() || f64::from(page) >= pages {
                break;
            }
            page += 1;
        }
        Ok((out, last))
    }

    /// One ticket, as deskhost takes it in.
    pub async fn ticket(&self, id: &str, prefix: &str) -> Result<HelpDeskTicket, Error> {
        let t = self
            .get(&format!("/ticket/{id}"), &[], "read a ticket")
            .await?;
        let queue_id = t["Queue"]["id"].as_str().unwrap_or_default().to_string();
        let queue = if queue_id.is_empty() {
            String::new()
        } else {
            self.queue_name(&queue_id).await?
        };
        let cf = |name: &str| -> Option<String> {
            t["CustomFields"].as_array().and_then(|cfs| {
                cfs.iter()
                    .find(|c| c["name"] == name)
                    .and_then(|c| c["values"].as_array())
                    .and_then(|v| v.first())
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            })
        };
        let requester = t["Requestor"]
            .as_array()
            .and_then(|r| r.first())
            .and_then(|r| r["id"].as_str())
            .map(str::to_string);
        let history = self
            .get(
                &format!("/ticket/{id}/history"),
                &[("fields", "Type,Creator,Created"), ("per_page", "100")],
                "read a ticket's history",
            )
            .await?;
        let mut body = String::new();
        let mut messages = Vec::new();
        for txn in history["items"].as_array().cloned().unwrap_or_default() {
            let kind = txn["Type"].as_str().unwrap_or_default();
            let creator = txn["Creator"]["id"].as_str().unwrap_or_default();
            if !(kind == "Create" || kind == "Correspond") || creator == self.user {
                continue;
            }
            let txn_id = txn["id"].as_str().unwrap_or_default();
            let text = self.transaction_text(txn_id).await?;
            if kind == "Create" {
                body = text;
            } else {
                messages.push(MessageInput {
                    author: if Some(creator) == requester.as_deref() {
                        "customer".into()
                    } else {
                        "agent".into()
                    },
                    body: text,
                    sent_at: txn["Created"].as_str().map(str::to_string),
                });
            }
        }
        let status = t["Status"].as_str().unwrap_or_default().to_string();
        let ticket = TicketInput {
            id: format!("{prefix}:{id}"),
            subject: t["Subject"].as_str().unwrap_or_default().to_string(),
            body,
            channel: Some("email".into()),
            requester,
            messages,
            created_at: t["Created"].as_str().map(str::to_string),
            ..TicketInput::default()
        };
        let priority = t["Priority"]
            .as_str()
            .and_then(|p| p.parse::<i64>().ok())
            .or_else(|| t["Priority"].as_i64())
            .unwrap_or(0);
        Ok(HelpDeskTicket {
            external_id: id.to_string(),
            closed: matches!(status.as_str(), "resolved" | "rejected"),
            updated_at: t["LastUpdated"]
                .as_str()
                .map(|s| s.replace('T', " ").trim_end_matches('Z').to_string())
                .unwrap_or_default(),
            final_fields: [
                ("queue", Some(queue)),
                ("priority", Some(priority_name(priority).to_string())),
                ("category", cf("category")),
                ("language", cf("language")),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| (k.to_string(), v)))
            .collect(),
            ticket,
        })
    }

    async fn transaction_text(&self, txn_id: &str) -> Result<String, Error> {
        let parts = self
            .get(
                &format!("/transaction/{txn_id}/attachments"),
                &[("fields", "ContentType,Content")],
                "read a message",
            )
            .await?;
        Ok(parts["items"]
            .as_array()
            .and_then(|items| {
                items
                    .iter()
                    .find(|a| a["ContentType"].as_str() == Some("text/plain"))
                    .and_then(|a| a["Content"].as_str())
            })
            .unwrap_or_default()
            .to_string())
    }

    /// Whether a comment or reply with outbox id `outbox_id` is already on ticket `id`: the
    /// transaction id if so.
    pub async fn find_delivered(&self, id: &str, outbox_id: &str) -> Result<Option<String>, Error> {
        let query = format!(
            "ObjectType = 'RT::Ticket' AND ObjectId = '{}' AND CF.{{{OUTBOX_CF}}} = '{}'",
            id.replace('\'', ""),
            outbox_id.replace('\'', "")
        );
        let found = self
            .get(
                "/transactions",
                &[("query", &query)],
                "look for an earlier delivery",
            )
            .await?;
        Ok(found["items"]
            .as_array()
            .and_then(|items| items.first())
            .and_then(|t| {
                t["id"]
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| t["id"].as_i64().map(|n| n.to_string()))
            }))
    }

    /// Delivers `item` once: a comment or reply whose earlier attempt may have landed is
    /// looked for (by its outbox id) before it is sent. Returns the delivery and whether it
    /// was found already there.
    pub async fn deliver_once(
        &self,
        item: &OutboxItem,
        queue_map: &std::collections::BTreeMap<String, String>,
        uncertain: bool,
    ) -> Result<(Delivery, bool), Error> {
        let message = matches!(
            item.payload,
            Outgoing::Effect(Effect::InternalNote { .. }) | Outgoing::Reply(_)
        );
        if uncertain
            && message
            && let Some(reference) = self.find_delivered(&item.external_id, &item.id).await?
        {
            return Ok((
                Delivery {
                    reference: Some(reference),
                },
                true,
            ));
        }
        Ok((self.deliver(item, queue_map).await?, false))
    }

    /// Writes one outbox item to its ticket.
    pub async fn deliver(
        &self,
        item: &OutboxItem,
        queue_map: &std::collections::BTreeMap<String, String>,
    ) -> Result<Delivery, Error> {
        let id = &item.external_id;
        let ticket_url = format!("{}/ticket/{id}", self.api);
        let update = |body: Value| self.http.put(&ticket_url).json(&body);
        let message = |path: &str, text: &str| {
            self.http.post(format!("{ticket_url}/{path}")).json(&json!({
                "Content": text,
                "ContentType": "text/plain",
                "TxnCustomFields": { OUTBOX_CF: item.id },
            }))
        };
        let request = match &item.payload {
            Outgoing::Effect(Effect::Queue { value }) => {
                let name = queue_map.get(value).unwrap_or(value);
                update(json!({ "Queue": name }))
            }
            Outgoing::Effect(Effect::Priority { value }) => match priority_number(value) {
                Some(n) => update(json!({ "Priority": n })),
                None => {
                    return Err(Error::Refused(format!(
                        "priority {value:?} has no RT number"
                    )));
                }
            },
            Outgoing::Effect(Effect::Category { value }) => {
                update(json!({ "CustomFields": { "category": value } }))
            }
            Outgoing::Effect(Effect::Language { value }) => {
                update(json!({ "CustomFields": { "language": value } }))
            }
            Outgoing::Effect(Effect::Tags { values }) => {
                update(json!({ "CustomFields": { "tags": values } }))
            }
            Outgoing::Effect(Effect::InternalNote { body }) => message("comment", body),
            Outgoing::Reply(reply) => message("correspond", &reply.body),
            Outgoing::Assessment(a) => {
                let mut fields = serde_json::Map::new();
                fields.insert("sentiment".into(), json!(a.sentiment.as_str()));
                if a.confidence.is_finite() {
                    fields.insert("confidence".into(), json!(format!("{:.4}", a.confidence)));
                }
                update(json!({ "CustomFields": fields }))
            }
        };
        let answer = self
            .send(
                request,
                &format!("write {} to RT ticket {id}", item.payload.kind()),
            )
            .await?;
        // Field updates answer with a list of messages; comments with theirs. RT reports a
        // refusal (no such queue, no right) as a message with 200: look for one.
        let messages: Vec<String> = answer
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(refused) = messages.iter().find(|m| {
            let m = m.to_ascii_lowercase();
            m.contains("permission denied") || m.contains("could not") || m.contains("invalid")
        }) {
            return Err(Error::Refused(format!("RT ticket {id}: {refused}")));
        }
        let reference = match item.payload {
            Outgoing::Effect(Effect::InternalNote { .. }) | Outgoing::Reply(_) => {
                self.find_delivered(id, &item.id).await?
            }
            _ => None,
        };
        Ok(Delivery { reference })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_map_both_ways() {
        for (name, n) in PRIORITIES {
            assert_eq!(priority_number(name), Some(n));
            assert_eq!(priority_name(n), name);
        }
        assert_eq!(priority_name(60), "medium");
        assert_eq!(priority_number("critical"), None);
    }
}
