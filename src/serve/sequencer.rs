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
//!
//! The sequencer also decides which partitions hold each source's watermark
//! ([`super::partitions`]) and logs those decisions as records, in order with the batches: a
//! join when a client's hello arrives (before the hello is answered), a leave when an anonymous
//! connection closes or a partition has sent nothing for the idle timeout.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit};

use super::checkpoint::{Checkpoints, Manifest};
use super::order::Order;
use super::partitions::{Leave, Marks};
use super::record::{Batch, Record};
use super::snapshots::{Snapshots, StateMark};
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
    /// Snapshots of the stateful operators' state, asked for with checkpoints.
    pub state: StateSnapshots,
}

/// What the checkpointer asks of and keeps from [`Snapshots`].
pub(crate) struct StateSnapshots {
    pub store: Arc<Snapshots>,
    /// How far before the cut a snapshot must be to be used ([`crate::plan::retention`]).
    pub lag_ms: u64,
    /// Each tcp source's allowed lateness, and the tick: a snapshot's frontier is the largest
    /// tick a watermark has reached.
    pub lateness: Vec<u64>,
    pub tick_ms: u64,
    /// Complete snapshots that are not usable yet, oldest first.
    pub candidates: Vec<StateMark>,
    pub in_flight: Option<u64>,
}

impl StateSnapshots {
    /// Takes a snapshot that has completed; asks for the next one when none is in flight and
    /// the sources have moved a quarter of the lag (at least a tick) past the newest one, at
    /// the largest tick any source's watermark has reached, decided with publishing held so that
    /// no operator can have applied that tick yet.
    fn step(&mut self, order: &Order, chosen: Option<&StateMark>) {
        if let Some(id) = self.in_flight {
            match self.store.complete(id) {
                None => return,
                Some(Ok(mark)) => {
                    tracing::debug!(snapshot = id, frontier = mark.frontier, "state snapshot complete");
                    self.candidates.push(mark);
                }
                Some(Err(e)) => tracing::warn!(snapshot = id, "state snapshot not taken: {e}"),
            }
            self.in_flight = None;
        }
        if !self.store.ready() {
            return;
        }
        let newest = self.candidates.last().or(chosen).map(|m| m.frontier);
        let floor = chosen.map_or(0, |m| m.frontier);
        let spacing = (self.lag_ms / 4).max(self.tick_ms).max(1);
        let (lateness, tick) = (&self.lateness, self.tick_ms.max(1) as i64);
        self.in_flight = order.with_marks(|marks| {
            let target = marks
                .iter()
                .zip(lateness)
                .map(|(m, l)| m.watermark(*l))
                .filter(|wm| *wm > 0)
                .map(|wm| (wm - wm.rem_euclid(tick)) as u64)
                .max()
                .unwrap_or(0)
                .max(floor);
            let due = target > 0 && newest.is_none_or(|n| target >= n + spacing);
            due.then(|| self.store.request(target))
        });
        if let Some(id) = self.in_flight {
            tracing::debug!(snapshot = id, "state snapshot asked for");
        }
    }

    /// The latest complete snapshot usable at `cut`, if newer than `chosen`.
    fn choose(&mut self, cut: u64) -> Option<StateMark> {
        let bound = cut.saturating_sub(self.lag_ms);
        let usable = self.candidates.iter().take_while(|m| m.frontier <= bound).count();
        self.candidates.drain(..usable).next_back()
    }

    /// The snapshot folders still needed: the chosen one's, the candidates', the one in flight.
    fn needed(&self, chosen: Option<&StateMark>) -> Vec<u64> {
        let ids = chosen.into_iter().chain(&self.candidates).map(|m| m.id);
        ids.chain(self.in_flight).collect()
    }
}

/// A batch from a connection.
pub(crate) struct Inbound {
    pub batch: Batch,
    /// The connection it came on: a named client's batch is taken only from the connection
    /// that holds the client ([`Holders`]).
    pub conn: u64,
    /// Where the connection learns what is durable.
    pub acked: Arc<watch::Sender<u64>>,
    pub permit: OwnedSemaphorePermit,
    pub weight: u64,
}

