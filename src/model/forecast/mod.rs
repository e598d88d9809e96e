//! Load forecasting, pure maths: resampling, forecast models, and the per-series ensemble that a
//! dataflow stage keeps as its state. No timely or differential imports.
//!
//! ```text
//!  irregular (time, value) ──Resampler──► one value per `step` (gaps filled and flagged)
//!                                             │
//!                                             ▼  SeriesForecaster::observe (O(1) per model)
//!            ┌────────────── window of the last `window` samples (ring buffer) ─────────────┐
//!            │ every `refit_every` samples: refit every model on the window (augurs, linfa) │
//!            └──────────────────────────────────────────────────────────────────────────────┘
//!     naive · seasonal_naive · ets · mstl · ar ──► one forecast each, h = 1..horizon
//!                                             │  realized errors as targets arrive
//!                                             ▼
//!              ensemble: inverse-error weights per horizon over the last K errors
//!              (or the best model), a baseline while the others cannot be used yet
//! ```
//!
//! Time is in steps: sample `n` is the `n`-th value of a regular series, and a forecast issued
//! after it targets samples `n+1 ..= n+horizon`. The caller maps steps to times.
//!
//! Determinism: every computation is sequential `f64` arithmetic in a fixed order, the refit
//! schedule depends only on the sample count, and no model draws random numbers, so the same
//! samples give bit-identical forecasts on any worker.

pub mod ar;
pub mod baseline;
pub mod decompose;
pub mod ensemble;
pub mod ets;
pub mod intervals;
pub mod series;
pub mod smoothing;

#[cfg(test)]
mod oracle_tests;

use serde::{Deserialize, Serialize};

pub use ensemble::{
    ConfigError, Fallback, ForecastConfig, Issued, Member, NameKey, Obs, ObserveError, RealizedError, Refit, Selection,
    SeriesForecaster, Step, Used,
};
pub use series::{Aggregation, GapRule, Resampled, Resampler, SampleFlag};

/// Standard normal quantiles of the two central intervals every forecast carries.
pub const Z80: f64 = 1.281_551_565_544_600_4;
pub const Z95: f64 = 1.959_963_984_540_054;

/// One forecast value with its 80% and 95% prediction intervals. A bound is NaN when the model
/// cannot yet estimate its error (the dataflow writes it as null).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub mean: f64,
    pub lo80: f64,
    pub hi80: f64,
    pub lo95: f64,
    pub hi95: f64,
}

impl Point {
    /// A Gaussian interval: `mean ± z·sigma` (NaN bounds when `sigma` is NaN).
    pub fn from_sigma(mean: f64, sigma: f64) -> Point {
        Point {
            mean,
            lo80: mean - Z80 * sigma,
            hi80: mean + Z80 * sigma,
            lo95: mean - Z95 * sigma,
            hi95: mean + Z95 * sigma,
        }
    }
}

/// The models sluice knows. The name is what a spec's `models` list and the output's `model`
/// column say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Naive,
    SeasonalNaive,
    Ets,
    Mstl,
    Ar,
}

impl ModelKind {
    pub const ALL: [ModelKind; 5] = [
        ModelKind::Naive,
        ModelKind::SeasonalNaive,
        ModelKind::Ets,
        ModelKind::Mstl,
        ModelKind::Ar,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Naive => "naive",
            ModelKind::SeasonalNaive => "seasonal_naive",
            ModelKind::Ets => "ets",
            ModelKind::Mstl => "mstl",
            ModelKind::Ar => "ar",
        }
    }

    /// The baselines are always computed, whatever the spec lists.
    pub fn is_baseline(self) -> bool {
        matches!(self, ModelKind::Naive | ModelKind::SeasonalNaive)
    }

    pub fn parse(name: &str) -> Option<ModelKind> {
        ModelKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A training window: the last `y.len()` samples, oldest first, with `k` exogenous regressors
/// per sample stored row-major in `x` (`x.len() == y.len() * k`).
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    pub y: &'a [f64],
    pub x: &'a [f64],
    pub k: usize,
}

impl<'a> Window<'a> {
    /// A window without regressors.
    pub fn values(y: &'a [f64]) -> Window<'a> {
        Window { y, x: &[], k: 0 }
    }

    /// The regressors of sample `i`.
    pub fn row(&self, i: usize) -> &'a [f64] {
        &self.x[i * self.k..(i + 1) * self.k]
    }
}

/// Why a model could not be fitted. The ensemble reports it in the `model` label and keeps
/// forecasting with what it has.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
pub enum FitError {
    #[error("too short: {have} < {need}")]
    TooShort { have: usize, need: usize },
    #[error("no seasonal period")]
    NoPeriod,
    #[error("{model}: {message}")]
    Numerical { model: String, message: String },
}

