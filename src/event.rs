//! Events and field paths.
//!
//! An [`Event`] is an event time (epoch milliseconds), an event type and a payload of named
//! fields. A [`FieldPath`] such as `user.country` or `tags[0]` addresses nested payload data.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::value::{lookup, Sym, Value};

/// One event. Cloning is cheap: the payload sits behind an `Arc`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Debug)]
pub struct Event {
    /// Event time, milliseconds since the Unix epoch.
    pub time: i64,
    /// Event type.
    pub kind: Sym,
    /// Payload fields, sorted by name.
    pub payload: Arc<[(Sym, Value)]>,
}

impl Event {
    /// Builds an event, sorting payload fields into canonical order.
    pub fn new(time: i64, kind: Sym, mut payload: Vec<(Sym, Value)>) -> Event {
        let fields = crate::value::sort_fields(&mut payload);
        Event {
            time,
            kind,
            payload: fields.into(),
        }
    }

    /// This event with top-level field `name` set to `value` (added or replaced).
    pub fn with_field(self, name: Sym, value: Value) -> Event {
        let (time, kind) = (self.time, self.kind);
        let mut fields: Vec<(Sym, Value)> = Vec::with_capacity(self.payload.len() + 1);
        let mut value = Some(value);
        for_each_field(self.payload, |k, v| {
            if k >= name {
                if let Some(value) = value.take() {
                    fields.push((name, value));
                }
                if k == name {
                    return;
                }
            }
            fields.push((k, v));
        });
        fields.extend(value.map(|v| (name, v)));
        Event {
            time,
            kind,
            payload: fields.into(),
        }
    }

    /// This event with several top-level fields set (added or replaced) in one rebuild of the
    /// payload; a name given twice keeps its last value.
    pub fn with_fields(self, mut set: Vec<(Sym, Value)>) -> Event {
        let (time, kind) = (self.time, self.kind);
        let set = crate::value::sort_fields(&mut set);
        let mut fields: Vec<(Sym, Value)> = Vec::with_capacity(self.payload.len() + set.len());
        let mut set = set.into_iter().peekable();
        for_each_field(self.payload, |k, v| {
            while let Some(new) = set.next_if(|(name, _)| *name < k) {
                fields.push(new);
            }
            match set.next_if(|(name, _)| *name == k) {
                Some(new) => fields.push(new),
                None => fields.push((k, v)),
            }
        });
        fields.extend(set);
        Event {
            time,
            kind,
            payload: fields.into(),
        }
    }

    /// This event without top-level field `name`.
    pub fn without_field(&self, name: Sym) -> Event {
        Event {
            time: self.time,
            kind: self.kind,
            payload: self.payload.iter().filter(|(k, _)| *k != name).cloned().collect(),
        }
    }

    /// The payload as an object value.
    pub fn payload_value(&self) -> Value {
        Value::Object(self.payload.clone())
    }

    /// The text of [`Event::to_json`] (what its `to_string` prints), written without building
    /// the JSON tree: the records of dead letters and of the `blocked` and `duplicates` outputs.
    pub fn json_text(&self, time_field: &str, type_field: &str) -> String {
        let time = Value::Time(self.time);
        let kind = Value::Str(self.kind.as_str().into());
        let head = std::iter::once((time_field, &time));
        let head = head.chain((!type_field.is_empty()).then_some((type_field, &kind)));
        let fields = head.chain(self.payload.iter().map(|(k, v)| (k.as_str(), v)));
        let mut out = Vec::with_capacity(64 + 24 * self.payload.len());
        crate::value::write_json_object(fields, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// The event as JSON, with the time and type under the given field names (no type when
    /// `type_field` is empty: a context table's rows all have its name as their type).
    pub fn to_json(&self, time_field: &str, type_field: &str) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert(time_field.to_string(), Value::Time(self.time).to_json());
        if !type_field.is_empty() {
            map.insert(type_field.to_string(), self.kind.as_str().into());
        }
        for (k, v) in self.payload.iter() {
            map.insert(k.as_str().to_string(), v.to_json());
        }
        serde_json::Value::Object(map)
    }
}

/// One step of a field path.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Step {
    Field(Sym),
    Index(usize),
}

/// A path into nested data: `user.country`, `tags[0]`, `a.b[2].c`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FieldPath {
    pub steps: Vec<Step>,
    /// Where the first step was found last: payloads of one event type list their fields in
    /// the same order, so a lookup usually finds it there without scanning.
    #[serde(skip)]
    pub hint: Hint,
}

/// A position remembered by a lookup. It is not part of a value: every path equals, orders and
/// hashes as if it had none. Each operator holds its own copy of the plan's paths, so workers do
/// not share one (an atomic only so that plans stay `Sync`).
#[derive(Default)]
pub struct Hint(std::sync::atomic::AtomicU32);

