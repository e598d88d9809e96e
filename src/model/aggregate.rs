//! Aggregate states as an abelian group, so that partial aggregates can be added, subtracted and
//! merged in any order with the same result.
//!
//! A window group's state is an [`AggState`]: the number of events in the group plus one
//! [`MeasureState`] per measure. Adding the state of one event with weight `+1` inserts it,
//! with weight `-1` retracts it; [`AggState::plus`] is associative and commutative, and a state
//! whose count and measures are all zero is the identity. This is what lets the dataflow
//! pre-aggregate on each worker before exchanging, and stay identical for any worker count.
//!
//! Exactness: sums are kept in 128-bit fixed point with 32 fractional bits. Integers (and bools
//! as 0/1) enter exactly; floats are rounded once, on entry, to a multiple of 2^-32 (about
//! 2.3e-10), so sums never depend on the order of addition. `min`, `max` and `count_distinct`
//! keep a multiset of values with multiplicities, so retractions are exact too.
//!
//! Insert-only inputs: when the plan knows its input never retracts (a replayed log is
//! append-only; Materialize calls such inputs *monotonic*), `min` and `max` keep just the extreme
//! value and `count_distinct` a hash set. These states form a commutative monoid rather than a
//! group: they are never negated, and a retraction reaching one is a hard error (in release
//! builds too), because it means the plan's monotonicity derivation is wrong.

use std::collections::BTreeMap;

/// The set of an insert-only `count_distinct` (hashbrown's, which inserts a borrowed value with
/// one hash).
type FxHashSet<T> = hashbrown::HashSet<T, rustc_hash::FxBuildHasher>;

use serde::{Deserialize, Serialize};

use crate::value::Value;

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Func {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    CountDistinct,
}

impl Func {
    pub const ALL: [(&'static str, Func); 6] = [
        ("count", Func::Count),
        ("sum", Func::Sum),
        ("avg", Func::Avg),
        ("min", Func::Min),
        ("max", Func::Max),
        ("count_distinct", Func::CountDistinct),
    ];
    pub fn name(self) -> &'static str {
        Func::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

const FRACTION_BITS: u32 = 32;
const SCALE: f64 = (1u64 << FRACTION_BITS) as f64;
/// Magnitude limit for one float entering a sum (keeps 2^31 such values from overflowing).
const MAX_ABS: f64 = 1.0e28;

/// Why a value cannot enter a measure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeasureError {
    #[error("{func} of a {kind} value ({value})")]
    NotNumeric {
        func: &'static str,
        kind: &'static str,
        value: String,
    },
    #[error("{func} of {value}: out of range (|x| must be below 1e28 and finite)")]
    OutOfRange { func: &'static str, value: String },
}

impl MeasureError {
    /// The dead-letter reason.
    pub fn reason(&self) -> &'static str {
        match self {
            MeasureError::NotNumeric { .. } => "type_mismatch",
            MeasureError::OutOfRange { .. } => "out_of_range",
        }
    }
}

/// The state of one measure for one window group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MeasureState {
    /// Events (or non-null values) counted.
    Count(i64),
    /// Sum and average: number of values, fixed-point total, and how many were floats (the
    /// result is an int when none were).
    Sum { n: i64, total: i128, floats: i64 },
    /// Multiset of values, for min, max and count distinct, with the number of values whose
    /// multiplicity is positive (so `count_distinct` is O(1)).
    Values { map: BTreeMap<Value, i64>, distinct: i64 },
    /// Insert-only `min`: the least non-null value seen.
    Min(Option<Value>),
    /// Insert-only `max`: the greatest non-null value seen.
    Max(Option<Value>),
    /// Insert-only `count_distinct`: the non-null values seen.
    Set(FxHashSet<Value>),
}

impl MeasureState {
    /// The empty state; `monotonic` selects the insert-only states.
    pub fn empty(func: Func, monotonic: bool) -> MeasureState {
        match (func, monotonic) {
            (Func::Min, true) => return MeasureState::Min(None),
            (Func::Max, true) => return MeasureState::Max(None),
            (Func::CountDistinct, true) => return MeasureState::Set(FxHashSet::default()),
            _ => {}
        }
        match func {
            Func::Count => MeasureState::Count(0),
            Func::Sum | Func::Avg => MeasureState::Sum {
                n: 0,
                total: 0,
                floats: 0,
            },
            Func::Min | Func::Max | Func::CountDistinct => MeasureState::Values {
                map: BTreeMap::new(),
                distinct: 0,
            },
        }
    }

