//! Evaluation of an [`Expr`] against one [`Event`].
//!
//! Evaluation works on [`Val`], which holds scalars inline and borrows payload values and
//! literals instead of cloning them, and on [`V`], a `Copy` view of one value for matching.
//! Only new strings and lists (`lower`, list literals) allocate. `Val` is 16 bytes and errors
//! are boxed, so that a `Result<Val, _>` comes back in registers: evaluation is a tree of
//! calls, and results passed through memory cost store-forwarding stalls at every node.

use std::cmp::Ordering;

use super::ops::{arith, equal, negate, order};
use super::{BinaryOp, Expr, Field, UnaryOp};
use crate::event::{Accessor, Event};
use crate::value::{Sym, Value};

/// Why an expression cannot be evaluated for an event (e.g. `'a' < 1`, or integer overflow).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EvalError {
    pub message: String,
}

/// The internal result: a boxed error keeps `Result<Val, _>` at 16 bytes.
pub(super) type Res<T> = Result<T, Box<EvalError>>;

#[cold]
pub(super) fn fail<T>(message: String) -> Res<T> {
    Err(Box::new(EvalError { message }))
}

/// An evaluated value: a scalar, or a value borrowed from the event or the expression.
pub(super) enum Val<'a> {
    Null,
    Bool(bool),
    Int(i64),
    /// Not canonicalised until it becomes a [`Value`].
    Float(f64),
    Time(i64),
    Ref(&'a Value),
    /// The event type, compared without building a `Value::Str`.
    Kind(Sym),
    /// A computed string or list.
    Own(Box<Value>),
}

#[inline(always)]
pub(super) fn opt_bool(b: Option<bool>) -> Val<'static> {
    b.map_or(Val::Null, Val::Bool)
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

#[inline(always)]
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
    #[inline(always)]
    pub(super) fn view(&self) -> V<'_> {
        match self {
            Val::Null => V::Null,
            Val::Bool(b) => V::Bool(*b),
            Val::Int(i) => V::Int(*i),
            Val::Float(f) => V::Float(*f),
            Val::Time(t) => V::Time(*t),
            Val::Ref(v) => view(v),
            Val::Kind(s) => V::Str(s.as_str()),
            Val::Own(v) => view(v),
        }
    }
    #[inline(always)]
    pub(super) fn is_null(&self) -> bool {
        matches!(self.view(), V::Null)
    }
    pub(super) fn into_value(self) -> Value {
        match self {
            Val::Null => Value::Null,
            Val::Bool(b) => Value::Bool(b),
            Val::Int(i) => Value::Int(i),
            Val::Float(f) => Value::float(f),
            Val::Time(t) => Value::Time(t),
            Val::Ref(v) => v.clone(),
            Val::Kind(s) => Value::str(s.as_str()),
            Val::Own(v) => *v,
        }
    }
}

impl Expr {
    /// Evaluates the expression for `event`. A missing field is null.
    pub fn eval(&self, event: &Event) -> Result<Value, EvalError> {
        match self.ev(event) {
            Ok(v) => Ok(v.into_value()),
            Err(e) => Err(*e),
        }
    }

    /// Whether the expression is `true` for `event` (null, false and non-bools are not).
    pub fn is_true(&self, event: &Event) -> Result<bool, EvalError> {
        match self.ev(event) {
            Ok(v) => Ok(matches!(v.view(), V::Bool(true))),
            Err(e) => Err(*e),
        }
    }

