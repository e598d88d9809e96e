//! The fields a stage may name: a tree of field names (objects) and list elements, read from a
//! source's schema and grown by the stages before it (join aliases, derived fields). A pure model:
//! reading schemas from files is `crate::source::schema_probe`, walking a spec `known_fields`.
//!
//! An *open* node accepts any name below it: a value whose shape is unknown (a derived field, a
//! field only ever seen as null, a source with `fields = "open"`). A closed node with no fields
//! and no elements is a scalar: a path that steps into it always reads null.

use std::collections::BTreeMap;

use crate::event::{FieldPath, Step};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldTree {
    /// Any name or index below this node is accepted.
    pub open: bool,
    /// Object fields by name.
    pub fields: BTreeMap<String, FieldTree>,
    /// Elements, when the value may be a list.
    pub items: Option<Box<FieldTree>>,
}

/// Where a path leaves the known fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Miss {
    /// Index of the step that is not known (0: the top-level field).
    pub step: usize,
    pub kind: MissKind,
    /// Field names known where the step failed.
    pub known: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissKind {
    /// A name the object does not have.
    NoField,
    /// A name or index below a value that is neither an object nor a list.
    Scalar,
    /// An index into a value that is not a list.
    NotList,
}

impl FieldTree {
    /// A node that accepts anything below it.
    pub fn open() -> FieldTree {
        FieldTree {
            open: true,
            ..FieldTree::default()
        }
    }

    /// A value with nothing below it.
    pub fn scalar() -> FieldTree {
        FieldTree::default()
    }

    fn is_scalar(&self) -> bool {
        !self.open && self.fields.is_empty() && self.items.is_none()
    }

    /// Adds what `other` knows: the union of names, elements and openness.
    pub fn merge(&mut self, other: FieldTree) {
        self.open |= other.open;
        for (name, tree) in other.fields {
            self.insert(&name, tree);
        }
        match (&mut self.items, other.items) {
            (Some(mine), Some(theirs)) => mine.merge(*theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }

    /// Adds field `name`, merging with what is known of it already.
    pub fn insert(&mut self, name: &str, tree: FieldTree) {
        match self.fields.get_mut(name) {
            Some(known) => known.merge(tree),
            None => {
                self.fields.insert(name.to_string(), tree);
            }
        }
    }

    /// Adds `path` with `tree` at its end, creating the objects and lists on the way.
    pub fn insert_path(&mut self, path: &FieldPath, tree: FieldTree) {
        let mut node = self;
        for step in &path.steps {
            node = match step {
                Step::Field(name) => node.fields.entry(name.as_str().to_string()).or_default(),
                Step::Index(_) => node.items.get_or_insert_with(Box::default),
            };
        }
        node.merge(tree);
    }

    /// The node `path` reaches (`None` when it passes through an open node), or where it leaves
    /// the known fields.
    pub fn resolve(&self, path: &FieldPath) -> Result<Option<&FieldTree>, Miss> {
        let mut node = self;
        for (i, step) in path.steps.iter().enumerate() {
            let next = match step {
                Step::Field(name) => node.fields.get(name.as_str()),
                Step::Index(_) => node.items.as_deref(),
            };
            node = match next {
                Some(n) => n,
                None if node.open => return Ok(None),
                None => {
                    let kind = match step {
                        _ if node.is_scalar() => MissKind::Scalar,
                        Step::Field(_) => MissKind::NoField,
                        Step::Index(_) => MissKind::NotList,
                    };
                    let known = node.fields.keys().cloned().collect();
                    return Err(Miss { step: i, kind, known });
                }
            };
        }
        Ok(Some(node))
    }

    /// The tree of a JSON value: objects by name, list elements merged. A null, an empty
    /// object or an empty list says nothing about its shape, so it is open.
    pub fn of_json(value: &serde_json::Value) -> FieldTree {
        let mut tree = FieldTree::default();
        tree.observe(value);
        tree
    }

    /// Adds what one JSON value shows.
    pub fn observe(&mut self, value: &serde_json::Value) {
        use serde_json::Value as J;
        match value {
            J::Null => self.open = true,
            J::Object(map) if map.is_empty() => self.open = true,
            J::Object(map) => {
                for (k, v) in map {
                    self.fields.entry(k.clone()).or_default().observe(v);
                }
            }
            J::Array(items) => {
                let elements = self.items.get_or_insert_with(Box::default);
                if items.is_empty() {
                    elements.open = true;
                }
                for item in items {
                    elements.observe(item);
                }
            }
            J::Bool(_) | J::Number(_) | J::String(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> FieldPath {
        FieldPath::parse(p).unwrap()
    }

    #[test]
    fn paths_resolve_through_objects_and_lists() {
        let json = serde_json::json!({"user": {"country": "DE", "tags": ["a"]}, "n": 1, "meta": null, "l": []});
        let tree = FieldTree::of_json(&json);
        for ok in [
            "user",
            "user.country",
            "user.tags[0]",
            "n",
            "meta.anything.below",
            "l[3].x",
        ] {
            assert!(tree.resolve(&path(ok)).is_ok(), "{ok}");
        }
        let miss = tree.resolve(&path("user.contry")).unwrap_err();
        assert_eq!((miss.step, miss.kind), (1, MissKind::NoField));
        assert_eq!(miss.known, vec!["country".to_string(), "tags".to_string()]);
        assert_eq!(tree.resolve(&path("n.x")).unwrap_err().kind, MissKind::Scalar);
        assert_eq!(tree.resolve(&path("user[0]")).unwrap_err().kind, MissKind::NotList);
        assert_eq!(tree.resolve(&path("usr")).unwrap_err().step, 0);
    }

    #[test]
    fn merge_is_a_union_and_open_wins() {
        let mut a = FieldTree::of_json(&serde_json::json!({"x": {"a": 1}}));
        a.merge(FieldTree::of_json(&serde_json::json!({"x": {"b": 1}, "y": [1]})));
        for ok in ["x.a", "x.b", "y[0]"] {
            assert!(a.resolve(&path(ok)).is_ok(), "{ok}");
        }
        assert!(a.resolve(&path("x.c")).is_err());
        a.insert("x", FieldTree::open());
        assert!(a.resolve(&path("x.c")).is_ok());
        let mut b = FieldTree::default();
        b.insert_path(&path("d.e[0]"), FieldTree::scalar());
        assert!(b.resolve(&path("d.e[1]")).is_ok());
        assert!(b.resolve(&path("d.f")).is_err());
    }
}
