//! Schema inference benchmark: `cargo bench --bench schema`. Compares, on one core and the same
//! NDJSON file of 20-field payloads (generated into `bench-data/` on first use), sluice's
//! incremental inference (a spec with only a schema stage: parse, infer history and recent
//! windows, register versions, conform every event) with arrow-json's batch
//! `infer_json_schema`, which parses the same bytes and infers once. Prints events/s and the
//! ratio (goal ≥ 0.5); best of three runs.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use sluice::plan::plan_str;
use sluice::run::{run, RunConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: usize = 500_000;

fn file() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("schema-20-fields-{EVENTS}.ndjson"));
    if path.exists() {
        return path;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for i in 0..EVENTS {
        let mut obj = serde_json::Map::new();
        obj.insert("ts".into(), (1_700_000_000_000i64 + i as i64 * 10).into());
        obj.insert("type".into(), ["a", "b", "c"][i % 3].into());
        for f in 0..20 {
            let key = format!("f{f:02}");
            let value: serde_json::Value = match f % 5 {
                0 => rng.random_range(0..1_000_000i64).into(),
                1 => (rng.random::<f64>() * 100.0).into(),
                2 => format!("s{}", rng.random_range(0..1000)).into(),
                3 => rng.random::<bool>().into(),
                _ => serde_json::json!({"x": rng.random_range(0..10), "tags": ["p", "q"]}),
            };
            // A few optional fields are sometimes missing.
            if f < 17 || rng.random::<f64>() < 0.7 {
                obj.insert(key, value);
            }
        }
        writeln!(out, "{}", serde_json::Value::Object(obj)).unwrap();
    }
    path
}

fn best(mut f: impl FnMut() -> Duration) -> Duration {
    (0..3).map(|_| f()).min().unwrap()
}

fn main() {
    let path = file();
    let spec = format!(
        "[pipeline]\nname = \"bench\"\n[sources.s]\npath = \"{}\"\ntime_field = \"ts\"\ntype_field = \"type\"\n[schemas.s]\nwindow = \"10m\"\n",
        path.display()
    );
    let plan = plan_str(&spec, Path::new("bench.toml"), Path::new("."), &[]).unwrap();
    let ours = best(|| {
        let started = Instant::now();
        let summary = run(&plan, &RunConfig::default()).unwrap();
        assert_eq!(summary.events_read as usize, EVENTS);
        started.elapsed()
    });
    let theirs = best(|| {
        let started = Instant::now();
        let reader = BufReader::new(std::fs::File::open(&path).unwrap());
        let (schema, n) = arrow_json::reader::infer_json_schema(reader, None).unwrap();
        assert_eq!(n, EVENTS);
        assert!(schema.fields().len() >= 20);
        started.elapsed()
    });
    let rate = |d: Duration| EVENTS as f64 / d.as_secs_f64();
    println!("\n{EVENTS} events of 20 fields, one core, best of 3:\n");
    println!("| measurement | sluice | arrow-json | ratio (goal) |\n|---|---|---|---|");
    println!(
        "| schema inference, events/s per core | {:.0} | {:.0} | {:.2} (≥ 0.5) |",
        rate(ours),
        rate(theirs),
        theirs.as_secs_f64() / ours.as_secs_f64()
    );
}
