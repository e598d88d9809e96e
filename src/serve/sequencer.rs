//! The sequencer: one thread that puts every batch in log order, appends it to the write-ahead
//! log with group commit, acknowledges it, skips lines a client resends, and hands records to
//! the workers through bounded channels.
//!
//! ```text
//!  connections ──(bounded mpsc, byte budget)──► sequencer ──► WAL: append group, one fdatasync
//!                                                   │    └──► {"ack":N} to each connection
//!                                                   └──(bounded, record s → worker s % W)──► workers
//! ```
//!
//! When the workers fall behind, their channels fill, the sequencer blocks, the connections'
//! channel and byte budget fill, and connections stop reading their sockets: TCP backpressure.

use std::collections::HashMap;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};

use super::checkpoint::{Checkpoints, Manifest};
use super::order::Order;
use super::record::{Batch, Record};
use super::state::ServeState;
use super::wal::{Replayed, Wal};
use super::worker::ToWorker;
use super::ServeError;

/// Takes checkpoints every `interval` (see [`super::checkpoint`]).
pub(crate) struct Checkpointer {
    pub checkpoints: Arc<Checkpoints>,
    pub order: Arc<Order>,
    pub dir: std::path::PathBuf,
    pub interval: Duration,
    /// The last checkpoint written (or an empty one with the pipeline and outputs folder).
    pub manifest: Manifest,
    pub in_flight: Option<u64>,
    pub last: Instant,
}

/// A batch from a connection.
pub(crate) struct Inbound {
    pub batch: Batch,
    /// Where the connection learns what is durable.
    pub acked: Arc<watch::Sender<u64>>,
    pub permit: OwnedSemaphorePermit,
    pub weight: u64,
}

/// Per named client: lines durable in the log. Shared with connections, which answer a hello
/// with it.
pub(crate) type Durable = Arc<Mutex<HashMap<String, u64>>>;

/// Most batches committed as one group.
const MAX_GROUP: usize = 1024;

pub(crate) struct Sequencer {
    pub wal: Option<Wal>,
    pub workers: Vec<SyncSender<ToWorker>>,
    pub durable: Durable,
    pub state: Arc<ServeState>,
    /// Watermark idle timeout; `None` disables idle advances.
    pub idle_timeout: Option<Duration>,
    seq: u64,
    /// Per TCP source: when a batch last arrived, up to when wall time was credited to the
    /// watermark, and whether the source has had any batch.
    activity: Vec<(Instant, Instant, bool)>,
    pub checkpointer: Option<Checkpointer>,
}

impl Sequencer {
    pub fn new(
        wal: Option<Wal>,
        workers: Vec<SyncSender<ToWorker>>,
        durable: Durable,
        state: Arc<ServeState>,
        idle_timeout: Option<Duration>,
    ) -> Sequencer {
        let now = Instant::now();
        let sources = state.sources.len();
        Sequencer {
            wal,
            workers,
            durable,
            state,
            idle_timeout,
            seq: 0,
            activity: vec![(now, now, false); sources],
            checkpointer: None,
        }
    }

    fn dispatch(&mut self, make: impl FnOnce(u64) -> ToWorker) -> Result<(), ServeError> {
        let w = (self.seq % self.workers.len() as u64) as usize;
        ServeState::add(&self.state.worker_queues[w], 1);
        self.workers[w]
            .send(make(self.seq))
            .map_err(|_| ServeError::WorkerStopped)?;
        self.seq += 1;
        Ok(())
    }

    /// Notes the lines a logged batch makes durable.
    fn note_durable(&self, batch: &Batch) {
        if !batch.anonymous() {
            let mut durable = self.durable.lock().unwrap_or_else(|e| e.into_inner());
            let d = durable.entry(batch.client.clone()).or_default();
            *d = (*d).max(batch.end_offset());
        }
    }

