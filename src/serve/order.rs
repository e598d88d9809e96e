//! Log order across workers: the watermark of a TCP source is decided in the order of the log,
//! as replay decides it in file order, whatever the number of workers.
//!
//! The sequencer numbers every record and hands record `s` to worker `s % W`. A worker parses
//! its batch (in parallel with the others), then [`Order::publish`]es it: it waits until every
//! earlier record is published, reads the source's watermark state after the earlier records
//! ([`Marks`]: each partition's largest event time and the floor, see [`super::partitions`]),
//! and applies its own record to it. Lateness inside the batch is then decided from that state,
//! as for a split of a file from its prefix maximum. No worker waits while holding a record
//! that another needs: records are published in log order, each right after its own parse.
//!
//! `Order` also knows which records a checkpoint must keep. Once a worker has admitted a
//! record it [`Order::settle`]s it with the last output time the record can change (see
//! [`crate::plan::retention`]) and, for a stateful source, the largest event time it holds;
//! [`Order::replay_point`] is then the first record that can still change an output at or after
//! a cut, or that holds an event at or after the state snapshot's frontier, with the watermark
//! state a replay from there starts with. Settled records are kept per time rounded up to a
//! grain (1 s, coarser once there are more than `MAX_EFFECTS` entries), each with the state
//! before it, so the bookkeeping is bounded by a constant times the partitions, not by the
//! number of records.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::partitions::Marks;

/// Publishing stopped because a worker failed.
#[derive(Debug, thiserror::Error)]
#[error("another worker failed")]
pub struct Aborted;

/// Shared by the workers of one process.
#[derive(Debug)]
pub struct Order {
    inner: Mutex<Inner>,
    published: Condvar,
    aborted: AtomicBool,
    /// Each source's floor (watermark plus lateness) over every published record (`i64::MIN`
    /// for none), readable without the lock: workers move their inputs up to it when they have
    /// nothing to do.
    floors: Vec<AtomicI64>,
}

/// Most entries `Order` keeps for settled records: past it, their last-effect times are rounded
/// up to a coarser grain (entries merge, keeping the first record), so the replay point can only
/// come earlier, and memory stays bounded whatever the horizon and the number of partitions.
const MAX_EFFECTS: usize = 1024;

/// `t` rounded up to the end of its `grain`.
fn bucket(t: i64, grain: i64) -> i64 {
    if t > i64::MAX - grain {
        i64::MAX
    } else {
        t.div_euclid(grain) * grain + grain - 1
    }
}

/// Keeps, under `key`, the first record and the state before it.
fn keep_first(effects: &mut BTreeMap<i64, (u64, AllMarks)>, key: i64, seq: u64, before: AllMarks) {
    match effects.entry(key) {
        std::collections::btree_map::Entry::Vacant(v) => {
            v.insert((seq, before));
        }
        std::collections::btree_map::Entry::Occupied(mut o) => {
            if seq < o.get().0 {
                o.insert((seq, before));
            }
        }
    }
}

/// Settled records by a time rounded up to `grain`: the first such record and the state before
/// it. Past [`MAX_EFFECTS`] entries the grain doubles and entries merge, keeping the first.
#[derive(Debug)]
struct FirstByTime {
    map: BTreeMap<i64, (u64, AllMarks)>,
    grain: i64,
}

impl FirstByTime {
    fn new() -> FirstByTime {
        FirstByTime {
            map: BTreeMap::new(),
            grain: 1000,
        }
    }

    fn keep(&mut self, time: i64, seq: u64, before: AllMarks) {
        keep_first(&mut self.map, bucket(time, self.grain), seq, before);
        // Each entry holds every partition's state: past the bound, coarser buckets.
        while self.map.len() > MAX_EFFECTS && self.grain < i64::MAX / 4 {
            self.grain *= 2;
            let g = self.grain;
            for (key, (seq, marks)) in std::mem::take(&mut self.map) {
                keep_first(&mut self.map, bucket(key, g), seq, marks);
            }
        }
    }

    /// Forgets the records whose time is before `from`; returns the first record left.
    fn first_from(&mut self, from: i64) -> Option<(u64, &AllMarks)> {
        self.map = self.map.split_off(&from);
        self.map.values().min_by_key(|(seq, _)| *seq).map(|(seq, m)| (*seq, m))
    }
}

/// The watermark state of every TCP source before some record.
pub type AllMarks = Vec<Marks>;

#[derive(Debug)]
struct Inner {
    /// The next record to publish.
    next: u64,
    marks: AllMarks,
    /// Published records not settled yet, with the state before them.
    unsettled: BTreeMap<u64, AllMarks>,
    /// Settled records by last-effect time.
    effects: FirstByTime,
    /// Settled records of stateful sources by their largest event time.
    states: FirstByTime,
}

