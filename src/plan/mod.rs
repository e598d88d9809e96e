//! Plans: validated, data-only descriptions of what a pipeline computes.
//!
//! `dataflows/*.toml` → [`spec::SpecFile`] (serde, spans kept) → [`validate::plan_file_with`] →
//! [`Plan`]. A plan names every source path, binds every field reference, and holds parsed
//! expressions; it can be printed (`sluice check SPEC --plan`), compared and tested without
//! running a dataflow. Rendering (`crate::render`) is the only consumer.

pub mod csv;
pub mod duration;
pub mod field_tree;
pub mod graph;
mod hints;
pub mod join;
pub mod known_fields;
pub mod metadata;
pub mod retention;
pub mod router;
pub mod services;
pub mod spec;
pub mod top_n;
pub mod validate;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::event::Accessor;
use crate::expr::Expr;

pub use crate::model::aggregate::Func;
pub use crate::model::window::WindowPlan;
pub use graph::{OutputPlan, Port, Stage, StageKind, StageRef, WINDOW_TIME};
pub use join::BinaryJoinPlan;
pub use metadata::MetadataPlan;
pub use router::RouterPlan;
pub use top_n::TopNPlan;
pub use validate::{plan_file_with, plan_str};

/// Outputs of schema stages (shared by every source with one).
pub const SCHEMA_OUTPUTS: [&str; 4] = ["inferred_schemas", "schemas", "schema_changes", "quarantine"];

/// Output of deduplication (shared by every source with rules).
pub const DUPLICATES: &str = "duplicates";

/// Outputs of enrichment stages (shared by every source with one): events blocked by a rule,
/// per-rule statistics, and the stages' counters.
pub const BLOCKED: &str = "blocked";
pub const RULE_STATS: &str = "rule_stats";
pub const COUNTERS: &str = "counters";

/// Columns of the outputs the plan names itself.
pub const INFERRED_COLUMNS: [&str; 7] = ["event_type", "scope", "path", "present", "nulls", "kinds", "events"];
pub const VERSION_COLUMNS: [&str; 5] = ["event_type", "version", "registered_at", "drift", "json_schema"];
pub const CHANGE_COLUMNS: [&str; 7] = [
    "event_type",
    "old_version",
    "new_version",
    "drift",
    "changed_fields",
    "compatibility",
    "time",
];
pub const QUARANTINE_COLUMNS: [&str; 3] = ["event_time", "event_type", "record"];
pub const DUPLICATE_COLUMNS: [&str; 5] = ["event_type", "key", "event_time", "first_time", "record"];
pub const BLOCKED_COLUMNS: [&str; 4] = ["rule_id", "event_time", "event_type", "record"];
pub const RULE_STATS_COLUMNS: [&str; 7] = [
    "rule_id",
    "action",
    "window_start",
    "window_end",
    "matches",
    "actions",
    "failures",
];
pub const COUNTER_COLUMNS: [&str; 2] = ["metric", "label"];

/// A whole pipeline: its sources, a graph of stages over them, and its outputs.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub name: String,
    /// Timely timestamps are event times rounded down to a multiple of this many milliseconds.
    pub tick_ms: u64,
    /// Bytes of a rejected record kept in its dead letter (see `crate::dead_letter`).
    pub dead_letter_record_bytes: usize,
    /// The inputs the drivers (`run`, `serve`) feed.
    pub sources: Vec<SourcePlan>,
    /// Stages in topological order: each reads sources and earlier stages only. Per source, in
    /// this order when present: schema, dedup, enrich; aggregates read any of them, or another
    /// aggregate, an enriched output or a route destination.
    pub stages: Vec<Stage>,
    /// The one list of outputs, in the order the summary prints them; `dead_letters` is last.
    pub outputs: Vec<OutputPlan>,
}

