//! The write-ahead log: records appended to segment files `DIR/SSSSSSSSSSSSSSSSSSSS.wal`, each
//! framed as `payload length (u32 LE) | CRC-32 of the payload (u32 LE) | payload`, made durable
//! by one `fdatasync` per group of appends. A segment is named by the sequence number of its
//! first record, so numbering survives the removal of older segments.
//!
//! Opening a log replays every whole record in order, with its sequence number. A torn tail (a
//! short frame, or a checksum that does not match, as a crash in the middle of an append
//! leaves) in the last segment ends the replay: the segment is cut back to its last whole
//! record, so appends continue after it. A segment is synced before the next is created, so the
//! same in an earlier segment is corruption, not a crash, and opening fails. A checkpoint
//! ([`super::checkpoint`]) removes the segments whose records are all before its replay point
//! ([`Wal::truncate_before`]).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use super::record::Record;

/// A new segment is started once the current one holds this many bytes.
pub const SEGMENT_BYTES: u64 = 64 << 20;

/// Largest payload a frame may declare; anything larger is a torn or corrupt tail.
const MAX_PAYLOAD: u32 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("write-ahead log {path}: {message}")]
    Corrupt { path: PathBuf, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An open log, positioned after its last record.
pub struct Wal {
    dir: PathBuf,
    /// The first sequence number of each segment, oldest first; the last one is open.
    starts: Vec<u64>,
    file: File,
    bytes: u64,
    /// Frames encoded since the last write.
    pending: Vec<u8>,
    pending_records: u64,
    /// The sequence number the next appended record gets.
    next: u64,
    segment_bytes: u64,
}

/// What opening a log found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    pub records: u64,
    pub bytes: u64,
    /// Bytes of a torn tail cut off.
    pub torn_bytes: u64,
}

