//! Output formats: dynamic rows to Arrow batches and Parquet files ([`arrow_write`]), events to
//! rows ([`events_to_rows`]) and events to NDJSON lines ([`write_ndjson_event`]).
//!
//! Events become rows with the time column first, the type column second, then one column per
//! payload field name (the union over the events, sorted). A payload field named like the time
//! or type column is left out, so that every column name is unique.

pub mod arrow_write;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::path::PathBuf;

use arrow::error::ArrowError;
use parquet::errors::ParquetError;

pub use arrow_write::{infer_type, rows_to_batch, rows_to_batch_with_schema, ParquetSink, Shapes, ROW_GROUP_ROWS};

use crate::event::Event;
use crate::value::{format_time, Sym, Value};

/// Why rows could not be turned into a batch, or a batch written to a file.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("row {row} has {got} values but there are {expected} columns")]
    RowWidth { row: usize, got: usize, expected: usize },
    #[error("column `{column}`: {source}")]
    Column {
        column: String,
        #[source]
        source: ArrowError,
    },
    #[error("{}: batch schema [{got}] differs from the file's [{expected}]", path.display())]
    SchemaMismatch {
        path: PathBuf,
        expected: String,
        got: String,
    },
    #[error("{}: {source}", path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: ParquetError,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Columns and rows for `events`: time, type, then the sorted union of payload fields; a field
/// an event lacks is null. Times become [`Value::Time`], types strings.
pub fn events_to_rows(events: &[Event], time_field: &str, type_field: &str) -> (Vec<String>, Vec<Vec<Value>>) {
    let names: Vec<&'static str> = events
        .iter()
        .flat_map(|e| e.payload.iter().map(|(k, _)| k.as_str()))
        .filter(|k| *k != time_field && *k != type_field)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut columns = vec![time_field.to_string(), type_field.to_string()];
    columns.extend(names.iter().map(|n| n.to_string()));
    // Event types are few: share one string per type.
    let mut kinds: Vec<(Sym, Value)> = Vec::new();
    let rows = events
        .iter()
        .map(|e| {
            let kind = match kinds.iter().find(|(k, _)| *k == e.kind) {
                Some((_, v)) => v.clone(),
                None => {
                    let v = Value::str(e.kind.as_str());
                    kinds.push((e.kind, v.clone()));
                    v
                }
            };
            let mut row = vec![Value::Null; columns.len()];
            row[0] = Value::Time(e.time);
            row[1] = kind;
            for (k, v) in e.payload.iter() {
                if let Ok(i) = names.binary_search(&k.as_str()) {
                    row[2 + i] = v.clone();
                }
            }
            row
        })
        .collect();
    (columns, rows)
}

/// Writes `e` as one JSON line: the time (RFC 3339, see [`format_time`]) under `time_field`, the
/// type under `type_field`, then the payload fields in order (nulls included).
pub fn write_ndjson_event(w: &mut impl Write, e: &Event, time_field: &str, type_field: &str) -> io::Result<()> {
    w.write_all(b"{")?;
    serde_json::to_writer(&mut *w, time_field)?;
    w.write_all(b":\"")?;
    w.write_all(format_time(e.time).as_bytes())?;
    w.write_all(b"\",")?;
    serde_json::to_writer(&mut *w, type_field)?;
    w.write_all(b":")?;
    serde_json::to_writer(&mut *w, e.kind.as_str())?;
    for (k, v) in e.payload.iter() {
        if k.as_str() == time_field || k.as_str() == type_field {
            continue;
        }
        w.write_all(b",")?;
        serde_json::to_writer(&mut *w, k.as_str())?;
        w.write_all(b":")?;
        write_json(w, v)?;
    }
    w.write_all(b"}\n")
}

/// Writes `v` as JSON exactly as [`Value::to_json`] renders it, without building a tree.
fn write_json(w: &mut impl Write, v: &Value) -> io::Result<()> {
    match v {
        Value::Null => w.write_all(b"null"),
        Value::Bool(b) => w.write_all(if *b { b"true" } else { b"false" }),
        Value::Int(i) => write!(w, "{i}"),
        Value::Float(f) if f.get().is_finite() => Ok(serde_json::to_writer(&mut *w, &f.get())?),
        Value::Float(_) => w.write_all(b"null"),
        Value::Str(s) => Ok(serde_json::to_writer(&mut *w, &**s)?),
        Value::Time(ms) => write!(w, "\"{}\"", format_time(*ms)),
        Value::List(items) => {
            w.write_all(b"[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    w.write_all(b",")?;
                }
                write_json(w, item)?;
            }
            w.write_all(b"]")
        }
        Value::Object(fields) => {
            w.write_all(b"{")?;
            for (i, (k, item)) in fields.iter().enumerate() {
                if i > 0 {
                    w.write_all(b",")?;
                }
                serde_json::to_writer(&mut *w, k.as_str())?;
                w.write_all(b":")?;
                write_json(w, item)?;
            }
            w.write_all(b"}")
        }
    }
}
