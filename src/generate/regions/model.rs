//! The `regions` scenario's ground truth: the noise-free load of every region at any time, and
//! the metric values it gives. Pure maths, no I/O; [`Truth`] is what `FILE.truth.json` holds,
//! and [`Truth::noise_free`] recomputes a noise-free value from it (see the parent module for
//! the formulas).

use indexmap::IndexMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::value::format_time;

/// The metrics every load sample carries, in column order.
pub const METRICS: [&str; 4] = ["cpu", "memory", "queue_length", "latency_ms"];
/// Noise standard deviation per metric, in the metric's unit (see [`Noise`]).
pub const SIGMA: [f64; 4] = [2.0, 1.0, 1.0, 3.0];
/// The noise's AR(1) coefficient between consecutive reports of a series.
pub const AR: f64 = 0.6;
/// Utilization is capped here before the queueing formulas.
pub const MAX_UTILIZATION: f64 = 0.98;
/// The utilization the region in outage still serves.
pub const OUTAGE_RESIDUAL: f64 = 0.01;
pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// Name, UTC offset in minutes and nominal capacity (requests/s) of the first regions; more
/// regions get synthetic names and offsets.
const REGIONS: [(&str, i32, f64); 8] = [
    ("us-east", -300, 1200.0),
    ("eu-west", 0, 1000.0),
    ("ap-south", 330, 800.0),
    ("us-west", -480, 900.0),
    ("eu-central", 60, 1100.0),
    ("ap-northeast", 540, 1000.0),
    ("sa-east", -180, 600.0),
    ("au-east", 600, 700.0),
];

/// Everything `FILE.truth.json` says (see the parent module for the schema).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    pub scenario: String,
    pub seed: u64,
    pub start_ms: i64,
    pub start: String,
    pub end_ms: i64,
    pub end: String,
    /// Smallest and largest gap between two reports of one agent.
    pub report_interval_ms: [i64; 2],
    pub max_utilization: f64,
    pub noise: Noise,
    pub regions: Vec<RegionTruth>,
    pub spikes: Vec<Window>,
    pub outage: Outage,
    /// What the written files hold (filled in once they are written).
    pub counts: Counts,
}

/// The noise added to each metric of each region: a separate AR(1) series per (region, metric),
/// advanced once per report of its agent (dropped reports included):
/// `e[i] = ar × e[i-1] + innovation_sigma × z[i]`, `z` standard normal, `e[0] ~ N(0, sigma²)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Noise {
    pub model: String,
    pub ar: f64,
    /// The stationary standard deviation, by metric.
    pub sigma: IndexMap<String, f64>,
    /// `sigma × sqrt(1 − ar²)`, by metric.
    pub innovation_sigma: IndexMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionTruth {
    pub name: String,
    pub utc_offset_minutes: i32,
    pub capacity_rps: f64,
    /// The region's own demand as a fraction of its capacity, before spikes and the outage.
    pub load: Components,
    /// How each metric follows the utilization, by metric name.
    pub metrics: IndexMap<String, Transform>,
}

/// `level + trend_per_day × days since start + daily(local hour) + weekly(local day)`, where
/// `daily[h]` is the value at local hour `h` and `weekly[d]` at local midnight of day `d`
/// (0 = Monday), both interpolated linearly and cyclically in between.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Components {
    pub level: f64,
    pub trend_per_day: f64,
    pub daily: Vec<f64>,
    pub weekly: Vec<f64>,
}

/// A metric as a function of utilization `u` (already capped at [`MAX_UTILIZATION`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Transform {
    /// `offset + scale × u`
    Linear { offset: f64, scale: f64 },
    /// `scale × u² / (1 − u)`: M/M/1 mean queue length times `scale` servers.
    Queue { scale: f64 },
    /// `scale / (1 − u)`: M/M/1 time in system with a mean service time of `scale` ms.
    Latency { scale: f64 },
}

