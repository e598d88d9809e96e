use std::collections::BTreeMap;
use std::path::Path;

use super::sim::DATA_TRANSMITTED;
use super::*;
use crate::generate::generate_with;
use crate::model::markov::chain::shift;
use crate::model::markov::Token;

fn config(dir: &Path, file: &str, seed: u64, events: usize) -> GenerateConfig {
    GenerateConfig::new("services", events, seed, &dir.join(file))
}

/// One row of an NDJSON log.
#[derive(Debug, Clone)]
struct LogRow {
    time: i64,
    trace: Option<i64>,
    source: String,
    target: String,
    kind: String,
    bytes: i64,
    latency: f64,
    status: String,
}

fn read_log(path: &Path) -> Vec<LogRow> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let r: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = |k: &str| r[k].as_str().unwrap().to_string();
            LogRow {
                time: crate::value::parse_time(r["time"].as_str().unwrap()).unwrap(),
                trace: r.get("trace_id").map(|v| v.as_i64().unwrap()),
                source: text("source"),
                target: text("target"),
                kind: text("kind"),
                bytes: r["bytes"].as_i64().unwrap(),
                latency: r["latency_ms"].as_f64().unwrap(),
                status: text("status"),
            }
        })
        .collect()
}

/// Whether a row is one the generator made on purpose defective.
fn defective(r: &LogRow) -> bool {
    r.trace.is_none() || r.source == r.target || r.latency < 0.0 || !sim::KINDS.contains(&r.kind.as_str())
}

/// Each trace's calls in order: (call time, source, target).
fn calls(rows: &[LogRow]) -> BTreeMap<i64, Vec<(i64, String, String)>> {
    let mut out: BTreeMap<i64, Vec<(i64, String, String)>> = BTreeMap::new();
    for r in rows.iter().filter(|r| !defective(r) && r.kind == DATA_TRANSMITTED) {
        out.entry(r.trace.unwrap())
            .or_default()
            .push((r.time, r.source.clone(), r.target.clone()));
    }
    out
}

#[test]
fn the_same_seed_gives_the_same_files() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    generate_with(&config(a.path(), "s.ndjson", 5, 5000)).unwrap();
    generate_with(&config(b.path(), "s.ndjson", 5, 5000)).unwrap();
    generate_with(&config(c.path(), "s.ndjson", 6, 5000)).unwrap();
    for file in ["s.ndjson", "s.ndjson.truth.json"] {
        let read = |d: &tempfile::TempDir| std::fs::read(d.path().join(file)).unwrap();
        assert!(read(&a) == read(&b), "{file}: same seed, different bytes");
        assert!(read(&a) != read(&c), "{file}: different seeds, same bytes");
    }
}

/// Exactly `E` rows in time order; each trace's calls chain (every call starts at the last
/// one's target), strictly later each time; the truth counts what was written; defects are
/// what they say.
#[test]
fn rows_are_consistent_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate_with(&config(dir.path(), "s.ndjson", 3, 60_000)).unwrap();
    assert_eq!(summary.events, 60_000);
    let rows = read_log(&dir.path().join("s.ndjson"));
    let truth = read_truth(&dir.path().join("s.ndjson.truth.json")).unwrap();
    assert_eq!(rows.len(), 60_000);
    assert!(
        rows.windows(2).all(|w| w[0].time <= w[1].time),
        "rows are in time order"
    );
    assert_eq!(truth.end_ms, rows.last().unwrap().time);
    let c = &truth.counts;
    assert_eq!(c.rows, 60_000);
    let count = |kind: &str| rows.iter().filter(|r| !defective(r) && r.kind == kind).count();
    for kind in sim::KINDS {
        assert_eq!(c.by_kind[kind], count(kind), "{kind}");
    }
    let defects: usize = c.defects.values().sum();
    assert_eq!(rows.iter().filter(|r| defective(r)).count(), defects);
    assert!(c.defects.values().all(|n| *n > 0), "{:?}", c.defects);
    assert_eq!(
        rows.iter().filter(|r| r.kind == sim::UNKNOWN_KIND).count(),
        c.defects["unknown_kind"]
    );
    let by_trace = calls(&rows);
    assert_eq!(c.hops, by_trace.values().map(Vec::len).sum::<usize>());
    assert_eq!(c.traces as i64, *by_trace.keys().last().unwrap());
    for (trace, calls) in &by_trace {
        assert!(
            truth.services[truth.service(&calls[0].1).unwrap()].entry,
            "trace {trace}"
        );
        for w in calls.windows(2) {
            assert_eq!(w[0].2, w[1].1, "trace {trace}");
            assert!(w[0].0 < w[1].0, "trace {trace}");
        }
    }
    for r in rows.iter().filter(|r| !defective(r)) {
        assert!(r.latency >= 0.0 && r.bytes >= 0);
        assert_eq!(r.bytes > 0, r.kind == DATA_TRANSMITTED, "{r:?}");
        assert_eq!(r.status == "ok", r.kind != sim::ERROR, "{r:?}");
        if r.status == "timeout" {
            assert_eq!(r.latency, truth.traffic.timeout_ms);
        }
    }
}

