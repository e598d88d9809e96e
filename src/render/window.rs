//! Windowed aggregates: `events: Collection<Event>` → `rows: Collection<WindowRow>` (plus dead
//! letters). Times are event-time ticks; a window's rows change at the times of the events that
//! change them, and a window closes when the input frontier (the watermark) reaches its end.
//!
//! ```text
//!  events ──► pre_aggregate ──(exchange by window key)──► window_reduce ──► rows
//!   (Event, t, ±1)  │  per worker, per batch:                 state: key → AggState
//!                   │  (key, t) → AggState                    emits per time t, in order
//!                   └──► dead letters (type_mismatch, out_of_range, eval_error)
//! ```
//!
//! - `pre_aggregate` evaluates the filter, the group key and each measure's argument, assigns
//!   the event to its windows, and adds the event's [`AggState`] into a per-batch map keyed by
//!   `(window key, time)`. Only these partial states cross workers. The partial states form a
//!   differential collection whose *difference type* is the aggregate (Materialize calls these
//!   accumulable aggregates); `min`, `max` and `count_distinct` carry value multisets so that
//!   retractions are exact.
//! - `window_reduce` holds the state of open windows only. It applies updates one time at a
//!   time, in time order, once the frontier has passed that time, so its output is a function of
//!   the input collection and not of batching or worker count.
//!   - emit `updates`: at each time a group's values change it emits `(old row, t, -1)` and
//!     `(new row, t, +1)`;
//!   - emit `final`: nothing until the frontier reaches the window's end, then `(row, end, +1)`.
//! - State release: when the frontier reaches a window's end, no later event can enter it (a
//!   later one would be late), so its state is dropped. Memory is bounded by the open windows.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;
use std::hash::{Hash, Hasher};

use differential_dataflow::{AsCollection, VecCollection};
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;

use crate::dead_letter::DeadLetter;
use crate::event::Event;
use crate::model::aggregate::{check, AggState};
use crate::model::window::window_starts;
use crate::plan::{AggregatePlan, Emit, Func};
use crate::render::pending::Pending;
use crate::value::{format_time, Value};

/// A window group: group-by values and window start.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WindowKey {
    pub group: Vec<Value>,
    pub start: i64,
}

/// One output row of a windowed aggregate.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WindowRow {
    pub group: Vec<Value>,
    pub start: i64,
    pub end: i64,
    pub measures: Vec<Value>,
}

/// A content-only hasher (FNV-1a) so exchange routing agrees across processes.
#[derive(Default)]
pub struct StableHasher(u64);

impl Hasher for StableHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

pub fn stable_hash<H: Hash>(x: &H) -> u64 {
    let mut h = StableHasher::default();
    x.hash(&mut h);
    h.finish()
}

type Partial = (WindowKey, u64, AggState);

/// Renders one windowed aggregate over `events`.
/// `fields` names the source's time and type fields, for the records of dead letters.
pub fn render<'s>(
    events: VecCollection<'s, u64, Event, isize>,
    plan: &AggregatePlan,
    fields: (&str, &str),
) -> (
    VecCollection<'s, u64, WindowRow, isize>,
    VecCollection<'s, u64, DeadLetter, isize>,
) {
    let funcs: Vec<Func> = plan.measures.iter().map(|m| m.func).collect();
    let (partials, dead) = pre_aggregate(events, plan, &funcs, fields);
    let rows = window_reduce(partials, plan, funcs);
    (rows, dead)
}

enum PreOut {
    Partial(Partial),
    Dead(DeadLetter, u64),
}

