//! Derived fields and rules: `events: Collection<Event>` → the events that pass, the counters
//! (`CountersOf`), and the rest as `Collection<RuleOut>` (blocked rows, `rule_stat` events and
//! routed copies), each written once into its own collection (`render::fan_out`). A pure
//! function of each event, applied where the event is (no exchange); times are unchanged.
//!
//! For each event, in this order:
//! 1. **Derived fields**, in spec order; each sees the ones before it. A field whose expression
//!    fails on this event's data (a type error, say) is left out and `derive_failures` counts it.
//! 2. **Rules**, in spec order. A rule whose condition is true *matches* and acts:
//!    - `allow`: adds its mark to `_marks`; later `block` rules match but do not block the event.
//!    - `block`: sends the event to `blocked` with the rule's id; later rules do not see it.
//!    - `route`: adds its destination to `_routes` (the event is also written to that output)
//!      and its hints to `_hints`.
//!    - `transform`: sets (expressions, evaluated on the event before this rule), removes, then
//!      renames top-level fields; later rules see the result.
//!
//!    A rule whose condition or `set` expression fails on this event's data leaves the event
//!    unchanged, counts a failure, and evaluation goes on with the next rule.
//!
//! Besides events, the stage emits blocked rows, one `rule_stat` event per rule outcome (the
//! `rule_stats` windowed aggregate counts them), and counters.

use std::sync::Arc;

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::plan::{EnrichPlan, RuleAction};
use crate::render::enrich::Counter;
use crate::value::{Sym, Value};

/// Columns of the `blocked` output.
pub use crate::plan::BLOCKED_COLUMNS;

/// Event type of the synthetic events that `rule_stats` counts.
pub const RULE_STAT: &str = "rule_stat";

/// What the rules stage emits.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RuleOut {
    /// An event that passed, with its marks, routes, hints and transforms.
    Event(Event),
    /// A copy of a passed event for a route's destination output.
    Routed(Sym, Event),
    /// A `blocked` row.
    Blocked(Vec<Value>),
    /// A `rule_stat` event: `rule_id`, `action` and `outcome` (`match`, `action`, `failure`).
    Stat(Event),
    Count(Counter),
}

/// `rule_stats` as a windowed aggregate over the rules stage's `rule_stat` events: per rule and
/// tumbling window of event time, how often it matched, acted and failed; each window once,
/// when the watermark passes its end. Behind a continuous join, rule outcomes are retracted with
/// their events: closed windows then take revisions for one more window length.
pub fn stats_plan(stage: &EnrichPlan) -> crate::plan::AggregatePlan {
    use crate::event::{Accessor, FieldPath};
    use crate::plan::{AggregatePlan, Emit, Func, MeasurePlan, WindowPlan};
    let field = |name: &str| Accessor::Payload(FieldPath::field(name));
    let count_where = |name: &str, outcome: &str| MeasurePlan {
        name: name.into(),
        func: Func::Count,
        arg: None,
        filter: Some(crate::expr::parse(&format!("outcome == '{outcome}'")).expect("a valid expression")),
    };
    AggregatePlan {
        name: crate::plan::RULE_STATS.into(),
        source: stage.source,
        filter: None,
        window: WindowPlan {
            size_ms: stage.rule_stats_window_ms,
            slide_ms: stage.rule_stats_window_ms,
        },
        session_gap_ms: None,
        group_by: vec![("rule_id".into(), field("rule_id")), ("action".into(), field("action"))],
        measures: vec![
            count_where("matches", "match"),
            count_where("actions", "action"),
            count_where("failures", "failure"),
        ],
        emit: Emit::Final,
        monotonic: !stage.retracts(),
        retain_ms: if stage.retracts() {
            stage.rule_stats_window_ms
        } else {
            0
        },
        input_lag_ms: 0,
    }
}

/// The stage's names, interned once.
struct Names {
    marks: Sym,
    routes: Sym,
    hints: Sym,
    stat: Sym,
    rule_id: Sym,
    action: Sym,
    outcome: Sym,
    processed: Counter,
    enriched: Counter,
    filtered: Counter,
    /// Each rule's values, in plan order.
    rules: Vec<RuleValues>,
}

