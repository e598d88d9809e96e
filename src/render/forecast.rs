//! Load forecasts: `events: Collection<Event>` (insert-only) → `forecasts: Collection<row>`
//! and `errors: Collection<row>`, plus dead letters, each an output of the one forecasting
//! operator. The maths is `crate::model::forecast`; this file only feeds it in event-time order.
//!
//! ```text
//!  events ──► samples (per event: key × value field) ──(exchange by series)──► forecast
//!   (Event, t, +1)  └──► dead letters (non_numeric,       state per series: Resampler,
//!                        missing_key, unknown_key)        SeriesForecaster, rows shown
//! ```
//!
//! Time semantics:
//! - Samples are applied one timestamp at a time, in time order, once the frontier (the
//!   watermark) has passed that time, so outputs do not depend on batching or worker count.
//! - A series' bin `[s, s + step)` closes when the frontier reaches its end (or when the input
//!   ends). Its value, and the bins of a gap before it, enter the models, which issue the next
//!   `horizon` steps. Everything a closing bin produces is stamped at that bin's end.
//! - `updates`: the output holds each series' current forecast; a closing bin retracts the rows
//!   it supersedes and inserts the new ones. `final`: every issued forecast is written once,
//!   one per closed bin (`issued_at` tells them apart).
//! - `NAME_errors` receives, as each bin closes, the realized error of every earlier forecast
//!   that targeted it, per model and for the ensemble (none for bins the gap rule made up).
//! - The operator holds capabilities for pending times and for the earliest open bin's end.
//! - An activation makes at most [`FUEL`] updates: a step that closes many series' bins is
//!   closed over several activations, in the same order and with the same stamps, the operator
//!   activating itself and owing the worker's [`Backlog`] meanwhile (see `render::pending`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use differential_dataflow::{AsCollection, VecCollection};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::{Operator, OutputBuilder};
use timely::dataflow::operators::CapabilitySet;

use crate::dead_letter::DeadLetter;
use crate::event::Event;
use crate::model::forecast::series::{Bin, SampleFlag};
use crate::model::forecast::{Member, NameKey, Obs, Resampler, SeriesForecaster, Used};
use crate::plan::{Emit, ForecastPlan, Port};
use crate::render::pending::{retain_ports, Backlog, Batch, Pending, UpdateBuilder};
use crate::render::{Coll, DeadOf, RowsOf, StageOut};
use crate::value::{format_time, shared_str, stable_hash, Value};

/// One sample of one series.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Sample {
    key: Vec<Value>,
    /// Index into the plan's `values`.
    metric: u32,
    time: i64,
    value: f64,
    /// The event, for a dead letter should the sample be rejected.
    record: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
enum PreOut {
    Sample(Sample),
    Dead(Box<DeadLetter>),
}

/// Updates one activation of the forecasting operator makes before it yields (see [`Backlog`]).
/// A step that closes a thousand series' bins makes about 100,000. The rows an activation makes
/// reach the operators after it (the sinks, which drop or encode them) only once it yields, so
/// this bounds the rows in flight: about 400 KB at 1,024, which stay in cache and whose memory
/// is reused while it is still there. At 16,384 (6.5 MB in flight) the forecast bench's `sluice
/// run` took 1.08-1.16x as long.
pub const FUEL: usize = 1024;

/// What the forecasting operator has made and not sent yet, one buffer per output: each is
/// sent straight to its collection, so a row is moved once between the operator and its sink.
#[derive(Default)]
struct Made {
    forecasts: Batch<Vec<Value>>,
    errors: Batch<Vec<Value>>,
    dead: Batch<DeadLetter>,
}

impl Made {
    /// Updates made before they are sent (see [`Batch::SEND_AT`]). Every sample makes about a
    /// hundred (forecasts retracted and issued, and realized errors), so a timestamp of a
    /// thousand series makes 100,000: held until the timestamp is done, the buffers would grow
    /// to tens of megabytes, written out of cache and read back to be sent.
    const SEND_AT: usize = Batch::<()>::SEND_AT;

