//! The routing evaluator: a router's decisions (`NAME`) and migrations (`NAME_migrations`)
//! replayed through simulated per-region queues with the capacities, spikes and outage of the
//! scenario's truth (`FILE.truth.json` of `sluice generate regions`), against three baselines.
//!
//! ```text
//!  NAME, NAME_migrations ─► Routed, Moved ─┐
//!  truth: capacities, service times, ──────┼─► simulate (per policy) ─► latency per event,
//!   spikes, outage, requests per event     │                            utilization per window
//!                                          └─► tables: NAME_latency, NAME_windows,
//!                                                      NAME_policies, NAME_goals
//! ```
//!
//! The model and its choices are in `simulate.rs` and in the README ("Evaluating routing").
//! Without a truth the evaluation is skipped, with a summary line that says why.

pub mod simulate;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use super::{Evaluation, Evaluator};
use crate::generate::regions::model::{Transform, Truth};
use crate::plan::RouterPlan;
use crate::value::{format_time, Sym, Value};
use simulate::{
    imbalance, quantile, Config, Moved, Outage, Policy, RegionModel, Routed, Scenario, Simulation, POLICIES,
};

/// The evaluation's settings (`sluice eval --window`, `--settle`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoutingOptions {
    /// Queues are solved per window of this length; also the least-loaded measure's trailing
    /// window.
    pub window_ms: i64,
    /// Imbalance is scored from this long after the start, and not from the outage's start to
    /// this long after its end.
    pub settle_ms: i64,
}

impl Default for RoutingOptions {
    fn default() -> RoutingOptions {
        RoutingOptions {
            window_ms: 15 * 60_000,
            settle_ms: 3_600_000,
        }
    }
}

/// Priority classes reported (the queues have one class per priority).
pub const CLASSES: [(&str, i64, i64); 3] = [("1-3", 1, 3), ("4-7", 4, 7), ("8-10", 8, 10)];
/// Periods reported: every event, those in a spike, in the outage, in either, in neither.
pub const PERIODS: [&str; 5] = ["all", "spikes", "outage", "spikes_or_outage", "normal"];

pub const LATENCY_COLUMNS: [&str; 7] = [
    "policy",
    "priorities",
    "period",
    "events",
    "p50_ms",
    "p95_ms",
    "mean_ms",
];
pub const WINDOW_COLUMNS: [&str; 11] = [
    "policy",
    "window_start",
    "region",
    "events",
    "utilization",
    "backlog_s",
    "imbalance",
    "settled",
    "latency_1_3_ms",
    "latency_4_7_ms",
    "latency_8_10_ms",
];
pub const POLICY_COLUMNS: [&str; 11] = [
    "policy",
    "events",
    "keys_moved",
    "shard_moves",
    "imbalance_mean",
    "imbalance_p95",
    "imbalance_max",
    "settled_windows",
    "p95_1_3_spikes_ms",
    "p95_1_3_outage_ms",
    "p95_all_ms",
];
pub const GOAL_COLUMNS: [&str; 8] = [
    "id",
    "goal",
    "target",
    "sluice",
    "baseline",
    "baseline_value",
    "ratio",
    "met",
];

/// Where the truth comes from: the file read, or why there is none.
pub type TruthSource = super::TruthSource<Truth>;

/// Evaluates one `[[routers]]` entry.
pub struct RoutingEvaluator {
    pub plan: RouterPlan,
    pub truth: TruthSource,
    pub options: RoutingOptions,
}

/// The simulator's scenario from a truth: capacities, service times (the `latency_ms`
/// transform's `scale`), spikes, the outage, and the requests per event (the truth's total
/// requests over its `counts.events`, or `events` when it has none).
pub fn scenario_of(truth: &Truth, events: usize) -> Result<Scenario, String> {
    let mut regions = Vec::new();
    for r in &truth.regions {
        let service_ms = match r.metrics.get("latency_ms") {
            Some(Transform::Latency { scale }) if *scale > 0.0 => *scale,
            _ => {
                return Err(format!(
                    "region `{}` has no `latency_ms` transform of kind `latency`",
                    r.name
                ))
            }
        };
        let metric = |name: &str| {
            r.metrics
                .get(name)
                .copied()
                .ok_or_else(|| format!("region `{}` has no `{name}` transform", r.name))
        };
        regions.push(RegionModel {
            name: r.name.clone(),
            capacity_rps: r.capacity_rps,
            service_ms,
            metrics: [
                metric("cpu")?,
                metric("memory")?,
                metric("queue_length")?,
                metric("latency_ms")?,
            ],
        });
    }
    let outage = truth.region(&truth.outage.region).map(|region| Outage {
        region,
        start_ms: truth.outage.start_ms,
        end_ms: truth.outage.end_ms,
        residual: truth.outage.residual,
    });
    let sample = if truth.counts.events > 0 {
        truth.counts.events
    } else {
        events
    };
    let total = crate::generate::regions::events::total_requests(truth);
    Ok(Scenario {
        start_ms: truth.start_ms,
        end_ms: truth.end_ms,
        regions,
        spikes: truth.spikes.iter().map(|s| (s.start_ms, s.end_ms)).collect(),
        outage,
        requests_per_event: total / sample.max(1) as f64,
        max_utilization: truth.max_utilization,
    })
}

