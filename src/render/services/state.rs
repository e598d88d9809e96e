//! The service-model operator's state, without timely: interactions in, rows out. The operator
//! (`super`) feeds it each tick's interactions in a canonical order and fires its timers; the
//! same inputs give the same rows, whatever the batching or the number of workers.
//!
//! Per tick `t` (see the README's "Service models" for the user-facing account):
//! 1. **Model update.** Hops (and sequence ends) of earlier ticks join the count table, and
//!    hops older than `window` leave it: the model at tick `t` is the counts of the hops in
//!    `[t − window, t)`. Every `reselect_every`, the order and discount are chosen again by
//!    held-out log-loss (the newest `held_out` share of the window's sequences against the
//!    rest).
//! 2. **Interactions, in event-time order.** A hop (`data_transmitted`) is scored with the
//!    tick's model (`NAME_hops`), uses or misses the pair's pipe, moves its sequence (its
//!    predictions, and its share of the pipe probabilities of the service it reaches) and
//!    enters the pair's resonance window. `processed` and `error` rows give the pair's
//!    latencies and errors, and the performance of its pipe.
//! 3. **Timers**, at their own times: a pipe idle for `idle_timeout` is torn down; a sequence
//!    silent for `sequence_timeout` ends (an end hop `→ $` is counted).
//! 4. Rows of the pairs and contexts that changed are revised (changelogs), transitions every
//!    `transitions_every`.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::model::markov::mixture::{mix_distributions, same_symbols, FixedShare};
use crate::model::markov::{Discount, HopCounts, KneserNey, Ngrams, Token};
use crate::model::pipes::{configure, within_horizon, GapSurvival, Outcomes};
use crate::model::resonance::{adjust, base_score, performance, Components, Feedback};
use crate::plan::services::{PipeRule, ServicesPlan};
use crate::value::{shared_str, Value};

/// A service's id: its index in the names table; 0 is the end of a sequence (`$`).
type Id = u32;
const END: Id = 0;

/// What an interaction row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    PipeCreated,
    Transmitted,
    Processed,
    Error,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "pipe_created" => Kind::PipeCreated,
            "data_transmitted" => Kind::Transmitted,
            "processed" => Kind::Processed,
            "error" => Kind::Error,
            _ => return None,
        })
    }
}

/// One valid interaction row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Interaction {
    pub time: i64,
    pub sequence: Arc<str>,
    pub source: Arc<str>,
    pub target: Arc<str>,
    pub kind: Kind,
    pub bytes: u64,
    /// Milliseconds, as bits of a non-negative `f64` (so that the row is `Ord`).
    pub latency_bits: u64,
}

impl Interaction {
    pub fn latency_ms(&self) -> f64 {
        f64::from_bits(self.latency_bits)
    }
}

/// A row of one of the stage's outputs, with its diff.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Out {
    Hop(Vec<Value>),
    Selection(Vec<Value>),
    Transition(Vec<Value>),
    Prediction(Vec<Value>),
    Resonance(Vec<Value>),
    Pipe(Vec<Value>),
    PipeEvent(Vec<Value>),
}

impl Out {
    /// The row, and the index of its collection in `plan::services::OUTPUTS` (whose order the
    /// variants keep).
    pub fn into_part(self) -> (usize, Vec<Value>) {
        match self {
            Out::Hop(row) => (0, row),
            Out::Selection(row) => (1, row),
            Out::Transition(row) => (2, row),
            Out::Prediction(row) => (3, row),
            Out::Resonance(row) => (4, row),
            Out::Pipe(row) => (5, row),
            Out::PipeEvent(row) => (6, row),
        }
    }
}

/// `P(next | history)` by symbol, shared between a call's scoring and a sequence's predictions.
type Distribution = Rc<Vec<(Id, f64)>>;

/// Rows out, each with its time and diff.
pub type Emitted = Vec<(u64, Out, isize)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Sequence(u64),
    Pipe(Id, Id),
    Candidate(Id, Id),
}

/// An active sequence.
struct Sequence {
    name: Arc<str>,
    /// `name` as a row value.
    label: Value,
    /// Its tokens so far, the last `order` of them (`Start` padded).
    history: Vec<Token<Id>>,
    last_ms: i64,
    /// Its next-service probabilities `p` from its current service (those of at least
    /// `MIN_SHARE`), and its probability of ending there.
    shares: Vec<(Id, f64)>,
    end: f64,
    /// Its prediction rows as emitted.
    predictions: Vec<Vec<Value>>,
}

impl Sequence {
    fn current(&self) -> Option<Id> {
        self.history.last().and_then(|t| t.symbol().copied())
    }
}

/// A pair's sliding window of interactions.
#[derive(Default)]
struct Window {
    /// `(time, kind, bytes, latency)` in time order.
    items: VecDeque<(i64, Kind, u64, f64)>,
    calls: u64,
    bytes: u64,
    errors: u64,
    /// Latency bits → count, of completed and failed calls.
    latencies: BTreeMap<u64, u64>,
    /// The components of the current items, once computed (cleared when they change).
    cached: Cell<Option<Components>>,
}

impl Window {
    fn push(&mut self, time: i64, kind: Kind, bytes: u64, latency: f64) {
        self.cached.set(None);
        self.apply(kind, bytes, latency, 1);
        self.items.push_back((time, kind, bytes, latency));
    }

    fn apply(&mut self, kind: Kind, bytes: u64, latency: f64, sign: i64) {
        let step = |x: &mut u64, by: u64| {
            *x = if sign > 0 { *x + by } else { *x - by };
        };
        match kind {
            Kind::Transmitted => {
                step(&mut self.calls, 1);
                step(&mut self.bytes, bytes);
            }
            Kind::Processed | Kind::Error => {
                if kind == Kind::Error {
                    step(&mut self.errors, 1);
                }
                let entry = self.latencies.entry(latency.to_bits()).or_default();
                step(entry, 1);
                if *entry == 0 {
                    self.latencies.remove(&latency.to_bits());
                }
            }
            Kind::PipeCreated => {}
        }
    }

