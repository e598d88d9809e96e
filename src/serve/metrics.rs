//! What `GET /status` and `GET /metrics` say: a JSON status and the Prometheus text exposition
//! (format 0.0.4) of a serving process, read from its [`ServeState`] and [`LiveViews`]. Pure
//! functions of those, so the rendering is unit-tested without a server.
//!
//! The pipeline's own counters (`events_processed`, `events_enriched`, `events_filtered`,
//! `events_deduplicated` per source, and the enrichment's per-join and per-rule counts) come
//! from the live view of the `counters` output; dead letters by reason from the view of
//! `dead_letters`, which every rejected record reaches.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::live::{LiveViews, View};
use super::state::ServeState;
use crate::value::{format_time, Value};

/// The share of wall-clock time each worker spent admitting batches and stepping, over the
/// interval between two samples at least a second apart (since start for the first).
pub struct Utilization {
    last: Option<(Duration, Vec<u64>)>,
    values: Vec<f64>,
}

impl Utilization {
    pub fn new(workers: usize) -> Utilization {
        Utilization {
            last: None,
            values: vec![0.0; workers],
        }
    }

    /// Updates the values at `now` (the process's uptime) and returns them.
    pub fn sample(&mut self, live: &LiveViews, now: Duration) -> Vec<f64> {
        let busy: Vec<u64> = live.busy_ns.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let (then, before) = match &self.last {
            Some((t, b)) => (*t, b.clone()),
            None => (Duration::ZERO, vec![0; busy.len()]),
        };
        let wall = now.saturating_sub(then);
        if self.last.is_none() || wall >= Duration::from_secs(1) {
            let wall_ns = wall.as_nanos().max(1) as f64;
            self.values = busy
                .iter()
                .zip(&before)
                .map(|(b, a)| (b.saturating_sub(*a) as f64 / wall_ns).min(1.0))
                .collect();
            self.last = Some((now, busy));
        }
        self.values.clone()
    }
}

/// Prometheus text exposition, one family at a time.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts a family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        self
    }

    /// One sample; label values are escaped.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                let _ = write!(self.out, "{k}=\"{v}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
        self
    }

    /// A histogram family from cumulative buckets, a count and a sum.
    pub fn histogram(&mut self, name: &str, help: &str, buckets: &[(f64, u64)], count: u64, sum: f64) -> &mut Self {
        self.family(name, "histogram", help);
        for (le, n) in buckets {
            self.sample(&format!("{name}_bucket"), &[("le", &number(*le))], *n as f64);
        }
        self.sample(&format!("{name}_bucket"), &[("le", "+Inf")], count as f64);
        self.sample(&format!("{name}_sum"), &[], sum);
        self.sample(&format!("{name}_count"), &[], count as f64)
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn number(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{x}")
    }
}

/// The rows of the `counters` view: (metric, label, value).
fn counters(live: &LiveViews) -> Vec<(String, String, i64)> {
    let Some(view) = live.get(crate::plan::COUNTERS) else {
        return Vec::new();
    };
    let Ok((rows, _)) = view.lookup(&Vec::new()) else {
        return Vec::new();
    };
    rows.into_iter()
        .filter_map(|(row, _)| match row.as_slice() {
            [metric, label, Value::Int(n)] => Some((metric.to_string(), label.to_string(), *n)),
            _ => None,
        })
        .collect()
}

/// Watermark and lag (wall clock − watermark) of each TCP source, in ms; `None` before events.
fn watermarks(state: &ServeState, now_ms: i64) -> Vec<(&str, Option<(i64, i64)>)> {
    state
        .sources
        .iter()
        .zip(&state.watermarks)
        .map(|(name, w)| {
            let w = w.load(Ordering::Relaxed);
            (name.as_str(), (w != i64::MIN).then(|| (w, now_ms.saturating_sub(w))))
        })
        .collect()
}

/// Partitions holding each TCP source's watermark.
fn partitions(state: &ServeState, source: usize) -> u64 {
    state.partitions.get(source).map_or(0, ServeState::get)
}

