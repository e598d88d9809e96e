//! `[[services]]`: the windowed transition counts against a from-scratch recount at every
//! publication, scored hops one per call, dead letters by reason, and identical outputs with
//! 1, 2 and 4 workers, over random traces with defects.

use std::collections::BTreeMap;
use std::io::Write;

use proptest::prelude::*;
use sluice::value::Value;

use crate::util::{accumulate, plan_text, run_collect, sorted_lines};

const SERVICES: [&str; 5] = ["gw", "auth", "cart", "pay", "db"];
const WINDOW_MS: i64 = 20_000;
const TIMEOUT_MS: i64 = 3_000;

/// Traces: a start time, a start service, hops (service index, gap in ms) and a defect kind.
#[derive(Clone, Debug)]
struct Trace {
    start: i64,
    first: usize,
    hops: Vec<(usize, i64)>,
}

fn traces() -> impl Strategy<Value = (Vec<Trace>, Vec<u8>)> {
    let trace = (
        0i64..60_000,
        0usize..5,
        prop::collection::vec((0usize..5, 1i64..2_000), 1..6),
    )
        .prop_map(|(start, first, hops)| Trace { start, first, hops });
    (prop::collection::vec(trace, 1..25), prop::collection::vec(0u8..5, 0..6))
}

/// Writes the log; returns the valid hops `(time, trace, context of 2, next)` and each
/// trace's end `(time, context)`.
#[allow(clippy::type_complexity)]
fn write(dir: &std::path::Path, traces: &[Trace], defects: &[u8]) -> (Vec<(i64, Vec<String>, String)>, usize) {
    let mut rows: Vec<(i64, String)> = Vec::new();
    let mut counted = Vec::new();
    for (i, t) in traces.iter().enumerate() {
        let mut time = t.start;
        let mut history = vec!["^".to_string(), SERVICES[t.first].to_string()];
        for &(next, gap) in &t.hops {
            let from = history[1].clone();
            let mut to = SERVICES[next].to_string();
            if to == from {
                to = SERVICES[(next + 1) % 5].to_string();
            }
            rows.push((
                time,
                format!(r#"{{"time":{time},"trace_id":"t{i}","source":"{from}","target":"{to}","kind":"data_transmitted","bytes":10,"latency_ms":1.5}}"#),
            ));
            rows.push((
                time + 1,
                format!(r#"{{"time":{},"trace_id":"t{i}","source":"{from}","target":"{to}","kind":"processed","bytes":0,"latency_ms":3}}"#, time + 1),
            ));
            counted.push((time, history.clone(), to.clone()));
            history = vec![history[1].clone(), to];
            time += gap;
        }
        // The end: a timeout after the last call.
        let last = time - t.hops.last().unwrap().1;
        counted.push((last + TIMEOUT_MS, history, "$".into()));
    }
    let mut bad = 0;
    for (k, d) in defects.iter().enumerate() {
        let time = 1_000 * k as i64;
        let row = match d {
            0 => format!(
                r#"{{"time":{time},"trace_id":"x","source":"gw","target":"gw","kind":"data_transmitted","bytes":1,"latency_ms":1}}"#
            ),
            1 => format!(
                r#"{{"time":{time},"trace_id":"x","source":"gw","target":"db","kind":"retry","bytes":1,"latency_ms":1}}"#
            ),
            2 => {
                format!(r#"{{"time":{time},"source":"gw","target":"db","kind":"processed","bytes":1,"latency_ms":1}}"#)
            }
            3 => format!(
                r#"{{"time":{time},"trace_id":"x","source":"gw","target":"db","kind":"processed","bytes":1,"latency_ms":-4}}"#
            ),
            _ => format!(
                r#"{{"time":{time},"trace_id":"x","source":"gw","target":"db","kind":"processed","bytes":"many","latency_ms":1}}"#
            ),
        };
        rows.push((time, row));
        bad += 1;
    }
    rows.sort_by_key(|r| r.0);
    let mut f = std::fs::File::create(dir.join("calls.ndjson")).unwrap();
    for (_, r) in rows {
        writeln!(f, "{r}").unwrap();
    }
    (counted, bad)
}

fn spec() -> &'static str {
    r#"
[pipeline]
name = "services_oracle"
tick = "1s"

[sources.calls]
format = "ndjson"
path = "calls.ndjson"
time_field = "time"
allowed_lateness = "1h"

[[services]]
name = "m"
source = "calls"
max_order = 2
window = "20s"
transitions_every = "1s"
sequence_timeout = "3s"
reselect_every = "10s"

[services.pipes]
horizon = "1s"
threshold = 0.3
idle_timeout = "5s"
target_precision = 0.8
"#
}

fn text(v: &Value) -> String {
    match v {
        Value::Str(s) => s.to_string(),
        other => other.to_string(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, .. ProptestConfig::default() })]

    #[test]
    fn transition_counts_equal_a_recount_of_the_window_with_any_worker_count((traces, defects) in traces()) {
        let dir = tempfile::tempdir().unwrap();
        let (counted, bad) = write(dir.path(), &traces, &defects);
        let plan = plan_text(spec(), dir.path());
        let one = run_collect(&plan, 1);
        let transitions = &one.collected["m_transitions"];
        // Every publication time: the counts of the hops (and ends) in [t − window, t).
        let mut times: Vec<u64> = transitions.iter().map(|(_, t, _)| *t).collect();
        times.sort_unstable();
        times.dedup();
        for &t in &times {
            let got: BTreeMap<(String, String), i64> = accumulate(transitions, t)
                .into_iter()
                .map(|(row, d)| {
                    prop_assert_eq!(d, 1);
                    Ok(((text(&row[0]), text(&row[1])), match row[2] { Value::Int(c) => c, _ => -1 }))
                })
                .collect::<Result<_, _>>()?;
            let mut want: BTreeMap<(String, String), i64> = BTreeMap::new();
            for (time, context, next) in &counted {
                let tick_of_count = *time; // counted when a later tick starts
                if tick_of_count < t as i64 && tick_of_count >= t as i64 - WINDOW_MS {
                    *want.entry((context.join(" "), next.clone())).or_default() += 1;
                }
            }
            prop_assert_eq!(&got, &want, "at {}", t);
        }
        // One scored hop per call, each with a probability in (0, 1].
        let hops = &one.collected["m_hops"];
        let calls = counted.iter().filter(|c| c.2 != "$").count();
        prop_assert_eq!(hops.len(), calls);
        for (row, _, _) in hops {
            let p = row[4].as_f64().unwrap();
            prop_assert!(p > 0.0 && p <= 1.0 + 1e-12, "{}", p);
        }
        // Every defect is a dead letter with its reason.
        let letters = &one.collected["dead_letters"];
        prop_assert_eq!(letters.len(), bad);
        for w in [2, 4] {
            let other = run_collect(&plan, w);
            prop_assert_eq!(sorted_lines(&one.collected), sorted_lines(&other.collected), "{} workers", w);
        }
    }
}

#[test]
fn the_shipped_spec_reads_the_sample_and_dead_letters_its_defects() {
    let plan = crate::util::plan_spec(&crate::util::repo().join("dataflows/predictive_pipes.toml"));
    let summary = run_collect(&plan, 1);
    let letters = &summary.collected["dead_letters"];
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for (row, _, _) in letters {
        *reasons.entry(text(&row[1])).or_default() += 1;
    }
    let truth: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(crate::util::repo().join("data/services_sample/interactions.parquet.truth.json"))
            .unwrap(),
    )
    .unwrap();
    let defects = &truth["counts"]["defects"];
    for (reason, key) in [
        ("unknown_kind", "unknown_kind"),
        ("self_loop", "self_loop"),
        ("missing_id", "missing_trace"),
        ("negative_latency", "negative_latency"),
    ] {
        assert_eq!(
            reasons.get(reason).copied().unwrap_or(0) as u64,
            defects[key].as_u64().unwrap(),
            "{reason}"
        );
    }
    // Hops are the data_transmitted rows.
    assert_eq!(
        summary.collected["calls_hops"].len() as u64,
        truth["counts"]["by_kind"]["data_transmitted"].as_u64().unwrap()
    );
}

