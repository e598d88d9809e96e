//! Tests of the `uploads` scenario and its context tables: determinism, delivery statistics,
//! non-overlapping geo ranges, addresses inside and outside them, profile versions before first
//! events, and sensor gaps.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::geo::{cidr, parse_cidr, parse_ip};
use super::*;
use crate::generate::learning_context_tests::{as_of, floats, ints, read_table, strings, versions};
use crate::generate::{generate_with, ContextFile};

fn config(dir: &Path, name: &str, events: usize, seed: u64) -> GenerateConfig {
    GenerateConfig {
        context: Some(dir.join(format!("{name}_context"))),
        users: Some(500),
        ranges: Some(400),
        ..GenerateConfig::new("uploads", events, seed, &dir.join(format!("{name}.parquet")))
    }
}

const TABLES: [&str; 4] = ["geo.parquet", "profiles.parquet", "sensors.parquet", "prices.parquet"];

#[test]
fn same_seed_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    let a = generate_with(&config(dir.path(), "a", 10_000, 7)).unwrap();
    let b = generate_with(&config(dir.path(), "b", 10_000, 7)).unwrap();
    let c = generate_with(&config(dir.path(), "c", 10_000, 8)).unwrap();
    let rows = |s: &GenerateSummary| s.context.iter().map(|f| f.rows).collect::<Vec<_>>();
    assert_eq!(rows(&a), rows(&b));
    assert!(bytes("a.parquet") == bytes("b.parquet"), "same seed, different logs");
    assert!(bytes("a.parquet") != bytes("c.parquet"), "different seeds, same logs");
    for table in TABLES {
        let (ta, tb, tc) = (
            format!("a_context/{table}"),
            format!("b_context/{table}"),
            format!("c_context/{table}"),
        );
        assert!(bytes(&ta) == bytes(&tb), "{table}: same seed, different bytes");
        assert!(bytes(&ta) != bytes(&tc), "{table}: different seeds, same bytes");
    }
    assert_ne!(a, c);
}

#[test]
fn geo_ranges_are_sorted_and_disjoint_at_every_scale() {
    for (seed, ranges) in [(1, 2), (2, 7), (3, 1000), (4, 100_000), (5, 2_000_000)] {
        let geo = Geo::new(seed, ranges);
        let step = (ranges / 5000).max(1);
        let mut prev: Option<(u128, u128, bool)> = None;
        for i in (0..ranges).step_by(step) {
            let r = geo.range(i);
            let (start, end, v6) = parse_cidr(&cidr(&r));
            assert_eq!((start, end - start, v6), (r.start, r.size(), r.v6), "{}", cidr(&r));
            if let Some((_, prev_end, _)) = prev {
                assert!(prev_end <= start, "range {i} overlaps the one before");
            }
            let (ip, _) = parse_ip(&{
                let mut s = String::new();
                geo::write_ip(&mut s, geo.outside(i, u128::MAX / 3), v6).unwrap();
                s
            });
            assert!(ip < start || ip >= end, "outside address {ip} in range {i}");
            prev = Some((start, end, v6));
        }
        assert!(geo.v4 >= 1 && geo.v6 >= 1 && geo.len() == ranges);
    }
}

/// The ranges of a `geo.parquet`, checked sorted and disjoint.
fn read_ranges(path: &Path) -> Vec<(u128, u128, bool)> {
    let geo = read_table(path, &context::geo_schema());
    let ranges: Vec<_> = strings(&geo, "cidr").iter().map(|c| parse_cidr(c)).collect();
    for w in ranges.windows(2) {
        assert!(w[0].1 <= w[1].0, "{:?} overlaps {:?}", w[0], w[1]);
    }
    let snapshot = ints(&geo, "updated_at");
    assert!(snapshot.iter().all(|&t| t < START_MS));
    let (lat, lon) = (floats(&geo, "latitude"), floats(&geo, "longitude"));
    assert!(lat.iter().all(|l| (-90.0..=90.0).contains(l)) && lon.iter().all(|l| (-180.0..=180.0).contains(l)));
    ranges
}

fn find(ranges: &[(u128, u128, bool)], ip: (u128, bool)) -> Option<usize> {
    let i = ranges.partition_point(|r| (r.2, r.0) <= (ip.1, ip.0));
    (i > 0 && ranges[i - 1].2 == ip.1 && ip.0 < ranges[i - 1].1).then(|| i - 1)
}

