//! Joins of two inputs (`[[joins]]`). Oracles, each with 1, 2 and 4 workers:
//! - changelog equi-joins (inner and left, with and without `where`): at every time, the
//!   output accumulated to it equals the join recomputed from scratch from both sides' rows
//!   up to that time;
//! - interval joins (`after`, and `until` a left column) and window joins (tumbling and
//!   sliding), inner and left: the exact updates, each pair at the time of its later row and
//!   each unmatched left row once, when the watermark passes its bound; insert-only;
//! - a later aggregate over a changelog join reads it as retracting;
//! - spec errors: unknown fields and inputs with a hint, name clashes, cycles, bad kinds and
//!   bounds, a timed join over a retracting input.

use std::collections::BTreeMap;
use std::io::Write;

use proptest::prelude::*;
use sluice::run::Updates;
use sluice::value::Value;

use crate::util::{accumulate, payload_field as field, plan_text, run_collect};

const TICK: i64 = 1_000;

/// Rows `(time, key, value)`.
type Rows = Vec<(i64, i64, i64)>;

/// Rows `(time, key, value)`, in time order.
fn rows() -> impl Strategy<Value = Vec<(i64, i64, i64)>> {
    prop::collection::vec((0i64..120_000, 0i64..4, 0i64..5), 0..40).prop_map(|mut e| {
        e.sort();
        e
    })
}

