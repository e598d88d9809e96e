//! Replication records and tasks: a router's `decisions: Collection<Event>`, a `completions:
//! Collection<Event>` stream of the regions' acknowledgements and the router's `placement`
//! changelog → `NAME_replication` (one row per open event, revised as it changes),
//! `NAME_replication_tasks` (the copies still to make) and dead letters. Times are event-time
//! ticks: each tick applies, in this order, the records closing (`retain` after their event),
//! the placement's changes, the decisions and the completions of that tick.
//!
//! ```text
//!  decisions ───┬─(exchange by event id)─► Replication ──► records (changelog)
//!  completions ─┘                              ▲      ├──► tasks (changelog)
//!  placement (worker 0) ──────broadcast────────┘      └──► dead letters
//! ```
//!
//! An event's **targets** are its shard's current targets: the home, then the replicas (see
//! `render::router`). They follow the placement while the record is open, so when a shard
//! moves, its open events gain the new home as a target. A region's **status** for the event
//! is `completed` once it acknowledged a copy (a later failure does not undo it), `failed` if
//! its latest acknowledgement failed, and `pending` otherwise. A region that completed stays
//! in `completed` even when it is no longer a target (a former home): it is never asked again.
//!
//! A **task** exists for every target that has not completed, with a reason:
//! - `copy`: a target from the event's routing on;
//! - `migration`: a target since a placement change after the event was routed;
//! - `retry`: a target whose latest acknowledgement failed (`since` is the failure's time).
//!
//! `state` is `complete` when every target completed, else `replicating`. When `retain` has
//! passed since its event, a record closes: its last row says `complete` or `expired`, its
//! tasks are withdrawn, and later completions for it are dead letters (`unknown_event`).
//!
//! Dead letters (`replication:NAME`): completions without a usable id, region or status
//! (`invalid_completion`), for an event that is not open here (`unknown_event`: never routed,
//! routed later than the completion, or closed), or from a region no placement has named
//! (`unknown_region`); decisions without an event id (`no_event_id`).
//!
//! With `granularity = "shard_window"` the same per-event state is kept (a region has an
//! event's copy or not), but an event closes with its window, `retain` after the window's end,
//! and instead of rows each event sends its **facts** (counted, keyed by shard and window
//! start) to `windows`, which sums them into one record per shard and window:
//!
//! ```text
//!  decisions ───┬─(by event id)─► Replication ──(facts, by shard and window)──► Windows ──► records
//!  completions ─┘                    ▲     └──► dead letters                       └──────► tasks
//!  placement (broadcast) ────────────┘
//! ```

mod windows;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use differential_dataflow::AsCollection;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::{Broadcast, Map};
use timely::dataflow::operators::CapabilitySet;

use crate::dead_letter::DeadLetter;
use crate::event::Event;
use crate::plan::router::{Granularity, ReplicationPlan};
use crate::plan::Port;
use crate::render::pending::Paired;
use crate::render::{Coll, EventsOf, RowsOf, StageOut};
use crate::value::{format_time, stable_hash, Sym, Value};

/// What reaches the operator, keyed by event id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
enum Item {
    /// A routed event: its id, event time and shard. Sorts before the completions of its tick.
    Decision(Value, i64, u64),
    /// An acknowledgement: event id, region, whether it completed, and the row.
    Ack(Value, String, bool, Event),
}

