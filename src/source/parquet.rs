//! Parquet replay: one file, several files or a directory, read row group by row group.
//!
//! The time column may be a timestamp (any unit), an integer or float (scaled by the source's
//! `time_unit`), or an RFC 3339 string; the type column a string. Every other column is payload:
//! structs become objects, lists become lists. Only the columns some stage reads are decoded
//! (projection pushdown). Row groups are the splits; each split's maximum event time comes from
//! the column statistics, or from reading just the time column where statistics are missing.
//! Read by several workers, a large row group is split into row ranges of [`SPLIT_ROWS`], whose
//! maxima come from the time column (see [`super::Layout::discover_for`]).
//!
//! Pages that carry a CRC-32 checksum are verified as they are read (the parquet crate's `crc`
//! feature): a mismatch is an error naming the file and row group, which fails the run. A
//! corrupt page is a damaged file, not a bad record, and its rows cannot be told apart.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder, RowSelection,
    RowSelector,
};
use parquet::arrow::ProjectionMask;
use parquet::file::statistics::Statistics;

use super::arrow_read::{scale_to_ms, unit_to_ms, Col, TypeCache};
use super::future::FutureFilter;
use super::{Decoded, SourceError, Split, SplitReader, Unit};
use crate::dead_letter::DeadLetter;
use crate::event::Event;
use crate::plan::SourcePlan;
use crate::value::{Sym, Value};

const BATCH_ROWS: usize = 8192;

/// The rows of a split when a source is read by several workers
/// ([`super::Layout::discover_for`]): a batch's worth, so that workers taking splits in turn stay
/// a few thousand events apart.
pub const SPLIT_ROWS: usize = BATCH_ROWS;

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
    let meta = match dictionary_schema(&meta) {
        Some(schema) => ArrowReaderMetadata::try_new(
            Arc::clone(meta.metadata()),
            ArrowReaderOptions::new().with_schema(schema),
        )
        .map_err(|e| SourceError::open(path, e))?,
        None => meta,
    };
    Ok((file, meta))
}

/// The file's Arrow schema with its string columns that are dictionary-encoded throughout
/// (every data page of every row group) read as dictionaries, so that the reader makes one
/// shared string per dictionary entry (see [`Col::Dict`]); `None` when there are none. Strings
/// at the top level and in structs, by their leaf column's path; lists are read as they are.
fn dictionary_schema(meta: &ArrowReaderMetadata) -> Option<SchemaRef> {
    use arrow::datatypes::{Field, Fields, Schema};
    use parquet::basic::Encoding;
    let row_groups = meta.metadata().row_groups();
    if row_groups.is_empty() {
        return None;
    }
    let parquet = meta.parquet_schema();
    let all_dictionary = |leaf: usize| {
        row_groups.iter().all(|rg| {
            let c = rg.column(leaf);
            let only = |e: Encoding| e == Encoding::RLE_DICTIONARY || e == Encoding::PLAIN_DICTIONARY;
            c.dictionary_page_offset().is_some()
                && match (c.page_encoding_stats_mask(), c.page_encoding_stats()) {
                    (Some(mask), _) => {
                        mask.is_only(Encoding::RLE_DICTIONARY) || mask.is_only(Encoding::PLAIN_DICTIONARY)
                    }
                    (None, Some(stats)) => stats
                        .iter()
                        .filter(|s| {
                            matches!(
                                s.page_type,
                                parquet::basic::PageType::DATA_PAGE | parquet::basic::PageType::DATA_PAGE_V2
                            )
                        })
                        .all(|s| only(s.encoding)),
                    (None, None) => false,
                }
        })
    };
    let dictionary: std::collections::HashSet<String> = (0..parquet.num_columns())
        .filter(|&leaf| all_dictionary(leaf))
        .map(|leaf| parquet.column(leaf).path().string())
        .collect();
    if dictionary.is_empty() {
        return None;
    }
    fn hint(field: &Field, path: String, dictionary: &std::collections::HashSet<String>, changed: &mut bool) -> Field {
        match field.data_type() {
            DataType::Utf8 if dictionary.contains(&path) => {
                *changed = true;
                field.clone().with_data_type(DataType::Dictionary(
                    Box::new(DataType::Int32),
                    Box::new(DataType::Utf8),
                ))
            }
            DataType::Struct(children) => {
                let children: Fields = children
                    .iter()
                    .map(|c| hint(c, format!("{path}.{}", c.name()), dictionary, changed))
                    .collect();
                field.clone().with_data_type(DataType::Struct(children))
            }
            _ => field.clone(),
        }
    }
    let schema = meta.schema();
    let mut changed = false;
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| hint(f, f.name().clone(), &dictionary, &mut changed))
        .collect();
    changed.then(|| Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())))
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
/// range can be too far ahead; otherwise its time column is read. The time columns to read are
/// decoded on several threads, a few row groups at a time, and their times then go through
/// the future-time filter in the log's order, one row group after the other.
pub fn splits(plan: &SourcePlan, files: &[PathBuf], split_rows: Option<usize>) -> Result<Vec<Split>, SourceError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    splits_on(plan, files, split_rows, threads)
}

