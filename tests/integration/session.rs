//! Session windows (`window = { session = "10s" }`). Oracles, from scratch over the events that
//! are not late (lateness recomputed here from the log order):
//! - `final`: each session's row once, stamped at its `window_end`;
//! - `updates`: at every time, the changelog accumulated to it equals the sessions of the events
//!   up to that time (so consolidated at the end, the final sessions);
//! - identical updates with 1, 2 and 4 workers;
//! - spec errors: a zero gap, `session` with `tumbling` or `slide`, a retracting input.

use std::collections::BTreeMap;
use std::io::Write;

use proptest::prelude::*;
use sluice::run::Updates;
use sluice::value::Value;

use crate::util::{accumulate, plan_text, run_collect};

const GAP: i64 = 10_000;
const TICK: i64 = 1_000;
const LATENESS: i64 = 30_000;

/// Events `(time, user, price)` in log order: per user, steps around the gap, then the users'
/// events interleaved and locally shuffled (some arrive late, some bridge two sessions).
fn events() -> impl Strategy<Value = Vec<(i64, i64, i64)>> {
    // Steps of exactly the gap (a new session) and just under it (the same one) are the edges.
    let step = prop_oneof![8 => 0i64..2 * GAP + 5_000, 1 => Just(GAP), 1 => Just(GAP - 1)];
    let user = prop::collection::vec((step, 1i64..50), 1..25);
    prop::collection::vec(user, 1..4)
        .prop_map(|users| {
            let mut all = Vec::new();
            for (u, steps) in users.into_iter().enumerate() {
                let mut t = 0;
                for (step, price) in steps {
                    t += step;
                    all.push((t, u as i64, price));
                }
            }
            all.sort();
            all
        })
        .prop_flat_map(|all| {
            let n = all.len();
            (Just(all), prop::collection::vec(0i64..45_000, n))
        })
        .prop_map(|(all, jitter)| {
            // Arrival order: time plus a jitter, so events come up to 45 s out of order.
            let mut keyed: Vec<(i64, (i64, i64, i64))> =
                all.into_iter().zip(jitter).map(|(e, j)| (e.0 + j, e)).collect();
            keyed.sort();
            keyed.into_iter().map(|(_, e)| e).collect()
        })
}

fn write(dir: &std::path::Path, events: &[(i64, i64, i64)]) {
    let mut f = std::fs::File::create(dir.join("bids.ndjson")).unwrap();
    for (t, u, p) in events {
        writeln!(f, r#"{{"ts":{t},"type":"bid","bidder":{u},"price":{p}}}"#).unwrap();
    }
}

fn spec(dir: &std::path::Path, emit: &str) -> String {
    format!(
        r#"
[pipeline]
name = "sessions"
tick = "1s"
[sources.bids]
path = "{dir}/bids.ndjson"
time_field = "ts"
type_field = "type"
allowed_lateness = "30s"

[[aggregates]]
name = "per_session"
source = "bids"
window = {{ session = "10s" }}
group_by = ["bidder"]
emit = "{emit}"
measures.n = "count()"
measures.total = "sum(price)"
measures.top = "max(price)"
"#,
        dir = dir.display()
    )
}

/// The events that are not late: at or above the largest time before them minus the lateness.
fn on_time(events: &[(i64, i64, i64)]) -> Vec<(i64, i64, i64)> {
    let mut max = i64::MIN;
    let mut out = Vec::new();
    for e in events {
        if e.0 >= max.saturating_sub(LATENESS) {
            out.push(*e);
        }
        max = max.max(e.0);
    }
    out
}

/// A session row: `(user, start, end, n, total, top)`.
type Row = (i64, i64, i64, i64, i64, i64);

/// Sessions from scratch: per user, sort the times, cut where the step is at least the gap.
fn sessions(events: &[(i64, i64, i64)]) -> Vec<Row> {
    let mut by_user: BTreeMap<i64, Vec<(i64, i64)>> = BTreeMap::new();
    for (t, u, p) in events {
        by_user.entry(*u).or_default().push((*t, *p));
    }
    let mut out = Vec::new();
    for (u, mut evs) in by_user {
        evs.sort();
        let mut current: Option<Row> = None;
        for (t, p) in evs {
            current = match current {
                Some((u, s, e, n, total, top)) if t < e => Some((u, s, t + GAP, n + 1, total + p, top.max(p))),
                done => {
                    out.extend(done);
                    Some((u, t, t + GAP, 1, p, p))
                }
            };
        }
        out.extend(current);
    }
    out.sort();
    out
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::Time(t) => *t,
        other => panic!("not an int: {other:?}"),
    }
}

