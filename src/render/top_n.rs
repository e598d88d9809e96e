//! Top-N per partition: `events: Collection<Event>` → `top: Collection<Event>` (plus dead
//! letters). Times are event-time ticks; a partition's top changes at the times of the input
//! updates that change it, and each row keeps its input row's event time.
//!
//! ```text
//!  events ──(exchange by partition values)──► TopN ──► top rows (± when displaced)
//!   (Event, t, ±1)              state: partition → rows in order_by order, with counts
//!                               applies one time at a time, in time order
//! ```
//!
//! - Rows are ordered by the plan's `order_by` (each key ascending or descending), then by the
//!   event time (earlier first), then by the event type and payload in their canonical
//!   [`Value`] order: a total order, so the top does not depend on arrival order, batching or
//!   the number of workers.
//! - `with_ties = false` keeps the first `n` rows (`ROW_NUMBER() <= n`; identical rows take
//!   consecutive places); `true` keeps every row whose rank (1 + the rows strictly before it on
//!   `order_by`) is at most `n` (`RANK() <= n`). `rank` adds that 1-based rank to each row.
//! - At each time, the operator applies the time's updates to the partitions they touch and
//!   emits the difference between each partition's top before and after: `(row, t, -1)` for a
//!   row that left it (displaced, or retracted upstream) and `(row, t, +1)` for one that
//!   entered. A row whose rank changes is retracted and inserted with its new rank.
//! - State: over an insert-only input (`monotonic`), a row below the top can never come back,
//!   so a partition keeps only its top rows. Over a retracting input it keeps every row (a
//!   retraction of a top row promotes the next one). Windowed partitions (`release_lag_ms`)
//!   are dropped when the frontier passes their rows' time plus that lag, after which the
//!   aggregate upstream changes nothing in them; an update that still reached one would be a
//!   dead letter `closed_window`. Other partitions are kept for the whole run.
//!
//! ```text
//!  window rows (time e) ──[ arrive and revise until e + lag ]── dropped ──►
//! ```

use std::cmp::Ordering;
use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;

use differential_dataflow::{AsCollection, VecCollection};
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

use crate::dead_letter::DeadLetter;
use crate::event::Event;
use crate::plan::TopNPlan;
use crate::render::pending::{Batch, Pending};
use crate::render::window::stable_hash;
use crate::value::{format_time, Sym, Value};

/// A row's `order_by` values, each with whether it sorts descending (the same flags for every
/// row of a stage, so equality agrees with the order).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SortKey(pub Vec<(bool, Value)>);

impl Ord for SortKey {
    fn cmp(&self, other: &Self) -> Ordering {
        for ((desc, a), (_, b)) in self.0.iter().zip(&other.0) {
            let o = if *desc { b.cmp(a) } else { a.cmp(b) };
            if o != Ordering::Equal {
                return o;
            }
        }
        self.0.len().cmp(&other.0.len())
    }
}

impl PartialOrd for SortKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One partition's rows, in order, with their counts.
#[derive(Default)]
struct Partition {
    rows: BTreeMap<(SortKey, Event), isize>,
}

/// The rows a partition's top holds, with their multiplicities: `n` places (`ROW_NUMBER`), or
/// every row ranked at most `n` (`RANK`), each with its rank when `rank` names a field.
fn top(rows: &BTreeMap<(SortKey, Event), isize>, n: u64, with_ties: bool, rank: Option<Sym>) -> BTreeMap<Event, isize> {
    let mut out: BTreeMap<Event, isize> = BTreeMap::new();
    let mut add = |event: &Event, r: u64, count: isize| {
        let row = match rank {
            Some(name) => event.clone().with_field(name, Value::Int(r as i64)),
            None => event.clone(),
        };
        *out.entry(row).or_default() += count;
    };
    // Places taken so far, and the last key with the rank it got.
    let mut place: u64 = 0;
    let mut last: Option<(&SortKey, u64)> = None;
    for ((key, event), count) in rows {
        if *count <= 0 {
            continue;
        }
        let count = *count as u64;
        if with_ties {
            let r = match last {
                Some((k, r)) if k == key => r,
                _ => place + 1,
            };
            if r > n {
                break;
            }
            add(event, r, count as isize);
            last = Some((key, r));
            place += count;
        } else {
            if place >= n {
                break;
            }
            let taken = count.min(n - place);
            if rank.is_some() {
                for k in 1..=taken {
                    add(event, place + k, 1);
                }
            } else {
                add(event, place + 1, taken as isize);
            }
            place += taken;
        }
    }
    out
}

