//! The plan as a graph of stages: what each stage reads, what it is, and the one list of
//! outputs.
//!
//! ```text
//!  sources ──► Stage { name, inputs: [StageRef], kind: StageKind } ──► … ──► Stage
//!                 │ main collection (events, or window rows read as events)   │
//!                 └─ side ports (duplicates, blocked, …) ──► OutputPlan { from: [(stage, Port)] }
//! ```
//!
//! [`super::Plan::stages`] is in topological order: a stage reads only sources and the stages
//! before it. Validation builds the graph (`super::validate`), rejects cycles naming the chain
//! ([`topological_order`]) and derives each stage's properties: whether its input can retract
//! (`monotonic`), and how far its input's timestamps can run ahead of its events' times
//! (`input_lag_ms`, for stages reading windows).

use serde::Serialize;

use super::{
    AggregatePlan, DedupPlan, Emit, EnrichPlan, Plan, SchemaPlan, BLOCKED, BLOCKED_COLUMNS, CHANGE_COLUMNS, COUNTERS,
    COUNTER_COLUMNS, DUPLICATES, DUPLICATE_COLUMNS, INFERRED_COLUMNS, QUARANTINE_COLUMNS, RULE_STATS,
    RULE_STATS_COLUMNS, SCHEMA_OUTPUTS, VERSION_COLUMNS,
};

/// One node of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    /// The stage's name: its output's name for aggregates, `KIND:SOURCE` for the per-source
    /// stages (`schema:events`, `dedup:events`, `enrich:events`).
    pub name: String,
    /// What the stage reads, main input first. An enrichment also reads one context per join.
    pub inputs: Vec<StageRef>,
    pub kind: StageKind,
}

/// Where a stage's input comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageRef {
    /// A source's events as read (index into [`super::Plan::sources`]).
    Source(usize),
    /// The main collection of an earlier stage (index into [`super::Plan::stages`]): events,
    /// or an aggregate's rows read as events (see [`WINDOW_TIME`]).
    Stage(usize),
    /// The events an enrichment stage's rules route to `destination`.
    Route { stage: usize, destination: String },
}

/// What a stage computes. Every variant is data only; `render` gives each its own file.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    /// Schema inference, registry and conformance (`render::schema`).
    Schema(SchemaPlan),
    /// Deduplication (`render::dedup`).
    Dedup(DedupPlan),
    /// Routing metadata: priority, complexity, shard key and shard (`render::metadata`).
    Metadata(Box<super::MetadataPlan>),
    /// Joins, derived fields and rules (`render::enrich`, `render::rules`).
    Enrich(EnrichPlan),
    /// A windowed aggregate (`render::window`).
    Aggregate(AggregatePlan),
    /// Load forecasts (`render::forecast`).
    Forecast(super::ForecastPlan),
    /// Routing decisions (`render::router`). Inputs: events with routing metadata, load
    /// samples, regions, and optionally a forecast.
    Router(Box<super::RouterPlan>),
    /// Replication records and tasks (`render::replication`). Inputs: a router's decisions and
    /// a completions stream.
    Replication(Box<super::router::ReplicationPlan>),
    /// Service-interaction models: Markov transitions, resonance and predictive pipes
    /// (`render::services`). Input: an interaction log.
    Services(Box<super::services::ServicesPlan>),
    /// The first `n` rows per partition (`render::top_n`). Input: events or an output's rows.
    TopN(Box<super::top_n::TopNPlan>),
    /// Two inputs joined on equal keys (`render::join`). Inputs: the left, then the right.
    Join(Box<super::join::BinaryJoinPlan>),
}

impl StageKind {
    pub fn name(&self) -> &'static str {
        match self {
            StageKind::Schema(_) => "schema",
            StageKind::Dedup(_) => "dedup",
            StageKind::Metadata(_) => "metadata",
            StageKind::Enrich(_) => "enrich",
            StageKind::Aggregate(_) => "aggregate",
            StageKind::Forecast(_) => "forecast",
            StageKind::Router(_) => "router",
            StageKind::Replication(_) => "replication",
            StageKind::Services(_) => "services",
            StageKind::TopN(_) => "top_n",
            StageKind::Join(_) => "join",
        }
    }
}

