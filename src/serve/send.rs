//! `sluice send`: a client that streams an NDJSON or Parquet file to `sluice serve`, honours
//! acknowledgements, resends what was not acknowledged after a reconnect, and measures
//! throughput and send → acknowledgement latency. It is the load generator of the serve tests
//! and benchmark.
//!
//! Line `i` of the file goes on connection `i % C`, whose client id is `ID-c` (`c` in `0..C`);
//! each connection numbers its lines from 1, so after a reconnect (or a server restart) the
//! server's hello reply says where to resume.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::protocol::{parse_reply, Reply};

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{path}: {message}")]
    Input { path: String, message: String },
    #[error("the server refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Gave(String),
}

/// The lines of a file, `\n`-terminated, in one buffer.
#[derive(Default)]
pub struct Lines {
    data: Vec<u8>,
    /// Start of each line; one more entry marks the end.
    starts: Vec<usize>,
}

impl Lines {
    pub fn len(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Line `i` with its `\n`.
    pub fn get(&self, i: usize) -> &[u8] {
        &self.data[self.starts[i]..self.starts[i + 1]]
    }
    pub fn bytes(&self) -> usize {
        self.data.len()
    }
    fn push(&mut self, line: &[u8]) {
        if self.starts.is_empty() {
            self.starts.push(0);
        }
        self.data.extend_from_slice(line);
        self.data.push(b'\n');
        self.starts.push(self.data.len());
    }

    /// Lines of NDJSON text (blank lines skipped).
    pub fn from_ndjson(text: &[u8]) -> Lines {
        let mut lines = Lines::default();
        for line in text.split(|b| *b == b'\n') {
            if !line.iter().all(u8::is_ascii_whitespace) {
                lines.push(line);
            }
        }
        lines
    }

    /// Reads an NDJSON file, or a Parquet file (`.parquet`) converted to one JSON object a row.
    pub fn read(path: &Path) -> Result<Lines, SendError> {
        let err = |message: String| SendError::Input {
            path: path.display().to_string(),
            message,
        };
        if path.extension().and_then(|e| e.to_str()) != Some("parquet") {
            return std::fs::read(path)
                .map(|t| Lines::from_ndjson(&t))
                .map_err(|e| err(e.to_string()));
        }
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .map_err(|e| err(e.to_string()))?;
        let mut lines = Lines::default();
        let mut buf = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| err(e.to_string()))?;
            let schema = batch.schema();
            let cols: Vec<crate::source::arrow_read::Col> = batch
                .columns()
                .iter()
                .map(crate::source::arrow_read::Col::new)
                .collect();
            for row in 0..batch.num_rows() {
                let mut object = serde_json::Map::new();
                for (field, col) in schema.fields().iter().zip(&cols) {
                    let value = col.get(row);
                    if !value.is_null() {
                        object.insert(field.name().clone(), value.to_json());
                    }
                }
                buf.clear();
                serde_json::to_writer(&mut buf, &object).map_err(|e| err(e.to_string()))?;
                lines.push(&buf);
            }
        }
        Ok(lines)
    }
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
    pub ack_ms_p99: f64,
    pub ack_ms_max: f64,
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
            "  send -> ack latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            self.ack_ms_p50, self.ack_ms_p90, self.ack_ms_p99, self.ack_ms_max
        )
    }
}

struct ConnReport {
    acked: u64,
    reconnects: u64,
    resent: u64,
    latencies_us: Vec<u32>,
}

/// Sends every line and waits until all are acknowledged.
pub fn send(lines: Arc<Lines>, config: &SendConfig) -> Result<SendReport, SendError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.connections.clamp(1, 2))
        .enable_all()
        .build()
        .map_err(|e| SendError::Gave(e.to_string()))?;
    let started = Instant::now();
    let results = runtime.block_on(async {
        let tasks: Vec<_> = (0..config.connections)
            .map(|c| tokio::spawn(connection(c, Arc::clone(&lines), config.clone(), started)))
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.map_err(|e| SendError::Gave(e.to_string())).and_then(|r| r));
        }
        results
    });
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let mut report = SendReport {
        lines: lines.len() as u64,
        bytes: lines.bytes() as u64,
        seconds: elapsed,
        lines_per_second: lines.len() as f64 / elapsed,
        ..SendReport::default()
    };
    let mut latencies = Vec::new();
    for r in results {
        let r = r?;
        report.acked += r.acked;
        report.reconnects += r.reconnects;
        report.resent += r.resent;
        latencies.extend(r.latencies_us);
    }
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() - 1) as f64 * p).round() as usize;
        f64::from(latencies[i]) / 1000.0
    };
    report.ack_ms_p50 = pct(0.5);
    report.ack_ms_p90 = pct(0.9);
    report.ack_ms_p99 = pct(0.99);
    report.ack_ms_max = pct(1.0);
    Ok(report)
}

/// One connection's share: lines `c, c + C, ...`, numbered 1, 2, ... for client `ID-c`.
async fn connection(
    c: usize,
    lines: Arc<Lines>,
    config: SendConfig,
    started: Instant,
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
