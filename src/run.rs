//! Running a plan: the validated run configuration, the per-worker driver that reads source
//! splits into the dataflow while advancing inputs with the watermark, and the run summary.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dead_letter::DeadLetter;
use crate::error::RunError;
use crate::plan::{Plan, SchemaPlan, SourcePlan};
use crate::render::{render, SourceInputs};
use crate::schema::registry::Registry;
use crate::schema::Schema;
use crate::source::lateness::Lateness;
use crate::source::{Decoded, Layout, Watermark};
use crate::value::{format_time, Value};

mod feeds;

/// How to run: validated once from the command line (or a test), then used everywhere.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Worker threads per process.
    pub workers: usize,
    /// Cluster mode: number of processes, this process's index, and their addresses.
    pub processes: usize,
    pub process: usize,
    pub addresses: Vec<String>,
    pub out_dir: Option<PathBuf>,
    /// Keep every output update in memory and return it (tests).
    pub collect: bool,
    /// With `collect`, keep only these outputs (`sluice eval`: what its evaluators read).
    pub collect_only: Option<Vec<String>>,
    pub progress: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            workers: 1,
            processes: 1,
            process: 0,
            addresses: Vec::new(),
            out_dir: None,
            collect: false,
            collect_only: None,
            progress: false,
        }
    }
}

impl RunConfig {
    pub(crate) fn timely(&self) -> timely::Config {
        let communication = if self.processes > 1 {
            let addresses = if self.addresses.is_empty() {
                (0..self.processes).map(|i| format!("localhost:{}", 2101 + i)).collect()
            } else {
                self.addresses.clone()
            };
            timely::CommunicationConfig::Cluster {
                threads: self.workers,
                process: self.process,
                addresses,
                report: false,
                zerocopy: false,
            }
        } else if self.workers > 1 {
            timely::CommunicationConfig::Process(self.workers)
        } else {
            timely::CommunicationConfig::Thread
        };
        timely::Config {
            communication,
            worker: timely::WorkerConfig::default(),
        }
    }
}

/// One output's totals.
#[derive(Clone, Debug)]
pub struct OutputSummary {
    pub name: String,
    /// Updates written.
    pub rows: u64,
    /// Rows in the collection at the end (sum of diffs).
    pub net: i64,
    pub parts: usize,
}

/// Updates of one output: row, time, diff.
pub type Updates = Vec<(Vec<Value>, u64, isize)>;

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    pub events_read: u64,
    pub elapsed: Duration,
    pub workers: usize,
    pub outputs: Vec<OutputSummary>,
    pub dead_letters: BTreeMap<String, i64>,
    /// Present when [`RunConfig::collect`] is set.
    pub collected: BTreeMap<String, Updates>,
    /// The `counters` output at the end: (metric, label) → count.
    pub counters: BTreeMap<(String, String), i64>,
    /// Per source, in plan order: its events by lateness (this process's splits).
    pub lateness: Vec<Lateness>,
}

impl RunSummary {
    pub fn late(&self) -> i64 {
        self.dead_letters.get("late").copied().unwrap_or(0)
    }
}

/// What a worker's sinks report at the end: worker 0's, or every worker's when they all write
/// (see [`crate::render::sink::Spread`]).
pub(crate) struct WorkerOutput {
    pub(crate) outputs: Vec<OutputSummary>,
    pub(crate) dead_letters: BTreeMap<String, i64>,
    pub(crate) collected: BTreeMap<String, Updates>,
    pub(crate) counters: BTreeMap<(String, String), i64>,
}

impl WorkerOutput {
    /// Adds this worker's totals to the run's.
    fn add_to(self, summary: &mut RunSummary) {
        for output in self.outputs {
            match summary.outputs.iter_mut().find(|o| o.name == output.name) {
                Some(o) => {
                    o.rows += output.rows;
                    o.net += output.net;
                    o.parts += output.parts;
                }
                None => summary.outputs.push(output),
            }
        }
        for (reason, n) in self.dead_letters {
            *summary.dead_letters.entry(reason).or_default() += n;
        }
        for (key, n) in self.counters {
            *summary.counters.entry(key).or_default() += n;
        }
        for (name, updates) in self.collected {
            summary.collected.entry(name).or_default().extend(updates);
        }
    }
}

