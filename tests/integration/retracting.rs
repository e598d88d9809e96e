//! Oracle tests for aggregates over a retracting input: a continuous join whose context rows
//! change at random times, often after the windows of the events they enrich have closed. At
//! every output time, each window's row must equal the from-scratch aggregate of the
//! consolidated enriched view, as of the last time the window still accepted changes
//! (`end + retain_after_close`); changes after that are `closed_window` dead letters, counted
//! exactly. Results must be identical with 1, 2 and 4 workers.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use proptest::prelude::*;
use sluice::value::Value;

use crate::util::{plan_text, run_collect};

const TICK: i64 = 100;
const USERS: i64 = 3;

#[derive(Clone, Debug)]
struct Profile {
    time: i64,
    user: i64,
    tier: &'static str,
    score: i64,
}

#[derive(Clone, Debug)]
struct Case {
    /// (time, user), in time order.
    events: Vec<(i64, i64)>,
    /// In time order, times distinct per user.
    profiles: Vec<Profile>,
}

fn case() -> impl Strategy<Value = Case> {
    let events = prop::collection::vec((0i64..30_000, 0..USERS), 1..60);
    let profiles = prop::collection::vec(
        (
            0i64..60_000,
            0..USERS,
            prop::sample::select(vec!["gold", "free"]),
            -3i64..4,
        ),
        0..14,
    );
    (events, profiles).prop_map(|(mut events, raw)| {
        events.sort();
        let mut seen = BTreeSet::new();
        let mut profiles: Vec<Profile> = raw
            .into_iter()
            .filter(|(t, u, _, _)| seen.insert((*u, *t)))
            .map(|(time, user, tier, score)| Profile {
                time,
                user,
                tier,
                score,
            })
            .collect();
        profiles.sort_by_key(|p| (p.time, p.user));
        Case { events, profiles }
    })
}

fn tick(t: i64) -> i64 {
    t - t.rem_euclid(TICK)
}

