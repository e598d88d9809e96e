//! The queue simulator behind the routing evaluator: routing policies over one list of routed
//! events, and per-region priority queues per window (`model::queueing`). No I/O and no truth
//! file: a [`Scenario`] is what the simulator needs of it, so tests build small ones by hand.
//!
//! ```text
//!  routed events ──► policy (sluice | hashing | least_loaded | pseudocode | random
//!                            | sluice_closed_loop) ──────────────────────────────► region per event
//!                                                                                 │
//!  per window Δt and region r: classes = priorities 1..10 ◄───────────────────────┘
//!    λ_k = n_k × requests_per_event / Δt          x = complexity / mean complexity (mean 1)
//!    ρ_k = λ_k E[x]_k / μ_r                        μ_r = capacity_rps (× residual in the outage)
//!    wait_k = Cobham(ρ capped at u_max) in units of s_r        s_r = service_ms of r
//!           + time to serve the backlog of classes ≤ k at the capacity to come
//!  latency(event) = wait_k(r, window) + x × s_r
//! ```

use std::collections::{BTreeMap, VecDeque};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::generate::regions::model::Transform;
use crate::model::queueing::{cobham_capped, time_to_serve, Class, FluidQueue};
use crate::model::routing::{decide, Health, RegionLoad, Weights};
use crate::value::Value;

/// Priorities 1 (served first) to 10.
pub const PRIORITIES: usize = 10;

/// One region as the simulator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionModel {
    pub name: String,
    /// Requests per second at full utilization.
    pub capacity_rps: f64,
    /// Mean service time of a request of mean complexity, in ms: the truth's `latency_ms`
    /// transform `service_ms / (1 − u)` is an M/M/1 queue with this mean service time.
    pub service_ms: f64,
    /// How its agent's `cpu`, `memory`, `queue_length` and `latency_ms` follow its
    /// utilization (the truth's transforms): what the closed-loop policy's router reads.
    pub metrics: [Transform; 4],
}

/// An interval `[start, end)` during which one region serves `residual` of its capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outage {
    pub region: usize,
    pub start_ms: i64,
    pub end_ms: i64,
    pub residual: f64,
}

/// What the simulator knows of the world the events came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub start_ms: i64,
    pub end_ms: i64,
    pub regions: Vec<RegionModel>,
    /// Intervals `[start, end)` of load spikes (any region's).
    pub spikes: Vec<(i64, i64)>,
    pub outage: Option<Outage>,
    /// How many requests each event stands for.
    pub requests_per_event: f64,
    /// Utilization is capped here in Cobham's formula (the truth's `max_utilization`).
    pub max_utilization: f64,
}

impl Scenario {
    /// Region `r`'s capacity (requests/s) averaged over `[from, to)`: reduced to `residual`
    /// for the part that overlaps the outage.
    pub fn capacity(&self, r: usize, from: i64, to: i64) -> f64 {
        let full = self.regions[r].capacity_rps;
        match self.outage {
            Some(o) if o.region == r && to > from => {
                let overlap = (to.min(o.end_ms) - from.max(o.start_ms)).max(0) as f64 / (to - from) as f64;
                full * (1.0 - overlap * (1.0 - o.residual))
            }
            _ => full,
        }
    }

    pub fn in_spike(&self, t: i64) -> bool {
        self.spikes.iter().any(|(s, e)| *s <= t && t < *e)
    }

    pub fn in_outage(&self, t: i64) -> bool {
        self.outage.is_some_and(|o| o.start_ms <= t && t < o.end_ms)
    }
}

/// One routing decision, with regions as indices into [`Scenario::regions`].
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    pub time: i64,
    pub shard_key: Value,
    pub shard: u64,
    pub priority: i64,
    pub complexity: i64,
    /// The shard's home as the router saw it (after migrations), and the region it chose.
    pub home: usize,
    pub chosen: usize,
}

