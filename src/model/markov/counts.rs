//! The count tables of an n-gram model, kept incrementally: every `(context, next)` count of
//! every order `0..=K`, the continuation counts Kneser–Ney's lower orders use, and the counts of
//! counts its discounts are estimated from. Adding and retracting a hop costs `O(K)` hash
//! updates, so a dataflow can keep the table current as its window moves.
//!
//! For a hop `h w` (`h` the last `K` tokens before `w`, padded with [`Token::Start`]), level `j`
//! holds, for the context `hⱼ` (the last `j` tokens of `h`):
//! - `count(hⱼ w)`: the number of hops with that context and next symbol (the raw count);
//! - `cont(hⱼ w) = N₁₊(• hⱼ w)`, for `j < K`: the number of distinct tokens `v` with
//!   `count(v hⱼ w) > 0` at level `j + 1` (the continuation count);
//! - per context: the totals of both, and the number of distinct next symbols `N₁₊(hⱼ •)`;
//! - per level: how many raw and continuation counts are 1 and 2 (`n₁`, `n₂`).
//!
//! Entries and contexts whose counts fall to zero are removed, so the table holds exactly what
//! a from-scratch count of the current hops holds.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;

use rustc_hash::{FxBuildHasher, FxHashMap};

use super::{MarkovError, Token};

/// One `(context, next)` entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entry {
    pub count: u64,
    pub cont: u64,
}

/// One context's followers and totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node<S: Eq + Hash> {
    pub next: FxHashMap<S, Entry>,
    /// `Σ_w count(h w)` and `Σ_w cont(h w)`.
    pub total: u64,
    pub total_cont: u64,
    /// `N₁₊(h •)`: the next symbols with a positive raw count (with padding, the same as those
    /// with a positive continuation count, below the top level).
    pub types: u64,
}

impl<S: Eq + Hash> Default for Node<S> {
    fn default() -> Self {
        Node {
            next: FxHashMap::default(),
            total: 0,
            total_cont: 0,
            types: 0,
        }
    }
}

impl<S: Eq + Hash> Node<S> {
    /// What this context holds for a hop of `next` (none: the totals, with a zero entry).
    pub fn seen(&self, next: Option<&S>) -> Seen {
        Seen {
            total: self.total,
            total_cont: self.total_cont,
            types: self.types,
            entry: next.and_then(|w| self.next.get(w)).copied().unwrap_or_default(),
        }
    }
}

/// The contexts of one length, by their tokens (looked up and inserted by slice, so a present
/// context costs one lookup and no key).
pub type Contexts<S> = hashbrown::HashMap<Vec<Token<S>>, Node<S>, FxBuildHasher>;

/// The contexts of one length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level<S: Eq + Hash> {
    pub contexts: Contexts<S>,
    /// `[n₁, n₂]` of the raw counts and of the continuation counts.
    pub raw_small: [u64; 2],
    pub cont_small: [u64; 2],
}

impl<S: Eq + Hash> Default for Level<S> {
    fn default() -> Self {
        Level {
            contexts: Contexts::default(),
            raw_small: [0; 2],
            cont_small: [0; 2],
        }
    }
}

/// Moves a count from `old` to `new` in counts of counts `[n₁, n₂]`.
fn recount(small: &mut [u64; 2], old: u64, new: u64) {
    if (1..=2).contains(&old) {
        small[old as usize - 1] -= 1;
    }
    if (1..=2).contains(&new) {
        small[new as usize - 1] += 1;
    }
}

/// The node of context `h`, inserted when missing (without allocating a key when present).
fn node_mut<'a, S: Clone + Eq + Hash>(contexts: &'a mut Contexts<S>, h: &[Token<S>]) -> &'a mut Node<S> {
    contexts.entry_ref(h).or_default()
}

