//! Dynamic rows ([`Value`]s) to Arrow record batches, and record batches to Parquet files.
//!
//! [`rows_to_batch`] infers each column's Arrow type from its values:
//!
//! | values (nulls ignored)      | Arrow type                                    |
//! |-----------------------------|-----------------------------------------------|
//! | ints                        | `Int64`                                       |
//! | floats, or ints and floats  | `Float64`                                     |
//! | bools                       | `Boolean`                                     |
//! | strings                     | `Utf8`                                        |
//! | timestamps                  | `Timestamp(Millisecond, "UTC")`               |
//! | lists                       | `List` of the elements' inferred type         |
//! | objects                     | `Struct` of the union of their fields, sorted |
//! | only nulls                  | `Utf8`, all null (DuckDB dislikes `Null`)     |
//! | any other mix               | `Utf8`: strings as-is, others as JSON text    |
//!
//! Inference recurses into list elements and object fields; an object without fields becomes
//! `Utf8` text (`{}`) because Parquet has no empty groups.
//!
//! [`rows_to_batch_with_schema`] coerces values into an existing schema instead: ints widen to
//! floats, anything becomes text in a `Utf8` column, and a value that does not fit its column
//! becomes null. The sinks never rely on that last rule: a part of an output has the schema of
//! the output's [`Shapes`] so far, widened by its own values first, so that they fit.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, ListArray, NullArray, RecordBatch, RecordBatchOptions,
    StringBuilder, StructArray, TimestampMillisecondArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Type as PhysicalType};
use parquet::file::properties::{WriterProperties, WriterPropertiesBuilder};

use super::WriteError;
use crate::value::{lookup, Sym, Value};

/// Rows per Parquet row group. Row groups are the engine's unit of parallel reading, so they are
/// kept moderate rather than Parquet's default of a million rows.
pub const ROW_GROUP_ROWS: usize = 65_536;

/// The dictionary a float column chunk of an output part may build before the writer falls back
/// to plain encoding (parquet's default is 1 MiB, more than a row group of distinct doubles
/// takes, so it never fell back). Measures, forecasts and errors are mostly distinct floats:
/// dictionary-encoded they take 8 bytes in the dictionary plus an index each, and hashing every
/// one into the dictionary was 17% of the parts thread writing the forecast bench's outputs. A
/// column of few distinct values (up to 1,024 per chunk) stays dictionary-encoded.
pub const FLOAT_DICTIONARY_BYTES: usize = 8 * 1024;

/// The writer settings every file sluice writes has: `compression`, [`ROW_GROUP_ROWS`] rows per
/// row group.
fn properties(compression: Compression) -> WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
}

/// The inferred shape of a column (or of list elements and struct fields, recursively).
#[derive(Clone, Debug, PartialEq)]
enum Shape {
    Null,
    Bool,
    Int,
    Float,
    Str,
    Time,
    List(Box<Shape>),
    /// Fields in the order first seen; the Arrow struct sorts them by name.
    Struct(Vec<(Sym, Shape)>),
    /// A mix of kinds: rendered as text.
    Text,
}

