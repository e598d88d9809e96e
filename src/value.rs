//! The dynamic value model: interned field names ([`Sym`]) and totally ordered, hashable,
//! cheaply cloned values ([`Value`]).
//!
//! Invariants:
//! - `Value` is 24 bytes; cloning never copies string, list or object contents (they sit behind `Arc`).
//! - Numbers compare by value: `Int` and `Float` are one kind, ordered exactly (no rounding
//!   through `f64`), so `Int(3) == Float(3.0)` and `Int(3) < Float(3.5)`. Equal numbers hash
//!   alike whatever their encoding.
//! - Floats are canonical (`-0.0` becomes `0.0`, every NaN the same NaN, which sorts above every
//!   number), so equality, hashing and ordering agree and are total.
//! - JSON numbers decode canonically ([`Value::json_number`]): a whole number within ±2^53 is an
//!   `Int`. Equal values can still differ in encoding (a Parquet float `3.0`, an int `3`), and
//!   which one a group or a distinct set keeps is then arbitrary; decoding JSON this way keeps
//!   the choice from arising within JSON data.
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
/// hashing and `total_cmp` ordering agree. Deserializing canonicalizes too.
#[derive(Copy, Clone, Serialize)]
#[serde(transparent)]
pub struct F64(f64);

impl<'de> Deserialize<'de> for F64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        f64::deserialize(d).map(F64::new)
    }
}

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

/// A dynamic value. Values of different kinds order by kind, in declaration order, where `Int`
/// and `Float` are one numeric kind compared by value:
/// `Null < Bool < number < Str < Time < List < Object`.
#[derive(Clone, Serialize, Deserialize, Default)]
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

/// 2^63: the `i64` range is `[-2^63, 2^63)`.
const TWO_63: f64 = 9_223_372_036_854_775_808.0;
/// 2^53: every integer of at most this magnitude is exactly an `f64`.
const TWO_53: f64 = 9_007_199_254_740_992.0;

/// Compares an int with a float exactly (NaN sorts above every number).
#[inline(always)]
pub fn cmp_int_float(i: i64, f: f64) -> Ordering {
    if f.is_nan() || f >= TWO_63 {
        return Ordering::Less;
    }
    if f < -TWO_63 {
        return Ordering::Greater;
    }
    // Now `f` truncates to an i64 exactly; ties are broken by its fractional part.
    let t = f.trunc();
    i.cmp(&(t as i64)).then(if f > t {
        Ordering::Less
    } else if f < t {
        Ordering::Greater
    } else {
        Ordering::Equal
    })
}

/// The `i64` equal to `f`, if there is one.
fn exact_int(f: f64) -> Option<i64> {
    (f.fract() == 0.0 && (-TWO_63..TWO_63).contains(&f)).then_some(f as i64)
}

impl Value {
    /// The kind rank of [`Value`]'s order: numbers share one.
    fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int(_) | Value::Float(_) => 2,
            Value::Str(_) => 3,
            Value::Time(_) => 4,
            Value::List(_) => 5,
            Value::Object(_) => 6,
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) | (Value::Time(a), Value::Time(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a == b,
            (Value::Int(i), Value::Float(f)) | (Value::Float(f), Value::Int(i)) => exact_int(f.get()) == Some(*i),
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::List(a), Value::List(b)) => a == b,
            (Value::Object(a), Value::Object(b)) => a == b,
            _ => false,
        }
    }
}
impl Eq for Value {}

