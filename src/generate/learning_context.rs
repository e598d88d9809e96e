//! Context tables of the `learning` scenario (`--context DIR`), for enrichment and as-of joins:
//! `DIR/profiles.parquet` (users) and `DIR/items.parquet` (quiz items). Both are *changing*
//! tables: a key has several versions, each valid from its `updated_at` until the next one, and
//! rows are sorted by `updated_at` (then key). They come from the same simulation as the log, so
//! every `user_id` and `item_id` of the log has a version at or before its first event.
//!
//! `profiles.parquet`, one version per change of a user's profile:
//!
//! | column         | type                 | meaning                                            |
//! |----------------|----------------------|----------------------------------------------------|
//! | `user_id`      | `Int64`              | the log's `user_id`                                |
//! | `updated_at`   | `Timestamp(ms, UTC)` | when this version took effect                      |
//! | `subscription` | `Utf8`               | `free`, `premium` or `family`                      |
//! | `country`      | `Utf8`               | ISO country, the log's `country`                   |
//! | `language`     | `Utf8`               | preferred language (ISO 639-1), one of the country's |
//! | `streak_days`  | `Int64`              | consecutive local days with activity               |
//!
//! Versions: users who exist before the log signed up 2–400 days before it (`streak_days` 0,
//! half of the premium ones as `free`) and have a second version 1–36 h before the log with their
//! current plan and streak. Users who join during the log sign up 5 s–10 min before their first
//! event. Then each user's first event of each local day sets `streak_days` (one more than the
//! streak if the user was active the local day before, else 1) in a version at that event's
//! time. ~10% of free users upgrade to `premium` or `family` at a random time after their last
//! event and before the log's end, so an as-of join at event time still sees `free` while a
//! "latest" join sees the upgrade. As-of the event time, `subscription` is `free` exactly when
//! the log's `plan` is `free` (`premium` rows map to `premium` or, for ~30% of users, `family`).
//!
//! `items.parquet`, the catalogue (every item, attempted or not):
//!
//! | column                 | type                 | meaning                                      |
//! |------------------------|----------------------|----------------------------------------------|
//! | `item_id`              | `Int64`              | the log's `item_id`                          |
//! | `updated_at`           | `Timestamp(ms, UTC)` | when this version took effect                |
//! | `difficulty`           | `Float64`            | the item's difficulty                        |
//! | `topics`               | `List<Utf8>`         | the item's topics (as in the log)            |
//! | `popularity`           | `Float64`            | chance of being picked relative to the average item (1.0) |
//! | `expected_response_ms` | `Float64`            | mean human response time the model predicts  |
//!
//! Every item has a first version 1–180 days before the log. ~10% are re-calibrated (a new
//! version, `difficulty` moved by about ±0.25 and `expected_response_ms` to match) at a random
//! time after their last attempt in the log, so as-of the attempt time `difficulty` equals the
//! log's `difficulty`.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, Int64Array, ListBuilder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Exp1, StandardNormal};

use super::learning::{Learning, Row, START_MS};
use super::schema::FIRST_USER_ID;
use super::table::{round, time_column, time_field, ContextFile, TableWriter};
use super::vocab::{language, Kind, LOCALES};
use super::GenerateError;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Mixed into the seed so the context draws never disturb the log's.
const CONTEXT_SALT: u64 = 0x6c65_6172_6e63_7478;
const P_FAMILY: f64 = 0.3;
const P_UPGRADE: f64 = 0.1;
const P_RECALIBRATE: f64 = 0.1;

/// Subscriptions, by index.
pub const SUBSCRIPTIONS: [&str; 3] = ["free", "premium", "family"];

/// When a user or item was seen in the log.
#[derive(Clone, Debug)]
struct Seen {
    first: i64,
    last: i64,
    /// (local day, time of the first event that day), for users.
    days: Vec<(i64, i64)>,
}

impl Default for Seen {
    fn default() -> Seen {
        Seen {
            first: i64::MAX,
            last: i64::MIN,
            days: Vec::new(),
        }
    }
}

impl Seen {
    fn active(&self) -> bool {
        self.first != i64::MAX
    }
}

/// Watches the log's rows for what the context tables need: each user's and item's first and
/// last event time, and each user's active local days.
#[derive(Default)]
pub(crate) struct Tracker {
    users: Vec<Seen>,
    items: Vec<Seen>,
    max_time: Option<i64>,
}

