use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::agents::{Agents, Delivery, Reading};
use super::model::{observe, AR, HOUR_MS, METRICS, SIGMA};
use super::*;
use crate::generate::{generate_with, GenerateConfig};

const DAY_MS: u64 = 86_400_000;

fn config(dir: &Path, file: &str, seed: u64, events: usize, span_days: u64) -> GenerateConfig {
    GenerateConfig {
        context: Some(dir.join("ctx")),
        regions: Some(3),
        span_ms: Some(span_days * DAY_MS),
        ..GenerateConfig::new("regions", events, seed, &dir.join(file))
    }
}

/// The written load samples of an NDJSON run: (time, region, metric values as JSON), in file order.
fn read_samples(path: &Path) -> Vec<(i64, String, Vec<serde_json::Value>)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            let time = crate::value::parse_time(row["time"].as_str().unwrap()).unwrap();
            let values = METRICS.iter().map(|m| row[*m].clone()).collect();
            (time, row["region"].as_str().unwrap().to_string(), values)
        })
        .collect()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![
        dir.join("e.ndjson"),
        dir.join("e.ndjson.truth.json"),
        dir.join("ctx/load_samples.ndjson"),
        dir.join("ctx/regions.ndjson"),
        dir.join("ctx/completions.ndjson"),
    ];
    out.sort();
    out
}

#[test]
fn the_same_seed_gives_the_same_files() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    generate_with(&config(a.path(), "e.ndjson", 5, 3000, 2)).unwrap();
    generate_with(&config(b.path(), "e.ndjson", 5, 3000, 2)).unwrap();
    for (x, y) in files(a.path()).iter().zip(files(b.path())) {
        assert_eq!(std::fs::read(x).unwrap(), std::fs::read(&y).unwrap(), "{}", x.display());
    }
    let c = tempfile::tempdir().unwrap();
    generate_with(&config(c.path(), "e.ndjson", 6, 3000, 2)).unwrap();
    for (x, y) in files(a.path()).iter().zip(files(c.path())) {
        assert_ne!(std::fs::read(x).unwrap(), std::fs::read(&y).unwrap(), "{}", x.display());
    }
}

/// Sample standard deviation and lag-1 autocorrelation of `x`, pairing only consecutive
/// entries whose keys differ by one.
fn std_and_lag1(x: &[(u64, f64)]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().map(|p| p.1).sum::<f64>() / n;
    let var = x.iter().map(|p| (p.1 - mean).powi(2)).sum::<f64>() / n;
    let (mut num, mut pairs) = (0.0, 0.0);
    for w in x.windows(2) {
        if w[1].0 == w[0].0 + 1 {
            num += (w[0].1 - mean) * (w[1].1 - mean);
            pairs += 1.0;
        }
    }
    (var.sqrt(), num / pairs / var)
}

/// The agents' noise has the truth's sigma and AR coefficient, and each written value is the
/// truth's noise-free value (recomputed from the JSON file) plus that noise.
#[test]
fn samples_are_the_truths_noise_free_value_plus_ar1_noise() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "e.ndjson", 11, 1000, 14);
    generate_with(&cfg).unwrap();
    let written = read_truth(&dir.path().join("e.ndjson.truth.json")).unwrap();
    let drawn = truth(&cfg);
    assert_eq!(written.regions, drawn.regions);
    let mut noise: BTreeMap<(usize, usize), Vec<(u64, f64)>> = BTreeMap::new();
    let mut checked = 0;
    for s in Agents::new(&drawn, cfg.seed) {
        for (m, (name, reading)) in METRICS.iter().zip(s.readings).enumerate() {
            if s.delivery != Delivery::Duplicate {
                noise.entry((s.region, m)).or_default().push((s.report, s.noise[m]));
            }
            if let Reading::Value(v) = reading {
                let again = observe(m, written.noise_free(s.region, m, s.time) + s.noise[m]);
                assert_eq!(v, again, "{name} of region {} at {}", s.region, s.time);
                checked += 1;
            }
        }
    }
    assert!(checked > 300_000, "{checked}");
    for ((r, m), mut series) in noise {
        series.sort_by_key(|p| p.0);
        let (std, lag1) = std_and_lag1(&series);
        let sigma = written.noise.sigma[METRICS[m]];
        assert_eq!(sigma, SIGMA[m]);
        assert!(
            (std / sigma - 1.0).abs() < 0.05,
            "region {r} {}: std {std} vs {sigma}",
            METRICS[m]
        );
        assert!(
            (lag1 - written.noise.ar).abs() < 0.03,
            "region {r} {}: lag-1 {lag1} vs {AR}",
            METRICS[m]
        );
    }
}

