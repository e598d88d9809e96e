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
//! - **continuous**: a differential view: each event joined with its key's latest context row
//!   (latest by context time). When the context changes at a later time, the enriched events are
//!   retracted and emitted again at that time.
//! - Relevance: events whose type is not in `types` or that fail `when` pass through unchanged
//!   and count neither hit nor miss. A missing context row never holds an event back: the event
//!   goes on without the alias field and `context_misses` counts it.

use std::collections::BTreeMap;

use differential_dataflow::{AsCollection, VecCollection};
use rustc_hash::FxHashMap as HashMap;
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, ParallelizationContract, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Broadcast;

use crate::dead_letter::DeadLetter;
use crate::event::{Accessor, Event};
use crate::model::ip::{parse_cidr, parse_ip, RangeTable};
use crate::plan::{EnrichPlan, JoinMode, JoinPlan, Matching, SourcePlan};
use crate::render::pending::Pending;
use crate::render::window::stable_hash;
use crate::value::{Sym, Value};

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
    Dead(DeadLetter),
}

/// The key of `event` under `fields`; `None` when a field is missing or null.
pub fn key_of(fields: &[Accessor], event: &Event) -> Option<Vec<Value>> {
    fields.iter().map(|a| a.get(event).filter(|v| !v.is_null())).collect()
}

/// Whether `join` applies to `event` (its types and condition).
pub fn applies(join: &JoinPlan, event: &Event) -> bool {
    (join.types.is_empty() || join.types.iter().any(|t| t == event.kind.as_str()))
        && join.when.as_ref().is_none_or(|w| w.is_true(event).unwrap_or(false))
}

/// The object a context row attaches: the chosen fields (or all but the key) and its time.
pub fn context_row(join: &JoinPlan, context: &SourcePlan, row: &Event) -> Value {
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
    fields.push((Sym::new(&context.time_field), Value::Time(row.time)));
    Value::object(fields)
}

/// An enrichment stage in the plan's graph: its joins in order (`contexts[k]` feeds join `k`),
/// then derived fields and rules. Main collection: the events that pass; ports: routed events
/// per destination, blocked events, rule statistics (a windowed aggregate of the rules'
/// outcomes) and counters.
pub fn stage<'s>(
    events: VecCollection<'s, u64, Event, isize>,
    contexts: Vec<VecCollection<'s, u64, Event, isize>>,
    plan: &EnrichPlan,
    whole: &crate::plan::Plan,
) -> crate::render::StageOut<'s> {
    use crate::plan::Port;
    use crate::render::{rules, window, Coll};
    let source = &whole.sources[plan.source];
    let fields = (source.time_field.as_str(), source.type_field.as_str());
    let mut stream = events;
    let (mut counters, mut errs) = (Vec::new(), Vec::new());
    for (join, context) in plan.joins.iter().zip(contexts) {
        let out = render(stream, context, join, &whole.sources[join.context]);
        stream = out.clone().flat_map(|o| match o {
            JoinOut::Event(e) => Some(e),
            _ => None,
        });
        counters.push(out.clone().flat_map(|o| match o {
            JoinOut::Count(c) => Some(c),
            _ => None,
        }));
        errs.push(out.flat_map(|o| match o {
            JoinOut::Dead(d) => Some(d),
            _ => None,
        }));
    }
    let out = rules::render(stream, plan, &source.name, fields);
    counters.push(out.clone().flat_map(|o| match o {
        rules::RuleOut::Count(c) => Some(c),
        _ => None,
    }));
    let stat_events = out.clone().flat_map(|o| match o {
        rules::RuleOut::Stat(e) => Some(e),
        _ => None,
    });
    let (stats, rejected) = window::render(stat_events, &rules::stats_plan(plan), ("time", "type"));
    errs.push(rejected);
    let scope = out.inner.scope();
    let mut ports = vec![
        (
            Port::Counters,
            Coll::Counters(differential_dataflow::collection::concatenate(scope, counters)),
        ),
        (
            Port::Blocked,
            Coll::Rows(out.clone().flat_map(|o| match o {
                rules::RuleOut::Blocked(row) => Some(row),
                _ => None,
            })),
        ),
        (Port::RuleStats, Coll::Windows(stats)),
    ];
    for d in plan.destinations() {
        let wanted = Sym::new(d);
        let routed = out.clone().flat_map(move |o| match o {
            rules::RuleOut::Routed(dest, e) if dest == wanted => Some(e),
            _ => None,
        });
        ports.push((Port::Route(d.to_string()), Coll::Events(routed)));
    }
    crate::render::StageOut {
        main: Coll::Events(out.flat_map(|o| match o {
            rules::RuleOut::Event(e) => Some(e),
            _ => None,
        })),
        ports,
        errs,
    }
}

