//! The `services` scenario: services that call each other along traces, the log of their
//! interactions, and the ground truth behind it.
//!
//! `sluice generate services --services N --events E --order K --seed S [--span D] --out FILE`
//! writes `E` rows to `FILE` (`.parquet`, `.ndjson` or `.csv`) and `FILE.truth.json`.
//!
//! `N` services (default 30, 20 to 50; [`graph`] draws the call graph) run from
//! 2024-03-04T00:00:00Z over `D` (default `E × 86.4 ms`, one day per million rows, at least an
//! hour). Traces start at three entry services at a diurnal rate and walk a hidden order-`K`
//! Markov chain (`K` = 1 or 2, default 2): the next service depends on the last `K` services of
//! the trace, and a trace ends when the chain draws the end (nothing marks it in the log: the
//! trace's rows just stop). Three **regime changes** at 1/4, 1/2 and 3/4 of the span (to the
//! minute) add an edge, remove one and shift probabilities ([`graph`]). Each edge has its own
//! log-normal processing latency, payload size and pipe setup time, a bandwidth and an error
//! rate; **error bursts** (one per 3 h of span, 3 to 40, each 1% to 4% of the span between a
//! minute and an hour) raise an edge's error rate to 0.3–0.7 and its latency 2–4 times. See
//! [`sim`] for the rows a call makes, the pipes and the defects.
//!
//! | `FILE` column | type | meaning |
//! |---|---|---|
//! | `time` | `Timestamp(ms, UTC)` | when the step happened (see [`sim`]); rows are in time order |
//! | `trace_id` | `Int64`, null in `missing_trace` defects | 1, 2, … by trace start |
//! | `source`, `target` | `Utf8` | the calling and the called service |
//! | `kind` | `Utf8` | `pipe_created`, `data_transmitted`, `processed`, `error` (`retry` in defects) |
//! | `bytes` | `Int64` | the payload of `data_transmitted`, 0 otherwise |
//! | `latency_ms` | `Float64` | setup, transfer or processing time (negative in defects) |
//! | `status` | `Utf8` | `ok`, or `error` or `timeout` for `error` rows |
//!
//! A trace's services are the `source` of its first `data_transmitted` row, then the `target`
//! of each: every call starts at the previous call's target.
//!
//! **`FILE.truth.json`** is [`truth::Truth`]: `scenario`, `seed`, `order`, `start_ms`/`start`,
//! `end_ms`/`end` (the last row), `span_end_ms`/`span_end`, `markers` (`^` pads a context at a
//! trace's start, `$` is the end), `services` (`name`, `entry`, `depth`, `end`), `traffic` (the
//! trace rate and its diurnal cycle, pipe idle timeout, timeouts, gaps, defect rate),
//! `changes` (`time_ms`, `time`, `kind`, and `source`/`target` or `services`), `regimes` (each
//! with its period, `entropy_rate_bits`, `bayes_top1`, `hops_per_trace`, `transitions`: a row
//! per context, and `edges`: expected calls per trace and per second), `edges` (per edge:
//! `latency_ms`, `bytes` and `setup_ms` as `{median, sigma, p95}`, `bandwidth_bytes_per_ms`,
//! `error_rate`), `bursts` and `counts` (rows, traces, hops, by kind, defects by reason).
//! [`truth::Truth::chain`] reads a regime back as a [`Chain`](crate::model::markov::Chain).
//!
//! **Rate.** `traffic.traces_per_s` is fitted so that the span holds about `E` rows: the
//! expected rows per trace come from each regime's chain (2 rows per call, plus a
//! `pipe_created` with the probability that a Poisson stream of the edge's calls left the pipe
//! idle for `idle_timeout_ms`), averaged over the span and its diurnal cycle. The log stops at
//! exactly `E` rows, so it ends near the span's end, not exactly at it.
//!
//! Determinism: the graph, the parameters, the trace starts and the walks draw from their own
//! seeded streams, so the same seed, `N`, `K`, `E` and `D` give byte-identical files.

pub mod graph;
pub mod sim;
#[cfg(test)]
mod tests;
pub mod truth;

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use indexmap::IndexMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::learning::START_MS;
use super::write::RowSink;
use super::{progress_bar, GenerateConfig, GenerateError, GenerateSummary};
use crate::value::{format_time, Value};
use graph::{pick, Model};
use sim::{diurnal, Interaction, Interactions, DEFECTS, KINDS, UNKNOWN_KIND};
use truth::{
    r3, Burst, Change, Counts, Edge, EdgeTraffic, LogNormal, Markers, Regime, Service, Traffic, Transition, Truth,
};

