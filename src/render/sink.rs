//! Output sinks: `Collection<D>` → Parquet files under `DIR/NAME/`, written by worker 0.
//!
//! Every update is routed to worker 0, buffered, and written as `part-NNNNN.parquet` whenever
//! the buffer holds [`FLUSH_ROWS`] rows and once more when the input is exhausted. Each part is
//! sorted by `(time, row)`. Changelog outputs carry `time` (the update's event-time tick) and
//! `diff` columns; insert-only outputs (final windows, dead letters) do not. Later parts keep the
//! first part's schema, so DuckDB's `read_parquet('DIR/NAME/*.parquet')` reads them as one table.

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
}

/// Attaches a sink to `collection`; `to_row` turns a record into the output's columns.
pub fn sink<'s, D>(
    collection: VecCollection<'s, u64, D, isize>,
    spec: OutputSpec,
    out_dir: Option<PathBuf>,
    collect: bool,
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
    let tally = spec.tally;
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
                        res.rows += 1;
                        res.net += r as i64;
                        if let Some(c) = tally {
                            *res.tally.entry(row[c].to_string()).or_default() += r as i64;
                        }
                        if collect {
                            res.collected.push((row.clone(), t, r));
                        }
                        if writer.dir.is_some() {
                            writer.buffer.push((row, t, r));
                        }
                    }
                }
            });
            let done = frontier.is_empty();
            if (writer.buffer.len() >= FLUSH_ROWS || (done && (!writer.buffer.is_empty() || res.parts == 0)))
                && res.error.is_none()
            {
                match writer.flush(res.parts) {
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
        updates.sort_by(|a, b| (a.1, &a.0, a.2).cmp(&(b.1, &b.0, b.2)));
        let mut columns = self.spec.columns.clone();
        if self.spec.changelog {
            columns.push("time".into());
            columns.push("diff".into());
        }
        let rows: Vec<Vec<Value>> = updates
            .into_iter()
            .map(|(mut row, t, r)| {
                if self.spec.changelog {
                    row.push(Value::Time(t as i64));
                    row.push(Value::Int(r as i64));
                }
                row
            })
            .collect();
        let batch = match &self.schema {
            None => rows_to_batch(&columns, &rows),
            Some(schema) => rows_to_batch_with_schema(schema, &rows),
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