/// [`splits`], the time columns read on `threads` threads.
fn splits_on(
    plan: &SourcePlan,
    files: &[PathBuf],
    split_rows: Option<usize>,
    threads: usize,
) -> Result<Vec<Split>, SourceError> {
    /// How a row group's splits get their maxima: from its statistics when, its turn come, the
    /// filter admits their range whole (which depends on the times before it), or from its times.
    enum Decide {
        Stats {
            s: usize,
            rg: usize,
            min: i64,
            max: i64,
        },
        /// Times of the row group's splits from `s`, `n` rows each (one split when `None`).
        Times {
            s: usize,
            rg: usize,
            n: Option<usize>,
        },
    }
    let mut out = Vec::new();
    let mut future = FutureFilter::new(plan.limits.max_future_ms);
    for (fi, path) in files.iter().enumerate() {
        let (_, meta) = load(path)?;
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
        let mut decide = Vec::new();
        for (rg, rg_meta) in meta.metadata().row_groups().iter().enumerate() {
            let s = out.len();
            let rows = rg_meta.num_rows() as usize;
            if let Some(n) = split_rows.filter(|&n| rows > n) {
                // Row ranges of `n` rows; each one's times decide its maximum and future rows.
                for start in (0..rows).step_by(n) {
                    let len = n.min(rows - start);
                    out.push(Split::new(fi, Unit::Rows { rg, start, len }, len));
                }
                decide.push(Decide::Times { s, rg, n: Some(n) });
                continue;
            }
            out.push(Split::new(fi, Unit::RowGroup(rg), rows));
            let range = leaf.and_then(|l| rg_meta.column(l).statistics()).and_then(|st| {
                Some((
                    stats_time(st, &dtype, plan.time_unit_ms, true)?,
                    stats_time(st, &dtype, plan.time_unit_ms, false)?,
                ))
            });
            decide.push(match range {
                Some((min, max)) => Decide::Stats { s, rg, min, max },
                None => Decide::Times { s, rg, n: None },
            });
        }
        for group in decide.chunks(threads) {
            let wanted: Vec<usize> = (group.iter())
                .filter_map(|d| match d {
                    Decide::Times { rg, .. } => Some(*rg),
                    Decide::Stats { .. } => None,
                })
                .collect();
            let mut times = scan_many(plan, path, &meta, &wanted, tcol)?.into_iter();
            for d in group {
                match *d {
                    Decide::Stats { s, min, max, .. } if future.admits_whole(min, max) => {
                        future.admit_whole(&mut out, s, max)
                    }
                    // After a time held back as far ahead, or a jump: this row group's times,
                    // read now (rarely).
                    Decide::Stats { s, rg, .. } => {
                        for times in scan_many(plan, path, &meta, &[rg], tcol)? {
                            for (row, t) in valid(&times) {
                                future.push(&mut out, s, row, t);
                            }
                        }
                    }
                    Decide::Times { s, n, .. } => {
                        let times = times.next().expect("one scan per row group that needs one");
                        for (row, t) in valid(&times) {
                            future.push(&mut out, s + n.map_or(0, |n| row as usize / n), row, t);
                        }
                    }
                }
            }
        }
    }
    future.finish(&mut out);
    Ok(out)
}

/// A row group's times in milliseconds, by row, −1 where a time is not valid (missing,
/// unreadable or negative): 8 bytes a row while a few row groups wait for their turn.
type Times = Vec<i64>;

/// The valid times of `times` with their rows.
fn valid(times: &Times) -> impl Iterator<Item = (u64, i64)> + '_ {
    (times.iter().enumerate())
        .filter(|(_, t)| **t >= 0)
        .map(|(row, t)| (row as u64, *t))
}

