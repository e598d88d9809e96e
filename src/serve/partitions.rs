//! Per-partition watermarks of a TCP source: one partition per named client (its hello's
//! `client`) or per anonymous connection; the source's watermark is the minimum over them.
//!
//! ```text
//!  partition a: largest event time 10:05 ─┐
//!  partition b: largest event time 10:02 ─┼─ min 10:02 ─ running max ─► floor ─ − lateness ─► watermark
//!  partition c: no event yet (−∞) ────────┘  (none present: the largest time of any partition)
//! ```
//!
//! A partition is *present* from its first record in the log (a join at its hello, or its first
//! batch) until a leave record removes it: the sequencer logs one when a partition has sent
//! nothing for the idle timeout, when an anonymous connection closes, and at a restart for the
//! anonymous partitions of the previous process. A partition that sends again after its leave
//! joins again, with no event yet. Present partitions without an event hold the watermark.
//!
//! Everything here is decided from log records alone, in log order ([`super::order`]), so replay
//! of the log, from its start or from a checkpoint (which saves [`Marks`]), decides lateness as
//! the live run did. The floor never decreases: a partition that joins late, or comes back from
//! idleness, finds the watermark where the others took it, and its older events are late.
//!
//! No timely imports: the worker feeds a batch's events through
//! [`crate::source::Watermark::start_partition`] with the [`BatchStart`] returned here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::record::Record;

/// The watermark state of one TCP source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marks {
    /// The largest event time of any partition so far (present or not).
    pub high: Option<i64>,
    /// The running maximum of the combined time ([`Marks::combined`]) and of idle advances: the
    /// watermark plus the allowed lateness. `None` before it first moves.
    pub floor: Option<i64>,
    /// Present partitions by client id, with their largest event time (`None` before one).
    pub partitions: BTreeMap<String, Option<i64>>,
}

/// What a batch's events are admitted against: see [`crate::source::Watermark::start_partition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchStart {
    /// The source's floor before the batch.
    pub floor: Option<i64>,
    /// The partition's largest event time before the batch.
    pub own: Option<i64>,
    /// The smallest largest-time of the other present partitions: `Some(i64::MAX)` when there
    /// are none, `None` when one of them has no event yet (the floor cannot move).
    pub cap: Option<i64>,
}

/// Why a partition left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leave {
    /// Nothing arrived from it for the idle timeout.
    Idle = 1,
    /// Its anonymous connection closed (or belonged to a previous process).
    Closed = 2,
}

impl Leave {
    pub fn as_str(self) -> &'static str {
        match self {
            Leave::Idle => "idle",
            Leave::Closed => "closed",
        }
    }
}

impl Marks {
    /// What the present partitions allow: the smallest of their largest times (`None` while one
    /// has none); with no partition present, the largest time of the source.
    pub fn combined(&self) -> Option<i64> {
        if self.partitions.is_empty() {
            return self.high;
        }
        let mut min = i64::MAX;
        for max in self.partitions.values() {
            min = min.min((*max)?);
        }
        Some(min)
    }

    /// The watermark (`i64::MIN` before any).
    pub fn watermark(&self, lateness_ms: u64) -> i64 {
        self.floor.map_or(i64::MIN, |f| f.saturating_sub(lateness_ms as i64))
    }

    fn raise(&mut self) {
        self.floor = self.floor.max(self.combined());
    }

    /// `client` is present from now on (no change when it already is).
    pub fn join(&mut self, client: &str) {
        if !self.partitions.contains_key(client) {
            self.partitions.insert(client.to_string(), None);
        }
        self.raise();
    }

    /// `client` no longer holds the watermark; `false` when it was not present.
    pub fn leave(&mut self, client: &str) -> bool {
        let was = self.partitions.remove(client).is_some();
        self.raise();
        was
    }

    /// No line arrived on the source for a while: the floor moves `delta_ms` (not before the
    /// first event).
    pub fn advance(&mut self, delta_ms: u64) {
        self.floor = self.floor.map(|f| f.saturating_add(delta_ms as i64));
    }

    /// A batch of `client` whose largest valid event time is `max`: returns what its events are
    /// admitted against, and applies it (the partition joins if it was not present).
    pub fn batch(&mut self, client: &str, max: Option<i64>) -> BatchStart {
        let mut cap = Some(i64::MAX);
        for (c, m) in &self.partitions {
            if c != client {
                cap = match (cap, m) {
                    (Some(a), Some(b)) => Some(a.min(*b)),
                    _ => None,
                };
            }
        }
        let own = self.partitions.get(client).copied().flatten();
        let start = BatchStart {
            floor: self.floor,
            own,
            cap,
        };
        self.partitions.insert(client.to_string(), own.max(max));
        self.high = self.high.max(max);
        self.raise();
        start
    }

