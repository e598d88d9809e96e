//! Schema stage: `events: Collection<Event>` → `conformed: Collection<Event>` plus the
//! `inferred_schemas` changelog, the `schemas` and `schema_changes` records, `quarantine`, and
//! dead letters. Times are event-time ticks; each event type is processed by one worker, one
//! time at a time, in time order, once the frontier has passed that time.
//!
//! ```text
//!  events ─(exchange by event type)─► SchemaRegistry ──► conformed events ──► aggregates
//!                                      per type:            inferred_schemas (changelog)
//!                                      history + recent     schemas, schema_changes
//!                                      inference, versions  quarantine, dead letters
//! ```
//!
//! At each time `t`, for each event type with events at `t`:
//! 1. the events' (path, observation) pairs are added to the whole-history inference and to the
//!    recent inference (the last `window` of event time; older ticks age out);
//! 2. the recent inference's schema is the *candidate*. With no version yet, it becomes version 1
//!    once `min_events` events were seen (a pinned schema is version 1 from the start). Otherwise,
//!    when its drift from the latest version reaches the threshold, it is registered as version
//!    n+1 if the compatibility mode accepts it, and recorded as rejected if not;
//! 3. each event is conformed to the latest version, or to one of the `accept_previous` versions
//!    before it, and gains a `schema_version` field. An event that conforms to none goes to dead
//!    letters: `incompatible_schema` (with the rule broken) when its type's last candidate was
//!    rejected — or to `quarantine` under that policy — and `conform_error` otherwise.
//!
//! `inferred_schemas` rows (one per type, scope and path, with presence and kind counts) change
//! at most once per minute of event time, stamped with the end of the minute in which the type
//! last changed, so the changelog stays small while counts stay exact.
//!
//! Served with checkpoints ([`crate::render::snapshot`]), each worker saves the state of the
//! types it owns (statistics by path name, the recent window's ticks, versions, the rows last
//! reported) at each snapshot's frontier, and a restart restores it by type.

use std::collections::{BTreeMap, HashMap, VecDeque};

use differential_dataflow::{AsCollection, VecCollection};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

use crate::dead_letter::DeadLetter;
use crate::event::Event;
use crate::plan::{SchemaPlan, SourcePlan};
use crate::render::pending::{Batch, Pending};
use crate::render::snapshot::{apply_with_snapshots, state_name, OperatorState, StateStore};
use crate::render::window::stable_hash;
use crate::schema::conform::{ConformPolicy, Conformer, Extra};
use crate::schema::drift::drift;
use crate::schema::infer::{observations_by_id, Inferred, Limits, Obs, ObsScratch, PathIds};
use crate::schema::registry::Registry;
use crate::value::{format_time, Sym, Value};

/// Interval of the `inferred_schemas` changelog.
const REPORT_MS: u64 = 60_000;

/// What the schema operator emits, split into collections by [`render`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum SchemaOut {
    Conformed(Event),
    Quarantined(Event),
    Dead(Box<DeadLetter>),
    /// event_type, scope, path, present, nulls, kinds (`int:3 string:1`), events.
    Inferred(Vec<Value>),
    /// event_type, version, registered_at, drift, json_schema.
    Version(Vec<Value>),
    /// event_type, old_version, new_version, drift, changed_fields, compatibility, time.
    Change(Vec<Value>),
}

pub use crate::plan::{CHANGE_COLUMNS, INFERRED_COLUMNS, VERSION_COLUMNS};

/// Observation counts, by path id (of the operator's [`PathIds`]).
type Counts = rustc_hash::FxHashMap<(u32, Obs), u64>;

/// One event type's state.
#[derive(Default)]
struct TypeState {
    history: Counts,
    history_events: u64,
    /// Per tick: observation counts and events, for the recent window.
    recent_log: VecDeque<(u64, Counts, u64)>,
    recent: Counts,
    recent_events: u64,
    /// The reason the last candidate was rejected, if it was.
    rejected: Option<String>,
    /// Rows last emitted to `inferred_schemas`.
    reported: Vec<Vec<Value>>,
    /// The minute boundary at which the type's changes since `reported` are reported.
    report_at: Option<u64>,
}

