//! The continuous join: `events: Collection<Event>` × `context: Collection<Event>` →
//! `Collection<JoinOut>`, a view of every event joined with its key's *current* context row.
//! Times are event-time ticks; each key is handled by one worker, one tick at a time, once both
//! input frontiers have passed it.
//!
//! ```text
//!  events ──(exchange by key)──┐
//!  context ─(exchange by key)──┴─► Continuous: key → latest (time, row) and the key's events
//!                                    ├─► at t, rows first: each changed key's events retracted
//!                                    │   with the old row and emitted with the new one
//!                                    └─► then the events at t, with the current row, or alone
//! ```
//!
//! The latest row of a key is the largest `(context time, row)` seen at or before the tick, as a
//! differential `reduce` keeping the last value would give; events carry their diffs (a view
//! upstream may retract them). The output at each tick is consolidated, so consumers see net
//! changes only, with `context_hits` and `context_misses` counters that follow the view. An
//! event without a key is a miss forever; a context row without a key is dropped.
//!
//! The operator keeps every event it has joined (a change to the context revises them all) and
//! one row per key. Served with checkpoints, both are saved at each snapshot's frontier
//! ([`crate::render::snapshot`]) and restored by key.

use rustc_hash::FxHashMap as HashMap;

use differential_dataflow::{AsCollection, VecCollection};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

use super::enrich::{context_row, join_state, key_hash_of, key_of, Counter, JoinOut, Updates};
use crate::event::{Accessor, Event};
use crate::plan::{JoinPlan, Matching};
use crate::render::pending::{Batch, Paired};
use crate::render::snapshot::{apply_with_snapshots, StateStore};
use crate::value::{key_hash, Sym, Value};

/// A key's latest context row: its time and the object it attaches.
type Row = (i64, Value);

/// What a worker's continuous join saves: each key's latest row, and every event with its
/// multiplicity (their keys follow from the events).
type Saved = (Vec<(Vec<Value>, Row)>, Vec<(Event, isize)>);

/// The operator's state on one worker.
#[derive(Default)]
struct View {
    latest: HashMap<Vec<Value>, Row>,
    events: HashMap<Vec<Value>, HashMap<Event, isize>>,
}

/// What the view's output needs besides its state.
struct Names {
    alias: Sym,
    hit: JoinOut,
    miss: JoinOut,
}

/// Adds `diff` of `item` to the tick's consolidated output.
fn add(out: &mut HashMap<JoinOut, isize>, item: JoinOut, diff: isize) {
    *out.entry(item).or_insert(0) += diff;
}

/// Emits `event` as the view shows it with `row` (a hit) or without (a miss), `diff` times.
fn show(out: &mut HashMap<JoinOut, isize>, names: &Names, event: &Event, row: Option<&Row>, diff: isize) {
    match row {
        Some((_, value)) => {
            add(
                out,
                JoinOut::Event(event.clone().with_field(names.alias, value.clone())),
                diff,
            );
            add(out, names.hit.clone(), diff);
        }
        None => {
            add(out, JoinOut::Event(event.clone()), diff);
            add(out, names.miss.clone(), diff);
        }
    }
}

impl View {
    /// Applies the context rows and events of one tick, in that order; returns the view's
    /// consolidated changes.
    fn tick(
        &mut self,
        names: &Names,
        event_key: &[Accessor],
        rows: Vec<(Vec<Value>, Row)>,
        events: Vec<(Event, isize)>,
    ) -> HashMap<JoinOut, isize> {
        let mut out = HashMap::default();
        let mut newest: HashMap<Vec<Value>, Row> = HashMap::default();
        for (key, row) in rows {
            match newest.get(&key) {
                Some(held) if *held >= row => {}
                _ => {
                    newest.insert(key, row);
                }
            }
        }
        for (key, row) in newest {
            let old = self.latest.get(&key);
            if old.is_some_and(|o| *o >= row) {
                continue;
            }
            if let Some(events) = self.events.get(&key) {
                for (event, n) in events {
                    show(&mut out, names, event, old, -n);
                    show(&mut out, names, event, Some(&row), *n);
                }
            }
            self.latest.insert(key, row);
        }
        for (event, diff) in events {
            let Some(key) = key_of(event_key, &event) else {
                show(&mut out, names, &event, None, diff);
                continue;
            };
            show(&mut out, names, &event, self.latest.get(&key), diff);
            let held = self.events.entry(key.clone()).or_default();
            let n = held.entry(event).or_insert(0);
            *n += diff;
            if *n == 0 {
                held.retain(|_, n| *n != 0);
                if held.is_empty() {
                    self.events.remove(&key);
                }
            }
        }
        out.retain(|_, n| *n != 0);
        out
    }

