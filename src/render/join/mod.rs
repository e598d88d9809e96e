//! Joins of two inputs (`[[joins]]`): `left: Collection<Event>` × `right: Collection<Event>` →
//! `joined: Collection<Event>` (plus dead letters). Times are event-time ticks; a joined row
//! has the left row's event time and type.
//!
//! ```text
//!  left ──(key)──┐   changelog (differential join, both sides kept) ──┐
//!                ├─► or timed (interval / window; released by the      ├──► joined rows ──► output
//!  right ─(key)──┘   watermark, `timed.rs`)                            │    (± for changelogs)
//!                                                  `where` failures ──┴──► dead letters
//! ```
//!
//! - [`changelog`]: every pair of rows with equal keys, maintained by differential's `join`:
//!   a change on either side revises the pairs at the time of the change. A left join adds the
//!   left rows no pair of which passes `where`, and retracts them when one arrives.
//! - [`timed`]: interval and window joins over insert-only inputs, applied one time at a time.
//!   A pair is emitted when its later row arrives; a row's state is released once the frontier
//!   is past the last time a partner could have (its bound plus the other side's lag), and a
//!   left join then emits an unmatched left row once, at that time.
//! - Keys with a null value match nothing. Both sides are partitioned by their key values, so
//!   the output does not depend on the number of workers.

pub mod changelog;
pub mod timed;

use serde::{Deserialize, Serialize};

use crate::dead_letter::DeadLetter;
use crate::event::{Accessor, Event};
use crate::plan::join::{BinaryJoinPlan, Columns, JoinTime};
use crate::value::{format_time, Sym, Value};

/// What the join operators emit.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum JoinOut {
    Row(Event),
    Dead(Box<DeadLetter>),
}

/// A join stage in the plan's graph: its joined rows as the main collection (events with the
/// left's time and type fields).
pub fn stage<'s>(
    left: crate::render::EventsOf<'s>,
    right: crate::render::EventsOf<'s>,
    plan: &BinaryJoinPlan,
) -> crate::render::StageOut<'s> {
    let out = match plan.time {
        JoinTime::Changelog => changelog::render(left, right, plan),
        _ => timed::render(left, right, plan),
    };
    let [rows, dead] = crate::render::split_into(out, |o| match o {
        JoinOut::Row(_) => 0,
        JoinOut::Dead(_) => 1,
    });
    crate::render::StageOut {
        main: crate::render::Coll::Events(rows.flat_map(|o| match o {
            JoinOut::Row(e) => Some(e),
            JoinOut::Dead(_) => None,
        })),
        ports: Vec::new(),
        errs: vec![dead.flat_map(|o| match o {
            JoinOut::Dead(d) => Some(*d),
            JoinOut::Row(_) => None,
        })],
    }
}

/// The key values of `event`; `None` when one is missing or null (it matches nothing).
pub(crate) fn key_of(key: &[Accessor], event: &Event) -> Option<Vec<Value>> {
    key.iter()
        .map(|a| a.get(event).filter(|v| !matches!(v, Value::Null)))
        .collect()
}

/// Builds joined rows: the left's columns, the window's, then the right's (absent for a left
/// row without a match).
#[derive(Clone)]
pub(crate) struct Shape {
    plan: BinaryJoinPlan,
    right_time: Sym,
    right_type: Option<Sym>,
    rule_fields: [Sym; 3],
}

impl Shape {
    pub fn new(plan: &BinaryJoinPlan) -> Shape {
        let prefix = match &plan.right_columns {
            Columns::All { prefix, .. } => prefix.as_str(),
            Columns::Listed(_) => "",
        };
        let (rt, ry) = &plan.right_fields;
        Shape {
            plan: plan.clone(),
            right_time: Sym::new(&format!("{prefix}{rt}")),
            right_type: (!ry.is_empty()).then(|| Sym::new(&format!("{prefix}{ry}"))),
            rule_fields: ["_marks", "_routes", "_hints"].map(Sym::new),
        }
    }

    /// The joined row of `left` and `right` (in the window starting at `window`).
    pub fn row(&self, left: &Event, right: Option<&Event>, window: Option<i64>) -> Event {
        let (lt, ly) = &self.plan.left_fields;
        let mut payload: Vec<(Sym, Value)> = match &self.plan.left_columns {
            Columns::All { .. } => left.payload.to_vec(),
            Columns::Listed(list) => list
                .iter()
                // The left's time and type are the row's own.
                .filter(|(name, a)| {
                    !(matches!(a, Accessor::Time) && name == lt || matches!(a, Accessor::Type) && name == ly)
                })
                .map(|(name, a)| (Sym::new(name), a.get(left).unwrap_or(Value::Null)))
                .collect(),
        };
        if let (Some(start), JoinTime::Window(w)) = (window, &self.plan.time) {
            payload.push((Sym::new("window_start"), Value::Time(start)));
            payload.push((Sym::new("window_end"), Value::Time(start + w.size_ms as i64)));
        }
        match (&self.plan.right_columns, right) {
            (Columns::All { prefix, skip }, Some(r)) => {
                for (k, v) in r.payload.iter() {
                    if skip.iter().any(|s| s == k.as_str()) || self.rule_fields.contains(k) {
                        continue;
                    }
                    let name = if prefix.is_empty() {
                        *k
                    } else {
                        Sym::new(&format!("{prefix}{k}"))
                    };
                    payload.push((name, v.clone()));
                }
                payload.push((self.right_time, Value::Time(r.time)));
                if let Some(ty) = self.right_type {
                    payload.push((ty, Value::str(r.kind.as_str())));
                }
            }
            (Columns::Listed(list), r) => {
                for (name, a) in list {
                    let v = r.and_then(|r| a.get(r)).unwrap_or(Value::Null);
                    payload.push((Sym::new(name), v));
                }
            }
            (Columns::All { .. }, None) => {}
        }
        Event::new(left.time, left.kind, payload)
    }

    /// Whether the joined `row` passes `where`: `Err` with its dead letter when the condition
    /// fails to evaluate.
    pub fn passes(&self, row: &Event) -> Result<bool, Box<DeadLetter>> {
        let Some(filter) = &self.plan.filter else {
            return Ok(true);
        };
        filter.is_true(row).map_err(|e| {
            let (lt, ly) = &self.plan.left_fields;
            Box::new(DeadLetter {
                stage: format!("join:{}", self.plan.name),
                reason: "eval_error".to_string(),
                detail: format!("where: {e}"),
                location: format!("{} row at {}", row.kind, format_time(row.time)),
                record: row.json_text(lt, ly),
                event_time: Some(row.time),
                original: None,
            })
        })
    }
}