/// A collection a stage makes besides its main one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Port {
    /// The stage's main collection (events, or an aggregate's rows).
    Main,
    /// Events routed to a destination by a rule.
    Route(String),
    /// Duplicates found by deduplication.
    Duplicates,
    /// Schema statistics, versions, version changes, quarantined events.
    Inferred,
    Versions,
    Changes,
    Quarantine,
    /// Events blocked by a rule, and per-rule statistics.
    Blocked,
    RuleStats,
    /// Counters of deduplication, metadata and enrichment.
    Counters,
    /// Realized forecast errors.
    Errors,
    /// Shard migrations of a router.
    Migrations,
    /// A router's placement of shards (with `[routers.replication]`).
    Placement,
    /// Replication tasks.
    Tasks,
    /// One of a services stage's outputs, by its suffix (`transitions`, `pipes`, …).
    Model(&'static str),
}

/// How an output's rows are shaped: what the sink writes, with its flags.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OutputPlan {
    pub name: String,
    /// The collections written, concatenated. Empty for `dead_letters`, which takes every
    /// stage's and every source's rejected records.
    pub from: Vec<(usize, Port)>,
    pub columns: Vec<String>,
    /// Add `time` and `diff` columns.
    pub changelog: bool,
    /// Count rows by the value of this column (dead letters by reason).
    pub tally: Option<usize>,
    /// Rows arrive with this many leading values that are a sort key, not columns: parts are
    /// sorted by `(key, time, row)` and hold only times the input frontier has passed, so the
    /// output is in time order per key across parts (ordered delivery). The last of them is a
    /// marker (null), so that the prefix is never empty; with several workers, rows go to the
    /// worker of the values before it ([`crate::value::key_hash`]).
    pub sort_prefix: usize,
    /// The last value of each row is an object whose fields become the trailing columns (the
    /// union over the part, each part with its own schema).
    pub flatten: bool,
    /// Write the collection once, when the input is exhausted: each distinct row with a `value`
    /// column holding its net count (counters).
    pub snapshot: bool,
}

impl OutputPlan {
    pub fn new(name: &str, columns: &[&str]) -> OutputPlan {
        OutputPlan {
            name: name.to_string(),
            from: Vec::new(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            changelog: false,
            tally: None,
            sort_prefix: 0,
            flatten: false,
            snapshot: false,
        }
    }
}

/// The event-time field of an aggregate's rows read as events: the window's last millisecond,
/// `window_end - 1` (Flink's `window_time`), so a row falls in the window of a later stage
/// that covers its own. The rows' other columns are the events' payload fields, by name.
pub const WINDOW_TIME: &str = "window_time";

/// Orders `n` nodes so that every node comes after the nodes it depends on (`deps(i)`), keeping
/// the given order where it is free. A cycle is an error holding the nodes around it, first
/// repeated last (`[a, b, a]`).
pub fn topological_order(n: usize, deps: impl Fn(usize) -> Vec<usize>) -> Result<Vec<usize>, Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        i: usize,
        deps: &dyn Fn(usize) -> Vec<usize>,
        marks: &mut [Mark],
        path: &mut Vec<usize>,
        order: &mut Vec<usize>,
    ) -> Result<(), Vec<usize>> {
        match marks[i] {
            Mark::Done => return Ok(()),
            Mark::Open => {
                let from = path.iter().position(|p| *p == i).expect("an open node is on the path");
                let mut cycle = path[from..].to_vec();
                cycle.push(i);
                return Err(cycle);
            }
            Mark::New => {}
        }
        marks[i] = Mark::Open;
        path.push(i);
        for d in deps(i) {
            visit(d, deps, marks, path, order)?;
        }
        path.pop();
        marks[i] = Mark::Done;
        order.push(i);
        Ok(())
    }
    let mut marks = vec![Mark::New; n];
    let mut order = Vec::with_capacity(n);
    for i in 0..n {
        visit(i, &deps, &mut marks, &mut Vec::new(), &mut order)?;
    }
    Ok(order)
}

/// The source whose events `input` carries, through schema, dedup and enrichment stages;
/// `None` when it carries an aggregate's rows, a top-N's (whose fields are the ones of what
/// it reads, plus its rank) or a join's.
pub fn reads_events_of(plan: &Plan, input: &StageRef) -> Option<usize> {
    match input {
        StageRef::Source(i) => Some(*i),
        StageRef::Stage(i) | StageRef::Route { stage: i, .. } => match &plan.stages[*i].kind {
            StageKind::Aggregate(_) | StageKind::Forecast(_) | StageKind::TopN(_) | StageKind::Join(_) => None,
            _ => reads_events_of(plan, &plan.stages[*i].inputs[0]),
        },
    }
}

