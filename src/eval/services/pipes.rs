//! The pipes part of the services evaluation: `NAME_pipe_events` replayed pair by pair, each
//! pipe from its `created` to its `torn_down`, into precision, recall, lead times and idle time.
//!
//! | measure | definition |
//! |---|---|
//! | precision | predicted pipes (created with reason `predicted`) used at least once ÷ predicted pipes used or torn down; pipes still open and unused at the end are left out (*pending*: they may still be used) |
//! | recall | hops that found a pipe (`used`) ÷ hops that looked for one (`used` + `miss`) |
//! | predicted openings | first uses of predicted pipes ÷ those and the demand creations: of the calls that found no pipe kept open by earlier traffic, the share a prediction served |
//! | lead | on the first use of a predicted pipe, its time − the pipe's creation |
//! | idle | on `torn_down`, the time since the pipe's last use (or its creation when never used) |
//! | wasted | idle time of the torn-down predicted pipes that were never used (their whole life) |
//!
//! The rows come as a set (`sluice eval` keeps each output's final contents), so events of one
//! pair at the same millisecond are put in lifecycle order: `idle_timeout`, `torn_down`,
//! `miss`, `created`, `used` (a pipe closes before the next opens; a miss comes before the
//! demand creation that follows it). Lead and idle are computed from the replay; a row whose
//! own `lead_ms`, `idle_ms` or `uses` disagrees is counted as a problem, as are events that do
//! not fit the lifecycle (a use or teardown without an open pipe, a creation over an open one).

use std::collections::BTreeMap;

use super::prediction::{text_of, time_of};
use crate::value::Value;

/// A pipe event, in lifecycle order within a millisecond (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    IdleTimeout,
    TornDown,
    Miss,
    Created,
    Used,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "idle_timeout" => Kind::IdleTimeout,
            "torn_down" => Kind::TornDown,
            "miss" => Kind::Miss,
            "created" => Kind::Created,
            "used" => Kind::Used,
            _ => return None,
        })
    }
}

/// One row of `NAME_pipe_events`.
#[derive(Debug, Clone, PartialEq)]
pub struct PipeEvent {
    pub time: i64,
    pub source: String,
    pub target: String,
    pub kind: Kind,
    /// For `created`: `predicted` (true) or `demand` (false).
    pub predicted: bool,
    pub lead_ms: Option<i64>,
    pub idle_ms: Option<i64>,
    pub uses: Option<i64>,
}

fn int_of(v: Option<&Value>) -> Option<i64> {
    match v {
        Some(Value::Int(i)) => Some(*i),
        _ => None,
    }
}

/// The events of `NAME_pipe_events` in replay order (time, pair, lifecycle), and the rows
/// that could not be read, counted by reason.
pub fn parse_pipe_events(rows: &[Vec<Value>]) -> (Vec<PipeEvent>, BTreeMap<&'static str, usize>) {
    let mut out = Vec::with_capacity(rows.len());
    let mut skipped: BTreeMap<&'static str, usize> = BTreeMap::new();
    for row in rows {
        let parsed = (|| {
            let kind = match row.get(3) {
                Some(Value::Str(s)) => Kind::parse(s).ok_or("unknown_event")?,
                _ => return Err("malformed_event"),
            };
            let predicted = match (kind, row.get(4)) {
                (Kind::Created, Some(Value::Str(s))) if &**s == "predicted" => true,
                (Kind::Created, Some(Value::Str(s))) if &**s == "demand" => false,
                (Kind::Created, _) => return Err("unknown_creation_reason"),
                _ => false,
            };
            Ok(PipeEvent {
                time: time_of(row.first()).ok_or("malformed_time")?,
                source: text_of(row.get(1)).ok_or("malformed_source")?,
                target: text_of(row.get(2)).ok_or("malformed_target")?,
                kind,
                predicted,
                lead_ms: int_of(row.get(7)),
                idle_ms: int_of(row.get(8)),
                uses: int_of(row.get(9)),
            })
        })();
        match parsed {
            Ok(e) => out.push(e),
            Err(why) => *skipped.entry(why).or_default() += 1,
        }
    }
    out.sort_by(|a, b| (a.time, &a.source, &a.target, a.kind).cmp(&(b.time, &b.source, &b.target, b.kind)));
    (out, skipped)
}

/// What the replay counted, for one pair or all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PipeStats {
    pub created_predicted: usize,
    pub created_demand: usize,
    pub used: usize,
    pub miss: usize,
    /// Predicted pipes used at least once, and torn down unused.
    pub predicted_used: usize,
    pub predicted_unused: usize,
    /// Predicted pipes open and unused at the end (left out of precision).
    pub pending: usize,
    pub torn_down: usize,
    /// Lead times of the first uses of predicted pipes, in ms.
    pub leads_ms: Vec<i64>,
    /// Idle time of torn-down pipes, and of the torn-down predicted pipes never used.
    pub idle_ms: i64,
    pub wasted_ms: i64,
}

impl PipeStats {
    /// Predicted pipes used ÷ predicted pipes used or torn down (NaN without any).
    pub fn precision(&self) -> f64 {
        self.predicted_used as f64 / (self.predicted_used + self.predicted_unused) as f64
    }

    /// Hops that found a pipe ÷ hops that looked for one (NaN without any).
    pub fn recall(&self) -> f64 {
        self.used as f64 / (self.used + self.miss) as f64
    }

