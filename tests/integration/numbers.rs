//! Ints and floats compare by value (issue 10): `max` of `10` and `2.5` is `10`, and `3` and
//! `3.0` are one value for `count_distinct` and `group_by`, with any number of workers.

use std::path::Path;

use sluice::value::Value;

use crate::util::{parquet_lines_by_name_exact, plan_text, run_collect, sluice};

/// Writes `events.ndjson` and `spec.toml` (source `s`, type field `kind`, then `aggregates`).
fn write_spec(dir: &Path, events: &str, aggregates: &str) {
    std::fs::write(dir.join("events.ndjson"), events).unwrap();
    let spec = format!(
        r#"
[pipeline]
name = "numbers"
[sources.s]
path = "events.ndjson"
time_field = "ts"
type_field = "kind"
{aggregates}"#
    );
    std::fs::write(dir.join("spec.toml"), spec).unwrap();
}

/// A final, hourly aggregate of the events of type `kind`.
fn aggregate(name: &str, kind: &str, group_by: &str, measures: &[(&str, &str)]) -> String {
    let mut text = format!(
        "[[aggregates]]\nname = \"{name}\"\nsource = \"s\"\nwhere = \"kind == '{kind}'\"\n\
         window = {{ tumbling = \"1h\" }}\ngroup_by = [{group_by}]\nemit = \"final\"\n"
    );
    for (m, e) in measures {
        text.push_str(&format!("measures.{m} = \"{e}\"\n"));
    }
    text
}

#[test]
fn ndjson_ints_and_floats_compare_by_value_with_any_number_of_workers() {
    let tmp = tempfile::tempdir().unwrap();
    let events = r#"{"ts":1000,"kind":"a","v":10}
{"ts":2000,"kind":"a","v":2.5}
{"ts":3000,"kind":"b","v":3}
{"ts":4000,"kind":"b","v":3.0}
"#;
    let aggregates = [
        aggregate(
            "extremes",
            "a",
            "",
            &[("hi", "max(v)"), ("lo", "min(v)"), ("big", "count() where v > 5")],
        ),
        aggregate("distinct", "b", "", &[("n", "count_distinct(v)")]),
        aggregate("groups", "b", "\"v\"", &[("n", "count()")]),
    ];
    write_spec(tmp.path(), events, &aggregates.concat());
    let mut first: Option<Vec<Vec<String>>> = None;
    for workers in ["1", "2", "4"] {
        let out_dir = format!("out{workers}");
        let out = sluice(
            &["run", "spec.toml", "--workers", workers, "--out", &out_dir, "--quiet"],
            tmp.path(),
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let outputs: Vec<Vec<String>> = ["extremes", "distinct", "groups"]
            .iter()
            .map(|name| parquet_lines_by_name_exact(&tmp.path().join(&out_dir).join(name)))
            .collect();
        // Only the columns named here: the window columns are the same hour everywhere.
        let cells = |lines: &[String]| -> Vec<Vec<String>> {
            lines
                .iter()
                .map(|l| {
                    l.split(", ")
                        .filter(|c| !c.starts_with("window_"))
                        .map(String::from)
                        .collect()
                })
                .collect()
        };
        assert_eq!(cells(&outputs[0]), [["hi=10", "lo=2.5", "big=1"]], "{workers} workers");
        assert_eq!(cells(&outputs[1]), [["n=1"]], "{workers} workers");
        assert_eq!(cells(&outputs[2]), [["v=3", "n=2"]], "{workers} workers");
        match &first {
            None => first = Some(outputs),
            Some(first) => assert_eq!(&outputs, first, "{workers} workers differ from 1"),
        }
    }
}

/// An expression can still make a float equal to an int (`v / 1`): one group, one distinct
/// value, whichever of the two encodings the output keeps.
#[test]
fn equal_int_and_float_encodings_are_one_group() {
    let tmp = tempfile::tempdir().unwrap();
    let events = r#"{"ts":1000,"kind":"c","v":3,"half":true}
{"ts":2000,"kind":"c","v":3,"half":false}
{"ts":3000,"kind":"c","v":4,"half":true}
{"ts":4000,"kind":"c","v":4,"half":true}
"#;
    let aggregates = format!(
        "[enrich.s]\noutput = \"\"\n[enrich.s.derive]\nx = \"if(half, v / 1, v)\"\n{}{}",
        aggregate("groups", "c", "\"x\"", &[("n", "count()")]),
        aggregate(
            "overall",
            "c",
            "",
            &[("n", "count_distinct(x)"), ("hi", "max(x)"), ("lo", "min(x)")]
        ),
    );
    write_spec(tmp.path(), events, &aggregates);
    let text = std::fs::read_to_string(tmp.path().join("spec.toml")).unwrap();
    let plan = plan_text(&text, tmp.path());
    for workers in [1, 2, 4] {
        let summary = run_collect(&plan, workers);
        // Rows: group-by columns, window start and end, then the measures.
        let mut groups: Vec<(Value, Value)> = summary.collected["groups"]
            .iter()
            .map(|(row, _, diff)| {
                assert_eq!(*diff, 1);
                (row[0].clone(), row[3].clone())
            })
            .collect();
        groups.sort();
        assert_eq!(
            groups,
            [(Value::Int(3), Value::Int(2)), (Value::Int(4), Value::Int(2))],
            "{workers} workers"
        );
        let overall = &summary.collected["overall"];
        assert_eq!(overall.len(), 1, "{overall:?}");
        assert_eq!(
            overall[0].0[2..],
            [Value::Int(2), Value::Int(4), Value::Int(3)],
            "{workers} workers"
        );
    }
}
