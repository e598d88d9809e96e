//! Routing metadata: `events: Collection<Event>` → the same events with `priority`,
//! `complexity`, `shard_key` and `shard_id` set, plus counters and dead letters. A pure function
//! of each event, applied where the event is (no exchange); times are unchanged.
//!
//! For `priority` (1–10, 1 highest) and `complexity` (1–5, 1 simplest):
//! - the value expression is evaluated; when it is null (the field is missing), the default
//!   expression is, and `metadata_defaults` counts it under the field's name;
//! - a value present but out of range or of the wrong type follows the stage's policy:
//!   - `clamp`: a number is rounded and clamped into range (`metadata_clamped`); any other value
//!     (a string, a non-finite number, an expression error) takes the default
//!     (`metadata_invalid`);
//!   - `dead_letter`: the event is a dead letter `invalid_metadata` naming the field and value.
//!
//! A default that is itself null or invalid is a dead letter under either policy: no value
//! would be right. The shard key is any non-null value (its default applies when it is null);
//! `shard_id` is its stable hash ([`crate::value::stable_hash`], ints and floats hashing by
//! value) modulo the number of shards, so it does not depend on the worker, the run or the
//! platform. An event with no shard key is a dead letter.

use differential_dataflow::VecCollection;

use crate::dead_letter::DeadLetter;
use crate::event::Event;
use crate::plan::metadata::{InvalidMetadata, MetaField, MetadataPlan};
use crate::plan::Port;
use crate::render::enrich::Counter;
use crate::render::fan_out::fan_out;
use crate::render::{Coll, StageOut};
use crate::value::{format_time, stable_hash, Sym, Value};

/// Why an event gets no metadata: the dead letter's detail.
type Reject = String;

/// An event with its metadata set, and what each field counted.
type Decided = (Event, Vec<(&'static str, Applied)>);

/// What a field's value counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Default,
    Clamped,
    Invalid,
}

impl Applied {
    fn metric(self) -> &'static str {
        match self {
            Applied::Default => "metadata_defaults",
            Applied::Clamped => "metadata_clamped",
            Applied::Invalid => "metadata_invalid",
        }
    }
}

/// The metadata of one event: the event with its fields set and what each field counted, or
/// why it is a dead letter.
pub fn decide(plan: &MetadataPlan, event: &Event) -> Result<Decided, Reject> {
    let mut counted = Vec::new();
    let mut ranked = [0i64; 2];
    for (slot, field) in [&plan.priority, &plan.complexity].into_iter().enumerate() {
        let (value, applied) = ranked_value(field, plan.invalid, event)?;
        counted.extend(applied.map(|a| (field.name, a)));
        ranked[slot] = value;
    }
    let key = match plan.shard_key.value.eval(event) {
        Ok(v) if !v.is_null() => v,
        Ok(_) => {
            let default = plan
                .shard_key
                .default
                .as_ref()
                .ok_or("no shard_key and no default for it")?;
            match default.eval(event) {
                Ok(v) if !v.is_null() => {
                    counted.push((plan.shard_key.name, Applied::Default));
                    v
                }
                Ok(_) => return Err("no shard_key, and its default is null".into()),
                Err(e) => return Err(format!("the default of shard_key failed: {e}")),
            }
        }
        Err(e) => return Err(format!("shard_key failed: {e}")),
    };
    let shard = stable_hash(&key) % plan.shards;
    static NAMES: std::sync::OnceLock<[Sym; 4]> = std::sync::OnceLock::new();
    let [priority, complexity, shard_key, shard_id] =
        *NAMES.get_or_init(|| ["priority", "complexity", "shard_key", "shard_id"].map(Sym::new));
    let out = event.clone().with_fields(vec![
        (priority, Value::Int(ranked[0])),
        (complexity, Value::Int(ranked[1])),
        (shard_key, key),
        (shard_id, Value::Int(shard as i64)),
    ]);
    Ok((out, counted))
}

