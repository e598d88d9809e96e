//! Record boundaries of CSV text, found with `csv-core`, the parser `arrow-csv` itself runs, so
//! a record found here is one record to `arrow-csv` too.
//!
//! A record normally ends at the first line break outside quotes. A quote that is never closed
//! would make later lines part of one record, so a record that spans several lines is kept
//! only when it is well formed: the right number of fields, an even number of quote
//! characters, and (with three columns or more) no later line holding as many delimiters as a
//! whole record has, which is what a swallowed record looks like. Otherwise its *first line*
//! is a bad record and the scan goes on at the next line. (So a quoted text with line breaks
//! must not hold a line with that many delimiters.) A record that does not end within [`MAX_RECORD_BYTES`] is handled the same way. Each
//! rule looks at the record alone, so scanning from any record start finds the same records
//! as scanning from the file's start: splits may begin at any record boundary.

use csv_core::{ReadRecordResult, Reader, ReaderBuilder};

/// A record that has not ended after this many bytes is malformed (its first line is a bad
/// record).
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// One record of the text: `start..end` includes its line terminator when it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub start: usize,
    pub end: usize,
    /// The 1-based line the record starts on.
    pub line: u64,
    /// Why the record cannot be decoded: a dead-letter reason and detail.
    pub problem: Option<(&'static str, String)>,
}

/// Finds records one after another; the fields of the last one found are kept.
pub struct Scanner {
    reader: Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
    fields: usize,
    quote: u8,
    delimiter: u8,
}

impl Scanner {
    pub fn new(delimiter: u8) -> Scanner {
        Scanner {
            reader: ReaderBuilder::new().delimiter(delimiter).build(),
            out: vec![0; 4096],
            ends: vec![0; 64],
            fields: 0,
            quote: b'"',
            delimiter,
        }
    }

    /// Field `i` of the last record found, unquoted (empty when it has no such field).
    pub fn field(&self, i: usize) -> &[u8] {
        if i >= self.fields {
            return &[];
        }
        let from = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.out[from..self.ends[i]]
    }

    /// The number of fields of the last record found.
    pub fn fields(&self) -> usize {
        self.fields
    }

    /// The next record of `bytes` at or after `*pos`, which is a record start or blank lines
    /// before one; `*line` is the line at `*pos`. Both move past the record. `expected` is the
    /// number of fields a record must have (`None` for a header). `eof` says whether `bytes`
    /// ends where the file ends: otherwise a record still open at the end is malformed.
    pub fn next(
        &mut self,
        bytes: &[u8],
        pos: &mut usize,
        line: &mut u64,
        expected: Option<usize>,
        eof: bool,
    ) -> Option<Record> {
        while *pos < bytes.len() && matches!(bytes[*pos], b'\n' | b'\r') {
            *line += u64::from(bytes[*pos] == b'\n');
            *pos += 1;
        }
        if *pos >= bytes.len() {
            return None;
        }
        let start = *pos;
        let limit = bytes.len().min(start + MAX_RECORD_BYTES);
        let complete = self.read(bytes, start, limit, eof && limit == bytes.len(), pos);
        let raw = &bytes[start..*pos];
        let content = trim_terminator(raw);
        let multiline = memchr::memchr(b'\n', content).is_some();
        let quotes = memchr::memchr_iter(self.quote, content).count();
        let wrong_count = expected.is_some_and(|n| n != self.fields);
        let swallowed = multiline
            && expected.is_some_and(|n| {
                n >= 3
                    && content
                        .split(|b| *b == b'\n')
                        .skip(1)
                        .any(|l| memchr::memchr_iter(self.delimiter, l).count() >= n - 1)
            });
        if !complete || (multiline && (wrong_count || quotes % 2 == 1 || swallowed)) {
            // The first line alone is the bad record.
            let end = memchr::memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |i| start + i + 1);
            *pos = end;
            let record = Record {
                start,
                end,
                line: *line,
                problem: Some((
                    "malformed_csv",
                    "an unclosed quote: the record does not end on this line with the right number of fields"
                        .to_string(),
                )),
            };
            *line += 1;
            self.fields = 0;
            return Some(record);
        }
        let first_line = *line;
        *line += memchr::memchr_iter(b'\n', raw).count() as u64;
        let problem = match (std::str::from_utf8(raw), expected) {
            (Err(e), _) => Some(("invalid_utf8", e.to_string())),
            (Ok(_), Some(n)) if n != self.fields => Some((
                "malformed_csv",
                format!("{} fields where the header has {n}", self.fields),
            )),
            _ => None,
        };
        Some(Record {
            start,
            end: *pos,
            line: first_line,
            problem,
        })
    }

    /// Runs csv-core over `bytes[start..limit]`; whether a record ended (`at_end`: the end of
    /// `limit` is the end of the input). `*pos` moves past what was read.
    fn read(&mut self, bytes: &[u8], start: usize, limit: usize, at_end: bool, pos: &mut usize) -> bool {
        self.reader.reset();
        let (mut i, mut o, mut e) = (start, 0, 0);
        let complete = loop {
            let (res, nin, nout, nend) =
                self.reader
                    .read_record(&bytes[i..limit], &mut self.out[o..], &mut self.ends[e..]);
            (i, o, e) = (i + nin, o + nout, e + nend);
            match res {
                ReadRecordResult::InputEmpty if i == limit && !at_end => break false,
                // Empty input, next time round, tells csv-core the text ended.
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => self.out.resize(self.out.len() * 2, 0),
                ReadRecordResult::OutputEndsFull => self.ends.resize(self.ends.len() * 2, 0),
                ReadRecordResult::Record | ReadRecordResult::End => break true,
            }
        };
        *pos = i;
        self.fields = e;
        complete
    }
}

