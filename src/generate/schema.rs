//! The `learning` scenario's output contract: one fixed schema for every row, built straight into
//! Arrow arrays (Parquet), or as [`Event`]s (NDJSON). Columns that do not apply to a row's event
//! type are null.
//!
//! | column              | type                          | rows                          |
//! |---------------------|-------------------------------|-------------------------------|
//! | `event_time`        | `Timestamp(ms, UTC)`          | all                           |
//! | `event_type`        | `Utf8`                        | all                           |
//! | `user_id`           | `Int64`                       | all                           |
//! | `session_id`        | `Utf8`                        | all                           |
//! | `country`, `region`, `timezone`, `plan`, `user_agent` | `Utf8`  | all                 |
//! | `device`            | `Struct{os, app_version}`     | all                           |
//! | `item_id`           | `Int64`                       | attempt                       |
//! | `client_attempt_id` | `Utf8` (UUID-shaped)          | attempt                       |
//! | `correct`           | `Boolean`                     | attempt                       |
//! | `response_time_ms`, `difficulty` | `Float64`        | attempt                       |
//! | `topics`            | `List<Utf8>`                  | attempt                       |
//! | `attempt_number`    | `Int64`                       | attempt                       |
//! | `duration_ms`, `attempt_count`, `correct_count` | `Int64` | session_end             |
//! | `placement_id`, `level` | `Utf8`                    | placement                     |
//! | `score`             | `Float64`                     | placement                     |

use std::fmt::{self, Write as _};
use std::sync::{Arc, OnceLock};

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, RecordBatch, StringBuilder, StructArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;

use super::learning::{Learning, Row};
use super::vocab::{Kind, LEVELS, LOCALES};
use crate::event::Event;
use crate::value::{Sym, Value};

pub const TIME_FIELD: &str = "event_time";
pub const TYPE_FIELD: &str = "event_type";
/// The `user_id` of the simulation's user 0.
pub(crate) const FIRST_USER_ID: i64 = 1_000_000;

fn device_fields() -> Fields {
    Fields::from(vec![
        Field::new("os", DataType::Utf8, true),
        Field::new("app_version", DataType::Utf8, true),
    ])
}

/// The Parquet schema of the `learning` scenario.
pub fn schema() -> SchemaRef {
    let col = |name: &str, dt: DataType| Field::new(name, dt, true);
    let utf8 = |name: &str| col(name, DataType::Utf8);
    let int = |name: &str| col(name, DataType::Int64);
    let float = |name: &str| col(name, DataType::Float64);
    let time = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let topics = DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)));
    Arc::new(Schema::new(vec![
        Field::new(TIME_FIELD, time, false),
        Field::new(TYPE_FIELD, DataType::Utf8, false),
        int("user_id"),
        utf8("session_id"),
        utf8("country"),
        utf8("region"),
        utf8("timezone"),
        utf8("plan"),
        utf8("user_agent"),
        col("device", DataType::Struct(device_fields())),
        int("item_id"),
        utf8("client_attempt_id"),
        col("correct", DataType::Boolean),
        float("response_time_ms"),
        float("difficulty"),
        col("topics", topics),
        int("attempt_number"),
        int("duration_ms"),
        int("attempt_count"),
        int("correct_count"),
        utf8("placement_id"),
        utf8("level"),
        float("score"),
    ]))
}

/// A bijective 64-bit mix (SplitMix64's finaliser): distinct inputs give distinct ids.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn write_session_id(w: &mut impl fmt::Write, g: &Learning, session: u64) -> fmt::Result {
    write!(w, "{:016x}", mix(session ^ g.salt))
}

/// A UUID-shaped id carrying all 64 bits of a bijective mix of the attempt counter.
fn write_attempt_id(w: &mut impl fmt::Write, g: &Learning, attempt: u64) -> fmt::Result {
    let a = mix(attempt ^ g.salt.rotate_left(17));
    let b = mix(a ^ g.salt);
    write!(
        w,
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        b & 0xfff,
        0x8000 | ((b >> 12) & 0x3fff),
        ((a & 0xffff) << 32) | (b >> 32)
    )
}

fn user_id(row: &Row) -> i64 {
    FIRST_USER_ID + i64::from(row.user)
}

fn plan(g: &Learning, row: &Row) -> &'static str {
    if g.users[row.user as usize].premium {
        "premium"
    } else {
        "free"
    }
}

