//! Context streams made from a `learning` NDJSON log, for the tests and benchmarks that serve
//! stateful stages over three tcp sources (`tests/integration/serve_snapshots.rs`,
//! `benches/wal.rs`, which includes this file by path).

// Each includer uses one of the item rules.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// How item rows are made.
#[derive(Clone, Copy)]
pub enum Items {
    /// When an item is first seen and, for a quarter of the items, a new level at its fifth event:
    /// few changes, most rows early in event time.
    FirstAndChange,
    /// For every `n`-th event with an item, its level (which never changes): rows spread evenly
    /// over event time, so the stream keeps pace with the events when both are sent at steady
    /// rates.
    Every(usize),
}

/// Context streams made from the events, in their order (so at their times): a profile row for
/// every 20th event with a user (`user_id`, `tier`), and item rows (`item_id`, `level`) as
/// `items` says. Written to `dir/profiles.ndjson` and `dir/items.ndjson`, with `updated_at` their
/// time.
pub fn contexts(dir: &Path, events: &Path, items_rule: Items) -> (PathBuf, PathBuf) {
    let text = std::fs::read_to_string(events).unwrap();
    let (mut profiles, mut items) = (String::new(), String::new());
    let mut seen = std::collections::HashMap::new();
    let mut with_item = 0;
    for (i, line) in text.lines().enumerate() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        let t = &e["event_time"];
        if i % 20 == 0 && !e["user_id"].is_null() {
            let tier = format!("t{}", i / 20 % 3);
            let row = serde_json::json!({"updated_at": t, "user_id": e["user_id"], "tier": tier});
            writeln!(profiles, "{row}").unwrap();
        }
        if let Some(item) = e["item_id"].as_i64() {
            let n = seen.entry(item).or_insert(0);
            *n += 1;
            with_item += 1;
            let level = match (items_rule, *n) {
                (Items::FirstAndChange, 1) => Some(item % 5),
                (Items::FirstAndChange, 5) if item % 4 == 0 => Some(item % 5 + 10),
                (Items::Every(every), _) if with_item % every == 0 => Some(item % 5),
                _ => None,
            };
            if let Some(level) = level {
                let row = serde_json::json!({"updated_at": t, "item_id": item, "level": level});
                writeln!(items, "{row}").unwrap();
            }
        }
    }
    let (p, it) = (dir.join("profiles.ndjson"), dir.join("items.ndjson"));
    std::fs::write(&p, profiles).unwrap();
    std::fs::write(&it, items).unwrap();
    (p, it)
}
