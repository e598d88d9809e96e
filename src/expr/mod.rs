//! The expression language of pipeline specs: filters such as
//! `event_type == 'attempt' and response_time_ms < 1000` and measure arguments such as
//! `response_time_ms / 1000`.
//!
//! [`parse`] turns text into an [`Expr`]; [`Expr::bind`] maps the source's time and type field
//! names to [`Accessor::Time`] and [`Accessor::Type`]; [`Expr::eval`] and [`Expr::is_true`]
//! evaluate it against one [`Event`](crate::event::Event). `Display` prints a canonical form
//! that parses back to an equal `Expr`.
//!
//! # Syntax
//!
//! Operators, lowest precedence first:
//!
//! | level | operators | associativity |
//! | --- | --- | --- |
//! | 1 | `or` | left |
//! | 2 | `and` | left |
//! | 3 | `not x` | prefix |
//! | 4 | `== != < <= > >=` (`=` and `<>` are accepted too), `x [not] in [..]`, `x [not] between a and b`, `x is [not] null` | none: `a < b < c` is an error |
//! | 5 | `+ -` | left |
//! | 6 | `* / %` | left |
//! | 7 | `-x` | prefix |
//!
//! Primaries are literals (`1`, `-2`, `1.5`, `1e3`, `'text'` or `"text"` with `\\ \' \" \n \t \r`
//! escapes, `true`, `false`, `null`, `[1, 2, 'x']`), parenthesised expressions,
//! `case when c1 then r1 [when c2 then r2 ...] [else r] end`, function calls and field
//! references. A field reference is a [`FieldPath`]: `user.country`, `tags[0]`,
//! `` `odd name` ``. Unquoted names are ASCII letters, digits, `_` and `$`, and the first one
//! does not start with a digit; unlike in `group_by`, they never contain `-` (so that `a-b`
//! subtracts): quote such names with backticks (`` `user-agent` ``). Keywords (`and or not in
//! between is true false null case when then else end`, in any case) are field names only when
//! backticked (`` `end` ``; after a `.` they need no backticks: `order.end`). Function
//! names (any case) are not reserved: a name followed by `(` is a call, otherwise a field.
//! Nesting deeper than 200 levels is a parse error.
//!
//! Functions: `exists(path)`, `coalesce(a, ...)`, `contains(haystack, needle)`,
//! `matches(text, 'regex')` (the pattern must be a string literal; it is compiled when parsing
//! and matches anywhere in the text unless anchored with `^`/`$`), `lower(s)`, `upper(s)`,
//! `len(x)`, `abs(x)`, `floor(x)`, `round(x)`, `if(cond, a, b)`,
//! `bucket(x, [e1, ..., en])` and `bucket(x, [e1, ..., en], [l0, ..., ln])` (the edges must be
//! number literals in strictly ascending order and the labels literals, one more than the
//! edges), `hour_of_day(time)`, `hour_of_day(time, 'zone')`, `day_of_week(time)` and
//! `day_of_week(time, 'zone')` (the zone must be a string literal naming an IANA time zone,
//! such as `'Europe/Paris'`, and is resolved when parsing). These constant arguments are checked
//! when parsing, and an error points at the argument at fault.
//!
//! # Semantics
//!
//! - **Nulls** follow SQL: a missing field is null; comparisons, arithmetic and most functions
//!   with a null operand yield null (before any kind check: `null + 'x'` is null).
//!   `and`/`or`/`not` use Kleene three-valued logic (`false and null` is false, `true or null`
//!   is true, otherwise null wins), and evaluate their right side only when the left does not
//!   decide; an operand that is not a bool or null is an [`EvalError`]. A filter passes only
//!   when it evaluates to `true` ([`Expr::is_true`]); null and false both reject.
//! - **Equality** (`==`, `!=`, `in`, `contains` on lists): ints and floats compare numerically and
//!   exactly (`1 == 1.0`, and `9007199254740993 != 9007199254740992.0`); values of other
//!   different kinds are simply unequal. Lists and objects compare element-wise with the same
//!   rule (nulls inside them are equal to each other). `x in [a, b]` is `x == a or x == b`, so
//!   it is null when nothing matched and `x` or some element is null; `contains(list, x)` is
//!   `x in list`. `x between a and b` is `x >= a and x <= b`.
//! - **Ordering** (`< <= > >= between`): numbers with numbers, timestamps with timestamps,
//!   strings with strings (by code point), bools with bools (`false < true`). Any other
//!   pairing is an [`EvalError`]. Float NaN sorts above every number.
//! - **Arithmetic**: int `+ - * %` int stays int; overflow is an [`EvalError`]. Mixed int and
//!   float gives float. `/` always gives float. Division or `%` by zero gives null. `%` is the
//!   truncating remainder (sign of the dividend) and also works on floats. Timestamps support
//!   `time - time` (int milliseconds) and `time ± int` (timestamp). Bools, strings, lists and
//!   objects in arithmetic are errors.
//! - **Functions**: `exists` is never null. `coalesce` returns its first non-null argument,
//!   evaluating lazily. `if` evaluates only the chosen branch; a null condition picks the else
//!   branch. `contains` is substring search on strings and membership on lists. `lower` and
//!   `upper` use Unicode case mapping. `len` counts chars of a string or elements of a list.
//!   `floor`/`round` (half away from zero) keep the kind: ints stay ints, floats stay floats.
//!   `bucket(x, [e1, ..., en], [l0, ..., ln])` is `li`, where `i` is the number of edges `<= x`
//!   (`x < e1` gives `l0`, `e1 <= x < e2` gives `l1`, `x >= en` gives `ln`); without labels it
//!   is `i` itself, an int. `hour_of_day` (0 to 23) and `day_of_week` (ISO: 1 for Monday to 7
//!   for Sunday) read the wall-clock time of a timestamp, or of int epoch milliseconds, in the
//!   zone (UTC when none is given), daylight saving included.
//!   Wrong argument kinds are [`EvalError`]s.
//! - **`case`** picks the result of the first `when` whose condition is true, evaluating
//!   conditions in order and only the chosen result; a null condition counts as false, and
//!   with no true condition the result is the `else` branch, or null when there is none. A
//!   condition that is not a bool or null is an [`EvalError`].
//!
//! Evaluation does not allocate for field lookups, comparisons or scalar arithmetic: values are
//! borrowed from the event or the expression, scalars are computed inline, and the event type
//! is compared as `&str`. A two-clause filter costs a few tens of nanoseconds.