/// Builds the Arrow batch for `rows` (in [`schema`]).
pub(crate) fn batch(g: &Learning, rows: &[Row]) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let strings = || StringBuilder::with_capacity(n, n * 12);
    let ints = || Int64Builder::with_capacity(n);
    let mut time = Vec::with_capacity(n);
    let [mut kind, mut session, mut country, mut region, mut tz, mut plans, mut ua, mut os, mut version] =
        std::array::from_fn(|_| strings());
    let [mut attempt_id, mut placement_id, mut level] = std::array::from_fn(|_| strings());
    let [mut user, mut item, mut number, mut duration, mut count, mut correct_count] = std::array::from_fn(|_| ints());
    let [mut response, mut difficulty, mut score] = std::array::from_fn(|_| Float64Builder::with_capacity(n));
    let mut correct = BooleanBuilder::with_capacity(n);
    let mut topics = ListBuilder::with_capacity(StringBuilder::new(), n);
    let fmt_err = |_| ArrowError::ComputeError("formatting an id".into());
    for r in rows {
        let u = &g.users[r.user as usize];
        let (locale, agent) = (&LOCALES[u.locale], &g.agents[u.agent]);
        time.push(r.time);
        kind.append_value(r.kind.name());
        user.append_value(user_id(r));
        write_session_id(&mut session, g, r.session).map_err(fmt_err)?;
        session.append_value("");
        country.append_value(locale.0);
        tz.append_value(locale.1);
        region.append_value(locale.3);
        plans.append_value(plan(g, r));
        ua.append_value(&agent.ua);
        os.append_value(agent.os);
        version.append_value(agent.version);
        if r.kind == Kind::Attempt {
            let it = &g.items[r.item as usize];
            item.append_value(i64::from(r.item) + 1);
            write_attempt_id(&mut attempt_id, g, r.attempt).map_err(fmt_err)?;
            attempt_id.append_value("");
            correct.append_value(r.correct);
            response.append_value(r.response_ms);
            difficulty.append_value(it.difficulty);
            it.topics.iter().for_each(|t| topics.values().append_value(t));
            topics.append(true);
            number.append_value(i64::from(r.attempt_number));
        } else {
            item.append_null();
            attempt_id.append_null();
            correct.append_null();
            response.append_null();
            difficulty.append_null();
            topics.append(false);
            number.append_null();
        }
        let end = r.kind == Kind::SessionEnd;
        duration.append_option(end.then_some(r.duration_ms));
        count.append_option(end.then_some(i64::from(r.attempt_count)));
        correct_count.append_option(end.then_some(i64::from(r.correct_count)));
        if r.kind == Kind::Placement {
            write!(placement_id, "pl-{}", user_id(r)).map_err(fmt_err)?;
            placement_id.append_value("");
            level.append_value(LEVELS[r.level]);
            score.append_value(r.score);
        } else {
            placement_id.append_null();
            level.append_null();
            score.append_null();
        }
    }
    let device: ArrayRef = Arc::new(StructArray::try_new(
        device_fields(),
        vec![Arc::new(os.finish()), Arc::new(version.finish())],
        None,
    )?);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMillisecondArray::from(time).with_timezone("UTC")),
        Arc::new(kind.finish()),
        Arc::new(user.finish()),
        Arc::new(session.finish()),
        Arc::new(country.finish()),
        Arc::new(region.finish()),
        Arc::new(tz.finish()),
        Arc::new(plans.finish()),
        Arc::new(ua.finish()),
        device,
        Arc::new(item.finish()),
        Arc::new(attempt_id.finish()),
        Arc::new(correct.finish()),
        Arc::new(response.finish()),
        Arc::new(difficulty.finish()),
        Arc::new(topics.finish()),
        Arc::new(number.finish()),
        Arc::new(duration.finish()),
        Arc::new(count.finish()),
        Arc::new(correct_count.finish()),
        Arc::new(placement_id.finish()),
        Arc::new(level.finish()),
        Arc::new(score.finish()),
    ];
    RecordBatch::try_new(schema(), columns)
}

/// Payload columns in [`schema`] order, after the time and type.
const PAYLOAD: [&str; 21] = [
    "user_id",
    "session_id",
    "country",
    "region",
    "timezone",
    "plan",
    "user_agent",
    "device",
    "item_id",
    "client_attempt_id",
    "correct",
    "response_time_ms",
    "difficulty",
    "topics",
    "attempt_number",
    "duration_ms",
    "attempt_count",
    "correct_count",
    "placement_id",
    "level",
    "score",
];

/// Interned payload names, then `os` and `app_version`, then the event types.
fn syms() -> &'static [Sym] {
    static SYMS: OnceLock<Vec<Sym>> = OnceLock::new();
    SYMS.get_or_init(|| {
        let names = PAYLOAD.iter().copied().chain(["os", "app_version"]);
        names.chain(Kind::ALL.map(Kind::name)).map(Sym::new).collect()
    })
}

/// The row as an event with every payload column of [`schema`] (nulls included).
pub(crate) fn event(g: &Learning, r: &Row) -> Event {
    let u = &g.users[r.user as usize];
    let (locale, agent) = (&LOCALES[u.locale], &g.agents[u.agent]);
    let syms = syms();
    let mut s = String::new();
    let mut v: [Value; 21] = Default::default();
    v[0] = Value::Int(user_id(r));
    write_session_id(&mut s, g, r.session).expect("formatting into a String");
    v[1] = Value::str(&s);
    v[2] = Value::str(locale.0);
    v[3] = Value::str(locale.3);
    v[4] = Value::str(locale.1);
    v[5] = Value::str(plan(g, r));
    v[6] = Value::str(&agent.ua);
    let device = vec![(syms[21], Value::str(agent.os)), (syms[22], Value::str(agent.version))];
    v[7] = Value::object(device);
    match r.kind {
        Kind::Attempt => {
            let it = &g.items[r.item as usize];
            v[8] = Value::Int(i64::from(r.item) + 1);
            s.clear();
            write_attempt_id(&mut s, g, r.attempt).expect("formatting into a String");
            v[9] = Value::str(&s);
            v[10] = Value::Bool(r.correct);
            v[11] = Value::float(r.response_ms);
            v[12] = Value::float(it.difficulty);
            v[13] = Value::List(it.topics.iter().map(|t| Value::str(t)).collect());
            v[14] = Value::Int(i64::from(r.attempt_number));
        }
        Kind::SessionEnd => {
            v[15] = Value::Int(r.duration_ms);
            v[16] = Value::Int(i64::from(r.attempt_count));
            v[17] = Value::Int(i64::from(r.correct_count));
        }
        Kind::Placement => {
            v[18] = Value::Str(format!("pl-{}", user_id(r)).into());
            v[19] = Value::str(LEVELS[r.level]);
            v[20] = Value::float(r.score);
        }
        Kind::SessionStart => {}
    }
    let kind = syms[23 + r.kind as usize];
    Event::new(r.time, kind, syms.iter().copied().zip(v).collect())
}
