use std::path::{Path, PathBuf};

use super::*;
use crate::plan::csv::{CsvOptions, CsvType};
use crate::plan::Format;
use crate::source::{reader, Layout};

fn plan(paths: Vec<PathBuf>, csv: CsvOptions) -> SourcePlan {
    SourcePlan {
        csv,
        ..crate::source::test_plan(Format::Csv, paths)
    }
}

/// What reading `splits` gives, in order: `line time type payload` or `line reason: detail`.
fn read(plan: &SourcePlan, splits: Vec<Split>) -> Vec<String> {
    let layout = Layout {
        files: crate::source::expand(plan).unwrap(),
        splits,
    };
    let mut reader = reader(plan, &layout);
    let mut out = Vec::new();
    for split in &layout.splits {
        reader
            .read(split, &mut |chunk| {
                for d in chunk.drain(..) {
                    out.push(match d {
                        Decoded::Event(e, line) => {
                            let payload: Vec<String> =
                                e.payload.iter().map(|(k, v)| format!("{k}={}", show(v))).collect();
                            format!("{line} {} {} {}", e.time, e.kind, payload.join(","))
                        }
                        Decoded::Bad(l) => {
                            let line = l.location.rsplit(':').next().unwrap().to_string();
                            format!("{line} {}: {}", l.reason, l.detail)
                        }
                    });
                }
            })
            .unwrap();
    }
    out
}

/// Floats with their type (`1.0`, `NaN`), everything else as JSON.
fn show(v: &crate::value::Value) -> String {
    match v {
        crate::value::Value::Float(f) => format!("{:?}", f.get()),
        other => other.json_text(),
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn good_rows_are_read_around_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let text: &[u8] = b"ts,type,n,x,note\n\
        1000,a,1,2.5,plain\n\
        2000,a,2,3\n\
        3000,a,3,4.5,\"quoted, with comma\"\n\
        4000,a,seven,1.0,bad int\n\
        yesterday,a,5,1.0,bad time\n\
        6000,,6,1.0,no type\n\
        7000,a,7,1.0,\"line\nbreak\"\n\
        8000,b,8,\xff,bad bytes\n\
        9000,a,9,\"oops,unclosed\n\
        10000,a,,NaN,empty n\n\
        ,a,11,1.0,empty time\n\
        12000,a,12,1,\"say \"\"hi\"\"\"\n";
    let path = write(dir.path(), "e.csv", text);
    let options = CsvOptions {
        columns: vec![("n".into(), CsvType::Int)],
        ..CsvOptions::default()
    };
    let plan = plan(vec![path.clone()], options);
    let layout = Layout::discover(&plan).unwrap();
    let got = read(&plan, layout.splits.clone());
    let want = [
        "2 1000 a n=1,note=\"plain\",x=2.5",
        "3 malformed_csv: 4 fields where the header has 5",
        "4 3000 a n=3,note=\"quoted, with comma\",x=4.5",
        "5 malformed_csv: column `n`: `seven` is not a valid Int64",
        "6 bad_time: ts: `yesterday` is not an RFC 3339 time",
        "7 missing_type: type: empty",
        "8 7000 a n=7,note=\"line\\nbreak\",x=1.0",
        "10 invalid_utf8: invalid utf-8 sequence of 1 bytes from index 9",
        "11 malformed_csv: an unclosed quote: the record does not end on this line with the right number of fields",
        "12 10000 a note=\"empty n\",x=NaN",
        "13 bad_time: ts: empty",
        "14 12000 a n=12,note=\"say \\\"hi\\\"\",x=1.0",
    ];
    assert_eq!(got, want);
    assert_eq!(layout.splits.len(), 1);
    assert_eq!(layout.splits[0].rows, 12);
    assert_eq!(layout.splits[0].max_time, Some(12_000));
    let loc = Layout {
        files: vec![path.clone()],
        splits: layout.splits.clone(),
    }
    .location(&layout.splits[0], 5);
    assert_eq!(loc, format!("{}:5", path.display()));
}

/// Splits of any size begin at record boundaries and read what one split reads.
#[test]
fn small_splits_read_what_one_split_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("ts,type,v,note\n");
    for i in 0..300 {
        match i % 37 {
            5 => text.push_str(&format!("{i},a,{i},\"two\nlines\"\n")),
            11 => text.push_str(&format!("{i},a,{i},\"unclosed\n")),
            17 => text.push_str(&format!("{i},a,x{i},bad\n")),
            23 => text.push_str(&format!("{i},a\n")),
            29 => text.push_str("\r\n\n"),
            _ => text.push_str(&format!("{i},a,{i},\"q\"\"{i}\"\r\n")),
        }
    }
    let path = write(dir.path(), "e.csv", text.as_bytes());
    let plan = plan(vec![path], CsvOptions::default());
    let one = splits_of_size(&plan, &plan.paths, u64::MAX).unwrap();
    assert_eq!(one.len(), 1);
    let want = read(&plan, one.clone());
    assert!(want.iter().any(|l| l.contains("malformed_csv")), "{want:?}");
    for size in [1, 7, 64, 500, 4096] {
        let splits = splits_of_size(&plan, &plan.paths, size).unwrap();
        assert!(size > 4000 || splits.len() > 3, "{size}: {} splits", splits.len());
        assert_eq!(read(&plan, splits.clone()), want, "split size {size}");
        assert_eq!(splits.iter().map(|s| s.rows).sum::<usize>(), one[0].rows);
        assert_eq!(splits.iter().filter_map(|s| s.max_time).max(), one[0].max_time);
    }
}

