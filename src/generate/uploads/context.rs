//! The `uploads` context tables (columns in [`super`]): geo ranges, profiles, sensor readings
//! and price ticks, each written in time order a row group at a time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::f64::consts::TAU;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Exp1, StandardNormal};

use super::geo::{Geo, Range};
use super::vocab::{CITIES, SENSORS, SYMBOLS};
use super::Uploads;
use crate::generate::learning::START_MS;
use crate::generate::learning_context::SUBSCRIPTIONS;
use crate::generate::table::{round, time_column, time_field, ContextFile, TableWriter};
use crate::generate::vocab::language;
use crate::generate::GenerateError;

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;
/// Users signed up over the three years before the log.
const SIGNUP_SPAN_MS: i64 = 3 * 365 * DAY_MS;
const P_CHANGE: f64 = 0.15;
const P_SENSOR_GAP: f64 = 0.02;
const P_HALT: f64 = 0.002;

fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}

fn float(name: &str) -> Field {
    Field::new(name, DataType::Float64, false)
}

fn strings<R>(rows: &[R], f: impl Fn(&R, &mut StringBuilder)) -> ArrayRef {
    let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 8);
    rows.iter().for_each(|r| f(r, &mut b));
    Arc::new(b.finish())
}

fn floats<R>(rows: &[R], f: impl Fn(&R) -> f64) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(rows.iter().map(f)))
}

/// The schema of `geo.parquet`.
pub fn geo_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        utf8("cidr"),
        utf8("country"),
        utf8("city"),
        float("latitude"),
        float("longitude"),
        time_field("updated_at"),
    ]))
}

/// The time of the geo snapshot: a day before the log.
pub const GEO_SNAPSHOT_MS: i64 = START_MS - DAY_MS;

/// A range and its (country, city, latitude, longitude).
type GeoRow = (Range, (&'static str, &'static str, f64, f64));

fn geo_batch(schema: &SchemaRef, rows: &[GeoRow]) -> Result<RecordBatch, ArrowError> {
    let mut cidr = StringBuilder::with_capacity(rows.len(), rows.len() * 18);
    for (range, _) in rows {
        range
            .write_cidr(&mut cidr)
            .map_err(|_| ArrowError::ComputeError("formatting a CIDR".into()))?;
        cidr.append_value("");
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(cidr.finish()),
        strings(rows, |r, b| b.append_value(r.1 .0)),
        strings(rows, |r, b| b.append_value(r.1 .1)),
        floats(rows, |r| r.1 .2),
        floats(rows, |r| r.1 .3),
        time_column(rows.iter().map(|_| GEO_SNAPSHOT_MS)),
    ];
    RecordBatch::try_new(schema.clone(), columns)
}

/// Writes every range of `geo`, in address order.
pub(crate) fn write_geo(geo: &Geo, path: &Path) -> Result<ContextFile, GenerateError> {
    let mut w = TableWriter::create(path, geo_schema(), geo_batch)?;
    (0..geo.len()).try_for_each(|i| w.push((geo.range(i), geo.place(i))))?;
    w.finish()
}

#[derive(Clone, Copy, Debug)]
struct ProfileRow {
    time: i64,
    user: u32,
    subscription: u8,
    language: &'static str,
    country: &'static str,
}

/// The schema of the `uploads` `profiles.parquet`.
pub fn profile_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Int64, false),
        time_field("updated_at"),
        utf8("subscription"),
        utf8("language"),
        utf8("country"),
    ]))
}

fn profile_batch(schema: &SchemaRef, rows: &[ProfileRow]) -> Result<RecordBatch, ArrowError> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| i64::from(r.user)))),
        time_column(rows.iter().map(|r| r.time)),
        strings(rows, |r, b| b.append_value(SUBSCRIPTIONS[usize::from(r.subscription)])),
        strings(rows, |r, b| b.append_value(r.language)),
        strings(rows, |r, b| b.append_value(r.country)),
    ];
    RecordBatch::try_new(schema.clone(), columns)
}

