//! [`Schema`] to and from JSON Schema (draft 2020-12) documents.
//!
//! The payload is the root object: `{"$schema": ..., "type": "object", "properties": {..},
//! "required": [..]}`. Each field maps its kinds to JSON Schema types: `bool` → `boolean`,
//! `int` → `integer`, `float` → `number`, `string` → `string`, `timestamp` → `string` with
//! `format: date-time`, `list` → `array` with `items` (the `x[]` path), `object` → `object` with
//! nested `properties` and `required`. A nullable field adds `null` to its types; a field of no
//! kind is `{}` (any) or `{"type": "null"}` (always null). A field of several kinds is a `oneOf`
//! with one branch per kind (plus `{"type": "null"}` when nullable). `default` is kept as is.
//!
//! Reading accepts what writing produces, plus `anyOf` for `oneOf`, `properties` or `items`
//! without a `type` (an object or a list), and `true` for `{}`. Other keywords (`title`,
//! `description`, `additionalProperties`, `x-sluice`, ...) are ignored. Writing then reading a
//! well-formed schema gives it back unchanged.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value as Json};

use super::kind::Kind;
use super::path;
use super::schema::{FieldSchema, Node, Schema, SchemaError};

/// The `$schema` URI written on every document.
pub const DRAFT: &str = "https://json-schema.org/draft/2020-12/schema";

fn type_name(k: Kind) -> &'static str {
    match k {
        Kind::Null => "null",
        Kind::Bool => "boolean",
        Kind::Int => "integer",
        Kind::Float => "number",
        Kind::String | Kind::Timestamp => "string",
        Kind::List => "array",
        Kind::Object => "object",
    }
}

impl Schema {
    /// The schema as a JSON Schema document.
    pub fn to_json_schema(&self) -> Json {
        let root = match self.tree() {
            Ok(root) => root,
            // Paths that do not parse cannot be placed in a tree; leave them out.
            Err(_) => Schema {
                fields: self
                    .fields
                    .iter()
                    .filter(|(p, _)| path::parse(p).is_ok())
                    .map(|(p, f)| (p.clone(), f.clone()))
                    .collect(),
            }
            .tree()
            .unwrap_or_default(),
        };
        let mut doc = Map::new();
        doc.insert("$schema".into(), DRAFT.into());
        doc.extend(branch(Kind::Object, &root));
        Json::Object(doc)
    }

    /// Reads a JSON Schema document (see the module doc for what is understood).
    pub fn from_json_schema(doc: &Json) -> Result<Schema, SchemaError> {
        let mut fields = BTreeMap::new();
        let root = read_node(doc, "", "", false, &mut fields)?;
        if !(root.kinds.is_empty() || root.kinds == BTreeSet::from([Kind::Object])) || root.nullable {
            return Err(SchemaError::Document {
                pointer: "/".into(),
                message: format!("the root must be an object, not {}", root.type_name()),
            });
        }
        Ok(Schema { fields })
    }
}

/// One branch: the keywords of one kind of `node`.
fn branch(kind: Kind, node: &Node) -> Map<String, Json> {
    let mut m = Map::new();
    m.insert("type".into(), type_name(kind).into());
    match kind {
        Kind::Timestamp => {
            m.insert("format".into(), "date-time".into());
        }
        Kind::Object if !node.fields.is_empty() => {
            let props: Map<String, Json> = node.fields.iter().map(|(k, n)| (k.clone(), node_json(n))).collect();
            let required: Vec<Json> = node
                .fields
                .iter()
                .filter(|(_, n)| n.field.as_ref().is_some_and(|f| f.required))
                .map(|(k, _)| Json::from(k.as_str()))
                .collect();
            m.insert("properties".into(), Json::Object(props));
            if !required.is_empty() {
                m.insert("required".into(), Json::Array(required));
            }
        }
        Kind::List => {
            if let Some(items) = &node.items {
                m.insert("items".into(), node_json(items));
            }
        }
        _ => {}
    }
    m
}

