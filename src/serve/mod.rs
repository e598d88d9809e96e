//! `sluice serve`: the dataflow of a spec kept running over NDJSON lines that arrive on TCP,
//! with a write-ahead log, acknowledgements, real-time watermarks and limits on untrusted input.
//!
//! ```text
//!  clients ─TCP─► net (tokio): framer, hello, byte budget ─► sequencer (thread): order, dedup,
//!                                                              WAL group commit, {"ack":N}
//!                                                                   │ record s → worker s % W
//!                                                                   ▼
//!  file sources (context) ─────────────────────────────► timely workers: parse, admit with the
//!                                                        watermark (order.rs, partitions.rs),
//!                                                        render, sinks
//! ```
//!
//! Transport (`net`, `frame`, `protocol`) is kept apart from format: lines are parsed on the
//! workers by the NDJSON reader's [`crate::source::ndjson::parse_line`], and bad lines become
//! dead letters with a reason, never errors. The README's "Serving over TCP" section is the
//! protocol's reference.
//!
//! Invariants:
//! - An acknowledged line is in the log and fsynced; a restart replays the log before accepting
//!   connections, and lines a client resends that the log already holds are skipped.
//! - Records are applied in log order (watermarks are decided in that order whatever the number
//!   of workers), so replaying the log reproduces the run it records.
//! - Memory is bounded by configuration: `(max_connections + max_pending_connections) × (64 KiB +
//!   max_line_bytes)` of connection buffers, `queue_bytes` of queued lines, a log write group of at
//!   most 8 MiB, `max_field_names` interned names.

pub mod checkpoint;
pub mod frame;
pub mod http;
pub mod live;
pub mod metrics;
pub mod net;
pub mod order;
pub mod partitions;
pub mod protocol;
pub mod record;
pub mod send;
pub mod sequencer;
pub mod snapshots;
pub mod state;
pub mod subscribe;
pub mod wal;
pub(crate) mod worker;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::RunError;
use crate::plan::{Format, Plan};
use crate::run::{clear_outputs, load_registry, OutputSummary, RunConfig};
use crate::source::Layout;
use state::ServeState;
use wal::{Replayed, WalError};

/// Limits on what clients may send and on what the server holds for them.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longer lines are discarded up to their newline and dead-lettered `too_large`.
    pub max_line_bytes: usize,
    /// Connections past their handshake; further ones are refused (and counted).
    pub max_connections: usize,
    /// Connections still waiting for their first line (the hello), apart from the others; a
    /// newer one beyond this displaces the oldest (counted as refused).
    pub max_pending_connections: usize,
    /// A connection must complete its first line (the hello) this soon after it is accepted;
    /// bytes do not extend it.
    pub handshake_timeout: Duration,
    /// Distinct field names (and event types) the process interns; a line that would add more
    /// is dead-lettered `too_many_fields`.
    pub max_field_names: usize,
    /// A connection without a byte for this long is closed (a fragment is `truncated`).
    pub conn_idle_timeout: Duration,
    /// Bytes of lines queued between the sockets and the workers, over all connections.
    pub queue_bytes: usize,
    /// Records queued per worker.
    pub worker_queue: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_line_bytes: 1 << 20,
            max_connections: 1024,
            max_pending_connections: 256,
            handshake_timeout: Duration::from_secs(5),
            max_field_names: 100_000,
            conn_idle_timeout: Duration::from_secs(300),
            queue_bytes: 64 << 20,
            worker_queue: 64,
        }
    }
}

/// How to serve: validated once from the command line.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub wal_dir: Option<PathBuf>,
    pub workers: usize,
    pub out_dir: Option<PathBuf>,
    /// Required from every client (in its hello) when set; required to listen beyond loopback.
    pub auth_token: Option<String>,
    /// A client (partition) that sends nothing for this long stops holding its source's
    /// watermark; when no line arrives on a TCP source for this long, its watermark moves with
    /// the wall clock. `None` does neither: only anonymous connections that close leave.
    pub idle_timeout: Option<Duration>,
    pub limits: Limits,
    /// Threads of the network runtime.
    pub io_threads: usize,
    /// HTTP endpoint: status, metrics, live collections, streamed subscriptions (`http.rs`).
    pub http: Option<SocketAddr>,
    /// TCP endpoint for subscriptions (`subscribe.rs`).
    pub subscribe: Option<SocketAddr>,
    /// A live view with more distinct rows drops its contents (lookups then fail).
    pub live_rows: usize,
    /// Changes a subscriber may leave unread before it is disconnected.
    pub subscriber_queue: usize,
    /// With `--wal` and `--out`: how often outputs are written up to their frontier and the
    /// log truncated (`None` only at shutdown).
    pub checkpoint_interval: Option<Duration>,
    /// Log segment size (a segment is the unit a checkpoint removes).
    pub wal_segment_bytes: u64,
    /// A named client with no hello and no line for this long is forgotten: its offset (and
    /// any watermark partition it holds) goes, and it is a new client if it comes back (Kafka's
    /// producer-id expiry). `None`: never.
    pub client_retention: Option<Duration>,
}

