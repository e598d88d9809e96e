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

/// Writes `times` as a Parquet file of one required INT64 column `event_time`, uncompressed and
/// plain-encoded in small pages whose headers carry a CRC-32 of their data. (The parquet crate
/// verifies such checksums but does not write them, so the page headers are written here, in
/// Thrift's compact protocol.)
fn write_parquet_with_page_checksums(path: &std::path::Path, times: &[i64]) {
    use parquet::basic::{Compression, Encoding, PageType};
    use parquet::column::page::{CompressedPage, Page, PageWriteSpec, PageWriter};
    use parquet::column::writer::{get_column_writer, get_typed_column_writer};
    use parquet::data_type::Int64Type;
    use parquet::file::properties::{WriterProperties, WriterVersion};
    use parquet::file::writer::SerializedFileWriter;
    use std::sync::{Arc, Mutex};

    struct ChecksummedPages(Arc<Mutex<Vec<u8>>>);

    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    /// The next field (id one more than the last) holding an i32.
    fn i32_field(out: &mut Vec<u8>, v: i32) {
        out.push(0x15);
        varint(out, ((v << 1) ^ (v >> 31)) as u32 as u64);
    }
    fn encoding(e: Encoding) -> i32 {
        match e {
            Encoding::PLAIN => 0,
            Encoding::RLE => 3,
            other => panic!("unexpected encoding {other}"),
        }
    }

    impl PageWriter for ChecksummedPages {
        fn write_page(&mut self, page: CompressedPage) -> parquet::errors::Result<PageWriteSpec> {
            let Page::DataPage {
                num_values,
                encoding: values,
                def_level_encoding,
                rep_level_encoding,
                ..
            } = page.compressed_page()
            else {
                panic!("only data pages (no dictionary)")
            };
            let data = page.data();
            // PageHeader {1: type, 2: uncompressed size, 3: compressed size, 4: crc,
            //             5: DataPageHeader {1: values, 2..4: encodings}}
            let mut header = Vec::new();
            i32_field(&mut header, 0);
            i32_field(&mut header, page.uncompressed_size() as i32);
            i32_field(&mut header, page.compressed_size() as i32);
            i32_field(&mut header, crc32fast::hash(data) as i32);
            header.push(0x1c);
            i32_field(&mut header, *num_values as i32);
            i32_field(&mut header, encoding(*values));
            i32_field(&mut header, encoding(*def_level_encoding));
            i32_field(&mut header, encoding(*rep_level_encoding));
            header.extend_from_slice(&[0, 0]);
            let mut buf = self.0.lock().unwrap();
            let mut spec = PageWriteSpec::new();
            spec.page_type = PageType::DATA_PAGE;
            spec.uncompressed_size = page.uncompressed_size() + header.len();
            spec.compressed_size = page.compressed_size() + header.len();
            spec.num_values = page.num_values();
            spec.offset = buf.len() as u64;
            spec.bytes_written = (header.len() + data.len()) as u64;
            buf.extend_from_slice(&header);
            buf.extend_from_slice(data);
            Ok(spec)
        }
        fn close(&mut self) -> parquet::errors::Result<()> {
            Ok(())
        }
    }

    let schema =
        Arc::new(parquet::schema::parser::parse_message_type("message m { required int64 event_time; }").unwrap());
    let props = Arc::new(
        WriterProperties::builder()
            .set_writer_version(WriterVersion::PARQUET_1_0)
            .set_compression(Compression::UNCOMPRESSED)
            .set_dictionary_enabled(false)
            .set_data_page_size_limit(1024)
            .set_write_batch_size(64)
            .build(),
    );
    let mut writer =
        SerializedFileWriter::new(std::fs::File::create(path).unwrap(), schema, Arc::clone(&props)).unwrap();
    let descr = writer.schema_descr().column(0);
    let chunk = Arc::new(Mutex::new(Vec::new()));
    let column = get_column_writer(descr, props, Box::new(ChecksummedPages(Arc::clone(&chunk))));
    let mut column = get_typed_column_writer::<Int64Type>(column);
    column.write_batch(times, None, None).unwrap();
    let closed = column.close().unwrap();
    assert!(closed.offset_index.as_ref().is_none_or(|o| o.page_locations.len() > 4));
    let bytes = bytes::Bytes::from(chunk.lock().unwrap().clone());
    let mut row_group = writer.next_row_group().unwrap();
    row_group.append_column(&bytes, closed).unwrap();
    row_group.close().unwrap();
    writer.close().unwrap();
}

