//! Interpolated Kneser–Ney probabilities over an [`Ngrams`] table (the formula and the reasons
//! for it are in the parent module's docs). A [`KneserNey`] is a read-only view: build one from
//! the current counts whenever probabilities are needed.

use std::fmt::Debug;
use std::hash::Hash;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::counts::{context_of, hops, HopCounts, Ngrams, Seen};
use super::{MarkovError, Token};

/// The absolute discount `D` of every level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Discount {
    /// Per level, `D = n₁ / (n₁ + 2 n₂)` from the counts of counts the level uses (raw at the
    /// top, continuation below); 0.5 when `n₁ = 0`.
    Estimated,
    /// The same `D` at every level, in `(0, 1]`.
    Fixed(f64),
}

impl Discount {
    /// The grid [`super::select`] searches by default.
    pub const GRID: [Discount; 5] = [
        Discount::Estimated,
        Discount::Fixed(0.25),
        Discount::Fixed(0.5),
        Discount::Fixed(0.75),
        Discount::Fixed(1.0),
    ];
}

impl std::fmt::Display for Discount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Discount::Estimated => write!(f, "estimated"),
            Discount::Fixed(d) => write!(f, "{d}"),
        }
    }
}

/// The log-loss of a model over some hops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LogLoss {
    /// Hops scored, and their summed `−log₂ p`.
    pub hops: u64,
    pub bits: f64,
    /// Hops whose next symbol is outside the vocabulary (probability 0): not scored.
    pub unknown: u64,
}

impl LogLoss {
    /// Bits per scored hop (NaN without any).
    pub fn bits_per_hop(&self) -> f64 {
        self.bits / self.hops as f64
    }
}

/// An order-`k` interpolated Kneser–Ney model over a count table.
#[derive(Debug, Clone)]
pub struct KneserNey<'a, S: Eq + Hash> {
    counts: &'a Ngrams<S>,
    order: usize,
    /// The discount of each level `0..=order` in this model.
    discounts: Vec<f64>,
    /// The vocabulary, sorted, and each symbol's position in it.
    vocabulary: Vec<S>,
    index: FxHashMap<S, usize>,
}

