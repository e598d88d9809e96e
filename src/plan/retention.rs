//! How long an event can change a pipeline's outputs: the analysis behind truncating the write-
//! ahead log of `sluice serve` at checkpoints.
//!
//! An event of source `s` at time `t` changes outputs only at times up to `t + horizon(s)`:
//! a window holding it ends at most one window size after it, rule statistics likewise, and
//! stateless stages (filters, derived fields, rules, as-of joins against tables read from
//! files) write at `t` itself. Some stages keep what an event taught them for as long as the
//! pipeline runs; a source feeding one of them has no horizon, and its records stay in the log
//! until the server stops.

use super::{JoinMode, Plan};

/// How long the events of one source can change outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Horizon {
    /// Until `time + ms`.
    Bounded(u64),
    /// For as long as the pipeline runs, because of the stage named.
    Unbounded(String),
}

impl Horizon {
    fn widen(&mut self, other: Horizon) {
        *self = match (std::mem::replace(self, Horizon::Bounded(0)), other) {
            (Horizon::Unbounded(r), _) | (Horizon::Bounded(_), Horizon::Unbounded(r)) => Horizon::Unbounded(r),
            (Horizon::Bounded(a), Horizon::Bounded(b)) => Horizon::Bounded(a.max(b)),
        }
    }

    /// The last output time an event at `time` can change (`i64::MAX` for none).
    pub fn last_effect(&self, time: i64) -> i64 {
        match self {
            Horizon::Bounded(ms) => time.saturating_add(*ms as i64),
            Horizon::Unbounded(_) => i64::MAX,
        }
    }
}

/// The horizon of each of the plan's sources.
pub fn horizons(plan: &Plan) -> Vec<Horizon> {
    let mut out = vec![Horizon::Bounded(0); plan.sources.len()];
    for stage in &plan.stages {
        let (super::StageKind::Aggregate(a), Some(input)) = (&stage.kind, stage.inputs.first()) else {
            continue;
        };
        // The last window that holds `t` ends before `t + size`; `final` rows are stamped there
        // (`input_lag_ms` later over another aggregate's rows), and revisions from a retracting
        // input until `retain_ms` later. Over another aggregate, `t` first reaches the rows of
        // the windows before it.
        let reach = windows_before(plan, input) + a.window.size_ms + a.input_lag_ms + a.retain_ms;
        out[plan.root_source(input)].widen(Horizon::Bounded(reach));
    }
    for stage in &plan.stages {
        if let (super::StageKind::Forecast(f), Some(input)) = (&stage.kind, stage.inputs.first()) {
            out[plan.root_source(input)].widen(Horizon::Unbounded(format!(
                "forecast `{}` keeps each series' model state",
                f.name
            )));
        }
    }
    for d in plan.dedups() {
        out[d.source].widen(Horizon::Unbounded(format!(
            "deduplication of `{}` decides each occurrence against the last one that passed",
            plan.sources[d.source].name
        )));
    }
    for s in plan.schemas() {
        out[s.source].widen(Horizon::Unbounded(format!(
            "schema inference of `{}` counts every event",
            plan.sources[s.source].name
        )));
    }
    for e in plan.enrichments() {
        if !e.rules.is_empty() {
            out[e.source].widen(Horizon::Bounded(e.rule_stats_window_ms));
        }
        for j in &e.joins {
            let context = &plan.sources[j.context].name;
            // A context row is the latest for its key until another replaces it.
            out[j.context].widen(Horizon::Unbounded(format!(
                "`{context}` is the context table of join `{}`",
                j.alias
            )));
            if j.mode == JoinMode::Continuous {
                out[e.source].widen(Horizon::Unbounded(format!(
                    "continuous join `{}` revises past events when `{context}` changes",
                    j.alias
                )));
            }
        }
    }
    out
}

/// The sizes of the windows an event passes through before reaching `input`.
fn windows_before(plan: &Plan, input: &super::StageRef) -> u64 {
    match input {
        super::StageRef::Source(_) => 0,
        super::StageRef::Stage(i) | super::StageRef::Route { stage: i, .. } => {
            let stage = &plan.stages[*i];
            let own = match &stage.kind {
                super::StageKind::Aggregate(a) => a.window.size_ms,
                _ => 0,
            };
            own + windows_before(plan, &stage.inputs[0])
        }
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
{extra}
"#
        );
        plan_str(&spec, std::path::Path::new("test.toml"), std::path::Path::new("."), &[]).unwrap()
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
        let h = horizons(&p);
        assert_eq!(h[0], Horizon::Bounded(86_400_000));
        assert_eq!(h[1], Horizon::Bounded(0));
        assert_eq!(h[0].last_effect(1_000), 86_401_000);
    }

    #[test]
    fn stateful_stages_make_a_source_unbounded() {
        let p = plan(
            r#"
[enrich.events]
[[enrich.events.join]]
context = "profiles"
on = { user_id = "user_id" }
"#,
        );
        let h = horizons(&p);
        assert_eq!(h[0], Horizon::Bounded(0), "an as-of join writes at the event's time");
        assert!(matches!(&h[1], Horizon::Unbounded(r) if r.contains("profiles")));
        assert_eq!(h[1].last_effect(5), i64::MAX);
        let p = plan(
            r#"
[dedup.events.click]
key = ["id"]
ttl = "1h"
"#,
        );
        assert!(matches!(&horizons(&p)[0], Horizon::Unbounded(r) if r.contains("deduplication")));
    }
}
