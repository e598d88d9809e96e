//! Arrow arrays to [`Value`]s: each column is downcast once per batch into a [`Col`], then read
//! row by row without further dynamic dispatch on the data type.
//!
//! A dictionary-encoded string column ([`Col::Dict`]) makes one shared string per dictionary
//! entry that the batch uses, not one per row: its rows' values share it. The strings are
//! made per batch, so a reader decoding the next batch never touches the reference counts of
//! the events a worker is dropping.

use std::cell::OnceCell;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, GenericListArray, GenericStringArray, OffsetSizeTrait, PrimitiveArray,
    StringViewArray, StructArray,
};
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, TimeUnit, UInt16Type,
    UInt32Type, UInt64Type, UInt8Type,
};

use crate::value::{Sym, Value};

/// A column, downcast once, ready for per-row reads.
pub enum Col<'a> {
    Null,
    Bool(&'a BooleanArray),
    I8(&'a PrimitiveArray<Int8Type>),
    I16(&'a PrimitiveArray<Int16Type>),
    I32(&'a PrimitiveArray<Int32Type>),
    I64(&'a PrimitiveArray<Int64Type>),
    U8(&'a PrimitiveArray<UInt8Type>),
    U16(&'a PrimitiveArray<UInt16Type>),
    U32(&'a PrimitiveArray<UInt32Type>),
    U64(&'a PrimitiveArray<UInt64Type>),
    /// Half floats, widened once per batch.
    F16(PrimitiveArray<Float64Type>),
    F32(&'a PrimitiveArray<Float32Type>),
    F64(&'a PrimitiveArray<Float64Type>),
    Str(&'a GenericStringArray<i32>),
    LargeStr(&'a GenericStringArray<i64>),
    View(&'a StringViewArray),
    /// Dictionary-encoded strings (Int32 keys): each entry's value is made on its first use in
    /// the batch, and shared by the rows after it. A dictionary much larger than the batch
    /// (about one entry per row) is read as plain strings: sharing would save nothing.
    Dict(DictCol<'a>),
    /// Timestamps (converted to Int64 in the owned `Cast` storage) with a divisor to milliseconds.
    Time(PrimitiveArray<Int64Type>, i64, i64),
    Date(&'a PrimitiveArray<Date32Type>),
    Struct(&'a StructArray, Vec<(Sym, Col<'a>)>),
    List(ListCol<'a>),
    /// Anything else, cast to strings.
    Text(Arc<GenericStringArray<i32>>),
}

/// A dictionary column of strings: keys, the dictionary, and the values made so far.
pub struct DictCol<'a> {
    keys: &'a PrimitiveArray<Int32Type>,
    values: &'a GenericStringArray<i32>,
    /// One cell per dictionary entry, or none when the dictionary is too large to share.
    made: Option<Vec<OnceCell<Value>>>,
}

impl DictCol<'_> {
    fn get(&self, row: usize) -> Value {
        if self.keys.is_null(row) {
            return Value::Null;
        }
        let key = self.keys.value(row) as usize;
        if self.values.is_null(key) {
            return Value::Null;
        }
        match &self.made {
            Some(made) => made[key].get_or_init(|| Value::str(self.values.value(key))).clone(),
            None => Value::str(self.values.value(key)),
        }
    }

    fn str_at(&self, row: usize) -> Option<&str> {
        let key = self.keys.is_valid(row).then(|| self.keys.value(row) as usize)?;
        self.values.is_valid(key).then(|| self.values.value(key))
    }
}

/// A dictionary of strings with Int32 keys, or `None` for any other dictionary (read as text).
fn dict(array: &ArrayRef) -> Option<DictCol<'_>> {
    let dict = array.as_dictionary_opt::<Int32Type>()?;
    let values = dict.values().as_string_opt::<i32>()?;
    // Sharing pays when entries repeat within the batch.
    let share = values.len() <= 2 * dict.len().max(1);
    Some(DictCol {
        keys: dict.keys(),
        values,
        made: share.then(|| (0..values.len()).map(|_| OnceCell::new()).collect()),
    })
}

/// A list column: offsets and the child column.
pub struct ListCol<'a> {
    nulls: Option<&'a arrow::buffer::NullBuffer>,
    offsets: Vec<usize>,
    child: Box<Col<'a>>,
}

fn list<'a, O: OffsetSizeTrait>(array: &'a GenericListArray<O>) -> ListCol<'a> {
    ListCol {
        nulls: array.nulls(),
        offsets: array.value_offsets().iter().map(|o| o.as_usize()).collect(),
        child: Box::new(Col::new(array.values())),
    }
}

impl<'a> Col<'a> {
    /// Downcasts `array` (recursively for structs and lists).
    pub fn new(array: &'a ArrayRef) -> Col<'a> {
        match array.data_type() {
            DataType::Null => Col::Null,
            DataType::Boolean => Col::Bool(array.as_boolean()),
            DataType::Int8 => Col::I8(array.as_primitive()),
            DataType::Int16 => Col::I16(array.as_primitive()),
            DataType::Int32 => Col::I32(array.as_primitive()),
            DataType::Int64 => Col::I64(array.as_primitive()),
            DataType::UInt8 => Col::U8(array.as_primitive()),
            DataType::UInt16 => Col::U16(array.as_primitive()),
            DataType::UInt32 => Col::U32(array.as_primitive()),
            DataType::UInt64 => Col::U64(array.as_primitive()),
            DataType::Float16 => {
                let wide = cast(array, &DataType::Float64).expect("half floats cast to Float64");
                Col::F16(wide.as_primitive::<Float64Type>().clone())
            }
            DataType::Float32 => Col::F32(array.as_primitive()),
            DataType::Float64 => Col::F64(array.as_primitive()),
            DataType::Utf8 => Col::Str(array.as_string()),
            DataType::LargeUtf8 => Col::LargeStr(array.as_string()),
            DataType::Utf8View => Col::View(array.as_string_view()),
            DataType::Timestamp(unit, _) => {
                let ints = cast(array, &DataType::Int64).expect("timestamps cast to Int64");
                let (mul, div) = unit_to_ms(*unit);
                Col::Time(ints.as_primitive::<Int64Type>().clone(), mul, div)
            }
            DataType::Date32 => Col::Date(array.as_primitive()),
            DataType::Struct(fields) => {
                let s = array.as_struct();
                let cols = fields
                    .iter()
                    .zip(s.columns())
                    .map(|(f, c)| (Sym::new(f.name()), Col::new(c)))
                    .collect();
                Col::Struct(s, cols)
            }
            DataType::List(_) => Col::List(list(array.as_list::<i32>())),
            DataType::LargeList(_) => Col::List(list(array.as_list::<i64>())),
            DataType::Dictionary(..) => dict(array).map_or_else(|| Col::text(array), Col::Dict),
            _ => Col::text(array),
        }
    }

    /// Anything else, cast to strings (or null when it cannot be).
    fn text(array: &ArrayRef) -> Col<'a> {
        match cast(array, &DataType::Utf8) {
            Ok(text) => Col::Text(Arc::new(text.as_string::<i32>().clone())),
            Err(_) => Col::Null,
        }
    }

    /// The value at `row`.
    pub fn get(&self, row: usize) -> Value {
        macro_rules! prim {
            ($a:expr, $f:expr) => {
                if $a.is_null(row) {
                    Value::Null
                } else {
                    $f($a.value(row))
                }
            };
        }
        match self {
            Col::Null => Value::Null,
            Col::Bool(a) => prim!(a, Value::Bool),
            Col::I8(a) => prim!(a, |v| Value::Int(i64::from(v))),
            Col::I16(a) => prim!(a, |v| Value::Int(i64::from(v))),
            Col::I32(a) => prim!(a, |v| Value::Int(i64::from(v))),
            Col::I64(a) => prim!(a, Value::Int),
            Col::U8(a) => prim!(a, |v| Value::Int(i64::from(v))),
            Col::U16(a) => prim!(a, |v| Value::Int(i64::from(v))),
            Col::U32(a) => prim!(a, |v| Value::Int(i64::from(v))),
            Col::U64(a) => prim!(a, |v: u64| i64::try_from(v)
                .map(Value::Int)
                .unwrap_or(Value::float(v as f64))),
            Col::F16(a) => prim!(a, Value::float),
            Col::F32(a) => prim!(a, |v| Value::float(f64::from(v))),
            Col::F64(a) => prim!(a, Value::float),
            Col::Str(a) => prim!(a, Value::str),
            Col::LargeStr(a) => prim!(a, Value::str),
            Col::View(a) => prim!(a, Value::str),
            Col::Dict(d) => d.get(row),
            Col::Time(a, mul, div) => prim!(a, |v: i64| Value::Time(scale_to_ms(v, *mul, *div))),
            Col::Date(a) => prim!(a, |d: i32| Value::Time(i64::from(d) * 86_400_000)),
            Col::Struct(s, cols) => {
                if s.is_null(row) {
                    Value::Null
                } else {
                    Value::object(cols.iter().map(|(k, c)| (*k, c.get(row))).collect())
                }
            }
            Col::List(l) => {
                if l.nulls.is_some_and(|n| n.is_null(row)) {
                    Value::Null
                } else {
                    Value::List((l.offsets[row]..l.offsets[row + 1]).map(|i| l.child.get(i)).collect())
                }
            }
            Col::Text(a) => prim!(a, Value::str),
        }
    }

    /// Event time in milliseconds at `row` (see [`time_ms`]).
    pub fn time_ms(&self, row: usize, unit_ms: f64) -> Result<i64, String> {
        time_ms(self.get(row), unit_ms)
    }
}

/// Event time in milliseconds: timestamps directly, integers and floats scaled by `unit_ms`,
/// strings parsed as RFC 3339.
pub fn time_ms(value: Value, unit_ms: f64) -> Result<i64, String> {
    let scaled = |x: f64| -> Result<i64, String> {
        let ms = x * unit_ms;
        if ms.is_finite() && ms.abs() < 9.0e15 {
            Ok(ms.floor() as i64)
        } else {
            Err(format!("time {x} is out of range"))
        }
    };
    match value {
        Value::Time(ms) => Ok(ms),
        Value::Int(i) if unit_ms == 1.0 => Ok(i),
        Value::Int(i) => scaled(i as f64),
        Value::Float(f) => scaled(f.get()),
        Value::Str(s) => crate::value::parse_time(&s).ok_or_else(|| format!("`{s}` is not an RFC 3339 time")),
        Value::Null => Err("time is null".into()),
        other => Err(format!("a {} is not a time", other.kind_name())),
    }
}

/// `v` in a unit with multiplier `mul` and divisor `div` to milliseconds (see [`unit_to_ms`]).
/// The divisors of the units are matched as constants, which the compiler divides by with a
/// multiplication: a division by a runtime value costs more than the rest of reading a time.
#[inline]
pub fn scale_to_ms(v: i64, mul: i64, div: i64) -> i64 {
    match (mul, div) {
        (1, 1) => v,
        (1, 1000) => v.div_euclid(1000),
        (1, 1_000_000) => v.div_euclid(1_000_000),
        (mul, div) => v.saturating_mul(mul).div_euclid(div),
    }
}

/// Multiplier and divisor from a time unit to milliseconds.
pub fn unit_to_ms(unit: TimeUnit) -> (i64, i64) {
    match unit {
        TimeUnit::Second => (1000, 1),
        TimeUnit::Millisecond => (1, 1),
        TimeUnit::Microsecond => (1, 1000),
        TimeUnit::Nanosecond => (1, 1_000_000),
    }
}

impl Col<'_> {
    /// The string at `row` without allocating, for string columns.
    pub fn str_at(&self, row: usize) -> Option<&str> {
        match self {
            Col::Str(a) if !a.is_null(row) => Some(a.value(row)),
            Col::LargeStr(a) if !a.is_null(row) => Some(a.value(row)),
            Col::View(a) if !a.is_null(row) => Some(a.value(row)),
            Col::Text(a) if !a.is_null(row) => Some(a.value(row)),
            Col::Dict(d) => d.str_at(row),
            _ => None,
        }
    }
}

/// Interns event-type strings with a small cache (types are few; the cache is bounded).
#[derive(Default)]
pub struct TypeCache {
    entries: Vec<(Box<str>, Sym)>,
}

impl TypeCache {
    pub fn get(&mut self, s: &str) -> Sym {
        if let Some((_, sym)) = self.entries.iter().find(|(k, _)| &**k == s) {
            return *sym;
        }
        let sym = Sym::new(s);
        if self.entries.len() < 64 {
            self.entries.push((s.into(), sym));
        }
        sym
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{DictionaryArray, Int32Array, StringArray};

    /// A dictionary column reads as its strings, nulls (of keys or of entries) as nulls,
    /// whether its entries are shared (a small dictionary) or not (one larger than twice the
    /// batch).
    #[test]
    fn a_dictionary_reads_as_its_strings_shared_when_small() {
        let values = StringArray::from(vec![Some("eu"), None, Some("us")]);
        let keys = Int32Array::from(vec![Some(0), Some(2), None, Some(1), Some(0), Some(2)]);
        let small: ArrayRef = Arc::new(DictionaryArray::new(keys, Arc::new(values)));
        let want = [
            Value::str("eu"),
            Value::str("us"),
            Value::Null,
            Value::Null,
            Value::str("eu"),
            Value::str("us"),
        ];
        let col = Col::new(&small);
        assert!(matches!(&col, Col::Dict(d) if d.made.is_some()));
        let got: Vec<Value> = (0..6).map(|r| col.get(r)).collect();
        assert_eq!(got, want);
        let (Value::Str(a), Value::Str(b)) = (&got[0], &got[4]) else {
            unreachable!()
        };
        assert!(Arc::ptr_eq(a, b));
        assert_eq!((col.str_at(1), col.str_at(2), col.str_at(3)), (Some("us"), None, None));

        let many: Vec<String> = (0..100).map(|i| format!("v{i}")).collect();
        let keys = Int32Array::from(vec![Some(99), None, Some(7)]);
        let large: ArrayRef = Arc::new(DictionaryArray::new(keys, Arc::new(StringArray::from(many))));
        let col = Col::new(&large);
        assert!(matches!(&col, Col::Dict(d) if d.made.is_none()));
        assert_eq!(
            (0..3).map(|r| col.get(r)).collect::<Vec<_>>(),
            [Value::str("v99"), Value::Null, Value::str("v7")]
        );
    }

    #[test]
    fn times_scale_to_milliseconds_as_a_division_does() {
        for unit in [
            TimeUnit::Second,
            TimeUnit::Millisecond,
            TimeUnit::Microsecond,
            TimeUnit::Nanosecond,
        ] {
            let (mul, div) = unit_to_ms(unit);
            for v in [
                0,
                1,
                -1,
                999,
                -999,
                1_000,
                -1_001,
                1_709_510_400_123_456,
                -1_709_510_400_123_456,
                i64::MAX,
                i64::MIN,
            ] {
                assert_eq!(
                    scale_to_ms(v, mul, div),
                    v.saturating_mul(mul).div_euclid(div),
                    "{v} {unit:?}"
                );
            }
        }
    }

    /// A dictionary of anything but strings with Int32 keys is read as text, as before.
    #[test]
    fn other_dictionaries_are_read_as_text() {
        let keys = arrow::array::Int8Array::from(vec![0, 1, 0]);
        let dict: ArrayRef = Arc::new(DictionaryArray::new(keys, Arc::new(StringArray::from(vec!["x", "y"]))));
        let col = Col::new(&dict);
        assert!(matches!(col, Col::Text(_)));
        assert_eq!(col.get(1), Value::str("y"));
    }
}