/// The times of row groups `rgs` of `path`, in order, each read on a thread of its own (the
/// caller passes as many as it has threads for) with a file handle of its own (clones of one
/// handle share its offset).
fn scan_many(
    plan: &SourcePlan,
    path: &Path,
    meta: &ArrowReaderMetadata,
    rgs: &[usize],
    tcol: usize,
) -> Result<Vec<Times>, SourceError> {
    let scan = |rg: usize| -> Result<Times, SourceError> {
        let file = File::open(path).map_err(|e| SourceError::read(path, e))?;
        let mut times = Vec::with_capacity(meta.metadata().row_group(rg).num_rows() as usize);
        scan_times(plan, &file, meta, rg, tcol, path, &mut |row, t| {
            times.resize(row as usize, -1);
            times.push(t);
        })?;
        Ok(times)
    };
    if rgs.len() <= 1 {
        return rgs.iter().map(|&rg| scan(rg)).collect();
    }
    std::thread::scope(|scope| {
        let scan = &scan;
        let handles: Vec<_> = rgs.iter().map(|&rg| scope.spawn(move || scan(rg))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a time scan does not panic"))
            .collect()
    })
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
            Some(scale_to_ms(raw, mul, div))
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
    /// The row ranges this worker will read, by file and row group ([`SplitReader::prepare`]).
    ranges: std::collections::HashMap<(usize, usize), Vec<(usize, usize)>>,
    /// A row group being read range by range: its file and row group, its reader over every
    /// range of [`ParquetReader::ranges`], and rows read but not yet handed out.
    cursor: Option<Cursor>,
}

struct Cursor {
    at: (usize, usize),
    batches: ParquetRecordBatchReader,
    left: Option<RecordBatch>,
    /// The ranges the reader yields after the current one, in order: a split continues the
    /// cursor only when it is the next of them.
    next: std::collections::VecDeque<(usize, usize)>,
}

impl ParquetReader {
    pub fn new(plan: &SourcePlan, files: &[PathBuf]) -> ParquetReader {
        ParquetReader {
            plan: plan.clone(),
            files: files.to_vec(),
            opened: files.iter().map(|_| None).collect(),
            types: TypeCache::default(),
            empty: Arc::from(Vec::new()),
            ranges: Default::default(),
            cursor: None,
        }
    }

    /// A reader of row group `rg` of file `fi`, over `rows` (`(start, len)` in order) or all of it.
    fn open(
        &mut self,
        fi: usize,
        rg: usize,
        rows: Option<&[(usize, usize)]>,
    ) -> Result<ParquetRecordBatchReader, SourceError> {
        let path = self.files[fi].clone();
        if self.opened[fi].is_none() {
            self.opened[fi] = Some(load(&path)?);
        }
        let (file, meta) = self.opened[fi].as_ref().expect("opened above");
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
        let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta.clone())
            .with_row_groups(vec![rg])
            .with_projection(mask)
            .with_batch_size(BATCH_ROWS);
        if let Some(rows) = rows {
            let mut selection = Vec::with_capacity(rows.len() * 2);
            let mut at = 0;
            for &(start, len) in rows {
                selection.push(RowSelector::skip(start - at));
                selection.push(RowSelector::select(len));
                at = start + len;
            }
            builder = builder.with_row_selection(RowSelection::from(selection));
        }
        builder.build().map_err(|e| read_error(&path, rg, e))
    }

    /// The next `len` rows of the cursor over row group `rg` of file `fi` (opened over every range
    /// this worker reads of it, so its pages are decompressed once), in batches.
    fn next_rows(
        &mut self,
        fi: usize,
        rg: usize,
        (start, len): (usize, usize),
        each: &mut dyn FnMut(&mut Self, RecordBatch, usize),
    ) -> Result<(), SourceError> {
        let continues = |c: &Cursor| c.at == (fi, rg) && c.next.front() == Some(&(start, len));
        match self.cursor.as_mut() {
            Some(c) if continues(c) => {
                c.next.pop_front();
            }
            _ => {
                // Over this range and the worker's later ones of the row group; a range it was
                // not told of (no `prepare`, as when a table is checked before the run) is read
                // alone.
                let rows: Vec<(usize, usize)> = match self.ranges.get(&(fi, rg)) {
                    Some(r) if r.contains(&(start, len)) => r.iter().copied().filter(|r| r.0 >= start).collect(),
                    _ => vec![(start, len)],
                };
                let batches = self.open(fi, rg, Some(&rows))?;
                self.cursor = Some(Cursor {
                    at: (fi, rg),
                    batches,
                    left: None,
                    next: rows.into_iter().skip(1).collect(),
                });
            }
        }
        let taken = self.take(fi, rg, len, &mut |reader, batch, offset| {
            each(reader, batch, start + offset)
        });
        if taken.is_err() {
            // Stopped within the range: a later read opens a new cursor.
            self.cursor = None;
        }
        taken
    }

    /// Hands out the cursor's next `n` rows as batches with their offset among the `n`.
    fn take(
        &mut self,
        fi: usize,
        rg: usize,
        n: usize,
        each: &mut dyn FnMut(&mut Self, RecordBatch, usize),
    ) -> Result<(), SourceError> {
        let mut done = 0;
        while done < n {
            let cursor = self.cursor.as_mut().expect("opened by next_rows");
            let batch = match cursor.left.take() {
                Some(b) => b,
                None => match cursor.batches.next() {
                    Some(b) => b.map_err(|e| read_error(&self.files[fi], rg, e))?,
                    None => {
                        return Err(SourceError::read(
                            &self.files[fi],
                            format!("row group {rg}: ended {} rows early", n - done),
                        ))
                    }
                },
            };
            let batch = if batch.num_rows() > n - done {
                let rest = batch.slice(n - done, batch.num_rows() - (n - done));
                self.cursor.as_mut().expect("above").left = Some(rest);
                batch.slice(0, n - done)
            } else {
                batch
            };
            let rows = batch.num_rows();
            each(self, batch, done);
            done += rows;
        }
        Ok(())
    }
}

