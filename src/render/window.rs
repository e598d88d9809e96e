//! Windowed aggregates: `events: Collection<Event>` → `rows: Collection<WindowRow>` (plus dead
//! letters). Times are event-time ticks; a window's rows change at the times of the events that
//! change them, and a window closes when the input frontier (the watermark) reaches its end.
//!
//! ```text
//!  events ──► pre_aggregate ──(exchange by window key)──► window_reduce ──► rows
//!   (Event, t, ±1)  │  per worker, per batch:                 state: key → AggState
//!                   │  (key, t) → AggState                    emits per time t, in order
//!                   └──► dead letters (type_mismatch, out_of_range, eval_error, closed_window)
//! ```
//!
//! - `pre_aggregate` evaluates the filter, the group key and each measure's argument, assigns
//!   the event to its windows, and adds the event into a per-batch map keyed by
//!   `(window key, time)`: a window's first event there is kept as its measure arguments, and a
//!   second turns them into an [`AggState`] (a [`Delta`]). Only these partial changes cross
//!   workers. They form a differential collection whose *difference type* is the aggregate
//!   (Materialize calls these accumulable aggregates); `min`, `max` and `count_distinct` carry
//!   value multisets so that retractions are exact (insert-only states when the plan says the
//!   input is monotonic).
//! - `window_reduce` holds the state of windows that can still change, hashing each update's
//!   key once (`Windows`). It applies updates one
//!   time at a time, in time order, once the frontier has passed that time, so its output is a
//!   function of the input collection and not of batching or worker count.
//!   - emit `updates`: at each time a group's values change it emits `(old row, t, -1)` and
//!     `(new row, t, +1)`;
//!   - emit `final`: nothing until the frontier reaches the window's end, then `(row, end, +1)`;
//!     a change at `t ≥ end` (only a retracting input makes one) is a correction
//!     `(old row, t, -1)`, `(new row, t, +1)`, emitted after the row at `end`.
//! - State release: when the frontier reaches `end + retain_ms`, the window's state is dropped.
//!   Over an insert-only input `retain_ms` is 0: no event can enter a window after its end (it
//!   would be late). Over a retracting input (a continuous join upstream), changes keep coming
//!   after the end; `pre_aggregate` sends those at `t ≥ end + retain_ms` to dead letters as
//!   `closed_window`, by their time alone, so what is applied does not depend on the frontier
//!   or the worker count. Memory is bounded by the windows within their retention.
//!
//! ```text
//!  event time ──[start ········ end)──────── end + retain_ms ──────────►
//!                 inserts, retractions │ revisions (corrections)  │ closed_window
//! ```

use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;
use std::hash::BuildHasher;

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

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
use crate::render::pending::{Batch, Pending};
use crate::value::{format_time, Value};

/// A window group: group-by values and window start.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WindowKey {
    pub group: Vec<Value>,
    pub start: i64,
}

/// One output row of a windowed aggregate, held as its columns in output order: the group-by
/// values, `Time(start)`, `Time(end)`, then the measures. A sink writes the values as they are,
/// and the rows of one aggregate order by (group, start, end, measures).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WindowRow {
    values: Vec<Value>,
    groups: usize,
}

impl WindowRow {
    /// The row of `group`'s window `[start, end)` holding `state`, or `None` when the group holds
    /// no events (it does not exist). One allocation, of the row's size.
    pub fn of_state(group: &[Value], start: i64, end: i64, state: &AggState, funcs: &[Func]) -> Option<WindowRow> {
        let mut values = Vec::with_capacity(group.len() + 2 + funcs.len());
        values.extend_from_slice(group);
        values.push(Value::Time(start));
        values.push(Value::Time(end));
        state.finish_into(funcs, &mut values).then_some(WindowRow {
            values,
            groups: group.len(),
        })
    }

    pub fn group(&self) -> &[Value] {
        &self.values[..self.groups]
    }

    fn time_at(&self, i: usize) -> i64 {
        match self.values[self.groups + i] {
            Value::Time(t) => t,
            _ => unreachable!("a window row holds its start and end as times"),
        }
    }

