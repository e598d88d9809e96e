//! The Nexmark benchmark's streams (`sluice generate nexmark`): people, auctions and bids, as the
//! reference generator (the `nexmark` crate, a port of Apache Beam's) makes them, written to
//! `DIR/person.parquet`, `DIR/auction.parquet` and `DIR/bid.parquet`.
//!
//! - **Proportions and distributions** are the reference's: of every 50 events, 1 person, 3
//!   auctions and 46 bids; hot sellers, auctions, bidders and channels; 10,000 events per
//!   second at a sine-shaped rate; each event's fields drawn from a generator seeded by its event
//!   number.
//! - **Determinism.** The base time is fixed (2026-01-01 00:00 UTC) instead of the wall clock,
//!   so the same count and seed give the same files. Since the reference seeds every event by
//!   its number, `--seed S` selects which stretch of the reference stream is written: events
//!   `(S − 1) × N` to `S × N − 1` for `--events N`. The default seed, 1 (and 0), is the stream
//!   every Nexmark implementation starts with.
//! - **Columns** are the reference's field names (`date_time` as the time column, a timestamp
//!   in milliseconds, `expires` too); ids, prices and bids are `Int64`.
//! - **Side input.** `DIR/side_input.parquet` is the table query 13 joins bids with: keys 0 to
//!   9,999, each with its decimal text as `value` (the reference loads such a file at start-up),
//!   all dated at the base time, before every event.

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use nexmark::config::NexmarkConfig;
use nexmark::event::Event;
use nexmark::EventGenerator;

use super::write::RowSink;
use super::{progress_bar, ContextFile, GenerateConfig, GenerateError, GenerateSummary};
use crate::value::Value;

/// The fixed base time of every generated stream: 2026-01-01 00:00:00 UTC.
pub const BASE_TIME_MS: u64 = 1_767_225_600_000;

/// The three tables, in the order written.
pub const TABLES: [&str; 3] = ["person", "auction", "bid"];

/// The side input's keys: `0..SIDE_INPUT_KEYS` (query 13 joins on `auction % 10000`).
pub const SIDE_INPUT_KEYS: i64 = 10_000;

fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// The columns of `table` (one of [`TABLES`]).
pub fn schema(table: &str) -> SchemaRef {
    let int = |name: &str| Field::new(name, DataType::Int64, false);
    let text = |name: &str| Field::new(name, DataType::Utf8, false);
    let time = |name: &str| Field::new(name, time_type(), false);
    let fields = match table {
        "side_input" => vec![int("key"), text("value"), time("date_time")],
        "person" => vec![
            int("id"),
            text("name"),
            text("email_address"),
            text("credit_card"),
            text("city"),
            text("state"),
            time("date_time"),
            text("extra"),
        ],
        "auction" => vec![
            int("id"),
            text("item_name"),
            text("description"),
            int("initial_bid"),
            int("reserve"),
            time("date_time"),
            time("expires"),
            int("seller"),
            int("category"),
            text("extra"),
        ],
        _ => vec![
            int("auction"),
            int("bidder"),
            int("price"),
            text("channel"),
            text("url"),
            time("date_time"),
            text("extra"),
        ],
    };
    Arc::new(Schema::new(fields))
}

