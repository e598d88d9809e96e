//! The `services` simulation: traces start by a diurnal Poisson process, walk their regime's
//! chain, and each call makes rows. Rows come out in event-time order (ties in the order they
//! were made), and [`Interactions`] yields them for ever: the caller takes `E`.
//!
//! A call from `a` to `b` at time `t` (the source's call time):
//! 1. `pipe_created` at `t` when the pair's pipe is closed (never opened, or idle for more than
//!    `idle_timeout_ms` after its last call finished): `latency_ms` is the setup time;
//! 2. `data_transmitted` at `t`: `bytes` the payload, `latency_ms = bytes / bandwidth`;
//! 3. `processed` (status `ok`) or `error` (status `error`, or `timeout` with `latency_ms =
//!    timeout_ms`) when the target is done, `t + setup + transfer + latency` rounded up (at
//!    least `t + 1`); `latency_ms` is the processing time.
//!
//! The target then calls the next service `gap_ms` later, drawn from the regime in force at
//! that call's time; a trace whose draw is the end stops. An error does not change the walk.
//! After each row, with probability `defect_rate`, a defective copy follows at the same time
//! (reason drawn uniformly): `unknown_kind` (kind `retry`), `self_loop` (target = source),
//! `missing_trace` (no trace id) or `negative_latency` (`latency_ms` negated, at least 1 ms).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Exp1, StandardNormal};
use rustc_hash::FxHashMap;

use super::graph::{pick, Model};
use super::truth::{r3, LogNormal, Truth};
use crate::generate::timed::Timed;
use crate::model::markov::chain::shift;
use crate::model::markov::Token;

pub const PIPE_CREATED: &str = "pipe_created";
pub const DATA_TRANSMITTED: &str = "data_transmitted";
pub const PROCESSED: &str = "processed";
pub const ERROR: &str = "error";
/// The kinds of real rows, in column-doc order.
pub const KINDS: [&str; 4] = [PIPE_CREATED, DATA_TRANSMITTED, PROCESSED, ERROR];
/// The defects' reasons, and the kind an `unknown_kind` copy has.
pub const DEFECTS: [&str; 4] = ["unknown_kind", "self_loop", "missing_trace", "negative_latency"];
pub const UNKNOWN_KIND: &str = "retry";

/// One row of the log (services as indices).
#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    pub time: i64,
    pub trace: Option<i64>,
    pub source: usize,
    pub target: usize,
    pub kind: &'static str,
    pub bytes: i64,
    pub latency_ms: f64,
    pub status: &'static str,
    /// Why the row is defective (not written).
    pub defect: Option<&'static str>,
}

const HOUR_MS: f64 = 3_600_000.0;

/// `1 + amplitude · cos(2π (hour_utc(t) − peak) / 24)`.
pub fn diurnal(t: f64, amplitude: f64, peak_hour: f64) -> f64 {
    let hour = t.rem_euclid(24.0 * HOUR_MS) / HOUR_MS;
    1.0 + amplitude * (std::f64::consts::TAU * (hour - peak_hour) / 24.0).cos()
}

/// An edge's parameters as draws need them.
struct EdgeDraws {
    latency: LogNormal,
    bytes: LogNormal,
    setup: LogNormal,
    bandwidth: f64,
    error_rate: f64,
    /// `(start, end, error_rate, latency_factor)`.
    bursts: Vec<(i64, i64, f64, f64)>,
}

/// A context's row as draws need it: the next services, and weights with the end's last.
struct Draw {
    next: Vec<usize>,
    weights: Vec<f64>,
}

struct Trace {
    id: i64,
    context: Vec<Token<usize>>,
    current: usize,
    next: usize,
}

enum Step {
    Call,
    Done {
        kind: &'static str,
        status: &'static str,
        latency: f64,
    },
}

/// The rows of a scenario, in event-time order, without end.
pub struct Interactions<'a> {
    truth: &'a Truth,
    rng: ChaCha8Rng,
    starts: ChaCha8Rng,
    /// Each regime's rows by context.
    draws: Vec<FxHashMap<Vec<Token<usize>>, Draw>>,
    entry: Vec<Token<usize>>,
    edges: FxHashMap<(usize, usize), EdgeDraws>,
    change_ms: Vec<i64>,
    /// When each pair's pipe is last busy.
    pipes: FxHashMap<(usize, usize), i64>,
    next_start: f64,
    pending: BinaryHeap<Reverse<Timed<(Trace, Step)>>>,
    seq: u64,
    ready: VecDeque<Interaction>,
    next_trace: i64,
}

