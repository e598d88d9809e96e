//! Tests of the `learning` context tables: determinism, one version per key at or before its
//! first event, and as-of joins that reproduce the log's `plan` and `difficulty`.

use std::collections::HashMap;
use std::fs::File;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type, SchemaRef, TimestampMillisecondType};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::*;

/// The whole table at `path`, which must have `schema`.
pub(super) fn read_table(path: &Path, schema: &SchemaRef) -> RecordBatch {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    assert_eq!(reader.schema(), schema, "{}", path.display());
    let batches: Vec<RecordBatch> = reader.build().unwrap().map(Result::unwrap).collect();
    arrow::compute::concat_batches(schema, &batches).unwrap()
}

pub(super) fn ints(b: &RecordBatch, name: &str) -> Vec<i64> {
    let col = b.column_by_name(name).unwrap();
    match col.data_type() {
        arrow::datatypes::DataType::Timestamp(..) => col.as_primitive::<TimestampMillisecondType>().values().to_vec(),
        _ => col.as_primitive::<Int64Type>().values().to_vec(),
    }
}

pub(super) fn floats(b: &RecordBatch, name: &str) -> Vec<f64> {
    let col = b.column_by_name(name).unwrap();
    col.as_primitive::<Float64Type>()
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect()
}

pub(super) fn strings(b: &RecordBatch, name: &str) -> Vec<String> {
    let col = b.column_by_name(name).unwrap().as_string::<i32>();
    col.iter().map(|v| v.unwrap_or("").to_string()).collect()
}

/// Versions of a changing table by key: (time, row index), in time order.
pub(super) fn versions(keys: &[i64], times: &[i64]) -> HashMap<i64, Vec<(i64, usize)>> {
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "rows are sorted by time");
    let mut by_key: HashMap<i64, Vec<(i64, usize)>> = HashMap::new();
    for (i, (&k, &t)) in keys.iter().zip(times).enumerate() {
        by_key.entry(k).or_default().push((t, i));
    }
    by_key
}

/// The row of the version of `key` in effect at `time`.
pub(super) fn as_of(versions: &HashMap<i64, Vec<(i64, usize)>>, key: i64, time: i64) -> Option<usize> {
    let v = versions.get(&key)?;
    let n = v.partition_point(|&(t, _)| t <= time);
    (n > 0).then(|| v[n - 1].1)
}

fn generate_learning_with_context(dir: &Path, name: &str, events: usize, seed: u64) -> GenerateSummary {
    let config = GenerateConfig {
        context: Some(dir.join(format!("{name}_context"))),
        ..GenerateConfig::new("learning", events, seed, &dir.join(format!("{name}.parquet")))
    };
    generate_with(&config).unwrap()
}

