//! Live views: the current contents of every output of a serving process, kept up to date from
//! the updates worker 0's sinks receive, for `GET /collections/NAME` and subscriptions.
//!
//! ```text
//!  worker 0: sink(NAME) ── apply(updates, frontier) ──► View: first column → row → count
//!                                                          ├── lookups (HTTP task, read lock)
//!                                                          └── Feed to each subscriber (bounded):
//!                                                              changes, then progress
//! ```
//!
//! Every update of every output is routed to worker 0 (see [`crate::render::sink`]), so one view
//! per output, there, holds the whole collection whatever the number of workers. A view
//! consolidates updates into a count per row: a changelog nets to the output's current rows, an
//! insert-only output holds every row it emitted, and a snapshot output (`counters`) holds one
//! row per distinct record with its count as a trailing `value` column. No timely types here: the
//! sink calls [`View::apply`] with plain vectors, so consolidation is unit-tested alone.
//!
//! Invariants:
//! - Apply, snapshot and subscribe take the same lock, so a subscriber's snapshot plus the changes
//!   it is sent afterwards accumulate to the view's contents, with nothing missed or repeated.
//! - A subscriber is sent [`Feed::Progress`]`(T)` when the frontier advances to `T`, at most once
//!   per applied batch and after the batch's changes: every change with a time below `T` precedes
//!   it, and the `T`s a subscriber sees increase.
//! - Memory is bounded: a view with more than `max_rows` distinct rows drops its contents (it is
//!   then `truncated` and answers lookups with an error); a subscriber with more than
//!   `subscriber_queue` messages unread (a change, or a progress, counts one) is sent
//!   [`Feed::Overflow`] and dropped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::value::{parse_time, Sym, Value};

/// The columns of one row of an output (without `time` and `diff`).
pub type Row = Vec<Value>;
/// One change of a view: a row, its update's event-time tick (ms) and the change in its count.
pub type Change = (Row, u64, i64);
/// Rows with their (positive) counts.
pub type Counted = Vec<(Row, i64)>;

/// What a view sends a subscriber.
#[derive(Debug)]
pub enum Feed {
    Changes(Arc<[Change]>),
    /// The view's frontier advanced to this time (epoch ms): every change with a smaller time
    /// has been sent before.
    Progress(u64),
    /// The output is complete (the server is shutting down); nothing follows.
    Done,
    /// The subscriber fell more than `limit` changes behind and was dropped.
    Overflow {
        limit: usize,
    },
}

/// How an output's rows look, from its `OutputPlan`.
#[derive(Clone, Debug)]
pub struct ViewSpec {
    pub name: String,
    /// Column names; with `flatten`, the last one stands for an object whose fields are columns.
    pub columns: Vec<String>,
    pub changelog: bool,
    /// Rows are counted, and shown with their count as a trailing `value` column.
    pub snapshot: bool,
    pub flatten: bool,
    /// Count rows by the text of this column (dead letters by reason).
    pub tally: Option<usize>,
}

impl ViewSpec {
    /// The columns of the rows the view shows (with `flatten`, the payload's fields follow).
    pub fn visible_columns(&self) -> Vec<String> {
        let mut columns = self.columns.clone();
        if self.flatten {
            columns.pop();
        }
        if self.snapshot {
            columns.push("value".into());
        }
        columns
    }
}

/// The live views of one process, and how busy its workers are.
pub struct LiveViews {
    views: RwLock<Vec<Arc<View>>>,
    max_rows: usize,
    subscriber_queue: usize,
    /// Per worker step after a batch arrives: time to admit the batch and step the dataflow.
    pub processing: Histogram,
    /// Per worker: nanoseconds spent admitting batches and stepping.
    pub busy_ns: Vec<AtomicU64>,
    /// Set once worker 0 has rendered the dataflow, so every output has its view.
    complete: (Mutex<bool>, Condvar),
}

