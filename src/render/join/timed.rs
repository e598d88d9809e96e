//! Interval and window joins: `left: Collection<Event>` × `right: Collection<Event>` (both
//! insert-only) → `Collection<JoinOut>`. Times are event-time ticks; updates are applied one
//! time at a time, in time order, once both input frontiers have passed it.
//!
//! ```text
//!  left ──(exchange by key[, window])──┐  state: key → left rows (with their match counts),
//!                                       ├─► TimedJoin        right rows, each with its release time
//!  right ─(exchange by key[, window])──┘     │ pair emitted when its later row arrives (time t)
//!                                            └ left join: unmatched left row emitted at its release
//! ```
//!
//! - Interval: `right.time` within `[left.time - before, bound]`, `bound` being
//!   `left.time + after` or the left's `until` column. Window: both rows in one window (each
//!   row in every window covering its time; the key includes the window's start).
//! - Release: a row is dropped once no partner can still arrive, that is when the frontier
//!   reaches its bound plus the other side's lag plus 1: for a left row, `bound` (window:
//!   `end - 1`); for a right row, `right.time + before` (window: `end - 1`). A left join emits
//!   a left row that matched nothing then, at that time, once: the output stays insert-only.
//! - Within one time, left rows are matched against the right rows before them, then right
//!   rows against all left rows: each pair once, whatever the batching.
//!
//! ```text
//!  left row (time tl) ──[ rights in [tl - before, bound] pair with it ]── bound + lag_R + 1: released
//! ```

use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;

use differential_dataflow::{AsCollection, VecCollection};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

use super::{key_of, JoinOut, Shape};
use crate::event::Event;
use crate::model::window::window_starts;
use crate::plan::join::{BinaryJoinPlan, JoinKind, JoinTime, Upper};
use crate::render::pending::{due, Batch, Pending};
use crate::render::EventsOf;
use crate::value::{stable_hash, Value};

/// A key's values, with the window's start for window joins.
type Key = Vec<Value>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Left,
    Right,
}

/// A left row in state: its multiplicity, how many right rows it paired with (passing
/// `where`), and when it is released.
struct LeftRow {
    event: Event,
    diff: isize,
    matched: isize,
    release: i64,
}

#[derive(Default)]
struct KeyState {
    left: Vec<LeftRow>,
    /// Right rows with their multiplicities and release times.
    right: Vec<(Event, isize, i64)>,
}

/// The join's time condition, bound to its lags.
#[derive(Clone)]
struct Bounds {
    time: JoinTime,
    left_lag: i64,
    right_lag: i64,
}

impl Bounds {
    /// The latest right time that can pair with `left` (in the window starting at `start`).
    fn left_bound(&self, left: &Event, start: Option<i64>) -> i64 {
        match &self.time {
            JoinTime::Interval {
                upper: Upper::After(a), ..
            } => left.time.saturating_add(*a as i64),
            JoinTime::Interval {
                upper: Upper::Column { accessor, .. },
                ..
            } => match accessor.get(left) {
                Some(Value::Time(t)) | Some(Value::Int(t)) => t,
                // No bound: it pairs with nothing.
                _ => i64::MIN,
            },
            JoinTime::Window(w) => start.expect("window rows have a start") + w.size_ms as i64 - 1,
            JoinTime::Changelog => unreachable!("a changelog join is not timed"),
        }
    }

    /// The latest left time that can pair with `right`.
    fn right_bound(&self, right: &Event, start: Option<i64>) -> i64 {
        match &self.time {
            JoinTime::Interval { before_ms, .. } => right.time.saturating_add(*before_ms as i64),
            JoinTime::Window(w) => start.expect("window rows have a start") + w.size_ms as i64 - 1,
            JoinTime::Changelog => unreachable!("a changelog join is not timed"),
        }
    }

    /// Whether `left` and `right` (with equal keys) pair.
    fn pair(&self, left: &Event, right: &Event, left_bound: i64) -> bool {
        match &self.time {
            JoinTime::Interval { before_ms, .. } => {
                right.time >= left.time.saturating_sub(*before_ms as i64) && right.time <= left_bound
            }
            _ => true,
        }
    }
}

