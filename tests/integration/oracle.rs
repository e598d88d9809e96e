//! Oracle tests: random events with random out-of-order arrival, run through the dataflow with
//! 1, 2 and 4 workers, compared with a from-scratch computation at every time.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use proptest::prelude::*;
use sluice::value::Value;

use crate::util::{plan_text, run_collect};

#[derive(Clone, Debug)]
struct Ev {
    time: i64,
    kind: &'static str,
    g: Option<i64>,
    v: Option<Val>,
}

#[derive(Clone, Debug)]
enum Val {
    Int(i64),
    /// Quarters, exact in binary, so float sums are exact in both implementations.
    Quarter(i64),
}

impl Val {
    fn num(&self) -> f64 {
        match self {
            Val::Int(i) => *i as f64,
            Val::Quarter(q) => *q as f64 / 4.0,
        }
    }
    fn value(&self) -> Value {
        match self {
            Val::Int(i) => Value::Int(*i),
            Val::Quarter(q) => Value::float(*q as f64 / 4.0),
        }
    }
}

fn events() -> impl Strategy<Value = Vec<Ev>> {
    let ev = (
        0i64..40_000,
        prop::bool::weighted(0.8),
        prop::option::weighted(0.9, 0i64..4),
        prop::option::weighted(
            0.85,
            prop_oneof![(-20i64..20).prop_map(Val::Int), (-40i64..40).prop_map(Val::Quarter)],
        ),
    );
    prop::collection::vec(ev, 1..120).prop_map(|raw| {
        // Arrival order: mostly increasing time with jitter, so some events are late.
        let mut out: Vec<Ev> = raw
            .into_iter()
            .map(|(t, a, g, v)| Ev {
                time: t,
                kind: if a { "a" } else { "b" },
                g,
                v,
            })
            .collect();
        out.sort_by_key(|e| e.time / 5_000);
        out
    })
}

fn write_ndjson(events: &[Ev], path: &std::path::Path) {
    let mut f = std::fs::File::create(path).unwrap();
    for e in events {
        let mut obj = serde_json::Map::new();
        obj.insert("ts".into(), e.time.into());
        obj.insert("type".into(), e.kind.into());
        if let Some(g) = e.g {
            obj.insert("g".into(), g.into());
        }
        if let Some(v) = &e.v {
            obj.insert("v".into(), v.value().to_json());
        }
        writeln!(f, "{}", serde_json::Value::Object(obj)).unwrap();
    }
}

/// The from-scratch computation: windows of the on-time events with tick ≤ `upto`.
fn naive(events: &[Ev], lateness: i64, size: i64, slide: i64, tick: i64, upto: Option<i64>) -> BTreeSet<Vec<Value>> {
    let mut max = i64::MIN;
    let mut groups: BTreeMap<(Value, i64), Vec<&Ev>> = BTreeMap::new();
    for e in events {
        let late = max != i64::MIN && e.time < max - lateness;
        max = max.max(e.time);
        if late || e.kind != "a" || upto.is_some_and(|u| e.time - e.time.rem_euclid(tick) > u) {
            continue;
        }
        let mut start = e.time.div_euclid(slide) * slide;
        while start > e.time - size {
            groups
                .entry((e.g.map(Value::Int).unwrap_or(Value::Null), start))
                .or_default()
                .push(e);
            start -= slide;
        }
    }
    groups
        .into_iter()
        .map(|((g, start), evs)| {
            let vals: Vec<&Val> = evs.iter().filter_map(|e| e.v.as_ref()).collect();
            let positives = evs
                .iter()
                .filter(|e| e.v.as_ref().is_some_and(|v| v.num() > 0.0))
                .count();
            let any_float = vals.iter().any(|v| matches!(v, Val::Quarter(_)));
            let sum: f64 = vals.iter().map(|v| v.num()).sum();
            let sum = if vals.is_empty() {
                Value::Null
            } else if any_float {
                Value::float(sum)
            } else {
                Value::Int(sum as i64)
            };
            let avg = if vals.is_empty() {
                Value::Null
            } else {
                Value::float(vals.iter().map(|v| v.num()).sum::<f64>() / vals.len() as f64)
            };
            let as_values: BTreeSet<Value> = vals.iter().map(|v| v.value()).collect();
            vec![
                g,
                Value::Time(start),
                Value::Time(start + size),
                Value::Int(evs.len() as i64),
                sum,
                avg,
                as_values.iter().next().cloned().unwrap_or(Value::Null),
                as_values.iter().next_back().cloned().unwrap_or(Value::Null),
                Value::Int(as_values.len() as i64),
                Value::Int(positives as i64),
            ]
        })
        .collect()
}