    pub fn start(&self) -> i64 {
        self.time_at(0)
    }

    pub fn end(&self) -> i64 {
        self.time_at(1)
    }

    pub fn measures(&self) -> &[Value] {
        &self.values[self.groups + 2..]
    }

    /// The output row's columns (without `time` and `diff`), moved out of the row.
    pub fn into_values(self) -> Vec<Value> {
        self.values
    }
}

pub use crate::value::{stable_hash, StableHasher};

type Partial = (WindowKey, u64, Delta);

/// A window's change from one batch at one time: one event's measure arguments and weight (the
/// common case when events have distinct times), or, once a second event joins it, the sum of
/// their states. Applying either to a window's state gives the same state: sums are exact
/// (fixed point), and the value multisets and sets count the same values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Delta {
    One { args: Vec<Option<Value>>, weight: i64 },
    Many(AggState),
}

impl Delta {
    /// Adds one event's `args` with `weight`.
    fn add(&mut self, funcs: &[Func], monotonic: bool, args: &[Option<Value>], weight: i64) {
        match self {
            Delta::Many(state) => add_event(state, funcs, args, weight),
            Delta::One { args: first, weight: w } => {
                let mut state = AggState::empty(funcs, monotonic);
                add_event(&mut state, funcs, first, *w);
                add_event(&mut state, funcs, args, weight);
                *self = Delta::Many(state);
            }
        }
    }

    /// Applies the change to a window's `state`.
    fn apply_to(&self, state: &mut AggState, funcs: &[Func]) {
        match self {
            Delta::One { args, weight } => add_event(state, funcs, args, *weight),
            Delta::Many(delta) => state.plus(delta),
        }
    }

    fn is_zero(&self) -> bool {
        match self {
            Delta::One { weight, .. } => *weight == 0,
            Delta::Many(state) => state.is_zero(),
        }
    }
}

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
    if let Some(gap) = plan.session_gap_ms {
        return crate::render::session::render(events, plan, gap, fields);
    }
    let funcs: Vec<Func> = plan.measures.iter().map(|m| m.func).collect();
    let (partials, dead) = pre_aggregate(events, plan, &funcs, fields);
    let rows = window_reduce(partials, plan, funcs);
    (rows, dead)
}

/// An aggregate in the plan's graph: its rows as the main collection. `fields` are the input
/// events' time and type field names.
pub fn stage<'s>(
    events: VecCollection<'s, u64, Event, isize>,
    plan: &AggregatePlan,
    fields: (&str, &str),
) -> crate::render::StageOut<'s> {
    let (rows, dead) = render(events, plan, fields);
    crate::render::StageOut {
        main: crate::render::Coll::Windows(rows),
        ports: Vec::new(),
        errs: vec![dead],
    }
}

/// An aggregate's rows read as events by a later stage: each row is an event of type `NAME`
/// at its window's last millisecond (`window_end - 1`, see [`crate::plan::WINDOW_TIME`]), whose
/// payload fields are the row's columns by name. The updates keep their times and diffs.
pub fn rows_as_events<'s>(
    rows: VecCollection<'s, u64, WindowRow, isize>,
    plan: &AggregatePlan,
) -> VecCollection<'s, u64, Event, isize> {
    let names: Vec<crate::value::Sym> = plan.columns().iter().map(|c| crate::value::Sym::new(c)).collect();
    let kind = crate::value::Sym::new(&plan.name);
    rows.map(move |row| {
        let time = row.end() - 1;
        let values = row.into_values();
        Event::new(time, kind, names.iter().copied().zip(values).collect())
    })
}

/// A pre-aggregation's output: a partial state `P`, or a dead letter with its time and count.
pub(crate) enum PreOut<P> {
    Partial(P),
    Dead(DeadLetter, u64, isize),
}

