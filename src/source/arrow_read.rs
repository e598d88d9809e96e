//! Arrow arrays to [`Value`]s: each column is downcast once per batch into a [`Col`], then read
//! row by row without further dynamic dispatch on the data type.

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
    /// Timestamps (converted to Int64 in the owned `Cast` storage) with a divisor to milliseconds.
    Time(PrimitiveArray<Int64Type>, i64, i64),
    Date(&'a PrimitiveArray<Date32Type>),
    Struct(&'a StructArray, Vec<(Sym, Col<'a>)>),
    List(ListCol<'a>),
    /// Anything else, cast to strings.
    Text(Arc<GenericStringArray<i32>>),
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
            _ => match cast(array, &DataType::Utf8) {
                Ok(text) => Col::Text(Arc::new(text.as_string::<i32>().clone())),
                Err(_) => Col::Null,
            },
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
            Col::Time(a, mul, div) => prim!(a, |v: i64| Value::Time(v.saturating_mul(*mul).div_euclid(*div))),
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
