//! The baselines every forecast computes: naive (the last value) and seasonal naive (the value
//! one season earlier). Intervals are the benchmark formulas of Hyndman & Athanasopoulos,
//! *Forecasting: Principles and Practice* (3rd ed., §5.5): with `σ` the RMS of the one-step
//! in-sample residuals over the training window,
//!
//! | model | forecast `ŷ(n+h)` | `σ_h` |
//! |---|---|---|
//! | naive | `y(n)` | `σ·√h` |
//! | seasonal naive, period `m` | `y(n+h−m(k+1))`, `k = ⌊(h−1)/m⌋` | `σ·√(k+1)` |
//!
//! `σ` is NaN (bounds unknown) until the first refit that has a residual.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{FitError, Forecaster, ModelKind, Point, Window};

/// Naive: the last value.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Naive {
    last: Option<f64>,
    sigma: Option<f64>,
}

impl Forecaster for Naive {
    fn kind(&self) -> ModelKind {
        ModelKind::Naive
    }

    fn min_samples(&self, _periods: &[usize]) -> usize {
        2
    }

    fn refit(&mut self, window: Window<'_>, _periods: &[usize]) -> Result<(), FitError> {
        let y = window.y;
        self.last = y.last().copied().or(self.last);
        if y.len() < 2 {
            return Err(FitError::TooShort { have: y.len(), need: 2 });
        }
        self.sigma = Some(rms(y.windows(2).map(|w| w[1] - w[0])));
        Ok(())
    }

    fn observe(&mut self, y: f64, _x: &[f64]) {
        self.last = Some(y);
    }

    fn forecast_into(&self, _future_x: &[f64], out: &mut [Point]) -> bool {
        let Some(last) = self.last else { return false };
        let sigma = self.sigma.unwrap_or(f64::NAN);
        for (i, p) in out.iter_mut().enumerate() {
            *p = Point::from_sigma(last, sigma * ((i + 1) as f64).sqrt());
        }
        true
    }
}

/// Seasonal naive: the value one season earlier. Keeps the last `m` values.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SeasonalNaive {
    period: Option<usize>,
    /// The last `period` values, oldest first (fewer while the series is shorter).
    recent: VecDeque<f64>,
    sigma: Option<f64>,
}

impl SeasonalNaive {
    pub fn new(period: Option<usize>) -> SeasonalNaive {
        SeasonalNaive {
            period,
            ..SeasonalNaive::default()
        }
    }

    pub fn period(&self) -> Option<usize> {
        self.period
    }
}

impl Forecaster for SeasonalNaive {
    fn kind(&self) -> ModelKind {
        ModelKind::SeasonalNaive
    }

    fn min_samples(&self, periods: &[usize]) -> usize {
        periods.first().map_or(usize::MAX, |m| m + 1)
    }

    fn refit(&mut self, window: Window<'_>, periods: &[usize]) -> Result<(), FitError> {
        let Some(&m) = periods.first() else {
            return Err(FitError::NoPeriod);
        };
        let y = window.y;
        if self.period != Some(m) {
            self.period = Some(m);
            self.sigma = None;
        }
        self.recent = y[y.len().saturating_sub(m)..].iter().copied().collect();
        if y.len() <= m {
            return Err(FitError::TooShort {
                have: y.len(),
                need: m + 1,
            });
        }
        self.sigma = Some(rms((m..y.len()).map(|t| y[t] - y[t - m])));
        Ok(())
    }

    fn observe(&mut self, y: f64, _x: &[f64]) {
        let Some(m) = self.period else { return };
        self.recent.push_back(y);
        if self.recent.len() > m {
            self.recent.pop_front();
        }
    }

    fn forecast_into(&self, _future_x: &[f64], out: &mut [Point]) -> bool {
        let Some(m) = self.period.filter(|&m| self.recent.len() >= m) else {
            return false;
        };
        let sigma = self.sigma.unwrap_or(f64::NAN);
        for (i, p) in out.iter_mut().enumerate() {
            let k = i / m;
            *p = Point::from_sigma(self.recent[i % m], sigma * ((k + 1) as f64).sqrt());
        }
        true
    }
}

/// Root mean square of `e` (NaN when empty).
pub(crate) fn rms(e: impl Iterator<Item = f64>) -> f64 {
    let (mut s, mut n) = (0.0, 0usize);
    for v in e {
        s += v * v;
        n += 1;
    }
    (s / n as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn means(p: &[Point]) -> Vec<f64> {
        p.iter().map(|p| p.mean).collect()
    }

    #[test]
    fn naive_repeats_the_last_value_with_sqrt_h_intervals() {
        let y = [1.0, 3.0, 2.0, 4.0];
        let mut m = Naive::default();
        m.refit(Window::values(&y), &[]).unwrap();
        let f = m.forecast(4, &[]).unwrap();
        assert_eq!(means(&f), vec![4.0; 4]);
        // residuals 2, -1, 2: σ = √3.
        let sigma = 3f64.sqrt();
        assert!((f[3].hi95 - (4.0 + super::super::Z95 * sigma * 2.0)).abs() < 1e-12);
        m.observe(7.0, &[]);
        assert_eq!(m.forecast(1, &[]).unwrap()[0].mean, 7.0);
    }

    #[test]
    fn seasonal_naive_repeats_the_last_season() {
        let y = [1.0, 2.0, 3.0, 10.0, 20.0, 30.0, 11.0];
        let mut m = SeasonalNaive::new(Some(3));
        m.refit(Window::values(&y), &[3]).unwrap();
        // Last season: 20, 30, 11 → h = 1..7 targets t = 8..14 map to 20, 30, 11, 20, ...
        let f = m.forecast(7, &[]).unwrap();
        assert_eq!(means(&f), vec![20.0, 30.0, 11.0, 20.0, 30.0, 11.0, 20.0]);
        // residuals 9, 18, 27, 1: σ² = (81 + 324 + 729 + 1) / 4.
        let sigma = (1135.0f64 / 4.0).sqrt();
        let w = |p: &Point| (p.hi80 - p.mean) / super::super::Z80;
        assert!((w(&f[0]) - sigma).abs() < 1e-9);
        assert!((w(&f[3]) - sigma * 2f64.sqrt()).abs() < 1e-9);
        assert!((w(&f[6]) - sigma * 3f64.sqrt()).abs() < 1e-9);
        m.observe(5.0, &[]);
        assert_eq!(means(&m.forecast(3, &[]).unwrap()), vec![30.0, 11.0, 5.0]);
    }

    #[test]
    fn seasonal_naive_waits_for_a_full_season() {
        let mut m = SeasonalNaive::new(Some(4));
        for v in [1.0, 2.0, 3.0] {
            m.observe(v, &[]);
        }
        assert!(m.forecast(2, &[]).is_none());
        m.observe(4.0, &[]);
        let f = m.forecast(2, &[]).unwrap();
        assert_eq!(means(&f), vec![1.0, 2.0]);
        assert!(f[0].lo80.is_nan(), "no residual yet: unknown bounds");
        assert_eq!(
            SeasonalNaive::default().refit(Window::values(&[1.0]), &[]),
            Err(FitError::NoPeriod)
        );
    }
}
