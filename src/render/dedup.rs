//! Deduplication: `events: Collection<Event>` → `unique: Collection<Event>` plus a `duplicates`
//! collection. Times are event-time ticks; each key is decided by one worker, one time at a
//! time, in time order, once the frontier has passed that time.
//!
//! ```text
//!  events ──► split by rule ──(exchange by type and key)──► Dedup ──► unique events
//!               └── types without a rule ──────────────────────┘  └─► duplicates
//! ```
//!
//! For an event type with a rule (idempotency key fields, a TTL and which occurrence to keep):
//! - `keep = "first"`: the first occurrence of a key passes, and so does every later
//!   occurrence whose event time is at least the TTL after the occurrence that passed last. Any
//!   other occurrence is a duplicate: it goes to `duplicates` with its key and the passed
//!   occurrence's time (`first_time`). The output is insert-only.
//! - `keep = "last"`: a key's occurrences less than the TTL apart form a run; the output holds
//!   each run's latest occurrence. A newer occurrence less than the TTL after the held one
//!   retracts it (`(held, t, -1)`, `(newer, t, +1)` at the newer one's time `t`), and the held
//!   one goes to `duplicates` with the run's first time. The output is a retracting changelog.
//!
//! "First", "latest" and "newer" are in event-time order, ties broken by the events' total
//! order, so the decision does not depend on arrival order within the allowed lateness, on
//! batching or on the number of workers. A key's state is released once the frontier passes
//! its passed (first) or held (last) occurrence plus the TTL (in one-second buckets, see
//! [`EXPIRY_BUCKET_MS`]): memory follows the keys seen
//! within one TTL, not the length of the log.
//!
//! Served with checkpoints ([`crate::render::snapshot`]), the last-passed map of a tcp source is
//! saved at each snapshot's frontier, per worker by key, and restored after a restart (the TTLs
//! follow from the times saved). A stage with a `keep = "last"` rule is not snapshotted: its
//! source's records are kept and replayed (see `crate::plan::retention`).

use std::collections::BTreeMap;
use std::hash::BuildHasher;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

use differential_dataflow::{AsCollection, VecCollection};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

use crate::event::{Accessor, Event};
use crate::plan::{DedupPlan, Keep};
use crate::render::pending::{Batch, Pending};
use crate::render::snapshot::{apply_with_snapshots, state_name, OperatorState, StateStore};
use crate::render::window::stable_hash;
use crate::value::{Sym, Value};

/// What the dedup operator emits.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum DedupOut {
    Unique(Event),
    /// event_type, key (JSON), event_time, first_time, record.
    Duplicate(Vec<Value>),
}

pub use crate::plan::DUPLICATE_COLUMNS;

/// The key of `event` under `rule`'s fields (missing fields are null).
fn key_of(fields: &[Accessor], event: &Event) -> Box<[Value]> {
    fields.iter().map(|a| a.get(event).unwrap_or(Value::Null)).collect()
}

/// A key of the last-passed map: event type and key values.
type Key = (Sym, Box<[Value]>);

/// `stable_hash(&(event.kind, key_of(fields, event)))`, the key's exchange hash, without
/// building the key.
fn exchange_hash(fields: &[Accessor], event: &Event) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = crate::value::StableHasher::default();
    event.kind.hash(&mut h);
    // What hashing a slice writes first: its length.
    h.write_usize(fields.len());
    for a in fields {
        a.get(event).unwrap_or(Value::Null).hash(&mut h);
    }
    h.finish()
}

/// Width of the release schedule's buckets. Keys are released in the first frontier past the
/// end of their end's bucket, at most this much later than their end: a schedule entry per
/// bucket, not per distinct end, holds about a day of keys in a few hundred bytes each less
/// (see "Memory" in the README). When a key is released does not change any decision: an
/// occurrence at or past the end passes whether or not its key is still held.
const EXPIRY_BUCKET_MS: i64 = 1_000;

/// The release schedule: each key's end (the time it passed plus the TTL) with the key's hash,
/// by the last millisecond of the end's bucket. The hash finds the key in its table (see
/// [`Keyed`]), so the schedule holds 16 bytes per key instead of a copy of it.
type Expiry = BTreeMap<i64, Vec<(i64, u64)>>;

