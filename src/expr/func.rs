//! Built-in functions: their names and arities, the compiled pattern of `matches`, how a call
//! is checked when parsing, and how it is evaluated.

use std::fmt;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::eval::{fail, member, opt_bool, truth, view, Res, Val, V};
use super::ops::{equal, overflow};
use super::time::TimePart;
use super::Expr;
use crate::event::Event;
use crate::value::Value;

/// Built-in functions other than `matches` (which holds a compiled pattern), `bucket`
/// ([`super::Buckets`]) and `hour_of_day`/`day_of_week` ([`super::TimePart`], with a resolved
/// time zone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Func {
    Exists,
    Coalesce,
    Contains,
    Lower,
    Upper,
    Len,
    Abs,
    Floor,
    Round,
    If,
    SplitPart,
    Substr,
}

impl Func {
    /// Every function with its name (`matches`, `bucket` and the time parts have their own
    /// [`Expr`] variants).
    pub const ALL: [(&'static str, Func); 12] = [
        ("exists", Func::Exists),
        ("coalesce", Func::Coalesce),
        ("contains", Func::Contains),
        ("lower", Func::Lower),
        ("upper", Func::Upper),
        ("len", Func::Len),
        ("abs", Func::Abs),
        ("floor", Func::Floor),
        ("round", Func::Round),
        ("if", Func::If),
        ("split_part", Func::SplitPart),
        ("substr", Func::Substr),
    ];

    pub fn name(self) -> &'static str {
        Func::ALL.iter().find(|(_, f)| *f == self).map_or("?", |(n, _)| n)
    }

    /// Accepted argument counts: `(min, max)`, `max == None` for variadic.
    pub fn arity(self) -> (usize, Option<usize>) {
        match self {
            Func::Coalesce => (1, None),
            Func::Contains => (2, Some(2)),
            Func::If | Func::SplitPart => (3, Some(3)),
            Func::Substr => (2, Some(3)),
            _ => (1, Some(1)),
        }
    }
}

/// A regular expression compiled at parse time. Compares, prints and serializes as its source.
#[derive(Clone)]
pub struct Pattern {
    pub regex: Regex,
}

impl Pattern {
    pub fn new(source: &str) -> Result<Pattern, regex::Error> {
        Ok(Pattern {
            regex: Regex::new(source)?,
        })
    }
    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }
}
impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}
impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/", self.as_str())
    }
}
impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Pattern::new(&s).map_err(serde::de::Error::custom)
    }
}

/// The error for a call of `name` with `got` arguments when it takes `want`.
pub(super) fn arity_error(name: &str, want: &str, got: usize) -> (Option<usize>, String) {
    let s = if got == 1 { "" } else { "s" };
    (None, format!("`{name}` takes {want}, found {got} argument{s}"))
}

/// Names of the functions that are not [`Func`]s, for error messages.
const SPECIAL: &str = "matches, regexp_extract, bucket, hour_of_day, day_of_week, format_time";

/// Checks a call of `name` and builds it. An error names the argument at fault (by index), or
/// `None` for the function name.
pub(super) fn build_call(name: &str, mut args: Vec<Expr>) -> Result<Expr, (Option<usize>, String)> {
    let lower = name.to_ascii_lowercase();
    let arity_error = |want: &str, got: usize| arity_error(&lower, want, got);
    if lower == "bucket" {
        return super::bucket::build(args);
    }
    if let Some(&(_, part)) = TimePart::ALL.iter().find(|(n, _)| *n == lower) {
        return super::time::build(part, args);
    }
    if lower == "format_time" {
        return super::time::build_format(args);
    }
    if lower == "matches" {
        if args.len() != 2 {
            return Err(arity_error("2 arguments (text, 'pattern')", args.len()));
        }
        let pattern = pattern_arg(&lower, &args[1])?;
        let text = args.swap_remove(0);
        return Ok(Expr::Matches(Box::new(text), pattern));
    }
    if lower == "regexp_extract" {
        if !(2..=3).contains(&args.len()) {
            return Err(arity_error("2 or 3 arguments (text, 'pattern', group)", args.len()));
        }
        let pattern = pattern_arg(&lower, &args[1])?;
        let group = match args.get(2) {
            None => 0,
            Some(Expr::Literal(Value::Int(g))) if *g >= 0 && (*g as usize) < pattern.regex.captures_len() => {
                *g as usize
            }
            Some(_) => {
                let groups = pattern.regex.captures_len() - 1;
                let message = format!("the group must be an int literal from 0 to {groups} (the pattern's groups)");
                return Err((Some(2), message));
            }
        };
        args.truncate(1);
        let text = Box::new(args.swap_remove(0));
        return Ok(Expr::Extract { text, pattern, group });
    }
    let Some(&(_, func)) = Func::ALL.iter().find(|(n, _)| *n == lower) else {
        let names = Func::ALL.map(|(n, _)| n).join(", ");
        let message = format!("unknown function `{name}`; valid functions are {names}, {SPECIAL}");
        return Err((None, message));
    };
    match func.arity() {
        (n, Some(m)) if args.len() < n || args.len() > m => {
            let s = if n == 1 { "" } else { "s" };
            return Err(arity_error(&format!("{n} argument{s}"), args.len()));
        }
        (n, None) if args.len() < n => return Err(arity_error(&format!("at least {n} argument"), args.len())),
        _ => {}
    }
    if func == Func::Exists && !matches!(args[0], Expr::Field(_)) {
        return Err((
            Some(0),
            "`exists` takes a field path, e.g. `exists(user.country)`".into(),
        ));
    }
    Ok(Expr::Call(func, args))
}