impl Transform {
    pub fn apply(self, u: f64) -> f64 {
        match self {
            Transform::Linear { offset, scale } => offset + scale * u,
            Transform::Queue { scale } => scale * u * u / (1.0 - u),
            Transform::Latency { scale } => scale / (1.0 - u),
        }
    }
}

/// A load spike: `magnitude` is added to the region's demand for `start_ms <= t < end_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub region: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub start: String,
    pub end: String,
    pub magnitude: f64,
}

/// For `start_ms <= t < end_ms` the region serves `residual` utilization, and the rest of its
/// demand goes to the other regions in proportion to their capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outage {
    pub region: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub start: String,
    pub end: String,
    pub residual: f64,
}

/// Rows written and the defects among the load samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub events: usize,
    /// Load-sample rows written (duplicates included).
    pub samples: usize,
    /// Reports that were never written.
    pub missing: usize,
    /// Reports written twice (the second copy up to 2 s later).
    pub duplicated: usize,
    /// Reports written 20 s to 5 min after later ones.
    pub delayed: usize,
    /// Metric values replaced by garbage (`NaN`, `n/a`, `ERR`; NaN in Parquet).
    pub garbage: usize,
    /// Rows of `completions` ([`super::completions`]), failed attempts among them, and rows
    /// naming an event or a region that does not exist.
    #[serde(default)]
    pub completions: usize,
    #[serde(default)]
    pub completions_failed: usize,
    #[serde(default)]
    pub completions_unknown_event: usize,
    #[serde(default)]
    pub completions_unknown_region: usize,
}

/// `x` rounded to 9 decimals: the truth's parameters are exactly what its JSON says (a
/// decimal of 9 places parses back to the same `f64`).
fn r9(x: f64) -> f64 {
    (x * 1e9).round() / 1e9 + 0.0
}

/// `values` at position `x` of a cycle of `values.len()` points, interpolated linearly.
fn cyclic(values: &[f64], x: f64) -> f64 {
    let n = values.len();
    let i = x.floor();
    let f = x - i;
    let i = (i as i64).rem_euclid(n as i64) as usize;
    values[i] * (1.0 - f) + values[(i + 1) % n] * f
}

impl Components {
    /// The value at `t` in a region `offset_minutes` from UTC, `start_ms` being day 0 of the trend.
    pub fn at(&self, t: i64, offset_minutes: i32, start_ms: i64) -> f64 {
        let local = t + i64::from(offset_minutes) * 60_000;
        let days = (t - start_ms) as f64 / DAY_MS as f64;
        let in_day = local.rem_euclid(DAY_MS) as f64;
        // 1970-01-01 was a Thursday: day 3 of a week starting on Monday.
        let weekday = (local.div_euclid(DAY_MS) + 3).rem_euclid(7) as f64;
        self.level
            + self.trend_per_day * days
            + cyclic(&self.daily, in_day / HOUR_MS as f64)
            + cyclic(&self.weekly, weekday + in_day / DAY_MS as f64)
    }
}

/// The rows of `regions` as `(region index, time, capacity_rps)`, in time order: every region's
/// capacity at the start, then the region in outage at `capacity_rps × residual` from the
/// outage's start and at its capacity again from its end (when the end is within the span).
pub fn capacity_rows(truth: &Truth) -> Vec<(usize, i64, f64)> {
    let mut rows: Vec<(usize, i64, f64)> = truth
        .regions
        .iter()
        .enumerate()
        .map(|(r, region)| (r, truth.start_ms, region.capacity_rps))
        .collect();
    if let Some(o) = truth.region(&truth.outage.region) {
        let capacity = truth.regions[o].capacity_rps;
        rows.push((o, truth.outage.start_ms, capacity * truth.outage.residual));
        if truth.outage.end_ms < truth.end_ms {
            rows.push((o, truth.outage.end_ms, capacity));
        }
    }
    rows
}

