//! The Nexmark suite's throughput. Run with `cargo bench --bench nexmark`
//! (`SLUICE_BENCH_NEXMARK_EVENTS`, default 10,000,000; `SLUICE_BENCH_RUNS`, default 2;
//! `SLUICE_BENCH_NEXMARK_QUERIES`, default every `dataflows/nexmark/qN.toml`, e.g. `q0,q5`).
//!
//! `sluice generate nexmark` writes the events once to `bench-data/nexmark-N/` (kept for later
//! runs). Each query's spec then runs in process, end to end with its outputs written, with 1
//! and 2 workers; each figure is the best of the runs. Per query:
//! - **events/s per core**: the events the spec reads (its sources' rows) ÷ the process's CPU
//!   seconds (user + system, from `/proc`, so a shared machine does not count against sluice);
//! - **wall** seconds, beside DuckDB's wall seconds for the query's SQL (`qN.sql`) on the same
//!   files with the same number of threads, its result written to Parquet
//!   (`benches/nexmark_duckdb.py`), and their ratio;
//! - for q5, Feldera's published rate per core (412K events/s), and sluice's per-core rate as a
//!   share of it. (Feldera's figures count the whole stream; sluice's count the events its
//!   spec reads: bids only, for q5, which are 46 of every 50.)
//!
//! Results print as a Markdown table and go to `bench-data/nexmark-results.md`.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
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

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// CPU seconds of this process (user + system, clock ticks of 1/100 s), if `/proc` says.
fn process_cpu() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Feldera's published per-core rates (events/s), where the issue names one.
fn feldera(query: &str) -> Option<f64> {
    match query {
        "q5" => Some(412_000.0),
        "q7" => Some(196_000.0),
        "q8" => Some(415_000.0),
        _ => None,
    }
}

struct Measured {
    cpu: f64,
    wall: f64,
    events: u64,
}

/// The best run (by CPU) of `spec` over the files in `data`, outputs written to `out`.
fn sluice_best(spec: &Path, data: &Path, workers: usize, out: &Path) -> Measured {
    let text = std::fs::read_to_string(spec).unwrap();
    let inputs: Vec<(String, PathBuf)> = ["person", "auction", "bid", "side_input"]
        .iter()
        .filter(|t| text.contains(&format!("[sources.{t}]")))
        .map(|t| (t.to_string(), data.join(format!("{t}.parquet"))))
        .collect();
    let plan = plan_str(&text, spec, spec.parent().unwrap(), &inputs).unwrap();
    let mut best = Measured {
        cpu: f64::MAX,
        wall: f64::MAX,
        events: 0,
    };
    for _ in 0..env("SLUICE_BENCH_RUNS", 2) {
        let _ = std::fs::remove_dir_all(out);
        let config = RunConfig {
            workers,
            out_dir: Some(out.to_path_buf()),
            ..RunConfig::default()
        };
        let (cpu0, wall0) = (process_cpu(), Instant::now());
        let summary = run(&plan, &config).unwrap();
        let wall = wall0.elapsed().as_secs_f64();
        let cpu = match (cpu0, process_cpu()) {
            (Some(a), Some(b)) => b - a,
            _ => wall * workers as f64,
        };
        if cpu < best.cpu {
            best = Measured {
                cpu,
                wall,
                events: summary.events_read,
            };
        }
    }
    best
}

/// DuckDB's best wall seconds for `sql` with `threads`, or `None` when DuckDB is missing.
fn duckdb_wall(data: &Path, sql: &Path, threads: usize, out: &Path) -> Option<f64> {
    let python = common::try_venv_python().ok()?;
    let run = Command::new(python)
        .arg(repo().join("benches/nexmark_duckdb.py"))
        .arg(data)
        .arg(sql)
        .arg(threads.to_string())
        .arg(env("SLUICE_BENCH_RUNS", 2).to_string())
        .arg(out)
        .output()
        .ok()?;
    if !run.status.success() {
        eprintln!(
            "duckdb failed on {}: {}",
            sql.display(),
            String::from_utf8_lossy(&run.stderr)
        );
        return None;
    }
    String::from_utf8(run.stdout).ok()?.trim().parse().ok()
}

fn main() {
    sluice::run::tune_allocator();
    let n = env("SLUICE_BENCH_NEXMARK_EVENTS", 10_000_000);
    let data = repo().join(format!("bench-data/nexmark-{n}"));
    if !data.join("bid.parquet").exists() {
        eprintln!("generating {n} Nexmark events into {}", data.display());
        generate_with(&GenerateConfig::new("nexmark", n, 1, &data)).unwrap();
    }
    let queries_dir = repo().join("dataflows/nexmark");
    let mut queries: Vec<String> = std::fs::read_dir(&queries_dir)
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            (path.extension()? == "toml").then(|| path.file_stem()?.to_str().map(String::from))?
        })
        .collect();
    queries.sort_by_key(|q| q[1..].parse::<u32>().unwrap_or(u32::MAX));
    if let Ok(only) = std::env::var("SLUICE_BENCH_NEXMARK_QUERIES") {
        let only: Vec<&str> = only.split(',').collect();
        queries.retain(|q| only.contains(&q.as_str()));
    }
    let scratch = tempfile::tempdir().unwrap();
    let mut table = String::new();
    writeln!(
        table,
        "| query ({n} events) | workers | events read | sluice events/s per core | sluice wall s | DuckDB wall s (same threads, result to Parquet) | DuckDB ÷ sluice wall | Feldera events/s per core | sluice ÷ Feldera |"
    )
    .unwrap();
    writeln!(table, "|---|---|---|---|---|---|---|---|---|").unwrap();
    for q in &queries {
        let spec = queries_dir.join(format!("{q}.toml"));
        let sql = queries_dir.join(format!("{q}.sql"));
        for workers in [1, 2] {
            let m = sluice_best(&spec, &data, workers, &scratch.path().join("out"));
            let duck = duckdb_wall(&data, &sql, workers, &scratch.path().join("duck.parquet"));
            let per_core = m.events as f64 / m.cpu;
            let f = feldera(q);
            let line = format!(
                "| {q} | {workers} | {} | {per_core:.0} | {:.2} | {} | {} | {} | {} |",
                m.events,
                m.wall,
                duck.map_or("–".into(), |d| format!("{d:.2}")),
                duck.map_or("–".into(), |d| format!("{:.2}", d / m.wall)),
                f.map_or("".into(), |f| format!("{f:.0}")),
                f.map_or("".into(), |f| format!("{:.2}", per_core / f)),
            );
            eprintln!("{line}");
            writeln!(table, "{line}").unwrap();
        }
    }
    print!("{table}");
    let results = repo().join("bench-data");
    std::fs::create_dir_all(&results).unwrap();
    std::fs::write(results.join("nexmark-results.md"), table).unwrap();
}