    /// Hands a replayed record to the workers and notes what it makes durable.
    pub fn replay(&mut self, record: Record) -> Result<(), ServeError> {
        match record {
            Record::Advance { source, delta_ms } => self.dispatch(|seq| ToWorker::Advance { seq, source, delta_ms }),
            Record::Batch(batch) => {
                self.note_durable(&batch);
                ServeState::add(&self.state.lines_replayed, u64::from(batch.lines));
                if let Some(a) = self.activity.get_mut(batch.source as usize) {
                    a.2 = true;
                }
                self.dispatch(|seq| ToWorker::Batch {
                    seq,
                    batch,
                    permit: None,
                })
            }
        }
    }

    /// Serves until every connection has hung up; returns the log, still holding everything.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Inbound>) -> Result<Option<Wal>, ServeError> {
        let mut tick = match self.idle_timeout {
            Some(t) => (t / 4).clamp(Duration::from_millis(20), Duration::from_secs(1)),
            None => Duration::from_secs(3600),
        };
        // Checkpoints are asked for, and completed, between groups.
        if let Some(c) = &self.checkpointer {
            tick = tick.min((c.interval / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)));
        }
        let mut group: Vec<Inbound> = Vec::new();
        loop {
            match tokio::time::timeout(tick, rx.recv()).await {
                Ok(Some(first)) => group.push(first),
                Ok(None) => break,
                Err(_) => {}
            }
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(more) => group.push(more),
                    Err(_) => break,
                }
            }
            self.commit(&mut group)?;
            self.idle_advances()?;
            self.checkpoint()?;
        }
        if let Some(wal) = &mut self.wal {
            wal.write(true)?;
        }
        Ok(self.wal)
    }

    /// Logs, acknowledges and dispatches one group of batches.
    fn commit(&mut self, group: &mut Vec<Inbound>) -> Result<(), ServeError> {
        if group.is_empty() {
            return Ok(());
        }
        {
            let durable = self.durable.lock().unwrap_or_else(|e| e.into_inner());
            for inbound in group.iter_mut() {
                let b = &mut inbound.batch;
                if !b.anonymous() {
                    let skipped = b.skip_through(durable.get(&b.client).copied().unwrap_or(0));
                    ServeState::add(&self.state.lines_deduplicated, skipped);
                }
            }
        }
        if let Some(wal) = &mut self.wal {
            let mut bytes = 0;
            let mut records = 0;
            for inbound in group.iter().filter(|i| !i.batch.is_empty()) {
                bytes += wal.append(|out| inbound.batch.encode(out));
                records += 1;
            }
            wal.write(true)?;
            ServeState::add(&self.state.wal_bytes, bytes);
            ServeState::add(&self.state.wal_records, records);
            ServeState::add(&self.state.wal_syncs, 1);
        }
        {
            let mut durable = self.durable.lock().unwrap_or_else(|e| e.into_inner());
            for inbound in group.iter() {
                let b = &inbound.batch;
                let end = b.end_offset();
                if !b.anonymous() {
                    let d = durable.entry(b.client.clone()).or_default();
                    *d = (*d).max(end);
                }
                inbound.acked.send_if_modified(|acked| {
                    let raise = end > *acked;
                    if raise {
                        *acked = end;
                    }
                    raise
                });
            }
        }
        let now = Instant::now();
        for inbound in group.drain(..) {
            let Inbound {
                batch, permit, weight, ..
            } = inbound;
            if batch.is_empty() {
                ServeState::sub(&self.state.queued_bytes, weight);
                continue;
            }
            if let Some(a) = self.activity.get_mut(batch.source as usize) {
                *a = (now, now, true);
            }
            self.dispatch(|seq| ToWorker::Batch {
                seq,
                batch,
                permit: Some((permit, weight)),
            })?;
        }
        Ok(())
    }

    /// Moves the watermark of each source that has been idle for the timeout with the wall
    /// clock, as a logged record so that replay repeats it.
    fn idle_advances(&mut self) -> Result<(), ServeError> {
        let Some(timeout) = self.idle_timeout else {
            return Ok(());
        };
        let now = Instant::now();
        for source in 0..self.activity.len() {
            let (last, credited, seen) = self.activity[source];
            if !seen || now.duration_since(last) < timeout {
                continue;
            }
            let delta = now.duration_since(credited);
            if delta < (timeout / 4).max(Duration::from_millis(20)) {
                continue;
            }
            let delta_ms = delta.as_millis() as u64;
            self.activity[source].1 = credited + Duration::from_millis(delta_ms);
            let source = source as u16;
            if let Some(wal) = &mut self.wal {
                let bytes = wal.append(|out| Record::Advance { source, delta_ms }.encode(out));
                wal.write(false)?;
                ServeState::add(&self.state.wal_bytes, bytes);
                ServeState::add(&self.state.wal_records, 1);
            }
            self.dispatch(|seq| ToWorker::Advance { seq, source, delta_ms })?;
        }
        Ok(())
    }
}

