//! `sluice eval` on the shipped routing spec: the routing evaluator replays the sample's
//! decisions through simulated regional queues with the capacities, spikes and outage of its
//! truth file. Checked: every table is there and sane (counts add up, percentiles are ordered,
//! the queue physics hold: nobody waits less than nothing, the outage hurts whoever sends work
//! into it), the figures do not depend on the worker count or on where the truth comes from,
//! and without a truth the evaluation is skipped with its reason. The goals themselves are
//! reported, not asserted (README, "Evaluating routing").

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value as Json;

use crate::util::{parquet_lines, repo, sluice};

const POLICIES: [&str; 6] = [
    "sluice",
    "hashing",
    "least_loaded",
    "pseudocode",
    "random",
    "sluice_closed_loop",
];
const EVENTS: i64 = 20_000;

/// The JSON rows of each routing table, in print order.
fn eval_json(args: &[&str], dir: &Path) -> (BTreeMap<String, Vec<Json>>, String) {
    let spec = repo().join("dataflows/regional_routing.toml");
    let mut all = vec!["eval", spec.to_str().unwrap(), "--format", "json", "--quiet"];
    all.extend_from_slice(args);
    let out = sluice(&all, dir);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let mut tables: BTreeMap<String, Vec<Json>> = BTreeMap::new();
    for line in text.lines() {
        let doc: Json = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let table = doc["table"].as_str().unwrap().to_string();
        if table.starts_with("routing_decisions_") {
            tables.entry(table).or_default().push(doc["row"].clone());
        }
    }
    (tables, text)
}

fn by_policy<'a>(rows: &'a [Json], policy: &str) -> impl Iterator<Item = &'a Json> + 'a {
    let policy = policy.to_string();
    rows.iter().filter(move |r| r["policy"] == policy.as_str())
}

