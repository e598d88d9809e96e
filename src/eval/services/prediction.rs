//! The Markov part of the services evaluation: `NAME_hops` (each hop with the probability the
//! stage gave it *before* seeing it) against the truth's entropy rate and Bayes predictor, and
//! against unigram and first-order baselines run prequentially over the same hops.
//!
//! ```text
//! NAME_hops rows ──parse_hops()──► HopRow ──reconstruct()──► each trace's services ──► Hop { history }
//!    │                                                              ├── by_tick(order 0, 1) ──► baselines' Scored
//!    └── model_scores(): −log₂ probability, top1 == next ──► Scored └── Regimes::score ──────► Bayes' Scored
//! ```
//!
//! A trace is rebuilt from its hops in time order: its first service `s₀` is the last service
//! named in its first hop's context (unknown for an order-0 model, whose contexts are empty),
//! then each hop's `next`. Hops of one trace at the same millisecond are chained by their
//! contexts (the hop whose context ends where the trace is goes first). A hop whose context's
//! last service is not the trace's previous one is counted as a context mismatch.

use std::collections::{BTreeMap, VecDeque};

use crate::eval::markov::{most_likely, scored, Hop, Scored};
use crate::model::markov::{context_of, Discount, KneserNey, MarkovError, Ngrams, Token};
use crate::value::Value;

/// The symbol an open vocabulary reserves for services not seen yet.
pub const UNSEEN: &str = "\u{0}unseen";

/// One row of `NAME_hops`.
#[derive(Debug, Clone, PartialEq)]
pub struct HopRow {
    pub time: i64,
    pub sequence: String,
    pub context: Vec<Token<String>>,
    pub next: String,
    pub probability: f64,
    pub top1: Option<String>,
    pub order: i64,
}

/// A time column: a timestamp or epoch milliseconds.
pub(super) fn time_of(v: Option<&Value>) -> Option<i64> {
    match v {
        Some(Value::Time(t) | Value::Int(t)) => Some(*t),
        _ => None,
    }
}

/// A text column (an integer id is accepted as its decimal text).
pub(super) fn text_of(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::Str(s)) if !s.is_empty() => Some(s.to_string()),
        Some(Value::Int(i)) => Some(i.to_string()),
        _ => None,
    }
}

/// A number column (`None` for null or a non-number).
pub(super) fn number_of(v: Option<&Value>) -> Option<f64> {
    match v {
        Some(Value::Float(_) | Value::Int(_)) => v.and_then(Value::as_f64),
        _ => None,
    }
}

/// Parses a context: tokens separated by spaces, `^` for the start padding.
pub fn parse_context(text: &str) -> Vec<Token<String>> {
    text.split_whitespace()
        .map(|t| match t {
            crate::generate::services::truth::START_MARKER => Token::Start,
            s => Token::Sym(s.to_string()),
        })
        .collect()
}

/// The rows of `NAME_hops` that can be scored, and the others counted by reason.
pub fn parse_hops(rows: &[Vec<Value>]) -> (Vec<HopRow>, BTreeMap<&'static str, usize>) {
    let mut out = Vec::with_capacity(rows.len());
    let mut skipped: BTreeMap<&'static str, usize> = BTreeMap::new();
    for row in rows {
        let parsed = (|| {
            let context = match row.get(2) {
                Some(Value::Str(s)) => parse_context(s),
                _ => return Err("malformed_context"),
            };
            let top1 = match row.get(5) {
                Some(Value::Null) => None,
                v @ Some(Value::Str(_)) => text_of(v),
                _ => return Err("malformed_top1"),
            };
            Ok(HopRow {
                time: time_of(row.first()).ok_or("malformed_time")?,
                sequence: text_of(row.get(1)).ok_or("malformed_sequence")?,
                context,
                next: text_of(row.get(3)).ok_or("malformed_next")?,
                probability: number_of(row.get(4))
                    .filter(|p| (0.0..=1.0 + 1e-9).contains(p))
                    .ok_or("probability_outside_0_1")?,
                top1,
                order: match row.get(6) {
                    Some(Value::Int(k)) if *k >= 0 => *k,
                    _ => return Err("malformed_order"),
                },
            })
        })();
        match parsed {
            Ok(h) => out.push(h),
            Err(why) => *skipped.entry(why).or_default() += 1,
        }
    }
    (out, skipped)
}

