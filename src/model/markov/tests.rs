//! The Markov model's maths: a hand-computed Kneser–Ney example, normalisation, back-off, a known
//! chain recovered, log-loss against the entropy rate, selection, and incremental counts against
//! a from-scratch count (proptest).

use std::collections::BTreeMap;

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

fn seqs(text: &[&str]) -> Vec<Vec<char>> {
    text.iter().map(|s| s.chars().collect()).collect()
}

fn sym(c: char) -> Token<char> {
    Token::Sym(c)
}

/// Hops `a→b`, `a→b`, `c→b`, `a→c`; vocabulary `{a, b, c}`.
///
/// Level 1 (raw): `c(a b) = 2`, `c(a c) = 1`, `c(c b) = 1`; `c(a) = 3`, `N₁₊(a •) = 2`.
/// Level 0 (continuation): `N₁₊(• b) = |{a, c}| = 2`, `N₁₊(• c) = 1`; total 3, 2 types.
/// With `D = ½`: `P₀(b) = 1.5/3 + ½·2/3·⅓ = 11/18`, `P₀(c) = 5/18`, `P₀(a) = 1/9`;
/// `P₁(b|a) = 1.5/3 + ½·2/3·P₀(b) = 19/27`, `P₁(c|a) = 7/27`, `P₁(a|a) = 1/27`,
/// `P₁(b|c) = 0.5/1 + ½·1/1·P₀(b) = 29/36`; the unseen context `b` backs off to `P₀`.
#[test]
fn hand_computed_kneser_ney() {
    let counts = Ngrams::from_sequences(1, &seqs(&["ab", "ab", "cb", "ac"]));
    let kn = KneserNey::new(&counts, 1, Discount::Fixed(0.5), []).unwrap();
    assert_eq!(kn.vocabulary(), ['a', 'b', 'c']);
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    let p = |h: char, w: char| kn.probability(&[sym(h)], &w);
    assert!(close(p('a', 'b'), 19.0 / 27.0));
    assert!(close(p('a', 'c'), 7.0 / 27.0));
    assert!(close(p('a', 'a'), 1.0 / 27.0));
    assert!(close(p('c', 'b'), 29.0 / 36.0));
    for (w, q) in [('b', 11.0 / 18.0), ('c', 5.0 / 18.0), ('a', 1.0 / 9.0)] {
        assert!(close(p('b', w), q), "P(· | b) is P₀");
    }
    // Estimated discounts: level 1 raw counts {2, 1, 1}: n₁ = 2, n₂ = 1, D = 2/4; level 0
    // continuation counts {2, 1}: D = 1/3, so P₀(b) = (5/3)/3 + ⅓·2/3·⅓ = 17/27 and
    // P₁(b|a) = 1.5/3 + ½·2/3·17/27 = 115/162.
    let kn = KneserNey::new(&counts, 1, Discount::Estimated, []).unwrap();
    assert_eq!((kn.discount(1), kn.discount(0)), (0.5, 1.0 / 3.0));
    assert!(close(kn.probability(&[sym('a')], &'b'), 115.0 / 162.0));
    assert!(close(kn.probability(&[sym('b')], &'b'), 17.0 / 27.0));
    // Order 0: raw counts b 3, c 1, so P(b) = 2.5/4 + ½·2/4·⅓.
    let kn = KneserNey::new(&counts, 0, Discount::Fixed(0.5), []).unwrap();
    assert!(close(kn.probability(&[], &'b'), 2.5 / 4.0 + 0.5 * 2.0 / 4.0 / 3.0));
    assert_eq!(kn.probability(&[], &'z'), 0.0);
    let top = KneserNey::new(&counts, 1, Discount::Fixed(0.5), [])
        .unwrap()
        .top_k(&[sym('a')], 2);
    assert_eq!(top.iter().map(|t| t.0).collect::<String>(), "bc");
    let all = KneserNey::new(&counts, 1, Discount::Fixed(0.5), [])
        .unwrap()
        .top_k(&[sym('a')], 10);
    assert_eq!(all.iter().map(|t| t.0).collect::<String>(), "bca");
    assert!(close(all[2].1, 1.0 / 27.0));
    // Ties go to the first symbol: with counts of 1 and D = 1 every count is discounted away,
    // and only the uniform floor is left: `a`, `b` and `c` tie at ⅓.
    let tied = Ngrams::from_sequences(1, &seqs(&["ab", "ac"]));
    let kn = KneserNey::new(&tied, 1, Discount::Fixed(1.0), []).unwrap();
    let top = kn.top_k(&[sym('a')], 2);
    assert_eq!(top.iter().map(|t| t.0).collect::<String>(), "ab");
    assert!(close(top[0].1, 1.0 / 3.0) && close(top[1].1, 1.0 / 3.0));
}