mod bucket;
mod display;
mod eval;
mod func;
mod lex;
mod ops;
mod parse;
mod time;

use serde::{Deserialize, Serialize};

use crate::event::{Accessor, FieldPath};
use crate::value::Value;

pub use bucket::Buckets;
pub use eval::EvalError;
pub use func::{Func, Pattern};
pub use parse::{parse, ParseError};
pub use time::{TimeFormat, TimePart, Zone};

/// A parsed expression. Children are boxed; see the module docs for the language.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Expr {
    /// A scalar constant (the parser only produces null, bool, int, float and string).
    Literal(Value),
    /// `[a, b, ...]`.
    List(Vec<Expr>),
    Field(Field),
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// `expr in [list]`, or `expr not in [list]` when `negated`.
    In {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    /// `expr between low and high` (both inclusive), or `not between` when `negated`.
    Between {
        expr: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    /// `expr is null`, or `expr is not null` when `negated`.
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    /// A function call; arities are checked by the parser (`exists` takes a field).
    Call(Func, Vec<Expr>),
    /// `matches(text, 'pattern')`.
    Matches(Box<Expr>, Pattern),
    /// `case when c1 then r1 [when c2 then r2 ...] [else otherwise] end`.
    Case {
        branches: Vec<(Expr, Expr)>,
        otherwise: Option<Box<Expr>>,
    },
    /// `bucket(x, [edges])` or `bucket(x, [edges], [labels])`.
    Bucket(Box<Expr>, Buckets),
    /// `hour_of_day(time, 'zone')` or `day_of_week(time, 'zone')`; no zone means UTC.
    TimePart {
        part: TimePart,
        time: Box<Expr>,
        zone: Option<Zone>,
    },
    /// `regexp_extract(text, 'pattern', group)`: the text of capture `group` (0: the whole
    /// match) of the first match, or null when nothing matches or the group took no part.
    Extract {
        text: Box<Expr>,
        pattern: Pattern,
        group: usize,
    },
    /// `format_time(time, 'format', 'zone')`: the local time formatted with strftime codes; no
    /// zone means UTC.
    FormatTime {
        time: Box<Expr>,
        format: TimeFormat,
        zone: Option<Zone>,
    },
}

/// A field reference: the path as the user wrote it, and where its value comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Field {
    pub path: FieldPath,
    pub acc: Accessor,
}

