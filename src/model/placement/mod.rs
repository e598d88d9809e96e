//! Placement, pure maths: which region holds a key (a shard), for the router and replication.
//! No timely or differential imports.
//!
//! ```text
//!  key (u64: a shard id) ──key_hash_u64 (FNV-1a + fmix64)──► 64-bit position
//!        │
//!        ├─ jump:    jump_consistent_hash(position, n)        bucket i = region i, no table
//!        ├─ ring:    first ring point ≥ position (binary search); points per region ∝ weight
//!        └─ bounded: ring walk from the position past regions already at capacity
//!                    ceil((1+ε)·m·wᵢ/W), keys placed in increasing key order
//! ```
//!
//! [`Placer`] picks one of the three from a spec string (`jump`, `ring`, `bounded`) and
//! [`Placer::assign`] places a set of keys, giving an [`Assignment`]. Replication targets are
//! the home region and the next distinct regions on the ring ([`Placer::targets`]).
//!
//! Determinism: positions come from [`key_hash`], a content-only hash of bytes (FNV-1a as in
//! [`crate::value::stable_hash_bytes`], then MurmurHash3's 64-bit finalizer for avalanche), and
//! ring points from the region's name and the point's number. Nothing depends on addresses,
//! interning or hash-map order, and ties on the ring are broken by region name, so results are
//! the same in every run, on every worker and platform, whatever order the regions were added.

pub mod bounded;
pub mod jump;
pub mod ring;

#[cfg(test)]
mod property_tests;

use std::str::FromStr;

pub use bounded::Bounded;
pub use jump::{jump_consistent_hash, Jump};
pub use ring::Ring;

/// Ring points per unit of weight unless the spec says otherwise.
pub const DEFAULT_VNODES: u32 = 256;
/// Spare capacity of bounded loads unless the spec says otherwise.
pub const DEFAULT_EPSILON: f64 = 0.25;
/// The most points a ring may hold (about 48 MiB).
pub const MAX_POINTS: usize = 1 << 22;

/// MurmurHash3's 64-bit finalizer: a bijection whose every output bit depends on every input bit.
#[inline]
pub fn fmix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// The stable 64-bit hash of a key's bytes: FNV-1a, then [`fmix64`].
#[inline]
pub fn key_hash(bytes: &[u8]) -> u64 {
    fmix64(crate::value::stable_hash_bytes(bytes))
}

/// The stable hash of an integer key: [`key_hash`] of its 8 little-endian bytes.
#[inline]
pub fn key_hash_u64(key: u64) -> u64 {
    key_hash(&key.to_le_bytes())
}

/// A region and its weight (its capacity relative to a standard region of weight 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub name: String,
    pub weight: f64,
}

impl Region {
    pub fn new(name: impl Into<String>, weight: f64) -> Self {
        Region {
            name: name.into(),
            weight,
        }
    }
}

/// Why a placement cannot be built or changed. The router's spec layer adds file and line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlacementError {
    #[error("unknown placement algorithm `{0}` (expected `jump`, `ring` or `bounded`)")]
    UnknownAlgorithm(String),
    #[error("a placement needs at least one region")]
    NoRegions,
    #[error("region `{0}` is listed twice")]
    DuplicateRegion(String),
    #[error("region `{0}`: a region name cannot be empty")]
    EmptyName(String),
    #[error("region `{name}`: weight {weight} must be positive and finite")]
    BadWeight { name: String, weight: f64 },
    #[error("vnodes: {0} must be between 1 and {MAX_POINTS}")]
    BadVnodes(u32),
    #[error("epsilon: {0} must be positive and at most 1000")]
    BadEpsilon(f64),
    #[error("{points} ring points (vnodes × weight, summed over regions) are more than {MAX_POINTS}")]
    TooManyPoints { points: usize },
    #[error("jump consistent hash has no weights: region `{name}` weighs {weight} but `{first}` weighs {first_weight} (use `ring` or `bounded`)")]
    JumpWeights {
        name: String,
        weight: f64,
        first: String,
        first_weight: f64,
    },
    #[error("unknown region `{0}`")]
    UnknownRegion(String),
    #[error("cannot remove `{0}`: it is the only region")]
    LastRegion(String),
}

