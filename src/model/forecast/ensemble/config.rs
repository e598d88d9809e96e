//! The settings of one forecast, shared by all its series, and their validation.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::forecast::ar::ArConfig;
use crate::model::forecast::{ModelKind, ModelSettings};

/// How the ensemble combines the eligible models at each horizon.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// The model with the lowest recent mean absolute error.
    Best,
    /// Weights `∝ score^-power` over the models whose score is within `within × best`.
    InverseError { power: f64, within: f64 },
}

/// The settings of one forecast (one `[[forecasts]]` entry), shared by all its series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForecastConfig {
    /// Steps ahead to forecast.
    pub horizon: usize,
    /// Seasonal periods in steps, primary first. Empty: detected at each refit.
    pub periods: Vec<usize>,
    /// Most periods to detect when `periods` is empty (0: none, the series is non-seasonal).
    pub detect_periods: usize,
    /// Training window, in samples.
    pub window: usize,
    /// Samples between refits.
    pub refit_every: usize,
    /// Every `search_every`-th refit searches the ETS form of `ets` and `mstl` (AutoETS); the
    /// refits in between keep the form and smoothing parameters (1: every refit searches).
    /// Default: the refits in a training window, so that each search sees a new window.
    pub search_every: usize,
    /// Models asked for; the baselines are always added.
    pub models: Vec<ModelKind>,
    /// Exogenous regressors per sample (used by `ar`).
    pub exog: usize,
    /// Realized errors per model and horizon that the ensemble scores on.
    pub error_window: usize,
    /// Errors a model needs at a horizon before the ensemble uses it there.
    pub min_errors: usize,
    pub selection: Selection,
    /// Non-seasonal order of `ar`.
    pub ar_order: usize,
}

/// A setting out of range. The spec validation maps it to a located `SpecError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` {rule} (got {value})")]
pub struct ConfigError {
    pub field: &'static str,
    pub rule: &'static str,
    pub value: String,
}

impl ForecastConfig {
    /// Defaults for everything but the horizon, periods, window and refit interval.
    pub fn new(horizon: usize, periods: Vec<usize>, window: usize, refit_every: usize) -> Self {
        ForecastConfig {
            horizon,
            periods,
            detect_periods: 2,
            window,
            refit_every,
            search_every: (window / refit_every.max(1)).max(1),
            models: vec![ModelKind::Ets, ModelKind::Mstl, ModelKind::Ar],
            exog: 0,
            error_window: 96,
            min_errors: 12,
            selection: Selection::InverseError {
                power: 2.0,
                within: 1.2,
            },
            ar_order: 3,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, rule, value: &dyn fmt::Display| {
            Err(ConfigError {
                field,
                rule,
                value: value.to_string(),
            })
        };
        if self.horizon == 0 || self.horizon > 10_000 {
            return bad("horizon", "must be between 1 and 10000", &self.horizon);
        }
        if let Some(p) = self.periods.iter().find(|&&p| p < 2) {
            return bad("periods", "must each be at least 2", p);
        }
        if self.window < 2 {
            return bad("window", "must be at least 2", &self.window);
        }
        if self.refit_every == 0 {
            return bad("refit_every", "must be at least 1", &self.refit_every);
        }
        if self.search_every == 0 {
            return bad("search_every", "must be at least 1", &self.search_every);
        }
        if self.error_window == 0 {
            return bad("error_window", "must be at least 1", &self.error_window);
        }
        if self.min_errors == 0 || self.min_errors > self.error_window {
            return bad("min_errors", "must be between 1 and error_window", &self.min_errors);
        }
        if let Selection::InverseError { power, within } = self.selection {
            if !(power.is_finite() && power >= 0.0) {
                return bad("selection.power", "must be finite and non-negative", &power);
            }
            if !(within.is_finite() && within >= 1.0) {
                return bad("selection.within", "must be finite and at least 1", &within);
            }
        }
        Ok(())
    }

    /// The models run: the baselines and the ones asked for, in [`ModelKind::ALL`] order.
    pub fn kinds(&self) -> Vec<ModelKind> {
        ModelKind::ALL
            .into_iter()
            .filter(|k| k.is_baseline() || self.models.contains(k))
            .collect()
    }

    /// What each model is built with.
    pub fn settings(&self) -> ModelSettings {
        ModelSettings {
            horizon: self.horizon,
            periods: self.periods.clone(),
            ar: ArConfig {
                order: self.ar_order,
                exog: self.exog,
            },
        }
    }
}
