//! Top-N per partition (`[[top_n]]`). Oracles:
//! - over an aggregate's rows (`final`, and `updates`, which retract): at every time, the top
//!   recomputed from scratch from the aggregate's rows accumulated to that time, and at the end
//!   from the raw events;
//! - over a source's events (insert-only, unwindowed partitions): at every time, from the
//!   events up to that time;
//! - identical updates with 1, 2 and 4 workers; ties broken as documented;
//! - Nexmark q5 (the hottest auctions per sliding window) against DuckDB SQL;
//! - spec errors: unknown fields with a hint, `n = 0`, no `order_by`, a cycle through a top-N.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use proptest::prelude::*;
use sluice::run::Updates;
use sluice::value::Value;

use crate::util::{accumulate, payload_field as field, plan_text, run_collect};

const WINDOW: i64 = 600_000;

/// Bids (time, auction, price), in time order.
fn bids() -> impl Strategy<Value = Vec<(i64, i64, i64)>> {
    prop::collection::vec((0i64..3_600_000, 0i64..6, 1i64..20), 1..150).prop_map(|mut e| {
        e.sort();
        e
    })
}

fn write(dir: &std::path::Path, bids: &[(i64, i64, i64)]) {
    let mut f = std::fs::File::create(dir.join("bids.ndjson")).unwrap();
    for (t, a, p) in bids {
        writeln!(f, r#"{{"ts":{t},"type":"bid","auction":{a},"price":{p}}}"#).unwrap();
    }
}

fn head(dir: &std::path::Path) -> String {
    format!(
        r#"
[pipeline]
name = "top"
tick = "1s"
[sources.bids]
path = "{dir}/bids.ndjson"
time_field = "ts"
type_field = "type"
allowed_lateness = "2h"
"#,
        dir = dir.display()
    )
}

/// Bids per auction per 10-minute window, and the `n` auctions with the most bids per window.
fn windowed_spec(dir: &std::path::Path, emit: &str, n: u64, with_ties: bool) -> String {
    format!(
        r#"{head}
[[top_n]]
name = "hottest"
source = "per_auction"
partition_by = ["window_start", "window_end"]
order_by = ["bids desc"]
n = {n}
with_ties = {with_ties}
rank = "rank"

[[aggregates]]
name = "per_auction"
source = "bids"
window = {{ tumbling = "10m" }}
group_by = ["auction"]
emit = "{emit}"
measures.bids = "count()"
measures.top = "max(price)"
"#,
        head = head(dir)
    )
}

/// The payload fields `names` of an output row (its last value), as integers.
fn ints<const N: usize>(row: &[Value], names: [&str; N]) -> [i64; N] {
    names.map(|n| int(&field(&row[row.len() - 1], n)))
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::Time(t) => *t,
        other => panic!("not an int: {other:?}"),
    }
}

/// The top per window from `(window_start, auction, bids)` rows: most bids first, ties by
/// auction (the first remaining column by name). Rows are `(start, auction, bids, rank)`.
fn top_of(rows: &[(i64, i64, i64)], n: i64, with_ties: bool) -> BTreeSet<(i64, i64, i64, i64)> {
    let mut by_window: BTreeMap<i64, Vec<(i64, i64)>> = BTreeMap::new();
    for (start, auction, count) in rows {
        by_window.entry(*start).or_default().push((-count, *auction));
    }
    let mut out = BTreeSet::new();
    for (start, mut rows) in by_window {
        rows.sort();
        for (place, (neg, auction)) in rows.iter().enumerate() {
            let rank = if with_ties {
                1 + rows.iter().filter(|(c, _)| c < neg).count() as i64
            } else {
                place as i64 + 1
            };
            if rank <= n {
                out.insert((start, *auction, -neg, rank));
            }
        }
    }
    out
}

/// The top's rows accumulated to `t`, as `(start, auction, bids, rank)`; each once.
fn top_rows(updates: &Updates, t: u64) -> Result<BTreeSet<(i64, i64, i64, i64)>, TestCaseError> {
    let acc = accumulate(updates, t);
    prop_assert!(acc.values().all(|d| *d == 1), "multiplicities at {}: {:?}", t, acc);
    Ok(acc
        .keys()
        .map(|row| {
            let p = &row[row.len() - 1];
            let start = int(&field(p, "window_start"));
            assert_eq!(int(&row[0]), start + WINDOW - 1, "a row keeps its input's time");
            (
                start,
                int(&field(p, "auction")),
                int(&field(p, "bids")),
                int(&field(p, "rank")),
            )
        })
        .collect())
}

