//! The spec parser and validation: TOML text to a plan, or an error with a location.

use std::collections::BTreeSet;
use std::path::Path;

use crate::plan::plan_str;
use crate::plan::retention::retention;

/// The bytes, read as UTF-8 (lossily), are a spec file.
pub fn spec(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (file, base) = (Path::new("fuzz.toml"), Path::new("/nonexistent"));
    let plan = match plan_str(&text, file, base, &[]) {
        Ok(plan) => plan,
        Err(e) => {
            let lines = text.split('\n').count();
            assert!(e.line <= lines, "line {} of {lines}: {e}", e.line);
            if e.line > 0 {
                let line = text.split('\n').nth(e.line - 1).unwrap_or_default();
                assert!(
                    e.column >= 1 && e.column <= line.chars().count() + 1,
                    "column {}: {e}",
                    e.column
                );
            }
            let _ = e.to_string();
            return;
        }
    };
    // `sluice check --plan` prints it; planning again prints the same.
    let printed = serde_json::to_string(&plan).expect("a plan serializes");
    let again = plan_str(&text, file, base, &[]).expect("a spec plans twice");
    assert_eq!(serde_json::to_string(&again).expect("a plan serializes"), printed);
    let names = plan.output_names();
    let distinct: BTreeSet<&String> = names.iter().collect();
    assert_eq!(distinct.len(), names.len(), "output names are unique: {names:?}");
    let kept = retention(&plan);
    for source in 0..plan.sources.len() {
        let _ = kept.last_effect(source, i64::MAX);
        let _ = kept.last_effect(source, 0);
    }
}
