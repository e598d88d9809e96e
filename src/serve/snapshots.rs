//! The store of operator state snapshots ([`crate::render::snapshot`]): the checkpoints' side.
//!
//! ```text
//!  sequencer ── request (id, F) ──► every stateful operator on every worker (woken by its
//!      ▲                            SyncActivator): state at F ──► writer thread: OUT/.sluice-state/
//!      │                            ID/NAME.wK.state (temporary name, fsync, rename)
//!      └──── complete(id): every instance's file is durable; the folder is fsynced ◄──┘
//! ```
//!
//! A complete snapshot is only a candidate: a checkpoint points at it (in `checkpoint.json`,
//! [`super::checkpoint::Manifest::state`]) once its frontier is at or before the outputs' cut
//! minus the retention's lag, so the manifest only ever names complete, fsynced files. Folders
//! that no checkpoint names and no candidate needs are removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use timely::scheduling::SyncActivator;

use super::wal::WalError;
use crate::render::snapshot::{Restore, StateStore, Wanted};

/// The folder of state snapshots, inside the outputs' folder.
pub const STATE_DIR: &str = ".sluice-state";

/// A complete snapshot: every stateful operator's state at `frontier`, one file per worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateMark {
    pub id: u64,
    pub frontier: u64,
    /// Workers of the run that wrote it.
    pub workers: usize,
    /// Per operator, its file for each worker, relative to the state folder.
    pub operators: BTreeMap<String, Vec<String>>,
}

struct Slot {
    name: String,
    worker: usize,
    activator: SyncActivator,
    /// The latest snapshot answered, with the file written or why there is none.
    answer: Option<(u64, Result<String, String>)>,
}

#[derive(Default)]
struct Inner {
    slots: Vec<Slot>,
    wanted: Option<Wanted>,
}

/// A state to write: snapshot, slot, file (relative) and contents.
struct Job {
    id: u64,
    slot: usize,
    file: String,
    bytes: Vec<u8>,
}

/// Shared by the sequencer (which asks and chooses) and every worker's stateful operators.
pub struct Snapshots {
    dir: PathBuf,
    workers: usize,
    /// The snapshot a restart resumes from.
    restore: Option<StateMark>,
    next_id: Mutex<u64>,
    inner: Arc<Mutex<Inner>>,
    rendered: AtomicUsize,
    failure: Mutex<Option<String>>,
    writer: Mutex<SyncSender<Job>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Snapshots {
    /// Snapshots under `out_dir`, for `workers` workers, resuming from `restore`.
    pub fn new(out_dir: &Path, workers: usize, restore: Option<StateMark>) -> Arc<Snapshots> {
        let dir = out_dir.join(STATE_DIR);
        let inner: Arc<Mutex<Inner>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(4);
        let (folder, answers) = (dir.clone(), Arc::clone(&inner));
        // The thread ends when the store is dropped (its sender with it).
        std::thread::Builder::new()
            .name("sluice-state".into())
            .spawn(move || {
                for job in rx {
                    let written = write_file(&folder, &job.file, &job.bytes).map(|()| job.file);
                    if let Some(slot) = lock(&answers).slots.get_mut(job.slot) {
                        slot.answer = Some((job.id, written));
                    }
                }
            })
            .expect("the state writer starts");
        Arc::new(Snapshots {
            dir,
            workers,
            next_id: Mutex::new(restore.as_ref().map_or(0, |r| r.id) + 1),
            restore,
            inner,
            rendered: AtomicUsize::new(0),
            failure: Mutex::new(None),
            writer: Mutex::new(tx),
        })
    }

    /// The folder of the snapshots.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// One worker has rendered its dataflow (its operators are registered).
    pub fn rendered(&self) {
        self.rendered.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether every worker has rendered and some operator keeps state: snapshots may start.
    pub fn ready(&self) -> bool {
        self.rendered.load(Ordering::Acquire) >= self.workers && !lock(&self.inner).slots.is_empty()
    }

    /// The first error an operator met restoring its state.
    pub fn failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }

    /// Asks every stateful operator for its state at `frontier`; returns the snapshot's id.
    pub fn request(&self, frontier: u64) -> u64 {
        let id = {
            let mut next = lock(&self.next_id);
            *next += 1;
            *next - 1
        };
        let mut inner = lock(&self.inner);
        inner.wanted = Some(Wanted { id, frontier });
        for slot in &inner.slots {
            // A worker that has stopped needs no waking.
            let _ = slot.activator.activate();
        }
        id
    }

    /// Snapshot `id` once every operator instance has answered: its mark (every file durable,
    /// the folder fsynced), or why it cannot be used.
    pub fn complete(&self, id: u64) -> Option<Result<StateMark, String>> {
        let inner = lock(&self.inner);
        let frontier = inner.wanted.filter(|w| w.id == id)?.frontier;
        let mut operators: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for slot in &inner.slots {
            match &slot.answer {
                Some((answered, Ok(file))) if *answered == id => {
                    let files = operators.entry(slot.name.clone()).or_default();
                    files.resize(files.len().max(slot.worker + 1), String::new());
                    files[slot.worker] = file.clone();
                }
                Some((answered, Err(e))) if *answered == id => return Some(Err(e.clone())),
                _ => return None,
            }
        }
        drop(inner);
        let folder = self.dir.join(folder_name(id));
        if let Err(e) = sync_dir(&folder).and_then(|()| sync_dir(&self.dir)) {
            return Some(Err(e.to_string()));
        }
        Some(Ok(StateMark {
            id,
            frontier,
            workers: self.workers,
            operators,
        }))
    }

    /// Removes every snapshot folder but those of `keep`.
    pub fn remove_except(&self, keep: &[u64]) -> Result<(), WalError> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(());
        };
        let keep: Vec<String> = keep.iter().map(|id| folder_name(*id)).collect();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !keep.contains(&name) {
                let path = entry.path();
                std::fs::remove_dir_all(&path).map_err(|source| WalError::Io { path, source })?;
            }
        }
        Ok(())
    }
}

