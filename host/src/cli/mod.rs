//! Commands, one file per group (the rest still lives in main.rs; see ARCHITECTURE.md).

pub mod work;
