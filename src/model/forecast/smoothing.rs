//! The two exponential-smoothing forecasters: `ets` and `mstl`. Both deseasonalise the training
//! window with MSTL ([`Seasonal`]) and smooth what remains with AutoETS ([`EtsState`]):
//!
//! | model | seasonal periods removed | then |
//! |---|---|---|
//! | `ets` | the primary period, when that lowers AICc (see below); none without a period or before two cycles | AutoETS |
//! | `mstl` | every period | AutoETS |
//!
//! A search of `ets` fits AutoETS on the window as it is and on the window with its primary
//! season removed, and keeps the lower AICc, counting the removed profile as `P − 1`
//! parameters, as a seasonal ETS counts its initial seasonal states (AutoETS chooses a season
//! the same way). Real metrics often have a weak daily cycle; removing a profile estimated from
//! a few noisy days then makes the forecast worse than naive. `mstl` always removes its
//! periods, so an ensemble has both. When `ets` keeps plain AutoETS, it sets the seasonal fit
//! aside for `mstl` with the same single period to take in the same refit.
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
    /// The seasonal fit a search of `ets` made and did not choose, for `mstl` to take in the
    /// same refit ([`adopt_fit`](Self::adopt_fit)); dropped after it ([`drop_candidate`]).
    #[serde(skip)]
    candidate: Option<Fitted>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Fitted {
    /// The periods the fit could remove: `ets` removes its one only when that wins (above).
    considered: Vec<usize>,
    seasonal: Option<Seasonal>,
    ets: EtsState,
}

