//! Schema inference: per-path statistics of event payloads, and the schema derived from them.
//!
//! **Paths.** Keys of [`Inferred::fields`] are normalized paths (`path.rs`): `a`, `a.b`, list
//! elements as `tags[]`, nested `a.b[].c`.
//!
//! **Observations.** One event yields a *set* of distinct `(path, Obs)` pairs ([`observations`]):
//! - `(p, Obs::Present)`: `p` appears at least once in the event;
//! - `(p, Obs::Kind(k))`: at least one value of kind `k` sits at `p`; `Obs::Kind(Kind::Null)` is
//!   the encoding of "null here";
//! - `(p, Obs::Partial)`: `p` is a field of objects inside a list, and some but not all of the
//!   event's objects at its parent have it (needed to decide `required` exactly).
//!
//! Each pair is counted at most once per event, so every count is at most `events`.
//! [`Inferred::from_counts`] rebuilds statistics from such counts (what a differential
//! `count()` of the pairs yields), and [`observe`] is `from_counts(1, observations(..))`.
//!
//! **Counts are additive.** [`Inferred::merge`] adds counts: it is commutative and associative,
//! and merging the statistics of disjoint sets of events gives the statistics of their union
//! (the dataflow counts each event once).
//!
//! **The derived schema is a join-semilattice.** [`Inferred::schema`] keeps, per path:
//! - `kinds`: the widened kinds (`kind.rs`) with a non-zero count;
//! - `nullable`: `nulls > 0`;
//! - `required`: for a field of the payload, `present == events`; for a field of a nested
//!   object, the same relative to its parent: `present − partial == objects(parent)`, i.e. every
//!   object ever seen at the parent had the field. List elements (`x[]`) are never required.
//!
//! These depend only on which counts are zero and on equalities `a == b` with `a ≤ b`, which
//! hold in a sum iff they hold in each part. So `schema(merge(x, y))` is the join of facts of
//! `x` and `y`: kinds are the union, then widened; nullable is an or; required is an and, where
//! a side that saw objects at the parent but never the field counts as "not required" and a
//! side that saw no such object does not count. Merging the same information again changes
//! nothing: `schema(merge(x, x)) == schema(x)` and
//! `schema(merge(merge(x, y), y)) == schema(merge(x, y))` (property-tested in `infer_laws.rs`).
//!
//! **Limits** ([`Limits`]). Paths deeper than `max_depth` steps (default 32) are an error,
//! [`InferError::DepthExceeded`]; the traversal never recurses further, so no payload can
//! exhaust the stack. Only the first `max_list_items` elements of a list (default 1000) are
//! examined: kinds that occur only after them are not seen. Empty objects and lists count as
//! their kind with no child paths.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use serde::{Deserialize, Serialize};

use super::kind::{widen, Kind};
use super::path;
use super::schema::{FieldSchema, Schema};
use crate::value::{Sym, Value};

/// Bounds on the traversal of one payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest number of steps in a path (`a.b[]` has 3).
    pub max_depth: usize,
    /// List elements examined per list, from the front.
    pub max_list_items: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_depth: 32,
            max_list_items: 1000,
        }
    }
}

/// Why a payload cannot be observed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InferError {
    #[error("`{path}`: nesting deeper than {max_depth} levels")]
    DepthExceeded { path: String, max_depth: usize },
}

/// What one event says about one path (see the module doc for the encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Obs {
    Present,
    Partial,
    Kind(Kind),
}

/// Statistics of one path: numbers of events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldStats {
    /// Events in which the path appears.
    pub present: u64,
    /// Events in which it holds null at least once.
    pub nulls: u64,
    /// Events in which it holds a value of each non-null kind at least once.
    pub kinds: BTreeMap<Kind, u64>,
    /// Events in which some but not all objects at its parent have it (only inside lists).
    pub partial: u64,
}

/// Statistics of a set of events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inferred {
    pub events: u64,
    pub fields: BTreeMap<String, FieldStats>,
}

