//! Comparison and arithmetic on evaluated values (see the semantics in [`super`]'s docs).

use std::cmp::Ordering;

use super::eval::{fail, view, EvalError, Res, Val, V};
use super::BinaryOp;

pub(super) use crate::value::cmp_int_float;

pub(super) fn cmp_floats(x: f64, y: f64) -> Ordering {
    x.partial_cmp(&y).unwrap_or_else(|| x.is_nan().cmp(&y.is_nan()))
}

/// `==`: null when either side is null, otherwise [`same`].
#[inline(always)]
pub(super) fn equal(a: V, b: V) -> Option<bool> {
    match (a, b) {
        (V::Null, _) | (_, V::Null) => None,
        _ => Some(same(a, b)),
    }
}

/// Structural equality: numbers numerically, other kinds only with their own kind.
pub(super) fn same(a: V, b: V) -> bool {
    match (a, b) {
        (V::Null, V::Null) => true,
        (V::Bool(x), V::Bool(y)) => x == y,
        (V::Int(x), V::Int(y)) | (V::Time(x), V::Time(y)) => x == y,
        (V::Int(i), V::Float(f)) | (V::Float(f), V::Int(i)) => cmp_int_float(i, f).is_eq(),
        (V::Float(x), V::Float(y)) => cmp_floats(x, y).is_eq(),
        (V::Str(x), V::Str(y)) => x == y,
        (V::List(x), V::List(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(view(p), view(q))),
        (V::Object(x), V::Object(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((k, p), (l, q))| k == l && same(view(p), view(q)))
        }
        _ => false,
    }
}

/// The order of two values: null when either is null, an error when they are incomparable.
#[inline(always)]
pub(super) fn order(a: V, b: V, op: &str) -> Res<Option<Ordering>> {
    Ok(Some(match (a, b) {
        (V::Null, _) | (_, V::Null) => return Ok(None),
        (V::Int(x), V::Int(y)) | (V::Time(x), V::Time(y)) => x.cmp(&y),
        (V::Int(i), V::Float(f)) => cmp_int_float(i, f),
        (V::Float(f), V::Int(i)) => cmp_int_float(i, f).reverse(),
        (V::Float(x), V::Float(y)) => cmp_floats(x, y),
        (V::Str(x), V::Str(y)) => x.cmp(y),
        (V::Bool(x), V::Bool(y)) => x.cmp(&y),
        _ => return fail(format!("cannot compare {} with {} (`{op}`)", a.kind(), b.kind())),
    }))
}

pub(super) fn negate(v: V) -> Res<Val<'static>> {
    match v {
        V::Null => Ok(Val::Null),
        V::Int(i) => i.checked_neg().map(Val::Int).ok_or_else(|| overflow(format!("-({i})"))),
        V::Float(f) => Ok(Val::Float(-f)),
        other => fail(format!("cannot negate a {}", other.kind())),
    }
}

#[cold]
pub(super) fn overflow(what: String) -> Box<EvalError> {
    Box::new(EvalError {
        message: format!("integer overflow in {what}"),
    })
}

pub(super) fn as_f64(v: V) -> Option<f64> {
    match v {
        V::Int(i) => Some(i as f64),
        V::Float(f) => Some(f),
        _ => None,
    }
}

pub(super) fn arith(op: BinaryOp, a: V, b: V) -> Res<Val<'static>> {
    use BinaryOp::*;
    let checked = |r: Option<i64>, x: i64, y: i64| r.ok_or_else(|| overflow(format!("{x} {} {y}", op.symbol())));
    Ok(match (op, a, b) {
        (_, V::Null, _) | (_, _, V::Null) => Val::Null,
        (Div, _, _) => match (as_f64(a), as_f64(b)) {
            (Some(_), Some(0.0)) => Val::Null,
            (Some(x), Some(y)) => Val::Float(x / y),
            _ => return mismatch(op, a, b),
        },
        (Rem, V::Int(_), V::Int(0)) => Val::Null,
        (Rem, V::Int(_), V::Int(-1)) => Val::Int(0),
        (_, V::Int(x), V::Int(y)) => Val::Int(checked(
            match op {
                Add => x.checked_add(y),
                Sub => x.checked_sub(y),
                Mul => x.checked_mul(y),
                _ => Some(x % y),
            },
            x,
            y,
        )?),
        (Sub, V::Time(x), V::Time(y)) => Val::Int(checked(x.checked_sub(y), x, y)?),
        (Add, V::Time(t), V::Int(d)) | (Add, V::Int(d), V::Time(t)) => Val::Time(checked(t.checked_add(d), t, d)?),
        (Sub, V::Time(t), V::Int(d)) => Val::Time(checked(t.checked_sub(d), t, d)?),
        _ => match (as_f64(a), as_f64(b)) {
            (Some(_), Some(y)) if op == Rem && y == 0.0 => Val::Null,
            (Some(x), Some(y)) => Val::Float(match op {
                Add => x + y,
                Sub => x - y,
                Mul => x * y,
                _ => x % y,
            }),
            _ => return mismatch(op, a, b),
        },
    })
}

