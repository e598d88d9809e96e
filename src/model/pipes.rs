//! Predictive pipes, the pure part: the probability that a pair interacts within a horizon,
//! and a pipe's configuration from the predicted traffic. No timely.
//!
//! **Probability within `H`.** For a pair `a → b`, every active sequence whose current service
//! is `a` may call `b` next, with the Markov model's probability `pᵢ = P(b | contextᵢ)`; it
//! ends instead with probability `eᵢ = P($ | contextᵢ)`. The gaps between a sequence's calls
//! follow the survival function `S(s) = P(gap > s)` of the gaps seen so far ([`GapSurvival`]).
//! A sequence silent for `sᵢ` since its last call is less likely to go on at all, and its next
//! call falls within `H` with the probability of a gap in `(sᵢ, sᵢ + H]`:
//!
//! ```text
//! qᵢ = pᵢ · (S(sᵢ) − S(sᵢ + H)) / (eᵢ + (1 − eᵢ) · S(sᵢ))
//! P_markov = 1 − Πᵢ (1 − qᵢ)
//! P = 1 − (1 − P_markov) · (1 − β · R)
//! ```
//!
//! `qᵢ` is Bayes' rule: of a sequence silent for `s`, the share that goes on is
//! `(1 − e) S(s) / (e + (1 − e) S(s))`, and of those, `(S(s) − S(s + H)) / S(s)` call within
//! `H`, to `b` with probability `p / (1 − e)`. At `s = 0` it is `p · (1 − S(H))`. Without the
//! silence, a sequence that ended at `a` would count at full weight until `sequence_timeout`.
//! Sequences are independent, and pairs also see calls from sequences not yet at `a`, which
//! the resonance score `R` stands for, weighted by `β` (`resonance_weight`). `P` is at least
//! `P_markov` and at least `β · R`, and stays in `[0, 1]`.
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

/// The survival function `S(s) = P(gap > s)` of the gaps between a sequence's calls, from the
/// gaps seen: a histogram with four buckets per doubling (1 ms to about 4 hours), read with
/// linear interpolation within a bucket. When it holds 2²⁰ gaps, every count is halved, so
/// old gaps fade. Before any gap is seen, gaps are taken as exponential with mean `prior_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct GapSurvival {
    counts: Vec<u64>,
    total: u64,
    prior_ms: f64,
}

const GAP_BUCKETS: usize = 96;
const GAP_HALVE_AT: u64 = 1 << 20;

/// Bucket 0 holds gaps below 1 ms; bucket `k ≥ 1` holds `[2^((k−1)/4), 2^(k/4))` ms, the last
/// one everything above.
fn gap_bucket(ms: f64) -> usize {
    if ms < 1.0 {
        return 0;
    }
    ((4.0 * ms.log2()).floor() as usize + 1).min(GAP_BUCKETS - 1)
}

fn gap_bounds(k: usize) -> (f64, f64) {
    match k {
        0 => (0.0, 1.0),
        k => (((k as f64 - 1.0) / 4.0).exp2(), (k as f64 / 4.0).exp2()),
    }
}

impl GapSurvival {
    pub fn new(prior_ms: f64) -> GapSurvival {
        GapSurvival {
            counts: vec![0; GAP_BUCKETS],
            total: 0,
            prior_ms: prior_ms.max(1.0),
        }
    }

    /// Counts one gap (negative and non-finite gaps are ignored).
    pub fn add(&mut self, gap_ms: f64) {
        if !(gap_ms.is_finite() && gap_ms >= 0.0) {
            return;
        }
        self.counts[gap_bucket(gap_ms)] += 1;
        self.total += 1;
        if self.total >= GAP_HALVE_AT {
            for c in &mut self.counts {
                *c /= 2;
            }
            self.total = self.counts.iter().sum();
        }
    }

    /// `P(gap > s)`.
    pub fn survival(&self, s_ms: f64) -> f64 {
        if s_ms <= 0.0 {
            return 1.0;
        }
        if self.total == 0 {
            return (-s_ms / self.prior_ms).exp();
        }
        let k = gap_bucket(s_ms);
        let above: u64 = self.counts[k + 1..].iter().sum();
        let (lo, hi) = gap_bounds(k);
        let inside = if k == GAP_BUCKETS - 1 {
            // The last bucket is open: its gaps count as above any `s` in it.
            1.0
        } else {
            ((hi - s_ms) / (hi - lo)).clamp(0.0, 1.0)
        };
        (above as f64 + inside * self.counts[k] as f64) / self.total as f64
    }
}

