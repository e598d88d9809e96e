//! Replication per shard and window: the events' counted facts (`Collection<((shard, window
//! start), Fact)>`, from the per-event operator) → one `NAME_replication` row per shard and
//! tumbling event-time window and one `NAME_replication_tasks` row per window and region that
//! lacks copies, both changelogs revised at the ticks their facts change.
//!
//! ```text
//!  facts ─(exchange by shard and window)─► Windows ──► records and tasks (changelogs)
//! ```
//!
//! For a window of `n` events routed so far, a region's `completed` and `failed` counts are its
//! events with a completed copy and with a failed latest acknowledgement. Its status is
//! `completed` when it completed all `n`, else `failed` when some failed, else `pending`. The
//! targets and the migrations are the shard's current ones. A task exists for every target
//! with events it lacks: `missing` counts them and its reason is the strongest of theirs
//! (`retry` over `migration` over `copy`); `since` is the tick it took that reason. All events
//! of a window close together, `retain` after its end: the last row says `complete` or
//! `expired`, the tasks are withdrawn, and the window's state is dropped.

use std::collections::{BTreeMap, HashMap};

use differential_dataflow::{AsCollection, VecCollection};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

use super::{Fact, Out, Reason};
use crate::render::pending::{Batch, Pending};
use crate::value::{stable_hash, Sym, Value};

/// The start of the tumbling window of `window_ms` holding `time`.
pub(super) fn start(time: i64, window_ms: u64) -> i64 {
    let w = window_ms.max(1) as i64;
    time.div_euclid(w) * w
}

type Key = (u64, i64);

/// Region → (reason, missing, since): a window's tasks.
type Tasks = BTreeMap<String, (Reason, isize, i64)>;

/// One shard and window: its facts with their counts, and what it last emitted.
#[derive(Default)]
struct Window {
    facts: BTreeMap<Fact, isize>,
    row: Option<Vec<Value>>,
    tasks: Tasks,
}

impl Window {
    fn count(&self, fact: &Fact) -> isize {
        self.facts.get(fact).copied().unwrap_or(0)
    }

