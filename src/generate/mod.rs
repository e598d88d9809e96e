//! Deterministic synthetic event logs (`sluice generate`).
//!
//! [`generate`] streams `events` rows of a scenario to a Parquet (`.parquet`) or NDJSON
//! (`.ndjson`) file in chunks of [`ROW_GROUP_ROWS`] rows (one Parquet row group each), so memory
//! stays bounded however many events are asked for. The same scenario, seed and count always give
//! a byte-identical file. Rows are written in *arrival* order, which is slightly out of event-time
//! order. Determinism holds on one platform; `f64` functions such as `exp` may round differently
//! elsewhere.
//!
//! Scenarios:
//! - `learning` (see [`learning`] for the simulation, [`schema`] for the columns and [`vocab`] for
//!   their values): a few rows arrive much later than [`LATENESS_MS`], and some are duplicate
//!   deliveries. Measured with seed 1: ~0.99M events per simulated day (1M events span 24.2 h, 10M
//!   span 10.1 days), 0.10% late rows (event time more than [`LATENESS_MS`] behind the maximum
//!   seen), 3.0% duplicate deliveries, 2.0% placements, 81% attempts, ~7% of attempts by bots. 10M
//!   events take ~17 s and ~75 MB of memory (550 MB of Parquet) in release on one core.
//! - `evolving` (see [`evolving`]): three event types whose payload schemas change at known times;
//!   the change points are written next to the output as `FILE.truth.json`. Rows are less than
//!   2 s out of order, never late and never duplicated.
//! - `uploads` (see [`uploads`] for the columns of the log and of its context tables): a
//!   storage-upload service whose rows carry keys into geo ranges (`uploader_ip`), profiles
//!   (`user_id`), sensor readings (`sensor_id`) and price ticks (`symbol`). ~0.99 rows per
//!   simulated 8.64 ms (10M rows span a day), 0.10% late rows, 2.9% duplicate deliveries.
//!   `--events 10000000 --users 1000000 --ranges 100000 --context DIR` takes ~24 s and ~110 MB
//!   of memory in release on a busy two-core machine (380 MB of log, 27 MB of context).
//! - `regions` (see [`regions`]): a multi-region service over `--span` (default 7 days): its
//!   events, and with them (`--context DIR`, required) its load agents' metric samples and a
//!   regions table, and `FILE.truth.json` with the noise-free load model, the noise, the spikes
//!   and the outage. `.parquet`, `.ndjson` or `.csv`, by FILE's extension.
//! - `services` (see [`services`]): traces walking a hidden order-K Markov chain over 20–50
//!   services, with diurnal rates, per-edge latency, payload and error distributions, error
//!   bursts and regime changes; `FILE.truth.json` holds the chain of each regime, its entropy
//!   rate, the change times, the edges' parameters and the bursts. `.parquet`, `.ndjson` or
//!   `.csv`, by FILE's extension.
//! - `nexmark` (see [`nexmark`]): the Nexmark benchmark's person, auction and bid streams from
//!   the reference generator, written to the directory `--out DIR` as three Parquet files.
//!
//! Context tables: with [`GenerateConfig::context`] (`--context DIR`), `learning` also writes
//! `DIR/profiles.parquet` and `DIR/items.parquet` ([`learning_context`]) and `uploads` writes
//! `DIR/{geo,profiles,sensors,prices}.parquet`, from the same simulation and seed, for enrichment
//! and as-of joins. Their draws come from their own random streams, so a log is byte-identical
//! with or without `--context`.

pub mod evolving;
#[cfg(test)]
mod evolving_tests;
pub mod learning;
pub mod learning_context;
#[cfg(test)]
mod learning_context_tests;
pub mod nexmark;
pub mod regions;
pub mod schema;
pub mod services;
pub mod table;
#[cfg(test)]
mod tests;
pub mod timed;
pub mod uploads;
pub mod vocab;
pub mod write;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow::error::ArrowError;
use indicatif::{ProgressBar, ProgressStyle};

use crate::format::{write_ndjson_event, ParquetSink, WriteError, ROW_GROUP_ROWS};
use learning::Learning;
use schema::{TIME_FIELD, TYPE_FIELD};
pub use table::ContextFile;

/// The scenarios [`generate`] knows.
pub const SCENARIOS: &[&str] = &["learning", "evolving", "uploads", "regions", "services", "nexmark"];

/// The lateness bound the summary counts late rows against: a row is late when its event time is
/// more than this behind the maximum event time of the rows before it.
pub const LATENESS_MS: i64 = 120_000;

/// What a generated file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateSummary {
    /// Rows written (duplicates included).
    pub events: usize,
    /// Rows more than [`LATENESS_MS`] behind the maximum event time before them.
    pub late: usize,
    /// Duplicate deliveries (rows repeating an earlier attempt).
    pub duplicates: usize,
    /// Users and sessions the simulation created (0 for `evolving`, which has neither; for
    /// `uploads`, the users and the uploads started).
    pub users: usize,
    pub sessions: u64,
    /// Smallest and largest event time written, epoch milliseconds (0 when empty).
    pub min_time: i64,
    pub max_time: i64,
    /// Number of rows of each event type, by name, sorted by name.
    pub by_type: Vec<(&'static str, usize)>,
    /// The context tables written, in the order written (empty without `--context`).
    pub context: Vec<ContextFile>,
}

