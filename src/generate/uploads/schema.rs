//! The `uploads` log's columns (documented in [`super`]), built straight into Arrow arrays
//! (Parquet) or as [`Event`]s (NDJSON).

use std::fmt;
use std::sync::{Arc, OnceLock};

use arrow::array::{ArrayRef, Int64Builder, RecordBatch, StringBuilder, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;

use super::geo::write_ip;
use super::vocab::{BUCKETS, CONTENT_TYPES, SYMBOLS};
use super::{Row, Uploads, EVENT_TYPES};
use crate::event::Event;
use crate::generate::schema::{mix, TIME_FIELD, TYPE_FIELD};
use crate::value::{Sym, Value};

/// Payload columns in [`schema`] order, after the time and type.
const PAYLOAD: [&str; 8] = [
    "upload_id",
    "user_id",
    "uploader_ip",
    "sensor_id",
    "symbol",
    "bytes",
    "content_type",
    "bucket",
];

/// The Parquet schema of the `uploads` log.
pub fn schema() -> SchemaRef {
    let time = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let mut fields = vec![
        Field::new(TIME_FIELD, time, false),
        Field::new(TYPE_FIELD, DataType::Utf8, false),
    ];
    for name in PAYLOAD {
        let dt = match name {
            "user_id" | "bytes" => DataType::Int64,
            _ => DataType::Utf8,
        };
        fields.push(Field::new(name, dt, true));
    }
    Arc::new(Schema::new(fields))
}

fn write_upload_id(w: &mut impl fmt::Write, g: &Uploads, upload: u64) -> fmt::Result {
    write!(w, "u-{:016x}", mix(upload ^ g.salt))
}

fn write_sensor_id(w: &mut impl fmt::Write, sensor: u16) -> fmt::Result {
    write!(w, "s-{sensor:04}")
}

/// Builds the Arrow batch for `rows` (in [`schema`]).
pub(crate) fn batch(g: &Uploads, rows: &[Row]) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let strings = || StringBuilder::with_capacity(n, n * 16);
    let [mut kind, mut upload, mut ip, mut sensor, mut symbol, mut content_type, mut bucket] =
        std::array::from_fn(|_| strings());
    let [mut user, mut bytes] = std::array::from_fn(|_| Int64Builder::with_capacity(n));
    let fmt_err = |_| ArrowError::ComputeError("formatting a column".into());
    for r in rows {
        kind.append_value(EVENT_TYPES[r.kind as usize]);
        write_upload_id(&mut upload, g, r.upload).map_err(fmt_err)?;
        upload.append_value("");
        user.append_value(i64::from(r.user));
        write_ip(&mut ip, r.ip, r.v6).map_err(fmt_err)?;
        ip.append_value("");
        write_sensor_id(&mut sensor, r.sensor).map_err(fmt_err)?;
        sensor.append_value("");
        symbol.append_value(SYMBOLS[usize::from(r.symbol)]);
        bytes.append_value(r.bytes);
        content_type.append_value(CONTENT_TYPES[usize::from(r.content_type)].0);
        bucket.append_value(BUCKETS[usize::from(r.bucket)]);
    }
    let times = TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.time)).with_timezone("UTC");
    let columns: Vec<ArrayRef> = vec![
        Arc::new(times),
        Arc::new(kind.finish()),
        Arc::new(upload.finish()),
        Arc::new(user.finish()),
        Arc::new(ip.finish()),
        Arc::new(sensor.finish()),
        Arc::new(symbol.finish()),
        Arc::new(bytes.finish()),
        Arc::new(content_type.finish()),
        Arc::new(bucket.finish()),
    ];
    RecordBatch::try_new(schema(), columns)
}

/// Interned payload names, then the event types.
fn syms() -> &'static [Sym] {
    static SYMS: OnceLock<Vec<Sym>> = OnceLock::new();
    SYMS.get_or_init(|| PAYLOAD.iter().chain(EVENT_TYPES.iter()).map(|s| Sym::new(s)).collect())
}

/// The row as an event with every payload column of [`schema`].
pub(crate) fn event(g: &Uploads, r: &Row) -> Event {
    let syms = syms();
    let text = |f: &dyn Fn(&mut String) -> fmt::Result| {
        let mut s = String::new();
        f(&mut s).expect("formatting into a String");
        Value::str(&s)
    };
    let values = [
        text(&|s| write_upload_id(s, g, r.upload)),
        Value::Int(i64::from(r.user)),
        text(&|s| write_ip(s, r.ip, r.v6)),
        text(&|s| write_sensor_id(s, r.sensor)),
        Value::str(SYMBOLS[usize::from(r.symbol)]),
        Value::Int(r.bytes),
        Value::str(CONTENT_TYPES[usize::from(r.content_type)].0),
        Value::str(BUCKETS[usize::from(r.bucket)]),
    ];
    let kind = syms[PAYLOAD.len() + r.kind as usize];
    Event::new(r.time, kind, syms.iter().copied().zip(values).collect())
}
