//! The two exponential-smoothing forecasters: `ets` and `mstl`. Both deseasonalise the training
//! window with MSTL ([`Seasonal`]) and smooth what remains with AutoETS ([`EtsState`]):
//!
//! | model | seasonal periods removed | then |
//! |---|---|---|
//! | `ets` | the primary period only (none when there is no period: plain AutoETS) | AutoETS |
//! | `mstl` | every period | AutoETS |
//!
//! `ets` is Holt-Winters-like additive seasonality with the seasonal indices re-estimated at
//! each refit rather than smoothed between them (`augurs-ets` has no seasonal ETS: it panics
//! with `unimplemented!` on a seasonal model, so the season is removed first, as augurs'
//! own MSTL + AutoETS forecaster does). The forecast is `ETS(h) + seasonal(h)`; the interval is
//! the ETS interval shifted by the seasonal value (the seasonal profile is taken as known, so
//! intervals are slightly narrow right after a change of pattern).
//!
//! A refit decomposes the window again. A full refit ([`Forecaster::refit`]) then runs the
//! AutoETS search on the adjusted window; a refit between searches
//! ([`Forecaster::refit_kept`]) keeps the ETS form and `α`, `β`, `φ` and re-estimates only the
//! states ([`EtsState::refit_kept`], O(window)). It searches anyway when there is no fit yet or
//! when the periods it removes changed.

use serde::{Deserialize, Serialize};

use super::decompose::Seasonal;
use super::ets::EtsState;
use super::{FitError, Forecaster, ModelKind, Point, Window};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmoothingModel {
    /// `true` for `mstl` (every period), `false` for `ets` (the primary period).
    all_periods: bool,
    horizon: usize,
    fit: Option<Fitted>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Fitted {
    seasonal: Option<Seasonal>,
    ets: EtsState,
}

impl SmoothingModel {
    pub fn new(all_periods: bool, horizon: usize) -> SmoothingModel {
        SmoothingModel {
            all_periods,
            horizon,
            fit: None,
        }
    }

    fn used<'p>(&self, periods: &'p [usize]) -> &'p [usize] {
        if self.all_periods {
            periods
        } else {
            &periods[..periods.len().min(1)]
        }
    }

    /// The fitted ETS state (for inspection and tests).
    pub fn ets(&self) -> Option<&EtsState> {
        self.fit.as_ref().map(|f| &f.ets)
    }

    /// Whether a refit of `self` gives the fit a refit of `other` gives on the same window: they
    /// remove the same periods, at least one, and hold equal fits (`ets` and `mstl` with one
    /// period).
    pub fn refits_like(&self, other: &SmoothingModel, periods: &[usize]) -> bool {
        let used = self.used(periods);
        !used.is_empty() && used == other.used(periods) && self.horizon == other.horizon && self.fit == other.fit
    }

    /// Take `other`'s fit (see [`refits_like`](Self::refits_like)).
    pub fn adopt_fit(&mut self, other: &SmoothingModel) {
        self.fit.clone_from(&other.fit);
    }

    /// Decompose the window and fit the ETS part: a search, or with the current fit's form and
    /// parameters kept (`keep`) when it removed the same periods.
    fn fit_window(&mut self, window: Window<'_>, periods: &[usize], keep: bool) -> Result<(), FitError> {
        let used = self.used(periods);
        if self.all_periods && used.is_empty() {
            return Err(FitError::NoPeriod);
        }
        let need = self.min_samples(periods);
        if window.y.len() < need {
            return Err(FitError::TooShort {
                have: window.y.len(),
                need,
            });
        }
        let (seasonal, adjusted) = if used.is_empty() {
            (None, window.y.to_vec())
        } else {
            let (s, adjusted) = Seasonal::fit(window.y, used)?;
            (Some(s), adjusted)
        };
        let kept = self
            .fit
            .as_ref()
            .filter(|f| keep && f.seasonal.as_ref().map_or(&[][..], |s| s.periods()) == used);
        let ets = match kept {
            Some(f) => f
                .ets
                .refit_kept(&adjusted, self.horizon)
                .or_else(|_| EtsState::fit(&adjusted, self.horizon))?,
            None => EtsState::fit(&adjusted, self.horizon)?,
        };
        self.fit = Some(Fitted { seasonal, ets });
        Ok(())
    }
}

impl Forecaster for SmoothingModel {
    fn kind(&self) -> ModelKind {
        if self.all_periods {
            ModelKind::Mstl
        } else {
            ModelKind::Ets
        }
    }

    fn min_samples(&self, periods: &[usize]) -> usize {
        Seasonal::min_samples(self.used(periods)).max(EtsState::MIN_SAMPLES)
    }

    fn refit(&mut self, window: Window<'_>, periods: &[usize]) -> Result<(), FitError> {
        self.fit_window(window, periods, false)
    }

    fn refit_kept(&mut self, window: Window<'_>, periods: &[usize]) -> Result<(), FitError> {
        self.fit_window(window, periods, true)
    }

    fn observe(&mut self, y: f64, _x: &[f64]) {
        let Some(fit) = &mut self.fit else { return };
        match &mut fit.seasonal {
            Some(s) => {
                fit.ets.observe(y - s.ahead(1));
                s.advance();
            }
            None => fit.ets.observe(y),
        }
    }

    fn forecast_into(&self, _future_x: &[f64], out: &mut [Point]) -> bool {
        let Some(fit) = &self.fit else { return false };
        for (i, p) in out.iter_mut().enumerate() {
            let h = i + 1;
            let s = fit.seasonal.as_ref().map_or(0.0, |s| s.ahead(h));
            *p = Point::from_sigma(fit.ets.mean(h) + s, fit.ets.sigma(h));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seasonal_pattern_with_trend_is_recovered() {
        let pattern = [4.0, 1.0, -2.0, -3.0, 0.0, 0.0];
        let f = |t: usize| 20.0 + 0.25 * t as f64 + pattern[t % 6];
        let y: Vec<f64> = (0..72).map(f).collect();
        let mut m = SmoothingModel::new(false, 6);
        m.refit(Window::values(&y), &[6]).unwrap();
        let out = m.forecast(12, &[]).unwrap();
        for (h, p) in out.iter().enumerate() {
            let expected = f(72 + h);
            assert!((p.mean - expected).abs() < 0.05, "h={} {} vs {expected}", h + 1, p.mean);
        }
        // Exact samples keep it exact.
        m.observe(f(72), &[]);
        let p = m.forecast(1, &[]).unwrap()[0];
        assert!((p.mean - f(73)).abs() < 0.05);
    }

    #[test]
    fn mstl_needs_periods_and_two_cycles() {
        let mut m = SmoothingModel::new(true, 3);
        assert_eq!(m.refit(Window::values(&[1.0; 30]), &[]), Err(FitError::NoPeriod));
        assert_eq!(
            m.refit(Window::values(&[1.0; 30]), &[4, 24]),
            Err(FitError::TooShort { have: 30, need: 48 })
        );
        assert!(m.forecast(3, &[]).is_none());
        // `ets` without a period is plain AutoETS.
        let mut e = SmoothingModel::new(false, 3);
        e.refit(Window::values(&[2.0; 30]), &[]).unwrap();
        assert!((e.forecast(1, &[]).unwrap()[0].mean - 2.0).abs() < 1e-9);
    }
}
