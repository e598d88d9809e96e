//! Send → output latency for `sluice send --latency-from`: the client subscribes to one output of
//! the server, whose `{"progress":T}` lines say that every change below event time `T` has been
//! emitted (see [`crate::serve::subscribe`]). A line's latency is the instant the first progress
//! beyond its event time arrives, minus the instant the line was first sent.
//!
//! ```text
//!  connections ── sent(line's event time, µs) ──► Tracker: event time → (earliest send, lines)
//!  subscription ── {"progress":T} ──────────────► Tracker: each key < T is passed: now − send
//! ```
//!
//! Memory is one entry per distinct event time in flight (sent, not yet passed) and one sample
//! per entry passed. Lines that share an event time share their earliest send instant, so their
//! latency is an upper bound. A line sent below the progress already made can never be passed
//! (the server finds it late), so it is counted apart; so are lines without an event time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::SendError;

/// Where to observe outputs.
#[derive(Clone, Debug)]
pub struct LatencyConfig {
    /// The server's `--subscribe` address.
    pub from: SocketAddr,
    /// The output to subscribe to.
    pub collection: String,
    pub token: Option<String>,
    /// The lines' event-time field, and the milliseconds in a unit of a numeric time.
    pub time_field: String,
    pub time_unit_ms: f64,
    /// How long to wait, once every line is acknowledged, for progress to pass the rest.
    pub grace: Duration,
}

/// Lines sent and not yet passed by progress, and the latencies of those passed.
#[derive(Debug)]
pub struct Tracker {
    /// Event time → (earliest send instant in µs, lines).
    pending: BTreeMap<i64, (u32, u64)>,
    pending_lines: u64,
    /// (latency µs, lines).
    passed: Vec<(u32, u64)>,
    /// The latest progress, in event-time ms.
    progress: i64,
    late: u64,
    untimed: u64,
}

impl Default for Tracker {
    fn default() -> Tracker {
        Tracker {
            pending: BTreeMap::new(),
            pending_lines: 0,
            passed: Vec::new(),
            progress: i64::MIN,
            late: 0,
            untimed: 0,
        }
    }
}

impl Tracker {
    /// A line with event time `time` was sent for the first time at `at_us`.
    pub fn sent(&mut self, time: Option<i64>, at_us: u32) {
        match time {
            None => self.untimed += 1,
            Some(t) if t < self.progress => self.late += 1,
            Some(t) => {
                let entry = self.pending.entry(t).or_insert((at_us, 0));
                entry.0 = entry.0.min(at_us);
                entry.1 += 1;
                self.pending_lines += 1;
            }
        }
    }

    /// Progress `t` arrived at `now_us`: every line below it is passed.
    pub fn progress(&mut self, t: i64, now_us: u32) {
        if t <= self.progress {
            return;
        }
        self.progress = t;
        let rest = self.pending.split_off(&t);
        for (_, (at, lines)) in std::mem::replace(&mut self.pending, rest) {
            self.passed.push((now_us.saturating_sub(at), lines));
            self.pending_lines -= lines;
        }
    }

    pub fn pending_lines(&self) -> u64 {
        self.pending_lines
    }

    /// The report of what was measured.
    pub fn report(&self, collection: &str, error: Option<String>) -> OutputLatency {
        let q = quantiles_ms(self.passed.clone(), &[0.5, 0.95, 0.99, 1.0]);
        OutputLatency {
            collection: collection.to_string(),
            measured: self.passed.iter().map(|p| p.1).sum(),
            ms_p50: q[0],
            ms_p95: q[1],
            ms_p99: q[2],
            ms_max: q[3],
            pending: self.pending_lines,
            late: self.late,
            untimed: self.untimed,
            error,
        }
    }
}

