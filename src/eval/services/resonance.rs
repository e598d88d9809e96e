//! The resonance part of the services evaluation: the final `NAME_resonance` scores against
//! the truth's edge quality.
//!
//! An edge's **truth quality** is [`base_score`] (the same formula and configuration as the
//! stage) of the components the truth's noise-free parameters give for the final regime,
//! [`Truth::expected_components`]: calls per second from the regime's chain (edge visits per
//! trace × traces per second at the daily mean), bytes per second from the mean payload, the
//! latency distribution's median and p95, and the edge's error rate outside bursts. Scores and
//! qualities are compared over the pairs both have, by Spearman's and Pearson's correlation.

use std::collections::BTreeMap;

use super::prediction::{number_of, text_of};
use crate::eval::metrics::{pearson, spearman};
use crate::generate::services::truth::Truth;
use crate::model::resonance::{base_score, ResonanceConfig};
use crate::value::Value;

/// One current row of `NAME_resonance`: the pair, its score and the score without feedback.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub source: String,
    pub target: String,
    pub score: f64,
    pub base: f64,
}

/// The rows of `NAME_resonance`, one per pair (a repeated pair keeps its first row and is
/// counted), and the rows that could not be read, by reason.
pub fn parse_scores(rows: &[Vec<Value>]) -> (Vec<Score>, BTreeMap<&'static str, usize>) {
    let mut out: BTreeMap<(String, String), Score> = BTreeMap::new();
    let mut skipped: BTreeMap<&'static str, usize> = BTreeMap::new();
    for row in rows {
        let parsed = (|| {
            Ok(Score {
                source: text_of(row.first()).ok_or("malformed_source")?,
                target: text_of(row.get(1)).ok_or("malformed_target")?,
                score: number_of(row.get(2))
                    .filter(|s| s.is_finite())
                    .ok_or("malformed_score")?,
                base: number_of(row.get(3))
                    .filter(|s| s.is_finite())
                    .ok_or("malformed_base")?,
            })
        })();
        match parsed {
            Ok(s) => match out.entry((s.source.clone(), s.target.clone())) {
                std::collections::btree_map::Entry::Occupied(_) => *skipped.entry("repeated_pair").or_default() += 1,
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(s);
                }
            },
            Err(why) => *skipped.entry(why).or_default() += 1,
        }
    }
    (out.into_values().collect(), skipped)
}

/// Each edge of regime `r` with its truth quality.
pub fn truth_quality(truth: &Truth, r: usize, cfg: &ResonanceConfig) -> BTreeMap<(String, String), f64> {
    truth
        .expected_components(r)
        .into_iter()
        .map(|(edge, c)| (edge, base_score(&c, cfg)))
        .collect()
}

/// Scores against qualities over the pairs both have.
#[derive(Debug, Clone, PartialEq)]
pub struct Agreement {
    /// `(source, target, score, base, quality)` of each pair both have.
    pub pairs: Vec<(String, String, f64, f64, f64)>,
    /// Rank and linear correlation of the scores, and of the base scores, with the quality.
    pub spearman: f64,
    pub pearson: f64,
    pub spearman_base: f64,
    /// Edges of the regime without a score, and scored pairs the regime does not use.
    pub unscored_edges: usize,
    pub unknown_pairs: usize,
}

pub fn agreement(scores: &[Score], quality: &BTreeMap<(String, String), f64>) -> Agreement {
    let mut pairs = Vec::new();
    let mut unknown_pairs = 0;
    for s in scores {
        match quality.get(&(s.source.clone(), s.target.clone())) {
            Some(q) => pairs.push((s.source.clone(), s.target.clone(), s.score, s.base, *q)),
            None => unknown_pairs += 1,
        }
    }
    let column = |f: fn(&(String, String, f64, f64, f64)) -> f64| pairs.iter().map(f).collect::<Vec<f64>>();
    let (score, base, q) = (column(|p| p.2), column(|p| p.3), column(|p| p.4));
    Agreement {
        spearman: spearman(&score, &q),
        pearson: pearson(&score, &q),
        spearman_base: spearman(&base, &q),
        unscored_edges: quality.len() - pairs.len(),
        unknown_pairs,
        pairs,
    }
}
