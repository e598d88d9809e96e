//! The plan of a `[[joins]]` stage (rendered by `render::join`): two inputs, each a source or
//! any output, joined on equal keys into one output of joined rows. Data only; `validate`
//! builds it.
//!
//! | `JoinTime` | matches | state | output |
//! |---|---|---|---|
//! | `Changelog` | equal keys | every row of both sides, for the whole run | a changelog: rows revised when either side changes |
//! | `Interval` | `right.time` in `[left.time - before, left.time + after]` (or `left.UNTIL`) | released as the watermark passes the bounds | insert-only over insert-only inputs |
//! | `Window` | the same window of a tumbling or sliding window | released when the window closes | insert-only; adds `window_start`, `window_end` |
//!
//! A joined row is an event with the left row's time and type; its payload holds the left's
//! columns, then the right's (its time and type as columns too), as [`Columns`] says.

use serde::Serialize;

use crate::event::Accessor;
use crate::expr::Expr;
use crate::model::window::WindowPlan;

/// Inner or left outer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JoinKind {
    /// Pairs that match only.
    Inner,
    /// Also each left row that matches nothing, with the right's columns absent (null).
    Left,
}

/// The upper bound of an interval join on the right row's time.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Upper {
    /// `left.time + after` (ms).
    After(u64),
    /// A left column holding a time (a timestamp, or epoch milliseconds): Nexmark q9's
    /// `expires`. A row without a time there matches nothing.
    Column { field: String, accessor: Accessor },
}

/// Which pairs of equal keys match, and when state is released.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinTime {
    /// Every pair of equal keys (a differential `join`): the output is revised when either
    /// side changes.
    Changelog,
    /// `right.time` within `[left.time - before_ms, upper]`.
    Interval { before_ms: u64, upper: Upper },
    /// Both rows in the same window (each row in every window covering its time).
    Window(WindowPlan),
}

/// The columns one side contributes to a joined row.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Columns {
    /// Every column: the side's payload fields, and (for the right) its time and type fields,
    /// each named `prefix` + its name. `skip` lists payload fields left out (right key
    /// columns named as the left key they equal, as SQL's `USING`).
    All { prefix: String, skip: Vec<String> },
    /// The listed columns: output name, and where the value comes from.
    Listed(Vec<(String, Accessor)>),
}

/// A join stage.
#[derive(Debug, Clone, Serialize)]
pub struct BinaryJoinPlan {
    /// The output's name.
    pub name: String,
    pub kind: JoinKind,
    pub time: JoinTime,
    /// Key columns as written (`left = "right"`), and where their values come from on each side.
    pub on: Vec<(String, String)>,
    pub left_key: Vec<Accessor>,
    pub right_key: Vec<Accessor>,
    pub left_columns: Columns,
    pub right_columns: Columns,
    /// The left's time and type field names: the joined rows' own.
    pub left_fields: (String, String),
    /// The right's time and type field names (its time and type become columns of that name).
    pub right_fields: (String, String),
    /// A condition over the joined row, part of the match (SQL `ON ... AND cond`): for a left
    /// join, a left row none of whose pairs satisfies it is emitted with nulls.
    pub filter: Option<Expr>,
    /// How far each input's timestamps can be ahead of its rows' times (see
    /// [`super::Plan::lag_of`]): a row is complete once the frontier is this far past it.
    pub left_lag_ms: u64,
    pub right_lag_ms: u64,
}

/// The lag of an output whose rows can come arbitrarily long after their time (an interval
/// join bounded by a column): windows after it close when the input ends. Small enough that
/// sums of a few stay far from overflowing.
pub const UNBOUNDED_LAG_MS: u64 = 1 << 50;

impl BinaryJoinPlan {
    /// Whether the output can retract rows it emitted, given whether its inputs can.
    pub fn retracts(&self, inputs_retract: bool) -> bool {
        match self.time {
            JoinTime::Changelog => true,
            _ => inputs_retract,
        }
    }

