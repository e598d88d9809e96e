//! Reading file sources together, in event-time order.
//!
//! A worker reads several sources at once as one merge: the next chunk comes from the source
//! whose watermark is the smallest, so their inputs' times advance together. Read one after the
//! other, a stage over two of them (a join, replication's acknowledgements of decisions) would
//! hold all of the first until the second began. Each source's splits are decoded on a thread
//! of its own, because a [`SplitReader`](crate::source::SplitReader) pushes chunks rather than
//! handing them out; the thread decodes a chunk only when the worker asks for one, so decoding
//! and the dataflow take turns, and a worker still uses one core.
//!
//! ```text
//!  decoder (source a) ──chunk──┐
//!  decoder (source b) ──chunk──┼──► worker: the source with the smallest watermark next ──► inputs
//!        ▲ "go"                │         (a source waiting on flow control is skipped)
//!        └─────────────────────┘
//! ```

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use crate::plan::SourcePlan;
use crate::render::SourceInputs;
use crate::source::lateness::Lateness;
use crate::source::{self, Decoded, Layout, Watermark};
use crate::value::format_time;

use super::{admit, advance, future_letter, STEPS_PER_CHUNK};

/// One file source to read into its inputs, with where its lateness is counted.
pub(crate) struct Feed<'a> {
    pub source: &'a SourcePlan,
    pub layout: &'a Layout,
    pub inputs: &'a mut SourceInputs,
    pub lateness: &'a mut Lateness,
}

/// What a decoder thread hands the worker, one at a time.
enum Piece {
    /// This worker's next split, by index in the layout.
    Split(usize),
    Chunk(Vec<Decoded>),
    /// Every split read, or why not.
    End(Result<(), String>),
}

/// A feed being read: its decoder's channels and the reading state.
struct Reading<'a> {
    feed: Feed<'a>,
    go: SyncSender<()>,
    pieces: Receiver<Piece>,
    watermark: Watermark,
    prefix: Vec<Option<i64>>,
    /// The split being read.
    split: usize,
    /// Flow control: the tick every worker must have fed this source to before it goes on.
    wait_for: Option<u64>,
    done: bool,
}

/// Reads `feeds` into their inputs together, each split `i` of a source by worker
/// `i % peers`, advancing each source's inputs with its own watermark; `progress` gets the
/// records read. Each source's inputs close when it has no more records.
pub(crate) fn read(
    worker: &mut timely::worker::Worker,
    feeds: Vec<Feed<'_>>,
    tick_ms: i64,
    progress: &mut dyn FnMut(u64),
) -> Result<(), String> {
    let (index, peers) = (worker.index(), worker.peers());
    std::thread::scope(|scope| {
        let mut readings: Vec<Reading<'_>> = Vec::with_capacity(feeds.len());
        for feed in feeds {
            let (go, go_rx) = sync_channel::<()>(1);
            let (tx, pieces) = sync_channel::<Piece>(1);
            let (source, layout) = (feed.source, feed.layout);
            std::thread::Builder::new()
                .name(format!("sluice-read-{}", source.name))
                .spawn_scoped(scope, move || decode(source, layout, index, peers, &go_rx, &tx))
                .map_err(|e| format!("starting the reader of source `{}`: {e}", source.name))?;
            readings.push(Reading {
                watermark: Watermark::new(source.allowed_lateness_ms),
                prefix: layout.prefix_max(),
                feed,
                go,
                pieces,
                split: 0,
                wait_for: None,
                done: false,
            });
        }
        loop {
            // A source waiting on flow control goes on once every worker has fed it far enough.
            for r in &mut readings {
                if r.wait_for.is_some_and(|t| !r.feed.inputs.fed.less_than(&t)) {
                    r.wait_for = None;
                }
            }
            let next = next_source(
                readings
                    .iter()
                    .map(|r| (!r.done && r.wait_for.is_none()).then(|| r.watermark.current())),
            );
            let Some(k) = next else {
                if readings.iter().all(|r| r.done) {
                    return Ok(());
                }
                // Every source left waits on the other workers.
                worker.step_or_park(Some(std::time::Duration::from_millis(1)));
                continue;
            };
            let r = &mut readings[k];
            let piece = r.go.send(()).ok().and_then(|()| r.pieces.recv().ok());
            match piece {
                Some(Piece::Split(i)) => r.start_split(i, peers, tick_ms),
                Some(Piece::Chunk(mut chunk)) => {
                    let n = chunk.len() as u64;
                    r.admit(&mut chunk, tick_ms);
                    for _ in 0..STEPS_PER_CHUNK {
                        worker.step();
                    }
                    // Work an operator put off is done before more input comes in.
                    while r.feed.inputs.backlog.owed() {
                        worker.step();
                    }
                    progress(n);
                }
                Some(Piece::End(Ok(()))) => r.finish(),
                Some(Piece::End(Err(e))) => return Err(e),
                None => return Err(format!("the reader of source `{}` stopped", r.feed.source.name)),
            }
        }
    })
}

