//! Field references checked against the sources' schemas at `check` and `run`, and the smaller
//! messages: late-event advice, duration units, expression help, missing files, implicit tables.

use std::path::Path;
use std::process::Output;

use crate::util::{repo, sluice};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn learning() -> String {
    repo().join("data/learning_sample.parquet").display().to_string()
}

fn profiles() -> String {
    repo()
        .join("data/learning_context/profiles.parquet")
        .display()
        .to_string()
}

/// A spec over the learning sample with one aggregate; `extra` goes before it.
fn parquet_spec(extra: &str, group_by: &str, measure: &str) -> String {
    format!(
        "[pipeline]\nname = \"t\"\n\n[sources.events]\npath = \"{}\"\ntime_field = \"event_time\"\n\
         type_field = \"event_type\"\nallowed_lateness = \"2m\"\n{extra}\n[[aggregates]]\nname = \"a\"\n\
         source = \"events\"\nwindow = {{ tumbling = \"1h\" }}\ngroup_by = [{group_by}]\nmeasures.m = \"{measure}\"\n",
        learning()
    )
}

/// Writes `spec` as `dir/t.toml` and runs `sluice check` (or `run`) on it.
fn sluice_on(dir: &Path, command: &str, spec: &str) -> Output {
    std::fs::write(dir.join("t.toml"), spec).unwrap();
    sluice(&[command, "t.toml", "--quiet"], dir)
}

/// The 1-based line and column of the first occurrence of `needle` in `spec`.
fn position(spec: &str, needle: &str) -> String {
    let at = spec.find(needle).unwrap_or_else(|| panic!("{needle} in {spec}"));
    let line = spec[..at].matches('\n').count() + 1;
    let column = at - spec[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("t.toml:{line}:{column}:")
}

fn assert_rejected(out: &Output, location: &str, key: &str, wanted: &[&str]) {
    let msg = text(out);
    assert_eq!(out.status.code(), Some(2), "{msg}");
    assert!(msg.contains(location), "want {location}: {msg}");
    assert!(msg.contains(&format!("`{key}`")), "want key {key}: {msg}");
    for w in wanted {
        assert!(msg.contains(w), "want {w}: {msg}");
    }
}

#[test]
fn misspelled_fields_of_a_parquet_source_fail_check_and_run() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = parquet_spec("", "\"regoin\"", "count()");
    for command in ["check", "run"] {
        let out = sluice_on(tmp.path(), command, &spec);
        let at = position(&spec, "regoin\"");
        assert_rejected(
            &out,
            &at,
            "aggregates[0].group_by[0]",
            &["no field `regoin` in source `events`", "did you mean `region`?"],
        );
    }
    let spec = parquet_spec("", "\"region\"", "avg(respnse_time_ms) where event_type == 'attempt'");
    let out = sluice_on(tmp.path(), "check", &spec);
    assert_rejected(
        &out,
        &position(&spec, "respnse_time_ms"),
        "aggregates[0].measures.m",
        &["no field `respnse_time_ms`", "did you mean `response_time_ms`?"],
    );
    // In the measure's filter, and in the aggregate's `where`.
    let spec = parquet_spec("", "\"region\"", "count() where corect");
    let out = sluice_on(tmp.path(), "check", &spec);
    assert_rejected(
        &out,
        &position(&spec, "corect"),
        "aggregates[0].measures.m",
        &["did you mean `correct`?"],
    );
    let spec = parquet_spec("", "\"region\"", "count()").replace("group_by", "where = \"evnt_type == 'x'\"\ngroup_by");
    let out = sluice_on(tmp.path(), "check", &spec);
    assert_rejected(
        &out,
        &position(&spec, "evnt_type"),
        "aggregates[0].where",
        &["did you mean `event_type`?"],
    );
    // The correct names pass.
    let spec = parquet_spec("", "\"region\", \"event_type\"", "avg(response_time_ms) where correct");
    let out = sluice_on(tmp.path(), "check", &spec);
    assert!(out.status.success(), "{}", text(&out));
}

/// An NDJSON file whose first 1000 lines have `region` and `ms`, and whose later lines add `late_field`.
fn write_ndjson(dir: &Path) {
    let mut lines = String::new();
    for i in 0..1_200 {
        let extra = if i >= 1_000 { ",\"late_field\":1" } else { "" };
        lines.push_str(&format!(
            "{{\"ts\":{},\"type\":\"hit\",\"region\":\"r{}\",\"ms\":{i},\"user\":{{\"id\":{i}}}{extra}}}\n",
            1_700_000_000_000i64 + i * 1_000,
            i % 3
        ));
    }
    std::fs::write(dir.join("events.ndjson"), lines).unwrap();
}