/// What connections tell the sequencer, in the order they tell it.
pub(crate) enum ToSequencer {
    Batch(Inbound),
    /// A [`Record::Join`] when a client's hello is accepted (or an anonymous connection's first
    /// line arrives), or a [`Record::Leave`] when an anonymous connection closes, after its last
    /// batch; logged when it changes the present partitions. A join is sent before the hello
    /// is answered: a sender that waits for the answers of all its connections before sending
    /// lines has every partition present before its first line.
    Partition(Record),
}

impl ToSequencer {
    /// Bytes this message adds to the log's write buffer, about.
    fn weight(&self) -> usize {
        match self {
            ToSequencer::Batch(inbound) => inbound.batch.weight(),
            ToSequencer::Partition(_) => 64,
        }
    }
}

/// A record decided in a group commit, in log order.
enum Logged {
    Batch(Inbound),
    /// A batch whose lines the log already held: acknowledged, not logged.
    Empty(Inbound),
    Record(Record),
}

/// A named client's lines durable in the log, and when it was last active (a hello or a batch,
/// wall clock in epoch ms).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Client {
    pub offset: u64,
    pub seen_ms: i64,
}

/// Per named client: what the server holds of it. Shared with connections, which answer a
/// hello with it. A client idle beyond the retention is forgotten ([`Sequencer::expire_clients`]).
pub(crate) type Durable = Arc<Mutex<HashMap<String, Client>>>;

/// Which connection holds each named client. A hello with a client id takes it from the
/// connection that held it, which is told to close, as Kafka fences a producer of an older
/// epoch; the sequencer takes a named client's batches only from its holder. Two senders under
/// one id would otherwise number different lines alike, and the later of each pair would be
/// skipped as resent.
#[derive(Default)]
pub(crate) struct Holders {
    held: Mutex<HashMap<String, (u64, oneshot::Sender<()>)>>,
}

impl Holders {
    /// Connection `conn` holds `client` from now on. Returns what fires when a later connection
    /// takes it, and whether another connection held it until now (it is told to close).
    pub fn take(&self, client: &str, conn: u64) -> (oneshot::Receiver<()>, bool) {
        let (tx, rx) = oneshot::channel();
        let previous = lock(&self.held).insert(client.to_string(), (conn, tx));
        let fenced = previous.is_some_and(|(held_by, fence)| held_by != conn && fence.send(()).is_ok());
        (rx, fenced)
    }

    /// Connection `conn` closes: it no longer holds `client`, if it still did.
    pub fn release(&self, client: &str, conn: u64) {
        let mut held = lock(&self.held);
        if held.get(client).is_some_and(|(by, _)| *by == conn) {
            held.remove(client);
        }
    }

    /// Whether connection `conn` holds `client`.
    pub fn holds(&self, client: &str, conn: u64) -> bool {
        lock(&self.held).get(client).is_some_and(|(by, _)| *by == conn)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The wall clock, in epoch ms.
pub(crate) fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Most batches committed as one group.
const MAX_GROUP: usize = 1024;

/// Most bytes of batches committed as one group (one past it is taken): the log's write buffer
/// holds a group, so this, not the queue budget, bounds it.
const MAX_GROUP_BYTES: usize = 8 << 20;

pub(crate) struct Sequencer {
    pub wal: Option<Wal>,
    pub workers: Vec<SyncSender<ToWorker>>,
    pub durable: Durable,
    pub holders: Arc<Holders>,
    pub state: Arc<ServeState>,
    /// Watermark idle timeout; `None` disables idle advances.
    pub idle_timeout: Option<Duration>,
    seq: u64,
    /// Per TCP source: when a batch last arrived, up to when wall time was credited to the
    /// watermark, and whether the source has had any batch.
    activity: Vec<(Instant, Instant, bool)>,
    /// Present partitions (as the logged records leave them) and when each last sent.
    partitions: BTreeMap<(u16, String), Instant>,
    /// Queued bytes beyond which the server is behind (a connection may be waiting for the
    /// budget): no partition or source is idle then, its lines may just be waiting.
    pub backlog_bytes: u64,
    pub checkpointer: Option<Checkpointer>,
    /// Named clients inactive for longer are forgotten (`None`: never).
    pub client_retention: Option<Duration>,
    last_expiry: Instant,
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
            holders: Arc::default(),
            state,
            idle_timeout,
            seq: 0,
            activity: vec![(now, now, false); sources],
            partitions: BTreeMap::new(),
            backlog_bytes: u64::MAX,
            checkpointer: None,
            client_retention: None,
            last_expiry: now,
        }
    }