/// A load forecast (see `render::forecast`): one series per value of `keys` and field of
/// `values`, resampled to `step`, forecast `config.horizon` steps ahead.
#[derive(Debug, Clone, Serialize)]
pub struct ForecastPlan {
    pub name: String,
    /// Output column name and where its value comes from.
    pub keys: Vec<(String, Accessor)>,
    /// Metric name (the `metric` column) and where its value comes from.
    pub values: Vec<(String, Accessor)>,
    /// Key fields restricted to known values: index into `keys`, and the values, sorted.
    pub allowed: Vec<(usize, Vec<crate::value::Value>)>,
    pub step_ms: u64,
    pub aggregation: crate::model::forecast::Aggregation,
    pub gap: crate::model::forecast::GapRule,
    /// Horizon, periods, window and refit interval in steps; models; ensemble selection.
    pub config: crate::model::forecast::ForecastConfig,
    pub emit: Emit,
}

impl ForecastPlan {
    /// Columns of the forecast output `NAME`.
    pub fn columns(&self) -> Vec<String> {
        let mut columns: Vec<String> = self.keys.iter().map(|(n, _)| n.clone()).collect();
        columns.extend(FORECAST_COLUMNS.iter().map(|c| c.to_string()));
        columns
    }

    /// Columns of the realized-error output `NAME_errors`.
    pub fn error_columns(&self) -> Vec<String> {
        let mut columns: Vec<String> = self.keys.iter().map(|(n, _)| n.clone()).collect();
        columns.extend(FORECAST_ERROR_COLUMNS.iter().map(|c| c.to_string()));
        columns
    }

    /// The name of the realized-error output.
    pub fn errors_output(&self) -> String {
        format!("{}_errors", self.name)
    }
}

/// A forecast row's columns after its keys.
pub const FORECAST_COLUMNS: [&str; 10] = [
    "metric",
    "target_time",
    "horizon",
    "forecast",
    "lower_80",
    "upper_80",
    "lower_95",
    "upper_95",
    "model",
    "issued_at",
];

/// A realized error's columns after its keys.
pub const FORECAST_ERROR_COLUMNS: [&str; 13] = [
    "metric",
    "model",
    "horizon",
    "issued_at",
    "target_time",
    "forecast",
    "actual",
    "error",
    "lower_80",
    "upper_80",
    "lower_95",
    "upper_95",
    "scale",
];