fn ndjson_spec(fields: &str, group_by: &str, measure: &str) -> String {
    format!(
        "[pipeline]\nname = \"t\"\n\n[sources.events]\npath = \"events.ndjson\"\ntime_field = \"ts\"\n\
         type_field = \"type\"\n{fields}\n[[aggregates]]\nname = \"a\"\nsource = \"events\"\n\
         window = {{ tumbling = \"1h\" }}\ngroup_by = [{group_by}]\nmeasures.m = \"{measure}\"\n"
    )
}

#[test]
fn misspelled_fields_of_an_ndjson_source_fail_and_open_sources_accept_any() {
    let tmp = tempfile::tempdir().unwrap();
    write_ndjson(tmp.path());
    let spec = ndjson_spec("", "\"regin\"", "count()");
    let out = sluice_on(tmp.path(), "check", &spec);
    assert_rejected(
        &out,
        &position(&spec, "regin"),
        "aggregates[0].group_by[0]",
        &["did you mean `region`?", "first 1000 lines", "fields = \"open\""],
    );
    let spec = ndjson_spec("", "\"user.di\"", "sum(mss)");
    let out = sluice_on(tmp.path(), "run", &spec);
    assert_rejected(
        &out,
        &position(&spec, "user.di"),
        "aggregates[0].group_by[0]",
        &["no field `di` in `user`", "did you mean `user.id`?"],
    );
    let spec = ndjson_spec("", "\"user.id\"", "sum(mss)");
    let out = sluice_on(tmp.path(), "check", &spec);
    assert_rejected(
        &out,
        &position(&spec, "mss"),
        "aggregates[0].measures.m",
        &["did you mean `ms`?"],
    );

    // A field that first appears after the sample: rejected when closed, accepted when open.
    let spec = ndjson_spec("", "\"region\"", "count(late_field)");
    let out = sluice_on(tmp.path(), "check", &spec);
    assert_rejected(
        &out,
        &position(&spec, "late_field"),
        "aggregates[0].measures.m",
        &["`late_field`"],
    );
    let spec = ndjson_spec("fields = \"open\"", "\"region\"", "count(late_field)");
    let out = sluice_on(tmp.path(), "run", &spec);
    assert!(out.status.success(), "{}", text(&out));
    let spec = ndjson_spec("fields = \"opne\"", "\"region\"", "count()");
    let out = sluice_on(tmp.path(), "check", &spec);
    assert_rejected(
        &out,
        &position(&spec, "\"opne\""),
        "sources.events.fields",
        &["unknown fields setting"],
    );
}

#[test]
fn fields_added_by_joins_derive_and_transforms_are_known_in_stage_order() {
    let tmp = tempfile::tempdir().unwrap();
    let enrich = |derive: &str| {
        format!(
            "\n[sources.profiles]\npath = \"{}\"\ntime_field = \"updated_at\"\n\n[[enrich.events.join]]\n\
             context = \"profiles\"\nas = \"profile\"\non = {{ user_id = \"user_id\" }}\nfields = [\"subscription\", \"language\"]\n\n\
             [enrich.events.derive]\n{derive}\n\n[[enrich.events.rule]]\nid = \"t\"\nwhen = \"fast\"\naction = \"transform\"\n\
             set.speed = \"'fast'\"\nrename.region = \"area\"\n",
            profiles()
        )
    };
    let good = enrich("fast = \"response_time_ms < 1000 and profile.subscription != 'free'\"");
    let spec = parquet_spec(
        &good,
        "\"profile.subscription\", \"fast\", \"speed\", \"area\"",
        "count() where profile.language == 'en'",
    );
    let out = sluice_on(tmp.path(), "check", &spec);
    assert!(out.status.success(), "{}", text(&out));
    // Only the fields the join lists are attached.
    let spec = parquet_spec(&good, "\"profile.streak_days\"", "count()");
    let out = sluice_on(tmp.path(), "check", &spec);
    assert_rejected(
        &out,
        &position(&spec, "profile.streak_days"),
        "aggregates[0].group_by[0]",
        &["no field `streak_days` in `profile`", "`language`, `subscription`"],
    );
    // A derived field cannot read one derived after it.
    let bad = enrich("fast = \"slow\"\nslow = \"response_time_ms > 1000\"");
    let spec = parquet_spec(&bad, "\"fast\"", "count()");
    let out = sluice_on(tmp.path(), "check", &spec);
    assert_rejected(
        &out,
        &position(&spec, "slow\"\n"),
        "enrich.events.derive.fast",
        &["no field `slow`"],
    );
    // Both sides of a join key, and the attached fields, are checked against their sources.
    let spec = parquet_spec(
        &good.replace("on = { user_id", "on = { usr_id"),
        "\"region\"",
        "count()",
    );
    let out = sluice_on(tmp.path(), "check", &spec);
    assert_rejected(
        &out,
        &position(&spec, "usr_id"),
        "enrich.events.join[0].on.usr_id",
        &["did you mean `user_id`?"],
    );
    let spec = parquet_spec(&good.replace("\"language\"]", "\"langauge\"]"), "\"region\"", "count()");
    let out = sluice_on(tmp.path(), "check", &spec);
    assert_rejected(
        &out,
        &position(&spec, "langauge"),
        "enrich.events.join[0].fields[1]",
        &["no field `langauge` in source `profiles`", "did you mean `language`?"],
    );
}

