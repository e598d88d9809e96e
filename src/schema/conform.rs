//! Conforming payloads to a schema: fill in missing fields, coerce values, keep or drop extras.
//!
//! For each object the schema describes (the payload itself and nested objects, including
//! objects inside lists):
//! - a missing field takes its default (itself conformed), else null when the field is optional;
//!   a missing required field without default is an error;
//! - an explicit null is kept when the field is nullable, of no kind, or optional (an absent and
//!   a null optional field mean the same); otherwise it takes the default or is an error. A null
//!   list element is kept only when the elements are nullable or of no kind;
//! - a value of an allowed kind is kept (objects and lists are conformed recursively); any other
//!   value is coerced to the first allowed kind, in the order int, float, timestamp, string,
//!   that accepts it:
//!   - int ← string of an integer (`"42"`);
//!   - float ← int, or string of a finite number (`"4.5"`);
//!   - timestamp ← int or float (epoch, scaled by [`ConformPolicy::time_unit_ms`], default ms),
//!     or RFC 3339 string;
//!   - string ← bool, int, float or timestamp (its text; inference widens mixed scalars to string);
//!
//!   nothing else is coerced (no float → int, no string → bool); a value that cannot be coerced is
//!   an error naming its concrete path (`items[2].id`), the expected type and the value;
//! - fields the schema does not list are kept or dropped by [`ConformPolicy::extra`].
//!
//! A field of no kind and not nullable accepts anything as is. Fields are returned sorted by
//! name, as [`crate::event::Event`] keeps them.

use std::collections::BTreeSet;

use rustc_hash::FxHashMap;

use crate::source::arrow_read::time_ms;
use crate::value::{format_time, parse_time, sort_fields, Sym, Value};

use super::kind::{describe, Kind};
use super::path::quote;
use super::schema::{FieldSchema, Node, Schema, SchemaError};

/// What to do with fields the schema does not list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Extra {
    #[default]
    Keep,
    Drop,
}

/// How to conform.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConformPolicy {
    pub extra: Extra,
    /// Milliseconds per unit of a number coerced to a timestamp (1 for epoch milliseconds).
    pub time_unit_ms: f64,
}

impl Default for ConformPolicy {
    fn default() -> ConformPolicy {
        ConformPolicy {
            extra: Extra::Keep,
            time_unit_ms: 1.0,
        }
    }
}

/// A value that does not fit the schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{path}`: expected {expected}, got {value}")]
pub struct ConformError {
    /// Concrete path, with list indices: `items[2].id`.
    pub path: String,
    pub expected: String,
    /// The value as JSON (shortened), or `nothing` for a missing field.
    pub value: String,
}

/// A schema prepared for conforming many payloads.
#[derive(Debug, Clone)]
pub struct Conformer {
    root: Prepared,
    policy: ConformPolicy,
}

/// A [`Node`] prepared for conforming: kinds as a set and a bit mask, defaults as values, child
/// fields as symbols in name order.
#[derive(Debug, Clone)]
struct Prepared {
    /// [`Node::kinds`].
    kinds: BTreeSet<Kind>,
    /// `kinds` as bits (`1 << kind`).
    mask: u16,
    /// The field's description for a missing required field (`any` for unlisted parents).
    type_name: Option<String>,
    nullable: bool,
    required: bool,
    /// The default, converted from JSON.
    default: Option<Value>,
    /// Child fields, sorted by name.
    fields: Vec<(Sym, Prepared)>,
    /// Indices into `fields` by name.
    index: FxHashMap<Sym, usize>,
    items: Option<Box<Prepared>>,
}

impl Prepared {
    fn new(node: &Node) -> Prepared {
        let kinds = node.kinds();
        let mask = kinds.iter().fold(0u16, |m, k| m | bit(*k));
        let (nullable, required, default) = match &node.field {
            Some(f) => (f.nullable, f.required, f.default.clone().map(Value::from_json)),
            // A parent the schema does not list: an optional object or list.
            None => (true, false, None),
        };
        let fields: Vec<(Sym, Prepared)> = node
            .fields
            .iter()
            .map(|(name, child)| (Sym::new(name), Prepared::new(child)))
            .collect();
        let index = fields.iter().enumerate().map(|(i, (name, _))| (*name, i)).collect();
        Prepared {
            kinds,
            mask,
            type_name: node.field.as_ref().map(FieldSchema::type_name),
            nullable,
            required,
            default,
            fields,
            index,
            items: node.items.as_deref().map(|n| Box::new(Prepared::new(n))),
        }
    }
}