/// Schedules the release at `end` of the key with hash `hash`.
fn schedule(expiry: &mut Expiry, end: i64, hash: u64) {
    let bucket = end.div_euclid(EXPIRY_BUCKET_MS) * EXPIRY_BUCKET_MS + (EXPIRY_BUCKET_MS - 1);
    expiry.entry(bucket).or_default().push((end, hash));
}

/// The hash of `key` in every [`Keyed`] table and in the release schedule.
fn key_hash(key: &Key) -> u64 {
    FxBuildHasher.hash_one(key)
}

/// Per-key state found by the key's hash ([`key_hash`]), which the release schedule records: a
/// release removes the entry of that hash whose end is the scheduled one (two keys of one hash
/// are told apart by their ends, and each has its own schedule entry).
struct Keyed<V> {
    table: HashTable<(Key, V)>,
}

impl<V> Default for Keyed<V> {
    fn default() -> Self {
        Keyed {
            table: HashTable::new(),
        }
    }
}

impl<V> Keyed<V> {
    fn get(&self, hash: u64, key: &Key) -> Option<&V> {
        self.table.find(hash, |(k, _)| k == key).map(|(_, v)| v)
    }

    fn remove(&mut self, hash: u64, key: &Key) -> Option<V> {
        let entry = self.table.find_entry(hash, |(k, _)| k == key).ok()?;
        Some(entry.remove().0 .1)
    }

    fn insert(&mut self, hash: u64, key: Key, value: V) {
        match self.table.find_entry(hash, |(k, _)| *k == key) {
            Ok(mut entry) => entry.get_mut().1 = value,
            Err(_) => {
                self.table.insert_unique(hash, (key, value), |(k, _)| key_hash(k));
            }
        }
    }

    /// Removes the entry of hash `hash` that `ends` says ends at this release, if any.
    fn release(&mut self, hash: u64, ends: impl Fn(&Key, &V) -> bool) {
        if let Ok(entry) = self.table.find_entry(hash, |(k, v)| ends(k, v)) {
            entry.remove();
        }
    }

    fn iter(&self) -> impl Iterator<Item = &(Key, V)> {
        self.table.iter()
    }
}

/// What a worker's dedup operator saves: each key it owns with the time of the occurrence that
/// passed last.
type Saved = Vec<(Key, i64)>;

/// Deduplication of source `source` in the plan's graph: unique events as its main collection,
/// duplicates and their counter as ports. `fields` are the events' time and type field names;
/// with `store` (a tcp source served with checkpoints), its state takes part in snapshots.
pub fn stage<'s>(
    events: VecCollection<'s, u64, Event, isize>,
    plan: &DedupPlan,
    source: &str,
    fields: (&str, &str),
    store: Option<&std::sync::Arc<dyn StateStore>>,
) -> crate::render::StageOut<'s> {
    use crate::plan::Port;
    use crate::render::Coll;
    let out = render(events, plan, fields, store.map(|s| (s, source)));
    let counter = crate::render::enrich::Counter::new("events_deduplicated", source);
    let (unique, counts, duplicates) =
        crate::render::fan_out::fan_out(out, &format!("Dedup({source}) out"), move |o, fan| match o {
            DedupOut::Unique(e) => fan.a.push(e),
            DedupOut::Duplicate(row) => {
                fan.b.push(counter);
                fan.c.push(row);
            }
        });
    crate::render::StageOut {
        main: Coll::Events(unique),
        ports: vec![
            (Port::Counters, Coll::Counters(counts)),
            (Port::Duplicates, Coll::Rows(duplicates)),
        ],
        errs: Vec::new(),
    }
}