    /// Adds `value` with multiplicity `weight`. `None` means `count()` (no argument). Nulls are
    /// ignored by every function except `count()`, as in SQL.
    pub fn add(&mut self, func: Func, value: Option<&Value>, weight: i64) -> Result<(), MeasureError> {
        match (self, value) {
            (MeasureState::Count(c), None) => *c += weight,
            (_, Some(Value::Null)) => {}
            (MeasureState::Count(c), Some(_)) => *c += weight,
            (MeasureState::Sum { n, total, floats }, Some(v)) => {
                let (fixed, is_float) = to_fixed(func, v)?;
                *n += weight;
                *total += fixed * i128::from(weight);
                if is_float {
                    *floats += weight;
                }
            }
            (MeasureState::Values { map, distinct }, Some(v)) => add_value(map, distinct, v, weight),
            (MeasureState::Min(m), Some(v)) => {
                assert_insert(weight);
                if m.as_ref().is_none_or(|m| v < m) {
                    *m = Some(v.clone());
                }
            }
            (MeasureState::Max(m), Some(v)) => {
                assert_insert(weight);
                if m.as_ref().is_none_or(|m| v > m) {
                    *m = Some(v.clone());
                }
            }
            (MeasureState::Set(set), Some(v)) => {
                assert_insert(weight);
                // One hash, and a clone only for a value not yet in the set.
                set.get_or_insert_with(v, Value::clone);
            }
            (_, None) => {}
        }
        Ok(())
    }

    pub fn plus(&mut self, other: &MeasureState) {
        match (self, other) {
            (MeasureState::Count(a), MeasureState::Count(b)) => *a += b,
            (
                MeasureState::Sum { n, total, floats },
                MeasureState::Sum {
                    n: n2,
                    total: t2,
                    floats: f2,
                },
            ) => {
                *n += n2;
                *total += t2;
                *floats += f2;
            }
            (MeasureState::Values { map, distinct }, MeasureState::Values { map: other, .. }) => {
                for (v, w) in other {
                    add_value(map, distinct, v, *w);
                }
            }
            (MeasureState::Min(a), MeasureState::Min(b)) => {
                if let Some(b) = b {
                    if a.as_ref().is_none_or(|a| b < a) {
                        *a = Some(b.clone());
                    }
                }
            }
            (MeasureState::Max(a), MeasureState::Max(b)) => {
                if let Some(b) = b {
                    if a.as_ref().is_none_or(|a| b > a) {
                        *a = Some(b.clone());
                    }
                }
            }
            (MeasureState::Set(a), MeasureState::Set(b)) => a.extend(b.iter().cloned()),
            (a, b) => panic!("measure states of different functions added: {a:?} + {b:?}"),
        }
    }

    /// Negates a group state. Insert-only states are never negated (plans choose them only for
    /// inputs without retractions), so negating one is a bug.
    pub fn negate(&mut self) {
        match self {
            MeasureState::Min(_) | MeasureState::Max(_) | MeasureState::Set(_) => {
                panic!("an insert-only measure state was negated")
            }
            MeasureState::Count(c) => *c = -*c,
            MeasureState::Sum { n, total, floats } => {
                *n = -*n;
                *total = -*total;
                *floats = -*floats;
            }
            MeasureState::Values { map, distinct } => {
                map.values_mut().for_each(|w| *w = -*w);
                *distinct = map.values().filter(|w| **w > 0).count() as i64;
            }
        }
    }

    pub fn is_zero(&self) -> bool {
        match self {
            MeasureState::Count(c) => *c == 0,
            MeasureState::Sum { n, total, floats } => *n == 0 && *total == 0 && *floats == 0,
            MeasureState::Values { map, .. } => map.is_empty(),
            MeasureState::Min(m) | MeasureState::Max(m) => m.is_none(),
            MeasureState::Set(set) => set.is_empty(),
        }
    }