#[test]
fn implicit_tables_of_enrich_schemas_and_dedup_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    write_ndjson(tmp.path());
    let pin = "{\"type\":\"object\",\"properties\":{\"coupon\":{\"type\":\"string\"}}}";
    std::fs::write(tmp.path().join("hit.json"), pin).unwrap();
    // No `[enrich.events]`, `[schemas.events]` or `[dedup.events.hit]` header lines.
    let extra =
        "\n[schemas.events.pin]\nhit = \"hit.json\"\n\n[dedup.events]\nhit.key = [\"user.id\"]\nhit.ttl = \"1h\"\n\n\
                 [[enrich.events.rule]]\nid = \"r\"\nwhen = \"ms > 5\"\naction = \"allow\"\n";
    let spec = ndjson_spec(
        extra,
        "\"region\", \"schema_version\"",
        "count(coupon) where exists(_marks)",
    );
    let out = sluice_on(tmp.path(), "run", &spec);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("enriched"), "{}", text(&out));
    // A window written with dotted keys is a table sluice cannot locate: the message says how to write it.
    let spec =
        ndjson_spec("", "\"region\"", "count()").replace("window = { tumbling = \"1h\" }", "window.tumbling = \"1h\"");
    let out = sluice_on(tmp.path(), "check", &spec);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(2), "{msg}");
    assert!(msg.contains("`window` is only implied"), "{msg}");
    assert!(msg.contains("window = { tumbling = ... }"), "{msg}");
}

#[test]
fn many_late_events_get_a_measured_lateness_suggestion() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = parquet_spec("", "\"region\"", "count()").replace("allowed_lateness = \"2m\"\n", "");
    let out = sluice_on(tmp.path(), "run", &spec);
    let msg = text(&out);
    assert!(out.status.success(), "{msg}");
    assert!(
        msg.contains("warning: ") && msg.contains("of source `events`'s events were late"),
        "{msg}"
    );
    // "with allowed_lateness = "30s" under [sources.events], 64 (0.13%) would have been late"
    let (_, rest) = msg
        .split_once("\n    with allowed_lateness = \"")
        .expect("a suggestion");
    let (setting, rest) = rest.split_once('"').unwrap();
    let predicted: u64 = rest
        .split_once("], ")
        .and_then(|(_, r)| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{msg}"));
    // The suggestion is measured: a run with it has exactly the predicted late events, and no warning.
    let spec = spec.replace(
        "type_field = \"event_type\"\n",
        &format!("type_field = \"event_type\"\nallowed_lateness = \"{setting}\"\n"),
    );
    let out = sluice_on(tmp.path(), "run", &spec);
    let msg = text(&out);
    assert!(msg.contains(&format!("late events: {predicted};")), "{msg}");
    assert!(!msg.contains("warning:"), "{msg}");
}

#[test]
fn durations_accept_spelled_out_units_and_errors_list_the_units() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = parquet_spec("", "\"region\"", "count()");
    let out = sluice_on(tmp.path(), "check", &spec.replace("\"1h\"", "\"7 minutes\""));
    assert!(out.status.success(), "{}", text(&out));
    let spec = spec.replace("\"1h\"", "\"7\"");
    let out = sluice_on(tmp.path(), "check", &spec);
    assert_rejected(
        &out,
        &position(&spec, "\"7\""),
        "aggregates[0].window.tumbling",
        &["missing unit after 7", "ms, s, m (or min), h and d", "minutes"],
    );
}

#[test]
fn expression_errors_get_help_about_the_error() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = parquet_spec("", "\"region\"", "avg(response_time_ms +)");
    let out = sluice_on(tmp.path(), "check", &spec);
    assert_rejected(
        &out,
        &position(&spec, ")\"\n"),
        "aggregates[0].measures.m",
        &[
            "expected an expression after `+`",
            "avg(response_time_ms +)\n",
            "^",
            "right-hand operand",
        ],
    );
    assert!(!text(&out).contains("count_distinct"), "{}", text(&out));
    let spec = parquet_spec("", "\"region\"", "count() where region = 'EU' 'US'");
    let out = sluice_on(tmp.path(), "check", &spec);
    assert_rejected(
        &out,
        &position(&spec, "'US'"),
        "aggregates[0].measures.m",
        &["need an operator", "backtick"],
    );
    let spec = parquet_spec("", "\"region\"", "sum(response_time_ms) / 1000");
    let out = sluice_on(tmp.path(), "check", &spec);
    assert_rejected(
        &out,
        &position(&spec, "/ 1000"),
        "aggregates[0].measures.m",
        &["sum(a + b)"],
    );
    // An unknown function still lists the functions, and suggests the nearest.
    let spec = parquet_spec("", "\"region\"", "avgg(response_time_ms)");
    let out = sluice_on(tmp.path(), "check", &spec);
    assert_rejected(
        &out,
        &position(&spec, "avgg"),
        "aggregates[0].measures.m",
        &["did you mean `avg`?", "count_distinct"],
    );
}

