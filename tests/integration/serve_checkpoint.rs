//! Checkpoints of `sluice serve`: outputs are written up to their frontier and the write-ahead
//! log loses its older segments while the server runs, and a crash after checkpoints (with the
//! log truncated) still ends with the outputs of an uninterrupted run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use crate::serve_util::{generate, outputs, replay, Server};
use crate::util::parquet_lines_by_name;

/// Every output: dead letters as [`outputs`] reads them, the rest by column name.
pub(crate) fn all_rows(out: &Path) -> BTreeMap<String, Vec<String>> {
    let mut all = outputs(out);
    for (name, rows) in all.iter_mut() {
        if name != "dead_letters" {
            *rows = parquet_lines_by_name(&out.join(name));
        }
    }
    all
}

/// Windows of at most ten minutes (so the log can be truncated), enrichment with rules (ordered
/// delivery, rule statistics, routed events, cumulative counters) and dead letters.
const SPEC: &str = r#"
[pipeline]
name = "checkpointed"
tick = "1s"

[sources.events]
format = "tcp"
time_field = "event_time"
type_field = "event_type"
allowed_lateness = "2m"

[enrich.events]
output = "enriched"
order_by = ["user_id"]
rule_stats_window = "5m"

[enrich.events.derive]
speed = "bucket(response_time_ms, [1000, 5000], ['rapid', 'quick', 'slow'])"

[[enrich.events.rule]]
id = "bots"
when = "matches(user_agent, '(?i)bot|curl/|python-requests')"
action = "block"

[[enrich.events.rule]]
id = "onboarding"
when = "event_type == 'placement'"
action = "route"
destination = "onboarding"

[[aggregates]]
name = "region_minute"
source = "events"
window = { tumbling = "1m" }
group_by = ["region"]
emit = "final"
measures.events = "count()"
measures.max_response_ms = "max(response_time_ms)"

[[aggregates]]
name = "plan_sliding_10m"
source = "events"
where = "event_type == 'attempt'"
window = { size = "10m", slide = "1m" }
group_by = ["plan"]
measures.attempts = "count()"
measures.accuracy = "avg(correct)"
measures.users = "count_distinct(user_id)"
"#;

const FLAGS: [&str; 6] = ["--out", "served", "--wal", "wal", "--idle-timeout", "off"];

fn spec(dir: &Path) -> PathBuf {
    let path = dir.join("checkpointed.toml");
    std::fs::write(&path, SPEC).unwrap();
    path
}

/// Segment numbers (their first records) in the log folder, and whether a checkpoint is there.
fn log_state(wal: &Path) -> (Vec<u64>, bool) {
    let mut segments = Vec::new();
    let mut checkpoint = false;
    for entry in std::fs::read_dir(wal).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(n) = name.strip_suffix(".wal") {
            segments.push(n.parse().unwrap());
        }
        checkpoint |= name == "checkpoint.json";
    }
    segments.sort();
    (segments, checkpoint)
}

fn wait_for(child: &mut std::process::Child, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "{what} did not finish");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut report = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut report).unwrap();
    assert!(status.success(), "{what}: {report}");
    report
}

#[test]
fn checkpoints_truncate_the_log_and_a_crash_after_them_loses_nothing() {
    for (seed, workers) in [(1, ["1", "2"]), (2, ["2", "1"]), (3, ["1", "1"])] {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec(dir.path());
        let events = generate(dir.path(), "events.ndjson", 30_000, seed);
        let flags = |w: &'static str| {
            let mut f = FLAGS.to_vec();
            f.extend([
                "--checkpoint-interval",
                "100ms",
                "--wal-segment-bytes",
                "65536",
                "--workers",
                w,
            ]);
            f
        };
        let server = Server::start(dir.path(), &spec, "127.0.0.1:0", &flags(workers[0]));
        let addr = server.addr;
        let client = format!("seed{seed}");
        let mut sender = crate::serve::KillOnDrop(crate::serve::spawn_send(
            dir.path(),
            &events,
            addr,
            &["--rate", "10000", "--client", &client, "--window", "2000"],
        ));
        // Wait until checkpoints have removed segments, then crash mid-stream.
        let wal = dir.path().join("wal");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (segments, checkpoint) = log_state(&wal);
            if checkpoint && segments.first().is_some_and(|&s| s > 0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "seed {seed}: no segment was removed: {segments:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(150 * seed));
        server.crash();
        let (segments, _) = log_state(&wal);
        assert!(segments[0] > 0, "seed {seed}: {segments:?}");

        let server = Server::start(dir.path(), &spec, &addr.to_string(), &flags(workers[1]));
        let report = wait_for(&mut sender.0, "send");
        assert!(report.contains("acknowledged 30000"), "seed {seed}: {report}");
        let summary = server.stop();
        assert!(summary.contains("log removed"), "{summary}");
        assert!(
            !wal.join("checkpoint.json").exists(),
            "a clean stop removes the checkpoint"
        );

        replay(dir.path(), &spec, &events, "replayed", &[]);
        let served = all_rows(&dir.path().join("served"));
        let replayed = all_rows(&dir.path().join("replayed"));
        assert_eq!(
            served.keys().collect::<Vec<_>>(),
            replayed.keys().collect::<Vec<_>>(),
            "seed {seed}"
        );
        for (name, rows) in &replayed {
            assert!(!rows.is_empty(), "seed {seed}: {name} is empty");
            let got = &served[name];
            if got == rows {
                continue;
            }
            let (g, r): (std::collections::BTreeSet<_>, std::collections::BTreeSet<_>) =
                (got.iter().collect(), rows.iter().collect());
            let extra: Vec<_> = g.difference(&r).take(3).collect();
            let missing: Vec<_> = r.difference(&g).take(3).collect();
            panic!(
                "seed {seed}: {name} differs after checkpoints, a crash and a restart ({} rows served, {} \
                 replayed)\nserved only: {extra:#?}\nreplayed only: {missing:#?}",
                got.len(),
                rows.len()
            );
        }
    }
}

#[test]
fn a_restart_refuses_another_outputs_folder() {
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path());
    let events = generate(dir.path(), "events.ndjson", 5_000, 4);
    let mut flags = FLAGS.to_vec();
    flags.extend(["--checkpoint-interval", "50ms"]);
    let server = Server::start(dir.path(), &spec, "127.0.0.1:0", &flags);
    crate::serve_util::send(dir.path(), &events, server.addr, &["--client", "c"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log_state(&dir.path().join("wal")).1 {
        assert!(Instant::now() < deadline, "no checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.crash();
    let out = std::process::Command::new(crate::util::sluice_bin())
        .args(["serve", spec.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(["--out", "elsewhere", "--wal", "wal"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("checkpoint.json") && err.contains("--out"), "{err}");
}
