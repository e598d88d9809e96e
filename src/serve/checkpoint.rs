//! Checkpoints: the outputs written up to a cut, and the point of the write-ahead log a restart
//! replays from, so the log's older segments can go while the server runs.
//!
//! ```text
//!  sequencer ── request k ──► every sink (worker 0, woken by a SyncActivator): write the rows
//!      ▲                      before its input frontier F as a part, fsync, ack (k, parts, F)
//!      └──── all acked ◄──────┘
//!  cut = min F over sinks; replay_from = the first record that can still change an output at
//!  or after the cut (super::order); write checkpoint.json (fsync, rename); remove segments
//!  before replay_from
//! ```
//!
//! Stateful operators (deduplication, schema stages, joins) save their state at a frontier `F`
//! alongside ([`super::snapshots`]); a checkpoint names the latest complete snapshot whose `F`
//! is at or before the cut minus the retention's lag, and its replay point also keeps every
//! record holding a stateful source's event at or after `F`.
//!
//! A restart reads `checkpoint.json`: each output keeps its first `parts` part files (later
//! ones are deleted) and drops the rows its replay recomputes before its own cut; `counters`-like
//! snapshot outputs start from the totals saved here; stateful operators restore their state
//! and drop their input before `F`; the log is replayed from `replay_from` with the watermark
//! state saved for that record (each source's floor and its partitions' largest event times).
//! The outputs after a restart are those of an uninterrupted run because every record that can
//! change a row at or after a cut, or an operator's state after `F`, is replayed
//! ([`crate::plan::retention`]), and records are admitted in log order from the same state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use timely::scheduling::SyncActivator;

use super::partitions::Marks;
use super::snapshots::StateMark;
use super::wal::WalError;
use crate::value::Value;

/// The file in the log's folder.
pub const MANIFEST: &str = "checkpoint.json";

/// What a checkpoint saved.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub pipeline: String,
    /// The folder of the outputs named in `outputs`.
    pub out_dir: PathBuf,
    /// Checkpoints taken by every run on this log.
    pub checkpoints: u64,
    /// The first record a restart replays.
    pub replay_from: u64,
    /// Each TCP source's watermark state (floor, present partitions and their largest event
    /// times) after the records before `replay_from`.
    #[serde(default)]
    pub watermarks: Vec<Marks>,
    /// Lines of each named client the log has held (for resends after a restart).
    pub clients: BTreeMap<String, u64>,
    /// When each of those clients was last active (epoch ms), so that `--client-retention`
    /// counts across restarts.
    #[serde(default)]
    pub client_seen: BTreeMap<String, i64>,
    pub outputs: BTreeMap<String, OutputMark>,
    /// The stateful operators' snapshot a restart restores ([`super::snapshots`]): its frontier
    /// is at or before every output's cut minus the retention's lag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateMark>,
}

/// How far one output is written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutputMark {
    /// Part files `part-00000 .. part-{parts-1}` hold every row before `cut`, and nothing else.
    pub parts: usize,
    pub cut: u64,
    /// A snapshot output's totals (row, count) before `cut`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Vec<(Vec<Value>, i64)>>,
}

impl Manifest {
    /// The checkpoint in `dir`, if one was written.
    pub fn load(dir: &Path) -> Result<Option<Manifest>, WalError> {
        let path = dir.join(MANIFEST);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(WalError::Io { path, source }),
        };
        serde_json::from_str(&text).map(Some).map_err(|e| WalError::Corrupt {
            path,
            message: e.to_string(),
        })
    }

    /// Writes the checkpoint atomically: a temporary file, fsync, rename, fsync of the folder.
    pub fn store(&self, dir: &Path) -> Result<(), WalError> {
        let path = dir.join(MANIFEST);
        let tmp = dir.join(format!("{MANIFEST}.tmp"));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| WalError::Io { path, source }
        };
        let text = serde_json::to_vec(self).map_err(|e| WalError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&text).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
    }

    /// Removes the checkpoint (the log it describes is gone).
    pub fn remove(dir: &Path) -> Result<(), WalError> {
        let path = dir.join(MANIFEST);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(WalError::Io { path, source: e }),
            _ => Ok(()),
        }
    }
}

/// A sink's answer to a checkpoint request.
#[derive(Debug, Clone)]
pub struct Ack {
    pub request: u64,
    pub mark: OutputMark,
}

struct Slot {
    name: String,
    activator: SyncActivator,
    ack: Option<Ack>,
}

/// Shared by the sequencer (which asks) and worker 0's sinks (which answer).
pub struct Checkpoints {
    /// What the outputs held at the last checkpoint of an earlier run.
    resume: BTreeMap<String, OutputMark>,
    requested: AtomicU64,
    /// Every sink has registered.
    ready: AtomicBool,
    slots: Mutex<Vec<Slot>>,
}

impl Checkpoints {
    pub fn new(resume: BTreeMap<String, OutputMark>) -> Checkpoints {
        Checkpoints {
            resume,
            requested: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            slots: Mutex::new(Vec::new()),
        }
    }