impl LiveViews {
    pub fn new(workers: usize, max_rows: usize, subscriber_queue: usize) -> LiveViews {
        LiveViews {
            views: RwLock::new(Vec::new()),
            max_rows,
            subscriber_queue,
            processing: Histogram::default(),
            busy_ns: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            complete: (Mutex::new(false), Condvar::new()),
        }
    }

    /// Worker 0 has rendered the dataflow: every output's view is registered.
    pub fn rendered(&self) {
        *self.complete.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.complete.1.notify_all();
    }

    /// Waits (at most `timeout`) until [`LiveViews::rendered`]; whether it was.
    pub fn wait_rendered(&self, timeout: Duration) -> bool {
        let done = self.complete.0.lock().unwrap_or_else(|e| e.into_inner());
        let (done, _) = self
            .complete
            .1
            .wait_timeout_while(done, timeout, |done| !*done)
            .unwrap_or_else(|e| e.into_inner());
        *done
    }

    /// The view of an output, created on first use (worker 0's sink, while rendering).
    pub fn register(&self, spec: ViewSpec) -> Arc<View> {
        let mut views = write(&self.views);
        if let Some(v) = views.iter().find(|v| v.spec.name == spec.name) {
            return Arc::clone(v);
        }
        let view = Arc::new(View {
            spec,
            max_rows: self.max_rows,
            queue_limit: self.subscriber_queue,
            state: RwLock::new(ViewState {
                frontier: Some(0),
                ..ViewState::default()
            }),
        });
        views.push(Arc::clone(&view));
        view
    }

    pub fn get(&self, name: &str) -> Option<Arc<View>> {
        read(&self.views).iter().find(|v| v.spec.name == name).cloned()
    }

    /// Every view, in the order the outputs were rendered.
    pub fn all(&self) -> Vec<Arc<View>> {
        read(&self.views).clone()
    }

    /// Records one step of worker `index` that took `d`.
    pub fn observe_step(&self, index: usize, d: Duration) {
        self.processing.observe(d);
        if let Some(busy) = self.busy_ns.get(index) {
            busy.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
        }
    }
}

/// Upper bounds (seconds) of [`Histogram`]'s buckets.
pub const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A histogram of durations with the fixed [`BUCKETS`], updated with relaxed atomics.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket (as Prometheus wants them), the total count, and the sum in
    /// seconds.
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let mut running = 0;
        let buckets = BUCKETS
            .iter()
            .zip(&self.counts)
            .map(|(b, c)| {
                running += c.load(Ordering::Relaxed);
                (*b, running)
            })
            .collect();
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        (buckets, self.count.load(Ordering::Relaxed), sum)
    }
}

/// The live contents of one output.
pub struct View {
    pub spec: ViewSpec,
    max_rows: usize,
    queue_limit: usize,
    state: RwLock<ViewState>,
}

#[derive(Default)]
struct ViewState {
    /// First column → row → count (rows whose count is zero are removed).
    rows: BTreeMap<Value, BTreeMap<Row, i64>>,
    distinct: usize,
    /// Updates received.
    updates: u64,
    /// The sink's input frontier: no later update has a smaller time; `None` once complete.
    frontier: Option<u64>,
    /// The largest time applied so far: the time of a subscriber's snapshot.
    as_of: u64,
    tally: BTreeMap<String, i64>,
    truncated: bool,
    subscribers: Vec<Subscriber>,
}

struct Subscriber {
    tx: UnboundedSender<Feed>,
    queued: Arc<AtomicUsize>,
}

/// A view's state as `GET /collections` reports it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ViewStats {
    pub name: String,
    pub columns: Vec<String>,
    /// Current rows (the sum of positive counts).
    pub rows: i64,
    pub updates: u64,
    pub frontier: Option<u64>,
    pub changelog: bool,
    pub truncated: bool,
    pub subscribers: usize,
}

/// A query: `(column, text)` pairs that a row's columns must equal.
pub type Filter = Vec<(String, String)>;