/// Checks names (non-empty, distinct) and weights (positive, finite).
pub(crate) fn validate_regions(regions: &[Region]) -> Result<(), PlacementError> {
    if regions.is_empty() {
        return Err(PlacementError::NoRegions);
    }
    let mut names: Vec<&str> = Vec::with_capacity(regions.len());
    for r in regions {
        if r.name.is_empty() {
            return Err(PlacementError::EmptyName(r.name.clone()));
        }
        if !(r.weight.is_finite() && r.weight > 0.0) {
            return Err(PlacementError::BadWeight {
                name: r.name.clone(),
                weight: r.weight,
            });
        }
        names.push(&r.name);
    }
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(PlacementError::DuplicateRegion(w[0].to_string()));
    }
    Ok(())
}

/// The regions with `region` appended (checked when the placement is rebuilt from them).
pub(crate) fn with_region(regions: &[Region], region: Region) -> Vec<Region> {
    let mut regions = regions.to_vec();
    regions.push(region);
    regions
}

/// The position of the region to remove: it must exist and not be the only one.
pub(crate) fn removable(regions: &[Region], name: &str) -> Result<usize, PlacementError> {
    let at = regions
        .iter()
        .position(|r| r.name == name)
        .ok_or_else(|| PlacementError::UnknownRegion(name.to_string()))?;
    if regions.len() == 1 {
        return Err(PlacementError::LastRegion(name.to_string()));
    }
    Ok(at)
}

/// The placement algorithm a spec names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// [`Jump`]: no memory, no weights, adds at the end.
    Jump,
    /// [`Ring`]: virtual nodes ∝ weight.
    Ring,
    /// [`Bounded`]: the ring with a load cap `ceil((1+ε)·m·wᵢ/W)`.
    Bounded,
}

impl FromStr for Algorithm {
    type Err = PlacementError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "jump" => Ok(Algorithm::Jump),
            "ring" => Ok(Algorithm::Ring),
            "bounded" => Ok(Algorithm::Bounded),
            other => Err(PlacementError::UnknownAlgorithm(other.to_string())),
        }
    }
}

/// What a spec says about placement: the algorithm, ring points per unit weight (`ring`,
/// `bounded`, and replica order) and the spare capacity `epsilon` (`bounded`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlacementSpec {
    pub algorithm: Algorithm,
    pub vnodes: u32,
    pub epsilon: f64,
}

impl PlacementSpec {
    pub fn new(algorithm: Algorithm) -> Self {
        PlacementSpec {
            algorithm,
            vnodes: DEFAULT_VNODES,
            epsilon: DEFAULT_EPSILON,
        }
    }
}

/// One of the three algorithms over a list of regions. Region indices are positions in
/// [`Placer::regions`].
#[derive(Debug, Clone)]
pub enum Placer {
    Jump(Jump),
    Ring(Ring),
    Bounded(Bounded),
}

impl Placer {
    pub fn new(spec: &PlacementSpec, regions: Vec<Region>) -> Result<Self, PlacementError> {
        Ok(match spec.algorithm {
            Algorithm::Jump => Placer::Jump(Jump::new(regions)?),
            Algorithm::Ring => Placer::Ring(Ring::new(regions, spec.vnodes)?),
            Algorithm::Bounded => Placer::Bounded(Bounded::new(regions, spec.vnodes, spec.epsilon)?),
        })
    }

    pub fn regions(&self) -> &[Region] {
        match self {
            Placer::Jump(j) => j.regions(),
            Placer::Ring(r) => r.regions(),
            Placer::Bounded(b) => b.ring().regions(),
        }
    }