impl Truth {
    /// Draws the parameters of `regions` regions over `start_ms..end_ms` from `seed`.
    pub fn draw(seed: u64, regions: usize, start_ms: i64, end_ms: i64) -> Truth {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7265_6769_6f6e_7331);
        let span_days = ((end_ms - start_ms) as f64 / DAY_MS as f64).max(1.0 / 24.0);
        let mut out = Vec::with_capacity(regions);
        for i in 0..regions {
            let (name, offset, capacity) = match REGIONS.get(i) {
                Some(&(n, o, c)) => (n.to_string(), o, c),
                None => (format!("region-{:02}", i + 1), ((i as i32 * 7) % 24 - 11) * 60, 800.0),
            };
            let capacity = (capacity * rng.random_range(0.9..1.1)).round();
            let amplitude = rng.random_range(0.10..0.15);
            let peak = rng.random_range(13.0..16.0);
            let second = amplitude * rng.random_range(0.2..0.4);
            let peak2 = rng.random_range(8.0..11.0);
            let tau = std::f64::consts::TAU;
            let daily: Vec<f64> = (0..24)
                .map(|h| {
                    let h = f64::from(h);
                    r9(amplitude * (tau * (h - peak) / 24.0).cos() + second * (2.0 * tau * (h - peak2) / 24.0).cos())
                })
                .collect();
            let week = rng.random_range(0.03..0.06);
            let mut weekly: Vec<f64> = [0.6, 1.0, 1.0, 1.0, 0.8, -1.8, -2.6]
                .iter()
                .map(|w| w * week * rng.random_range(0.85..1.15))
                .collect();
            let mean = weekly.iter().sum::<f64>() / 7.0;
            weekly.iter_mut().for_each(|w| *w = r9(*w - mean));
            let idle = r9(rng.random_range(0.03..0.06));
            let metrics = IndexMap::from([
                (
                    METRICS[0].to_string(),
                    Transform::Linear {
                        offset: r9(100.0 * idle),
                        scale: r9(100.0 * (1.0 - idle)),
                    },
                ),
                (
                    METRICS[1].to_string(),
                    Transform::Linear {
                        offset: r9(rng.random_range(35.0..45.0)),
                        scale: r9(rng.random_range(20.0..30.0)),
                    },
                ),
                (
                    METRICS[2].to_string(),
                    Transform::Queue {
                        scale: rng.random_range(8..=24) as f64,
                    },
                ),
                (
                    METRICS[3].to_string(),
                    Transform::Latency {
                        scale: r9(rng.random_range(20.0..40.0)),
                    },
                ),
            ]);
            out.push(RegionTruth {
                name,
                utc_offset_minutes: offset,
                capacity_rps: capacity,
                load: Components {
                    level: r9(rng.random_range(0.25..0.35)),
                    trend_per_day: r9(rng.random_range(-0.03..0.08) / span_days),
                    daily,
                    weekly,
                },
                metrics,
            });
        }
        let minute = |t: i64| t / 60_000 * 60_000;
        let span = end_ms - start_ms;
        // About one spike per region every two days, at least one in all.
        let mut spikes = Vec::new();
        for r in &out {
            let poisson = rand_distr::Poisson::new(span_days * 0.5).expect("a positive mean");
            let count = rng.sample::<f64, _>(poisson) as usize;
            for _ in 0..count {
                spikes.push((r.name.clone(), rng.random_range(start_ms..end_ms)));
            }
        }
        if spikes.is_empty() {
            let r = rng.random_range(0..regions);
            spikes.push((out[r].name.clone(), rng.random_range(start_ms..end_ms)));
        }
        let mut spikes = spikes
            .into_iter()
            .map(|(region, at)| {
                let start = minute(at);
                let end = start + rng.random_range(5..=30) * 60_000;
                Window {
                    region,
                    start_ms: start,
                    end_ms: end,
                    start: format_time(start),
                    end: format_time(end),
                    magnitude: (rng.random_range(0.10..0.25) * 1000.0_f64).round() / 1000.0,
                }
            })
            .collect::<Vec<_>>();
        spikes.sort_by(|a, b| (a.start_ms, &a.region).cmp(&(b.start_ms, &b.region)));
        let victim = rng.random_range(0..regions);
        let length = rng.random_range(HOUR_MS..4 * HOUR_MS).min(span / 10).max(60_000);
        let outage_start = minute(start_ms + (span as f64 * rng.random_range(0.25..0.65)) as i64);
        let outage_end = outage_start + length / 60_000 * 60_000;
        let metric_map = |f: &dyn Fn(f64) -> f64| -> IndexMap<String, f64> {
            METRICS.iter().zip(SIGMA).map(|(m, s)| (m.to_string(), f(s))).collect()
        };
        Truth {
            scenario: "regions".into(),
            seed,
            start_ms,
            start: format_time(start_ms),
            end_ms,
            end: format_time(end_ms),
            report_interval_ms: [15_000, 60_000],
            max_utilization: MAX_UTILIZATION,
            noise: Noise {
                model: "ar1".into(),
                ar: AR,
                sigma: metric_map(&|s| s),
                innovation_sigma: metric_map(&|s| r9(s * (1.0 - AR * AR).sqrt())),
            },
            outage: Outage {
                region: out[victim].name.clone(),
                start_ms: outage_start,
                end_ms: outage_end,
                start: format_time(outage_start),
                end: format_time(outage_end),
                residual: OUTAGE_RESIDUAL,
            },
            regions: out,
            spikes,
            counts: Counts::default(),
        }
    }

    /// The index of region `name`.
    pub fn region(&self, name: &str) -> Option<usize> {
        self.regions.iter().position(|r| r.name == name)
    }

    /// Region `r`'s own demand at `t` as a fraction of its capacity: its components (at least
    /// 0) plus its spikes.
    pub fn demand(&self, r: usize, t: i64) -> f64 {
        let region = &self.regions[r];
        let base = region.load.at(t, region.utc_offset_minutes, self.start_ms).max(0.0);
        let spikes: f64 = self
            .spikes
            .iter()
            .filter(|s| s.region == region.name && s.start_ms <= t && t < s.end_ms)
            .map(|s| s.magnitude)
            .sum();
        base + spikes
    }

    /// Whether the outage is on at `t`.
    pub fn in_outage(&self, t: i64) -> bool {
        self.outage.start_ms <= t && t < self.outage.end_ms
    }

    /// The utilization region `r` serves at `t`: its demand, or during the outage the
    /// residual (the region in outage) or its demand plus its share of the moved demand.
    pub fn load(&self, r: usize, t: i64) -> f64 {
        if !self.in_outage(t) {
            return self.demand(r, t);
        }
        let o = self.region(&self.outage.region).expect("the outage names a region");
        if r == o {
            return self.outage.residual;
        }
        let others: f64 = (0..self.regions.len())
            .filter(|&q| q != o)
            .map(|q| self.regions[q].capacity_rps)
            .sum();
        let moved = (self.demand(o, t) - self.outage.residual).max(0.0) * self.regions[o].capacity_rps;
        self.demand(r, t) + moved / others
    }

    /// The noise-free value of metric `m` (an index into [`METRICS`]) of region `r` at `t`.
    pub fn noise_free(&self, r: usize, m: usize, t: i64) -> f64 {
        let u = self.load(r, t).clamp(0.0, self.max_utilization);
        self.regions[r].metrics[METRICS[m]].apply(u)
    }
}

/// A reported value: noise-free value plus noise, clamped to what the metric can be (`cpu` and
/// `memory` to 0–100, the others to at least 0) and rounded to 3 decimals.
pub fn observe(m: usize, x: f64) -> f64 {
    let high = if m < 2 { 100.0 } else { f64::INFINITY };
    (x.clamp(0.0, high) * 1000.0).round() / 1000.0 + 0.0
}