fn add(into: &mut Counts, from: &Counts, sign: i64) {
    for (k, n) in from {
        let entry = into.entry(*k).or_insert(0);
        *entry = (*entry as i64 + sign * *n as i64) as u64;
        if *entry == 0 {
            into.remove(k);
        }
    }
}

fn inferred(events: u64, counts: &Counts, ids: &PathIds) -> Inferred {
    Inferred::from_counts(
        events,
        counts.iter().map(|((id, o), n)| ((ids.path(*id).to_string(), *o), *n)),
    )
}

/// The end of the minute holding `time`, where a change at `time` is reported.
fn boundary(time: u64) -> u64 {
    time - time % REPORT_MS + REPORT_MS
}

/// The schema stage of `source` in the plan's graph: conformed events as its main collection;
/// statistics, versions, changes and quarantined events as its ports.
pub fn stage<'s>(
    events: VecCollection<'s, u64, Event, isize>,
    plan: &SchemaPlan,
    source: &SourcePlan,
    registry: Registry,
    store: Option<&std::sync::Arc<dyn StateStore>>,
) -> crate::render::StageOut<'s> {
    use crate::plan::Port;
    use crate::render::Coll;
    let out = render(events, plan, source, registry, store);
    let (time_field, type_field) = (source.time_field.clone(), source.type_field.clone());
    let [conformed, quarantined, dead, inferred, versions, changes] = crate::render::split_into(out, |o| match o {
        SchemaOut::Conformed(_) => 0,
        SchemaOut::Quarantined(_) => 1,
        SchemaOut::Dead(_) => 2,
        SchemaOut::Inferred(_) => 3,
        SchemaOut::Version(_) => 4,
        SchemaOut::Change(_) => 5,
    });
    let rows = |part: VecCollection<'s, u64, SchemaOut, isize>, f: fn(SchemaOut) -> Option<Vec<Value>>| {
        Coll::Rows(part.flat_map(f))
    };
    let quarantined = quarantined.flat_map(move |o| match o {
        SchemaOut::Quarantined(e) => Some(vec![
            Value::Time(e.time),
            Value::str(e.kind.as_str()),
            Value::str(&e.json_text(&time_field, &type_field)),
        ]),
        _ => None,
    });
    crate::render::StageOut {
        main: Coll::Events(conformed.flat_map(|o| match o {
            SchemaOut::Conformed(e) => Some(e),
            _ => None,
        })),
        ports: vec![
            (
                Port::Inferred,
                rows(inferred, |o| match o {
                    SchemaOut::Inferred(r) => Some(r),
                    _ => None,
                }),
            ),
            (
                Port::Versions,
                rows(versions, |o| match o {
                    SchemaOut::Version(r) => Some(r),
                    _ => None,
                }),
            ),
            (
                Port::Changes,
                rows(changes, |o| match o {
                    SchemaOut::Change(r) => Some(r),
                    _ => None,
                }),
            ),
            (Port::Quarantine, Coll::Rows(quarantined)),
        ],
        errs: vec![dead.flat_map(|o| match o {
            SchemaOut::Dead(d) => Some(*d),
            _ => None,
        })],
    }
}