/// Statistics of one payload, with the default [`Limits`].
pub fn observe(payload: &[(Sym, Value)]) -> Result<Inferred, InferError> {
    observe_with(payload, &Limits::default())
}

/// Statistics of one payload.
pub fn observe_with(payload: &[(Sym, Value)], limits: &Limits) -> Result<Inferred, InferError> {
    Ok(Inferred::from_counts(1, observations(payload, limits)?.map(|o| (o, 1))))
}

/// The distinct `(path, observation)` pairs of one payload, in order.
pub fn observations(
    payload: &[(Sym, Value)],
    limits: &Limits,
) -> Result<impl Iterator<Item = (String, Obs)>, InferError> {
    let mut ids = PathIds::new();
    let mut scratch = ObsScratch::default();
    let mut out = Vec::new();
    observations_by_id(payload, limits, &mut ids, &mut scratch, &mut out)?;
    let mut named: Vec<(String, Obs)> = out.into_iter().map(|(id, o)| (ids.path(id).to_string(), o)).collect();
    named.sort_unstable();
    Ok(named.into_iter())
}

/// Interned normalized paths, so that observations can be counted without building a string per
/// field of every event. Ids and path strings correspond one to one; [`PathIds::ROOT`] is the
/// payload (the empty path).
#[derive(Debug, Clone)]
pub struct PathIds {
    paths: Vec<String>,
    by_name: FxHashMap<String, u32>,
    /// Child paths: `Some(name)` for a field, `None` for list elements.
    children: FxHashMap<(u32, Option<Sym>), u32>,
}

impl Default for PathIds {
    fn default() -> PathIds {
        PathIds::new()
    }
}

impl PathIds {
    pub const ROOT: u32 = 0;

    pub fn new() -> PathIds {
        let mut by_name = FxHashMap::default();
        by_name.insert(String::new(), PathIds::ROOT);
        PathIds {
            paths: vec![String::new()],
            by_name,
            children: FxHashMap::default(),
        }
    }

    /// The path of `id`.
    pub fn path(&self, id: u32) -> &str {
        &self.paths[id as usize]
    }

    /// The id of a path (a normalized path string, as [`PathIds::path`] returns), numbered now
    /// if it has none: restored statistics name their paths.
    pub fn intern(&mut self, path: &str) -> u32 {
        if let Some(id) = self.by_name.get(path) {
            return *id;
        }
        let id = u32::try_from(self.paths.len()).expect("fewer than 2^32 paths");
        self.paths.push(path.to_string());
        self.by_name.insert(path.to_string(), id);
        id
    }

    /// The id of field `name` (`Some`) or of the elements (`None`) of the path `parent`.
    fn child(&mut self, parent: u32, name: Option<Sym>) -> u32 {
        if let Some(id) = self.children.get(&(parent, name)) {
            return *id;
        }
        let at = &self.paths[parent as usize];
        let p = match name {
            Some(n) => path::child(at, n.as_str()),
            None => path::items(at),
        };
        let id = match self.by_name.get(&p) {
            Some(id) => *id,
            None => {
                let id = u32::try_from(self.paths.len()).expect("fewer than 2^32 paths");
                self.paths.push(p.clone());
                self.by_name.insert(p, id);
                id
            }
        };
        self.children.insert((parent, name), id);
        id
    }
}

/// Reusable buffers for [`observations_by_id`].
#[derive(Debug, Default)]
pub struct ObsScratch {
    /// Per path id, the observations already made in this event (bits of [`obs_bit`]).
    seen: Vec<u16>,
    /// Path ids with bits set in `seen`.
    touched: Vec<u32>,
    /// Object instances per object path, in this event.
    instances: FxHashMap<u32, u64>,
    /// Per field path of a nested object: its parent and how many instances had it.
    fields: FxHashMap<u32, (u32, u64)>,
}