impl SplitReader for ParquetReader {
    fn prepare(&mut self, splits: &[&Split]) {
        self.ranges.clear();
        for split in splits {
            if let Unit::Rows { rg, start, len } = split.unit {
                self.ranges.entry((split.file, rg)).or_default().push((start, len));
            }
        }
    }

    fn read(&mut self, split: &Split, out: &mut dyn FnMut(&mut Vec<Decoded>)) -> Result<(), SourceError> {
        let path = self.files[split.file].clone();
        let mut decoded = Vec::with_capacity(BATCH_ROWS);
        match split.unit {
            Unit::RowGroup(rg) => {
                self.cursor = None;
                let reader = self.open(split.file, rg, None)?;
                let mut first_row = 0usize;
                for batch in reader {
                    let batch = batch.map_err(|e| read_error(&path, rg, e))?;
                    self.decode(&batch, &path, rg, first_row, &mut decoded);
                    first_row += batch.num_rows();
                    out(&mut decoded);
                    decoded.clear();
                }
            }
            // Positions are rows of the row group, as dead letters and future rows name them.
            Unit::Rows { rg, start, len } => {
                self.next_rows(split.file, rg, (start, len), &mut |r, batch, first_row| {
                    r.decode(&batch, &path, rg, first_row, &mut decoded);
                    out(&mut decoded);
                    decoded.clear();
                })?
            }
            Unit::Bytes { .. } => unreachable!("parquet splits are row groups or their rows"),
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
        // One scratch row for the batch: each payload is collected from it into its shared
        // slice in one allocation (a drain has an exact length).
        let mut fields: Vec<(Sym, Value)> = Vec::with_capacity(payload.len());
        for row in 0..batch.num_rows() {
            let time = time_col.time_ms(row, self.plan.time_unit_ms);
            let kind = match (&fixed, &type_col) {
                (Some(k), _) => Some(*k),
                (None, Some(col)) => col.str_at(row).map(|s| self.types.get(s)),
                (None, None) => None,
            };
            fields.clear();
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
                            fields.drain(..).collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::arrow_write::rows_to_batch;
    use crate::plan::Format;
    use crate::source::{reader, Layout};

    const ROWS: usize = 2 * SPLIT_ROWS + 1000;

    /// One row group of `ROWS` events, times rising with a little disorder, a far-future spike
    /// and a few rows without a time.
    fn log(dir: &Path) -> SourcePlan {
        let rows: Vec<Vec<Value>> = (0..ROWS as i64)
            .map(|i| {
                let t = match i {
                    5_000 => Value::Time(i * 1000 + 400 * 86_400_000),
                    _ if i % 997 == 0 => Value::Null,
                    _ => Value::Time(i * 1000 - (i % 7) * 3000),
                };
                vec![t, Value::str(if i % 3 == 0 { "a" } else { "b" }), Value::Int(i)]
            })
            .collect();
        let columns = ["ts", "type", "n"].map(String::from);
        let batch = rows_to_batch(&columns, &rows).unwrap();
        let path = dir.join("e.parquet");
        let mut sink = crate::format::ParquetSink::open(&path, batch.schema()).unwrap();
        sink.write(&batch).unwrap();
        sink.close().unwrap();
        crate::source::test_plan(Format::Parquet, vec![path])
    }

    /// A decoded row as the tests compare it: `position time type payload` or `position reason`.
    fn described(d: Decoded) -> (u64, String) {
        match d {
            Decoded::Event(e, pos) => (pos, format!("{} {} {:?}", e.time, e.kind, e.payload)),
            Decoded::Bad(l) => (l.location.rsplit("row").next().unwrap().parse().unwrap(), l.reason),
        }
    }

    /// What worker `index` of `peers` reads of `layout`, [`described`].
    fn read(plan: &SourcePlan, layout: &Layout, index: usize, peers: usize) -> Vec<(u64, String)> {
        let mut r = reader(plan, layout);
        let mine: Vec<&Split> = layout.splits.iter().skip(index).step_by(peers).collect();
        r.prepare(&mine);
        let mut out = Vec::new();
        for split in mine {
            r.read(split, &mut |chunk| out.extend(chunk.drain(..).map(described)))
                .unwrap();
        }
        out
    }

    #[test]
    fn row_ranges_of_a_row_group_read_what_the_row_group_reads() {
        let dir = tempfile::tempdir().unwrap();
        let plan = log(dir.path());
        let whole = Layout::discover_for(&plan, 1).unwrap();
        assert_eq!(whole.splits.len(), 1);
        let want = read(&plan, &whole, 0, 1);
        assert_eq!(want.len(), ROWS);
        for peers in [2, 3] {
            let ranges = Layout::discover_for(&plan, peers).unwrap();
            let units: Vec<Unit> = ranges.splits.iter().map(|s| s.unit.clone()).collect();
            assert_eq!(
                units,
                vec![
                    Unit::Rows {
                        rg: 0,
                        start: 0,
                        len: SPLIT_ROWS
                    },
                    Unit::Rows {
                        rg: 0,
                        start: SPLIT_ROWS,
                        len: SPLIT_ROWS
                    },
                    Unit::Rows {
                        rg: 0,
                        start: 2 * SPLIT_ROWS,
                        len: 1000
                    },
                ]
            );
            // The same future rows and maximum, split by range.
            let future: Vec<u64> = ranges.splits.iter().flat_map(|s| s.future.clone()).collect();
            assert_eq!(future, whole.splits[0].future);
            assert_eq!(future, vec![5_000]);
            let max = ranges.splits.iter().map(|s| s.max_time).max().flatten();
            assert_eq!(max, whole.splits[0].max_time);
            assert_eq!(ranges.splits[0].max_time, Some(8_190_000));
            // Every worker's rows, with the row group's positions, make up the whole.
            let mut got: Vec<(u64, String)> = (0..peers).flat_map(|i| read(&plan, &ranges, i, peers)).collect();
            got.sort_by_key(|g| g.0);
            assert_eq!(got, want, "{peers} workers");
        }
    }

    /// A reader not told its splits (as the range-table check before a run reads every split of
    /// a context source), or told some and asked for others or in another order, reads each
    /// split's own rows: a cursor over earlier ranges is continued only by the range it reaches
    /// next.
    #[test]
    fn row_ranges_read_in_any_order_or_unprepared_read_their_own_rows() {
        let dir = tempfile::tempdir().unwrap();
        let plan = log(dir.path());
        let want = read(&plan, &Layout::discover_for(&plan, 1).unwrap(), 0, 1);
        let ranges = Layout::discover_for(&plan, 2).unwrap();
        assert_eq!(ranges.splits.len(), 3);
        let rows_of = |split: &Split| -> Vec<(u64, String)> {
            let Unit::Rows { start, len, .. } = split.unit else {
                panic!("a range split")
            };
            want[start..start + len].to_vec()
        };
        let orders: [(&[usize], &[usize]); 5] = [
            (&[], &[0, 1, 2]),
            (&[], &[2, 1, 0]),
            (&[0, 2], &[0, 1, 2]),
            (&[0, 2], &[2, 0]),
            (&[0, 1, 2], &[1, 0, 2, 2]),
        ];
        for (prepared, order) in orders {
            let mut r = reader(&plan, &ranges);
            r.prepare(&prepared.iter().map(|&i| &ranges.splits[i]).collect::<Vec<_>>());
            for &i in order {
                let mut got = Vec::new();
                r.read(&ranges.splits[i], &mut |chunk| {
                    got.extend(chunk.drain(..).map(described))
                })
                .unwrap_or_else(|e| panic!("prepared {prepared:?}, order {order:?}, split {i}: {e}"));
                assert_eq!(
                    got,
                    rows_of(&ranges.splits[i]),
                    "prepared {prepared:?}, order {order:?}, split {i}"
                );
            }
        }
    }

    /// `rows` of (time, type, `low`, `high`, `dev.os`) as a Parquet file, dictionary-encoded
    /// or not. With a dictionary, its page is limited to 256 bytes, so that `high` (a new value
    /// per row) falls back to plain pages after a few rows while `low` (three values and nulls)
    /// and the struct's `os` stay dictionary-encoded throughout.
    fn strings_file(dir: &Path, name: &str, dictionary: bool) -> PathBuf {
        use arrow::array::{ArrayRef, StringArray, StructArray, TimestampMillisecondArray};
        use arrow::datatypes::{Field, TimeUnit};
        use parquet::arrow::ArrowWriter;
        use parquet::file::properties::WriterProperties;
        let n = 3_000i64;
        let low = |i: i64| (i % 5 != 0).then(|| ["eu", "us", "ap"][(i % 3) as usize]);
        let os: ArrayRef = Arc::new(StringArray::from_iter(
            (0..n).map(|i| Some(["ios", "android"][(i % 2) as usize])),
        ));
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("ts", Arc::new(TimestampMillisecondArray::from_iter_values(0..n))),
            (
                "type",
                Arc::new(StringArray::from_iter(
                    (0..n).map(|i| Some(["a", "b"][(i % 2) as usize])),
                )),
            ),
            ("low", Arc::new(StringArray::from_iter((0..n).map(low)))),
            (
                "high",
                Arc::new(StringArray::from_iter((0..n).map(|i| Some(format!("id-{i}"))))),
            ),
            (
                "dev",
                Arc::new(StructArray::from(vec![(
                    Arc::new(Field::new("os", DataType::Utf8, true)),
                    os,
                )])),
            ),
        ];
        let mut batch = RecordBatch::try_from_iter(columns).unwrap();
        let ts = Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), false);
        let schema = batch.schema();
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields[0] = ts;
        batch = batch
            .with_schema(Arc::new(arrow::datatypes::Schema::new(fields)))
            .unwrap();
        let props = WriterProperties::builder()
            .set_dictionary_enabled(dictionary)
            .set_dictionary_page_size_limit(256)
            .set_data_page_row_count_limit(100)
            .set_write_batch_size(100)
            .set_max_row_group_row_count(Some(2_000))
            .build();
        let path = dir.join(name);
        let mut writer = ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        path
    }