/// Every shard's home (an index into the scenario's regions) in the router's placement over
/// the regions' nominal capacities: the router's homes before any capacity change or migration.
pub fn nominal_homes(plan: &RouterPlan, scenario: &Scenario) -> Vec<usize> {
    use crate::model::placement::{shard_homes, PlacementSpec};
    let Ok(algorithm) = plan.algorithm.parse() else {
        return Vec::new();
    };
    // The router orders regions by name.
    let mut regions: Vec<(String, f64)> = scenario
        .regions
        .iter()
        .filter(|r| r.capacity_rps > 0.0)
        .map(|r| (r.name.clone(), r.capacity_rps))
        .collect();
    regions.sort_by(|a, b| a.0.cmp(&b.0));
    let spec = PlacementSpec {
        algorithm,
        vnodes: plan.vnodes,
        epsilon: plan.epsilon,
    };
    let index: Vec<usize> = regions
        .iter()
        .map(|(n, _)| {
            scenario
                .regions
                .iter()
                .position(|r| r.name == *n)
                .expect("from the scenario")
        })
        .collect();
    let (homes, _) = shard_homes(&spec, &regions, plan.shards);
    homes.into_iter().map(|h| index[h as usize]).collect()
}

fn field<'a>(payload: &'a Value, name: &str) -> Option<&'a Value> {
    payload.field(Sym::new(name))
}

/// The decisions as simulator input, in time (then event id) order, and the decisions that
/// could not be used, by reason.
pub fn routed_events(rows: &[Vec<Value>], scenario: &Scenario) -> (Vec<Routed>, BTreeMap<&'static str, usize>) {
    let index: BTreeMap<&str, usize> = scenario
        .regions
        .iter()
        .enumerate()
        .map(|(i, r)| (r.name.as_str(), i))
        .collect();
    let mut skipped: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut events: Vec<(i64, Value, Routed)> = Vec::new();
    for row in rows {
        let (Some(Value::Time(time)), Some(payload)) = (row.first(), row.last()) else {
            *skipped.entry("malformed").or_default() += 1;
            continue;
        };
        let int = |name: &str| match field(payload, name) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        };
        let region = |name: &str| match field(payload, name) {
            Some(Value::Str(s)) => index.get(&**s).copied(),
            _ => None,
        };
        let (Some(priority), Some(complexity), Some(shard)) = (int("priority"), int("complexity"), int("shard_id"))
        else {
            *skipped.entry("malformed").or_default() += 1;
            continue;
        };
        let (Some(home), Some(chosen)) = (region("home"), region("chosen")) else {
            *skipped.entry("unknown_region").or_default() += 1;
            continue;
        };
        if *time < scenario.start_ms || *time >= scenario.end_ms {
            *skipped.entry("outside_truth_span").or_default() += 1;
            continue;
        }
        let id = field(payload, "event_id").cloned().unwrap_or(Value::Null);
        events.push((
            *time,
            id,
            Routed {
                time: *time,
                shard_key: field(payload, "shard_key").cloned().unwrap_or(Value::Null),
                shard: shard as u64,
                priority,
                complexity,
                home,
                chosen,
            },
        ));
    }
    events.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    (events.into_iter().map(|(_, _, r)| r).collect(), skipped)
}

/// The migrations as simulator input (rows naming an unknown region are left out and counted).
pub fn moved_shards(rows: &[Vec<Value>], scenario: &Scenario) -> (Vec<Moved>, usize) {
    let region = |v: &Value| match v {
        Value::Str(s) => scenario.regions.iter().position(|r| *r.name == **s),
        _ => None,
    };
    let mut unknown = 0;
    let mut moves = Vec::new();
    for row in rows {
        match (
            row.first(),
            row.get(1),
            row.get(2).and_then(region),
            row.get(3).and_then(region),
        ) {
            (Some(Value::Time(time)), Some(Value::Int(shard)), Some(from), Some(to)) => moves.push(Moved {
                time: *time,
                shard: *shard as u64,
                from,
                to,
            }),
            _ => unknown += 1,
        }
    }
    (moves, unknown)
}

