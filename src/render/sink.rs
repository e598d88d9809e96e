//! Output sinks: `Collection<D>` → Parquet files under `DIR/NAME/`, written by worker 0.
//!
//! Every update is routed to worker 0, buffered, and written as `part-NNNNN.parquet` whenever
//! the buffer holds [`FLUSH_ROWS`] rows and once more when the input is exhausted. Each part is
//! sorted by `(time, row)`. Changelog outputs carry `time` (the update's event-time tick) and
//! `diff` columns; insert-only outputs (final windows, dead letters) do not. Later parts keep the
//! first part's schema, so DuckDB's `read_parquet('DIR/NAME/*.parquet')` reads them as one table.
//! Given live views (`sluice serve --http`), the sink also hands each batch of updates, with its
//! frontier, to its output's [`crate::serve::live::View`].

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use arrow::datatypes::SchemaRef;
use differential_dataflow::VecCollection;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

use crate::format::arrow_write::{rows_to_batch, rows_to_batch_with_schema, ParquetSink};
use crate::value::Value;

pub const FLUSH_ROWS: usize = 1 << 20;

/// What a sink writes.
#[derive(Clone, Debug)]
pub struct OutputSpec {
    pub name: String,
    pub columns: Vec<String>,
    /// Add `time` and `diff` columns.
    pub changelog: bool,
    /// Count rows by the value of this column (dead letters by reason).
    pub tally: Option<usize>,
    /// Rows arrive with this many leading values that are a sort key, not columns: parts are
    /// sorted by `(key, time, row)` and hold only times the input frontier has passed, so the
    /// output is in time order per key across parts (ordered delivery).
    pub sort_prefix: usize,
    /// The last value of each row is an object whose fields become the trailing columns (the
    /// union over the part, each part with its own schema).
    pub flatten: bool,
    /// Write the collection once, when the input is exhausted: each distinct row with a `value`
    /// column holding its net count (counters).
    pub snapshot: bool,
}

impl OutputSpec {
    pub fn new(name: &str, columns: &[&str]) -> OutputSpec {
        OutputSpec {
            name: name.to_string(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            changelog: false,
            tally: None,
            sort_prefix: 0,
            flatten: false,
            snapshot: false,
        }
    }
}

/// What a sink has seen, shared with the driver.
#[derive(Default, Debug)]
pub struct SinkResult {
    /// Updates received (rows written).
    pub rows: u64,
    /// Sum of diffs: the number of rows in the collection at the end.
    pub net: i64,
    /// Every update, when the run collects results (tests).
    pub collected: Vec<(Vec<Value>, u64, isize)>,
    pub parts: usize,
    pub error: Option<String>,
    /// Net count of rows per value of the [`OutputSpec::tally`] column.
    pub tally: std::collections::BTreeMap<String, i64>,
    /// Net count per distinct row, for [`OutputSpec::snapshot`] outputs.
    pub snapshot: std::collections::BTreeMap<Vec<Value>, i64>,
}

/// Attaches a sink to `collection`; `to_row` turns a record into the output's columns.
pub fn sink<'s, D>(
    collection: VecCollection<'s, u64, D, isize>,
    spec: OutputSpec,
    out_dir: Option<PathBuf>,
    collect: bool,
    live: Option<&crate::serve::live::LiveViews>,
    to_row: impl Fn(&D) -> Vec<Value> + 'static,
) -> Rc<RefCell<SinkResult>>
where
    D: timely::ExchangeData + Clone,
{
    let result = Rc::new(RefCell::new(SinkResult::default()));
    let shared = Rc::clone(&result);
    let name = format!("Sink({})", spec.name);
    // Only worker 0 receives updates, so only it writes files.
    let dir = if collection.inner.scope().index() == 0 {
        out_dir
    } else {
        None
    };
    let (tally, snapshot, ordered) = (spec.tally, spec.snapshot, spec.sort_prefix > 0);
    // Worker 0 also keeps the output's live view (`sluice serve --http`), updated per batch.
    let view = live.filter(|_| collection.inner.scope().index() == 0).map(|l| {
        l.register(crate::serve::live::ViewSpec {
            name: spec.name.clone(),
            columns: spec.columns.clone(),
            changelog: spec.changelog,
            snapshot,
            flatten: spec.flatten,
            tally,
        })
    });
    let (mut live_batch, mut live_frontier) = (Vec::new(), Some(0));
    let mut written = false;
    let mut writer = PartWriter {
        spec,
        dir,
        schema: None,
        buffer: Vec::new(),
    };
    collection.inner.sink(
        Exchange::new(|_: &(D, u64, isize)| 0),
        &name,
        move |(input, frontier)| {
            let mut res = shared.borrow_mut();
            input.for_each_stamp(|_, data| {
                for batch in data {
                    for (d, t, r) in batch.drain(..) {
                        let row = to_row(&d);
                        if view.is_some() {
                            live_batch.push((row[writer.spec.sort_prefix..].to_vec(), t, r));
                        }
                        res.rows += 1;
                        res.net += r as i64;
                        if let Some(c) = tally {
                            *res.tally.entry(row[c].to_string()).or_default() += r as i64;
                        }
                        if snapshot {
                            *res.snapshot.entry(row).or_default() += r as i64;
                            continue;
                        }
                        if collect {
                            let columns = row[writer.spec.sort_prefix..].to_vec();
                            res.collected.push((columns, t, r));
                        }
                        if writer.dir.is_some() {
                            writer.buffer.push((row, t, r));
                        }
                    }
                }
            });
            if let Some(view) = &view {
                let f = frontier.frontier().iter().min().copied();
                if !live_batch.is_empty() || f != live_frontier {
                    live_frontier = f;
                    view.apply(std::mem::take(&mut live_batch), f);
                }
            }
            let done = frontier.is_empty();
            if snapshot {
                if done && !written {
                    written = true;
                    let mut rows: Vec<(Vec<Value>, u64, isize)> = Vec::new();
                    for (row, n) in res.snapshot.iter().filter(|(_, n)| **n != 0) {
                        let mut row = row.clone();
                        row.push(Value::Int(*n));
                        rows.push((row, 0, 1));
                    }
                    if collect {
                        res.collected = rows.clone();
                    }
                    // A snapshot's totals are its distinct rows, not the records counted into them.
                    res.rows = rows.len() as u64;
                    res.net = rows.len() as i64;
                    writer.buffer = rows;
                    if let Err(e) = writer.flush(0) {
                        res.error = Some(e);
                    } else if writer.dir.is_some() {
                        res.parts = 1;
                    }
                }
                return;
            }
            if (writer.buffer.len() >= FLUSH_ROWS || (done && (!writer.buffer.is_empty() || res.parts == 0)))
                && res.error.is_none()
            {
                // Ordered outputs write only the times the frontier has passed, keeping the rest.
                let limit = frontier.frontier().iter().min().copied();
                let kept: Vec<(Vec<Value>, u64, isize)> = match (ordered, limit) {
                    (true, Some(limit)) => {
                        let (ready, kept) = std::mem::take(&mut writer.buffer)
                            .into_iter()
                            .partition(|u| u.1 < limit);
                        writer.buffer = ready;
                        kept
                    }
                    _ => Vec::new(),
                };
                let result = if writer.buffer.is_empty() && !done {
                    Ok(false)
                } else {
                    writer.flush(res.parts)
                };
                writer.buffer.extend(kept);
                match result {
                    Ok(true) => res.parts += 1,
                    Ok(false) => {}
                    Err(e) => res.error = Some(e),
                }
            }
        },
    );
    result
}

