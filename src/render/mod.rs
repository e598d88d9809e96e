//! Rendering: a [`Plan`] becomes timely/differential operators on one worker.
//!
//! ```text
//!  source inputs ──► events ──► window::render (per aggregate) ──► sink::sink ──► DIR/NAME/
//!        │                          └── dead letters ─┐
//!        └── dead letters (late, bad_time, ...) ──────┴─────────► sink ──► DIR/dead_letters/
//! ```
//!
//! Each source has two inputs, driven by [`crate::run`]: events at their event-time tick, and
//! the source's dead letters. The input frontier follows the source's watermark.

pub mod dedup;
pub mod pending;
pub mod schema;
pub mod sink;
pub mod window;

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use differential_dataflow::input::InputSession;
use differential_dataflow::VecCollection;
use timely::dataflow::{ProbeHandle, Scope};

use crate::dead_letter::DeadLetter;
use crate::event::Event;
use crate::plan::{Emit, Plan};
use crate::value::Value;
use sink::{OutputSpec, SinkResult};
use window::WindowRow;

/// The inputs of one source.
pub struct SourceInputs {
    pub events: InputSession<u64, Event, isize>,
    pub dead: InputSession<u64, DeadLetter, isize>,
}

/// A rendered dataflow: its inputs, a probe on every output, and the sinks' results.
pub struct Rendered {
    pub inputs: Vec<SourceInputs>,
    pub probe: ProbeHandle<u64>,
    pub sinks: Vec<(String, Rc<RefCell<SinkResult>>)>,
}

/// Column names of an aggregate's output.
pub fn aggregate_columns(agg: &crate::plan::AggregatePlan) -> Vec<String> {
    let mut columns: Vec<String> = agg.group_by.iter().map(|(n, _)| n.clone()).collect();
    columns.push("window_start".into());
    columns.push("window_end".into());
    columns.extend(agg.measures.iter().map(|m| m.name.clone()));
    columns
}

/// An aggregate output row's columns (without `time` and `diff`).
pub fn window_row_values(row: &WindowRow) -> Vec<Value> {
    let mut values = row.group.clone();
    values.push(Value::Time(row.start));
    values.push(Value::Time(row.end));
    values.extend(row.measures.iter().cloned());
    values
}