/// Keeps freed memory in mimalloc's arenas for a second ([`PURGE_DELAY_MS`]) instead of
/// handing it back to the OS after 10 ms: decoding and exchanging batches frees and reallocates
/// the same amount over and over, and returning it at once made the kernel zero fresh pages for
/// a quarter of the run time. Kept for good, memory freed on one thread sat unused while others
/// grew: the default spec on 10M events with two workers peaked at 1,161 MiB in 123.5 s with it
/// kept, and at 980 MiB in 122.9 s with a 1 s delay, while Nexmark q5 lost 4% of its rate
/// (1.55M to 1.49M events/s per core). An explicit `MIMALLOC_PURGE_DELAY` wins. The option is
/// set through mimalloc's API: setting the
/// environment variable from `main` came too late, as the runtime's allocations before `main`
/// had already read it (`MIMALLOC_SHOW_STATS=1` showed gigabytes purged). The binary calls this
/// for its batch commands (not `serve`, a long-lived process that should hand idle memory
/// back), and so does each bench that measures a run, to measure what the binary does.
///
/// It also turns off transparent huge pages for the process, which mimalloc 3 asks the kernel
/// for (`madvise`) on the arenas it reserves: on the default spec over 1M events the kernel's
/// time (faulting and zeroing 2 MiB pages) fell from 1.6–3.8 s to about 0.6 s of a 14 s run,
/// and the peak by 5–10%. mimalloc's own option (`MIMALLOC_ALLOW_THP=0`) does the same, but is
/// read when the first arena is reserved, before `main`; `prctl` covers that arena too. An
/// explicit `MIMALLOC_ALLOW_THP` wins.
pub fn tune_allocator() {
    /// `mi_option_purge_delay` in mimalloc's `mi_option_e` (v2 and v3).
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: `mi_option_set` only stores an integer option; any value is valid for it.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS) };
    }
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: `PR_SET_THP_DISABLE` sets a flag of this process; it touches no memory of ours.
        // On failure (an old kernel) huge pages stay allowed, which is only slower.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

/// How long batch commands keep freed memory before handing it back (see [`tune_allocator`]).
pub const PURGE_DELAY_MS: std::os::raw::c_long = 1000;

/// Runs `plan` to completion.
pub fn run(plan: &Plan, config: &RunConfig) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    if let Some(tcp) = plan.sources.iter().find(|s| s.format == crate::plan::Format::Tcp) {
        return Err(RunError::Config(format!(
            "source `{}` arrives over TCP: serve the spec with `sluice serve`, or replay the source from a file with `--input {}=FILE`",
            tcp.name, tcp.name
        )));
    }
    let peers = config.workers * config.processes;
    let layouts: Vec<Layout> = (plan.sources.iter())
        .map(|s| Layout::discover_for(s, peers))
        .collect::<Result<_, _>>()?;
    crate::source::ranges::check(plan, &layouts)?;
    let total_rows: usize = layouts.iter().map(Layout::total_rows).sum();
    let registries: Vec<Registry> = plan.schemas().map(load_registry).collect::<Result<_, _>>()?;
    tracing::info!(splits = layouts.iter().map(|l| l.splits.len()).sum::<usize>(), rows = total_rows, elapsed = ?started.elapsed(), "sources discovered");
    // Outputs are written (by process 0) to a staging folder next to `--out` and moved into it
    // once the run has succeeded, so a failed or killed run leaves nothing that looks complete.
    let staging = match (&config.out_dir, config.process) {
        (Some(out), 0) => Some(Staging::new(out)?),
        _ => None,
    };
    if config.process == 0 {
        clear_outputs(plan, config.out_dir.as_deref())?;
        if let Some(s) = &staging {
            s.prepare()?;
        }
    }
    let result = run_staged(plan, config, layouts, total_rows, registries, staging.as_ref(), started);
    if let Some(s) = &staging {
        match &result {
            Ok(_) => s.publish(plan)?,
            Err(_) => s.discard(),
        }
    }
    result
}

