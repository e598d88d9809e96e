//! Offline evaluation of sluice's models. Evaluators per model kind (forecast today; routing,
//! Markov and pipes later) will live here, each in its own file, sharing the metric functions
//! ([`metrics`]) and the rolling-origin driver ([`rolling`]). Pure code: no timely imports;
//! `sluice eval` runs the spec's stages and hands their outputs to these evaluators.

pub mod metrics;
pub mod rolling;

#[cfg(test)]
mod synthetic;
#[cfg(test)]
mod synthetic_tests;
