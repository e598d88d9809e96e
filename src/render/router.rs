//! Routing decisions: `events: Collection<Event>` (with routing metadata) plus the regional
//! state (`load` samples, `regions`, and optionally a forecast's rows) → one decision event per
//! event, and dead letters. Times are event-time ticks; a decision is made once, as of its
//! event's time, and never revised.
//!
//! ```text
//!  load ─────┐
//!  regions ──┤
//!  forecast ─┼─► broadcast ──► Router ◄── events (stay on their worker)
//!  rates ────┘                   ├──► decisions (the event's time and type; DECISION_FIELDS)
//!                                ├──► migrations (worker 0; MIGRATION_COLUMNS)
//!                                └──► placement (worker 0, with replication; PLACEMENT_COLUMNS)
//! ```
//!
//! `placement` (with `[routers.replication]`) is a changelog of each shard's targets, its home
//! and then its replicas, revised at the end of every tick in which a region's capacity changed
//! or a shard moved. `render::replication` reads it.
//!
//! `rates` (with `[routers.migration]`) are each shard's events per interval, from a hidden
//! aggregate over the events: at each interval's end, every worker runs the same
//! [`crate::model::migration::Migrator`] on the same state, so they agree on the moves, and a
//! moved shard's later events go to its new home.
//!
//! Every worker holds the whole regional state (a few rows per region and metric). Events and
//! state updates wait until both frontiers pass their tick; within a tick, an event sees the
//! load samples and region rows whose event time is at or before its own (as the as-of joins
//! do), and the forecast rows issued up to its tick. Updates of one time apply in their total
//! order (`Ctx`'s, then the rows' own), so of two samples of a region at one time the last in
//! that order wins. So a decision depends only on the inputs up to its event's time, not on
//! file order, batching or the number of workers.
//!
//! Per region, the router knows:
//! - the latest row of `regions`: its capacity (a capacity ≤ 0 takes the region out);
//! - the latest sample of each metric (`cpu`, `memory`, `queue_length`, `latency_ms`);
//! - with a forecast, its current rows: the prediction for the first target step at or after
//!   the event's time replaces the observed value.
//!
//! The shard's home region comes from the placement (`model::placement`) over the available
//! regions, weighted by capacity, rebuilt when they change (which undoes the migrations made
//! on the old placement). Scores come from
//! `model::routing::decide`.
//!
//! Dead letters (`router:NAME`): load samples and region rows of no known region or with a
//! value that is not a finite number (`unknown_region`, `non_numeric`; reported by worker 0,
//! since every worker sees them), events without integer metadata (`invalid_metadata`) and
//! events when no region is available (`no_region`).

use std::collections::BTreeMap;

use differential_dataflow::AsCollection;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::vec::{Broadcast, Map};
use timely::dataflow::operators::CapabilitySet;

use crate::dead_letter::DeadLetter;
use crate::event::Event;
use crate::model::placement::{shard_homes, PlacementSpec, Placer};
use crate::model::routing::{decide, Reason, RegionLoad};
use crate::plan::router::{MigrationLoad, RouterPlan, ROUTER_METRICS};
use crate::render::pending::{retain_ports, Batch, Paired, UpdateBuilder};
use crate::render::{Coll, EventsOf, RowsOf, StageOut, WindowsOf};
use crate::value::{format_time, Sym, Value};

/// One update of the regional state, ordered by the time it takes effect.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
enum Ctx {
    /// A `regions` row.
    Region(Event),
    /// A load sample.
    Load(Event),
    /// A forecast row, with the tick it was issued at.
    Forecast(u64, Vec<Value>),
    /// Events of a shard in the migration interval ending at the time: (end, shard, count).
    Rates(i64, u64, i64),
}

impl Ctx {
    fn time(&self) -> i64 {
        match self {
            Ctx::Region(e) | Ctx::Load(e) => e.time,
            Ctx::Forecast(t, _) => *t as i64,
            Ctx::Rates(end, _, _) => *end,
        }
    }
}

/// The current forecasts of one region and metric: `(target_time, issued tick)` → (value,
/// multiplicity).
type Predictions = BTreeMap<(i64, u64), (f64, isize)>;

/// What every worker knows of the regions.
struct Regional {
    plan: RouterPlan,
    /// Capacity per region, from the latest `regions` row.
    capacity: BTreeMap<String, f64>,
    /// Each region's index into `observed` and `predicted`, given on first sight.
    ids: BTreeMap<String, usize>,
    /// Latest observed value per region and metric index, with its sample's time.
    observed: Vec<[Option<(f64, i64)>; 4]>,
    predicted: Vec<[Predictions; 4]>,
    /// The available regions (by name) and every shard's home index among them; rebuilt when
    /// `capacity` changes.
    placement: Option<(Vec<String>, Vec<u32>)>,
    /// For each of the placement's regions, its index and its name as a value.
    placed: Vec<(usize, Value)>,
    /// Field names and values each decision uses, made once.
    syms: Syms,
    /// The placement's loads as events in `(lo, hi]` see them, until the state changes: with
    /// forecasts every 1–5 minutes, a dense stream's events share them.
    loads: Option<(i64, i64, Vec<RegionLoad>)>,
    /// The placer behind `placement`, for replicas (`None` when no region is available or the
    /// ring could not be built).
    placer: Option<Placer>,
    /// Whether a shard's home may have changed since `NAME_placement` was last brought up to
    /// date, and each shard's targets as it last said them (worker 0, with replication).
    placement_changed: bool,
    said: Vec<Vec<Value>>,
    /// Shard migration: its state, the shards it moved (to a region by name), the rates of the
    /// interval that ends at `.0`, the earlier intervals of the trailing window, and the moves
    /// not yet emitted.
    migrator: crate::model::migration::Migrator,
    moved: BTreeMap<u64, String>,
    rates: Option<(i64, Vec<(u64, i64)>)>,
    window: std::collections::VecDeque<(i64, Vec<(u64, i64)>)>,
    migrations: Vec<Vec<Value>>,
}

