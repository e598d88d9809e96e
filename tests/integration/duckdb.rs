//! External oracles: DuckDB over the same Parquet files recomputes what sluice's Parquet outputs
//! must hold. DuckDB is installed into `.venv/` by `tests/setup-python.sh`.
//! - `learning_aggregates_equal_duckdb_sql`: the learning spec's windowed aggregates
//!   (`tests/oracle/duckdb_windows.py`);
//! - `*_enrichment_equals_duckdb_asof`: every row of a shipped spec's `enriched` output against
//!   DuckDB's `ASOF JOIN` (and, for IP ranges, Python's `ipaddress`), the set of enriched rows
//!   against lateness, dedup and block rules recomputed in SQL, and ordered delivery per user
//!   (`tests/oracle/duckdb_asof.py`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::util::{repo, sluice};

/// The venv's python, with DuckDB installed (set up once: the tests run in parallel).
pub fn python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let setup = Command::new("bash")
            .arg(repo().join("tests/setup-python.sh"))
            .output()
            .expect("bash runs");
        assert!(
            setup.status.success(),
            "setup-python.sh failed: {}",
            String::from_utf8_lossy(&setup.stderr)
        );
        String::from_utf8(setup.stdout).unwrap().trim().to_string()
    })
}

/// Runs `sluice generate nexmark --events 100000` into `dir/nexmark`; the bid file's path.
pub fn nexmark_bids(dir: &Path) -> PathBuf {
    let generated = sluice(&["generate", "nexmark", "--events", "100000", "--out", "nexmark"], dir);
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    dir.join("nexmark/bid.parquet")
}

/// The rows of DuckDB query `sql`, each as integers.
pub fn int_rows(sql: &str) -> Vec<Vec<i64>> {
    let script = format!("import duckdb\nfor r in duckdb.sql({sql:?}).fetchall(): print(*r)");
    let out = Command::new(python()).args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect())
        .collect()
}

/// Runs the shipped spec `dataflows/NAME.toml` on 2 workers into `dir/out`.
fn run_spec(name: &str, dir: &Path) -> PathBuf {
    let spec = repo().join(format!("dataflows/{name}.toml"));
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
        dir,
    );
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    dir.join("out")
}

/// Runs `tests/oracle/SCRIPT` with `args`; asserts it passes with `checks` lines ending in `: ok`.
fn oracle(script: &str, args: &[PathBuf], checks: usize) {
    let oracle = Command::new(python())
        .arg(repo().join("tests/oracle").join(script))
        .args(args)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&oracle.stdout);
    assert!(
        oracle.status.success(),
        "DuckDB disagrees:\n{report}{}",
        String::from_utf8_lossy(&oracle.stderr)
    );
    assert_eq!(report.matches(": ok").count(), checks, "{report}");
}

#[test]
fn learning_aggregates_equal_duckdb_sql() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_spec("learning_analytics", tmp.path());
    oracle(
        "duckdb_windows.py",
        &[repo().join("data/learning_sample.parquet"), out],
        5,
    );
}

#[test]
fn learning_enrichment_equals_duckdb_asof() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_spec("learning_analytics", tmp.path());
    let data = repo().join("data");
    oracle(
        "duckdb_asof.py",
        &[
            "learning_analytics".into(),
            out,
            data.join("learning_sample.parquet"),
            data.join("learning_context/profiles.parquet"),
            data.join("learning_context/items.parquet"),
        ],
        4,
    );
}

#[test]
fn payload_augmentation_equals_duckdb_asof() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_spec("payload_augmentation", tmp.path());
    let (data, context) = (repo().join("data"), repo().join("data/uploads_context"));
    oracle(
        "duckdb_asof.py",
        &[
            "payload_augmentation".into(),
            out,
            data.join("uploads_sample.parquet"),
            context.join("geo.parquet"),
            context.join("profiles.parquet"),
            context.join("sensors.parquet"),
            context.join("prices.parquet"),
        ],
        6,
    );
}