    fn len(&self) -> usize {
        self.forecasts.len() + self.errors.len() + self.dead.len()
    }

    fn send_if_full(&mut self, send: &mut impl FnMut(&mut Made)) {
        if self.len() >= Self::SEND_AT {
            send(self);
        }
    }
}

type SeriesKey = (Vec<Value>, u32);

/// One series' state.
struct Series {
    resampler: Resampler,
    model: SeriesForecaster,
    /// End of the open bin, if any.
    open_end: Option<i64>,
    /// The rows of the current forecast in the output (`updates`).
    shown: Vec<Vec<Value>>,
    /// The names of its mixes of models, per horizon.
    names: MixNames,
    /// The name of its metric, as rows show it.
    metric: Value,
}

/// The names of a series' mixes of models (`ets 0.62 + ar 0.38`), one per horizon, by
/// [`Used::name_key`]: a horizon's weights move a little with every sample, but its name,
/// rounded to hundredths, mostly does not, so it is formatted only when it changes. (Each
/// horizon has its own weights, so one cache shared by the horizons would be overwritten by
/// them in turn.)
#[derive(Default)]
struct MixNames {
    by_horizon: Vec<Option<(NameKey, Value)>>,
}

impl MixNames {
    /// The name of horizon `h`'s (from 0) mix `used`.
    fn name(&mut self, h: usize, used: &Used, text: &mut String) -> Value {
        text.clear();
        let Some(key) = used.name_key() else {
            write!(text, "{used}").expect("writing to a string");
            return shared_str(text);
        };
        if self.by_horizon.len() <= h {
            self.by_horizon.resize(h + 1, None);
        }
        match &mut self.by_horizon[h] {
            Some((k, name)) if *k == key => name.clone(),
            slot => {
                key.write_name(text);
                let name = shared_str(text);
                *slot = Some((key, name.clone()));
                name
            }
        }
    }
}

/// A forecast in the plan's graph: forecasts as its main collection, realized errors as a port.
/// `fields` are the input events' time and type field names.
pub fn stage<'s>(
    events: VecCollection<'s, u64, Event, isize>,
    plan: &ForecastPlan,
    fields: (&str, &str),
    backlog: &Backlog,
) -> StageOut<'s> {
    let samples = samples(events, plan, fields);
    let (forecasts, errors, dead) = forecast(samples, plan, backlog);
    StageOut {
        main: Coll::Rows(forecasts),
        ports: vec![(Port::Errors, Coll::Rows(errors))],
        errs: vec![dead],
    }
}

/// A new series' forecaster. Its refit phase is the hash of the series key and metric (the
/// one that sends its samples to a worker), so that series refit, and search, at different
/// steps, the same ones on every worker and in every run.
pub fn series_forecaster(plan: &ForecastPlan, key: &[Value], metric: u32) -> SeriesForecaster {
    SeriesForecaster::new(plan.config.clone())
        .expect("validation checked the forecast's settings")
        .with_phase(stable_hash(&(key, metric)))
}

fn letter(plan: &ForecastPlan, reason: &str, detail: String, time: i64, record: String) -> DeadLetter {
    DeadLetter {
        stage: format!("forecast:{}", plan.name),
        reason: reason.to_string(),
        detail,
        location: format!("sample at {}", format_time(time)),
        record,
        event_time: Some(time),
        original: None,
    }
}

