//! The spec: serde types mirroring `dataflows/*.toml` one to one, with source spans kept on every
//! value that validation may reject. Nothing here is checked beyond TOML syntax and key names;
//! [`super::validate`] turns a spec into a [`super::Plan`].

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

/// A string (or other value) with its byte range in the spec file.
pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
    pub pipeline: PipelineSpec,
    #[serde(default)]
    pub sources: BTreeMap<String, S<SourceSpec>>,
    #[serde(default)]
    pub aggregates: Vec<S<AggregateSpec>>,
    /// Load forecasts over a source or an output (`[[forecasts]]`).
    #[serde(default)]
    pub forecasts: Vec<S<ForecastSpec>>,
    /// The first `n` rows per partition of a source or an output (`[[top_n]]`).
    #[serde(default)]
    pub top_n: Vec<S<TopNSpec>>,
    /// Joins of two sources or outputs (`[[joins]]`).
    #[serde(default)]
    pub joins: Vec<S<BinaryJoinSpec>>,
    /// Schema inference, registry and conformance, per source name.
    ///
    /// Tables that sub-tables or dotted keys create implicitly (`[schemas.events.pin]` without
    /// `[schemas.events]`) carry no span of their own, so these maps keep the spans of their keys.
    #[serde(default)]
    pub schemas: BTreeMap<S<String>, SchemaSpec>,
    /// Deduplication rules: source name → event type → rule.
    #[serde(default)]
    pub dedup: BTreeMap<S<String>, BTreeMap<S<String>, DedupSpec>>,
    /// Enrichment, derived fields and rules, per source name.
    #[serde(default)]
    pub enrich: BTreeMap<S<String>, EnrichSpec>,
    /// Routing decisions over events with routing metadata (`[[routers]]`).
    #[serde(default)]
    pub routers: Vec<S<RouterSpec>>,
    /// Service-interaction models: Markov transitions, resonance, predictive pipes
    /// (`[[services]]`).
    #[serde(default)]
    pub services: Vec<S<ServicesSpec>>,
    /// Routing metadata (priority, complexity, shard key and shard), per source name.
    #[serde(default)]
    pub metadata: BTreeMap<S<String>, MetadataSpec>,
}

/// `[metadata.SOURCE]`: the fields a router reads, computed after the source's schema stage and
/// deduplication and before its enrichment: `priority`, `complexity`, `shard_key`, `shard_id`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataSpec {
    /// Priority 1–10, 1 highest (value default: the field `priority`).
    #[serde(default)]
    pub priority: Option<S<MetaFieldSpec>>,
    /// Complexity 1–5, 1 simplest (value default: the field `complexity`).
    #[serde(default)]
    pub complexity: Option<S<MetaFieldSpec>>,
    /// The key whose hash places the event on a shard.
    pub shard_key: S<MetaFieldSpec>,
    /// Number of shards (default 4096).
    #[serde(default)]
    pub shards: Option<S<u64>>,
    /// What a present but invalid priority or complexity does: `clamp` (default: into range,
    /// counted; a value of the wrong type takes the default) or `dead_letter`.
    #[serde(default)]
    pub invalid: Option<S<String>>,
}

