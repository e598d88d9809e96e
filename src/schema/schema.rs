//! The schema model: per-path kinds, optionality, nullability and defaults, plus its tree view.
//!
//! A [`Schema`] maps normalized paths (`path.rs`) to [`FieldSchema`]s. It is *well formed*
//! ([`Schema::validate`]) when every path parses, the parent of each `.name` step has kind
//! `object` and the parent of each `[]` step kind `list`, no field lists `null` among its kinds
//! (`nullable` says that), and list elements are not `required`. An empty kind set means "any
//! value" when not nullable and "always null" when nullable.
//!
//! `required` is relative to the enclosing object: `a.b` required means every object at `a`
//! has `b`, not that `a` itself is present. JSON Schema conversion is in `json_schema.rs`, tables
//! in `table.rs`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::kind::{describe, Kind};
use super::path::{self, PathError, Seg};

/// One path of a schema.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldSchema {
    /// Allowed non-null kinds; empty means any.
    pub kinds: BTreeSet<Kind>,
    /// Every object at the parent has this field.
    pub required: bool,
    /// Null is allowed.
    pub nullable: bool,
    /// Value used for a missing field.
    pub default: Option<serde_json::Value>,
}

impl FieldSchema {
    /// A non-nullable, optional field of the given kinds.
    pub fn of(kinds: impl IntoIterator<Item = Kind>) -> FieldSchema {
        FieldSchema {
            kinds: kinds.into_iter().collect(),
            ..FieldSchema::default()
        }
    }

    /// `int`, `int|string?`, `null`, `any`.
    pub fn type_name(&self) -> String {
        describe(&self.kinds, self.nullable)
    }

    /// Whether a missing field can be filled in: optional, or with a default.
    pub fn may_be_missing(&self) -> bool {
        !self.required || self.default.is_some()
    }
}

/// A schema of event payloads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    pub fields: BTreeMap<String, FieldSchema>,
}

/// Why a schema is not well formed, or a JSON Schema document cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("`{path}`: its parent `{parent}` is not in the schema")]
    Orphan { path: String, parent: String },
    #[error("`{path}`: its parent `{parent}` must have kind {needs}")]
    ParentKind { path: String, parent: String, needs: Kind },
    #[error("`{path}`: `null` is not a kind; set `nullable` instead")]
    NullKind { path: String },
    #[error("`{path}`: list elements cannot be required")]
    RequiredItems { path: String },
    /// A JSON Schema document that cannot be read, at a JSON pointer.
    #[error("JSON Schema {pointer}: {message}")]
    Document { pointer: String, message: String },
}

impl Schema {
    /// Builds a schema from `(path, field)` pairs.
    pub fn from_fields<S: Into<String>>(fields: impl IntoIterator<Item = (S, FieldSchema)>) -> Schema {
        Schema {
            fields: fields.into_iter().map(|(p, f)| (p.into(), f)).collect(),
        }
    }

    /// Checks that the schema is well formed (see the module doc).
    pub fn validate(&self) -> Result<(), SchemaError> {
        for (p, f) in &self.fields {
            if f.kinds.contains(&Kind::Null) {
                return Err(SchemaError::NullKind { path: p.clone() });
            }
            let Some((parent, last)) = path::split_last(p)? else {
                continue;
            };
            if last == Seg::Items && f.required {
                return Err(SchemaError::RequiredItems { path: p.clone() });
            }
            if parent.is_empty() {
                continue;
            }
            let needs = if last == Seg::Items { Kind::List } else { Kind::Object };
            match self.fields.get(&parent) {
                None => {
                    return Err(SchemaError::Orphan {
                        path: p.clone(),
                        parent,
                    })
                }
                Some(pf) if !pf.kinds.contains(&needs) => {
                    return Err(SchemaError::ParentKind {
                        path: p.clone(),
                        parent,
                        needs,
                    })
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The schema as a tree rooted at the payload.
    pub fn tree(&self) -> Result<Node, SchemaError> {
        let mut root = Node::default();
        for (p, f) in &self.fields {
            let mut node = &mut root;
            let mut at = String::new();
            for seg in path::parse(p)? {
                node = match seg {
                    Seg::Field(name) => {
                        at = path::child(&at, &name);
                        node.fields.entry(name).or_insert_with(|| Node::at(&at))
                    }
                    Seg::Items => {
                        at = path::items(&at);
                        node.items.get_or_insert_with(|| Box::new(Node::at(&at)))
                    }
                };
            }
            node.field = Some(f.clone());
        }
        Ok(root)
    }
}

/// A node of [`Schema::tree`]: the field at `path` (absent for the root and for parents the
/// schema does not list) with its object fields by name and its list elements.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Node {
    pub path: String,
    pub field: Option<FieldSchema>,
    pub fields: BTreeMap<String, Node>,
    pub items: Option<Box<Node>>,
}

impl Node {
    fn at(path: &str) -> Node {
        Node {
            path: path.to_string(),
            ..Node::default()
        }
    }

    /// The node's kinds, plus `object` and `list` when it has fields or elements (which a
    /// well-formed schema already says).
    pub fn kinds(&self) -> BTreeSet<Kind> {
        let mut kinds = self.field.as_ref().map(|f| f.kinds.clone()).unwrap_or_default();
        if !self.fields.is_empty() {
            kinds.insert(Kind::Object);
        }
        if self.items.is_some() {
            kinds.insert(Kind::List);
        }
        kinds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(kinds: &[Kind]) -> FieldSchema {
        FieldSchema::of(kinds.iter().copied())
    }

    #[test]
    fn validation_names_the_path() {
        let ok = Schema::from_fields([("a", f(&[Kind::Object])), ("a.b", f(&[Kind::List])), ("a.b[]", f(&[]))]);
        assert_eq!(ok.validate(), Ok(()));
        let orphan = Schema::from_fields([("a.b", f(&[Kind::Int]))]);
        assert!(matches!(orphan.validate(), Err(SchemaError::Orphan { path, .. }) if path == "a.b"));
        let kind = Schema::from_fields([("a", f(&[Kind::Int])), ("a[]", f(&[Kind::Int]))]);
        assert!(matches!(
            kind.validate(),
            Err(SchemaError::ParentKind { needs: Kind::List, .. })
        ));
        let null = Schema::from_fields([("a", f(&[Kind::Null]))]);
        assert!(matches!(null.validate(), Err(SchemaError::NullKind { .. })));
        let mut items = f(&[Kind::Int]);
        items.required = true;
        let req = Schema::from_fields([("a", f(&[Kind::List])), ("a[]", items)]);
        assert!(matches!(req.validate(), Err(SchemaError::RequiredItems { .. })));
        let bad = Schema::from_fields([("a b", f(&[]))]);
        assert!(matches!(bad.validate(), Err(SchemaError::Path(_))));
    }

    #[test]
    fn tree_nests_paths() {
        let s = Schema::from_fields([("a.b[].c", f(&[Kind::Int])), ("x", f(&[Kind::Bool]))]);
        let t = s.tree().unwrap();
        let c = &t.fields["a"].fields["b"].items.as_ref().unwrap().fields["c"];
        assert_eq!(c.path, "a.b[].c");
        assert_eq!(c.field, Some(f(&[Kind::Int])));
        assert_eq!(t.fields["a"].field, None, "implicit parent");
        assert_eq!(t.fields["a"].kinds(), BTreeSet::from([Kind::Object]));
    }
}
