//! The fixed-size rings a series forecaster keeps per member: the forecasts still waiting for
//! their targets, and the recent absolute errors per horizon with their exact sums. Each is one
//! flat allocation, made at the first push and reused from then on, so an update allocates
//! nothing and touches few cache lines (a forecaster is one of many, rarely in cache).

use serde::{Deserialize, Serialize};

use crate::model::forecast::Point;

const FRACTION: f64 = 4_294_967_296.0; // 2^32
const MAX_ERROR: f64 = 1e20;

/// An absolute error in fixed point (2^-32 resolution), capped at 1e20. Errors below 2^31
/// (all but absurd ones) convert through `i64`, a machine instruction, with the same result.
pub(crate) fn fixed(abs_error: f64) -> i128 {
    let scaled = (abs_error.min(MAX_ERROR) * FRACTION).round();
    if scaled.abs() < 9.0e18 {
        scaled as i64 as i128
    } else {
        scaled as i128
    }
}

/// `v` as the nearest `f64` (through `i64` when it fits: the same rounding).
fn to_f64(v: i128) -> f64 {
    match i64::try_from(v) {
        Ok(v) => v as f64,
        Err(_) => v as f64,
    }
}

/// The absolute errors of the last `cap` forecasts at each horizon `1..=horizon`, with the
/// exact sum of each ring in fixed point, so a running mean equals a recomputation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ErrorRings {
    horizon: usize,
    cap: usize,
    /// Ring `i` (horizon `i + 1`) is `values[i·cap..(i + 1)·cap]`, its oldest value at
    /// `start[i]`. Empty until the first push.
    values: Vec<f64>,
    start: Vec<u32>,
    len: Vec<u32>,
    sum: Vec<i128>,
}

impl ErrorRings {
    pub(crate) fn new(horizon: usize, cap: usize) -> ErrorRings {
        ErrorRings {
            horizon,
            cap,
            values: Vec::new(),
            start: vec![0; horizon],
            len: vec![0; horizon],
            sum: vec![0; horizon],
        }
    }

    /// Record an `h`-step absolute error; beyond `cap` errors the oldest leaves.
    pub(crate) fn push(&mut self, h: usize, abs_error: f64) {
        if self.values.is_empty() {
            self.values = vec![0.0; self.horizon * self.cap];
        }
        let (i, cap) = (h - 1, self.cap);
        let ring = &mut self.values[i * cap..(i + 1) * cap];
        let (start, len) = (self.start[i] as usize, self.len[i] as usize);
        let value = abs_error.min(MAX_ERROR);
        if len < cap {
            ring[(start + len) % cap] = value;
            self.len[i] += 1;
        } else {
            self.sum[i] -= fixed(ring[start]);
            ring[start] = value;
            self.start[i] = ((start + 1) % cap) as u32;
        }
        self.sum[i] += fixed(value);
    }

    /// Errors held at horizon `h`.
    pub(crate) fn len(&self, h: usize) -> usize {
        self.len[h - 1] as usize
    }

    /// Their mean (NaN when there is none).
    pub(crate) fn mean(&self, h: usize) -> f64 {
        to_f64(self.sum[h - 1]) / FRACTION / self.len[h - 1] as f64
    }
}

/// The forecasts issued after each of the last `horizon` samples, oldest first: a ring of
/// `horizon` rows of `horizon` points; a row is absent when its member could not forecast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Pending {
    horizon: usize,
    /// Empty until the first present row.
    points: Vec<Point>,
    present: Vec<bool>,
    start: usize,
    len: usize,
}

impl Pending {
    pub(crate) fn new(horizon: usize) -> Pending {
        Pending {
            horizon,
            points: Vec::new(),
            present: vec![false; horizon],
            start: 0,
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The `i`-th row, oldest first.
    pub(crate) fn get(&self, i: usize) -> Option<&[Point]> {
        let row = (self.start + i) % self.horizon;
        self.present[row].then(|| &self.points[row * self.horizon..(row + 1) * self.horizon])
    }

    /// Add the newest row; with `horizon` rows held, the oldest leaves.
    pub(crate) fn push(&mut self, forecast: Option<&[Point]>) {
        let h = self.horizon;
        let row = (self.start + self.len) % h;
        if self.len == h {
            self.start = (self.start + 1) % h;
        } else {
            self.len += 1;
        }
        self.present[row] = forecast.is_some();
        if let Some(f) = forecast {
            if self.points.is_empty() {
                self.points = vec![Point::from_sigma(f64::NAN, f64::NAN); h * h];
            }
            self.points[row * h..(row + 1) * h].copy_from_slice(&f[..h]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_rings_keep_the_last_cap_errors_exactly() {
        let mut r = ErrorRings::new(2, 3);
        assert_eq!(r.len(1), 0);
        assert!(r.mean(1).is_nan());
        for (i, e) in [1.0, 2.0, 0.1, 4.0, 1e30].iter().enumerate() {
            r.push(1, *e);
            if i < 2 {
                r.push(2, 0.5);
            }
        }
        // Horizon 1 holds 0.1, 4, 1e20 (capped); horizon 2 holds 0.5, 0.5.
        assert_eq!(r.len(1), 3);
        let expected = (fixed(0.1) + fixed(4.0) + fixed(1e20)) as f64 / FRACTION / 3.0;
        assert_eq!(r.mean(1), expected);
        assert_eq!((r.len(2), r.mean(2)), (2, 0.5));
    }

    #[test]
    fn fast_conversions_equal_the_i128_ones() {
        let mut v = 1e-12;
        while v < 1e21 {
            for x in [v, v * 1.000_000_1, v + 0.5 / FRACTION] {
                let exact = (x.min(MAX_ERROR) * FRACTION).round() as i128;
                assert_eq!(fixed(x), exact, "{x}");
                assert_eq!(to_f64(exact).to_bits(), (exact as f64).to_bits(), "{exact}");
                assert_eq!(to_f64(exact * 7 + 3).to_bits(), ((exact * 7 + 3) as f64).to_bits());
            }
            v *= 1.37;
        }
    }

    #[test]
    fn pending_rows_rotate_oldest_first() {
        let p = |v: f64| vec![Point::from_sigma(v, 1.0); 2];
        let mut ring = Pending::new(2);
        ring.push(None);
        ring.push(Some(&p(1.0)));
        assert_eq!((ring.len(), ring.get(0)), (2, None));
        ring.push(Some(&p(2.0)));
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.get(0).unwrap()[0].mean, 1.0);
        assert_eq!(ring.get(1).unwrap()[1].mean, 2.0);
        ring.push(None);
        assert_eq!((ring.get(0).unwrap()[0].mean, ring.get(1)), (2.0, None));
    }
}