#[test]
fn context_is_deterministic_and_leaves_the_log_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    let a = generate_learning_with_context(dir.path(), "a", 20_000, 7);
    let b = generate_learning_with_context(dir.path(), "b", 20_000, 7);
    let c = generate_learning_with_context(dir.path(), "c", 20_000, 8);
    generate("learning", 20_000, 7, &dir.path().join("plain.parquet"), false).unwrap();
    assert_eq!(a.context.len(), 2);
    assert_eq!(
        a.context.iter().map(|f| f.rows).collect::<Vec<_>>(),
        b.context.iter().map(|f| f.rows).collect::<Vec<_>>()
    );
    assert!(
        bytes("a.parquet") == bytes("plain.parquet"),
        "--context changed the log"
    );
    for table in ["profiles.parquet", "items.parquet"] {
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
fn as_of_joins_reproduce_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let s = generate_learning_with_context(dir.path(), "log", 60_000, 3);
    let ctx = dir.path().join("log_context");
    let events = read_table(&dir.path().join("log.parquet"), &schema::schema());
    let profiles = read_table(&ctx.join("profiles.parquet"), &learning_context::profile_schema());
    let items = read_table(&ctx.join("items.parquet"), &learning_context::item_schema());
    assert_eq!(s.context[0].rows, profiles.num_rows());
    assert_eq!(s.context[1].rows, items.num_rows());

    let users = versions(&ints(&profiles, "user_id"), &ints(&profiles, "updated_at"));
    let subscription = strings(&profiles, "subscription");
    let (country, language) = (strings(&profiles, "country"), strings(&profiles, "language"));
    let item_versions = versions(&ints(&items, "item_id"), &ints(&items, "updated_at"));
    let difficulty = floats(&items, "difficulty");

    let (times, kinds) = (ints(&events, TIME_FIELD), strings(&events, TYPE_FIELD));
    let (user_ids, plans, countries) = (
        ints(&events, "user_id"),
        strings(&events, "plan"),
        strings(&events, "country"),
    );
    let item_col = events
        .column_by_name("item_id")
        .unwrap()
        .as_primitive::<Int64Type>()
        .clone();
    let event_difficulty = floats(&events, "difficulty");
    let (mut stale_users, mut stale_items) = (0, 0);
    for i in 0..events.num_rows() {
        let p = as_of(&users, user_ids[i], times[i]).unwrap_or_else(|| panic!("user {} has no version", user_ids[i]));
        assert_eq!(
            plans[i] == "free",
            subscription[p] == "free",
            "row {i}: {} vs {}",
            plans[i],
            subscription[p]
        );
        assert_eq!(countries[i], country[p]);
        assert!(
            vocab::languages(&country[p]).contains(&language[p].as_str()),
            "{}",
            language[p]
        );
        let latest = users[&user_ids[i]].last().unwrap().1;
        stale_users += usize::from(latest != p);
        if kinds[i] == "attempt" {
            let item = item_col.value(i);
            let v = as_of(&item_versions, item, times[i]).unwrap_or_else(|| panic!("item {item} has no version"));
            assert_eq!(difficulty[v], event_difficulty[i], "item {item}");
            stale_items += usize::from(item_versions[&item].last().unwrap().1 != v);
        }
    }
    // Upgrades after a user's last event (and streaks, in logs spanning local midnights): a
    // "latest" join differs from an as-of join for some rows.
    assert!(stale_users > events.num_rows() / 50, "{stale_users}");
    // Re-calibrations come after an item's last attempt: as-of joins still see the log's
    // difficulty (checked above), "latest" joins see the new one.
    assert!(stale_items > 0);
    assert!(item_versions.values().filter(|v| v.len() > 1).count() > 100);
    let upgrades = users
        .values()
        .filter(|v| {
            v.windows(2)
                .any(|w| subscription[w[0].1] == "free" && subscription[w[1].1] != "free")
        })
        .count();
    assert!(upgrades > 50, "{upgrades} upgrades");
    let streaks = ints(&profiles, "streak_days");
    assert!(streaks.iter().any(|&s| s > 5) && streaks.iter().all(|&s| (0..=366).contains(&s)));
    assert!(strings(&profiles, "subscription").iter().any(|s| s == "family"));
}

#[test]
fn options_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.parquet");
    let run = |f: &dyn Fn(&mut GenerateConfig), scenario: &str| {
        let mut c = GenerateConfig::new(scenario, 10, 1, &out);
        f(&mut c);
        generate_with(&c).unwrap_err()
    };
    let e = run(&|c| c.users = Some(5), "learning");
    assert!(e.is_usage() && e.to_string().contains("--users"), "{e}");
    let e = run(&|c| c.context = Some(dir.path().into()), "evolving");
    assert!(e.is_usage() && e.to_string().contains("--context"), "{e}");
    let e = run(&|c| c.ranges = Some(1), "uploads");
    assert!(e.is_usage() && e.to_string().contains("--ranges"), "{e}");
    let e = run(&|_| {}, "shopping");
    assert!(e.is_usage() && e.to_string().contains("uploads"), "{e}");
}
