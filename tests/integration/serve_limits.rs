//! Limits of `sluice serve` against hostile or broken clients: a 64 MiB line, a nesting bomb,
//! a thousand clients that hang up mid-line, overload, too many connections, missing tokens.
//! Every test runs on loopback with an ephemeral port; the server is killed if a test fails.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::serve_util::{connect, dead_letters, exchange, outputs, reasons, send, wait_ack, Server, COUNT_SPEC};
use crate::util::sluice;

fn count_spec(dir: &Path) -> std::path::PathBuf {
    let spec = dir.join("counts.toml");
    std::fs::write(&spec, COUNT_SPEC).unwrap();
    spec
}

fn line(who: &str, i: usize) -> String {
    format!(
        "{{\"ts\":{},\"type\":\"a\",\"who\":\"{who}\"}}\n",
        1_700_000_000_000u64 + i as u64
    )
}

/// `who,n` rows of the counts output.
fn counts(out: &Path) -> Vec<String> {
    outputs(out)["counts"].clone()
}

#[test]
fn a_64_mib_line_is_too_large_and_the_next_lines_are_processed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &count_spec(dir.path()), "127.0.0.1:0", &["--out", "out"]);
    let (_, base_peak) = server.memory_kib();
    let mut s = connect(server.addr);
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..64 {
        s.write_all(&chunk).unwrap();
    }
    let mut tail = String::from("\n");
    for i in 0..100 {
        tail.push_str(&line("ok", i));
    }
    s.write_all(tail.as_bytes()).unwrap();
    wait_ack_anonymous(&mut s, 101);
    let (_, peak) = server.memory_kib();
    drop(s);
    server.stop();
    assert!(
        peak < base_peak + 48 * 1024,
        "peak RSS {peak} KiB from {base_peak} KiB: the line was buffered"
    );
    let got = reasons(&dir.path().join("out"));
    assert_eq!(got.get("too_large"), Some(&1), "{got:?}");
    assert_eq!(got.values().sum::<usize>(), 1);
    let rows = counts(&dir.path().join("out"));
    assert_eq!(rows.len(), 1);
    assert!(rows[0].starts_with("\"ok\""), "{rows:?}");
    assert!(rows[0].ends_with(", 100"), "{rows:?}");
}

/// Anonymous connections get no hello reply; acknowledgements count their lines.
fn wait_ack_anonymous(s: &mut std::net::TcpStream, n: u64) {
    wait_ack(s, n);
}

#[test]
fn a_nesting_bomb_is_depth_exceeded_without_stack_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &count_spec(dir.path()), "127.0.0.1:0", &["--out", "out"]);
    let mut bytes = Vec::new();
    bytes.extend(std::iter::repeat_n(b'[', 500_000));
    bytes.extend(std::iter::repeat_n(b']', 500_000));
    bytes.push(b'\n');
    for _ in 0..100_000 {
        bytes.extend_from_slice(br#"{"a":"#);
    }
    bytes.extend_from_slice(b"1");
    bytes.extend(std::iter::repeat_n(b'}', 100_000));
    bytes.push(b'\n');
    bytes.extend_from_slice(line("after", 0).as_bytes());
    exchange(server.addr, &bytes);
    server.stop();
    let got = reasons(&dir.path().join("out"));
    assert_eq!(got.get("depth_exceeded"), Some(&2), "{got:?}");
    assert_eq!(counts(&dir.path().join("out")).len(), 1);
    // As in `sluice run`: the record is clipped to `dead_letter_record_bytes` (4,096), and the
    // letter keeps the whole line's length and hash (it kept 256 bytes, no length, no hash).
    let mut letters: Vec<_> = (dead_letters(&dir.path().join("out")).into_iter())
        .filter(|d| d.reason == "depth_exceeded")
        .map(|d| (d.record.len(), d.record_bytes, d.record_hash.is_some()))
        .collect();
    letters.sort();
    assert_eq!(letters, [(4096, Some(600_001), true), (4096, Some(1_000_000), true)]);
}

