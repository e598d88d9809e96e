//! What several benches share: the project's Python venv (`tests/setup-python.sh`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The venv's python, with DuckDB, after `tests/setup-python.sh` made sure of it. Panics with
/// the script's stderr when it fails.
#[allow(dead_code)] // each bench is its own crate; `nexmark` calls only `try_venv_python`
pub fn venv_python() -> PathBuf {
    try_venv_python().unwrap_or_else(|e| panic!("tests/setup-python.sh: {e}"))
}

/// The same, or why not (the script could not start, or failed).
pub fn try_venv_python() -> Result<PathBuf, String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/setup-python.sh");
    let setup = Command::new("bash").arg(script).output().map_err(|e| e.to_string())?;
    if !setup.status.success() {
        return Err(String::from_utf8_lossy(&setup.stderr).into_owned());
    }
    let stdout = String::from_utf8(setup.stdout).map_err(|e| e.to_string())?;
    Ok(PathBuf::from(stdout.trim()))
}

/// The `learning` log of `n` events (seed 42) with its context tables, in
/// `bench-data/pipeline-N/` (`events.parquet`, `ctx/profiles.parquet`, `ctx/items.parquet`),
/// generated on first use: the pipeline and memory benches' input.
#[allow(dead_code)]
pub fn learning_log(n: usize) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("bench-data/pipeline-{n}"));
    if !dir.join("events.parquet").exists() {
        eprintln!("generating {n} learning events into {}", dir.display());
        let mut config = sluice::generate::GenerateConfig::new("learning", n, 42, &dir.join("events.parquet"));
        config.context = Some(dir.join("ctx"));
        sluice::generate::generate_with(&config).unwrap();
    }
    dir
}

/// The arguments of `sluice run SPEC` over a learning log: its `events`, `profiles` and `items`
/// sources from these files, `workers` workers, every output written under `out`.
#[allow(dead_code)]
pub fn learning_run_args(spec: &Path, [events, profiles, items]: [&Path; 3], workers: &str, out: &Path) -> Vec<String> {
    let input = |name: &str, path: &Path| ["--input".to_string(), format!("{name}={}", path.display())];
    let mut args = vec!["run".to_string(), spec.display().to_string()];
    args.extend(input("events", events));
    args.extend(input("profiles", profiles));
    args.extend(input("items", items));
    args.extend(["--workers", workers, "--out"].map(String::from));
    args.extend([out.display().to_string(), "--quiet".to_string()]);
    args
}

/// The numbers GNU time printed as the last line of a child's stderr (`/usr/bin/time -f` with
/// `expected` numeric fields), after checking that the child succeeded.
#[allow(dead_code)]
pub fn gnu_time_fields(program: &Path, out: &std::process::Output, expected: usize) -> Vec<f64> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{} failed: {stderr}", program.display());
    let fields: Vec<f64> = (stderr.lines().last().unwrap_or("").split_whitespace())
        .filter_map(|s| s.parse().ok())
        .collect();
    assert_eq!(fields.len(), expected, "GNU time's line: {stderr}");
    fields
}