impl SmoothingModel {
    pub fn new(all_periods: bool, horizon: usize) -> SmoothingModel {
        SmoothingModel {
            all_periods,
            horizon,
            fit: None,
            candidate: None,
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

    /// The periods the fit removed (empty: none, or not fitted).
    pub fn removed_periods(&self) -> &[usize] {
        self.fit
            .as_ref()
            .and_then(|f| f.seasonal.as_ref())
            .map_or(&[][..], |s| s.periods())
    }

    /// Whether a refit of `self` gives the fit a refit of `other` gives on the same window: they
    /// remove the same periods, at least one (`ets` and `mstl` with one period), and either both
    /// search (a fit from scratch on the window) or they hold equal fits (a refit between
    /// searches keeps each one's form).
    pub fn refits_like(&self, other: &SmoothingModel, periods: &[usize], search: bool) -> bool {
        let used = self.used(periods);
        !used.is_empty()
            && used == other.used(periods)
            && self.horizon == other.horizon
            && (search || self.fit == other.fit)
    }

    /// Take `other`'s fit when it is the one `self` would have made (see
    /// [`refits_like`](Self::refits_like)): it removed the periods `self` removes. `ets` can
    /// choose to remove none, and `mstl` then fits on its own. Returns whether it took it.
    pub fn adopt_fit(&mut self, other: &mut SmoothingModel) -> bool {
        let removed = |f: &Fitted| f.seasonal.as_ref().is_some_and(|s| s.periods() == f.considered);
        match (&other.fit, other.candidate.take()) {
            (Some(f), _) if removed(f) => {
                self.fit = Some(f.clone());
                true
            }
            (_, Some(candidate)) => {
                self.fit = Some(candidate);
                true
            }
            _ => false,
        }
    }

    /// Drop the seasonal fit `ets` did not choose (after the refit that made it).
    pub fn drop_candidate(&mut self) {
        self.candidate = None;
    }

    /// Decompose the window and fit the ETS part: a search, or with the current fit's form and
    /// parameters kept (`keep`) when it removed the same periods.
    fn fit_window(&mut self, window: Window<'_>, periods: &[usize], keep: bool) -> Result<(), FitError> {
        self.candidate = None;
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
        // `ets` before two cycles of its period: plain AutoETS, the season not yet considered
        // (so the next refit searches again).
        let used = if !self.all_periods && window.y.len() < Seasonal::min_samples(used) {
            &[][..]
        } else {
            used
        };
        let kept = self.fit.as_ref().filter(|f| keep && f.considered == used);
        if let Some(f) = kept {
            // The kept form, with or without the season as chosen at the last search.
            let (seasonal, adjusted) = match &f.seasonal {
                Some(_) => {
                    let (s, adjusted) = Seasonal::fit(window.y, used)?;
                    (Some(s), adjusted)
                }
                None => (None, window.y.to_vec()),
            };
            let ets = f
                .ets
                .refit_kept(&adjusted, self.horizon)
                .or_else(|_| EtsState::fit(&adjusted, self.horizon))?;
            self.fit = Some(Fitted {
                considered: used.to_vec(),
                seasonal,
                ets,
            });
            return Ok(());
        }
        if used.is_empty() {
            let ets = EtsState::fit(window.y, self.horizon)?;
            self.fit = Some(Fitted {
                considered: Vec::new(),
                seasonal: None,
                ets,
            });
            return Ok(());
        }
        let (s, adjusted) = Seasonal::fit(window.y, used)?;
        // `ets` searches with and without the season, the two searches run together.
        let (seasonal, plain) = if self.all_periods {
            let [seasonal] = EtsState::fit_scored_together([&adjusted[..]], self.horizon);
            (seasonal, None)
        } else {
            let [seasonal, plain] = EtsState::fit_scored_together([&adjusted[..], window.y], self.horizon);
            (seasonal, Some(plain))
        };
        let (seasonal_ets, seasonal_criterion) = seasonal?;
        let mut fit = Fitted {
            considered: used.to_vec(),
            seasonal: Some(s),
            ets: seasonal_ets,
        };
        if let Some(plain) = plain {
            // `ets` keeps the season only when AICc says so, counting each period's profile as
            // `P − 1` parameters, as a seasonal ETS counts its initial seasonal states.
            let extra: usize = used.iter().map(|p| p - 1).sum();
            if let Ok((plain, plain_criterion)) = plain {
                if plain_criterion.aicc(0) < seasonal_criterion.aicc(extra) {
                    let seasonal = std::mem::replace(
                        &mut fit,
                        Fitted {
                            considered: used.to_vec(),
                            seasonal: None,
                            ets: plain,
                        },
                    );
                    self.candidate = Some(seasonal);
                }
            }
        }
        self.fit = Some(fit);
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

    /// `mstl` needs two cycles of its longest period; `ets` starts as plain AutoETS.
    fn min_samples(&self, periods: &[usize]) -> usize {
        if self.all_periods {
            Seasonal::min_samples(self.used(periods)).max(EtsState::MIN_SAMPLES)
        } else {
            EtsState::MIN_SAMPLES
        }
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
    fn ets_removes_its_season_only_when_aicc_says_so() {
        // A strong daily pattern under little noise: the season wins despite its 23 parameters.
        let pattern = |t: usize| 10.0 * (2.0 * std::f64::consts::PI * (t % 24) as f64 / 24.0).sin();
        let noise = |t: usize| ((t * 7919) % 13) as f64 / 13.0 - 0.5;
        let seasonal: Vec<f64> = (0..240).map(|t| 50.0 + pattern(t) + noise(t)).collect();
        let mut m = SmoothingModel::new(false, 6);
        m.refit(Window::values(&seasonal), &[24]).unwrap();
        assert_eq!(m.removed_periods(), &[24]);
        // A random walk with no season: the profile MSTL would remove is noise, and plain
        // AutoETS (which follows the walk) wins.
        let mut walk = vec![100.0];
        for t in 1..240 {
            walk.push(walk[t - 1] + 3.0 * noise(t * 31 + 5));
        }
        m.refit(Window::values(&walk), &[24]).unwrap();
        assert_eq!(m.removed_periods(), &[] as &[usize]);
        // Its forecast is the walk's level, not a season.
        let f = m.forecast(6, &[]).unwrap();
        assert!(f.iter().all(|p| (p.mean - f[0].mean).abs() < 3.0), "{f:?}");
        // Before two cycles `ets` is plain AutoETS; `mstl` is too short.
        let mut short = SmoothingModel::new(false, 3);
        short.refit(Window::values(&seasonal[..40]), &[24]).unwrap();
        assert_eq!(short.removed_periods(), &[] as &[usize]);
        // A refit between searches keeps the choice.
        m.refit_kept(Window::values(&walk[10..]), &[24]).unwrap();
        assert_eq!(m.removed_periods(), &[] as &[usize]);
        let mut mstl = SmoothingModel::new(true, 6);
        assert!(
            !mstl.adopt_fit(&mut m),
            "mstl takes only a fit that removed its periods"
        );
        // After a search that chose no season, `mstl` takes the seasonal fit `ets` made, once.
        m.refit(Window::values(&walk), &[24]).unwrap();
        assert_eq!(m.removed_periods(), &[] as &[usize]);
        assert!(mstl.adopt_fit(&mut m));
        assert_eq!(mstl.removed_periods(), &[24]);
        let mut fresh = SmoothingModel::new(true, 6);
        fresh.refit(Window::values(&walk), &[24]).unwrap();
        assert_eq!(fresh, mstl, "the candidate is the fit mstl makes itself");
        assert!(!SmoothingModel::new(true, 6).adopt_fit(&mut m));
        m.refit(Window::values(&seasonal), &[24]).unwrap();
        assert!(mstl.adopt_fit(&mut m));
        assert_eq!(mstl.removed_periods(), &[24]);
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