impl Shape {
    /// Widens the shape so that it also covers `v`.
    fn absorb(&mut self, v: &Value) {
        if v.is_null() || *self == Shape::Text {
            return;
        }
        if *self == Shape::Null {
            *self = match v {
                Value::Bool(_) => Shape::Bool,
                Value::Int(_) => Shape::Int,
                Value::Float(_) => Shape::Float,
                Value::Str(_) => Shape::Str,
                Value::Time(_) => Shape::Time,
                Value::List(_) => Shape::List(Box::new(Shape::Null)),
                Value::Object(_) => Shape::Struct(Vec::new()),
                Value::Null => Shape::Null,
            };
        }
        match (self, v) {
            (Shape::Bool, Value::Bool(_))
            | (Shape::Int, Value::Int(_))
            | (Shape::Float, Value::Float(_) | Value::Int(_))
            | (Shape::Str, Value::Str(_))
            | (Shape::Time, Value::Time(_)) => {}
            (s @ Shape::Int, Value::Float(_)) => *s = Shape::Float,
            (Shape::List(elem), Value::List(items)) => items.iter().for_each(|i| elem.absorb(i)),
            (Shape::Struct(fields), Value::Object(obj)) => {
                // Objects of one shape list their fields in one order: the field at the same
                // place is tried first, and names compare as pointers.
                for (i, (k, v)) in obj.iter().enumerate() {
                    let at = match fields.get(i) {
                        Some((name, _)) if name == k => i,
                        _ => match fields.iter().position(|(name, _)| name == k) {
                            Some(at) => at,
                            None => {
                                fields.push((*k, Shape::Null));
                                fields.len() - 1
                            }
                        },
                    };
                    fields[at].1.absorb(v);
                }
            }
            (s, _) => *s = Shape::Text,
        }
    }

    /// Widens the shape so that it also covers what `other` covers: the shape of the values
    /// of both, as if `other`'s had been absorbed.
    fn join(&mut self, other: &Shape) {
        match (&mut *self, other) {
            (_, Shape::Null) | (Shape::Text, _) => {}
            (s @ Shape::Null, o) => *s = o.clone(),
            (Shape::Bool, Shape::Bool)
            | (Shape::Int, Shape::Int)
            | (Shape::Float, Shape::Float | Shape::Int)
            | (Shape::Str, Shape::Str)
            | (Shape::Time, Shape::Time) => {}
            (s @ Shape::Int, Shape::Float) => *s = Shape::Float,
            (Shape::List(a), Shape::List(b)) => a.join(b),
            (Shape::Struct(fields), Shape::Struct(others)) => {
                for (name, o) in others {
                    match fields.iter_mut().find(|(n, _)| n == name) {
                        Some((_, s)) => s.join(o),
                        None => fields.push((*name, o.clone())),
                    }
                }
            }
            (s, _) => *s = Shape::Text,
        }
    }

    /// The array of `values` in this shape, built in the one pass that checks that they fit it;
    /// `None` when one does not (or for shapes that only a pass of [`Shape::absorb`] tells:
    /// nulls so far, lists and structs).
    fn build_fitting(&self, values: &[&Value]) -> Option<ArrayRef> {
        fn fit<T>(values: &[&Value], f: impl Fn(&Value) -> Result<Option<T>, ()>) -> Option<Vec<Option<T>>> {
            values.iter().map(|v| f(v)).collect::<Result<_, ()>>().ok()
        }
        let array: ArrayRef = match self {
            Shape::Text => text(values),
            Shape::Bool => Arc::new(BooleanArray::from(fit(values, |v| match v {
                Value::Bool(b) => Ok(Some(*b)),
                Value::Null => Ok(None),
                _ => Err(()),
            })?)),
            Shape::Int => Arc::new(Int64Array::from(fit(values, |v| match v {
                Value::Int(i) => Ok(Some(*i)),
                Value::Null => Ok(None),
                _ => Err(()),
            })?)),
            Shape::Float => Arc::new(Float64Array::from(fit(values, |v| match v {
                Value::Int(i) => Ok(Some(*i as f64)),
                Value::Float(f) => Ok(Some(f.get())),
                Value::Null => Ok(None),
                _ => Err(()),
            })?)),
            Shape::Time => Arc::new(
                TimestampMillisecondArray::from(fit(values, |v| match v {
                    Value::Time(ms) => Ok(Some(*ms)),
                    Value::Null => Ok(None),
                    _ => Err(()),
                })?)
                .with_timezone("UTC"),
            ),
            Shape::Str => {
                let mut b = StringBuilder::with_capacity(values.len(), values.len() * 8);
                for v in values {
                    match v {
                        Value::Str(s) => b.append_value(s),
                        Value::Null => b.append_null(),
                        _ => return None,
                    }
                }
                Arc::new(b.finish())
            }
            Shape::Null | Shape::List(_) | Shape::Struct(_) => return None,
        };
        Some(array)
    }