    pub(super) fn ev<'a>(&'a self, event: &'a Event) -> Res<Val<'a>> {
        Ok(match self {
            Expr::Literal(v) => Val::Ref(v),
            Expr::Field(f) => field(f, event),
            Expr::List(items) => {
                let values = items.iter().map(|e| Ok(e.ev(event)?.into_value()));
                let list = Value::List(values.collect::<Res<_>>()?);
                Val::Own(Box::new(list))
            }
            Expr::Unary(UnaryOp::Not, e) => opt_bool(truth(operand(e, event)?.view(), "not")?.map(|b| !b)),
            Expr::Unary(UnaryOp::Neg, e) => negate(operand(e, event)?.view())?,
            Expr::Binary(BinaryOp::And, l, r) => {
                let left = truth(operand(l, event)?.view(), "and")?;
                if left == Some(false) {
                    return Ok(Val::Bool(false));
                }
                opt_bool(and(left, truth(operand(r, event)?.view(), "and")?))
            }
            Expr::Binary(BinaryOp::Or, l, r) => {
                let left = truth(operand(l, event)?.view(), "or")?;
                if left == Some(true) {
                    return Ok(Val::Bool(true));
                }
                match truth(operand(r, event)?.view(), "or")? {
                    Some(true) => Val::Bool(true),
                    Some(false) => opt_bool(left),
                    None => Val::Null,
                }
            }
            Expr::Binary(op, l, r) => {
                let (a, b) = (operand(l, event)?, operand(r, event)?);
                let (a, b) = (a.view(), b.view());
                match op {
                    BinaryOp::Eq => opt_bool(equal(a, b)),
                    BinaryOp::Ne => opt_bool(equal(a, b).map(|e| !e)),
                    BinaryOp::Lt => opt_bool(order(a, b, "<")?.map(Ordering::is_lt)),
                    BinaryOp::Le => opt_bool(order(a, b, "<=")?.map(Ordering::is_le)),
                    BinaryOp::Gt => opt_bool(order(a, b, ">")?.map(Ordering::is_gt)),
                    BinaryOp::Ge => opt_bool(order(a, b, ">=")?.map(Ordering::is_ge)),
                    _ => arith(*op, a, b)?,
                }
            }
            Expr::In { expr, list, negated } => {
                let x = operand(expr, event)?;
                opt_bool(member(x.view(), list, event)?.map(|m| m != *negated))
            }
            Expr::Between {
                expr,
                low,
                high,
                negated,
            } => {
                let x = operand(expr, event)?;
                let (lo, hi) = (operand(low, event)?, operand(high, event)?);
                let ge = order(x.view(), lo.view(), "between")?.map(Ordering::is_ge);
                let le = order(x.view(), hi.view(), "between")?.map(Ordering::is_le);
                opt_bool(and(ge, le).map(|b| b != *negated))
            }
            Expr::IsNull { expr, negated } => Val::Bool(operand(expr, event)?.is_null() != *negated),
            Expr::Call(func, args) => return super::func::call(*func, args, event),
            Expr::Matches(text, pattern) => match text.ev(event)?.view() {
                V::Null => Val::Null,
                V::Str(s) => Val::Bool(pattern.regex.is_match(s)),
                other => return fail(format!("matches() needs a string, found {}", other.kind())),
            },
            Expr::Case { branches, otherwise } => {
                for (condition, result) in branches {
                    if truth(operand(condition, event)?.view(), "case when")? == Some(true) {
                        return operand(result, event);
                    }
                }
                match otherwise {
                    Some(e) => return operand(e, event),
                    None => Val::Null,
                }
            }
            Expr::Bucket(x, buckets) => return buckets.eval(operand(x, event)?.view()),
            Expr::TimePart { part, time, zone } => {
                return super::time::eval(*part, operand(time, event)?.view(), zone.as_ref())
            }
            Expr::Extract { text, pattern, group } => {
                return super::func::extract(operand(text, event)?, pattern, *group)
            }
            Expr::FormatTime { time, format, zone } => {
                return super::time::eval_format(format, operand(time, event)?.view(), zone.as_ref())
            }
        })
    }
}

/// Evaluates an operand, inlining the common leaves (literals and fields) into the caller.
#[inline(always)]
fn operand<'a>(e: &'a Expr, event: &'a Event) -> Res<Val<'a>> {
    match e {
        Expr::Literal(v) => Ok(Val::Ref(v)),
        Expr::Field(f) => Ok(field(f, event)),
        _ => e.ev(event),
    }
}

