//! Load-forecast throughput. Run with `cargo bench --bench forecast` (set
//! `SLUICE_BENCH_FORECAST_SERIES` for the number of series, default 1,000, and
//! `SLUICE_BENCH_FORECAST_DAYS` for the days measured after the warm-up, default 2).
//!
//! Every series is a synthetic 5-minute load series (a daily cycle of 288 steps, quieter
//! weekends, a slow trend, AR(1) noise and rare spikes, each series with its own phase and seed),
//! forecast with the defaults a spec gets for `step = "5m"`, `periods = ["1d"]`, `horizon = 12`,
//! `models = ["ets", "mstl", "ar"]`: a training window of four periods (4 days, 1,152 steps),
//! refits every period (daily), the two baselines besides the three models, inverse-error
//! ensemble. (`dataflows/regional_load.toml` adds a weekly period, a 14-day window and 6-hour
//! refits; a 1,000-series bench of that would spend hours in refits.) With one period, `mstl`
//! removes the same season as `ets` and costs as much. It measures:
//! 1. the model layer: one `SeriesForecaster` per series, fed step by step across all series on
//!    one thread, after a warm-up of 4 days (a full training window) that fits every model;
//!    samples per second per core, refits included as they fall due (goal ≥ 200,000), and the
//!    same for the steps without a refit;
//! 2. the same series end to end: `sluice run` (in process, 1 worker, no `--out`) of a spec with
//!    one `[[forecasts]]` over a Parquet file of the samples (one row per series and step),
//!    warm-up days included; samples per second per core;
//! 3. the cost of one incremental update (`observe` of a step with no refit due) against a
//!    from-scratch refit of every model on the training window, per series (goal ≥ 100×).
//!
//! Results print as a Markdown table and are written to `bench-data/forecast-results.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use sluice::model::forecast::{AnyModel, ForecastConfig, Forecaster, ModelKind, Obs, SeriesForecaster, Window};
use sluice::plan::plan_str;
use sluice::run::{run, RunConfig};
use sluice::value::Value;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const STEP_MS: i64 = 300_000;
const DAY: usize = 288;
const WARMUP_DAYS: usize = 4;
const START_MS: i64 = 1_709_510_400_000; // 2024-03-04T00:00:00Z, a Monday

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The forecast settings (see the module doc), in steps.
fn config() -> ForecastConfig {
    let mut c = ForecastConfig::new(12, vec![DAY], 4 * DAY, DAY);
    c.detect_periods = 0;
    c.models = vec![ModelKind::Ets, ModelKind::Mstl, ModelKind::Ar];
    c
}

/// Series `i`: `n` samples of a 5-minute load series.
fn series(i: usize, n: usize) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(i as u64);
    let phase = rng.random_range(0..DAY) as f64;
    let (level, amplitude) = (rng.random_range(20.0..60.0), rng.random_range(5.0..20.0));
    let mut noise = 0.0;
    (0..n)
        .map(|t| {
            let day = std::f64::consts::TAU * (t as f64 + phase) / DAY as f64;
            let weekday = (t / DAY) % 7;
            noise = 0.6 * noise + 0.8 * rng.sample::<f64, _>(StandardNormal);
            let spike = if rng.random::<f64>() < 0.002 { 15.0 } else { 0.0 };
            let weekend = if weekday >= 5 { -5.0 } else { 0.0 };
            level + amplitude * day.sin() + weekend + 0.01 * t as f64 + noise + spike
        })
        .collect()
}

/// 1. The model layer: seconds to feed `measured` steps of every series after the warm-up, and
///    the number of refits they ran.
fn model_layer(all: &[Vec<f64>], warmup: usize) -> (Duration, usize) {
    let mut models: Vec<SeriesForecaster> = all
        .iter()
        .map(|y| {
            let mut m = SeriesForecaster::new(config()).unwrap();
            for v in &y[..warmup] {
                m.observe(Obs::value(*v)).unwrap();
            }
            m
        })
        .collect();
    let n = all[0].len();
    let mut refits = 0;
    let started = Instant::now();
    for t in warmup..n {
        for (m, y) in models.iter_mut().zip(all) {
            refits += m.observe(Obs::value(y[t])).unwrap().refits.len();
        }
    }
    (started.elapsed(), refits)
}

