//! A versioned schema registry per event type, persisted as JSON Schema files.
//!
//! Each event type (a *subject*) has versions numbered from 1. [`Registry::register`] checks a
//! candidate against the history under a [`Compatibility`] mode and appends it as the next
//! version with its drift from the previous one; registering a schema equal to the latest
//! version returns that version unchanged. [`Registry::pin`] sets a subject's first version from
//! configuration, without a check. Persistence (`DIR/<event_type>/vN.json`, `Registry::save`
//! and `Registry::load`) is in `store.rs`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::compat::{check, Compatibility, Incompatible};
use super::drift::{drift, Change, Drift};
use super::schema::Schema;

/// One registered version.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    pub version: u32,
    pub schema: Schema,
    /// Epoch milliseconds.
    pub registered_at: i64,
    /// Drift score from the previous version (0 for the first).
    pub drift: f64,
    /// Changes from the previous version (none for the first).
    pub changes: Vec<Change>,
    /// The mode it was registered under (`NONE` for pinned versions).
    pub mode: Compatibility,
    pub pinned: bool,
}

/// Versions per event type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registry {
    pub subjects: BTreeMap<String, Vec<Version>>,
}

/// Why the registry cannot be read, written or pinned.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("event type `{event_type}` already has versions; a pinned schema must be its first")]
    PinConflict { event_type: String },
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// The latest version of an event type.
    pub fn latest(&self, event_type: &str) -> Option<&Version> {
        self.subjects.get(event_type)?.last()
    }

    /// Every version of an event type, oldest first.
    pub fn versions(&self, event_type: &str) -> &[Version] {
        self.subjects.get(event_type).map_or(&[], Vec::as_slice)
    }

    /// Registers `candidate` for `event_type` at `time` (epoch ms) under `mode`: the new version
    /// number, the latest one if `candidate` equals it, or why `mode` rejects it (with
    /// `against_version` a version number).
    pub fn register(
        &mut self,
        event_type: &str,
        candidate: Schema,
        mode: Compatibility,
        time: i64,
    ) -> Result<u32, Incompatible> {
        let versions = self.subjects.entry(event_type.to_string()).or_default();
        if let Some(last) = versions.last() {
            if last.schema == candidate {
                return Ok(last.version);
            }
        }
        let history: Vec<Schema> = versions.iter().map(|v| v.schema.clone()).collect();
        check(mode, &history, &candidate).map_err(|mut e| {
            e.against_version = versions[e.against_version - 1].version as usize;
            e
        })?;
        let (version, d) = match versions.last() {
            Some(last) => (last.version + 1, drift(&last.schema, &candidate)),
            None => (
                1,
                Drift {
                    score: 0.0,
                    changes: Vec::new(),
                },
            ),
        };
        versions.push(Version {
            version,
            schema: candidate,
            registered_at: time,
            drift: d.score,
            changes: d.changes,
            mode,
            pinned: false,
        });
        Ok(version)
    }

    /// Sets the first version of `event_type` from configuration, without a compatibility check.
    /// Pinning the same schema again is a no-op; pinning a subject that already has other
    /// versions is an error.
    pub fn pin(&mut self, event_type: &str, schema: Schema) -> Result<u32, RegistryError> {
        let versions = self.subjects.entry(event_type.to_string()).or_default();
        match versions.first() {
            Some(first) if first.pinned && first.schema == schema => Ok(first.version),
            Some(_) => Err(RegistryError::PinConflict {
                event_type: event_type.to_string(),
            }),
            None => {
                versions.push(Version {
                    version: 1,
                    schema,
                    registered_at: 0,
                    drift: 0.0,
                    changes: Vec::new(),
                    mode: Compatibility::None,
                    pinned: true,
                });
                Ok(1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::kind::Kind;
    use crate::schema::testing::schema_of as schema;

    #[test]
    fn registers_and_checks() {
        let mut r = Registry::new();
        let v1 = schema(&[("id", Kind::Int, true)]);
        let v2 = schema(&[("id", Kind::Int, true), ("note", Kind::String, false)]);
        let bad = schema(&[("id", Kind::Int, true), ("x", Kind::String, true)]);
        assert_eq!(r.register("click/x", v1.clone(), Compatibility::Backward, 10), Ok(1));
        assert_eq!(r.register("click/x", v1.clone(), Compatibility::Backward, 11), Ok(1));
        assert_eq!(r.register("click/x", v2.clone(), Compatibility::Backward, 20), Ok(2));
        let e = r
            .register("click/x", bad.clone(), Compatibility::BackwardTransitive, 30)
            .unwrap_err();
        assert_eq!((e.against_version, e.path.as_str()), (2, "x"));
        assert_eq!(r.latest("click/x").unwrap().drift, 0.5 / 1.5);
        assert_eq!(r.pin("signup", v1.clone()).unwrap(), 1);
        assert_eq!(r.pin("signup", v1.clone()).unwrap(), 1);
        assert!(matches!(
            r.pin("signup", v2.clone()),
            Err(RegistryError::PinConflict { .. })
        ));
        assert!(matches!(
            r.pin("click/x", v1.clone()),
            Err(RegistryError::PinConflict { .. })
        ));
    }
}