/// A number in `field`'s range: its value, or its default, under `policy`.
fn ranked_value(field: &MetaField, policy: InvalidMetadata, event: &Event) -> Result<(i64, Option<Applied>), Reject> {
    let (lo, hi) = field.range.expect("priority and complexity have ranges");
    let name = field.name;
    let default = || -> Result<i64, Reject> {
        let Some(expr) = &field.default else {
            return Err(format!("no {name} and no default for it"));
        };
        match expr.eval(event) {
            Ok(v) => match in_range(&v, lo, hi) {
                Some(Ok(n)) => Ok(n),
                _ => Err(format!(
                    "the default of {name} is {}, not an integer {lo}–{hi}",
                    describe(&v)
                )),
            },
            Err(e) => Err(format!("the default of {name} failed: {e}")),
        }
    };
    let value = match field.value.eval(event) {
        Ok(v) => v,
        Err(_) if policy == InvalidMetadata::Clamp => return Ok((default()?, Some(Applied::Invalid))),
        Err(e) => return Err(format!("{name} failed: {e}")),
    };
    if value.is_null() {
        return Ok((default()?, Some(Applied::Default)));
    }
    match (in_range(&value, lo, hi), policy) {
        (Some(Ok(n)), _) => Ok((n, None)),
        (Some(Err(clamped)), InvalidMetadata::Clamp) => Ok((clamped, Some(Applied::Clamped))),
        (None, InvalidMetadata::Clamp) => Ok((default()?, Some(Applied::Invalid))),
        (_, InvalidMetadata::DeadLetter) => Err(format!("{name} is {}, not an integer {lo}–{hi}", describe(&value))),
    }
}

/// `Some(Ok(n))` for a number that rounds to `n` in `lo..=hi`, `Some(Err(clamped))` for another
/// finite number, `None` for anything else.
fn in_range(v: &Value, lo: i64, hi: i64) -> Option<Result<i64, i64>> {
    let n = match v {
        Value::Int(i) => *i,
        Value::Float(f) if f.get().is_finite() => {
            let r = f.get().round();
            // Rounded floats far outside i64 clamp like any out-of-range number.
            if r >= 9.2e18 {
                i64::MAX
            } else if r <= -9.2e18 {
                i64::MIN
            } else {
                r as i64
            }
        }
        _ => return None,
    };
    Some(
        if (lo..=hi).contains(&n) && !matches!(v, Value::Float(f) if f.get().fract() != 0.0) {
            Ok(n)
        } else {
            Err(n.clamp(lo, hi))
        },
    )
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Str(_) | Value::Int(_) | Value::Float(_) | Value::Bool(_) => v.json_text(),
        other => format!("a {}", other.kind_name()),
    }
}