/// From the files alone: the written values minus the truth's noise-free values have the
/// truth's sigma and (nearly, a few reports being missing) its lag-1 autocorrelation.
#[test]
fn residuals_of_the_written_samples_match_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    generate_with(&config(dir.path(), "e.ndjson", 3, 1000, 10)).unwrap();
    let truth = read_truth(&dir.path().join("e.ndjson.truth.json")).unwrap();
    let rows = read_samples(&dir.path().join("ctx/load_samples.ndjson"));
    assert_eq!(rows.len(), truth.counts.samples);
    let mut by_series: BTreeMap<(usize, usize), BTreeMap<i64, f64>> = BTreeMap::new();
    let mut garbage = 0;
    // A duplicate delivery repeats its report's time and region.
    let reports: BTreeMap<(i64, &String), &Vec<serde_json::Value>> =
        rows.iter().map(|(t, r, v)| ((*t, r), v)).collect();
    assert_eq!(rows.len() - reports.len(), truth.counts.duplicated);
    for ((time, region), values) in reports {
        let r = truth.region(region).unwrap();
        for (m, v) in values.iter().enumerate() {
            match v.as_f64() {
                // Clamped values are not noise-free value plus noise.
                Some(x) if x > 0.0 && x < 100.0 => {
                    by_series
                        .entry((r, m))
                        .or_default()
                        .insert(time, x - truth.noise_free(r, m, time));
                }
                Some(_) => {}
                None => garbage += 1,
            }
        }
    }
    assert_eq!(garbage, truth.counts.garbage);
    for ((r, m), series) in by_series {
        if METRICS[m] == "queue_length" {
            // Clamped at 0 in quiet hours: only check that residuals stay noise-sized.
            assert!(series.values().all(|e| e.abs() < 7.0 * SIGMA[m]), "region {r}");
            continue;
        }
        let keyed: Vec<(u64, f64)> = series.values().enumerate().map(|(i, e)| (i as u64, *e)).collect();
        let (std, lag1) = std_and_lag1(&keyed);
        assert!(
            (std / SIGMA[m] - 1.0).abs() < 0.06,
            "region {r} {}: std {std}",
            METRICS[m]
        );
        assert!((lag1 - AR).abs() < 0.05, "region {r} {}: lag-1 {lag1}", METRICS[m]);
    }
}

