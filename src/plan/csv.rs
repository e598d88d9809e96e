//! The options of a `csv` source (`header`, `delimiter`, `time_format`, `columns`), checked
//! once when the spec is planned; `crate::source::csv` reads files with them.

use std::ops::Range;

use indexmap::IndexMap;
use serde::Serialize;

use super::spec::{SourceSpec, S};

/// How a `csv` source's files are read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CsvOptions {
    /// The first record of each file names the columns.
    pub header: bool,
    /// The field separator, one ASCII byte.
    pub delimiter: u8,
    /// A chrono `strftime` pattern for the time column; `None` reads it as the other formats
    /// do (integers and floats in `time_unit`, RFC 3339 text).
    pub time_format: Option<String>,
    /// Declared column types, in spec order. Without a header, these name every column in
    /// file order; with one, they override the inferred type of the columns they name.
    pub columns: Vec<(String, CsvType)>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            header: true,
            delimiter: b',',
            time_format: None,
            columns: Vec::new(),
        }
    }
}

/// A declared column type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CsvType {
    /// Inferred from the file's first records.
    Auto,
    Int,
    Float,
    Bool,
    String,
}

impl CsvType {
    pub const NAMES: [&'static str; 5] = ["auto", "int", "float", "bool", "string"];

    fn parse(name: &str) -> Option<CsvType> {
        Some(match name {
            "auto" => CsvType::Auto,
            "int" => CsvType::Int,
            "float" => CsvType::Float,
            "bool" => CsvType::Bool,
            "string" => CsvType::String,
            _ => return None,
        })
    }
}

/// A problem with a CSV key: its span, key (below `sources.NAME.`), message and help.
pub(super) type CsvKeyError = (Range<usize>, &'static str, String, Option<String>);

/// The CSV keys of `spec`: `Ok(None)` when it sets none. `csv` says whether the source is a
/// `csv` source; the keys are errors on any other.
pub(super) fn options(spec: &SourceSpec, csv: bool) -> Result<Option<CsvOptions>, CsvKeyError> {
    let keys: [(Option<Range<usize>>, &'static str); 4] = [
        (spec.header.as_ref().map(|h| h.span()), "header"),
        (spec.delimiter.as_ref().map(|d| d.span()), "delimiter"),
        (spec.time_format.as_ref().map(|t| t.span()), "time_format"),
        (spec.columns.as_ref().map(|c| c.span()), "columns"),
    ];
    if !csv {
        if let Some((Some(span), key)) = keys.into_iter().find(|(s, _)| s.is_some()) {
            let help = Some("set `format = \"csv\"` or give the path a `.csv` extension".into());
            return Err((span, key, format!("`{key}` applies to csv sources only"), help));
        }
        return Ok(None);
    }
    let mut options = CsvOptions::default();
    if let Some(h) = &spec.header {
        options.header = *h.get_ref();
    }
    if let Some(d) = &spec.delimiter {
        options.delimiter = delimiter(d)?;
    }
    if let Some(t) = &spec.time_format {
        options.time_format = Some(time_format(t)?);
    }
    if let Some(c) = &spec.columns {
        options.columns = columns(c)?;
    }
    if !options.header && options.columns.is_empty() {
        let span = spec.header.as_ref().map_or(0..0, |h| h.span());
        let help = Some("list every column in file order: `columns = { time = \"auto\", cpu = \"float\" }`".into());
        return Err((
            span,
            "header",
            "a csv source without a header needs `columns`".into(),
            help,
        ));
    }
    Ok(Some(options))
}

fn delimiter(d: &S<String>) -> Result<u8, CsvKeyError> {
    let text = d.get_ref();
    let byte = match text.as_str() {
        "tab" | "\\t" => Some(b'\t'),
        _ => match text.as_bytes() {
            [b] if b.is_ascii() && !matches!(b, b'"' | b'\n' | b'\r') => Some(*b),
            _ => None,
        },
    };
    byte.ok_or_else(|| {
        (
            d.span(),
            "delimiter",
            format!("`{}` is not a delimiter", text.escape_debug()),
            Some("one ASCII character other than a quote or a line break: `,`, `;`, `|`, `\\t` (or `tab`)".into()),
        )
    })
}

/// Checks a `strftime` pattern: every specifier known, and enough of a date to be a time.
fn time_format(t: &S<String>) -> Result<String, CsvKeyError> {
    use chrono::format::{Item, StrftimeItems};
    let text = t.get_ref();
    let error = |message: String| {
        (
            t.span(),
            "time_format",
            message,
            Some("a chrono strftime pattern such as `%Y-%m-%d %H:%M:%S`, `%d/%m/%Y %H:%M`, `%s` (epoch seconds); `%z` reads an offset, otherwise UTC".into()),
        )
    };
    if StrftimeItems::new(text).any(|i| matches!(i, Item::Error)) {
        return Err(error(format!("`{text}` has an unknown `%` specifier")));
    }
    // A pattern that parses its own rendering of a known time reads times.
    let probe = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("a valid time");
    let rendered = probe.format(text).to_string();
    if parse_time(&rendered, text).is_err() {
        return Err(error(format!(
            "`{text}` does not name a date (it needs a year, month and day, or `%s`)"
        )));
    }
    Ok(text.clone())
}

fn columns(c: &S<IndexMap<String, S<String>>>) -> Result<Vec<(String, CsvType)>, CsvKeyError> {
    let mut out = Vec::new();
    for (name, ty) in c.get_ref() {
        let parsed = CsvType::parse(ty.get_ref()).ok_or_else(|| {
            (
                ty.span(),
                "columns",
                format!("column `{name}`: unknown type `{}`", ty.get_ref()),
                Some(format!(
                    "one of {}",
                    CsvType::NAMES.map(|n| format!("`{n}`")).join(", ")
                )),
            )
        })?;
        out.push((name.clone(), parsed));
    }
    if out.is_empty() {
        return Err((c.span(), "columns", "no columns".into(), None));
    }
    Ok(out)
}

/// Milliseconds since the epoch of `text` read with the `strftime` pattern `format`: with an
/// offset when the pattern has one (`%z`), else as UTC; a pattern without a time of day reads
/// midnight.
pub fn parse_time(text: &str, format: &str) -> Result<i64, String> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_str(text, format) {
        return Ok(t.timestamp_millis());
    }
    match NaiveDateTime::parse_from_str(text, format) {
        Ok(t) => Ok(t.and_utc().timestamp_millis()),
        Err(e) => match NaiveDate::parse_from_str(text, format) {
            Ok(d) => Ok(d.and_time(chrono::NaiveTime::MIN).and_utc().timestamp_millis()),
            Err(_) => Err(format!("`{text}` does not match time_format `{format}` ({e})")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_formats_read_times() {
        let cases = [
            ("2024-03-04 05:06:07", "%Y-%m-%d %H:%M:%S", Some(1_709_528_767_000)),
            (
                "2024-03-04 05:06:07.250",
                "%Y-%m-%d %H:%M:%S%.f",
                Some(1_709_528_767_250),
            ),
            ("04/03/2024 06:06 +0100", "%d/%m/%Y %H:%M %z", Some(1_709_528_760_000)),
            ("2024-03-04", "%Y-%m-%d", Some(1_709_510_400_000)),
            ("1709528767", "%s", Some(1_709_528_767_000)),
            (" 2024-03-04 05:06:07 ", "%Y-%m-%d %H:%M:%S", Some(1_709_528_767_000)),
            ("2024-03-04T05:06:07", "%Y-%m-%d %H:%M:%S", None),
            ("2024-02-30 00:00:00", "%Y-%m-%d %H:%M:%S", None),
            ("", "%Y-%m-%d", None),
        ];
        for (text, format, want) in cases {
            assert_eq!(parse_time(text, format).ok(), want, "{text:?} with {format:?}");
        }
        let err = parse_time("yesterday", "%Y-%m-%d").unwrap_err();
        assert!(err.contains("yesterday") && err.contains("%Y-%m-%d"), "{err}");
    }

    fn plan(source: &str) -> Result<crate::plan::Plan, crate::error::SpecError> {
        let text = format!(
            "[pipeline]\nname = \"p\"\n[sources.m]\n{source}\n[[aggregates]]\nname = \"a\"\nsource = \"m\"\nwindow = {{ tumbling = \"1h\" }}\nmeasures.n = \"count()\"\n"
        );
        crate::plan::plan_str(&text, std::path::Path::new("x.toml"), std::path::Path::new("."), &[])
    }

    #[test]
    fn spec_keys_are_planned() {
        let p = plan("path = \"m.csv\"\ntime_field = \"t\"\ntype_field = \"k\"").unwrap();
        assert_eq!(p.sources[0].format, crate::plan::Format::Csv);
        assert_eq!(p.sources[0].csv, CsvOptions::default());
        let p = plan(
            "path = \"m.txt\"\nformat = \"csv\"\ntime_field = \"t\"\ntype_field = \"k\"\nheader = false\ndelimiter = \"\\t\"\ntime_format = \"%d/%m/%Y %H:%M\"\ncolumns = { t = \"auto\", k = \"string\", cpu = \"float\" }",
        )
        .unwrap();
        let want = CsvOptions {
            header: false,
            delimiter: b'\t',
            time_format: Some("%d/%m/%Y %H:%M".into()),
            columns: vec![
                ("t".into(), CsvType::Auto),
                ("k".into(), CsvType::String),
                ("cpu".into(), CsvType::Float),
            ],
        };
        assert_eq!(p.sources[0].csv, want);
    }

    #[test]
    fn bad_keys_name_their_line_and_key() {
        let base = "path = \"m.csv\"\ntime_field = \"t\"\ntype_field = \"k\"\n";
        let cases = [
            ("delimiter = \";;\"", "sources.m.delimiter", "is not a delimiter"),
            ("delimiter = '\"'", "sources.m.delimiter", "is not a delimiter"),
            (
                "time_format = \"%Y-%!\"",
                "sources.m.time_format",
                "unknown `%` specifier",
            ),
            (
                "time_format = \"%H:%M\"",
                "sources.m.time_format",
                "does not name a date",
            ),
            (
                "columns = { cpu = \"double\" }",
                "sources.m.columns",
                "unknown type `double`",
            ),
            ("header = false", "sources.m.header", "needs `columns`"),
        ];
        for (line, key, message) in cases {
            let e = plan(&format!("{base}{line}")).unwrap_err();
            assert_eq!((e.line, e.key.as_str()), (7, key), "{line}: {e}");
            assert!(e.message.contains(message), "{line}: {e}");
        }
        let e = plan("path = \"m.parquet\"\ntime_field = \"t\"\ntype_field = \"k\"\nheader = true").unwrap_err();
        assert_eq!(e.key, "sources.m.header");
        assert!(e.message.contains("csv sources only"), "{e}");
    }
}
