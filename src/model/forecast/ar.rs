//! Autoregression with seasonal lags and exogenous regressors, fitted by ordinary least squares
//! with `linfa-linear`:
//!
//! ```text
//! y(t) = c + Σ_{L ∈ lags} a_L·y(t−L) + Σ_j b_j·x_j(t) + ε(t)
//! lags = 1..=p  ∪  P..=P+p for each seasonal period P
//! ```
//!
//! (`P+1..=P+p` let the linear model express a multiplicative seasonal AR such as
//! `(1 − φB)(1 − ΦB^P)`.) A period's lags enter once the window can estimate them: the window
//! must hold `P + p` samples before the first row and enough rows after it
//! ([`ArModel::supported`]), so a daily lag is used after a day or so even when a weekly period
//! needs two weeks; longer periods join at later refits. Forecasts are recursive: a lag that falls after the last sample
//! takes the forecast for it. Regressors of future samples are taken from the caller, or the
//! last known ones are carried forward.
//!
//! Between refits the coefficients are fixed and a sample only enters the ring of the last
//! `max(lags)` values: O(1). Intervals come from residual variance by horizon: at each refit the
//! model forecasts `1..=horizon` steps from each of the last 512 origins of the training window
//! (recursively, with the actual regressors) and `σ_h` is the RMS of those `h`-step errors.

use std::collections::VecDeque;

use linfa::traits::Fit;
use linfa::Dataset;
use linfa_linear::LinearRegression;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use super::intervals::HorizonErrors;
use super::{FitError, Forecaster, ModelKind, Point, Window};

/// Origins of the training window used to measure `σ_h`.
const SIGMA_ORIGINS: usize = 512;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArConfig {
    /// Non-seasonal order `p` (also the number of lags after each seasonal lag).
    pub order: usize,
    /// Exogenous regressors per sample.
    pub exog: usize,
}