#[test]
fn one_outage_moves_load_to_the_other_regions() {
    let dir = tempfile::tempdir().unwrap();
    generate_with(&config(dir.path(), "e.ndjson", 9, 60_000, 7)).unwrap();
    let truth = read_truth(&dir.path().join("e.ndjson.truth.json")).unwrap();
    let o = truth.region(&truth.outage.region).unwrap();
    let (start, end) = (truth.outage.start_ms, truth.outage.end_ms);
    assert!(end - start >= HOUR_MS && start > truth.start_ms && end < truth.end_ms);
    // The same hours one day earlier, without the outage.
    let before = |t: i64| (start - 86_400_000..end - 86_400_000).contains(&t);
    let during = |t: i64| (start..end).contains(&t);
    let mut cpu: BTreeMap<(usize, bool), (f64, f64)> = BTreeMap::new();
    for (time, region, values) in read_samples(&dir.path().join("ctx/load_samples.ndjson")) {
        let r = truth.region(&region).unwrap();
        if let (Some(x), true) = (values[0].as_f64(), during(time) || before(time)) {
            let e = cpu.entry((r, during(time))).or_default();
            (e.0, e.1) = (e.0 + x, e.1 + 1.0);
        }
    }
    let mean = |r: usize, on: bool| cpu[&(r, on)].0 / cpu[&(r, on)].1;
    assert!(mean(o, true) < 10.0, "cpu in outage {}", mean(o, true));
    for r in (0..truth.regions.len()).filter(|&r| r != o) {
        let moved = truth.load(r, start + 60_000) - truth.demand(r, start + 60_000);
        assert!(moved > 0.05, "region {r} takes {moved}");
        assert!(
            mean(r, true) > mean(r, false) + 3.0,
            "region {r}: {} vs {}",
            mean(r, true),
            mean(r, false)
        );
    }
    // Events of the region in outage are served elsewhere.
    let mut served = BTreeMap::new();
    for line in std::fs::read_to_string(dir.path().join("e.ndjson")).unwrap().lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        let t = crate::value::parse_time(e["event_time"].as_str().unwrap()).unwrap();
        if during(t) && e["home_region"] == truth.outage.region.as_str() {
            *served.entry(e["region"].as_str().unwrap().to_string()).or_insert(0) += 1;
        }
    }
    let stayed = served.get(&truth.outage.region).copied().unwrap_or(0);
    let total: i32 = served.values().sum();
    assert!(total > 50 && stayed * 10 < total, "{served:?}");
    // The regions file publishes the outage's capacity, then the nominal one again.
    let rows: Vec<(String, i64, f64)> = std::fs::read_to_string(dir.path().join("ctx/regions.ndjson"))
        .unwrap()
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            let time = crate::value::parse_time(row["updated_at"].as_str().unwrap()).unwrap();
            let region = row["region"].as_str().unwrap().to_string();
            (region, time, row["capacity_rps"].as_f64().unwrap())
        })
        .collect();
    let nominal = truth.regions[o].capacity_rps;
    let name = truth.outage.region.clone();
    assert_eq!(rows.len(), truth.regions.len() + 2);
    assert_eq!(rows[3..], [(name.clone(), start, nominal * 0.01), (name, end, nominal)]);
}

/// The events are exactly `E`, follow the regions' load hour by hour, and have the documented
/// shares of missing fields; the samples have every kind of defect.
#[test]
fn events_follow_the_load_and_samples_have_defects() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate_with(&config(dir.path(), "e.ndjson", 4, 40_000, 7)).unwrap();
    assert_eq!(summary.events, 40_000);
    let truth = read_truth(&dir.path().join("e.ndjson.truth.json")).unwrap();
    let mut per_hour: BTreeMap<(i64, usize), f64> = BTreeMap::new();
    let (mut no_priority, mut no_complexity, mut last) = (0, 0, i64::MIN);
    for line in std::fs::read_to_string(dir.path().join("e.ndjson")).unwrap().lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        let t = crate::value::parse_time(e["event_time"].as_str().unwrap()).unwrap();
        assert!(t >= last, "events are in time order");
        last = t;
        let r = truth.region(e["region"].as_str().unwrap()).unwrap();
        *per_hour.entry(((t - truth.start_ms) / HOUR_MS, r)).or_default() += 1.0;
        no_priority += usize::from(e.get("priority").is_none());
        no_complexity += usize::from(e.get("complexity").is_none());
        let p = e.get("priority").and_then(|p| p.as_i64()).unwrap_or(1);
        assert!((1..=10).contains(&p));
    }
    assert!((no_priority as f64 / 40_000.0 - 0.10).abs() < 0.01, "{no_priority}");
    assert!((no_complexity as f64 / 40_000.0 - 0.15).abs() < 0.01, "{no_complexity}");
    // Hourly counts against the expected rate, load × capacity, sampled each minute.
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for h in 0..(truth.end_ms - truth.start_ms) / HOUR_MS {
        for r in 0..truth.regions.len() {
            let rate: f64 = (0..60)
                .map(|k| truth.start_ms + h * HOUR_MS + k * 60_000 + 30_000)
                .map(|t| truth.load(r, t) * truth.regions[r].capacity_rps)
                .sum();
            xs.push(rate);
            ys.push(per_hour.get(&(h, r)).copied().unwrap_or(0.0));
        }
    }
    let corr = crate::eval::metrics::pearson(&xs, &ys);
    assert!(corr > 0.9, "hourly events vs load: {corr}");
    let c = &truth.counts;
    assert!(
        c.missing > 0 && c.duplicated > 0 && c.delayed > 0 && c.garbage > 0,
        "{c:?}"
    );
    let rows = read_samples(&dir.path().join("ctx/load_samples.ndjson"));
    let mut max = i64::MIN;
    let out_of_order = rows
        .iter()
        .filter(|r| {
            let before = max;
            max = max.max(r.0);
            before > r.0
        })
        .count();
    assert!(
        out_of_order >= c.delayed,
        "{out_of_order} rows out of order, {} delayed",
        c.delayed
    );
    let gaps: Vec<i64> = {
        let mut t: Vec<i64> = rows
            .iter()
            .filter(|r| r.1 == truth.regions[0].name)
            .map(|r| r.0)
            .collect();
        t.sort();
        t.dedup();
        t.windows(2).map(|w| w[1] - w[0]).collect()
    };
    assert!(gaps.iter().all(|g| *g >= 15_000), "reports at least 15 s apart");
    assert!(gaps.iter().filter(|g| **g > 60_000).count() as f64 <= 0.03 * gaps.len() as f64);
}

