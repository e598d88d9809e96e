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
//! - **peak RSS** of each (goal for sluice ≤ 1 GiB at 10M events, and flat from 1M to 10M);
//! - **2 workers ÷ 1 worker** speed-up of sluice's wall time (goal ≥ 1.8 on 2 cores).
//!
//! Results print as a Markdown table and go to `bench-data/pipeline-results.md`.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use sluice::generate::{generate_with, GenerateConfig};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A learning log of `n` events with its context tables, generated once.
fn log(n: usize) -> PathBuf {
    let dir = repo().join(format!("bench-data/pipeline-{n}"));
    if !dir.join("events.parquet").exists() {
        eprintln!("generating {n} learning events into {}", dir.display());
        let mut config = GenerateConfig::new("learning", n, 42, &dir.join("events.parquet"));
        config.context = Some(dir.join("ctx"));
        generate_with(&config).unwrap();
    }
    dir
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
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%e %U %S %M"])
        .arg(program)
        .args(args)
        .output()
        .expect("GNU time at /usr/bin/time");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{} failed: {stderr}", program.display());
    let f: Vec<f64> = stderr
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    assert_eq!(f.len(), 4, "GNU time's line: {stderr}");
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

fn main() {
    let n = env("SLUICE_BENCH_PIPELINE_EVENTS", 10_000_000);
    let python = common::venv_python();
    let script = repo().join("benches/duckdb_pipeline.py");
    let spec = repo().join("dataflows/learning_analytics.toml");
    let sluice = Path::new(env!("CARGO_BIN_EXE_sluice"));
    let scratch = tempfile::tempdir().unwrap();
    let mut table = String::from(
        "| events | workers / threads | sluice wall s | sluice events/s per core (≥ 500K) | sluice peak MiB (≤ 1024) | DuckDB wall s | DuckDB ÷ sluice wall (≥ 0.5) | DuckDB peak MiB | sluice 2 ÷ 1 worker speed-up (≥ 1.8) |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for events in [n / 10, n] {
        let dir = log(events);
        let (input, ctx) = (dir.join("events.parquet"), dir.join("ctx"));
        let mut one_worker_wall = None;
        for workers in [1usize, 2] {
            let out = scratch.path().join("sluice");
            let _ = std::fs::remove_dir_all(&out);
            let w = workers.to_string();
            let inputs = [
                format!("events={}", input.display()),
                format!("profiles={}", ctx.join("profiles.parquet").display()),
                format!("items={}", ctx.join("items.parquet").display()),
            ];
            let ours = measure(
                sluice,
                &[
                    "run",
                    spec.to_str().unwrap(),
                    "--input",
                    &inputs[0],
                    "--input",
                    &inputs[1],
                    "--input",
                    &inputs[2],
                    "--workers",
                    &w,
                    "--out",
                    out.to_str().unwrap(),
                    "--quiet",
                ],
            );
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
        }
    }
    print!("{table}");
    std::fs::write(repo().join("bench-data/pipeline-results.md"), table).unwrap();
}
