//! The job users run: the default spec, `dataflows/learning_analytics.toml`, end to end with
//! every output written, side by side with DuckDB running the same pipeline in SQL
//! (`benches/duckdb_pipeline.py`). Run with `cargo bench --bench pipeline`
//! (`SLUICE_BENCH_PIPELINE_EVENTS`, default 10,000,000; a tenth of it is also run, for memory).
//!
//! `sluice generate learning` writes each log once to `bench-data/pipeline-N/` (kept for later
//! runs). Both engines run as child processes under GNU time, with 1 and then 2 workers or
//! threads, so each figure is the whole process: wall seconds, CPU seconds (user + system) and
//! peak RSS. Per row:
//! - **sluice events/s per core**: rows read (events and context rows) ÷ CPU seconds (goal
//!   ≥ 500K);
//! - **DuckDB ÷ sluice wall** (goal ≥ 0.5);
//! - **peak RSS** of each (goal for sluice ≤ 1 GiB at 10M events; whether it is flat in the
//!   events, with the context keys and TTLs held fixed, is `cargo bench --bench memory`'s);
//! - **2 workers ÷ 1 worker** speed-up of sluice's wall time (goal ≥ 1.8 on 2 cores).
//!
//! Scaling has two controls, measured the same way (child processes under GNU time, wall
//! seconds), so that the speed-up reads against what the machine gives:
//! - **raw decode**: arrow-rs decoding every column of the events file, its row groups split
//!   over 1 and then 2 threads (the control), repeated to about 20M rows;
//! - **two jobs side by side**: two 1-worker runs of the same job at once, each with its own
//!   outputs: 2 × one run's wall ÷ the pair's wall is the most two cores give this job when
//!   nothing is shared (no exchange), only the machine (memory bandwidth, caches).
//!
//! Results print as Markdown tables and go to `bench-data/pipeline-results.md`.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Wall seconds, CPU seconds and peak RSS (MiB) of a child process, from GNU time; and its
/// standard output.
struct Measured {
    wall: f64,
    cpu: f64,
    peak_mib: f64,
    stdout: String,
}

fn measure(program: &Path, args: &[&str]) -> Measured {
    measure_with(program, args, &[])
}