/// The CSV samples read through the CSV source: `NaN` garbage is a float, `n/a` and `ERR` are
/// `malformed_csv` dead letters, and every row is one or the other.
#[test]
fn csv_samples_read_through_the_csv_source() {
    use crate::plan::csv::{CsvOptions, CsvType};
    use crate::source::{reader, Decoded, Layout};
    let dir = tempfile::tempdir().unwrap();
    generate_with(&config(dir.path(), "e.csv", 2, 500, 3)).unwrap();
    let truth = read_truth(&dir.path().join("e.csv.truth.json")).unwrap();
    let plan = crate::plan::SourcePlan {
        name: "load".into(),
        format: crate::plan::Format::Csv,
        paths: vec![dir.path().join("ctx/load_samples.csv")],
        time_field: "time".into(),
        type_field: String::new(),
        fixed_type: Some("load".into()),
        time_unit_ms: 1.0,
        allowed_lateness_ms: 0,
        projection: None,
        limits: Default::default(),
        fields: crate::plan::Fields::Closed,
        csv: CsvOptions {
            columns: METRICS.iter().map(|m| (m.to_string(), CsvType::Float)).collect(),
            ..CsvOptions::default()
        },
    };
    let layout = Layout::discover(&plan).unwrap();
    let mut read = reader(&plan, &layout);
    let (mut events, mut bad, mut nan) = (0, Vec::new(), 0);
    for split in &layout.splits {
        read.read(split, &mut |chunk| {
            for d in chunk.drain(..) {
                match d {
                    Decoded::Event(e, _) => {
                        events += 1;
                        nan += e
                            .payload
                            .iter()
                            .filter(|(_, v)| v.as_f64().is_some_and(f64::is_nan))
                            .count();
                    }
                    Decoded::Bad(l) => bad.push(l.reason),
                }
            }
        })
        .unwrap();
    }
    assert_eq!(events + bad.len(), truth.counts.samples);
    assert!(bad.iter().all(|r| r == "malformed_csv"), "{bad:?}");
    assert!(nan > 0 && !bad.is_empty(), "{nan} NaN, {} bad", bad.len());
    assert!(nan + bad.len() <= truth.counts.garbage);
}

#[test]
fn options_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), "e.ndjson", 1, 10, 1);
    c.context = None;
    assert!(generate_with(&c).unwrap_err().to_string().contains("--context"));
    let c = GenerateConfig {
        regions: Some(1),
        ..config(dir.path(), "e.ndjson", 1, 10, 1)
    };
    assert!(generate_with(&c).unwrap_err().is_usage());
    let c = config(dir.path(), "e.txt", 1, 10, 1);
    let e = generate_with(&c).unwrap_err();
    assert!(e.is_usage() && e.to_string().contains(".csv"), "{e}");
    let c = GenerateConfig {
        regions: Some(3),
        ..GenerateConfig::new("learning", 10, 1, &dir.path().join("l.ndjson"))
    };
    assert!(generate_with(&c).unwrap_err().to_string().contains("--regions"));
}

