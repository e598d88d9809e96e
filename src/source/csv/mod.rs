//! CSV files (`format = "csv"`): delimited text with a header (or the spec's `columns`), decoded
//! by `arrow-csv` into Arrow batches and read like Parquet's (see [`super::arrow_read`]).
//!
//! Files are split into byte ranges of about [`SPLIT_BYTES`] that start at *record* boundaries:
//! a scan of each file with the parser `arrow-csv` runs ([`scan`]) finds where records end,
//! quoted line breaks included, and reads each record's time field for the split's maximum
//! event time. Positions are the line a record starts on.
//!
//! Bad records never stop a run and are never dropped; each is a dead letter naming its file and
//! line:
//!
//! | reason | the record |
//! |---|---|
//! | `malformed_csv` | has more or fewer fields than the header; opens a quote it never closes (its first line is the bad record, the next line is read again); or holds a value its column's type does not parse (detail: the column and value) |
//! | `invalid_utf8` | is not UTF-8 |
//! | `bad_time` | has an empty time field, or one that `time_format` (or, without it, the number and RFC 3339 rules) does not read |
//! | `missing_type` | has an empty type field |
//!
//! Only the columns some stage reads are decoded (projection pushdown), so a bad value in a
//! column no stage reads is not an error. Empty fields are nulls, and nulls are absent from the
//! payload, as in Parquet.

pub mod scan;
pub mod schema;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::error::ArrowError;

use super::arrow_read::{time_ms, Col, TypeCache};
use super::future::FutureFilter;
use super::{Decoded, SourceError, Split, SplitReader, Unit};
use crate::dead_letter::DeadLetter;
use crate::event::Event;
use crate::plan::SourcePlan;
use crate::value::{Sym, Value};
use scan::{trim_terminator, Scanner};
pub use schema::FileSchema;

pub const SPLIT_BYTES: u64 = 8 << 20;
/// Records decoded by one `arrow-csv` call.
const CHUNK_RECORDS: usize = 4096;

/// Byte-range splits of every file, each starting at a record boundary, with their maximum
/// admitted event time and far-future records (see [`super::future`]).
pub fn splits(plan: &SourcePlan, files: &[PathBuf]) -> Result<Vec<Split>, SourceError> {
    splits_of_size(plan, files, SPLIT_BYTES)
}

/// [`splits`] of about `split_bytes` each.
pub(crate) fn splits_of_size(
    plan: &SourcePlan,
    files: &[PathBuf],
    split_bytes: u64,
) -> Result<Vec<Split>, SourceError> {
    let mut out = Vec::new();
    let mut future = FutureFilter::new(plan.limits.max_future_ms);
    for (fi, path) in files.iter().enumerate() {
        let bytes = std::fs::read(path).map_err(|e| SourceError::open(path, e))?;
        let fs = FileSchema::from_prefix(plan, path, &bytes, true)?;
        let mut scanner = Scanner::new(plan.csv.delimiter);
        let (mut pos, mut line) = (0usize, 1u64);
        let mut header = plan.csv.header;
        // The open split: its index, first byte and line.
        let mut open: Option<usize> = None;
        let mut start = (0usize, 1u64);
        loop {
            let before = (pos, line);
            let Some(r) = scanner.next(&bytes, &mut pos, &mut line, Some(fs.width()), true) else {
                break;
            };
            let s = *open.get_or_insert_with(|| {
                start = before;
                out.push(Split::new(
                    fi,
                    Unit::Bytes {
                        start: before.0 as u64,
                        end: 0,
                        first_line: before.1,
                    },
                    0,
                ));
                out.len() - 1
            });
            if std::mem::take(&mut header) {
                continue;
            }
            out[s].rows += 1;
            if r.problem.is_none() {
                let time = std::str::from_utf8(scanner.field(fs.time))
                    .ok()
                    .and_then(|text| time_of(plan, text).ok());
                if let Some(t) = time.filter(|t| *t >= 0) {
                    future.push(&mut out, s, r.line, t);
                }
            }
            if (pos - start.0) as u64 >= split_bytes {
                close(&mut out[s], pos);
                open = None;
            }
        }
        if let Some(s) = open {
            close(&mut out[s], bytes.len());
        }
    }
    future.finish(&mut out);
    Ok(out)
}