/// A random order-`order` chain over `0..symbols`: every context has a row with 2–4 next
/// symbols (Dirichlet weights) and an end probability of 0.15; the entry draws from `0..3`.
fn random_chain(order: usize, symbols: u8, seed: u64) -> Chain<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rows = BTreeMap::new();
    let mut todo = vec![vec![Token::Start; order]];
    while let Some(c) = todo.pop() {
        if rows.contains_key(&c) {
            continue;
        }
        let entry = c.iter().all(|t| *t == Token::Start);
        let mut next: Vec<u8> = if entry {
            (0..3).collect()
        } else {
            (0..rng.random_range(2..=4))
                .map(|_| rng.random_range(0..symbols))
                .collect()
        };
        next.sort();
        next.dedup();
        let end = if entry { 0.0 } else { 0.15 };
        let w: Vec<f64> = next.iter().map(|_| -rng.random::<f64>().ln()).collect();
        let total: f64 = w.iter().sum();
        let row = Row {
            next: next
                .iter()
                .zip(&w)
                .map(|(s, x)| (*s, (1.0 - end) * x / total))
                .collect(),
            end,
        };
        for s in &next {
            todo.push(chain::shift(&c, s));
        }
        rows.insert(c, row);
    }
    Chain { order, rows }
}

fn draw(chain: &Chain<u8>, n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| chain.sample(&mut rng, 1000)).collect()
}

/// A hop's counts, looked up once in the table, give every order and discount of the grid the
/// probability a direct lookup gives, bit for bit: seen and unseen contexts, short histories,
/// and symbols outside the vocabulary.
#[test]
fn hop_counts_score_like_a_lookup() {
    let chain = random_chain(2, 8, 3);
    let counts = Ngrams::from_sequences(3, &draw(&chain, 200, 4));
    let mut histories: Vec<Vec<Token<u8>>> = counts.level(3).contexts.keys().take(30).cloned().collect();
    histories.push(vec![]);
    histories.push(vec![Token::Sym(5)]);
    histories.push(vec![Token::Start, Token::Sym(99), Token::Sym(3)]);
    let mut next: Vec<u8> = counts.symbols().copied().collect();
    next.extend([42, 99, 200]);
    for h in &histories {
        for w in &next {
            let hop = counts.hop_counts(h, w);
            for order in 0..=3 {
                for discount in Discount::GRID {
                    let kn = KneserNey::new(&counts, order, discount, [42u8, 99]).unwrap();
                    let (direct, once) = (kn.probability(h, w), kn.probability_of(&hop, w));
                    assert_eq!(direct.to_bits(), once.to_bits(), "{order} {discount} {h:?} {w}");
                }
            }
        }
    }
}

/// Every context's distribution sums to 1 over the vocabulary, for every order and discount:
/// seen contexts, unseen ones, contexts of unseen symbols, with extra unseen symbols; and the
/// distribution agrees with `probability`.
#[test]
fn every_distribution_sums_to_one() {
    let chain = random_chain(2, 8, 1);
    let counts = Ngrams::from_sequences(3, &draw(&chain, 300, 2));
    let mut histories: Vec<Vec<Token<u8>>> = counts
        .level(3)
        .contexts
        .keys()
        .cloned()
        .collect::<Vec<_>>()
        .into_iter()
        .take(40)
        .collect();
    histories.push(vec![]);
    histories.push(vec![Token::Sym(7), Token::Sym(7), Token::Sym(7)]);
    histories.push(vec![Token::Sym(99), Token::Sym(42)]);
    for order in 0..=3 {
        for discount in Discount::GRID {
            let kn = KneserNey::new(&counts, order, discount, [42u8, 99]).unwrap();
            for h in &histories {
                let d = kn.distribution(h);
                assert_eq!(d.len(), kn.vocabulary().len());
                let total: f64 = d.iter().map(|e| e.1).sum();
                assert!((total - 1.0).abs() < 1e-12, "order {order} {discount} {h:?}: {total}");
                for (w, p) in &d {
                    assert!(*p > 0.0, "every symbol keeps some mass");
                    assert!((kn.probability(h, w) - p).abs() < 1e-15);
                }
            }
        }
    }
}