fn spec(path: &std::path::Path, emit: &str, size: i64, slide: i64) -> String {
    format!(
        r#"
[pipeline]
name = "oracle"
tick = "100ms"
[sources.s]
path = "{}"
format = "ndjson"
time_field = "ts"
type_field = "type"
allowed_lateness = "3s"
[[aggregates]]
name = "w"
source = "s"
where = "type == 'a'"
window = {{ size = "{size}ms", slide = "{slide}ms" }}
group_by = ["g"]
emit = "{emit}"
measures.n = "count()"
measures.s = "sum(v)"
measures.a = "avg(v)"
measures.lo = "min(v)"
measures.hi = "max(v)"
measures.d = "count_distinct(v)"
measures.pos = "count() where v > 0"
"#,
        path.display()
    )
}

fn check(events: Vec<Ev>, emit: &str, size: i64, slide: i64) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.ndjson");
    write_ndjson(&events, &path);
    let insert_only = plan_text(&spec(&path, emit, size, slide), dir.path());
    // The same aggregate with retraction-capable states (value multisets) must agree too.
    let mut with_multisets = insert_only.clone();
    with_multisets.aggregates_mut().for_each(|a| a.monotonic = false);
    let final_rows = naive(&events, 3_000, size, slide, 100, None);
    let mut first: Option<Vec<(Vec<Value>, u64, isize)>> = None;
    for (plan, workers) in [
        (&insert_only, 1),
        (&insert_only, 2),
        (&insert_only, 4),
        (&with_multisets, 1),
        (&with_multisets, 2),
    ] {
        let summary = run_collect(plan, workers);
        let mut updates = summary.collected["w"].clone();
        updates.sort();
        if emit == "final" {
            // Each window once, at its end, equal to the from-scratch result.
            let got: BTreeSet<Vec<Value>> = updates
                .iter()
                .map(|(r, _, d)| {
                    assert_eq!(*d, 1);
                    r.clone()
                })
                .collect();
            prop_assert_eq!(got.len(), updates.len());
            prop_assert_eq!(&got, &final_rows);
            for (row, t, _) in &updates {
                prop_assert_eq!(&Value::Time(*t as i64), &row[2]);
            }
        } else {
            // At every time, the accumulated changelog equals the from-scratch result.
            let times: BTreeSet<u64> = updates.iter().map(|(_, t, _)| *t).collect();
            for t in times.iter().copied().chain([u64::MAX]) {
                let acc = crate::util::accumulate(&updates, t);
                prop_assert!(acc.values().all(|d| *d == 1), "multiplicities {:?}", acc);
                let got: BTreeSet<Vec<Value>> = acc.into_keys().collect();
                let upto = if t == u64::MAX { None } else { Some(t as i64) };
                prop_assert_eq!(got, naive(&events, 3_000, size, slide, 100, upto), "at time {}", t);
            }
        }
        let late = summary.late();
        let mut max = i64::MIN;
        let want_late = events
            .iter()
            .filter(|e| {
                let l = max != i64::MIN && e.time < max - 3_000;
                max = max.max(e.time);
                l
            })
            .count();
        prop_assert_eq!(late as usize, want_late);
        match &first {
            None => first = Some(updates),
            Some(f) => prop_assert_eq!(f, &updates, "{} workers differ from 1", workers),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn tumbling_updates_match_oracle(events in events()) {
        check(events, "updates", 10_000, 10_000)?;
    }

    #[test]
    fn sliding_updates_match_oracle(events in events()) {
        check(events, "updates", 9_000, 3_000)?;
    }

    #[test]
    fn final_windows_match_oracle(events in events(), sliding in any::<bool>()) {
        let (size, slide) = if sliding { (6_000, 2_000) } else { (5_000, 5_000) };
        check(events, "final", size, slide)?;
    }
}