impl Regional {
    fn new(plan: RouterPlan) -> Regional {
        let syms = Syms::new(&plan);
        Regional {
            plan,
            capacity: BTreeMap::new(),
            ids: BTreeMap::new(),
            observed: Vec::new(),
            predicted: Vec::new(),
            placement: None,
            placed: Vec::new(),
            syms,
            loads: None,
            placer: None,
            placement_changed: true,
            said: Vec::new(),
            migrator: Default::default(),
            moved: BTreeMap::new(),
            rates: None,
            window: Default::default(),
            migrations: Vec::new(),
        }
    }

    /// Evaluates migration over the rates of an interval that ended at or before `upto`.
    fn settle(&mut self, upto: i64) {
        if self.rates.as_ref().is_none_or(|(end, _)| *end > upto) {
            return;
        }
        let (end, counts) = self.rates.take().expect("checked");
        let Some(m) = self.plan.migration.clone() else { return };
        // The trailing window: this interval and the earlier ones that end within it.
        self.window.retain(|(e, _)| *e > end - m.window_ms as i64);
        self.window.push_back((end, counts));
        let mut per_shard: BTreeMap<u64, i64> = BTreeMap::new();
        for (shard, count) in self.window.iter().flat_map(|(_, c)| c) {
            *per_shard.entry(*shard).or_default() += count;
        }
        let first = self.window.front().map_or(end, |(e, _)| *e);
        let seconds = ((end - first) as f64 + m.interval_ms as f64) / 1000.0;
        let (names, homes) = self.placement().clone();
        let shards: Vec<crate::model::migration::Shard> = per_shard
            .iter()
            .filter_map(|(shard, count)| {
                let region = self.home(&names, &homes, *shard as i64)?;
                Some(crate::model::migration::Shard {
                    id: *shard,
                    region,
                    rate: *count as f64 / seconds,
                })
            })
            .collect();
        let capacities: Vec<f64> = names.iter().map(|n| self.capacity[n]).collect();
        let states: Vec<crate::model::migration::RegionState> = if m.load == MigrationLoad::Routed {
            let mut rates = vec![0.0; names.len()];
            for s in &shards {
                rates[s.region] += s.rate;
            }
            crate::model::migration::routed_loads(&rates, &capacities)
                .into_iter()
                .zip(&capacities)
                .map(|(load, capacity)| crate::model::migration::RegionState {
                    load,
                    capacity: *capacity,
                    as_of: end,
                })
                .collect()
        } else {
            // Every available region needs a load to compare.
            let forecast = m.load == MigrationLoad::Forecast;
            let Some(states) = names
                .iter()
                .zip(&capacities)
                .map(|(n, capacity)| {
                    self.value_at(n, m.metric, end, forecast).map(|(load, as_of)| {
                        crate::model::migration::RegionState {
                            load,
                            capacity: *capacity,
                            as_of,
                        }
                    })
                })
                .collect::<Option<Vec<_>>>()
            else {
                return;
            };
            states
        };
        let mean = states.iter().map(|s| s.load).sum::<f64>() / states.len().max(1) as f64;
        for mv in self.migrator.evaluate(end, &m.config, &states, &shards) {
            self.moved.insert(mv.shard, names[mv.to].clone());
            self.placement_changed = true;
            let reason = format!(
                "{} {:.1} > mean {:.1} × {:.2} for {} s",
                match m.load {
                    MigrationLoad::Routed => "routed",
                    _ => ROUTER_METRICS[m.metric],
                },
                mv.from_load.0,
                mean,
                1.0 + m.config.imbalance,
                m.config.sustain_ms / 1000
            );
            self.migrations.push(vec![
                Value::Time(end),
                Value::Int(mv.shard as i64),
                Value::str(&names[mv.from]),
                Value::str(&names[mv.to]),
                Value::str(&reason),
                Value::float(mv.from_load.0),
                Value::float(mv.from_load.1),
                Value::float(mv.to_load.0),
                Value::float(mv.to_load.1),
            ]);
        }
    }

    /// The home of `shard` among the available regions `names`: where migration moved it, else
    /// where the placement puts it.
    fn home(&self, names: &[String], homes: &[u32], shard: i64) -> Option<usize> {
        let moved = self
            .moved
            .get(&u64::try_from(shard).ok()?)
            .and_then(|to| names.iter().position(|n| n == to));
        moved.or_else(|| {
            usize::try_from(shard)
                .ok()
                .and_then(|s| homes.get(s))
                .map(|h| *h as usize)
        })
    }

