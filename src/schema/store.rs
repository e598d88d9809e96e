//! Persistence of a [`Registry`] as JSON Schema files.
//!
//! Version `N` of event type `T` is `DIR/<T>/vN.json`: the JSON Schema document
//! (`json_schema.rs`) with `title` set to the event type, plus an `x-sluice` object with
//! `event_type`, `version`, `registered_at` (epoch ms), `drift`, `mode`, `pinned` and `changes`.
//! Directory names escape every byte other than ASCII letters, digits, `_` and `-` as `%XX` (the
//! empty type is `%`), so any event type is a safe, reversible name. [`Registry::load`] reads a
//! directory back (a missing directory is an empty registry), so a restart continues the version
//! numbers; files and directories of other names are ignored. Errors name the file at fault.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::compat::Compatibility;
use super::drift::{drift, Change};
use super::registry::{Registry, RegistryError, Version};
use super::schema::Schema;

#[derive(Serialize, Deserialize)]
struct Meta {
    event_type: String,
    version: u32,
    registered_at: i64,
    drift: f64,
    mode: Compatibility,
    #[serde(default)]
    pinned: bool,
    #[serde(default)]
    changes: Option<Vec<Change>>,
}

/// The directory name of an event type.
pub fn dir_name(event_type: &str) -> String {
    if event_type.is_empty() {
        return "%".into();
    }
    let mut out = String::new();
    for b in event_type.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The event type of a directory name, if it is one [`dir_name`] makes.
pub fn event_type_of(dir: &str) -> Option<String> {
    if dir == "%" {
        return Some(String::new());
    }
    let b = dir.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(dir.get(i + 1..i + 3)?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    let name = String::from_utf8(out).ok()?;
    (dir_name(&name) == dir).then_some(name)
}

impl Registry {
    /// Writes every version to `DIR/<event_type>/vN.json` (each file written whole, then renamed
    /// into place).
    pub fn save(&self, dir: &Path) -> Result<(), RegistryError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RegistryError::Io { path, source }
        };
        for (event_type, versions) in &self.subjects {
            let sub = dir.join(dir_name(event_type));
            fs::create_dir_all(&sub).map_err(io(&sub))?;
            for v in versions {
                let mut doc = v.schema.to_json_schema();
                let meta = Meta {
                    event_type: event_type.clone(),
                    version: v.version,
                    registered_at: v.registered_at,
                    drift: v.drift,
                    mode: v.mode,
                    pinned: v.pinned,
                    changes: Some(v.changes.clone()),
                };
                doc["title"] = Json::from(event_type.as_str());
                doc["x-sluice"] = serde_json::to_value(meta).expect("metadata serializes");
                let path = sub.join(format!("v{}.json", v.version));
                let tmp = sub.join(format!(".v{}.json.tmp", v.version));
                let text = serde_json::to_string_pretty(&doc).expect("JSON serializes") + "\n";
                fs::write(&tmp, text).map_err(io(&tmp))?;
                fs::rename(&tmp, &path).map_err(io(&path))?;
            }
        }
        Ok(())
    }

    /// Reads a registry saved by [`Registry::save`]; a missing directory is an empty registry.
    pub fn load(dir: &Path) -> Result<Registry, RegistryError> {
        let mut registry = Registry::default();
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(registry),
            Err(source) => {
                return Err(RegistryError::Io {
                    path: dir.into(),
                    source,
                })
            }
        };
        for entry in entries {
            let entry = entry.map_err(|source| RegistryError::Io {
                path: dir.into(),
                source,
            })?;
            let sub = entry.path();
            let Some(event_type) = entry.file_name().to_str().and_then(event_type_of) else {
                continue;
            };
            if !sub.is_dir() {
                continue;
            }
            let mut versions: Vec<(Version, bool)> = Vec::new();
            let files = fs::read_dir(&sub).map_err(|source| RegistryError::Io {
                path: sub.clone(),
                source,
            })?;
            for file in files {
                let file = file.map_err(|source| RegistryError::Io {
                    path: sub.clone(),
                    source,
                })?;
                let name = file.file_name();
                let Some(n) = name
                    .to_str()
                    .and_then(|n| n.strip_prefix('v')?.strip_suffix(".json")?.parse::<u32>().ok())
                else {
                    continue;
                };
                versions.push(read_version(&file.path(), &event_type, n)?);
            }
            versions.sort_by_key(|(v, _)| v.version);
            // Versions saved without their changes get them recomputed.
            for i in 1..versions.len() {
                if !versions[i].1 {
                    versions[i].0.changes = drift(&versions[i - 1].0.schema, &versions[i].0.schema).changes;
                }
            }
            if !versions.is_empty() {
                registry
                    .subjects
                    .insert(event_type, versions.into_iter().map(|(v, _)| v).collect());
            }
        }
        Ok(registry)
    }
}

