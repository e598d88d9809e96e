//! A consistent-hash ring with virtual nodes (Karger et al., 1997), weighted by region capacity.
//!
//! Each region puts `max(1, round(vnodes × weight))` points on a 64-bit circle, at
//! [`key_hash`]`(name, 0xff, i)` for point `i`. A key belongs to the region of the first point at
//! or after its position (clockwise, wrapping), found by binary search over the sorted points.
//! A region's share of the keys is its share of the circle: about `weight / Σ weight`, with a
//! relative spread of about `1/√points`, so more points balance better (README, "Placement").
//!
//! Adding a region only takes arcs from others: a key moves only into the new region. Removing
//! one only gives its arcs away: only its keys move. Points at the same position (a 64-bit
//! collision) are ordered by region name, so the ring is the same whatever order the regions
//! came in.

use super::{key_hash, validate_regions, PlacementError, Region, MAX_POINTS};

/// Regions and their points on the circle, sorted by position.
#[derive(Debug, Clone, PartialEq)]
pub struct Ring {
    vnodes: u32,
    regions: Vec<Region>,
    /// Point positions, sorted (ties by region name), apart from their owners so that the binary
    /// search reads one dense array.
    positions: Vec<u64>,
    owners: Vec<u32>,
}

/// The number of points a region of this weight gets.
pub fn points_for(vnodes: u32, weight: f64) -> usize {
    ((f64::from(vnodes) * weight).round() as usize).max(1)
}

/// The position of a region's `i`-th point.
pub fn point_position(name: &str, i: u32) -> u64 {
    let mut bytes = Vec::with_capacity(name.len() + 5);
    bytes.extend_from_slice(name.as_bytes());
    bytes.push(0xff);
    bytes.extend_from_slice(&i.to_le_bytes());
    key_hash(&bytes)
}

impl Ring {
    /// A ring with `vnodes` points per unit of weight.
    pub fn new(regions: Vec<Region>, vnodes: u32) -> Result<Self, PlacementError> {
        validate_regions(&regions)?;
        if vnodes == 0 || vnodes as usize > MAX_POINTS {
            return Err(PlacementError::BadVnodes(vnodes));
        }
        let points: usize = regions.iter().map(|r| points_for(vnodes, r.weight)).sum();
        if points > MAX_POINTS {
            return Err(PlacementError::TooManyPoints { points });
        }
        let mut all: Vec<(u64, u32)> = Vec::with_capacity(points);
        for (ix, r) in regions.iter().enumerate() {
            let count = points_for(vnodes, r.weight) as u32;
            all.extend((0..count).map(|i| (point_position(&r.name, i), ix as u32)));
        }
        all.sort_unstable_by(|a, b| {
            let name = |p: &(u64, u32)| regions[p.1 as usize].name.as_str();
            a.0.cmp(&b.0).then_with(|| name(a).cmp(name(b)))
        });
        Ok(Ring {
            vnodes,
            positions: all.iter().map(|p| p.0).collect(),
            owners: all.iter().map(|p| p.1).collect(),
            regions,
        })
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }

    /// The number of points on the circle.
    pub fn points(&self) -> usize {
        self.positions.len()
    }

    /// The index of the first point at or after `position`, wrapping to 0.
    #[inline]
    pub fn point_at(&self, position: u64) -> usize {
        let i = self.positions.partition_point(|&p| p < position);
        if i == self.positions.len() {
            0
        } else {
            i
        }
    }

    /// The region index that owns point `i`.
    #[inline]
    pub fn owner(&self, point: usize) -> usize {
        self.owners[point] as usize
    }

    /// The index (into [`Ring::regions`]) of the region holding `key`.
    #[inline]
    pub fn home(&self, key: u64) -> usize {
        self.owner(self.point_at(super::key_hash_u64(key)))
    }

    /// The next `r` distinct regions clockwise from `key` (`min(r, n)` of them): its home, then
    /// replicas.
    pub fn successors(&self, key: u64, r: usize) -> Vec<usize> {
        let start = self.point_at(super::key_hash_u64(key));
        self.walk(start, Vec::with_capacity(r.min(self.regions.len())), r)
    }