    /// Pipe openings that a prediction made in time: the first calls that found a predicted
    /// pipe ÷ those and the calls that opened one on demand (NaN without any).
    pub fn openings_predicted(&self) -> f64 {
        self.predicted_used as f64 / (self.predicted_used + self.created_demand) as f64
    }

    /// The median lead time (the mean of the middle two for an even count; NaN without any).
    pub fn median_lead_ms(&self) -> f64 {
        let mut l = self.leads_ms.clone();
        l.sort_unstable();
        match l.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => l[n / 2] as f64,
            n => (l[n / 2 - 1] + l[n / 2]) as f64 / 2.0,
        }
    }

    fn add(&mut self, o: &PipeStats) {
        self.created_predicted += o.created_predicted;
        self.created_demand += o.created_demand;
        self.used += o.used;
        self.miss += o.miss;
        self.predicted_used += o.predicted_used;
        self.predicted_unused += o.predicted_unused;
        self.pending += o.pending;
        self.torn_down += o.torn_down;
        self.leads_ms.extend_from_slice(&o.leads_ms);
        self.idle_ms += o.idle_ms;
        self.wasted_ms += o.wasted_ms;
    }
}

/// The replay: per pair, all pairs, and the events that did not fit, by reason.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PipeReport {
    pub pairs: BTreeMap<(String, String), PipeStats>,
    pub all: PipeStats,
    pub problems: BTreeMap<&'static str, usize>,
}

/// An open pipe.
struct Open {
    created: i64,
    predicted: bool,
    uses: i64,
    last_used: Option<i64>,
    /// Created in `[from, until)`: counts for precision and lead.
    scored: bool,
}

/// Replays `events` (in the order [`parse_pipe_events`] gives). Pipes count for precision and
/// lead when created in `[from, until)`; uses, misses and teardowns when they happen in it.
pub fn replay(events: &[PipeEvent], from: Option<i64>, until: Option<i64>) -> PipeReport {
    let in_scope = |t: i64| from.is_none_or(|f| t >= f) && until.is_none_or(|u| t < u);
    let mut open: BTreeMap<(&str, &str), Open> = BTreeMap::new();
    let mut pairs: BTreeMap<(String, String), PipeStats> = BTreeMap::new();
    let mut problems: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut problem = |why: &'static str| *problems.entry(why).or_default() += 1;
    for e in events {
        let key = (e.source.as_str(), e.target.as_str());
        let stats = pairs.entry((e.source.clone(), e.target.clone())).or_default();
        let scoped = in_scope(e.time);
        match e.kind {
            Kind::Created => {
                if open.contains_key(&key) {
                    problem("created_while_open");
                }
                if scoped {
                    match e.predicted {
                        true => stats.created_predicted += 1,
                        false => stats.created_demand += 1,
                    }
                }
                open.insert(
                    key,
                    Open {
                        created: e.time,
                        predicted: e.predicted,
                        // The missed call that opens a pipe on demand is its first use.
                        uses: i64::from(!e.predicted),
                        last_used: (!e.predicted).then_some(e.time),
                        scored: scoped,
                    },
                );
            }
            Kind::Used => {
                if scoped {
                    stats.used += 1;
                }
                let Some(pipe) = open.get_mut(&key) else {
                    problem("used_without_pipe");
                    continue;
                };
                if pipe.uses == 0 && pipe.predicted {
                    let lead = e.time - pipe.created;
                    if e.lead_ms.is_some_and(|l| l != lead) {
                        problem("lead_ms_disagrees");
                    }
                    if pipe.scored {
                        stats.predicted_used += 1;
                        stats.leads_ms.push(lead);
                    }
                }
                pipe.uses += 1;
                pipe.last_used = Some(e.time);
            }
            Kind::Miss => {
                if scoped {
                    stats.miss += 1;
                }
                if open.contains_key(&key) {
                    problem("miss_with_open_pipe");
                }
            }
            Kind::IdleTimeout => {
                if !open.contains_key(&key) {
                    problem("idle_timeout_without_pipe");
                }
            }
            Kind::TornDown => {
                let Some(pipe) = open.remove(&key) else {
                    problem("torn_down_without_pipe");
                    continue;
                };
                let idle = e.time - pipe.last_used.unwrap_or(pipe.created);
                if e.idle_ms.is_some_and(|i| i != idle) {
                    problem("idle_ms_disagrees");
                }
                if e.uses.is_some_and(|u| u != pipe.uses) {
                    problem("uses_disagrees");
                }
                if pipe.predicted && pipe.uses == 0 && pipe.scored {
                    stats.predicted_unused += 1;
                }
                if scoped {
                    stats.torn_down += 1;
                    stats.idle_ms += idle;
                    if pipe.predicted && pipe.uses == 0 {
                        stats.wasted_ms += idle;
                    }
                }
            }
        }
    }
    for ((source, target), pipe) in open {
        if pipe.predicted && pipe.uses == 0 && pipe.scored {
            pairs
                .get_mut(&(source.to_string(), target.to_string()))
                .expect("every open pipe's pair has stats")
                .pending += 1;
        }
    }
    let mut all = PipeStats::default();
    for s in pairs.values() {
        all.add(s);
    }
    PipeReport { pairs, all, problems }
}
