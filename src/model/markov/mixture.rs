//! Mixing the predictions of several models (the same Markov model over windows of different
//! lengths) by their recent log-loss: Herbster & Warmuth's **fixed share** (*Tracking the best
//! expert*, Machine Learning 32, 1998). Pure maths, no timely imports.
//!
//! With weights `wᵢ` (summing to 1) and each model's probability `pᵢ` of what happened, the
//! mixture predicts `Σ wᵢ pᵢ`. After the outcome, each weight is multiplied by its model's
//! probability and renormalised (Bayes' rule: the *loss update*), then a share `α` of the
//! total is spread evenly over all models (the *share update*):
//!
//! ```text
//! vᵢ = wᵢ pᵢ / Σⱼ wⱼ pⱼ          wᵢ' = (1 − α) vᵢ + α / K
//! ```
//!
//! - The mixture's cumulative log-loss is at most the best *sequence* of models' loss, plus
//!   about `log₂(1/α)` bits per switch between models, plus `−log₂(1 − α)` bits per outcome.
//!   With `α = 0` this is the Bayesian mixture: at most `log₂ K` bits behind the best single
//!   model, ever.
//! - So a long window (many counts, slow to forget) and a short one (few counts, quick to
//!   adapt) are both used where each is better: the weight moves to the short window within a
//!   few bits of evidence after a change, and back to the long one once it has caught up.
//! - No weight falls below `α / K`, so a model that was wrong for a long time can win again
//!   quickly.

use serde::Serialize;

/// The weights of `K ≥ 1` models under fixed share.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FixedShare {
    weights: Vec<f64>,
    alpha: f64,
}

impl FixedShare {
    /// Equal weights over `models` models, sharing `alpha` (in `[0, 1)`) after each update.
    pub fn new(models: usize, alpha: f64) -> FixedShare {
        assert!(models >= 1, "a mixture of no models");
        assert!((0.0..1.0).contains(&alpha), "the share must be in [0, 1)");
        FixedShare {
            weights: vec![1.0 / models as f64; models],
            alpha,
        }
    }

    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// The mixture's probability of an outcome the models give `probabilities` (by model).
    pub fn mix(&self, probabilities: &[f64]) -> f64 {
        debug_assert_eq!(probabilities.len(), self.weights.len());
        self.weights.iter().zip(probabilities).map(|(w, p)| w * p).sum()
    }

    /// The loss and share updates after an outcome the models gave `probabilities`. An outcome
    /// every model deemed impossible leaves the weights as they were (before the share).
    pub fn update(&mut self, probabilities: &[f64]) {
        debug_assert_eq!(probabilities.len(), self.weights.len());
        let total = self.mix(probabilities);
        if total > 0.0 && total.is_finite() {
            for (w, p) in self.weights.iter_mut().zip(probabilities) {
                *w *= p / total;
            }
        }
        let k = self.weights.len() as f64;
        for w in &mut self.weights {
            *w = (1.0 - self.alpha) * *w + self.alpha / k;
        }
    }
}

/// Whether `distributions` are over the same symbols in the same order (as the models of one
/// vocabulary are), so that their `i`th entries are the same symbol's.
pub fn same_symbols<'a, S: PartialEq + 'a>(mut distributions: impl Iterator<Item = &'a [(S, f64)]>) -> bool {
    let Some(first) = distributions.next() else {
        return true;
    };
    distributions.all(|d| d.len() == first.len() && d.iter().zip(first).all(|(x, y)| x.0 == y.0))
}

