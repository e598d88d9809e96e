//! Generator tests: determinism, delivery statistics, realism, and NDJSON/Parquet agreement.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};

use arrow::array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::*;
use crate::event::Event;
use crate::format::{events_to_rows, rows_to_batch_with_schema};
use crate::value::{parse_time, Sym, Value};

fn read_parquet(path: &Path) -> (Vec<RecordBatch>, usize) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let row_groups = builder.metadata().num_row_groups();
    assert_eq!(builder.schema(), &schema::schema());
    let batches = builder.build().unwrap().map(Result::unwrap).collect();
    (batches, row_groups)
}

pub(super) fn read_ndjson(path: &Path) -> Vec<Event> {
    let lines = BufReader::new(File::open(path).unwrap()).lines();
    lines
        .map(|line| {
            let Value::Object(fields) = Value::from_json(serde_json::from_str(&line.unwrap()).unwrap()) else {
                panic!("not an object")
            };
            let get = |name: &str| fields.iter().find(|(k, _)| k.as_str() == name).unwrap().1.clone();
            let Value::Str(time) = get(TIME_FIELD) else {
                panic!("time is not a string")
            };
            let Value::Str(kind) = get(TYPE_FIELD) else {
                panic!("type is not a string")
            };
            let payload = fields
                .iter()
                .filter(|(k, _)| ![TIME_FIELD, TYPE_FIELD].contains(&k.as_str()));
            Event::new(parse_time(&time).unwrap(), Sym::new(&kind), payload.cloned().collect())
        })
        .collect()
}

#[test]
fn same_seed_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    for ext in ["parquet", "ndjson"] {
        let path = |name: &str| dir.path().join(format!("{name}.{ext}"));
        let a = generate("learning", 20_000, 7, &path("a"), false).unwrap();
        let b = generate("learning", 20_000, 7, &path("b"), false).unwrap();
        let c = generate("learning", 20_000, 8, &path("c"), false).unwrap();
        assert_eq!(a, b);
        let bytes = |name: &str| std::fs::read(path(name)).unwrap();
        assert!(bytes("a") == bytes("b"), "{ext}: same seed, different bytes");
        assert!(bytes("a") != bytes("c"), "{ext}: different seeds, same bytes");
        assert_ne!(a, c);
    }
}

#[test]
fn statistics_are_in_range() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.parquet");
    let n = 500_000;
    let s = generate("learning", n, 1, &path, false).unwrap();
    let frac = |x: usize| x as f64 / n as f64;
    assert_eq!(s.events, n);
    assert!((0.0005..0.002).contains(&frac(s.late)), "late {}", frac(s.late));
    assert!(
        (0.025..0.035).contains(&frac(s.duplicates)),
        "duplicates {}",
        frac(s.duplicates)
    );
    let types: BTreeMap<_, _> = s.by_type.iter().copied().collect();
    assert_eq!(types.values().sum::<usize>(), n);
    assert!((0.01..0.03).contains(&frac(types["placement"])), "{types:?}");
    assert!(types["session_end"] > 0 && types["session_start"] > types["session_end"]);
    assert!(frac(types["attempt"]) > 0.7, "{types:?}");
    // Half a million events span about half a day.
    let hours = (s.max_time - s.min_time) as f64 / 3_600_000.0;
    assert!((9.0..15.0).contains(&hours), "{hours} hours");
    assert_eq!(s.min_time / 1000 / 3600, learning::START_MS / 1000 / 3600);
    let (batches, row_groups) = read_parquet(&path);
    assert_eq!(row_groups, n.div_ceil(ROW_GROUP_ROWS));
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), n);
}

#[test]
fn rows_are_realistic() {
    let mut g = Learning::new(3, 200_000);
    let (mut ids, mut dups, mut attempts) = (HashSet::new(), 0, 0);
    let mut zones: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut bots = 0;
    let mut item_counts: BTreeMap<i64, usize> = BTreeMap::new();
    for _ in 0..200_000 {
        let r = g.next_row();
        let e = schema::event(&g, &r);
        let get = |name: &str| {
            e.payload
                .iter()
                .find(|(k, _)| k.as_str() == name)
                .unwrap()
                .1
                .to_string()
        };
        let tz = get("timezone");
        let entry = zones
            .entry(tz.clone())
            .or_insert_with(|| (get("country"), get("region")));
        assert_eq!(entry, &(get("country"), get("region")), "{tz}");
        if r.kind != vocab::Kind::Attempt {
            assert_eq!(get("item_id"), "null");
            continue;
        }
        attempts += 1;
        *item_counts.entry(get("item_id").parse().unwrap()).or_default() += 1;
        let is_dup = !ids.insert(get("client_attempt_id"));
        assert_eq!(is_dup, r.duplicate);
        dups += usize::from(is_dup);
        let ua = get("user_agent");
        if ua.starts_with("python-requests/") || ua.starts_with("curl/") || ua.contains("Bot") {
            bots += 1;
            assert!(r.response_ms < 1000.0, "bot response {}", r.response_ms);
        }
        assert!((1..=3).contains(&get("topics").split(',').count()));
    }
    assert!(dups > 0 && attempts > 100_000);
    let bot_share = bots as f64 / attempts as f64;
    assert!((0.01..0.15).contains(&bot_share), "bots {bot_share}");
    assert!(zones.len() > 15, "{zones:?}");
    // Zipf: the most popular item is far above the median.
    let mut counts: Vec<usize> = item_counts.into_values().collect();
    counts.sort_unstable();
    assert!(counts[counts.len() - 1] > 20 * counts[counts.len() / 2], "{counts:?}");
}

#[test]
fn ndjson_and_parquet_hold_the_same_events() {
    let dir = tempfile::tempdir().unwrap();
    let (pq, nd) = (dir.path().join("a.parquet"), dir.path().join("a.ndjson"));
    let n = 70_000;
    assert_eq!(
        generate("learning", n, 5, &pq, false).unwrap(),
        generate("learning", n, 5, &nd, false).unwrap()
    );
    let (batches, _) = read_parquet(&pq);
    let events = read_ndjson(&nd);
    assert_eq!(events.len(), n);
    let schema = schema::schema();
    let (columns, rows) = events_to_rows(&events, TIME_FIELD, TYPE_FIELD);
    let order: Vec<usize> = schema
        .fields()
        .iter()
        .map(|f| columns.iter().position(|c| c == f.name()).unwrap())
        .collect();
    assert_eq!(order.len(), columns.len());
    let rows: Vec<Vec<Value>> = rows
        .into_iter()
        .map(|r| order.iter().map(|&i| r[i].clone()).collect())
        .collect();
    let expected = rows_to_batch_with_schema(&schema, &rows).unwrap();
    let actual = arrow::compute::concat_batches(&schema, &batches).unwrap();
    for (i, field) in schema.fields().iter().enumerate() {
        assert_eq!(
            actual.column(i).as_ref(),
            expected.column(i).as_ref(),
            "column {}",
            field.name()
        );
    }
}

#[test]
fn bad_scenarios_and_formats_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = generate("shopping", 10, 1, &dir.path().join("x.parquet"), false).unwrap_err();
    assert!(
        err.to_string().contains("`shopping`") && err.to_string().contains("learning"),
        "{err}"
    );
    let err = generate("learning", 10, 1, &dir.path().join("x.csv"), false).unwrap_err();
    assert!(
        err.to_string().contains("x.csv") && err.to_string().contains(".ndjson"),
        "{err}"
    );
    let empty = generate("learning", 0, 1, &dir.path().join("e.parquet"), false).unwrap();
    assert_eq!((empty.events, empty.late, empty.min_time), (0, 0, 0));
}