#[test]
fn a_missing_input_file_is_named_once() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = parquet_spec("", "\"region\"", "count()").replace(&learning(), "nope.parquet");
    for command in ["check", "run"] {
        let out = sluice_on(tmp.path(), command, &spec);
        let msg = text(&out);
        assert_eq!(out.status.code(), Some(1), "{msg}");
        assert_eq!(msg.matches("nope.parquet").count(), 1, "{msg}");
    }
    let spec = repo().join("dataflows/learning_analytics.toml");
    let out = sluice(
        &[
            "run",
            spec.to_str().unwrap(),
            "--input",
            "events=gone.parquet",
            "--quiet",
        ],
        tmp.path(),
    );
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert_eq!(msg.matches("gone.parquet").count(), 1, "{msg}");
}

#[test]
fn tcp_sources_are_open_unless_closed_with_a_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = |fields: &str| {
        format!(
            "[pipeline]\nname = \"t\"\n\n[sources.events]\nformat = \"tcp\"\ntime_field = \"ts\"\ntype_field = \"type\"\n{fields}\n\
             [[aggregates]]\nname = \"a\"\nsource = \"events\"\nwindow = {{ tumbling = \"1h\" }}\ngroup_by = [\"anything\"]\nmeasures.n = \"count()\"\n"
        )
    };
    let out = sluice_on(tmp.path(), "check", &spec(""));
    assert!(out.status.success(), "{}", text(&out));
    let closed = spec("fields = \"closed\"");
    let out = sluice_on(tmp.path(), "check", &closed);
    assert_rejected(
        &out,
        &position(&closed, "\"closed\""),
        "sources.events.fields",
        &["no pinned schemas", "fields = \"open\""],
    );
    // Replayed from a file, the source has a schema: the file's fields are checked.
    write_ndjson(tmp.path());
    std::fs::write(tmp.path().join("t.toml"), spec("")).unwrap();
    let out = sluice(&["check", "t.toml"], tmp.path());
    assert!(out.status.success(), "{}", text(&out));
    let out = sluice(
        &["run", "t.toml", "--input", "events=events.ndjson", "--quiet"],
        tmp.path(),
    );
    assert_rejected(&out, "t.toml:", "aggregates[0].group_by[0]", &["no field `anything`"]);
}

/// A `group_by` path names its column with `.` and indexes made `_`; a table names them; two
/// columns of one name are an error.
#[test]
fn group_columns_have_sql_names_or_the_names_given() {
    let tmp = tempfile::tempdir().unwrap();
    let join = format!(
        "\n[sources.profiles]\npath = \"{}\"\ntime_field = \"updated_at\"\n\n[[enrich.events.join]]\n\
         context = \"profiles\"\nas = \"profile\"\non = {{ user_id = \"user_id\" }}\nfields = [\"subscription\"]\n",
        profiles()
    );
    let columns = |spec: &str| -> Vec<String> {
        let plan = crate::util::plan_text(spec, tmp.path());
        let out = plan.outputs.iter().find(|o| o.name == "a").expect("output a");
        out.columns.clone()
    };
    let spec = parquet_spec(&join, "\"profile.subscription\", \"user_id\"", "count()");
    assert_eq!(columns(&spec)[..3], ["profile_subscription", "user_id", "window_start"]);
    let named = spec.replace(
        "group_by = [\"profile.subscription\", \"user_id\"]",
        "group_by = { tier = \"profile.subscription\", user = \"user_id\" }",
    );
    assert_eq!(columns(&named)[..3], ["tier", "user", "window_start"]);
    // A misspelt path under a name is found, and its key says which column.
    let out = sluice_on(
        tmp.path(),
        "check",
        &named.replace("user = \"user_id\" }", "user = \"usr_id\" }"),
    );
    assert_rejected(&out, "t.toml:", "aggregates[0].group_by.user", &["no field `usr_id`"]);
    let twice = parquet_spec(&join, "\"user_id\", \"user_id\"", "count()");
    let out = sluice_on(tmp.path(), "check", &twice);
    assert_rejected(
        &out,
        "t.toml:",
        "aggregates[0].group_by[1]",
        &["group column `user_id` is defined twice"],
    );
}
