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

/// `keep = "last"` from scratch: the on-time events in event-time order; per key, runs of
/// occurrences less than the TTL apart. Returns, for the events up to tick `until`, the events
/// held (each run's latest, as `(key, time)`), and the duplicates `(key, time, run start)`.
/// Held events `(key, time)` and duplicates `(key, time, run start)`.
type LastRuns = (BTreeSet<(i64, i64)>, BTreeSet<(i64, i64, i64)>);

fn naive_last(events: &[(i64, i64, bool)], until: i64) -> LastRuns {
    let mut max = i64::MIN;
    let mut on_time: Vec<(i64, i64, bool)> = Vec::new();
    for e in events {
        let late = max != i64::MIN && e.0 < max - LATENESS;
        max = max.max(e.0);
        if !late && e.0 - e.0 % 100 <= until {
            on_time.push(*e);
        }
    }
    on_time.sort();
    let mut held: HashMap<i64, (i64, i64)> = HashMap::new();
    let mut kept = BTreeSet::new();
    let mut dups = BTreeSet::new();
    for (t, k, deduped) in on_time {
        if !deduped {
            kept.insert((-1 - k, t));
            continue;
        }
        match held.get(&k).copied() {
            Some((start, last)) if t < last + TTL => {
                dups.insert((k, last, start));
                kept.remove(&(k, last));
                held.insert(k, (start, t));
            }
            _ => {
                held.insert(k, (t, t));
            }
        }
        kept.insert((k, t));
    }
    (kept, dups)
}