/// `qᵢ = p · (S(s) − S(s + H)) / (e + (1 − e) S(s))`: the probability that a sequence silent for
/// `silent_ms`, which calls the target next with probability `p` and ends with probability
/// `end`, calls it within `horizon_ms` (see the module docs). 0 when it has surely ended.
pub fn within_horizon(p: f64, end: f64, silent_ms: f64, horizon_ms: f64, gaps: &GapSurvival) -> f64 {
    let s = silent_ms.max(0.0);
    let alive = gaps.survival(s);
    let soon = alive - gaps.survival(s + horizon_ms.max(0.0));
    let end = end.clamp(0.0, 1.0);
    let denominator = end + (1.0 - end) * alive;
    if denominator <= 0.0 || soon <= 0.0 {
        return 0.0;
    }
    (p * soon / denominator).clamp(0.0, 1.0)
}

/// `P = 1 − (1 − P_markov)(1 − β R)`, `P_markov = 1 − Π (1 − qᵢ)` over the active sequences'
/// within-horizon probabilities `q` (see [`within_horizon`]), `R` the pair's resonance.
pub fn interaction_probability(q: &[f64], resonance: f64, cfg: &PipeConfig) -> f64 {
    let none: f64 = q.iter().map(|x| 1.0 - x.clamp(0.0, 1.0)).product();
    let background = cfg.resonance_weight * resonance.clamp(0.0, 1.0);
    (1.0 - none * (1.0 - background)).clamp(0.0, 1.0)
}

/// The adaptive threshold: the lowest probability at which the pipes that would have been
/// created reach `target` precision, by the outcomes of the latest candidates.
///
/// `outcomes` are `(probability, used)`: a candidate is a pair without a pipe whose
/// probability reached `floor`, and it was used when the pair was called before a pipe created
/// then would have been torn down. Every pair's candidates count, whether or not a pipe was
/// created, so the threshold learns from the pipes it did not create as well as from those it
/// did (a threshold learnt from its own pipes alone could never come down once it rose).
///
/// With the outcomes sorted by probability, highest first, a threshold at the `k`th
/// probability creates the top `k` of them. Their precision counts only when its Wilson
/// lower bound at `z` = [`CALIBRATION_Z`] reaches `target`: a handful of lucky hits does not
/// set the threshold, and picking the best of many `k` does not overstate the precision of
/// the pipes it will create. The threshold is the `k`th probability for the largest such `k`
/// (the threshold that creates the most pipes at the target precision), never below `floor`.
/// When no `k` qualifies, it is just above the highest probability: no pipe until the
/// candidates show one would be used often enough. Ties in probability are taken together.
pub fn calibrated_threshold(outcomes: &[(f64, bool)], target: f64, floor: f64) -> f64 {
    let mut sorted: Vec<(f64, bool)> = outcomes.iter().copied().filter(|(p, _)| p.is_finite()).collect();
    sorted.sort_by(|x, y| y.0.total_cmp(&x.0));
    // Candidates of one probability are taken together: one group each, highest first.
    let mut groups: Vec<(f64, usize, usize)> = Vec::new();
    for (p, u) in sorted {
        match groups.last_mut() {
            Some((q, n, used)) if *q == p => {
                *n += 1;
                *used += usize::from(u);
            }
            _ => groups.push((p, 1, usize::from(u))),
        }
    }
    threshold_of_groups(groups, target, floor)
}

/// [`calibrated_threshold`] over the outcomes grouped by probability, highest first: each
/// group's probability, its number of candidates and how many of them were used.
fn threshold_of_groups(groups: impl IntoIterator<Item = (f64, usize, usize)>, target: f64, floor: f64) -> f64 {
    let (mut best, mut top) = (None, None);
    let (mut n, mut used) = (0usize, 0usize);
    for (p, count, hits) in groups {
        top.get_or_insert(p);
        n += count;
        used += hits;
        if wilson_lower(used, n, CALIBRATION_Z) >= target {
            best = Some(p);
        }
    }
    match (best, top) {
        (Some(p), _) => p.max(floor),
        (None, Some(top)) => next_above(top).max(floor),
        (None, None) => floor,
    }
}

/// A key that orders finite probabilities as numbers (`-0.0` as `0.0`, as `==` groups them).
fn order_key(p: f64) -> u64 {
    let bits = (p + 0.0).to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
}

/// The probability of an [`order_key`].
fn of_order_key(key: u64) -> f64 {
    f64::from_bits(if key >> 63 == 1 { key & !(1 << 63) } else { !key })
}

