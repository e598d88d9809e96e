//! `sluice serve --http --subscribe` end to end over loopback: status and metrics show the right
//! counts, lookups in live collections equal the Parquet outputs written at shutdown (two
//! workers), subscriptions accumulate to those outputs, a slow subscriber is cut off with an
//! error line, and a token guards every endpoint.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::serve_util::{connect, generate, learning_stream, progress_of, reasons, send, wait_ack, Server};

/// A `sluice serve` with `--http` and `--subscribe` on ephemeral ports; dropping it kills it.
pub(crate) struct Live {
    pub(crate) server: Server,
    pub(crate) listen: SocketAddr,
    pub(crate) http: SocketAddr,
    subscribe: SocketAddr,
}

impl Live {
    fn start(dir: &Path, args: &[&str]) -> Live {
        Live::start_spec(dir, &learning_stream(), args)
    }

    /// `sluice serve SPEC` with `--http`, `--subscribe`, `--out served` and no idle timeout.
    pub(crate) fn start_spec(dir: &Path, spec: &Path, args: &[&str]) -> Live {
        let mut all = vec!["--http", "127.0.0.1:0", "--subscribe", "127.0.0.1:0"];
        all.extend(["--out", "served", "--idle-timeout", "off"]);
        all.extend_from_slice(args);
        let server = Server::start(dir, spec, "127.0.0.1:0", &all);
        let (http, subscribe) = (server.printed_addr("http on "), server.printed_addr("subscribe on "));
        Live {
            listen: server.addr,
            http,
            subscribe,
            server,
        }
    }

    /// SIGTERM, then waits for a clean exit (outputs written); returns what it printed.
    pub(crate) fn stop(self) -> String {
        self.server.stop()
    }
}

struct Response {
    status: u16,
    headers: String,
    body: String,
}

/// Reads a status line and headers; returns the status and the headers (lowercased).
fn head(reader: &mut impl BufRead) -> (u16, String) {
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let code = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut headers = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        headers.push_str(&line.to_ascii_lowercase());
    }
    (code, headers)
}

/// Sends a GET; `Connection: close`, so the body ends with the connection.
fn request(addr: SocketAddr, path: &str, token: Option<&str>) -> BufReader<TcpStream> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    BufReader::new(s)
}

/// The body of a chunked response, chunk by chunk, to `f`, until the last chunk.
fn dechunk(reader: &mut impl BufRead, mut f: impl FnMut(&[u8]) -> bool) {
    loop {
        let mut size = String::new();
        if reader.read_line(&mut size).unwrap_or(0) == 0 {
            return;
        }
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            return;
        }
        let mut chunk = vec![0; n + 2];
        reader.read_exact(&mut chunk).unwrap();
        if !f(&chunk[..n]) {
            return;
        }
    }
}

fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Response {
    let mut reader = request(addr, path, token);
    let (status, headers) = head(&mut reader);
    let mut body = Vec::new();
    if headers.contains("transfer-encoding: chunked") {
        dechunk(&mut reader, |c| {
            body.extend_from_slice(c);
            true
        });
    } else {
        reader.read_to_end(&mut body).unwrap();
    }
    let body = String::from_utf8(body).unwrap();
    Response { status, headers, body }
}

pub(crate) fn get_json(addr: SocketAddr, path: &str) -> Json {
    let r = get(addr, path, None);
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

/// Reads NDJSON lines until `{"done":true}`, an error line, or the end of the stream.
fn collect_lines(mut next: impl FnMut(&mut Vec<String>) -> bool) -> Vec<String> {
    let mut lines = Vec::new();
    while next(&mut lines) {
        if lines
            .last()
            .is_some_and(|l| l.contains("\"done\":true") || l.starts_with("{\"error\""))
        {
            break;
        }
    }
    lines
}

/// A TCP subscription, read on a thread; gives every line it received.
fn subscribe_tcp(addr: SocketAddr, request: &str) -> JoinHandle<Vec<String>> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(s);
    std::thread::spawn(move || {
        collect_lines(|lines| {
            let mut line = String::new();
            let more = reader.read_line(&mut line).unwrap_or(0) > 0;
            if more {
                lines.push(line.trim_end().to_string());
            }
            more
        })
    })
}

