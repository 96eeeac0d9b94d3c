//! Plugin faults: every way a call can fail, as the host classifies and reports it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The class of a fault.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    PartialOrd,
    Ord,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Wall-clock deadline (`limits.wall_ms`).
    Deadline,
    /// Fuel budget (`limits.fuel`).
    Fuel,
    /// Memory limit (`limits.memory_mib`) or stack exhaustion.
    Memory,
    /// A capability call outside the grants.
    CapabilityDenied,
    /// `limits.host_calls` or a capability's `max_calls`.
    HostCallLimit,
    /// The guest panicked; the message holds its panic text.
    GuestPanic,
    /// Any other trap in guest code.
    GuestTrap,
    /// The plugin could not be instantiated.
    Instantiation,
    /// The proposal failed the host's checks (schema, taxonomy, citations).
    InvalidOutput,
    /// The proposal exceeded `limits.output_kib`.
    OutputTooLarge,
    /// The plugin's data (its model) is missing, corrupt or fails its digest.
    BadModel,
    /// The plugin returned its own `plugin-error`.
    PluginError,
    /// The host failed (not the plugin's fault).
    HostError,
}

impl FaultKind {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Deadline => "deadline",
            FaultKind::Fuel => "fuel",
            FaultKind::Memory => "memory",
            FaultKind::CapabilityDenied => "capability-denied",
            FaultKind::HostCallLimit => "host-call-limit",
            FaultKind::GuestPanic => "guest-panic",
            FaultKind::GuestTrap => "guest-trap",
            FaultKind::Instantiation => "instantiation",
            FaultKind::InvalidOutput => "invalid-output",
            FaultKind::OutputTooLarge => "output-too-large",
            FaultKind::BadModel => "bad-model",
            FaultKind::PluginError => "plugin-error",
            FaultKind::HostError => "host-error",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A classified plugin fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Fault {
    /// Class.
    pub kind: FaultKind,
    /// What happened, readable.
    pub message: String,
    /// Guest stack (function names), when the trap carried one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backtrace: Vec<String>,
}

/// Longest fault message kept: a plugin's error text or panic message is cut here (with a
/// visible marker) before it is stored, shown or audited.
pub const MAX_FAULT_MESSAGE: usize = 4096;
/// Longest `plugin-error` code kept.
pub const MAX_ERROR_CODE: usize = 64;

impl Fault {
    /// A fault of `kind` with `message` (cut to [`MAX_FAULT_MESSAGE`] bytes).
    pub fn new(kind: FaultKind, message: impl Into<String>) -> Self {
        let message = message.into();
        let message = match crate::sanitize::truncate(&message, MAX_FAULT_MESSAGE) {
            std::borrow::Cow::Borrowed(_) => message,
            std::borrow::Cow::Owned(cut) => cut,
        };
        Self {
            kind,
            message,
            backtrace: Vec::new(),
        }
    }

    /// The fault for a `plugin-error` the plugin returned: code and message bounded; the
    /// code `bad-model` (the plugin cannot use its data) is classified as such.
    pub fn from_plugin_error(code: &str, message: &str) -> Self {
        let code = crate::sanitize::truncate(code, MAX_ERROR_CODE);
        let kind = if code == "bad-model" {
            FaultKind::BadModel
        } else {
            FaultKind::PluginError
        };
        Self::new(kind, format!("{code}: {message}"))
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// Extracts the panic message from a Rust guest's stderr
/// (`thread '…' panicked at src/lib.rs:3:5:\n<message>\nnote: …`).
pub fn panic_text(stderr: &str) -> Option<String> {
    let start = stderr.find("panicked at ")?;
    let rest = &stderr[start + "panicked at ".len()..];
    let (location, after) = rest.split_once('\n').unwrap_or((rest, ""));
    let location = location.trim_end_matches(':');
    let message: Vec<&str> = after
        .lines()
        .take_while(|l| !l.starts_with("note: "))
        .collect();
    let message = message.join("\n").trim().to_string();
    Some(if message.is_empty() {
        format!("panicked at {location}")
    } else {
        format!("{message} (at {location})")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_text_from_rust_stderr() {
        let stderr = "thread '<unnamed>' panicked at src/lib.rs:12:9:\nmodel blob is empty\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            panic_text(stderr).as_deref(),
            Some("model blob is empty (at src/lib.rs:12:9)")
        );
        assert_eq!(panic_text("nothing here"), None);
    }

    #[test]
    fn plugin_errors_are_bounded_and_bad_models_classified() {
        let f = Fault::from_plugin_error(&"c".repeat(100_000), &"m".repeat(1 << 20));
        assert_eq!(f.kind, FaultKind::PluginError);
        assert!(
            f.message.len() < MAX_FAULT_MESSAGE + 100,
            "{}",
            f.message.len()
        );
        assert!(f.message.contains("[truncated: "), "the cut is visible");
        let f = Fault::from_plugin_error("bad-model", "triage model: not a deskhost model");
        assert_eq!(f.kind, FaultKind::BadModel);
    }
}
