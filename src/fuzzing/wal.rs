//! The write-ahead log's record decoder and its segment reader.

use std::path::Path;

use crate::serve::record::Record;
use crate::serve::wal::{read_segment, Replayed};

/// The bytes are one record's payload; they are also read as a segment, and their parts
/// between `0xff 0xfe` separators are framed into a segment with good checksums and read back.
pub fn wal(data: &[u8]) {
    record(data);
    let read = |bytes: &[u8]| {
        let mut records = Vec::new();
        let mut replayed = Replayed::default();
        let mut next = 7;
        let good = read_segment(Path::new("fuzz.wal"), bytes, &mut replayed, &mut next, &mut |seq, r| {
            records.push((seq, r))
        });
        (good, records, replayed, next)
    };
    // Raw bytes: a good prefix of whole records, the rest a torn tail.
    let (good, records, replayed, next) = read(data);
    if let Ok(good) = good {
        assert!(good <= data.len() as u64);
        assert_eq!(
            frames(records.iter().map(|(_, r)| r)),
            data[..good as usize],
            "the good prefix"
        );
        assert_eq!((replayed.records, replayed.bytes), (records.len() as u64, good));
        assert_eq!(next, 7 + records.len() as u64);
    }
    // Framed parts: every part that decodes is read back, in order, until one does not.
    let parts: Vec<&[u8]> = split(data, b"\xff\xfe");
    let mut segment = Vec::new();
    for p in &parts {
        frame(p, &mut segment);
    }
    let (good, records, _, _) = read(&segment);
    let decodable = parts.iter().take_while(|p| Record::decode(p).is_ok()).count();
    assert_eq!(records.len(), decodable);
    for ((seq, r), (i, p)) in records.iter().zip(parts.iter().enumerate()) {
        assert_eq!(*seq, 7 + i as u64);
        assert_eq!(encoded(r), *p);
    }
    match good {
        Ok(good) => {
            assert_eq!(decodable, parts.len());
            assert_eq!(good, segment.len() as u64);
        }
        Err(e) => {
            assert!(decodable < parts.len());
            let _ = e.to_string();
        }
    }
}

/// Decodes one payload: what decodes encodes back to the same bytes, and a batch's lines have
/// increasing offsets within the batch.
fn record(data: &[u8]) {
    let Ok(r) = Record::decode(data) else {
        return;
    };
    assert_eq!(encoded(&r), data, "encode(decode(x)) == x for {r:?}");
    let _ = r.source();
    if let Record::Batch(b) = &r {
        let end = b.end_offset();
        let mut last = b.first_offset;
        b.for_each_line(|offset, line| {
            assert!(
                offset > last && offset <= end,
                "offset {offset} after {last}, end {end}"
            );
            assert!(!line.contains(&b'\n'));
            last = offset;
        });
        let _ = (b.weight(), b.anonymous(), b.is_empty());
    }
}

fn encoded(r: &Record) -> Vec<u8> {
    let mut out = Vec::new();
    r.encode(&mut out);
    out
}

/// Frames a payload as the log does: length, CRC-32, payload.
fn frame(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

fn frames<'a>(records: impl Iterator<Item = &'a Record>) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        frame(&encoded(r), &mut out);
    }
    out
}

fn split<'a>(data: &'a [u8], separator: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(i) = memchr::memmem::find(rest, separator) {
        parts.push(&rest[..i]);
        rest = &rest[i + separator.len()..];
    }
    parts.push(rest);
    parts
}
