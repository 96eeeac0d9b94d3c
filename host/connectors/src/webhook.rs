//! Help desks that push: a Zendesk webhook names a ticket that changed; deskhost checks the
//! signature, fetches the ticket and takes it in.
//!
//! Zendesk signs each request: `X-Zendesk-Webhook-Signature` is
//! base64(HMAC-SHA256(secret, `X-Zendesk-Webhook-Signature-Timestamp` + raw body)). A request
//! whose timestamp is more than five minutes from this machine's clock is refused too (a
//! captured request cannot be replayed later).

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Largest clock difference accepted, seconds.
pub const MAX_SKEW_SECONDS: i64 = 300;

/// Why a webhook request is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// No signature or timestamp header.
    #[error("the request has no {0} header; only Zendesk's signed webhooks are accepted")]
    Missing(&'static str),
    /// The timestamp is not a time, or too far from now.
    #[error(
        "the signature timestamp {0:?} is not within five minutes of now; a replayed or delayed request is refused"
    )]
    Stale(String),
    /// The signature does not match.
    #[error("the webhook signature does not match; check the connector's webhook secret")]
    BadSignature,
    /// The body is not a webhook naming a ticket.
    #[error("{0}")]
    Malformed(String),
}

/// The signature Zendesk sends for `timestamp` and `body`.
pub fn zendesk_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        // HMAC takes keys of any length; this is unreachable in practice.
        Err(_) => return String::new(),
    };
    mac.update(timestamp.as_bytes());
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks a Zendesk webhook request's signature and freshness (`now`: unix seconds).
pub fn verify_zendesk(
    secret: &str,
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), WebhookError> {
    let signature = signature.ok_or(WebhookError::Missing("X-Zendesk-Webhook-Signature"))?;
    let timestamp = timestamp.ok_or(WebhookError::Missing(
        "X-Zendesk-Webhook-Signature-Timestamp",
    ))?;
    let at = deskhost_protocol::digest::parse_rfc3339_secs(timestamp)
        .ok_or_else(|| WebhookError::Stale(timestamp.chars().take(40).collect()))?;
    if (now - at).abs() > MAX_SKEW_SECONDS {
        return Err(WebhookError::Stale(timestamp.chars().take(40).collect()));
    }
    let expected = zendesk_signature(secret, timestamp, body);
    let (a, b) = (expected.as_bytes(), signature.trim().as_bytes());
    let same = a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
    if same {
        Ok(())
    } else {
        Err(WebhookError::BadSignature)
    }
}

/// The ticket id a webhook body names: an event subscription's `detail.id`, or a trigger's
/// `ticket_id` / `ticket.id` (numbers or numeric strings).
pub fn ticket_id(body: &[u8]) -> Result<String, WebhookError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| WebhookError::Malformed(format!("the webhook body is not JSON: {e}")))?;
    let id = [
        &value["detail"]["id"],
        &value["ticket_id"],
        &value["ticket"]["id"],
    ]
    .into_iter()
    .find_map(|v| {
        v.as_u64()
            .map(|n| n.to_string())
            .or_else(|| v.as_str().map(str::to_string))
    })
    .ok_or_else(|| {
        WebhookError::Malformed(
            "the webhook body names no ticket (detail.id, ticket_id or ticket.id)".into(),
        )
    })?;
    if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(WebhookError::Malformed(format!(
            "the ticket id {:?} is not a Zendesk ticket number",
            deskhost_protocol::sanitize::field(&id)
        )));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_633_600; // 2025-12-02T00:00:00Z
    const TS: &str = "2025-12-02T00:00:00Z";

    #[test]
    fn a_signed_fresh_request_passes_and_any_change_fails() {
        let body = br#"{"ticket_id": 42}"#;
        let sig = zendesk_signature("s3cret", TS, body);
        assert_eq!(
            verify_zendesk("s3cret", Some(&sig), Some(TS), body, NOW),
            Ok(())
        );
        assert_eq!(
            verify_zendesk("s3cret", Some(&sig), Some(TS), br#"{"ticket_id": 43}"#, NOW),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            verify_zendesk("other", Some(&sig), Some(TS), body, NOW),
            Err(WebhookError::BadSignature)
        );
        assert!(matches!(
            verify_zendesk("s3cret", Some(&sig), Some(TS), body, NOW + 301),
            Err(WebhookError::Stale(_))
        ));
        assert_eq!(
            verify_zendesk("s3cret", None, Some(TS), body, NOW),
            Err(WebhookError::Missing("X-Zendesk-Webhook-Signature"))
        );
    }

    #[test]
    fn the_signature_is_base64_of_hmac_sha256_over_timestamp_and_body() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            zendesk_signature("Jefe", "what do ya want ", b"for nothing?"),
            "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="
        );
    }

    #[test]
    fn ticket_ids_come_from_the_documented_places_and_are_numbers() {
        assert_eq!(
            ticket_id(br#"{"detail": {"id": "35436"}}"#),
            Ok("35436".into())
        );
        assert_eq!(ticket_id(br#"{"ticket_id": 7}"#), Ok("7".into()));
        assert_eq!(ticket_id(br#"{"ticket": {"id": 9}}"#), Ok("9".into()));
        assert!(matches!(
            ticket_id(b"not json"),
            Err(WebhookError::Malformed(_))
        ));
        assert!(matches!(
            ticket_id(br#"{"ticket_id": "../1"}"#),
            Err(WebhookError::Malformed(_))
        ));
        assert!(matches!(
            ticket_id(br#"{}"#),
            Err(WebhookError::Malformed(_))
        ));
    }
}
