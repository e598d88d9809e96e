//! The routing evaluator on small hand-made decision sets, where every figure has a closed form.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::simulate::*;
use super::*;
use crate::error::RunError;
use crate::generate::regions::model::{Transform, Truth};
use crate::model::routing::{Health, Weights};
use crate::plan::validate::plan_str;

const MINUTE: i64 = 60_000;

fn config(window_ms: i64) -> Config {
    Config {
        window_ms,
        weights: Weights {
            latency: 1.0,
            headroom: 1.0,
            affinity: 0.6,
        },
        health: Health {
            latency_goal_ms: 50.0,
            queue_half: 10.0,
            yield_from: 60.0,
            yield_to: 85.0,
            max_boost: 2.0,
        },
    }
}

/// `n` regions of equal capacity (1000 requests/s) and service time (10 ms) over 4 hours.
fn scenario(n: usize) -> Scenario {
    Scenario {
        start_ms: 0,
        end_ms: 240 * MINUTE,
        regions: (0..n)
            .map(|i| RegionModel {
                name: format!("r{i}"),
                capacity_rps: 1000.0,
                service_ms: 10.0,
                metrics: [
                    Transform::Linear {
                        offset: 5.0,
                        scale: 95.0,
                    },
                    Transform::Linear {
                        offset: 40.0,
                        scale: 25.0,
                    },
                    Transform::Queue { scale: 10.0 },
                    Transform::Latency { scale: 10.0 },
                ],
            })
            .collect(),
        spikes: Vec::new(),
        outage: None,
        requests_per_event: 1.0,
        max_utilization: 0.98,
    }
}

/// One event every `every` ms from `from` to `to`, key `i % keys`, home `i % homes`, all
/// chosen by `chosen(i)`.
fn events(from: i64, to: i64, every: i64, keys: i64, homes: usize, chosen: impl Fn(usize) -> usize) -> Vec<Routed> {
    (0..)
        .map(|i| from + i * every)
        .take_while(|t| *t < to)
        .enumerate()
        .map(|(i, t)| Routed {
            time: t,
            shard_key: Value::Int(i as i64 % keys),
            shard: (i as i64 % keys) as u64,
            priority: 5,
            complexity: 2,
            home: i % homes,
            chosen: chosen(i),
        })
        .collect()
}

#[test]
fn everything_in_one_region_is_an_imbalance_of_n() {
    for n in [2, 3, 5] {
        let s = scenario(n);
        let e = events(0, s.end_ms, 1000, 50, n, |_| 0);
        let sim = simulate(Policy::Sluice, &s, &e, &[], &config(15 * MINUTE));
        let ratios = imbalance(&sim, n);
        assert_eq!(ratios.len(), 16);
        assert!(ratios.iter().all(|r| (r - n as f64).abs() < 1e-9), "{ratios:?}");
        // Hashing spreads homes evenly: every window is balanced.
        let hashed = simulate(Policy::Hashing, &s, &e, &[], &config(15 * MINUTE));
        assert!(imbalance(&hashed, n).iter().all(|r| (r - 1.0).abs() < 0.01));
    }
}

#[test]
fn one_class_at_half_load_is_the_truths_m_m_1_latency() {
    // 500 events/s × 1 request into 1000 requests/s: ρ = ½. Time in system s / (1 − ρ) = 20 ms,
    // the truth's own `latency_ms = service_ms / (1 − u)`.
    let mut s = scenario(1);
    s.requests_per_event = 500.0;
    let e = events(0, s.end_ms, 1000, 10, 1, |_| 0);
    let sim = simulate(Policy::Sluice, &s, &e, &[], &config(15 * MINUTE));
    assert!(sim.cells.iter().all(|c| (c.utilization - 0.5).abs() < 1e-9));
    assert!(
        sim.latency_ms.iter().all(|l| (l - 20.0).abs() < 1e-9),
        "{:?}",
        &sim.latency_ms[..3]
    );
}