fn check_windowed(bids: Vec<(i64, i64, i64)>, emit: &str, n: u64, with_ties: bool) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &bids);
    let plan = plan_text(&windowed_spec(dir.path(), emit, n, with_ties), dir.path());
    let mut counts: BTreeMap<(i64, i64), i64> = BTreeMap::new();
    for (t, a, _) in &bids {
        *counts.entry((t - t.rem_euclid(WINDOW), *a)).or_default() += 1;
    }
    let raw: Vec<(i64, i64, i64)> = counts.into_iter().map(|((s, a), c)| (s, a, c)).collect();
    let expected_end = top_of(&raw, n as i64, with_ties);
    let mut first: Option<Updates> = None;
    for workers in [1, 2, 4] {
        let summary = run_collect(&plan, workers);
        let mut updates = summary.collected["hottest"].clone();
        updates.sort();
        let upstream = &summary.collected["per_auction"];
        let times: BTreeSet<u64> = updates.iter().chain(upstream).map(|u| u.1).collect();
        for t in times {
            let rows: Vec<(i64, i64, i64)> = accumulate(upstream, t)
                .keys()
                .map(|r| (int(&r[1]), int(&r[0]), int(&r[3])))
                .collect();
            prop_assert_eq!(top_rows(&updates, t)?, top_of(&rows, n as i64, with_ties), "at {}", t);
        }
        prop_assert_eq!(
            top_rows(&updates, u64::MAX / 4)?,
            expected_end.clone(),
            "{} workers",
            workers
        );
        prop_assert_eq!(
            summary.dead_letters.values().sum::<i64>(),
            0,
            "{:?}",
            summary.dead_letters
        );
        match &first {
            None => first = Some(updates),
            Some(f) => prop_assert_eq!(f, &updates, "{} workers differ from 1", workers),
        }
    }
    Ok(())
}

/// A top of bids accumulated to `t`: `(auction, price, time)` with multiplicities.
fn best_rows(updates: &Updates, t: u64) -> BTreeMap<(i64, i64, i64), isize> {
    let mut got = BTreeMap::new();
    for (row, d) in accumulate(updates, t) {
        let [auction, price] = ints(&row, ["auction", "price"]);
        *got.entry((auction, price, int(&row[0]))).or_default() += d;
    }
    got
}

