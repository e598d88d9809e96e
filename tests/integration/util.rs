//! Shared helpers: running specs in-process, hashing outputs, locating the built binary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sluice::plan::{plan_str, Plan};
use sluice::run::{run, RunConfig, RunSummary, Updates};
use sluice::source::plan_file;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn plan_text(text: &str, dir: &Path) -> Plan {
    plan_str(text, Path::new("test.toml"), dir, &[]).unwrap_or_else(|e| panic!("{e}"))
}

pub fn plan_spec(spec: &Path) -> Plan {
    plan_file(spec, &[]).unwrap_or_else(|e| panic!("{e}"))
}

pub fn run_collect(plan: &Plan, workers: usize) -> RunSummary {
    let config = RunConfig {
        workers,
        collect: true,
        ..RunConfig::default()
    };
    run(plan, &config).unwrap_or_else(|e| panic!("{e}"))
}

/// Outputs as sorted text lines, one per update: `row | time | diff`.
pub fn sorted_lines(collected: &BTreeMap<String, Updates>) -> BTreeMap<String, Vec<String>> {
    collected
        .iter()
        .map(|(name, updates)| {
            let mut lines: Vec<String> = updates
                .iter()
                .map(|(row, t, d)| {
                    let cells: Vec<String> = row.iter().map(|v| v.to_json().to_string()).collect();
                    format!("{} | {t} | {d}", cells.join(", "))
                })
                .collect();
            lines.sort();
            (name.clone(), lines)
        })
        .collect()
}

/// A stable digest of sorted output lines.
pub fn digest(lines: &[String]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for line in lines {
        for b in line.bytes().chain([b'\n']) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

pub fn sluice_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sluice"))
}

/// Every row of every `part-*.parquet` under `dir`, as sorted text lines.
pub fn parquet_lines(dir: &Path) -> Vec<String> {
    parquet_rows(dir, |_, value| Some(value.to_string()))
}

/// Like [`parquet_lines`], with cells as `column=value` and without nulls: flattened outputs
/// give each part its own columns, so rows compare by name across different part splits.
/// Like [`parquet_lines_by_name`], with numbers as their columns' types render them (`3` in an
/// `Int64` column, `3.0` in a `Float64` one).
pub fn parquet_lines_by_name_exact(dir: &Path) -> Vec<String> {
    parquet_rows(dir, |name, value| (!value.is_null()).then(|| format!("{name}={value}")))
}

/// Numbers are rendered by value (`91.0` as `91`): a part whose column held only whole numbers
/// is `Int64` where another part's is `Float64`.
pub fn parquet_lines_by_name(dir: &Path) -> Vec<String> {
    parquet_rows(dir, |name, value| {
        let value = sluice::value::Value::from_json(value).to_json();
        (!value.is_null()).then(|| format!("{name}={value}"))
    })
}

/// Every row of every part under `dir`, each cell rendered by `cell(column, value)` (or left
/// out), sorted.
fn parquet_rows(dir: &Path, cell: impl Fn(&str, serde_json::Value) -> Option<String>) -> Vec<String> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use sluice::source::arrow_read::Col;
    let mut lines = Vec::new();
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    parts.sort();
    for part in parts {
        let file = std::fs::File::open(&part).unwrap();
        for batch in ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap() {
            let batch = batch.unwrap();
            let schema = batch.schema();
            let cols: Vec<Col> = batch.columns().iter().map(Col::new).collect();
            for row in 0..batch.num_rows() {
                let cells: Vec<String> = cols
                    .iter()
                    .zip(schema.fields())
                    .filter_map(|(c, f)| cell(f.name(), c.get(row).to_json()))
                    .collect();
                lines.push(cells.join(", "));
            }
        }
    }
    lines.sort();
    lines
}

/// Runs the built binary with `args` in `dir`.
pub fn sluice(args: &[&str], dir: &Path) -> std::process::Output {
    std::process::Command::new(sluice_bin())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("sluice runs")
}

/// A changelog accumulated up to time `t`: each row with its summed diff, zero rows dropped.
pub fn accumulate(updates: &Updates, t: u64) -> BTreeMap<Vec<sluice::value::Value>, isize> {
    let mut acc: BTreeMap<Vec<sluice::value::Value>, isize> = BTreeMap::new();
    for (row, ut, d) in updates {
        if *ut <= t {
            *acc.entry(row.clone()).or_default() += d;
        }
    }
    acc.retain(|_, d| *d != 0);
    acc
}

/// Field `name` of an event output's payload object (the last value of its rows); null when
/// absent.
pub fn payload_field(payload: &sluice::value::Value, name: &str) -> sluice::value::Value {
    payload
        .field(sluice::value::Sym::new(name))
        .cloned()
        .unwrap_or(sluice::value::Value::Null)
}