/// One validated `sluice generate` run: the command-line flags, checked once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateConfig {
    pub scenario: String,
    pub events: usize,
    pub seed: u64,
    /// The log, `.parquet` or `.ndjson`.
    pub out: PathBuf,
    /// The directory for context tables (`learning` and `uploads`), created if missing.
    pub context: Option<PathBuf>,
    /// `uploads`: the number of users (default [`uploads::default_users`]).
    pub users: Option<usize>,
    /// `uploads`: the number of geo ranges, at least 2 (default [`uploads::DEFAULT_RANGES`]).
    pub ranges: Option<usize>,
    /// `regions`: the number of regions, 2 to [`regions::MAX_REGIONS`] (default 3).
    pub regions: Option<usize>,
    /// `regions` and `services`: the simulated time span in ms, at least an hour (default 7
    /// days for `regions`, [`services::span_ms`] for `services`).
    pub span_ms: Option<u64>,
    /// `services`: the number of services, 20 to 50 (default 30).
    pub services: Option<usize>,
    /// `services`: the order of the hidden chain, 1 or 2 (default 2).
    pub order: Option<usize>,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

impl GenerateConfig {
    /// A run of `scenario` without context tables or overrides.
    pub fn new(scenario: &str, events: usize, seed: u64, out: &Path) -> GenerateConfig {
        GenerateConfig {
            scenario: scenario.into(),
            events,
            seed,
            out: out.into(),
            context: None,
            users: None,
            ranges: None,
            regions: None,
            span_ms: None,
            services: None,
            order: None,
            progress: false,
        }
    }

    /// Checks that the scenario exists and takes the options given.
    pub fn validate(&self) -> Result<(), GenerateError> {
        let scenario = self.scenario.as_str();
        if !SCENARIOS.contains(&scenario) {
            return Err(GenerateError::UnknownScenario {
                scenario: scenario.into(),
            });
        }
        let unsupported = |option: &str| GenerateError::Usage(format!("{option} does not apply to `{scenario}`"));
        if self.context.is_some() && matches!(scenario, "evolving" | "services" | "nexmark") {
            return Err(unsupported("--context"));
        }
        if scenario != "uploads" {
            if self.users.is_some() {
                return Err(unsupported("--users"));
            }
            if self.ranges.is_some() {
                return Err(unsupported("--ranges"));
            }
        }
        if scenario != "regions" && self.regions.is_some() {
            return Err(unsupported("--regions"));
        }
        if scenario != "regions" && scenario != "services" && self.span_ms.is_some() {
            return Err(unsupported("--span"));
        }
        if scenario != "services" {
            if self.services.is_some() {
                return Err(unsupported("--services"));
            }
            if self.order.is_some() {
                return Err(unsupported("--order"));
            }
        }
        let (low, high) = (services::graph::MIN_SERVICES, services::graph::MAX_SERVICES);
        if self.services.is_some_and(|n| !(low..=high).contains(&n)) {
            return Err(GenerateError::Usage(format!(
                "--services must be in {low}..={high}, not {}",
                self.services.unwrap_or_default()
            )));
        }
        if self.order.is_some_and(|k| !(1..=2).contains(&k)) {
            return Err(GenerateError::Usage(format!(
                "--order must be 1 or 2, not {}",
                self.order.unwrap_or_default()
            )));
        }
        if self.regions.is_some_and(|r| !(2..=regions::MAX_REGIONS).contains(&r)) {
            return Err(GenerateError::Usage(format!(
                "--regions must be in 2..={}",
                regions::MAX_REGIONS
            )));
        }
        if self
            .span_ms
            .is_some_and(|s| !(3_600_000..=3650 * 86_400_000).contains(&s))
        {
            return Err(GenerateError::Usage("--span must be from 1h to 3650d".into()));
        }
        if self.users == Some(0) || self.users.is_some_and(|u| u > u32::MAX as usize) {
            return Err(GenerateError::Usage(format!("--users must be in 1..={}", u32::MAX)));
        }
        if self.ranges.is_some_and(|r| r < 2) {
            return Err(GenerateError::Usage("--ranges must be at least 2".into()));
        }
        Ok(())
    }
}

/// Why a log could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("unknown scenario `{scenario}`; the scenarios are: {}", SCENARIOS.join(", "))]
    UnknownScenario { scenario: String },
    #[error("{}: unknown output format; the file name must end in .parquet or .ndjson", path.display())]
    UnknownFormat { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: building a batch: {source}", path.display())]
    Arrow {
        path: PathBuf,
        #[source]
        source: ArrowError,
    },
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("{0}")]
    Usage(String),
    #[error("{}: not a {scenario} truth file: {message}", path.display())]
    Truth {
        path: PathBuf,
        scenario: &'static str,
        message: String,
    },
}

