//! NDJSON files: one event per line, a JSON object with the time field, the type field and any
//! other fields as payload (the format TCP streaming uses too).
//!
//! Files are split into byte ranges of about [`SPLIT_BYTES`] that start at line boundaries. A
//! split's maximum event time is found by a scan that parses only the time field of each line.
//! Lines that are not valid UTF-8, not JSON, not an object, nested deeper than the source's
//! `max_depth`, or lack a valid time or type become dead letters with that reason.
//!
//! A whole number within ±2^53 decodes as an int however it is written (`10.0`, `1e1`), other
//! numbers as floats ([`Value::json_number`]): JSON does not tell `10` from `10.0`.

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use super::arrow_read::{time_ms, TypeCache};
use super::future::FutureFilter;
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

/// Byte-range splits of every file, with their maximum admitted event time and far-future
/// lines (see [`super::future`]).
pub fn splits(plan: &SourcePlan, files: &[PathBuf]) -> Result<Vec<Split>, SourceError> {
    let mut out = Vec::new();
    let mut future = FutureFilter::new(plan.limits.max_future_ms);
    for (fi, path) in files.iter().enumerate() {
        let bytes = read_all(path)?;
        let mut start = 0usize;
        let mut line_no = 1u64;
        while start < bytes.len() {
            let mut end = (start + SPLIT_BYTES as usize).min(bytes.len());
            while end < bytes.len() && bytes[end - 1] != b'\n' {
                end += 1;
            }
            let s = out.len();
            let unit = Unit::Bytes {
                start: start as u64,
                end: end as u64,
                first_line: line_no,
            };
            out.push(Split::new(fi, unit, 0));
            let mut rows = 0;
            for (i, line) in bytes[start..end].split(|b| *b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                rows += 1;
                // Lines the reader rejects before their time (too deep) have none here either.
                if super::json_scan::depth_exceeds(line, plan.limits.max_depth) {
                    continue;
                }
                if let Some(t) = scan_time(line, &plan.time_field, plan.time_unit_ms).filter(|t| *t >= 0) {
                    future.push(&mut out, s, line_no + i as u64, t);
                }
            }
            out[s].rows = rows;
            line_no += bytes[start..end].iter().filter(|b| **b == b'\n').count() as u64;
            start = end;
        }
    }
    future.finish(&mut out);
    Ok(out)
}

/// The line's event time in ms, parsing nothing but the time field (as [`time_ms`] reads it:
/// RFC 3339 text, or a number in `unit_ms` milliseconds); `None` without a valid one.
pub fn scan_time(line: &[u8], field: &str, unit_ms: f64) -> Option<i64> {
    let mut de = serde_json::Deserializer::from_slice(line);
    let found = TimeOnly { field }.deserialize(&mut de).ok()??;
    time_ms(Value::from_json(found), unit_ms).ok()
}

struct TimeOnly<'a> {
    field: &'a str,
}

