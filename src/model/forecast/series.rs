//! Resampling irregular samples `(time, value)` to one value per `step`, with gaps filled by a
//! documented rule and flagged. Input: samples of one series in any order within a bin; output:
//! bins in time order, each emitted once, when it can no longer change.
//!
//! Rules:
//! - A sample at time `t` falls in bin `t.div_euclid(step)`; the bin's time is its start.
//! - A bin's value aggregates its samples ([`Aggregation`]): `mean`, `max`, or `last` (the
//!   sample with the greatest time; equal times keep the greater value). The samples of a bin
//!   are sorted by (time, value) before aggregating, so the value does not depend on the order
//!   in which they arrived: duplicated samples count as many times as they arrive.
//! - A bin closes when a sample of a later bin arrives, or when [`Resampler::advance`] passes
//!   its end (a watermark). A sample for a closed bin is rejected as late, never dropped
//!   silently; so is a non-finite value.
//! - Gaps (bins without samples between two closed bins) are filled by [`GapRule`]: a gap of at
//!   most `max_interpolate` bins is linearly interpolated between its neighbours
//!   ([`SampleFlag::Interpolated`]); a longer gap carries the last value forward
//!   ([`SampleFlag::Carried`]). An interpolated gap is emitted when the bin after it closes.
//!   Nothing is emitted before the first sample.

use serde::{Deserialize, Serialize};

/// How the samples of one bin become its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    Mean,
    Max,
    Last,
}

/// How bins without samples are filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapRule {
    /// Longest gap, in bins, filled by linear interpolation; longer gaps carry the last value.
    pub max_interpolate: usize,
    /// Longest gap, in bins, filled at all: after a longer one the series restarts (the bin
    /// after it is [`SampleFlag::Restarted`]), so a gap costs nothing for its length. A spec's
    /// forecast sets it to the training window: a longer gap would fill the whole window with
    /// carried values.
    #[serde(default = "unbounded")]
    pub max_fill: usize,
}

fn unbounded() -> usize {
    usize::MAX
}

impl Default for GapRule {
    fn default() -> Self {
        GapRule {
            max_interpolate: 3,
            max_fill: unbounded(),
        }
    }
}

/// Where a resampled value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleFlag {
    Observed,
    Interpolated,
    Carried,
    /// Observed, after a gap longer than [`GapRule::max_fill`]: the series starts again here.
    Restarted,
}

impl SampleFlag {
    /// Whether the value was made up by the gap rule (forecast errors are not counted on it).
    pub fn imputed(self) -> bool {
        matches!(self, SampleFlag::Interpolated | SampleFlag::Carried)
    }
}

/// One emitted bin.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    /// Start of the bin.
    pub time: i64,
    pub value: f64,
    pub flag: SampleFlag,
}

/// The largest magnitude a sample may have. The models square values and errors (likelihoods,
/// least squares, interval widths): beyond about 1e154 a square overflows to infinity, and the
/// fits fail with bounds of NaN. 1e150 leaves room for sums over a window.
pub const MAX_MAGNITUDE: f64 = 1e150;

/// Why a sample was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum RejectReason {
    #[error("non-finite value")]
    NonFinite,
    /// Larger in magnitude than [`MAX_MAGNITUDE`].
    #[error("out of range: beyond ±1e150, where the models' sums of squares overflow")]
    OutOfRange,
    /// The sample is before `watermark`: its bin was already emitted (or was skipped).
    #[error("late: before {watermark}, already emitted")]
    Late { watermark: i64 },
}

impl RejectReason {
    /// The dead-letter reason.
    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::NonFinite => "non_finite",
            RejectReason::OutOfRange => "out_of_range",
            RejectReason::Late { .. } => "late",
        }
    }
}

/// A whole series resampled at once, with the samples that were rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resampled {
    /// Time of the first bin (NaN-free; 0 when there is no bin).
    pub start: i64,
    pub step: i64,
    /// Each bin's time: consecutive steps, except after a gap that restarted the series.
    pub times: Vec<i64>,
    pub values: Vec<f64>,
    pub flags: Vec<SampleFlag>,
    /// Rejected samples `(time, value, reason)`, in input order.
    pub rejected: Vec<(i64, f64, RejectReason)>,
}

impl Resampled {
    /// Resample a batch: samples are taken in time order (ties in input order), so none is late.
    pub fn from_samples(samples: &[(i64, f64)], step: i64, agg: Aggregation, gap: GapRule) -> Resampled {
        let mut order: Vec<usize> = (0..samples.len()).collect();
        order.sort_by_key(|&i| samples[i].0);
        let mut r = Resampler::new(step, agg, gap);
        let mut bins = Vec::new();
        let mut rejected = Vec::new();
        for i in order {
            let (t, v) = samples[i];
            match r.push(t, v, &mut bins) {
                Ok(()) => {}
                Err(reason) => rejected.push((i, t, v, reason)),
            }
        }
        r.finish(&mut bins);
        rejected.sort_by_key(|r| r.0);
        Resampled {
            start: bins.first().map_or(0, |b| b.time),
            step,
            times: bins.iter().map(|b| b.time).collect(),
            values: bins.iter().map(|b| b.value).collect(),
            flags: bins.iter().map(|b| b.flag).collect(),
            rejected: rejected.into_iter().map(|(_, t, v, r)| (t, v, r)).collect(),
        }
    }

