//! The workspace configuration, `deskhost.toml` (the protocol's types).

pub use deskhost_protocol::config::*;
