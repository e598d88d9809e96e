//! Plain-text tables of schemas (`--format table`).
//!
//! [`Schema::to_table`] lists each path with its type (`int|string?`: kinds, `?` when
//! nullable), whether it is required and its default. [`Inferred::to_table`] lists the derived
//! schema with the statistics behind it: presence (events with the path / all events) and the
//! observed kinds with their share of the events where the path is present, so a rare kind that
//! widened the type stays visible (`int 99.9%, string 0.1%`).

use super::infer::Inferred;
use super::schema::Schema;

/// Renders rows as left-aligned columns separated by two spaces, with a header rule.
fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i + 1 == widths.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&mut header.iter().copied());
    out += &line(
        &mut widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str),
    );
    for row in rows {
        out += &line(&mut row.iter().map(String::as_str));
    }
    out
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

/// `99.9%`; shares that are not 0 or 100% but would print so show as `<0.01%` or `>99.99%`.
pub fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".into();
    }
    let p = part as f64 * 100.0 / whole as f64;
    if part > 0 && p < 0.05 {
        if p < 0.01 {
            "<0.01%".into()
        } else {
            format!("{p:.2}%")
        }
    } else if part < whole && p >= 99.95 {
        if p > 99.99 {
            ">99.99%".into()
        } else {
            format!("{:.2}%", (p * 100.0).floor() / 100.0)
        }
    } else {
        format!("{p:.1}%")
    }
}

impl Schema {
    /// A table of paths, types, optionality and defaults.
    pub fn to_table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .fields
            .iter()
            .map(|(p, f)| {
                vec![
                    p.clone(),
                    f.type_name(),
                    yes_no(f.required),
                    f.default.as_ref().map_or(String::new(), |d| d.to_string()),
                ]
            })
            .collect();
        render(&["path", "type", "required", "default"], &rows)
    }
}

impl Inferred {
    /// A table of the derived schema with presence and kind shares.
    pub fn to_table(&self) -> String {
        let schema = self.schema();
        let rows: Vec<Vec<String>> = self
            .fields
            .iter()
            .filter_map(|(p, s)| {
                let f = schema.fields.get(p)?;
                let mut kinds: Vec<String> = s
                    .kinds
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(k, n)| format!("{k} {}", percent(*n, s.present)))
                    .collect();
                if s.nulls > 0 {
                    kinds.push(format!("null {}", percent(s.nulls, s.present)));
                }
                Some(vec![
                    p.clone(),
                    f.type_name(),
                    yes_no(f.required),
                    percent(s.present, self.events),
                    kinds.join(", "),
                ])
            })
            .collect();
        format!(
            "{} events\n{}",
            self.events,
            render(&["path", "type", "required", "present", "kinds"], &rows)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::infer::observe;
    use crate::schema::testing::json_payload;

    #[test]
    fn tables_show_types_and_shares() {
        let mut i = Inferred::default();
        for n in 0..1000 {
            let line = if n == 0 {
                r#"{"a":"x","b":null}"#.to_string()
            } else {
                format!(r#"{{"a":{n}}}"#)
            };
            i.merge(&observe(&json_payload(&line)).unwrap());
        }
        let t = i.to_table();
        assert_eq!(
            t,
            "1000 events\n\
             path  type    required  present  kinds\n\
             ----  ------  --------  -------  ----------------------\n\
             a     string  yes       100.0%   int 99.9%, string 0.1%\n\
             b     null    no        0.1%     null 100.0%\n"
        );
        let t = i.schema().to_table();
        assert!(t.starts_with("path  type    required  default\n"), "{t}");
        assert!(t.contains("b     null    no"), "{t}");
        assert_eq!(percent(1, 100_000), "<0.01%");
        assert_eq!(percent(3, 10_000), "0.03%");
        assert_eq!(percent(99_999, 100_000), ">99.99%");
        assert_eq!(percent(9_997, 10_000), "99.97%");
        assert_eq!(percent(1, 0), "-");
    }
}
