//! How long an event can change a pipeline's outputs, and which sources feed operator state:
//! the analysis behind truncating the write-ahead log of `sluice serve` at checkpoints.
//!
//! An event of source `s` at time `t` changes outputs only at times up to `t + horizon(s)`: a
//! window holding it ends at most one window size after it (its revisions, behind a retracting
//! input, `retain_after_close` later), rule statistics likewise, and the other stages write at
//! `t` itself. A context row of a continuous join revises the events it enriched, so its
//! source's horizon includes the horizon of the events it joins.
//!
//! Some stages keep what events taught them for as long as the pipeline runs: deduplication
//! (the last occurrence that passed), schema inference (statistics and versions), the context
//! table of a join (the latest row per key) and a continuous join (every event it enriched). A
//! source feeding one of them is *stateful*: a checkpoint saves those operators' state at a
//! frontier `F` ([`crate::render::snapshot`]) and keeps the source's records holding events at
//! or after `F`. A restored operator drops what it receives before `F`, so `F` must be at or
//! before the outputs' cut minus the horizon of every source whose events reach such an
//! operator ([`Retention::snapshot_lag_ms`]): the events that windows still need pass it.
//!
//! ```text
//!  log:   ─────────[ before F: in the snapshot ][ F .. cut − lag .. cut: replayed ]──►
//!  kept:  records with an effect at or after the cut, and those of stateful sources at or after F
//! ```

use super::{JoinMode, Plan, StageKind};

/// The horizon of a source whose records a checkpoint never drops (a forecast reads it).
pub const FOREVER: u64 = u64::MAX / 4;

/// The sizes of the windows an event passes through before reaching `input`.
fn windows_before(plan: &Plan, input: &super::StageRef) -> u64 {
    match input {
        super::StageRef::Source(_) => 0,
        super::StageRef::Stage(i) | super::StageRef::Route { stage: i, .. } => {
            let stage = &plan.stages[*i];
            let own = match &stage.kind {
                StageKind::Aggregate(a) => a.window.size_ms,
                _ => 0,
            };
            own + windows_before(plan, &stage.inputs[0])
        }
    }
}

/// What a checkpoint must keep, per source of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// How long after its time an event of each source can change an output, in ms.
    pub horizons: Vec<u64>,
    /// Whether an operator's state depends on the source's events (see the module doc).
    pub stateful: Vec<bool>,
    /// How far before the outputs' cut a state snapshot must be: the largest horizon of a
    /// source whose events reach a stateful stage (0 when there is none).
    pub snapshot_lag_ms: u64,
}

impl Retention {
    /// The last output time an event of `source` at `time` can change.
    pub fn last_effect(&self, source: usize, time: i64) -> i64 {
        time.saturating_add(self.horizons[source] as i64)
    }
}