/// Splits each event into one sample per value field; a value that is not a number is a dead
/// letter `non_numeric`, a missing key field `missing_key`, a key value outside the spec's
/// `allowed` ones `unknown_key` (one letter per event). An absent or null value is no sample.
fn samples<'s>(
    events: VecCollection<'s, u64, Event, isize>,
    plan: &ForecastPlan,
    fields: (&str, &str),
) -> timely::dataflow::StreamVec<'s, u64, (PreOut, u64, isize)> {
    let plan = plan.clone();
    let (time_field, type_field) = (fields.0.to_string(), fields.1.to_string());
    let name = format!("ForecastSamples({})", plan.name);
    events
        .inner
        .unary::<UpdateBuilder<PreOut>, _, _, _>(Pipeline, &name, move |_, _| {
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let mut out = Vec::new();
                    for batch in data {
                        for (event, time, diff) in batch.drain(..) {
                            assert!(
                                diff > 0,
                                "a retraction reached forecast `{}`: validation admits only insert-only inputs",
                                plan.name
                            );
                            let record = || event.json_text(&time_field, &type_field);
                            let key: Vec<Value> = plan
                                .keys
                                .iter()
                                .map(|(_, a)| a.get(&event).unwrap_or(Value::Null))
                                .collect();
                            if let Some(((name, _), _)) = plan.keys.iter().zip(&key).find(|(_, v)| v.is_null()) {
                                let detail = format!("key field `{name}` is missing or null");
                                out.push((
                                    PreOut::Dead(Box::new(letter(&plan, "missing_key", detail, event.time, record()))),
                                    time,
                                    diff,
                                ));
                                continue;
                            }
                            if let Some(detail) = unknown_key(&plan, &key) {
                                out.push((
                                    PreOut::Dead(Box::new(letter(&plan, "unknown_key", detail, event.time, record()))),
                                    time,
                                    diff,
                                ));
                                continue;
                            }
                            for (m, (name, accessor)) in plan.values.iter().enumerate() {
                                let value = match accessor.get(&event) {
                                    None | Some(Value::Null) => continue,
                                    Some(Value::Int(i)) => i as f64,
                                    Some(Value::Float(f)) => f.get(),
                                    Some(other) => {
                                        let detail =
                                            format!("`{name}` is {} `{other}`, not a number", other.kind_name());
                                        out.push((
                                            PreOut::Dead(Box::new(letter(
                                                &plan,
                                                "non_numeric",
                                                detail,
                                                event.time,
                                                record(),
                                            ))),
                                            time,
                                            diff,
                                        ));
                                        continue;
                                    }
                                };
                                let sample = Sample {
                                    key: key.clone(),
                                    metric: m as u32,
                                    time: event.time,
                                    value,
                                    record: String::new(),
                                };
                                let sample = if value.is_finite() {
                                    sample
                                } else {
                                    Sample {
                                        record: record(),
                                        ..sample
                                    }
                                };
                                out.push((PreOut::Sample(sample), time, diff));
                            }
                        }
                    }
                    output.session(&cap).give_iterator(out.into_iter());
                });
            }
        })
}

/// Why `key` is refused, when one of its fields is outside the spec's `allowed` values.
fn unknown_key(plan: &ForecastPlan, key: &[Value]) -> Option<String> {
    plan.allowed.iter().find_map(|(i, known)| {
        let value = &key[*i];
        if known.binary_search(value).is_ok() {
            return None;
        }
        let listed: Vec<String> = known.iter().take(8).map(|v| format!("`{v}`")).collect();
        let more = if known.len() > 8 { ", …" } else { "" };
        Some(format!(
            "`{}` = `{value}` is not an allowed value ({}{more})",
            plan.keys[*i].0,
            listed.join(", ")
        ))
    })
}

