//! `bucket(x, [e1, ..., en], [l0, ..., ln])`: which of the ranges cut by ascending edges a
//! number falls in. With `i` the number of edges `<= x`, the result is label `i`, or `i` itself
//! when there are no labels:
//!
//! ```text
//!        l0     |     l1     |  ...  |     ln
//!   ------------e1-----------e2 ... en------------> x
//! ```

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use super::eval::{fail, view, Res, Val, V};
use super::func::arity_error;
use super::ops::{cmp_floats, cmp_int_float};
use super::Expr;
use crate::value::Value;

/// Edges (int or float constants, strictly ascending) and optional labels (scalar constants,
/// one more than the edges). Deserializing checks the same rules as parsing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Unchecked")]
pub struct Buckets {
    edges: Vec<Value>,
    labels: Option<Vec<Value>>,
}

#[derive(Deserialize)]
struct Unchecked {
    edges: Vec<Value>,
    labels: Option<Vec<Value>>,
}

impl TryFrom<Unchecked> for Buckets {
    type Error = String;
    fn try_from(u: Unchecked) -> Result<Buckets, String> {
        Buckets::new(u.edges, u.labels).map_err(|(_, message)| message)
    }
}

const EDGES: &str = "the edges of `bucket` must be a list of numbers, e.g. [10, 100]";
const LABELS: &str = "the labels of `bucket` must be a list of constants, e.g. ['low', 'mid', 'high']";

/// Orders two numbers exactly (see [`super::ops`]); other kinds do not occur here.
fn cmp_numbers(a: V, b: V) -> Ordering {
    match (a, b) {
        (V::Int(x), V::Int(y)) => x.cmp(&y),
        (V::Int(i), V::Float(f)) => cmp_int_float(i, f),
        (V::Float(f), V::Int(i)) => cmp_int_float(i, f).reverse(),
        (V::Float(x), V::Float(y)) => cmp_floats(x, y),
        _ => Ordering::Equal,
    }
}

impl Buckets {
    /// Checks edges and labels. An error names the argument at fault (1 for the edges, 2 for
    /// the labels) and why.
    pub fn new(edges: Vec<Value>, labels: Option<Vec<Value>>) -> Result<Buckets, (usize, String)> {
        let finite = |v: &Value| match v {
            Value::Int(_) => true,
            Value::Float(f) => f.get().is_finite(),
            _ => false,
        };
        if !edges.iter().all(finite) {
            return Err((1, EDGES.into()));
        }
        if edges.is_empty() {
            return Err((1, "`bucket` needs at least one edge, e.g. [10, 100]".into()));
        }
        if let Some(pair) = edges.windows(2).find(|p| cmp_numbers(view(&p[0]), view(&p[1])).is_ge()) {
            let (a, b) = (Expr::Literal(pair[0].clone()), Expr::Literal(pair[1].clone()));
            return Err((
                1,
                format!("the edges of `bucket` must be strictly ascending: {b} does not come after {a}"),
            ));
        }
        if let Some(labels) = &labels {
            let scalar = |v: &Value| {
                matches!(
                    v,
                    Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Str(_)
                )
            };
            if !labels.iter().all(scalar) {
                return Err((2, LABELS.into()));
            }
            let n = edges.len();
            if labels.len() != n + 1 {
                let s = if n == 1 { "" } else { "s" };
                let message = format!(
                    "`bucket` with {n} edge{s} needs {} labels, found {}",
                    n + 1,
                    labels.len()
                );
                return Err((2, message));
            }
        }
        Ok(Buckets { edges, labels })
    }

    pub fn edges(&self) -> &[Value] {
        &self.edges
    }

    pub fn labels(&self) -> Option<&[Value]> {
        self.labels.as_deref()
    }

    /// The bucket of `x`: its label, or its index when there are no labels.
    pub(super) fn eval(&self, x: V) -> Res<Val<'_>> {
        match x {
            V::Null => Ok(Val::Null),
            V::Int(_) | V::Float(_) => {
                let i = self.edges.partition_point(|e| cmp_numbers(view(e), x).is_le());
                Ok(match &self.labels {
                    Some(labels) => labels.get(i).map_or(Val::Null, Val::Ref),
                    None => Val::Int(i as i64),
                })
            }
            other => fail(format!("bucket() needs a number, found {}", other.kind())),
        }
    }
}

/// Checks a call of `bucket` and builds it (see [`super::func::build_call`]).
pub(super) fn build(mut args: Vec<Expr>) -> Result<Expr, (Option<usize>, String)> {
    if !(2..=3).contains(&args.len()) {
        return Err(arity_error(
            "bucket",
            "2 or 3 arguments (x, [edges], [labels])",
            args.len(),
        ));
    }
    let constants = |e: &Expr, message: &str| match e {
        Expr::List(items) => items
            .iter()
            .map(|item| match item {
                Expr::Literal(v) => Ok(v.clone()),
                _ => Err(message.to_string()),
            })
            .collect(),
        _ => Err(message.to_string()),
    };
    let edges = constants(&args[1], EDGES).map_err(|m| (Some(1), m))?;
    let labels = match args.get(2) {
        Some(e) => Some(constants(e, LABELS).map_err(|m| (Some(2), m))?),
        None => None,
    };
    let buckets = Buckets::new(edges, labels).map_err(|(arg, m)| (Some(arg), m))?;
    args.truncate(1);
    Ok(Expr::Bucket(Box::new(args.swap_remove(0)), buckets))
}

