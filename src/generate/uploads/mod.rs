//! The `uploads` scenario: the log of a storage-upload service, with context tables for
//! enrichment joins (geo ranges, user profiles, sensor readings, price ticks).
//!
//! An upload is an `upload_started` row and, 100 ms–45 min later (size over a log-normal
//! throughput, median 8 MB/s), an `upload_completed` (93%) or `upload_failed` (5%) row with the
//! same `upload_id` and payload; 2% are abandoned without a final row. Uploads start as a Poisson
//! process from 2024-03-04T00:00:00Z, paced so that `n` rows span about `max(1 h, n × 8.64 ms)`
//! (ten million rows a simulated day). Users `1..=U` (default `U = max(10, n / 20)`) are skewed:
//! the lowest ids (the oldest accounts) upload most.
//!
//! Delivery, as in `learning`: rows come out in arrival order, most within a second, the rest up
//! to 30 s late, ~0.1% 10–60 min late; ~3% of rows are duplicate deliveries (the same row again,
//! 0.5–20 s after the original).
//!
//! | column         | type                 | meaning                                                 |
//! |----------------|----------------------|---------------------------------------------------------|
//! | `event_time`   | `Timestamp(ms, UTC)` | when the upload started, completed or failed            |
//! | `event_type`   | `Utf8`               | `upload_started`, `upload_completed`, `upload_failed`   |
//! | `upload_id`    | `Utf8`               | `u-` and 16 hex digits, shared by an upload's rows      |
//! | `user_id`      | `Int64`              | `1..=U`, the key of `profiles.parquet`                  |
//! | `uploader_ip`  | `Utf8`               | ~80% IPv4, ~20% IPv6; ~99% inside a `geo.parquet` range (85% the user's home range of that family), ~1% outside every range |
//! | `sensor_id`    | `Utf8`               | the user's device sensor, `s-0001`–`s-0120`, the key of `sensors.parquet` |
//! | `symbol`       | `Utf8`               | a ticker (Zipf over 20), the key of `prices.parquet`    |
//! | `bytes`        | `Int64`              | the file size (log-normal around the content type's median) |
//! | `content_type` | `Utf8`               | a MIME type (`image/jpeg`, `video/mp4`, `text/csv`, …)  |
//! | `bucket`       | `Utf8`               | `user-media`, `thumbnails`, `documents`, `backups`, `datasets` or `logs`, by content type |
//!
//! No column is ever null. With `--context DIR` the run also writes, from the same seed:
//!
//! `DIR/geo.parquet` ([`geo`]), one row per range, in address order:
//!
//! | column       | type                 | meaning                                                   |
//! |--------------|----------------------|-----------------------------------------------------------|
//! | `cidr`       | `Utf8`               | `1.2.0.0/16`-style or `2a3f:91c2::/32`-style block        |
//! | `country`    | `Utf8`               | ISO country                                               |
//! | `city`       | `Utf8`               | city name (ASCII)                                         |
//! | `latitude`, `longitude` | `Float64` | the city's coordinates ±0.05°, 4 decimals                 |
//! | `updated_at` | `Timestamp(ms, UTC)` | the snapshot time, one day before the log                 |
//!
//! `R` ranges (`--ranges`, default 1000; ~75% IPv4, at least one IPv6) that never overlap.
//!
//! `DIR/profiles.parquet`, a changing table sorted by `updated_at` (then `user_id`):
//!
//! | column         | type                 | meaning                                       |
//! |----------------|----------------------|-----------------------------------------------|
//! | `user_id`      | `Int64`              | `1..=U`                                       |
//! | `updated_at`   | `Timestamp(ms, UTC)` | when this version took effect                 |
//! | `subscription` | `Utf8`               | `free` (70% at signup), `premium`, `family`   |
//! | `language`     | `Utf8`               | preferred language (ISO 639-1) of the country |
//! | `country`      | `Utf8`               | mostly the country of the user's home IPv4 range |
//!
//! Every user signs up before the log (ids in signup order over the three years before it);
//! ~15% then change once or twice during the log (upgrade, downgrade, new language, or a move
//! to another country), so as-of joins differ from "latest" joins.
//!
//! `DIR/sensors.parquet`, sorted by `reading_time` (then `sensor_id`):
//!
//! | column         | type                 | meaning                               |
//! |----------------|----------------------|---------------------------------------|
//! | `sensor_id`    | `Utf8`               | `s-0001`–`s-0120`                     |
//! | `reading_time` | `Timestamp(ms, UTC)` | when the sensor read                  |
//! | `temperature`  | `Float64`            | °C, a daily cycle plus noise          |
//! | `humidity`     | `Float64`            | %, 5–100                              |
//! | `pressure`     | `Float64`            | hPa, around 1013                      |
//!
//! Each sensor reads every 30–60 s from 10 min before the first event to a minute after the
//! last, except that ~2% of the intervals are gaps of 3–12 min (so a `max_age` of 2 min misses).
//!
//! `DIR/prices.parquet`, sorted by `price_time` (then `symbol`):
//!
//! | column       | type                 | meaning                               |
//! |--------------|----------------------|---------------------------------------|
//! | `symbol`     | `Utf8`               | one of the 20 tickers                 |
//! | `price_time` | `Timestamp(ms, UTC)` | when the tick happened                |
//! | `price`      | `Float64`            | a random walk, in cents               |
//! | `volume`     | `Int64`              | shares traded, in lots of 100         |
//!
//! Each symbol ticks every 0.5–6 s from 5 min before the first event to 10 s after the last,
//! with ~0.2% of intervals being halts of 1–10 min.
//!
//! Memory stays bounded: events, sensor readings and prices stream out a row group at a time;
//! geo ranges are computed one by one; profiles keep only the in-log changes (~0.2 rows per
//! user) before sorting them.

