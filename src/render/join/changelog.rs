//! Changelog equi-join: `left: Collection<Event>` × `right: Collection<Event>` →
//! `Collection<JoinOut>`, by differential's `join` on the key values. Times are event-time
//! ticks: a pair appears at the time its later row does and is retracted when either row is;
//! the joined row keeps the left's event time. Both sides are kept for the whole run.
//!
//! ```text
//!  left ──key──► arrange ─┐
//!                         ├─ join_core ─► pairs ─ where ─► rows ───────────────────────────┐
//!  right ─key──► arrange ─┘                 │                                              │
//!                        (left join) passing pairs' left rows ─ distinct ─┐                ├─► out
//!  left ───────────────────────────────────────────── minus semijoin ─────┴─► unmatched ──┘
//! ```

use differential_dataflow::VecCollection;

use super::{key_of, JoinOut, Shape};
use crate::event::Event;
use crate::plan::join::{BinaryJoinPlan, JoinKind};
use crate::render::EventsOf;

/// Joins `left` and `right` on the plan's keys as a changelog.
pub fn render<'s>(
    left: EventsOf<'s>,
    right: EventsOf<'s>,
    plan: &BinaryJoinPlan,
) -> VecCollection<'s, u64, JoinOut, isize> {
    let name = &plan.name;
    let (lk, rk) = (plan.left_key.clone(), plan.right_key.clone());
    let left_keyed = left
        .clone()
        .flat_map(move |e| key_of(&lk, &e).map(|k| (k, e)))
        .arrange_by_key_named(&format!("JoinLeft({name})"));
    let right_keyed = right
        .flat_map(move |e| key_of(&rk, &e).map(|k| (k, e)))
        .arrange_by_key_named(&format!("JoinRight({name})"));
    let shape = Shape::new(plan);
    // Each pair: its row, and whether it passes `where` (a failure is a dead letter).
    let pairs = left_keyed.join_core(right_keyed, move |_k, l: &Event, r: &Event| {
        let row = shape.row(l, Some(r), None);
        Some(match shape.passes(&row) {
            Ok(true) => Ok((l.clone(), row)),
            Ok(false) => Err(None),
            Err(letter) => Err(Some(*letter)),
        })
    });
    let rows = pairs.clone().flat_map(|p| match p {
        Ok((_, row)) => Some(JoinOut::Row(row)),
        Err(None) => None,
        Err(Some(letter)) => Some(JoinOut::Dead(Box::new(letter))),
    });
    if plan.kind == JoinKind::Inner {
        return rows;
    }
    // Left rows with at least one passing pair, once each.
    let matched = pairs
        .flat_map(|p| p.ok().map(|(l, _)| l))
        .threshold_named(&format!("JoinMatched({name})"), |_, c: &isize| isize::from(*c > 0));
    let all = left.map(|e| (e, ()));
    let with_match = all.clone().semijoin(matched).map(|(e, ())| e);
    let shape = Shape::new(plan);
    let unmatched = all
        .map(|(e, ())| e)
        .concat(with_match.negate())
        .map(move |e| JoinOut::Row(shape.row(&e, None, None)));
    rows.concat(unmatched)
}
