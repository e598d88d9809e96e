//! Compatibility modes of the Confluent Schema Registry, adapted to sluice schemas.
//!
//! Everything rests on one relation, [`can_read`]`(reader, writer)`: consumers using schema
//! `reader` can read every payload that conforms to `writer`. Path by path, over the reader's
//! paths whose parent the writer also has (when the writer has no parent object, the reader
//! never looks inside):
//! - a path the writer lacks must be fillable by the reader: optional, or with a default;
//! - writer optional, reader required without a default: rejected (the data may lack it; as in
//!   Avro, the writer's default does not count, only the reader's);
//! - a reader of "any" (no kinds, not nullable) reads everything; otherwise a writer of "any" is
//!   rejected, and so is a nullable writer field read by a non-nullable reader;
//! - each writer kind must be readable as a reader kind: the same kind or `int` read as `float`
//!   (Avro's promotions; `int → string` is not one).
//!
//! Writer paths the reader lacks are ignored (removing a field is fine for a reader). A list the
//! writer describes without elements (`x` but no `x[]`) is treated as always empty.
//!
//! The modes, as Confluent defines them (oldest version first in `history`):
//! - `BACKWARD`: the candidate reads data written with the latest version. Allowed: delete
//!   fields, add optional fields or fields with defaults, widen `int → float`. Rejected: add a
//!   required field without default, narrow or change a type, make a field required or
//!   non-nullable.
//! - `FORWARD`: the latest version reads data written with the candidate. Allowed: add fields,
//!   delete optional fields, narrow `float → int`, make a field required. Rejected: delete a
//!   required field (without default), widen or change a type, make a field optional.
//! - `FULL`: both. `*_TRANSITIVE`: against every earlier version instead of only the latest.
//! - `NONE`: no check.

use std::fmt;
use std::str::FromStr;

use super::kind::{describe, promotable};
use super::path::{self, Seg};
use super::schema::Schema;

pub use crate::plan::Compatibility;

/// A mode name that is not one of the seven.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compatibility `{0}`: expected BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE or NONE")]
pub struct UnknownCompatibility(pub String);

impl Compatibility {
    pub const ALL: [Compatibility; 7] = [
        Compatibility::Backward,
        Compatibility::BackwardTransitive,
        Compatibility::Forward,
        Compatibility::ForwardTransitive,
        Compatibility::Full,
        Compatibility::FullTransitive,
        Compatibility::None,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Compatibility::Backward => "BACKWARD",
            Compatibility::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Compatibility::Forward => "FORWARD",
            Compatibility::ForwardTransitive => "FORWARD_TRANSITIVE",
            Compatibility::Full => "FULL",
            Compatibility::FullTransitive => "FULL_TRANSITIVE",
            Compatibility::None => "NONE",
        }
    }

    fn backward(self) -> bool {
        use Compatibility::*;
        matches!(self, Backward | BackwardTransitive | Full | FullTransitive)
    }
    fn forward(self) -> bool {
        use Compatibility::*;
        matches!(self, Forward | ForwardTransitive | Full | FullTransitive)
    }
    fn transitive(self) -> bool {
        use Compatibility::*;
        matches!(self, BackwardTransitive | ForwardTransitive | FullTransitive)
    }
}

impl fmt::Display for Compatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Compatibility {
    type Err = UnknownCompatibility;
    /// Parses `BACKWARD`, `backward_transitive`, `full-transitive`, ... (any case, `-` or `_`).
    fn from_str(s: &str) -> Result<Compatibility, UnknownCompatibility> {
        let norm = s.trim().to_ascii_uppercase().replace('-', "_");
        Compatibility::ALL
            .into_iter()
            .find(|m| m.name() == norm)
            .ok_or_else(|| UnknownCompatibility(s.to_string()))
    }
}

/// A candidate rejected by a mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{mode}: incompatible with version {against_version} at `{path}`: {rule}")]
pub struct Incompatible {
    pub mode: Compatibility,
    /// What breaks, e.g. `FORWARD: the reader requires a field the writer may omit`.
    pub rule: String,
    /// 1-based position in the history (the registry turns it into a version number).
    pub against_version: usize,
    pub path: String,
}

/// Why `reader` cannot read data written with `writer`: the path at fault and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub path: String,
    pub rule: String,
}

/// Whether consumers using `reader` can read every payload written with `writer`.
pub fn can_read(reader: &Schema, writer: &Schema) -> Result<(), Unreadable> {
    for (p, r) in &reader.fields {
        let parent = match path::split_last(p) {
            Ok(Some((parent, seg))) => (parent, seg),
            _ => continue,
        };
        let parent_in_writer = parent.0.is_empty() || writer.fields.contains_key(&parent.0);
        let fail = |rule: String| Err(Unreadable { path: p.clone(), rule });
        let Some(w) = writer.fields.get(p) else {
            if parent_in_writer && parent.1 != Seg::Items && !r.may_be_missing() {
                return fail("a required field without default that the writer does not have".into());
            }
            continue;
        };
        if parent.1 != Seg::Items && !w.required && !r.may_be_missing() {
            return fail("required (without default) by the reader but optional for the writer".into());
        }
        // No kinds and not nullable means any value, null included.
        let reader_any = r.kinds.is_empty() && !r.nullable;
        let writer_any = w.kinds.is_empty() && !w.nullable;
        if reader_any {
            continue;
        }
        if w.nullable && !r.nullable {
            return fail("nullable for the writer but not for the reader".into());
        }
        if writer_any || !w.kinds.iter().all(|wk| r.kinds.iter().any(|rk| promotable(*wk, *rk))) {
            return fail(format!(
                "written as {}, read as {}",
                describe(&w.kinds, w.nullable),
                describe(&r.kinds, r.nullable)
            ));
        }
    }
    Ok(())
}

/// Checks `candidate` against `history` (oldest first) under `mode`.
pub fn check(mode: Compatibility, history: &[Schema], candidate: &Schema) -> Result<(), Incompatible> {
    if mode == Compatibility::None || history.is_empty() {
        return Ok(());
    }
    let against: Vec<usize> = if mode.transitive() {
        (0..history.len()).rev().collect()
    } else {
        vec![history.len() - 1]
    };
    for i in against {
        let old = &history[i];
        let reject = |direction: &str, e: Unreadable| Incompatible {
            mode,
            rule: format!("{direction}: {}", e.rule),
            against_version: i + 1,
            path: e.path,
        };
        if mode.backward() {
            can_read(candidate, old).map_err(|e| reject("the new schema cannot read old data", e))?;
        }
        if mode.forward() {
            can_read(old, candidate).map_err(|e| reject("the old schema cannot read new data", e))?;
        }
    }
    Ok(())
}

/// The modes that accept `candidate` after `history`, in [`Compatibility::ALL`] order, with the
/// reason of each rejection.
pub fn verdicts(history: &[Schema], candidate: &Schema) -> Vec<(Compatibility, Result<(), Incompatible>)> {
    Compatibility::ALL
        .into_iter()
        .map(|m| (m, check(m, history, candidate)))
        .collect()
}
