//! The network side of `sluice serve` (tokio): accept connections, read each into lines with a
//! [`Framer`], check the optional hello, and hand batches to the sequencer within a global byte
//! budget; a writer task per connection sends the acknowledgements.
//!
//! A connection is *pending* until its first line (the hello, or the first line of data when
//! no token is required) has arrived and been accepted. Pending connections are limited apart
//! from the others: at most `max_pending_connections` of them (a newer one displaces the
//! oldest), each for at most `handshake_timeout` from its accept, however many bytes it sends.
//! Only then does a connection take one of the `max_connections` slots, so sockets that never
//! finish a hello cannot hold the slots that clients with the token need.
//!
//! A connection's memory is bounded by its read buffer plus `max_line_bytes`; all connections
//! together queue at most `queue_bytes` for the workers. When the budget is spent, connections
//! wait for it before reading more, so senders feel TCP backpressure.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::frame::{Framer, Leftover, Piece};
use super::protocol::{ack_line, error_line, parse_hello, Hello};
use super::record::{Batch, Leave, Record, Reject, RejectReason};
use super::sequencer::{Durable, Holders, Inbound, ToSequencer};
use super::state::ServeState;
use super::Limits;

/// Bytes read from a socket at a time.
pub const READ_CHUNK: usize = 64 << 10;

/// How long a closing connection waits for its last acknowledgements to be written.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

pub(crate) struct Net {
    pub tx: mpsc::Sender<ToSequencer>,
    pub budget: Arc<Semaphore>,
    pub budget_bytes: usize,
    pub durable: Durable,
    pub holders: Arc<Holders>,
    /// A named client idle for longer is unknown (see [`super::sequencer::Client`]).
    pub client_retention: Option<Duration>,
    /// TCP source names, in sequencer order.
    pub sources: Vec<String>,
    pub token: Option<String>,
    pub limits: Limits,
    pub state: Arc<ServeState>,
}

/// Connections waiting for their first line, oldest first, each with a way to tell it to give
/// up its place.
#[derive(Default)]
struct Handshakes {
    waiting: VecDeque<(u64, oneshot::Sender<()>)>,
}

/// Where a connection stands until its first line is accepted.
struct Handshake {
    id: u64,
    handshakes: Arc<Mutex<Handshakes>>,
    /// Fires when a newer connection displaced this one.
    displaced: Option<oneshot::Receiver<()>>,
    deadline: tokio::time::Instant,
    slots: Arc<Semaphore>,
}

impl Handshakes {
    /// Adds connection `id`; when that makes more than `max`, the oldest is told to go (it
    /// answers the client and counts itself as refused). Returns the new connection's receiver.
    fn add(this: &Mutex<Handshakes>, id: u64, max: usize) -> oneshot::Receiver<()> {
        let mut h = this.lock().unwrap_or_else(|e| e.into_inner());
        let (tx, rx) = oneshot::channel();
        h.waiting.push_back((id, tx));
        while h.waiting.len() > max {
            if let Some((_, oldest)) = h.waiting.pop_front() {
                let _ = oldest.send(());
            }
        }
        rx
    }

    fn remove(this: &Mutex<Handshakes>, id: u64) {
        let mut h = this.lock().unwrap_or_else(|e| e.into_inner());
        h.waiting.retain(|(i, _)| *i != id);
    }
}

impl Handshake {
    /// Resolves when the connection must give up: displaced, or past its deadline.
    async fn expired(&mut self) -> Expired {
        let (deadline, receiver) = (self.deadline, &mut self.displaced);
        let displaced = async {
            if let Some(rx) = receiver.as_mut() {
                if rx.await.is_ok() {
                    return;
                }
                // Removed from the queue without being told to go (a receiver is not polled
                // again once it has answered).
                *receiver = None;
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            _ = displaced => Expired::Displaced,
            _ = tokio::time::sleep_until(deadline) => Expired::Deadline,
        }
    }

    /// The first line was accepted: the connection leaves the queue and takes a slot.
    fn complete(&mut self) -> Option<OwnedSemaphorePermit> {
        Handshakes::remove(&self.handshakes, self.id);
        self.displaced = None;
        Arc::clone(&self.slots).try_acquire_owned().ok()
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        Handshakes::remove(&self.handshakes, self.id);
    }
}

enum Expired {
    Displaced,
    Deadline,
}

/// Accepts connections until `shutdown` turns true, then waits for every connection to drain.
pub(crate) async fn serve(listener: TcpListener, net: Arc<Net>, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(net.limits.max_connections));
    let handshakes = Arc::new(Mutex::new(Handshakes::default()));
    let mut tasks = JoinSet::new();
    let mut next_id = 0u64;
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors, or a connection reset before accept.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                next_id += 1;
                ServeState::add(&net.state.connections_total, 1);
                let limits = &net.limits;
                let displaced = Handshakes::add(&handshakes, next_id, limits.max_pending_connections);
                let handshake = Handshake {
                    id: next_id,
                    handshakes: Arc::clone(&handshakes),
                    displaced: Some(displaced),
                    deadline: tokio::time::Instant::now() + limits.handshake_timeout,
                    slots: Arc::clone(&slots),
                };
                let (net, shutdown) = (Arc::clone(&net), shutdown.clone());
                tasks.spawn(async move {
                    ServeState::add(&net.state.connections_open, 1);
                    connection(stream, next_id, &net, shutdown, handshake).await;
                    ServeState::sub(&net.state.connections_open, 1);
                });
            }
        }
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

