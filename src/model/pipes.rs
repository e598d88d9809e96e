//! Predictive pipes, the pure part: the probability that a pair interacts within a horizon,
//! and a pipe's configuration from the predicted traffic. No timely.
//!
//! **Probability within `H`.** For a pair `a → b`, every active sequence whose current service
//! is `a` may call `b` next, with the Markov model's probability `pᵢ = P(b | contextᵢ)`. Its
//! next call comes after an exponential gap of mean `g` (the mean time between a sequence's
//! calls, learned from history), so it falls within `H` with probability `1 − e^(−H/g)`.
//! Sequences are independent, and pairs also see calls from sequences not yet at `a`, which
//! the resonance score `R` stands for, weighted by `β` (`resonance_weight`):
//!
//! ```text
//! qᵢ = pᵢ · (1 − e^(−H/g))
//! P_markov = 1 − Πᵢ (1 − qᵢ)
//! P = 1 − (1 − P_markov) · (1 − β · R)
//! ```
//!
//! `P` is at least `P_markov` and at least `β · R`, and stays in `[0, 1]`.
//!
//! **Configuration.** From the predicted call rate `λ` (calls per second) and payload size:
//!
//! | setting | rule |
//! |---|---|
//! | batch size | `n = λ · max_linger_ms / 1000` calls arrive within the longest linger; `n < 2`: 1 (no batching), else `min(⌊n⌋, max_batch)` |
//! | linger | 0 without batching, else the time to fill the batch, `1000 · batch / λ` ms (at most `max_linger_ms`) |
//! | compression | payload below `compress_from_bytes` (1 KiB): none; below `zstd_from_bytes` (64 KiB): `lz4`; else `zstd` |

use serde::{Deserialize, Serialize};

use super::resonance::{positive, InvalidSetting};

/// The pipe settings a spec can give (its `[pipes]` table).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipeConfig {
    /// The longest a pipe waits to fill a batch.
    pub max_linger_ms: f64,
    /// The largest batch.
    pub max_batch: u32,
    /// Payloads from this size are compressed (lz4), and from `zstd_from_bytes` with zstd.
    pub compress_from_bytes: f64,
    pub zstd_from_bytes: f64,
    /// `β`: how much the resonance score adds to the Markov probability, in `[0, 1]`.
    pub resonance_weight: f64,
}

impl Default for PipeConfig {
    fn default() -> Self {
        PipeConfig {
            max_linger_ms: 20.0,
            max_batch: 512,
            compress_from_bytes: 1024.0,
            zstd_from_bytes: 65_536.0,
            resonance_weight: 0.5,
        }
    }
}

impl PipeConfig {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        positive("max_linger_ms", self.max_linger_ms)?;
        positive("max_batch", f64::from(self.max_batch))?;
        positive("compress_from_bytes", self.compress_from_bytes)?;
        if !(self.zstd_from_bytes.is_finite() && self.zstd_from_bytes >= self.compress_from_bytes) {
            return Err(InvalidSetting {
                field: "zstd_from_bytes",
                rule: "at least compress_from_bytes",
                value: self.zstd_from_bytes,
            });
        }
        if !(0.0..=1.0).contains(&self.resonance_weight) {
            return Err(InvalidSetting {
                field: "resonance_weight",
                rule: "in [0, 1]",
                value: self.resonance_weight,
            });
        }
        Ok(())
    }
}

/// A pipe's compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    None,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// A pipe's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PipeSettings {
    pub batch_size: u32,
    pub linger_ms: f64,
    pub compression: Compression,
}

/// Batch size and linger for a predicted rate of `calls_per_s` (see the module docs).
pub fn batching(calls_per_s: f64, cfg: &PipeConfig) -> (u32, f64) {
    let rate = if calls_per_s.is_finite() {
        calls_per_s.max(0.0)
    } else {
        0.0
    };
    let arriving = rate * cfg.max_linger_ms / 1000.0;
    if arriving < 2.0 {
        return (1, 0.0);
    }
    let batch = arriving.floor().min(f64::from(cfg.max_batch)) as u32;
    (batch, (1000.0 * f64::from(batch) / rate).min(cfg.max_linger_ms))
}

/// Compression for a predicted payload of `bytes` (see the module docs).
pub fn compression(bytes: f64, cfg: &PipeConfig) -> Compression {
    if bytes.is_nan() || bytes < cfg.compress_from_bytes {
        Compression::None
    } else if bytes < cfg.zstd_from_bytes {
        Compression::Lz4
    } else {
        Compression::Zstd
    }
}

/// The configuration of a pipe predicted to carry `calls_per_s` calls of `payload_bytes`.
pub fn configure(calls_per_s: f64, payload_bytes: f64, cfg: &PipeConfig) -> PipeSettings {
    let (batch_size, linger_ms) = batching(calls_per_s, cfg);
    PipeSettings {
        batch_size,
        linger_ms,
        compression: compression(payload_bytes, cfg),
    }
}