/// Send → output latency, as `sluice send` reports it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct OutputLatency {
    pub collection: String,
    /// Lines whose event time progress passed.
    pub measured: u64,
    /// Their latency percentiles, milliseconds.
    pub ms_p50: f64,
    pub ms_p95: f64,
    pub ms_p99: f64,
    pub ms_max: f64,
    /// Lines sent whose event time progress had not passed when the grace ran out.
    pub pending: u64,
    /// Lines sent below the progress already made: late for the server, never passed.
    pub late: u64,
    /// Lines without a readable event time.
    pub untimed: u64,
    /// Why the subscription ended before the report, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl std::fmt::Display for OutputLatency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "  send -> output latency ms ({}): p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}; {} lines measured, {} pending, {} late, {} without a time",
            self.collection,
            self.ms_p50,
            self.ms_p95,
            self.ms_p99,
            self.ms_max,
            self.measured,
            self.pending,
            self.late,
            self.untimed
        )?;
        if let Some(e) = &self.error {
            write!(f, "\n  subscription ended: {e}")?;
        }
        Ok(())
    }
}

/// Nearest-rank quantiles of `(µs, weight)` samples, in milliseconds (zeros without samples).
pub fn quantiles_ms(mut samples: Vec<(u32, u64)>, ps: &[f64]) -> Vec<f64> {
    samples.sort_unstable();
    let total: u64 = samples.iter().map(|s| s.1).sum();
    ps.iter()
        .map(|p| {
            if total == 0 {
                return 0.0;
            }
            let rank = ((total - 1) as f64 * p).round() as u64;
            let mut seen = 0;
            let at = samples
                .iter()
                .find(|s| {
                    seen += s.1;
                    seen > rank
                })
                .map_or(0, |s| s.0);
            f64::from(at) / 1000.0
        })
        .collect()
}

/// The lines' event times and the tracker the connections and the subscription share.
pub struct Probe {
    times: Vec<Option<i64>>,
    tracker: Mutex<Tracker>,
}

impl Probe {
    pub fn new(times: Vec<Option<i64>>) -> Probe {
        Probe {
            times,
            tracker: Mutex::new(Tracker::default()),
        }
    }

    /// Lines `lines` (indices in the file) were first sent at `at_us`.
    pub fn sent(&self, lines: impl Iterator<Item = usize>, at_us: u32) {
        let mut tracker = self.tracker();
        for i in lines {
            tracker.sent(self.times.get(i).copied().flatten(), at_us);
        }
    }

    pub fn tracker(&self) -> MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An open subscription whose snapshot has been read.
pub struct Follower {
    reader: BufReader<OwnedReadHalf>,
    _writer: OwnedWriteHalf,
    /// The progress that ended the snapshot: lines sent below it are late.
    pub progress: i64,
}

/// What a subscription line says, to the latency probe.
#[derive(Debug, PartialEq)]
enum Line {
    Progress(i64),
    Done,
    Error(String),
    Other,
}

fn classify(line: &[u8]) -> Line {
    // Changes, the bulk of a subscription, are `{"diff":..,"row":..,"time":..}`: not parsed.
    if line.starts_with(b"{\"diff\"") || line.starts_with(b"{\"row\"") {
        return Line::Other;
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(line) else {
        return Line::Other;
    };
    if let Some(t) = value.get("progress").and_then(|t| t.as_u64()) {
        return Line::Progress(t.min(i64::MAX as u64) as i64);
    }
    if value.get("done").is_some() {
        return Line::Done;
    }
    match value.get("error") {
        Some(e) => Line::Error(e.as_str().unwrap_or_default().to_string()),
        None => Line::Other,
    }
}

impl Follower {
    /// Subscribes to the output and reads up to its first progress line (the snapshot's end), so
    /// the changes of every line sent afterwards are seen.
    pub async fn open(config: &LatencyConfig, patience: Duration) -> Result<Follower, SendError> {
        let refused = |e: String| SendError::Subscribe {
            addr: config.from,
            message: e,
        };
        let stream = tokio::time::timeout(patience, TcpStream::connect(config.from))
            .await
            .map_err(|_| refused("no connection".into()))?
            .map_err(|e| refused(e.to_string()))?;
        let (rd, mut writer) = stream.into_split();
        let request = serde_json::json!({"subscribe": config.collection, "token": config.token});
        writer
            .write_all(format!("{request}\n").as_bytes())
            .await
            .map_err(|e| refused(e.to_string()))?;
        let mut reader = BufReader::new(rd);
        let first = tokio::time::timeout(patience, async {
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line).await {
                    Ok(0) => return Err("the server closed the subscription".to_string()),
                    Err(e) => return Err(e.to_string()),
                    Ok(_) => match classify(&line) {
                        Line::Progress(t) => return Ok(t),
                        Line::Done => return Err("the output is complete (the server is stopping)".into()),
                        Line::Error(e) => return Err(e),
                        Line::Other => {}
                    },
                }
            }
        })
        .await;
        match first {
            Ok(Ok(progress)) => Ok(Follower {
                reader,
                _writer: writer,
                progress,
            }),
            Ok(Err(e)) => Err(refused(e)),
            Err(_) => Err(refused(format!("no progress within {patience:?}"))),
        }
    }