    /// Drops items before `from`; whether any went.
    fn evict(&mut self, from: i64) -> bool {
        let mut any = false;
        while let Some(&(time, kind, bytes, latency)) = self.items.front() {
            if time >= from {
                break;
            }
            self.items.pop_front();
            self.apply(kind, bytes, latency, -1);
            self.cached.set(None);
            any = true;
        }
        any
    }

    fn components(&self, window_ms: f64) -> Components {
        if let Some(c) = self.cached.get() {
            return c;
        }
        let latencies: Vec<(f64, u64)> = self.latencies.iter().map(|(b, n)| (f64::from_bits(*b), *n)).collect();
        let c = Components::from_window(window_ms, self.calls, self.bytes, &latencies, self.errors);
        self.cached.set(Some(c));
        c
    }
}

/// What a pipe has carried since its last feedback.
#[derive(Default)]
struct Carried {
    since_ms: i64,
    calls: u64,
    bytes: u64,
    errors: u64,
    latencies: Vec<(f64, u64)>,
}

struct Pipe {
    reason: &'static str,
    created_ms: i64,
    last_used_ms: i64,
    uses: u64,
    probability: Option<f64>,
    carried: Carried,
    row: Option<Vec<Value>>,
}

/// A pair's state: resonance window and feedback, pipe probability terms, pipe.
#[derive(Default)]
struct Pair {
    window: Window,
    feedback: Feedback,
    pipe: Option<Pipe>,
    /// Whether the pair has been called: only such pairs get predicted pipes.
    called: bool,
    /// With `target_precision`: the pair's pending candidate, `(since, highest probability)`,
    /// while it has no pipe (see `model::pipes::calibrated_threshold`).
    candidate: Option<(i64, f64)>,
    resonance_row: Option<Vec<Value>>,
    /// Whether the window or the feedback changed since `resonance_row` was made.
    resonance_stale: bool,
    /// The filters and transforms of the rules that match the pair, once looked up.
    rules: Option<(Value, Value)>,
}

/// One window's model: the counts of the hops in `[t − window, t)`, and the order and discount
/// chosen for them.
struct Windowed {
    window_ms: u64,
    counts: Ngrams<Id>,
    /// The leading hops of the state's `window` that are older than this window (counted out).
    skip: usize,
    order: usize,
    discount: Discount,
    /// When the order and discount are next chosen again.
    next_selection: i64,
}

/// The stage's whole state (one instance, on one worker).
pub struct ServiceState {
    plan: ServicesPlan,
    names: Vec<String>,
    /// Each name as a row value (shared, not copied, by every row that names it).
    labels: Vec<Value>,
    ids: FxHashMap<String, Id>,
    /// Each context's name (`^ a`) as a row value, once made.
    context_labels: FxHashMap<Vec<Token<Id>>, Value>,
    /// The next-service distributions computed under each window's current model, by history;
    /// cleared when a model changes (`epoch`).
    distributions: Vec<FxHashMap<Vec<Token<Id>>, Distribution>>,
    /// Changes whenever the counts, the order, the discount or the vocabulary may have.
    epoch: u64,
    /// The epoch and vocabulary size `distributions` were computed under.
    distributions_of: (u64, usize),
    /// `(time, pair)` of each item of the pairs' resonance windows, in time order.
    expiries: VecDeque<(i64, (Id, Id))>,
    /// The window's model, then the long windows' (shortest first).
    models: Vec<Windowed>,
    /// The mixture's weights of the models, by the service a context ends at (the caller).
    mixes: FxHashMap<Id, FixedShare>,
    /// `(time, context, next)` of each hop the longest window counts, in time order.
    window: VecDeque<(i64, Vec<Token<Id>>, Id)>,
    /// Hops (and ends) not yet counted: they join when the next tick starts.
    pending: Vec<(i64, Vec<Token<Id>>, Id)>,
    next_transitions: i64,
    transitions: BTreeMap<(Vec<Token<Id>>, Id), Vec<Value>>,
    sequences: FxHashMap<u64, Sequence>,
    sequence_keys: FxHashMap<Arc<str>, u64>,
    next_sequence: u64,
    /// Never iterated: looked up by key only.
    pairs: FxHashMap<(Id, Id), Pair>,
    timers: BTreeSet<(i64, Timer)>,
    /// The gaps between a sequence's calls.
    gaps: GapSurvival,
    /// The active sequences by current service.
    at_service: FxHashMap<Id, BTreeSet<u64>>,
    /// The latest candidates' `(probability, used)` and the creation threshold they set.
    outcomes: Outcomes,
    /// Outcomes resolved since the threshold was last recalibrated.
    since_calibration: usize,
    /// Pairs whose resonance or pipe row may have changed (revised in key order).
    dirty: FxHashSet<(Id, Id)>,
}

fn token_name(names: &[String], t: &Token<Id>) -> String {
    match t {
        Token::Start => "^".into(),
        Token::Sym(s) => names[*s as usize].clone(),
    }
}

fn context_name(names: &[String], context: &[Token<Id>]) -> String {
    context
        .iter()
        .map(|t| token_name(names, t))
        .collect::<Vec<_>>()
        .join(" ")
}

fn opt(x: Option<f64>) -> Value {
    x.map_or(Value::Null, Value::float)
}

/// `history` with `s` shifted in, keeping its length.
fn shifted(history: &[Token<Id>], s: Id) -> Vec<Token<Id>> {
    let mut h = history[1..].to_vec();
    h.push(Token::Sym(s));
    h
}

/// The resolved candidates the adaptive threshold waits for before it moves.
const CALIBRATION_MIN: usize = 10;
/// Shares below this are not kept (a sequence's calls to unlikely targets).
const MIN_SHARE: f64 = 1e-4;

