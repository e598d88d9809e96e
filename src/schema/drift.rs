//! Schema drift: the changes between two schemas and a score of how much changed.
//!
//! [`drift`] compares every path of the union of both schemas. A path only in the new schema is
//! `Added`, only in the old one `Removed`; a path in both may change type, optionality,
//! nullability and default (one [`Change`] each).
//!
//! **Score.** Each path `p` of the union has a weight `w(p)` and an importance `m(p)`:
//!
//! | path | `w(p)` | `m(p)` |
//! |---|---|---|
//! | added, required without default | 1 | 1 |
//! | added, optional or with a default | 0.5 | 0.5 |
//! | removed | 1 | 1 |
//! | in both | `min(1, Σ of its changes)` | 1 |
//!
//! with the changes of a path in both weighing: type changed 1, or 0.5 when it is a widening
//! (every old kind widens to a new kind, e.g. `int → float`, see `kind.rs`); optionality changed
//! 0.5; nullability changed 0.25; default changed 0.25. Then
//!
//! `score = Σ w(p) / Σ m(p)` over the union of paths (0 when both schemas are empty).
//!
//! Properties (tested): identical schemas score 0; schemas with disjoint paths score 1 (every
//! path is added or removed, so `w = m`); the score is in `[0, 1]` (`w ≤ m`); it is monotone:
//! changing one more path never lowers it (a path in both gains weight with unchanged
//! importance, and adding an added or removed path adds `w = m` to both sums, which cannot lower
//! a ratio at most 1).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::kind::{describe, widens_to, Kind};
use super::schema::{FieldSchema, Schema};

/// What changed at one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum ChangeKind {
    Added {
        required: bool,
        has_default: bool,
    },
    Removed {
        required: bool,
    },
    TypeChanged {
        from: BTreeSet<Kind>,
        to: BTreeSet<Kind>,
        widening: bool,
    },
    OptionalityChanged {
        required: bool,
    },
    NullabilityChanged {
        nullable: bool,
    },
    DefaultChanged {
        from: Option<serde_json::Value>,
        to: Option<serde_json::Value>,
    },
}

/// One change at one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub path: String,
    #[serde(flatten)]
    pub kind: ChangeKind,
}

/// The changes from one schema to another and their score in `[0, 1]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    pub score: f64,
    pub changes: Vec<Change>,
}

impl ChangeKind {
    /// This change's weight (see the module doc).
    pub fn weight(&self) -> f64 {
        match self {
            ChangeKind::Added {
                required: true,
                has_default: false,
            } => 1.0,
            ChangeKind::Added { .. } => 0.5,
            ChangeKind::Removed { .. } => 1.0,
            ChangeKind::TypeChanged { widening: true, .. } => 0.5,
            ChangeKind::TypeChanged { .. } => 1.0,
            ChangeKind::OptionalityChanged { .. } => 0.5,
            ChangeKind::NullabilityChanged { .. } | ChangeKind::DefaultChanged { .. } => 0.25,
        }
    }
}

/// Whether going from kinds `from` to kinds `to` loses nothing: `to` is any, or every kind of
/// `from` widens to one of `to`.
pub fn is_widening(from: &BTreeSet<Kind>, to: &BTreeSet<Kind>) -> bool {
    to.is_empty() || (!from.is_empty() && from.iter().all(|f| to.iter().any(|t| widens_to(*f, *t))))
}

/// The changes at a path present in both schemas.
fn field_changes(path: &str, old: &FieldSchema, new: &FieldSchema, out: &mut Vec<Change>) {
    let mut push = |kind| {
        out.push(Change {
            path: path.to_string(),
            kind,
        })
    };
    if old.kinds != new.kinds {
        push(ChangeKind::TypeChanged {
            from: old.kinds.clone(),
            to: new.kinds.clone(),
            widening: is_widening(&old.kinds, &new.kinds),
        });
    }
    if old.required != new.required {
        push(ChangeKind::OptionalityChanged { required: new.required });
    }
    if old.nullable != new.nullable {
        push(ChangeKind::NullabilityChanged { nullable: new.nullable });
    }
    if old.default != new.default {
        push(ChangeKind::DefaultChanged {
            from: old.default.clone(),
            to: new.default.clone(),
        });
    }
}

