//! Routing metadata (`[metadata.SOURCE]`). Oracle: each event's priority, complexity, shard key,
//! counters and dead letters computed from scratch by the rules of the README, compared with
//! the `tagged` output, `counters` and `dead_letters` of runs with 1, 2 and 4 workers.

use std::collections::BTreeMap;
use std::io::Write;

use proptest::prelude::*;
use sluice::value::Value;

use crate::util::{payload_field as field, plan_text, run_collect};

/// A priority as written in an event: missing, an int, a float or a string.
#[derive(Clone, Debug)]
enum Raw {
    Missing,
    Int(i64),
    Float(f64),
    Text,
}

impl Raw {
    fn json(&self) -> Option<String> {
        match self {
            Raw::Missing => None,
            Raw::Int(i) => Some(i.to_string()),
            Raw::Float(f) => Some(format!("{f:?}")),
            Raw::Text => Some("\"high\"".into()),
        }
    }
}

fn raw() -> impl Strategy<Value = Raw> {
    prop_oneof![
        Just(Raw::Missing),
        (-3i64..14).prop_map(Raw::Int),
        (-2.0f64..12.0).prop_map(|f| Raw::Float((f * 4.0).round() / 4.0)),
        Just(Raw::Text),
    ]
}

#[derive(Clone, Debug)]
struct Ev {
    time: i64,
    buy: bool,
    priority: Raw,
    complexity: Raw,
    items: usize,
    user: Option<u8>,
    device: Option<u8>,
}

fn events() -> impl Strategy<Value = Vec<Ev>> {
    let ev = (
        0i64..100_000,
        any::<bool>(),
        raw(),
        raw(),
        0usize..5,
        prop::option::of(0u8..20),
        prop::option::of(0u8..20),
    )
        .prop_map(|(time, buy, priority, complexity, items, user, device)| Ev {
            time,
            buy,
            priority,
            complexity,
            items,
            user,
            device,
        });
    prop::collection::vec(ev, 1..60).prop_map(|mut e| {
        e.sort_by_key(|e| e.time);
        e
    })
}