/// The metadata stage of source `source` (whose time and type field names are `fields`).
pub fn stage<'s>(
    events: VecCollection<'s, u64, Event, isize>,
    plan: &MetadataPlan,
    source: &str,
    fields: (&str, &str),
) -> StageOut<'s> {
    let plan = plan.clone();
    let stage = format!("metadata:{source}");
    let (time_field, type_field) = (fields.0.to_string(), fields.1.to_string());
    let (events, counts, dead) = fan_out(
        events,
        &format!("Metadata({source})"),
        move |event: Event, out| match decide(&plan, &event) {
            Ok((decided, counted)) => {
                out.a.push(decided);
                (out.b).extend(
                    counted
                        .into_iter()
                        .map(|(field, applied)| Counter::new(applied.metric(), field)),
                );
            }
            Err(detail) => out.c.push(DeadLetter {
                stage: stage.clone(),
                reason: "invalid_metadata".into(),
                detail,
                location: format!("{} event at {}", event.kind, format_time(event.time)),
                record: event.json_text(&time_field, &type_field),
                event_time: Some(event.time),
                original: None,
            }),
        },
    );
    StageOut {
        main: Coll::Events(events),
        ports: vec![(Port::Counters, Coll::Counters(counts))],
        errs: vec![dead],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::parse;

    fn field(name: &'static str, value: &str, default: Option<&str>, range: Option<(i64, i64)>) -> MetaField {
        MetaField {
            name,
            value: parse(value).unwrap(),
            default: default.map(|d| parse(d).unwrap()),
            range,
        }
    }

    fn plan(invalid: InvalidMetadata) -> MetadataPlan {
        MetadataPlan {
            source: 0,
            priority: field("priority", "priority", Some("if(kind == 'pay', 2, 5)"), Some((1, 10))),
            complexity: field("complexity", "complexity", Some("3"), Some((1, 5))),
            shard_key: field("shard_key", "user", Some("device"), None),
            shards: 16,
            invalid,
        }
    }

    fn event(fields: &[(&str, Value)]) -> Event {
        let mut payload: Vec<(Sym, Value)> = fields.iter().map(|(k, v)| (Sym::new(k), v.clone())).collect();
        payload.push((Sym::new("kind"), Value::str("pay")));
        Event {
            time: 1000,
            kind: Sym::new("t"),
            payload: crate::value::sort_fields(&mut payload).into(),
        }
    }

    fn get(e: &Event, name: &str) -> Value {
        crate::value::lookup(&e.payload, Sym::new(name))
            .cloned()
            .unwrap_or(Value::Null)
    }

    #[test]
    fn present_values_pass_and_missing_ones_take_their_defaults() {
        let p = plan(InvalidMetadata::Clamp);
        let e = event(&[
            ("priority", Value::Int(7)),
            ("complexity", Value::Int(1)),
            ("user", Value::str("u1")),
        ]);
        let (out, counted) = decide(&p, &e).unwrap();
        assert_eq!(
            (get(&out, "priority"), get(&out, "complexity")),
            (Value::Int(7), Value::Int(1))
        );
        assert_eq!(get(&out, "shard_key"), Value::str("u1"));
        assert!(counted.is_empty());

        let e = event(&[("device", Value::Int(42))]);
        let (out, counted) = decide(&p, &e).unwrap();
        assert_eq!(
            (get(&out, "priority"), get(&out, "complexity")),
            (Value::Int(2), Value::Int(3))
        );
        assert_eq!(get(&out, "shard_key"), Value::Int(42));
        assert_eq!(
            counted,
            vec![
                ("priority", Applied::Default),
                ("complexity", Applied::Default),
                ("shard_key", Applied::Default)
            ]
        );
    }

    #[test]
    fn invalid_values_are_clamped_or_dead_letters() {
        let e = event(&[
            ("priority", Value::Int(0)),
            ("complexity", Value::str("hard")),
            ("user", Value::str("u")),
        ]);
        let (out, counted) = decide(&plan(InvalidMetadata::Clamp), &e).unwrap();
        assert_eq!(
            (get(&out, "priority"), get(&out, "complexity")),
            (Value::Int(1), Value::Int(3))
        );
        assert_eq!(
            counted,
            vec![("priority", Applied::Clamped), ("complexity", Applied::Invalid)]
        );
        let err = decide(&plan(InvalidMetadata::DeadLetter), &e).unwrap_err();
        assert_eq!(err, "priority is 0, not an integer 1–10");

        // A fractional number is rounded (and counted) under clamp, a dead letter otherwise.
        let e = event(&[("priority", Value::float(2.6)), ("user", Value::str("u"))]);
        let (out, counted) = decide(&plan(InvalidMetadata::Clamp), &e).unwrap();
        assert_eq!(get(&out, "priority"), Value::Int(3));
        assert_eq!(counted[0], ("priority", Applied::Clamped));
        assert!(decide(&plan(InvalidMetadata::DeadLetter), &e).is_err());
        // A whole float in range is that integer.
        let e = event(&[("priority", Value::float(4.0)), ("user", Value::str("u"))]);
        assert_eq!(
            get(&decide(&plan(InvalidMetadata::DeadLetter), &e).unwrap().0, "priority"),
            Value::Int(4)
        );
        let e = event(&[("priority", Value::float(1e300)), ("user", Value::str("u"))]);
        assert_eq!(
            get(&decide(&plan(InvalidMetadata::Clamp), &e).unwrap().0, "priority"),
            Value::Int(10)
        );
    }

    #[test]
    fn no_shard_key_or_a_bad_default_is_a_dead_letter() {
        let p = plan(InvalidMetadata::Clamp);
        assert_eq!(
            decide(&p, &event(&[])).unwrap_err(),
            "no shard_key, and its default is null"
        );
        let mut q = plan(InvalidMetadata::Clamp);
        q.complexity.default = Some(parse("9").unwrap());
        let e = event(&[("user", Value::str("u"))]);
        assert_eq!(
            decide(&q, &e).unwrap_err(),
            "the default of complexity is 9, not an integer 1–5"
        );
    }

    #[test]
    fn shards_are_stable_and_ints_and_floats_agree() {
        let p = plan(InvalidMetadata::Clamp);
        let shard = |key: Value| get(&decide(&p, &event(&[("user", key)])).unwrap().0, "shard_id");
        assert_eq!(shard(Value::Int(3)), shard(Value::float(3.0)));
        // Fixed: a change of hash would move every key of a running deployment.
        assert_eq!(
            [
                shard(Value::str("user-1")),
                shard(Value::str("user-2")),
                shard(Value::Int(7))
            ],
            [Value::Int(5), Value::Int(10), Value::Int(0)]
        );
        let all: std::collections::BTreeSet<i64> = (0..1000)
            .map(|i| match shard(Value::str(&format!("u{i}"))) {
                Value::Int(s) => s,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(all, (0..16).collect());
    }
}
