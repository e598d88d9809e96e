//! Validation: a [`SpecFile`] becomes a [`Plan`], or a [`SpecError`] that names the file, line
//! and key at fault and, where the valid values form a short list, suggests them.

mod join;
mod services;

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use crate::error::{PlanError, SpecError};
use crate::event::{Accessor, FieldPath};
use crate::expr::{self, Expr};

use super::duration::parse_duration;
use super::hints::{closest, expr_help, implicit_table, value_span};
use super::spec::{
    AggregateSpec, DedupSpec, EnrichSpec, ForecastSpec, JoinSpec, MetaFieldSpec, MetadataSpec, PathList, RouterSpec,
    RuleSpec, SchemaSpec, SourceSpec, SpecFile, WindowSpec, S,
};
use super::{
    AggregatePlan, DedupPlan, DedupRule, Emit, EnrichPlan, Fields, ForecastPlan, Format, Func, JoinMode, JoinPlan,
    Keep, Matching, MeasurePlan, MetadataPlan, Plan, RouterPlan, RuleAction, RulePlan, SchemaPlan, SourceLimits,
    SourcePlan, Stage, StageKind, StageRef, WindowPlan,
};

/// Reads and plans a spec file, and checks every field it names against its sources' schemas,
/// which `probe` reads (see [`super::known_fields`]; `crate::source::plan_file` passes the
/// source layer's). `inputs` override source paths (`--input NAME=PATH`).
pub fn plan_file_with(
    path: &Path,
    inputs: &[(String, PathBuf)],
    probe: &dyn super::known_fields::SchemaProbe,
) -> Result<Plan, PlanError> {
    let text = std::fs::read_to_string(path).map_err(|e| SpecError {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        key: String::new(),
        message: format!("cannot read spec: {e}"),
        help: None,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let (spec, plan) = plan_spec(&text, path, base, inputs)?;
    super::known_fields::check(&spec, &plan, &text, path, probe)?;
    Ok(plan)
}

/// Plans spec text; `file` is only used in error messages, `base` resolves relative paths.
/// Reads no files: field names are not checked against the sources (see [`plan_file_with`]).
pub fn plan_str(text: &str, file: &Path, base: &Path, inputs: &[(String, PathBuf)]) -> Result<Plan, SpecError> {
    plan_spec(text, file, base, inputs).map(|(_, plan)| plan)
}

/// Parses and plans spec text, keeping the parsed spec (its spans locate later checks).
fn plan_spec(
    text: &str,
    file: &Path,
    base: &Path,
    inputs: &[(String, PathBuf)],
) -> Result<(SpecFile, Plan), SpecError> {
    let cx = Cx { text, file };
    let spec: SpecFile = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        match implicit_table(text, &span, e.message()) {
            Some((message, help)) => cx.error(span, "", message, Some(help)),
            None => cx.error(span, "", e.message().trim().to_string(), None),
        }
    })?;
    for (name, _) in inputs {
        if !spec.sources.contains_key(name) {
            return Err(cx.error(
                0..0,
                "--input",
                format!("no source named `{name}`"),
                Some(one_of(spec.sources.keys())),
            ));
        }
    }

    let tick_ms = match &spec.pipeline.tick {
        Some(t) => cx.duration(t, "pipeline.tick")?,
        None => 1_000,
    };
    if tick_ms == 0 {
        let t = spec.pipeline.tick.as_ref().expect("zero tick comes from the spec");
        return Err(cx.error(t.span(), "pipeline.tick", "tick must be positive".into(), None));
    }

    let dead_letter_record_bytes = match &spec.pipeline.dead_letter_record_bytes {
        None => crate::dead_letter::DEFAULT_RECORD_BYTES,
        Some(b) if *b.get_ref() < 64 => {
            return Err(cx.error(
                b.span(),
                "pipeline.dead_letter_record_bytes",
                "keep at least 64 bytes of a rejected record".into(),
                None,
            ))
        }
        Some(b) => usize::try_from(*b.get_ref()).unwrap_or(usize::MAX),
    };

    let mut sources = Vec::new();
    for (name, source) in &spec.sources {
        let overridden = inputs.iter().rev().find(|(n, _)| n == name).map(|(_, p)| p.clone());
        sources.push(cx.source(name, source, base, overridden)?);
    }

    // The outputs stages read by name: aggregates, then top-N stages.
    let aggregate_names: Vec<&String> = spec
        .aggregates
        .iter()
        .map(|a| a.get_ref().name.get_ref())
        .chain(spec.top_n.iter().map(|t| t.get_ref().name.get_ref()))
        .chain(spec.joins.iter().map(|j| j.get_ref().name.get_ref()))
        .collect();
    let mut schemas = Vec::new();
    for (name, stage) in &spec.schemas {
        schemas.push(cx.schema(name, stage, &sources, base)?);
    }
    // A tcp source whose schema stage pins schemas has known fields after all.
    for stage in &schemas {
        let source = &mut sources[stage.source];
        let explicit = spec
            .sources
            .get(&source.name)
            .is_some_and(|s| s.get_ref().fields.is_some());
        if source.format == Format::Tcp && !stage.pinned.is_empty() && !explicit {
            source.fields = Fields::Closed;
        }
    }
    let mut dedups = Vec::new();
    for (name, rules) in &spec.dedup {
        dedups.push(cx.dedup(name, rules, &sources)?);
    }
    let mut metadata = Vec::new();
    for (name, m) in &spec.metadata {
        metadata.push(cx.metadata(name, m, &sources)?);
    }
    let mut enrichments: Vec<EnrichPlan> = Vec::new();
    for (name, e) in &spec.enrich {
        let plan = cx.enrich(name, e, &sources)?;
        let mut outputs: Vec<(String, Range<usize>)> = Vec::new();
        if let Some(o) = &plan.output {
            outputs.push((o.clone(), e.output.as_ref().map_or(name.span(), |s| s.span())));
        }
        for (r, rule) in plan.rules.iter().zip(&e.rule) {
            if let RuleAction::Route {
                destination: Some(d), ..
            } = &r.action
            {
                let span = rule.get_ref().destination.as_ref().map_or(rule.span(), |s| s.span());
                outputs.push((d.clone(), span));
            }
        }
        for (o, span) in outputs {
            let taken = aggregate_names.contains(&&o)
                || plan_names_output(&o)
                || o == crate::DEAD_LETTERS
                || enrichments.iter().any(|p| p.output.as_deref() == Some(o.as_str()));
            // Stages of other sources may route to one destination when their events look alike.
            let other_fields = enrichments.iter().any(|p| {
                p.destinations().any(|d| d == o)
                    && ((&sources[p.source].time_field, &sources[p.source].type_field)
                        != (&sources[plan.source].time_field, &sources[plan.source].type_field)
                        || p.order_by != plan.order_by)
            });
            if taken || other_fields {
                let why = if taken {
                    format!("output name `{o}` is already used")
                } else {
                    format!("`{o}` receives events of another source, whose time and type fields or `order_by` differ")
                };
                return Err(cx.error(span, &format!("enrich.{}", name.get_ref()), why, None));
            }
        }
        enrichments.push(plan);
    }

    let mut plan = Plan {
        name: spec.pipeline.name.get_ref().clone(),
        tick_ms,
        dead_letter_record_bytes,
        sources,
        stages: Vec::new(),
        outputs: Vec::new(),
    };
    // Each source's chain: schema, then dedup, then enrichment, each reading the one before.
    let mut chain: Vec<StageRef> = (0..plan.sources.len()).map(StageRef::Source).collect();
    let push = |plan: &mut Plan, chain: &mut Vec<StageRef>, source: usize, kind: StageKind, contexts: Vec<StageRef>| {
        let name = format!("{}:{}", kind.name(), plan.sources[source].name);
        let mut inputs = vec![chain[source].clone()];
        inputs.extend(contexts);
        plan.stages.push(Stage { name, inputs, kind });
        chain[source] = StageRef::Stage(plan.stages.len() - 1);
    };
    for s in schemas {
        push(&mut plan, &mut chain, s.source, StageKind::Schema(s), vec![]);
    }
    for d in dedups {
        push(&mut plan, &mut chain, d.source, StageKind::Dedup(d), vec![]);
    }
    for m in metadata {
        push(
            &mut plan,
            &mut chain,
            m.source,
            StageKind::Metadata(Box::new(m)),
            vec![],
        );
    }
    let contexts = chain.clone();
    // Joins read their context sources after those sources' schema and dedup stages.
    let mut streams: Vec<(String, StageRef)> = Vec::new();
    for e in enrichments {
        let joined: Vec<StageRef> = e.joins.iter().map(|j| contexts[j.context].clone()).collect();
        let (source, output) = (e.source, e.output.clone());
        let destinations: Vec<String> = e.destinations().map(String::from).collect();
        push(&mut plan, &mut chain, source, StageKind::Enrich(e), joined);
        let stage = plan.stages.len() - 1;
        streams.extend(output.map(|o| (o, chain[source].clone())));
        streams.extend(destinations.into_iter().map(|d| {
            let route = StageRef::Route {
                stage,
                destination: d.clone(),
            };
            (d, route)
        }));
    }
    for (i, source) in plan.sources.iter().enumerate() {
        streams.push((source.name.clone(), chain[i].clone()));
    }

    // Aggregates, top-N stages and joins read a source, an enriched output, a route
    // destination or each other's outputs; they are planned after what they read. Node `i < A`
    // is aggregate `i`, node `A + j` is top-N `j`, node `A + T + k` is join `k`.
    let a_len = spec.aggregates.len();
    let t_len = spec.top_n.len();
    // What node `i` reads, each with its key.
    let node_reads = |i: usize| -> Vec<(&S<String>, String)> {
        if i < a_len {
            vec![(&spec.aggregates[i].get_ref().source, format!("aggregates[{i}].source"))]
        } else if i < a_len + t_len {
            let j = i - a_len;
            vec![(&spec.top_n[j].get_ref().source, format!("top_n[{j}].source"))]
        } else {
            let k = i - a_len - t_len;
            let j = spec.joins[k].get_ref();
            vec![
                (&j.left, format!("joins[{k}].left")),
                (&j.right, format!("joins[{k}].right")),
            ]
        }
    };
    let node_key = |i: usize| {
        if i < a_len {
            format!("aggregates[{i}]")
        } else if i < a_len + t_len {
            format!("top_n[{}]", i - a_len)
        } else {
            format!("joins[{}]", i - a_len - t_len)
        }
    };
    let reads = |i: usize| -> Vec<usize> {
        node_reads(i)
            .iter()
            .filter_map(|(source, _)| aggregate_names.iter().position(|n| *n == source.get_ref()))
            .collect()
    };
    let order = super::graph::topological_order(aggregate_names.len(), reads).map_err(|cycle| {
        let chain: Vec<String> = cycle.iter().map(|i| format!("`{}`", aggregate_names[*i])).collect();
        // The read of the first node that leads around the cycle.
        let next = aggregate_names[cycle[1]];
        let reads = node_reads(cycle[0]);
        let (source, key) = reads.iter().find(|(s, _)| s.get_ref() == next).unwrap_or(&reads[0]);
        cx.error(
            source.span(),
            key,
            format!("stages read each other in a cycle: {}", chain.join(" reads ")),
            None,
        )
    })?;
    let mut node_stage: Vec<usize> = vec![0; aggregate_names.len()];
    for i in order {
        let planned: Vec<(&String, usize)> = aggregate_names
            .iter()
            .copied()
            .zip(node_stage.iter().copied())
            .collect();
        let mut inputs = Vec::new();
        for (source, key) in node_reads(i) {
            inputs.push(cx.stream(source, &key, &streams, &planned)?);
        }
        let input = inputs[0].clone();
        let (name, name_span, kind) = if i < a_len {
            let a = &spec.aggregates[i];
            let fields = plan.fields_of(&input);
            let mut agg = cx.aggregate(i, a, fields, plan.root_source(&input), tick_ms)?;
            agg.input_lag_ms = plan.lag_of(&input);
            derive_monotonic(&cx, a, i, &mut agg, plan.retracts(&input))?;
            (agg.name.clone(), a.get_ref().name.span(), StageKind::Aggregate(agg))
        } else if i < a_len + t_len {
            let j = i - a_len;
            let t = &spec.top_n[j];
            let top = cx.top_n(j, t, &plan, &input)?;
            (
                top.name.clone(),
                t.get_ref().name.span(),
                StageKind::TopN(Box::new(top)),
            )
        } else {
            let k = i - a_len - t_len;
            let j = &spec.joins[k];
            let join = cx.binary_join(k, j, &plan, &inputs, tick_ms)?;
            (
                join.name.clone(),
                j.get_ref().name.span(),
                StageKind::Join(Box::new(join)),
            )
        };
        let taken = aggregate_names.iter().take(i).any(|n| **n == name)
            || name == crate::DEAD_LETTERS
            || streams.iter().any(|(n, _)| *n == name);
        if taken || plan_names_output(&name) {
            let why = if plan.sources.iter().any(|s| s.name == name) {
                format!("`{name}` is a source's name, and stages read outputs by name")
            } else if taken {
                format!("output name `{name}` is already used")
            } else {
                format!("`{name}` is the name of an output the plan makes itself")
            };
            return Err(cx.error(name_span, &format!("{}.name", node_key(i)), why, None));
        }
        plan.stages.push(Stage { name, inputs, kind });
        node_stage[i] = plan.stages.len() - 1;
    }
    let mut aggregate_stage: Vec<usize> = node_stage[..a_len].to_vec();
    let top_n_stage: Vec<usize> = node_stage[a_len..a_len + t_len].to_vec();
    let join_stage: Vec<usize> = node_stage[a_len + t_len..].to_vec();
    // Forecasts read a source, an enriched output, a route destination or an aggregate.
    let mut forecast_stage = Vec::new();
    for (i, f) in spec.forecasts.iter().enumerate() {
        let key = |k: &str| format!("forecasts[{i}].{k}");
        let read = f.get_ref().source.get_ref();
        let planned: Vec<(&String, usize)> = aggregate_names
            .iter()
            .copied()
            .zip(node_stage.iter().copied())
            .collect();
        let input = cx.stream(&f.get_ref().source, &key("source"), &streams, &planned)?;
        if plan.retracts(&input) {
            return Err(cx.error(
                f.get_ref().source.span(),
                &key("source"),
                format!("`{read}` revises what it emitted; a forecast reads insert-only samples"),
                Some("read a source, or an aggregate with `emit = \"final\"`".into()),
            ));
        }
        let forecast = cx.forecast(i, f, plan.fields_of(&input), tick_ms)?;
        let names = [forecast.name.clone(), forecast.errors_output()];
        for name in &names {
            let taken = aggregate_names.contains(&name)
                || streams.iter().any(|(n, _)| n == name)
                || plan.forecasts().any(|p| p.name == *name || p.errors_output() == *name)
                || *name == crate::DEAD_LETTERS
                || plan_names_output(name);
            if taken {
                return Err(cx.error(
                    f.get_ref().name.span(),
                    &key("name"),
                    format!("output name `{name}` is already used"),
                    None,
                ));
            }
        }
        plan.stages.push(Stage {
            name: forecast.name.clone(),
            inputs: vec![input],
            kind: StageKind::Forecast(forecast),
        });
        forecast_stage.push(plan.stages.len() - 1);
    }
    // Routers read events with routing metadata, load samples, regions and a forecast.
    let mut router_stage = Vec::new();
    for (i, r) in spec.routers.iter().enumerate() {
        // Routers read events, not aggregate rows.
        let find = |name: &S<String>, k: &str| cx.stream(name, &format!("routers[{i}].{k}"), &streams, &[]);
        let rs = r.get_ref();
        let events = find(&rs.events, "events")?;
        let load = find(&rs.load, "load")?;
        let regions = find(&rs.regions, "regions")?;
        let forecast = match &rs.forecasts {
            None => None,
            Some(f) => match plan
                .stages
                .iter()
                .position(|s| s.name == *f.get_ref() && matches!(s.kind, StageKind::Forecast(_)))
            {
                Some(j) => Some((j, f)),
                None => {
                    let names: Vec<String> = plan.forecasts().map(|f| f.name.clone()).collect();
                    return Err(cx.error(
                        f.span(),
                        &format!("routers[{i}].forecasts"),
                        format!("no forecast named `{}`", f.get_ref()),
                        Some(one_of(&names)),
                    ));
                }
            },
        };
        let metadata = plan.metadata().find(|m| m.source == plan.root_source(&events)).cloned();
        let router = cx.router(
            i,
            r,
            &plan,
            &events,
            metadata.as_ref(),
            forecast.map(|(j, f)| (&plan.stages[j], f)),
        )?;
        let mut names = ["", "_counts", "_migrations", "_shard_rates"]
            .map(|suffix| format!("{}{suffix}", router.name))
            .to_vec();
        if rs.replication.is_some() {
            names.extend(["_placement", "_replication", "_replication_tasks"].map(|s| format!("{}{s}", router.name)));
        }
        for taken_name in names {
            let taken = aggregate_names.contains(&&taken_name)
                || streams.iter().any(|(n, _)| *n == taken_name)
                || plan
                    .forecasts()
                    .any(|p| p.name == taken_name || p.errors_output() == taken_name)
                || plan.stages.iter().any(|s| s.name == taken_name)
                || taken_name == crate::DEAD_LETTERS
                || plan_names_output(&taken_name);
            if taken {
                return Err(cx.error(
                    rs.name.span(),
                    &format!("routers[{i}].name"),
                    format!("output name `{taken_name}` is already used"),
                    None,
                ));
            }
        }
        let mut router = router;
        let mut inputs = vec![events.clone(), load, regions];
        if let Some((j, _)) = forecast {
            router.forecast_input = Some(inputs.len());
            inputs.push(StageRef::Stage(j));
        }
        if let Some(m) = &router.migration {
            // Events per shard and interval, read by the router (not an output).
            let rates = super::router::rates_plan(
                &format!("{}_shard_rates", router.name),
                plan.root_source(&events),
                m.interval_ms,
                !plan.retracts(&events),
            );
            plan.stages.push(Stage {
                name: rates.name.clone(),
                inputs: vec![events.clone()],
                kind: StageKind::Aggregate(rates),
            });
            router.rates_input = Some(inputs.len());
            inputs.push(StageRef::Stage(plan.stages.len() - 1));
        }
        let name = router.name.clone();
        plan.stages.push(Stage {
            name: name.clone(),
            inputs,
            kind: StageKind::Router(Box::new(router)),
        });
        let stage = plan.stages.len() - 1;
        router_stage.push(stage);
        if let Some(spec) = &rs.replication {
            let completions = find(&spec.get_ref().completions, "replication.completions")?;
            let StageKind::Router(router) = &plan.stages[stage].kind else {
                unreachable!("just pushed")
            };
            let replication = cx.replication(i, spec, router, stage, plan.fields_of(&completions))?;
            plan.stages.push(Stage {
                name: replication.records_output(),
                inputs: vec![StageRef::Stage(stage), completions],
                kind: StageKind::Replication(Box::new(replication)),
            });
        }
        // The routed events per chosen region and window: an aggregate over the decisions.
        let window_ms = match &rs.counts_window {
            Some(w) => cx.duration(w, &format!("routers[{i}].counts_window"))?,
            None => 60_000,
        };
        let counts = super::router::counts_plan(
            &format!("{name}_counts"),
            plan.root_source(&StageRef::Stage(stage)),
            window_ms,
        );
        plan.stages.push(Stage {
            name: counts.name.clone(),
            inputs: vec![StageRef::Stage(stage)],
            kind: StageKind::Aggregate(counts),
        });
        aggregate_stage.push(plan.stages.len() - 1);
    }
    // Service models read an interaction log: a source or a stage's events.
    for (i, entry) in spec.services.iter().enumerate() {
        let key = |k: &str| format!("services[{i}].{k}");
        let input = cx.stream(&entry.get_ref().source, &key("source"), &streams, &[])?;
        let services = cx.services(i, entry, plan.fields_of(&input))?;
        for name in services.outputs() {
            let taken = aggregate_names.contains(&&name)
                || streams.iter().any(|(n, _)| *n == name)
                || plan.stages.iter().any(|s| s.name == name)
                || plan.forecasts().any(|p| p.name == name || p.errors_output() == name)
                || name == crate::DEAD_LETTERS
                || plan_names_output(&name);
            if taken || !valid_output_name(&name) {
                return Err(cx.error(
                    entry.get_ref().name.span(),
                    &key("name"),
                    format!("output name `{name}` is already used or is not a folder name"),
                    None,
                ));
            }
        }
        plan.stages.push(Stage {
            name: format!("services:{}", services.name),
            inputs: vec![input],
            kind: StageKind::Services(Box::new(services)),
        });
    }
    plan.outputs = super::graph::outputs(
        &plan,
        &aggregate_stage,
        &top_n_stage,
        &join_stage,
        &forecast_stage,
        &router_stage,
    );
    check_keep_last(&cx, &spec, &plan)?;

    // Projection pushdown: each source decodes only the payload fields some stage reads; a
    // schema stage reads them all.
    let mut projections = Vec::new();
    for index in 0..plan.sources.len() {
        if plan.schemas().any(|s| s.source == index) {
            projections.push(None);
            continue;
        }
        if plan
            .enrichments()
            .any(|e| e.source == index || e.joins.iter().any(|j| j.context == index))
            || plan.metadata().any(|m| m.source == index)
            || plan.stages.iter().any(|s| {
                matches!(
                    s.kind,
                    StageKind::Router(_) | StageKind::Replication(_) | StageKind::Services(_)
                ) && s.inputs.iter().any(|i| plan.root_source(i) == index)
            })
            // A top-N's output carries every field of the events it reads; a join's, those
            // of both sides.
            || plan.stages.iter().any(|s| match s.kind {
                StageKind::TopN(_) => super::graph::reads_events_of(&plan, &s.inputs[0]) == Some(index),
                StageKind::Join(_) => s
                    .inputs
                    .iter()
                    .any(|i| super::graph::reads_events_of(&plan, i) == Some(index)),
                _ => false,
            })
        {
            // Enriched outputs carry every field; context rows attach every field by default.
            projections.push(None);
            continue;
        }
        let mut fields = BTreeSet::new();
        let dedup_keys = plan
            .dedups()
            .filter(|d| d.source == index)
            .flat_map(|d| d.rules.iter().flat_map(|r| r.key.clone()));
        // Aggregates over another aggregate read its rows, not the source.
        let aggregate_reads = plan
            .stages
            .iter()
            .filter(|s| super::graph::reads_events_of(&plan, &s.inputs[0]) == Some(index))
            .flat_map(|s| match &s.kind {
                StageKind::Aggregate(a) => aggregate_fields(a),
                StageKind::Forecast(f) => f.keys.iter().chain(&f.values).map(|(_, a)| a.clone()).collect(),
                _ => Vec::new(),
            });
        for acc in dedup_keys.chain(aggregate_reads) {
            if let Accessor::Payload(path) = acc {
                if let Some(head) = path.head() {
                    fields.insert(head.as_str().to_string());
                }
            }
        }
        projections.push(Some(fields.into_iter().collect()));
    }
    for (source, projection) in plan.sources.iter_mut().zip(projections) {
        if projection.is_some() {
            source.projection = projection;
        }
    }
    Ok((spec, plan))
}