/// Left rows carry `u`, a time `extra` ms after their own (an interval's `until`).
fn write(dir: &std::path::Path, left: &[(i64, i64, i64)], right: &[(i64, i64, i64)]) {
    let mut f = std::fs::File::create(dir.join("left.ndjson")).unwrap();
    for (t, k, a) in left {
        let u = t + (a * 7_000);
        writeln!(f, r#"{{"ts":{t},"type":"l","k":{k},"a":{a},"u":{u}}}"#).unwrap();
    }
    // A file with no rows has no schema: a placeholder row no key matches, far ahead.
    if left.is_empty() {
        writeln!(f, r#"{{"ts":500000,"type":"l","k":-1,"a":0,"u":500000}}"#).unwrap();
    }
    let mut f = std::fs::File::create(dir.join("right.ndjson")).unwrap();
    for (t, k, b) in right {
        writeln!(f, r#"{{"rt":{t},"rtype":"r","k":{k},"b":{b}}}"#).unwrap();
    }
    if right.is_empty() {
        writeln!(f, r#"{{"rt":500000,"rtype":"r","k":-2,"b":0}}"#).unwrap();
    }
}

fn with_placeholders(left: &[(i64, i64, i64)], right: &[(i64, i64, i64)]) -> (Rows, Rows) {
    let l = if left.is_empty() {
        vec![(500_000, -1, 0)]
    } else {
        left.to_vec()
    };
    let r = if right.is_empty() {
        vec![(500_000, -2, 0)]
    } else {
        right.to_vec()
    };
    (l, r)
}

fn spec(dir: &std::path::Path, join: &str) -> String {
    format!(
        r#"
[pipeline]
name = "joins"
tick = "1s"
[sources.left]
path = "{dir}/left.ndjson"
time_field = "ts"
type_field = "type"
allowed_lateness = "1h"
[sources.right]
path = "{dir}/right.ndjson"
time_field = "rt"
type_field = "rtype"
allowed_lateness = "1h"

[[joins]]
name = "j"
left = "left"
right = "right"
on = {{ k = "k" }}
{join}
"#,
        dir = dir.display()
    )
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::Time(t) => Some(*t),
        Value::Null => None,
        other => panic!("not an int: {other:?}"),
    }
}

/// A joined row: left time, key, `a`, then the right's `b` and time (absent when unmatched),
/// and the window's start.
type Joined = (i64, i64, i64, Option<i64>, Option<i64>, Option<i64>);

fn joined(row: &[Value]) -> Joined {
    let p = &row[row.len() - 1];
    let get = |n: &str| int(&field(p, n));
    (
        int(&row[0]).unwrap(),
        get("k").unwrap(),
        get("a").unwrap(),
        get("b"),
        get("rt"),
        get("window_start"),
    )
}

fn tick(t: i64) -> i64 {
    t - t.rem_euclid(TICK)
}

/// `where = "a != b"`: the pair passes.
fn passes(filter: bool, a: i64, b: i64) -> bool {
    !filter || a != b
}

/// The changelog join of the rows with ticks up to `t`.
fn changelog_oracle(
    left: &[(i64, i64, i64)],
    right: &[(i64, i64, i64)],
    outer: bool,
    filter: bool,
    t: i64,
) -> BTreeMap<Joined, isize> {
    let mut out = BTreeMap::new();
    for &(lt, k, a) in left.iter().filter(|r| tick(r.0) <= t) {
        let mut matched = false;
        for &(rt, _, b) in right.iter().filter(|r| tick(r.0) <= t && r.1 == k) {
            if passes(filter, a, b) {
                matched = true;
                *out.entry((lt, k, a, Some(b), Some(rt), None)).or_default() += 1;
            }
        }
        if outer && !matched {
            *out.entry((lt, k, a, None, None, None)).or_default() += 1;
        }
    }
    out
}

fn at(updates: &Updates, t: u64) -> BTreeMap<Joined, isize> {
    let mut out = BTreeMap::new();
    for (row, d) in accumulate(updates, t) {
        *out.entry(joined(&row)).or_default() += d;
    }
    out
}

fn check_changelog(
    left: Vec<(i64, i64, i64)>,
    right: Vec<(i64, i64, i64)>,
    outer: bool,
    filter: bool,
) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &left, &right);
    let (left, right) = with_placeholders(&left, &right);
    let mut join = String::new();
    if outer {
        join.push_str("kind = \"left\"\n");
    }
    if filter {
        join.push_str("where = \"a != b\"\n");
    }
    let plan = plan_text(&spec(dir.path(), &join), dir.path());
    prop_assert!(plan.output("j").unwrap().changelog);
    let mut first: Option<Updates> = None;
    for workers in [1, 2, 4] {
        let summary = run_collect(&plan, workers);
        let mut updates = summary.collected["j"].clone();
        updates.sort();
        let mut times: Vec<i64> = left.iter().chain(&right).map(|r| tick(r.0)).collect();
        times.dedup();
        for t in times {
            prop_assert_eq!(
                at(&updates, t as u64),
                changelog_oracle(&left, &right, outer, filter, t),
                "at {}",
                t
            );
        }
        prop_assert_eq!(summary.dead_letters.values().sum::<i64>(), 0);
        match &first {
            None => first = Some(updates),
            Some(f) => prop_assert_eq!(f, &updates, "{} workers differ from 1", workers),
        }
    }
    Ok(())
}

/// The time condition of a timed join, for the oracle.
#[derive(Clone, Copy, Debug)]
enum Timed {
    /// `interval = { before, after }`
    After(i64, i64),
    /// `interval = { before, until = "u" }` (`u = ts + a * 7s`)
    Until(i64),
    /// `window = { size, slide }`
    Window(i64, i64),
}

impl Timed {
    fn spec(self) -> String {
        match self {
            Timed::After(b, a) => format!("interval = {{ before = \"{b}ms\", after = \"{a}ms\" }}"),
            Timed::Until(b) => format!("interval = {{ before = \"{b}ms\", until = \"u\" }}"),
            Timed::Window(size, slide) => format!("window = {{ size = \"{size}ms\", slide = \"{slide}ms\" }}"),
        }
    }

    /// The windows (starts) a row at `t` is in; one `None` for intervals.
    fn windows(self, t: i64) -> Vec<Option<i64>> {
        match self {
            Timed::Window(size, slide) => {
                let last = t.div_euclid(slide) * slide;
                (0..size / slide)
                    .map(|i| last - i * slide)
                    .filter(|s| s + size > t)
                    .map(Some)
                    .collect()
            }
            _ => vec![None],
        }
    }
}

/// The exact updates of a timed join: each pair at its later row's tick, each unmatched left
/// row (per window) at `max(bound + 1, its tick)` (both sources have lag 0).
fn timed_oracle(
    left: &[(i64, i64, i64)],
    right: &[(i64, i64, i64)],
    timed: Timed,
    outer: bool,
    filter: bool,
) -> BTreeMap<(Joined, u64), isize> {
    let mut out = BTreeMap::new();
    for &(lt, k, a) in left {
        for w in timed.windows(lt) {
            let bound = match (timed, w) {
                (Timed::After(_, after), _) => lt + after,
                (Timed::Until(_), _) => lt + a * 7_000,
                (Timed::Window(size, _), Some(s)) => s + size - 1,
                _ => unreachable!(),
            };
            let mut matched = false;
            for &(rt, _, b) in right.iter().filter(|r| r.1 == k) {
                let pairs = match timed {
                    Timed::After(before, _) | Timed::Until(before) => rt >= lt - before && rt <= bound,
                    Timed::Window(..) => timed.windows(rt).contains(&w),
                };
                if pairs && passes(filter, a, b) {
                    matched = true;
                    let time = tick(lt).max(tick(rt)) as u64;
                    *out.entry(((lt, k, a, Some(b), Some(rt), w), time)).or_default() += 1;
                }
            }
            if outer && !matched {
                let time = (bound + 1).max(tick(lt)) as u64;
                *out.entry(((lt, k, a, None, None, w), time)).or_default() += 1;
            }
        }
    }
    out
}

fn check_timed(
    left: Vec<(i64, i64, i64)>,
    right: Vec<(i64, i64, i64)>,
    timed: Timed,
    outer: bool,
    filter: bool,
) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &left, &right);
    let (left, right) = with_placeholders(&left, &right);
    let mut join = timed.spec() + "\n";
    if outer {
        join.push_str("kind = \"left\"\n");
    }
    if filter {
        join.push_str("where = \"a != b\"\n");
    }
    let plan = plan_text(&spec(dir.path(), &join), dir.path());
    prop_assert!(
        !plan.output("j").unwrap().changelog,
        "insert-only over insert-only inputs"
    );
    let expected = timed_oracle(&left, &right, timed, outer, filter);
    for workers in [1, 2, 4] {
        let summary = run_collect(&plan, workers);
        let mut got: BTreeMap<(Joined, u64), isize> = BTreeMap::new();
        for (row, t, d) in &summary.collected["j"] {
            prop_assert!(*d > 0, "insert-only: {:?}", row);
            *got.entry((joined(row), *t)).or_default() += d;
        }
        prop_assert_eq!(&got, &expected, "{} workers, {:?}", workers, timed);
        prop_assert_eq!(summary.dead_letters.values().sum::<i64>(), 0);
    }
    Ok(())
}

