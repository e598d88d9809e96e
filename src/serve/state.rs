//! Live counters of a serving process, shared by the network tasks, the sequencer and the
//! timely workers: everything a status page or a metrics endpoint needs to read, as atomics
//! behind one `Arc`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Relaxed loads and adds: the counters are statistics, never used for synchronisation.
const R: Ordering = Ordering::Relaxed;

/// Counters of one serving process. Create one with [`ServeState::new`] and share it in an `Arc`.
#[derive(Debug)]
pub struct ServeState {
    started: Instant,
    /// Number of timely workers in this process.
    pub workers: usize,
    /// TCP source names, in the order of [`ServeState::watermarks`].
    pub sources: Vec<String>,
    /// Events admitted into the dataflow (on time), over all sources.
    pub events_processed: AtomicU64,
    /// Complete lines received (before deduplication), blank ones included.
    pub lines_received: AtomicU64,
    pub bytes_received: AtomicU64,
    /// Lines skipped because the write-ahead log already held them (resent by a client).
    pub lines_deduplicated: AtomicU64,
    /// Lines replayed from the write-ahead log at start-up.
    pub lines_replayed: AtomicU64,
    /// Open client connections.
    pub connections_open: AtomicU64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Connections refused because `max_connections` were open, or displaced while waiting for
    /// their hello by a newer one beyond `max_pending_connections`.
    pub connections_refused: AtomicU64,
    /// Connections closed for a missing or wrong token, or a bad hello.
    pub connections_rejected: AtomicU64,
    /// Connections closed because a later hello took their client id (see `Holders`).
    pub connections_fenced: AtomicU64,
    /// Lines of fenced connections that the sequencer refused (not logged, not acknowledged).
    pub lines_fenced: AtomicU64,
    /// Connections closed after `conn_idle_timeout` without a byte, or without a complete first
    /// line (the hello) within `handshake_timeout`.
    pub connections_timed_out: AtomicU64,
    /// Bytes of lines queued between the sockets and the workers (the global bounded buffer).
    pub queued_bytes: AtomicU64,
    /// Batches queued for each worker.
    pub worker_queues: Vec<AtomicU64>,
    /// Event-time watermark of each TCP source, in ms (`i64::MIN` before any event).
    pub watermarks: Vec<AtomicI64>,
    /// Partitions holding each TCP source's watermark (see `partitions.rs`).
    pub partitions: Vec<AtomicU64>,
    /// Partitions that stopped holding a watermark after the idle timeout.
    pub partitions_idle: AtomicU64,
    /// Write-ahead log: bytes appended, fsyncs (one per group commit), records appended.
    pub wal_bytes: AtomicU64,
    pub wal_syncs: AtomicU64,
    pub wal_records: AtomicU64,
    /// Checkpoints written, log segments they removed, segments on disk now.
    pub checkpoints: AtomicU64,
    pub wal_segments_removed: AtomicU64,
    pub wal_segments: AtomicU64,
    /// Acknowledgement lines written to clients.
    pub acks_sent: AtomicU64,
    /// Named clients whose offsets the server holds, and those forgotten after
    /// `--client-retention` without activity.
    pub clients: AtomicU64,
    pub clients_expired: AtomicU64,
    /// Dead letters of the sources by reason (stage dead letters are counted by the sink).
    dead_letters: Mutex<BTreeMap<String, u64>>,
}

impl ServeState {
    pub fn new(workers: usize, sources: Vec<String>) -> ServeState {
        ServeState {
            started: Instant::now(),
            workers,
            worker_queues: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            watermarks: sources.iter().map(|_| AtomicI64::new(i64::MIN)).collect(),
            partitions: sources.iter().map(|_| AtomicU64::new(0)).collect(),
            partitions_idle: AtomicU64::new(0),
            sources,
            events_processed: AtomicU64::new(0),
            lines_received: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            lines_deduplicated: AtomicU64::new(0),
            lines_replayed: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            connections_rejected: AtomicU64::new(0),
            connections_fenced: AtomicU64::new(0),
            lines_fenced: AtomicU64::new(0),
            connections_timed_out: AtomicU64::new(0),
            queued_bytes: AtomicU64::new(0),
            wal_bytes: AtomicU64::new(0),
            wal_syncs: AtomicU64::new(0),
            wal_records: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            wal_segments_removed: AtomicU64::new(0),
            wal_segments: AtomicU64::new(0),
            acks_sent: AtomicU64::new(0),
            clients: AtomicU64::new(0),
            clients_expired: AtomicU64::new(0),
            dead_letters: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Counts one source dead letter with `reason`.
    pub fn dead_letter(&self, reason: &str) {
        let mut map = self.dead_letters.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(reason) {
            Some(n) => *n += 1,
            None => {
                map.insert(reason.to_string(), 1);
            }
        }
    }

    /// Source dead letters so far, by reason.
    pub fn dead_letters(&self) -> BTreeMap<String, u64> {
        self.dead_letters.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sets a source's watermark if it is higher.
    pub fn raise_watermark(&self, source: usize, ms: i64) {
        if let Some(w) = self.watermarks.get(source) {
            w.fetch_max(ms, R);
        }
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, R);
    }

    pub fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, R);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(R)
    }

    /// A one-line summary for logs and the shutdown report.
    pub fn summary(&self) -> String {
        let dead: u64 = self.dead_letters().values().sum();
        format!(
            "lines {} ({} bytes), events {}, source dead letters {}, deduplicated {}, replayed {}, \
             connections {} (refused {}, rejected {}, fenced {}, timed out {}), wal {} records {} syncs, \
             checkpoints {} ({} segments removed), clients {} ({} expired)",
            Self::get(&self.lines_received),
            Self::get(&self.bytes_received),
            Self::get(&self.events_processed),
            dead,
            Self::get(&self.lines_deduplicated),
            Self::get(&self.lines_replayed),
            Self::get(&self.connections_total),
            Self::get(&self.connections_refused),
            Self::get(&self.connections_rejected),
            Self::get(&self.connections_fenced),
            Self::get(&self.connections_timed_out),
            Self::get(&self.wal_records),
            Self::get(&self.wal_syncs),
            Self::get(&self.checkpoints),
            Self::get(&self.wal_segments_removed),
            Self::get(&self.clients),
            Self::get(&self.clients_expired),
        )
    }
}
