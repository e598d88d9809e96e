//! The forecast evaluator: a forecast's realized errors (`NAME_errors`) → accuracy per model,
//! horizon and series, each also relative to seasonal naive's on the same targets.
//!
//! The errors come from the forecast stage itself, run over the log in time order: a forecast
//! issued when a bin closes has seen only the bins before it, so this is a rolling-origin
//! evaluation with one origin per step and no leakage. Targets made up by the gap rule are not
//! scored (the stage writes no error for them).

use std::collections::BTreeMap;

use super::metrics;
use super::{Evaluation, Evaluator};
use crate::plan::ForecastPlan;
use crate::value::Value;

/// Columns of a forecast's metrics table.
pub const COLUMNS: [&str; 15] = [
    "series",
    "metric",
    "model",
    "horizon",
    "n",
    "mae",
    "rmse",
    "mase",
    "smape",
    "coverage_80",
    "width_80",
    "coverage_95",
    "width_95",
    "relative_mase",
    "relative_rmse",
];

/// Evaluates one `[[forecasts]]` entry.
pub struct ForecastEvaluator {
    pub plan: ForecastPlan,
}

/// The realized errors of one (series, model, horizon).
#[derive(Default)]
struct Errors {
    errors: Vec<f64>,
    scaled: Vec<f64>,
    actual: Vec<f64>,
    forecast: Vec<f64>,
    bounds80: Vec<(f64, f64)>,
    bounds95: Vec<(f64, f64)>,
}

fn float(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => f.get(),
        _ => f64::NAN,
    }
}

fn time(v: &Value) -> Option<i64> {
    match v {
        Value::Time(t) => Some(*t),
        _ => None,
    }
}

impl Evaluator for ForecastEvaluator {
    fn name(&self) -> String {
        format!("{}_metrics", self.plan.name)
    }

    fn reads(&self) -> Vec<String> {
        vec![self.plan.errors_output()]
    }

    fn evaluate(
        &self,
        outputs: &BTreeMap<String, Vec<Vec<Value>>>,
        from: Option<i64>,
        until: Option<i64>,
    ) -> Vec<Evaluation> {
        let k = self.plan.keys.len();
        let rows = outputs
            .get(&self.plan.errors_output())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        // (series, metric, model, horizon) → errors
        let mut groups: BTreeMap<(String, String, String, i64), Errors> = BTreeMap::new();
        for row in rows {
            let target = time(&row[k + 4]);
            if target.is_some_and(|t| from.is_some_and(|f| t < f) || until.is_some_and(|u| t >= u)) {
                continue;
            }
            let series: Vec<String> = row[..k].iter().map(|v| v.to_string()).collect();
            let (metric, model) = (row[k].to_string(), row[k + 1].to_string());
            let Value::Int(h) = row[k + 2] else { continue };
            let g = groups.entry((series.join(","), metric, model, h)).or_default();
            let (forecast, actual, error, scale) = (
                float(&row[k + 5]),
                float(&row[k + 6]),
                float(&row[k + 7]),
                float(&row[k + 12]),
            );
            g.errors.push(error);
            g.scaled.push(if scale > 0.0 { error.abs() / scale } else { f64::NAN });
            g.actual.push(actual);
            g.forecast.push(forecast);
            g.bounds80.push((float(&row[k + 8]), float(&row[k + 9])));
            g.bounds95.push((float(&row[k + 10]), float(&row[k + 11])));
        }
        let stats = |g: &Errors| {
            let finite: Vec<f64> = g.scaled.iter().copied().filter(|x| x.is_finite()).collect();
            let mase = if finite.is_empty() {
                f64::NAN
            } else {
                finite.iter().sum::<f64>() / finite.len() as f64
            };
            let interval = |b: &[(f64, f64)]| {
                let known: Vec<(f64, f64, f64)> = b
                    .iter()
                    .zip(&g.actual)
                    .filter(|((lo, hi), _)| lo.is_finite() && hi.is_finite())
                    .map(|((lo, hi), y)| (*lo, *hi, *y))
                    .collect();
                let (lo, hi, y): (Vec<f64>, Vec<f64>, Vec<f64>) =
                    known.iter().fold((vec![], vec![], vec![]), |mut acc, (l, h, y)| {
                        acc.0.push(*l);
                        acc.1.push(*h);
                        acc.2.push(*y);
                        acc
                    });
                (metrics::coverage(&y, &lo, &hi), metrics::mean_width(&lo, &hi))
            };
            let (c80, w80) = interval(&g.bounds80);
            let (c95, w95) = interval(&g.bounds95);
            (
                metrics::mae(&g.errors),
                metrics::rmse(&g.errors),
                mase,
                metrics::smape(&g.actual, &g.forecast),
                c80,
                w80,
                c95,
                w95,
            )
        };
        let num = |x: f64| if x.is_finite() { Value::float(x) } else { Value::Null };
        let mut table = Vec::new();
        // (metric, model) → (MASE, MASE relative to seasonal naive, RMSE) per series and horizon.
        type Scores = Vec<(f64, f64, f64)>;
        let mut by_model: BTreeMap<(String, String), Scores> = BTreeMap::new();
        for ((series, metric, model, h), g) in &groups {
            let (mae, rmse, mase, smape, c80, w80, c95, w95) = stats(g);
            let baseline = groups
                .get(&(series.clone(), metric.clone(), "seasonal_naive".to_string(), *h))
                .map(stats);
            let (rel_mase, rel_rmse) = match baseline {
                Some(b) => (mase / b.2, rmse / b.1),
                None => (f64::NAN, f64::NAN),
            };
            by_model
                .entry((metric.clone(), model.clone()))
                .or_default()
                .push((mase, rel_mase, rmse));
            table.push(vec![
                Value::str(series),
                Value::str(metric),
                Value::str(model),
                Value::Int(*h),
                Value::Int(g.errors.len() as i64),
                num(mae),
                num(rmse),
                num(mase),
                num(smape),
                num(c80),
                num(w80),
                num(c95),
                num(w95),
                num(rel_mase),
                num(rel_rmse),
            ]);
        }
        // Per metric and model: mean MASE over series and horizons, and the geometric mean of
        // MASE relative to seasonal naive.
        let mut summary = Vec::new();
        for ((metric, model), values) in &by_model {
            let mases: Vec<f64> = values.iter().map(|v| v.0).filter(|x| x.is_finite()).collect();
            let rel: Vec<f64> = values
                .iter()
                .map(|v| v.1)
                .filter(|x| x.is_finite() && *x > 0.0)
                .collect();
            let mean = |v: &[f64]| {
                if v.is_empty() {
                    f64::NAN
                } else {
                    v.iter().sum::<f64>() / v.len() as f64
                }
            };
            summary.push(format!(
                "{metric:>14} {model:<16} mean MASE {:>7.3}   MASE / seasonal naive (geometric mean over series and horizons) {:>6.3}",
                mean(&mases),
                metrics::geometric_mean(&rel),
            ));
        }
        vec![Evaluation {
            name: self.name(),
            columns: COLUMNS.iter().map(|c| c.to_string()).collect(),
            rows: table,
            summary,
            detail: false,
        }]
    }
}
