//! Per-partition watermarks of `sluice serve` (`src/serve/partitions.rs`): several unpaced
//! connections give the outputs of replay, a silent client stops holding the watermark after the
//! idle timeout, and a closed anonymous connection at once, also after a crash and a restart.
//!
//! What serve and replay can share. Replay calls an event late when its time is below the
//! largest time of the lines before it in the file, minus the allowed lateness. Over `C`
//! connections that each send their lines in file order, the watermark before an event is the
//! running maximum of the minimum over the clients' largest times; every client is present from
//! its hello (and `sluice send` answers all hellos before it sends a line), so that minimum is
//! at most the largest time of the event's own connection so far, itself at most the file's
//! prefix maximum. Hence: **every event late in serve is late in replay**. The converse does not
//! hold: an event more than the lateness behind the file's prefix may be on time in serve when
//! its connection (and the slowest one) had not gone that far yet, and which of them are
//! depends on how the connections interleave, that is on timing. So outputs are equal exactly
//! when replay has no late events, and otherwise the late events of serve are a subset of those
//! of replay.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::serve_util::{
    connect, dead_letters, generate, learning_stream, outputs, reasons, replay, send, wait_ack, Server, COUNT_SPEC,
};

/// `path` without the lines replay calls late (their lines, from the dead letters' locations):
/// a late line is below the prefix maximum, so dropping it changes no other line's lateness.
fn without_late_lines(dir: &Path, path: &Path, out: &str) -> PathBuf {
    replay(dir, &learning_stream(), path, "replay_all", &[]);
    let late: std::collections::HashSet<usize> = dead_letters(&dir.join("replay_all"))
        .into_iter()
        .filter(|d| d.reason == "late")
        .map(|d| d.location.rsplit(':').next().unwrap().parse().unwrap())
        .collect();
    assert!(!late.is_empty(), "the learning log has late lines");
    let text = std::fs::read_to_string(path).unwrap();
    let kept: String = text
        .lines()
        .enumerate()
        .filter(|(i, _)| !late.contains(&(i + 1)))
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    let target = dir.join(out);
    std::fs::write(&target, kept).unwrap();
    target
}

/// Serves `events` from 4 unpaced connections on 2 workers; returns the outputs folder.
fn serve_four_connections(dir: &Path, events: &Path) -> PathBuf {
    let server = Server::start(
        dir,
        &learning_stream(),
        "127.0.0.1:0",
        &["--out", "served", "--workers", "2"],
    );
    let lines = std::fs::read_to_string(events).unwrap().lines().count();
    let report = send(dir, events, server.addr, &["--connections", "4"]);
    assert!(report.contains(&format!("acknowledged {lines}")), "{report}");
    server.stop();
    dir.join("served")
}

#[test]
fn four_unpaced_connections_give_the_outputs_of_replay() {
    let dir = tempfile::tempdir().unwrap();
    let raw = generate(dir.path(), "raw.ndjson", 30_000, 7);
    let events = without_late_lines(dir.path(), &raw, "events.ndjson");
    replay(dir.path(), &learning_stream(), &events, "replayed", &[]);
    let replayed = outputs(&dir.path().join("replayed"));
    assert!(replayed["dead_letters"].is_empty(), "replay still has late lines");

    let served = outputs(&serve_four_connections(dir.path(), &events));
    assert_eq!(served.keys().collect::<Vec<_>>(), replayed.keys().collect::<Vec<_>>());
    for (name, rows) in &replayed {
        assert!(!rows.is_empty() || name == "dead_letters", "{name} is empty");
        assert_eq!(served[name].len(), rows.len(), "{name}: rows");
        assert!(served[name] == *rows, "{name} differs between serve and replay");
    }
}

#[test]
fn over_four_unpaced_connections_late_events_are_late_in_replay_too() {
    let dir = tempfile::tempdir().unwrap();
    let events = generate(dir.path(), "events.ndjson", 30_000, 3);
    replay(dir.path(), &learning_stream(), &events, "replayed", &[]);
    let served = serve_four_connections(dir.path(), &events);
    let late = |out: &Path| {
        let mut records: BTreeMap<String, usize> = BTreeMap::new();
        for d in dead_letters(out) {
            assert_eq!(d.reason, "late", "{}", d.record);
            *records.entry(d.record).or_default() += 1;
        }
        records
    };
    let (in_serve, in_replay) = (late(&served), late(&dir.path().join("replayed")));
    let count = |m: &BTreeMap<String, usize>| m.values().sum::<usize>();
    assert!(count(&in_replay) > 10, "replay has late events: {}", count(&in_replay));
    for (record, n) in &in_serve {
        let r = in_replay.get(record).copied().unwrap_or(0);
        assert!(*n <= r, "late {n} times in serve, {r} in replay: {record}");
    }
    eprintln!("late: serve {}, replay {}", count(&in_serve), count(&in_replay));
}

const T0: u64 = 1_700_000_000_000;
const HOUR: u64 = 3_600_000;

fn line(who: &str, ts: u64) -> String {
    format!("{{\"ts\":{ts},\"type\":\"a\",\"who\":\"{who}\"}}\n")
}

/// A line as dead letters hold it (T0 is 2023-11-14T22:13:20Z).
fn record(who: &str, time: &str) -> String {
    format!("{{\"ts\":\"{time}.000Z\",\"type\":\"a\",\"who\":\"{who}\"}}")
}

fn count_spec(dir: &Path) -> PathBuf {
    let spec = dir.join("counts.toml");
    std::fs::write(&spec, COUNT_SPEC).unwrap();
    spec
}