/// A chunked HTTP subscription, read on a thread.
fn subscribe_http(addr: SocketAddr, path: &str) -> JoinHandle<Vec<String>> {
    let mut reader = request(addr, path, None);
    let (status, headers) = head(&mut reader);
    assert_eq!(status, 200, "{path}");
    assert!(headers.contains("application/x-ndjson"), "{headers}");
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        let mut partial = Vec::new();
        dechunk(&mut reader, |chunk| {
            partial.extend_from_slice(chunk);
            while let Some(i) = partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = partial.drain(..=i).collect();
                lines.push(String::from_utf8(line).unwrap().trim_end().to_string());
            }
            !lines.last().is_some_and(|l| l.contains("\"done\":true"))
        });
        lines
    })
}

/// A row as canonical JSON text: numbers as sluice reads them, so that a Float64 column's `8399.0`
/// and a live view's int `8399` (one value: JSON does not tell them apart) are the same text.
fn canonical(row: &Json) -> String {
    sluice::value::Value::from_json(row.clone()).to_json().to_string()
}

/// Accumulates subscription lines: row (canonical JSON) → sum of diffs, zeros dropped; checks
/// that the stream ended with `{"done":true}` and that its progress lines rose and came after
/// every change below them.
fn accumulate(lines: &[String]) -> BTreeMap<String, i64> {
    assert_eq!(
        lines.last().map(String::as_str),
        Some("{\"done\":true}"),
        "{:?}",
        lines.last()
    );
    assert!(!progress_of(lines).is_empty(), "no progress line");
    let mut acc: BTreeMap<String, i64> = BTreeMap::new();
    for line in &lines[..lines.len() - 1] {
        let v: Json = serde_json::from_str(line).unwrap();
        if v.get("progress").is_some() {
            continue;
        }
        assert!(v["time"].is_u64(), "{line}");
        *acc.entry(canonical(&v["row"])).or_default() += v["diff"].as_i64().unwrap();
    }
    acc.retain(|_, n| *n != 0);
    acc
}

/// An output's current contents from its Parquet parts: row (canonical JSON, without `time` and
/// `diff`) → net count.
pub(crate) fn parquet_contents(dir: &Path) -> BTreeMap<String, i64> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use sluice::source::arrow_read::Col;
    let mut acc: BTreeMap<String, i64> = BTreeMap::new();
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    parts.sort();
    for part in parts {
        let file = std::fs::File::open(&part).unwrap();
        for batch in ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap() {
            let batch = batch.unwrap();
            let schema = batch.schema();
            let cols: Vec<Col> = batch.columns().iter().map(Col::new).collect();
            for row in 0..batch.num_rows() {
                let mut object = serde_json::Map::new();
                let mut diff = 1;
                for (field, col) in schema.fields().iter().zip(&cols) {
                    match (field.name().as_str(), col.get(row)) {
                        ("time", _) => {}
                        ("diff", sluice::value::Value::Int(d)) => diff = d,
                        (name, value) => {
                            object.insert(name.to_string(), value.to_json());
                        }
                    }
                }
                // Through text and back, as the server's rows come: serde_json's float parsing
                // may differ from the exact value in the last place, but it does so alike.
                let text = Json::Object(object).to_string();
                *acc.entry(canonical(&serde_json::from_str(&text).unwrap())).or_default() += diff;
            }
        }
    }
    acc.retain(|_, n| *n != 0);
    acc
}

/// Asserts two row → count maps are equal, showing a few rows that differ.
pub(crate) fn assert_same(what: &str, got: &BTreeMap<String, i64>, expected: &BTreeMap<String, i64>) {
    if got == expected {
        return;
    }
    let extra: Vec<_> = got
        .iter()
        .filter(|(k, v)| expected.get(*k) != Some(v))
        .take(3)
        .collect();
    let missing: Vec<_> = expected
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(v))
        .take(3)
        .collect();
    panic!(
        "{what}: {} rows, expected {}\n  unexpected: {extra:?}\n  missing: {missing:?}",
        got.len(),
        expected.len()
    );
}

/// The rows of a lookup, as canonical JSON → count.
pub(crate) fn lookup(addr: SocketAddr, path: &str) -> BTreeMap<String, i64> {
    let v = get_json(addr, path);
    let mut acc = BTreeMap::new();
    for row in v["rows"].as_array().unwrap() {
        *acc.entry(canonical(row)).or_insert(0) += 1;
    }
    acc
}

/// Each user's rows of `user_hourly_attempts`, looked up in the live view.
fn user_lookups(addr: SocketAddr, users: &[i64]) -> Vec<BTreeMap<String, i64>> {
    users
        .iter()
        .map(|u| lookup(addr, &format!("/collections/user_hourly_attempts?user_id={u}")))
        .collect()
}

