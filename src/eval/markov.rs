//! The Markov evaluation's maths (pure functions; the evaluator over a run's outputs builds on
//! them): scoring next-service predictions against the truth's chains.
//!
//! ```text
//! calls (trace, time, source, target) ──traces()──► Trace ──hops()──► Hop { time, history, next }
//!      ├── score_model(KneserNey) / prequential(window) ──► Scored { time, bits, hit }
//!      └── score_chains(truth regimes) ──────────────────► Scored (the Bayes-optimal predictor)
//! Scored ──summarize()──► Summary { hops, bits_per_hop, top1 }      ──adaptation()──► hops and ms after a change
//! ```
//!
//! | measure | definition |
//! |---|---|
//! | log-loss | mean of `−log₂ P(next | history)` over hops, in bits |
//! | entropy rate | the truth's, of the regime in force at each hop, averaged over the hops scored |
//! | excess | `log-loss / entropy rate − 1` |
//! | top-1 | share of hops whose most likely next service (ties: first in order) was right |
//! | Bayes top-1 | the same for the truth's chain: the best any predictor can expect |
//! | baselines | the same counts at order 0 (unigram) and order 1 (first-order) |
//! | adaptation | after a change, the hops (and ms) until the first run of `window` hops, all after the change, whose mean log-loss is within `tolerance` of the new regime's entropy rate |
//!
//! A trace is the source of its first call, then each call's target, in time order (later
//! sources are not read: every call starts where the last one went). A hop's time is its call's.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;

use serde::Serialize;

use crate::model::markov::{context_of, Chain, Discount, KneserNey, MarkovError, Ngrams, Token};

/// One trace's services, with the time each was reached (`times[0]`: its first call's).
#[derive(Debug, Clone, PartialEq)]
pub struct Trace<S> {
    pub services: Vec<S>,
    pub times: Vec<i64>,
}

/// One hop to predict: its time, the tokens before it (at most the longest order scored), and
/// the service that came.
#[derive(Debug, Clone, PartialEq)]
pub struct Hop<S> {
    pub time: i64,
    pub history: Vec<Token<S>>,
    pub next: S,
}

/// What a predictor said of one hop: `−log₂` of the probability it gave the service that came
/// (infinite for 0), and whether its most likely service was that one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scored {
    pub time: i64,
    pub bits: f64,
    pub hit: bool,
}

/// A predictor's hops, mean log-loss and top-1 accuracy (NaN without hops).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub hops: usize,
    pub bits_per_hop: f64,
    pub top1: f64,
}

/// Traces from calls `(trace, time, source, target)` in any order: each trace's calls sorted by
/// time (ties in the order given).
pub fn traces<K: Ord, S: Clone>(calls: impl IntoIterator<Item = (K, i64, S, S)>) -> Vec<Trace<S>> {
    let mut by_trace: BTreeMap<K, Vec<(i64, usize, S, S)>> = BTreeMap::new();
    for (i, (k, t, source, target)) in calls.into_iter().enumerate() {
        by_trace.entry(k).or_default().push((t, i, source, target));
    }
    by_trace
        .into_values()
        .map(|mut calls| {
            calls.sort_by_key(|c| (c.0, c.1));
            let mut services = vec![calls[0].2.clone()];
            let mut times = vec![calls[0].0];
            for (t, _, _, target) in calls {
                services.push(target);
                times.push(t);
            }
            Trace { services, times }
        })
        .collect()
}

/// Every hop of `traces` with up to `order` tokens of history, in time order (ties by trace,
/// then position).
pub fn hops<S: Clone>(traces: &[Trace<S>], order: usize) -> Vec<Hop<S>> {
    let mut out: Vec<(i64, usize, usize, Hop<S>)> = Vec::new();
    for (k, trace) in traces.iter().enumerate() {
        let tokens: Vec<Token<S>> = trace.services.iter().cloned().map(Token::Sym).collect();
        for i in 1..trace.services.len() {
            let hop = Hop {
                time: trace.times[i],
                history: context_of(&tokens[..i], order),
                next: trace.services[i].clone(),
            };
            out.push((trace.times[i], k, i, hop));
        }
    }
    out.sort_by_key(|h| (h.0, h.1, h.2));
    out.into_iter().map(|h| h.3).collect()
}

/// The most likely symbol of a distribution (the first of equals).
pub(crate) fn most_likely<S>(distribution: &[(S, f64)]) -> Option<&S> {
    let mut best: Option<&(S, f64)> = None;
    for e in distribution {
        if best.is_none_or(|b| e.1 > b.1) {
            best = Some(e);
        }
    }
    best.map(|b| &b.0)
}