impl Hint {
    fn get(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed) as usize
    }

    fn set(&self, at: usize) {
        self.0.store(at as u32, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Clone for Hint {
    fn clone(&self) -> Hint {
        Hint(std::sync::atomic::AtomicU32::new(self.get() as u32))
    }
}

impl PartialEq for Hint {
    fn eq(&self, _: &Hint) -> bool {
        true
    }
}

impl Eq for Hint {}

impl PartialOrd for Hint {
    fn partial_cmp(&self, other: &Hint) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Hint {
    fn cmp(&self, _: &Hint) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl std::hash::Hash for Hint {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

/// Why a field path does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid field path `{path}` at column {column}: {message}")]
pub struct PathError {
    pub path: String,
    pub column: usize,
    pub message: String,
}

impl FieldPath {
    /// Parses `a.b[0].c`. Names are letters, digits, `_`, `-` and `$`; a name with other
    /// characters can be quoted with backticks: `` a.`odd name` ``.
    pub fn parse(text: &str) -> Result<FieldPath, PathError> {
        let err = |column: usize, message: &str| PathError {
            path: text.to_string(),
            column: column + 1,
            message: message.to_string(),
        };
        let bytes = text.as_bytes();
        let mut steps = Vec::new();
        let mut i = 0;
        let mut expect_name = true;
        while i < bytes.len() {
            if expect_name {
                if bytes[i] == b'`' {
                    let end = text[i + 1..].find('`').ok_or_else(|| err(i, "unterminated backtick"))?;
                    steps.push(Step::Field(Sym::new(&text[i + 1..i + 1 + end])));
                    i += end + 2;
                } else {
                    let start = i;
                    while i < bytes.len() && is_name_byte(bytes[i]) {
                        i += 1;
                    }
                    if start == i {
                        return Err(err(i, "expected a field name"));
                    }
                    steps.push(Step::Field(Sym::new(&text[start..i])));
                }
                expect_name = false;
            } else {
                match bytes[i] {
                    b'.' => {
                        expect_name = true;
                        i += 1;
                    }
                    b'[' => {
                        let end = text[i..].find(']').ok_or_else(|| err(i, "missing `]`"))?;
                        let index: usize = text[i + 1..i + end]
                            .trim()
                            .parse()
                            .map_err(|_| err(i + 1, "list index must be a non-negative integer"))?;
                        steps.push(Step::Index(index));
                        i += end + 1;
                    }
                    _ => return Err(err(i, "expected `.` or `[` after a field")),
                }
            }
        }
        if expect_name {
            return Err(err(text.len(), "path ends where a field name was expected"));
        }
        Ok(FieldPath {
            steps,
            hint: Hint::default(),
        })
    }

    /// A path of one field.
    pub fn field(name: &str) -> FieldPath {
        FieldPath {
            steps: vec![Step::Field(Sym::new(name))],
            hint: Hint::default(),
        }
    }

    /// The first step's name (every parsed path starts with a field).
    pub fn head(&self) -> Option<Sym> {
        match self.steps.first() {
            Some(Step::Field(s)) => Some(*s),
            _ => None,
        }
    }

    /// Resolves the path against payload fields; `None` when any step is missing.
    pub fn get<'a>(&self, fields: &'a [(Sym, Value)]) -> Option<&'a Value> {
        let (first, rest) = self.steps.split_first()?;
        let mut current = match first {
            Step::Field(name) => match fields.get(self.hint.get()) {
                Some((k, v)) if k == name => v,
                _ => {
                    let at = fields.iter().position(|(k, _)| k == name)?;
                    self.hint.set(at);
                    &fields[at].1
                }
            },
            Step::Index(_) => return None,
        };
        for step in rest {
            current = match (step, current) {
                (Step::Field(name), Value::Object(f)) => lookup(f, *name)?,
                (Step::Index(i), Value::List(items)) => items.get(*i)?,
                _ => return None,
            };
        }
        Some(current)
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'$'
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            match step {
                Step::Field(name) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    if name.as_str().bytes().all(is_name_byte) && !name.as_str().is_empty() {
                        f.write_str(name.as_str())?;
                    } else {
                        write!(f, "`{name}`")?;
                    }
                }
                Step::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_fields_equals_one_with_field_per_field() {
        // Names before, between, equal to and after the payload's, in any order, some twice.
        let names = ["a", "c", "e", "b", "f", "0", "c"];
        let base = Event::new(
            7,
            Sym::new("k"),
            vec![
                (Sym::new("b"), Value::Int(1)),
                (Sym::new("d"), Value::Int(2)),
                (Sym::new("e"), Value::Int(3)),
            ],
        );
        for mask in 0u32..(1 << names.len()) {
            let set: Vec<(Sym, Value)> = (0..names.len())
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| (Sym::new(names[i]), Value::Int(10 + i as i64)))
                .collect();
            let one_by_one = set.iter().fold(base.clone(), |e, (k, v)| e.with_field(*k, v.clone()));
            assert_eq!(base.clone().with_fields(set.clone()), one_by_one, "{set:?}");
            // An event that alone holds its payload has its values moved, not cloned: the same result.
            let unique = Event::new(base.time, base.kind, base.payload.to_vec());
            assert_eq!(unique.with_fields(set.clone()), one_by_one, "{set:?}");
        }
        // A shared payload is left as it was.
        assert_eq!(base.payload[0], (Sym::new("b"), Value::Int(1)));
    }

    #[test]
    fn a_path_finds_its_field_wherever_the_last_payload_had_it() {
        let path = FieldPath::parse("b").unwrap();
        let f = |names: &[&str]| -> Vec<(Sym, Value)> {
            (names.iter().enumerate())
                .map(|(i, n)| (Sym::new(n), Value::Int(i as i64)))
                .collect()
        };
        // Field `b` at 1, then at 3 (the hint points at `c`), then at 0, then absent and in a
        // payload shorter than the hint, then back at 1.
        for (names, want) in [
            (&["a", "b", "c"][..], Some(1)),
            (&["a", "aa", "c", "b"][..], Some(3)),
            (&["b"][..], Some(0)),
            (&["a", "c", "d", "e", "f"][..], None),
            (&[][..], None),
            (&["a", "b"][..], Some(1)),
            (&["a", "b"][..], Some(1)),
        ] {
            assert_eq!(path.get(&f(names)), want.map(Value::Int).as_ref(), "{names:?}");
        }
        // The hint is not part of the path's value.
        assert_eq!(path, FieldPath::parse("b").unwrap());
        assert_eq!(
            crate::value::stable_hash(&path),
            crate::value::stable_hash(&FieldPath::field("b"))
        );
    }

    #[test]
    fn paths_parse_and_print() {
        for text in ["a", "user.country", "tags[0]", "a.b[2].c", "a.`odd name`"] {
            let p = FieldPath::parse(text).unwrap();
            assert_eq!(p.to_string(), text);
        }
        for bad in ["", "a.", ".a", "a[x]", "a[1", "a b", "a..b"] {
            assert!(FieldPath::parse(bad).is_err(), "{bad}");
        }
        let e = FieldPath::parse("a.b c").unwrap_err();
        assert_eq!(e.column, 4);
    }

    #[test]
    fn paths_resolve_nested_values() {
        let json = r#"{"user":{"country":"DE"},"tags":["x","y"]}"#;
        let Value::Object(fields) = Value::from_json(serde_json::from_str(json).unwrap()) else {
            panic!()
        };
        let get = |p: &str| FieldPath::parse(p).unwrap().get(&fields).cloned();
        assert_eq!(get("user.country"), Some(Value::str("DE")));
        assert_eq!(get("tags[1]"), Some(Value::str("y")));
        assert_eq!(get("tags[2]"), None);
        assert_eq!(get("user.missing"), None);
        assert_eq!(get("tags.x"), None);
    }
}

/// Where a value comes from in an event: its time, its type, or a payload path.
///
/// Specs name all three as field paths; the plan binds the source's time and type field names
/// to [`Accessor::Time`] and [`Accessor::Type`].
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Accessor {
    Time,
    Type,
    Payload(FieldPath),
}

impl Accessor {
    /// Binds a path: a one-step path naming the time or type field becomes `Time` or `Type`.
    pub fn bind(path: FieldPath, time_field: &str, type_field: &str) -> Accessor {
        if path.steps.len() == 1 {
            if let Some(head) = path.head() {
                if head.as_str() == time_field {
                    return Accessor::Time;
                }
                if head.as_str() == type_field {
                    return Accessor::Type;
                }
            }
        }
        Accessor::Payload(path)
    }

    /// Whether the value this accessor reads from `event` is `value` (`get(event) ==
    /// Some(value)`), without making it.
    pub fn is(&self, event: &Event, value: &Value) -> bool {
        match (self, value) {
            (Accessor::Time, Value::Time(t)) => *t == event.time,
            (Accessor::Type, Value::Str(s)) => **s == *event.kind.as_str(),
            (Accessor::Time | Accessor::Type, _) => false,
            (Accessor::Payload(path), _) => path.get(&event.payload) == Some(value),
        }
    }

    /// The value this accessor reads from `event`; `None` when a payload path is missing.
    pub fn get(&self, event: &Event) -> Option<Value> {
        match self {
            Accessor::Time => Some(Value::Time(event.time)),
            Accessor::Type => Some(Value::Str(event.kind.as_str().into())),
            Accessor::Payload(path) => path.get(&event.payload).cloned(),
        }
    }
}

impl fmt::Debug for Accessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Accessor::Time => f.write_str("$time"),
            Accessor::Type => f.write_str("$type"),
            Accessor::Payload(p) => write!(f, "{p}"),
        }
    }
}

/// Calls `f` with each field of `payload`, in order: the values are moved out when this is the
/// payload's only reference (an event rebuilt by the stage that owns it), and cloned otherwise,
/// so a rebuild does not touch every string's reference count twice.
fn for_each_field(mut payload: Arc<[(Sym, Value)]>, mut f: impl FnMut(Sym, Value)) {
    match Arc::get_mut(&mut payload) {
        Some(fields) => {
            for (k, v) in fields.iter_mut() {
                f(*k, std::mem::replace(v, Value::Null));
            }
        }
        None => {
            for (k, v) in payload.iter() {
                f(*k, v.clone());
            }
        }
    }
}
