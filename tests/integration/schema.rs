//! The schema stage on the `evolving` sample: versions are registered exactly at the generator's
//! change points with 1, 2 and 4 workers; incompatible candidates become dead letters or
//! quarantined events; the registry persists across runs; the `schema` commands work.

use std::collections::BTreeMap;
use std::process::Command;

use sluice::schema::compat::Compatibility;
use sluice::value::Value;

use crate::util::{plan_spec, repo, run_collect, sluice_bin};

fn truth() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(repo().join("data/evolving_sample.ndjson.truth.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// (event type, time) of every event in the sample.
fn sample_events() -> Vec<(String, i64)> {
    std::fs::read_to_string(repo().join("data/evolving_sample.ndjson"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let t = sluice::value::parse_time(v["event_time"].as_str().unwrap()).unwrap();
            (v["event_type"].as_str().unwrap().to_string(), t)
        })
        .collect()
}

#[test]
fn versions_are_registered_at_the_change_points() {
    let plan = plan_spec(&repo().join("dataflows/schema_evolution.toml"));
    let events = sample_events();
    for workers in [1, 2, 4] {
        let summary = run_collect(&plan, workers);
        let changes = &summary.collected["schema_changes"];
        let registered: Vec<(String, i64)> = changes
            .iter()
            .map(|(row, _, _)| match (&row[0], &row[6]) {
                (Value::Str(t), Value::Time(ms)) => (t.to_string(), *ms),
                other => panic!("unexpected row {other:?}"),
            })
            .collect();
        // Each type's first version comes with its first event.
        for kind in ["order_placed", "page_view", "sensor_reading"] {
            let first = events.iter().filter(|(k, _)| k == kind).map(|(_, t)| *t).min().unwrap();
            assert!(
                registered.contains(&(kind.to_string(), first - first % 1000)),
                "{kind} v1 with {workers} workers"
            );
        }
        for change in truth() {
            let kind = change["event_type"].as_str().unwrap();
            let at = change["time_ms"].as_i64().unwrap();
            let first = events
                .iter()
                .filter(|(k, t)| k == kind && *t >= at)
                .map(|(_, t)| *t)
                .min()
                .unwrap();
            let tick = first - first % 1000;
            assert!(
                registered.contains(&(kind.to_string(), tick)),
                "no version of {kind} at {} for {} ({workers} workers): {registered:?}",
                sluice::value::format_time(tick),
                change["change"]
            );
        }
        // Every conformed event carries its schema version.
        for (row, _, _) in &summary.collected["events_by_schema_version"] {
            assert!(matches!(row[1], Value::Int(v) if v >= 1), "{row:?}");
        }
        assert_eq!(
            summary.dead_letters.values().sum::<i64>(),
            0,
            "NONE accepts every change"
        );
    }
}

#[test]
fn incompatible_candidates_are_dead_lettered_or_quarantined() {
    let mut plan = plan_spec(&repo().join("dataflows/schema_evolution.toml"));
    plan.schemas_mut().next().unwrap().compatibility = Compatibility::Backward;
    let summary = run_collect(&plan, 2);
    let letters = &summary.collected[sluice::DEAD_LETTERS];
    let incompatible: Vec<_> = letters
        .iter()
        .filter(|(r, _, _)| r[1] == Value::str("incompatible_schema"))
        .collect();
    assert!(
        !incompatible.is_empty(),
        "BACKWARD rejects int -> string for sensor_id: {:?}",
        summary.dead_letters
    );
    assert!(
        incompatible
            .iter()
            .any(|(r, _, _)| r[2].to_string().contains("sensor_id")),
        "the rule names the field"
    );
    let versions: BTreeMap<String, usize> =
        summary.collected["schemas"]
            .iter()
            .fold(BTreeMap::new(), |mut m, (r, _, _)| {
                *m.entry(r[0].to_string()).or_default() += 1;
                m
            });
    assert_eq!(
        versions["sensor_reading"], 1,
        "the incompatible sensor_reading candidate is not registered"
    );

    plan.schemas_mut().next().unwrap().quarantine = true;
    let summary = run_collect(&plan, 2);
    assert_eq!(summary.dead_letters.get("incompatible_schema"), None);
    assert_eq!(
        summary.collected["quarantine"].len(),
        incompatible.len(),
        "the same events, quarantined"
    );
}

#[test]
fn the_registry_persists_and_a_restart_continues_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let mut plan = plan_spec(&repo().join("dataflows/schema_evolution.toml"));
    plan.schemas_mut().next().unwrap().registry_dir = Some(tmp.path().join("registry"));
    let first = run_collect(&plan, 2);
    let last_version = |s: &sluice::run::RunSummary, kind: &str| -> i64 {
        s.collected["schemas"]
            .iter()
            .filter(|(r, _, _)| r[0] == Value::str(kind))
            .filter_map(|(r, _, _)| if let Value::Int(v) = r[1] { Some(v) } else { None })
            .max()
            .unwrap_or(0)
    };
    let v = last_version(&first, "order_placed");
    assert!(tmp
        .path()
        .join("registry/order_placed")
        .join(format!("v{v}.json"))
        .exists());
    let second = run_collect(&plan, 1);
    let new_versions: Vec<i64> = second.collected["schema_changes"]
        .iter()
        .filter(|(r, _, _)| r[0] == Value::str("order_placed"))
        .filter_map(|(r, _, _)| if let Value::Int(v) = r[2] { Some(v) } else { None })
        .collect();
    assert!(
        new_versions.iter().all(|n| *n > v),
        "restart continues after v{v}: {new_versions:?}"
    );
    assert!(
        second.collected["schema_changes"]
            .iter()
            .all(|(r, _, _)| r[1] != Value::Null),
        "no type starts over at v1"
    );
}

#[test]
fn schema_commands_infer_and_diff() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(sluice_bin())
        .args(["schema", "infer"])
        .arg(repo().join("data/evolving_sample.ndjson"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let docs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(docs.as_object().unwrap().len(), 3);
    assert!(
        docs["order_placed"]["properties"]["shipping"]["properties"]["country"].is_object(),
        "{docs}"
    );

    let old = serde_json::json!({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}, "required": ["a", "b"]});
    let new = serde_json::json!({"type": "object", "properties": {"a": {"type": "number"}, "c": {"type": "string"}}, "required": ["a"]});
    std::fs::write(tmp.path().join("old.json"), old.to_string()).unwrap();
    std::fs::write(tmp.path().join("new.json"), new.to_string()).unwrap();
    let out = Command::new(sluice_bin())
        .args(["schema", "diff", "old.json", "new.json"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("drift"), "{text}");
    for mode in ["BACKWARD", "FORWARD", "FULL", "NONE"] {
        assert!(text.contains(mode), "{text}");
    }
}

#[test]
fn spec_defaults_fill_missing_fields() {
    let plan = plan_spec(&repo().join("dataflows/schema_evolution.toml"));
    let summary = run_collect(&plan, 2);
    // After coupon_code's first version, every order carries it: with its value or "none".
    let rows = &summary.collected["order_value_10m"];
    let later: Vec<_> = rows
        .iter()
        .filter(|(r, _, _)| matches!(r[0], Value::Time(t) if t >= 1_709_511_000_000))
        .collect();
    assert!(!later.is_empty());
    for (row, _, _) in later {
        assert_eq!(row[2], row[3], "orders == orders with a coupon code: {row:?}");
    }
}

#[test]
fn pinned_schemas_are_the_first_version() {
    let tmp = tempfile::tempdir().unwrap();
    let pinned = serde_json::json!({
        "type": "object",
        "properties": {"url": {"type": "string"}, "referrer": {"type": "string"}, "duration_ms": {"type": "integer"},
                       "user": {"type": "integer"}, "legacy_ref": {"type": "string"}},
        "required": ["url", "referrer", "duration_ms", "user", "legacy_ref"]
    });
    std::fs::write(tmp.path().join("page_view.json"), pinned.to_string()).unwrap();
    let mut plan = plan_spec(&repo().join("dataflows/schema_evolution.toml"));
    plan.schemas_mut().next().unwrap().pinned = vec![("page_view".into(), tmp.path().join("page_view.json"))];
    let summary = run_collect(&plan, 1);
    let page_views: Vec<_> = summary.collected["schema_changes"]
        .iter()
        .filter(|(r, _, _)| r[0] == Value::str("page_view"))
        .collect();
    assert!(!page_views.is_empty());
    assert!(
        page_views.iter().all(|(r, _, _)| r[1] != Value::Null),
        "v1 is the pinned schema: {page_views:?}"
    );
}

#[test]
fn payloads_deeper_than_max_depth_are_dead_letters() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nested = serde_json::json!(1);
    for _ in 0..20 {
        nested = serde_json::json!({ "n": nested });
    }
    let lines = [
        serde_json::json!({"t": 1000, "k": "x", "a": 1}),
        serde_json::json!({"t": 2000, "k": "x", "deep": nested}),
        serde_json::json!({"t": 3000, "k": "x", "a": 2, "tags": [1, "two", null, [3]], "empty": {}}),
    ];
    let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    std::fs::write(tmp.path().join("e.ndjson"), text.join("\n")).unwrap();
    let spec = "[pipeline]\nname = \"deep\"\n[sources.s]\npath = \"e.ndjson\"\ntime_field = \"t\"\ntype_field = \"k\"\n[schemas.s]\nmax_depth = 8\ncompatibility = \"NONE\"\n";
    let plan = crate::util::plan_text(spec, tmp.path());
    let summary = run_collect(&plan, 1);
    assert_eq!(
        summary.dead_letters.get("depth_exceeded"),
        Some(&1),
        "{:?}",
        summary.dead_letters
    );
    let letter = &summary.collected[sluice::DEAD_LETTERS][0].0;
    assert_eq!(letter[0], Value::str("schema:s"));
}