    /// Applies an idle advance, a join or a leave (batches go through [`Marks::batch`]).
    pub fn apply(&mut self, record: &Record) {
        match record {
            Record::Advance { delta_ms, .. } => self.advance(*delta_ms),
            Record::Join { client, .. } => self.join(client),
            Record::Leave { client, .. } => {
                self.leave(client);
            }
            Record::Batch(_) => {}
        }
    }

    /// Whether `client` is an anonymous connection (numbered `#N` per process).
    pub fn anonymous(client: &str) -> bool {
        client.starts_with('#')
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Watermark;

    /// Admits `times` of `client` as the worker does; returns which were late.
    fn admit(marks: &mut Marks, client: &str, times: &[i64], lateness: u64) -> Vec<bool> {
        let max = times.iter().copied().max();
        let start = marks.batch(client, max);
        let mut w = Watermark::new(lateness);
        w.start_partition(start.floor, start.own, start.cap);
        let late = times.iter().map(|t| w.observe(*t)).collect();
        // The floor the batch leaves is the one its events reached one by one.
        assert_eq!(w.floor(), marks.floor, "{client} {times:?}");
        late
    }

    #[test]
    fn the_slowest_partition_holds_the_watermark() {
        let mut m = Marks::default();
        m.join("a");
        m.join("b");
        assert_eq!(admit(&mut m, "a", &[100, 200, 300], 10), [false; 3]);
        // b has no event yet: nothing moves.
        assert_eq!(m.floor, None);
        assert_eq!(admit(&mut m, "b", &[50, 120], 10), [false; 2]);
        assert_eq!(m.floor, Some(120));
        // a is far ahead; b's events up to 10 behind its own maximum are on time.
        assert_eq!(admit(&mut m, "b", &[115, 109, 200], 10), [false, true, false]);
        assert_eq!((m.floor, m.watermark(10)), (Some(200), 190));
        assert_eq!(m.high, Some(300));
    }

    #[test]
    fn a_single_partition_is_the_watermark_of_replay() {
        let times = [5, 30, 12, 19, 40, 29, 31, 50, 39];
        let mut replay = Watermark::new(10);
        let expect: Vec<bool> = times.iter().map(|t| replay.observe(*t)).collect();
        let mut m = Marks::default();
        let mut got = Vec::new();
        for chunk in times.chunks(2) {
            got.extend(admit(&mut m, "only", chunk, 10));
        }
        assert_eq!(got, expect);
        assert_eq!(m.watermark(10), replay.current());
    }

    #[test]
    fn leaving_and_idle_partitions_stop_holding_it() {
        let mut m = Marks::default();
        admit(&mut m, "a", &[100], 0);
        admit(&mut m, "b", &[500], 0);
        admit(&mut m, "c", &[300], 0);
        assert_eq!(m.floor, Some(100));
        assert!(m.leave("a"));
        assert_eq!(m.floor, Some(300));
        assert!(!m.leave("a"));
        // The last partitions leave, in either order: the floor is the largest time seen.
        let mut other = m.clone();
        m.leave("b");
        m.leave("c");
        other.leave("c");
        other.leave("b");
        assert_eq!((m.floor, other.floor), (Some(500), Some(500)));
        // a comes back with old events: the floor never goes back, they are late.
        assert_eq!(admit(&mut m, "a", &[150, 520], 0), [true, false]);
        assert_eq!(m.floor, Some(520));
        m.advance(1000);
        assert_eq!(m.floor, Some(1520));
    }

    #[test]
    fn a_partition_that_joined_holds_the_watermark_until_its_first_event() {
        let mut m = Marks::default();
        admit(&mut m, "a", &[100, 200], 0);
        assert_eq!(m.floor, Some(200));
        m.join("b");
        admit(&mut m, "a", &[300], 0);
        assert_eq!(m.floor, Some(200));
        // A batch of b without a valid event time keeps holding it.
        admit(&mut m, "b", &[], 0);
        assert_eq!(m.floor, Some(200));
        // b's events below the floor are late, and its maximum then counts.
        assert_eq!(admit(&mut m, "b", &[150, 250], 0), [true, false]);
        assert_eq!(m.floor, Some(250));
        assert_eq!(m.partitions.len(), 2);
    }

    #[test]
    fn marks_round_trip_through_json() {
        let mut m = Marks::default();
        m.join("#3");
        admit(&mut m, "client-1", &[42], 5);
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Marks>(&text).unwrap(), m);
        assert!(Marks::anonymous("#3") && !Marks::anonymous("client-1"));
    }
}
