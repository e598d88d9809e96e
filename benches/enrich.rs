//! Enrichment benchmark, side by side with DuckDB in one run. Run with
//! `cargo bench --bench enrich` (`SLUICE_BENCH_EVENTS` sets the log size, default 10M;
//! `SLUICE_BENCH_RUNS` the runs per timing, default 3).
//!
//! On an `uploads` log with 1M users and 100K geo ranges (made with `sluice generate uploads`
//! into `bench-data/` on first use):
//! 1. a spec that enriches the uploads with `profiles` (as-of, equality on `user_id`) and `geo`
//!    (as-of, `ip_range` on `uploader_ip`), with no rules and the `enriched` output off
//!    (`output = ""`: nothing is written or sent to the sink worker, only the run summary's
//!    counters), timed with `sluice run` on 1 and 2 workers, ÷ DuckDB
//!    (`benches/duckdb_enrich.py`, DuckDB from `tests/setup-python.sh`) on 1 and 2 threads doing
//!    the same from Parquet: an `ASOF JOIN` on profiles and an `ASOF JOIN` on the address then
//!    `ip <= last` on geo, counting rows and hits. DuckDB gets the addresses as numbers: they are
//!    parsed in Python (its inet extension needs the network) into a prepared Parquet file
//!    *outside* the timed part, while sluice parses every address as it joins. DuckDB does not
//!    recompute lateness (about 0.1% of the rows are late and sluice drops them); its geo join
//!    ignores the ranges' `updated_at`, which is one day before the log.
//! 2. deduplication state: peak RSS of a 1-worker run with a dedup rule on every event type
//!    (`upload_id`, a TTL longer than the log, so every key stays live) minus the same run
//!    without the rule, ÷ the number of distinct keys. Both specs carry one aggregate that reads
//!    `upload_id`, so that the key column is decoded in both.
//!
//! Timings are the best of the runs, peak memory the largest max RSS (GNU time). Results print as
//! a Markdown table and are written to `bench-data/enrich-results.md`.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const USERS: usize = 1_000_000;
const RANGES: usize = 100_000;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn check(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The uploads log and its context folder, generated on first use.
fn data(events: usize) -> (PathBuf, PathBuf) {
    let dir = repo().join("bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join(format!("uploads-{events}.parquet"));
    let context = dir.join(format!("uploads-{events}-context"));
    if !log.exists() || !context.join("profiles.parquet").exists() || !context.join("geo.parquet").exists() {
        eprintln!("generating {} ...", log.display());
        let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["generate", "uploads", "--seed", "1", "--quiet"])
            .args(["--events", &events.to_string()])
            .args(["--users", &USERS.to_string()])
            .args(["--ranges", &RANGES.to_string()])
            .arg("--out")
            .arg(&log)
            .arg("--context")
            .arg(&context)
            .output()
            .unwrap();
        check(&out, "sluice generate");
    }
    (log, context)
}

/// Runs `program args` under GNU time: wall time, max RSS in KiB, and stdout.
fn measured(program: &Path, args: &[&str]) -> (Duration, u64, String) {
    let started = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(program)
        .args(args)
        .output()
        .expect("/usr/bin/time");
    let wall = started.elapsed();
    check(&out, &format!("{} {}", program.display(), args.join(" ")));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let kib = stderr.lines().last().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
    (wall, kib, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Best wall time and largest max RSS over `runs` runs, and the last run's stdout.
fn best_of(runs: usize, program: &Path, args: &[&str]) -> (Duration, u64, String) {
    let mut results: Vec<_> = (0..runs).map(|_| measured(program, args)).collect();
    let peak = results.iter().map(|r| r.1).max().unwrap_or(0);
    let fastest = results.iter().map(|r| r.0).min().unwrap_or_default();
    let (_, _, stdout) = results.pop().expect("at least one run");
    (fastest, peak, stdout)
}

fn source(name: &str, path: &Path, time_field: &str, extra: &str) -> String {
    format!(
        "[sources.{name}]\npath = \"{}\"\ntime_field = \"{time_field}\"\n{extra}",
        path.display()
    )
}

fn enrich_spec(log: &Path, context: &Path) -> String {
    let uploads = source(
        "uploads",
        log,
        "event_time",
        "type_field = \"event_type\"\nallowed_lateness = \"1m\"\n",
    );
    let geo = source("geo", &context.join("geo.parquet"), "updated_at", "");
    let profiles = source(
        "profiles",
        &context.join("profiles.parquet"),
        "updated_at",
        "allowed_lateness = \"1m\"\n",
    );
    format!(
        r#"[pipeline]
name = "enrich_bench"
tick = "1s"
{uploads}{geo}{profiles}
[enrich.uploads]
output = ""

[[enrich.uploads.join]]
context = "geo"
as = "geo"
match = "ip_range"
on = {{ uploader_ip = "cidr" }}
fields = ["country", "city", "latitude", "longitude"]

[[enrich.uploads.join]]
context = "profiles"
as = "profile"
on = {{ user_id = "user_id" }}
fields = ["subscription", "language"]
"#
    )
}

fn dedup_spec(log: &Path, dedup: bool) -> String {
    let uploads = source(
        "uploads",
        log,
        "event_time",
        "type_field = \"event_type\"\nallowed_lateness = \"1m\"\n",
    );
    let mut spec = format!("[pipeline]\nname = \"dedup_bench\"\n{uploads}");
    if dedup {
        for kind in ["upload_started", "upload_completed", "upload_failed"] {
            write!(spec, "[dedup.uploads.{kind}]\nkey = [\"upload_id\"]\nttl = \"30d\"\n").unwrap();
        }
    }
    spec.push_str(
        "[[aggregates]]\nname = \"ids\"\nsource = \"uploads\"\nwhere = \"upload_id is not null\"\nwindow = { tumbling = \"30d\" }\nemit = \"final\"\nmeasures.n = \"count()\"\n",
    );
    spec
}

/// `(hits, lookups)` of join `alias` from a run summary's `context ALIAS: hit ratio ...` line.
fn hits(summary: &str, alias: &str) -> (u64, u64) {
    let prefix = format!("context {alias}: hit ratio");
    let Some(line) = summary.lines().map(str::trim).find(|l| l.starts_with(&prefix)) else {
        return (0, 0);
    };
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .filter_map(|w| w.parse().ok())
        .collect();
    // `hit ratio R (H hits, M misses, S stale)`: R is not an integer.
    match numbers[..] {
        [h, m, ..] => (h, h + m),
        _ => (0, 0),
    }
}

fn main() {
    let events = env_or("SLUICE_BENCH_EVENTS", 10_000_000);
    let runs = env_or("SLUICE_BENCH_RUNS", 3);
    let (log, context) = data(events);
    let python = common::venv_python();
    let script = repo().join("benches/duckdb_enrich.py");
    let script = script.to_str().unwrap();
    let specs = tempfile::tempdir().unwrap();
    // A private copy of the binary: the shared target folder may be rebuilt during the run.
    let sluice = specs.path().join("sluice");
    std::fs::copy(env!("CARGO_BIN_EXE_sluice"), &sluice).unwrap();

    // DuckDB's inputs with numeric addresses, prepared once and outside every timing.
    let prepared = repo().join(format!("bench-data/uploads-{events}-duckdb"));
    if !prepared.join("geo_ip.parquet").exists() {
        eprintln!("preparing {} ...", prepared.display());
        let out = Command::new(&python)
            .args([script, "prepare"])
            .arg(&log)
            .arg(context.join("geo.parquet"))
            .arg(&prepared)
            .output()
            .unwrap();
        check(&out, "duckdb_enrich.py prepare");
    }

    let write = |name: &str, text: String| {
        let path = specs.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let enrich = write("enrich.toml", enrich_spec(&log, &context));
    let profiles = context.join("profiles.parquet");
    let per_core = |d: Duration, cores: usize| events as f64 / d.as_secs_f64() / cores as f64;
    let mut table = String::from("| measurement | sluice | DuckDB | ratio (goal) |\n|---|---|---|---|\n");
    let mut notes = String::new();
    let mut memory = Vec::new();
    for cores in [1usize, 2] {
        eprintln!("enrichment, {cores} worker(s) / thread(s) ...");
        let n = cores.to_string();
        let (ours, our_kib, summary) = best_of(runs, &sluice, &["run", &enrich, "--workers", &n, "--quiet"]);
        let (_, duck_kib, duck) = measured(
            &python,
            &[
                script,
                "run",
                prepared.to_str().unwrap(),
                profiles.to_str().unwrap(),
                &n,
                &runs.to_string(),
            ],
        );
        let fields: Vec<&str> = duck.split_whitespace().collect();
        let theirs = Duration::from_secs_f64(fields[0].parse().unwrap());
        writeln!(
            table,
            "| enrich with profiles (as-of) + geo (IP range), events/s per core, {cores} worker(s) vs {cores} thread(s) | {:.0} | {:.0} | **{:.3}** (≥ 0.5) |",
            per_core(ours, cores),
            per_core(theirs, cores),
            theirs.as_secs_f64() / ours.as_secs_f64()
        )
        .unwrap();
        memory.push((cores, our_kib, duck_kib));
        if cores == 1 {
            let (geo, lookups) = hits(&summary, "geo");
            let (profile, _) = hits(&summary, "profile");
            writeln!(
                notes,
                "- hits: sluice geo {geo} and profile {profile} of {lookups} on-time events; DuckDB geo {} and profile {} of {} rows (late rows included)",
                fields[3], fields[2], fields[1]
            )
            .unwrap();
        }
    }
    for (cores, ours, theirs) in memory {
        writeln!(
            table,
            "| peak memory of that run, {cores} worker(s) / thread(s): MiB | {:.0} | {:.0} | {:.2} |",
            ours as f64 / 1024.0,
            theirs as f64 / 1024.0,
            ours as f64 / theirs as f64
        )
        .unwrap();
    }

    // Dedup state per live key.
    eprintln!("dedup state ...");
    let keys: u64 = {
        let out = Command::new(&python).args([script, "keys"]).arg(&log).output().unwrap();
        check(&out, "duckdb_enrich.py keys");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    let with = write("dedup.toml", dedup_spec(&log, true));
    let without = write("no_dedup.toml", dedup_spec(&log, false));
    let (_, with_kib, _) = best_of(runs, &sluice, &["run", &with, "--workers", "1", "--quiet"]);
    let (_, without_kib, _) = best_of(runs, &sluice, &["run", &without, "--workers", "1", "--quiet"]);
    let per_key = (with_kib as f64 - without_kib as f64) * 1024.0 / keys as f64;
    writeln!(
        table,
        "| dedup state, bytes per live key ({keys} keys, 1 worker: {:.0} MiB with the rule, {:.0} MiB without) | {per_key:.0} | | |",
        with_kib as f64 / 1024.0,
        without_kib as f64 / 1024.0
    )
    .unwrap();

    println!("\n{events} uploads, {USERS} users, {RANGES} geo ranges, best of {runs}:\n\n{table}\n{notes}");
    std::fs::write(repo().join("bench-data/enrich-results.md"), format!("{table}\n{notes}")).unwrap();
}