pub mod context;
pub mod geo;
pub mod schema;
#[cfg(test)]
mod tests;
pub mod vocab;

use std::collections::BTreeMap;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Exp1, StandardNormal};

use super::learning::START_MS;
use super::schema::{TIME_FIELD, TYPE_FIELD};
use super::{open_sink, progress_bar, GenerateConfig, GenerateError, GenerateSummary, Sink, LATENESS_MS};
use crate::format::{write_ndjson_event, ROW_GROUP_ROWS};
use geo::Geo;
use vocab::{BUCKETS, CONTENT_TYPES, SENSORS, SYMBOLS};

const HOUR_MS: i64 = 3_600_000;
/// Nominal milliseconds per row once the span exceeds an hour (ten million rows a day).
const MS_PER_ROW: f64 = 8.64;
const P_ABANDON: f64 = 0.02;
const P_FAIL: f64 = 0.05;
const P_DUPLICATE: f64 = 0.03;
const P_LATE: f64 = 0.001;
const P_V6: f64 = 0.2;
const P_OUTSIDE: f64 = 0.01;
const P_HOME: f64 = 0.85;
/// Mean rows per upload: a start, a final row unless abandoned, and duplicates of both.
const ROWS_PER_UPLOAD: f64 = (2.0 - P_ABANDON) * (1.0 + P_DUPLICATE);
/// The default number of geo ranges.
pub const DEFAULT_RANGES: usize = 1000;

/// The default number of users for `events` rows.
pub fn default_users(events: usize) -> usize {
    (events / 20).max(10)
}

/// The event types, by `Kind` discriminant.
pub const EVENT_TYPES: [&str; 3] = ["upload_started", "upload_completed", "upload_failed"];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Kind {
    #[default]
    Started,
    Completed,
    Failed,
}

/// One generated row.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Row {
    pub time: i64,
    pub kind: Kind,
    pub duplicate: bool,
    pub upload: u64,
    /// 1-based.
    pub user: u32,
    pub ip: u128,
    pub v6: bool,
    /// 1-based.
    pub sensor: u16,
    pub symbol: u8,
    pub bytes: i64,
    pub content_type: u8,
    pub bucket: u8,
}

/// The simulation: upload starts and an end-time-ordered queue of open uploads feeding an
/// arrival-ordered buffer.
pub(crate) struct Uploads {
    rng: ChaCha8Rng,
    pub salt: u64,
    pub users: u32,
    pub geo: Geo,
    type_cdf: Vec<f64>,
    symbol_cdf: Vec<f64>,
    /// Final rows of open uploads by (event time, upload).
    open: BTreeMap<(i64, u64), Row>,
    /// Rows awaiting delivery by (arrival time, emission order).
    pending: BTreeMap<(i64, u64), Row>,
    /// Mean milliseconds between upload starts.
    gap: f64,
    next_start: i64,
    clock: i64,
    seq: u64,
    pub uploads: u64,
}

fn cdf(weights: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut acc = 0.0;
    let mut out: Vec<f64> = weights
        .into_iter()
        .map(|w| {
            acc += w;
            acc
        })
        .collect();
    out.iter_mut().for_each(|c| *c /= acc);
    out
}

