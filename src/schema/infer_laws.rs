//! Property tests of the laws stated in `infer.rs`: merging counts is commutative and
//! associative, counts stay below the number of events and round-trip through
//! `from_counts`, counting observations (what the dataflow does) equals merging, and the derived
//! schema is idempotent under merging the same information.

use proptest::prelude::*;

use std::collections::BTreeMap;

use super::infer::{observations, Inferred, Limits, Obs};
use super::testing::payloads;

proptest! {
    #[test]
    fn merge_is_commutative_and_associative(a in payloads(), b in payloads(), c in payloads()) {
        let (a, b, c) = (a.inferred(), b.inferred(), c.inferred());
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        prop_assert_eq!(&ab, &ba);
        let mut ab_c = ab.clone();
        ab_c.merge(&c);
        let mut bc = b.clone();
        bc.merge(&c);
        let mut a_bc = a.clone();
        a_bc.merge(&bc);
        prop_assert_eq!(ab_c, a_bc);
    }

    #[test]
    fn schema_is_idempotent_under_merge(a in payloads(), b in payloads()) {
        let (a, b) = (a.inferred(), b.inferred());
        let mut aa = a.clone();
        aa.merge(&a);
        prop_assert_eq!(aa.schema(), a.schema());
        let mut ab = a.clone();
        ab.merge(&b);
        let mut abb = ab.clone();
        abb.merge(&b);
        prop_assert_eq!(abb.schema(), ab.schema());
    }

    #[test]
    fn counts_round_trip_and_stay_below_events(a in payloads()) {
        let a = a.inferred();
        prop_assert_eq!(Inferred::from_counts(a.events, a.counts()), a.clone());
        for ((_, _), n) in a.counts() {
            prop_assert!(n <= a.events);
        }
    }

    #[test]
    fn counting_observations_equals_merging(sample in payloads()) {
        let mut counts: BTreeMap<(String, Obs), u64> = BTreeMap::new();
        for p in &sample.0 {
            for o in observations(p, &Limits::default()).unwrap() {
                *counts.entry(o).or_default() += 1;
            }
        }
        prop_assert_eq!(Inferred::from_counts(sample.0.len() as u64, counts), sample.inferred());
    }
}
