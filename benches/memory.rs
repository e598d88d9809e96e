//! Memory against the length of the log: does the default spec's state grow with the events, or
//! only with what the goal allows it (open windows, dedup TTLs, context keys)? Run with
//! `cargo bench --bench memory` (`SLUICE_BENCH_MEMORY_EVENTS`, default 10,000,000).
//!
//! `cargo bench --bench pipeline` measures peak RSS on a 1M-event and a 10M-event log, each
//! generated on its own. Between the two, three things grow, and only one is the events:
//! - **context keys**: the 10M log has about seven times as many users, and the `profiles` join
//!   holds one row per user;
//! - **dedup TTLs**: `placement` keys are kept 7 days, and the 1M log spans one;
//! - whatever else grows with the events, which the goal does not allow.
//!
//! So this bench holds the first two fixed and measures the third. From the 10M log (the same
//! files as the pipeline bench's, in `bench-data/pipeline-N/`), `benches/memory_control.py`
//! writes its first N/10 events (one simulated day at the default N), and context tables with every key's latest
//! row timed before the first event, so a join holds every key from the start. sluice then runs
//! the default spec, outputs written, on the prefix and on the whole log, with the same context,
//! with 1 and 2 workers, and with the spec's TTLs and with every TTL capped at one day (so that
//! the prefix reaches each TTL's bound too); and, with 2 workers, once more with freed memory
//! handed back to the kernel at once (`MIMALLOC_PURGE_DELAY=0`). Each run is a child process
//! under GNU time (peak RSS); its RSS is also sampled twice a second, and the table shows the
//! highest sample in each tenth of the run: the curve that says whether memory stops growing.
//!
//! Results print as a Markdown table and go to `bench-data/memory-results.md`.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sluice::plan::duration::parse_duration;

const DAY_MS: u64 = 86_400_000;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The duration of a spec line `ttl = "…"`, in milliseconds, with its text.
fn ttl_of(line: &str) -> Option<(u64, &str)> {
    let ttl = line.trim_start().strip_prefix("ttl = \"")?.split('"').next()?;
    Some((parse_duration(ttl).ok()?, ttl))
}