/// The retention of each of the plan's sources.
pub fn retention(plan: &Plan) -> Retention {
    let n = plan.sources.len();
    let mut horizons = vec![0u64; n];
    for stage in &plan.stages {
        let Some(input) = stage.inputs.first() else { continue };
        let h = &mut horizons[plan.root_source(input)];
        match &stage.kind {
            // The last window that holds `t` ends before `t + size`; `final` rows are stamped
            // there (`input_lag_ms` later over another aggregate's rows), and revisions from a
            // retracting input until `retain_ms` later. Over another aggregate, `t` first
            // reaches the rows of the windows before it.
            // A session lasts as long as its events keep coming less than the gap apart: its
            // rows depend on the whole log (its state is not snapshotted either).
            StageKind::Aggregate(a) if a.session_gap_ms.is_some() => *h = FOREVER,
            StageKind::Aggregate(a) => {
                let reach = windows_before(plan, input) + a.window.size_ms + a.input_lag_ms + a.retain_ms;
                *h = (*h).max(reach);
            }
            // A forecast's model state is not snapshotted: its source's records are kept.
            StageKind::Forecast(_) => *h = FOREVER,
            // Nor is a top-N's. Windowed partitions change only within the upstream windows'
            // reach; other partitions depend on the whole log.
            StageKind::TopN(t) if t.release_lag_ms.is_none() => *h = FOREVER,
            _ => {}
        }
        // A router's regional state (latest samples, regions, forecasts) is not snapshotted
        // either: the records of the sources it reads besides its events are kept.
        // A services stage's model, sequences and pipes depend on the whole log.
        // A join's state is not snapshotted either: the records of both sides are kept.
        if let StageKind::Join(_) = &stage.kind {
            for input in &stage.inputs {
                horizons[plan.root_source(input)] = FOREVER;
            }
        }
        if let StageKind::Services(_) = &stage.kind {
            horizons[plan.root_source(&stage.inputs[0])] = FOREVER;
        }
        if let StageKind::Router(_) = &stage.kind {
            for context in &stage.inputs[1..] {
                horizons[plan.root_source(context)] = FOREVER;
            }
        }
        // Replication records stay open for `retain` after their event (or their window's
        // end): the events and completions of that span rebuild them.
        if let StageKind::Replication(r) = &stage.kind {
            for input in &stage.inputs {
                let h = &mut horizons[plan.root_source(input)];
                *h = (*h).max(r.retain_ms + r.window_ms());
            }
        }
    }
    for e in plan.enrichments().filter(|e| !e.rules.is_empty()) {
        // Rule statistics are a tumbling window; behind a continuous join they keep it one more
        // window length for revisions.
        let window = e.rule_stats_window_ms * if e.retracts() { 2 } else { 1 };
        horizons[e.source] = horizons[e.source].max(window);
    }
    // A context row of a continuous join revises the events it enriched, in their windows. (A
    // join reads its context source's events before that source's own enrichment, so revisions
    // do not chain.)
    let own = horizons.clone();
    for e in plan.enrichments() {
        for j in e.joins.iter().filter(|j| j.mode == JoinMode::Continuous) {
            horizons[j.context] = horizons[j.context].max(own[e.source]);
        }
    }
    // A `keep = "last"` dedup's held events are not snapshotted: its source's records are kept.
    for d in plan.dedups().filter(|d| d.retracts()) {
        horizons[d.source] = FOREVER;
    }
    let mut stateful = vec![false; n];
    // Sources whose events reach a stateful stage (their windows need them past it).
    let mut reach = vec![false; n];
    let snapshotted = plan.dedups().filter(|d| !d.retracts()).map(|d| d.source);
    for s in plan.schemas().map(|s| s.source).chain(snapshotted) {
        stateful[s] = true;
        reach[s] = true;
    }
    for e in plan.enrichments() {
        for j in &e.joins {
            stateful[j.context] = true;
            reach[j.context] = true;
            reach[e.source] = true;
            if j.mode == JoinMode::Continuous {
                stateful[e.source] = true;
            }
        }
    }
    let snapshot_lag_ms = (0..n).filter(|&s| reach[s]).map(|s| horizons[s]).max().unwrap_or(0);
    Retention {
        horizons,
        stateful,
        snapshot_lag_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::plan_str;

    fn plan(extra: &str) -> Plan {
        let spec = format!(
            r#"
[pipeline]
name = "p"
tick = "1s"
[sources.events]
format = "tcp"
time_field = "t"
type_field = "type"
[sources.profiles]
format = "tcp"
time_field = "t"
[sources.plans]
format = "tcp"
time_field = "t"
{extra}
"#
        );
        plan_str(&spec, std::path::Path::new("test.toml"), std::path::Path::new("."), &[]).unwrap()
    }

    /// Per source name: its horizon and whether it is stateful.
    fn by_name(p: &Plan, r: &Retention) -> Vec<(String, u64, bool)> {
        let mut out: Vec<_> = (0..p.sources.len())
            .map(|i| (p.sources[i].name.clone(), r.horizons[i], r.stateful[i]))
            .collect();
        out.sort();
        out
    }

    fn row(name: &str, horizon: u64, stateful: bool) -> (String, u64, bool) {
        (name.to_string(), horizon, stateful)
    }

    #[test]
    fn windows_bound_an_event_by_their_largest_size() {
        let p = plan(
            r#"
[[aggregates]]
name = "a"
source = "events"
window = { tumbling = "1h" }
measures.n = "count()"
[[aggregates]]
name = "b"
source = "events"
window = { size = "1d", slide = "1h" }
measures.n = "count()"
"#,
        );
        let r = retention(&p);
        let events = p.sources.iter().position(|s| s.name == "events").unwrap();
        assert_eq!(r.horizons[events], 86_400_000);
        assert_eq!(r.horizons.iter().sum::<u64>(), 86_400_000);
        assert_eq!(r.last_effect(events, 1_000), 86_401_000);
        assert_eq!(r.stateful, vec![false; 3]);
        assert_eq!(r.snapshot_lag_ms, 0, "no stateful stage");
    }

    #[test]
    fn stateful_stages_keep_a_bounded_horizon_and_need_a_snapshot() {
        let p = plan(
            r#"
[enrich.events]
[[enrich.events.join]]
context = "profiles"
on = { user_id = "user_id" }
[[aggregates]]
name = "a"
source = "events"
window = { tumbling = "1h" }
measures.n = "count()"
"#,
        );
        let r = retention(&p);
        // An as-of join writes at the event's time; the context table is state.
        let expect = vec![
            row("events", 3_600_000, false),
            row("plans", 0, false),
            row("profiles", 0, true),
        ];
        assert_eq!(by_name(&p, &r), expect);
        assert_eq!(r.snapshot_lag_ms, 3_600_000, "the events reach the join");
        let p = plan(
            r#"
[dedup.events.click]
key = ["id"]
ttl = "1h"
[schemas.profiles]
"#,
        );
        let r = retention(&p);
        // The TTL is state, not a horizon.
        let expect = vec![row("events", 0, true), row("plans", 0, false), row("profiles", 0, true)];
        assert_eq!(by_name(&p, &r), expect);
    }

    #[test]
    fn a_join_stage_keeps_both_sides_records() {
        let p = plan(
            r#"
[[joins]]
name = "j"
left = "events"
right = "plans"
on = { plan_id = "id" }
window = { tumbling = "1m" }
"#,
        );
        let r = retention(&p);
        // Its state is not snapshotted: both sources are replayed from the log.
        let expect = vec![
            row("events", FOREVER, false),
            row("plans", FOREVER, false),
            row("profiles", 0, false),
        ];
        assert_eq!(by_name(&p, &r), expect);
    }

    #[test]
    fn a_continuous_join_makes_both_sides_state_and_revisions_reach_the_context() {
        let p = plan(
            r#"
[enrich.events]
[[enrich.events.join]]
context = "profiles"
on = { user_id = "user_id" }
mode = "continuous"
[[aggregates]]
name = "a"
source = "events"
window = { tumbling = "10m" }
retain_after_close = "5m"
measures.n = "count()"
"#,
        );
        let r = retention(&p);
        // A profile change revises the events' windows.
        let expect = vec![
            row("events", 900_000, true),
            row("plans", 0, false),
            row("profiles", 900_000, true),
        ];
        assert_eq!(by_name(&p, &r), expect);
        assert_eq!(r.snapshot_lag_ms, 900_000);
    }
}
