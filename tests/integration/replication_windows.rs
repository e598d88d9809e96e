//! `[routers.replication]` with `granularity = "shard_window"`: one record per shard and
//! tumbling window and one task per window and region, against a from-scratch oracle over the
//! same random scenarios as `replication.rs` (shards that migrate; completions failed, retried,
//! late, for unknown events and from unknown regions). Identical with 1, 2 and 4 workers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use proptest::prelude::*;
use sluice::value::{Sym, Value};

use crate::replication::{
    dead_letters, expected_dead_letters, half_acknowledged, history, net, observed, same_for_every_worker_count,
    scenario, spec, targets_before, write, Net, Observed, Scenario, END_MS, RETAIN_MS,
};
use crate::util::{plan_text, run_collect};

/// Five minutes: a few events of each shard per window.
const WINDOW_MS: i64 = 300_000;

fn window_spec(dir: &Path) -> String {
    spec(dir, "granularity = \"shard_window\"\nwindow = \"5m\"")
}

/// The oracle's view of one run.
struct Oracle<'a> {
    o: &'a Observed,
}

impl Oracle<'_> {
    /// When the window holding `time` closes: `retain` after its end.
    fn closes(time: i64) -> i64 {
        time.div_euclid(WINDOW_MS) * WINDOW_MS + WINDOW_MS + RETAIN_MS
    }

    /// Whether a completion at `at` for `id` from `region` reaches an open record.
    fn usable(&self, id: i64, at: i64, region: &str) -> bool {
        region != "zz"
            && self
                .o
                .events
                .get(&id)
                .is_some_and(|(t, _)| *t <= at && at < Self::closes(*t))
    }

    /// Each region's status for event `id` from its acknowledgements up to `until`: `true`
    /// once it completed a copy.
    fn status(&self, id: i64, until: i64) -> BTreeMap<String, bool> {
        let mut out: BTreeMap<String, bool> = BTreeMap::new();
        for (at, e, region, ok) in &self.o.acks {
            if *e == id && *at <= until && self.usable(id, *at, region) {
                let s = out.entry(region.clone()).or_insert(*ok);
                *s = *s || *ok;
            }
        }
        out
    }

    /// The events of each (shard, window start), routed by `until`.
    fn windows(&self, until: i64) -> BTreeMap<(i64, i64), Vec<i64>> {
        let mut out: BTreeMap<(i64, i64), Vec<i64>> = BTreeMap::new();
        for (id, (time, shard)) in &self.o.events {
            if *time <= until {
                out.entry((*shard, time.div_euclid(WINDOW_MS) * WINDOW_MS))
                    .or_default()
                    .push(*id);
            }
        }
        out
    }

    /// The row of window `(shard, from)` with events `ids`, completions up to `until` and the
    /// placement before `placed`.
    fn row(&self, (shard, from): (i64, i64), ids: &[i64], until: i64, placed: i64, closed: bool) -> Vec<Value> {
        let targets = targets_before(&self.o.placement, shard, placed);
        let mut done: BTreeMap<String, i64> = BTreeMap::new();
        let mut failed: BTreeMap<String, i64> = BTreeMap::new();
        for id in ids {
            for (region, ok) in self.status(*id, until) {
                *if ok { &mut done } else { &mut failed }.entry(region).or_default() += 1;
            }
        }
        let n = ids.len() as i64;
        let status = |r: &str| {
            if done.get(r) == Some(&n) {
                "completed"
            } else if failed.contains_key(r) {
                "failed"
            } else {
                "pending"
            }
        };
        let regions: BTreeSet<&str> = targets
            .iter()
            .chain(done.keys())
            .chain(failed.keys())
            .map(String::as_str)
            .collect();
        let list = |rs: Vec<&str>| Value::List(rs.into_iter().map(Value::str).collect());
        let with = |s: &str| list(regions.iter().copied().filter(|r| status(r) == s).collect());
        let per_region: Vec<Value> = regions
            .iter()
            .map(|r| {
                Value::object(vec![
                    (Sym::new("region"), Value::str(r)),
                    (Sym::new("status"), Value::str(status(r))),
                    (Sym::new("completed"), Value::Int(done.get(*r).copied().unwrap_or(0))),
                    (Sym::new("failed"), Value::Int(failed.get(*r).copied().unwrap_or(0))),
                ])
            })
            .collect();
        let all_done = !targets.is_empty() && targets.iter().all(|r| status(r) == "completed");
        vec![
            Value::Int(shard),
            Value::Time(from),
            Value::Time(from + WINDOW_MS),
            Value::Int(n),
            targets.first().map_or(Value::Null, |h| Value::str(h)),
            list(targets.iter().map(String::as_str).collect()),
            with("completed"),
            with("failed"),
            list(
                targets
                    .iter()
                    .map(String::as_str)
                    .filter(|r| status(r) == "pending")
                    .collect(),
            ),
            Value::List(per_region.into()),
            Value::str(match (all_done, closed) {
                (true, _) => "complete",
                (false, false) => "replicating",
                (false, true) => "expired",
            }),
            Value::List(history(&self.o.placement, shard, placed).into()),
        ]
    }

    /// The records as of tick `at`: the last rows of the windows closed by then, the current
    /// rows of the others.
    fn records(&self, at: i64) -> BTreeMap<Vec<Value>, i64> {
        let mut out = BTreeMap::new();
        for (key, ids) in self.windows(at) {
            let closes = Self::closes(key.1);
            let row = if closes <= at {
                // It closes before that tick's placement and completions.
                self.row(key, &ids, closes - 1, closes, true)
            } else {
                self.row(key, &ids, at, at + 1, false)
            };
            out.insert(row, 1);
        }
        out
    }

    /// The tasks as of tick `at`: (shard, window start, region, reason, missing) of every open
    /// window's target that lacks events, under the strongest of their reasons.
    fn tasks(&self, at: i64) -> BTreeSet<(i64, i64, String, String, i64)> {
        let rank = |r: &str| ["copy", "migration", "retry"].iter().position(|x| *x == r).unwrap();
        let mut out = BTreeSet::new();
        for ((shard, from), ids) in self.windows(at) {
            if Self::closes(from) <= at {
                continue;
            }
            for region in targets_before(&self.o.placement, shard, at + 1) {
                let mut reason: Option<&str> = None;
                let mut missing = 0;
                for id in &ids {
                    let first = targets_before(&self.o.placement, shard, self.o.events[id].0 + 1);
                    let r = match self.status(*id, at).get(&region) {
                        Some(true) => continue,
                        Some(false) => "retry",
                        None if first.contains(&region) => "copy",
                        None => "migration",
                    };
                    missing += 1;
                    reason = Some(reason.map_or(r, |was| if rank(r) > rank(was) { r } else { was }));
                }
                if let Some(reason) = reason {
                    out.insert((shard, from, region, reason.to_string(), missing));
                }
            }
        }
        out
    }
}