    /// Places a set of keys (duplicates count once). Jump and ring place each key alone;
    /// bounded loads depend on the whole set.
    pub fn assign(&self, keys: &[u64]) -> Assignment {
        match self {
            Placer::Jump(j) => Assignment::each(keys, j.regions().len(), |k| j.home(k)),
            Placer::Ring(r) => Assignment::each(keys, r.regions().len(), |k| r.home(k)),
            Placer::Bounded(b) => b.assign(keys),
        }
    }

    /// Replication targets of `key` in `assignment` (made by this placer): its home, then the next
    /// distinct regions on the ring (in bucket order for jump), `min(r, n)` in all. `None` when
    /// the key is not in the assignment.
    pub fn targets(&self, assignment: &Assignment, key: u64, r: usize) -> Option<Vec<usize>> {
        let home = assignment.region_of(key)?;
        Some(match self {
            Placer::Jump(j) => j.successors(key, r),
            Placer::Ring(ring) => ring.successors(key, r),
            Placer::Bounded(b) => b.ring().successors_after(home, key, r),
        })
    }

    pub fn add_region(&mut self, region: Region) -> Result<(), PlacementError> {
        match self {
            Placer::Jump(j) => j.add_region(region),
            Placer::Ring(r) => r.add_region(region),
            Placer::Bounded(b) => b.add_region(region),
        }
    }

    pub fn remove_region(&mut self, name: &str) -> Result<(), PlacementError> {
        match self {
            Placer::Jump(j) => j.remove_region(name),
            Placer::Ring(r) => r.remove_region(name),
            Placer::Bounded(b) => b.remove_region(name),
        }
    }
}

/// Every shard `0..shards`'s home (an index into `regions`) when `regions` (name and capacity,
/// each > 0) are weighted by their capacity over the mean (`jump` ignores weights), and the
/// placer. A placer that cannot be built (a ring with too many points) puts shard `k` in region
/// `k mod n` and is `None`; no region gives no homes.
pub fn shard_homes(spec: &PlacementSpec, regions: &[(String, f64)], shards: u64) -> (Vec<u32>, Option<Placer>) {
    if regions.is_empty() {
        return (Vec::new(), None);
    }
    let mean = regions.iter().map(|(_, c)| c).sum::<f64>() / regions.len() as f64;
    let weighted = regions
        .iter()
        .map(|(n, c)| {
            Region::new(
                n.clone(),
                if spec.algorithm == Algorithm::Jump {
                    1.0
                } else {
                    c / mean
                },
            )
        })
        .collect();
    match Placer::new(spec, weighted) {
        Ok(placer) => {
            let keys: Vec<u64> = (0..shards).collect();
            let assignment = placer.assign(&keys);
            let homes = keys
                .iter()
                .map(|k| assignment.region_of(*k).unwrap_or(0) as u32)
                .collect();
            (homes, Some(placer))
        }
        Err(_) => ((0..shards).map(|k| (k % regions.len() as u64) as u32).collect(), None),
    }
}

/// Keys and the region index each is placed in, sorted by key, with per-region loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    keys: Vec<u64>,
    regions: Vec<u32>,
    loads: Vec<usize>,
}

impl Assignment {
    /// Places every distinct key with `home`.
    fn each(keys: &[u64], n: usize, home: impl Fn(u64) -> usize) -> Self {
        let keys = sorted_distinct(keys);
        let mut loads = vec![0; n];
        let regions = keys
            .iter()
            .map(|&k| {
                let r = home(k);
                loads[r] += 1;
                r as u32
            })
            .collect();
        Assignment { keys, regions, loads }
    }

    pub(crate) fn from_parts(keys: Vec<u64>, regions: Vec<u32>, loads: Vec<usize>) -> Self {
        debug_assert_eq!(keys.len(), regions.len());
        Assignment { keys, regions, loads }
    }

    /// The region index of `key`, if it was placed.
    #[inline]
    pub fn region_of(&self, key: u64) -> Option<usize> {
        let i = self.keys.binary_search(&key).ok()?;
        Some(self.regions[i] as usize)
    }

    /// Keys placed per region index.
    pub fn loads(&self) -> &[usize] {
        &self.loads
    }

