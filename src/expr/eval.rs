//! Evaluation of an [`Expr`] against one [`Event`].
//!
//! Evaluation works on [`Val`], which borrows payload values and literals instead of cloning
//! them, and on [`V`], a `Copy` view of one value for matching. Only results that are new
//! values (arithmetic, `lower`, list literals) are built, and scalars never allocate.

use std::cmp::Ordering;

use super::ops::{arith, equal, negate, order};
use super::{BinaryOp, Expr, UnaryOp};
use crate::event::{Accessor, Event};
use crate::value::{Sym, Value};

/// Why an expression cannot be evaluated for an event (e.g. `'a' < 1`, or integer overflow).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EvalError {
    pub message: String,
}

pub(super) fn fail<T>(message: String) -> Result<T, EvalError> {
    Err(EvalError { message })
}

/// An evaluated value, borrowed from the event or the expression where possible.
pub(super) enum Val<'a> {
    Ref(&'a Value),
    Own(Value),
    /// The event type, compared without building a `Value::Str`.
    Kind(&'static str),
}

pub(super) const NULL: Val<'static> = Val::Own(Value::Null);

pub(super) fn bool_val(b: bool) -> Val<'static> {
    Val::Own(Value::Bool(b))
}

pub(super) fn opt_bool(b: Option<bool>) -> Val<'static> {
    b.map_or(NULL, bool_val)
}

/// A `Copy` view of a value.
#[derive(Clone, Copy)]
pub(super) enum V<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    Time(i64),
    List(&'a [Value]),
    Object(&'a [(Sym, Value)]),
}

pub(super) fn view(v: &Value) -> V<'_> {
    match v {
        Value::Null => V::Null,
        Value::Bool(b) => V::Bool(*b),
        Value::Int(i) => V::Int(*i),
        Value::Float(f) => V::Float(f.get()),
        Value::Str(s) => V::Str(s),
        Value::Time(t) => V::Time(*t),
        Value::List(items) => V::List(items),
        Value::Object(fields) => V::Object(fields),
    }
}

impl V<'_> {
    pub(super) fn kind(self) -> &'static str {
        match self {
            V::Null => "null",
            V::Bool(_) => "bool",
            V::Int(_) => "int",
            V::Float(_) => "float",
            V::Str(_) => "string",
            V::Time(_) => "timestamp",
            V::List(_) => "list",
            V::Object(_) => "object",
        }
    }
}

impl Val<'_> {
    pub(super) fn view(&self) -> V<'_> {
        match self {
            Val::Ref(v) => view(v),
            Val::Own(v) => view(v),
            Val::Kind(s) => V::Str(s),
        }
    }
    pub(super) fn is_null(&self) -> bool {
        matches!(self.view(), V::Null)
    }
    pub(super) fn into_value(self) -> Value {
        match self {
            Val::Ref(v) => v.clone(),
            Val::Own(v) => v,
            Val::Kind(s) => Value::str(s),
        }
    }
}

impl Expr {
    /// Evaluates the expression for `event`. A missing field is null.
    pub fn eval(&self, event: &Event) -> Result<Value, EvalError> {
        Ok(self.ev(event)?.into_value())
    }

    /// Whether the expression is `true` for `event` (null, false and non-bools are not).
    pub fn is_true(&self, event: &Event) -> Result<bool, EvalError> {
        Ok(matches!(self.ev(event)?.view(), V::Bool(true)))
    }

