//! sluice: incremental event processing on timely and differential dataflow.
//!
//! See the README's Architecture section for the bird's-eye view and the code map.

pub mod dead_letter;
pub mod error;
pub mod eval;
pub mod event;
pub mod model;
pub mod plan;
pub mod source;
pub mod value;

/// Name of the output that collects every rejected record.
pub const DEAD_LETTERS: &str = "dead_letters";
pub mod expr;
pub mod format;
#[doc(hidden)]
pub mod fuzzing;
pub mod generate;
pub mod progress;
pub mod render;
pub mod run;
pub mod schema;
pub mod serve;