/// Renders `join` of `events` with `context` (the records of the join's context source).
pub fn render<'s>(
    events: VecCollection<'s, u64, Event, isize>,
    context: VecCollection<'s, u64, Event, isize>,
    join: &JoinPlan,
    context_source: &SourcePlan,
) -> VecCollection<'s, u64, JoinOut, isize> {
    let join_all = join.types.is_empty() && join.when.is_none();
    let (events, passthrough) = if join_all {
        (events, None)
    } else {
        let (relevant, irrelevant) = (join.clone(), join.clone());
        let passthrough = events.clone().filter(move |e| !applies(&irrelevant, e));
        (events.filter(move |e| applies(&relevant, e)), Some(passthrough))
    };
    let joined = match join.mode {
        JoinMode::AsOf => as_of(events, context, join, context_source),
        JoinMode::Continuous => continuous(events, context, join, context_source),
    };
    match passthrough {
        Some(p) => p.map(JoinOut::Event).concat(joined),
        None => joined,
    }
}

/// The current rows of a context source, as the `AsOf` operator holds them.
trait Index {
    /// Applies a context row; an error is a dead letter's reason and detail.
    fn apply(&mut self, row: &Event, value: Value) -> Result<(), (&'static str, String)>;
    /// The row current for `event`: its time and value.
    fn lookup(&self, event: &Event) -> Option<&(i64, Value)>;
}

struct Keyed {
    event_key: Vec<Accessor>,
    context_key: Vec<Accessor>,
    rows: HashMap<Vec<Value>, (i64, Value)>,
}

impl Index for Keyed {
    fn apply(&mut self, row: &Event, value: Value) -> Result<(), (&'static str, String)> {
        let key = key_of(&self.context_key, row).ok_or_else(|| {
            (
                "missing_key",
                format!("a key field of {:?} is missing or null", self.context_key),
            )
        })?;
        self.rows.insert(key, (row.time, value));
        Ok(())
    }
    fn lookup(&self, event: &Event) -> Option<&(i64, Value)> {
        self.rows.get(&key_of(&self.event_key, event)?)
    }
}

struct Ranges {
    ip: Accessor,
    cidr: Accessor,
    table: RangeTable<(i64, Value)>,
}

impl Index for Ranges {
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
}

fn as_of<'s>(
    events: VecCollection<'s, u64, Event, isize>,
    context: VecCollection<'s, u64, Event, isize>,
    join: &JoinPlan,
    context_source: &SourcePlan,
) -> VecCollection<'s, u64, JoinOut, isize> {
    let config = AsOfConfig {
        join: join.clone(),
        context: context_source.clone(),
        report_dead: true,
    };
    match join.matching {
        Matching::Equal => {
            let (ek, ck) = (join.event_key.clone(), join.context_key.clone());
            let by_event = Exchange::new(move |(e, _, _): &(Event, u64, isize)| stable_hash(&key_of(&ek, e)));
            let by_row = Exchange::new(move |(e, _, _): &(Event, u64, isize)| stable_hash(&key_of(&ck, e)));
            let index = Keyed {
                event_key: join.event_key.clone(),
                context_key: join.context_key.clone(),
                rows: HashMap::default(),
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

type Updates<D> = Vec<(D, u64, isize)>;

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
    } = config;
    let (alias, max_age) = (Sym::new(&join.alias), join.max_age_ms.map(|a| a as i64));
    let [hit, miss, stale, rejected] =
        ["context_hits", "context_misses", "context_stale", "context_rejected"].map(|m| Counter::new(m, &join.alias));
    events
        .binary_frontier::<_, CapacityContainerBuilder<Updates<JoinOut>>, _, _, _, _>(
            rows,
            events_pact,
            rows_pact,
            name,
            move |_, _| {
                // Events and context rows by time; `pending.caps` holds capabilities for both.
                let mut pending: Pending<Event> = Pending::default();
                let mut rows: BTreeMap<u64, Vec<Event>> = BTreeMap::new();
                move |(events_in, events_frontier), (rows_in, rows_frontier), output| {
                    events_in.for_each_stamp(|cap, data| pending.absorb(&cap, data, |e, _| e));
                    rows_in.for_each_stamp(|cap, data| {
                        pending.retain(&cap);
                        for batch in data {
                            for (row, t, _) in batch.drain(..) {
                                rows.entry(t).or_default().push(row);
                            }
                        }
                    });
                    let limit = events_frontier
                        .frontier()
                        .iter()
                        .chain(rows_frontier.frontier().iter())
                        .min()
                        .copied();
                    let mut ready: BTreeMap<u64, Vec<Event>> = pending.ready_until(limit).into_iter().collect();
                    let mut times: Vec<u64> = ready.keys().copied().collect();
                    times.extend(rows.keys().copied().take_while(|t| limit.is_none_or(|l| *t < l)));
                    times.sort_unstable();
                    times.dedup();
                    for time in times {
                        let mut ctx = rows.remove(&time).unwrap_or_default();
                        ctx.sort();
                        let mut ctx = ctx.into_iter().peekable();
                        let mut events = ready.remove(&time).unwrap_or_default();
                        // Lookups do not change the index, so events at one time may go in any order.
                        events.sort_unstable_by_key(|e| e.time);
                        let cap = pending.caps.delayed(&time);
                        let mut session = output.session(&cap);
                        let [mut hits, mut misses, mut stales, mut rejections] = [0isize; 4];
                        let mut dead = Vec::new();
                        let mut apply = |index: &mut I, row: Event| {
                            let value = context_row(&join, &context, &row);
                            let result = index.apply(&row, value);
                            if let (Err((reason, detail)), true) = (result, report_dead) {
                                dead.push(DeadLetter {
                                    stage: format!("context:{}", context.name),
                                    reason: reason.into(),
                                    detail,
                                    location: String::new(),
                                    record: row.to_json(&context.time_field, &context.type_field).to_string(),
                                    event_time: Some(row.time),
                                    original: None,
                                });
                            }
                        };
                        for event in events {
                            while ctx.peek().is_some_and(|r| r.time <= event.time) {
                                apply(&mut index, ctx.next().expect("peeked"));
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
                            session.give((JoinOut::Event(out), time, 1));
                        }
                        for row in ctx {
                            apply(&mut index, row);
                        }
                        rejections += dead.len() as isize;
                        for letter in dead {
                            session.give((JoinOut::Dead(letter), time, 1));
                        }
                        for (counter, n) in [(hit, hits), (miss, misses), (stale, stales), (rejected, rejections)] {
                            if n > 0 {
                                session.give((JoinOut::Count(counter), time, n));
                            }
                        }
                    }
                    let hold = [pending.next_time(), rows.keys().next().copied()]
                        .into_iter()
                        .flatten()
                        .min();
                    pending.caps.downgrade(hold.iter());
                }
            },
        )
        .as_collection()
}

fn continuous<'s>(
    events: VecCollection<'s, u64, Event, isize>,
    context: VecCollection<'s, u64, Event, isize>,
    join: &JoinPlan,
    context_source: &SourcePlan,
) -> VecCollection<'s, u64, JoinOut, isize> {
    assert_eq!(
        join.matching,
        Matching::Equal,
        "validation allows continuous equality joins only"
    );
    let (plan, ctx_plan) = (join.clone(), context_source.clone());
    let ck = join.context_key.clone();
    let latest = context
        .flat_map(move |row| {
            let key = key_of(&ck, &row)?;
            Some((key, (row.time, context_row(&plan, &ctx_plan, &row))))
        })
        .reduce(|_key, rows, out| {
            let (latest, _) = rows.last().expect("reduce sees at least one row");
            out.push(((*latest).clone(), 1isize));
        });
    let ek = join.event_key.clone();
    let keyed = events.clone().flat_map(move |e| key_of(&ek, &e).map(|k| (k, e)));
    let ek = join.event_key.clone();
    let keyless = events.filter(move |e| key_of(&ek, e).is_none());
    let alias = Sym::new(&join.alias);
    let hits = keyed
        .clone()
        .join_map(latest.clone(), move |_, e, (_, row)| e.with_field(alias, row.clone()));
    let misses = keyed.antijoin(latest.map(|(k, _)| k)).map(|(_, e)| e).concat(keyless);
    let (hit, miss) = (
        JoinOut::Count(Counter::new("context_hits", &join.alias)),
        JoinOut::Count(Counter::new("context_misses", &join.alias)),
    );
    // Joins emit a change and its undoing at one time (a row moving from miss to hit, say)
    // without consolidating them; the view's consumers should see net changes only.
    hits.clone()
        .map(JoinOut::Event)
        .concat(hits.map(move |_| hit.clone()))
        .concat(misses.clone().map(JoinOut::Event))
        .concat(misses.map(move |_| miss.clone()))
        .consolidate()
}