/// `text` with every `ttl = "…"` longer than a day set to one day.
fn ttls_capped(text: &str) -> String {
    text.lines()
        .map(|line| match ttl_of(line) {
            Some((ms, _)) if ms > DAY_MS => "ttl = \"1d\"".to_string(),
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The distinct `ttl = "…"` values of `text`, longest first, e.g. `7d, 24h, 12h`.
fn ttls(text: &str) -> String {
    let mut ttls: Vec<(u64, &str)> = text.lines().filter_map(ttl_of).collect();
    ttls.sort_by(|a, b| b.cmp(a));
    ttls.dedup_by_key(|(ms, _)| *ms);
    ttls.iter().map(|(_, ttl)| *ttl).collect::<Vec<_>>().join(", ")
}

/// A run's peak RSS (GNU time), wall seconds, and its RSS samples as (seconds, MiB).
struct Run {
    peak_mib: f64,
    wall: f64,
    samples: Vec<(f64, f64)>,
}

/// `VmRSS` of `pid` in MiB, if it is still running.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Runs `program args` with `envs` under GNU time, sampling the RSS of the program (GNU time's
/// child).
fn run(program: &Path, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let started = Instant::now();
    let mut child = Command::new("/usr/bin/time")
        .args(["-f", "%e %M"])
        .arg(program)
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("GNU time at /usr/bin/time");
    let children = format!("/proc/{0}/task/{0}/children", child.id());
    let mut samples = Vec::new();
    let mut program_pid = None;
    while child.try_wait().unwrap().is_none() {
        if program_pid.is_none() {
            program_pid = std::fs::read_to_string(&children)
                .ok()
                .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse::<u32>().ok()));
        }
        if let Some(rss) = program_pid.and_then(rss_mib) {
            samples.push((started.elapsed().as_secs_f64(), rss));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = child.wait_with_output().unwrap();
    let f = common::gnu_time_fields(program, &out, 2);
    Run {
        wall: f[0],
        peak_mib: f[1] / 1024.0,
        samples,
    }
}

/// The highest sample in each tenth of the run, in MiB.
fn tenths(run: &Run) -> String {
    let mut max = [0.0f64; 10];
    for &(t, mib) in &run.samples {
        let i = ((t / run.wall * 10.0) as usize).min(9);
        max[i] = max[i].max(mib);
    }
    max.iter().map(|m| format!("{m:.0}")).collect::<Vec<_>>().join(" ")
}

fn main() {
    let n: usize = std::env::var("SLUICE_BENCH_MEMORY_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let sluice = PathBuf::from(env!("CARGO_BIN_EXE_sluice"));
    let dir = common::learning_log(n);
    let control = dir.join("memory-control");
    // The script writes the items table last.
    if !control.join("items.parquet").exists() {
        let ctx = dir.join("ctx");
        let status = Command::new(common::venv_python())
            .arg(repo().join("benches/memory_control.py"))
            .arg(dir.join("events.parquet"))
            .args(["event_time", &(n / 10).to_string()])
            .arg(&control)
            .arg(format!("{}:user_id:updated_at", ctx.join("profiles.parquet").display()))
            .arg(format!("{}:item_id:updated_at", ctx.join("items.parquet").display()))
            .status()
            .unwrap();
        assert!(status.success(), "benches/memory_control.py failed");
    }
    let shipped = repo().join("dataflows/learning_analytics.toml");
    let text = std::fs::read_to_string(&shipped).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    // Every source is given by `--input`, so the spec's own paths are not read.
    let capped = scratch.path().join("learning_analytics_ttl_1d.toml");
    std::fs::write(&capped, ttls_capped(&text)).unwrap();
    let out = scratch.path().join("out");
    let spec_ttls = format!("the spec's ({})", ttls(&text));
    let capped_ttls = format!("capped at 1d ({})", ttls(&ttls_capped(&text)));
    // (workers, TTLs, spec, `MIMALLOC_PURGE_DELAY` if not the binary's own 1 s): the last run
    // hands freed memory back to the kernel at once, so that its RSS is the live heap and its
    // fragments, not memory freed in the last second.
    let runs = [
        ("1", &spec_ttls, &shipped, None),
        ("1", &capped_ttls, &capped, None),
        ("2", &spec_ttls, &shipped, None),
        ("2", &capped_ttls, &capped, None),
        ("2", &capped_ttls, &capped, Some("0")),
    ];
    let mut table = String::from(
        "| workers | TTLs | freed memory handed back | peak MiB, first 10% of the events | peak MiB, all the events | all ÷ first 10% | RSS MiB by tenth of the whole run |\n|---|---|---|---|---|---|---|\n",
    );
    for (workers, ttls, spec, purge_delay) in runs {
        let purge = match purge_delay {
            None => "after 1 s (sluice's setting)".to_string(),
            Some(ms) => format!("after {ms} ms (`MIMALLOC_PURGE_DELAY={ms}`)"),
        };
        let mut peaks = Vec::new();
        for events in [control.join("prefix.parquet"), dir.join("events.parquet")] {
            let _ = std::fs::remove_dir_all(&out);
            let sources = [
                events.as_path(),
                &control.join("profiles.parquet"),
                &control.join("items.parquet"),
            ];
            let args = common::learning_run_args(spec, sources, workers, &out);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let envs: Vec<(&str, &str)> = purge_delay.map(|ms| ("MIMALLOC_PURGE_DELAY", ms)).into_iter().collect();
            let run = run(&sluice, &args, &envs);
            eprintln!(
                "{workers} worker(s), TTLs {ttls}, freed memory {purge}, {}: {:.1} s, peak {:.0} MiB",
                events.display(),
                run.wall,
                run.peak_mib,
            );
            peaks.push(run);
        }
        let (first, all) = (&peaks[0], &peaks[1]);
        writeln!(
            table,
            "| {workers} | {ttls} | {purge} | {:.0} | {:.0} | {:.2} | {} |",
            first.peak_mib,
            all.peak_mib,
            all.peak_mib / first.peak_mib,
            tenths(all)
        )
        .unwrap();
    }
    print!("{table}");
    std::fs::write(repo().join("bench-data/memory-results.md"), table).unwrap();
}
