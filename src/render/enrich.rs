//! Enrichment joins: `events: Collection<Event>` × `context: Collection<Event>` →
//! `Collection<JoinOut>`: the events, each with the context row current at its event time
//! attached as an object under the join's alias, plus hit and miss [`Counter`]s and dead letters
//! for context rows that cannot be indexed. Times are event-time ticks.
//!
//! ```text
//!  as_of, equal:     events ──(exchange by key)──┐
//!                    context ─(exchange by key)──┴─► AsOf: key → latest (time, row) ──► events
//!  as_of, ip_range:  events ──(stay)─────────────┐
//!                    context ─(broadcast)────────┴─► AsOf: ranges → (time, row) ───────► events
//!  continuous:       context ─► reduce: key → latest row ─► join / antijoin with events ─► events
//! ```
//!
//! - **as_of** (the default): the `AsOf` operator applies context rows and events one tick at a
//!   time, in time order, once both input frontiers have passed the tick; within a tick it merges
//!   both by event time in milliseconds, context rows first at equal times (rows of one key at one
//!   time apply in their total order, the last wins). An event therefore sees, per key, the
//!   latest context row at or before its event time, whatever the arrival order within the
//!   lateness, the batching or the number of workers; a context row that arrives later changes
//!   only later events. State is one row per context key (one per range).
//! - `max_age`: a row older than `max_age` at the event's time is not attached (a miss, also
//!   counted as `context_stale`).
//! - **continuous** (`continuous.rs`): a differential view: each event joined with its key's
//!   latest context row (latest by context time). When the context changes at a later time, the
//!   enriched events are retracted and emitted again at that time.
//! - Relevance: events whose type is not in `types` or that fail `when` pass through unchanged
//!   and count neither hit nor miss. A missing context row never holds an event back: the event
//!   goes on without the alias field and `context_misses` counts it.
//!
//! Served with checkpoints, a join whose state depends on a tcp source saves it at each
//! snapshot's frontier ([`crate::render::snapshot`]): the as-of index (one row per key, or the
//! range table, which every worker holds whole), or the continuous join's latest rows and
//! events. A restart restores it and drops the updates before that frontier.

use differential_dataflow::{AsCollection, VecCollection};
use hashbrown::HashTable;
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, ParallelizationContract, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::Scope;

use crate::dead_letter::DeadLetter;
use crate::event::{Accessor, Event};
use crate::model::ip::{parse_cidr, parse_ip, RangeTable};
use crate::plan::{EnrichPlan, JoinMode, JoinPlan, Matching, SourcePlan};
use crate::render::pending::{Batch, Paired};
use crate::render::snapshot::{apply_with_snapshots, OperatorState, StateStore};
use crate::value::{key_hash, Sym, Value};

/// A named count: `metric` per `label` (a join alias, a source, a rule id). Counter records
/// carry their count as the update's diff.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Counter {
    pub metric: Sym,
    pub label: Sym,
}

impl Counter {
    pub fn new(metric: &str, label: &str) -> Counter {
        Counter {
            metric: Sym::new(metric),
            label: Sym::new(label),
        }
    }
}

/// What a join emits.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum JoinOut {
    Event(Event),
    Count(Counter),
    Dead(Box<DeadLetter>),
}

/// The key of `event` under `fields`; `None` when a field is missing or null.
pub fn key_of(fields: &[Accessor], event: &Event) -> Option<Vec<Value>> {
    fields.iter().map(|a| a.get(event).filter(|v| !v.is_null())).collect()
}

/// `key_hash(&key_of(fields, event)?)` without building the key (a missing key hashes as 0),
/// the hash a key join exchanges its events and context rows by.
pub fn key_hash_of(fields: &[Accessor], event: &Event) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = crate::value::StableHasher::default();
    // What hashing a slice writes first: its length.
    h.write_usize(fields.len());
    for a in fields {
        match a.get(event) {
            Some(v) if !v.is_null() => v.hash(&mut h),
            _ => return 0,
        }
    }
    h.finish()
}

/// Whether `join` applies to `event` (its types and condition).
pub fn applies(join: &JoinPlan, event: &Event) -> bool {
    (join.types.is_empty() || join.types.iter().any(|t| t == event.kind.as_str()))
        && join.when.as_ref().is_none_or(|w| w.is_true(event).unwrap_or(false))
}