pub const DEFAULT_SERVICES: usize = 30;
pub const DEFAULT_ORDER: usize = 2;
/// The default span per row: a million rows a day.
pub const DEFAULT_MS_PER_ROW: f64 = 86.4;
pub const MIN_SPAN_MS: i64 = 3_600_000;
/// When the regime changes, as fractions of the span.
pub const CHANGES_AT: [f64; 3] = [0.25, 0.5, 0.75];
pub const IDLE_TIMEOUT_MS: i64 = 30_000;
pub const TIMEOUT_MS: f64 = 2_000.0;
pub const TIMEOUT_SHARE: f64 = 0.2;
pub const GAP_MS: [i64; 2] = [0, 3];
pub const DEFECT_RATE: f64 = 0.001;

fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// The columns of `FILE`.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("time", time_type(), false),
        Field::new("trace_id", DataType::Int64, true),
        Field::new("source", DataType::Utf8, false),
        Field::new("target", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("bytes", DataType::Int64, false),
        Field::new("latency_ms", DataType::Float64, false),
        Field::new("status", DataType::Utf8, false),
    ]))
}

/// The span of `config`: `--span`, or [`DEFAULT_MS_PER_ROW`] per event (at least an hour).
pub fn span_ms(config: &GenerateConfig) -> i64 {
    match config.span_ms {
        Some(s) => s as i64,
        None => ((config.events as f64 * DEFAULT_MS_PER_ROW) as i64).max(MIN_SPAN_MS),
    }
}

fn log_uniform(rng: &mut ChaCha8Rng, low: f64, high: f64) -> f64 {
    (rng.random_range(low.ln()..high.ln())).exp()
}

/// The model and the truth of `config` (counts empty, `end` the span's end).
pub fn truth(config: &GenerateConfig) -> (Model, Truth) {
    let n = config.services.unwrap_or(DEFAULT_SERVICES);
    let order = config.order.unwrap_or(DEFAULT_ORDER);
    let model = Model::draw(config.seed, n, order);
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x7061_7261_6d73_0001);
    let (start, span) = (START_MS, span_ms(config));
    let end = start + span;
    let name = |s: usize| model.names[s].clone();
    let change_ms: Vec<i64> = CHANGES_AT
        .iter()
        .map(|f| start + (span as f64 * f) as i64 / 60_000 * 60_000)
        .collect();
    let changes = model
        .changes
        .iter()
        .zip(&change_ms)
        .map(|(c, &t)| {
            let (source, target, services) = match c {
                graph::Change::EdgeAdded { source, target } | graph::Change::EdgeRemoved { source, target } => {
                    (Some(name(*source)), Some(name(*target)), Vec::new())
                }
                graph::Change::ProbabilitiesShifted { services } => {
                    (None, None, services.iter().map(|s| name(*s)).collect())
                }
            };
            Change {
                time_ms: t,
                time: format_time(t),
                kind: c.kind().into(),
                source,
                target,
                services,
            }
        })
        .collect();
    let edges: Vec<Edge> = model
        .edges()
        .into_iter()
        .map(|(a, b)| Edge {
            source: name(a),
            target: name(b),
            latency_ms: LogNormal::new(r3(log_uniform(&mut rng, 2.0, 80.0)), r3(rng.random_range(0.3..0.9))),
            bytes: LogNormal::new(
                log_uniform(&mut rng, 300.0, 200_000.0).round(),
                r3(rng.random_range(0.4..1.0)),
            ),
            setup_ms: LogNormal::new(r3(log_uniform(&mut rng, 3.0, 30.0)), 0.3),
            bandwidth_bytes_per_ms: log_uniform(&mut rng, 2_000.0, 50_000.0).round(),
            error_rate: (log_uniform(&mut rng, 0.001, 0.03) * 1e5).round() / 1e5,
        })
        .collect();
    let traffic = Traffic {
        traces_per_s: 0.0,
        diurnal_amplitude: r3(rng.random_range(0.4..0.6)),
        peak_hour_utc: r3(rng.random_range(12.0..16.0)),
        idle_timeout_ms: IDLE_TIMEOUT_MS,
        timeout_ms: TIMEOUT_MS,
        timeout_share: TIMEOUT_SHARE,
        gap_ms: GAP_MS,
        defect_rate: DEFECT_RATE,
    };
    let bursts = bursts(&model, &change_ms, start, span, &mut rng);
    let mut truth = Truth {
        scenario: "services".into(),
        seed: config.seed,
        order,
        start_ms: start,
        start: format_time(start),
        end_ms: end,
        end: format_time(end),
        span_end_ms: end,
        span_end: format_time(end),
        markers: Markers {
            start: truth::START_MARKER.into(),
            end: truth::END_MARKER.into(),
        },
        services: (0..n)
            .map(|s| Service {
                name: name(s),
                entry: model.depth[s] == 0,
                depth: model.depth[s],
                end: if model.regimes[0].calls[s].is_empty() {
                    1.0
                } else {
                    model.end[s]
                },
            })
            .collect(),
        traffic,
        changes,
        regimes: Vec::new(),
        edges,
        bursts: bursts
            .into_iter()
            .map(|(a, b, s, e, rate, factor)| Burst {
                source: name(a),
                target: name(b),
                start_ms: s,
                end_ms: e,
                start: format_time(s),
                end: format_time(e),
                error_rate: rate,
                latency_factor: factor,
            })
            .collect(),
        counts: Counts::default(),
    };
    truth.traffic.traces_per_s = calibrate(&model, &truth, config.events);
    truth.regimes = regimes(&model, &truth);
    (model, truth)
}