/// The adaptive threshold's window of outcomes (`(probability, used)`, oldest first): at least
/// `min_window` of the latest, and older ones while fewer than [`CALIBRATION_TOP`] of them are
/// at or above the threshold, up to [`CALIBRATION_MAX_FACTOR`] × `min_window` in all.
///
/// The precision that sets the threshold is estimated from the candidates at or above it. When
/// those are 2% of all candidates, a window of 200 holds about four: the Wilson bound then
/// qualifies a low threshold only after a lucky run, the threshold drops exactly then, and the
/// pipes it creates fall short of the target (the winner's curse). A window that keeps enough
/// candidates above the threshold estimates it as well wherever the threshold sits.
///
/// Besides the window in arrival order, it keeps the outcomes grouped by probability (the
/// number of candidates and of used ones per probability), so that a calibration walks the
/// groups in order instead of sorting the window (up to [`CALIBRATION_MAX_FACTOR`] ×
/// `min_window` outcomes) every time.
#[derive(Debug, Clone, Default)]
pub struct Outcomes {
    window: std::collections::VecDeque<(f64, bool)>,
    /// The finite outcomes of `window` by [`order_key`] of their probability: `(candidates, used)`.
    groups: std::collections::BTreeMap<u64, (usize, usize)>,
    /// How many of `window` are at or above `threshold`.
    above: usize,
    threshold: f64,
}

impl Outcomes {
    /// An empty window counting outcomes against `threshold`.
    pub fn new(threshold: f64) -> Outcomes {
        Outcomes {
            threshold,
            ..Outcomes::default()
        }
    }

    pub fn len(&self) -> usize {
        self.window.len()
    }

    pub fn is_empty(&self) -> bool {
        self.window.is_empty()
    }

    /// The threshold pipes are created at: the spec's, then the last one calibrated.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// How many outcomes are at or above the threshold last set.
    pub fn above(&self) -> usize {
        self.above
    }

    /// Adds the newest outcome and forgets the oldest ones the window no longer needs.
    pub fn push(&mut self, outcome: (f64, bool), min_window: usize) {
        self.window.push_back(outcome);
        self.group(outcome, 1);
        self.above += usize::from(outcome.0 >= self.threshold);
        let max = min_window.saturating_mul(CALIBRATION_MAX_FACTOR);
        while self.window.len() > min_window.max(1) {
            let oldest_above = usize::from(self.window[0].0 >= self.threshold);
            if self.window.len() <= max && self.above - oldest_above < CALIBRATION_TOP {
                break;
            }
            self.above -= oldest_above;
            let oldest = self.window.pop_front().expect("the window is not empty");
            self.group(oldest, -1);
        }
    }

    /// Counts `outcome` into its probability's group (`sign` 1) or out of it (−1).
    fn group(&mut self, (p, used): (f64, bool), sign: isize) {
        if !p.is_finite() {
            return;
        }
        let key = order_key(p);
        let entry = self.groups.entry(key).or_insert((0, 0));
        entry.0 = entry
            .0
            .checked_add_signed(sign)
            .expect("an outcome leaves its group once");
        entry.1 = entry.1.checked_add_signed(sign * isize::from(used)).expect("as above");
        if entry.0 == 0 {
            self.groups.remove(&key);
        }
    }

    /// The threshold the window calls for ([`calibrated_threshold`] of its outcomes).
    pub fn calibrated(&self, target: f64, floor: f64) -> f64 {
        let groups = self
            .groups
            .iter()
            .rev()
            .map(|(&key, &(n, used))| (of_order_key(key), n, used));
        threshold_of_groups(groups, target, floor)
    }

    /// Sets the threshold the window counts outcomes against.
    pub fn set_threshold(&mut self, threshold: f64) {
        self.threshold = threshold;
        self.above = self.window.iter().filter(|(p, _)| *p >= threshold).count();
    }

    /// The outcomes, oldest first.
    pub fn as_slice(&mut self) -> &[(f64, bool)] {
        self.window.make_contiguous()
    }
}

/// The outcomes at or above the threshold that the adaptive threshold's window keeps: with
/// 300, the standard error of a precision near 0.9 is about 0.017, a sixth of the distance
/// from a 0.9 target to 1.
pub const CALIBRATION_TOP: usize = 300;

/// The adaptive threshold's window holds at most this many times `precision_window` outcomes.
pub const CALIBRATION_MAX_FACTOR: usize = 50;

/// The one-sided confidence of the adaptive threshold's precision estimate, as a normal
/// quantile: `z = 1` is about 84%.
pub const CALIBRATION_Z: f64 = 1.0;

/// The Wilson score interval's lower bound of a proportion of `hits` in `n` trials at `z`.
pub fn wilson_lower(hits: usize, n: usize, z: f64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let n = n as f64;
    let p = hits as f64 / n;
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let spread = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - spread) / (1.0 + z2 / n)).max(0.0)
}