/// The two highest-priced bids per auction over all time (price desc, then time): from the
/// source's events, an insert-only input with partitions that never close.
fn check_events(bids: Vec<(i64, i64, i64)>, with_ties: bool) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &bids);
    let spec = format!(
        r#"{head}
[[top_n]]
name = "best"
source = "bids"
partition_by = ["auction"]
order_by = ["price desc"]
n = 2
with_ties = {with_ties}
"#,
        head = head(dir.path())
    );
    let plan = plan_text(&spec, dir.path());
    let oracle = |t: u64| -> BTreeMap<(i64, i64, i64), isize> {
        let mut per: BTreeMap<i64, Vec<(i64, i64)>> = BTreeMap::new();
        for (time, a, p) in &bids {
            if (time - time % 1000) as u64 <= t {
                per.entry(*a).or_default().push((-p, *time));
            }
        }
        let mut out = BTreeMap::new();
        for (a, mut rows) in per {
            rows.sort();
            for (place, (neg, time)) in rows.iter().enumerate() {
                let keep = if with_ties {
                    rows.iter().filter(|(c, _)| c < neg).count() < 2
                } else {
                    place < 2
                };
                if keep {
                    *out.entry((a, -neg, *time)).or_default() += 1;
                }
            }
        }
        out
    };
    let mut first: Option<Updates> = None;
    for workers in [1, 2, 4] {
        let summary = run_collect(&plan, workers);
        let mut updates = summary.collected["best"].clone();
        updates.sort();
        let times: BTreeSet<u64> = bids.iter().map(|(t, _, _)| (t - t % 1000) as u64).collect();
        for t in times {
            prop_assert_eq!(best_rows(&updates, t), oracle(t), "at {} with {} workers", t, workers);
        }
        match &first {
            None => first = Some(updates),
            Some(f) => prop_assert_eq!(f, &updates, "{} workers differ from 1", workers),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Over final windows: each window's top once, insert-only.
    #[test]
    fn top_n_of_final_windows_matches_the_oracle(bids in bids(), n in 1u64..4, ties in any::<bool>()) {
        check_windowed(bids, "final", n, ties)?;
    }

    /// Over windows revised as bids arrive (`updates`): the top follows every revision,
    /// retracting displaced rows.
    #[test]
    fn top_n_of_revised_windows_matches_the_oracle_at_every_time(bids in bids(), n in 1u64..4, ties in any::<bool>()) {
        check_windowed(bids, "updates", n, ties)?;
    }

    /// Over a source's events, partitioned by auction.
    #[test]
    fn top_n_of_events_matches_the_oracle_at_every_time(bids in bids(), ties in any::<bool>()) {
        check_events(bids, ties)?;
    }
}

#[test]
fn ties_are_broken_by_the_documented_rule() {
    // Window [0, 10m): auctions 3, 1 and 2 have two bids each, auction 0 one.
    let bids = [
        (1_000, 3, 5),
        (2_000, 1, 5),
        (3_000, 2, 5),
        (4_000, 3, 5),
        (5_000, 1, 5),
        (6_000, 2, 5),
        (7_000, 0, 9),
    ];
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &bids);
    for (n, ties, expected) in [
        // Equal counts: the remaining columns by name, `auction` first, smallest first.
        (1, false, vec![(1, 2, 1)]),
        (2, false, vec![(1, 2, 1), (2, 2, 2)]),
        (1, true, vec![(1, 2, 1), (2, 2, 1), (3, 2, 1)]),
        (4, true, vec![(0, 1, 4), (1, 2, 1), (2, 2, 1), (3, 2, 1)]),
    ] {
        let plan = plan_text(&windowed_spec(dir.path(), "final", n, ties), dir.path());
        for workers in [1, 2] {
            let summary = run_collect(&plan, workers);
            let got: Vec<(i64, i64, i64)> = accumulate(&summary.collected["hottest"], u64::MAX / 4)
                .keys()
                .map(|row| {
                    let [auction, bids, rank] = ints(row, ["auction", "bids", "rank"]);
                    (auction, bids, rank)
                })
                .collect();
            assert_eq!(got, expected, "n = {n}, with_ties = {ties}, {workers} workers");
        }
    }
    // Equal prices over events: the earlier bid first.
    let text = format!(
        "{}\n[[top_n]]\nname = \"first_best\"\nsource = \"bids\"\norder_by = [\"price desc\"]\nn = 1\n",
        head(dir.path())
    );
    let summary = run_collect(&plan_text(&text, dir.path()), 1);
    let end = accumulate(&summary.collected["first_best"], u64::MAX / 4);
    let times: Vec<i64> = end.keys().map(|r| int(&r[0])).collect();
    assert_eq!(times, [7_000]);
    let text = text.replace("price desc", "price");
    let summary = run_collect(&plan_text(&text, dir.path()), 1);
    let end = accumulate(&summary.collected["first_best"], u64::MAX / 4);
    let times: Vec<i64> = end.keys().map(|r| int(&r[0])).collect();
    assert_eq!(times, [1_000], "equal prices: the earliest bid");
}

/// Spec errors name the key at fault and say what would be valid.
#[test]
fn top_n_specs_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[(0, 1, 1)]);
    let good = windowed_spec(dir.path(), "final", 1, false);
    let error = |text: &str| -> String {
        let path = dir.path().join("t.toml");
        std::fs::write(&path, text).unwrap();
        sluice::source::plan_file(&path, &[]).unwrap_err().to_string()
    };
    sluice::source::plan_file(
        &{
            let p = dir.path().join("ok.toml");
            std::fs::write(&p, &good).unwrap();
            p
        },
        &[],
    )
    .unwrap();
    // (replace, by, what the error says)
    let cases: [(&str, &str, &[&str]); 9] = [
        (
            "\"bids desc\"",
            "\"bidz desc\"",
            &[
                "`top_n[0].order_by[0]`",
                "no field `bidz` in output `per_auction`",
                "did you mean `bids`?",
            ],
        ),
        (
            "[\"window_start\", \"window_end\"]",
            "[\"window_strat\"]",
            &["`top_n[0].partition_by[0]`", "did you mean `window_start`?"],
        ),
        ("n = 1", "n = 0", &["`top_n[0].n`", "at least 1"]),
        (
            "order_by = [\"bids desc\"]\n",
            "",
            &["`top_n[0].order_by`", "needs an `order_by`"],
        ),
        (
            "\"bids desc\"",
            "\"bids downward\"",
            &["`top_n[0].order_by[0]`", "unknown direction `downward`"],
        ),
        (
            "rank = \"rank\"",
            "rank = \"top\"",
            &["`top_n[0].rank`", "already have a column `top`"],
        ),
        (
            "source = \"per_auction\"",
            "source = \"per_auktion\"",
            &["no source or output named `per_auktion`", "`per_auction`"],
        ),
        // A cycle through the top-N: the aggregate reads the top-N, which reads the aggregate.
        (
            "source = \"bids\"\nwindow",
            "source = \"hottest\"\nwindow",
            &["cycle", "`per_auction` reads `hottest` reads `per_auction`"],
        ),
        (
            "name = \"hottest\"",
            "name = \"per_auction\"",
            &["`top_n[0].name`", "already used"],
        ),
    ];
    for (from, to, says) in cases {
        assert!(good.contains(from), "{from}");
        let e = error(&good.replace(from, to));
        assert!(says.iter().all(|s| e.contains(s)), "{from} → {to}: {e}");
    }
}

