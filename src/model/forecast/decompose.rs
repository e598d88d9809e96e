//! Seasonal profiles from an MSTL decomposition (`augurs-mstl`), and seasonal period detection
//! (`augurs-seasons`).
//!
//! At a refit, MSTL splits the training window into one seasonal component per period plus
//! trend and remainder. Like augurs' MSTL forecaster, the seasonal forecast of each period is its
//! component's last cycle, repeated; the profile is kept fixed until the next refit and a phase
//! per period advances with each sample (O(number of periods)). The seasonally adjusted series
//! is `y − Σ seasonal`, which the ETS model then smooths.
//!
//! MSTL works in `f32` (its `stlrs` core); profiles are widened back to `f64`, so a pure
//! seasonal pattern is recovered to about 1e-6 relative precision.

use augurs_core::Fit;
use augurs_mstl::MSTLModel;
use augurs_seasons::{Detector, PeriodogramDetector};
use serde::{Deserialize, Serialize};

use super::FitError;

/// Fixed seasonal profiles, one per period, with the phase of the next sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seasonal {
    periods: Vec<usize>,
    profiles: Vec<Vec<f64>>,
    /// Index, in each profile, of the next sample's seasonal value.
    phase: Vec<usize>,
}

impl Seasonal {
    /// Samples MSTL needs: two full cycles of the longest period.
    pub fn min_samples(periods: &[usize]) -> usize {
        periods.iter().max().map_or(0, |p| 2 * p)
    }

    /// Decompose `y` with `periods` (each at least 2, at most `y.len() / 2`). Returns the
    /// profiles, positioned after the last sample, and the seasonally adjusted window.
    pub fn fit(y: &[f64], periods: &[usize]) -> Result<(Seasonal, Vec<f64>), FitError> {
        if periods.is_empty() {
            return Err(FitError::NoPeriod);
        }
        let need = Self::min_samples(periods);
        if y.len() < need {
            return Err(FitError::TooShort { have: y.len(), need });
        }
        let fitted = MSTLModel::naive(periods.to_vec())
            .fit(y)
            .map_err(|e| FitError::Numerical {
                model: "mstl".into(),
                message: e.to_string(),
            })?;
        let components = fitted.fit().seasonal();
        let mut adjusted = y.to_vec();
        let mut profiles = Vec::with_capacity(periods.len());
        for (p, component) in periods.iter().zip(components) {
            for (a, s) in adjusted.iter_mut().zip(component) {
                *a -= *s as f64;
            }
            profiles.push(component[component.len() - p..].iter().map(|&s| s as f64).collect());
        }
        let seasonal = Seasonal {
            periods: periods.to_vec(),
            profiles,
            phase: vec![0; periods.len()],
        };
        Ok((seasonal, adjusted))
    }

    pub fn periods(&self) -> &[usize] {
        &self.periods
    }

    /// The seasonal value `h ≥ 1` samples ahead of the last one.
    pub fn ahead(&self, h: usize) -> f64 {
        self.profiles
            .iter()
            .zip(&self.phase)
            .map(|(profile, &phase)| profile[(phase + h - 1) % profile.len()])
            .sum()
    }

    /// One sample passed: advance the phases.
    pub fn advance(&mut self) {
        for (phase, profile) in self.phase.iter_mut().zip(&self.profiles) {
            *phase = (*phase + 1) % profile.len();
        }
    }
}

/// The seasonal periods of `y`, strongest first: periodogram peaks (augurs' default detector),
/// each refined to the lag of highest autocorrelation within ±10% (the periodogram's frequency
/// grid is coarse: it reads 25 for a period of 24), with at least two cycles in `y`, skipping a
/// period within 10% of a stronger one, at most `max_periods` of them.
pub fn detect_periods(y: &[f64], max_periods: usize) -> Vec<usize> {
    if y.len() < 16 {
        return Vec::new();
    }
    let detected = PeriodogramDetector::default().detect(y);
    let mut periods: Vec<usize> = Vec::new();
    // `detect` lists peaks in increasing power.
    let mean = y.iter().sum::<f64>() / y.len() as f64;
    let autocovariance = |lag: usize| -> f64 {
        (lag..y.len()).map(|t| (y[t] - mean) * (y[t - lag] - mean)).sum::<f64>() / (y.len() - lag) as f64
    };
    for p in detected.into_iter().rev().map(|p| p as usize) {
        if periods.len() == max_periods {
            break;
        }
        let spread = (p / 10).max(1);
        let mut best = (f64::NEG_INFINITY, p);
        for q in p.saturating_sub(spread).max(2)..=(p + spread).min(y.len() / 2) {
            let r = autocovariance(q);
            if r > best.0 {
                best = (r, q);
            }
        }
        let p = best.1;
        let near = periods.iter().any(|&q| p.abs_diff(q) * 10 <= q);
        if p >= 2 && 2 * p <= y.len() && !near {
            periods.push(p);
        }
    }
    periods
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pure_seasonal_pattern_is_recovered() {
        let pattern = [3.0, -1.0, 0.5, -2.5];
        let y: Vec<f64> = (0..40).map(|t| 10.0 + pattern[t % 4]).collect();
        let (mut s, adjusted) = Seasonal::fit(&y, &[4]).unwrap();
        for a in &adjusted {
            assert!((a - 10.0).abs() < 1e-4, "adjusted {a}");
        }
        // The next sample is t = 40, phase 0 of the pattern.
        for h in 1..=8 {
            assert!((s.ahead(h) - pattern[(40 + h - 1) % 4]).abs() < 1e-4);
        }
        s.advance();
        assert!((s.ahead(1) - pattern[1]).abs() < 1e-4);
    }

    #[test]
    fn two_periods_add_up() {
        let y: Vec<f64> = (0..200)
            .map(|t| {
                let t = t as f64;
                (2.0 * std::f64::consts::PI * t / 5.0).sin() + 2.0 * (2.0 * std::f64::consts::PI * t / 20.0).cos()
            })
            .collect();
        let (s, adjusted) = Seasonal::fit(&y, &[5, 20]).unwrap();
        let spread = adjusted.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        assert!(spread < 0.1, "adjusted series should be nearly flat: {spread}");
        let next =
            |t: f64| (2.0 * std::f64::consts::PI * t / 5.0).sin() + 2.0 * (2.0 * std::f64::consts::PI * t / 20.0).cos();
        for h in 1..=20 {
            assert!((s.ahead(h) - next((199 + h) as f64)).abs() < 0.1, "h={h}");
        }
    }

    #[test]
    fn too_short_and_detection() {
        assert_eq!(
            Seasonal::fit(&[1.0; 10], &[6]).unwrap_err(),
            FitError::TooShort { have: 10, need: 12 }
        );
        let y: Vec<f64> = (0..480)
            .map(|t| (2.0 * std::f64::consts::PI * t as f64 / 24.0).sin() + 0.01 * (t % 7) as f64)
            .collect();
        assert_eq!(detect_periods(&y, 2).first(), Some(&24));
        assert!(detect_periods(&[1.0; 10], 2).is_empty());
    }
}
