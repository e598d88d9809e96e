//! `evolving` scenario tests: the truth file matches what the events show, rows are in order
//! within the jitter, output is deterministic, and NDJSON and Parquet agree.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;

use arrow::array::{Array, RecordBatch, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::evolving::{self, change_points, span_ms, truth_path, ChangePoint, COUPON_SHARE, EVENT_TYPES, JITTER_MS};
use super::learning::START_MS;
use super::tests::read_ndjson;
use super::*;
use crate::event::Event;
use crate::format::rows_to_batch_with_schema;
use crate::value::{format_time, Value};

fn read_truth(out: &Path) -> Vec<ChangePoint> {
    serde_json::from_slice(&std::fs::read(truth_path(out)).unwrap()).unwrap()
}

/// The kind of payload field `name` of `e`, `None` when absent.
fn kind(e: &Event, name: &str) -> Option<&'static str> {
    e.payload
        .iter()
        .find(|(k, _)| k.as_str() == name)
        .map(|(_, v)| v.kind_name())
}

fn generated(n: usize, seed: u64, name: &str) -> (tempfile::TempDir, PathBuf, GenerateSummary) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(name);
    let summary = generate("evolving", n, seed, &out, false).unwrap();
    (dir, out, summary)
}

#[test]
fn evolving_same_seed_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    for ext in ["ndjson", "parquet"] {
        let path = |name: &str| dir.path().join(format!("{name}.{ext}"));
        let a = generate("evolving", 20_000, 7, &path("a"), false).unwrap();
        let b = generate("evolving", 20_000, 7, &path("b"), false).unwrap();
        let c = generate("evolving", 20_000, 8, &path("c"), false).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let bytes = |name: &str| std::fs::read(path(name)).unwrap();
        let truth = |name: &str| std::fs::read(truth_path(&path(name))).unwrap();
        assert!(bytes("a") == bytes("b"), "{ext}: same seed, different bytes");
        assert!(bytes("a") != bytes("c"), "{ext}: different seeds, same bytes");
        assert_eq!(truth("a"), truth("b"));
        // Change points depend on the event count only.
        assert_eq!(truth("a"), truth("c"));
    }
}

#[test]
fn truth_file_lists_the_contracted_change_points() {
    let n = 40_000;
    let (_dir, out, _) = generated(n, 3, "events.ndjson");
    assert!(out.with_file_name("events.ndjson.truth.json").exists());
    let truth = read_truth(&out);
    assert_eq!(truth, change_points(n));
    let expected: [(i64, &str, &str, &[&str]); 6] = [
        (15, "order_placed", "added_optional", &["coupon_code"]),
        (30, "page_view", "removed", &["legacy_ref"]),
        (45, "sensor_reading", "type_changed", &["sensor_id"]),
        (60, "page_view", "renamed", &["user", "customer_id"]),
        (75, "order_placed", "type_changed", &["amount"]),
        (
            90,
            "order_placed",
            "nested_added",
            &["shipping", "shipping.country", "shipping.method"],
        ),
    ];
    assert_eq!(truth.len(), expected.len());
    for (c, (pct, event_type, change, fields)) in truth.iter().zip(expected) {
        let at = START_MS + span_ms(n) * pct / 100;
        assert_eq!(c.time_ms, at / 1000 * 1000, "{c:?}");
        assert_eq!(c.time, format_time(c.time_ms));
        assert_eq!((c.event_type.as_str(), c.change.as_str()), (event_type, change));
        assert_eq!(c.fields, fields);
    }
    assert!(truth.windows(2).all(|w| w[0].time_ms < w[1].time_ms));
}

#[test]
fn truth_matches_what_the_events_show() {
    let n = 40_000;
    let (_dir, out, _) = generated(n, 3, "events.ndjson");
    let events = read_ndjson(&out);
    assert_eq!(events.len(), n);
    for c in read_truth(&out) {
        let of_type = events.iter().filter(|e| e.kind.as_str() == c.event_type);
        let (before, after): (Vec<&Event>, Vec<&Event>) = of_type.partition(|e| e.time < c.time_ms);
        assert!(
            before.len() > 100 && after.len() > 100,
            "{c:?}: {} / {}",
            before.len(),
            after.len()
        );
        let all = |side: &[&Event], f: &str, want: Option<&str>| {
            let bad = side.iter().find(|e| kind(e, f) != want);
            assert!(bad.is_none(), "{c:?}: `{f}` should be {want:?} in {:?}", bad.unwrap());
        };
        let (from, to) = (c.from.as_str(), c.to.as_str());
        let f = c.fields[0].as_str();
        match c.change.as_str() {
            "added_optional" => {
                all(&before, f, None);
                let present: Vec<_> = after.iter().filter_map(|e| kind(e, f)).collect();
                assert!(present.iter().all(|k| Some(*k) == to), "{c:?}: {present:?}");
                let share = present.len() as f64 / after.len() as f64;
                assert!((share - COUPON_SHARE).abs() < 0.05, "{c:?}: share {share}");
            }
            "removed" => {
                all(&before, f, from);
                all(&after, f, None);
            }
            "type_changed" => {
                all(&before, f, from);
                all(&after, f, to);
            }
            "renamed" => {
                let (old, new) = (from.unwrap(), to.unwrap());
                assert_eq!(c.fields, [old, new]);
                all(&before, new, None);
                all(&after, old, None);
                all(&before, old, Some("int"));
                all(&after, new, Some("int"));
            }
            "nested_added" => {
                all(&before, f, None);
                all(&after, f, Some("object"));
                let subs = c.to.as_object().unwrap();
                let paths: Vec<String> = subs.keys().map(|k| format!("{f}.{k}")).collect();
                assert_eq!(c.fields[1..], paths);
                for e in &after {
                    let Some((_, Value::Object(obj))) = e.payload.iter().find(|(k, _)| k.as_str() == f) else {
                        unreachable!()
                    };
                    let got: serde_json::Map<_, _> = obj
                        .iter()
                        .map(|(k, v)| (k.as_str().to_string(), v.kind_name().into()))
                        .collect();
                    assert_eq!(&got, subs, "{c:?}");
                }
            }
            other => panic!("unknown change {other}"),
        }
    }
}

