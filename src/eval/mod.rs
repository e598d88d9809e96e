//! Offline evaluation (`sluice eval`): run a spec's stages over a log in time order, then hand
//! their outputs to one evaluator per model kind.
//!
//! ```text
//!  spec + log ──run (in memory)──► outputs ──► evaluators (forecast, …) ──► tables
//!                                                  │ metrics.rs: MAE, RMSE, MASE, sMAPE,
//!                                                  │ coverage, width, geometric means
//!                                                  └──► stdout (table or JSON), DIR/NAME/*.parquet
//! ```
//!
//! Every model stage computes its own realized errors as it runs, seeing only what came before
//! each origin, so the run itself is the rolling-origin evaluation; an evaluator reduces those
//! errors to metrics. The routing and service-model stages add their evaluators here;
//! [`markov`] already holds the Markov evaluation's maths.

pub mod forecast;
pub mod markov;
#[cfg(test)]
mod markov_tests;
pub mod metrics;
/// The pure rolling-origin driver over a whole series (the models' own accuracy tests).
pub mod rolling;

#[cfg(test)]
mod synthetic;
#[cfg(test)]
mod synthetic_tests;

use std::collections::BTreeMap;

use crate::error::RunError;
use crate::plan::Plan;
use crate::run::RunConfig;
use crate::value::Value;

/// What one evaluator reports.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The output name of its table (`NAME_metrics`).
    pub name: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    /// Headline lines for the terminal.
    pub summary: Vec<String>,
}

/// One model stage's evaluation.
pub trait Evaluator {
    fn name(&self) -> String;
    /// The outputs it reads.
    fn reads(&self) -> Vec<String>;
    /// Reduces the outputs' final rows to metrics, over targets in `[from, until)`.
    fn evaluate(
        &self,
        outputs: &BTreeMap<String, Vec<Vec<Value>>>,
        from: Option<i64>,
        until: Option<i64>,
    ) -> Evaluation;
}

/// The evaluators of a plan's model stages, in stage order.
pub fn evaluators(plan: &Plan) -> Vec<Box<dyn Evaluator>> {
    plan.forecasts()
        .map(|f| Box::new(forecast::ForecastEvaluator { plan: f.clone() }) as Box<dyn Evaluator>)
        .collect()
}

/// Runs `plan` (its outputs kept in memory; also written when `config.out_dir` is set) and
/// evaluates every model stage over targets in `[from, until)`.
pub fn evaluate(
    plan: &Plan,
    config: &RunConfig,
    from: Option<i64>,
    until: Option<i64>,
) -> Result<Vec<Evaluation>, RunError> {
    let evaluators = evaluators(plan);
    if evaluators.is_empty() {
        return Err(RunError::Config(format!(
            "`{}` has no stage to evaluate: add a `[[forecasts]]` entry",
            plan.name
        )));
    }
    let config = RunConfig {
        collect: true,
        ..config.clone()
    };
    let summary = crate::run::run(plan, &config)?;
    // Each output's contents at the end: rows whose diffs sum to a positive count, repeated.
    let mut outputs: BTreeMap<String, Vec<Vec<Value>>> = BTreeMap::new();
    for e in &evaluators {
        for name in e.reads() {
            let mut totals: BTreeMap<Vec<Value>, i64> = BTreeMap::new();
            for (row, _, diff) in summary.collected.get(&name).into_iter().flatten() {
                *totals.entry(row.clone()).or_default() += *diff as i64;
            }
            let rows = totals
                .into_iter()
                .flat_map(|(row, n)| std::iter::repeat_n(row, n.max(0) as usize))
                .collect();
            outputs.insert(name, rows);
        }
    }
    Ok(evaluators.iter().map(|e| e.evaluate(&outputs, from, until)).collect())
}