#[test]
fn options_delimiter_time_format_and_columns() {
    let dir = tempfile::tempdir().unwrap();
    let text = "2024-03-04 05:06:07;cpu;0.5;3\n2024-03-04 05:06:08;cpu;n/a;4\n04.03.2024;cpu;1;x\n";
    let path = write(dir.path(), "m.csv", text.as_bytes());
    let options = CsvOptions {
        header: false,
        delimiter: b';',
        time_format: Some("%Y-%m-%d %H:%M:%S".into()),
        columns: vec![
            ("ts".into(), CsvType::Auto),
            ("type".into(), CsvType::String),
            ("value".into(), CsvType::Float),
            ("count".into(), CsvType::String),
        ],
    };
    let plan = plan(vec![path], options);
    let layout = Layout::discover(&plan).unwrap();
    let got = read(&plan, layout.splits);
    assert_eq!(
        got,
        [
            "1 1709528767000 cpu count=\"3\",value=0.5",
            "2 malformed_csv: column `value`: `n/a` is not a valid Float64",
            "3 bad_time: ts: `04.03.2024` does not match time_format `%Y-%m-%d %H:%M:%S` (input contains invalid characters)",
        ]
    );
}

#[test]
fn types_are_inferred_unless_declared() {
    let dir = tempfile::tempdir().unwrap();
    let text = "ts,type,i,f,b,s,e,nan\n1,a,1,1.5,true,x,,NaN\n2,a,2,2,false,3,,1.0\n";
    let path = write(dir.path(), "t.csv", text.as_bytes());
    let p = plan(vec![path.clone()], CsvOptions::default());
    let fs = FileSchema::read(&p, &path).unwrap();
    let types: Vec<String> = fs.schema.fields().iter().map(|f| f.data_type().to_string()).collect();
    assert_eq!(
        types,
        ["Utf8", "Utf8", "Int64", "Float64", "Boolean", "Utf8", "Utf8", "Float64"]
    );
    let declared = CsvOptions {
        columns: vec![("i".into(), CsvType::Float), ("s".into(), CsvType::Auto)],
        ..CsvOptions::default()
    };
    let fs = FileSchema::read(&plan(vec![path.clone()], declared), &path).unwrap();
    assert_eq!(fs.schema.field(2).data_type().to_string(), "Float64");
    assert_eq!(fs.schema.field(5).data_type().to_string(), "Utf8");
    let unknown = CsvOptions {
        columns: vec![("cpu".into(), CsvType::Float)],
        ..CsvOptions::default()
    };
    let e = FileSchema::read(&plan(vec![path.clone()], unknown), &path)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("t.csv") && e.contains("`cpu`") && e.contains("ts, type, i"),
        "{e}"
    );
    let no_time = SourcePlan {
        time_field: "time".into(),
        ..p
    };
    let e = FileSchema::read(&no_time, &path).unwrap_err().to_string();
    assert!(e.contains("no time column `time`"), "{e}");
}

/// A bad value in a column no stage reads is not decoded, so it is no error.
#[test]
fn unread_columns_are_not_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let text = "ts,type,a,b\n1,x,1,1\n2,x,2,oops\n3,x,zz,3\n";
    let path = write(dir.path(), "p.csv", text.as_bytes());
    let options = CsvOptions {
        columns: vec![("a".into(), CsvType::Int), ("b".into(), CsvType::Int)],
        ..CsvOptions::default()
    };
    let mut p = plan(vec![path], options);
    p.projection = Some(vec!["a".into()]);
    let layout = Layout::discover(&p).unwrap();
    assert_eq!(
        read(&p, layout.splits),
        [
            "2 1 x a=1",
            "3 2 x a=2",
            "4 malformed_csv: column `a`: `zz` is not a valid Int64"
        ]
    );
}