/// Builds `plan` in `scope`; `registries` are the schema stages' registries, in plan order.
pub fn render(
    plan: &Plan,
    scope: Scope<'_, u64>,
    registries: &[crate::schema::registry::Registry],
    out_dir: Option<PathBuf>,
    collect: bool,
) -> Rendered {
    let probe = ProbeHandle::new();
    let mut inputs = Vec::new();
    let mut events: Vec<VecCollection<'_, u64, Event, isize>> = Vec::new();
    let mut dead: Vec<VecCollection<'_, u64, DeadLetter, isize>> = Vec::new();
    for _ in &plan.sources {
        let mut ev = InputSession::new();
        let mut dl = InputSession::new();
        // The probe also consumes the events, so a source that no stage reads does not pile up.
        events.push(ev.to_collection(scope).probe_with(&probe));
        dead.push(dl.to_collection(scope));
        inputs.push(SourceInputs { events: ev, dead: dl });
    }

    let mut sinks = Vec::new();
    let mut schema_outs = Vec::new();
    for (stage, registry) in plan.schemas.iter().zip(registries) {
        let source = &plan.sources[stage.source];
        let out = schema::render(events[stage.source].clone(), stage, source, registry.clone());
        events[stage.source] = out.clone().flat_map(|o| match o {
            schema::SchemaOut::Conformed(e) => Some(e),
            _ => None,
        });
        dead.push(out.clone().flat_map(|o| match o {
            schema::SchemaOut::Dead(d) => Some(d),
            _ => None,
        }));
        let (time_field, type_field) = (source.time_field.clone(), source.type_field.clone());
        let quarantined = out.clone().flat_map(move |o| match o {
            schema::SchemaOut::Quarantined(e) => Some(vec![
                Value::Time(e.time),
                Value::str(e.kind.as_str()),
                Value::str(&e.to_json(&time_field, &type_field).to_string()),
            ]),
            _ => None,
        });
        schema_outs.push((out, quarantined));
    }
    if !schema_outs.is_empty() {
        let concat = |f: fn(schema::SchemaOut) -> Option<Vec<Value>>| {
            let parts: Vec<_> = schema_outs.iter().map(|(o, _)| o.clone().flat_map(f)).collect();
            differential_dataflow::collection::concatenate(scope, parts)
        };
        let outputs = [
            (
                "inferred_schemas",
                schema::INFERRED_COLUMNS.as_slice(),
                true,
                concat(|o| match o {
                    schema::SchemaOut::Inferred(r) => Some(r),
                    _ => None,
                }),
            ),
            (
                "schemas",
                schema::VERSION_COLUMNS.as_slice(),
                false,
                concat(|o| match o {
                    schema::SchemaOut::Version(r) => Some(r),
                    _ => None,
                }),
            ),
            (
                "schema_changes",
                schema::CHANGE_COLUMNS.as_slice(),
                false,
                concat(|o| match o {
                    schema::SchemaOut::Change(r) => Some(r),
                    _ => None,
                }),
            ),
            (
                "quarantine",
                ["event_time", "event_type", "record"].as_slice(),
                false,
                differential_dataflow::collection::concatenate(scope, schema_outs.iter().map(|(_, q)| q.clone())),
            ),
        ];
        for (name, columns, changelog, rows) in outputs {
            let spec = OutputSpec {
                name: name.to_string(),
                columns: columns.iter().map(|c| c.to_string()).collect(),
                changelog,
                tally: None,
            };
            let rows = rows.probe_with(&probe);
            sinks.push((
                name.to_string(),
                sink::sink(rows, spec, out_dir.clone(), collect, Vec::clone),
            ));
        }
    }

    let mut duplicates = Vec::new();
    for stage in &plan.dedups {
        let source = &plan.sources[stage.source];
        let fields = (source.time_field.as_str(), source.type_field.as_str());
        let out = dedup::render(events[stage.source].clone(), stage, fields);
        events[stage.source] = out.clone().flat_map(|o| match o {
            dedup::DedupOut::Unique(e) => Some(e),
            dedup::DedupOut::Duplicate(_) => None,
        });
        duplicates.push(out.flat_map(|o| match o {
            dedup::DedupOut::Duplicate(row) => Some(row),
            dedup::DedupOut::Unique(_) => None,
        }));
    }
    if !duplicates.is_empty() {
        let rows = differential_dataflow::collection::concatenate(scope, duplicates).probe_with(&probe);
        let spec = OutputSpec {
            name: crate::plan::DUPLICATES.to_string(),
            columns: dedup::DUPLICATE_COLUMNS.iter().map(|c| c.to_string()).collect(),
            changelog: false,
            tally: None,
        };
        sinks.push((
            crate::plan::DUPLICATES.to_string(),
            sink::sink(rows, spec, out_dir.clone(), collect, Vec::clone),
        ));
    }

    for agg in &plan.aggregates {
        let source = &plan.sources[agg.source];
        let fields = (source.time_field.as_str(), source.type_field.as_str());
        let (rows, rejected) = window::render(events[agg.source].clone(), agg, fields);
        dead.push(rejected);
        let spec = OutputSpec {
            name: agg.name.clone(),
            columns: aggregate_columns(agg),
            changelog: agg.emit == Emit::Updates,
            tally: None,
        };
        let rows = rows.probe_with(&probe);
        let result = sink::sink(rows, spec, out_dir.clone(), collect, window_row_values);
        sinks.push((agg.name.clone(), result));
    }

    let letters = differential_dataflow::collection::concatenate(scope, dead).probe_with(&probe);
    let spec = OutputSpec {
        name: crate::DEAD_LETTERS.into(),
        columns: DeadLetter::columns(),
        changelog: false,
        tally: Some(1),
    };
    let result = sink::sink(letters, spec, out_dir, collect, DeadLetter::row);
    sinks.push((crate::DEAD_LETTERS.to_string(), result));

    Rendered { inputs, probe, sinks }
}