struct PartWriter {
    spec: OutputSpec,
    dir: Option<PathBuf>,
    schema: Option<SchemaRef>,
    buffer: Vec<(Vec<Value>, u64, isize)>,
}

impl PartWriter {
    /// Writes the buffer as part `index`; `Ok(false)` when there is no output folder.
    fn flush(&mut self, index: usize) -> Result<bool, String> {
        let Some(dir) = &self.dir else {
            self.buffer.clear();
            return Ok(false);
        };
        let mut updates = std::mem::take(&mut self.buffer);
        let k = self.spec.sort_prefix;
        updates.sort_by(|a, b| (&a.0[..k], a.1, &a.0[k..], a.2).cmp(&(&b.0[..k], b.1, &b.0[k..], b.2)));
        let mut columns = self.spec.columns.clone();
        if self.spec.snapshot {
            columns.push("value".into());
        }
        let mut extra: Vec<crate::value::Sym> = Vec::new();
        if self.spec.flatten {
            columns.pop();
            let mut names = std::collections::BTreeSet::new();
            for (row, _, _) in &updates {
                if let Some(Value::Object(fields)) = row.last() {
                    names.extend(fields.iter().map(|(k, _)| *k));
                }
            }
            extra = names
                .into_iter()
                .filter(|n| !columns.iter().any(|c| c == n.as_str()))
                .collect();
            columns.extend(extra.iter().map(|n| n.as_str().to_string()));
        }
        if self.spec.changelog {
            columns.push("time".into());
            columns.push("diff".into());
        }
        let rows: Vec<Vec<Value>> = updates
            .into_iter()
            .map(|(mut row, t, r)| {
                row.drain(..k);
                if self.spec.flatten {
                    let object = row.pop();
                    let fields = match &object {
                        Some(Value::Object(fields)) => &fields[..],
                        _ => &[],
                    };
                    row.extend(
                        extra
                            .iter()
                            .map(|n| crate::value::lookup(fields, *n).cloned().unwrap_or(Value::Null)),
                    );
                }
                if self.spec.changelog {
                    row.push(Value::Time(t as i64));
                    row.push(Value::Int(r as i64));
                }
                row
            })
            .collect();
        let batch = match &self.schema {
            Some(schema) if !self.spec.flatten => rows_to_batch_with_schema(schema, &rows),
            _ => rows_to_batch(&columns, &rows),
        }
        .map_err(|e| e.to_string())?;
        let folder = dir.join(&self.spec.name);
        std::fs::create_dir_all(&folder).map_err(|e| format!("{}: {e}", folder.display()))?;
        let path = folder.join(format!("part-{index:05}.parquet"));
        let mut sink = ParquetSink::open(&path, batch.schema()).map_err(|e| e.to_string())?;
        sink.write(&batch).map_err(|e| e.to_string())?;
        sink.close().map_err(|e| e.to_string())?;
        self.schema = Some(batch.schema());
        Ok(true)
    }
}