/// Error bursts: `(source, target, start, end, error_rate, latency_factor)`, sorted by start;
/// each on an edge drawn by its traffic in the regime at its start.
fn bursts(
    model: &Model,
    change_ms: &[i64],
    start: i64,
    span: i64,
    rng: &mut ChaCha8Rng,
) -> Vec<(usize, usize, i64, i64, f64, f64)> {
    let count = ((span as f64 / 3.0 / 3_600_000.0).round() as usize).clamp(3, 40);
    let visits: Vec<Vec<((usize, usize), f64)>> = model
        .chains
        .iter()
        .map(|c| c.edge_visits().into_iter().collect())
        .collect();
    let mut out: Vec<_> = (0..count)
        .map(|_| {
            let low = (span / 100).max(60_000);
            let length = rng.random_range(low..=(span / 25).max(low + 60_000)).min(3_600_000) / 1000 * 1000;
            let at = (start + rng.random_range(0..(span - length).max(1))) / 1000 * 1000;
            let regime = change_ms.iter().filter(|c| **c <= at).count();
            let weights: Vec<f64> = visits[regime].iter().map(|e| e.1).collect();
            let (a, b) = visits[regime][pick(&weights, rng.random())].0;
            let rate = r3(rng.random_range(0.3..0.7));
            (a, b, at, at + length, rate, r3(rng.random_range(2.0..4.0)))
        })
        .collect();
    out.sort_by_key(|b| (b.2, b.0, b.1));
    out
}

/// The mean trace rate (per second at the daily mean) that gives about `events` rows over the
/// span (see the module docs).
fn calibrate(model: &Model, truth: &Truth, events: usize) -> f64 {
    let traffic = &truth.traffic;
    let per_trace: Vec<(f64, Vec<f64>)> = model
        .chains
        .iter()
        .map(|c| (c.hops_per_sequence(), c.edge_visits().into_values().collect()))
        .collect();
    let points = 1440;
    let span = (truth.span_end_ms - truth.start_ms) as f64;
    let samples: Vec<(usize, f64)> = (0..points)
        .map(|i| {
            let t = truth.start_ms as f64 + span * (i as f64 + 0.5) / points as f64;
            (
                truth.regime_at(t as i64),
                diurnal(t, traffic.diurnal_amplitude, traffic.peak_hour_utc),
            )
        })
        .collect();
    let idle_s = traffic.idle_timeout_ms as f64 / 1000.0;
    let rows = |rate: f64| -> f64 {
        let mut rows = 0.0;
        for &(r, f) in &samples {
            let (hops, visits) = &per_trace[r];
            let calls: f64 = visits.iter().map(|v| rate * f * v).sum();
            let cold: f64 = visits
                .iter()
                .map(|v| rate * f * v * (-(rate * f * v) * idle_s).exp())
                .sum();
            let pipes = if calls > 0.0 { cold / calls } else { 0.0 };
            rows += span / 1000.0 / points as f64 * rate * f * hops * (2.0 + pipes);
        }
        rows * (1.0 + traffic.defect_rate)
    };
    let mut rate = 1.0;
    for _ in 0..20 {
        rate = events as f64 / (rows(rate) / rate);
    }
    (rate * 1e6).round() / 1e6
}