/// Over an insert-only input, drops the rows below the top: they can never re-enter it.
fn prune(rows: &mut BTreeMap<(SortKey, Event), isize>, n: u64, with_ties: bool) {
    let mut place: u64 = 0;
    let mut cut: Option<(SortKey, Event)> = None;
    let mut last: Option<&SortKey> = None;
    for ((key, event), count) in rows.iter() {
        let tied = with_ties && last == Some(key);
        if place >= n && !tied {
            cut = Some((key.clone(), event.clone()));
            break;
        }
        place += (*count).max(0) as u64;
        last = Some(key);
    }
    if let Some(cut) = cut {
        rows.split_off(&cut);
    }
}

/// What the operator emits.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum TopOut {
    Row(Event),
    Dead(Box<DeadLetter>),
}

/// A top-N stage in the plan's graph: its rows as the main collection (events, read by later
/// stages as they are). `fields` are the input events' time and type field names.
pub fn stage<'s>(
    events: VecCollection<'s, u64, Event, isize>,
    plan: &TopNPlan,
    fields: (&str, &str),
) -> crate::render::StageOut<'s> {
    let out = render(events, plan, fields);
    let [rows, dead] = crate::render::split_into(out, |o| match o {
        TopOut::Row(_) => 0,
        TopOut::Dead(_) => 1,
    });
    crate::render::StageOut {
        main: crate::render::Coll::Events(rows.flat_map(|o| match o {
            TopOut::Row(e) => Some(e),
            TopOut::Dead(_) => None,
        })),
        ports: Vec::new(),
        errs: vec![dead.flat_map(|o| match o {
            TopOut::Dead(d) => Some(*d),
            TopOut::Row(_) => None,
        })],
    }
}

fn render<'s>(
    events: VecCollection<'s, u64, Event, isize>,
    plan: &TopNPlan,
    fields: (&str, &str),
) -> VecCollection<'s, u64, TopOut, isize> {
    let plan = plan.clone();
    let (time_field, type_field) = (fields.0.to_string(), fields.1.to_string());
    let partition_by: Vec<_> = plan.partition_by.iter().map(|(_, a)| a.clone()).collect();
    let keyed = events.map(move |e| {
        let key: Vec<Value> = partition_by.iter().map(|a| a.get(&e).unwrap_or(Value::Null)).collect();
        (key, e)
    });
    let name = format!("TopN({})", plan.name);
    let exchange = Exchange::new(|((k, _), _, _): &((Vec<Value>, Event), u64, isize)| stable_hash(k));
    keyed
        .inner
        .unary_frontier::<CapacityContainerBuilder<Vec<(TopOut, u64, isize)>>, _, _, _>(exchange, &name, move |_, _| {
            let rank = plan.rank.as_deref().map(Sym::new);
            let (n, with_ties, monotonic) = (plan.n, plan.with_ties, plan.monotonic);
            let order_by = plan.order_by.clone();
            let sort_key = move |e: &Event| {
                SortKey(
                    order_by
                        .iter()
                        .map(|o| (o.desc, o.accessor.get(e).unwrap_or(Value::Null)))
                        .collect(),
                )
            };
            let mut pending: Pending<(Vec<Value>, Event, isize)> = Pending::default();
            let mut batch: Batch<TopOut> = Batch::default();
            let mut state: HashMap<Vec<Value>, Partition> = HashMap::default();
            // Windowed partitions, by the time their state is dropped.
            let mut release: BTreeMap<i64, Vec<Vec<Value>>> = BTreeMap::new();
            let mut released_at: HashMap<Vec<Value>, i64> = HashMap::default();
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, data| pending.absorb(&cap, data, |(key, event), diff| (key, event, diff)));
                let (ready, limit) = pending.ready(frontier);
                for (time, updates) in ready {
                    let mut touched: BTreeMap<Vec<Value>, Vec<(Event, isize)>> = BTreeMap::new();
                    let mut out: Vec<(TopOut, u64, isize)> = Vec::new();
                    for (key, event, diff) in updates {
                        if let Some(lag) = plan.release_lag_ms {
                            let drop_at = event.time.saturating_add(lag as i64 + 1);
                            if time as i64 >= drop_at {
                                let letter = closed(&plan, &event, time, drop_at, (&time_field, &type_field));
                                out.push((TopOut::Dead(Box::new(letter)), time, diff.abs()));
                                continue;
                            }
                            let at = released_at.entry(key.clone()).or_insert(i64::MIN);
                            if drop_at > *at {
                                *at = drop_at;
                                release.entry(drop_at).or_default().push(key.clone());
                            }
                        }
                        touched.entry(key).or_default().push((event, diff));
                    }
                    for (key, changes) in touched {
                        let part = state.entry(key.clone()).or_default();
                        let before = top(&part.rows, n, with_ties, rank);
                        for (event, diff) in changes {
                            *part.rows.entry((sort_key(&event), event)).or_insert(0) += diff;
                        }
                        part.rows.retain(|_, c| *c != 0);
                        let after = top(&part.rows, n, with_ties, rank);
                        if monotonic {
                            prune(&mut part.rows, n, with_ties);
                        }
                        if part.rows.is_empty() {
                            state.remove(&key);
                        }
                        let mut diff: BTreeMap<Event, isize> = before.into_iter().map(|(e, c)| (e, -c)).collect();
                        for (e, c) in after {
                            *diff.entry(e).or_default() += c;
                        }
                        out.extend(
                            diff.into_iter()
                                .filter(|(_, c)| *c != 0)
                                .map(|(e, c)| (TopOut::Row(e), time, c)),
                        );
                    }
                    out.sort();
                    for (o, t, n) in out {
                        batch.give(o, t, n);
                    }
                }
                batch.send(&pending.caps, output);
                // Drop windowed partitions no update can reach any more.
                for (at, keys) in crate::render::pending::due(&mut release, limit) {
                    for key in keys {
                        if released_at.get(&key) == Some(&at) {
                            released_at.remove(&key);
                            state.remove(&key);
                        }
                    }
                }
                let hold = pending.next_time();
                pending.caps.downgrade(hold.iter());
            }
        })
        .as_collection()
}

