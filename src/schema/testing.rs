//! Test helpers shared by the schema tests: payloads from JSON, and proptest strategies for
//! random payloads and random well-formed schemas.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::infer::{observe, Inferred};
use super::kind::Kind;
use super::path;
use super::schema::{FieldSchema, Schema};
use crate::value::{Sym, Value};

/// A payload from a JSON object text.
pub fn json_payload(text: &str) -> Vec<(Sym, Value)> {
    match Value::from_json(serde_json::from_str(text).expect("test JSON parses")) {
        Value::Object(fields) => fields.to_vec(),
        other => panic!("not an object: {other}"),
    }
}

/// A schema of top-level fields: (path, kind, required).
pub fn schema_of(fields: &[(&str, Kind, bool)]) -> Schema {
    Schema::from_fields(fields.iter().map(|(p, k, r)| {
        (
            *p,
            FieldSchema {
                required: *r,
                ..FieldSchema::of([*k])
            },
        )
    }))
}

/// A sample of payloads.
#[derive(Debug, Clone)]
pub struct Sample(pub Vec<Vec<(Sym, Value)>>);

impl Sample {
    pub fn inferred(&self) -> Inferred {
        let mut all = Inferred::default();
        for p in &self.0 {
            all.merge(&observe(p).expect("random payloads are shallow"));
        }
        all
    }
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5i64..5).prop_map(Value::Int),
        (-5i32..5).prop_map(|x| Value::float(f64::from(x) + 0.5)),
        "[a-c0-9]{0,2}".prop_map(|s| Value::str(&s)),
        (0i64..3).prop_map(|d| Value::Time(d * 86_400_000)),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(|v| Value::List(v.into())),
            proptest::collection::vec((prop_oneof![Just("a"), Just("b"), Just("c")], inner), 0..3)
                .prop_map(|f| Value::object(f.into_iter().map(|(k, v)| (Sym::new(k), v)).collect())),
        ]
    })
}

/// One payload over the field names `a`..`d`.
pub fn payload() -> impl Strategy<Value = Vec<(Sym, Value)>> {
    proptest::collection::vec((prop_oneof![Just("a"), Just("b"), Just("c"), Just("d")], value()), 0..4)
        .prop_map(|f| crate::value::sort_fields(&mut f.into_iter().map(|(k, v)| (Sym::new(k), v)).collect()))
}

/// Up to six payloads.
pub fn payloads() -> impl Strategy<Value = Sample> {
    proptest::collection::vec(payload(), 0..6).prop_map(Sample)
}

fn kinds() -> impl Strategy<Value = BTreeSet<Kind>> {
    proptest::collection::btree_set(
        prop_oneof![
            Just(Kind::Bool),
            Just(Kind::Int),
            Just(Kind::Float),
            Just(Kind::String),
            Just(Kind::Timestamp),
            Just(Kind::List),
            Just(Kind::Object),
        ],
        0..3,
    )
}

fn default_value() -> impl Strategy<Value = Option<serde_json::Value>> {
    proptest::option::weighted(
        0.2,
        prop_oneof![
            Just(serde_json::Value::Null),
            (-3i64..3).prop_map(serde_json::Value::from),
            "[a-z]{0,3}".prop_map(serde_json::Value::from),
            Just(serde_json::json!({"k": [1, "x"]})),
        ],
    )
}

/// A well-formed schema: every path's parent exists with the kind its step needs, list elements
/// are never required and no field has kind `null`.
pub fn schema() -> impl Strategy<Value = Schema> {
    let node = (kinds(), any::<bool>(), any::<bool>(), default_value());
    proptest::collection::vec((0usize..8, "[a-d]|`x y`", any::<bool>(), node), 0..10).prop_map(|specs| {
        let mut fields: BTreeMap<String, FieldSchema> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        for (parent_pick, name, as_items, (mut kinds, required, nullable, default)) in specs {
            // Attach to the root or an existing path, giving the parent the kind it needs.
            let parent = if order.is_empty() || parent_pick == 0 {
                String::new()
            } else {
                order[parent_pick % order.len()].clone()
            };
            let name = name.trim_matches('`').to_string();
            let p = if as_items && !parent.is_empty() {
                path::items(&parent)
            } else {
                path::child(&parent, &name)
            };
            if fields.contains_key(&p) {
                continue;
            }
            if let Some(pf) = fields.get_mut(&parent) {
                pf.kinds
                    .insert(if path::is_items(&p) { Kind::List } else { Kind::Object });
            }
            kinds.remove(&Kind::Null);
            let required = required && !path::is_items(&p);
            fields.insert(
                p.clone(),
                FieldSchema {
                    kinds,
                    required,
                    nullable,
                    default,
                },
            );
            order.push(p);
        }
        Schema { fields }
    })
}
