//! Language processing shared by the deskhost host and its guest plugins.
//!
//! One crate, compiled natively (training, evaluation, native benchmarks) and to
//! `wasm32-wasip2` (the default plugins), so the same model gives the same predictions in
//! both: features use a fixed hash and the classifier uses [`detmath`] instead of the
//! platform's libm.

pub mod detmath;
pub mod features;
pub mod lang;
pub mod model;
pub mod sentiment;
pub mod text;
#[cfg(feature = "train")]
pub mod train;
mod words;

pub use features::{FeatureSpec, Scratch};
pub use model::{Contribution, DType, Model, ModelError, Prediction, RangeReader};
