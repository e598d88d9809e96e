//! Sources: ordered, splittable event logs with event time and a watermark.
//!
//! A source is a sequence of *splits* (Parquet row groups, NDJSON and CSV byte ranges) in log order, each
//! with the largest event time it holds. Split `i` is read by worker `i % peers`; every worker
//! computes the same split list, so no worker waits on another to decide lateness.
//!
//! Watermark: `max event time seen − allowed lateness`, where "seen" follows log order. An event
//! is *late* when its time is below the watermark in force just before it (the running maximum
//! over every earlier row in the log). Because each split carries its maximum, a worker knows the
//! prefix maximum at the start of any split without reading earlier splits, so the late/not-late
//! decision is the same for 1, 2 or 4 workers and any batching. Late events become dead letters
//! with reason `late`.

pub mod arrow_read;
pub mod csv;
pub mod future;
pub mod json_scan;
pub mod lateness;
pub mod ndjson;
pub mod parquet;
pub mod ranges;
pub mod schema_probe;
pub use schema_probe::plan_file;

use std::path::{Path, PathBuf};

use crate::dead_letter::DeadLetter;
use crate::event::Event;
use crate::plan::{Format, SourcePlan};

/// Errors opening or reading a source (bad rows are dead letters, not errors).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Read { path: PathBuf, message: String },
}