    /// For a column that has held only nulls: the array of `values` in the shape of its first
    /// value, when every value fits that shape (which is then the column's), built in one pass.
    fn build_guessed(&mut self, values: &[&Value]) -> Option<ArrayRef> {
        if *self != Shape::Null {
            return None;
        }
        let mut guess = Shape::Null;
        guess.absorb(values.iter().find(|v| !v.is_null())?);
        let array = guess.build_fitting(values)?;
        *self = guess;
        Some(array)
    }

    fn data_type(&self) -> DataType {
        match self {
            Shape::Null | Shape::Str | Shape::Text => DataType::Utf8,
            Shape::Bool => DataType::Boolean,
            Shape::Int => DataType::Int64,
            Shape::Float => DataType::Float64,
            Shape::Time => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            Shape::List(elem) => DataType::List(Arc::new(Field::new_list_field(elem.data_type(), true))),
            Shape::Struct(fields) if fields.is_empty() => DataType::Utf8,
            Shape::Struct(fields) => {
                let mut sorted: Vec<&(Sym, Shape)> = fields.iter().collect();
                sorted.sort_by_key(|(name, _)| name.as_str());
                DataType::Struct(
                    sorted
                        .into_iter()
                        .map(|(name, s)| Field::new(name.as_str(), s.data_type(), true))
                        .collect(),
                )
            }
        }
    }
}

impl Shape {
    /// The shape whose [`Shape::data_type`] is `dt`: what a column of that type holds. `Utf8`
    /// holds anything as text; a type inference never makes is text too.
    fn of_type(dt: &DataType) -> Shape {
        match dt {
            DataType::Boolean => Shape::Bool,
            DataType::Int64 => Shape::Int,
            DataType::Float64 => Shape::Float,
            DataType::Timestamp(TimeUnit::Millisecond, _) => Shape::Time,
            DataType::List(field) => Shape::List(Box::new(Shape::of_type(field.data_type()))),
            DataType::Struct(fields) if !fields.is_empty() => Shape::Struct(
                fields
                    .iter()
                    .map(|f| (Sym::new(f.name()), Shape::of_type(f.data_type())))
                    .collect(),
            ),
            _ => Shape::Text,
        }
    }
}

/// The shapes of an output's columns over the parts written so far, from which each part's
/// schema is inferred: an output keeps one schema across its parts, widened when a part holds
/// values its columns cannot (ints becoming floats, a struct's new fields, another kind as
/// text). A column that has held only nulls takes the type of its first values.
#[derive(Clone, Debug, Default)]
pub struct Shapes(Vec<Shape>);

impl Shapes {
    /// The shapes of the columns of `schema` (an output's last part on disk).
    pub fn of_schema(schema: &Schema) -> Shapes {
        Shapes(schema.fields().iter().map(|f| Shape::of_type(f.data_type())).collect())
    }

    /// Builds a part's batch of `columns` (named `names`), each in its column's shape when its
    /// values fit it, and otherwise in the shape widened by them (for the first part, the
    /// shapes [`infer_schema`] gives). A column whose values fit is read once: building it
    /// checks them.
    pub fn build(&mut self, names: &[String], columns: &[Vec<&Value>]) -> Result<RecordBatch, WriteError> {
        if self.0.len() != columns.len() {
            self.0 = vec![Shape::Null; columns.len()];
        }
        if names.len() != columns.len() {
            return Err(WriteError::RowWidth {
                row: 0,
                got: columns.len(),
                expected: names.len(),
            });
        }
        let rows = equal_lengths(columns)?;
        let mut fields = Vec::with_capacity(columns.len());
        let mut arrays = Vec::with_capacity(columns.len());
        for ((name, values), shape) in names.iter().zip(columns).zip(&mut self.0) {
            let array = match shape.build_fitting(values).or_else(|| shape.build_guessed(values)) {
                Some(array) => array,
                None => {
                    values.iter().for_each(|v| shape.absorb(v));
                    build(&shape.data_type(), values).map_err(|source| WriteError::Column {
                        column: name.clone(),
                        source,
                    })?
                }
            };
            fields.push(Field::new(name, array.data_type().clone(), true));
            arrays.push(array);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options).map_err(|source| {
            WriteError::Column {
                column: "(batch)".into(),
                source,
            }
        })
    }