fn bit(k: Kind) -> u16 {
    1 << (k as u16)
}

/// A concrete path, rendered only for errors.
#[derive(Clone, Copy)]
enum At<'a> {
    Root,
    Field(&'a At<'a>, &'a str),
    Index(&'a At<'a>, usize),
}

impl At<'_> {
    fn render(&self) -> String {
        match self {
            At::Root => String::new(),
            At::Field(parent, name) => child_path(&parent.render(), name),
            At::Index(parent, i) => format!("{}[{i}]", parent.render()),
        }
    }
}

/// Which of an object's schema fields were seen.
enum Seen {
    Small(u64),
    Large(Vec<bool>),
}

impl Seen {
    fn new(n: usize) -> Seen {
        if n <= 64 {
            Seen::Small(0)
        } else {
            Seen::Large(vec![false; n])
        }
    }
    fn insert(&mut self, i: usize) {
        match self {
            Seen::Small(m) => *m |= 1 << i,
            Seen::Large(v) => v[i] = true,
        }
    }
    fn contains(&self, i: usize) -> bool {
        match self {
            Seen::Small(m) => *m & (1 << i) != 0,
            Seen::Large(v) => v[i],
        }
    }
}

/// Conforms one payload (see the module doc).
pub fn conform(
    payload: &[(Sym, Value)],
    schema: &Schema,
    policy: ConformPolicy,
) -> Result<Vec<(Sym, Value)>, ConformError> {
    let conformer = Conformer::new(schema, policy).map_err(|e| ConformError {
        path: String::new(),
        expected: "a well-formed schema".into(),
        value: e.to_string(),
    })?;
    conformer.conform(payload)
}

