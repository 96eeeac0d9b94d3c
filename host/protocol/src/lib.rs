//! deskhost's data contract: what tickets, customers, articles, plugin manifests, the
//! workspace config, faults, effects and review reasons look like, as serde types with the
//! checks that need no I/O. The engine, the store, the server and the CLI all speak these;
//! only the runtime converts them to and from the plugins' WIT types.

pub mod api;
pub mod config;
pub mod digest;
pub mod fault;
pub mod gate;
pub mod json;
pub mod manifest;
pub mod outbox;
pub mod proposal;
pub mod records;
pub mod review;
pub mod run;
pub mod sanitize;