/// The forecasting operator (see the module doc): forecasts, realized errors and dead
/// letters, each on its own output.
fn forecast<'s>(
    samples: timely::dataflow::StreamVec<'s, u64, (PreOut, u64, isize)>,
    plan: &ForecastPlan,
    backlog: &Backlog,
) -> (RowsOf<'s>, RowsOf<'s>, DeadOf<'s>) {
    let plan = plan.clone();
    let exchange = Exchange::new(|(p, _, _): &(PreOut, u64, isize)| match p {
        PreOut::Sample(s) => stable_hash(&(&s.key, s.metric)),
        PreOut::Dead(d) => stable_hash(&d.record),
    });
    let mut builder = OperatorBuilder::new(format!("Forecast({})", plan.name), samples.scope());
    let activator = samples.scope().activator_for(builder.operator_info().address);
    let mut debtor = backlog.debtor();
    let mut input = builder.new_input(samples, exchange);
    let (forecasts_out, forecasts) = builder.new_output();
    let (errors_out, errors) = builder.new_output();
    let (dead_out, dead) = builder.new_output();
    let mut outputs = (
        OutputBuilder::<u64, UpdateBuilder<Vec<Value>>>::from(forecasts_out),
        OutputBuilder::<u64, UpdateBuilder<Vec<Value>>>::from(errors_out),
        OutputBuilder::<u64, UpdateBuilder<DeadLetter>>::from(dead_out),
    );
    builder.build(move |_initial| {
        let mut pending: Pending<(PreOut, isize)> = Pending::default();
        // Capabilities for the errors and dead-letter outputs (`pending` holds the forecasts').
        let mut more = [CapabilitySet::new(), CapabilitySet::new()];
        let mut series: BTreeMap<SeriesKey, Series> = BTreeMap::new();
        // Open bins by end, so closing them does not visit every series.
        let mut opens: BTreeMap<i64, BTreeSet<SeriesKey>> = BTreeMap::new();
        // Output made but not sent yet (a few series' worth), its buffers reused.
        let mut made = Made::default();
        move |frontiers| {
            let frontier = &frontiers[0];
            let mut sessions = (outputs.0.activate(), outputs.1.activate(), outputs.2.activate());
            input.for_each_stamp(|cap, data| {
                retain_ports(&mut more, &cap, 1);
                pending.absorb(&cap, data, |p, r| (p, r))
            });
            let (ready, limit) = pending.ready(frontier);
            let caps = [&pending.caps, &more[0], &more[1]];
            // Sends what is made, so that it is moved on while it is still in cache.
            let mut send = |made: &mut Made| {
                made.forecasts.send(caps[0], &mut sessions.0);
                made.errors.send(caps[1], &mut sessions.1);
                made.dead.send(caps[2], &mut sessions.2);
            };
            // What this activation may make; what is left waits for the next one.
            let mut fuel = FUEL;
            let mut done = true;
            let mut ready = ready.into_iter();
            // The times this activation leaves for the next one.
            let mut left = Vec::new();
            while let Some((time, updates)) = ready.next() {
                // Bins that end by `time` close before samples at `time` arrive.
                if !close(
                    &plan,
                    &mut series,
                    &mut opens,
                    Some(time as i64),
                    &mut made,
                    &mut send,
                    &mut fuel,
                ) {
                    done = false;
                    left.push((time, updates));
                    left.extend(ready);
                    break;
                }
                let mut batch: Vec<(Sample, isize)> = Vec::new();
                for (p, r) in updates {
                    match p {
                        PreOut::Dead(d) => made.dead.give(*d, time, r),
                        PreOut::Sample(s) => batch.push((s, r)),
                    }
                }
                batch.sort_by(|(a, _), (b, _)| {
                    (&a.key, a.metric, a.time)
                        .cmp(&(&b.key, b.metric, b.time))
                        .then(a.value.total_cmp(&b.value))
                });
                for (sample, copies) in batch {
                    let id = (sample.key.clone(), sample.metric);
                    let s = series.entry(id.clone()).or_insert_with(|| Series {
                        resampler: Resampler::new(plan.step_ms as i64, plan.aggregation, plan.gap),
                        model: series_forecaster(&plan, &id.0, id.1),
                        open_end: None,
                        shown: Vec::new(),
                        names: MixNames::default(),
                        metric: shared_str(&plan.values[id.1 as usize].0),
                    });
                    for _ in 0..copies {
                        let mut bins = Vec::new();
                        if let Err(reason) = s.resampler.push(sample.time, sample.value, &mut bins) {
                            let (metric, _) = &plan.values[sample.metric as usize];
                            let detail = format!("`{metric}` = {}: {reason}", sample.value);
                            let record = if sample.record.is_empty() {
                                format!("{{\"{metric}\":{}}}", sample.value)
                            } else {
                                sample.record.clone()
                            };
                            let d = letter(&plan, reason.code(), detail, sample.time, record);
                            made.dead.give(d, time, 1);
                        }
                        // Bins close only by the frontier (see `close`), except past a
                        // gap inside one timestamp; those are stamped now.
                        emit(&plan, &id, s, bins, time, &mut made);
                        made.send_if_full(&mut send);
                    }
                    let step = plan.step_ms as i64;
                    let end = (sample.time.div_euclid(step) + 1) * step;
                    if s.open_end != Some(end) {
                        if let Some(old) = s.open_end.replace(end) {
                            if let Some(set) = opens.get_mut(&old) {
                                set.remove(&id);
                            }
                        }
                        opens.entry(end).or_default().insert(id);
                    }
                }
            }
            if done {
                let until = limit.map(|l| l as i64);
                done = close(&plan, &mut series, &mut opens, until, &mut made, &mut send, &mut fuel);
            }
            send(&mut made);
            for (time, updates) in left {
                pending.restore(time, updates);
            }
            if !done {
                activator.activate();
            }
            debtor.set(!done);
            opens.retain(|_, set| !set.is_empty());
            let mut hold = pending.next_time();
            if let Some(end) = opens.keys().next() {
                let end = *end as u64;
                hold = Some(hold.map_or(end, |h| h.min(end)));
            }
            pending.caps.downgrade(hold.iter());
            for caps in &mut more {
                caps.downgrade(hold.iter());
            }
        }
    });
    (forecasts.as_collection(), errors.as_collection(), dead.as_collection())
}

