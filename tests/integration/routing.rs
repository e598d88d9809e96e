//! Routing decisions (`[[routers]]`). Oracle: for each event, the regional state recomputed from
//! scratch as of its time (the latest `regions` row per region, the latest sample per region and
//! metric, both at or before the event), the placement of its shard over the available regions
//! and the scores of `model::routing` — compared with the `decisions` output, `decisions_counts`
//! and the dead letters of runs with 1, 2 and 4 workers.

use std::collections::BTreeMap;
use std::io::Write;

use proptest::prelude::*;
use sluice::model::placement::{Algorithm, PlacementSpec, Placer, Region};
use sluice::model::routing::{decide, Health, RegionLoad, Weights};
use sluice::value::{stable_hash, Value};

use crate::util::{payload_field as field, plan_text, run_collect};

const REGIONS: [&str; 4] = ["ap", "eu", "sa", "us"];
const SHARDS: u64 = 64;

#[derive(Clone, Debug)]
struct Scenario {
    /// (time, region, capacity)
    regions: Vec<(i64, usize, f64)>,
    load: Vec<Sample>,
    /// (time, user, priority, complexity)
    events: Vec<(i64, u8, i64, i64)>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let regions = prop::collection::vec(
        (0i64..20_000, 0..REGIONS.len(), prop_oneof![Just(0.0), 100.0f64..2000.0]),
        1..8,
    );
    let metric = prop::option::weighted(0.95, 0.0f64..120.0);
    let load = prop::collection::vec(
        (
            0i64..60_000,
            0..REGIONS.len(),
            [metric.clone(), metric.clone(), metric.clone(), metric],
        ),
        0..40,
    );
    let events = prop::collection::vec((0i64..60_000, 0u8..30, 1i64..=10, 1i64..=5), 1..60);
    (regions, load, events).prop_map(|(mut regions, load, events)| {
        // Every region is listed at time 0 first, so most events have somewhere to go.
        regions.extend((0..REGIONS.len()).map(|r| (0, r, 500.0 + 100.0 * r as f64)));
        Scenario { regions, load, events }
    })
}

