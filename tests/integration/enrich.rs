//! Enrichment oracles: as-of joins (keyed, with `max_age`, by IP range) and continuous joins
//! against from-scratch scans, with 1, 2 and 4 workers; rules and derived fields.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use proptest::prelude::*;
use sluice::run::RunSummary;
use sluice::value::{Sym, Value};

use crate::util::{plan_text, run_collect};

fn write_lines(path: &Path, lines: &[serde_json::Value]) {
    let mut f = std::fs::File::create(path).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

/// Enriched events as `(time, id) → attached object` (`None`: no context attached); rows of a
/// changelog are kept where their diffs sum to a positive count.
fn enriched(summary: &RunSummary, output: &str, alias: &str) -> BTreeMap<(i64, i64), Option<Value>> {
    let mut net: BTreeMap<Vec<Value>, isize> = BTreeMap::new();
    for (row, _, diff) in &summary.collected[output] {
        *net.entry(row.clone()).or_default() += diff;
    }
    let alias = Sym::new(alias);
    let id = Sym::new("id");
    net.into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(row, _)| {
            let Value::Time(t) = row[0] else { panic!("{row:?}") };
            let Some(Value::Object(fields)) = row.last() else {
                panic!("{row:?}")
            };
            let id = match sluice::value::lookup(fields, id) {
                Some(Value::Int(i)) => *i,
                other => panic!("{other:?}"),
            };
            ((t, id), sluice::value::lookup(fields, alias).cloned())
        })
        .collect()
}

/// Field `field` of the object each enriched event has under `alias`, in `(time, id)` order
/// (`None`: no context attached).
fn attached_field(summary: &RunSummary, alias: &str, field: &str) -> Vec<Option<Value>> {
    enriched(summary, "enriched", alias)
        .values()
        .map(|v| {
            v.as_ref().map(|o| {
                o.field(Sym::new(field))
                    .cloned()
                    .unwrap_or_else(|| panic!("{o:?} lacks {field}"))
            })
        })
        .collect()
}

fn counter(summary: &RunSummary, metric: &str, label: &str) -> i64 {
    summary.collected["counters"]
        .iter()
        .find(|(r, _, _)| r[0] == Value::str(metric) && r[1] == Value::str(label))
        .map_or(0, |(r, _, _)| match r[2] {
            Value::Int(n) => n,
            _ => panic!("{r:?}"),
        })
}

/// Events `(time, key)` and context rows `(time, key, value)`, each in an arrival order that is
/// at most 3 s out of event-time order (the lateness allowed is 5 s: nothing is late).
/// Events `(time, key)` and context rows `(time, key, value)`.
type Inputs = (Vec<(i64, i64)>, Vec<(i64, i64, i64)>);

fn inputs() -> impl Strategy<Value = Inputs> {
    let events = prop::collection::vec((0i64..60_000, 0i64..5), 1..80);
    let rows = prop::collection::vec((0i64..60_000, 0i64..5, 0i64..1000), 0..60);
    (events, rows).prop_map(|(mut events, mut rows)| {
        events.sort_by_key(|(t, k)| (t / 3_000, -k));
        rows.sort_by_key(|(t, k, _)| (t / 3_000, *k));
        (events, rows)
    })
}

/// The value an as-of join attaches to an event at `t` with key `k`: the latest row at or
/// before `t` (rows of one key at one time: the greatest value wins), unless older than `max_age`.
fn naive_as_of(rows: &[(i64, i64, i64)], t: i64, k: i64, max_age: Option<i64>) -> Option<i64> {
    rows.iter()
        .filter(|(rt, rk, _)| *rk == k && *rt <= t)
        .max_by_key(|(rt, _, v)| (*rt, *v))
        .filter(|(rt, _, _)| max_age.is_none_or(|a| t - rt <= a))
        .map(|(_, _, v)| *v)
}