    #[test]
    fn strings_dictionary_encoded_throughout_are_read_as_shared_values_with_the_same_events() {
        let dir = tempfile::tempdir().unwrap();
        let dict = strings_file(dir.path(), "dict.parquet", true);
        let plain = strings_file(dir.path(), "plain.parquet", false);
        // Only the columns whose every data page is dictionary-encoded become dictionaries.
        let (_, meta) = load(&dict).unwrap();
        let types: Vec<String> = meta
            .schema()
            .fields()
            .iter()
            .map(|f| format!("{} {}", f.name(), f.data_type()))
            .collect();
        assert_eq!(
            types,
            [
                "ts Timestamp(ms)",
                "type Dictionary(Int32, Utf8)",
                "low Dictionary(Int32, Utf8)",
                "high Utf8",
                "dev Struct(\"os\": Dictionary(Int32, Utf8))",
            ]
        );
        assert!(dictionary_schema(&load(&plain).unwrap().1).is_none());
        // The same events, position for position, with 1 and 2 workers.
        for peers in [1, 2] {
            let events = |path: &PathBuf| {
                let plan = crate::source::test_plan(Format::Parquet, vec![path.clone()]);
                let layout = Layout::discover_for(&plan, peers).unwrap();
                let mut got: Vec<(u64, String)> = (0..peers).flat_map(|i| read(&plan, &layout, i, peers)).collect();
                got.sort_by_key(|g| g.0);
                got
            };
            let (from_dict, from_plain) = (events(&dict), events(&plain));
            assert_eq!(from_dict.len(), 3_000);
            assert_eq!(from_dict, from_plain, "{peers} workers");
        }
        // Within a batch, the rows of one dictionary entry share its string.
        let plan = crate::source::test_plan(Format::Parquet, vec![dict]);
        let layout = Layout::discover_for(&plan, 1).unwrap();
        let mut r = reader(&plan, &layout);
        let mut lows: Vec<Value> = Vec::new();
        r.read(&layout.splits[0], &mut |chunk| {
            for d in chunk.drain(..) {
                if let Decoded::Event(e, _) = d {
                    lows.extend(
                        e.payload
                            .iter()
                            .filter(|(k, _)| k.as_str() == "low")
                            .map(|(_, v)| v.clone()),
                    );
                }
            }
        })
        .unwrap();
        let (Value::Str(a), Value::Str(b)) = (&lows[0], &lows[3]) else {
            panic!("strings: {:?} {:?}", lows[0], lows[3]);
        };
        assert_eq!((a.as_ref(), b.as_ref()), ("us", "us"));
        assert!(Arc::ptr_eq(a, b), "one shared string");
    }

