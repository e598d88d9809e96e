//! Hints for spec errors: the nearest valid name ("did you mean"), help for an expression that
//! does not parse, tables TOML creates implicitly, and positions inside string values.

use std::ops::Range;

/// A table that TOML creates implicitly (through a sub-table header or dotted keys) has no
/// span, and the spec types that keep one cannot read it. `span` points at its first key: the
/// message names the table and says how to write it out.
pub(crate) fn implicit_table(text: &str, span: &Range<usize>, message: &str) -> Option<(String, String)> {
    if !message.contains("expected a borrowed string") {
        return None;
    }
    let line_start = text[..span.start.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    let before = text.get(line_start..span.start)?.trim_start();
    let header = before.starts_with('[');
    let table = before.trim_start_matches('[').trim().trim_end_matches('.').trim();
    let key = text.get(span.clone()).unwrap_or("").trim();
    if table.is_empty() {
        return None;
    }
    let message = format!("`{table}` is only implied by `{table}.{key}`; this table must be written out");
    let help = if header {
        format!("add a `[{table}]` header line before this one (it may stay empty)")
    } else {
        format!("write it as an inline table: `{table} = {{ {key} = ... }}`")
    };
    Some((message, help))
}

/// Help for an expression that does not parse: the expression with a caret under `column`, and
/// what to do about the kind of error.
pub(crate) fn expr_help(text: &str, column: usize, message: &str) -> String {
    let shown: String = text.chars().map(|c| if c.is_whitespace() { ' ' } else { c }).collect();
    let caret = format!("{shown}\n        {}^", " ".repeat(column.saturating_sub(1)));
    let advice = if message.starts_with("expected an operator or the end") {
        "two operands need an operator between them (`and`, `or`, `==`, `+`, ...); \
         backtick field names with spaces or `-`: `user-agent` is `user - agent`"
    } else if message.starts_with("expected an expression after") || message.starts_with("expected an expression") {
        "an operator is missing its right-hand operand"
    } else if message.starts_with("unmatched `)`") {
        "remove this `)` or add the `(` it closes"
    } else if message.contains("to close the `(`") {
        "add the missing `)`"
    } else if message.contains("comparisons do not chain") {
        "combine comparisons with `and`: `a < b and b < c`"
    } else if message.contains("unterminated") {
        "close the string with the quote that opens it"
    } else if message == "empty expression" {
        "write a condition or value, e.g. `event_type == 'attempt'`"
    } else {
        "see the expression language in the README (Expressions)"
    };
    format!("{caret}\n  {advice}")
}

/// The name of `names` nearest to `word` (ASCII case ignored), if it is close enough to be a
/// likely typo: at most one edit for short names, two for longer ones.
pub(crate) fn closest(word: &str, names: impl IntoIterator<Item = String>) -> Option<String> {
    let limit = if word.chars().count() <= 4 { 1 } else { 2 };
    let lower = word.to_ascii_lowercase();
    names
        .into_iter()
        .map(|n| (edit_distance(&lower, &n.to_ascii_lowercase()), n))
        .filter(|(d, _)| *d <= limit)
        .min_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)))
        .map(|(_, n)| n)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and transpositions
/// of adjacent chars each cost one (`regoin` is one edit from `region`).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The span of byte `at` of string `value` in the spec, when the value is written verbatim
/// (no escapes) inside `span`; otherwise `span` itself.
pub(crate) fn value_span(text: &str, span: Range<usize>, value: &str, at: usize) -> Range<usize> {
    match text.get(span.clone()).and_then(|raw| raw.find(value)) {
        Some(start) if !value.is_empty() && at <= value.len() => {
            let pos = span.start + start + at;
            pos..pos
        }
        _ => span,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_names() {
        assert_eq!(edit_distance("regoin", "region"), 1);
        assert_eq!(edit_distance("respnse_time_ms", "response_time_ms"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        let names = || ["region", "regions", "user_id"].map(String::from);
        assert_eq!(closest("regoin", names()), Some("region".into()));
        assert_eq!(closest("Region", names()), Some("region".into()));
        assert_eq!(closest("usr", names()), None);
        assert_eq!(closest("ab", ["ac", "xy"].map(String::from)), Some("ac".into()));
    }

    #[test]
    fn positions_inside_values() {
        let text = "a = \"x + y\"\nb = \"q\\tz\"";
        let a = text.find('"').unwrap();
        assert_eq!(value_span(text, a..a + 7, "x + y", 4), 9..9);
        // An escaped value is not found verbatim: the whole value is the place.
        let b = text.rfind("= ").unwrap() + 2;
        assert_eq!(value_span(text, b..text.len(), "q\tz", 2), b..text.len());
    }

    #[test]
    fn implicit_tables_are_named() {
        let text = "[[enrich.events.join]]\ncontext = \"p\"\n";
        let at = text.find("join").unwrap();
        let (message, help) = implicit_table(
            text,
            &(at..at + 4),
            "invalid type: string \"join\", expected a borrowed string",
        )
        .unwrap();
        assert!(message.contains("`enrich.events`"), "{message}");
        assert!(help.contains("[enrich.events]"), "{help}");
        assert_eq!(implicit_table(text, &(at..at + 4), "other"), None);
    }
}
