//! A known order-K Markov chain over symbols with an absorbing end: the generator's hidden chain
//! and the evaluation's truth. Pure maths, no timely.
//!
//! A sequence is drawn from the context `[Start; K]`: each step draws the next symbol, or the
//! end, from the row of the current context (its last `K` tokens), and shifts the symbol in. The
//! first symbol (drawn from the entry context) is not a prediction target; every later one is a
//! **hop**, predicted from the context before it. Sequences restart from the entry context after
//! the end, which makes the chain over contexts a renewal process with these exact quantities:
//!
//! - `visits(c)`: the expected number of times `c` is the context of a position after the first,
//!   per sequence: `v = v₁ + v·Q`, `v₁` the contexts after the first symbol, `Q` the
//!   context-to-context transitions without the end (summed until the remaining mass is below
//!   1e-13);
//! - `hop_weight(c) = visits(c) · (1 − end(c))`: the expected hops predicted from `c`;
//! - the **entropy rate** (bits per hop) `Σ_c w(c) · H(next | c, not end) / Σ_c w(c)`: the
//!   smallest expected log-loss of a predictor of the next symbol that knows the chain;
//! - the **Bayes top-1 accuracy** `Σ_c w(c) · max_s P(s | c, not end) / Σ_c w(c)`.
//!
//! A context without a row ends the sequence.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Token;

/// One context's row: the next symbols' probabilities (sorted by symbol) and the end's. They sum
/// to 1; draws and conditionals use them as weights, so rounding does not matter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row<S> {
    pub next: Vec<(S, f64)>,
    pub end: f64,
}

impl<S: Ord> Row<S> {
    /// The total weight of the next symbols.
    fn continuing(&self) -> f64 {
        self.next.iter().map(|(_, p)| p).sum()
    }

    /// `P(s | this context, not end)`.
    pub fn conditional(&self, s: &S) -> f64 {
        let total = self.continuing();
        match self.next.iter().find(|(x, _)| x == s) {
            Some((_, p)) if total > 0.0 => p / total,
            _ => 0.0,
        }
    }

    /// The most likely next symbol (the first of equals, in symbol order).
    pub fn most_likely(&self) -> Option<&S> {
        let mut best: Option<&(S, f64)> = None;
        for e in &self.next {
            if best.is_none_or(|b| e.1 > b.1) {
                best = Some(e);
            }
        }
        best.map(|b| &b.0)
    }
}

/// An order-`order` chain: a row for each context of `order` tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chain<S: Ord> {
    pub order: usize,
    pub rows: BTreeMap<Vec<Token<S>>, Row<S>>,
}

/// `context` without its oldest token, with `s` appended.
pub fn shift<S: Clone>(context: &[Token<S>], s: &S) -> Vec<Token<S>> {
    let mut next: Vec<Token<S>> = context.iter().skip(1).cloned().collect();
    if context.is_empty() {
        return next;
    }
    next.push(Token::Sym(s.clone()));
    next
}

/// Expected counts below this are dropped from the propagation.
const NEGLIGIBLE: f64 = 1e-13;
/// At most this many steps are propagated (a chain that never ends stops here).
const MAX_STEPS: usize = 100_000;

impl<S: Ord + Clone> Chain<S> {
    /// The context every sequence starts from: `order` start tokens.
    pub fn entry(&self) -> Vec<Token<S>> {
        vec![Token::Start; self.order]
    }

    pub fn row(&self, context: &[Token<S>]) -> Option<&Row<S>> {
        self.rows.get(context)
    }

    /// `P(s | context, not end)`: 0 for a context without a row.
    pub fn conditional(&self, context: &[Token<S>], s: &S) -> f64 {
        self.row(context).map_or(0.0, |r| r.conditional(s))
    }

