//! Markov models of symbol sequences (services called one after another by a trace), pure maths
//! with no timely imports.
//!
//! - [`Token`]: a symbol, or the start padding before a sequence's first symbol.
//! - [`chain`]: a *known* order-K chain with an end: entropy rate, Bayes accuracy (the
//!   generator's hidden chain and the evaluation's truth).
//!
//! Conventions shared by every part: a sequence `s₀ s₁ … sₙ` is padded on the left with
//! [`Token::Start`], and each `sᵢ` with `i ≥ 1` is predicted from the `k` tokens before it (the
//! order-`k` context). `s₀` is never predicted: it is known when the sequence is first seen.

pub mod chain;

use serde::{Deserialize, Serialize};

pub use chain::{Chain, Row};

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