/// A dead letter of aggregate `plan` for `event`; `fields` are its time and type field names.
pub(crate) fn aggregate_letter(
    plan: &AggregatePlan,
    event: &Event,
    fields: (&str, &str),
    reason: &str,
    detail: String,
) -> DeadLetter {
    DeadLetter {
        stage: format!("aggregate:{}", plan.name),
        reason: reason.to_string(),
        detail,
        location: format!("{} event at {}", event.kind, format_time(event.time)),
        record: event.json_text(fields.0, fields.1),
        event_time: Some(event.time),
        original: None,
    }
}

/// The group-by values of `event` (null where a path is missing).
pub(crate) fn group_of(plan: &AggregatePlan, event: &Event) -> Vec<Value> {
    let mut group = Vec::with_capacity(plan.group_by.len());
    group_into(plan, event, &mut group);
    group
}

/// [`group_of`] into `group`, replacing what it held.
fn group_into(plan: &AggregatePlan, event: &Event, group: &mut Vec<Value>) {
    group.clear();
    group.extend(plan.group_by.iter().map(|(_, a)| a.get(event).unwrap_or(Value::Null)));
}

/// A batch's output: its dead letters, then the non-zero partial states of `acc` (drained).
pub(crate) fn batch_out<K: Eq + std::hash::Hash>(
    dead: Vec<PreOut<(K, u64, AggState)>>,
    acc: &mut HashMap<(K, u64), AggState>,
) -> impl Iterator<Item = PreOut<(K, u64, AggState)>> + '_ {
    dead.into_iter().chain(
        acc.drain()
            .filter(|(_, s)| !s.is_zero())
            .map(|((k, t), s)| PreOut::Partial((k, t, s))),
    )
}

/// Splits a pre-aggregation's output into its partial states and the dead-letter collection.
pub(crate) fn split_pre<'s, P: Clone + 'static>(
    out: timely::dataflow::StreamVec<'s, u64, PreOut<P>>,
) -> (
    timely::dataflow::StreamVec<'s, u64, P>,
    VecCollection<'s, u64, DeadLetter, isize>,
) {
    use timely::dataflow::operators::core::OkErr;
    // The `Err` side carries a whole dead letter by design: it is the dead-letter collection.
    #[allow(clippy::result_large_err)]
    let (partials, dead) = out.ok_err(|x| match x {
        PreOut::Partial(p) => Ok(p),
        PreOut::Dead(d, t, n) => Err((d, t, n)),
    });
    (partials, dead.as_collection())
}

/// A batch's changes by window and time. A change's key is hashed from the event's group values
/// where they lie, and copied into the table only for a window and time the batch has not yet
/// changed.
struct Changes {
    table: HashTable<Partial>,
    hasher: rustc_hash::FxBuildHasher,
    funcs: Vec<Func>,
    monotonic: bool,
}

impl Changes {
    fn new(funcs: &[Func], monotonic: bool) -> Changes {
        Changes {
            table: HashTable::new(),
            hasher: rustc_hash::FxBuildHasher,
            funcs: funcs.to_vec(),
            monotonic,
        }
    }

