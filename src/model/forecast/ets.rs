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

use augurs_core::Predict;
use augurs_ets::model::{ErrorComponent, Model, ModelType, SeasonalComponent, TrendComponent, Unfit};
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

impl EtsForm {
    /// AutoETS's candidates for `AZN`, in its order (an AICc tie goes to the first).
    pub const SEARCH: [EtsForm; 3] = [EtsForm::Level, EtsForm::DampedTrend, EtsForm::Trend];

    /// The form as an unfitted augurs model. `nmse` (the horizons of the AMSE criterion) is 1:
    /// the likelihood criterion never reads the other horizons, so the fit is the one AutoETS
    /// makes (with its default of 3) without computing two forecasts per sample it discards.
    fn unfit(self) -> Unfit {
        let trend = match self {
            EtsForm::Level => TrendComponent::None,
            EtsForm::Trend | EtsForm::DampedTrend => TrendComponent::Additive,
        };
        Unfit::new(ModelType {
            error: ErrorComponent::Additive,
            trend,
            season: SeasonalComponent::None,
        })
        .damped(self == EtsForm::DampedTrend)
        .nmse(1)
    }

    /// Parameters augurs counts for the form: its states and the smoothing parameters it
    /// optimises (`α`; `β`; `φ`).
    fn n_params(self) -> usize {
        match self {
            EtsForm::Level => 2,
            EtsForm::Trend => 4,
            EtsForm::DampedTrend => 5,
        }
    }
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

    fn check_len(y: &[f64]) -> Result<(), FitError> {
        if y.len() < Self::MIN_SAMPLES {
            return Err(FitError::TooShort {
                have: y.len(),
                need: Self::MIN_SAMPLES,
            });
        }
        Ok(())
    }

    /// AutoETS `AZN` on `y`, read back; `sigma_h` covers `horizon` steps. The search is
    /// AutoETS's own: each form of [`EtsForm::SEARCH`] is fitted by augurs (Nelder–Mead on the
    /// likelihood; the forms' runs advance together, with the results of one at a time), a
    /// form that fails or has a NaN AICc is skipped, and the lowest AICc wins. A test checks
    /// that it picks the model `AutoETS::new(1, "AZN")` picks.
    pub fn fit(y: &[f64], horizon: usize) -> Result<EtsState, FitError> {
        Self::fit_scored(y, horizon).map(|(s, _)| s)
    }

    /// [`fit`](Self::fit), with what the winning form's AICc is made of (`−2 log L` of `y`
    /// under it, its parameters), so that [`Criterion::aicc`] can count more parameters: those
    /// of a seasonal profile removed beforehand.
    pub fn fit_scored(y: &[f64], horizon: usize) -> Result<(EtsState, Criterion), FitError> {
        let [fit] = Self::fit_scored_together([y], horizon);
        fit
    }

    /// [`fit_scored`](Self::fit_scored) of each of `ys`, with the same results: every form of
    /// every series is fitted by one call of augurs' `Unfit::fit_together`, whose optimisers
    /// advance together and compute their candidates' likelihoods in shared passes.
    pub fn fit_scored_together<const N: usize>(
        ys: [&[f64]; N],
        horizon: usize,
    ) -> [Result<(EtsState, Criterion), FitError>; N] {
        let checked = ys.map(Self::check_len);
        let fits: Vec<(Unfit, &[f64])> = (ys.iter().zip(&checked))
            .filter(|(_, ok)| ok.is_ok())
            .flat_map(|(y, _)| EtsForm::SEARCH.map(|form| (form.unfit(), *y)))
            .collect();
        let mut models = Unfit::fit_together(fits).into_iter();
        let mut series = ys.into_iter();
        checked.map(|ok| {
            let y = series.next().expect("one check per series");
            ok?;
            let mut best: Option<Model> = None;
            for model in models.by_ref().take(EtsForm::SEARCH.len()) {
                let Ok(model) = model else { continue };
                let aicc = model.aicc();
                if !aicc.is_nan() && best.as_ref().is_none_or(|b| aicc < b.aicc()) {
                    best = Some(model);
                }
            }
            let model = best.ok_or_else(|| numerical("no model found"))?;
            let state = EtsState::from_model(&model, y, horizon)?;
            let k = state.form.n_params();
            let criterion = Criterion {
                minus_two_log_l: -2.0 * model.log_likelihood(),
                params: k,
                n: y.len(),
            };
            Ok((state, criterion))
        })
    }