    /// Starts from a checkpoint's present partitions (their clock restarts now).
    pub fn seed(&mut self, marks: &[Marks]) {
        let now = Instant::now();
        for (k, m) in marks.iter().enumerate() {
            for client in m.partitions.keys() {
                self.partitions.insert((k as u16, client.clone()), now);
            }
        }
        self.count_partitions();
    }

    fn count_partitions(&self) {
        for (k, gauge) in self.state.partitions.iter().enumerate() {
            let n = self
                .partitions
                .range((k as u16, String::new())..)
                .take_while(|((s, _), _)| *s == k as u16);
            gauge.store(n.count() as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Notes what a logged record does to the present partitions.
    fn note_partition(&mut self, record: &Record, now: Instant) {
        match record {
            Record::Batch(b) => {
                self.partitions.insert((b.source, b.client.clone()), now);
            }
            Record::Join { source, client } => {
                self.partitions.insert((*source, client.clone()), now);
            }
            Record::Leave { source, client, why } => {
                self.partitions.remove(&(*source, client.clone()));
                if *why == Leave::Idle {
                    ServeState::add(&self.state.partitions_idle, 1);
                }
            }
            Record::Advance { .. } => {}
        }
    }

    /// Logs (without waiting for the disk) and dispatches a partition record.
    fn log_partition(&mut self, record: Record) -> Result<(), ServeError> {
        if let Some(wal) = &mut self.wal {
            let bytes = wal.append(|out| record.encode(out));
            wal.write(false)?;
            ServeState::add(&self.state.wal_bytes, bytes);
            ServeState::add(&self.state.wal_records, 1);
        }
        self.note_partition(&record, Instant::now());
        self.count_partitions();
        self.dispatch(|seq| ToWorker::Control { seq, record })
    }

    /// Anonymous partitions of an earlier process (from the log or its checkpoint) leave: their
    /// connections are gone, and this process numbers its own from 1 again.
    pub fn retire_orphans(&mut self) -> Result<(), ServeError> {
        let orphans: Vec<(u16, String)> = self
            .partitions
            .keys()
            .filter(|(_, c)| Marks::anonymous(c))
            .cloned()
            .collect();
        for (source, client) in orphans {
            let why = Leave::Closed;
            self.log_partition(Record::Leave { source, client, why })?;
        }
        Ok(())
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

    /// Notes the lines a logged batch makes durable, and its client's activity when it arrived.
    fn note_durable(&self, batch: &Batch) {
        if !batch.anonymous() {
            let mut durable = self.durable.lock().unwrap_or_else(|e| e.into_inner());
            let d = durable.entry(batch.client.clone()).or_default();
            d.offset = d.offset.max(batch.end_offset());
            d.seen_ms = d.seen_ms.max(batch.received_ms.unwrap_or_else(wall_ms));
        }
    }

    /// Forgets the named clients that have not been active for the retention, as Kafka forgets a
    /// producer id after `transactional.id.expiration.ms`: their offsets go (a returning client is
    /// a new one), and so do the watermark partitions they still hold (logged leaves). Checked
    /// every tenth of the retention (at most every second).
    fn expire_clients(&mut self) -> Result<(), ServeError> {
        let Some(retention) = self.client_retention else {
            return Ok(());
        };
        if self.last_expiry.elapsed() < (retention / 10).clamp(Duration::from_millis(10), Duration::from_secs(1)) {
            return Ok(());
        }
        self.last_expiry = Instant::now();
        let cutoff = wall_ms().saturating_sub(retention.as_millis() as i64);
        let mut expired = Vec::new();
        {
            let mut durable = self.durable.lock().unwrap_or_else(|e| e.into_inner());
            durable.retain(|client, c| {
                let keep = c.seen_ms >= cutoff;
                if !keep {
                    expired.push(client.clone());
                }
                keep
            });
        }
        if expired.is_empty() {
            return Ok(());
        }
        ServeState::add(&self.state.clients_expired, expired.len() as u64);
        tracing::info!(clients = expired.len(), first = %expired[0], "clients expired after the retention");
        let held: Vec<(u16, String)> = self
            .partitions
            .keys()
            .filter(|(_, c)| expired.contains(c))
            .cloned()
            .collect();
        for (source, client) in held {
            let why = Leave::Idle;
            self.log_partition(Record::Leave { source, client, why })?;
        }
        Ok(())
    }

    /// Hands a replayed record to the workers and notes what it makes durable.
    pub fn replay(&mut self, record: Record) -> Result<(), ServeError> {
        self.note_partition(&record, Instant::now());
        match record {
            Record::Advance { .. } | Record::Join { .. } | Record::Leave { .. } => {
                self.dispatch(|seq| ToWorker::Control { seq, record })
            }
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
    pub async fn run(mut self, mut rx: mpsc::Receiver<ToSequencer>) -> Result<Option<Wal>, ServeError> {
        self.retire_orphans()?;
        self.count_partitions();
        // Clients that expired while the server was down go first.
        self.last_expiry = Instant::now() - Duration::from_secs(3600);
        self.expire_clients()?;
        let mut tick = match self.idle_timeout {
            Some(t) => (t / 4).clamp(Duration::from_millis(20), Duration::from_secs(1)),
            None => Duration::from_secs(3600),
        };
        // Clients are expired between groups too.
        if let Some(r) = self.client_retention {
            tick = tick.min((r / 10).clamp(Duration::from_millis(10), Duration::from_secs(1)));
        }
        // Checkpoints are asked for, and completed, between groups.
        if let Some(c) = &self.checkpointer {
            tick = tick.min((c.interval / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)));
        }
        let mut group: Vec<ToSequencer> = Vec::new();
        loop {
            let mut bytes = 0;
            match tokio::time::timeout(tick, rx.recv()).await {
                Ok(Some(first)) => {
                    bytes += first.weight();
                    group.push(first);
                }
                Ok(None) => break,
                Err(_) => {}
            }
            while group.len() < MAX_GROUP && bytes < MAX_GROUP_BYTES {
                match rx.try_recv() {
                    Ok(more) => {
                        bytes += more.weight();
                        group.push(more);
                    }
                    Err(_) => break,
                }
            }
            // Behind (more queued, or connections waiting for the byte budget): lines that are
            // still on their way must not make their partition look idle.
            let behind = group.len() == MAX_GROUP
                || bytes >= MAX_GROUP_BYTES
                || ServeState::get(&self.state.queued_bytes) > self.backlog_bytes;
            self.commit(&mut group)?;
            if !behind {
                self.idle_advances()?;
            }
            self.expire_clients()?;
            let clients = self.durable.lock().unwrap_or_else(|e| e.into_inner()).len();
            self.state
                .clients
                .store(clients as u64, std::sync::atomic::Ordering::Relaxed);
            self.checkpoint()?;
        }
        if let Some(wal) = &mut self.wal {
            wal.write(true)?;
        }
        Ok(self.wal)
    }

    /// Logs, acknowledges and dispatches one group of batches, joins and leaves, in order.
    fn commit(&mut self, group: &mut Vec<ToSequencer>) -> Result<(), ServeError> {
        if group.is_empty() {
            return Ok(());
        }
        // A batch of a client that another connection has taken since is refused unlogged and
        // unacknowledged: its connection was fenced and closes, and the new holder resends from
        // what is durable.
        group.retain(|msg| match msg {
            ToSequencer::Batch(inbound) if !inbound.batch.anonymous() => {
                let held = self.holders.holds(&inbound.batch.client, inbound.conn);
                if !held {
                    ServeState::add(&self.state.lines_fenced, u64::from(inbound.batch.lines));
                    ServeState::sub(&self.state.queued_bytes, inbound.weight);
                }
                held
            }
            _ => true,
        });
        {
            let durable = self.durable.lock().unwrap_or_else(|e| e.into_inner());
            for msg in group.iter_mut() {
                let ToSequencer::Batch(inbound) = msg else {
                    continue;
                };
                let b = &mut inbound.batch;
                if !b.anonymous() {
                    let skipped = b.skip_through(durable.get(&b.client).map_or(0, |c| c.offset));
                    ServeState::add(&self.state.lines_deduplicated, skipped);
                }
            }
        }
        // What each message logs, given the partitions present before it.
        let now = Instant::now();
        let mut logged = Vec::with_capacity(group.len());
        for msg in group.drain(..) {
            match msg {
                ToSequencer::Batch(inbound) if inbound.batch.is_empty() => {
                    let key = (inbound.batch.source, inbound.batch.client.clone());
                    if let Some(last) = self.partitions.get_mut(&key) {
                        *last = now;
                    }
                    logged.push(Logged::Empty(inbound));
                }
                ToSequencer::Batch(inbound) => {
                    let key = (inbound.batch.source, inbound.batch.client.clone());
                    self.partitions.insert(key, now);
                    logged.push(Logged::Batch(inbound));
                }
                ToSequencer::Partition(record) => {
                    let (Record::Join { source, client } | Record::Leave { source, client, .. }) = &record else {
                        continue;
                    };
                    let last = self.partitions.get_mut(&(*source, client.clone()));
                    let changes = match (&record, last) {
                        (Record::Join { .. }, Some(last)) => {
                            *last = now;
                            false
                        }
                        (Record::Join { .. }, None) => true,
                        (_, present) => present.is_some(),
                    };
                    if changes {
                        self.note_partition(&record, now);
                        logged.push(Logged::Record(record));
                    }
                }
            }
        }
        self.count_partitions();
        if let Some(wal) = &mut self.wal {
            let mut bytes = 0;
            let mut records = 0;
            for l in &logged {
                match l {
                    Logged::Batch(inbound) => bytes += wal.append(|out| inbound.batch.encode(out)),
                    Logged::Record(r) => bytes += wal.append(|out| r.encode(out)),
                    Logged::Empty(_) => continue,
                }
                records += 1;
            }
            wal.write(true)?;
            ServeState::add(&self.state.wal_bytes, bytes);
            ServeState::add(&self.state.wal_records, records);
            ServeState::add(&self.state.wal_syncs, 1);
        }
        {
            let mut durable = self.durable.lock().unwrap_or_else(|e| e.into_inner());
            let seen_ms = wall_ms();
            for l in &logged {
                let (Logged::Batch(inbound) | Logged::Empty(inbound)) = l else {
                    continue;
                };
                let b = &inbound.batch;
                let end = b.end_offset();
                if !b.anonymous() {
                    let d = durable.entry(b.client.clone()).or_default();
                    d.offset = d.offset.max(end);
                    d.seen_ms = d.seen_ms.max(seen_ms);
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
        for l in logged {
            match l {
                Logged::Empty(inbound) => ServeState::sub(&self.state.queued_bytes, inbound.weight),
                Logged::Record(record) => self.dispatch(|seq| ToWorker::Control { seq, record })?,
                Logged::Batch(inbound) => {
                    let Inbound {
                        batch, permit, weight, ..
                    } = inbound;
                    if let Some(a) = self.activity.get_mut(batch.source as usize) {
                        *a = (now, now, true);
                    }
                    self.dispatch(|seq| ToWorker::Batch {
                        seq,
                        batch,
                        permit: Some((permit, weight)),
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Partitions that have sent nothing for the idle timeout leave, as logged records.
    fn idle_partitions(&mut self, timeout: Duration, now: Instant) -> Result<(), ServeError> {
        let idle: Vec<(u16, String)> = self
            .partitions
            .iter()
            .filter(|(_, last)| now.duration_since(**last) >= timeout)
            .map(|(key, _)| key.clone())
            .collect();
        for (source, client) in idle {
            let why = Leave::Idle;
            self.log_partition(Record::Leave { source, client, why })?;
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
        self.idle_partitions(timeout, now)?;
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
            let record = Record::Advance { source, delta_ms };
            self.dispatch(|seq| ToWorker::Control { seq, record })?;
        }
        Ok(())
    }
}

impl Sequencer {
    /// Asks for a checkpoint every interval (and for the operators' state, see
    /// [`StateSnapshots`]); once every sink has answered, writes it and removes the log's
    /// segments before its replay point.
    fn checkpoint(&mut self) -> Result<(), ServeError> {
        let (Some(c), Some(wal)) = (&mut self.checkpointer, &mut self.wal) else {
            return Ok(());
        };
        match c.in_flight {
            None if c.last.elapsed() >= c.interval => {
                c.in_flight = c.checkpoints.request();
                c.state.step(&c.order, c.manifest.state.as_ref());
                c.last = Instant::now();
            }
            None => {}
            Some(id) => {
                let Some(outputs) = c.checkpoints.complete(id) else {
                    return Ok(());
                };
                c.in_flight = None;
                c.state.step(&c.order, c.manifest.state.as_ref());
                let cut = outputs.values().map(|m| m.cut).min().unwrap_or(0);
                let state = c.state.choose(cut).or_else(|| c.manifest.state.clone());
                let frontier = state.as_ref().map(|m| m.frontier.min(i64::MAX as u64) as i64);
                let (replay_from, watermarks) = c.order.replay_point(cut.min(i64::MAX as u64) as i64, frontier);
                let (clients, client_seen) = {
                    let durable = self.durable.lock().unwrap_or_else(|e| e.into_inner());
                    let offsets = durable.iter().map(|(k, c)| (k.clone(), c.offset)).collect();
                    let seen = durable.iter().map(|(k, c)| (k.clone(), c.seen_ms)).collect();
                    (offsets, seen)
                };
                let m = &c.manifest;
                if m.checkpoints > 0
                    && m.replay_from == replay_from
                    && m.outputs == outputs
                    && m.clients == clients
                    && m.client_seen == client_seen
                    && m.state == state
                {
                    // Nothing moved (an idle server): no write.
                    return Ok(());
                }
                // Everything the checkpoint points at is durable before it is written.
                wal.write(true)?;
                c.manifest.checkpoints += 1;
                c.manifest.replay_from = replay_from;
                c.manifest.watermarks = watermarks;
                c.manifest.clients = clients;
                c.manifest.client_seen = client_seen;
                c.manifest.outputs = outputs;
                c.manifest.state = state;
                c.manifest.store(&c.dir)?;
                let removed = wal.truncate_before(replay_from)?;
                c.state
                    .store
                    .remove_except(&c.state.needed(c.manifest.state.as_ref()))?;
                ServeState::add(&self.state.checkpoints, 1);
                ServeState::add(&self.state.wal_segments_removed, removed as u64);
                self.state
                    .wal_segments
                    .store(wal.segments() as u64, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(cut, replay_from, removed, state = ?frontier, "checkpoint");
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
        seq.seed(&m.watermarks);
        // A checkpoint of an earlier sluice has no activity: its clients count as active now.
        let now = wall_ms();
        seq.durable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(m.clients.iter().map(|(k, v)| {
                let seen_ms = m.client_seen.get(k).copied().unwrap_or(now);
                (k.clone(), Client { offset: *v, seen_ms })
            }));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_connection_takes_a_client_and_fences_the_holder() {
        let holders = Holders::default();
        let (mut first, fenced) = holders.take("c", 1);
        assert!(!fenced);
        assert!(holders.holds("c", 1));
        assert!(first.try_recv().is_err(), "not fenced yet");
        let (_second, fenced) = holders.take("c", 2);
        assert!(fenced);
        assert!(first.try_recv().is_ok(), "told to close");
        assert!(!holders.holds("c", 1) && holders.holds("c", 2));
        // The fenced connection closing does not release the new holder's id.
        holders.release("c", 1);
        assert!(holders.holds("c", 2));
        holders.release("c", 2);
        assert!(!holders.holds("c", 2));
        // The same connection taking its id again fences nothing.
        let (_again, _) = holders.take("d", 3);
        assert!(!holders.take("d", 3).1);
    }
}
