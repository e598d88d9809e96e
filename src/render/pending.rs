//! Time-ordered buffering for operators that apply their input one timestamp at a time: updates
//! wait until the input frontier has passed their time, and the capabilities to emit at those
//! times are kept meanwhile. This is what makes the windowed, schema, dedup and join operators'
//! outputs a function of their input collections, not of batching or worker count. Also what
//! one activation sends ([`Batch`]) and which operators put work off to their next activation
//! ([`Backlog`]).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::OutputBuilderSession;
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

    /// Puts back a time's updates that [`Pending::ready`] returned and the operator left for
    /// later. None can have arrived at that time since: the frontier had passed it.
    pub fn restore(&mut self, time: u64, updates: Vec<D>) {
        let held = self.by_time.insert(time, updates);
        debug_assert!(held.is_none(), "updates at {time} arrived after the frontier passed it");
    }

    /// Drops the updates at times before `from` (a restored operator's state holds them).
    pub fn drop_before(&mut self, from: u64) {
        if self.by_time.first_key_value().is_some_and(|(t, _)| *t < from) {
            self.by_time = self.by_time.split_off(&from);
        }
    }

    /// The earliest time still waiting.
    pub fn next_time(&self) -> Option<u64> {
        self.by_time.keys().next().copied()
    }
}

/// Two inputs buffered by time, for the joins: events and context rows wait until both input
/// frontiers have passed their time, with capabilities for those times in `events.caps`.
pub struct Paired<E, R> {
    pub events: Pending<E>,
    rows: BTreeMap<u64, Vec<R>>,
}

impl<E, R> Default for Paired<E, R> {
    fn default() -> Self {
        Paired {
            events: Pending::default(),
            rows: BTreeMap::new(),
        }
    }
}

impl<E, R> Paired<E, R> {
    /// Takes one stamp's containers of context rows (their diffs are dropped: context sources
    /// are append-only).
    pub fn absorb_rows(&mut self, cap: &InputCapability<u64>, data: std::slice::IterMut<'_, Vec<(R, u64, isize)>>) {
        self.events.retain(cap);
        for batch in data {
            for (row, t, _) in batch.drain(..) {
                self.rows.entry(t).or_default().push(row);
            }
        }
    }

    /// Removes and returns, in time order, the times before `limit` (all when `None`), each with
    /// its rows and events.
    pub fn ready_until(&mut self, limit: Option<u64>) -> Vec<(u64, Vec<R>, Vec<E>)> {
        let mut events: BTreeMap<u64, Vec<E>> = self.events.ready_until(limit).into_iter().collect();
        let mut times: Vec<u64> = events.keys().copied().collect();
        times.extend(self.rows.keys().copied().take_while(|t| limit.is_none_or(|l| *t < l)));
        times.sort_unstable();
        times.dedup();
        times
            .into_iter()
            .map(|t| {
                let rows = self.rows.remove(&t).unwrap_or_default();
                (t, rows, events.remove(&t).unwrap_or_default())
            })
            .collect()
    }

    /// Drops both inputs' updates before `from` (a restored operator's state holds them).
    pub fn drop_before(&mut self, from: u64) {
        self.events.drop_before(from);
        if self.rows.first_key_value().is_some_and(|(t, _)| *t < from) {
            self.rows = self.rows.split_off(&from);
        }
    }

    /// The earliest time still waiting; capabilities before it can go.
    pub fn next_time(&self) -> Option<u64> {
        [self.events.next_time(), self.rows.keys().next().copied()]
            .into_iter()
            .flatten()
            .min()
    }
}

/// Removes and returns, in time order, the entries of a release schedule (things to drop by
/// the time they become unreachable) at times the frontier `limit` has reached (all when
/// `None`: the input is exhausted).
pub fn due<V>(schedule: &mut BTreeMap<i64, V>, limit: Option<u64>) -> Vec<(i64, V)> {
    let due = match limit {
        None => std::mem::take(schedule),
        Some(l) => {
            let kept = schedule.split_off(&(l as i64).saturating_add(1));
            std::mem::replace(schedule, kept)
        }
    };
    due.into_iter().collect()
}

