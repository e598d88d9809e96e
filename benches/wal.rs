//! Write-ahead log size over a day of event time: a pipeline with every stateful stage (schema
//! inference, deduplication, an as-of join and a continuous join, fed by three tcp sources) is
//! served with checkpoints while 24 hours of `learning` events and two context streams made
//! from them are sent at a steady rate. Run with `cargo bench --bench wal` (set
//! `SLUICE_BENCH_WAL_EVENTS` for the generated log, default 1,000,000 events, of which the first
//! 24 hours of event time are sent, and `SLUICE_BENCH_WAL_RATE` for the events' rate, default
//! 3,500 lines/s: below what the server sustains on 2 busy cores, so that the three streams stay
//! together in event time).
//!
//! It compares the log's size on disk, sampled every 100 ms, with the bytes sent: before state
//! snapshots, a source feeding any of these stages kept every record until the server stopped,
//! so the log grew to the whole stream. The spec's windows are 15 minutes, and behind the
//! continuous join they take revisions for 15 more, so a checkpoint keeps about 30 minutes of
//! event time plus the allowed lateness (2 minutes) and the snapshots' spacing (a quarter of
//! that): the log stays at a few percent of a day. The state snapshots' size is reported too.
//! The day is sent in a few minutes, so checkpoints come every 250 ms (about two minutes of
//! event time, as `--checkpoint-interval 10s` is ten seconds of it in real time), and the
//! context streams have their rows spread evenly over the day, so that sent at steady rates
//! they keep pace with the events: a join's frontier is its slowest input's, and a stream that
//! runs ahead keeps its records from where it passed the snapshot's frontier.
//!
//! Results print as a Markdown table and are written to `bench-data/wal-results.md`.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../tests/integration/stream_contexts.rs"]
mod stream_contexts;
use stream_contexts::{contexts, Items};

const SPEC: &str = r#"
[pipeline]
name = "wal_bench"
tick = "1s"

[sources.events]
format = "tcp"
time_field = "event_time"
type_field = "event_type"
allowed_lateness = "2m"

[sources.profiles]
format = "tcp"
time_field = "updated_at"
allowed_lateness = "2m"

[sources.items]
format = "tcp"
time_field = "updated_at"
allowed_lateness = "2m"

[schemas.events]
window = "10m"

[dedup.events.attempt]
key = ["client_attempt_id"]
ttl = "1h"

[enrich.events]
output = ""

[[enrich.events.join]]
context = "items"
as = "item"
on = { item_id = "item_id" }
fields = ["level"]
types = ["attempt"]

# A continuous join keeps every event it enriched (a change revises them): placements only.
[[enrich.events.join]]
context = "profiles"
as = "profile"
on = { user_id = "user_id" }
fields = ["tier"]
mode = "continuous"
types = ["placement"]

[[aggregates]]
name = "level_15m"
source = "events"
where = "event_type == 'attempt'"
window = { tumbling = "15m" }
group_by = ["item.level"]
measures.attempts = "count()"
measures.accuracy = "avg(correct)"

[[aggregates]]
name = "tier_15m"
source = "events"
where = "event_type == 'placement'"
window = { tumbling = "15m" }
group_by = ["profile.tier"]
measures.placements = "count()"
"#;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sluice"))
}

fn env(name: &str, default: f64) -> f64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The generated log (made on first use), cut to its first 24 hours of event time.
fn day_of_events(n: usize, dir: &Path) -> (PathBuf, f64) {
    let data = repo().join("bench-data");
    std::fs::create_dir_all(&data).unwrap();
    let path = data.join(format!("learning-{n}.ndjson"));
    if !path.exists() {
        eprintln!("generating {} ...", path.display());
        let status = Command::new(bin())
            .args([
                "generate",
                "learning",
                "--events",
                &n.to_string(),
                "--seed",
                "1",
                "--out",
            ])
            .arg(&path)
            .arg("-q")
            .status()
            .unwrap();
        assert!(status.success());
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let time = |line: &str| -> i64 {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let t = v["event_time"].as_str().unwrap();
        chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp_millis()
    };
    let first = time(text.lines().next().unwrap());
    let mut out = String::new();
    let mut last = first;
    for line in text.lines() {
        let t = time(line);
        if t >= first + 86_400_000 {
            break;
        }
        last = last.max(t);
        out.push_str(line);
        out.push('\n');
    }
    let day = dir.join("events.ndjson");
    std::fs::write(&day, out).unwrap();
    (day, (last - first) as f64 / 3_600_000.0)
}

/// `GET /status` of the server's `--http` address: its JSON.
fn status(http: &str) -> Option<serde_json::Value> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(http).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /status HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text[text.find('{')?..text.rfind('}')? + 1]).ok()
}

/// How far the checkpoint's state snapshot is behind its outputs' cut, in minutes of event
/// time.
fn snapshot_lag_minutes(wal: &Path) -> Option<f64> {
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(wal.join("checkpoint.json")).ok()?).ok()?;
    let f = m["state"]["frontier"].as_u64()?;
    let cut = m["outputs"]
        .as_object()?
        .values()
        .filter_map(|o| o["cut"].as_u64())
        .min()?;
    Some(cut.saturating_sub(f) as f64 / 60_000.0)
}

/// Bytes of the files in `dir` (recursively) whose name passes `keep`, and how many.
fn size(dir: &Path, keep: &dyn Fn(&str) -> bool) -> (u64, u64) {
    let mut total = (0, 0);
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            let (b, n) = size(&path, keep);
            total = (total.0 + b, total.1 + n);
        } else if keep(&entry.file_name().to_string_lossy()) {
            total = (total.0 + entry.metadata().map_or(0, |m| m.len()), total.1 + 1);
        }
    }
    total
}