fn close(split: &mut Split, end: usize) {
    if let Unit::Bytes { end: e, .. } = &mut split.unit {
        *e = end as u64;
    }
}

/// The event time in ms of a time field's text: read with the source's `time_format`, or else
/// as NDJSON and Parquet read times (integers and floats in `time_unit`, RFC 3339 text).
pub fn time_of(plan: &SourcePlan, text: &str) -> Result<i64, String> {
    if let Some(format) = &plan.csv.time_format {
        return crate::plan::csv::parse_time(text, format);
    }
    let t = text.trim();
    let value = match (t.parse::<i64>(), t.parse::<f64>()) {
        (Ok(i), _) => Value::Int(i),
        (_, Ok(f)) if f.is_finite() => Value::float(f),
        _ => Value::str(t),
    };
    time_ms(value, plan.time_unit_ms)
}

/// Reads byte-range splits of CSV files on one worker.
pub struct CsvReader {
    plan: SourcePlan,
    files: Vec<PathBuf>,
    schemas: Vec<Option<Arc<FileSchema>>>,
    types: TypeCache,
    scanner: Scanner,
}

impl CsvReader {
    pub fn new(plan: &SourcePlan, files: &[PathBuf]) -> CsvReader {
        CsvReader {
            plan: plan.clone(),
            files: files.to_vec(),
            schemas: vec![None; files.len()],
            types: TypeCache::default(),
            scanner: Scanner::new(plan.csv.delimiter),
        }
    }

    fn schema(&mut self, file: usize) -> Result<Arc<FileSchema>, SourceError> {
        if self.schemas[file].is_none() {
            self.schemas[file] = Some(Arc::new(FileSchema::read(&self.plan, &self.files[file])?));
        }
        Ok(self.schemas[file].clone().expect("read above"))
    }
}

/// A record of a chunk waiting to be decoded: its bytes in the split and first line, or its
/// dead letter.
enum Slot {
    Good(std::ops::Range<usize>, u64),
    Bad(Box<DeadLetter>),
}

impl SplitReader for CsvReader {
    fn read(&mut self, split: &Split, out: &mut dyn FnMut(&mut Vec<Decoded>)) -> Result<(), SourceError> {
        let Unit::Bytes { start, end, first_line } = split.unit else {
            unreachable!("csv splits are byte ranges")
        };
        let path = self.files[split.file].clone();
        let fs = self.schema(split.file)?;
        let mut file = File::open(&path).map_err(|e| SourceError::read(&path, e))?;
        let file_len = file.metadata().map_err(|e| SourceError::read(&path, e))?.len();
        file.seek(SeekFrom::Start(start))
            .map_err(|e| SourceError::read(&path, e))?;
        let mut bytes = Vec::with_capacity((end - start) as usize);
        file.take(end - start)
            .read_to_end(&mut bytes)
            .map_err(|e| SourceError::read(&path, e))?;
        let mut chunk = Chunk {
            plan: &self.plan,
            fs: &fs,
            path: &path,
            projection: projection(&self.plan, &fs),
            types: &mut self.types,
        };
        let (mut pos, mut line) = (0usize, first_line);
        let mut header = start == 0 && self.plan.csv.header;
        let mut slots = Vec::with_capacity(CHUNK_RECORDS);
        let mut decoded = Vec::with_capacity(CHUNK_RECORDS);
        let eof = end == file_len;
        while let Some(r) = self.scanner.next(&bytes, &mut pos, &mut line, Some(fs.width()), eof) {
            if std::mem::take(&mut header) {
                continue;
            }
            slots.push(match r.problem {
                None => Slot::Good(r.start..r.end, r.line),
                Some((reason, detail)) => Slot::Bad(Box::new(chunk.letter(
                    reason,
                    detail,
                    &bytes[r.start..r.end],
                    r.line,
                    None,
                ))),
            });
            if slots.len() >= CHUNK_RECORDS {
                chunk.decode(&bytes, &mut slots, &mut decoded);
                out(&mut decoded);
                decoded.clear();
            }
        }
        chunk.decode(&bytes, &mut slots, &mut decoded);
        out(&mut decoded);
        Ok(())
    }
}