/// Joins, derived fields and rules of one source (see `render::enrich` and `render::rules`).
#[derive(Debug, Clone, Serialize)]
pub struct EnrichPlan {
    /// Index into [`Plan::sources`].
    pub source: usize,
    /// Output of the events leaving the stage (`None`: no such output).
    pub output: Option<String>,
    /// The output is delivered in event-time order per value of these fields.
    pub order_by: Vec<Accessor>,
    pub rule_stats_window_ms: u64,
    pub joins: Vec<JoinPlan>,
    /// Derived top-level fields, evaluated in order (each sees the ones before it).
    pub derive: Vec<(String, Expr)>,
    pub rules: Vec<RulePlan>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinMode {
    /// Each event gets the context as of its event time; later context changes do not rewrite it.
    AsOf,
    /// A view: when the context changes, enriched events are retracted and emitted again.
    Continuous,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Matching {
    /// The event's key fields equal the context's key fields.
    Equal,
    /// The event's IP address (v4 or v6) lies in the context row's CIDR range.
    IpRange,
}

/// One context source joined into a source's events.
#[derive(Debug, Clone, Serialize)]
pub struct JoinPlan {
    /// Index into [`Plan::sources`] of the context source.
    pub context: usize,
    /// Top-level event field that receives the context row as an object.
    pub alias: String,
    pub event_key: Vec<Accessor>,
    pub context_key: Vec<Accessor>,
    /// Top-level context fields to attach; `None` attaches every payload field but the key.
    pub fields: Option<Vec<String>>,
    /// The name the context row's time is attached under, if at all.
    pub time_as: Option<String>,
    pub mode: JoinMode,
    pub matching: Matching,
    /// Context rows older than this at the event's time are not attached (a miss).
    pub max_age_ms: Option<u64>,
    /// Event types the join applies to (empty: all).
    pub types: Vec<String>,
    pub when: Option<Expr>,
    /// Every worker holds every context row and events stay where they are, instead of both
    /// being exchanged by key: for small tables (set by `broadcast = true`; always for
    /// `ip_range`).
    pub broadcast: bool,
}

/// A rule: a condition and an action, applied in spec order.
#[derive(Debug, Clone, Serialize)]
pub struct RulePlan {
    pub id: String,
    pub when: Expr,
    pub action: RuleAction,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// Adds `mark` to `_marks`; later `block` rules do not block the event.
    Allow { mark: String },
    /// Sends the event to `blocked`; later rules do not see it.
    Block,
    /// Adds the destination to `_routes` (and sends the event to that output) and the hints to
    /// `_hints`.
    Route {
        destination: Option<String>,
        hints: Vec<(String, crate::value::Value)>,
    },
    /// Sets, removes and renames top-level fields, in that order.
    Transform {
        set: Vec<(String, Expr)>,
        remove: Vec<String>,
        rename: Vec<(String, String)>,
    },
}

impl RuleAction {
    pub fn name(&self) -> &'static str {
        match self {
            RuleAction::Allow { .. } => "allow",
            RuleAction::Block => "block",
            RuleAction::Route { .. } => "route",
            RuleAction::Transform { .. } => "transform",
        }
    }
}

/// Deduplication of one source (see `render::dedup`).
#[derive(Debug, Clone, Serialize)]
pub struct DedupPlan {
    /// Index into [`Plan::sources`].
    pub source: usize,
    pub rules: Vec<DedupRule>,
}

/// One event type's idempotency key and TTL.
#[derive(Debug, Clone, Serialize)]
pub struct DedupRule {
    pub event_type: String,
    pub key: Vec<Accessor>,
    pub ttl_ms: u64,
    pub keep: Keep,
}

/// Which occurrence of a key a dedup rule keeps (see `render::dedup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Keep {
    /// The first occurrence passes; later ones within the TTL of it are duplicates. Insert-only.
    First,
    /// The output holds the latest occurrence of a run of occurrences less than the TTL apart:
    /// each newer one retracts the one held. A retracting changelog.
    Last,
}

impl DedupPlan {
    /// Whether the stage retracts events it emitted (a `keep = "last"` rule).
    pub fn retracts(&self) -> bool {
        self.rules.iter().any(|r| r.keep == Keep::Last)
    }
}

/// A schema registry's compatibility mode (checked by `crate::schema::compat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Compatibility {
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
    None,
}

/// Schema inference, versioning and conformance of one source (see `render::schema`).
#[derive(Debug, Clone, Serialize)]
pub struct SchemaPlan {
    /// Index into [`Plan::sources`].
    pub source: usize,
    /// Recent-events window whose inference proposes new versions.
    pub window_ms: u64,
    pub drift_threshold: f64,
    pub compatibility: Compatibility,
    /// Send events of an incompatible candidate to `quarantine` instead of dead letters.
    pub quarantine: bool,
    /// Drop fields the schema does not name (keep them otherwise).
    pub drop_extra: bool,
    pub accept_previous: u32,
    pub max_depth: u32,
    pub min_events: u64,
    /// Pinned initial schemas: event type and JSON Schema file.
    pub pinned: Vec<(String, PathBuf)>,
    /// Spec defaults for missing fields: event type, field path, value.
    pub defaults: Vec<(String, String, serde_json::Value)>,
    /// Where the registry is loaded from and saved to (`--registry DIR`).
    pub registry_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Parquet,
    Ndjson,
    /// Delimited text read with `arrow-csv` (see `crate::source::csv`), with [`SourcePlan::csv`].
    Csv,
    /// NDJSON lines sent over TCP to `sluice serve` (see `crate::serve`); no files.
    Tcp,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourcePlan {
    pub name: String,
    pub format: Format,
    /// Files or directories, resolved against the spec's folder (or `--input` overrides).
    pub paths: Vec<PathBuf>,
    pub time_field: String,
    /// Column holding each record's event type; empty when the spec names none.
    pub type_field: String,
    /// The event type of every record when the spec names no type field (context tables): the
    /// source's name.
    pub fixed_type: Option<String>,
    /// Milliseconds per unit of an integer time column.
    pub time_unit_ms: f64,
    pub allowed_lateness_ms: u64,
    /// Payload fields read by some stage (projection pushdown); `None` reads every field.
    pub projection: Option<Vec<String>>,
    /// Whether stages may name fields the source's schema does not have (see `known_fields`).
    pub fields: Fields,
    /// Limits on the source's records, the same in `run` and `serve`.
    pub limits: SourceLimits,
    /// How a `csv` source's files are read (the defaults for other formats).
    pub csv: csv::CsvOptions,
}

/// A source's `fields` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fields {
    /// Every field a stage names must be in the source's schema: its Parquet footer, a sample
    /// of its NDJSON lines, or schemas pinned by its schema stage.
    Closed,
    /// Fields may appear that no schema lists yet (schema-on-read, tcp sources).
    Open,
}