/// A top-N's rows are events for later stages: an aggregate of the winners per hour.
#[test]
fn stages_read_a_top_n_and_windowed_tops_over_final_rows_are_insert_only() {
    let dir = tempfile::tempdir().unwrap();
    let bids: Vec<(i64, i64, i64)> = (0..400).map(|i| (i * 9_000, (i * 7) % 5, i % 13)).collect();
    write(dir.path(), &bids);
    let text = format!(
        "{}\n[[aggregates]]\nname = \"wins\"\nsource = \"hottest\"\nwindow = {{ tumbling = \"1h\" }}\ngroup_by = [\"auction\"]\nemit = \"final\"\nmeasures.windows = \"count()\"\n",
        windowed_spec(dir.path(), "final", 1, false)
    );
    let plan = plan_text(&text, dir.path());
    let output = plan.output("hottest").unwrap();
    assert!(!output.changelog, "one top per closed window: insert-only");
    let wins = plan.aggregates().find(|a| a.name == "wins").unwrap();
    assert!(wins.monotonic);
    let updates_plan = plan_text(
        &text.replace("emit = \"final\"\nmeasures.bids", "emit = \"updates\"\nmeasures.bids"),
        dir.path(),
    );
    assert!(
        updates_plan.output("hottest").unwrap().changelog,
        "over revised rows, a changelog"
    );
    let summary = run_collect(&plan, 2);
    let mut from_top: BTreeMap<(i64, i64), i64> = BTreeMap::new();
    for (row, d) in accumulate(&summary.collected["hottest"], u64::MAX / 4) {
        let p = &row[row.len() - 1];
        let start = int(&field(p, "window_start"));
        *from_top
            .entry((start - start % 3_600_000, int(&field(p, "auction"))))
            .or_default() += d as i64;
    }
    let mut got: BTreeMap<(i64, i64), i64> = BTreeMap::new();
    for (row, d) in accumulate(&summary.collected["wins"], u64::MAX / 4) {
        assert_eq!(d, 1);
        got.insert((int(&row[1]), int(&row[0])), int(&row[3]));
    }
    assert_eq!(got, from_top);
    assert_eq!(
        from_top.values().sum::<i64>(),
        6,
        "one winner per 10-minute window of the hour"
    );
}