/// The source to read next, given each source's watermark when it can go on (`None` when it is
/// done or waits on flow control): the smallest watermark, the first of equals.
fn next_source(watermarks: impl Iterator<Item = Option<i64>>) -> Option<usize> {
    (watermarks.enumerate())
        .filter_map(|(k, wm)| Some((wm?, k)))
        .min()
        .map(|(_, k)| k)
}

/// How far, in rows of the log, a worker may read ahead of where the slowest worker has fed a
/// source to. One split of slack (8,192 rows with range splits) kept the workers in lockstep:
/// each split waited on the other worker's progress, and two workers ingested no faster than
/// one. 32,768 rows absorbs the splits' uneven decoding times; the operators downstream buffer
/// more of the leader's events meanwhile (the default spec at 1M events with two workers peaked
/// at 620–710 MB instead of 550–600).
const AHEAD_ROWS: usize = 4 * crate::source::parquet::SPLIT_ROWS;

/// The split whose start split `i` waits for under flow control: the latest split `j < i` with
/// at least `ahead` rows in splits `j..i`, or the first split. `rows` are every split's rows.
fn behind(rows: impl DoubleEndedIterator<Item = usize> + ExactSizeIterator, i: usize, ahead: usize) -> usize {
    let mut sum = 0;
    for (j, n) in rows.take(i).enumerate().rev() {
        sum += n;
        if sum >= ahead {
            return j;
        }
    }
    0
}

/// A decoder thread: this worker's splits of `source`, one piece per "go".
fn decode(
    source: &SourcePlan,
    layout: &Layout,
    index: usize,
    peers: usize,
    go: &Receiver<()>,
    pieces: &SyncSender<Piece>,
) {
    // Each piece is decoded once the worker asks for it, so the two take turns. `false` once
    // the worker has gone (it stopped on an error): the rest is not decoded.
    if go.recv().is_err() {
        return;
    }
    let give = |piece: Piece| pieces.send(piece).is_ok() && go.recv().is_ok();
    let mut reader = source::reader(source, layout);
    let splits = layout.splits.iter().enumerate().filter(|(i, _)| i % peers == index);
    reader.prepare(&splits.clone().map(|(_, s)| s).collect::<Vec<_>>());
    for (i, split) in splits {
        if !give(Piece::Split(i)) {
            return;
        }
        let mut open = true;
        let read = reader.read(split, &mut |chunk| {
            open = open && give(Piece::Chunk(std::mem::take(chunk)));
        });
        if let Err(e) = read {
            let _ = pieces.send(Piece::End(Err(e.to_string())));
            return;
        }
        if !open {
            return;
        }
    }
    let _ = pieces.send(Piece::End(Ok(())));
}