/// Limits on a source's records (spec keys of `[sources.NAME]`), applied identically by
/// `sluice run` and `sluice serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SourceLimits {
    /// JSON lines nesting arrays and objects deeper are dead letters `depth_exceeded`.
    pub max_depth: usize,
    /// Events further ahead are dead letters `future_time`: ahead of the wall clock when the
    /// line arrived (`serve`), or of the events around them (`run`; see
    /// [`crate::source::future`]).
    pub max_future_ms: u64,
}

impl SourceLimits {
    pub const DEFAULT_MAX_DEPTH: usize = 64;
    /// The JSON parser's own limit.
    pub const MAX_MAX_DEPTH: usize = 128;
    pub const DEFAULT_MAX_FUTURE_MS: u64 = 86_400_000;
}

impl Default for SourceLimits {
    fn default() -> SourceLimits {
        SourceLimits {
            max_depth: SourceLimits::DEFAULT_MAX_DEPTH,
            max_future_ms: SourceLimits::DEFAULT_MAX_FUTURE_MS,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Emit {
    /// Every change, as differential updates stamped with event time.
    Updates,
    /// Each window's values once, stamped with the window's end, when the watermark passes it.
    Final,
}

#[derive(Debug, Clone, Serialize)]
pub struct MeasurePlan {
    /// Output column name.
    pub name: String,
    pub func: Func,
    /// `None` only for `count()`, which counts events.
    pub arg: Option<Expr>,
    /// Per-measure condition (SQL's `FILTER (WHERE ...)`).
    pub filter: Option<Expr>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AggregatePlan {
    pub name: String,
    /// Index into [`Plan::sources`].
    pub source: usize,
    pub filter: Option<Expr>,
    /// For session windows, `size_ms == slide_ms ==` the gap (see `session_gap_ms`).
    pub window: WindowPlan,
    /// Session windows with this gap (ms): per group, events less than the gap apart form one
    /// session `[first, last + gap)` (see [`crate::model::session`]). `None`: fixed windows.
    pub session_gap_ms: Option<u64>,
    /// Output column name and where its value comes from.
    pub group_by: Vec<(String, Accessor)>,
    pub measures: Vec<MeasurePlan>,
    pub emit: Emit,
    /// The input never retracts, so `min`, `max` and `count_distinct` may keep insert-only
    /// states instead of value multisets. Derived by validation: false when a stage upstream
    /// can retract (a continuous join, see [`Plan::retracts`]).
    pub monotonic: bool,
    /// How long after its end a window keeps its state, so that retractions and re-emissions
    /// from a retracting input still revise its row (0 for monotonic inputs). A change that
    /// reaches a window later than `end + lag + retain_ms` goes to dead letters as
    /// `closed_window`.
    pub retain_ms: u64,
    /// How far the input's timestamps can be ahead of its events' times: 0 for sources; for
    /// rows of another aggregate read as events, stamped up to their window's end (plus its
    /// own lag and retention) while their time is the window's last millisecond. A window is
    /// complete, and closes, `lag` after its end.
    pub input_lag_ms: u64,
}

impl AggregatePlan {
    /// Output column names: group columns, `window_start`, `window_end`, measures.
    pub fn columns(&self) -> Vec<String> {
        let mut columns: Vec<String> = self.group_by.iter().map(|(n, _)| n.clone()).collect();
        columns.push("window_start".into());
        columns.push("window_end".into());
        columns.extend(self.measures.iter().map(|m| m.name.clone()));
        columns
    }
}

impl EnrichPlan {
    /// The outputs its rules route events to, each once.
    pub fn destinations(&self) -> impl Iterator<Item = &str> + '_ {
        let mut seen: Vec<&str> = Vec::new();
        self.rules.iter().filter_map(move |r| match &r.action {
            RuleAction::Route {
                destination: Some(d), ..
            } if !seen.contains(&d.as_str()) => {
                seen.push(d);
                Some(d.as_str())
            }
            _ => None,
        })
    }

    /// Whether the stage can retract events it emitted: a continuous join retracts and emits
    /// again every event of a key whose context row changes.
    pub fn retracts(&self) -> bool {
        self.joins.iter().any(|j| j.mode == JoinMode::Continuous)
    }
}

impl Plan {
    /// The sub-plans of one kind, in stage order.
    fn kinds<'a, T: 'a>(&'a self, f: impl Fn(&'a StageKind) -> Option<&'a T> + 'a) -> impl Iterator<Item = &'a T> + 'a {
        self.stages.iter().filter_map(move |s| f(&s.kind))
    }

    pub fn schemas(&self) -> impl Iterator<Item = &SchemaPlan> + '_ {
        self.kinds(|k| match k {
            StageKind::Schema(p) => Some(p),
            _ => None,
        })
    }

    pub fn dedups(&self) -> impl Iterator<Item = &DedupPlan> + '_ {
        self.kinds(|k| match k {
            StageKind::Dedup(p) => Some(p),
            _ => None,
        })
    }