    /// Widens these shapes so that they also cover `other`'s (another worker's, of the same
    /// output).
    pub fn join(&mut self, other: &Shapes) {
        if self.0.len() != other.0.len() {
            if self.0.iter().all(|s| *s == Shape::Null) {
                self.0.clone_from(&other.0);
            }
            return;
        }
        self.0.iter_mut().zip(&other.0).for_each(|(s, o)| s.join(o));
    }
}

/// The schema [`rows_to_batch`] infers for columns named `names` holding `columns`' values.
pub fn infer_schema(names: &[String], columns: &[Vec<&Value>]) -> SchemaRef {
    let fields: Vec<Field> = (names.iter().zip(columns))
        .map(|(name, values)| Field::new(name, infer_type(values.iter().copied()), true))
        .collect();
    Arc::new(Schema::new(fields))
}

/// The Arrow type [`rows_to_batch`] infers for a column holding `values`.
pub fn infer_type<'a>(values: impl IntoIterator<Item = &'a Value>) -> DataType {
    let mut shape = Shape::Null;
    values.into_iter().for_each(|v| shape.absorb(v));
    shape.data_type()
}

/// Builds a batch from rows of values, inferring column types (see the module docs).
pub fn rows_to_batch(columns: &[String], rows: &[Vec<Value>]) -> Result<RecordBatch, WriteError> {
    check_widths(columns.len(), rows)?;
    columns_to_batch(None, columns, &by_column(columns.len(), rows))
}

/// Builds a batch in an existing schema, coercing values (see the module docs).
pub fn rows_to_batch_with_schema(schema: &SchemaRef, rows: &[Vec<Value>]) -> Result<RecordBatch, WriteError> {
    check_widths(schema.fields().len(), rows)?;
    columns_to_batch(Some(schema), &[], &by_column(schema.fields().len(), rows))
}

/// The rows' values by column, as references.
fn by_column(width: usize, rows: &[Vec<Value>]) -> Vec<Vec<&Value>> {
    (0..width).map(|c| rows.iter().map(|r| &r[c]).collect()).collect()
}