/// An unseen context gives exactly the lower order's distribution: two unseen order-2
/// contexts with the same last token agree, and a context unseen at every level is the order-0
/// distribution.
#[test]
fn an_unseen_context_backs_off_to_the_lower_order() {
    let chain = random_chain(2, 6, 3);
    let counts = Ngrams::from_sequences(2, &draw(&chain, 500, 4));
    let kn = KneserNey::new(&counts, 2, Discount::Estimated, [50u8, 51]).unwrap();
    let (a, b) = (Token::Sym(50), Token::Sym(51));
    let seen = counts.level(1).contexts.keys().next().unwrap()[0];
    assert_eq!(kn.distribution(&[a, seen]), kn.distribution(&[b, seen]));
    assert_ne!(kn.distribution(&[a, seen]), kn.distribution(&[a, a]));
    assert_eq!(kn.distribution(&[a, a]), kn.distribution(&[b, b]));
    assert_eq!(kn.distribution(&[b, a]), kn.distribution(&[a, b]));
    // Unseen at levels 2 and 1: the level-0 continuation distribution,
    // `max(N₁₊(• w) − D₀, 0) / N₁₊(• •) + D₀ · N₁₊(•) / N₁₊(• •) / |V|`.
    let root = &counts.level(0).contexts[&[][..]];
    let (total, d) = (root.total_cont as f64, kn.discount(0));
    for (w, p) in kn.distribution(&[a, a]) {
        let cont = root.next.get(&w).map_or(0, |e| e.cont) as f64;
        let want = (cont - d).max(0.0) / total + d * root.types as f64 / total / kn.vocabulary().len() as f64;
        assert!((p - want).abs() < 1e-15, "{w}: {p} vs {want}");
    }
}

/// Counts of a long sample of a known order-2 chain give back its probabilities, and the model's
/// held-out log-loss approaches the chain's entropy rate (order 2 and 3; order 1 cannot).
#[test]
fn a_known_chain_is_recovered_and_its_entropy_rate_approached() {
    let chain = random_chain(2, 8, 5);
    let train = draw(&chain, 150_000, 6);
    let test = draw(&chain, 30_000, 7);
    let counts = Ngrams::from_sequences(3, &train);
    let kn = KneserNey::new(&counts, 2, Discount::Estimated, []).unwrap();
    let visits = chain.hop_weights();
    let mut checked = 0;
    for (context, row) in &chain.rows {
        // Expected hops from the context in the training sample.
        let n = visits.get(context).copied().unwrap_or(0.0) * train.len() as f64;
        if n < 1000.0 {
            continue;
        }
        for (s, _) in &row.next {
            let (p, q) = (row.conditional(s), kn.probability(context, s));
            let tolerance = 4.0 * (p * (1.0 - p) / n).sqrt() + 2e-3;
            assert!((p - q).abs() < tolerance, "{context:?} → {s}: {q} vs {p} ({n} hops)");
            checked += 1;
        }
    }
    assert!(checked > 40, "{checked}");
    let h = chain.entropy_rate_bits();
    for order in [2, 3] {
        let loss = KneserNey::new(&counts, order, Discount::Estimated, [])
            .unwrap()
            .log_loss(&test);
        assert_eq!(loss.unknown, 0);
        let ratio = loss.bits_per_hop() / h;
        assert!(
            (ratio - 1.0).abs() < 0.01,
            "order {order}: {} vs {h}",
            loss.bits_per_hop()
        );
    }
    let first = KneserNey::new(&counts, 1, Discount::Estimated, [])
        .unwrap()
        .log_loss(&test);
    assert!((first.bits_per_hop() / chain.entropy_bits_given(1) - 1.0).abs() < 0.01);
    assert!(first.bits_per_hop() > 1.02 * h, "{} vs {h}", first.bits_per_hop());
}

