//! Non-seasonal exponential smoothing fitted by `augurs-ets` (AutoETS over ANN, AAN and AAdN:
//! additive errors, no, linear or damped trend, chosen by AICc), then kept up to date between
//! refits by the state recursions with the fitted parameters, O(1) per sample:
//!
//! ```text
//! ŷ = l + φ·b        e = y − ŷ        l ← ŷ + α·e        b ← φ·b + β·e
//! forecast(h) = l + (φ + φ² + … + φ^h)·b
//! ```
//!
//! `augurs-ets` keeps its parameters and states private, so they are read back from what it
//! does publish, exactly: the last state from its forecast path (`f1 = l + φb`,
//! `f2 − f1 = φ²b`, and for a damped trend `φ = (f3 − f2)/(f2 − f1)`), and the smoothing
//! parameters from its in-sample one-step forecasts `ŷ(t)`, which obey
//! `d(t+1) − φ·d(t) = (α + φβ)·e(t+1) − φα·e(t)` with `d(t) = ŷ(t+1) − ŷ(t)` (without trend:
//! `d(t) = α·e(t)`); a two-unknown least-squares solve recovers them. The read-back is checked
//! against augurs' own forecast path; a mismatch is a fit error, never a silent change. When the
//! window is fitted exactly (no residual), the parameters cannot be identified and do not matter
//! for it: `α = 0.5, β = 0.05` then.
//!
//! Interval widths `σ_h` come from augurs' own 95% intervals for the fitted model (the ETS
//! variance formulas), read at the refit and reused until the next one (they depend on the
//! parameters and the residual variance, not on the state).

use augurs_core::{Fit, Predict};
use augurs_ets::model::TrendComponent;
use augurs_ets::AutoETS;
use serde::{Deserialize, Serialize};

use super::{FitError, Z95};

/// The fitted form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EtsForm {
    /// ANN: level only.
    Level,
    /// AAN: level and trend.
    Trend,
    /// AAdN: level and damped trend.
    DampedTrend,
}

/// An ETS model's parameters and current state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EtsState {
    pub form: EtsForm,
    pub alpha: f64,
    pub beta: f64,
    pub phi: f64,
    pub level: f64,
    pub slope: f64,
    /// Standard deviation of the `h`-step error, `h = 1..=sigma_h.len()`.
    pub sigma_h: Vec<f64>,
}

fn numerical(message: impl ToString) -> FitError {
    FitError::Numerical {
        model: "ets".into(),
        message: message.to_string(),
    }
}

impl EtsState {
    /// Samples AutoETS needs (it refuses `n ≤ 6`).
    pub const MIN_SAMPLES: usize = 8;

    /// Fit AutoETS (`AZN`) on `y` and read the model back; `sigma_h` covers `horizon` steps.
    pub fn fit(y: &[f64], horizon: usize) -> Result<EtsState, FitError> {
        let auto = AutoETS::new(1, "AZN").map_err(numerical)?;
        EtsState::fit_with(&auto, y, horizon)
    }