fn num(x: f64) -> Value {
    if x.is_finite() {
        Value::float(x)
    } else {
        Value::Null
    }
}

/// Whether window `[from, to)` counts for the imbalance goal: after the settle period, and not
/// overlapping the outage or the settle period after it.
fn settled(scenario: &Scenario, options: &RoutingOptions, from: i64, to: i64) -> bool {
    let after_start = from >= scenario.start_ms + options.settle_ms;
    let near_outage = scenario
        .outage
        .is_some_and(|o| from < o.end_ms + options.settle_ms && to > o.start_ms);
    after_start && !near_outage
}

/// What one policy scored, for the tables and the goals.
struct Scores {
    p95_urgent_spikes: f64,
    p95_urgent_outage: f64,
    p95_all: f64,
    imbalance_mean: f64,
    imbalance_p95: f64,
    imbalance_max: f64,
    settled_windows: usize,
    keys_moved: usize,
}

impl Evaluator for RoutingEvaluator {
    fn name(&self) -> String {
        format!("{}_goals", self.plan.name)
    }

    fn reads(&self) -> Vec<String> {
        let mut reads = vec![self.plan.name.clone()];
        if self.plan.migration.is_some() {
            reads.push(format!("{}_migrations", self.plan.name));
        }
        reads
    }