/// Marks an aggregate whose input can retract (a continuous join upstream, or the revised rows
/// of another aggregate) as non-monotonic, and sets how long its closed windows keep accepting
/// revisions (`retain_after_close`, default the window size). The key is refused on an
/// insert-only input, where it would do nothing.
fn derive_monotonic(
    cx: &Cx,
    spec: &S<AggregateSpec>,
    i: usize,
    agg: &mut AggregatePlan,
    retracting: bool,
) -> Result<(), SpecError> {
    let a = spec.get_ref();
    let key = format!("aggregates[{i}].retain_after_close");
    match (retracting, a.retain_after_close.as_ref()) {
        (false, Some(r)) => Err(cx.error(
            r.span(),
            &key,
            format!("`{}` never retracts events, so its closed windows never change", a.source.get_ref()),
            Some(
                "only aggregates downstream of a `mode = \"continuous\"` join, a `keep = \"last\"` dedup, a top-N or an aggregate that revises its rows take this key"
                    .into(),
            ),
        )),
        (false, None) => Ok(()),
        // A retraction can split a session; session windows read insert-only inputs only.
        (true, _) if agg.session_gap_ms.is_some() => Err(cx.error(
            a.window.span(),
            &format!("aggregates[{i}].window.session"),
            format!(
                "`{}` can retract events (a continuous join, a `keep = \"last\"` dedup, a top-N or revised rows upstream), and session windows read insert-only inputs",
                a.source.get_ref()
            ),
            Some("read an insert-only input: `final` rows of an aggregate, or the events before a continuous join".into()),
        )),
        (true, r) => {
            agg.monotonic = false;
            agg.retain_ms = match r {
                Some(r) => cx.duration(r, &key)?,
                None => agg.window.size_ms,
            };
            Ok(())
        }
    }
}

