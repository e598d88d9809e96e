//! Dead letters keep memory bounded: a gigabyte of malformed lines of about 1 MB each, with the
//! write-ahead log and checkpoints on, leaves the server's RSS near its baseline, and each
//! dead letter keeps a prefix of its record with the whole record's length and hash.

use std::io::Write;
use std::time::Duration;

use crate::serve_util::{connect, dead_letters, wait_ack, Server, COUNT_SPEC};

#[test]
fn a_gigabyte_of_bad_lines_keeps_rss_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("counts.toml");
    std::fs::write(&spec, COUNT_SPEC).unwrap();
    let server = Server::start(
        dir.path(),
        &spec,
        "127.0.0.1:0",
        // A 16 MiB queue (the default is 64): what is legitimately in flight varies less.
        &[
            "--out",
            "out",
            "--wal",
            "wal",
            "--checkpoint-interval",
            "200ms",
            "--queue-bytes",
            "16777216",
        ],
    );
    let (base, _) = server.memory_kib();
    let pid = server.pid();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (stop, peak) = (std::sync::Arc::clone(&stop), std::sync::Arc::clone(&peak));
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    // A malformed line just under the 1 MiB line limit: an object that never closes.
    let mut bad = b"{\"ts\":1700000000000,\"type\":\"a\",\"who\":\"".to_vec();
    bad.resize(1_000_000, b'x');
    bad.push(b'\n');
    let (half, lines) = (550, 1100);
    let mut s = connect(server.addr);
    let mut peaks = Vec::new();
    for sent in [half, lines] {
        for _ in 0..half {
            s.write_all(&bad).unwrap();
        }
        wait_ack(&mut s, sent);
        // Let a checkpoint or two write the dead letters out.
        std::thread::sleep(Duration::from_millis(600));
        peaks.push(peak.load(std::sync::atomic::Ordering::Relaxed));
    }
    s.write_all(b"{\"ts\":1700000000000,\"type\":\"a\",\"who\":\"ok\"}\n")
        .unwrap();
    wait_ack(&mut s, lines + 1);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    server.stop();
    // Memory follows the queues and buffers in flight, not what has been rejected so far: the
    // second half-gigabyte adds (almost) nothing to the peak of the first.
    let (first, second) = (peaks[0], peaks[1]);
    eprintln!("RSS: base {base} KiB, peak {first} KiB after 550 MB, {second} KiB after 1.1 GB");
    assert!(
        second < first + 64 * 1024,
        "RSS peak grew from {first} KiB after 550 MB to {second} KiB after 1.1 GB of bad lines"
    );
    assert!(
        second < base + 256 * 1024,
        "RSS grew from {base} KiB to {second} KiB while 1.1 GB of bad lines arrived"
    );
    let letters = dead_letters(&dir.path().join("out"));
    assert_eq!(letters.len(), lines as usize);
    assert!(
        letters.iter().all(|l| l.reason == "malformed_json"),
        "{:?}",
        letters[0].reason
    );
    // Each record is cut to the default 4096 bytes, and says how long the line was.
    assert!(
        letters.iter().all(|l| l.record.len() == 4096),
        "a record was not clipped"
    );
    let table = crate::util::parquet_lines(&dir.path().join("out/dead_letters"));
    assert!(
        table.iter().all(|row| row.contains("1000000")),
        "record_bytes holds the original length: {}",
        &table[0][..200]
    );
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