#[test]
fn long_windows_and_the_mix_share_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("calls.ndjson"), "").unwrap();
    let plan = |text: &str| {
        let path = dir.path().join("t.toml");
        std::fs::write(&path, text).unwrap();
        sluice::source::plan_file(&path, &[])
    };
    let good = spec().replace(
        "window = \"20s\"\n",
        "window = \"20s\"\nlong_windows = [\"2m\", \"10m\"]\n",
    );
    let services = |p: sluice::plan::Plan| {
        p.stages
            .into_iter()
            .find_map(|s| match s.kind {
                sluice::plan::graph::StageKind::Services(s) => Some(*s),
                _ => None,
            })
            .unwrap()
    };
    let s = services(plan(&good).unwrap());
    assert_eq!(s.long_windows_ms, vec![120_000, 600_000]);
    assert_eq!(s.mix_share, 0.001);
    // By default one long window, six times `window`; `[]` turns the mixture off.
    assert_eq!(services(plan(spec()).unwrap()).long_windows_ms, vec![120_000]);
    let off = spec().replace("window = \"20s\"\n", "window = \"20s\"\nlong_windows = []\n");
    assert!(services(plan(&off).unwrap()).long_windows_ms.is_empty());
    let cases: Vec<(String, &[&str])> = vec![
        (
            good.replace("[\"2m\", \"10m\"]", "[\"10m\", \"2m\"]"),
            &["t.toml:", "`services[0].long_windows[1]`", "not longer than"],
        ),
        (
            good.replace("[\"2m\", \"10m\"]", "[\"20s\"]"),
            &["`services[0].long_windows[0]`", "not longer than"],
        ),
        (
            good.replace(
                "long_windows = [\"2m\", \"10m\"]",
                "long_windows = [\"2m\"]\nmix_share = 0.7",
            ),
            &["`services[0].mix_share`", "0.7 is not in [0, 0.5]"],
        ),
        (
            good.replace("long_windows", "long_window"),
            &["unknown field `long_window`", "long_windows"],
        ),
    ];
    for (text, says) in cases {
        let e = plan(&text).unwrap_err().to_string();
        assert!(says.iter().all(|s| e.contains(s)), "{e}");
    }
}
