//! Choosing the order and the discount by held-out log-loss: every order `1..=max_order` with
//! every discount of a grid, each scored on the same held-out hops, the lowest loss chosen
//! (ties go to the lower order, then to the earlier discount in the grid).

use std::fmt::Debug;
use std::hash::Hash;

use serde::Serialize;

use super::counts::Ngrams;
use super::kneser_ney::{Discount, KneserNey};
use super::MarkovError;

/// One order and discount, and its held-out loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Candidate {
    pub order: usize,
    pub discount: Discount,
    pub bits_per_hop: f64,
}

/// The chosen candidate, and every candidate's loss in the order tried.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Selection {
    pub chosen: Candidate,
    pub candidates: Vec<Candidate>,
    /// The held-out hops scored.
    pub hops: u64,
}

/// Scores each order `1..=max_order` and discount of `grid` on the hops of `held_out`, with the
/// counts of `train` (whose order must be at least `max_order`). The vocabulary is the train
/// symbols and the held-out ones, so every candidate scores every hop.
pub fn select<S: Clone + Ord + Hash + Debug>(
    train: &Ngrams<S>,
    held_out: &[Vec<S>],
    max_order: usize,
    grid: &[Discount],
) -> Result<Selection, MarkovError> {
    let extra: Vec<S> = held_out.iter().flatten().cloned().collect();
    let mut candidates = Vec::new();
    let mut hops = 0;
    for order in 1..=max_order {
        for &discount in grid {
            let model = KneserNey::new(train, order, discount, extra.iter().cloned())?;
            let loss = model.log_loss(held_out);
            hops = loss.hops;
            candidates.push(Candidate {
                order,
                discount,
                bits_per_hop: loss.bits_per_hop(),
            });
        }
    }
    if hops == 0 {
        return Err(MarkovError::NoHeldOutHops);
    }
    let chosen = *candidates
        .iter()
        .reduce(|best, c| if c.bits_per_hop < best.bits_per_hop { c } else { best })
        .ok_or(MarkovError::NoCandidates)?;
    Ok(Selection {
        chosen,
        candidates,
        hops,
    })
}