/// The pattern argument of `name`: a string literal that compiles.
fn pattern_arg(name: &str, arg: &Expr) -> Result<Pattern, (Option<usize>, String)> {
    let Expr::Literal(Value::Str(source)) = arg else {
        return Err((Some(1), format!("the pattern of `{name}` must be a string literal")));
    };
    Pattern::new(source).map_err(|e| {
        // regex errors repeat the pattern over several lines; keep the last, the reason.
        let text = e.to_string();
        let last = text.lines().last().unwrap_or_default().trim();
        let reason = last.strip_prefix("error: ").unwrap_or(last);
        (Some(1), format!("invalid regular expression: {reason}"))
    })
}

/// `regexp_extract`: capture `group` of the first match of `pattern` in the string `text`.
pub(super) fn extract<'a>(text: Val<'a>, pattern: &Pattern, group: usize) -> Res<Val<'a>> {
    Ok(match text.view() {
        V::Null => Val::Null,
        V::Str(s) => match pattern.regex.captures(s).and_then(|c| c.get(group)) {
            Some(m) => Val::Own(Box::new(Value::Str(m.as_str().into()))),
            None => Val::Null,
        },
        other => return fail(format!("regexp_extract() needs a string, found {}", other.kind())),
    })
}

/// `split_part(text, delimiter, n)`: the `n`th part (1-based; negative counts from the end),
/// `''` when there is no such part, as in DuckDB and PostgreSQL. An empty delimiter splits
/// into characters.
fn split_part(text: &str, delimiter: &str, n: i64) -> String {
    let Some(index) = usize::try_from(n.unsigned_abs()).ok().and_then(|i| i.checked_sub(1)) else {
        return String::new();
    };
    let parts: Vec<&str> = if delimiter.is_empty() {
        text.char_indices().map(|(i, c)| &text[i..i + c.len_utf8()]).collect()
    } else {
        text.split(delimiter).collect()
    };
    let at = if n > 0 {
        Some(index)
    } else {
        parts.len().checked_sub(index + 1)
    };
    at.and_then(|i| parts.get(i))
        .map_or_else(String::new, |p| (*p).to_owned())
}

/// `substr(text, start, length)` in characters, as DuckDB counts: `start` is 1-based, 0 is just
/// before the first character and a negative start counts from the end (-1 is the last); a
/// negative length takes the characters before `start`. Positions outside the text are clipped.
fn substr(text: &str, start: i64, length: Option<i64>) -> &str {
    let n = text.chars().count() as i64;
    let begin = match start {
        s if s > 0 => s - 1,
        0 => -1,
        s => n.saturating_add(s),
    };
    let (from, to) = match length {
        None => (begin, n),
        Some(l) if l >= 0 => (begin, begin.saturating_add(l)),
        Some(l) => (begin.saturating_add(l), begin),
    };
    let (from, to) = (from.clamp(0, n) as usize, to.clamp(0, n) as usize);
    if from >= to {
        return "";
    }
    let byte = |c: usize| text.char_indices().nth(c).map_or(text.len(), |(i, _)| i);
    &text[byte(from)..byte(to)]
}

