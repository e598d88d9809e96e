//! Bad input never crashes a run and is never dropped silently: every defect becomes a dead
//! letter with its reason, and the good events around it are processed.

use std::io::Write;

use sluice::value::Value;

use crate::util::{plan_text, run_collect};

#[test]
fn every_defect_becomes_a_dead_letter_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.ndjson");
    let mut f = std::fs::File::create(&path).unwrap();
    let good = |t: i64| format!(r#"{{"ts": {t}, "type": "click", "v": 1}}"#);
    let deep = format!(
        "{{\"ts\": 5000, \"type\": \"click\", \"x\": {}{}}}",
        "[".repeat(200),
        "]".repeat(200)
    );
    let lines: Vec<(Vec<u8>, Option<&str>)> = vec![
        (good(1000).into_bytes(), None),
        (b"{\"ts\": 2000, \"type\": \"click\"".to_vec(), Some("malformed_json")),
        (b"{\"ts\": 2000, \"type\": \"cl\xffck\"}".to_vec(), Some("invalid_utf8")),
        (b"[1, 2, 3]".to_vec(), Some("not_an_object")),
        (b"{\"type\": \"click\"}".to_vec(), Some("missing_time")),
        (
            b"{\"ts\": \"yesterday\", \"type\": \"click\"}".to_vec(),
            Some("bad_time"),
        ),
        (b"{\"ts\": -5, \"type\": \"click\"}".to_vec(), Some("bad_time")),
        (b"{\"ts\": 3000}".to_vec(), Some("missing_type")),
        (b"{\"ts\": 3000, \"type\": 7}".to_vec(), Some("missing_type")),
        (deep.into_bytes(), Some("depth_exceeded")),
        (
            br#"{"ts": 4000, "type": "click", "v": "seven"}"#.to_vec(),
            Some("type_mismatch"),
        ),
        (
            br#"{"ts": 4000, "type": "click", "v": 1e300}"#.to_vec(),
            Some("out_of_range"),
        ),
        (
            br#"{"ts": 4000, "type": "click", "v": 2, "w": "x"}"#.to_vec(),
            Some("eval_error"),
        ),
        (good(900_000).into_bytes(), None),
        (good(1000).into_bytes(), Some("late")),
        (good(900_500).into_bytes(), None),
    ];
    for (line, _) in &lines {
        f.write_all(line).unwrap();
        f.write_all(b"\n").unwrap();
    }
    drop(f);
    let spec = format!(
        r#"
[pipeline]
name = "bad"
[sources.s]
path = "{}"
time_field = "ts"
type_field = "type"
allowed_lateness = "1m"
[[aggregates]]
name = "clicks"
source = "s"
window = {{ tumbling = "1h" }}
emit = "final"
measures.n = "count()"
measures.total = "sum(v)"
measures.big = "count() where w > 1"
"#,
        path.display()
    );
    let plan = plan_text(&spec, dir.path());
    for workers in [1, 2] {
        let summary = run_collect(&plan, workers);
        let mut want: Vec<&str> = lines.iter().filter_map(|(_, r)| *r).collect();
        want.sort();
        let letters = &summary.collected[sluice::DEAD_LETTERS];
        let mut got: Vec<String> = letters.iter().map(|(row, _, _)| row[1].to_string()).collect();
        got.sort();
        assert_eq!(got, want, "dead-letter reasons with {workers} workers");
        for (row, _, _) in letters {
            assert!(
                !row[3].to_string().is_empty(),
                "every dead letter has a location: {row:?}"
            );
        }
        // The good events (and events whose rejected measure does not concern them) are counted.
        let rows = &summary.collected["clicks"];
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].0[2], Value::Int(3));
        assert_eq!(rows[0].0[3], Value::Int(3));
    }
}