/// A shard migration (a row of `NAME_migrations`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moved {
    pub time: i64,
    pub shard: u64,
    pub from: usize,
    pub to: usize,
}

/// The routing policies compared, all through the same queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Policy {
    /// The router's own decisions (`chosen`).
    Sluice,
    /// Pure consistent hashing: the shard's home without migrations.
    Hashing,
    /// Each event to the region with the lowest simulated utilization over the trailing
    /// window, with no affinity.
    LeastLoaded,
    /// The original design's pseudocode: region index `round(0.7 · best + 0.3 · home)`, best
    /// being the least-loaded region and home the hashing one.
    Pseudocode,
    /// A reference, not a router: each event to a region drawn in proportion to capacity
    /// (seeded). Its imbalance is what sampling alone gives a split that is balanced on
    /// average.
    Random,
    /// A diagnostic: sluice's score (`model::routing::decide`, the spec's weights and health)
    /// on the hashing home, fed with the metrics the truth's transforms give the simulated
    /// utilization over the trailing window, instead of the scenario's load samples. No
    /// forecast, no migration.
    SluiceClosedLoop,
}

pub const POLICIES: [Policy; 6] = [
    Policy::Sluice,
    Policy::Hashing,
    Policy::LeastLoaded,
    Policy::Pseudocode,
    Policy::Random,
    Policy::SluiceClosedLoop,
];

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::Sluice => "sluice",
            Policy::Hashing => "hashing",
            Policy::LeastLoaded => "least_loaded",
            Policy::Pseudocode => "pseudocode",
            Policy::Random => "random",
            Policy::SluiceClosedLoop => "sluice_closed_loop",
        }
    }
}

/// How the simulation runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// Queues are solved per window of this length; also the trailing window of the
    /// least-loaded and closed-loop measures.
    pub window_ms: i64,
    /// The router's weights and health (for the closed-loop policy).
    pub weights: Weights,
    pub health: Health,
}

/// Each event's service work, in requests of mean complexity: `complexity / mean complexity`
/// (1 for every event when the mean is not positive).
pub fn work(events: &[Routed]) -> Vec<f64> {
    let mean = events.iter().map(|e| e.complexity as f64).sum::<f64>() / events.len().max(1) as f64;
    events
        .iter()
        .map(|e| if mean > 0.0 { e.complexity as f64 / mean } else { 1.0 })
        .collect()
}

/// Each event's region under pure hashing: its home, with migrations undone (a shard's home
/// from its first migration on is that migration's `from`). Exact when the placement changes
/// only by migrations, as with fixed regions.
pub fn hashing_homes(events: &[Routed], moves: &[Moved]) -> Vec<usize> {
    let mut first: BTreeMap<u64, Moved> = BTreeMap::new();
    for m in moves {
        let e = first.entry(m.shard).or_insert(*m);
        if m.time < e.time {
            *e = *m;
        }
    }
    events
        .iter()
        .map(|e| match first.get(&e.shard) {
            Some(m) if m.time <= e.time => m.from,
            _ => e.home,
        })
        .collect()
}

/// The utilization each region had over the trailing `window_ms` of one policy's own
/// decisions: routed work over the capacity the region has now.
struct Trailing {
    window_ms: i64,
    recent: VecDeque<(i64, usize, f64)>,
    work: Vec<f64>,
}

impl Trailing {
    fn new(regions: usize, window_ms: i64) -> Trailing {
        Trailing {
            window_ms,
            recent: VecDeque::new(),
            work: vec![0.0; regions],
        }
    }

    /// Each region's utilization at `t`: the work routed to it in `(t − window, t]` (in
    /// requests) over what its capacity at `t` serves in a window.
    fn utilization(&mut self, scenario: &Scenario, t: i64) -> Vec<f64> {
        while self.recent.front().is_some_and(|(at, _, _)| *at <= t - self.window_ms) {
            let (_, r, w) = self.recent.pop_front().expect("a front");
            self.work[r] -= w;
        }
        let seconds = self.window_ms as f64 / 1000.0;
        (0..self.work.len())
            .map(|r| {
                let capacity = scenario.capacity(r, t, t + 1);
                let work = self.work[r].max(0.0) * scenario.requests_per_event;
                if capacity > 0.0 {
                    work / (capacity * seconds)
                } else if work > 0.0 {
                    f64::INFINITY
                } else {
                    0.0
                }
            })
            .collect()
    }