/// The plan's outputs, in the order summaries print them: schema outputs, duplicates, enriched
/// and routed events, blocked events, rule statistics, counters, aggregates, top-N outputs,
/// joins and forecasts (in spec order: `aggregates`, `top_n`, `joins` and `forecasts` hold
/// their stages), dead letters.
pub(super) fn outputs(
    plan: &Plan,
    aggregates: &[usize],
    top_n: &[usize],
    joins: &[usize],
    forecasts: &[usize],
    routers: &[usize],
) -> Vec<OutputPlan> {
    let stages_of = |f: fn(&StageKind) -> bool| -> Vec<usize> {
        (0..plan.stages.len()).filter(|i| f(&plan.stages[*i].kind)).collect()
    };
    let from =
        |stages: &[usize], port: Port| -> Vec<(usize, Port)> { stages.iter().map(|i| (*i, port.clone())).collect() };
    let mut out = Vec::new();
    let schemas = stages_of(|k| matches!(k, StageKind::Schema(_)));
    if !schemas.is_empty() {
        let made = [
            (Port::Inferred, &INFERRED_COLUMNS[..], true),
            (Port::Versions, &VERSION_COLUMNS[..], false),
            (Port::Changes, &CHANGE_COLUMNS[..], false),
            (Port::Quarantine, &QUARANTINE_COLUMNS[..], false),
        ];
        for (name, (port, columns, changelog)) in SCHEMA_OUTPUTS.iter().zip(made) {
            out.push(OutputPlan {
                from: from(&schemas, port),
                changelog,
                ..OutputPlan::new(name, columns)
            });
        }
    }
    let dedups = stages_of(|k| matches!(k, StageKind::Dedup(_)));
    if !dedups.is_empty() {
        out.push(OutputPlan {
            from: from(&dedups, Port::Duplicates),
            ..OutputPlan::new(DUPLICATES, &DUPLICATE_COLUMNS)
        });
    }
    let enrichments = stages_of(|k| matches!(k, StageKind::Enrich(_)));
    let mut retracting = false;
    for &i in &enrichments {
        let StageKind::Enrich(e) = &plan.stages[i].kind else {
            unreachable!("listed as an enrichment")
        };
        let stage = StageRef::Stage(i);
        let changelog = plan.retracts(&stage);
        retracting |= changelog;
        let (time_field, type_field) = plan.fields_of(&stage);
        let mut columns = vec![time_field, "_payload"];
        if !type_field.is_empty() {
            columns.insert(1, type_field);
        }
        let delivered = |name: &str, port: Port| OutputPlan {
            from: vec![(i, port)],
            sort_prefix: e.order_by.len() + 1,
            flatten: true,
            changelog,
            ..OutputPlan::new(name, &columns)
        };
        out.extend(e.output.as_deref().map(|o| delivered(o, Port::Main)));
        for d in e.destinations() {
            let port = Port::Route(d.to_string());
            // Stages of several sources can route to one destination (validation checks that
            // their events look alike).
            match out.iter_mut().find(|o| o.name == d) {
                Some(existing) => {
                    existing.from.push((i, port));
                    existing.changelog |= changelog;
                }
                None => out.push(delivered(d, port)),
            }
        }
    }
    if !enrichments.is_empty() {
        for (name, port, columns) in [
            (BLOCKED, Port::Blocked, &BLOCKED_COLUMNS[..]),
            (RULE_STATS, Port::RuleStats, &RULE_STATS_COLUMNS[..]),
        ] {
            out.push(OutputPlan {
                from: from(&enrichments, port),
                // Behind a continuous join, blocked events and rule statistics are retracted too.
                changelog: retracting,
                ..OutputPlan::new(name, columns)
            });
        }
    }
    let metadata = stages_of(|k| matches!(k, StageKind::Metadata(_)));
    if !dedups.is_empty() || !enrichments.is_empty() || !metadata.is_empty() {
        let mut stages = dedups.clone();
        stages.extend(&enrichments);
        stages.extend(&metadata);
        stages.sort();
        out.push(OutputPlan {
            from: from(&stages, Port::Counters),
            snapshot: true,
            ..OutputPlan::new(COUNTERS, &COUNTER_COLUMNS)
        });
    }
    for &i in routers {
        out.push(events_output(plan, i, false));
        if let StageKind::Router(r) = &plan.stages[i].kind {
            if r.migration.is_some() {
                let name = format!("{}_migrations", r.name);
                out.push(OutputPlan {
                    from: vec![(i, Port::Migrations)],
                    ..OutputPlan::new(&name, &super::router::MIGRATION_COLUMNS)
                });
            }
            if r.replicas.is_some() {
                out.push(OutputPlan {
                    from: vec![(i, Port::Placement)],
                    changelog: true,
                    ..OutputPlan::new(&format!("{}_placement", r.name), &super::router::PLACEMENT_COLUMNS)
                });
            }
        }
        let replication = plan
            .stages
            .iter()
            .position(|s| matches!(&s.kind, StageKind::Replication(p) if p.router_stage == i));
        if let Some(j) = replication {
            let StageKind::Replication(p) = &plan.stages[j].kind else {
                unreachable!("found as a replication stage")
            };
            out.push(OutputPlan {
                from: vec![(j, Port::Main)],
                changelog: true,
                ..OutputPlan::new(&p.records_output(), p.record_columns())
            });
            out.push(OutputPlan {
                from: vec![(j, Port::Tasks)],
                changelog: true,
                ..OutputPlan::new(&p.tasks_output(), p.task_columns())
            });
        }
    }
    for &i in aggregates {
        let StageKind::Aggregate(a) = &plan.stages[i].kind else {
            unreachable!("listed as an aggregate")
        };
        out.push(OutputPlan {
            from: vec![(i, Port::Main)],
            columns: a.columns(),
            // Final rows over a retracting input can be revised after their window closed.
            changelog: a.emit == Emit::Updates || !a.monotonic,
            ..OutputPlan::new(&a.name, &[])
        });
    }
    for &i in top_n {
        // The rows of its input, as events.
        out.push(events_output(plan, i, plan.retracts(&StageRef::Stage(i))));
    }
    for &i in joins {
        // Joined rows, as events with the left's time and type.
        out.push(events_output(plan, i, plan.retracts(&StageRef::Stage(i))));
    }
    for &i in forecasts {
        let StageKind::Forecast(f) = &plan.stages[i].kind else {
            unreachable!("listed as a forecast")
        };
        out.push(OutputPlan {
            from: vec![(i, Port::Main)],
            columns: f.columns(),
            changelog: f.emit == Emit::Updates,
            ..OutputPlan::new(&f.name, &[])
        });
        out.push(OutputPlan {
            from: vec![(i, Port::Errors)],
            columns: f.error_columns(),
            ..OutputPlan::new(&f.errors_output(), &[])
        });
    }
    for (i, stage) in plan.stages.iter().enumerate() {
        let StageKind::Services(p) = &stage.kind else { continue };
        for (suffix, columns, changelog) in super::services::OUTPUTS {
            out.push(OutputPlan {
                from: vec![(i, Port::Model(suffix))],
                changelog,
                ..OutputPlan::new(&format!("{}_{suffix}", p.name), columns)
            });
        }
    }
    out.push(OutputPlan {
        columns: crate::dead_letter::DeadLetter::columns(),
        tally: Some(1),
        ..OutputPlan::new(crate::DEAD_LETTERS, &[])
    });
    out
}

