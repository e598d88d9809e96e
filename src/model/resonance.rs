//! Resonance: how well two services work together, a score in `[0, 1]` per (source, target)
//! pair from what a sliding event-time window saw of the pair. Pure maths, no timely.
//!
//! ```text
//! components (window W)           normalised to [0, 1]                 score
//! f  = calls / W                  s_f   = f / (f + f½)                 base = Σ wᵢ sᵢ / Σ wᵢ      (over the present components)
//! r  = bytes / W                  s_r   = r / (r + r½)
//! l₅₀, l₉₅ (completed calls' ms)  s_l50 = l50½ / (l₅₀ + l50½)          score = clamp(base + F · 2^(−Δt / half_life), 0, 1)
//! e  = errors / completed         s_l95 = l95½ / (l₉₅ + l95½)
//!                                 s_e   = e½ / (e + e½)
//! ```
//!
//! - Every normalisation is a saturating ratio against a *half point* from the configuration:
//!   a component at its half point scores ½. More calls and more bytes score higher; more
//!   latency and more errors score lower. Each depends on the pair's own window only, so a
//!   score changes only when its pair's window does (no maximum across pairs to maintain).
//! - A pair without completed calls in the window has no latency or error component: the
//!   weighted mean is over the components present (frequency and rate always are).
//! - **Feedback.** `F` is an offset kept per pair, which decays with a half-life. When a pipe
//!   of the pair has been used, its performance `p` (see [`performance`]) moves the score
//!   towards `p`: `adjust(s, p) = s + gain · (p − s)`. The offset becomes
//!   `adjust(score, p) − base`, so good performance raises the score, bad performance lowers
//!   it, and without new feedback the score returns to the window's base score.
//!
//! Worked example (the defaults): `f = 2/s`, `r = 50 kB/s`, `l₅₀ = 20 ms`, `l₉₅ = 80 ms`,
//! `e = 0.01` give `s = (⅔, ⅓, 50/70, 200/280, 0.05/0.06)` and
//! `base = 0.3·⅔ + 0.2·⅓ + 0.15·0.7143 + 0.15·0.7143 + 0.2·0.8333 = 0.6476`. A pipe that then
//! performs at `p = 0.9` gives `adjust(0.6476, 0.9) = 0.7233` (offset `+0.0757`); ten minutes
//! later, with the same window, the score is `0.6476 + 0.0757 / 2 = 0.6855`.

use serde::{Deserialize, Serialize};

/// A configuration value outside its range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field} must be {rule}, not {value}")]
pub struct InvalidSetting {
    pub field: &'static str,
    pub rule: &'static str,
    pub value: f64,
}

/// Checks that `value` is finite and positive.
pub(crate) fn positive(field: &'static str, value: f64) -> Result<(), InvalidSetting> {
    match value.is_finite() && value > 0.0 {
        true => Ok(()),
        false => Err(InvalidSetting {
            field,
            rule: "a positive number",
            value,
        }),
    }
}

/// The weight of each component in the score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Weights {
    pub frequency: f64,
    pub data_rate: f64,
    pub latency_p50: f64,
    pub latency_p95: f64,
    pub errors: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            frequency: 0.3,
            data_rate: 0.2,
            latency_p50: 0.15,
            latency_p95: 0.15,
            errors: 0.2,
        }
    }
}

/// How resonance is computed: weights, half points and feedback (a spec's `[resonance]` table).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResonanceConfig {
    pub weights: Weights,
    /// Calls per second that score ½.
    pub frequency_half_per_s: f64,
    /// Bytes per second that score ½.
    pub data_rate_half_bytes_per_s: f64,
    /// Median and 95th-percentile latencies that score ½.
    pub latency_p50_half_ms: f64,
    pub latency_p95_half_ms: f64,
    /// The error rate that scores ½.
    pub error_rate_half: f64,
    /// How far one pipe's performance moves the score towards it, in `[0, 1]`.
    pub feedback_gain: f64,
    /// The feedback offset halves in this time.
    pub feedback_half_life_ms: f64,
}