/// Closes the open bins that end at or before `until` (every one when `None`: the input ended),
/// in order of their end and series; each one's output is stamped at its end. Stops once what
/// it made uses up `fuel`, and says whether it closed them all: the bins left stay in `opens`
/// for the next activation.
fn close(
    plan: &ForecastPlan,
    series: &mut BTreeMap<SeriesKey, Series>,
    opens: &mut BTreeMap<i64, BTreeSet<SeriesKey>>,
    until: Option<i64>,
    made: &mut Made,
    send: &mut impl FnMut(&mut Made),
    fuel: &mut usize,
) -> bool {
    while let Some(mut entry) = opens.first_entry() {
        let end = *entry.key();
        if until.is_some_and(|u| end > u) {
            break;
        }
        while let Some(id) = entry.get_mut().pop_first() {
            if *fuel == 0 {
                entry.get_mut().insert(id);
                return false;
            }
            let s = series.get_mut(&id).expect("an open bin has a series");
            let mut bins = Vec::new();
            match until {
                Some(_) => s.resampler.advance(end, &mut bins),
                None => s.resampler.finish(&mut bins),
            }
            s.open_end = None;
            let before = made.len();
            emit(plan, &id, s, bins, end as u64, made);
            *fuel = fuel.saturating_sub(made.len() - before);
            made.send_if_full(send);
        }
        entry.remove();
    }
    true
}