#[test]
fn priorities_wait_in_cobham_order_and_complexity_scales_service() {
    let mut s = scenario(1);
    s.requests_per_event = 400.0;
    let mut e = events(0, 15 * MINUTE, 1000, 10, 1, |_| 0);
    for (i, ev) in e.iter_mut().enumerate() {
        ev.priority = if i.is_multiple_of(2) { 1 } else { 10 };
        ev.complexity = if i % 4 < 2 { 1 } else { 3 };
    }
    let sim = simulate(Policy::Sluice, &s, &e, &[], &config(15 * MINUTE));
    // Mean complexity 2: x = ½ or 3/2. ρ = 0.2 per class (0.4 total); E[x²] = 5/4.
    // W0 = Σ λ E[S²] / 2 = Σ ρ E[x²]/E[x] · s = 0.4 × 1.25 × 10 = 5 ms.
    let w0 = 5.0;
    let (w1, w10) = (w0 / 0.8, w0 / (0.8 * 0.6));
    let want = |i: usize| {
        let x = if i % 4 < 2 { 0.5 } else { 1.5 };
        (if i.is_multiple_of(2) { w1 } else { w10 }) + x * 10.0
    };
    for (i, l) in sim.latency_ms.iter().enumerate() {
        assert!((l - want(i)).abs() < 1e-9, "event {i}: {l} vs {}", want(i));
    }
}

#[test]
fn hashing_moves_no_keys_and_undoes_migrations() {
    let s = scenario(3);
    // The router chose home except for one key that alternates; shard 4 migrated 0 → 2.
    let mut e = events(0, 60 * MINUTE, 1000, 12, 3, |i| {
        if i % 12 == 7 && i % 24 == 7 {
            0
        } else {
            i % 3
        }
    });
    for ev in e.iter_mut() {
        ev.home = ev.shard as usize % 3;
        if ev.shard != 7 {
            ev.chosen = ev.home;
        }
    }
    let moves = [Moved {
        time: 30 * MINUTE,
        shard: 4,
        from: 1,
        to: 2,
    }];
    for ev in e.iter_mut().filter(|ev| ev.shard == 4 && ev.time >= 30 * MINUTE) {
        ev.home = 2;
        ev.chosen = 2;
    }
    let hashed = simulate(Policy::Hashing, &s, &e, &moves, &config(15 * MINUTE));
    assert_eq!(hashed.keys_moved, 0);
    assert!(e.iter().zip(&hashed.region).all(|(ev, r)| *r == ev.shard as usize % 3));
    let sluice = simulate(Policy::Sluice, &s, &e, &moves, &config(15 * MINUTE));
    // Key 7 (home 1) goes to 0 and 1 in turn: a change at each of its events after the first;
    // key 4 changes once, when it migrates.
    let sevens = e.iter().filter(|ev| ev.shard == 7).count();
    assert_eq!(sluice.keys_moved, (sevens - 1) + 1);
}

#[test]
fn least_loaded_balances_and_moves_keys_the_pseudocode_averages_indices() {
    let s = scenario(3);
    let e = events(0, 60 * MINUTE, 1000, 5, 3, |_| 0);
    let work = work(&e);
    let least = assign(Policy::LeastLoaded, &s, &e, &[], &work, &config(15 * MINUTE));
    // Round robin: each event to the region with the least work so far.
    assert!(least.iter().enumerate().all(|(i, r)| *r == i % 3), "{:?}", &least[..6]);
    let sim = simulate(Policy::LeastLoaded, &s, &e, &[], &config(15 * MINUTE));
    // Balanced in the 4 windows with events; the others have no load (NaN).
    let ratios = imbalance(&sim, 3);
    assert!(ratios[..4].iter().all(|r| (r - 1.0).abs() < 0.01), "{ratios:?}");
    assert!(ratios[4..].iter().all(|r| r.is_nan()));
    // 5 keys over 3 regions in turn: every event after a key's first moves.
    assert_eq!(sim.keys_moved, e.len() - 5);
    // Pseudocode: best in turn 0, 1, 2 with home i % 3: round(0.7 best + 0.3 home).
    let pseudo = assign(Policy::Pseudocode, &s, &e, &[], &work, &config(15 * MINUTE));
    assert_eq!(pseudo[0], 0);
    // Best 0 and home 2 give region 1, which neither rule chose.
    let mut odd = e[..1].to_vec();
    odd[0].home = 2;
    assert_eq!(
        assign(Policy::Pseudocode, &s, &odd, &[], &[1.0], &config(15 * MINUTE)),
        vec![1]
    );
}