#[test]
fn the_log_and_its_context_fit_together() {
    let dir = tempfile::tempdir().unwrap();
    let n = 40_000;
    let s = generate_with(&config(dir.path(), "log", n, 3)).unwrap();
    let ctx = dir.path().join("log_context");
    let names: Vec<_> = s.context.iter().map(|ContextFile { path, .. }| path.clone()).collect();
    assert_eq!(names, TABLES.map(|t| ctx.join(t)).to_vec());
    let events = read_table(&dir.path().join("log.parquet"), &schema::schema());
    assert_eq!(events.num_rows(), n);

    // Delivery statistics, as in `learning`.
    let frac = |x: usize| x as f64 / n as f64;
    assert!(
        (0.02..0.04).contains(&frac(s.duplicates)),
        "duplicates {}",
        frac(s.duplicates)
    );
    assert!(frac(s.late) < 0.003, "late {}", frac(s.late));
    let types: BTreeMap<_, _> = s.by_type.iter().copied().collect();
    assert!((0.45..0.55).contains(&frac(types["upload_started"])), "{types:?}");
    assert!((0.01..0.04).contains(&frac(types["upload_failed"])), "{types:?}");
    let ids = strings(&events, "upload_id");
    let kinds = strings(&events, TYPE_FIELD);
    let distinct: HashSet<(&String, &String)> = ids.iter().zip(&kinds).collect();
    assert_eq!(distinct.len(), n - s.duplicates);

    // Addresses: ~20% IPv6, ~1% outside every range, both families in the ranges.
    let ranges = read_ranges(&ctx.join("geo.parquet"));
    assert_eq!(ranges.len(), 400);
    assert!(ranges.iter().any(|r| r.2) && ranges.iter().any(|r| !r.2));
    let ips: Vec<_> = strings(&events, "uploader_ip").iter().map(|ip| parse_ip(ip)).collect();
    let v6 = ips.iter().filter(|ip| ip.1).count();
    assert!((0.17..0.23).contains(&frac(v6)), "IPv6 {}", frac(v6));
    let outside = ips.iter().filter(|&&ip| find(&ranges, ip).is_none()).count();
    assert!((0.005..0.016).contains(&frac(outside)), "outside {}", frac(outside));

    // Every user has a profile version before its first event, and some change during the log.
    let (times, users) = (ints(&events, TIME_FIELD), ints(&events, "user_id"));
    let profiles = read_table(&ctx.join("profiles.parquet"), &context::profile_schema());
    let by_user = versions(&ints(&profiles, "user_id"), &ints(&profiles, "updated_at"));
    let mut first: HashMap<i64, i64> = HashMap::new();
    for (&u, &t) in users.iter().zip(&times) {
        assert!((1..=500).contains(&u), "user {u}");
        let f = first.entry(u).or_insert(t);
        *f = (*f).min(t);
    }
    for (&u, &t) in &first {
        assert!(as_of(&by_user, u, t).is_some(), "user {u} has no version at {t}");
    }
    assert_eq!(by_user.len(), 500);
    let changed = by_user.values().filter(|v| v.len() > 1).count();
    assert!((30..120).contains(&changed), "{changed} users changed");
    assert!(strings(&profiles, "subscription").iter().any(|s| s == "family"));

    // Sensors read every 30-60 s with some gaps of minutes, covering the log.
    let sensors = read_table(&ctx.join("sensors.parquet"), &context::sensor_schema());
    let ids: Vec<i64> = strings(&sensors, "sensor_id")
        .iter()
        .map(|s| s[2..].parse().unwrap())
        .collect();
    let readings = versions(&ids, &ints(&sensors, "reading_time"));
    assert_eq!(readings.len(), usize::from(SENSORS));
    let gaps: Vec<i64> = readings
        .values()
        .flat_map(|v| v.windows(2).map(|w| w[1].0 - w[0].0))
        .collect();
    let long = gaps.iter().filter(|&&g| g > 120_000).count();
    assert!(
        long > 10 && long < gaps.len() / 20,
        "{long} of {} gaps over 2 min",
        gaps.len()
    );
    assert!(gaps.iter().all(|&g| g >= 30_000), "readings too close");
    let (min, max) = (*times.iter().min().unwrap(), *times.iter().max().unwrap());
    for v in readings.values() {
        // The last interval may be a gap.
        assert!(
            v[0].0 < min && v[v.len() - 1].0 > max - 13 * 60_000,
            "readings do not cover the log"
        );
    }
    let sensor_ids: HashSet<String> = strings(&sensors, "sensor_id").into_iter().collect();
    assert!(strings(&events, "sensor_id").iter().all(|s| sensor_ids.contains(s)));

    // Prices tick every few seconds, with halts, for every symbol of the log.
    let prices = read_table(&ctx.join("prices.parquet"), &context::price_schema());
    let symbols = strings(&prices, "symbol");
    let symbol_index: Vec<i64> = symbols
        .iter()
        .map(|s| vocab::SYMBOLS.iter().position(|x| x == s).unwrap() as i64)
        .collect();
    let ticks = versions(&symbol_index, &ints(&prices, "price_time"));
    assert_eq!(ticks.len(), vocab::SYMBOLS.len());
    let gaps: Vec<i64> = ticks
        .values()
        .flat_map(|v| v.windows(2).map(|w| w[1].0 - w[0].0))
        .collect();
    assert!(gaps.iter().any(|&g| g > 60_000) && gaps.iter().filter(|&&g| g < 6_000).count() > gaps.len() * 9 / 10);
    assert!(floats(&prices, "price").iter().all(|&p| p >= 0.01));
    let used: HashSet<String> = strings(&events, "symbol").into_iter().collect();
    assert!(used.len() > 10 && used.iter().all(|s| vocab::SYMBOLS.contains(&s.as_str())));
}

#[test]
fn ndjson_and_parquet_hold_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (pq, nd) = (dir.path().join("a.parquet"), dir.path().join("a.ndjson"));
    let base = |out: &Path| GenerateConfig::new("uploads", 5_000, 5, out);
    assert_eq!(generate_with(&base(&pq)).unwrap(), generate_with(&base(&nd)).unwrap());
    let batch = read_table(&pq, &schema::schema());
    let events = crate::generate::tests::read_ndjson(&nd);
    assert_eq!(events.len(), batch.num_rows());
    let times = ints(&batch, TIME_FIELD);
    let ips = strings(&batch, "uploader_ip");
    let bytes = ints(&batch, "bytes");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.time, times[i]);
        let get = |name: &str| {
            e.payload
                .iter()
                .find(|(k, _)| k.as_str() == name)
                .unwrap()
                .1
                .to_string()
        };
        assert_eq!(get("uploader_ip"), ips[i]);
        assert_eq!(get("bytes"), bytes[i].to_string());
    }
}
