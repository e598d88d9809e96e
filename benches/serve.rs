//! Serving benchmark: the learning spec (`dataflows/tcp/learning_stream.toml`) fed over TCP on
//! loopback by `sluice send`. Run with `cargo bench --bench serve` (set
//! `SLUICE_BENCH_SERVE_EVENTS` for another size, default 300,000 events, and
//! `SLUICE_BENCH_SERVE_COLLECTION` for the output that times send → output, default
//! `user_hourly_attempts`; `SLUICE_BENCH_SERVE_ARGS` adds flags to `sluice serve`, e.g.
//! `--checkpoint-interval off`).
//!
//! It measures, with the server on 2 workers, the write-ahead log on and one connection:
//! 1. the sustainable rate (lines sent unthrottled, until the server has processed every one:
//!    `sluice send` and then a graceful shutdown that drains the queues) ÷ serde_json's parse rate
//!    of the same bytes into `serde_json::Value` in one thread of this process (goal ≥ 0.24, issue 16);
//! 2. send → acknowledgement latency p50/p99 with `--rate` at 25%, 50% and 75% of the
//!    sustainable rate (an acknowledgement means the line is fsynced in the log);
//! 3. send → output latency: the sustainable rate again with live views and a subscriber on one
//!    output (`--subscribe`, `sluice send --latency-from`), then p50/p95/p99 with `--rate` at
//!    25%, 50% and 75% of it (the output's progress has passed the line's event time), against
//!    the goal p99 ≤ 50 ms at 75% and an event service's usual target, 10,000 events/s at p95
//!    300 ms; and, computed from the file and the rate alone, the part of it that is waiting
//!    for the watermark (the spec's `allowed_lateness` is 2 minutes: a line's output is due once
//!    a line 2 minutes later in event time has been sent);
//! 4. memory: the idle server's RSS, and the RSS cost of a queued event, from the peak RSS of the
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
    /// The `--subscribe` address, when started with one.
    subscribe: Option<String>,
}