/// Reads and drops what the client still sends (at most 1 MiB, for at most a second), so that
/// closing does not reset the connection and destroy the error line before the client reads it.
async fn drain(stream: &mut (impl AsyncReadExt + Unpin)) {
    let mut buf = [0u8; 8192];
    let mut left = 1usize << 20;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while left > 0 {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => break,
        }
    }
}

/// Lines read since the last batch was sent.
#[derive(Default)]
struct Pending {
    data: Vec<u8>,
    lines: u32,
    /// Rejects with offsets relative to the batch.
    rejects: Vec<Reject>,
}

impl Pending {
    fn add(&mut self, piece: Piece<'_>) {
        self.lines += 1;
        match piece {
            Piece::Line(line) => {
                self.data.extend_from_slice(line);
                self.data.push(b'\n');
            }
            Piece::TooLarge { prefix, bytes } => self.rejects.push(Reject {
                offset: u64::from(self.lines),
                reason: RejectReason::TooLarge,
                bytes,
                prefix,
            }),
        }
    }

    /// The end of the stream: a fragment, or a long line the stream ended in. It has the
    /// offset the next line would have but is not a line: a resuming client resends it whole.
    fn leftover(&mut self, left: Leftover) {
        let (reason, prefix, bytes) = match left {
            Leftover::Truncated { prefix, bytes } => (RejectReason::Truncated, prefix, bytes),
            Leftover::TooLarge { prefix, bytes } => (RejectReason::TooLarge, prefix, bytes),
        };
        self.rejects.push(Reject {
            offset: u64::from(self.lines) + 1,
            reason,
            bytes,
            prefix,
        });
    }
}

/// Who is sending on a connection, once the hello (or the first line) has been seen.
struct Peer {
    /// The connection's id.
    conn: u64,
    client: String,
    source: u16,
    next_offset: u64,
    /// The hello's answer (lines of the client already durable), sent once the sequencer has
    /// the client's join.
    reply: Option<u64>,
    /// Fires when a later connection's hello takes this one's client id.
    fenced: Option<oneshot::Receiver<()>>,
}

/// Resolves when a later connection has taken the peer's client id; never for an anonymous
/// peer, or before the hello.
async fn fenced(peer: &mut Option<Peer>) {
    if let Some(slot) = peer.as_mut().map(|p| &mut p.fenced) {
        if let Some(rx) = slot.as_mut() {
            if rx.await.is_ok() {
                return;
            }
            // The holder's entry went without a fence (the server stopping); a receiver is not
            // polled again once it has answered.
            *slot = None;
        }
    }
    std::future::pending::<()>().await
}

enum End {
    Eof,
    Idle,
    Shutdown,
    Rejected,
    Gone,
}

