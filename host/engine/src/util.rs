//! Digests, timestamps and ids (the protocol's, re-exported).

pub use deskhost_protocol::digest::*;
