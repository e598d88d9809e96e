//! Parquet replay: one file, several files or a directory, read row group by row group.
//!
//! The time column may be a timestamp (any unit), an integer or float (scaled by the source's
//! `time_unit`), or an RFC 3339 string; the type column a string. Every other column is payload:
//! structs become objects, lists become lists. Only the columns some stage reads are decoded
//! (projection pushdown). Row groups are the splits; each split's maximum event time comes from
//! the column statistics, or from reading just the time column where statistics are missing.
//!
//! Pages that carry a CRC-32 checksum are verified as they are read (the parquet crate's `crc`
//! feature): a mismatch is an error naming the file and row group, which fails the run. A
//! corrupt page is a damaged file, not a bad record, and its rows cannot be told apart.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use parquet::file::statistics::Statistics;

use super::arrow_read::{unit_to_ms, Col, TypeCache};
use super::future::FutureFilter;
use super::{Decoded, SourceError, Split, SplitReader, Unit};
use crate::dead_letter::DeadLetter;
use crate::event::Event;
use crate::plan::SourcePlan;
use crate::value::{Sym, Value};

const BATCH_ROWS: usize = 8192;

/// A read error of row group `rg`, saying so when a page checksum did not match.
fn read_error(path: &Path, rg: usize, e: impl std::fmt::Display) -> SourceError {
    let message = e.to_string();
    if message.contains("CRC checksum mismatch") {
        SourceError::read(
            path,
            format!("row group {rg}: a page checksum does not match its data: the file is corrupt ({message})"),
        )
    } else {
        SourceError::read(path, format!("row group {rg}: {message}"))
    }
}

fn load(path: &Path) -> Result<(File, ArrowReaderMetadata), SourceError> {
    let file = File::open(path).map_err(|e| SourceError::open(path, e))?;
    let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(|e| SourceError::open(path, e))?;
    Ok((file, meta))
}

fn column_index(schema: &SchemaRef, name: &str, path: &Path, what: &str) -> Result<usize, SourceError> {
    schema.index_of(name).map_err(|_| {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        SourceError::open(
            path,
            format!("no {what} column `{name}`; the columns are {}", names.join(", ")),
        )
    })
}

/// Row groups of every file, in order, with their maximum admitted event time and far-future
/// rows (see [`super::future`]). The column statistics decide a row group when no time in its
/// range can be too far ahead; otherwise its time column is read.
pub fn splits(plan: &SourcePlan, files: &[PathBuf]) -> Result<Vec<Split>, SourceError> {
    let mut out = Vec::new();
    let mut future = FutureFilter::new(plan.limits.max_future_ms);
    for (fi, path) in files.iter().enumerate() {
        let (file, meta) = load(path)?;
        let schema = meta.schema().clone();
        let tcol = column_index(&schema, &plan.time_field, path, "time")?;
        if plan.fixed_type.is_none() {
            column_index(&schema, &plan.type_field, path, "type")?;
        }
        let dtype = schema.field(tcol).data_type().clone();
        let leaf = meta
            .parquet_schema()
            .columns()
            .iter()
            .position(|c| c.path().string() == plan.time_field);
        for (rg, rg_meta) in meta.metadata().row_groups().iter().enumerate() {
            let s = out.len();
            out.push(Split::new(fi, Unit::RowGroup(rg), rg_meta.num_rows() as usize));
            let range = leaf.and_then(|l| rg_meta.column(l).statistics()).and_then(|st| {
                Some((
                    stats_time(st, &dtype, plan.time_unit_ms, true)?,
                    stats_time(st, &dtype, plan.time_unit_ms, false)?,
                ))
            });
            match range {
                Some((min, max)) if future.admits_whole(min, max) => future.admit_whole(&mut out, s, max),
                _ => scan_times(plan, &file, &meta, rg, tcol, path, &mut |row, t| {
                    future.push(&mut out, s, row, t)
                })?,
            }
        }
    }
    future.finish(&mut out);
    Ok(out)
}

/// The smallest (`min`) or largest time in a row group's statistics.
fn stats_time(stats: &Statistics, dtype: &DataType, unit_ms: f64, min: bool) -> Option<i64> {
    let raw = match (stats, min) {
        (Statistics::Int64(s), true) => *s.min_opt()?,
        (Statistics::Int64(s), false) => *s.max_opt()?,
        (Statistics::Int32(s), true) => i64::from(*s.min_opt()?),
        (Statistics::Int32(s), false) => i64::from(*s.max_opt()?),
        _ => return None,
    };
    match dtype {
        DataType::Timestamp(unit, _) => {
            let (mul, div) = unit_to_ms(*unit);
            Some(raw.saturating_mul(mul).div_euclid(div))
        }
        DataType::Date32 => Some(raw * 86_400_000),
        DataType::Int64 | DataType::Int32 if unit_ms == 1.0 => Some(raw),
        DataType::Int64 | DataType::Int32 => Some((raw as f64 * unit_ms).floor() as i64),
        _ => None,
    }
}

/// Calls `each` with the row and time of every row of row group `rg` with a valid time.
fn scan_times(
    plan: &SourcePlan,
    file: &File,
    meta: &ArrowReaderMetadata,
    rg: usize,
    tcol: usize,
    path: &Path,
    each: &mut dyn FnMut(u64, i64),
) -> Result<(), SourceError> {
    let file = file.try_clone().map_err(|e| SourceError::read(path, e))?;
    let mask = ProjectionMask::roots(meta.parquet_schema(), [tcol]);
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta.clone())
        .with_row_groups(vec![rg])
        .with_projection(mask)
        .build()
        .map_err(|e| read_error(path, rg, e))?;
    let mut first_row = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| read_error(path, rg, e))?;
        let col = Col::new(batch.column(0));
        for row in 0..batch.num_rows() {
            if let Ok(t) = col.time_ms(row, plan.time_unit_ms) {
                if t >= 0 {
                    each(first_row + row as u64, t);
                }
            }
        }
        first_row += batch.num_rows() as u64;
    }
    Ok(())
}