fn row(r: &[Value]) -> Row {
    (int(&r[0]), int(&r[1]), int(&r[2]), int(&r[3]), int(&r[4]), int(&r[5]))
}

/// The rows accumulated to `t`, each exactly once.
fn rows_at(updates: &Updates, t: u64) -> Result<Vec<Row>, TestCaseError> {
    let acc = accumulate(updates, t);
    prop_assert!(acc.values().all(|d| *d == 1), "multiplicities at {}: {:?}", t, acc);
    let mut rows: Vec<Row> = acc.keys().map(|r| row(r)).collect();
    rows.sort();
    Ok(rows)
}

fn check(events: Vec<(i64, i64, i64)>, emit: &str) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &events);
    let plan = plan_text(&spec(dir.path(), emit), dir.path());
    let kept = on_time(&events);
    let late = (events.len() - kept.len()) as i64;
    let expected = sessions(&kept);
    let mut first: Option<Updates> = None;
    for workers in [1, 2, 4] {
        let summary = run_collect(&plan, workers);
        let mut updates = summary.collected["per_session"].clone();
        updates.sort();
        prop_assert_eq!(
            rows_at(&updates, u64::MAX / 4)?,
            expected.clone(),
            "{} workers",
            workers
        );
        if emit == "final" {
            for (r, t, d) in &updates {
                prop_assert_eq!(*d, 1);
                prop_assert_eq!(*t as i64, row(r).2, "a final row is stamped at its end");
            }
        } else {
            let times: std::collections::BTreeSet<u64> = updates.iter().map(|u| u.1).collect();
            for t in times {
                let upto: Vec<(i64, i64, i64)> = kept
                    .iter()
                    .copied()
                    .filter(|e| e.0 - e.0.rem_euclid(TICK) <= t as i64)
                    .collect();
                prop_assert_eq!(rows_at(&updates, t)?, sessions(&upto), "at {}", t);
            }
        }
        prop_assert_eq!(
            summary.dead_letters.values().sum::<i64>(),
            late,
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn final_sessions_match_the_oracle(events in events()) {
        check(events, "final")?;
    }

    #[test]
    fn session_updates_match_the_oracle_at_every_time(events in events()) {
        check(events, "updates")?;
    }
}

/// A known case: the event at 8 s arrives last but is applied at its own time, between the
/// events at 0 and 15 s, so the session grows twice rather than two sessions merging.
#[test]
fn sessions_grow_in_event_time_order() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[(0, 1, 5), (15_000, 1, 7), (8_000, 1, 1)]);
    let plan = plan_text(&spec(dir.path(), "updates"), dir.path());
    let mut got: Vec<(u64, isize, Row)> = run_collect(&plan, 2).collected["per_session"]
        .iter()
        .map(|(r, t, d)| (*t, *d, row(r)))
        .collect();
    got.sort();
    let want = vec![
        (0, 1, (1, 0, 10_000, 1, 5, 5)),
        (8_000, -1, (1, 0, 10_000, 1, 5, 5)),
        (8_000, 1, (1, 0, 18_000, 2, 6, 5)),
        (15_000, -1, (1, 0, 18_000, 2, 6, 5)),
        (15_000, 1, (1, 0, 25_000, 3, 13, 7)),
    ];
    assert_eq!(got, want);
}

/// Events of one tick are applied together: with a gap shorter than the tick, an event can
/// bridge two sessions of the same tick, and only the merged session is emitted.
#[test]
fn a_bridging_event_merges_two_sessions() {
    let dir = tempfile::tempdir().unwrap();
    // 100 and 600 are 500 ms apart, more than the 300 ms gap; 350 is within it of both.
    write(dir.path(), &[(100, 1, 1), (600, 1, 2), (2_000, 1, 4), (350, 1, 3)]);
    let text = spec(dir.path(), "final").replace("session = \"10s\"", "session = \"300ms\"");
    let plan = plan_text(&text, dir.path());
    let mut got: Vec<(u64, isize, Row)> = run_collect(&plan, 1).collected["per_session"]
        .iter()
        .map(|(r, t, d)| (*t, *d, row(r)))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![(900, 1, (1, 100, 900, 3, 6, 3)), (2_300, 1, (1, 2_000, 2_300, 1, 4, 4))]
    );
}