    /// Applies one update; `Err((reason, detail))` for a row it cannot use.
    fn apply(&mut self, ctx: &Ctx, diff: isize) -> Result<(), (&'static str, String)> {
        // Migration sees the state as of its interval's end: nothing later.
        if !matches!(ctx, Ctx::Rates(..)) {
            self.settle(ctx.time() - 1);
            self.loads = None;
        }
        let region_field = self.syms.region_field;
        let region_of = |e: &Event| match crate::value::lookup(&e.payload, region_field) {
            Some(Value::Str(s)) => Ok(s.to_string()),
            other => Err((
                "unknown_region",
                format!(
                    "`{}` is {}",
                    self.plan.region_field,
                    other.map_or("missing", |v| v.kind_name())
                ),
            )),
        };
        match ctx {
            Ctx::Region(e) => {
                let region = region_of(e)?;
                let capacity = crate::value::lookup(&e.payload, self.syms.capacity_field)
                    .and_then(Value::as_f64)
                    .filter(|c| c.is_finite())
                    .ok_or_else(|| {
                        (
                            "non_numeric",
                            format!("`{}` is not a finite number", self.plan.capacity_field),
                        )
                    })?;
                self.id(&region);
                if self.capacity.insert(region, capacity) != Some(capacity) {
                    // A new placement: the migrations that corrected the old one are undone
                    // (a shard moved onto a region in outage goes back to the ring).
                    self.placement = None;
                    self.placement_changed = true;
                    self.moved.clear();
                }
                Ok(())
            }
            Ctx::Load(e) => {
                let region = region_of(e)?;
                if !self.capacity.contains_key(&region) {
                    return Err(("unknown_region", format!("no `regions` row names `{region}` yet")));
                }
                let id = self.id(&region);
                let mut bad = Vec::new();
                for (m, metric) in ROUTER_METRICS.iter().enumerate() {
                    match crate::value::lookup(&e.payload, self.syms.metrics[m]) {
                        None | Some(Value::Null) => {}
                        Some(v) => match v.as_f64().filter(|x| x.is_finite()) {
                            Some(x) => {
                                self.observed[id][m] = Some((x, e.time));
                            }
                            None => bad.push(*metric),
                        },
                    }
                }
                if bad.is_empty() {
                    Ok(())
                } else {
                    Err((
                        "non_numeric",
                        format!("{} not a finite number (the other metrics were used)", bad.join(", ")),
                    ))
                }
            }
            Ctx::Rates(end, shard, count) => {
                match &mut self.rates {
                    Some((e, counts)) if e == end => counts.push((*shard, *count * diff as i64)),
                    _ => {
                        self.settle(*end - 1);
                        self.rates = Some((*end, vec![(*shard, *count * diff as i64)]));
                    }
                }
                Ok(())
            }
            Ctx::Forecast(tick, row) => {
                let Some((at, keys)) = self.plan.forecast_columns else {
                    return Ok(());
                };
                let region = match &row[at] {
                    Value::Str(s) => s.to_string(),
                    _ => return Ok(()),
                };
                let Some(m) = (match &row[keys] {
                    Value::Str(s) => ROUTER_METRICS.iter().position(|m| *m == &**s),
                    _ => None,
                }) else {
                    // A metric the router does not read.
                    return Ok(());
                };
                let (Value::Time(target), Some(value)) = (&row[keys + 1], row[keys + 3].as_f64()) else {
                    return Ok(());
                };
                let id = self.id(&region);
                let series = &mut self.predicted[id][m];
                let at = (*target, *tick);
                match series.get_mut(&at) {
                    Some(entry) => {
                        entry.1 += diff;
                        if entry.1 <= 0 {
                            series.remove(&at);
                        }
                    }
                    // A retraction of a row already forgotten (its target passed).
                    None if diff <= 0 => {}
                    None => {
                        series.insert(at, (value, diff));
                    }
                }
                Ok(())
            }
        }
    }

    /// Drops forecasts for targets before `time` except the latest (no later event can use
    /// them).
    fn forget_before(&mut self, time: i64) {
        self.loads = None;
        for series in self.predicted.iter_mut().flat_map(|s| s.iter_mut()) {
            let keep = series.range(..(time, 0)).next_back().map(|(k, _)| *k);
            if let Some(first) = keep {
                *series = series.split_off(&first);
            }
        }
    }

    /// The available regions and each shard's home among them.
    fn placement(&mut self) -> &(Vec<String>, Vec<u32>) {
        if self.placement.is_none() {
            let regions: Vec<(String, f64)> = self
                .capacity
                .iter()
                .filter(|(_, c)| **c > 0.0)
                .map(|(n, c)| (n.clone(), *c))
                .collect();
            let names: Vec<String> = regions.iter().map(|(n, _)| n.clone()).collect();
            let spec = PlacementSpec {
                algorithm: self.plan.algorithm.parse().expect("validated"),
                vnodes: self.plan.vnodes,
                epsilon: self.plan.epsilon,
            };
            let (homes, placer) = shard_homes(&spec, &regions, self.plan.shards);
            self.placer = placer;
            self.placed = names.iter().map(|n| (self.ids[n], Value::str(n))).collect();
            self.placement = Some((names, homes));
        }
        self.placement.as_ref().expect("just built")
    }