fn main() {
    let n = env("SLUICE_BENCH_WAL_EVENTS", 1_000_000.0) as usize;
    let rate = env("SLUICE_BENCH_WAL_RATE", 3_500.0);
    let dir = tempfile::tempdir().unwrap();
    let (events, hours) = day_of_events(n, dir.path());
    let (profiles, items) = contexts(dir.path(), &events, Items::Every(40));
    let spec = dir.path().join("wal_bench.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let lines = |p: &Path| std::fs::read_to_string(p).unwrap().lines().count();
    let bytes = |p: &Path| std::fs::metadata(p).unwrap().len();
    let sent_bytes = bytes(&events) + bytes(&profiles) + bytes(&items);
    let n_events = lines(&events);
    eprintln!("{n_events} events over {hours:.1} h of event time, {sent_bytes} bytes to send");

    let mut server: Child = Command::new(bin())
        .arg("serve")
        .arg(&spec)
        .args(["--listen", "127.0.0.1:0", "--workers", "2", "--idle-timeout", "off"])
        .args(["--http", "127.0.0.1:0"])
        .args(["--wal", "wal", "--out", "out", "--checkpoint-interval", "250ms"])
        .args(["--wal-segment-bytes", &(8u64 << 20).to_string()])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let addr = first.trim().strip_prefix("listening on ").unwrap().to_string();
    let mut second = String::new();
    stdout.read_line(&mut second).unwrap();
    let http = second.trim().strip_prefix("http on ").unwrap().to_string();
    let summary = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut rest);
        rest
    });

    // The three streams advance through event time together.
    let secs = n_events as f64 / rate;
    let started = Instant::now();
    let mut senders: Vec<Child> = [(&events, "events"), (&profiles, "profiles"), (&items, "items")]
        .into_iter()
        .map(|(file, source)| {
            let r = format!("{:.0}", (lines(file) as f64 / secs).max(1.0));
            Command::new(bin())
                .arg("send")
                .arg(file)
                .args(["--to", &addr, "--source", source, "--client", source, "--rate", &r])
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let (wal, state) = (dir.path().join("wal"), dir.path().join("out/.sluice-state"));
    let mut samples: Vec<(f64, u64, u64, u64)> = Vec::new();
    let (mut queued, mut lag): (u64, f64) = (0, 0.0);
    while senders.iter_mut().any(|s| s.try_wait().unwrap().is_none()) {
        let (log, segments) = size(&wal, &|f| f.ends_with(".wal"));
        let (snap, _) = size(&state, &|f| f.ends_with(".state"));
        samples.push((started.elapsed().as_secs_f64(), log, segments, snap));
        if let Some(s) = status(&http) {
            queued = queued.max(s["queues"]["queued_bytes"].as_u64().unwrap_or(0));
        }
        lag = lag.max(snapshot_lag_minutes(&wal).unwrap_or(0.0));
        std::thread::sleep(Duration::from_millis(100));
    }
    let elapsed = started.elapsed().as_secs_f64();
    for s in &mut senders {
        assert!(s.wait().unwrap().success(), "a sender failed");
    }
    Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(server.wait().unwrap().success());
    let summary = summary.join().unwrap();
    let checkpoints = summary
        .split("checkpoints ")
        .nth(1)
        .and_then(|s| s.split(" segments removed").next())
        .unwrap_or("?")
        .to_string();

    let peak = |f: fn(&(f64, u64, u64, u64)) -> u64| samples.iter().map(f).max().unwrap_or(0);
    let (peak_log, peak_segments, peak_state) = (peak(|s| s.1), peak(|s| s.2), peak(|s| s.3));
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let mut table = String::new();
    let mut row = |what: String, value: String| writeln!(table, "| {what} | {value} |").unwrap();
    row(
        format!("measurement ({n_events} events, {hours:.1} h of event time, 3 tcp sources, 2 workers)"),
        "value".into(),
    );
    row("---".into(), "---".into());
    row(
        "bytes sent (events, profiles, items), MiB".into(),
        format!("{:.1}", mib(sent_bytes)),
    );
    row(
        "sent in, s (events rate, lines/s)".into(),
        format!("{elapsed:.0} ({:.0})", n_events as f64 / elapsed),
    );
    row(
        "peak log on disk, MiB (8 MiB segments)".into(),
        format!("{:.1} ({peak_segments} segments)", mib(peak_log)),
    );
    row(
        "**peak log ÷ bytes sent**".into(),
        format!("**{:.3}**", peak_log as f64 / sent_bytes as f64),
    );
    for q in 1..=4 {
        let (from, to) = (elapsed * (q - 1) as f64 / 4.0, elapsed * q as f64 / 4.0);
        let max = samples
            .iter()
            .filter(|s| s.0 >= from && s.0 < to)
            .map(|s| s.1)
            .max()
            .unwrap_or(0);
        row(
            format!("peak log in quarter {q} of the run, MiB"),
            format!("{:.1}", mib(max)),
        );
    }
    row(
        "of which at most: lines acknowledged and queued, not yet processed (64 MiB budget), MiB".into(),
        format!("{:.1}", mib(queued)),
    );
    row(
        "largest distance from the checkpoint's state snapshot to its cut, minutes of event time".into(),
        format!("{lag:.0}"),
    );
    row(
        "peak state snapshots on disk, MiB".into(),
        format!("{:.1}", mib(peak_state)),
    );
    row("checkpoints (segments removed)".into(), checkpoints.trim().to_string());
    println!("{table}");
    std::fs::write(repo().join("bench-data/wal-results.md"), &table).unwrap();
}