    pub(super) fn ev<'a>(&'a self, event: &'a Event) -> Result<Val<'a>, EvalError> {
        Ok(match self {
            Expr::Literal(v) => Val::Ref(v),
            Expr::Field(f) => match &f.acc {
                Accessor::Time => Val::Own(Value::Time(event.time)),
                Accessor::Type => Val::Kind(event.kind.as_str()),
                Accessor::Payload(path) => path.get(&event.payload).map_or(NULL, Val::Ref),
            },
            Expr::List(items) => {
                let values = items.iter().map(|e| Ok(e.ev(event)?.into_value()));
                Val::Own(Value::List(values.collect::<Result<_, EvalError>>()?))
            }
            Expr::Unary(UnaryOp::Not, e) => {
                opt_bool(truth(e.ev(event)?.view(), "not")?.map(|b| !b))
            }
            Expr::Unary(UnaryOp::Neg, e) => Val::Own(negate(e.ev(event)?.view())?),
            Expr::Binary(BinaryOp::And, l, r) => {
                let left = truth(l.ev(event)?.view(), "and")?;
                if left == Some(false) {
                    return Ok(bool_val(false));
                }
                opt_bool(and(left, truth(r.ev(event)?.view(), "and")?))
            }
            Expr::Binary(BinaryOp::Or, l, r) => {
                let left = truth(l.ev(event)?.view(), "or")?;
                if left == Some(true) {
                    return Ok(bool_val(true));
                }
                match truth(r.ev(event)?.view(), "or")? {
                    Some(true) => bool_val(true),
                    Some(false) => opt_bool(left),
                    None => NULL,
                }
            }
            Expr::Binary(op, l, r) => {
                let (a, b) = (l.ev(event)?, r.ev(event)?);
                let (a, b) = (a.view(), b.view());
                match op {
                    BinaryOp::Eq => opt_bool(equal(a, b)),
                    BinaryOp::Ne => opt_bool(equal(a, b).map(|e| !e)),
                    BinaryOp::Lt => opt_bool(order(a, b, "<")?.map(Ordering::is_lt)),
                    BinaryOp::Le => opt_bool(order(a, b, "<=")?.map(Ordering::is_le)),
                    BinaryOp::Gt => opt_bool(order(a, b, ">")?.map(Ordering::is_gt)),
                    BinaryOp::Ge => opt_bool(order(a, b, ">=")?.map(Ordering::is_ge)),
                    _ => Val::Own(arith(*op, a, b)?),
                }
            }
            Expr::In {
                expr,
                list,
                negated,
            } => {
                let x = expr.ev(event)?;
                opt_bool(member(x.view(), list, event)?.map(|m| m != *negated))
            }
            Expr::Between {
                expr,
                low,
                high,
                negated,
            } => {
                let (x, lo, hi) = (expr.ev(event)?, low.ev(event)?, high.ev(event)?);
                let ge = order(x.view(), lo.view(), "between")?.map(Ordering::is_ge);
                let le = order(x.view(), hi.view(), "between")?.map(Ordering::is_le);
                opt_bool(and(ge, le).map(|b| b != *negated))
            }
            Expr::IsNull { expr, negated } => bool_val(expr.ev(event)?.is_null() != *negated),
            Expr::Call(func, args) => return super::func::call(*func, args, event),
            Expr::Matches(text, pattern) => match text.ev(event)?.view() {
                V::Null => NULL,
                V::Str(s) => bool_val(pattern.regex.is_match(s)),
                other => return fail(format!("matches() needs a string, found {}", other.kind())),
            },
        })
    }
}

/// A logical operand: `Some(bool)`, or `None` for null.
pub(super) fn truth(v: V, op: &str) -> Result<Option<bool>, EvalError> {
    match v {
        V::Null => Ok(None),
        V::Bool(b) => Ok(Some(b)),
        other => fail(format!(
            "`{op}` needs true, false or null, found {}",
            other.kind()
        )),
    }
}