    fn hash(hasher: &rustc_hash::FxBuildHasher, group: &[Value], start: i64, t: u64) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = hasher.build_hasher();
        group.hash(&mut h);
        start.hash(&mut h);
        t.hash(&mut h);
        h.finish()
    }

    /// Adds one event's `args` with `weight` to the change of window `(group, start)` at `t`.
    fn add(&mut self, group: &[Value], start: i64, t: u64, args: &[Option<Value>], weight: i64) {
        let hasher = &self.hasher;
        let hash = Self::hash(hasher, group, start, t);
        let same = |(k, kt, _): &Partial| *kt == t && k.start == start && k.group == group;
        let rehash = |(k, kt, _): &Partial| Self::hash(hasher, &k.group, k.start, *kt);
        match self.table.entry(hash, same, rehash) {
            Entry::Occupied(mut e) => e.get_mut().2.add(&self.funcs, self.monotonic, args, weight),
            Entry::Vacant(slot) => {
                let key = WindowKey {
                    group: group.to_vec(),
                    start,
                };
                let delta = Delta::One {
                    args: args.to_vec(),
                    weight,
                };
                slot.insert((key, t, delta));
            }
        }
    }

    /// The non-zero changes, leaving the table empty (its memory kept for the next batch).
    fn drain(&mut self) -> impl Iterator<Item = Partial> + '_ {
        self.table.drain().filter(|(_, _, d)| !d.is_zero())
    }
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
    let plan = plan.clone();
    let funcs = funcs.to_vec();
    let (time_field, type_field) = (fields.0.to_string(), fields.1.to_string());
    let name = format!("PreAggregate({})", plan.name);
    let out = events
        .inner
        .unary::<CapacityContainerBuilder<Vec<PreOut<Partial>>>, _, _, _>(Pipeline, &name, move |_, _| {
            let mut acc = Changes::new(&funcs, plan.monotonic);
            let arguments = Arguments::new(&plan, &funcs);
            let emit = plan.emit;
            let (size, retain) = (plan.window.size_ms as i64, plan.retain_ms as i64);
            // A window closes `lag` after its end (over another aggregate's rows).
            let lag = plan.input_lag_ms as i64;
            let mut args: Vec<Option<Value>> = Vec::with_capacity(funcs.len());
            let mut group: Vec<Value> = Vec::with_capacity(plan.group_by.len());
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let mut dead = Vec::new();
                    let batch_time = *cap.least().expect("a message has a time");
                    for batch in data {
                        for (event, time, diff) in batch.drain(..) {
                            let letter = |reason: &str, detail: String| {
                                let letter =
                                    aggregate_letter(&plan, &event, (&time_field, &type_field), reason, detail);
                                // One letter per event: an update of multiplicity 2 is two events.
                                PreOut::Dead(letter, time, diff.abs())
                            };
                            if let Err((reason, detail)) = arguments.of(&event, &mut args) {
                                // A retraction of an event that never entered the state has
                                // nothing to undo: its insertion was the dead letter.
                                if diff > 0 {
                                    dead.push(letter(reason, detail));
                                }
                                continue;
                            }
                            if args.is_empty() {
                                continue; // filtered out
                            }
                            group_into(&plan, &event, &mut group);
                            for start in window_starts(plan.window, event.time) {
                                let end = start + size;
                                let close = end + lag;
                                if time as i64 >= close + retain {
                                    // Only a retracting input changes a window after its end.
                                    let change = if diff > 0 { "insertion" } else { "retraction" };
                                    let detail = format!(
                                        "{change} at {} into window [{}, {}), which accepts changes until {}",
                                        format_time(time as i64),
                                        format_time(start),
                                        format_time(end),
                                        format_time(close + retain)
                                    );
                                    dead.push(letter("closed_window", detail));
                                    continue;
                                }
                                // In final mode only a window's state at its end is observed, so
                                // a change before the end can carry the batch's time (no later
                                // than any in it); a revision after the end keeps its own.
                                let t = if emit == Emit::Final && (time as i64) < close {
                                    batch_time
                                } else {
                                    time
                                };
                                acc.add(&group, start, t, &args, diff as i64);
                            }
                        }
                    }
                    let partials = acc.drain().map(PreOut::Partial);
                    output.session(&cap).give_iterator(dead.into_iter().chain(partials));
                });
            }
        });
    split_pre(out)
}

/// Evaluates an aggregate's filter and its measures' arguments for an event. A measure whose
/// argument and filter are those of an earlier measure (`sum(x)` beside `avg(x)`, `min(x)` and
/// `max(x)`) takes a copy of that measure's value instead of evaluating them again: expressions
/// are pure, so the values are the same.
pub(crate) struct Arguments {
    plan: AggregatePlan,
    funcs: Vec<Func>,
    /// For each measure, the earlier measure with the same argument and filter, if any.
    same_as: Vec<Option<usize>>,
}

impl Arguments {
    pub(crate) fn new(plan: &AggregatePlan, funcs: &[Func]) -> Arguments {
        let m = &plan.measures;
        let same_as = (0..m.len())
            .map(|i| {
                let same = |j: &usize| m[*j].arg.is_some() && m[*j].arg == m[i].arg && m[*j].filter == m[i].filter;
                (0..i).find(same)
            })
            .collect();
        Arguments {
            plan: plan.clone(),
            funcs: funcs.to_vec(),
            same_as,
        }
    }