impl Server {
    /// A server; with `subscribe`, also accepting subscriptions.
    fn start(dir: &Path, queue_bytes: usize, subscribe: bool) -> Server {
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .arg(spec())
            .args(["--listen", "127.0.0.1:0", "--workers", "2", "--idle-timeout", "off"])
            .args([
                "--wal",
                "wal",
                "--out",
                "out",
                "--queue-bytes",
                &queue_bytes.to_string(),
            ]);
        if subscribe {
            cmd.args(["--subscribe", "127.0.0.1:0"]);
        }
        if let Ok(extra) = std::env::var("SLUICE_BENCH_SERVE_ARGS") {
            cmd.args(extra.split_whitespace());
        }
        let mut child = cmd
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut printed = |prefix: &str| {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            line.trim().strip_prefix(prefix).unwrap().to_string()
        };
        let addr = printed("listening on ");
        let subscribe = subscribe.then(|| printed("subscribe on "));
        // The rest of what the server prints is read (and dropped) so it never blocks on a pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Server { child, addr, subscribe }
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

/// A subscriber for `sluice send --latency-from`: the server's subscription address, the output,
/// and how long to wait for progress after the last acknowledgement.
struct Probe<'a> {
    from: &'a str,
    collection: &'a str,
    grace: &'a str,
}

/// `sluice send --json`, with the report's fields.
fn send(file: &Path, addr: &str, rate: Option<f64>, probe: Option<&Probe>) -> serde_json::Value {
    let mut cmd = Command::new(bin());
    cmd.arg("send").arg(file).args(["--to", addr, "--json"]);
    if let Some(r) = rate {
        cmd.args(["--rate", &format!("{r:.0}")]);
    }
    if let Some(p) = probe {
        cmd.args(["--latency-from", p.from, "--collection", p.collection]);
        cmd.args(["--latency-grace", p.grace]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Unthrottled: lines per second until processed, and the server's peak RSS (KiB). With a
/// collection, the server has live views and the sender subscribes to it.
fn unthrottled(file: &Path, lines: usize, queue_bytes: usize, collection: Option<&str>) -> (f64, u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), queue_bytes, collection.is_some());
    let probe = collection.map(|collection| Probe {
        from: server.subscribe.as_deref().unwrap(),
        collection,
        grace: "0s",
    });
    std::thread::sleep(Duration::from_millis(300));
    let idle = server.rss_kib();
    let started = Instant::now();
    let peak = std::thread::scope(|s| {
        let sender = s.spawn(|| send(file, &server.addr, None, probe.as_ref()));
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

/// One throttled run at `share` of `sustainable`; with a collection, through a subscriber.
fn throttled(file: &Path, share: f64, sustainable: f64, collection: Option<&str>) -> Latency {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), 64 << 20, collection.is_some());
    let probe = collection.map(|collection| Probe {
        from: server.subscribe.as_deref().unwrap(),
        collection,
        grace: "5s",
    });
    let report = send(file, &server.addr, Some(sustainable * share), probe.as_ref());
    server.stop();
    eprintln!("{share} of {sustainable:.0}: {report}");
    let get = |k: &str| report[k].as_f64().unwrap_or(f64::NAN);
    let out = |k: &str| report["output"][k].as_f64().unwrap_or(f64::NAN);
    let achieved = get("lines_per_second");
    Latency {
        share,
        achieved,
        ack: [get("ack_ms_p50"), get("ack_ms_p99")],
        output: [out("ms_p50"), out("ms_p95"), out("ms_p99")],
        pending: out("pending"),
        wait: collection.map_or((f64::NAN, f64::NAN), |_| watermark_wait(file, achieved)),
    }
}

/// The spec's allowed lateness and tick (`dataflows/tcp/learning_stream.toml`).
const LATENESS_MS: i64 = 120_000;
const TICK_MS: i64 = 1_000;

/// Waiting for the watermark, from the file alone, with line `i` sent at `i / rate` seconds: line
/// `i`'s output is due when the largest event time sent reaches its tick's end plus the allowed
/// lateness. p50 and p99 in ms over the lines that become due (late lines and the tail that
/// never does are left out).
fn watermark_wait(file: &Path, rate: f64) -> (f64, f64) {
    let bytes = std::fs::read(file).unwrap();
    let times: Vec<i64> = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| sluice::source::ndjson::scan_time(l, "event_time", 1.0).unwrap_or(i64::MIN))
        .collect();
    let mut prefix_max = Vec::with_capacity(times.len());
    let mut max = i64::MIN;
    for t in &times {
        max = max.max(*t);
        prefix_max.push(max);
    }
    let mut waits: Vec<f64> = Vec::new();
    for (i, e) in times.iter().enumerate().filter(|(_, e)| **e > i64::MIN) {
        let due = (e.div_euclid(TICK_MS) + 1) * TICK_MS + LATENESS_MS;
        let j = prefix_max.partition_point(|m| *m < due);
        if j > i && j < times.len() {
            waits.push((j - i) as f64 / rate * 1000.0);
        }
    }
    waits.sort_by(f64::total_cmp);
    let at = |p: f64| {
        waits
            .get(((waits.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    (at(0.5), at(0.99))
}

/// One throttled run: the share of the sustainable rate, the rate achieved, send → ack p50/p99,
/// send → output p50/p95/p99 (ms), and the lines progress had not passed at the end.
struct Latency {
    share: f64,
    achieved: f64,
    ack: [f64; 2],
    output: [f64; 3],
    pending: f64,
    /// Waiting for the watermark: p50, p99 (ms).
    wait: (f64, f64),
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
        let (r, i, p) = unthrottled(&file, n, 64 << 20, None);
        eprintln!("unthrottled: {r:.0} lines/s, idle {i} KiB, peak {p} KiB");
        rate = rate.max(r);
        idle = idle.min(i);
        peak_64 = peak_64.min(p);
    }
    let (_, _, peak_8) = unthrottled(&file, n, 8 << 20, None);
    let queued_events = ((64 - 8) << 20) as f64 / line_bytes;
    let per_event = (peak_64 as f64 - peak_8 as f64) * 1024.0 / queued_events;
    let ack: Vec<Latency> = [0.25, 0.5, 0.75]
        .into_iter()
        .map(|share| throttled(&file, share, rate, None))
        .collect();

    // Send → output: live views and a subscriber cost the server CPU, so the shares are of the
    // rate sustained with them.
    let collection = std::env::var("SLUICE_BENCH_SERVE_COLLECTION").unwrap_or_else(|_| "user_hourly_attempts".into());
    let mut rate_live: f64 = 0.0;
    for _ in 0..2 {
        let (r, _, _) = unthrottled(&file, n, 64 << 20, Some(&collection));
        eprintln!("unthrottled with a subscriber: {r:.0} lines/s");
        rate_live = rate_live.max(r);
    }
    let output: Vec<Latency> = [0.25, 0.5, 0.75]
        .into_iter()
        .map(|share| throttled(&file, share, rate_live, Some(&collection)))
        .collect();

    let mut table = String::new();
    let mut row = |what: String, value: String| writeln!(table, "| {what} | {value} |").unwrap();
    row(
        format!("measurement ({n} learning events, {line_bytes:.0} B/line, 2 workers, WAL on)"),
        "value".into(),
    );
    row("---".into(), "---".into());
    row(
        "serde_json parse into `Value`, one thread, lines/s".into(),
        format!("{serde:.0}"),
    );
    row(
        "sustainable rate over TCP (send until processed), lines/s".into(),
        format!("{rate:.0}"),
    );
    row("**ratio** (goal ≥ 0.24)".into(), format!("**{:.2}**", rate / serde));
    for l in &ack {
        let [p50, p99] = l.ack;
        row(
            format!(
                "send → ack latency at {:.0}% ({:.0} lines/s): p50 / p99, ms",
                l.share * 100.0,
                l.achieved
            ),
            format!("{p50:.1} / {p99:.1}"),
        );
    }
    row(
        format!("sustainable rate with `--subscribe` and a subscriber on `{collection}`, lines/s"),
        format!("{rate_live:.0}"),
    );
    for l in &output {
        let [p50, p95, p99] = l.output;
        let [_, ack99] = l.ack;
        row(
            format!(
                "send → output latency at {:.0}% of that ({:.0} lines/s): p50 / p95 / p99, ms (send → ack p99; lines pending at the end)",
                l.share * 100.0,
                l.achieved
            ),
            format!("{p50:.1} / {p95:.1} / {p99:.1} ({ack99:.1}; {})", l.pending),
        );
        let (w50, w99) = l.wait;
        row(
            format!(
                "of which waiting for the watermark at {:.0}% (from the file and the rate): p50 / p99, ms",
                l.share * 100.0
            ),
            format!("{w50:.1} / {w99:.1}"),
        );
    }
    row("idle server RSS, MiB".into(), format!("{:.1}", idle as f64 / 1024.0));
    row(
        "peak RSS unthrottled, 64 MiB / 8 MiB queue budget, MiB".into(),
        format!("{:.1} / {:.1}", peak_64 as f64 / 1024.0, peak_8 as f64 / 1024.0),
    );
    row(
        format!("memory per queued event, bytes (line is {line_bytes:.0} B)"),
        format!("{per_event:.0}"),
    );
    println!("{table}");
    std::fs::write(repo().join("bench-data/serve-results.md"), &table).unwrap();
}