/// Held-out selection picks order 2 for an order-2 chain, reports every candidate, and errs
/// on an empty held-out set or an order above the counts'.
#[test]
fn selection_by_held_out_log_loss() {
    let chain = random_chain(2, 8, 8);
    let counts = Ngrams::from_sequences(3, &draw(&chain, 50_000, 9));
    let held_out = draw(&chain, 5_000, 10);
    let s = select(&counts, &held_out, 3, &Discount::GRID).unwrap();
    assert_eq!(s.candidates.len(), 15);
    assert!(s.chosen.order >= 2, "{s:?}");
    let best = s
        .candidates
        .iter()
        .map(|c| c.bits_per_hop)
        .fold(f64::INFINITY, f64::min);
    assert_eq!(s.chosen.bits_per_hop, best);
    let first = s.candidates.iter().filter(|c| c.order == 1).map(|c| c.bits_per_hop);
    assert!(first.fold(f64::INFINITY, f64::min) > best * 1.02);
    // Little data of an order-1 chain: order 1 wins.
    let chain = random_chain(1, 8, 11);
    let counts = Ngrams::from_sequences(3, &draw(&chain, 200, 12));
    let s = select(&counts, &draw(&chain, 2_000, 13), 3, &Discount::GRID).unwrap();
    assert_eq!(s.chosen.order, 1, "{s:?}");
    assert_eq!(
        select(&counts, &[vec![1]], 2, &Discount::GRID),
        Err(MarkovError::NoHeldOutHops)
    );
    assert!(matches!(
        select(&counts, &held_out, 4, &Discount::GRID),
        Err(MarkovError::OrderTooHigh { order: 4, max: 3 })
    ));
    assert_eq!(
        KneserNey::new(&counts, 1, Discount::Fixed(0.0), []).unwrap_err(),
        MarkovError::Discount(0.0)
    );
}

#[test]
fn a_retraction_below_zero_is_an_error_and_changes_nothing() {
    let mut counts = Ngrams::from_sequences(2, &seqs(&["abc"]));
    let before = counts.clone();
    let e = counts.add(&[sym('a')], &'b', -2).unwrap_err();
    assert!(e.to_string().contains("retracting 2 from the count 1"), "{e}");
    assert_eq!(counts, before);
    counts.add_sequence(&['a', 'b', 'c'], -1).unwrap();
    assert_eq!(counts, Ngrams::new(2));
    assert_eq!(counts.symbols().count(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Adding and retracting sequences in any order leaves the table a from-scratch count of
    /// what remains holds, with the same probabilities; `counts()` round-trips.
    #[test]
    fn incremental_counts_equal_a_recount(
        ops in prop::collection::vec((prop::collection::vec(0u8..5, 0..7), any::<bool>()), 1..40)
    ) {
        let mut live: Vec<Vec<u8>> = Vec::new();
        let mut counts = Ngrams::new(3);
        for (seq, retract) in ops {
            let position = live.iter().position(|s| *s == seq);
            match (retract, position) {
                (true, Some(i)) => {
                    live.remove(i);
                    counts.add_sequence(&seq, -1).unwrap();
                }
                _ => {
                    counts.add_sequence(&seq, 1).unwrap();
                    live.push(seq);
                }
            }
        }
        let scratch = Ngrams::from_sequences(3, &live);
        prop_assert_eq!(&counts, &scratch);
        let rows = counts.counts();
        let again = Ngrams::from_counts(3, rows.iter().map(|(c, w, n)| (&c[..], w, *n))).unwrap();
        prop_assert_eq!(&again, &scratch);
        for order in 0..=3 {
            let a = KneserNey::new(&counts, order, Discount::Estimated, [9u8]).unwrap();
            let b = KneserNey::new(&scratch, order, Discount::Estimated, [9u8]).unwrap();
            for h in [vec![], vec![Token::Sym(1)], vec![Token::Start, Token::Sym(2), Token::Sym(3)]] {
                prop_assert_eq!(a.distribution(&h), b.distribution(&h));
            }
        }
    }
}
