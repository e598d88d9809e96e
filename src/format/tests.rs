//! Round trips: rows to batches to Parquet files and back, and events to NDJSON.

use std::fs::File;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMillisecondType,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::*;
use crate::event::Event;
use crate::value::{Sym, Value};

fn obj(fields: &[(&str, Value)]) -> Value {
    Value::object(fields.iter().map(|(k, v)| (Sym::new(k), v.clone())).collect())
}

/// Writes `batch` to a Parquet file and reads it back as one batch.
fn round_trip(batch: &RecordBatch) -> RecordBatch {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.parquet");
    let mut sink = ParquetSink::open(&path, batch.schema()).unwrap();
    sink.write(batch).unwrap();
    assert_eq!(sink.rows(), batch.num_rows());
    sink.close().unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

#[test]
fn infers_types_and_round_trips_through_parquet() {
    let cols: Vec<String> = ["i", "f", "b", "s", "t", "nul", "mix", "list", "obj"]
        .map(String::from)
        .to_vec();
    let list = |xs: &[i64]| Value::List(xs.iter().map(|x| Value::Int(*x)).collect());
    let rows = vec![
        vec![
            Value::Int(1),
            Value::Int(2),
            Value::Bool(true),
            Value::str("a"),
            Value::Time(1_709_510_400_000),
            Value::Null,
            Value::str("plain"),
            list(&[1, 2]),
            obj(&[("os", Value::str("iOS")), ("n", Value::Int(1))]),
        ],
        vec![
            Value::Null,
            Value::float(2.5),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Int(7),
            Value::Null,
            obj(&[
                ("os", Value::str("Android")),
                ("tags", Value::List([Value::str("x")].into())),
            ]),
        ],
        vec![
            Value::Int(-3),
            Value::Null,
            Value::Bool(false),
            Value::str("c"),
            Value::Time(0),
            Value::Null,
            obj(&[("k", Value::Bool(true))]),
            list(&[]),
            Value::Null,
        ],
    ];
    let batch = round_trip(&rows_to_batch(&cols, &rows).unwrap());
    let schema = batch.schema();
    let types: Vec<String> = schema.fields().iter().map(|f| f.data_type().to_string()).collect();
    assert_eq!(
        &types[..6],
        ["Int64", "Float64", "Boolean", "Utf8", "Timestamp(ms, \"UTC\")", "Utf8"]
    );
    assert_eq!(schema.field(6).data_type(), &DataType::Utf8);
    assert!(matches!(schema.field(7).data_type(), DataType::List(f) if f.data_type() == &DataType::Int64));
    let DataType::Struct(sf) = schema.field(8).data_type() else {
        panic!("{}", schema.field(8))
    };
    let names: Vec<&str> = sf.iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["n", "os", "tags"]);
    assert!(matches!(sf[2].data_type(), DataType::List(f) if f.data_type() == &DataType::Utf8));

    let ints = batch.column(0).as_primitive::<Int64Type>();
    assert_eq!((ints.value(0), ints.is_null(1), ints.value(2)), (1, true, -3));
    let floats = batch.column(1).as_primitive::<Float64Type>();
    assert_eq!((floats.value(0), floats.value(1), floats.is_null(2)), (2.0, 2.5, true));
    assert!(!batch.column(2).as_boolean().value(2));
    let times = batch.column(4).as_primitive::<TimestampMillisecondType>();
    assert_eq!((times.value(0), times.is_null(1)), (1_709_510_400_000, true));
    assert_eq!(batch.column(5).null_count(), 3);
    let mix = batch.column(6).as_string::<i32>();
    assert_eq!(
        [mix.value(0), mix.value(1), mix.value(2)],
        ["plain", "7", r#"{"k":true}"#]
    );
    let lists = batch.column(7).as_list::<i32>();
    assert_eq!(lists.value(0).as_primitive::<Int64Type>().values(), &[1, 2]);
    assert!(lists.is_null(1));
    assert_eq!((lists.is_null(2), lists.value(2).len()), (false, 0));
    let st = batch.column(8).as_struct();
    assert!(st.is_null(2));
    let os = st.column_by_name("os").unwrap().as_string::<i32>();
    assert_eq!((os.value(0), os.value(1)), ("iOS", "Android"));
    let n = st.column_by_name("n").unwrap().as_primitive::<Int64Type>();
    assert!(n.is_null(1));
    let tags = st.column_by_name("tags").unwrap().as_list::<i32>();
    assert_eq!(tags.value(1).as_string::<i32>().value(0), "x");
}

#[test]
fn coerces_into_an_existing_schema() {
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("f", DataType::Float64, true),
        Field::new("s", DataType::Utf8, true),
        Field::new("i", DataType::Int64, true),
        Field::new(
            "t",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
    ]));
    let rows = vec![
        vec![Value::Int(3), Value::Time(0), Value::str("x"), Value::Time(5)],
        vec![
            Value::str("no"),
            Value::List([Value::Int(1)].into()),
            Value::float(1.5),
            Value::Int(5),
        ],
    ];
    let batch = rows_to_batch_with_schema(&schema, &rows).unwrap();
    let f = batch.column(0).as_primitive::<Float64Type>();
    assert_eq!((f.value(0), f.is_null(1)), (3.0, true));
    let s = batch.column(1).as_string::<i32>();
    assert_eq!((s.value(0), s.value(1)), ("1970-01-01T00:00:00.000Z", "[1]"));
    assert_eq!(batch.column(2).null_count(), 2);
    assert_eq!(batch.column(3).null_count(), 1);
    let err = rows_to_batch_with_schema(&schema, &[vec![Value::Null]]).unwrap_err();
    assert!(
        matches!(
            err,
            WriteError::RowWidth {
                row: 0,
                got: 1,
                expected: 4
            }
        ),
        "{err}"
    );
}

