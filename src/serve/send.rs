//! `sluice send`: a client that streams an NDJSON or Parquet file to `sluice serve`, honours
//! acknowledgements, resends what was not acknowledged after a reconnect, and measures
//! throughput, send → acknowledgement latency and, with a subscription to one of the server's
//! outputs, send → output latency (`send/latency.rs`). It is the load generator of the serve tests
//! and benchmark.
//!
//! Line `i` of the file goes on connection `i % C`, whose client id is `ID-c` (`c` in `0..C`);
//! each connection numbers its lines from 1, so after a reconnect (or a server restart) the
//! server's hello reply says where to resume. No connection sends a line before every
//! connection has its hello answered (or `patience` has passed): the server's watermark is the
//! minimum over its clients ([`super::partitions`]), and a client counts from its hello, so the
//! first lines of one connection cannot move it past lines the others have not sent yet.

mod latency;
mod lines;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::protocol::{parse_reply, Reply};
use latency::{quantiles_ms, Follower, Probe};
pub use latency::{LatencyConfig, OutputLatency};
pub use lines::Lines;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{path}: {message}")]
    Input { path: String, message: String },
    #[error("the server refused: {0}")]
    Refused(String),
    #[error("subscription at {addr}: {message}")]
    Subscribe { addr: SocketAddr, message: String },
    #[error("{0}")]
    Gave(String),
}

/// How to send.
#[derive(Clone, Debug)]
pub struct SendConfig {
    pub to: SocketAddr,
    /// Lines per second over all connections; `None` sends as fast as acknowledgements allow.
    pub rate: Option<f64>,
    pub connections: usize,
    pub source: Option<String>,
    pub token: Option<String>,
    /// Client id prefix; connection `c` is `ID-c`.
    pub client: String,
    /// Most unacknowledged lines per connection.
    pub window: u64,
    /// Give up when a connection cannot be re-established, or no acknowledgement arrives, for
    /// this long.
    pub patience: Duration,
    /// Measure send → output latency through a subscription.
    pub latency: Option<LatencyConfig>,
}

impl Default for SendConfig {
    fn default() -> SendConfig {
        SendConfig {
            to: SocketAddr::from(([127, 0, 0, 1], 7070)),
            rate: None,
            connections: 1,
            source: None,
            token: None,
            client: format!("send-{}", std::process::id()),
            window: 50_000,
            patience: Duration::from_secs(60),
            latency: None,
        }
    }
}

/// What a send did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SendReport {
    pub lines: u64,
    pub bytes: u64,
    pub acked: u64,
    pub seconds: f64,
    pub lines_per_second: f64,
    pub reconnects: u64,
    /// Lines sent more than once (after a reconnect).
    pub resent: u64,
    /// Send → acknowledgement latency percentiles, milliseconds.
    pub ack_ms_p50: f64,
    pub ack_ms_p90: f64,
    pub ack_ms_p95: f64,
    pub ack_ms_p99: f64,
    pub ack_ms_max: f64,
    /// Send → output latency, with `--latency-from`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputLatency>,
}

impl std::fmt::Display for SendReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "sent {} lines ({:.1} MB) in {:.2}s: {:.0} lines/s; acknowledged {}; {} reconnects, {} lines resent",
            self.lines,
            self.bytes as f64 / 1e6,
            self.seconds,
            self.lines_per_second,
            self.acked,
            self.reconnects,
            self.resent
        )?;
        write!(
            f,
            "  send -> ack latency ms: p50 {:.2}  p90 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}",
            self.ack_ms_p50, self.ack_ms_p90, self.ack_ms_p95, self.ack_ms_p99, self.ack_ms_max
        )?;
        match &self.output {
            Some(output) => write!(f, "\n{output}"),
            None => Ok(()),
        }
    }
}

struct ConnReport {
    acked: u64,
    reconnects: u64,
    resent: u64,
    latencies_us: Vec<u32>,
}

