//! deskhost's store: the only crate that issues SQL.
//!
//! - [`db`]: the backends (SQLite, PostgreSQL), connecting, migrations and schema versions,
//!   write transactions.
//! - [`store`]: tickets and their versions, the work queue and its leases, customers,
//!   articles, review items.
//! - [`commit`]: the committer, the one writer of decisions (one transaction per batch).
//! - [`runs`]: reading runs, stages and shadow runs back (replay, diffs, the API).
//! - [`slots`]: installed plugin versions and slot events.
//! - [`audit`]: the hash chain, digests of what each decision committed, signed checkpoints.
//! - [`jsonl`]: the JSON Lines reader every import uses (per-line errors, nothing lost).

pub mod audit;
mod batch;
pub mod commit;
pub mod db;
pub mod jsonl;
pub mod outbox;
pub mod review;
pub mod runs;
pub mod sessions;
pub mod slots;
pub mod store;

pub use store::{Col, Store, StoreError};
