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

/// Builds `plan` in `scope`.
pub fn render(plan: &Plan, scope: Scope<'_, u64>, out_dir: Option<PathBuf>, collect: bool) -> Rendered {
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
