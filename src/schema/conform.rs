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

use crate::source::arrow_read::time_ms;
use crate::value::{format_time, parse_time, sort_fields, Sym, Value};

use super::kind::{describe, Kind};
use super::path::quote;
use super::schema::{Node, Schema, SchemaError};

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
    root: Node,
    policy: ConformPolicy,
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
    let mut s = v.to_json().to_string();
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
fn coerce(v: &Value, kinds: &std::collections::BTreeSet<Kind>, unit_ms: f64) -> Option<Value> {
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
            (Kind::String, Value::Bool(_) | Value::Int(_) | Value::Float(_)) => {
                Some(Value::str(&v.to_json().to_string()))
            }
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
            root: schema.tree()?,
            policy,
        })
    }

    /// Conforms one payload (see the module doc).
    pub fn conform(&self, payload: &[(Sym, Value)]) -> Result<Vec<(Sym, Value)>, ConformError> {
        self.object(payload, &self.root, "")
    }

    fn object(&self, fields: &[(Sym, Value)], node: &Node, at: &str) -> Result<Vec<(Sym, Value)>, ConformError> {
        let mut out = Vec::with_capacity(fields.len().max(node.fields.len()));
        let mut seen = std::collections::BTreeSet::new();
        for (name, value) in fields {
            match node.fields.get(name.as_str()) {
                Some(child) => {
                    seen.insert(name.as_str());
                    out.push((*name, self.value(value, child, &child_path(at, name.as_str()), false)?));
                }
                None if self.policy.extra == Extra::Keep => out.push((*name, value.clone())),
                None => {}
            }
        }
        for (name, child) in &node.fields {
            if seen.contains(name.as_str()) {
                continue;
            }
            let p = child_path(at, name);
            let field = child.field.as_ref();
            let value = match field.and_then(|f| f.default.as_ref()) {
                Some(default) => self.value(&Value::from_json(default.clone()), child, &p, false)?,
                None if field.is_none_or(|f| !f.required) => Value::Null,
                None => {
                    return Err(ConformError {
                        path: p,
                        expected: format!(
                            "required {}",
                            child.field.as_ref().map_or("any".into(), |f| f.type_name())
                        ),
                        value: "nothing".into(),
                    })
                }
            };
            out.push((Sym::new(name), value));
        }
        Ok(sort_fields(&mut out))
    }

    fn value(&self, v: &Value, node: &Node, at: &str, element: bool) -> Result<Value, ConformError> {
        // Fast path: a scalar of a kind the field allows is kept as it is.
        if let Some(f) = &node.field {
            if !matches!(v, Value::Null | Value::Object(_) | Value::List(_)) && f.kinds.contains(&Kind::of(v)) {
                return Ok(v.clone());
            }
        }
        let kinds = node.kinds();
        let (nullable, required, default) = match &node.field {
            Some(f) => (f.nullable, f.required, f.default.as_ref()),
            // A parent the schema does not list: an optional object or list.
            None => (true, false, None),
        };
        let any = kinds.is_empty() && !nullable;
        let error = || ConformError {
            path: at.to_string(),
            expected: describe(&kinds, nullable),
            value: show(v),
        };
        if any {
            return Ok(v.clone());
        }
        if v.is_null() {
            if nullable || (!element && !required) {
                return Ok(Value::Null);
            }
            return match default {
                Some(d) if !d.is_null() => self.value(&Value::from_json(d.clone()), node, at, element),
                _ => Err(error()),
            };
        }
        if !kinds.contains(&Kind::of(v)) {
            return coerce(v, &kinds, self.policy.time_unit_ms).ok_or_else(error);
        }
        Ok(match v {
            Value::Object(fields) => Value::Object(self.object(fields, node, at)?.into()),
            Value::List(elements) => match &node.items {
                Some(items) => Value::List(
                    elements
                        .iter()
                        .enumerate()
                        .map(|(i, e)| self.value(e, items, &format!("{at}[{i}]"), true))
                        .collect::<Result<Vec<_>, _>>()?
                        .into(),
                ),
                None => v.clone(),
            },
            _ => v.clone(),
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
