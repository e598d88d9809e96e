//! The fixed-size rings a series forecaster keeps per member: the forecasts still waiting for
//! their targets, and the recent absolute errors per horizon with their exact sums. Each is one
//! flat allocation, made at the first push and reused from then on, so an update allocates
//! nothing and touches few cache lines (a forecaster is one of many, rarely in cache).

use serde::{Deserialize, Serialize};

use crate::model::forecast::Point;

const FRACTION: f64 = 4_294_967_296.0; // 2^32
const MAX_ERROR: f64 = 1e20;

/// An absolute error in fixed point (2^-32 resolution), capped at 1e20.
pub(crate) fn fixed(abs_error: f64) -> i128 {
    crate::model::round_to_i128(abs_error.min(MAX_ERROR) * FRACTION)
}

/// `v` as the nearest `f64` (through `i64` when it fits: the same rounding).
fn to_f64(v: i128) -> f64 {
    match i64::try_from(v) {
        Ok(v) => v as f64,
        Err(_) => v as f64,
    }
}

/// Ask the CPU to bring the cache lines of `values` in, so that reading them later does not
/// wait on memory: a hint, with no effect on results (a no-op off x86-64). A forecaster's
/// rings are rarely in cache when its sample comes, and asking for all of them at once lets
/// the loads overlap instead of waiting one after the other.
#[inline]
fn prefetch<T>(values: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let bytes = std::mem::size_of_val(values);
        let start = values.as_ptr().cast::<i8>();
        for offset in (0..bytes).step_by(64) {
            // SAFETY: a prefetch only hints the cache: it reads nothing and cannot fault, and
            // SSE, which it needs, is part of x86-64.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = values;
}

/// The absolute errors of the last `cap` forecasts at each horizon `1..=horizon`, with the
/// exact sum of each ring in fixed point, so a running mean equals a recomputation.
///
/// The rings are interleaved, one row of `horizon` errors per slot, and ring `i` (horizon
/// `i + 1`) starts at row `i`: its `k`-th error goes to row `(k + i) % cap`. A sample realizes
/// the horizon-`h` forecast of the sample `h` before it, so once every horizon has its errors,
/// ring `i` has had `i` fewer than ring 0 and a sample's errors all land in one row: an update
/// touches two cache lines per member, not one per horizon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ErrorRings {
    horizon: usize,
    cap: usize,
    /// Ring `i`'s error in row `r` is `rows[r·horizon + i]`. Empty until the first push.
    rows: Vec<f64>,
    /// The row of ring `i`'s next error: when the ring is full, its oldest.
    next_row: Vec<u32>,
    len: Vec<u32>,
    sum: Vec<i128>,
}

impl ErrorRings {
    pub(crate) fn new(horizon: usize, cap: usize) -> ErrorRings {
        ErrorRings {
            horizon,
            cap,
            rows: Vec::new(),
            next_row: (0..horizon).map(|i| (i % cap) as u32).collect(),
            len: vec![0; horizon],
            sum: vec![0; horizon],
        }
    }

    /// Record an `h`-step absolute error; beyond `cap` errors the oldest leaves.
    pub(crate) fn push(&mut self, h: usize, abs_error: f64) {
        if self.rows.is_empty() {
            self.rows = vec![0.0; self.horizon * self.cap];
        }
        let i = h - 1;
        let row = self.next_row[i] as usize;
        let cell = &mut self.rows[row * self.horizon + i];
        let value = abs_error.min(MAX_ERROR);
        if (self.len[i] as usize) < self.cap {
            self.len[i] += 1;
        } else {
            self.sum[i] -= fixed(*cell);
        }
        *cell = value;
        self.next_row[i] = ((row + 1) % self.cap) as u32;
        self.sum[i] += fixed(value);
    }

    /// [`prefetch`] the row the next errors go to (the row of every horizon's, once all have
    /// their errors).
    pub(crate) fn prefetch_next(&self) {
        if let Some(&row) = self.next_row.first().filter(|_| !self.rows.is_empty()) {
            let row = row as usize * self.horizon;
            prefetch(&self.rows[row..row + self.horizon]);
        }
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

/// The forecasts issued after each of the last `horizon` samples (their origins), each of
/// `horizon` points, or none when the member could not forecast.
///
/// They are kept by target, not by origin: origin `k`'s `h`-step point is in row
/// `(k + h − 1) % horizon`, column `h − 1`. So the points that target the next sample, one per
/// held origin, are one row, read in a sweep of adjacent cache lines when the sample arrives;
/// issuing writes a diagonal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Pending {
    horizon: usize,
    /// The points by target row. Empty until the first present origin.
    by_target: Vec<Point>,
    /// Whether origin `k` forecast, at `k % horizon`.
    present: Vec<bool>,
    /// Origins pushed so far.
    origins: u64,
    len: usize,
}

impl Pending {
    pub(crate) fn new(horizon: usize) -> Pending {
        Pending {
            horizon,
            by_target: Vec::new(),
            present: vec![false; horizon],
            origins: 0,
            len: 0,
        }
    }