fn join_spec(dir: &Path, join: &str) -> String {
    format!(
        "[pipeline]\nname = \"j\"\ntick = \"100ms\"\n\
         [sources.events]\npath = \"{}\"\ntime_field = \"ts\"\ntype_field = \"type\"\nallowed_lateness = \"5s\"\n\
         [sources.ctx]\npath = \"{}\"\ntime_field = \"ts\"\nallowed_lateness = \"5s\"\n\
         [enrich.events]\n[[enrich.events.join]]\ncontext = \"ctx\"\nas = \"c\"\n{join}\n",
        dir.join("events.ndjson").display(),
        dir.join("ctx.ndjson").display()
    )
}

fn write_inputs(dir: &Path, events: &[(i64, i64)], rows: &[(i64, i64, i64)]) {
    let events: Vec<_> = events
        .iter()
        .enumerate()
        .map(|(i, (t, k))| serde_json::json!({"ts": t, "type": "e", "k": k, "id": i}))
        .collect();
    write_lines(&dir.join("events.ndjson"), &events);
    let rows: Vec<_> = rows
        .iter()
        .map(|(t, k, v)| serde_json::json!({"ts": t, "key": k, "v": v}))
        .collect();
    write_lines(&dir.join("ctx.ndjson"), &rows);
}

