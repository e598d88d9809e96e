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
//! Refit schedule, by sample count `n` and the series' phase `p` (0 unless set with
//! [`SeriesForecaster::with_phase`]; a dataflow hashes the series key), with `E = refit_every`:
//! when `n + (p mod E)` is a multiple `r·E` of `E`, plus at `n = 2, 4, 8, …` below `E`, plus,
//! for a model never fitted, when the window first holds the samples it needs. While the
//! window is filling (`n ≤ window`) every refit searches (AutoETS chooses the form of `ets` and
//! `mstl`); after that, a scheduled refit searches when `r + ⌊p / E⌋` is a multiple of
//! `search_every`, and the others keep the form ([`Forecaster::refit_kept`]). Different phases
//! spread the refits, and the searches among them, evenly over time instead of running every
//! series' at the same sample. `ets` and `mstl` that remove the same single period hold the
//! same fit: it is computed once and copied. The schedule depends on nothing but `n` and `p`,
//! so replays and workers agree.
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
use rings::{ErrorRings, Pending};

mod config;
mod output;
mod rings;

pub use config::{ConfigError, ForecastConfig, Selection};
pub use output::{Fallback, Issued, Member, NameKey, Obs, ObserveError, RealizedError, Step, Used};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Slot {
    model: AnyModel,
    fitted: bool,
    last_refit: Option<Result<(), FitError>>,
    /// Forecasts issued after each of the last `horizon` samples.
    pending: Pending,
    errors: ErrorRings,
}

/// Which refit is due: a full one, or one between searches ([`Forecaster::refit_kept`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refit {
    Search,
    Keep,
}

