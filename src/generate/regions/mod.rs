//! The `regions` scenario: a multi-region event service, its load agents' metric samples, and
//! the ground truth behind both.
//!
//! `sluice generate regions --regions N --events E --seed S --span D --out FILE --context DIR`
//! writes, in FILE's format (`.parquet`, `.ndjson` or `.csv`, the same for every file):
//!
//! | file | rows |
//! |---|---|
//! | `FILE` | the `E` events, in event-time order |
//! | `DIR/load_samples.EXT` | the load agents' samples, in arrival order |
//! | `DIR/regions.EXT` | one row per region, and the outage's capacity ([`model::capacity_rows`]) |
//! | `DIR/completions.EXT` | the regions' acknowledgements of the events they store, in time order ([`completions`]) |
//! | `FILE.truth.json` | the noise-free model, the noise, the spikes, the outage (below) |
//!
//! `N` regions (default 3, 2 to 24) run from 2024-03-04T00:00:00Z (a Monday) for `D` (default
//! `7d`). Regions are `us-east` (UTC−5), `eu-west` (UTC), `ap-south` (UTC+5:30), `us-west`,
//! `eu-central`, `ap-northeast`, `sa-east`, `au-east`, then `region-09`…, with fixed offsets
//! (no daylight saving) and capacities of 600–1200 requests/s.
//!
//! **Load.** Region `r`'s *demand* at `t`, a fraction of its capacity, is
//! `max(0, level + trend_per_day × days + daily(local hour) + weekly(local day)) + spikes`
//! ([`model::Components`]): a daily profile peaking in the local afternoon, quieter weekends,
//! a trend, and rectangular spikes (about one per region every two days, 5–30 min, +0.10 to
//! +0.25). Its *load* is its demand, except during the one outage: the region in outage serves
//! `residual` (0.01) and the rest of its demand goes to the other regions in proportion to
//! their capacity (each gets `(demand_o − residual) × capacity_o / Σ other capacities` more).
//!
//! **Metrics.** With `u = min(max(load, 0), 0.98)`: `cpu = 100 × (idle + (1 − idle) × u)`,
//! `memory = offset + scale × u`, `queue_length = servers × u² / (1 − u)` and `latency_ms =
//! service_ms / (1 − u)` (M/M/1: latency grows as load nears capacity). A sample is the
//! noise-free value plus the series' AR(1) noise, clamped (`cpu` and `memory` to 0–100, the
//! others to ≥ 0) and rounded to 3 decimals ([`model::observe`]). See [`agents`] for the
//! reporting (every 15–60 s) and its defects: 1% of reports missing, 1% delayed 20 s–5 min,
//! 0.5% duplicated, 0.2% of values garbage (`NaN`, `n/a` or `ERR` as text; NaN in Parquet).
//!
//! **Events** ([`events`]) are a uniform sample of the requests: the arrival rate of a region
//! is `load × capacity_rps`, the same load that drives its queue length and latency.
//!
//! | `FILE` column | type | meaning |
//! |---|---|---|
//! | `event_time` | `Timestamp(ms, UTC)` | arrival |
//! | `event_type` | `Utf8` | `api_call` (45%), `page_view` (30%), `search` (12%), `upload` (8%), `checkout` (5%) |
//! | `event_id` | `Int64` | 1, 2, … in time order |
//! | `region` | `Utf8` | the region that served it |
//! | `home_region` | `Utf8` | the user's region (differs during the outage) |
//! | `user_id` | `Int64` | Zipf over `max(10, E / 20 / N)` users per region; `user_id % N` is the home region's index minus one |
//! | `device_id` | `Int64` | one to three per user (`user_id × 4 + k`) |
//! | `priority` | `Int64`, null in 10% | 1–10, higher for `checkout` |
//! | `complexity` | `Int64`, null in 15% | 1–5, higher for `upload` |
//! | `payload_bytes` | `Int64` | log-normal around the type's median (1 KB–500 KB) |
//!
//! | `load_samples` column | type | meaning |
//! |---|---|---|
//! | `time` | `Timestamp(ms, UTC)` | when the agent measured |
//! | `region` | `Utf8` | the agent's region |
//! | `cpu`, `memory` | `Float64` | percent |
//! | `queue_length` | `Float64` | mean requests waiting |
//! | `latency_ms` | `Float64` | mean time in the system |
//!
//! `completions` columns: `time` (`Timestamp(ms, UTC)`), `event_id` (`Int64`), `region`
//! (`Utf8`), `status` (`completed` or `failed`).
//!
//! `regions` columns: `region`, `updated_at`, `utc_offset_minutes` (`Int64`), `capacity_rps`
//! (`Float64`): every region at the start, then the region in outage at the outage's start with
//! `capacity_rps × residual` and at its end with its capacity again, as a control plane
//! publishes what a region can do. In NDJSON and CSV, times are RFC 3339 text and a null is an
//! absent key or an empty field.
//!
//! **`FILE.truth.json`** is [`model::Truth`]: `scenario`, `seed`, `start_ms`/`start`,
//! `end_ms`/`end`, `report_interval_ms` (`[15000, 60000]`), `max_utilization` (0.98),
//! `noise` (`model: "ar1"`, `ar`, and `sigma` and `innovation_sigma` by metric), `regions`
//! (each `name`, `utc_offset_minutes`, `capacity_rps`, `load: {level, trend_per_day, daily[24],
//! weekly[7]}` and `metrics`: by metric a transform `{kind: "linear", offset, scale}`,
//! `{kind: "queue", scale}` or `{kind: "latency", scale}`), `spikes` (`region`, `start_ms`,
//! `end_ms`, `start`, `end`, `magnitude`), `outage` (`region`, `start_ms`, `end_ms`, `start`,
//! `end`, `residual`) and `counts` (`events`, `samples`, `missing`, `duplicated`, `delayed`,
//! `garbage`, `completions`, `completions_failed`, `completions_unknown_event`,
//! `completions_unknown_region`). [`model::Truth::noise_free`] recomputes the noise-free value of any region and
//! metric at any time from it.
//!
//! Determinism: parameters, each agent, and the events draw from their own seeded streams, so
//! the same seed, `N`, `E` and `D` give byte-identical files.