fn write(dir: &std::path::Path, s: &Scenario) {
    let mut f = std::fs::File::create(dir.join("regions.ndjson")).unwrap();
    for (t, r, c) in &s.regions {
        writeln!(f, r#"{{"ts":{t},"region":"{}","capacity":{c:?}}}"#, REGIONS[*r]).unwrap();
    }
    let mut f = std::fs::File::create(dir.join("load.ndjson")).unwrap();
    for (t, r, m) in &s.load {
        let v = |x: &Option<f64>| x.map_or("\"n/a\"".to_string(), |x| format!("{x:?}"));
        writeln!(
            f,
            r#"{{"ts":{t},"region":"{}","cpu":{},"memory":{},"queue_length":{},"latency_ms":{}}}"#,
            REGIONS[*r],
            v(&m[0]),
            v(&m[1]),
            v(&m[2]),
            v(&m[3])
        )
        .unwrap();
    }
    let mut f = std::fs::File::create(dir.join("events.ndjson")).unwrap();
    for (i, (t, u, p, c)) in s.events.iter().enumerate() {
        writeln!(
            f,
            r#"{{"ts":{t},"type":"call","id":{i},"user":"u{u}","priority":{p},"complexity":{c}}}"#
        )
        .unwrap();
    }
}

fn spec(dir: &std::path::Path, algorithm: &str) -> String {
    format!(
        r#"
[pipeline]
name = "routing"
[sources.events]
path = "{dir}/events.ndjson"
time_field = "ts"
type_field = "type"
allowed_lateness = "1h"
[sources.load]
path = "{dir}/load.ndjson"
time_field = "ts"
allowed_lateness = "1h"
[sources.regions]
path = "{dir}/regions.ndjson"
time_field = "ts"
allowed_lateness = "1h"
[metadata.events]
shard_key = {{ value = "user" }}
shards = {SHARDS}
[[routers]]
name = "decisions"
events = "events"
load = "load"
regions = "regions"
id = "id"
placement = "{algorithm}"
counts_window = "10s"
weights = {{ latency = 1.0, headroom = 2.0, affinity = 1.5 }}
health = {{ latency_goal = "50ms", queue_half = 20.0, yield_from = 70.0, yield_to = 90.0, max_boost = 1.0 }}
"#,
        dir = dir.display()
    )
}

/// A load sample: (time, region, cpu, memory, queue, latency; `None` is garbage text).
type Sample = (i64, usize, [Option<f64>; 4]);

/// The order in which the router applies two load samples of one time, the last winning: its
/// events' total order, which compares their payloads' values by field name (`cpu`,
/// `latency_ms`, `memory`, `queue_length`, then `region`), garbage text after every number. Not
/// the file's order, which workers do not keep.
fn sample_order(a: &Sample, b: &Sample) -> std::cmp::Ordering {
    let by_name = |s: &Sample| [s.2[0], s.2[3], s.2[1], s.2[2]];
    let values = by_name(a).into_iter().zip(by_name(b)).map(|pair| match pair {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (x, y) => x.is_none().cmp(&y.is_none()),
    });
    let first_difference = values.fold(std::cmp::Ordering::Equal, std::cmp::Ordering::then);
    first_difference.then_with(|| REGIONS[a.1].cmp(REGIONS[b.1]))
}

/// (id, home, chosen, reason) per routed event, and the ids of events with no region.
type Routed = (BTreeMap<i64, (Value, String, String)>, Vec<i64>);

fn oracle(s: &Scenario, algorithm: Algorithm) -> Routed {
    let weights = Weights {
        latency: 1.0,
        headroom: 2.0,
        affinity: 1.5,
    };
    let health = Health {
        latency_goal_ms: 50.0,
        queue_half: 20.0,
        yield_from: 70.0,
        yield_to: 90.0,
        max_boost: 1.0,
    };
    let mut routed = BTreeMap::new();
    let mut none = Vec::new();
    for (id, (t, user, priority, complexity)) in s.events.iter().enumerate() {
        // Regions as of `t`: the latest row per region (in file order among equal times).
        let mut capacity: BTreeMap<usize, f64> = BTreeMap::new();
        let mut rows: Vec<&(i64, usize, f64)> = s.regions.iter().filter(|(rt, _, _)| rt <= t).collect();
        rows.sort_by(|a, b| (a.0, a.1, a.2).partial_cmp(&(b.0, b.1, b.2)).unwrap());
        // Rows at one time apply in the order of their values (a deterministic order); the
        // test's regions rows at one time and region differ only in capacity.
        for (_, r, c) in rows {
            capacity.insert(*r, *c);
        }
        let available: Vec<usize> = capacity.iter().filter(|(_, c)| **c > 0.0).map(|(r, _)| *r).collect();
        if available.is_empty() {
            none.push(id as i64);
            continue;
        }
        // Samples as of `t`, of regions known when they were taken.
        let mut observed: BTreeMap<(usize, usize), f64> = BTreeMap::new();
        let mut samples: Vec<&Sample> = s.load.iter().filter(|(lt, _, _)| lt <= t).collect();
        samples.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| sample_order(a, b)));
        for (lt, r, m) in samples {
            let known = s.regions.iter().any(|(rt, rr, _)| rt <= lt && rr == r);
            if !known {
                continue;
            }
            for (k, v) in m.iter().enumerate() {
                if let Some(v) = v {
                    observed.insert((*r, k), *v);
                }
            }
        }
        let mean = available.iter().map(|r| capacity[r]).sum::<f64>() / available.len() as f64;
        let placement_regions = available
            .iter()
            .map(|r| {
                Region::new(
                    REGIONS[*r],
                    if algorithm == Algorithm::Jump {
                        1.0
                    } else {
                        capacity[r] / mean
                    },
                )
            })
            .collect();
        let placer = Placer::new(&PlacementSpec::new(algorithm), placement_regions).unwrap();
        let keys: Vec<u64> = (0..SHARDS).collect();
        let assignment = placer.assign(&keys);
        let shard = stable_hash(&Value::str(&format!("u{user}"))) % SHARDS;
        let home = assignment.region_of(shard).unwrap();
        let loads: Vec<RegionLoad> = available
            .iter()
            .map(|r| RegionLoad {
                cpu: observed.get(&(*r, 0)).copied(),
                memory: observed.get(&(*r, 1)).copied(),
                queue_length: observed.get(&(*r, 2)).copied(),
                latency_ms: observed.get(&(*r, 3)).copied(),
                available: true,
            })
            .collect();
        let d = decide(&loads, Some(home), *priority, *complexity, &weights, &health).unwrap();
        routed.insert(
            id as i64,
            (
                Value::str(REGIONS[available[home]]),
                REGIONS[available[d.chosen.region]].to_string(),
                d.reason.as_str().to_string(),
            ),
        );
    }
    (routed, none)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]
    #[test]
    fn decisions_match_the_oracle_with_any_worker_count(mut s in scenario(), jump in any::<bool>()) {
        // One row per (time, region) among regions rows, so their order at one time is moot.
        s.regions.sort_by_key(|a| (a.0, a.1));
        s.regions.dedup_by(|a, b| (a.0, a.1) == (b.0, b.1));
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &s);
        let (algorithm, name) = if jump { (Algorithm::Jump, "jump") } else { (Algorithm::Ring, "ring") };
        let plan = plan_text(&spec(dir.path(), name), dir.path());
        let (want, none) = oracle(&s, algorithm);
        let garbage = s.load.iter().filter(|(_, _, m)| m.iter().any(Option::is_none)).count();
        for workers in [1, 2, 4] {
            let summary = run_collect(&plan, workers);
            let mut got = BTreeMap::new();
            for (row, _, diff) in &summary.collected["decisions"] {
                prop_assert_eq!(*diff, 1);
                let p = row.last().unwrap();
                let Value::Int(id) = field(p, "event_id") else { panic!("{p:?}") };
                let text = |v: Value| match v { Value::Str(s) => s.to_string(), other => panic!("{other:?}") };
                got.insert(id, (field(p, "home"), text(field(p, "chosen")), text(field(p, "reason"))));
            }
            prop_assert_eq!(&got, &want, "{} workers", workers);
            let letters = |reason: &str| summary.collected["dead_letters"]
                .iter()
                .filter(|(row, _, _)| row[1] == Value::str(reason))
                .map(|(_, _, d)| *d as usize)
                .sum::<usize>();
            prop_assert_eq!(letters("no_region"), none.len(), "{} workers", workers);
            prop_assert_eq!(letters("non_numeric"), garbage, "{} workers", workers);
            // Counts per chosen region and 10 s window add up to the decisions.
            let mut counts: BTreeMap<(String, i64), i64> = BTreeMap::new();
            for (row, _, d) in &summary.collected["decisions_counts"] {
                let (Value::Str(r), Value::Time(start), Value::Int(n)) = (&row[0], &row[1], &row[3]) else { panic!("{row:?}") };
                *counts.entry((r.to_string(), *start)).or_default() += n * *d as i64;
            }
            let mut expected: BTreeMap<(String, i64), i64> = BTreeMap::new();
            for (id, (_, chosen, _)) in &want {
                let t = s.events[*id as usize].0;
                *expected.entry((chosen.clone(), t - t % 10_000)).or_default() += 1;
            }
            prop_assert_eq!(counts, expected, "{} workers", workers);
        }
    }
}

