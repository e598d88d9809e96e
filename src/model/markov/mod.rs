//! Markov models of symbol sequences (the services a trace calls, one after another), pure maths
//! with no timely imports.
//!
//! - [`Token`]: a symbol, or the start padding before a sequence's first symbol.
//! - [`counts`]: [`Ngrams`], the count tables of every order up to `K`, kept incrementally
//!   (hops added and retracted as a window moves).
//! - [`kneser_ney`]: [`KneserNey`], smoothed probabilities from the current counts:
//!   `probability`, `distribution`, `top_k`, `log_loss`.
//! - [`select`]: the order and discount chosen by held-out log-loss.
//! - [`mixture`]: [`mixture::FixedShare`], models over windows of different lengths mixed by
//!   their recent log-loss.
//! - [`chain`]: a *known* order-K chain with an end: entropy rate, Bayes accuracy (the
//!   generator's hidden chain and the evaluation's truth).
//!
//! **Conventions.** A sequence `s₀ s₁ … sₙ` is padded on the left with [`Token::Start`]; each
//! `sᵢ` with `i ≥ 1` is a *hop*, predicted from the `k` tokens before it (its order-`k`
//! context). `s₀` is never predicted: it is known when the sequence is first seen. So the
//! first hop of a trace that started at `gateway` has the order-2 context `(^, gateway)`.
//!
//! **Smoothing: interpolated Kneser–Ney** (Chen & Goodman, *An empirical study of smoothing
//! techniques for language modeling*, 1998, §2.7 and §3). For an order-`k` model, with `h` the
//! last `k` tokens, `h'` the last `k − 1`, and `D` the level's discount:
//!
//! ```text
//! P(w | h) = max(c(h w) − D, 0) / c(h)  +  D · N₁₊(h •) / c(h) · P_lower(w | h')
//! ```
//!
//! - At the top level `c` is the raw count. Every lower level uses the same formula with
//!   *continuation* counts `c(h w) = N₁₊(• h w)`, the number of distinct tokens seen before
//!   `h w`. The bottom (`h` empty) interpolates with the uniform distribution over the
//!   vocabulary `V`: `P_lower = 1 / |V|`.
//! - A context never seen (`c(h) = 0`) is skipped: `P(w | h) = P_lower(w | h')`, the back-off.
//! - Each level's mass sums to 1 over `V` because `D ≤ 1 ≤` every positive count: the
//!   discounted counts leave exactly `D · N₁₊(h •) / c(h)` for the lower order.
//! - `D` is fixed, or estimated per level as `n₁ / (n₁ + 2 n₂)` (Ney, Essen & Kneser 1994)
//!   from the counts of counts the level uses.
//!
//! Why Kneser–Ney rather than Witten–Bell: order-2 and order-3 contexts over 50 services are
//! sparse (125,000 order-3 contexts, most seen a few times), so how the lower orders are built
//! matters most. KN's continuation counts give a service that only ever follows one caller
//! little weight in the lower order, instead of weight in proportion to its raw frequency.
//! This is the best-performing method in Chen & Goodman's comparison, for sparse and dense
//! counts alike. Its one parameter, `D`, has a closed-form estimate. Witten–Bell needs no
//! parameter and handles tiny counts well, but its lower orders use raw frequencies. The order
//! and `D` are re-chosen by held-out log-loss anyway ([`select()`]).
//!
//! **Incremental use.** The probabilities are a function of the count tables only. A dataflow
//! keeps the top-order counts `(context, next) → count` as a collection over a sliding window
//! (retractions included), and feeds the changes to [`Ngrams::add`] or rebuilds with
//! [`Ngrams::from_counts`]. Either way the table equals a from-scratch count of the hops in the
//! window, and a [`KneserNey`] view over it gives the current probabilities.

pub mod chain;
pub mod counts;
pub mod kneser_ney;
pub mod mixture;
pub mod select;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use chain::{Chain, Row};
pub use counts::{context_of, hops, HopCounts, Ngrams};
pub use kneser_ney::{Discount, KneserNey, LogLoss};
pub use select::{select, Candidate, Selection};

/// A symbol of a sequence, or the padding before its first symbol. `Start` sorts first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Token<S> {
    Start,
    Sym(S),
}

impl<S> Token<S> {
    pub fn symbol(&self) -> Option<&S> {
        match self {
            Token::Start => None,
            Token::Sym(s) => Some(s),
        }
    }
}

/// Why a model could not be built or counts could not change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MarkovError {
    #[error("order {order} is above the counts' order {max}")]
    OrderTooHigh { order: usize, max: usize },
    #[error("discount {0} is outside (0, 1]")]
    Discount(f64),
    #[error("retracting {} from the count {count} of `{next}` after {context} would make it negative", -diff)]
    NegativeCount {
        context: String,
        next: String,
        count: u64,
        diff: i64,
    },
    #[error("the held-out sequences have no hop (every one is shorter than two symbols)")]
    NoHeldOutHops,
    #[error("no order and discount to choose from")]
    NoCandidates,
}