#[test]
fn an_outage_builds_a_backlog_that_carries_over_and_least_loaded_avoids_it() {
    let mut s = scenario(2);
    // 300 requests/s per region (ρ = 0.3); region 0 serves 1% from 60 to 90 minutes.
    s.requests_per_event = 600.0;
    s.outage = Some(Outage {
        region: 0,
        start_ms: 60 * MINUTE,
        end_ms: 90 * MINUTE,
        residual: 0.01,
    });
    let e = events(0, s.end_ms, 1000, 40, 2, |i| i % 2);
    let hashed = simulate(Policy::Hashing, &s, &e, &[], &config(15 * MINUTE));
    let backlog = |sim: &Simulation, w: usize| sim.cells[w * 2].backlog_s;
    // Windows 4 and 5 (the outage): 270,000 requests arrive, 9,000 are served, per window.
    assert!(
        (backlog(&hashed, 4) - 261_000.0 / 10.0).abs() < 1e-6,
        "{}",
        backlog(&hashed, 4)
    );
    assert!((backlog(&hashed, 5) - 522_000.0 / 10.0).abs() < 1e-6);
    // After it, 700 requests/s of spare capacity drain 522,000 in 745.7 s: within window 6.
    assert!(backlog(&hashed, 6) == 0.0);
    let latency = |sim: &Simulation, w: i64| {
        e.iter()
            .zip(&sim.latency_ms)
            .zip(&sim.region)
            .filter(|((ev, _), r)| ev.time / (15 * MINUTE) == w && **r == 0)
            .map(|((_, l), _)| *l)
            .fold(0.0, f64::max)
    };
    // Window 5's mean backlog, 391,500 requests at its middle, is served at 10 requests/s for
    // the 450 s left of the outage (4,500), then at 1000/s (387 s): 837 s, plus Cobham's wait
    // at the capped utilization (490 ms) and the service time (10 ms).
    assert!(
        (latency(&hashed, 5) - 837_500.0).abs() < 1e-6,
        "{}",
        latency(&hashed, 5)
    );
    assert!(latency(&hashed, 6) > 100_000.0, "the backlog carries over");
    assert!(latency(&hashed, 7) < 100.0, "and is gone");
    // Least-loaded measures region 0's utilization against its reduced capacity: it sends it
    // about 1% of the events (as much as 1% of capacity takes), and nobody queues for long.
    let least = simulate(Policy::LeastLoaded, &s, &e, &[], &config(15 * MINUTE));
    let during = e.iter().filter(|ev| s.in_outage(ev.time)).count();
    let into = e
        .iter()
        .zip(&least.region)
        .filter(|(ev, r)| s.in_outage(ev.time) && **r == 0)
        .count();
    assert!(into * 50 < during, "{into} of {during} events sent into the outage");
    assert!(least.latency_ms.iter().all(|l| *l < 1000.0));
    // So does sluice's score when its metrics come from the simulated utilization: the home
    // region's cpu nears 100%, affinity yields, and its latency term collapses.
    let closed = simulate(Policy::SluiceClosedLoop, &s, &e, &[], &config(15 * MINUTE));
    let into = e
        .iter()
        .zip(&closed.region)
        .filter(|(ev, r)| s.in_outage(ev.time) && **r == 0)
        .count();
    assert!(into * 20 < during, "{into} of {during} events sent into the outage");
    // Outside the outage, the score keeps shards home: keys move only around it.
    assert!(
        closed.keys_moved * 10 < least.keys_moved,
        "{} vs {}",
        closed.keys_moved,
        least.keys_moved
    );
}

#[test]
fn quantiles_interpolate_between_order_statistics() {
    let mut v = vec![4.0, 1.0, 3.0, 2.0];
    assert_eq!(quantile(&mut v, 0.5), 2.5);
    assert_eq!(quantile(&mut v, 0.0), 1.0);
    assert_eq!(quantile(&mut v, 1.0), 4.0);
    assert!((quantile(&mut v, 0.95) - 3.85).abs() < 1e-12);
    assert!(quantile(&mut [], 0.5).is_nan());
}

fn decision_row(e: &Routed, names: &[&str]) -> Vec<Value> {
    let f = |k: &str, v: Value| (Sym::new(k), v);
    vec![
        Value::Time(e.time),
        Value::str("call"),
        Value::object(vec![
            f("event_id", Value::Int(e.time)),
            f("shard_key", e.shard_key.clone()),
            f("shard_id", Value::Int(e.shard as i64)),
            f("priority", Value::Int(e.priority)),
            f("complexity", Value::Int(e.complexity)),
            f("home", Value::str(names[e.home])),
            f("chosen", Value::str(names[e.chosen])),
        ]),
    ]
}