/// [`observations`] with paths as ids of `ids`: fills `out` with the distinct pairs (in no
/// particular order).
pub fn observations_by_id(
    payload: &[(Sym, Value)],
    limits: &Limits,
    ids: &mut PathIds,
    scratch: &mut ObsScratch,
    out: &mut Vec<(u32, Obs)>,
) -> Result<(), InferError> {
    out.clear();
    scratch.instances.clear();
    scratch.fields.clear();
    for id in scratch.touched.drain(..) {
        scratch.seen[id as usize] = 0;
    }
    let mut walk = Walk {
        limits,
        ids,
        out,
        instances: &mut scratch.instances,
        fields: &mut scratch.fields,
        seen: &mut scratch.seen,
        touched: &mut scratch.touched,
    };
    walk.object(PathIds::ROOT, payload, 0)?;
    let partial: Vec<u32> = walk
        .fields
        .iter()
        .filter(|(_, (parent, count))| *count < walk.instances[parent])
        .map(|(field, _)| *field)
        .collect();
    for field in partial {
        walk.push(field, Obs::Partial);
    }
    Ok(())
}

struct Walk<'a> {
    limits: &'a Limits,
    ids: &'a mut PathIds,
    out: &'a mut Vec<(u32, Obs)>,
    instances: &'a mut FxHashMap<u32, u64>,
    fields: &'a mut FxHashMap<u32, (u32, u64)>,
    seen: &'a mut Vec<u16>,
    touched: &'a mut Vec<u32>,
}

/// A distinct bit per observation.
fn obs_bit(obs: Obs) -> u16 {
    match obs {
        Obs::Present => 1,
        Obs::Partial => 2,
        Obs::Kind(k) => 4 << (k as u16),
    }
}

impl Walk<'_> {
    /// Records `(at, obs)` unless this event already did.
    fn push(&mut self, at: u32, obs: Obs) {
        let i = at as usize;
        if i >= self.seen.len() {
            self.seen.resize(i + 1, 0);
        }
        let bit = obs_bit(obs);
        let seen = &mut self.seen[i];
        if *seen == 0 {
            self.touched.push(at);
        }
        if *seen & bit == 0 {
            *seen |= bit;
            self.out.push((at, obs));
        }
    }

    fn object(&mut self, at: u32, fields: &[(Sym, Value)], depth: usize) -> Result<(), InferError> {
        *self.instances.entry(at).or_insert(0) += 1;
        let sorted = fields.windows(2).all(|w| w[0].0 < w[1].0);
        let deduped;
        let fields = if sorted {
            fields
        } else {
            deduped = crate::value::sort_fields(&mut fields.to_vec());
            &deduped[..]
        };
        for (name, value) in fields {
            let p = self.ids.child(at, Some(*name));
            if at != PathIds::ROOT {
                self.fields.entry(p).or_insert((at, 0)).1 += 1;
            }
            self.value(p, value, depth + 1)?;
        }
        Ok(())
    }

    fn value(&mut self, at: u32, value: &Value, depth: usize) -> Result<(), InferError> {
        if depth > self.limits.max_depth {
            return Err(InferError::DepthExceeded {
                path: self.ids.path(at).to_string(),
                max_depth: self.limits.max_depth,
            });
        }
        match value {
            Value::Object(fields) => self.object(at, fields, depth)?,
            Value::List(elements) => {
                let element_path = self.ids.child(at, None);
                for element in elements.iter().take(self.limits.max_list_items) {
                    self.value(element_path, element, depth + 1)?;
                }
            }
            _ => {}
        }
        self.push(at, Obs::Kind(Kind::of(value)));
        self.push(at, Obs::Present);
        Ok(())
    }
}