/// Writes a signup version of every user (before the log, in id order), then the changes during
/// the log up to `end`, sorted by time.
pub(crate) fn write_profiles(g: &Uploads, seed: u64, path: &Path, end: i64) -> Result<ContextFile, GenerateError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7072_6f66_696c_6573);
    let random_country = |rng: &mut ChaCha8Rng| CITIES[rng.random_range(0..CITIES.len())].0;
    let mut w = TableWriter::create(path, profile_schema(), profile_batch)?;
    let gap = (SIGNUP_SPAN_MS / i64::from(g.users)).max(1);
    let mut changes = Vec::new();
    for user in 1..=g.users {
        let country = match rng.random_bool(0.9) {
            true => g.geo.place(g.geo.home(user, false)).0,
            false => random_country(&mut rng),
        };
        let u: f64 = rng.random();
        let mut row = ProfileRow {
            time: START_MS - SIGNUP_SPAN_MS + i64::from(user - 1) * gap + rng.random_range(0..gap),
            user,
            subscription: if u < 0.7 {
                0
            } else if u < 0.92 {
                1
            } else {
                2
            },
            language: language(country, rng.random()),
            country,
        };
        w.push(row)?;
        if end <= START_MS || !rng.random_bool(P_CHANGE) {
            continue;
        }
        let mut times = [rng.random_range(START_MS..end), rng.random_range(START_MS..end)];
        times.sort_unstable();
        let count = if rng.random_bool(0.3) { 2 } else { 1 };
        for time in &times[..count] {
            row.time = *time;
            match (row.subscription, rng.random_range(0..10)) {
                (0, 0..=5) => row.subscription = if rng.random_bool(0.8) { 1 } else { 2 },
                (_, 0..=2) => row.subscription = 0,
                (_, 3..=7) => row.language = if row.language == "en" { "es" } else { "en" },
                _ => {
                    row.country = random_country(&mut rng);
                    row.language = language(row.country, rng.random());
                }
            }
            changes.push(row);
        }
    }
    changes.sort_unstable_by_key(|r| (r.time, r.user));
    changes.into_iter().try_for_each(|r| w.push(r))?;
    w.finish()
}

/// Merges per-key streams of rows in time order: `next` gives key `k`'s row at time `t` and the
/// time of its next row (or `None` once it passes `end`).
fn merge<S, R>(
    states: &mut [S],
    starts: impl IntoIterator<Item = i64>,
    end: i64,
    mut next: impl FnMut(&mut S, usize, i64) -> (R, i64),
    mut sink: impl FnMut(R) -> Result<(), GenerateError>,
) -> Result<(), GenerateError> {
    let mut heap: BinaryHeap<Reverse<(i64, usize)>> =
        starts.into_iter().enumerate().map(|(k, t)| Reverse((t, k))).collect();
    while let Some(Reverse((t, k))) = heap.pop() {
        if t > end {
            continue;
        }
        let (row, after) = next(&mut states[k], k, t);
        sink(row)?;
        heap.push(Reverse((after, k)));
    }
    Ok(())
}

struct Sensor {
    base: f64,
    phase: f64,
    humidity: f64,
    pressure: f64,
}

/// The schema of `sensors.parquet`.
pub fn sensor_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        utf8("sensor_id"),
        time_field("reading_time"),
        float("temperature"),
        float("humidity"),
        float("pressure"),
    ]))
}

/// (time, sensor index, temperature, humidity, pressure).
type Reading = (i64, usize, f64, f64, f64);

fn sensor_batch(schema: &SchemaRef, rows: &[Reading]) -> Result<RecordBatch, ArrowError> {
    let id = |r: &Reading, b: &mut StringBuilder| b.append_value(format!("s-{:04}", r.1 + 1));
    let columns: Vec<ArrayRef> = vec![
        strings(rows, id),
        time_column(rows.iter().map(|r| r.0)),
        floats(rows, |r| r.2),
        floats(rows, |r| r.3),
        floats(rows, |r| r.4),
    ];
    RecordBatch::try_new(schema.clone(), columns)
}