impl ServiceState {
    pub fn new(plan: ServicesPlan) -> ServiceState {
        let windows = std::iter::once(plan.window_ms).chain(plan.long_windows_ms.iter().copied());
        let models: Vec<Windowed> = windows
            .map(|window_ms| Windowed {
                window_ms,
                counts: Ngrams::new(plan.max_order),
                skip: 0,
                order: plan.order.unwrap_or(plan.max_order),
                discount: plan.discount.unwrap_or(Discount::Estimated),
                next_selection: i64::MIN,
            })
            .collect();
        ServiceState {
            distributions: models.iter().map(|_| FxHashMap::default()).collect(),
            models,
            mixes: FxHashMap::default(),
            names: vec!["$".into()],
            labels: vec![Value::str("$")],
            ids: FxHashMap::from_iter([("$".to_string(), END)]),
            context_labels: FxHashMap::default(),
            epoch: 0,
            distributions_of: (0, 0),
            expiries: VecDeque::new(),
            window: VecDeque::new(),
            pending: Vec::new(),
            next_transitions: i64::MIN,
            transitions: BTreeMap::new(),
            sequences: FxHashMap::default(),
            sequence_keys: FxHashMap::default(),
            next_sequence: 0,
            pairs: FxHashMap::default(),
            timers: BTreeSet::new(),
            gaps: GapSurvival::new(plan.horizon_ms as f64),
            at_service: FxHashMap::default(),
            outcomes: Outcomes::new(plan.threshold),
            since_calibration: 0,
            dirty: FxHashSet::default(),
            plan,
        }
    }

    fn id(&mut self, name: &str) -> Id {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = self.names.len() as Id;
        self.names.push(name.to_string());
        self.labels.push(Value::str(name));
        self.ids.insert(name.to_string(), id);
        id
    }

    /// The earliest pending timer.
    pub fn next_timer(&self) -> Option<u64> {
        self.timers.first().map(|(t, _)| (*t).max(0) as u64)
    }

    /// Fires the timers due before `limit` (all when `None`), each at its own time.
    pub fn fire_before(&mut self, limit: Option<i64>, out: &mut Emitted) {
        while let Some(&(at, _)) = self.timers.first() {
            if limit.is_some_and(|l| at >= l) {
                break;
            }
            self.fire_one(out);
            self.flush_pairs(at, out);
        }
    }

    fn fire_one(&mut self, out: &mut Emitted) {
        let Some((at, timer)) = self.timers.pop_first() else {
            return;
        };
        match timer {
            Timer::Sequence(key) => {
                if self
                    .sequences
                    .get(&key)
                    .is_some_and(|s| s.last_ms + self.plan.sequence_timeout_ms as i64 == at)
                {
                    self.expire(key, at, out);
                }
            }
            Timer::Candidate(a, b) => {
                let due = self
                    .pairs
                    .get(&(a, b))
                    .and_then(|p| p.candidate)
                    .map(|(since, _)| since + self.plan.idle_timeout_ms as i64);
                if due == Some(at) {
                    self.resolve(a, b, false);
                }
            }
            Timer::Pipe(a, b) => {
                let due = self
                    .pairs
                    .get(&(a, b))
                    .and_then(|p| p.pipe.as_ref())
                    .map(|p| p.last_used_ms + self.plan.idle_timeout_ms as i64);
                if due == Some(at) {
                    self.idle_out(a, b, at, out);
                }
            }
        }
    }

    /// Applies one tick's interactions (any order: they are sorted here). Timers before the
    /// tick must have fired.
    pub fn tick(&mut self, tick: u64, mut items: Vec<Interaction>, out: &mut Emitted) {
        items.sort();
        let t = tick as i64;
        self.fire_before(Some(t), out);
        self.start_tick(t, out);
        for item in &items {
            self.id(&item.source);
            self.id(&item.target);
        }
        let counts: Vec<Ngrams<Id>> = self
            .models
            .iter_mut()
            .map(|m| std::mem::replace(&mut m.counts, Ngrams::new(0)))
            .collect();
        {
            let vocabulary: Vec<Id> = (0..self.names.len() as Id).collect();
            let models: Vec<KneserNey<'_, Id>> = counts
                .iter()
                .zip(&self.models)
                .map(|(c, m)| {
                    KneserNey::new(c, m.order, m.discount, vocabulary.iter().copied())
                        .expect("orders and discounts are checked when planned")
                })
                .collect();
            for item in items {
                while self.timers.first().is_some_and(|(at, _)| *at <= item.time) {
                    self.fire_one(out);
                }
                self.apply(item, &models, tick, out);
            }
        }
        for (m, c) in self.models.iter_mut().zip(counts) {
            m.counts = c;
        }
        self.flush_pairs(t, out);
    }

    /// Counts the hops before `t`, drops those before the window, re-selects the model and
    /// publishes transitions when due, and moves the resonance windows.
    fn start_tick(&mut self, t: i64, out: &mut Emitted) {
        let tick = t.max(0) as u64;
        for (time, context, next) in std::mem::take(&mut self.pending) {
            for m in &mut self.models {
                m.counts.add(&context, &next, 1).expect("adding never fails");
            }
            self.window.push_back((time, context, next));
            self.epoch += 1;
        }
        // Each window counts out the hops before its start; the deque keeps the longest's.
        for m in &mut self.models {
            let from = t.saturating_sub(m.window_ms as i64);
            while let Some((time, context, next)) = self.window.get(m.skip) {
                if *time >= from {
                    break;
                }
                m.counts.add(context, next, -1).expect("a counted hop leaves once");
                m.skip += 1;
                self.epoch += 1;
            }
        }
        let gone = self.models.iter().map(|m| m.skip).min().expect("at least one window");
        self.window.drain(..gone);
        for m in &mut self.models {
            m.skip -= gone;
        }
        if let Some(every) = self.plan.reselect_every_ms {
            // A window `r` times as long as the first is re-chosen `r` times less often: its
            // counts change that much more slowly.
            for i in 0..self.models.len() {
                let m = &mut self.models[i];
                if t >= m.next_selection {
                    let ratio = m.window_ms / self.plan.window_ms;
                    m.next_selection = t.saturating_add(every.saturating_mul(ratio) as i64);
                    self.reselect(i, t, out);
                }
            }
        }
        if t >= self.next_transitions {
            self.next_transitions = t.saturating_add(self.plan.transitions_every_ms as i64);
            self.publish_transitions(tick, out);
        }
        // Only the pairs with items before the window's start have any to drop.
        let from = t.saturating_sub(self.plan.resonance_window_ms as i64);
        while self.expiries.front().is_some_and(|(time, _)| *time < from) {
            let (_, key) = self.expiries.pop_front().expect("checked");
            if let Some(pair) = self.pairs.get_mut(&key) {
                if pair.window.evict(from) {
                    pair.resonance_stale = true;
                    self.dirty.insert(key);
                }
            }
        }
    }