    fn add(&mut self, t: i64, r: usize, work: f64) {
        self.recent.push_back((t, r, work));
        self.work[r] += work;
    }
}

/// The region of the lowest utilization (ties to the lower index).
fn lowest(utilization: &[f64]) -> usize {
    (0..utilization.len())
        .min_by(|a, b| utilization[*a].total_cmp(&utilization[*b]).then(a.cmp(b)))
        .unwrap_or(0)
}

/// What a region's agent would report at utilization `u` (capped as the truth caps it).
fn reported(model: &RegionModel, u: f64, max_utilization: f64) -> RegionLoad {
    let u = u.clamp(0.0, max_utilization);
    let [cpu, memory, queue, latency] = model.metrics.map(|m| Some(m.apply(u)));
    RegionLoad {
        cpu,
        memory,
        queue_length: queue,
        latency_ms: latency,
        available: true,
    }
}

/// The region of every event (in the order given, which must be time order) under `policy`.
pub fn assign(
    policy: Policy,
    scenario: &Scenario,
    events: &[Routed],
    moves: &[Moved],
    work: &[f64],
    config: &Config,
) -> Vec<usize> {
    match policy {
        Policy::Sluice => events.iter().map(|e| e.chosen).collect(),
        Policy::Hashing => hashing_homes(events, moves),
        Policy::Random => {
            let mut rng = ChaCha8Rng::seed_from_u64(0x7261_6e64_6f6d);
            let total: f64 = scenario.regions.iter().map(|r| r.capacity_rps.max(0.0)).sum();
            events
                .iter()
                .map(|_| {
                    let mut x = rng.random::<f64>() * total;
                    for (i, r) in scenario.regions.iter().enumerate() {
                        if x < r.capacity_rps {
                            return i;
                        }
                        x -= r.capacity_rps.max(0.0);
                    }
                    scenario.regions.len().saturating_sub(1)
                })
                .collect()
        }
        Policy::LeastLoaded | Policy::Pseudocode | Policy::SluiceClosedLoop => {
            let homes = hashing_homes(events, moves);
            let last = scenario.regions.len().saturating_sub(1);
            let mut trailing = Trailing::new(scenario.regions.len(), config.window_ms);
            events
                .iter()
                .zip(work)
                .zip(homes)
                .map(|((e, w), home)| {
                    let utilization = trailing.utilization(scenario, e.time);
                    let best = lowest(&utilization);
                    let r = match policy {
                        Policy::LeastLoaded => best,
                        Policy::Pseudocode => ((0.7 * best as f64 + 0.3 * home as f64).round() as usize).min(last),
                        _ => {
                            let loads: Vec<RegionLoad> = scenario
                                .regions
                                .iter()
                                .zip(&utilization)
                                .map(|(m, u)| reported(m, *u, scenario.max_utilization))
                                .collect();
                            decide(
                                &loads,
                                Some(home),
                                e.priority,
                                e.complexity,
                                &config.weights,
                                &config.health,
                            )
                            .map_or(home, |d| d.chosen.region)
                        }
                    };
                    trailing.add(e.time, r, *w);
                    r
                })
                .collect()
        }
    }
}

/// One region in one window of one policy's simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub window: usize,
    pub region: usize,
    pub events: usize,
    /// Offered work over the window's (possibly reduced) capacity.
    pub utilization: f64,
    /// Work still queued at the window's end, in seconds at the region's capacity then.
    pub backlog_s: f64,
}