/// The smallest `f64` above `x` (for `x` in `[0, 1]`).
fn next_above(x: f64) -> f64 {
    f64::from_bits(x.max(0.0).to_bits() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outcome_window_keeps_enough_outcomes_above_the_threshold() {
        // 5% of the candidates are at 0.9, the rest at 0.3; the threshold is 0.8.
        let stream = |i: usize| (if i.is_multiple_of(20) { 0.9 } else { 0.3 }, i.is_multiple_of(3));
        let mut w = Outcomes::new(0.8);
        for i in 0..40_000 {
            w.push(stream(i), 200);
        }
        // 300 above the threshold need 6,000 outcomes (under the cap of 50 × 200).
        assert_eq!(w.above(), CALIBRATION_TOP);
        assert_eq!(w.len(), 6_000);
        // With a low threshold, every outcome is above it: the window is the latest 300.
        w.set_threshold(0.2);
        w.push(stream(40_000), 200);
        assert_eq!(w.len(), CALIBRATION_TOP);
        // Never fewer than `min_window`, and never more than the cap.
        let mut w = Outcomes::new(0.95);
        for i in 0..100_000 {
            w.push(stream(i), 200);
        }
        assert_eq!((w.len(), w.above()), (200 * CALIBRATION_MAX_FACTOR, 0));
        let mut w = Outcomes::new(0.0);
        for i in 0..1_000 {
            w.push(stream(i), 500);
        }
        assert_eq!(w.len(), 500);
        // The window is the latest outcomes, oldest first.
        assert_eq!(w.as_slice().last(), Some(&stream(999)));
    }

    proptest::proptest! {
        /// The window's grouped calibration equals a from-scratch sort of its outcomes, as
        /// outcomes arrive and leave and the threshold moves.
        #[test]
        fn grouped_calibration_equals_sorting_the_window(
            outcomes in proptest::collection::vec((0u8..12, proptest::bool::ANY), 1..400),
            min_window in 1usize..40,
            target in 0.3f64..0.95,
        ) {
            let mut w = Outcomes::new(0.5);
            for (i, (p, used)) in outcomes.into_iter().enumerate() {
                // Few distinct probabilities, so that ties are common; 0 also as -0.0.
                let p = if p == 0 && i % 2 == 0 { -0.0 } else { f64::from(p) / 11.0 };
                w.push((p, used), min_window);
                let expected = calibrated_threshold(w.as_slice(), target, 0.05);
                proptest::prop_assert_eq!(w.calibrated(target, 0.05), expected);
                if i % 7 == 0 {
                    w.set_threshold(expected);
                }
            }
        }
    }

    #[test]
    fn the_calibrated_threshold_creates_the_most_pipes_at_the_target() {
        // Highest first: 0.95 ✓, 0.9 ✓, 0.85 ✓, 0.8 ✓, 0.7 ✗, 0.6 ✓, 0.5 ✗, 0.4 ✗.
        let o = [
            (0.5, false),
            (0.95, true),
            (0.7, false),
            (0.9, true),
            (0.4, false),
            (0.85, true),
            (0.6, true),
            (0.8, true),
        ];
        // Wilson lower bounds (z = 1) of the top k: 4 of 4: 0.8; 5 of 6: 0.637; 5 of 7: 0.526.
        assert_eq!(calibrated_threshold(&o, 0.8, 0.05), 0.8);
        assert_eq!(calibrated_threshold(&o, 0.7, 0.05), 0.8);
        assert_eq!(calibrated_threshold(&o, 0.63, 0.05), 0.6);
        assert_eq!(calibrated_threshold(&o, 0.5, 0.05), 0.5);
        // Never below the floor.
        assert_eq!(calibrated_threshold(&o, 0.63, 0.65), 0.65);
    }

    #[test]
    fn wilson_bounds_match_known_values() {
        // All hits: n / (n + 1) at z = 1.
        assert!((wilson_lower(9, 9, 1.0) - 0.9).abs() < 1e-12);
        // 19 of 20 at z = 1.96 (the usual 95% interval): 0.7639.
        assert!((wilson_lower(19, 20, 1.96) - 0.763_869).abs() < 1e-5);
        // Half of 100 at z = 1: 0.45025.
        assert!((wilson_lower(50, 100, 1.0) - 0.450_248).abs() < 1e-5);
        assert_eq!(wilson_lower(0, 0, 1.0), 0.0);
    }

    #[test]
    fn the_calibrated_threshold_waits_for_evidence() {
        // No outcomes: the floor. Too few hits for the target: just above the highest.
        assert_eq!(calibrated_threshold(&[], 0.9, 0.05), 0.05);
        let t = calibrated_threshold(&[(0.7, true), (0.6, false)], 0.9, 0.05);
        assert!(t > 0.7 && t < 0.7 + 1e-12, "{t}");
        // Ten hits of ten: a lower bound of 10 / 11 reaches 0.9; eight (8 / 9) do not.
        let hits: Vec<(f64, bool)> = (0..10).map(|i| (0.5 + i as f64 / 100.0, true)).collect();
        assert_eq!(calibrated_threshold(&hits, 0.9, 0.05), 0.5);
        assert!(calibrated_threshold(&hits[..8], 0.9, 0.05) > 0.57);
    }

    #[test]
    fn tied_probabilities_are_created_together() {
        // Three at 0.8 (two used) after three hits at 0.9: a threshold at 0.8 creates all six.
        let o = [
            (0.9, true),
            (0.9, true),
            (0.9, true),
            (0.8, true),
            (0.8, false),
            (0.8, true),
        ];
        // 3 of 3: 0.75; 5 of 6: 0.637.
        assert_eq!(calibrated_threshold(&o, 0.74, 0.05), 0.9);
        assert_eq!(calibrated_threshold(&o, 0.6, 0.05), 0.8);
    }

    #[test]
    fn gap_survival_follows_the_gaps_seen() {
        let mut g = GapSurvival::new(1000.0);
        // Gaps of 10 ms (bucket [9.51, 11.31)) and 100 ms (bucket [95.1, 113.1)), half each.
        for _ in 0..500 {
            g.add(10.0);
            g.add(100.0);
        }
        g.add(-5.0);
        g.add(f64::NAN);
        assert_eq!(g.survival(0.0), 1.0);
        assert_eq!(g.survival(5.0), 1.0);
        assert_eq!(g.survival(50.0), 0.5);
        assert_eq!(g.survival(200.0), 0.0);
        // Within a bucket, linearly: halfway through the 10 ms bucket, half its gaps are above.
        let (lo, hi) = gap_bounds(gap_bucket(10.0));
        assert!((g.survival((lo + hi) / 2.0) - 0.75).abs() < 1e-12);
        // A sequence at the 10 ms mark cannot call within 1 ms unless it goes on to 100 ms.
        assert!(within_horizon(1.0, 0.0, 60.0, 10.0, &g) == 0.0);
        assert!((within_horizon(1.0, 0.0, 60.0, 100.0, &g) - 1.0).abs() < 1e-12);
        // With a chance of ending, 60 ms of silence is evidence of the end: 0.5 · 0.5 /
        // (0.5 + 0.5 · 0.5) = 1/3.
        assert!((within_horizon(0.5, 0.5, 60.0, 100.0, &g) - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn old_gaps_fade() {
        let mut g = GapSurvival::new(1.0);
        for _ in 0..GAP_HALVE_AT - 1 {
            g.add(10.0);
        }
        assert_eq!(g.survival(50.0), 0.0);
        g.add(1000.0);
        // Halved: 2¹⁹ − 1 gaps of 10 ms and none of 1000 ms (halves round down).
        assert_eq!(g.total, (1 << 19) - 1);
        for _ in 0..(1 << 19) {
            g.add(1000.0);
        }
        assert!((g.survival(50.0) - 0.5).abs() < 1e-6);
    }

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
        // No gap seen yet: exponential gaps of mean 100 ms. A sequence just arrived
        // (s = 0), P(b | context) = 0.6, H = 100 ms: q = 0.6 · (1 − e⁻¹) = 0.3793.
        let prior = GapSurvival::new(100.0);
        let q = within_horizon(0.6, 0.2, 0.0, 100.0, &prior);
        assert!((q - 0.6 * (1.0 - (-1.0f64).exp())).abs() < 1e-12);
        assert_eq!(within_horizon(0.6, 0.2, 0.0, 0.0, &prior), 0.0);
        // Exponential gaps are memoryless, but the silence makes an end likelier: at s = 100,
        // S = e⁻¹, q = 0.6 · (e⁻¹ − e⁻²) / (0.2 + 0.8 e⁻¹).
        let e1 = (-1.0f64).exp();
        let late = within_horizon(0.6, 0.2, 100.0, 100.0, &prior);
        assert!((late - 0.6 * (e1 - e1 * e1) / (0.2 + 0.8 * e1)).abs() < 1e-12);
        assert!(late < q);
        // A sequence that cannot end keeps its chance: 0.6 · (1 − e⁻¹) again.
        assert!((within_horizon(0.6, 0.0, 100.0, 100.0, &prior) - q).abs() < 1e-12);
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
