//! Send → output latency over loopback: a subscription's progress lines rise and follow every
//! change below them, and `sluice send --latency-from` times every line by them, with nothing
//! left pending once the idle timeout has moved the watermark past the last line.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::serve_util::{progress_of, send, Server};
use crate::util::sluice;

/// Counts per client and minute, as changes; no allowed lateness, so the watermark is the
/// largest time seen.
const SPEC: &str = r#"
[pipeline]
name = "serve_latency"
tick = "1s"

[sources.events]
format = "tcp"
time_field = "ts"
type_field = "type"

[[aggregates]]
name = "counts"
source = "events"
window = { tumbling = "1m" }
group_by = ["who"]
measures.n = "count()"
"#;

/// `n` events 50 ms apart from `start_s` (epoch seconds), in time order, as NDJSON in `dir/NAME`.
fn events(dir: &Path, name: &str, start_s: i64, n: i64) -> PathBuf {
    let mut text = String::new();
    for i in 0..n {
        let ms = start_s * 1000 + i * 50;
        let ts = sluice::value::format_time(ms);
        text.push_str(&format!("{{\"ts\":\"{ts}\",\"type\":\"e\",\"who\":\"c{}\"}}\n", i % 7));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A server of [`SPEC`] with `--subscribe`, and its subscription address.
fn start(dir: &Path, idle_timeout: &str) -> (Server, SocketAddr) {
    let spec = dir.join("latency.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let server = Server::start(
        dir,
        &spec,
        "127.0.0.1:0",
        &["--subscribe", "127.0.0.1:0", "--idle-timeout", idle_timeout],
    );
    let subscribe = server.printed_addr("subscribe on ");
    (server, subscribe)
}

/// Subscribes to `counts` and reads every line on a thread, until `{"done":true}`.
fn subscribe(addr: SocketAddr) -> JoinHandle<Vec<String>> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(b"{\"subscribe\":\"counts\"}\n").unwrap();
    let mut reader = BufReader::new(s);
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            let done = line.starts_with("{\"done\":true}");
            lines.push(std::mem::take(&mut line).trim_end().to_string());
            if done {
                break;
            }
        }
        lines
    })
}

#[test]
fn progress_lines_rise_and_follow_every_change_below_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = events(dir.path(), "events.ndjson", 1_709_510_400, 3_000);
    let (server, subscribe_addr) = start(dir.path(), "off");
    let sub = subscribe(subscribe_addr);
    // Throttled, so the output moves on in many steps while lines arrive.
    send(dir.path(), &file, server.addr, &["--rate", "6000"]);
    server.stop();
    let lines = sub.join().unwrap();
    assert_eq!(lines.last().map(String::as_str), Some("{\"done\":true}"));
    assert!(
        lines[0].starts_with("{\"progress\":"),
        "the snapshot ends with a progress line"
    );
    let progress = progress_of(&lines);
    assert!(progress.len() > 10, "{progress:?}");
    // The last line's second is passed only at shutdown (no idle timeout): the last progress
    // is that second.
    let last_ms = 1_709_510_400_000 + 2_999 * 50;
    assert_eq!(progress.last(), Some(&(last_ms - last_ms % 1000)));
    let changes = lines.iter().filter(|l| l.contains("\"row\":")).count();
    assert!(changes > 100, "{changes} changes");
}

#[test]
fn send_reports_send_to_output_latency_with_nothing_pending() {
    let dir = tempfile::tempdir().unwrap();
    let first = events(dir.path(), "first.ndjson", 1_709_510_400, 2_000);
    let second = events(dir.path(), "second.ndjson", 1_709_520_000, 500);
    let (server, subscribe_addr) = start(dir.path(), "200ms");
    let from = subscribe_addr.to_string();
    let latency = [
        "--latency-from",
        &from,
        "--collection",
        "counts",
        "--time-field",
        "ts",
        "--latency-grace",
        "30s",
    ];
    // JSON: every line measured once the idle timeout has moved the watermark past the last.
    let mut args = latency.to_vec();
    args.extend(["--rate", "4000", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&send(dir.path(), &first, server.addr, &args)).unwrap();
    let output = &report["output"];
    assert_eq!(output["collection"], "counts", "{report}");
    assert_eq!(
        (
            &output["measured"],
            &output["pending"],
            &output["late"],
            &output["untimed"]
        ),
        (&2_000.into(), &0.into(), &0.into(), &0.into()),
        "{report}"
    );
    let ms = |k: &str| output[k].as_f64().unwrap();
    assert!(ms("ms_p50") > 0.0, "{report}");
    assert!(ms("ms_p50") <= ms("ms_p95") && ms("ms_p95") <= ms("ms_p99") && ms("ms_p99") <= ms("ms_max"));
    assert!(output.get("error").is_none(), "{report}");
    assert!(report["ack_ms_p95"].is_f64(), "{report}");
    // Text, from another client: the output line next to the acknowledgement line.
    let mut args = latency.to_vec();
    args.extend(["--client", "second"]);
    let text = send(dir.path(), &second, server.addr, &args);
    assert!(text.contains("send -> ack latency ms: p50"), "{text}");
    assert!(
        text.contains("send -> output latency ms (counts): p50")
            && text.contains("500 lines measured, 0 pending, 0 late, 0 without a time"),
        "{text}"
    );
    // An unknown collection fails before anything is sent.
    let addr = server.addr.to_string();
    let file = first.to_str().unwrap();
    let out = sluice(
        &[
            "send",
            file,
            "--to",
            &addr,
            "--latency-from",
            &from,
            "--collection",
            "nope",
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown collection `nope`"), "{stderr}");
    server.stop();
}