pub mod agents;
pub mod completions;
pub mod events;
pub mod model;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::learning::START_MS;
use super::write::{Format, RowSink};
use super::{progress_bar, GenerateConfig, GenerateError, GenerateSummary};
use crate::value::Value;
use agents::{Agents, Reading};
use completions::Completions;
use events::{EventRow, Events, KINDS};
use model::{Truth, METRICS};

pub const DEFAULT_REGIONS: usize = 3;
pub const MAX_REGIONS: usize = 24;
pub const DEFAULT_SPAN_MS: u64 = 7 * 86_400_000;

fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// The columns of `FILE`.
pub fn event_schema() -> SchemaRef {
    let col = |name: &str, dt: DataType, nullable: bool| Field::new(name, dt, nullable);
    Arc::new(Schema::new(vec![
        col("event_time", time_type(), false),
        col("event_type", DataType::Utf8, false),
        col("event_id", DataType::Int64, false),
        col("region", DataType::Utf8, false),
        col("home_region", DataType::Utf8, false),
        col("user_id", DataType::Int64, false),
        col("device_id", DataType::Int64, false),
        col("priority", DataType::Int64, true),
        col("complexity", DataType::Int64, true),
        col("payload_bytes", DataType::Int64, false),
    ]))
}

/// The columns of `load_samples`.
pub fn sample_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("time", time_type(), false),
        Field::new("region", DataType::Utf8, false),
    ];
    fields.extend(METRICS.iter().map(|m| Field::new(*m, DataType::Float64, true)));
    Arc::new(Schema::new(fields))
}

/// The columns of `regions`.
pub fn region_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("region", DataType::Utf8, false),
        Field::new("updated_at", time_type(), false),
        Field::new("utc_offset_minutes", DataType::Int64, false),
        Field::new("capacity_rps", DataType::Float64, false),
    ]))
}

/// The columns of `completions`.
pub fn completion_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("time", time_type(), false),
        Field::new("event_id", DataType::Int64, false),
        Field::new("region", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
    ]))
}

/// The scenario's truth for `config` (its parameters; counts are filled in by [`generate`]).
pub fn truth(config: &GenerateConfig) -> Truth {
    let regions = config.regions.unwrap_or(DEFAULT_REGIONS);
    let span = config.span_ms.unwrap_or(DEFAULT_SPAN_MS) as i64;
    Truth::draw(config.seed, regions, START_MS, START_MS + span)
}