/// The entry of `next`, inserted when missing.
fn entry_mut<'a, S: Clone + Eq + Hash>(next: &'a mut FxHashMap<S, Entry>, w: &S) -> &'a mut Entry {
    if !next.contains_key(w) {
        next.insert(w.clone(), Entry::default());
    }
    next.get_mut(w).expect("inserted")
}

/// `count + diff`, or `None` when it would be negative.
fn apply(count: u64, diff: i64) -> Option<u64> {
    count.checked_add_signed(diff)
}

/// What one level of a table holds for a hop: its context's totals and types, and the next
/// symbol's entry (zero when the context never had it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub total: u64,
    pub total_cont: u64,
    pub types: u64,
    pub entry: Entry,
}

/// What a hop's probability reads from a table, at every level `0..=order` of the table (`None`
/// where its context was never seen). It does not depend on the model's order (up to the
/// table's) or discount, so a grid of models over one table looks a hop up once
/// ([`super::KneserNey::probability_of`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopCounts {
    pub levels: Vec<Option<Seen>>,
}

/// Every count of an n-gram model up to context length `order` (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ngrams<S: Eq + Hash> {
    order: usize,
    /// `levels[j]` holds the contexts of length `j`.
    levels: Vec<Level<S>>,
    /// How many counted hops mention each symbol (as next or in the context).
    symbols: BTreeMap<S, u64>,
}

/// The last `order` tokens of `history`, padded on the left with [`Token::Start`].
pub fn context_of<S: Clone>(history: &[Token<S>], order: usize) -> Vec<Token<S>> {
    let mut out = vec![Token::Start; order.saturating_sub(history.len())];
    out.extend_from_slice(&history[history.len().saturating_sub(order)..]);
    out
}

/// The hops of `sequence`: for each symbol after the first, its context of `order` tokens.
pub fn hops<S: Clone>(sequence: &[S], order: usize) -> Vec<(Vec<Token<S>>, S)> {
    let tokens: Vec<Token<S>> = sequence.iter().cloned().map(Token::Sym).collect();
    (1..sequence.len())
        .map(|i| (context_of(&tokens[..i], order), sequence[i].clone()))
        .collect()
}

impl<S: Clone + Ord + Hash + Debug> Ngrams<S> {
    /// An empty table of contexts up to length `order`.
    pub fn new(order: usize) -> Ngrams<S> {
        Ngrams {
            order,
            levels: (0..=order).map(|_| Level::default()).collect(),
            symbols: BTreeMap::new(),
        }
    }