/// Renders the schema stage of `source`; `registry` holds versions loaded at start-up. With
/// `store` (a tcp source served with checkpoints), its state takes part in snapshots.
pub fn render<'s>(
    events: VecCollection<'s, u64, Event, isize>,
    plan: &SchemaPlan,
    source: &SourcePlan,
    registry: Registry,
    store: Option<&std::sync::Arc<dyn StateStore>>,
) -> VecCollection<'s, u64, SchemaOut, isize> {
    let plan = plan.clone();
    let names = Names {
        stage: format!("schema:{}", source.name),
        time_field: source.time_field.clone(),
        type_field: source.type_field.clone(),
    };
    let exchange = Exchange::new(|(e, _, _): &(Event, u64, isize)| stable_hash(&e.kind));
    let name = format!("SchemaRegistry({})", source.name);
    let scope = events.inner.scope();
    let store = store.map(|s| (std::sync::Arc::clone(s), state_name(&["schema", &source.name])));
    events
        .inner
        .unary_frontier::<CapacityContainerBuilder<Vec<(SchemaOut, u64, isize)>>, _, _, _>(
            exchange,
            &name,
            move |capability, info| {
                let mut pending: Pending<Event> = Pending::default();
                let mut batch: Batch<SchemaOut> = Batch::default();
                let mut stage = Stage {
                    types: BTreeMap::new(),
                    registry,
                    ids: PathIds::new(),
                };
                let mut conformers = HashMap::new();
                let mut scratch = ObsScratch::default();
                let mut obs = Vec::new();
                let limits = Limits {
                    max_depth: plan.max_depth as usize,
                    ..Limits::default()
                };
                let mut state = store.map(|(store, name)| {
                    let activator = scope.worker().sync_activator_for(info.address.to_vec());
                    let mut state = OperatorState::register(&store, &name, scope.index(), scope.peers(), activator);
                    for saved in state.restore::<Saved>(false) {
                        if let Err(e) = stage.restore(saved, |kind| state.owns(stable_hash(&kind))) {
                            store.fail(format!("operator `{name}`: {e}"));
                        }
                    }
                    state
                });
                // Restored reports are due at their boundaries, which may precede the frontier.
                for at in stage.types.values().filter_map(|t| t.report_at) {
                    pending.caps.insert(capability.delayed(&at));
                }
                drop(capability);
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
                    let mut apply = |until: Option<u64>, stage: &mut Stage| {
                        for (time, mut events) in pending.ready_until(until) {
                            events.sort();
                            // Report the types whose minute has passed.
                            for (kind, t) in stage.types.iter_mut() {
                                let Some(at) = t.report_at.filter(|at| *at <= time) else {
                                    continue;
                                };
                                t.report_at = None;
                                for (row, diff) in report(*kind, t, &stage.ids) {
                                    batch.give(SchemaOut::Inferred(row), at, diff);
                                }
                            }
                            let mut out = Vec::new();
                            let mut by_type: BTreeMap<Sym, Vec<Event>> = BTreeMap::new();
                            for event in events {
                                by_type.entry(event.kind).or_default().push(event);
                            }
                            for (kind, events) in by_type {
                                let state = stage.types.entry(kind).or_default();
                                let mut tick = Counts::default();
                                let mut tick_events = 0;
                                let mut admitted = Vec::new();
                                for event in events {
                                    match observations_by_id(
                                        &event.payload,
                                        &limits,
                                        &mut stage.ids,
                                        &mut scratch,
                                        &mut obs,
                                    ) {
                                        Ok(()) => {
                                            for o in &obs {
                                                *tick.entry(*o).or_insert(0) += 1;
                                            }
                                            tick_events += 1;
                                            admitted.push(event);
                                        }
                                        Err(e) => out.push(SchemaOut::Dead(Box::new(letter(
                                            &names,
                                            "depth_exceeded",
                                            e.to_string(),
                                            &event,
                                        )))),
                                    }
                                }
                                add(&mut state.history, &tick, 1);
                                state.history_events += tick_events;
                                add(&mut state.recent, &tick, 1);
                                state.recent_events += tick_events;
                                state.recent_log.push_back((time, tick, tick_events));
                                while let Some((t, _, _)) = state.recent_log.front() {
                                    if *t + plan.window_ms > time {
                                        break;
                                    }
                                    let (_, old, n) = state.recent_log.pop_front().expect("front exists");
                                    add(&mut state.recent, &old, -1);
                                    state.recent_events -= n;
                                }
                                state.report_at = Some(boundary(time));
                                consider(&plan, &mut stage.registry, kind, state, &stage.ids, time, &mut out);
                                for event in admitted {
                                    out.push(conform_event(
                                        &plan,
                                        &stage.registry,
                                        &mut conformers,
                                        state,
                                        event,
                                        &names,
                                    ));
                                }
                            }
                            for o in out {
                                batch.give(o, time, 1);
                            }
                        }
                    };
                    apply_with_snapshots(&mut state, limit, &mut stage, &mut apply, Stage::save);
                    if limit.is_none() {
                        // The input is exhausted: report the final inference, persist versions.
                        for (kind, t) in stage.types.iter_mut() {
                            let Some(at) = t.report_at.take() else {
                                continue;
                            };
                            for (row, diff) in report(*kind, t, &stage.ids) {
                                batch.give(SchemaOut::Inferred(row), at, diff);
                            }
                        }
                        if let Some(dir) = &plan.registry_dir {
                            // Each worker saves the event types it owns, so no two write one file.
                            let mut owned = stage.registry.clone();
                            owned
                                .subjects
                                .retain(|t, _| stage.types.keys().any(|k| k.as_str() == t));
                            if let Err(e) = owned.save(dir) {
                                tracing::error!("saving the schema registry to {}: {e}", dir.display());
                            }
                        }
                    }
                    batch.send(&pending.caps, output);
                    let hold = stage
                        .types
                        .values()
                        .filter_map(|t| t.report_at)
                        .chain(pending.next_time())
                        .min();
                    pending.caps.downgrade(hold.iter());
                }
            },
        )
        .as_collection()
}