/// The object a context row attaches: the chosen fields (or all but the key) and, under
/// `time_as`, its time.
pub fn context_row(join: &JoinPlan, row: &Event) -> Value {
    let key_heads: Vec<Sym> = join
        .context_key
        .iter()
        .filter_map(|a| match a {
            Accessor::Payload(p) if p.steps.len() == 1 => p.head(),
            _ => None,
        })
        .collect();
    let mut fields: Vec<(Sym, Value)> = match &join.fields {
        Some(names) => names
            .iter()
            .filter_map(|n| {
                let s = Sym::new(n);
                crate::value::lookup(&row.payload, s).map(|v| (s, v.clone()))
            })
            .collect(),
        None => row
            .payload
            .iter()
            .filter(|(k, _)| !key_heads.contains(k))
            .cloned()
            .collect(),
    };
    if let Some(name) = &join.time_as {
        fields.push((Sym::new(name), Value::Time(row.time)));
    }
    Value::object(fields)
}

/// An enrichment stage in the plan's graph: its joins in order (`contexts[k]` feeds join `k`),
/// then derived fields and rules. Main collection: the events that pass; ports: routed events
/// per destination, blocked events, rule statistics (a windowed aggregate of the rules'
/// outcomes) and counters. With `state`, joins over tcp sources take part in snapshots.
pub fn stage<'s>(
    events: VecCollection<'s, u64, Event, isize>,
    contexts: Vec<VecCollection<'s, u64, Event, isize>>,
    plan: &EnrichPlan,
    whole: &crate::plan::Plan,
    state: Option<&std::sync::Arc<dyn StateStore>>,
) -> crate::render::StageOut<'s> {
    use crate::plan::Port;
    use crate::render::{rules, window, Coll};
    let source = &whole.sources[plan.source];
    let fields = (source.time_field.as_str(), source.type_field.as_str());
    let mut stream = events;
    let (mut counters, mut errs) = (Vec::new(), Vec::new());
    let tcp = |source: usize| whole.sources[source].format == crate::plan::Format::Tcp;
    for (join, context) in plan.joins.iter().zip(contexts) {
        // An as-of join's state is its context table; a continuous join's also its events.
        // File sources are read again in full after a restart.
        let served = tcp(join.context) || (join.mode == JoinMode::Continuous && tcp(plan.source));
        let name = crate::render::snapshot::state_name(&["join", &source.name, &join.alias]);
        let store = state.filter(|_| served).map(|s| (s, name));
        let out = render(stream, context, join, &whole.sources[join.context], store);
        let (events, counts, dead) =
            crate::render::fan_out::fan_out(out, &format!("Join({}) out", join.alias), |o, fan| match o {
                JoinOut::Event(e) => fan.a.push(e),
                JoinOut::Count(c) => fan.b.push(c),
                JoinOut::Dead(d) => fan.c.push(*d),
            });
        stream = events;
        counters.push(counts);
        errs.push(dead);
    }
    let (passed, counts, rest) = rules::render(stream, plan, &source.name, fields);
    counters.push(counts);
    // The rest's parts: stats, blocked rows, then one per route destination.
    let destinations: Vec<&str> = plan.destinations().collect();
    let part_of: Vec<Sym> = destinations.iter().map(|d| Sym::new(d)).collect();
    let mut parts = crate::render::split(rest, 2 + destinations.len(), move |o| match o {
        rules::RuleOut::Stat(_) => 0,
        rules::RuleOut::Blocked(_) => 1,
        rules::RuleOut::Routed(dest, _) => 2 + part_of.iter().position(|d| d == dest).expect("a planned destination"),
        rules::RuleOut::Event(_) | rules::RuleOut::Count(_) => {
            unreachable!("passed events and counts have their own outputs")
        }
    })
    .into_iter();
    let mut part = || parts.next().expect("a part per kind and destination");
    let (stats, blocked) = (part(), part());
    let stat_events = stats.flat_map(|o| match o {
        rules::RuleOut::Stat(e) => Some(e),
        _ => None,
    });
    let (stats, rejected) = window::render(stat_events, &rules::stats_plan(plan), ("time", "type"));
    errs.push(rejected);
    let scope = passed.inner.scope();
    let mut ports = vec![
        (
            Port::Counters,
            Coll::Counters(differential_dataflow::collection::concatenate(scope, counters)),
        ),
        (
            Port::Blocked,
            Coll::Rows(blocked.flat_map(|o| match o {
                rules::RuleOut::Blocked(row) => Some(row),
                _ => None,
            })),
        ),
        (Port::RuleStats, Coll::Windows(stats)),
    ];
    for d in destinations {
        let routed = part().flat_map(|o| match o {
            rules::RuleOut::Routed(_, e) => Some(e),
            _ => None,
        });
        ports.push((Port::Route(d.to_string()), Coll::Events(routed)));
    }
    crate::render::StageOut {
        main: Coll::Events(passed),
        ports,
        errs,
    }
}