/// A pipe is created exactly when a call finds its pair's pipe closed: no earlier call of the
/// pair finished less than `idle_timeout_ms` before (or is still running).
#[test]
fn pipes_are_created_when_the_pair_was_idle() {
    let dir = tempfile::tempdir().unwrap();
    generate_with(&config(dir.path(), "s.ndjson", 4, 40_000)).unwrap();
    let truth = read_truth(&dir.path().join("s.ndjson.truth.json")).unwrap();
    let rows: Vec<LogRow> = read_log(&dir.path().join("s.ndjson"))
        .into_iter()
        .filter(|r| !defective(r))
        .collect();
    // Each call's done time: the time of its trace's next `processed` or `error` row.
    let mut open: BTreeMap<i64, usize> = BTreeMap::new();
    let mut done = vec![None; rows.len()];
    for (i, r) in rows.iter().enumerate() {
        match r.kind.as_str() {
            DATA_TRANSMITTED => {
                open.insert(r.trace.unwrap(), i);
            }
            sim::PROCESSED | sim::ERROR => done[open.remove(&r.trace.unwrap()).unwrap()] = Some(r.time),
            _ => {}
        }
    }
    let mut busy: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    let (mut created, mut checked) = (0, 0);
    for (i, r) in rows.iter().enumerate() {
        if r.kind != DATA_TRANSMITTED {
            continue;
        }
        let Some(end) = done[i] else { break };
        let pair = (r.source.as_str(), r.target.as_str());
        let was_open = busy
            .get(&pair)
            .is_some_and(|b| r.time <= b + truth.traffic.idle_timeout_ms);
        let pipe = i > 0 && rows[i - 1].kind == sim::PIPE_CREATED && rows[i - 1].trace == r.trace;
        assert_eq!(pipe, !was_open, "call {i}: {r:?}");
        created += usize::from(pipe);
        checked += 1;
        let b = busy.entry(pair).or_insert(end);
        *b = (*b).max(end);
    }
    assert!(
        created > 100 && created * 4 < checked,
        "{created} pipes for {checked} calls"
    );
}