fn event_row(truth: &Truth, e: &EventRow) -> Vec<Value> {
    let name = |r: usize| Value::str(&truth.regions[r].name);
    let opt = |x: Option<i64>| x.map_or(Value::Null, Value::Int);
    vec![
        Value::Time(e.time),
        Value::str(e.kind),
        Value::Int(e.id),
        name(e.region),
        name(e.home),
        Value::Int(e.user_id),
        Value::Int(e.device_id),
        opt(e.priority),
        opt(e.complexity),
        Value::Int(e.payload_bytes),
    ]
}

/// Writes the events, the load samples, the regions and the truth (see the module docs).
pub(crate) fn generate(config: &GenerateConfig) -> Result<GenerateSummary, GenerateError> {
    let Some(dir) = &config.context else {
        return Err(GenerateError::Usage(
            "`regions` needs --context DIR, where its load samples and regions table go".into(),
        ));
    };
    let format = Format::of(&config.out)?;
    let mut truth = truth(config);
    let bar = progress_bar(config.events, config.progress);

    let mut sink = RowSink::create(&config.out, event_schema())?;
    let completions_path = dir.join(format!("completions.{}", format.extension()));
    let mut acks = RowSink::create(&completions_path, completion_schema())?;
    let mut completion_counts = model::Counts::default();
    let mut by_type = KINDS.map(|k| (k.0, 0usize));
    let (mut min_time, mut max_time) = (i64::MAX, i64::MIN);
    let mut events = Events::new(&truth, config.seed, config.events);
    let mut completions = Completions::new(&truth, config.seed);
    let users = events.users_per_region as usize * truth.regions.len();
    for e in events.by_ref() {
        by_type.iter_mut().find(|(k, _)| *k == e.kind).expect("a known type").1 += 1;
        (min_time, max_time) = (min_time.min(e.time), max_time.max(e.time));
        sink.push(event_row(&truth, &e))?;
        for c in completions.ready(Some(e.time), &mut completion_counts) {
            acks.push(c.row())?;
        }
        completions.event(&e);
        bar.inc(1);
    }
    for c in completions.ready(None, &mut completion_counts) {
        acks.push(c.row())?;
    }
    let written = sink.finish()?.rows;
    let acks = acks.finish()?;
    bar.finish_and_clear();

    let samples_path = dir.join(format!("load_samples.{}", format.extension()));
    let mut sink = RowSink::create(&samples_path, sample_schema())?;
    let mut agents = Agents::new(&truth, config.seed);
    for s in agents.by_ref() {
        let mut row = vec![Value::Time(s.time), Value::str(&truth.regions[s.region].name)];
        row.extend(s.readings.iter().map(|r| match (r, format) {
            (Reading::Value(x), _) => Value::float(*x),
            (Reading::Garbage(_), Format::Parquet) => Value::float(f64::NAN),
            (Reading::Garbage(text), _) => Value::str(text),
        }));
        sink.push(row)?;
    }
    let samples = sink.finish()?;
    truth.counts = model::Counts {
        events: written,
        completions: completion_counts.completions,
        completions_failed: completion_counts.completions_failed,
        completions_unknown_event: completion_counts.completions_unknown_event,
        completions_unknown_region: completion_counts.completions_unknown_region,
        ..agents.counts.clone()
    };

    let regions_path = dir.join(format!("regions.{}", format.extension()));
    let mut sink = RowSink::create(&regions_path, region_schema())?;
    for (r, at, capacity) in model::capacity_rows(&truth) {
        let region = &truth.regions[r];
        sink.push(vec![
            Value::str(&region.name),
            Value::Time(at),
            Value::Int(i64::from(region.utc_offset_minutes)),
            Value::float(capacity),
        ])?;
    }
    let regions = sink.finish()?;

    let truth_path = super::write_truth_file(&config.out, &truth)?;
    let mut by_type = by_type.to_vec();
    by_type.sort();
    let summary = GenerateSummary {
        events: written,
        late: 0,
        duplicates: 0,
        users,
        sessions: 0,
        min_time: if written == 0 { 0 } else { min_time },
        max_time: if written == 0 { 0 } else { max_time },
        by_type,
        context: vec![samples, regions, acks],
    };
    tracing::info!(?summary, path = %config.out.display(), truth = %truth_path.display(), "generated regions log");
    Ok(summary)
}

/// Reads a truth file written by [`generate`].
pub fn read_truth(path: &Path) -> Result<Truth, GenerateError> {
    super::read_truth_file(path, "regions")
}
