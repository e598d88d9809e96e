//! Named clients' offsets expire (`sluice serve --client-retention`): a client without a hello
//! or a line for the retention is forgotten, across restarts too, and comes back as a new one.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use crate::serve_util::{connect, outputs, wait_ack, Server, COUNT_SPEC};

/// A connection of `client`, and the acknowledgement its hello was answered with.
fn hello(addr: SocketAddr, client: &str) -> (TcpStream, u64) {
    let mut s = connect(addr);
    s.write_all(format!("{{\"hello\":1,\"client\":\"{client}\"}}\n").as_bytes())
        .unwrap();
    let mut reply = String::new();
    BufReader::new(s.try_clone().unwrap()).read_line(&mut reply).unwrap();
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{e}: {reply}"));
    let ack = v["ack"].as_u64().unwrap_or_else(|| panic!("{reply}"));
    (s, ack)
}

/// Sends `n` lines of `who` (numbered from the connection's next offset, which is `from`) and
/// waits until they are acknowledged; then closes the connection.
fn lines(mut s: TcpStream, who: &str, from: u64, n: u64) {
    for i in 0..n {
        let line = format!(
            "{{\"ts\":{},\"type\":\"x\",\"who\":\"{who}\"}}\n",
            1_700_000_000_000u64 + i
        );
        s.write_all(line.as_bytes()).unwrap();
    }
    wait_ack(&mut s, from + n);
    s.shutdown(Shutdown::Write).unwrap();
    let _ = s.read_to_end(&mut Vec::new());
}

/// The count of each client, from the `counts` output.
fn counts(out: &Path) -> Vec<String> {
    outputs(out)["counts"].clone()
}

#[test]
fn idle_clients_expire_across_restarts_and_a_returning_one_is_new() {
    // Activity is persisted through the log (no checkpoint) and through checkpoints.
    for interval in ["off", "50ms"] {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().join("counts.toml");
        std::fs::write(&spec, COUNT_SPEC).unwrap();
        let flags = [
            "--wal",
            "wal",
            "--out",
            "out",
            "--idle-timeout",
            "off",
            "--client-retention",
            "3s",
            "--checkpoint-interval",
            interval,
        ];
        let server = Server::start(dir.path(), &spec, "127.0.0.1:0", &flags);
        let addr = server.addr;
        let (a, ack) = hello(addr, "a");
        assert_eq!(ack, 0, "a new client");
        lines(a, "a", 0, 5);
        let (b, _) = hello(addr, "b");
        lines(b, "b", 0, 3);
        // Within the retention, a client is known, also after a crash.
        server.crash();
        let server = Server::start(dir.path(), &spec, &addr.to_string(), &flags);
        let (a, ack) = hello(addr, "a");
        assert_eq!(ack, 5, "{interval}: a known client resumes after its durable lines");
        drop(a);
        let (b, ack) = hello(addr, "b");
        assert_eq!(ack, 3, "{interval}");
        drop(b);

        // Past the retention, a client is forgotten: a returning one is new, and lines it sends
        // again from its first are applied again.
        std::thread::sleep(Duration::from_millis(3_500));
        let (a, ack) = hello(addr, "a");
        assert_eq!(ack, 0, "{interval}: an expired client is a new one");
        lines(a, "a", 0, 5);
        // Expiry counts the time the server was down: activity is persisted.
        let (c, _) = hello(addr, "c");
        lines(c, "c", 0, 2);
        server.crash();
        std::thread::sleep(Duration::from_millis(3_500));
        let server = Server::start(dir.path(), &spec, &addr.to_string(), &flags);
        let (c, ack) = hello(addr, "c");
        assert_eq!(ack, 0, "{interval}: c expired while the server was down");
        drop(c);
        let summary = server.stop();
        assert!(summary.contains("expired)"), "{summary}");
        let expired: u64 = summary
            .split(" expired)")
            .next()
            .and_then(|s| s.rsplit('(').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{summary}"));
        assert!(
            expired >= 2,
            "{interval}: a (or b) and c expired in this process: {summary}"
        );
        let rows = counts(&dir.path().join("out"));
        let n = |who: &str| -> u64 {
            let row = rows.iter().find(|r| r.starts_with(&format!("\"{who}\""))).unwrap();
            row.rsplit(", ").next().unwrap().parse().unwrap()
        };
        assert_eq!((n("a"), n("b"), n("c")), (10, 3, 2), "{interval}: {rows:?}");
    }
}

/// `sluice send` with more connections than lines: the connections without lines never say
/// hello, and the others waited for them, the whole `--patience`, before sending.
#[test]
fn send_with_more_connections_than_lines_does_not_wait_for_the_idle_ones() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("counts.toml");
    std::fs::write(&spec, COUNT_SPEC).unwrap();
    let server = Server::start(dir.path(), &spec, "127.0.0.1:0", &["--out", "out"]);
    let file = dir.path().join("three.ndjson");
    let lines: String = (0..3)
        .map(|i| format!("{{\"ts\":{},\"type\":\"a\",\"who\":\"w\"}}\n", 1_700_000_000_000u64 + i))
        .collect();
    std::fs::write(&file, lines).unwrap();
    let started = std::time::Instant::now();
    let report = crate::serve_util::send(
        dir.path(),
        &file,
        server.addr,
        &["--connections", "8", "--patience", "30s"],
    );
    let took = started.elapsed();
    server.stop();
    assert!(took < Duration::from_secs(15), "took {took:?}: {report}");
    let rows = outputs(&dir.path().join("out"))["counts"].clone();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].ends_with(", 3"), "{rows:?}");
}

/// A hello with a client id that another connection holds fences that connection, as Kafka
/// fences a producer of an older epoch: it gets an error line and is closed, and lines it sends
/// after are not taken. Two senders under one id would otherwise number different lines alike,
/// and the later of each pair would be skipped as resent.
#[test]
fn a_second_connection_of_a_client_fences_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("counts.toml");
    std::fs::write(&spec, COUNT_SPEC).unwrap();
    let flags = ["--out", "out", "--idle-timeout", "off"];
    let server = Server::start(dir.path(), &spec, "127.0.0.1:0", &flags);
    let (mut first, ack) = hello(server.addr, "dup");
    assert_eq!(ack, 0);
    let line = |who: &str, i: u64| {
        format!(
            "{{\"ts\":{},\"type\":\"x\",\"who\":\"{who}\"}}\n",
            1_700_000_000_000u64 + i
        )
    };
    for i in 0..4 {
        first.write_all(line("dup", i).as_bytes()).unwrap();
    }
    wait_ack(&mut first, 4);

    let (second, ack) = hello(server.addr, "dup");
    assert_eq!(ack, 4, "the second connection resumes after the first's durable lines");
    // The first connection's later lines are not taken, whether the server reads them or not.
    for i in 4..7 {
        let _ = first.write_all(line("stale", i).as_bytes());
    }
    let mut told = String::new();
    let _ = BufReader::new(first.try_clone().unwrap()).read_to_string(&mut told);
    assert!(told.contains("fenced: client id `dup`"), "{told}");
    lines(second, "dup", 4, 2);

    let summary = server.stop();
    assert!(summary.contains("fenced 1"), "{summary}");
    let rows = counts(&dir.path().join("out"));
    assert!(rows.iter().all(|r| !r.contains("stale")), "{rows:?}");
    let dup = rows.iter().find(|r| r.starts_with("\"dup\"")).unwrap();
    assert!(dup.ends_with(", 6"), "{rows:?}");
}
