//! The regions' acknowledgements of the events they store: `DIR/completions.EXT`, in time order.
//!
//! The scenario's storage layer keeps every event in `REPLICAS` regions: the region that
//! served it, then the next distinct regions clockwise on a capacity-weighted hash ring
//! ([`crate::model::placement::Ring`], 256 points per unit of weight) from the event's shard,
//! `stable_hash(user_id) mod 4096` (what `[metadata]` computes for `shard_key = "user_id"`,
//! `shards = 4096`). Each copy is acknowledged by a row `(time, event_id, region, status)`:
//! - the serving region acknowledges after its time in system, `latency_ms / (1 − u)` at its
//!   utilization `u` then (the truth's `latency_ms` transform);
//! - a replica acknowledges 100 ms–2 s later (uniform), plus its own time in system;
//! - an acknowledgement fails (`status = "failed"`) with probability 0.2%, or 90% when the
//!   region is in its outage. A failed copy is retried 30–120 s later, at most three attempts
//!   in all; a copy whose three attempts fail stays failed.
//!
//! Defects, for the dead-letter paths: 0.1% of rows name an event that does not exist (an id
//! above every event's) and 0.05% a region that does not exist (`region-unknown`).
//!
//! Rows come out in time order (a heap holds acknowledgements until every event before them has
//! been drawn). Counts of each kind go to the truth's `counts`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::events::EventRow;
use super::model::{Counts, Truth};
use crate::model::placement::{Region, Ring};
use crate::value::Value;

/// Copies of each event: its serving region and two replicas.
pub const REPLICAS: usize = 3;
/// Shards of the scenario's placement (`stable_hash(user_id) mod SHARDS`).
pub const SHARDS: u64 = 4096;
/// Attempts per copy.
pub const ATTEMPTS: u32 = 3;
const FAIL: f64 = 0.002;
const FAIL_IN_OUTAGE: f64 = 0.9;
const UNKNOWN_EVENT: f64 = 0.001;
const UNKNOWN_REGION: f64 = 0.0005;
/// The region name of the rows naming no region.
pub const UNKNOWN_REGION_NAME: &str = "region-unknown";

/// One acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Completion {
    pub time: i64,
    pub event_id: i64,
    pub region: String,
    pub completed: bool,
}

impl Completion {
    pub fn row(&self) -> Vec<Value> {
        vec![
            Value::Time(self.time),
            Value::Int(self.event_id),
            Value::str(&self.region),
            Value::str(if self.completed { "completed" } else { "failed" }),
        ]
    }
}

/// Draws the acknowledgements of events fed in time order with [`Completions::event`];
/// [`Completions::ready`] gives those no later event can precede.
pub struct Completions<'a> {
    truth: &'a Truth,
    ring: Ring,
    rng: ChaCha8Rng,
    /// `(time, sequence, completion, attempt)`: the sequence keeps draws in a stable order.
    heap: BinaryHeap<Reverse<(i64, u64, Completion, u32)>>,
    seq: u64,
    /// Every event id drawn is below it (for ids of unknown events).
    next_unknown: i64,
}

impl<'a> Completions<'a> {
    pub fn new(truth: &'a Truth, seed: u64) -> Completions<'a> {
        let mean = truth.regions.iter().map(|r| r.capacity_rps).sum::<f64>() / truth.regions.len() as f64;
        let regions = truth
            .regions
            .iter()
            .map(|r| Region::new(r.name.clone(), r.capacity_rps / mean))
            .collect();
        let ring = Ring::new(regions, crate::model::placement::DEFAULT_VNODES).expect("a few regions fit a ring");
        Completions {
            truth,
            ring,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x636f_6d70_6c65_7465),
            heap: BinaryHeap::new(),
            seq: 0,
            next_unknown: 1 << 40,
        }
    }

    /// The scenario's shard of a user.
    pub fn shard(user_id: i64) -> u64 {
        crate::value::stable_hash(&Value::Int(user_id)) % SHARDS
    }

    /// The regions (indices) storing `event`: where it was served, then the ring's next ones.
    pub fn targets(&self, event: &EventRow) -> Vec<usize> {
        self.ring
            .successors_after(event.region, Self::shard(event.user_id), REPLICAS)
    }

    /// The time region `r` takes to store a copy arriving at `t`.
    fn in_system_ms(&self, r: usize, t: i64) -> i64 {
        let u = self.truth.load(r, t).clamp(0.0, self.truth.max_utilization);
        let transform = self.truth.regions[r].metrics["latency_ms"];
        transform.apply(u).round().max(1.0) as i64
    }

    fn attempt(&mut self, t: i64, event_id: i64, r: usize, attempt: u32) {
        let p = if self.truth.in_outage(t) && self.truth.regions[r].name == self.truth.outage.region {
            FAIL_IN_OUTAGE
        } else {
            FAIL
        };
        let done = t + self.in_system_ms(r, t);
        let completion = Completion {
            time: done,
            event_id,
            region: self.truth.regions[r].name.clone(),
            completed: self.rng.random::<f64>() >= p,
        };
        self.push(done, completion, attempt);
    }

    fn push(&mut self, time: i64, completion: Completion, attempt: u32) {
        self.seq += 1;
        self.heap.push(Reverse((time, self.seq, completion, attempt)));
    }

    /// Draws the copies of `event` (events come in time order).
    pub fn event(&mut self, event: &EventRow) {
        for (k, r) in self.targets(event).into_iter().enumerate() {
            let lag = if k == 0 { 0 } else { self.rng.random_range(100..=2_000) };
            self.attempt(event.time + lag, event.id, r, 1);
        }
        if self.rng.random::<f64>() < UNKNOWN_EVENT {
            self.next_unknown += 1;
            let completion = Completion {
                time: event.time + 50,
                event_id: self.next_unknown,
                region: self.truth.regions[event.region].name.clone(),
                completed: true,
            };
            self.push(event.time + 50, completion, ATTEMPTS);
        }
        if self.rng.random::<f64>() < UNKNOWN_REGION {
            let completion = Completion {
                time: event.time + 50,
                event_id: event.id,
                region: UNKNOWN_REGION_NAME.into(),
                completed: true,
            };
            self.push(event.time + 50, completion, ATTEMPTS);
        }
    }

    /// The acknowledgements before `until`, in time order (all when `None`), counted in
    /// `counts`. A failed attempt that may be retried schedules its retry.
    pub fn ready(&mut self, until: Option<i64>, counts: &mut Counts) -> Vec<Completion> {
        let mut out = Vec::new();
        while let Some(Reverse((time, _, _, _))) = self.heap.peek() {
            if until.is_some_and(|u| *time >= u) {
                break;
            }
            let Reverse((time, _, completion, attempt)) = self.heap.pop().expect("peeked");
            counts.completions += 1;
            if completion.event_id >= 1 << 40 {
                counts.completions_unknown_event += 1;
            } else if completion.region == UNKNOWN_REGION_NAME {
                counts.completions_unknown_region += 1;
            } else if !completion.completed {
                counts.completions_failed += 1;
                if attempt < ATTEMPTS {
                    let r = self.truth.region(&completion.region).expect("a scenario region");
                    let retry = time + self.rng.random_range(30_000..=120_000);
                    self.attempt(retry, completion.event_id, r, attempt + 1);
                }
            }
            out.push(completion);
        }
        out
    }
}