/// `p · (1 − e^(−H/g))`: the probability that a sequence whose next call goes to the target
/// with probability `p` makes that call within `horizon_ms`, its calls `mean_gap_ms` apart on
/// average (certain within any horizon when the gap is 0).
pub fn within_horizon(p: f64, horizon_ms: f64, mean_gap_ms: f64) -> f64 {
    let reach = if mean_gap_ms > 0.0 {
        1.0 - (-horizon_ms.max(0.0) / mean_gap_ms).exp()
    } else {
        1.0
    };
    (p * reach).clamp(0.0, 1.0)
}

/// `P = 1 − (1 − P_markov)(1 − β R)`, `P_markov = 1 − Π (1 − qᵢ)` over the active sequences'
/// within-horizon probabilities `q` (see [`within_horizon`]), `R` the pair's resonance.
pub fn interaction_probability(q: &[f64], resonance: f64, cfg: &PipeConfig) -> f64 {
    let none: f64 = q.iter().map(|x| 1.0 - x.clamp(0.0, 1.0)).product();
    let background = cfg.resonance_weight * resonance.clamp(0.0, 1.0);
    (1.0 - none * (1.0 - background)).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batching_follows_the_rate() {
        let cfg = PipeConfig::default();
        cfg.validate().unwrap();
        // 50 calls/s: one call per 20 ms linger, no batching.
        assert_eq!(batching(50.0, &cfg), (1, 0.0));
        // 1000 calls/s: 20 arrive within 20 ms: a batch of 20, filled in 20 ms.
        assert_eq!(batching(1000.0, &cfg), (20, 20.0));
        // 250 calls/s: 5 within 20 ms, filled in 20 ms.
        assert_eq!(batching(250.0, &cfg), (5, 20.0));
        // 330 calls/s: 6.6 → 6 calls, filled in 18.18 ms.
        let (b, l) = batching(330.0, &cfg);
        assert_eq!(b, 6);
        assert!((l - 6000.0 / 330.0).abs() < 1e-12);
        // A huge rate is capped at the largest batch, which fills in under the linger.
        let (b, l) = batching(1e6, &cfg);
        assert_eq!(b, 512);
        assert!((l - 0.512).abs() < 1e-12);
        assert_eq!(batching(f64::NAN, &cfg), (1, 0.0));
        assert_eq!(batching(-3.0, &cfg), (1, 0.0));
    }

    #[test]
    fn compression_follows_the_payload() {
        let cfg = PipeConfig::default();
        assert_eq!(compression(200.0, &cfg), Compression::None);
        assert_eq!(compression(1024.0, &cfg), Compression::Lz4);
        assert_eq!(compression(65_535.0, &cfg), Compression::Lz4);
        assert_eq!(compression(65_536.0, &cfg), Compression::Zstd);
        assert_eq!(compression(f64::NAN, &cfg), Compression::None);
        let s = configure(1000.0, 100_000.0, &cfg);
        assert_eq!((s.batch_size, s.compression.name()), (20, "zstd"));
    }

    #[test]
    fn probability_within_the_horizon() {
        let cfg = PipeConfig::default();
        // One sequence at the source, P(b | context) = 0.6, calls 100 ms apart, H = 100 ms:
        // q = 0.6 · (1 − e⁻¹) = 0.3793.
        let q = within_horizon(0.6, 100.0, 100.0);
        assert!((q - 0.6 * (1.0 - (-1.0f64).exp())).abs() < 1e-12);
        assert_eq!(within_horizon(0.6, 100.0, 0.0), 0.6);
        assert_eq!(within_horizon(0.6, 0.0, 100.0), 0.0);
        // Two such sequences: 1 − (1 − q)²; with resonance 0.4 and β = ½: 1 − (1 − q)² · 0.8.
        let p = interaction_probability(&[q, q], 0.4, &cfg);
        assert!((p - (1.0 - (1.0 - q).powi(2) * 0.8)).abs() < 1e-12);
        assert!(p > interaction_probability(&[q], 0.4, &cfg));
        assert!(p > interaction_probability(&[q, q], 0.0, &cfg));
        // No active sequence: the resonance alone, β · R.
        assert!((interaction_probability(&[], 0.4, &cfg) - 0.2).abs() < 1e-12);
        assert_eq!(interaction_probability(&[1.0], 0.0, &cfg), 1.0);
        assert_eq!(interaction_probability(&[], 0.0, &cfg), 0.0);
    }

    #[test]
    fn configuration_is_checked() {
        let bad = PipeConfig {
            zstd_from_bytes: 10.0,
            ..PipeConfig::default()
        };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "zstd_from_bytes must be at least compress_from_bytes, not 10"
        );
        let bad = PipeConfig {
            max_batch: 0,
            ..PipeConfig::default()
        };
        assert!(bad.validate().is_err());
        let cfg: PipeConfig = toml::from_str("max_linger_ms = 5.0").unwrap();
        assert_eq!(cfg.max_linger_ms, 5.0);
        assert_eq!(cfg.max_batch, 512);
    }
}