async fn connection(
    stream: TcpStream,
    id: u64,
    net: &Net,
    mut shutdown: watch::Receiver<bool>,
    mut handshake: Handshake,
) {
    let (mut rd, wr) = stream.into_split();
    let (ack_tx, ack_rx) = watch::channel(0u64);
    let acked = Arc::new(ack_tx);
    let (err_tx, err_rx) = oneshot::channel::<String>();
    let writer = tokio::spawn(writer(wr, ack_rx, err_rx, Arc::clone(&net.state)));
    let mut err_tx = Some(err_tx);

    let mut framer = Framer::new(net.limits.max_line_bytes);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut pending = Pending::default();
    let mut first: Option<Option<Result<Hello, String>>> = None;
    let mut peer: Option<Peer> = None;
    // Held from the end of the handshake to the end of the connection.
    let mut slot: Option<OwnedSemaphorePermit> = None;
    let mut reject = |message: String, counter: &std::sync::atomic::AtomicU64| {
        ServeState::add(counter, 1);
        if let Some(tx) = err_tx.take() {
            let _ = tx.send(message);
        }
        End::Rejected
    };
    let end = loop {
        let n = tokio::select! {
            biased;
            _ = shutdown.changed() => break End::Shutdown,
            _ = fenced(&mut peer) => break reject(
                format!(
                    "fenced: client id `{}` connected again on another connection; lines not \
                     acknowledged here are taken only from that one",
                    peer.as_ref().map_or("", |p| &p.client)
                ),
                &net.state.connections_fenced,
            ),
            expired = handshake.expired(), if peer.is_none() => break match expired {
                Expired::Displaced => reject(
                    "too many connections waiting for their hello: a newer one took this one's place".into(),
                    &net.state.connections_refused,
                ),
                Expired::Deadline => reject(
                    format!(
                        "no complete first line (hello) within the handshake timeout of {:?}",
                        net.limits.handshake_timeout
                    ),
                    &net.state.connections_timed_out,
                ),
            },
            read = tokio::time::timeout(net.limits.conn_idle_timeout, rd.read(&mut buf)) => match read {
                Err(_) => break End::Idle,
                Ok(Ok(0)) | Ok(Err(_)) => break End::Eof,
                Ok(Ok(n)) => n,
            },
        };
        ServeState::add(&net.state.bytes_received, n as u64);
        framer.push(&buf[..n], &mut |piece| {
            if first.is_none() {
                let hello = match &piece {
                    Piece::Line(line) => parse_hello(line),
                    Piece::TooLarge { .. } => None,
                };
                let is_hello = hello.is_some();
                first = Some(hello);
                if is_hello {
                    return;
                }
            }
            pending.add(piece);
        });
        if peer.is_none() {
            if let Some(hello) = &first {
                match greet(hello.as_ref(), id, net) {
                    Ok(mut p) => match handshake.complete() {
                        Some(permit) => {
                            slot = Some(permit);
                            hold(&mut p, net);
                            if !join(&p, net, &acked).await {
                                break End::Gone;
                            }
                            peer = Some(p);
                        }
                        None => break reject("too many connections".into(), &net.state.connections_refused),
                    },
                    Err(message) => break reject(message, &net.state.connections_rejected),
                }
            }
        }
        if let Some(p) = &mut peer {
            if !send(p, &mut pending, net, &acked).await {
                break End::Gone;
            }
        }
    };
    match end {
        End::Eof | End::Idle => {
            if matches!(end, End::Idle) {
                ServeState::add(&net.state.connections_timed_out, 1);
            }
            if let Some(left) = framer.finish() {
                pending.leftover(left);
            }
            if peer.is_none() && (!pending.data.is_empty() || !pending.rejects.is_empty()) {
                // Only a fragment arrived: it is a line of an anonymous sender, if that is allowed.
                if let Ok(p) = greet(None, id, net) {
                    if join(&p, net, &acked).await {
                        peer = Some(p);
                    }
                }
            }
            if let Some(p) = &mut peer {
                send(p, &mut pending, net, &acked).await;
            }
        }
        // A partial line at shutdown was not acknowledged: the client resends it.
        End::Shutdown => {
            if let Some(p) = &mut peer {
                send(p, &mut pending, net, &acked).await;
            }
        }
        End::Rejected => {
            // The buffers go before the (bounded) wait for what the client still sends.
            drop((buf, framer, pending));
            drain(&mut rd).await
        }
        End::Gone => {}
    }
    if let Some(p) = &peer {
        net.holders.release(&p.client, id);
    }
    // An anonymous partition ends with its connection (after its last batch).
    if let Some(p) = peer.filter(|p| super::partitions::Marks::anonymous(&p.client)) {
        let (source, client, why) = (p.source, p.client, Leave::Closed);
        let _ = net
            .tx
            .send(ToSequencer::Partition(Record::Leave { source, client, why }))
            .await;
    }
    drop(acked);
    drop(err_tx);
    let _ = tokio::time::timeout(CLOSE_GRACE, writer).await;
    drop(slot);
}

/// Tells the sequencer that the peer's partition is present, then answers its hello; `false`
/// when the server is stopping.
async fn join(peer: &Peer, net: &Net, acked: &watch::Sender<u64>) -> bool {
    let (source, client) = (peer.source, peer.client.clone());
    if net
        .tx
        .send(ToSequencer::Partition(Record::Join { source, client }))
        .await
        .is_err()
    {
        return false;
    }
    if let Some(durable) = peer.reply {
        acked.send_replace(durable);
    }
    true
}

/// A named peer takes its client id from the connection that held it (see [`Holders`]), once
/// its connection has a slot: a connection refused for the limit fences no one.
fn hold(peer: &mut Peer, net: &Net) {
    if super::partitions::Marks::anonymous(&peer.client) {
        return;
    }
    let (rx, fenced_other) = net.holders.take(&peer.client, peer.conn);
    peer.fenced = Some(rx);
    if fenced_other {
        tracing::info!(client = %peer.client, "a hello took the client id from another connection");
    }
}