/// Renders deduplication of `events` under `plan`'s rules; with `store` (a tcp source served
/// with checkpoints), its state takes part in snapshots under `name`.
pub fn render<'s>(
    events: VecCollection<'s, u64, Event, isize>,
    plan: &DedupPlan,
    fields: (&str, &str),
    store: Option<(&std::sync::Arc<dyn StateStore>, &str)>,
) -> VecCollection<'s, u64, DedupOut, isize> {
    let rules = plan.rules.clone();
    let rule_of = move |e: &Event| rules.iter().position(|r| r.event_type == e.kind.as_str());
    let with_rule = rule_of.clone();
    let passthrough = events
        .clone()
        .filter(move |e| rule_of(e).is_none())
        .map(DedupOut::Unique);
    let plan = plan.clone();
    let (time_field, type_field) = (fields.0.to_string(), fields.1.to_string());
    let keyed_rules = plan.rules.clone();
    let exchange = Exchange::new(move |(e, _, _): &(Event, u64, isize)| {
        let rule = keyed_rules
            .iter()
            .find(|r| r.event_type == e.kind.as_str())
            .expect("filtered to ruled types");
        exchange_hash(&rule.key, e)
    });
    let scope = events.inner.scope();
    let store = store.map(|(store, source)| (std::sync::Arc::clone(store), state_name(&["dedup", source])));
    let deduped = events
        .filter(move |e| with_rule(e).is_some())
        .inner
        .unary_frontier::<CapacityContainerBuilder<Vec<(DedupOut, u64, isize)>>, _, _, _>(
            exchange,
            "Dedup",
            move |_, info| {
                let mut pending: Pending<Event> = Pending::default();
                let mut batch: Batch<DedupOut> = Batch::default();
                // (type, key) → time of the occurrence that passed last.
                let mut first: Keyed<i64> = Keyed::default();
                let mut expiry: Expiry = BTreeMap::new();
                // `keep = "last"`: (type, key) → the start of its run and the occurrence held.
                let mut held: Keyed<(i64, Event)> = Keyed::default();
                let mut state = store.map(|(store, name)| {
                    let activator = scope.worker().sync_activator_for(info.address.to_vec());
                    let mut state = OperatorState::register(&store, &name, scope.index(), scope.peers(), activator);
                    for saved in state.restore::<Saved>(false) {
                        for (key, t0) in saved {
                            if state.owns(stable_hash(&key)) {
                                let hash = key_hash(&key);
                                schedule(&mut expiry, t0 + ttl_of(&plan, key.0), hash);
                                first.insert(hash, key, t0);
                            }
                        }
                    }
                    state
                });
                move |(input, frontier), output| {
                    input.for_each_stamp(|cap, data| {
                        pending.absorb(&cap, data, |event, diff: isize| {
                            debug_assert!(diff > 0, "sources are append-only");
                            event
                        })
                    });
                    if let Some(state) = &state {
                        pending.drop_before(state.restored());
                    }
                    let limit = frontier.frontier().iter().min().copied();
                    let mut apply = |until: Option<u64>, first: &mut Keyed<i64>| {
                        for (time, mut events) in pending.ready_until(until) {
                            // Event-time order, ties by the events' total order.
                            events.sort();
                            for event in events {
                                let rule = plan
                                    .rules
                                    .iter()
                                    .find(|r| r.event_type == event.kind.as_str())
                                    .expect("ruled type");
                                let key = (event.kind, key_of(&rule.key, &event));
                                let hash = key_hash(&key);
                                let ttl = rule.ttl_ms as i64;
                                let duplicate = |of: &Event, first_time: i64| {
                                    let key_json = Value::List(key.1.iter().cloned().collect()).json_text();
                                    let row = vec![
                                        Value::str(of.kind.as_str()),
                                        Value::str(&key_json),
                                        Value::Time(of.time),
                                        Value::Time(first_time),
                                        Value::str(&of.json_text(&time_field, &type_field)),
                                    ];
                                    DedupOut::Duplicate(row)
                                };
                                if rule.keep == Keep::Last {
                                    // The held occurrence gives way to a newer one less than the
                                    // TTL after it, and becomes a duplicate.
                                    let run_start = match held.remove(hash, &key) {
                                        Some((start, last)) if event.time < last.time + ttl => {
                                            batch.give(duplicate(&last, start), time, 1);
                                            batch.give(DedupOut::Unique(last), time, -1);
                                            start
                                        }
                                        _ => event.time,
                                    };
                                    schedule(&mut expiry, event.time + ttl, hash);
                                    batch.give(DedupOut::Unique(event.clone()), time, 1);
                                    held.insert(hash, key, (run_start, event));
                                    continue;
                                }
                                match first.get(hash, &key) {
                                    Some(&t0) if event.time < t0 + ttl => {
                                        batch.give(duplicate(&event, t0), time, 1);
                                    }
                                    _ => {
                                        first.insert(hash, key, event.time);
                                        schedule(&mut expiry, event.time + ttl, hash);
                                        batch.give(DedupOut::Unique(event), time, 1);
                                    }
                                }
                            }
                        }
                    };
                    let save = |first: &Keyed<i64>| -> Saved { first.iter().map(|(k, t)| (k.clone(), *t)).collect() };
                    apply_with_snapshots(&mut state, limit, &mut first, &mut apply, save);
                    batch.send(&pending.caps, output);
                    // Release keys whose TTL the frontier has passed.
                    for (_, keys) in crate::render::pending::due(&mut expiry, limit) {
                        for (end, hash) in keys {
                            first.release(hash, |key, t0| *t0 + ttl_of(&plan, key.0) == end);
                            held.release(hash, |key, (_, last)| last.time + ttl_of(&plan, key.0) == end);
                        }
                    }
                    let hold: Option<u64> = pending.next_time();
                    pending.caps.downgrade(hold.iter());
                }
            },
        )
        .as_collection();
    passthrough.concat(deduped)
}

