//! A CSV file's columns: names from the header (or the spec's `columns`), types declared in the
//! spec or inferred by `arrow-csv` from the first [`SAMPLE_LINES`] well-formed records within
//! the first [`SAMPLE_BYTES`] of the file. The time and type columns are read as text and
//! parsed by the source itself, so a bad time is a `bad_time` dead letter, not a decode error.
//! Every worker computes the same schema from the same bytes.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::scan::{trim_terminator, Scanner};
use crate::plan::csv::CsvType;
use crate::plan::known_fields::SAMPLE_LINES;
use crate::plan::SourcePlan;
use crate::source::SourceError;

/// Bytes at the start of a file that the header and the inference sample are read from.
pub const SAMPLE_BYTES: usize = 4 << 20;

/// The columns of one file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSchema {
    /// Every column, in file order, with its type.
    pub schema: SchemaRef,
    /// The time column.
    pub time: usize,
    /// The type column, unless the source has a fixed type.
    pub kind: Option<usize>,
}

impl FileSchema {
    /// The number of fields a record must have.
    pub fn width(&self) -> usize {
        self.schema.fields().len()
    }

    /// Reads the start of `path` (see the module docs).
    pub fn read(plan: &SourcePlan, path: &Path) -> Result<FileSchema, SourceError> {
        let file = std::fs::File::open(path).map_err(|e| SourceError::open(path, e))?;
        let len = file.metadata().map_err(|e| SourceError::open(path, e))?.len();
        let mut bytes = Vec::new();
        file.take(SAMPLE_BYTES as u64)
            .read_to_end(&mut bytes)
            .map_err(|e| SourceError::open(path, e))?;
        FileSchema::from_prefix(plan, path, &bytes, bytes.len() as u64 == len)
    }

    /// The schema from the file's first bytes, `bytes` (at most [`SAMPLE_BYTES`] of them;
    /// `whole` when that is the whole file).
    pub fn from_prefix(plan: &SourcePlan, path: &Path, bytes: &[u8], whole: bool) -> Result<FileSchema, SourceError> {
        let bytes = &bytes[..bytes.len().min(SAMPLE_BYTES)];
        let options = &plan.csv;
        let mut scanner = Scanner::new(options.delimiter);
        let (mut pos, mut line) = (0, 1);
        let names: Vec<String> = if options.header {
            let header = scanner.next(bytes, &mut pos, &mut line, None, whole);
            match header {
                None => return Err(SourceError::open(path, "the file is empty: no header")),
                Some(r) if r.problem.is_some() => {
                    let (_, detail) = r.problem.expect("checked");
                    return Err(SourceError::open(
                        path,
                        format!("line {}: the header: {detail}", r.line),
                    ));
                }
                Some(_) => (0..scanner.fields())
                    .map(|i| String::from_utf8_lossy(scanner.field(i)).trim().to_string())
                    .collect(),
            }
        } else {
            options.columns.iter().map(|(n, _)| n.clone()).collect()
        };
        check_names(plan, path, &names)?;
        let width = names.len();
        // The well-formed records of the sample, one per line, for arrow-csv's inference.
        let mut sample = Vec::new();
        let mut taken = 0;
        while taken < SAMPLE_LINES {
            let Some(r) = scanner.next(bytes, &mut pos, &mut line, Some(width), whole) else {
                break;
            };
            if r.problem.is_none() {
                sample.extend_from_slice(trim_terminator(&bytes[r.start..r.end]));
                sample.push(b'\n');
                taken += 1;
            }
        }
        let inferred = if sample.is_empty() {
            vec![DataType::Null; width]
        } else {
            let format = arrow_csv::reader::Format::default()
                .with_header(false)
                .with_delimiter(options.delimiter);
            let (schema, _) = format
                .infer_schema(std::io::Cursor::new(&sample), None)
                .map_err(|e| SourceError::open(path, format!("inferring column types: {e}")))?;
            schema.fields().iter().map(|f| f.data_type().clone()).collect()
        };
        let time = index(&names, &plan.time_field, path, "time")?;
        let kind = match plan.fixed_type {
            Some(_) => None,
            None => Some(index(&names, &plan.type_field, path, "type")?),
        };
        let fields: Vec<Field> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let declared = options.columns.iter().find(|(n, _)| n == name).map(|(_, t)| *t);
                let dtype = match declared {
                    _ if i == time || Some(i) == kind => DataType::Utf8,
                    Some(CsvType::Int) => DataType::Int64,
                    Some(CsvType::Float) => DataType::Float64,
                    Some(CsvType::Bool) => DataType::Boolean,
                    Some(CsvType::String) => DataType::Utf8,
                    Some(CsvType::Auto) | None => match &inferred[i] {
                        DataType::Null => DataType::Utf8,
                        other => other.clone(),
                    },
                };
                Field::new(name, dtype, true)
            })
            .collect();
        Ok(FileSchema {
            schema: Arc::new(Schema::new(fields)),
            time,
            kind,
        })
    }
}

/// Fails on a repeated column name, or a declared column the header does not have.
fn check_names(plan: &SourcePlan, path: &Path, names: &[String]) -> Result<(), SourceError> {
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            return Err(SourceError::open(
                path,
                format!("the header names column `{name}` twice"),
            ));
        }
    }
    if let Some((name, _)) = plan.csv.columns.iter().find(|(n, _)| !names.contains(n)) {
        return Err(SourceError::open(
            path,
            format!(
                "`columns` names `{name}`, which the header does not have; the columns are {}",
                names.join(", ")
            ),
        ));
    }
    Ok(())
}

fn index(names: &[String], name: &str, path: &Path, what: &str) -> Result<usize, SourceError> {
    names.iter().position(|n| n == name).ok_or_else(|| {
        SourceError::open(
            path,
            format!("no {what} column `{name}`; the columns are {}", names.join(", ")),
        )
    })
}
