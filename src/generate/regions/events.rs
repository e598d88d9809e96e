//! The service's events: exactly `n` requests sampled from the regions' arrivals. The arrival
//! rate of region `r` is `load(r, t) × capacity_rps(r)`, so the events are a uniform sample of
//! the requests the load samples describe, spread over minutes in proportion to the total rate
//! (a sequential binomial split of `n`, which is the multinomial). Within a minute, times are
//! uniform and sorted. Each event has a *home* region drawn by demand (`demand × capacity`);
//! it is served there, except during the outage: a request of the region in outage is served
//! there with probability `residual / demand`, otherwise by another region in proportion to
//! capacity. Events come out in event-time order.

use std::collections::VecDeque;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Binomial, StandardNormal, Zipf};

use super::model::Truth;

const STEP_MS: i64 = 60_000;

/// Event type, weight, median payload bytes, priority range, complexity range.
type Kind = (&'static str, f64, f64, (i64, i64), (i64, i64));

pub const KINDS: [Kind; 5] = [
    ("api_call", 0.45, 2_000.0, (1, 7), (1, 3)),
    ("page_view", 0.30, 8_000.0, (1, 5), (1, 2)),
    ("search", 0.12, 1_000.0, (2, 7), (2, 4)),
    ("upload", 0.08, 500_000.0, (3, 8), (3, 5)),
    ("checkout", 0.05, 4_000.0, (6, 10), (2, 4)),
];
/// Shares of events without a `priority` and without a `complexity`.
pub const NO_PRIORITY: f64 = 0.10;
pub const NO_COMPLEXITY: f64 = 0.15;

/// One event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub time: i64,
    pub kind: &'static str,
    pub id: i64,
    /// The region that served it, and the user's own.
    pub region: usize,
    pub home: usize,
    pub user_id: i64,
    pub device_id: i64,
    pub priority: Option<i64>,
    pub complexity: Option<i64>,
    pub payload_bytes: i64,
}

/// `n` events of a scenario in event-time order.
pub struct Events<'a> {
    truth: &'a Truth,
    rng: ChaCha8Rng,
    /// The total arrival weight of each minute.
    weights: Vec<f64>,
    step: usize,
    remaining: u64,
    remaining_weight: f64,
    ready: VecDeque<EventRow>,
    next_id: i64,
    zipf: Zipf<f64>,
    /// Users are `1..=users × regions`, region `h` holding those `≡ h + 1 (mod regions)`.
    pub users_per_region: u64,
}

/// The arrival weight of each minute from the start (the last one may be shorter): the total
/// arrival rate of all regions at the minute's middle, `Σ_r load(r, t) × capacity_rps(r)`,
/// times its length in ms. The events are spread over minutes in proportion to it.
pub fn minute_weights(truth: &Truth) -> Vec<f64> {
    let regions = truth.regions.len();
    let total = |t: i64| -> f64 {
        (0..regions)
            .map(|r| truth.load(r, t) * truth.regions[r].capacity_rps)
            .sum()
    };
    let mut weights = Vec::new();
    let mut t = truth.start_ms;
    while t < truth.end_ms {
        let len = STEP_MS.min(truth.end_ms - t);
        weights.push(total(t + len / 2) * len as f64);
        t += len;
    }
    weights
}

/// The requests the events are a uniform sample of: the sum of [`minute_weights`] over the
/// span, in requests (rate in requests/s times length in s).
pub fn total_requests(truth: &Truth) -> f64 {
    minute_weights(truth).iter().sum::<f64>() / 1000.0
}

impl<'a> Events<'a> {
    pub fn new(truth: &'a Truth, seed: u64, n: usize) -> Events<'a> {
        let regions = truth.regions.len();
        let weights = minute_weights(truth);
        let users_per_region = (n as u64 / 20 / regions as u64).max(10);
        Events {
            truth,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x6576_656e_7473_0001),
            remaining_weight: weights.iter().sum(),
            weights,
            step: 0,
            remaining: n as u64,
            ready: VecDeque::new(),
            next_id: 1,
            zipf: Zipf::new(users_per_region as f64, 1.1).expect("valid Zipf parameters"),
            users_per_region,
        }
    }

    /// Draws the events of the next minute.
    fn fill(&mut self) {
        let weight = self.weights[self.step];
        let last = self.step + 1 == self.weights.len();
        let p = if last || self.remaining_weight <= weight {
            1.0
        } else {
            (weight / self.remaining_weight).clamp(0.0, 1.0)
        };
        let count = if self.remaining == 0 {
            0
        } else {
            let binomial = Binomial::new(self.remaining, p).expect("a probability");
            self.rng.sample(binomial)
        };
        self.remaining -= count;
        self.remaining_weight -= weight;
        let from = self.truth.start_ms + self.step as i64 * STEP_MS;
        let len = STEP_MS.min(self.truth.end_ms - from);
        let mut times: Vec<i64> = (0..count).map(|_| from + self.rng.random_range(0..len)).collect();
        times.sort_unstable();
        for t in times {
            let row = self.event(t);
            self.ready.push_back(row);
        }
        self.step += 1;
    }

    /// Picks an index with probability proportional to `weights`.
    fn pick(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.rng.random::<f64>() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
    }

    fn event(&mut self, t: i64) -> EventRow {
        let truth = self.truth;
        let n = truth.regions.len();
        let demand: Vec<f64> = (0..n)
            .map(|r| truth.demand(r, t) * truth.regions[r].capacity_rps)
            .collect();
        let home = self.pick(&demand);
        let outage = truth.region(&truth.outage.region).expect("a region");
        let region = if truth.in_outage(t) && home == outage {
            let stay = truth.outage.residual / truth.demand(outage, t).max(truth.outage.residual);
            if self.rng.random::<f64>() < stay {
                outage
            } else {
                let capacity: Vec<f64> = (0..n)
                    .map(|q| {
                        if q == outage {
                            0.0
                        } else {
                            truth.regions[q].capacity_rps
                        }
                    })
                    .collect();
                self.pick(&capacity)
            }
        } else {
            home
        };
        let k = self.pick(&KINDS.map(|k| k.1));
        let (kind, _, median, priority, complexity) = KINDS[k];
        let rank = self.rng.sample(self.zipf) as i64;
        let user_id = (rank - 1) * n as i64 + home as i64 + 1;
        let device_id = user_id * 4 + self.rng.random_range(0..=user_id % 3);
        let priority =
            (self.rng.random::<f64>() >= NO_PRIORITY).then(|| self.rng.random_range(priority.0..=priority.1));
        let complexity =
            (self.rng.random::<f64>() >= NO_COMPLEXITY).then(|| self.rng.random_range(complexity.0..=complexity.1));
        let z: f64 = self.rng.sample(StandardNormal);
        let payload_bytes = (median * (0.8 * z).exp()).round().max(1.0) as i64;
        let id = self.next_id;
        self.next_id += 1;
        EventRow {
            time: t,
            kind,
            id,
            region,
            home,
            user_id,
            device_id,
            priority,
            complexity,
            payload_bytes,
        }
    }
}

impl Iterator for Events<'_> {
    type Item = EventRow;

    fn next(&mut self) -> Option<EventRow> {
        while self.ready.is_empty() && self.step < self.weights.len() {
            self.fill();
        }
        self.ready.pop_front()
    }
}