fn attached_v(found: &Option<Value>) -> Option<i64> {
    found.as_ref().map(|obj| match obj.field(Sym::new("v")) {
        Some(Value::Int(v)) => *v,
        other => panic!("{other:?}"),
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn as_of_join_matches_oracle(
        (events, rows) in inputs(),
        max_age in prop::option::of(1_000i64..20_000),
        broadcast in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        write_inputs(dir.path(), &events, &rows);
        let age = max_age.map_or(String::new(), |a| format!("max_age = \"{a}ms\"\n"));
        // Keyed (events and rows exchanged by key) or broadcast (every worker holds every row).
        let join = format!("on = {{ k = \"key\" }}\n{age}broadcast = {broadcast}\n");
        let plan = plan_text(&join_spec(dir.path(), &join), dir.path());
        let expected: BTreeMap<(i64, i64), Option<i64>> = events
            .iter()
            .enumerate()
            .map(|(i, (t, k))| ((*t, i as i64), naive_as_of(&rows, *t, *k, max_age)))
            .collect();
        let hits = expected.values().filter(|v| v.is_some()).count() as i64;
        for workers in [1, 2, 4] {
            let summary = run_collect(&plan, workers);
            let got: BTreeMap<(i64, i64), Option<i64>> =
                enriched(&summary, "enriched", "c").iter().map(|(k, v)| (*k, attached_v(v))).collect();
            prop_assert_eq!(&got, &expected, "{} workers", workers);
            prop_assert_eq!(counter(&summary, "context_hits", "c"), hits);
            prop_assert_eq!(counter(&summary, "context_misses", "c"), events.len() as i64 - hits);
            // As-of output is insert-only: later context never rewrites an emitted event.
            prop_assert!(summary.collected["enriched"].iter().all(|(_, _, d)| *d == 1));
        }
    }

    #[test]
    fn continuous_join_ends_with_the_latest_rows((events, rows) in inputs()) {
        let dir = tempfile::tempdir().unwrap();
        write_inputs(dir.path(), &events, &rows);
        let plan = plan_text(&join_spec(dir.path(), "on = { k = \"key\" }\nmode = \"continuous\"\n"), dir.path());
        let expected: BTreeMap<(i64, i64), Option<i64>> = events
            .iter()
            .enumerate()
            .map(|(i, (t, k))| ((*t, i as i64), naive_as_of(&rows, i64::MAX, *k, None)))
            .collect();
        for workers in [1, 2, 4] {
            let summary = run_collect(&plan, workers);
            let got: BTreeMap<(i64, i64), Option<i64>> =
                enriched(&summary, "enriched", "c").iter().map(|(k, v)| (*k, attached_v(v))).collect();
            prop_assert_eq!(&got, &expected, "{} workers", workers);
        }
    }
}

#[test]
fn later_context_changes_as_of_but_not_continuous_output() {
    let dir = tempfile::tempdir().unwrap();
    // The event at 1 s sees v=1; the row at 5 s arrives later and only a continuous join shows it.
    write_inputs(dir.path(), &[(1_000, 7), (6_000, 7)], &[(0, 7, 1), (5_000, 7, 2)]);
    let as_of = run_collect(
        &plan_text(&join_spec(dir.path(), "on = { k = \"key\" }"), dir.path()),
        1,
    );
    let got: Vec<Option<i64>> = enriched(&as_of, "enriched", "c").values().map(attached_v).collect();
    assert_eq!(got, vec![Some(1), Some(2)]);
    let spec = join_spec(dir.path(), "on = { k = \"key\" }\nmode = \"continuous\"");
    let continuous = run_collect(&plan_text(&spec, dir.path()), 1);
    let got: Vec<Option<i64>> = enriched(&continuous, "enriched", "c")
        .values()
        .map(attached_v)
        .collect();
    assert_eq!(got, vec![Some(2), Some(2)]);
    // The first event was emitted with v=1, then retracted and emitted again with v=2.
    let retractions = continuous.collected["enriched"]
        .iter()
        .filter(|(_, _, d)| *d < 0)
        .count();
    assert_eq!(retractions, 1);
}

#[test]
fn max_age_edges_and_relevance() {
    let dir = tempfile::tempdir().unwrap();
    write_inputs(
        dir.path(),
        &[(10_000, 1), (10_001, 1), (20_000, 2)],
        &[(0, 1, 5), (20_000, 2, 6)],
    );
    let spec = join_spec(dir.path(), "on = { k = \"key\" }\nmax_age = \"10s\"\nwhen = \"k == 1\"");
    let summary = run_collect(&plan_text(&spec, dir.path()), 2);
    let got: Vec<Option<i64>> = enriched(&summary, "enriched", "c").values().map(attached_v).collect();
    // Exactly max_age old attaches; one millisecond older does not; `when` skips key 2.
    assert_eq!(got, vec![Some(5), None, None]);
    assert_eq!(counter(&summary, "context_hits", "c"), 1);
    assert_eq!(counter(&summary, "context_misses", "c"), 1);
    assert_eq!(counter(&summary, "context_stale", "c"), 1);
}

fn range_spec(dir: &Path) -> String {
    format!(
        "[pipeline]\nname = \"r\"\n\
         [sources.events]\npath = \"{}\"\ntime_field = \"ts\"\ntype_field = \"type\"\n\
         [sources.geo]\npath = \"{}\"\ntime_field = \"ts\"\n\
         [enrich.events]\n[[enrich.events.join]]\ncontext = \"geo\"\nmatch = \"ip_range\"\non = {{ ip = \"cidr\" }}\n",
        dir.join("events.ndjson").display(),
        dir.join("geo.ndjson").display()
    )
}

#[test]
fn ip_range_join_respects_edges_for_v4_and_v6() {
    let dir = tempfile::tempdir().unwrap();
    let geo = [
        ("10.0.0.0/24", "a"),
        ("10.0.1.0/24", "b"),
        ("2001:db8::/48", "c"),
        ("2001:db8:1::/48", "d"),
    ];
    let geo: Vec<_> = geo
        .iter()
        .map(|(cidr, city)| serde_json::json!({"ts": 0, "cidr": cidr, "city": city}))
        .collect();
    write_lines(&dir.path().join("geo.ndjson"), &geo);
    let ips = [
        ("9.255.255.255", None),
        ("10.0.0.0", Some("a")),
        ("10.0.0.255", Some("a")),
        ("10.0.1.0", Some("b")),
        ("10.0.2.0", None),
        ("2001:db8::", Some("c")),
        ("2001:db8:0:ffff:ffff:ffff:ffff:ffff", Some("c")),
        ("2001:db8:1::1", Some("d")),
        ("2001:db8:2::", None),
        ("not an ip", None),
    ];
    let events: Vec<_> = ips
        .iter()
        .enumerate()
        .map(|(i, (ip, _))| serde_json::json!({"ts": 1000 + i, "type": "upload", "ip": ip, "id": i}))
        .collect();
    write_lines(&dir.path().join("events.ndjson"), &events);
    let plan = plan_text(&range_spec(dir.path()), dir.path());
    for workers in [1, 2, 4] {
        let summary = run_collect(&plan, workers);
        let got = attached_field(&summary, "geo", "city");
        let expected: Vec<Option<Value>> = ips.iter().map(|(_, c)| c.map(Value::str)).collect();
        assert_eq!(got, expected, "{workers} workers");
        assert_eq!(counter(&summary, "context_misses", "geo"), 4);
    }
}

/// A Parquet range table of more rows than a range split (8,192) loads and joins with several
/// workers: its row group is read as row ranges, both by the overlap check before the run,
/// which reads them all in turn, and by the workers, each its own.
#[test]
fn a_parquet_range_table_larger_than_a_split_loads_with_several_workers() {
    let dir = tempfile::tempdir().unwrap();
    let ranges = 20_000usize;
    let rows: Vec<Vec<Value>> = (0..ranges)
        .map(|i| {
            vec![
                Value::Time(0),
                Value::str(&format!("10.{}.{}.0/24", i / 256, i % 256)),
                Value::Int(i as i64),
            ]
        })
        .collect();
    let columns = ["ts", "cidr", "n"].map(String::from);
    let batch = sluice::format::rows_to_batch(&columns, &rows).unwrap();
    let mut sink = sluice::format::ParquetSink::open(&dir.path().join("geo.parquet"), batch.schema()).unwrap();
    sink.write(&batch).unwrap();
    sink.close().unwrap();
    // Addresses in ranges all over the table, and one past its end.
    let probes: Vec<usize> = (0..ranges).step_by(997).chain([ranges - 1, ranges]).collect();
    let events: Vec<_> = probes
        .iter()
        .enumerate()
        .map(|(i, n)| serde_json::json!({"ts": 1000 + i, "type": "upload", "ip": format!("10.{}.{}.7", n / 256, n % 256), "id": i}))
        .collect();
    write_lines(&dir.path().join("events.ndjson"), &events);
    let spec = range_spec(dir.path()).replace("geo.ndjson", "geo.parquet");
    let plan = plan_text(&spec, dir.path());
    let expected: Vec<Option<Value>> = probes
        .iter()
        .map(|&n| (n < ranges).then_some(Value::Int(n as i64)))
        .collect();
    for workers in [1, 2, 4] {
        let summary = run_collect(&plan, workers);
        assert_eq!(attached_field(&summary, "geo", "n"), expected, "{workers} workers");
    }
}

#[test]
fn overlapping_ranges_are_rejected_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let geo = [
        serde_json::json!({"ts": 0, "cidr": "10.0.0.0/16", "city": "a"}),
        serde_json::json!({"ts": 0, "cidr": "10.0.3.0/24", "city": "b"}),
    ];
    write_lines(&dir.path().join("geo.ndjson"), &geo);
    write_lines(
        &dir.path().join("events.ndjson"),
        &[serde_json::json!({"ts": 1, "type": "u", "ip": "10.0.3.1", "id": 0})],
    );
    let plan = plan_text(&range_spec(dir.path()), dir.path());
    let err = sluice::run::run(&plan, &sluice::run::RunConfig::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("geo.ndjson"), "{err}");
    assert!(err.contains("10.0.3.0/24") && err.contains("10.0.0.0/16"), "{err}");
}

#[test]
fn rules_allow_block_route_transform_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let events = [
        serde_json::json!({"ts": 1000, "type": "attempt", "id": 0, "ua": "curl/8", "ms": 300, "user": "u1"}),
        serde_json::json!({"ts": 2000, "type": "attempt", "id": 1, "ua": "Firefox", "ms": 300, "user": "u2"}),
        serde_json::json!({"ts": 3000, "type": "attempt", "id": 2, "ua": "curl/8", "ms": 9000, "user": "staff"}),
        serde_json::json!({"ts": 4000, "type": "attempt", "id": 3, "ua": "Firefox", "ms": "slow", "user": "u3"}),
    ];
    write_lines(&dir.path().join("events.ndjson"), &events);
    let spec = format!(
        "[pipeline]\nname = \"r\"\n[sources.events]\npath = \"{}\"\ntime_field = \"ts\"\ntype_field = \"type\"\n\
         [enrich.events]\nrule_stats_window = \"1h\"\n\
         derive.speed = \"case when ms < 1000 then 'rapid' else 'normal' end\"\n\
         derive.slow = \"speed == 'normal'\"\n\
         [[enrich.events.rule]]\nid = \"staff\"\nwhen = \"user == 'staff'\"\naction = \"allow\"\nmark = \"internal\"\n\
         [[enrich.events.rule]]\nid = \"bots\"\nwhen = \"matches(ua, '(?i)curl|bot')\"\naction = \"block\"\n\
         [[enrich.events.rule]]\nid = \"rapid\"\nwhen = \"ms < 1000\"\naction = \"route\"\ndestination = \"fast_lane\"\nhints = {{ priority = \"high\" }}\n\
         [[enrich.events.rule]]\nid = \"rename\"\nwhen = \"true\"\naction = \"transform\"\nset.ms_x2 = \"ms * 2\"\nrename.ua = \"user_agent\"\nremove = [\"user\"]\n",
        dir.path().join("events.ndjson").display()
    );
    let plan = plan_text(&spec, dir.path());
    for workers in [1, 2] {
        let summary = run_collect(&plan, workers);
        let blocked: Vec<(String, i64)> = summary.collected["blocked"]
            .iter()
            .map(|(r, _, _)| match (&r[0], &r[1]) {
                (Value::Str(id), Value::Time(t)) => (id.to_string(), *t),
                _ => panic!("{r:?}"),
            })
            .collect();
        assert_eq!(blocked, vec![("bots".to_string(), 1000)]);
        let rows: BTreeMap<i64, serde_json::Value> = summary.collected["enriched"]
            .iter()
            .map(|(r, _, _)| {
                let obj = r.last().unwrap().to_json();
                (obj["id"].as_i64().unwrap(), obj)
            })
            .collect();
        assert_eq!(rows.len(), 3);
        // id 1: rapid → routed, transformed.
        assert_eq!(rows[&1]["_routes"], serde_json::json!(["fast_lane"]));
        assert_eq!(rows[&1]["_hints"], serde_json::json!({"priority": "high"}));
        assert_eq!(rows[&1]["speed"], "rapid");
        assert_eq!(rows[&1]["ms_x2"], 600);
        assert_eq!(rows[&1]["user_agent"], "Firefox");
        assert!(rows[&1].get("ua").is_none() && rows[&1].get("user").is_none());
        // A derived field reads the ones derived before it.
        assert_eq!(rows[&1]["slow"], false);
        // id 2: staff is allowed, so the bot rule does not block it.
        assert_eq!(rows[&2]["_marks"], serde_json::json!(["internal"]));
        assert_eq!(rows[&2]["slow"], true);
        // id 3: `ms < 1000` fails on a string: the rule counts a failure and the event goes on;
        // the transform's `ms * 2` fails too, so it is left unchanged by that rule.
        assert_eq!(rows[&3]["ua"], "Firefox");
        assert!(rows[&3].get("speed").is_none() && rows[&3].get("slow").is_none());
        assert_eq!(summary.collected["fast_lane"].len(), 1);
        let stats: BTreeMap<String, Vec<Value>> = summary.collected["rule_stats"]
            .iter()
            .map(|(r, _, _)| match &r[0] {
                Value::Str(id) => (id.to_string(), r[4..].to_vec()),
                other => panic!("{other:?}"),
            })
            .collect();
        let n = |m: i64, a: i64, f: i64| vec![Value::Int(m), Value::Int(a), Value::Int(f)];
        assert_eq!(stats["staff"], n(1, 1, 0));
        assert_eq!(stats["bots"], n(2, 1, 0));
        assert_eq!(stats["rapid"], n(1, 1, 1));
        assert_eq!(stats["rename"], n(3, 2, 1));
        assert_eq!(counter(&summary, "events_filtered", "events"), 1);
        assert_eq!(counter(&summary, "events_processed", "events"), 4);
        assert_eq!(counter(&summary, "derive_failures", "speed"), 1);
        assert_eq!(counter(&summary, "rule_failures", "rapid"), 1);
    }
}

