//! Helpers of the serve tests: a server child process that is always killed (a guard), raw
//! clients, reading outputs, and process memory and descriptors from `/proc`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::util::{parquet_lines, sluice, sluice_bin};

/// The learning aggregates over a tcp source.
pub fn learning_stream() -> PathBuf {
    crate::util::repo().join("dataflows/tcp/learning_stream.toml")
}

/// A small spec: events per client id per day, emitted once per window.
pub const COUNT_SPEC: &str = r#"
[pipeline]
name = "serve_counts"
tick = "1s"

[sources.events]
format = "tcp"
time_field = "ts"
type_field = "type"
allowed_lateness = "1h"

[[aggregates]]
name = "counts"
source = "events"
window = { tumbling = "1d" }
group_by = ["who"]
emit = "final"
measures.n = "count()"
"#;

/// A running `sluice serve`; dropping it kills the process.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    lines: mpsc::Receiver<String>,
}

impl Server {
    /// Starts `sluice serve SPEC --listen LISTEN ARGS...` in `dir` and waits until it listens.
    pub fn start(dir: &Path, spec: &Path, listen: &str, args: &[&str]) -> Server {
        let mut child = Command::new(sluice_bin())
            .arg("serve")
            .arg(spec)
            .args(["--listen", listen])
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sluice serve starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            lines,
        };
        let first = server
            .lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the server prints its address");
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected: {first}"));
        server.addr = addr.parse().unwrap();
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next address the server printed (see [`printed_addr`]).
    pub fn printed_addr(&self, prefix: &str) -> SocketAddr {
        printed_addr(&self.lines, prefix)
    }

    /// SIGTERM, then waits for a clean exit; returns what it printed after its address.
    pub fn stop(mut self) -> String {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "serve exited with {status}");
                break;
            }
            assert!(Instant::now() < deadline, "serve did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut out = String::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    /// SIGKILL, as a crash.
    pub fn crash(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Resident memory now and at peak, in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Open file descriptors.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The next address a server printed, on a line `PREFIX ADDR`: `listening on `, then `http on `
/// and `subscribe on ` when it has them.
pub fn printed_addr(lines: &mpsc::Receiver<String>, prefix: &str) -> SocketAddr {
    let line = lines
        .recv_timeout(Duration::from_secs(60))
        .expect("the server prints its addresses");
    let rest = line
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("expected `{prefix}`: {line}"));
    rest.parse().unwrap()
}

/// `sluice send FILE --to ADDR ARGS...`, checked.
pub fn send(dir: &Path, file: &Path, addr: SocketAddr, args: &[&str]) -> String {
    let mut all = vec!["send", file.to_str().unwrap(), "--to"];
    let addr = addr.to_string();
    all.push(&addr);
    all.extend_from_slice(args);
    let out = sluice(&all, dir);
    assert!(
        out.status.success(),
        "send failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A raw client.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s
}

/// Reads server lines until an acknowledgement of at least `n`.
pub fn wait_ack(stream: &mut TcpStream, n: u64) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "connection closed before ack {n}"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["ack"].as_u64().is_some_and(|a| a >= n) {
            return;
        }
    }
}

/// Writes everything, then reads whatever the server says until it closes.
pub fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = connect(addr);
    // The server may answer and close before everything is written (a refusal).
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// `sluice generate learning` into `dir/NAME`.
pub fn generate(dir: &Path, name: &str, events: usize, seed: u64) -> PathBuf {
    let out = sluice(
        &[
            "generate",
            "learning",
            "--events",
            &events.to_string(),
            "--seed",
            &seed.to_string(),
            "--out",
            name,
        ],
        dir,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir.join(name)
}

/// `sluice run SPEC --input events=FILE --out OUT`, checked.
pub fn replay(dir: &Path, spec: &Path, file: &Path, out: &str, args: &[&str]) {
    let input = format!("events={}", file.display());
    let mut all = vec!["run", spec.to_str().unwrap(), "--input", &input, "--out", out, "-q"];
    all.extend_from_slice(args);
    let o = sluice(&all, dir);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Every output under `out` (sorted rows), dead letters without their location (a file line
/// in replay, a client offset when served).
pub fn outputs(out: &Path) -> BTreeMap<String, Vec<String>> {
    let mut all = BTreeMap::new();
    for entry in std::fs::read_dir(out).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name == "dead_letters" {
            let mut rows: Vec<String> = dead_letters(out)
                .into_iter()
                .map(|d| format!("{} | {} | {}", d.reason, d.detail, d.record))
                .collect();
            rows.sort();
            all.insert(name, rows);
        } else {
            all.insert(name, parquet_lines(&path));
        }
    }
    all
}

pub struct Letter {
    pub reason: String,
    pub detail: String,
    pub location: String,
    pub record: String,
    /// The whole record's length in bytes, when its record was clipped.
    pub record_bytes: Option<i64>,
    /// The whole record's hash, when its record was clipped.
    pub record_hash: Option<String>,
}

/// The dead letters under `out`.
pub fn dead_letters(out: &Path) -> Vec<Letter> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use sluice::source::arrow_read::Col;
    let mut letters = Vec::new();
    let dir = out.join("dead_letters");
    let mut parts: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    parts.sort();
    for part in parts {
        let file = std::fs::File::open(&part).unwrap();
        for batch in ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap() {
            let batch = batch.unwrap();
            let col = |name: &str| batch.column_by_name(name).unwrap().clone();
            let (reason, detail, location, record) = (col("reason"), col("detail"), col("location"), col("record"));
            let (bytes, hash) = (col("record_bytes"), col("record_hash"));
            let cols = [
                Col::new(&reason),
                Col::new(&detail),
                Col::new(&location),
                Col::new(&record),
                Col::new(&bytes),
                Col::new(&hash),
            ];
            for row in 0..batch.num_rows() {
                let text = |i: usize| match cols[i].get(row) {
                    sluice::value::Value::Str(s) => s.to_string(),
                    other => other.to_string(),
                };
                letters.push(Letter {
                    reason: text(0),
                    detail: text(1),
                    location: text(2),
                    record: text(3),
                    record_bytes: match cols[4].get(row) {
                        sluice::value::Value::Int(n) => Some(n),
                        _ => None,
                    },
                    record_hash: match cols[5].get(row) {
                        sluice::value::Value::Str(s) => Some(s.to_string()),
                        _ => None,
                    },
                });
            }
        }
    }
    letters
}

/// Dead letters by reason.
pub fn reasons(out: &Path) -> BTreeMap<String, usize> {
    let mut map = BTreeMap::new();
    for d in dead_letters(out) {
        *map.entry(d.reason).or_default() += 1;
    }
    map
}

/// Checks the progress lines (`{"progress":T}`) among a subscription's lines: each is larger
/// than the one before, and no change that follows one has a time below it (every change below
/// `T` came first). Returns them.
pub fn progress_of(lines: &[String]) -> Vec<u64> {
    let mut progress: Vec<u64> = Vec::new();
    let mut snapshot = true;
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if let Some(t) = v.get("progress") {
            let t = t.as_u64().unwrap_or_else(|| panic!("{line}"));
            assert!(
                progress.last().is_none_or(|p| t > *p),
                "progress went back: {progress:?}, then {t}"
            );
            progress.push(t);
            snapshot = false;
        } else if let (Some(time), false) = (v.get("time"), snapshot) {
            let time = time.as_u64().unwrap_or_else(|| panic!("{line}"));
            let last = progress.last().copied().unwrap_or(0);
            assert!(time >= last, "a change at {time} after {{\"progress\":{last}}}: {line}");
        }
    }
    progress
}