fn pre_aggregate<'s>(
    events: VecCollection<'s, u64, Event, isize>,
    plan: &AggregatePlan,
    funcs: &[Func],
    fields: (&str, &str),
) -> (
    timely::dataflow::StreamVec<'s, u64, Partial>,
    VecCollection<'s, u64, DeadLetter, isize>,
) {
    use timely::dataflow::operators::core::OkErr;
    let plan = plan.clone();
    let funcs = funcs.to_vec();
    let (time_field, type_field) = (fields.0.to_string(), fields.1.to_string());
    let name = format!("PreAggregate({})", plan.name);
    let out = events
        .inner
        .unary::<CapacityContainerBuilder<Vec<PreOut>>, _, _, _>(Pipeline, &name, move |_, _| {
            let mut acc: HashMap<(WindowKey, u64), AggState> = HashMap::default();
            let emit = plan.emit;
            let mut args: Vec<Option<Value>> = Vec::with_capacity(funcs.len());
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let mut dead = Vec::new();
                    // In final mode only a window's state at its end is observed, so every partial
                    // of this batch can carry the batch's time (no later than any event in it).
                    let batch_time = *cap.least().expect("a message has a time");
                    for batch in data {
                        for (event, time, diff) in batch.drain(..) {
                            if let Err((reason, detail)) = contribution(&plan, &funcs, &event, &mut args) {
                                let letter = DeadLetter {
                                    stage: format!("aggregate:{}", plan.name),
                                    reason: reason.to_string(),
                                    detail,
                                    location: format!("{} event at {}", event.kind, format_time(event.time)),
                                    record: event.to_json(&time_field, &type_field).to_string(),
                                    event_time: Some(event.time),
                                };
                                dead.push(PreOut::Dead(letter, time));
                                continue;
                            }
                            if args.is_empty() {
                                continue; // filtered out
                            }
                            let group: Vec<Value> = plan
                                .group_by
                                .iter()
                                .map(|(_, a)| a.get(&event).unwrap_or(Value::Null))
                                .collect();
                            for start in window_starts(plan.window, event.time) {
                                let key = WindowKey {
                                    group: group.clone(),
                                    start,
                                };
                                let t = if emit == Emit::Final { batch_time } else { time };
                                let state = acc
                                    .entry((key, t))
                                    .or_insert_with(|| AggState::empty(&funcs, plan.monotonic));
                                add_event(state, &funcs, &args, diff as i64);
                            }
                        }
                    }
                    let mut session = output.session(&cap);
                    session.give_iterator(dead.into_iter());
                    session.give_iterator(
                        acc.drain()
                            .filter(|(_, s)| !s.is_zero())
                            .map(|((k, t), s)| PreOut::Partial((k, t, s))),
                    );
                });
            }
        });
    // The `Err` side carries a whole dead letter by design: it is the dead-letter collection.
    #[allow(clippy::result_large_err)]
    let (partials, dead) = out.ok_err(|x| match x {
        PreOut::Partial(p) => Ok(p),
        PreOut::Dead(d, t) => Err((d, t, 1isize)),
    });
    (partials, dead.as_collection())
}

/// Evaluates the aggregate's filter and the measures' arguments for `event` into `args`
/// (left empty when the event does not pass the filter). `Some(Null)` marks a measure whose own
/// filter rejected the event; `None` is `count()`.
fn contribution(
    plan: &AggregatePlan,
    funcs: &[Func],
    event: &Event,
    args: &mut Vec<Option<Value>>,
) -> Result<(), (&'static str, String)> {
    args.clear();
    if let Some(filter) = &plan.filter {
        if !filter
            .is_true(event)
            .map_err(|e| ("eval_error", format!("where: {e}")))?
        {
            return Ok(());
        }
    }
    for (m, func) in plan.measures.iter().zip(funcs) {
        if let Some(filter) = &m.filter {
            if !filter
                .is_true(event)
                .map_err(|e| ("eval_error", format!("{}: where: {e}", m.name)))?
            {
                args.push(Some(Value::Null));
                continue;
            }
        }
        let arg = match &m.arg {
            None => None,
            Some(e) => Some(e.eval(event).map_err(|e| ("eval_error", format!("{}: {e}", m.name)))?),
        };
        // Check the value can enter the measure, so a bad value is rejected before any state changes.
        check(*func, arg.as_ref()).map_err(|e| (e.reason(), format!("{}: {e}", m.name)))?;
        args.push(arg);
    }
    Ok(())
}