/// Whether an object key is the given name (without allocating the key).
struct IsKey<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for IsKey<'_> {
    type Value = bool;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for IsKey<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
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
        while let Some(is_field) = map.next_key_seed(IsKey(self.field))? {
            if is_field {
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
    let max_depth = plan.limits.max_depth;
    if super::json_scan::depth_exceeds(line, max_depth) {
        return Err((
            "depth_exceeded",
            format!("nesting deeper than {max_depth} levels"),
            None,
        ));
    }
    let text = std::str::from_utf8(line).map_err(|e| ("invalid_utf8", e.to_string(), None))?;
    if let Some(event) = parse_fast(plan, types, text) {
        return Ok(event);
    }
    parse_text(plan, types, text)
}

/// [`parse_line`] through `serde_json::Value`, which says why a line is not an event.
pub(crate) fn parse_text(
    plan: &SourcePlan,
    types: &mut TypeCache,
    text: &str,
) -> Result<Event, (&'static str, String, Option<i64>)> {
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
        } else if k == plan.type_field && plan.fixed_type.is_none() {
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
    let kind = match (kind_sym, &plan.fixed_type) {
        (_, Some(fixed)) => types.get(fixed),
        (Some(serde_json::Value::String(s)), None) => types.get(&s),
        (Some(other), None) => {
            return Err((
                "missing_type",
                format!("{}: {} is not a string", plan.type_field, kind(&other)),
                Some(time),
            ))
        }
        (None, None) => return Err(("missing_type", format!("no `{}` field", plan.type_field), Some(time))),
    };
    Ok(Event::new(time, kind, fields))
}

/// [`parse_line`] of a line that becomes an event, parsing straight into [`Value`]s; `None` for
/// any other line, which [`parse_line`] then parses again to say why it is not an event.
pub(crate) fn parse_fast(plan: &SourcePlan, types: &mut TypeCache, text: &str) -> Option<Event> {
    let mut de = serde_json::Deserializer::from_str(text);
    let map = KEY_HINTS
        .with_borrow_mut(|hints| Fields { hints: Some(hints) }.deserialize(&mut de))
        .ok()?;
    de.end().ok()?;
    let mut time = None;
    let mut kind_value = None;
    let mut fields = Vec::with_capacity(map.len());
    for (k, v) in map {
        let name = k.as_str();
        if name == plan.time_field {
            time = Some(v);
        } else if name == plan.type_field && plan.fixed_type.is_none() {
            kind_value = Some(v);
        } else if plan.projection.as_ref().is_none_or(|p| p.iter().any(|f| f == name)) {
            fields.push((k, v));
        }
    }
    let time = time_ms(time?, plan.time_unit_ms).ok()?;
    if let Some(fixed) = &plan.fixed_type {
        return Some(Event::new(time, types.get(fixed), fields));
    }
    let Some(Value::Str(kind)) = kind_value else {
        return None;
    };
    Some(Event::new(time, types.get(&kind), fields))
}

thread_local! {
    /// The keys of the last top-level object parsed on this thread, by position: lines of a
    /// file mostly repeat them, and comparing with a guess is cheaper than interning.
    static KEY_HINTS: std::cell::RefCell<Vec<Sym>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The fields of a JSON object, in order, repeats included; `hints` guesses the keys by position.
struct Fields<'h> {
    hints: Option<&'h mut Vec<Sym>>,
}

impl<'de> DeserializeSeed<'de> for Fields<'_> {
    type Value = Vec<(Sym, Value)>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Fields<'_> {
    type Value = Vec<(Sym, Value)>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
        loop {
            let i = fields.len();
            let hint = self.hints.as_ref().and_then(|h| h.get(i).copied());
            let Some(key) = map.next_key_seed(Key(hint))? else {
                break;
            };
            if let Some(hints) = &mut self.hints {
                if hint != Some(key) {
                    hints.truncate(i);
                    hints.push(key);
                }
            }
            fields.push((key, map.next_value_seed(JsonValue)?));
        }
        Ok(fields)
    }
}

/// An object key, interned without an intermediate `String` when it has no escapes; the hint
/// is taken when it is the same name.
struct Key(Option<Sym>);

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Sym;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Sym;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Sym, E> {
        Ok(match self.0 {
            Some(hint) if hint.as_str() == v => hint,
            _ => Sym::new(v),
        })
    }
}

/// Any JSON value, as [`Value::from_json`] converts it.
struct JsonValue;