impl Item {
    fn id(&self) -> &Value {
        match self {
            Item::Decision(id, ..) | Item::Ack(id, ..) => id,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
enum Out {
    Record(Vec<Value>),
    Task(Vec<Value>),
    Dead(Box<DeadLetter>),
    /// One fact of an event, for the record of its shard and window (`shard_window`).
    Fact((u64, i64), Fact),
}

/// Why a region is asked for a copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
enum Reason {
    /// A target since the event was routed.
    Copy,
    /// A target since a placement change after the event was routed.
    Migration,
    /// Its latest acknowledgement failed.
    Retry,
}

impl Reason {
    fn name(self) -> &'static str {
        match self {
            Reason::Copy => "copy",
            Reason::Migration => "migration",
            Reason::Retry => "retry",
        }
    }
}

/// What one event adds to the record of its shard and window: each is counted over the
/// window's events.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
enum Fact {
    /// The event (counted: the window's events).
    Event,
    /// Its record closed.
    Closed,
    /// Its shard's current targets and home changes (the same for every open event of a
    /// shard).
    Shard(Value, Value),
    /// A region completed its copy.
    Completed(String),
    /// A region's latest acknowledgement failed.
    Failed(String),
    /// A region is asked for its copy, and why.
    Task(String, Reason),
}

/// The facts of an event whose row (`REPLICATION_COLUMNS`) and tasks are these.
fn facts(row: &[Value], tasks: &BTreeMap<String, (Reason, i64)>, closed: bool) -> BTreeSet<Fact> {
    let mut out = BTreeSet::from([Fact::Event, Fact::Shard(row[4].clone(), row[9].clone())]);
    if closed {
        out.insert(Fact::Closed);
    }
    let regions = |v: &Value| -> Vec<String> {
        match v {
            Value::List(items) => items
                .iter()
                .filter_map(|r| match r {
                    Value::Str(s) => Some(s.to_string()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    };
    out.extend(regions(&row[5]).into_iter().map(Fact::Completed));
    out.extend(regions(&row[6]).into_iter().map(Fact::Failed));
    out.extend(tasks.iter().map(|(r, (reason, _))| Fact::Task(r.clone(), *reason)));
    out
}

/// One shard as the placement has it.
#[derive(Default)]
struct Shard {
    targets: Vec<String>,
    /// `time from → to` of each change of its home.
    history: Vec<Value>,
    /// Its open events.
    open: BTreeSet<Value>,
}

/// One open event.
struct Record {
    time: i64,
    shard: u64,
    /// The targets when it was routed.
    first: Vec<String>,
    /// Region → (completed, time of its latest acknowledgement).
    acks: BTreeMap<String, (bool, i64)>,
    /// Region → (reason, since): the tasks it has.
    tasks: BTreeMap<String, (Reason, i64)>,
    /// Its row as last emitted.
    row: Option<Vec<Value>>,
}

/// A worker's records (the events whose ids hash to it) and every shard's placement.
struct Replicas {
    plan: ReplicationPlan,
    shards: HashMap<u64, Shard>,
    regions: BTreeSet<String>,
    records: HashMap<Value, Record>,
    /// `(closing time, id)` of every open record, to close them in order.
    closing: BTreeSet<(u64, Value)>,
    /// Region names, states and reasons as values, made once and shared by every row (a
    /// record's row is rebuilt at every revision).
    names: crate::value::StrValues,
}

impl Replicas {
    fn new(plan: ReplicationPlan) -> Self {
        Replicas {
            plan,
            shards: HashMap::new(),
            regions: BTreeSet::new(),
            records: HashMap::new(),
            closing: BTreeSet::new(),
            names: crate::value::StrValues::new(usize::MAX),
        }
    }

    /// Applies the placement rows of one tick (`[shard_id, home, targets]`, retractions
    /// first); returns the open events of the shards that changed.
    fn place(&mut self, tick: i64, mut rows: Vec<(Vec<Value>, isize)>) -> BTreeSet<Value> {
        rows.sort_by_key(|(_, diff)| *diff);
        let mut changed = BTreeSet::new();
        // Each changed shard's home before this tick.
        let mut homes_before: BTreeMap<u64, Option<String>> = BTreeMap::new();
        for (row, diff) in rows {
            let (Some(Value::Int(shard)), Some(Value::List(targets))) = (row.first(), row.get(2)) else {
                continue;
            };
            let targets: Vec<String> = targets
                .iter()
                .filter_map(|t| match t {
                    Value::Str(s) => Some(s.to_string()),
                    _ => None,
                })
                .collect();
            let id = *shard as u64;
            let shard = self.shards.entry(id).or_default();
            homes_before.entry(id).or_insert_with(|| shard.targets.first().cloned());
            if diff < 0 {
                if shard.targets == targets {
                    shard.targets.clear();
                }
                continue;
            }
            self.regions.extend(targets.iter().cloned());
            shard.targets = targets;
            changed.extend(shard.open.iter().cloned());
        }
        for (id, before) in homes_before {
            let shard = self.shards.get_mut(&id).expect("entered above");
            if let (Some(from), Some(to)) = (before, shard.targets.first()) {
                if &from != to {
                    let change = format!("{} {from} → {to}", format_time(tick));
                    shard.history.push(Value::str(&change));
                }
            }
        }
        changed
    }

    /// Opens the record of a routed event at `tick` (a repeated id keeps its first routing);
    /// returns when it will close: `retain` after its event, and after this tick.
    fn open(&mut self, id: Value, time: i64, shard: u64, tick: u64) -> Option<u64> {
        if self.records.contains_key(&id) {
            return None;
        }
        // An event's last instant, or its window's.
        let last = match self.plan.granularity {
            Granularity::Event => time,
            Granularity::ShardWindow { window_ms } => {
                windows::start(time, window_ms).saturating_add(window_ms as i64 - 1)
            }
        };
        let closes = (last.saturating_add(self.plan.retain_ms as i64).max(0) as u64)
            .max(tick)
            .saturating_add(1);
        let entry = self.shards.entry(shard).or_default();
        entry.open.insert(id.clone());
        self.closing.insert((closes, id.clone()));
        self.records.insert(
            id,
            Record {
                time,
                shard,
                first: entry.targets.clone(),
                acks: BTreeMap::new(),
                tasks: BTreeMap::new(),
                row: None,
            },
        );
        Some(closes)
    }

    /// Records an acknowledgement; `Err` with a reason and detail when it cannot be used.
    fn ack(&mut self, id: &Value, region: &str, ok: bool, time: i64) -> Result<(), (&'static str, String)> {
        if !self.regions.contains(region) {
            return Err(("unknown_region", format!("no placement names region `{region}`")));
        }
        let Some(record) = self.records.get_mut(id) else {
            return Err((
                "unknown_event",
                format!("event {id} is not open: never routed, routed after this completion, or closed"),
            ));
        };
        let entry = record.acks.entry(region.to_string()).or_insert((ok, time));
        // A completed copy stays completed.
        if !entry.0 {
            *entry = (ok, time);
        }
        Ok(())
    }

    /// The row of record `id` and its tasks as of `tick`, updating what it remembers; `closed`
    /// for its last row.
    fn refresh(&mut self, id: &Value, tick: i64, closed: bool, out: &mut Vec<(Out, isize)>) {
        let Replicas {
            records,
            shards,
            names,
            plan,
            ..
        } = self;
        let Some(record) = records.get_mut(id) else { return };
        let shard = shards.get(&record.shard);
        let targets: &[String] = shard.map_or(&[], |s| &s.targets);
        let status = |region: &str| record.acks.get(region).map(|(ok, _)| *ok);
        let mut list = |regions: &mut dyn Iterator<Item = &String>| {
            Value::List(regions.map(|r| names.get(r)).collect::<Vec<_>>().into())
        };
        let completed = list(&mut record.acks.iter().filter(|(_, (ok, _))| *ok).map(|(r, _)| r));
        let failed = list(&mut record.acks.iter().filter(|(_, (ok, _))| !*ok).map(|(r, _)| r));
        let pending = list(&mut targets.iter().filter(|r| status(r).is_none()));
        let all = list(&mut targets.iter());
        let done = !targets.is_empty() && targets.iter().all(|r| status(r) == Some(true));
        let state = match (done, closed) {
            (true, _) => "complete",
            (false, false) => "replicating",
            (false, true) => "expired",
        };
        let row = vec![
            id.clone(),
            Value::Time(record.time),
            Value::Int(record.shard as i64),
            targets.first().map_or(Value::Null, |h| names.get(h)),
            all,
            completed,
            failed,
            pending,
            names.get(state),
            Value::List(shard.map(|s| s.history.clone()).unwrap_or_default().into()),
        ];
        // Tasks: every target not completed, unless the record closed.
        let mut tasks: BTreeMap<String, (Reason, i64)> = BTreeMap::new();
        if !closed {
            for region in targets {
                let task = match record.acks.get(region) {
                    Some((true, _)) => continue,
                    Some((false, at)) => (Reason::Retry, *at),
                    None => {
                        let reason = if record.first.contains(region) {
                            Reason::Copy
                        } else {
                            Reason::Migration
                        };
                        match record.tasks.get(region) {
                            Some(&(r, since)) if r == reason => (r, since),
                            _ => (reason, tick.max(record.time)),
                        }
                    }
                };
                tasks.insert(region.clone(), task);
            }
        }
        match plan.granularity {
            Granularity::Event => {
                if record.row.as_ref() != Some(&row) {
                    if let Some(old) = record.row.take() {
                        out.push((Out::Record(old), -1));
                    }
                    out.push((Out::Record(row.clone()), 1));
                }
                let mut task_row = |region: &str, (reason, since): (Reason, i64)| {
                    vec![
                        id.clone(),
                        Value::Int(record.shard as i64),
                        names.get(region),
                        names.get(reason.name()),
                        Value::Time(since),
                    ]
                };
                for (region, task) in &record.tasks {
                    if tasks.get(region) != Some(task) {
                        out.push((Out::Task(task_row(region, *task)), -1));
                    }
                }
                for (region, task) in &tasks {
                    if record.tasks.get(region) != Some(task) {
                        out.push((Out::Task(task_row(region, *task)), 1));
                    }
                }
            }
            Granularity::ShardWindow { window_ms } => {
                // A record is refreshed with `closed` once, as it closes.
                let before = record
                    .row
                    .as_ref()
                    .map(|old| facts(old, &record.tasks, false))
                    .unwrap_or_default();
                let after = facts(&row, &tasks, closed);
                let key = (record.shard, windows::start(record.time, window_ms));
                for fact in before.difference(&after) {
                    out.push((Out::Fact(key, fact.clone()), -1));
                }
                for fact in after.difference(&before) {
                    out.push((Out::Fact(key, fact.clone()), 1));
                }
            }
        }
        record.row = Some(row);
        record.tasks = tasks;
    }

    /// Closes the records whose closing time is before `limit` (all when `None`), each at its
    /// closing time: `(time, updates)` in time order.
    fn close_before(&mut self, limit: Option<u64>) -> Vec<(u64, Vec<(Out, isize)>)> {
        let mut closed: Vec<(u64, Vec<(Out, isize)>)> = Vec::new();
        while let Some((at, id)) = self.closing.first().cloned() {
            if limit.is_some_and(|l| at >= l) {
                break;
            }
            self.closing.pop_first();
            if closed.last().is_none_or(|(t, _)| *t != at) {
                closed.push((at, Vec::new()));
            }
            let out = &mut closed.last_mut().expect("pushed").1;
            self.refresh(&id, at as i64, true, out);
            if let Some(record) = self.records.remove(&id) {
                if let Some(shard) = self.shards.get_mut(&record.shard) {
                    shard.open.remove(&id);
                }
            }
        }
        closed
    }

    /// The earliest time an open record closes.
    fn next_closing(&self) -> Option<u64> {
        self.closing.first().map(|(at, _)| *at)
    }
}

/// The replication stage of a router: its `decisions`, the `completions` stream (whose time and
/// type fields are `fields`) and the router's `placement` rows.
pub fn stage<'s>(
    decisions: EventsOf<'s>,
    completions: EventsOf<'s>,
    placement: RowsOf<'s>,
    plan: &ReplicationPlan,
    fields: (&str, &str),
) -> StageOut<'s> {
    let stage_name = format!("replication:{}", plan.router);
    let (time_field, type_field) = (fields.0.to_string(), fields.1.to_string());
    let letter = {
        let stage_name = stage_name.clone();
        move |reason: &str, detail: String, e: &Event, time_field: &str, type_field: &str| {
            Box::new(DeadLetter::of_event(
                &stage_name,
                reason,
                detail,
                e,
                (time_field, type_field),
            ))
        }
    };
    let event_id = Sym::new(crate::plan::router::DECISION_FIELDS[0]);
    let shard_id = Sym::new(crate::plan::router::DECISION_FIELDS[2]);
    let bad_decision = letter.clone();
    let decided = decisions.map(move |e| {
        let id = crate::value::lookup(&e.payload, event_id)
            .cloned()
            .unwrap_or(Value::Null);
        match (&id, crate::value::lookup(&e.payload, shard_id)) {
            (Value::Null, _) => Err(bad_decision(
                "no_event_id",
                "the event has no id".into(),
                &e,
                "time",
                "type",
            )),
            (_, Some(Value::Int(shard))) if *shard >= 0 => Ok(Item::Decision(id, e.time, *shard as u64)),
            _ => Err(bad_decision(
                "no_event_id",
                "the decision has no shard".into(),
                &e,
                "time",
                "type",
            )),
        }
    });
    let p = plan.clone();
    let (tf, kf) = (time_field.clone(), type_field.clone());
    let acked = completions.map(move |e| {
        let bad = |detail: String| letter("invalid_completion", detail, &e, &tf, &kf);
        let id = match p.id.get(&e) {
            None | Some(Value::Null) => return Err(bad("no event id".into())),
            Some(id) => id,
        };
        let region = match p.region.get(&e) {
            Some(Value::Str(s)) => s.to_string(),
            other => return Err(bad(format!("region is {}", other.map_or("missing", |v| v.kind_name())))),
        };
        let ok = match p.status.get(&e) {
            Some(Value::Str(s)) if &*s == "completed" => true,
            Some(Value::Str(s)) if &*s == "failed" => false,
            other => {
                return Err(bad(format!(
                    "status is {}, not `completed` or `failed`",
                    other.map_or("missing".to_string(), |v| v.to_string())
                )))
            }
        };
        Ok(Item::Ack(id, region, ok, e))
    });
    let items = decided.concat(acked);
    let [items, rejected] = crate::render::split_into(items, |r| usize::from(r.is_err()));
    let (items, rejected) = (
        items.flat_map(|r| r.ok()),
        rejected.flat_map(|r| r.err().map(|dead| *dead)),
    );
    let by_id = Exchange::new(|((item, _), _, _): &((Item, isize), u64, isize)| stable_hash(item.id()));
    let placement = placement.inner.map(|(row, t, r)| ((row, r), t, r)).broadcast();
    let name = plan.router.clone();
    let op_name = name.clone();
    let mut replicas = Replicas::new(plan.clone());
    let letter_of = move |reason: &str, detail: String, e: &Event| {
        DeadLetter::of_event(&stage_name, reason, detail, e, (&time_field, &type_field))
    };
    let out = items
        .inner
        .map(|(item, t, r)| ((item, r), t, r))
        .binary_frontier::<_, CapacityContainerBuilder<Vec<(Out, u64, isize)>>, _, _, _, _>(
            placement,
            by_id,
            Pipeline,
            &format!("Replication({op_name})"),
            move |_, _| {
                let mut pending: Paired<(Item, isize), (Vec<Value>, isize)> = Paired::default();
                // Capabilities for the times open records close.
                let mut closing = CapabilitySet::<u64>::new();
                move |(items_in, items_frontier), (placement_in, placement_frontier), output| {
                    items_in.for_each_stamp(|cap, data| pending.events.absorb(&cap, data, |(item, _), r| (item, r)));
                    placement_in.for_each_stamp(|cap, data| pending.absorb_rows(&cap, data));
                    let limit = items_frontier
                        .frontier()
                        .iter()
                        .chain(placement_frontier.frontier().iter())
                        .min()
                        .copied();
                    // One message per activation, at its least time (see `pending::Batch`).
                    let mut batch: Vec<(Out, u64, isize)> = Vec::new();
                    let mut least: Option<timely::dataflow::operators::Capability<u64>> = None;
                    let mut give =
                        |at: u64, updates: Vec<(Out, isize)>, cap: &timely::dataflow::operators::Capability<u64>| {
                            if updates.is_empty() {
                                return;
                            }
                            if least.as_ref().is_none_or(|l| l.time() > cap.time()) {
                                least = Some(cap.clone());
                            }
                            batch.extend(updates.into_iter().map(|(o, diff)| (o, at, diff)));
                        };
                    for (time, rows, mut items) in pending.ready_until(limit) {
                        // Records that close at or before this tick, first.
                        for (at, updates) in replicas.close_before(Some(time + 1)) {
                            give(at, updates, &closing.delayed(&at));
                        }
                        let cap = pending.events.caps.delayed(&time);
                        let tick = time as i64;
                        let mut out: Vec<(Out, isize)> = Vec::new();
                        let mut touched = replicas.place(tick, rows);
                        items.sort();
                        for (item, diff) in items {
                            if diff <= 0 {
                                // Decisions and source rows are never retracted.
                                continue;
                            }
                            match item {
                                Item::Decision(id, at, shard) => {
                                    if let Some(closes) = replicas.open(id.clone(), at, shard, time) {
                                        closing.insert(cap.delayed(&closes));
                                    }
                                    touched.insert(id);
                                }
                                Item::Ack(id, region, ok, e) => match replicas.ack(&id, &region, ok, e.time) {
                                    Ok(()) => {
                                        touched.insert(id);
                                    }
                                    Err((reason, detail)) => {
                                        out.push((Out::Dead(Box::new(letter_of(reason, detail, &e))), 1))
                                    }
                                },
                            }
                        }
                        for id in &touched {
                            replicas.refresh(id, tick, false, &mut out);
                        }
                        give(time, out, &cap);
                    }
                    // Records whose closing time the inputs have passed (all once they end).
                    for (at, updates) in replicas.close_before(limit) {
                        give(at, updates, &closing.delayed(&at));
                    }
                    if let Some(cap) = least {
                        output.session(&cap).give_iterator(batch.drain(..));
                    }
                    closing.downgrade(replicas.next_closing().iter());
                    pending.events.caps.downgrade(pending.next_time().iter());
                }
            },
        )
        .as_collection();
    let by_kind = |o: &Out| match o {
        Out::Record(_) => 0,
        Out::Task(_) => 1,
        Out::Dead(_) => 2,
        Out::Fact(..) => 3,
    };
    let [records, tasks, dead, facts] = crate::render::split_into(out, by_kind);
    let (records, tasks) = match plan.granularity {
        Granularity::Event => (records, tasks),
        Granularity::ShardWindow { window_ms } => {
            let facts = facts.flat_map(|o| match o {
                Out::Fact(key, fact) => Some((key, fact)),
                _ => None,
            });
            let [records, tasks, _, _] = crate::render::split_into(windows::stage(facts, &name, window_ms), by_kind);
            (records, tasks)
        }
    };
    StageOut {
        main: Coll::Rows(records.flat_map(|o| match o {
            Out::Record(row) => Some(row),
            _ => None,
        })),
        ports: vec![(
            Port::Tasks,
            Coll::Rows(tasks.flat_map(|o| match o {
                Out::Task(row) => Some(row),
                _ => None,
            })),
        )],
        errs: vec![
            rejected,
            dead.flat_map(|o| match o {
                Out::Dead(d) => Some(*d),
                _ => None,
            }),
        ],
    }
}