impl Order {
    pub fn new(sources: usize) -> Order {
        Order::resume(0, vec![Marks::default(); sources])
    }

    /// Starts at record `next`, with the watermark state after the records before it.
    pub fn resume(next: u64, marks: AllMarks) -> Order {
        let atomics = marks
            .iter()
            .map(|m| AtomicI64::new(m.floor.unwrap_or(i64::MIN)))
            .collect();
        Order {
            inner: Mutex::new(Inner {
                next,
                marks,
                unsettled: BTreeMap::new(),
                effects: FirstByTime::new(),
                states: FirstByTime::new(),
            }),
            published: Condvar::new(),
            aborted: AtomicBool::new(false),
            floors: atomics,
        }
    }

    /// Notes that record `seq` (published) can change outputs up to `last_effect` (or none), and
    /// that the largest event time it gave a stateful source's operators is `state_time`.
    pub fn settle(&self, seq: u64, last_effect: Option<i64>, state_time: Option<i64>) {
        let mut inner = self.lock();
        let Some(before) = inner.unsettled.remove(&seq) else {
            return;
        };
        if let Some(t) = state_time {
            inner.states.keep(t, seq, before.clone());
        }
        if let Some(t) = last_effect {
            inner.effects.keep(t, seq, before);
        }
    }

