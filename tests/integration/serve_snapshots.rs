//! State snapshots of `sluice serve`: a pipeline with every stateful stage (schema inference,
//! deduplication, an as-of join and a continuous join, each fed by tcp sources) is killed at
//! random points while it streams, restarted with other worker counts, and ends with the
//! outputs of a replay; meanwhile checkpoints remove log segments that held every source's
//! records.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::serve::{spawn_send, KillOnDrop};
use crate::serve_checkpoint::all_rows;
use crate::serve_util::{generate, Server};
use crate::stream_contexts::{contexts, Items};

const SPEC: &str = r#"
[pipeline]
name = "snapshots"
tick = "1s"

[sources.events]
format = "tcp"
time_field = "event_time"
type_field = "event_type"
allowed_lateness = "2m"

[sources.profiles]
format = "tcp"
time_field = "updated_at"
allowed_lateness = "2m"

[sources.items]
format = "tcp"
time_field = "updated_at"
allowed_lateness = "2m"

[schemas.events]
window = "10m"

[dedup.events.attempt]
key = ["client_attempt_id"]
ttl = "30m"

[enrich.events]
output = "enriched"

[[enrich.events.join]]
context = "profiles"
as = "profile"
on = { user_id = "user_id" }
fields = ["tier"]

[[enrich.events.join]]
context = "items"
as = "item"
on = { item_id = "item_id" }
fields = ["level"]
mode = "continuous"

[[aggregates]]
name = "tier_minute"
source = "events"
window = { tumbling = "1m" }
group_by = ["profile.tier"]
emit = "final"
measures.events = "count()"

[[aggregates]]
name = "level_minute"
source = "events"
where = "event_type == 'attempt'"
window = { tumbling = "1m" }
group_by = ["item.level"]
measures.attempts = "count()"
measures.users = "count_distinct(user_id)"
"#;