    /// Its row and tasks as of `tick` (`None` without events).
    fn summary(&self, key: Key, window_ms: u64, tick: i64) -> Option<(Vec<Value>, Tasks)> {
        let events = self.count(&Fact::Event);
        if events <= 0 {
            return None;
        }
        let closed = self.count(&Fact::Closed) >= events;
        let (mut targets, mut history) = (Value::List(Vec::new().into()), Value::List(Vec::new().into()));
        let mut done: BTreeMap<&str, isize> = BTreeMap::new();
        let mut failed: BTreeMap<&str, isize> = BTreeMap::new();
        let mut missing: BTreeMap<&str, (Reason, isize)> = BTreeMap::new();
        for (fact, n) in self.facts.iter().filter(|(_, n)| **n > 0) {
            match fact {
                Fact::Event | Fact::Closed => {}
                // Every open event of a shard has its current targets: the last one wins.
                Fact::Shard(t, h) => (targets, history) = (t.clone(), h.clone()),
                Fact::Completed(r) => *done.entry(r).or_default() += n,
                Fact::Failed(r) => *failed.entry(r).or_default() += n,
                Fact::Task(r, reason) => {
                    let m = missing.entry(r).or_insert((*reason, 0));
                    m.0 = m.0.max(*reason);
                    m.1 += n;
                }
            }
        }
        let targets: Vec<&str> = match &targets {
            Value::List(items) => items
                .iter()
                .filter_map(|t| match t {
                    Value::Str(s) => Some(&**s),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let status = |r: &str| -> &'static str {
            if done.get(r).copied().unwrap_or(0) >= events {
                "completed"
            } else if failed.get(r).copied().unwrap_or(0) > 0 {
                "failed"
            } else {
                "pending"
            }
        };
        let mut regions: Vec<&str> = targets.clone();
        regions.extend(done.keys().chain(failed.keys()).copied());
        regions.sort_unstable();
        regions.dedup();
        let list = |rs: Vec<&str>| Value::List(rs.into_iter().map(Value::str).collect());
        let with = |s: &str| list(regions.iter().copied().filter(|r| status(r) == s).collect());
        let pending = list(targets.iter().copied().filter(|r| status(r) == "pending").collect());
        let per_region = regions
            .iter()
            .map(|r| {
                Value::object(vec![
                    (Sym::new("region"), Value::str(r)),
                    (Sym::new("status"), Value::str(status(r))),
                    (
                        Sym::new("completed"),
                        Value::Int(done.get(r).copied().unwrap_or(0) as i64),
                    ),
                    (
                        Sym::new("failed"),
                        Value::Int(failed.get(r).copied().unwrap_or(0) as i64),
                    ),
                ])
            })
            .collect::<Vec<_>>();
        let all_done = !targets.is_empty() && targets.iter().all(|r| status(r) == "completed");
        let state = match (all_done, closed) {
            (true, _) => "complete",
            (false, false) => "replicating",
            (false, true) => "expired",
        };
        let (shard, from) = key;
        let row = vec![
            Value::Int(shard as i64),
            Value::Time(from),
            Value::Time(from.saturating_add(window_ms as i64)),
            Value::Int(events as i64),
            targets.first().map_or(Value::Null, |h| Value::str(h)),
            list(targets.clone()),
            with("completed"),
            with("failed"),
            pending,
            Value::List(per_region.into()),
            Value::str(state),
            history,
        ];
        let tasks = missing
            .into_iter()
            .filter(|(_, (_, n))| *n > 0)
            .map(|(r, (reason, n))| {
                let since = match self.tasks.get(r) {
                    Some(&(was, _, since)) if was == reason => since,
                    _ => tick,
                };
                (r.to_string(), (reason, n, since))
            })
            .collect();
        Some((row, tasks))
    }

    /// Emits the changes of its row and tasks as of `tick`; `true` once it closed.
    fn refresh(&mut self, key: Key, window_ms: u64, tick: i64, out: &mut Vec<(Out, isize)>) -> bool {
        let (row, tasks) = self.summary(key, window_ms, tick).unzip();
        let tasks = tasks.unwrap_or_default();
        if self.row != row {
            if let Some(old) = self.row.take() {
                out.push((Out::Record(old), -1));
            }
            if let Some(new) = &row {
                out.push((Out::Record(new.clone()), 1));
            }
        }
        let task_row = |region: &str, &(reason, missing, since): &(Reason, isize, i64)| {
            Out::Task(vec![
                Value::Int(key.0 as i64),
                Value::Time(key.1),
                Value::str(region),
                Value::str(reason.name()),
                Value::Int(missing as i64),
                Value::Time(since),
            ])
        };
        for (region, task) in &self.tasks {
            if tasks.get(region) != Some(task) {
                out.push((task_row(region, task), -1));
            }
        }
        for (region, task) in &tasks {
            if self.tasks.get(region) != Some(task) {
                out.push((task_row(region, task), 1));
            }
        }
        let events = self.count(&Fact::Event);
        self.row = row;
        self.tasks = tasks;
        events > 0 && self.count(&Fact::Closed) >= events
    }
}

/// The records and tasks (as `Out::Record` and `Out::Task`) of router `name`'s windows.
pub(super) fn stage<'s>(
    facts: VecCollection<'s, u64, (Key, Fact), isize>,
    name: &str,
    window_ms: u64,
) -> VecCollection<'s, u64, Out, isize> {
    let by_key = Exchange::new(|((key, _), _, _): &((Key, Fact), u64, isize)| stable_hash(key));
    facts
        .inner
        .unary_frontier::<CapacityContainerBuilder<Vec<(Out, u64, isize)>>, _, _, _>(
            by_key,
            &format!("ReplicationWindows({name})"),
            move |_, _| {
                let mut pending: Pending<(Key, Fact, isize)> = Pending::default();
                let mut batch: Batch<Out> = Batch::default();
                let mut windows: HashMap<Key, Window> = HashMap::new();
                move |(input, frontier), output| {
                    input.for_each_stamp(|cap, data| pending.absorb(&cap, data, |(key, fact), r| (key, fact, r)));
                    let (ready, _) = pending.ready(frontier);
                    for (time, updates) in ready {
                        let mut touched: Vec<Key> = Vec::new();
                        for (key, fact, diff) in updates {
                            let w = windows.entry(key).or_default();
                            let n = w.facts.entry(fact.clone()).or_default();
                            *n += diff;
                            if *n == 0 {
                                w.facts.remove(&fact);
                            }
                            touched.push(key);
                        }
                        touched.sort_unstable();
                        touched.dedup();
                        let mut out: Vec<(Out, isize)> = Vec::new();
                        for key in touched {
                            let w = windows.get_mut(&key).expect("touched above");
                            if w.refresh(key, window_ms, time as i64, &mut out) || w.facts.is_empty() {
                                // A closed window keeps its last row; nothing changes it again.
                                windows.remove(&key);
                            }
                        }
                        for (o, diff) in out {
                            batch.give(o, time, diff);
                        }
                    }
                    batch.send(&pending.caps, output);
                    pending.caps.downgrade(pending.next_time().iter());
                }
            },
        )
        .as_collection()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(facts: &[(Fact, isize)]) -> Window {
        Window {
            facts: facts.iter().cloned().collect(),
            ..Window::default()
        }
    }