/// 3. Per series: the mean time of `observe` on steps without a refit, and of a from-scratch
///    refit of every model (baselines included) on the training window.
fn update_vs_refit(all: &[Vec<f64>], warmup: usize, series: usize) -> (Duration, Duration) {
    let cfg = config();
    let (mut update, mut updates, mut refit, mut refits) = (Duration::ZERO, 0u32, Duration::ZERO, 0u32);
    for y in all.iter().take(series) {
        // Incremental: a fitted forecaster, timed on the steps where no refit is due.
        let mut m = SeriesForecaster::new(cfg.clone()).unwrap();
        for v in &y[..warmup] {
            m.observe(Obs::value(*v)).unwrap();
        }
        for v in &y[warmup..] {
            let started = Instant::now();
            let step = m.observe(Obs::value(*v)).unwrap();
            let took = started.elapsed();
            if step.refits.is_empty() {
                update += took;
                updates += 1;
            }
        }
        // From scratch: every model refitted on the window that ends at the last warm-up step.
        let window = &y[warmup - cfg.window..warmup];
        let settings = cfg.settings();
        let started = Instant::now();
        for kind in cfg.kinds() {
            let mut model = AnyModel::new(kind, &settings);
            model.refit(Window::values(window), &cfg.periods).unwrap();
        }
        refit += started.elapsed();
        refits += 1;
    }
    (update / updates, refit / refits)
}

/// 2. End to end: the samples as Parquet rows `(time, series, load)`, then `sluice run`.
fn end_to_end(all: &[Vec<f64>], dir: &Path) -> Duration {
    let path = dir.join("samples.parquet");
    let columns: Vec<String> = ["time", "series", "load"].iter().map(|c| c.to_string()).collect();
    let mut rows = Vec::with_capacity(all.len() * all[0].len());
    for t in 0..all[0].len() {
        for (i, y) in all.iter().enumerate() {
            rows.push(vec![
                Value::Time(START_MS + t as i64 * STEP_MS),
                Value::str(&format!("s{i:05}")),
                Value::float(y[t]),
            ]);
        }
    }
    let batch = sluice::format::arrow_write::rows_to_batch(&columns, &rows).unwrap();
    let mut sink = sluice::format::arrow_write::ParquetSink::open(&path, batch.schema()).unwrap();
    sink.write(&batch).unwrap();
    sink.close().unwrap();
    let spec = format!(
        r#"
[pipeline]
name = "forecast_bench"
tick = "1s"

[sources.samples]
path = "{}"
time_field = "time"

[[forecasts]]
name = "load_forecast"
source = "samples"
keys = ["series"]
values = ["load"]
step = "5m"
periods = ["1d"]
horizon = 12
models = ["ets", "mstl", "ar"]
training_window = "4d"
refit_every = "1d"
"#,
        path.display()
    );
    let plan = plan_str(&spec, Path::new("forecast_bench.toml"), dir, &[]).unwrap();
    let started = Instant::now();
    let summary = run(&plan, &RunConfig::default()).unwrap();
    let took = started.elapsed();
    assert_eq!(summary.events_read as usize, rows.len());
    took
}

fn main() {
    let n_series = env("SLUICE_BENCH_FORECAST_SERIES", 1_000);
    let days = env("SLUICE_BENCH_FORECAST_DAYS", 2);
    let warmup = WARMUP_DAYS * DAY;
    let steps = warmup + days * DAY;
    let all: Vec<Vec<f64>> = (0..n_series).map(|i| series(i, steps)).collect();
    let mut table = String::from("| measurement | sluice | goal |\n|---|---|---|\n");

    let (took, refits) = model_layer(&all, warmup);
    let measured = n_series * days * DAY;
    writeln!(
        table,
        "| model layer: samples/s per core, {n_series} series × 3 models (+ 2 baselines), {days} days after a {WARMUP_DAYS}-day warm-up, {refits} refits | {:.0} | ≥ 200,000 |",
        measured as f64 / took.as_secs_f64()
    )
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let e2e = end_to_end(&all, dir.path());
    writeln!(
        table,
        "| `sluice run`, 1 worker: samples/s per core, {n_series} series, all {} days | {:.0} | ≥ 200,000 |",
        WARMUP_DAYS + days,
        (n_series * steps) as f64 / e2e.as_secs_f64()
    )
    .unwrap();

    let (update, refit) = update_vs_refit(&all, warmup, n_series.min(50));
    writeln!(
        table,
        "| model layer, steps with no refit due: samples/s per core | {:.0} | ≥ 200,000 |",
        1.0 / update.as_secs_f64()
    )
    .unwrap();
    writeln!(
        table,
        "| one update (no refit due) vs a from-scratch refit of every model on the {}-step window, µs | {:.2} vs {:.0} ({:.0}×) | ≥ 100× |",
        config().window,
        update.as_secs_f64() * 1e6,
        refit.as_secs_f64() * 1e6,
        refit.as_secs_f64() / update.as_secs_f64()
    )
    .unwrap();

    print!("{table}");
    let out = repo().join("bench-data");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("forecast-results.md"), &table).unwrap();
}
