//! `[[services]]`: service-interaction models over an interaction log (`render::services`):
//! a Markov model of which service a sequence calls next, resonance scores per pair, and
//! pipes created before the calls that need them. Data only.

use serde::Serialize;

use crate::event::Accessor;
use crate::model::markov::Discount;
use crate::model::pipes::PipeConfig;
use crate::model::resonance::ResonanceConfig;

/// A rule giving the pipes of matching pairs filters and transforms (`[[services.rules]]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PipeRule {
    /// A service name, or `*` for any.
    pub source: String,
    pub target: String,
    pub filters: Vec<String>,
    pub transforms: Vec<String>,
}

impl PipeRule {
    pub fn matches(&self, source: &str, target: &str) -> bool {
        (self.source == "*" || self.source == source) && (self.target == "*" || self.target == target)
    }
}

/// One `[[services]]` entry, validated.
#[derive(Debug, Clone, Serialize)]
pub struct ServicesPlan {
    /// Outputs are `NAME_hops`, `NAME_transitions`, … (see [`ServicesPlan::outputs`]).
    pub name: String,
    /// The interaction log's fields.
    pub sequence: Accessor,
    pub source: Accessor,
    pub target: Accessor,
    pub kind: Accessor,
    pub bytes: Accessor,
    pub latency: Accessor,
    /// The highest order counted (1 to 3); `order` fixes the order used, else it is chosen
    /// among `1..=max_order` at every re-selection.
    pub max_order: usize,
    pub order: Option<usize>,
    /// A fixed discount; else chosen from [`Discount::GRID`] at every re-selection.
    pub discount: Option<Discount>,
    /// The counts' sliding event-time window.
    pub window_ms: u64,
    /// Longer windows, each with its own counts, order and discount, in increasing order; the
    /// hop probabilities mix all windows' models by fixed share (`model::markov::mixture`).
    pub long_windows_ms: Vec<u64>,
    /// The share of the mixture's weight spread evenly after each hop, in `[0, 1)`.
    pub mix_share: f64,
    /// How often the order and discount are chosen again (`None`: never).
    pub reselect_every_ms: Option<u64>,
    /// The newest share of the window's hops held out to choose them.
    pub held_out: f64,
    pub transitions_every_ms: u64,
    /// Predictions per active sequence.
    pub top_k: usize,
    /// A sequence without a call for this long has ended.
    pub sequence_timeout_ms: u64,
    pub resonance_window_ms: u64,
    pub resonance: ResonanceConfig,
    /// Pipes: the horizon of the interaction probability, the creation threshold, the idle
    /// timeout, the adaptive threshold's target precision, its window of resolved pipes and
    /// lowest value, and the completed calls between feedbacks.
    pub horizon_ms: u64,
    pub threshold: f64,
    pub idle_timeout_ms: u64,
    pub target_precision: Option<f64>,
    pub precision_window: usize,
    pub min_threshold: f64,
    pub feedback_calls: u64,
    pub pipes: PipeConfig,
    pub rules: Vec<PipeRule>,
}

/// The columns of each output, by suffix (`NAME_SUFFIX`), and whether it is a changelog.
pub const OUTPUTS: [(&str, &[&str], bool); 7] = [
    (
        "hops",
        &["time", "sequence", "context", "next", "probability", "top1", "order"],
        false,
    ),
    (
        "selection",
        &["time", "window_ms", "order", "discount", "bits_per_hop", "chosen"],
        false,
    ),
    ("transitions", &["context", "next", "count", "probability"], true),
    (
        "predictions",
        &["sequence", "service", "next", "probability", "rank"],
        true,
    ),
    (
        "resonance",
        &[
            "source",
            "target",
            "score",
            "base",
            "feedback",
            "calls_per_s",
            "bytes_per_s",
            "latency_p50_ms",
            "latency_p95_ms",
            "error_rate",
        ],
        true,
    ),
    (
        "pipes",
        &[
            "source",
            "target",
            "state",
            "reason",
            "created_at",
            "last_used",
            "uses",
            "probability",
            "threshold",
            "batch_size",
            "linger_ms",
            "compression",
            "filters",
            "transforms",
        ],
        true,
    ),
    (
        "pipe_events",
        &[
            "time",
            "source",
            "target",
            "event",
            "reason",
            "sequence",
            "probability",
            "lead_ms",
            "idle_ms",
            "uses",
        ],
        false,
    ),
];

impl ServicesPlan {
    /// The output names, in [`OUTPUTS`] order.
    pub fn outputs(&self) -> Vec<String> {
        OUTPUTS.iter().map(|(s, _, _)| format!("{}_{s}", self.name)).collect()
    }
}