pub(crate) fn scored(time: i64, p: f64, hit: bool) -> Scored {
    Scored {
        time,
        bits: if p > 0.0 { -p.log2() } else { f64::INFINITY },
        hit,
    }
}

/// Scores `hops` with a fixed model.
pub fn score_model<S: Clone + Ord + Hash + Debug>(model: &KneserNey<S>, hops: &[Hop<S>]) -> Vec<Scored> {
    hops.iter()
        .map(|h| {
            let d = model.distribution(&h.history);
            let p = d.binary_search_by(|e| e.0.cmp(&h.next)).map_or(0.0, |i| d[i].1);
            scored(h.time, p, most_likely(&d) == Some(&h.next))
        })
        .collect()
}

/// The truth's regimes: each chain, in force from its start time until the next one's.
#[derive(Debug, Clone)]
pub struct Regimes<S: Ord> {
    pub regimes: Vec<(i64, Chain<S>)>,
    /// Each regime's entropy rate, in bits per hop.
    pub entropy_rates: Vec<f64>,
}

impl<S: Clone + Ord> Regimes<S> {
    /// `regimes` sorted by start time.
    pub fn new(mut regimes: Vec<(i64, Chain<S>)>) -> Regimes<S> {
        regimes.sort_by_key(|r| r.0);
        let entropy_rates = regimes.iter().map(|r| r.1.entropy_rate_bits()).collect();
        Regimes { regimes, entropy_rates }
    }

    /// The regime in force at `t` (the first before any start).
    pub fn at(&self, t: i64) -> usize {
        self.regimes.iter().rposition(|r| r.0 <= t).unwrap_or(0)
    }

    /// The mean over `hops` of the entropy rate in force at each.
    pub fn entropy_rate_over(&self, hops: &[Hop<S>]) -> f64 {
        hops.iter().map(|h| self.entropy_rates[self.at(h.time)]).sum::<f64>() / hops.len() as f64
    }

    /// Scores `hops` with the Bayes-optimal predictor: the chain in force at each hop.
    pub fn score(&self, hops: &[Hop<S>]) -> Vec<Scored> {
        hops.iter()
            .map(|h| {
                let chain = &self.regimes[self.at(h.time)].1;
                let context = context_of(&h.history, chain.order);
                let row = chain.row(&context);
                let p = row.map_or(0.0, |r| r.conditional(&h.next));
                scored(h.time, p, row.and_then(|r| r.most_likely()) == Some(&h.next))
            })
            .collect()
    }
}

pub fn summarize(scored: &[Scored]) -> Summary {
    let n = scored.len() as f64;
    Summary {
        hops: scored.len(),
        bits_per_hop: scored.iter().map(|s| s.bits).sum::<f64>() / n,
        top1: scored.iter().filter(|s| s.hit).count() as f64 / n,
    }
}

/// How long a predictor took to fit a new regime.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Adaptation {
    /// Hops after the change before the first run of `window` hops within tolerance.
    pub hops: usize,
    /// From the change to that run's first hop.
    pub ms: i64,
}

/// After a change at `change_ms`, the first run of `window` consecutive hops (all at or after
/// the change) whose mean log-loss is at most `(1 + tolerance) · target_bits`; `None` when no
/// run is. `scored` must be in time order.
pub fn adaptation(
    scored: &[Scored],
    change_ms: i64,
    target_bits: f64,
    tolerance: f64,
    window: usize,
) -> Option<Adaptation> {
    let first = scored.partition_point(|s| s.time < change_ms);
    let after = &scored[first..];
    let window = window.max(1);
    if after.len() < window {
        return None;
    }
    let limit = (1.0 + tolerance) * target_bits * window as f64;
    let mut sum: f64 = after[..window].iter().map(|s| s.bits).sum();
    for start in 0..=after.len() - window {
        if start > 0 {
            sum += after[start + window - 1].bits - after[start - 1].bits;
        }
        if sum <= limit {
            return Some(Adaptation {
                hops: start,
                ms: after[start].time - change_ms,
            });
        }
    }
    None
}

/// Online (prequential) scoring: each hop is predicted by the order-`order` model of the hops of
/// the `window_ms` before it, then counted; hops leave the counts `window_ms` after their time.
/// This is what a windowed dataflow stage computes, from scratch. `vocabulary` lists the
/// services that may come next before any is counted.
pub fn prequential<S: Clone + Ord + Hash + Debug>(
    hops: &[Hop<S>],
    order: usize,
    discount: Discount,
    window_ms: i64,
    vocabulary: &[S],
) -> Result<Vec<Scored>, MarkovError> {
    let mut counts = Ngrams::new(order);
    let mut live: VecDeque<&Hop<S>> = VecDeque::new();
    let mut out = Vec::with_capacity(hops.len());
    for h in hops {
        while let Some(old) = live.front().filter(|old| old.time + window_ms <= h.time) {
            counts.add(&old.history, &old.next, -1)?;
            live.pop_front();
        }
        let model = KneserNey::new(&counts, order, discount, vocabulary.iter().cloned())?;
        out.extend(score_model(&model, std::slice::from_ref(h)));
        counts.add(&h.history, &h.next, 1)?;
        live.push_back(h);
    }
    Ok(out)
}

