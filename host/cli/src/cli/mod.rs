//! Commands, one file per group. Each file sees the crate root (`use crate::*`): the
//! output macros, the argument types of `main.rs`; results go out through [`render`].

pub mod audit;
pub mod bench;
pub mod connector;
pub mod data;
pub mod eval;
pub mod plot;
pub mod plugin;
pub mod render;
pub mod replay;
pub mod review;
pub mod run;
pub mod serve;
pub mod token;
pub mod train;
pub mod work;
