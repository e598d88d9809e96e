//! The per-series forecaster a dataflow stage keeps as its state: the training window, every
//! model, their realized errors, and the ensemble that combines them.
//!
//! For each new sample, in order ([`SeriesForecaster::observe`]):
//! 1. the forecasts issued after the previous `horizon` samples that target it become realized
//!    errors, per model and for the ensemble (not when the sample was imputed by the gap rule);
//! 2. the sample enters the window (the last `window` samples) and every model (O(1) each);
//! 3. on the refit schedule, the periods are resolved (given, or detected on the window) and the
//!    models are refitted on the window;
//! 4. every model forecasts `1..=horizon` and the ensemble combines them
//!    ([`SeriesForecaster::issued`]).
//!
//! Refit schedule, by sample count `n`: every `refit_every` samples, plus at `n = 2, 4, 8, …`
//! below `refit_every`, plus, for a model never fitted, when the window first holds the samples
//! it needs. It depends on nothing but `n`, so replays and workers agree.
//!
//! Ensemble, per horizon `h`: a model is *eligible* once it forecasts and has at least
//! `min_errors` realized `h`-step errors; its score is its mean absolute `h`-step error over
//! the last `error_window` of them (proportional to its MASE, since every model shares the
//! series' scale). [`Selection::Best`] takes the lowest score; [`Selection::InverseError`] weighs
//! the models within `within × best` by `score^-power`. Bounds are the weighted means of the
//! members' bounds. Until a model is eligible, the forecast is seasonal naive (naive while a
//! season has not been seen), and the label says why: `seasonal_naive (too short: 10 < 48)`.
//!
//! Error sums are kept in 128-bit fixed point (2^-32 resolution), so a running sum over the last
//! `error_window` errors is exact and equals a recomputation from scratch.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::decompose::detect_periods;
use super::{AnyModel, FitError, Forecaster, ModelKind, Point, Window};

mod config;
mod output;

pub use config::{ConfigError, ForecastConfig, Selection};
pub use output::{Fallback, Issued, Member, Obs, ObserveError, RealizedError, Step, Used};

/// Absolute errors of the last `cap` forecasts in fixed point, with their exact sum.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct ErrorRing {
    values: VecDeque<i128>,
    sum: i128,
}

const FRACTION: f64 = 4_294_967_296.0; // 2^32
const MAX_ERROR: f64 = 1e20;

impl ErrorRing {
    fn push(&mut self, abs_error: f64, cap: usize) {
        let v = (abs_error.min(MAX_ERROR) * FRACTION).round() as i128;
        self.values.push_back(v);
        self.sum += v;
        if self.values.len() > cap {
            self.sum -= self.values.pop_front().unwrap_or(0);
        }
    }

    fn len(&self) -> usize {
        self.values.len()
    }

    fn mean(&self) -> f64 {
        self.sum as f64 / FRACTION / self.values.len() as f64
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Slot {
    model: AnyModel,
    fitted: bool,
    last_refit: Option<Result<(), FitError>>,
    /// Forecasts issued after each of the last `horizon` samples, oldest first.
    pending: VecDeque<Option<Vec<Point>>>,
    /// Per horizon.
    errors: Vec<ErrorRing>,
}

/// One series' forecasting state. Cloneable and serializable; `observe` costs
/// O(models × horizon) plus the refits on their schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesForecaster {
    cfg: ForecastConfig,
    n: u64,
    window_y: VecDeque<f64>,
    window_x: VecDeque<f64>,
    periods: Vec<usize>,
    slots: Vec<Slot>,
    /// The ensemble's pending forecasts, as for a slot.
    pending: VecDeque<Vec<Point>>,
    scale: f64,
    issued: Issued,
}

impl SeriesForecaster {
    pub fn new(cfg: ForecastConfig) -> Result<SeriesForecaster, ConfigError> {
        cfg.validate()?;
        let settings = cfg.settings();
        let slots = cfg
            .kinds()
            .into_iter()
            .map(|kind| Slot {
                model: AnyModel::new(kind, &settings),
                fitted: false,
                last_refit: None,
                pending: VecDeque::new(),
                errors: vec![ErrorRing::default(); cfg.horizon],
            })
            .collect();
        Ok(SeriesForecaster {
            periods: cfg.periods.clone(),
            cfg,
            n: 0,
            window_y: VecDeque::new(),
            window_x: VecDeque::new(),
            slots,
            pending: VecDeque::new(),
            scale: f64::NAN,
            issued: Issued {
                origin: 0,
                points: Vec::new(),
                used: Vec::new(),
                models: Vec::new(),
            },
        })
    }

    pub fn config(&self) -> &ForecastConfig {
        &self.cfg
    }

