//! Forecasts served over TCP (`dataflows/tcp/regional_load_stream.toml`): `sluice serve` with two
//! workers gives the same forecasts, realized errors and dead letters as `sluice run` of the same
//! samples, and live lookups by region (`/collections/load_forecast?region=...`) equal the
//! Parquet outputs written at shutdown.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::serve_http::{assert_same, lookup, parquet_contents, send_line_as, wait_frontier, Live};
use crate::serve_util::{outputs, reasons, send, Server};
use crate::util::{repo, sluice};

const REGIONS: [&str; 3] = ["us-east", "eu-west", "ap-south"];

fn spec() -> PathBuf {
    repo().join("dataflows/tcp/regional_load_stream.toml")
}

/// Three days of the `regions` scenario's load samples as NDJSON (garbage values are text, so
/// dead letters `non_numeric`), then three samples of a region the spec does not allow.
fn samples(dir: &Path, seed: u64) -> PathBuf {
    let args =
        format!("generate regions --regions 3 --events 500 --span 3d --seed {seed} --out events.ndjson --context ctx");
    let out = sluice(&args.split(' ').collect::<Vec<_>>(), dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let path = dir.join("ctx/load_samples.ndjson");
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    for minute in 10..13 {
        writeln!(
            f,
            r#"{{"time":"2024-03-07T00:{minute}:00Z","region":"sa-east","cpu":40.0,"memory":50.0}}"#
        )
        .unwrap();
    }
    path
}

#[test]
fn served_forecasts_equal_replayed_forecasts() {
    let dir = tempfile::tempdir().unwrap();
    let samples = samples(dir.path(), 5);
    let lines = std::fs::read_to_string(&samples).unwrap().lines().count();
    let server = Server::start(
        dir.path(),
        &spec(),
        "127.0.0.1:0",
        &["--out", "served", "--workers", "2", "--idle-timeout", "off"],
    );
    let report = send(dir.path(), &samples, server.addr, &[]);
    assert!(report.contains(&format!("acknowledged {lines}")), "{report}");
    server.stop();
    let input = format!("load={}", samples.display());
    let run = sluice(
        &[
            "run",
            spec().to_str().unwrap(),
            "--input",
            &input,
            "--out",
            "replayed",
            "-q",
        ],
        dir.path(),
    );
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let (served, replayed) = (
        outputs(&dir.path().join("served")),
        outputs(&dir.path().join("replayed")),
    );
    assert_eq!(
        replayed.keys().collect::<Vec<_>>(),
        ["dead_letters", "load_forecast", "load_forecast_errors"]
    );
    assert_eq!(served.keys().collect::<Vec<_>>(), replayed.keys().collect::<Vec<_>>());
    for (name, rows) in &replayed {
        assert!(!rows.is_empty(), "{name} is empty");
        assert!(served[name] == *rows, "{name} differs between serve and replay");
    }
    // Models beyond the baselines were fitted and scored.
    assert!(replayed["load_forecast_errors"].iter().any(|r| r.contains("\"ets\"")));
    assert!(replayed["load_forecast_errors"].iter().any(|r| r.contains("\"ar\"")));
    let why = reasons(&dir.path().join("served"));
    assert_eq!(why.get("unknown_key"), Some(&3), "{why:?}");
    assert!(why.get("non_numeric").is_some_and(|n| *n > 0), "{why:?}");
}

/// The time of the sample that moves the watermark past every step sent.
const FLUSH_MS: u64 = 1_710_028_800_000; // 2024-03-10T00:00:00Z

#[test]
fn live_lookups_by_region_equal_the_parquet_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let samples = samples(dir.path(), 6);
    let live = Live::start_spec(dir.path(), &spec(), &["--workers", "2"]);
    send(dir.path(), &samples, live.listen, &["--client", "c"]);
    // One sample far ahead, from the sender's own partition (after its lines), of a region the
    // spec does not allow: a dead letter that moves the watermark past every step sent.
    send_line_as(
        live.listen,
        "c-0",
        r#"{"time":"2024-03-10T00:00:00Z","region":"flush","cpu":1}"#,
    );
    wait_frontier(live.http, FLUSH_MS - 300_000);
    let by_region: Vec<_> = REGIONS
        .iter()
        .map(|r| lookup(live.http, &format!("/collections/load_forecast?region={r}")))
        .collect();
    let one_series = lookup(live.http, "/collections/load_forecast?region=eu-west&metric=cpu");
    let unknown = lookup(live.http, "/collections/load_forecast?region=flush");
    live.stop();

    let parquet = parquet_contents(&dir.path().join("served/load_forecast"));
    for (region, rows) in REGIONS.iter().zip(&by_region) {
        // Four metrics, twelve steps ahead each, one row per step.
        assert_eq!(rows.values().sum::<i64>(), 48, "{region}");
        let expected = parquet
            .iter()
            .filter(|(row, _)| serde_json::from_str::<Json>(row).unwrap()["region"] == *region)
            .map(|(r, n)| (r.clone(), *n))
            .collect();
        assert_same(region, rows, &expected);
    }
    assert_eq!(one_series.len(), 12);
    assert!(one_series.keys().all(|k| by_region[1].contains_key(k)));
    assert!(unknown.is_empty(), "{unknown:?}");
}