    /// The regions (indices into `names`) that hold `shard`: its home, then the next distinct
    /// regions on the ring (in bucket order for jump), `replicas` in all when there are as many
    /// regions. A migrated shard keeps its ring position: its replicas follow its new home.
    fn targets(&self, names: &[String], homes: &[u32], shard: u64, replicas: usize) -> Vec<usize> {
        let Some(home) = self.home(names, homes, shard as i64) else {
            return Vec::new();
        };
        let mut out = match &self.placer {
            Some(Placer::Ring(ring)) => ring.successors_after(home, shard, replicas),
            Some(Placer::Bounded(b)) => b.ring().successors_after(home, shard, replicas),
            // Jump (or no placer): the buckets after the home, wrapping.
            _ => (0..names.len()).map(|i| (home + i) % names.len()).collect(),
        };
        out.truncate(replicas);
        out
    }

    /// The rows `NAME_placement` gains (`+1`) and loses (`-1`) since it was last brought up to
    /// date: `[shard_id, home, targets]` for every shard whose targets changed.
    fn placement_changes(&mut self, replicas: usize) -> Vec<(Vec<Value>, isize)> {
        if !self.placement_changed || self.capacity.is_empty() {
            return Vec::new();
        }
        self.placement_changed = false;
        let (names, homes) = self.placement().clone();
        let shards = self.plan.shards as usize;
        self.said.resize(shards, Vec::new());
        let mut out = Vec::new();
        for shard in 0..shards {
            let targets: Vec<Value> = self
                .targets(&names, &homes, shard as u64, replicas)
                .into_iter()
                .map(|r| Value::str(&names[r]))
                .collect();
            if targets == self.said[shard] {
                continue;
            }
            let row = |t: &[Value]| {
                vec![
                    Value::Int(shard as i64),
                    t.first().cloned().unwrap_or(Value::Null),
                    Value::List(t.to_vec().into()),
                ]
            };
            if !self.said[shard].is_empty() {
                out.push((row(&self.said[shard]), -1));
            }
            if !targets.is_empty() {
                out.push((row(&targets), 1));
            }
            self.said[shard] = targets;
        }
        out
    }

    /// The load of each of the regions `names` as an event at `time` sees it: the latest
    /// prediction for the first target at or after `time`, else the latest observed value.
    #[cfg(test)]
    fn loads(&self, names: &[String], time: i64) -> Vec<RegionLoad> {
        self.loads_of(names.iter().map(|n| self.ids.get(n).copied()), time)
    }

    /// The load of each region (by index; `None`: a region with no state) as an event at `time`
    /// sees it: the latest prediction for the first target at or after `time`, else the latest
    /// observed value.
    fn loads_of(&self, ids: impl Iterator<Item = Option<usize>>, time: i64) -> Vec<RegionLoad> {
        ids.map(|id| {
            let value = |m: usize| id.and_then(|id| self.value_of(id, m, time, true)).map(|(v, _)| v);
            RegionLoad {
                cpu: value(0),
                memory: value(1),
                queue_length: value(2),
                latency_ms: value(3),
                available: true,
            }
        })
        .collect()
    }

    /// Region `name`'s metric `m` as of `time`, and when it was measured: the latest prediction
    /// for the first target at or after `time` (with `forecast`) and its issue tick, else the
    /// latest sample and its time.
    fn value_at(&self, name: &str, m: usize, time: i64, forecast: bool) -> Option<(f64, i64)> {
        self.value_of(*self.ids.get(name)?, m, time, forecast)
    }

    /// [`Regional::value_at`] of the region with index `id`.
    fn value_of(&self, id: usize, m: usize, time: i64, forecast: bool) -> Option<(f64, i64)> {
        let predicted = Some(&self.predicted[id]).filter(|_| forecast).and_then(|series| {
            let series = &series[m];
            // The latest issue of the first target at or after `time`.
            let rows = series.range((time, 0)..);
            let (&(target, _), _) = rows.clone().next()?;
            let ((_, issued), (v, _)) = rows.take_while(|((t, _), _)| *t == target).last()?;
            Some((*v, *issued as i64))
        });
        predicted.or_else(|| self.observed[id][m])
    }

    /// Brings `loads` up to date for an event at `time`: the placement's regions' loads with
    /// forecasts, and the span of times that read the same forecast rows (between the targets
    /// around `time`).
    fn refresh_loads(&mut self, time: i64) {
        if self.loads.as_ref().is_some_and(|(lo, hi, _)| *lo < time && time <= *hi) {
            return;
        }
        let (mut lo, mut hi) = (i64::MIN, i64::MAX);
        for (id, _) in &self.placed {
            for series in &self.predicted[*id] {
                // An event at `t` reads the first target at or after `t`: `hi` for every `t` in
                // `(lo, hi]`, the targets next to `time`.
                if let Some(((before, _), _)) = series.range(..(time, 0)).next_back() {
                    lo = lo.max(*before);
                }
                if let Some(((after, _), _)) = series.range((time, 0)..).next() {
                    hi = hi.min(*after);
                }
            }
        }
        let loads = self.loads_of(self.placed.iter().map(|(id, _)| Some(*id)), time);
        self.loads = Some((lo, hi, loads));
    }

    /// The index of region `name`, given on first sight.
    fn id(&mut self, name: &str) -> usize {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = self.ids.len();
        self.ids.insert(name.to_string(), id);
        self.observed.push(Default::default());
        self.predicted.push(Default::default());
        id
    }

