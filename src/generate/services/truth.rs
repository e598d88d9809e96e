//! `FILE.truth.json` of the `services` scenario: everything that made the log (see the parent
//! module for the schema), and the chain of each regime read back as a
//! [`Chain`](crate::model::markov::Chain) for the evaluation.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::model::markov::{Chain, Row, Token};

/// How the truth writes the start padding of a context and the end of a trace.
pub const START_MARKER: &str = "^";
pub const END_MARKER: &str = "$";

/// Everything `FILE.truth.json` says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    pub scenario: String,
    pub seed: u64,
    /// `K`: the chain's order.
    pub order: usize,
    pub start_ms: i64,
    pub start: String,
    /// The time of the last row written.
    pub end_ms: i64,
    pub end: String,
    /// The end of the span the trace rate was fitted to (`--span`).
    pub span_end_ms: i64,
    pub span_end: String,
    pub markers: Markers,
    pub services: Vec<Service>,
    pub traffic: Traffic,
    pub changes: Vec<Change>,
    pub regimes: Vec<Regime>,
    pub edges: Vec<Edge>,
    pub bursts: Vec<Burst>,
    /// What the log holds (filled in once it is written).
    pub counts: Counts,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Markers {
    pub start: String,
    pub end: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    /// Traces start at entry services; nothing calls them.
    pub entry: bool,
    pub depth: usize,
    /// The probability that a trace ends after this service (1 when it calls nobody).
    pub end: f64,
}

/// The trace start process, the pipes and the defects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Traffic {
    /// Trace starts per second at the daily mean: the rate at `t` is
    /// `traces_per_s · (1 + diurnal_amplitude · cos(2π (hour_utc(t) − peak_hour_utc) / 24))`.
    pub traces_per_s: f64,
    pub diurnal_amplitude: f64,
    pub peak_hour_utc: f64,
    /// A pair's pipe closes once it has been unused this long after its last call finished.
    pub idle_timeout_ms: i64,
    /// The latency of a `timeout` error, and the share of errors that are timeouts.
    pub timeout_ms: f64,
    pub timeout_share: f64,
    /// A service calls the next one this long (uniform, inclusive) after it finished.
    pub gap_ms: [i64; 2],
    /// The probability that a row is followed by a defective copy (see `counts.defects`).
    pub defect_rate: f64,
}

/// A regime change: from `time_ms` on, draws use the next regime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub time_ms: i64,
    pub time: String,
    /// `edge_added`, `edge_removed` or `probabilities_shifted`.
    pub kind: String,
    /// The edge of `edge_added` and `edge_removed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The services whose probabilities `probabilities_shifted` changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
}

/// One regime: its period, its chain and what the chain implies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Regime {
    pub index: usize,
    pub start_ms: i64,
    pub start: String,
    /// The next change, or the end of the log.
    pub end_ms: i64,
    pub end: String,
    /// The chain's entropy rate over hops, in bits (see [`Chain::entropy_rate_bits`]).
    pub entropy_rate_bits: f64,
    /// The expected top-1 accuracy of the Bayes-optimal predictor.
    pub bayes_top1: f64,
    pub hops_per_trace: f64,
    /// One row per context any trace can be in: the next services' probabilities and the end's
    /// (key `$`); `^` pads contexts at a trace's start.
    pub transitions: Vec<Transition>,
    /// The expected traffic of each edge the regime uses.
    pub edges: Vec<EdgeTraffic>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub context: Vec<String>,
    pub next: IndexMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeTraffic {
    pub source: String,
    pub target: String,
    /// Expected calls per trace.
    pub per_trace: f64,
    /// Expected calls per second at the daily mean trace rate.
    pub per_s: f64,
}

/// A log-normal distribution: `median · exp(sigma · z)`, `z` standard normal.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogNormal {
    pub median: f64,
    pub sigma: f64,
    /// `median · exp(1.6449 sigma)`.
    pub p95: f64,
}

impl LogNormal {
    pub fn new(median: f64, sigma: f64) -> LogNormal {
        LogNormal {
            median,
            sigma,
            p95: r3(median * (1.644_853_6 * sigma).exp()),
        }
    }

    pub fn mean(&self) -> f64 {
        self.median * (self.sigma * self.sigma / 2.0).exp()
    }
}

pub(super) fn r3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3 + 0.0
}

/// The quality parameters of one edge (any regime's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    pub source: String,
    pub target: String,
    /// The target's processing time of a call (`processed` and `error` rows, before bursts).
    pub latency_ms: LogNormal,
    /// The payload of a call (`data_transmitted` rows).
    pub bytes: LogNormal,
    /// Opening the pair's pipe (`pipe_created` rows).
    pub setup_ms: LogNormal,
    /// A payload takes `bytes / bandwidth_bytes_per_ms` ms to send.
    pub bandwidth_bytes_per_ms: f64,
    /// The probability that a call fails outside bursts.
    pub error_rate: f64,
}

/// An error burst: calls on the edge fail with `error_rate` and their processing time is
/// multiplied by `latency_factor`, for calls made in `start_ms <= t < end_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Burst {
    pub source: String,
    pub target: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub start: String,
    pub end: String,
    pub error_rate: f64,
    pub latency_factor: f64,
}

/// Rows written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub rows: usize,
    /// Traces started and calls made (a `data_transmitted` row each).
    pub traces: usize,
    pub hops: usize,
    /// Rows of each kind, defects apart.
    pub by_kind: IndexMap<String, usize>,
    /// Defective copies, by reason.
    pub defects: IndexMap<String, usize>,
}

impl Truth {
    /// The regime in force at `t`.
    pub fn regime_at(&self, t: i64) -> usize {
        self.changes.iter().filter(|c| c.time_ms <= t).count()
    }

    /// The index of service `name`.
    pub fn service(&self, name: &str) -> Option<usize> {
        self.services.iter().position(|s| s.name == name)
    }

    /// Regime `r`'s chain over service names.
    pub fn chain(&self, r: usize) -> Chain<String> {
        let token = |s: &String| match s.as_str() {
            START_MARKER => Token::Start,
            _ => Token::Sym(s.clone()),
        };
        let rows: BTreeMap<Vec<Token<String>>, Row<String>> = self.regimes[r]
            .transitions
            .iter()
            .map(|t| {
                let mut next: Vec<(String, f64)> = t
                    .next
                    .iter()
                    .filter(|(k, _)| k.as_str() != END_MARKER)
                    .map(|(k, p)| (k.clone(), *p))
                    .collect();
                next.sort_by(|a, b| a.0.cmp(&b.0));
                let end = t.next.get(END_MARKER).copied().unwrap_or(0.0);
                (t.context.iter().map(token).collect(), Row { next, end })
            })
            .collect();
        Chain {
            order: self.order,
            rows,
        }
    }
}