/// Spec errors name the key at fault and say what would be valid.
#[test]
fn session_specs_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[(0, 1, 1)]);
    let good = spec(dir.path(), "final");
    let error = |text: &str| -> String {
        let path = dir.path().join("t.toml");
        std::fs::write(&path, text).unwrap();
        sluice::source::plan_file(&path, &[]).unwrap_err().to_string()
    };
    let ok = dir.path().join("ok.toml");
    std::fs::write(&ok, &good).unwrap();
    sluice::source::plan_file(&ok, &[]).unwrap();
    let window = "window = { session = \"10s\" }";
    let retracting = format!(
        "{good}\n[[aggregates]]\nname = \"again\"\nsource = \"per_session\"\n{window}\nmeasures.n = \"count()\"\n"
    )
    .replace("emit = \"final\"", "emit = \"updates\"");
    let cases: Vec<(String, &[&str])> = vec![
        (
            good.replace(window, "window = { session = \"0s\" }"),
            &["t.toml:", "`aggregates[0].window.session`", "must be positive"],
        ),
        (
            good.replace(window, "window = { session = \"10s\", tumbling = \"1m\" }"),
            &["`aggregates[0].window`", "only `session`, not `tumbling`"],
        ),
        (
            good.replace(window, "window = { session = \"10s\", slide = \"1s\" }"),
            &["`aggregates[0].window`", "not `slide`"],
        ),
        (
            good.replace(window, "window = { sesion = \"10s\" }"),
            &["unknown field `sesion`", "session"],
        ),
        (
            retracting,
            &[
                "`aggregates[1].window.session`",
                "`per_session` can retract",
                "insert-only",
            ],
        ),
    ];
    for (text, says) in cases {
        let e = error(&text);
        assert!(says.iter().all(|s| e.contains(s)), "{e}");
    }
}

/// Nexmark q11, bids per bidder session (gap 10 s), over `sluice generate nexmark` data,
/// against DuckDB SQL (gaps and islands: a bid starts a session when it is at least 10 s after
/// the bidder's previous one).
#[test]
fn nexmark_q11_bid_sessions_equal_duckdb() {
    let dir = tempfile::tempdir().unwrap();
    let bid = crate::duckdb::nexmark_bids(dir.path());
    let spec = format!(
        r#"
[pipeline]
name = "q11"
tick = "100ms"
[sources.bid]
path = "{bid}"
time_field = "date_time"

[[aggregates]]
name = "bid_sessions"
source = "bid"
window = {{ session = "10s" }}
group_by = ["bidder"]
emit = "final"
measures.bid_count = "count()"
"#,
        bid = bid.display()
    );
    let plan = plan_text(&spec, dir.path());
    let sql = format!(
        "with b as (select bidder, epoch_ms(date_time) as t from read_parquet('{bid}')), \
         s as (select bidder, t, case when t - lag(t) over (partition by bidder order by t) < 10000 \
               then 0 else 1 end as new from b), \
         g as (select bidder, t, sum(new) over (partition by bidder order by t rows unbounded preceding) as sid from s) \
         select bidder, min(t), max(t) + 10000, count(*) from g group by bidder, sid order by all",
        bid = bid.display()
    );
    let expected: Vec<(i64, i64, i64, i64)> = crate::duckdb::int_rows(&sql)
        .into_iter()
        .map(|v| (v[0], v[1], v[2], v[3]))
        .collect();
    assert!(expected.len() > 100, "{} sessions", expected.len());
    assert!(expected.iter().any(|s| s.3 > 1), "some session holds several bids");
    for workers in [1, 2, 4] {
        let summary = run_collect(&plan, workers);
        let updates = &summary.collected["bid_sessions"];
        assert!(updates.iter().all(|u| u.2 == 1), "final rows are insert-only");
        let got: Vec<(i64, i64, i64, i64)> = rows_of(updates);
        assert_eq!(got, expected, "{workers} workers");
    }
}

fn rows_of(updates: &Updates) -> Vec<(i64, i64, i64, i64)> {
    let mut rows: Vec<(i64, i64, i64, i64)> = updates
        .iter()
        .map(|(r, _, _)| (int(&r[0]), int(&r[1]), int(&r[2]), int(&r[3])))
        .collect();
    rows.sort();
    rows
}