fn node_json(node: &Node) -> Json {
    let kinds = node.kinds();
    let nullable = node.field.as_ref().is_some_and(|f| f.nullable);
    let mut out = match kinds.len() {
        0 if nullable => Map::from_iter([("type".to_string(), Json::from("null"))]),
        0 => Map::new(),
        1 => {
            let kind = *kinds.first().expect("one kind");
            let mut m = branch(kind, node);
            if nullable {
                m.insert("type".into(), json!([type_name(kind), "null"]));
            }
            m
        }
        _ => {
            let mut branches: Vec<Json> = kinds.iter().map(|k| Json::Object(branch(*k, node))).collect();
            if nullable {
                branches.push(json!({"type": "null"}));
            }
            Map::from_iter([("oneOf".to_string(), Json::Array(branches))])
        }
    };
    if let Some(default) = node.field.as_ref().and_then(|f| f.default.clone()) {
        out.insert("default".into(), default);
    }
    Json::Object(out)
}

fn pointer_escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

fn doc_error(pointer: &str, message: impl Into<String>) -> SchemaError {
    SchemaError::Document {
        pointer: if pointer.is_empty() { "/".into() } else { pointer.into() },
        message: message.into(),
    }
}

/// Reads the node at `at` (JSON pointer `ptr`), inserting it and its descendants into `out`
/// (the root, `at == ""`, is returned but not inserted).
fn read_node(
    doc: &Json,
    at: &str,
    ptr: &str,
    required: bool,
    out: &mut BTreeMap<String, FieldSchema>,
) -> Result<FieldSchema, SchemaError> {
    let empty = Map::new();
    let obj = match doc {
        Json::Bool(true) => &empty,
        Json::Object(m) => m,
        _ => return Err(doc_error(ptr, "expected a schema object")),
    };
    let mut field = FieldSchema {
        required,
        default: obj.get("default").cloned(),
        ..FieldSchema::default()
    };
    let union = obj
        .get("oneOf")
        .map(|u| (u, "oneOf"))
        .or(obj.get("anyOf").map(|u| (u, "anyOf")));
    let mut branches: Vec<(&Map<String, Json>, String)> = vec![(obj, ptr.to_string())];
    if let Some((union, key)) = union {
        let Json::Array(items) = union else {
            return Err(doc_error(&format!("{ptr}/{key}"), "expected an array of schemas"));
        };
        for (i, b) in items.iter().enumerate() {
            let bptr = format!("{ptr}/{key}/{i}");
            match b {
                Json::Object(m) => branches.push((m, bptr)),
                _ => return Err(doc_error(&bptr, "expected a schema object")),
            }
        }
    }
    for (b, bptr) in branches {
        read_branch(b, &bptr, at, &mut field, out)?;
    }
    if !at.is_empty() {
        out.insert(at.to_string(), field.clone());
    }
    Ok(field)
}