    /// The table of `rows` of top-order counts `(context, next, count)`, as a dataflow's count
    /// collection holds them. Rows of the same hop add up.
    pub fn from_counts<'a>(
        order: usize,
        rows: impl IntoIterator<Item = (&'a [Token<S>], &'a S, u64)>,
    ) -> Result<Ngrams<S>, MarkovError>
    where
        S: 'a,
    {
        let mut out = Ngrams::new(order);
        for (context, next, count) in rows {
            out.add(context, next, i64::try_from(count).unwrap_or(i64::MAX))?;
        }
        Ok(out)
    }

    /// The table of every hop of `sequences`.
    pub fn from_sequences(order: usize, sequences: &[Vec<S>]) -> Ngrams<S> {
        let mut out = Ngrams::new(order);
        for s in sequences {
            out.add_sequence(s, 1).expect("adding never fails");
        }
        out
    }

    /// The longest context kept.
    pub fn order(&self) -> usize {
        self.order
    }

    pub fn level(&self, j: usize) -> &Level<S> {
        &self.levels[j]
    }

    /// The symbols of the counted hops, sorted.
    pub fn symbols(&self) -> impl Iterator<Item = &S> {
        self.symbols.keys()
    }

    /// The number of hops counted.
    pub fn hops(&self) -> u64 {
        self.levels[0].contexts.get(&[][..]).map_or(0, |n| n.total)
    }

    /// The counts of the hop `next` after `history` at every level (see [`HopCounts`]).
    pub fn hop_counts(&self, history: &[Token<S>], next: &S) -> HopCounts {
        let context = context_of(history, self.order);
        let levels = (0..=self.order)
            .map(|j| {
                let node = self.levels[j].contexts.get(&context[self.order - j..])?;
                Some(node.seen(Some(next)))
            })
            .collect();
        HopCounts { levels }
    }

    /// Adds `diff` (negative: retracts) hops of `next` after `history` (its last `order` tokens,
    /// padded with [`Token::Start`] when shorter). A retraction below zero changes nothing and
    /// is an error.
    pub fn add(&mut self, history: &[Token<S>], next: &S, diff: i64) -> Result<(), MarkovError> {
        if diff == 0 {
            return Ok(());
        }
        let context = context_of(history, self.order);
        let top = self.levels[self.order]
            .contexts
            .get(&context)
            .and_then(|n| n.next.get(next))
            .map_or(0, |e| e.count);
        if apply(top, diff).is_none() {
            return Err(MarkovError::NegativeCount {
                context: format!("{context:?}"),
                next: format!("{next:?}"),
                count: top,
                diff,
            });
        }
        for j in (0..=self.order).rev() {
            let h = &context[self.order - j..];
            let level = &mut self.levels[j];
            let node = node_mut(&mut level.contexts, h);
            let entry = entry_mut(&mut node.next, next);
            let old = entry.count;
            let new = apply(old, diff).expect("lower counts are sums of the top ones");
            entry.count = new;
            node.total = apply(node.total, diff).expect("a total is a sum of counts");
            recount(&mut level.raw_small, old, new);
            let crossed = (old == 0) != (new == 0);
            if crossed {
                node.types = if new > 0 { node.types + 1 } else { node.types - 1 };
            }
            if crossed && j > 0 {
                let step = if new > 0 { 1 } else { -1 };
                let lower = &mut self.levels[j - 1];
                let node = node_mut(&mut lower.contexts, &h[1..]);
                let entry = entry_mut(&mut node.next, next);
                let old = entry.cont;
                entry.cont = apply(old, step).expect("a continuation count follows its counts");
                node.total_cont = apply(node.total_cont, step).expect("a total is a sum");
                recount(&mut lower.cont_small, old, entry.cont);
            }
        }
        // Only a retraction empties entries and contexts.
        for j in (0..=self.order).filter(|_| diff < 0) {
            let h = &context[self.order - j..];
            let level = &mut self.levels[j];
            let Some(node) = level.contexts.get_mut(h) else {
                continue;
            };
            if node.next.get(next).is_some_and(|e| e.count == 0) {
                node.next.remove(next);
            }
            if node.next.is_empty() {
                level.contexts.remove(h);
            }
        }
        let mentioned = context.iter().filter_map(Token::symbol).chain([next]);
        for s in mentioned {
            let n = self.symbols.entry(s.clone()).or_default();
            *n = apply(*n, diff).expect("mentions are at least the hop's count");
            if *n == 0 {
                self.symbols.remove(s);
            }
        }
        Ok(())
    }

    /// Adds (or with a negative `diff`, retracts) every hop of `sequence`.
    pub fn add_sequence(&mut self, sequence: &[S], diff: i64) -> Result<(), MarkovError> {
        for (context, next) in hops(sequence, self.order) {
            self.add(&context, &next, diff)?;
        }
        Ok(())
    }

    /// The top-order counts `(context, next, count)`, sorted: what [`Ngrams::from_counts`] reads.
    pub fn counts(&self) -> Vec<(Vec<Token<S>>, S, u64)> {
        let mut out: Vec<_> = self.levels[self.order]
            .contexts
            .iter()
            .flat_map(|(h, node)| node.next.iter().map(move |(w, e)| (h.clone(), w.clone(), e.count)))
            .filter(|r| r.2 > 0)
            .collect();
        out.sort();
        out
    }
}