fn write(dir: &std::path::Path, events: &[Ev]) {
    let mut f = std::fs::File::create(dir.join("events.ndjson")).unwrap();
    for e in events {
        let mut fields = vec![
            format!(r#""ts":{}"#, e.time),
            format!(r#""type":"{}""#, if e.buy { "buy" } else { "view" }),
            format!(r#""items":[{}]"#, vec!["1"; e.items].join(",")),
        ];
        fields.extend(e.priority.json().map(|j| format!(r#""priority":{j}"#)));
        fields.extend(e.complexity.json().map(|j| format!(r#""complexity":{j}"#)));
        fields.extend(e.user.map(|u| format!(r#""user":"u{u}""#)));
        fields.extend(e.device.map(|d| format!(r#""device":{d}"#)));
        writeln!(f, "{{{}}}", fields.join(",")).unwrap();
    }
}

fn spec(dir: &std::path::Path, policy: &str) -> String {
    format!(
        r#"
[pipeline]
name = "metadata"
[sources.events]
path = "{dir}/events.ndjson"
time_field = "ts"
type_field = "type"
allowed_lateness = "1d"
[metadata.events]
priority = {{ default = "if(type == 'buy', 2, 5)" }}
complexity = {{ value = "complexity", default = "if(len(items) > 2, 4, 1)" }}
shard_key = {{ value = "user", default = "device" }}
shards = 8
invalid = "{policy}"
[enrich.events]
output = "tagged"
"#,
        dir = dir.display()
    )
}

/// What the oracle expects of one event: its (time, priority, complexity, shard key), and its
/// counters; `None` for a dead letter.
type Expected = Option<(i64, i64, i64, Value)>;

/// `Ok(value)`, or `Err(kind)` with the counter it takes: clamped or invalid.
fn ranked(raw: &Raw, lo: i64, hi: i64, clamp: bool) -> Result<Option<(i64, &'static str)>, ()> {
    let n = match raw {
        Raw::Missing => return Ok(None),
        Raw::Int(i) => *i,
        Raw::Float(f) => {
            let r = f.round() as i64;
            if f.fract() == 0.0 && (lo..=hi).contains(&r) {
                return Ok(Some((r, "")));
            }
            return if clamp {
                Ok(Some((r.clamp(lo, hi), "metadata_clamped")))
            } else {
                Err(())
            };
        }
        Raw::Text => {
            return if clamp {
                Ok(Some((-1, "metadata_invalid")))
            } else {
                Err(())
            }
        }
    };
    if (lo..=hi).contains(&n) {
        Ok(Some((n, "")))
    } else if clamp {
        Ok(Some((n.clamp(lo, hi), "metadata_clamped")))
    } else {
        Err(())
    }
}

fn oracle(events: &[Ev], clamp: bool) -> (Vec<Expected>, BTreeMap<(String, String), i64>) {
    let mut counters: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut out = Vec::new();
    for e in events {
        let mut counts = Vec::new();
        let defaults = [if e.buy { 2 } else { 5 }, if e.items > 2 { 4 } else { 1 }];
        let mut values = [0i64; 2];
        let mut dead = false;
        for (slot, (name, raw, lo, hi)) in [("priority", &e.priority, 1, 10), ("complexity", &e.complexity, 1, 5)]
            .into_iter()
            .enumerate()
        {
            match ranked(raw, lo, hi, clamp) {
                Err(()) => dead = true,
                Ok(None) => {
                    values[slot] = defaults[slot];
                    counts.push(("metadata_defaults", name));
                }
                Ok(Some((_, "metadata_invalid"))) => {
                    values[slot] = defaults[slot];
                    counts.push(("metadata_invalid", name));
                }
                Ok(Some((v, counter))) => {
                    values[slot] = v;
                    if !counter.is_empty() {
                        counts.push((counter, name));
                    }
                }
            }
            if dead {
                break;
            }
        }
        let key = match (e.user, e.device) {
            _ if dead => None,
            (Some(u), _) => Some(Value::str(&format!("u{u}"))),
            (None, Some(d)) => {
                counts.push(("metadata_defaults", "shard_key"));
                Some(Value::Int(i64::from(d)))
            }
            (None, None) => None,
        };
        match key {
            Some(key) => {
                for (metric, label) in counts {
                    *counters.entry((metric.to_string(), label.to_string())).or_default() += 1;
                }
                out.push(Some((e.time, values[0], values[1], key)));
            }
            None => out.push(None),
        }
    }
    (out, counters)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn metadata_matches_the_oracle_with_any_worker_count(events in events(), clamp in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &events);
        let plan = plan_text(&spec(dir.path(), if clamp { "clamp" } else { "dead_letter" }), dir.path());
        let (expected, counters) = oracle(&events, clamp);
        let mut want: Vec<(i64, i64, i64, Value)> = expected.iter().flatten().cloned().collect();
        want.sort();
        let dead = expected.iter().filter(|e| e.is_none()).count() as i64;
        let mut shard_of: BTreeMap<Value, Value> = BTreeMap::new();
        for workers in [1, 2, 4] {
            let summary = run_collect(&plan, workers);
            let mut got = Vec::new();
            for (row, _, diff) in &summary.collected["tagged"] {
                prop_assert_eq!(*diff, 1);
                let payload = row.last().unwrap();
                let time = row.iter().find_map(|v| match v { Value::Time(t) => Some(*t), _ => None }).unwrap();
                let rank = |name| match field(payload, name) { Value::Int(i) => i, other => panic!("{name}: {other:?}") };
                let key = field(payload, "shard_key");
                let shard = field(payload, "shard_id");
                // One shard per key, in range, whatever the worker.
                prop_assert!(matches!(shard, Value::Int(s) if (0..8).contains(&s)));
                prop_assert_eq!(shard_of.entry(key.clone()).or_insert(shard.clone()), &shard);
                got.push((time, rank("priority"), rank("complexity"), key));
            }
            got.sort();
            prop_assert_eq!(&got, &want, "{} workers", workers);
            let meta: BTreeMap<(String, String), i64> = summary
                .counters
                .iter()
                .filter(|((m, _), _)| m.starts_with("metadata_"))
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            prop_assert_eq!(&meta, &counters, "{} workers", workers);
            let letters = summary.collected["dead_letters"]
                .iter()
                .filter(|(row, _, _)| row[1] == Value::str("invalid_metadata"))
                .map(|(_, _, d)| *d as i64)
                .sum::<i64>();
            prop_assert_eq!(letters, dead, "{} workers", workers);
        }
    }
}

#[test]
fn metadata_errors_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let one = Ev {
        time: 1,
        buy: true,
        priority: Raw::Int(1),
        complexity: Raw::Int(1),
        items: 1,
        user: Some(1),
        device: Some(1),
    };
    write(dir.path(), &[one]);
    let base = spec(dir.path(), "clamp");
    for (from, to, key, message) in [
        (
            r#"invalid = "clamp""#,
            r#"invalid = "drop""#,
            "metadata.events.invalid",
            "unknown policy `drop`",
        ),
        (
            "shards = 8",
            "shards = 0",
            "metadata.events.shards",
            "the number of shards must be 1 to 2^32",
        ),
        (
            r#"value = "user""#,
            r#"value = "usr""#,
            "metadata.events.shard_key.value",
            "no field `usr`",
        ),
        (
            r#"value = "user""#,
            r#"value = "user +""#,
            "metadata.events.shard_key.value",
            "column",
        ),
    ] {
        let text = base.replace(from, to);
        assert_ne!(text, base, "{from}");
        let path = dir.path().join("m.toml");
        std::fs::write(&path, &text).unwrap();
        // `plan_file` also checks field references against the files.
        let err = sluice::source::plan_file(&path, &[])
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains(key) && err.contains(message), "{to}: {err}");
    }
}
