//! The timely side of `sluice serve`: each worker renders the plan, reads the spec's file
//! sources (context tables) as `sluice run` does, then feeds the records the sequencer hands it
//! into the TCP sources' inputs until the sequencer hangs up, and runs the dataflow to
//! completion.
//!
//! A batch is parsed with [`crate::source::ndjson::parse_line`] after two cheap checks on the
//! untrusted bytes (the source's nesting depth, distinct field names), then admitted with the
//! same watermark and lateness rules as replay, against the source's per-partition watermark
//! state ([`super::partitions`]) as [`super::order::Order`] publishes it in log order.

use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;

use super::order::Order;
use super::protocol::scan;
use super::record::{Batch, Record, RejectReason};
use super::state::ServeState;
use super::Limits;
use crate::dead_letter::DeadLetter;
use crate::plan::duration::format_duration;
use crate::plan::{Plan, SourcePlan};
use crate::render::sink::SinkEnv;
use crate::render::{render, SourceInputs};
use crate::run::{admit, advance, advance_to, collect_outputs, read_splits, WorkerOutput, FUTURE_TIME};
use crate::schema::registry::Registry;
use crate::source::arrow_read::TypeCache;
use crate::source::{ndjson, Decoded, Layout, Watermark};
use crate::value::{format_time, interned_names, with_name_limit, Sym};

/// What the sequencer hands a worker; `seq` is the record's place in the log.
pub(crate) enum ToWorker {
    Batch {
        seq: u64,
        batch: Batch,
        /// The batch's share of the global queue budget, released once it is admitted.
        permit: Option<(OwnedSemaphorePermit, u64)>,
    },
    /// An idle advance, or a partition joining or leaving: it moves only the watermark.
    Control { seq: u64, record: Record },
}

/// Everything the workers share.
pub(crate) struct Shared {
    pub plan: Plan,
    /// File sources' layouts; `None` for TCP sources.
    pub layouts: Vec<Option<Layout>>,
    pub registries: Vec<Registry>,
    pub out_dir: Option<std::path::PathBuf>,
    /// Plan index of each TCP source.
    pub tcp: Vec<usize>,
    pub receivers: std::sync::Mutex<Vec<Option<Receiver<ToWorker>>>>,
    pub order: Arc<Order>,
    /// How long each source's events can change outputs, and which feed operator state (what a
    /// checkpoint must keep).
    pub retention: crate::plan::retention::Retention,
    pub checkpoints: Option<Arc<super::checkpoint::Checkpoints>>,
    /// Where stateful operators save their state (with checkpoints).
    pub snapshots: Option<Arc<super::snapshots::Snapshots>>,
    pub state: Arc<ServeState>,
    pub limits: Limits,
    /// The outputs' live views (kept by worker 0's sinks) and step timings, with `--http`.
    pub live: Option<Arc<super::live::LiveViews>>,
    /// The first error that stopped a worker: the server stops serving when it is set, rather
    /// than accepting lines no worker will process.
    pub failed: tokio::sync::watch::Sender<Option<String>>,
}

/// One worker's TCP source.
struct Tcp {
    plan_index: usize,
    watermark: Watermark,
    types: TypeCache,
    names: NameCheck,
}

/// Counts the distinct field names of a line that are not interned yet, before anything is
/// interned: a line that would take the interner past `max_field_names` is rejected whole, so
/// hostile lines cannot use up the budget that later good lines need. A name repeated in the
/// line (a list of objects with the same keys) counts once, as interning it does.
#[derive(Default)]
pub(crate) struct NameCheck {
    pub(crate) keys: Vec<std::ops::Range<usize>>,
    /// The previous line's keys by position: lines mostly repeat them.
    known: Vec<Box<[u8]>>,
}

impl NameCheck {
    /// Distinct names among the keys of `line` (found by [`scan`]) that are not interned.
    pub(crate) fn new_names(&mut self, line: &[u8]) -> usize {
        let mut new: Option<rustc_hash::FxHashSet<std::borrow::Cow<'_, [u8]>>> = None;
        for (i, range) in self.keys.iter().enumerate() {
            let raw = &line[range.clone()];
            if self.known.get(i).is_some_and(|k| **k == *raw) {
                continue;
            }
            let name = key_name(line, range.clone());
            let interned = std::str::from_utf8(&name).ok().and_then(Sym::lookup).is_some();
            if !interned {
                new.get_or_insert_default().insert(name);
            } else if i < self.known.len() {
                self.known[i] = raw.into();
            } else if i == self.known.len() {
                self.known.push(raw.into());
            }
        }
        new.map_or(0, |n| n.len())
    }
}

