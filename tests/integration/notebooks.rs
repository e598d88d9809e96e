//! Every notebook in `notebooks/` executes without error: `notebooks/run_notebooks.sh` runs each
//! one headlessly (its packages come into `.venv/` from PyPI), with the built binary as the
//! notebooks' sluice and their outputs in a temporary folder. A notebook's own checks are cells
//! that raise, so they fail this test too (the learning notebook reconciles every raw attempt
//! with sluice's outputs and with DuckDB). The committed notebooks are only read.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

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

/// Ends `child` and its process group: SIGTERM, then SIGKILL to what is left after 10 s. (A
/// kernel has a process group of its own; it ends when its runner does, with the sluice it runs.)
fn stop(child: &mut Child) {
    let group = format!("-{}", child.id());
    let signal = |sig: &str| {
        Command::new("kill")
            .args([sig, "--", &group])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    signal("-TERM");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        let _ = child.try_wait(); // reap the runner, or it stays in the group as a zombie
        if !signal("-0") {
            return;
        }
        sleep(Duration::from_millis(200));
    }
    signal("-KILL");
    let _ = child.wait();
}

#[test]
fn notebooks_execute() {
    let before = committed_notebooks();
    assert!(!before.is_empty(), "no notebooks in notebooks/");
    let tmp = tempfile::tempdir().unwrap();
    let (stdout, stderr) = (tmp.path().join("stdout"), tmp.path().join("stderr"));
    let mut child = Command::new("bash")
        .arg(repo().join("notebooks/run_notebooks.sh"))
        .env("SLUICE_BIN", sluice_bin())
        .env("NOTEBOOKS_OUT", tmp.path().join("out"))
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout).unwrap())
        .stderr(fs::File::create(&stderr).unwrap())
        .process_group(0) // so that a timeout can end the runner and what it started
        .spawn()
        .expect("bash runs");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > DEADLINE {
            stop(&mut child);
            break None;
        }
        sleep(Duration::from_millis(200));
    };
    let log = format!(
        "{}{}",
        fs::read_to_string(&stdout).unwrap_or_default(),
        fs::read_to_string(&stderr).unwrap_or_default()
    );
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