/// An enriched event: its time and, when its user had a profile, (tier, score, profile time):
/// the attached row carries the context's time field too.
type Enriched = (i64, Option<(&'static str, i64)>);

/// The consolidated enriched view at time `at`: every event with its user's latest profile, as
/// the join attaches it (its `fields`, not its time: a new profile row with the same values
/// changes no event).
fn view(case: &Case, at: i64) -> BTreeMap<Enriched, i64> {
    let mut out = BTreeMap::new();
    for &(time, user) in case.events.iter().filter(|(t, _)| tick(*t) <= at) {
        let profile = case
            .profiles
            .iter()
            .filter(|p| p.user == user && tick(p.time) <= at)
            .max_by_key(|p| p.time)
            .map(|p| (p.tier, p.score));
        *out.entry((time, profile)).or_insert(0) += 1;
    }
    out
}

fn windows(time: i64, size: i64, slide: i64) -> Vec<i64> {
    let mut starts = Vec::new();
    let mut start = time.div_euclid(slide) * slide;
    while start > time - size {
        starts.push(start);
        start -= slide;
    }
    starts
}

/// The aggregate's rows from scratch at time `at`: each window as of the last time it accepted
/// changes; in final mode only windows that have ended.
fn expected(case: &Case, at: i64, w: &Shape) -> BTreeSet<Vec<Value>> {
    let mut views: BTreeMap<i64, BTreeMap<Enriched, i64>> = BTreeMap::new();
    // (group, window start) → (tier and score, multiplicity) of each enriched event.
    type Rows = Vec<(Option<(&'static str, i64)>, i64)>;
    let mut groups: BTreeMap<(Value, i64), Rows> = BTreeMap::new();
    let starts: BTreeSet<i64> = case
        .events
        .iter()
        .flat_map(|(t, _)| windows(*t, w.size, w.slide))
        .collect();
    for start in starts {
        let end = start + w.size;
        if w.final_ && end > at {
            continue;
        }
        let as_of = at.min(end + w.retain - 1);
        let v = views.entry(tick(as_of)).or_insert_with(|| view(case, as_of));
        for ((time, profile), n) in v.iter() {
            if *time >= start && *time < end {
                let group = profile.map_or(Value::Null, |(tier, _)| Value::str(tier));
                groups.entry((group, start)).or_default().push((*profile, *n));
            }
        }
    }
    groups
        .into_iter()
        .map(|((group, start), rows)| {
            let n: i64 = rows.iter().map(|(_, n)| n).sum();
            let scores: Vec<(i64, i64)> = rows.iter().filter_map(|(p, n)| p.map(|(_, s)| (s, *n))).collect();
            let k: i64 = scores.iter().map(|(_, n)| n).sum();
            let sum: i64 = scores.iter().map(|(s, n)| s * n).sum();
            let distinct: BTreeSet<i64> = scores.iter().map(|(s, _)| *s).collect();
            let tiers: BTreeSet<&str> = rows.iter().filter_map(|(p, _)| p.map(|(t, _)| t)).collect();
            let positive: i64 = scores.iter().filter(|(s, _)| *s > 0).map(|(_, n)| n).sum();
            let or_null = |x: Option<i64>| x.map_or(Value::Null, Value::Int);
            vec![
                group,
                Value::Time(start),
                Value::Time(start + w.size),
                Value::Int(n),
                if k == 0 { Value::Null } else { Value::Int(sum) },
                if k == 0 {
                    Value::Null
                } else {
                    Value::float(sum as f64 / k as f64)
                },
                or_null(distinct.first().copied()),
                or_null(distinct.last().copied()),
                Value::Int(distinct.len() as i64),
                Value::Int(tiers.len() as i64),
                Value::Int(positive),
            ]
        })
        .collect()
}

/// Changes that reach a window at or after `end + retain`: one dead letter per changed enriched
/// event (retracted or inserted) and closed window.
fn expected_closed(case: &Case, w: &Shape) -> i64 {
    let times: BTreeSet<i64> = case.profiles.iter().map(|p| tick(p.time)).collect();
    let mut count = 0;
    for t in times {
        let (before, after) = (view(case, t - 1), view(case, t));
        let keys: BTreeSet<&Enriched> = before.keys().chain(after.keys()).collect();
        for key in keys {
            let (old, new) = (
                before.get(key).copied().unwrap_or(0),
                after.get(key).copied().unwrap_or(0),
            );
            // Events whose own tick is `t` are new, never revisions of a closed window.
            if old == new || tick(key.0) == t {
                continue;
            }
            let closed = windows(key.0, w.size, w.slide)
                .into_iter()
                .filter(|s| s + w.size + w.retain <= t)
                .count() as i64;
            count += closed * (old - new).abs();
        }
    }
    count
}

struct Shape {
    size: i64,
    slide: i64,
    retain: i64,
    final_: bool,
}

fn write(case: &Case, dir: &std::path::Path) {
    let mut f = std::fs::File::create(dir.join("events.ndjson")).unwrap();
    for (time, user) in &case.events {
        writeln!(f, r#"{{"ts":{time},"type":"view","user":{user}}}"#).unwrap();
    }
    let mut f = std::fs::File::create(dir.join("profiles.ndjson")).unwrap();
    for p in &case.profiles {
        writeln!(
            f,
            r#"{{"ts":{},"user":{},"tier":"{}","score":{}}}"#,
            p.time, p.user, p.tier, p.score
        )
        .unwrap();
    }
}

fn spec(dir: &std::path::Path, w: &Shape) -> String {
    format!(
        r#"
[pipeline]
name = "retracting"
tick = "{TICK}ms"
[sources.events]
path = "{dir}/events.ndjson"
time_field = "ts"
type_field = "type"
allowed_lateness = "1h"
[sources.profiles]
path = "{dir}/profiles.ndjson"
time_field = "ts"
allowed_lateness = "1h"
[enrich.events]
[[enrich.events.join]]
context = "profiles"
as = "p"
on = {{ user = "user" }}
fields = ["tier", "score"]
mode = "continuous"
[[aggregates]]
name = "w"
source = "events"
window = {{ size = "{size}ms", slide = "{slide}ms" }}
group_by = ["p.tier"]
emit = "{emit}"
retain_after_close = "{retain}ms"
measures.n = "count()"
measures.s = "sum(p.score)"
measures.a = "avg(p.score)"
measures.lo = "min(p.score)"
measures.hi = "max(p.score)"
measures.d = "count_distinct(p.score)"
measures.tiers = "count_distinct(p.tier)"
measures.pos = "count() where p.score > 0"
"#,
        dir = dir.display(),
        size = w.size,
        slide = w.slide,
        retain = w.retain,
        emit = if w.final_ { "final" } else { "updates" },
    )
}

fn check(case: Case, w: Shape) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    write(&case, dir.path());
    let plan = plan_text(&spec(dir.path(), &w), dir.path());
    prop_assert!(
        !plan.aggregates().next().unwrap().monotonic,
        "a continuous join upstream retracts"
    );
    let mut first = None;
    for workers in [1, 2, 4] {
        let summary = run_collect(&plan, workers);
        let mut updates = summary.collected["w"].clone();
        updates.sort();
        let times: BTreeSet<u64> = updates.iter().map(|(_, t, _)| *t).collect();
        for t in times.iter().copied().chain([u64::MAX / 4]) {
            let acc = crate::util::accumulate(&updates, t);
            prop_assert!(acc.values().all(|d| *d == 1), "multiplicities at {}: {:?}", t, acc);
            let got: BTreeSet<Vec<Value>> = acc.into_keys().collect();
            prop_assert_eq!(got, expected(&case, t as i64, &w), "at time {}", t);
        }
        let closed = summary.dead_letters.get("closed_window").copied().unwrap_or(0);
        prop_assert_eq!(closed, expected_closed(&case, &w), "closed_window dead letters");
        prop_assert_eq!(summary.late(), 0);
        match &first {
            None => first = Some(updates),
            Some(f) => prop_assert_eq!(f, &updates, "{} workers differ from 1", workers),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn revisions_within_retention_match_oracle(case in case(), final_ in any::<bool>(), sliding in any::<bool>()) {
        let (size, slide) = if sliding { (6_000, 2_000) } else { (5_000, 5_000) };
        check(case, Shape { size, slide, retain: 3_600_000, final_ })?;
    }

    #[test]
    fn revisions_after_retention_are_closed_window(case in case(), final_ in any::<bool>(), retain in 0i64..4) {
        check(case, Shape { size: 5_000, slide: 5_000, retain: retain * 2_500, final_ })?;
    }
}

/// The issue's spec: per-user daily aggregates over a continuous join on the learning sample
/// equal the aggregate of the consolidated `enriched` view.
#[test]
fn continuous_join_aggregate_equals_aggregate_of_view() {
    let repo = crate::util::repo();
    let text = format!(
        r#"
[pipeline]
name = "cont"
tick = "1s"
[sources.events]
path = "{repo}/data/learning_sample.parquet"
time_field = "event_time"
type_field = "event_type"
allowed_lateness = "2m"
[sources.profiles]
path = "{repo}/data/learning_context/profiles.parquet"
time_field = "updated_at"
allowed_lateness = "2m"
[enrich.events]
[[enrich.events.join]]
context = "profiles"
as = "profile"
on = {{ user_id = "user_id" }}
fields = ["subscription", "streak_days"]
mode = "continuous"
[[aggregates]]
name = "per_user"
source = "events"
window = {{ tumbling = "1d" }}
group_by = ["user_id"]
retain_after_close = "3650d"
measures.subs = "count_distinct(profile.subscription)"
measures.max_streak = "max(profile.streak_days)"
measures.n = "count()"
"#,
        repo = repo.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_text(&text, dir.path());
    let summary = run_collect(&plan, 2);
    let consolidate = |name: &str| crate::util::accumulate(&summary.collected[name], u64::MAX);
    // enriched rows: [order marker, event_time, event_type, payload]
    // (user, day) → (subscriptions, max streak, events)
    type Day = (BTreeSet<Value>, Option<Value>, i64);
    let mut per_day: BTreeMap<(Value, i64), Day> = BTreeMap::new();
    let (user, profile) = (sluice::value::Sym::new("user_id"), sluice::value::Sym::new("profile"));
    let (subscription, streak) = (
        sluice::value::Sym::new("subscription"),
        sluice::value::Sym::new("streak_days"),
    );
    for (row, n) in consolidate("enriched") {
        assert!(n > 0, "negative multiplicity in the consolidated view: {row:?}");
        let Value::Time(time) = row[0] else {
            panic!("time column: {row:?}")
        };
        let payload = row.last().unwrap();
        let day = time.div_euclid(86_400_000) * 86_400_000;
        let entry = per_day
            .entry((payload.field(user).cloned().unwrap_or_default(), day))
            .or_default();
        let p = payload.field(profile);
        if let Some(s) = p.and_then(|p| p.field(subscription)).filter(|v| !v.is_null()) {
            entry.0.insert(s.clone());
        }
        if let Some(s) = p.and_then(|p| p.field(streak)).filter(|v| !v.is_null()) {
            entry.1 = entry.1.take().max(Some(s.clone()));
        }
        entry.2 += n as i64;
    }
    let want: BTreeSet<Vec<Value>> = per_day
        .into_iter()
        .map(|((user, day), (subs, max, n))| {
            vec![
                user,
                Value::Time(day),
                Value::Time(day + 86_400_000),
                Value::Int(subs.len() as i64),
                max.unwrap_or_default(),
                Value::Int(n),
            ]
        })
        .collect();
    let got = consolidate("per_user");
    assert!(got.values().all(|n| *n == 1));
    let got: BTreeSet<Vec<Value>> = got.into_keys().collect();
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
    assert_eq!(summary.dead_letters.get("closed_window"), None);
}

/// Rules behind a continuous join: when a profile change makes an event match a `block` rule
/// after its `rule_stats` window closed, `blocked` and `rule_stats` are revised as changelogs,
/// within `rule_stats_window` after the window's end; later, `closed_window`.
#[test]
fn rules_and_rule_stats_follow_retractions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("events.ndjson"), "{\"ts\":1000,\"type\":\"view\",\"user\":1}\n").unwrap();
    std::fs::write(
        d.join("profiles.ndjson"),
        "{\"ts\":0,\"user\":1,\"tier\":\"free\"}\n{\"ts\":20000,\"user\":1,\"tier\":\"gold\"}\n\
         {\"ts\":200000,\"user\":1,\"tier\":\"free\"}\n",
    )
    .unwrap();
    let text = format!(
        r#"
[pipeline]
name = "rules"
[sources.events]
path = "{d}/events.ndjson"
time_field = "ts"
type_field = "type"
allowed_lateness = "1h"
[sources.profiles]
path = "{d}/profiles.ndjson"
time_field = "ts"
allowed_lateness = "1h"
[enrich.events]
rule_stats_window = "1m"
[[enrich.events.join]]
context = "profiles"
as = "p"
on = {{ user = "user" }}
mode = "continuous"
[[enrich.events.rule]]
id = "no_gold"
when = "p.tier == 'gold'"
action = "block"
"#,
        d = d.display()
    );
    let plan = plan_text(&text, d);
    for workers in [1, 2] {
        let summary = run_collect(&plan, workers);
        let net = |name: &str| {
            let mut acc: BTreeMap<(Vec<Value>, u64), isize> = BTreeMap::new();
            for (row, t, diff) in &summary.collected[name] {
                *acc.entry((row.clone(), *t)).or_default() += diff;
            }
            acc.retain(|_, n| *n != 0);
            acc.into_iter().map(|((row, t), n)| (t, n, row)).collect::<Vec<_>>()
        };
        // Blocked at 20 s (the gold row), unblocked again at 200 s.
        let blocked: Vec<(u64, isize)> = net("blocked").into_iter().map(|(t, n, _)| (t, n)).collect();
        assert_eq!(blocked, vec![(20_000, 1), (200_000, -1)]);
        // rule_stats of [0 s, 60 s): the match at 20 s comes before the window's end, so the row
        // emitted at 60 s counts it. Its retraction at 200 s comes after 60 s + 60 s of
        // retention: two closed_window dead letters (the `match` and `action` outcomes).
        let stats = net("rule_stats");
        assert_eq!(stats.len(), 1, "{stats:?}");
        let (t, n, row) = &stats[0];
        assert_eq!((*t, *n), (60_000, 1));
        assert_eq!(row[4], Value::Int(1), "matches: {row:?}");
        assert_eq!(
            summary.dead_letters.get("closed_window"),
            Some(&2),
            "{:?}",
            summary.dead_letters
        );
    }
}