/// The output of stage `i`'s events, named after the stage: time (and type) columns, then the
/// payload's fields.
fn events_output(plan: &Plan, i: usize, changelog: bool) -> OutputPlan {
    let (time_field, type_field) = plan.fields_of(&StageRef::Stage(i));
    let mut columns = vec![time_field, "_payload"];
    if !type_field.is_empty() {
        columns.insert(1, type_field);
    }
    OutputPlan {
        from: vec![(i, Port::Main)],
        sort_prefix: 1,
        flatten: true,
        changelog,
        ..OutputPlan::new(&plan.stages[i].name, &columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_follow_their_dependencies_and_keep_their_order_otherwise() {
        // 0 reads 2, 1 reads nothing, 2 reads 1.
        let deps = |i: usize| match i {
            0 => vec![2],
            2 => vec![1],
            _ => vec![],
        };
        assert_eq!(topological_order(3, deps).unwrap(), vec![1, 2, 0]);
        assert_eq!(topological_order(3, |_| vec![]).unwrap(), vec![0, 1, 2]);
    }

    #[test]
    fn a_cycle_names_its_nodes() {
        // 0 → 1 → 2 → 1
        let deps = |i: usize| match i {
            0 => vec![1],
            1 => vec![2],
            2 => vec![1],
            _ => vec![],
        };
        assert_eq!(topological_order(3, deps).unwrap_err(), vec![1, 2, 1]);
        assert_eq!(topological_order(1, |_| vec![0]).unwrap_err(), vec![0, 0]);
    }
}