impl Hash for Value {
    /// A tag per kind (the derived `Hash`'s, with floats taking `Int`'s), then the content: a
    /// float equal to an `i64` hashes as that integer, any other float as its bits.
    fn hash<H: Hasher>(&self, state: &mut H) {
        let tag: isize = match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int(_) | Value::Float(_) => 2,
            Value::Str(_) => 4,
            Value::Time(_) => 5,
            Value::List(_) => 6,
            Value::Object(_) => 7,
        };
        state.write_isize(tag);
        match self {
            Value::Null => {}
            Value::Bool(b) => b.hash(state),
            Value::Int(i) | Value::Time(i) => state.write_i64(*i),
            Value::Float(f) => match exact_int(f.get()) {
                Some(i) => state.write_i64(i),
                None => f.hash(state),
            },
            Value::Str(s) => s.hash(state),
            Value::List(items) => items.hash(state),
            Value::Object(fields) => fields.hash(state),
        }
    }
}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::Int(a), Value::Int(b)) | (Value::Time(a), Value::Time(b)) => a.cmp(b),
            (Value::Float(a), Value::Float(b)) => a.cmp(b),
            (Value::Int(i), Value::Float(f)) => cmp_int_float(*i, f.get()),
            (Value::Float(f), Value::Int(i)) => cmp_int_float(*i, f.get()).reverse(),
            // Shared values (a series' key, a metric's or model's name in every row made for
            // it) are one allocation: equal without reading them.
            (Value::Str(a), Value::Str(b)) if Arc::ptr_eq(a, b) => Ordering::Equal,
            (Value::Str(a), Value::Str(b)) => a.cmp(b),
            (Value::List(a), Value::List(b)) if Arc::ptr_eq(a, b) => Ordering::Equal,
            (Value::List(a), Value::List(b)) => a.cmp(b),
            (Value::Object(a), Value::Object(b)) if Arc::ptr_eq(a, b) => Ordering::Equal,
            (Value::Object(a), Value::Object(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
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

    /// A number decoded from JSON text, which does not tell `10` from `10.0`: a whole number
    /// within ±2^53 becomes an `Int` (as JSON Schema calls `10.0` an integer), any other a
    /// `Float`. So equal JSON numbers decode alike, and a column's type never depends on which
    /// of two equal values a group keeps.
    pub fn json_number(x: f64) -> Value {
        if x.fract() == 0.0 && x.abs() <= TWO_53 {
            Value::Int(x as i64)
        } else {
            Value::float(x)
        }
    }

    /// Converts from JSON. Integers that fit `i64` stay integers; other numbers go through
    /// [`Value::json_number`].
    pub fn from_json(json: serde_json::Value) -> Value {
        match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::json_number(n.as_f64().unwrap_or(f64::NAN)),
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

impl Value {
    /// The text of [`Value::to_json`] (what its `to_string` prints), written without building
    /// the JSON tree: compact, an object's keys in order with the last of a repeated key kept.
    pub fn json_text(&self) -> String {
        let mut out = Vec::new();
        self.write_json(&mut out);
        // Only valid UTF-8 is written: strings are escaped by serde_json.
        String::from_utf8(out).unwrap_or_default()
    }

    /// Appends [`Value::json_text`] to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        match self {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => match serde_json::Number::from_f64(f.get()) {
                Some(n) => {
                    let _ = write!(out, "{n}");
                }
                None => out.extend_from_slice(b"null"),
            },
            Value::Str(s) => write_json_str(s, out),
            Value::Time(ms) => write_json_str(&format_time(*ms), out),
            Value::List(items) => {
                out.push(b'[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    v.write_json(out);
                }
                out.push(b']');
            }
            Value::Object(fields) => write_json_object(fields.iter().map(|(k, v)| (k.as_str(), v)), out),
        }
    }
}

/// Appends `s` as a JSON string.
pub fn write_json_str(s: &str, out: &mut Vec<u8>) {
    // Writing to a Vec does not fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Appends an object of `fields` as JSON the way a `serde_json::Map` prints it: keys in
/// order, the last of a repeated key kept.
pub fn write_json_object<'a>(fields: impl Iterator<Item = (&'a str, &'a Value)>, out: &mut Vec<u8>) {
    let mut fields: Vec<(&str, &Value)> = fields.collect();
    if !fields.windows(2).all(|w| w[0].0 < w[1].0) {
        // Stable: of a repeated key, the last given stays last, and is the one kept.
        fields.sort_by(|a, b| a.0.cmp(b.0));
        let mut kept: Vec<(&str, &Value)> = Vec::with_capacity(fields.len());
        for f in fields {
            match kept.last_mut() {
                Some(last) if last.0 == f.0 => *last = f,
                _ => kept.push(f),
            }
        }
        fields = kept;
    }
    out.push(b'{');
    for (i, (k, v)) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_str(k, out);
        out.push(b':');
        v.write_json(out);
    }
    out.push(b'}');
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
            other => f.write_str(&other.json_text()),
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

/// A content-only hasher (FNV-1a) so exchange routing agrees across processes.
#[derive(Default)]
pub struct StableHasher(u64);

impl std::hash::Hasher for StableHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

pub fn stable_hash<H: std::hash::Hash>(x: &H) -> u64 {
    use std::hash::Hasher;
    let mut h = StableHasher::default();
    x.hash(&mut h);
    h.finish()
}

/// The exchange hash of a key's values, the one that key joins and ordered outputs partition
/// by: an enrichment output ordered by its join's key stays on the worker the join put its
/// events on.
pub fn key_hash(values: &[Value]) -> u64 {
    stable_hash(&values)
}

/// Strings as [`Value::Str`]s, each made once and then shared: for rows rebuilt often that name
/// the same few strings (regions, states, models). At most `cap` strings are kept; past it the
/// cache starts over, for callers whose strings are not bounded.
pub struct StrValues {
    values: rustc_hash::FxHashMap<String, Value>,
    cap: usize,
}