/// `raw` without its line terminator (`\n`, `\r\n` or `\r`).
pub fn trim_terminator(raw: &[u8]) -> &[u8] {
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    raw.strip_suffix(b"\r").unwrap_or(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record of `text` as (text, line, reason).
    fn records(text: &str, expected: Option<usize>, eof: bool) -> Vec<(String, u64, Option<&'static str>)> {
        let mut s = Scanner::new(b',');
        let (mut pos, mut line) = (0, 1);
        let mut out = Vec::new();
        while let Some(r) = s.next(text.as_bytes(), &mut pos, &mut line, expected, eof) {
            let raw = String::from_utf8_lossy(trim_terminator(&text.as_bytes()[r.start..r.end]));
            out.push((raw.into_owned(), r.line, r.problem.map(|p| p.0)));
        }
        out
    }

    #[test]
    fn records_end_at_line_breaks_outside_quotes() {
        let text = "a,b\n1,\"x\ny\"\n\n\r\n2,\"say \"\"hi\"\"\"\r\n3,z";
        let got = records(text, Some(2), true);
        assert_eq!(
            got,
            [
                ("a,b".to_string(), 1, None),
                ("1,\"x\ny\"".to_string(), 2, None),
                ("2,\"say \"\"hi\"\"\"".to_string(), 6, None),
                ("3,z".to_string(), 7, None),
            ]
        );
        let mut s = Scanner::new(b',');
        let (mut pos, mut line) = (0, 1);
        s.next(b"1,\"x\ny\",\"q\"\"\"\n", &mut pos, &mut line, None, true);
        assert_eq!(
            (s.fields(), s.field(1), s.field(2), s.field(3)),
            (3, &b"x\ny"[..], &b"q\""[..], &b""[..])
        );
    }

    #[test]
    fn an_unclosed_quote_costs_one_line() {
        let text = "1,\"oops\n2,b\n3,c\n";
        assert_eq!(
            records(text, Some(2), true),
            [
                ("1,\"oops".to_string(), 1, Some("malformed_csv")),
                ("2,b".to_string(), 2, None),
                ("3,c".to_string(), 3, None),
            ]
        );
        // In the last column the count is right, but the quotes are odd.
        let text = "1,2\n3,\"x\n4,5\n";
        assert_eq!(
            records(text, Some(2), true)[1],
            ("3,\"x".to_string(), 2, Some("malformed_csv"))
        );
        // Closed by the quote of a multi-line field on the next row: that row looks swallowed.
        let text = "t,a,b,c\n1,x,y,\"oops\n2,x,y,\"two\nlines\"\n3,x,y,\"a,\nb\"\n";
        let got: Vec<_> = records(text, Some(4), true).into_iter().map(|r| (r.1, r.2)).collect();
        assert_eq!(got, [(1, None), (2, Some("malformed_csv")), (3, None), (5, None)]);
        // The end of a split that is not the end of the file does not close a record.
        assert_eq!(records("1,\"x\ny\"", Some(2), false)[0].2, Some("malformed_csv"));
        assert_eq!(records("1,\"x\ny\"", Some(2), true)[0].2, None);
    }

    #[test]
    fn wrong_counts_and_bad_bytes_are_named() {
        let mut s = Scanner::new(b';');
        let bytes = b"1;2;3\n4;5\n\xff;6\n";
        let (mut pos, mut line) = (0, 1);
        let mut reasons = Vec::new();
        while let Some(r) = s.next(bytes, &mut pos, &mut line, Some(2), true) {
            reasons.push((r.line, r.problem.map(|p| p.0)));
        }
        assert_eq!(
            reasons,
            [(1, Some("malformed_csv")), (2, None), (3, Some("invalid_utf8"))]
        );
    }

    /// Scanning from any record boundary finds the records a scan from the start finds.
    #[test]
    fn scans_from_record_boundaries_agree() {
        let text = "h,v\n1,\"a\nb\"\n2,\"oops\n3,c\n\n4,\"q\"\"\"\n5,x,y\n6,\"\n\n\"\n";
        let full = records(text, Some(2), true);
        let mut s = Scanner::new(b',');
        let (mut pos, mut line) = (0, 1);
        let mut bounds = vec![(0, 1)];
        while s.next(text.as_bytes(), &mut pos, &mut line, Some(2), true).is_some() {
            bounds.push((pos, line));
        }
        for (from, first_line) in bounds {
            let mut tail = Scanner::new(b',');
            let (mut pos, mut line) = (from, first_line);
            let mut got = Vec::new();
            while let Some(r) = tail.next(text.as_bytes(), &mut pos, &mut line, Some(2), true) {
                got.push(r.line);
            }
            let want: Vec<u64> = full.iter().map(|r| r.1).filter(|l| *l >= first_line).collect();
            assert_eq!(got, want, "from byte {from}");
        }
    }
}
