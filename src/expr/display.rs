//! `Display` for [`Expr`]: the canonical text, with parentheses only where precedence needs
//! them, that [`super::parse`] reads back to an equal expression.

use std::fmt;

use super::{lex, prec, Expr, UnaryOp};
use crate::event::{FieldPath, Step};
use crate::value::Value;

impl Expr {
    /// Binding power of the expression's outermost operator ([`prec::PRIMARY`] for atoms).
    fn precedence(&self) -> u8 {
        match self {
            Expr::Binary(op, ..) => op.precedence(),
            Expr::Unary(UnaryOp::Not, _) => prec::NOT,
            Expr::Unary(UnaryOp::Neg, _) => prec::NEG,
            Expr::In { .. } | Expr::Between { .. } | Expr::IsNull { .. } => prec::CMP,
            _ => prec::PRIMARY,
        }
    }
}

/// Writes `e`, parenthesised when it binds more loosely than `min`.
fn child(f: &mut fmt::Formatter<'_>, e: &Expr, min: u8) -> fmt::Result {
    if e.precedence() < min {
        write!(f, "({e})")
    } else {
        write!(f, "{e}")
    }
}

fn list(f: &mut fmt::Formatter<'_>, items: &[Expr]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Literal(v) => write_literal(f, v),
            Expr::List(items) => {
                f.write_str("[")?;
                list(f, items)?;
                f.write_str("]")
            }
            Expr::Field(field) => write_path(f, &field.path),
            Expr::Unary(UnaryOp::Not, e) => {
                f.write_str("not ")?;
                child(f, e, prec::NOT)
            }
            Expr::Unary(UnaryOp::Neg, e) => {
                f.write_str("-")?;
                // `-5` would parse back as the literal -5, so a negated literal keeps parens.
                match &**e {
                    Expr::Literal(Value::Int(_) | Value::Float(_)) => write!(f, "({e})"),
                    _ => child(f, e, prec::NEG),
                }
            }
            Expr::Binary(op, l, r) => {
                let p = op.precedence();
                // Comparisons do not associate, so both sides need a tighter operator.
                let left_min = if p == prec::CMP { p + 1 } else { p };
                child(f, l, left_min)?;
                write!(f, " {} ", op.symbol())?;
                child(f, r, p + 1)
            }
            Expr::In {
                expr,
                list: items,
                negated,
            } => {
                child(f, expr, prec::ADD)?;
                f.write_str(if *negated { " not in [" } else { " in [" })?;
                list(f, items)?;
                f.write_str("]")
            }
            Expr::Between {
                expr,
                low,
                high,
                negated,
            } => {
                child(f, expr, prec::ADD)?;
                f.write_str(if *negated { " not between " } else { " between " })?;
                child(f, low, prec::ADD)?;
                f.write_str(" and ")?;
                child(f, high, prec::ADD)
            }
            Expr::IsNull { expr, negated } => {
                child(f, expr, prec::ADD)?;
                f.write_str(if *negated { " is not null" } else { " is null" })
            }
            Expr::Call(func, args) => {
                write!(f, "{}(", func.name())?;
                list(f, args)?;
                f.write_str(")")
            }
            Expr::Matches(e, pattern) => {
                write!(f, "matches({e}, ")?;
                write_str_literal(f, pattern.as_str())?;
                f.write_str(")")
            }
            Expr::Case { branches, otherwise } => {
                f.write_str("case")?;
                for (condition, result) in branches {
                    write!(f, " when {condition} then {result}")?;
                }
                if let Some(e) = otherwise {
                    write!(f, " else {e}")?;
                }
                f.write_str(" end")
            }
            Expr::Bucket(x, buckets) => {
                write!(f, "bucket({x}, ")?;
                write_literal_list(f, buckets.edges())?;
                if let Some(labels) = buckets.labels() {
                    f.write_str(", ")?;
                    write_literal_list(f, labels)?;
                }
                f.write_str(")")
            }
            Expr::TimePart { part, time, zone } => {
                write!(f, "{}({time}", part.name())?;
                if let Some(zone) = zone {
                    f.write_str(", ")?;
                    write_str_literal(f, zone.as_str())?;
                }
                f.write_str(")")
            }
            Expr::Extract { text, pattern, group } => {
                write!(f, "regexp_extract({text}, ")?;
                write_str_literal(f, pattern.as_str())?;
                write!(f, ", {group})")
            }
            Expr::FormatTime { time, format, zone } => {
                write!(f, "format_time({time}, ")?;
                write_str_literal(f, format.as_str())?;
                if let Some(zone) = zone {
                    f.write_str(", ")?;
                    write_str_literal(f, zone.as_str())?;
                }
                f.write_str(")")
            }
        }
    }
}