impl Default for ServeConfig {
    fn default() -> ServeConfig {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            wal_dir: None,
            workers: 1,
            out_dir: None,
            auth_token: None,
            idle_timeout: Some(Duration::from_secs(5)),
            limits: Limits::default(),
            io_threads: 1,
            http: None,
            subscribe: None,
            live_rows: 1_000_000,
            subscriber_queue: 100_000,
            checkpoint_interval: Some(Duration::from_secs(10)),
            wal_segment_bytes: wal::SEGMENT_BYTES,
            client_retention: Some(Duration::from_secs(7 * 86_400)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A configuration the server refuses to start with.
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("a worker stopped")]
    WorkerStopped,
    #[error("{0}")]
    Runtime(String),
}

impl ServeConfig {
    /// Checks the configuration against the plan.
    pub fn validate(&self, plan: &Plan) -> Result<(), ServeError> {
        if !plan.sources.iter().any(|s| s.format == Format::Tcp) {
            return Err(ServeError::Config(format!(
                "pipeline `{}` has no tcp source: add `format = \"tcp\"` to a [sources.NAME] table",
                plan.name
            )));
        }
        if !self.listen.ip().is_loopback() && self.auth_token.is_none() {
            return Err(ServeError::Config(format!(
                "listening on {} (not loopback) requires --auth-token",
                self.listen
            )));
        }
        for addr in [self.http, self.subscribe].into_iter().flatten() {
            if !addr.ip().is_loopback() && self.auth_token.is_none() {
                return Err(ServeError::Config(format!(
                    "serving HTTP or subscriptions on {addr} (not loopback) requires --auth-token"
                )));
            }
        }
        if self.client_retention.is_some_and(|r| r.is_zero()) {
            return Err(ServeError::Config(
                "--client-retention must be positive (or `off`)".into(),
            ));
        }
        if self.workers == 0 || self.io_threads == 0 {
            return Err(ServeError::Config("--workers must be at least 1".into()));
        }
        let l = &self.limits;
        if l.max_line_bytes == 0
            || l.max_connections == 0
            || l.max_pending_connections == 0
            || l.worker_queue == 0
            || l.handshake_timeout.is_zero()
        {
            return Err(ServeError::Config("limits must be positive".into()));
        }
        if l.queue_bytes < l.max_line_bytes + net::READ_CHUNK {
            return Err(ServeError::Config(format!(
                "--queue-bytes must be at least --max-line-bytes + {} (one read)",
                net::READ_CHUNK
            )));
        }
        Ok(())
    }
}

/// What a serving session did.
#[derive(Debug, Default)]
pub struct ServeSummary {
    pub elapsed: Duration,
    pub workers: usize,
    pub outputs: Vec<OutputSummary>,
    /// Every dead letter by reason (sources and stages), from the dead-letter sink.
    pub dead_letters: BTreeMap<String, i64>,
    /// What the log held at start-up.
    pub replayed: Replayed,
    /// Whether the log was removed at the end (its outputs written).
    pub wal_removed: bool,
    /// The counters' summary line.
    pub counters: String,
    pub events: u64,
}

/// Serves `plan` until SIGINT or SIGTERM; `ready` is called with the bound address once the
/// log is replayed and connections are accepted.
pub fn serve(plan: &Plan, config: &ServeConfig, ready: impl FnOnce(SocketAddr)) -> Result<ServeSummary, ServeError> {
    serve_with(plan, config, |bound| ready(bound.listen))
}

/// The addresses a server accepts on, once it is ready.
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    pub listen: SocketAddr,
    pub http: Option<SocketAddr>,
    pub subscribe: Option<SocketAddr>,
}