/// The hops rebuilt into traces: `hops[i]` is row `rows[i]` (indices into the parsed rows),
/// with `depth` tokens of history from its trace; both in time order (ties by trace, then
/// position in it).
#[derive(Debug, Clone, PartialEq)]
pub struct Rebuilt {
    pub hops: Vec<Hop<String>>,
    pub rows: Vec<usize>,
    pub traces: usize,
    /// Hops whose context's last service is not the trace's previous service.
    pub mismatches: usize,
}

/// Rebuilds each trace from its hops (see the module docs).
pub fn reconstruct(rows: &[HopRow], depth: usize) -> Rebuilt {
    let mut by_trace: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        by_trace.entry(&r.sequence).or_default().push(i);
    }
    let last_symbol = |c: &[Token<String>]| c.last().and_then(|t| t.symbol().cloned());
    let mut out: Vec<(i64, usize, usize, usize, Hop<String>)> = Vec::with_capacity(rows.len());
    let mut mismatches = 0;
    let traces = by_trace.len();
    for (k, (_, mut members)) in by_trace.into_iter().enumerate() {
        members.sort_by_key(|&i| rows[i].time);
        let mut tokens: Vec<Token<String>> = last_symbol(&rows[members[0]].context)
            .map(Token::Sym)
            .into_iter()
            .collect();
        let mut i = 0;
        while i < members.len() {
            // Among the hops at this hop's millisecond, the one whose context ends where the
            // trace is goes first.
            let t = rows[members[i]].time;
            let end = i + members[i..].iter().take_while(|&&m| rows[m].time == t).count();
            let here = tokens.last().and_then(|t| t.symbol().cloned());
            if let Some(j) = (i..end).find(|&j| here.is_some() && last_symbol(&rows[members[j]].context) == here) {
                members[i..=j].rotate_right(1);
            }
            let row = &rows[members[i]];
            let said = last_symbol(&row.context);
            if i > 0 && said.is_some() && said != here {
                mismatches += 1;
            }
            let hop = Hop {
                time: row.time,
                history: context_of(&tokens, depth),
                next: row.next.clone(),
            };
            out.push((row.time, k, i, members[i], hop));
            tokens.push(Token::Sym(row.next.clone()));
            i += 1;
        }
    }
    out.sort_by_key(|h| (h.0, h.1, h.2));
    Rebuilt {
        rows: out.iter().map(|h| h.3).collect(),
        hops: out.into_iter().map(|h| h.4).collect(),
        traces,
        mismatches,
    }
}

/// What the stage's own predictions scored: `−log₂ probability` (infinite for 0) and whether its
/// `top1` was the service that came.
pub fn model_scores(rows: &[HopRow], order: &[usize]) -> Vec<Scored> {
    order
        .iter()
        .map(|&i| {
            let r = &rows[i];
            scored(r.time, r.probability, r.top1.as_deref() == Some(r.next.as_str()))
        })
        .collect()
}

