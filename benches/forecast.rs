//! Load-forecast throughput. Run with `cargo bench --bench forecast` (set
//! `SLUICE_BENCH_FORECAST_SERIES` for the number of series, default 1,000, and
//! `SLUICE_BENCH_FORECAST_DAYS` for the days measured after the warm-up, default 2; with
//! `SLUICE_BENCH_FORECAST_DIR`, part 2's samples and spec are kept in that folder).
//!
//! Every series is a synthetic 5-minute load series (a daily cycle of 288 steps, quieter
//! weekends, a slow trend, AR(1) noise and rare spikes, each series with its own phase and seed),
//! forecast with the defaults a spec gets for `step = "5m"`, `periods = ["1d"]`, `horizon = 12`,
//! `models = ["ets", "mstl", "ar"]`: a training window of four periods (4 days, 1,152 steps),
//! refits every period (daily), an AutoETS search every 4th refit (`search_every`), the two
//! baselines besides the three models, inverse-error ensemble. (`dataflows/regional_load.toml`
//! adds a weekly period, a 14-day window and 6-hour refits.) With one period, a search of `ets`
//! fits AutoETS with and without the season and keeps the lower AICc; `mstl` always removes the
//! season and takes `ets`'s fit when `ets` kept it. Each series has its own refit phase, as a
//! dataflow derives from the series key, so refits and searches spread over the steps. It
//! measures:
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
//! "Per core" divides by CPU time, not wall time: the CPU seconds of the measuring thread
//! (`/proc/thread-self/schedstat`), or of the process for `sluice run` (`/proc/self/stat`), so
//! that other work on a shared machine does not count against sluice. The wall-clock figure is
//! printed beside it. Without `/proc`, CPU time is taken to be wall time. The model layer feeds
//! the series round-robin, as a dataflow does, so each update finds its series' state out of
//! cache; part 3 feeds one series at a time, so its update is the in-cache cost. The allocator
//! is tuned as the `sluice` binary tunes it (`run::tune_allocator`: freed memory is kept for a
//! second before it is returned to the OS).
//!
//! Results print as a Markdown table and are written to `bench-data/forecast-results.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use sluice::model::forecast::{AnyModel, ForecastConfig, Forecaster, ModelKind, Obs, Refit, SeriesForecaster, Window};
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

/// CPU seconds of this thread, if `/proc` says.
fn thread_cpu() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(stat.split_whitespace().next()?.parse::<f64>().ok()? / 1e9)
}

/// CPU seconds of this process, ended threads included (user + system, in clock ticks of
/// 1/100 s), if `/proc` says.
fn process_cpu() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// CPU and wall seconds of a stretch of work, from a CPU clock (`thread_cpu` or `process_cpu`).
#[derive(Clone, Copy, Default)]
struct Took {
    cpu: f64,
    wall: f64,
}

impl Took {
    fn measure<T>(clock: fn() -> Option<f64>, work: impl FnOnce() -> T) -> (Took, T) {
        let (cpu, wall) = (clock(), Instant::now());
        let out = work();
        let wall = wall.elapsed().as_secs_f64();
        let cpu = match (cpu, clock()) {
            (Some(a), Some(b)) => b - a,
            _ => wall,
        };
        (Took { cpu, wall }, out)
    }

    fn add(&mut self, other: Took) {
        self.cpu += other.cpu;
        self.wall += other.wall;
    }

    /// `count / seconds`, per CPU second and per wall second.
    fn rates(&self, count: usize) -> String {
        format!(
            "{:.0} ({:.0} by wall clock)",
            count as f64 / self.cpu,
            count as f64 / self.wall
        )
    }
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

/// Series `i`'s refit phase: a hash of `i` (a dataflow hashes the series key).
fn phase(i: usize) -> u64 {
    sluice::value::stable_hash(&format!("s{i:05}"))
}

/// A fitted forecaster of series `i` after the samples `y`.
fn forecaster(i: usize, y: &[f64]) -> SeriesForecaster {
    let mut m = SeriesForecaster::new(config()).unwrap().with_phase(phase(i));
    for v in y {
        m.observe(Obs::value(*v)).unwrap();
    }
    m
}

/// Series `i`: `n` samples of a 5-minute load series.
fn series(i: usize, n: usize) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(i as u64);
    let shift = rng.random_range(0..DAY) as f64;
    let (level, amplitude) = (rng.random_range(20.0..60.0), rng.random_range(5.0..20.0));
    let mut noise = 0.0;
    (0..n)
        .map(|t| {
            let day = std::f64::consts::TAU * (t as f64 + shift) / DAY as f64;
            let weekday = (t / DAY) % 7;
            noise = 0.6 * noise + 0.8 * rng.sample::<f64, _>(StandardNormal);
            let spike = if rng.random::<f64>() < 0.002 { 15.0 } else { 0.0 };
            let weekend = if weekday >= 5 { -5.0 } else { 0.0 };
            level + amplitude * day.sin() + weekend + 0.01 * t as f64 + noise + spike
        })
        .collect()
}

