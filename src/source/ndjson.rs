//! NDJSON files: one event per line, a JSON object with the time field, the type field and any
//! other fields as payload (the format TCP streaming uses too).
//!
//! Files are split into byte ranges of about [`SPLIT_BYTES`] that start at line boundaries. A
//! split's maximum event time is found by a scan that parses only the time field of each line.
//! Lines that are not valid UTF-8, not JSON, not an object, too deep, or lack a valid time or
//! type become dead letters with that reason.

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use super::arrow_read::{time_ms, TypeCache};
use super::{Decoded, SourceError, Split, SplitReader, Unit};
use crate::dead_letter::DeadLetter;
use crate::event::Event;
use crate::plan::SourcePlan;
use crate::value::{Sym, Value};

pub const SPLIT_BYTES: u64 = 8 << 20;
const CHUNK_LINES: usize = 4096;

fn read_all(path: &Path) -> Result<Vec<u8>, SourceError> {
    std::fs::read(path).map_err(|e| SourceError::open(path, e))
}

/// Byte-range splits of every file, with their maximum event time.
pub fn splits(plan: &SourcePlan, files: &[PathBuf]) -> Result<Vec<Split>, SourceError> {
    let mut out = Vec::new();
    for (fi, path) in files.iter().enumerate() {
        let bytes = read_all(path)?;
        let mut start = 0usize;
        let mut line_no = 1u64;
        while start < bytes.len() {
            let mut end = (start + SPLIT_BYTES as usize).min(bytes.len());
            while end < bytes.len() && bytes[end - 1] != b'\n' {
                end += 1;
            }
            let mut max_time = None;
            let mut rows = 0;
            for line in bytes[start..end].split(|b| *b == b'\n') {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                rows += 1;
                if let Some(t) = scan_time(line, &plan.time_field, plan.time_unit_ms) {
                    max_time = max_time.max(Some(t));
                }
            }
            out.push(Split {
                file: fi,
                unit: Unit::Bytes {
                    start: start as u64,
                    end: end as u64,
                    first_line: line_no,
                },
                max_time,
                rows,
            });
            line_no += bytes[start..end].iter().filter(|b| **b == b'\n').count() as u64;
            start = end;
        }
    }
    Ok(out)
}

/// The line's event time, parsing nothing but the time field.
fn scan_time(line: &[u8], field: &str, unit_ms: f64) -> Option<i64> {
    let mut de = serde_json::Deserializer::from_slice(line);
    let found = TimeOnly { field }.deserialize(&mut de).ok()??;
    time_ms(Value::from_json(found), unit_ms).ok()
}

struct TimeOnly<'a> {
    field: &'a str,
}

impl<'de> DeserializeSeed<'de> for TimeOnly<'_> {
    type Value = Option<serde_json::Value>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TimeOnly<'_> {
    type Value = Option<serde_json::Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == self.field {
                found = Some(map.next_value::<serde_json::Value>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// Parses one NDJSON line into an event, or says why it cannot.
pub fn parse_line(
    plan: &SourcePlan,
    types: &mut TypeCache,
    line: &[u8],
) -> Result<Event, (&'static str, String, Option<i64>)> {
    let text = std::str::from_utf8(line).map_err(|e| ("invalid_utf8", e.to_string(), None))?;
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        if e.to_string().contains("recursion limit") {
            ("depth_exceeded", "nesting deeper than 128 levels".to_string(), None)
        } else {
            ("malformed_json", e.to_string(), None)
        }
    })?;
    let serde_json::Value::Object(map) = json else {
        return Err((
            "not_an_object",
            format!("a line must be a JSON object, not {}", kind(&json)),
            None,
        ));
    };
    let mut time = None;
    let mut kind_sym = None;
    let mut fields = Vec::with_capacity(map.len());
    for (k, v) in map {
        if k == plan.time_field {
            time = Some(v);
        } else if k == plan.type_field {
            kind_sym = Some(v);
        } else if plan.projection.as_ref().is_none_or(|p| p.contains(&k)) {
            fields.push((Sym::new(&k), Value::from_json(v)));
        }
    }
    let time = match time {
        None => return Err(("missing_time", format!("no `{}` field", plan.time_field), None)),
        Some(t) => time_ms(Value::from_json(t), plan.time_unit_ms)
            .map_err(|e| ("bad_time", format!("{}: {e}", plan.time_field), None))?,
    };
    let kind = match kind_sym {
        Some(serde_json::Value::String(s)) => types.get(&s),
        Some(other) => {
            return Err((
                "missing_type",
                format!("{}: {} is not a string", plan.type_field, kind(&other)),
                Some(time),
            ))
        }
        None => return Err(("missing_type", format!("no `{}` field", plan.type_field), Some(time))),
    };
    Ok(Event::new(time, kind, fields))
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a bool",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Reads byte-range splits on one worker.
pub struct NdjsonReader {
    plan: SourcePlan,
    files: Vec<PathBuf>,
    types: TypeCache,
}

impl NdjsonReader {
    pub fn new(plan: &SourcePlan, files: &[PathBuf]) -> NdjsonReader {
        NdjsonReader {
            plan: plan.clone(),
            files: files.to_vec(),
            types: TypeCache::default(),
        }
    }
}

impl SplitReader for NdjsonReader {
    fn read(&mut self, split: &Split, out: &mut dyn FnMut(&mut Vec<Decoded>)) -> Result<(), SourceError> {
        let Unit::Bytes { start, end, first_line } = split.unit else {
            unreachable!("ndjson splits are byte ranges")
        };
        let path = &self.files[split.file];
        let mut file = File::open(path).map_err(|e| SourceError::read(path, e))?;
        file.seek(SeekFrom::Start(start))
            .map_err(|e| SourceError::read(path, e))?;
        let mut bytes = Vec::with_capacity((end - start) as usize);
        file.take(end - start)
            .read_to_end(&mut bytes)
            .map_err(|e| SourceError::read(path, e))?;
        let mut decoded = Vec::with_capacity(CHUNK_LINES);
        for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match parse_line(&self.plan, &mut self.types, line) {
                Ok(event) => decoded.push(Decoded::Event(event, first_line + i as u64)),
                Err((reason, detail, event_time)) => decoded.push(Decoded::Bad(Box::new(DeadLetter {
                    stage: format!("source:{}", self.plan.name),
                    reason: reason.into(),
                    detail,
                    location: format!("{}:{}", path.display(), first_line + i as u64),
                    record: String::from_utf8_lossy(line).into_owned(),
                    event_time,
                }))),
            }
            if decoded.len() >= CHUNK_LINES {
                out(&mut decoded);
                decoded.clear();
            }
        }
        out(&mut decoded);
        Ok(())
    }
}