impl Inferred {
    /// Rebuilds statistics from counts of `(path, observation)` pairs over `events` events.
    /// Repeated keys add up; zero counts are ignored.
    pub fn from_counts(events: u64, counts: impl IntoIterator<Item = ((String, Obs), u64)>) -> Inferred {
        let mut fields: BTreeMap<String, FieldStats> = BTreeMap::new();
        for ((p, obs), n) in counts {
            if n == 0 {
                continue;
            }
            let stats = fields.entry(p).or_default();
            match obs {
                Obs::Present => stats.present += n,
                Obs::Partial => stats.partial += n,
                Obs::Kind(Kind::Null) => stats.nulls += n,
                Obs::Kind(k) => *stats.kinds.entry(k).or_default() += n,
            }
        }
        Inferred { events, fields }
    }

    /// The counts this was built from (the inverse of [`Inferred::from_counts`]).
    pub fn counts(&self) -> impl Iterator<Item = ((String, Obs), u64)> + '_ {
        self.fields.iter().flat_map(|(p, s)| {
            let fixed = [
                (Obs::Present, s.present),
                (Obs::Partial, s.partial),
                (Obs::Kind(Kind::Null), s.nulls),
            ];
            fixed
                .into_iter()
                .chain(s.kinds.iter().map(|(k, n)| (Obs::Kind(*k), *n)))
                .filter(|(_, n)| *n > 0)
                .map(move |(o, n)| ((p.clone(), o), n))
        })
    }

    /// Adds `other`'s counts to this one's.
    pub fn merge(&mut self, other: &Inferred) {
        self.events += other.events;
        for (p, s) in &other.fields {
            let mine = self.fields.entry(p.clone()).or_default();
            mine.present += s.present;
            mine.nulls += s.nulls;
            mine.partial += s.partial;
            for (k, n) in &s.kinds {
                *mine.kinds.entry(*k).or_default() += n;
            }
        }
    }

    /// Events in which an object sat at `parent` (`""`: every event).
    fn objects_at(&self, parent: &str) -> u64 {
        if parent.is_empty() {
            self.events
        } else {
            self.fields
                .get(parent)
                .and_then(|s| s.kinds.get(&Kind::Object))
                .copied()
                .unwrap_or(0)
        }
    }

    /// The derived schema (see the module doc). Inferred schemas have no defaults.
    pub fn schema(&self) -> Schema {
        let mut schema = Schema::default();
        for (p, s) in &self.fields {
            if s.present == 0 && s.nulls == 0 && s.kinds.values().all(|n| *n == 0) {
                continue;
            }
            let required = match path::split_last(p) {
                Ok(Some((parent, path::Seg::Field(_)))) => {
                    let objects = self.objects_at(&parent);
                    objects > 0 && s.present.saturating_sub(s.partial) == objects
                }
                _ => false,
            };
            let kinds = widen(s.kinds.iter().filter(|(_, n)| **n > 0).map(|(k, _)| *k));
            schema.fields.insert(
                p.clone(),
                FieldSchema {
                    kinds,
                    required,
                    nullable: s.nulls > 0,
                    default: None,
                },
            );
        }
        schema
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::testing::json_payload;

    fn infer(lines: &[&str]) -> Inferred {
        let mut all = Inferred::default();
        for line in lines {
            all.merge(&observe(&json_payload(line)).unwrap());
        }
        all
    }

    #[test]
    fn observes_nested_paths_once_per_event() {
        let i = infer(&[r#"{"a":{"b":[{"c":1},{"c":2.5},{"d":null}]},"tags":["x","y",3]}"#]);
        let keys: Vec<&str> = i.fields.keys().map(String::as_str).collect();
        assert_eq!(keys, ["a", "a.b", "a.b[]", "a.b[].c", "a.b[].d", "tags", "tags[]"]);
        let c = &i.fields["a.b[].c"];
        assert_eq!((c.present, c.partial, c.nulls), (1, 1, 0));
        assert_eq!(c.kinds, BTreeMap::from([(Kind::Int, 1), (Kind::Float, 1)]));
        assert_eq!(i.fields["a.b[]"].kinds, BTreeMap::from([(Kind::Object, 1)]));
        assert_eq!(i.fields["a.b[].d"].nulls, 1);
        let s = i.schema();
        assert_eq!(
            s.fields["a.b[].c"].kinds,
            std::collections::BTreeSet::from([Kind::Float])
        );
        assert!(!s.fields["a.b[].c"].required, "one element lacks c");
        assert_eq!(
            s.fields["tags[]"].kinds,
            std::collections::BTreeSet::from([Kind::String])
        );
        assert!(s.fields["a"].required && s.fields["a.b"].required);
    }

    #[test]
    fn required_is_relative_to_the_parent() {
        let i = infer(&[r#"{"u":{"id":1}}"#, r#"{"x":1}"#, r#"{"u":{"id":2,"n":"a"}}"#]);
        let s = i.schema();
        assert!(!s.fields["u"].required);
        assert!(s.fields["u.id"].required, "every `u` object has `id`");
        assert!(!s.fields["u.n"].required);
        assert!(!s.fields["x"].required);
        assert_eq!(i.fields["u"].present, 2);
    }

    #[test]
    fn nulls_make_fields_nullable() {
        let s = infer(&[r#"{"a":null}"#, r#"{"a":1}"#, r#"{"b":null}"#]).schema();
        assert_eq!(s.fields["a"].kinds, std::collections::BTreeSet::from([Kind::Int]));
        assert!(s.fields["a"].nullable && !s.fields["a"].required);
        assert!(s.fields["b"].kinds.is_empty() && s.fields["b"].nullable);
    }

    #[test]
    fn bad_input_does_not_blow_up() {
        // Depth.
        let mut deep = String::from("1");
        for _ in 0..40 {
            deep = format!("{{\"a\":{deep}}}");
        }
        let err = observe(&json_payload(&deep)).unwrap_err();
        assert!(matches!(&err, InferError::DepthExceeded { max_depth: 32, path } if path.matches('.').count() == 32));
        let limits = Limits {
            max_depth: 64,
            ..Limits::default()
        };
        assert!(observe_with(&json_payload(&deep), &limits).is_ok());
        // Depth through lists, built directly (deeper than serde_json would parse).
        let mut v = Value::Int(1);
        for _ in 0..100_000 {
            v = Value::List(vec![v].into());
        }
        let payload = vec![(Sym::new("l"), v)];
        assert!(matches!(observe(&payload), Err(InferError::DepthExceeded { .. })));
        std::mem::forget(payload); // dropping 100k nested Arcs recursively would overflow the stack
                                   // Huge arrays: only the first 1000 elements are examined.
        let mut huge: Vec<Value> = (0..1_000_000).map(Value::Int).collect();
        huge.push(Value::str("late"));
        let i = observe(&[(Sym::new("h"), Value::List(huge.into()))]).unwrap();
        assert_eq!(i.fields["h[]"].kinds, BTreeMap::from([(Kind::Int, 1)]));
        // Mixed lists and empty containers.
        let i = infer(&[r#"{"m":[1,"a",null,[2],{"k":true}],"e":{},"l":[]}"#]);
        let s = i.schema();
        assert_eq!(
            s.fields["m[]"].kinds,
            std::collections::BTreeSet::from([Kind::String, Kind::List, Kind::Object])
        );
        assert!(s.fields["m[]"].nullable);
        assert_eq!(s.fields["e"].kinds, std::collections::BTreeSet::from([Kind::Object]));
        assert_eq!(s.fields["l"].kinds, std::collections::BTreeSet::from([Kind::List]));
        assert!(!s.fields.contains_key("l[]"));
        assert!(observe(&[]).unwrap().fields.is_empty());
    }

    #[test]
    fn unsorted_payloads_count_each_field_once() {
        let payload = vec![
            (Sym::new("b"), Value::Int(1)),
            (Sym::new("a"), Value::Int(1)),
            (Sym::new("b"), Value::str("x")),
        ];
        let i = observe(&payload).unwrap();
        assert_eq!(i.fields["b"].present, 1);
        assert_eq!(i.fields["b"].kinds, BTreeMap::from([(Kind::String, 1)]));
    }
}