impl Default for ArConfig {
    fn default() -> Self {
        ArConfig { order: 3, exog: 0 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArModel {
    cfg: ArConfig,
    horizon: usize,
    lags: Vec<usize>,
    fit: Option<Coefficients>,
    /// The last `max(lags)` values, oldest first.
    recent: VecDeque<f64>,
    last_x: Vec<f64>,
}

/// Fitted coefficients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Coefficients {
    pub intercept: f64,
    /// One per lag, in the order of [`ArModel::lags`].
    pub lags: Vec<f64>,
    /// One per regressor.
    pub exog: Vec<f64>,
    pub sigma_h: Vec<f64>,
}

impl ArModel {
    pub fn new(cfg: ArConfig, horizon: usize) -> ArModel {
        let last_x = vec![0.0; cfg.exog];
        ArModel {
            cfg,
            horizon,
            lags: Vec::new(),
            fit: None,
            recent: VecDeque::new(),
            last_x,
        }
    }

    /// The lags used for `periods`.
    pub fn lags_for(order: usize, periods: &[usize]) -> Vec<usize> {
        let mut lags: Vec<usize> = (1..=order.max(1)).collect();
        for &p in periods {
            lags.extend(p..=p + order);
        }
        lags.sort_unstable();
        lags.dedup();
        lags
    }

    /// Rows a fit needs beyond its largest lag: three per coefficient, and at least 30.
    fn rows_needed(&self, lags: usize) -> usize {
        (3 * (lags + self.cfg.exog + 1)).max(30)
    }

    /// The periods whose lags a window of `n` samples can estimate: in order, each one whose
    /// largest lag leaves [`rows_needed`](Self::rows_needed) rows with the lags of the periods
    /// before it.
    pub fn supported(&self, periods: &[usize], n: usize) -> Vec<usize> {
        let mut used: Vec<usize> = Vec::new();
        for &p in periods {
            used.push(p);
            let lags = Self::lags_for(self.cfg.order, &used);
            let max_lag = lags.last().copied().unwrap_or(1);
            if n < max_lag + self.rows_needed(lags.len()) {
                used.pop();
            }
        }
        used
    }

    pub fn lags(&self) -> &[usize] {
        &self.lags
    }

    pub fn coefficients(&self) -> Option<&Coefficients> {
        self.fit.as_ref()
    }

    /// The value `h` steps ahead, given `back(d)` = the known value `d` samples before the last
    /// one (d = 0 is the last), the forecasts `path` of steps `1..h`, and the regressors `x`.
    fn predict(&self, c: &Coefficients, h: usize, back: &dyn Fn(usize) -> f64, path: &[f64], x: &[f64]) -> f64 {
        let mut v = c.intercept;
        for (a, &l) in c.lags.iter().zip(&self.lags) {
            let y = if l >= h { back(l - h) } else { path[h - l - 1] };
            v += a * y;
        }
        v + c.exog.iter().zip(x).map(|(b, x)| b * x).sum::<f64>()
    }
}

/// Whether the recursion `x(t) = Σ a_L·x(t−L)` is explosive: its response to a unit impulse,
/// followed for eight times the largest lag (at least 256 steps), still exceeds 100 over the
/// last largest lag. A
/// stationary fit decays, a unit root (naive, seasonal naive, or both: growth linear in the
/// number of cycles) stays within about 9; a root outside the unit circle grows geometrically.
/// Least squares finds such roots on windows dominated by a few bursts, and a recursive
/// forecast from them runs away within the horizon.
fn explosive(lags: &[usize], coefficients: &[f64]) -> bool {
    let max_lag = lags.last().copied().unwrap_or(1);
    let steps = (8 * max_lag).max(256) + max_lag;
    let mut x = vec![0.0f64; steps];
    x[0] = 1.0;
    for t in 1..steps {
        x[t] = lags
            .iter()
            .zip(coefficients)
            .filter(|(&l, _)| l <= t)
            .map(|(&l, a)| a * x[t - l])
            .sum();
    }
    x[steps - max_lag..].iter().any(|v| !v.is_finite() || v.abs() > 100.0)
}

fn numerical(message: impl ToString) -> FitError {
    FitError::Numerical {
        model: "ar".into(),
        message: message.to_string(),
    }
}

impl Forecaster for ArModel {
    fn kind(&self) -> ModelKind {
        ModelKind::Ar
    }

    /// Samples the non-seasonal lags need (seasonal lags are added as the window allows).
    fn min_samples(&self, _periods: &[usize]) -> usize {
        let lags = Self::lags_for(self.cfg.order, &[]);
        lags.last().copied().unwrap_or(1) + self.rows_needed(lags.len())
    }

    fn refit(&mut self, w: Window<'_>, periods: &[usize]) -> Result<(), FitError> {
        let need = self.min_samples(periods);
        let n = w.y.len();
        if n < need {
            return Err(FitError::TooShort { have: n, need });
        }
        if w.k != self.cfg.exog {
            return Err(numerical(format!("{} regressors, expected {}", w.k, self.cfg.exog)));
        }
        let lags = Self::lags_for(self.cfg.order, &self.supported(periods, n));
        let max_lag = *lags.last().unwrap_or(&1);
        let nf = lags.len() + w.k;
        let rows = n - max_lag;
        let mut data = Vec::with_capacity(rows * nf);
        for t in max_lag..n {
            data.extend(lags.iter().map(|&l| w.y[t - l]));
            data.extend_from_slice(w.row(t));
        }
        let records = Array2::from_shape_vec((rows, nf), data).map_err(numerical)?;
        let targets = Array1::from_vec(w.y[max_lag..].to_vec());
        let fitted = LinearRegression::new()
            .fit(&Dataset::new(records, targets))
            .map_err(numerical)?;
        let params = fitted.params();
        let mut c = Coefficients {
            intercept: fitted.intercept(),
            lags: params.iter().take(lags.len()).copied().collect(),
            exog: params.iter().skip(lags.len()).copied().collect(),
            sigma_h: Vec::new(),
        };
        if !c.intercept.is_finite() || !params.iter().all(|v| v.is_finite()) {
            return Err(numerical("non-finite coefficients"));
        }
        if explosive(&lags, &c.lags) {
            return Err(numerical("explosive fit: its forecasts would grow without bound"));
        }
        self.lags = lags;
        // σ_h from recursive in-sample forecasts at the last origins.
        let mut errors = HorizonErrors::new(self.horizon);
        let mut path = vec![0.0; self.horizon];
        for o in max_lag.max(n.saturating_sub(SIGMA_ORIGINS))..n {
            // Known: y[..o]; back(d) = y[o - 1 - d].
            let back = |d: usize| w.y[o - 1 - d];
            for h in 1..=self.horizon.min(n - o) {
                path[h - 1] = self.predict(&c, h, &back, &path, w.row(o + h - 1));
                errors.push(h, w.y[o + h - 1] - path[h - 1]);
            }
        }
        c.sigma_h = errors.sigmas();
        self.recent = w.y[n - max_lag..].iter().copied().collect();
        if n > 0 && w.k > 0 {
            self.last_x = w.row(n - 1).to_vec();
        }
        self.fit = Some(c);
        Ok(())
    }

    fn observe(&mut self, y: f64, x: &[f64]) {
        if x.len() == self.last_x.len() {
            self.last_x.copy_from_slice(x);
        }
        let Some(&max_lag) = self.lags.last() else { return };
        self.recent.push_back(y);
        if self.recent.len() > max_lag {
            self.recent.pop_front();
        }
    }

    fn forecast_into(&self, future_x: &[f64], out: &mut [Point]) -> bool {
        let Some(c) = &self.fit else { return false };
        let k = self.cfg.exog;
        let back = |d: usize| self.recent[self.recent.len() - 1 - d];
        let mut path = vec![0.0; out.len()];
        for (i, p) in out.iter_mut().enumerate() {
            let h = i + 1;
            let x = future_x.get(i * k..h * k).unwrap_or(&self.last_x);
            path[i] = self.predict(c, h, &back, &path, x);
            let sigma = c.sigma_h.get(i).or(c.sigma_h.last()).copied().unwrap_or(f64::NAN);
            *p = Point::from_sigma(path[i], sigma);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, Normal};

    #[test]
    fn lags_cover_seasonal_neighbours() {
        assert_eq!(ArModel::lags_for(2, &[24]), vec![1, 2, 24, 25, 26]);
        assert_eq!(ArModel::lags_for(1, &[2, 3]), vec![1, 2, 3, 4]);
    }

    #[test]
    fn recovers_ar2_seasonal_and_exogenous_coefficients() {
        // y(t) = 5 + 0.5 y(t−1) − 0.2 y(t−2) + 0.3 y(t−24) + 2 x(t) + ε, σ = 0.1.
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let noise = Normal::new(0.0, 0.1).unwrap();
        let n = 6000;
        let x: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let mut y = vec![10.0; n];
        for t in 24..n {
            y[t] = 5.0 + 0.5 * y[t - 1] - 0.2 * y[t - 2] + 0.3 * y[t - 24] + 2.0 * x[t] + noise.sample(&mut rng);
        }
        let mut m = ArModel::new(ArConfig { order: 2, exog: 1 }, 4);
        m.refit(
            Window {
                y: &y[100..],
                x: &x[100..],
                k: 1,
            },
            &[24],
        )
        .unwrap();
        let c = m.coefficients().unwrap();
        let expected = [(1, 0.5), (2, -0.2), (24, 0.3), (25, 0.0), (26, 0.0)];
        for (&(lag, a), (&l, &got)) in expected.iter().zip(m.lags().iter().zip(&c.lags)) {
            assert_eq!(lag, l);
            assert!((got - a).abs() < 0.02, "lag {lag}: {got} vs {a}");
        }
        assert!((c.exog[0] - 2.0).abs() < 0.01, "exog {}", c.exog[0]);
        assert!((c.intercept - 5.0).abs() < 0.3, "intercept {}", c.intercept);
        // One-step σ is the noise σ.
        assert!((c.sigma_h[0] - 0.1).abs() < 0.01, "σ1 {}", c.sigma_h[0]);

        // The one-step forecast is the model equation on the last values and given x.
        let f = m.forecast(1, &[0.5]).unwrap()[0].mean;
        let l = y.len();
        let by_hand = c.intercept
            + c.lags[0] * y[l - 1]
            + c.lags[1] * y[l - 2]
            + c.lags[2] * y[l - 24]
            + c.lags[3] * y[l - 25]
            + c.lags[4] * y[l - 26]
            + c.exog[0] * 0.5;
        assert!((f - by_hand).abs() < 1e-9);
    }

    #[test]
    fn seasonal_lags_enter_as_the_window_allows() {
        let m = ArModel::new(ArConfig { order: 2, exog: 0 }, 3);
        // Lags 1, 2 need 2 + 30 samples; with a period of 10, lags up to 12 need 12 + 30; with a
        // second period of 50 (8 lags), 52 + 30.
        assert_eq!(m.min_samples(&[10, 50]), 32);
        assert_eq!(m.supported(&[10, 50], 41), Vec::<usize>::new());
        assert_eq!(m.supported(&[10, 50], 42), vec![10]);
        assert_eq!(m.supported(&[10, 50], 81), vec![10]);
        assert_eq!(m.supported(&[10, 50], 82), vec![10, 50]);
        // A series whose value repeats every 10 steps: the fit on a short window has no seasonal
        // lag; once the window holds enough, lag 10 enters and the forecast is the pattern.
        let pattern = [3.0, 9.0, 4.0, 1.0, 7.0, 2.0, 8.0, 5.0, 0.0, 6.0];
        let y: Vec<f64> = (0..60).map(|t| pattern[t % 10] + 0.01 * (t % 3) as f64).collect();
        let mut m = ArModel::new(ArConfig { order: 2, exog: 0 }, 3);
        m.refit(Window::values(&y[..35]), &[10, 50]).unwrap();
        assert_eq!(m.lags(), &[1, 2]);
        m.refit(Window::values(&y), &[10, 50]).unwrap();
        assert_eq!(m.lags(), &[1, 2, 10, 11, 12]);
        let f = m.forecast(3, &[]).unwrap();
        for (h, p) in f.iter().enumerate() {
            assert!(
                (p.mean - y[60 + h - 10]).abs() < 0.05,
                "h={}: {} vs {}",
                h + 1,
                p.mean,
                y[50 + h]
            );
        }
    }

    #[test]
    fn explosive_fits_are_refused() {
        // Unit roots are not explosive: naive, seasonal naive, and both at once (growth
        // linear in the cycles); stationary fits decay.
        assert!(!explosive(&[1], &[1.0]));
        assert!(!explosive(&[1, 24, 25], &[1.0, 1.0, -1.0]));
        assert!(!explosive(&[1, 2], &[0.5, 0.3]));
        assert!(!explosive(&[1, 2], &[-1.0, 0.0]));
        // Roots outside the unit circle are.
        assert!(explosive(&[1], &[1.05]));
        assert!(explosive(&[1, 2], &[1.5, -0.2]));
        assert!(explosive(&[1, 24], &[0.5, 1.5]));
        // A window that grows by 5% a step fits a = 1.05: refused, and the model does not
        // forecast (a previous fit would have stayed).
        let y: Vec<f64> = (0..200).map(|t| 1.05f64.powi(t) + 0.01 * (t % 3) as f64).collect();
        let mut m = ArModel::new(ArConfig { order: 1, exog: 0 }, 3);
        let e = m.refit(Window::values(&y), &[]).unwrap_err();
        assert!(e.to_string().contains("explosive"), "{e}");
        assert!(m.forecast(3, &[]).is_none());
    }

    #[test]
    fn too_short_and_singular_inputs_are_errors_not_panics() {
        let mut m = ArModel::new(ArConfig::default(), 3);
        let e = m.refit(Window::values(&[1.0; 20]), &[]).unwrap_err();
        assert!(matches!(e, FitError::TooShort { have: 20, .. }));
        // A constant series: the regression is singular or exact; either way no panic, and a
        // successful fit forecasts the constant.
        if m.refit(Window::values(&[3.0; 200]), &[]).is_ok() {
            let f = m.forecast(3, &[]).unwrap();
            assert!(f.iter().all(|p| (p.mean - 3.0).abs() < 1e-6), "{f:?}");
        }
    }
}