    /// Feeds progress into the probe until the output completes or the subscription ends;
    /// returns why it ended early (`None` when the output completed).
    pub async fn run(mut self, probe: Arc<Probe>, started: Instant) -> Option<String> {
        let micros = || started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        let mut line = Vec::new();
        loop {
            line.clear();
            match self.reader.read_until(b'\n', &mut line).await {
                Ok(0) => return Some("the server closed the subscription".into()),
                Err(e) => return Some(e.to_string()),
                Ok(_) => match classify(&line) {
                    Line::Progress(t) => probe.tracker().progress(t, micros()),
                    Line::Done => {
                        probe.tracker().progress(i64::MAX, micros());
                        return None;
                    }
                    Line::Error(e) => return Some(e),
                    Line::Other => {}
                },
            }
        }
    }
}

/// Waits, at most the grace, until progress has passed every line sent, or the subscription has
/// ended; then reports.
pub async fn settle(config: &LatencyConfig, probe: &Probe, mut following: JoinHandle<Option<String>>) -> OutputLatency {
    let deadline = tokio::time::Instant::now() + config.grace;
    let mut ended = None;
    while probe.tracker().pending_lines() > 0 && tokio::time::Instant::now() < deadline {
        tokio::select! {
            r = &mut following => {
                ended = Some(r.unwrap_or_else(|e| Some(e.to_string())));
                break;
            }
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
    if ended.is_none() {
        following.abort();
    }
    probe.tracker().report(&config.collection, ended.flatten())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_passes_the_lines_below_it() {
        let mut t = Tracker::default();
        t.sent(Some(10), 100);
        t.sent(Some(10), 300);
        t.sent(Some(20), 200);
        t.sent(None, 200);
        t.progress(11, 1_100);
        assert_eq!(t.pending_lines(), 1);
        // A line below the progress made is late; an older progress changes nothing.
        t.sent(Some(5), 1_200);
        t.progress(9, 1_300);
        t.progress(21, 2_200);
        let r = t.report("counts", None);
        assert_eq!((r.measured, r.pending, r.late, r.untimed), (3, 0, 1, 1));
        // Two lines at time 10 share the earliest send: 1.0 ms each; the third waited 2.0 ms.
        assert_eq!((r.ms_p50, r.ms_max), (1.0, 2.0));
    }

    #[test]
    fn quantiles_weigh_samples_by_their_lines() {
        let q = quantiles_ms(vec![(3_000, 1), (1_000, 98), (2_000, 1)], &[0.5, 0.99, 1.0]);
        assert_eq!(q, vec![1.0, 2.0, 3.0]);
        assert_eq!(quantiles_ms(Vec::new(), &[0.5]), vec![0.0]);
    }

    #[test]
    fn subscription_lines_are_classified() {
        assert_eq!(classify(b"{\"progress\":42}\n"), Line::Progress(42));
        assert_eq!(classify(b"{\"diff\":1,\"row\":{\"a\":1},\"time\":1}\n"), Line::Other);
        assert_eq!(
            classify(b"{\"row\":{\"progress\":1},\"time\":1,\"diff\":1}\n"),
            Line::Other
        );
        assert_eq!(classify(b"{\"done\":true}\n"), Line::Done);
        assert_eq!(classify(b"{\"error\":\"slow\"}\n"), Line::Error("slow".into()));
    }
}
