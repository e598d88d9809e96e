//! The plan of a `[[routers]]` stage: where its events, load samples, regions and forecasts come
//! from, and how it scores regions (`render::router` applies it; `model::routing` scores).

use serde::Serialize;

use crate::event::Accessor;
use crate::model::routing::{Health, Weights};

/// A router over one stream of events with routing metadata.
#[derive(Debug, Clone, Serialize)]
pub struct RouterPlan {
    /// Its output of decisions.
    pub name: String,
    /// The field of load samples, regions and forecast keys naming the region.
    pub region_field: String,
    /// The regions' capacity field.
    pub capacity_field: String,
    /// The events' id field, copied into each decision (null when absent).
    pub id: Option<Accessor>,
    /// How shards are placed on regions: `jump`, `ring` or `bounded`.
    pub algorithm: String,
    pub vnodes: u32,
    pub epsilon: f64,
    /// Number of shards (the metadata stage's `shards`).
    pub shards: u64,
    pub weights: Weights,
    pub health: Health,
    /// Forecast rows: the index of the region key among the forecast's keys, and how many
    /// keys it has (the `metric`, `target_time` and `forecast` columns follow them).
    pub forecast_columns: Option<(usize, usize)>,
    /// Shard migration, when the spec asks for it.
    pub migration: Option<MigrationPlan>,
    /// Where the optional inputs are among the stage's inputs (after events, load, regions).
    pub forecast_input: Option<usize>,
    pub rates_input: Option<usize>,
    /// Copies per shard (home and replicas) in `NAME_placement`, with `[routers.replication]`;
    /// `None` when the router keeps no placement output.
    pub replicas: Option<usize>,
}

/// `[routers.replication]`: which regions hold each routed event, which acknowledged it, and
/// what remains to copy (`render::replication`). Inputs: the router's decisions, the
/// completions source, and the router's placement.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicationPlan {
    /// The router's name: outputs are `NAME_replication` and `NAME_replication_tasks`.
    pub router: String,
    /// The router's stage (for its placement port).
    pub router_stage: usize,
    /// Copies per event: the shard's home and `factor − 1` replicas.
    pub factor: usize,
    /// The completions' event id, region and status fields.
    pub id: Accessor,
    pub region: Accessor,
    pub status: Accessor,
    /// How long a record stays open after its event (or its window's end).
    pub retain_ms: u64,
    /// One record per event, or per shard and tumbling window.
    pub granularity: Granularity,
}

/// What one replication record covers (`granularity` in the spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// One record per routed event (`event`, the default).
    Event,
    /// One record per shard and tumbling event-time window of `window_ms` (`shard_window`).
    ShardWindow { window_ms: u64 },
}

impl ReplicationPlan {
    /// The window of a `shard_window` record (0 for `event`).
    pub fn window_ms(&self) -> u64 {
        match self.granularity {
            Granularity::Event => 0,
            Granularity::ShardWindow { window_ms } => window_ms,
        }
    }

    /// The columns of `NAME_replication`.
    pub fn record_columns(&self) -> &'static [&'static str] {
        match self.granularity {
            Granularity::Event => &REPLICATION_COLUMNS,
            Granularity::ShardWindow { .. } => &WINDOW_REPLICATION_COLUMNS,
        }
    }

    /// The columns of `NAME_replication_tasks`.
    pub fn task_columns(&self) -> &'static [&'static str] {
        match self.granularity {
            Granularity::Event => &TASK_COLUMNS,
            Granularity::ShardWindow { .. } => &WINDOW_TASK_COLUMNS,
        }
    }

    pub fn records_output(&self) -> String {
        format!("{}_replication", self.router)
    }

    pub fn tasks_output(&self) -> String {
        format!("{}_replication_tasks", self.router)
    }
}

/// Columns of `NAME_placement`: each shard's home and replicas (a changelog).
pub const PLACEMENT_COLUMNS: [&str; 3] = ["shard_id", "home", "targets"];

/// Columns of `NAME_replication`: one row per open event, revised as it changes.
pub const REPLICATION_COLUMNS: [&str; 10] = [
    "event_id",
    "event_time",
    "shard_id",
    "home",
    "targets",
    "completed",
    "failed",
    "pending",
    "state",
    "migrations",
];