/// Why a view cannot answer.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ViewError {
    #[error("collection `{name}` has no column `{column}`; its columns are {columns}")]
    UnknownColumn {
        name: String,
        column: String,
        columns: String,
    },
    #[error("collection `{0}` exceeded the live row limit; its contents are not kept")]
    Truncated(String),
}

/// A subscriber's start: the snapshot's rows (with their counts as diffs), its time, and the
/// changes that follow.
pub struct Subscription {
    pub snapshot: Vec<Change>,
    /// The view's frontier when the snapshot was taken (`None`: the output is complete).
    pub frontier: Option<u64>,
    pub feed: UnboundedReceiver<Feed>,
    queued: Arc<AtomicUsize>,
}

impl Subscription {
    /// Marks `n` messages (changes, or a progress) as read: they no longer count against the
    /// queue limit.
    pub fn consumed(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::Relaxed);
    }
}

impl View {
    /// Applies a batch of updates the sink received, and the sink's frontier after them
    /// (`None` once the output is complete). See the module documentation.
    pub fn apply(&self, updates: Vec<(Row, u64, isize)>, frontier: Option<u64>) {
        let mut st = write(&self.state);
        let advanced = match (st.frontier, frontier) {
            (Some(old), Some(new)) if new > old => Some(new),
            _ => None,
        };
        st.frontier = frontier;
        st.updates += updates.len() as u64;
        let changes = self.consolidate(&mut st, updates);
        if !changes.is_empty() && !st.subscribers.is_empty() {
            let batch: Arc<[Change]> = changes.into();
            self.offer(&mut st, batch.len(), || Feed::Changes(Arc::clone(&batch)));
        }
        if let Some(t) = advanced.filter(|_| !st.subscribers.is_empty()) {
            self.offer(&mut st, 1, || Feed::Progress(t));
        }
        if frontier.is_none() {
            for s in st.subscribers.drain(..) {
                let _ = s.tx.send(Feed::Done);
            }
        }
    }

    /// Sends every subscriber `feed()`, which counts `weight` against its queue; drops those
    /// whose queue would overflow, or that hung up.
    fn offer(&self, st: &mut ViewState, weight: usize, feed: impl Fn() -> Feed) {
        let limit = self.queue_limit;
        st.subscribers.retain(|s| {
            if s.queued.load(Ordering::Relaxed) + weight > limit {
                let _ = s.tx.send(Feed::Overflow { limit });
                return false;
            }
            s.queued.fetch_add(weight, Ordering::Relaxed);
            s.tx.send(feed()).is_ok()
        });
    }

    /// Folds updates into the counts; returns the changes of the visible rows, consolidated.
    fn consolidate(&self, st: &mut ViewState, mut updates: Vec<(Row, u64, isize)>) -> Vec<Change> {
        updates.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let mut merged: Vec<Change> = Vec::with_capacity(updates.len());
        for (row, t, d) in updates {
            match merged.last_mut() {
                Some(last) if last.0 == row && last.1 == t => last.2 += d as i64,
                _ => merged.push((row, t, d as i64)),
            }
        }
        merged.retain(|c| c.2 != 0);
        for (row, t, d) in &merged {
            st.as_of = st.as_of.max(*t);
            if let Some(c) = self.spec.tally {
                let key = row.get(c).map(Value::to_string).unwrap_or_default();
                *st.tally.entry(key).or_default() += d;
            }
        }
        let changes = if self.spec.snapshot {
            // Net change per row over all times, shown as `value` going from old to new.
            let mut net: Vec<(Row, u64, i64)> = Vec::new();
            for (row, t, d) in merged {
                match net.last_mut() {
                    Some(last) if last.0 == row => {
                        last.1 = last.1.max(t);
                        last.2 += d;
                    }
                    _ => net.push((row, t, d)),
                }
            }
            let mut changes = Vec::new();
            for (row, t, d) in net.into_iter().filter(|c| c.2 != 0) {
                let old = st.count(&row);
                let with = |n: i64| {
                    let mut r = row.clone();
                    r.push(Value::Int(n));
                    r
                };
                if old != 0 {
                    changes.push((with(old), t, -1));
                }
                if old + d != 0 {
                    changes.push((with(old + d), t, 1));
                }
                st.add(row, d);
            }
            changes
        } else {
            for (row, _, d) in &merged {
                if !st.truncated {
                    st.add(row.clone(), *d);
                }
            }
            merged
        };
        if st.distinct > self.max_rows && !st.truncated {
            tracing::warn!(output = %self.spec.name, rows = st.distinct, "live view exceeded its row limit; contents dropped");
            st.rows.clear();
            st.distinct = 0;
            st.truncated = true;
        }
        changes
    }

