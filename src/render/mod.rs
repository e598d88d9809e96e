//! Rendering: a [`Plan`] becomes timely/differential operators on one worker.
//!
//! ```text
//!  source inputs ──► stage ──► stage ──► …        one `match stage.kind` per stage, each kind in
//!        │            │ main, ports   │            its own file; every stage returns a StageOut
//!        │            └── errs ───────┴──┐         { main, ports, errs }
//!        └── dead letters (late, …) ─────┴──► dead_letters
//!  plan.outputs(): each output concatenates the (stage, port) collections it names ──► sink
//! ```
//!
//! Each source has two inputs, driven by [`crate::run`]: events at their event-time tick, and
//! the source's dead letters. The input frontier follows the source's watermark. A stage reads
//! its inputs' main collections as events; an aggregate's rows become events at their window's
//! last millisecond ([`window::rows_as_events`]).

pub mod continuous;
pub mod dedup;
pub mod enrich;
pub mod fan_out;
pub mod forecast;
pub mod join;
pub mod metadata;
pub mod pending;
pub mod replication;
pub mod router;
pub mod rules;
pub mod schema;
pub mod services;
pub mod session;
pub mod sink;
pub mod snapshot;
pub mod top_n;
pub mod window;

use std::cell::RefCell;
use std::rc::Rc;

use differential_dataflow::input::InputSession;
use differential_dataflow::VecCollection;
use timely::dataflow::{ProbeHandle, Scope};

use crate::dead_letter::DeadLetter;
use crate::event::Event;
use crate::plan::{OutputPlan, Plan, Port, StageKind, StageRef};
use crate::value::Value;
use enrich::Counter;
use sink::{SinkEnv, SinkResult};
use window::WindowRow;

pub type EventsOf<'s> = VecCollection<'s, u64, Event, isize>;
pub type RowsOf<'s> = VecCollection<'s, u64, Vec<Value>, isize>;
pub type WindowsOf<'s> = VecCollection<'s, u64, WindowRow, isize>;
pub type CountersOf<'s> = VecCollection<'s, u64, Counter, isize>;
pub type DeadOf<'s> = VecCollection<'s, u64, DeadLetter, isize>;

