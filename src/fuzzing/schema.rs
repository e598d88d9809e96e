//! Schema inference and merging: statistics of two groups of payloads, merged.

use std::collections::BTreeMap;

use crate::schema::compat;
use crate::schema::conform::{ConformPolicy, Conformer};
use crate::schema::drift::drift;
use crate::schema::infer::{observations_by_id, observe_with, Inferred, Limits, ObsScratch, PathIds};
use crate::schema::schema::Schema;
use crate::value::{with_name_limit, Sym, Value};

use super::NAME_LIMIT;

/// `data[0]`: how many payloads form the first group; the rest: NDJSON lines, each object a
/// payload (other lines are skipped).
pub fn schema(data: &[u8]) {
    let [split, text @ ..] = data else {
        return;
    };
    let (payloads, refused) = with_name_limit(NAME_LIMIT, || {
        text.split(|b| *b == b'\n')
            .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
            .filter_map(|json| match Value::from_json(json) {
                Value::Object(fields) => Some(fields.to_vec()),
                _ => None,
            })
            .collect::<Vec<_>>()
    });
    if refused {
        return;
    }
    // Every list element is examined, so that the schema has seen every value.
    let limits = Limits {
        max_list_items: usize::MAX,
        ..Limits::default()
    };
    let payloads: Vec<(Vec<(Sym, Value)>, Inferred)> = payloads
        .into_iter()
        .filter_map(|p| observe_with(&p, &limits).ok().map(|i| (p, i)))
        .collect();
    let cut = usize::from(*split).min(payloads.len());
    let (a, b) = payloads.split_at(cut);
    let (ia, ib) = (merged(a), merged(b));
    let mut ab = ia.clone();
    ab.merge(&ib);
    let mut ba = ib.clone();
    ba.merge(&ia);
    assert_eq!(ab, ba, "merging commutes");
    assert_eq!(ab.events, payloads.len() as u64);
    assert_eq!(Inferred::from_counts(ab.events, ab.counts()), ab, "counts round-trip");
    assert!(ab.counts().all(|(_, n)| n <= ab.events), "a count above the events");
    assert_eq!(counted(&payloads, &limits), ab, "counting observations equals merging");

    let schema = ab.schema();
    schema
        .validate()
        .unwrap_or_else(|e| panic!("an inferred schema is well formed: {e}"));
    // The merged schema accepts every payload of both groups, and conformed payloads conform
    // as they are.
    let conformer = Conformer::new(&schema, ConformPolicy::default()).expect("a conformer");
    for (p, _) in &payloads {
        let once = conformer
            .conform(p)
            .unwrap_or_else(|e| panic!("{e}: {:?} against {schema:?}", Value::Object(p.clone().into())));
        let twice = conformer.conform(&once).expect("a conformed payload conforms");
        assert_eq!(format!("{twice:?}"), format!("{once:?}"), "conforming twice");
    }
    // Merging information already merged changes no schema.
    let mut abb = ab.clone();
    abb.merge(&ib);
    assert_eq!(abb.schema(), schema, "merging a group again");
    let mut aa = ia.clone();
    aa.merge(&ia);
    assert_eq!(aa.schema(), ia.schema(), "merging a group with itself");
    // JSON Schema round-trips; drift and compatibility verdicts are total.
    let doc = schema.to_json_schema();
    assert_eq!(
        Schema::from_json_schema(&doc).as_ref(),
        Ok(&schema),
        "JSON Schema round trip"
    );
    let (sa, sb) = (ia.schema(), ib.schema());
    let _ = drift(&sa, &schema);
    let _ = drift(&schema, &sb);
    let _ = compat::verdicts(&[sa, sb], &schema);
}

fn merged(group: &[(Vec<(Sym, Value)>, Inferred)]) -> Inferred {
    let mut all = Inferred::default();
    for (_, i) in group {
        all.merge(i);
    }
    all
}

/// The statistics as the dataflow gets them: counts of `(path id, observation)` pairs.
fn counted(payloads: &[(Vec<(Sym, Value)>, Inferred)], limits: &Limits) -> Inferred {
    let mut ids = PathIds::new();
    let mut scratch = ObsScratch::default();
    let mut out = Vec::new();
    let mut counts = BTreeMap::new();
    for (p, _) in payloads {
        observations_by_id(p, limits, &mut ids, &mut scratch, &mut out).expect("observed before");
        for (id, obs) in out.drain(..) {
            *counts.entry((ids.path(id).to_string(), obs)).or_insert(0u64) += 1;
        }
    }
    Inferred::from_counts(payloads.len() as u64, counts)
}
