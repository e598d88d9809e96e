//! The `evolving` scenario: three event types whose payload schemas change at known times.
//!
//! `n` events span `S = max(1 h, n × 36 ms)` from 2024-03-04T00:00:00Z: event `i` is due at
//! `⌊(i + u) S / n⌋` (`u` uniform in [0, 1)) and its event time adds a jitter of 0–1999 ms, so
//! rows are less than 2 s out of event-time order and never late. Types: `page_view` (50%),
//! `order_placed` (30%), `sensor_reading` (20%). Each change applies to one type, to every event
//! of that type whose *event time* is at or after the change time `start + ⌊pct × S / 100⌋`
//! (rounded down to a whole second):
//!
//! | pct | event type       | change           | fields                    | from → to                 |
//! |-----|------------------|------------------|---------------------------|---------------------------|
//! | 15  | `order_placed`   | `added_optional` | `coupon_code`             | null → string (~30%)      |
//! | 30  | `page_view`      | `removed`        | `legacy_ref`              | string → null             |
//! | 45  | `sensor_reading` | `type_changed`   | `sensor_id`               | int → string (`S-0042`)   |
//! | 60  | `page_view`      | `renamed`        | `user`, `customer_id`     | `user` → `customer_id`    |
//! | 75  | `order_placed`   | `type_changed`   | `amount`                  | int cents → float euros   |
//! | 90  | `order_placed`   | `nested_added`   | `shipping{country,method}`| null → object             |
//!
//! Other payload fields, always present: `order_placed` has `order_id`, `customer_id`, `items`,
//! `currency` and `amount`; `page_view` has `url`, `referrer` and `duration_ms` (plus `user`,
//! later `customer_id`); `sensor_reading` has `sensor_id`, `temperature` and `humidity`. No
//! payload field is ever null: a field is present with a value or absent. Float fields never
//! hold a whole number (euros have cents, readings a tenth that is not `.0`), since JSON reads
//! `12.0` as the int 12 and a value's kind is what the truth file speaks of.
//!
//! [`change_points`] lists the changes; generating writes them to [`truth_path`] as JSON, in
//! time order: `{event_type, time (RFC 3339), time_ms, change, fields, from, to}`, where `from`
//! and `to` are value kinds ([`Value::kind_name`]), the old and new name for `renamed`, and the
//! object of sub-field kinds for `nested_added`.
//!
//! NDJSON is this scenario's primary format. Parquet gets one file schema ([`schema`]): the union
//! of all payload columns (sorted, absent fields null), where a field whose type changes
//! (`amount`, `sensor_id`) is `Utf8` holding the value's text (`1234` before, `12.34` after).
//! 1M events take ~0.7 s as NDJSON (150 MB) and ~1.5 s as Parquet (19 MB, ~150 MB of memory) in
//! release on one core.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::learning::START_MS;
use super::schema::{TIME_FIELD, TYPE_FIELD};
use super::{open_sink, progress_bar, GenerateError, GenerateSummary, Sink, LATENESS_MS};
use crate::event::Event;
use crate::format::{rows_to_batch_with_schema, write_ndjson_event, ROW_GROUP_ROWS};
use crate::value::{format_time, Sym, Value};

const HOUR_MS: i64 = 3_600_000;
/// Nominal milliseconds per event (100k events an hour) once the span exceeds an hour.
const MS_PER_EVENT: i64 = 36;
/// Event times are up to this much (exclusive) after their due time.
pub const JITTER_MS: i64 = 2_000;
/// The share of `order_placed` events carrying `coupon_code` once it exists.
pub const COUPON_SHARE: f64 = 0.3;
const CUSTOMERS: i64 = 5_000;
const SENSORS: i64 = 64;

/// The event types, by name.
pub const EVENT_TYPES: [&str; 3] = ["order_placed", "page_view", "sensor_reading"];

/// Parquet payload columns, sorted; see [`schema`].
const PAYLOAD: [&str; 15] = [
    "amount",
    "coupon_code",
    "currency",
    "customer_id",
    "duration_ms",
    "humidity",
    "items",
    "legacy_ref",
    "order_id",
    "referrer",
    "sensor_id",
    "shipping",
    "temperature",
    "url",
    "user",
];

