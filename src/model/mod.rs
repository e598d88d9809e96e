//! Pure model maths: no timely or differential imports. The dataflow calls these inside its
//! operators; each is unit- and property-tested alone.

pub mod aggregate;
pub mod forecast;
pub mod ip;
pub mod markov;
pub mod migration;
pub mod pipes;
pub mod placement;
pub mod queueing;
pub mod resonance;
pub mod routing;
pub mod session;
pub mod window;
