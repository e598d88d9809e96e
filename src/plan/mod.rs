//! Plans: validated, data-only descriptions of what a pipeline computes.
//!
//! `dataflows/*.toml` → [`spec::SpecFile`] (serde, spans kept) → [`validate::plan_file`] →
//! [`Plan`]. A plan names every source path, binds every field reference, and holds parsed
//! expressions; it can be printed (`sluice check SPEC --plan`), compared and tested without
//! running a dataflow. Rendering (`crate::render`) is the only consumer.

pub mod duration;
pub mod field_tree;
mod hints;
pub mod known_fields;
pub mod retention;
pub mod spec;
pub mod validate;

use std::path::PathBuf;

use serde::Serialize;

use crate::event::Accessor;
use crate::expr::Expr;

pub use validate::{plan_file, plan_str};

/// Outputs of schema stages (shared by every source with one).
pub const SCHEMA_OUTPUTS: [&str; 4] = ["inferred_schemas", "schemas", "schema_changes", "quarantine"];

/// Output of deduplication (shared by every source with rules).
pub const DUPLICATES: &str = "duplicates";

/// Outputs of enrichment stages (shared by every source with one): events blocked by a rule,
/// per-rule statistics, and the stages' counters.
pub const BLOCKED: &str = "blocked";
pub const RULE_STATS: &str = "rule_stats";
pub const COUNTERS: &str = "counters";

/// A whole pipeline.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub name: String,
    /// Timely timestamps are event times rounded down to a multiple of this many milliseconds.
    pub tick_ms: u64,
    /// Bytes of a rejected record kept in its dead letter (see `crate::dead_letter`).
    pub dead_letter_record_bytes: usize,
    pub sources: Vec<SourcePlan>,
    pub aggregates: Vec<AggregatePlan>,
    /// Schema stages; at most one per source. Aggregates of such a source read its conformed events.
    pub schemas: Vec<SchemaPlan>,
    /// Deduplication, at most one per source, after its schema stage and before its aggregates.
    pub dedups: Vec<DedupPlan>,
    /// Enrichment, derived fields and rules, at most one per source, after its deduplication
    /// and before its aggregates.
    pub enrichments: Vec<EnrichPlan>,
}

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
    pub mode: JoinMode,
    pub matching: Matching,
    /// Context rows older than this at the event's time are not attached (a miss).
    pub max_age_ms: Option<u64>,
    /// Event types the join applies to (empty: all).
    pub types: Vec<String>,
    pub when: Option<Expr>,
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
}

/// Schema inference, versioning and conformance of one source (see `render::schema`).
#[derive(Debug, Clone, Serialize)]
pub struct SchemaPlan {
    /// Index into [`Plan::sources`].
    pub source: usize,
    /// Recent-events window whose inference proposes new versions.
    pub window_ms: u64,
    pub drift_threshold: f64,
    pub compatibility: crate::schema::compat::Compatibility,
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

/// Tumbling windows have `slide_ms == size_ms`; windows start at multiples of `slide_ms`
/// since the epoch and cover `[start, start + size_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WindowPlan {
    pub size_ms: u64,
    pub slide_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Emit {
    /// Every change, as differential updates stamped with event time.
    Updates,
    /// Each window's values once, stamped with the window's end, when the watermark passes it.
    Final,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Func {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    CountDistinct,
}

impl Func {
    pub const ALL: [(&'static str, Func); 6] = [
        ("count", Func::Count),
        ("sum", Func::Sum),
        ("avg", Func::Avg),
        ("min", Func::Min),
        ("max", Func::Max),
        ("count_distinct", Func::CountDistinct),
    ];
    pub fn name(self) -> &'static str {
        Func::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
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
    pub window: WindowPlan,
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
    /// reaches a window later than `end + retain_ms` goes to dead letters as `closed_window`.
    pub retain_ms: u64,
}

impl EnrichPlan {
    /// Whether the stage can retract events it emitted: a continuous join retracts and emits
    /// again every event of a key whose context row changes.
    pub fn retracts(&self) -> bool {
        self.joins.iter().any(|j| j.mode == JoinMode::Continuous)
    }
}

impl Plan {
    /// Whether the events that aggregates of `source` read can be retracted (their collection is
    /// not insert-only). Sources are append-only logs; only enrichment stages retract.
    pub fn retracts(&self, source: usize) -> bool {
        self.enrichments.iter().any(|e| e.source == source && e.retracts())
    }

    /// Every named output: aggregates, then `dead_letters`.
    pub fn output_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.aggregates.iter().map(|a| a.name.clone()).collect();
        if !self.schemas.is_empty() {
            names.extend(SCHEMA_OUTPUTS.iter().map(|s| s.to_string()));
        }
        if !self.dedups.is_empty() {
            names.push(DUPLICATES.to_string());
        }
        for e in &self.enrichments {
            names.extend(e.output.clone());
            for r in &e.rules {
                if let RuleAction::Route {
                    destination: Some(d), ..
                } = &r.action
                {
                    if !names.contains(d) {
                        names.push(d.clone());
                    }
                }
            }
        }
        if !self.enrichments.is_empty() {
            names.extend([BLOCKED, RULE_STATS].map(String::from));
        }
        if !self.enrichments.is_empty() || !self.dedups.is_empty() {
            names.push(COUNTERS.to_string());
        }
        names.push(crate::DEAD_LETTERS.to_string());
        names
    }
}