#[test]
fn every_copy_is_acknowledged_in_time_order_and_failures_are_retried() {
    use super::completions::{Completions, ATTEMPTS, REPLICAS, UNKNOWN_REGION_NAME};
    let dir = tempfile::tempdir().unwrap();
    generate_with(&config(dir.path(), "e.ndjson", 9, 20_000, 7)).unwrap();
    let truth = read_truth(&dir.path().join("e.ndjson.truth.json")).unwrap();
    let placement = Completions::new(&truth, 0);
    // Each event's copies: where it was served, then the ring's next regions from its shard.
    let mut expected: BTreeMap<i64, (i64, Vec<String>)> = BTreeMap::new();
    for line in std::fs::read_to_string(dir.path().join("e.ndjson")).unwrap().lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        let row = super::events::EventRow {
            time: crate::value::parse_time(e["event_time"].as_str().unwrap()).unwrap(),
            kind: "api_call",
            id: e["event_id"].as_i64().unwrap(),
            region: truth.region(e["region"].as_str().unwrap()).unwrap(),
            home: 0,
            user_id: e["user_id"].as_i64().unwrap(),
            device_id: 0,
            priority: None,
            complexity: None,
            payload_bytes: 0,
        };
        let targets: Vec<String> = placement
            .targets(&row)
            .iter()
            .map(|r| truth.regions[*r].name.clone())
            .collect();
        assert_eq!(targets.len(), REPLICAS);
        assert_eq!(targets[0], truth.regions[row.region].name, "the serving region first");
        expected.insert(row.id, (row.time, targets));
    }
    // (event, region) → statuses in order.
    let mut acks: BTreeMap<(i64, String), Vec<bool>> = BTreeMap::new();
    let (mut last, mut rows, mut unknown_event, mut unknown_region) = (i64::MIN, 0, 0, 0);
    for line in std::fs::read_to_string(dir.path().join("ctx/completions.ndjson"))
        .unwrap()
        .lines()
    {
        let c: serde_json::Value = serde_json::from_str(line).unwrap();
        let t = crate::value::parse_time(c["time"].as_str().unwrap()).unwrap();
        assert!(t >= last, "completions are in time order");
        last = t;
        rows += 1;
        let (id, region) = (
            c["event_id"].as_i64().unwrap(),
            c["region"].as_str().unwrap().to_string(),
        );
        let Some((time, targets)) = expected.get(&id) else {
            unknown_event += 1;
            continue;
        };
        if region == UNKNOWN_REGION_NAME {
            unknown_region += 1;
            continue;
        }
        assert!(t > *time, "acknowledged after the event");
        assert!(
            targets.contains(&region),
            "event {id}: {region} is not one of {targets:?}"
        );
        acks.entry((id, region)).or_default().push(c["status"] == "completed");
    }
    let c = &truth.counts;
    assert_eq!(rows, c.completions);
    assert_eq!(
        (unknown_event, unknown_region),
        (c.completions_unknown_event, c.completions_unknown_region)
    );
    assert!(
        unknown_event > 0 && unknown_region > 0 && c.completions_failed > 0,
        "{c:?}"
    );
    assert_eq!(acks.len(), expected.len() * REPLICAS, "every copy is acknowledged");
    let mut failed_for_good = 0;
    for ((id, region), statuses) in &acks {
        // Attempts stop at the first success or after the last one.
        let first_ok = statuses.iter().position(|ok| *ok);
        assert!(statuses.len() <= ATTEMPTS as usize, "{id} {region}: {statuses:?}");
        match first_ok {
            Some(k) => assert_eq!(k + 1, statuses.len(), "{id} {region}: {statuses:?}"),
            None => {
                assert_eq!(statuses.len(), ATTEMPTS as usize);
                failed_for_good += 1;
            }
        }
    }
    // Failures concentrate in the outage: far more than the 0.2% elsewhere.
    let failed = acks.values().filter(|s| !s[0]).count();
    assert!(failed as f64 > 0.002 * acks.len() as f64, "{failed} of {}", acks.len());
    assert!(failed_for_good < failed, "most failures are retried successfully");
}