impl<'a, S: Clone + Ord + Hash + Debug> KneserNey<'a, S> {
    /// The order-`order` model of `counts` (`order ≤ counts.order()`), over the symbols of the
    /// counts and `extra` (symbols that may come next although none was counted).
    pub fn new(
        counts: &'a Ngrams<S>,
        order: usize,
        discount: Discount,
        extra: impl IntoIterator<Item = S>,
    ) -> Result<KneserNey<'a, S>, MarkovError> {
        if order > counts.order() {
            return Err(MarkovError::OrderTooHigh {
                order,
                max: counts.order(),
            });
        }
        if let Discount::Fixed(d) = discount {
            if !(d > 0.0 && d <= 1.0) {
                return Err(MarkovError::Discount(d));
            }
        }
        let discounts = (0..=order)
            .map(|j| match discount {
                Discount::Fixed(d) => d,
                Discount::Estimated => {
                    let level = counts.level(j);
                    let [n1, n2] = if j == order { level.raw_small } else { level.cont_small };
                    if n1 == 0 {
                        0.5
                    } else {
                        n1 as f64 / (n1 + 2 * n2) as f64
                    }
                }
            })
            .collect();
        let mut vocabulary: Vec<S> = counts.symbols().cloned().chain(extra).collect();
        vocabulary.sort();
        vocabulary.dedup();
        let index = vocabulary.iter().enumerate().map(|(i, s)| (s.clone(), i)).collect();
        Ok(KneserNey {
            counts,
            order,
            discounts,
            vocabulary,
            index,
        })
    }

    pub fn order(&self) -> usize {
        self.order
    }

    /// The discount of level `j` (contexts of `j` tokens) in this model.
    pub fn discount(&self, j: usize) -> f64 {
        self.discounts[j]
    }

    /// The symbols probabilities are over, sorted.
    pub fn vocabulary(&self) -> &[S] {
        &self.vocabulary
    }

    /// The `(c(h), c(h w), N₁₊(h •))` level `j` of this model uses from what its table holds
    /// there: raw counts at the top level, continuation counts below. `None` when the context
    /// was never seen (the level is skipped: the lower order stands).
    fn at_level(&self, j: usize, seen: Option<Seen>) -> Option<(f64, f64, f64)> {
        let seen = seen?;
        let top = j == self.order;
        let total = if top { seen.total } else { seen.total_cont };
        if total == 0 {
            return None;
        }
        let count = if top { seen.entry.count } else { seen.entry.cont };
        Some((total as f64, count as f64, seen.types as f64))
    }

    /// The level-`j` context of a hop after `history` (padded to this model's order), as its
    /// table holds it, with the entry of `next` when given.
    fn level_counts(&self, j: usize, context: &[Token<S>], next: Option<&S>) -> Option<(f64, f64, f64)> {
        let node = self.counts.level(j).contexts.get(&context[self.order - j..])?;
        self.at_level(j, Some(node.seen(next)))
    }

    /// The interpolation from the uniform distribution up through the levels `0..=order`.
    fn interpolate(&self, levels: impl Iterator<Item = Option<(f64, f64, f64)>>) -> f64 {
        let mut p = 1.0 / self.vocabulary.len() as f64;
        for (j, level) in levels.enumerate() {
            if let Some((total, count, types)) = level {
                let d = self.discounts[j];
                p = (count - d).max(0.0) / total + d * types / total * p;
            }
        }
        p
    }

    /// `P(next | history)`: 0 for a symbol outside the vocabulary.
    pub fn probability(&self, history: &[Token<S>], next: &S) -> f64 {
        if !self.index.contains_key(next) {
            return 0.0;
        }
        let context = context_of(history, self.order);
        self.interpolate((0..=self.order).map(|j| self.level_counts(j, &context, Some(next))))
    }

    /// `P(next | history)` from `hop`, the hop's counts in this model's table
    /// ([`Ngrams::hop_counts`]): the same as [`KneserNey::probability`], without looking the
    /// hop up again.
    pub fn probability_of(&self, hop: &HopCounts, next: &S) -> f64 {
        debug_assert!(
            hop.levels.len() > self.order,
            "the hop's counts come from this model's table"
        );
        if !self.index.contains_key(next) {
            return 0.0;
        }
        self.interpolate((0..=self.order).map(|j| self.at_level(j, hop.levels[j])))
    }

    /// `P(· | history)` for each symbol of the vocabulary, in its order.
    fn probabilities(&self, history: &[Token<S>]) -> Vec<f64> {
        let context = context_of(history, self.order);
        let mut p = vec![1.0 / self.vocabulary.len() as f64; self.vocabulary.len()];
        for j in 0..=self.order {
            let Some((total, _, types)) = self.level_counts(j, &context, None) else {
                continue;
            };
            let d = self.discounts[j];
            let node = &self.counts.level(j).contexts[&context[self.order - j..]];
            p.iter_mut().for_each(|x| *x *= d * types / total);
            for (w, e) in &node.next {
                let count = if j == self.order { e.count } else { e.cont };
                p[self.index[w]] += (count as f64 - d).max(0.0) / total;
            }
        }
        p
    }

    /// `P(· | history)` over the vocabulary, sorted by symbol.
    pub fn distribution(&self, history: &[Token<S>]) -> Vec<(S, f64)> {
        self.vocabulary
            .iter()
            .cloned()
            .zip(self.probabilities(history))
            .collect()
    }

    /// The `k` most likely next symbols after `history`, most likely first (ties in symbol
    /// order).
    pub fn top_k(&self, history: &[Token<S>], k: usize) -> Vec<(S, f64)> {
        let p = self.probabilities(history);
        let mut best: Vec<usize> = (0..p.len()).collect();
        let order = |a: &usize, b: &usize| p[*b].total_cmp(&p[*a]).then(a.cmp(b));
        if k < best.len() {
            best.select_nth_unstable_by(k, order);
            best.truncate(k);
        }
        best.sort_by(order);
        best.into_iter().map(|i| (self.vocabulary[i].clone(), p[i])).collect()
    }

    /// The log-loss of the hops of `sequences` (each symbol after the first, from its context).
    pub fn log_loss(&self, sequences: &[Vec<S>]) -> LogLoss {
        let mut loss = LogLoss::default();
        for s in sequences {
            for (context, next) in hops(s, self.order) {
                let p = self.probability(&context, &next);
                if p > 0.0 {
                    loss.hops += 1;
                    loss.bits -= p.log2();
                } else {
                    loss.unknown += 1;
                }
            }
        }
        loss
    }
}
