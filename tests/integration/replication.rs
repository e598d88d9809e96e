//! `[routers.replication]`: replication records and tasks against a from-scratch oracle, over a
//! router whose shards migrate, with random completions (failed, retried, late, for unknown
//! events and from unknown regions). Identical with 1, 2 and 4 workers.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use proptest::prelude::*;
use sluice::value::{format_time, Value};

use crate::util::{payload_field as field, plan_text, run_collect};

pub(crate) const RETAIN_MS: i64 = 300_000;
pub(crate) const END_MS: i64 = 1_200_000;

/// Events `(time, user)`, completions `(time, event index or unknown, region, completed)`.
#[derive(Clone, Debug)]
pub(crate) struct Scenario {
    pub events: Vec<(i64, u8)>,
    pub acks: Vec<(i64, Option<usize>, usize, bool)>,
}

const REGIONS: [&str; 4] = ["a", "b", "c", "zz"];

pub(crate) fn scenario() -> impl Strategy<Value = Scenario> {
    let events = prop::collection::vec((0i64..END_MS, 0u8..24), 1..40);
    let acks = prop::collection::vec(
        (
            0i64..END_MS + 2 * RETAIN_MS,
            prop::option::weighted(0.95, 0usize..40),
            prop_oneof![8 => 0usize..3, 1 => Just(3usize)],
            prop::bool::weighted(0.8),
        ),
        0..120,
    );
    (events, acks).prop_map(|(events, acks)| Scenario { events, acks })
}