#[test]
fn a_thousand_clients_hanging_up_mid_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &count_spec(dir.path()), "127.0.0.1:0", &["--out", "out"]);
    let baseline = server.fds();
    let addr = server.addr;
    for wave in 0..10 {
        let clients: Vec<_> = (0..100)
            .map(|c| {
                std::thread::spawn(move || {
                    let who = format!("c{}", wave * 100 + c);
                    let mut s = connect(addr);
                    let text = format!("{}{}{{\"ts\":17000", line(&who, 0), line(&who, 1));
                    s.write_all(text.as_bytes()).unwrap();
                    wait_ack(&mut s, 2);
                    // Hang up in the middle of the third line.
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
    }
    // The server opens and closes files of its own (WAL segments, output parts) at times of
    // its choosing, so the count may differ from the baseline by a few; a leak of one
    // descriptor per client would leave a thousand.
    const OWN_FILES: usize = 8;
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.fds() > baseline + OWN_FILES && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let fds = server.fds();
    assert!(
        fds <= baseline + OWN_FILES,
        "descriptors did not return to the baseline: {fds} open, {baseline} at the start"
    );
    server.stop();
    let got = reasons(&dir.path().join("out"));
    assert_eq!(got.get("truncated"), Some(&1000), "{got:?}");
    assert_eq!(got.len(), 1, "{got:?}");
    let rows = counts(&dir.path().join("out"));
    assert_eq!(rows.len(), 1000);
    assert!(
        rows.iter().all(|r| r.ends_with(", 2")),
        "a complete line was lost or doubled"
    );
}

#[test]
fn overload_keeps_memory_bounded_and_loses_no_acknowledged_line() {
    let dir = tempfile::tempdir().unwrap();
    let n = 400_000;
    let mut text = String::with_capacity(n * 48);
    for i in 0..n {
        text.push_str(&line(&format!("w{}", i % 50), i / 8));
    }
    let file = dir.path().join("load.ndjson");
    std::fs::write(&file, text).unwrap();
    let server = Server::start(
        dir.path(),
        &count_spec(dir.path()),
        "127.0.0.1:0",
        &["--out", "out", "--queue-bytes", "4194304", "--idle-timeout", "off"],
    );
    let (base, _) = server.memory_kib();
    let addr = server.addr;
    let senders: Vec<_> = (0..3)
        .map(|k| {
            let (dir, file) = (dir.path().to_path_buf(), file.clone());
            std::thread::spawn(move || send(&dir, &file, addr, &["--connections", "2", "--client", &format!("s{k}")]))
        })
        .collect();
    let mut peak = 0;
    while senders.iter().any(|s| !s.is_finished()) {
        peak = peak.max(server.memory_kib().0);
        std::thread::sleep(Duration::from_millis(20));
    }
    for s in senders {
        let report = s.join().unwrap();
        assert!(report.contains(&format!("acknowledged {n}")), "{report}");
    }
    server.stop();
    assert!(
        peak < base + 128 * 1024,
        "RSS grew from {base} KiB to {peak} KiB under overload"
    );
    // 3 senders × 400,000 lines, 8 per millisecond tick and 50 senders' ids: every line counted.
    let rows = counts(&dir.path().join("out"));
    let total: u64 = rows
        .iter()
        .map(|r| r.rsplit(", ").next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 3 * n as u64);
}

#[test]
fn tokens_connection_limits_and_non_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let spec = count_spec(dir.path());
    let out = sluice(&["serve", spec.to_str().unwrap(), "--listen", "0.0.0.0:0"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--auth-token"));

    let server = Server::start(
        dir.path(),
        &spec,
        "127.0.0.1:0",
        &["--out", "out", "--auth-token", "s3cret", "--max-connections", "2"],
    );
    let reply = exchange(server.addr, line("x", 0).as_bytes());
    assert!(reply.contains("unauthorized"), "{reply}");
    let reply = exchange(server.addr, b"{\"hello\":1,\"token\":\"wrong\"}\n");
    assert!(reply.contains("unauthorized"), "{reply}");
    let hello = b"{\"hello\":1,\"client\":\"a\",\"token\":\"s3cret\"}\n";
    let mut first = connect(server.addr);
    first.write_all(hello).unwrap();
    wait_ack(&mut first, 0);
    let mut second = connect(server.addr);
    second
        .write_all(b"{\"hello\":1,\"client\":\"b\",\"token\":\"s3cret\"}\n")
        .unwrap();
    wait_ack(&mut second, 0);
    // Refused for the limit, a hello of `a` does not fence the connection holding `a`.
    let reply = exchange(server.addr, hello);
    assert!(reply.contains("too many connections"), "{reply}");
    first.write_all(line("x", 0).as_bytes()).unwrap();
    wait_ack(&mut first, 1);
    // The same client resending its first line on another connection: skipped, not doubled.
    drop(second);
    drop(first);
    std::thread::sleep(Duration::from_millis(100));
    let mut again = connect(server.addr);
    again
        .write_all(b"{\"hello\":1,\"client\":\"a\",\"token\":\"s3cret\",\"offset\":0}\n")
        .unwrap();
    again.write_all(line("x", 0).as_bytes()).unwrap();
    again.write_all(line("x", 1).as_bytes()).unwrap();
    wait_ack(&mut again, 2);
    drop(again);
    let summary = server.stop();
    assert!(summary.contains("refused 1"), "{summary}");
    assert!(summary.contains("deduplicated 1"), "{summary}");
    let rows = counts(&dir.path().join("out"));
    assert_eq!(rows.len(), 1);
    assert!(rows[0].ends_with(", 2"), "{rows:?}");
}

#[test]
fn an_idle_source_watermark_follows_the_wall_clock() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("strict.toml");
    std::fs::write(
        &spec,
        COUNT_SPEC.replace("allowed_lateness = \"1h\"", "allowed_lateness = \"0s\""),
    )
    .unwrap();
    let server = Server::start(
        dir.path(),
        &spec,
        "127.0.0.1:0",
        &["--out", "out", "--idle-timeout", "200ms"],
    );
    let mut s = connect(server.addr);
    s.write_all(line("a", 0).as_bytes()).unwrap();
    wait_ack(&mut s, 1);
    // Idle for a second: the watermark moves about a second past the last event.
    std::thread::sleep(Duration::from_millis(1200));
    s.write_all(line("a", 500).as_bytes()).unwrap();
    s.write_all(line("a", 5_000).as_bytes()).unwrap();
    wait_ack(&mut s, 3);
    drop(s);
    server.stop();
    let got = reasons(&dir.path().join("out"));
    assert_eq!(got.get("late"), Some(&1), "{got:?}");
    let rows = counts(&dir.path().join("out"));
    assert!(rows.len() == 1 && rows[0].ends_with(", 2"), "{rows:?}");
}

#[test]
fn a_name_repeated_in_a_line_counts_once_against_max_field_names() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &count_spec(dir.path()), "127.0.0.1:0", &["--out", "out"]);
    // 800 KB: 100,001 objects with one new name `q`, beyond the default 100,000 names if each
    // occurrence counted. Then the same with the name spelled with an escape, and a good line.
    let objects = vec![r#"{"q":1}"#; 100_001].join(",");
    let mut bytes = format!("{{\"ts\":1700000000000,\"type\":\"a\",\"who\":\"many\",\"l\":[{objects}]}}\n");
    let escaped = vec![r#"{"\u0071":1,"r":2}"#; 100].join(",");
    bytes.push_str(&format!(
        "{{\"ts\":1700000000001,\"type\":\"a\",\"who\":\"escaped\",\"l\":[{escaped}]}}\n"
    ));
    bytes.push_str(&line("after", 2));
    let mut s = connect(server.addr);
    s.write_all(bytes.as_bytes()).unwrap();
    wait_ack(&mut s, 3);
    drop(s);
    server.stop();
    let got = reasons(&dir.path().join("out"));
    assert!(got.is_empty(), "{got:?}");
    let rows = counts(&dir.path().join("out"));
    assert_eq!(rows.len(), 3, "{rows:?}");
}

/// A socket that sends a byte every 100 ms and never a newline, until the server closes it:
/// how long it stayed open and what the server said.
fn slow_loris(addr: std::net::SocketAddr) -> (Duration, String) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let started = Instant::now();
    let mut said = Vec::new();
    let mut buf = [0u8; 1024];
    while started.elapsed() < Duration::from_secs(20) {
        if s.write_all(b"{").is_err() {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => said.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    (started.elapsed(), String::from_utf8_lossy(&said).into_owned())
}

#[test]
fn sockets_without_a_hello_cannot_hold_the_connection_slots() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &count_spec(dir.path()),
        "127.0.0.1:0",
        &[
            "--out",
            "out",
            "--auth-token",
            "s3cret",
            "--max-connections",
            "8",
            "--max-pending-connections",
            "4",
            "--handshake-timeout",
            "500ms",
        ],
    );
    let addr = server.addr;
    let slow: Vec<_> = (0..8).map(|_| std::thread::spawn(move || slow_loris(addr))).collect();
    std::thread::sleep(Duration::from_millis(200));
    // A client with the token gets in at once, while the slow sockets still send bytes.
    let started = Instant::now();
    let mut client = connect(addr);
    client
        .write_all(b"{\"hello\":1,\"client\":\"good\",\"token\":\"s3cret\"}\n")
        .unwrap();
    wait_ack(&mut client, 0);
    client
        .write_all((line("good", 0) + &line("good", 1)).as_bytes())
        .unwrap();
    wait_ack(&mut client, 2);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    // Every slow socket is closed with an error soon after the handshake timeout: bytes do not
    // extend it.
    for s in slow {
        let (open, said) = s.join().unwrap();
        assert!(open < Duration::from_secs(3), "a slow socket stayed open {open:?}");
        assert!(said.contains("\"error\""), "{said}");
    }
    drop(client);
    let summary = server.stop();
    let count = |what: &str| -> u64 {
        let at = summary.find(what).unwrap_or_else(|| panic!("{what}: {summary}")) + what.len();
        let digits: String = summary[at..].chars().take_while(char::is_ascii_digit).collect();
        digits.parse().unwrap()
    };
    assert_eq!(count("refused ") + count("timed out "), 8, "{summary}");
    assert!(count("timed out ") >= 1, "{summary}");
    let rows = counts(&dir.path().join("out"));
    assert!(rows.len() == 1 && rows[0].ends_with(", 2"), "{rows:?}");
}

#[test]
fn a_far_future_time_is_dead_lettered_against_the_wall_clock_and_replayed_alike() {
    let dir = tempfile::tempdir().unwrap();
    let spec = count_spec(dir.path());
    let flags = ["--out", "out", "--wal", "wal", "--idle-timeout", "off"];
    let server = Server::start(dir.path(), &spec, "127.0.0.1:0", &flags);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let event = |t: &str| format!("{{\"ts\":\"{t}\",\"type\":\"a\",\"who\":\"w\"}}\n");
    let honest = |i: i64| event(&sluice::value::format_time(now - 3_600_000 + i * 1000));
    let mut text: String = (0..10).map(honest).collect();
    text.push_str(&event("9999-12-31T23:59:59Z"));
    text.extend((10..1010).map(honest));
    let mut s = connect(server.addr);
    s.write_all(b"{\"hello\":1,\"client\":\"c\"}\n").unwrap();
    wait_ack(&mut s, 0);
    s.write_all(text.as_bytes()).unwrap();
    wait_ack(&mut s, 1011);
    drop(s);
    // The lines are in the log with their arrival time: a restart replays the same decisions.
    server.crash();
    let server = Server::start(dir.path(), &spec, "127.0.0.1:0", &flags);
    let summary = server.stop();
    assert!(!summary.contains("log replayed 0 records"), "{summary}");
    let got = reasons(&dir.path().join("out"));
    assert_eq!(got.get("future_time"), Some(&1), "{got:?}");
    assert_eq!(got.len(), 1, "{got:?}");
    let total: u64 = counts(&dir.path().join("out"))
        .iter()
        .map(|r| r.rsplit(", ").next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 1010);
}
