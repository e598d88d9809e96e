//! The services evaluator: a `[[services]]` stage's outputs (`NAME_hops`, `NAME_selection`,
//! `NAME_resonance`, `NAME_pipe_events`) against the scenario's truth (`FILE.truth.json` of
//! `sluice generate services`) and against baselines.
//!
//! ```text
//!  NAME_hops ─────────► prediction.rs: the stage's loss and top-1, unigram and first-order
//!                        baselines by tick, the truth's chain on the same hops, adaptation
//!  NAME_pipe_events ──► pipes.rs: lifecycle replay → precision, recall, lead, idle, wasted
//!  NAME_resonance ────► resonance.rs: final scores vs the truth's edge quality (final regime)
//!  NAME_selection ────► the re-selections (summary line)
//!                        └──► tables: NAME_goals, NAME_markov_eval, NAME_adaptation_eval,
//!                                     NAME_pipes_eval, NAME_resonance_eval
//! ```
//!
//! Without a truth, what needs none is still reported (loss, top-1, baselines, pipes), and the
//! summary says what needs one (entropy rate, Bayes top-1, adaptation, resonance).

pub mod pipes;
pub mod prediction;
pub mod resonance;
mod tables;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;

use super::{Evaluation, Evaluator};
use crate::error::RunError;
use crate::generate::services::truth::Truth;
use crate::model::markov::Discount;
use crate::model::resonance::ResonanceConfig;
use crate::value::Value;

/// The evaluation's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServicesOptions {
    /// The resonance formula the truth's edge quality is computed with (the stage's).
    pub resonance: ResonanceConfig,
    /// The baselines count the hops of this long before each tick (`None`: every earlier hop).
    /// Give the stage's window to compare like with like.
    pub baseline_window_ms: Option<i64>,
    pub baseline_discount: Discount,
    /// Adaptation: the run of hops whose mean loss must be back near the entropy rate, and how
    /// near (see [`prediction::ChangeFit`]).
    pub adaptation_window_hops: usize,
    pub adaptation_tolerance: f64,
}

impl Default for ServicesOptions {
    fn default() -> ServicesOptions {
        ServicesOptions {
            resonance: ResonanceConfig::default(),
            baseline_window_ms: None,
            baseline_discount: Discount::Estimated,
            adaptation_window_hops: 2_000,
            adaptation_tolerance: 0.10,
        }
    }
}

/// The issue's goals.
pub const LOSS_RATIO_GOAL: f64 = 1.02;
pub const PRECISION_GOAL: f64 = 0.9;
pub const RECALL_GOAL: f64 = 0.8;

/// Where the truth comes from: the file read, or why there is none.
pub type ServicesTruth = super::TruthSource<Truth>;

/// Evaluates one `[[services]]` stage named `name`.
pub struct ServicesEvaluator {
    pub name: String,
    pub truth: ServicesTruth,
    pub options: ServicesOptions,
}

/// The outputs the evaluator reads, by suffix.
pub const OUTPUTS: [&str; 4] = ["hops", "selection", "resonance", "pipe_events"];

impl Evaluator for ServicesEvaluator {
    fn name(&self) -> String {
        format!("{}_goals", self.name)
    }

    fn reads(&self) -> Vec<String> {
        OUTPUTS.iter().map(|s| format!("{}_{s}", self.name)).collect()
    }

    fn evaluate(
        &self,
        outputs: &BTreeMap<String, Vec<Vec<Value>>>,
        from: Option<i64>,
        until: Option<i64>,
    ) -> Vec<Evaluation> {
        let truth = match &self.truth {
            ServicesTruth::Loaded { path, truth } => Ok((path.as_path(), &**truth)),
            ServicesTruth::Missing(why) => Err(why.as_str()),
        };
        tables::evaluate(&self.name, outputs, truth, &self.options, from, until)
    }
}

/// Evaluates the outputs of the `[[services]]` stage `name` (read from `outputs` by the names
/// `NAME_hops`, `NAME_selection`, `NAME_resonance`, `NAME_pipe_events`; any may be absent)
/// against the truth file `truth` when given. An unreadable truth file is an error.
pub fn evaluate(
    name: &str,
    outputs: &BTreeMap<String, Vec<Vec<Value>>>,
    truth: Option<&Path>,
    options: &ServicesOptions,
) -> Result<Vec<Evaluation>, RunError> {
    let evaluator = ServicesEvaluator {
        name: name.to_string(),
        truth: match truth {
            Some(p) => ServicesTruth::resolve(Some(p), None, "interactions")?,
            None => ServicesTruth::Missing("no truth file given (pass --truth FILE)".into()),
        },
        options: *options,
    };
    Ok(evaluator.evaluate(outputs, None, None))
}
