//! Normalized schema paths: `a`, `a.b`, `tags[]` (the elements of list `tags`), `a.b[].c`.
//!
//! A path is a field name followed by `.name` and `[]` steps; list indices are erased, so one
//! path describes every element of a list. Names made of letters, digits, `_`, `-` and `$` are
//! written as they are; any other name is quoted with backticks, and a backtick inside a quoted
//! name is doubled (`` `odd name` ``, `` `a``b` ``). The payload itself is the root, the empty
//! path. [`parse`] inverts [`child`] and [`items`].

use std::borrow::Cow;

/// One step of a normalized path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Seg {
    /// An object field.
    Field(String),
    /// The elements of a list.
    Items,
}

/// A path string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schema path `{path}` at byte {at}: {message}")]
pub struct PathError {
    pub path: String,
    pub at: usize,
    pub message: &'static str,
}

fn is_plain(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'$')
}

/// A field name as it appears in a path, quoted when needed.
pub fn quote(name: &str) -> Cow<'_, str> {
    if is_plain(name) {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(format!("`{}`", name.replace('`', "``")))
    }
}

/// The path of field `name` of the object at `parent` (`""` is the payload).
pub fn child(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        quote(name).into_owned()
    } else {
        format!("{parent}.{}", quote(name))
    }
}

/// The path of the elements of the list at `parent`.
pub fn items(parent: &str) -> String {
    format!("{parent}[]")
}

/// Whether `path` names list elements (ends with `[]`).
pub fn is_items(path: &str) -> bool {
    path.ends_with("[]")
}

/// Splits a path into its steps.
pub fn parse(path: &str) -> Result<Vec<Seg>, PathError> {
    let err = |at: usize, message: &'static str| PathError {
        path: path.to_string(),
        at,
        message,
    };
    let b = path.as_bytes();
    let mut segs = Vec::new();
    let mut i = 0;
    loop {
        // A field name.
        if b.get(i) == Some(&b'`') {
            let mut name = String::new();
            let mut j = i + 1;
            loop {
                match path[j..].find('`') {
                    None => return Err(err(i, "unterminated backtick")),
                    Some(k) => {
                        name.push_str(&path[j..j + k]);
                        j += k + 1;
                        if b.get(j) == Some(&b'`') {
                            name.push('`');
                            j += 1;
                        } else {
                            break;
                        }
                    }
                }
            }
            segs.push(Seg::Field(name));
            i = j;
        } else {
            let start = i;
            while i < b.len() && !matches!(b[i], b'.' | b'[' | b'`') {
                i += 1;
            }
            let name = &path[start..i];
            if !is_plain(name) {
                return Err(err(start, "expected a field name (quote other names with backticks)"));
            }
            segs.push(Seg::Field(name.to_string()));
        }
        // Steps after it.
        loop {
            match b.get(i) {
                None => return Ok(segs),
                Some(b'[') if b.get(i + 1) == Some(&b']') => {
                    segs.push(Seg::Items);
                    i += 2;
                }
                Some(b'.') => {
                    i += 1;
                    break;
                }
                _ => return Err(err(i, "expected `.` or `[]`")),
            }
        }
    }
}

/// Joins steps back into a path (the inverse of [`parse`]).
pub fn join(segs: &[Seg]) -> String {
    let mut out = String::new();
    for seg in segs {
        match seg {
            Seg::Field(name) => out = child(&out, name),
            Seg::Items => out.push_str("[]"),
        }
    }
    out
}

/// The parent path of a well-formed path and the last step; `None` for the root.
pub fn split_last(path: &str) -> Result<Option<(String, Seg)>, PathError> {
    let mut segs = parse(path)?;
    Ok(segs.pop().map(|last| (join(&segs), last)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn paths_parse() {
        assert_eq!(child("", "a"), "a");
        assert_eq!(child("a", "b"), "a.b");
        assert_eq!(items("tags"), "tags[]");
        assert_eq!(child(&items("a.b"), "c"), "a.b[].c");
        assert_eq!(child("", "odd name"), "`odd name`");
        assert_eq!(child("", "a`b"), "`a``b`");
        assert_eq!(child("", ""), "``");
        assert_eq!(
            parse("a.b[][].`x.y`").unwrap(),
            vec![
                Seg::Field("a".into()),
                Seg::Field("b".into()),
                Seg::Items,
                Seg::Items,
                Seg::Field("x.y".into())
            ]
        );
        for bad in ["", "a.", ".a", "a[0]", "a[", "a b", "`a", "a.[]", "[]"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(split_last("a.b[]").unwrap(), Some(("a.b".into(), Seg::Items)));
        assert_eq!(split_last("a").unwrap(), Some((String::new(), Seg::Field("a".into()))));
    }

    proptest! {
        #[test]
        fn join_inverts_parse(
            first in "[a-z`. \\[\\]]{0,4}",
            rest in proptest::collection::vec(proptest::option::of("[a-z`. \\[\\]]{0,4}"), 0..5),
        ) {
            let mut segs = vec![Seg::Field(first)];
            segs.extend(rest.into_iter().map(|s| s.map_or(Seg::Items, Seg::Field)));
            let text = join(&segs);
            prop_assert_eq!(parse(&text).unwrap(), segs);
        }
    }
}
