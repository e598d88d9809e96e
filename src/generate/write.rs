//! One table of a scenario (`regions`, `services`) written as Parquet (zstd), NDJSON or CSV by
//! its file's extension, from rows of [`Value`]s in the order of its schema's columns. Times are
//! `Timestamp(ms, UTC)` in Parquet and RFC 3339 text in NDJSON and CSV; floats are written with
//! a decimal point (`40.0`), so CSV type inference reads a float column as floats. A null is a
//! Parquet null, an absent NDJSON key and an empty CSV field.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;
use parquet::basic::{Compression, ZstdLevel};

use super::{ContextFile, GenerateError};
use crate::format::{rows_to_batch_with_schema, ParquetSink, ROW_GROUP_ROWS};
use crate::value::{format_time, Value};

/// The file formats these scenarios write, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Parquet,
    Ndjson,
    Csv,
}

impl Format {
    /// The format of `path`, by its extension.
    pub fn of(path: &Path) -> Result<Format, GenerateError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("parquet") => Ok(Format::Parquet),
            Some("ndjson") => Ok(Format::Ndjson),
            Some("csv") => Ok(Format::Csv),
            _ => Err(GenerateError::Usage(format!(
                "{}: unknown output format; this scenario writes .parquet, .ndjson or .csv",
                path.display()
            ))),
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Ndjson => "ndjson",
            Format::Csv => "csv",
        }
    }
}

enum Out {
    Parquet(Box<ParquetSink>, Vec<Vec<Value>>),
    Text(BufWriter<File>),
}

/// Writes rows of `schema` to one file.
pub struct RowSink {
    path: PathBuf,
    format: Format,
    schema: SchemaRef,
    out: Out,
    written: usize,
}

impl RowSink {
    pub fn create(path: &Path, schema: SchemaRef) -> Result<RowSink, GenerateError> {
        let format = Format::of(path)?;
        let io = |source| GenerateError::Io {
            path: path.into(),
            source,
        };
        let out = match format {
            Format::Parquet => {
                let zstd = Compression::ZSTD(ZstdLevel::try_new(9).expect("a valid level"));
                Out::Parquet(
                    Box::new(ParquetSink::open_compressed(path, schema.clone(), zstd)?),
                    Vec::new(),
                )
            }
            Format::Ndjson | Format::Csv => Out::Text(BufWriter::new(File::create(path).map_err(io)?)),
        };
        let mut sink = RowSink {
            path: path.into(),
            format,
            schema,
            out,
            written: 0,
        };
        if let (Format::Csv, Out::Text(w)) = (format, &mut sink.out) {
            let names: Vec<String> = sink.schema.fields().iter().map(|f| csv_text(f.name())).collect();
            writeln!(w, "{}", names.join(",")).map_err(io)?;
        }
        Ok(sink)
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn push(&mut self, row: Vec<Value>) -> Result<(), GenerateError> {
        let io = |source| GenerateError::Io {
            path: self.path.clone(),
            source,
        };
        self.written += 1;
        match &mut self.out {
            Out::Parquet(_, rows) => {
                rows.push(row);
                if rows.len() >= ROW_GROUP_ROWS {
                    self.flush()?;
                }
            }
            Out::Text(w) => {
                let line = match self.format {
                    Format::Csv => row.iter().map(csv_value).collect::<Vec<_>>().join(","),
                    _ => ndjson_line(&self.schema, &row),
                };
                writeln!(w, "{line}").map_err(io)?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), GenerateError> {
        if let Out::Parquet(sink, rows) = &mut self.out {
            if !rows.is_empty() {
                sink.write(&rows_to_batch_with_schema(&self.schema, rows)?)?;
                sink.flush()?;
                rows.clear();
            }
        }
        Ok(())
    }

    /// Writes what is buffered and closes the file.
    pub fn finish(mut self) -> Result<ContextFile, GenerateError> {
        self.flush()?;
        match self.out {
            Out::Parquet(sink, _) => sink.close()?,
            Out::Text(mut w) => w.flush().map_err(|source| GenerateError::Io {
                path: self.path.clone(),
                source,
            })?,
        }
        Ok(ContextFile {
            path: self.path,
            rows: self.written,
        })
    }
}

/// A finite float with a decimal point (`40.0`, `33.125`); others as JSON has them.
fn float_text(x: f64) -> String {
    format!("{x:?}")
}

fn ndjson_line(schema: &SchemaRef, row: &[Value]) -> String {
    let mut line = String::from("{");
    for (field, value) in schema.fields().iter().zip(row) {
        let text = match value {
            Value::Null => continue,
            Value::Time(ms) => serde_json::Value::from(format_time(*ms)).to_string(),
            Value::Float(f) if f.get().is_finite() => float_text(f.get()),
            other => other.json_text(),
        };
        if line.len() > 1 {
            line.push(',');
        }
        line.push_str(&serde_json::Value::from(field.name().as_str()).to_string());
        line.push(':');
        line.push_str(&text);
    }
    line.push('}');
    line
}

fn csv_value(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Time(ms) => format_time(*ms),
        Value::Float(f) => float_text(f.get()),
        Value::Str(s) => csv_text(s),
        other => csv_text(&other.json_text()),
    }
}

/// `s` quoted when it holds a comma, quote or line break.
fn csv_text(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
