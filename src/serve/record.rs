//! What flows from the sockets to the workers and into the write-ahead log: batches of lines of
//! one client, idle-time watermark advances, and partitions joining and leaving the source's
//! watermark ([`super::partitions`]). Their binary encoding is the log's record payload.
//!
//! Lines are numbered per client from 1: a batch covers offsets `first_offset + 1 ..=
//! first_offset + lines`. Each offset is either a line in `data` or a [`Reject`] (a line over
//! the size limit, kept as a prefix). What the stream ended with (a `truncated` fragment, or a
//! line over the limit without its newline) is a reject at `first_offset + lines + 1`, past the
//! batch: it is not a line, and a resuming client resends it whole.

pub use super::partitions::Leave;

/// Why the network layer rejected a line before any parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    TooLarge = 1,
    Truncated = 2,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::TooLarge => "too_large",
            RejectReason::Truncated => "truncated",
        }
    }
}

/// A line the network layer rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub offset: u64,
    pub reason: RejectReason,
    /// The full length of the line or fragment.
    pub bytes: u64,
    /// Its first bytes.
    pub prefix: Vec<u8>,
}

/// Lines of one client for one source, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// Index among the plan's TCP sources.
    pub source: u16,
    /// The client id; anonymous connections get `#N`, which is never deduplicated.
    pub client: String,
    /// Lines of this client before this batch.
    pub first_offset: u64,
    /// Offsets covered: lines in `data` plus rejects at offsets up to the end.
    pub lines: u32,
    /// Complete lines, each ending with `\n` (blank lines included: they count).
    pub data: Vec<u8>,
    pub rejects: Vec<Reject>,
    /// Wall-clock time (epoch ms) when the lines arrived: event times more than the source's
    /// `max_future` past it are `future_time`. Logged, so a replay of the log decides alike;
    /// `None` in records logged before it was (they are not checked).
    pub received_ms: Option<i64>,
}

/// One log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Batch(Batch),
    /// No line arrived for the source for the idle timeout: its watermark moves `delta_ms`.
    Advance {
        source: u16,
        delta_ms: u64,
    },
    /// A client said hello: its partition holds the source's watermark from now on.
    Join {
        source: u16,
        client: String,
    },
    /// A partition stops holding the source's watermark.
    Leave {
        source: u16,
        client: String,
        why: Leave,
    },
}

impl Record {
    /// Index of the TCP source the record belongs to.
    pub fn source(&self) -> u16 {
        match self {
            Record::Batch(b) => b.source,
            Record::Advance { source, .. } | Record::Join { source, .. } | Record::Leave { source, .. } => *source,
        }
    }
}

impl Batch {
    /// Anonymous clients are numbered per connection and never deduplicated.
    pub fn anonymous(&self) -> bool {
        self.client.starts_with('#')
    }

    /// The last offset covered.
    pub fn end_offset(&self) -> u64 {
        self.first_offset + u64::from(self.lines)
    }

    pub fn is_empty(&self) -> bool {
        self.lines == 0 && self.rejects.is_empty()
    }

    /// Bytes this batch holds, for the bounded queue.
    pub fn weight(&self) -> usize {
        self.data.len() + self.rejects.iter().map(|r| r.prefix.len() + 32).sum::<usize>() + 64
    }

    /// Calls `f` with each line of `data` and its offset, skipping the offsets of rejects.
    pub fn for_each_line(&self, mut f: impl FnMut(u64, &[u8])) {
        let mut offset = self.first_offset;
        let end = self.end_offset();
        let mut rejects = self.rejects.iter().filter(|r| r.offset <= end).peekable();
        for line in self.data.split(|b| *b == b'\n') {
            offset += 1;
            while rejects.peek().is_some_and(|r| r.offset == offset) {
                rejects.next();
                offset += 1;
            }
            if offset > end {
                break;
            }
            f(offset, line);
        }
    }

    /// Drops what is at or below `durable` (lines already in the log); returns how many offsets.
    pub fn skip_through(&mut self, durable: u64) -> u64 {
        if durable <= self.first_offset {
            return 0;
        }
        let through = durable.min(self.end_offset());
        let skip = (through - self.first_offset) as usize;
        let rejected = self.rejects.iter().filter(|r| r.offset <= through).count();
        let lines_skipped = skip - rejected;
        let mut cut = 0;
        for _ in 0..lines_skipped {
            match memchr::memchr(b'\n', &self.data[cut..]) {
                Some(i) => cut += i + 1,
                None => cut = self.data.len(),
            }
        }
        self.data.drain(..cut);
        self.rejects.retain(|r| r.offset > durable);
        self.first_offset += skip as u64;
        self.lines -= skip as u32;
        skip as u64
    }
}