    fn shard(targets: &[&str]) -> Fact {
        let list = Value::List(targets.iter().map(|t| Value::str(t)).collect());
        Fact::Shard(list, Value::List(Vec::new().into()))
    }

    #[test]
    fn windows_start_at_multiples_of_their_length() {
        assert_eq!(start(0, 60_000), 0);
        assert_eq!(start(59_999, 60_000), 0);
        assert_eq!(start(60_000, 60_000), 60_000);
        assert_eq!(start(-1, 60_000), -60_000);
    }

    /// A region is completed for a window only when it has every event; the task counts the
    /// missing events under the strongest reason.
    #[test]
    fn a_region_completes_a_window_with_its_last_event() {
        let w = window(&[
            (Fact::Event, 3),
            (shard(&["b", "c"]), 3),
            (Fact::Completed("b".into()), 3),
            (Fact::Completed("c".into()), 1),
            (Fact::Failed("c".into()), 1),
            (Fact::Task("c".into(), Reason::Copy), 1),
            (Fact::Task("c".into(), Reason::Retry), 1),
        ]);
        let (row, tasks) = w.summary((7, 60_000), 60_000, 90_000).expect("has events");
        assert_eq!(row[3], Value::Int(3));
        assert_eq!(row[6], Value::List(vec![Value::str("b")].into()), "completed");
        assert_eq!(row[7], Value::List(vec![Value::str("c")].into()), "failed");
        assert_eq!(row[10], Value::str("replicating"));
        assert_eq!(tasks, BTreeMap::from([("c".to_string(), (Reason::Retry, 2, 90_000))]));
    }

    /// A closed window that lacks a copy expires; one whose targets have everything is
    /// complete, and a former target's partial copies do not matter.
    #[test]
    fn a_closed_window_is_complete_or_expired() {
        let mut facts = vec![
            (Fact::Event, 2),
            (Fact::Closed, 2),
            (shard(&["b"]), 2),
            (Fact::Completed("b".into()), 2),
            (Fact::Completed("a".into()), 1),
        ];
        let (row, tasks) = window(&facts).summary((1, 0), 60_000, 400_000).unwrap();
        assert_eq!(row[10], Value::str("complete"));
        assert!(tasks.is_empty());
        facts[3].1 = 1;
        let (row, _) = window(&facts).summary((1, 0), 60_000, 400_000).unwrap();
        assert_eq!(row[10], Value::str("expired"));
        assert_eq!(row[8], Value::List(vec![Value::str("b")].into()), "pending");
    }

    /// A task keeps its `since` while its reason stays.
    #[test]
    fn a_task_keeps_its_since_while_its_reason_stays() {
        let mut w = window(&[
            (Fact::Event, 1),
            (shard(&["b"]), 1),
            (Fact::Task("b".into(), Reason::Copy), 1),
        ]);
        let mut out = Vec::new();
        w.refresh((1, 0), 60_000, 10, &mut out);
        w.facts.insert(Fact::Event, 2);
        w.facts.insert(Fact::Task("b".into(), Reason::Copy), 2);
        w.refresh((1, 0), 60_000, 20, &mut out);
        assert_eq!(w.tasks["b"], (Reason::Copy, 2, 10));
        w.facts.insert(Fact::Task("b".into(), Reason::Migration), 1);
        w.refresh((1, 0), 60_000, 30, &mut out);
        assert_eq!(w.tasks["b"], (Reason::Migration, 3, 30));
    }
}