/// `GET /status`.
pub fn status_json(
    pipeline: &str,
    state: &ServeState,
    live: &LiveViews,
    utilization: &[f64],
    now_ms: i64,
) -> serde_json::Value {
    let get = ServeState::get;
    let sources: Vec<serde_json::Value> = watermarks(state, now_ms)
        .into_iter()
        .enumerate()
        .map(|(k, (name, w))| {
            let p = partitions(state, k);
            match w {
                Some((w, lag)) => serde_json::json!({
                    "name": name, "watermark": format_time(w), "watermark_ms": w, "lag_seconds": lag as f64 / 1e3,
                    "partitions": p,
                }),
                None => serde_json::json!({
                    "name": name, "watermark": null, "watermark_ms": null, "lag_seconds": null, "partitions": p,
                }),
            }
        })
        .collect();
    let outputs: Vec<serde_json::Value> = live
        .all()
        .iter()
        .map(|v| {
            let s = v.stats();
            serde_json::json!({"name": s.name, "rows": s.rows, "updates": s.updates, "frontier": s.frontier})
        })
        .collect();
    serde_json::json!({
        "pipeline": pipeline,
        "uptime_seconds": state.uptime().as_secs_f64(),
        "workers": state.workers,
        "sources": sources,
        "events_processed": get(&state.events_processed),
        "lines_received": get(&state.lines_received),
        "bytes_received": get(&state.bytes_received),
        "connections": {
            "open": get(&state.connections_open),
            "total": get(&state.connections_total),
            "refused": get(&state.connections_refused),
            "rejected": get(&state.connections_rejected),
            "fenced": get(&state.connections_fenced),
            "lines_fenced": get(&state.lines_fenced),
            "timed_out": get(&state.connections_timed_out),
        },
        "queues": {
            "queued_bytes": get(&state.queued_bytes),
            "worker_batches": state.worker_queues.iter().map(get).collect::<Vec<_>>(),
        },
        "worker_utilization": utilization,
        "clients": {
            "known": get(&state.clients),
            "expired": get(&state.clients_expired),
        },
        "wal": {
            "records": get(&state.wal_records),
            "bytes": get(&state.wal_bytes),
            "syncs": get(&state.wal_syncs),
            "segments": get(&state.wal_segments),
            "checkpoints": get(&state.checkpoints),
            "segments_removed": get(&state.wal_segments_removed),
        },
        "outputs": outputs,
    })
}

