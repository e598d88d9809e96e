//! Log order across workers: the watermark of a TCP source is decided in the order of the log,
//! as replay decides it in file order, whatever the number of workers.
//!
//! The sequencer numbers every record and hands record `s` to worker `s % W`. A worker parses
//! its batch (in parallel with the others), then [`Order::publish`]es it: it waits until every
//! earlier record is published, reads the largest event time of the source's earlier records
//! (the prefix maximum, as a file split knows it), and adds its own. Lateness inside the batch
//! is then decided from that prefix, exactly as for a split of a file. No worker waits while
//! holding a record that another needs: records are published in log order, each right after
//! its own parse.
//!
//! `Order` also knows which records a checkpoint must keep. Once a worker has admitted a
//! record it [`Order::settle`]s it with the last output time the record can change (see
//! [`crate::plan::retention`]); [`Order::replay_point`] is then the first record that can still
//! change an output at or after a cut, with the prefix maxima a replay from there starts with.
//! Settled records are kept per last-effect time rounded up to a grain, so the bookkeeping is
//! bounded by the horizon over the grain, not by the number of records.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

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
    /// Each source's prefix maximum over every published record (`i64::MIN` for none), readable
    /// without the lock: workers move their inputs up to it when they have nothing to do.
    maxima: Vec<AtomicI64>,
}

/// The prefix maxima of every source before some record.
pub type Maxima = Vec<Option<i64>>;

#[derive(Debug)]
struct Inner {
    /// The next record to publish.
    next: u64,
    maxima: Maxima,
    /// Published records not settled yet, with the maxima before them.
    unsettled: BTreeMap<u64, Maxima>,
    /// Settled records by last-effect time (rounded up to `grain`): the first such record and
    /// the maxima before it.
    effects: BTreeMap<i64, (u64, Maxima)>,
    grain: i64,
}

impl Order {
    pub fn new(sources: usize) -> Order {
        Order::resume(0, vec![None; sources])
    }

    /// Starts at record `next`, with the prefix maxima of the records before it.
    pub fn resume(next: u64, maxima: Maxima) -> Order {
        let atomics = maxima.iter().map(|m| AtomicI64::new(m.unwrap_or(i64::MIN))).collect();
        Order {
            inner: Mutex::new(Inner {
                next,
                maxima,
                unsettled: BTreeMap::new(),
                effects: BTreeMap::new(),
                grain: 1000,
            }),
            published: Condvar::new(),
            aborted: AtomicBool::new(false),
            maxima: atomics,
        }
    }

    /// Notes that record `seq` (published) can change outputs up to `last_effect`, or none.
    pub fn settle(&self, seq: u64, last_effect: Option<i64>) {
        let mut inner = self.lock();
        let Some(before) = inner.unsettled.remove(&seq) else {
            return;
        };
        if let Some(t) = last_effect {
            let g = inner.grain;
            let key = if t > i64::MAX - g {
                i64::MAX
            } else {
                t.div_euclid(g) * g + g - 1
            };
            match inner.effects.entry(key) {
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
    }

    /// The first record that can change an output at or after `cut` (or the first not yet
    /// settled), with the prefix maxima before it; settled records that cannot are forgotten.
    pub fn replay_point(&self, cut: i64) -> (u64, Maxima) {
        let mut inner = self.lock();
        inner.effects = inner.effects.split_off(&cut);
        let mut best = (inner.next, inner.maxima.clone());
        if let Some((&seq, m)) = inner.unsettled.iter().next() {
            if seq < best.0 {
                best = (seq, m.clone());
            }
        }
        for (seq, m) in inner.effects.values() {
            if *seq < best.0 {
                best = (*seq, m.clone());
            }
        }
        best
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for records `0..seq`, then publishes record `seq` of `source`, whose new maximum is
    /// `update(prefix)` (never below the prefix); returns the prefix maximum before it.
    pub fn publish(
        &self,
        seq: u64,
        source: usize,
        update: impl FnOnce(Option<i64>) -> Option<i64>,
    ) -> Result<Option<i64>, Aborted> {
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
        let all = inner.maxima.clone();
        inner.unsettled.insert(seq, all);
        let before = inner.maxima[source];
        let after = update(before).max(before);
        inner.maxima[source] = after;
        inner.next += 1;
        self.maxima[source].store(after.unwrap_or(i64::MIN), Ordering::Release);
        drop(inner);
        self.published.notify_all();
        Ok(before)
    }

    /// The prefix maximum of `source` over every record published so far.
    pub fn maximum(&self, source: usize) -> Option<i64> {
        let m = self.maxima[source].load(Ordering::Acquire);
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

    #[test]
    fn records_publish_in_order_across_threads() {
        let order = Arc::new(Order::new(2));
        let maxima = [5, 3, 9, 1, 7, 2, 8, 4];
        let handles: Vec<_> = (0..3u64)
            .map(|w| {
                let order = Arc::clone(&order);
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    for seq in (w..maxima.len() as u64).step_by(3) {
                        let m = maxima[seq as usize];
                        let prefix = order.publish(seq, (seq % 2) as usize, |p| p.max(Some(m))).unwrap();
                        seen.push((seq, prefix));
                    }
                    seen
                })
            })
            .collect();
        let mut all: Vec<(u64, Option<i64>)> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        all.sort();
        // Source 0 gets records 0, 2, 4, 6 (maxima 5, 9, 7, 8); source 1 gets 3, 1, 2, 4.
        let expect = [None, None, Some(5), Some(3), Some(9), Some(3), Some(9), Some(3)];
        assert_eq!(all.iter().map(|(_, p)| *p).collect::<Vec<_>>(), expect);
        assert_eq!(order.maximum(0), Some(9));
        assert_eq!(order.maximum(1), Some(4));
    }

    #[test]
    fn the_replay_point_is_the_first_record_that_can_still_change_an_output() {
        let order = Order::resume(10, vec![Some(100)]);
        // Records 10..15 with last effects 5_000, 1_500, none, 9_000, (unsettled).
        for (seq, time) in (10..15).zip([4_000, 1_000, 500, 8_000, 9_000]) {
            order.publish(seq, 0, |p| p.max(Some(time))).unwrap();
        }
        order.settle(10, Some(5_000));
        order.settle(11, Some(1_500));
        order.settle(12, None);
        order.settle(13, Some(9_000));
        // Before anything can be dropped, record 10 with the maxima it started with.
        assert_eq!(order.replay_point(0), (10, vec![Some(100)]));
        // Record 10 still changes outputs at 5_000; record 11's effects are past.
        assert_eq!(order.replay_point(5_000), (10, vec![Some(100)]));
        // Only 13 (settled) and 14 (unsettled) remain.
        assert_eq!(order.replay_point(6_000), (13, vec![Some(4_000)]));
        assert_eq!(order.replay_point(10_000), (14, vec![Some(8_000)]));
        order.settle(14, None);
        assert_eq!(order.replay_point(10_000), (15, vec![Some(9_000)]));
        // An unbounded record holds the point forever.
        order.publish(15, 0, |p| p).unwrap();
        order.settle(15, Some(i64::MAX));
        assert_eq!(order.replay_point(i64::MAX - 1).0, 15);
    }

    #[test]
    fn abort_releases_waiters() {
        let order = Arc::new(Order::new(1));
        let waiter = {
            let order = Arc::clone(&order);
            std::thread::spawn(move || order.publish(1, 0, |p| p).is_err())
        };
        std::thread::sleep(Duration::from_millis(20));
        order.abort();
        assert!(waiter.join().unwrap());
    }
}