impl StrValues {
    pub fn new(cap: usize) -> StrValues {
        StrValues {
            values: Default::default(),
            cap,
        }
    }

    /// `s` as a value, shared with earlier calls for the same string.
    pub fn get(&mut self, s: &str) -> Value {
        if let Some(v) = self.values.get(s) {
            return v.clone();
        }
        if self.values.len() >= self.cap {
            self.values.clear();
        }
        let v = Value::str(s);
        self.values.insert(s.to_string(), v.clone());
        v
    }
}

/// `s` as a value shared by this thread's earlier calls for the same string (a [`StrValues`] of
/// 4,096 strings per thread): for the names that rows rebuilt on every tick repeat (states,
/// reasons, models, metrics).
pub fn shared_str(s: &str) -> Value {
    thread_local! {
        static SHARED: std::cell::RefCell<StrValues> = std::cell::RefCell::new(StrValues::new(4096));
    }
    SHARED.with_borrow_mut(|values| values.get(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_values_share_one_value_per_string_up_to_their_cap() {
        let ptr = |v: &Value| match v {
            Value::Str(s) => Arc::as_ptr(s) as *const u8,
            _ => unreachable!(),
        };
        let mut values = StrValues::new(2);
        let (a, b) = (values.get("eu-west"), values.get("eu-west"));
        assert_eq!((&a, ptr(&a)), (&Value::str("eu-west"), ptr(&b)));
        values.get("us-east");
        // A third string starts the cache over: "eu-west" is made again.
        values.get("ap-south");
        let c = values.get("eu-west");
        assert_eq!(c, a);
        assert_ne!(ptr(&c), ptr(&a));
    }

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
        let back: Value = serde_json::from_str(r#"{"Float":-0.0}"#).unwrap();
        assert_eq!(format!("{:?}", back), "0.0", "deserializing canonicalizes");
    }

    fn hash_of(v: &Value) -> u64 {
        super::stable_hash(v)
    }

    /// Checks `a` against `b` every way: ordering both ways, equality and hashes.
    fn check_pair(a: &Value, b: &Value, want: Ordering) {
        assert_eq!(a.cmp(b), want, "{a:?} vs {b:?}");
        assert_eq!(b.cmp(a), want.reverse(), "{b:?} vs {a:?}");
        assert_eq!(a == b, want.is_eq(), "{a:?} == {b:?}");
        if want.is_eq() {
            assert_eq!(hash_of(a), hash_of(b), "hashes of {a:?} and {b:?}");
        }
    }

    #[test]
    fn numbers_compare_by_value() {
        use Ordering::{Equal, Greater, Less};
        let two53 = 1i64 << 53;
        let two63 = 9_223_372_036_854_775_808.0;
        let cases = [
            (10, 2.5, Greater),
            (3, 3.0, Equal),
            (0, -0.0, Equal),
            (3, 3.5, Less),
            (-3, -3.5, Greater),
            (-3, -2.5, Less),
            (two53, two53 as f64, Equal),
            (two53 + 1, two53 as f64, Greater),
            (two53 + 1, (two53 + 2) as f64, Less),
            (-two53 - 1, -two53 as f64, Less),
            (i64::MAX, two63, Less),
            (i64::MAX, i64::MAX as f64, Less),
            (i64::MAX - 1024, 9_223_372_036_854_774_784.0, Less),
            (9_223_372_036_854_774_784, 9_223_372_036_854_774_784.0, Equal),
            (i64::MIN, -two63, Equal),
            (i64::MIN, i64::MIN as f64, Equal),
            (i64::MIN + 1, -two63, Greater),
            (i64::MIN, -1e300, Greater),
            (i64::MAX, f64::INFINITY, Less),
            (i64::MIN, f64::NEG_INFINITY, Greater),
            (i64::MAX, f64::NAN, Less),
            (i64::MIN, f64::NAN, Less),
        ];
        for (i, f, want) in cases {
            check_pair(&Value::Int(i), &Value::float(f), want);
        }
        check_pair(&Value::float(f64::NAN), &Value::float(f64::INFINITY), Greater);
        check_pair(&Value::float(f64::NAN), &Value::float(-f64::NAN), Equal);
        check_pair(&Value::float(-0.0), &Value::Int(0), Equal);
        // Inside lists and objects too.
        let list = |v: Value| Value::List([Value::str("a"), v].into());
        check_pair(&list(Value::Int(3)), &list(Value::float(3.0)), Equal);
        check_pair(&list(Value::Int(3)), &list(Value::float(2.5)), Greater);
        let object = |v: Value| Value::object(vec![(Sym::new("n"), v)]);
        check_pair(&object(Value::Int(-7)), &object(Value::float(-7.0)), Equal);
        // Sets and maps keep one of two equal numbers.
        let set: std::collections::HashSet<Value> = [Value::Int(3), Value::float(3.0), Value::float(3.5)].into();
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn kinds_order_as_before_with_numbers_as_one() {
        let ascending = [
            Value::Null,
            Value::Bool(false),
            Value::Bool(true),
            Value::float(f64::NEG_INFINITY),
            Value::Int(i64::MIN),
            Value::float(-0.5),
            Value::Int(0),
            Value::float(0.5),
            Value::Int(i64::MAX),
            Value::float(f64::INFINITY),
            Value::float(f64::NAN),
            Value::str(""),
            Value::Time(i64::MIN),
            Value::List([].into()),
            Value::object(Vec::new()),
        ];
        for (i, a) in ascending.iter().enumerate() {
            for (j, b) in ascending.iter().enumerate() {
                check_pair(a, b, i.cmp(&j));
            }
        }
    }

    #[test]
    fn json_numbers_decode_canonically() {
        let two53 = 9_007_199_254_740_992.0;
        let cases: [(&str, &str); 12] = [
            ("10", "10"),
            ("10.0", "10"),
            ("1e2", "100"),
            ("-0.0", "0"),
            ("-0", "0"),
            ("2.5", "2.5"),
            ("9007199254740992.0", "9007199254740992"),
            ("-9007199254740992.0", "-9007199254740992"),
            ("9007199254740994.0", "9007199254740994.0"),
            ("1e300", "1e+300"),
            ("9223372036854775807", "9223372036854775807"),
            ("18446744073709551615", "1.8446744073709552e+19"),
        ];
        for (text, want) in cases {
            let v = Value::from_json(serde_json::from_str(text).unwrap());
            assert_eq!(format!("{v:?}"), want, "{text}");
            assert_eq!(
                v.kind_name(),
                if want.contains(['.', 'e']) { "float" } else { "int" },
                "{text}"
            );
        }
        assert!(matches!(Value::json_number(two53), Value::Int(_)));
        assert!(matches!(Value::json_number(-two53), Value::Int(_)));
        assert!(matches!(Value::json_number(two53 * 2.0), Value::Float(_)));
        assert!(matches!(Value::json_number(f64::NAN), Value::Float(_)));
    }

    /// A number by an independent route: (band, whole part, fractional part, raw) where the
    /// band sets apart floats too large for any `i64` and NaN.
    fn reference_key(v: &Value) -> (i8, i128, f64, f64) {
        const BIG: f64 = 1e30;
        match v {
            Value::Int(i) => (0, i128::from(*i), 0.0, 0.0),
            Value::Float(f) => {
                let x = f.get();
                if x.is_nan() {
                    (2, 0, 0.0, 0.0)
                } else if x <= -BIG {
                    (-1, 0, 0.0, x)
                } else if x >= BIG {
                    (1, 0, 0.0, x)
                } else {
                    // `+ 0.0` makes the `-0.0` of `(-3.0).fract()` a `0.0`.
                    (0, x.trunc() as i128, x.fract() + 0.0, 0.0)
                }
            }
            other => panic!("not a number: {other:?}"),
        }
    }

    fn reference_cmp(a: &Value, b: &Value) -> Ordering {
        let (a, b) = (reference_key(a), reference_key(b));
        a.0.cmp(&b.0)
            .then(a.1.cmp(&b.1))
            .then(a.2.total_cmp(&b.2))
            .then(a.3.total_cmp(&b.3))
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Numbers near one another and near the edges, as ints and as floats of the same value.
        fn number() -> impl Strategy<Value = Value> {
            let edge = prop::sample::select(vec![
                0i64,
                1,
                -1,
                (1 << 53) - 1,
                1 << 53,
                (1 << 53) + 1,
                -(1 << 53),
                -(1 << 53) - 1,
                i64::MAX,
                i64::MAX - 1,
                i64::MIN,
                i64::MIN + 1,
                1 << 62,
            ]);
            let whole = prop_oneof![-20i64..20, edge, any::<i64>()];
            prop_oneof![
                whole.clone().prop_map(Value::Int),
                whole.prop_map(|i| Value::float(i as f64)),
                (-80i32..80).prop_map(|h| Value::float(f64::from(h) / 4.0)),
                prop::sample::select(vec![
                    -0.0,
                    f64::NAN,
                    f64::INFINITY,
                    f64::NEG_INFINITY,
                    9_223_372_036_854_775_808.0,
                    -9_223_372_036_854_775_808.0,
                    9_007_199_254_740_993.0,
                    1e300,
                    -1e300,
                    f64::MIN_POSITIVE,
                ])
                .prop_map(Value::float),
                any::<f64>().prop_map(Value::float),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(4000))]

            /// Order agrees with the numbers' order; equal values compare and hash equal.
            #[test]
            fn order_is_numeric(a in number(), b in number()) {
                let want = reference_cmp(&a, &b);
                prop_assert_eq!(a.cmp(&b), want, "{:?} vs {:?}", a, b);
                prop_assert_eq!(b.cmp(&a), want.reverse());
                prop_assert_eq!(a == b, want.is_eq());
                if a == b {
                    prop_assert_eq!(hash_of(&a), hash_of(&b));
                }
            }

            /// An int and the float of the same value are one value; JSON decodes it as an int
            /// up to 2^53.
            #[test]
            fn encodings_agree(i in prop_oneof![-(1i64 << 53)..=(1 << 53), any::<i64>()]) {
                let f = i as f64;
                let exact = f as i128 == i128::from(i);
                let (int, float) = (Value::Int(i), Value::float(f));
                prop_assert_eq!(int == float, exact);
                prop_assert_eq!(int.cmp(&float).is_eq(), exact);
                if exact {
                    prop_assert_eq!(hash_of(&int), hash_of(&float));
                    let decoded = Value::json_number(f);
                    prop_assert_eq!(&decoded, &int);
                    let small = f.abs() <= 9_007_199_254_740_992.0;
                    prop_assert_eq!(decoded.kind_name(), if small { "int" } else { "float" });
                }
            }

            /// Transitivity across mixed kinds, numbers or not.
            #[test]
            fn order_is_transitive(
                mut v in prop::collection::vec(
                    prop_oneof![
                        4 => number(),
                        1 => Just(Value::Null),
                        1 => any::<bool>().prop_map(Value::Bool),
                        1 => "[ab]?".prop_map(|s| Value::str(&s)),
                        1 => (-2i64..2).prop_map(Value::Time),
                        1 => number().prop_map(|n| Value::List([n].into())),
                    ],
                    3,
                ),
            ) {
                let (a, b, c) = (v.pop().unwrap(), v.pop().unwrap(), v.pop().unwrap());
                for (x, y, z) in [(&a, &b, &c), (&a, &c, &b), (&b, &a, &c), (&b, &c, &a), (&c, &a, &b), (&c, &b, &a)] {
                    if x <= y && y <= z {
                        prop_assert!(x <= z, "{:?} <= {:?} <= {:?}", x, y, z);
                    }
                    if x == y && y == z {
                        prop_assert_eq!(x, z);
                        prop_assert_eq!(hash_of(x), hash_of(z));
                    }
                }
            }
        }
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

#[cfg(test)]
mod json_text_tests {
    use proptest::prelude::*;

    use super::*;
    use crate::event::Event;

    /// Values of every kind: strings with quotes, escapes and other scripts, any float (NaN and
    /// the infinities print as null), objects with keys out of order and repeated.
    pub(crate) fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<f64>().prop_map(Value::float),
            "(\\PC|[\"\\\\\u{0}\u{1f}\u{7f}\u{2028}]){0,4}".prop_map(|s| Value::str(&s)),
            (-1i64 << 40..1i64 << 40).prop_map(Value::Time),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(|v| Value::List(v.into())),
                proptest::collection::vec((prop_oneof![Just("b"), Just("a"), Just("é"), Just("A\"")], inner), 0..4)
                    .prop_map(|f| Value::Object(f.into_iter().map(|(k, v)| (Sym::new(k), v)).collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn json_text_is_the_json_trees_text(v in value()) {
            prop_assert_eq!(v.json_text(), v.to_json().to_string());
        }

        #[test]
        fn an_events_json_text_is_its_json_trees_text(
            time in any::<i64>().prop_map(|t| t >> 20),
            fields in proptest::collection::vec(
                (prop_oneof![Just("ts"), Just("type"), Just("a"), Just("z"), Just("")], value()),
                0..5,
            ),
            type_field in prop_oneof![Just("type"), Just(""), Just("kind")],
        ) {
            let payload: Vec<(Sym, Value)> = fields.into_iter().map(|(k, v)| (Sym::new(k), v)).collect();
            let event = Event { time, kind: Sym::new("click"), payload: payload.into() };
            prop_assert_eq!(event.json_text("ts", type_field), event.to_json("ts", type_field).to_string());
        }
    }
}