/// Renders an interval or window join of `left` and `right`.
pub fn render<'s>(
    left: EventsOf<'s>,
    right: EventsOf<'s>,
    plan: &BinaryJoinPlan,
) -> VecCollection<'s, u64, JoinOut, isize> {
    let window = match plan.time {
        JoinTime::Window(w) => Some(w),
        _ => None,
    };
    let outer = plan.kind == JoinKind::Left;
    // Keyed rows, once per window for window joins. A left join keeps left rows whose key is
    // null: they pair with nothing, and are emitted unmatched.
    let keyed = move |key: Vec<crate::event::Accessor>, keep_null: bool| {
        move |e: Event| -> Vec<(Key, Event)> {
            let key = match key_of(&key, &e) {
                Some(k) => k,
                None if keep_null => vec![Value::Null; key.len()],
                None => return Vec::new(),
            };
            match window {
                None => vec![(key, e)],
                Some(w) => window_starts(w, e.time)
                    .map(|s| {
                        let mut k = key.clone();
                        k.push(Value::Time(s));
                        (k, e.clone())
                    })
                    .collect(),
            }
        }
    };
    let left = left.flat_map(keyed(plan.left_key.clone(), outer));
    let right = right.flat_map(keyed(plan.right_key.clone(), false));
    let by_key = || Exchange::new(|((k, _), _, _): &((Key, Event), u64, isize)| stable_hash(k));
    let bounds = Bounds {
        time: plan.time.clone(),
        left_lag: plan.left_lag_ms as i64,
        right_lag: plan.right_lag_ms as i64,
    };
    let shape = Shape::new(plan);
    let name = format!("TimedJoin({})", plan.name);
    left.inner
        .binary_frontier::<_, CapacityContainerBuilder<Vec<(JoinOut, u64, isize)>>, _, _, _, _>(
            right.inner,
            by_key(),
            by_key(),
            &name,
            move |_, _| {
                let mut pending: Pending<(Side, Key, Event, isize)> = Pending::default();
                let mut batch: Batch<JoinOut> = Batch::default();
                let mut state: HashMap<Key, KeyState> = HashMap::default();
                // Keys with rows to release, by the time they are due.
                let mut release: BTreeMap<i64, Vec<Key>> = BTreeMap::new();
                move |(left_in, left_frontier), (right_in, right_frontier), output| {
                    left_in.for_each_stamp(|cap, data| pending.absorb(&cap, data, |(k, e), d| (Side::Left, k, e, d)));
                    right_in.for_each_stamp(|cap, data| pending.absorb(&cap, data, |(k, e), d| (Side::Right, k, e, d)));
                    let limit = left_frontier
                        .frontier()
                        .iter()
                        .chain(right_frontier.frontier().iter())
                        .min()
                        .copied();
                    for (time, mut updates) in pending.ready_until(limit) {
                        let mut out: Vec<(JoinOut, u64, isize)> = Vec::new();
                        // Left rows first: each meets the right rows of earlier times; then the
                        // right rows meet every left row, this time's included.
                        updates.sort_by_key(|(side, ..)| *side == Side::Right);
                        for (side, key, event, diff) in updates {
                            let start = window.map(|_| match key.last() {
                                Some(Value::Time(s)) => *s,
                                _ => unreachable!("window keys end with the window's start"),
                            });
                            let st = state.entry(key.clone()).or_default();
                            let due_at;
                            match side {
                                Side::Left => {
                                    let bound = bounds.left_bound(&event, start);
                                    let mut matched = 0;
                                    for (r, rd, _) in &st.right {
                                        if !bounds.pair(&event, r, bound) {
                                            continue;
                                        }
                                        let row = shape.row(&event, Some(r), start);
                                        match shape.passes(&row) {
                                            Ok(true) => {
                                                matched += rd;
                                                out.push((JoinOut::Row(row), time, diff * rd));
                                            }
                                            Ok(false) => {}
                                            Err(letter) => out.push((JoinOut::Dead(letter), time, 1)),
                                        }
                                    }
                                    due_at = (bound.saturating_add(bounds.right_lag + 1)).max(time as i64);
                                    st.left.push(LeftRow {
                                        event,
                                        diff,
                                        matched,
                                        release: due_at,
                                    });
                                }
                                Side::Right => {
                                    for l in st.left.iter_mut() {
                                        let bound = bounds.left_bound(&l.event, start);
                                        if !bounds.pair(&l.event, &event, bound) {
                                            continue;
                                        }
                                        let row = shape.row(&l.event, Some(&event), start);
                                        match shape.passes(&row) {
                                            Ok(true) => {
                                                l.matched += diff;
                                                out.push((JoinOut::Row(row), time, diff * l.diff));
                                            }
                                            Ok(false) => {}
                                            Err(letter) => out.push((JoinOut::Dead(letter), time, 1)),
                                        }
                                    }
                                    let bound = bounds.right_bound(&event, start);
                                    due_at = (bound.saturating_add(bounds.left_lag + 1)).max(time as i64);
                                    st.right.push((event, diff, due_at));
                                }
                            }
                            release.entry(due_at).or_default().push(key);
                        }
                        out.sort();
                        for (o, t, d) in out {
                            batch.give(o, t, d);
                        }
                    }
                    // Rows no partner can reach any more: dropped, and a left join's unmatched
                    // left rows emitted.
                    for (at, keys) in due(&mut release, limit) {
                        let mut out: Vec<(JoinOut, u64, isize)> = Vec::new();
                        for key in keys {
                            let Some(st) = state.get_mut(&key) else { continue };
                            let start = window.map(|_| match key.last() {
                                Some(Value::Time(s)) => *s,
                                _ => unreachable!("window keys end with the window's start"),
                            });
                            st.right.retain(|(_, _, r)| *r > at);
                            let (gone, kept): (Vec<LeftRow>, Vec<LeftRow>) =
                                std::mem::take(&mut st.left).into_iter().partition(|l| l.release <= at);
                            st.left = kept;
                            for l in gone.into_iter().filter(|l| outer && l.matched == 0) {
                                out.push((JoinOut::Row(shape.row(&l.event, None, start)), at as u64, l.diff));
                            }
                            if st.left.is_empty() && st.right.is_empty() {
                                state.remove(&key);
                            }
                        }
                        out.sort();
                        for (o, t, d) in out {
                            batch.give(o, t, d);
                        }
                    }
                    batch.send(&pending.caps, output);
                    let next_release = release.keys().next().map(|t| *t as u64);
                    let hold = [pending.next_time(), next_release].into_iter().flatten().min();
                    pending.caps.downgrade(hold.iter());
                }
            },
        )
        .as_collection()
}
