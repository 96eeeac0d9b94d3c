//! deskhost's engine: runs support-operations policies (triage, reply, escalation) as
//! sandboxed WebAssembly components, and owns everything they may not: data, effects,
//! review, audit. Both front ends (the CLI in `host/cli`, the HTTP API in `host/server`)
//! call the same use-case functions here; nothing here parses arguments, serves HTTP or
//! prints. SQL is the store crate's (`host/store`), re-exported as `db`, `store`, `audit`.

pub mod bindings;
pub mod caps;
pub mod config;
pub mod eval;
pub mod kb;
pub mod lifecycle;
pub mod manifest;
pub mod metrics;
pub mod pipeline;
pub mod plugin_test;
pub mod records;
pub mod registry;
pub mod replay;
pub mod review;
pub mod runtime;
pub mod scaffold;
pub mod synth;
pub mod train;
pub mod util;
pub mod worker;
pub mod workspace;

pub use deskhost_protocol::sanitize;
pub use deskhost_store::{audit, db, jsonl, outbox, sessions, store};