/// Watches the log folder: copies each segment once a newer one exists (it is complete) and
/// notes which tcp sources (by index) its records belong to.
struct SegmentWatch {
    seen: Arc<Mutex<BTreeMap<u64, BTreeSet<u16>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SegmentWatch {
    fn start(wal: PathBuf, scratch: PathBuf) -> SegmentWatch {
        let seen: Arc<Mutex<BTreeMap<u64, BTreeSet<u16>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&seen), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let mut segments = segments(&wal);
                segments.pop();
                for first in segments {
                    if s.lock().unwrap().contains_key(&first) {
                        continue;
                    }
                    let copy = scratch.join(first.to_string());
                    std::fs::create_dir_all(&copy).unwrap();
                    let name = format!("{first:020}.wal");
                    if std::fs::copy(wal.join(&name), copy.join(&name)).is_err() {
                        continue; // removed meanwhile
                    }
                    let mut sources = BTreeSet::new();
                    let opened = sluice::serve::wal::Wal::open(&copy, first, |_, record| {
                        if let sluice::serve::record::Record::Batch(b) = record {
                            sources.insert(b.source);
                        }
                    });
                    if opened.is_ok() {
                        s.lock().unwrap().insert(first, sources);
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        SegmentWatch {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// The tcp sources with records in segments that the log no longer holds.
    fn removed_sources(&self, wal: &Path) -> BTreeSet<u16> {
        let first_left = segments(wal).first().copied().unwrap_or(u64::MAX);
        let seen = self.seen.lock().unwrap();
        seen.range(..first_left).flat_map(|(_, s)| s.iter().copied()).collect()
    }
}

impl Drop for SegmentWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The first record numbers of the log's segments, in order.
fn segments(wal: &Path) -> Vec<u64> {
    let mut out: Vec<u64> = std::fs::read_dir(wal)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().strip_suffix(".wal")?.parse().ok())
        .collect();
    out.sort();
    out
}

/// Whether the log's checkpoint names a state snapshot.
fn snapshot_named(wal: &Path) -> bool {
    let text = std::fs::read_to_string(wal.join("checkpoint.json")).unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|m| m["state"]["frontier"].is_u64())
}

/// A small deterministic generator for the crash points.
fn next(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

fn finish(sender: &mut KillOnDrop, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = sender.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "{what}: send did not finish");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut report = String::new();
    std::io::Read::read_to_string(sender.0.stdout.as_mut().unwrap(), &mut report).unwrap();
    assert!(status.success(), "{what}: {report}");
    report
}

#[test]
fn stateful_stages_survive_random_crashes_and_every_sources_log_is_truncated() {
    for (seed, workers) in [(11u64, ["2", "1", "3", "2"]), (12, ["1", "3", "2", "1"])] {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().join("snapshots.toml");
        std::fs::write(&spec, SPEC).unwrap();
        let events = generate(dir.path(), "events.ndjson", 40_000, seed);
        let (profiles, items) = contexts(dir.path(), &events, Items::FirstAndChange);
        let count = |p: &Path| std::fs::read_to_string(p).unwrap().lines().count();
        let (n_events, n_profiles, n_items) = (count(&events), count(&profiles), count(&items));
        let flags = |w: &'static str| {
            vec![
                "--out",
                "served",
                "--wal",
                "wal",
                "--idle-timeout",
                "off",
                "--checkpoint-interval",
                "100ms",
                "--wal-segment-bytes",
                "65536",
                "--workers",
                w,
            ]
        };
        let wal = dir.path().join("wal");
        let watch = SegmentWatch::start(wal.clone(), dir.path().join("segments"));
        let mut server = Server::start(dir.path(), &spec, "127.0.0.1:0", &flags(workers[0]));
        let addr = server.addr;
        // The three streams advance through event time together.
        let secs = n_events as f64 / 5_000.0;
        let rate = |n: usize| format!("{:.0}", (n as f64 / secs).max(1.0));
        let (r_events, r_profiles, r_items) = (rate(n_events), rate(n_profiles), rate(n_items));
        let mut senders = [
            (&events, "events", "ev", r_events),
            (&profiles, "profiles", "pr", r_profiles),
            (&items, "items", "it", r_items),
        ]
        .map(|(file, source, client, rate)| {
            let args = [
                "--source", source, "--client", client, "--rate", &rate, "--window", "2000",
            ];
            KillOnDrop(spawn_send(dir.path(), file, addr, &args))
        });
        let mut rng = seed;
        for w in workers.iter().skip(1) {
            // Crash once a checkpoint names a state snapshot (so the restart restores one), at a
            // random point after that.
            let deadline = Instant::now() + Duration::from_secs(60);
            while !snapshot_named(&wal) {
                assert!(
                    Instant::now() < deadline,
                    "seed {seed}: no checkpoint names a state snapshot"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(200 + next(&mut rng) % 1200));
            server.crash();
            server = Server::start(dir.path(), &spec, &addr.to_string(), &flags(w));
        }
        for ((sender, what), n) in senders
            .iter_mut()
            .zip(["events", "profiles", "items"])
            .zip([n_events, n_profiles, n_items])
        {
            let report = finish(sender, what);
            assert!(
                report.contains(&format!("acknowledged {n}")),
                "seed {seed}: {what}: {report}"
            );
        }
        // Every source's records left the log while it ran.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let removed = watch.removed_sources(&wal);
            if removed.len() == 3 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "seed {seed}: removed segments held records of tcp sources {removed:?} only; {} segments left",
                segments(&wal).len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let summary = server.stop();
        assert!(summary.contains("log removed"), "{summary}");
        assert!(
            !dir.path().join("served/.sluice-state").exists(),
            "a clean stop removes the snapshots"
        );

        let inputs: Vec<String> = [("events", &events), ("profiles", &profiles), ("items", &items)]
            .iter()
            .map(|(s, p)| format!("{s}={}", p.display()))
            .collect();
        let mut args = vec!["run", spec.to_str().unwrap(), "--out", "replayed", "-q"];
        for i in &inputs {
            args.extend(["--input", i.as_str()]);
        }
        let out = crate::util::sluice(&args, dir.path());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let served = all_rows(&dir.path().join("served"));
        let replayed = all_rows(&dir.path().join("replayed"));
        assert_eq!(served.keys().collect::<Vec<_>>(), replayed.keys().collect::<Vec<_>>());
        for (name, rows) in &replayed {
            let got = &served[name];
            if got == rows {
                continue;
            }
            let (g, r): (BTreeSet<_>, BTreeSet<_>) = (got.iter().collect(), rows.iter().collect());
            let extra: Vec<_> = g.difference(&r).take(3).collect();
            let missing: Vec<_> = r.difference(&g).take(3).collect();
            panic!(
                "seed {seed}: {name} differs after crashes ({} rows served, {} replayed)\nserved only: \
                 {extra:#?}\nreplayed only: {missing:#?}",
                got.len(),
                rows.len()
            );
        }
        for name in ["enriched", "duplicates", "inferred_schemas", "level_minute"] {
            assert!(!replayed[name].is_empty(), "seed {seed}: {name} is empty");
        }
    }
}

/// A state file that does not read back stops the restart with an error naming it.
#[test]
fn a_corrupt_state_file_stops_the_restart_naming_it() {
    let spec_text = r#"
[pipeline]
name = "dedup_only"
tick = "1s"

[sources.events]
format = "tcp"
time_field = "event_time"
type_field = "event_type"
allowed_lateness = "2m"

[dedup.events.attempt]
key = ["client_attempt_id"]
ttl = "10m"

[[aggregates]]
name = "per_minute"
source = "events"
window = { tumbling = "1m" }
measures.n = "count()"
"#;
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("dedup_only.toml");
    std::fs::write(&spec, spec_text).unwrap();
    let events = generate(dir.path(), "events.ndjson", 5_000, 13);
    let flags = [
        "--out",
        "served",
        "--wal",
        "wal",
        "--idle-timeout",
        "off",
        "--checkpoint-interval",
        "50ms",
    ];
    let server = Server::start(dir.path(), &spec, "127.0.0.1:0", &flags);
    crate::serve_util::send(dir.path(), &events, server.addr, &["--client", "c", "--rate", "2000"]);
    let wal = dir.path().join("wal");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !snapshot_named(&wal) {
        assert!(Instant::now() < deadline, "no checkpoint names a state snapshot");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.crash();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(wal.join("checkpoint.json")).unwrap()).unwrap();
    let file = manifest["state"]["operators"]["dedup.events"][0]
        .as_str()
        .unwrap()
        .to_string();
    let path = dir.path().join("served/.sluice-state").join(&file);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let out = std::process::Command::new(crate::util::sluice_bin())
        .args(["serve", spec.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(flags)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&file) && err.contains("checksum"), "{err}");
}