impl Reading<'_> {
    fn start_split(&mut self, i: usize, peers: usize, tick_ms: i64) {
        self.split = i;
        let inputs = &mut *self.feed.inputs;
        self.watermark.start_split(self.prefix[i]);
        advance(inputs, &self.watermark, tick_ms);
        // Flow control: split `i` waits until every worker has fed the source up to where the
        // reader of split `behind(i)` started, at least [`AHEAD_ROWS`] rows earlier in the log,
        // so no worker reads far ahead of the slowest and the operators downstream do not
        // buffer the leader's events. Readers of earlier splits never wait on later ones, and a
        // worker reads its other sources meanwhile, so this cannot deadlock, provided this
        // worker's own input is at split `i`'s start first: advanced above, and flushed here,
        // as an input session only moves its frontier when flushed.
        if i > 0 && peers > 1 {
            inputs.events.flush();
            inputs.dead.flush();
            let rows = self.feed.layout.splits.iter().map(|s| s.rows);
            let mut before = Watermark::new(self.feed.source.allowed_lateness_ms);
            before.start_split(self.prefix[behind(rows, i, AHEAD_ROWS)]);
            let wm = before.current();
            if wm > 0 {
                let target = (wm - wm.rem_euclid(tick_ms)) as u64;
                self.wait_for = inputs.fed.less_than(&target).then_some(target);
            }
        }
    }

    fn admit(&mut self, chunk: &mut Vec<Decoded>, tick_ms: i64) {
        let Feed {
            source,
            layout,
            inputs,
            lateness,
        } = &mut self.feed;
        let split = &layout.splits[self.split];
        let watermark = &mut self.watermark;
        for decoded in chunk.drain(..) {
            let decoded = match decoded {
                Decoded::Event(event, pos) if split.is_future(pos) => {
                    let detail = format!(
                        "event time {} is more than max_future {} ahead of both the largest earlier event time and the next event's",
                        format_time(event.time),
                        crate::plan::duration::format_duration(source.limits.max_future_ms)
                    );
                    let letter = future_letter(source, &event, detail, layout.location(split, pos));
                    Decoded::Bad(Box::new(letter))
                }
                decoded => decoded,
            };
            // How far the event is behind the largest time before it (see `source::lateness`).
            let behind = match (&decoded, watermark.max_seen()) {
                (Decoded::Event(e, _), Some(max)) => max.saturating_sub(e.time).max(0) as u64,
                _ => 0,
            };
            match admit(inputs, watermark, decoded, tick_ms, source, |pos| {
                layout.location(split, pos)
            })
            .as_deref()
            {
                None => lateness.on_time(),
                Some("late") => lateness.late(behind),
                Some(_) => {}
            }
        }
        advance(inputs, watermark, tick_ms);
        inputs.events.flush();
        inputs.dead.flush();
    }

    /// A file has no more records: this worker's part of the source is complete, so operators
    /// waiting on it (an as-of join on its context) need not wait for the other sources.
    fn finish(&mut self) {
        let inputs = &mut *self.feed.inputs;
        inputs.events.advance_to(u64::MAX);
        inputs.dead.advance_to(u64::MAX);
        inputs.events.flush();
        inputs.dead.flush();
        self.done = true;
    }
}

#[cfg(test)]
mod tests {
    use super::{behind, next_source};

    #[test]
    fn a_split_waits_for_the_latest_split_at_least_the_rows_ahead_before_it() {
        let at = |rows: &[usize], i, ahead| behind(rows.iter().copied(), i, ahead);
        // Equal splits: as many splits back as make up the rows.
        assert_eq!(at(&[10; 8], 7, 40), 3);
        assert_eq!(at(&[10; 8], 7, 41), 2);
        // A split as large as the budget: the one before.
        assert_eq!(at(&[10, 50, 10], 2, 40), 1);
        // Too few rows before: the first split.
        assert_eq!(at(&[10, 10, 10], 2, 100), 0);
        assert_eq!(at(&[10, 10, 10], 1, 5), 0);
        // Splits whose rows are not known (0) add nothing.
        assert_eq!(at(&[10, 0, 0, 0], 4, 10), 0);
    }

    #[test]
    fn the_source_furthest_behind_goes_next_skipping_those_that_cannot() {
        let next = |w: &[Option<i64>]| next_source(w.iter().copied());
        assert_eq!(next(&[Some(5), Some(3), Some(9)]), Some(1));
        // Equal watermarks (every source before its first event): the first.
        assert_eq!(next(&[Some(i64::MIN), Some(i64::MIN)]), Some(0));
        // A source done or waiting on flow control is skipped, however far behind.
        assert_eq!(next(&[None, Some(7), Some(8)]), Some(1));
        assert_eq!(next(&[None, None]), None);
    }
}
