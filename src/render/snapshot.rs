//! State snapshots of the operators that keep what every event taught them (deduplication, the
//! schema stage, as-of and continuous joins), so that `sluice serve` can truncate the log of
//! every source: each such operator saves its state at a frontier `F` that a checkpoint asks
//! for, and a restart restores it and drops what it receives before `F`.
//!
//! ```text
//!  store: wanted (id, F) ──► operator, on every worker: apply the times before F, save the
//!                            state (every time < F applied, none ≥ F), then go on
//!  restart: restored (F, one file per worker of the run that saved it) ──► operator: load the
//!           keys it owns now, drop every input update before F
//! ```
//!
//! Every operator on every worker saves at the same `F`, so the snapshots form one consistent
//! cut: together they hold exactly the effect of the inputs before `F`, and updates in flight
//! between operators are at `F` or later, which the replay of the log sends again. `F` is
//! chosen where no operator has applied a time yet (the sources' watermarks when it is asked
//! for), and an operator that has nonetheless gone past it answers that it missed it.
//!
//! State is saved per worker, keyed as the operator's exchange routes it. A restart with the
//! same number of workers reads its own file; with another number, each worker reads every
//! file and keeps the keys that now hash to it ([`owns`]), so state moves with its keys. The
//! store that writes the files and chooses which snapshot a restart uses is the caller's
//! (`sluice serve`'s checkpoints); this module only knows the [`StateStore`] trait.

use std::path::PathBuf;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use timely::scheduling::SyncActivator;

/// A snapshot asked for: its number and the frontier to save at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub id: u64,
    pub frontier: u64,
}

/// The state a restarted operator starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restore {
    /// Every input time before it is in the state.
    pub frontier: u64,
    /// What each worker of the run that saved it wrote, by worker index.
    pub files: Vec<PathBuf>,
}

/// Where operators save their state and find it after a restart (`sluice serve`'s
/// checkpoints implement it).
pub trait StateStore: Send + Sync {
    /// An operator instance takes part; `activator` wakes it when a snapshot is asked for.
    fn register_state(&self, name: &str, worker: usize, activator: SyncActivator) -> usize;
    /// The snapshot asked for last, if any.
    fn wanted(&self) -> Option<Wanted>;
    /// An instance's state for snapshot `id` (or why it has none), to be made durable.
    fn save(&self, slot: usize, id: u64, state: Result<Vec<u8>, String>);
    /// Where operator `name` resumes; an error when the checkpoint cannot restore it.
    fn restored(&self, name: &str) -> Result<Option<Restore>, String>;
    /// Records an error that stops the run (a state file that cannot be read).
    fn fail(&self, message: String);
}

/// Whether a key whose exchange hash is `hash` lives on `worker` of `peers` (timely's exchange
/// routes by the hash modulo the number of workers).
pub fn owns(hash: u64, worker: usize, peers: usize) -> bool {
    (hash % peers as u64) as usize == worker
}

/// The file's first bytes, and the version of its layout.
const MAGIC: &[u8; 8] = b"SLUICEST";
const VERSION: u32 = 1;

/// What a state file says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Header {
    operator: String,
    worker: usize,
    peers: usize,
    frontier: u64,
}

/// A state file: magic, version, CRC-32 of the rest, then the header and the state (bincode).
fn encode<T: Serialize>(header: &Header, state: &T) -> Result<Vec<u8>, String> {
    let body = bincode::serialize(&(header, state)).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(body.len() + 16);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<(Header, T), String> {
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Err("not a sluice state file".into());
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(format!("state file version {version}; this sluice reads {VERSION}"));
    }
    let crc = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    let body = &bytes[16..];
    if crc32fast::hash(body) != crc {
        return Err("the checksum does not match: the file is corrupt".into());
    }
    bincode::deserialize(body).map_err(|e| e.to_string())
}

/// One operator instance's side of snapshots.
pub struct OperatorState {
    store: Arc<dyn StateStore>,
    slot: usize,
    name: String,
    worker: usize,
    peers: usize,
    /// The last snapshot answered.
    answered: u64,
    /// Every input time before this is applied.
    applied: u64,
    /// Input updates before this are in the restored state: dropped.
    restored: u64,
}

impl OperatorState {
    /// Registers operator `name` (unique in the dataflow) on worker `worker` of `peers`.
    pub fn register(
        store: &Arc<dyn StateStore>,
        name: &str,
        worker: usize,
        peers: usize,
        activator: SyncActivator,
    ) -> OperatorState {
        OperatorState {
            slot: store.register_state(name, worker, activator),
            store: Arc::clone(store),
            name: name.to_string(),
            worker,
            peers,
            answered: 0,
            applied: 0,
            restored: 0,
        }
    }

    /// Reads the states this instance resumes from: from each file of the snapshot, the state
    /// whose keys it then keeps with [`OperatorState::owns`] (one file when the number of
    /// workers is unchanged, or when `broadcast`: every worker holds the same state). Nothing
    /// without a snapshot; on an error, the store records it and nothing is restored.
    pub fn restore<T: DeserializeOwned>(&mut self, broadcast: bool) -> Vec<T> {
        match self.read(broadcast) {
            Ok(states) => states,
            Err(e) => {
                self.store.fail(format!("operator `{}`: {e}", self.name));
                Vec::new()
            }
        }
    }