/// One series' forecasting state. Cloneable and serializable; `observe` costs
/// O(models × horizon) plus the refits on their schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesForecaster {
    cfg: ForecastConfig,
    /// Shifts the refit and search schedule (see [`SeriesForecaster::schedule`]).
    phase: u64,
    n: u64,
    window_y: VecDeque<f64>,
    window_x: VecDeque<f64>,
    periods: Vec<usize>,
    slots: Vec<Slot>,
    /// The ensemble's pending forecasts, as for a slot.
    pending: Pending,
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
                pending: Pending::new(cfg.horizon),
                errors: ErrorRings::new(cfg.horizon, cfg.error_window),
            })
            .collect();
        let pending = Pending::new(cfg.horizon);
        Ok(SeriesForecaster {
            periods: cfg.periods.clone(),
            phase: 0,
            cfg,
            n: 0,
            window_y: VecDeque::new(),
            window_x: VecDeque::new(),
            slots,
            pending,
            scale: f64::NAN,
            issued: Issued {
                origin: 0,
                points: Vec::new(),
                used: Vec::new(),
                models: Vec::new(),
            },
        })
    }

    /// The same, with its refit schedule shifted by `phase` (see the module doc), so that
    /// series with different phases refit, and search, at different samples. A dataflow
    /// derives it from the series key, so it is the same on every worker.
    pub fn with_phase(mut self, phase: u64) -> SeriesForecaster {
        self.phase = phase;
        self
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
        for slot in &self.slots {
            slot.pending.prefetch_due();
            slot.errors.prefetch_next();
        }
        self.pending.prefetch_due();
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
        if obs.imputed {
            return;
        }
        let n = self.n;
        // A point of horizon `h` due now was issued after sample n + 1 − h.
        let realized = |member, h: usize, point: &Point| RealizedError {
            member,
            horizon: h,
            origin: n + 1 - h as u64,
            forecast: *point,
            actual: obs.y,
        };
        for slot in &mut self.slots {
            let member = Member::Model(slot.model.kind());
            for (h, point) in slot.pending.due() {
                let e = realized(member, h, point);
                slot.errors.push(h, e.error().abs());
                out.push(e);
            }
        }
        out.extend(
            self.pending
                .due()
                .map(|(h, point)| realized(Member::Ensemble, h, point)),
        );
    }

    /// The refit due after sample `n` of a series with phase `phase`, if any, and whether it
    /// searches (see the module doc).
    pub fn schedule(cfg: &ForecastConfig, phase: u64, n: u64) -> Option<Refit> {
        let every = cfg.refit_every as u64;
        let shifted = n + phase % every;
        if !(shifted.is_multiple_of(every) || (n < every && n.is_power_of_two())) {
            return None;
        }
        let turn = shifted / every + phase / every;
        let search = n <= cfg.window as u64 || turn.is_multiple_of(cfg.search_every as u64);
        Some(if search { Refit::Search } else { Refit::Keep })
    }

    fn refit(&mut self, report: &mut Vec<(ModelKind, Result<(), FitError>)>) {
        let scheduled = Self::schedule(&self.cfg, self.phase, self.n);
        let have = self.window_y.len();
        if scheduled.is_none() && self.slots.iter().all(|s| s.fitted) {
            return;
        }
        let due: Vec<bool> = self
            .slots
            .iter()
            .map(|s| scheduled.is_some() || (!s.fitted && have == s.model.min_samples(&self.periods)))
            .collect();
        if !due.iter().any(|&d| d) {
            return;
        }
        let y = self.window_y.make_contiguous();
        let x = self.window_x.make_contiguous();
        let window = Window { y, x, k: self.cfg.exog };
        if scheduled.is_some() {
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
        // A due model that refits like an earlier due one (`ets` and `mstl` removing the same
        // single period) takes its fit instead of computing it again: the fit itself, or, when a
        // search of `ets` chose no season, the seasonal fit it made and set aside.
        let search = scheduled == Some(Refit::Search);
        let twin: Vec<Option<usize>> = (0..self.slots.len())
            .map(|j| {
                (0..j).find(|&i| {
                    due[i]
                        && due[j]
                        && self.slots[j]
                            .model
                            .refits_like(&self.slots[i].model, &self.periods, search)
                })
            })
            .collect();
        for j in 0..self.slots.len() {
            if !due[j] {
                continue;
            }
            let adopted = twin[j].filter(|&i| {
                let (before, rest) = self.slots.split_at_mut(j);
                rest[0].model.adopt_fit(&mut before[i].model)
            });
            let result = match adopted {
                Some(i) => self.slots[i].last_refit.clone().unwrap_or(Ok(())),
                None => {
                    let model = &mut self.slots[j].model;
                    match scheduled {
                        Some(Refit::Keep) => model.refit_kept(window, &self.periods),
                        _ => model.refit(window, &self.periods),
                    }
                }
            };
            let slot = &mut self.slots[j];
            slot.fitted |= result.is_ok();
            slot.last_refit = Some(result.clone());
            report.push((slot.model.kind(), result));
        }
        for slot in &mut self.slots {
            slot.model.drop_candidate();
        }
    }

    /// Every model forecasts into the issued forecast's buffers, the ensemble combines them,
    /// and each forecast joins its member's pending ones. Allocates only the first time a
    /// model forecasts.
    fn issue(&mut self, future_x: &[f64]) {
        let h_max = self.cfg.horizon;
        let mut issued = std::mem::replace(
            &mut self.issued,
            Issued {
                origin: 0,
                points: Vec::new(),
                used: Vec::new(),
                models: Vec::new(),
            },
        );
        issued.origin = self.n;
        if issued.models.len() != self.slots.len() {
            issued.models = self.slots.iter().map(|s| (s.model.kind(), None)).collect();
        }
        for (slot, (_, forecast)) in self.slots.iter().zip(&mut issued.models) {
            let buffer = forecast.get_or_insert_with(|| vec![Point::from_sigma(f64::NAN, f64::NAN); h_max]);
            if !slot.model.forecast_into(future_x, buffer) {
                *forecast = None;
            }
        }
        issued.points.clear();
        issued.used.clear();
        for h in 1..=h_max {
            let u = self.combine(h, &issued.models);
            let members = issued.models.iter().map(|(kind, f)| (*kind, f.as_deref()));
            issued.points.push(blend(&u.weights, members, h));
            issued.used.push(u);
        }
        for (slot, (_, f)) in self.slots.iter_mut().zip(&issued.models) {
            slot.pending.push(f.as_deref());
        }
        self.pending.push(Some(&issued.points));
        self.issued = issued;
    }

    /// The weights at horizon `h`, given each slot's forecast.
    fn combine(&self, h: usize, forecasts: &[(ModelKind, Option<Vec<Point>>)]) -> Used {
        let mut weights = [0.0; 5];
        let eligible =
            |s: &Slot, f: &(ModelKind, Option<Vec<Point>>)| f.1.is_some() && s.errors.len(h) >= self.cfg.min_errors;
        // At most one score per model kind, on the stack (this runs for every horizon of every
        // sample).
        let mut buffer = [(0usize, 0.0f64); ModelKind::ALL.len()];
        let mut n = 0;
        for (s, _) in self.slots.iter().zip(forecasts).filter(|(s, f)| eligible(s, f)) {
            buffer[n] = (s.model.kind() as usize, s.errors.mean(h));
            n += 1;
        }
        let scores = &buffer[..n];
        if scores.is_empty() {
            // Seasonal naive stands in, or naive while a season has not been seen.
            let index = |kind: ModelKind| {
                let mut pairs = self.slots.iter().zip(forecasts);
                pairs.position(|(s, f)| s.model.kind() == kind && f.1.is_some())
            };
            if let Some(i) = index(ModelKind::SeasonalNaive).or(index(ModelKind::Naive)) {
                weights[self.slots[i].model.kind() as usize] = 1.0;
            }
        } else {
            selection_weights(self.cfg.selection, scores, &mut weights);
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
            Some((slot, f)) if !models_used && !eligible(slot, f) => Some(self.not_ready(h, slot, f.1.is_some())),
            _ => None,
        };
        Used { weights, fallback }
    }

    /// Why `slot`'s model cannot be used at horizon `h` yet.
    fn not_ready(&self, h: usize, slot: &Slot, forecasts: bool) -> Fallback {
        let have = self.window_y.len();
        let need = slot.model.min_samples(&self.periods);
        if forecasts {
            Fallback::WarmingUp {
                have: slot.errors.len(h),
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

/// The weights of the scored models `(index in ModelKind::ALL, score)`, summing to 1, written
/// at their indices into `weights` (the others are left as they are). Ties in
/// [`Selection::Best`] go to the first model.
pub fn selection_weights(selection: Selection, scores: &[(usize, f64)], weights: &mut [f64; 5]) {
    let best = scores.iter().map(|s| s.1).fold(f64::INFINITY, f64::min);
    match selection {
        Selection::Best => {
            if let Some(s) = scores.iter().find(|s| s.1 == best) {
                weights[s.0] = 1.0;
            }
        }
        Selection::InverseError { .. } if best == 0.0 => {
            let zero = scores.iter().filter(|s| s.1 == 0.0).count();
            for s in scores.iter().filter(|s| s.1 == 0.0) {
                weights[s.0] = 1.0 / zero as f64;
            }
        }
        Selection::InverseError { power, within } => {
            // `power` is usually 2 (the default) or 1: a product instead of `powf`.
            let weight = |score: f64| {
                let r = best / score;
                match power {
                    1.0 => r,
                    2.0 => r * r,
                    _ => r.powf(power),
                }
            };
            let kept = || scores.iter().filter(|s| s.1 <= within * best);
            let total: f64 = kept().map(|s| weight(s.1)).sum();
            for s in kept() {
                weights[s.0] = weight(s.1) / total;
            }
        }
    }
}

/// The weighted mean of the members' points at horizon `h` (`members`: each model's kind and
/// forecast); a bound averages the members with a finite bound (NaN when none has one).
pub(crate) fn blend<'a>(
    weights: &[f64; 5],
    members: impl Iterator<Item = (ModelKind, Option<&'a [Point]>)>,
    h: usize,
) -> Point {
    let mut acc = [0.0f64; 5];
    let mut wsum = [0.0f64; 5];
    for (kind, f) in members {
        let w = weights[kind as usize];
        let Some(f) = f.filter(|_| w > 0.0) else {
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