/// The name a key stands for: its bytes between the quotes, with JSON escapes decoded (so
/// `"k\u0065y"` and `"key"` are one name, as the parser interns them).
pub(crate) fn key_name(line: &[u8], range: std::ops::Range<usize>) -> std::borrow::Cow<'_, [u8]> {
    let raw = &line[range.clone()];
    if !raw.contains(&b'\\') {
        return std::borrow::Cow::Borrowed(raw);
    }
    // The scan found the quotes around the range.
    let quoted = &line[range.start - 1..range.end + 1];
    match serde_json::from_slice::<String>(quoted) {
        Ok(name) => std::borrow::Cow::Owned(name.into_bytes()),
        Err(_) => std::borrow::Cow::Borrowed(raw),
    }
}

/// Runs one worker; see the module documentation.
pub(crate) fn drive(worker: &mut timely::worker::Worker, shared: &Shared) -> Result<Option<WorkerOutput>, String> {
    let result = drive_inner(worker, shared);
    if let Err(e) = &result {
        shared.order.abort();
        shared.failed.send_if_modified(|failed| {
            let first = failed.is_none();
            if first {
                *failed = Some(e.clone());
            }
            first
        });
    }
    result
}

fn drive_inner(worker: &mut timely::worker::Worker, shared: &Shared) -> Result<Option<WorkerOutput>, String> {
    let index = worker.index();
    let rx = shared
        .receivers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(index)
        .and_then(Option::take)
        .ok_or("worker started twice")?;
    let plan = &shared.plan;
    let env = SinkEnv {
        out_dir: shared.out_dir.clone(),
        collect: false,
        collect_only: None,
        live: shared.live.clone(),
        checkpoints: shared.checkpoints.clone(),
        state: shared
            .snapshots
            .clone()
            .map(|s| s as Arc<dyn crate::render::snapshot::StateStore>),
        buffered: Default::default(),
        spread: None,
    };
    let mut rendered = worker.dataflow::<u64, _, _>(|scope| render(plan, scope, &shared.registries, &env));
    if let (Some(c), 0) = (&shared.checkpoints, index) {
        c.set_ready();
    }
    if let Some(s) = &shared.snapshots {
        // A state that cannot be restored stops the server (operators restore as they are built).
        if let Some(e) = s.failure() {
            return Err(e);
        }
        s.rendered();
    }
    let tick_ms = plan.tick_ms as i64;
    // Work that operators put off (`render::pending::Backlog`), the same for every input.
    let backlog = rendered.inputs.first().map(|i| i.backlog.clone()).unwrap_or_default();
    let mut inputs: Vec<Option<SourceInputs>> = rendered.inputs.drain(..).map(Some).collect();
    for (i, source) in plan.sources.iter().enumerate() {
        if let (Some(layout), Some(input)) = (&shared.layouts[i], &mut inputs[i]) {
            let mut lateness = crate::source::lateness::Lateness::default();
            read_splits(worker, source, layout, input, tick_ms, &mut lateness, &mut |_| {})?;
            // A context table is complete: closing it lets its frontier pass.
            inputs[i] = None;
        }
    }
    tracing::info!(worker = index, "file sources read; serving");

    let mut tcp: Vec<Tcp> = shared
        .tcp
        .iter()
        .map(|&i| Tcp {
            plan_index: i,
            watermark: Watermark::new(plan.sources[i].allowed_lateness_ms),
            types: TypeCache::default(),
            names: NameCheck::default(),
        })
        .collect();
    let mut decoded = Vec::new();
    loop {
        let began = std::time::Instant::now();
        let mut received = false;
        let mut closed = false;
        for _ in 0..16 {
            match rx.try_recv() {
                Ok(msg) => {
                    ServeState::sub(&shared.state.worker_queues[index], 1);
                    handle(msg, shared, &mut tcp, &mut inputs, &mut decoded).map_err(|e| e.to_string())?;
                    received = true;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        // Follow records published by the other workers, so every input's frontier moves.
        for (k, t) in tcp.iter().enumerate() {
            if let (Some(max), Some(input)) = (shared.order.floor(k), &mut inputs[t.plan_index]) {
                let lateness = plan.sources[t.plan_index].allowed_lateness_ms as i64;
                advance_to(input, max.saturating_sub(lateness), tick_ms);
                // Sends the advance: an input's frontier moves only when it is flushed.
                input.events.flush();
                input.dead.flush();
            }
        }
        if closed {
            break;
        }
        if received {
            worker.step();
            // As a file's reader does: work put off is done before more input is taken, so the
            // connections wait (their queues fill) rather than the input piling up.
            while backlog.owed() {
                worker.step();
            }
            if let Some(live) = &shared.live {
                live.observe_step(index, began.elapsed());
            }
        } else {
            worker.step_or_park(Some(Duration::from_millis(1)));
        }
    }
    tracing::info!(worker = index, "inputs closed");
    inputs.clear();
    while worker.step_or_park(None) {}
    tracing::info!(worker = index, "dataflow complete");
    collect_outputs(&rendered, false, index == 0)
}

fn handle(
    msg: ToWorker,
    shared: &Shared,
    tcp: &mut [Tcp],
    inputs: &mut [Option<SourceInputs>],
    decoded: &mut Vec<Decoded>,
) -> Result<(), super::order::Aborted> {
    let tick_ms = shared.plan.tick_ms as i64;
    match msg {
        ToWorker::Control { seq, record } => {
            let k = record.source() as usize;
            let lateness = shared.plan.sources[tcp[k].plan_index].allowed_lateness_ms;
            let wm = shared.order.publish(seq, k, |m| {
                m.apply(&record);
                m.watermark(lateness)
            })?;
            if let Some(input) = &mut inputs[tcp[k].plan_index] {
                advance_to(input, wm, tick_ms);
            }
            // It changes no output by itself: the events it lets through do.
            shared.order.settle(seq, None, None);
            shared.state.raise_watermark(k, wm);
        }
        ToWorker::Batch { seq, batch, permit } => {
            let k = batch.source as usize;
            let t = &mut tcp[k];
            let source = &shared.plan.sources[t.plan_index];
            let record_limit = shared.plan.dead_letter_record_bytes;
            let max = parse(
                &batch,
                source,
                &mut t.types,
                &mut t.names,
                &shared.limits,
                record_limit,
                decoded,
            );
            let start = shared.order.publish(seq, k, |m| m.batch(&batch.client, max))?;
            t.watermark.start_partition(start.floor, start.own, start.cap);
            // The last output time this record can change, and its largest event time that
            // operator state holds (for checkpoints).
            let (mut last_effect, mut state_time) = (None, None);
            let stateful = shared.retention.stateful[t.plan_index];
            if let Some(input) = &mut inputs[t.plan_index] {
                advance(input, &t.watermark, tick_ms);
                let (mut events, mut dead) = (0, false);
                for d in decoded.drain(..) {
                    let client = &batch.client;
                    let time = match &d {
                        Decoded::Event(e, _) => e.time,
                        _ => 0,
                    };
                    match admit(input, &mut t.watermark, d, tick_ms, source, |pos| location(client, pos)) {
                        None => {
                            events += 1;
                            last_effect = last_effect.max(Some(shared.retention.last_effect(t.plan_index, time)));
                            if stateful {
                                state_time = state_time.max(Some(time));
                            }
                        }
                        Some(reason) => {
                            dead = true;
                            shared.state.dead_letter(&reason);
                        }
                    }
                }
                if dead {
                    // Dead letters are stamped with the watermark's tick (see `admit`).
                    let wm = t.watermark.current().max(0);
                    let stamp = (*input.dead.time() as i64).max(wm - wm.rem_euclid(tick_ms));
                    last_effect = last_effect.max(Some(stamp));
                }
                advance(input, &t.watermark, tick_ms);
                input.events.flush();
                input.dead.flush();
                ServeState::add(&shared.state.events_processed, events);
            }
            shared.order.settle(seq, last_effect, state_time);
            decoded.clear();
            shared.state.raise_watermark(k, t.watermark.current());
            if let Some((permit, weight)) = permit {
                ServeState::sub(&shared.state.queued_bytes, weight);
                drop(permit);
            }
        }
    }
    Ok(())
}

/// Where a TCP line came from, as dead letters name it.
fn location(client: &str, offset: u64) -> String {
    format!("tcp:{client}:{offset}")
}

/// Decodes a batch's lines and rejects into `out`; returns the largest valid event time.
pub(crate) fn parse(
    batch: &Batch,
    source: &SourcePlan,
    types: &mut TypeCache,
    names: &mut NameCheck,
    limits: &Limits,
    record_limit: usize,
    out: &mut Vec<Decoded>,
) -> Option<i64> {
    let mut max = None;
    // A rejected line is clipped before it is copied: a flood of long bad lines never holds
    // more than `record_limit` bytes each.
    let dead = |reason: &str, detail: String, offset: u64, record: &[u8], event_time: Option<i64>| {
        let letter = DeadLetter {
            stage: format!("source:{}", source.name),
            reason: reason.into(),
            detail,
            location: location(&batch.client, offset),
            record: String::new(),
            event_time,
            original: None,
        };
        Decoded::Bad(Box::new(letter.with_raw_record(record, record_limit)))
    };
    // Event times past this are too far ahead of the wall clock when the lines arrived.
    let future_bound = batch
        .received_ms
        .map(|ms| ms.saturating_add(i64::try_from(source.limits.max_future_ms).unwrap_or(i64::MAX)));
    batch.for_each_line(|offset, line| {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        names.keys.clear();
        // The source's depth limit, as `parse_line` checks it, before the keys are counted.
        let max_depth = source.limits.max_depth;
        if scan(line, max_depth, &mut names.keys) {
            let detail = format!("nesting deeper than {max_depth} levels");
            out.push(dead("depth_exceeded", detail, offset, line, None));
            return;
        }
        let new = names.new_names(line);
        let too_many = |new| {
            let detail = format!(
                "the line names {new} new fields, beyond the server's limit of {} distinct field names",
                limits.max_field_names
            );
            dead("too_many_fields", detail, offset, line, None)
        };
        if new > 0 && interned_names() + new > limits.max_field_names {
            out.push(too_many(new));
            return;
        }
        // The limit holds even against lines parsed at the same time on other workers.
        let (parsed, refused) = with_name_limit(limits.max_field_names, || ndjson::parse_line(source, types, line));
        match parsed {
            Ok(_) if refused => out.push(too_many(new)),
            Ok(event) if future_bound.is_some_and(|b| event.time > b) => {
                let detail = format!(
                    "event time {} is more than max_future {} ahead of the wall clock when the line arrived ({})",
                    format_time(event.time),
                    format_duration(source.limits.max_future_ms),
                    format_time(batch.received_ms.unwrap_or_default()),
                );
                out.push(dead(FUTURE_TIME, detail, offset, line, Some(event.time)));
            }
            Ok(event) => {
                if event.time >= 0 {
                    max = max.max(Some(event.time));
                }
                out.push(Decoded::Event(event, offset));
            }
            Err((reason, detail, event_time)) => out.push(dead(reason, detail, offset, line, event_time)),
        }
    });
    for r in &batch.rejects {
        let detail = match r.reason {
            RejectReason::TooLarge => format!(
                "a line of {} bytes exceeds max_line_bytes {}",
                r.bytes, limits.max_line_bytes
            ),
            RejectReason::Truncated => format!("the connection ended after {} bytes of an unfinished line", r.bytes),
        };
        out.push(dead(r.reason.as_str(), detail, r.offset, &r.prefix, None));
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_names(line: &[u8]) -> usize {
        let mut check = NameCheck::default();
        assert!(!scan(line, 64, &mut check.keys));
        check.new_names(line)
    }

    #[test]
    fn distinct_new_names_are_counted() {
        Sym::new("worker_test_known");
        assert_eq!(new_names(br#"{"worker_test_known":1}"#), 0);
        assert_eq!(
            new_names(br#"{"worker_test_a":[{"worker_test_b":1},{"worker_test_b":2},{"worker_test_b":3}]}"#),
            2
        );
        // An escaped spelling is the same name.
        assert_eq!(new_names(br#"{"worker_test_c":1,"worker_test_\u0063":2}"#), 1);
        assert_eq!(new_names(br#"{"worker_test_\u0063":1,"worker_test_known":2}"#), 1);
        let many: Vec<String> = (0..1000).map(|k| format!(r#""worker_test_n{k}":1"#)).collect();
        assert_eq!(new_names(format!("{{{}}}", many.join(",")).as_bytes()), 1000);
    }
}
