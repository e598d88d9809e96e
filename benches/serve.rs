//! Serving benchmark: the learning spec (`dataflows/tcp/learning_stream.toml`) fed over TCP on
//! loopback by `sluice send`. Run with `cargo bench --bench serve` (set
//! `SLUICE_BENCH_SERVE_EVENTS` for another size; default 300,000 events).
//!
//! It measures, with the server on 2 workers, the write-ahead log on and one connection:
//! 1. the sustainable rate (lines sent unthrottled, until the server has processed every one:
//!    `sluice send` and then a graceful shutdown that drains the queues) ÷ serde_json's parse rate
//!    of the same bytes into `serde_json::Value` in one thread of this process (goal ≥ 0.2);
//! 2. send → acknowledgement latency p50/p99 with `--rate` at 25%, 50% and 75% of the
//!    sustainable rate (an acknowledgement means the line is fsynced in the log);
//! 3. memory: the idle server's RSS, and the RSS cost of a queued event, from the peak RSS of the
//!    unthrottled run with a 64 MiB and a 8 MiB queue budget (the difference over the
//!    difference in queued events).
//!
//! Results print as a Markdown table and are written to `bench-data/serve-results.md`.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sluice"))
}

fn spec() -> PathBuf {
    repo().join("dataflows/tcp/learning_stream.toml")
}

/// The benchmark events as NDJSON, generated on first use.
fn events(n: usize) -> PathBuf {
    let dir = repo().join("bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("learning-{n}.ndjson"));
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
    path
}

/// Best-of-3 serde_json parse rate of the file's lines, lines per second.
fn serde_rate(path: &Path) -> f64 {
    let bytes = std::fs::read(path).unwrap();
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let mut fields = 0usize;
        for line in &lines {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            fields += v.as_object().map_or(0, |o| o.len());
        }
        std::hint::black_box(fields);
        best = best.min(started.elapsed().as_secs_f64());
    }
    lines.len() as f64 / best
}

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(dir: &Path, queue_bytes: usize) -> Server {
        let mut child = Command::new(bin())
            .arg("serve")
            .arg(spec())
            .args(["--listen", "127.0.0.1:0", "--workers", "2", "--idle-timeout", "off"])
            .args([
                "--wal",
                "wal",
                "--out",
                "out",
                "--queue-bytes",
                &queue_bytes.to_string(),
            ])
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut first)
            .unwrap();
        let addr = first.trim().strip_prefix("listening on ").unwrap().to_string();
        Server { child, addr }
    }
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
    /// SIGTERM and wait: the queues drain and the outputs are written.
    fn stop(mut self) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sluice send --json`, with the report's fields.
fn send(file: &Path, addr: &str, rate: Option<f64>) -> serde_json::Value {
    let mut cmd = Command::new(bin());
    cmd.arg("send").arg(file).args(["--to", addr, "--json"]);
    if let Some(r) = rate {
        cmd.args(["--rate", &format!("{r:.0}")]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Unthrottled: lines per second until processed, and the server's peak RSS (KiB).
fn unthrottled(file: &Path, lines: usize, queue_bytes: usize) -> (f64, u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), queue_bytes);
    std::thread::sleep(Duration::from_millis(300));
    let idle = server.rss_kib();
    let started = Instant::now();
    let peak = std::thread::scope(|s| {
        let sender = s.spawn(|| send(file, &server.addr, None));
        let mut peak = 0;
        while !sender.is_finished() {
            peak = peak.max(server.rss_kib());
            std::thread::sleep(Duration::from_millis(10));
        }
        sender.join().unwrap();
        peak.max(server.rss_kib())
    });
    server.stop();
    (lines as f64 / started.elapsed().as_secs_f64(), idle, peak)
}

fn main() {
    let n: usize = std::env::var("SLUICE_BENCH_SERVE_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let file = events(n);
    let bytes = std::fs::metadata(&file).unwrap().len() as f64;
    let line_bytes = bytes / n as f64;
    let serde = serde_rate(&file);
    eprintln!("serde_json: {serde:.0} lines/s");

    let mut rate: f64 = 0.0;
    let mut idle = u64::MAX;
    let mut peak_64 = u64::MAX;
    for _ in 0..3 {
        let (r, i, p) = unthrottled(&file, n, 64 << 20);
        eprintln!("unthrottled: {r:.0} lines/s, idle {i} KiB, peak {p} KiB");
        rate = rate.max(r);
        idle = idle.min(i);
        peak_64 = peak_64.min(p);
    }
    let (_, _, peak_8) = unthrottled(&file, n, 8 << 20);
    let queued_events = ((64 - 8) << 20) as f64 / line_bytes;
    let per_event = (peak_64 as f64 - peak_8 as f64) * 1024.0 / queued_events;

    let mut latency = Vec::new();
    for share in [0.25, 0.5, 0.75] {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(dir.path(), 64 << 20);
        let report = send(&file, &server.addr, Some(rate * share));
        server.stop();
        let get = |k: &str| report[k].as_f64().unwrap_or(f64::NAN);
        eprintln!("{share}: {report}");
        latency.push((share, get("lines_per_second"), get("ack_ms_p50"), get("ack_ms_p99")));
    }

    let mut table = String::new();
    writeln!(
        table,
        "| measurement ({n} learning events, {line_bytes:.0} B/line, 2 workers, WAL on) | value |"
    )
    .unwrap();
    writeln!(table, "|---|---|").unwrap();
    writeln!(
        table,
        "| serde_json parse into `Value`, one thread, lines/s | {serde:.0} |"
    )
    .unwrap();
    writeln!(
        table,
        "| sustainable rate over TCP (send until processed), lines/s | {rate:.0} |"
    )
    .unwrap();
    writeln!(table, "| **ratio** (goal ≥ 0.2) | **{:.2}** |", rate / serde).unwrap();
    for (share, achieved, p50, p99) in &latency {
        writeln!(
            table,
            "| send → ack latency at {:.0}% ({achieved:.0} lines/s): p50 / p99, ms | {p50:.1} / {p99:.1} |",
            share * 100.0
        )
        .unwrap();
    }
    writeln!(table, "| idle server RSS, MiB | {:.1} |", idle as f64 / 1024.0).unwrap();
    writeln!(
        table,
        "| peak RSS unthrottled, 64 MiB / 8 MiB queue budget, MiB | {:.1} / {:.1} |",
        peak_64 as f64 / 1024.0,
        peak_8 as f64 / 1024.0
    )
    .unwrap();
    writeln!(
        table,
        "| memory per queued event, bytes (line is {line_bytes:.0} B) | {per_event:.0} |"
    )
    .unwrap();
    println!("{table}");
    std::fs::write(repo().join("bench-data/serve-results.md"), &table).unwrap();
}
