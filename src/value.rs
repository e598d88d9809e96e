//! The dynamic value model: interned field names ([`Sym`]) and totally ordered, hashable,
//! cheaply cloned values ([`Value`]).
//!
//! Invariants:
//! - `Value` is 24 bytes; cloning never copies string, list or object contents (they sit behind `Arc`).
//! - Floats are canonical (`-0.0` becomes `0.0`, every NaN the same NaN), so equality, hashing and
//!   ordering agree and are total.
//! - Object fields are sorted by name, so two objects with the same fields are equal whatever
//!   order they were written in.
//! - Hashes depend on content only, never on addresses or interning order, so that exchange
//!   routing agrees between the processes of a cluster.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock, RwLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An interned field name: a pointer-sized, `Copy` handle whose equality is pointer equality.
///
/// It serializes as its string, so interning differences between processes never leak out.
#[derive(Copy, Clone)]
pub struct Sym(&'static Interned);

struct Interned {
    name: Box<str>,
    hash: u64,
}

type Table = HashMap<&'static str, &'static Interned, rustc_hash::FxBuildHasher>;

fn interner() -> &'static RwLock<Table> {
    static TABLE: OnceLock<RwLock<Table>> = OnceLock::new();
    TABLE.get_or_init(Default::default)
}

/// FNV-1a: a fixed, content-only hash (std's `DefaultHasher` is not guaranteed stable).
pub fn stable_hash_bytes(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

thread_local! {
    /// Set by [`with_name_limit`]: the table size past which this thread interns no new name.
    static NAME_LIMIT: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
    /// Whether a name was refused under [`NAME_LIMIT`].
    static NAME_REFUSED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with interning bounded: a name not yet interned is not added once the table holds
/// `limit` names (interned names are never freed). [`Sym::new`] then returns a placeholder and
/// this returns `true` with `f`'s result, which the caller must discard. Untrusted input (TCP
/// lines) is parsed this way so that field names cannot grow memory without bound.
pub fn with_name_limit<R>(limit: usize, f: impl FnOnce() -> R) -> (R, bool) {
    let outer = NAME_LIMIT.replace(Some(limit));
    let refused_before = NAME_REFUSED.replace(false);
    let result = f();
    NAME_LIMIT.set(outer);
    let refused = NAME_REFUSED.replace(refused_before);
    (result, refused)
}

/// Names interned so far.
pub fn interned_names() -> usize {
    interner().read().expect("interner poisoned").len()
}

impl Sym {
    /// The `Sym` of `name` if it is interned, without interning it.
    pub fn lookup(name: &str) -> Option<Sym> {
        let table = interner().read().expect("interner poisoned");
        table.get(name).map(|found| Sym(found))
    }

    /// Interns `name`, returning the same `Sym` for equal strings.
    pub fn new(name: &str) -> Sym {
        if let Some(found) = interner().read().expect("interner poisoned").get(name) {
            return Sym(found);
        }
        if NAME_LIMIT.get().is_some_and(|limit| interned_names() >= limit) {
            NAME_REFUSED.set(true);
            static PLACEHOLDER: OnceLock<Sym> = OnceLock::new();
            return *PLACEHOLDER.get_or_init(|| {
                NAME_LIMIT.with(|l| {
                    let outer = l.replace(None);
                    let sym = Sym::new("\u{fffd}");
                    l.set(outer);
                    sym
                })
            });
        }
        let mut table = interner().write().expect("interner poisoned");
        if let Some(found) = table.get(name) {
            return Sym(found);
        }
        let interned: &'static Interned = Box::leak(Box::new(Interned {
            name: name.into(),
            hash: stable_hash_bytes(name.as_bytes()),
        }));
        table.insert(&interned.name, interned);
        Sym(interned)
    }

    /// The interned string.
    pub fn as_str(&self) -> &'static str {
        &self.0.name
    }
}

