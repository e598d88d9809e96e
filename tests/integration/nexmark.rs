//! The Nexmark suite (`dataflows/nexmark/qN.toml`): each query runs end to end through the
//! CLI (`sluice run --out`) on `sluice generate nexmark` data with 1, 2 and 4 workers, and
//! its output's contents must equal DuckDB running the query's SQL (`qN.sql`) on the same
//! files, as checked by `tests/nexmark_check.py`.

use crate::util::{repo, sluice};

/// Events generated for the suite: enough for every query to have rows, small enough for CI.
const EVENTS: &str = "20000";

#[test]
fn every_nexmark_query_equals_duckdb_with_1_2_and_4_workers() {
    let dir = tempfile::tempdir().unwrap();
    let generated = sluice(
        &["generate", "nexmark", "--events", EVENTS, "--out", "data"],
        dir.path(),
    );
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let data = dir.path().join("data");
    let queries_dir = repo().join("dataflows/nexmark");
    let mut queries: Vec<String> = std::fs::read_dir(&queries_dir)
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            (path.extension()? == "toml").then(|| path.file_stem()?.to_str().map(String::from))?
        })
        .collect();
    queries.sort();
    assert!(queries.len() >= 8, "{queries:?}");
    for q in &queries {
        let spec = queries_dir.join(format!("{q}.toml"));
        let sql = queries_dir.join(format!("{q}.sql"));
        assert!(sql.exists(), "{q}.toml has no {q}.sql to check it against");
        let text = std::fs::read_to_string(&spec).unwrap();
        let inputs: Vec<String> = ["person", "auction", "bid", "side_input"]
            .iter()
            .filter(|t| text.contains(&format!("[sources.{t}]")))
            .flat_map(|t| {
                [
                    "--input".to_string(),
                    format!("{t}={}", data.join(format!("{t}.parquet")).display()),
                ]
            })
            .collect();
        let mut rows = None;
        for workers in ["1", "2", "4"] {
            let out = dir.path().join(format!("out-{q}-{workers}"));
            let mut args = vec![
                "run",
                spec.to_str().unwrap(),
                "--workers",
                workers,
                "--out",
                out.to_str().unwrap(),
            ];
            args.extend(inputs.iter().map(String::as_str));
            let run = sluice(&args, dir.path());
            assert!(run.status.success(), "{q}: {}", String::from_utf8_lossy(&run.stderr));
            let check = std::process::Command::new(crate::duckdb::python())
                .arg(repo().join("tests/nexmark_check.py"))
                .args([&data, &out, &sql])
                .arg(q)
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&check.stdout).to_string();
            assert!(
                check.status.success(),
                "{q} with {workers} workers differs from DuckDB:\n{said}{}",
                String::from_utf8_lossy(&check.stderr)
            );
            let n: u64 = said.trim().parse().unwrap();
            assert!(n > 0, "{q}: DuckDB's result is empty: the check would prove nothing");
            match rows {
                None => rows = Some(n),
                Some(r) => assert_eq!(r, n),
            }
        }
    }
}
