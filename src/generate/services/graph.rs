//! The `services` scenario's hidden model: the call graph, its regimes, and the order-K chain of
//! each regime. Pure maths from a seed, no I/O.
//!
//! **Graph.** Services `0..N` are named from [`NAMES`]. The first [`ENTRIES`] are entry services
//! (traces start there; nothing calls them). The others get depths 1 to [`DEPTH`] in name order.
//! A service of depth `d < DEPTH` (or an entry) calls 2–5 services (entries 3–6): mostly of
//! depth `d + 1`, a quarter of them deeper, and with probability 0.3 one more of depth `≤ d`
//! (a back edge, so traces can loop). Services of depth [`DEPTH`] call nobody. Every non-entry
//! service has a caller. Out-edge weights are Dirichlet(1).
//!
//! **Chain.** A trace ends after a service with probability `end(s)`: 0 for entries, 1 for
//! services that call nobody, 0.15–0.4 otherwise. For order 1 the row of context `(s)` is
//! `next ∝ weight(s → n)`, scaled to `1 − end(s)`. For order 2 the row of `(p, s)` multiplies
//! each weight by `exp(1.2 z)`, `z` a standard normal drawn from a seed of `(salt(s), p, n)`:
//! where the trace came from changes where it goes. The entry context `(^, …)` draws the first
//! service from the entries' weights. Probabilities are rounded to 6 decimals (and the end is
//! what is left); draws use them as written.
//!
//! **Regimes.** Regime 0 is the graph as drawn; each change makes the next regime:
//! 1. `edge_added`: a busy service (drawn by its traffic) calls a new deeper service, with 1.5
//!    times its mean out-weight;
//! 2. `edge_removed`: a busy edge (drawn by its traffic) whose source calls at least two
//!    services disappears;
//! 3. `probabilities_shifted`: 30% of the services that call others (at least 2) get new
//!    weights and a new salt.

use std::collections::{BTreeMap, BTreeSet};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Exp1, StandardNormal};

use crate::model::markov::chain::shift;
use crate::model::markov::{Chain, Row, Token};

/// Service names, in order; `N` services take the first `N`.
pub const NAMES: [&str; 50] = [
    "gateway",
    "mobile-api",
    "partner-api",
    "auth",
    "sessions",
    "users",
    "catalog",
    "search",
    "profiles",
    "recommendations",
    "pricing",
    "cart",
    "promotions",
    "checkout",
    "orders",
    "inventory",
    "payments",
    "fraud",
    "reviews",
    "shipping",
    "notifications",
    "media",
    "tax",
    "currency",
    "billing",
    "warehouse",
    "ratings",
    "images",
    "tracking",
    "email",
    "sms",
    "push",
    "invoices",
    "ledger",
    "geo",
    "thumbnails",
    "storage",
    "cache",
    "config",
    "feature-flags",
    "analytics",
    "events",
    "audit",
    "reports",
    "export",
    "scheduler",
    "queue",
    "workers",
    "webhooks",
    "ml-features",
];
/// The fewest and most services a scenario has.
pub const MIN_SERVICES: usize = 20;
pub const MAX_SERVICES: usize = NAMES.len();
/// Entry services: the first three.
pub const ENTRIES: usize = 3;
/// The depth of the services that call nobody.
pub const DEPTH: usize = 6;
/// σ of the order-2 modulation `exp(σ z)`.
const MODULATION: f64 = 1.6;

/// One regime's graph: each service's callees with weights, and its modulation salt.
#[derive(Debug, Clone, PartialEq)]
pub struct Regime {
    pub calls: Vec<Vec<(usize, f64)>>,
    pub salt: Vec<u64>,
}

/// What a change did.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    EdgeAdded { source: usize, target: usize },
    EdgeRemoved { source: usize, target: usize },
    ProbabilitiesShifted { services: Vec<usize> },
}

impl Change {
    pub fn kind(&self) -> &'static str {
        match self {
            Change::EdgeAdded { .. } => "edge_added",
            Change::EdgeRemoved { .. } => "edge_removed",
            Change::ProbabilitiesShifted { .. } => "probabilities_shifted",
        }
    }
}

/// The scenario's model: the graph and the chain of every regime.
#[derive(Debug, Clone)]
pub struct Model {
    pub order: usize,
    pub names: Vec<String>,
    pub depth: Vec<usize>,
    /// `end(s)`.
    pub end: Vec<f64>,
    /// The entries' weights for the first service.
    pub entry_weights: Vec<f64>,
    seed: u64,
    pub regimes: Vec<Regime>,
    /// `changes[i]` turns regime `i` into regime `i + 1`.
    pub changes: Vec<Change>,
    /// The chain of every regime, each with a row for every context any trace can reach, even
    /// one that crosses a change.
    pub chains: Vec<Chain<usize>>,
}