impl<'a> Interactions<'a> {
    pub fn new(model: &Model, truth: &'a Truth) -> Interactions<'a> {
        let index = |name: &str| model.names.iter().position(|n| n == name).expect("a known service");
        let draws = model
            .chains
            .iter()
            .map(|chain| {
                chain
                    .rows
                    .iter()
                    .map(|(c, row)| {
                        let mut weights: Vec<f64> = row.next.iter().map(|e| e.1).collect();
                        weights.push(row.end);
                        let next = row.next.iter().map(|e| e.0).collect();
                        (c.clone(), Draw { next, weights })
                    })
                    .collect()
            })
            .collect();
        let mut edges: FxHashMap<(usize, usize), EdgeDraws> = truth
            .edges
            .iter()
            .map(|e| {
                let draws = EdgeDraws {
                    latency: e.latency_ms,
                    bytes: e.bytes,
                    setup: e.setup_ms,
                    bandwidth: e.bandwidth_bytes_per_ms,
                    error_rate: e.error_rate,
                    bursts: Vec::new(),
                };
                ((index(&e.source), index(&e.target)), draws)
            })
            .collect();
        for b in &truth.bursts {
            let edge = edges
                .get_mut(&(index(&b.source), index(&b.target)))
                .expect("a burst on an edge");
            edge.bursts.push((b.start_ms, b.end_ms, b.error_rate, b.latency_factor));
        }
        let mut sim = Interactions {
            truth,
            rng: ChaCha8Rng::seed_from_u64(truth.seed ^ 0x7472_6163_6573_0001),
            starts: ChaCha8Rng::seed_from_u64(truth.seed ^ 0x7374_6172_7473_0001),
            draws,
            entry: vec![Token::Start; truth.order],
            edges,
            change_ms: truth.changes.iter().map(|c| c.time_ms).collect(),
            pipes: FxHashMap::default(),
            next_start: truth.start_ms as f64,
            pending: BinaryHeap::new(),
            seq: 0,
            ready: VecDeque::new(),
            next_trace: 1,
        };
        sim.advance_start();
        sim
    }

    /// Moves `next_start` to the next trace start (thinning a Poisson process at the peak rate).
    fn advance_start(&mut self) {
        let traffic = &self.truth.traffic;
        let peak = traffic.traces_per_s * (1.0 + traffic.diurnal_amplitude) / 1000.0;
        loop {
            self.next_start += self.starts.sample::<f64, _>(Exp1) / peak;
            let keep = diurnal(self.next_start, traffic.diurnal_amplitude, traffic.peak_hour_utc)
                / (1.0 + traffic.diurnal_amplitude);
            if self.starts.random::<f64>() < keep {
                return;
            }
        }
    }

    fn regime_at(&self, t: i64) -> usize {
        self.change_ms.iter().filter(|c| **c <= t).count()
    }

    /// The next service after `context` at `t`, or `None` for the end.
    fn draw(&mut self, context: &[Token<usize>], t: i64) -> Option<usize> {
        let regime = self.regime_at(t);
        let draw = self.draws[regime].get(context)?;
        let i = pick(&draw.weights, self.rng.random());
        draw.next.get(i).copied()
    }

    fn lognormal(&mut self, d: LogNormal) -> f64 {
        d.median * (d.sigma * self.rng.sample::<f64, _>(StandardNormal)).exp()
    }

    fn schedule(&mut self, time: i64, trace: Trace, step: Step) {
        self.seq += 1;
        self.pending.push(Reverse(Timed {
            time,
            seq: self.seq,
            item: (trace, step),
        }));
    }

    /// Queues `row`, and with probability `defect_rate` a defective copy.
    fn emit(&mut self, row: Interaction) {
        let defective = self.rng.random::<f64>() < self.truth.traffic.defect_rate;
        let copy = defective.then(|| {
            let reason = DEFECTS[self.rng.random_range(0..DEFECTS.len())];
            let mut copy = Interaction {
                defect: Some(reason),
                ..row.clone()
            };
            match reason {
                "unknown_kind" => copy.kind = UNKNOWN_KIND,
                "self_loop" => copy.target = copy.source,
                "missing_trace" => copy.trace = None,
                _ => copy.latency_ms = -copy.latency_ms.max(1.0),
            }
            copy
        });
        self.ready.push_back(row);
        self.ready.extend(copy);
    }

    fn row(
        trace: &Trace,
        time: i64,
        kind: &'static str,
        bytes: i64,
        latency: f64,
        status: &'static str,
    ) -> Interaction {
        Interaction {
            time,
            trace: Some(trace.id),
            source: trace.current,
            target: trace.next,
            kind,
            bytes,
            latency_ms: r3(latency),
            status,
            defect: None,
        }
    }

    /// Starts a trace at `next_start`.
    fn start(&mut self) {
        let t = self.next_start.floor() as i64;
        self.advance_start();
        let id = self.next_trace;
        self.next_trace += 1;
        let entry = self.entry.clone();
        let Some(first) = self.draw(&entry, t) else { return };
        let context = shift(&entry, &first);
        if let Some(next) = self.draw(&context, t) {
            let trace = Trace {
                id,
                context,
                current: first,
                next,
            };
            self.schedule(t, trace, Step::Call);
        }
    }

    /// The call of `trace` at `t`: its first rows, and when the target is done.
    fn call(&mut self, t: i64, trace: Trace) {
        let pair = (trace.current, trace.next);
        let edge = &self.edges[&pair];
        let (latency, bytes, setup_d, bandwidth) = (edge.latency, edge.bytes, edge.setup, edge.bandwidth);
        let (mut error_rate, mut factor) = (edge.error_rate, 1.0);
        if let Some(b) = edge.bursts.iter().find(|b| b.0 <= t && t < b.1) {
            (error_rate, factor) = (b.2, b.3);
        }
        let idle = self.truth.traffic.idle_timeout_ms;
        let open = self.pipes.get(&pair).is_some_and(|busy| t <= busy + idle);
        let mut setup = 0.0;
        if !open {
            setup = self.lognormal(setup_d);
            self.emit(Self::row(&trace, t, PIPE_CREATED, 0, setup, "ok"));
        }
        let size = self.lognormal(bytes).round().max(1.0);
        let transfer = size / bandwidth;
        self.emit(Self::row(&trace, t, DATA_TRANSMITTED, size as i64, transfer, "ok"));
        let processing = self.lognormal(latency) * factor;
        let (kind, status, latency) = if self.rng.random::<f64>() >= error_rate {
            (PROCESSED, "ok", processing)
        } else if self.rng.random::<f64>() < self.truth.traffic.timeout_share {
            (ERROR, "timeout", self.truth.traffic.timeout_ms)
        } else {
            (ERROR, "error", processing)
        };
        let done = t + ((setup + transfer + latency).ceil() as i64).max(1);
        let busy = self.pipes.entry(pair).or_insert(done);
        *busy = (*busy).max(done);
        self.schedule(done, trace, Step::Done { kind, status, latency });
    }

    /// The target of `trace` is done at `t`: its last row, and the next call.
    fn done(&mut self, t: i64, mut trace: Trace, kind: &'static str, status: &'static str, latency: f64) {
        self.emit(Self::row(&trace, t, kind, 0, latency, status));
        trace.context = shift(&trace.context, &trace.next);
        trace.current = trace.next;
        let [low, high] = self.truth.traffic.gap_ms;
        let at = t + self.rng.random_range(low..=high);
        if let Some(next) = self.draw(&trace.context.clone(), at) {
            trace.next = next;
            self.schedule(at, trace, Step::Call);
        }
    }
}

impl Iterator for Interactions<'_> {
    type Item = Interaction;

    fn next(&mut self) -> Option<Interaction> {
        while self.ready.is_empty() {
            let start = self.next_start.floor() as i64;
            match self.pending.peek() {
                Some(Reverse(p)) if p.time < start => {
                    let Reverse(Timed { time, item, .. }) = self.pending.pop().expect("peeked");
                    match item {
                        (trace, Step::Call) => self.call(time, trace),
                        (trace, Step::Done { kind, status, latency }) => self.done(time, trace, kind, status, latency),
                    }
                }
                _ => self.start(),
            }
        }
        self.ready.pop_front()
    }
}