fn read_branch(
    b: &Map<String, Json>,
    ptr: &str,
    at: &str,
    field: &mut FieldSchema,
    out: &mut BTreeMap<String, FieldSchema>,
) -> Result<(), SchemaError> {
    let types: Vec<&str> = match b.get("type") {
        None => Vec::new(),
        Some(Json::String(t)) => vec![t.as_str()],
        Some(Json::Array(ts)) => ts
            .iter()
            .map(|t| {
                t.as_str()
                    .ok_or_else(|| doc_error(&format!("{ptr}/type"), "expected type names"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(doc_error(
                &format!("{ptr}/type"),
                "expected a type name or an array of them",
            ))
        }
    };
    let is_time = b.get("format").and_then(Json::as_str) == Some("date-time");
    for t in types {
        let kind = match t {
            "null" => {
                field.nullable = true;
                continue;
            }
            "boolean" => Kind::Bool,
            "integer" => Kind::Int,
            "number" => Kind::Float,
            "string" if is_time => Kind::Timestamp,
            "string" => Kind::String,
            "array" => Kind::List,
            "object" => Kind::Object,
            other => return Err(doc_error(&format!("{ptr}/type"), format!("unknown type `{other}`"))),
        };
        field.kinds.insert(kind);
    }
    if let Some(props) = b.get("properties") {
        let Json::Object(props) = props else {
            return Err(doc_error(&format!("{ptr}/properties"), "expected an object"));
        };
        let required: BTreeSet<&str> = match b.get("required") {
            None => BTreeSet::new(),
            Some(Json::Array(r)) => r
                .iter()
                .map(|n| {
                    n.as_str()
                        .ok_or_else(|| doc_error(&format!("{ptr}/required"), "expected names"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(doc_error(&format!("{ptr}/required"), "expected an array of names")),
        };
        if let Some(missing) = required.iter().find(|r| !props.contains_key(**r)) {
            return Err(doc_error(
                &format!("{ptr}/required"),
                format!("`{missing}` is required but not among the properties"),
            ));
        }
        if !at.is_empty() {
            field.kinds.insert(Kind::Object);
        }
        for (name, sub) in props {
            let sub_ptr = format!("{ptr}/properties/{}", pointer_escape(name));
            read_node(
                sub,
                &path::child(at, name),
                &sub_ptr,
                required.contains(name.as_str()),
                out,
            )?;
        }
    }
    if let Some(items) = b.get("items") {
        if at.is_empty() {
            return Err(doc_error(&format!("{ptr}/items"), "the root must be an object"));
        }
        field.kinds.insert(Kind::List);
        read_node(items, &path::items(at), &format!("{ptr}/items"), false, out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::testing::schema;
    use proptest::prelude::*;

    #[test]
    fn writes_nested_json_schema() {
        let mut id = FieldSchema::of([Kind::Int]);
        id.required = true;
        let mut when = FieldSchema::of([Kind::Timestamp]);
        when.nullable = true;
        let mut score = FieldSchema::of([Kind::Float]);
        score.default = Some(json!(0.5));
        let s = Schema::from_fields([
            ("id", id),
            ("when", when),
            ("score", score),
            ("user", FieldSchema::of([Kind::Object])),
            ("user.tags", FieldSchema::of([Kind::List])),
            ("user.tags[]", FieldSchema::of([Kind::String])),
            ("mixed", FieldSchema::of([Kind::Object, Kind::String])),
            ("mixed.k", FieldSchema::of([Kind::Bool])),
        ]);
        let doc = s.to_json_schema();
        assert_eq!(
            doc,
            json!({
                "$schema": DRAFT,
                "type": "object",
                "required": ["id"],
                "properties": {
                    "id": {"type": "integer"},
                    "when": {"type": ["string", "null"], "format": "date-time"},
                    "score": {"type": "number", "default": 0.5},
                    "user": {"type": "object", "properties": {
                        "tags": {"type": "array", "items": {"type": "string"}}
                    }},
                    "mixed": {"oneOf": [
                        {"type": "string"},
                        {"type": "object", "properties": {"k": {"type": "boolean"}}}
                    ]}
                }
            })
        );
        assert_eq!(Schema::from_json_schema(&doc).unwrap(), s);
    }

    #[test]
    fn reads_foreign_documents_and_names_errors() {
        let doc = json!({"properties": {"a": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                                         "b": {"items": true}, "c": {}}, "title": "x"});
        let s = Schema::from_json_schema(&doc).unwrap();
        assert_eq!(s.fields["a"].kinds, BTreeSet::from([Kind::Int]));
        assert!(s.fields["a"].nullable);
        assert_eq!(s.fields["b"].kinds, BTreeSet::from([Kind::List]));
        assert_eq!(s.fields["b[]"], FieldSchema::default());
        assert_eq!(s.fields["c"], FieldSchema::default());
        let bad = json!({"properties": {"a/b": {"type": "decimal"}}});
        let err = Schema::from_json_schema(&bad).unwrap_err().to_string();
        assert_eq!(err, "JSON Schema /properties/a~1b/type: unknown type `decimal`");
        let bad = json!({"type": "object", "required": ["z"], "properties": {}});
        assert!(Schema::from_json_schema(&bad)
            .unwrap_err()
            .to_string()
            .contains("/required"));
        assert!(Schema::from_json_schema(&json!({"type": "string"})).is_err());
        assert!(Schema::from_json_schema(&json!([1])).is_err());
    }

    proptest! {
        #[test]
        fn json_schema_round_trips(s in schema()) {
            prop_assert_eq!(s.validate(), Ok(()));
            let doc = s.to_json_schema();
            let back = Schema::from_json_schema(&doc).unwrap();
            prop_assert_eq!(&back, &s);
            prop_assert_eq!(back.to_json_schema(), doc);
        }
    }
}
