//! `sluice serve` end to end over loopback: served outputs equal replayed ones, bad lines are
//! dead letters with the right reason while good ones are processed exactly once, and a crash
//! in the middle of a stream loses nothing that was acknowledged.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::serve_util::{dead_letters, generate, learning_stream, outputs, reasons, replay, send, Server};
use crate::util::sluice_bin;

#[test]
fn served_outputs_equal_replayed_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let events = generate(dir.path(), "events.ndjson", 20_000, 11);
    let server = Server::start(
        dir.path(),
        &learning_stream(),
        "127.0.0.1:0",
        &["--out", "served", "--workers", "2", "--idle-timeout", "off"],
    );
    let report = send(dir.path(), &events, server.addr, &[]);
    assert!(report.contains("acknowledged 20000"), "{report}");
    let summary = server.stop();
    assert!(summary.contains("served "), "{summary}");
    replay(dir.path(), &learning_stream(), &events, "replayed", &[]);
    let (served, replayed) = (
        outputs(&dir.path().join("served")),
        outputs(&dir.path().join("replayed")),
    );
    assert_eq!(served.keys().collect::<Vec<_>>(), replayed.keys().collect::<Vec<_>>());
    for (name, rows) in &replayed {
        assert!(!rows.is_empty() || name == "dead_letters", "{name} is empty");
        assert!(served[name] == *rows, "{name} differs between serve and replay");
    }
}