/// Refuses `keep = "last"` dedup rules whose retractions would reach an operator that reads
/// its input as insert-only: an as-of join of the source, a join whose context is the source,
/// and routers, replication and services stages reading its events.
fn check_keep_last(cx: &Cx, spec: &SpecFile, plan: &Plan) -> Result<(), SpecError> {
    for d in plan.dedups().filter(|d| d.retracts()) {
        let source = &plan.sources[d.source].name;
        let at = spec
            .dedup
            .iter()
            .filter(|(name, _)| name.get_ref() == source)
            .flat_map(|(_, rules)| rules.iter())
            .find_map(|(event_type, r)| {
                let k = r.keep.as_ref().filter(|k| k.get_ref() == "last")?;
                Some((k.span(), format!("dedup.{source}.{}.keep", event_type.get_ref())))
            })
            .expect("a retracting dedup plan has a `keep = \"last\"` rule");
        let refuse = |why: String| {
            cx.error(
                at.0.clone(),
                &at.1,
                format!("`keep = \"last\"` retracts events it emitted, but {why}"),
                Some("keep the first occurrence (`keep = \"first\"`), or read the source elsewhere".into()),
            )
        };
        for e in plan.enrichments() {
            if e.source == d.source {
                if let Some(j) = e.joins.iter().find(|j| j.mode == JoinMode::AsOf) {
                    return Err(refuse(format!(
                        "the as-of join `{}` of `enrich.{source}` emits each event once, as of its time (use `mode = \"continuous\"`)",
                        j.alias
                    )));
                }
            }
            if let Some(j) = e.joins.iter().find(|j| j.context == d.source) {
                return Err(refuse(format!(
                    "`{source}` is the context of join `{}`, which reads its rows as insert-only",
                    j.alias
                )));
            }
        }
        for stage in &plan.stages {
            let kind = stage.kind.name();
            if !matches!(
                stage.kind,
                StageKind::Router(_) | StageKind::Replication(_) | StageKind::Services(_)
            ) {
                continue;
            }
            if stage
                .inputs
                .iter()
                .any(|i| super::graph::reads_events_of(plan, i) == Some(d.source) && plan.retracts(i))
            {
                return Err(refuse(format!(
                    "the {kind} stage `{}` reads the events of `{source}` as insert-only",
                    stage.name
                )));
            }
        }
    }
    Ok(())
}

fn plan_names_output(name: &str) -> bool {
    super::SCHEMA_OUTPUTS.contains(&name)
        || [super::DUPLICATES, super::BLOCKED, super::RULE_STATS, super::COUNTERS].contains(&name)
}

/// A name that becomes a folder: letters, digits, `_` and `-`.
fn valid_output_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A top-level field name (derived fields, transforms, join aliases).
fn valid_field_name(name: &str) -> bool {
    matches!(FieldPath::parse(name), Ok(p) if p.head().is_some_and(|h| h.as_str() == name))
}

/// Every field an aggregate reads.
fn aggregate_fields(agg: &AggregatePlan) -> Vec<Accessor> {
    let mut out: Vec<Accessor> = agg.group_by.iter().map(|(_, a)| a.clone()).collect();
    let exprs = agg
        .filter
        .iter()
        .chain(agg.measures.iter().flat_map(|m| m.arg.iter().chain(m.filter.iter())));
    for e in exprs {
        out.extend(e.fields());
    }
    out
}

fn one_of<'a>(names: impl IntoIterator<Item = &'a String>) -> String {
    let list: Vec<String> = names.into_iter().map(|n| format!("`{n}`")).collect();
    if list.is_empty() {
        "none are defined".to_string()
    } else {
        format!("one of {}", list.join(", "))
    }
}