/// One forecast model. The contract, for each new sample in order:
/// [`observe`](Forecaster::observe) it, then, when the refit schedule says so,
/// [`refit`](Forecaster::refit) on the training window that ends with it. A refit replaces the
/// model's state by the one fitted on the window; `observe` between refits costs O(1) in the
/// series length (fixed parameters, updated states or lags).
pub trait Forecaster {
    fn kind(&self) -> ModelKind;
    /// Samples the training window must hold for [`refit`](Forecaster::refit) to succeed.
    fn min_samples(&self, periods: &[usize]) -> usize;
    /// Fit on `window` (oldest first) with the seasonal `periods` in force (first = primary).
    fn refit(&mut self, window: Window<'_>, periods: &[usize]) -> Result<(), FitError>;
    /// A refit between searches: like [`refit`](Forecaster::refit), but a model that searches
    /// its structure at a refit keeps what its current fit found (`ets` and `mstl`: the ETS
    /// form and smoothing parameters) and re-estimates the rest. Without a current fit it
    /// searches. The other models refit fully.
    fn refit_kept(&mut self, window: Window<'_>, periods: &[usize]) -> Result<(), FitError> {
        self.refit(window, periods)
    }
    /// Take one new sample and its regressors.
    fn observe(&mut self, y: f64, x: &[f64]);
    /// The forecast for the next `out.len()` samples, written into `out`; `false` (and `out`
    /// left as it was) when the model cannot forecast yet. `future_x` holds the regressors of
    /// the target samples, row-major; when it is shorter the last known regressors are carried
    /// forward.
    fn forecast_into(&self, future_x: &[f64], out: &mut [Point]) -> bool;
    /// The forecast for the next `horizon` samples, or `None` when the model cannot forecast
    /// yet (see [`forecast_into`](Forecaster::forecast_into)).
    fn forecast(&self, horizon: usize, future_x: &[f64]) -> Option<Vec<Point>> {
        let mut out = vec![Point::from_sigma(f64::NAN, f64::NAN); horizon];
        self.forecast_into(future_x, &mut out).then_some(out)
    }
}

/// Every model behind one enum, so that per-series state is `Clone`, comparable and
/// serializable (checkpoints) without trait objects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AnyModel {
    Naive(baseline::Naive),
    SeasonalNaive(baseline::SeasonalNaive),
    Ets(smoothing::SmoothingModel),
    Ar(ar::ArModel),
}

/// What every model is built with: the horizon its intervals are computed for, the seasonal
/// periods known up front (empty when they are detected at refits) and the AR settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSettings {
    pub horizon: usize,
    pub periods: Vec<usize>,
    pub ar: ar::ArConfig,
}

impl AnyModel {
    /// A fresh, unfitted model of `kind`.
    pub fn new(kind: ModelKind, settings: &ModelSettings) -> AnyModel {
        let primary = settings.periods.first().copied();
        match kind {
            ModelKind::Naive => AnyModel::Naive(baseline::Naive::default()),
            ModelKind::SeasonalNaive => AnyModel::SeasonalNaive(baseline::SeasonalNaive::new(primary)),
            ModelKind::Ets => AnyModel::Ets(smoothing::SmoothingModel::new(false, settings.horizon)),
            ModelKind::Mstl => AnyModel::Ets(smoothing::SmoothingModel::new(true, settings.horizon)),
            ModelKind::Ar => AnyModel::Ar(ar::ArModel::new(settings.ar.clone(), settings.horizon)),
        }
    }

    /// Whether refitting `self` on a window gives the fit that refitting `other` on it gives:
    /// `ets` and `mstl` removing the same periods (one period, or none) with equal current fits.
    pub fn refits_like(&self, other: &AnyModel, periods: &[usize], search: bool) -> bool {
        match (self, other) {
            (AnyModel::Ets(a), AnyModel::Ets(b)) => a.refits_like(b, periods, search),
            _ => false,
        }
    }

    /// Take `other`'s fit, when [`refits_like`](AnyModel::refits_like) held before `other`
    /// was refitted: the fit `self` would have made.
    pub fn adopt_fit(&mut self, other: &mut AnyModel) -> bool {
        match (self, other) {
            (AnyModel::Ets(a), AnyModel::Ets(b)) => a.adopt_fit(b),
            _ => false,
        }
    }

    /// Forget what a refit left for another model to take ([`adopt_fit`](AnyModel::adopt_fit)).
    pub fn drop_candidate(&mut self) {
        if let AnyModel::Ets(m) = self {
            m.drop_candidate();
        }
    }

    fn inner(&self) -> &dyn Forecaster {
        match self {
            AnyModel::Naive(m) => m,
            AnyModel::SeasonalNaive(m) => m,
            AnyModel::Ets(m) => m,
            AnyModel::Ar(m) => m,
        }
    }

    fn inner_mut(&mut self) -> &mut dyn Forecaster {
        match self {
            AnyModel::Naive(m) => m,
            AnyModel::SeasonalNaive(m) => m,
            AnyModel::Ets(m) => m,
            AnyModel::Ar(m) => m,
        }
    }
}

impl Forecaster for AnyModel {
    fn kind(&self) -> ModelKind {
        self.inner().kind()
    }
    fn min_samples(&self, periods: &[usize]) -> usize {
        self.inner().min_samples(periods)
    }
    fn refit(&mut self, window: Window<'_>, periods: &[usize]) -> Result<(), FitError> {
        self.inner_mut().refit(window, periods)
    }
    fn refit_kept(&mut self, window: Window<'_>, periods: &[usize]) -> Result<(), FitError> {
        self.inner_mut().refit_kept(window, periods)
    }
    fn observe(&mut self, y: f64, x: &[f64]) {
        self.inner_mut().observe(y, x)
    }
    fn forecast_into(&self, future_x: &[f64], out: &mut [Point]) -> bool {
        self.inner().forecast_into(future_x, out)
    }
}