impl Default for ResonanceConfig {
    fn default() -> Self {
        ResonanceConfig {
            weights: Weights::default(),
            frequency_half_per_s: 1.0,
            data_rate_half_bytes_per_s: 100_000.0,
            latency_p50_half_ms: 50.0,
            latency_p95_half_ms: 200.0,
            error_rate_half: 0.05,
            feedback_gain: 0.3,
            feedback_half_life_ms: 600_000.0,
        }
    }
}

impl ResonanceConfig {
    /// Checks every value: half points and the half-life positive, weights at least 0 with a
    /// positive sum, the gain in `[0, 1]`.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        positive("frequency_half_per_s", self.frequency_half_per_s)?;
        positive("data_rate_half_bytes_per_s", self.data_rate_half_bytes_per_s)?;
        positive("latency_p50_half_ms", self.latency_p50_half_ms)?;
        positive("latency_p95_half_ms", self.latency_p95_half_ms)?;
        positive("error_rate_half", self.error_rate_half)?;
        positive("feedback_half_life_ms", self.feedback_half_life_ms)?;
        let w = self.weights;
        for (field, value) in [
            ("weights.frequency", w.frequency),
            ("weights.data_rate", w.data_rate),
            ("weights.latency_p50", w.latency_p50),
            ("weights.latency_p95", w.latency_p95),
            ("weights.errors", w.errors),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(InvalidSetting {
                    field,
                    rule: "a number of at least 0",
                    value,
                });
            }
        }
        positive(
            "the sum of the weights",
            w.frequency + w.data_rate + w.latency_p50 + w.latency_p95 + w.errors,
        )?;
        if !(0.0..=1.0).contains(&self.feedback_gain) {
            return Err(InvalidSetting {
                field: "feedback_gain",
                rule: "in [0, 1]",
                value: self.feedback_gain,
            });
        }
        Ok(())
    }
}

/// What a window saw of one pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Components {
    pub calls_per_s: f64,
    pub bytes_per_s: f64,
    /// `None` without a completed call.
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub error_rate: Option<f64>,
}

/// The nearest-rank `q`-quantile of values given with their counts, sorted by value: the
/// smallest value whose cumulative count reaches `⌈q · n⌉` (the smallest value for `q = 0`).
/// `None` without values.
pub fn quantile(sorted: &[(f64, u64)], q: f64) -> Option<f64> {
    let n: u64 = sorted.iter().map(|v| v.1).sum();
    if n == 0 {
        return None;
    }
    let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
    let mut seen = 0;
    sorted
        .iter()
        .find(|(_, c)| {
            seen += c;
            seen >= rank
        })
        .map(|v| v.0)
}

impl Components {
    /// The components of a window of `window_ms`: `calls` calls carrying `bytes` bytes, the
    /// latencies of its completed calls (sorted, with counts) and how many of those failed.
    pub fn from_window(window_ms: f64, calls: u64, bytes: u64, latencies: &[(f64, u64)], errors: u64) -> Components {
        let seconds = window_ms / 1000.0;
        let completed: u64 = latencies.iter().map(|v| v.1).sum();
        Components {
            calls_per_s: calls as f64 / seconds,
            bytes_per_s: bytes as f64 / seconds,
            latency_p50_ms: quantile(latencies, 0.5),
            latency_p95_ms: quantile(latencies, 0.95),
            error_rate: (completed > 0).then(|| errors as f64 / completed as f64),
        }
    }
}

/// `x / (x + half)`: more is better.
fn saturate(x: f64, half: f64) -> f64 {
    let x = x.max(0.0);
    x / (x + half)
}

/// `half / (x + half)`: less is better.
fn inverse(x: f64, half: f64) -> f64 {
    half / (x.max(0.0) + half)
}

/// The weighted mean of the present `(weight, value)` pairs (0 when none weighs anything).
fn weighted(parts: &[(f64, Option<f64>)]) -> f64 {
    let (mut sum, mut weight) = (0.0, 0.0);
    for (w, v) in parts {
        if let Some(v) = v {
            sum += w * v;
            weight += w;
        }
    }
    if weight > 0.0 {
        sum / weight
    } else {
        0.0
    }
}