    /// The number of distinct keys placed.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// `(key, region index)` in increasing key order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, usize)> + '_ {
        self.keys.iter().zip(&self.regions).map(|(&k, &r)| (k, r as usize))
    }
}

pub(crate) fn sorted_distinct(keys: &[u64]) -> Vec<u64> {
    let mut keys = keys.to_vec();
    keys.sort_unstable();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned values: a change here changes every placement in every deployment.
    #[test]
    fn key_hash_is_pinned() {
        assert_eq!(crate::value::stable_hash_bytes(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(key_hash(b""), fmix64(0xcbf2_9ce4_8422_2325));
        assert_eq!(key_hash_u64(7), key_hash(&[7, 0, 0, 0, 0, 0, 0, 0]));
        assert_eq!(fmix64(0), 0);
        assert_eq!(fmix64(1), 0xb456_bcfc_34c2_cb2c);
        assert_eq!(key_hash(b"a"), fmix64(0xaf63_dc4c_8601_ec8c));
    }

    #[test]
    fn algorithms_parse_from_spec_strings() {
        assert_eq!("jump".parse(), Ok(Algorithm::Jump));
        assert_eq!("ring".parse(), Ok(Algorithm::Ring));
        assert_eq!("bounded".parse(), Ok(Algorithm::Bounded));
        let err = "Ring".parse::<Algorithm>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown placement algorithm `Ring` (expected `jump`, `ring` or `bounded`)"
        );
    }

    #[test]
    fn bad_regions_are_named() {
        let r = |n: &str, w: f64| Region::new(n, w);
        let spec = PlacementSpec::new(Algorithm::Ring);
        let err = |regions| Placer::new(&spec, regions).unwrap_err().to_string();
        assert_eq!(err(vec![]), "a placement needs at least one region");
        assert_eq!(
            err(vec![r("a", 1.0), r("b", 1.0), r("a", 2.0)]),
            "region `a` is listed twice"
        );
        assert_eq!(
            err(vec![r("a", 0.0)]),
            "region `a`: weight 0 must be positive and finite"
        );
        assert_eq!(
            err(vec![r("a", f64::NAN)]),
            "region `a`: weight NaN must be positive and finite"
        );
        assert_eq!(err(vec![r("", 1.0)]), "region ``: a region name cannot be empty");
        let many = PlacementSpec {
            vnodes: 1 << 21,
            ..spec
        };
        assert_eq!(
            Placer::new(&many, vec![r("a", 1.0), r("b", 1.5)])
                .unwrap_err()
                .to_string(),
            "5242880 ring points (vnodes × weight, summed over regions) are more than 4194304"
        );
        let eps = PlacementSpec {
            algorithm: Algorithm::Bounded,
            epsilon: 0.0,
            ..spec
        };
        assert_eq!(
            Placer::new(&eps, vec![r("a", 1.0)]).unwrap_err().to_string(),
            "epsilon: 0 must be positive and at most 1000"
        );
    }

    #[test]
    fn every_algorithm_places_every_key_once() {
        let regions: Vec<Region> = ["a", "b", "c"].iter().map(|n| Region::new(*n, 1.0)).collect();
        let keys: Vec<u64> = (0..1000).chain(0..10).collect();
        for algorithm in [Algorithm::Jump, Algorithm::Ring, Algorithm::Bounded] {
            let placer = Placer::new(&PlacementSpec::new(algorithm), regions.clone()).unwrap();
            let a = placer.assign(&keys);
            assert_eq!(a.len(), 1000, "{algorithm:?}: duplicates count once");
            assert_eq!(a.loads().iter().sum::<usize>(), 1000);
            for k in 0..1000 {
                let targets = placer.targets(&a, k, 2).unwrap();
                assert_eq!(targets[0], a.region_of(k).unwrap(), "{algorithm:?}: home first");
                assert_eq!(targets.len(), 2);
                assert_ne!(targets[0], targets[1]);
            }
            assert_eq!(placer.targets(&a, 5000, 2), None);
        }
    }
}