    /// Time of bin `i`.
    pub fn time(&self, i: usize) -> i64 {
        self.times[i]
    }
}

/// Streaming resampler of one series. State: the open bin's samples and the last closed bin.
/// Each sample costs O(log s) for `s` samples in its bin, plus O(1) per emitted bin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resampler {
    step: i64,
    agg: Aggregation,
    gap: GapRule,
    /// Index of the open bin and its samples.
    open: Option<(i64, Vec<(i64, f64)>)>,
    /// Index and value of the last closed bin.
    last: Option<(i64, f64)>,
}

impl Resampler {
    /// `step` must be positive (the spec validation guarantees it; a non-positive step is
    /// treated as 1).
    pub fn new(step: i64, agg: Aggregation, gap: GapRule) -> Resampler {
        Resampler {
            step: step.max(1),
            agg,
            gap,
            open: None,
            last: None,
        }
    }

    /// Take one sample; closed bins are appended to `out`.
    pub fn push(&mut self, time: i64, value: f64, out: &mut Vec<Bin>) -> Result<(), RejectReason> {
        if !value.is_finite() {
            return Err(RejectReason::NonFinite);
        }
        if value.abs() > MAX_MAGNITUDE {
            return Err(RejectReason::OutOfRange);
        }
        let bin = time.div_euclid(self.step);
        if let Some((closed, _)) = self.last {
            if bin <= closed {
                return Err(RejectReason::Late {
                    watermark: (closed + 1) * self.step,
                });
            }
        }
        match &mut self.open {
            Some((open, samples)) if *open == bin => samples.push((time, value)),
            Some((open, _)) if bin < *open => {
                // An earlier bin that never opened: the open bin's start acts as the watermark.
                return Err(RejectReason::Late {
                    watermark: *open * self.step,
                });
            }
            _ => {
                self.close_open(out);
                self.open = Some((bin, vec![(time, value)]));
            }
        }
        Ok(())
    }

    /// The watermark passed `time`: close the open bin if it ends at or before `time`.
    pub fn advance(&mut self, time: i64, out: &mut Vec<Bin>) {
        if let Some((open, _)) = &self.open {
            if (open + 1).saturating_mul(self.step) <= time {
                self.close_open(out);
            }
        }
    }

    /// End of input: close the open bin.
    pub fn finish(&mut self, out: &mut Vec<Bin>) {
        self.close_open(out);
    }