/// Kleene conjunction.
pub(super) fn and(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

/// `x in list`: true on a match, else null if `x` or an element was null, else false.
pub(super) fn member(x: V, list: &[Expr], event: &Event) -> Result<Option<bool>, EvalError> {
    let mut unknown = false;
    for item in list {
        match equal(x, item.ev(event)?.view()) {
            Some(true) => return Ok(Some(true)),
            Some(false) => {}
            None => unknown = true,
        }
    }
    Ok(if unknown { None } else { Some(false) })
}

#[cfg(test)]
pub(super) mod tests {
    use crate::event::Event;
    use crate::expr::parse;
    use crate::value::{Sym, Value};

    /// The event every table case runs against; its time field is `ts`, its type `event_type`.
    pub fn event() -> Event {
        let json = r#"{"i": 7, "neg": -3, "f": 2.5, "s": "Hello", "e": "", "b": true, "nb": false,
            "n": null, "l": [1, 2.0, "x"], "ln": [1, null], "o": {"a": 1, "b": {"c": "deep"}},
            "big": 9007199254740993, "max": 9223372036854775807, "min": -9223372036854775808,
            "odd name": 1, "user-agent": "ua"}"#;
        let Value::Object(fields) = Value::from_json(serde_json::from_str(json).unwrap()) else {
            unreachable!()
        };
        Event {
            time: 1_700_000_000_000,
            kind: Sym::new("attempt"),
            payload: fields,
        }
    }

    /// Checks `(expression, expected)` cases. `expected` is a constant expression, or
    /// `error: TEXT` for an evaluation error whose message contains TEXT. Every case also
    /// checks that the expression's `Display` parses back to the same expression.
    pub fn check(cases: &[(&str, &str)]) {
        let ev = event();
        for (text, want) in cases {
            let expr = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                parse(&expr.to_string()).as_ref(),
                Ok(&expr),
                "{text} printed as {expr}"
            );
            let got = expr.bind("ts", "event_type").eval(&ev);
            match want.strip_prefix("error: ") {
                Some(message) => match got {
                    Err(e) => assert!(e.message.contains(message), "{text}: error `{e}`"),
                    Ok(v) => panic!("{text}: expected an error, got {v:?}"),
                },
                None => {
                    let want = parse(want).unwrap().eval(&ev).unwrap();
                    assert_eq!(got, Ok(want), "{text}");
                }
            }
        }
    }

    #[test]
    fn literals_and_fields() {
        check(&[
            ("1", "1"),
            ("-1", "0 - 1"),
            ("1.5", "3 / 2"),
            ("1e3", "1000.0"),
            ("'a\\'b\\\\'", r#""a'b\\""#),
            ("\"x\\ty\"", "'x\ty'"),
            ("[1, 'x', null]", "[1, 'x', null]"),
            ("TRUE", "true"),
            ("i", "7"),
            ("missing", "null"),
            ("o.b.c", "'deep'"),
            ("o.a.x", "null"),
            ("l[2]", "'x'"),
            ("l[9]", "null"),
            ("`odd name`", "1"),
            ("`user-agent`", "'ua'"),
            ("event_type", "'attempt'"),
            ("ts - ts", "0"),
        ]);
        let ts = parse("ts").unwrap().bind("ts", "event_type");
        assert_eq!(ts.eval(&event()), Ok(Value::Time(1_700_000_000_000)));
        let later = parse("ts + 1500").unwrap().bind("ts", "event_type");
        assert_eq!(later.eval(&event()), Ok(Value::Time(1_700_000_001_500)));
    }

    #[test]
    fn logic() {
        check(&[
            ("true and false", "false"),
            ("true and true", "true"),
            ("true and null", "null"),
            ("null and false", "false"),
            ("false and null", "false"),
            ("null and null", "null"),
            ("true or null", "true"),
            ("null or true", "true"),
            ("null or false", "null"),
            ("false or false", "false"),
            ("false or true", "true"),
            ("not true", "false"),
            ("not null", "null"),
            ("not not b", "true"),
            ("not i == 7", "false"),
            ("b and not nb", "true"),
            ("false and i", "false"),
            ("true or i", "true"),
            ("not i", "error: `not` needs true, false or null, found int"),
            (
                "i and true",
                "error: `and` needs true, false or null, found int",
            ),
            ("true and i", "error: `and` needs"),
            (
                "null or s",
                "error: `or` needs true, false or null, found string",
            ),
            ("event_type == 'attempt' and i < 10", "true"),
            ("i > 10 or s == 'Hello' and not b", "false"),
        ]);
    }

    #[test]
    fn in_between_is_null() {
        check(&[
            ("i in [1, 7]", "true"),
            ("i in [1, 2]", "false"),
            ("i in [1, null]", "null"),
            ("i in [7, null]", "true"),
            ("n in [1]", "null"),
            ("i in []", "false"),
            ("i not in [1, 2]", "true"),
            ("i not in [7]", "false"),
            ("i not in [null]", "null"),
            ("s in ['Hello', 1]", "true"),
            ("7.0 in [i]", "true"),
            ("event_type in ['session', 'attempt']", "true"),
            ("i between 1 and 10", "true"),
            ("i between 7 and 7", "true"),
            ("i between 8 and 10", "false"),
            ("i not between 8 and 10", "true"),
            ("i between n and 10", "null"),
            ("i between n and 5", "false"),
            ("f between 2 and 3", "true"),
            ("s between 'A' and 'Z'", "true"),
            ("1 + 1 between 2 and 2", "true"),
            ("i between 1 and 10 and b", "true"),
            (
                "s between 1 and 2",
                "error: cannot compare string with int (`between`)",
            ),
            ("n is null", "true"),
            ("missing is null", "true"),
            ("i is null", "false"),
            ("i is not null", "true"),
            ("n is not null", "false"),
            ("i / 0 is null", "true"),
            ("NULL IS NULL", "true"),
        ]);
    }

    #[test]
    fn is_true_only_for_true() {
        let ev = event();
        for (text, want) in [
            ("i == 7", true),
            ("i == 8", false),
            ("n == 1", false),
            ("i", false),
        ] {
            assert_eq!(parse(text).unwrap().is_true(&ev), Ok(want), "{text}");
        }
        assert!(parse("s < 1").unwrap().is_true(&ev).is_err());
    }
}