/// A collection a stage makes.
#[derive(Clone)]
pub enum Coll<'s> {
    Events(EventsOf<'s>),
    Rows(RowsOf<'s>),
    Windows(WindowsOf<'s>),
    Counters(CountersOf<'s>),
}

/// What rendering one stage gives: its main collection, the collections of its other ports,
/// and its rejected records.
pub struct StageOut<'s> {
    pub main: Coll<'s>,
    pub ports: Vec<(Port, Coll<'s>)>,
    pub errs: Vec<DeadOf<'s>>,
}

impl<'s> StageOut<'s> {
    fn port(&self, port: &Port) -> Coll<'s> {
        match port {
            Port::Main => self.main.clone(),
            _ => self
                .ports
                .iter()
                .find(|(p, _)| p == port)
                .map(|(_, c)| c.clone())
                .expect("the plan names only ports its stages make"),
        }
    }
}

/// The inputs of one source.
pub struct SourceInputs {
    pub events: InputSession<u64, Event, isize>,
    pub dead: InputSession<u64, DeadLetter, isize>,
    /// The source's events as every worker has fed them: its frontier is the slowest worker's
    /// input time, which readers use for flow control (`run::read_splits`).
    pub fed: ProbeHandle<u64>,
    /// Whether an operator of this worker has put work off ([`pending::Backlog`]): readers
    /// step the worker until it has none before they read on.
    pub backlog: pending::Backlog,
}

/// A rendered dataflow: its inputs, a probe on every output, and the sinks' results.
pub struct Rendered {
    pub inputs: Vec<SourceInputs>,
    pub probe: ProbeHandle<u64>,
    pub sinks: Vec<(String, Rc<RefCell<SinkResult>>)>,
}

/// A stage's tagged output split by `part` into `n` collections, each record moved into the
/// one its `part` names (timely's `partition`). Stages with several kinds of output (events,
/// counters, dead letters, …) read them out of their parts with `flat_map`: a stream read by
/// several `flat_map`s would clone every batch once for each reader but the last. Cheaper still
/// is an operator with one output per kind, which moves each record once: `fan_out` (metadata,
/// rules, and the outputs of joins and dedup), or the outputs of a stage's own operator
/// (router, forecasts).
pub fn split<'s, O: Clone + 'static>(
    out: VecCollection<'s, u64, O, isize>,
    n: usize,
    part: impl Fn(&O) -> usize + 'static,
) -> Vec<VecCollection<'s, u64, O, isize>> {
    use differential_dataflow::AsCollection;
    use timely::dataflow::operators::vec::Partition;
    (out.inner)
        .partition(n as u64, move |(o, t, r)| (part(&o) as u64, (o, t, r)))
        .into_iter()
        .map(|stream| stream.as_collection())
        .collect()
}

/// [`split`] into a fixed number of parts.
pub fn split_into<'s, O: Clone + 'static, const N: usize>(
    out: VecCollection<'s, u64, O, isize>,
    part: impl Fn(&O) -> usize + 'static,
) -> [VecCollection<'s, u64, O, isize>; N] {
    let parts = split(out, N, part);
    parts
        .try_into()
        .unwrap_or_else(|_| unreachable!("`split` makes `N` parts"))
}

/// Builds `plan` in `scope`; `registries` are the schema stages' registries, in plan order.
/// `env` says where sinks write, and what else they serve (live views, checkpoints).
pub fn render(
    plan: &Plan,
    scope: Scope<'_, u64>,
    registries: &[crate::schema::registry::Registry],
    env: &SinkEnv,
) -> Rendered {
    let probe = ProbeHandle::new();
    let backlog = pending::Backlog::default();
    let mut inputs = Vec::new();
    let mut sources: Vec<EventsOf<'_>> = Vec::new();
    let mut dead: Vec<DeadOf<'_>> = Vec::new();
    for _ in &plan.sources {
        let mut ev = InputSession::new();
        let mut dl = InputSession::new();
        // The probe also consumes the events, so a source that no stage reads does not pile up.
        let fed = ProbeHandle::new();
        sources.push(ev.to_collection(scope).probe_with(&probe).probe_with(&fed));
        dead.push(dl.to_collection(scope));
        inputs.push(SourceInputs {
            events: ev,
            dead: dl,
            fed,
            backlog: backlog.clone(),
        });
    }

    // Operators whose state depends on a tcp source save it for checkpoints (`sluice serve`):
    // file sources are read again in full after a restart.
    let tcp = |source: usize| plan.sources[source].format == crate::plan::Format::Tcp;
    let store = |served: bool| env.state.as_ref().filter(|_| served);
    let mut registries = registries.iter();
    let mut outs: Vec<StageOut<'_>> = Vec::with_capacity(plan.stages.len());
    for stage in &plan.stages {
        let events = |r: &StageRef| events_of(plan, r, &sources, &outs);
        let input = events(&stage.inputs[0]);
        let fields = plan.fields_of(&stage.inputs[0]);
        let out = match &stage.kind {
            StageKind::Schema(p) => {
                let registry = registries.next().expect("a registry per schema stage").clone();
                schema::stage(input, p, &plan.sources[p.source], registry, store(tcp(p.source)))
            }
            StageKind::Dedup(p) => {
                let name = &plan.sources[p.source].name;
                // A `keep = "last"` stage's held events are not snapshotted (see `plan::retention`).
                dedup::stage(input, p, name, fields, store(tcp(p.source) && !p.retracts()))
            }
            StageKind::Metadata(p) => metadata::stage(input, p, &plan.sources[p.source].name, fields),
            StageKind::Enrich(p) => {
                let contexts: Vec<EventsOf<'_>> = stage.inputs[1..].iter().map(events).collect();
                enrich::stage(input, contexts, p, plan, env.state.as_ref())
            }
            StageKind::Aggregate(p) => window::stage(input, p, fields),
            StageKind::Forecast(p) => forecast::stage(input, p, fields, &backlog),
            StageKind::Router(p) => {
                let forecast = p.forecast_input.map(|k| match &stage.inputs[k] {
                    StageRef::Stage(j) => match &outs[*j].main {
                        Coll::Rows(rows) => rows.clone(),
                        _ => unreachable!("a router reads a forecast's rows"),
                    },
                    _ => unreachable!("a router reads a forecast stage"),
                });
                let rates = p.rates_input.map(|k| match &stage.inputs[k] {
                    StageRef::Stage(j) => match &outs[*j].main {
                        Coll::Windows(rows) => rows.clone(),
                        _ => unreachable!("a router reads its shard rates' windows"),
                    },
                    _ => unreachable!("a router reads its shard rates' stage"),
                });
                let fields = [0, 1, 2].map(|k| plan.fields_of(&stage.inputs[k]));
                let inputs = router::Inputs {
                    events: input,
                    load: events(&stage.inputs[1]),
                    regions: events(&stage.inputs[2]),
                    forecast,
                    rates,
                };
                router::stage(inputs, p, fields)
            }
            StageKind::Replication(p) => {
                let placement = match outs[p.router_stage].port(&Port::Placement) {
                    Coll::Rows(rows) => rows,
                    _ => unreachable!("a router's placement is rows"),
                };
                let completions = events(&stage.inputs[1]);
                replication::stage(input, completions, placement, p, plan.fields_of(&stage.inputs[1]))
            }
            StageKind::Services(p) => services::stage(input, p, fields),
            StageKind::TopN(p) => top_n::stage(input, p, fields),
            // Not snapshotted: `plan::retention` keeps both sides' records.
            StageKind::Join(p) => join::stage(input, events(&stage.inputs[1]), p),
        };
        dead.extend(out.errs.iter().cloned());
        outs.push(out);
    }

    let mut sinks = Vec::new();
    for output in plan.outputs() {
        let result = if output.name == crate::DEAD_LETTERS {
            // Records are clipped as they join the output, so a flood of huge rejected lines
            // holds memory only while a batch passes through.
            let limit = plan.dead_letter_record_bytes;
            let letters = differential_dataflow::collection::concatenate(scope, dead.clone())
                .map(move |d| d.clip(limit))
                .probe_with(&probe);
            sink::sink(letters, output.clone(), env, |d: DeadLetter| d.row())
        } else {
            let parts: Vec<Coll<'_>> = output.from.iter().map(|(i, port)| outs[*i].port(port)).collect();
            sink_parts(plan, output, parts, scope, &probe, env)
        };
        sinks.push((output.name.clone(), result));
    }

    if let (Some(live), 0) = (&env.live, scope.index()) {
        live.rendered();
    }
    Rendered { inputs, probe, sinks }
}

/// The events of `input`: a source's, or a stage's main collection read as events.
fn events_of<'s>(plan: &Plan, input: &StageRef, sources: &[EventsOf<'s>], outs: &[StageOut<'s>]) -> EventsOf<'s> {
    let coll = match input {
        StageRef::Source(i) => return sources[*i].clone(),
        StageRef::Stage(i) => outs[*i].main.clone(),
        StageRef::Route { stage, destination } => outs[*stage].port(&Port::Route(destination.clone())),
    };
    match coll {
        Coll::Events(e) => e,
        Coll::Windows(rows) => {
            let StageRef::Stage(i) = input else {
                unreachable!("only an aggregate makes window rows")
            };
            match &plan.stages[*i].kind {
                StageKind::Aggregate(a) => window::rows_as_events(rows, a),
                _ => unreachable!("only an aggregate makes window rows"),
            }
        }
        Coll::Rows(_) | Coll::Counters(_) => unreachable!("validation lets stages read only events and windows"),
    }
}

/// Concatenates an output's collections and attaches its sink.
fn sink_parts<'s>(
    plan: &Plan,
    output: &OutputPlan,
    parts: Vec<Coll<'s>>,
    scope: Scope<'s, u64>,
    probe: &ProbeHandle<u64>,
    env: &SinkEnv,
) -> Rc<RefCell<SinkResult>> {
    use differential_dataflow::collection::concatenate;
    let spec = output.clone();
    match parts.first() {
        Some(Coll::Events(_)) => {
            let events = parts.into_iter().filter_map(|p| match p {
                Coll::Events(e) => Some(e),
                _ => None,
            });
            let stream = concatenate(scope, events).probe_with(probe);
            // Validation gives every stage routing to one output the same `order_by`.
            let order_by = match &plan.stages[output.from[0].0].kind {
                StageKind::Enrich(e) => e.order_by.clone(),
                _ => Vec::new(),
            };
            let has_type = !plan.fields_of(&StageRef::Stage(output.from[0].0)).1.is_empty();
            // Each type's name as a value, made once: an event's row shares it.
            let kinds: RefCell<rustc_hash::FxHashMap<crate::value::Sym, Value>> = RefCell::default();
            let to_row = move |e: Event| {
                // The sort key: the `order_by` values, then a marker so that the prefix is never empty.
                let mut row: Vec<Value> = Vec::with_capacity(order_by.len() + 4);
                row.extend(order_by.iter().map(|a| a.get(&e).unwrap_or(Value::Null)));
                row.push(Value::Null);
                row.push(Value::Time(e.time));
                if has_type {
                    let mut kinds = kinds.borrow_mut();
                    row.push(
                        kinds
                            .entry(e.kind)
                            .or_insert_with(|| Value::str(e.kind.as_str()))
                            .clone(),
                    );
                }
                row.push(e.payload_value());
                row
            };
            sink::sink(stream, spec, env, to_row)
        }
        Some(Coll::Windows(_)) => {
            let rows = parts.into_iter().filter_map(|p| match p {
                Coll::Windows(w) => Some(w),
                _ => None,
            });
            sink::sink(concatenate(scope, rows).probe_with(probe), spec, env, |w| {
                w.into_values()
            })
        }
        Some(Coll::Counters(_)) => {
            let counters = parts.into_iter().filter_map(|p| match p {
                Coll::Counters(c) => Some(c),
                _ => None,
            });
            // A stage counts with one update per event and counter: they are summed per batch,
            // where they are (no exchange), before they become rows.
            let counters = concatenate(scope, counters).consolidate_stream();
            let to_row = |c: Counter| {
                vec![
                    crate::value::shared_str(c.metric.as_str()),
                    crate::value::shared_str(c.label.as_str()),
                ]
            };
            sink::sink(counters.probe_with(probe), spec, env, to_row)
        }
        Some(Coll::Rows(_)) | None => {
            let rows = parts.into_iter().filter_map(|p| match p {
                Coll::Rows(r) => Some(r),
                _ => None,
            });
            // Already rows: straight to the sink, without a pass that would only move them.
            sink::sink_rows(concatenate(scope, rows).probe_with(probe).inner, spec, env)
        }
    }
}