impl Wal {
    /// Opens (or creates) the log in `dir`, calling `each` with every record and its sequence
    /// number, in order. An empty log starts numbering at `first`.
    pub fn open(dir: &Path, first: u64, mut each: impl FnMut(u64, Record)) -> Result<(Wal, Replayed), WalError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let segments = segments(dir)?;
        let mut replayed = Replayed::default();
        let mut last: Option<(u64, u64)> = None;
        let mut starts = Vec::new();
        let mut next = segments.first().map_or(first, |s| s.0);
        for (i, &(index, ref path)) in segments.iter().enumerate() {
            if index != next {
                return Err(WalError::Corrupt {
                    path: path.clone(),
                    message: format!("the segment starts at record {index}, but the log before it ends at {next}"),
                });
            }
            starts.push(index);
            let file = File::open(path).map_err(io(path))?;
            let len = file.metadata().map_err(io(path))?.len();
            let reader = BufReader::with_capacity(1 << 20, file);
            let good = read_segment(path, reader, &mut replayed, &mut next, &mut each)?;
            last = Some((index, good));
            if good < len && i + 1 < segments.len() {
                // A segment is synced before the next one is created (`roll`), so a crash can
                // only tear the last one: bad bytes before it are corruption, and cutting them
                // would drop the acknowledged records of every later segment.
                return Err(WalError::Corrupt {
                    path: path.clone(),
                    message: format!(
                        "at byte {good}: a partial frame or a checksum mismatch in a segment that is not the last \
                         ({} later segment(s) follow); a crash only tears the last segment's tail",
                        segments.len() - i - 1
                    ),
                });
            }
            if good < len {
                replayed.torn_bytes += len - good;
                tracing::warn!(path = %path.display(), good, len, "write-ahead log: torn tail cut off");
                let f = OpenOptions::new().write(true).open(path).map_err(io(path))?;
                f.set_len(good).map_err(io(path))?;
                f.sync_all().map_err(io(path))?;
                break;
            }
        }
        let (index, bytes) = last.unwrap_or((first, 0));
        if starts.is_empty() {
            starts.push(index);
        }
        let path = segment_path(dir, index);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        sync_dir(dir)?;
        let wal = Wal {
            dir: dir.to_path_buf(),
            starts,
            file,
            bytes,
            pending: Vec::new(),
            pending_records: 0,
            next,
            segment_bytes: SEGMENT_BYTES,
        };
        Ok((wal, replayed))
    }

    /// Frames the payload `encode` writes into the pending group; returns the framed size.
    pub fn append(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> u64 {
        let start = self.pending.len();
        self.pending.extend_from_slice(&[0; 8]);
        encode(&mut self.pending);
        let payload = &self.pending[start + 8..];
        let len = payload.len() as u32;
        let crc = crc32fast::hash(payload);
        self.pending[start..start + 4].copy_from_slice(&len.to_le_bytes());
        self.pending[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        self.pending_records += 1;
        self.next += 1;
        (self.pending.len() - start) as u64
    }

    /// The sequence number the next appended record gets.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Segments on disk, the open one included.
    pub fn segments(&self) -> usize {
        self.starts.len()
    }

    fn index(&self) -> u64 {
        *self.starts.last().expect("a log has an open segment")
    }

    /// Writes the pending group; with `sync`, makes it durable (one `fdatasync`).
    pub fn write(&mut self, sync: bool) -> Result<(), WalError> {
        if !self.pending.is_empty() {
            if self.bytes >= self.segment_bytes {
                self.roll()?;
            }
            let path = segment_path(&self.dir, self.index());
            self.file.write_all(&self.pending).map_err(io(&path))?;
            self.bytes += self.pending.len() as u64;
            self.pending.clear();
            self.pending_records = 0;
            if self.pending.capacity() > 16 << 20 {
                self.pending.shrink_to(1 << 20);
            }
        }
        if sync {
            let path = segment_path(&self.dir, self.index());
            self.file.sync_data().map_err(io(&path))?;
        }
        Ok(())
    }

    /// Starts a new segment once the current one holds `bytes` (default [`SEGMENT_BYTES`]).
    pub fn set_segment_bytes(&mut self, bytes: u64) {
        self.segment_bytes = bytes.max(1);
    }

    fn roll(&mut self) -> Result<(), WalError> {
        let old = segment_path(&self.dir, self.index());
        self.file.sync_data().map_err(io(&old))?;
        // The pending group's first record starts the new segment.
        self.starts.push(self.next - self.pending_records);
        let path = segment_path(&self.dir, self.index());
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        self.bytes = 0;
        sync_dir(&self.dir)
    }

    /// Removes the segments whose records all come before record `seq` (never the open one);
    /// returns how many were removed.
    pub fn truncate_before(&mut self, seq: u64) -> Result<usize, WalError> {
        let mut removed = 0;
        while self.starts.len() > 1 && self.starts[1] <= seq {
            let path = segment_path(&self.dir, self.starts[0]);
            std::fs::remove_file(&path).map_err(io(&path))?;
            self.starts.remove(0);
            removed += 1;
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// Removes every segment: the outputs that depend on them are written.
    pub fn remove_all(self) -> Result<(), WalError> {
        drop(self.file);
        for (_, path) in segments(&self.dir)? {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        sync_dir(&self.dir)
    }
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.wal"))
}

/// Whether `dir` holds any segment.
pub fn has_segments(dir: &Path) -> bool {
    segments(dir).is_ok_and(|s| !s.is_empty())
}

/// Segment files in order.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        let index = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(index) = index {
            out.push((index, path));
        }
    }
    out.sort();
    Ok(out)
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Reads whole records from a segment's bytes; returns the length of the good prefix. `path`
/// only names the segment in errors.
pub(crate) fn read_segment(
    path: &Path,
    mut reader: impl Read,
    replayed: &mut Replayed,
    next: &mut u64,
    each: &mut impl FnMut(u64, Record),
) -> Result<u64, WalError> {
    let mut good = 0u64;
    let mut header = [0u8; 8];
    let mut payload = Vec::new();
    loop {
        if !read_full(&mut reader, &mut header).map_err(io(path))? {
            return Ok(good);
        }
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        if len > MAX_PAYLOAD {
            return Ok(good);
        }
        if !read_payload(&mut reader, len, &mut payload).map_err(io(path))? || crc32fast::hash(&payload) != crc {
            return Ok(good);
        }
        let record = Record::decode(&payload).map_err(|e| WalError::Corrupt {
            path: path.to_path_buf(),
            message: format!("at byte {good}: {e}"),
        })?;
        good += 8 + u64::from(len);
        replayed.records += 1;
        replayed.bytes += 8 + u64::from(len);
        each(*next, record);
        *next += 1;
    }
}

/// Reads a payload of `len` bytes into `buf`; `false` when the stream ends first. It reads what
/// is there rather than allocating what the header claims: a torn header can claim up to
/// [`MAX_PAYLOAD`] bytes in front of a few.
fn read_payload(r: &mut impl Read, len: u32, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    buf.clear();
    buf.reserve((len as usize).min(1 << 20));
    r.take(u64::from(len)).read_to_end(buf)?;
    Ok(buf.len() == len as usize)
}

/// Fills `buf`; `false` when the stream ends first (a torn tail or the end).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::super::record::Batch;
    use super::*;

    fn rec(i: u64) -> Record {
        Record::Batch(Batch {
            source: 0,
            client: "c".into(),
            first_offset: i,
            lines: 1,
            data: format!("{{\"n\":{i}}}\n").into_bytes(),
            rejects: Vec::new(),
            received_ms: Some(1_700_000_000_000 + i as i64),
        })
    }

    fn reopen(dir: &Path) -> (Wal, Vec<Record>, Replayed) {
        let mut got = Vec::new();
        let (wal, r) = Wal::open(dir, 0, |_, rec| got.push(rec)).unwrap();
        (wal, got, r)
    }

    #[test]
    fn records_survive_reopening_and_torn_tails_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, got, _) = reopen(dir.path());
        assert!(got.is_empty());
        for i in 0..10 {
            wal.append(|out| rec(i).encode(out));
        }
        wal.write(true).unwrap();
        drop(wal);
        let (mut wal, got, r) = reopen(dir.path());
        assert_eq!(got, (0..10).map(rec).collect::<Vec<_>>());
        assert_eq!(r.torn_bytes, 0);
        wal.append(|out| rec(10).encode(out));
        wal.write(true).unwrap();
        drop(wal);
        // A torn append: half a frame, then garbage.
        let seg = segment_path(dir.path(), 0);
        assert!(seg.exists());
        let full = std::fs::read(&seg).unwrap();
        for cut in [full.len() - 3, full.len() - 12] {
            std::fs::write(&seg, &full[..cut]).unwrap();
            let (_, got, r) = reopen(dir.path());
            assert_eq!(got.len(), 10, "cut at {cut}");
            assert!(r.torn_bytes > 0);
        }
        let mut corrupt = full.clone();
        let n = corrupt.len();
        corrupt[n - 2] ^= 0xff;
        std::fs::write(&seg, &corrupt).unwrap();
        let (mut wal, got, _) = reopen(dir.path());
        assert_eq!(got.len(), 10);
        wal.append(|out| rec(11).encode(out));
        wal.write(true).unwrap();
        drop(wal);
        let (wal, got, r) = reopen(dir.path());
        assert_eq!(got.len(), 11);
        assert_eq!(got[10], rec(11));
        assert_eq!(r.torn_bytes, 0);
        wal.remove_all().unwrap();
        let (_, got, _) = reopen(dir.path());
        assert!(got.is_empty());
    }

    /// A log in `dir` of records 0..10 over more than two 60-byte segments, and where each
    /// segment starts.
    fn segmented(dir: &Path) -> (Wal, Vec<u64>) {
        let (mut wal, _, _) = reopen(dir);
        wal.set_segment_bytes(60);
        for i in 0..10 {
            wal.append(|out| rec(i).encode(out));
            wal.write(true).unwrap();
        }
        let starts = wal.starts.clone();
        assert!(starts.len() > 2, "{starts:?}");
        (wal, starts)
    }

    #[test]
    fn segments_are_numbered_by_record_and_truncated_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, starts) = segmented(dir.path());
        assert_eq!(starts[0], 0);
        // Record 3 sits in the segment that starts at or before it: the ones before go.
        let keep = *starts.iter().filter(|&&s| s <= 3).max().unwrap();
        let removed = wal.truncate_before(3).unwrap();
        assert_eq!(removed, starts.iter().filter(|&&s| s < keep).count());
        assert_eq!(wal.starts[0], keep);
        // Truncating past the end keeps the open segment.
        wal.truncate_before(100).unwrap();
        assert_eq!(wal.segments(), 1);
        let last = *starts.last().unwrap();
        drop(wal);
        let mut seqs = Vec::new();
        let (wal, _) = Wal::open(dir.path(), 0, |seq, r| seqs.push((seq, r))).unwrap();
        assert_eq!(seqs, (last..10).map(|i| (i, rec(i))).collect::<Vec<_>>());
        assert_eq!(wal.next_seq(), 10);
        // A gap between segments is corruption, named by file.
        drop(wal);
        std::fs::write(segment_path(dir.path(), 50), b"").unwrap();
        let err = Wal::open(dir.path(), 0, |_, _| {}).err().unwrap();
        assert!(err.to_string().contains("starts at record 50"), "{err}");
    }

    /// A crash tears only the last segment: bad bytes in an earlier one are corruption, and
    /// opening refuses the log rather than cutting it there and dropping the later segments.
    #[test]
    fn bad_bytes_before_the_last_segment_are_refused_not_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, starts) = segmented(dir.path());
        drop(wal);
        let first = segment_path(dir.path(), starts[0]);
        let bytes = std::fs::read(&first).unwrap();
        let mut corrupt = bytes.clone();
        corrupt[bytes.len() / 2] ^= 0xff;
        std::fs::write(&first, &corrupt).unwrap();
        let err = Wal::open(dir.path(), 0, |_, _| {})
            .err()
            .expect("a corrupt earlier segment is refused");
        let message = err.to_string();
        assert!(
            message.contains("not the last") && message.contains(&first.display().to_string()),
            "{message}"
        );
        // Nothing was cut or removed: mending the byte gives every record back.
        assert_eq!(std::fs::read(&first).unwrap(), corrupt);
        std::fs::write(&first, &bytes).unwrap();
        let (_, got, r) = reopen(dir.path());
        assert_eq!(got, (0..10).map(rec).collect::<Vec<_>>());
        assert_eq!(r.torn_bytes, 0);
    }

    /// Fuzzing found that a torn header claiming a large payload allocated all of it before
    /// finding a few bytes (`wal`: 256 MiB per torn tail).
    #[test]
    fn a_torn_tail_allocates_what_is_there() {
        let mut buf = Vec::new();
        let mut tail: &[u8] = b"abc";
        assert!(!read_payload(&mut tail, MAX_PAYLOAD, &mut buf).unwrap());
        assert_eq!(buf, b"abc");
        assert!(buf.capacity() <= 1 << 20, "capacity {}", buf.capacity());
        let mut whole: &[u8] = b"abcdef";
        assert!(read_payload(&mut whole, 4, &mut buf).unwrap());
        assert_eq!((buf.as_slice(), whole), (&b"abcd"[..], &b"ef"[..]));
    }

    #[test]
    fn an_empty_log_starts_at_the_given_record() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), 42, |_, _| {}).unwrap();
        wal.append(|out| rec(0).encode(out));
        wal.write(true).unwrap();
        drop(wal);
        let mut seqs = Vec::new();
        Wal::open(dir.path(), 0, |seq, _| seqs.push(seq)).unwrap();
        assert_eq!(seqs, vec![42]);
    }
}