/// Three regions; `a` is far hotter than the others for the whole run, so shards move off it.
pub(crate) fn write(dir: &std::path::Path, s: &Scenario) {
    let mut f = std::fs::File::create(dir.join("regions.ndjson")).unwrap();
    for r in ["a", "b", "c"] {
        writeln!(f, r#"{{"ts":0,"region":"{r}","capacity":100.0}}"#).unwrap();
    }
    let mut f = std::fs::File::create(dir.join("load.ndjson")).unwrap();
    for t in (0..END_MS).step_by(10_000) {
        for (r, cpu) in [("a", 95.0), ("b", 20.0), ("c", 25.0)] {
            writeln!(f, r#"{{"ts":{t},"region":"{r}","cpu":{cpu:?}}}"#).unwrap();
        }
    }
    // Background traffic on every user so the shard rates are not empty, then the scenario's.
    let mut events: Vec<(i64, u8)> = (0..END_MS)
        .step_by(5_000)
        .map(|t| (t, (t / 5_000 % 24) as u8))
        .collect();
    events.extend(&s.events);
    // In time order, each with its index as its id.
    let mut rows: Vec<(i64, usize, u8)> = events.iter().enumerate().map(|(i, (t, u))| (*t, i, *u)).collect();
    rows.sort();
    let mut f = std::fs::File::create(dir.join("events.ndjson")).unwrap();
    for (t, i, u) in rows {
        writeln!(f, r#"{{"ts":{t},"type":"call","id":{i},"user":"u{u}"}}"#).unwrap();
    }
    let first = events.len() - s.events.len();
    let mut acks = s.acks.clone();
    acks.sort_by_key(|a| a.0);
    let mut f = std::fs::File::create(dir.join("completions.ndjson")).unwrap();
    // Rows the stage cannot use.
    writeln!(f, r#"{{"ts":0,"where":"a","status":"completed"}}"#).unwrap();
    writeln!(f, r#"{{"ts":0,"event":1,"where":"a","status":"lost"}}"#).unwrap();
    for (t, e, r, ok) in acks {
        let id = e.map_or(1_000_000, |e| (first + e % s.events.len()) as i64);
        let status = if ok { "completed" } else { "failed" };
        writeln!(
            f,
            r#"{{"ts":{t},"event":{id},"where":"{}","status":"{status}"}}"#,
            REGIONS[r]
        )
        .unwrap();
    }
}

/// The spec, with `extra` lines in `[routers.replication]`.
pub(crate) fn spec(dir: &std::path::Path, extra: &str) -> String {
    format!(
        r#"
[pipeline]
name = "replication"
tick = "1ms"
[sources.events]
path = "{dir}/events.ndjson"
time_field = "ts"
type_field = "type"
[sources.load]
path = "{dir}/load.ndjson"
time_field = "ts"
[sources.regions]
path = "{dir}/regions.ndjson"
time_field = "ts"
[sources.completions]
path = "{dir}/completions.ndjson"
time_field = "ts"
[metadata.events]
priority = {{ default = "5" }}
complexity = {{ default = "2" }}
shard_key = {{ value = "user" }}
shards = 32
[[routers]]
name = "decisions"
events = "events"
load = "load"
regions = "regions"
id = "id"
placement = "ring"
region_field = "region"
weights = {{ latency = 0.0, headroom = 0.0, affinity = 1.0 }}
health = {{ yield_from = 100.0, yield_to = 100.0, max_boost = 1.0 }}
[routers.migration]
interval = "1m"
sustain = "2m"
max_moves = 2
cooldown = "1h"
[routers.replication]
completions = "completions"
id = "event"
region_field = "where"
factor = 2
retain = "{retain}ms"
{extra}
"#,
        dir = dir.display(),
        retain = RETAIN_MS
    )
}

/// The run's outputs, consolidated: rows with their net count, by output.
pub(crate) type Net = BTreeMap<String, BTreeMap<Vec<Value>, i64>>;

pub(crate) fn net(updates: &[(Vec<Value>, u64, isize)], until: Option<u64>) -> BTreeMap<Vec<Value>, i64> {
    let mut out: BTreeMap<Vec<Value>, i64> = BTreeMap::new();
    for (row, t, d) in updates {
        if until.is_none_or(|u| *t <= u) {
            *out.entry(row.clone()).or_default() += *d as i64;
        }
    }
    out.retain(|_, n| *n != 0);
    out
}

pub(crate) fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::List(items) => items
            .iter()
            .map(|i| match i {
                Value::Str(s) => s.to_string(),
                other => panic!("{other:?}"),
            })
            .collect(),
        other => panic!("{other:?}"),
    }
}

/// The placement as of `before`: rows at times before it.
pub(crate) fn targets_before(placement: &[(i64, i64, Vec<String>, isize)], shard: i64, before: i64) -> Vec<String> {
    let mut current: BTreeMap<Vec<String>, isize> = BTreeMap::new();
    for (t, s, targets, d) in placement {
        if *s == shard && *t < before {
            *current.entry(targets.clone()).or_default() += d;
        }
    }
    current.retain(|_, d| *d > 0);
    assert!(current.len() <= 1, "{current:?}");
    current.into_keys().next().unwrap_or_default()
}

/// What a run routed and placed, and the completions as written.
pub(crate) struct Observed {
    /// Placement rows over time: (time, shard, targets, diff).
    pub placement: Vec<(i64, i64, Vec<String>, isize)>,
    /// Events: id → (time, shard).
    pub events: BTreeMap<i64, (i64, i64)>,
    /// Completions: (time, id, region, ok).
    pub acks: Vec<(i64, i64, String, bool)>,
}

pub(crate) fn observed(c: &BTreeMap<String, sluice::run::Updates>, dir: &std::path::Path) -> Observed {
    // Placement rows over time: (time, shard, targets, diff).
    let placement: Vec<(i64, i64, Vec<String>, isize)> = c["decisions_placement"]
        .iter()
        .map(|(row, t, d)| {
            let Value::Int(shard) = row[0] else { panic!("{row:?}") };
            (*t as i64, shard, strings(&row[2]), *d)
        })
        .collect();
    // Events: id → (time, shard).
    let mut events: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for (row, _, _) in &c["decisions"] {
        let p = row.last().unwrap();
        let (Value::Int(id), Value::Int(shard)) = (field(p, "event_id"), field(p, "shard_id")) else {
            panic!("{p:?}")
        };
        let Value::Time(t) = row[0] else { panic!("{row:?}") };
        events.insert(id, (t, shard));
    }
    // Completions as written: (time, id, region, ok).
    let acks: Vec<(i64, i64, String, bool)> = std::fs::read_to_string(dir.join("completions.ndjson"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Some((
                v["ts"].as_i64()?,
                v["event"].as_i64()?,
                v["where"].as_str()?.to_string(),
                match v["status"].as_str()? {
                    "completed" => true,
                    "failed" => false,
                    _ => return None,
                },
            ))
        })
        .collect();
    Observed {
        placement,
        events,
        acks,
    }
}

/// Home changes of `shard` before `before`: `TIME from → to`.
pub(crate) fn history(placement: &[(i64, i64, Vec<String>, isize)], shard: i64, before: i64) -> Vec<Value> {
    let mut history = Vec::new();
    let mut times: BTreeSet<i64> = placement.iter().filter(|p| p.1 == shard).map(|p| p.0).collect();
    times.retain(|t| *t < before);
    let mut home: Option<String> = None;
    for t in times {
        let now = targets_before(placement, shard, t + 1).first().cloned();
        if let (Some(from), Some(to)) = (&home, &now) {
            if from != to {
                history.push(Value::str(&format!("{} {from} → {to}", format_time(t))));
            }
        }
        home = now.or(home);
    }
    history
}

/// The replication stage's dead letters: count by reason.
pub(crate) fn dead_letters(c: &BTreeMap<String, sluice::run::Updates>) -> BTreeMap<String, usize> {
    c["dead_letters"].iter().fold(BTreeMap::new(), |mut m, (row, _, d)| {
        if let (Value::Str(stage), Value::Str(reason)) = (&row[0], &row[1]) {
            if stage.starts_with("replication:") {
                *m.entry(reason.to_string()).or_default() += *d as usize;
            }
        }
        m
    })
}

fn check(s: &Scenario, dir: &std::path::Path) -> Net {
    write(dir, s);
    let plan = plan_text(&spec(dir, ""), dir);
    let mut first: Option<Net> = None;
    for workers in [1, 2, 4] {
        let summary = run_collect(&plan, workers);
        let c = &summary.collected;
        let outputs: Net = [
            "decisions_placement",
            "decisions_replication",
            "decisions_replication_tasks",
        ]
        .iter()
        .map(|n| (n.to_string(), net(&c[*n], None)))
        .collect();
        let Observed {
            placement,
            events,
            acks,
        } = observed(c, dir);
        assert_eq!(events.len(), 240 + s.events.len(), "every event is routed");
        let usable = |id: i64, at: i64, region: &str| -> bool {
            region != "zz" && events.get(&id).is_some_and(|(t, _)| *t <= at && at < t + RETAIN_MS + 1)
        };
        // Each region's status for an event from its acknowledgements up to `until`.
        let status = |id: i64, until: i64| -> BTreeMap<String, bool> {
            let mut out: BTreeMap<String, bool> = BTreeMap::new();
            for (at, e, region, ok) in &acks {
                if *e == id && *at <= until && usable(id, *at, region) {
                    let s = out.entry(region.clone()).or_insert(*ok);
                    *s = *s || *ok;
                }
            }
            out
        };
        // Every record's last row, from scratch: it closes at time + retain + 1, before that
        // tick's placement and completions.
        let mut expected: BTreeMap<Vec<Value>, i64> = BTreeMap::new();
        for (id, (time, shard)) in &events {
            let closes = time + RETAIN_MS + 1;
            let targets = targets_before(&placement, *shard, closes);
            let st = status(*id, closes - 1);
            let with = |ok: bool| -> Value {
                Value::List(
                    st.iter()
                        .filter(|(_, s)| **s == ok)
                        .map(|(r, _)| Value::str(r))
                        .collect(),
                )
            };
            let pending: Vec<Value> = targets
                .iter()
                .filter(|r| !st.contains_key(*r))
                .map(|r| Value::str(r))
                .collect();
            let done = !targets.is_empty() && targets.iter().all(|r| st.get(r) == Some(&true));
            let history = history(&placement, *shard, closes);
            let row = vec![
                Value::Int(*id),
                Value::Time(*time),
                Value::Int(*shard),
                targets.first().map_or(Value::Null, |h| Value::str(h)),
                Value::List(targets.iter().map(|r| Value::str(r)).collect()),
                with(true),
                with(false),
                Value::List(pending.into()),
                Value::str(if done { "complete" } else { "expired" }),
                Value::List(history.into()),
            ];
            expected.insert(row, 1);
        }
        assert_eq!(
            outputs["decisions_replication"], expected,
            "{workers} workers: last rows"
        );
        assert!(outputs["decisions_replication_tasks"].is_empty(), "every record closed");

        // Tasks half way: for every open record, each target without a completed copy.
        let mid = END_MS / 2;
        let tasks: BTreeSet<(i64, String, String)> = net(&c["decisions_replication_tasks"], Some(mid as u64))
            .keys()
            .map(|row| {
                let (Value::Int(id), Value::Str(region), Value::Str(reason)) = (&row[0], &row[2], &row[3]) else {
                    panic!("{row:?}")
                };
                (*id, region.to_string(), reason.to_string())
            })
            .collect();
        let mut want = BTreeSet::new();
        for (id, (time, shard)) in &events {
            if *time > mid || time + RETAIN_MS < mid {
                continue;
            }
            let first = targets_before(&placement, *shard, time + 1);
            let st = status(*id, mid);
            for region in targets_before(&placement, *shard, mid + 1) {
                let reason = match st.get(&region) {
                    Some(true) => continue,
                    Some(false) => "retry",
                    None if first.contains(&region) => "copy",
                    None => "migration",
                };
                want.insert((*id, region, reason.to_string()));
            }
        }
        assert!(!want.is_empty(), "records are open half way");
        assert_eq!(tasks, want, "{workers} workers: tasks at {mid}");

        // Dead letters: unknown regions, unknown events, rows without an id or a status.
        let dead = dead_letters(c);
        let unknown_region = acks.iter().filter(|a| a.2 == "zz").count();
        let unknown_event = acks.iter().filter(|a| a.2 != "zz" && !usable(a.1, a.0, &a.2)).count();
        assert_eq!(
            dead,
            expected_dead_letters(unknown_region, unknown_event),
            "{workers} workers: dead letters"
        );
        same_for_every_worker_count(&mut first, outputs, workers);
    }
    first.unwrap()
}

/// The dead letters every scenario expects: its unknown regions and events, and the two rows
/// without an id or a status that [`write`] adds.
pub(crate) fn expected_dead_letters(unknown_region: usize, unknown_event: usize) -> BTreeMap<String, usize> {
    [
        ("unknown_region", unknown_region),
        ("unknown_event", unknown_event),
        ("invalid_completion", 2),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .map(|(reason, n)| (reason.to_string(), n))
    .collect()
}

/// Keeps the first worker count's outputs and checks every later one against them.
pub(crate) fn same_for_every_worker_count(first: &mut Option<Net>, outputs: Net, workers: usize) {
    match first {
        None => *first = Some(outputs),
        Some(f) => assert_eq!(f, &outputs, "{workers} workers"),
    }
}

/// One event per user at 100 s; every region acknowledges half of them at once.
pub(crate) fn half_acknowledged() -> Scenario {
    let events: Vec<(i64, u8)> = (0..24).map(|u| (100_000, u)).collect();
    let acks: Vec<(i64, Option<usize>, usize, bool)> = (0..24)
        .flat_map(|e| (0..3).map(move |r| (100_001, Some(e), r, (e + r) % 2 == 0)))
        .collect();
    Scenario { events, acks }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn records_and_tasks_match_an_oracle_over_migrations(s in scenario()) {
        let dir = tempfile::tempdir().unwrap();
        check(&s, dir.path());
    }
}

/// A shard moves off the hot region: the open events of its shard gain the new home as a
/// `migration` task, unless the new home already completed them; regions that completed
/// before the move are not asked again.
#[test]
fn a_migration_asks_only_the_regions_that_lack_the_event() {
    let dir = tempfile::tempdir().unwrap();
    let s = half_acknowledged();
    let outputs = check(&s, dir.path());
    let placement = &outputs["decisions_placement"];
    assert!(placement.len() == 32, "one current row per shard: {}", placement.len());
    let moved = outputs["decisions_replication"]
        .keys()
        .filter(|row| !strings(&row[9]).is_empty())
        .count();
    assert!(
        moved > 0,
        "some of the events' shards moved while their records were open"
    );
}