    /// One sequence drawn from the chain (at most `max_len` symbols).
    pub fn sample<R: rand::Rng>(&self, rng: &mut R, max_len: usize) -> Vec<S> {
        let mut context = self.entry();
        let mut out = Vec::new();
        while out.len() < max_len {
            let Some(row) = self.row(&context) else { break };
            let mut u = rng.random::<f64>() * (row.continuing() + row.end);
            let Some((s, _)) = row.next.iter().find(|(_, p)| {
                u -= p;
                u < 0.0
            }) else {
                break;
            };
            context = shift(&context, s);
            out.push(s.clone());
        }
        out
    }

    /// The expected number of times each context is the context of a hop position (every
    /// position after the first), per sequence (see the module docs).
    pub fn visits(&self) -> BTreeMap<Vec<Token<S>>, f64> {
        let mut frontier: BTreeMap<Vec<Token<S>>, f64> = BTreeMap::new();
        let entry = self.entry();
        if let Some(row) = self.row(&entry) {
            for (s, p) in &row.next {
                *frontier.entry(shift(&entry, s)).or_default() += p;
            }
        }
        let mut total: BTreeMap<Vec<Token<S>>, f64> = BTreeMap::new();
        for _ in 0..MAX_STEPS {
            if frontier.values().sum::<f64>() < NEGLIGIBLE {
                break;
            }
            let mut next: BTreeMap<Vec<Token<S>>, f64> = BTreeMap::new();
            for (context, mass) in frontier {
                *total.entry(context.clone()).or_default() += mass;
                if let Some(row) = self.row(&context) {
                    for (s, p) in &row.next {
                        *next.entry(shift(&context, s)).or_default() += mass * p;
                    }
                }
            }
            frontier = next;
        }
        total
    }

    /// The expected hops predicted from each context per sequence, `visits(c) · (1 − end(c))`.
    pub fn hop_weights(&self) -> BTreeMap<Vec<Token<S>>, f64> {
        self.visits()
            .into_iter()
            .map(|(c, v)| {
                let continuing = self.row(&c).map_or(0.0, |r| r.continuing() / (r.continuing() + r.end));
                (c, v * continuing)
            })
            .filter(|(_, w)| *w > 0.0)
            .collect()
    }

    /// The expected number of hops per sequence.
    pub fn hops_per_sequence(&self) -> f64 {
        self.hop_weights().values().sum()
    }

    /// The mean of `f(row)` over hops: `Σ w(c) f(row(c)) / Σ w(c)`.
    fn hop_mean(&self, f: impl Fn(&Row<S>) -> f64) -> f64 {
        let (mut sum, mut weight) = (0.0, 0.0);
        for (c, w) in self.hop_weights() {
            if let Some(row) = self.row(&c) {
                sum += w * f(row);
                weight += w;
            }
        }
        if weight > 0.0 {
            sum / weight
        } else {
            0.0
        }
    }

    /// The entropy rate in bits per hop (see the module docs).
    pub fn entropy_rate_bits(&self) -> f64 {
        self.hop_mean(|row| {
            let total = row.continuing();
            row.next
                .iter()
                .filter(|(_, p)| *p > 0.0)
                .map(|(_, p)| -(p / total) * (p / total).log2())
                .sum()
        })
    }