/// Sends every line and waits until all are acknowledged (and, measuring send → output latency,
/// until progress has passed them all or the grace has run out).
pub fn send(lines: Arc<Lines>, config: &SendConfig) -> Result<SendReport, SendError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.connections.clamp(1, 2))
        .enable_all()
        .build()
        .map_err(|e| SendError::Gave(e.to_string()))?;
    // Event times are read before the clock starts, so reading them does not slow the sending.
    let probe = config
        .latency
        .as_ref()
        .map(|l| Arc::new(Probe::new(lines.event_times(&l.time_field, l.time_unit_ms))));
    let (results, elapsed, output) = runtime.block_on(async {
        let follower = match &config.latency {
            Some(l) => Some(Follower::open(l, config.patience).await?),
            None => None,
        };
        if let (Some(f), Some(p)) = (&follower, &probe) {
            p.tracker().progress(f.progress, 0);
        }
        let started = Instant::now();
        let following = follower
            .zip(probe.clone())
            .map(|(f, p)| tokio::spawn(f.run(p, started)));
        let (greeted, _) = watch::channel(0usize);
        let greeted = Arc::new(greeted);
        let tasks: Vec<_> = (0..config.connections)
            .map(|c| {
                let (lines, config, probe) = (Arc::clone(&lines), config.clone(), probe.clone());
                let greeted = Arc::clone(&greeted);
                tokio::spawn(connection(c, lines, config, started, probe, greeted))
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.map_err(|e| SendError::Gave(e.to_string())).and_then(|r| r));
        }
        let elapsed = started.elapsed().as_secs_f64().max(1e-9);
        let output = match (&config.latency, &probe, following) {
            (Some(l), Some(p), Some(task)) => Some(latency::settle(l, p, task).await),
            _ => None,
        };
        Ok::<_, SendError>((results, elapsed, output))
    })?;
    let mut report = SendReport {
        lines: lines.len() as u64,
        bytes: lines.bytes() as u64,
        seconds: elapsed,
        lines_per_second: lines.len() as f64 / elapsed,
        output,
        ..SendReport::default()
    };
    let mut latencies = Vec::new();
    for r in results {
        let r = r?;
        report.acked += r.acked;
        report.reconnects += r.reconnects;
        report.resent += r.resent;
        latencies.extend(r.latencies_us.into_iter().map(|us| (us, 1)));
    }
    let q = quantiles_ms(latencies, &[0.5, 0.9, 0.95, 0.99, 1.0]);
    (report.ack_ms_p50, report.ack_ms_p90, report.ack_ms_p95) = (q[0], q[1], q[2]);
    (report.ack_ms_p99, report.ack_ms_max) = (q[3], q[4]);
    Ok(report)
}