#[cfg(test)]
mod tests {
    use crate::expr::eval::tests::check;
    use crate::expr::parse;
    use crate::expr::parse::tests::check_errors;
    use crate::expr::Expr;

    #[test]
    fn bucket_labels_and_indexes() {
        check(&[
            ("bucket(i, [5, 10], ['low', 'mid', 'high'])", "'mid'"),
            ("bucket(4, [5, 10], ['low', 'mid', 'high'])", "'low'"),
            ("bucket(5, [5, 10], ['low', 'mid', 'high'])", "'mid'"),
            ("bucket(9.99, [5, 10], ['low', 'mid', 'high'])", "'mid'"),
            ("bucket(10, [5, 10], ['low', 'mid', 'high'])", "'high'"),
            ("bucket(1e9, [5, 10], ['low', 'mid', 'high'])", "'high'"),
            ("bucket(neg, [-3, 0.5], [1, 2.5, null])", "2.5"),
            ("bucket(-3.5, [-3, 0.5], [1, 2.5, null])", "1"),
            ("bucket(1, [-3, 0.5], [1, 2.5, null])", "null"),
            ("bucket(f, [2.5], [false, true])", "true"),
            ("BUCKET(f, [2, 3])", "1"),
            ("bucket(i, [1, 2, 3])", "3"),
            ("bucket(0, [1, 2, 3])", "0"),
            ("bucket(min, [1])", "0"),
            ("bucket(max, [9223372036854775806, 9223372036854775807.0])", "1"),
            ("bucket(big, [9007199254740992.0])", "1"),
            ("bucket(i / 2, [3.5, 4])", "1"),
            ("bucket(i, [5, 10]) + 1", "2"),
            ("bucket(i, [5, 10], ['a', 'b', 'c']) == 'b'", "true"),
            ("bucket(n, [5, 10], ['low', 'mid', 'high'])", "null"),
            ("bucket(missing, [5])", "null"),
            ("bucket(s, [5, 10])", "error: bucket() needs a number, found string"),
            (
                "bucket(ts, [5, 10], ['a', 'b', 'c'])",
                "error: bucket() needs a number, found timestamp",
            ),
            ("bucket(b, [1])", "error: found bool"),
        ]);
    }

    #[test]
    fn buckets_are_checked_when_parsing() {
        check_errors(&[
            (
                "bucket(x)",
                1,
                "`bucket` takes 2 or 3 arguments (x, [edges], [labels]), found 1 argument",
            ),
            ("bucket(x, [1], [0, 1], 2)", 1, "found 4 arguments"),
            (
                "bucket(x, 1)",
                11,
                "the edges of `bucket` must be a list of numbers, e.g. [10, 100]",
            ),
            (
                "bucket(x, [1, y])",
                11,
                "the edges of `bucket` must be a list of numbers",
            ),
            (
                "bucket(x, [1, '2'])",
                11,
                "the edges of `bucket` must be a list of numbers",
            ),
            (
                "bucket(x, [1, 1 + 1])",
                11,
                "the edges of `bucket` must be a list of numbers",
            ),
            (
                "bucket(x, [null])",
                11,
                "the edges of `bucket` must be a list of numbers",
            ),
            ("bucket(x, [])", 11, "`bucket` needs at least one edge"),
            ("bucket(x,[1, 3, 2])", 10, "strictly ascending: 2 does not come after 3"),
            (
                "bucket(x, [1, 1.0])",
                11,
                "strictly ascending: 1.0 does not come after 1",
            ),
            (
                "bucket(x, [-1.5, -2])",
                11,
                "strictly ascending: -2 does not come after -1.5",
            ),
            (
                "bucket(x, [1, 2], labels)",
                19,
                "the labels of `bucket` must be a list of constants",
            ),
            (
                "bucket(x, [1, 2], ['a', b, 'c'])",
                19,
                "the labels of `bucket` must be a list of constants",
            ),
            (
                "bucket(x, [1], [[1], 2])",
                16,
                "the labels of `bucket` must be a list of constants",
            ),
            (
                "bucket(x, [1, 2], ['a', 'b'])",
                19,
                "`bucket` with 2 edges needs 3 labels, found 2",
            ),
            ("bucket(x, [1], [])", 16, "`bucket` with 1 edge needs 2 labels, found 0"),
            (
                "a or bucket(x, [1], [1, 2, 3])",
                21,
                "`bucket` with 1 edge needs 2 labels, found 3",
            ),
        ]);
    }

    #[test]
    fn buckets_deserialize_only_when_valid() {
        let e = parse("bucket(x, [1, 2.5], ['a', 'b', null])").unwrap();
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<Expr>(&json).unwrap(), e);
        let Expr::Bucket(_, buckets) = &e else { panic!("{e:?}") };
        assert_eq!(buckets.edges().len(), 2);
        assert_eq!(buckets.labels().map(<[_]>::len), Some(3));
        let swapped = json.replace("2.5", "0.5");
        assert_ne!(swapped, json);
        let err = serde_json::from_str::<Expr>(&swapped).unwrap_err().to_string();
        assert!(err.contains("strictly ascending"), "{err}");
        let short = json.replace(",\"Null\"", "");
        assert_ne!(short, json);
        assert!(serde_json::from_str::<Expr>(&short).is_err(), "{short}");
    }
}