    /// Where output `name` resumes, after a restart.
    pub fn resume(&self, name: &str) -> Option<&OutputMark> {
        self.resume.get(name)
    }

    /// A sink takes part; it is woken through `activator` when a checkpoint is requested.
    pub fn register(&self, name: &str, activator: SyncActivator) -> usize {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.push(Slot {
            name: name.to_string(),
            activator,
            ack: None,
        });
        slots.len() - 1
    }

    /// Every sink is registered: requests may start.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// The latest request (0 for none).
    pub fn requested(&self) -> u64 {
        self.requested.load(Ordering::Acquire)
    }

    /// Asks every sink to write its rows up to its frontier; returns the request's number, or
    /// `None` before the sinks are registered.
    pub fn request(&self) -> Option<u64> {
        if !self.ready.load(Ordering::Acquire) {
            return None;
        }
        let id = self.requested.fetch_add(1, Ordering::AcqRel) + 1;
        for slot in self.slots.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            // A worker that has stopped needs no waking.
            let _ = slot.activator.activate();
        }
        Some(id)
    }

    pub fn ack(&self, slot: usize, ack: Ack) {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())[slot].ack = Some(ack);
    }

    /// Every output's mark, once every sink has answered request `id`.
    pub fn complete(&self, id: u64) -> Option<BTreeMap<String, OutputMark>> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = BTreeMap::new();
        for slot in slots.iter() {
            let ack = slot.ack.as_ref().filter(|a| a.request >= id)?;
            out.insert(slot.name.clone(), ack.mark.clone());
        }
        Some(out)
    }
}

/// Deletes the part files of each output beyond what the checkpoint holds (written after it),
/// and every part of outputs it does not name.
pub fn prune_outputs(names: &[String], out_dir: &Path, marks: &BTreeMap<String, OutputMark>) -> Result<(), WalError> {
    for name in names {
        let folder = out_dir.join(name);
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        let keep = marks.get(name).map_or(0, |m| m.parts);
        for entry in entries.flatten() {
            let path = entry.path();
            let index = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("part-"))
                .and_then(|n| n.strip_suffix(".parquet"))
                .and_then(|n| n.parse::<usize>().ok());
            // A snapshot output rewrites its one part in place.
            let snapshot = marks.get(name).is_some_and(|m| m.snapshot.is_some());
            let stale = index.is_some_and(|i| i >= keep) && !snapshot;
            if stale || path.extension().is_some_and(|e| e == "tmp") {
                std::fs::remove_file(&path).map_err(|source| WalError::Io { path, source })?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_round_trips_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), None);
        let mut m = Manifest {
            pipeline: "p".into(),
            out_dir: "/out".into(),
            checkpoints: 3,
            replay_from: 42,
            watermarks: vec![
                Marks {
                    high: Some(9),
                    floor: Some(7),
                    partitions: [("a".to_string(), Some(7)), ("#2".to_string(), None)].into(),
                },
                Marks::default(),
            ],
            clients: [("a".to_string(), 9)].into(),
            client_seen: [("a".to_string(), 1_700_000_000_000)].into(),
            outputs: BTreeMap::new(),
            state: Some(StateMark {
                id: 3,
                frontier: 60_000,
                workers: 2,
                operators: [(
                    "dedup.events".to_string(),
                    vec!["0000000003/dedup.events.w0.state".into()],
                )]
                .into(),
            }),
        };
        m.outputs.insert(
            "counters".into(),
            OutputMark {
                parts: 1,
                cut: 5,
                snapshot: Some(vec![(vec![Value::str("processed"), Value::Null], 12)]),
            },
        );
        m.store(dir.path()).unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), Some(m.clone()));
        m.replay_from = 50;
        m.store(dir.path()).unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap().unwrap().replay_from, 50);
        assert!(!dir.path().join("checkpoint.json.tmp").exists());
        std::fs::write(dir.path().join(MANIFEST), "{").unwrap();
        let err = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("checkpoint.json"), "{err}");
    }

    #[test]
    fn pruning_keeps_the_checkpointed_parts() {
        let dir = tempfile::tempdir().unwrap();
        for (name, n) in [("a", 3), ("b", 2), ("c", 1)] {
            std::fs::create_dir_all(dir.path().join(name)).unwrap();
            for i in 0..n {
                std::fs::write(dir.path().join(name).join(format!("part-{i:05}.parquet")), b"x").unwrap();
            }
        }
        let mut marks = BTreeMap::new();
        marks.insert(
            "a".to_string(),
            OutputMark {
                parts: 2,
                cut: 9,
                snapshot: None,
            },
        );
        marks.insert(
            "c".to_string(),
            OutputMark {
                parts: 1,
                cut: 9,
                snapshot: Some(Vec::new()),
            },
        );
        let names = ["a", "b", "c"].map(String::from);
        prune_outputs(&names, dir.path(), &marks).unwrap();
        let count = |n: &str| std::fs::read_dir(dir.path().join(n)).unwrap().count();
        assert_eq!((count("a"), count("b"), count("c")), (2, 0, 1));
    }
}