/// One connection's share: lines `c, c + C, ...`, numbered 1, 2, ... for client `ID-c`.
async fn connection(
    c: usize,
    lines: Arc<Lines>,
    config: SendConfig,
    started: Instant,
    probe: Option<Arc<Probe>>,
    greeted: Arc<watch::Sender<usize>>,
) -> Result<ConnReport, SendError> {
    let stride = config.connections;
    let total = ((lines.len() + stride - 1 - c) / stride) as u64;
    let client = format!("{}-{c}", config.client);
    let line = |j: u64| lines.get(c + j as usize * stride);
    let per_conn_rate = config.rate.map(|r| r / stride as f64);
    let mut sent_at: Vec<u32> = vec![0; total as usize];
    let mut ever_sent = 0u64;
    let mut report = ConnReport {
        acked: 0,
        reconnects: 0,
        resent: 0,
        latencies_us: Vec::with_capacity(total as usize),
    };
    let micros = || started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
    let mut give_up_at = Instant::now() + config.patience;
    let mut first = true;
    let mut was_greeted = false;
    while report.acked < total {
        if !first {
            report.reconnects += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        first = false;
        if Instant::now() > give_up_at {
            return Err(SendError::Gave(format!(
                "connection {c}: no progress for {:?} ({} of {total} lines acknowledged)",
                config.patience, report.acked
            )));
        }
        let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(config.to)).await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (rd, mut wr) = stream.into_split();
        let hello = serde_json::json!({
            "hello": 1,
            "client": client,
            "source": config.source,
            "token": config.token,
        });
        if wr.write_all(format!("{hello}\n").as_bytes()).await.is_err() {
            continue;
        }
        let mut rd = BufReader::new(rd);
        let mut reply = Vec::new();
        match tokio::time::timeout(config.patience, rd.read_until(b'\n', &mut reply)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => continue,
        }
        let resume = match parse_reply(&reply) {
            Some(Reply::Ack(n)) => n.min(total),
            Some(Reply::Error(e)) if e.contains("too many connections") => continue,
            Some(Reply::Error(e)) => return Err(SendError::Refused(e)),
            None => continue,
        };
        if !was_greeted {
            // The first hello: wait until every connection is answered (once). A connection
            // with no lines (more connections than lines) never says hello.
            was_greeted = true;
            let mut all = greeted.subscribe();
            greeted.send_modify(|n| *n += 1);
            let sending = stride.min(lines.len());
            let _ = tokio::time::timeout(config.patience, all.wait_for(|n| *n >= sending)).await;
        }
        let now = micros();
        record_acks(&mut report, &sent_at, resume, now);
        give_up_at = Instant::now() + config.patience;
        let (ack_tx, mut ack_rx) = watch::channel(resume);
        let reader = tokio::spawn(async move {
            let mut line = Vec::new();
            loop {
                line.clear();
                match rd.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => match parse_reply(&line) {
                        Some(Reply::Ack(n)) => {
                            ack_tx.send_replace(n);
                        }
                        Some(Reply::Error(e)) => return Some(e),
                        None => {}
                    },
                }
            }
        });
        let mut next = resume;
        let mut chunk = Vec::with_capacity(64 << 10);
        let mut broken = false;
        while report.acked < total && !broken {
            // Take acknowledgements.
            let acked = *ack_rx.borrow_and_update();
            if acked > report.acked {
                record_acks(&mut report, &sent_at, acked.min(total), micros());
                give_up_at = Instant::now() + config.patience;
            }
            if report.acked >= total {
                break;
            }
            let can_send = next < total && next - report.acked < config.window;
            let due = |j: u64| per_conn_rate.map(|r| Duration::from_secs_f64(j as f64 / r));
            if can_send {
                let elapsed = started.elapsed();
                if let Some(d) = due(next) {
                    if d > elapsed {
                        tokio::select! {
                            _ = tokio::time::sleep(d - elapsed) => {}
                            r = ack_rx.changed() => if r.is_err() { broken = true; }
                        }
                        continue;
                    }
                }
                chunk.clear();
                let stamp = micros();
                let from = next;
                while next < total
                    && next - report.acked < config.window
                    && chunk.len() < (64 << 10)
                    && due(next).is_none_or(|d| d <= elapsed)
                {
                    chunk.extend_from_slice(line(next));
                    sent_at[next as usize] = stamp;
                    if next < ever_sent {
                        report.resent += 1;
                    }
                    next += 1;
                }
                if let (Some(p), true) = (&probe, next > ever_sent) {
                    p.sent((from.max(ever_sent)..next).map(|j| c + j as usize * stride), stamp);
                }
                ever_sent = ever_sent.max(next);
                tokio::select! {
                    w = wr.write_all(&chunk) => if w.is_err() { broken = true; },
                    _ = tokio::time::sleep(config.patience) => broken = true,
                }
            } else {
                tokio::select! {
                    r = ack_rx.changed() => if r.is_err() { broken = true; },
                    _ = tokio::time::sleep_until(give_up_at.into()) => broken = true,
                }
            }
        }
        if !broken {
            let _ = wr.shutdown().await;
            reader.abort();
            break;
        }
        // The reader saw the end, or an error line.
        if let Ok(Some(e)) = reader.await {
            if !e.contains("too many connections") {
                return Err(SendError::Refused(e));
            }
        }
    }
    Ok(report)
}

fn record_acks(report: &mut ConnReport, sent_at: &[u32], acked: u64, now_us: u32) {
    for j in report.acked..acked {
        report.latencies_us.push(now_us.saturating_sub(sent_at[j as usize]));
    }
    report.acked = report.acked.max(acked);
}
