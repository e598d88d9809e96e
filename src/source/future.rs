//! Far-future event times in replay (`max_future`, dead-letter reason `future_time`).
//!
//! One event at `9999-12-31` would move a source's watermark past every honest event after
//! it, making them all `late`. `sluice serve` compares event times with the wall clock when a
//! line arrives; a replay must not (its outputs would depend on when it runs), so it compares
//! each event with the events around it in log order:
//!
//! > An event is `future_time` when its time is more than `max_future` ahead of both the largest
//! > time admitted before it and the time of the next event in the log.
//!
//! So an isolated spike is rejected, while a real jump in time (a gap in the log, after which
//! the events go on from the new time) is admitted at its first event; the first event of a
//! source is judged by the next one alone, and the last one is admitted (nothing follows that
//! it could make late). Two or more spikes in a row look like a jump and are admitted.
//!
//! The decision needs every time in log order, so it is made when the splits are discovered
//! (on every worker alike), and a split carries the positions of its future events; its
//! `max_time` counts only admitted times. Decisions therefore do not depend on the number of
//! workers or on batching.

use super::{Split, Unit};

/// Decides, time by time in log order, which events are too far ahead.
pub struct FutureFilter {
    bound: i64,
    /// Largest admitted time so far.
    max: Option<i64>,
    /// A time beyond the bound, waiting for the next one: split index, position, time.
    pending: Option<(usize, u64, i64)>,
}

impl FutureFilter {
    pub fn new(max_future_ms: u64) -> FutureFilter {
        FutureFilter {
            bound: i64::try_from(max_future_ms).unwrap_or(i64::MAX),
            max: None,
            pending: None,
        }
    }

    /// Whether a split whose times lie in `min..=max` can be admitted whole without looking at
    /// each time: nothing is pending, and no time in it can be beyond the bound.
    pub fn admits_whole(&self, min: i64, max: i64) -> bool {
        self.pending.is_none()
            && min >= 0
            && match self.max {
                Some(m) => max <= m.saturating_add(self.bound),
                None => max.saturating_sub(min) <= self.bound,
            }
    }

    /// Admits split `s` whole (see [`FutureFilter::admits_whole`]) with its largest time.
    pub fn admit_whole(&mut self, splits: &mut [Split], s: usize, max: i64) {
        self.admit(splits, s, max);
    }

    /// The next valid time in log order: split `s`, position `pos` (as the split's reader
    /// numbers its records). Negative times are `bad_time` and skipped by the caller.
    pub fn push(&mut self, splits: &mut [Split], s: usize, pos: u64, time: i64) {
        if let Some((ps, ppos, x)) = self.pending.take() {
            if x > time.saturating_add(self.bound) {
                splits[ps].future.push(ppos);
            } else {
                self.admit(splits, ps, x);
            }
        }
        if self.max.is_none_or(|m| time > m.saturating_add(self.bound)) {
            self.pending = Some((s, pos, time));
        } else {
            self.admit(splits, s, time);
        }
    }

    /// The end of the log: a pending time is admitted.
    pub fn finish(&mut self, splits: &mut [Split]) {
        if let Some((s, _, x)) = self.pending.take() {
            self.admit(splits, s, x);
        }
    }

    fn admit(&mut self, splits: &mut [Split], s: usize, time: i64) {
        self.max = self.max.max(Some(time));
        splits[s].max_time = splits[s].max_time.max(Some(time));
    }
}

impl Split {
    /// A split with nothing decided yet (its times are then fed to a [`FutureFilter`]).
    pub fn new(file: usize, unit: Unit, rows: usize) -> Split {
        Split {
            file,
            unit,
            max_time: None,
            rows,
            future: Vec::new(),
        }
    }

    /// Whether the record at `pos` is too far in the future (positions are pushed in order).
    pub fn is_future(&self, pos: u64) -> bool {
        !self.future.is_empty() && self.future.binary_search(&pos).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    /// The times each split rejects, and each split's max, for `splits` of times in log order.
    fn decide(splits: &[&[i64]]) -> (Vec<Vec<u64>>, Vec<Option<i64>>) {
        let mut out: Vec<Split> = splits
            .iter()
            .map(|t| Split::new(0, Unit::RowGroup(0), t.len()))
            .collect();
        let mut f = FutureFilter::new(DAY as u64);
        for (s, times) in splits.iter().enumerate() {
            for (pos, &t) in times.iter().enumerate() {
                f.push(&mut out, s, pos as u64, t);
            }
        }
        f.finish(&mut out);
        (
            out.iter().map(|s| s.future.clone()).collect(),
            out.iter().map(|s| s.max_time).collect(),
        )
    }

    #[test]
    fn a_spike_is_rejected_and_a_jump_is_admitted() {
        let far = 253_402_300_799_000; // 9999-12-31T23:59:59Z
        let (future, max) = decide(&[&[1000, far, 2000, 3000]]);
        assert_eq!(future, [vec![1]]);
        assert_eq!(max, [Some(3000)]);
        // A gap of three days, then the log goes on from there.
        let (future, _) = decide(&[&[1000, 3 * DAY, 3 * DAY + 1, 3 * DAY + 2]]);
        assert_eq!(future, [Vec::<u64>::new()]);
        // The first event is judged by the next one; the last one is admitted.
        let (future, _) = decide(&[&[far, 1000, 2000, far]]);
        assert_eq!(future, [vec![0]]);
    }

    #[test]
    fn decisions_cross_splits() {
        let far = 100 * DAY;
        let (future, max) = decide(&[&[1000, far], &[2000, 3000]]);
        assert_eq!(future, [vec![1], vec![]]);
        assert_eq!(max, [Some(1000), Some(3000)]);
        let (future, max) = decide(&[&[1000, far], &[far + 5, far + 6]]);
        assert_eq!(future, [Vec::<u64>::new(), vec![]]);
        assert_eq!(max, [Some(far), Some(far + 6)]);
    }

    #[test]
    fn whole_splits_only_when_nothing_can_be_rejected() {
        let mut splits = vec![Split::new(0, Unit::RowGroup(0), 2)];
        let mut f = FutureFilter::new(DAY as u64);
        assert!(f.admits_whole(0, DAY));
        assert!(!f.admits_whole(0, DAY + 1));
        assert!(!f.admits_whole(-1, 5));
        f.admit_whole(&mut splits, 0, 10);
        assert!(f.admits_whole(5, DAY + 10));
        assert!(!f.admits_whole(5, DAY + 11));
        f.push(&mut splits, 0, 0, 3 * DAY);
        assert!(!f.admits_whole(0, 1), "a pending time needs the next one");
    }
}