const BATCH: u8 = 1;
const ADVANCE: u8 = 2;
const JOIN: u8 = 3;
const LEAVE: u8 = 4;
/// A batch with its arrival time: `BATCH_AT | received_ms (i64)` then a batch's payload.
const BATCH_AT: u8 = 5;

impl Batch {
    /// Appends the payload encoding of `Record::Batch(self)` to `out`, without cloning.
    pub fn encode(&self, out: &mut Vec<u8>) {
        if let Some(ms) = self.received_ms {
            out.push(BATCH_AT);
            out.extend_from_slice(&ms.to_le_bytes());
        }
        out.push(BATCH);
        out.extend_from_slice(&self.source.to_le_bytes());
        encode_client(&self.client, out);
        out.extend_from_slice(&self.first_offset.to_le_bytes());
        out.extend_from_slice(&self.lines.to_le_bytes());
        out.extend_from_slice(&(self.rejects.len() as u32).to_le_bytes());
        for r in &self.rejects {
            out.extend_from_slice(&r.offset.to_le_bytes());
            out.push(r.reason as u8);
            out.extend_from_slice(&r.bytes.to_le_bytes());
            out.extend_from_slice(&(r.prefix.len() as u32).to_le_bytes());
            out.extend_from_slice(&r.prefix);
        }
        out.extend_from_slice(&self.data);
    }
}

/// Why a payload does not decode (a corrupt record that passed its checksum, or a newer format).
#[derive(Debug, thiserror::Error)]
#[error("bad log record: {0}")]
pub struct DecodeError(pub &'static str);

impl Record {
    /// Appends the payload encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Record::Advance { source, delta_ms } => {
                out.push(ADVANCE);
                out.extend_from_slice(&source.to_le_bytes());
                out.extend_from_slice(&delta_ms.to_le_bytes());
            }
            Record::Batch(b) => b.encode(out),
            Record::Join { source, client } => {
                out.push(JOIN);
                out.extend_from_slice(&source.to_le_bytes());
                encode_client(client, out);
            }
            Record::Leave { source, client, why } => {
                out.push(LEAVE);
                out.extend_from_slice(&source.to_le_bytes());
                encode_client(client, out);
                out.push(*why as u8);
            }
        }
    }

    pub fn decode(payload: &[u8]) -> Result<Record, DecodeError> {
        let mut r = Reader(payload);
        let mut received_ms = None;
        let mut kind = r.u8()?;
        if kind == BATCH_AT {
            received_ms = Some(r.u64()? as i64);
            kind = r.u8()?;
            if kind != BATCH {
                return Err(DecodeError("record kind after an arrival time"));
            }
        }
        let control = match kind {
            ADVANCE => Record::Advance {
                source: r.u16()?,
                delta_ms: r.u64()?,
            },
            JOIN => Record::Join {
                source: r.u16()?,
                client: r.client()?,
            },
            LEAVE => Record::Leave {
                source: r.u16()?,
                client: r.client()?,
                why: match r.u8()? {
                    1 => Leave::Idle,
                    2 => Leave::Closed,
                    _ => return Err(DecodeError("leave reason")),
                },
            },
            BATCH => {
                let source = r.u16()?;
                let client = r.client()?;
                let first_offset = r.u64()?;
                let lines = r.u32()?;
                // Offsets up to one past the batch (a reject there) must be numbers.
                if first_offset.checked_add(u64::from(lines) + 1).is_none() {
                    return Err(DecodeError("offsets past 2^64"));
                }
                let count = r.u32()? as usize;
                let mut rejects = Vec::with_capacity(count.min(1024));
                for _ in 0..count {
                    let offset = r.u64()?;
                    let reason = match r.u8()? {
                        1 => RejectReason::TooLarge,
                        2 => RejectReason::Truncated,
                        _ => return Err(DecodeError("reject reason")),
                    };
                    let bytes = r.u64()?;
                    let n = r.u32()? as usize;
                    rejects.push(Reject {
                        offset,
                        reason,
                        bytes,
                        prefix: r.bytes(n)?.to_vec(),
                    });
                }
                // A batch's lines are the rest of the payload.
                return Ok(Record::Batch(Batch {
                    source,
                    client,
                    first_offset,
                    lines,
                    data: r.0.to_vec(),
                    rejects,
                    received_ms,
                }));
            }
            _ => return Err(DecodeError("record kind")),
        };
        // Bytes after a whole record are not of this format: never ignore them.
        if !r.0.is_empty() {
            return Err(DecodeError("bytes after the record"));
        }
        Ok(control)
    }
}

