//! Load agents: one per region, reporting its metrics every 15–60 s (uniform, independent
//! gaps), the first report within 15 s of the start. Each report advances the region's AR(1)
//! noise of every metric ([`super::model::Noise`]) and then, with these probabilities, is
//! dropped ([`MISSING`]), delayed by 20 s–5 min ([`DELAYED`]) or written twice, the copy up to
//! 2 s later ([`DUPLICATED`]); each value is replaced by garbage with probability [`GARBAGE`].
//! [`Agents`] yields the written samples in arrival order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::model::{observe, Counts, Truth, AR, METRICS, SIGMA};
use crate::generate::timed::Timed;

pub const MISSING: f64 = 0.01;
pub const DELAYED: f64 = 0.01;
pub const DUPLICATED: f64 = 0.005;
pub const GARBAGE: f64 = 0.002;
/// Garbage as text formats write it; Parquet writes NaN.
pub const GARBAGE_TEXT: [&str; 3] = ["NaN", "n/a", "ERR"];

/// One metric value of a sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reading {
    Value(f64),
    Garbage(&'static str),
}

/// How a written sample came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    OnTime,
    /// Written after reports made later.
    Delayed,
    /// The second copy of a report.
    Duplicate,
}

/// One written load sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub time: i64,
    pub region: usize,
    pub readings: [Reading; METRICS.len()],
    /// The noise of this report, by metric (the value is `observe(noise_free + noise)`).
    pub noise: [f64; METRICS.len()],
    /// The report's position among its agent's reports, dropped ones included.
    pub report: u64,
    pub delivery: Delivery,
}

struct Agent {
    rng: ChaCha8Rng,
    next: i64,
    noise: [f64; METRICS.len()],
    reports: u64,
}

/// The written samples of every region, in arrival order.
pub struct Agents<'a> {
    truth: &'a Truth,
    agents: Vec<Agent>,
    /// Samples waiting for their arrival time.
    pending: BinaryHeap<Reverse<Timed<Sample>>>,
    seq: u64,
    pub counts: Counts,
}

impl<'a> Agents<'a> {
    pub fn new(truth: &'a Truth, seed: u64) -> Agents<'a> {
        let agents = (0..truth.regions.len())
            .map(|r| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6167_656e_7473_0000 ^ (r as u64) << 8);
                // The noise before the first report, drawn from its stationary distribution.
                let noise = SIGMA.map(|s| s * rng.sample::<f64, _>(StandardNormal));
                Agent {
                    next: truth.start_ms + rng.random_range(0..15_000),
                    rng,
                    noise,
                    reports: 0,
                }
            })
            .collect();
        Agents {
            truth,
            agents,
            pending: BinaryHeap::new(),
            seq: 0,
            counts: Counts::default(),
        }
    }

    /// Makes agent `r`'s next report and queues what it writes.
    fn report(&mut self, r: usize) {
        let truth = self.truth;
        let a = &mut self.agents[r];
        let time = a.next;
        let [low, high] = truth.report_interval_ms;
        a.next = time + a.rng.random_range(low..=high);
        let innovation = (1.0 - AR * AR).sqrt();
        for (e, s) in a.noise.iter_mut().zip(SIGMA) {
            *e = AR * *e + innovation * s * a.rng.sample::<f64, _>(StandardNormal);
        }
        let report = a.reports;
        a.reports += 1;
        if a.rng.random::<f64>() < MISSING {
            self.counts.missing += 1;
            return;
        }
        let mut readings = [Reading::Value(0.0); METRICS.len()];
        for (m, reading) in readings.iter_mut().enumerate() {
            *reading = if a.rng.random::<f64>() < GARBAGE {
                self.counts.garbage += 1;
                Reading::Garbage(GARBAGE_TEXT[a.rng.random_range(0..GARBAGE_TEXT.len())])
            } else {
                Reading::Value(observe(m, truth.noise_free(r, m, time) + a.noise[m]))
            };
        }
        let delayed = a.rng.random::<f64>() < DELAYED;
        let arrival = if delayed {
            self.counts.delayed += 1;
            time + a.rng.random_range(20_000..=300_000)
        } else {
            time
        };
        let duplicate = (a.rng.random::<f64>() < DUPLICATED).then(|| arrival + a.rng.random_range(1..=2_000));
        let sample = Sample {
            time,
            region: r,
            readings,
            noise: a.noise,
            report,
            delivery: if delayed { Delivery::Delayed } else { Delivery::OnTime },
        };
        if let Some(at) = duplicate {
            self.counts.duplicated += 1;
            let copy = Sample {
                delivery: Delivery::Duplicate,
                ..sample.clone()
            };
            self.push(at, copy);
        }
        self.push(arrival, sample);
    }

    fn push(&mut self, arrival: i64, sample: Sample) {
        self.seq += 1;
        self.pending.push(Reverse(Timed {
            time: arrival,
            seq: self.seq,
            item: sample,
        }));
    }
}

impl Iterator for Agents<'_> {
    type Item = Sample;

    fn next(&mut self) -> Option<Sample> {
        loop {
            let end = self.truth.end_ms;
            let due = (0..self.agents.len())
                .filter(|&r| self.agents[r].next < end)
                .min_by_key(|&r| (self.agents[r].next, r));
            let ready = self.pending.peek().is_some_and(|Reverse(p)| match due {
                Some(r) => p.time <= self.agents[r].next,
                None => true,
            });
            if ready {
                let Reverse(p) = self.pending.pop().expect("peeked");
                self.counts.samples += 1;
                return Some(p.item);
            }
            self.report(due?);
        }
    }
}
