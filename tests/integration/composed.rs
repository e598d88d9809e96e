//! Stages over outputs: an aggregate reading another aggregate's rows, an enriched output or a
//! route destination. Oracle: the from-scratch aggregate of the upstream's from-scratch rows,
//! each row an event at its window's last millisecond. Results are identical with 1, 2 and 4
//! workers, and a cycle between aggregates is refused, naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use proptest::prelude::*;
use sluice::value::Value;

use crate::util::{accumulate, plan_text, run_collect};

const REGIONS: [&str; 3] = ["eu", "us", "ap"];

/// Events (time, region, value), in time order.
fn events() -> impl Strategy<Value = Vec<(i64, usize, i64)>> {
    prop::collection::vec((0i64..3_600_000, 0..REGIONS.len(), -5i64..50), 1..120).prop_map(|mut e| {
        e.sort();
        e
    })
}

fn write(dir: &std::path::Path, events: &[(i64, usize, i64)]) {
    let mut f = std::fs::File::create(dir.join("events.ndjson")).unwrap();
    for (t, r, v) in events {
        writeln!(f, r#"{{"ts":{t},"type":"load","region":"{}","v":{v}}}"#, REGIONS[*r]).unwrap();
    }
}

/// Inner windows of `inner` ms (emit `inner_emit`), read by outer windows of `outer` ms.
fn spec(dir: &std::path::Path, inner: i64, inner_emit: &str, outer: i64, slide: i64) -> String {
    format!(
        r#"
[pipeline]
name = "composed"
tick = "1s"
[sources.events]
path = "{dir}/events.ndjson"
time_field = "ts"
type_field = "type"
allowed_lateness = "2h"
[[aggregates]]
name = "outer"
source = "inner"
window = {{ size = "{outer}ms", slide = "{slide}ms" }}
group_by = ["region"]
emit = "final"
measures.windows = "count()"
measures.n = "sum(n)"
measures.peak = "max(s)"
measures.low = "min(s)"
measures.last_end = "max(window_end)"
[[aggregates]]
name = "inner"
source = "events"
window = {{ tumbling = "{inner}ms" }}
group_by = ["region"]
emit = "{inner_emit}"
measures.n = "count()"
measures.s = "sum(v)"
"#,
        dir = dir.display()
    )
}

/// From scratch: inner rows per (region, start), then outer rows over them.
fn oracle(events: &[(i64, usize, i64)], inner: i64, outer: i64, slide: i64) -> BTreeSet<Vec<Value>> {
    let mut rows: BTreeMap<(usize, i64), (i64, i64)> = BTreeMap::new();
    for (t, r, v) in events {
        let e = rows.entry((*r, t - t.rem_euclid(inner))).or_default();
        e.0 += 1;
        e.1 += v;
    }
    // (region, outer start) → (windows, n, peak, low, last end)
    type Outer = (i64, i64, i64, i64, i64);
    let mut out: BTreeMap<(usize, i64), Outer> = BTreeMap::new();
    for ((r, start), (n, s)) in rows {
        let time = start + inner - 1;
        let mut o = time - time.rem_euclid(slide);
        while o > time - outer {
            let e = out.entry((r, o)).or_insert((0, 0, i64::MIN, i64::MAX, i64::MIN));
            e.0 += 1;
            e.1 += n;
            e.2 = e.2.max(s);
            e.3 = e.3.min(s);
            e.4 = e.4.max(start + inner);
            o -= slide;
        }
    }
    out.into_iter()
        .map(|((r, start), (w, n, peak, low, last))| {
            vec![
                Value::str(REGIONS[r]),
                Value::Time(start),
                Value::Time(start + outer),
                Value::Int(w),
                Value::Int(n),
                Value::Int(peak),
                Value::Int(low),
                Value::Time(last),
            ]
        })
        .collect()
}

fn check(
    events: Vec<(i64, usize, i64)>,
    inner: i64,
    inner_emit: &str,
    outer: i64,
    slide: i64,
) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &events);
    let plan = plan_text(&spec(dir.path(), inner, inner_emit, outer, slide), dir.path());
    let expected = oracle(&events, inner, outer, slide);
    let mut first = None;
    for workers in [1, 2, 4] {
        let summary = run_collect(&plan, workers);
        let mut updates = summary.collected["outer"].clone();
        updates.sort();
        let end = accumulate(&updates, u64::MAX / 4);
        prop_assert!(end.values().all(|d| *d == 1), "multiplicities: {:?}", end);
        let got: BTreeSet<Vec<Value>> = end.into_keys().collect();
        prop_assert_eq!(&got, &expected, "{} workers", workers);
        prop_assert_eq!(
            summary.dead_letters.values().sum::<i64>(),
            0,
            "dead letters: {:?}",
            summary.dead_letters
        );
        match &first {
            None => first = Some(updates),
            Some(f) => prop_assert_eq!(f, &updates, "{} workers differ from 1", workers),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Final inner rows: the outer aggregate is insert-only, each outer window once.
    #[test]
    fn an_aggregate_of_final_windows_matches_the_oracle(events in events(), sliding in any::<bool>()) {
        let (outer, slide) = if sliding { (1_200_000, 600_000) } else { (900_000, 900_000) };
        check(events, 300_000, "final", outer, slide)?;
    }

    /// Inner rows revised as events arrive (`updates`): the outer aggregate reads a retracting
    /// input and ends with the same rows.
    #[test]
    fn an_aggregate_of_revised_windows_ends_with_the_oracle_rows(events in events()) {
        check(events, 300_000, "updates", 900_000, 900_000)?;
    }
}

#[test]
fn an_aggregate_of_an_aggregate_is_planned_after_it_and_cycles_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[(0, 0, 1)]);
    let plan = plan_text(&spec(dir.path(), 60_000, "final", 600_000, 600_000), dir.path());
    let names: Vec<&str> = plan.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["inner", "outer"], "stages in topological order");
    let outputs: Vec<&str> = plan.outputs().iter().map(|o| o.name.as_str()).collect();
    assert_eq!(outputs, ["outer", "inner", "dead_letters"], "outputs in spec order");
    let outer = plan.aggregates().find(|a| a.name == "outer").unwrap();
    assert!(outer.monotonic, "final rows of an insert-only input are insert-only");
    assert_eq!(
        outer.input_lag_ms, 1,
        "rows are stamped at their end, 1 ms after their time"
    );

    let cyclic =
        spec(dir.path(), 60_000, "final", 600_000, 600_000).replace("source = \"events\"", "source = \"outer\"");
    let err = sluice::plan::plan_str(&cyclic, &dir.path().join("c.toml"), dir.path(), &[]).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("cycle") && text.contains("`outer` reads `inner` reads `outer`"),
        "{text}"
    );

    let unknown =
        spec(dir.path(), 60_000, "final", 600_000, 600_000).replace("source = \"inner\"", "source = \"iner\"");
    let text = sluice::plan::plan_str(&unknown, &dir.path().join("u.toml"), dir.path(), &[])
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("no source or output named `iner`") && text.contains("`inner`"),
        "{text}"
    );
}