/// Renders `join` of `events` with `context` (the records of the join's context source). With
/// `store`, the join's state takes part in snapshots under that name.
pub fn render<'s>(
    events: VecCollection<'s, u64, Event, isize>,
    context: VecCollection<'s, u64, Event, isize>,
    join: &JoinPlan,
    context_source: &SourcePlan,
    store: Option<(&std::sync::Arc<dyn StateStore>, String)>,
) -> VecCollection<'s, u64, JoinOut, isize> {
    let join_all = join.types.is_empty() && join.when.is_none();
    let (events, passthrough) = if join_all {
        (events, None)
    } else {
        let (relevant, irrelevant) = (join.clone(), join.clone());
        let passthrough = events.clone().filter(move |e| !applies(&irrelevant, e));
        (events.filter(move |e| applies(&relevant, e)), Some(passthrough))
    };
    let store = store.map(|(s, name)| (std::sync::Arc::clone(s), name));
    let joined = match join.mode {
        JoinMode::AsOf => as_of(events, context, join, context_source, store),
        JoinMode::Continuous => super::continuous::render(events, context, join, store),
    };
    match passthrough {
        Some(p) => p.map(JoinOut::Event).concat(joined),
        None => joined,
    }
}

/// The current rows of a context source, as the `AsOf` operator holds them.
trait Index {
    /// The index as a snapshot keeps it: (key or range, time, row).
    type Saved: Serialize + serde::de::DeserializeOwned;
    /// Every worker holds the whole index (context rows are broadcast).
    fn broadcast(&self) -> bool;
    /// Applies a context row; an error is a dead letter's reason and detail.
    fn apply(&mut self, row: &Event, value: Value) -> Result<(), (&'static str, String)>;
    /// The row current for `event`: its time and value.
    fn lookup(&self, event: &Event) -> Option<&(i64, Value)>;
    fn save(&self) -> Self::Saved;
    /// Adds saved rows whose key `owns` (given its exchange hash) says are this worker's.
    fn restore(&mut self, saved: Self::Saved, owns: &dyn Fn(u64) -> bool);
}

struct Keyed {
    event_key: Vec<Accessor>,
    context_key: Vec<Accessor>,
    /// Each key with its row, placed by [`table_hash`] of the key's exchange hash: a lookup
    /// hashes and compares the event's key fields where they are, without building a key.
    rows: HashTable<(Vec<Value>, (i64, Value))>,
    /// Every worker holds every key (`broadcast = true`).
    broadcast: bool,
}

/// A key's place in a [`Keyed`] table, from its exchange hash (`value::key_hash`, FNV-1a):
/// mixed (MurmurHash3's finaliser), as the exchange sends a worker only the hashes that agree
/// in their low bits, which the table's buckets would otherwise share.
fn table_hash(exchange: u64) -> u64 {
    let mut h = exchange;
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Whether `event`'s fields under `fields` are `key` (`key_of(fields, event) == Some(key)`).
fn key_is(fields: &[Accessor], event: &Event, key: &[Value]) -> bool {
    fields.len() == key.len() && fields.iter().zip(key).all(|(a, k)| !k.is_null() && a.is(event, k))
}

impl Keyed {
    fn insert(&mut self, key: Vec<Value>, row: (i64, Value)) {
        let hash = table_hash(key_hash(&key));
        match self.rows.find_mut(hash, |(k, _)| *k == key) {
            Some((_, slot)) => *slot = row,
            None => {
                self.rows
                    .insert_unique(hash, (key, row), |(k, _)| table_hash(key_hash(k)));
            }
        }
    }
}

impl Index for Keyed {
    type Saved = Vec<(Vec<Value>, i64, Value)>;
    fn broadcast(&self) -> bool {
        self.broadcast
    }
    fn save(&self) -> Self::Saved {
        self.rows.iter().map(|(k, (t, v))| (k.clone(), *t, v.clone())).collect()
    }
    fn restore(&mut self, saved: Self::Saved, owns: &dyn Fn(u64) -> bool) {
        for (key, time, value) in saved {
            // Rows are routed by the hash of their (present) key, or held by every worker.
            if self.broadcast || owns(key_hash(&key)) {
                self.insert(key, (time, value));
            }
        }
    }
    fn apply(&mut self, row: &Event, value: Value) -> Result<(), (&'static str, String)> {
        let key = key_of(&self.context_key, row).ok_or_else(|| {
            (
                "missing_key",
                format!("a key field of {:?} is missing or null", self.context_key),
            )
        })?;
        self.insert(key, (row.time, value));
        Ok(())
    }
    fn lookup(&self, event: &Event) -> Option<&(i64, Value)> {
        // A missing key hashes as 0 and matches no stored key.
        let hash = table_hash(key_hash_of(&self.event_key, event));
        self.rows
            .find(hash, |(key, _)| key_is(&self.event_key, event, key))
            .map(|(_, row)| row)
    }
}

struct Ranges {
    ip: Accessor,
    cidr: Accessor,
    table: RangeTable<(i64, Value)>,
}

impl Index for Ranges {
    /// Each range's CIDR text, with its row's time and value.
    type Saved = Vec<(String, i64, Value)>;
    fn broadcast(&self) -> bool {
        true
    }
    fn save(&self) -> Self::Saved {
        self.table
            .iter()
            .map(|(label, (t, v))| (label.to_string(), *t, v.clone()))
            .collect()
    }
    fn restore(&mut self, saved: Self::Saved, _: &dyn Fn(u64) -> bool) {
        for (label, time, value) in saved {
            // Saved from a table that held them, so they parse and do not overlap.
            if let Ok(range) = parse_cidr(&label) {
                let _ = self.table.insert(range, &label, (time, value));
            }
        }
    }
    fn apply(&mut self, row: &Event, value: Value) -> Result<(), (&'static str, String)> {
        let text = match self.cidr.get(row) {
            Some(Value::Str(s)) => s,
            other => return Err(("bad_cidr", format!("{:?} is {other:?}, not a CIDR string", self.cidr))),
        };
        let range = parse_cidr(&text).map_err(|e| ("bad_cidr", e.to_string()))?;
        self.table
            .insert(range, &text, (row.time, value))
            .map_err(|e| ("overlapping_range", e.to_string()))
    }
    fn lookup(&self, event: &Event) -> Option<&(i64, Value)> {
        let ip = match self.ip.get(event)? {
            Value::Str(s) => parse_ip(&s)?,
            _ => return None,
        };
        self.table.get(ip).map(|(_, v)| v)
    }
}

/// What the `AsOf` operator needs besides its index.
#[derive(Clone)]
struct AsOfConfig {
    join: JoinPlan,
    context: SourcePlan,
    /// Whether this worker reports bad context rows (every worker sees broadcast rows).
    report_dead: bool,
    /// Where the index is saved for checkpoints, and under what name.
    store: Option<(std::sync::Arc<dyn StateStore>, String)>,
}

fn as_of<'s>(
    events: VecCollection<'s, u64, Event, isize>,
    context: VecCollection<'s, u64, Event, isize>,
    join: &JoinPlan,
    context_source: &SourcePlan,
    store: Option<(std::sync::Arc<dyn StateStore>, String)>,
) -> VecCollection<'s, u64, JoinOut, isize> {
    let config = AsOfConfig {
        join: join.clone(),
        context: context_source.clone(),
        report_dead: true,
        store,
    };
    match join.matching {
        Matching::Equal if join.broadcast => {
            let index = Keyed {
                event_key: join.event_key.clone(),
                context_key: join.context_key.clone(),
                rows: HashTable::new(),
                broadcast: true,
            };
            // Every worker holds every row, so only worker 0 reports bad rows.
            let config = AsOfConfig {
                report_dead: events.inner.scope().index() == 0,
                ..config
            };
            let rows = context.inner.broadcast();
            as_of_operator(events.inner, rows, Pipeline, Pipeline, "AsOfBroadcast", index, config)
        }
        Matching::Equal => {
            let (ek, ck) = (join.event_key.clone(), join.context_key.clone());
            let by_event = Exchange::new(move |(e, _, _): &(Event, u64, isize)| key_hash_of(&ek, e));
            let by_row = Exchange::new(move |(e, _, _): &(Event, u64, isize)| key_hash_of(&ck, e));
            let index = Keyed {
                event_key: join.event_key.clone(),
                context_key: join.context_key.clone(),
                rows: HashTable::new(),
                broadcast: false,
            };
            as_of_operator(events.inner, context.inner, by_event, by_row, "AsOf", index, config)
        }
        Matching::IpRange => {
            let index = Ranges {
                ip: join.event_key[0].clone(),
                cidr: join.context_key[0].clone(),
                table: RangeTable::default(),
            };
            // Every worker holds every range, so only worker 0 reports bad rows.
            let config = AsOfConfig {
                report_dead: events.inner.scope().index() == 0,
                ..config
            };
            let rows = context.inner.broadcast();
            as_of_operator(events.inner, rows, Pipeline, Pipeline, "AsOfRange", index, config)
        }
    }
}