    /// The points that target the sample after the newest origin, oldest origin first, each
    /// with its horizon (`len`, `len − 1`, …, 1); origins that did not forecast are skipped.
    pub(crate) fn due(&self) -> impl Iterator<Item = (usize, &Point)> + '_ {
        let h_max = self.horizon as u64;
        let row = (self.origins + h_max - 1) % h_max;
        (1..=self.len).rev().filter_map(move |h| {
            let origin = (self.origins - h as u64) % h_max;
            self.present[origin as usize].then(|| (h, &self.by_target[row as usize * self.horizon + h - 1]))
        })
    }

    /// [`prefetch`] the row of points [`due`](Self::due) reads.
    pub(crate) fn prefetch_due(&self) {
        if !self.by_target.is_empty() {
            let row = ((self.origins + self.horizon as u64 - 1) % self.horizon as u64) as usize * self.horizon;
            prefetch(&self.by_target[row..row + self.horizon]);
        }
    }

    /// Add the newest origin; with `horizon` held, the oldest leaves (its points have all met
    /// their targets, and the new origin's take their places).
    pub(crate) fn push(&mut self, forecast: Option<&[Point]>) {
        let h_max = self.horizon;
        let k = self.origins;
        self.origins += 1;
        self.len = (self.len + 1).min(h_max);
        self.present[(k % h_max as u64) as usize] = forecast.is_some();
        if let Some(f) = forecast {
            if self.by_target.is_empty() {
                self.by_target = vec![Point::from_sigma(f64::NAN, f64::NAN); h_max * h_max];
            }
            let first = (k % h_max as u64) as usize;
            for (j, point) in f[..h_max].iter().enumerate() {
                let row = (first + j) % h_max;
                self.by_target[row * h_max + j] = *point;
            }
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
    fn pending_points_come_due_oldest_origin_first() {
        let p = |v: f64| vec![Point::from_sigma(v, 1.0), Point::from_sigma(v + 0.5, 1.0)];
        let due = |ring: &Pending| ring.due().map(|(h, p)| (h, p.mean)).collect::<Vec<_>>();
        let mut ring = Pending::new(2);
        assert_eq!(due(&ring), vec![]);
        ring.push(None);
        assert_eq!(due(&ring), vec![]);
        ring.push(Some(&p(1.0)));
        assert_eq!(due(&ring), vec![(1, 1.0)]);
        ring.push(Some(&p(2.0)));
        assert_eq!(due(&ring), vec![(2, 1.5), (1, 2.0)]);
        ring.push(None);
        assert_eq!(due(&ring), vec![(2, 2.5)]);
        ring.push(Some(&p(3.0)));
        assert_eq!(due(&ring), vec![(1, 3.0)]);
    }

    /// Random pushes against a plain list of origins: the same points come due, in the same
    /// order, and the error rings hold the same last `cap` errors per horizon.
    #[test]
    fn rotated_rings_match_plain_lists() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..50 {
            let (horizon, cap) = (rng.random_range(1..6), rng.random_range(1..8));
            let (mut pending, mut errors) = (Pending::new(horizon), ErrorRings::new(horizon, cap));
            let mut origins: Vec<Option<Vec<Point>>> = Vec::new();
            let mut lists: Vec<Vec<f64>> = vec![Vec::new(); horizon];
            for step in 0..60 {
                let expected: Vec<(usize, f64)> = origins
                    .iter()
                    .rev()
                    .take(horizon)
                    .enumerate()
                    .rev()
                    .filter_map(|(back, f)| f.as_ref().map(|f| (back + 1, f[back].mean)))
                    .collect();
                let got: Vec<(usize, f64)> = pending.due().map(|(h, p)| (h, p.mean)).collect();
                assert_eq!(got, expected);
                for (h, _) in &got {
                    let e = rng.random_range(0.0..100.0);
                    errors.push(*h, e);
                    lists[h - 1].push(e);
                }
                for h in 1..=horizon {
                    let list = &lists[h - 1][lists[h - 1].len().saturating_sub(cap)..];
                    assert_eq!(errors.len(h), list.len());
                    let sum: i128 = list.iter().map(|&e| fixed(e)).sum();
                    let mean = to_f64(sum) / FRACTION / list.len() as f64;
                    assert_eq!(errors.mean(h).to_bits(), mean.to_bits());
                }
                let f = (rng.random_range(0..4) > 0).then(|| {
                    (0..horizon)
                        .map(|j| Point::from_sigma(step as f64 + j as f64 / 10.0, 1.0))
                        .collect()
                });
                pending.push(f.as_deref());
                origins.push(f);
            }
        }
    }
}