/// `[[routers]]`: routing decisions for the events of a stream with routing metadata.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterSpec {
    /// The output of decisions.
    pub name: S<String>,
    /// A source (after its stages) or an enriched output or route destination, whose source
    /// has a `[metadata.SOURCE]` stage.
    pub events: S<String>,
    /// A source of load samples: region, time and the metrics `cpu`, `memory`,
    /// `queue_length`, `latency_ms`.
    pub load: S<String>,
    /// A source of regions: region, time and capacity.
    pub regions: S<String>,
    /// A forecast over the load samples, keyed by region (optional).
    #[serde(default)]
    pub forecasts: Option<S<String>>,
    /// The region field of load samples, regions and forecast keys (default `region`).
    #[serde(default)]
    pub region_field: Option<S<String>>,
    /// The regions' capacity field (default `capacity`).
    #[serde(default)]
    pub capacity_field: Option<S<String>>,
    /// The events' id field, copied into decisions.
    #[serde(default)]
    pub id: Option<S<String>>,
    /// `jump`, `ring` (default) or `bounded`.
    #[serde(default)]
    pub placement: Option<S<String>>,
    #[serde(default)]
    pub vnodes: Option<S<u32>>,
    #[serde(default)]
    pub epsilon: Option<S<f64>>,
    /// Tumbling window of `NAME_counts`, the routed events per chosen region (default `1m`).
    #[serde(default)]
    pub counts_window: Option<S<String>>,
    #[serde(default)]
    pub weights: Option<S<RouterWeightsSpec>>,
    #[serde(default)]
    pub health: Option<S<RouterHealthSpec>>,
    /// Shard migration off regions whose load stays above the mean.
    #[serde(default)]
    pub migration: Option<S<MigrationSpec>>,
    /// Replication records and tasks, from the regions' acknowledgements.
    #[serde(default)]
    pub replication: Option<S<ReplicationSpec>>,
}

/// `[routers.replication]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationSpec {
    /// A source of acknowledgements: time, event id, region and status (`completed`,
    /// `failed`).
    pub completions: S<String>,
    /// Copies of each event: its shard's home and `factor − 1` replicas (default 3).
    #[serde(default)]
    pub factor: Option<S<usize>>,
    /// The completions' event id field (default: the router's `id`).
    #[serde(default)]
    pub id: Option<S<String>>,
    /// The completions' region field (default: the router's `region_field`).
    #[serde(default)]
    pub region_field: Option<S<String>>,
    /// The completions' status field (default `status`).
    #[serde(default)]
    pub status_field: Option<S<String>>,
    /// How long after its event time a record stays open to completions and migrations
    /// (default `1h`).
    #[serde(default)]
    pub retain: Option<S<String>>,
    /// One record per `event` (the default) or per `shard_window`.
    #[serde(default)]
    pub granularity: Option<S<String>>,
    /// The tumbling window of `shard_window` records (required there, refused for `event`).
    #[serde(default)]
    pub window: Option<S<String>>,
}

/// `[routers.migration]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationSpec {
    /// How often shards are considered, over the event rates of that interval (default `1m`).
    #[serde(default)]
    pub interval: Option<S<String>>,
    /// The load metric compared (default `cpu`).
    #[serde(default)]
    pub metric: Option<S<String>>,
    /// `forecast` (default when the router has a forecast), `observed` or `routed`.
    #[serde(default)]
    pub load: Option<S<String>>,
    /// The shards' rates (and the routed load) are over this trailing window, a multiple of
    /// `interval` (default: `interval`).
    #[serde(default)]
    pub window: Option<S<String>>,
    /// Hot above `mean × (1 + imbalance)` (default 0.2).
    #[serde(default)]
    pub imbalance: Option<f64>,
    /// Cooled below `mean × (1 + imbalance − hysteresis)` (default 0.1).
    #[serde(default)]
    pub hysteresis: Option<f64>,
    /// Hot for this long before shards move (default `5m`).
    #[serde(default)]
    pub sustain: Option<S<String>>,
    /// Shards moved per interval at most (default 8).
    #[serde(default)]
    pub max_moves: Option<usize>,
    /// A moved shard stays put this long (default `15m`).
    #[serde(default)]
    pub cooldown: Option<S<String>>,
    /// A region that shed or took a shard sits out this long, and until its load is dated
    /// after the move (default: `interval`).
    #[serde(default)]
    pub region_cooldown: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterWeightsSpec {
    #[serde(default)]
    pub latency: Option<f64>,
    #[serde(default)]
    pub headroom: Option<f64>,
    #[serde(default)]
    pub affinity: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterHealthSpec {
    #[serde(default)]
    pub latency_goal: Option<S<String>>,
    #[serde(default)]
    pub queue_half: Option<f64>,
    #[serde(default)]
    pub yield_from: Option<f64>,
    #[serde(default)]
    pub yield_to: Option<f64>,
    #[serde(default)]
    pub max_boost: Option<f64>,
}

/// One metadata field: an expression, and the expression used when it is null or missing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaFieldSpec {
    #[serde(default)]
    pub value: Option<S<String>>,
    #[serde(default)]
    pub default: Option<S<String>>,
}