    /// The decision for `event`, or why there is none.
    fn route(&mut self, event: &Event) -> Result<Event, (&'static str, String)> {
        self.settle(event.time);
        let syms = &self.syms;
        let get = |name: Sym| {
            crate::value::lookup(&event.payload, name)
                .cloned()
                .unwrap_or(Value::Null)
        };
        let int = |name: Sym| match get(name) {
            Value::Int(i) => Ok(i),
            other => Err((
                "invalid_metadata",
                format!("`{name}` is {}, not an integer", other.kind_name()),
            )),
        };
        let (priority, complexity, shard) = (int(syms.priority)?, int(syms.complexity)?, int(syms.shard_id)?);
        let shard_key = get(syms.shard_key);
        self.placement();
        self.refresh_loads(event.time);
        let (names, homes) = self.placement.as_ref().expect("just built");
        if names.is_empty() {
            return Err(("no_region", "no region is available".into()));
        }
        let home = self.home(names, homes, shard);
        let loads = &self.loads.as_ref().expect("just refreshed").2;
        let plan = &self.plan;
        let d = decide(loads, home, priority, complexity, &plan.weights, &plan.health)
            .ok_or(("no_region", "no region is available".to_string()))?;
        let id = plan.id.as_ref().and_then(|a| a.get(event)).unwrap_or(Value::Null);
        let name = |i: usize| self.placed[i].1.clone();
        let mut fields = [
            id,
            shard_key,
            Value::Int(shard),
            Value::Int(priority),
            Value::Int(complexity),
            home.map_or(Value::Null, name),
            name(d.chosen.region),
            Value::float(d.chosen.total),
            Value::float(d.chosen.latency),
            Value::float(d.chosen.headroom),
            Value::float(d.chosen.affinity),
            d.runner_up.map_or(Value::Null, |r| name(r.region)),
            d.runner_up.map_or(Value::Null, |r| Value::float(r.total)),
            self.syms.reason(d.reason),
            Value::float(d.boost),
            Value::float(d.yield_),
        ];
        // Collected straight into the shared payload: one allocation, no copy.
        let payload: std::sync::Arc<[(Sym, Value)]> = (self.syms.decision.iter())
            .map(|(i, sym)| (*sym, std::mem::replace(&mut fields[*i], Value::Null)))
            .collect();
        Ok(Event {
            time: event.time,
            kind: event.kind,
            payload,
        })
    }
}

/// The names a router reads and writes, interned once, and its reasons as values.
struct Syms {
    region_field: Sym,
    capacity_field: Sym,
    metrics: [Sym; 4],
    priority: Sym,
    complexity: Sym,
    shard_id: Sym,
    shard_key: Sym,
    /// `DECISION_FIELDS` in the payload's order: (index in `DECISION_FIELDS`, name).
    decision: Vec<(usize, Sym)>,
    reasons: [Value; 4],
}

impl Syms {
    fn new(plan: &RouterPlan) -> Syms {
        let mut decision: Vec<(usize, Sym)> = crate::plan::router::DECISION_FIELDS
            .iter()
            .enumerate()
            .map(|(i, f)| (i, Sym::new(f)))
            .collect();
        decision.sort_by_key(|(_, sym)| *sym);
        Syms {
            region_field: Sym::new(&plan.region_field),
            capacity_field: Sym::new(&plan.capacity_field),
            metrics: ROUTER_METRICS.map(Sym::new),
            priority: Sym::new("priority"),
            complexity: Sym::new("complexity"),
            shard_id: Sym::new("shard_id"),
            shard_key: Sym::new("shard_key"),
            decision,
            reasons: Reason::ALL.map(|r| Value::str(r.as_str())),
        }
    }

    fn reason(&self, reason: Reason) -> Value {
        self.reasons[Reason::ALL.iter().position(|r| *r == reason).expect("every reason")].clone()
    }
}

/// The inputs of a router: events, load samples and regions, and, when the plan has them, a
/// forecast's rows and the shards' event rates per migration interval.
pub struct Inputs<'s> {
    pub events: EventsOf<'s>,
    pub load: EventsOf<'s>,
    pub regions: EventsOf<'s>,
    pub forecast: Option<RowsOf<'s>>,
    pub rates: Option<WindowsOf<'s>>,
}