    /// Samples seen.
    pub fn len(&self) -> u64 {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The seasonal periods in force (given, or detected at the last refit).
    pub fn periods(&self) -> &[usize] {
        &self.periods
    }

    /// MASE scale: the mean absolute in-sample error of seasonal naive (naive without a
    /// period) over the window at the last refit.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// The current forecast (empty before the first sample).
    pub fn issued(&self) -> &Issued {
        &self.issued
    }

    /// Take the next sample.
    pub fn observe(&mut self, obs: Obs<'_>) -> Result<Step, ObserveError> {
        if !obs.y.is_finite() {
            return Err(ObserveError::NonFinite(obs.y));
        }
        if obs.x.len() != self.cfg.exog {
            return Err(ObserveError::Regressors {
                got: obs.x.len(),
                expected: self.cfg.exog,
            });
        }
        if let Some((index, &value)) = obs.x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(ObserveError::NonFiniteRegressor { index, value });
        }
        let mut step = Step {
            errors: Vec::with_capacity((self.slots.len() + 1) * self.cfg.horizon),
            ..Step::default()
        };
        self.realize(obs, &mut step.errors);
        self.n += 1;
        self.window_y.push_back(obs.y);
        self.window_x.extend(obs.x);
        if self.window_y.len() > self.cfg.window {
            self.window_y.pop_front();
            self.window_x.drain(..self.cfg.exog);
        }
        for slot in &mut self.slots {
            slot.model.observe(obs.y, obs.x);
        }
        self.refit(&mut step.refits);
        self.issue(obs.future_x);
        Ok(step)
    }

    /// Turn the pending forecasts that target the new sample into errors.
    fn realize(&mut self, obs: Obs<'_>, out: &mut Vec<RealizedError>) {
        let h_max = self.cfg.horizon;
        let n = self.n;
        let mut record = |member, pending_len: usize, i: usize, points: &[Point]| {
            // The i-th pending forecast (oldest first) was issued after sample
            // n - (pending_len - 1 - i); the new sample is n + 1.
            let h = pending_len - i;
            let origin = n + 1 - h as u64;
            let e = RealizedError {
                member,
                horizon: h,
                origin,
                forecast: points[h - 1],
                actual: obs.y,
            };
            out.push(e);
            e
        };
        for slot in &mut self.slots {
            let len = slot.pending.len();
            for (i, p) in slot.pending.iter().enumerate() {
                if let (Some(points), false) = (p, obs.imputed) {
                    let e = record(Member::Model(slot.model.kind()), len, i, points);
                    slot.errors[e.horizon - 1].push(e.error().abs(), self.cfg.error_window);
                }
            }
            while slot.pending.len() >= h_max {
                slot.pending.pop_front();
            }
        }
        let len = self.pending.len();
        if !obs.imputed {
            for (i, points) in self.pending.iter().enumerate() {
                record(Member::Ensemble, len, i, points);
            }
        }
        while self.pending.len() >= h_max {
            self.pending.pop_front();
        }
    }

    fn refit(&mut self, report: &mut Vec<(ModelKind, Result<(), FitError>)>) {
        let n = self.n;
        let every = self.cfg.refit_every as u64;
        let scheduled = n.is_multiple_of(every) || (n < every && n.is_power_of_two());
        let have = self.window_y.len();
        if !scheduled && self.slots.iter().all(|s| s.fitted) {
            return;
        }
        let due: Vec<bool> = self
            .slots
            .iter()
            .map(|s| scheduled || (!s.fitted && have == s.model.min_samples(&self.periods)))
            .collect();
        if !due.iter().any(|&d| d) {
            return;
        }
        let y = self.window_y.make_contiguous();
        let x = self.window_x.make_contiguous();
        let window = Window { y, x, k: self.cfg.exog };
        if scheduled {
            if self.cfg.periods.is_empty() {
                self.periods = detect_periods(y, self.cfg.detect_periods);
            }
            let m = self.periods.first().copied().filter(|&m| m < y.len()).unwrap_or(1);
            self.scale = if y.len() > m {
                (m..y.len()).map(|t| (y[t] - y[t - m]).abs()).sum::<f64>() / (y.len() - m) as f64
            } else {
                f64::NAN
            };
        }
        for (slot, due) in self.slots.iter_mut().zip(due) {
            if due {
                let result = slot.model.refit(window, &self.periods);
                slot.fitted |= result.is_ok();
                slot.last_refit = Some(result.clone());
                report.push((slot.model.kind(), result));
            }
        }
    }

    fn issue(&mut self, future_x: &[f64]) {
        let h_max = self.cfg.horizon;
        let forecasts: Vec<Option<Vec<Point>>> = self.slots.iter().map(|s| s.model.forecast(h_max, future_x)).collect();
        let mut points = Vec::with_capacity(h_max);
        let mut used = Vec::with_capacity(h_max);
        for h in 1..=h_max {
            let u = self.combine(h, &forecasts);
            points.push(blend(
                &u.weights,
                self.slots.iter().map(|s| s.model.kind()),
                &forecasts,
                h,
            ));
            used.push(u);
        }
        for (slot, f) in self.slots.iter_mut().zip(&forecasts) {
            slot.pending.push_back(f.clone());
        }
        self.pending.push_back(points.clone());
        let models = self.slots.iter().map(|s| s.model.kind()).zip(forecasts).collect();
        self.issued = Issued {
            origin: self.n,
            points,
            used,
            models,
        };
    }

