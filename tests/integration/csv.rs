//! The CSV source: a directory of CSV files with good rows and every kind of malformed row
//! gives the aggregate that the same good rows give as NDJSON, with 1, 2 and 4 workers, and
//! each malformed row is a dead letter naming its file and line.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use sluice::value::Value;

use crate::util::{plan_text, run_collect, sluice, sorted_lines};

const REGIONS: [&str; 3] = ["eu-west", "us-east", "ap-south"];

/// One good row: time (ms), type, region, n, x, note.
struct Row {
    time: i64,
    kind: &'static str,
    region: &'static str,
    n: i64,
    x: f64,
    note: String,
}

fn rows(file: usize, count: usize) -> Vec<Row> {
    (0..count)
        .map(|i| {
            let k = file * count + i;
            Row {
                time: 1_700_000_000_000 + k as i64 * 61_000,
                kind: if k.is_multiple_of(5) { "slow" } else { "fast" },
                region: REGIONS[k % 3],
                n: (k * 7 % 100) as i64 - 20,
                x: (k % 13) as f64 + 0.25,
                note: match k % 4 {
                    0 => "plain".into(),
                    1 => "with, comma".into(),
                    2 => "say \"hi\"".into(),
                    _ => "two\nlines".into(),
                },
            }
        })
        .collect()
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The malformed rows written after good row `i` of a file, with their reasons.
fn malformed(i: usize) -> Option<(&'static [u8], &'static str)> {
    Some(match i {
        3 => (b"2023-11-14 22:15:00,fast,eu-west,1,2.5,too,many\n", "malformed_csv"),
        10 => (b"2023-11-14 22:15:00,fast,eu-west,1\n", "malformed_csv"),
        17 => (b"2023-11-14 22:15:00,fast,eu-west,seven,2.5,bad int\n", "malformed_csv"),
        24 => (b"2023-11-14 22:15:00,fast,eu-west,1,n/a,bad float\n", "malformed_csv"),
        31 => (b"14/11/2023,fast,eu-west,1,2.5,bad time\n", "bad_time"),
        38 => (b"2023-11-14 22:15:00,fast,eu-west,1,2.5,\"unclosed\n", "malformed_csv"),
        45 => (
            b"2023-11-14 22:15:00,fast,eu-\xffwest,1,2.5,bad bytes\n",
            "invalid_utf8",
        ),
        52 => (b"2023-11-14 22:15:00,,eu-west,1,2.5,no type\n", "missing_type"),
        _ => return None,
    })
}

/// Writes `files` CSV files and the same good rows as NDJSON files; returns the expected dead
/// letters as (reason, location).
fn write_inputs(dir: &Path, files: usize, per_file: usize) -> Vec<(String, String)> {
    let (csv_dir, json_dir) = (dir.join("csv"), dir.join("json"));
    std::fs::create_dir_all(&csv_dir).unwrap();
    std::fs::create_dir_all(&json_dir).unwrap();
    let mut letters = Vec::new();
    for f in 0..files {
        let csv_path = csv_dir.join(format!("part-{f}.csv"));
        let mut csv = b"time,kind,region,n,x,note\r\n".to_vec();
        let mut line = 2;
        let mut json = String::new();
        for (i, r) in rows(f, per_file).iter().enumerate() {
            let time = chrono::DateTime::from_timestamp_millis(r.time)
                .unwrap()
                .format("%Y-%m-%d %H:%M:%S");
            let text = format!(
                "{time},{},{},{},{},{}\n",
                r.kind,
                r.region,
                r.n,
                r.x,
                csv_field(&r.note)
            );
            line += text.matches('\n').count();
            csv.extend_from_slice(text.as_bytes());
            let note = serde_json::to_string(&r.note).unwrap();
            writeln!(
                json,
                r#"{{"time":{},"kind":"{}","region":"{}","n":{},"x":{},"note":{note}}}"#,
                r.time, r.kind, r.region, r.n, r.x
            )
            .unwrap();
            if let Some((bad, reason)) = malformed(i) {
                letters.push((reason.to_string(), format!("{}:{line}", csv_path.display())));
                csv.extend_from_slice(bad);
                line += 1;
            }
        }
        std::fs::write(&csv_path, csv).unwrap();
        std::fs::write(json_dir.join(format!("part-{f}.ndjson")), json).unwrap();
    }
    letters.sort();
    letters
}

fn spec(path: &str, extra: &str) -> String {
    format!(
        r#"
[pipeline]
name = "csv"
[sources.events]
path = "{path}"
time_field = "time"
type_field = "kind"
{extra}
[[aggregates]]
name = "by_region"
source = "events"
window = {{ tumbling = "1h" }}
group_by = ["region"]
emit = "final"
measures.events = "count()"
measures.slow = "count() where kind == 'slow'"
measures.n = "sum(n)"
measures.x = "avg(x)"
measures.x_max = "max(x)"
measures.notes = "count_distinct(note)"
"#
    )
}

/// Final rows as sorted values (ints and floats compare by value).
fn values(summary: &sluice::run::RunSummary, name: &str) -> Vec<(Vec<Value>, isize)> {
    let mut acc: BTreeMap<Vec<Value>, isize> = BTreeMap::new();
    for (row, _, d) in &summary.collected[name] {
        *acc.entry(row.clone()).or_default() += d;
    }
    acc.into_iter().filter(|(_, d)| *d != 0).collect()
}

#[test]
fn csv_with_malformed_rows_aggregates_like_ndjson_with_any_number_of_workers() {
    let dir = tempfile::tempdir().unwrap();
    let want_letters = write_inputs(dir.path(), 4, 60);
    let csv = plan_text(
        &spec(
            "csv",
            "format = \"csv\"\ntime_format = \"%Y-%m-%d %H:%M:%S\"\ncolumns = { n = \"int\", x = \"float\" }",
        ),
        dir.path(),
    );
    let json = plan_text(&spec("json", "format = \"ndjson\""), dir.path());
    let reference = run_collect(&json, 1);
    assert!(reference.collected[sluice::DEAD_LETTERS].is_empty());
    let want = values(&reference, "by_region");
    assert!(want.len() > 10, "{want:?}");
    let mut first: Option<BTreeMap<String, Vec<String>>> = None;
    for workers in [1, 2, 4] {
        let summary = run_collect(&csv, workers);
        assert_eq!(values(&summary, "by_region"), want, "{workers} workers");
        let mut letters: Vec<(String, String)> = summary.collected[sluice::DEAD_LETTERS]
            .iter()
            .map(|(row, _, _)| (row[1].to_string(), row[3].to_string()))
            .collect();
        letters.sort();
        assert_eq!(letters, want_letters, "{workers} workers");
        let lines = sorted_lines(&summary.collected);
        match &first {
            None => first = Some(lines),
            Some(f) => assert_eq!(&lines, f, "outputs with {workers} workers"),
        }
    }
    let detail: Vec<String> = run_collect(&csv, 1).collected[sluice::DEAD_LETTERS]
        .iter()
        .map(|(row, _, _)| row[2].to_string())
        .collect();
    for part in [
        "column `n`: `seven` is not a valid Int64",
        "column `x`: `n/a` is not a valid Float64",
        "7 fields where the header has 6",
        "does not match time_format",
    ] {
        assert!(detail.iter().any(|d| d.contains(part)), "{part}: {detail:?}");
    }
}

#[test]
fn csv_fields_are_checked_against_the_header() {
    let dir = tempfile::tempdir().unwrap();
    write_inputs(dir.path(), 1, 5);
    let text = spec("csv", "format = \"csv\"").replace("group_by = [\"region\"]", "group_by = [\"regoin\"]");
    std::fs::write(dir.path().join("x.toml"), text).unwrap();
    let out = sluice(&["check", "x.toml"], dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no field `regoin`") && err.contains("did you mean `region`?"),
        "{err}"
    );
}

/// `sluice generate regions` writes the same events as CSV and NDJSON, and a spec reads them
/// alike (a missing `priority` is an empty CSV field and an absent NDJSON key).
#[test]
fn generated_regions_events_read_alike_from_csv_and_ndjson() {
    let dir = tempfile::tempdir().unwrap();
    for ext in ["csv", "ndjson"] {
        let out = sluice(
            &[
                "generate",
                "regions",
                "--regions",
                "3",
                "--events",
                "3000",
                "--span",
                "1d",
                "--seed",
                "8",
                "--out",
                &format!("e.{ext}"),
                "--context",
                ext,
            ],
            dir.path(),
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("wrote 3000 events") && text.contains(&format!("load_samples.{ext}")),
            "{text}"
        );
    }
    let spec = |path: &str| {
        format!(
            r#"
[pipeline]
name = "regions"
[sources.events]
path = "{path}"
time_field = "event_time"
type_field = "event_type"
[[aggregates]]
name = "per_region"
source = "events"
window = {{ tumbling = "1h" }}
group_by = ["region", "home_region"]
emit = "final"
measures.events = "count()"
measures.priority = "sum(priority)"
measures.rated = "count(complexity)"
measures.bytes = "sum(payload_bytes)"
measures.users = "count_distinct(user_id)"
"#
        )
    };
    let json = run_collect(&plan_text(&spec("e.ndjson"), dir.path()), 1);
    let want = values(&json, "per_region");
    assert!(want.len() > 48, "{}", want.len());
    let csv = plan_text(&spec("e.csv"), dir.path());
    for workers in [1, 2] {
        assert_eq!(
            values(&run_collect(&csv, workers), "per_region"),
            want,
            "{workers} workers"
        );
    }
}