/// Checks the hello (or its absence); the peer's `reply` is the lines of this client already
/// durable.
fn greet(hello: Option<&Result<Hello, String>>, id: u64, net: &Net) -> Result<Peer, String> {
    let hello = match hello {
        Some(Err(e)) => return Err(e.clone()),
        Some(Ok(h)) => Some(h),
        None => None,
    };
    if let Some(token) = &net.token {
        let presented = hello.and_then(|h| h.token.as_deref());
        if !presented.is_some_and(|t| super::protocol::same_secret(t, token)) {
            return Err("unauthorized: send {\"hello\":1,\"token\":\"...\"} first".into());
        }
    }
    let source = match hello.and_then(|h| h.source.as_ref()) {
        None => 0,
        Some(name) => match net.sources.iter().position(|s| s == name) {
            Some(i) => i as u16,
            None => {
                return Err(format!(
                    "no tcp source named `{name}`; sources: {}",
                    net.sources.join(", ")
                ))
            }
        },
    };
    let Some(hello) = hello else {
        return Ok(Peer {
            conn: id,
            client: format!("#{id}"),
            source,
            next_offset: 0,
            reply: None,
            fenced: None,
        });
    };
    let (client, durable) = match &hello.client {
        Some(c) => {
            // A hello is activity: it keeps a known client from expiring. An unknown client (new,
            // or idle beyond --client-retention, whether or not the sequencer has forgotten it
            // yet) has no durable lines.
            let mut durable = net.durable.lock().unwrap_or_else(|e| e.into_inner());
            let now = super::sequencer::wall_ms();
            let cutoff = net
                .client_retention
                .map_or(i64::MIN, |r| now.saturating_sub(r.as_millis() as i64));
            if durable.get(c).is_some_and(|d| d.seen_ms < cutoff) {
                durable.remove(c);
                ServeState::add(&net.state.clients_expired, 1);
            }
            let known = durable.get_mut(c).map(|d| {
                d.seen_ms = d.seen_ms.max(now);
                d.offset
            });
            (c.clone(), known.unwrap_or(0))
        }
        None => (format!("#{id}"), 0),
    };
    Ok(Peer {
        conn: id,
        client,
        source,
        next_offset: hello.offset.unwrap_or(durable),
        reply: Some(durable),
        fenced: None,
    })
}

/// Sends the pending lines as one batch; `false` when the server is stopping for good.
async fn send(peer: &mut Peer, pending: &mut Pending, net: &Net, acked: &Arc<watch::Sender<u64>>) -> bool {
    if pending.lines == 0 && pending.rejects.is_empty() {
        return true;
    }
    let p = std::mem::take(pending);
    let base = peer.next_offset;
    let received_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let batch = Batch {
        received_ms: Some(received_ms),
        source: peer.source,
        client: peer.client.clone(),
        first_offset: base,
        lines: p.lines,
        data: p.data,
        rejects: p
            .rejects
            .into_iter()
            .map(|r| Reject {
                offset: base + r.offset,
                ..r
            })
            .collect(),
    };
    peer.next_offset += u64::from(p.lines);
    ServeState::add(&net.state.lines_received, u64::from(p.lines));
    let weight = batch.weight().min(net.budget_bytes);
    let Ok(permit) = Arc::clone(&net.budget).acquire_many_owned(weight as u32).await else {
        return false;
    };
    ServeState::add(&net.state.queued_bytes, weight as u64);
    let inbound = Inbound {
        conn: peer.conn,
        batch,
        acked: Arc::clone(acked),
        permit,
        weight: weight as u64,
    };
    if net.tx.send(ToSequencer::Batch(inbound)).await.is_err() {
        ServeState::sub(&net.state.queued_bytes, weight as u64);
        return false;
    }
    true
}

/// Writes acknowledgements as they change, or one error; ends when the connection and every
/// batch of it in flight are done.
async fn writer(
    mut wr: OwnedWriteHalf,
    mut acks: watch::Receiver<u64>,
    mut error: oneshot::Receiver<String>,
    state: Arc<ServeState>,
) {
    let mut error_open = true;
    loop {
        tokio::select! {
            // An error first: the acknowledgements end when the connection does.
            biased;
            message = &mut error, if error_open => match message {
                Ok(message) => {
                    let _ = wr.write_all(error_line(&message).as_bytes()).await;
                    break;
                }
                Err(_) => error_open = false,
            },
            changed = acks.changed() => {
                if changed.is_err() {
                    break;
                }
                let n = *acks.borrow_and_update();
                if wr.write_all(ack_line(n).as_bytes()).await.is_err() {
                    break;
                }
                ServeState::add(&state.acks_sent, 1);
            }
        }
    }
    let _ = wr.shutdown().await;
}
