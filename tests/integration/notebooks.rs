//! Every notebook in `notebooks/` executes without error: `notebooks/run_notebooks.sh` runs each
//! one headlessly (its packages come into `.venv/` from PyPI), with the built binary as the
//! notebooks' sluice and their outputs in a temporary folder. A notebook's own checks are cells
//! that raise, so they fail this test too (the learning notebook reconciles every raw attempt
//! with sluice's outputs and with DuckDB). The committed notebooks are only read.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::script::run_bounded;
use crate::util::{repo, sluice_bin};

/// Bounds the whole run, package installation included (a first install takes about a minute).
const DEADLINE: Duration = Duration::from_secs(600);

fn committed_notebooks() -> Vec<(PathBuf, Vec<u8>)> {
    let mut notebooks: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(repo().join("notebooks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ipynb"))
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    notebooks.sort();
    notebooks
}

#[test]
fn notebooks_execute() {
    let before = committed_notebooks();
    assert!(!before.is_empty(), "no notebooks in notebooks/");
    let tmp = tempfile::tempdir().unwrap();
    let mut command = Command::new("bash");
    command
        .arg(repo().join("notebooks/run_notebooks.sh"))
        .env("SLUICE_BIN", sluice_bin())
        .env("NOTEBOOKS_OUT", tmp.path().join("out"));
    let (status, log) = run_bounded(command, DEADLINE);
    let status = status.unwrap_or_else(|| panic!("notebooks still running after {DEADLINE:?}:\n{log}"));
    assert!(status.success(), "a notebook failed:\n{log}");
    let summary = format!("{} passed, 0 failed", before.len());
    assert!(log.lines().any(|l| l == summary), "expected `{summary}`:\n{log}");
    assert!(
        committed_notebooks() == before,
        "run_notebooks.sh without --write changed a committed notebook"
    );
    // Each notebook wrote its sluice outputs into its own folder under NOTEBOOKS_OUT.
    for (path, _) in &before {
        let out = tmp.path().join("out").join(path.file_stem().unwrap());
        assert!(out.is_dir(), "{} wrote no outputs to {}", path.display(), out.display());
    }
}
