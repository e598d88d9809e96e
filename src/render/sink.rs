//! Output sinks: `Collection<D>` → Parquet files under `DIR/NAME/`, written by every worker
//! ([`Spread`], `sluice run` in one process) or by worker 0 (`serve`, several processes).
//!
//! Each worker turns its updates into rows (`SinkRows(NAME)`). With [`Spread`] a worker keeps
//! its rows (an ordered output's go to the worker of their sort key) and writes them as
//! `part-WW-NNNNN.parquet`; otherwise every row is routed to worker 0. A sink's rows are
//! buffered, and written as `part-NNNNN.parquet` whenever the buffer holds [`FLUSH_ROWS`] rows
//! or about [`FLUSH_BYTES`] bytes, and once more when the input is exhausted. A worker's sinks
//! hand their parts to its [`PartThreads`], which encode and write them beside the worker. The
//! sinks of a run also share a budget: while their buffers and the parts
//! still being written hold more than [`SINKS_BUDGET_BYTES`], a sink with at least
//! [`MIN_PART_BYTES`] buffered writes a part, so a spec with many outputs holds about the budget,
//! not a full buffer per output, and parts stay large when memory allows. Each part is
//! sorted by `(time, row)`. Changelog outputs carry `time` (the update's event-time tick) and
//! `diff` columns; insert-only outputs (final windows, dead letters) do not. An output keeps one
//! schema across its parts, widened when a part's values need it (ints becoming floats, new
//! struct fields, a column of nulls its first type; [`Shapes`]), never coercing a value to null.
//! Given live views (`sluice serve --http`), the sink also hands each batch of updates, with its
//! frontier, to its output's [`crate::serve::live::View`].

use crate::plan::OutputPlan;
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use arrow::datatypes::SchemaRef;
use differential_dataflow::VecCollection;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::Operator;

use crate::serve::checkpoint::{Ack, Checkpoints, OutputMark};

use crate::format::arrow_write::{ParquetSink, Shapes};
use crate::value::{Sym, Value};

pub const FLUSH_ROWS: usize = 1 << 18;
/// Buffered bytes (as [`row_bytes`] estimates them) that also make a part: outputs of large
/// rows (dead letters of long lines, wide enriched events) stream to disk instead of piling up.
pub const FLUSH_BYTES: usize = 16 << 20;
/// Bytes (as [`row_bytes`] estimates them) that the sinks of a run may hold together, in their
/// buffers and in parts handed to their writer threads, before they write smaller parts.
pub const SINKS_BUDGET_BYTES: usize = 32 << 20;
/// The smallest part a sink writes because of the shared budget.
pub const MIN_PART_BYTES: usize = 4 << 20;

/// An estimate of the memory a row holds: a fixed size per value plus string contents,
/// counted through lists and objects.
pub fn row_bytes(row: &[Value]) -> usize {
    fn value_bytes(v: &Value) -> usize {
        24 + match v {
            Value::Str(s) => s.len(),
            Value::List(items) => items.iter().map(value_bytes).sum(),
            Value::Object(fields) => fields.iter().map(|(_, v)| 8 + value_bytes(v)).sum(),
            _ => 0,
        }
    }
    row.iter().map(value_bytes).sum()
}

/// Rows measured by [`row_bytes`]: the first [`RowSize::EXACT`] of an output, then one in
/// [`RowSize::EVERY`]; the others count as the mean of those measured. Walking every value of
/// every row (an enriched event's whole payload) cost 4% of a worker's time, and the budget
/// needs only the order of magnitude.
#[derive(Default)]
struct RowSize {
    pushed: u64,
    measured: u64,
    bytes: u64,
}

impl RowSize {
    const EXACT: u64 = 64;
    const EVERY: u64 = 16;

    fn estimate(&mut self, row: &[Value]) -> usize {
        self.pushed += 1;
        if self.pushed <= Self::EXACT || self.pushed.is_multiple_of(Self::EVERY) {
            let bytes = row_bytes(row);
            self.measured += 1;
            self.bytes += bytes as u64;
            return bytes;
        }
        (self.bytes / self.measured) as usize
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
    /// Net count of rows per value of the [`OutputPlan::tally`] column.
    pub tally: std::collections::BTreeMap<String, i64>,
    /// Net count per distinct row, for [`OutputPlan::snapshot`] outputs.
    pub snapshot: std::collections::BTreeMap<Vec<Value>, i64>,
    collecting: bool,
}

/// Where sinks write and who else watches them: one per worker's dataflow.
#[derive(Clone, Default)]
pub struct SinkEnv {
    pub out_dir: Option<PathBuf>,
    /// Keep every update in [`SinkResult::collected`] (tests).
    pub collect: bool,
    /// With `collect`, only the outputs named here.
    pub collect_only: Option<Vec<String>>,
    /// Live views of the outputs (`sluice serve --http`), kept by worker 0's sinks.
    pub live: Option<Arc<crate::serve::live::LiveViews>>,
    /// Checkpoints (`sluice serve --wal --out`): outputs are written up to their frontier when
    /// asked, and resume from the last checkpoint after a restart.
    pub checkpoints: Option<Arc<Checkpoints>>,
    /// Where stateful operators save their state for checkpoints, and find it after a restart
    /// (the same checkpoints, through [`crate::render::snapshot::StateStore`]).
    pub state: Option<Arc<dyn crate::render::snapshot::StateStore>>,
    /// The bytes the sinks hold together (see [`SINKS_BUDGET_BYTES`]).
    pub buffered: Arc<AtomicUsize>,
    /// Every worker writes its own parts (see [`Spread`]); `None`: worker 0 writes them all.
    pub spread: Option<Arc<Spread>>,
}

/// Outputs written by every worker of a run, not by worker 0 alone: worker `w` writes its
/// updates as `part-WW-NNNNN.parquet` (`part-NNNNN.parquet` with one worker), so no worker
/// formats, counts and sends on every other worker's rows. For one process without live views
/// or checkpoints (`sluice run`): those need one writer per output. Updates stay on the worker
/// that made them, except for ordered outputs, which go to the worker of their sort key, so
/// that a key's rows are in one worker's parts, in order; and snapshot outputs, which worker 0
/// totals. The workers of an output share its column shapes, so its parts have one schema,
/// widened as any worker's parts need, and the last of them to finish writes its empty part
/// when none wrote a row.
#[derive(Debug)]
pub struct Spread {
    peers: usize,
    outputs: std::sync::Mutex<std::collections::HashMap<String, SpreadOutput>>,
}

#[derive(Debug, Default)]
struct SpreadOutput {
    shapes: Shapes,
    finished: usize,
    parts: usize,
}

impl Spread {
    pub fn new(peers: usize) -> Spread {
        Spread {
            peers,
            outputs: Default::default(),
        }
    }

