//! Fuzzing. Every committed corpus input and crash reproducer (`fuzz/corpus/TARGET`,
//! `fuzz/regressions/TARGET`) goes through its target's checks (`sluice::fuzzing`) on the
//! stable toolchain; `fuzz/run.sh 30` then fuzzes each target for 30 s under libFuzzer (nightly
//! toolchain and cargo-fuzz, which it installs when missing; the first build of the targets
//! takes most of the time).

use std::collections::BTreeSet;
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use sluice::fuzzing::TARGETS;

use crate::script::run_bounded;
use crate::util::repo;

/// Bounds `fuzz/run.sh 30`: a cold build of the targets, then 30 s per target.
const DEADLINE: Duration = Duration::from_secs(45 * 60);

fn files(dir: PathBuf) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match fs::read_dir(&dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// The targets of `fuzz/fuzz_targets/` are the library's, each calling its function.
#[test]
fn fuzz_targets_are_the_librarys() {
    let on_disk: BTreeSet<String> = files(repo().join("fuzz/fuzz_targets"))
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let listed: BTreeSet<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(on_disk, listed);
    for name in &listed {
        let source = fs::read_to_string(repo().join(format!("fuzz/fuzz_targets/{name}.rs"))).unwrap();
        assert!(source.contains(&format!("sluice::fuzzing::{name}(data)")), "{name}.rs");
    }
}

#[test]
fn fuzz_corpora_and_regressions_replay() {
    let mut failures = Vec::new();
    for (name, target) in TARGETS {
        let corpus = files(repo().join("fuzz/corpus").join(name));
        assert!(!corpus.is_empty(), "no corpus for {name}");
        for path in corpus
            .into_iter()
            .chain(files(repo().join("fuzz/regressions").join(name)))
        {
            let data = fs::read(&path).unwrap();
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| target(&data))) {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{}: {message}", path.display()));
            }
        }
    }
    assert!(failures.is_empty(), "inputs that fail:\n{}", failures.join("\n"));
}

#[test]
fn fuzz_targets_run_briefly() {
    let mut command = Command::new("nice");
    command
        .args(["-n", "19", "bash"])
        .arg(repo().join("fuzz/run.sh"))
        .arg("30");
    // The targets are built by the nightly toolchain, in fuzz/target, whatever this test's
    // cargo was told.
    for var in [
        "CARGO",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTFLAGS",
        "RUSTUP_TOOLCHAIN",
    ] {
        command.env_remove(var);
    }
    let (status, log) = run_bounded(command, DEADLINE);
    let status = status.unwrap_or_else(|| panic!("fuzz/run.sh still running after {DEADLINE:?}:\n{log}"));
    assert!(status.success(), "fuzz/run.sh 30 failed:\n{log}");
    for (name, _) in TARGETS {
        assert!(log.contains(&format!("fuzz: {name}: ok")), "{name} did not run:\n{log}");
    }
}