    fn read<T: DeserializeOwned>(&mut self, broadcast: bool) -> Result<Vec<T>, String> {
        let Some(restore) = self.store.restored(&self.name)? else {
            return Ok(Vec::new());
        };
        let files: Vec<&PathBuf> = if broadcast || restore.files.len() == self.peers {
            restore
                .files
                .get(self.worker % restore.files.len().max(1))
                .into_iter()
                .collect()
        } else {
            restore.files.iter().collect()
        };
        let mut states = Vec::new();
        for path in files {
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let (header, state): (Header, T) = decode(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            if header.operator != self.name || header.frontier != restore.frontier {
                return Err(format!(
                    "{}: holds operator `{}` at {}, not `{}` at {}",
                    path.display(),
                    header.operator,
                    header.frontier,
                    self.name,
                    restore.frontier
                ));
            }
            states.push(state);
        }
        self.restored = restore.frontier;
        self.applied = restore.frontier;
        Ok(states)
    }

    /// Whether this instance keeps a restored key whose exchange hash is `hash`.
    pub fn owns(&self, hash: u64) -> bool {
        owns(hash, self.worker, self.peers)
    }

    /// The restored state's frontier (0 without one): input updates before it are in the
    /// state already, and dropped.
    pub fn restored(&self) -> u64 {
        self.restored
    }

    /// The snapshot to save now, if one is asked for and the input frontier (`limit`; `None`
    /// once the input is exhausted, when no snapshot is taken) has reached its frontier. The
    /// operator then applies the times before that frontier, and calls [`OperatorState::save`].
    pub fn due(&mut self, limit: Option<u64>) -> Option<Wanted> {
        let wanted = self.store.wanted().filter(|w| w.id > self.answered)?;
        if wanted.frontier < self.applied {
            // Times at or after the frontier may be applied already: this cut is lost.
            self.answered = wanted.id;
            let why = format!(
                "operator `{}` had applied its input up to {}, past the snapshot's frontier {}",
                self.name, self.applied, wanted.frontier
            );
            self.store.save(self.slot, wanted.id, Err(why));
            return None;
        }
        limit.filter(|l| *l >= wanted.frontier).map(|_| wanted)
    }

    /// Notes that every input time before `limit` is applied.
    pub fn applied(&mut self, limit: Option<u64>) {
        if let Some(l) = limit {
            self.applied = self.applied.max(l);
        }
    }

    /// Saves `state`, which holds every input time before `wanted.frontier` and none after.
    pub fn save<T: Serialize>(&mut self, wanted: Wanted, state: &T) {
        let header = Header {
            operator: self.name.clone(),
            worker: self.worker,
            peers: self.peers,
            frontier: wanted.frontier,
        };
        self.answered = wanted.id;
        self.applied = self.applied.max(wanted.frontier);
        let bytes = encode(&header, state).map_err(|e| format!("operator `{}`: {e}", self.name));
        self.store.save(self.slot, wanted.id, bytes);
    }
}

/// Applies an operator's input up to the frontier `limit` with `apply(until, target)`; when a
/// snapshot is due ([`OperatorState::due`]), first up to its frontier, then saves `save(target)`.
pub fn apply_with_snapshots<T, S: Serialize>(
    state: &mut Option<OperatorState>,
    limit: Option<u64>,
    target: &mut T,
    mut apply: impl FnMut(Option<u64>, &mut T),
    save: impl FnOnce(&T) -> S,
) {
    if let Some(s) = state {
        if let Some(wanted) = s.due(limit) {
            apply(Some(wanted.frontier), target);
            s.save(wanted, &save(target));
        }
    }
    apply(limit, target);
    if let Some(s) = state {
        s.applied(limit);
    }
}

/// The name under which an operator's state is saved: its kind and what it belongs to, kept to
/// characters that are safe in a file name.
pub fn state_name(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| {
            p.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_file_round_trips_and_corruption_is_detected() {
        let header = Header {
            operator: "dedup.events".into(),
            worker: 1,
            peers: 2,
            frontier: 60_000,
        };
        let state = vec![(crate::value::Value::str("k"), 5i64)];
        let mut bytes = encode(&header, &state).unwrap();
        let (h, s): (Header, Vec<(crate::value::Value, i64)>) = decode(&bytes).unwrap();
        assert_eq!((h, s), (header, state));
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let err = decode::<Vec<(crate::value::Value, i64)>>(&bytes).unwrap_err();
        assert!(err.contains("checksum"), "{err}");
        assert!(decode::<u8>(b"garbage")
            .unwrap_err()
            .contains("not a sluice state file"));
    }

    #[test]
    fn keys_are_owned_as_the_exchange_routes_them() {
        for peers in [1, 2, 3, 4] {
            for hash in [0u64, 1, 7, u64::MAX] {
                let owners: Vec<usize> = (0..peers).filter(|&w| owns(hash, w, peers)).collect();
                assert_eq!(owners.len(), 1, "hash {hash} on {peers} workers");
            }
        }
        assert_eq!(state_name(&["join", "events", "a b/c"]), "join.events.a_b_c");
    }
}