impl GenerateError {
    /// Whether the error is in the request (scenario, file name, options) rather than the run.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            GenerateError::UnknownScenario { .. } | GenerateError::UnknownFormat { .. } | GenerateError::Usage(_)
        )
    }
}

enum Sink {
    Parquet(Box<ParquetSink>),
    Ndjson(BufWriter<File>),
}

/// Writes `events` rows of `scenario` generated from `seed` to `out` (`.parquet` or `.ndjson`),
/// with a progress bar on stderr when `progress` is set.
pub fn generate(
    scenario: &str,
    events: usize,
    seed: u64,
    out: &Path,
    progress: bool,
) -> Result<GenerateSummary, GenerateError> {
    generate_with(&GenerateConfig {
        progress,
        ..GenerateConfig::new(scenario, events, seed, out)
    })
}

/// Runs `config`: the log, then any context tables.
pub fn generate_with(config: &GenerateConfig) -> Result<GenerateSummary, GenerateError> {
    config.validate()?;
    if let Some(dir) = &config.context {
        std::fs::create_dir_all(dir).map_err(|source| GenerateError::Io {
            path: dir.clone(),
            source,
        })?;
    }
    match config.scenario.as_str() {
        "learning" => generate_learning(config),
        "evolving" => evolving::generate(config.events, config.seed, &config.out, config.progress),
        "regions" => regions::generate(config),
        "services" => services::generate(config),
        "nexmark" => nexmark::generate(config),
        _ => uploads::generate(config),
    }
}

/// Reads the truth file of `scenario` at `path`.
fn read_truth_file<T: serde::de::DeserializeOwned>(path: &Path, scenario: &'static str) -> Result<T, GenerateError> {
    let text = std::fs::read_to_string(path).map_err(|source| GenerateError::Io {
        path: path.into(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| GenerateError::Truth {
        path: path.into(),
        scenario,
        message: e.to_string(),
    })
}

/// Writes `truth` as pretty JSON next to `out` (`OUT.truth.json`), and returns that path.
fn write_truth_file<T: serde::Serialize>(out: &Path, truth: &T) -> Result<PathBuf, GenerateError> {
    let path = evolving::truth_path(out);
    let mut json = serde_json::to_vec_pretty(truth).expect("the truth serializes");
    json.push(b'\n');
    std::fs::write(&path, json).map_err(|source| GenerateError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Opens `out` as Parquet (with `schema`) or NDJSON, by its extension.
fn open_sink(out: &Path, schema: arrow::datatypes::SchemaRef) -> Result<Sink, GenerateError> {
    match out.extension().and_then(|e| e.to_str()) {
        Some("parquet") => Ok(Sink::Parquet(Box::new(ParquetSink::open(out, schema)?))),
        Some("ndjson") => Ok(Sink::Ndjson(BufWriter::new(File::create(out).map_err(|source| {
            GenerateError::Io {
                path: out.into(),
                source,
            }
        })?))),
        _ => Err(GenerateError::UnknownFormat { path: out.into() }),
    }
}

/// A progress bar over `events` on stderr, hidden unless `progress` is set.
fn progress_bar(events: usize, progress: bool) -> ProgressBar {
    let bar = if progress {
        ProgressBar::new(events as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {human_pos}/{human_len} events ({per_sec}, eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

fn generate_learning(config: &GenerateConfig) -> Result<GenerateSummary, GenerateError> {
    let (events, seed, out) = (config.events, config.seed, config.out.as_path());
    let io_err = |source| GenerateError::Io {
        path: out.into(),
        source,
    };
    let mut sink = open_sink(out, schema::schema())?;
    let bar = progress_bar(events, config.progress);
    let mut g = Learning::new(seed, events);
    let mut tracker = config.context.as_ref().map(|_| learning_context::Tracker::default());
    let (mut late, mut duplicates, mut max_time, mut min_time) = (0, 0, i64::MIN, i64::MAX);
    let mut by_kind = [0usize; 4];
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
            if let Some(t) = &mut tracker {
                t.observe(&g, &r);
            }
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
                    let e = schema::event(&g, r);
                    write_ndjson_event(w, &e, TIME_FIELD, TYPE_FIELD).map_err(io_err)?;
                }
            }
        }
        written += rows.len();
        bar.inc(rows.len() as u64);
    }
    match sink {
        Sink::Parquet(s) => s.close()?,
        Sink::Ndjson(mut w) => w.flush().map_err(io_err)?,
    }
    bar.finish_and_clear();
    let context = match (tracker, &config.context) {
        (Some(t), Some(dir)) => t.write(&g, seed, dir)?,
        _ => Vec::new(),
    };
    let mut by_type: Vec<_> = vocab::Kind::ALL.map(|k| (k.name(), by_kind[k as usize])).to_vec();
    by_type.sort();
    let summary = GenerateSummary {
        events: written,
        late,
        duplicates,
        users: g.users.len(),
        sessions: g.session_count,
        min_time: if written == 0 { 0 } else { min_time },
        max_time: if written == 0 { 0 } else { max_time },
        by_type,
        context,
    };
    tracing::info!(?summary, path = %out.display(), "generated learning log");
    Ok(summary)
}