    /// The filter and the measures' arguments for `event` into `args` (left empty when the
    /// event does not pass the filter). `Some(Null)` marks a measure whose own filter rejected
    /// the event; `None` is `count()`.
    pub(crate) fn of(&self, event: &Event, args: &mut Vec<Option<Value>>) -> Result<(), (&'static str, String)> {
        let plan = &self.plan;
        args.clear();
        if let Some(filter) = &plan.filter {
            if !filter
                .is_true(event)
                .map_err(|e| ("eval_error", format!("where: {e}")))?
            {
                return Ok(());
            }
        }
        for ((m, func), same) in plan.measures.iter().zip(&self.funcs).zip(&self.same_as) {
            let arg = match same {
                Some(j) => args[*j].clone(),
                None => {
                    if let Some(filter) = &m.filter {
                        if !filter
                            .is_true(event)
                            .map_err(|e| ("eval_error", format!("{}: where: {e}", m.name)))?
                        {
                            args.push(Some(Value::Null));
                            continue;
                        }
                    }
                    match &m.arg {
                        None => None,
                        Some(e) => Some(e.eval(event).map_err(|e| ("eval_error", format!("{}: {e}", m.name)))?),
                    }
                }
            };
            // Check the value can enter the measure, so a bad value is rejected before any state changes.
            check(*func, arg.as_ref()).map_err(|e| (e.reason(), format!("{}: {e}", m.name)))?;
            args.push(arg);
        }
        Ok(())
    }
}

pub(crate) fn add_event(state: &mut AggState, funcs: &[Func], args: &[Option<Value>], weight: i64) {
    state.events += weight;
    for ((m, f), arg) in state.measures.iter_mut().zip(funcs).zip(args) {
        m.add(*f, arg.as_ref(), weight)
            .expect("values were checked in `Arguments::of`");
    }
}

/// The state of every window a worker holds, by key. Each key is hashed once per update: the
/// hash finds the window, and then its entry among the changes of the time.
#[derive(Default)]
struct Windows {
    table: HashTable<(WindowKey, AggState)>,
    hasher: rustc_hash::FxBuildHasher,
}

impl Windows {
    fn hash(&self, key: &WindowKey) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The window's state, made by `empty` (and the key cloned) when it is new, and whether it was.
    fn get_or_insert(&mut self, hash: u64, key: &WindowKey, empty: impl FnOnce() -> AggState) -> (&mut AggState, bool) {
        let hasher = &self.hasher;
        match self.table.entry(hash, |(k, _)| k == key, |(k, _)| hasher.hash_one(k)) {
            Entry::Occupied(e) => (&mut e.into_mut().1, false),
            Entry::Vacant(slot) => (&mut slot.insert((key.clone(), empty())).into_mut().1, true),
        }
    }

    fn get(&self, hash: u64, key: &WindowKey) -> Option<&AggState> {
        self.table.find(hash, |(k, _)| k == key).map(|(_, s)| s)
    }

    fn remove(&mut self, key: &WindowKey) {
        if let Ok(e) = self.table.find_entry(self.hash(key), |(k, _)| k == key) {
            e.remove();
        }
    }
}