/// What a rule adds to the events it matches, made once: every `rule_stat` payload it emits
/// and every mark, route and hint it sets is shared by the events, not built per event.
struct RuleValues {
    /// The `rule_stat` payloads for the outcomes `match`, `action` and `failure`.
    stats: [Arc<[(Sym, Value)]>; 3],
    id: Value,
    failures: Counter,
    mark: Option<Value>,
    /// The destination, as an output name and as a `_routes` value.
    route: Option<(Sym, Value)>,
    hints: Vec<(Sym, Value)>,
}

/// The indices of [`RuleValues::stats`].
const MATCH: usize = 0;
const ACTION: usize = 1;
const FAILURE: usize = 2;

impl RuleValues {
    fn new(rule: &crate::plan::RulePlan, names: (Sym, Sym, Sym)) -> RuleValues {
        let (rule_id, action, outcome) = names;
        let stat = |o: &str| {
            let fields = vec![
                (rule_id, Value::str(&rule.id)),
                (action, Value::str(rule.action.name())),
                (outcome, Value::str(o)),
            ];
            Event::new(0, Sym::new(RULE_STAT), fields).payload
        };
        let (mut mark, mut route, mut hints) = (None, None, Vec::new());
        match &rule.action {
            RuleAction::Allow { mark: m } => mark = Some(Value::str(m)),
            RuleAction::Route { destination, hints: h } => {
                route = destination.as_deref().map(|d| (Sym::new(d), Value::str(d)));
                hints = h.iter().map(|(k, v)| (Sym::new(k), v.clone())).collect();
            }
            RuleAction::Block | RuleAction::Transform { .. } => {}
        }
        RuleValues {
            stats: [stat("match"), stat("action"), stat("failure")],
            id: Value::str(&rule.id),
            failures: Counter::new("rule_failures", &rule.id),
            mark,
            route,
            hints,
        }
    }
}

/// Renders `plan`'s derived fields and rules over `events` of `source` (whose time and type
/// field names `fields` gives, for blocked records): the events that passed, the counters, and
/// the rest of the output (stats, blocked rows and routed copies), each straight into its own
/// collection (`render::fan_out`).
pub fn render<'s>(
    events: VecCollection<'s, u64, Event, isize>,
    plan: &EnrichPlan,
    source: &str,
    fields: (&str, &str),
) -> (
    VecCollection<'s, u64, Event, isize>,
    crate::render::CountersOf<'s>,
    VecCollection<'s, u64, RuleOut, isize>,
) {
    let plan = Arc::new(plan.clone());
    let (time_field, type_field) = (fields.0.to_string(), fields.1.to_string());
    let names = Names {
        marks: Sym::new("_marks"),
        routes: Sym::new("_routes"),
        hints: Sym::new("_hints"),
        stat: Sym::new(RULE_STAT),
        rule_id: Sym::new("rule_id"),
        action: Sym::new("action"),
        outcome: Sym::new("outcome"),
        processed: Counter::new("events_processed", source),
        enriched: Counter::new("events_enriched", source),
        filtered: Counter::new("events_filtered", source),
        rules: Vec::new(),
    };
    let names = Names {
        rules: (plan.rules.iter())
            .map(|r| RuleValues::new(r, (names.rule_id, names.action, names.outcome)))
            .collect(),
        ..names
    };
    let aliases: Vec<Sym> = plan.joins.iter().map(|j| Sym::new(&j.alias)).collect();
    let derived: Vec<(Sym, Counter)> = plan
        .derive
        .iter()
        .map(|(f, _)| (Sym::new(f), Counter::new("derive_failures", f)))
        .collect();
    // Derived values are set on the event together, in one rebuild of its payload, except
    // before a derivation that reads a field derived before it.
    let reads_derived: Vec<bool> = plan
        .derive
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| {
            expr.fields().iter().any(|acc| match acc {
                crate::event::Accessor::Payload(path) => derived[..i].iter().any(|(f, _)| path.head() == Some(*f)),
                _ => false,
            })
        })
        .collect();
    // One event's output, its buffer reused.
    let mut out: Vec<RuleOut> = Vec::new();
    crate::render::fan_out::fan_out(events, &format!("Rules({source})"), move |event: Event, fan| {
        out.push(RuleOut::Count(names.processed));
        if aliases
            .iter()
            .any(|a| crate::value::lookup(&event.payload, *a).is_some())
        {
            out.push(RuleOut::Count(names.enriched));
        }
        let mut event = event;
        let mut set: Vec<(Sym, Value)> = Vec::new();
        for (((_, expr), (field, failures)), reads) in plan.derive.iter().zip(&derived).zip(&reads_derived) {
            if *reads && !set.is_empty() {
                event = event.with_fields(std::mem::take(&mut set));
            }
            match expr.eval(&event) {
                Ok(Value::Null) => {}
                Ok(v) => set.push((*field, v)),
                Err(_) => out.push(RuleOut::Count(*failures)),
            }
        }
        if !set.is_empty() {
            event = event.with_fields(set);
        }
        apply_rules(&plan, &names, event, &time_field, &type_field, &mut out);
        for o in out.drain(..) {
            match o {
                RuleOut::Event(e) => fan.a.push(e),
                RuleOut::Count(c) => fan.b.push(c),
                other => fan.c.push(other),
            }
        }
    })
}