/// The operator's state on one worker.
struct Stage {
    types: BTreeMap<Sym, TypeState>,
    registry: Registry,
    ids: PathIds,
}

/// Observation counts with paths by name, as snapshots keep them.
type NamedCounts = Vec<(String, Obs, u64)>;

/// One event type's state in a snapshot.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedType {
    history: NamedCounts,
    history_events: u64,
    /// The recent window's ticks: time, counts, events.
    recent_log: Vec<(u64, NamedCounts, u64)>,
    rejected: Option<String>,
    reported: Vec<Vec<Value>>,
    report_at: Option<u64>,
    /// The type's versions, as JSON (schemas hold JSON defaults).
    versions: String,
}

/// What a worker's schema stage saves: the types it owns.
type Saved = Vec<(Sym, SavedType)>;

/// A registered version as snapshots keep it.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedVersion {
    version: u32,
    schema: crate::schema::schema::Schema,
    registered_at: i64,
    /// The drift score's bits (JSON has no NaN).
    drift: u64,
    changes: Vec<crate::schema::drift::Change>,
    mode: crate::schema::compat::Compatibility,
    pinned: bool,
}

impl Stage {
    fn save(&self) -> Saved {
        let named = |counts: &Counts| -> NamedCounts {
            counts
                .iter()
                .map(|((id, o), n)| (self.ids.path(*id).to_string(), *o, *n))
                .collect()
        };
        self.types
            .iter()
            .map(|(kind, t)| {
                let versions: Vec<SavedVersion> = self
                    .registry
                    .versions(kind.as_str())
                    .iter()
                    .map(|v| SavedVersion {
                        version: v.version,
                        schema: v.schema.clone(),
                        registered_at: v.registered_at,
                        drift: v.drift.to_bits(),
                        changes: v.changes.clone(),
                        mode: v.mode,
                        pinned: v.pinned,
                    })
                    .collect();
                let saved = SavedType {
                    history: named(&t.history),
                    history_events: t.history_events,
                    recent_log: t.recent_log.iter().map(|(at, c, n)| (*at, named(c), *n)).collect(),
                    rejected: t.rejected.clone(),
                    reported: t.reported.clone(),
                    report_at: t.report_at,
                    versions: serde_json::to_string(&versions).unwrap_or_default(),
                };
                (*kind, saved)
            })
            .collect()
    }

