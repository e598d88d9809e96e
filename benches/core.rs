//! Core benchmarks, side by side with their peers in one run. Run with
//! `cargo bench --bench core` (set `SLUICE_BENCH_EVENTS` for another size; default 10M).
//!
//! On a generated `learning` log (made with `sluice generate` into `bench-data/` on first use),
//! with 2 workers / 2 threads:
//! 1. ingest into timely with no operators ÷ raw arrow-rs decode of the same columns
//!    (time and type: what a spec without stages decodes after projection), and the same for
//!    all columns;
//! 2. the one-minute × region window query (count, sum, avg, min, max, count distinct) ÷ DuckDB's
//!    SQL on the same file (`benches/duckdb_window.py`, DuckDB from `tests/setup-python.sh`);
//! 3. peak memory (max RSS) of that query for the whole log and for a tenth of it: a flat
//!    footprint shows that window state is released as the watermark passes.
//!
//! Each timing is the best of three runs. Results print as a Markdown table and are written to
//! `bench-data/results.md`.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use sluice::plan::{plan_str, Plan};
use sluice::run::{run, RunConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RUNS: usize = 3;
const THREADS: usize = 2;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn best<F: FnMut() -> Duration>(mut f: F) -> Duration {
    (0..RUNS).map(|_| f()).min().expect("at least one run")
}

/// The benchmark log, generated on first use.
fn log(events: usize) -> PathBuf {
    let dir = repo().join("bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("learning-{events}.parquet"));
    if !path.exists() {
        eprintln!("generating {} ...", path.display());
        sluice::generate::generate("learning", events, 1, &path, false).expect("generate");
    }
    path
}

/// Raw arrow-rs decode of `columns` (all when `None`), row groups split over THREADS threads.
fn raw_decode(path: &Path, columns: Option<&[&str]>) -> Duration {
    let started = Instant::now();
    let file = std::fs::File::open(path).unwrap();
    let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).unwrap();
    let groups = meta.metadata().num_row_groups();
    let rows: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let meta = meta.clone();
                // A file of its own per thread: cloned handles share one offset.
                let file = std::fs::File::open(path).unwrap();
                s.spawn(move || {
                    let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta.clone())
                        .with_row_groups((t..groups).step_by(THREADS).collect())
                        .with_batch_size(8192);
                    if let Some(cols) = columns {
                        let schema = meta.schema();
                        let roots = cols.iter().map(|c| schema.index_of(c).unwrap());
                        builder = builder.with_projection(ProjectionMask::roots(meta.parquet_schema(), roots));
                    }
                    builder.build().unwrap().map(|b| b.unwrap().num_rows()).sum::<usize>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert!(rows > 0);
    started.elapsed()
}

fn plan(path: &Path, aggregates: &str) -> Plan {
    let text = format!(
        "[pipeline]\nname = \"bench\"\ntick = \"1s\"\n[sources.events]\npath = \"{}\"\ntime_field = \"event_time\"\ntype_field = \"event_type\"\nallowed_lateness = \"2m\"\n{aggregates}",
        path.display()
    );
    plan_str(&text, Path::new("bench.toml"), Path::new("."), &[]).unwrap()
}

const WINDOW_QUERY: &str = r#"
[[aggregates]]
name = "region_minute"
source = "events"
window = { tumbling = "1m" }
group_by = ["region"]
emit = "final"
measures.events = "count()"
measures.total = "sum(response_time_ms)"
measures.mean = "avg(response_time_ms)"
measures.low = "min(response_time_ms)"
measures.high = "max(response_time_ms)"
measures.users = "count_distinct(user_id)"
"#;

fn sluice_run(plan: &Plan) -> Duration {
    let config = RunConfig {
        workers: THREADS,
        ..RunConfig::default()
    };
    let started = Instant::now();
    let summary = run(plan, &config).unwrap();
    assert!(summary.events_read > 0);
    started.elapsed()
}

/// Max RSS in KiB of a command, from GNU time.
fn peak_kib(program: &Path, args: &[&str]) -> u64 {
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg(program)
        .args(args)
        .output()
        .expect("/usr/bin/time");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr.lines().last().and_then(|l| l.trim().parse().ok()).unwrap_or(0)
}

fn main() {
    let events: usize = std::env::var("SLUICE_BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let path = log(events);
    let tenth = log(events / 10);
    let mevents = |d: Duration| events as f64 / d.as_secs_f64() / 1e6;
    let mut table = String::from("| measurement | sluice | peer | ratio (goal) |\n|---|---|---|---|\n");

    // 1. Ingest.
    let ingest_plan = plan(&path, "");
    let mut all_columns = ingest_plan.clone();
    all_columns.sources[0].projection = None;
    let raw_projected = best(|| raw_decode(&path, Some(&["event_time", "event_type"])));
    let ingest = best(|| sluice_run(&ingest_plan));
    let raw_all = best(|| raw_decode(&path, None));
    let ingest_all = best(|| sluice_run(&all_columns));
    for (what, ours, peer) in [
        ("ingest, no operators (time + type columns)", ingest, raw_projected),
        ("ingest, no operators (all 23 columns)", ingest_all, raw_all),
    ] {
        writeln!(
            table,
            "| {what}: M events/s vs arrow-rs decode | {:.2} | {:.2} | {:.2} (≥ 0.7) |",
            mevents(ours),
            mevents(peer),
            peer.as_secs_f64() / ours.as_secs_f64()
        )
        .unwrap();
    }

    // 2. Window query against DuckDB.
    let window_plan = plan(&path, WINDOW_QUERY);
    let ours = best(|| sluice_run(&window_plan));
    let python = common::venv_python();
    let script = repo().join("benches/duckdb_window.py");
    let duck = Command::new(&python)
        .arg(&script)
        .arg(&path)
        .arg(RUNS.to_string())
        .output()
        .unwrap();
    assert!(duck.status.success(), "{}", String::from_utf8_lossy(&duck.stderr));
    let duck_secs: f64 = String::from_utf8_lossy(&duck.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let duck = Duration::from_secs_f64(duck_secs);
    writeln!(
        table,
        "| 1-minute × region window query: M events/s vs DuckDB SQL | {:.2} | {:.2} | {:.2} (≥ 0.25) |",
        mevents(ours),
        mevents(duck),
        duck.as_secs_f64() / ours.as_secs_f64()
    )
    .unwrap();

    // 3. Peak memory, whole log and a tenth, for sluice and DuckDB.
    let spec_dir = tempfile::tempdir().unwrap();
    let mut peaks = Vec::new();
    for file in [&tenth, &path] {
        let spec = spec_dir.path().join("window.toml");
        std::fs::write(
            &spec,
            format!(
                "[pipeline]\nname = \"bench\"\n[sources.events]\npath = \"{}\"\ntime_field = \"event_time\"\ntype_field = \"event_type\"\nallowed_lateness = \"2m\"\n{WINDOW_QUERY}",
                file.display()
            ),
        )
        .unwrap();
        let ours = peak_kib(
            Path::new(env!("CARGO_BIN_EXE_sluice")),
            &["run", spec.to_str().unwrap(), "--workers", "2", "--quiet"],
        );
        let theirs = peak_kib(&python, &[script.to_str().unwrap(), file.to_str().unwrap(), "1"]);
        peaks.push((ours, theirs));
    }
    for ((ours, theirs), n) in peaks.iter().zip([events / 10, events]) {
        writeln!(
            table,
            "| peak memory of the window query, {n} events: MiB vs DuckDB | {:.0} | {:.0} | {:.2} |",
            *ours as f64 / 1024.0,
            *theirs as f64 / 1024.0,
            *ours as f64 / *theirs as f64
        )
        .unwrap();
    }

    println!("\n{events} events, {THREADS} workers/threads, best of {RUNS}:\n\n{table}");
    std::fs::write(repo().join("bench-data/results.md"), &table).unwrap();
}