struct Cx<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Cx<'_> {
    fn error(&self, span: Range<usize>, key: &str, message: String, help: Option<String>) -> SpecError {
        let (line, column) = if span == (0..0) && key.is_empty() {
            (0, 0)
        } else {
            line_col(self.text, span.start)
        };
        SpecError {
            file: self.file.to_path_buf(),
            line,
            column,
            key: key.to_string(),
            message,
            help,
        }
    }

    fn duration(&self, s: &S<String>, key: &str) -> Result<u64, SpecError> {
        parse_duration(s.get_ref()).map_err(|m| {
            self.error(
                s.span(),
                key,
                m,
                Some("a duration such as `500ms`, `30s`, `5m`, `1h`, `1d`".into()),
            )
        })
    }

    fn expr(&self, s: &S<String>, key: &str, offset: usize, text: &str) -> Result<Expr, SpecError> {
        expr::parse(text).map_err(|e| {
            // `e.column` counts chars of `text`, which starts `offset` bytes into the value.
            let at = offset + text.chars().take(e.column - 1).map(char::len_utf8).sum::<usize>();
            let whole = s.get_ref();
            let column = whole[..at.min(whole.len())].chars().count() + 1;
            let span = value_span(self.text, s.span(), whole, at);
            let help = expr_help(whole, column, &e.message);
            self.error(span, key, format!("column {column}: {}", e.message), Some(help))
        })
    }

    fn source(
        &self,
        name: &str,
        spec: &S<SourceSpec>,
        base: &Path,
        overridden: Option<PathBuf>,
    ) -> Result<SourcePlan, SpecError> {
        let s = spec.get_ref();
        let key = |k: &str| format!("sources.{name}.{k}");
        // A `tcp` source has no path; `--input NAME=FILE` replays one from a file instead.
        let tcp = s.format.as_ref().is_some_and(|f| f.get_ref() == "tcp");
        if let (true, Some(p)) = (tcp, &s.path) {
            let help = Some("replay a tcp source from a file with `--input NAME=FILE`".into());
            return Err(self.error(p.span(), &key("path"), "a `tcp` source has no path".into(), help));
        }
        let paths: Vec<PathBuf> = match (overridden, &s.path) {
            (Some(p), _) => vec![p],
            (None, Some(path)) => match path.get_ref() {
                PathList::One(p) => vec![base.join(p)],
                PathList::Many(ps) => ps.iter().map(|p| base.join(p)).collect(),
            },
            (None, None) => Vec::new(),
        };
        if paths.is_empty() && !tcp {
            let span = s.path.as_ref().map_or(spec.span(), |p| p.span());
            return Err(self.error(span, &key("path"), "no paths given".into(), None));
        }
        let format = match &s.format {
            Some(_) if tcp && paths.is_empty() => Format::Tcp,
            Some(f) if !tcp => match f.get_ref().as_str() {
                "parquet" => Format::Parquet,
                "ndjson" | "jsonl" => Format::Ndjson,
                "csv" => Format::Csv,
                other => {
                    return Err(self.error(
                        f.span(),
                        &key("format"),
                        format!("unknown format `{other}`"),
                        Some("one of `parquet`, `ndjson`, `csv`, `tcp`".into()),
                    ))
                }
            },
            _ => {
                let ext = paths[0].extension().and_then(|e| e.to_str()).unwrap_or("");
                match ext {
                    "ndjson" | "jsonl" | "json" => Format::Ndjson,
                    "csv" => Format::Csv,
                    _ => Format::Parquet,
                }
            }
        };
        let time_unit_ms = match &s.time_unit {
            None => 1.0,
            Some(u) => match u.get_ref().as_str() {
                "ms" => 1.0,
                "s" => 1_000.0,
                "us" => 0.001,
                "ns" => 0.000_001,
                other => {
                    return Err(self.error(
                        u.span(),
                        &key("time_unit"),
                        format!("unknown time unit `{other}`"),
                        Some("one of `ms`, `s`, `us`, `ns`".into()),
                    ))
                }
            },
        };
        let allowed_lateness_ms = match &s.allowed_lateness {
            Some(l) => self.duration(l, &key("allowed_lateness"))?,
            None => 0,
        };
        // A tcp source without a file has no schema to read: open unless pinned (see `plan_str`).
        let fields = match &s.fields {
            None if format == Format::Tcp => Fields::Open,
            None => Fields::Closed,
            Some(f) => match f.get_ref().as_str() {
                "closed" => Fields::Closed,
                "open" => Fields::Open,
                other => {
                    return Err(self.error(
                        f.span(),
                        &key("fields"),
                        format!("unknown fields setting `{other}`"),
                        Some("`closed` (stages may only name fields the source's schema has) or `open`".into()),
                    ))
                }
            },
        };
        let mut limits = SourceLimits::default();
        if let Some(d) = &s.max_depth {
            limits.max_depth = *d.get_ref();
            if !(1..=SourceLimits::MAX_MAX_DEPTH).contains(&limits.max_depth) {
                let message = format!("max_depth must be 1 to {}", SourceLimits::MAX_MAX_DEPTH);
                return Err(self.error(d.span(), &key("max_depth"), message, None));
            }
        }
        if let Some(f) = &s.max_future {
            limits.max_future_ms = self.duration(f, &key("max_future"))?;
        }
        let csv = super::csv::options(s, format == Format::Csv)
            .map_err(|(span, k, message, help)| self.error(span, &key(k), message, help))?
            .unwrap_or_default();
        for (field, k) in
            std::iter::once((&s.time_field, "time_field")).chain(s.type_field.iter().map(|t| (t, "type_field")))
        {
            if let Err(e) = FieldPath::parse(field.get_ref()) {
                return Err(self.error(field.span(), &key(k), e.to_string(), None));
            }
        }
        Ok(SourcePlan {
            name: name.to_string(),
            format,
            paths,
            time_field: s.time_field.get_ref().clone(),
            type_field: s.type_field.as_ref().map(|t| t.get_ref().clone()).unwrap_or_default(),
            fixed_type: s.type_field.is_none().then(|| name.to_string()),
            time_unit_ms,
            allowed_lateness_ms,
            projection: None,
            fields,
            limits,
            csv,
        })
    }

    /// An `emit` key: `updates` (the default) or `final`.
    fn emit(&self, e: Option<&S<String>>, key: &str) -> Result<Emit, SpecError> {
        match e.map(|e| (e, e.get_ref().as_str())) {
            None | Some((_, "updates")) => Ok(Emit::Updates),
            Some((_, "final")) => Ok(Emit::Final),
            Some((e, other)) => Err(self.error(
                e.span(),
                key,
                format!("unknown emit mode `{other}`"),
                Some("one of `updates`, `final`".into()),
            )),
        }
    }

    /// Plans forecast `i` over events whose time and type fields are `fields`.
    fn forecast(
        &self,
        i: usize,
        spec: &S<ForecastSpec>,
        fields: (&str, &str),
        tick_ms: u64,
    ) -> Result<ForecastPlan, SpecError> {
        use crate::model::forecast::{Aggregation, ForecastConfig, GapRule, ModelKind, Selection};
        let f = spec.get_ref();
        let key = |k: &str| format!("forecasts[{i}].{k}");
        let name = f.name.get_ref().clone();
        if !valid_output_name(&name) {
            return Err(self.error(
                f.name.span(),
                &key("name"),
                format!("`{name}` is not a valid output name"),
                Some("letters, digits, `_` and `-` (it becomes a folder name)".into()),
            ));
        }
        let (time_field, type_field) = fields;
        let accessor = |s: &S<String>, k: &str| -> Result<(String, Accessor), SpecError> {
            let path = FieldPath::parse(s.get_ref()).map_err(|e| self.error(s.span(), k, e.to_string(), None))?;
            Ok((s.get_ref().clone(), Accessor::bind(path, time_field, type_field)))
        };
        let mut keys = Vec::new();
        for (j, k) in f.keys.iter().enumerate() {
            keys.push(accessor(k, &key(&format!("keys[{j}]")))?);
        }
        let mut values: Vec<(String, Accessor)> = Vec::new();
        for (j, v) in f.values.iter().enumerate() {
            let at = key(&format!("values[{j}]"));
            // A series is one value field per key: a field listed twice would be two series
            // with one name, each with its own forecast and errors.
            if let Some(first) = values.iter().position(|(name, _)| name == v.get_ref()) {
                return Err(self.error(
                    v.span(),
                    &at,
                    format!("`{}` is listed twice (also values[{first}])", v.get_ref()),
                    Some("list each value field once".into()),
                ));
            }
            values.push(accessor(v, &at)?);
        }
        let mut allowed = Vec::new();
        for (field, list) in &f.allowed {
            let at = key(&format!("allowed.{field}"));
            let Some(index) = keys.iter().position(|(k, _)| k == field) else {
                let names: Vec<String> = keys.iter().map(|(k, _)| k.clone()).collect();
                return Err(self.error(
                    list.span(),
                    &at,
                    format!("`{field}` is not one of the forecast's `keys`"),
                    Some(if names.is_empty() {
                        "the forecast has no `keys`".into()
                    } else {
                        one_of(&names)
                    }),
                ));
            };
            let mut known = Vec::new();
            for (j, v) in list.get_ref().iter().enumerate() {
                let value = match v.get_ref() {
                    toml::Value::String(s) => crate::value::Value::str(s),
                    toml::Value::Integer(n) => crate::value::Value::Int(*n),
                    toml::Value::Boolean(b) => crate::value::Value::Bool(*b),
                    other => {
                        return Err(self.error(
                            v.span(),
                            &format!("{at}[{j}]"),
                            format!("a {} cannot be a key value", other.type_str()),
                            Some("strings, integers or booleans".into()),
                        ))
                    }
                };
                known.push(value);
            }
            if known.is_empty() {
                return Err(self.error(
                    list.span(),
                    &at,
                    "no allowed values: every sample would be a dead letter".into(),
                    Some(format!(
                        "list the known values, `{field} = [\"eu-west\", \"us-east\"]`, or leave `{field}` out"
                    )),
                ));
            }
            known.sort();
            known.dedup();
            allowed.push((index, known));
        }
        if values.is_empty() {
            return Err(self.error(
                spec.span(),
                &key("values"),
                "no values to forecast".into(),
                Some("`values = [\"cpu\", \"latency_ms\"]`: numeric fields".into()),
            ));
        }
        let step_ms = self.duration(&f.step, &key("step"))?;
        if step_ms == 0 || step_ms % tick_ms != 0 {
            return Err(self.error(
                f.step.span(),
                &key("step"),
                format!("the step must be a positive multiple of the pipeline tick ({tick_ms} ms)"),
                None,
            ));
        }
        // A duration in whole steps.
        let steps = |s: &S<String>, k: &str| -> Result<usize, SpecError> {
            let ms = self.duration(s, k)?;
            if ms == 0 || ms % step_ms != 0 {
                return Err(self.error(
                    s.span(),
                    k,
                    format!("must be a positive multiple of the step ({step_ms} ms)"),
                    None,
                ));
            }
            Ok((ms / step_ms) as usize)
        };
        let aggregation = match f.aggregation.as_ref().map(|a| (a, a.get_ref().as_str())) {
            None | Some((_, "mean")) => Aggregation::Mean,
            Some((_, "max")) => Aggregation::Max,
            Some((_, "last")) => Aggregation::Last,
            Some((a, other)) => {
                return Err(self.error(
                    a.span(),
                    &key("aggregation"),
                    format!("unknown aggregation `{other}`"),
                    Some("one of `mean`, `max`, `last`".into()),
                ))
            }
        };
        let mut periods = Vec::new();
        for (j, p) in f.periods.iter().flatten().enumerate() {
            periods.push(steps(p, &key(&format!("periods[{j}]")))?);
        }
        let horizon = *f.horizon.get_ref();
        if !(1..=10_000).contains(&horizon) {
            return Err(self.error(
                f.horizon.span(),
                &key("horizon"),
                "the horizon is 1 to 10000 steps".into(),
                None,
            ));
        }
        let primary = periods.first().copied();
        let window = match &f.training_window {
            Some(w) => steps(w, &key("training_window"))?,
            None => primary.map_or(200, |p| (4 * p).max(50)),
        };
        let refit_every = match &f.refit_every {
            Some(r) => steps(r, &key("refit_every"))?,
            None => primary.unwrap_or(50),
        };
        let mut config = ForecastConfig::new(horizon as usize, periods, window, refit_every);
        if let Some(k) = &f.search_every {
            if !(1..=1_000_000).contains(k.get_ref()) {
                return Err(self.error(
                    k.span(),
                    &key("search_every"),
                    format!("must be between 1 and 1000000 refits (got {})", k.get_ref()),
                    Some("1 searches at every refit".into()),
                ));
            }
            config.search_every = *k.get_ref() as usize;
        }
        if f.periods.is_some() {
            // Periods given (possibly none): no detection.
            config.detect_periods = 0;
        }
        if let Some(models) = &f.models {
            config.models.clear();
            for (j, m) in models.iter().enumerate() {
                let Some(kind) = ModelKind::parse(m.get_ref()) else {
                    let names: Vec<String> = ModelKind::ALL.iter().map(|k| k.name().to_string()).collect();
                    return Err(self.error(
                        m.span(),
                        &key(&format!("models[{j}]")),
                        format!("unknown model `{}`", m.get_ref()),
                        Some(one_of(&names)),
                    ));
                };
                config.models.push(kind);
            }
        }
        match f.selection.as_ref().map(|s| (s, s.get_ref().as_str())) {
            None | Some((_, "inverse_error")) => {}
            Some((_, "best")) => config.selection = Selection::Best,
            Some((s, other)) => {
                return Err(self.error(
                    s.span(),
                    &key("selection"),
                    format!("unknown selection `{other}`"),
                    Some("one of `inverse_error`, `best`".into()),
                ))
            }
        }
        // A gap longer than the training window restarts the series rather than filling it.
        let gap = match &f.max_interpolate {
            None => GapRule {
                max_fill: window,
                ..GapRule::default()
            },
            Some(m) if *m.get_ref() >= 0 => GapRule {
                max_interpolate: *m.get_ref() as usize,
                max_fill: window,
            },
            Some(m) => {
                return Err(self.error(m.span(), &key("max_interpolate"), "must not be negative".into(), None));
            }
        };
        config
            .validate()
            .map_err(|e| self.error(spec.span(), &key(e.field), e.to_string(), None))?;
        let emit = self.emit(f.emit.as_ref(), &key("emit"))?;
        Ok(ForecastPlan {
            name,
            keys,
            values,
            allowed,
            step_ms,
            aggregation,
            gap,
            config,
            emit,
        })
    }

    /// Plans aggregate `i`, reading events whose time and type fields are `fields`, that come
    /// from source `source`.
    fn aggregate(
        &self,
        i: usize,
        spec: &S<AggregateSpec>,
        fields: (&str, &str),
        source: usize,
        tick_ms: u64,
    ) -> Result<AggregatePlan, SpecError> {
        let a = spec.get_ref();
        let key = |k: &str| format!("aggregates[{i}].{k}");
        let name = a.name.get_ref().clone();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(self.error(
                a.name.span(),
                &key("name"),
                format!("`{name}` is not a valid output name"),
                Some("letters, digits, `_` and `-` (it becomes a folder name)".into()),
            ));
        }
        let (time_field, type_field) = fields;
        let bind = |e: Expr| e.bind(time_field, type_field);

        let filter = match &a.filter {
            Some(f) => Some(bind(self.expr(f, &key("where"), 0, f.get_ref())?)),
            None => None,
        };
        let (window, session_gap_ms) = match &a.window.get_ref().session {
            Some(gap) => {
                let gap = self.session(&a.window, gap, &key("window"))?;
                (
                    WindowPlan {
                        size_ms: gap,
                        slide_ms: gap,
                    },
                    Some(gap),
                )
            }
            None => (self.window(&a.window, &key("window"), tick_ms)?, None),
        };
        let mut group_by = Vec::new();
        for (at, alias, g) in a.group_by.entries() {
            let gkey = key(&format!("group_by{at}"));
            let path = FieldPath::parse(g.get_ref()).map_err(|e| self.error(g.span(), &gkey, e.to_string(), None))?;
            let column = match alias {
                Some(alias) if valid_field_name(alias) => alias.to_string(),
                Some(alias) => {
                    return Err(self.error(
                        g.span(),
                        &gkey,
                        format!("`{alias}` is not a column name"),
                        Some("letters, digits, `_` and `$`, not starting with a digit".into()),
                    ))
                }
                None => group_column(g.get_ref()),
            };
            if group_by.iter().any(|(c, _): &(String, Accessor)| *c == column) {
                return Err(self.error(
                    g.span(),
                    &gkey,
                    format!("group column `{column}` is defined twice"),
                    Some("name the columns: `group_by = { name = \"field.path\", ... }`".into()),
                ));
            }
            group_by.push((column, Accessor::bind(path, time_field, type_field)));
        }
        let mut measures = Vec::new();
        for (column, m) in &a.measures {
            let mkey = key(&format!("measures.{column}"));
            if group_by.iter().any(|(g, _)| g == column)
                || ["window_start", "window_end", "time", "diff"].contains(&column.as_str())
                || measures.iter().any(|x: &MeasurePlan| &x.name == column)
            {
                return Err(self.error(m.span(), &mkey, format!("column `{column}` is defined twice"), None));
            }
            let mut plan = self.measure(column, m, &mkey)?;
            plan.arg = plan.arg.map(bind);
            plan.filter = plan.filter.map(bind);
            measures.push(plan);
        }
        if measures.is_empty() {
            return Err(self.error(spec.span(), &key("measures"), "no measures".into(), None));
        }
        let emit = self.emit(a.emit.as_ref(), &key("emit"))?;
        Ok(AggregatePlan {
            name,
            source,
            filter,
            window,
            session_gap_ms,
            group_by,
            measures,
            emit,
            // Derived from the input once it is planned (see `derive_monotonic`).
            monotonic: true,
            retain_ms: 0,
            input_lag_ms: 0,
        })
    }

    /// Plans top-N stage `i`, reading `input` (already planned in `plan`).
    fn top_n(
        &self,
        i: usize,
        spec: &S<super::spec::TopNSpec>,
        plan: &Plan,
        input: &StageRef,
    ) -> Result<super::TopNPlan, SpecError> {
        use super::top_n::{parse_order_key, OrderKey, WINDOW_COLUMNS};
        let t = spec.get_ref();
        let key = |k: &str| format!("top_n[{i}].{k}");
        let name = t.name.get_ref().clone();
        if !valid_output_name(&name) {
            return Err(self.error(
                t.name.span(),
                &key("name"),
                format!("`{name}` is not a valid output name"),
                Some("letters, digits, `_` and `-` (it becomes a folder name)".into()),
            ));
        }
        let (time_field, type_field) = plan.fields_of(input);
        let mut partition_by = Vec::new();
        for (j, p) in t.partition_by.iter().enumerate() {
            let path = FieldPath::parse(p.get_ref())
                .map_err(|e| self.error(p.span(), &key(&format!("partition_by[{j}]")), e.to_string(), None))?;
            partition_by.push((p.get_ref().clone(), Accessor::bind(path, time_field, type_field)));
        }
        if t.order_by.is_empty() {
            return Err(self.error(
                spec.span(),
                &key("order_by"),
                "a top-N needs an `order_by`: without an order, no row comes first".into(),
                Some("for example `order_by = [\"bids desc\"]` (`asc` is the default)".into()),
            ));
        }
        let mut order_by = Vec::new();
        for (j, o) in t.order_by.iter().enumerate() {
            let (path, field, desc) = parse_order_key(o.get_ref()).map_err(|e| {
                self.error(
                    o.span(),
                    &key(&format!("order_by[{j}]")),
                    e.to_string(),
                    Some("`\"FIELD\"`, `\"FIELD asc\"` or `\"FIELD desc\"`".into()),
                )
            })?;
            order_by.push(OrderKey {
                field,
                accessor: Accessor::bind(path, time_field, type_field),
                desc,
            });
        }
        let n = *t.n.get_ref();
        if n < 1 {
            return Err(self.error(
                t.n.span(),
                &key("n"),
                format!("`n = {n}` keeps no rows; it must be at least 1"),
                Some("`n = 1` keeps the first row of each partition (argmax with `desc`)".into()),
            ));
        }
        let rank = match &t.rank {
            None => None,
            Some(r) => {
                let column = r.get_ref();
                if !valid_field_name(column) || column == time_field || column == type_field {
                    return Err(self.error(
                        r.span(),
                        &key("rank"),
                        format!("`{column}` cannot name the rank field"),
                        Some("a top-level field name that is not the time or type field".into()),
                    ));
                }
                let columns = self.columns_of(plan, input);
                if columns.iter().any(|c| c == column) {
                    return Err(self.error(
                        r.span(),
                        &key("rank"),
                        format!("the rows already have a column `{column}`"),
                        Some("choose another name for the rank".into()),
                    ));
                }
                Some(column.clone())
            }
        };
        // Partitions of an aggregate's rows by window hold one window each: every row has the
        // window's time, and nothing reaches it `lag` after that. That holds for the rows of a
        // fixed window, and for sessions partitioned by their end (a `final` session row is
        // stamped at its end); not for sessions by their start (sessions that start together
        // end apart), nor for rows that only carry a window's time field, such as a join's
        // pairs of an aggregate's rows (a pair arrives when its later side does).
        let by = |column: &str| t.partition_by.iter().any(|p| p.get_ref() == column);
        let windowed = time_field == super::WINDOW_TIME
            && match input {
                StageRef::Stage(j) => match &plan.stages[*j].kind {
                    StageKind::Aggregate(a) if a.session_gap_ms.is_none() => WINDOW_COLUMNS.into_iter().any(by),
                    StageKind::Aggregate(a) => {
                        a.emit == super::Emit::Final && (by("window_end") || by(super::WINDOW_TIME))
                    }
                    _ => false,
                },
                _ => false,
            };
        Ok(super::TopNPlan {
            name,
            partition_by,
            order_by,
            n: n as u64,
            with_ties: t.with_ties.as_ref().is_some_and(|w| *w.get_ref()),
            rank,
            monotonic: !plan.retracts(input),
            release_lag_ms: windowed.then(|| plan.lag_of(input)),
        })
    }

    /// The columns of the rows `input` carries, when they are known without reading files (an
    /// aggregate's or a top-N's); none otherwise.
    fn columns_of(&self, plan: &Plan, input: &StageRef) -> Vec<String> {
        let StageRef::Stage(j) = input else { return Vec::new() };
        match &plan.stages[*j].kind {
            StageKind::Aggregate(a) => a.columns(),
            StageKind::TopN(t) => {
                let mut columns = self.columns_of(plan, &plan.stages[*j].inputs[0]);
                columns.extend(t.rank.clone());
                columns
            }
            _ => Vec::new(),
        }
    }

    fn schema(
        &self,
        stage: &S<String>,
        s: &SchemaSpec,
        sources: &[SourcePlan],
        base: &Path,
    ) -> Result<SchemaPlan, SpecError> {
        let name = stage.get_ref();
        let key = |k: &str| format!("schemas.{name}.{k}");
        let Some(source) = sources.iter().position(|src| &src.name == name) else {
            let names: Vec<String> = sources.iter().map(|s| s.name.clone()).collect();
            return Err(self.error(
                stage.span(),
                &format!("schemas.{name}"),
                format!("no source named `{name}`"),
                Some(one_of(&names)),
            ));
        };
        let window_ms = match &s.window {
            Some(w) => self.duration(w, &key("window"))?,
            None => 3_600_000,
        };
        let drift_threshold = match &s.drift_threshold {
            Some(t) if !(0.0..=1.0).contains(t.get_ref()) => {
                return Err(self.error(
                    t.span(),
                    &key("drift_threshold"),
                    "must be between 0 and 1".into(),
                    None,
                ))
            }
            Some(t) => *t.get_ref(),
            None => 0.1,
        };
        let compatibility = match &s.compatibility {
            Some(c) => c.get_ref().parse().map_err(|_| {
                self.error(
                    c.span(),
                    &key("compatibility"),
                    format!("unknown compatibility mode `{}`", c.get_ref()),
                    Some("one of BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE, NONE".into()),
                )
            })?,
            None => super::Compatibility::Backward,
        };
        let pick = |v: &Option<S<String>>, k: &str, options: &[&str]| -> Result<usize, SpecError> {
            match v {
                None => Ok(0),
                Some(x) => options.iter().position(|o| o == x.get_ref()).ok_or_else(|| {
                    let list: Vec<String> = options.iter().map(|o| format!("`{o}`")).collect();
                    self.error(
                        x.span(),
                        &key(k),
                        format!("unknown value `{}`", x.get_ref()),
                        Some(format!("one of {}", list.join(", "))),
                    )
                }),
            }
        };
        let quarantine = pick(&s.on_incompatible, "on_incompatible", &["dead_letter", "quarantine"])? == 1;
        let drop_extra = pick(&s.extra_fields, "extra_fields", &["keep", "drop"])? == 1;
        let pinned = s.pin.iter().map(|(t, p)| (t.clone(), base.join(p.get_ref()))).collect();
        let mut defaults = Vec::new();
        for (event_type, fields) in &s.defaults {
            for (path, value) in fields {
                let json = serde_json::to_value(value.get_ref()).map_err(|e| {
                    self.error(
                        value.span(),
                        &key(&format!("defaults.{event_type}.{path}")),
                        e.to_string(),
                        None,
                    )
                })?;
                defaults.push((event_type.clone(), path.clone(), json));
            }
        }
        Ok(SchemaPlan {
            source,
            window_ms,
            drift_threshold,
            compatibility,
            quarantine,
            drop_extra,
            accept_previous: s.accept_previous.as_ref().map_or(1, |a| *a.get_ref()),
            max_depth: s.max_depth.as_ref().map_or(32, |a| *a.get_ref()),
            min_events: s.min_events.as_ref().map_or(1, |a| *a.get_ref()),
            pinned,
            defaults,
            registry_dir: None,
        })
    }

    fn dedup(
        &self,
        stage: &S<String>,
        rules: &std::collections::BTreeMap<S<String>, DedupSpec>,
        sources: &[SourcePlan],
    ) -> Result<DedupPlan, SpecError> {
        let name = stage.get_ref();
        let Some(source) = sources.iter().position(|s| &s.name == name) else {
            let names: Vec<String> = sources.iter().map(|s| s.name.clone()).collect();
            return Err(self.error(
                stage.span(),
                &format!("dedup.{name}"),
                format!("no source named `{name}`"),
                Some(one_of(&names)),
            ));
        };
        let src = &sources[source];
        let mut out = Vec::new();
        for (event_type, r) in rules {
            let key = |k: &str| format!("dedup.{name}.{}.{k}", event_type.get_ref());
            if r.key.is_empty() {
                return Err(self.error(
                    event_type.span(),
                    &key("key"),
                    "an idempotency key needs at least one field".into(),
                    None,
                ));
            }
            let mut fields = Vec::new();
            for (i, k) in r.key.iter().enumerate() {
                let path = FieldPath::parse(k.get_ref())
                    .map_err(|e| self.error(k.span(), &key(&format!("key[{i}]")), e.to_string(), None))?;
                fields.push(Accessor::bind(path, &src.time_field, &src.type_field));
            }
            let ttl_ms = self.duration(&r.ttl, &key("ttl"))?;
            if ttl_ms == 0 {
                return Err(self.error(r.ttl.span(), &key("ttl"), "the TTL must be positive".into(), None));
            }
            let keep = match r.keep.as_ref().map(|k| (k, k.get_ref().as_str())) {
                None | Some((_, "first")) => Keep::First,
                Some((_, "last")) => Keep::Last,
                Some((k, other)) => {
                    return Err(self.error(
                        k.span(),
                        &key("keep"),
                        format!("unknown `keep` value `{other}`"),
                        Some("one of `first` (the default), `last`".into()),
                    ))
                }
            };
            out.push(DedupRule {
                event_type: event_type.get_ref().clone(),
                key: fields,
                ttl_ms,
                keep,
            });
        }
        Ok(DedupPlan { source, rules: out })
    }

    /// The stream a stage reads by `name`: a source (after its stages), an enriched output, a
    /// route destination (`streams`), or one of the `aggregates` already planned (name, stage).
    fn stream(
        &self,
        name: &S<String>,
        key: &str,
        streams: &[(String, StageRef)],
        aggregates: &[(&String, usize)],
    ) -> Result<StageRef, SpecError> {
        let read = name.get_ref();
        if let Some((_, stage)) = aggregates.iter().find(|(n, _)| *n == read) {
            return Ok(StageRef::Stage(*stage));
        }
        if let Some((_, r)) = streams.iter().find(|(n, _)| n == read) {
            return Ok(r.clone());
        }
        let mut names: Vec<String> = streams.iter().map(|(n, _)| n.clone()).collect();
        names.extend(aggregates.iter().map(|(n, _)| n.to_string()));
        Err(self.error(
            name.span(),
            key,
            format!("no source or output named `{read}`"),
            Some(one_of(&names)),
        ))
    }

    /// `[metadata.SOURCE]`: priority, complexity and shard key, each a value and a default.
    fn metadata(&self, stage: &S<String>, m: &MetadataSpec, sources: &[SourcePlan]) -> Result<MetadataPlan, SpecError> {
        use super::metadata::{InvalidMetadata, MetaField, DEFAULT_SHARDS};
        let name = stage.get_ref();
        let key = |k: &str| format!("metadata.{name}.{k}");
        let source = self.source_index(stage, &format!("metadata.{name}"), sources)?;
        let src = &sources[source];
        let bind = |e: Expr| e.bind(&src.time_field, &src.type_field);
        let field = |field: &'static str,
                     spec: Option<&S<MetaFieldSpec>>,
                     range: Option<(i64, i64)>|
         -> Result<MetaField, SpecError> {
            let (value, default) = match spec {
                Some(s) => (s.get_ref().value.as_ref(), s.get_ref().default.as_ref()),
                None => (None, None),
            };
            let value = match value {
                Some(text) => bind(self.expr(text, &key(&format!("{field}.value")), 0, text.get_ref())?),
                None if field == "shard_key" => {
                    let span = spec.map_or(stage.span(), |s| s.span());
                    return Err(self.error(
                        span,
                        &key("shard_key.value"),
                        "a shard key needs a value".into(),
                        Some("for example `shard_key = { value = \"user_id\", default = \"device_id\" }`".into()),
                    ));
                }
                None => Expr::field(FieldPath::field(field)),
            };
            let default = match default {
                Some(text) => Some(bind(self.expr(
                    text,
                    &key(&format!("{field}.default")),
                    0,
                    text.get_ref(),
                )?)),
                None => None,
            };
            Ok(MetaField {
                name: field,
                value,
                default,
                range,
            })
        };
        let shards = match &m.shards {
            None => DEFAULT_SHARDS,
            Some(n) if *n.get_ref() == 0 || *n.get_ref() > 1 << 32 => {
                return Err(self.error(
                    n.span(),
                    &key("shards"),
                    "the number of shards must be 1 to 2^32".into(),
                    None,
                ))
            }
            Some(n) => *n.get_ref(),
        };
        let invalid = match m.invalid.as_ref().map(|s| s.get_ref().as_str()) {
            None | Some("clamp") => InvalidMetadata::Clamp,
            Some("dead_letter") => InvalidMetadata::DeadLetter,
            Some(other) => {
                let s = m.invalid.as_ref().expect("matched a value");
                return Err(self.error(
                    s.span(),
                    &key("invalid"),
                    format!("unknown policy `{other}`"),
                    Some("one of `clamp`, `dead_letter`".into()),
                ));
            }
        };
        Ok(MetadataPlan {
            source,
            priority: field("priority", m.priority.as_ref(), Some((1, 10)))?,
            complexity: field("complexity", m.complexity.as_ref(), Some((1, 5)))?,
            shard_key: field("shard_key", Some(&m.shard_key), None)?,
            shards,
            invalid,
        })
    }

    /// `[[routers]]` entry `i`, reading `events` (whose source has `metadata`) and, when given,
    /// the forecast stage `forecast`.
    fn router(
        &self,
        i: usize,
        r: &S<RouterSpec>,
        plan: &Plan,
        events: &StageRef,
        metadata: Option<&MetadataPlan>,
        forecast: Option<(&Stage, &S<String>)>,
    ) -> Result<RouterPlan, SpecError> {
        use crate::model::routing::{Health, Weights};
        let rs = r.get_ref();
        let key = |k: &str| format!("routers[{i}].{k}");
        let name = rs.name.get_ref().clone();
        if !valid_output_name(&name) {
            return Err(self.error(
                rs.name.span(),
                &key("name"),
                format!("`{name}` is not a valid output name"),
                None,
            ));
        }
        let Some(metadata) = metadata else {
            let source = &plan.sources[plan.root_source(events)].name;
            return Err(self.error(
                rs.events.span(),
                &key("events"),
                format!("the events of source `{source}` have no routing metadata"),
                Some(format!(
                    "add a `[metadata.{source}]` section with at least a `shard_key`"
                )),
            ));
        };
        let region_field = rs
            .region_field
            .as_ref()
            .map_or("region".to_string(), |f| f.get_ref().clone());
        let capacity_field = rs
            .capacity_field
            .as_ref()
            .map_or("capacity".to_string(), |f| f.get_ref().clone());
        let (time_field, type_field) = plan.fields_of(events);
        let id = match &rs.id {
            None => None,
            Some(f) => {
                let path =
                    FieldPath::parse(f.get_ref()).map_err(|e| self.error(f.span(), &key("id"), e.to_string(), None))?;
                Some(Accessor::bind(path, time_field, type_field))
            }
        };
        let algorithm = rs
            .placement
            .as_ref()
            .map_or("ring".to_string(), |p| p.get_ref().clone());
        if let Err(e) = algorithm.parse::<crate::model::placement::Algorithm>() {
            let span = rs.placement.as_ref().map_or(r.span(), |p| p.span());
            return Err(self.error(span, &key("placement"), e.to_string(), None));
        }
        let defaults = crate::model::placement::PlacementSpec::new(crate::model::placement::Algorithm::Ring);
        let vnodes = rs.vnodes.as_ref().map_or(defaults.vnodes, |v| *v.get_ref());
        let epsilon = rs.epsilon.as_ref().map_or(defaults.epsilon, |e| *e.get_ref());
        let w = rs.weights.as_ref().map(|w| w.get_ref());
        let weights = Weights {
            latency: w.and_then(|w| w.latency).unwrap_or(1.0),
            headroom: w.and_then(|w| w.headroom).unwrap_or(1.0),
            affinity: w.and_then(|w| w.affinity).unwrap_or(1.0),
        };
        let h = rs.health.as_ref().map(|h| h.get_ref());
        let latency_goal_ms = match h.and_then(|h| h.latency_goal.as_ref()) {
            Some(g) => self.duration(g, &key("health.latency_goal"))? as f64,
            None => 200.0,
        };
        let health = Health {
            latency_goal_ms,
            queue_half: h.and_then(|h| h.queue_half).unwrap_or(10.0),
            yield_from: h.and_then(|h| h.yield_from).unwrap_or(80.0),
            yield_to: h.and_then(|h| h.yield_to).unwrap_or(95.0),
            max_boost: h.and_then(|h| h.max_boost).unwrap_or(2.0),
        };
        let bad = |k: &str, what: &str| -> SpecError {
            let span = match k {
                "weights" => rs.weights.as_ref().map_or(r.span(), |w| w.span()),
                _ => rs.health.as_ref().map_or(r.span(), |h| h.span()),
            };
            self.error(span, &key(k), what.to_string(), None)
        };
        if [weights.latency, weights.headroom, weights.affinity]
            .iter()
            .any(|w| !w.is_finite() || *w < 0.0)
        {
            return Err(bad("weights", "weights must be finite and not negative"));
        }
        if latency_goal_ms <= 0.0 || health.queue_half.is_nan() || health.queue_half <= 0.0 {
            return Err(bad("health", "`latency_goal` and `queue_half` must be positive"));
        }
        if !(0.0..=100.0).contains(&health.yield_from) || !(health.yield_from..=100.0).contains(&health.yield_to) {
            return Err(bad("health", "need 0 ≤ yield_from ≤ yield_to ≤ 100 (percent cpu)"));
        }
        if !(0.0..=100.0).contains(&health.max_boost) {
            return Err(bad("health", "`max_boost` must be 0 to 100"));
        }
        let forecast_columns = match forecast {
            None => None,
            Some((stage, f)) => {
                let StageKind::Forecast(fp) = &stage.kind else {
                    unreachable!("found as a forecast")
                };
                let Some(at) = fp.keys.iter().position(|(k, _)| *k == region_field) else {
                    return Err(self.error(
                        f.span(),
                        &key("forecasts"),
                        format!("forecast `{}` has no key `{region_field}`", fp.name),
                        Some("key the forecast by the region field (`keys = [\"region\"]`)".into()),
                    ));
                };
                Some((at, fp.keys.len()))
            }
        };
        let migration = match &rs.migration {
            None => None,
            Some(m) => {
                use crate::model::migration::MigrationConfig;
                let ms = m.get_ref();
                let k = |x: &str| key(&format!("migration.{x}"));
                let dur = |d: &Option<S<String>>, x: &str, default: u64| -> Result<u64, SpecError> {
                    d.as_ref().map_or(Ok(default), |d| self.duration(d, &k(x)))
                };
                let interval_ms = dur(&ms.interval, "interval", 60_000)?;
                let metric = match &ms.metric {
                    None => 0,
                    Some(name) => super::router::ROUTER_METRICS
                        .iter()
                        .position(|x| x == name.get_ref())
                        .ok_or_else(|| {
                            self.error(
                                name.span(),
                                &k("metric"),
                                format!("unknown metric `{}`", name.get_ref()),
                                Some(one_of(&super::router::ROUTER_METRICS.map(String::from))),
                            )
                        })?,
                };
                let config = MigrationConfig {
                    imbalance: ms.imbalance.unwrap_or(0.2),
                    hysteresis: ms.hysteresis.unwrap_or(0.1),
                    sustain_ms: dur(&ms.sustain, "sustain", 300_000)? as i64,
                    max_moves: ms.max_moves.unwrap_or(8),
                    cooldown_ms: dur(&ms.cooldown, "cooldown", 900_000)? as i64,
                    region_cooldown_ms: dur(&ms.region_cooldown, "region_cooldown", interval_ms)? as i64,
                };
                let window_ms = dur(&ms.window, "window", interval_ms)?;
                if interval_ms > 0 && (window_ms < interval_ms || window_ms % interval_ms != 0) {
                    return Err(self.error(
                        ms.window.as_ref().map_or(m.span(), |w| w.span()),
                        &k("window"),
                        "the window must be a whole number of intervals".into(),
                        None,
                    ));
                }
                let valid = interval_ms > 0
                    && config.imbalance.is_finite()
                    && config.imbalance > 0.0
                    && config.hysteresis >= 0.0
                    && config.hysteresis <= config.imbalance;
                if !valid {
                    return Err(self.error(
                        m.span(),
                        &k("imbalance"),
                        "need a positive interval and 0 ≤ hysteresis ≤ imbalance, imbalance > 0".into(),
                        None,
                    ));
                }
                use super::router::MigrationLoad;
                let load = match ms.load.as_ref().map(|l| (l, l.get_ref().as_str())) {
                    None if forecast.is_some() => MigrationLoad::Forecast,
                    None | Some((_, "observed")) => MigrationLoad::Observed,
                    Some((_, "routed")) => MigrationLoad::Routed,
                    Some((l, "forecast")) if forecast.is_none() => {
                        return Err(self.error(
                            l.span(),
                            &k("load"),
                            "migration on forecast load needs the router's `forecasts`".into(),
                            None,
                        ))
                    }
                    Some((_, "forecast")) => MigrationLoad::Forecast,
                    Some((l, other)) => {
                        return Err(self.error(
                            l.span(),
                            &k("load"),
                            format!("unknown load `{other}`"),
                            Some("one of `forecast`, `observed`, `routed`".into()),
                        ))
                    }
                };
                Some(super::router::MigrationPlan {
                    interval_ms,
                    window_ms,
                    metric,
                    load,
                    config,
                })
            }
        };
        Ok(RouterPlan {
            replicas: rs
                .replication
                .as_ref()
                .map(|r| r.get_ref().factor.as_ref().map_or(3, |f| *f.get_ref())),
            migration,
            forecast_input: None,
            rates_input: None,
            name,
            region_field,
            capacity_field,
            id,
            algorithm,
            vnodes,
            epsilon,
            shards: metadata.shards,
            weights,
            health,
            forecast_columns,
        })
    }

    /// `routers[i].replication`, for the router just planned (stage `stage`), whose completions
    /// have the time and type fields `fields`.
    fn replication(
        &self,
        i: usize,
        spec: &S<super::spec::ReplicationSpec>,
        router: &RouterPlan,
        stage: usize,
        fields: (&str, &str),
    ) -> Result<super::router::ReplicationPlan, SpecError> {
        let rs = spec.get_ref();
        let key = |k: &str| format!("routers[{i}].replication.{k}");
        let Some(router_id) = &router.id else {
            return Err(self.error(
                spec.span(),
                &key("completions"),
                "replication needs the router's `id`: completions name the events they acknowledge".into(),
                Some("add `id = \"event_id\"` (the events' id field) to the router".into()),
            ));
        };
        let field = |f: Option<&S<String>>, k: &str, default: String| -> Result<Accessor, SpecError> {
            let (text, span) = f.map_or((default, spec.span()), |f| (f.get_ref().clone(), f.span()));
            let path = FieldPath::parse(&text).map_err(|e| self.error(span, &key(k), e.to_string(), None))?;
            Ok(Accessor::bind(path, fields.0, fields.1))
        };
        let default_id = match router_id {
            Accessor::Payload(path) => path.to_string(),
            _ => "event_id".to_string(),
        };
        let id = field(rs.id.as_ref(), "id", default_id)?;
        let region = field(rs.region_field.as_ref(), "region_field", router.region_field.clone())?;
        let status = field(rs.status_field.as_ref(), "status_field", "status".into())?;
        let factor = rs.factor.as_ref().map_or(3, |f| *f.get_ref());
        if !(1..=64).contains(&factor) {
            let span = rs.factor.as_ref().map_or(spec.span(), |f| f.span());
            return Err(self.error(span, &key("factor"), format!("factor {factor} is not 1 to 64"), None));
        }
        let retain_ms = match &rs.retain {
            Some(d) => self.duration(d, &key("retain"))?,
            None => 3_600_000,
        };
        let granularity = self.granularity(spec, &key)?;
        Ok(super::router::ReplicationPlan {
            router: router.name.clone(),
            router_stage: stage,
            factor,
            id,
            region,
            status,
            retain_ms,
            granularity,
        })
    }

    /// A replication's `granularity` and `window`: a window is required for `shard_window`
    /// and refused for `event`.
    fn granularity(
        &self,
        spec: &S<super::spec::ReplicationSpec>,
        key: &dyn Fn(&str) -> String,
    ) -> Result<super::router::Granularity, SpecError> {
        use super::router::Granularity;
        let rs = spec.get_ref();
        let names = ["event", "shard_window"].map(String::from);
        match (rs.granularity.as_ref().map(|g| (g, g.get_ref().as_str())), &rs.window) {
            (None | Some((_, "event")), None) => Ok(Granularity::Event),
            (None | Some((_, "event")), Some(w)) => Err(self.error(
                w.span(),
                &key("window"),
                "`window` applies only to `granularity = \"shard_window\"`".into(),
                Some("remove `window`, or add `granularity = \"shard_window\"`".into()),
            )),
            (Some((_, "shard_window")), Some(w)) => {
                let window_ms = self.duration(w, &key("window"))?;
                if window_ms == 0 {
                    return Err(self.error(w.span(), &key("window"), "the window is empty".into(), None));
                }
                Ok(Granularity::ShardWindow { window_ms })
            }
            (Some((g, "shard_window")), None) => Err(self.error(
                g.span(),
                &key("window"),
                "`granularity = \"shard_window\"` needs a `window`".into(),
                Some("add `window = \"5m\"` (a tumbling window of event time)".into()),
            )),
            (Some((g, other)), _) => {
                let help = match closest(other, names.clone()) {
                    Some(near) => format!("did you mean `{near}`? ({})", one_of(&names)),
                    None => one_of(&names),
                };
                Err(self.error(
                    g.span(),
                    &key("granularity"),
                    format!("unknown granularity `{other}`"),
                    Some(help),
                ))
            }
        }
    }

    fn source_index(&self, name: &S<String>, key: &str, sources: &[SourcePlan]) -> Result<usize, SpecError> {
        sources.iter().position(|s| &s.name == name.get_ref()).ok_or_else(|| {
            let names: Vec<String> = sources.iter().map(|s| s.name.clone()).collect();
            self.error(
                name.span(),
                key,
                format!("no source named `{}`", name.get_ref()),
                Some(one_of(&names)),
            )
        })
    }

    fn field_name(&self, s: &S<String>, key: &str) -> Result<String, SpecError> {
        if valid_field_name(s.get_ref()) {
            Ok(s.get_ref().clone())
        } else {
            Err(self.error(
                s.span(),
                key,
                format!("`{}` is not a top-level field name", s.get_ref()),
                Some("letters, digits, `_` and `$`, not starting with a digit".into()),
            ))
        }
    }

    /// `field = "expression"` pairs (derived fields, transform `set`), in order, each field a
    /// top-level name and each expression bound to the source's time and type fields.
    fn field_exprs(
        &self,
        map: &IndexMap<String, S<String>>,
        prefix: &str,
        bind: &dyn Fn(Expr) -> Expr,
    ) -> Result<Vec<(String, Expr)>, SpecError> {
        let mut out = Vec::new();
        for (field, text) in map {
            let k = format!("{prefix}.{field}");
            if !valid_field_name(field) {
                let message = format!("`{field}` is not a top-level field name");
                return Err(self.error(text.span(), &k, message, None));
            }
            out.push((field.clone(), bind(self.expr(text, &k, 0, text.get_ref())?)));
        }
        Ok(out)
    }

    fn enrich(&self, stage: &S<String>, e: &EnrichSpec, sources: &[SourcePlan]) -> Result<EnrichPlan, SpecError> {
        let name = stage.get_ref();
        let key = |k: &str| format!("enrich.{name}.{k}");
        let Some(source) = sources.iter().position(|s| &s.name == name) else {
            let names: Vec<String> = sources.iter().map(|s| s.name.clone()).collect();
            return Err(self.error(
                stage.span(),
                &format!("enrich.{name}"),
                format!("no source named `{name}`"),
                Some(one_of(&names)),
            ));
        };
        let src = &sources[source];
        let bind = |e: Expr| e.bind(&src.time_field, &src.type_field);
        let output = match &e.output {
            None => Some("enriched".to_string()),
            Some(o) if o.get_ref().is_empty() => None,
            Some(o) if valid_output_name(o.get_ref()) => Some(o.get_ref().clone()),
            Some(o) => {
                return Err(self.error(
                    o.span(),
                    &key("output"),
                    format!("`{}` is not a valid output name", o.get_ref()),
                    Some("letters, digits, `_` and `-` (it becomes a folder name), or \"\" for none".into()),
                ))
            }
        };
        let mut order_by = Vec::new();
        for (i, f) in e.order_by.iter().enumerate() {
            let path = FieldPath::parse(f.get_ref())
                .map_err(|err| self.error(f.span(), &key(&format!("order_by[{i}]")), err.to_string(), None))?;
            order_by.push(Accessor::bind(path, &src.time_field, &src.type_field));
        }
        let rule_stats_window_ms = match &e.rule_stats_window {
            Some(w) => self.duration(w, &key("rule_stats_window"))?,
            None => 3_600_000,
        };
        if rule_stats_window_ms == 0 {
            let w = e.rule_stats_window.as_ref().expect("zero comes from the spec");
            return Err(self.error(w.span(), &key("rule_stats_window"), "must be positive".into(), None));
        }
        let mut joins: Vec<JoinPlan> = Vec::new();
        for (i, j) in e.join.iter().enumerate() {
            let join = self.join(&key(&format!("join[{i}]")), j, source, sources)?;
            if joins.iter().any(|o| o.alias == join.alias) {
                let span = j.get_ref().alias.as_ref().map_or(j.span(), |a| a.span());
                return Err(self.error(
                    span,
                    &key(&format!("join[{i}].as")),
                    format!("two joins attach to the field `{}`", join.alias),
                    Some("give one of them another `as`".into()),
                ));
            }
            joins.push(join);
        }
        let derive = self.field_exprs(&e.derive, &key("derive"), &bind)?;
        let mut rules: Vec<RulePlan> = Vec::new();
        for (i, r) in e.rule.iter().enumerate() {
            let rule = self.rule(&key(&format!("rule[{i}]")), r, &bind)?;
            if rules.iter().any(|o| o.id == rule.id) {
                return Err(self.error(
                    r.get_ref().id.span(),
                    &key(&format!("rule[{i}].id")),
                    format!("rule id `{}` is used twice", rule.id),
                    None,
                ));
            }
            rules.push(rule);
        }
        Ok(EnrichPlan {
            source,
            output,
            order_by,
            rule_stats_window_ms,
            joins,
            derive,
            rules,
        })
    }

    fn join(
        &self,
        key: &str,
        spec: &S<JoinSpec>,
        source: usize,
        sources: &[SourcePlan],
    ) -> Result<JoinPlan, SpecError> {
        let j = spec.get_ref();
        let key = |k: &str| format!("{key}.{k}");
        let context = self.source_index(&j.context, &key("context"), sources)?;
        if context == source {
            return Err(self.error(
                j.context.span(),
                &key("context"),
                "a source cannot be its own context".into(),
                None,
            ));
        }
        let (src, ctx) = (&sources[source], &sources[context]);
        let alias = match &j.alias {
            Some(a) => self.field_name(a, &key("as"))?,
            None => ctx.name.clone(),
        };
        let pick = |v: &Option<S<String>>, k: &str, options: &[&str]| -> Result<usize, SpecError> {
            match v {
                None => Ok(0),
                Some(s) => options.iter().position(|o| o == s.get_ref()).ok_or_else(|| {
                    let list: Vec<String> = options.iter().map(|o| format!("`{o}`")).collect();
                    self.error(
                        s.span(),
                        &key(k),
                        format!("unknown {k} `{}`", s.get_ref()),
                        Some(format!("one of {}", list.join(", "))),
                    )
                }),
            }
        };
        let mode = [JoinMode::AsOf, JoinMode::Continuous][pick(&j.mode, "mode", &["as_of", "continuous"])?];
        let matching = [Matching::Equal, Matching::IpRange][pick(&j.matching, "match", &["equal", "ip_range"])?];
        if j.on.is_empty() || (matching == Matching::IpRange && j.on.len() != 1) {
            return Err(self.error(
                spec.span(),
                &key("on"),
                match matching {
                    Matching::Equal => "a join needs at least one `event_field = \"context_field\"` pair".into(),
                    Matching::IpRange => "an `ip_range` join matches exactly one IP field with one CIDR field".into(),
                },
                None,
            ));
        }
        if matching == Matching::IpRange && mode == JoinMode::Continuous {
            return Err(self.error(
                j.mode.as_ref().map_or(spec.span(), |m| m.span()),
                &key("mode"),
                "`ip_range` joins are `as_of` joins".into(),
                None,
            ));
        }
        let mut event_key = Vec::new();
        let mut context_key = Vec::new();
        for (event_field, context_field) in &j.on {
            let k = key(&format!("on.{event_field}"));
            let path =
                FieldPath::parse(event_field).map_err(|e| self.error(context_field.span(), &k, e.to_string(), None))?;
            event_key.push(Accessor::bind(path, &src.time_field, &src.type_field));
            let path = FieldPath::parse(context_field.get_ref())
                .map_err(|e| self.error(context_field.span(), &k, e.to_string(), None))?;
            context_key.push(Accessor::bind(path, &ctx.time_field, &ctx.type_field));
        }
        let fields = match &j.fields {
            None => None,
            Some(list) => Some(
                list.iter()
                    .enumerate()
                    .map(|(i, f)| self.field_name(f, &key(&format!("fields[{i}]"))))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let time_as = match &j.time_as {
            Some(t) => {
                let name = self.field_name(t, &key("time_as"))?;
                if fields.as_ref().is_some_and(|f| f.contains(&name)) {
                    return Err(self.error(
                        t.span(),
                        &key("time_as"),
                        format!("`{name}` is also one of the join's `fields`"),
                        Some("name the row's time differently".into()),
                    ));
                }
                Some(name)
            }
            None if fields.is_none() => Some(ctx.time_field.clone()),
            None => None,
        };
        let max_age_ms = match &j.max_age {
            Some(a) => Some(self.duration(a, &key("max_age"))?),
            None => None,
        };
        if mode == JoinMode::Continuous && max_age_ms.is_some() {
            return Err(self.error(
                j.max_age.as_ref().expect("checked").span(),
                &key("max_age"),
                "`max_age` applies to `as_of` joins only".into(),
                Some("a continuous join always shows the context's current row".into()),
            ));
        }
        let when = match &j.when {
            Some(w) => Some(
                self.expr(w, &key("when"), 0, w.get_ref())?
                    .bind(&src.time_field, &src.type_field),
            ),
            None => None,
        };
        let broadcast = match (&j.broadcast, mode, matching) {
            (Some(b), JoinMode::Continuous, _) if *b.get_ref() => {
                return Err(self.error(
                    b.span(),
                    &key("broadcast"),
                    "`broadcast` applies to `as_of` joins only".into(),
                    Some("a continuous join keeps its events, so it partitions them by key".into()),
                ))
            }
            (Some(b), _, Matching::IpRange) if !*b.get_ref() => {
                return Err(self.error(
                    b.span(),
                    &key("broadcast"),
                    "`ip_range` joins are always broadcast".into(),
                    Some("every worker needs every range to find an address's".into()),
                ))
            }
            (_, _, Matching::IpRange) => true,
            (b, _, Matching::Equal) => b.as_ref().is_some_and(|b| *b.get_ref()),
        };
        Ok(JoinPlan {
            context,
            alias,
            event_key,
            context_key,
            fields,
            time_as,
            mode,
            matching,
            max_age_ms,
            types: j.types.iter().map(|t| t.get_ref().clone()).collect(),
            when,
            broadcast,
        })
    }

    fn rule(&self, key: &str, spec: &S<RuleSpec>, bind: &dyn Fn(Expr) -> Expr) -> Result<RulePlan, SpecError> {
        let r = spec.get_ref();
        let key = |k: &str| format!("{key}.{k}");
        let id = r.id.get_ref().clone();
        if id.is_empty() {
            return Err(self.error(r.id.span(), &key("id"), "a rule needs an id".into(), None));
        }
        let when = bind(self.expr(&r.when, &key("when"), 0, r.when.get_ref())?);
        let unused = |present: bool, k: &str, action: &str| -> Result<(), SpecError> {
            if present {
                Err(self.error(
                    spec.span(),
                    &key(k),
                    format!("`{k}` does not apply to `{action}` rules"),
                    None,
                ))
            } else {
                Ok(())
            }
        };
        let routing = r.destination.is_some() || !r.hints.is_empty();
        let transforming = !r.set.is_empty() || !r.remove.is_empty() || !r.rename.is_empty();
        let action = match r.action.get_ref().as_str() {
            "allow" => {
                unused(routing, "destination", "allow")?;
                unused(transforming, "set", "allow")?;
                RuleAction::Allow {
                    mark: r.mark.as_ref().map_or_else(|| id.clone(), |m| m.get_ref().clone()),
                }
            }
            "block" => {
                unused(r.mark.is_some(), "mark", "block")?;
                unused(routing, "destination", "block")?;
                unused(transforming, "set", "block")?;
                RuleAction::Block
            }
            "route" => {
                unused(r.mark.is_some(), "mark", "route")?;
                unused(transforming, "set", "route")?;
                let destination = match &r.destination {
                    Some(d) if valid_output_name(d.get_ref()) => Some(d.get_ref().clone()),
                    Some(d) => {
                        return Err(self.error(
                            d.span(),
                            &key("destination"),
                            format!("`{}` is not a valid output name", d.get_ref()),
                            Some("letters, digits, `_` and `-` (it becomes a folder name)".into()),
                        ))
                    }
                    None => None,
                };
                if !routing {
                    return Err(self.error(
                        spec.span(),
                        &key("destination"),
                        "a `route` rule needs a `destination`, `hints`, or both".into(),
                        None,
                    ));
                }
                let mut hints = Vec::new();
                for (name, v) in &r.hints {
                    let json = serde_json::to_value(v.get_ref())
                        .map_err(|e| self.error(v.span(), &key(&format!("hints.{name}")), e.to_string(), None))?;
                    hints.push((name.clone(), crate::value::Value::from_json(json)));
                }
                RuleAction::Route { destination, hints }
            }
            "transform" => {
                unused(r.mark.is_some(), "mark", "transform")?;
                unused(routing, "destination", "transform")?;
                if !transforming {
                    return Err(self.error(
                        spec.span(),
                        &key("set"),
                        "a `transform` rule needs `set`, `remove` or `rename`".into(),
                        None,
                    ));
                }
                let set = self.field_exprs(&r.set, &key("set"), bind)?;
                let remove = r
                    .remove
                    .iter()
                    .enumerate()
                    .map(|(i, f)| self.field_name(f, &key(&format!("remove[{i}]"))))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut rename = Vec::new();
                for (from, to) in &r.rename {
                    let k = key(&format!("rename.{from}"));
                    if !valid_field_name(from) {
                        return Err(self.error(to.span(), &k, format!("`{from}` is not a top-level field name"), None));
                    }
                    rename.push((from.clone(), self.field_name(to, &k)?));
                }
                RuleAction::Transform { set, remove, rename }
            }
            other => {
                return Err(self.error(
                    r.action.span(),
                    &key("action"),
                    format!("unknown action `{other}`"),
                    Some("one of `allow`, `block`, `route`, `transform`".into()),
                ))
            }
        };
        Ok(RulePlan { id, when, action })
    }

    /// The gap of a session window `{ session = "10m" }`: positive, and alone in the table.
    fn session(&self, w: &S<WindowSpec>, gap: &S<String>, key: &str) -> Result<u64, SpecError> {
        let spec = w.get_ref();
        let others = [
            ("tumbling", &spec.tumbling),
            ("size", &spec.size),
            ("slide", &spec.slide),
        ];
        if let Some((name, _)) = others.iter().find(|(_, v)| v.is_some()) {
            return Err(self.error(
                w.span(),
                key,
                format!("a session window takes only `session`, not `{name}`"),
                Some("`{ session = \"10m\" }` (the gap), or a fixed window without `session`".into()),
            ));
        }
        let gap_key = format!("{key}.session");
        let ms = self.duration(gap, &gap_key)?;
        if ms == 0 {
            return Err(self.error(
                gap.span(),
                &gap_key,
                "the session gap must be positive".into(),
                Some("a duration such as `10s` or `30m`: events closer than it form one session".into()),
            ));
        }
        Ok(ms)
    }

    fn window(&self, w: &S<WindowSpec>, key: &str, tick_ms: u64) -> Result<WindowPlan, SpecError> {
        let spec = w.get_ref();
        let help = || {
            Some("`{ tumbling = \"1h\" }`, `{ size = \"10m\", slide = \"1m\" }` or `{ session = \"10m\" }`".to_string())
        };
        let (size, slide) = match (&spec.tumbling, &spec.size, &spec.slide) {
            (Some(t), None, None) => {
                let size = self.duration(t, &format!("{key}.tumbling"))?;
                (size, size)
            }
            (None, Some(size), slide) => {
                let size_ms = self.duration(size, &format!("{key}.size"))?;
                let slide_ms = match slide {
                    Some(s) => self.duration(s, &format!("{key}.slide"))?,
                    None => size_ms,
                };
                (size_ms, slide_ms)
            }
            _ => {
                return Err(self.error(
                    w.span(),
                    key,
                    "a window needs `tumbling`, `size` and an optional `slide`, or `session`".into(),
                    help(),
                ))
            }
        };
        if size == 0 || slide == 0 {
            return Err(self.error(w.span(), key, "window size and slide must be positive".into(), help()));
        }
        if slide > size {
            return Err(self.error(
                w.span(),
                key,
                format!("slide ({slide} ms) is longer than size ({size} ms): events would fall between windows"),
                help(),
            ));
        }
        if size % tick_ms != 0 || slide % tick_ms != 0 {
            return Err(self.error(
                w.span(),
                key,
                format!("window size and slide must be multiples of the pipeline tick ({tick_ms} ms)"),
                Some("lower `pipeline.tick`".into()),
            ));
        }
        if size / slide > 1_000 {
            return Err(self.error(
                w.span(),
                key,
                format!("{} windows per event is too many (at most 1000)", size / slide),
                None,
            ));
        }
        Ok(WindowPlan {
            size_ms: size,
            slide_ms: slide,
        })
    }

    fn measure(&self, column: &str, m: &S<String>, key: &str) -> Result<MeasurePlan, SpecError> {
        let text = m.get_ref();
        // `at`: the byte of the value the error points at.
        let bad = |at: usize, message: String, help: String| {
            let span = value_span(self.text, m.span(), text, at);
            self.error(span, key, message, Some(help))
        };
        let functions = "`count()`, `count(x)`, `sum(x)`, `avg(x)`, `min(x)`, `max(x)`, `count_distinct(x)`, each optionally followed by `where CONDITION`";
        let open = text.find('(').ok_or_else(|| {
            bad(
                0,
                format!("`{text}` is not `fn(argument)`"),
                format!("a measure is one of {functions}"),
            )
        })?;
        let fname = text[..open].trim();
        let func = Func::ALL
            .iter()
            .find(|(n, _)| *n == fname)
            .map(|(_, f)| *f)
            .ok_or_else(|| {
                let names = Func::ALL.iter().map(|(n, _)| n.to_string());
                let help = match closest(fname, names) {
                    Some(near) => format!("did you mean `{near}`? The functions are {functions}"),
                    None => format!("the functions are {functions}"),
                };
                let at = text.len() - text.trim_start().len();
                bad(at, format!("unknown aggregate function `{fname}`"), help)
            })?;
        let close = matching_paren(text, open).ok_or_else(|| {
            bad(
                open,
                format!("missing `)`: the `(` of `{fname}(` is not closed"),
                format!("close the argument: `{fname}(...)`, then optionally `where CONDITION`"),
            )
        })?;
        let arg_text = &text[open + 1..close];
        let arg = if arg_text.trim().is_empty() {
            if func != Func::Count {
                return Err(bad(
                    open,
                    format!("`{fname}` needs an argument"),
                    format!("`{fname}(x)` takes one expression, such as a field; only `count()` takes none"),
                ));
            }
            None
        } else {
            Some(self.expr(m, key, open + 1, arg_text)?)
        };
        let rest = text[close + 1..].trim_start();
        let filter = if rest.is_empty() {
            None
        } else if let Some(cond) = rest.strip_prefix("where") {
            let offset = text.len() - cond.len();
            Some(self.expr(m, key, offset, cond)?)
        } else {
            return Err(bad(
                text.len() - rest.len(),
                format!("unexpected `{rest}` after `{fname}(...)`"),
                "a measure is one function call, optionally followed by `where CONDITION`; \
                 put arithmetic inside the argument (`sum(a + b)`)"
                    .into(),
            ));
        };
        Ok(MeasurePlan {
            name: column.to_string(),
            func,
            arg,
            filter,
        })
    }
}

/// Index of the `)` matching the `(` at `open`, skipping quoted strings.
fn matching_paren(text: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let bytes = text.as_bytes();
    let mut i = open;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(_) if b == b'\\' => i += 1,
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None => match b {
                b'\'' | b'"' => quote = Some(b),
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(i);
                    }
                }
                _ => {}
            },
        }
        i += 1;
    }
    None
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, column)
}

/// The output column of a `group_by` path written without a name: the path with every `.` and
/// index bracket made `_` (`device.os` → `device_os`, `topics[0]` → `topics_0`), so that SQL
/// reads it unquoted.
pub fn group_column(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '.' | '[' => out.push('_'),
            ']' => {}
            c => out.push(c),
        }
    }
    out
}