/// The columns to decode, in file order: time, type, and the payload columns some stage reads.
fn projection(plan: &SourcePlan, fs: &FileSchema) -> Vec<usize> {
    (0..fs.width())
        .filter(|&i| {
            i == fs.time
                || Some(i) == fs.kind
                || plan
                    .projection
                    .as_ref()
                    .is_none_or(|p| p.iter().any(|f| f == fs.schema.field(i).name()))
        })
        .collect()
}

/// What decoding one split's records needs.
struct Chunk<'a> {
    plan: &'a SourcePlan,
    fs: &'a FileSchema,
    path: &'a Path,
    projection: Vec<usize>,
    types: &'a mut TypeCache,
}

impl Chunk<'_> {
    fn letter(&self, reason: &str, detail: String, raw: &[u8], line: u64, event_time: Option<i64>) -> DeadLetter {
        DeadLetter {
            stage: format!("source:{}", self.plan.name),
            reason: reason.into(),
            detail,
            location: format!("{}:{line}", self.path.display()),
            record: String::from_utf8_lossy(trim_terminator(raw)).into_owned(),
            event_time,
            original: None,
        }
    }

    /// Decodes `records` of `bytes` with arrow-csv, in the given columns.
    fn arrow(
        &self,
        bytes: &[u8],
        records: &[std::ops::Range<usize>],
        columns: Vec<usize>,
    ) -> Result<RecordBatch, ArrowError> {
        let mut text = Vec::with_capacity(records.iter().map(|r| r.len() + 1).sum());
        for r in records {
            text.extend_from_slice(trim_terminator(&bytes[r.clone()]));
            text.push(b'\n');
        }
        let mut decoder = arrow_csv::ReaderBuilder::new(self.fs.schema.clone())
            .with_header(false)
            .with_delimiter(self.plan.csv.delimiter)
            .with_batch_size(records.len().max(1))
            .with_projection(columns)
            .build_decoder();
        let mut at = 0;
        while at < text.len() {
            let n = decoder.decode(&text[at..])?;
            if n == 0 {
                break;
            }
            at += n;
        }
        decoder.decode(&[])?;
        let batch = decoder
            .flush()?
            .ok_or_else(|| ArrowError::CsvError("no records decoded".into()))?;
        if batch.num_rows() != records.len() {
            return Err(ArrowError::CsvError(format!(
                "{} records decoded where {} were found",
                batch.num_rows(),
                records.len()
            )));
        }
        Ok(batch)
    }

    /// Decodes the good records of `slots` and pushes every slot, in order, to `out`.
    fn decode(&mut self, bytes: &[u8], slots: &mut Vec<Slot>, out: &mut Vec<Decoded>) {
        let goods: Vec<(std::ops::Range<usize>, u64)> = slots
            .iter()
            .filter_map(|s| match s {
                Slot::Good(r, line) => Some((r.clone(), *line)),
                Slot::Bad(_) => None,
            })
            .collect();
        let ranges: Vec<_> = goods.iter().map(|(r, _)| r.clone()).collect();
        // One call for the chunk; when a value does not parse, one per record. Each good record
        // gets a batch and a row, or a dead letter.
        let mut batches: Vec<RecordBatch> = Vec::new();
        let mut results: Vec<Result<(usize, usize), Box<DeadLetter>>> = Vec::with_capacity(goods.len());
        if !ranges.is_empty() {
            match self.arrow(bytes, &ranges, self.projection.clone()) {
                Ok(batch) => {
                    batches.push(batch);
                    results.extend((0..goods.len()).map(|row| Ok((0, row))));
                }
                Err(_) => {
                    for (r, line) in &goods {
                        match self.arrow(bytes, std::slice::from_ref(r), self.projection.clone()) {
                            Ok(batch) => {
                                batches.push(batch);
                                results.push(Ok((batches.len() - 1, 0)));
                            }
                            Err(e) => results.push(Err(Box::new(self.unparsable(bytes, r.clone(), *line, e)))),
                        }
                    }
                }
            }
        }
        let names: Vec<Sym> = self
            .projection
            .iter()
            .map(|&c| Sym::new(self.fs.schema.field(c).name()))
            .collect();
        let cols: Vec<Vec<Col>> = batches
            .iter()
            .map(|b| b.columns().iter().map(Col::new).collect())
            .collect();
        let mut results = results.into_iter();
        for slot in slots.drain(..) {
            match slot {
                Slot::Bad(letter) => out.push(Decoded::Bad(letter)),
                Slot::Good(range, line) => match results.next().expect("a result per good record") {
                    Err(letter) => out.push(Decoded::Bad(letter)),
                    Ok((b, row)) => out.push(self.row(&cols[b], &names, row, &bytes[range], line)),
                },
            }
        }
    }

    /// The dead letter of a record arrow-csv cannot decode, naming the first column at fault.
    fn unparsable(&self, bytes: &[u8], range: std::ops::Range<usize>, line: u64, error: ArrowError) -> DeadLetter {
        let raw = &bytes[range.clone()];
        let at_fault = self
            .projection
            .iter()
            .copied()
            .find(|&c| self.arrow(bytes, std::slice::from_ref(&range), vec![c]).is_err());
        let detail = match at_fault {
            Some(c) => {
                let mut scanner = Scanner::new(self.plan.csv.delimiter);
                let (mut pos, mut l) = (0, line);
                scanner.next(raw, &mut pos, &mut l, None, true);
                let field = self.fs.schema.field(c);
                format!(
                    "column `{}`: `{}` is not a valid {}",
                    field.name(),
                    String::from_utf8_lossy(scanner.field(c)),
                    field.data_type()
                )
            }
            None => error.to_string(),
        };
        self.letter("malformed_csv", detail, raw, line, None)
    }

    /// Row `row` of a decoded batch as an event, or its dead letter.
    fn row(&mut self, cols: &[Col], names: &[Sym], row: usize, raw: &[u8], line: u64) -> Decoded {
        let mut time = None;
        let mut kind = None;
        let mut fields = Vec::with_capacity(names.len());
        for (c, (col, name)) in cols.iter().zip(names).enumerate() {
            let file_column = self.projection[c];
            if file_column == self.fs.time {
                time = Some(col.str_at(row).map(str::to_string));
            } else if Some(file_column) == self.fs.kind {
                kind = Some(col.str_at(row).map(|s| self.types.get(s)));
            } else {
                let v = col.get(row);
                if !v.is_null() {
                    fields.push((*name, v));
                }
            }
        }
        let time_field = self.fs.schema.field(self.fs.time).name();
        let time = match time.flatten() {
            None => {
                return Decoded::Bad(Box::new(self.letter(
                    "bad_time",
                    format!("{time_field}: empty"),
                    raw,
                    line,
                    None,
                )))
            }
            Some(text) => match time_of(self.plan, &text) {
                Ok(t) => t,
                Err(e) => {
                    return Decoded::Bad(Box::new(self.letter(
                        "bad_time",
                        format!("{time_field}: {e}"),
                        raw,
                        line,
                        None,
                    )))
                }
            },
        };
        let kind = match (&self.plan.fixed_type, kind.flatten()) {
            (Some(fixed), _) => self.types.get(fixed),
            (None, Some(k)) => k,
            (None, None) => {
                let detail = format!("{}: empty", self.plan.type_field);
                return Decoded::Bad(Box::new(self.letter("missing_type", detail, raw, line, Some(time))));
            }
        };
        Decoded::Event(Event::new(time, kind, fields), line)
    }
}
