//! The write-ahead log: records appended to segment files `DIR/NNNNNNNNNN.wal`, each framed as
//! `payload length (u32 LE) | CRC-32 of the payload (u32 LE) | payload`, made durable by one
//! `fdatasync` per group of appends.
//!
//! Opening a log replays every whole record in order. A torn tail (a short frame, or a checksum
//! that does not match, as a crash in the middle of an append leaves) ends the replay: the
//! segment is cut back to its last whole record and any later segment is removed, so appends
//! continue after the last good record.

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
    index: u64,
    file: File,
    bytes: u64,
    /// Frames encoded since the last write.
    pending: Vec<u8>,
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
    /// Opens (or creates) the log in `dir`, calling `each` with every record in order.
    pub fn open(dir: &Path, mut each: impl FnMut(Record)) -> Result<(Wal, Replayed), WalError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let segments = segments(dir)?;
        let mut replayed = Replayed::default();
        let mut last: Option<(u64, u64)> = None;
        for (i, &(index, ref path)) in segments.iter().enumerate() {
            let file = File::open(path).map_err(io(path))?;
            let len = file.metadata().map_err(io(path))?.len();
            let good = read_segment(path, file, &mut replayed, &mut each)?;
            last = Some((index, good));
            if good < len {
                replayed.torn_bytes += len - good;
                tracing::warn!(path = %path.display(), good, len, "write-ahead log: torn tail cut off");
                let f = OpenOptions::new().write(true).open(path).map_err(io(path))?;
                f.set_len(good).map_err(io(path))?;
                f.sync_all().map_err(io(path))?;
                for (_, later) in &segments[i + 1..] {
                    let len = std::fs::metadata(later).map(|m| m.len()).unwrap_or(0);
                    replayed.torn_bytes += len;
                    std::fs::remove_file(later).map_err(io(later))?;
                }
                break;
            }
        }
        let (index, bytes) = last.unwrap_or((0, 0));
        let path = segment_path(dir, index);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        sync_dir(dir)?;
        let wal = Wal {
            dir: dir.to_path_buf(),
            index,
            file,
            bytes,
            pending: Vec::new(),
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
        (self.pending.len() - start) as u64
    }

    /// Writes the pending group; with `sync`, makes it durable (one `fdatasync`).
    pub fn write(&mut self, sync: bool) -> Result<(), WalError> {
        if !self.pending.is_empty() {
            if self.bytes >= SEGMENT_BYTES {
                self.roll()?;
            }
            let path = segment_path(&self.dir, self.index);
            self.file.write_all(&self.pending).map_err(io(&path))?;
            self.bytes += self.pending.len() as u64;
            self.pending.clear();
            if self.pending.capacity() > 16 << 20 {
                self.pending.shrink_to(1 << 20);
            }
        }
        if sync {
            let path = segment_path(&self.dir, self.index);
            self.file.sync_data().map_err(io(&path))?;
        }
        Ok(())
    }

    fn roll(&mut self) -> Result<(), WalError> {
        let old = segment_path(&self.dir, self.index);
        self.file.sync_data().map_err(io(&old))?;
        self.index += 1;
        let path = segment_path(&self.dir, self.index);
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        self.bytes = 0;
        sync_dir(&self.dir)
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

fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{index:010}.wal"))
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

/// Reads whole records; returns the length of the good prefix.
fn read_segment(
    path: &Path,
    file: File,
    replayed: &mut Replayed,
    each: &mut impl FnMut(Record),
) -> Result<u64, WalError> {
    let mut reader = BufReader::with_capacity(1 << 20, file);
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
        payload.resize(len as usize, 0);
        if !read_full(&mut reader, &mut payload).map_err(io(path))? || crc32fast::hash(&payload) != crc {
            return Ok(good);
        }
        let record = Record::decode(&payload).map_err(|e| WalError::Corrupt {
            path: path.to_path_buf(),
            message: format!("at byte {good}: {e}"),
        })?;
        good += 8 + u64::from(len);
        replayed.records += 1;
        replayed.bytes += 8 + u64::from(len);
        each(record);
    }
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
        })
    }

    fn reopen(dir: &Path) -> (Wal, Vec<Record>, Replayed) {
        let mut got = Vec::new();
        let (wal, r) = Wal::open(dir, |rec| got.push(rec)).unwrap();
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
}