/// [`serve`], with every bound address (`--http`, `--subscribe`) given to `ready`.
pub fn serve_with(plan: &Plan, config: &ServeConfig, ready: impl FnOnce(&Bound)) -> Result<ServeSummary, ServeError> {
    config.validate(plan)?;
    let started = Instant::now();
    let tcp: Vec<usize> = (0..plan.sources.len())
        .filter(|&i| plan.sources[i].format == Format::Tcp)
        .collect();
    let layouts = plan
        .sources
        .iter()
        .map(|s| match s.format {
            Format::Tcp => Ok(None),
            _ => Layout::discover(s).map(Some).map_err(RunError::from),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let registries = plan.schemas().map(load_registry).collect::<Result<Vec<_>, _>>()?;
    // A checkpoint of an earlier run: its outputs are kept up to it, the rest is recomputed.
    let manifest = match &config.wal_dir {
        Some(dir) => resume_from(plan, config, dir, tcp.len())?,
        None => None,
    };
    match (&manifest, &config.out_dir) {
        (Some(m), Some(out)) => checkpoint::prune_outputs(&plan.output_names(), out, &m.outputs)?,
        _ => clear_outputs(plan, config.out_dir.as_deref())?,
    }
    let order = Arc::new(match &manifest {
        Some(m) => order::Order::resume(m.replay_from, m.watermarks.clone()),
        None => order::Order::new(tcp.len()),
    });
    let checkpoints = (config.wal_dir.is_some() && config.out_dir.is_some()).then(|| {
        let marks = manifest.as_ref().map(|m| m.outputs.clone()).unwrap_or_default();
        Arc::new(checkpoint::Checkpoints::new(marks))
    });
    // Stateful operators' snapshots live next to the outputs; only the one the checkpoint names
    // is kept (a new session keeps none).
    let snapshots = match (&checkpoints, &config.out_dir) {
        (Some(_), Some(out)) => {
            let restore = manifest.as_ref().and_then(|m| m.state.clone());
            let store = snapshots::Snapshots::new(out, config.workers, restore.clone());
            store.remove_except(&restore.iter().map(|m| m.id).collect::<Vec<_>>())?;
            Some(store)
        }
        (None, Some(out)) => {
            snapshots::remove_all(out)?;
            None
        }
        _ => None,
    };
    // Names of the plan are interned before any client can spend the name budget.
    for source in &plan.sources {
        crate::value::Sym::new(&source.time_field);
        crate::value::Sym::new(&source.type_field);
        for field in source.projection.iter().flatten() {
            crate::value::Sym::new(field);
        }
    }

    let retention = crate::plan::retention::retention(plan);
    let tcp_names: Vec<String> = tcp.iter().map(|&i| plan.sources[i].name.clone()).collect();
    let state = Arc::new(ServeState::new(config.workers, tcp_names.clone()));
    // Live views of the outputs and their endpoints, when asked for; they stay up until the
    // outputs are complete, so subscribers see the last changes.
    let live = (config.http.is_some() || config.subscribe.is_some()).then(|| {
        Arc::new(live::LiveViews::new(
            config.workers,
            config.live_rows,
            config.subscriber_queue,
        ))
    });
    let endpoints = match &live {
        Some(live) => Some(http::start(
            http::Endpoint {
                http: config.http,
                subscribe: config.subscribe,
                token: config.auth_token.clone(),
                pipeline: plan.name.clone(),
            },
            Arc::clone(&state),
            Arc::clone(live),
        )?),
        None => None,
    };
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..config.workers {
        let (tx, rx) = std::sync::mpsc::sync_channel(config.limits.worker_queue);
        senders.push(tx);
        receivers.push(Some(rx));
    }
    let shared = Arc::new(worker::Shared {
        plan: plan.clone(),
        layouts,
        registries,
        out_dir: config.out_dir.clone(),
        tcp: tcp.clone(),
        receivers: Mutex::new(receivers),
        order: Arc::clone(&order),
        retention: retention.clone(),
        checkpoints: checkpoints.clone(),
        snapshots: snapshots.clone(),
        state: Arc::clone(&state),
        limits: config.limits.clone(),
        live: live.clone(),
        failed: tokio::sync::watch::channel(None).0,
    });
    let mut worker_failed = shared.failed.subscribe();
    let timely_config = RunConfig {
        workers: config.workers,
        ..RunConfig::default()
    }
    .timely();
    let worker_shared = Arc::clone(&shared);
    let guards = timely::execute(timely_config, move |worker| worker::drive(worker, &worker_shared))
        .map_err(ServeError::Runtime)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.io_threads)
        .thread_name("sluice-net")
        .enable_all()
        .build()
        .map_err(|e| ServeError::Runtime(e.to_string()))?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(config.listen))
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;

    // The sequencer replays the log into the workers, then serves the connections.
    let durable: sequencer::Durable = Arc::default();
    let holders: Arc<sequencer::Holders> = Arc::default();
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let (replayed_tx, replayed_rx) = std::sync::mpsc::channel();
    let sequencer = {
        let mut seq = sequencer::Sequencer::new(
            None,
            senders,
            Arc::clone(&durable),
            Arc::clone(&state),
            config.idle_timeout,
        );
        // Past this, a connection may be waiting for the byte budget with lines in hand.
        let room = config.limits.max_line_bytes + net::READ_CHUNK;
        seq.backlog_bytes = config.limits.queue_bytes.saturating_sub(room) as u64;
        seq.client_retention = config.client_retention;
        seq.holders = Arc::clone(&holders);
        let wal_dir = config.wal_dir.clone();
        if let (Some(dir), Some(c), Some(store), Some(interval)) =
            (&wal_dir, &checkpoints, &snapshots, config.checkpoint_interval)
        {
            seq.checkpointer = Some(sequencer::Checkpointer {
                checkpoints: Arc::clone(c),
                order: Arc::clone(&order),
                dir: dir.clone(),
                interval,
                manifest: manifest.clone().unwrap_or_else(|| checkpoint::Manifest {
                    pipeline: plan.name.clone(),
                    out_dir: config.out_dir.clone().map(|d| canonical(&d)).unwrap_or_default(),
                    ..Default::default()
                }),
                in_flight: None,
                last: Instant::now(),
                state: sequencer::StateSnapshots {
                    store: Arc::clone(store),
                    lag_ms: retention.snapshot_lag_ms,
                    lateness: tcp.iter().map(|&i| plan.sources[i].allowed_lateness_ms).collect(),
                    tick_ms: plan.tick_ms,
                    candidates: Vec::new(),
                    in_flight: None,
                },
            });
        }
        let segment_bytes = config.wal_segment_bytes;
        std::thread::Builder::new()
            .name("sluice-sequencer".into())
            .spawn(move || -> Result<Option<wal::Wal>, ServeError> {
                let replayed = match &wal_dir {
                    Some(dir) => sequencer::open_and_replay(&mut seq, dir, manifest.as_ref()),
                    None => Ok(Replayed::default()),
                };
                if let Some(wal) = &mut seq.wal {
                    wal.set_segment_bytes(segment_bytes);
                }
                let failed = replayed.is_err();
                let _ = replayed_tx.send(replayed);
                if failed {
                    return Ok(None);
                }
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .map_err(|e| ServeError::Runtime(e.to_string()))?;
                rt.block_on(seq.run(rx))
            })
            .map_err(|e| ServeError::Runtime(e.to_string()))?
    };
    let replayed = replayed_rx
        .recv()
        .map_err(|_| ServeError::Runtime("the sequencer stopped".into()))?
        .map_err(|e| match snapshots.as_ref().and_then(|s| s.failure()) {
            // A worker stopped because an operator's state could not be restored.
            Some(failure) => ServeError::Runtime(failure),
            None => e,
        })?;
    if replayed.records > 0 {
        tracing::info!(
            records = replayed.records,
            bytes = replayed.bytes,
            "write-ahead log replayed"
        );
    }

    let net = Arc::new(net::Net {
        tx,
        budget: Arc::new(tokio::sync::Semaphore::new(config.limits.queue_bytes)),
        budget_bytes: config.limits.queue_bytes,
        durable,
        holders,
        client_retention: config.client_retention,
        sources: tcp_names,
        token: config.auth_token.clone(),
        limits: config.limits.clone(),
        state: Arc::clone(&state),
    });
    // Every output's view exists before anyone can ask for it.
    if let Some(live) = &live {
        live.wait_rendered(Duration::from_secs(60));
    }
    let stop = {
        let _runtime = runtime.enter();
        shutdown_signal()
    };
    ready(&Bound {
        listen: addr,
        http: endpoints.as_ref().and_then(|e| e.http),
        subscribe: endpoints.as_ref().and_then(|e| e.subscribe),
    });
    runtime.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let closed = net.tx.clone();
        let serving = tokio::spawn(net::serve(listener, net, stop_rx));
        tokio::select! {
            _ = stop => tracing::info!("shutting down: draining connections"),
            _ = closed.closed() => tracing::warn!("the sequencer stopped"),
            // A worker that stopped (a state it cannot restore, an unreadable file source)
            // fails the server even when no line ever reaches it.
            _ = worker_failed.wait_for(Option::is_some) => tracing::warn!("a worker stopped"),
        }
        drop(closed);
        let _ = stop_tx.send(true);
        let _ = serving.await;
    });
    runtime.shutdown_timeout(Duration::from_secs(5));

    let wal = sequencer
        .join()
        .map_err(|_| ServeError::Runtime("the sequencer panicked".into()))?;
    let mut summary = ServeSummary {
        workers: config.workers,
        replayed,
        ..ServeSummary::default()
    };
    let mut worker_error = None;
    for result in guards.join() {
        match result {
            Ok(Ok(Some(out))) => {
                summary.outputs = out.outputs;
                summary.dead_letters = out.dead_letters;
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) | Err(e) => worker_error = Some(e),
        }
    }
    if let Some(endpoints) = endpoints {
        endpoints.stop();
    }
    let wal = wal?;
    if let Some(e) = worker_error {
        return Err(ServeError::Runtime(e));
    }
    // Outputs are complete and written; make them durable, then the log they came from goes.
    if let Some(dir) = &config.out_dir {
        sync_outputs(plan, dir)?;
    }
    if let Some(wal) = wal {
        wal.remove_all()?;
        // Without segments a checkpoint left behind is stale (see `resume_from`), and so are
        // the state snapshots it names.
        if let Some(dir) = &config.wal_dir {
            checkpoint::Manifest::remove(dir)?;
        }
        if let Some(out) = &config.out_dir {
            snapshots::remove_all(out)?;
        }
        summary.wal_removed = true;
    }
    summary.elapsed = started.elapsed();
    summary.events = ServeState::get(&state.events_processed);
    summary.counters = state.summary();
    Ok(summary)
}