/// `[enrich.SOURCE]`: joins with context sources, derived fields and rules, applied in that order
/// after the source's schema stage and deduplication.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichSpec {
    /// Name of the output of enriched events (default `enriched`); `false`-like empty string
    /// disables it.
    #[serde(default)]
    pub output: Option<S<String>>,
    /// Ordered delivery: the output is ordered by event time per value of these fields.
    #[serde(default)]
    pub order_by: Vec<S<String>>,
    /// Tumbling window of `rule_stats` (default `1h`).
    #[serde(default)]
    pub rule_stats_window: Option<S<String>>,
    #[serde(default)]
    pub join: Vec<S<JoinSpec>>,
    /// Derived field name → expression, evaluated in order after the joins.
    #[serde(default)]
    pub derive: IndexMap<String, S<String>>,
    #[serde(default)]
    pub rule: Vec<S<RuleSpec>>,
}

/// `[[enrich.SOURCE.join]]`: one context source joined into the events.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinSpec {
    /// The context source.
    pub context: S<String>,
    /// Event field path → context field path; for `match = "ip_range"`, the one event field holding an
    /// IP address → the context field holding a CIDR range.
    pub on: IndexMap<String, S<String>>,
    /// Field of the event that receives the context row (an object); default: the context's name.
    #[serde(default, rename = "as")]
    pub alias: Option<S<String>>,
    /// Context fields to attach, exactly (default: all but the key, plus the row's time).
    #[serde(default)]
    pub fields: Option<Vec<S<String>>>,
    /// Also attach the context row's time under this name (default: not with `fields`; the
    /// context's time field name without).
    #[serde(default)]
    pub time_as: Option<S<String>>,
    /// `as_of` (default) or `continuous`.
    #[serde(default)]
    pub mode: Option<S<String>>,
    /// `equal` (default) or `ip_range`.
    #[serde(default, rename = "match")]
    pub matching: Option<S<String>>,
    /// Attach nothing older than this (latest value within max age).
    #[serde(default)]
    pub max_age: Option<S<String>>,
    /// Event types the join applies to (default: all).
    #[serde(default)]
    pub types: Vec<S<String>>,
    /// Condition an event must satisfy for the join to apply.
    #[serde(default)]
    pub when: Option<S<String>>,
    /// Every worker holds the whole context table, so events are not exchanged by key
    /// (`as_of` joins; `ip_range` joins always are).
    #[serde(default)]
    pub broadcast: Option<S<bool>>,
}

