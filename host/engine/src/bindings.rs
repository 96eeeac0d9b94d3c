//! Host-side bindings generated from `wit/` (package `deskhost:plugin@0.1.0`).
//!
//! The capability interfaces are generated once (world `capabilities`); each policy world
//! reuses them through `with`, so there is one `Host` trait per capability no matter how many
//! worlds link it. Every import is async (capabilities read the store) and trappable (a call
//! outside the plugin's grants or limits stops the plugin).

/// The capability interfaces and shared types.
// `types` has no functions, so its generated linker helpers have unused parameters.
#[allow(unused_variables)]
pub mod capabilities {
    wasmtime::component::bindgen!({
        world: "capabilities",
        path: "../../wit",
        imports: { default: async | trappable },
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
    });
}

pub use capabilities::deskhost::plugin::{config, crm, helpdesk, kb, log, types};

/// The `triage-policy` world.
pub mod triage {
    wasmtime::component::bindgen!({
        world: "triage-policy",
        path: "../../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: { "deskhost:plugin": crate::bindings::capabilities::deskhost::plugin },
    });
}

/// The `reply-policy` world.
pub mod reply {
    wasmtime::component::bindgen!({
        world: "reply-policy",
        path: "../../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: { "deskhost:plugin": crate::bindings::capabilities::deskhost::plugin },
    });
}

/// The `escalation-policy` world.
pub mod escalation {
    wasmtime::component::bindgen!({
        world: "escalation-policy",
        path: "../../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: { "deskhost:plugin": crate::bindings::capabilities::deskhost::plugin },
    });
}
#[cfg(test)]
mod dump {}