/// The checkpoint a restart resumes from, checked against this run.
fn resume_from(
    plan: &Plan,
    config: &ServeConfig,
    dir: &Path,
    tcp_sources: usize,
) -> Result<Option<checkpoint::Manifest>, ServeError> {
    let Some(m) = checkpoint::Manifest::load(dir)? else {
        return Ok(None);
    };
    // A clean shutdown removes the segments, then the checkpoint: one without segments
    // describes a finished run.
    if !wal::has_segments(dir) {
        checkpoint::Manifest::remove(dir)?;
        return Ok(None);
    }
    let refuse = |why: String| {
        Err(ServeError::Config(format!(
            "write-ahead log {}: {why}",
            dir.join(checkpoint::MANIFEST).display()
        )))
    };
    if m.pipeline != plan.name {
        return refuse(format!("was written by pipeline `{}`, not `{}`", m.pipeline, plan.name));
    }
    match &config.out_dir {
        Some(out) if canonical(out) == m.out_dir => {}
        _ => {
            return refuse(format!(
                "its outputs are in {}: restart with --out {}",
                m.out_dir.display(),
                m.out_dir.display()
            ))
        }
    }
    if m.watermarks.is_empty() && tcp_sources > 0 {
        return refuse(
            "was written by an earlier sluice, with one watermark per source: finish that session \
             with it (a graceful shutdown), or remove the folder"
                .into(),
        );
    }
    if m.watermarks.len() != tcp_sources {
        return refuse(format!(
            "was written for {} tcp sources; the pipeline has {tcp_sources}",
            m.watermarks.len()
        ));
    }
    Ok(Some(m))
}

/// A folder's absolute path, as checkpoints record it.
fn canonical(dir: &Path) -> PathBuf {
    let _ = std::fs::create_dir_all(dir);
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// fsyncs every output file and folder.
fn sync_outputs(plan: &Plan, dir: &Path) -> Result<(), ServeError> {
    let io = |path: &Path, source| RunError::Io {
        path: path.to_path_buf(),
        source,
    };
    for name in plan.output_names() {
        let folder = dir.join(name);
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries {
            let path = entry.map_err(|e| io(&folder, e))?.path();
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| io(&path, e))?;
        }
        std::fs::File::open(&folder)
            .and_then(|f| f.sync_all())
            .map_err(|e| io(&folder, e))?;
    }
    Ok(())
}

/// SIGINT or SIGTERM. The handlers are installed when this is called, not when the future is
/// first polled, so a signal sent as soon as the server says it listens is not lost (its
/// default action would kill the process without writing the outputs). Call it inside the
/// runtime.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let handlers = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
        async move {
            match handlers {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