/// Reads row groups of a source's files on one worker.
pub struct ParquetReader {
    plan: SourcePlan,
    files: Vec<PathBuf>,
    opened: Vec<Option<(File, ArrowReaderMetadata)>>,
    types: TypeCache,
    /// Shared by every event without payload fields, so they cost no allocation.
    empty: Arc<[(Sym, Value)]>,
}

impl ParquetReader {
    pub fn new(plan: &SourcePlan, files: &[PathBuf]) -> ParquetReader {
        ParquetReader {
            plan: plan.clone(),
            files: files.to_vec(),
            opened: files.iter().map(|_| None).collect(),
            types: TypeCache::default(),
            empty: Arc::from(Vec::new()),
        }
    }
}

impl SplitReader for ParquetReader {
    fn read(&mut self, split: &Split, out: &mut dyn FnMut(&mut Vec<Decoded>)) -> Result<(), SourceError> {
        let Unit::RowGroup(rg) = split.unit else {
            unreachable!("parquet splits are row groups")
        };
        let path = self.files[split.file].clone();
        if self.opened[split.file].is_none() {
            self.opened[split.file] = Some(load(&path)?);
        }
        let (file, meta) = self.opened[split.file].as_ref().expect("opened above");
        let schema = meta.schema().clone();
        let wanted = |name: &str| {
            name == self.plan.time_field
                || name == self.plan.type_field
                || self
                    .plan
                    .projection
                    .as_ref()
                    .is_none_or(|p| p.iter().any(|f| f == name))
        };
        let roots: Vec<usize> = (0..schema.fields().len())
            .filter(|i| wanted(schema.field(*i).name()))
            .collect();
        let mask = ProjectionMask::roots(meta.parquet_schema(), roots);
        let file = file.try_clone().map_err(|e| SourceError::read(&path, e))?;
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta.clone())
            .with_row_groups(vec![rg])
            .with_projection(mask)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| read_error(&path, rg, e))?;
        let mut first_row = 0usize;
        let mut decoded = Vec::with_capacity(BATCH_ROWS);
        for batch in reader {
            let batch = batch.map_err(|e| read_error(&path, rg, e))?;
            self.decode(&batch, &path, rg, first_row, &mut decoded);
            first_row += batch.num_rows();
            out(&mut decoded);
            decoded.clear();
        }
        Ok(())
    }
}

impl ParquetReader {
    fn decode(&mut self, batch: &RecordBatch, path: &Path, rg: usize, first_row: usize, out: &mut Vec<Decoded>) {
        let schema = batch.schema();
        let mut time_col = None;
        let mut type_col = None;
        let mut payload: Vec<(Sym, Col)> = Vec::new();
        for (field, array) in schema.fields().iter().zip(batch.columns()) {
            if field.name() == &self.plan.time_field {
                time_col = Some(Col::new(array));
            } else if field.name() == &self.plan.type_field && self.plan.fixed_type.is_none() {
                type_col = Some(Col::new(array));
            } else {
                payload.push((Sym::new(field.name()), Col::new(array)));
            }
        }
        payload.sort_by_key(|a| a.0);
        let Some(time_col) = time_col else {
            unreachable!("the time column was checked when the splits were made")
        };
        let fixed = self.plan.fixed_type.as_ref().map(|t| self.types.get(t));
        for row in 0..batch.num_rows() {
            let time = time_col.time_ms(row, self.plan.time_unit_ms);
            let kind = match (&fixed, &type_col) {
                (Some(k), _) => Some(*k),
                (None, Some(col)) => col.str_at(row).map(|s| self.types.get(s)),
                (None, None) => None,
            };
            let mut fields: Vec<(Sym, Value)> = Vec::with_capacity(payload.len());
            for (name, col) in &payload {
                let v = col.get(row);
                if !v.is_null() {
                    fields.push((*name, v));
                }
            }
            match (time, kind) {
                (Ok(time), Some(kind)) => out.push(Decoded::Event(
                    Event {
                        time,
                        kind,
                        payload: if fields.is_empty() {
                            self.empty.clone()
                        } else {
                            fields.into()
                        },
                    },
                    (first_row + row) as u64,
                )),
                (time, kind) => {
                    let (reason, detail) = match (&time, kind) {
                        (Err(e), _) => ("bad_time", format!("{}: {e}", self.plan.time_field)),
                        _ => (
                            "missing_type",
                            format!("{}: null or not a string", self.plan.type_field),
                        ),
                    };
                    let mut record = serde_json::Map::new();
                    record.insert(self.plan.time_field.clone(), time_col.get(row).to_json());
                    if let Some(col) = &type_col {
                        record.insert(self.plan.type_field.clone(), col.get(row).to_json());
                    }
                    for (k, v) in &fields {
                        record.insert(k.to_string(), v.to_json());
                    }
                    out.push(Decoded::Bad(Box::new(DeadLetter {
                        stage: format!("source:{}", self.plan.name),
                        reason: reason.into(),
                        detail,
                        location: format!("{}#rg{rg}:row{}", path.display(), first_row + row),
                        record: serde_json::Value::Object(record).to_string(),
                        event_time: time.ok(),
                        original: None,
                    })));
                }
            }
        }
    }
}
