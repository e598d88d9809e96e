//! Rolling-origin evaluation of the forecast models over regular series, without leakage.
//!
//! ```text
//! samples   y0 y1 … y(t−1) │ y(t) … y(t+h−1) …
//!           seen at origin t│ targets of the forecast issued at origin t
//! ```
//!
//! For each series, a [`SeriesForecaster`] takes the samples one at a time; at every origin
//! `t ≥ start` the forecast it holds has seen exactly `y[..t]` and is compared with
//! `y[t + h − 1]` for `h = 1..=horizon` (imputed targets are skipped). Models refit on their
//! schedule over the training window, as they would in the dataflow. Regressors of the target
//! samples are given to the models only with `known_future_x` (calendar-like regressors);
//! otherwise the last known ones are carried forward.
//!
//! The metrics table compares models on the same targets: per series and horizon, only the
//! origins at which every model that forecast at all had a forecast. MASE is scaled by seasonal
//! naive's mean absolute in-sample error on `y[..start]` (period: the primary one in force at
//! the first origin; naive's without one). Relative columns divide by seasonal naive's value on
//! the same rows.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::metrics;
use crate::model::forecast::{
    ConfigError, ForecastConfig, Member, ModelKind, Obs, ObserveError, Point, SeriesForecaster,
};

/// One regular series to evaluate.
#[derive(Debug, Clone, Copy)]
pub struct EvalSeries<'a> {
    pub name: &'a str,
    pub y: &'a [f64],
    /// Regressors, row-major, `forecast.exog` per sample (empty without regressors).
    pub x: &'a [f64],
    /// Imputed samples (empty: none).
    pub imputed: &'a [bool],
}

