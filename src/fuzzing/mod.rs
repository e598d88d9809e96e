//! Fuzz target bodies: one function per target of `fuzz/` (cargo-fuzz, libFuzzer), each taking
//! arbitrary bytes. They check invariants, not only the absence of panics: a broken invariant
//! panics, which libFuzzer reports as a crash. `fuzz/run.sh` runs them under libFuzzer;
//! `tests/integration/fuzz.rs` replays the committed corpora and regressions through the same
//! functions on the stable toolchain.
//!
//! | target | what it feeds | what it checks |
//! |---|---|---|
//! | [`frame`] | a TCP byte stream in random chunks | the framer equals splitting at `\n`; hellos are exactly the objects of hello keys and round-trip; replies round-trip |
//! | [`ndjson`] | NDJSON lines under random source settings | the fast and the `serde_json::Value` parse agree; `sluice serve` decides every line as `sluice run` does; the time scan, depth scan and key scan agree with the parse; payloads round-trip through JSON |
//! | [`expr`] | expression text | print, parse again: the same expression; evaluation never panics |
//! | [`schema`] | NDJSON payloads in two groups | merging commutes; the merged schema conforms every payload; merging again changes no schema; JSON Schema round-trips |
//! | [`spec`] | spec TOML | planning is deterministic, errors have a location inside the text, output names are unique |
//! | [`wal`] | a log record, and a log segment | `encode(decode(x)) == x`; the records read from a segment frame back to its good prefix |
//!
//! Not part of the public API.

mod expr;
mod frame;
mod ndjson;
mod schema;
mod spec;
mod wal;

pub use expr::expr;
pub use frame::frame;
pub use ndjson::ndjson;
pub use schema::schema;
pub use spec::spec;
pub use wal::wal;

/// Every target, by the name of its `fuzz/fuzz_targets/` file.
/// A fuzz target: its name and its body.
pub type Target = (&'static str, fn(&[u8]));

pub const TARGETS: [Target; 6] = [
    ("frame", frame),
    ("ndjson", ndjson),
    ("expr", expr),
    ("schema", schema),
    ("spec", spec),
    ("wal", wal),
];

/// Field names the targets may intern (interned names are never freed): beyond it, inputs are
/// parsed as `serve` parses untrusted lines, with new names refused, and the checks that need
/// the names are skipped. It keeps a long run's memory bounded.
const NAME_LIMIT: usize = 1 << 20;
