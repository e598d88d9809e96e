//! Session-window aggregates: `events: Collection<Event>` (insert-only) → `rows:
//! Collection<WindowRow>` (plus dead letters). Per group, events less than `gap` apart in event
//! time form one session `[first event, last event + gap)`; its row has `start = first` and
//! `end = last + gap`. Times are event-time ticks.
//!
//! ```text
//!  events ──► pre_session ──(exchange by group)──► session_reduce ──► rows
//!   (Event, t, +1)  │  per batch:                     state: group → Sessions<AggState>
//!                   │  (group, event time, t) → AggState   applies times in order
//!                   └──► dead letters (type_mismatch, out_of_range, eval_error)
//! ```
//!
//! - `pre_session` evaluates the filter, the group key and the measures' arguments (as the
//!   fixed windows' `pre_aggregate` does) and sums the events of one group, event time and
//!   timestamp. Only these partial states cross workers, to the worker of their group.
//! - `session_reduce` applies updates one time at a time, in time order, once the frontier has
//!   passed that time ([`crate::model::session::Sessions::insert`]): an event starts a session,
//!   extends one or merges several. Sessions are a function of the set of events, so the output
//!   does not depend on batching or worker count.
//!   - emit `updates`: at each time, the rows of the sessions that changed are retracted and
//!     the rows of the sessions they became inserted (a merge retracts both rows);
//!   - emit `final`: a session's row once, stamped `end + lag`, when the frontier reaches it:
//!     a later event is at or after `end` and cannot join it.
//! - State release: when the frontier reaches `end + lag`, the session is dropped. The input is
//!   insert-only (validation refuses session windows over a retracting input: a retraction
//!   could split a session), so nothing can reach a released session. Memory follows the open
//!   sessions and their measures' states.
//!
//! ```text
//!  event time ──●──●────●─────────[last + gap)──►   one session: each ● less than gap after the one before
//! ```

use std::collections::{BTreeMap, HashSet};

use rustc_hash::FxHashMap as HashMap;

use differential_dataflow::{AsCollection, VecCollection};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;

use crate::dead_letter::DeadLetter;
use crate::event::Event;
use crate::model::aggregate::AggState;
use crate::model::session::Sessions;
use crate::plan::{AggregatePlan, Emit, Func};
use crate::render::pending::{Batch, Pending};
use crate::render::window::{
    add_event, aggregate_letter, batch_out, group_of, split_pre, stable_hash, Arguments, PreOut, WindowRow,
};
use crate::value::Value;

/// A group's events at one event time, at one timestamp.
type Partial = ((Vec<Value>, i64), u64, AggState);

/// Renders a session-window aggregate with gap `gap_ms` over `events`.
/// `fields` names the source's time and type fields, for the records of dead letters.
pub fn render<'s>(
    events: VecCollection<'s, u64, Event, isize>,
    plan: &AggregatePlan,
    gap_ms: u64,
    fields: (&str, &str),
) -> (
    VecCollection<'s, u64, WindowRow, isize>,
    VecCollection<'s, u64, DeadLetter, isize>,
) {
    let funcs: Vec<Func> = plan.measures.iter().map(|m| m.func).collect();
    let (partials, dead) = pre_session(events, plan, &funcs, fields);
    let rows = session_reduce(partials, plan, gap_ms as i64, funcs);
    (rows, dead)
}

fn pre_session<'s>(
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
    let name = format!("PreSession({})", plan.name);
    let out = events
        .inner
        .unary::<CapacityContainerBuilder<Vec<PreOut<Partial>>>, _, _, _>(Pipeline, &name, move |_, _| {
            let mut acc: HashMap<((Vec<Value>, i64), u64), AggState> = HashMap::default();
            let mut args: Vec<Option<Value>> = Vec::with_capacity(funcs.len());
            let arguments = Arguments::new(&plan, &funcs);
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let mut dead = Vec::new();
                    for batch in data {
                        for (event, time, diff) in batch.drain(..) {
                            if let Err((reason, detail)) = arguments.of(&event, &mut args) {
                                if diff > 0 {
                                    let letter =
                                        aggregate_letter(&plan, &event, (&time_field, &type_field), reason, detail);
                                    dead.push(PreOut::Dead(letter, time, diff));
                                }
                                continue;
                            }
                            if args.is_empty() {
                                continue; // filtered out
                            }
                            let group = group_of(&plan, &event);
                            let state = acc
                                .entry(((group, event.time), time))
                                .or_insert_with(|| AggState::empty(&funcs, plan.monotonic));
                            add_event(state, &funcs, &args, diff as i64);
                        }
                    }
                    output.session(&cap).give_iterator(batch_out(dead, &mut acc));
                });
            }
        });
    split_pre(out)
}

/// A session's row: its group, `[first, last + gap)` and measures (`None` when it is empty).
fn row(group: &[Value], sessions: &Sessions<AggState>, first: i64, gap: i64, funcs: &[Func]) -> Option<WindowRow> {
    let s = sessions.get(first)?;
    WindowRow::of_state(group, s.first, s.end(gap), s.state, funcs)
}

