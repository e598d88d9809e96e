//! Deduplication oracle: random keyed events with out-of-order arrival and TTL edges, with 1, 2
//! and 4 workers, against a from-scratch scan in event-time order.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;

use proptest::prelude::*;
use sluice::value::Value;

use crate::util::{plan_text, run_collect};

const TTL: i64 = 5_000;
const LATENESS: i64 = 2_000;

/// (time, key, type) in arrival order, with distinct times.
fn events() -> impl Strategy<Value = Vec<(i64, i64, bool)>> {
    prop::collection::btree_set(0i64..60_000, 1..150).prop_flat_map(|times| {
        let n = times.len();
        (
            Just(times.into_iter().collect::<Vec<_>>()),
            prop::collection::vec((0i64..6, prop::bool::weighted(0.8)), n),
        )
            .prop_map(|(times, keys)| {
                let mut evs: Vec<(i64, i64, bool)> = times.into_iter().zip(keys).map(|(t, (k, d))| (t, k, d)).collect();
                // Arrival: sorted by 3-second buckets, so some events arrive late.
                evs.sort_by_key(|(t, k, _)| (t / 3_000, -k));
                evs
            })
    })
}

fn naive(events: &[(i64, i64, bool)]) -> (usize, BTreeSet<(i64, i64, i64)>) {
    let mut max = i64::MIN;
    let mut on_time: Vec<(i64, i64, bool)> = Vec::new();
    for e in events {
        let late = max != i64::MIN && e.0 < max - LATENESS;
        max = max.max(e.0);
        if !late {
            on_time.push(*e);
        }
    }
    on_time.sort();
    let mut last: HashMap<i64, i64> = HashMap::new();
    let mut unique = 0;
    let mut dups = BTreeSet::new();
    for (t, k, deduped) in on_time {
        if !deduped {
            unique += 1;
            continue;
        }
        match last.get(&k) {
            Some(&t0) if t < t0 + TTL => {
                dups.insert((k, t, t0));
            }
            _ => {
                last.insert(k, t);
                unique += 1;
            }
        }
    }
    (unique, dups)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn dedup_matches_oracle(events in events()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.ndjson");
        let mut f = std::fs::File::create(&path).unwrap();
        for (t, k, deduped) in &events {
            let kind = if *deduped { "attempt" } else { "other" };
            writeln!(f, "{}", serde_json::json!({"ts": t, "type": kind, "id": k})).unwrap();
        }
        drop(f);
        let spec = format!(
            "[pipeline]\nname = \"d\"\ntick = \"100ms\"\n[sources.s]\npath = \"{}\"\ntime_field = \"ts\"\ntype_field = \"type\"\nallowed_lateness = \"2s\"\n\
             [dedup.s.attempt]\nkey = [\"id\"]\nttl = \"5s\"\n\
             [[aggregates]]\nname = \"all\"\nsource = \"s\"\nwindow = {{ tumbling = \"1d\" }}\nemit = \"final\"\nmeasures.n = \"count()\"\n",
            path.display()
        );
        let plan = plan_text(&spec, dir.path());
        let (unique, dups) = naive(&events);
        for workers in [1, 2, 4] {
            let summary = run_collect(&plan, workers);
            let got: BTreeSet<(i64, i64, i64)> = summary.collected["duplicates"]
                .iter()
                .map(|(r, _, _)| {
                    let key: serde_json::Value = serde_json::from_str(&r[1].to_string()).unwrap();
                    let (Value::Time(t), Value::Time(t0)) = (&r[2], &r[3]) else { panic!("{r:?}") };
                    (key[0].as_i64().unwrap(), *t, *t0)
                })
                .collect();
            prop_assert_eq!(&got, &dups, "{} workers", workers);
            let counted: i64 = summary.collected["all"].iter().map(|(r, _, _)| match r[2] { Value::Int(n) => n, _ => 0 }).sum();
            prop_assert_eq!(counted as usize, unique, "unique events reach the aggregate");
        }
    }
}

/// Runs `(time, id)` attempts through a dedup-only spec (TTL 5 s, 1 ms ticks) and returns the
/// duplicates as `(event_time, first_time)`, sorted.
fn duplicates_of(lines: &[(i64, &str)], workers: usize) -> Vec<(i64, i64)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.ndjson");
    let text: Vec<String> = lines
        .iter()
        .map(|(t, k)| serde_json::json!({"ts": t, "type": "attempt", "id": k}).to_string())
        .collect();
    std::fs::write(&path, text.join("\n")).unwrap();
    let spec = format!(
        "[pipeline]\nname = \"d\"\ntick = \"1ms\"\n[sources.s]\npath = \"{}\"\ntime_field = \"ts\"\ntype_field = \"type\"\n[dedup.s.attempt]\nkey = [\"id\"]\nttl = \"5s\"\n",
        path.display()
    );
    let summary = run_collect(&plan_text(&spec, dir.path()), workers);
    let mut got: Vec<(i64, i64)> = summary.collected["duplicates"]
        .iter()
        .map(|(r, _, _)| match (&r[2], &r[3]) {
            (Value::Time(t), Value::Time(t0)) => (*t, *t0),
            other => panic!("{other:?}"),
        })
        .collect();
    got.sort();
    got
}

#[test]
fn ttl_edges() {
    // Exactly at the TTL a key passes again; just before it, it is a duplicate.
    let lines = [(0, "a"), (4_999, "a"), (5_000, "a"), (9_999, "a"), (10_001, "a")];
    assert_eq!(duplicates_of(&lines, 1), vec![(4_999, 0), (9_999, 5_000)]);
}

#[test]
fn dedup_without_aggregates_reads_its_keys() {
    // A source whose only stage is dedup must still decode the key fields (projection).
    let lines = [(0, "a"), (1, "b"), (2, "a"), (3, "c"), (4, "b")];
    assert_eq!(duplicates_of(&lines, 2), vec![(2, 0), (4, 1)]);
}