/// `Σ wᵢ Pᵢ(s)` for every symbol `s`: `distributions` are `(symbol, probability)` by model,
/// each sorted by symbol and over any subset of the symbols (a missing symbol has probability
/// 0); the result is sorted by symbol.
///
/// A merge of the sorted lists, summing each symbol's terms in model order (so the result does
/// not depend on how it is computed); when every model has the same symbols, as models over one
/// vocabulary do, a single pass.
pub fn mix_distributions<S: Ord + Copy>(weights: &[f64], distributions: &[&[(S, f64)]]) -> Vec<(S, f64)> {
    debug_assert_eq!(distributions.len(), weights.len());
    debug_assert!(distributions.iter().all(|d| d.windows(2).all(|w| w[0].0 < w[1].0)));
    let Some(first) = distributions.first() else {
        return Vec::new();
    };
    if same_symbols(distributions.iter().copied()) {
        return (0..first.len())
            .map(|i| {
                let p = weights
                    .iter()
                    .zip(distributions)
                    .fold(0.0, |acc, (w, d)| acc + w * d[i].1);
                (first[i].0, p)
            })
            .collect();
    }
    let mut at = vec![0; distributions.len()];
    let mut mixed = Vec::with_capacity(first.len());
    while let Some(s) = distributions
        .iter()
        .zip(&at)
        .filter_map(|(d, &i)| d.get(i).map(|x| x.0))
        .min()
    {
        let mut p = 0.0;
        for ((w, d), i) in weights.iter().zip(distributions).zip(&mut at) {
            if d.get(*i).is_some_and(|x| x.0 == s) {
                p += w * d[*i].1;
                *i += 1;
            }
        }
        mixed.push((s, p));
    }
    mixed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn one_update_by_hand() {
        // Weights ½, ½; the models gave the outcome ½ and ¼: Bayes gives ⅔, ⅓; a share of 0.1
        // gives 0.9·⅔ + 0.05 = 0.65 and 0.9·⅓ + 0.05 = 0.35.
        let mut m = FixedShare::new(2, 0.1);
        assert!(close(m.mix(&[0.5, 0.25]), 0.375));
        m.update(&[0.5, 0.25]);
        assert!(close(m.weights()[0], 0.65), "{:?}", m.weights());
        assert!(close(m.weights()[1], 0.35), "{:?}", m.weights());
        assert!(close(m.mix(&[1.0, 0.0]), 0.65));
    }

    #[test]
    fn without_a_share_the_loss_is_within_log2_k_of_the_best_model() {
        // Two fixed models of a coin: one says heads 0.8, the other 0.3; the outcomes are 70%
        // heads. The Bayesian mixture's total loss exceeds the better model's by at most 1 bit.
        let mut m = FixedShare::new(2, 0.0);
        let (mut mixture, mut best, mut worse) = (0.0, 0.0, 0.0);
        for i in 0..1000 {
            let heads = i % 10 < 7;
            let p = if heads { [0.8, 0.3] } else { [0.2, 0.7] };
            mixture -= m.mix(&p).log2();
            best -= p[0].log2();
            worse -= p[1].log2();
            m.update(&p);
        }
        assert!(best < worse);
        assert!(mixture >= best - 1e-9 && mixture <= best + 1.0, "{mixture} vs {best}");
    }

    #[test]
    fn the_weight_follows_a_switch_and_never_falls_below_the_share() {
        // Outcomes from model 0 for 500 steps, then from model 1: the weight moves to model 1
        // within a few dozen outcomes, and no weight is ever below α / K.
        let alpha = 1e-3;
        let mut m = FixedShare::new(2, alpha);
        let (a, b) = ([0.9, 0.1], [0.1, 0.9]);
        for _ in 0..500 {
            m.update(&[a[0], b[0]]);
            assert!(m.weights()[1] >= alpha / 2.0 - 1e-15);
        }
        assert!(m.weights()[0] > 0.99);
        let mut steps = 0;
        while m.weights()[1] < 0.5 {
            m.update(&[a[1], b[1]]);
            steps += 1;
        }
        // From α/2 to ½ takes log(1/α)/log(9) ≈ 3.1 outcomes at a likelihood ratio of 9.
        assert!((3..=5).contains(&steps), "{steps}");
    }

    #[test]
    fn mixed_distributions_sum_to_one() {
        let mut m = FixedShare::new(2, 0.01);
        m.update(&[0.2, 0.6]);
        let d0 = [(0u32, 0.5), (1, 0.5)];
        let d1 = [(1u32, 0.25), (2, 0.75)];
        let mixed = mix_distributions(m.weights(), &[&d0, &d1]);
        assert_eq!(mixed.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert!(close(mixed.iter().map(|(_, p)| p).sum::<f64>(), 1.0));
        let w = m.weights();
        assert!(close(mixed[1].1, w[0] * 0.5 + w[1] * 0.25));
    }

    /// The sum by symbol through a map, each symbol's terms in model order.
    fn mixed_by_map(weights: &[f64], distributions: &[&[(u32, f64)]]) -> Vec<(u32, f64)> {
        let mut mixed = std::collections::BTreeMap::new();
        for (w, d) in weights.iter().zip(distributions) {
            for (s, p) in d.iter() {
                *mixed.entry(*s).or_insert(0.0) += w * p;
            }
        }
        mixed.into_iter().collect()
    }

    #[test]
    fn mixing_merges_like_a_map_bit_for_bit() {
        // Random subsets of 0..12 (some models over the same symbols, some not), 1 to 4 models.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..2_000 {
            let k = 1 + (next() % 4) as usize;
            let shared = round % 3 == 0;
            let base: Vec<u32> = (0..12).filter(|_| next() % 3 != 0).collect();
            let dists: Vec<Vec<(u32, f64)>> = (0..k)
                .map(|_| {
                    let symbols: Vec<u32> = if shared {
                        base.clone()
                    } else {
                        (0..12).filter(|_| next() % 2 == 0).collect()
                    };
                    symbols
                        .into_iter()
                        .map(|s| (s, (next() % 1000) as f64 / 997.0))
                        .collect()
                })
                .collect();
            let weights: Vec<f64> = (0..k).map(|_| (1 + next() % 100) as f64 / 101.0).collect();
            let refs: Vec<&[(u32, f64)]> = dists.iter().map(Vec::as_slice).collect();
            let merged = mix_distributions(&weights, &refs);
            let expected = mixed_by_map(&weights, &refs);
            assert_eq!(merged.len(), expected.len(), "round {round}");
            for (m, e) in merged.iter().zip(&expected) {
                assert_eq!(m.0, e.0, "round {round}");
                assert_eq!(m.1.to_bits(), e.1.to_bits(), "round {round}: {m:?} vs {e:?}");
            }
        }
    }

    #[test]
    fn an_outcome_no_model_allowed_leaves_the_weights() {
        let mut m = FixedShare::new(3, 0.0);
        m.update(&[0.5, 0.2, 0.3]);
        let before = m.weights().to_vec();
        m.update(&[0.0, 0.0, 0.0]);
        assert_eq!(m.weights(), &before[..]);
    }
}
