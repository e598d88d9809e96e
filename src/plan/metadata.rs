//! The plan of a `[metadata.SOURCE]` stage: how each event's routing metadata is computed
//! (`render::metadata` applies it).

use serde::Serialize;

use crate::expr::Expr;

/// Routing metadata of one source's events.
#[derive(Debug, Clone, Serialize)]
pub struct MetadataPlan {
    /// Index into [`super::Plan::sources`].
    pub source: usize,
    pub priority: MetaField,
    pub complexity: MetaField,
    pub shard_key: MetaField,
    /// `shard_id` is the shard key's stable hash modulo this.
    pub shards: u64,
    pub invalid: InvalidMetadata,
}

/// One field: its value, the default used when the value is null, and its valid range (none
/// for the shard key, which may be any non-null value).
#[derive(Debug, Clone, Serialize)]
pub struct MetaField {
    pub name: &'static str,
    pub value: Expr,
    pub default: Option<Expr>,
    pub range: Option<(i64, i64)>,
}

/// What a present but invalid priority or complexity does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidMetadata {
    /// Numbers are rounded and clamped into range; other values take the default. Counted.
    Clamp,
    /// The event is a dead letter `invalid_metadata`.
    DeadLetter,
}

/// The fields a metadata stage sets, in this order.
pub const METADATA_FIELDS: [&str; 4] = ["priority", "complexity", "shard_key", "shard_id"];

/// The default number of shards.
pub const DEFAULT_SHARDS: u64 = 4096;