pub(super) fn mismatch<T>(op: BinaryOp, a: V, b: V) -> Res<T> {
    fail(format!(
        "cannot apply `{}` to {} and {}",
        op.symbol(),
        a.kind(),
        b.kind()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::eval::tests::check;
    use std::cmp::Ordering::*;

    #[test]
    fn arithmetic() {
        check(&[
            ("i + 1", "8"),
            ("i - 10", "-3"),
            ("i * 2", "14"),
            ("i / 2", "3.5"),
            ("6 / 3", "2.0"),
            ("i % 4", "3"),
            ("-7 % 4", "-3"),
            ("7 % -4", "3"),
            ("i % 0", "null"),
            ("i / 0", "null"),
            ("f / 0.0", "null"),
            ("f % 0", "null"),
            ("f + 1", "3.5"),
            ("1 + f", "3.5"),
            ("f * 2", "5.0"),
            ("5.5 % 2", "1.5"),
            ("2 + 3 * 4", "14"),
            ("(2 + 3) * 4", "20"),
            ("10 - 4 - 3", "3"),
            ("-i", "-7"),
            ("-f", "-2.5"),
            ("- -i", "7"),
            ("max + 1", "error: integer overflow"),
            ("min - 1", "error: integer overflow"),
            ("max * 2", "error: integer overflow"),
            ("-min", "error: integer overflow"),
            ("min % -1", "0"),
            ("min / -1", "9223372036854775808.0"),
            ("n + 1", "null"),
            ("1 - missing", "null"),
            ("-n", "null"),
            ("n / 0", "null"),
            ("ts + 1000 - ts", "1000"),
            ("1000 + ts - ts", "1000"),
            ("ts - 1000 < ts", "true"),
            ("ts + 0.5", "error: cannot apply `+` to timestamp and float"),
            ("ts * 2", "error: cannot apply `*` to timestamp and int"),
            ("b + 1", "error: cannot apply `+` to bool and int"),
            ("s + 's'", "error: cannot apply `+` to string and string"),
            ("l * 2", "error: cannot apply"),
            ("-s", "error: cannot negate a string"),
        ]);
    }

    #[test]
    fn comparisons() {
        check(&[
            ("i == 7", "true"),
            ("i = 7.0", "true"),
            ("i != 7", "false"),
            ("i <> 8", "true"),
            ("i < 7.5", "true"),
            ("7.5 > i", "true"),
            ("i <= 7", "true"),
            ("i >= 7.000001", "false"),
            ("big == 9007199254740992.0", "false"),
            ("big > 9007199254740992.0", "true"),
            ("9007199254740992 == 9007199254740992.0", "true"),
            ("max < 9223372036854775807.0", "true"),
            ("min == -9223372036854775808.0", "true"),
            ("min > -1e300", "true"),
            ("s == 'Hello'", "true"),
            ("s < 'Help'", "true"),
            ("'B' < 'a'", "true"),
            ("e == ''", "true"),
            ("b == true", "true"),
            ("false < true", "true"),
            ("s == 1", "false"),
            ("s != 1", "true"),
            ("b == 1", "false"),
            ("l == [1, 2, 'x']", "true"),
            ("o == o", "true"),
            ("ln == [1, null]", "true"),
            ("ts >= ts", "true"),
            ("event_type == 'attempt'", "true"),
            ("event_type < 'b'", "true"),
            ("n == n", "null"),
            ("n != 1", "null"),
            ("i < n", "null"),
            ("missing == null", "null"),
            ("s < 1", "error: cannot compare string with int (`<`)"),
            ("b > 0", "error: cannot compare bool with int"),
            ("l < l", "error: cannot compare list with list"),
            ("ts > 0", "error: cannot compare timestamp with int"),
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
            ("s between 1 and 2", "error: cannot compare string with int (`between`)"),
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
    fn int_float_comparison_is_exact() {
        let two53 = 9_007_199_254_740_992i64;
        let cases = [
            (0, 0.0, Equal),
            (0, -0.0, Equal),
            (3, 3.5, Less),
            (-3, -3.5, Greater),
            (4, 3.5, Greater),
            (two53 + 1, two53 as f64, Greater),
            (two53, two53 as f64, Equal),
            (i64::MAX, i64::MAX as f64, Less),
            (i64::MIN, i64::MIN as f64, Equal),
            (i64::MIN, -1e300, Greater),
            (i64::MAX, f64::INFINITY, Less),
            (i64::MIN, f64::NEG_INFINITY, Greater),
            (i64::MAX, f64::NAN, Less),
        ];
        for (i, f, want) in cases {
            assert_eq!(cmp_int_float(i, f), want, "{i} vs {f}");
        }
        assert_eq!(cmp_floats(f64::NAN, f64::INFINITY), Greater);
        assert_eq!(cmp_floats(f64::NAN, f64::NAN), Equal);
        assert_eq!(cmp_floats(-0.0, 0.0), Equal);
    }
}