fn r6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6 + 0.0
}

/// Dirichlet(1) weights of `n` parts.
fn dirichlet(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    let x: Vec<f64> = (0..n).map(|_| rng.sample::<f64, _>(Exp1)).collect();
    let total: f64 = x.iter().sum();
    x.iter().map(|v| v / total).collect()
}

/// Draws an index with probability proportional to `weights` (the last positive one when
/// rounding leaves `u` past the end).
pub fn pick(weights: &[f64], u: f64) -> usize {
    let mut x = u * weights.iter().sum::<f64>();
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
}

impl Model {
    /// Draws the graph of `n` services and its regimes from `seed`.
    pub fn draw(seed: u64, n: usize, order: usize) -> Model {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7365_7276_6963_6573);
        let depth: Vec<usize> = (0..n)
            .map(|i| match i {
                i if i < ENTRIES => 0,
                i => 1 + (i - ENTRIES) * DEPTH / (n - ENTRIES),
            })
            .collect();
        let at = |d: usize| -> Vec<usize> { (ENTRIES..n).filter(|&s| depth[s] == d).collect() };
        let mut targets: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
        for s in 0..n {
            let d = depth[s];
            if d == DEPTH {
                continue;
            }
            let degree = if d == 0 {
                rng.random_range(4..=7)
            } else {
                rng.random_range(3..=6)
            };
            for _ in 0..degree {
                let deeper = rng.random::<f64>() < 0.3 && d + 2 <= DEPTH;
                let layer = if deeper {
                    at(rng.random_range(d + 2..=DEPTH))
                } else {
                    at(d + 1)
                };
                targets[s].insert(layer[rng.random_range(0..layer.len())]);
            }
            let back: Vec<usize> = (ENTRIES..n).filter(|&t| depth[t] <= d && t != s).collect();
            while d > 0 && rng.random::<f64>() < 0.4 {
                targets[s].insert(back[rng.random_range(0..back.len())]);
            }
        }
        for t in ENTRIES..n {
            if !targets.iter().any(|ts| ts.contains(&t)) {
                let callers: Vec<usize> = (0..n).filter(|&s| depth[s] + 1 == depth[t]).collect();
                targets[callers[rng.random_range(0..callers.len())]].insert(t);
            }
        }
        let calls: Vec<Vec<(usize, f64)>> = targets
            .iter()
            .map(|ts| ts.iter().copied().zip(dirichlet(&mut rng, ts.len())).collect())
            .collect();
        let end = (0..n)
            .map(|s| match depth[s] {
                0 => 0.0,
                DEPTH => 1.0,
                _ => r6(rng.random_range(0.08..0.25)),
            })
            .collect();
        let entry_weights = dirichlet(&mut rng, ENTRIES);
        let salt = (0..n).map(|_| rng.random()).collect();
        let mut model = Model {
            order,
            names: NAMES[..n].iter().map(|s| s.to_string()).collect(),
            depth,
            end,
            entry_weights,
            seed,
            regimes: vec![Regime { calls, salt }],
            changes: Vec::new(),
            chains: Vec::new(),
        };
        for step in 0..3 {
            let current = model.regimes.last().expect("regime 0").clone();
            let chain = model.chain(&current, &model.closure(&[&current]));
            let (change, next) = model.change(step, &current, &chain, &mut rng);
            model.changes.push(change);
            model.regimes.push(next);
        }
        let all: Vec<&Regime> = model.regimes.iter().collect();
        let contexts = model.closure(&all);
        model.chains = model.regimes.iter().map(|r| model.chain(r, &contexts)).collect();
        model
    }

    /// Change `step` (0, 1, 2) of `regime`, drawn by the traffic of its `chain`.
    fn change(&self, step: usize, regime: &Regime, chain: &Chain<usize>, rng: &mut ChaCha8Rng) -> (Change, Regime) {
        let n = self.names.len();
        let mut next = regime.clone();
        let edges = chain.edge_visits();
        let mut traffic = vec![0.0; n];
        for ((a, _), v) in &edges {
            traffic[*a] += v;
        }
        let change = match step {
            0 => {
                // A deeper service the source does not call yet.
                let candidates = |s: usize| -> Vec<usize> {
                    (ENTRIES..n)
                        .filter(|&t| self.depth[t] > self.depth[s] && regime.calls[s].iter().all(|(c, _)| *c != t))
                        .collect()
                };
                let busy: Vec<f64> = (0..n)
                    .map(|s| match self.depth[s] {
                        d if d == 0 || d + 1 >= DEPTH || candidates(s).is_empty() => 0.0,
                        _ => traffic[s],
                    })
                    .collect();
                let source = pick(&busy, rng.random());
                let candidates = candidates(source);
                let target = candidates[rng.random_range(0..candidates.len())];
                let calls = &mut next.calls[source];
                let mean = calls.iter().map(|c| c.1).sum::<f64>() / calls.len() as f64;
                calls.push((target, 1.5 * mean));
                calls.sort_by_key(|c| c.0);
                Change::EdgeAdded { source, target }
            }
            1 => {
                let added = match self.changes.first() {
                    Some(Change::EdgeAdded { source, target }) => Some((*source, *target)),
                    _ => None,
                };
                let eligible: Vec<((usize, usize), f64)> = edges
                    .iter()
                    .filter(|((a, b), _)| regime.calls[*a].len() >= 2 && Some((*a, *b)) != added)
                    .map(|(e, v)| (*e, *v))
                    .collect();
                let weights: Vec<f64> = eligible.iter().map(|e| e.1).collect();
                let (source, target) = eligible[pick(&weights, rng.random())].0;
                next.calls[source].retain(|(c, _)| *c != target);
                Change::EdgeRemoved { source, target }
            }
            _ => {
                let callers: Vec<usize> = (ENTRIES..n).filter(|&s| !regime.calls[s].is_empty()).collect();
                let count = (callers.len() * 3 / 10).max(2).min(callers.len());
                let mut chosen: Vec<usize> = callers.clone();
                for i in 0..count {
                    let j = rng.random_range(i..chosen.len());
                    chosen.swap(i, j);
                }
                chosen.truncate(count);
                chosen.sort();
                for &s in &chosen {
                    let weights = dirichlet(rng, next.calls[s].len());
                    for (c, w) in next.calls[s].iter_mut().zip(weights) {
                        c.1 = w;
                    }
                    next.salt[s] = rng.random();
                }
                Change::ProbabilitiesShifted { services: chosen }
            }
        };
        (change, next)
    }

    /// The row of `context` in `regime`.
    pub fn row(&self, regime: &Regime, context: &[Token<usize>]) -> Row<usize> {
        let Some(Token::Sym(s)) = context.last() else {
            let next = (0..ENTRIES).map(|e| (e, r6(self.entry_weights[e]))).collect();
            return Row { next, end: 0.0 };
        };
        let calls = &regime.calls[*s];
        let end = if calls.is_empty() { 1.0 } else { self.end[*s] };
        let previous = match context.len() {
            0 | 1 => None,
            k => Some(context[k - 2]),
        };
        let weights: Vec<f64> = calls
            .iter()
            .map(|(n, w)| match previous {
                None => *w,
                Some(p) => w * (MODULATION * self.normal(regime.salt[*s], p, *n)).exp(),
            })
            .collect();
        let total: f64 = weights.iter().sum();
        let next: Vec<(usize, f64)> = calls
            .iter()
            .zip(&weights)
            .map(|((n, _), w)| (*n, r6((1.0 - end) * w / total)))
            .filter(|(_, p)| *p > 0.0)
            .collect();
        let end = r6(1.0 - next.iter().map(|e| e.1).sum::<f64>()).max(0.0);
        Row { next, end }
    }

    /// A standard normal drawn from `(salt, previous, next)`.
    fn normal(&self, salt: u64, previous: Token<usize>, next: usize) -> f64 {
        let p = match previous {
            Token::Start => 0,
            Token::Sym(p) => p as u64 + 1,
        };
        let key = self.seed
            ^ salt
            ^ p.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ (next as u64).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        ChaCha8Rng::seed_from_u64(key).sample(StandardNormal)
    }

    /// Every context reachable from the entry when any of `regimes` may apply at each step.
    fn closure(&self, regimes: &[&Regime]) -> BTreeSet<Vec<Token<usize>>> {
        let entry = vec![Token::Start; self.order];
        let mut seen = BTreeSet::from([entry.clone()]);
        let mut todo = vec![entry];
        while let Some(context) = todo.pop() {
            for regime in regimes {
                for (s, _) in self.row(regime, &context).next {
                    let next = shift(&context, &s);
                    if seen.insert(next.clone()) {
                        todo.push(next);
                    }
                }
            }
        }
        seen
    }

    /// The chain of `regime` with a row for each of `contexts`.
    fn chain(&self, regime: &Regime, contexts: &BTreeSet<Vec<Token<usize>>>) -> Chain<usize> {
        let rows: BTreeMap<_, _> = contexts.iter().map(|c| (c.clone(), self.row(regime, c))).collect();
        Chain {
            order: self.order,
            rows,
        }
    }

    /// Every edge of any regime, sorted.
    pub fn edges(&self) -> Vec<(usize, usize)> {
        let set: BTreeSet<(usize, usize)> = self
            .regimes
            .iter()
            .flat_map(|r| {
                r.calls
                    .iter()
                    .enumerate()
                    .flat_map(|(s, c)| c.iter().map(move |(t, _)| (s, *t)))
            })
            .collect();
        set.into_iter().collect()
    }
}
