//! Service-interaction models: an interaction log `Collection<Event>` (time, sequence id,
//! source and target service, kind, bytes, latency) → `NAME_hops` (each call scored by the
//! model before it), `NAME_selection`, `NAME_transitions`, `NAME_predictions`,
//! `NAME_resonance`, `NAME_pipes` (changelogs), `NAME_pipe_events` and dead letters.
//!
//! ```text
//!  interactions ──parse──► Interaction ──(exchange to worker 0)──► ServiceModel ──► one output per collection
//!                   └──► dead letters (unknown_kind, self_loop, missing_id,
//!                                      negative_latency, invalid_interaction)
//! ```
//!
//! Times are event-time ticks. The model holds every sequence, pair and pipe, so all of it
//! runs on one worker (the parsing runs on all): its outputs are the same for any number of
//! workers. Each tick's interactions wait until the input frontier has passed the tick, then
//! apply in a canonical order ([`state::ServiceState::tick`]); timers (idle pipes, ended
//! sequences) fire at their own times, with a capability held for the earliest.

pub mod state;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use differential_dataflow::AsCollection;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::CapabilitySet;

use crate::dead_letter::DeadLetter;
use crate::event::Event;
use crate::plan::services::{ServicesPlan, OUTPUTS};
use crate::plan::Port;
use crate::render::fan_out::{fan_out, Fan};
use crate::render::pending::{retain_ports, Batch, Pending, UpdateBuilder};
use crate::render::{Coll, EventsOf, StageOut};
use crate::value::Value;
use state::{Emitted, Interaction, Kind, ServiceState};

/// Reads one interaction row; `Err((reason, detail))` for a row the model cannot use.
pub fn parse(plan: &ServicesPlan, e: &Event) -> Result<Interaction, (&'static str, String)> {
    let text = |v: Option<Value>, what: &str| -> Result<Arc<str>, (&'static str, String)> {
        match v {
            Some(Value::Str(s)) if !s.is_empty() => Ok(s),
            Some(Value::Int(i)) if what == "sequence id" => Ok(i.to_string().into()),
            None | Some(Value::Null) if what == "sequence id" => Err(("missing_id", "no sequence id".into())),
            other => Err((
                "invalid_interaction",
                format!("{what} is {}", other.map_or("missing", |v| v.kind_name())),
            )),
        }
    };
    let sequence = text(plan.sequence.get(e), "sequence id")?;
    let kind_text = text(plan.kind.get(e), "kind")?;
    let Some(kind) = Kind::parse(&kind_text) else {
        return Err((
            "unknown_kind",
            format!("kind `{kind_text}` is not pipe_created, data_transmitted, processed or error"),
        ));
    };
    let source = text(plan.source.get(e), "source")?;
    let target = text(plan.target.get(e), "target")?;
    if source == target {
        return Err(("self_loop", format!("`{source}` calls itself")));
    }
    let number = |v: Option<Value>| match v {
        None | Some(Value::Null) => Some(0.0),
        Some(v) => v.as_f64(),
    };
    let bytes = match number(plan.bytes.get(e)) {
        Some(b) if b >= 0.0 && b.is_finite() => b as u64,
        _ => return Err(("invalid_interaction", "bytes is not a non-negative number".into())),
    };
    let latency = match number(plan.latency.get(e)) {
        Some(l) if l < 0.0 => return Err(("negative_latency", format!("latency {l} ms is negative"))),
        Some(l) if l.is_finite() => l,
        _ => return Err(("invalid_interaction", "latency is not a number".into())),
    };
    Ok(Interaction {
        time: e.time,
        sequence,
        source,
        target,
        kind,
        bytes,
        latency_bits: (latency + 0.0).to_bits(),
    })
}

/// The services stage over `events`, whose time and type fields are `fields`.
pub fn stage<'s>(events: EventsOf<'s>, plan: &ServicesPlan, fields: (&str, &str)) -> StageOut<'s> {
    let stage_name = format!("services:{}", plan.name);
    let (time_field, type_field) = (fields.0.to_string(), fields.1.to_string());
    let p = plan.clone();
    // Interactions out of the first output, dead letters out of the third (no counters).
    let (interactions, _, rejected) = fan_out(
        events,
        &format!("ServicesParse({})", plan.name),
        move |e: Event, fan: &mut Fan<Interaction, (), DeadLetter>| match parse(&p, &e) {
            Ok(interaction) => fan.a.push(interaction),
            Err((reason, detail)) => fan.c.push(DeadLetter::of_event(
                &stage_name,
                reason,
                detail,
                &e,
                (&time_field, &type_field),
            )),
        },
    );
    let mut model = ServiceState::new(plan.clone());
    // One output per collection, in `OUTPUTS`' order (which `Out`'s variants keep).
    let mut builder = OperatorBuilder::new(format!("ServiceModel({})", plan.name), interactions.inner.scope());
    let mut input = builder.new_input(interactions.inner, Exchange::new(|_: &(Interaction, u64, isize)| 0));
    let (mut outputs, streams): (Vec<_>, Vec<_>) = (0..OUTPUTS.len())
        .map(|_| {
            let (output, stream) = builder.new_output();
            (OutputBuilder::<u64, UpdateBuilder<Vec<Value>>>::from(output), stream)
        })
        .unzip();
    builder.build(move |_initial| {
        // `pending.caps` holds the first output's capabilities, `more` the others'.
        let mut pending: Pending<(Interaction, isize)> = Pending::default();
        let mut more: Vec<CapabilitySet<u64>> = (1..OUTPUTS.len()).map(|_| CapabilitySet::new()).collect();
        let mut batches: Vec<Batch<Vec<Value>>> = (0..OUTPUTS.len()).map(|_| Batch::default()).collect();
        let mut out: Emitted = Vec::new();
        move |frontiers| {
            let mut sessions: Vec<_> = outputs.iter_mut().map(|o| o.activate()).collect();
            input.for_each_stamp(|cap, data| {
                retain_ports(&mut more, &cap, 1);
                pending.absorb(&cap, data, |i, r| (i, r))
            });
            let (ready, limit) = pending.ready(&frontiers[0]);
            for (time, updates) in ready {
                let mut items = Vec::new();
                for (item, diff) in updates {
                    // Log rows are never retracted; a copy counts as often as it came.
                    for _ in 1..diff {
                        items.push(item.clone());
                    }
                    if diff > 0 {
                        items.push(item);
                    }
                }
                model.tick(time, items, &mut out);
            }
            model.fire_before(limit.map(|l| l as i64), &mut out);
            // Each row to its collection's output, in one message per output at its least
            // time (see `pending::Batch`).
            for (t, o, d) in out.drain(..) {
                let (part, row) = o.into_part();
                batches[part].give(row, t, d);
            }
            for (part, (batch, session)) in batches.iter_mut().zip(&mut sessions).enumerate() {
                batch.send(if part == 0 { &pending.caps } else { &more[part - 1] }, session);
            }
            let hold = [pending.next_time(), model.next_timer()].into_iter().flatten().min();
            pending.caps.downgrade(hold.iter());
            for caps in &mut more {
                caps.downgrade(hold.iter());
            }
        }
    });
    let ports: Vec<(Port, Coll<'s>)> = OUTPUTS
        .iter()
        .zip(streams)
        .map(|((suffix, _, _), part)| (Port::Model(suffix), Coll::Rows(part.as_collection())))
        .collect();
    StageOut {
        main: ports[0].1.clone(),
        ports,
        errs: vec![rejected],
    }
}
