//! Service-model throughput on one core. Run with `cargo bench --bench services`
//! (`SLUICE_BENCH_SERVICES_EVENTS`, default 500,000 rows; `SLUICE_BENCH_RUNS`, default 3).
//!
//! The log is `sluice generate services` with **50 services** and an **order-2** hidden chain
//! (rows of every kind: pipe creations, calls, completions, errors). Two figures, each the best
//! of the runs, per core: rows ÷ the process's CPU seconds (user + system, from `/proc`, so a
//! shared machine does not count against sluice; wall clock printed beside it):
//! 1. **the stage**: `sluice run` (in process, 1 worker, no `--out`) of the shipped spec
//!    (order 2, Kneser–Ney with re-selection, resonance, pipes with an adaptive threshold): the
//!    log's decoding, the stage and its seven collections, without the Parquet writers. Goal
//!    ≥ 500,000 interactions/s per core;
//! 2. **the job users run**: `dataflows/predictive_pipes.toml` end to end with its outputs
//!    written, 1 worker.
//!
//! Results print as a Markdown table and go to `bench-data/services-results.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sluice::generate::{generate_with, GenerateConfig};
use sluice::plan::plan_str;
use sluice::run::{run, RunConfig};

/// The allocator the `sluice` binary uses, so the runs measured in process are the runs users
/// make.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// CPU seconds of this process (user + system, clock ticks of 1/100 s), if `/proc` says.
fn process_cpu() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// The best `(cpu, wall)` seconds of the runs of spec `text` over `log`.
fn best(text: &str, log: &Path, out: Option<&Path>) -> (f64, f64, usize) {
    let plan = plan_str(
        text,
        Path::new("services_bench.toml"),
        &repo().join("dataflows"),
        &[("interactions".into(), log.to_path_buf())],
    )
    .unwrap();
    let mut best = (f64::MAX, f64::MAX, 0);
    for _ in 0..env("SLUICE_BENCH_RUNS", 3) {
        let config = RunConfig {
            workers: 1,
            out_dir: out.map(Path::to_path_buf),
            ..RunConfig::default()
        };
        let (cpu0, wall0) = (process_cpu(), Instant::now());
        let summary = run(&plan, &config).unwrap();
        let wall = wall0.elapsed().as_secs_f64();
        let cpu = match (cpu0, process_cpu()) {
            (Some(a), Some(b)) => b - a,
            _ => wall,
        };
        if cpu < best.0 {
            best = (cpu, wall, summary.events_read as usize);
        }
    }
    best
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn main() {
    sluice::run::tune_allocator();
    let n = env("SLUICE_BENCH_SERVICES_EVENTS", 500_000);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("interactions.parquet");
    let config = GenerateConfig {
        services: Some(50),
        order: Some(2),
        ..GenerateConfig::new("services", n, 42, &log)
    };
    generate_with(&config).unwrap();
    let shipped = std::fs::read_to_string(repo().join("dataflows/predictive_pipes.toml")).unwrap();
    let (s_cpu, s_wall, rows) = best(&shipped, &log, None);
    let out = dir.path().join("out");
    let (j_cpu, j_wall, _) = best(&shipped, &log, Some(&out));
    let mut table = String::new();
    writeln!(
        table,
        "| measurement ({rows} rows, 50 services, order 2, 1 worker) | rows/s per core (CPU) | wall s | goal |"
    )
    .unwrap();
    writeln!(table, "|---|---|---|---|").unwrap();
    writeln!(
        table,
        "| the `[[services]]` stage: `predictive_pipes.toml` without writing outputs | {:.0} | {s_wall:.2} | ≥ 500,000 ({:.3} of it) |",
        rows as f64 / s_cpu,
        rows as f64 / s_cpu / 500_000.0
    )
    .unwrap();
    writeln!(
        table,
        "| `predictive_pipes.toml` end to end, outputs written | {:.0} | {j_wall:.2} | |",
        rows as f64 / j_cpu
    )
    .unwrap();
    print!("{table}");
    let results = repo().join("bench-data");
    std::fs::create_dir_all(&results).unwrap();
    std::fs::write(results.join("services-results.md"), table).unwrap();
}
