//! End-to-end tests: the built `deskhost` binary and the built plugin components, on
//! workspaces created from `examples/workspace`.
//!
//! The plugins must be built first (`tests/run.sh` does it):
//! `cargo build --profile plugin --target wasm32-wasip2 -p deskhost-triage -p deskhost-reply
//! -p deskhost-escalation -p deskhost-probe`.

#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/rt.rs"]
mod rt;

mod e2e {
    pub mod audit;
    pub mod bench;
    pub mod binding;
    pub mod crash;
    pub mod demo;
    pub mod eval;
    pub mod faults;
    pub mod hardening;
    pub mod languages;
    pub mod lifecycle;
    pub mod load;
    pub mod rt;
    pub mod service;
    pub mod shadow_replay;
    pub mod support;
    pub mod ui;
    pub mod workers;
    pub mod zendesk;
}