fn pick(cdf: &[f64], rng: &mut ChaCha8Rng) -> usize {
    let u: f64 = rng.random();
    cdf.partition_point(|&c| c <= u).min(cdf.len() - 1)
}

/// The sensor of user `user`'s device (1-based).
pub(crate) fn sensor_of(salt: u64, user: u32) -> u16 {
    1 + (super::schema::mix(salt ^ u64::from(user).rotate_left(40)) % u64::from(SENSORS)) as u16
}

impl Uploads {
    pub(crate) fn new(seed: u64, events: usize, users: usize, ranges: usize) -> Uploads {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let span = (HOUR_MS as f64).max(events as f64 * MS_PER_ROW);
        Uploads {
            salt: rng.random(),
            rng,
            users: users.clamp(1, u32::MAX as usize) as u32,
            geo: Geo::new(seed, ranges),
            type_cdf: cdf(CONTENT_TYPES.iter().map(|c| f64::from(c.2))),
            symbol_cdf: cdf((1..=SYMBOLS.len()).map(|r| (r as f64).powf(-1.1))),
            open: BTreeMap::new(),
            pending: BTreeMap::new(),
            gap: span * ROWS_PER_UPLOAD / events.max(1) as f64,
            next_start: START_MS,
            clock: START_MS,
            seq: 0,
            uploads: 0,
        }
    }

    /// The next row in arrival order.
    pub(crate) fn next_row(&mut self) -> Row {
        loop {
            match self.pending.first_key_value() {
                Some((&(arrival, _), _)) if arrival <= self.clock => {
                    return self.pending.pop_first().expect("not empty").1;
                }
                _ => self.step(),
            }
        }
    }

    /// Advances to the next upload start or final row.
    fn step(&mut self) {
        let open_next = self.open.first_key_value().map_or(i64::MAX, |(k, _)| k.0);
        if self.next_start <= open_next {
            let t = self.next_start;
            self.clock = t;
            self.next_start = t + 1 + (self.gap * self.rng.sample::<f64, _>(Exp1)) as i64;
            self.start(t);
        } else {
            let (_, row) = self.open.pop_first().expect("not empty");
            self.clock = row.time;
            self.emit(row);
        }
    }

    /// Starts an upload at `t`: emits its start row and queues its final row.
    fn start(&mut self, t: i64) {
        self.uploads += 1;
        let rng = &mut self.rng;
        let user = 1 + (f64::from(self.users) * rng.random::<f64>().powi(2)) as u32;
        let user = user.min(self.users);
        let v6 = rng.random_bool(P_V6);
        let range = match rng.random_bool(P_HOME) {
            true => self.geo.home(user, v6),
            false if v6 => self.geo.v4 + rng.random_range(0..self.geo.v6),
            false => rng.random_range(0..self.geo.v4),
        };
        let ip = match rng.random_bool(P_OUTSIDE) {
            true => self.geo.outside(range, rng.random()),
            false => self.geo.inside(range, rng.random()),
        };
        let content_type = pick(&self.type_cdf, rng);
        let (_, median, _, buckets) = CONTENT_TYPES[content_type];
        let bucket = buckets[rng.random_range(0..buckets.len())];
        let z: f64 = rng.sample(StandardNormal);
        let bytes = (median * z.exp()).clamp(64.0, 2e10).round();
        let z: f64 = rng.sample(StandardNormal);
        let throughput = 8e6 * (0.8 * z).exp();
        let duration = (rng.random_range(100.0..500.0) + bytes * 1000.0 / throughput).min(45.0 * 60_000.0);
        let row = Row {
            time: t,
            kind: Kind::Started,
            duplicate: false,
            upload: self.uploads,
            user,
            ip,
            v6,
            sensor: sensor_of(self.salt, user),
            symbol: pick(&self.symbol_cdf, rng) as u8,
            bytes: bytes as i64,
            content_type: content_type as u8,
            bucket: BUCKETS.iter().position(|b| *b == bucket).expect("a known bucket") as u8,
        };
        let u: f64 = rng.random();
        let end = if u < P_ABANDON {
            None
        } else if u < P_ABANDON + P_FAIL {
            let at = rng.random_range(0.05..0.95) * duration;
            Some((Kind::Failed, at))
        } else {
            Some((Kind::Completed, duration))
        };
        self.emit(row);
        if let Some((kind, after)) = end {
            let time = t + 1 + after as i64;
            self.open.insert((time, row.upload), Row { time, kind, ..row });
        }
    }