fn add_event(state: &mut AggState, funcs: &[Func], args: &[Option<Value>], weight: i64) {
    state.events += weight;
    for ((m, f), arg) in state.measures.iter_mut().zip(funcs).zip(args) {
        m.add(*f, arg.as_ref(), weight)
            .expect("values were checked in `contribution`");
    }
}

fn window_reduce<'s>(
    partials: timely::dataflow::StreamVec<'s, u64, Partial>,
    plan: &AggregatePlan,
    funcs: Vec<Func>,
) -> VecCollection<'s, u64, WindowRow, isize> {
    let size = plan.window.size_ms as i64;
    let emit = plan.emit;
    let monotonic = plan.monotonic;
    let name = format!("WindowReduce({})", plan.name);
    let exchange = Exchange::new(|(k, _, _): &Partial| stable_hash(k));
    partials
        .unary_frontier::<CapacityContainerBuilder<Vec<(WindowRow, u64, isize)>>, _, _, _>(
            exchange,
            &name,
            move |_, _| {
                let mut pending: Pending<(WindowKey, AggState)> = Pending::default();
                let mut state: HashMap<WindowKey, AggState> = HashMap::default();
                let mut by_end: BTreeMap<i64, Vec<WindowKey>> = BTreeMap::new();
                move |(input, frontier), output| {
                    input.for_each_stamp(|cap, data| pending.absorb(&cap, data, |key, delta| (key, delta)));
                    let (ready, limit) = pending.ready(frontier);
                    for (time, updates) in ready {
                        let mut changed: HashMap<WindowKey, Option<Vec<Value>>> = HashMap::default();
                        for (key, delta) in updates {
                            let entry = state.entry(key.clone()).or_insert_with(|| {
                                by_end.entry(key.start + size).or_default().push(key.clone());
                                AggState::empty(&funcs, monotonic)
                            });
                            changed.entry(key).or_insert_with(|| entry.finish(&funcs));
                            entry.plus(&delta);
                        }
                        if emit == Emit::Updates {
                            let cap = pending.caps.delayed(&time);
                            let mut session = output.session(&cap);
                            let mut out: Vec<(WindowRow, u64, isize)> = Vec::new();
                            for (key, before) in changed {
                                let after = state.get(&key).and_then(|s| s.finish(&funcs));
                                if before == after {
                                    continue;
                                }
                                let row = |m: Vec<Value>| WindowRow {
                                    group: key.group.clone(),
                                    start: key.start,
                                    end: key.start + size,
                                    measures: m,
                                };
                                if let Some(b) = before {
                                    out.push((row(b), time, -1));
                                }
                                if let Some(a) = after {
                                    out.push((row(a), time, 1));
                                }
                            }
                            out.sort();
                            session.give_iterator(out.into_iter());
                        }
                    }
                    // Close windows whose end the frontier has reached.
                    let closing: Vec<i64> = by_end
                        .keys()
                        .copied()
                        .take_while(|e| limit.is_none_or(|l| *e <= l as i64))
                        .collect();
                    for end in closing {
                        let keys = by_end.remove(&end).expect("key listed above");
                        let mut out = Vec::new();
                        for key in keys {
                            if let Some(s) = state.remove(&key) {
                                if let (Emit::Final, Some(m)) = (emit, s.finish(&funcs)) {
                                    out.push((
                                        WindowRow {
                                            group: key.group,
                                            start: key.start,
                                            end,
                                            measures: m,
                                        },
                                        end as u64,
                                        1,
                                    ));
                                }
                            }
                        }
                        if !out.is_empty() {
                            out.sort();
                            let cap = pending.caps.delayed(&(end as u64));
                            output.session(&cap).give_iterator(out.into_iter());
                        }
                    }
                    // Hold capabilities only for pending times and, in final mode, open window ends.
                    let mut hold: Option<u64> = pending.next_time();
                    if emit == Emit::Final {
                        if let Some(end) = by_end.keys().next() {
                            hold = Some(hold.map_or(*end as u64, |h| h.min(*end as u64)));
                        }
                    }
                    pending.caps.downgrade(hold.iter());
                }
            },
        )
        .as_collection()
}