fn measure_with(program: &Path, args: &[&str], envs: &[(&str, String)]) -> Measured {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%e %U %S %M"])
        .arg(program)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("GNU time at /usr/bin/time");
    let f = common::gnu_time_fields(program, &out, 4);
    Measured {
        wall: f[0],
        cpu: f[1] + f[2],
        peak_mib: f[3] / 1024.0,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// `read N events` from sluice's summary.
fn events_read(summary: &str) -> f64 {
    summary
        .lines()
        .find_map(|l| l.strip_prefix("read ")?.split_whitespace().next()?.parse().ok())
        .expect("sluice prints `read N events`")
}

/// Set in the bench's own child process: `PATH THREADS PASSES`, decode and exit.
const CONTROL: &str = "SLUICE_BENCH_CONTROL_DECODE";

/// The raw-decode control: arrow-rs decodes every column of `path`, `passes` times, its row
/// groups split over `threads` threads. Returns the rows decoded.
fn raw_decode(path: &Path, threads: usize, passes: usize) -> usize {
    use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
    let file = std::fs::File::open(path).unwrap();
    let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).unwrap();
    let groups = meta.metadata().num_row_groups();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let meta = meta.clone();
                s.spawn(move || {
                    let mut rows = 0;
                    for _ in 0..passes {
                        // A file of its own per thread: cloned handles share one offset.
                        let file = std::fs::File::open(path).unwrap();
                        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta.clone())
                            .with_row_groups((t..groups).step_by(threads).collect())
                            .with_batch_size(8192)
                            .build()
                            .unwrap();
                        rows += reader.map(|b| b.unwrap().num_rows()).sum::<usize>();
                    }
                    rows
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

/// The scaling controls' table rows for a log of `events` events in `dir`; `one_wall` is the
/// 1-worker run's wall time, `run` runs that job once into a folder.
fn controls(
    events: usize,
    input: &Path,
    one_wall: f64,
    run: &(dyn Fn(&Path) -> Measured + Sync),
    scratch: &Path,
) -> String {
    let me = std::env::current_exe().unwrap();
    let passes = (20_000_000 / events).max(1);
    let decode = |threads: usize| {
        let arg = format!("{} {threads} {passes}", input.display());
        measure_with(&me, &[], &[(CONTROL, arg)]).wall
    };
    let (one, two) = (decode(1), decode(2));
    // Two 1-worker runs at once, each into its own folder.
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        for k in 0..2 {
            s.spawn(move || run(&scratch.join(format!("side-{k}"))));
        }
    });
    let pair = started.elapsed().as_secs_f64();
    format!(
        "| {events} | raw decode of every column, 1 vs 2 threads ({} rows) | {one:.2} | {two:.2} | {:.2} |\n\
         | {events} | the job, 1 worker alone vs two 1-worker runs at once (2 × alone ÷ pair) | {one_wall:.1} | {pair:.1} | {:.2} |\n",
        events * passes,
        one / two,
        2.0 * one_wall / pair,
    )
}

fn main() {
    if let Ok(arg) = std::env::var(CONTROL) {
        let parts: Vec<&str> = arg.split(' ').collect();
        let rows = raw_decode(
            Path::new(parts[0]),
            parts[1].parse().unwrap(),
            parts[2].parse().unwrap(),
        );
        println!("{rows}");
        return;
    }
    let n = env("SLUICE_BENCH_PIPELINE_EVENTS", 10_000_000);
    let python = common::venv_python();
    let script = repo().join("benches/duckdb_pipeline.py");
    let spec = repo().join("dataflows/learning_analytics.toml");
    let sluice = Path::new(env!("CARGO_BIN_EXE_sluice"));
    let scratch = tempfile::tempdir().unwrap();
    let mut control_table = String::from(
        "| events | control | 1 thread / alone, wall s | 2 threads / pair, wall s | speed-up |\n|---|---|---|---|---|\n",
    );
    let mut table = String::from(
        "| events | workers / threads | sluice wall s | sluice events/s per core (≥ 500K) | sluice peak MiB (≤ 1024) | DuckDB wall s | DuckDB ÷ sluice wall (≥ 0.5) | DuckDB peak MiB | sluice 2 ÷ 1 worker speed-up (≥ 1.8) |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for events in [n / 10, n] {
        let dir = common::learning_log(events);
        let (input, ctx) = (dir.join("events.parquet"), dir.join("ctx"));
        let mut one_worker_wall = None;
        for workers in [1usize, 2] {
            let out = scratch.path().join("sluice");
            let _ = std::fs::remove_dir_all(&out);
            let w = workers.to_string();
            let run_job = |workers: &str, out: &Path| {
                let _ = std::fs::remove_dir_all(out);
                let sources = [
                    input.as_path(),
                    &ctx.join("profiles.parquet"),
                    &ctx.join("items.parquet"),
                ];
                let args = common::learning_run_args(&spec, sources, workers, out);
                measure(sluice, &args.iter().map(String::as_str).collect::<Vec<_>>())
            };
            let ours = run_job(&w, &out);
            let duck_out = scratch.path().join("duckdb");
            let _ = std::fs::remove_dir_all(&duck_out);
            std::fs::create_dir_all(&duck_out).unwrap();
            let theirs = measure(
                &python,
                &[
                    script.to_str().unwrap(),
                    input.to_str().unwrap(),
                    ctx.to_str().unwrap(),
                    &w,
                    duck_out.to_str().unwrap(),
                ],
            );
            let duck_wall: f64 = theirs.stdout.trim().parse().unwrap_or(theirs.wall);
            let per_core = events_read(&ours.stdout) / ours.cpu;
            let speedup = match one_worker_wall {
                None => {
                    one_worker_wall = Some(ours.wall);
                    "".to_string()
                }
                Some(one) => format!("{:.2}", one / ours.wall),
            };
            let line = format!(
                "| {events} | {workers} | {:.1} | {per_core:.0} | {:.0} | {duck_wall:.1} | {:.2} | {:.0} | {speedup} |",
                ours.wall,
                ours.peak_mib,
                duck_wall / ours.wall,
                theirs.peak_mib,
            );
            eprintln!("{line}");
            writeln!(table, "{line}").unwrap();
            if workers == 1 {
                let rows = controls(events, &input, ours.wall, &|out| run_job("1", out), scratch.path());
                eprint!("{rows}");
                control_table.push_str(&rows);
            }
        }
    }
    let all = format!("{table}\nScaling controls:\n\n{control_table}");
    print!("{all}");
    std::fs::write(repo().join("bench-data/pipeline-results.md"), all).unwrap();
}
