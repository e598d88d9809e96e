//! Offline evaluation (`sluice eval`): run a spec's stages over a log in time order, then hand
//! their outputs to one evaluator per model kind.
//!
//! ```text
//!  spec + log ──run (in memory)──► outputs ──► evaluators (forecast, routing) ──► tables
//!                                                  │ metrics.rs: MAE, RMSE, MASE, sMAPE,
//!                                                  │ coverage, width, geometric means
//!                                                  │ routing/: queues per region (truth file)
//!                                                  └──► stdout (table or JSON), DIR/NAME/*.parquet
//! ```
//!
//! Every forecast computes its own realized errors as it runs, seeing only what came before
//! each origin, so the run itself is the rolling-origin evaluation; its evaluator reduces those
//! errors to metrics. A router's evaluator replays its decisions through simulated queues with
//! the capacities of the scenario's truth (`routing`).
//! [`markov`] holds the Markov evaluation's maths; the service-model stage's evaluator
//! (`services`) builds on it.

pub mod forecast;
pub mod markov;
#[cfg(test)]
mod markov_tests;
pub mod metrics;
/// The pure rolling-origin driver over a whole series (the models' own accuracy tests).
pub mod rolling;
pub mod routing;
pub mod services;

#[cfg(test)]
mod synthetic;
#[cfg(test)]
mod synthetic_tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::RunError;
use crate::plan::{Plan, StageKind, StageRef};
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
    /// A detail table: the terminal shows its row count, not its rows (`--format json` and
    /// `--out` carry them).
    pub detail: bool,
}

/// One model stage's evaluation.
pub trait Evaluator {
    fn name(&self) -> String;
    /// The outputs it reads.
    fn reads(&self) -> Vec<String>;
    /// Reduces the outputs' final rows to one or more tables, over targets (or events) in
    /// `[from, until)`.
    fn evaluate(
        &self,
        outputs: &BTreeMap<String, Vec<Vec<Value>>>,
        from: Option<i64>,
        until: Option<i64>,
    ) -> Vec<Evaluation>;
}

/// What `sluice eval` was asked, besides the spec and run configuration.
#[derive(Debug, Clone, Default)]
pub struct EvalOptions {
    /// Score targets (forecasts) and events (routers) in `[from, until)`.
    pub from: Option<i64>,
    pub until: Option<i64>,
    /// The scenario truth of every router (default: `<events file>.truth.json`).
    pub truth: Option<PathBuf>,
    pub routing: routing::RoutingOptions,
    pub services: services::ServicesOptions,
}

/// The evaluators of a plan's model stages, in stage order. A router's truth file is read
/// here: an explicit one must parse; a missing default makes its evaluation a skipped one.
pub fn evaluators(plan: &Plan, options: &EvalOptions) -> Result<Vec<Box<dyn Evaluator>>, RunError> {
    let mut out: Vec<Box<dyn Evaluator>> = Vec::new();
    for stage in &plan.stages {
        match &stage.kind {
            StageKind::Forecast(f) => out.push(Box::new(forecast::ForecastEvaluator { plan: f.clone() })),
            StageKind::Router(r) => {
                let default = default_truth(plan, &stage.inputs[0]);
                out.push(Box::new(routing::RoutingEvaluator {
                    plan: (**r).clone(),
                    truth: TruthSource::resolve(options.truth.as_deref(), default, "events")?,
                    options: options.routing,
                }));
            }
            StageKind::Services(s) => {
                // The baselines and the truth's edge quality use the stage's own settings.
                let mut options = options.clone();
                options.services.resonance = s.resonance;
                options.services.baseline_window_ms = Some(s.window_ms as i64);
                out.push(services_evaluator(plan, &s.name, &stage.inputs[0], &options)?);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// A stage's scenario truth: the file read, or why there is none.
#[derive(Debug, Clone)]
pub enum TruthSource<T> {
    Loaded { path: PathBuf, truth: Box<T> },
    Missing(String),
}

impl<T: serde::de::DeserializeOwned> TruthSource<T> {
    /// Reads `explicit` (an error if unreadable or not a `T`), else `default` when it exists
    /// (`Missing` with the reason when it does not, or when the stage's source, `what`, is not
    /// one file and so has no default).
    pub fn resolve(explicit: Option<&Path>, default: Option<PathBuf>, what: &str) -> Result<TruthSource<T>, RunError> {
        let path = match (explicit, default) {
            (Some(p), _) => p.to_path_buf(),
            (None, Some(p)) if p.is_file() => p,
            (None, Some(p)) => {
                return Ok(TruthSource::Missing(format!(
                    "no scenario truth at {} (pass --truth FILE)",
                    p.display()
                )))
            }
            (None, None) => {
                return Ok(TruthSource::Missing(format!(
                    "the {what} source is not one file, so there is no default truth (pass --truth FILE)"
                )))
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|source| RunError::Io {
            path: path.clone(),
            source,
        })?;
        let truth: T = serde_json::from_str(&text).map_err(|e| RunError::Truth {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(TruthSource::Loaded {
            path,
            truth: Box::new(truth),
        })
    }
}

/// The default truth of a stage reading `input`: `<file>.truth.json` when its root source is
/// one file.
pub fn default_truth(plan: &Plan, input: &StageRef) -> Option<PathBuf> {
    let source = &plan.sources[plan.root_source(input)];
    match source.paths.as_slice() {
        [one] if !one.is_dir() => {
            let mut name = one.as_os_str().to_owned();
            name.push(".truth.json");
            Some(PathBuf::from(name))
        }
        _ => None,
    }
}

/// The evaluator of the `[[services]]` stage `name` reading `input`.
pub fn services_evaluator(
    plan: &Plan,
    name: &str,
    input: &StageRef,
    options: &EvalOptions,
) -> Result<Box<dyn Evaluator>, RunError> {
    Ok(Box::new(services::ServicesEvaluator {
        name: name.to_string(),
        truth: TruthSource::resolve(options.truth.as_deref(), default_truth(plan, input), "interactions")?,
        options: options.services,
    }))
}

/// Runs `plan` (its outputs kept in memory; also written when `config.out_dir` is set) and
/// evaluates every model stage.
pub fn evaluate(plan: &Plan, config: &RunConfig, options: &EvalOptions) -> Result<Vec<Evaluation>, RunError> {
    let evaluators = evaluators(plan, options)?;
    if evaluators.is_empty() {
        return Err(RunError::Config(format!(
            "`{}` has no stage to evaluate: add a `[[forecasts]]`, `[[routers]]` or `[[services]]` entry",
            plan.name
        )));
    }
    // Only what the evaluators read is kept in memory (a long run's other outputs can be
    // larger than the memory).
    let reads: Vec<String> = evaluators.iter().flat_map(|e| e.reads()).collect();
    let config = RunConfig {
        collect: true,
        collect_only: Some(reads),
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
    Ok(evaluators
        .iter()
        .flat_map(|e| e.evaluate(&outputs, options.from, options.until))
        .collect())
}