    /// The measure's value. Empty sums, averages, minima and maxima are null, as in SQL.
    pub fn finish(&self, func: Func) -> Value {
        match (func, self) {
            (_, MeasureState::Count(c)) => Value::Int(*c),
            (Func::Avg, MeasureState::Sum { n, total, .. }) => {
                if *n == 0 {
                    Value::Null
                } else {
                    Value::float(*total as f64 / SCALE / *n as f64)
                }
            }
            (_, MeasureState::Sum { n, total, floats }) => {
                if *n == 0 {
                    Value::Null
                } else if *floats == 0 {
                    match i64::try_from(total >> FRACTION_BITS) {
                        Ok(i) => Value::Int(i),
                        Err(_) => Value::float(*total as f64 / SCALE),
                    }
                } else {
                    Value::float(*total as f64 / SCALE)
                }
            }
            (Func::Min, MeasureState::Values { map, .. }) => positive(map.iter()).unwrap_or_default(),
            (Func::Max, MeasureState::Values { map, .. }) => positive(map.iter().rev()).unwrap_or_default(),
            (_, MeasureState::Values { distinct, .. }) => Value::Int(*distinct),
            (_, MeasureState::Min(m) | MeasureState::Max(m)) => m.clone().unwrap_or_default(),
            (_, MeasureState::Set(set)) => Value::Int(set.len() as i64),
        }
    }
}

/// Insert-only states cannot undo an insertion. The plan chooses them only for inputs that never
/// retract (`AggregatePlan::monotonic`), so a retraction here means that derivation is wrong and
/// the result would be silently wrong: stop, in release builds too.
fn assert_insert(weight: i64) {
    assert!(
        weight > 0,
        "a retraction reached an insert-only aggregate state: the plan marked this aggregate's input \
         monotonic, but a stage upstream retracts"
    );
}

/// Adds `weight` copies of `v`, keeping `distinct` and dropping zero multiplicities.
fn add_value(map: &mut BTreeMap<Value, i64>, distinct: &mut i64, v: &Value, weight: i64) {
    let before = match map.get_mut(v) {
        Some(w) => {
            let before = *w;
            *w += weight;
            if *w == 0 {
                map.remove(v);
            }
            before
        }
        None => {
            if weight != 0 {
                map.insert(v.clone(), weight);
            }
            0
        }
    };
    let after = before + weight;
    *distinct += i64::from(after > 0) - i64::from(before > 0);
}

/// Checks that `value` can enter a measure of `func`, without changing any state.
pub fn check(func: Func, value: Option<&Value>) -> Result<(), MeasureError> {
    match (func, value) {
        (Func::Sum | Func::Avg, Some(v)) if !v.is_null() => summable(func, v),
        _ => Ok(()),
    }
}

/// Whether [`to_fixed`] takes `v`, without converting it.
fn summable(func: Func, v: &Value) -> Result<(), MeasureError> {
    match v {
        Value::Int(_) | Value::Bool(_) => Ok(()),
        Value::Float(f) => {
            let x = f.get();
            if !x.is_finite() || x.abs() >= MAX_ABS {
                // A value's text is its JSON, where NaN and the infinities are `null`.
                let value = match x {
                    x if x.is_nan() => "NaN".to_string(),
                    f64::INFINITY => "inf".to_string(),
                    f64::NEG_INFINITY => "-inf".to_string(),
                    _ => v.to_string(),
                };
                return Err(MeasureError::OutOfRange {
                    func: func.name(),
                    value,
                });
            }
            Ok(())
        }
        other => Err(MeasureError::NotNumeric {
            func: func.name(),
            kind: other.kind_name(),
            value: other.to_string(),
        }),
    }
}

/// The first value with positive multiplicity (a transiently negative one is not present).
fn positive<'a>(mut it: impl Iterator<Item = (&'a Value, &'a i64)>) -> Option<Value> {
    it.find(|(_, w)| **w > 0).map(|(v, _)| v.clone())
}

/// `v` in fixed point, and whether it is a float; an error where [`summable`] gives one.
fn to_fixed(func: Func, v: &Value) -> Result<(i128, bool), MeasureError> {
    summable(func, v)?;
    Ok(match v {
        Value::Int(i) => (i128::from(*i) << FRACTION_BITS, false),
        Value::Bool(b) => (i128::from(*b) << FRACTION_BITS, false),
        Value::Float(f) => (super::round_to_i128(f.get() * SCALE), true),
        _ => unreachable!("`summable` takes numbers only"),
    })
}

/// The state of one window group: how many events it holds, and each measure's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggState {
    pub events: i64,
    pub measures: Vec<MeasureState>,
}