fn window_reduce<'s>(
    partials: timely::dataflow::StreamVec<'s, u64, Partial>,
    plan: &AggregatePlan,
    funcs: Vec<Func>,
) -> VecCollection<'s, u64, WindowRow, isize> {
    let size = plan.window.size_ms as i64;
    let retain = plan.retain_ms as i64;
    let lag = plan.input_lag_ms as i64;
    let emit = plan.emit;
    let monotonic = plan.monotonic;
    let name = format!("WindowReduce({})", plan.name);
    let exchange = Exchange::new(|(k, _, _): &Partial| stable_hash(k));
    partials
        .unary_frontier::<CapacityContainerBuilder<Vec<(WindowRow, u64, isize)>>, _, _, _>(
            exchange,
            &name,
            move |_, _| {
                let mut pending: Pending<(WindowKey, Delta)> = Pending::default();
                let mut batch: Batch<WindowRow> = Batch::default();
                let mut state = Windows::default();
                // Final mode: windows not yet emitted, by the time they close (`end + lag`).
                let mut open: BTreeMap<i64, Vec<WindowKey>> = BTreeMap::new();
                // Every window, by the time its state is dropped (`end + lag + retain`).
                let mut release: BTreeMap<i64, Vec<WindowKey>> = BTreeMap::new();
                move |(input, frontier), output| {
                    input.for_each_stamp(|cap, data| pending.absorb(&cap, data, |key, delta| (key, delta)));
                    let (ready, limit) = pending.ready(frontier);
                    for (time, updates) in ready {
                        // Windows that ended by `time` are emitted before changes at `time`
                        // revise them.
                        if emit == Emit::Final {
                            close(&mut open, Some(time), &state, &funcs, size, &mut batch);
                        }
                        // The windows changed at `time`, each with its hash and its row before.
                        let mut changed: HashTable<(u64, WindowKey, Option<WindowRow>)> = HashTable::new();
                        for (key, delta) in updates {
                            let close = key.start + size + lag;
                            let hash = state.hash(&key);
                            // The key is cloned only for a new window, not for every update.
                            let (entry, new) = state.get_or_insert(hash, &key, || AggState::empty(&funcs, monotonic));
                            if new {
                                release.entry(close + retain).or_default().push(key.clone());
                                if emit == Emit::Final && (time as i64) < close {
                                    open.entry(close).or_default().push(key.clone());
                                }
                            }
                            // Only changes that are emitted now need the row before them.
                            if emit == Emit::Updates || (time as i64) >= close {
                                if let Entry::Vacant(slot) = changed.entry(hash, |(_, k, _)| *k == key, |(h, _, _)| *h)
                                {
                                    let before =
                                        WindowRow::of_state(&key.group, key.start, key.start + size, entry, &funcs);
                                    slot.insert((hash, key, before));
                                }
                            }
                            delta.apply_to(entry, &funcs);
                        }
                        // Changes are emitted as they happen, except in final mode before the
                        // window's end; after it, they are revisions of an emitted row.
                        let mut out: Vec<(WindowRow, u64, isize)> = Vec::new();
                        for (hash, key, before) in changed {
                            let after = (state.get(hash, &key))
                                .and_then(|s| WindowRow::of_state(&key.group, key.start, key.start + size, s, &funcs));
                            if before == after {
                                continue;
                            }
                            out.extend(before.map(|b| (b, time, -1)));
                            out.extend(after.map(|a| (a, time, 1)));
                        }
                        out.sort();
                        for (row, t, r) in out {
                            batch.give(row, t, r);
                        }
                    }
                    if emit == Emit::Final {
                        close(&mut open, limit, &state, &funcs, size, &mut batch);
                    }
                    batch.send(&pending.caps, output);
                    // Drop the state of windows no change can reach any more.
                    for (_, keys) in crate::render::pending::due(&mut release, limit) {
                        for key in keys {
                            state.remove(&key);
                        }
                    }
                    // Hold capabilities only for pending times and, in final mode, open window ends.
                    let mut hold: Option<u64> = pending.next_time();
                    if let Some(end) = open.keys().next() {
                        hold = Some(hold.map_or(*end as u64, |h| h.min(*end as u64)));
                    }
                    pending.caps.downgrade(hold.iter());
                }
            },
        )
        .as_collection()
}

