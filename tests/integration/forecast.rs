//! Forecast stages: the output at every time equals a from-scratch recomputation (resample the
//! samples seen so far, feed a fresh forecaster every closed step); results are identical with
//! 1, 2 and 4 workers; bad values are dead letters; `sluice eval` scores the realized errors.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use proptest::prelude::*;
use sluice::model::forecast::{Aggregation, GapRule, Obs, Resampled};
use sluice::render::forecast::series_forecaster;
use sluice::value::Value;

use crate::util::{accumulate, plan_text, run_collect, sluice};

const STEP: i64 = 60_000;
const REGIONS: [&str; 2] = ["eu", "us"];

/// Samples (time, region, value), irregular, with gaps.
fn samples() -> impl Strategy<Value = Vec<(i64, usize, f64)>> {
    prop::collection::vec((0i64..90 * STEP, 0..REGIONS.len(), -20.0f64..20.0), 20..200).prop_map(|mut s| {
        // A daily-like pattern of period 10 steps plus the random part.
        for (t, r, v) in s.iter_mut() {
            let phase = (*t / STEP) % 10;
            *v = (*v / 4.0 + 50.0 + 10.0 * (phase as f64 / 10.0 * std::f64::consts::TAU).sin() + 20.0 * *r as f64)
                .round();
        }
        s.sort_by_key(|(t, r, _)| (*t, *r));
        s
    })
}