/// Builds a batch from its columns' values, in `schema` when given, else with each column's
/// type inferred under its name in `names`: for callers that gather columns from rows without
/// copying values. Every column holds one value per row.
pub fn columns_to_batch(
    schema: Option<&SchemaRef>,
    names: &[String],
    columns: &[Vec<&Value>],
) -> Result<RecordBatch, WriteError> {
    let rows = equal_lengths(columns)?;
    let schema = match schema {
        Some(schema) => schema.clone(),
        None => infer_schema(names, columns),
    };
    if schema.fields().len() != columns.len() {
        return Err(WriteError::RowWidth {
            row: 0,
            got: columns.len(),
            expected: schema.fields().len(),
        });
    }
    let mut arrays = Vec::with_capacity(columns.len());
    for (field, values) in schema.fields().iter().zip(columns) {
        let array = build(field.data_type(), values).map_err(|source| WriteError::Column {
            column: field.name().clone(),
            source,
        })?;
        arrays.push(array);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(schema, arrays, &options).map_err(|source| WriteError::Column {
        column: "(batch)".into(),
        source,
    })
}

/// The rows of `columns`, which must all hold as many values.
fn equal_lengths(columns: &[Vec<&Value>]) -> Result<usize, WriteError> {
    let rows = columns.first().map_or(0, Vec::len);
    // The first row that some column lacks is narrower than the others.
    match columns.iter().map(Vec::len).filter(|&n| n != rows).min() {
        Some(row) => Err(WriteError::RowWidth {
            row: row.min(rows),
            got: columns.iter().filter(|c| c.len() > row).count(),
            expected: columns.len(),
        }),
        None => Ok(rows),
    }
}

fn check_widths(expected: usize, rows: &[Vec<Value>]) -> Result<(), WriteError> {
    match rows.iter().position(|r| r.len() != expected) {
        Some(row) => Err(WriteError::RowWidth {
            row,
            got: rows[row].len(),
            expected,
        }),
        None => Ok(()),
    }
}

static NULL: Value = Value::Null;

/// Builds one array of type `dt` from `values`, coercing each value or nulling it.
fn build(dt: &DataType, values: &[&Value]) -> Result<ArrayRef, ArrowError> {
    let array: ArrayRef = match dt {
        DataType::Null => Arc::new(NullArray::new(values.len())),
        DataType::Boolean => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Value::Bool(b) => Some(*b),
                    _ => None,
                })
                .collect::<BooleanArray>(),
        ),
        DataType::Int64 => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Value::Int(i) => Some(*i),
                    _ => None,
                })
                .collect::<Int64Array>(),
        ),
        DataType::Float64 => Arc::new(
            values
                .iter()
                .map(|v| match v {
                    Value::Int(i) => Some(*i as f64),
                    Value::Float(f) => Some(f.get()),
                    _ => None,
                })
                .collect::<Float64Array>(),
        ),
        DataType::Utf8 => text(values),
        DataType::Timestamp(unit, _) => {
            let (mul, div) = match unit {
                TimeUnit::Second => (1, 1000),
                TimeUnit::Millisecond => (1, 1),
                TimeUnit::Microsecond => (1000, 1),
                TimeUnit::Nanosecond => (1_000_000, 1),
            };
            let ints: Int64Array = values
                .iter()
                .map(|v| match v {
                    Value::Time(ms) => ms.checked_mul(mul).map(|t| t.div_euclid(div)),
                    _ => None,
                })
                .collect();
            cast(&ints, dt)?
        }
        DataType::List(field) => {
            let mut offsets = Vec::with_capacity(values.len() + 1);
            let mut items: Vec<&Value> = Vec::new();
            offsets.push(0i32);
            for v in values {
                if let Value::List(list) = v {
                    items.extend(list.iter());
                }
                let end = i32::try_from(items.len())
                    .map_err(|_| ArrowError::ComputeError("list column exceeds i32 offsets".into()))?;
                offsets.push(end);
            }
            let child = build(field.data_type(), &items)?;
            let nulls = NullBuffer::from_iter(values.iter().map(|v| matches!(v, Value::List(_))));
            Arc::new(ListArray::try_new(
                field.clone(),
                OffsetBuffer::new(offsets.into()),
                child,
                Some(nulls),
            )?)
        }
        DataType::Struct(fields) => struct_array(fields, values)?,
        // Types inference never produces (an existing schema may have them): text, then cast.
        other => cast(&text(values), other)?,
    };
    Ok(array)
}

fn struct_array(fields: &Fields, values: &[&Value]) -> Result<ArrayRef, ArrowError> {
    let mut children = Vec::with_capacity(fields.len());
    for field in fields.iter() {
        let name = Sym::new(field.name());
        let child: Vec<&Value> = values
            .iter()
            .map(|v| match v {
                Value::Object(obj) => lookup(obj, name).unwrap_or(&NULL),
                _ => &NULL,
            })
            .collect();
        children.push(build(field.data_type(), &child)?);
    }
    let nulls = NullBuffer::from_iter(values.iter().map(|v| matches!(v, Value::Object(_))));
    if fields.is_empty() {
        return Ok(Arc::new(StructArray::new_empty_fields(values.len(), Some(nulls))));
    }
    Ok(Arc::new(StructArray::try_new(fields.clone(), children, Some(nulls))?))
}

