//! Tickets, customers and articles: the protocol's types, and their WIT views for plugins.

pub use crate::runtime::convert::{redact_customer, redact_ticket};
pub use deskhost_protocol::records::*;
