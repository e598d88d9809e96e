//! The lines `sluice send` streams: an NDJSON file as it is, or a Parquet file as one JSON
//! object a row, in one buffer; and their event times, for send → output latency.

use std::path::Path;

use super::SendError;

/// The lines of a file, `\n`-terminated, in one buffer.
#[derive(Default)]
pub struct Lines {
    data: Vec<u8>,
    /// Start of each line; one more entry marks the end.
    starts: Vec<usize>,
}

impl Lines {
    pub fn len(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Line `i` with its `\n`.
    pub fn get(&self, i: usize) -> &[u8] {
        &self.data[self.starts[i]..self.starts[i + 1]]
    }
    pub fn bytes(&self) -> usize {
        self.data.len()
    }
    fn push(&mut self, line: &[u8]) {
        if self.starts.is_empty() {
            self.starts.push(0);
        }
        self.data.extend_from_slice(line);
        self.data.push(b'\n');
        self.starts.push(self.data.len());
    }

    /// Each line's event time (ms) in `time_field`, read as the NDJSON source reads it (RFC 3339
    /// text, or a number of `unit_ms` milliseconds); `None` where it has none.
    pub fn event_times(&self, time_field: &str, unit_ms: f64) -> Vec<Option<i64>> {
        (0..self.len())
            .map(|i| crate::source::ndjson::scan_time(self.get(i), time_field, unit_ms))
            .collect()
    }

    /// Lines of NDJSON text (blank lines skipped).
    pub fn from_ndjson(text: &[u8]) -> Lines {
        let mut lines = Lines::default();
        for line in text.split(|b| *b == b'\n') {
            if !line.iter().all(u8::is_ascii_whitespace) {
                lines.push(line);
            }
        }
        lines
    }

    /// Reads an NDJSON file, or a Parquet file (`.parquet`) converted to one JSON object a row.
    pub fn read(path: &Path) -> Result<Lines, SendError> {
        let err = |message: String| SendError::Input {
            path: path.display().to_string(),
            message,
        };
        if path.extension().and_then(|e| e.to_str()) != Some("parquet") {
            return std::fs::read(path)
                .map(|t| Lines::from_ndjson(&t))
                .map_err(|e| err(e.to_string()));
        }
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .map_err(|e| err(e.to_string()))?;
        let mut lines = Lines::default();
        let mut buf = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| err(e.to_string()))?;
            let schema = batch.schema();
            let cols: Vec<crate::source::arrow_read::Col> = batch
                .columns()
                .iter()
                .map(crate::source::arrow_read::Col::new)
                .collect();
            for row in 0..batch.num_rows() {
                let mut object = serde_json::Map::new();
                for (field, col) in schema.fields().iter().zip(&cols) {
                    let value = col.get(row);
                    if !value.is_null() {
                        object.insert(field.name().clone(), value.to_json());
                    }
                }
                buf.clear();
                serde_json::to_writer(&mut buf, &object).map_err(|e| err(e.to_string()))?;
                lines.push(&buf);
            }
        }
        Ok(lines)
    }
}