    /// Queues `row` for delivery with an arrival delay, and sometimes a duplicate delivery.
    fn emit(&mut self, row: Row) {
        let rng = &mut self.rng;
        let u: f64 = rng.random();
        let delay = if u < P_LATE {
            rng.random_range(10 * 60_000..=60 * 60_000)
        } else if u < 0.6 {
            rng.random_range(0..1_000)
        } else {
            ((6_000.0 * rng.sample::<f64, _>(Exp1)) as i64).min(30_000)
        };
        let arrival = row.time + delay;
        self.pending.insert((arrival, self.seq), row);
        if rng.random_bool(P_DUPLICATE) {
            let redelivery = arrival + rng.random_range(500..20_000);
            let dup = Row { duplicate: true, ..row };
            self.pending.insert((redelivery, self.seq + 1), dup);
        }
        self.seq += 2;
    }
}

/// Writes the `uploads` log of `config` and, with `config.context`, its context tables.
pub(super) fn generate(config: &GenerateConfig) -> Result<GenerateSummary, GenerateError> {
    let (events, out) = (config.events, config.out.as_path());
    let io_err = |source| GenerateError::Io {
        path: out.into(),
        source,
    };
    let users = config.users.unwrap_or_else(|| default_users(events));
    let ranges = config.ranges.unwrap_or(DEFAULT_RANGES);
    let mut sink = open_sink(out, schema::schema())?;
    let bar = progress_bar(events, config.progress);
    let mut g = Uploads::new(config.seed, events, users, ranges);
    let (mut late, mut duplicates, mut max_time, mut min_time) = (0, 0, i64::MIN, i64::MAX);
    let mut by_kind = [0usize; 3];
    let mut rows = Vec::with_capacity(ROW_GROUP_ROWS.min(events));
    let mut written = 0;
    while written < events {
        rows.clear();
        for _ in 0..ROW_GROUP_ROWS.min(events - written) {
            let r = g.next_row();
            late += usize::from(r.time < max_time.saturating_sub(LATENESS_MS));
            duplicates += usize::from(r.duplicate);
            by_kind[r.kind as usize] += 1;
            (max_time, min_time) = (max_time.max(r.time), min_time.min(r.time));
            rows.push(r);
        }
        match &mut sink {
            Sink::Parquet(s) => {
                let batch = schema::batch(&g, &rows).map_err(|source| GenerateError::Arrow {
                    path: out.into(),
                    source,
                })?;
                s.write(&batch)?;
                s.flush()?;
            }
            Sink::Ndjson(w) => {
                for r in &rows {
                    write_ndjson_event(w, &schema::event(&g, r), TIME_FIELD, TYPE_FIELD).map_err(io_err)?;
                }
            }
        }
        written += rows.len();
        bar.inc(rows.len() as u64);
    }
    match sink {
        Sink::Parquet(s) => s.close()?,
        Sink::Ndjson(mut w) => std::io::Write::flush(&mut w).map_err(io_err)?,
    }
    bar.finish_and_clear();
    let (min_time, max_time) = if written == 0 { (0, 0) } else { (min_time, max_time) };
    let context = match &config.context {
        Some(dir) => write_context(&g, config.seed, dir, min_time, max_time)?,
        None => Vec::new(),
    };
    let mut by_type: Vec<_> = EVENT_TYPES.iter().copied().zip(by_kind).collect();
    by_type.sort();
    let summary = GenerateSummary {
        events: written,
        late,
        duplicates,
        users: g.users as usize,
        sessions: g.uploads,
        min_time,
        max_time,
        by_type,
        context,
    };
    tracing::info!(?summary, path = %out.display(), "generated uploads log");
    Ok(summary)
}

/// Writes the four context tables of `g`'s log, whose event times lie in `[min_time, max_time]`
/// (both 0 for an empty log).
fn write_context(
    g: &Uploads,
    seed: u64,
    dir: &Path,
    min_time: i64,
    max_time: i64,
) -> Result<Vec<super::ContextFile>, GenerateError> {
    let (from, to) = match max_time {
        0 => (START_MS, START_MS),
        _ => (min_time, max_time),
    };
    Ok(vec![
        context::write_geo(&g.geo, &dir.join("geo.parquet"))?,
        context::write_profiles(g, seed, &dir.join("profiles.parquet"), to)?,
        context::write_sensors(seed, &dir.join("sensors.parquet"), from, to)?,
        context::write_prices(seed, &dir.join("prices.parquet"), from, to)?,
    ])
}
