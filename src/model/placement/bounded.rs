//! Consistent hashing with bounded loads (Mirrokni, Thorup and Zadimoghaddam, "Consistent
//! Hashing with Bounded Loads", SODA 2018) over a weighted [`Ring`].
//!
//! Placing `m` distinct keys, region `i` of weight `wᵢ` (total `W`) takes at most
//! `cᵢ = ceil((1+ε)·m·wᵢ/W)` of them; with equal weights that is the paper's `ceil((1+ε)·m/n)`.
//! Keys are placed one at a time in increasing key order: each starts at its ring position and
//! walks clockwise past points of regions already at capacity. Since `Σ cᵢ ≥ (1+ε)·m > m`, every
//! walk ends, and no region ever holds more than its cap. The result depends only on the set of
//! keys, the regions and `ε`, not on the order they are given in.
//!
//! What moves when a region is added or removed: `m` is fixed but every cap changes, so besides
//! the keys that move into the new region (or out of the removed one), keys that overflowed may
//! now fit, or fit elsewhere, and the chains of overflow after them shift: keys also move
//! between old regions. The paper bounds the expected moves per change by `O(1/ε²)` times the
//! minimum; the README's "Placement" table gives measured figures, and
//! `property_tests::bounded_moves_are_bounded` checks them. With `ε` large enough that no
//! region fills (`cᵢ ≥ m`), the placement is the ring's exactly.

use super::{key_hash_u64, sorted_distinct, Assignment, PlacementError, Region, Ring};

/// A ring plus a spare-capacity factor `epsilon`.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounded {
    ring: Ring,
    epsilon: f64,
}

impl Bounded {
    /// Regions with `vnodes` ring points per unit of weight, and spare capacity `epsilon > 0`.
    pub fn new(regions: Vec<Region>, vnodes: u32, epsilon: f64) -> Result<Self, PlacementError> {
        if !(epsilon.is_finite() && epsilon > 0.0 && epsilon <= 1000.0) {
            return Err(PlacementError::BadEpsilon(epsilon));
        }
        Ok(Bounded {
            ring: Ring::new(regions, vnodes)?,
            epsilon,
        })
    }

    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }

    /// Each region's cap when `m` keys are placed: `ceil((1+ε)·m·wᵢ/W)`, by region index.
    pub fn capacities(&self, m: usize) -> Vec<usize> {
        let regions = self.ring.regions();
        // Summed in increasing order so that the total does not depend on the regions' order.
        let mut weights: Vec<f64> = regions.iter().map(|r| r.weight).collect();
        weights.sort_unstable_by(f64::total_cmp);
        let total: f64 = weights.iter().sum();
        let mut caps: Vec<usize> = regions
            .iter()
            .map(|r| ((1.0 + self.epsilon) * m as f64 * r.weight / total).ceil() as usize)
            .collect();
        // Σ cᵢ ≥ (1+ε)·m in exact arithmetic; should rounding ever say otherwise, the missing
        // slots go to regions in name order, so that every walk still ends.
        let mut short = m.saturating_sub(caps.iter().sum());
        let mut by_name: Vec<usize> = (0..regions.len()).collect();
        by_name.sort_unstable_by(|&a, &b| regions[a].name.cmp(&regions[b].name));
        for &i in by_name.iter().cycle() {
            if short == 0 {
                break;
            }
            caps[i] += 1;
            short -= 1;
        }
        caps
    }

    /// Places the distinct `keys` (duplicates count once) in increasing key order.
    pub fn assign(&self, keys: &[u64]) -> Assignment {
        let keys = sorted_distinct(keys);
        let caps = self.capacities(keys.len());
        let mut loads = vec![0usize; caps.len()];
        let points = self.ring.points();
        let regions = keys
            .iter()
            .map(|&k| {
                let mut p = self.ring.point_at(key_hash_u64(k));
                loop {
                    let r = self.ring.owner(p);
                    if loads[r] < caps[r] {
                        loads[r] += 1;
                        return r as u32;
                    }
                    p = if p + 1 == points { 0 } else { p + 1 };
                }
            })
            .collect();
        Assignment::from_parts(keys, regions, loads)
    }

    pub fn add_region(&mut self, region: Region) -> Result<(), PlacementError> {
        self.ring.add_region(region)
    }

    pub fn remove_region(&mut self, name: &str) -> Result<(), PlacementError> {
        self.ring.remove_region(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn equal(n: usize) -> Vec<Region> {
        (0..n).map(|i| Region::new(format!("r{i}"), 1.0)).collect()
    }

    #[test]
    fn capacities_follow_the_formula() {
        let b = Bounded::new(equal(3), 16, 0.25).unwrap();
        assert_eq!(b.capacities(10), vec![5, 5, 5], "ceil(1.25 · 10 / 3) = ceil(4.17)");
        assert_eq!(b.capacities(0), vec![0, 0, 0]);
        let w = Bounded::new(vec![Region::new("a", 1.0), Region::new("b", 3.0)], 16, 0.5).unwrap();
        assert_eq!(
            w.capacities(100),
            vec![38, 113],
            "ceil(1.5 · 100 · ¼), ceil(1.5 · 100 · ¾)"
        );
    }

    #[test]
    fn no_region_holds_more_than_its_cap() {
        // One point each and a tiny epsilon: the walks are long and the caps bind.
        let b = Bounded::new(equal(5), 1, 0.01).unwrap();
        let keys: Vec<u64> = (0..10_007).collect();
        let a = b.assign(&keys);
        let cap = (1.01f64 * 10_007.0 / 5.0).ceil() as usize;
        assert_eq!(a.len(), 10_007);
        assert!(a.loads().iter().all(|&l| l <= cap), "{:?} > {cap}", a.loads());
        assert_eq!(a.loads().iter().sum::<usize>(), 10_007);
    }

    #[test]
    fn a_large_epsilon_is_the_ring() {
        let b = Bounded::new(equal(4), 32, 10.0).unwrap();
        let keys: Vec<u64> = (0..5000).collect();
        let a = b.assign(&keys);
        for (k, r) in a.iter() {
            assert_eq!(r, b.ring().home(k));
        }
    }

    #[test]
    fn epsilon_must_be_positive() {
        for eps in [0.0, -0.5, f64::INFINITY, f64::NAN, 1e4] {
            assert!(
                matches!(Bounded::new(equal(2), 4, eps), Err(PlacementError::BadEpsilon(_))),
                "{eps}"
            );
        }
    }

    #[test]
    fn no_keys_place_nothing() {
        let a = Bounded::new(equal(2), 4, 0.1).unwrap().assign(&[]);
        assert!(a.is_empty());
        assert_eq!(a.loads(), &[0, 0]);
    }
}