#[test]
fn a_router_needs_metadata_and_known_names() {
    let dir = tempfile::tempdir().unwrap();
    let s = Scenario {
        regions: vec![(0, 0, 100.0)],
        load: vec![],
        events: vec![(1, 1, 1, 1)],
    };
    write(dir.path(), &s);
    let base = spec(dir.path(), "ring");
    for (from, to, message) in [
        (
            "[metadata.events]\nshard_key = { value = \"user\" }\nshards = 64\n",
            "",
            "the events of source `events` have no routing metadata",
        ),
        (r#"load = "load""#, r#"load = "lod""#, "no source or output named `lod`"),
        (
            r#"placement = "ring""#,
            r#"placement = "rung""#,
            "unknown placement algorithm `rung`",
        ),
        (
            "yield_to = 90.0",
            "yield_to = 60.0",
            "need 0 ≤ yield_from ≤ yield_to ≤ 100",
        ),
        (
            "latency = 1.0,",
            "latency = -1.0,",
            "weights must be finite and not negative",
        ),
        (
            "max_boost = 1.0 }",
            "max_boost = 1.0 }\n[routers.migration]\nload = \"forecast\"",
            "migration on forecast load needs the router's `forecasts`",
        ),
        (
            "max_boost = 1.0 }",
            "max_boost = 1.0 }\n[routers.migration]\nmetric = \"disk\"",
            "unknown metric `disk`",
        ),
        (
            "max_boost = 1.0 }",
            "max_boost = 1.0 }\n[routers.migration]\ninterval = \"2m\"\nwindow = \"3m\"",
            "the window must be a whole number of intervals",
        ),
        (
            "max_boost = 1.0 }",
            "max_boost = 1.0 }\n[routers.migration]\nload = \"cpu\"",
            "one of `forecast`, `observed`, `routed`",
        ),
    ] {
        let text = base.replace(from, to);
        assert_ne!(text, base, "{from}");
        let err = sluice::plan::plan_str(&text, std::path::Path::new("r.toml"), dir.path(), &[])
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains(message), "{to}: {err}");
    }
}

