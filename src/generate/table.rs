//! Context tables: Parquet files whose rows are built into Arrow batches of [`ROW_GROUP_ROWS`]
//! rows (one row group each), so a table of any length is written in bounded memory.

use std::path::{Path, PathBuf};

use arrow::array::{ArrayRef, RecordBatch, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, SchemaRef, TimeUnit};
use arrow::error::ArrowError;

use super::GenerateError;
use crate::format::{ParquetSink, ROW_GROUP_ROWS};

/// A context table written next to a generated log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextFile {
    pub path: PathBuf,
    pub rows: usize,
}

/// Builds one batch of a table from its rows.
pub(crate) type BuildBatch<R> = fn(&SchemaRef, &[R]) -> Result<RecordBatch, ArrowError>;

/// Buffers rows of type `R` and writes them to a Parquet file a batch at a time.
pub(crate) struct TableWriter<R> {
    path: PathBuf,
    schema: SchemaRef,
    sink: ParquetSink,
    rows: Vec<R>,
    written: usize,
    build: BuildBatch<R>,
}

impl<R> TableWriter<R> {
    /// Creates (or truncates) `path` for rows of `schema`, built by `build`.
    pub(crate) fn create(path: &Path, schema: SchemaRef, build: BuildBatch<R>) -> Result<Self, GenerateError> {
        Ok(TableWriter {
            path: path.into(),
            sink: ParquetSink::open(path, schema.clone())?,
            schema,
            rows: Vec::new(),
            written: 0,
            build,
        })
    }

    pub(crate) fn push(&mut self, row: R) -> Result<(), GenerateError> {
        self.rows.push(row);
        if self.rows.len() >= ROW_GROUP_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), GenerateError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let batch = (self.build)(&self.schema, &self.rows).map_err(|source| GenerateError::Arrow {
            path: self.path.clone(),
            source,
        })?;
        self.sink.write(&batch)?;
        self.sink.flush()?;
        self.written += self.rows.len();
        self.rows.clear();
        Ok(())
    }

    /// Writes the remaining rows and the footer.
    pub(crate) fn finish(mut self) -> Result<ContextFile, GenerateError> {
        self.flush()?;
        self.sink.close()?;
        Ok(ContextFile {
            path: self.path,
            rows: self.written,
        })
    }
}

/// A nullable-free `Timestamp(ms, UTC)` field.
pub(crate) fn time_field(name: &str) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        false,
    )
}

/// A `Timestamp(ms, UTC)` column.
pub(crate) fn time_column(times: impl IntoIterator<Item = i64>) -> ArrayRef {
    std::sync::Arc::new(TimestampMillisecondArray::from_iter_values(times).with_timezone("UTC"))
}

/// `x` rounded to `decimals` places, with -0.0 turned into 0.0.
pub(crate) fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale + 0.0
}