/// The dead letter of an update that reaches a windowed partition at `time`, at or after
/// `drop_at`, when its state was dropped.
fn closed(plan: &TopNPlan, event: &Event, time: u64, drop_at: i64, fields: (&str, &str)) -> DeadLetter {
    DeadLetter {
        stage: format!("top_n:{}", plan.name),
        reason: "closed_window".to_string(),
        detail: format!(
            "update at {} of a row of time {}, whose partition accepts changes until {}",
            format_time(time as i64),
            format_time(event.time),
            format_time(drop_at)
        ),
        location: format!("{} event at {}", event.kind, format_time(event.time)),
        record: event.json_text(fields.0, fields.1),
        event_time: Some(event.time),
        original: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(items: &[(i64, i64, isize)]) -> BTreeMap<(SortKey, Event), isize> {
        // (score, time, count), ordered by score descending.
        items
            .iter()
            .map(|(score, t, c)| {
                let e = Event::new(*t, Sym::new("x"), vec![(Sym::new("s"), Value::Int(*score))]);
                ((SortKey(vec![(true, Value::Int(*score))]), e), *c)
            })
            .collect()
    }

    /// (score, rank, count), sorted.
    fn ranks(top: &BTreeMap<Event, isize>) -> Vec<(i64, i64, isize)> {
        let mut out: Vec<(i64, i64, isize)> = top
            .iter()
            .map(|(e, c)| {
                let get = |n: &str| match e.payload.iter().find(|(k, _)| k.as_str() == n) {
                    Some((_, Value::Int(v))) => *v,
                    _ => -1,
                };
                (get("s"), get("rank"), *c)
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn row_number_and_rank_keep_n_places_or_ties() {
        let r = rows(&[(9, 1, 1), (7, 2, 1), (7, 3, 1), (5, 4, 1)]);
        let rank = Some(Sym::new("rank"));
        assert_eq!(ranks(&top(&r, 2, false, rank)), vec![(7, 2, 1), (9, 1, 1)]);
        assert_eq!(ranks(&top(&r, 2, true, rank)), vec![(7, 2, 1), (7, 2, 1), (9, 1, 1)]);
        assert_eq!(ranks(&top(&r, 3, true, rank)), vec![(7, 2, 1), (7, 2, 1), (9, 1, 1)]);
        assert_eq!(ranks(&top(&r, 4, true, rank)).len(), 4);
        // Identical rows take consecutive places.
        let dup = rows(&[(9, 1, 3)]);
        assert_eq!(ranks(&top(&dup, 2, false, rank)), vec![(9, 1, 1), (9, 2, 1)]);
        assert_eq!(ranks(&top(&dup, 2, false, None)), vec![(9, -1, 2)]);
        assert_eq!(ranks(&top(&dup, 1, true, None)), vec![(9, -1, 3)]);
    }

    #[test]
    fn pruning_keeps_the_top_and_its_ties() {
        let mut r = rows(&[(9, 1, 1), (7, 2, 1), (7, 3, 1), (5, 4, 1)]);
        prune(&mut r, 2, true);
        assert_eq!(r.len(), 3);
        prune(&mut r, 2, false);
        assert_eq!(r.len(), 2);
        let mut r = rows(&[(9, 1, 3), (8, 1, 1)]);
        prune(&mut r, 2, false);
        assert_eq!(r.len(), 1, "the first row's copies fill the top");
    }

    #[test]
    fn descending_keys_reverse_and_ascending_keep_order() {
        let a = SortKey(vec![(true, Value::Int(1)), (false, Value::Int(5))]);
        let b = SortKey(vec![(true, Value::Int(1)), (false, Value::Int(6))]);
        let c = SortKey(vec![(true, Value::Int(2)), (false, Value::Int(9))]);
        assert!(c < a && a < b);
    }
}