    /// Adds the saved types that `owns` says are this worker's, with their versions.
    fn restore(&mut self, saved: Saved, owns: impl Fn(Sym) -> bool) -> Result<(), String> {
        for (kind, s) in saved.into_iter().filter(|(k, _)| owns(*k)) {
            let mut counts = |named: NamedCounts| -> Counts {
                named
                    .into_iter()
                    .map(|(path, o, n)| ((self.ids.intern(&path), o), n))
                    .collect()
            };
            let history = counts(s.history);
            let recent_log: VecDeque<(u64, Counts, u64)> =
                s.recent_log.into_iter().map(|(at, c, n)| (at, counts(c), n)).collect();
            let mut recent = Counts::default();
            for (_, c, _) in &recent_log {
                add(&mut recent, c, 1);
            }
            let versions: Vec<SavedVersion> =
                serde_json::from_str(&s.versions).map_err(|e| format!("the versions of event type `{kind}`: {e}"))?;
            let versions = versions
                .into_iter()
                .map(|v| crate::schema::registry::Version {
                    version: v.version,
                    schema: v.schema,
                    registered_at: v.registered_at,
                    drift: f64::from_bits(v.drift),
                    changes: v.changes,
                    mode: v.mode,
                    pinned: v.pinned,
                })
                .collect();
            self.registry.subjects.insert(kind.as_str().to_string(), versions);
            let state = TypeState {
                history,
                history_events: s.history_events,
                recent_events: recent_log.iter().map(|(_, _, n)| n).sum(),
                recent_log,
                recent,
                rejected: s.rejected,
                reported: s.reported,
                report_at: s.report_at,
            };
            self.types.insert(kind, state);
        }
        Ok(())
    }
}

/// Registers the recent inference of `kind` as a new version when it should be.
fn consider(
    plan: &SchemaPlan,
    registry: &mut Registry,
    kind: Sym,
    state: &mut TypeState,
    ids: &PathIds,
    time: u64,
    out: &mut Vec<SchemaOut>,
) {
    let mut candidate = inferred(state.recent_events, &state.recent, ids).schema();
    for (_, path, value) in plan.defaults.iter().filter(|(t, _, _)| t == kind.as_str()) {
        if let Some(field) = candidate.fields.get_mut(path) {
            field.default = Some(value.clone());
        }
    }
    let (old_version, score, changes) = match registry.latest(kind.as_str()) {
        None if state.history_events < plan.min_events => return,
        None => (None, 1.0, Vec::new()),
        Some(latest) => {
            let d = drift(&latest.schema, &candidate);
            if d.score < plan.drift_threshold || d.changes.is_empty() {
                return;
            }
            (Some(latest.version), d.score, d.changes)
        }
    };
    match registry.register(kind.as_str(), candidate, plan.compatibility, time as i64) {
        Ok(version) => {
            state.rejected = None;
            let entry = registry.latest(kind.as_str()).expect("just registered");
            let fields: Vec<Value> = changes.iter().map(|c| Value::str(&c.to_string())).collect();
            out.push(SchemaOut::Version(vec![
                Value::str(kind.as_str()),
                Value::Int(i64::from(version)),
                Value::Time(time as i64),
                Value::float(score),
                Value::str(&entry.schema.to_json_schema().to_string()),
            ]));
            out.push(SchemaOut::Change(vec![
                Value::str(kind.as_str()),
                old_version.map_or(Value::Null, |v| Value::Int(i64::from(v))),
                Value::Int(i64::from(version)),
                Value::float(score),
                Value::List(fields.into()),
                Value::str(&plan.compatibility.to_string()),
                Value::Time(time as i64),
            ]));
        }
        Err(incompatible) => state.rejected = Some(incompatible.to_string()),
    }
}