#[test]
fn eval_replays_the_sample_decisions_through_regional_queues() {
    let dir = tempfile::tempdir().unwrap();
    let (tables, _) = eval_json(&["--out", "eval"], dir.path());
    let names: Vec<&str> = tables.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "routing_decisions_goals",
            "routing_decisions_latency",
            "routing_decisions_policies",
            "routing_decisions_windows"
        ]
    );
    for name in &names {
        assert!(
            !parquet_lines(&dir.path().join("eval").join(name)).is_empty(),
            "{name} was not written"
        );
    }
    // Four goals, each with its figures and a verdict.
    let goals = &tables["routing_decisions_goals"];
    let ids: Vec<&str> = goals.iter().map(|g| g["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["latency_spikes", "latency_outage", "keys_moved", "imbalance"]);
    assert!(goals.iter().all(|g| g["met"].is_boolean() && g["sluice"].is_number()));

    // Policies: every event replayed by each; hashing never moves a key; sluice's shard moves
    // are the rows of the migrations output the run wrote.
    let policies = &tables["routing_decisions_policies"];
    let migrations = parquet_lines(&dir.path().join("eval/routing_decisions_migrations")).len() as i64;
    assert!(migrations > 0, "the shipped spec migrates shards");
    for p in POLICIES {
        let row = by_policy(policies, p).next().unwrap_or_else(|| panic!("no {p}"));
        assert_eq!(row["events"], EVENTS, "{p}");
        let mean = row["imbalance_mean"].as_f64().unwrap();
        let p95 = row["imbalance_p95"].as_f64().unwrap();
        assert!(
            (1.0..=3.0).contains(&mean) && mean <= row["imbalance_max"].as_f64().unwrap(),
            "{p}: {row}"
        );
        assert!(p95 >= 1.0, "{p}: {row}");
    }
    let policy = |p: &str| by_policy(policies, p).next().unwrap().clone();
    assert_eq!(policy("hashing")["keys_moved"], 0);
    assert_eq!(policy("sluice")["shard_moves"], migrations);
    // Least-loaded balances actively, so it is better balanced than hashing; and it moves keys
    // at nearly every event.
    assert!(policy("least_loaded")["imbalance_mean"].as_f64() < policy("hashing")["imbalance_mean"].as_f64());
    assert!(policy("least_loaded")["keys_moved"].as_i64().unwrap() > EVENTS / 2);
    // The outage: hashing keeps sending a third of the work into a region serving 1% of its
    // capacity, and those requests wait for hours; least-loaded measures utilization against
    // what is left and does not.
    let outage = |p: &str| policy(p)["p95_1_3_outage_ms"].as_f64().unwrap();
    assert!(outage("hashing") > 3_600_000.0, "{}", outage("hashing"));
    assert!(outage("least_loaded") < outage("hashing") / 100.0);

    // Latency: per policy, 3 classes and all, 5 periods; counts add up, p50 <= p95, and every
    // latency is at least a few ms (the service time).
    let latency = &tables["routing_decisions_latency"];
    assert_eq!(latency.len(), POLICIES.len() * 4 * 5);
    for p in POLICIES {
        let rows: Vec<&Json> = by_policy(latency, p).collect();
        let n = |class: &str, period: &str| {
            rows.iter()
                .find(|r| r["priorities"] == class && r["period"] == period)
                .unwrap()["events"]
                .as_i64()
                .unwrap()
        };
        assert_eq!(n("all", "all"), EVENTS);
        assert_eq!(n("1-3", "all") + n("4-7", "all") + n("8-10", "all"), EVENTS);
        assert_eq!(n("all", "spikes_or_outage") + n("all", "normal"), EVENTS);
        for r in rows {
            let (p50, p95) = (r["p50_ms"].as_f64().unwrap(), r["p95_ms"].as_f64().unwrap());
            assert!(1.0 < p50 && p50 <= p95, "{r}");
        }
    }

    // Windows: 7 days of 15 minutes, 3 regions, each policy; events add up; utilization and
    // backlog are never negative, and a backlog only where the work exceeded the capacity at
    // some point (the outage, for hashing).
    let windows = &tables["routing_decisions_windows"];
    assert_eq!(windows.len(), POLICIES.len() * 672 * 3);
    for p in POLICIES {
        let rows: Vec<&Json> = by_policy(windows, p).collect();
        assert_eq!(
            rows.iter().map(|r| r["events"].as_i64().unwrap()).sum::<i64>(),
            EVENTS,
            "{p}"
        );
        assert!(rows.iter().all(|r| r["utilization"].as_f64().unwrap() >= 0.0));
        assert!(rows.iter().all(|r| r["backlog_s"].as_f64().unwrap() >= 0.0));
    }
    let backlogged: Vec<&Json> = by_policy(windows, "hashing")
        .filter(|r| r["backlog_s"].as_f64().unwrap() > 0.0)
        .collect();
    assert!(!backlogged.is_empty());
    assert!(
        backlogged.iter().all(|r| r["region"] == "us-east"),
        "only the region in outage"
    );
}

#[test]
fn the_evaluation_needs_a_truth_and_says_when_it_has_none() {
    let dir = tempfile::tempdir().unwrap();
    // The same events elsewhere, without their truth file next to them.
    let events = dir.path().join("events.parquet");
    std::fs::copy(repo().join("data/regions_sample/events.parquet"), &events).unwrap();
    let input = format!("events={}", events.display());
    let spec = repo().join("dataflows/regional_routing.toml");
    let out = sluice(
        &["eval", spec.to_str().unwrap(), "--input", &input, "--quiet"],
        dir.path(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let line = format!(
        "routing evaluation of `routing_decisions` skipped: no scenario truth at {}.truth.json (pass --truth FILE)",
        events.display()
    );
    assert!(text.lines().any(|l| l.trim() == line), "{text}");
    // The forecast is still scored.
    assert!(text.contains("load_forecast_metrics"));

    // With --truth, and two workers: the same figures as next to the sample.
    let truth = repo().join("data/regions_sample/events.parquet.truth.json");
    let (with_truth, _) = eval_json(
        &["--input", &input, "--truth", truth.to_str().unwrap(), "--workers", "2"],
        dir.path(),
    );
    let (reference, _) = eval_json(&[], dir.path());
    assert_eq!(with_truth, reference);

    // A truth that is not there is an error naming it, before anything runs.
    let missing = dir.path().join("nope.truth.json");
    let out = sluice(
        &[
            "eval",
            spec.to_str().unwrap(),
            "--truth",
            missing.to_str().unwrap(),
            "--quiet",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.truth.json"));
}

/// `--from` and `--until` restrict every figure: the events counted, the keys moved and the
/// shard migrations as well as the latencies and windows (they counted the whole log). A range
/// after the log scores nothing, and a reversed range is refused.
#[test]
fn from_and_until_restrict_events_moves_and_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, _) = eval_json(&[], dir.path());
    let windows = &whole["routing_decisions_windows"];
    let mut starts: Vec<&str> = windows.iter().map(|w| w["window_start"].as_str().unwrap()).collect();
    starts.sort();
    starts.dedup();
    let middle = starts[starts.len() / 2];
    let (half, _) = eval_json(&["--from", middle], dir.path());
    let row = |tables: &BTreeMap<String, Vec<Json>>, p: &str| {
        by_policy(&tables["routing_decisions_policies"], p)
            .next()
            .unwrap()
            .clone()
    };
    let count = |r: &Json, k: &str| r[k].as_i64().unwrap_or_else(|| panic!("{k}: {r}"));
    for p in POLICIES {
        let (all, part) = (row(&whole, p), row(&half, p));
        let scored = by_policy(&half["routing_decisions_latency"], p)
            .find(|r| r["priorities"] == "all" && r["period"] == "all")
            .unwrap()["events"]
            .as_i64()
            .unwrap();
        assert_eq!(count(&part, "events"), scored, "{p}: the events the latencies score");
        assert!(0 < scored && scored < EVENTS, "{p}: {scored}");
        assert!(count(&part, "keys_moved") <= count(&all, "keys_moved"), "{p}");
    }
    assert!(count(&row(&half, "least_loaded"), "keys_moved") < count(&row(&whole, "least_loaded"), "keys_moved"));
    assert!(count(&row(&half, "sluice"), "shard_moves") <= count(&row(&whole, "sluice"), "shard_moves"));
    let (after, _) = eval_json(&["--from", "2100-01-01T00:00:00Z"], dir.path());
    for p in ["sluice", "least_loaded"] {
        let r = row(&after, p);
        assert_eq!((count(&r, "events"), count(&r, "keys_moved")), (0, 0), "{p}: {r}");
    }
    assert_eq!(count(&row(&after, "sluice"), "shard_moves"), 0);
    let spec = repo().join("dataflows/regional_routing.toml");
    let out = sluice(
        &[
            "eval",
            spec.to_str().unwrap(),
            "--from",
            "2024-01-02T00:00:00Z",
            "--until",
            "2024-01-01T00:00:00Z",
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--from must be before --until"));
}
