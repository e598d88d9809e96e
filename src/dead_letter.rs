//! Dead letters: records that a stage rejected, with the reason. Every stage that can reject a
//! record sends it here instead of dropping it or panicking; all of them end in one
//! `dead_letters` output and are counted per reason.

use serde::{Deserialize, Serialize};

/// One rejected record.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Where it was rejected: `source:NAME` or `aggregate:NAME`.
    pub stage: String,
    /// A short machine-readable reason: `late`, `bad_time`, `missing_type`, `malformed_json`, ...
    pub reason: String,
    /// Human-readable detail: the field, the expected type, the value.
    pub detail: String,
    /// Where the record came from: `FILE#row N` or `FILE:LINE`.
    pub location: String,
    /// The original record as JSON (for Parquet sources, the columns the pipeline reads).
    pub record: String,
    /// Event time in milliseconds, when one could be read.
    pub event_time: Option<i64>,
}

impl DeadLetter {
    /// The column names and values written to the `dead_letters` output.
    pub fn columns() -> Vec<String> {
        ["stage", "reason", "detail", "location", "record", "event_time"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    pub fn row(&self) -> Vec<crate::value::Value> {
        use crate::value::Value;
        vec![
            Value::str(&self.stage),
            Value::str(&self.reason),
            Value::str(&self.detail),
            Value::str(&self.location),
            Value::str(&self.record),
            self.event_time.map(Value::Time).unwrap_or(Value::Null),
        ]
    }
}