/// The keys of the object a join attached to the event with id 0.
fn attached_keys(spec: &str, dir: &Path) -> Vec<String> {
    let summary = run_collect(&plan_text(spec, dir), 1);
    let got = enriched(&summary, "enriched", "c");
    let Some(Value::Object(fields)) = got.values().next().cloned().flatten() else {
        panic!("{got:?}")
    };
    fields.iter().map(|(k, _)| k.as_str().to_string()).collect()
}

/// `fields` attaches exactly what it lists; without it, every field but the key and the row's
/// time; `time_as` adds the time under its name, and may not repeat a listed field.
#[test]
fn a_join_attaches_exactly_its_fields_and_the_time_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    write_inputs(dir.path(), &[(1_000, 7)], &[(0, 7, 1)]);
    let on = "on = { k = \"key\" }\n";
    let mut all = attached_keys(&join_spec(dir.path(), on), dir.path());
    all.sort();
    assert_eq!(all, ["ts", "v"]);
    let listed = join_spec(dir.path(), &format!("{on}fields = [\"v\"]"));
    assert_eq!(attached_keys(&listed, dir.path()), ["v"]);
    let timed = join_spec(dir.path(), &format!("{on}fields = [\"v\"]\ntime_as = \"seen\""));
    let mut keys = attached_keys(&timed, dir.path());
    keys.sort();
    assert_eq!(keys, ["seen", "v"]);
    let renamed = join_spec(dir.path(), &format!("{on}time_as = \"seen\""));
    let mut keys = attached_keys(&renamed, dir.path());
    keys.sort();
    assert_eq!(keys, ["seen", "v"]);
    let clash = join_spec(dir.path(), &format!("{on}fields = [\"v\"]\ntime_as = \"v\""));
    let e = sluice::plan::plan_str(&clash, Path::new("test.toml"), dir.path(), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("time_as") && e.contains("also one of the join's `fields`"),
        "{e}"
    );
}