/// A region far hotter than the other for 20 minutes: shards move off it after `sustain`, at
/// most `max_moves` per interval, and each shard's events go to its old home before its move
/// and to the new one from the move on. Identical with 1, 2 and 4 workers.
#[test]
fn shards_migrate_off_a_hot_region_and_routing_follows() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(dir.path().join("regions.ndjson")).unwrap();
    writeln!(f, r#"{{"ts":0,"region":"a","capacity":100.0}}"#).unwrap();
    writeln!(f, r#"{{"ts":0,"region":"b","capacity":100.0}}"#).unwrap();
    let mut f = std::fs::File::create(dir.path().join("load.ndjson")).unwrap();
    for t in (0..1_200_000).step_by(10_000) {
        writeln!(f, r#"{{"ts":{t},"region":"a","cpu":90.0}}"#).unwrap();
        writeln!(f, r#"{{"ts":{t},"region":"b","cpu":20.0}}"#).unwrap();
    }
    let mut f = std::fs::File::create(dir.path().join("events.ndjson")).unwrap();
    for (i, t) in (0..1_200_000).step_by(500).enumerate() {
        writeln!(
            f,
            r#"{{"ts":{t},"type":"call","id":{i},"user":"u{}","priority":5,"complexity":3}}"#,
            i % 40
        )
        .unwrap();
    }
    let text = spec(dir.path(), "ring")
        .replace(
            "weights = { latency = 1.0, headroom = 2.0, affinity = 1.5 }",
            "weights = { latency = 0.0, headroom = 0.0, affinity = 1.0 }",
        )
        .replace(
            "yield_from = 70.0, yield_to = 90.0",
            "yield_from = 100.0, yield_to = 100.0",
        )
        + "[routers.migration]\ninterval = \"1m\"\nsustain = \"2m\"\nmax_moves = 2\ncooldown = \"1h\"\nimbalance = 0.2\nhysteresis = 0.1\n";
    let plan = plan_text(&text, dir.path());
    let mut first: Option<(Vec<String>, Vec<String>)> = None;
    for workers in [1, 2, 4] {
        let summary = run_collect(&plan, workers);
        let mut migrations: Vec<(i64, i64, String, String)> = summary.collected["decisions_migrations"]
            .iter()
            .map(|(row, _, d)| {
                assert_eq!(*d, 1);
                let (Value::Time(t), Value::Int(shard), Value::Str(from), Value::Str(to)) =
                    (&row[0], &row[1], &row[2], &row[3])
                else {
                    panic!("{row:?}")
                };
                (*t, *shard, from.to_string(), to.to_string())
            })
            .collect();
        migrations.sort();
        assert!(!migrations.is_empty(), "a region at 90 against 20 sheds shards");
        // Not before the region was hot for `sustain`, at most 2 per interval, off `a` only.
        let mut per_time: BTreeMap<i64, usize> = BTreeMap::new();
        for (t, _, from, to) in &migrations {
            assert!(*t >= 120_000, "{t}");
            assert_eq!((from.as_str(), to.as_str()), ("a", "b"));
            *per_time.entry(*t).or_default() += 1;
        }
        assert!(per_time.values().all(|n| *n <= 2), "{per_time:?}");
        // Routing follows the placement as of each event's time.
        let moved: BTreeMap<i64, i64> = migrations.iter().map(|(t, s, _, _)| (*s, *t)).collect();
        let mut homes_before: BTreeMap<i64, String> = BTreeMap::new();
        let mut decisions = Vec::new();
        for (row, _, _) in &summary.collected["decisions"] {
            let p = row.last().unwrap();
            let (Value::Int(shard), Value::Str(home), Value::Str(chosen)) =
                (field(p, "shard_id"), field(p, "home"), field(p, "chosen"))
            else {
                panic!("{p:?}")
            };
            let time = row
                .iter()
                .find_map(|v| match v {
                    Value::Time(t) => Some(*t),
                    _ => None,
                })
                .unwrap();
            assert_eq!(home, chosen, "affinity alone decides");
            match moved.get(&shard) {
                Some(at) if time >= *at => assert_eq!(&*home, "b", "shard {shard} at {time}, moved at {at}"),
                Some(_) => {
                    homes_before.insert(shard, home.to_string());
                }
                None => {}
            }
            decisions.push(format!("{time} {shard} {home}"));
        }
        assert!(homes_before.values().all(|h| h == "a"), "{homes_before:?}");
        decisions.sort();
        let migrations: Vec<String> = migrations.iter().map(|m| format!("{m:?}")).collect();
        match &first {
            None => first = Some((migrations, decisions)),
            Some(f) => assert_eq!(f, &(migrations, decisions), "{workers} workers"),
        }
    }
}