pub(super) type Updates<D> = Vec<(D, u64, isize)>;

/// Registers a join's state for snapshots (when it has a store) and restores it: `restore` gets
/// each saved state and a test of whether a key's exchange hash is this worker's.
pub(super) fn join_state<T: serde::de::DeserializeOwned>(
    store: Option<(std::sync::Arc<dyn StateStore>, String)>,
    scope: &Scope<'_, u64>,
    info: &timely::dataflow::operators::generic::OperatorInfo,
    broadcast: bool,
    mut restore: impl FnMut(T, &dyn Fn(u64) -> bool),
) -> Option<OperatorState> {
    let (store, name) = store?;
    let activator = scope.worker().sync_activator_for(info.address.to_vec());
    let mut state = OperatorState::register(&store, &name, scope.index(), scope.peers(), activator);
    for saved in state.restore::<T>(broadcast) {
        restore(saved, &|hash| state.owns(hash));
    }
    Some(state)
}

fn as_of_operator<'s, I, P1, P2>(
    events: timely::dataflow::Stream<'s, u64, Updates<Event>>,
    rows: timely::dataflow::Stream<'s, u64, Updates<Event>>,
    events_pact: P1,
    rows_pact: P2,
    name: &str,
    mut index: I,
    config: AsOfConfig,
) -> VecCollection<'s, u64, JoinOut, isize>
where
    I: Index + 'static,
    P1: ParallelizationContract<u64, Updates<Event>>,
    P2: ParallelizationContract<u64, Updates<Event>>,
{
    let AsOfConfig {
        join,
        context,
        report_dead,
        store,
    } = config;
    let (alias, max_age) = (Sym::new(&join.alias), join.max_age_ms.map(|a| a as i64));
    let [hit, miss, stale, rejected] =
        ["context_hits", "context_misses", "context_stale", "context_rejected"].map(|m| Counter::new(m, &join.alias));
    let scope = events.scope();
    events
        .binary_frontier::<_, CapacityContainerBuilder<Updates<JoinOut>>, _, _, _, _>(
            rows,
            events_pact,
            rows_pact,
            name,
            move |_, info| {
                // Events and context rows by time, with capabilities for both.
                let mut pending: Paired<Event, Event> = Paired::default();
                let mut batch: Batch<JoinOut> = Batch::default();
                let broadcast = index.broadcast();
                let mut state = join_state(store, &scope, &info, broadcast, |saved, owns| {
                    index.restore(saved, owns)
                });
                move |(events_in, events_frontier), (rows_in, rows_frontier), output| {
                    events_in.for_each_stamp(|cap, data| pending.events.absorb(&cap, data, |e, _| e));
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
                    let mut apply = |until: Option<u64>, index: &mut I| {
                        for (time, mut ctx, mut events) in pending.ready_until(until) {
                            ctx.sort();
                            let mut ctx = ctx.into_iter().peekable();
                            // Lookups do not change the index, so events at one time may go in any order.
                            events.sort_unstable_by_key(|e| e.time);
                            let [mut hits, mut misses, mut stales, mut rejections] = [0isize; 4];
                            let mut dead = Vec::new();
                            let mut apply_row = |index: &mut I, row: Event| {
                                let value = context_row(&join, &row);
                                let result = index.apply(&row, value);
                                if let (Err((reason, detail)), true) = (result, report_dead) {
                                    dead.push(DeadLetter {
                                        stage: format!("context:{}", context.name),
                                        reason: reason.into(),
                                        detail,
                                        location: String::new(),
                                        record: row.json_text(&context.time_field, &context.type_field),
                                        event_time: Some(row.time),
                                        original: None,
                                    });
                                }
                            };
                            for event in events {
                                while ctx.peek().is_some_and(|r| r.time <= event.time) {
                                    apply_row(index, ctx.next().expect("peeked"));
                                }
                                let out = match index.lookup(&event) {
                                    Some((t0, row)) if max_age.is_none_or(|age| event.time - t0 <= age) => {
                                        hits += 1;
                                        event.with_field(alias, row.clone())
                                    }
                                    found => {
                                        misses += 1;
                                        stales += isize::from(found.is_some());
                                        event
                                    }
                                };
                                batch.give(JoinOut::Event(out), time, 1);
                            }
                            for row in ctx {
                                apply_row(index, row);
                            }
                            rejections += dead.len() as isize;
                            for letter in dead {
                                batch.give(JoinOut::Dead(Box::new(letter)), time, 1);
                            }
                            for (counter, n) in [(hit, hits), (miss, misses), (stale, stales), (rejected, rejections)] {
                                if n > 0 {
                                    batch.give(JoinOut::Count(counter), time, n);
                                }
                            }
                        }
                    };
                    apply_with_snapshots(&mut state, limit, &mut index, &mut apply, I::save);
                    batch.send(&pending.events.caps, output);
                    let hold = pending.next_time();
                    pending.events.caps.downgrade(hold.iter());
                }
            },
        )
        .as_collection()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::FieldPath;

    #[test]
    fn the_exchange_hash_is_the_key_hash_of_the_built_key() {
        let fields: Vec<Accessor> = ["user_id", "region"]
            .iter()
            .map(|f| Accessor::bind(FieldPath::parse(f).expect("a path"), "time", "type"))
            .collect();
        let present = Event::new(
            5,
            Sym::new("attempt"),
            vec![
                (Sym::new("user_id"), Value::str("u1")),
                (Sym::new("region"), Value::Int(4)),
            ],
        );
        let key = key_of(&fields, &present).expect("both fields present");
        assert_eq!(key_hash_of(&fields, &present), key_hash(&key));
        // The sink of an output ordered by these fields hashes the same values.
        assert_eq!(key_hash_of(&fields, &present), crate::value::stable_hash(&&key[..]));
        let missing = Event::new(5, Sym::new("attempt"), vec![(Sym::new("user_id"), Value::str("u1"))]);
        let null = Event::new(
            5,
            Sym::new("attempt"),
            vec![
                (Sym::new("user_id"), Value::str("u1")),
                (Sym::new("region"), Value::Null),
            ],
        );
        assert_eq!(key_hash_of(&fields, &missing), 0);
        assert_eq!(key_hash_of(&fields, &null), 0);
    }

    /// `key_is` (the lookup's comparison in place) agrees with comparing the built key, for
    /// payload, time and type fields, numbers of either kind, and missing or null fields.
    #[test]
    fn comparing_a_key_in_place_equals_comparing_the_built_key() {
        let fields: Vec<Accessor> = ["user_id", "n", "time", "type"]
            .iter()
            .map(|f| Accessor::bind(FieldPath::parse(f).expect("a path"), "time", "type"))
            .collect();
        let event = |user: Option<Value>, n: Value, time: i64, kind: &str| {
            let mut payload = vec![(Sym::new("n"), n)];
            payload.extend(user.map(|u| (Sym::new("user_id"), u)));
            Event::new(time, Sym::new(kind), payload)
        };
        let events = [
            event(Some(Value::str("u1")), Value::Int(2), 5, "attempt"),
            event(Some(Value::str("u1")), Value::float(2.0), 5, "attempt"),
            event(Some(Value::str("u1")), Value::float(2.5), 5, "attempt"),
            event(Some(Value::str("u2")), Value::Int(2), 5, "attempt"),
            event(Some(Value::str("u1")), Value::Int(2), 6, "attempt"),
            event(Some(Value::str("u1")), Value::Int(2), 5, "view"),
            event(None, Value::Int(2), 5, "attempt"),
            event(Some(Value::Null), Value::Int(2), 5, "attempt"),
            event(Some(Value::Int(1)), Value::Int(2), 5, "attempt"),
        ];
        let keys: Vec<Vec<Value>> = events.iter().filter_map(|e| key_of(&fields, e)).collect();
        assert_eq!(keys.len(), 7, "two events lack a key");
        for e in &events {
            for key in &keys {
                assert_eq!(
                    key_is(&fields, e, key),
                    key_of(&fields, e).as_ref() == Some(key),
                    "{e:?} {key:?}"
                );
            }
            // A key of another width never matches.
            assert!(!key_is(&fields[..2], e, &keys[0]));
        }
    }
}