fn keep_last_spec(path: &std::path::Path) -> String {
    format!(
        "[pipeline]\nname = \"d\"\ntick = \"100ms\"\n[sources.s]\npath = \"{}\"\ntime_field = \"ts\"\ntype_field = \"type\"\nallowed_lateness = \"2s\"\n\
         [dedup.s.attempt]\nkey = [\"id\"]\nttl = \"5s\"\nkeep = \"last\"\n\
         [enrich.s]\noutput = \"latest\"\n\
         [[aggregates]]\nname = \"all\"\nsource = \"s\"\nwindow = {{ tumbling = \"1d\" }}\nemit = \"final\"\nmeasures.n = \"count()\"\n",
        path.display()
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The held events at every time, the duplicates and the count downstream, against the
    /// from-scratch runs, with 1, 2 and 4 workers giving identical updates.
    #[test]
    fn dedup_keep_last_matches_oracle_at_every_time(events in events()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.ndjson");
        let mut f = std::fs::File::create(&path).unwrap();
        for (t, k, deduped) in &events {
            let kind = if *deduped { "attempt" } else { "other" };
            // Events of other types get negative ids, so they never collide with keys.
            let id = if *deduped { *k } else { -1 - k };
            writeln!(f, "{}", serde_json::json!({"ts": t, "type": kind, "id": id})).unwrap();
        }
        drop(f);
        let plan = plan_text(&keep_last_spec(&path), dir.path());
        prop_assert!(plan.output("latest").unwrap().changelog);
        let all = plan.aggregates().find(|a| a.name == "all").unwrap();
        prop_assert!(!all.monotonic, "downstream of `keep = \"last\"`, inputs retract");
        let (kept_end, dups_end) = naive_last(&events, i64::MAX / 4);
        let mut first: Option<Vec<(Vec<Value>, u64, isize)>> = None;
        for workers in [1, 2, 4] {
            let summary = run_collect(&plan, workers);
            let mut latest = summary.collected["latest"].clone();
            latest.sort();
            let times: BTreeSet<u64> = latest.iter().map(|u| u.1).collect();
            for t in times.iter().copied().chain([u64::MAX / 4]) {
                let acc = crate::util::accumulate(&latest, t);
                prop_assert!(acc.values().all(|d| *d == 1), "{:?}", acc);
                let got: BTreeSet<(i64, i64)> = acc
                    .keys()
                    .map(|r| {
                        let Value::Time(time) = r[0] else { panic!("{r:?}") };
                        let Value::Int(id) = crate::util::payload_field(&r[2], "id") else { panic!("{r:?}") };
                        (id, time)
                    })
                    .collect();
                prop_assert_eq!(got, naive_last(&events, t as i64).0, "at {} with {} workers", t, workers);
            }
            let dups: BTreeSet<(i64, i64, i64)> = summary.collected["duplicates"]
                .iter()
                .map(|(r, _, _)| {
                    let key: serde_json::Value = serde_json::from_str(&r[1].to_string()).unwrap();
                    let (Value::Time(t), Value::Time(t0)) = (&r[2], &r[3]) else { panic!("{r:?}") };
                    (key[0].as_i64().unwrap(), *t, *t0)
                })
                .collect();
            prop_assert_eq!(&dups, &dups_end, "{} workers", workers);
            let counted: i64 = crate::util::accumulate(&summary.collected["all"], u64::MAX / 4)
                .iter()
                .map(|(r, d)| match r[2] { Value::Int(n) => n * *d as i64, _ => 0 })
                .sum();
            prop_assert_eq!(counted as usize, kept_end.len(), "the held events reach the aggregate");
            match &first {
                None => first = Some(latest),
                Some(f) => prop_assert_eq!(f, &latest, "{} workers differ from 1", workers),
            }
        }
    }
}

#[test]
fn keep_last_edges_and_refusals() {
    // The run goes on while occurrences are less than the TTL apart: 0, 4999 and 9998 are one
    // run (9998 held); exactly at the TTL, 14998 starts another, which 19000 continues.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.ndjson");
    let lines: Vec<String> = [(0, "a"), (4_999, "a"), (9_998, "a"), (14_998, "a"), (19_000, "a")]
        .iter()
        .map(|(t, k)| serde_json::json!({"ts": t, "type": "attempt", "id": k}).to_string())
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    let spec = keep_last_spec(&path).replace("tick = \"100ms\"", "tick = \"1ms\"");
    let summary = run_collect(&plan_text(&spec, dir.path()), 2);
    let end = crate::util::accumulate(&summary.collected["latest"], u64::MAX / 4);
    let held: Vec<Value> = end.keys().map(|r| r[0].clone()).collect();
    assert_eq!(held, [Value::Time(9_998), Value::Time(19_000)]);
    let mut dups: Vec<(Value, Value)> = summary.collected["duplicates"]
        .iter()
        .map(|(r, _, _)| (r[2].clone(), r[3].clone()))
        .collect();
    dups.sort();
    assert_eq!(
        dups,
        [
            (Value::Time(0), Value::Time(0)),
            (Value::Time(4_999), Value::Time(0)),
            (Value::Time(14_998), Value::Time(14_998))
        ]
    );

    let refused = |extra: &str| -> String {
        let text = format!("{}{extra}", keep_last_spec(&path));
        sluice::plan::plan_str(&text, &dir.path().join("k.toml"), dir.path(), &[])
            .unwrap_err()
            .to_string()
    };
    let e = refused("[sources.ctx]\npath = \"c.ndjson\"\ntime_field = \"ts\"\n[[enrich.s.join]]\ncontext = \"ctx\"\non = { id = \"id\" }\n");
    assert!(
        e.contains("`dedup.s.attempt.keep`") && e.contains("as-of join `ctx`") && e.contains("continuous"),
        "{e}"
    );
    let e = refused("[[forecasts]]\nname = \"f\"\nsource = \"s\"\nvalues = [\"id\"]\nstep = \"1m\"\nhorizon = 2\n");
    assert!(e.contains("revises what it emitted"), "{e}");
    let text = keep_last_spec(&path).replace("keep = \"last\"", "keep = \"latest\"");
    let e = sluice::plan::plan_str(&text, &dir.path().join("k.toml"), dir.path(), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown `keep` value `latest`") && e.contains("`first`"),
        "{e}"
    );
    // A continuous join is fine: it reads retractions.
    let text = format!(
        "{}[sources.ctx]\npath = \"c.ndjson\"\ntime_field = \"ts\"\n[[enrich.s.join]]\ncontext = \"ctx\"\non = {{ id = \"id\" }}\nmode = \"continuous\"\n",
        keep_last_spec(&path)
    );
    sluice::plan::plan_str(&text, &dir.path().join("k.toml"), dir.path(), &[]).unwrap();
}