/// The drift from `old` to `new`.
pub fn drift(old: &Schema, new: &Schema) -> Drift {
    let mut changes = Vec::new();
    let mut weight = 0.0;
    let mut importance = 0.0;
    let paths: BTreeSet<&String> = old.fields.keys().chain(new.fields.keys()).collect();
    for p in paths {
        let start = changes.len();
        match (old.fields.get(p), new.fields.get(p)) {
            (Some(o), Some(n)) => {
                field_changes(p, o, n, &mut changes);
                let sum: f64 = changes[start..].iter().map(|c| c.kind.weight()).sum();
                weight += sum.min(1.0);
                importance += 1.0;
            }
            (None, Some(n)) => {
                let c = ChangeKind::Added {
                    required: n.required,
                    has_default: n.default.is_some(),
                };
                weight += c.weight();
                importance += c.weight();
                changes.push(Change {
                    path: p.clone(),
                    kind: c,
                });
            }
            (Some(o), None) => {
                let c = ChangeKind::Removed { required: o.required };
                weight += c.weight();
                importance += c.weight();
                changes.push(Change {
                    path: p.clone(),
                    kind: c,
                });
            }
            (None, None) => unreachable!("the path comes from one of the schemas"),
        }
    }
    let score = if importance > 0.0 {
        (weight / importance).clamp(0.0, 1.0)
    } else {
        0.0
    };
    Drift { score, changes }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |required: bool| if required { "required" } else { "optional" };
        match self {
            ChangeKind::Added { required, has_default } => {
                write!(f, "added ({}", opt(*required))?;
                if *has_default {
                    f.write_str(", with a default")?;
                }
                f.write_str(")")
            }
            ChangeKind::Removed { required } => write!(f, "removed ({})", opt(*required)),
            ChangeKind::TypeChanged { from, to, widening } => {
                write!(f, "type {} -> {}", describe(from, false), describe(to, false))?;
                if *widening {
                    f.write_str(" (widening)")?;
                }
                Ok(())
            }
            ChangeKind::OptionalityChanged { required } => write!(f, "now {}", opt(*required)),
            ChangeKind::NullabilityChanged { nullable: true } => f.write_str("now nullable"),
            ChangeKind::NullabilityChanged { nullable: false } => f.write_str("no longer nullable"),
            ChangeKind::DefaultChanged { from, to } => {
                let show = |d: &Option<serde_json::Value>| d.as_ref().map_or("none".to_string(), |v| v.to_string());
                write!(f, "default {} -> {}", show(from), show(to))
            }
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.kind)
    }
}

/// Groups changes by path, in path order.
pub fn by_path(changes: &[Change]) -> BTreeMap<&str, Vec<&ChangeKind>> {
    let mut out: BTreeMap<&str, Vec<&ChangeKind>> = BTreeMap::new();
    for c in changes {
        out.entry(c.path.as_str()).or_default().push(&c.kind);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::testing::schema;
    use proptest::prelude::*;

    fn field(kinds: &[Kind], required: bool) -> FieldSchema {
        FieldSchema {
            required,
            ..FieldSchema::of(kinds.iter().copied())
        }
    }

    #[test]
    fn scores_follow_the_weights() {
        let old = Schema::from_fields([
            ("a", field(&[Kind::Int], true)),
            ("b", field(&[Kind::Int], true)),
            ("c", field(&[Kind::String], false)),
            ("d", field(&[Kind::String], false)),
        ]);
        let mut new = old.clone();
        new.fields.insert("e".into(), field(&[Kind::Int], false));
        let d = drift(&old, &new);
        assert_eq!(d.score, 0.5 / 4.5);
        assert_eq!(d.changes[0].to_string(), "e: added (optional)");
        new.fields.get_mut("a").unwrap().kinds = BTreeSet::from([Kind::Float]);
        let d = drift(&old, &new);
        assert_eq!(d.score, 1.0 / 4.5);
        assert_eq!(d.changes[0].to_string(), "a: type int -> float (widening)");
        new.fields.get_mut("b").unwrap().kinds = BTreeSet::from([Kind::Bool]);
        new.fields.get_mut("b").unwrap().nullable = true;
        assert_eq!(drift(&old, &new).score, 2.0 / 4.5);
        new.fields.get_mut("b").unwrap().required = false;
        assert_eq!(drift(&old, &new).score, 2.0 / 4.5, "a path weighs at most 1");
        new.fields.remove("c");
        assert_eq!(drift(&old, &new).score, 3.0 / 4.5);
        assert_eq!(drift(&Schema::default(), &Schema::default()).score, 0.0);
        assert_eq!(drift(&Schema::default(), &old).score, 1.0);
    }

    /// `s` with every path moved under `zz.`, so it shares no path with any generated schema.
    fn moved(s: &Schema) -> Schema {
        Schema {
            fields: s.fields.iter().map(|(p, f)| (format!("zz.{p}"), f.clone())).collect(),
        }
    }

    proptest! {
        #[test]
        fn score_laws(a in schema(), b in schema(), extra in schema()) {
            prop_assert_eq!(drift(&a, &a).score, 0.0);
            prop_assert!(drift(&a, &a).changes.is_empty());
            let d = drift(&a, &b);
            prop_assert!((0.0..=1.0).contains(&d.score));
            prop_assert_eq!(d.changes.is_empty(), a == b);
            if !(a.fields.is_empty() && b.fields.is_empty()) {
                prop_assert_eq!(drift(&a, &moved(&b)).score, 1.0);
            }
            // Monotone: more added paths, more removed paths, or one more changed common path
            // never lower the score.
            let mut added = b.clone();
            added.fields.extend(moved(&extra).fields);
            prop_assert!(drift(&a, &added).score >= d.score - 1e-12);
            let mut removed = a.clone();
            removed.fields.extend(moved(&extra).fields);
            prop_assert!(drift(&removed, &b).score >= d.score - 1e-12);
            if let Some((p, f)) = b.fields.iter().find(|(p, f)| a.fields.get(*p) == Some(*f)) {
                let mut changed = b.clone();
                let mut g = f.clone();
                g.nullable = !g.nullable;
                changed.fields.insert(p.clone(), g);
                prop_assert!(drift(&a, &changed).score > d.score);
            }
        }
    }
}