/// Columns of `NAME_replication_tasks`: the copies still to make.
pub const TASK_COLUMNS: [&str; 5] = ["event_id", "shard_id", "region", "reason", "since"];

/// Columns of `NAME_replication` with `granularity = "shard_window"`: one row per shard and
/// window, revised as it changes. `regions` lists `{region, status, completed, failed}`.
pub const WINDOW_REPLICATION_COLUMNS: [&str; 12] = [
    "shard_id",
    "window_start",
    "window_end",
    "events",
    "home",
    "targets",
    "completed",
    "failed",
    "pending",
    "regions",
    "state",
    "migrations",
];

/// Columns of `NAME_replication_tasks` with `granularity = "shard_window"`: per shard, window
/// and region, the events it still lacks.
pub const WINDOW_TASK_COLUMNS: [&str; 6] = ["shard_id", "window_start", "region", "reason", "missing", "since"];

/// Shard migration: every `interval`, the shards' event rates over the trailing `window` and
/// the regions' load go through [`crate::model::migration::Migrator`].
#[derive(Debug, Clone, Serialize)]
pub struct MigrationPlan {
    pub interval_ms: u64,
    /// The shards' rates are their events over this trailing window (a multiple of
    /// `interval_ms`, at least one interval).
    pub window_ms: u64,
    /// Index into [`ROUTER_METRICS`] (for observed and forecast load).
    pub metric: usize,
    pub load: MigrationLoad,
    pub config: crate::model::migration::MigrationConfig,
}

/// The load migration compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MigrationLoad {
    /// The latest sample of `metric`.
    Observed,
    /// The router's forecast of `metric` (else the sample).
    Forecast,
    /// The router's own routed event rate per capacity over `window`, as a percentage of the
    /// mean ([`crate::model::migration::routed_loads`]).
    Routed,
}

/// Columns of `NAME_migrations`.
pub const MIGRATION_COLUMNS: [&str; 9] = [
    "time",
    "shard_id",
    "from",
    "to",
    "reason",
    "from_load_before",
    "from_load_after",
    "to_load_before",
    "to_load_after",
];

/// The hidden aggregate a migrating router reads: events per shard and `interval`.
pub fn rates_plan(name: &str, source: usize, interval_ms: u64, monotonic: bool) -> super::AggregatePlan {
    let mut plan = counts_plan(name, source, interval_ms);
    plan.group_by = vec![(
        "shard_id".into(),
        Accessor::Payload(crate::event::FieldPath::field("shard_id")),
    )];
    plan.monotonic = monotonic;
    plan
}

/// The load metrics a router reads, by field name in load samples and `metric` in forecasts.
pub const ROUTER_METRICS: [&str; 4] = ["cpu", "memory", "queue_length", "latency_ms"];

/// The fields of a decision, after the event's time and type.
pub const DECISION_FIELDS: [&str; 16] = [
    "event_id",
    "shard_key",
    "shard_id",
    "priority",
    "complexity",
    "home",
    "chosen",
    "score",
    "latency_term",
    "headroom_term",
    "affinity_term",
    "runner_up",
    "runner_up_score",
    "reason",
    "latency_boost",
    "affinity_yield",
];

/// `NAME_counts`: the routed events per chosen region and tumbling window, each window once
/// when the watermark passes its end.
pub fn counts_plan(name: &str, source: usize, window_ms: u64) -> super::AggregatePlan {
    use super::{AggregatePlan, Emit, Func, MeasurePlan, WindowPlan};
    use crate::event::FieldPath;
    AggregatePlan {
        name: name.into(),
        source,
        filter: None,
        window: WindowPlan {
            size_ms: window_ms,
            slide_ms: window_ms,
        },
        session_gap_ms: None,
        group_by: vec![("chosen".into(), Accessor::Payload(FieldPath::field("chosen")))],
        measures: vec![MeasurePlan {
            name: "events".into(),
            func: Func::Count,
            arg: None,
            filter: None,
        }],
        emit: Emit::Final,
        monotonic: true,
        retain_ms: 0,
        input_lag_ms: 0,
    }
}
