//! Plugin faults: every way a call can fail, classified and made readable.

use crate::manifest::CapabilityName;
pub use deskhost_protocol::fault::*;

/// A stop raised by the host inside a plugin call (a trap with a reason).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum HostTrap {
    /// The wall-clock deadline passed.
    #[error("the wall-clock deadline of {ms} ms passed")]
    Deadline {
        /// The deadline.
        ms: u64,
    },
    /// Linear memory would exceed the plugin's limit.
    #[error("memory limit exceeded: growing to {requested} bytes, the limit is {limit} bytes")]
    MemoryLimit {
        /// Bytes asked for.
        requested: usize,
        /// The limit.
        limit: usize,
    },
    /// A capability call outside the plugin's grants.
    #[error("capability denied: {capability}.{function}: {reason}")]
    CapabilityDenied {
        /// Capability.
        capability: CapabilityName,
        /// Function.
        function: String,
        /// Why, and what would allow it.
        reason: String,
    },
    /// Too many host calls.
    #[error("host-call limit reached: {detail}")]
    HostCallLimit {
        /// Which limit.
        detail: String,
    },
}

/// Classifies the error of an instantiation or call. `memory_hit` is set when the limiter
/// refused a growth; `stderr` is the guest's captured standard error.
pub fn classify(error: &wasmtime::Error, stderr: &str) -> Fault {
    let backtrace = error
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .map(|bt| {
            bt.frames()
                .iter()
                .take(12)
                .map(|f| {
                    f.func_name()
                        .map_or_else(|| format!("<func {}>", f.func_index()), str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut fault = classify_kind(error, stderr);
    fault.backtrace = backtrace;
    fault
}

fn classify_kind(error: &wasmtime::Error, stderr: &str) -> Fault {
    for cause in error.chain() {
        if let Some(trap) = cause.downcast_ref::<HostTrap>() {
            let kind = match trap {
                HostTrap::Deadline { .. } => FaultKind::Deadline,
                HostTrap::MemoryLimit { .. } => FaultKind::Memory,
                HostTrap::CapabilityDenied { .. } => FaultKind::CapabilityDenied,
                HostTrap::HostCallLimit { .. } => FaultKind::HostCallLimit,
            };
            return Fault::new(kind, trap.to_string());
        }
    }
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        return match trap {
            wasmtime::Trap::OutOfFuel => {
                Fault::new(FaultKind::Fuel, "the fuel budget was used up (limits.fuel)")
            }
            wasmtime::Trap::Interrupt => Fault::new(
                FaultKind::Deadline,
                "interrupted at the wall-clock deadline",
            ),
            wasmtime::Trap::StackOverflow => Fault::new(
                FaultKind::Memory,
                "the call stack was exhausted (unbounded recursion?)",
            ),
            wasmtime::Trap::UnreachableCodeReached => match panic_text(stderr) {
                Some(text) => Fault::new(
                    FaultKind::GuestPanic,
                    format!("the plugin panicked: {text}"),
                ),
                None => Fault::new(
                    FaultKind::GuestTrap,
                    format!(
                        "the plugin aborted (wasm `unreachable`){}",
                        stderr_tail(stderr)
                    ),
                ),
            },
            wasmtime::Trap::MemoryOutOfBounds => Fault::new(
                FaultKind::GuestTrap,
                format!(
                    "out-of-bounds memory access (a Rust guest's stack lives in linear memory: deep recursion shows up like this){}",
                    stderr_tail(stderr)
                ),
            ),
            other => Fault::new(
                FaultKind::GuestTrap,
                format!("{other}{}", stderr_tail(stderr)),
            ),
        };
    }
    // Not a trap: the host failed (or wasmtime refused the call).
    let chain: Vec<String> = error.chain().map(|c| c.to_string()).collect();
    Fault::new(FaultKind::HostError, chain.join(": "))
}

fn stderr_tail(stderr: &str) -> String {
    let s = stderr.trim();
    if s.is_empty() {
        return String::new();
    }
    let tail: String = s
        .chars()
        .rev()
        .take(400)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("; stderr: {tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_traps_classify_through_wasmtime_errors() {
        let e = wasmtime::Error::new(HostTrap::Deadline { ms: 50 });
        assert_eq!(classify(&e, "").kind, FaultKind::Deadline);
        let e = wasmtime::Error::new(wasmtime::Trap::OutOfFuel);
        assert_eq!(classify(&e, "").kind, FaultKind::Fuel);
        let e = wasmtime::Error::new(wasmtime::Trap::UnreachableCodeReached);
        let f = classify(&e, "thread 'x' panicked at a.rs:1:1:\nboom\n");
        assert_eq!(
            (f.kind, f.message.as_str()),
            (
                FaultKind::GuestPanic,
                "the plugin panicked: boom (at a.rs:1:1)"
            )
        );
    }
}
