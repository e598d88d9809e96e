//! Library side of the schema commands: inferring schemas from files, and a drift report.
//!
//! [`infer_files`] reads Parquet and NDJSON files (by extension; a directory by the files it
//! holds) with the engine's own readers, so the time and type fields are read exactly as
//! `sluice run` reads them and are not part of the payload schema. It returns statistics per
//! event type. Records the readers reject (bad time, missing type, malformed JSON) and payloads
//! nested too deeply are errors in [`infer_files`]; [`infer_files_with`] collects them as dead
//! letters instead. [`diff_report`] prints the drift between two schemas and which of the seven
//! compatibility modes accept the change.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::dead_letter::DeadLetter;
use crate::plan::{Format, SourcePlan};
use crate::source::{reader, Decoded, Layout, SourceError};

use super::compat::{check, Compatibility};
use super::drift::drift;
use super::infer::{observe_with, Inferred, Limits};
use super::schema::Schema;

/// Why files cannot be inferred.
#[derive(Debug, thiserror::Error)]
pub enum InferFilesError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{}: unknown format; use .parquet, .ndjson, .jsonl or .json files", path.display())]
    UnknownFormat { path: PathBuf },
    #[error("{location}: {reason}: {detail}")]
    Rejected {
        location: String,
        reason: String,
        detail: String,
    },
}

/// Statistics per event type, and the records that could not be observed.
#[derive(Debug, Clone, Default)]
pub struct InferredFiles {
    pub by_type: BTreeMap<String, Inferred>,
    pub rejected: Vec<DeadLetter>,
}

fn format_of(path: &Path) -> Result<Format, InferFilesError> {
    let ext = |p: &Path| p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    if path.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| SourceError::open(path, e))?;
        let exts: Vec<String> = entries.filter_map(|e| ext(&e.ok()?.path())).collect();
        if exts.iter().any(|e| e == "parquet") {
            return Ok(Format::Parquet);
        }
        if exts.iter().any(|e| matches!(e.as_str(), "ndjson" | "jsonl" | "json")) {
            return Ok(Format::Ndjson);
        }
    } else {
        match ext(path).as_deref() {
            Some("parquet") => return Ok(Format::Parquet),
            Some("ndjson" | "jsonl" | "json") => return Ok(Format::Ndjson),
            _ => {}
        }
    }
    Err(InferFilesError::UnknownFormat { path: path.into() })
}

/// Statistics per event type of every event in `paths`; the first rejected record is an error.
pub fn infer_files(
    paths: &[PathBuf],
    time_field: &str,
    type_field: &str,
) -> Result<BTreeMap<String, Inferred>, InferFilesError> {
    let out = infer_files_with(paths, time_field, type_field, &Limits::default())?;
    match out.rejected.into_iter().next() {
        Some(d) => Err(InferFilesError::Rejected {
            location: d.location,
            reason: d.reason,
            detail: d.detail,
        }),
        None => Ok(out.by_type),
    }
}

/// Statistics per event type of every event in `paths`, with rejected records as dead letters
/// (stage `schema:infer`, reason as the readers give it or `depth_exceeded`).
pub fn infer_files_with(
    paths: &[PathBuf],
    time_field: &str,
    type_field: &str,
    limits: &Limits,
) -> Result<InferredFiles, InferFilesError> {
    let mut out = InferredFiles::default();
    for path in paths {
        let plan = SourcePlan {
            name: "infer".into(),
            format: format_of(path)?,
            paths: vec![path.clone()],
            time_field: time_field.into(),
            type_field: type_field.into(),
            fixed_type: None,
            time_unit_ms: 1.0,
            allowed_lateness_ms: 0,
            projection: None,
            fields: crate::plan::Fields::Open,
            limits: Default::default(),
            csv: Default::default(),
        };
        let layout = Layout::discover(&plan)?;
        let mut read = reader(&plan, &layout);
        for split in &layout.splits {
            read.read(split, &mut |chunk| {
                for decoded in chunk.drain(..) {
                    match decoded {
                        Decoded::Event(event, pos) => match observe_with(&event.payload, limits) {
                            Ok(i) => out
                                .by_type
                                .entry(event.kind.as_str().to_string())
                                .or_default()
                                .merge(&i),
                            Err(e) => out.rejected.push(DeadLetter {
                                stage: "schema:infer".into(),
                                reason: "depth_exceeded".into(),
                                detail: e.to_string(),
                                location: layout.location(split, pos),
                                record: event.json_text(time_field, type_field),
                                event_time: Some(event.time),
                                original: None,
                            }),
                        },
                        Decoded::Bad(d) => {
                            let mut d = *d;
                            d.stage = "schema:infer".into();
                            out.rejected.push(d);
                        }
                    }
                }
            })?;
        }
    }
    Ok(out)
}

