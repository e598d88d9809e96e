//! Jump consistent hash (Lamping and Veach, "A Fast, Minimal Memory, Consistent Hash
//! Algorithm", 2014): a 64-bit key → one of `n` numbered buckets, with no table at all.
//!
//! Growing `n` to `n + 1` moves a fraction `1/(n+1)` of the keys, all of them into the new
//! bucket `n`: `jump(k, n + 1)` is either `jump(k, n)` or `n`. Buckets can only be added or
//! removed at the end, so [`Jump`] removes a region in the middle by moving the last region into
//! its slot (`Vec::swap_remove`): the removed region's keys then go to the last region, and the
//! last region's keys spread over the others (about `2/n` of the keys move instead of `1/n`).
//! Buckets carry no weight: every region gets `1/n` of the keys.
//!
//! The arithmetic is the paper's reference code: a 64-bit linear congruential generator and
//! one `f64` division per jump, which IEEE 754 makes identical on every platform (Rust never
//! contracts it into a fused multiply-add). Guava's `Hashing.consistentHash` computes the same
//! function; its golden values are the tests below.

use std::num::NonZeroU32;

use super::{key_hash_u64, validate_regions, PlacementError, Region};

/// The bucket in `0..buckets` of a 64-bit key: the paper's `JumpConsistentHash`. The key is used
/// as is; [`Jump`] first hashes it with [`key_hash_u64`].
pub fn jump_consistent_hash(mut key: u64, buckets: NonZeroU32) -> u32 {
    let n = i64::from(buckets.get());
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < n {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        // `(key >> 33) + 1 ≤ 2³¹` converts exactly, and through `i64` in one instruction;
        // `as i64` saturates, so a jump far past `n` still ends the loop.
        j = ((b + 1) as f64 * (2_147_483_648.0 / ((key >> 33) + 1) as i64 as f64)) as i64;
    }
    b as u32
}

/// Regions in bucket order, placed by jump consistent hash.
#[derive(Debug, Clone, PartialEq)]
pub struct Jump {
    regions: Vec<Region>,
}

impl Jump {
    /// Regions in bucket order: region `i` is bucket `i`. Jump hashing has no weights, so the
    /// regions' weights must all be equal.
    pub fn new(regions: Vec<Region>) -> Result<Self, PlacementError> {
        validate_regions(&regions)?;
        check_equal_weights(&regions)?;
        Ok(Jump { regions })
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// The index (into [`Jump::regions`]) of the region holding `key`.
    #[inline]
    pub fn home(&self, key: u64) -> usize {
        let n = NonZeroU32::new(self.regions.len() as u32).expect("a Jump always has a region");
        jump_consistent_hash(key_hash_u64(key), n) as usize
    }

    /// `key`'s home and the `r - 1` regions after it in bucket order (wrapping): at most
    /// `min(r, n)` distinct regions.
    pub fn successors(&self, key: u64, r: usize) -> Vec<usize> {
        let n = self.regions.len();
        let home = self.home(key);
        (0..r.min(n)).map(|i| (home + i) % n).collect()
    }

    /// Appends a region as bucket `n`: only keys that move to it move.
    pub fn add_region(&mut self, region: Region) -> Result<(), PlacementError> {
        *self = Jump::new(super::with_region(&self.regions, region))?;
        Ok(())
    }

    /// Removes a region by name. The last region takes its bucket number (see the module doc).
    pub fn remove_region(&mut self, name: &str) -> Result<(), PlacementError> {
        let at = super::removable(&self.regions, name)?;
        self.regions.swap_remove(at);
        Ok(())
    }
}

fn check_equal_weights(regions: &[Region]) -> Result<(), PlacementError> {
    let first = &regions[0];
    match regions.iter().find(|r| r.weight != first.weight) {
        Some(r) => Err(PlacementError::JumpWeights {
            name: r.name.clone(),
            weight: r.weight,
            first: first.name.clone(),
            first_weight: first.weight,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    /// Guava's `HashingTest.testConsistentHash_linearCongruentialGeneratorCompatibility`:
    /// "golden values to see that implementations across languages are equivalent".
    #[test]
    fn matches_guava_golden_values() {
        let golden100 = [
            0, 55, 62, 8, 45, 59, 86, 97, 82, 59, 73, 37, 17, 56, 86, 21, 90, 37, 38, 83,
        ];
        for (key, want) in golden100.iter().enumerate() {
            assert_eq!(jump_consistent_hash(key as u64, nz(100)), *want, "key {key}");
        }
        assert_eq!(jump_consistent_hash(10_863_919_174_838_991, nz(11)), 6);
        assert_eq!(jump_consistent_hash(2_016_238_256_797_177_309, nz(11)), 3);
        assert_eq!(jump_consistent_hash(1_673_758_223_894_951_030, nz(11)), 5);
        assert_eq!(jump_consistent_hash(2, nz(100_001)), 80_343);
        assert_eq!(jump_consistent_hash(2201, nz(100_001)), 22_152);
        assert_eq!(jump_consistent_hash(2202, nz(100_001)), 15_018);
    }

    /// Guava's `testConsistentHash_correctness`: with one bucket everything is in bucket 0, and
    /// growing the bucket count either keeps a key or moves it to the new bucket.
    #[test]
    fn grows_one_bucket_at_a_time() {
        for key in [0u64, 1, 2, u64::MAX, i64::MAX as u64, 1 << 63, 0xdead_beef] {
            assert_eq!(jump_consistent_hash(key, nz(1)), 0);
            let mut last = 0;
            for n in 2..=500 {
                let b = jump_consistent_hash(key, nz(n));
                assert!(b == last || b == n - 1, "key {key}: {last} → {b} at n = {n}");
                last = b;
            }
        }
    }

    #[test]
    fn huge_bucket_counts_stay_in_range() {
        for key in [0u64, 7, u64::MAX] {
            assert!(jump_consistent_hash(key, nz(u32::MAX)) < u32::MAX);
        }
    }

    #[test]
    fn weights_must_be_equal() {
        let err = Jump::new(vec![Region::new("a", 1.0), Region::new("b", 2.0)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "jump consistent hash has no weights: region `b` weighs 2 but `a` weighs 1 (use `ring` or `bounded`)"
        );
    }

    #[test]
    fn remove_moves_the_last_region_into_the_gap() {
        let names = ["a", "b", "c", "d"];
        let mut jump = Jump::new(names.iter().map(|n| Region::new(*n, 1.0)).collect()).unwrap();
        jump.remove_region("b").unwrap();
        let left: Vec<&str> = jump.regions().iter().map(|r| r.name.as_str()).collect();
        assert_eq!(left, ["a", "d", "c"]);
        assert_eq!(
            jump.remove_region("zz"),
            Err(PlacementError::UnknownRegion("zz".into()))
        );
        for n in ["a", "d"] {
            jump.remove_region(n).unwrap();
        }
        assert_eq!(jump.remove_region("c"), Err(PlacementError::LastRegion("c".into())));
    }
}