fn write(dir: &std::path::Path, samples: &[(i64, usize, f64)]) {
    let mut f = std::fs::File::create(dir.join("load.ndjson")).unwrap();
    for (t, r, v) in samples {
        writeln!(f, r#"{{"ts":{t},"region":"{}","cpu":{v}}}"#, REGIONS[*r]).unwrap();
    }
    // Bad values: a string and a missing key.
    writeln!(f, r#"{{"ts":{},"region":"eu","cpu":"high"}}"#, 90 * STEP).unwrap();
    writeln!(f, r#"{{"ts":{},"cpu":3}}"#, 90 * STEP).unwrap();
}

fn spec(dir: &std::path::Path, emit: &str) -> String {
    format!(
        r#"
[pipeline]
name = "forecast"
tick = "1s"
[sources.load]
path = "{dir}/load.ndjson"
time_field = "ts"
allowed_lateness = "10m"
[[forecasts]]
name = "f"
source = "load"
keys = ["region"]
values = ["cpu"]
step = "1m"
periods = ["10m"]
horizon = 3
models = ["ets", "ar"]
training_window = "40m"
refit_every = "10m"
search_every = 2
emit = "{emit}"
"#,
        dir = dir.display()
    )
}

/// From scratch: the forecast rows of each series after the steps that end by `at`.
fn oracle(samples: &[(i64, usize, f64)], plan: &sluice::plan::ForecastPlan, at: i64) -> BTreeSet<Vec<Value>> {
    oracle_of(&REGIONS, samples, plan, at)
}

/// [`oracle`] for series named by `regions`.
fn oracle_of(
    regions: &[impl AsRef<str>],
    samples: &[(i64, usize, f64)],
    plan: &sluice::plan::ForecastPlan,
    at: i64,
) -> BTreeSet<Vec<Value>> {
    let mut out = BTreeSet::new();
    for (r, region) in regions.iter().map(AsRef::as_ref).enumerate() {
        let series: Vec<(i64, f64)> = samples.iter().filter(|s| s.1 == r).map(|s| (s.0, s.2)).collect();
        // Steps that closed by `at`: those ending at or before it.
        let seen: Vec<(i64, f64)> = series
            .iter()
            .copied()
            .filter(|(t, _)| (t.div_euclid(STEP) + 1) * STEP <= at)
            .collect();
        if seen.is_empty() {
            continue;
        }
        let resampled = Resampled::from_samples(&seen, STEP, Aggregation::Mean, GapRule::default());
        let mut model = series_forecaster(plan, &[Value::str(region)], 0);
        for (v, flag) in resampled.values.iter().zip(&resampled.flags) {
            model
                .observe(Obs {
                    y: *v,
                    x: &[],
                    imputed: flag.imputed(),
                    future_x: &[],
                })
                .unwrap();
        }
        let last = resampled.time(resampled.values.len() - 1);
        for (i, (p, used)) in model.issued().points.iter().zip(&model.issued().used).enumerate() {
            let h = i as i64 + 1;
            let num = |x: f64| if x.is_finite() { Value::float(x) } else { Value::Null };
            out.insert(vec![
                Value::str(region),
                Value::str("cpu"),
                Value::Time(last + h * STEP),
                Value::Int(h),
                num(p.mean),
                num(p.lo80),
                num(p.hi80),
                num(p.lo95),
                num(p.hi95),
                Value::str(&used.to_string()),
                Value::Time(last + STEP),
            ]);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// `updates`: at every output time, the output holds exactly the from-scratch forecast of
    /// the steps closed by then; identical with 1, 2 and 4 workers.
    #[test]
    fn incremental_forecasts_equal_recomputation_at_every_step(samples in samples()) {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &samples);
        let plan = plan_text(&spec(dir.path(), "updates"), dir.path());
        let forecast = plan.forecasts().next().unwrap().clone();
        let mut first: Option<(Vec<_>, Vec<_>)> = None;
        for workers in [1, 2, 4] {
            let summary = run_collect(&plan, workers);
            let mut updates = summary.collected["f"].clone();
            updates.sort();
            let times: BTreeSet<u64> = updates.iter().map(|(_, t, _)| *t).collect();
            for t in times {
                let got = accumulate(&updates, t);
                prop_assert!(got.values().all(|d| *d == 1), "multiplicities at {}", t);
                let got: BTreeSet<Vec<Value>> = got.into_keys().collect();
                prop_assert_eq!(got, oracle(&samples, &forecast, t as i64), "at {}", t);
            }
            prop_assert_eq!(summary.dead_letters.get("non_numeric").copied(), Some(1));
            prop_assert_eq!(summary.dead_letters.get("missing_key").copied(), Some(1));
            let mut errors = summary.collected["f_errors"].clone();
            errors.sort();
            prop_assert!(errors.iter().all(|(_, _, d)| *d == 1));
            match &first {
                None => first = Some((updates, errors)),
                Some((u, e)) => {
                    prop_assert_eq!(u, &updates, "{} workers differ from 1", workers);
                    prop_assert_eq!(e, &errors, "{} workers differ from 1", workers);
                }
            }
        }
    }
}

/// A step that closes many series' bins makes more than one activation's fuel
/// (`render::forecast::FUEL`): the operator closes some, yields, and goes on in its next
/// activation. The output at every time still equals the recomputation, with 1 and 2 workers.
#[test]
fn a_step_larger_than_the_fuel_is_closed_over_several_activations() {
    let dir = tempfile::tempdir().unwrap();
    let regions: Vec<String> = (0..1_200).map(|r| format!("r{r:04}")).collect();
    let samples: Vec<(i64, usize, f64)> = (0..24)
        .flat_map(|step| {
            (0..regions.len()).map(move |r| {
                let v = 50.0 + 10.0 * ((step % 10) as f64 / 10.0 * std::f64::consts::TAU).sin() + (r % 17) as f64;
                (step * STEP + (r as i64 * 37) % STEP, r, v.round())
            })
        })
        .collect();
    let mut f = std::fs::File::create(dir.path().join("load.ndjson")).unwrap();
    for (t, r, v) in &samples {
        writeln!(f, r#"{{"ts":{t},"region":"{}","cpu":{v}}}"#, regions[*r]).unwrap();
    }
    drop(f);
    let plan = plan_text(&spec(dir.path(), "updates"), dir.path());
    let forecast = plan.forecasts().next().unwrap().clone();
    let mut first = None;
    for workers in [1, 2] {
        let summary = run_collect(&plan, workers);
        let mut updates = summary.collected["f"].clone();
        updates.sort();
        // One step's updates, in both outputs, exceed the fuel of an activation.
        let step = 20 * STEP as u64;
        let made = (updates.iter().map(|(_, t, _)| t))
            .chain(summary.collected["f_errors"].iter().map(|(_, t, _)| t))
            .filter(|t| **t == step)
            .count();
        assert!(made > sluice::render::forecast::FUEL, "{made} updates at {step}");
        let times: BTreeSet<u64> = updates.iter().map(|(_, t, _)| *t).collect();
        for t in times.into_iter().step_by(5) {
            let got: BTreeSet<Vec<Value>> = accumulate(&updates, t).into_keys().collect();
            assert_eq!(got, oracle_of(&regions, &samples, &forecast, t as i64), "at {t}");
        }
        match &first {
            None => first = Some(updates),
            Some(u) => assert_eq!(u, &updates, "{workers} workers differ from 1"),
        }
    }
}

/// `final` writes every issued forecast once: one set of `horizon` rows per closed step and
/// series, and the last set equals the `updates` output's final state.
#[test]
fn final_forecasts_are_every_issued_forecast_once() {
    let dir = tempfile::tempdir().unwrap();
    let samples: Vec<(i64, usize, f64)> = (0..120)
        .map(|i| (i * STEP / 2, (i % 2) as usize, 40.0 + (i % 7) as f64))
        .collect();
    write(dir.path(), &samples);
    let finals = run_collect(&plan_text(&spec(dir.path(), "final"), dir.path()), 2).collected["f"].clone();
    let updates = run_collect(&plan_text(&spec(dir.path(), "updates"), dir.path()), 2).collected["f"].clone();
    assert!(finals.iter().all(|(_, _, d)| *d == 1), "insert-only");
    let mut per_issue: BTreeMap<(String, Value), usize> = BTreeMap::new();
    for (row, _, _) in &finals {
        *per_issue.entry((row[0].to_string(), row[10].clone())).or_default() += 1;
    }
    assert!(per_issue.values().all(|n| *n == 3), "{per_issue:?}");
    // 60 minutes of samples per region: steps 0..59 close, one issue each.
    assert_eq!(per_issue.len(), 2 * 60);
    let current = accumulate(&updates, u64::MAX / 4);
    let last_issue: BTreeSet<Vec<Value>> = finals
        .iter()
        .filter(|(row, _, _)| row[10] == Value::Time(60 * STEP))
        .map(|(row, _, _)| row.clone())
        .collect();
    assert_eq!(current.into_keys().collect::<BTreeSet<_>>(), last_issue);
}

/// `sluice eval` prints the metrics table and writes it as Parquet.
#[test]
fn eval_scores_the_realized_errors() {
    let dir = tempfile::tempdir().unwrap();
    let samples: Vec<(i64, usize, f64)> = (0..400)
        .map(|i| {
            let t = i * STEP / 2;
            (
                t,
                (i % 2) as usize,
                50.0 + 10.0 * ((t / STEP % 10) as f64 / 10.0 * std::f64::consts::TAU).sin(),
            )
        })
        .collect();
    write(dir.path(), &samples);
    let spec_path = dir.path().join("f.toml");
    std::fs::write(&spec_path, spec(dir.path(), "updates")).unwrap();
    let out = sluice(
        &[
            "eval",
            spec_path.to_str().unwrap(),
            "--out",
            "eval",
            "--from",
            "1970-01-01T01:00:00Z",
            "--quiet",
        ],
        dir.path(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("f_metrics") && text.contains("seasonal_naive") && text.contains("ensemble"),
        "{text}"
    );
    let rows = crate::util::parquet_lines(&dir.path().join("eval/f_metrics"));
    assert!(!rows.is_empty());
    // A noise-free seasonal series: seasonal naive is exact once a season has been seen.
    assert!(
        rows.iter()
            .any(|r| r.contains("\"seasonal_naive\"") && r.contains(", 0.0,")),
        "{rows:?}"
    );
}

/// `allowed` keeps the known key values: a sample of another region is a dead letter
/// `unknown_key` (one per event, naming the value and what is allowed), and the known regions'
/// forecasts and errors are exactly those of a run over their samples alone. An `allowed` field
/// that is not a key, an empty list or a float is a spec error naming the key.
#[test]
fn unknown_keys_are_dead_letters_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut samples: Vec<(i64, usize, f64)> = (0..160)
        .map(|i| (i * STEP / 2, (i % 2) as usize, 40.0 + (i % 9) as f64))
        .collect();
    let allowed = spec(dir.path(), "updates").replace(
        "keys = [\"region\"]",
        "keys = [\"region\"]\nallowed = { region = [\"eu\"] }",
    );
    let allowed_plan = plan_text(&allowed, dir.path());
    // Only the `eu` samples, and no `allowed`: the reference.
    write(
        dir.path(),
        &samples.iter().copied().filter(|s| s.1 == 0).collect::<Vec<_>>(),
    );
    let reference = run_collect(&plan_text(&spec(dir.path(), "updates"), dir.path()), 1);
    // All samples (`us` is unknown), with `allowed`.
    samples.sort_by_key(|s| (s.0, s.1));
    write(dir.path(), &samples);
    for workers in [1, 2] {
        let summary = run_collect(&allowed_plan, workers);
        for name in ["f", "f_errors"] {
            let (mut got, mut want) = (summary.collected[name].clone(), reference.collected[name].clone());
            got.sort();
            want.sort();
            assert!(!want.is_empty(), "{name} is empty");
            assert_eq!(got, want, "{name} with {workers} workers");
        }
        assert_eq!(summary.dead_letters.get("unknown_key").copied(), Some(80));
        let letters: Vec<String> = summary.collected["dead_letters"]
            .iter()
            .map(|(row, _, _)| row.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(" | "))
            .filter(|l| l.contains("unknown_key"))
            .collect();
        assert_eq!(letters.len(), 80);
        assert!(
            letters[0].contains("`region` = `us` is not an allowed value (`eu`)") && letters[0].contains("forecast:f"),
            "{}",
            letters[0]
        );
    }
    let base = spec(dir.path(), "updates");
    for (allowed, key, message) in [
        (
            "{ zone = [\"eu\"] }",
            "`forecasts[0].allowed.zone`",
            "not one of the forecast's `keys`",
        ),
        ("{ region = [] }", "`forecasts[0].allowed.region`", "no allowed values"),
        (
            "{ region = [1.5] }",
            "`forecasts[0].allowed.region[0]`",
            "a float cannot be a key value",
        ),
    ] {
        let text = base.replace(
            "keys = [\"region\"]",
            &format!("keys = [\"region\"]\nallowed = {allowed}"),
        );
        let error = spec_error(&text, dir.path());
        assert!(error.contains(key) && error.contains(message), "{error}");
    }
}

/// The error of a spec that must not plan.
fn spec_error(text: &str, dir: &std::path::Path) -> String {
    sluice::plan::plan_str(text, std::path::Path::new("test.toml"), dir, &[])
        .unwrap_err()
        .to_string()
}

/// `search_every` is a positive number of refits; anything else is a spec error naming the key.
#[test]
fn search_every_must_be_positive() {
    let dir = tempfile::tempdir().unwrap();
    let base = spec(dir.path(), "updates");
    let plan = plan_text(&base, dir.path());
    assert_eq!(plan.forecasts().next().unwrap().config.search_every, 2);
    for bad in ["0", "-3"] {
        let text = base.replace("search_every = 2", &format!("search_every = {bad}"));
        let error = spec_error(&text, dir.path());
        assert!(
            error.contains("`forecasts[0].search_every`") && error.contains("between 1 and"),
            "{error}"
        );
    }
}

/// A value field listed twice would make two series of one name, each with its own forecast
/// rows and errors that nothing tells apart: a spec error naming both places.
#[test]
fn a_value_listed_twice_is_a_spec_error() {
    let dir = tempfile::tempdir().unwrap();
    let base = spec(dir.path(), "updates");
    let text = base.replace("values = [\"cpu\"]", "values = [\"cpu\", \"cpu\"]");
    assert_ne!(text, base);
    let error = spec_error(&text, dir.path());
    assert!(
        error.contains("`forecasts[0].values[1]`") && error.contains("listed twice (also values[0])"),
        "{error}"
    );
}

/// A gap longer than the training window restarts the series instead of filling it step by
/// step: one sample years after the others costs what any sample does, and the forecast after
/// it is a new series' (naive, warming up), not one trained on carried values.
#[test]
fn a_gap_longer_than_the_training_window_restarts_the_series() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(dir.path().join("load.ndjson")).unwrap();
    for i in 0..400 {
        writeln!(f, r#"{{"ts":{},"region":"eu","cpu":{}}}"#, i * STEP, 50 + i % 7).unwrap();
    }
    // Eighty years later, at the spec's 1-minute step: 42M steps if filled. (The last line, so
    // the source admits the jump: see "Far-future times".)
    writeln!(f, r#"{{"ts":{},"region":"eu","cpu":90}}"#, 80 * 365 * 86_400_000i64).unwrap();
    drop(f);
    let plan = plan_text(&spec(dir.path(), "updates"), dir.path());
    let started = std::time::Instant::now();
    let summary = run_collect(&plan, 1);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "the gap was filled"
    );
    // The current forecast is issued after the last sample, from it alone.
    let rows = accumulate(&summary.collected["f"], u64::MAX / 4);
    assert!(!rows.is_empty());
    for (row, d) in &rows {
        assert_eq!(*d, 1);
        let text = row.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(" | ");
        assert!(text.contains("90") && text.contains("naive"), "{text}");
    }
}