/// Nexmark q5, the hottest auctions: bids per auction per sliding window (1 s every 200 ms),
/// then per window every auction with the most bids (`n = 1, with_ties = true`, as q5's
/// `num >= max(num)`), over `sluice generate nexmark` data, against DuckDB SQL.
#[test]
fn nexmark_q5_hottest_auctions_equal_duckdb() {
    let dir = tempfile::tempdir().unwrap();
    let bid = crate::duckdb::nexmark_bids(dir.path());
    let spec = format!(
        r#"
[pipeline]
name = "q5"
tick = "100ms"
[sources.bid]
path = "{bid}"
time_field = "date_time"

[[aggregates]]
name = "bids_per_auction"
source = "bid"
window = {{ size = "1s", slide = "200ms" }}
group_by = ["auction"]
emit = "final"
measures.num = "count()"

[[top_n]]
name = "hottest"
source = "bids_per_auction"
partition_by = ["window_start"]
order_by = ["num desc"]
n = 1
with_ties = true
"#,
        bid = bid.display()
    );
    let plan = plan_text(&spec, dir.path());
    let sql = format!(
        "with b as (select auction, epoch_ms(date_time) as t from read_parquet('{bid}')), \
         w as (select auction, (t - t % 200) - k * 200 as ws from b, range(0, 5) r(k)), \
         c as (select ws, auction, count(*) as n from w group by all), \
         m as (select ws, max(n) as mx from c group by ws) \
         select ws, auction, n from c join m using (ws) where n = mx order by all",
        bid = bid.display()
    );
    let expected: BTreeSet<(i64, i64, i64)> = crate::duckdb::int_rows(&sql)
        .into_iter()
        .map(|v| (v[0], v[1], v[2]))
        .collect();
    assert!(expected.len() > 40, "{} windows' winners", expected.len());
    let mut first = None;
    for workers in [1, 2, 4] {
        let summary = run_collect(&plan, workers);
        let end = accumulate(&summary.collected["hottest"], u64::MAX / 4);
        assert!(end.values().all(|d| *d == 1));
        assert!(
            summary.collected["hottest"].iter().all(|u| u.2 > 0),
            "one top per closed window: no retractions"
        );
        let got: BTreeSet<(i64, i64, i64)> = end
            .keys()
            .map(|row| {
                let [start, auction, num] = ints(row, ["window_start", "auction", "num"]);
                (start, auction, num)
            })
            .collect();
        assert_eq!(got, expected, "{workers} workers");
        match &first {
            None => first = Some(got),
            Some(f) => assert_eq!(f, &got),
        }
    }
}