    fn with<R>(&self, name: &str, f: impl FnOnce(&mut SpreadOutput) -> R) -> R {
        let mut outputs = self.outputs.lock().unwrap_or_else(|e| e.into_inner());
        f(outputs.entry(name.to_string()).or_default())
    }

    /// Output `name`'s next part, whose columns are `names` holding `columns`: in the shapes
    /// the workers' parts have had so far, widened where these values do not fit them (the
    /// shapes they infer for the first part). The build is outside the lock: the shapes are
    /// copied out and the widened ones joined back.
    fn build(
        &self,
        name: &str,
        names: &[String],
        columns: &[Vec<&Value>],
    ) -> Result<arrow::array::RecordBatch, crate::format::WriteError> {
        let mut shapes = self.with(name, |o| o.shapes.clone());
        let batch = shapes.build(names, columns)?;
        self.with(name, |o| o.shapes.join(&shapes));
        Ok(batch)
    }

    /// A worker has written all its `parts` of output `name`: whether it is the last worker
    /// to finish and no worker wrote a part.
    fn finish(&self, name: &str, parts: usize) -> bool {
        self.with(name, |o| {
            o.finished += 1;
            o.parts += parts;
            o.finished == self.peers && o.parts == 0
        })
    }
}

/// Attaches a sink to `collection`; `to_row` turns a record into the output's columns (taking
/// it, so that a record that already is a row is not copied). Every worker turns its own
/// records into rows (`SinkRows(NAME)`), so worker 0 receives rows ready to count and write
/// rather than formatting every worker's output itself.
pub fn sink<'s, D>(
    collection: VecCollection<'s, u64, D, isize>,
    spec: OutputPlan,
    env: &SinkEnv,
    to_row: impl Fn(D) -> Vec<Value> + 'static,
) -> Rc<RefCell<SinkResult>>
where
    D: Clone + 'static,
{
    let rows = collection
        .inner
        .unary::<CapacityContainerBuilder<Vec<(Vec<Value>, u64, isize)>>, _, _, _>(
            Pipeline,
            &format!("SinkRows({})", spec.name),
            move |_, _| {
                move |input, output| {
                    input.for_each_stamp(|cap, data| {
                        let rows = data
                            .flat_map(|batch| batch.drain(..))
                            .map(|(d, t, r)| (to_row(d), t, r));
                        output.session(&cap).give_iterator(rows);
                    });
                }
            },
        );
    sink_rows(rows, spec, env)
}