/// Final mode: emits into `batch`, stamped with the time they close (their end, plus the
/// input's lag), the open windows that close at or before `until` (all when `None`), and marks
/// them emitted. Their state stays until released.
fn close(
    open: &mut BTreeMap<i64, Vec<WindowKey>>,
    until: Option<u64>,
    state: &Windows,
    funcs: &[Func],
    size: i64,
    batch: &mut Batch<WindowRow>,
) {
    let ends: Vec<i64> = open
        .keys()
        .copied()
        .take_while(|e| until.is_none_or(|l| *e <= l as i64))
        .collect();
    for end in ends {
        let mut out: Vec<(WindowRow, u64, isize)> = open
            .remove(&end)
            .expect("key listed above")
            .into_iter()
            .filter_map(|key| {
                let row = WindowRow::of_state(
                    &key.group,
                    key.start,
                    key.start + size,
                    state.get(state.hash(&key), &key)?,
                    funcs,
                )?;
                Some((row, end as u64, 1))
            })
            .collect();
        out.sort();
        for (row, t, r) in out {
            batch.give(row, t, r);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::value::Sym;

    fn aggregate(measures: &str) -> AggregatePlan {
        let spec = format!(
            "[pipeline]\nname = \"t\"\n[sources.events]\npath = \"e.ndjson\"\ntime_field = \"t\"\n\
             [[aggregates]]\nname = \"a\"\nsource = \"events\"\nwindow = {{ tumbling = \"1m\" }}\n{measures}"
        );
        let plan = crate::plan::plan_str(&spec, Path::new("t.toml"), Path::new("."), &[]).unwrap();
        let first = plan.aggregates().next().unwrap().clone();
        first
    }

    /// Each measure's argument on its own, as `Arguments::of` did before it shared them.
    fn one_by_one(plan: &AggregatePlan, funcs: &[Func], event: &Event) -> Result<Vec<Option<Value>>, String> {
        let mut args = Vec::new();
        for (m, func) in plan.measures.iter().zip(funcs) {
            if let Some(f) = &m.filter {
                if !f.is_true(event).map_err(|e| e.to_string())? {
                    args.push(Some(Value::Null));
                    continue;
                }
            }
            let arg = m
                .arg
                .as_ref()
                .map(|e| e.eval(event))
                .transpose()
                .map_err(|e| e.to_string())?;
            check(*func, arg.as_ref()).map_err(|e| format!("{}: {e}", m.name))?;
            args.push(arg);
        }
        Ok(args)
    }

    #[test]
    fn measures_with_one_argument_and_filter_share_its_value() {
        let plan = aggregate(
            "measures.total = \"sum(x)\"\nmeasures.mean = \"avg(x) where kind == 'a'\"\n\
             measures.low = \"min(x)\"\nmeasures.n = \"count()\"\nmeasures.all = \"count()\"\n\
             measures.high = \"max(x) where kind == 'a'\"\nmeasures.xs = \"count_distinct(y)\"\n\
             measures.ys = \"sum(y)\"",
        );
        let funcs: Vec<Func> = plan.measures.iter().map(|m| m.func).collect();
        let arguments = Arguments::new(&plan, &funcs);
        let at = |name: &str| plan.measures.iter().position(|m| m.name == name).unwrap();
        // Only an earlier measure with the same argument and the same filter is shared; `count()`
        // has no argument to share.
        for (a, b) in [("total", "low"), ("mean", "high"), ("xs", "ys")] {
            let (first, second) = (at(a).min(at(b)), at(a).max(at(b)));
            assert_eq!(
                (arguments.same_as[first], arguments.same_as[second]),
                (None, Some(first)),
                "{a}, {b}"
            );
        }
        assert_eq!((arguments.same_as[at("n")], arguments.same_as[at("all")]), (None, None));
        let mut args = Vec::new();
        for (kind, x, y) in [
            ("a", Value::Int(3), Value::str("u")),
            ("b", Value::float(2.5), Value::Int(4)),
            ("a", Value::Null, Value::Null),
            ("a", Value::Int(1), Value::float(f64::MAX)),
        ] {
            let payload = vec![
                (Sym::new("kind"), Value::str(kind)),
                (Sym::new("x"), x),
                (Sym::new("y"), y),
            ];
            let event = Event::new(5, Sym::new("e"), payload);
            let got = arguments
                .of(&event, &mut args)
                .map(|()| args.clone())
                .map_err(|(_, d)| d);
            assert_eq!(got, one_by_one(&plan, &funcs, &event));
        }
    }
}
