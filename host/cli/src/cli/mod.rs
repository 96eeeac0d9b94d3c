//! Commands, one file per group. Each file sees the crate root (`use crate::*`): the
//! output macros, `print_json`, the argument types of `main.rs`.

pub mod audit;
pub mod data;
pub mod eval;
pub mod plugin;
pub mod replay;
pub mod review;
pub mod run;
pub mod serve;
pub mod train;
pub mod work;