impl Sequencer {
    /// Asks for a checkpoint every interval; once every sink has answered, writes it and
    /// removes the log's segments before its replay point.
    fn checkpoint(&mut self) -> Result<(), ServeError> {
        let (Some(c), Some(wal)) = (&mut self.checkpointer, &mut self.wal) else {
            return Ok(());
        };
        match c.in_flight {
            None if c.last.elapsed() >= c.interval => {
                c.in_flight = c.checkpoints.request();
                c.last = Instant::now();
            }
            None => {}
            Some(id) => {
                let Some(outputs) = c.checkpoints.complete(id) else {
                    return Ok(());
                };
                c.in_flight = None;
                let cut = outputs.values().map(|m| m.cut).min().unwrap_or(0);
                let (replay_from, maxima) = c.order.replay_point(cut.min(i64::MAX as u64) as i64);
                let clients: std::collections::BTreeMap<String, u64> = self
                    .durable
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect();
                let m = &c.manifest;
                if m.checkpoints > 0 && m.replay_from == replay_from && m.outputs == outputs && m.clients == clients {
                    // Nothing moved (an idle server): no write.
                    return Ok(());
                }
                // Everything the checkpoint points at is durable before it is written.
                wal.write(true)?;
                c.manifest.checkpoints += 1;
                c.manifest.replay_from = replay_from;
                c.manifest.maxima = maxima;
                c.manifest.clients = clients;
                c.manifest.outputs = outputs;
                c.manifest.store(&c.dir)?;
                let removed = wal.truncate_before(replay_from)?;
                ServeState::add(&self.state.checkpoints, 1);
                ServeState::add(&self.state.wal_segments_removed, removed as u64);
                self.state
                    .wal_segments
                    .store(wal.segments() as u64, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(cut, replay_from, removed, "checkpoint");
            }
        }
        Ok(())
    }
}

/// Opens the log in `dir` and replays it into the workers, from the checkpoint's replay point
/// when there is one (`manifest`); earlier records only tell which lines are durable.
pub(crate) fn open_and_replay(
    seq: &mut Sequencer,
    dir: &std::path::Path,
    manifest: Option<&Manifest>,
) -> Result<Replayed, ServeError> {
    let mut failed = None;
    let from = manifest.map_or(0, |m| m.replay_from);
    if let Some(m) = manifest {
        seq.durable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(m.clients.iter().map(|(k, v)| (k.clone(), *v)));
    }
    seq.seq = from;
    let (wal, replayed) = Wal::open(dir, from, |at, record| {
        if failed.is_some() {
            return;
        }
        if at < from {
            if let Record::Batch(batch) = &record {
                seq.note_durable(batch);
            }
            return;
        }
        if at != seq.seq {
            failed = Some(ServeError::Runtime(format!(
                "write-ahead log {}: record {at} where {} was expected",
                dir.display(),
                seq.seq
            )));
            return;
        }
        if let Err(e) = seq.replay(record) {
            failed = Some(e);
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    if wal.next_seq() < from {
        return Err(ServeError::Runtime(format!(
            "write-ahead log {}: the checkpoint replays from record {from}, but the log ends at {}",
            dir.display(),
            wal.next_seq()
        )));
    }
    seq.state
        .wal_segments
        .store(wal.segments() as u64, std::sync::atomic::Ordering::Relaxed);
    seq.wal = Some(wal);
    Ok(replayed)
}