impl<'a> EvalSeries<'a> {
    pub fn values(name: &'a str, y: &'a [f64]) -> EvalSeries<'a> {
        EvalSeries {
            name,
            y,
            x: &[],
            imputed: &[],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSettings {
    pub forecast: ForecastConfig,
    /// First origin evaluated (samples seen before it).
    pub start: usize,
    /// Give the models the regressors of the target samples.
    pub known_future_x: bool,
}

/// One forecast compared with its target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorRow {
    pub series: String,
    pub member: Member,
    /// Samples seen when the forecast was issued.
    pub origin: usize,
    pub horizon: usize,
    pub actual: f64,
    pub forecast: Point,
}

/// Metrics of one model (or the ensemble) on one series at one horizon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsRow {
    pub series: String,
    pub member: Member,
    pub horizon: usize,
    pub n: usize,
    pub mae: f64,
    pub rmse: f64,
    pub mase: f64,
    pub smape: f64,
    pub coverage80: f64,
    pub coverage95: f64,
    pub width80: f64,
    pub width95: f64,
    /// MASE over seasonal naive's.
    pub rel_mase: f64,
    /// Geometric mean of `|e| / |e_seasonal_naive|`.
    pub gmrae: f64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Evaluation {
    pub errors: Vec<ErrorRow>,
    pub table: Vec<MetricsRow>,
    /// MASE scale per series.
    pub scales: Vec<(String, f64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("series `{series}`, sample {index}: {source}")]
    Sample {
        series: String,
        index: usize,
        source: ObserveError,
    },
    #[error("series `{series}`: {message}")]
    Shape { series: String, message: String },
}

/// Evaluate every series; see the module doc.
pub fn rolling_origin(series: &[EvalSeries<'_>], settings: &EvalSettings) -> Result<Evaluation, EvalError> {
    settings.forecast.validate()?;
    let mut out = Evaluation::default();
    for s in series {
        let (errors, scale) = run_series(s, settings)?;
        out.table.extend(table(s.name, &errors, scale));
        out.errors.extend(errors);
        out.scales.push((s.name.to_string(), scale));
    }
    Ok(out)
}

fn run_series(s: &EvalSeries<'_>, settings: &EvalSettings) -> Result<(Vec<ErrorRow>, f64), EvalError> {
    let cfg = &settings.forecast;
    let (n, k, h_max) = (s.y.len(), cfg.exog, cfg.horizon);
    let shape = |message: String| EvalError::Shape {
        series: s.name.to_string(),
        message,
    };
    if s.x.len() != n * k {
        return Err(shape(format!("{} regressor values, expected {} × {k}", s.x.len(), n)));
    }
    if !s.imputed.is_empty() && s.imputed.len() != n {
        return Err(shape(format!("{} imputed flags for {n} samples", s.imputed.len())));
    }
    let imputed = |i: usize| s.imputed.get(i).copied().unwrap_or(false);
    let mut f = SeriesForecaster::new(cfg.clone())?;
    let mut rows = Vec::new();
    let mut scale = f64::NAN;
    for t in 0..n {
        if t == settings.start.max(1) {
            let m = f.periods().first().copied().unwrap_or(1);
            scale = metrics::mase_scale(&s.y[..t], m);
        }
        if t >= settings.start && t > 0 {
            let issued = f.issued();
            for h in (1..=h_max).filter(|h| t + h - 1 < n && !imputed(t + h - 1)) {
                let target = t + h - 1;
                let members = issued
                    .models
                    .iter()
                    .filter_map(|(kind, p)| p.as_ref().map(|p| (Member::Model(*kind), p)))
                    .chain(std::iter::once((Member::Ensemble, &issued.points)));
                for (member, points) in members {
                    rows.push(ErrorRow {
                        series: s.name.to_string(),
                        member,
                        origin: t,
                        horizon: h,
                        actual: s.y[target],
                        forecast: points[h - 1],
                    });
                }
            }
        }
        let future_x = if settings.known_future_x {
            &s.x[((t + 1) * k).min(n * k)..((t + 1 + h_max) * k).min(n * k)]
        } else {
            &[]
        };
        let obs = Obs {
            y: s.y[t],
            x: &s.x[t * k..(t + 1) * k],
            imputed: imputed(t),
            future_x,
        };
        f.observe(obs).map_err(|source| EvalError::Sample {
            series: s.name.to_string(),
            index: t,
            source,
        })?;
    }
    Ok((rows, scale))
}

/// Metrics per member and horizon over the targets every member forecast.
fn table(series: &str, rows: &[ErrorRow], scale: f64) -> Vec<MetricsRow> {
    let mut by: BTreeMap<(usize, Member), BTreeMap<usize, &ErrorRow>> = BTreeMap::new();
    for r in rows {
        by.entry((r.horizon, r.member)).or_default().insert(r.origin, r);
    }
    let horizons: BTreeSet<usize> = by.keys().map(|k| k.0).collect();
    let mut out = Vec::new();
    for h in horizons {
        let members: Vec<(Member, &BTreeMap<usize, &ErrorRow>)> =
            by.iter().filter(|(k, _)| k.0 == h).map(|(k, v)| (k.1, v)).collect();
        let common: Vec<usize> = members[0]
            .1
            .keys()
            .copied()
            .filter(|o| members.iter().all(|(_, m)| m.contains_key(o)))
            .collect();
        let errors_of = |m: &BTreeMap<usize, &ErrorRow>| -> Vec<f64> {
            common.iter().map(|o| m[o].actual - m[o].forecast.mean).collect()
        };
        let bench = members
            .iter()
            .find(|(m, _)| *m == Member::Model(ModelKind::SeasonalNaive))
            .map(|(_, r)| errors_of(r));
        let bench_mase = bench.as_ref().map_or(f64::NAN, |b| metrics::mase(b, scale));
        for (member, m) in &members {
            let pick = |f: fn(&ErrorRow) -> f64| -> Vec<f64> { common.iter().map(|o| f(m[o])).collect() };
            let e = errors_of(m);
            let (actual, mean) = (pick(|r| r.actual), pick(|r| r.forecast.mean));
            let (lo80, hi80) = (pick(|r| r.forecast.lo80), pick(|r| r.forecast.hi80));
            let (lo95, hi95) = (pick(|r| r.forecast.lo95), pick(|r| r.forecast.hi95));
            let mase = metrics::mase(&e, scale);
            out.push(MetricsRow {
                series: series.to_string(),
                member: *member,
                horizon: h,
                n: e.len(),
                mae: metrics::mae(&e),
                rmse: metrics::rmse(&e),
                mase,
                smape: metrics::smape(&actual, &mean),
                coverage80: metrics::coverage(&actual, &lo80, &hi80),
                coverage95: metrics::coverage(&actual, &lo95, &hi95),
                width80: metrics::mean_width(&lo80, &hi80),
                width95: metrics::mean_width(&lo95, &hi95),
                rel_mase: mase / bench_mase,
                gmrae: bench.as_ref().map_or(f64::NAN, |b| metrics::gmrae(&e, b)),
            });
        }
    }
    out
}

impl Evaluation {
    /// The rows of one series and member, by horizon.
    pub fn rows<'a>(&'a self, series: &'a str, member: Member) -> impl Iterator<Item = &'a MetricsRow> + 'a {
        self.table
            .iter()
            .filter(move |r| r.series == series && r.member == member)
    }

    /// The mean of `metric` over horizons `1..=horizon` (NaN when a horizon is missing).
    pub fn mean_over_horizons(
        &self,
        series: &str,
        member: Member,
        horizon: usize,
        metric: fn(&MetricsRow) -> f64,
    ) -> f64 {
        let values: Vec<f64> = self
            .rows(series, member)
            .filter(|r| r.horizon <= horizon)
            .map(metric)
            .collect();
        if values.len() < horizon {
            return f64::NAN;
        }
        values.iter().sum::<f64>() / values.len() as f64
    }
}

#[cfg(test)]
mod tests;
