//! Prediction intervals from residual variance by horizon, for models without an interval
//! formula of their own: `σ_h` is the root mean square of the `h`-step errors measured on the
//! training window, and the interval is `mean ± z·σ_h` (normal quantiles, [`Point::from_sigma`]).
//! A horizon without any error takes the last measured `σ` scaled by `√(h / h_last)`, the
//! random-walk growth.
//!
//! [`Point::from_sigma`]: super::Point::from_sigma

/// Sums of squared errors per horizon `1..=horizon`.
#[derive(Debug, Clone)]
pub struct HorizonErrors {
    sum_sq: Vec<f64>,
    count: Vec<usize>,
}

impl HorizonErrors {
    pub fn new(horizon: usize) -> HorizonErrors {
        HorizonErrors {
            sum_sq: vec![0.0; horizon],
            count: vec![0; horizon],
        }
    }

    /// Record one `h`-step error (`1 ≤ h ≤ horizon`; others and non-finite errors are ignored).
    pub fn push(&mut self, h: usize, error: f64) {
        if h >= 1 && h <= self.sum_sq.len() && error.is_finite() {
            self.sum_sq[h - 1] += error * error;
            self.count[h - 1] += 1;
        }
    }

    /// `σ_h` for `h = 1..=horizon` (NaN when no horizon has an error).
    pub fn sigmas(&self) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.sum_sq.len());
        let mut last: Option<(usize, f64)> = None;
        for (i, (&s, &c)) in self.sum_sq.iter().zip(&self.count).enumerate() {
            let h = i + 1;
            if c > 0 {
                let sigma = (s / c as f64).sqrt();
                last = Some((h, sigma));
                out.push(sigma);
            } else {
                out.push(last.map_or(f64::NAN, |(hl, s)| s * (h as f64 / hl as f64).sqrt()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_per_horizon_and_extrapolation() {
        let mut e = HorizonErrors::new(4);
        e.push(1, 3.0);
        e.push(1, -4.0);
        e.push(2, 2.0);
        e.push(5, 100.0);
        e.push(2, f64::NAN);
        let s = e.sigmas();
        assert!((s[0] - (12.5f64).sqrt()).abs() < 1e-12);
        assert_eq!(s[1], 2.0);
        assert!((s[2] - 2.0 * (1.5f64).sqrt()).abs() < 1e-12);
        assert!((s[3] - 2.0 * 2f64.sqrt()).abs() < 1e-12);
        assert!(HorizonErrors::new(2).sigmas().iter().all(|s| s.is_nan()));
    }
}