/// The router stage. `fields` are the time and type field names of the events, load samples and
/// regions, for dead letters.
pub fn stage<'s>(inputs: Inputs<'s>, plan: &RouterPlan, fields: [(&str, &str); 3]) -> StageOut<'s> {
    let Inputs {
        events,
        load,
        regions,
        forecast: forecasts,
        rates,
    } = inputs;
    let scope = events.scope();
    let report = scope.index() == 0;
    let mut ctx = load.map(Ctx::Load).concat(regions.map(Ctx::Region));
    if let Some(rows) = forecasts {
        let rows = rows
            .inner
            .map(|(row, t, r)| (Ctx::Forecast(t, row), t, r))
            .as_collection();
        ctx = ctx.concat(rows);
    }
    if let Some(rates) = rates {
        let rows = rates.flat_map(|w| match (w.group().first(), w.measures().first()) {
            (Some(Value::Int(shard)), Some(Value::Int(n))) if *shard >= 0 => {
                Some(Ctx::Rates(w.end(), *shard as u64, *n))
            }
            _ => None,
        });
        ctx = ctx.concat(rows);
    }
    // Each update carries its multiplicity, which the pairing buffer does not keep.
    let ctx = ctx.inner.map(|(c, t, r)| ((c, r), t, r)).broadcast();
    let name = plan.name.clone();
    let stage_name = format!("router:{name}");
    let field_names: Vec<(String, String)> = fields.iter().map(|(t, k)| (t.to_string(), k.to_string())).collect();
    let mut regional = Regional::new(plan.clone());
    let replicas = plan.replicas;
    let mut builder = OperatorBuilder::new(format!("Router({name})"), events.scope());
    let mut events_in = builder.new_input(events.inner, Pipeline);
    let mut ctx_in = builder.new_input(ctx, Pipeline);
    let (decisions_out, decisions) = builder.new_output();
    let (migrations_out, migrations) = builder.new_output();
    let (placement_out, placement) = builder.new_output();
    let (dead_out, dead) = builder.new_output();
    let mut outputs = (
        OutputBuilder::<u64, UpdateBuilder<Event>>::from(decisions_out),
        OutputBuilder::<u64, UpdateBuilder<Vec<Value>>>::from(migrations_out),
        OutputBuilder::<u64, UpdateBuilder<Vec<Value>>>::from(placement_out),
        OutputBuilder::<u64, UpdateBuilder<DeadLetter>>::from(dead_out),
    );
    builder.build(move |_initial| {
        // `pending.events.caps` holds the decisions' capabilities, `more` the other outputs'.
        let mut pending: Paired<(Event, isize), (Ctx, isize)> = Paired::default();
        let mut more = [CapabilitySet::new(), CapabilitySet::new(), CapabilitySet::new()];
        let (mut made, mut moves, mut placed, mut letters) =
            (Batch::default(), Batch::default(), Batch::default(), Batch::default());
        move |frontiers| {
            let mut sessions = (
                outputs.0.activate(),
                outputs.1.activate(),
                outputs.2.activate(),
                outputs.3.activate(),
            );
            events_in.for_each_stamp(|cap, data| {
                retain_ports(&mut more, &cap, 1);
                pending.events.absorb(&cap, data, |e, r| (e, r))
            });
            ctx_in.for_each_stamp(|cap, data| {
                retain_ports(&mut more, &cap, 1);
                pending.absorb_rows(&cap, data)
            });
            let limit = frontiers
                .iter()
                .filter_map(|f| f.frontier().iter().min().copied())
                .min();
            for (time, mut updates, mut events) in pending.ready_until(limit) {
                updates.sort_by(|a, b| (a.0.time(), a).cmp(&(b.0.time(), b)));
                // Decisions read only the regional state, so events of one time need no order
                // among themselves; the updates before each are applied by time.
                events.sort_by_key(|(e, _)| e.time);
                let letter = |reason: &str, detail: String, record: String, at: i64, location: String| DeadLetter {
                    stage: stage_name.clone(),
                    reason: reason.into(),
                    detail,
                    location,
                    record,
                    event_time: Some(at),
                    original: None,
                };
                let mut updates = updates.into_iter().peekable();
                // Rows the regional state cannot use, with their source's fields.
                let mut rejected: Vec<DeadLetter> = Vec::new();
                let mut apply = |regional: &mut Regional, (ctx, diff): (Ctx, isize)| {
                    if let Err((reason, detail)) = regional.apply(&ctx, diff) {
                        let (e, fields) = match &ctx {
                            Ctx::Load(e) => (e, &field_names[1]),
                            Ctx::Region(e) => (e, &field_names[2]),
                            Ctx::Forecast(..) | Ctx::Rates(..) => return,
                        };
                        if report && diff > 0 {
                            let record = e.json_text(&fields.0, &fields.1);
                            let location = format!("{} row at {}", e.kind, format_time(e.time));
                            rejected.push(letter(reason, detail, record, e.time, location));
                        }
                    }
                };
                for (event, diff) in events {
                    while updates.peek().is_some_and(|(c, _)| c.time() <= event.time) {
                        apply(&mut regional, updates.next().expect("peeked"));
                    }
                    match regional.route(&event) {
                        Ok(decision) => {
                            made.give(decision, time, diff);
                            made.send_if_full(&pending.events.caps, &mut sessions.0);
                        }
                        Err((reason, detail)) => {
                            let record = event.json_text(&field_names[0].0, &field_names[0].1);
                            let location = format!("{} event at {}", event.kind, format_time(event.time));
                            letters.give(letter(reason, detail, record, event.time, location), time, diff);
                        }
                    }
                }
                for update in updates {
                    apply(&mut regional, update);
                }
                for dead in rejected {
                    letters.give(dead, time, 1);
                }
                regional.settle(i64::MAX);
                // Every worker moves the same shards; one reports them.
                for row in std::mem::take(&mut regional.migrations) {
                    if report {
                        moves.give(row, time, 1);
                    }
                }
                if let (Some(replicas), true) = (replicas, report) {
                    for (row, diff) in regional.placement_changes(replicas) {
                        placed.give(row, time, diff);
                    }
                }
                regional.forget_before(time as i64);
            }
            made.send(&pending.events.caps, &mut sessions.0);
            moves.send(&more[0], &mut sessions.1);
            placed.send(&more[1], &mut sessions.2);
            letters.send(&more[2], &mut sessions.3);
            let hold = pending.next_time();
            pending.events.caps.downgrade(hold.iter());
            for caps in &mut more {
                caps.downgrade(hold.iter());
            }
        }
    });
    StageOut {
        main: Coll::Events(decisions.as_collection()),
        ports: vec![
            (crate::plan::Port::Migrations, Coll::Rows(migrations.as_collection())),
            (crate::plan::Port::Placement, Coll::Rows(placement.as_collection())),
        ],
        errs: vec![dead.as_collection()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::routing::{Health, Weights};

    fn plan() -> RouterPlan {
        RouterPlan {
            name: "decisions".into(),
            region_field: "region".into(),
            capacity_field: "capacity".into(),
            id: None,
            algorithm: "ring".into(),
            vnodes: 64,
            epsilon: 0.25,
            shards: 16,
            weights: Weights {
                latency: 1.0,
                headroom: 1.0,
                affinity: 1.0,
            },
            health: Health {
                latency_goal_ms: 100.0,
                queue_half: 10.0,
                yield_from: 80.0,
                yield_to: 95.0,
                max_boost: 2.0,
            },
            // Forecast rows: [region, metric, target_time, horizon, forecast, ...].
            forecast_columns: Some((0, 1)),
            migration: None,
            forecast_input: None,
            rates_input: None,
            replicas: None,
        }
    }

    fn row(time: i64, fields: &[(&str, Value)]) -> Event {
        let mut payload: Vec<(Sym, Value)> = fields.iter().map(|(k, v)| (Sym::new(k), v.clone())).collect();
        Event {
            time,
            kind: Sym::new("row"),
            payload: crate::value::sort_fields(&mut payload).into(),
        }
    }

    fn forecast_row(region: &str, metric: &str, target: i64, value: f64) -> Vec<Value> {
        vec![
            Value::str(region),
            Value::str(metric),
            Value::Time(target),
            Value::Int(1),
            Value::float(value),
        ]
    }

    #[test]
    fn cached_loads_equal_fresh_loads_at_every_time() {
        let mut r = Regional::new(plan());
        for (name, c) in [("eu", 100.0), ("us", 50.0)] {
            let row = row(0, &[("region", Value::str(name)), ("capacity", Value::float(c))]);
            r.apply(&Ctx::Region(row), 1).unwrap();
        }
        let names = r.placement().0.clone();
        let sample = row(5, &[("region", Value::str("us")), ("cpu", Value::float(40.0))]);
        r.apply(&Ctx::Load(sample), 1).unwrap();
        // Targets of different series at different steps, so the cache's spans are cut by both.
        for (region, metric, target, v) in [
            ("eu", "cpu", 60, 70.0),
            ("eu", "cpu", 120, 75.0),
            ("us", "cpu", 90, 20.0),
            ("us", "memory", 150, 30.0),
        ] {
            r.apply(&Ctx::Forecast(1, forecast_row(region, metric, target, v)), 1)
                .unwrap();
        }
        // Times in increasing order, as a tick's events come, across and on every target.
        for time in [0, 59, 60, 61, 89, 90, 91, 119, 120, 121, 149, 150, 151, 400] {
            r.refresh_loads(time);
            let cached = r.loads.as_ref().unwrap().2.clone();
            assert_eq!(cached, r.loads(&names, time), "at {time}");
        }
    }

    #[test]
    fn predictions_replace_observations_and_follow_retractions() {
        let mut r = Regional::new(plan());
        let region =
            |name: &str, c: f64| Ctx::Region(row(0, &[("region", Value::str(name)), ("capacity", Value::float(c))]));
        r.apply(&region("eu", 100.0), 1).unwrap();
        r.apply(&region("us", 0.0), 1).unwrap();
        let sample = row(
            5,
            &[
                ("region", Value::str("eu")),
                ("cpu", Value::float(40.0)),
                ("latency_ms", Value::Int(20)),
            ],
        );
        r.apply(&Ctx::Load(sample), 1).unwrap();
        let names = r.placement().0.clone();
        assert_eq!(names, ["eu"], "a region of capacity 0 is not available");
        assert_eq!(r.loads(&names, 10)[0].cpu, Some(40.0));

        // Two issues for target 60 and one for 120: the latest issue of the first target at or
        // after the time wins.
        r.apply(&Ctx::Forecast(10, forecast_row("eu", "cpu", 60, 70.0)), 1)
            .unwrap();
        r.apply(&Ctx::Forecast(20, forecast_row("eu", "cpu", 60, 75.0)), 1)
            .unwrap();
        r.apply(&Ctx::Forecast(20, forecast_row("eu", "cpu", 120, 90.0)), 1)
            .unwrap();
        let loads = r.loads(&names, 30);
        assert_eq!((loads[0].cpu, loads[0].latency_ms), (Some(75.0), Some(20.0)));
        assert_eq!(r.loads(&names, 61)[0].cpu, Some(90.0));
        assert_eq!(
            r.loads(&names, 121)[0].cpu,
            Some(40.0),
            "no target left: the observation"
        );
        // A retracted forecast no longer counts.
        r.apply(&Ctx::Forecast(20, forecast_row("eu", "cpu", 60, 75.0)), -1)
            .unwrap();
        assert_eq!(r.loads(&names, 30)[0].cpu, Some(70.0));
        // Targets passed are forgotten, and their retractions ignored.
        r.forget_before(100);
        r.apply(&Ctx::Forecast(10, forecast_row("eu", "cpu", 60, 70.0)), -1)
            .unwrap();
        assert_eq!(r.loads(&names, 100)[0].cpu, Some(90.0));
        // A metric the router does not read is ignored.
        r.apply(&Ctx::Forecast(20, forecast_row("eu", "disk", 60, 1.0)), 1)
            .unwrap();
    }

    /// A router over regions `a` and `b` (capacity 100) that migrates on `load` every minute,
    /// one shard at a time, with no sustain and no cool-downs.
    fn migrating(load: MigrationLoad, window_ms: u64) -> Regional {
        let mut p = plan();
        p.migration = Some(crate::plan::router::MigrationPlan {
            interval_ms: 60_000,
            window_ms,
            metric: 0,
            load,
            config: crate::model::migration::MigrationConfig {
                imbalance: 0.2,
                hysteresis: 0.1,
                sustain_ms: 0,
                max_moves: 1,
                cooldown_ms: 0,
                region_cooldown_ms: 0,
            },
        });
        let mut r = Regional::new(p);
        for name in ["a", "b"] {
            let row = row(0, &[("region", Value::str(name)), ("capacity", Value::float(100.0))]);
            r.apply(&Ctx::Region(row), 1).unwrap();
        }
        r
    }

    #[test]
    fn migration_compares_forecast_or_observed_load_as_planned() {
        for (forecast, hot) in [(false, "a"), (true, "b")] {
            let load = if forecast {
                MigrationLoad::Forecast
            } else {
                MigrationLoad::Observed
            };
            let mut r = migrating(load, 60_000);
            // Observed: a hot, b cold. Forecast for the next step: the other way round.
            for (name, observed, predicted) in [("a", 90.0, 20.0), ("b", 20.0, 90.0)] {
                let sample = row(1, &[("region", Value::str(name)), ("cpu", Value::float(observed))]);
                r.apply(&Ctx::Load(sample), 1).unwrap();
                r.apply(&Ctx::Forecast(1, forecast_row(name, "cpu", 60_000, predicted)), 1)
                    .unwrap();
            }
            // The hot region's shards send 10 events, the other's 1 (so it has routed room).
            let (names, homes) = r.placement().clone();
            for shard in 0..16 {
                let count = if names[homes[shard] as usize] == hot { 10 } else { 1 };
                r.apply(&Ctx::Rates(60_000, shard as u64, count), 1).unwrap();
            }
            r.settle(i64::MAX);
            assert_eq!(r.migrations.len(), 1, "forecast {forecast}");
            assert_eq!(r.migrations[0][2], Value::str(hot), "forecast {forecast}");
        }
    }

    #[test]
    fn routed_load_moves_shards_off_the_region_that_routes_the_most_per_capacity() {
        let mut r = migrating(MigrationLoad::Routed, 120_000);
        // Equal cpu: observed load would move nothing. Routed: a's shards send 4 events per
        // interval each, b's 1.
        for name in ["a", "b"] {
            let sample = row(1, &[("region", Value::str(name)), ("cpu", Value::float(50.0))]);
            r.apply(&Ctx::Load(sample), 1).unwrap();
        }
        let (names, homes) = r.placement().clone();
        let a = names.iter().position(|n| n == "a").unwrap() as u32;
        let count = |shard: usize| if homes[shard] == a { 4 } else { 1 };
        for end in [60_000, 120_000] {
            for shard in 0..16 {
                r.apply(&Ctx::Rates(end, shard as u64, count(shard)), 1).unwrap();
            }
        }
        r.settle(i64::MAX);
        assert_eq!(r.migrations.len(), 1);
        let m = &r.migrations[0];
        assert_eq!((&m[2], &m[3]), (&Value::str("a"), &Value::str("b")));
        assert!(m[4].to_string().starts_with("routed"), "{}", m[4]);
        // Over the two-interval window, a routes 4 per shard against 1: its load against the
        // mean is 100 × (4 n_a / (4 n_a + n_b)) × 2 (equal capacities).
        let n_a = homes.iter().filter(|h| **h == a).count() as f64;
        let expected = 100.0 * 4.0 * n_a / (4.0 * n_a + (16.0 - n_a)) * 2.0;
        assert_eq!(m[5], Value::float(expected));
    }

    #[test]
    fn bad_rows_say_why() {
        let mut r = Regional::new(plan());
        let sample = row(5, &[("region", Value::str("eu")), ("cpu", Value::float(40.0))]);
        assert_eq!(r.apply(&Ctx::Load(sample.clone()), 1).unwrap_err().0, "unknown_region");
        let region = row(0, &[("region", Value::str("eu")), ("capacity", Value::str("big"))]);
        assert_eq!(r.apply(&Ctx::Region(region), 1).unwrap_err().0, "non_numeric");
        let region = row(0, &[("region", Value::Int(3)), ("capacity", Value::float(1.0))]);
        assert_eq!(r.apply(&Ctx::Region(region), 1).unwrap_err().0, "unknown_region");
        let region = row(0, &[("region", Value::str("eu")), ("capacity", Value::float(1.0))]);
        r.apply(&Ctx::Region(region), 1).unwrap();
        let sample = row(
            5,
            &[
                ("region", Value::str("eu")),
                ("cpu", Value::str("ERR")),
                ("memory", Value::Int(3)),
            ],
        );
        assert_eq!(r.apply(&Ctx::Load(sample), 1).unwrap_err().0, "non_numeric");
        assert_eq!(
            r.ids.get("eu").and_then(|&i| r.observed[i][1]),
            Some((3.0, 5)),
            "the other metrics were used"
        );
        // No metadata: a dead letter.
        let event = row(9, &[("shard_id", Value::Int(1))]);
        assert_eq!(r.route(&event).unwrap_err().0, "invalid_metadata");
    }
}