    /// The weights at horizon `h`.
    fn combine(&self, h: usize, forecasts: &[Option<Vec<Point>>]) -> Used {
        let mut weights = [0.0; 5];
        let eligible = |s: &Slot, f: &Option<Vec<Point>>| f.is_some() && s.errors[h - 1].len() >= self.cfg.min_errors;
        // At most one score per model kind, on the stack (this runs for every horizon of every
        // sample).
        let mut buffer = [(0usize, 0.0f64); ModelKind::ALL.len()];
        let mut n = 0;
        for (s, _) in self.slots.iter().zip(forecasts).filter(|(s, f)| eligible(s, f)) {
            buffer[n] = (s.model.kind() as usize, s.errors[h - 1].mean());
            n += 1;
        }
        let scores = &buffer[..n];
        if scores.is_empty() {
            // Seasonal naive stands in, or naive while a season has not been seen.
            let index = |kind: ModelKind| {
                let mut pairs = self.slots.iter().zip(forecasts);
                pairs.position(|(s, f)| s.model.kind() == kind && f.is_some())
            };
            if let Some(i) = index(ModelKind::SeasonalNaive).or(index(ModelKind::Naive)) {
                weights[self.slots[i].model.kind() as usize] = 1.0;
            }
        } else {
            for (i, w) in selection_weights(self.cfg.selection, scores) {
                weights[i] = w;
            }
        }
        // Only baselines in use: say why the first model asked for is not, unless it lost on
        // its errors.
        let models_used = ModelKind::ALL
            .iter()
            .any(|k| !k.is_baseline() && weights[*k as usize] > 0.0);
        let preferred = self
            .slots
            .iter()
            .zip(forecasts)
            .find(|(s, _)| !s.model.kind().is_baseline());
        let fallback = match preferred {
            Some((slot, f)) if !models_used && !eligible(slot, f) => Some(self.not_ready(h, slot, f)),
            _ => None,
        };
        Used { weights, fallback }
    }

    /// Why `slot`'s model cannot be used at horizon `h` yet.
    fn not_ready(&self, h: usize, slot: &Slot, forecast: &Option<Vec<Point>>) -> Fallback {
        let have = self.window_y.len();
        let need = slot.model.min_samples(&self.periods);
        if forecast.is_some() {
            Fallback::WarmingUp {
                have: slot.errors[h - 1].len(),
                need: self.cfg.min_errors,
            }
        } else if need == usize::MAX || matches!(slot.last_refit, Some(Err(FitError::NoPeriod))) {
            Fallback::NoPeriod
        } else if have < need {
            Fallback::TooShort { have, need }
        } else if matches!(slot.last_refit, Some(Err(_))) {
            Fallback::FitFailed
        } else {
            Fallback::AwaitingRefit
        }
    }
}

/// The weights of the scored models `(index in ModelKind::ALL, score)`, as `(index, weight)`
/// summing to 1. Ties in [`Selection::Best`] go to the first model.
pub fn selection_weights(selection: Selection, scores: &[(usize, f64)]) -> Vec<(usize, f64)> {
    let best = scores.iter().map(|s| s.1).fold(f64::INFINITY, f64::min);
    match selection {
        Selection::Best => scores
            .iter()
            .find(|s| s.1 == best)
            .map(|s| (s.0, 1.0))
            .into_iter()
            .collect(),
        Selection::InverseError { .. } if best == 0.0 => {
            let zero: Vec<usize> = scores.iter().filter(|s| s.1 == 0.0).map(|s| s.0).collect();
            zero.iter().map(|&i| (i, 1.0 / zero.len() as f64)).collect()
        }
        Selection::InverseError { power, within } => {
            let mut weights: Vec<(usize, f64)> = scores
                .iter()
                .filter(|s| s.1 <= within * best)
                .map(|s| (s.0, (best / s.1).powf(power)))
                .collect();
            let total: f64 = weights.iter().map(|r| r.1).sum();
            for w in &mut weights {
                w.1 /= total;
            }
            weights
        }
    }
}

/// The weighted mean of the members' points at horizon `h` (`kinds` names each forecast); a
/// bound averages the members with a finite bound (NaN when none has one).
pub(crate) fn blend(
    weights: &[f64; 5],
    kinds: impl Iterator<Item = ModelKind>,
    forecasts: &[Option<Vec<Point>>],
    h: usize,
) -> Point {
    let mut acc = [0.0f64; 5];
    let mut wsum = [0.0f64; 5];
    for (kind, f) in kinds.zip(forecasts) {
        let w = weights[kind as usize];
        let Some(f) = f.as_ref().filter(|_| w > 0.0) else {
            continue;
        };
        let p = f[h - 1];
        for (j, v) in [p.mean, p.lo80, p.hi80, p.lo95, p.hi95].into_iter().enumerate() {
            if v.is_finite() {
                acc[j] += w * v;
                wsum[j] += w;
            }
        }
    }
    let get = |j: usize| if wsum[j] > 0.0 { acc[j] / wsum[j] } else { f64::NAN };
    Point {
        mean: get(0),
        lo80: get(1),
        hi80: get(2),
        lo95: get(3),
        hi95: get(4),
    }
}

#[cfg(test)]
mod tests;