/// Ten kinds of bad lines, 100 each, among 10,000 good ones on one connection.
fn bad_line(kind: usize, i: usize) -> (Vec<u8>, &'static str) {
    let t = "2024-03-04T00:30:00Z";
    match kind {
        0 => (
            format!(r#"{{"event_time":"{t}","event_type":"attempt","#).into_bytes(),
            "malformed_json",
        ),
        1 => {
            let mut l = format!(r#"{{"event_time":"{t}","event_type":"attempt","user_id":""#).into_bytes();
            l.extend_from_slice(&[0xff, 0xfe, b'"', b'}']);
            (l, "invalid_utf8")
        }
        2 => (format!("[{i},2,3]").into_bytes(), "not_an_object"),
        3 => (
            format!(r#"{{"event_type":"attempt","user_id":"u{i}"}}"#).into_bytes(),
            "missing_time",
        ),
        4 => (
            r#"{"event_time":"yesterday","event_type":"attempt"}"#.as_bytes().to_vec(),
            "bad_time",
        ),
        5 => (
            format!(r#"{{"event_time":"{t}","user_id":"u{i}"}}"#).into_bytes(),
            "missing_type",
        ),
        6 => {
            let pad = "x".repeat(100_000);
            (
                format!(r#"{{"event_time":"{t}","event_type":"attempt","pad":"{pad}"}}"#).into_bytes(),
                "too_large",
            )
        }
        7 => {
            let bomb = format!("{}1{}", r#"{"a":"#.repeat(100), "}".repeat(100));
            (
                format!(r#"{{"event_time":"{t}","event_type":"attempt","n":{bomb}}}"#).into_bytes(),
                "depth_exceeded",
            )
        }
        8 => {
            let fields: Vec<String> = (0..3000).map(|k| format!(r#""f{i}_{k}":1"#)).collect();
            let line = format!(r#"{{"event_time":"{t}","event_type":"attempt",{}}}"#, fields.join(","));
            (line.into_bytes(), "too_many_fields")
        }
        _ => (
            format!(r#"{{"event_time":"2020-01-01T00:00:00Z","event_type":"attempt","user_id":"late{i}"}}"#)
                .into_bytes(),
            "late",
        ),
    }
}

#[test]
fn good_lines_once_and_bad_lines_as_dead_letters_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let good = generate(dir.path(), "good.ndjson", 10_000, 5);
    let text = std::fs::read(&good).unwrap();
    let good_lines: Vec<&[u8]> = text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    assert_eq!(good_lines.len(), 10_000);
    let mut mixed = Vec::new();
    let mut bad = 0;
    for (n, line) in good_lines.iter().enumerate() {
        mixed.extend_from_slice(line);
        mixed.push(b'\n');
        // Bad lines start once every good field name has been seen.
        if n >= 200 && (n - 200) % 9 == 0 && bad < 1000 {
            let (line, _) = bad_line(bad % 10, bad);
            mixed.extend_from_slice(&line);
            mixed.push(b'\n');
            bad += 1;
        }
    }
    assert_eq!(bad, 1000);
    let mixed_path = dir.path().join("mixed.ndjson");
    std::fs::write(&mixed_path, &mixed).unwrap();

    let server = Server::start(
        dir.path(),
        &learning_stream(),
        "127.0.0.1:0",
        &[
            "--out",
            "served",
            "--idle-timeout",
            "off",
            "--max-line-bytes",
            "65536",
            "--max-field-names",
            "2000",
        ],
    );
    let report = send(dir.path(), &mixed_path, server.addr, &[]);
    assert!(report.contains("acknowledged 11000"), "{report}");
    server.stop();
    replay(dir.path(), &learning_stream(), &good, "replayed", &[]);

    let served = outputs(&dir.path().join("served"));
    let replayed = outputs(&dir.path().join("replayed"));
    for (name, rows) in &replayed {
        if name != "dead_letters" {
            assert!(
                served[name] == *rows,
                "{name}: good events were not processed exactly once"
            );
        }
    }
    let got = reasons(&dir.path().join("served"));
    let late_in_good = reasons(&dir.path().join("replayed")).get("late").copied().unwrap_or(0);
    for kind in 0..10 {
        let (_, reason) = bad_line(kind, 0);
        let expect = 100 + if reason == "late" { late_in_good } else { 0 };
        assert_eq!(got.get(reason).copied(), Some(expect), "{reason}: {got:?}");
    }
    assert_eq!(got.values().sum::<usize>(), 1000 + late_in_good, "{got:?}");
    let letters = dead_letters(&dir.path().join("served"));
    assert!(
        letters.iter().all(|d| d.location.starts_with("tcp:send-")),
        "dead letters name client and line"
    );
}

/// `sluice send` in the background, to be interrupted.
pub(crate) fn spawn_send(dir: &Path, file: &Path, addr: std::net::SocketAddr, args: &[&str]) -> std::process::Child {
    Command::new(sluice_bin())
        .args(["send", file.to_str().unwrap(), "--to", &addr.to_string()])
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

pub(crate) struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sigkill_mid_stream_then_restart_with_the_log_loses_nothing() {
    for seed in [1, 2, 3] {
        let dir = tempfile::tempdir().unwrap();
        let events = generate(dir.path(), "events.ndjson", 30_000, seed);
        let flags = ["--out", "served", "--wal", "wal", "--idle-timeout", "off"];
        let server = Server::start(dir.path(), &learning_stream(), "127.0.0.1:0", &flags);
        let addr = server.addr;
        let mut sender = KillOnDrop(spawn_send(
            dir.path(),
            &events,
            addr,
            &[
                "--rate",
                "20000",
                "--client",
                &format!("seed{seed}"),
                "--window",
                "2000",
            ],
        ));
        std::thread::sleep(Duration::from_millis(400 + 200 * seed));
        server.crash();
        let logged: u64 = std::fs::read_dir(dir.path().join("wal"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(logged > 0, "seed {seed}: nothing was logged before the crash");
        std::thread::sleep(Duration::from_millis(300));
        let server = Server::start(dir.path(), &learning_stream(), &addr.to_string(), &flags);
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = sender.0.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "seed {seed}: send did not finish");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut report = String::new();
        std::io::Read::read_to_string(sender.0.stdout.as_mut().unwrap(), &mut report).unwrap();
        assert!(status.success(), "seed {seed}: {report}");
        assert!(report.contains("acknowledged 30000"), "seed {seed}: {report}");
        let summary = server.stop();
        assert!(summary.contains("log removed"), "{summary}");
        assert!(!summary.contains("log replayed 0 records"), "seed {seed}: {summary}");

        replay(dir.path(), &learning_stream(), &events, "replayed", &[]);
        let served = outputs(&dir.path().join("served"));
        let replayed = outputs(&dir.path().join("replayed"));
        assert_eq!(served.len(), replayed.len());
        for (name, rows) in &replayed {
            assert!(
                served[name] == *rows,
                "seed {seed}: {name} differs after crash and restart"
            );
        }
        let _ = std::io::stdout().flush();
    }
}

/// A context table arriving over TCP, as its own source, joins as a file does in replay.
#[test]
fn a_context_stream_over_tcp_joins_as_in_replay() {
    let spec = r#"
[pipeline]
name = "context_stream"
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

[enrich.events]
output = "enriched"

[[enrich.events.join]]
context = "profiles"
as = "profile"
on = { user_id = "user_id" }
fields = ["subscription", "language"]

[[aggregates]]
name = "by_subscription"
source = "events"
window = { tumbling = "1h" }
group_by = ["profile.subscription"]
measures.events = "count()"
"#;
    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join("context_stream.toml");
    std::fs::write(&spec_path, spec).unwrap();
    let out = crate::util::sluice(
        &[
            "generate",
            "learning",
            "--events",
            "8000",
            "--seed",
            "5",
            "--out",
            "events.ndjson",
            "--context",
            "ctx",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (events, profiles) = (
        dir.path().join("events.ndjson"),
        dir.path().join("ctx/profiles.parquet"),
    );
    let flags = [
        "--out",
        "served",
        "--wal",
        "wal",
        "--workers",
        "2",
        "--idle-timeout",
        "off",
    ];
    let server = Server::start(dir.path(), &spec_path, "127.0.0.1:0", &flags);
    let report = send(
        dir.path(),
        &profiles,
        server.addr,
        &["--source", "profiles", "--client", "profiles"],
    );
    assert!(report.contains("acknowledged"), "{report}");
    let report = send(dir.path(), &events, server.addr, &["--client", "events"]);
    assert!(report.contains("acknowledged 8000"), "{report}");
    server.stop();

    let inputs = format!("profiles={}", profiles.display());
    replay(dir.path(), &spec_path, &events, "replayed", &["--input", &inputs]);
    let (served, replayed) = (
        outputs(&dir.path().join("served")),
        outputs(&dir.path().join("replayed")),
    );
    assert_eq!(served.keys().collect::<Vec<_>>(), replayed.keys().collect::<Vec<_>>());
    let enriched = &replayed["enriched"];
    assert!(
        enriched.iter().filter(|r| r.contains("\"premium\"")).count() > 100,
        "profiles were attached"
    );
    for (name, rows) in &replayed {
        assert!(served[name] == *rows, "{name} differs between serve and replay");
    }
}

#[test]
fn a_first_event_with_a_hello_field_is_data_not_a_bad_hello() {
    use crate::serve_util::{connect, wait_ack, COUNT_SPEC};
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("counts.toml");
    std::fs::write(&spec, COUNT_SPEC).unwrap();
    let server = Server::start(dir.path(), &spec, "127.0.0.1:0", &["--out", "out"]);
    let event = |who: &str, i: u64, extra: &str| {
        format!(
            "{{\"ts\":{},\"type\":\"a\",\"who\":\"{who}\"{extra}}}\n",
            1_700_000_000_000u64 + i
        )
    };
    // No hello: the first event has a `hello` field of its own.
    let mut s = connect(server.addr);
    let text = [
        event("h", 0, r#","hello":"world""#),
        event("h", 1, ""),
        event("h", 2, ""),
    ]
    .concat();
    s.write_all(text.as_bytes()).unwrap();
    wait_ack(&mut s, 3);
    // Even `"hello":1` with event fields is an event.
    let mut t = connect(server.addr);
    t.write_all(
        [event("v1", 3, r#","hello":1"#), event("v1", 4, "")]
            .concat()
            .as_bytes(),
    )
    .unwrap();
    wait_ack(&mut t, 2);
    drop((s, t));
    server.stop();
    let got = reasons(&dir.path().join("out"));
    assert!(got.is_empty(), "{got:?}");
    let mut rows = outputs(&dir.path().join("out"))["counts"].clone();
    rows.sort();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows[0].starts_with("\"h\"") && rows[0].ends_with(", 3"), "{rows:?}");
    assert!(rows[1].starts_with("\"v1\"") && rows[1].ends_with(", 2"), "{rows:?}");
}

/// A line `{"ts":..,"type":"a","who":"dD","n":[[...]]}` nested `depth` levels deep.
fn nested_line(depth: usize, i: u64) -> String {
    let inner = format!("{}1{}", "[".repeat(depth - 1), "]".repeat(depth - 1));
    format!(
        "{{\"ts\":{},\"type\":\"a\",\"who\":\"d{depth}\",\"n\":{inner}}}\n",
        1_700_000_000_000u64 + i
    )
}

#[test]
fn run_and_serve_share_the_depth_limit_of_the_source() {
    use crate::serve_util::{connect, wait_ack, COUNT_SPEC};
    let dir = tempfile::tempdir().unwrap();
    let deep = dir.path().join("deep.toml");
    let spec = COUNT_SPEC.replace(
        "allowed_lateness = \"1h\"",
        "allowed_lateness = \"1h\"\nmax_depth = 100",
    );
    std::fs::write(&deep, spec).unwrap();
    let default = dir.path().join("default.toml");
    std::fs::write(&default, COUNT_SPEC).unwrap();
    let depths = [2, 64, 65, 100, 101, 128, 129, 500];
    let text: String = depths
        .iter()
        .enumerate()
        .map(|(i, &d)| nested_line(d, i as u64))
        .collect();
    let file = dir.path().join("deep.ndjson");
    std::fs::write(&file, &text).unwrap();
    for (spec, accepted) in [(&default, vec![2, 64]), (&deep, vec![2, 64, 65, 100])] {
        let server = Server::start(dir.path(), spec, "127.0.0.1:0", &["--out", "served"]);
        let mut s = connect(server.addr);
        s.write_all(text.as_bytes()).unwrap();
        wait_ack(&mut s, depths.len() as u64);
        drop(s);
        server.stop();
        replay(dir.path(), spec, &file, "replayed", &[]);
        let (served, replayed) = (
            outputs(&dir.path().join("served")),
            outputs(&dir.path().join("replayed")),
        );
        // Served dead letters keep a prefix of the line, replayed ones all of it.
        assert_eq!(served["counts"], replayed["counts"], "{}", spec.display());
        assert_eq!(
            reasons(&dir.path().join("served")),
            reasons(&dir.path().join("replayed")),
            "{}",
            spec.display()
        );
        let mut who: Vec<String> = served["counts"]
            .iter()
            .map(|r| r.split(',').next().unwrap().trim_matches('"').to_string())
            .collect();
        who.sort_by_key(|w| w[1..].parse::<usize>().unwrap());
        let expect: Vec<String> = accepted.iter().map(|d| format!("d{d}")).collect();
        assert_eq!(who, expect, "{}", spec.display());
        let got = reasons(&dir.path().join("served"));
        assert_eq!(
            got.get("depth_exceeded").copied(),
            Some(depths.len() - accepted.len()),
            "{got:?}"
        );
    }
    // The limit is checked when the spec is planned.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, COUNT_SPEC.replace("allowed_lateness = \"1h\"", "max_depth = 129")).unwrap();
    let out = crate::util::sluice(&["check", bad.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_depth must be 1 to 128"));
}
