//! The plan of a `[[top_n]]` stage (rendered by `render::top_n`): per partition, the first `n`
//! rows of its input in `order_by` order. Data only; `validate` builds it.

use serde::Serialize;

use crate::event::{Accessor, FieldPath};

/// One `order_by` entry: a field and its direction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderKey {
    /// The field as written (`bids`, `device.os`).
    pub field: String,
    pub accessor: Accessor,
    /// Largest first.
    pub desc: bool,
}

/// A top-N stage.
#[derive(Debug, Clone, Serialize)]
pub struct TopNPlan {
    /// The output's name.
    pub name: String,
    /// Partition columns as written, and where their values come from.
    pub partition_by: Vec<(String, Accessor)>,
    /// Most significant first. Ties after these are broken by the event time, earlier first,
    /// then the event type and the payload in their canonical `Value` order.
    pub order_by: Vec<OrderKey>,
    /// Rows kept per partition (at least 1).
    pub n: u64,
    /// Keep every row tied with the `n`-th on `order_by` (`RANK() <= n`) rather than exactly
    /// `n` (`ROW_NUMBER() <= n`).
    pub with_ties: bool,
    /// A payload field receiving each row's 1-based rank.
    pub rank: Option<String>,
    /// The input never retracts: rows below the `n`-th place can never come back, so they are
    /// dropped and a partition holds at most its top rows.
    pub monotonic: bool,
    /// Windowed partitions (partitioned by `window_start`, `window_end` or `window_time` of
    /// an aggregate's rows): every row of a partition has one event time `e`, and no update
    /// reaches it at or after `e + release_lag_ms`, when its state is dropped. `None`: a
    /// partition's state is kept for the whole run.
    pub release_lag_ms: Option<u64>,
}

/// Why an `order_by` entry does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderByError {
    #[error("an `order_by` entry names a field: `\"FIELD\"`, `\"FIELD asc\"` or `\"FIELD desc\"`")]
    Empty,
    #[error("unknown direction `{0}`: write `asc` or `desc` after the field")]
    Direction(String),
    #[error(transparent)]
    Path(#[from] crate::event::PathError),
}

/// Parses `"FIELD"`, `"FIELD asc"` or `"FIELD desc"` (the direction in any case) into the field
/// path, the text of the field and whether it sorts descending.
pub fn parse_order_key(text: &str) -> Result<(FieldPath, String, bool), OrderByError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(OrderByError::Empty);
    }
    let (field, desc) = match text.rsplit_once(char::is_whitespace) {
        None => (text, false),
        Some((field, dir)) => match dir.to_ascii_lowercase().as_str() {
            "asc" => (field.trim_end(), false),
            "desc" => (field.trim_end(), true),
            // A quoted name with a space in it (`` `odd name` ``).
            _ if text.contains('`') => (text, false),
            _ => return Err(OrderByError::Direction(dir.to_string())),
        },
    };
    Ok((FieldPath::parse(field)?, field.to_string(), desc))
}

/// The payload columns that make a partition windowed over an aggregate's rows.
pub const WINDOW_COLUMNS: [&str; 3] = ["window_start", "window_end", super::WINDOW_TIME];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_keys_take_a_direction() {
        let (p, f, desc) = parse_order_key("bids desc").unwrap();
        assert_eq!((p.to_string(), f.as_str(), desc), ("bids".into(), "bids", true));
        let (_, f, desc) = parse_order_key(" price  ASC ").unwrap();
        assert_eq!((f.as_str(), desc), ("price", false));
        let (_, f, desc) = parse_order_key("device.os").unwrap();
        assert_eq!((f.as_str(), desc), ("device.os", false));
        assert_eq!(
            parse_order_key("bids down"),
            Err(OrderByError::Direction("down".into()))
        );
        assert_eq!(parse_order_key("  "), Err(OrderByError::Empty));
        assert!(matches!(parse_order_key("a..b desc"), Err(OrderByError::Path(_))));
    }
}