    /// The entropy in bits per hop of the next symbol given only the last `k` tokens of the
    /// context (`k ≤ order`): the smallest expected log-loss of an order-`k` predictor, pooling
    /// the contexts that share those tokens by their hop weights. `k = order` gives
    /// [`Chain::entropy_rate_bits`], `k = 0` the entropy of the symbols' hop frequencies.
    pub fn entropy_bits_given(&self, k: usize) -> f64 {
        let k = k.min(self.order);
        // By the last `k` tokens: the pooled hop weight, and each next symbol's share of it.
        type Pooled<'a, S> = (f64, BTreeMap<&'a S, f64>);
        let mut pooled: BTreeMap<&[Token<S>], Pooled<S>> = BTreeMap::new();
        let weights = self.hop_weights();
        for (c, w) in &weights {
            let Some(row) = self.row(c) else { continue };
            let total = row.continuing();
            let entry = pooled.entry(&c[c.len() - k..]).or_default();
            entry.0 += w;
            for (s, p) in &row.next {
                *entry.1.entry(s).or_default() += w * p / total;
            }
        }
        let all: f64 = pooled.values().map(|p| p.0).sum();
        if all <= 0.0 {
            return 0.0;
        }
        let mut h = 0.0;
        for (w, next) in pooled.values() {
            for q in next.values().filter(|q| **q > 0.0) {
                h -= q / all * (q / w).log2();
            }
        }
        h
    }

    /// The share of hops the Bayes-optimal predictor (the most likely next symbol of the true
    /// row) gets right, in expectation.
    pub fn bayes_top1(&self) -> f64 {
        self.hop_mean(|row| {
            let total = row.continuing();
            row.next.iter().map(|(_, p)| p / total).fold(0.0, f64::max)
        })
    }

    /// The expected number of hops from `a` to `b` per sequence, for every pair that has one.
    pub fn edge_visits(&self) -> BTreeMap<(S, S), f64> {
        let mut out = BTreeMap::new();
        for (c, v) in self.visits() {
            let (Some(Token::Sym(a)), Some(row)) = (c.last(), self.row(&c)) else {
                continue;
            };
            let total = row.continuing() + row.end;
            for (b, p) in &row.next {
                *out.entry((a.clone(), b.clone())).or_default() += v * p / total;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `A` then `B` or `C` (½ each); after `B`, `C` or the end (½ each); `C` ends. Sequences:
    /// `AC` ½, `AB` ¼, `ABC` ¼.
    fn small() -> Chain<char> {
        let row = |next: &[(char, f64)], end: f64| Row {
            next: next.to_vec(),
            end,
        };
        let rows = BTreeMap::from([
            (vec![Token::Start], row(&[('A', 1.0)], 0.0)),
            (vec![Token::Sym('A')], row(&[('B', 0.5), ('C', 0.5)], 0.0)),
            (vec![Token::Sym('B')], row(&[('C', 0.5)], 0.5)),
            (vec![Token::Sym('C')], row(&[], 1.0)),
        ]);
        Chain { order: 1, rows }
    }

    #[test]
    fn hand_computed_visits_entropy_and_accuracy() {
        let c = small();
        let v = c.visits();
        assert_eq!(
            v.into_iter().collect::<Vec<_>>(),
            vec![
                (vec![Token::Sym('A')], 1.0),
                (vec![Token::Sym('B')], 0.5),
                (vec![Token::Sym('C')], 0.75)
            ]
        );
        // Hops: A predicts 1 per sequence, B ¼ (its other ¼ is the end).
        assert_eq!(c.hops_per_sequence(), 1.25);
        // H = (1 · 1 bit + ¼ · 0 bits) / 1.25.
        assert!((c.entropy_rate_bits() - 0.8).abs() < 1e-12);
        assert_eq!(c.entropy_bits_given(1), c.entropy_rate_bits());
        // Without context: B 0.5 and C 0.75 of 1.25 hops.
        let h0 = -(0.4f64 * 0.4f64.log2() + 0.6 * 0.6f64.log2());
        assert!((c.entropy_bits_given(0) - h0).abs() < 1e-12);
        // Bayes: right half the time after A (B and C tie: B is predicted), always after B.
        assert!((c.bayes_top1() - 0.6).abs() < 1e-12);
        assert_eq!(c.row(&[Token::Sym('A')]).unwrap().most_likely(), Some(&'B'));
        let edges = c.edge_visits();
        assert_eq!(edges[&('A', 'B')], 0.5);
        assert_eq!(edges[&('B', 'C')], 0.25);
        assert_eq!(c.conditional(&[Token::Sym('B')], &'C'), 1.0);
        assert_eq!(c.conditional(&[Token::Sym('Z')], &'C'), 0.0);
    }

    #[test]
    fn shift_drops_the_oldest_token() {
        let c = [Token::Start, Token::Sym(1)];
        assert_eq!(shift(&c, &2), vec![Token::Sym(1), Token::Sym(2)]);
        assert_eq!(shift::<u8>(&[], &2), Vec::<Token<u8>>::new());
    }
}