/// Asserts each user's looked-up rows equal that user's rows in the Parquet output under `out`.
fn assert_user_lookups(out: &Path, users: &[i64], live: &[BTreeMap<String, i64>], when: &str) {
    let parquet = parquet_contents(&out.join("user_hourly_attempts"));
    for (user, rows) in users.iter().zip(live) {
        let expected: BTreeMap<String, i64> = parquet
            .iter()
            .filter(|(row, _)| serde_json::from_str::<Json>(row).unwrap()["user_id"] == *user)
            .map(|(r, n)| (r.clone(), *n))
            .collect();
        assert!(!expected.is_empty(), "user {user} has no rows");
        assert_same(&format!("user {user}{when}"), rows, &expected);
    }
}

/// `name{labels}` → value of every sample in a Prometheus exposition.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (
                k.to_string(),
                if v == "+Inf" { f64::INFINITY } else { v.parse().unwrap() },
            )
        })
        .collect()
}

/// Sends one event far in the future as `client` (the sender's own partition, after its
/// lines): the watermark passes every event sent before, so their updates reach the outputs
/// while the server runs. From another client it would not: the sender's partition holds the
/// watermark (there is no idle timeout here).
const FLUSH_TIME: &str = "2024-03-10T00:00:00Z";
const FLUSH_MS: u64 = 1_710_028_800_000;

