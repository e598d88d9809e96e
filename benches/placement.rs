//! Placement lookups per second on one core, 8 regions of equal weight. Run with
//! `cargo bench --bench placement` (`SLUICE_BENCH_RUNS` sets the runs per timing, default 5).
//!
//! Each timing looks up 1M distinct keys (scattered `u64`s) in turn and takes the best of the
//! runs. It compares the three algorithms of `sluice::model::placement` with each other and
//! with the key hash alone (FNV-1a + fmix64, which every lookup pays):
//! - `jump`: jump consistent hash, no table;
//! - `ring`: binary search over 8 × `vnodes` points, for 10, 256 (the default) and 1000 vnodes;
//! - `bounded`: a lookup in an assignment of 4096 shards (binary search over the sorted keys),
//!   and the time to compute the assignment itself, for 4096 and 1M keys.
//!
//! It also measures, over keys `0..1M`, the balance (max/mean keys per region) and the keys
//! moved when a 9th region is added, the figures of the README's "Placement" section. Results
//! print as Markdown tables and are written to `bench-data/placement-results.md`.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use sluice::model::placement::{key_hash_u64, Algorithm, Assignment, Bounded, PlacementSpec, Placer, Region};

const KEYS: u64 = 1_000_000;

fn regions(n: usize) -> Vec<Region> {
    (0..n).map(|i| Region::new(format!("region-{i}"), 1.0)).collect()
}

fn runs() -> usize {
    std::env::var("SLUICE_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
}

/// The best time of `runs` runs of `f`.
fn best(mut f: impl FnMut()) -> Duration {
    (0..runs())
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap()
}

/// Lookups per second of `home` over `keys`.
fn rate(keys: &[u64], home: impl Fn(u64) -> usize) -> f64 {
    let t = best(|| {
        let mut sum = 0usize;
        for &k in keys {
            sum = sum.wrapping_add(home(black_box(k)));
        }
        black_box(sum);
    });
    keys.len() as f64 / t.as_secs_f64()
}

fn spec(algorithm: Algorithm, vnodes: u32, epsilon: f64) -> PlacementSpec {
    PlacementSpec {
        algorithm,
        vnodes,
        epsilon,
    }
}

fn placer(algorithm: Algorithm, vnodes: u32, n: usize) -> Placer {
    Placer::new(&spec(algorithm, vnodes, 0.25), regions(n)).unwrap()
}

fn names(p: &Placer, a: &Assignment) -> Vec<String> {
    a.iter().map(|(_, r)| p.regions()[r].name.clone()).collect()
}

/// (max/mean with 8 regions, fraction moved 8 → 9, fraction moved between old regions).
fn quality(spec: &PlacementSpec) -> (f64, f64, f64) {
    let keys: Vec<u64> = (0..KEYS).collect();
    let mut p = Placer::new(spec, regions(8)).unwrap();
    let before = p.assign(&keys);
    let mean = KEYS as f64 / 8.0;
    let balance = *before.loads().iter().max().unwrap() as f64 / mean;
    let before = names(&p, &before);
    p.add_region(Region::new("region-8", 1.0)).unwrap();
    let after = names(&p, &p.assign(&keys));
    let moved = before.iter().zip(&after).filter(|(b, a)| a != b).count();
    let elsewhere = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| a != b && *a != "region-8")
        .count();
    (balance, moved as f64 / KEYS as f64, elsewhere as f64 / KEYS as f64)
}

fn main() {
    let keys: Vec<u64> = (0..KEYS).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
    let mut out = String::new();
    writeln!(out, "| lookup, 8 regions | lookups/s/core | ns/lookup |").unwrap();
    writeln!(out, "|---|---|---|").unwrap();
    let mut row = |name: &str, r: f64| {
        writeln!(out, "| {name} | {:.1} M | {:.1} |", r / 1e6, 1e9 / r).unwrap();
        eprintln!("{name}: {:.1} M/s", r / 1e6);
    };
    row("key hash alone", rate(&keys, |k| key_hash_u64(k) as usize & 7));
    if let Placer::Jump(j) = placer(Algorithm::Jump, 1, 8) {
        row("jump", rate(&keys, |k| j.home(k)));
    }
    for v in [10, 256, 1000] {
        if let Placer::Ring(r) = placer(Algorithm::Ring, v, 8) {
            row(&format!("ring, {v} vnodes"), rate(&keys, |k| r.home(k)));
        }
    }
    let bounded = Bounded::new(regions(8), 256, 0.25).unwrap();
    let shards: Vec<u64> = (0..4096).collect();
    let assignment = bounded.assign(&shards);
    row(
        "bounded (ε = 0.25, 256 vnodes): shard → region in a 4096-shard assignment",
        rate(&keys, |k| assignment.region_of(k & 4095).unwrap()),
    );
    for m in [4096u64, KEYS] {
        let ks: Vec<u64> = (0..m).collect();
        let t = best(|| {
            black_box(bounded.assign(&ks));
        });
        writeln!(
            out,
            "\nbounded (ε = 0.25, 256 vnodes): assigning {m} keys takes {:.2} ms.",
            t.as_secs_f64() * 1e3
        )
        .unwrap();
    }

    writeln!(
        out,
        "\n| algorithm, 8 regions, 1M keys | max/mean | moved 8 → 9 | of which between old regions |"
    )
    .unwrap();
    writeln!(out, "|---|---|---|---|").unwrap();
    let mut q = |name: String, spec: PlacementSpec| {
        let (b, m, e) = quality(&spec);
        writeln!(out, "| {name} | {b:.3} | {:.2}% | {:.2}% |", m * 100.0, e * 100.0).unwrap();
        eprintln!("{name}: {b:.3} {m:.4} {e:.4}");
    };
    q("jump".into(), spec(Algorithm::Jump, 1, 0.25));
    for v in [1, 10, 100, 256, 1000, 10_000] {
        q(format!("ring, {v} vnodes"), spec(Algorithm::Ring, v, 0.25));
    }
    for (eps, v) in [
        (0.25, 10),
        (0.1, 10),
        (0.1, 256),
        (0.05, 256),
        (0.02, 256),
        (0.05, 1000),
    ] {
        q(
            format!("bounded, ε = {eps}, {v} vnodes"),
            spec(Algorithm::Bounded, v, eps),
        );
    }
    writeln!(out, "\nIdeal movement: 1/9 = 11.11%.").unwrap();
    print!("{out}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("placement-results.md"), out).unwrap();
}