impl PartialEq for Sym {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}
impl Eq for Sym {}
impl Hash for Sym {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.hash);
    }
}
impl PartialOrd for Sym {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Sym {
    fn cmp(&self, other: &Self) -> Ordering {
        if self == other {
            Ordering::Equal
        } else {
            self.as_str().cmp(other.as_str())
        }
    }
}
impl fmt::Debug for Sym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}
impl fmt::Display for Sym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl Serialize for Sym {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
impl<'de> Deserialize<'de> for Sym {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Sym::new(&s))
    }
}

/// A canonical `f64`: `-0.0` is stored as `0.0` and all NaNs as one NaN, so bitwise equality,
/// hashing and `total_cmp` ordering agree.
#[derive(Copy, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct F64(f64);

impl F64 {
    pub fn new(x: f64) -> F64 {
        if x == 0.0 {
            F64(0.0)
        } else if x.is_nan() {
            F64(f64::NAN)
        } else {
            F64(x)
        }
    }
    pub fn get(self) -> f64 {
        self.0
    }
}
impl PartialEq for F64 {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}
impl Eq for F64 {}
impl Hash for F64 {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.to_bits());
    }
}
impl PartialOrd for F64 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for F64 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}
impl fmt::Debug for F64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A dynamic value. Values of different kinds order by kind, in declaration order:
/// `Null < Bool < Int < Float < Str < Time < List < Object`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(F64),
    Str(Arc<str>),
    /// Milliseconds since the Unix epoch.
    Time(i64),
    List(Arc<[Value]>),
    /// Fields sorted by name (see [`Value::object`]).
    Object(Arc<[(Sym, Value)]>),
}