    /// Fit with a configured search (tests fix the parameters through it).
    pub fn fit_with(auto: &AutoETS, y: &[f64], horizon: usize) -> Result<EtsState, FitError> {
        if y.len() < Self::MIN_SAMPLES {
            return Err(FitError::TooShort {
                have: y.len(),
                need: Self::MIN_SAMPLES,
            });
        }
        let fitted = auto.fit(y).map_err(numerical)?;
        let model = fitted.model();
        let form = match (model.model_type().trend, model.damped()) {
            (TrendComponent::None, _) => EtsForm::Level,
            (TrendComponent::Additive, false) => EtsForm::Trend,
            (TrendComponent::Additive, true) => EtsForm::DampedTrend,
            (TrendComponent::Multiplicative, _) => return Err(numerical("multiplicative trend")),
        };
        let hh = horizon.max(3);
        let out = fitted.predict(hh, 0.95).map_err(numerical)?;
        let f = &out.point;
        let intervals = out.intervals.as_ref().ok_or_else(|| numerical("no intervals"))?;
        let sigma_h: Vec<f64> = (0..horizon.max(1))
            .map(|i| (intervals.upper[i] - intervals.lower[i]) / (2.0 * Z95))
            .collect();
        let fitted_in = fitted.predict_in_sample(None).map_err(numerical)?.point;
        if fitted_in.len() != y.len() {
            return Err(numerical("in-sample forecasts do not match the window"));
        }
        // Residuals e(t) and one-step forecasts ŷ(t), t = 0..n, with ŷ(n) = f1.
        let e: Vec<f64> = y.iter().zip(&fitted_in).map(|(y, f)| y - f).collect();
        let mut yhat = fitted_in;
        yhat.push(f[0]);
        let d: Vec<f64> = yhat.windows(2).map(|w| w[1] - w[0]).collect();
        let scale = y.iter().fold(0.0f64, |a, v| a.max(v.abs())).max(1e-300);
        let exact = e.iter().all(|e| e.abs() <= 1e-9 * scale);

        let mut s = match form {
            EtsForm::Level => {
                let alpha = if exact { 0.5 } else { dot(&d, &e) / dot(&e, &e) };
                EtsState {
                    form,
                    alpha,
                    beta: 0.0,
                    phi: 1.0,
                    level: f[0],
                    slope: 0.0,
                    sigma_h,
                }
            }
            EtsForm::Trend | EtsForm::DampedTrend => {
                let (df1, df2) = (f[1] - f[0], f[2] - f[1]);
                let phi = if form == EtsForm::Trend {
                    1.0
                } else if df1.abs() > 1e-9 * scale {
                    df2 / df1
                } else {
                    // Flat path (no slope left): φ from the in-sample recursion, on augurs' range.
                    let mut best = (f64::INFINITY, 0.98);
                    for i in 0..=180 {
                        let phi = 0.8 + i as f64 * 0.001;
                        let rss = smoothing_solve(&d, &e, phi).2;
                        if rss < best.0 {
                            best = (rss, phi);
                        }
                    }
                    best.1
                };
                let (alpha, beta) = if exact {
                    (0.5, 0.05)
                } else {
                    let (alpha, beta, _) = smoothing_solve(&d, &e, phi);
                    (alpha, beta)
                };
                let slope = df1 / (phi * phi);
                EtsState {
                    form,
                    alpha,
                    beta,
                    phi,
                    level: f[0] - phi * slope,
                    slope,
                    sigma_h,
                }
            }
        };
        if ![s.alpha, s.beta, s.phi, s.level, s.slope].iter().all(|v| v.is_finite()) {
            return Err(numerical("non-finite parameters"));
        }
        s.alpha = s.alpha.clamp(0.0, 1.0);
        for (h, expected) in f.iter().enumerate() {
            let ours = s.mean(h + 1);
            if (ours - expected).abs() > 1e-6 * (1.0 + expected.abs()) {
                return Err(numerical(format!(
                    "read-back forecast {ours} differs from augurs' {expected} at h = {}",
                    h + 1
                )));
            }
        }
        Ok(s)
    }

    /// One new sample.
    pub fn observe(&mut self, y: f64) {
        let yhat = self.level + self.phi * self.slope;
        let e = y - yhat;
        self.level = yhat + self.alpha * e;
        self.slope = self.phi * self.slope + self.beta * e;
    }

    /// Point forecast `h ≥ 1` steps ahead.
    pub fn mean(&self, h: usize) -> f64 {
        if self.form == EtsForm::Level {
            return self.level;
        }
        let (mut sum, mut p) = (0.0, 1.0);
        for _ in 0..h {
            p *= self.phi;
            sum += p;
        }
        self.level + sum * self.slope
    }

    /// Error standard deviation `h` steps ahead (the last known one beyond the fitted horizon).
    pub fn sigma(&self, h: usize) -> f64 {
        let i = h.clamp(1, self.sigma_h.len().max(1)) - 1;
        self.sigma_h.get(i).copied().unwrap_or(f64::NAN)
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

/// Least squares of `r(t) = d(t+1) − φ·d(t)` on `c1·e(t+1) + c2·e(t)`; returns
/// `(α, β, residual sum of squares)` with `α = −c2/φ`, `β = (c1 − α)/φ`.
fn smoothing_solve(d: &[f64], e: &[f64], phi: f64) -> (f64, f64, f64) {
    let n = d.len().min(e.len());
    let (mut s11, mut s12, mut s22, mut s1r, mut s2r) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for t in 0..n.saturating_sub(1) {
        let (x1, x2, r) = (e[t + 1], e[t], d[t + 1] - phi * d[t]);
        s11 += x1 * x1;
        s12 += x1 * x2;
        s22 += x2 * x2;
        s1r += x1 * r;
        s2r += x2 * r;
    }
    let det = s11 * s22 - s12 * s12;
    if det.abs() <= 1e-300 {
        return (f64::NAN, f64::NAN, f64::INFINITY);
    }
    let c1 = (s1r * s22 - s2r * s12) / det;
    let c2 = (s2r * s11 - s1r * s12) / det;
    let mut rss = 0.0;
    for t in 0..n.saturating_sub(1) {
        let r = d[t + 1] - phi * d[t] - c1 * e[t + 1] - c2 * e[t];
        rss += r * r;
    }
    let alpha = -c2 / phi;
    (alpha, (c1 - alpha) / phi, rss)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random sequence (tests must not depend on `rand` versions).
    fn noise(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5
            })
            .collect()
    }

