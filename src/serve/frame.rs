//! Line framing of a byte stream: complete lines up to `max_line_bytes`, longer lines discarded
//! up to their newline without being buffered, and the fragment left when the stream ends.
//!
//! Memory per stream is at most `max_line_bytes` (an incomplete line is kept until its newline)
//! plus [`PREFIX_BYTES`] of a discarded line, whatever the input.

/// Bytes of a rejected line kept for its dead letter.
pub const PREFIX_BYTES: usize = 256;

/// What the framer finds in a stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// A complete line without its `\n` (a trailing `\r` is kept: JSON treats it as whitespace).
    Line(&'a [u8]),
    /// A line longer than the limit: its first bytes and its full length (without the `\n`).
    TooLarge { prefix: Vec<u8>, bytes: u64 },
}

/// What is left when the stream ends.
#[derive(Debug, PartialEq, Eq)]
pub enum Leftover {
    /// Bytes after the last newline that are not only whitespace: the sender stopped mid-line.
    Truncated { prefix: Vec<u8>, bytes: u64 },
    /// The stream ended inside a line already over the limit.
    TooLarge { prefix: Vec<u8>, bytes: u64 },
}

/// Splits a byte stream into lines, see the module documentation.
#[derive(Debug)]
pub struct Framer {
    max: usize,
    /// The incomplete line so far (at most `max` bytes).
    partial: Vec<u8>,
    /// Set while discarding a line over the limit: its prefix and length so far.
    discarding: Option<(Vec<u8>, u64)>,
}

/// Capacity kept for `partial` after a long line, so one big line does not pin memory.
const KEEP_CAPACITY: usize = 64 << 10;

impl Framer {
    pub fn new(max_line_bytes: usize) -> Framer {
        Framer {
            max: max_line_bytes,
            partial: Vec::new(),
            discarding: None,
        }
    }

    /// Bytes held for an incomplete line.
    pub fn buffered(&self) -> usize {
        self.partial.len()
    }

    /// Feeds the next bytes of the stream; `out` receives every piece they complete, in order.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut impl FnMut(Piece<'_>)) {
        while !chunk.is_empty() {
            let Some(nl) = memchr::memchr(b'\n', chunk) else {
                self.extend(chunk);
                return;
            };
            let (head, rest) = (&chunk[..nl], &chunk[nl + 1..]);
            chunk = rest;
            if let Some((mut prefix, bytes)) = self.discarding.take() {
                fill(&mut prefix, head);
                out(Piece::TooLarge {
                    prefix,
                    bytes: bytes + head.len() as u64,
                });
            } else if self.partial.is_empty() {
                if head.len() > self.max {
                    out(Piece::TooLarge {
                        prefix: head[..PREFIX_BYTES.min(head.len())].to_vec(),
                        bytes: head.len() as u64,
                    });
                } else {
                    out(Piece::Line(head));
                }
            } else if self.partial.len() + head.len() > self.max {
                let bytes = (self.partial.len() + head.len()) as u64;
                let prefix = self.prefix_with(head);
                self.clear_partial();
                out(Piece::TooLarge { prefix, bytes });
            } else {
                self.partial.extend_from_slice(head);
                out(Piece::Line(&self.partial));
                self.clear_partial();
            }
        }
    }

    /// Ends the stream: what was left after the last newline, if anything.
    pub fn finish(&mut self) -> Option<Leftover> {
        if let Some((prefix, bytes)) = self.discarding.take() {
            return Some(Leftover::TooLarge { prefix, bytes });
        }
        if self.partial.iter().all(u8::is_ascii_whitespace) {
            self.clear_partial();
            return None;
        }
        let bytes = self.partial.len() as u64;
        let prefix = self.prefix_with(&[]);
        self.clear_partial();
        Some(Leftover::Truncated { prefix, bytes })
    }

    /// Buffers bytes that end no line; switches to discarding past the limit.
    fn extend(&mut self, bytes: &[u8]) {
        if let Some((prefix, n)) = &mut self.discarding {
            fill(prefix, bytes);
            *n += bytes.len() as u64;
        } else if self.partial.len() + bytes.len() > self.max {
            let total = (self.partial.len() + bytes.len()) as u64;
            let prefix = self.prefix_with(bytes);
            self.clear_partial();
            self.discarding = Some((prefix, total));
        } else {
            self.partial.extend_from_slice(bytes);
        }
    }

    /// The first [`PREFIX_BYTES`] of `partial` followed by `more`.
    fn prefix_with(&self, more: &[u8]) -> Vec<u8> {
        let mut prefix: Vec<u8> = self.partial.iter().take(PREFIX_BYTES).copied().collect();
        let room = PREFIX_BYTES - prefix.len();
        prefix.extend_from_slice(&more[..room.min(more.len())]);
        prefix
    }

    fn clear_partial(&mut self) {
        self.partial.clear();
        if self.partial.capacity() > KEEP_CAPACITY {
            self.partial.shrink_to(KEEP_CAPACITY);
        }
    }
}