/// `GET /metrics`.
pub fn metrics_text(
    state: &ServeState,
    live: &LiveViews,
    utilization: &[f64],
    now_ms: i64,
    subscribers: usize,
) -> String {
    let mut e = Exposition::default();
    let counters = counters(live);
    let pipeline = |e: &mut Exposition, metric: &str, help: &str, fallback: Option<u64>| {
        let name = format!("{metric}_total");
        e.family(&name, "counter", help);
        let rows: Vec<_> = counters.iter().filter(|(m, ..)| m == metric).collect();
        for (_, source, n) in &rows {
            e.sample(&name, &[("source", source)], *n as f64);
        }
        if rows.is_empty() {
            e.sample(&name, &[], fallback.unwrap_or(0) as f64);
        }
    };
    let get = |c| ServeState::get(c) as f64;
    pipeline(
        &mut e,
        "events_processed",
        "Events processed: entering the enrichment stage, or admitted on time without one.",
        Some(ServeState::get(&state.events_processed)),
    );
    pipeline(
        &mut e,
        "events_enriched",
        "Events with at least one context join hit.",
        None,
    );
    pipeline(&mut e, "events_filtered", "Events blocked by a rule.", None);
    pipeline(
        &mut e,
        "events_deduplicated",
        "Duplicate events removed by deduplication.",
        None,
    );
    e.family(
        "pipeline_counter_total",
        "counter",
        "Every row of the `counters` output.",
    );
    for (metric, label, n) in &counters {
        e.sample(
            "pipeline_counter_total",
            &[("metric", metric), ("label", label)],
            *n as f64,
        );
    }

    e.family(
        "events_dead_lettered_total",
        "counter",
        "Records sent to dead letters, by reason.",
    );
    if let Some(view) = live.get(crate::DEAD_LETTERS) {
        for (reason, n) in view.tally() {
            e.sample("events_dead_lettered_total", &[("reason", &reason)], n as f64);
        }
    }

    let (buckets, count, sum) = live.processing.snapshot();
    e.histogram(
        "processing_duration_seconds",
        "Per worker step after a batch arrives: admitting the batch and stepping the dataflow.",
        &buckets,
        count,
        sum,
    );
    e.family(
        "worker_utilization",
        "gauge",
        "Share of wall-clock time a worker spent processing.",
    );
    for (i, u) in utilization.iter().enumerate() {
        e.sample("worker_utilization", &[("worker", &i.to_string())], *u);
    }
    e.family(
        "worker_busy_seconds_total",
        "counter",
        "Time a worker spent processing.",
    );
    for (i, b) in live.busy_ns.iter().enumerate() {
        let secs = b.load(Ordering::Relaxed) as f64 / 1e9;
        e.sample("worker_busy_seconds_total", &[("worker", &i.to_string())], secs);
    }

    e.family(
        "queue_bytes",
        "gauge",
        "Bytes of lines queued between the sockets and the workers.",
    );
    e.sample("queue_bytes", &[], get(&state.queued_bytes));
    e.family("worker_queue_batches", "gauge", "Batches queued for a worker.");
    for (i, q) in state.worker_queues.iter().enumerate() {
        e.sample("worker_queue_batches", &[("worker", &i.to_string())], get(q));
    }
    e.family("connections_open", "gauge", "Open client connections.");
    e.sample("connections_open", &[], get(&state.connections_open));
    for (name, help, counter) in [
        ("connections_total", "Connections accepted.", &state.connections_total),
        (
            "connections_refused_total",
            "Connections refused at max_connections.",
            &state.connections_refused,
        ),
        (
            "connections_rejected_total",
            "Connections closed for a bad hello or token.",
            &state.connections_rejected,
        ),
        (
            "connections_fenced_total",
            "Connections closed because a later hello took their client id.",
            &state.connections_fenced,
        ),
        (
            "lines_fenced_total",
            "Lines of fenced connections refused unlogged and unacknowledged.",
            &state.lines_fenced,
        ),
        (
            "connections_timed_out_total",
            "Connections closed for idleness.",
            &state.connections_timed_out,
        ),
        (
            "lines_received_total",
            "Complete lines received.",
            &state.lines_received,
        ),
        (
            "bytes_received_total",
            "Bytes received from clients.",
            &state.bytes_received,
        ),
        (
            "lines_resent_total",
            "Lines skipped because the log already held them.",
            &state.lines_deduplicated,
        ),
        (
            "lines_replayed_total",
            "Lines replayed from the write-ahead log at start-up.",
            &state.lines_replayed,
        ),
        (
            "wal_records_total",
            "Records appended to the write-ahead log.",
            &state.wal_records,
        ),
        (
            "wal_bytes_total",
            "Bytes appended to the write-ahead log.",
            &state.wal_bytes,
        ),
        (
            "wal_syncs_total",
            "Write-ahead log fsyncs (group commits).",
            &state.wal_syncs,
        ),
        ("acks_sent_total", "Acknowledgements sent to clients.", &state.acks_sent),
        (
            "checkpoints_total",
            "Checkpoints written (outputs flushed, log truncated).",
            &state.checkpoints,
        ),
        (
            "wal_segments_removed_total",
            "Write-ahead log segments removed by checkpoints.",
            &state.wal_segments_removed,
        ),
        (
            "clients_expired_total",
            "Named clients forgotten after --client-retention without activity.",
            &state.clients_expired,
        ),
    ] {
        e.family(name, "counter", help);
        e.sample(name, &[], get(counter));
    }

    e.family("clients", "gauge", "Named clients whose line offsets the server holds.");
    e.sample("clients", &[], get(&state.clients));
    e.family(
        "watermark_seconds",
        "gauge",
        "Event-time watermark of a TCP source (Unix seconds).",
    );
    let marks = watermarks(state, now_ms);
    for (source, w) in &marks {
        if let Some((w, _)) = w {
            e.sample("watermark_seconds", &[("source", source)], *w as f64 / 1e3);
        }
    }
    e.family(
        "watermark_lag_seconds",
        "gauge",
        "Wall clock minus a TCP source's watermark.",
    );
    for (source, w) in &marks {
        if let Some((_, lag)) = w {
            e.sample("watermark_lag_seconds", &[("source", source)], *lag as f64 / 1e3);
        }
    }
    e.family(
        "watermark_partitions",
        "gauge",
        "Clients (partitions) whose event time holds a TCP source's watermark.",
    );
    for (k, (source, _)) in marks.iter().enumerate() {
        e.sample(
            "watermark_partitions",
            &[("source", source)],
            partitions(state, k) as f64,
        );
    }
    e.family(
        "watermark_partitions_idle_total",
        "counter",
        "Partitions that stopped holding a watermark after the idle timeout.",
    );
    e.sample(
        "watermark_partitions_idle_total",
        &[],
        ServeState::get(&state.partitions_idle) as f64,
    );

    let views: Vec<std::sync::Arc<View>> = live.all();
    let stats: Vec<_> = views.iter().map(|v| v.stats()).collect();
    e.family("collection_rows", "gauge", "Current rows of an output's live view.");
    for s in &stats {
        e.sample("collection_rows", &[("collection", &s.name)], s.rows as f64);
    }
    e.family(
        "collection_updates_total",
        "counter",
        "Updates an output's sink received.",
    );
    for s in &stats {
        e.sample("collection_updates_total", &[("collection", &s.name)], s.updates as f64);
    }
    e.family("subscribers", "gauge", "Open subscriptions.");
    e.sample("subscribers", &[], subscribers as f64);
    e.family("uptime_seconds", "gauge", "Seconds since the server started.");
    e.sample("uptime_seconds", &[], state.uptime().as_secs_f64());
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::live::ViewSpec;

    fn spec(name: &str, columns: &[&str]) -> ViewSpec {
        ViewSpec {
            name: name.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            changelog: false,
            snapshot: false,
            flatten: false,
            tally: None,
        }
    }

    /// Parses exposition text into `name{labels}` → value, checking every line's shape.
    fn parse(text: &str) -> std::collections::BTreeMap<String, f64> {
        let mut samples = std::collections::BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# ") {
                assert!(rest.starts_with("HELP ") || rest.starts_with("TYPE "), "{line}");
                continue;
            }
            let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
            let value = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("{line}")),
            };
            assert!(samples.insert(key.to_string(), value).is_none(), "repeated {key}");
        }
        samples
    }

    #[test]
    fn exposition_escapes_labels_and_writes_histograms() {
        let mut e = Exposition::default();
        e.family("x_total", "counter", "An x.")
            .sample("x_total", &[("reason", "a\"b\\c\nd")], 3.0);
        e.histogram("d_seconds", "D.", &[(0.5, 1), (1.0, 3)], 4, 2.5);
        let text = e.finish();
        assert_eq!(
            text,
            "# HELP x_total An x.\n# TYPE x_total counter\nx_total{reason=\"a\\\"b\\\\c\\nd\"} 3\n\
             # HELP d_seconds D.\n# TYPE d_seconds histogram\nd_seconds_bucket{le=\"0.5\"} 1\n\
             d_seconds_bucket{le=\"1\"} 3\nd_seconds_bucket{le=\"+Inf\"} 4\nd_seconds_sum 2.5\nd_seconds_count 4\n"
        );
    }

    #[test]
    fn metrics_read_the_counters_and_dead_letters_views() {
        let state = ServeState::new(2, vec!["events".into()]);
        ServeState::add(&state.events_processed, 7);
        ServeState::add(&state.connections_open, 2);
        state.raise_watermark(0, 1_000_000);
        let live = LiveViews::new(2, 100, 100);
        let counters = live.register(ViewSpec {
            snapshot: true,
            ..spec(crate::plan::COUNTERS, &["metric", "label"])
        });
        let c = |m: &str| vec![Value::str(m), Value::str("events")];
        counters.apply(
            vec![
                (c("events_processed"), 1, 5),
                (c("events_enriched"), 1, 4),
                (c("events_deduplicated"), 1, 1),
            ],
            Some(2),
        );
        let dead = live.register(ViewSpec {
            tally: Some(1),
            ..spec(crate::DEAD_LETTERS, &["stage", "reason"])
        });
        let d = |r: &str| vec![Value::str("source:events"), Value::str(r)];
        dead.apply(
            vec![(d("late"), 1, 1), (d("late"), 2, 1), (d("malformed_json"), 2, 1)],
            Some(3),
        );
        live.observe_step(0, Duration::from_millis(2));
        live.observe_step(1, Duration::from_millis(30));

        let text = metrics_text(&state, &live, &[0.25, 0.5], 1_003_000, 1);
        let m = parse(&text);
        assert_eq!(m["events_processed_total{source=\"events\"}"], 5.0);
        assert_eq!(m["events_enriched_total{source=\"events\"}"], 4.0);
        assert_eq!(m["events_filtered_total"], 0.0);
        assert_eq!(m["events_deduplicated_total{source=\"events\"}"], 1.0);
        assert_eq!(m["events_dead_lettered_total{reason=\"late\"}"], 2.0);
        assert_eq!(m["events_dead_lettered_total{reason=\"malformed_json\"}"], 1.0);
        assert_eq!(m["processing_duration_seconds_count"], 2.0);
        assert_eq!(m["processing_duration_seconds_bucket{le=\"0.0025\"}"], 1.0);
        assert_eq!(m["processing_duration_seconds_bucket{le=\"+Inf\"}"], 2.0);
        assert!((m["processing_duration_seconds_sum"] - 0.032).abs() < 1e-9);
        assert_eq!(m["worker_utilization{worker=\"1\"}"], 0.5);
        assert_eq!(m["worker_queue_batches{worker=\"0\"}"], 0.0);
        assert_eq!(m["connections_open"], 2.0);
        assert_eq!(m["watermark_seconds{source=\"events\"}"], 1000.0);
        assert_eq!(m["watermark_lag_seconds{source=\"events\"}"], 3.0);
        assert_eq!(m["collection_rows{collection=\"dead_letters\"}"], 3.0);
        assert_eq!(
            m["pipeline_counter_total{metric=\"events_enriched\",label=\"events\"}"],
            4.0
        );
        assert_eq!(m["subscribers"], 1.0);

        // Without a counters output, events_processed comes from the admitted events.
        let bare = LiveViews::new(2, 100, 100);
        let m = parse(&metrics_text(&state, &bare, &[0.0, 0.0], 1_003_000, 0));
        assert_eq!(m["events_processed_total"], 7.0);
        assert_eq!(m["events_enriched_total"], 0.0);

        let status = status_json("p", &state, &live, &[0.25, 0.5], 1_003_000);
        assert_eq!(status["workers"], 2);
        assert_eq!(status["sources"][0]["lag_seconds"], 3.0);
        assert_eq!(status["sources"][0]["watermark"], "1970-01-01T00:16:40.000Z");
        assert_eq!(status["connections"]["open"], 2);
        assert_eq!(status["queues"]["worker_batches"], serde_json::json!([0, 0]));
    }

    #[test]
    fn utilization_is_busy_time_over_wall_time() {
        let live = LiveViews::new(2, 1, 1);
        let mut u = Utilization::new(2);
        live.observe_step(0, Duration::from_millis(500));
        assert_eq!(u.sample(&live, Duration::from_secs(2)), vec![0.25, 0.0]);
        live.observe_step(1, Duration::from_millis(100));
        // Less than a second later: the previous values stand.
        assert_eq!(u.sample(&live, Duration::from_millis(2500)), vec![0.25, 0.0]);
        assert_eq!(u.sample(&live, Duration::from_secs(4)), vec![0.0, 0.05]);
    }
}
