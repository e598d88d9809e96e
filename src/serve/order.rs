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

#[derive(Debug)]
struct Inner {
    /// The next record to publish.
    next: u64,
    maxima: Vec<Option<i64>>,
}

impl Order {
    pub fn new(sources: usize) -> Order {
        Order {
            inner: Mutex::new(Inner {
                next: 0,
                maxima: vec![None; sources],
            }),
            published: Condvar::new(),
            aborted: AtomicBool::new(false),
            maxima: (0..sources).map(|_| AtomicI64::new(i64::MIN)).collect(),
        }
    }

    /// Waits for records `0..seq`, then publishes record `seq` of `source`, whose new maximum is
    /// `update(prefix)` (never below the prefix); returns the prefix maximum before it.
    pub fn publish(
        &self,
        seq: u64,
        source: usize,
        update: impl FnOnce(Option<i64>) -> Option<i64>,
    ) -> Result<Option<i64>, Aborted> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
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
