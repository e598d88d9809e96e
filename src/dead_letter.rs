//! Dead letters: records that a stage rejected, with the reason. Every stage that can reject a
//! record sends it here instead of dropping it or panicking; all of them end in one
//! `dead_letters` output and are counted per reason.
//!
//! A dead letter's `record` is kept up to `[pipeline] dead_letter_record_bytes` (default
//! [`DEFAULT_RECORD_BYTES`]): a longer one keeps that prefix (cut at a character boundary), its
//! original length and an FNV-1a hash of the whole, so that memory and output size stay
//! bounded by the number of rejections, not by the size of what was rejected.

use serde::{Deserialize, Serialize};

/// One rejected record.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Where it was rejected: `source:NAME` or `aggregate:NAME`.
    pub stage: String,
    /// A short machine-readable reason: `late`, `bad_time`, `missing_type`, `malformed_json`, ...
    pub reason: String,
    /// Human-readable detail: the field, the expected type, the value.
    pub detail: String,
    /// Where the record came from: `FILE#row N` or `FILE:LINE`.
    pub location: String,
    /// The original record as JSON (for Parquet sources, the columns the pipeline reads).
    pub record: String,
    /// Event time in milliseconds, when one could be read.
    pub event_time: Option<i64>,
    /// Set when `record` was cut to its prefix: what the whole record was.
    pub original: Option<Original>,
}

/// The length and hash of a record that was cut (see [`DeadLetter::clip`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Original {
    pub bytes: u64,
    /// FNV-1a of the whole record's bytes.
    pub hash: u64,
}

/// Bytes of a dead letter's record kept when the spec does not say.
pub const DEFAULT_RECORD_BYTES: usize = 4096;

impl DeadLetter {
    /// A row `e` of a stream a stage read, rejected for `reason`: located by its type and
    /// time, its record the event as JSON with the stream's time and type field names.
    pub fn of_event(
        stage: &str,
        reason: &str,
        detail: String,
        e: &crate::event::Event,
        (time_field, type_field): (&str, &str),
    ) -> DeadLetter {
        DeadLetter {
            stage: stage.to_string(),
            reason: reason.into(),
            detail,
            location: format!("{} row at {}", e.kind, crate::value::format_time(e.time)),
            record: e.json_text(time_field, type_field),
            event_time: Some(e.time),
            original: None,
        }
    }

    /// Keeps at most `limit` bytes of the record (at a character boundary), noting the whole
    /// record's length and hash.
    pub fn clip(mut self, limit: usize) -> DeadLetter {
        if self.record.len() > limit {
            let whole = self.original.unwrap_or(Original {
                bytes: self.record.len() as u64,
                hash: crate::value::stable_hash_bytes(self.record.as_bytes()),
            });
            let mut cut = limit;
            while !self.record.is_char_boundary(cut) {
                cut -= 1;
            }
            self.original = Some(whole);
            self.record.truncate(cut);
            self.record.shrink_to_fit();
        }
        self
    }

    /// Sets the record from raw bytes, copying at most `limit` of them (see [`DeadLetter::clip`]).
    pub fn with_raw_record(self, raw: &[u8], limit: usize) -> DeadLetter {
        // A character cut by the limit decodes lossily and is then clipped away.
        let kept = &raw[..raw.len().min(limit)];
        let mut letter = DeadLetter {
            record: String::from_utf8_lossy(kept).into_owned(),
            ..self
        }
        .clip(limit);
        if raw.len() > limit {
            letter.original = Some(Original {
                bytes: raw.len() as u64,
                hash: crate::value::stable_hash_bytes(raw),
            });
        }
        letter
    }

    /// The column names and values written to the `dead_letters` output.
    pub fn columns() -> Vec<String> {
        [
            "stage",
            "reason",
            "detail",
            "location",
            "record",
            "record_bytes",
            "record_hash",
            "event_time",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    pub fn row(&self) -> Vec<crate::value::Value> {
        use crate::value::Value;
        vec![
            Value::str(&self.stage),
            Value::str(&self.reason),
            Value::str(&self.detail),
            Value::str(&self.location),
            Value::str(&self.record),
            Value::Int(self.original.map_or(self.record.len() as u64, |o| o.bytes) as i64),
            self.original
                .map_or(Value::Null, |o| Value::str(&format!("{:016x}", o.hash))),
            self.event_time.map(Value::Time).unwrap_or(Value::Null),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(record: &str) -> DeadLetter {
        DeadLetter {
            stage: "source:s".into(),
            reason: "malformed_json".into(),
            detail: String::new(),
            location: String::new(),
            record: record.into(),
            event_time: None,
            original: None,
        }
    }

    #[test]
    fn short_records_are_kept_whole() {
        let l = letter("{\"a\":1}").clip(64);
        assert_eq!(l.record, "{\"a\":1}");
        assert_eq!(l.original, None);
        assert_eq!(l.row()[5], crate::value::Value::Int(7));
        assert_eq!(l.row()[6], crate::value::Value::Null);
    }

    #[test]
    fn long_records_keep_a_prefix_their_length_and_hash() {
        let whole = "é".repeat(10); // 20 bytes, two per character
        let l = letter(&whole).clip(5);
        assert_eq!(l.record, "éé", "cut at a character boundary");
        let o = l.original.unwrap();
        assert_eq!(o.bytes, 20);
        assert_eq!(o.hash, crate::value::stable_hash_bytes(whole.as_bytes()));
        let raw = letter("").with_raw_record(whole.as_bytes(), 5);
        assert_eq!((raw.record.as_str(), raw.original), ("éé", Some(o)));
        assert_eq!(letter("").with_raw_record(b"{}", 5).record, "{}");
        // Clipping again keeps what the whole record was.
        assert_eq!(raw.clone().clip(3).original, Some(o));
    }
}