/// The drift score, the changes and the verdict of each compatibility mode for going from `old`
/// to `new` (with `old` as the only earlier version, so each `*_TRANSITIVE` mode agrees with its
/// plain mode).
pub fn diff_report(old: &Schema, new: &Schema) -> String {
    let d = drift(old, new);
    let mut out = String::new();
    let _ = writeln!(out, "drift score: {:.3}", d.score);
    if d.changes.is_empty() {
        out.push_str("no changes\n");
    } else {
        let _ = writeln!(out, "changes ({}):", d.changes.len());
        for c in &d.changes {
            let _ = writeln!(out, "  {c}");
        }
    }
    out.push_str("compatibility:\n");
    let history = [old.clone()];
    for mode in Compatibility::ALL {
        match check(mode, &history, new) {
            Ok(()) => {
                let _ = writeln!(out, "  {:<20} accepts", mode.name());
            }
            Err(e) => {
                let _ = writeln!(out, "  {:<20} rejects: `{}`: {}", mode.name(), e.path, e.rule);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::kind::Kind;
    use crate::schema::schema::FieldSchema;
    use std::collections::BTreeSet;

    #[test]
    fn infers_ndjson_per_event_type() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("e.ndjson");
        let lines = [
            r#"{"t":"2024-01-01T00:00:00Z","type":"click","x":1,"tags":["a"]}"#,
            r#"{"t":"2024-01-01T00:00:01Z","type":"click","x":2.5}"#,
            r#"{"t":"2024-01-01T00:00:02Z","type":"view","page":{"url":"/"}}"#,
        ];
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        let by_type = infer_files(std::slice::from_ref(&file), "t", "type").unwrap();
        assert_eq!(by_type.keys().collect::<Vec<_>>(), ["click", "view"]);
        let click = by_type["click"].schema();
        assert_eq!(click.fields["x"].kinds, BTreeSet::from([Kind::Float]));
        assert!(click.fields["x"].required && !click.fields["tags"].required);
        assert!(!click.fields.contains_key("t") && !click.fields.contains_key("type"));
        assert!(by_type["view"].schema().fields["page.url"].required);

        std::fs::write(&file, lines[0].to_string() + "\n{\"type\":\"click\"}\nnot json\n").unwrap();
        let e = infer_files(std::slice::from_ref(&file), "t", "type")
            .unwrap_err()
            .to_string();
        assert!(e.contains("e.ndjson:2: missing_time"), "{e}");
        let out = infer_files_with(&[file], "t", "type", &Limits::default()).unwrap();
        assert_eq!(out.rejected.len(), 2);
        assert_eq!(out.by_type["click"].events, 1);

        let deep = dir.path().join("deep.jsonl");
        let mut v = "1".to_string();
        for _ in 0..5 {
            v = format!("{{\"a\":{v}}}");
        }
        std::fs::write(&deep, format!("{{\"t\":0,\"type\":\"d\",\"p\":{v}}}\n")).unwrap();
        let limits = Limits {
            max_depth: 4,
            ..Limits::default()
        };
        let out = infer_files_with(std::slice::from_ref(&deep), "t", "type", &limits).unwrap();
        assert_eq!(out.rejected[0].reason, "depth_exceeded");
        assert!(out.rejected[0].location.ends_with("deep.jsonl:1"));
        let e = infer_files(&[dir.path().join("x.csv")], "t", "type").unwrap_err();
        assert!(matches!(e, InferFilesError::UnknownFormat { .. }));
    }

    #[test]
    fn infers_generated_parquet_and_ndjson() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["l.parquet", "l.ndjson"] {
            let file = dir.path().join(name);
            crate::generate::generate("learning", 300, 7, &file, false).unwrap();
            let by_type = infer_files(&[dir.path().to_path_buf().join(name)], "event_time", "event_type").unwrap();
            let events: u64 = by_type.values().map(|i| i.events).sum();
            assert_eq!(events, 300, "{name}");
            let attempt = by_type["attempt"].schema();
            assert!(attempt.fields["user_id"].required, "{name}");
            assert_eq!(attempt.fields["correct"].kinds, BTreeSet::from([Kind::Bool]), "{name}");
            assert!(attempt.fields.contains_key("device.os"), "{name}");
            assert!(attempt.fields.contains_key("topics[]"), "{name}");
        }
    }

    #[test]
    fn diff_report_lists_changes_and_modes() {
        let old = Schema::from_fields([(
            "n",
            FieldSchema {
                required: true,
                ..FieldSchema::of([Kind::Int])
            },
        )]);
        let new = Schema::from_fields([
            (
                "n",
                FieldSchema {
                    required: true,
                    ..FieldSchema::of([Kind::Float])
                },
            ),
            ("note", FieldSchema::of([Kind::String])),
        ]);
        let r = diff_report(&old, &new);
        assert_eq!(
            r,
            "drift score: 0.667\n\
             changes (2):\n  \
               n: type int -> float (widening)\n  \
               note: added (optional)\n\
             compatibility:\n  \
               BACKWARD             accepts\n  \
               BACKWARD_TRANSITIVE  accepts\n  \
               FORWARD              rejects: `n`: the old schema cannot read new data: written as float, read as int\n  \
               FORWARD_TRANSITIVE   rejects: `n`: the old schema cannot read new data: written as float, read as int\n  \
               FULL                 rejects: `n`: the old schema cannot read new data: written as float, read as int\n  \
               FULL_TRANSITIVE      rejects: `n`: the old schema cannot read new data: written as float, read as int\n  \
               NONE                 accepts\n"
        );
        assert!(diff_report(&old, &old).contains("drift score: 0.000\nno changes\n"));
    }
}