fn check(s: &Scenario, dir: &Path) -> Net {
    write(dir, s);
    let plan = plan_text(&window_spec(dir), dir);
    let mut first: Option<Net> = None;
    for workers in [1, 2, 4] {
        let summary = run_collect(&plan, workers);
        let c = &summary.collected;
        let o = observed(c, dir);
        assert_eq!(o.events.len(), 240 + s.events.len(), "every event is routed");
        let oracle = Oracle { o: &o };
        let outputs: Net = ["decisions_replication", "decisions_replication_tasks"]
            .iter()
            .map(|n| (n.to_string(), net(&c[*n], None)))
            .collect();
        // The end: every window's last row, and no tasks.
        let end = o.events.values().map(|(t, _)| Oracle::closes(*t)).max().unwrap();
        assert_eq!(
            outputs["decisions_replication"],
            oracle.records(end),
            "{workers} workers: last rows"
        );
        assert!(outputs["decisions_replication_tasks"].is_empty(), "every window closed");
        // Records and tasks every 30 s on the way, and just before and at a window's close.
        let ticks = (0..END_MS + 2 * RETAIN_MS)
            .step_by(30_000)
            .chain([WINDOW_MS + RETAIN_MS - 1]);
        for at in ticks {
            let records = net(&c["decisions_replication"], Some(at as u64));
            assert_eq!(records, oracle.records(at), "{workers} workers: records at {at}");
            let mut tasks = BTreeSet::new();
            for row in net(&c["decisions_replication_tasks"], Some(at as u64)).keys() {
                let [Value::Int(shard), Value::Time(from), Value::Str(region), Value::Str(reason), Value::Int(missing), Value::Time(since)] =
                    &row[..]
                else {
                    panic!("{row:?}")
                };
                assert!(
                    *from <= *since && *since <= at,
                    "since {since} in [{from}, {at}]: {row:?}"
                );
                tasks.insert((*shard, *from, region.to_string(), reason.to_string(), *missing));
            }
            let want = oracle.tasks(at);
            if at == END_MS / 2 {
                assert!(!want.is_empty(), "windows are open half way");
            }
            assert_eq!(tasks, want, "{workers} workers: tasks at {at}");
        }
        // Dead letters: as for events, an event is open until its window closes.
        let unknown_region = o.acks.iter().filter(|a| a.2 == "zz").count();
        let unknown_event = o
            .acks
            .iter()
            .filter(|a| a.2 != "zz" && !oracle.usable(a.1, a.0, &a.2))
            .count();
        assert_eq!(
            dead_letters(c),
            expected_dead_letters(unknown_region, unknown_event),
            "{workers} workers: dead letters"
        );
        same_for_every_worker_count(&mut first, outputs, workers);
    }
    first.unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]

    #[test]
    fn window_records_and_tasks_match_an_oracle_over_migrations(s in scenario()) {
        let dir = tempfile::tempdir().unwrap();
        check(&s, dir.path());
    }
}