#[inline(always)]
fn field<'a>(f: &'a Field, event: &'a Event) -> Val<'a> {
    match &f.acc {
        Accessor::Time => Val::Time(event.time),
        Accessor::Type => Val::Kind(event.kind),
        Accessor::Payload(path) => path.get(&event.payload).map_or(Val::Null, Val::Ref),
    }
}

/// A logical operand: `Some(bool)`, or `None` for null.
#[inline(always)]
pub(super) fn truth(v: V, op: &str) -> Res<Option<bool>> {
    match v {
        V::Null => Ok(None),
        V::Bool(b) => Ok(Some(b)),
        other => fail(format!("`{op}` needs true, false or null, found {}", other.kind())),
    }
}

/// Kleene conjunction.
#[inline(always)]
pub(super) fn and(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

/// `x in list`: true on a match, else null if `x` or an element was null, else false.
pub(super) fn member(x: V, list: &[Expr], event: &Event) -> Res<Option<bool>> {
    let mut unknown = false;
    for item in list {
        match equal(x, operand(item, event)?.view()) {
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
            assert_eq!(parse(&expr.to_string()).as_ref(), Ok(&expr), "{text} printed as {expr}");
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
            ("i and true", "error: `and` needs true, false or null, found int"),
            ("true and i", "error: `and` needs"),
            ("null or s", "error: `or` needs true, false or null, found string"),
            ("event_type == 'attempt' and i < 10", "true"),
            ("i > 10 or s == 'Hello' and not b", "false"),
        ]);
    }

    #[test]
    fn case_when() {
        check(&[
            ("case when i > 5 then 'big' else 'small' end", "'big'"),
            ("case when i > 10 then 'big' else 'small' end", "'small'"),
            ("case when i > 10 then 'big' end", "null"),
            ("case when i > 1 then 1 when i > 2 then 2 else 3 end", "1"),
            ("case when i > 8 then 1 when i > 6 then 2 else 3 end", "2"),
            ("case when nb then 1 when b then 2 end", "2"),
            ("CASE WHEN s == 'Hello' THEN upper(s) END", "'HELLO'"),
            ("case when event_type == 'attempt' then ts - ts end", "0"),
            ("case when b then l end", "[1, 2.0, 'x']"),
            ("case when i > 5 then case when f < 2 then 'a' else 'b' end end", "'b'"),
            ("case when true then 1 end + 1", "2"),
            // A null condition does not match, like false.
            ("case when n then 1 else 2 end", "2"),
            ("case when n > 1 then 1 end", "null"),
            ("case when n then 1 when missing == 1 then 2 end", "null"),
            ("case when b then n else 1 end", "null"),
            ("case when nb then 1 else n end", "null"),
            // Only the conditions up to the first true one, and its result, are evaluated.
            ("case when b then 1 when i then max + 1 end", "1"),
            ("case when nb then max + 1 else 2 end", "2"),
            (
                "case when i then 1 end",
                "error: `case when` needs true, false or null, found int",
            ),
            (
                "case when nb then 1 when s then 2 end",
                "error: `case when` needs true, false or null, found string",
            ),
            ("case when b then max + 1 end", "error: integer overflow"),
            (
                "case when nb then 1 else s < 1 end",
                "error: cannot compare string with int",
            ),
        ]);
    }

    #[test]
    fn is_true_only_for_true() {
        let ev = event();
        for (text, want) in [("i == 7", true), ("i == 8", false), ("n == 1", false), ("i", false)] {
            assert_eq!(parse(text).unwrap().is_true(&ev), Ok(want), "{text}");
        }
        assert!(parse("s < 1").unwrap().is_true(&ev).is_err());
        // Results come back in registers (see the module docs).
        assert_eq!(std::mem::size_of::<super::Res<super::Val>>(), 16);
    }
}