/// One policy's simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct Simulation {
    pub policy: Policy,
    /// Each event's region and simulated latency (ms), in the events' order.
    pub region: Vec<usize>,
    pub latency_ms: Vec<f64>,
    /// Per window, per region (window-major).
    pub cells: Vec<Cell>,
    /// Times a shard key's region differs from the region of its previous event.
    pub keys_moved: usize,
}

/// Window `w` as `[start, end)`, clipped to the scenario's end (at least 1 ms long).
pub fn window_bounds(scenario: &Scenario, window_ms: i64, w: usize) -> (i64, i64) {
    let start = scenario.start_ms + w as i64 * window_ms;
    (start, (start + window_ms).min(scenario.end_ms).max(start + 1))
}

/// The number of windows covering the scenario.
pub fn window_count(scenario: &Scenario, window_ms: i64) -> usize {
    ((scenario.end_ms - scenario.start_ms).max(1) as u64).div_ceil(window_ms.max(1) as u64) as usize
}

/// Runs the events, assigned by `policy`, through per-region queues. Events must lie in
/// `[start_ms, end_ms)` and be in time order.
pub fn simulate(
    policy: Policy,
    scenario: &Scenario,
    events: &[Routed],
    moves: &[Moved],
    config: &Config,
) -> Simulation {
    let window_ms = config.window_ms.max(1);
    let config = Config { window_ms, ..*config };
    let work = work(events);
    let region = assign(policy, scenario, events, moves, &work, &config);
    let n_regions = scenario.regions.len();
    let windows = window_count(scenario, window_ms);
    // Per (window, region, priority): events, Σx, Σx².
    let mut sums = vec![[(0usize, 0.0f64, 0.0f64); PRIORITIES]; windows * n_regions];
    let cell_of = |t: i64| ((t - scenario.start_ms) / window_ms) as usize;
    for (i, e) in events.iter().enumerate() {
        let k = (e.priority.clamp(1, PRIORITIES as i64) - 1) as usize;
        let s = &mut sums[cell_of(e.time) * n_regions + region[i]][k];
        s.0 += 1;
        s.1 += work[i];
        s.2 += work[i] * work[i];
    }
    // Per (window, region): the work that can be served, and per priority the work arriving,
    // Cobham's wait (ms) and the mean backlog of priorities ≤ k.
    struct Solved {
        capacity: f64,
        arrivals: [f64; PRIORITIES],
        queueing: Vec<f64>,
        backlog: Vec<f64>,
    }
    let mut solved: Vec<Solved> = Vec::with_capacity(windows * n_regions);
    let mut cells = Vec::with_capacity(windows * n_regions);
    let mut queues: Vec<FluidQueue> = (0..n_regions).map(|_| FluidQueue::new(PRIORITIES)).collect();
    for w in 0..windows {
        let (from, to) = window_bounds(scenario, window_ms, w);
        let dt_s = (to - from) as f64 / 1000.0;
        for (r, model) in scenario.regions.iter().enumerate() {
            let at = w * n_regions + r;
            let capacity = scenario.capacity(r, from, to);
            let s = model.service_ms;
            let mut classes = Vec::with_capacity(PRIORITIES);
            let mut arrivals = [0.0; PRIORITIES];
            let mut utilization = 0.0;
            for (k, &(n, x1, x2)) in sums[at].iter().enumerate() {
                // Work arriving (requests of mean complexity), and the class's utilization
                // of the capacity the region has in this window.
                arrivals[k] = x1 * scenario.requests_per_event;
                let rho = if capacity > 0.0 {
                    arrivals[k] / dt_s / capacity
                } else if n > 0 {
                    f64::INFINITY
                } else {
                    0.0
                };
                utilization += rho;
                // Service within a complexity is exponential: E[S²] = 2 E[x²] s².
                let (m1, m2) = if n > 0 {
                    (x1 / n as f64 * s, 2.0 * x2 / n as f64 * s * s)
                } else {
                    (s, 2.0 * s * s)
                };
                classes.push(Class {
                    rate: if rho.is_finite() { rho / m1 } else { 0.0 },
                    mean: m1,
                    second_moment: m2,
                });
            }
            let queueing = if utilization.is_finite() {
                cobham_capped(&classes, scenario.max_utilization)
            } else {
                // No capacity at all: only the backlog counts (and it never drains here).
                vec![0.0; PRIORITIES]
            };
            let backlog = queues[r].step(&arrivals, capacity * dt_s);
            cells.push(Cell {
                window: w,
                region: r,
                events: sums[at].iter().map(|c| c.0).sum(),
                utilization,
                backlog_s: if capacity > 0.0 {
                    queues[r].total() / capacity
                } else if queues[r].total() > 0.0 {
                    f64::INFINITY
                } else {
                    0.0
                },
            });
            solved.push(Solved {
                capacity: capacity * dt_s,
                arrivals,
                queueing,
                backlog,
            });
        }
    }
    // Per (window, region, priority): the wait in ms. A backlog is served from the window's
    // middle on, with the capacity of each window to come less the work of higher priorities
    // arriving then.
    let mut waits = vec![[0.0f64; PRIORITIES]; windows * n_regions];
    for w in 0..windows {
        for r in 0..n_regions {
            let at = w * n_regions + r;
            for (k, wait) in waits[at].iter_mut().enumerate() {
                let queued = solved[at].backlog[k];
                let drain = if queued > 0.0 {
                    let spare = |v: usize| {
                        let c = &solved[v * n_regions + r];
                        c.capacity - c.arrivals[..k].iter().sum::<f64>()
                    };
                    let (from, to) = window_bounds(scenario, window_ms, w);
                    let first = ((to - from) as f64 / 2.0, spare(w) / 2.0);
                    let rest = (w + 1..windows).map(|v| {
                        let (from, to) = window_bounds(scenario, window_ms, v);
                        ((to - from) as f64, spare(v))
                    });
                    time_to_serve(queued, std::iter::once(first).chain(rest))
                } else {
                    0.0
                };
                *wait = solved[at].queueing[k] + drain;
            }
        }
    }
    let latency_ms = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let k = (e.priority.clamp(1, PRIORITIES as i64) - 1) as usize;
            waits[cell_of(e.time) * n_regions + region[i]][k] + work[i] * scenario.regions[region[i]].service_ms
        })
        .collect();
    let keys_moved = keys_moved(events, &region, |_| true);
    Simulation {
        policy,
        region,
        latency_ms,
        cells,
        keys_moved,
    }
}