    fn save(&self) -> Saved {
        let rows = self.latest.iter().map(|(k, r)| (k.clone(), r.clone())).collect();
        let events = self
            .events
            .values()
            .flat_map(|held| held.iter().map(|(e, n)| (e.clone(), *n)))
            .collect();
        (rows, events)
    }

    /// Adds the saved rows and events whose keys `owns` (given the exchange hash) says are this
    /// worker's.
    fn restore(&mut self, (rows, events): Saved, event_key: &[Accessor], owns: &dyn Fn(u64) -> bool) {
        for (key, row) in rows {
            // Rows are routed by the hash of their (present) key.
            if owns(key_hash(&key)) {
                self.latest.insert(key, row);
            }
        }
        for (event, n) in events {
            if owns(key_hash_of(event_key, &event)) {
                if let Some(key) = key_of(event_key, &event) {
                    *self.events.entry(key).or_default().entry(event).or_insert(0) += n;
                }
            }
        }
    }
}

/// Renders a continuous join of `events` with `context`; with `store`, its state takes part in
/// snapshots under that name.
pub fn render<'s>(
    events: VecCollection<'s, u64, Event, isize>,
    context: VecCollection<'s, u64, Event, isize>,
    join: &JoinPlan,
    store: Option<(std::sync::Arc<dyn StateStore>, String)>,
) -> VecCollection<'s, u64, JoinOut, isize> {
    assert_eq!(
        join.matching,
        Matching::Equal,
        "validation allows continuous equality joins only"
    );
    let (ek, ck) = (join.event_key.clone(), join.context_key.clone());
    let by_event = Exchange::new(move |(e, _, _): &(Event, u64, isize)| key_hash_of(&ek, e));
    let by_row = Exchange::new(move |(e, _, _): &(Event, u64, isize)| key_hash_of(&ck, e));
    let names = Names {
        alias: Sym::new(&join.alias),
        hit: JoinOut::Count(Counter::new("context_hits", &join.alias)),
        miss: JoinOut::Count(Counter::new("context_misses", &join.alias)),
    };
    let join = join.clone();
    let scope = events.inner.scope();
    events
        .inner
        .binary_frontier::<_, CapacityContainerBuilder<Updates<JoinOut>>, _, _, _, _>(
            context.inner,
            by_event,
            by_row,
            "Continuous",
            move |_, info| {
                let mut pending: Paired<(Event, isize), Event> = Paired::default();
                let mut batch: Batch<JoinOut> = Batch::default();
                let mut view = View::default();
                let event_key = join.event_key.clone();
                let mut state = join_state(store, &scope, &info, false, |saved, owns| {
                    view.restore(saved, &event_key, owns)
                });
                move |(events_in, events_frontier), (rows_in, rows_frontier), output| {
                    events_in.for_each_stamp(|cap, data| pending.events.absorb(&cap, data, |e, d| (e, d)));
                    rows_in.for_each_stamp(|cap, data| pending.absorb_rows(&cap, data));
                    if let Some(state) = &state {
                        pending.drop_before(state.restored());
                    }
                    let limit = events_frontier
                        .frontier()
                        .iter()
                        .chain(rows_frontier.frontier().iter())
                        .min()
                        .copied();
                    let mut apply = |until: Option<u64>, view: &mut View| {
                        for (time, rows, events) in pending.ready_until(until) {
                            let rows = rows
                                .iter()
                                .filter_map(|row| {
                                    let key = key_of(&join.context_key, row)?;
                                    Some((key, (row.time, context_row(&join, row))))
                                })
                                .collect();
                            let out = view.tick(&names, &join.event_key, rows, events);
                            for (o, n) in out {
                                batch.give(o, time, n);
                            }
                        }
                    };
                    apply_with_snapshots(&mut state, limit, &mut view, &mut apply, View::save);
                    batch.send(&pending.events.caps, output);
                    let hold = pending.next_time();
                    pending.events.caps.downgrade(hold.iter());
                }
            },
        )
        .as_collection()
}