impl Field {
    /// An unbound reference (`Accessor::Payload`).
    pub fn new(path: FieldPath) -> Field {
        Field {
            acc: Accessor::Payload(path.clone()),
            path,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnaryOp {
    Not,
    Neg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinaryOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl BinaryOp {
    pub fn symbol(self) -> &'static str {
        use BinaryOp::*;
        match self {
            Or => "or",
            And => "and",
            Eq => "==",
            Ne => "!=",
            Lt => "<",
            Le => "<=",
            Gt => ">",
            Ge => ">=",
            Add => "+",
            Sub => "-",
            Mul => "*",
            Div => "/",
            Rem => "%",
        }
    }

    /// Binding power (see the table in the module docs).
    pub fn precedence(self) -> u8 {
        use BinaryOp::*;
        match self {
            Or => prec::OR,
            And => prec::AND,
            Eq | Ne | Lt | Le | Gt | Ge => prec::CMP,
            Add | Sub => prec::ADD,
            Mul | Div | Rem => prec::MUL,
        }
    }
}

/// Precedence levels, lowest first.
pub(crate) mod prec {
    pub const OR: u8 = 1;
    pub const AND: u8 = 2;
    pub const NOT: u8 = 3;
    pub const CMP: u8 = 4;
    pub const ADD: u8 = 5;
    pub const MUL: u8 = 6;
    pub const NEG: u8 = 7;
    pub const PRIMARY: u8 = 8;
}

impl Expr {
    /// An unbound field reference to `path`.
    pub fn field(path: FieldPath) -> Expr {
        Expr::Field(Field::new(path))
    }

    /// Binds every field reference with [`Accessor::bind`]: a one-step path naming the time or
    /// type field reads the event's time or type. Binding again with other names rebinds.
    pub fn bind(mut self, time_field: &str, type_field: &str) -> Expr {
        self.visit_fields_mut(&mut |f: &mut Field| {
            f.acc = Accessor::bind(f.path.clone(), time_field, type_field);
        });
        self
    }

    /// The distinct fields the expression reads, in order of first appearance.
    pub fn fields(&self) -> Vec<Accessor> {
        let mut out: Vec<Accessor> = Vec::new();
        self.visit(&mut |e| {
            if let Expr::Field(f) = e {
                if !out.contains(&f.acc) {
                    out.push(f.acc.clone());
                }
            }
        });
        out
    }

    /// Calls `f` on this expression and every subexpression, parents first.
    pub fn visit(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        for child in self.children() {
            child.visit(f);
        }
    }

    fn children(&self) -> Vec<&Expr> {
        match self {
            Expr::Literal(_) | Expr::Field(_) => vec![],
            Expr::List(items) | Expr::Call(_, items) => items.iter().collect(),
            Expr::Unary(_, e)
            | Expr::IsNull { expr: e, .. }
            | Expr::Matches(e, _)
            | Expr::Bucket(e, _)
            | Expr::TimePart { time: e, .. }
            | Expr::Extract { text: e, .. }
            | Expr::FormatTime { time: e, .. } => vec![e],
            Expr::Binary(_, l, r) => vec![l, r],
            Expr::In { expr, list, .. } => std::iter::once(&**expr).chain(list).collect(),
            Expr::Between { expr, low, high, .. } => vec![expr, low, high],
            Expr::Case { branches, otherwise } => {
                let branches = branches.iter().flat_map(|(c, r)| [c, r]);
                branches.chain(otherwise.as_deref()).collect()
            }
        }
    }

    fn visit_fields_mut(&mut self, f: &mut dyn FnMut(&mut Field)) {
        match self {
            Expr::Literal(_) => {}
            Expr::Field(field) => f(field),
            Expr::List(items) | Expr::Call(_, items) => items.iter_mut().for_each(|e| e.visit_fields_mut(f)),
            Expr::Unary(_, e)
            | Expr::IsNull { expr: e, .. }
            | Expr::Matches(e, _)
            | Expr::Bucket(e, _)
            | Expr::TimePart { time: e, .. }
            | Expr::Extract { text: e, .. }
            | Expr::FormatTime { time: e, .. } => e.visit_fields_mut(f),
            Expr::Binary(_, l, r) => {
                l.visit_fields_mut(f);
                r.visit_fields_mut(f);
            }
            Expr::In { expr, list, .. } => {
                expr.visit_fields_mut(f);
                list.iter_mut().for_each(|e| e.visit_fields_mut(f));
            }
            Expr::Between { expr, low, high, .. } => {
                for e in [expr, low, high] {
                    e.visit_fields_mut(f);
                }
            }
            Expr::Case { branches, otherwise } => {
                for (c, r) in branches {
                    c.visit_fields_mut(f);
                    r.visit_fields_mut(f);
                }
                if let Some(e) = otherwise {
                    e.visit_fields_mut(f);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_maps_time_and_type_and_keeps_names() {
        let e = parse("event_type == 'attempt' and ts > ts and user.id in [event_type.x]").unwrap();
        let bound = e.clone().bind("ts", "event_type");
        assert_eq!(bound.to_string(), e.to_string());
        let user_id = Accessor::Payload(FieldPath::parse("user.id").unwrap());
        let nested = Accessor::Payload(FieldPath::parse("event_type.x").unwrap());
        assert_eq!(
            bound.fields(),
            vec![Accessor::Type, Accessor::Time, user_id.clone(), nested.clone()]
        );
        let payload = |name: &str| Accessor::Payload(FieldPath::field(name));
        assert_eq!(
            e.fields(),
            vec![payload("event_type"), payload("ts"), user_id.clone(), nested]
        );
        // Rebinding under other names starts from the written paths.
        let rebound = bound.bind("time", "kind");
        assert_eq!(rebound.fields()[..2], [payload("event_type"), payload("ts")]);
        assert_eq!(parse("1 + 2").unwrap().fields(), vec![]);
        assert_eq!(parse("exists(a) or coalesce(a, b) == 1").unwrap().fields().len(), 2);
    }

    #[test]
    fn new_forms_visit_their_children() {
        let e = parse("case when a then b when c then d else hour_of_day(e) end == bucket(f, [1])").unwrap();
        let names: Vec<String> = e.fields().iter().map(|a| format!("{a:?}")).collect();
        assert_eq!(names.len(), 6, "{names:?}");
        let bound = e.bind("e", "a");
        assert_eq!(bound.fields()[0], Accessor::Type);
        assert_eq!(bound.fields()[4], Accessor::Time);
    }

    #[test]
    fn serde_round_trip() {
        let text = "matches(lower(name), '^a\\\\d') and ts between 1 and 2 or x not in [1.5, null] \
                    or case when day_of_week(ts, 'Europe/Paris') > 5 then bucket(y, [1, 2.5], ['a', 'b', 'c']) \
                    else bucket(y, [0]) end == hour_of_day(ts)";
        let e = parse(text).unwrap().bind("ts", "kind");
        let json = serde_json::to_string(&e).unwrap();
        let back: Expr = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.fields(), e.fields());
        let bad = json.replace("^a\\\\d", "(");
        assert!(serde_json::from_str::<Expr>(&bad).is_err(), "{bad}");
    }
}
