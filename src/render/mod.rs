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

pub mod continuous;
pub mod dedup;
pub mod enrich;
pub mod pending;
pub mod rules;
pub mod schema;
pub mod sink;
pub mod snapshot;
pub mod window;

use std::cell::RefCell;
use std::rc::Rc;

use differential_dataflow::input::InputSession;
use differential_dataflow::VecCollection;
use timely::dataflow::{ProbeHandle, Scope};

use crate::dead_letter::DeadLetter;
use crate::event::{Accessor, Event};
use crate::plan::{Emit, Plan};
use crate::value::Value;
use sink::{OutputSpec, SinkEnv, SinkResult};
use window::WindowRow;

type EventsOf<'s> = VecCollection<'s, u64, Event, isize>;

/// Columns of `rule_stats`.
pub const RULE_STATS_COLUMNS: [&str; 7] = [
    "rule_id",
    "action",
    "window_start",
    "window_end",
    "matches",
    "actions",
    "failures",
];

/// `rule_stats` as a windowed aggregate over the rules stage's `rule_stat` events: per rule and
/// tumbling window of event time, how often it matched, acted and failed; each window once,
/// when the watermark passes its end. Behind a continuous join, rule outcomes are retracted with
/// their events: closed windows then take revisions for one more window length.
fn rule_stats_plan(stage: &crate::plan::EnrichPlan) -> crate::plan::AggregatePlan {
    use crate::event::FieldPath;
    use crate::plan::{AggregatePlan, Func, MeasurePlan, WindowPlan};
    let field = |name: &str| Accessor::Payload(FieldPath::field(name));
    let count_where = |name: &str, outcome: &str| MeasurePlan {
        name: name.into(),
        func: Func::Count,
        arg: None,
        filter: Some(crate::expr::parse(&format!("outcome == '{outcome}'")).expect("a valid expression")),
    };
    AggregatePlan {
        name: crate::plan::RULE_STATS.into(),
        source: stage.source,
        filter: None,
        window: WindowPlan {
            size_ms: stage.rule_stats_window_ms,
            slide_ms: stage.rule_stats_window_ms,
        },
        group_by: vec![("rule_id".into(), field("rule_id")), ("action".into(), field("action"))],
        measures: vec![
            count_where("matches", "match"),
            count_where("actions", "action"),
            count_where("failures", "failure"),
        ],
        emit: Emit::Final,
        monotonic: !stage.retracts(),
        retain_ms: if stage.retracts() {
            stage.rule_stats_window_ms
        } else {
            0
        },
    }
}

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
/// `env` says where sinks write, and what else they serve (live views, checkpoints).
pub fn render(
    plan: &Plan,
    scope: Scope<'_, u64>,
    registries: &[crate::schema::registry::Registry],
    env: &SinkEnv,
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

    // Operators whose state depends on a tcp source save it for checkpoints (`sluice serve`):
    // file sources are read again in full after a restart.
    let tcp = |source: usize| plan.sources[source].format == crate::plan::Format::Tcp;
    let store = |served: bool| env.state.as_ref().filter(|_| served);
    let mut sinks = Vec::new();
    let mut schema_outs = Vec::new();
    for (stage, registry) in plan.schemas.iter().zip(registries) {
        let source = &plan.sources[stage.source];
        let store = store(tcp(stage.source));
        let out = schema::render(events[stage.source].clone(), stage, source, registry.clone(), store);
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
                changelog,
                ..OutputSpec::new(name, columns)
            };
            let rows = rows.probe_with(&probe);
            sinks.push((name.to_string(), sink::sink(rows, spec, env, Vec::clone)));
        }
    }

    let mut duplicates = Vec::new();
    let mut counters: Vec<VecCollection<'_, u64, enrich::Counter, isize>> = Vec::new();
    for stage in &plan.dedups {
        let source = &plan.sources[stage.source];
        let fields = (source.time_field.as_str(), source.type_field.as_str());
        let store = store(tcp(stage.source)).map(|s| (s, source.name.as_str()));
        let out = dedup::render(events[stage.source].clone(), stage, fields, store);
        events[stage.source] = out.clone().flat_map(|o| match o {
            dedup::DedupOut::Unique(e) => Some(e),
            dedup::DedupOut::Duplicate(_) => None,
        });
        let counter = enrich::Counter::new("events_deduplicated", &source.name);
        counters.push(out.clone().flat_map(move |o| match o {
            dedup::DedupOut::Duplicate(_) => Some(counter),
            dedup::DedupOut::Unique(_) => None,
        }));
        duplicates.push(out.flat_map(|o| match o {
            dedup::DedupOut::Duplicate(row) => Some(row),
            dedup::DedupOut::Unique(_) => None,
        }));
    }
    if !duplicates.is_empty() {
        let rows = differential_dataflow::collection::concatenate(scope, duplicates).probe_with(&probe);
        let spec = OutputSpec::new(crate::plan::DUPLICATES, &dedup::DUPLICATE_COLUMNS);
        sinks.push((
            crate::plan::DUPLICATES.to_string(),
            sink::sink(rows, spec, env, Vec::clone),
        ));
    }

    // Enrichment stages read their context sources' events after those sources' schema and
    // dedup stages.
    let contexts = events.clone();
    let mut blocked = Vec::new();
    let mut stats = Vec::new();
    // (output, order_by, source, changelog, events)
    let mut delivered: Vec<(String, Vec<Accessor>, &crate::plan::SourcePlan, bool, EventsOf<'_>)> = Vec::new();
    for stage in &plan.enrichments {
        let source = &plan.sources[stage.source];
        let fields = (source.time_field.as_str(), source.type_field.as_str());
        let mut stream = events[stage.source].clone();
        for join in &stage.joins {
            let context = &plan.sources[join.context];
            // An as-of join's state is its context table; a continuous join's also its events.
            let served = tcp(join.context) || (join.mode == crate::plan::JoinMode::Continuous && tcp(stage.source));
            let name = snapshot::state_name(&["join", &source.name, &join.alias]);
            let store = store(served).map(|s| (s, name));
            let out = enrich::render(stream, contexts[join.context].clone(), join, context, store);
            stream = out.clone().flat_map(|o| match o {
                enrich::JoinOut::Event(e) => Some(e),
                _ => None,
            });
            counters.push(out.clone().flat_map(|o| match o {
                enrich::JoinOut::Count(c) => Some(c),
                _ => None,
            }));
            dead.push(out.flat_map(|o| match o {
                enrich::JoinOut::Dead(d) => Some(d),
                _ => None,
            }));
        }
        let out = rules::render(stream, stage, &source.name, fields);
        events[stage.source] = out.clone().flat_map(|o| match o {
            rules::RuleOut::Event(e) => Some(e),
            _ => None,
        });
        counters.push(out.clone().flat_map(|o| match o {
            rules::RuleOut::Count(c) => Some(c),
            _ => None,
        }));
        blocked.push(out.clone().flat_map(|o| match o {
            rules::RuleOut::Blocked(row) => Some(row),
            _ => None,
        }));
        let stat_events = out.clone().flat_map(|o| match o {
            rules::RuleOut::Stat(e) => Some(e),
            _ => None,
        });
        let (rows, rejected) = window::render(stat_events, &rule_stats_plan(stage), ("time", "type"));
        stats.push(rows);
        dead.push(rejected);
        let changelog = stage.retracts();
        if let Some(name) = &stage.output {
            let stream = events[stage.source].clone();
            delivered.push((name.clone(), stage.order_by.clone(), source, changelog, stream));
        }
        for rule in &stage.rules {
            if let crate::plan::RuleAction::Route {
                destination: Some(d), ..
            } = &rule.action
            {
                if delivered.iter().any(|(n, ..)| n == d) {
                    continue;
                }
                let wanted = crate::value::Sym::new(d);
                let routed = out.clone().flat_map(move |o| match o {
                    rules::RuleOut::Routed(dest, e) if dest == wanted => Some(e),
                    _ => None,
                });
                delivered.push((d.clone(), stage.order_by.clone(), source, changelog, routed));
            }
        }
    }
    for (name, order_by, source, changelog, stream) in delivered {
        let stream = stream.probe_with(&probe);
        let mut columns = vec![source.time_field.as_str(), "_payload"];
        if !source.type_field.is_empty() {
            columns.insert(1, source.type_field.as_str());
        }
        let spec = OutputSpec {
            sort_prefix: order_by.len() + 1,
            flatten: true,
            changelog,
            ..OutputSpec::new(&name, &columns)
        };
        let has_type = !source.type_field.is_empty();
        let to_row = move |e: &Event| {
            // The sort key: the `order_by` values, then a marker so that the prefix is never empty.
            let mut row: Vec<Value> = order_by.iter().map(|a| a.get(e).unwrap_or(Value::Null)).collect();
            row.push(Value::Null);
            row.push(Value::Time(e.time));
            if has_type {
                row.push(Value::str(e.kind.as_str()));
            }
            row.push(e.payload_value());
            row
        };
        sinks.push((name.clone(), sink::sink(stream, spec, env, to_row)));
    }
    if !plan.enrichments.is_empty() {
        let rows = differential_dataflow::collection::concatenate(scope, blocked).probe_with(&probe);
        // Behind a continuous join, blocked events and rule statistics are retracted too.
        let changelog = plan.enrichments.iter().any(crate::plan::EnrichPlan::retracts);
        let spec = OutputSpec {
            changelog,
            ..OutputSpec::new(crate::plan::BLOCKED, &rules::BLOCKED_COLUMNS)
        };
        sinks.push((
            crate::plan::BLOCKED.to_string(),
            sink::sink(rows, spec, env, Vec::clone),
        ));
        let rows = differential_dataflow::collection::concatenate(scope, stats).probe_with(&probe);
        let spec = OutputSpec {
            changelog,
            ..OutputSpec::new(crate::plan::RULE_STATS, &RULE_STATS_COLUMNS)
        };
        sinks.push((
            crate::plan::RULE_STATS.to_string(),
            sink::sink(rows, spec, env, window_row_values),
        ));
    }
    if !counters.is_empty() {
        let rows = differential_dataflow::collection::concatenate(scope, counters).probe_with(&probe);
        let spec = OutputSpec {
            snapshot: true,
            ..OutputSpec::new(crate::plan::COUNTERS, &["metric", "label"])
        };
        let to_row = |c: &enrich::Counter| vec![Value::str(c.metric.as_str()), Value::str(c.label.as_str())];
        sinks.push((crate::plan::COUNTERS.to_string(), sink::sink(rows, spec, env, to_row)));
    }

    for agg in &plan.aggregates {
        let source = &plan.sources[agg.source];
        let fields = (source.time_field.as_str(), source.type_field.as_str());
        let (rows, rejected) = window::render(events[agg.source].clone(), agg, fields);
        dead.push(rejected);
        let spec = OutputSpec {
            columns: aggregate_columns(agg),
            // Final rows over a retracting input can be revised after their window closed.
            changelog: agg.emit == Emit::Updates || !agg.monotonic,
            ..OutputSpec::new(&agg.name, &[])
        };
        let rows = rows.probe_with(&probe);
        let result = sink::sink(rows, spec, env, window_row_values);
        sinks.push((agg.name.clone(), result));
    }

    // Records are clipped as they join the output, so a flood of huge rejected lines holds
    // memory only while a batch passes through.
    let limit = plan.dead_letter_record_bytes;
    let letters = differential_dataflow::collection::concatenate(scope, dead)
        .map(move |d| d.clip(limit))
        .probe_with(&probe);
    let spec = OutputSpec {
        columns: DeadLetter::columns(),
        tally: Some(1),
        ..OutputSpec::new(crate::DEAD_LETTERS, &[])
    };
    let result = sink::sink(letters, spec, env, DeadLetter::row);
    sinks.push((crate::DEAD_LETTERS.to_string(), result));

    if let (Some(live), 0) = (&env.live, scope.index()) {
        live.rendered();
    }
    Rendered { inputs, probe, sinks }
}