/// Per regime, the share of each next service after each well-visited context matches the
/// truth's probabilities; the truth's own log-loss on the log is its entropy rate.
#[test]
fn transition_frequencies_match_the_truth() {
    for (order, seed) in [(1, 21), (2, 22)] {
        let dir = tempfile::tempdir().unwrap();
        let c = GenerateConfig {
            order: Some(order),
            services: Some(24),
            ..config(dir.path(), "s.ndjson", seed, 300_000)
        };
        generate_with(&c).unwrap();
        let truth = read_truth(&dir.path().join("s.ndjson.truth.json")).unwrap();
        let chains: Vec<_> = (0..truth.regimes.len()).map(|r| truth.chain(r)).collect();
        type Followers = BTreeMap<String, f64>;
        let mut seen: BTreeMap<(usize, Vec<Token<String>>), Followers> = BTreeMap::new();
        let (mut loss, mut hops) = (vec![0.0; chains.len()], vec![0.0; chains.len()]);
        for calls in calls(&read_log(&dir.path().join("s.ndjson"))).values() {
            let mut context = shift(&vec![Token::Start; order], &calls[0].1);
            for (t, _, next) in calls {
                let r = truth.regime_at(*t);
                *seen
                    .entry((r, context.clone()))
                    .or_default()
                    .entry(next.clone())
                    .or_default() += 1.0;
                loss[r] -= chains[r].conditional(&context, next).log2();
                hops[r] += 1.0;
                context = shift(&context, next);
            }
        }
        let mut checked = 0;
        for ((r, context), counts) in &seen {
            let n: f64 = counts.values().sum();
            if n < 400.0 {
                continue;
            }
            let row = chains[*r].row(context).unwrap();
            for (s, _) in &row.next {
                let p = row.conditional(s);
                let q = counts.get(s).copied().unwrap_or(0.0) / n;
                let tolerance = 4.5 * (p * (1.0 - p) / n).sqrt() + 1e-3;
                assert!(
                    (p - q).abs() < tolerance,
                    "K {order} regime {r} {context:?} → {s}: {q} vs {p} of {n}"
                );
                checked += 1;
            }
            assert!(
                counts.keys().all(|s| row.conditional(s) > 0.0),
                "{context:?}: {counts:?}"
            );
        }
        assert!(checked > 100, "{checked} probabilities checked");
        for (r, regime) in truth.regimes.iter().enumerate() {
            let h = loss[r] / hops[r];
            assert!(hops[r] > 20_000.0, "regime {r}: {} hops", hops[r]);
            assert!(
                (h / regime.entropy_rate_bits - 1.0).abs() < 0.03,
                "K {order} regime {r}: {h} bits vs {}",
                regime.entropy_rate_bits
            );
            let recomputed = chains[r].entropy_rate_bits();
            assert!((recomputed - regime.entropy_rate_bits).abs() < 1e-9);
        }
    }
}

/// The added edge is never called before its change and is called after; the removed one is
/// called before its change and never after; the shifted services' rows differ.
#[test]
fn regimes_change_at_the_stated_times() {
    let dir = tempfile::tempdir().unwrap();
    generate_with(&config(dir.path(), "s.ndjson", 8, 100_000)).unwrap();
    let truth = read_truth(&dir.path().join("s.ndjson.truth.json")).unwrap();
    let [added, removed, shifted] = &truth.changes[..] else {
        panic!("three changes")
    };
    assert_eq!(
        (added.kind.as_str(), removed.kind.as_str(), shifted.kind.as_str()),
        ("edge_added", "edge_removed", "probabilities_shifted")
    );
    let span = truth.span_end_ms - truth.start_ms;
    for (c, f) in truth.changes.iter().zip(CHANGES_AT) {
        assert!((c.time_ms - truth.start_ms - (span as f64 * f) as i64).abs() < 60_000);
    }
    assert!(truth.regimes.windows(2).all(|w| w[0].end_ms == w[1].start_ms));
    let rows = read_log(&dir.path().join("s.ndjson"));
    let times = |c: &truth::Change| -> Vec<i64> {
        rows.iter()
            .filter(|r| !defective(r) && r.kind == DATA_TRANSMITTED)
            .filter(|r| Some(&r.source) == c.source.as_ref() && Some(&r.target) == c.target.as_ref())
            .map(|r| r.time)
            .collect()
    };
    let a = times(added);
    assert!(!a.is_empty() && a.iter().all(|t| *t >= added.time_ms), "{a:?}");
    let r = times(removed);
    assert!(!r.is_empty() && r.iter().all(|t| *t < removed.time_ms), "{r:?}");
    assert!(r.iter().any(|t| *t >= added.time_ms), "called in regime 1 too");
    assert!(!shifted.services.is_empty());
    let (before, after) = (truth.chain(2), truth.chain(3));
    for s in &shifted.services {
        let changed = before
            .rows
            .iter()
            .filter(|(c, _)| c.last() == Some(&Token::Sym(s.clone())))
            .filter(|(c, row)| after.rows[*c] != **row)
            .count();
        assert!(changed > 0, "{s}");
    }
}