    /// Read back a model augurs fitted on `y` (tests fix the form through `AutoETS`).
    pub fn from_model(model: &Model, y: &[f64], horizon: usize) -> Result<EtsState, FitError> {
        Self::check_len(y)?;
        let form = match (model.model_type().trend, model.damped()) {
            (TrendComponent::None, _) => EtsForm::Level,
            (TrendComponent::Additive, false) => EtsForm::Trend,
            (TrendComponent::Additive, true) => EtsForm::DampedTrend,
            (TrendComponent::Multiplicative, _) => return Err(numerical("multiplicative trend")),
        };
        let hh = horizon.max(3);
        let out = model.predict(hh, 0.95).map_err(numerical)?;
        let f = &out.point;
        let intervals = out.intervals.as_ref().ok_or_else(|| numerical("no intervals"))?;
        let sigma_h: Vec<f64> = (0..horizon.max(1))
            .map(|i| (intervals.upper[i] - intervals.lower[i]) / (2.0 * Z95))
            .collect();
        let fitted_in = model.predict_in_sample(None).map_err(numerical)?.point;
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

    /// Refit on `y` keeping this model's form and smoothing parameters (`α`, `β`, `φ`): only the
    /// states are re-estimated. The initial state is the one that minimises the sum of squared
    /// one-step errors (the likelihood augurs maximises, at fixed parameters); the errors are
    /// linear in it, so least squares finds it exactly. The recursions then run over `y` and
    /// `σ_h` follows from the residual variance by augurs' formulas ([`sigmas`]). O(`y.len()`).
    pub fn refit_kept(&self, y: &[f64], horizon: usize) -> Result<EtsState, FitError> {
        Self::check_len(y)?;
        let (alpha, beta, phi) = (self.alpha, self.beta, self.phi);
        // Three recursions at once: on `y` from the state (0, 0), and on zeros from (1, 0) and
        // from (0, 1). The errors from (l0, b0) on `y` are c + l0·u + b0·v.
        let (mut c, mut u, mut v) = ([0.0f64; 2], [1.0f64, 0.0], [0.0f64, 1.0]);
        let step = |s: &mut [f64; 2], y: f64| -> f64 {
            let yhat = s[0] + phi * s[1];
            let e = y - yhat;
            s[0] = yhat + alpha * e;
            s[1] = phi * s[1] + beta * e;
            e
        };
        // Least squares of −c on u, v.
        let mut ls = LeastSquares2::default();
        for &y in y {
            let (ec, eu, ev) = (step(&mut c, y), step(&mut u, 0.0), step(&mut v, 0.0));
            ls.add(eu, ev, -ec);
        }
        let both = (self.form != EtsForm::Level)
            .then(|| ls.solve(1e-12 * ls.s11 * ls.s22))
            .flatten();
        let (l0, b0) = both.unwrap_or((ls.s1r / ls.s11, 0.0));
        let mut state = [l0, b0];
        let sse: f64 = y.iter().map(|&y| step(&mut state, y).powi(2)).sum();
        let df = y.len() as f64 - self.form.n_params() as f64 - 2.0;
        let s = EtsState {
            form: self.form,
            alpha,
            beta,
            phi,
            level: state[0],
            slope: state[1],
            sigma_h: sigmas(self.form, alpha, beta, phi, sse / df, horizon.max(1)),
        };
        if ![s.level, s.slope].iter().chain(&s.sigma_h).all(|v| v.is_finite()) {
            return Err(numerical("non-finite states"));
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

/// What an information criterion needs of a fit: `−2 log L`, the parameters, the samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Criterion {
    pub minus_two_log_l: f64,
    pub params: usize,
    pub n: usize,
}

impl Criterion {
    /// AICc with `extra` parameters besides the fit's own (infinite when the samples cannot
    /// carry them).
    pub fn aicc(&self, extra: usize) -> f64 {
        self.minus_two_log_l + aicc_penalty(self.params + extra, self.n)
    }
}

/// AICc's penalty for `k` parameters on `n` samples: `2k + 2k(k+1)/(n−k−1)`.
fn aicc_penalty(k: usize, n: usize) -> f64 {
    if n <= k + 1 {
        return f64::INFINITY;
    }
    let k = k as f64;
    2.0 * k + 2.0 * k * (k + 1.0) / (n as f64 - k - 1.0)
}

/// `σ_h`, `h = 1..=horizon`, of an additive-error ETS form with residual variance `sigma2`:
/// the closed forms of Hyndman et al. (2008, class 1) as augurs computes its intervals.
pub fn sigmas(form: EtsForm, alpha: f64, beta: f64, phi: f64, sigma2: f64, horizon: usize) -> Vec<f64> {
    (1..=horizon)
        .map(|h| {
            let s = h as f64;
            let factor = match form {
                EtsForm::Level => 1.0 + (s - 1.0) * alpha * alpha,
                EtsForm::Trend => {
                    let exp1 = alpha * alpha + alpha * beta * s + beta * beta * s * (2.0 * s - 1.0) / 6.0;
                    1.0 + (s - 1.0) * exp1
                }
                EtsForm::DampedTrend => {
                    let phi_s = phi.powi(h as i32);
                    let (phi2, one_minus) = (phi * phi, (1.0 - phi).powi(2));
                    let exp2 = beta * phi * s / one_minus;
                    let exp3 = 2.0 * alpha * (1.0 - phi) + beta * phi;
                    let exp4 = beta * phi * (1.0 - phi_s) / (one_minus * (1.0 - phi2));
                    let exp5 = 2.0 * alpha * (1.0 - phi2) + beta * phi * (1.0 + 2.0 * phi - phi_s);
                    1.0 + alpha * alpha * (s - 1.0) + exp2 * exp3 - exp4 * exp5
                }
            };
            (factor * sigma2).sqrt()
        })
        .collect()
}

/// The normal equations of a least-squares fit of `r` on two regressors `x1`, `x2`.
#[derive(Default)]
struct LeastSquares2 {
    s11: f64,
    s12: f64,
    s22: f64,
    s1r: f64,
    s2r: f64,
}

impl LeastSquares2 {
    fn add(&mut self, x1: f64, x2: f64, r: f64) {
        self.s11 += x1 * x1;
        self.s12 += x1 * x2;
        self.s22 += x2 * x2;
        self.s1r += x1 * r;
        self.s2r += x2 * r;
    }

    /// The two coefficients, or `None` when the determinant is at most `min_det` in size.
    fn solve(&self, min_det: f64) -> Option<(f64, f64)> {
        let det = self.s11 * self.s22 - self.s12 * self.s12;
        if det.abs() <= min_det {
            return None;
        }
        let c1 = (self.s1r * self.s22 - self.s2r * self.s12) / det;
        let c2 = (self.s2r * self.s11 - self.s1r * self.s12) / det;
        Some((c1, c2))
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

/// Least squares of `r(t) = d(t+1) − φ·d(t)` on `c1·e(t+1) + c2·e(t)`; returns
/// `(α, β, residual sum of squares)` with `α = −c2/φ`, `β = (c1 − α)/φ`.
fn smoothing_solve(d: &[f64], e: &[f64], phi: f64) -> (f64, f64, f64) {
    let n = d.len().min(e.len());
    let mut ls = LeastSquares2::default();
    for t in 0..n.saturating_sub(1) {
        ls.add(e[t + 1], e[t], d[t + 1] - phi * d[t]);
    }
    let Some((c1, c2)) = ls.solve(1e-300) else {
        return (f64::NAN, f64::NAN, f64::INFINITY);
    };
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
    use augurs_core::Fit;
    use augurs_ets::AutoETS;

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
        let s = EtsState::from_model(auto.fit(y).unwrap().model(), y, 4).unwrap();
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

    /// Series of each shape the search meets: flat noise, a random walk, a trend, a curve.
    fn shapes() -> Vec<Vec<f64>> {
        let e = noise(400, 11);
        let walk: Vec<f64> = e
            .iter()
            .scan(5.0, |l, e| {
                *l += e;
                Some(*l)
            })
            .collect();
        vec![
            e.iter().map(|e| 10.0 + e).collect(),
            walk.clone(),
            walk.iter().enumerate().map(|(t, v)| v + 0.2 * t as f64).collect(),
            e.iter()
                .enumerate()
                .map(|(t, e)| 50.0 * (1.0 - (-(t as f64) / 90.0).exp()) + 0.3 * e)
                .collect(),
        ]
    }

    #[test]
    fn the_search_is_autoets() {
        let mut forms = Vec::new();
        for y in shapes() {
            let auto = AutoETS::new(1, "AZN").unwrap().fit(&y).unwrap();
            let theirs = EtsState::from_model(auto.model(), &y, 6).unwrap();
            let ours = EtsState::fit(&y, 6).unwrap();
            assert_eq!(ours, theirs);
            forms.push(ours.form);
        }
        // The shapes exercise more than one form.
        forms.dedup();
        assert!(forms.len() > 1, "{forms:?}");
    }

    #[test]
    fn sigmas_are_augurs_intervals() {
        let y = &shapes()[3];
        for (spec, damped) in [("AZN", None), ("AAN", Some(false)), ("AAN", Some(true))] {
            let mut auto = AutoETS::new(1, spec).unwrap();
            if let Some(d) = damped {
                auto = auto.damped(d).unwrap();
            }
            let fitted = auto.fit(y).unwrap();
            let s = EtsState::from_model(fitted.model(), y, 8).unwrap();
            let fit_in = fitted.predict_in_sample(None).unwrap().point;
            let sse: f64 = y.iter().zip(&fit_in).map(|(y, f)| (y - f).powi(2)).sum();
            let df = y.len() as f64 - s.form.n_params() as f64 - 2.0;
            let ours = sigmas(s.form, s.alpha, s.beta, s.phi, sse / df, 8);
            for (h, (a, b)) in ours.iter().zip(&s.sigma_h).enumerate() {
                assert!((a - b).abs() < 1e-6 * b, "{:?} h={}: {a} vs {b}", s.form, h + 1);
            }
        }
    }

    #[test]
    fn a_kept_refit_on_the_fitted_window_forecasts_as_the_fit() {
        for y in shapes() {
            let s = EtsState::fit(&y, 6).unwrap();
            let kept = s.refit_kept(&y, 6).unwrap();
            assert_eq!(
                (kept.form, kept.alpha, kept.beta, kept.phi),
                (s.form, s.alpha, s.beta, s.phi)
            );
            // augurs' initial state is a Nelder–Mead estimate, the kept refit's the exact least
            // squares one: the two agree to a small fraction of the error σ.
            for h in 1..=6 {
                let tolerance = 0.02 * s.sigma(1);
                assert!((kept.mean(h) - s.mean(h)).abs() < tolerance, "{:?} h={h}", s.form);
                assert!((kept.sigma(h) / s.sigma(h) - 1.0).abs() < 0.01, "{:?} h={h}", s.form);
            }
        }
    }

    #[test]
    fn a_kept_refit_recovers_an_exact_series() {
        // Samples that follow the model with no error: the least-squares initial state fits
        // them exactly, whatever α, β, φ, and the forecast continues them.
        let line: Vec<f64> = (0..40).map(|t| 7.0 - 0.25 * t as f64).collect();
        let trend = EtsState {
            form: EtsForm::Trend,
            alpha: 0.4,
            beta: 0.1,
            phi: 1.0,
            level: 0.0,
            slope: 0.0,
            sigma_h: Vec::new(),
        };
        let kept = trend.refit_kept(&line, 3).unwrap();
        for h in 1..=3 {
            assert!((kept.mean(h) - (7.0 - 0.25 * (39 + h) as f64)).abs() < 1e-9);
        }
        // A damped slope: y(t) = l + φ·b(t−1) with b(t) = φ·b(t−1), from l = 3, b = 2, φ = 0.9.
        let damped = EtsState {
            form: EtsForm::DampedTrend,
            phi: 0.9,
            ..trend.clone()
        };
        let (mut l, mut b, mut y) = (3.0, 2.0, Vec::new());
        for _ in 0..30 {
            b *= 0.9;
            l += b;
            y.push(l);
        }
        let kept = damped.refit_kept(&y, 2).unwrap();
        assert!(
            (kept.mean(1) - (l + 0.9 * b)).abs() < 1e-9,
            "{} vs {}",
            kept.mean(1),
            l + 0.9 * b
        );
        assert!((kept.mean(2) - (l + 0.9 * b + 0.81 * b)).abs() < 1e-9);
        assert!(EtsState::fit(&[1.0; 4], 3).is_err() && trend.refit_kept(&[1.0; 4], 3).is_err());
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