/// Tops `prefix` up to [`PREFIX_BYTES`] from `more`.
fn fill(prefix: &mut Vec<u8>, more: &[u8]) {
    let room = PREFIX_BYTES.saturating_sub(prefix.len());
    prefix.extend_from_slice(&more[..room.min(more.len())]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(max: usize, chunks: &[&[u8]]) -> (Vec<String>, Option<Leftover>) {
        let mut f = Framer::new(max);
        let mut got = Vec::new();
        for c in chunks {
            f.push(c, &mut |p| {
                got.push(match p {
                    Piece::Line(l) => String::from_utf8_lossy(l).into_owned(),
                    Piece::TooLarge { prefix, bytes } => {
                        format!("TOO_LARGE({bytes}, {})", String::from_utf8_lossy(&prefix))
                    }
                })
            });
            assert!(f.buffered() <= max);
        }
        (got, f.finish())
    }

    #[test]
    fn lines_across_chunks() {
        let (lines, left) = frame(100, &[b"ab", b"c\nde", b"f\n\ng", b"h\n"]);
        assert_eq!(lines, ["abc", "def", "", "gh"]);
        assert_eq!(left, None);
    }

    #[test]
    fn long_lines_are_discarded_to_the_newline() {
        let (lines, left) = frame(4, &[b"ok\n12345", b"678", b"9\nfine\n", b"abcdefg\nx"]);
        assert_eq!(
            lines,
            ["ok", "TOO_LARGE(9, 123456789)", "fine", "TOO_LARGE(7, abcdefg)"]
        );
        assert_eq!(
            left,
            Some(Leftover::Truncated {
                prefix: b"x".to_vec(),
                bytes: 1
            })
        );
    }

    #[test]
    fn exactly_the_limit_is_a_line() {
        let (lines, _) = frame(4, &[b"12", b"34\n1234\n"]);
        assert_eq!(lines, ["1234", "1234"]);
    }

    #[test]
    fn end_inside_a_long_line() {
        let (lines, left) = frame(2, &[b"abc", b"def"]);
        assert!(lines.is_empty());
        assert_eq!(
            left,
            Some(Leftover::TooLarge {
                prefix: b"abcdef".to_vec(),
                bytes: 6
            })
        );
        let (_, left) = frame(10, &[b"done\n  \r"]);
        assert_eq!(left, None);
    }

    #[test]
    fn a_huge_line_keeps_only_its_prefix() {
        let mut f = Framer::new(1 << 10);
        let chunk = vec![b'x'; 1 << 16];
        for _ in 0..64 {
            f.push(&chunk, &mut |_| panic!("no line yet"));
            assert_eq!(f.buffered(), 0);
        }
        let mut seen = Vec::new();
        f.push(b"\n{}\n", &mut |p| seen.push(format!("{p:?}").len()));
        assert_eq!(seen.len(), 2);
    }
}