fn write_literal(f: &mut fmt::Formatter<'_>, v: &Value) -> fmt::Result {
    match v {
        Value::Str(s) => write_str_literal(f, s),
        // `{:?}` is the shortest text that parses back to the same float, and always has a
        // `.` or an exponent, so it does not read back as an int.
        Value::Float(x) => write!(f, "{:?}", x.get()),
        Value::List(items) => write_literal_list(f, items),
        // Null, bools and ints print as JSON; timestamps and objects have no literal syntax.
        other => write!(f, "{other}"),
    }
}

fn write_literal_list(f: &mut fmt::Formatter<'_>, items: &[Value]) -> fmt::Result {
    f.write_str("[")?;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write_literal(f, item)?;
    }
    f.write_str("]")
}

fn write_str_literal(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("'")?;
    for c in s.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '\'' => f.write_str("\\'")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("'")
}

/// Writes a path so that it lexes back as the same path: names that are keywords or not plain
/// identifiers are backticked.
fn write_path(f: &mut fmt::Formatter<'_>, path: &FieldPath) -> fmt::Result {
    for (i, step) in path.steps.iter().enumerate() {
        match step {
            Step::Field(name) => {
                let name = name.as_str();
                if i > 0 {
                    f.write_str(".")?;
                }
                let plain = if i == 0 {
                    lex::is_plain_ident(name) && lex::keyword(name).is_none()
                } else {
                    !name.is_empty() && name.bytes().all(lex::is_ident_byte)
                };
                if plain {
                    f.write_str(name)?;
                } else {
                    write!(f, "`{name}`")?;
                }
            }
            Step::Index(n) => write!(f, "[{n}]")?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::{parse, BinaryOp, Buckets, Expr, Func, Pattern, TimeFormat, TimePart, UnaryOp, Zone};
    use crate::event::{FieldPath, Step};
    use crate::value::{Sym, Value};

    #[test]
    fn canonical_form() {
        let cases = [
            ("a+b*c", "a + b * c"),
            ("(a+b)*c", "(a + b) * c"),
            ("a-(b-c)", "a - (b - c)"),
            ("a-b-c", "a - b - c"),
            ("a - -5", "a - -5"),
            ("-(5)", "-(5)"),
            ("- 5", "-5"),
            ("-(-5)", "-(-5)"),
            ("--a", "--a"),
            ("-(a*b)", "-(a * b)"),
            ("not a and b", "not a and b"),
            ("not (a and b)", "not (a and b)"),
            ("not (not a)", "not not a"),
            ("a or b and c", "a or b and c"),
            ("(a or b) and c", "(a or b) and c"),
            ("a and (b and c)", "a and (b and c)"),
            ("(a == b) == c", "(a == b) == c"),
            ("a == (not b)", "a == (not b)"),
            ("(not a) == b", "(not a) == b"),
            ("a IN [1,2]", "a in [1, 2]"),
            ("a Not In [1]", "a not in [1]"),
            ("a not between 1+1 and 3", "a not between 1 + 1 and 3"),
            ("a between (b and c) and d", "a between (b and c) and d"),
            ("(a between 1 and 2) = true", "(a between 1 and 2) == true"),
            ("1 + (a in [1])", "1 + (a in [1])"),
            ("x+1 is not null", "x + 1 is not null"),
            ("not x is null", "not x is null"),
            ("`and`.b == `odd name`", "`and`.b == `odd name`"),
            ("a.`b c`[0].d", "a.`b c`[0].d"),
            ("a.and.`1x`", "a.and.1x"),
            ("`user-agent`", "`user-agent`"),
            ("`lower`(x)", "lower"),
            ("\"say \\\"hi\\\"\"", "'say \"hi\"'"),
            ("'tab\\there'", "'tab\\there'"),
            ("1e3 + 1.5e-7 + 2E2", "1000.0 + 1.5e-7 + 200.0"),
            ("LOWER(x) <> Null", "lower(x) != null"),
            ("matches(x, 'a\\\\d+')", "matches(x, 'a\\\\d+')"),
            ("coalesce(a, [1, 'x'], false)", "coalesce(a, [1, 'x'], false)"),
            ("CASE When a Then 1 ELSE 2 End", "case when a then 1 else 2 end"),
            (
                "case when a or b then x+1 when not c then -x end",
                "case when a or b then x + 1 when not c then -x end",
            ),
            ("case when a then 1 end * 2", "case when a then 1 end * 2"),
            ("-case when a then 1 end", "-case when a then 1 end"),
            (
                "case when case when a then b end then (case when c then d else e end) end",
                "case when case when a then b end then case when c then d else e end end",
            ),
            ("`end` == `CASE`.`when`", "`end` == `CASE`.when"),
            ("order.END", "order.END"),
            (
                "Bucket(x,[1,2.5e1],['a',\"b\",null])",
                "bucket(x, [1, 25.0], ['a', 'b', null])",
            ),
            ("bucket(x - 1, [-5, 1e-3])", "bucket(x - 1, [-5, 0.001])"),
            ("Hour_Of_Day(ts)", "hour_of_day(ts)"),
            (
                "day_of_week(ts + 1, \"Europe/Paris\")",
                "day_of_week(ts + 1, 'Europe/Paris')",
            ),
        ];
        for (text, want) in cases {
            let Ok(expr) = parse(text) else {
                // `lower` in backticks is a field, so the call parenthesis is left over.
                assert_eq!(want, "lower", "{text}");
                continue;
            };
            assert_eq!(expr.to_string(), want, "{text}");
            assert_eq!(parse(want), Ok(expr), "{want}");
        }
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z_$][a-z0-9_]{0,5}",
            Just("and".to_string()),
            Just("NULL".to_string()),
            Just("End".to_string()),
            Just("when".to_string()),
            Just("lower".to_string()),
            Just("user-agent".to_string()),
            Just("1x".to_string()),
            Just(String::new()),
            "[^`]{0,4}",
        ]
    }

    fn path() -> impl Strategy<Value = FieldPath> {
        // `Err(i)` stands for an index step (`Step` itself is not `Debug`).
        let step = prop_oneof![name().prop_map(Ok), (0usize..20).prop_map(Err)];
        (name(), prop::collection::vec(step, 0..3)).prop_map(|(first, rest)| {
            let mut steps = vec![Step::Field(Sym::new(&first))];
            steps.extend(rest.into_iter().map(|s| match s {
                Ok(name) => Step::Field(Sym::new(&name)),
                Err(i) => Step::Index(i),
            }));
            FieldPath {
                steps,
                hint: Default::default(),
            }
        })
    }

    fn literal() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            prop::num::f64::NORMAL.prop_map(Value::float),
            Just(Value::float(0.0)),
            any::<String>().prop_map(|s| Value::str(&s)),
        ]
    }

    /// Edges in strictly ascending order (ints, and floats a quarter above an int), and
    /// optionally as many labels as buckets.
    fn buckets() -> impl Strategy<Value = Buckets> {
        let edges = prop::collection::btree_set(-1000i64..1000, 1..5);
        (edges, prop::collection::vec(any::<bool>(), 5), any::<bool>(), literal()).prop_map(
            |(edges, float, labelled, label)| {
                let edges: Vec<Value> = edges
                    .into_iter()
                    .zip(float)
                    .map(|(e, f)| {
                        if f {
                            Value::float(e as f64 + 0.25)
                        } else {
                            Value::Int(e)
                        }
                    })
                    .collect();
                let labels = labelled.then(|| {
                    let mut labels: Vec<Value> = (0..edges.len() as i64).map(Value::Int).collect();
                    labels.push(label);
                    labels
                });
                Buckets::new(edges, labels).unwrap()
            },
        )
    }

    fn zone() -> impl Strategy<Value = Option<Zone>> {
        let names = vec!["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Etc/GMT+5"];
        prop::option::of(prop::sample::select(names).prop_map(|n| Zone::new(n).unwrap()))
    }

    const OPS: [BinaryOp; 13] = {
        use BinaryOp::*;
        [Or, And, Eq, Ne, Lt, Le, Gt, Ge, Add, Sub, Mul, Div, Rem]
    };

    fn expr() -> impl Strategy<Value = Expr> {
        let leaf = prop_oneof![literal().prop_map(Expr::Literal), path().prop_map(Expr::field)];
        leaf.prop_recursive(5, 48, 3, |inner| {
            let boxed = || inner.clone().prop_map(Box::new);
            let list = || prop::collection::vec(inner.clone(), 0..3);
            prop_oneof![
                list().prop_map(Expr::List),
                (prop::sample::select(vec![UnaryOp::Not, UnaryOp::Neg]), boxed())
                    .prop_map(|(op, e)| Expr::Unary(op, e)),
                (prop::sample::select(OPS.to_vec()), boxed(), boxed()).prop_map(|(op, l, r)| Expr::Binary(op, l, r)),
                (boxed(), list(), any::<bool>()).prop_map(|(expr, list, negated)| Expr::In { expr, list, negated }),
                (boxed(), boxed(), boxed(), any::<bool>()).prop_map(|(expr, low, high, negated)| Expr::Between {
                    expr,
                    low,
                    high,
                    negated
                }),
                (boxed(), any::<bool>()).prop_map(|(expr, negated)| Expr::IsNull { expr, negated }),
                (prop::sample::select(Func::ALL.map(|(_, f)| f).to_vec()), list(), path()).prop_map(
                    |(f, mut args, p)| {
                        let (min, max) = f.arity();
                        while args.len() < min {
                            args.push(Expr::Literal(Value::Int(1)));
                        }
                        args.truncate(max.unwrap_or(usize::MAX));
                        if f == Func::Exists {
                            args[0] = Expr::field(p);
                        }
                        Expr::Call(f, args)
                    }
                ),
                (
                    boxed(),
                    prop::sample::select(vec!["a", "^x.*$", "\\d+", "it's", "[\\\\']"])
                )
                    .prop_map(|(e, p)| Expr::Matches(e, Pattern::new(p).unwrap())),
                (
                    prop::collection::vec((inner.clone(), inner.clone()), 1..3),
                    prop::option::of(boxed())
                )
                    .prop_map(|(branches, otherwise)| Expr::Case { branches, otherwise }),
                (boxed(), buckets()).prop_map(|(x, b)| Expr::Bucket(x, b)),
                (
                    prop::sample::select(TimePart::ALL.map(|(_, p)| p).to_vec()),
                    boxed(),
                    zone()
                )
                    .prop_map(|(part, time, zone)| Expr::TimePart { part, time, zone }),
                (
                    boxed(),
                    prop::sample::select(vec!["a(b)?", "^x(.*)$", "(\\d+)-(\\d+)", "it's"]),
                    0usize..2
                )
                    .prop_map(|(text, p, group)| Expr::Extract {
                        text,
                        pattern: Pattern::new(p).unwrap(),
                        group: group.min(Pattern::new(p).unwrap().regex.captures_len() - 1),
                    }),
                (
                    boxed(),
                    prop::sample::select(vec!["%H:%M", "%Y-%m-%d", "it's %A", "%%"]),
                    zone()
                )
                    .prop_map(|(time, f, zone)| Expr::FormatTime {
                        time,
                        format: TimeFormat::new(f).unwrap(),
                        zone
                    }),
            ]
        })
    }

    /// Text that is mostly near-valid: tokens, keywords and broken pieces.
    fn soup() -> impl Strategy<Value = String> {
        let word = prop_oneof![
            "[a-z]{1,3}",
            "[0-9]{1,3}(\\.[0-9])?",
            Just("and ".to_string()),
            Just("not ".to_string()),
            Just(" in ".to_string()),
            Just(" between ".to_string()),
            Just(" is null".to_string()),
            Just("lower(".to_string()),
            Just("matches(".to_string()),
            Just("case when ".to_string()),
            Just(" then ".to_string()),
            Just(" else ".to_string()),
            Just(" end".to_string()),
            Just("bucket(".to_string()),
            Just("hour_of_day(".to_string()),
            "[ ()\\[\\],.'\"`=<>!+*/%\\\\é-]",
        ];
        prop::collection::vec(word, 0..12).prop_map(|w| w.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn parse_never_panics(text in soup()) {
            if let Ok(e) = parse(&text) {
                prop_assert_eq!(parse(&e.to_string()), Ok(e));
            }
        }

        #[test]
        fn display_round_trips(e in expr()) {
            let text = e.to_string();
            prop_assert_eq!(parse(&text).map_err(|err| err.to_string()), Ok(e), "{}", text);
        }
    }
}