impl Value {
    pub fn float(x: f64) -> Value {
        Value::Float(F64::new(x))
    }
    pub fn str(s: &str) -> Value {
        Value::Str(Arc::from(s))
    }
    /// Builds an object, sorting fields by name; a repeated name keeps its last value.
    pub fn object(mut fields: Vec<(Sym, Value)>) -> Value {
        Value::Object(sort_fields(&mut fields).into())
    }
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
    /// The name of this value's kind, as used in error messages and dead letters.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Time(_) => "timestamp",
            Value::List(_) => "list",
            Value::Object(_) => "object",
        }
    }
    /// A numeric view: ints, floats and bools (as 0/1); timestamps as their milliseconds.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) | Value::Time(i) => Some(*i as f64),
            Value::Float(f) => Some(f.get()),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            _ => None,
        }
    }
    /// Looks up a field of an object.
    pub fn field(&self, name: Sym) -> Option<&Value> {
        match self {
            Value::Object(fields) => lookup(fields, name),
            _ => None,
        }
    }
    /// Nesting depth: scalars are 0, a list or object is one more than its deepest element.
    pub fn depth(&self) -> usize {
        match self {
            Value::List(items) => 1 + items.iter().map(Value::depth).max().unwrap_or(0),
            Value::Object(fields) => 1 + fields.iter().map(|(_, v)| v.depth()).max().unwrap_or(0),
            _ => 0,
        }
    }

    /// Converts from JSON. Integers that fit `i64` stay integers; other numbers become floats.
    pub fn from_json(json: serde_json::Value) -> Value {
        match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::Str(s.into()),
            serde_json::Value::Array(items) => Value::List(items.into_iter().map(Value::from_json).collect()),
            serde_json::Value::Object(map) => Value::object(
                map.into_iter()
                    .map(|(k, v)| (Sym::new(&k), Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// Converts to JSON. Timestamps become RFC 3339 strings; non-finite floats become null.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => (*i).into(),
            Value::Float(f) => serde_json::Number::from_f64(f.get())
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Str(s) => serde_json::Value::String(s.to_string()),
            Value::Time(ms) => serde_json::Value::String(format_time(*ms)),
            Value::List(items) => serde_json::Value::Array(items.iter().map(Value::to_json).collect()),
            Value::Object(fields) => serde_json::Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Sorts fields by name and drops earlier duplicates, returning the canonical field list.
pub fn sort_fields(fields: &mut Vec<(Sym, Value)>) -> Vec<(Sym, Value)> {
    if fields.windows(2).all(|w| w[0].0 < w[1].0) {
        // Already canonical.
        return std::mem::take(fields);
    }
    fields.sort_by_key(|a| a.0);
    let mut out: Vec<(Sym, Value)> = Vec::with_capacity(fields.len());
    for (k, v) in fields.drain(..) {
        match out.last_mut() {
            Some(last) if last.0 == k => last.1 = v,
            _ => out.push((k, v)),
        }
    }
    out
}

/// Finds `name` in a field list (linear: payloads are small and `Sym` equality is a pointer test).
pub fn lookup(fields: &[(Sym, Value)], name: Sym) -> Option<&Value> {
    fields.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::Time(ms) => f.write_str(&format_time(*ms)),
            other => write!(f, "{}", other.to_json()),
        }
    }
}

/// Formats epoch milliseconds as an RFC 3339 UTC timestamp (`2024-01-02T03:04:05.678Z`).
pub fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a (year, month, day) civil date (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Inverse of [`civil_from_days`].
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses an RFC 3339 timestamp (`2024-01-02T03:04:05Z`, optional fraction and offset) or a date
/// (`2024-01-02`) into epoch milliseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, mo as u32, d as u32);
    if b.len() == 10 {
        return Some(days * 86_400_000);
    }
    if b.len() < 19 || !(b[10] == b'T' || b[10] == b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut ms = 0i64;
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &frac[..digits.min(3)]);
        ms = padded.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_min = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let hh: i64 = rest.get(1..3)?.parse().ok()?;
            let mm: i64 = rest.get(rest.len() - 2..)?.parse().ok()?;
            sign * (hh * 60 + mm)
        }
    };
    Some(((days * 24 + h) * 60 + mi - offset_min) * 60_000 + sec * 1000 + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_is_small() {
        assert_eq!(std::mem::size_of::<Value>(), 24);
        assert_eq!(std::mem::size_of::<Sym>(), 8);
    }

    #[test]
    fn floats_are_canonical() {
        assert_eq!(Value::float(-0.0), Value::float(0.0));
        assert_eq!(Value::float(f64::NAN), Value::float(-f64::NAN));
        assert!(Value::float(-1.0) < Value::float(2.5));
        assert!(Value::Int(5) < Value::float(0.0), "kinds order before values");
    }

    #[test]
    fn objects_ignore_field_order() {
        let a = Value::object(vec![(Sym::new("b"), Value::Int(1)), (Sym::new("a"), Value::Int(2))]);
        let b = Value::object(vec![(Sym::new("a"), Value::Int(2)), (Sym::new("b"), Value::Int(1))]);
        assert_eq!(a, b);
        assert_eq!(a.field(Sym::new("b")), Some(&Value::Int(1)));
    }

    #[test]
    fn json_round_trip() {
        let text = r#"{"a":[1,2.5,"x",null,true],"b":{"c":-3}}"#;
        let v = Value::from_json(serde_json::from_str(text).unwrap());
        assert_eq!(v.to_json().to_string(), text);
        assert_eq!(v.depth(), 2);
    }

    #[test]
    fn time_round_trip() {
        for ms in [0i64, 1_700_000_000_123, -86_400_001, 951_782_400_000] {
            assert_eq!(parse_time(&format_time(ms)), Some(ms), "{}", format_time(ms));
        }
        assert_eq!(
            parse_time("2024-01-02T03:04:05+01:00"),
            parse_time("2024-01-02T02:04:05Z")
        );
        assert_eq!(parse_time("2024-13-01"), None);
        assert_eq!(parse_time("nonsense"), None);
    }

    #[test]
    fn serde_keeps_symbols_by_name() {
        let v = Value::object(vec![(Sym::new("k"), Value::str("v"))]);
        let json = serde_json::to_string(&v).unwrap();
        let back: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v, back);
    }
}