/// Trace starts follow the diurnal rate, and calls fail far more often inside bursts.
#[test]
fn diurnal_rate_and_bursts() {
    let dir = tempfile::tempdir().unwrap();
    let c = GenerateConfig {
        span_ms: Some(2 * 86_400_000),
        ..config(dir.path(), "s.ndjson", 9, 200_000)
    };
    generate_with(&c).unwrap();
    let truth = read_truth(&dir.path().join("s.ndjson.truth.json")).unwrap();
    assert!(
        (truth.end_ms - truth.span_end_ms).abs() < 3 * 3_600_000,
        "{} vs {}",
        truth.end,
        truth.span_end
    );
    let rows = read_log(&dir.path().join("s.ndjson"));
    let mut starts = vec![0.0; 48];
    for calls in calls(&rows).values() {
        let h = ((calls[0].0 - truth.start_ms) / 3_600_000) as usize;
        if h < 48 {
            starts[h] += 1.0;
        }
    }
    let t = &truth.traffic;
    let expected: Vec<f64> = (0..48)
        .map(|h| {
            sim::diurnal(
                (truth.start_ms + h * 3_600_000 + 1_800_000) as f64,
                t.diurnal_amplitude,
                t.peak_hour_utc,
            )
        })
        .collect();
    let corr = crate::eval::metrics::pearson(&expected, &starts);
    assert!(corr > 0.95, "hourly trace starts vs the diurnal rate: {corr}");
    let (mut inside, mut outside) = ((0.0, 0.0), (0.0, 0.0));
    for r in rows
        .iter()
        .filter(|r| !defective(r) && (r.kind == sim::PROCESSED || r.kind == sim::ERROR))
    {
        let burst = truth
            .bursts
            .iter()
            .any(|b| b.source == r.source && b.target == r.target && b.start_ms <= r.time && r.time < b.end_ms + 2_000);
        let e = if burst { &mut inside } else { &mut outside };
        e.0 += f64::from(r.kind == sim::ERROR);
        e.1 += 1.0;
    }
    assert!(inside.1 > 100.0, "{inside:?}");
    assert!(
        inside.0 / inside.1 > 0.25 && outside.0 / outside.1 < 0.03,
        "{inside:?} {outside:?}"
    );
}

#[test]
fn options_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    for n in [19, 51] {
        let c = GenerateConfig {
            services: Some(n),
            ..config(dir.path(), "s.ndjson", 1, 10)
        };
        let e = generate_with(&c).unwrap_err();
        assert!(
            e.is_usage() && e.to_string().contains("--services must be in 20..=50"),
            "{e}"
        );
    }
    for k in [0, 3] {
        let c = GenerateConfig {
            order: Some(k),
            ..config(dir.path(), "s.ndjson", 1, 10)
        };
        assert!(generate_with(&c)
            .unwrap_err()
            .to_string()
            .contains("--order must be 1 or 2"));
    }
    let c = GenerateConfig {
        context: Some(dir.path().join("ctx")),
        ..config(dir.path(), "s.ndjson", 1, 10)
    };
    assert!(generate_with(&c).unwrap_err().to_string().contains("--context"));
    let c = GenerateConfig {
        services: Some(30),
        ..GenerateConfig::new("regions", 10, 1, &dir.path().join("r.ndjson"))
    };
    assert!(generate_with(&c).unwrap_err().to_string().contains("--services"));
    let e = generate_with(&config(dir.path(), "s.txt", 1, 10)).unwrap_err();
    assert!(e.is_usage() && e.to_string().contains(".csv"), "{e}");
    for n in [20, 50] {
        let c = GenerateConfig {
            services: Some(n),
            ..config(dir.path(), "s.csv", 1, 2000)
        };
        assert_eq!(generate_with(&c).unwrap().events, 2000);
        let truth = read_truth(&dir.path().join("s.csv.truth.json")).unwrap();
        assert_eq!(truth.services.len(), n);
    }
}