/// Bids (time, bidder, auction, price) with distinct times, in time order.
fn bidder_bids() -> impl Strategy<Value = Vec<(i64, i64, i64, i64)>> {
    prop::collection::btree_set(0i64..1_800_000, 1..120).prop_flat_map(|times| {
        let n = times.len();
        (
            Just(times.into_iter().collect::<Vec<_>>()),
            prop::collection::vec((0i64..5, 0i64..3, 1i64..10), n),
        )
            .prop_map(|(times, rest)| times.into_iter().zip(rest).map(|(t, (b, a, p))| (t, b, a, p)).collect())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Over the latest bid per bidder (`keep = "last"`, a retracting input): when a bidder's
    /// newer bid retracts a top row, the next row moves up. At every time, against the top of
    /// the from-scratch latest bids.
    #[test]
    fn top_n_over_retracting_events_promotes_the_next_row(bids in bidder_bids(), ties in any::<bool>()) {
        const TTL: i64 = 300_000;
        let dir = tempfile::tempdir().unwrap();
        let mut f = std::fs::File::create(dir.path().join("bids.ndjson")).unwrap();
        for (t, b, a, p) in &bids {
            writeln!(f, r#"{{"ts":{t},"type":"bid","bidder":{b},"auction":{a},"price":{p}}}"#).unwrap();
        }
        drop(f);
        let spec = format!(
            "{head}\n[dedup.bids.bid]\nkey = [\"bidder\"]\nttl = \"5m\"\nkeep = \"last\"\n\
             [[top_n]]\nname = \"best\"\nsource = \"bids\"\npartition_by = [\"auction\"]\norder_by = [\"price desc\"]\nn = 2\nwith_ties = {ties}\n",
            head = head(dir.path())
        );
        let plan = plan_text(&spec, dir.path());
        let oracle = |until: u64| -> BTreeMap<(i64, i64, i64), isize> {
            // The latest bid of each bidder's run of bids less than the TTL apart.
            let mut held: BTreeMap<i64, (i64, i64, i64)> = BTreeMap::new();
            let mut kept: BTreeSet<(i64, i64, i64)> = BTreeSet::new();
            for (t, b, a, p) in &bids {
                if (t - t % 1000) as u64 > until {
                    continue;
                }
                if let Some(last) = held.get(b) {
                    if *t < last.0 + TTL {
                        kept.remove(last);
                    }
                }
                held.insert(*b, (*t, *a, *p));
                kept.insert((*t, *a, *p));
            }
            let mut per: BTreeMap<i64, Vec<(i64, i64)>> = BTreeMap::new();
            for (t, a, p) in kept {
                per.entry(a).or_default().push((-p, t));
            }
            let mut out = BTreeMap::new();
            for (a, mut rows) in per {
                rows.sort();
                for (place, (neg, t)) in rows.iter().enumerate() {
                    let keep = if ties { rows.iter().filter(|(c, _)| c < neg).count() < 2 } else { place < 2 };
                    if keep {
                        out.insert((a, -neg, *t), 1);
                    }
                }
            }
            out
        };
        let mut first: Option<Updates> = None;
        for workers in [1, 2, 4] {
            let summary = run_collect(&plan, workers);
            let mut updates = summary.collected["best"].clone();
            updates.sort();
            let times: BTreeSet<u64> = bids.iter().map(|b| (b.0 - b.0 % 1000) as u64).collect();
            for t in times {
                prop_assert_eq!(best_rows(&updates, t), oracle(t), "at {} with {} workers", t, workers);
            }
            match &first {
                None => first = Some(updates),
                Some(f) => prop_assert_eq!(f, &updates, "{} workers differ from 1", workers),
            }
        }
    }
}

/// A top-N over rows whose partition's rows arrive at different times holds the partition and
/// revises it, as a changelog. Taking it for one window's rows (partitioned by a window column,
/// with the aggregates' time field) made the output insert-only, and the first displaced row
/// failed the run ("received a retraction but is not a changelog"): sessions that start
/// together and end apart, and a join's pairs of an aggregate's rows.
#[test]
fn partitions_whose_rows_arrive_apart_are_revised_not_released() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(dir.path().join("ev.ndjson")).unwrap();
    for (ts, u) in [(1000, "a"), (1000, "b"), (2000, "b"), (3000, "b"), (20_000, "c")] {
        writeln!(f, "{{\"ts\":{ts},\"u\":\"{u}\"}}").unwrap();
    }
    let base = "[pipeline]\nname = \"t\"\n[sources.ev]\npath = \"ev.ndjson\"\ntime_field = \"ts\"\n";
    let sessions = format!(
        "{base}[[aggregates]]\nname = \"sess\"\nsource = \"ev\"\nwindow = {{ session = \"5s\" }}\n\
         group_by = [\"u\"]\nemit = \"final\"\nmeasures.n = \"count()\"\n\
         [[top_n]]\nname = \"longest\"\nsource = \"sess\"\npartition_by = [\"PART\"]\norder_by = [\"n desc\"]\nn = 1\n"
    );
    // By start: `a` ([1s, 6s), one event) leads its partition until `b` ([1s, 8s), three) ends.
    let plan = plan_text(&sessions.replace("PART", "window_start"), dir.path());
    assert!(plan.output("longest").unwrap().changelog);
    for workers in [1, 2, 4] {
        let summary = run_collect(&plan, workers);
        let updates = &summary.collected["longest"];
        let at = |t: u64| -> BTreeSet<(String, i64)> {
            (accumulate(updates, t).into_iter())
                .map(|(row, d)| {
                    assert_eq!(d, 1);
                    let p = &row[row.len() - 1];
                    (field(p, "u").to_string(), int(&field(p, "n")))
                })
                .collect()
        };
        assert_eq!(at(7_000), BTreeSet::from([("a".to_string(), 1)]), "{workers} workers");
        let end = BTreeSet::from([("b".to_string(), 3), ("c".to_string(), 1)]);
        assert_eq!(at(u64::MAX / 4), end, "{workers} workers");
    }
    // By end, a session's row is its partition's only time: released, insert-only.
    let plan = plan_text(&sessions.replace("PART", "window_end"), dir.path());
    assert!(!plan.output("longest").unwrap().changelog);
    // A window join's pairs of an aggregate's rows carry the window's time field, but a pair
    // arrives when its later side does.
    let joined = format!(
        "{base}[[aggregates]]\nname = \"per_user\"\nsource = \"ev\"\nwindow = {{ tumbling = \"2s\" }}\n\
         group_by = [\"u\"]\nemit = \"final\"\nmeasures.n = \"count()\"\n\
         [[joins]]\nname = \"pairs\"\nleft = \"per_user\"\nright = \"ev\"\non = {{ u = \"u\" }}\n\
         window = {{ tumbling = \"10s\" }}\nleft_fields = [\"u\", \"n\"]\nright_prefix = \"r_\"\n\
         [[top_n]]\nname = \"best\"\nsource = \"pairs\"\npartition_by = [\"window_start\"]\norder_by = [\"n desc\"]\nn = 1\n"
    );
    let plan = plan_text(&joined, dir.path());
    assert!(plan.output("best").unwrap().changelog);
    let one = run_collect(&plan, 1).collected["best"].clone();
    for workers in [2, 4] {
        assert_eq!(
            accumulate(&run_collect(&plan, workers).collected["best"], u64::MAX / 4),
            accumulate(&one, u64::MAX / 4)
        );
    }
}