#[test]
fn sink_rejects_a_different_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.parquet");
    let a = rows_to_batch(&["a".into()], &[vec![Value::Int(1)]]).unwrap();
    let b = rows_to_batch(&["a".into()], &[vec![Value::str("1")]]).unwrap();
    let mut sink = ParquetSink::open(&path, a.schema()).unwrap();
    let err = sink.write(&b).unwrap_err().to_string();
    assert!(err.contains("x.parquet") && err.contains("a: Int64"), "{err}");
}

fn event(time: i64, kind: &str, fields: &[(&str, Value)]) -> Event {
    let payload = fields.iter().map(|(k, v)| (Sym::new(k), v.clone())).collect();
    Event::new(time, Sym::new(kind), payload)
}

#[test]
fn events_become_rows_with_a_union_of_fields() {
    let events = [
        event(5, "a", &[("z", Value::Int(1)), ("m", Value::str("x"))]),
        event(6, "b", &[("c", Value::Bool(true)), ("ts", Value::Int(9))]),
    ];
    let (cols, rows) = events_to_rows(&events, "ts", "type");
    assert_eq!(cols, ["ts", "type", "c", "m", "z"]);
    assert_eq!(
        rows[0],
        [
            Value::Time(5),
            Value::str("a"),
            Value::Null,
            Value::str("x"),
            Value::Int(1)
        ]
    );
    assert_eq!(rows[1][..3], [Value::Time(6), Value::str("b"), Value::Bool(true)]);
    assert_eq!(rows[1][3..], [Value::Null, Value::Null]);
    let batch = rows_to_batch(&cols, &rows).unwrap();
    assert_eq!(batch.num_columns(), 5);
    assert_eq!(batch.num_rows(), 2);
}