fn apply_rules(
    plan: &EnrichPlan,
    names: &Names,
    mut event: Event,
    time_field: &str,
    type_field: &str,
    out: &mut Vec<RuleOut>,
) {
    let stat = |rule: &RuleValues, outcome: usize, time: i64| {
        RuleOut::Stat(Event {
            time,
            kind: names.stat,
            payload: Arc::clone(&rule.stats[outcome]),
        })
    };
    let mut marks: Vec<Value> = Vec::new();
    let mut routes: Vec<&(Sym, Value)> = Vec::new();
    let mut hints: Vec<(Sym, Value)> = Vec::new();
    let mut allowed = false;
    for (rule, values) in plan.rules.iter().zip(&names.rules) {
        match rule.when.is_true(&event) {
            Err(_) => {
                out.push(stat(values, FAILURE, event.time));
                out.push(RuleOut::Count(values.failures));
                continue;
            }
            Ok(false) => continue,
            Ok(true) => out.push(stat(values, MATCH, event.time)),
        }
        match &rule.action {
            RuleAction::Allow { .. } => {
                allowed = true;
                marks.extend(values.mark.clone());
            }
            RuleAction::Block if allowed => continue,
            RuleAction::Block => {
                out.push(stat(values, ACTION, event.time));
                out.push(RuleOut::Count(names.filtered));
                out.push(RuleOut::Blocked(vec![
                    values.id.clone(),
                    Value::Time(event.time),
                    Value::str(event.kind.as_str()),
                    Value::str(&event.json_text(time_field, type_field)),
                ]));
                return;
            }
            RuleAction::Route { .. } => {
                if let Some(route) = &values.route {
                    if !routes.iter().any(|r| r.1 == route.1) {
                        routes.push(route);
                    }
                }
                hints.extend(values.hints.iter().cloned());
            }
            RuleAction::Transform { set, remove, rename } => {
                let values_set: Result<Vec<Value>, _> = set.iter().map(|(_, e)| e.eval(&event)).collect();
                let Ok(values_set) = values_set else {
                    out.push(stat(values, FAILURE, event.time));
                    out.push(RuleOut::Count(values.failures));
                    continue;
                };
                for ((field, _), v) in set.iter().zip(values_set) {
                    event = event.with_field(Sym::new(field), v);
                }
                for field in remove {
                    event = event.without_field(Sym::new(field));
                }
                for (from, to) in rename {
                    let from = Sym::new(from);
                    if let Some(v) = crate::value::lookup(&event.payload, from).cloned() {
                        event = event.without_field(from).with_field(Sym::new(to), v);
                    }
                }
            }
        }
        out.push(stat(values, ACTION, event.time));
    }
    let mut set: Vec<(Sym, Value)> = Vec::new();
    if !marks.is_empty() {
        set.push((names.marks, Value::List(marks.into())));
    }
    if !hints.is_empty() {
        set.push((names.hints, Value::object(hints)));
    }
    if !routes.is_empty() {
        let list: Vec<Value> = routes.iter().map(|(_, v)| v.clone()).collect();
        set.push((names.routes, Value::List(list.into())));
    }
    if !set.is_empty() {
        event = event.with_fields(set);
    }
    for (destination, _) in &routes {
        out.push(RuleOut::Routed(*destination, event.clone()));
    }
    out.push(RuleOut::Event(event));
}