/// Each regime's period, chain, and what the chain implies.
fn regimes(model: &Model, truth: &Truth) -> Vec<Regime> {
    let name = |s: usize| model.names[s].clone();
    let token = |t: &crate::model::markov::Token<usize>| match t {
        crate::model::markov::Token::Start => truth::START_MARKER.to_string(),
        crate::model::markov::Token::Sym(s) => name(*s),
    };
    model
        .chains
        .iter()
        .enumerate()
        .map(|(r, chain)| {
            let start_ms = if r == 0 {
                truth.start_ms
            } else {
                truth.changes[r - 1].time_ms
            };
            let end_ms = truth.changes.get(r).map_or(truth.end_ms, |c| c.time_ms);
            let transitions = chain
                .rows
                .iter()
                .map(|(c, row)| {
                    let mut next: IndexMap<String, f64> = row.next.iter().map(|(s, p)| (name(*s), *p)).collect();
                    next.insert(truth::END_MARKER.into(), row.end);
                    Transition {
                        context: c.iter().map(token).collect(),
                        next,
                    }
                })
                .collect();
            let edges = chain
                .edge_visits()
                .into_iter()
                .filter(|(_, v)| *v > 0.0)
                .map(|((a, b), v)| EdgeTraffic {
                    source: name(a),
                    target: name(b),
                    per_trace: v,
                    per_s: v * truth.traffic.traces_per_s,
                })
                .collect();
            Regime {
                index: r,
                start_ms,
                start: format_time(start_ms),
                end_ms,
                end: format_time(end_ms),
                entropy_rate_bits: chain.entropy_rate_bits(),
                bayes_top1: chain.bayes_top1(),
                hops_per_trace: chain.hops_per_sequence(),
                transitions,
                edges,
            }
        })
        .collect()
}

fn row_values(model: &Model, e: &Interaction) -> Vec<Value> {
    vec![
        Value::Time(e.time),
        e.trace.map_or(Value::Null, Value::Int),
        Value::str(&model.names[e.source]),
        Value::str(&model.names[e.target]),
        Value::str(e.kind),
        Value::Int(e.bytes),
        Value::float(e.latency_ms),
        Value::str(e.status),
    ]
}

/// Writes the log and the truth (see the module docs).
pub(crate) fn generate(config: &GenerateConfig) -> Result<GenerateSummary, GenerateError> {
    let (model, mut truth) = truth(config);
    let bar = progress_bar(config.events, config.progress);
    let mut sink = RowSink::create(&config.out, schema())?;
    let mut counts = Counts {
        by_kind: KINDS.iter().map(|k| (k.to_string(), 0)).collect(),
        defects: DEFECTS.iter().map(|k| (k.to_string(), 0)).collect(),
        ..Counts::default()
    };
    let (mut min_time, mut max_time) = (i64::MAX, i64::MIN);
    let mut traces = 0;
    for e in Interactions::new(&model, &truth).take(config.events) {
        match e.defect {
            Some(reason) => counts.defects[reason] += 1,
            None => {
                counts.by_kind[e.kind] += 1;
                traces = traces.max(e.trace.unwrap_or(0));
            }
        }
        (min_time, max_time) = (min_time.min(e.time), max_time.max(e.time));
        sink.push(row_values(&model, &e))?;
        bar.inc(1);
    }
    let written = sink.finish()?.rows;
    bar.finish_and_clear();
    counts.rows = written;
    counts.traces = traces as usize;
    counts.hops = counts.by_kind[sim::DATA_TRANSMITTED];
    if written > 0 {
        truth.end_ms = max_time;
        truth.end = format_time(max_time);
        if let Some(last) = truth.regimes.last_mut() {
            last.end_ms = max_time;
            last.end = format_time(max_time);
        }
    }
    let mut by_type: Vec<(&'static str, usize)> = KINDS.iter().map(|k| (*k, counts.by_kind[*k])).collect();
    by_type.push((UNKNOWN_KIND, counts.defects["unknown_kind"]));
    by_type.sort();
    truth.counts = counts;
    let truth_path = super::write_truth_file(&config.out, &truth)?;
    let summary = GenerateSummary {
        events: written,
        late: 0,
        duplicates: 0,
        users: 0,
        sessions: traces as u64,
        min_time: if written == 0 { 0 } else { min_time },
        max_time: if written == 0 { 0 } else { max_time },
        by_type,
        context: Vec::new(),
    };
    tracing::info!(?summary, path = %config.out.display(), truth = %truth_path.display(), "generated services log");
    Ok(summary)
}

/// Reads a truth file written by [`generate`].
pub fn read_truth(path: &Path) -> Result<Truth, GenerateError> {
    super::read_truth_file(path, "services")
}
