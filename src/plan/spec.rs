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
    /// Schema inference, registry and conformance, per source name.
    #[serde(default)]
    pub schemas: BTreeMap<String, S<SchemaSpec>>,
    /// Deduplication rules: source name → event type → rule.
    #[serde(default)]
    pub dedup: BTreeMap<String, BTreeMap<String, S<DedupSpec>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupSpec {
    /// Idempotency key: one or more field paths.
    pub key: Vec<S<String>>,
    /// How long after a key's first occurrence later ones are duplicates.
    pub ttl: S<String>,
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// `parquet` or `ndjson`; inferred from the path's extension when absent.
    #[serde(default)]
    pub format: Option<S<String>>,
    /// A file, a directory, or a list of either; relative to the spec file's folder.
    pub path: S<PathList>,
    pub time_field: S<String>,
    pub type_field: S<String>,
    /// Unit of an integer time column: `ms` (default), `s`, `us` or `ns`.
    #[serde(default)]
    pub time_unit: Option<S<String>>,
    /// How far behind the largest event time seen an event may be before it is late.
    #[serde(default)]
    pub allowed_lateness: Option<S<String>>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum PathList {
    One(String),
    Many(Vec<String>),
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
    pub group_by: Vec<S<String>>,
    /// Output column name → `fn(arg) [where condition]`, in order.
    pub measures: IndexMap<String, S<String>>,
    /// `updates` (default) or `final`.
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
}