fn flush(addr: SocketAddr, client: &str) {
    send_line_as(
        addr,
        client,
        &format!(r#"{{"event_time":"{FLUSH_TIME}","event_type":"flush"}}"#),
    );
}

/// Sends `line` as `client`, after the lines it sent before, and waits until it is acknowledged.
pub(crate) fn send_line_as(addr: SocketAddr, client: &str, line: &str) {
    let mut s = connect(addr);
    s.write_all(format!("{{\"hello\":1,\"client\":\"{client}\"}}\n").as_bytes())
        .unwrap();
    let mut reply = String::new();
    BufReader::new(s.try_clone().unwrap()).read_line(&mut reply).unwrap();
    let durable = serde_json::from_str::<Json>(&reply).unwrap()["ack"].as_u64().unwrap();
    s.write_all(line.as_bytes()).unwrap();
    s.write_all(b"\n").unwrap();
    wait_ack(&mut s, durable + 1);
}

/// Waits until every live collection's frontier has reached `t`.
pub(crate) fn wait_frontier(addr: SocketAddr, t: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = get_json(addr, "/collections");
        let all = v["collections"].as_array().unwrap();
        if !all.is_empty() && all.iter().all(|c| c["frontier"].as_u64().is_some_and(|f| f >= t)) {
            return;
        }
        assert!(Instant::now() < deadline, "frontiers stuck: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Users with attempts in the first `n` lines of `file`.
fn users(file: &Path, n: usize) -> Vec<i64> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut users: Vec<i64> = text
        .lines()
        .take(n)
        .filter_map(|l| serde_json::from_str::<Json>(l).ok())
        .filter(|v| v["event_type"] == "attempt")
        .filter_map(|v| v["user_id"].as_i64())
        .collect();
    users.sort();
    users.dedup();
    users
}

#[test]
fn lookups_status_and_metrics_equal_the_parquet_outputs_with_two_workers() {
    let dir = tempfile::tempdir().unwrap();
    let events = generate(dir.path(), "events.ndjson", 20_000, 21);
    let server = Live::start(dir.path(), &["--workers", "2"]);
    send(dir.path(), &events, server.listen, &["--client", "c"]);
    flush(server.listen, "c-0");
    let watermark = FLUSH_MS - 120_000;
    wait_frontier(server.http, watermark);

    let status = get_json(server.http, "/status");
    assert_eq!(status["workers"], 2);
    assert_eq!(status["sources"][0]["name"], "events");
    assert_eq!(status["sources"][0]["watermark_ms"], watermark);
    assert!(status["sources"][0]["lag_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(status["connections"]["total"], 2, "{status}");
    assert_eq!(status["lines_received"], 20_001);
    assert_eq!(status["queues"]["worker_batches"].as_array().unwrap().len(), 2);

    let collections = get_json(server.http, "/collections");
    let names: Vec<&str> = collections["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for name in ["user_hourly_attempts", "system_5min_metrics", "dead_letters"] {
        assert!(names.contains(&name), "{names:?}");
    }
    let columns = &collections["collections"][0]["columns"];
    assert_eq!(columns[0], "user_id");
    assert!(get(server.http, "/collections/nope", None).status == 404);
    assert_eq!(
        get(server.http, "/collections/user_hourly_attempts?nope=1", None).status,
        400
    );

    // Lookups for several users, and by a non-key column, taken while the server runs.
    let users = users(&events, 2_000);
    assert!(users.len() >= 5, "{users:?}");
    let picked: Vec<i64> = users.iter().step_by(users.len() / 5).take(5).copied().collect();
    let live = user_lookups(server.http, &picked);
    let by_window = lookup(
        server.http,
        &format!(
            "/collections/user_hourly_attempts?user_id={}&window_start=2024-03-04T00:00:00Z",
            picked[0]
        ),
    );

    let metrics = get(server.http, "/metrics", None);
    assert!(
        metrics.headers.contains("text/plain; version=0.0.4"),
        "{}",
        metrics.headers
    );
    let m = samples(&metrics.body);
    let summary = server.stop();

    let out = dir.path().join("served");
    assert_user_lookups(&out, &picked, &live, "");
    assert!(!by_window.is_empty() && by_window.len() <= live[0].len());
    assert!(by_window.keys().all(|k| live[0].contains_key(k)));

    // Every event but the late ones was processed; dead letters match the Parquet output.
    let late = reasons(&out).get("late").copied().unwrap_or(0);
    let served: u64 = summary
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{summary}"));
    assert_eq!(m["events_processed_total"], served as f64);
    assert_eq!(served as usize + late, 20_001);
    assert_eq!(m["events_dead_lettered_total{reason=\"late\"}"], late as f64);
    assert_eq!(m["events_enriched_total"], 0.0);
    assert_eq!(m["events_filtered_total"], 0.0);
    assert_eq!(m["events_deduplicated_total"], 0.0);
    assert!(m["processing_duration_seconds_count"] > 0.0);
    assert_eq!(
        m["processing_duration_seconds_bucket{le=\"+Inf\"}"],
        m["processing_duration_seconds_count"]
    );
    for w in 0..2 {
        let u = m[&format!("worker_utilization{{worker=\"{w}\"}}")];
        assert!((0.0..=1.0).contains(&u), "{u}");
        assert_eq!(m[&format!("worker_queue_batches{{worker=\"{w}\"}}")], 0.0);
    }
    assert_eq!(m["connections_total"], 2.0);
    assert_eq!(m["lines_received_total"], 20_001.0);
    assert_eq!(m["queue_bytes"], 0.0);
}

#[test]
fn subscriptions_accumulate_to_the_final_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let events = generate(dir.path(), "events.ndjson", 12_000, 22);
    let text = std::fs::read_to_string(&events).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (first, second) = (dir.path().join("first.ndjson"), dir.path().join("second.ndjson"));
    std::fs::write(&first, lines[..6_000].join("\n") + "\n").unwrap();
    std::fs::write(&second, lines[6_000..].join("\n") + "\n").unwrap();
    let user = users(&events, 500)[0];

    let server = Live::start(dir.path(), &["--workers", "2"]);
    // From the start, over TCP, and over HTTP with a filter.
    let from_start = subscribe_tcp(server.subscribe, "{\"subscribe\":\"user_hourly_attempts\"}\n");
    let filtered = subscribe_http(server.http, &format!("/subscribe/user_hourly_attempts?user_id={user}"));
    send(dir.path(), &first, server.listen, &[]);
    // Midway: a snapshot of what the first half produced, then the changes.
    let midway = subscribe_http(server.http, "/subscribe/jurisdiction_daily_stats");
    let insert_only = subscribe_tcp(server.subscribe, "{\"subscribe\":\"system_5min_metrics\"}\n");
    send(dir.path(), &second, server.listen, &["--client", "second"]);
    server.stop();

    let out = dir.path().join("served");
    let final_rows = parquet_contents(&out.join("user_hourly_attempts"));
    assert!(!final_rows.is_empty());
    assert_same("from the start", &accumulate(&from_start.join().unwrap()), &final_rows);
    let mine: BTreeMap<String, i64> = final_rows
        .into_iter()
        .filter(|(row, _)| serde_json::from_str::<Json>(row).unwrap()["user_id"] == user)
        .collect();
    assert!(!mine.is_empty());
    assert_same("filtered", &accumulate(&filtered.join().unwrap()), &mine);
    let midway = midway.join().unwrap();
    assert!(midway.len() > 2, "a snapshot and changes");
    let expected = parquet_contents(&out.join("jurisdiction_daily_stats"));
    assert_same("midway", &accumulate(&midway), &expected);
    let expected = parquet_contents(&out.join("system_5min_metrics"));
    assert_same("insert-only", &accumulate(&insert_only.join().unwrap()), &expected);
}

#[test]
fn a_slow_subscriber_is_disconnected_with_an_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let events = generate(dir.path(), "events.ndjson", 3_000, 23);
    let server = Live::start(dir.path(), &["--subscriber-queue", "1"]);
    let sub = subscribe_tcp(server.subscribe, "{\"subscribe\":\"user_hourly_attempts\"}\n");
    send(dir.path(), &events, server.listen, &["--client", "c"]);
    flush(server.listen, "c-0");
    let lines = sub.join().unwrap();
    let last = lines.last().expect("an error line");
    assert!(last.starts_with("{\"error\":\"subscriber too slow"), "{last}");
    // Unknown collections and bad requests get an error line too.
    let unknown = subscribe_tcp(server.subscribe, "{\"subscribe\":\"nope\"}\n")
        .join()
        .unwrap();
    assert_eq!(unknown, vec!["{\"error\":\"unknown collection `nope`\"}"]);
    server.stop();
}

#[test]
fn a_token_is_required_for_http_and_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let server = Live::start(dir.path(), &["--auth-token", "s3cret"]);
    for path in [
        "/status",
        "/metrics",
        "/collections",
        "/collections/user_hourly_attempts?user_id=1",
    ] {
        let r = get(server.http, path, None);
        assert_eq!(r.status, 401, "{path}");
        assert!(r.headers.contains("www-authenticate: bearer"), "{}", r.headers);
        assert_eq!(get(server.http, path, Some("wrong")).status, 401, "{path}");
        assert_eq!(get(server.http, path, Some("s3cret")).status, 200, "{path}");
    }
    assert_eq!(get(server.http, "/subscribe/dead_letters", None).status, 401);
    let denied = subscribe_tcp(server.subscribe, "{\"subscribe\":\"dead_letters\"}\n")
        .join()
        .unwrap();
    assert!(denied[0].starts_with("{\"error\":\"unauthorized"), "{denied:?}");
    let wrong = subscribe_tcp(server.subscribe, "{\"subscribe\":\"dead_letters\",\"token\":\"x\"}\n");
    assert!(wrong.join().unwrap()[0].starts_with("{\"error\":\"unauthorized"));
    // With the token (in the request, or on a line of its own first), the stream runs until
    // the server stops.
    let inline = subscribe_tcp(
        server.subscribe,
        "{\"subscribe\":\"dead_letters\",\"token\":\"s3cret\"}\n",
    );
    let first = subscribe_tcp(
        server.subscribe,
        "{\"token\":\"s3cret\"}\n{\"subscribe\":\"dead_letters\"}\n",
    );
    std::thread::sleep(Duration::from_millis(200));
    server.stop();
    for lines in [inline.join().unwrap(), first.join().unwrap()] {
        // No dead letters: the snapshot's end (a progress line), then the end of the output.
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("{\"progress\":"), "{lines:?}");
        assert_eq!(lines[1], "{\"done\":true}");
    }
}