fn conform_event(
    plan: &SchemaPlan,
    registry: &Registry,
    conformers: &mut HashMap<(Sym, u32), Option<Conformer>>,
    state: &TypeState,
    event: Event,
    names: &Names,
) -> SchemaOut {
    let versions = registry.versions(event.kind.as_str());
    let policy = ConformPolicy {
        extra: if plan.drop_extra { Extra::Drop } else { Extra::Keep },
        time_unit_ms: 1.0,
    };
    let mut first_error = None;
    for v in versions.iter().rev().take(1 + plan.accept_previous as usize) {
        // One prepared conformer per version (a schema that cannot be prepared conforms nothing).
        let conformer = conformers
            .entry((event.kind, v.version))
            .or_insert_with(|| Conformer::new(&v.schema, policy).ok());
        let Some(conformer) = conformer else {
            first_error.get_or_insert(format!(
                "version {} of `{}` is not a well-formed schema",
                v.version, event.kind
            ));
            continue;
        };
        match conformer.conform(&event.payload) {
            Ok(mut fields) => {
                // Conformed fields come sorted: put `schema_version` in its place.
                let name = Sym::new("schema_version");
                let version = Value::Int(i64::from(v.version));
                match fields.binary_search_by(|(k, _)| k.cmp(&name)) {
                    Ok(i) => fields[i].1 = version,
                    Err(i) => fields.insert(i, (name, version)),
                }
                return SchemaOut::Conformed(Event {
                    time: event.time,
                    kind: event.kind,
                    payload: fields.into(),
                });
            }
            Err(e) => {
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let Some(detail) = first_error else {
        // No version yet (fewer than `min_events` seen): the event passes as it is.
        return SchemaOut::Conformed(event);
    };
    match &state.rejected {
        Some(_) if plan.quarantine => SchemaOut::Quarantined(event),
        Some(rule) => SchemaOut::Dead(Box::new(letter(names, "incompatible_schema", rule.clone(), &event))),
        None => SchemaOut::Dead(Box::new(letter(names, "conform_error", detail, &event))),
    }
}

/// The stage's name and the source's time and type field names, for dead letters.
struct Names {
    stage: String,
    time_field: String,
    type_field: String,
}

fn letter(names: &Names, reason: &str, detail: String, event: &Event) -> DeadLetter {
    DeadLetter {
        stage: names.stage.clone(),
        reason: reason.to_string(),
        detail,
        location: format!("{} event at {}", event.kind, format_time(event.time)),
        record: event.json_text(&names.time_field, &names.type_field),
        event_time: Some(event.time),
        original: None,
    }
}

/// The changes of `kind`'s `inferred_schemas` rows since the last report.
fn report(kind: Sym, state: &mut TypeState, ids: &PathIds) -> Vec<(Vec<Value>, isize)> {
    let mut rows = Vec::new();
    for (scope, events, counts) in [
        ("history", state.history_events, &state.history),
        ("recent", state.recent_events, &state.recent),
    ] {
        for (path, stats) in inferred(events, counts, ids).fields {
            let kinds: Vec<String> = stats.kinds.iter().map(|(k, n)| format!("{k}:{n}")).collect();
            rows.push(vec![
                Value::str(kind.as_str()),
                Value::str(scope),
                Value::str(&path),
                Value::Int(stats.present as i64),
                Value::Int(stats.nulls as i64),
                Value::str(&kinds.join(" ")),
                Value::Int(events as i64),
            ]);
        }
    }
    rows.sort();
    let mut changes = Vec::new();
    let old = std::mem::replace(&mut state.reported, rows);
    for row in &old {
        if state.reported.binary_search(row).is_err() {
            changes.push((row.clone(), -1));
        }
    }
    for row in &state.reported {
        if old.binary_search(row).is_err() {
            changes.push((row.clone(), 1));
        }
    }
    changes
}