fn timed() -> impl Strategy<Value = Timed> {
    prop_oneof![
        (0i64..3, 0i64..4).prop_map(|(b, a)| Timed::After(b * 1_500, a * 2_500)),
        (0i64..3).prop_map(|b| Timed::Until(b * 1_500)),
        (1i64..4, 1i64..3).prop_map(|(n, s)| Timed::Window(n * s * 5_000, s * 5_000)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn changelog_joins_match_the_oracle_at_every_time(
        left in rows(), right in rows(), outer in any::<bool>(), filter in any::<bool>()
    ) {
        check_changelog(left, right, outer, filter)?;
    }

    #[test]
    fn interval_and_window_joins_match_the_oracle_exactly(
        left in rows(), right in rows(), timed in timed(), outer in any::<bool>(), filter in any::<bool>()
    ) {
        check_timed(left, right, timed, outer, filter)?;
    }
}

/// A changelog join's rows are retracting for later stages: an aggregate over it keeps value
/// multisets and revises closed windows for `retain_after_close`.
#[test]
fn an_aggregate_over_a_changelog_join_reads_retractions() {
    let dir = tempfile::tempdir().unwrap();
    // The right row of key 1 comes after the left row's window has closed.
    write(
        dir.path(),
        &[(1_000, 1, 2), (2_000, 2, 3)],
        &[(3_000, 2, 1), (70_000, 1, 4)],
    );
    let text = spec(dir.path(), "kind = \"left\"\n")
        + r#"
[[aggregates]]
name = "per_minute"
source = "j"
window = { tumbling = "1m" }
emit = "final"
retain_after_close = "1m"
measures.n = "count()"
measures.top = "max(b)"
"#;
    let plan = plan_text(&text, dir.path());
    let agg = plan.aggregates().find(|a| a.name == "per_minute").unwrap();
    assert!(!agg.monotonic, "a changelog join retracts");
    for workers in [1, 2] {
        let summary = run_collect(&plan, workers);
        let end = accumulate(&summary.collected["per_minute"], u64::MAX / 4);
        // [0, 1m): two rows; the left row of key 1 is revised from unmatched to matched.
        let rows: Vec<(Option<i64>, Option<i64>)> = end.keys().map(|r| (int(&r[2]), int(&r[3]))).collect();
        assert_eq!(rows, [(Some(2), Some(4))], "{workers} workers");
    }
    assert!(
        plan_text(&text.replace("retain_after_close = \"1m\"\n", ""), dir.path())
            .aggregates()
            .all(|a| !a.monotonic)
    );
}

/// Spec errors name the key at fault and say what would be valid.
#[test]
fn join_specs_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[(0, 1, 1)], &[(0, 1, 1)]);
    let good = spec(dir.path(), "interval = { before = \"1s\", after = \"2s\" }\nwhere = \"a != b\"\n")
        + "\n[[aggregates]]\nname = \"agg\"\nsource = \"j\"\nwindow = { tumbling = \"1m\" }\nmeasures.n = \"count()\"\n";
    let error = |text: &str| -> String {
        let path = dir.path().join("t.toml");
        std::fs::write(&path, text).unwrap();
        sluice::source::plan_file(&path, &[]).unwrap_err().to_string()
    };
    let ok = dir.path().join("ok.toml");
    std::fs::write(&ok, &good).unwrap();
    sluice::source::plan_file(&ok, &[]).unwrap();
    // (replace, by, what the error says)
    let cases: [(&str, &str, &[&str]); 11] = [
        (
            "on = { k = \"k\" }",
            "on = { k = \"kk\" }\nright_prefix = \"r_\"",
            &["`joins[0].on.k`", "no field `kk` in source `right`", "did you mean `k`?"],
        ),
        (
            "on = { k = \"k\" }",
            "on = { kay = \"k\" }\nright_prefix = \"r_\"",
            &["`joins[0].on.kay`", "no field `kay` in source `left`"],
        ),
        (
            "where = \"a != b\"",
            "where = \"a != bb\"",
            &["`joins[0].where`", "`bb`", "did you mean `b`?"],
        ),
        (
            "right = \"right\"",
            "right = \"rigth\"",
            &["`joins[0].right`", "no source or output named `rigth`", "`right`"],
        ),
        (
            "interval = { before = \"1s\", after = \"2s\" }",
            "interval = { before = \"1s\", after = \"2s\" }\nkind = \"outer\"",
            &["`joins[0].kind`", "unknown join kind `outer`", "\"left\""],
        ),
        (
            "interval = { before = \"1s\", after = \"2s\" }",
            "interval = { before = \"1s\" }",
            &["`joins[0].interval`", "`after = DURATION` or `until"],
        ),
        (
            "interval = { before = \"1s\", after = \"2s\" }",
            "interval = { after = \"2s\" }\nwindow = { tumbling = \"1m\" }",
            &["`joins[0].window`", "not both"],
        ),
        (
            "interval = { before = \"1s\", after = \"2s\" }",
            "interval = { until = \"uu\" }",
            &["`joins[0].interval.until`", "did you mean `u`?"],
        ),
        // The right's `k` is the left's (skipped, as `USING`); its `a` would clash.
        (
            "on = { k = \"k\" }",
            "on = { k = \"k\" }\nright_fields = [\"b as a\"]",
            &["`joins[0].right_fields`", "two columns `a`", "right_prefix"],
        ),
        // A cycle: the join reads the aggregate, which reads the join.
        (
            "left = \"left\"",
            "left = \"agg\"",
            &["cycle", "`agg` reads `j` reads `agg`"],
        ),
        // A timed join over a changelog join.
        (
            "name = \"agg\"\nsource = \"j\"\nwindow = { tumbling = \"1m\" }\nmeasures.n = \"count()\"\n",
            "name = \"agg\"\nsource = \"j\"\nwindow = { tumbling = \"1m\" }\nmeasures.n = \"count()\"\n[[joins]]\nname = \"j0\"\nleft = \"left\"\nright = \"right\"\non = { k = \"k\" }\nright_prefix = \"r_\"\n[[joins]]\nname = \"j2\"\nleft = \"j0\"\nright = \"right\"\non = { k = \"k\" }\nright_prefix = \"r_\"\nwindow = { tumbling = \"1m\" }\n",
            &["`joins[2].left`", "`j0` revises what it emitted", "insert-only"],
        ),
    ];
    for (from, to, says) in cases {
        assert!(good.contains(from), "{from}");
        let e = error(&good.replace(from, to));
        assert!(says.iter().all(|s| e.contains(s)), "{from} → {to}: {e}");
    }
    // Without a prefix, two sources' time fields named alike clash.
    let same_time = good.replace("time_field = \"rt\"", "time_field = \"ts\"");
    std::fs::write(
        dir.path().join("right.ndjson"),
        "{\"ts\":0,\"rtype\":\"r\",\"k\":1,\"b\":1}\n",
    )
    .unwrap();
    let e = error(&same_time);
    assert!(e.contains("two columns `ts`") && e.contains("`joins[0].right`"), "{e}");
    let prefixed = same_time
        .replace("on = { k = \"k\" }", "on = { k = \"k\" }\nright_prefix = \"r_\"")
        .replace("a != b", "a != r_b");
    let path = dir.path().join("p.toml");
    std::fs::write(&path, prefixed).unwrap();
    sluice::source::plan_file(&path, &[]).unwrap();
}