    /// Puts an item into the resonance window of `a → b`.
    fn push_window(&mut self, a: Id, b: Id, time: i64, kind: Kind, bytes: u64, latency: f64) {
        let pair = self.pairs.entry((a, b)).or_default();
        pair.window.push(time, kind, bytes, latency);
        pair.resonance_stale = true;
        self.expiries.push_back((time, (a, b)));
        self.dirty.insert((a, b));
    }

    /// `P(· | history)` under window `i`'s `model`, by symbol (computed once per history and
    /// model).
    fn distribution(&mut self, i: usize, model: &KneserNey<'_, Id>, history: &[Token<Id>]) -> Distribution {
        let of = (self.epoch, model.vocabulary().len());
        if self.distributions_of != of {
            self.distributions.iter_mut().for_each(FxHashMap::clear);
            self.distributions_of = of;
        }
        if let Some(d) = self.distributions[i].get(history) {
            return Rc::clone(d);
        }
        let d = Rc::new(model.distribution(history));
        self.distributions[i].insert(history.to_vec(), Rc::clone(&d));
        d
    }

    /// Every window's `P(· | history)`, and the mixture's weights for it (those of the
    /// service the history ends at).
    fn distributions(&mut self, models: &[KneserNey<'_, Id>], history: &[Token<Id>]) -> (Vec<Distribution>, Vec<f64>) {
        let dists = models
            .iter()
            .enumerate()
            .map(|(i, m)| self.distribution(i, m, history))
            .collect();
        // A caller's weights exist once it has called under a mixture; before, they are even.
        let even = || vec![1.0 / models.len() as f64; models.len()];
        let weights = match history.last() {
            Some(Token::Sym(s)) => self.mixes.get(s).map_or_else(even, |m| m.weights().to_vec()),
            Some(Token::Start) | None => even(),
        };
        (dists, weights)
    }

    /// The name of `context` as a row value.
    fn context_label(&mut self, context: &[Token<Id>]) -> Value {
        if let Some(v) = self.context_labels.get(context) {
            return v.clone();
        }
        let v = Value::str(&context_name(&self.names, context));
        self.context_labels.insert(context.to_vec(), v.clone());
        v
    }

    /// Chooses the order and discount by the log-loss of the newest `held_out` share of the
    /// window's hops under the counts of the rest (every order up to the counts' and every
    /// discount of the grid; ties go to the lower order, then the earlier discount).
    fn reselect(&mut self, i: usize, t: i64, out: &mut Emitted) {
        let skip = self.models[i].skip;
        let n = self.window.len() - skip;
        let held = ((n as f64) * self.plan.held_out).round() as usize;
        if held == 0 || held == n {
            return;
        }
        let mut train = Ngrams::new(self.plan.max_order);
        for (_, context, next) in self.window.iter().skip(skip).take(n - held) {
            train.add(context, next, 1).expect("adding never fails");
        }
        let vocabulary: Vec<Id> = (0..self.names.len() as Id).collect();
        let orders: Vec<usize> = match self.plan.order {
            Some(o) => vec![o],
            None => (1..=self.plan.max_order).collect(),
        };
        let grid: Vec<Discount> = match self.plan.discount {
            Some(d) => vec![d],
            None => Discount::GRID.to_vec(),
        };
        // Every candidate reads the same counts of each held-out hop: look them up once.
        let held_out: Vec<(HopCounts, Id)> = self
            .window
            .iter()
            .skip(skip + n - held)
            .map(|(_, context, next)| (train.hop_counts(context, next), *next))
            .collect();
        let mut scored = Vec::new();
        for &order in &orders {
            for &discount in &grid {
                let model = KneserNey::new(&train, order, discount, vocabulary.iter().copied())
                    .expect("orders and discounts are checked when planned");
                let bits: f64 = held_out
                    .iter()
                    .map(|(hop, next)| -model.probability_of(hop, next).max(f64::MIN_POSITIVE).log2())
                    .sum();
                scored.push((order, discount, bits / held as f64));
            }
        }
        let best = scored
            .iter()
            .copied()
            .reduce(|best, c| if c.2 < best.2 { c } else { best })
            .expect("at least one candidate");
        let window_ms = self.models[i].window_ms;
        self.models[i].order = best.0;
        self.models[i].discount = best.1;
        self.epoch += 1;
        for (order, discount, bits) in scored {
            let chosen = order == best.0 && discount == best.1;
            let row = vec![
                Value::Time(t),
                Value::Int(window_ms as i64),
                Value::Int(order as i64),
                Value::str(&discount.to_string()),
                Value::float(bits),
                Value::Bool(chosen),
            ];
            out.push((t.max(0) as u64, Out::Selection(row), 1));
        }
    }

    /// Revises `NAME_transitions`: every top-order (context, next) count of the window with its
    /// probability under the current model.
    fn publish_transitions(&mut self, tick: u64, out: &mut Emitted) {
        let vocabulary: Vec<Id> = (0..self.names.len() as Id).collect();
        let (order, discount) = (self.models[0].order, self.models[0].discount);
        let counts = std::mem::replace(&mut self.models[0].counts, Ngrams::new(0));
        let mut now = BTreeMap::new();
        {
            let model = KneserNey::new(&counts, order, discount, vocabulary)
                .expect("orders and discounts are checked when planned");
            for (context, next, count) in counts.counts() {
                let row = vec![
                    self.context_label(&context),
                    self.labels[next as usize].clone(),
                    Value::Int(count as i64),
                    Value::float(model.probability(&context, &next)),
                ];
                now.insert((context, next), row);
            }
        }
        self.models[0].counts = counts;
        for (key, row) in &self.transitions {
            if now.get(key) != Some(row) {
                out.push((tick, Out::Transition(row.clone()), -1));
            }
        }
        for (key, row) in &now {
            if self.transitions.get(key) != Some(row) {
                out.push((tick, Out::Transition(row.clone()), 1));
            }
        }
        self.transitions = now;
    }

    fn apply(&mut self, item: Interaction, models: &[KneserNey<'_, Id>], tick: u64, out: &mut Emitted) {
        let a = self.id(&item.source);
        let b = self.id(&item.target);
        match item.kind {
            Kind::PipeCreated => {}
            Kind::Transmitted => self.hop(&item, a, b, models, tick, out),
            Kind::Processed | Kind::Error => {
                self.push_window(a, b, item.time, item.kind, item.bytes, item.latency_ms());
                let pair = self.pairs.get_mut(&(a, b)).expect("pushed above");
                let feedback_calls = self.plan.feedback_calls;
                let mut due = false;
                if let Some(pipe) = &mut pair.pipe {
                    let c = &mut pipe.carried;
                    c.latencies.push((item.latency_ms(), 1));
                    if item.kind == Kind::Error {
                        c.errors += 1;
                    }
                    due = c.latencies.len() as u64 >= feedback_calls;
                }
                if due {
                    self.feedback(a, b, item.time);
                }
            }
        }
    }

    /// A call `a → b` of a sequence.
    fn hop(&mut self, item: &Interaction, a: Id, b: Id, models: &[KneserNey<'_, Id>], tick: u64, out: &mut Emitted) {
        let time = item.time;
        let known = self.sequence_keys.get(&item.sequence).copied();
        let key = match known {
            Some(k) => k,
            None => {
                let k = self.next_sequence;
                self.next_sequence += 1;
                self.sequence_keys.insert(item.sequence.clone(), k);
                let mut history = vec![Token::Start; self.plan.max_order];
                history = shifted(&history, a);
                self.sequences.insert(
                    k,
                    Sequence {
                        name: item.sequence.clone(),
                        label: Value::Str(item.sequence.clone()),
                        history,
                        last_ms: time,
                        shares: Vec::new(),
                        end: 0.0,
                        predictions: Vec::new(),
                    },
                );
                k
            }
        };
        // A call from another service than the sequence's current one (a fan-out): the
        // context moves to the caller, uncounted.
        let seq = self.sequences.get_mut(&key).expect("entered above");
        if seq.current() != Some(a) {
            seq.history = shifted(&seq.history, a);
        }
        if known.is_some() {
            self.gaps.add((time - seq.last_ms) as f64);
        }
        let context = seq.history.clone();
        let label = seq.label.clone();

        // Score the hop, given that the sequence goes on (see `Chain::entropy_rate_bits`): each
        // window's model conditioned on going on, mixed by the caller's weights, which then
        // learn from the hop.
        let (dists, weights) = self.distributions(models, &context);
        let (ps, top1) = score_hop(&dists, &weights, b);
        let p: f64 = weights.iter().zip(&ps).map(|(w, p)| w * p).sum();
        if models.len() > 1 {
            let (share, n) = (self.plan.mix_share, models.len());
            self.mixes
                .entry(a)
                .or_insert_with(|| FixedShare::new(n, share))
                .update(&ps);
        }
        let order = self.models[0].order;
        let row = vec![
            Value::Time(time),
            label.clone(),
            self.context_label(&context[self.plan.max_order - order..]),
            self.labels[b as usize].clone(),
            Value::float(p),
            top1.map_or(Value::Null, |s| self.labels[s as usize].clone()),
            Value::Int(order as i64),
        ];
        out.push((tick, Out::Hop(row), 1));
        self.pending.push((time, context, b));

        // The pipe of the pair.
        self.use_pipe(a, b, time, &label, item.bytes, tick, out);
        self.push_window(a, b, time, Kind::Transmitted, item.bytes, item.latency_ms());

        // The sequence moves to `b`.
        self.leave(key);
        let seq = self.sequences.get_mut(&key).expect("entered above");
        seq.history = shifted(&seq.history, b);
        seq.last_ms = time;
        self.timers
            .insert((time + self.plan.sequence_timeout_ms as i64, Timer::Sequence(key)));
        self.arrive(key, models, time, tick, out);
    }

    /// Removes a sequence from the pipe probabilities of its current service.
    fn leave(&mut self, key: u64) {
        let Some(seq) = self.sequences.get_mut(&key) else {
            return;
        };
        let Some(at) = seq.current() else { return };
        if let Some(keys) = self.at_service.get_mut(&at) {
            keys.remove(&key);
        }
        for (x, _) in std::mem::take(&mut seq.shares) {
            if self.pairs.contains_key(&(at, x)) {
                self.dirty.insert((at, x));
            }
        }
    }

    /// A sequence at its (new) current service: its predictions, its shares of that service's
    /// pipe probabilities, and the pipes they call for.
    fn arrive(&mut self, key: u64, models: &[KneserNey<'_, Id>], time: i64, tick: u64, out: &mut Emitted) {
        let history = self.sequences[&key].history.clone();
        let (dists, weights) = self.distributions(models, &history);
        let mut dist = if dists.len() == 1 {
            dists[0].as_ref().clone()
        } else {
            let refs: Vec<&[(Id, f64)]> = dists.iter().map(|d| d.as_slice()).collect();
            mix_distributions(&weights, &refs)
        };
        let seq = self.sequences.get_mut(&key).expect("arrives while active");
        let at = seq.current().expect("a sequence is at a service");
        // Symbols are distinct, so the order is total and an unstable sort gives it.
        dist.sort_unstable_by(|x, y| y.1.total_cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
        let mut rows = Vec::new();
        for (rank, (s, p)) in dist
            .iter()
            .filter(|(s, _)| *s != END && *s != at)
            .take(self.plan.top_k)
            .enumerate()
        {
            rows.push(vec![
                seq.label.clone(),
                self.labels[at as usize].clone(),
                self.labels[*s as usize].clone(),
                Value::float(*p),
                Value::Int(rank as i64 + 1),
            ]);
        }
        for row in std::mem::take(&mut seq.predictions) {
            out.push((tick, Out::Prediction(row), -1));
        }
        for row in &rows {
            out.push((tick, Out::Prediction(row.clone()), 1));
        }
        seq.predictions = rows;
        seq.end = dist.iter().find(|(s, _)| *s == END).map_or(0.0, |d| d.1);
        seq.shares = dist
            .iter()
            .filter(|(s, p)| *s != END && *s != at && *p >= MIN_SHARE)
            .copied()
            .collect();
        let targets: Vec<Id> = seq.shares.iter().map(|(x, _)| *x).collect();
        self.at_service.entry(at).or_default().insert(key);
        let markov = self.markov_probabilities(at, time);
        for x in targets {
            self.dirty.insert((at, x));
            let pair = self.pairs.entry((at, x)).or_default();
            if pair.called && pair.pipe.is_none() {
                let pair = &self.pairs[&(at, x)];
                let p = pipe_probability(
                    markov[x as usize],
                    self.score(pair, time),
                    self.plan.pipes.resonance_weight,
                );
                self.candidate(at, x, p, time);
                if p >= self.outcomes.threshold() {
                    self.create(at, x, time, "predicted", Some(p), None, tick, out);
                }
            }
        }
    }

    /// `P_markov` of every pair from `a` at `time`, by target: `1 − Π (1 − qᵢ)` over the active
    /// sequences at `a`, each `qᵢ` discounted by its silence (see `model::pipes`).
    fn markov_probabilities(&self, a: Id, time: i64) -> Vec<f64> {
        markov_probabilities(
            &self.at_service,
            &self.sequences,
            &self.gaps,
            self.names.len(),
            self.plan.horizon_ms,
            a,
            time,
        )
    }

    fn score(&self, pair: &Pair, time: i64) -> f64 {
        if pair.window.items.is_empty() {
            return pair.feedback.score(0.0, time, &self.plan.resonance);
        }
        let c = pair.window.components(self.plan.resonance_window_ms as f64);
        pair.feedback
            .score(base_score(&c, &self.plan.resonance), time, &self.plan.resonance)
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        a: Id,
        b: Id,
        time: i64,
        reason: &'static str,
        probability: Option<f64>,
        sequence: Option<&Value>,
        tick: u64,
        out: &mut Emitted,
    ) {
        let used = reason == "demand";
        let pair = self.pairs.entry((a, b)).or_default();
        pair.pipe = Some(Pipe {
            reason,
            created_ms: time,
            last_used_ms: time,
            uses: u64::from(used),
            probability,
            carried: Carried {
                since_ms: time,
                ..Carried::default()
            },
            row: None,
        });
        self.dirty.insert((a, b));
        self.timers
            .insert((time + self.plan.idle_timeout_ms as i64, Timer::Pipe(a, b)));
        let row = self.event_row(
            time,
            a,
            b,
            "created",
            Some(reason),
            sequence,
            probability,
            None,
            None,
            None,
        );
        out.push((tick, Out::PipeEvent(row), 1));
    }

    #[allow(clippy::too_many_arguments)]
    fn event_row(
        &self,
        time: i64,
        a: Id,
        b: Id,
        event: &str,
        reason: Option<&str>,
        sequence: Option<&Value>,
        probability: Option<f64>,
        lead_ms: Option<i64>,
        idle_ms: Option<i64>,
        uses: Option<u64>,
    ) -> Vec<Value> {
        vec![
            Value::Time(time),
            self.labels[a as usize].clone(),
            self.labels[b as usize].clone(),
            shared_str(event),
            reason.map_or(Value::Null, shared_str),
            sequence.cloned().unwrap_or(Value::Null),
            opt(probability),
            lead_ms.map_or(Value::Null, Value::Int),
            idle_ms.map_or(Value::Null, Value::Int),
            uses.map_or(Value::Null, |u| Value::Int(u as i64)),
        ]
    }

    /// A call `a → b`: it uses the pair's pipe, or misses and opens one on demand.
    #[allow(clippy::too_many_arguments)]
    fn use_pipe(&mut self, a: Id, b: Id, time: i64, sequence: &Value, bytes: u64, tick: u64, out: &mut Emitted) {
        let idle = self.plan.idle_timeout_ms as i64;
        self.resolve(a, b, true);
        let pair = self.pairs.entry((a, b)).or_default();
        pair.called = true;
        let Some(pipe) = &mut pair.pipe else {
            let row = self.event_row(time, a, b, "miss", None, Some(sequence), None, None, None, None);
            out.push((tick, Out::PipeEvent(row), 1));
            self.create(a, b, time, "demand", None, Some(sequence), tick, out);
            let pipe = self
                .pairs
                .get_mut(&(a, b))
                .and_then(|p| p.pipe.as_mut())
                .expect("created");
            pipe.carried.calls += 1;
            pipe.carried.bytes += bytes;
            return;
        };
        let first = pipe.uses == 0 && pipe.reason == "predicted";
        let lead = first.then_some(time - pipe.created_ms);
        pipe.uses += 1;
        pipe.last_used_ms = time;
        pipe.carried.calls += 1;
        pipe.carried.bytes += bytes;
        self.timers.insert((time + idle, Timer::Pipe(a, b)));
        self.dirty.insert((a, b));
        let row = self.event_row(time, a, b, "used", None, Some(sequence), None, lead, None, None);
        out.push((tick, Out::PipeEvent(row), 1));
    }

    /// With `target_precision`: a pair without a pipe whose probability `p` reaches
    /// `min_threshold` becomes a candidate, or raises its pending candidate's probability.
    fn candidate(&mut self, a: Id, b: Id, p: f64, time: i64) {
        if self.plan.target_precision.is_none() || p < self.plan.min_threshold {
            return;
        }
        let pair = self.pairs.get_mut(&(a, b)).expect("a candidate's pair exists");
        match &mut pair.candidate {
            Some((_, highest)) => *highest = highest.max(p),
            None => {
                pair.candidate = Some((time, p));
                self.timers
                    .insert((time + self.plan.idle_timeout_ms as i64, Timer::Candidate(a, b)));
            }
        }
    }

    /// A pair's pending candidate is resolved: called before `idle_timeout` (used), or not.
    /// The adaptive threshold is recalibrated on the window of outcomes (see
    /// `model::pipes::Outcomes`): after every outcome while the window holds
    /// `precision_window`, every `len / precision_window` outcomes when it holds more.
    fn resolve(&mut self, a: Id, b: Id, used: bool) {
        let Some(target) = self.plan.target_precision else {
            return;
        };
        let Some((_, p)) = self.pairs.get_mut(&(a, b)).and_then(|pair| pair.candidate.take()) else {
            return;
        };
        let window = self.plan.precision_window;
        self.outcomes.push((p, used), window);
        if self.outcomes.len() < window.min(CALIBRATION_MIN) {
            return;
        }
        self.since_calibration += 1;
        if self.since_calibration < self.outcomes.len() / window.max(1) {
            return;
        }
        self.since_calibration = 0;
        let threshold = self.outcomes.calibrated(target, self.plan.min_threshold);
        self.outcomes.set_threshold(threshold);
    }

    /// Feedback from what the pair's pipe carried since the last: the pipe's performance moves
    /// the pair's score towards it (`model::resonance::adjust`).
    fn feedback(&mut self, a: Id, b: Id, time: i64) {
        let cfg = self.plan.resonance;
        let window_ms = self.plan.resonance_window_ms as f64;
        let Some(pair) = self.pairs.get_mut(&(a, b)) else {
            return;
        };
        let base = if pair.window.items.is_empty() {
            0.0
        } else {
            base_score(&pair.window.components(window_ms), &cfg)
        };
        let Some(pipe) = &mut pair.pipe else { return };
        let c = std::mem::replace(
            &mut pipe.carried,
            Carried {
                since_ms: time,
                ..Carried::default()
            },
        );
        if c.latencies.is_empty() {
            return;
        }
        let mut latencies = c.latencies;
        latencies.sort_by(|x, y| x.0.total_cmp(&y.0));
        let span = ((time - c.since_ms) as f64).max(1.0);
        let perf = performance(
            &Components::from_window(span, c.calls, c.bytes, &latencies, c.errors),
            &cfg,
        );
        let now = pair.feedback.score(base, time, &cfg);
        pair.feedback = Feedback {
            offset: adjust(now, perf, &cfg) - base,
            at_ms: time,
        };
        pair.resonance_stale = true;
        self.dirty.insert((a, b));
    }

    /// A pipe idle for `idle_timeout`: torn down.
    fn idle_out(&mut self, a: Id, b: Id, at: i64, out: &mut Emitted) {
        self.feedback(a, b, at);
        let Some(pipe) = self.pairs.get_mut(&(a, b)).and_then(|p| p.pipe.take()) else {
            return;
        };
        let tick = at.max(0) as u64;
        let row = self.event_row(at, a, b, "idle_timeout", None, None, None, None, None, None);
        out.push((tick, Out::PipeEvent(row), 1));
        let row = self.event_row(
            at,
            a,
            b,
            "torn_down",
            Some(pipe.reason),
            None,
            pipe.probability,
            None,
            Some(at - pipe.last_used_ms),
            Some(pipe.uses),
        );
        out.push((tick, Out::PipeEvent(row), 1));
        if let Some(old) = pipe.row {
            out.push((tick, Out::Pipe(old), -1));
        }
        self.dirty.insert((a, b));
    }

    /// A sequence silent for `sequence_timeout` ends: its end is counted, its predictions and
    /// shares withdrawn.
    fn expire(&mut self, key: u64, at: i64, out: &mut Emitted) {
        self.leave(key);
        let Some(seq) = self.sequences.remove(&key) else { return };
        self.sequence_keys.remove(&seq.name);
        self.pending.push((at, seq.history.clone(), END));
        let tick = at.max(0) as u64;
        for row in seq.predictions {
            out.push((tick, Out::Prediction(row), -1));
        }
    }

    /// Revises the resonance and pipe rows of the pairs that changed, at `time`. A pair whose
    /// window and feedback did not change (its hazard did) keeps its resonance row unless its
    /// feedback offset decays; one without a pipe then has nothing to revise.
    fn flush_pairs(&mut self, time: i64, out: &mut Emitted) {
        let tick = time.max(0) as u64;
        let cfg = self.plan.resonance;
        let window_ms = self.plan.resonance_window_ms as f64;
        let mut markov_by_source: FxHashMap<Id, Vec<f64>> = FxHashMap::default();
        let mut dirty: Vec<(Id, Id)> = self.dirty.drain().collect();
        dirty.sort_unstable();
        for key in dirty {
            let (a, b) = key;
            let Some(pair) = self.pairs.get_mut(&key) else { continue };
            let revise_resonance = pair.resonance_stale || pair.feedback.offset != 0.0;
            if !revise_resonance && pair.pipe.is_none() {
                continue;
            }
            let c = pair.window.components(window_ms);
            let has_window = !pair.window.items.is_empty();
            let base = if has_window { base_score(&c, &cfg) } else { 0.0 };
            let feedback = pair.feedback.offset_at(time, &cfg);
            if revise_resonance {
                pair.resonance_stale = false;
                let resonance = (has_window || feedback.abs() > 1e-9).then(|| {
                    vec![
                        self.labels[a as usize].clone(),
                        self.labels[b as usize].clone(),
                        Value::float((base + feedback).clamp(0.0, 1.0)),
                        Value::float(base),
                        Value::float(feedback),
                        Value::float(c.calls_per_s),
                        Value::float(c.bytes_per_s),
                        opt(c.latency_p50_ms),
                        opt(c.latency_p95_ms),
                        opt(c.error_rate),
                    ]
                });
                if pair.resonance_row != resonance {
                    if let Some(old) = pair.resonance_row.take() {
                        out.push((tick, Out::Resonance(old), -1));
                    }
                    if let Some(new) = &resonance {
                        out.push((tick, Out::Resonance(new.clone()), 1));
                    }
                    pair.resonance_row = resonance;
                }
            }
            let Some(pipe) = &mut pair.pipe else { continue };
            let markov = markov_by_source.entry(a).or_insert_with(|| {
                markov_probabilities(
                    &self.at_service,
                    &self.sequences,
                    &self.gaps,
                    self.names.len(),
                    self.plan.horizon_ms,
                    a,
                    time,
                )
            })[b as usize];
            let probability = pipe_probability(
                markov,
                (base + feedback).clamp(0.0, 1.0),
                self.plan.pipes.resonance_weight,
            );
            // Expected calls within the horizon from the sequences at `a`, per second.
            let rate = c.calls_per_s - (1.0 - markov).max(1e-12).ln() * 1000.0 / self.plan.horizon_ms.max(1) as f64;
            let payload = if c.calls_per_s > 0.0 {
                c.bytes_per_s / c.calls_per_s
            } else {
                0.0
            };
            let settings = configure(rate, payload, &self.plan.pipes);
            let (filters, transforms) = pair
                .rules
                .get_or_insert_with(|| rules_for(&self.plan.rules, &self.names[a as usize], &self.names[b as usize]))
                .clone();
            let pipe_row = vec![
                self.labels[a as usize].clone(),
                self.labels[b as usize].clone(),
                shared_str(if pipe.uses == 0 { "created" } else { "used" }),
                shared_str(pipe.reason),
                Value::Time(pipe.created_ms),
                if pipe.uses == 0 {
                    Value::Null
                } else {
                    Value::Time(pipe.last_used_ms)
                },
                Value::Int(pipe.uses as i64),
                Value::float(probability),
                Value::float(self.outcomes.threshold()),
                Value::Int(i64::from(settings.batch_size)),
                Value::float(settings.linger_ms),
                shared_str(settings.compression.name()),
                filters,
                transforms,
            ];
            if pipe.row.as_ref() != Some(&pipe_row) {
                if let Some(old) = pipe.row.take() {
                    out.push((tick, Out::Pipe(old), -1));
                }
                out.push((tick, Out::Pipe(pipe_row.clone()), 1));
                pipe.row = Some(pipe_row);
            }
        }
    }
}

/// A call to `b` scored under each window's distribution conditioned on the sequence going on
/// (`P(b) / (1 − P(END))`), and the mixture's most likely next service (the least symbol
/// among ties) under `weights`. Each symbol's mixed probability sums its models' terms in
/// model order, as [`mix_distributions`] does, without building the conditioned or mixed lists.
fn score_hop(dists: &[Distribution], weights: &[f64], b: Id) -> (Vec<f64>, Option<Id>) {
    let of = |d: &[(Id, f64)], x: Id| d.iter().find(|(s, _)| *s == x).map_or(0.0, |d| d.1);
    let scale: Vec<f64> = dists
        .iter()
        .map(|d| {
            let end = of(d, END);
            if end < 1.0 {
                1.0 - end
            } else {
                1.0
            }
        })
        .collect();
    // A service named like the end marker is never a conditioned outcome.
    let ps = dists
        .iter()
        .zip(&scale)
        .map(|(d, k)| if b == END { 0.0 } else { of(d, b) / k })
        .collect();
    let better = |x: &(Id, f64), y: &(Id, f64)| x.1.total_cmp(&y.1).then_with(|| y.0.cmp(&x.0));
    let mut top: Option<(Id, f64)> = None;
    let mut consider = |c: (Id, f64)| {
        if top.is_none_or(|t| better(&c, &t).is_ge()) {
            top = Some(c);
        }
    };
    // One model is aligned with itself: its weight is 1, and 0 + 1 × p is p.
    if same_symbols(dists.iter().map(|d| d.as_slice())) {
        for (j, &(s, _)) in dists[0].iter().enumerate() {
            if s != END {
                let p = weights
                    .iter()
                    .zip(dists)
                    .zip(&scale)
                    .fold(0.0, |acc, ((w, d), k)| acc + w * (d[j].1 / k));
                consider((s, p));
            }
        }
    } else {
        let conditional: Vec<Vec<(Id, f64)>> = dists
            .iter()
            .zip(&scale)
            .map(|(d, k)| d.iter().filter(|(s, _)| *s != END).map(|&(s, p)| (s, p / k)).collect())
            .collect();
        let refs: Vec<&[(Id, f64)]> = conditional.iter().map(Vec::as_slice).collect();
        mix_distributions(weights, &refs).into_iter().for_each(&mut consider);
    }
    (ps, top.map(|(s, _)| s))
}

/// `P_markov` of every pair from `a` at `time`, by target (see `ServiceState::markov_probabilities`).
fn markov_probabilities(
    at_service: &FxHashMap<Id, BTreeSet<u64>>,
    sequences: &FxHashMap<u64, Sequence>,
    gaps: &GapSurvival,
    names: usize,
    horizon_ms: u64,
    a: Id,
    time: i64,
) -> Vec<f64> {
    let mut none = vec![1.0; names];
    for key in at_service.get(&a).into_iter().flatten() {
        let seq = &sequences[key];
        let silent = (time - seq.last_ms) as f64;
        for (x, p) in &seq.shares {
            let q = within_horizon(*p, seq.end, silent, horizon_ms as f64, gaps);
            none[*x as usize] *= 1.0 - q.min(0.999_999);
        }
    }
    none.into_iter().map(|n| 1.0 - n).collect()
}

/// The pipe probability of a pair from its sequences' `P_markov` and its resonance score (see
/// `model::pipes::interaction_probability`).
fn pipe_probability(markov: f64, resonance: f64, resonance_weight: f64) -> f64 {
    (1.0 - (1.0 - markov) * (1.0 - resonance_weight * resonance)).clamp(0.0, 1.0)
}

/// The filters and transforms of the rules that match `a → b`, in spec order.
fn rules_for(rules: &[PipeRule], a: &str, b: &str) -> (Value, Value) {
    let list = |f: fn(&PipeRule) -> &Vec<String>| -> Value {
        Value::List(
            rules
                .iter()
                .filter(|r| r.matches(a, b))
                .flat_map(|r| f(r).iter().map(|s| Value::str(s)))
                .collect(),
        )
    };
    (list(|r| &r.filters), list(|r| &r.transforms))
}