    /// Seven row groups, times shuffled within each and a far-future spike in two (one the
    /// last row of its group, so that it is still held back when the next group, whose
    /// statistics alone would admit it whole, comes): the splits, maxima and future rows are
    /// those of every time through the filter in order, whether the times are read on one
    /// thread or several, for whole row groups and for row ranges.
    #[test]
    fn times_read_on_several_threads_give_the_splits_one_thread_gives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("groups.parquet");
        let mut sink: Option<crate::format::ParquetSink> = None;
        for g in 0..7i64 {
            let rows: Vec<Vec<Value>> = (0..3_000i64)
                .map(|i| {
                    let t = match (g, i) {
                        (2, 2_999) | (5, 10) => Value::Time(400 * 86_400_000),
                        _ => Value::Time((g * 3_000 + (i * 7_919) % 3_000) * 1000),
                    };
                    vec![t, Value::str("a"), Value::Int(i)]
                })
                .collect();
            let batch = rows_to_batch(&["ts", "type", "n"].map(String::from), &rows).unwrap();
            let sink = sink.get_or_insert_with(|| crate::format::ParquetSink::open(&path, batch.schema()).unwrap());
            sink.write(&batch).unwrap();
            sink.flush().unwrap();
        }
        sink.unwrap().close().unwrap();
        let plan = crate::source::test_plan(Format::Parquet, vec![path.clone()]);
        let (file, meta) = load(&path).unwrap();
        for split_rows in [None, Some(1_000)] {
            let one = splits_on(&plan, std::slice::from_ref(&path), split_rows, 1).unwrap();
            assert_eq!(one.len(), if split_rows.is_some() { 21 } else { 7 });
            assert_eq!(
                one.iter().filter(|s| !s.future.is_empty()).count(),
                2,
                "the spikes are future rows"
            );
            // The reference: every time through the filter, in order, no statistics.
            let mut want: Vec<Split> = one.iter().map(|s| Split::new(s.file, s.unit.clone(), s.rows)).collect();
            let mut future = FutureFilter::new(plan.limits.max_future_ms);
            let per = want.len() / 7;
            for rg in 0..7 {
                scan_times(&plan, &file, &meta, rg, 0, &path, &mut |row, t| {
                    let s = rg * per + split_rows.map_or(0, |n| row as usize / n);
                    future.push(&mut want, s, row, t)
                })
                .unwrap();
            }
            future.finish(&mut want);
            assert_eq!(one, want, "{split_rows:?}");
            for threads in [2, 3, 8] {
                let many = splits_on(&plan, std::slice::from_ref(&path), split_rows, threads).unwrap();
                assert_eq!(many, one, "{threads} threads, {split_rows:?}");
            }
        }
    }
}
