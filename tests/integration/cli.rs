//! The built binary, run in a temporary folder.

use std::process::{Command, Output};

use crate::util::{repo, sluice, sluice_bin};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn run_writes_parquet_outputs_and_a_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = repo().join("dataflows/learning_analytics.toml");
    let out = sluice(
        &[
            "run",
            spec.to_str().unwrap(),
            "--workers",
            "2",
            "--out",
            "out",
            "--quiet",
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("events/s"), "{stdout}");
    assert!(stdout.contains("late events:"), "{stdout}");
    for name in [
        "user_hourly_attempts",
        "user_daily_sessions",
        "item_hourly_performance",
        "system_5min_metrics",
        "jurisdiction_daily_stats",
        "dead_letters",
    ] {
        // Two workers: each writes its own parts, `part-WW-NNNNN.parquet`.
        let parts = files_under(&tmp.path().join("out").join(name));
        assert!(
            !parts.is_empty() && parts.iter().all(|p| p.starts_with("part-") && p.ends_with(".parquet")),
            "{name}: {parts:?}\n{}",
            text(&out)
        );
    }
}

#[test]
fn spec_errors_name_file_line_and_key_and_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[pipeline]\nname = \"x\"\n[sources.s]\npath = \"e.ndjson\"\ntime_field = \"t\"\ntype_field = \"k\"\n[[aggregates]]\nname = \"a\"\nsource = \"s\"\nwindow = { tumbling = \"1h\" }\nmeasures.n = \"median(x)\"\n",
    )
    .unwrap();
    let out = sluice(&["check", bad.to_str().unwrap()], tmp.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let msg = text(&out);
    assert!(msg.contains("bad.toml:11:"), "{msg}");
    assert!(msg.contains("measures.n"), "{msg}");
    assert!(msg.contains("count_distinct"), "suggests valid functions: {msg}");

    let out = sluice(&["run", "missing.toml"], tmp.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = sluice(&["run"], tmp.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn missing_input_is_a_runtime_error() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = repo().join("dataflows/learning_analytics.toml");
    let out = sluice(
        &[
            "run",
            spec.to_str().unwrap(),
            "--input",
            "events=nope.parquet",
            "--quiet",
        ],
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("nope.parquet"));
}

#[test]
fn help_shows_examples() {
    let tmp = tempfile::tempdir().unwrap();
    for cmd in [
        &["run"][..],
        &["check"],
        &["generate"],
        &["schema"],
        &["schema", "infer"],
        &["schema", "diff"],
    ] {
        let out = sluice(&[cmd, &["--help"]].concat(), tmp.path());
        assert!(out.status.success());
        assert!(text(&out).contains("Example"), "{cmd:?}: {}", text(&out));
    }
}

#[test]
fn check_prints_the_plan() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = repo().join("dataflows/learning_analytics.toml");
    let out = sluice(&["check", spec.to_str().unwrap(), "--plan"], tmp.path());
    assert!(out.status.success(), "{}", text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stages = plan["stages"].as_array().unwrap();
    let kinds: Vec<String> = stages
        .iter()
        .map(|s| s["kind"].as_object().unwrap().keys().next().unwrap().clone())
        .collect();
    assert_eq!(
        kinds,
        [
            "dedup",
            "enrich",
            "aggregate",
            "aggregate",
            "aggregate",
            "aggregate",
            "aggregate"
        ]
    );
    // Stages read earlier stages: the first aggregate reads the enrichment stage.
    assert_eq!(stages[2]["inputs"], serde_json::json!([{ "stage": 1 }]));
    assert_eq!(stages[1]["inputs"][0], serde_json::json!({ "stage": 0 }));
    let outputs: Vec<&str> = plan["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        outputs,
        [
            "duplicates",
            "enriched",
            "premium_analytics",
            "onboarding",
            "blocked",
            "rule_stats",
            "counters",
            "user_hourly_attempts",
            "user_daily_sessions",
            "item_hourly_performance",
            "system_5min_metrics",
            "jurisdiction_daily_stats",
            "dead_letters"
        ]
    );
}

#[test]
fn generate_is_deterministic_and_runs() {
    let tmp = tempfile::tempdir().unwrap();
    for (file, seed) in [("a.parquet", "3"), ("b.parquet", "3"), ("c.ndjson", "3")] {
        let out = sluice(
            &[
                "generate", "learning", "--events", "5000", "--seed", seed, "--out", file, "--quiet",
            ],
            tmp.path(),
        );
        assert!(out.status.success(), "{}", text(&out));
    }
    let a = std::fs::read(tmp.path().join("a.parquet")).unwrap();
    let b = std::fs::read(tmp.path().join("b.parquet")).unwrap();
    assert_eq!(a, b);
    let spec = repo().join("dataflows/learning_analytics.toml");
    let parquet = sluice(
        &[
            "run",
            spec.to_str().unwrap(),
            "--input",
            "events=a.parquet",
            "--out",
            "p",
            "--quiet",
        ],
        tmp.path(),
    );
    assert!(parquet.status.success(), "{}", text(&parquet));
    let ndjson = sluice(
        &[
            "run",
            spec.to_str().unwrap(),
            "--input",
            "events=c.ndjson",
            "--out",
            "n",
            "--quiet",
        ],
        tmp.path(),
    );
    assert!(ndjson.status.success(), "{}", text(&ndjson));
    // The same events through Parquet and NDJSON give the same summary lines.
    let lines = |o: &Output| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .skip(1)
            .map(String::from)
            .map(|l| l.split(" -> ").next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(lines(&parquet), lines(&ndjson));
}

/// Waits for `child` at most `secs` seconds, killing it after that.
fn wait_bounded(mut child: std::process::Child, secs: u64) -> Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("timed out: {}", text(&out));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_cluster_of_two_processes_gives_the_single_process_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = repo().join("dataflows/learning_analytics.toml");
    let ports: Vec<u16> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect::<Vec<_>>()
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    let hosts = tmp.path().join("hosts.txt");
    std::fs::write(&hosts, format!("127.0.0.1:{}\n127.0.0.1:{}\n", ports[0], ports[1])).unwrap();
    let children: Vec<_> = (0..2)
        .map(|p| {
            Command::new(sluice_bin())
                .args([
                    "run",
                    spec.to_str().unwrap(),
                    "-w",
                    "2",
                    "-n",
                    "2",
                    "-p",
                    &p.to_string(),
                    "-h",
                    "hosts.txt",
                ])
                .args(["--out", "cluster", "--quiet"])
                .current_dir(tmp.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = wait_bounded(child, 120);
        assert!(out.status.success(), "{}", text(&out));
    }
    let single = sluice(
        &["run", spec.to_str().unwrap(), "--out", "single", "--quiet"],
        tmp.path(),
    );
    assert!(single.status.success(), "{}", text(&single));
    for name in [
        "user_hourly_attempts",
        "system_5min_metrics",
        "jurisdiction_daily_stats",
        "dead_letters",
    ] {
        let a = crate::util::parquet_lines(&tmp.path().join("cluster").join(name));
        let b = crate::util::parquet_lines(&tmp.path().join("single").join(name));
        assert!(!b.is_empty());
        assert_eq!(a, b, "{name} differs between a 2x2 cluster and one process");
    }
}

/// Every file under `dir` (recursively), relative to it.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

#[test]
fn a_failed_run_leaves_no_outputs_that_look_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = repo().join("dataflows/learning_analytics.toml");
    let events = tmp.path().join("events");
    std::fs::create_dir(&events).unwrap();
    let gen = sluice(
        &[
            "generate",
            "learning",
            "--events",
            "20000",
            "--out",
            "events/a_good.parquet",
        ],
        tmp.path(),
    );
    assert!(gen.status.success(), "{}", text(&gen));
    // The same file with its first page header overwritten: its footer (and so the splits'
    // statistics) is intact, reading its row group fails.
    let mut bytes = std::fs::read(events.join("a_good.parquet")).unwrap();
    bytes[4..36].fill(0xff);
    std::fs::write(events.join("b_corrupt.parquet"), bytes).unwrap();
    let run = |input: &str| {
        sluice(
            &[
                "run",
                spec.to_str().unwrap(),
                "--input",
                input,
                "--out",
                "out",
                "--quiet",
            ],
            tmp.path(),
        )
    };
    // A good run first: its outputs are replaced by the next run, never mixed with it.
    let good = run("events=events/a_good.parquet");
    assert!(good.status.success(), "{}", text(&good));
    assert!(files_under(&tmp.path().join("out"))
        .iter()
        .any(|f| f.ends_with(".parquet")));

    let failed = run("events=events");
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("b_corrupt.parquet"), "{stderr}");
    assert!(!stderr.contains("error: :"), "an empty path: {stderr}");
    let left = files_under(&tmp.path().join("out"));
    assert!(left.is_empty(), "a failed run left {left:?}");
    let partial: Vec<String> = files_under(tmp.path())
        .into_iter()
        .filter(|f| f.contains(".partial"))
        .collect();
    assert!(partial.is_empty(), "{partial:?}");

    // The run writes to `.out.partial` next to `--out` and renames the outputs into it.
    let good = run("events=events/a_good.parquet");
    assert!(good.status.success(), "{}", text(&good));
    assert!(files_under(&tmp.path().join("out"))
        .iter()
        .any(|f| f.ends_with(".parquet")));
    assert!(!tmp.path().join(".out.partial").exists());
}

/// `sluice generate services` rejects a graph outside 20–50 services (exit 2), writes the log
/// and its truth, regenerates the shipped sample byte for byte, and a spec reads the log.
#[test]
fn generate_services_writes_a_log_and_its_truth() {
    let tmp = tempfile::tempdir().unwrap();
    let out = sluice(
        &[
            "generate",
            "services",
            "--services",
            "19",
            "--out",
            "x.parquet",
            "--quiet",
        ],
        tmp.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--services must be in 20..=50"), "{}", text(&out));
    // The sample's command, as the README gives it.
    let out = sluice(
        &[
            "generate",
            "services",
            "--services",
            "30",
            "--order",
            "2",
            "--events",
            "50000",
            "--seed",
            "42",
            "--out",
            "interactions.parquet",
            "--quiet",
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("wrote 50000 events"), "{}", text(&out));
    for file in ["interactions.parquet", "interactions.parquet.truth.json"] {
        let shipped = std::fs::read(repo().join("data/services_sample").join(file)).unwrap();
        assert!(
            std::fs::read(tmp.path().join(file)).unwrap() == shipped,
            "{file} differs from the shipped sample"
        );
    }
    let spec = r#"
[pipeline]
name = "services"
[sources.calls]
path = "interactions.parquet"
time_field = "time"
type_field = "kind"
[[aggregates]]
name = "per_pair"
source = "calls"
window = { tumbling = "1h" }
group_by = ["source", "target"]
emit = "final"
measures.calls = "count()"
measures.bytes = "sum(bytes)"
"#;
    std::fs::write(tmp.path().join("s.toml"), spec).unwrap();
    let run = sluice(&["run", "s.toml", "--out", "out", "--quiet"], tmp.path());
    assert!(run.status.success(), "{}", text(&run));
    assert!(tmp.path().join("out/per_pair").exists());
}

/// With several workers in one process every worker writes its own parts of each output
/// (`part-WW-NNNNN.parquet`): the rows are those of one worker, an ordered output still holds
/// each key's rows in event-time order across its parts in name order, and an output that
/// receives no row gets exactly one (empty) part.
#[test]
fn workers_write_their_own_parts_with_the_rows_of_one_worker() {
    let tmp = tempfile::tempdir().unwrap();
    // The shipped spec, plus an aggregate no event passes.
    let shipped = std::fs::read_to_string(repo().join("dataflows/learning_analytics.toml")).unwrap();
    let spec = tmp.path().join("spec.toml");
    let extra = "\n[[aggregates]]\nname = \"never\"\nsource = \"events\"\nwhere = \"event_type == 'no_such_type'\"\n\
                 window = { tumbling = \"1h\" }\ngroup_by = [\"user_id\"]\nmeasures.n = \"count()\"\n";
    std::fs::write(
        &spec,
        shipped.replace("../data/", &format!("{}/", repo().join("data").display())) + extra,
    )
    .unwrap();
    for (workers, out) in [("1", "one"), ("3", "three")] {
        let run = sluice(
            &["run", spec.to_str().unwrap(), "-w", workers, "--out", out, "--quiet"],
            tmp.path(),
        );
        assert!(run.status.success(), "{}", text(&run));
    }
    let (one, three) = (tmp.path().join("one"), tmp.path().join("three"));
    let mut names: Vec<String> = std::fs::read_dir(&one)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.contains(&"enriched".to_string()) && names.contains(&"never".to_string()));
    for name in &names {
        assert_eq!(
            crate::util::parquet_lines_by_name_exact(&one.join(name)),
            crate::util::parquet_lines_by_name_exact(&three.join(name)),
            "{name} differs between 1 and 3 workers"
        );
    }
    // More than one worker wrote the enriched events, and each key's rows are in time order
    // when the parts are read in name order.
    let parts = files_under(&three.join("enriched"));
    let writers: std::collections::BTreeSet<&str> = parts.iter().map(|p| &p[5..7]).collect();
    assert!(parts
        .iter()
        .all(|p| p.starts_with("part-") && p.len() == "part-00-00000.parquet".len()));
    assert!(writers.len() > 1, "{parts:?}");
    let mut last: std::collections::HashMap<String, i64> = Default::default();
    for part in &parts {
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let file = std::fs::File::open(three.join("enriched").join(part)).unwrap();
        for batch in ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap() {
            let batch = batch.unwrap();
            let col = |n: &str| sluice::source::arrow_read::Col::new(batch.column_by_name(n).unwrap());
            let (users, times) = (col("user_id"), col("event_time"));
            for row in 0..batch.num_rows() {
                let (user, time) = (users.get(row).to_string(), times.get(row));
                let sluice::value::Value::Time(t) = time else {
                    panic!("{time:?}")
                };
                let before = last.insert(user.clone(), t).unwrap_or(i64::MIN);
                assert!(before <= t, "user {user}: {t} after {before} ({part})");
            }
        }
    }
    // No event reaches `never`: one empty part, not one per worker.
    assert_eq!(files_under(&three.join("never")).len(), 1);
    assert!(crate::util::parquet_lines(&three.join("never")).is_empty());
}