/// `[[enrich.SOURCE.rule]]`: a condition and what to do with matching events.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub id: S<String>,
    pub when: S<String>,
    /// `allow`, `block`, `route` or `transform`.
    pub action: S<String>,
    /// `allow`: the mark added to `_marks` (default: the rule id).
    #[serde(default)]
    pub mark: Option<S<String>>,
    /// `route`: an output that also receives the event.
    #[serde(default)]
    pub destination: Option<S<String>>,
    /// `route`: hints added to the event's `_hints` object.
    #[serde(default)]
    pub hints: IndexMap<String, S<toml::Value>>,
    /// `transform`: field → expression to set.
    #[serde(default)]
    pub set: IndexMap<String, S<String>>,
    /// `transform`: fields to remove.
    #[serde(default)]
    pub remove: Vec<S<String>>,
    /// `transform`: field → new name.
    #[serde(default)]
    pub rename: IndexMap<String, S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupSpec {
    /// Idempotency key: one or more field paths.
    pub key: Vec<S<String>>,
    /// How long after a key's first occurrence (`first`) or last occurrence (`last`) later
    /// ones are duplicates.
    pub ttl: S<String>,
    /// Which occurrence of a key within the TTL the output holds: `first` (default) or `last`.
    #[serde(default)]
    pub keep: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaSpec {
    /// Recent-events window of the inference that proposes new versions (default `1h`).
    #[serde(default)]
    pub window: Option<S<String>>,
    /// Drift score at which the recent inference becomes a candidate version (default 0.1).
    #[serde(default)]
    pub drift_threshold: Option<S<f64>>,
    /// One of Confluent's seven modes (default `BACKWARD`).
    #[serde(default)]
    pub compatibility: Option<S<String>>,
    /// `dead_letter` (default) or `quarantine`.
    #[serde(default)]
    pub on_incompatible: Option<S<String>>,
    /// `keep` (default) or `drop` fields the schema does not name.
    #[serde(default)]
    pub extra_fields: Option<S<String>>,
    /// Events of this many previous versions are still accepted (default 1).
    #[serde(default)]
    pub accept_previous: Option<S<u32>>,
    /// Deeper payloads are dead letters `depth_exceeded` (default 32).
    #[serde(default)]
    pub max_depth: Option<S<u32>>,
    /// Events of a type needed before its first version is registered (default 1).
    #[serde(default)]
    pub min_events: Option<S<u64>>,
    /// Initial schemas: event type → JSON Schema file (relative to the spec).
    #[serde(default)]
    pub pin: BTreeMap<String, S<String>>,
    /// Defaults for missing fields: event type → field path → value. They are written into
    /// every version registered for that type.
    #[serde(default)]
    pub defaults: BTreeMap<String, BTreeMap<String, S<toml::Value>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    pub name: S<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Granularity of timely timestamps, e.g. `"1s"`.
    #[serde(default)]
    pub tick: Option<S<String>>,
    /// Bytes of a rejected record kept in its dead letter (default 4096); longer records keep
    /// this prefix, their length and a hash.
    #[serde(default)]
    pub dead_letter_record_bytes: Option<S<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// `parquet`, `ndjson`, `csv` or `tcp` (lines sent to `sluice serve`); inferred from the path's
    /// extension when absent.
    #[serde(default)]
    pub format: Option<S<String>>,
    /// A file, a directory, or a list of either; relative to the spec file's folder. A `tcp`
    /// source has none.
    #[serde(default)]
    pub path: Option<S<PathList>>,
    pub time_field: S<String>,
    /// Column holding the event type; context tables may omit it (the type is then the source name).
    #[serde(default)]
    pub type_field: Option<S<String>>,
    /// Unit of an integer time column: `ms` (default), `s`, `us` or `ns`.
    #[serde(default)]
    pub time_unit: Option<S<String>>,
    /// How far behind the largest event time seen an event may be before it is late.
    #[serde(default)]
    pub allowed_lateness: Option<S<String>>,
    /// `closed`: stages may only name fields the source's schema has (read from its files or
    /// pinned); `open`: any field (default for a tcp source without pinned schemas).
    #[serde(default)]
    pub fields: Option<S<String>>,
    /// JSON lines nested deeper are dead letters `depth_exceeded` (default 64, at most 128).
    #[serde(default)]
    pub max_depth: Option<S<usize>>,
    /// Events this far ahead are dead letters `future_time` (default `1d`).
    #[serde(default)]
    pub max_future: Option<S<String>>,
    /// csv: whether the first record names the columns (default true).
    #[serde(default)]
    pub header: Option<S<bool>>,
    /// csv: the field separator (default `,`).
    #[serde(default)]
    pub delimiter: Option<S<String>>,
    /// csv: a chrono `strftime` pattern for the time column.
    #[serde(default)]
    pub time_format: Option<S<String>>,
    /// csv: column name → type (`auto`, `int`, `float`, `bool`, `string`).
    #[serde(default)]
    pub columns: Option<S<IndexMap<String, S<String>>>>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum PathList {
    One(String),
    Many(Vec<String>),
}

/// An aggregate's `group_by`: field paths (`["user_id", "device.os"]`, each column named after
/// its path) or output column → field path (`{ os = "device.os" }`), in order.
#[derive(Debug)]
pub enum GroupBy {
    Paths(Vec<S<String>>),
    Named(IndexMap<String, S<String>>),
}

/// By hand rather than `untagged`, which buffers the value and loses the spans.
impl<'de> Deserialize<'de> for GroupBy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = GroupBy;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of field paths, or a table of column = \"field path\"")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<GroupBy, A::Error> {
                let mut paths = Vec::new();
                while let Some(p) = seq.next_element()? {
                    paths.push(p);
                }
                Ok(GroupBy::Paths(paths))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<GroupBy, A::Error> {
                let mut named = IndexMap::new();
                while let Some((column, path)) = map.next_entry::<String, S<String>>()? {
                    named.insert(column, path);
                }
                Ok(GroupBy::Named(named))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Default for GroupBy {
    fn default() -> Self {
        GroupBy::Paths(Vec::new())
    }
}

impl GroupBy {
    /// Each group column: its key within `group_by` (`[0]` or `.os`), its alias if named, and
    /// the field path.
    pub fn entries(&self) -> Vec<(String, Option<&str>, &S<String>)> {
        match self {
            GroupBy::Paths(paths) => paths
                .iter()
                .enumerate()
                .map(|(j, p)| (format!("[{j}]"), None, p))
                .collect(),
            GroupBy::Named(named) => named
                .iter()
                .map(|(alias, p)| (format!(".{alias}"), Some(alias.as_str()), p))
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateSpec {
    pub name: S<String>,
    pub source: S<String>,
    /// Condition an event must satisfy to count at all.
    #[serde(default, rename = "where")]
    pub filter: Option<S<String>>,
    pub window: S<WindowSpec>,
    #[serde(default)]
    pub group_by: GroupBy,
    /// Output column name → `fn(arg) [where condition]`, in order.
    pub measures: IndexMap<String, S<String>>,
    /// `updates` (default) or `final`.
    #[serde(default)]
    pub emit: Option<S<String>>,
    /// Over a retracting input (a continuous join upstream): how long after its end a window
    /// keeps accepting revisions (default: the window's size).
    #[serde(default)]
    pub retain_after_close: Option<S<String>>,
}

/// `[[top_n]]`: per partition, the first `n` rows of a source or an output in `order_by`
/// order, maintained as a changelog.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopNSpec {
    /// The output.
    pub name: S<String>,
    /// A source (after its stages) or an output: an aggregate, another top-N, an enriched
    /// output, a route destination.
    pub source: S<String>,
    /// Field paths whose values make a partition; none: one partition.
    #[serde(default)]
    pub partition_by: Vec<S<String>>,
    /// `"FIELD"`, `"FIELD asc"` or `"FIELD desc"`, most significant first.
    #[serde(default)]
    pub order_by: Vec<S<String>>,
    /// Rows kept per partition (1 is argmax / argmin).
    pub n: S<i64>,
    /// Keep every row tied with the `n`-th (SQL `RANK() <= n`); default false
    /// (`ROW_NUMBER() <= n`).
    #[serde(default)]
    pub with_ties: Option<S<bool>>,
    /// A field added to each row holding its 1-based rank.
    #[serde(default)]
    pub rank: Option<S<String>>,
}

/// `[[joins]]`: two sources or outputs joined on equal keys: a changelog join, an interval
/// join or a window join (see `plan::join`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinaryJoinSpec {
    /// The output.
    pub name: S<String>,
    /// A source (after its stages) or an output, on each side.
    pub left: S<String>,
    pub right: S<String>,
    /// Key columns: `{ left_column = "right_column", ... }`.
    pub on: S<IndexMap<String, S<String>>>,
    /// `"inner"` (default) or `"left"`.
    #[serde(default)]
    pub kind: Option<S<String>>,
    /// An interval join: `{ before = D, after = D }` or `{ before = D, until = "LEFT_COLUMN" }`.
    #[serde(default)]
    pub interval: Option<S<IntervalSpec>>,
    /// A window join: `{ tumbling = D }` or `{ size = D, slide = D }`.
    #[serde(default)]
    pub window: Option<S<WindowSpec>>,
    /// A condition over the joined row, part of the match.
    #[serde(default, rename = "where")]
    pub filter: Option<S<String>>,
    /// The left's columns to keep, `"COLUMN"` or `"COLUMN as NAME"` (default: all).
    #[serde(default)]
    pub left_fields: Option<Vec<S<String>>>,
    /// The right's columns to keep, likewise (default: all but keys named as the left's).
    #[serde(default)]
    pub right_fields: Option<Vec<S<String>>>,
    /// A prefix for the names of the right's columns (default none).
    #[serde(default)]
    pub right_prefix: Option<S<String>>,
}

/// `interval = { ... }` of a join: the right row's time within `[left.time - before,
/// left.time + after]`, or `[left.time - before, left.UNTIL]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntervalSpec {
    #[serde(default)]
    pub before: Option<S<String>>,
    #[serde(default)]
    pub after: Option<S<String>>,
    #[serde(default)]
    pub until: Option<S<String>>,
}

/// `[[forecasts]]`: per series (key fields × value fields), the current forecast of the next
/// `horizon` steps, maintained as samples arrive.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForecastSpec {
    pub name: S<String>,
    /// A source, or an output (an aggregate's `final` rows, an enriched output).
    pub source: S<String>,
    /// Fields that identify a series besides the metric (`["region"]`).
    #[serde(default)]
    pub keys: Vec<S<String>>,
    /// Numeric fields to forecast: each makes one series per key.
    pub values: Vec<S<String>>,
    /// The known values of some key fields (`{ region = ["eu-west", "us-east"] }`): a sample
    /// with another value is a dead letter `unknown_key`. Absent: every value is a series.
    #[serde(default)]
    pub allowed: IndexMap<String, S<Vec<S<toml::Value>>>>,
    /// The series' resolution: samples are resampled to one value per step.
    pub step: S<String>,
    /// `mean` (default), `max` or `last`.
    #[serde(default)]
    pub aggregation: Option<S<String>>,
    /// Seasonal periods as durations, primary first (multiples of `step`). Absent: detected.
    #[serde(default)]
    pub periods: Option<Vec<S<String>>>,
    /// Steps ahead.
    pub horizon: S<i64>,
    /// Models besides the baselines (`naive`, `seasonal_naive`): `ets`, `mstl`, `ar`.
    #[serde(default)]
    pub models: Option<Vec<S<String>>>,
    /// Samples the models are fitted on (default: four primary periods, or 200 steps).
    #[serde(default)]
    pub training_window: Option<S<String>>,
    /// Time between refits (default: the primary period, or 50 steps).
    #[serde(default)]
    pub refit_every: Option<S<String>>,
    /// Every this many refits, `ets` and `mstl` search their ETS form (default 4); the refits
    /// in between keep it and its smoothing parameters.
    #[serde(default)]
    pub search_every: Option<S<i64>>,
    /// Gaps of at most this many steps are interpolated; longer ones carry the last value.
    #[serde(default)]
    pub max_interpolate: Option<S<i64>>,
    /// `inverse_error` (default: weights by recent error) or `best`.
    #[serde(default)]
    pub selection: Option<S<String>>,
    /// `updates` (default: the current forecast, revised) or `final` (every issued forecast once).
    #[serde(default)]
    pub emit: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    #[serde(default)]
    pub tumbling: Option<S<String>>,
    #[serde(default)]
    pub size: Option<S<String>>,
    #[serde(default)]
    pub slide: Option<S<String>>,
    /// Session windows: per group, events less than this gap apart form one session.
    #[serde(default)]
    pub session: Option<S<String>>,
}

/// `[[services]]`: a Markov model of the services each sequence calls next, resonance scores
/// per pair and predictive pipes, over an interaction log.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicesSpec {
    /// Outputs are `NAME_hops`, `NAME_selection`, `NAME_transitions`, `NAME_predictions`,
    /// `NAME_resonance`, `NAME_pipes` and `NAME_pipe_events`.
    pub name: S<String>,
    /// The interaction log: a source, or a stage's events.
    pub source: S<String>,
    /// Fields (defaults: `trace_id`, `source`, `target`, `kind`, `bytes`, `latency_ms`).
    #[serde(default)]
    pub sequence_field: Option<S<String>>,
    #[serde(default)]
    pub source_field: Option<S<String>>,
    #[serde(default)]
    pub target_field: Option<S<String>>,
    #[serde(default)]
    pub kind_field: Option<S<String>>,
    #[serde(default)]
    pub bytes_field: Option<S<String>>,
    #[serde(default)]
    pub latency_field: Option<S<String>>,
    /// The highest order counted, 1 to 3 (default 3).
    #[serde(default)]
    pub max_order: Option<S<usize>>,
    /// A fixed order (default: chosen by held-out log-loss).
    #[serde(default)]
    pub order: Option<S<usize>>,
    /// A fixed discount in (0, 1] (default: chosen among `estimated`, 0.25, 0.5, 0.75, 1).
    #[serde(default)]
    pub discount: Option<S<f64>>,
    /// The counts' sliding window (default `30m`).
    #[serde(default)]
    pub window: Option<S<String>>,
    /// Longer windows whose models are mixed with `window`'s by recent log-loss (default one,
    /// six times `window`; `[]` for none).
    #[serde(default)]
    pub long_windows: Option<Vec<S<String>>>,
    /// The fixed share of the mixture's weight spread over all windows after each hop (default
    /// 0.001).
    #[serde(default)]
    pub mix_share: Option<S<f64>>,
    /// How often the order and discount are chosen again (default `5m`; `off`: never).
    #[serde(default)]
    pub reselect_every: Option<S<String>>,
    /// The newest share of the window's hops held out to choose them (default 0.2).
    #[serde(default)]
    pub held_out: Option<S<f64>>,
    /// How often `NAME_transitions` is revised (default `1m`).
    #[serde(default)]
    pub transitions_every: Option<S<String>>,
    /// Predictions per active sequence (default 3).
    #[serde(default)]
    pub top_k: Option<S<usize>>,
    /// A sequence without a call for this long has ended (default `5s`).
    #[serde(default)]
    pub sequence_timeout: Option<S<String>>,
    /// The resonance scores' sliding window (default `5m`).
    #[serde(default)]
    pub resonance_window: Option<S<String>>,
    /// Weights, half points and feedback of the resonance score.
    #[serde(default)]
    pub resonance: Option<S<crate::model::resonance::ResonanceConfig>>,
    #[serde(default)]
    pub pipes: Option<S<PipesSpec>>,
    /// Filters and transforms given to the pipes of matching pairs.
    #[serde(default)]
    pub rules: Vec<S<PipeRuleSpec>>,
}

/// `[services.pipes]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipesSpec {
    /// The horizon of the interaction probability (default `2s`).
    #[serde(default)]
    pub horizon: Option<S<String>>,
    /// A pipe is created when the probability reaches this (default 0.5).
    #[serde(default)]
    pub threshold: Option<S<f64>>,
    /// A pipe unused for this long is torn down (default `30s`).
    #[serde(default)]
    pub idle_timeout: Option<S<String>>,
    /// Adapt the threshold to this precision of predicted pipes (default: a fixed threshold).
    #[serde(default)]
    pub target_precision: Option<S<f64>>,
    /// Resolved predicted pipes the adaptive precision is measured over (default 50).
    #[serde(default)]
    pub precision_window: Option<S<usize>>,
    /// The adaptive threshold's lowest value (default 0.05).
    #[serde(default)]
    pub min_threshold: Option<S<f64>>,
    /// Completed calls of a pipe between feedbacks to its pair's resonance (default 20).
    #[serde(default)]
    pub feedback_calls: Option<S<u64>>,
    #[serde(default)]
    pub max_linger_ms: Option<S<f64>>,
    #[serde(default)]
    pub max_batch: Option<S<u32>>,
    #[serde(default)]
    pub compress_from_bytes: Option<S<f64>>,
    #[serde(default)]
    pub zstd_from_bytes: Option<S<f64>>,
    #[serde(default)]
    pub resonance_weight: Option<S<f64>>,
}

/// `[[services.rules]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipeRuleSpec {
    /// A service name or `*` (default `*`).
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub filters: Vec<String>,
    #[serde(default)]
    pub transforms: Vec<String>,
}