    /// How far the output's timestamps can be ahead of its rows' (the left's) times.
    pub fn lag_ms(&self) -> u64 {
        let (l, r) = (self.left_lag_ms, self.right_lag_ms);
        match &self.time {
            JoinTime::Changelog => l.max(r),
            // A pair is made when its later row comes, at most `after` past the left's time;
            // an unmatched left row once the frontier passes its bound.
            JoinTime::Interval {
                upper: Upper::After(after),
                ..
            } => l.max(after + r + 1),
            JoinTime::Interval {
                upper: Upper::Column { .. },
                ..
            } => UNBOUNDED_LAG_MS,
            JoinTime::Window(w) => l.max(r) + w.size_ms + 1,
        }
    }
}

/// Why a `fields` entry does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldEntryError {
    #[error("an entry names a column: `\"COLUMN\"` or `\"COLUMN as NAME\"`")]
    Empty,
    #[error("`{0}` is not a field name to give a column")]
    Alias(String),
    #[error(transparent)]
    Path(#[from] crate::event::PathError),
}

/// Parses `"COLUMN"` or `"COLUMN as NAME"` (`as` in any case) into the column's path, its
/// text, and the output name (the alias, or the column as written).
pub fn parse_field_entry(text: &str) -> Result<(crate::event::FieldPath, String, String), FieldEntryError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(FieldEntryError::Empty);
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let (column, name) = match words.as_slice() {
        [c, kw, alias] if kw.eq_ignore_ascii_case("as") => {
            let plain = crate::event::FieldPath::parse(alias)
                .is_ok_and(|p| p.steps.len() == 1 && p.head().is_some_and(|h| h.as_str() == *alias));
            if !plain {
                return Err(FieldEntryError::Alias(alias.to_string()));
            }
            (c.to_string(), alias.to_string())
        }
        _ => (text.to_string(), text.to_string()),
    };
    Ok((crate::event::FieldPath::parse(&column)?, column, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(time: JoinTime) -> BinaryJoinPlan {
        BinaryJoinPlan {
            name: "j".into(),
            kind: JoinKind::Inner,
            time,
            on: Vec::new(),
            left_key: Vec::new(),
            right_key: Vec::new(),
            left_columns: Columns::Listed(Vec::new()),
            right_columns: Columns::Listed(Vec::new()),
            left_fields: ("t".into(), String::new()),
            right_fields: ("t".into(), String::new()),
            filter: None,
            left_lag_ms: 5,
            right_lag_ms: 1,
        }
    }

    #[test]
    fn lags_follow_the_time_condition_and_only_changelogs_always_retract() {
        let after = plan(JoinTime::Interval {
            before_ms: 3,
            upper: Upper::After(100),
        });
        // A pair comes with its right row, up to `after` (plus its lag) past the left's time;
        // an unmatched left row one millisecond after that.
        assert_eq!(after.lag_ms(), 102);
        let until = plan(JoinTime::Interval {
            before_ms: 0,
            upper: Upper::Column {
                field: "expires".into(),
                accessor: Accessor::Payload(crate::event::FieldPath::field("expires")),
            },
        });
        assert_eq!(until.lag_ms(), UNBOUNDED_LAG_MS);
        let window = plan(JoinTime::Window(WindowPlan {
            size_ms: 1_000,
            slide_ms: 500,
        }));
        assert_eq!(window.lag_ms(), 1_006);
        let changelog = plan(JoinTime::Changelog);
        assert_eq!(changelog.lag_ms(), 5);
        assert!(changelog.retracts(false) && !after.retracts(false) && window.retracts(true));
    }

    #[test]
    fn field_entries_take_an_alias() {
        let (p, c, n) = parse_field_entry("date_time as bid_time").unwrap();
        assert_eq!(
            (p.to_string(), c.as_str(), n.as_str()),
            ("date_time".into(), "date_time", "bid_time")
        );
        let (_, c, n) = parse_field_entry(" price ").unwrap();
        assert_eq!((c.as_str(), n.as_str()), ("price", "price"));
        assert_eq!(parse_field_entry(""), Err(FieldEntryError::Empty));
        assert!(matches!(parse_field_entry("a AS b.c"), Err(FieldEntryError::Alias(_))));
        assert!(matches!(parse_field_entry("a..b"), Err(FieldEntryError::Path(_))));
    }
}