/// Aggregates over an enriched output and over a route destination read the events those
/// outputs hold; a misspelled column of an upstream aggregate is an error with a hint.
#[test]
fn aggregates_read_enriched_outputs_route_destinations_and_check_columns() {
    let dir = tempfile::tempdir().unwrap();
    let events: Vec<(i64, usize, i64)> = (0..200).map(|i| (i * 17_000, (i % 3) as usize, i % 11)).collect();
    write(dir.path(), &events);
    let text = format!(
        r#"
[pipeline]
name = "routes"
tick = "1s"
[sources.events]
path = "{dir}/events.ndjson"
time_field = "ts"
type_field = "type"
allowed_lateness = "1h"
[enrich.events]
output = "enriched"
derive.big = "v >= 5"
[[enrich.events.rule]]
id = "big"
when = "big"
action = "route"
destination = "big_events"
[[aggregates]]
name = "all_per_region"
source = "enriched"
window = {{ tumbling = "10m" }}
group_by = ["region", "big"]
emit = "final"
measures.n = "count()"
[[aggregates]]
name = "big_per_region"
source = "big_events"
window = {{ tumbling = "10m" }}
group_by = ["region"]
emit = "final"
measures.n = "count()"
"#,
        dir = dir.path().display()
    );
    let plan = plan_text(&text, dir.path());
    for workers in [1, 2] {
        let summary = run_collect(&plan, workers);
        // Counts per (region, window start); of `all_per_region`, only its `big = true` rows.
        let counts = |name: &str, big_column: bool| -> BTreeMap<(String, Value), i64> {
            let mut out = BTreeMap::new();
            for (row, _, diff) in &summary.collected[name] {
                if big_column && row[1] != Value::Bool(true) {
                    continue;
                }
                let Value::Int(n) = row[row.len() - 1] else {
                    panic!("a count: {row:?}")
                };
                let start = row[row.len() - 3].clone();
                *out.entry((row[0].to_string(), start)).or_default() += n * *diff as i64;
            }
            out
        };
        let big = counts("big_per_region", false);
        assert_eq!(counts("all_per_region", true), big, "{workers} workers");
        let expected = events.iter().filter(|(_, _, v)| *v >= 5).count() as i64;
        assert_eq!(big.values().sum::<i64>(), expected);
    }

    // A measure naming a column the upstream aggregate does not have.
    let misspelled = format!(
        "{text}\n[[aggregates]]\nname = \"daily\"\nsource = \"big_per_region\"\nwindow = {{ tumbling = \"1d\" }}\nmeasures.total = \"sum(m)\"\n"
    );
    let path = dir.path().join("misspelled.toml");
    std::fs::write(&path, misspelled).unwrap();
    let err = sluice::source::plan_file(&path, &[]).unwrap_err().to_string();
    assert!(
        err.contains("no field `m` in output `big_per_region`") && err.contains("`n`"),
        "{err}"
    );
}