    /// The rows matching `filter` with their counts (positive only), and the view's frontier.
    pub fn lookup(&self, filter: &Filter) -> Result<(Counted, Option<u64>), ViewError> {
        let st = read(&self.state);
        if st.truncated {
            return Err(ViewError::Truncated(self.spec.name.clone()));
        }
        let matcher = self.matcher(filter)?;
        Ok((st.select(&self.spec, &matcher), st.frontier))
    }

    /// Starts a subscription: the snapshot of the rows matching `filter`, then every change.
    pub fn subscribe(&self, filter: &Filter) -> Result<Subscription, ViewError> {
        let matcher = self.matcher(filter)?;
        let mut st = write(&self.state);
        if st.truncated {
            return Err(ViewError::Truncated(self.spec.name.clone()));
        }
        let as_of = st.as_of;
        let snapshot = st
            .select(&self.spec, &matcher)
            .into_iter()
            .map(|(row, n)| (row, as_of, n))
            .collect();
        let (tx, feed) = unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        if st.frontier.is_none() {
            let _ = tx.send(Feed::Done);
        } else {
            st.subscribers.push(Subscriber {
                tx,
                queued: Arc::clone(&queued),
            });
        }
        Ok(Subscription {
            snapshot,
            frontier: st.frontier,
            feed,
            queued,
        })
    }

    pub fn stats(&self) -> ViewStats {
        let st = read(&self.state);
        let rows = if self.spec.snapshot {
            st.distinct as i64
        } else {
            st.rows.values().flat_map(|m| m.values()).filter(|n| **n > 0).sum()
        };
        ViewStats {
            name: self.spec.name.clone(),
            columns: self.spec.visible_columns(),
            rows,
            updates: st.updates,
            frontier: st.frontier,
            changelog: self.spec.changelog,
            truncated: st.truncated,
            subscribers: st.subscribers.len(),
        }
    }

    /// Net counts by the tally column's text (dead letters by reason).
    pub fn tally(&self) -> BTreeMap<String, i64> {
        read(&self.state).tally.clone()
    }

    /// A visible row as a JSON object: column name → value (a flattened payload's fields last).
    pub fn row_json(&self, row: &[Value]) -> serde_json::Map<String, serde_json::Value> {
        let mut columns = self.spec.visible_columns();
        let mut object = serde_json::Map::new();
        let fixed = if self.spec.flatten {
            row.len().saturating_sub(1)
        } else {
            row.len()
        };
        for (name, value) in columns.drain(..).zip(&row[..fixed]) {
            object.insert(name, value.to_json());
        }
        if let (true, Some(Value::Object(fields))) = (self.spec.flatten, row.last()) {
            for (k, v) in fields.iter() {
                object.entry(k.as_str()).or_insert_with(|| v.to_json());
            }
        }
        object
    }

    /// Resolves a filter's column names.
    pub fn matcher(&self, filter: &Filter) -> Result<Matcher, ViewError> {
        let visible = self.spec.visible_columns();
        let mut terms = Vec::new();
        for (column, text) in filter {
            let at = match visible.iter().position(|c| c == column) {
                Some(i) => Column::At(i),
                None if self.spec.flatten => Column::Field(Sym::new(column)),
                None => {
                    return Err(ViewError::UnknownColumn {
                        name: self.spec.name.clone(),
                        column: column.clone(),
                        columns: visible.join(", "),
                    })
                }
            };
            terms.push((at, candidates(text)));
        }
        Ok(Matcher { terms })
    }
}

