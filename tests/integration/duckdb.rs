//! External oracle: DuckDB SQL over the same Parquet file computes the learning spec's windowed
//! aggregates; they must equal sluice's Parquet outputs. DuckDB is installed into `.venv/` by
//! `tests/setup-python.sh`.

use std::process::Command;

use crate::util::{repo, sluice};

#[test]
fn learning_aggregates_equal_duckdb_sql() {
    let setup = Command::new("bash")
        .arg(repo().join("tests/setup-python.sh"))
        .output()
        .expect("bash runs");
    assert!(
        setup.status.success(),
        "setup-python.sh failed: {}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let python = String::from_utf8(setup.stdout).unwrap().trim().to_string();

    let tmp = tempfile::tempdir().unwrap();
    let spec = repo().join("dataflows/learning_analytics.toml");
    let run = sluice(
        &[
            "run",
            spec.to_str().unwrap(),
            "--workers",
            "2",
            "--out",
            "out",
            "--quiet",
        ],
        tmp.path(),
    );
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    let oracle = Command::new(&python)
        .arg(repo().join("tests/oracle/duckdb_windows.py"))
        .arg(repo().join("data/learning_sample.parquet"))
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&oracle.stdout);
    assert!(
        oracle.status.success(),
        "DuckDB disagrees:\n{report}{}",
        String::from_utf8_lossy(&oracle.stderr)
    );
    assert_eq!(report.matches(": ok").count(), 5, "{report}");
}