    /// The first record that can change an output at or after `cut`, or that holds an event of
    /// a stateful source at or after `state` (the frontier of the operators' state snapshot;
    /// `None` without one: every such record counts), or the first not yet settled, with the
    /// watermark state before it. Settled records that are no longer needed are forgotten.
    pub fn replay_point(&self, cut: i64, state: Option<i64>) -> (u64, AllMarks) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let mut best = (inner.next, &inner.marks);
        let unsettled = inner.unsettled.iter().next().map(|(seq, m)| (*seq, m));
        let effects = inner.effects.first_from(cut);
        let states = inner.states.first_from(state.unwrap_or(i64::MIN));
        for first in [unsettled, effects, states].into_iter().flatten() {
            if first.0 < best.0 {
                best = first;
            }
        }
        (best.0, best.1.clone())
    }

    /// Runs `f` on every source's watermark state with publishing held: nothing is published
    /// meanwhile, so what `f` decides from the state (a snapshot's frontier) precedes every
    /// later record's effect.
    pub fn with_marks<R>(&self, f: impl FnOnce(&[Marks]) -> R) -> R {
        let inner = self.lock();
        f(&inner.marks)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for records `0..seq`, then publishes record `seq` of `source`: `apply` changes the
    /// source's state as the record does (its floor never goes back) and returns what the worker
    /// needs to admit the record's events.
    pub fn publish<R>(&self, seq: u64, source: usize, apply: impl FnOnce(&mut Marks) -> R) -> Result<R, Aborted> {
        let mut inner = self.lock();
        while inner.next != seq {
            if self.aborted.load(Ordering::Acquire) {
                return Err(Aborted);
            }
            inner = self
                .published
                .wait_timeout(inner, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let all = inner.marks.clone();
        inner.unsettled.insert(seq, all);
        let marks = &mut inner.marks[source];
        let before = marks.floor;
        let out = apply(marks);
        marks.floor = marks.floor.max(before);
        let after = marks.floor;
        inner.next += 1;
        self.floors[source].store(after.unwrap_or(i64::MIN), Ordering::Release);
        drop(inner);
        self.published.notify_all();
        Ok(out)
    }

    /// The floor (watermark plus lateness) of `source` over every record published so far.
    pub fn floor(&self, source: usize) -> Option<i64> {
        let m = self.floors[source].load(Ordering::Acquire);
        (m != i64::MIN).then_some(m)
    }

    /// Makes every waiting and later [`Order::publish`] fail: a worker stopped.
    pub fn abort(&self) {
        self.aborted.store(true, Ordering::Release);
        self.published.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// The state of one partition `c` whose largest time is `max`.
    fn marks(max: i64) -> AllMarks {
        let mut m = Marks::default();
        m.batch("c", Some(max));
        vec![m]
    }

    #[test]
    fn records_publish_in_order_across_threads() {
        let order = Arc::new(Order::new(2));
        // Record s: source s % 2, client a or b, largest time.
        let records: Vec<(usize, &str, i64)> = [5, 3, 9, 1, 7, 2, 8, 4, 6, 12, 10, 11]
            .iter()
            .enumerate()
            .map(|(s, &t)| (s % 2, if s % 3 == 0 { "a" } else { "b" }, t))
            .collect();
        let handles: Vec<_> = (0..3u64)
            .map(|w| {
                let (order, records) = (Arc::clone(&order), records.clone());
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    for seq in (w..records.len() as u64).step_by(3) {
                        let (k, client, t) = records[seq as usize];
                        let start = order.publish(seq, k, |m| m.batch(client, Some(t))).unwrap();
                        seen.push((seq, start));
                    }
                    seen
                })
            })
            .collect();
        let mut all: Vec<_> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        all.sort_by_key(|(seq, _)| *seq);
        // The same records applied one after the other, on one thread.
        let mut expect = vec![Marks::default(); 2];
        for ((k, client, t), (_, got)) in records.iter().zip(&all) {
            assert_eq!(expect[*k].batch(client, Some(*t)), *got);
        }
        assert_eq!(order.floor(0), expect[0].floor);
        assert_eq!(order.floor(1), expect[1].floor);
        // Source 0: a 5, b 9, b 7, a 8, b 6, b 10: the slower a holds it at 8.
        assert_eq!((order.floor(0), order.floor(1)), (Some(8), Some(11)));
    }

    #[test]
    fn the_replay_point_is_the_first_record_that_can_still_change_an_output() {
        let order = Order::resume(10, marks(100));
        // Records 10..15 with last effects 5_000, 1_500, none, 9_000, (unsettled).
        for (seq, time) in (10..15).zip([4_000, 1_000, 500, 8_000, 9_000]) {
            order.publish(seq, 0, |m| m.batch("c", Some(time))).unwrap();
        }
        order.settle(10, Some(5_000), None);
        order.settle(11, Some(1_500), None);
        order.settle(12, None, None);
        order.settle(13, Some(9_000), None);
        // Before anything can be dropped, record 10 with the state it started with.
        assert_eq!(order.replay_point(0, None), (10, marks(100)));
        // Record 10 still changes outputs at 5_000; record 11's effects are past.
        assert_eq!(order.replay_point(5_000, None), (10, marks(100)));
        // Only 13 (settled) and 14 (unsettled) remain.
        assert_eq!(order.replay_point(6_000, None), (13, marks(4_000)));
        assert_eq!(order.replay_point(10_000, None), (14, marks(8_000)));
        order.settle(14, None, None);
        assert_eq!(order.replay_point(10_000, None), (15, marks(9_000)));
        // A record whose effect never ends holds the point forever.
        order.publish(15, 0, |_| ()).unwrap();
        order.settle(15, Some(i64::MAX), None);
        assert_eq!(order.replay_point(i64::MAX - 1, None).0, 15);
    }

    #[test]
    fn settled_records_stay_bounded_and_the_replay_point_only_comes_earlier() {
        let order = Order::new(1);
        // 10,000 records, effects spread over 5,000 s and out of order.
        let effects: Vec<i64> = (0..10_000i64).map(|s| (s * 7_919) % 5_000_000).collect();
        for (seq, t) in effects.iter().enumerate() {
            order.publish(seq as u64, 0, |m| m.batch("c", Some(*t))).unwrap();
            order.settle(seq as u64, Some(*t), None);
            assert!(order.lock().effects.map.len() <= MAX_EFFECTS);
        }
        for cut in [0, 1_000_000, 2_500_000, 4_999_000] {
            let exact = effects.iter().position(|t| *t >= cut).unwrap() as u64;
            let (point, marks) = order.replay_point(cut, None);
            assert!(point <= exact, "cut {cut}: {point} after {exact}");
            // The state saved is the one before the record the point names.
            let mut expect = Marks::default();
            for t in &effects[..point as usize] {
                expect.batch("c", Some(*t));
            }
            assert_eq!(marks, vec![expect]);
        }
        assert!(order.lock().effects.grain > 1000);
    }

    #[test]
    fn records_of_stateful_sources_are_kept_from_the_snapshot_frontier() {
        let order = Order::resume(0, marks(0));
        // Records 0..4: event times 1_000, 9_000, 4_000, 12_000, in windows of 10 s.
        for (seq, time) in (0..4).zip([1_000, 9_000, 4_000, 12_000]) {
            order.publish(seq, 0, |m| m.batch("c", Some(time))).unwrap();
            order.settle(seq, Some(time + 10_000), Some(time));
        }
        // Without a snapshot the state needs every record, whatever the cut.
        assert_eq!(order.replay_point(5_000, None), (0, marks(0)));
        // A snapshot at 10_000 holds records 0 to 2, but record 1's window ends at 19_000.
        assert_eq!(order.replay_point(14_000, Some(10_000)), (1, marks(1_000)));
        // Once the windows are written, the state needs record 3 only.
        assert_eq!(order.replay_point(30_000, Some(10_000)), (3, marks(9_000)));
        assert_eq!(order.replay_point(30_000, Some(13_000)).0, 4);
    }

    #[test]
    fn abort_releases_waiters() {
        let order = Arc::new(Order::new(1));
        let waiter = {
            let order = Arc::clone(&order);
            std::thread::spawn(move || order.publish(1, 0, |_| ()).is_err())
        };
        std::thread::sleep(Duration::from_millis(20));
        order.abort();
        assert!(waiter.join().unwrap());
    }
}