/// Feeds closed bins to the series' models and writes what they give, stamped `at`.
fn emit(plan: &ForecastPlan, id: &SeriesKey, s: &mut Series, bins: Vec<Bin>, at: u64, made: &mut Made) {
    let Some(last) = bins.last().map(|b| b.time) else {
        return;
    };
    let step = plan.step_ms as i64;
    // The members' names as values, looked up once per call rather than once per error row.
    let mut members: Vec<(Member, Value)> = Vec::new();
    for bin in &bins {
        // After a gap longer than the training window the series starts again: its models
        // would have seen nothing but carried values (see `GapRule::max_fill`).
        if bin.flag == SampleFlag::Restarted {
            s.model = series_forecaster(plan, &id.0, id.1);
        }
        let obs = Obs {
            y: bin.value,
            x: &[],
            imputed: bin.flag.imputed(),
            future_x: &[],
        };
        let step_errors = match s.model.observe(obs) {
            Ok(step) => step.errors,
            Err(e) => {
                let (metric, _) = &plan.values[id.1 as usize];
                let d = letter(plan, e.reason(), format!("`{metric}`: {e}"), bin.time, String::new());
                made.dead.give(d, at, 1);
                continue;
            }
        };
        let scale = s.model.scale();
        for e in step_errors {
            let h = e.horizon as i64;
            let mut row = Vec::with_capacity(id.0.len() + 13);
            row.extend_from_slice(&id.0);
            row.extend([
                s.metric.clone(),
                member_value(&mut members, e.member),
                Value::Int(h),
                Value::Time(bin.time - h * step + step),
                Value::Time(bin.time),
                number(e.forecast.mean),
                number(e.actual),
                number(e.error()),
                number(e.forecast.lo80),
                number(e.forecast.hi80),
                number(e.forecast.lo95),
                number(e.forecast.hi95),
                number(scale),
            ]);
            made.errors.give(row, at, 1);
        }
        if plan.emit == Emit::Final {
            for row in rows(plan, id, s, bin.time) {
                made.forecasts.give(row, at, 1);
            }
        }
    }
    if plan.emit == Emit::Updates {
        let now = rows(plan, id, s, last);
        for row in std::mem::take(&mut s.shown) {
            made.forecasts.give(row, at, -1);
        }
        for row in &now {
            made.forecasts.give(row.clone(), at, 1);
        }
        s.shown = now;
    }
}

/// The rows of a series' current forecast, issued after the bin at `last`.
fn rows(plan: &ForecastPlan, id: &SeriesKey, s: &mut Series, last: i64) -> Vec<Vec<Value>> {
    let step = plan.step_ms as i64;
    let Series {
        model, names, metric, ..
    } = s;
    let issued = model.issued();
    let mut text = String::new();
    // The horizons of one forecast mostly share their mix of models.
    let mut named: Option<(&Used, Value)> = None;
    issued
        .points
        .iter()
        .zip(&issued.used)
        .enumerate()
        .map(|(i, (p, used))| {
            let h = i as i64 + 1;
            let name = match &named {
                Some((prev, name)) if *prev == used => name.clone(),
                _ => {
                    let name = names.name(i, used, &mut text);
                    named = Some((used, name.clone()));
                    name
                }
            };
            let mut row = Vec::with_capacity(id.0.len() + 10);
            row.extend_from_slice(&id.0);
            row.extend([
                metric.clone(),
                Value::Time(last + h * step),
                Value::Int(h),
                number(p.mean),
                number(p.lo80),
                number(p.hi80),
                number(p.lo95),
                number(p.hi95),
                name,
                Value::Time(last + step),
            ]);
            row
        })
        .collect()
}

/// `member`'s name as a value, from `names` (a handful of entries) or added to it. Names (of
/// metrics, models and mixes of models) are shared values (`value::shared_str`): every sample
/// makes dozens of rows that name them.
fn member_value(names: &mut Vec<(Member, Value)>, member: Member) -> Value {
    if let Some((_, v)) = names.iter().find(|(m, _)| *m == member) {
        return v.clone();
    }
    let v = shared_str(member.name());
    names.push((member, v.clone()));
    v
}

/// A float column's value; NaN (a bound not known yet) is null.
fn number(x: f64) -> Value {
    if x.is_finite() {
        Value::float(x)
    } else {
        Value::Null
    }
}