/// [`run`] once the sources are discovered, writing outputs to `staging` when there is one.
fn run_staged(
    plan: &Plan,
    config: &RunConfig,
    layouts: Vec<Layout>,
    total_rows: usize,
    registries: Vec<Registry>,
    staging: Option<&Staging>,
    started: Instant,
) -> Result<RunSummary, RunError> {
    let config = &RunConfig {
        out_dir: staging.map(|s| s.dir.clone()).or(config.out_dir.clone()),
        ..config.clone()
    };
    let bar = if config.progress {
        crate::progress::bar(total_rows as u64, "events")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let read = Arc::new(AtomicU64::new(0));
    let lateness = Arc::new(std::sync::Mutex::new(vec![Lateness::default(); plan.sources.len()]));
    // In one process every worker writes its own parts of the outputs (see `Spread`); the
    // sinks of all workers share one memory budget.
    let sinks = crate::render::sink::SinkEnv {
        out_dir: config.out_dir.clone(),
        collect: config.collect,
        collect_only: config.collect_only.clone(),
        spread: (config.processes == 1).then(|| Arc::new(crate::render::sink::Spread::new(config.workers))),
        ..Default::default()
    };
    let shared = Arc::new((
        plan.clone(),
        layouts,
        registries,
        sinks,
        bar.clone(),
        Arc::clone(&read),
        Arc::clone(&lateness),
    ));

    let guards = timely::execute(config.timely(), move |worker| {
        let (plan, layouts, registries, sinks, bar, read, lateness) = &*shared;
        drive(worker, plan, layouts, registries, sinks, bar, read, lateness)
    })
    .map_err(RunError::Timely)?;

    let mut summary = RunSummary {
        workers: config.workers * config.processes,
        ..RunSummary::default()
    };
    for result in guards.join() {
        let output = result.map_err(RunError::Timely)?.map_err(RunError::Worker)?;
        if let Some(output) = output {
            output.add_to(&mut summary);
        }
    }
    bar.finish_and_clear();
    summary.events_read = read.load(Ordering::Relaxed);
    summary.lateness = lateness.lock().map(|l| l.clone()).unwrap_or_default();
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// A folder next to `--out` (`.NAME.partial`) that a run writes its outputs to; they are moved
/// into `--out` when the run succeeds, and the folder is removed when it fails. One left by a
/// killed run is removed by the next run.
struct Staging {
    dir: PathBuf,
    out: PathBuf,
}

impl Staging {
    fn new(out: &std::path::Path) -> Result<Staging, RunError> {
        let io = |source| RunError::Io {
            path: out.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(out).map_err(io)?;
        let out = std::fs::canonicalize(out).map_err(io)?;
        let name = out
            .file_name()
            .map_or("out".into(), |n| n.to_string_lossy().into_owned());
        let dir = match out.parent() {
            Some(parent) => parent.join(format!(".{name}.partial")),
            None => out.join(".partial"),
        };
        Ok(Staging { dir, out })
    }

    fn prepare(&self) -> Result<(), RunError> {
        self.discard();
        std::fs::create_dir_all(&self.dir).map_err(|source| RunError::Io {
            path: self.dir.clone(),
            source,
        })
    }

    /// Moves every output folder into `--out` (each a rename), then removes the staging folder.
    fn publish(&self, plan: &Plan) -> Result<(), RunError> {
        for name in plan.output_names() {
            let (from, to) = (self.dir.join(&name), self.out.join(&name));
            if from.exists() {
                std::fs::rename(&from, &to).map_err(|source| RunError::Io { path: to, source })?;
            }
        }
        std::fs::remove_dir_all(&self.dir).map_err(|source| RunError::Io {
            path: self.dir.clone(),
            source,
        })
    }

    fn discard(&self) {
        if self.dir.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.dir) {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove the staging folder");
            }
        }
    }
}

/// Removes the output folders a run is about to write.
pub(crate) fn clear_outputs(plan: &Plan, out_dir: Option<&std::path::Path>) -> Result<(), RunError> {
    let Some(dir) = out_dir else {
        return Ok(());
    };
    for name in plan.output_names() {
        let folder = dir.join(&name);
        if folder.exists() {
            std::fs::remove_dir_all(&folder).map_err(|source| RunError::Io {
                path: folder.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

/// A schema stage's registry: loaded from its `--registry` folder, with pinned schemas as the
/// first versions of types that have none.
pub(crate) fn load_registry(stage: &SchemaPlan) -> Result<Registry, RunError> {
    let invalid = |path: &std::path::Path, message: String| RunError::Source {
        path: path.to_path_buf(),
        message,
    };
    let mut registry = match &stage.registry_dir {
        Some(dir) if dir.exists() => Registry::load(dir).map_err(|e| invalid(dir, e.to_string()))?,
        _ => Registry::default(),
    };
    for (event_type, path) in &stage.pinned {
        if registry.latest(event_type).is_some() {
            continue;
        }
        let text = std::fs::read_to_string(path).map_err(|e| invalid(path, e.to_string()))?;
        let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| invalid(path, e.to_string()))?;
        let schema = Schema::from_json_schema(&doc).map_err(|e| invalid(path, e.to_string()))?;
        registry
            .pin(event_type, schema)
            .map_err(|e| invalid(path, e.to_string()))?;
    }
    Ok(registry)
}

/// One worker: render, read this worker's splits, close the inputs, run to completion.
#[allow(clippy::too_many_arguments)]
fn drive(
    worker: &mut timely::worker::Worker,
    plan: &Plan,
    layouts: &[Layout],
    registries: &[Registry],
    sinks: &crate::render::sink::SinkEnv,
    bar: &indicatif::ProgressBar,
    read: &AtomicU64,
    lateness: &std::sync::Mutex<Vec<Lateness>>,
) -> Result<Option<WorkerOutput>, String> {
    let index = worker.index();
    let mut rendered = worker.dataflow::<u64, _, _>(|scope| render(plan, scope, registries, sinks));
    let tick_ms = plan.tick_ms as i64;

    let mut late: Vec<Lateness> = plan.sources.iter().map(|_| Lateness::default()).collect();
    // Every file source at once, in event-time order (see `feeds`): a join's context rows and
    // a router's load samples arrive with the events that need them, so neither side is held
    // whole by the stage that pairs them.
    let feeds = (rendered.inputs.iter_mut().zip(&mut late).enumerate())
        .map(|(i, (inputs, lateness))| feeds::Feed {
            source: &plan.sources[i],
            layout: &layouts[i],
            inputs,
            lateness,
        })
        .collect();
    feeds::read(worker, feeds, tick_ms, &mut |n| {
        read.fetch_add(n, Ordering::Relaxed);
        bar.inc(n);
    })?;
    if let Ok(mut all) = lateness.lock() {
        for (all, late) in all.iter_mut().zip(&late) {
            all.merge(late);
        }
    }
    let probe = rendered.probe.clone();
    tracing::info!(worker = index, "inputs read");
    rendered.inputs.clear();
    while worker.step_or_park(None) {}
    tracing::info!(worker = index, "dataflow complete");
    debug_assert!(probe.done());
    // With spread sinks every worker reports its part of the totals.
    collect_outputs(&rendered, sinks.collect, index == 0 || sinks.spread.is_some())
}

/// Worker steps after each decoded chunk of a file source. A step schedules each operator
/// once, so a chunk crosses only part of a chain of stages and exchanges per step; stepping
/// again lets it reach the stages that hold it (dedup, joins, windows) before the next chunk is
/// read, instead of queueing in channels. On the default spec over 1M events, 3 steps instead of
/// 1 lowered the peak RSS from 754 to 696 MiB with one worker (6 steps: 679) and the CPU time
/// by 4%.
const STEPS_PER_CHUNK: usize = 3;

/// Reads this worker's splits of one file source into its inputs (split `i` is read by worker
/// `i % peers`), advancing them with the watermark; `lateness` counts on-time and late events,
/// and `progress` gets the records read.
pub(crate) fn read_splits(
    worker: &mut timely::worker::Worker,
    source: &SourcePlan,
    layout: &Layout,
    inputs: &mut SourceInputs,
    tick_ms: i64,
    lateness: &mut Lateness,
    progress: &mut dyn FnMut(u64),
) -> Result<(), String> {
    let feed = feeds::Feed {
        source,
        layout,
        inputs,
        lateness,
    };
    feeds::read(worker, vec![feed], tick_ms, progress)
}

/// The totals of this worker's sinks once the dataflow is complete, when it `reports` them
/// (worker 0, or every worker of spread sinks); `None` otherwise.
pub(crate) fn collect_outputs(
    rendered: &crate::render::Rendered,
    collect: bool,
    reports: bool,
) -> Result<Option<WorkerOutput>, String> {
    if !reports {
        return Ok(None);
    }
    let mut out = WorkerOutput {
        outputs: Vec::new(),
        dead_letters: BTreeMap::new(),
        collected: BTreeMap::new(),
        counters: BTreeMap::new(),
    };
    for (name, result) in &rendered.sinks {
        let mut r = result.borrow_mut();
        if let Some(e) = &r.error {
            return Err(format!("writing output `{name}`: {e}"));
        }
        out.outputs.push(OutputSummary {
            name: name.clone(),
            rows: r.rows,
            net: r.net,
            parts: r.parts,
        });
        if name == crate::DEAD_LETTERS {
            out.dead_letters = std::mem::take(&mut r.tally);
        }
        if name == crate::plan::COUNTERS {
            out.counters = r
                .snapshot
                .iter()
                .map(|(row, n)| ((row[0].to_string(), row[1].to_string()), *n))
                .collect();
        }
        if collect {
            out.collected.insert(name.clone(), std::mem::take(&mut r.collected));
        }
    }
    Ok(Some(out))
}

/// Sends one decoded record: an on-time event at its tick (`None`), anything else as a dead
/// letter (its reason).
pub(crate) fn admit(
    inputs: &mut SourceInputs,
    watermark: &mut Watermark,
    decoded: Decoded,
    tick_ms: i64,
    source: &SourcePlan,
    location: impl Fn(u64) -> String,
) -> Option<String> {
    // Dead letters are stamped with the watermark's tick where they were rejected, so their
    // times depend only on the log, not on how it was batched.
    let dead_time = |inputs: &SourceInputs, watermark: &Watermark| {
        let wm = watermark.current().max(0);
        (*inputs.dead.time()).max((wm - wm.rem_euclid(tick_ms)) as u64)
    };
    let (event, pos) = match decoded {
        Decoded::Bad(letter) => {
            let t = dead_time(inputs, watermark);
            let reason = letter.reason.clone();
            inputs.dead.update_at(*letter, t, 1);
            return Some(reason);
        }
        Decoded::Event(event, pos) => (event, pos),
    };
    let reject = |reason: &str, detail: String| DeadLetter {
        stage: format!("source:{}", source.name),
        reason: reason.into(),
        detail,
        location: location(pos),
        record: event.json_text(&source.time_field, &source.type_field),
        event_time: Some(event.time),
        original: None,
    };
    if event.time < 0 {
        let detail = format!("event time {} is before 1970-01-01", format_time(event.time));
        let t = dead_time(inputs, watermark);
        inputs.dead.update_at(reject("bad_time", detail), t, 1);
        Some("bad_time".into())
    } else if watermark.observe(event.time) {
        let detail = format!(
            "event time {} is before the watermark {}",
            format_time(event.time),
            format_time(watermark.current())
        );
        let t = dead_time(inputs, watermark);
        inputs.dead.update_at(reject("late", detail), t, 1);
        Some("late".into())
    } else {
        let tick = (event.time - event.time.rem_euclid(tick_ms)) as u64;
        inputs.events.update_at(event, tick, 1);
        None
    }
}

/// The dead letter of an event too far in the future (reason `future_time`).
pub(crate) fn future_letter(
    source: &SourcePlan,
    event: &crate::event::Event,
    detail: String,
    location: String,
) -> DeadLetter {
    DeadLetter {
        stage: format!("source:{}", source.name),
        reason: FUTURE_TIME.into(),
        detail,
        location,
        record: event.json_text(&source.time_field, &source.type_field),
        event_time: Some(event.time),
        original: None,
    }
}

/// The dead-letter reason of events too far ahead (`max_future`).
pub const FUTURE_TIME: &str = "future_time";

/// Moves the inputs' time up to the watermark's tick.
pub(crate) fn advance(inputs: &mut SourceInputs, watermark: &Watermark, tick_ms: i64) {
    advance_to(inputs, watermark.current(), tick_ms);
}

/// Moves the inputs' time up to the tick of watermark `wm` (ms).
pub(crate) fn advance_to(inputs: &mut SourceInputs, wm: i64, tick_ms: i64) {
    if wm <= 0 {
        return;
    }
    let tick = (wm - wm.rem_euclid(tick_ms)) as u64;
    if tick > *inputs.events.time() {
        inputs.events.advance_to(tick);
        inputs.dead.advance_to(tick);
    }
}
