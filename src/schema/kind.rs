//! Value kinds and the widening lattice that schema inference uses to summarize mixed data.
//!
//! [`Kind`] is the kind of one [`Value`]. Observed kinds are *widened* into the kinds a schema
//! records ([`widen`]):
//!
//! - `null` is never a kind of a schema: it only makes the field nullable.
//! - `int ⊔ float = float` (as arrow-json infers it).
//! - Any other mix of two different scalar kinds (`bool`, `int`, `float`, `string`, `timestamp`)
//!   is `string`: the common textual form (arrow-json falls back to `Utf8` the same way). The
//!   inferred counts still show the mix (`int 99.9%, string 0.1%`).
//! - `list` and `object` never merge with scalars or with each other: the schema keeps a union,
//!   at most one scalar kind plus `list` and/or `object` (a `oneOf` in JSON Schema).
//!   List elements and object fields have their own paths, so they widen recursively.
//!
//! The scalar order is `int ≤ float ≤ string`, `bool ≤ string`, `timestamp ≤ string`; [`join`]
//! is its least upper bound, so widening a union of sets equals widening the union of the widened
//! sets (what makes the derived schema a join-semilattice, see `infer.rs`).
//!
//! [`promotable`] is narrower: it is what a *reader* accepts without loss when checking
//! compatibility (`int` read as `float`, like Avro's promotions), not what inference widens to.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::value::Value;

/// The kind of a value, in [`Value`]'s kind order (where `int` and `float` are one numeric kind,
/// compared by value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Null,
    Bool,
    Int,
    Float,
    String,
    Timestamp,
    List,
    Object,
}

/// A kind name that is not one of [`Kind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown kind `{0}`: expected null, bool, int, float, string, timestamp, list or object")]
pub struct UnknownKind(pub String);

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Null,
        Kind::Bool,
        Kind::Int,
        Kind::Float,
        Kind::String,
        Kind::Timestamp,
        Kind::List,
        Kind::Object,
    ];

    /// The kind of `value`.
    pub fn of(value: &Value) -> Kind {
        match value {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Int(_) => Kind::Int,
            Value::Float(_) => Kind::Float,
            Value::Str(_) => Kind::String,
            Value::Time(_) => Kind::Timestamp,
            Value::List(_) => Kind::List,
            Value::Object(_) => Kind::Object,
        }
    }

    /// The name used in tables, errors and serialized forms (same as [`Value::kind_name`]).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool => "bool",
            Kind::Int => "int",
            Kind::Float => "float",
            Kind::String => "string",
            Kind::Timestamp => "timestamp",
            Kind::List => "list",
            Kind::Object => "object",
        }
    }

    /// Bool, int, float, string and timestamp.
    pub fn is_scalar(self) -> bool {
        !matches!(self, Kind::Null | Kind::List | Kind::Object)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Kind, UnknownKind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownKind(s.to_string()))
    }
}

/// Least upper bound of two scalar kinds: equal kinds stay, `int ⊔ float = float`, any other
/// mix is `string`. Not meant for `null`, `list` or `object` (see [`widen`]).
pub fn join(a: Kind, b: Kind) -> Kind {
    match (a, b) {
        _ if a == b => a,
        (Kind::Int, Kind::Float) | (Kind::Float, Kind::Int) => Kind::Float,
        _ => Kind::String,
    }
}

/// Widens observed kinds into schema kinds: drops `null`, joins the scalars into one, keeps
/// `list` and `object`.
pub fn widen(kinds: impl IntoIterator<Item = Kind>) -> BTreeSet<Kind> {
    let mut scalar: Option<Kind> = None;
    let mut out = BTreeSet::new();
    for k in kinds {
        if k.is_scalar() {
            scalar = Some(scalar.map_or(k, |s| join(s, k)));
        } else if k != Kind::Null {
            out.insert(k);
        }
    }
    out.extend(scalar);
    out
}

/// `from ≤ to` in the widening order (every kind is below itself).
pub fn widens_to(from: Kind, to: Kind) -> bool {
    from == to || (from.is_scalar() && to.is_scalar() && join(from, to) == to)
}

/// Whether a reader expecting `reader` reads a value written as `writer` without loss:
/// the same kind, or `int` read as `float`.
pub fn promotable(writer: Kind, reader: Kind) -> bool {
    writer == reader || (writer == Kind::Int && reader == Kind::Float)
}

/// `int`, `int|string`, `any` (no kinds): a set of kinds for tables and messages, with `?`
/// appended when nullable and `null` alone for a field only ever null.
pub fn describe(kinds: &BTreeSet<Kind>, nullable: bool) -> String {
    let mut s = if kinds.is_empty() {
        if nullable {
            return "null".into();
        }
        "any".to_string()
    } else {
        kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join("|")
    };
    if nullable {
        s.push('?');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widening_rules() {
        let w = |ks: &[Kind]| widen(ks.iter().copied()).into_iter().collect::<Vec<_>>();
        assert_eq!(w(&[Kind::Int, Kind::Float]), [Kind::Float]);
        assert_eq!(w(&[Kind::Int, Kind::Null]), [Kind::Int]);
        assert_eq!(w(&[Kind::Int, Kind::String]), [Kind::String]);
        assert_eq!(w(&[Kind::Bool, Kind::Int]), [Kind::String]);
        assert_eq!(w(&[Kind::Timestamp, Kind::String]), [Kind::String]);
        assert_eq!(w(&[Kind::Object, Kind::Int]), [Kind::Int, Kind::Object]);
        assert_eq!(
            w(&[Kind::List, Kind::Object, Kind::Float, Kind::Int]),
            [Kind::Float, Kind::List, Kind::Object]
        );
        assert!(w(&[Kind::Null]).is_empty());
    }

    #[test]
    fn join_is_a_semilattice() {
        let scalars = [Kind::Bool, Kind::Int, Kind::Float, Kind::String, Kind::Timestamp];
        for a in scalars {
            assert_eq!(join(a, a), a);
            for b in scalars {
                assert_eq!(join(a, b), join(b, a));
                assert!(widens_to(a, join(a, b)));
                for c in scalars {
                    assert_eq!(join(join(a, b), c), join(a, join(b, c)));
                }
            }
        }
        assert!(widens_to(Kind::Int, Kind::Float));
        assert!(!widens_to(Kind::Float, Kind::Int));
        assert!(!widens_to(Kind::Int, Kind::Object));
    }

    #[test]
    fn names_round_trip() {
        for k in Kind::ALL {
            assert_eq!(k.name().parse::<Kind>(), Ok(k));
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.name()));
        }
        assert!("integer".parse::<Kind>().is_err());
    }
}