fn router_plan() -> RouterPlan {
    let plan = plan_str(
        r#"
[pipeline]
name = "r"
[sources.events]
path = "events.ndjson"
time_field = "ts"
type_field = "type"
[sources.load]
path = "load.ndjson"
time_field = "ts"
[sources.regions]
path = "regions.ndjson"
time_field = "ts"
[metadata.events]
shard_key = { value = "user" }
[[routers]]
name = "decisions"
events = "events"
load = "load"
regions = "regions"
"#,
        std::path::Path::new("r.toml"),
        std::path::Path::new("."),
        &[],
    )
    .unwrap();
    let router = plan.routers().next().unwrap().clone();
    router
}

#[test]
fn the_evaluation_reports_goals_policies_latency_and_windows() {
    let mut truth = Truth::draw(3, 2, 0, 4 * 60 * MINUTE);
    truth.spikes.clear();
    let names: Vec<String> = truth.regions.iter().map(|r| r.name.clone()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    // Everything stays home on the shard's region, as hashing would.
    let mut e = events(0, truth.end_ms, 5000, 30, 2, |i| i % 2);
    truth.counts.events = e.len();
    let nominal = super::nominal_homes(&router_plan(), &scenario_of(&truth, e.len()).unwrap());
    for ev in &mut e {
        (ev.home, ev.chosen) = (nominal[ev.shard as usize], nominal[ev.shard as usize]);
    }
    let rows: Vec<Vec<Value>> = e.iter().map(|ev| decision_row(ev, &names)).collect();
    let mut outputs = BTreeMap::new();
    outputs.insert("decisions".to_string(), rows);
    let evaluator = RoutingEvaluator {
        plan: router_plan(),
        truth: TruthSource::Loaded {
            path: PathBuf::from("t.truth.json"),
            truth: Box::new(truth.clone()),
        },
        options: RoutingOptions::default(),
    };
    let tables = evaluator.evaluate(&outputs, None, None);
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "decisions_goals",
            "decisions_policies",
            "decisions_latency",
            "decisions_windows"
        ]
    );
    for t in &tables {
        assert!(t.rows.iter().all(|r| r.len() == t.columns.len()), "{}", t.name);
    }
    assert_eq!(tables[0].rows.len(), 4);
    assert_eq!(tables[1].rows.len(), POLICIES.len());
    assert_eq!(tables[2].rows.len(), POLICIES.len() * 4 * PERIODS.len());
    assert_eq!(tables[3].rows.len(), POLICIES.len() * 16 * 2);
    // Sluice chose the hashing homes: same keys moved (0) and the same latencies.
    let policy = |name: &str| {
        tables[1]
            .rows
            .iter()
            .find(|r| r[0] == Value::str(name))
            .unwrap()
            .clone()
    };
    assert_eq!(policy("sluice")[2], Value::Int(0));
    assert_eq!(policy("hashing")[2], Value::Int(0));
    assert_eq!(policy("sluice")[10], policy("hashing")[10]);
    assert!(matches!(policy("least_loaded")[2], Value::Int(n) if n > 0));
    // The requests per event come from the truth's arrivals.
    let total = crate::generate::regions::events::total_requests(&truth);
    assert!(tables[0].summary[0].contains(&format!("{:.0} requests per event", total / e.len() as f64)));
    // Over a window with no event, nothing is scored.
    let none = evaluator.evaluate(&outputs, Some(truth.end_ms), None);
    assert!(none[2].rows.iter().all(|r| r[3] == Value::Int(0)));
}

#[test]
fn without_a_truth_the_evaluation_is_skipped_with_the_reason() {
    let missing = std::env::temp_dir().join("sluice-no-such-file.truth.json");
    let source = TruthSource::resolve(None, Some(missing.clone()), "events").unwrap();
    let evaluator = RoutingEvaluator {
        plan: router_plan(),
        truth: source,
        options: RoutingOptions::default(),
    };
    let tables = evaluator.evaluate(&BTreeMap::new(), None, None);
    assert_eq!(tables.len(), 1);
    assert!(tables[0].rows.is_empty());
    assert!(
        tables[0].summary[0].contains("skipped") && tables[0].summary[0].contains(&missing.display().to_string()),
        "{:?}",
        tables[0].summary
    );
    // An explicit truth must exist and parse; the error names the file and the line.
    assert!(matches!(
        TruthSource::resolve(Some(&missing), None, "events"),
        Err(RunError::Io { .. })
    ));
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), "{\n  \"scenario\": 3\n}").unwrap();
    let err = TruthSource::resolve(Some(bad.path()), None, "events")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not a scenario truth file") && err.contains("line 2"),
        "{err}"
    );
}