#[test]
fn a_page_checksum_mismatch_fails_the_run_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.toml");
    std::fs::write(
        &spec,
        "[pipeline]\nname = \"crc\"\n[sources.events]\npath = \"events.parquet\"\ntime_field = \"event_time\"\n\
         [[aggregates]]\nname = \"per_minute\"\nsource = \"events\"\nwindow = { tumbling = \"1m\" }\nemit = \"final\"\nmeasures.n = \"count()\"\n",
    )
    .unwrap();
    let times: Vec<i64> = (0..1000).map(|i| 1_700_000_000_000 + i * 1000).collect();
    let file = dir.path().join("events.parquet");
    write_parquet_with_page_checksums(&file, &times);
    let run = || crate::util::sluice(&["run", spec.to_str().unwrap(), "--out", "out", "-q"], dir.path());
    let good = run();
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));
    let rows = crate::util::parquet_lines(&dir.path().join("out/per_minute"));
    assert_eq!(rows.len(), 17, "{rows:?}");

    // One bit of one value in the middle of the file: without the checksum this reads as an
    // event one millisecond later.
    let mut bytes = std::fs::read(&file).unwrap();
    let value = times[500].to_le_bytes();
    let at = bytes
        .windows(8)
        .position(|w| w == value)
        .expect("the value is stored plainly");
    bytes[at] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    let bad = run();
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("events.parquet: row group 0: a page checksum does not match"),
        "{stderr}"
    );
    assert!(!dir.path().join("out/per_minute").exists());
}

/// `count` RFC 3339 times a second apart from `start` (epoch seconds).
fn rfc3339_seconds(start: i64, count: i64) -> Vec<String> {
    (start..start + count)
        .map(|s| sluice::value::format_time(s * 1000))
        .collect()
}

#[test]
fn a_far_future_time_is_dead_lettered_and_does_not_make_later_events_late() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.ndjson");
    let start = 1_709_510_400; // 2024-03-04T00:00:00Z
    let mut times = rfc3339_seconds(start, 10);
    times.push("9999-12-31T23:59:59Z".into());
    times.extend(rfc3339_seconds(start + 10, 1000));
    // A real gap of three days: the log goes on from there, nothing is rejected.
    times.extend(rfc3339_seconds(start + 3 * 86_400, 10));
    let text: String = times
        .iter()
        .map(|t| format!("{{\"ts\":\"{t}\",\"type\":\"click\"}}\n"))
        .collect();
    std::fs::write(&path, text).unwrap();
    let spec = format!(
        "[pipeline]\nname = \"future\"\n[sources.s]\npath = \"{}\"\ntime_field = \"ts\"\ntype_field = \"type\"\n\
         [[aggregates]]\nname = \"daily\"\nsource = \"s\"\nwindow = {{ tumbling = \"1d\" }}\nemit = \"final\"\nmeasures.n = \"count()\"\n",
        path.display()
    );
    let plan = plan_text(&spec, dir.path());
    for workers in [1, 2, 4] {
        let summary = run_collect(&plan, workers);
        let letters = &summary.collected[sluice::DEAD_LETTERS];
        let reasons: Vec<String> = letters.iter().map(|(row, _, _)| row[1].to_string()).collect();
        assert_eq!(reasons, ["future_time"], "{workers} workers: {letters:?}");
        assert!(letters[0].0[2].to_string().contains("max_future 1d"), "{letters:?}");
        let mut counts: Vec<Value> = summary.collected["daily"]
            .iter()
            .map(|(row, _, _)| row[2].clone())
            .collect();
        counts.sort_by_key(|v| v.to_string());
        assert_eq!(counts, [Value::Int(10), Value::Int(1010)], "{workers} workers");
    }
    // A wider bound admits it: it then makes the 1,000 events after it late.
    let wide = plan_text(
        &spec.replace(
            "type_field = \"type\"\n",
            "type_field = \"type\"\nmax_future = \"3000000d\"\n",
        ),
        dir.path(),
    );
    assert_eq!(run_collect(&wide, 1).late(), 1010);
}
