//! The guest SDK for deskhost policy plugins written in Rust.
//!
//! - WIT bindings generated once from `wit/` ([`types`], and the capability interfaces
//!   [`helpdesk`], [`kb`], [`crm`], [`log`], [`config`]); a plugin's component imports only
//!   the functions it actually calls.
//! - One module per policy world: implement the world's `Guest` trait and call the matching
//!   export macro (only then does the component claim that world's export):
//!
//! ```ignore
//! struct Policy;
//! impl deskhost_sdk::triage_world::Guest for Policy {
//!     fn triage(ticket: deskhost_sdk::Ticket) -> Result<deskhost_sdk::TriageDecision, deskhost_sdk::PluginError> {
//!         // Decide here; see plugins/triage for a complete policy.
//!         Err(deskhost_sdk::plugin_error("undecided", format!("no rules for {}", ticket.id)))
//!     }
//! }
//! deskhost_sdk::export_triage!(Policy);
//! ```
//! - [`bound`]: the plugin's settings and data, read from memory when the host bound them
//!   into the component (zero-copy), from the `config` capability otherwise.
//! - [`bump`]: a bump allocator for plugins, which run in a fresh instance per call.
//! - Small helpers every policy needs ([`evidence`], [`phrases`], [`settings`]).

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "capabilities",
        path: "../../wit",
    });
}

pub use bindings::deskhost::plugin::{config, crm, helpdesk, kb, log, types};
pub use deskhost_nlp as nlp;
pub use types::*;

pub mod bound;
pub mod bump;
pub mod phrases;

pub use escalation_world::export_escalation;
pub use reply_world::export_reply;
pub use triage_world::export_triage;

/// Bindings of one policy world, reusing the capability bindings above.
macro_rules! policy_world {
    ($module:ident, $world:literal, $export:literal, $path:literal) => {
        #[doc(hidden)]
        pub mod $module {
            wit_bindgen::generate!({
                world: $world,
                path: "../../wit",
                with: {
                    "deskhost:plugin/types@0.1.0": crate::types,
                    "deskhost:plugin/helpdesk@0.1.0": crate::helpdesk,
                    "deskhost:plugin/kb@0.1.0": crate::kb,
                    "deskhost:plugin/crm@0.1.0": crate::crm,
                    "deskhost:plugin/log@0.1.0": crate::log,
                    "deskhost:plugin/config@0.1.0": crate::config,
                },
                pub_export_macro: true,
                export_macro_name: $export,
                default_bindings_module: $path,
            });
        }
    };
}

policy_world!(
    triage_world,
    "triage-policy",
    "export_triage",
    "deskhost_sdk::triage_world"
);
policy_world!(
    reply_world,
    "reply-policy",
    "export_reply",
    "deskhost_sdk::reply_world"
);
policy_world!(
    escalation_world,
    "escalation-policy",
    "export_escalation",
    "deskhost_sdk::escalation_world"
);

/// A [`PluginError`] with `code` and `message`.
pub fn plugin_error(code: &str, message: impl Into<String>) -> PluginError {
    PluginError {
        code: code.to_string(),
        message: message.into(),
    }
}

/// An [`Evidence`] record.
pub fn evidence(
    source: EvidenceSource,
    reference: impl Into<String>,
    quote: impl Into<String>,
) -> Evidence {
    Evidence {
        source,
        reference: reference.into(),
        quote: quote.into(),
    }
}

/// Subject and body joined by a line break: the text policies classify and search with
/// (the same function the host's trainer uses, [`deskhost_nlp::text::ticket_text`]).
pub fn ticket_text(ticket: &Ticket) -> String {
    deskhost_nlp::text::ticket_text(&ticket.subject, &ticket.body)
}

/// The plugin's settings document parsed as JSON into `T`; `T::default()` when the plugin
/// has none. A malformed document is a `bad-settings` plugin error naming the problem.
pub fn settings<T: serde::de::DeserializeOwned + Default>() -> Result<T, PluginError> {
    let bytes = bound::settings();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        plugin_error(
            "bad-settings",
            format!("plugin settings are not valid: {e}"),
        )
    })
}

/// Like [`settings`], but `T` may borrow strings from the settings bytes, which live as long
/// as the instance (bound into its memory, or fetched once): no copy of a large rule set on
/// every call.
pub fn settings_borrowed<T: serde::Deserialize<'static> + Default>() -> Result<T, PluginError> {
    let bytes: &'static [u8] = match bound::settings() {
        std::borrow::Cow::Borrowed(b) => b,
        // Not reached with the SDK's own sources; kept correct for any other.
        std::borrow::Cow::Owned(v) => Vec::leak(v),
    };
    parse_settings(bytes)
}

/// `bytes` (a settings document) as `T`, which may borrow from them; all whitespace (or
/// nothing) is `T::default()`. What [`settings_borrowed`] does with the bound settings, for
/// a policy run over settings it was handed (natively, e.g. `deskhost bench triage`).
pub fn parse_settings<'a, T: serde::Deserialize<'a> + Default>(
    bytes: &'a [u8],
) -> Result<T, PluginError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| {
        plugin_error(
            "bad-settings",
            format!("plugin settings are not valid: {e}"),
        )
    })
}

/// Lowercase name of a [`Priority`].
pub fn priority_name(p: Priority) -> &'static str {
    match p {
        Priority::Low => "low",
        Priority::Medium => "medium",
        Priority::High => "high",
        Priority::Urgent => "urgent",
    }
}

/// The [`Priority`] called `name` (`low`, `medium`, `high`, `urgent`; also `critical` → urgent).
pub fn priority_from_name(name: &str) -> Option<Priority> {
    match name.to_ascii_lowercase().as_str() {
        "low" => Some(Priority::Low),
        "medium" | "normal" => Some(Priority::Medium),
        "high" => Some(Priority::High),
        "urgent" | "critical" => Some(Priority::Urgent),
        _ => None,
    }
}

/// Rank of a priority, for "at least" comparisons.
pub fn priority_rank(p: Priority) -> u8 {
    match p {
        Priority::Low => 0,
        Priority::Medium => 1,
        Priority::High => 2,
        Priority::Urgent => 3,
    }
}
