//! Time-ordered buffering for operators that apply their input one timestamp at a time: updates
//! wait until the input frontier has passed their time, and the capabilities to emit at those
//! times are kept meanwhile. This is what makes the windowed, schema and dedup operators'
//! outputs a function of their input collection, not of batching or worker count.

use std::collections::BTreeMap;

use timely::dataflow::operators::{CapabilitySet, InputCapability};
use timely::progress::frontier::MutableAntichain;

/// Updates by time, with capabilities for those times.
pub struct Pending<D> {
    pub caps: CapabilitySet<u64>,
    by_time: BTreeMap<u64, Vec<D>>,
}

impl<D> Default for Pending<D> {
    fn default() -> Self {
        Pending {
            caps: CapabilitySet::new(),
            by_time: BTreeMap::new(),
        }
    }
}

impl<D> Pending<D> {
    /// Keeps a capability for the least time of a received message.
    pub fn retain(&mut self, cap: &InputCapability<u64>) {
        if let Some(c) = cap.retain_least(0) {
            self.caps.insert(c);
        }
    }

    /// Takes one stamp's containers of `(data, time, diff)` updates: keeps a capability for the
    /// stamp and buffers `wrap(data, diff)` under each update's time.
    pub fn absorb<T, R>(
        &mut self,
        cap: &InputCapability<u64>,
        data: std::slice::IterMut<'_, Vec<(T, u64, R)>>,
        mut wrap: impl FnMut(T, R) -> D,
    ) {
        self.retain(cap);
        for batch in data {
            for (d, time, r) in batch.drain(..) {
                self.push(time, wrap(d, r));
            }
        }
    }

    pub fn push(&mut self, time: u64, update: D) {
        self.by_time.entry(time).or_default().push(update);
    }

    /// Removes and returns, in time order, the times the frontier has passed with their updates,
    /// and the frontier's least time (`None` once the input is exhausted).
    pub fn ready(&mut self, frontier: &MutableAntichain<u64>) -> (Vec<(u64, Vec<D>)>, Option<u64>) {
        let limit = frontier.frontier().iter().min().copied();
        (self.ready_until(limit), limit)
    }

    /// Removes and returns, in time order, the times before `limit` (all when `None`).
    pub fn ready_until(&mut self, limit: Option<u64>) -> Vec<(u64, Vec<D>)> {
        let times: Vec<u64> = self
            .by_time
            .keys()
            .copied()
            .take_while(|t| limit.is_none_or(|l| *t < l))
            .collect();
        times
            .into_iter()
            .map(|t| (t, self.by_time.remove(&t).expect("listed above")))
            .collect()
    }

    /// The earliest time still waiting.
    pub fn next_time(&self) -> Option<u64> {
        self.by_time.keys().next().copied()
    }
}