/// Strings as they are; every other non-null value as its JSON text (timestamps as RFC 3339).
fn text(values: &[&Value]) -> ArrayRef {
    let mut b = StringBuilder::with_capacity(values.len(), values.len() * 8);
    for v in values {
        match v {
            Value::Null => b.append_null(),
            Value::Str(s) => b.append_value(s),
            other => {
                // Display: strings unquoted, timestamps RFC 3339, everything else JSON.
                let _ = write!(b, "{other}");
                b.append_value("");
            }
        }
    }
    Arc::new(b.finish())
}

/// Writes record batches to one Parquet file (snappy, [`ROW_GROUP_ROWS`] rows per row group).
pub struct ParquetSink {
    path: PathBuf,
    schema: SchemaRef,
    writer: ArrowWriter<File>,
    rows: usize,
}

impl ParquetSink {
    /// Creates (or truncates) `path` for batches of `schema`, Snappy-compressed.
    pub fn open(path: &Path, schema: SchemaRef) -> Result<ParquetSink, WriteError> {
        ParquetSink::open_compressed(path, schema, Compression::SNAPPY)
    }

    /// [`ParquetSink::open`] with another compression (files shipped in the repository use
    /// zstd, which halves noisy float columns).
    pub fn open_compressed(
        path: &Path,
        schema: SchemaRef,
        compression: Compression,
    ) -> Result<ParquetSink, WriteError> {
        ParquetSink::with_properties(path, schema, properties(compression).build())
    }

    fn with_properties(path: &Path, schema: SchemaRef, props: WriterProperties) -> Result<ParquetSink, WriteError> {
        let file = File::create(path).map_err(|source| WriteError::Io {
            path: path.into(),
            source,
        })?;
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|source| WriteError::Parquet {
            path: path.into(),
            source,
        })?;
        Ok(ParquetSink {
            path: path.into(),
            schema,
            writer,
            rows: 0,
        })
    }

    /// [`ParquetSink::open`] for a sink's part: float columns also stop dictionary-encoding a
    /// column chunk once its dictionary holds [`FLOAT_DICTIONARY_BYTES`] (see there).
    pub fn open_part(path: &Path, schema: SchemaRef) -> Result<ParquetSink, WriteError> {
        let descriptor = parquet::arrow::ArrowSchemaConverter::new()
            .convert(&schema)
            .map_err(|source| WriteError::Parquet {
                path: path.into(),
                source,
            })?;
        let mut props = properties(Compression::SNAPPY);
        for column in descriptor.columns() {
            if matches!(column.physical_type(), PhysicalType::DOUBLE | PhysicalType::FLOAT) {
                props = props.set_column_dictionary_page_size_limit(column.path().clone(), FLOAT_DICTIONARY_BYTES);
            }
        }
        ParquetSink::with_properties(path, schema, props.build())
    }

    /// The file's schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Appends a batch, which must have the file's schema.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), WriteError> {
        let got = batch.schema();
        if got.fields() != self.schema.fields() {
            let describe = |s: &Schema| {
                let cols: Vec<String> = s
                    .fields()
                    .iter()
                    .map(|f| format!("{}: {}", f.name(), f.data_type()))
                    .collect();
                cols.join(", ")
            };
            return Err(WriteError::SchemaMismatch {
                path: self.path.clone(),
                expected: describe(&self.schema),
                got: describe(&got),
            });
        }
        self.writer.write(batch).map_err(|source| WriteError::Parquet {
            path: self.path.clone(),
            source,
        })?;
        self.rows += batch.num_rows();
        Ok(())
    }

    /// Ends the current row group early (the next batch starts a new one).
    pub fn flush(&mut self) -> Result<(), WriteError> {
        self.writer.flush().map_err(|source| WriteError::Parquet {
            path: self.path.clone(),
            source,
        })
    }

    /// Writes the footer and closes the file.
    pub fn close(self) -> Result<(), WriteError> {
        let path = self.path;
        self.writer
            .close()
            .map_err(|source| WriteError::Parquet { path, source })?;
        Ok(())
    }
}