impl Tracker {
    pub(crate) fn observe(&mut self, g: &Learning, r: &Row) {
        let t = r.time;
        self.max_time = Some(self.max_time.map_or(t, |m| m.max(t)));
        let u = r.user as usize;
        if u >= self.users.len() {
            self.users.resize_with(g.users.len().max(u + 1), Seen::default);
        }
        let day = (t + LOCALES[g.users[u].locale].2 * 60_000).div_euclid(DAY_MS);
        let seen = &mut self.users[u];
        (seen.first, seen.last) = (seen.first.min(t), seen.last.max(t));
        match seen.days.iter_mut().rev().find(|(d, _)| *d == day) {
            Some(entry) => entry.1 = entry.1.min(t),
            None => seen.days.push((day, t)),
        }
        if r.kind == Kind::Attempt {
            let i = r.item as usize;
            if i >= self.items.len() {
                self.items.resize_with(g.items.len(), Seen::default);
            }
            let seen = &mut self.items[i];
            (seen.first, seen.last) = (seen.first.min(t), seen.last.max(t));
        }
    }

    /// Writes `dir/profiles.parquet` and `dir/items.parquet` for the log `g` produced.
    pub(crate) fn write(self, g: &Learning, seed: u64, dir: &Path) -> Result<Vec<ContextFile>, GenerateError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ CONTEXT_SALT);
        let profiles = self.profiles(g, &mut rng);
        let items = self.items(g, &mut rng);
        let mut w = TableWriter::create(&dir.join("profiles.parquet"), profile_schema(), profile_batch)?;
        profiles.into_iter().try_for_each(|r| w.push(r))?;
        let profiles = w.finish()?;
        let mut w = TableWriter::create(&dir.join("items.parquet"), item_schema(), item_batch)?;
        items.into_iter().try_for_each(|r| w.push(r))?;
        Ok(vec![profiles, w.finish()?])
    }

    /// Every profile version, sorted by time and user.
    fn profiles(&self, g: &Learning, rng: &mut ChaCha8Rng) -> Vec<ProfileRow> {
        let end = self.max_time.unwrap_or(START_MS);
        let never = Seen::default();
        let mut rows = Vec::new();
        for (id, user) in g.users.iter().enumerate() {
            let seen = self.users.get(id).unwrap_or(&never);
            let existing = id < g.initial_users;
            if !existing && !seen.active() {
                continue; // created for a session that had not emitted a row yet
            }
            let (country, _, offset, _, _) = LOCALES[user.locale];
            let mut row = ProfileRow {
                time: 0,
                user: id as u32,
                subscription: match (user.premium, rng.random_bool(P_FAMILY)) {
                    (false, _) => 0,
                    (true, false) => 1,
                    (true, true) => 2,
                },
                country,
                language: language(country, rng.random()),
                streak: 0,
            };
            let mut prev_day = None;
            if existing {
                let starts_free = user.premium && rng.random_bool(0.5);
                let signup = START_MS - rng.random_range(2 * DAY_MS..400 * DAY_MS);
                let subscription = if starts_free { 0 } else { row.subscription };
                rows.push(ProfileRow {
                    time: signup,
                    subscription,
                    ..row
                });
                row.time = START_MS - rng.random_range(HOUR_MS..36 * HOUR_MS);
                if rng.random_bool(0.7) {
                    row.streak = 1 + (9.0 * rng.sample::<f64, _>(Exp1)).min(364.0) as i64;
                    prev_day = Some((row.time + offset * 60_000).div_euclid(DAY_MS));
                }
            } else {
                row.time = seen.first - rng.random_range(5_000..600_000);
            }
            rows.push(row);
            let mut days = seen.days.clone();
            days.sort_unstable();
            for (day, first) in days {
                let streak = match prev_day {
                    Some(p) if p == day => continue,
                    Some(p) if p == day - 1 => row.streak + 1,
                    _ => 1,
                };
                prev_day = Some(day);
                if streak != row.streak {
                    (row.time, row.streak) = (first, streak);
                    rows.push(row);
                }
            }
            if !user.premium && rng.random_bool(P_UPGRADE) {
                let after = if seen.active() { seen.last } else { START_MS - 1 };
                if after < end {
                    row.time = rng.random_range(after + 1..=end);
                    row.subscription = if rng.random_bool(0.2) { 2 } else { 1 };
                    rows.push(row);
                }
            }
        }
        rows.sort_unstable_by_key(|r| (r.time, r.user));
        rows
    }

    /// Every item version, sorted by time and item.
    fn items(&self, g: &Learning, rng: &mut ChaCha8Rng) -> Vec<ItemRow> {
        let end = self.max_time.unwrap_or(START_MS);
        let never = Seen::default();
        let mut rows = Vec::new();
        for (i, item) in g.items.iter().enumerate() {
            let mut row = ItemRow {
                time: START_MS - rng.random_range(DAY_MS..180 * DAY_MS),
                item: i as u32,
                difficulty: item.difficulty,
                topics: item.topics.clone(),
                popularity: round(g.item_popularity(i), 6),
                expected_response_ms: expected_response_ms(item.difficulty),
            };
            rows.push(row.clone());
            let seen = self.items.get(i).unwrap_or(&never);
            let after = if seen.active() { seen.last } else { START_MS - 1 };
            if rng.random_bool(P_RECALIBRATE) && after < end {
                row.time = rng.random_range(after + 1..=end);
                let shift = round(0.25 * rng.sample::<f64, _>(StandardNormal), 2);
                row.difficulty = round(item.difficulty + if shift == 0.0 { 0.01 } else { shift }, 2);
                row.expected_response_ms = expected_response_ms(row.difficulty);
                rows.push(row);
            }
        }
        rows.sort_unstable_by_key(|r| (r.time, r.item));
        rows
    }
}