/// A connection whose hello (`client` or anonymous) has been answered.
fn hello(addr: SocketAddr, client: Option<&str>) -> TcpStream {
    let mut s = connect(addr);
    let hello = match client {
        Some(c) => format!("{{\"hello\":1,\"client\":\"{c}\"}}\n"),
        None => "{\"hello\":1}\n".to_string(),
    };
    s.write_all(hello.as_bytes()).unwrap();
    wait_ack(&mut s, 0);
    s
}

/// Sends one line as the connection's `n`-th and waits for its acknowledgement.
fn event(s: &mut TcpStream, n: u64, who: &str, ts: u64) {
    s.write_all(line(who, ts).as_bytes()).unwrap();
    wait_ack(s, n);
}

/// Closes a connection and waits until the server has closed it too (after its last batch and,
/// for an anonymous one, its leave).
fn close(mut s: TcpStream) {
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
}

/// The late dead letters' records, and the counts by client.
fn late_and_counts(out: &Path) -> (Vec<String>, Vec<String>) {
    let late = dead_letters(out)
        .into_iter()
        .map(|d| {
            assert_eq!(d.reason, "late", "{}", d.record);
            d.record
        })
        .collect();
    (late, outputs(out)["counts"].clone())
}

#[test]
fn a_silent_client_stops_holding_the_watermark_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &count_spec(dir.path()),
        "127.0.0.1:0",
        &["--out", "out", "--idle-timeout", "500ms"],
    );
    let mut slow = hello(server.addr, Some("slow"));
    let mut fast = hello(server.addr, Some("fast"));
    event(&mut slow, 1, "slow", T0);
    event(&mut fast, 1, "fast", T0 + 10 * HOUR);
    // fast is 10 h ahead, slow holds the watermark at T0 - 1 h: on time.
    event(&mut slow, 2, "slow", T0 + HOUR / 2);
    // fast keeps sending (its source is not idle), slow is silent past the idle timeout.
    for i in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        event(&mut fast, 2 + i, "fast", T0 + 10 * HOUR + i * 1000);
    }
    // Now fast alone holds it: T0 + 9 h.
    event(&mut slow, 3, "slow", T0 + HOUR);
    // slow is present again, with T0 + 1 h: nothing goes back, its next events are late too.
    event(&mut slow, 4, "slow", T0 + 2 * HOUR);
    drop((slow, fast));
    let summary = server.stop();
    assert!(summary.contains("events 23,"), "{summary}");
    let (late, counts) = late_and_counts(&dir.path().join("out"));
    assert_eq!(late.len(), 2, "{late:?}");
    let mut late = late;
    late.sort();
    assert_eq!(
        late,
        [
            record("slow", "2023-11-14T23:13:20"),
            record("slow", "2023-11-15T00:13:20")
        ]
    );
    // slow's two on-time events are on 2023-11-14; fast's 21 on the 15th.
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert!(
        counts.iter().any(|r| r.contains("\"slow\"") && r.ends_with(", 2")),
        "{counts:?}"
    );
    assert!(
        counts.iter().any(|r| r.contains("\"fast\"") && r.ends_with(", 21")),
        "{counts:?}"
    );
}

/// Anonymous connections a, b, c; c and then a close, and d's event falls below b alone.
/// Returns b, still open.
fn closing_scenario(addr: SocketAddr) -> TcpStream {
    let mut a = hello(addr, None);
    let mut b = hello(addr, None);
    event(&mut a, 1, "a", T0);
    event(&mut b, 1, "b", T0 + 10 * HOUR);
    // a holds the watermark at T0 - 1 h, though b is 10 h ahead.
    let mut c = hello(addr, None);
    event(&mut c, 1, "c", T0 + HOUR);
    close(c);
    // a leaves when it closes (no idle timeout here): b alone holds it, at T0 + 9 h.
    close(a);
    let mut d = hello(addr, None);
    event(&mut d, 1, "d", T0 + 2 * HOUR);
    event(&mut d, 2, "d", T0 + 10 * HOUR);
    close(d);
    b
}

fn check_closing(out: &Path) {
    let (late, counts) = late_and_counts(out);
    assert_eq!(late, [record("d", "2023-11-15T00:13:20")]);
    let who: Vec<&str> = counts.iter().map(|r| r.split(',').next().unwrap()).collect();
    assert_eq!(counts.len(), 4, "{counts:?}");
    for name in ["\"a\"", "\"b\"", "\"c\"", "\"d\""] {
        assert!(who.contains(&name), "{name} in {counts:?}");
    }
    assert_eq!(reasons(out).get("late"), Some(&1));
}

#[test]
fn a_closed_anonymous_connection_stops_holding_the_watermark_also_after_a_crash() {
    for crash in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let spec = count_spec(dir.path());
        let flags = [
            "--out",
            "out",
            "--wal",
            "wal",
            "--idle-timeout",
            "off",
            "--checkpoint-interval",
            "100ms",
        ];
        let server = Server::start(dir.path(), &spec, "127.0.0.1:0", &flags);
        // b stays open until the server stops (or crashes).
        let b = closing_scenario(server.addr);
        if crash {
            // Checkpoints are taken meanwhile; the restart replays the joins and leaves.
            std::thread::sleep(Duration::from_millis(500));
            let addr = server.addr.to_string();
            server.crash();
            let server = Server::start(dir.path(), &spec, &addr, &flags);
            let summary = server.stop();
            assert!(!summary.contains("log replayed 0 records"), "{summary}");
        } else {
            server.stop();
        }
        drop(b);
        check_closing(&dir.path().join("out"));
    }
}