    fn close_open(&mut self, out: &mut Vec<Bin>) {
        let Some((bin, mut samples)) = self.open.take() else {
            return;
        };
        samples.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let value = match self.agg {
            Aggregation::Mean => samples.iter().map(|s| s.1).sum::<f64>() / samples.len() as f64,
            Aggregation::Max => samples.iter().map(|s| s.1).fold(f64::NEG_INFINITY, f64::max),
            Aggregation::Last => samples.last().map_or(f64::NAN, |s| s.1),
        };
        let mut flag = SampleFlag::Observed;
        if let Some((prev, prev_value)) = self.last {
            let gap = usize::try_from(bin - prev - 1).unwrap_or(usize::MAX);
            if gap > self.gap.max_fill {
                flag = SampleFlag::Restarted;
            }
            let gap = if flag == SampleFlag::Restarted { 0 } else { gap };
            let interpolate = gap <= self.gap.max_interpolate;
            for j in 1..=gap {
                let (v, flag) = if interpolate {
                    let w = j as f64 / (gap + 1) as f64;
                    (prev_value + (value - prev_value) * w, SampleFlag::Interpolated)
                } else {
                    (prev_value, SampleFlag::Carried)
                };
                out.push(Bin {
                    time: (prev + j as i64) * self.step,
                    value: v,
                    flag,
                });
            }
        }
        out.push(Bin {
            time: bin * self.step,
            value,
            flag,
        });
        self.last = Some((bin, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(r: &Resampled) -> Vec<(i64, f64, SampleFlag)> {
        (0..r.values.len())
            .map(|i| (r.time(i), r.values[i], r.flags[i]))
            .collect()
    }

    use SampleFlag::{Carried as C, Interpolated as I, Observed as O};

    #[test]
    fn aggregations_per_bin() {
        // step 10: bins [0,10) [10,20); samples out of order and duplicated.
        let s = [(12, 4.0), (3, 1.0), (7, 5.0), (3, 1.0), (15, 2.0)];
        let g = GapRule::default();
        let mean = Resampled::from_samples(&s, 10, Aggregation::Mean, g);
        assert_eq!(table(&mean), vec![(0, 7.0 / 3.0, O), (10, 3.0, O)]);
        let max = Resampled::from_samples(&s, 10, Aggregation::Max, g);
        assert_eq!(table(&max), vec![(0, 5.0, O), (10, 4.0, O)]);
        let last = Resampled::from_samples(&s, 10, Aggregation::Last, g);
        assert_eq!(table(&last), vec![(0, 5.0, O), (10, 2.0, O)]);
    }

    #[test]
    fn short_gaps_interpolate_long_gaps_carry() {
        let g = GapRule {
            max_interpolate: 2,
            ..GapRule::default()
        };
        // bins 0, 3 (gap of 2 → interpolated), 7 (gap of 3 → carried).
        let s = [(0, 1.0), (30, 4.0), (70, 0.0)];
        let r = Resampled::from_samples(&s, 10, Aggregation::Mean, g);
        assert_eq!(
            table(&r),
            vec![
                (0, 1.0, O),
                (10, 2.0, I),
                (20, 3.0, I),
                (30, 4.0, O),
                (40, 4.0, C),
                (50, 4.0, C),
                (60, 4.0, C),
                (70, 0.0, O)
            ]
        );
    }

    /// A gap longer than `max_fill` is not filled, however long: the bin after it restarts the
    /// series. (Filling a gap of decades bin by bin took minutes for one bad time.)
    #[test]
    fn gaps_longer_than_max_fill_restart_the_series() {
        let g = GapRule {
            max_interpolate: 1,
            max_fill: 3,
        };
        let s = [(0, 1.0), (40, 5.0), (90, 6.0), (i64::MAX / 2, 7.0)];
        let r = Resampled::from_samples(&s, 10, Aggregation::Last, g);
        assert_eq!(
            table(&r),
            vec![
                (0, 1.0, SampleFlag::Observed),
                (10, 1.0, SampleFlag::Carried),
                (20, 1.0, SampleFlag::Carried),
                (30, 1.0, SampleFlag::Carried),
                (40, 5.0, SampleFlag::Observed),
                (90, 6.0, SampleFlag::Restarted),
                (i64::MAX / 2 / 10 * 10, 7.0, SampleFlag::Restarted),
            ]
        );
        assert!(!SampleFlag::Restarted.imputed());
    }

    #[test]
    fn negative_times_and_rejections() {
        let s = [(-5, 2.0), (5, f64::NAN), (6, 4.0)];
        let r = Resampled::from_samples(&s, 10, Aggregation::Mean, GapRule::default());
        assert_eq!(table(&r), vec![(-10, 2.0, O), (0, 4.0, O)]);
        assert_eq!(r.rejected.len(), 1);
        assert_eq!(r.rejected[0].2, RejectReason::NonFinite);
        let mut r = Resampler::new(10, Aggregation::Mean, GapRule::default());
        let mut out = Vec::new();
        assert_eq!(r.push(0, 1e150, &mut out), Ok(()));
        assert_eq!(r.push(1, -1e151, &mut out), Err(RejectReason::OutOfRange));
        assert_eq!(RejectReason::OutOfRange.code(), "out_of_range");
    }

    #[test]
    fn streaming_rejects_late_samples_and_closes_on_watermark() {
        let mut r = Resampler::new(10, Aggregation::Last, GapRule::default());
        let mut out = Vec::new();
        r.push(11, 1.0, &mut out).unwrap();
        r.push(25, 2.0, &mut out).unwrap();
        assert_eq!(
            out,
            vec![Bin {
                time: 10,
                value: 1.0,
                flag: O
            }]
        );
        assert_eq!(r.push(19, 9.0, &mut out), Err(RejectReason::Late { watermark: 20 }));
        r.advance(29, &mut out);
        assert_eq!(out.len(), 1, "bin [20,30) is still open at 29");
        r.advance(30, &mut out);
        assert_eq!(
            out[1],
            Bin {
                time: 20,
                value: 2.0,
                flag: O
            }
        );
        assert_eq!(r.push(28, 9.0, &mut out), Err(RejectReason::Late { watermark: 30 }));
        assert!(r.push(31, f64::INFINITY, &mut out).is_err());
    }

    #[test]
    fn mean_does_not_depend_on_arrival_order() {
        let vals = [0.1, 0.7, 1e16, -1e16, 0.3];
        let mut a = Resampler::new(100, Aggregation::Mean, GapRule::default());
        let mut b = a.clone();
        let (mut oa, mut ob) = (Vec::new(), Vec::new());
        for (i, v) in vals.iter().enumerate() {
            a.push(i as i64, *v, &mut oa).unwrap();
        }
        for (i, v) in vals.iter().enumerate().rev() {
            b.push(i as i64, *v, &mut ob).unwrap();
        }
        a.finish(&mut oa);
        b.finish(&mut ob);
        assert_eq!(oa[0].value.to_bits(), ob[0].value.to_bits());
    }
}
