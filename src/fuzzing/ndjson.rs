//! The NDJSON decoder, as `sluice run` reads a file and as `sluice serve` reads a batch of
//! lines, under random source settings.

use std::collections::BTreeSet;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};

use crate::event::Event;
use crate::plan::{Fields, Format, SourceLimits, SourcePlan};
use crate::serve::record::Batch;
use crate::serve::worker::{self, NameCheck};
use crate::serve::Limits;
use crate::source::arrow_read::TypeCache;
use crate::source::json_scan::{depth_exceeds, scan};
use crate::source::ndjson::{parse_fast, parse_line, parse_text, scan_time};
use crate::source::Decoded;
use crate::value::{interned_names, with_name_limit, Value};

use super::NAME_LIMIT;

/// `data[0]`: the source's settings (bits); the rest: lines.
pub fn ndjson(data: &[u8]) {
    let [settings, text @ ..] = data else {
        return;
    };
    let plan = source(*settings);
    let (run, refused) = with_name_limit(NAME_LIMIT, || {
        let mut types = TypeCache::default();
        let mut names = NameCheck::default();
        text.split(|b| *b == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .map(|line| one_line(&plan, &mut types, &mut names, line))
            .collect::<Vec<_>>()
    });
    if refused {
        return;
    }
    // Served, the same lines in one batch are decided alike (no time is in the future of a
    // batch without an arrival time, and no name limit is reached).
    let lines = text.split(|b| *b == b'\n').count() as u32;
    let batch = Batch {
        source: 0,
        client: "c".into(),
        first_offset: 0,
        lines,
        data: [text, b"\n"].concat(),
        rejects: Vec::new(),
        received_ms: None,
    };
    let limits = Limits {
        max_field_names: NAME_LIMIT,
        ..Limits::default()
    };
    let record_limit = 64 + usize::from(*settings);
    let mut served = Vec::new();
    let ((), refused) = with_name_limit(NAME_LIMIT, || {
        worker::parse(
            &batch,
            &plan,
            &mut TypeCache::default(),
            &mut NameCheck::default(),
            &limits,
            record_limit,
            &mut served,
        );
    });
    if refused {
        return;
    }
    assert_eq!(served.len(), run.len(), "serve decodes every line");
    for (s, r) in served.iter().zip(&run) {
        match (s, r) {
            (Decoded::Event(a, _), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}")),
            (Decoded::Bad(letter), _) if letter.reason == "too_many_fields" => {}
            (Decoded::Bad(letter), Err(reason)) => {
                assert_eq!(letter.reason, *reason, "serve and run give one reason");
                assert!(letter.record.len() <= record_limit, "a dead letter is clipped");
            }
            (Decoded::Event(e, _), r) => panic!("serve {e:?}, run {r:?}"),
            (Decoded::Bad(letter), r) => panic!("serve {}: {}, run {r:?}", letter.reason, letter.detail),
        }
    }
}

fn source(settings: u8) -> SourcePlan {
    SourcePlan {
        name: "s".into(),
        format: Format::Tcp,
        paths: Vec::new(),
        time_field: if settings & 64 != 0 { "event_time" } else { "ts" }.into(),
        type_field: if settings & 64 != 0 { "event_type" } else { "type" }.into(),
        fixed_type: (settings & 1 != 0).then(|| "fixed".to_string()),
        time_unit_ms: [1.0, 1000.0, 0.001, 1e-6][usize::from(settings >> 1 & 3)],
        allowed_lateness_ms: 0,
        projection: (settings & 8 != 0).then(|| vec!["a".to_string(), "ts".to_string()]),
        limits: SourceLimits {
            max_depth: [3, SourceLimits::DEFAULT_MAX_DEPTH, SourceLimits::MAX_MAX_DEPTH, 1]
                [usize::from(settings >> 4 & 3)],
            ..SourceLimits::default()
        },
        fields: Fields::Open,
        csv: Default::default(),
    }
}

/// Decodes one line every way there is, and checks that they agree; returns `parse_line`'s
/// event or reason.
fn one_line(
    plan: &SourcePlan,
    types: &mut TypeCache,
    names: &mut NameCheck,
    line: &[u8],
) -> Result<Event, &'static str> {
    names.keys.clear();
    let deep = scan(line, plan.limits.max_depth, &mut names.keys);
    assert_eq!(deep, depth_exceeds(line, plan.limits.max_depth));
    let new = if deep { 0 } else { names.new_names(line) };
    let before = interned_names();
    let parsed = parse_line(plan, types, line);
    if parsed.is_ok() {
        // The names a line adds are counted before it is parsed (the type's value aside).
        assert!(interned_names() - before <= new + 1, "{new} new names counted");
    }
    let shown = String::from_utf8_lossy(line);
    if let Some((depth, want)) = Shape::of(line) {
        assert_eq!(deep, depth > plan.limits.max_depth, "the depth scan of {shown}");
        if !deep {
            let got: BTreeSet<Vec<u8>> = names
                .keys
                .iter()
                .map(|r| worker::key_name(line, r.clone()).into_owned())
                .collect();
            assert_eq!(got, want, "the key scan of {shown}");
        }
    }
    let result = parsed.clone().map_err(|e| e.0);
    let Ok(text) = std::str::from_utf8(line) else {
        assert!(deep || matches!(parsed, Err(("invalid_utf8", ..))));
        return result;
    };
    if deep {
        assert!(matches!(parsed, Err(("depth_exceeded", ..))));
        return result;
    }
    let fast = parse_fast(plan, &mut TypeCache::default(), text);
    let slow = parse_text(plan, &mut TypeCache::default(), text);
    match (&fast, &slow) {
        // Debug output tells an int from an equal float, which `==` does not.
        (Some(f), Ok(s)) => assert_eq!(format!("{f:?}"), format!("{s:?}")),
        (None, Err(_)) => {}
        (f, s) => panic!("fast {f:?}, slow {s:?}"),
    }
    assert_eq!(format!("{parsed:?}"), format!("{slow:?}"));
    let Ok(event) = parsed else {
        return result;
    };
    // The split scan finds the time the reader decodes.
    assert_eq!(scan_time(line, &plan.time_field, plan.time_unit_ms), Some(event.time));
    // The payload prints as JSON and parses back to itself.
    let object = Value::Object(event.payload.clone());
    assert!(object.depth() <= plan.limits.max_depth);
    let printed = object.to_json().to_string();
    let again = Value::from_json(serde_json::from_str(&printed).expect("printed JSON parses"));
    assert_eq!(
        format!("{again:?}"),
        format!("{object:?}"),
        "a payload printed and parsed again"
    );
    result
}