fn encode_client(client: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(client.len() as u16).to_le_bytes());
    out.extend_from_slice(client.as_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn client(&mut self) -> Result<String, DecodeError> {
        let n = self.u16()? as usize;
        String::from_utf8(self.bytes(n)?.to_vec()).map_err(|_| DecodeError("client id"))
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError("short payload"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.bytes(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.bytes(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.bytes(8)?.try_into().expect("8 bytes")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Batch {
        Batch {
            source: 1,
            client: "c1".into(),
            first_offset: 10,
            lines: 5,
            data: b"a\nb\n\nd\n".to_vec(),
            received_ms: Some(1_700_000_000_000),
            rejects: vec![
                Reject {
                    offset: 12,
                    reason: RejectReason::TooLarge,
                    bytes: 1 << 30,
                    prefix: b"{\"x\":".to_vec(),
                },
                Reject {
                    offset: 16,
                    reason: RejectReason::Truncated,
                    bytes: 3,
                    prefix: b"{\"y".to_vec(),
                },
            ],
        }
    }

    fn lines(b: &Batch) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        b.for_each_line(|o, l| out.push((o, String::from_utf8_lossy(l).into_owned())));
        out
    }

    #[test]
    fn offsets_skip_rejects() {
        assert_eq!(
            lines(&batch()),
            [
                (11, "a".into()),
                (13, "b".into()),
                (14, String::new()),
                (15, "d".into())
            ]
        );
    }

    #[test]
    fn encoding_round_trips() {
        for rec in [
            Record::Batch(batch()),
            Record::Batch(Batch {
                received_ms: None,
                ..batch()
            }),
            Record::Advance {
                source: 3,
                delta_ms: 250,
            },
            Record::Join {
                source: 2,
                client: "sender-1".into(),
            },
            Record::Leave {
                source: 0,
                client: "#17".into(),
                why: Leave::Closed,
            },
            Record::Leave {
                source: 1,
                client: "c".into(),
                why: Leave::Idle,
            },
        ] {
            let mut buf = Vec::new();
            rec.encode(&mut buf);
            assert_eq!(Record::decode(&buf).unwrap(), rec);
            assert!(Record::decode(&buf[..buf.len().min(20) - 1]).is_err() || buf.len() > 20);
        }
    }

    /// Fuzzing found that bytes after an advance, a join or a leave were ignored (`wal`).
    #[test]
    fn bytes_after_a_record_are_an_error() {
        for rec in [
            Record::Advance {
                source: 0,
                delta_ms: 5000,
            },
            Record::Join {
                source: 0,
                client: "c".into(),
            },
            Record::Leave {
                source: 0,
                client: "c".into(),
                why: Leave::Idle,
            },
        ] {
            let mut buf = Vec::new();
            rec.encode(&mut buf);
            buf.push(0);
            assert_eq!(
                Record::decode(&buf).unwrap_err().to_string(),
                "bad log record: bytes after the record"
            );
        }
    }

    /// Fuzzing found a batch whose last offset overflowed (`wal`), which replay computes for
    /// the client's durable offset.
    #[test]
    fn offsets_past_u64_are_an_error() {
        for (first_offset, lines) in [(u64::MAX, 1), (u64::MAX - 5, 5), (u64::MAX, 0)] {
            let mut buf = Vec::new();
            Record::Batch(Batch {
                first_offset,
                lines,
                ..Batch::default()
            })
            .encode(&mut buf);
            assert_eq!(
                Record::decode(&buf).unwrap_err().to_string(),
                "bad log record: offsets past 2^64"
            );
        }
        let mut buf = Vec::new();
        let last = Batch {
            first_offset: u64::MAX - 6,
            lines: 5,
            ..Batch::default()
        };
        Record::Batch(last.clone()).encode(&mut buf);
        assert_eq!(Record::decode(&buf).unwrap(), Record::Batch(last));
    }

    #[test]
    fn skipping_durable_lines() {
        for (durable, expect) in [
            (9, vec![11, 13, 14, 15]),
            (10, vec![11, 13, 14, 15]),
            (11, vec![13, 14, 15]),
            (12, vec![13, 14, 15]),
            (14, vec![15]),
            (15, vec![]),
            (99, vec![]),
        ] {
            let mut b = batch();
            b.skip_through(durable);
            let got: Vec<u64> = lines(&b).into_iter().map(|(o, _)| o).collect();
            assert_eq!(got, expect, "durable {durable}");
            assert_eq!(b.end_offset(), 15);
        }
    }
}