#[test]
fn schemas_change_only_at_the_truth_times() {
    let n = 40_000;
    let (_dir, out, _) = generated(n, 11, "events.ndjson");
    let truth = read_truth(&out);
    // (type, changes of that type at or before the event) → the (field, kind) sets seen, with
    // the optional field left out.
    type Shape = Vec<(String, &'static str)>;
    let mut shapes: BTreeMap<(String, usize), BTreeSet<Shape>> = BTreeMap::new();
    for e in read_ndjson(&out) {
        let ty = e.kind.as_str();
        let segment = truth
            .iter()
            .filter(|c| c.event_type == ty && c.time_ms <= e.time)
            .count();
        let shape = e.payload.iter().filter(|(k, _)| k.as_str() != "coupon_code");
        let shape = shape.map(|(k, v)| (k.as_str().to_string(), v.kind_name())).collect();
        shapes.entry((ty.to_string(), segment)).or_default().insert(shape);
    }
    for ty in EVENT_TYPES {
        let changes: Vec<_> = truth.iter().filter(|c| c.event_type == ty).collect();
        for segment in 0..=changes.len() {
            let seen = &shapes[&(ty.to_string(), segment)];
            assert_eq!(seen.len(), 1, "{ty} segment {segment}: {seen:?}");
            if segment > 0 && changes[segment - 1].change != "added_optional" {
                assert_ne!(seen, &shapes[&(ty.to_string(), segment - 1)], "{ty} segment {segment}");
            }
        }
    }
}

#[test]
fn rows_are_in_order_within_the_jitter() {
    let n = 30_000;
    let (_dir, out, s) = generated(n, 5, "events.ndjson");
    let events = read_ndjson(&out);
    assert_eq!((s.events, s.late, s.duplicates), (n, 0, 0));
    let mut max = i64::MIN;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &events {
        assert!(e.time > max.saturating_sub(JITTER_MS), "{} behind {}", e.time, max);
        max = max.max(e.time);
        *counts.entry(e.kind.as_str()).or_default() += 1;
    }
    let by_type: Vec<(&str, usize)> = counts.into_iter().collect();
    assert_eq!(s.by_type, by_type);
    assert_eq!(by_type.iter().map(|t| t.0).collect::<Vec<_>>(), EVENT_TYPES);
    for ((ty, count), share) in by_type.iter().zip([0.3, 0.5, 0.2]) {
        let got = *count as f64 / n as f64;
        assert!((got - share).abs() < 0.02, "{ty}: {got}");
    }
    assert!(s.min_time >= START_MS && s.min_time < START_MS + 1_000 + JITTER_MS);
    assert!(s.max_time < START_MS + span_ms(n) + JITTER_MS);
    assert!(s.max_time > START_MS + span_ms(n) - 60_000);
}

#[test]
fn evolving_ndjson_and_parquet_hold_the_same_events() {
    let dir = tempfile::tempdir().unwrap();
    let (pq, nd) = (dir.path().join("a.parquet"), dir.path().join("a.ndjson"));
    let n = 70_000;
    assert_eq!(
        generate("evolving", n, 2, &pq, false).unwrap(),
        generate("evolving", n, 2, &nd, false).unwrap()
    );
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&pq).unwrap()).unwrap();
    assert_eq!(builder.metadata().num_row_groups(), n.div_ceil(ROW_GROUP_ROWS));
    let schema = evolving::schema();
    assert_eq!(builder.schema(), &schema);
    let batches: Vec<RecordBatch> = builder.build().unwrap().map(Result::unwrap).collect();
    let actual = arrow::compute::concat_batches(&schema, &batches).unwrap();
    let events = read_ndjson(&nd);
    let expected = rows_to_batch_with_schema(&schema, &evolving::rows(&events)).unwrap();
    assert_eq!(actual.num_rows(), n);
    for (i, field) in schema.fields().iter().enumerate() {
        assert_eq!(
            actual.column(i).as_ref(),
            expected.column(i).as_ref(),
            "{}",
            field.name()
        );
    }
    // The type-changed `amount` is text: integer cents before, decimal euros after.
    let amount_change = change_points(n)[4].time_ms;
    let amount = actual.column_by_name("amount").unwrap();
    let amount = amount.as_any().downcast_ref::<StringArray>().unwrap();
    for (e, i) in events.iter().zip(0..) {
        if e.kind.as_str() == "order_placed" {
            assert_eq!(amount.value(i).contains('.'), e.time >= amount_change, "{e:?}");
        } else {
            assert!(amount.is_null(i));
        }
    }
}

#[test]
fn evolving_errors_and_empty_logs() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("x.csv");
    let err = generate("evolving", 10, 1, &bad, false).unwrap_err();
    assert!(err.to_string().contains("x.csv"), "{err}");
    assert!(!truth_path(&bad).exists());
    let err = generate("shopping", 10, 1, &dir.path().join("x.ndjson"), false).unwrap_err();
    assert!(err.to_string().contains("evolving"), "{err}");
    let empty = dir.path().join("e.ndjson");
    let s = generate("evolving", 0, 1, &empty, false).unwrap();
    assert_eq!((s.events, s.late, s.min_time, s.max_time), (0, 0, 0, 0));
    assert!(std::fs::read(&empty).unwrap().is_empty());
    assert_eq!(read_truth(&empty), change_points(0));
}