/// Times a shard key's region (`region[i]` for event `i`) differs from the region of its
/// previous event, counting the moves of events whose time is `counted`.
pub fn keys_moved(events: &[Routed], region: &[usize], counted: impl Fn(i64) -> bool) -> usize {
    let mut last: BTreeMap<&Value, usize> = BTreeMap::new();
    let mut moved = 0;
    for (e, r) in events.iter().zip(region) {
        if last.insert(&e.shard_key, *r).is_some_and(|before| before != *r) && counted(e.time) {
            moved += 1;
        }
    }
    moved
}

/// `max / mean` of the regions' utilizations in each window (NaN when the mean is 0).
pub fn imbalance(sim: &Simulation, regions: usize) -> Vec<f64> {
    sim.cells
        .chunks(regions.max(1))
        .map(|cells| {
            let max = cells.iter().map(|c| c.utilization).fold(f64::NEG_INFINITY, f64::max);
            let mean = cells.iter().map(|c| c.utilization).sum::<f64>() / cells.len() as f64;
            if mean > 0.0 {
                max / mean
            } else {
                f64::NAN
            }
        })
        .collect()
}

/// The `q`-quantile (0 to 1) of `values`, linear between order statistics (NaN when empty;
/// non-finite values sort last).
pub fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let h = q.clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    if lo == hi || values[lo] == values[hi] {
        values[lo]
    } else {
        values[lo] + (h - lo as f64) * (values[hi] - values[lo])
    }
}