    /// `first`, then the next distinct regions clockwise from `key` other than `first`:
    /// `min(r, n)` in all (for `r ≥ 1`). Bounded loads use it when a key's home is not its ring
    /// successor.
    pub fn successors_after(&self, first: usize, key: u64, r: usize) -> Vec<usize> {
        if r == 0 {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(r.min(self.regions.len()));
        out.push(first);
        self.walk(self.point_at(super::key_hash_u64(key)), out, r)
    }

    fn walk(&self, start: usize, mut out: Vec<usize>, r: usize) -> Vec<usize> {
        let want = r.min(self.regions.len());
        let len = self.positions.len();
        for step in 0..len {
            if out.len() >= want {
                break;
            }
            let region = self.owner((start + step) % len);
            if !out.contains(&region) {
                out.push(region);
            }
        }
        out
    }

    /// Adds a region with its points. Only keys that move to it move.
    pub fn add_region(&mut self, region: Region) -> Result<(), PlacementError> {
        *self = Ring::new(super::with_region(&self.regions, region), self.vnodes)?;
        Ok(())
    }

    /// Removes a region and its points. Only its keys move. Other regions keep their order.
    pub fn remove_region(&mut self, name: &str) -> Result<(), PlacementError> {
        let at = super::removable(&self.regions, name)?;
        let mut regions = self.regions.clone();
        regions.remove(at);
        *self = Ring::new(regions, self.vnodes)?;
        Ok(())
    }

    /// Each region's share of the circle (the expected share of keys), by region index.
    pub fn arc_shares(&self) -> Vec<f64> {
        let mut arcs = vec![0u128; self.regions.len()];
        let len = self.positions.len();
        for i in 0..len {
            // Point i owns the arc after the previous point, up to and including itself.
            let prev = self.positions[(i + len - 1) % len];
            let arc = self.positions[i].wrapping_sub(prev);
            let arc = if len == 1 { 1u128 << 64 } else { u128::from(arc) };
            arcs[self.owners[i] as usize] += arc;
        }
        arcs.iter().map(|&a| a as f64 / 2f64.powi(64)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions(names: &[&str]) -> Vec<Region> {
        names.iter().map(|n| Region::new(*n, 1.0)).collect()
    }

    #[test]
    fn points_are_proportional_to_weight() {
        let ring = Ring::new(
            vec![Region::new("a", 1.0), Region::new("b", 2.5), Region::new("c", 0.001)],
            100,
        )
        .unwrap();
        let mut counts = [0usize; 3];
        for i in 0..ring.points() {
            counts[ring.owner(i)] += 1;
        }
        assert_eq!(counts, [100, 250, 1], "at least one point each");
        assert!(ring.positions.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn insertion_order_does_not_matter() {
        let a = Ring::new(regions(&["x", "y", "z"]), 50).unwrap();
        let mut b = Ring::new(regions(&["z", "x"]), 50).unwrap();
        b.add_region(Region::new("y", 1.0)).unwrap();
        let name = |ring: &Ring, k| ring.regions()[ring.home(k)].name.clone();
        for k in 0..10_000 {
            assert_eq!(name(&a, k), name(&b, k));
        }
    }

    #[test]
    fn successors_are_distinct_and_start_at_home() {
        let ring = Ring::new(regions(&["a", "b", "c", "d"]), 8).unwrap();
        for k in 0..1000 {
            let s = ring.successors(k, 3);
            assert_eq!(s.len(), 3);
            assert_eq!(s[0], ring.home(k));
            assert!(s[0] != s[1] && s[1] != s[2] && s[0] != s[2]);
            assert_eq!(ring.successors(k, 10).len(), 4, "at most n");
            assert_eq!(ring.successors(k, 0), Vec::<usize>::new());
            let after = ring.successors_after(s[2], k, 3);
            assert_eq!(after, vec![s[2], s[0], s[1]]);
        }
    }

    #[test]
    fn arc_shares_sum_to_one() {
        let ring = Ring::new(regions(&["a", "b", "c"]), 100).unwrap();
        let total: f64 = ring.arc_shares().iter().sum();
        assert!((total - 1.0).abs() < 1e-12, "{total}");
        let one = Ring::new(regions(&["a"]), 1).unwrap();
        assert_eq!(one.arc_shares(), vec![1.0]);
    }

    #[test]
    fn bad_vnodes_are_refused() {
        assert_eq!(Ring::new(regions(&["a"]), 0), Err(PlacementError::BadVnodes(0)));
        let mut ring = Ring::new(regions(&["a"]), 4).unwrap();
        assert_eq!(ring.remove_region("a"), Err(PlacementError::LastRegion("a".into())));
        assert_eq!(
            ring.add_region(Region::new("a", 1.0)),
            Err(PlacementError::DuplicateRegion("a".into()))
        );
        assert_eq!(ring.regions().len(), 1, "a refused change leaves the ring as it was");
    }
}