/// Every region acknowledges half of the events at once, then shards move off the hot region:
/// a window's new home is asked only for the events it lacks, and a region that completed a
/// whole window is never asked again.
#[test]
fn a_migration_asks_a_window_only_for_missing_events() {
    let dir = tempfile::tempdir().unwrap();
    let outputs = check(&half_acknowledged(), dir.path());
    let records = &outputs["decisions_replication"];
    assert!(
        records
            .keys()
            .any(|row| !matches!(&row[11], Value::List(h) if h.is_empty())),
        "some windows' shards moved while they were open"
    );
    assert!(
        records.keys().any(|row| row[10] == Value::str("expired")),
        "some windows lack copies"
    );
}

/// `shard_window` needs a window; a misspelt granularity gets a hint; `event` takes none.
#[test]
fn a_shard_window_without_a_window_is_a_spec_error() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "granularity = \"shard_window\"",
            "granularity = \"shard_window\"",
            "replication.window",
            "needs a `window`",
        ),
        (
            "granularity = \"shard_windows\"\nwindow = \"1m\"",
            "granularity =",
            "replication.granularity",
            "did you mean `shard_window`",
        ),
        ("window = \"1m\"", "window =", "replication.window", "applies only to"),
        (
            "granularity = \"shard_window\"\nwindow = \"soon\"",
            "window =",
            "replication.window",
            "a duration such as",
        ),
    ];
    for (extra, at, key, says) in cases {
        let text = spec(dir.path(), extra);
        let line = text.lines().position(|l| l.starts_with(at)).unwrap() + 1;
        let err = sluice::plan::plan_str(&text, Path::new("test.toml"), dir.path(), &[])
            .err()
            .unwrap_or_else(|| panic!("`{extra}` is refused"))
            .to_string();
        assert!(
            err.contains(&format!("test.toml:{line}:")),
            "{extra}: line {line}: {err}"
        );
        assert!(err.contains(key), "{extra}: {err}");
        assert!(err.contains(says), "{extra}: {err}");
    }
    let text = spec(dir.path(), "granularity = \"event\"");
    assert!(sluice::plan::plan_str(&text, Path::new("test.toml"), dir.path(), &[]).is_ok());
}