#[test]
fn broadcast_is_for_as_of_joins_and_ip_range_joins_always_are() {
    let dir = tempfile::tempdir().unwrap();
    write_inputs(dir.path(), &[(1_000, 7)], &[(0, 7, 1)]);
    let error = |join: &str| {
        sluice::plan::plan_str(&join_spec(dir.path(), join), Path::new("test.toml"), dir.path(), &[])
            .unwrap_err()
            .to_string()
    };
    let e = error("on = { k = \"key\" }\nmode = \"continuous\"\nbroadcast = true");
    assert!(e.contains("broadcast") && e.contains("`as_of` joins only"), "{e}");
    let e = error("match = \"ip_range\"\non = { ip = \"cidr\" }\nbroadcast = false");
    assert!(e.contains("broadcast") && e.contains("always broadcast"), "{e}");
    let plan = |join: &str| {
        sluice::plan::plan_str(&join_spec(dir.path(), join), Path::new("test.toml"), dir.path(), &[]).unwrap()
    };
    let broadcast_of = |plan: &sluice::plan::Plan| {
        plan.stages
            .iter()
            .find_map(|s| match &s.kind {
                sluice::plan::StageKind::Enrich(e) => Some(e.joins[0].broadcast),
                _ => None,
            })
            .expect("an enrichment")
    };
    assert!(!broadcast_of(&plan("on = { k = \"key\" }")));
    assert!(broadcast_of(&plan("on = { k = \"key\" }\nbroadcast = true")));
    assert!(!broadcast_of(&plan(
        "on = { k = \"key\" }\nmode = \"continuous\"\nbroadcast = false"
    )));
}