/// The mean of the simulation's human response time at `difficulty` (log-normal, median 6.5 s
/// scaled by `max(1 + 0.12 difficulty, 0.5)`, σ 0.55), to 0.1 ms.
fn expected_response_ms(difficulty: f64) -> f64 {
    round(
        6500.0 * (0.55f64 * 0.55 / 2.0).exp() * (1.0 + 0.12 * difficulty).max(0.5),
        1,
    )
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct ProfileRow {
    pub time: i64,
    pub user: u32,
    /// Index into [`SUBSCRIPTIONS`].
    pub subscription: u8,
    pub country: &'static str,
    pub language: &'static str,
    pub streak: i64,
}

#[derive(Clone, Debug)]
pub(crate) struct ItemRow {
    pub time: i64,
    pub item: u32,
    pub difficulty: f64,
    pub topics: Vec<&'static str>,
    pub popularity: f64,
    pub expected_response_ms: f64,
}

/// The schema of `profiles.parquet`.
pub fn profile_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Int64, false),
        time_field("updated_at"),
        Field::new("subscription", DataType::Utf8, false),
        Field::new("country", DataType::Utf8, false),
        Field::new("language", DataType::Utf8, false),
        Field::new("streak_days", DataType::Int64, false),
    ]))
}

fn profile_batch(schema: &SchemaRef, rows: &[ProfileRow]) -> Result<RecordBatch, ArrowError> {
    let strings = |f: fn(&ProfileRow) -> &'static str| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 8);
        rows.iter().for_each(|r| b.append_value(f(r)));
        Arc::new(b.finish())
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| FIRST_USER_ID + i64::from(r.user)),
        )),
        time_column(rows.iter().map(|r| r.time)),
        strings(|r| SUBSCRIPTIONS[usize::from(r.subscription)]),
        strings(|r| r.country),
        strings(|r| r.language),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.streak))),
    ];
    RecordBatch::try_new(schema.clone(), columns)
}

/// The schema of `items.parquet`.
pub fn item_schema() -> SchemaRef {
    let topics = DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)));
    Arc::new(Schema::new(vec![
        Field::new("item_id", DataType::Int64, false),
        time_field("updated_at"),
        Field::new("difficulty", DataType::Float64, false),
        Field::new("topics", topics, false),
        Field::new("popularity", DataType::Float64, false),
        Field::new("expected_response_ms", DataType::Float64, false),
    ]))
}

fn item_batch(schema: &SchemaRef, rows: &[ItemRow]) -> Result<RecordBatch, ArrowError> {
    let floats = |f: fn(&ItemRow) -> f64| -> ArrayRef {
        let mut b = Float64Builder::with_capacity(rows.len());
        rows.iter().for_each(|r| b.append_value(f(r)));
        Arc::new(b.finish())
    };
    let mut topics = ListBuilder::with_capacity(StringBuilder::new(), rows.len());
    for r in rows {
        r.topics.iter().for_each(|t| topics.values().append_value(t));
        topics.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| i64::from(r.item) + 1))),
        time_column(rows.iter().map(|r| r.time)),
        floats(|r| r.difficulty),
        Arc::new(topics.finish()),
        floats(|r| r.popularity),
        floats(|r| r.expected_response_ms),
    ];
    RecordBatch::try_new(schema.clone(), columns)
}