/// A version file, and whether it listed its changes.
fn read_version(path: &Path, event_type: &str, n: u32) -> Result<(Version, bool), RegistryError> {
    let invalid = |message: String| RegistryError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let text = fs::read_to_string(path).map_err(|source| RegistryError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let doc: Json = serde_json::from_str(&text).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let meta = doc
        .get("x-sluice")
        .ok_or_else(|| invalid("no `x-sluice` metadata".into()))?;
    let meta: Meta = serde_json::from_value(meta.clone()).map_err(|e| invalid(format!("`x-sluice`: {e}")))?;
    if meta.version != n {
        return Err(invalid(format!(
            "`x-sluice.version` is {} but the file is v{n}",
            meta.version
        )));
    }
    if meta.event_type != event_type {
        return Err(invalid(format!(
            "`x-sluice.event_type` is `{}` but the directory is for `{event_type}`",
            meta.event_type
        )));
    }
    let schema = Schema::from_json_schema(&doc).map_err(|e| invalid(e.to_string()))?;
    let has_changes = meta.changes.is_some();
    let version = Version {
        version: n,
        schema,
        registered_at: meta.registered_at,
        drift: meta.drift,
        changes: meta.changes.unwrap_or_default(),
        mode: meta.mode,
        pinned: meta.pinned,
    };
    Ok((version, has_changes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::kind::Kind;
    use crate::schema::testing::schema_of as schema;

    #[test]
    fn saves_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::new();
        let v1 = schema(&[("id", Kind::Int, true)]);
        let v2 = schema(&[("id", Kind::Int, true), ("note", Kind::String, false)]);
        let bad = schema(&[("id", Kind::Int, true), ("x", Kind::String, true)]);
        r.register("click/x", v1.clone(), Compatibility::Backward, 10).unwrap();
        r.register("click/x", v2, Compatibility::Backward, 20).unwrap();
        r.pin("signup", v1).unwrap();
        r.save(dir.path()).unwrap();
        assert!(dir.path().join("click%2Fx/v2.json").is_file());
        let text = fs::read_to_string(dir.path().join("click%2Fx/v2.json")).unwrap();
        let doc: Json = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["x-sluice"]["mode"], "BACKWARD");
        assert_eq!(doc["properties"]["note"]["type"], "string");

        let mut back = Registry::load(dir.path()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.register("click/x", bad, Compatibility::None, 40), Ok(3));
        assert!(Registry::load(&dir.path().join("missing")).unwrap().subjects.is_empty());
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::new();
        r.register("e", schema(&[("a", Kind::Int, true)]), Compatibility::Full, 1)
            .unwrap();
        r.save(dir.path()).unwrap();
        let file = dir.path().join("e/v1.json");
        let text = fs::read_to_string(&file).unwrap();
        fs::write(
            dir.path().join("e/v2.json"),
            text.replace("\"version\": 1", "\"version\": 7"),
        )
        .unwrap();
        let e = Registry::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("e/v2.json") && e.contains("is 7 but the file is v2"), "{e}");
        fs::write(dir.path().join("e/v2.json"), "{").unwrap();
        let e = Registry::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("e/v2.json: not JSON"), "{e}");
        fs::write(dir.path().join("e/v2.json"), r#"{"type":"object"}"#).unwrap();
        assert!(Registry::load(dir.path())
            .unwrap_err()
            .to_string()
            .contains("no `x-sluice`"));
        let v2 = text
            .replace("integer", "decimal")
            .replace("\"version\": 1", "\"version\": 2");
        fs::write(dir.path().join("e/v2.json"), v2).unwrap();
        let e = Registry::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("e/v2.json") && e.contains("unknown type `decimal`"), "{e}");
        fs::remove_file(dir.path().join("e/v2.json")).unwrap();
        fs::write(dir.path().join("e/README"), "notes").unwrap();
        fs::write(dir.path().join("top.txt"), "notes").unwrap();
        assert_eq!(Registry::load(dir.path()).unwrap(), r);
    }

    #[test]
    fn directory_names_round_trip() {
        for t in ["click", "a.b", "a/b", "", "..", "ü-x_1", "%"] {
            let d = dir_name(t);
            assert!(
                d.bytes().all(|b| b.is_ascii_alphanumeric() || b"%_-".contains(&b)),
                "{d}"
            );
            assert_eq!(event_type_of(&d).as_deref(), Some(t));
        }
        assert_eq!(event_type_of("a%2"), None);
        assert_eq!(event_type_of("a.b"), None);
    }
}