fn show(v: &Value) -> String {
    let mut s = v.json_text();
    if s.len() > 80 {
        let cut = (0..=77).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

fn child_path(at: &str, name: &str) -> String {
    if at.is_empty() {
        quote(name).into_owned()
    } else {
        format!("{at}.{}", quote(name))
    }
}

/// The first coercion of `v` into one of `kinds` (in the module doc's order).
fn coerce(v: &Value, kinds: &BTreeSet<Kind>, unit_ms: f64) -> Option<Value> {
    for target in [Kind::Int, Kind::Float, Kind::Timestamp, Kind::String] {
        if !kinds.contains(&target) {
            continue;
        }
        let got = match (target, v) {
            (Kind::Int, Value::Str(s)) => s.trim().parse::<i64>().ok().map(Value::Int),
            (Kind::Float, Value::Int(i)) => Some(Value::float(*i as f64)),
            (Kind::Float, Value::Str(s)) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()).map(Value::float),
            (Kind::Timestamp, Value::Int(_) | Value::Float(_)) => time_ms(v.clone(), unit_ms).ok().map(Value::Time),
            (Kind::Timestamp, Value::Str(s)) => parse_time(s).map(Value::Time),
            (Kind::String, Value::Bool(_) | Value::Int(_) | Value::Float(_)) => Some(Value::str(&v.json_text())),
            (Kind::String, Value::Time(ms)) => Some(Value::str(&format_time(*ms))),
            _ => None,
        };
        if got.is_some() {
            return got;
        }
    }
    None
}

impl Conformer {
    pub fn new(schema: &Schema, policy: ConformPolicy) -> Result<Conformer, SchemaError> {
        Ok(Conformer {
            root: Prepared::new(&schema.tree()?),
            policy,
        })
    }

    /// Conforms one payload (see the module doc).
    pub fn conform(&self, payload: &[(Sym, Value)]) -> Result<Vec<(Sym, Value)>, ConformError> {
        Ok(self
            .object(payload, &self.root, &At::Root)?
            .unwrap_or_else(|| payload.to_vec()))
    }

    /// The conformed fields, or `None` when they are `fields` as they are (sorted, no repeated
    /// name, nothing changed, added or dropped).
    fn object(
        &self,
        fields: &[(Sym, Value)],
        node: &Prepared,
        at: &At<'_>,
    ) -> Result<Option<Vec<(Sym, Value)>>, ConformError> {
        let sorted = fields.windows(2).all(|w| w[0].0 < w[1].0);
        // Built on the first difference from `fields`.
        let mut out: Option<Vec<(Sym, Value)>> = None;
        let capacity = fields.len().max(node.fields.len());
        if !sorted {
            out = Some(Vec::with_capacity(capacity));
        }
        let mut seen = Seen::new(node.fields.len());
        for (i, (name, value)) in fields.iter().enumerate() {
            let conformed = match node.index.get(name) {
                Some(&c) => {
                    seen.insert(c);
                    let child = &node.fields[c].1;
                    match self.value(value, child, &At::Field(at, name.as_str()), false)? {
                        Some(v) => Some(v),
                        None => {
                            if let Some(out) = &mut out {
                                out.push((*name, value.clone()));
                            }
                            continue;
                        }
                    }
                }
                None if self.policy.extra == Extra::Keep => {
                    if let Some(out) = &mut out {
                        out.push((*name, value.clone()));
                    }
                    continue;
                }
                None => None,
            };
            let out = out.get_or_insert_with(|| {
                let mut v = Vec::with_capacity(capacity);
                v.extend_from_slice(&fields[..i]);
                v
            });
            if let Some(v) = conformed {
                out.push((*name, v));
            }
        }
        let mut added: Vec<(Sym, Value)> = Vec::new();
        for (c, (name, child)) in node.fields.iter().enumerate() {
            if seen.contains(c) {
                continue;
            }
            let value = match &child.default {
                Some(default) => {
                    let p = At::Field(at, name.as_str());
                    self.value(default, child, &p, false)?
                        .unwrap_or_else(|| default.clone())
                }
                None if child.type_name.is_none() || !child.required => Value::Null,
                None => {
                    return Err(ConformError {
                        path: At::Field(at, name.as_str()).render(),
                        expected: format!("required {}", child.type_name.as_deref().unwrap_or("any")),
                        value: "nothing".into(),
                    })
                }
            };
            added.push((*name, value));
        }
        if !sorted {
            let mut out = out.expect("built for unsorted fields");
            out.extend(added);
            return Ok(Some(sort_fields(&mut out)));
        }
        if added.is_empty() {
            return Ok(out);
        }
        // Both sides are sorted, with no name in common: merge them.
        let kept = out.unwrap_or_else(|| fields.to_vec());
        let mut merged = Vec::with_capacity(kept.len() + added.len());
        let mut added = added.into_iter().peekable();
        for field in kept {
            while let Some(a) = added.next_if(|a| a.0 < field.0) {
                merged.push(a);
            }
            merged.push(field);
        }
        merged.extend(added);
        Ok(Some(merged))
    }

    /// The conformed value, or `None` when it is `v` as it is.
    fn value(&self, v: &Value, node: &Prepared, at: &At<'_>, element: bool) -> Result<Option<Value>, ConformError> {
        let kind = Kind::of(v);
        // Fast path: a scalar of a kind the field allows is kept as it is.
        if node.mask & bit(kind) != 0 && !matches!(v, Value::Null | Value::Object(_) | Value::List(_)) {
            return Ok(None);
        }
        let (kinds, nullable, required) = (&node.kinds, node.nullable, node.required);
        let any = kinds.is_empty() && !nullable;
        let error = || ConformError {
            path: at.render(),
            expected: describe(kinds, nullable),
            value: show(v),
        };
        if any {
            return Ok(None);
        }
        if v.is_null() {
            if nullable || (!element && !required) {
                return Ok(None);
            }
            return match &node.default {
                Some(d) if !d.is_null() => Ok(Some(self.value(d, node, at, element)?.unwrap_or_else(|| d.clone()))),
                _ => Err(error()),
            };
        }
        if node.mask & bit(kind) == 0 {
            return coerce(v, kinds, self.policy.time_unit_ms).ok_or_else(error).map(Some);
        }
        Ok(match v {
            Value::Object(fields) => self.object(fields, node, at)?.map(|f| Value::Object(f.into())),
            Value::List(elements) => match &node.items {
                Some(items) => {
                    let mut out: Option<Vec<Value>> = None;
                    for (i, e) in elements.iter().enumerate() {
                        match self.value(e, items, &At::Index(at, i), true)? {
                            Some(c) => out
                                .get_or_insert_with(|| {
                                    let mut o = Vec::with_capacity(elements.len());
                                    o.extend_from_slice(&elements[..i]);
                                    o
                                })
                                .push(c),
                            None => {
                                if let Some(out) = &mut out {
                                    out.push(e.clone());
                                }
                            }
                        }
                    }
                    out.map(|o| Value::List(o.into()))
                }
                None => None,
            },
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::schema::FieldSchema;
    use crate::schema::testing::{json_payload, payloads};
    use proptest::prelude::*;

    fn schema() -> Schema {
        let req = |k| FieldSchema {
            required: true,
            ..FieldSchema::of([k])
        };
        let mut level = FieldSchema::of([Kind::Int]);
        level.default = Some(1.into());
        let mut note = FieldSchema::of([Kind::String]);
        note.nullable = true;
        Schema::from_fields([
            ("id", req(Kind::Int)),
            ("score", FieldSchema::of([Kind::Float])),
            ("at", FieldSchema::of([Kind::Timestamp])),
            ("level", level),
            ("note", note),
            ("user", req(Kind::Object)),
            ("user.name", req(Kind::String)),
            ("items", FieldSchema::of([Kind::List])),
            ("items[]", FieldSchema::of([Kind::Object])),
            ("items[].qty", req(Kind::Int)),
        ])
    }

    fn run(text: &str, extra: Extra) -> Result<serde_json::Value, ConformError> {
        let policy = ConformPolicy {
            extra,
            ..ConformPolicy::default()
        };
        let out = conform(&json_payload(text), &schema(), policy)?;
        Ok(Value::object(out).to_json())
    }

    #[test]
    fn fills_coerces_and_filters() {
        let got = run(
            r#"{"id":"42","score":3,"at":1700000000000,"user":{"name":7,"x":1},"items":[{"qty":"2"}],"z":true}"#,
            Extra::Keep,
        )
        .unwrap();
        assert_eq!(
            got,
            serde_json::json!({"id": 42, "score": 3.0, "at": "2023-11-14T22:13:20.000Z", "level": 1,
                "note": null, "user": {"name": "7", "x": 1}, "items": [{"qty": 2}], "z": true})
        );
        let got = run(
            r#"{"id":1,"at":"2024-01-02T03:04:05Z","score":"4.5","user":{"name":"a","x":1},"z":1}"#,
            Extra::Drop,
        )
        .unwrap();
        assert_eq!(
            got,
            serde_json::json!({"id": 1, "score": 4.5, "at": "2024-01-02T03:04:05.000Z", "level": 1,
                "note": null, "user": {"name": "a"}, "items": null})
        );
    }

    #[test]
    fn errors_name_the_concrete_path() {
        let e = run(r#"{"user":{"name":"a"}}"#, Extra::Keep).unwrap_err();
        assert_eq!(e.to_string(), "`id`: expected required int, got nothing");
        let e = run(r#"{"id":"4x","user":{"name":"a"}}"#, Extra::Keep).unwrap_err();
        assert_eq!(e.to_string(), r#"`id`: expected int, got "4x""#);
        let e = run(
            r#"{"id":1,"user":{"name":"a"},"items":[{"qty":1},{"qty":1.5}]}"#,
            Extra::Keep,
        )
        .unwrap_err();
        assert_eq!(e.path, "items[1].qty");
        let e = run(r#"{"id":1,"user":{"name":"a"},"items":[{"qty":1},null]}"#, Extra::Keep).unwrap_err();
        assert_eq!(e.path, "items[1]");
        let e = run(r#"{"id":1,"user":null}"#, Extra::Keep).unwrap_err();
        assert_eq!((e.path.as_str(), e.value.as_str()), ("user", "null"));
        let e = run(r#"{"id":1,"user":{}}"#, Extra::Keep).unwrap_err();
        assert_eq!(e.path, "user.name");
        let long = format!(r#"{{"id":"{}","user":{{"name":"a"}}}}"#, "é".repeat(100));
        assert!(run(&long, Extra::Keep).unwrap_err().value.ends_with("..."));
        // Empty objects and payloads.
        assert!(conform(&[], &Schema::default(), ConformPolicy::default())
            .unwrap()
            .is_empty());
        assert!(run("{}", Extra::Keep).is_err());
    }

    proptest! {
        /// Every payload conforms to the schema inferred from a sample holding it, and conforming
        /// again changes nothing.
        #[test]
        fn inferred_schemas_accept_their_sample(sample in payloads()) {
            let schema = sample.inferred().schema();
            for p in &sample.0 {
                let once = conform(p, &schema, ConformPolicy::default());
                prop_assert!(once.is_ok(), "{:?} on {:?}: {:?}", schema, p, once);
                let once = once.unwrap();
                prop_assert_eq!(conform(&once, &schema, ConformPolicy::default()).unwrap(), once);
            }
        }
    }
}
