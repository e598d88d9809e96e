//! Schemas of event payloads: inference, drift, compatibility, a versioned registry and
//! conforming. A pure model with no timely or differential imports; the dataflow calls it.
//!
//! | file | concern |
//! |---|---|
//! | `kind.rs` | [`Kind`] and the widening lattice (`int ⊔ float = float`, other scalar mixes → string) |
//! | `path.rs` | normalized paths: `a.b`, `tags[]`, `a.b[].c` |
//! | `infer.rs` | per-path statistics ([`Inferred`]), their counts for the dataflow, the derived schema |
//! | `schema.rs` | [`Schema`] and [`FieldSchema`], well-formedness, the tree view |
//! | `json_schema.rs` | conversion to and from JSON Schema draft 2020-12 |
//! | `table.rs` | `--format table` renderings |
//! | `drift.rs` | changes between schemas and the drift score |
//! | `compat.rs` | the seven Confluent compatibility modes |
//! | `registry.rs` | versions per event type, registration under a compatibility mode |
//! | `store.rs` | the registry persisted as `DIR/<event_type>/vN.json` JSON Schema files |
//! | `conform.rs` | filling defaults, coercing values, keeping or dropping extra fields |
//! | `cli.rs` | `infer_files` and `diff_report` for the command line |
//!
//! Each file's doc states its rules; the drift score is defined in `drift.rs`, the widening rules
//! in `kind.rs`, the semilattice laws of inference in `infer.rs`.

pub mod cli;
pub mod compat;
pub mod conform;
pub mod drift;
pub mod infer;
pub mod json_schema;
pub mod kind;
pub mod path;
pub mod registry;
#[allow(clippy::module_inception)]
pub mod schema;
pub mod store;
pub mod table;

#[cfg(test)]
mod arrow_agreement;
#[cfg(test)]
mod compat_tests;
#[cfg(test)]
mod infer_laws;
#[cfg(test)]
mod testing;

pub use cli::{diff_report, infer_files, infer_files_with, InferFilesError, InferredFiles};
pub use compat::{can_read, check, verdicts, Compatibility, Incompatible, UnknownCompatibility, Unreadable};
pub use conform::{conform, ConformError, ConformPolicy, Conformer, Extra};
pub use drift::{drift, Change, ChangeKind, Drift};
pub use infer::{observations, observe, observe_with, FieldStats, InferError, Inferred, Limits, Obs};
pub use kind::{Kind, UnknownKind};
pub use registry::{Registry, RegistryError, Version};
pub use schema::{FieldSchema, Schema, SchemaError};