/// Removes the snapshots under `out_dir` (a new session, or a finished one).
pub fn remove_all(out_dir: &Path) -> Result<(), WalError> {
    let path = out_dir.join(STATE_DIR);
    match std::fs::remove_dir_all(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(WalError::Io { path, source: e }),
        _ => Ok(()),
    }
}

fn folder_name(id: u64) -> String {
    format!("{id:010}")
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| WalError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

/// Writes `bytes` to `dir/file` whole or not at all: a temporary name, fsync, rename.
fn write_file(dir: &Path, file: &str, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let path = dir.join(file);
    let tmp = dir.join(format!("{file}.tmp"));
    let fail = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| fail(parent, e))?;
    }
    let mut f = std::fs::File::create(&tmp).map_err(|e| fail(&tmp, e))?;
    f.write_all(bytes).map_err(|e| fail(&tmp, e))?;
    f.sync_all().map_err(|e| fail(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| fail(&path, e))
}

impl StateStore for Snapshots {
    fn register_state(&self, name: &str, worker: usize, activator: SyncActivator) -> usize {
        let mut inner = lock(&self.inner);
        inner.slots.push(Slot {
            name: name.to_string(),
            worker,
            activator,
            answer: None,
        });
        inner.slots.len() - 1
    }

    fn wanted(&self) -> Option<Wanted> {
        lock(&self.inner).wanted
    }

    fn save(&self, slot: usize, id: u64, state: Result<Vec<u8>, String>) {
        let bytes = match state {
            Ok(bytes) => bytes,
            Err(e) => {
                if let Some(s) = lock(&self.inner).slots.get_mut(slot) {
                    s.answer = Some((id, Err(e)));
                }
                return;
            }
        };
        let file = {
            let inner = lock(&self.inner);
            let s = &inner.slots[slot];
            format!("{}/{}.w{}.state", folder_name(id), s.name, s.worker)
        };
        let sent = lock(&self.writer).send(Job { id, slot, file, bytes });
        if sent.is_err() {
            if let Some(s) = lock(&self.inner).slots.get_mut(slot) {
                s.answer = Some((id, Err("the state writer stopped".into())));
            }
        }
    }

    fn restored(&self, name: &str) -> Result<Option<Restore>, String> {
        let Some(mark) = &self.restore else {
            return Ok(None);
        };
        let Some(files) = mark.operators.get(name) else {
            return Err(format!(
                "the checkpoint's state snapshot {} has no state for operator `{name}`: the spec \
                 changed since it was written; finish that session with its spec (a graceful \
                 shutdown), or remove the log folder",
                self.dir.join(folder_name(mark.id)).display()
            ));
        };
        Ok(Some(Restore {
            frontier: mark.frontier,
            files: files.iter().map(|f| self.dir.join(f)).collect(),
        }))
    }

    fn fail(&self, message: String) {
        lock(&self.failure).get_or_insert(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_appear_whole_and_folders_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(STATE_DIR);
        write_file(&state, "0000000001/a.w0.state", b"one").unwrap();
        write_file(&state, "0000000002/a.w0.state", b"two").unwrap();
        assert_eq!(std::fs::read(state.join("0000000002/a.w0.state")).unwrap(), b"two");
        assert!(!state.join("0000000002/a.w0.state.tmp").exists());
        let store = Snapshots::new(dir.path(), 1, None);
        store.remove_except(&[2]).unwrap();
        assert!(!state.join("0000000001").exists());
        assert!(state.join("0000000002").exists());
        remove_all(dir.path()).unwrap();
        assert!(!state.exists());
        remove_all(dir.path()).unwrap();
    }

    #[test]
    fn a_restore_names_each_workers_file_and_refuses_an_unknown_operator() {
        let dir = tempfile::tempdir().unwrap();
        let mark = StateMark {
            id: 7,
            frontier: 60_000,
            workers: 2,
            operators: [("dedup.events".to_string(), vec!["a".to_string(), "b".to_string()])].into(),
        };
        let store = Snapshots::new(dir.path(), 1, Some(mark));
        let r = store.restored("dedup.events").unwrap().unwrap();
        assert_eq!(r.frontier, 60_000);
        assert_eq!(r.files, vec![store.dir().join("a"), store.dir().join("b")]);
        let err = store.restored("schema.events").unwrap_err();
        assert!(err.contains("schema.events") && err.contains("spec changed"), "{err}");
        assert_eq!(store.request(5), 8, "ids continue after the restored snapshot");
    }
}