/// Each component normalised to `[0, 1]`, in the order frequency, data rate, p50, p95, errors.
pub fn normalise(c: &Components, cfg: &ResonanceConfig) -> [Option<f64>; 5] {
    [
        Some(saturate(c.calls_per_s, cfg.frequency_half_per_s)),
        Some(saturate(c.bytes_per_s, cfg.data_rate_half_bytes_per_s)),
        c.latency_p50_ms.map(|l| inverse(l, cfg.latency_p50_half_ms)),
        c.latency_p95_ms.map(|l| inverse(l, cfg.latency_p95_half_ms)),
        c.error_rate.map(|e| inverse(e, cfg.error_rate_half)),
    ]
}

/// The base score of a window: the weighted mean of the normalised components present.
pub fn base_score(c: &Components, cfg: &ResonanceConfig) -> f64 {
    let s = normalise(c, cfg);
    let w = cfg.weights;
    weighted(&[
        (w.frequency, s[0]),
        (w.data_rate, s[1]),
        (w.latency_p50, s[2]),
        (w.latency_p95, s[3]),
        (w.errors, s[4]),
    ])
}

/// How well a used pipe performed, in `[0, 1]`: the weighted mean of the data rate, latency
/// and error components of the calls that used it (frequency left out: the score counts use
/// already).
pub fn performance(c: &Components, cfg: &ResonanceConfig) -> f64 {
    let s = normalise(c, cfg);
    let w = cfg.weights;
    weighted(&[
        (w.data_rate, s[1]),
        (w.latency_p50, s[2]),
        (w.latency_p95, s[3]),
        (w.errors, s[4]),
    ])
}

/// The score moved towards an observed performance: `score + gain · (performance − score)`,
/// in `[0, 1]`.
pub fn adjust(score: f64, performance: f64, cfg: &ResonanceConfig) -> f64 {
    (score + cfg.feedback_gain * (performance - score)).clamp(0.0, 1.0)
}

/// `offset` after `elapsed_ms` of decay with `half_life_ms` (no decay for a negative elapsed
/// time).
pub fn decay(offset: f64, elapsed_ms: f64, half_life_ms: f64) -> f64 {
    offset * 0.5f64.powf(elapsed_ms.max(0.0) / half_life_ms)
}

/// A pair's feedback: its offset from the base score, as of a time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    pub offset: f64,
    pub at_ms: i64,
}

impl Feedback {
    /// The offset at `t_ms`.
    pub fn offset_at(&self, t_ms: i64, cfg: &ResonanceConfig) -> f64 {
        decay(self.offset, (t_ms - self.at_ms) as f64, cfg.feedback_half_life_ms)
    }

    /// The pair's score at `t_ms` when its window's base score is `base`.
    pub fn score(&self, base: f64, t_ms: i64, cfg: &ResonanceConfig) -> f64 {
        (base + self.offset_at(t_ms, cfg)).clamp(0.0, 1.0)
    }