impl AggState {
    pub fn empty(funcs: &[Func], monotonic: bool) -> AggState {
        AggState {
            events: 0,
            measures: funcs.iter().map(|f| MeasureState::empty(*f, monotonic)).collect(),
        }
    }
    pub fn plus(&mut self, other: &AggState) {
        self.events += other.events;
        for (a, b) in self.measures.iter_mut().zip(&other.measures) {
            a.plus(b);
        }
    }
    pub fn negate(&mut self) {
        self.events = -self.events;
        self.measures.iter_mut().for_each(MeasureState::negate);
    }
    pub fn is_zero(&self) -> bool {
        self.events == 0 && self.measures.iter().all(MeasureState::is_zero)
    }
    /// The measure values, or `None` when the group holds no events (it does not exist).
    pub fn finish(&self, funcs: &[Func]) -> Option<Vec<Value>> {
        let mut values = Vec::with_capacity(funcs.len());
        self.finish_into(funcs, &mut values).then_some(values)
    }
    /// Appends the measure values to `out` and says so, or returns `false` (appending nothing)
    /// when the group holds no events.
    pub fn finish_into(&self, funcs: &[Func], out: &mut Vec<Value>) -> bool {
        if self.events <= 0 {
            return false;
        }
        out.extend(self.measures.iter().zip(funcs).map(|(m, f)| m.finish(*f)));
        true
    }
    /// Approximate heap bytes held (for state-size reporting).
    pub fn heap_bytes(&self) -> usize {
        self.measures
            .iter()
            .map(|m| match m {
                MeasureState::Values { map, .. } => map.len() * 48,
                MeasureState::Set(set) => set.capacity() * 32,
                _ => 0,
            })
            .sum::<usize>()
            + self.measures.len() * std::mem::size_of::<MeasureState>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FUNCS: [Func; 6] = [
        Func::Count,
        Func::Sum,
        Func::Avg,
        Func::Min,
        Func::Max,
        Func::CountDistinct,
    ];

    fn state_of(values: &[(i64, i64)]) -> AggState {
        let mut s = AggState::empty(&FUNCS, false);
        for (v, w) in values {
            s.events += w;
            for (m, f) in s.measures.iter_mut().zip(FUNCS) {
                let arg = if f == Func::Count { None } else { Some(Value::Int(*v)) };
                m.add(f, arg.as_ref(), *w).unwrap();
            }
        }
        s
    }

    /// An out-of-range float is named in the detail; its JSON text, `null` for NaN and the
    /// infinities, read "sum of null".
    #[test]
    fn out_of_range_details_name_nan_and_the_infinities() {
        let large = Value::float(1e30).to_string();
        for (x, text) in [
            (f64::NAN, "NaN"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (1e30, large.as_str()),
        ] {
            let err = check(Func::Sum, Some(&Value::float(x))).unwrap_err();
            assert_eq!(err.reason(), "out_of_range");
            assert!(
                err.to_string().starts_with(&format!("sum of {text}: out of range")),
                "{err}"
            );
        }
    }

    #[test]
    fn finishes_like_sql() {
        let s = state_of(&[(3, 1), (1, 1), (3, 1)]);
        assert_eq!(
            s.finish(&FUNCS).unwrap(),
            vec![
                Value::Int(3),
                Value::Int(7),
                Value::float(7.0 / 3.0),
                Value::Int(1),
                Value::Int(3),
                Value::Int(2)
            ]
        );
        assert_eq!(state_of(&[]).finish(&FUNCS), None);
    }

    proptest! {
        #[test]
        fn insert_only_states_agree_with_multisets(a in prop::collection::vec(-5i64..5, 0..30), split in 0usize..30) {
            let build = |vals: &[i64], monotonic: bool| {
                let mut s = AggState::empty(&FUNCS, monotonic);
                for v in vals {
                    s.events += 1;
                    for (m, f) in s.measures.iter_mut().zip(FUNCS) {
                        let arg = if f == Func::Count { None } else { Some(Value::Int(*v)) };
                        m.add(f, arg.as_ref(), 1).unwrap();
                    }
                }
                s
            };
            let split = split.min(a.len());
            let mut merged = build(&a[..split], true);
            merged.plus(&build(&a[split..], true));
            prop_assert_eq!(merged.finish(&FUNCS), build(&a, false).finish(&FUNCS));
        }
    }

    #[test]
    #[should_panic(expected = "a retraction reached an insert-only aggregate state")]
    fn insert_only_states_refuse_retractions() {
        let mut m = MeasureState::empty(Func::Max, true);
        m.add(Func::Max, Some(&Value::Int(3)), 1).unwrap();
        let _ = m.add(Func::Max, Some(&Value::Int(3)), -1);
    }

    #[test]
    fn nulls_and_types() {
        let mut m = MeasureState::empty(Func::Sum, false);
        m.add(Func::Sum, Some(&Value::Null), 1).unwrap();
        assert_eq!(m.finish(Func::Sum), Value::Null);
        m.add(Func::Sum, Some(&Value::Bool(true)), 1).unwrap();
        m.add(Func::Sum, Some(&Value::float(0.5)), 1).unwrap();
        assert_eq!(m.finish(Func::Sum), Value::float(1.5));
        let err = m.add(Func::Sum, Some(&Value::str("x")), 1).unwrap_err();
        assert_eq!(err.reason(), "type_mismatch");
        let err = m.add(Func::Sum, Some(&Value::float(f64::INFINITY)), 1).unwrap_err();
        assert_eq!(err.reason(), "out_of_range");
        let mut c = MeasureState::empty(Func::Count, false);
        c.add(Func::Count, Some(&Value::Null), 1).unwrap();
        c.add(Func::Count, None, 1).unwrap();
        assert_eq!(c.finish(Func::Count), Value::Int(1));
    }

    /// `10` and `2.5` order by value; `3` and `3.0` are one value, also when one of them is
    /// retracted, in the multiset and in the insert-only states.
    #[test]
    fn ints_and_floats_are_one_value_in_min_max_and_distinct() {
        let funcs = [Func::Min, Func::Max, Func::CountDistinct];
        let finish = |updates: &[(Value, i64)], monotonic: bool| {
            let mut s = AggState::empty(&funcs, monotonic);
            for (v, w) in updates {
                s.events += w;
                for (m, f) in s.measures.iter_mut().zip(funcs) {
                    m.add(f, Some(v), *w).unwrap();
                }
            }
            s.finish(&funcs)
        };
        let (ten, half, three, three_f) = (Value::Int(10), Value::float(2.5), Value::Int(3), Value::float(3.0));
        for monotonic in [false, true] {
            let got = finish(&[(ten.clone(), 1), (half.clone(), 1)], monotonic);
            assert_eq!(got, Some(vec![half.clone(), ten.clone(), Value::Int(2)]));
            let got = finish(&[(three.clone(), 1), (three_f.clone(), 1)], monotonic);
            assert_eq!(got, Some(vec![three.clone(), three.clone(), Value::Int(1)]));
        }
        let retracted = [
            (three.clone(), 1),
            (three_f.clone(), 1),
            (three.clone(), -1),
            (half.clone(), 1),
        ];
        assert_eq!(
            finish(&retracted, false),
            Some(vec![half.clone(), three.clone(), Value::Int(2)])
        );
        let gone = [
            (three.clone(), 1),
            (three_f.clone(), 1),
            (three_f, -1),
            (three, -1),
            (half.clone(), 1),
        ];
        assert_eq!(finish(&gone, false), Some(vec![half.clone(), half, Value::Int(1)]));
    }

    #[test]
    fn float_sums_do_not_depend_on_order() {
        let xs = [0.1, 1e10, -1e10, 0.2, 0.3, 1e-7];
        let sum = |order: &[usize]| {
            let mut m = MeasureState::empty(Func::Sum, false);
            for i in order {
                m.add(Func::Sum, Some(&Value::float(xs[*i])), 1).unwrap();
            }
            m.finish(Func::Sum)
        };
        assert_eq!(sum(&[0, 1, 2, 3, 4, 5]), sum(&[5, 4, 3, 2, 1, 0]));
        assert_eq!(sum(&[1, 0, 2, 3, 4, 5]), sum(&[2, 4, 1, 3, 5, 0]));
    }

    proptest! {
        #[test]
        fn group_laws(a in prop::collection::vec((-5i64..5, -2i64..3), 0..20),
                      b in prop::collection::vec((-5i64..5, -2i64..3), 0..20)) {
            let (sa, sb) = (state_of(&a), state_of(&b));
            let mut ab = sa.clone();
            ab.plus(&sb);
            let mut ba = sb.clone();
            ba.plus(&sa);
            prop_assert_eq!(&ab, &ba);
            let all: Vec<(i64, i64)> = a.iter().chain(&b).copied().collect();
            prop_assert_eq!(&ab, &state_of(&all));
            let mut zero = ab.clone();
            let mut neg = ab.clone();
            neg.negate();
            zero.plus(&neg);
            prop_assert!(zero.is_zero());
        }
    }
}