/// Evaluates a call (arities were checked when parsing).
pub(super) fn call<'a>(func: Func, args: &'a [Expr], event: &'a Event) -> Res<Val<'a>> {
    let arg = |i: usize| args[i].ev(event);
    let wrong = |v: V, wants: &str| fail(format!("{}() needs {wants}, found {}", func.name(), v.kind()));
    Ok(match func {
        Func::Exists => Val::Bool(!arg(0)?.is_null()),
        Func::Coalesce => {
            for a in args {
                let v = a.ev(event)?;
                if !v.is_null() {
                    return Ok(v);
                }
            }
            Val::Null
        }
        Func::If => match truth(arg(0)?.view(), "if")? {
            Some(true) => arg(1)?,
            _ => arg(2)?,
        },
        Func::Contains => {
            if let Expr::List(items) = &args[0] {
                return Ok(opt_bool(member(arg(1)?.view(), items, event)?));
            }
            let (h, n) = (arg(0)?, arg(1)?);
            match (h.view(), n.view()) {
                (V::Null, _) | (_, V::Null) => Val::Null,
                (V::Str(h), V::Str(n)) => Val::Bool(h.contains(n)),
                (V::Str(_), n) => return wrong(n, "a string to look for in a string"),
                (V::List(items), n) => {
                    let mut unknown = false;
                    for item in items {
                        match equal(view(item), n) {
                            Some(true) => return Ok(Val::Bool(true)),
                            Some(false) => {}
                            None => unknown = true,
                        }
                    }
                    opt_bool((!unknown).then_some(false))
                }
                (h, _) => return wrong(h, "a string or a list"),
            }
        }
        Func::Lower | Func::Upper => {
            let v = arg(0)?;
            // An unchanged string is returned as it is, without allocating.
            let changed = match v.view() {
                V::Null => None,
                V::Str(s) if func == Func::Lower => {
                    let same = s.chars().all(|c| c.to_lowercase().eq(std::iter::once(c)));
                    (!same).then(|| s.to_lowercase())
                }
                V::Str(s) => {
                    let same = s.chars().all(|c| c.to_uppercase().eq(std::iter::once(c)));
                    (!same).then(|| s.to_uppercase())
                }
                other => return wrong(other, "a string"),
            };
            changed.map_or(v, |s| Val::Own(Box::new(Value::Str(s.into()))))
        }
        Func::SplitPart => {
            let (text, delimiter, n) = (arg(0)?, arg(1)?, arg(2)?);
            match (text.view(), delimiter.view(), n.view()) {
                (V::Null, _, _) | (_, V::Null, _) | (_, _, V::Null) => Val::Null,
                (V::Str(t), V::Str(d), V::Int(n)) => Val::Own(Box::new(Value::Str(split_part(t, d, n).into()))),
                (V::Str(_), V::Str(_), other) => return wrong(other, "an int part number"),
                (V::Str(_), other, _) | (other, _, _) => return wrong(other, "strings to split and split by"),
            }
        }
        Func::Substr => {
            let text = arg(0)?;
            let start = arg(1)?;
            let length = match args.get(2) {
                Some(e) => Some(e.ev(event)?),
                None => None,
            };
            let length = match length.as_ref().map(Val::view) {
                None => None,
                Some(V::Null) => return Ok(Val::Null),
                Some(V::Int(l)) => Some(l),
                Some(other) => return wrong(other, "an int length"),
            };
            match (text.view(), start.view()) {
                (V::Null, _) | (_, V::Null) => Val::Null,
                (V::Str(t), V::Int(s)) => {
                    let part = substr(t, s, length);
                    if part.len() == t.len() {
                        text
                    } else {
                        Val::Own(Box::new(Value::Str(part.into())))
                    }
                }
                (V::Str(_), other) => return wrong(other, "an int start"),
                (other, _) => return wrong(other, "a string"),
            }
        }
        Func::Len => match arg(0)?.view() {
            V::Null => Val::Null,
            V::Str(s) => Val::Int(s.chars().count() as i64),
            V::List(items) => Val::Int(items.len() as i64),
            other => return wrong(other, "a string or a list"),
        },
        Func::Abs | Func::Floor | Func::Round => {
            let v = arg(0)?;
            match v.view() {
                V::Null => Val::Null,
                V::Int(i) if func == Func::Abs => {
                    Val::Int(i.checked_abs().ok_or_else(|| overflow(format!("abs({i})")))?)
                }
                V::Int(_) => v,
                V::Float(f) => Val::Float(match func {
                    Func::Abs => f.abs(),
                    Func::Floor => f.floor(),
                    _ => f.round(),
                }),
                other => return wrong(other, "a number"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use crate::expr::eval::tests::check;
    use crate::expr::parse::tests::check_errors;

    #[test]
    fn calls_are_checked_when_parsing() {
        check_errors(&[
            (
                "foo(1)",
                1,
                "unknown function `foo`; valid functions are exists, coalesce,",
            ),
            (
                "a and frob(1)",
                7,
                "round, if, split_part, substr, matches, regexp_extract, bucket, hour_of_day, day_of_week, format_time",
            ),
            ("lower(1, 2)", 1, "`lower` takes 1 argument, found 2 arguments"),
            ("if(1)", 1, "`if` takes 3 arguments, found 1 argument"),
            ("coalesce()", 1, "`coalesce` takes at least 1 argument, found 0"),
            ("matches(s)", 1, "`matches` takes 2 arguments"),
            ("matches(s, '(')", 12, "invalid regular expression: unclosed group"),
            ("matches(s, p)", 12, "the pattern of `matches` must be a string literal"),
            ("exists(1)", 8, "`exists` takes a field path"),
            ("exists(a.b, c)", 1, "`exists` takes 1 argument"),
        ]);
    }

    #[test]
    fn string_extraction_is_checked_when_parsing() {
        check_errors(&[
            (
                "regexp_extract(s)",
                1,
                "`regexp_extract` takes 2 or 3 arguments (text, 'pattern', group)",
            ),
            (
                "regexp_extract(s, p)",
                19,
                "the pattern of `regexp_extract` must be a string literal",
            ),
            (
                "regexp_extract(s, '(')",
                19,
                "invalid regular expression: unclosed group",
            ),
            (
                "regexp_extract(s, '(a)(b)', 3)",
                29,
                "the group must be an int literal from 0 to 2",
            ),
            ("regexp_extract(s, 'a', -1)", 24, "from 0 to 0"),
            ("regexp_extract(s, 'a', i)", 24, "the group must be an int literal"),
            ("split_part(s, ',')", 1, "`split_part` takes 3 arguments, found 2"),
            ("substr(s)", 1, "`substr` takes 2 arguments, found 1"),
            ("substr(s, 1, 2, 3)", 1, "`substr` takes 2 arguments, found 4"),
        ]);
    }

    #[test]
    fn regexp_extract_split_part_substr() {
        check(&[
            // The fields: s = 'Hello', e = '', i = 7, n = null.
            ("regexp_extract(s, 'l+')", "'ll'"),
            ("regexp_extract(s, '(H)(e)', 2)", "'e'"),
            ("regexp_extract(s, '(?i)^(h)ELLO$', 1)", "'H'"),
            ("regexp_extract(s, 'x')", "null"),
            ("regexp_extract(s, 'H(x)?', 1)", "null"),
            ("regexp_extract(s, 'H(x)?', 0)", "'H'"),
            ("regexp_extract(n, 'x')", "null"),
            ("regexp_extract(event_type, 'at+')", "'att'"),
            (
                "regexp_extract('a=1&channel_id=42&b=2', '(&|^)channel_id=([^&]*)', 2)",
                "'42'",
            ),
            (
                "regexp_extract(i, 'x')",
                "error: regexp_extract() needs a string, found int",
            ),
            // As DuckDB and PostgreSQL: 1-based, negative from the end, '' out of range.
            ("split_part('a,b,c', ',', 2)", "'b'"),
            ("split_part('a,b,c', ',', -1)", "'c'"),
            ("split_part('a,b,c', ',', -3)", "'a'"),
            ("split_part('a,b,c', ',', 4)", "''"),
            ("split_part('a,b,c', ',', -4)", "''"),
            ("split_part('a,b,c', ',', 0)", "''"),
            ("split_part('a,,b', ',', 2)", "''"),
            ("split_part('a::b', '::', 2)", "'b'"),
            ("split_part('日本語', '', 2)", "'本'"),
            ("split_part(s, 'l', 3)", "'o'"),
            ("split_part(s, n, 1)", "null"),
            ("split_part(s, ',', n)", "null"),
            (
                "split_part(s, ',', 1.5)",
                "error: split_part() needs an int part number, found float",
            ),
            (
                "split_part(i, ',', 1)",
                "error: split_part() needs strings to split and split by, found int",
            ),
            (
                "split_part(s, 1, 1)",
                "error: needs strings to split and split by, found int",
            ),
            // As DuckDB: 1-based; 0 is before the first character; negative starts count from
            // the end; a negative length takes the characters before the start.
            ("substr(s, 2, 3)", "'ell'"),
            ("substr(s, 2)", "'ello'"),
            ("substr(s, 1)", "'Hello'"),
            ("substr(s, 0, 3)", "'He'"),
            ("substr(s, -3)", "'llo'"),
            ("substr(s, -3, 2)", "'ll'"),
            ("substr(s, -10, 7)", "'He'"),
            ("substr(s, 10)", "''"),
            ("substr(s, 2, -1)", "'H'"),
            ("substr(s, 2, 0)", "''"),
            ("substr('héllo', 2, 2)", "'él'"),
            ("substr(e, 1, 1)", "''"),
            ("substr(s, n)", "null"),
            ("substr(s, 1, n)", "null"),
            ("substr(s, max, max)", "''"),
            ("substr(s, min, max)", "'Hell'"),
            ("substr(s, '1')", "error: substr() needs an int start, found string"),
            ("substr(s, 1, 1.0)", "error: substr() needs an int length, found float"),
            ("substr(i, 1)", "error: substr() needs a string, found int"),
        ]);
    }

    #[test]
    fn exists_coalesce_if() {
        check(&[
            ("exists(i)", "true"),
            ("exists(n)", "false"),
            ("exists(missing)", "false"),
            ("exists(o.b.c)", "true"),
            ("exists(l[5])", "false"),
            ("exists(event_type)", "true"),
            ("coalesce(n, missing, 3, 4)", "3"),
            ("coalesce(n)", "null"),
            ("coalesce(i, max + 1)", "7"),
            ("coalesce(n, max + 1)", "error: integer overflow"),
            ("if(b, 1, 2)", "1"),
            ("if(nb, 1, 2)", "2"),
            ("if(n, 1, 2)", "2"),
            ("if(true, 1, max + 1)", "1"),
            ("if(i > 5, 'big', 'small')", "'big'"),
            ("if(i, 1, 2)", "error: `if` needs true, false or null, found int"),
        ]);
    }

    #[test]
    fn contains_and_matches() {
        check(&[
            ("contains(s, 'ell')", "true"),
            ("contains(s, 'x')", "false"),
            ("contains(s, '')", "true"),
            ("contains(l, 'x')", "true"),
            ("contains(l, 2)", "true"),
            ("contains(l, 3)", "false"),
            ("contains(ln, 1)", "true"),
            ("contains(ln, 3)", "null"),
            ("contains([1, 2], i)", "false"),
            ("contains([7, null], i)", "true"),
            ("contains(n, 'x')", "null"),
            ("contains(s, n)", "null"),
            ("contains(event_type, 'tempt')", "true"),
            (
                "contains(s, 1)",
                "error: contains() needs a string to look for in a string, found int",
            ),
            (
                "contains(i, 1)",
                "error: contains() needs a string or a list, found int",
            ),
            ("matches(s, '^H.l+o$')", "true"),
            ("matches(s, 'ell')", "true"),
            ("matches(s, '^ell')", "false"),
            ("matches(s, '(?i)^hello$')", "true"),
            ("matches(event_type, 'att')", "true"),
            ("matches(n, 'x')", "null"),
            ("matches(i, 'x')", "error: matches() needs a string, found int"),
        ]);
    }

    #[test]
    fn string_and_number_functions() {
        check(&[
            ("lower(s)", "'hello'"),
            ("LOWER(s)", "'hello'"),
            ("upper(s)", "'HELLO'"),
            ("lower('abc')", "'abc'"),
            ("upper('straße')", "'STRASSE'"),
            ("lower(event_type)", "'attempt'"),
            ("lower(n)", "null"),
            ("lower(i)", "error: lower() needs a string, found int"),
            ("upper(b)", "error: upper() needs a string, found bool"),
            ("len(s)", "5"),
            ("len('日本')", "2"),
            ("len(l)", "3"),
            ("len(e)", "0"),
            ("len(n)", "null"),
            ("len(i)", "error: len() needs a string or a list, found int"),
            ("len(o)", "error: len() needs a string or a list, found object"),
            ("abs(neg)", "3"),
            ("abs(i)", "7"),
            ("abs(-2.5)", "2.5"),
            ("abs(min)", "error: integer overflow"),
            ("abs(n)", "null"),
            ("abs(s)", "error: abs() needs a number, found string"),
            ("floor(f)", "2.0"),
            ("floor(-2.5)", "-3.0"),
            ("floor(i)", "7"),
            ("floor(n)", "null"),
            ("floor(b)", "error: floor() needs a number, found bool"),
            ("round(f)", "3.0"),
            ("round(-2.5)", "-3.0"),
            ("round(2.4)", "2.0"),
            ("round(i)", "7"),
            ("round(s)", "error: round() needs a number"),
            ("round(i / 2) * 2", "8.0"),
        ]);
    }
}