    /// Takes in a used pipe's `performance` at `t_ms`, the window's base score being `base`.
    pub fn observe(&mut self, base: f64, performance: f64, t_ms: i64, cfg: &ResonanceConfig) {
        let adjusted = adjust(self.score(base, t_ms, cfg), performance, cfg);
        *self = Feedback {
            offset: adjusted - base,
            at_ms: t_ms.max(self.at_ms),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// The README's worked example.
    #[test]
    fn worked_example() {
        let cfg = ResonanceConfig::default();
        cfg.validate().unwrap();
        // A 60 s window: 120 calls, 3 MB, 100 completed calls (1 failed) with p50 20 ms and
        // p95 80 ms.
        // Cumulative counts 45, 55, 90, 95, 100: the 50th value is 20, the 95th 80.
        let latencies = [(10.0, 45), (20.0, 10), (60.0, 35), (80.0, 5), (300.0, 5)];
        let c = Components::from_window(60_000.0, 120, 3_000_000, &latencies, 1);
        assert_eq!(c.calls_per_s, 2.0);
        assert_eq!(c.bytes_per_s, 50_000.0);
        assert_eq!((c.latency_p50_ms, c.latency_p95_ms), (Some(20.0), Some(80.0)));
        assert_eq!(c.error_rate, Some(0.01));
        let s = normalise(&c, &cfg);
        let want = [2.0 / 3.0, 1.0 / 3.0, 50.0 / 70.0, 200.0 / 280.0, 0.05 / 0.06];
        for (got, want) in s.iter().zip(want) {
            assert!(close(got.unwrap(), want));
        }
        let base = base_score(&c, &cfg);
        assert!(close(base, 0.2 + 0.2 / 3.0 + 0.3 * 50.0 / 70.0 + 0.2 * 0.05 / 0.06));
        assert!((base - 0.647_619).abs() < 1e-6, "{base}");
        let mut f = Feedback::default();
        f.observe(base, 0.9, 1_000, &cfg);
        assert!((f.score(base, 1_000, &cfg) - 0.723_333).abs() < 1e-6);
        assert!((f.offset - 0.075_714).abs() < 1e-6);
        assert!((f.score(base, 601_000, &cfg) - 0.685_476).abs() < 1e-6);
        // Bad performance lowers the score; the offset fades.
        f.observe(base, 0.1, 601_000, &cfg);
        assert!(f.score(base, 601_000, &cfg) < base);
        assert!(f.offset_at(601_000 + 60 * 600_000, &cfg).abs() < 1e-15);
    }

    #[test]
    fn scores_stay_in_range_and_move_the_right_way() {
        let cfg = ResonanceConfig::default();
        let busy = Components {
            calls_per_s: 10.0,
            bytes_per_s: 1e6,
            latency_p50_ms: Some(5.0),
            latency_p95_ms: Some(20.0),
            error_rate: Some(0.0),
        };
        let slow = Components {
            latency_p50_ms: Some(500.0),
            latency_p95_ms: Some(2000.0),
            error_rate: Some(0.5),
            ..busy
        };
        assert!(base_score(&busy, &cfg) > 0.85 && base_score(&slow, &cfg) < base_score(&busy, &cfg));
        assert!(performance(&busy, &cfg) > performance(&slow, &cfg));
        // No completed call: frequency and rate only.
        let quiet = Components {
            calls_per_s: 1.0,
            bytes_per_s: 100_000.0,
            ..Components::default()
        };
        assert!(close(base_score(&quiet, &cfg), 0.5));
        assert_eq!(base_score(&Components::default(), &cfg), 0.0);
        for (s, p) in [(0.0, 1.0), (1.0, 0.0), (0.5, 0.5), (0.99, 1.0)] {
            let a = adjust(s, p, &cfg);
            assert!((0.0..=1.0).contains(&a));
            assert!((a - s) * (p - s) >= 0.0, "moves towards the performance");
        }
        assert_eq!(Feedback::default().score(1.0, 0, &cfg), 1.0);
        let mut f = Feedback { offset: 0.5, at_ms: 0 };
        assert_eq!(f.score(0.8, 0, &cfg), 1.0);
        f.observe(0.8, 1.0, -5, &cfg);
        assert_eq!(f.at_ms, 0, "an earlier observation does not move the clock back");
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let v = [(1.0, 2), (5.0, 1), (9.0, 1)];
        assert_eq!(quantile(&v, 0.5), Some(1.0));
        assert_eq!(quantile(&v, 0.51), Some(5.0));
        assert_eq!(quantile(&v, 0.95), Some(9.0));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[(3.0, 0)], 0.5), None);
    }

    #[test]
    fn configuration_is_checked_and_reads_from_toml() {
        let cfg: ResonanceConfig = toml::from_str("frequency_half_per_s = 5.0\n[weights]\nerrors = 1.0").unwrap();
        assert_eq!(cfg.frequency_half_per_s, 5.0);
        assert_eq!(cfg.weights.errors, 1.0);
        assert_eq!(cfg.weights.frequency, 0.3);
        assert!(toml::from_str::<ResonanceConfig>("frequency = 1.0").is_err());
        let bad = ResonanceConfig {
            feedback_gain: 1.5,
            ..cfg
        };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "feedback_gain must be in [0, 1], not 1.5"
        );
        let bad = ResonanceConfig {
            weights: Weights {
                frequency: 0.0,
                data_rate: 0.0,
                latency_p50: 0.0,
                latency_p95: 0.0,
                errors: 0.0,
            },
            ..cfg
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("the sum of the weights"));
        let bad = ResonanceConfig {
            latency_p50_half_ms: f64::NAN,
            ..cfg
        };
        assert!(bad.validate().is_err());
    }
}