impl<'de> DeserializeSeed<'de> for JsonValue {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for JsonValue {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(match i64::try_from(v) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::json_number(v as f64),
        })
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        // serde_json keeps only finite floats as numbers.
        Ok(if v.is_finite() {
            Value::json_number(v)
        } else {
            Value::Null
        })
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::str(v))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(JsonValue)? {
            items.push(item);
        }
        Ok(Value::List(items.into()))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        Ok(Value::object(Fields { hints: None }.visit_map(map)?))
    }
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
                    original: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> SourcePlan {
        SourcePlan {
            fields: crate::plan::Fields::Open,
            ..crate::source::test_plan(crate::plan::Format::Ndjson, Vec::new())
        }
    }

    /// The direct parse gives the events that parsing through `serde_json::Value` gives.
    #[test]
    fn fast_parse_agrees_with_json_values() {
        let plan = plan();
        let lines = [
            r#"{"ts":1,"type":"a","b":2,"a":{"z":1,"y":[1,2.5,null,"x",{"q":true}]}}"#,
            r#"{"ts":1,"type":"a","a":1,"a":"two","type":"b","ts":7}"#,
            r#"{"type":"a","ts":2.5,"big":18446744073709551615,"neg":-9223372036854775808,"f":-0.0,"e":1e300}"#,
            r#"{"ts":"2024-01-02T03:04:05Z","type":"a","k\u0065y":"v\n","":{},"l":[],"o":{"a":1,"a":2}}"#,
            r#"{"ts":1,"type":"a","ts2":1,"type2":null}"#,
            r#"{"ts":1,"type":2}"#,
            r#"{"ts":1,"type":"b","type":3}"#,
            r#"{"ts":1,"type":3,"type":"b"}"#,
            r#"{"ts":"x","type":"a"}"#,
            r#"{"type":"a"}"#,
            r#"{"ts":1}"#,
            r#"{"ts":1,"type":"a"} x"#,
            r#"{"ts":1,"type":"a","n":1e400}"#,
            r#"[1]"#,
            r#"{"ts":1,"type":"a","b":2,"a":{"z":1}}"#,
            r#"{"ts":1,"type":"a","w":10.0,"x":[3.0,-0.0,1e2],"y":9007199254740994.0,"z":{"q":2.5}}"#,
        ];
        for projection in [None, Some(vec!["a".to_string(), "ts".to_string()])] {
            let plan = SourcePlan {
                projection,
                ..plan.clone()
            };
            for line in lines {
                let fast = parse_fast(&plan, &mut TypeCache::default(), line);
                let slow = parse_text(&plan, &mut TypeCache::default(), line);
                match (fast, slow) {
                    // Debug output tells an int from an equal float, which `==` does not.
                    (Some(f), Ok(s)) => assert_eq!(format!("{f:?}"), format!("{s:?}"), "{line}"),
                    (None, Err(_)) => {}
                    (f, s) => panic!("{line}: fast {f:?}, slow {s:?}"),
                }
                assert_eq!(
                    format!("{:?}", parse_line(&plan, &mut TypeCache::default(), line.as_bytes())),
                    format!("{:?}", parse_text(&plan, &mut TypeCache::default(), line))
                );
            }
        }
    }

    /// Fuzzing found numbers decoded one unit in the last place off, so that a payload printed
    /// and parsed again changed (`ndjson`): JSON numbers decode to the nearest float.
    #[test]
    fn numbers_decode_to_the_nearest_float() {
        let plan = plan();
        for text in [
            "18446744073709572036854775808",
            "2.2250738585072011e-308",
            "0.30000000000000004441",
        ] {
            let line = format!(r#"{{"ts":1,"type":"a","x":{text}}}"#);
            let want = Value::json_number(text.parse::<f64>().unwrap());
            for event in [
                parse_fast(&plan, &mut TypeCache::default(), &line).expect("an event"),
                parse_text(&plan, &mut TypeCache::default(), &line).expect("an event"),
            ] {
                let got = &event.payload[0].1;
                assert_eq!(format!("{got:?}"), format!("{want:?}"), "{text}");
                let again = Value::from_json(serde_json::from_str(&got.to_json().to_string()).unwrap());
                assert_eq!(
                    format!("{again:?}"),
                    format!("{want:?}"),
                    "{text} printed and parsed again"
                );
            }
        }
    }

    /// A whole JSON number within ±2^53 is an int however it is written; others are floats.
    #[test]
    fn whole_numbers_decode_as_ints() {
        let plan = plan();
        let line = r#"{"ts":1.0,"type":"a","a":10.0,"b":-0.0,"c":1e2,"d":2.5,"e":9007199254740992.0,"f":9007199254740994.0,"g":[3.0,{"h":4.0}],"i":18446744073709551615}"#;
        let want = [
            ("a", "10"),
            ("b", "0"),
            ("c", "100"),
            ("d", "2.5"),
            ("e", "9007199254740992"),
            ("f", "9007199254740994.0"),
            ("g", "[3,{\"h\":4}]"),
            ("i", "1.8446744073709552e+19"),
        ];
        for event in [
            parse_fast(&plan, &mut TypeCache::default(), line).expect("an event"),
            parse_text(&plan, &mut TypeCache::default(), line).expect("an event"),
        ] {
            assert_eq!(event.time, 1);
            let got: Vec<(&str, String)> = event
                .payload
                .iter()
                .map(|(k, v)| (k.as_str(), format!("{v:?}")))
                .collect();
            let want: Vec<(&str, String)> = want.iter().map(|(k, v)| (*k, v.to_string())).collect();
            assert_eq!(got, want);
        }
    }
}