/// After checkpoints and a crash, a restarted server's live views start from the checkpointed
/// parts: lookups still equal the Parquet outputs, rows written before the crash included.
#[test]
fn live_views_after_a_restart_start_from_the_checkpointed_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let events = generate(dir.path(), "events.ndjson", 20_000, 22);
    let args = ["--wal", "wal", "--checkpoint-interval", "100ms"];
    let server = Live::start(dir.path(), &args);
    send(dir.path(), &events, server.listen, &["--client", "c"]);
    // Wait for a checkpoint that has written rows of the aggregate.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let manifest = std::fs::read_to_string(dir.path().join("wal/checkpoint.json")).unwrap_or_default();
        let parts = serde_json::from_str::<Json>(&manifest)
            .ok()
            .and_then(|m| m["outputs"]["user_hourly_attempts"]["parts"].as_u64());
        if parts.is_some_and(|p| p > 0) {
            break;
        }
        assert!(Instant::now() < deadline, "no checkpoint with parts: {manifest}");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(server);

    let server = Live::start(dir.path(), &args);
    flush(server.listen, "c-0");
    wait_frontier(server.http, FLUSH_MS - 120_000);
    let users = users(&events, 2_000);
    let picked: Vec<i64> = users.iter().step_by(users.len() / 5).take(5).copied().collect();
    let live = user_lookups(server.http, &picked);
    server.stop();
    assert_user_lookups(&dir.path().join("served"), &picked, &live, " after a restart");
}