/// The sink itself: rows to worker 0, counted, viewed, and written.
pub fn sink_rows<'s>(
    rows: timely::dataflow::StreamVec<'s, u64, (Vec<Value>, u64, isize)>,
    spec: OutputPlan,
    env: &SinkEnv,
) -> Rc<RefCell<SinkResult>> {
    let result = Rc::new(RefCell::new(SinkResult {
        collecting: env.collect && env.collect_only.as_ref().is_none_or(|o| o.contains(&spec.name)),
        ..SinkResult::default()
    }));
    let shared = Rc::clone(&result);
    let scope = rows.scope();
    let mut builder = OperatorBuilder::new(format!("Sink({})", spec.name), scope);
    // Without `Spread`, only worker 0 receives updates, so only it writes files and takes part
    // in checkpoints. With it, every worker writes, except for snapshot outputs.
    let index = scope.index();
    let first = index == 0;
    let spread = env.spread.clone().filter(|_| !spec.snapshot);
    let route = match (&spread, spec.sort_prefix) {
        (None, _) => Route::To(0),
        (Some(_), 0) => Route::To(index as u64),
        (Some(_), k) => Route::Key(k),
    };
    let mut input = builder.new_input(
        rows,
        Exchange::new(move |(row, _, _): &(Vec<Value>, u64, isize)| match route {
            Route::To(w) => w,
            // The prefix's last value is a marker; the values before it are the `order_by` key,
            // hashed as key joins hash theirs, so rows ordered by a join's key stay put.
            Route::Key(k) => crate::value::key_hash(&row[..k - 1]),
        }),
    );
    let writes = first || spread.is_some();
    let dir = env.out_dir.clone().filter(|_| writes);
    let (tally, snapshot, ordered) = (spec.tally, spec.snapshot, spec.sort_prefix > 0);
    // Worker 0 also keeps the output's live view (`sluice serve --http`), updated per batch.
    let view = env.live.as_ref().filter(|_| first).map(|l| {
        l.register(crate::serve::live::ViewSpec {
            name: spec.name.clone(),
            columns: spec.columns.clone(),
            changelog: spec.changelog,
            snapshot,
            flatten: spec.flatten,
            tally,
        })
    });
    let checkpoint = env.checkpoints.clone().filter(|_| first).map(|c| {
        let activator = scope
            .worker()
            .sync_activator_for(builder.operator_info().address.to_vec());
        let slot = c.register(&spec.name, activator);
        (c, slot)
    });
    // After a restart: the parts already written, the rows they hold (dropped when recomputed)
    // and a snapshot output's totals.
    let resume = checkpoint.as_ref().and_then(|(c, _)| c.resume(&spec.name).cloned());
    let skip_before = resume.as_ref().map_or(0, |r| r.cut);
    // With checkpoints every output is frontier-gated: a part holds only times before the
    // frontier, so "every row before the cut" is a whole number of parts.
    let gated = ordered || checkpoint.is_some();
    let mut saved: std::collections::BTreeMap<Vec<Value>, i64> = std::collections::BTreeMap::new();
    let mut unsaved: Vec<(Vec<Value>, u64, isize)> = Vec::new();
    if let Some(rows) = resume.as_ref().and_then(|r| r.snapshot.clone()) {
        saved.extend(rows);
        result.borrow_mut().snapshot = saved.clone();
    }
    let (mut live_batch, mut live_frontier) = (Vec::new(), Some(0));
    let mut written = false;
    let mut answered = 0;
    let next = resume
        .as_ref()
        .map_or(0, |r| if r.snapshot.is_some() { 0 } else { r.parts });
    let (changelog, out_name) = (spec.changelog, spec.name.clone());
    let mut files = PartFiles {
        next,
        spec,
        dir,
        shapes: Shapes::default(),
        buffer: Vec::new(),
        durable: checkpoint.is_some(),
        spread: spread.clone().map(|s| (s, index)),
    };
    if next > 0 && !files.spec.flatten {
        match files.existing_schema() {
            Ok(schema) => files.shapes = schema.map_or_else(Shapes::default, |s| Shapes::of_schema(&s)),
            Err(e) => result.borrow_mut().error = Some(e),
        }
    }
    // After a restart, a live view starts from what the checkpointed parts hold.
    if let (Some(view), Some(mark)) = (&view, &resume) {
        let rows = match &mark.snapshot {
            Some(totals) => Ok(totals.iter().map(|(row, n)| (row.clone(), 0, *n as isize)).collect()),
            None => files.read_parts(mark.parts),
        };
        match rows {
            Ok(rows) => view.apply(rows, Some(mark.cut)),
            Err(e) => result.borrow_mut().error = Some(e),
        }
    }
    // Worker 0 writing every worker's updates encodes as much as they all make, with as many
    // threads as they, up to this machine's cores.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if env.spread.is_some() {
        1
    } else {
        scope.peers().min(cores)
    };
    let mut writer = PartWriter::new(files, next, Arc::clone(&env.buffered), threads);
    let mut finished = false;
    builder.build(move |_capabilities| {
        move |frontiers| {
            let frontier = &frontiers[0];
            let mut res = shared.borrow_mut();
            input.for_each_stamp(|_, data| {
                for batch in data {
                    for (row, t, r) in batch.drain(..) {
                        if t < skip_before {
                            continue;
                        }
                        if view.is_some() {
                            live_batch.push((row[writer.sort_prefix..].to_vec(), t, r));
                        }
                        res.rows += 1;
                        res.net += r as i64;
                        if let Some(c) = tally {
                            *res.tally.entry(row[c].to_string()).or_default() += r as i64;
                        }
                        if snapshot {
                            *res.snapshot.entry(row.clone()).or_default() += r as i64;
                            if checkpoint.is_some() {
                                unsaved.push((row, t, r));
                            }
                            continue;
                        }
                        if r < 0 && !changelog && res.error.is_none() {
                            // Written as a plain row, a retraction would read as an insertion.
                            res.error = Some(format!(
                                "output `{out_name}` received a retraction but is not a changelog"
                            ));
                        }
                        if collect_rows(&writer, &mut res, &row, t, r) {
                            writer.push((row, t, r));
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
            let limit = frontier.frontier().iter().min().copied();
            if res.error.is_none() {
                res.error = writer.error();
            }
            // A checkpoint asked for and not answered yet: write up to the frontier, then ack.
            let asked = checkpoint
                .as_ref()
                .map(|(c, _)| c.requested())
                .filter(|&id| id > answered && !done && res.error.is_none());
            if snapshot {
                if done && !written {
                    written = true;
                    let rows = snapshot_rows(&res.snapshot);
                    finish_snapshot(&mut writer, &mut res, rows);
                    if let Some(e) = writer.finish() {
                        res.error.get_or_insert(e);
                    }
                } else if let (Some(id), Some(limit)) = (asked, limit) {
                    // The totals of every update before the frontier, rewritten in place.
                    let (before, after): (Vec<_>, Vec<_>) = unsaved.drain(..).partition(|u| u.1 < limit);
                    unsaved = after;
                    for (row, _, r) in before {
                        *saved.entry(row).or_default() += r as i64;
                    }
                    saved.retain(|_, n| *n != 0);
                    writer.next = 0;
                    writer.buffer = snapshot_rows(&saved);
                    // After a restart, the parts and totals hold every row before the resumed cut
                    // even while the frontier is still below it: a cut never goes back, or the
                    // next restart would count those rows again.
                    let cut = limit.max(skip_before);
                    answer(&mut writer, &mut res, &checkpoint, id, cut, Some(&saved));
                    answered = id;
                }
                return;
            }
            let full = writer.full();
            if let (Some(id), Some(limit)) = (asked, limit) {
                split_flush(&mut writer, &mut res, limit);
                answer(&mut writer, &mut res, &checkpoint, id, limit.max(skip_before), None);
                answered = id;
            } else if (full || (done && !writer.buffer.is_empty())) && res.error.is_none() {
                match (gated, limit) {
                    // Gated outputs write only the times the frontier has passed, keeping the rest;
                    // once written up to a frontier, nothing more is ready until it moves.
                    (true, Some(limit)) if writer.split_at != Some(limit) => split_flush(&mut writer, &mut res, limit),
                    (true, Some(_)) => {}
                    _ => match writer.flush() {
                        Ok(true) => res.parts += 1,
                        Ok(false) => {}
                        Err(e) => res.error = Some(e),
                    },
                }
            }
            if done && !finished {
                finished = true;
                // An output with no rows still gets a part, so that its folder and columns exist:
                // with `Spread`, from the last worker to finish, when no worker wrote one.
                let empty = match &spread {
                    Some(s) => s.finish(&out_name, res.parts),
                    None => res.parts == 0,
                };
                if empty && res.error.is_none() {
                    match writer.flush() {
                        Ok(true) => res.parts += 1,
                        Ok(false) => {}
                        Err(e) => res.error = Some(e),
                    }
                }
                // The run's outputs are complete only once every part is on disk.
                if let Some(e) = writer.finish() {
                    res.error.get_or_insert(e);
                }
            }
        }
    });
    result
}

/// Which worker's sink an update goes to.
#[derive(Clone, Copy)]
enum Route {
    To(u64),
    /// The worker of the hash of the row's first `k - 1` values (its sort key before the
    /// marker that ends it).
    Key(usize),
}

/// Whether a sink keeps the update for its files (and collects it, in tests).
fn collect_rows(writer: &PartWriter, res: &mut SinkResult, row: &[Value], t: u64, r: isize) -> bool {
    if res.collecting {
        res.collected.push((row[writer.sort_prefix..].to_vec(), t, r));
    }
    writer.files.is_some()
}

/// Writes the buffered updates before `limit` as a part, keeping the rest buffered.
fn split_flush(writer: &mut PartWriter, res: &mut SinkResult, limit: u64) {
    let (ready, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut writer.buffer)
        .into_iter()
        .partition(|u| u.1 < limit);
    writer.split_at = Some(limit);
    let kept_bytes: usize = kept.iter().map(|(row, _, _)| row_bytes(row)).sum();
    // The ready rows' bytes go with them; the kept rows' stay counted.
    writer.bytes -= kept_bytes.min(writer.bytes);
    writer.buffer = ready;
    if !writer.buffer.is_empty() {
        match writer.flush() {
            Ok(true) => res.parts += 1,
            Ok(false) => {}
            Err(e) => res.error = Some(e),
        }
    }
    // `flush` handed the ready rows' bytes to the writer thread (or released them).
    writer.bytes = kept_bytes;
    writer.buffer = kept;
}

/// A snapshot output's rows: each distinct row with its net count as a trailing `value`.
fn snapshot_rows(totals: &std::collections::BTreeMap<Vec<Value>, i64>) -> Vec<(Vec<Value>, u64, isize)> {
    totals
        .iter()
        .filter(|(_, n)| **n != 0)
        .map(|(row, n)| {
            let mut row = row.clone();
            row.push(Value::Int(*n));
            (row, 0, 1)
        })
        .collect()
}

/// Writes a snapshot output's one part when its input is exhausted.
fn finish_snapshot(writer: &mut PartWriter, res: &mut SinkResult, rows: Vec<(Vec<Value>, u64, isize)>) {
    if res.collecting {
        res.collected = rows.clone();
    }
    // A snapshot's totals are its distinct rows, not the records counted into them.
    res.rows = rows.len() as u64;
    res.net = rows.len() as i64;
    writer.next = 0;
    writer.buffer = rows;
    match writer.flush() {
        Err(e) => res.error = Some(e),
        Ok(true) => res.parts = 1,
        Ok(false) => {}
    }
}

/// Writes a snapshot output's totals (when given) and acknowledges checkpoint `id` with the
/// parts that hold every row before `limit`.
fn answer(
    writer: &mut PartWriter,
    res: &mut SinkResult,
    checkpoint: &Option<(Arc<Checkpoints>, usize)>,
    id: u64,
    limit: u64,
    totals: Option<&std::collections::BTreeMap<Vec<Value>, i64>>,
) {
    let Some((checkpoints, slot)) = checkpoint else {
        return;
    };
    if totals.is_some() {
        if let Err(e) = writer.flush() {
            res.error = Some(e);
        }
    }
    if res.error.is_some() {
        return;
    }
    let ack = Ack {
        request: id,
        mark: OutputMark {
            parts: if totals.is_some() { 1 } else { writer.next },
            cut: limit,
            snapshot: totals.map(|t| t.iter().map(|(row, n)| (row.clone(), *n)).collect()),
        },
    };
    writer.ack(checkpoints, *slot, ack);
}

type Update = (Vec<Value>, u64, isize);

/// The sink's side of an output's files: it buffers updates and hands whole parts (and
/// checkpoint answers, in order after them) to its worker's [`PartThreads`], so encoding
/// Parquet and fsync never stall the worker.
struct PartWriter {
    sort_prefix: usize,
    /// Estimates the bytes of the rows pushed.
    size: RowSize,
    buffer: Vec<Update>,
    /// [`row_bytes`] of `buffer`, also counted in `buffered`.
    bytes: usize,
    /// The bytes every sink of the run holds (see [`SINKS_BUDGET_BYTES`]).
    buffered: Arc<AtomicUsize>,
    /// The frontier of the last split flush: every update before it is written.
    split_at: Option<u64>,
    /// The next part's number.
    next: usize,
    files: Option<Background>,
}

/// The first error met writing an output, shared by its sink and its part thread.
type WriteError = Arc<std::sync::Mutex<Option<String>>>;

/// An output's files, kept by one of its worker's [`PartThreads`].
struct Background {
    /// The output's number on the thread.
    id: usize,
    /// `None` once finished.
    thread: Option<Rc<PartThreads>>,
    /// The first error the thread met writing this output; its later jobs are skipped.
    error: WriteError,
}

/// What a [`PartThread`] is asked to do for output `id`.
enum Job {
    /// Keep the output's files, and report its errors to `error`.
    Open { files: Box<PartFiles>, error: WriteError },
    Write {
        index: usize,
        rows: Vec<Update>,
        /// Their [`row_bytes`], counted in the shared budget until the part is written.
        bytes: usize,
    },
    /// Once the parts before are on disk: fsync the folder, then answer the checkpoint.
    Ack(Arc<Checkpoints>, usize, Ack),
    /// Every part is written: drop the files and say so.
    Close(std::sync::mpsc::SyncSender<()>),
}

/// Parts handed over to a part thread and not yet taken: a slow disk slows the sinks, not
/// memory.
const PARTS_IN_FLIGHT: usize = 4;

/// The threads that encode and write the parts of every output of one worker, each output's in
/// the order they are handed over. A few per worker, not one per output: a thread's allocator
/// keeps the memory it freed for its own reuse, so a dozen outputs' threads, each holding the
/// buffers of its largest part, held several hundred MiB more than one thread does. A worker
/// that writes only its own updates has one; worker 0 writing every worker's (`serve`, several
/// processes) has one per worker of the run, up to the machine's cores, as it encodes as much as
/// they all make.
struct PartThreads {
    threads: Vec<PartThread>,
    /// The next output's number; output `id` is written by thread `id % threads.len()`.
    next_id: std::cell::Cell<usize>,
}

struct PartThread {
    tx: Option<std::sync::mpsc::SyncSender<(usize, Job)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

thread_local! {
    /// This worker's part threads, while one of its sinks holds them.
    static PART_THREADS: RefCell<std::rc::Weak<PartThreads>> = const { RefCell::new(std::rc::Weak::new()) };
}

impl PartThreads {
    /// The calling worker's part threads, `count` of them started if none of its sinks holds
    /// them.
    fn of_this_worker(count: usize, buffered: &Arc<AtomicUsize>) -> Rc<PartThreads> {
        PART_THREADS.with(|slot| {
            if let Some(threads) = slot.borrow().upgrade() {
                return threads;
            }
            let name = std::thread::current().name().unwrap_or("worker").to_string();
            let threads = (0..count.max(1))
                .map(|k| {
                    let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Job)>(PARTS_IN_FLIGHT);
                    let written = Arc::clone(buffered);
                    let thread = std::thread::Builder::new()
                        .name(format!("sluice-parts-{name}-{k}"))
                        .spawn(move || write_parts(rx, &written))
                        .expect("a sink thread starts");
                    PartThread {
                        tx: Some(tx),
                        thread: Some(thread),
                    }
                })
                .collect();
            let threads = Rc::new(PartThreads {
                threads,
                next_id: std::cell::Cell::new(0),
            });
            *slot.borrow_mut() = Rc::downgrade(&threads);
            threads
        })
    }

    /// A number for a new output.
    fn next_id(&self) -> usize {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        id
    }

    /// Hands `job` for output `id` over; `false` when its thread has stopped.
    fn send(&self, id: usize, job: Job) -> bool {
        let thread = &self.threads[id % self.threads.len()];
        thread.tx.as_ref().is_some_and(|tx| tx.send((id, job)).is_ok())
    }
}

impl Drop for PartThread {
    /// The last sink is gone: the thread writes what it was handed, and ends.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for PartWriter {
    /// A buffer never written leaves the shared budget with the writer.
    fn drop(&mut self) {
        self.release(self.bytes);
    }
}

impl PartWriter {
    /// Writes through `files` on its worker's part threads (`threads` of them, when the
    /// worker's sinks start them) when there is an output folder.
    fn new(files: PartFiles, next: usize, buffered: Arc<AtomicUsize>, threads: usize) -> PartWriter {
        let sort_prefix = files.spec.sort_prefix;
        let files = files.dir.is_some().then(|| {
            let thread = PartThreads::of_this_worker(threads, &buffered);
            let id = thread.next_id();
            let error = Arc::new(std::sync::Mutex::new(None));
            let open = Job::Open {
                files: Box::new(files),
                error: Arc::clone(&error),
            };
            if !thread.send(id, open) {
                *error.lock().unwrap_or_else(|e| e.into_inner()) = Some("the output's writer stopped".into());
            }
            Background {
                id,
                thread: Some(thread),
                error,
            }
        });
        PartWriter {
            sort_prefix,
            size: RowSize::default(),
            buffer: Vec::new(),
            bytes: 0,
            buffered,
            split_at: None,
            next,
            files,
        }
    }

    /// Buffers an update.
    fn push(&mut self, update: Update) {
        let bytes = self.size.estimate(&update.0);
        self.bytes += bytes;
        self.buffered.fetch_add(bytes, Ordering::Relaxed);
        self.buffer.push(update);
    }

    /// Whether the buffer should become a part: it is full, or the sinks together are over
    /// their budget and this one holds at least a minimum part.
    fn full(&self) -> bool {
        self.buffer.len() >= FLUSH_ROWS
            || self.bytes >= FLUSH_BYTES
            || (self.bytes >= MIN_PART_BYTES && self.buffered.load(Ordering::Relaxed) >= SINKS_BUDGET_BYTES)
    }

    /// Takes `bytes` off the shared budget.
    fn release(&self, bytes: usize) {
        self.buffered.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Hands the buffer over as the next part; `Ok(false)` when there is no output folder.
    fn flush(&mut self) -> Result<bool, String> {
        let rows = std::mem::take(&mut self.buffer);
        let bytes = std::mem::take(&mut self.bytes);
        let Some(files) = &self.files else {
            self.release(bytes);
            return Ok(false);
        };
        if let Some(e) = self.error() {
            self.release(bytes);
            return Err(e);
        }
        let index = self.next;
        self.next += 1;
        let Some(thread) = files.thread.as_ref() else {
            self.release(bytes);
            return Err("the output is closed".into());
        };
        // The part thread takes the part's bytes off the budget once it is written.
        if !thread.send(files.id, Job::Write { index, rows, bytes }) {
            self.release(bytes);
            return Err("the output's writer stopped".to_string());
        }
        Ok(true)
    }

    /// Answers a checkpoint once the parts handed over so far are durable.
    fn ack(&self, checkpoints: &Arc<Checkpoints>, slot: usize, ack: Ack) {
        match self.files.as_ref().and_then(|f| Some((f.id, f.thread.as_ref()?))) {
            Some((id, thread)) => {
                thread.send(id, Job::Ack(Arc::clone(checkpoints), slot, ack));
            }
            None => checkpoints.ack(slot, ack),
        }
    }

    fn error(&self) -> Option<String> {
        let files = self.files.as_ref()?;
        files.error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until every part is written; returns the first error.
    fn finish(&mut self) -> Option<String> {
        if let Some(files) = &mut self.files {
            if let Some(thread) = files.thread.take() {
                let (done, closed) = std::sync::mpsc::sync_channel(1);
                if !thread.send(files.id, Job::Close(done)) || closed.recv().is_err() {
                    return Some("the output's writer stopped".into());
                }
            }
        }
        self.error()
    }
}

/// A part thread: each output's parts in order, and its checkpoint answers after them.
fn write_parts(rx: std::sync::mpsc::Receiver<(usize, Job)>, buffered: &AtomicUsize) {
    let mut outputs: std::collections::HashMap<usize, (Box<PartFiles>, WriteError)> = std::collections::HashMap::new();
    // An output's files while it has met no error; after one, its later jobs are skipped.
    fn healthy(output: Option<&mut (Box<PartFiles>, WriteError)>) -> Option<&mut (Box<PartFiles>, WriteError)> {
        output.filter(|(_, error)| error.lock().unwrap_or_else(|e| e.into_inner()).is_none())
    }
    let failed = |error: &WriteError, e: String| {
        error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
    };
    for (id, job) in rx {
        match job {
            Job::Open { files, error } => {
                outputs.insert(id, (files, error));
            }
            Job::Write { index, rows, bytes } => {
                if let Some((files, error)) = healthy(outputs.get_mut(&id)) {
                    files.next = index;
                    files.buffer = rows;
                    if let Err(e) = files.flush() {
                        failed(error, e);
                    }
                }
                buffered.fetch_sub(bytes, Ordering::Relaxed);
            }
            Job::Ack(checkpoints, slot, ack) => {
                if let Some((files, error)) = healthy(outputs.get_mut(&id)) {
                    match files.sync_folder() {
                        Ok(()) => checkpoints.ack(slot, ack),
                        Err(e) => failed(error, e),
                    }
                }
            }
            Job::Close(done) => {
                outputs.remove(&id);
                let _ = done.send(());
            }
        }
    }
}

/// The distinct field-name lists (shapes) of a part's objects, each with an id: the events of
/// one type share a shape, and a part's rows alternate between a few. Names compare as pointers.
#[derive(Default)]
struct ObjectShapes {
    names: Vec<Vec<Sym>>,
    by_hash: std::collections::HashMap<u64, Vec<usize>, rustc_hash::FxBuildHasher>,
    last: Option<usize>,
}

impl ObjectShapes {
    /// The id of the shape of `fields`, new if it has not been seen.
    fn id(&mut self, fields: &[(Sym, Value)]) -> usize {
        let same = |names: &[Sym]| names.iter().eq(fields.iter().map(|(n, _)| n));
        if let Some(last) = self.last.filter(|&l| same(&self.names[l])) {
            return last;
        }
        let mut hasher = rustc_hash::FxHasher::default();
        fields.iter().for_each(|(n, _)| std::hash::Hash::hash(n, &mut hasher));
        let ids = self.by_hash.entry(std::hash::Hasher::finish(&hasher)).or_default();
        let id = match ids.iter().find(|&&id| same(&self.names[id])) {
            Some(&id) => id,
            None => {
                self.names.push(fields.iter().map(|(n, _)| *n).collect());
                ids.push(self.names.len() - 1);
                self.names.len() - 1
            }
        };
        self.last = Some(id);
        id
    }
}

/// An output's files: encodes and writes parts.
struct PartFiles {
    spec: OutputPlan,
    dir: Option<PathBuf>,
    /// The shapes of the output's columns so far (not for a flattened output, whose parts have
    /// their own columns).
    shapes: Shapes,
    buffer: Vec<Update>,
    /// The next part's number.
    next: usize,
    /// fsync each part (checkpoints rely on them).
    durable: bool,
    /// Every worker writes parts of this output, this one as the given worker.
    spread: Option<(Arc<Spread>, usize)>,
}

impl PartFiles {
    /// The schema of the output's last part on disk, which later parts keep (widened when
    /// their values need it).
    fn existing_schema(&self) -> Result<Option<SchemaRef>, String> {
        let Some(dir) = &self.dir else {
            return Ok(None);
        };
        let Some(last) = self.next.checked_sub(1) else {
            return Ok(None);
        };
        let path = dir.join(&self.spec.name).join(format!("part-{last:05}.parquet"));
        let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Some(builder.schema().clone()))
    }

    /// The updates parts `0..parts` hold, as the sink received them (without a sort prefix):
    /// flattened columns fold back into the trailing object, `time` and `diff` into the update.
    fn read_parts(&self, parts: usize) -> Result<Vec<(Vec<Value>, u64, isize)>, String> {
        use crate::source::arrow_read::Col;
        let Some(dir) = &self.dir else {
            return Ok(Vec::new());
        };
        let spec = &self.spec;
        let base = spec.columns.len() - usize::from(spec.flatten);
        let mut out = Vec::new();
        for index in 0..parts {
            let path = dir.join(&spec.name).join(format!("part-{index:05}.parquet"));
            let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
            let file = std::fs::File::open(&path).map_err(|e| fail(&e))?;
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                .and_then(|b| b.build())
                .map_err(|e| fail(&e))?;
            for batch in reader {
                let batch = batch.map_err(|e| fail(&e))?;
                let schema = batch.schema();
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                let cols: Vec<Col> = batch.columns().iter().map(Col::new).collect();
                let extra = names.len() - if spec.changelog { 2 } else { 0 };
                for row in 0..batch.num_rows() {
                    let mut values: Vec<Value> = cols[..base].iter().map(|c| c.get(row)).collect();
                    if spec.flatten {
                        let fields = (base..extra)
                            .map(|i| (Sym::new(names[i]), cols[i].get(row)))
                            .filter(|(_, v)| !v.is_null())
                            .collect();
                        values.push(Value::object(fields));
                    }
                    let (t, r) = if spec.changelog {
                        let t = match cols[extra].get(row) {
                            Value::Time(t) | Value::Int(t) => t.max(0) as u64,
                            _ => 0,
                        };
                        let r = match cols[extra + 1].get(row) {
                            Value::Int(r) => r as isize,
                            _ => 1,
                        };
                        (t, r)
                    } else {
                        (0, 1)
                    };
                    out.push((values, t, r));
                }
            }
        }
        Ok(out)
    }

    /// fsyncs the output's folder, so that renamed parts survive a crash.
    fn sync_folder(&self) -> Result<(), String> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let folder = dir.join(&self.spec.name);
        if !folder.exists() {
            return Ok(());
        }
        std::fs::File::open(&folder)
            .and_then(|f| f.sync_all())
            .map_err(|e| format!("{}: {e}", folder.display()))
    }

    /// Writes the buffer as the next part; `Ok(false)` when there is no output folder. A part
    /// appears whole or not at all: it is written under a temporary name and renamed.
    fn flush(&mut self) -> Result<bool, String> {
        let index = self.next;
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
        let mut extra: Vec<Sym> = Vec::new();
        // Rows of one shape (the events of a type) name the same fields: each shape is
        // looked at once, and each row keeps its shape's id.
        let mut shapes = ObjectShapes::default();
        let mut shape_of: Vec<usize> = Vec::new();
        if self.spec.flatten {
            columns.pop();
            shape_of = (updates.iter())
                .map(|(row, _, _)| match row.last() {
                    Some(Value::Object(fields)) => shapes.id(fields),
                    _ => shapes.id(&[]),
                })
                .collect();
            let names: std::collections::BTreeSet<Sym> = shapes.names.iter().flatten().copied().collect();
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
        // An insert-only output writes a row of multiplicity `r` as `r` rows.
        let changelog = self.spec.changelog;
        let copies = |r: isize| if changelog { 1 } else { r.max(1) as usize };
        let rows: usize = updates.iter().map(|u| copies(u.2)).sum();
        // Columns gather references into the rows: no value is copied. The row's own columns
        // after the sort prefix, then (flattened) the trailing object's fields, then time and diff.
        let own = columns.len() - extra.len() - if changelog { 2 } else { 0 };
        let (times, diffs): (Vec<Value>, Vec<Value>) = if changelog {
            updates
                .iter()
                .map(|(_, t, r)| (Value::Time(*t as i64), Value::Int(*r as i64)))
                .unzip()
        } else {
            Default::default()
        };
        static NULL: Value = Value::Null;
        let mut cols: Vec<Vec<&Value>> = (0..columns.len()).map(|_| Vec::with_capacity(rows)).collect();
        // Where each extra column is in an object, per shape.
        let at_of: Vec<Vec<Option<usize>>> = (shapes.names.iter())
            .map(|names| extra.iter().map(|n| names.iter().position(|f| f == n)).collect())
            .collect();
        for (i, (row, _, r)) in updates.iter().enumerate() {
            let values = &row[k..];
            let (plain, fields) = match (self.spec.flatten, values.split_last()) {
                (true, Some((Value::Object(fields), plain))) => (plain, &fields[..]),
                (true, Some((_, plain))) => (plain, &[][..]),
                _ => (values, &[][..]),
            };
            let at: &[Option<usize>] = shape_of.get(i).map_or(&[], |&id| &at_of[id]);
            for _ in 0..copies(*r) {
                // The shorter side first in each `zip`, so that no column is taken and skipped.
                let mut c = cols.iter_mut();
                for (v, col) in plain.iter().take(own).zip(c.by_ref()) {
                    col.push(v);
                }
                for (p, col) in at.iter().zip(c.by_ref()) {
                    col.push(p.map_or(&NULL, |p| &fields[p].1));
                }
                if changelog {
                    for (col, v) in c.zip([&times[i], &diffs[i]]) {
                        col.push(v);
                    }
                }
            }
        }
        // An output keeps one schema across its parts (a flattened one has each part's own
        // columns), widened when a part holds values its columns cannot: ints becoming floats,
        // a struct's new fields, another kind as text. Coercing them into the old types instead
        // would write them as nulls. The workers of a spread output share theirs.
        let batch = match (&self.spread, self.spec.flatten) {
            // A flattened part has its own columns, and shapes of its own.
            (_, true) => Shapes::default().build(&columns, &cols),
            (Some((spread, _)), false) => spread.build(&self.spec.name, &columns, &cols),
            (None, false) => self.shapes.build(&columns, &cols),
        };
        let batch = batch.map_err(|e| e.to_string())?;
        drop(cols);
        let folder = dir.join(&self.spec.name);
        std::fs::create_dir_all(&folder).map_err(|e| format!("{}: {e}", folder.display()))?;
        let stem = match &self.spread {
            Some((spread, worker)) if spread.peers > 1 => format!("part-{worker:02}-{index:05}"),
            _ => format!("part-{index:05}"),
        };
        let path = folder.join(format!("{stem}.parquet"));
        let tmp = folder.join(format!("{stem}.parquet.tmp"));
        let mut sink = ParquetSink::open_part(&tmp, batch.schema()).map_err(|e| e.to_string())?;
        sink.write(&batch).map_err(|e| e.to_string())?;
        sink.close().map_err(|e| e.to_string())?;
        if self.durable {
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| format!("{}: {e}", tmp.display()))?;
        }
        std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
        self.next += 1;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_shapes_get_one_id_each_however_the_rows_alternate() {
        let obj =
            |names: &[&str]| -> Vec<(Sym, Value)> { names.iter().map(|n| (Sym::new(n), Value::Int(1))).collect() };
        let (a, b, c) = (obj(&["x", "y"]), obj(&["x", "z"]), obj(&["y", "x"]));
        let mut shapes = ObjectShapes::default();
        let ids: Vec<usize> = [&a, &b, &a, &a, &c, &b, &obj(&[]), &c]
            .into_iter()
            .map(|f| shapes.id(f))
            .collect();
        // The same names in another order are another shape: their positions differ.
        assert_eq!(ids, [0, 1, 0, 0, 2, 1, 3, 2]);
        let names: Vec<Vec<&str>> = (shapes.names.iter())
            .map(|n| n.iter().map(|s| s.as_str()).collect())
            .collect();
        assert_eq!(names, [vec!["x", "y"], vec!["x", "z"], vec!["y", "x"], vec![]]);
    }

    /// A writer of output `name`, writing under `dir` (none: nothing is written), sharing
    /// `buffered`.
    fn writer(name: &str, dir: Option<PathBuf>, buffered: &Arc<AtomicUsize>) -> PartWriter {
        let files = PartFiles {
            next: 0,
            spec: OutputPlan::new(name, &["text"]),
            dir,
            shapes: Shapes::default(),
            buffer: Vec::new(),
            durable: false,
            spread: None,
        };
        PartWriter::new(files, 0, Arc::clone(buffered), 1)
    }

    /// An update of about `bytes` bytes.
    fn update(bytes: usize) -> Update {
        (vec![Value::str(&"x".repeat(bytes - 24))], 0, 1)
    }

    /// The schema and the rows of a part file.
    fn read_part(path: &std::path::Path) -> (SchemaRef, Vec<Vec<Value>>) {
        use crate::source::arrow_read::Col;
        let file = std::fs::File::open(path).unwrap();
        let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        let schema = builder.schema().clone();
        let mut rows = Vec::new();
        for batch in builder.build().unwrap() {
            let batch = batch.unwrap();
            let cols: Vec<Col> = batch.columns().iter().map(Col::new).collect();
            rows.extend((0..batch.num_rows()).map(|r| cols.iter().map(|c| c.get(r)).collect::<Vec<_>>()));
        }
        (schema, rows)
    }

    /// A part whose values do not fit the output's schema so far widens it: they were coerced
    /// into the first part's types, so that floats after ints, and timestamps after nulls, were
    /// written as nulls (or as text). The workers of a spread output widen one shared schema.
    #[test]
    fn later_parts_widen_the_schema_instead_of_nulling_values() {
        use arrow::datatypes::DataType;
        let dir = tempfile::tempdir().unwrap();
        let spread = Arc::new(Spread::new(2));
        let files = |worker: Option<usize>| PartFiles {
            next: 0,
            spec: OutputPlan::new("o", &["k", "s", "t", "m"]),
            dir: Some(dir.path().to_path_buf()),
            shapes: Shapes::default(),
            buffer: Vec::new(),
            durable: false,
            spread: worker.map(|w| (Arc::clone(&spread), w)),
        };
        let object =
            |fields: &[(&str, i64)]| Value::object(fields.iter().map(|(n, v)| (Sym::new(n), Value::Int(*v))).collect());
        let first = vec![
            (
                vec![Value::str("a"), Value::Int(1), Value::Null, object(&[("x", 1)])],
                0,
                1,
            ),
            (
                vec![Value::str("b"), Value::Int(2), Value::Null, object(&[("x", 2)])],
                0,
                1,
            ),
        ];
        let second = vec![
            (
                vec![
                    Value::str("c"),
                    Value::float(1.5),
                    Value::Time(60_000),
                    object(&[("x", 3), ("y", 4)]),
                ],
                1,
                1,
            ),
            (
                vec![Value::str("d"), Value::Int(3), Value::Null, object(&[("y", 5)])],
                1,
                1,
            ),
        ];
        let types =
            |schema: &SchemaRef| -> Vec<DataType> { schema.fields().iter().map(|f| f.data_type().clone()).collect() };
        // One writer: part 0 as inferred, part 1 widened, part 2 keeps part 1's schema.
        let mut one = files(None);
        for part in [first.clone(), second.clone(), first.clone()] {
            one.buffer = part;
            assert!(one.flush().unwrap());
        }
        let folder = dir.path().join("o");
        let (s0, _) = read_part(&folder.join("part-00000.parquet"));
        let (s1, rows1) = read_part(&folder.join("part-00001.parquet"));
        let (s2, rows2) = read_part(&folder.join("part-00002.parquet"));
        assert_eq!(types(&s0)[1..3], [DataType::Int64, DataType::Utf8]);
        assert_eq!(types(&s1)[1], DataType::Float64);
        assert!(matches!(types(&s1)[2], DataType::Timestamp(_, _)), "{s1:?}");
        assert!(matches!(&types(&s1)[3], DataType::Struct(f) if f.len() == 2), "{s1:?}");
        assert_eq!(s2, s1);
        // Every value is kept: 1.5 is not null, the time is a time, the new field is there.
        let expected: Vec<Vec<Value>> = second.iter().map(|(row, _, _)| row.clone()).collect();
        let keys: Vec<_> = rows1.iter().map(|r| r[..3].to_vec()).collect();
        assert_eq!(keys, expected.iter().map(|r| r[..3].to_vec()).collect::<Vec<_>>());
        assert_eq!(rows1[0][3], object(&[("x", 3), ("y", 4)]));
        assert_eq!(
            rows2.iter().map(|r| r[1].clone()).collect::<Vec<_>>(),
            [Value::Int(1), Value::Int(2)]
        );
        // Two workers of a spread output: the second's floats widen the schema both then keep.
        let (mut w0, mut w1) = (files(Some(0)), files(Some(1)));
        std::fs::remove_dir_all(&folder).unwrap();
        w0.buffer = first.clone();
        w0.flush().unwrap();
        w1.buffer = second.clone();
        w1.flush().unwrap();
        w0.buffer = first;
        w0.flush().unwrap();
        let part = |w: usize, i: usize| read_part(&folder.join(format!("part-{w:02}-{i:05}.parquet"))).0;
        assert_eq!(types(&part(0, 0))[1], DataType::Int64);
        assert_eq!(part(1, 0), part(0, 1));
        assert_eq!(types(&part(0, 1))[1], DataType::Float64);
    }

    #[test]
    fn row_sizes_are_measured_at_first_then_sampled() {
        let mut size = RowSize::default();
        let row = |bytes: usize| vec![Value::str(&"x".repeat(bytes - 24))];
        // The first rows are measured one by one.
        for n in 1..=RowSize::EXACT as usize {
            assert_eq!(size.estimate(&row(24 + n)), 24 + n);
        }
        let mean = (size.bytes / size.measured) as usize;
        // Then rows between samples count as the mean of the measured, whatever their size,
        // and every `EVERY`-th row is measured and moves the mean.
        let mut n = RowSize::EXACT;
        loop {
            n += 1;
            if n.is_multiple_of(RowSize::EVERY) {
                assert_eq!(size.estimate(&row(10_000)), 10_000);
                break;
            }
            assert_eq!(size.estimate(&row(10_000)), mean);
        }
        assert!((size.bytes / size.measured) as usize > mean);
    }

    #[test]
    fn a_sink_writes_a_smaller_part_only_when_the_sinks_together_are_over_budget() {
        let buffered = Arc::new(AtomicUsize::new(0));
        let (mut a, mut b) = (writer("a", None, &buffered), writer("b", None, &buffered));
        a.push(update(MIN_PART_BYTES));
        assert_eq!(buffered.load(Ordering::Relaxed), MIN_PART_BYTES);
        assert!(!a.full(), "a minimum part alone, under budget, waits for a full buffer");
        // The other sink fills the rest of the budget: `a` now holds enough to write.
        b.push(update(SINKS_BUDGET_BYTES - MIN_PART_BYTES));
        assert!(a.full() && b.full());
        // Below the minimum part, a sink keeps buffering whatever the budget.
        let mut c = writer("c", None, &buffered);
        c.push(update(MIN_PART_BYTES / 2));
        assert!(!c.full());
        // Writing (here: dropping, as there is no folder) gives the bytes back.
        assert!(!a.flush().unwrap());
        assert_eq!(
            buffered.load(Ordering::Relaxed),
            SINKS_BUDGET_BYTES - MIN_PART_BYTES / 2
        );
        drop(b);
        drop(c);
        assert_eq!(
            buffered.load(Ordering::Relaxed),
            0,
            "a dropped buffer leaves the budget"
        );
    }

    #[test]
    fn a_written_part_leaves_the_budget_once_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let buffered = Arc::new(AtomicUsize::new(0));
        let mut w = writer("out", Some(dir.path().to_path_buf()), &buffered);
        for _ in 0..3 {
            w.push(update(1000));
        }
        assert!(w.flush().unwrap());
        assert_eq!(w.bytes, 0);
        assert!(w.finish().is_none());
        assert_eq!(buffered.load(Ordering::Relaxed), 0);
        assert!(dir.path().join("out/part-00000.parquet").exists());
    }

    #[test]
    fn a_workers_outputs_share_one_part_thread_until_the_last_is_gone() {
        let (dir, elsewhere) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let buffered = Arc::new(AtomicUsize::new(0));
        let mut a = writer("a", Some(dir.path().to_path_buf()), &buffered);
        let mut b = writer("b", Some(dir.path().to_path_buf()), &buffered);
        let thread = |w: &PartWriter| Rc::clone(w.files.as_ref().unwrap().thread.as_ref().unwrap());
        let shared = thread(&a);
        assert!(Rc::ptr_eq(&shared, &thread(&b)));
        // Another worker (thread) has its own.
        let path = elsewhere.path().to_path_buf();
        let other = std::thread::spawn(move || {
            let w = writer("c", Some(path), &Arc::new(AtomicUsize::new(0)));
            Rc::as_ptr(&thread(&w)) as usize
        });
        assert_ne!(other.join().unwrap(), Rc::as_ptr(&shared) as usize);
        drop(shared);
        // Parts of both, interleaved; finishing one output leaves the other writing.
        for _ in 0..2 {
            for w in [&mut a, &mut b] {
                w.push(update(1000));
                assert!(w.flush().unwrap());
            }
        }
        assert!(a.finish().is_none());
        b.push(update(1000));
        assert!(b.flush().unwrap());
        assert!(b.finish().is_none());
        for part in [
            "a/part-00000",
            "a/part-00001",
            "b/part-00000",
            "b/part-00001",
            "b/part-00002",
        ] {
            assert!(dir.path().join(format!("{part}.parquet")).exists(), "{part}");
        }
        assert_eq!(buffered.load(Ordering::Relaxed), 0);
        // Every output finished: the thread has ended.
        assert!(PART_THREADS.with(|slot| slot.borrow().upgrade().is_none()));
    }

    #[test]
    fn a_split_flush_keeps_the_bytes_of_the_rows_it_keeps() {
        let buffered = Arc::new(AtomicUsize::new(0));
        let mut w = writer("gated", None, &buffered);
        let mut res = SinkResult::default();
        for t in 0..4u64 {
            let (row, _, r) = update(1000);
            w.push((row, t * 10, r));
        }
        split_flush(&mut w, &mut res, 20);
        assert_eq!(w.buffer.len(), 2);
        assert_eq!(w.bytes, 2000);
        assert_eq!(buffered.load(Ordering::Relaxed), 2000);
        assert_eq!(w.split_at, Some(20));
    }
}