/// Prequential scoring by tick: every hop at time `t` is predicted by the order-`order` model of
/// the hops at times before `t` (within `window_ms` of `t` when given), then the tick's hops
/// are counted. So no hop's score depends on a hop at its own time or later, as in the stage.
///
/// The vocabulary is `vocabulary` when given (the truth's services); otherwise it is open: the
/// services counted so far and [`UNSEEN`], whose probability a service never seen before gets.
/// A service outside a closed vocabulary gets probability 0 (infinite bits).
pub fn by_tick(
    hops: &[Hop<String>],
    order: usize,
    discount: Discount,
    window_ms: Option<i64>,
    vocabulary: &[String],
) -> Result<Vec<Scored>, MarkovError> {
    let mut counts: Ngrams<String> = Ngrams::new(order);
    let mut live: VecDeque<&Hop<String>> = VecDeque::new();
    let extra: Vec<String> = match vocabulary {
        [] => vec![UNSEEN.to_string()],
        v => v.to_vec(),
    };
    let mut out = Vec::with_capacity(hops.len());
    let mut start = 0;
    while start < hops.len() {
        let t = hops[start].time;
        let end = start + hops[start..].iter().take_while(|h| h.time == t).count();
        if let Some(w) = window_ms {
            while let Some(old) = live.front().filter(|old| old.time + w <= t) {
                counts.add(&old.history, &old.next, -1)?;
                live.pop_front();
            }
        }
        let model = KneserNey::new(&counts, order, discount, extra.iter().cloned())?;
        let unseen = model.vocabulary().binary_search_by(|s| s.as_str().cmp(UNSEEN)).ok();
        for h in &hops[start..end] {
            let d = model.distribution(&h.history);
            let p = match d.binary_search_by(|e| e.0.cmp(&h.next)) {
                Ok(i) => d[i].1,
                Err(_) => unseen.map_or(0.0, |u| d[u].1),
            };
            out.push(scored(h.time, p, most_likely(&d) == Some(&h.next)));
        }
        for h in &hops[start..end] {
            counts.add(&h.history, &h.next, 1)?;
            live.push_back(h);
        }
        start = end;
    }
    Ok(out)
}

/// How long the model took to fit the regime after one change of the truth.
///
/// **Definition.** Let `T` be the change's time, `H_old` and `H_new` the entropy rates of the
/// regimes before and after it, and `n` the window in hops. The *steady ratio* `ρ` is the
/// model's mean log-loss over the last `n` hops before `T` (at or after the previous change)
/// over `H_old`, at least 1 (a model cannot beat the entropy rate for long; a lower ratio is the
/// sample's luck). The model has adapted at the first hop `h`, at or after `T` and before the
/// next change, from which `n` consecutive hops have a mean log-loss of at most
/// `(1 + tolerance) · ρ · H_new`: back within `tolerance` of how close it was before. The
/// adaptation time is `time(h) − T` (and the hops before `h`); none when no such run exists
/// before the next change (or the end).
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeFit {
    pub change: usize,
    pub time_ms: i64,
    pub kind: String,
    pub old_bits: f64,
    pub new_bits: f64,
    /// Hops in the reference window before the change (at most `n`), and `ρ`.
    pub reference_hops: usize,
    pub steady_ratio: f64,
    pub threshold_bits: f64,
    /// Hops between the change and the next one (or the end).
    pub hops_after: usize,
    pub adapted: Option<crate::eval::markov::Adaptation>,
}

/// Applies the definition of [`ChangeFit`] to each change. `scored` is in time order.
pub fn adaptations(
    scored: &[Scored],
    truth: &crate::generate::services::truth::Truth,
    window_hops: usize,
    tolerance: f64,
) -> Vec<ChangeFit> {
    let window_hops = window_hops.max(1);
    let at = |t: i64| scored.partition_point(|s| s.time < t);
    truth
        .changes
        .iter()
        .enumerate()
        .map(|(c, change)| {
            let (old, new) = (&truth.regimes[c], &truth.regimes[(c + 1).min(truth.regimes.len() - 1)]);
            let next = truth.changes.get(c + 1).map_or(i64::MAX, |n| n.time_ms);
            let (from, mid, to) = (at(old.start_ms), at(change.time_ms), at(next));
            let reference = &scored[from.max(mid.saturating_sub(window_hops))..mid];
            let mean = reference.iter().map(|s| s.bits).sum::<f64>() / reference.len() as f64;
            let steady_ratio = match mean / old.entropy_rate_bits {
                r if r.is_finite() => r.max(1.0),
                _ => 1.0,
            };
            let target = steady_ratio * new.entropy_rate_bits;
            let after = &scored[mid..to];
            ChangeFit {
                change: c,
                time_ms: change.time_ms,
                kind: change.kind.clone(),
                old_bits: old.entropy_rate_bits,
                new_bits: new.entropy_rate_bits,
                reference_hops: reference.len(),
                steady_ratio,
                threshold_bits: (1.0 + tolerance) * target,
                hops_after: after.len(),
                adapted: crate::eval::markov::adaptation(after, change.time_ms, target, tolerance, window_hops),
            }
        })
        .collect()
}