    #[test]
    fn constant_series_forecasts_the_constant() {
        let y = vec![7.25; 50];
        let s = EtsState::fit(&y, 6).unwrap();
        for h in 1..=6 {
            assert!((s.mean(h) - 7.25).abs() < 1e-6, "h={h}: {}", s.mean(h));
        }
    }

    #[test]
    fn linear_trend_is_extrapolated() {
        let y: Vec<f64> = (0..60).map(|t| 3.0 + 0.5 * t as f64).collect();
        let mut s = EtsState::fit(&y, 5).unwrap();
        for h in 1..=5 {
            let expected = 3.0 + 0.5 * (59 + h) as f64;
            assert!(
                (s.mean(h) - expected).abs() < 1e-3,
                "h={h}: {} vs {expected}",
                s.mean(h)
            );
        }
        // Samples that stay on the line keep the forecast on it (zero errors).
        s.observe(3.0 + 0.5 * 60.0);
        assert!((s.mean(1) - (3.0 + 0.5 * 61.0)).abs() < 1e-3);
    }

    /// The parameters augurs fitted, read from its `Debug` output (tests only: augurs keeps
    /// them private, and it optimises them even when they are given).
    fn augurs_params(auto: &AutoETS, y: &[f64]) -> (f64, f64, f64) {
        let dbg = format!("{:?}", auto.fit(y).unwrap().model());
        let fit = &dbg[dbg.rfind("params: Params {").unwrap()..];
        let field = |name: &str| -> f64 {
            let at = fit.find(&format!("{name}: ")).unwrap() + name.len() + 2;
            let end = fit[at..].find([',', ' ']).unwrap();
            fit[at..at + end].parse().unwrap()
        };
        (field("alpha"), field("beta"), field("phi"))
    }

    fn assert_read_back(spec: &str, damped: Option<bool>, y: &[f64], form: EtsForm) {
        let mut auto = AutoETS::new(1, spec).unwrap();
        if let Some(d) = damped {
            auto = auto.damped(d).unwrap();
        }
        let (alpha, beta, phi) = augurs_params(&auto, y);
        let s = EtsState::fit_with(&auto, y, 4).unwrap();
        assert_eq!(s.form, form);
        assert!((s.alpha - alpha).abs() < 1e-7, "{spec} alpha {} vs {alpha}", s.alpha);
        if form != EtsForm::Level {
            assert!((s.beta - beta).abs() < 1e-7, "{spec} beta {} vs {beta}", s.beta);
        }
        if form == EtsForm::DampedTrend {
            assert!((s.phi - phi).abs() < 1e-7, "{spec} phi {} vs {phi}", s.phi);
        }
    }

    #[test]
    fn fitted_parameters_are_read_back_exactly() {
        let wiggle = noise(300, 3);
        let level: Vec<f64> = wiggle
            .iter()
            .scan(10.0, |l, e| {
                *l += 0.3 * e;
                Some(*l + e)
            })
            .collect();
        let flat: Vec<f64> = wiggle.iter().map(|e| 10.0 + e).collect();
        // ("ANN" finds no model in augurs 0.10: its `N` trend search has no candidate.)
        assert_read_back("AZN", None, &flat, EtsForm::Level);
        let trend: Vec<f64> = level.iter().enumerate().map(|(t, v)| v + 0.1 * t as f64).collect();
        assert_read_back("AAN", Some(false), &trend, EtsForm::Trend);
        let curve: Vec<f64> = wiggle
            .iter()
            .enumerate()
            .map(|(t, e)| 50.0 * (1.0 - (-(t as f64) / 80.0).exp()) + 0.3 * e)
            .collect();
        assert_read_back("AAN", Some(true), &curve, EtsForm::DampedTrend);
    }

    #[test]
    fn an_update_follows_the_recursion() {
        let y: Vec<f64> = noise(100, 5).iter().enumerate().map(|(t, e)| t as f64 + e).collect();
        let mut s = EtsState::fit(&y, 3).unwrap();
        let (before, slope) = (s.mean(1), s.slope);
        s.observe(before + 2.0);
        assert!((s.level - (before + 2.0 * s.alpha)).abs() < 1e-9);
        assert!((s.slope - (s.phi * slope + 2.0 * s.beta)).abs() < 1e-9);
        assert!(s.sigma(1) <= s.sigma(3));
    }

    #[test]
    fn too_short_is_reported() {
        assert_eq!(
            EtsState::fit(&[1.0, 2.0], 3),
            Err(FitError::TooShort { have: 2, need: 8 })
        );
    }
}