/// The container builder of an operator's output of `(data, time, diff)` updates.
pub type UpdateBuilder<D> = CapacityContainerBuilder<Vec<(D, u64, isize)>>;

/// An operator's output of `(data, time, diff)` updates.
pub type UpdateOutput<'a, D> = OutputBuilderSession<'a, u64, UpdateBuilder<D>>;

/// What an operator emits in one activation, given as one message: stamped with the least of
/// the updates' times instead of one message per time. Each update keeps its own time (a
/// differential collection's updates may be later than their message's stamp, and the
/// operators downstream buffer by update time, above), so the collection is the same; timely
/// then tracks one pointstamp per activation instead of one per tick, and the operators
/// downstream take a few large messages instead of many with a handful of updates each.
pub struct Batch<D> {
    updates: Vec<(D, u64, isize)>,
    least: Option<u64>,
}

impl<D> Default for Batch<D> {
    fn default() -> Self {
        Batch {
            updates: Vec::new(),
            least: None,
        }
    }
}

impl<D: 'static> Batch<D> {
    /// Updates an operator may hold before it sends them ([`Batch::send_if_full`]): they move
    /// into the output's containers while still in cache, and the batch's buffer stays small
    /// and reused, rather than growing through a busy activation (hundreds of thousands of
    /// updates). The next operator still reads them only after this activation ends.
    pub const SEND_AT: usize = 2048;

    pub fn give(&mut self, data: D, time: u64, diff: isize) {
        self.least = Some(self.least.map_or(time, |l| l.min(time)));
        self.updates.push((data, time, diff));
    }

    /// Sends the updates, in the order given, at the least of their times (`caps` must allow
    /// each time it was given one at).
    pub fn send(&mut self, caps: &CapabilitySet<u64>, output: &mut UpdateOutput<'_, D>) {
        if let Some(least) = self.least.take() {
            let cap = caps.delayed(&least);
            output.session(&cap).give_iterator(self.updates.drain(..));
        }
    }

    pub fn len(&self) -> usize {
        self.updates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.updates.is_empty()
    }

    /// [`Batch::send`] once there are [`Batch::SEND_AT`] updates.
    pub fn send_if_full(&mut self, caps: &CapabilitySet<u64>, output: &mut UpdateOutput<'_, D>) {
        if self.updates.len() >= Self::SEND_AT {
            self.send(caps, output);
        }
    }
}

/// Keeps, in `caps[i]`, a capability of output port `first + i` for the least time of a
/// received message: the outputs after the first of an operator whose first output's
/// capabilities a [`Pending`] keeps.
pub fn retain_ports(caps: &mut [CapabilitySet<u64>], cap: &InputCapability<u64>, first: usize) {
    for (i, caps) in caps.iter_mut().enumerate() {
        if let Some(c) = cap.retain_least(first + i) {
            caps.insert(c);
        }
    }
}

/// How many of a worker's operators hold work they put off: an operator whose activation would
/// make more output than fits in cache (a forecast closing a thousand series' bins at once makes
/// a hundred thousand rows) makes part of it, activates itself again and says so here, and the
/// operators downstream take that part while it is still in cache. A reader steps the worker
/// until none owes work before it reads more input, so the input does not pile up meanwhile.
#[derive(Clone, Default)]
pub struct Backlog(Rc<Cell<usize>>);

impl Backlog {
    /// Whether an operator has put work off.
    pub fn owed(&self) -> bool {
        self.0.get() > 0
    }

    /// A handle for one operator to say whether it owes work.
    pub fn debtor(&self) -> Debtor {
        Debtor {
            backlog: self.clone(),
            owes: false,
        }
    }
}

/// One operator's part of a [`Backlog`].
pub struct Debtor {
    backlog: Backlog,
    owes: bool,
}

impl Debtor {
    pub fn set(&mut self, owes: bool) {
        if owes != self.owes {
            let count = &self.backlog.0;
            count.set(if owes { count.get() + 1 } else { count.get() - 1 });
            self.owes = owes;
        }
    }
}

impl Drop for Debtor {
    fn drop(&mut self) {
        self.set(false);
    }
}