#[test]
fn ndjson_matches_value_to_json() {
    let nested = Value::object(vec![
        (
            Sym::new("q\"uote"),
            Value::List([Value::float(0.1), Value::Null, Value::Time(0)].into()),
        ),
        (Sym::new("n"), Value::float(f64::INFINITY)),
    ]);
    let e = event(
        1_709_510_400_123,
        "attempt",
        &[
            ("s", Value::str("a\nb")),
            ("o", nested),
            ("f", Value::float(3.0)),
            ("i", Value::Int(-7)),
        ],
    );
    let mut out = Vec::new();
    write_ndjson_event(&mut out, &e, "event_time", "event_type").unwrap();
    let line = String::from_utf8(out).unwrap();
    assert!(line.ends_with('\n') && line.lines().count() == 1);
    let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(parsed, e.to_json("event_time", "event_type"));
    assert!(line.starts_with(r#"{"event_time":"2024-03-04T00:00:00.123Z","event_type":"attempt","f":3.0,"#));
}

#[test]
fn objects_of_several_shapes_infer_one_struct_of_their_sorted_fields() {
    // Shapes alternate as the events of several types do, and a later row brings new fields
    // and widens one.
    let rows = vec![
        vec![obj(&[("b", Value::Int(1)), ("d", Value::str("x"))])],
        vec![obj(&[("a", Value::Bool(true)), ("c", Value::Int(2))])],
        vec![obj(&[("b", Value::Int(3)), ("d", Value::str("y"))])],
        vec![obj(&[
            ("a", Value::Null),
            ("b", Value::float(2.5)),
            ("e", Value::Int(4)),
        ])],
        vec![Value::Null],
    ];
    let batch = round_trip(&rows_to_batch(&["o".into()], &rows).unwrap());
    let DataType::Struct(sf) = batch.schema().field(0).data_type().clone() else {
        panic!("{}", batch.schema().field(0))
    };
    let fields: Vec<(String, String)> = sf
        .iter()
        .map(|f| (f.name().clone(), f.data_type().to_string()))
        .collect();
    let want = [
        ("a", "Boolean"),
        ("b", "Float64"),
        ("c", "Int64"),
        ("d", "Utf8"),
        ("e", "Int64"),
    ];
    assert_eq!(fields, want.map(|(n, t)| (n.to_string(), t.to_string())));
    let s = batch.column(0).as_struct();
    let b = s.column_by_name("b").unwrap().as_primitive::<Float64Type>();
    assert_eq!(
        (b.value(0), b.value(2), b.value(3), b.is_null(1)),
        (1.0, 3.0, 2.5, true)
    );
    assert!(s.is_null(4));
}

/// A part's float columns of distinct values fall back to plain encoding, while a float column
/// of few values and the other columns stay dictionary-encoded; the values read back the same.
#[test]
fn parts_dictionary_encode_only_the_float_columns_of_few_values() {
    let cols: Vec<String> = ["distinct", "few", "name"].map(String::from).to_vec();
    let rows: Vec<Vec<Value>> = (0..20_000)
        .map(|i| {
            vec![
                Value::float(i as f64 * 0.37 + 0.001),
                Value::float((i % 7) as f64 + 0.5),
                Value::str(["eu", "us", "ap"][i % 3]),
            ]
        })
        .collect();
    let batch = rows_to_batch(&cols, &rows).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("part.parquet");
    let mut sink = ParquetSink::open_part(&path, batch.schema()).unwrap();
    sink.write(&batch).unwrap();
    sink.close().unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
    let chunk = builder.metadata().row_group(0);
    // The encodings of the chunk's data pages, as the reader's metadata sums them up.
    let all_dictionary = |i: usize| {
        let column = chunk.column(i);
        let mask = column.page_encoding_stats_mask().expect("written by arrow-rs");
        column.dictionary_page_offset().is_some() && mask.is_only(parquet::basic::Encoding::RLE_DICTIONARY)
    };
    let plain_data = |i: usize| {
        let mask = chunk.column(i).page_encoding_stats_mask().unwrap();
        mask.is_set(parquet::basic::Encoding::PLAIN)
    };
    assert!(plain_data(0), "distinct floats fall back to plain");
    assert!(all_dictionary(1), "few floats keep the dictionary");
    assert!(all_dictionary(2), "strings keep the dictionary");
    let back = builder.build().unwrap().map(Result::unwrap).collect::<Vec<_>>();
    let back = arrow::compute::concat_batches(&back[0].schema(), &back).unwrap();
    assert_eq!(back, batch);
}

mod part_shapes {
    use proptest::prelude::*;

    use super::*;
    use crate::format::arrow_write::{columns_to_batch, infer_schema, Shapes};

    /// A value of one of every shape, few enough that parts mix and repeat them.
    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-3i64..3).prop_map(Value::Int),
            (-3i64..3).prop_map(|i| Value::float(i as f64 + 0.5)),
            "[ab1]{0,2}".prop_map(|s| Value::str(&s)),
            (0i64..3).prop_map(Value::Time),
            proptest::collection::vec((-2i64..2).prop_map(Value::Int), 0..3).prop_map(|v| Value::List(v.into())),
            (proptest::option::of(-2i64..2), proptest::option::of("[xy]")).prop_map(|(a, b)| {
                let mut fields = Vec::new();
                if let Some(a) = a {
                    fields.push(("a", Value::Int(a)));
                }
                if let Some(b) = b {
                    fields.push(("b", Value::str(&b)));
                }
                obj(&fields)
            }),
        ]
    }

    /// Parts of two columns: each column's values lean to one shape, with others mixed in.
    fn parts() -> impl Strategy<Value = Vec<Vec<Vec<Value>>>> {
        let column = proptest::collection::vec(value(), 0..6);
        proptest::collection::vec(proptest::collection::vec(column, 2), 1..6).prop_map(|parts| {
            parts
                .into_iter()
                .map(|mut cols| {
                    // Both columns of a part have as many values.
                    let n = cols.iter().map(Vec::len).min().unwrap_or(0);
                    cols.iter_mut().for_each(|c| c.truncate(n));
                    cols
                })
                .collect()
        })
    }

    fn refs(part: &[Vec<Value>]) -> Vec<Vec<&Value>> {
        part.iter().map(|c| c.iter().collect()).collect()
    }

    proptest! {
        /// A part built in the output's shapes is the batch of the schema inferred from every
        /// value of it and of the parts before it, whether its values fit the shapes (one pass)
        /// or widen them; and shapes built by two workers, joined, are the shapes of all.
        #[test]
        fn parts_are_built_in_the_shapes_of_every_value_so_far(parts in parts()) {
            let names = vec!["c0".to_string(), "c1".to_string()];
            let mut shapes = Shapes::default();
            let mut seen: Vec<Vec<Value>> = vec![Vec::new(), Vec::new()];
            for part in &parts {
                for (s, c) in seen.iter_mut().zip(part) {
                    s.extend(c.iter().cloned());
                }
                let schema = infer_schema(&names, &refs(&seen));
                let expected = columns_to_batch(Some(&schema), &names, &refs(part)).unwrap();
                let built = shapes.build(&names, &refs(part)).unwrap();
                prop_assert_eq!(built, expected);
            }
            let (mut even, mut odd) = (Shapes::default(), Shapes::default());
            for (i, part) in parts.iter().enumerate() {
                let shapes = if i % 2 == 0 { &mut even } else { &mut odd };
                shapes.build(&names, &refs(part)).unwrap();
            }
            even.join(&odd);
            let empty = vec![Vec::new(), Vec::new()];
            let joined = even.build(&names, &refs(&empty)).unwrap();
            let all = infer_schema(&names, &refs(&seen));
            prop_assert_eq!(joined.schema(), all);
        }
    }
}