fn session_reduce<'s>(
    partials: timely::dataflow::StreamVec<'s, u64, Partial>,
    plan: &AggregatePlan,
    gap: i64,
    funcs: Vec<Func>,
) -> VecCollection<'s, u64, WindowRow, isize> {
    let lag = plan.input_lag_ms as i64;
    let emit = plan.emit;
    let name = format!("SessionReduce({})", plan.name);
    let exchange = Exchange::new(|((group, _), _, _): &Partial| stable_hash(group));
    partials
        .unary_frontier::<CapacityContainerBuilder<Vec<(WindowRow, u64, isize)>>, _, _, _>(
            exchange,
            &name,
            move |_, _| {
                let mut pending: Pending<((Vec<Value>, i64), AggState)> = Pending::default();
                let mut batch: Batch<WindowRow> = Batch::default();
                let mut state: HashMap<Vec<Value>, Sessions<AggState>> = HashMap::default();
                // Sessions by the time they close (`end + lag`), as `(group, first)`. An entry
                // is stale once its session has grown or merged; a newer entry then stands.
                let mut closing: BTreeMap<i64, Vec<(Vec<Value>, i64)>> = BTreeMap::new();
                move |(input, frontier), output| {
                    input.for_each_stamp(|cap, data| pending.absorb(&cap, data, |key, delta| (key, delta)));
                    let (ready, limit) = pending.ready(frontier);
                    for (time, updates) in ready {
                        // Sessions that closed by `time` are emitted and dropped first.
                        close(&mut closing, Some(time), &mut state, gap, lag, emit, &funcs, &mut batch);
                        // Updates mode: rows of sessions as they were before `time`, and the
                        // sessions made at `time`.
                        let mut before: Vec<WindowRow> = Vec::new();
                        let mut made: HashSet<(Vec<Value>, i64)> = HashSet::new();
                        for ((group, t), delta) in updates {
                            let sessions = state.entry(group.clone()).or_default();
                            if emit == Emit::Updates {
                                for f in sessions.reach(t, gap) {
                                    if !made.remove(&(group.clone(), f)) {
                                        before.extend(row(&group, sessions, f, gap, &funcs));
                                    }
                                }
                            }
                            let (_, first) = sessions.insert(t, delta, gap, |a, b| a.plus(&b));
                            let end = sessions.get(first).expect("just inserted").end(gap);
                            closing.entry(end + lag).or_default().push((group.clone(), first));
                            if emit == Emit::Updates {
                                made.insert((group, first));
                            }
                        }
                        let mut diffs: BTreeMap<WindowRow, isize> = BTreeMap::new();
                        for r in before {
                            *diffs.entry(r).or_default() -= 1;
                        }
                        for (group, first) in made {
                            if let Some(r) = row(&group, &state[&group], first, gap, &funcs) {
                                *diffs.entry(r).or_default() += 1;
                            }
                        }
                        for (r, d) in diffs.into_iter().filter(|(_, d)| *d != 0) {
                            batch.give(r, time, d);
                        }
                    }
                    close(&mut closing, limit, &mut state, gap, lag, emit, &funcs, &mut batch);
                    batch.send(&pending.caps, output);
                    // Hold capabilities for pending times and, in final mode, for sessions to emit.
                    let mut hold: Option<u64> = pending.next_time();
                    if emit == Emit::Final {
                        if let Some(c) = closing.keys().next() {
                            hold = Some(hold.map_or(*c as u64, |h| h.min(*c as u64)));
                        }
                    }
                    pending.caps.downgrade(hold.iter());
                }
            },
        )
        .as_collection()
}

/// Drops the sessions that close (`end + lag`) at or before `until` (all when `None`); in final
/// mode, emits their rows into `batch`, stamped with that time, first.
#[allow(clippy::too_many_arguments)]
fn close(
    closing: &mut BTreeMap<i64, Vec<(Vec<Value>, i64)>>,
    until: Option<u64>,
    state: &mut HashMap<Vec<Value>, Sessions<AggState>>,
    gap: i64,
    lag: i64,
    emit: Emit,
    funcs: &[Func],
    batch: &mut Batch<WindowRow>,
) {
    for (at, entries) in crate::render::pending::due(closing, until) {
        let mut out: Vec<(WindowRow, u64, isize)> = Vec::new();
        for (group, first) in entries {
            let Some(sessions) = state.get_mut(&group) else {
                continue;
            };
            // A stale entry: the session has grown, merged or been dropped since.
            if sessions.get(first).is_none_or(|s| s.end(gap) + lag != at) {
                continue;
            }
            if emit == Emit::Final {
                out.extend(row(&group, sessions, first, gap, funcs).map(|r| (r, at as u64, 1)));
            }
            sessions.remove(first);
            if sessions.is_empty() {
                state.remove(&group);
            }
        }
        out.sort();
        for (r, t, d) in out {
            batch.give(r, t, d);
        }
    }
}
