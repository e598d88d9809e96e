//! Every `dataflows/*.toml` is checked and run against the shipped sample, and its outputs are
//! compared with golden files in `tests/golden/`. Set `SLUICE_BLESS=1` to regenerate them.
//! The same specs give identical outputs with 1, 2 and 4 workers, and on a second run.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::util::{digest, plan_spec, repo, run_collect, sorted_lines};

const SHOWN: usize = 12;

/// Replaces the checkout's path (in dead-letter locations) so golden files hold on any clone.
fn portable(outputs: BTreeMap<String, Vec<String>>) -> BTreeMap<String, Vec<String>> {
    let root = repo().display().to_string();
    outputs
        .into_iter()
        .map(|(name, lines)| {
            let mut lines: Vec<String> = lines.into_iter().map(|l| l.replace(&root, "$REPO")).collect();
            lines.sort();
            (name, lines)
        })
        .collect()
}

fn specs() -> Vec<std::path::PathBuf> {
    let mut specs: Vec<_> = std::fs::read_dir(repo().join("dataflows"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    specs.sort();
    assert!(!specs.is_empty());
    specs
}

#[test]
fn shipped_specs_match_golden_outputs_with_1_2_and_4_workers() {
    for spec in specs() {
        let plan = plan_spec(&spec);
        let reference = portable(sorted_lines(&run_collect(&plan, 1).collected));
        let mut text = String::new();
        for (name, lines) in &reference {
            writeln!(text, "## {name}: {} updates, digest {}", lines.len(), digest(lines)).unwrap();
            for line in lines.iter().take(SHOWN) {
                writeln!(text, "{line}").unwrap();
            }
        }
        let stem = spec.file_stem().unwrap().to_string_lossy().to_string();
        let golden = repo().join("tests/golden").join(format!("{stem}.txt"));
        if std::env::var_os("SLUICE_BLESS").is_some() {
            std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
            std::fs::write(&golden, &text).unwrap();
        } else {
            let want = std::fs::read_to_string(&golden)
                .unwrap_or_else(|_| panic!("{} is missing: run with SLUICE_BLESS=1", golden.display()));
            assert_eq!(text, want, "{} differs from {}", spec.display(), golden.display());
        }
        for workers in [2, 4] {
            let again = portable(sorted_lines(&run_collect(&plan, workers).collected));
            for (name, lines) in &reference {
                assert_eq!(
                    digest(lines),
                    digest(&again[name]),
                    "{stem}/{name} with {workers} workers"
                );
            }
        }
        let again = portable(sorted_lines(&run_collect(&plan, 1).collected));
        assert_eq!(reference, again, "{stem}: a second run differs");
    }
}

#[test]
fn late_events_become_dead_letters() {
    let plan = plan_spec(&repo().join("dataflows/learning_analytics.toml"));
    let summary = run_collect(&plan, 2);
    assert!(
        summary.late() > 0,
        "the sample has events later than the lateness bound"
    );
    let letters = &summary.collected[sluice::DEAD_LETTERS];
    let late = letters
        .iter()
        .filter(|(row, _, _)| row[1] == sluice::value::Value::str("late"))
        .count();
    assert_eq!(late as i64, summary.late());
    for (row, _, diff) in letters {
        assert_eq!(*diff, 1);
        assert!(row[0].to_string().starts_with("source:") || row[0].to_string().starts_with("aggregate:"));
    }
}