/// A model against its baselines and the truth, over the same hops.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Comparison {
    pub model: Summary,
    pub unigram: Summary,
    pub first_order: Summary,
    pub bayes: Summary,
    pub entropy_rate_bits: f64,
}

impl Comparison {
    /// `log-loss / entropy rate − 1`.
    pub fn excess(&self) -> f64 {
        self.model.bits_per_hop / self.entropy_rate_bits - 1.0
    }

    /// The model's top-1 accuracy over the Bayes predictor's.
    pub fn top1_ratio(&self) -> f64 {
        self.model.top1 / self.bayes.top1
    }

    /// Comparisons over disjoint hops (regimes, say) pooled into one, weighted by hops.
    pub fn pooled(parts: &[Comparison]) -> Comparison {
        let hops: usize = parts.iter().map(|c| c.model.hops).sum();
        let mean = |f: &dyn Fn(&Comparison) -> f64| -> f64 {
            parts.iter().map(|c| f(c) * c.model.hops as f64).sum::<f64>() / hops as f64
        };
        let pool = |f: &dyn Fn(&Comparison) -> Summary| Summary {
            hops,
            bits_per_hop: mean(&|c| f(c).bits_per_hop),
            top1: mean(&|c| f(c).top1),
        };
        Comparison {
            model: pool(&|c| c.model),
            unigram: pool(&|c| c.unigram),
            first_order: pool(&|c| c.first_order),
            bayes: pool(&|c| c.bayes),
            entropy_rate_bits: mean(&|c| c.entropy_rate_bits),
        }
    }
}

/// The order-`order` model of `train` and its unigram and first-order baselines (the same
/// counts at orders 0 and 1), scored on `test` against the truth's `regimes`. The vocabulary is
/// the train's services and `vocabulary`.
pub fn compare<S: Clone + Ord + Hash + Debug>(
    train: &Ngrams<S>,
    order: usize,
    discount: Discount,
    test: &[Hop<S>],
    regimes: &Regimes<S>,
    vocabulary: &[S],
) -> Result<Comparison, MarkovError> {
    let summary = |k: usize| -> Result<Summary, MarkovError> {
        let model = KneserNey::new(train, k, discount, vocabulary.iter().cloned())?;
        Ok(summarize(&score_model(&model, test)))
    };
    Ok(Comparison {
        model: summary(order)?,
        unigram: summary(0)?,
        first_order: summary(1)?,
        bayes: summarize(&regimes.score(test)),
        entropy_rate_bits: regimes.entropy_rate_over(test),
    })
}

/// From-scratch evaluation per regime: the traces lying wholly inside a regime, the first
/// `train_share` of them (by start) counted, the rest scored with [`compare`]. `None` for a
/// regime without a trace to train on or to score.
pub fn per_regime<S: Clone + Ord + Hash + Debug>(
    traces: &[Trace<S>],
    regimes: &Regimes<S>,
    order: usize,
    discount: Discount,
    train_share: f64,
    vocabulary: &[S],
) -> Result<Vec<Option<Comparison>>, MarkovError> {
    let mut out = Vec::new();
    for r in 0..regimes.regimes.len() {
        let mut inside: Vec<&Trace<S>> = traces
            .iter()
            .filter(|t| t.services.len() >= 2)
            .filter(|t| regimes.at(t.times[0]) == r && regimes.at(*t.times.last().expect("a call")) == r)
            .collect();
        inside.sort_by_key(|t| t.times[0]);
        let cut = (inside.len() as f64 * train_share.clamp(0.0, 1.0)) as usize;
        let (train, test) = inside.split_at(cut);
        if train.is_empty() || test.is_empty() {
            out.push(None);
            continue;
        }
        let mut counts = Ngrams::new(order.max(1));
        for t in train {
            counts.add_sequence(&t.services, 1)?;
        }
        let test: Vec<Trace<S>> = test.iter().map(|t| (*t).clone()).collect();
        // Histories long enough for the model and for every truth chain.
        let depth = regimes.regimes.iter().map(|r| r.1.order).fold(order.max(1), usize::max);
        let hops = hops(&test, depth);
        out.push(Some(compare(&counts, order, discount, &hops, regimes, vocabulary)?));
    }
    Ok(out)
}