impl ViewState {
    fn count(&self, row: &Row) -> i64 {
        let key = row.first().cloned().unwrap_or_default();
        self.rows.get(&key).and_then(|m| m.get(row)).copied().unwrap_or(0)
    }

    fn add(&mut self, row: Row, d: i64) {
        let key = row.first().cloned().unwrap_or_default();
        let group = self.rows.entry(key.clone()).or_default();
        let before = group.len();
        let n = group.entry(row.clone()).or_default();
        *n += d;
        if *n == 0 {
            group.remove(&row);
        }
        self.distinct = self.distinct + group.len() - before;
        if group.is_empty() {
            self.rows.remove(&key);
        }
    }

    /// Visible rows with a positive count that match; through the index when the filter names
    /// the first column.
    fn select(&self, spec: &ViewSpec, matcher: &Matcher) -> Vec<(Row, i64)> {
        let visible = |row: &Row, n: i64| -> (Row, i64) {
            if spec.snapshot {
                let mut r = row.clone();
                r.push(Value::Int(n));
                (r, 1)
            } else {
                (row.clone(), n)
            }
        };
        let keyed = matcher.terms.iter().find(|(c, _)| *c == Column::At(0));
        let groups: Vec<&BTreeMap<Row, i64>> = match keyed {
            Some((_, keys)) => keys.iter().filter_map(|k| self.rows.get(k)).collect(),
            None => self.rows.values().collect(),
        };
        groups
            .into_iter()
            .flat_map(|g| g.iter())
            .filter(|(_, n)| **n > 0)
            .map(|(row, n)| visible(row, *n))
            .filter(|(row, _)| matcher.matches(row))
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Column {
    At(usize),
    Field(Sym),
}

/// A resolved filter: each term's column and the values its text may stand for.
pub struct Matcher {
    terms: Vec<(Column, Vec<Value>)>,
}

impl Matcher {
    /// Whether a visible row matches every term.
    pub fn matches(&self, row: &[Value]) -> bool {
        self.terms.iter().all(|(column, values)| {
            let v = match column {
                Column::At(i) => row.get(*i),
                Column::Field(name) => row.last().and_then(|o| o.field(*name)),
            };
            values.contains(v.unwrap_or(&Value::Null))
        })
    }
}

/// The values a query's text may stand for: the string itself, and the number, boolean, null or
/// timestamp (RFC 3339, or epoch milliseconds) it spells. Each value once: `3` stands for the int
/// 3, which equals the float 3.0.
pub fn candidates(text: &str) -> Vec<Value> {
    let mut values = vec![Value::str(text)];
    if let Ok(i) = text.parse::<i64>() {
        values.push(Value::Int(i));
        values.push(Value::Time(i));
    }
    if let Ok(x) = text.parse::<f64>() {
        let x = Value::float(x);
        if !values.contains(&x) {
            values.push(x);
        }
    }
    match text {
        "true" => values.push(Value::Bool(true)),
        "false" => values.push(Value::Bool(false)),
        "null" => values.push(Value::Null),
        _ => {}
    }
    if let Some(ms) = parse_time(text) {
        values.push(Value::Time(ms));
    }
    values
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn views(max_rows: usize, queue: usize) -> LiveViews {
        LiveViews::new(1, max_rows, queue)
    }

    fn spec(name: &str, columns: &[&str]) -> ViewSpec {
        ViewSpec {
            name: name.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            changelog: true,
            snapshot: false,
            flatten: false,
            tally: None,
        }
    }

    fn row(user: i64, n: i64) -> Row {
        vec![Value::Int(user), Value::Int(n)]
    }

    fn filter(pairs: &[(&str, &str)]) -> Filter {
        pairs.iter().map(|(c, v)| (c.to_string(), v.to_string())).collect()
    }

    /// Accumulates a snapshot and the changes that follow into row → count.
    fn accumulate(sub: &mut Subscription) -> (BTreeMap<Row, i64>, bool) {
        let mut acc: BTreeMap<Row, i64> = BTreeMap::new();
        for (r, _, d) in &sub.snapshot {
            *acc.entry(r.clone()).or_default() += d;
        }
        let mut done = false;
        while let Ok(feed) = sub.feed.try_recv() {
            match feed {
                Feed::Changes(batch) => {
                    for (r, _, d) in batch.iter() {
                        *acc.entry(r.clone()).or_default() += d;
                    }
                    sub.consumed(batch.len());
                }
                Feed::Progress(_) => sub.consumed(1),
                Feed::Done => done = true,
                Feed::Overflow { .. } => panic!("overflow"),
            }
        }
        acc.retain(|_, n| *n != 0);
        (acc, done)
    }

    #[test]
    fn a_changelog_nets_to_its_current_rows() {
        let live = views(100, 100);
        let view = live.register(spec("counts", &["user_id", "n"]));
        view.apply(vec![(row(1, 1), 10, 1), (row(2, 1), 10, 1)], Some(11));
        // User 1 goes from 1 to 2 at time 12; both updates in one batch, in any order.
        view.apply(vec![(row(1, 2), 12, 1), (row(1, 1), 12, -1)], Some(13));
        let (rows, frontier) = view.lookup(&Filter::new()).unwrap();
        assert_eq!(rows, vec![(row(1, 2), 1), (row(2, 1), 1)]);
        assert_eq!(frontier, Some(13));
        assert_eq!(view.stats().rows, 2);
        assert_eq!(view.stats().updates, 4);
        // Updates that cancel within a batch leave nothing behind.
        view.apply(vec![(row(3, 1), 14, 1), (row(3, 1), 14, -1)], Some(15));
        assert_eq!(view.stats().rows, 2);
        assert_eq!(view.lookup(&filter(&[("user_id", "3")])).unwrap().0, vec![]);
    }

    #[test]
    fn lookups_by_the_first_column_or_any_other() {
        let live = views(100, 100);
        let view = live.register(spec("counts", &["user_id", "n"]));
        view.apply((1..=5).map(|u| (row(u, u * 10), 1, 1)).collect(), Some(2));
        assert_eq!(
            view.lookup(&filter(&[("user_id", "3")])).unwrap().0,
            vec![(row(3, 30), 1)]
        );
        assert_eq!(view.lookup(&filter(&[("n", "40")])).unwrap().0, vec![(row(4, 40), 1)]);
        assert_eq!(
            view.lookup(&filter(&[("user_id", "4"), ("n", "41")])).unwrap().0,
            vec![]
        );
        let err = view.lookup(&filter(&[("nope", "1")])).unwrap_err();
        assert!(matches!(err, ViewError::UnknownColumn { .. }), "{err}");
        let json = view.row_json(&row(3, 30));
        assert_eq!(
            serde_json::Value::Object(json),
            serde_json::json!({"user_id": 3, "n": 30})
        );
    }

    #[test]
    fn a_number_matches_equal_ints_and_floats_once() {
        let live = views(100, 100);
        let view = live.register(spec("v", &["k", "n"]));
        let rows = vec![
            (vec![Value::float(3.0), Value::Int(1)], 1, 1),
            (vec![Value::Int(4), Value::float(2.0)], 1, 1),
        ];
        view.apply(rows, Some(2));
        for (q, want) in [
            ("k", "3"),
            ("k", "3.0"),
            ("k", "4"),
            ("k", "4e0"),
            ("n", "2"),
            ("n", "1.0"),
        ] {
            assert_eq!(view.lookup(&filter(&[(q, want)])).unwrap().0.len(), 1, "{q}={want}");
        }
        assert!(view.lookup(&filter(&[("k", "3.5")])).unwrap().0.is_empty());
    }

    #[test]
    fn query_text_matches_strings_numbers_and_timestamps() {
        let t = parse_time("2024-03-04T01:00:00Z").unwrap();
        let r = vec![Value::str("u1"), Value::Time(t), Value::float(0.5), Value::Bool(true)];
        let live = views(100, 100);
        let view = live.register(spec("v", &["user", "window_start", "accuracy", "ok"]));
        view.apply(vec![(r.clone(), 1, 1)], Some(2));
        for q in [
            vec![("user", "u1")],
            vec![("window_start", "2024-03-04T01:00:00Z")],
            vec![("window_start", "2024-03-04T01:00:00.000Z")],
            vec![("window_start", &*t.to_string())],
            vec![("accuracy", "0.5"), ("ok", "true")],
        ] {
            assert_eq!(view.lookup(&filter(&q)).unwrap().0.len(), 1, "{q:?}");
        }
        assert!(view.lookup(&filter(&[("user", "u2")])).unwrap().0.is_empty());
    }

    #[test]
    fn a_snapshot_output_shows_each_record_with_its_count() {
        let live = views(100, 100);
        let view = live.register(ViewSpec {
            snapshot: true,
            changelog: false,
            ..spec("counters", &["metric", "label"])
        });
        let c = |m: &str| vec![Value::str(m), Value::str("events")];
        view.apply(
            vec![(c("events_processed"), 5, 1), (c("events_processed"), 6, 1)],
            Some(7),
        );
        let mut sub = view.subscribe(&Filter::new()).unwrap();
        view.apply(
            vec![(c("events_processed"), 8, 1), (c("events_filtered"), 8, 1)],
            Some(9),
        );
        let with = |m: &str, n: i64| {
            let mut r = c(m);
            r.push(Value::Int(n));
            r
        };
        let (rows, _) = view.lookup(&filter(&[("metric", "events_processed")])).unwrap();
        assert_eq!(rows, vec![(with("events_processed", 3), 1)]);
        assert_eq!(view.stats().rows, 2);
        assert_eq!(view.stats().columns, vec!["metric", "label", "value"]);
        // The subscriber saw value 2 (snapshot), then -2 +3, and +1 for the new counter.
        view.apply(Vec::new(), None);
        let (acc, done) = accumulate(&mut sub);
        assert!(done);
        let expected: BTreeMap<Row, i64> = [(with("events_processed", 3), 1), (with("events_filtered", 1), 1)].into();
        assert_eq!(acc, expected);
    }

    #[test]
    fn a_subscription_accumulates_to_the_current_contents() {
        let live = views(1000, 1000);
        let view = live.register(spec("counts", &["user_id", "n"]));
        // Random-ish changelog: each step moves a user's count from its old value to a new one.
        let mut current: BTreeMap<i64, i64> = BTreeMap::new();
        let mut subs = Vec::new();
        for step in 0..200u64 {
            let user = (step * 7 % 13) as i64;
            let mut batch = Vec::new();
            if let Some(old) = current.get(&user) {
                batch.push((row(user, *old), step, -1));
            }
            let new = (step * 31 % 17) as i64;
            current.insert(user, new);
            batch.push((row(user, new), step, 1));
            view.apply(batch, Some(step + 1));
            if step % 50 == 0 {
                subs.push(view.subscribe(&Filter::new()).unwrap());
            }
        }
        view.apply(Vec::new(), None);
        let expected: BTreeMap<Row, i64> = current.iter().map(|(u, n)| (row(*u, *n), 1)).collect();
        let (rows, frontier) = view.lookup(&Filter::new()).unwrap();
        assert_eq!(rows.into_iter().collect::<BTreeMap<_, _>>(), expected);
        assert_eq!(frontier, None);
        for mut sub in subs {
            assert_eq!(accumulate(&mut sub), (expected.clone(), true));
        }
        // A subscriber that arrives after the end gets the snapshot and `Done`.
        let mut late = view.subscribe(&filter(&[("user_id", "0")])).unwrap();
        let (acc, done) = accumulate(&mut late);
        assert!(done);
        assert_eq!(acc.len(), 1);
    }

    #[test]
    fn a_slow_subscriber_is_dropped_with_an_overflow() {
        let live = views(1000, 3);
        let view = live.register(spec("counts", &["user_id", "n"]));
        let mut sub = view.subscribe(&Filter::new()).unwrap();
        view.apply(vec![(row(1, 1), 1, 1), (row(2, 1), 1, 1)], Some(2));
        view.apply(vec![(row(3, 1), 2, 1), (row(4, 1), 2, 1)], Some(3));
        assert!(matches!(sub.feed.try_recv(), Ok(Feed::Changes(b)) if b.len() == 2));
        assert!(matches!(sub.feed.try_recv(), Ok(Feed::Progress(2))));
        assert!(matches!(sub.feed.try_recv(), Ok(Feed::Overflow { limit: 3 })));
        assert!(sub.feed.try_recv().is_err());
        assert_eq!(view.stats().subscribers, 0);
    }

    #[test]
    fn progress_follows_the_changes_below_it_once_per_advance() {
        let live = views(1000, 1000);
        let view = live.register(spec("counts", &["user_id", "n"]));
        view.apply(vec![(row(1, 1), 3, 1)], Some(4));
        let mut sub = view.subscribe(&Filter::new()).unwrap();
        assert_eq!(sub.frontier, Some(4));
        view.apply(vec![(row(2, 1), 5, 1), (row(3, 1), 9, 1)], Some(6));
        // The frontier does not move: no progress; it moves without changes: progress alone.
        view.apply(vec![(row(4, 1), 7, 1)], Some(6));
        view.apply(Vec::new(), Some(10));
        view.apply(Vec::new(), None);
        let mut seen = Vec::new();
        while let Ok(feed) = sub.feed.try_recv() {
            seen.push(match feed {
                Feed::Changes(b) => format!("changes {:?}", b.iter().map(|c| c.1).collect::<Vec<_>>()),
                Feed::Progress(t) => format!("progress {t}"),
                Feed::Done => "done".into(),
                Feed::Overflow { .. } => "overflow".into(),
            });
        }
        assert_eq!(
            seen,
            ["changes [5, 9]", "progress 6", "changes [7]", "progress 10", "done"]
        );
    }

    #[test]
    fn a_view_over_its_row_limit_drops_its_contents() {
        let live = views(3, 10);
        let view = live.register(ViewSpec {
            tally: Some(0),
            ..spec("dead_letters", &["reason", "n"])
        });
        let r = |reason: &str, n: i64| vec![Value::str(reason), Value::Int(n)];
        view.apply((0..5).map(|n| (r("late", n), 1, 1)).collect(), Some(2));
        assert_eq!(
            view.lookup(&Filter::new()),
            Err(ViewError::Truncated("dead_letters".into()))
        );
        assert!(view.subscribe(&Filter::new()).is_err());
        view.apply(vec![(r("bad_time", 0), 2, 1)], Some(3));
        assert_eq!(
            view.tally(),
            [("bad_time".to_string(), 1), ("late".to_string(), 5)].into()
        );
        assert!(view.stats().truncated);
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        for us in [50, 300, 300, 2_000, 20_000_000] {
            h.observe(Duration::from_micros(us));
        }
        let (buckets, count, sum) = h.snapshot();
        assert_eq!(count, 5);
        assert!((sum - 20.00265).abs() < 1e-9, "{sum}");
        let at = |le: f64| buckets.iter().find(|(b, _)| *b == le).unwrap().1;
        assert_eq!((at(0.0001), at(0.0005), at(0.0025), at(5.0)), (1, 3, 4, 4));
    }
}