fn ttl_of(plan: &DedupPlan, kind: Sym) -> i64 {
    plan.rules
        .iter()
        .find(|r| r.event_type == kind.as_str())
        .map_or(0, |r| r.ttl_ms as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: i64) -> Key {
        (Sym::new("attempt"), vec![Value::Int(id)].into_boxed_slice())
    }

    #[test]
    fn the_exchange_hash_is_the_hash_of_the_built_key() {
        let fields: Vec<Accessor> = ["session_id", "device"]
            .iter()
            .map(|f| Accessor::bind(crate::event::FieldPath::parse(f).expect("a path"), "time", "type"))
            .collect();
        let events = [
            vec![
                (Sym::new("session_id"), Value::str("s1")),
                (Sym::new("device"), Value::Int(3)),
            ],
            vec![(Sym::new("session_id"), Value::str("s1"))],
            vec![(Sym::new("device"), Value::Float(crate::value::F64::new(2.5)))],
            vec![],
        ];
        for payload in events {
            let event = Event::new(5, Sym::new("session_start"), payload);
            let built = stable_hash(&(event.kind, key_of(&fields, &event)));
            assert_eq!(exchange_hash(&fields, &event), built);
        }
    }

    #[test]
    fn keys_of_one_hash_are_told_apart_by_key_and_released_by_their_own_end() {
        let mut passed: Keyed<i64> = Keyed::default();
        // Two keys forced onto one hash, as a collision would put them.
        passed.insert(7, key(1), 100);
        passed.insert(7, key(2), 200);
        assert_eq!(passed.get(7, &key(1)), Some(&100));
        assert_eq!(passed.get(7, &key(2)), Some(&200));
        // A key passing again replaces its time.
        passed.insert(7, key(1), 150);
        assert_eq!(passed.get(7, &key(1)), Some(&150));
        assert_eq!(passed.iter().count(), 2);
        // The release scheduled for the replaced time finds nothing to remove.
        passed.release(7, |_, t0| *t0 + 10 == 110);
        assert_eq!(passed.iter().count(), 2);
        // Each release removes only the key whose end it is.
        passed.release(7, |_, t0| *t0 + 10 == 210);
        assert_eq!(passed.get(7, &key(2)), None);
        assert_eq!(passed.get(7, &key(1)), Some(&150));
        assert_eq!(passed.remove(7, &key(1)), Some(150));
        assert_eq!(passed.iter().count(), 0);
    }

    #[test]
    fn a_key_hashes_the_same_every_time() {
        assert_eq!(key_hash(&key(42)), key_hash(&key(42)));
        assert_ne!(key_hash(&key(42)), key_hash(&key(43)));
    }
}