    pub fn enrichments(&self) -> impl Iterator<Item = &EnrichPlan> + '_ {
        self.kinds(|k| match k {
            StageKind::Enrich(p) => Some(p),
            _ => None,
        })
    }

    pub fn metadata(&self) -> impl Iterator<Item = &MetadataPlan> + '_ {
        self.kinds(|k| match k {
            StageKind::Metadata(p) => Some(&**p),
            _ => None,
        })
    }

    pub fn routers(&self) -> impl Iterator<Item = &RouterPlan> + '_ {
        self.kinds(|k| match k {
            StageKind::Router(p) => Some(&**p),
            _ => None,
        })
    }

    pub fn aggregates(&self) -> impl Iterator<Item = &AggregatePlan> + '_ {
        self.kinds(|k| match k {
            StageKind::Aggregate(p) => Some(p),
            _ => None,
        })
    }

    /// Schema stages, to adjust a planned pipeline (`sluice schema`, tests).
    pub fn schemas_mut(&mut self) -> impl Iterator<Item = &mut SchemaPlan> + '_ {
        self.stages.iter_mut().filter_map(|s| match &mut s.kind {
            StageKind::Schema(p) => Some(p),
            _ => None,
        })
    }

    pub fn forecasts(&self) -> impl Iterator<Item = &ForecastPlan> + '_ {
        self.kinds(|k| match k {
            StageKind::Forecast(p) => Some(p),
            _ => None,
        })
    }

    pub fn aggregates_mut(&mut self) -> impl Iterator<Item = &mut AggregatePlan> + '_ {
        self.stages.iter_mut().filter_map(|s| match &mut s.kind {
            StageKind::Aggregate(p) => Some(p),
            _ => None,
        })
    }

    /// The one list of outputs: render, sinks, serve, checkpoints and summaries read it.
    pub fn outputs(&self) -> &[OutputPlan] {
        &self.outputs
    }

    pub fn output(&self, name: &str) -> Option<&OutputPlan> {
        self.outputs.iter().find(|o| o.name == name)
    }

    /// Every output's name, in [`Plan::outputs`] order.
    pub fn output_names(&self) -> Vec<String> {
        self.outputs.iter().map(|o| o.name.clone()).collect()
    }

    /// Whether the collection `input` can retract what it emitted. Sources are append-only
    /// logs; a continuous join retracts; an aggregate's rows are revised in `updates` mode and
    /// over a retracting input.
    pub fn retracts(&self, input: &StageRef) -> bool {
        match input {
            StageRef::Source(_) => false,
            StageRef::Stage(i) | StageRef::Route { stage: i, .. } => {
                let stage = &self.stages[*i];
                let upstream = stage.inputs.first().is_some_and(|r| self.retracts(r));
                match &stage.kind {
                    StageKind::Schema(_) | StageKind::Metadata(_) => upstream,
                    StageKind::Dedup(d) => upstream || d.retracts(),
                    // A row displaced by a better one is retracted; but over windowed
                    // partitions of an insert-only input, every row of a partition arrives at
                    // one time, and the top is emitted once.
                    StageKind::TopN(t) => upstream || t.release_lag_ms.is_none(),
                    // A changelog join revises its rows; the timed joins emit each pair (and
                    // each unmatched left row) once.
                    StageKind::Join(j) => j.retracts(stage.inputs.iter().any(|r| self.retracts(r))),
                    // Each decision is made once, as of its event's time.
                    StageKind::Router(_) => false,
                    // Records and tasks are revised as completions and migrations arrive.
                    StageKind::Replication(_) => true,
                    // Scored hops are emitted once.
                    StageKind::Services(_) => false,
                    StageKind::Enrich(e) => upstream || e.retracts(),
                    StageKind::Aggregate(a) => a.emit == Emit::Updates || !a.monotonic,
                    StageKind::Forecast(f) => f.emit == Emit::Updates,
                }
            }
        }
    }

    /// The time and type field names of the events of `input`: its source's, or
    /// ([`WINDOW_TIME`], none) for an aggregate's rows.
    pub fn fields_of(&self, input: &StageRef) -> (&str, &str) {
        match input {
            StageRef::Source(i) => (&self.sources[*i].time_field, &self.sources[*i].type_field),
            StageRef::Stage(i) | StageRef::Route { stage: i, .. } => match &self.stages[*i].kind {
                StageKind::Aggregate(_) => (WINDOW_TIME, ""),
                StageKind::Forecast(_) => ("issued_at", ""),
                _ => self.fields_of(&self.stages[*i].inputs[0]),
            },
        }
    }

    /// The source `input`'s events come from, through every stage before it.
    pub fn root_source(&self, input: &StageRef) -> usize {
        match input {
            StageRef::Source(i) => *i,
            StageRef::Stage(i) | StageRef::Route { stage: i, .. } => self.root_source(&self.stages[*i].inputs[0]),
        }
    }

    /// How far the timestamps of `input` can be ahead of its events' times (see
    /// [`AggregatePlan::input_lag_ms`]).
    pub fn lag_of(&self, input: &StageRef) -> u64 {
        match input {
            StageRef::Source(_) => 0,
            StageRef::Stage(i) | StageRef::Route { stage: i, .. } => match &self.stages[*i].kind {
                StageKind::Aggregate(a) => a.input_lag_ms + a.retain_ms + 1,
                // Stages do not read forecasts (validation refuses it).
                StageKind::Forecast(_) => 0,
                StageKind::Join(j) => j.lag_ms(),
                _ => self.lag_of(&self.stages[*i].inputs[0]),
            },
        }
    }
}