/// The nesting depth of JSON text and every object key in it, repeated keys included (a
/// `serde_json::Value` keeps only the last of them).
#[derive(Default)]
struct Shape {
    keys: BTreeSet<Vec<u8>>,
}

impl Shape {
    /// `None` when the text is not JSON (or nests deeper than serde_json's 128 levels).
    fn of(line: &[u8]) -> Option<(usize, BTreeSet<Vec<u8>>)> {
        let mut shape = Shape::default();
        let mut de = serde_json::Deserializer::from_slice(line);
        let depth = DeserializeSeed::deserialize(&mut shape, &mut de).ok()?;
        de.end().ok()?;
        Some((depth, shape.keys))
    }
}

impl<'de> DeserializeSeed<'de> for &mut Shape {
    type Value = usize;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &mut Shape {
    type Value = usize;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<usize, E> {
        Ok(0)
    }
    fn visit_i64<E>(self, _: i64) -> Result<usize, E> {
        Ok(0)
    }
    fn visit_u64<E>(self, _: u64) -> Result<usize, E> {
        Ok(0)
    }
    fn visit_f64<E>(self, _: f64) -> Result<usize, E> {
        Ok(0)
    }
    fn visit_str<E>(self, _: &str) -> Result<usize, E> {
        Ok(0)
    }
    fn visit_unit<E>(self) -> Result<usize, E> {
        Ok(0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut deepest = 0;
        while let Some(d) = seq.next_element_seed(&mut *self)? {
            deepest = deepest.max(d);
        }
        Ok(1 + deepest)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
        let mut deepest = 0;
        while let Some(key) = map.next_key::<String>()? {
            self.keys.insert(key.into_bytes());
            deepest = deepest.max(map.next_value_seed(&mut *self)?);
        }
        Ok(1 + deepest)
    }
}