/// One schema change, as written to the truth file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangePoint {
    pub event_type: String,
    /// The change time, RFC 3339; events at or after it have the new schema.
    pub time: String,
    pub time_ms: i64,
    /// `added_optional`, `removed`, `type_changed`, `renamed` or `nested_added`.
    pub change: String,
    pub fields: Vec<String>,
    pub from: serde_json::Value,
    pub to: serde_json::Value,
}

/// The time span `events` events are spread over, in milliseconds (before jitter).
pub fn span_ms(events: usize) -> i64 {
    HOUR_MS.max(events as i64 * MS_PER_EVENT)
}

/// The change time `pct` percent into the span, rounded down to a whole second.
fn change_time(events: usize, pct: i64) -> i64 {
    START_MS + span_ms(events) * pct / 100 / 1000 * 1000
}

/// Percent of the span, event type, change, fields, `from` and `to` as JSON text.
type Change = (
    i64,
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static str,
    &'static str,
);

/// The changes, in time order.
#[rustfmt::skip]
const CHANGES: [Change; 6] = [
    (15, "order_placed", "added_optional", &["coupon_code"], "null", r#""string""#),
    (30, "page_view", "removed", &["legacy_ref"], r#""string""#, "null"),
    (45, "sensor_reading", "type_changed", &["sensor_id"], r#""int""#, r#""string""#),
    (60, "page_view", "renamed", &["user", "customer_id"], r#""user""#, r#""customer_id""#),
    (75, "order_placed", "type_changed", &["amount"], r#""int""#, r#""float""#),
    (90, "order_placed", "nested_added", &["shipping", "shipping.country", "shipping.method"], "null",
        r#"{"country": "string", "method": "string"}"#),
];

/// The change points of an `events`-event log, in time order (see the module docs).
pub fn change_points(events: usize) -> Vec<ChangePoint> {
    let json = |text| serde_json::from_str(text).expect("valid JSON in CHANGES");
    CHANGES
        .iter()
        .map(|&(pct, event_type, change, fields, from, to)| {
            let time_ms = change_time(events, pct);
            ChangePoint {
                event_type: event_type.into(),
                time: format_time(time_ms),
                time_ms,
                change: change.into(),
                fields: fields.iter().map(|f| f.to_string()).collect(),
                from: json(from),
                to: json(to),
            }
        })
        .collect()
}

/// Where the truth file for `out` goes: `out` with `.truth.json` appended.
pub fn truth_path(out: &Path) -> PathBuf {
    let mut p = out.as_os_str().to_owned();
    p.push(".truth.json");
    p.into()
}

/// The Parquet schema: time, type, then the payload columns sorted by name (see the module docs).
pub fn schema() -> SchemaRef {
    let col = |name: &str, dt: DataType| Field::new(name, dt, true);
    let shipping = Fields::from(vec![col("country", DataType::Utf8), col("method", DataType::Utf8)]);
    let time = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let mut fields = vec![
        Field::new(TIME_FIELD, time, false),
        Field::new(TYPE_FIELD, DataType::Utf8, false),
    ];
    fields.extend(PAYLOAD.iter().map(|&name| match name {
        "customer_id" | "duration_ms" | "items" | "user" => col(name, DataType::Int64),
        "humidity" | "temperature" => col(name, DataType::Float64),
        "shipping" => col(name, DataType::Struct(shipping.clone())),
        _ => col(name, DataType::Utf8),
    }));
    Arc::new(Schema::new(fields))
}

/// `events` as rows of [`schema`]: time, type, then the payload in [`PAYLOAD`] order.
pub(crate) fn rows(events: &[Event]) -> Vec<Vec<Value>> {
    events
        .iter()
        .map(|e| {
            let mut row = vec![Value::Null; 2 + PAYLOAD.len()];
            row[0] = Value::Time(e.time);
            row[1] = Value::str(e.kind.as_str());
            for (k, v) in e.payload.iter() {
                let i = PAYLOAD
                    .binary_search(&k.as_str())
                    .expect("every payload field has a column");
                row[2 + i] = v.clone();
            }
            row
        })
        .collect()
}

macro_rules! names {
    ($($name:ident),* $(,)?) => {
        /// Interned event type and field names.
        struct Names { $($name: Sym),* }
        fn names() -> &'static Names {
            static NAMES: OnceLock<Names> = OnceLock::new();
            NAMES.get_or_init(|| Names { $($name: Sym::new(stringify!($name))),* })
        }
    };
}
names!(
    order_placed,
    page_view,
    sensor_reading,
    amount,
    coupon_code,
    currency,
    customer_id,
    duration_ms,
    humidity,
    items,
    legacy_ref,
    order_id,
    referrer,
    sensor_id,
    shipping,
    temperature,
    url,
    user,
    country,
    method,
);

const COUPONS: [&str; 4] = ["SPRING10", "WELCOME5", "FREESHIP", "VIP20"];
const URLS: [&str; 6] = ["/", "/search", "/product/42", "/product/7", "/cart", "/checkout"];
const REFERRERS: [&str; 4] = ["direct", "google", "newsletter", "partner"];
const COUNTRIES: [&str; 6] = ["DE", "FR", "NL", "ES", "IT", "PL"];
const METHODS: [&str; 3] = ["standard", "express", "pickup"];

fn pick(rng: &mut ChaCha8Rng, from: &[&str]) -> Value {
    Value::str(from[rng.random_range(0..from.len())])
}

/// The generator: events in arrival order.
pub(crate) struct Evolving {
    rng: ChaCha8Rng,
    events: usize,
    next: usize,
    /// Due-time milliseconds per event.
    gap: f64,
    /// Change times in [`CHANGES`] order.
    changes: [i64; 6],
    orders: u64,
}

impl Evolving {
    pub(crate) fn new(seed: u64, events: usize) -> Evolving {
        Evolving {
            rng: ChaCha8Rng::seed_from_u64(seed),
            events,
            next: 0,
            gap: span_ms(events) as f64 / events.max(1) as f64,
            changes: CHANGES.map(|c| change_time(events, c.0)),
            orders: 0,
        }
    }

    /// The next event in arrival order.
    pub(crate) fn next_event(&mut self) -> Event {
        debug_assert!(self.next < self.events);
        let (n, rng) = (names(), &mut self.rng);
        let due = ((self.next as f64 + rng.random::<f64>()) * self.gap) as i64;
        self.next += 1;
        let t = START_MS + due + rng.random_range(0..JITTER_MS);
        let changes = self.changes;
        let after = |i: usize| t >= changes[i];
        let kind = rng.random::<f64>();
        let mut p: Vec<(Sym, Value)> = Vec::with_capacity(7);
        if kind < 0.5 {
            let who = if after(3) { n.customer_id } else { n.user };
            p.push((who, Value::Int(rng.random_range(1..=CUSTOMERS))));
            p.push((n.url, pick(rng, &URLS)));
            p.push((n.referrer, pick(rng, &REFERRERS)));
            p.push((n.duration_ms, Value::Int(rng.random_range(200..=120_000))));
            if !after(1) {
                let r = rng.random_range(0..1_000_000);
                p.push((n.legacy_ref, Value::Str(format!("LR-{r:06}").into())));
            }
            Event::new(t, n.page_view, p)
        } else if kind < 0.8 {
            self.orders += 1;
            p.push((n.order_id, Value::Str(format!("ord-{:08}", self.orders).into())));
            p.push((n.customer_id, Value::Int(rng.random_range(1..=CUSTOMERS))));
            p.push((n.items, Value::Int(rng.random_range(1..=5))));
            p.push((n.currency, Value::str("EUR")));
            let cents: i64 = rng.random_range(199..=25_000);
            let amount = match after(4) {
                // Never whole euros: JSON reads `156.0` as the int 156.
                true => Value::float((cents + i64::from(cents % 100 == 0)) as f64 / 100.0),
                false => Value::Int(cents),
            };
            p.push((n.amount, amount));
            if after(0) && rng.random_bool(COUPON_SHARE) {
                p.push((n.coupon_code, pick(rng, &COUPONS)));
            }
            if after(5) {
                let (country, method) = (pick(rng, &COUNTRIES), pick(rng, &METHODS));
                p.push((
                    n.shipping,
                    Value::object(vec![(n.country, country), (n.method, method)]),
                ));
            }
            Event::new(t, n.order_placed, p)
        } else {
            let id = rng.random_range(1..=SENSORS);
            let sensor = match after(2) {
                true => Value::Str(format!("S-{id:04}").into()),
                false => Value::Int(id),
            };
            p.push((n.sensor_id, sensor));
            let temperature = 15.0 + 15.0 * rng.random::<f64>();
            p.push((n.temperature, tenths(temperature)));
            let humidity = 30.0 + 50.0 * rng.random::<f64>();
            p.push((n.humidity, tenths(humidity)));
            Event::new(t, n.sensor_reading, p)
        }
    }
}

/// `x` rounded to tenths, `.0` taken up to `.1`: JSON reads a whole number as an int, and these
/// fields are floats.
fn tenths(x: f64) -> Value {
    let t = (x * 10.0).round();
    Value::float((t + f64::from(u8::from(t % 10.0 == 0.0))) / 10.0)
}

/// Writes `events` events of the `evolving` scenario to `out` and the change points to
/// [`truth_path`]`(out)`.
pub(super) fn generate(events: usize, seed: u64, out: &Path, progress: bool) -> Result<GenerateSummary, GenerateError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| GenerateError::Io { path, source }
    };
    let schema = schema();
    let mut sink = open_sink(out, schema.clone())?;
    let bar = progress_bar(events, progress);
    let mut g = Evolving::new(seed, events);
    let (mut late, mut max_time, mut min_time) = (0, i64::MIN, i64::MAX);
    let mut by_type = EVENT_TYPES.map(|t| (t, 0usize));
    let mut chunk = Vec::with_capacity(ROW_GROUP_ROWS.min(events));
    let mut written = 0;
    while written < events {
        chunk.clear();
        for _ in 0..ROW_GROUP_ROWS.min(events - written) {
            let e = g.next_event();
            late += usize::from(e.time < max_time.saturating_sub(LATENESS_MS));
            (max_time, min_time) = (max_time.max(e.time), min_time.min(e.time));
            let t = by_type
                .iter_mut()
                .find(|(t, _)| *t == e.kind.as_str())
                .expect("a known type");
            t.1 += 1;
            chunk.push(e);
        }
        match &mut sink {
            Sink::Parquet(s) => {
                s.write(&rows_to_batch_with_schema(&schema, &rows(&chunk))?)?;
                s.flush()?;
            }
            Sink::Ndjson(w) => {
                for e in &chunk {
                    write_ndjson_event(w, e, TIME_FIELD, TYPE_FIELD).map_err(io_err(out))?;
                }
            }
        }
        written += chunk.len();
        bar.inc(chunk.len() as u64);
    }
    match sink {
        Sink::Parquet(s) => s.close()?,
        Sink::Ndjson(mut w) => w.flush().map_err(io_err(out))?,
    }
    let truth = truth_path(out);
    let mut json = serde_json::to_vec_pretty(&change_points(events)).expect("change points serialize");
    json.push(b'\n');
    std::fs::write(&truth, json).map_err(io_err(&truth))?;
    bar.finish_and_clear();
    let summary = GenerateSummary {
        events: written,
        late,
        duplicates: 0,
        users: 0,
        sessions: 0,
        min_time: if written == 0 { 0 } else { min_time },
        max_time: if written == 0 { 0 } else { max_time },
        by_type: by_type.to_vec(),
        context: Vec::new(),
    };
    tracing::info!(?summary, path = %out.display(), truth = %truth.display(), "generated evolving log");
    Ok(summary)
}