/// 1. The model layer: the time to feed every series the steps after the warm-up, the number
///    of model refits they ran, and how many ETS searches (`mstl` shares the fit of `ets`).
fn model_layer(all: &[Vec<f64>], warmup: usize) -> (Took, usize, usize) {
    let mut models: Vec<SeriesForecaster> = all
        .iter()
        .enumerate()
        .map(|(i, y)| forecaster(i, &y[..warmup]))
        .collect();
    let n = all[0].len();
    let (took, refits) = Took::measure(thread_cpu, || {
        let mut refits = 0;
        for t in warmup..n {
            for (m, y) in models.iter_mut().zip(all) {
                refits += m.observe(Obs::value(y[t])).unwrap().refits.len();
            }
        }
        refits
    });
    let cfg = config();
    let searches = (0..all.len())
        .map(|i| {
            (warmup + 1..=n)
                .filter(|&t| SeriesForecaster::schedule(&cfg, phase(i), t as u64) == Some(Refit::Search))
                .count()
        })
        .sum();
    (took, refits, searches)
}

/// 3. Per series: the time of `observe` on the steps without a refit (the steps with one are
///    timed apart and taken out) and their number, and the time of a from-scratch refit of every
///    model (baselines included) on the training window and their number.
fn update_vs_refit(all: &[Vec<f64>], warmup: usize, series: usize) -> ((Took, usize), (Took, usize)) {
    let cfg = config();
    let (mut update, mut updates, mut refit) = (Took::default(), 0, Took::default());
    for (i, y) in all.iter().enumerate().take(series) {
        // Incremental: a fitted forecaster; every step timed together, the refit steps also
        // alone.
        let mut m = forecaster(i, &y[..warmup]);
        let mut refit_steps = Took::default();
        let (all_steps, ()) = Took::measure(thread_cpu, || {
            for (t, v) in y.iter().enumerate().skip(warmup) {
                if SeriesForecaster::schedule(&cfg, phase(i), t as u64 + 1).is_some() {
                    let (took, step) = Took::measure(thread_cpu, || m.observe(Obs::value(*v)).unwrap());
                    assert!(!step.refits.is_empty());
                    refit_steps.add(took);
                } else {
                    updates += 1;
                    assert!(m.observe(Obs::value(*v)).unwrap().refits.is_empty());
                }
            }
        });
        update.add(Took {
            cpu: all_steps.cpu - refit_steps.cpu,
            wall: all_steps.wall - refit_steps.wall,
        });
        // From scratch: every model refitted on the window that ends at the last warm-up step.
        let window = &y[warmup - cfg.window..warmup];
        let settings = cfg.settings();
        let (took, ()) = Took::measure(thread_cpu, || {
            for kind in cfg.kinds() {
                let mut model = AnyModel::new(kind, &settings);
                model.refit(Window::values(window), &cfg.periods).unwrap();
            }
        });
        refit.add(took);
    }
    ((update, updates), (refit, series.min(all.len())))
}

/// 2. End to end: the samples as Parquet rows `(time, series, load)`, then `sluice run`.
fn end_to_end(all: &[Vec<f64>], dir: &Path) -> Took {
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
    std::fs::write(dir.join("forecast_bench.toml"), &spec).unwrap();
    let plan = plan_str(&spec, Path::new("forecast_bench.toml"), dir, &[]).unwrap();
    let (took, summary) = Took::measure(process_cpu, || run(&plan, &RunConfig::default()).unwrap());
    assert_eq!(summary.events_read as usize, rows.len());
    took
}

fn main() {
    // The allocator as the `sluice` binary sets it, so that part 2 measures what `sluice run` does.
    sluice::run::tune_allocator();
    let n_series = env("SLUICE_BENCH_FORECAST_SERIES", 1_000);
    let days = env("SLUICE_BENCH_FORECAST_DAYS", 2);
    let warmup = WARMUP_DAYS * DAY;
    let steps = warmup + days * DAY;
    let all: Vec<Vec<f64>> = (0..n_series).map(|i| series(i, steps)).collect();
    let mut table = String::from("| measurement | sluice | goal |\n|---|---|---|\n");

    let (took, refits, searches) = model_layer(&all, warmup);
    writeln!(
        table,
        "| model layer: samples/s per core, {n_series} series × 3 models (+ 2 baselines), {days} days after a {WARMUP_DAYS}-day warm-up, {refits} model refits, {searches} AutoETS searches | {} | ≥ 200,000 |",
        took.rates(n_series * days * DAY)
    )
    .unwrap();

    // `SLUICE_BENCH_FORECAST_DIR` keeps the samples and the spec there, to profile `sluice run`.
    let temp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("SLUICE_BENCH_FORECAST_DIR").map_or_else(|| temp.path().to_path_buf(), PathBuf::from);
    std::fs::create_dir_all(&dir).unwrap();
    let e2e = end_to_end(&all, &dir);
    writeln!(
        table,
        "| `sluice run`, 1 worker: samples/s per core, {n_series} series, all {} days | {} | ≥ 200,000 |",
        WARMUP_DAYS + days,
        e2e.rates(n_series * steps)
    )
    .unwrap();

    let ((update, updates), (refit, refits)) = update_vs_refit(&all, warmup, n_series.min(50));
    writeln!(
        table,
        "| model layer, one series at a time, steps with no refit due: samples/s per core | {} | ≥ 200,000 |",
        update.rates(updates)
    )
    .unwrap();
    let (update_us, refit_us) = (update.cpu / updates as f64 * 1e6, refit.cpu / refits as f64 * 1e6);
    writeln!(
        table,
        "| one update (no refit due) vs a from-scratch refit of every model on the {}-step window, CPU µs | {update_us:.2} vs {refit_us:.0} ({:.0}×) | ≥ 100× |",
        config().window,
        refit_us / update_us
    )
    .unwrap();

    print!("{table}");
    let out = repo().join("bench-data");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("forecast-results.md"), &table).unwrap();
}