impl SourceError {
    pub fn open(path: &Path, message: impl ToString) -> SourceError {
        SourceError::Open {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
    pub fn read(path: &Path, message: impl ToString) -> SourceError {
        SourceError::Read {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
}

/// One unit of work in log order.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    pub file: usize,
    pub unit: Unit,
    /// Largest admitted event time in the split, if it has any (see [`future`]).
    pub max_time: Option<i64>,
    pub rows: usize,
    /// Positions of the events too far in the future (`future_time`), in order.
    pub future: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Unit {
    RowGroup(usize),
    /// Rows `start..start + len` of row group `rg` (see [`Layout::discover_for`]).
    Rows {
        rg: usize,
        start: usize,
        len: usize,
    },
    /// Bytes `start..end` of an NDJSON or CSV file, whose first line is `first_line` (1-based).
    Bytes {
        start: u64,
        end: u64,
        first_line: u64,
    },
}

/// What decoding one record yields.
pub enum Decoded {
    /// An event and its position in the split (row in the row group, or line in the file).
    Event(Event, u64),
    /// Boxed: rejects are rare, and a small enum keeps the hot path's moves cheap.
    Bad(Box<DeadLetter>),
}

/// A source's files and splits, the same on every worker.
pub struct Layout {
    pub files: Vec<PathBuf>,
    pub splits: Vec<Split>,
}

impl Layout {
    /// Expands directories (sorted, by extension of the format) and computes the splits.
    pub fn discover(plan: &SourcePlan) -> Result<Layout, SourceError> {
        Layout::discover_for(plan, 1)
    }

    /// The layout for `peers` workers. With more than one, a Parquet row group larger than
    /// [`parquet::SPLIT_ROWS`] becomes several splits of that many rows, so that the workers,
    /// which take splits in turn, read nearby event times: whole row groups (often 64K rows or
    /// more) put a worker a row group ahead of the others, and every stage that waits for the
    /// frontier holds that row group's events meanwhile. The watermark and the future-time
    /// decisions are the same either way (both follow the log's order, not the splits).
    pub fn discover_for(plan: &SourcePlan, peers: usize) -> Result<Layout, SourceError> {
        let files = expand(plan)?;
        let splits = match plan.format {
            Format::Parquet => parquet::splits(plan, &files, (peers > 1).then_some(parquet::SPLIT_ROWS))?,
            Format::Ndjson => ndjson::splits(plan, &files)?,
            Format::Csv => csv::splits(plan, &files)?,
            // Lines arrive over TCP (`crate::serve`), not from splits.
            Format::Tcp => Vec::new(),
        };
        Ok(Layout { files, splits })
    }

    /// `prefix[i]` is the largest event time in splits before `i`.
    pub fn prefix_max(&self) -> Vec<Option<i64>> {
        let mut out = Vec::with_capacity(self.splits.len());
        let mut max: Option<i64> = None;
        for s in &self.splits {
            out.push(max);
            max = max.max(s.max_time);
        }
        out
    }

    /// Where position `pos` of `split` is, as dead letters name it.
    pub fn location(&self, split: &Split, pos: u64) -> String {
        let file = self.files[split.file].display();
        match split.unit {
            Unit::RowGroup(rg) | Unit::Rows { rg, .. } => format!("{file}#rg{rg}:row{pos}"),
            Unit::Bytes { .. } => format!("{file}:{pos}"),
        }
    }

    pub fn total_rows(&self) -> usize {
        self.splits.iter().map(|s| s.rows).sum()
    }
}

pub(crate) fn expand(plan: &SourcePlan) -> Result<Vec<PathBuf>, SourceError> {
    let exts: &[&str] = match plan.format {
        Format::Parquet => &["parquet"],
        Format::Ndjson | Format::Tcp => &["ndjson", "jsonl", "json"],
        Format::Csv => &["csv"],
    };
    let mut files = Vec::new();
    for path in &plan.paths {
        let meta = std::fs::metadata(path).map_err(|e| SourceError::open(path, e))?;
        if meta.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| SourceError::open(path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| exts.contains(&e))
                })
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(SourceError::open(
                    path,
                    format!("no .{} files in this directory", exts[0]),
                ));
            }
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// Tracks the watermark while a worker reads its splits, and sorts events from late ones.
pub struct Watermark {
    lateness: i64,
    /// The watermark plus the lateness; never decreases.
    floor: Option<i64>,
    /// The largest event time of this split (or partition) and of those before it.
    own: Option<i64>,
    /// What other partitions allow the floor to reach: `Some(i64::MAX)` for a file split (one
    /// partition), `None` while another partition has no event (the floor holds).
    cap: Option<i64>,
}

impl Watermark {
    pub fn new(lateness_ms: u64) -> Watermark {
        Watermark {
            lateness: lateness_ms as i64,
            floor: None,
            own: None,
            cap: Some(i64::MAX),
        }
    }
    /// Starts a split whose preceding splits hold at most `prefix_max`.
    pub fn start_split(&mut self, prefix_max: Option<i64>) {
        self.start_partition(prefix_max, prefix_max, Some(i64::MAX));
    }
    /// Starts a batch of one partition of a served source (see `serve::partitions`): the
    /// source's `floor` before it, the partition's largest time `own`, and the smallest
    /// largest-time of the other partitions `cap`. The floor then follows `min(own, cap)`.
    pub fn start_partition(&mut self, floor: Option<i64>, own: Option<i64>, cap: Option<i64>) {
        (self.floor, self.own, self.cap) = (floor, own, cap);
    }
    /// The current watermark (`i64::MIN` before any event).
    pub fn current(&self) -> i64 {
        self.floor.map_or(i64::MIN, |m| m.saturating_sub(self.lateness))
    }
    /// The current watermark plus the lateness.
    pub fn floor(&self) -> Option<i64> {
        self.floor
    }
    /// The largest event time seen, if any (of this split and those before it; of this
    /// partition, for a served source).
    pub fn max_seen(&self) -> Option<i64> {
        self.own
    }
    /// Observes an event time; returns `true` when it is late.
    pub fn observe(&mut self, time: i64) -> bool {
        let late = time < self.current();
        let own = self.own.map_or(time, |m| m.max(time));
        self.own = Some(own);
        if let Some(cap) = self.cap {
            self.floor = self.floor.max(Some(own.min(cap)));
        }
        late
    }
}

/// Reads splits of one source on one worker.
pub trait SplitReader {
    /// The splits this worker will read, in order, before it reads any: a reader may then read
    /// several of them in one pass (the row ranges of one Parquet row group).
    fn prepare(&mut self, _splits: &[&Split]) {}
    /// Decodes `split`, calling `out` with chunks of decoded records in log order.
    fn read(&mut self, split: &Split, out: &mut dyn FnMut(&mut Vec<Decoded>)) -> Result<(), SourceError>;
}

/// A reader for `plan`'s format.
pub fn reader(plan: &SourcePlan, layout: &Layout) -> Box<dyn SplitReader> {
    match plan.format {
        Format::Parquet => Box::new(parquet::ParquetReader::new(plan, &layout.files)),
        Format::Ndjson | Format::Tcp => Box::new(ndjson::NdjsonReader::new(plan, &layout.files)),
        Format::Csv => Box::new(csv::CsvReader::new(plan, &layout.files)),
    }
}

impl From<SourceError> for crate::error::PlanError {
    fn from(e: SourceError) -> Self {
        crate::error::PlanError::Source(Box::new(e))
    }
}

/// A source of `format` over `paths` for tests: time in `ts` (milliseconds), type in `type`,
/// every field read, closed fields, no lateness.
#[cfg(test)]
pub(crate) fn test_plan(format: Format, paths: Vec<PathBuf>) -> SourcePlan {
    SourcePlan {
        name: "s".into(),
        format,
        paths,
        time_field: "ts".into(),
        type_field: "type".into(),
        fixed_type: None,
        time_unit_ms: 1.0,
        allowed_lateness_ms: 0,
        projection: None,
        limits: Default::default(),
        fields: crate::plan::Fields::Closed,
        csv: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_follows_prefix_max() {
        let mut w = Watermark::new(10);
        assert!(!w.observe(100));
        assert!(!w.observe(91));
        assert!(w.observe(89));
        assert_eq!(w.current(), 90);
        w.start_split(Some(200));
        assert!(w.observe(150));
        assert!(!w.observe(190));
    }
}