    fn evaluate(
        &self,
        outputs: &BTreeMap<String, Vec<Vec<Value>>>,
        from: Option<i64>,
        until: Option<i64>,
    ) -> Vec<Evaluation> {
        let name = &self.plan.name;
        let skipped = |why: String| {
            vec![Evaluation {
                name: self.name(),
                columns: GOAL_COLUMNS.iter().map(|c| c.to_string()).collect(),
                rows: Vec::new(),
                summary: vec![format!("routing evaluation of `{name}` skipped: {why}")],
                detail: false,
            }]
        };
        let (path, truth) = match &self.truth {
            TruthSource::Loaded { path, truth } => (path, truth),
            TruthSource::Missing(why) => return skipped(why.clone()),
        };
        let rows = outputs.get(name).map(Vec::as_slice).unwrap_or(&[]);
        let scenario = match scenario_of(truth, rows.len()) {
            Ok(s) => s,
            Err(why) => return skipped(format!("{}: {why}", path.display())),
        };
        let (mut events, unusable) = routed_events(rows, &scenario);
        // Hashing's homes: the placement over the nominal capacities, whatever the `regions`
        // input said later (so no migration is left to undo).
        let nominal = nominal_homes(&self.plan, &scenario);
        for e in &mut events {
            if let Some(home) = usize::try_from(e.shard).ok().and_then(|s| nominal.get(s)) {
                e.home = *home;
            }
        }
        if events.is_empty() {
            return skipped(format!("no decisions to replay ({} rows of `{name}`)", rows.len()));
        }
        let migration_rows = outputs
            .get(&format!("{name}_migrations"))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let (moves, unknown_moves) = moved_shards(migration_rows, &scenario);
        let options = &self.options;
        let config = Config {
            window_ms: options.window_ms,
            weights: self.plan.weights,
            health: self.plan.health,
        };
        let sims: Vec<Simulation> = POLICIES
            .iter()
            .map(|p| simulate::simulate(*p, &scenario, &events, &[], &config))
            .collect();
        // `--from` and `--until` restrict every figure to the events, windows and moves in
        // `[from, until)`; the simulation still runs over all events, so queues carry over.
        let scored = |t: i64| from.is_none_or(|f| t >= f) && until.is_none_or(|u| t < u);
        let scored_events = events.iter().filter(|e| scored(e.time)).count();
        let in_period = |period: &str, t: i64| match period {
            "all" => true,
            "spikes" => scenario.in_spike(t),
            "outage" => scenario.in_outage(t),
            "spikes_or_outage" => scenario.in_spike(t) || scenario.in_outage(t),
            _ => !scenario.in_spike(t) && !scenario.in_outage(t),
        };
        let n_regions = scenario.regions.len();
        let mut latency_rows = Vec::new();
        let mut window_rows = Vec::new();
        let mut scores: Vec<Scores> = Vec::new();
        for sim in &sims {
            let policy = sim.policy.name();
            let (mut p95_urgent_spikes, mut p95_urgent_outage) = (f64::NAN, f64::NAN);
            let mut p95_all = f64::NAN;
            for (label, lo, hi) in CLASSES.iter().copied().chain([("all", 1, 10)]) {
                for period in PERIODS {
                    let mut values: Vec<f64> = events
                        .iter()
                        .zip(&sim.latency_ms)
                        .filter(|(e, _)| scored(e.time) && (lo..=hi).contains(&e.priority) && in_period(period, e.time))
                        .map(|(_, l)| *l)
                        .collect();
                    let mean = values.iter().sum::<f64>() / values.len() as f64;
                    let (p50, p95) = (quantile(&mut values, 0.5), quantile(&mut values, 0.95));
                    match (label, period) {
                        ("1-3", "spikes") => p95_urgent_spikes = p95,
                        ("1-3", "outage") => p95_urgent_outage = p95,
                        _ => {}
                    }
                    if label == "all" && period == "all" {
                        p95_all = p95;
                    }
                    latency_rows.push(vec![
                        Value::str(policy),
                        Value::str(label),
                        Value::str(period),
                        Value::Int(values.len() as i64),
                        num(p50),
                        num(p95),
                        num(mean),
                    ]);
                }
            }
            // Per cell: the mean latency of each reported class.
            let mut cell_latency: BTreeMap<(usize, usize, usize), (f64, usize)> = BTreeMap::new();
            for ((e, l), r) in events.iter().zip(&sim.latency_ms).zip(&sim.region) {
                let w = ((e.time - scenario.start_ms) / options.window_ms) as usize;
                let c = CLASSES.iter().position(|(_, lo, hi)| (*lo..=*hi).contains(&e.priority));
                if let Some(c) = c {
                    let s = cell_latency.entry((w, *r, c)).or_default();
                    s.0 += l;
                    s.1 += 1;
                }
            }
            let ratios = imbalance(sim, n_regions);
            let mut settled_ratios = Vec::new();
            for (w, ratio) in ratios.iter().enumerate() {
                let (start, end) = simulate::window_bounds(&scenario, options.window_ms, w);
                if scored(start) && settled(&scenario, options, start, end) && ratio.is_finite() {
                    settled_ratios.push(*ratio);
                }
            }
            for cell in &sim.cells {
                let (start, end) = simulate::window_bounds(&scenario, options.window_ms, cell.window);
                if !scored(start) {
                    continue;
                }
                let class_latency = |c: usize| {
                    cell_latency
                        .get(&(cell.window, cell.region, c))
                        .map_or(Value::Null, |(s, n)| num(s / *n as f64))
                };
                window_rows.push(vec![
                    Value::str(policy),
                    Value::Time(start),
                    Value::str(&scenario.regions[cell.region].name),
                    Value::Int(cell.events as i64),
                    num(cell.utilization),
                    num(cell.backlog_s),
                    num(ratios[cell.window]),
                    Value::Bool(settled(&scenario, options, start, end)),
                    class_latency(0),
                    class_latency(1),
                    class_latency(2),
                ]);
            }
            let mean = settled_ratios.iter().sum::<f64>() / settled_ratios.len() as f64;
            let max = settled_ratios.iter().copied().fold(f64::NAN, f64::max);
            scores.push(Scores {
                p95_urgent_spikes,
                p95_urgent_outage,
                p95_all,
                imbalance_mean: mean,
                imbalance_p95: quantile(&mut settled_ratios.clone(), 0.95),
                imbalance_max: max,
                settled_windows: settled_ratios.len(),
                keys_moved: simulate::keys_moved(&events, &sim.region, scored),
            });
        }
        let policy_rows: Vec<Vec<Value>> = sims
            .iter()
            .zip(&scores)
            .map(|(sim, s)| {
                let shard_moves = match sim.policy {
                    Policy::Sluice => Value::Int(moves.iter().filter(|m| scored(m.time)).count() as i64),
                    Policy::Hashing | Policy::SluiceClosedLoop => Value::Int(0),
                    Policy::LeastLoaded | Policy::Pseudocode | Policy::Random => Value::Null,
                };
                vec![
                    Value::str(sim.policy.name()),
                    Value::Int(scored_events as i64),
                    Value::Int(s.keys_moved as i64),
                    shard_moves,
                    num(s.imbalance_mean),
                    num(s.imbalance_p95),
                    num(s.imbalance_max),
                    Value::Int(s.settled_windows as i64),
                    num(s.p95_urgent_spikes),
                    num(s.p95_urgent_outage),
                    num(s.p95_all),
                ]
            })
            .collect();
        let by = |p: Policy| {
            &scores[POLICIES
                .iter()
                .position(|q| *q == p)
                .expect("every policy is simulated")]
        };
        let (sluice, hashing, least) = (by(Policy::Sluice), by(Policy::Hashing), by(Policy::LeastLoaded));
        let keys_ratio = sluice.keys_moved as f64 / least.keys_moved as f64;
        let latency = |id: &'static str, goal: &'static str, value: f64, base: f64| {
            let ratio = value / base;
            (
                id,
                goal,
                "<= 0.7 x hashing",
                value,
                "hashing",
                base,
                ratio,
                ratio <= 0.7,
            )
        };
        let goals = [
            latency(
                "latency_spikes",
                "p95 latency of priorities 1-3 during the spikes",
                sluice.p95_urgent_spikes,
                hashing.p95_urgent_spikes,
            ),
            latency(
                "latency_outage",
                "p95 latency of priorities 1-3 during the outage",
                sluice.p95_urgent_outage,
                hashing.p95_urgent_outage,
            ),
            (
                "keys_moved",
                "keys moved",
                "<= 1/5 x least_loaded",
                sluice.keys_moved as f64,
                "least_loaded",
                least.keys_moved as f64,
                keys_ratio,
                least.keys_moved > 0 && sluice.keys_moved * 5 <= least.keys_moved,
            ),
            (
                "imbalance",
                "imbalance (max/mean utilization), mean over settled windows",
                "<= 1.25",
                sluice.imbalance_mean,
                "hashing",
                hashing.imbalance_mean,
                sluice.imbalance_mean / hashing.imbalance_mean,
                sluice.imbalance_mean <= 1.25,
            ),
        ];
        let goal_rows: Vec<Vec<Value>> = goals
            .iter()
            .map(|(id, goal, target, value, baseline, base, ratio, met)| {
                vec![
                    Value::str(id),
                    Value::str(goal),
                    Value::str(target),
                    num(*value),
                    Value::str(baseline),
                    num(*base),
                    num(*ratio),
                    Value::Bool(*met),
                ]
            })
            .collect();
        let mut summary = vec![format!(
            "truth {} · {} decisions · {} migrations · {:.0} requests per event · {} min windows · {} windows settled (from {} on, not from the outage to {} min after it)",
            path.display(),
            events.len(),
            moves.len(),
            scenario.requests_per_event,
            options.window_ms / 60_000,
            sluice.settled_windows,
            format_time(scenario.start_ms + options.settle_ms),
            options.settle_ms / 60_000,
        )];
        if !unusable.is_empty() || unknown_moves > 0 {
            let mut parts: Vec<String> = unusable.iter().map(|(why, n)| format!("{n} {why}")).collect();
            if unknown_moves > 0 {
                parts.push(format!("{unknown_moves} migrations of unknown regions"));
            }
            summary.push(format!("decisions not replayed: {}", parts.join(", ")));
        }
        for (_, goal, target, value, baseline, base, ratio, met) in &goals {
            summary.push(format!(
                "{} {goal}: sluice {value:.3}, {baseline} {base:.3} (ratio {ratio:.3}; goal {target})",
                if *met { "MET    " } else { "NOT MET" },
            ));
        }
        for (sim, s) in sims.iter().zip(&scores) {
            summary.push(format!(
                "{:<18} p95 of 1-3: spikes {:>8.1} ms, outage {:>12.1} ms · p95 all {:>9.1} ms · keys moved {:>6} · imbalance mean {:.3} p95 {:.3}",
                sim.policy.name(),
                s.p95_urgent_spikes,
                s.p95_urgent_outage,
                s.p95_all,
                s.keys_moved,
                s.imbalance_mean,
                s.imbalance_p95,
            ));
        }
        let table =
            |suffix: &str, columns: &[&str], rows: Vec<Vec<Value>>, detail: bool, summary: Vec<String>| Evaluation {
                name: format!("{name}_{suffix}"),
                columns: columns.iter().map(|c| c.to_string()).collect(),
                rows,
                summary,
                detail,
            };
        vec![
            table("goals", &GOAL_COLUMNS, goal_rows, false, summary),
            table("policies", &POLICY_COLUMNS, policy_rows, false, Vec::new()),
            table("latency", &LATENCY_COLUMNS, latency_rows, true, Vec::new()),
            table("windows", &WINDOW_COLUMNS, window_rows, true, Vec::new()),
        ]
    }
}