/// Writes readings of every sensor from 10 min before `from` to a minute after `to`.
pub(crate) fn write_sensors(seed: u64, path: &Path, from: i64, to: i64) -> Result<ContextFile, GenerateError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7365_6e73_6f72_7321);
    let n = usize::from(SENSORS);
    let mut sensors: Vec<Sensor> = (0..n)
        .map(|_| Sensor {
            base: rng.random_range(8.0..28.0),
            phase: rng.random_range(0.0..TAU),
            humidity: rng.random_range(30.0..80.0),
            pressure: rng.random_range(1000.0..1025.0),
        })
        .collect();
    let starts: Vec<i64> = (0..n)
        .map(|_| from - 10 * MINUTE_MS + rng.random_range(0..MINUTE_MS))
        .collect();
    let mut w = TableWriter::create(path, sensor_schema(), sensor_batch)?;
    let next = |s: &mut Sensor, k: usize, t: i64| {
        let day = (t.rem_euclid(DAY_MS) as f64 / DAY_MS as f64) * TAU;
        let noise = |rng: &mut ChaCha8Rng, sd: f64| sd * rng.sample::<f64, _>(StandardNormal);
        let temperature = s.base + 4.0 * (day + s.phase).sin() + noise(&mut rng, 0.3);
        s.humidity = (s.humidity + noise(&mut rng, 0.4)).clamp(5.0, 100.0);
        s.pressure = (s.pressure + noise(&mut rng, 0.05)).clamp(960.0, 1060.0);
        let mut after = rng.random_range(30_000..60_000);
        if rng.random_bool(P_SENSOR_GAP) {
            after += rng.random_range(3 * MINUTE_MS..12 * MINUTE_MS);
        }
        let reading = (t, k, round(temperature, 2), round(s.humidity, 1), round(s.pressure, 2));
        (reading, t + after)
    };
    merge(&mut sensors, starts, to + MINUTE_MS, next, |r| w.push(r))?;
    w.finish()
}

/// The schema of `prices.parquet`.
pub fn price_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        utf8("symbol"),
        time_field("price_time"),
        float("price"),
        Field::new("volume", DataType::Int64, false),
    ]))
}

/// (time, symbol index, price, volume).
type Tick = (i64, usize, f64, i64);

fn price_batch(schema: &SchemaRef, rows: &[Tick]) -> Result<RecordBatch, ArrowError> {
    let columns: Vec<ArrayRef> = vec![
        strings(rows, |r, b| b.append_value(SYMBOLS[r.1])),
        time_column(rows.iter().map(|r| r.0)),
        floats(rows, |r| r.2),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
    ];
    RecordBatch::try_new(schema.clone(), columns)
}

/// Writes ticks of every symbol from 5 min before `from` to 10 s after `to`.
pub(crate) fn write_prices(seed: u64, path: &Path, from: i64, to: i64) -> Result<ContextFile, GenerateError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7072_6963_6573_2121);
    let mut prices: Vec<f64> = SYMBOLS.iter().map(|_| (rng.random_range(1.6..6.7f64)).exp()).collect();
    let starts: Vec<i64> = SYMBOLS
        .iter()
        .map(|_| from - 5 * MINUTE_MS + rng.random_range(0..6_000))
        .collect();
    let mut w = TableWriter::create(path, price_schema(), price_batch)?;
    let next = |price: &mut f64, k: usize, t: i64| {
        let z: f64 = rng.sample(StandardNormal);
        *price = (*price * (0.0006 * z).exp()).max(0.01);
        let volume = 100 * (1 + (8.0 * rng.sample::<f64, _>(Exp1)) as i64);
        let mut after = rng.random_range(500..6_000);
        if rng.random_bool(P_HALT) {
            after += rng.random_range(MINUTE_MS..10 * MINUTE_MS);
        }
        ((t, k, round(*price, 2).max(0.01), volume), t + after)
    };
    merge(&mut prices, starts, to + 10_000, next, |r| w.push(r))?;
    w.finish()
}