/// An id, price or time of the generator as an int (they fit: the generator counts events).
fn int(n: usize) -> Value {
    Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
}
fn time(ms: u64) -> Value {
    Value::Time(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// The table index and row of one event.
fn row(event: Event) -> (usize, Vec<Value>) {
    match event {
        Event::Person(p) => (
            0,
            vec![
                int(p.id),
                Value::str(&p.name),
                Value::str(&p.email_address),
                Value::str(&p.credit_card),
                Value::str(&p.city),
                Value::str(&p.state),
                time(p.date_time),
                Value::str(&p.extra),
            ],
        ),
        Event::Auction(a) => (
            1,
            vec![
                int(a.id),
                Value::str(&a.item_name),
                Value::str(&a.description),
                int(a.initial_bid),
                int(a.reserve),
                time(a.date_time),
                time(a.expires),
                int(a.seller),
                int(a.category),
                Value::str(&a.extra),
            ],
        ),
        Event::Bid(b) => (
            2,
            vec![
                int(b.auction),
                int(b.bidder),
                int(b.price),
                Value::str(&b.channel),
                Value::str(&b.url),
                time(b.date_time),
                Value::str(&b.extra),
            ],
        ),
    }
}

/// The events of `--events N --seed S`: the reference stream from event `(S − 1) × N` on.
pub fn events(events: usize, seed: u64) -> impl Iterator<Item = Event> {
    let config = NexmarkConfig {
        base_time: BASE_TIME_MS,
        ..NexmarkConfig::default()
    };
    let offset = seed.saturating_sub(1).saturating_mul(events as u64);
    EventGenerator::new(config).with_offset(offset).take(events)
}

/// Writes the three tables into the directory `config.out` (created if missing).
pub(crate) fn generate(config: &GenerateConfig) -> Result<GenerateSummary, GenerateError> {
    let dir: &Path = &config.out;
    std::fs::create_dir_all(dir).map_err(|source| GenerateError::Io {
        path: dir.into(),
        source,
    })?;
    let mut sinks = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        sinks.push(RowSink::create(&dir.join(format!("{table}.parquet")), schema(table))?);
    }
    let bar = progress_bar(config.events, config.progress);
    let (mut min_time, mut max_time) = (i64::MAX, i64::MIN);
    let mut late = 0;
    for event in events(config.events, config.seed) {
        let t = i64::try_from(event.timestamp()).unwrap_or(i64::MAX);
        if max_time != i64::MIN && t < max_time - super::LATENESS_MS {
            late += 1;
        }
        (min_time, max_time) = (min_time.min(t), max_time.max(t));
        let (table, values) = row(event);
        sinks[table].push(values)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mut context: Vec<ContextFile> = Vec::with_capacity(TABLES.len() + 1);
    for sink in sinks {
        context.push(sink.finish()?);
    }
    let mut side = RowSink::create(&dir.join("side_input.parquet"), schema("side_input"))?;
    for key in 0..SIDE_INPUT_KEYS {
        side.push(vec![Value::Int(key), Value::str(&key.to_string()), time(BASE_TIME_MS)])?;
    }
    let side = side.finish()?;
    let by_type: Vec<(&'static str, usize)> = TABLES.iter().zip(&context).map(|(t, f)| (*t, f.rows)).collect();
    let written = context.iter().map(|f| f.rows).sum();
    context.push(side);
    let summary = GenerateSummary {
        events: written,
        late,
        duplicates: 0,
        users: by_type[0].1,
        sessions: 0,
        min_time: if written == 0 { 0 } else { min_time },
        max_time: if written == 0 { 0 } else { max_time },
        by_type,
        context,
    };
    tracing::info!(?summary, dir = %dir.display(), "generated nexmark streams");
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn proportions_ids_and_times_are_the_reference_generators() {
        let (mut people, mut auctions, mut bids) = (BTreeSet::new(), BTreeSet::new(), 0);
        let mut last = 0;
        for event in events(5_000, 1) {
            assert!(event.timestamp() >= BASE_TIME_MS);
            // The reference generator's events are in time order when unshuffled.
            assert!(event.timestamp() >= last);
            last = event.timestamp();
            match event {
                Event::Person(p) => assert!(people.insert(p.id)),
                Event::Auction(a) => {
                    assert!(a.expires > a.date_time);
                    // A seller is a person so far, or up to `person_id_lead` (10) ahead.
                    let newest = people.last().copied().unwrap_or(1000);
                    assert!((1000..=newest + 10).contains(&a.seller), "{a:?}");
                    assert!(auctions.insert(a.id));
                }
                Event::Bid(b) => {
                    // A bid names a live auction, or one up to `auction_id_lead` (10) ahead.
                    let newest = auctions.last().copied().unwrap_or(1000);
                    assert!((1000..=newest + 10).contains(&b.auction), "{b:?}");
                    bids += 1;
                }
            }
        }
        // 1 : 3 : 46 of every 50 events.
        assert_eq!((people.len(), auctions.len(), bids), (100, 300, 4_600));
        assert_eq!(people.first(), Some(&1000));
        // 10,000 events per second at the start.
        let first_second = events(20_000, 1)
            .take_while(|e| e.timestamp() < BASE_TIME_MS + 1_000)
            .count();
        assert!((9_000..=11_000).contains(&first_second), "{first_second}");
    }

    #[test]
    fn the_seed_selects_a_stretch_of_the_reference_stream() {
        let all: Vec<u64> = events(300, 0).map(|e| e.timestamp()).collect();
        let second: Vec<u64> = events(100, 2).map(|e| e.timestamp()).collect();
        assert_eq!(events(100, 0).next(), events(100, 1).next());
        assert_eq!(&all[100..200], &second[..]);
        assert_eq!(
            format!("{:?}", events(50, 3).collect::<Vec<_>>()),
            format!("{:?}", events(50, 3).collect::<Vec<_>>())
        );
        let rows: Vec<usize> = events(50, 1).map(|e| row(e).1.len()).collect();
        assert!(rows.iter().all(|n| [7, 8, 10].contains(n)));
    }

    #[test]
    fn writes_three_tables() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("nexmark");
        let summary = super::super::generate_with(&GenerateConfig::new("nexmark", 1_000, 1, &out)).unwrap();
        assert_eq!(summary.events, 1_000);
        assert_eq!(summary.by_type, vec![("person", 20), ("auction", 60), ("bid", 920)]);
        for table in TABLES.iter().chain(&["side_input"]) {
            assert!(out.join(format!("{table}.parquet")).exists());
        }
        assert_eq!(summary.late, 0);
        let side = summary.context.last().unwrap();
        assert_eq!(side.rows, SIDE_INPUT_KEYS as usize);
    }
}
