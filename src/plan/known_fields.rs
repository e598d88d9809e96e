//! Field references checked against the sources' schemas, so that a misspelled field fails
//! `sluice check` and `sluice run` instead of reading nulls.
//!
//! Each source's payload fields are read at start-up (`crate::source::schema_probe`): Parquet
//! footers, a sample of NDJSON lines, pinned schemas. Stages are then walked in the order they
//! run, each reference checked against what the stages before it produce:
//!
//! ```text
//!  files ─► schema stage (pins, defaults, schema_version) ─► dedup keys
//!        ─► metadata (value, default; + priority, complexity, shard_key, shard_id)
//!        ─► joins (on, fields, when; + alias) ─► derive (+ field) ─► rules (when, set; + set, rename)
//!        ─► order_by, aggregates (where, group_by, measures)
//! ```
//!
//! The time and type fields and the rule stage's `_marks`, `_routes` and `_hints` are always
//! known. A source with `fields = "open"` (the default for a tcp source without pinned schemas)
//! accepts any name; fields attached by a join from a closed context are still checked. The
//! first unknown reference in the file is reported, with its line, column and key and the
//! nearest known name.

use std::ops::Range;
use std::path::Path;

use super::field_tree::{FieldTree, Miss, MissKind};
use super::graph::reads_events_of;
use super::hints::{closest, value_span};
use super::spec::{SpecFile, S};
use super::validate::line_col;
use super::{
    AggregatePlan, BinaryJoinPlan, Fields, Format, JoinPlan, Plan, RuleAction, SourcePlan, StageKind, StageRef,
    WINDOW_TIME,
};
use crate::error::{PlanError, SpecError};
use crate::event::{Accessor, FieldPath, Step};
use crate::expr::Expr;
/// Lines of each NDJSON file whose fields are known to `check` (a field that first appears
/// later needs `fields = "open"`).
pub const SAMPLE_LINES: usize = 1000;

/// What the sources' files say about their fields. The source layer reads them
/// (`crate::source::schema_probe::Files`); planning itself reads no data files.
pub trait SchemaProbe {
    /// Fails naming a file a source names that does not exist.
    fn files_exist(&self, source: &SourcePlan) -> Result<(), PlanError>;
    /// The payload fields of a source's files: Parquet footers, the first [`SAMPLE_LINES`]
    /// lines of NDJSON files.
    fn payload_tree(&self, source: &SourcePlan) -> Result<FieldTree, PlanError>;
    /// The fields of a pinned JSON Schema file.
    fn pinned_tree(&self, path: &Path) -> Result<FieldTree, PlanError>;
}

/// Names the rules stage adds to events.
const RULE_FIELDS: [&str; 3] = ["_marks", "_routes", "_hints"];

/// Checks every field reference of `spec` (planned as `plan`) against its sources' schemas.
/// `text` and `file` are the spec's, for error locations. Missing source files are errors too.
pub fn check(spec: &SpecFile, plan: &Plan, text: &str, file: &Path, probe: &dyn SchemaProbe) -> Result<(), PlanError> {
    let mut payloads = Vec::new();
    for (i, source) in plan.sources.iter().enumerate() {
        payloads.push(payload(spec, plan, i, source, text, file, probe)?);
    }
    let mut checker = Checker {
        text,
        file,
        first: None,
    };
    let roots: Vec<FieldTree> = (0..plan.sources.len())
        .map(|i| checker.source(spec, plan, i, &payloads))
        .collect();
    // Aggregates and forecasts, in stage order: each reads a source's events as its stages
    // leave them, or another aggregate's rows.
    let mut rows: Vec<Option<FieldTree>> = vec![None; plan.stages.len()];
    for (s, stage) in plan.stages.iter().enumerate() {
        let Some(input) = stage.inputs.first() else { continue };
        if let StageKind::Join(join) = &stage.kind {
            let made = {
                let left = input_scope(plan, &stage.inputs[0], &roots, &rows);
                let right = input_scope(plan, &stage.inputs[1], &roots, &rows);
                let written = spec
                    .joins
                    .iter()
                    .enumerate()
                    .find(|(_, x)| x.get_ref().name.get_ref() == &join.name);
                match (left, right, written) {
                    (Some(left), Some(right), Some((k, x))) => Some(checker.join(k, x, join, &left, &right)),
                    _ => None,
                }
            };
            rows[s] = Some(made.unwrap_or_else(FieldTree::open));
            continue;
        }
        if !matches!(
            stage.kind,
            StageKind::Aggregate(_) | StageKind::Forecast(_) | StageKind::TopN(_)
        ) {
            continue;
        }
        let root = &plan.sources[plan.root_source(input)];
        let (tree, label) = match (reads_events_of(plan, input), input) {
            (Some(i), _) => (&roots[i], format!("source `{}`", plan.sources[i].name)),
            (None, StageRef::Stage(j)) => (
                rows[*j].as_ref().expect("aggregates come after what they read"),
                format!("output `{}`", plan.stages[*j].name),
            ),
            (None, _) => continue,
        };
        let scope = Scope {
            tree,
            source: root,
            sampled: reads_events_of(plan, input).is_some() && sampled(root),
            label,
        };
        match &stage.kind {
            StageKind::Aggregate(agg) => {
                if let Some(k) = spec
                    .aggregates
                    .iter()
                    .position(|a| a.get_ref().name.get_ref() == &agg.name)
                {
                    checker.aggregate(spec, k, agg, &scope);
                }
                rows[s] = Some(row_tree(agg));
            }
            StageKind::TopN(top) => {
                if let Some((k, x)) = spec
                    .top_n
                    .iter()
                    .enumerate()
                    .find(|(_, x)| x.get_ref().name.get_ref() == &top.name)
                {
                    for (j, field) in x.get_ref().partition_by.iter().enumerate() {
                        let at = format!("top_n[{k}].partition_by[{j}]");
                        checker.path(&scope, field.span(), field.get_ref(), &at);
                    }
                    for (j, (written, key)) in x.get_ref().order_by.iter().zip(&top.order_by).enumerate() {
                        let at = format!("top_n[{k}].order_by[{j}]");
                        checker.path(&scope, written.span(), &key.field, &at);
                    }
                }
                // Its rows are the rows it reads, with the rank.
                let mut tree = scope.tree.clone();
                if let Some(rank) = &top.rank {
                    tree.insert(rank, FieldTree::scalar());
                }
                rows[s] = Some(tree);
            }
            StageKind::Forecast(f) => {
                let written = spec
                    .forecasts
                    .iter()
                    .enumerate()
                    .find(|(_, x)| x.get_ref().name.get_ref() == &f.name);
                if let Some((k, x)) = written {
                    let fields = x.get_ref().keys.iter().map(|f| ("keys", f));
                    let fields = fields.chain(x.get_ref().values.iter().map(|f| ("values", f)));
                    for (j, (list, field)) in fields.enumerate() {
                        let j = if list == "keys" { j } else { j - x.get_ref().keys.len() };
                        let at = format!("forecasts[{k}].{list}[{j}]");
                        checker.path(&scope, field.span(), field.get_ref(), &at);
                    }
                }
            }
            _ => {}
        }
    }
    match checker.first {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// The fields `input` carries, for checking what a stage reads from it: a source's events as
/// its stages leave them, or an earlier stage's rows (`None` when not known).
fn input_scope<'a>(
    plan: &'a Plan,
    input: &StageRef,
    roots: &'a [FieldTree],
    rows: &'a [Option<FieldTree>],
) -> Option<Scope<'a>> {
    let root = &plan.sources[plan.root_source(input)];
    let (tree, label) = match (reads_events_of(plan, input), input) {
        (Some(i), _) => (&roots[i], format!("source `{}`", plan.sources[i].name)),
        (None, StageRef::Stage(j)) => (rows[*j].as_ref()?, format!("output `{}`", plan.stages[*j].name)),
        (None, _) => return None,
    };
    Some(Scope {
        tree,
        source: root,
        sampled: reads_events_of(plan, input).is_some() && sampled(root),
        label,
    })
}

/// The columns one side of a join gives its rows, with their fields: the listed ones, or every
/// field of `tree` (renamed and skipped as `columns` says), with the right's time and type.
fn side_columns(
    columns: &super::join::Columns,
    tree: &FieldTree,
    right_fields: Option<(&str, &str)>,
) -> Vec<(String, FieldTree)> {
    match columns {
        super::join::Columns::Listed(list) => list
            .iter()
            .map(|(name, accessor)| {
                let t = match accessor {
                    Accessor::Payload(p) => tree.resolve(p).ok().flatten().cloned(),
                    _ => None,
                };
                (name.clone(), t.unwrap_or_else(FieldTree::scalar))
            })
            .collect(),
        super::join::Columns::All { prefix, skip } => {
            let mut out: Vec<(String, FieldTree)> = tree
                .fields
                .iter()
                .filter(|(name, _)| !skip.contains(name))
                // The rules' fields stay the left's (`render::join` does not copy the right's).
                .filter(|(name, _)| right_fields.is_none() || !RULE_FIELDS.contains(&name.as_str()))
                .map(|(name, t)| (format!("{prefix}{name}"), t.clone()))
                .collect();
            for f in right_fields.into_iter().flat_map(|(t, y)| [t, y]) {
                let name = format!("{prefix}{f}");
                if !f.is_empty() && !out.iter().any(|(n, _)| *n == name) {
                    out.push((name, FieldTree::scalar()));
                }
            }
            out
        }
    }
}

/// Whether a source's fields are known from a sample of its lines.
fn sampled(source: &SourcePlan) -> bool {
    source.format == Format::Ndjson && source.fields == Fields::Closed
}

/// The fields of an aggregate's rows read as events: its columns, by name, and the window time.
fn row_tree(agg: &AggregatePlan) -> FieldTree {
    let mut tree = FieldTree::default();
    for column in agg.columns() {
        tree.insert(&column, FieldTree::scalar());
    }
    tree.insert(WINDOW_TIME, FieldTree::scalar());
    tree
}

/// What a source's stages may read before enrichment: its files' fields (or anything, when
/// open), plus what its schema stage adds.
fn payload(
    spec: &SpecFile,
    plan: &Plan,
    index: usize,
    source: &SourcePlan,
    text: &str,
    file: &Path,
    probe: &dyn SchemaProbe,
) -> Result<FieldTree, PlanError> {
    let stage = plan.schemas().find(|s| s.source == index);
    let pinned = stage.is_some_and(|s| !s.pinned.is_empty());
    let mut tree = match source.fields {
        Fields::Open => {
            probe.files_exist(source)?;
            FieldTree::open()
        }
        Fields::Closed if source.paths.is_empty() && !pinned => {
            let setting = spec.sources.get(&source.name).and_then(|s| s.get_ref().fields.as_ref());
            let span = setting.map_or(0..0, |s| s.span());
            let (line, column) = line_col(text, span.start);
            return Err(SpecError {
                file: file.to_path_buf(),
                line,
                column,
                key: format!("sources.{}.fields", source.name),
                message: format!(
                    "source `{}` has no files and no pinned schemas, so no field is known",
                    source.name
                ),
                help: Some(format!(
                    "pin schemas under `[schemas.{}.pin]`, or set `fields = \"open\"`",
                    source.name
                )),
            }
            .into());
        }
        Fields::Closed if source.paths.is_empty() => FieldTree::default(),
        Fields::Closed => probe.payload_tree(source)?,
    };
    if let Some(stage) = stage {
        for (_, path) in &stage.pinned {
            tree.merge(probe.pinned_tree(path)?);
        }
        for (_, path, _) in &stage.defaults {
            if let Ok(p) = FieldPath::parse(path) {
                tree.insert_path(&p, FieldTree::open());
            }
        }
        tree.insert("schema_version", FieldTree::scalar());
    }
    Ok(tree)
}

/// The fields a record of `source` has: its payload, time and type, and for events that reach
/// a rules stage (`rules`), the fields rules add.
fn event_root(source: &SourcePlan, payload: &FieldTree, rules: bool) -> FieldTree {
    let mut root = payload.clone();
    root.insert(&source.time_field, FieldTree::scalar());
    if !source.type_field.is_empty() {
        root.insert(&source.type_field, FieldTree::scalar());
    }
    if rules {
        for name in RULE_FIELDS {
            root.insert(name, FieldTree::open());
        }
    }
    root
}

/// The object a join attaches under its alias (see `render::enrich::context_row`).
fn attached(join: &JoinPlan, payload: &FieldTree) -> FieldTree {
    let key_heads: Vec<String> = join
        .context_key
        .iter()
        .filter_map(|a| match a {
            Accessor::Payload(p) if p.steps.len() == 1 => p.head().map(|h| h.as_str().to_string()),
            _ => None,
        })
        .collect();
    let mut object = FieldTree::default();
    match &join.fields {
        Some(names) => {
            for name in names {
                let known = payload.fields.get(name).cloned();
                let fallback = if payload.open {
                    FieldTree::open()
                } else {
                    FieldTree::scalar()
                };
                object.insert(name, known.unwrap_or(fallback));
            }
        }
        None => {
            object.open = payload.open;
            for (name, tree) in &payload.fields {
                if !key_heads.contains(name) {
                    object.insert(name, tree.clone());
                }
            }
        }
    }
    if let Some(name) = &join.time_as {
        object.insert(name, FieldTree::scalar());
    }
    object
}

/// Where a reference is checked: the fields known there and how to name them in messages.
struct Scope<'a> {
    tree: &'a FieldTree,
    /// The source the fields come from, and how to name where they are (`source `x``).
    source: &'a SourcePlan,
    label: String,
    /// The fields come from a sample of NDJSON lines.
    sampled: bool,
}

struct Checker<'a> {
    text: &'a str,
    file: &'a Path,
    /// The unknown reference that comes first in the file.
    first: Option<SpecError>,
}

impl Checker<'_> {
    /// Checks the references of source `i`'s schema, dedup and enrichment stages; returns the
    /// fields its events have after them.
    fn source(&mut self, spec: &SpecFile, plan: &Plan, i: usize, payloads: &[FieldTree]) -> FieldTree {
        let source = &plan.sources[i];
        let label = || format!("source `{}`", source.name);
        let mut root = event_root(source, &payloads[i], true);
        let name = source.name.as_str();

        if let Some((_, rules)) = spec.dedup.iter().find(|(n, _)| n.get_ref() == name) {
            let scope = Scope {
                tree: &root,
                source,
                sampled: sampled(source),
                label: label(),
            };
            for (event_type, rule) in rules {
                for (k, key) in rule.key.iter().enumerate() {
                    let at = format!("dedup.{name}.{}.key[{k}]", event_type.get_ref());
                    self.path(&scope, key.span(), key.get_ref(), &at);
                }
            }
        }

        let meta = spec.metadata.iter().find(|(n, _)| n.get_ref() == name).map(|(_, m)| m);
        if let (Some(m), Some(stage)) = (meta, plan.metadata().find(|m| m.source == i)) {
            let scope = Scope {
                tree: &root,
                source,
                sampled: sampled(source),
                label: label(),
            };
            let specs = [m.priority.as_ref(), m.complexity.as_ref(), Some(&m.shard_key)];
            for (spec, field) in specs
                .into_iter()
                .zip([&stage.priority, &stage.complexity, &stage.shard_key])
            {
                let Some(spec) = spec.map(|s| s.get_ref()) else {
                    continue;
                };
                if let Some(text) = &spec.value {
                    self.expr(
                        &scope,
                        text,
                        &field.value,
                        &format!("metadata.{name}.{}.value", field.name),
                    );
                }
                if let (Some(text), Some(expr)) = (&spec.default, &field.default) {
                    self.expr(&scope, text, expr, &format!("metadata.{name}.{}.default", field.name));
                }
            }
            for field in super::metadata::METADATA_FIELDS {
                root.insert(field, FieldTree::open());
            }
        }

        let enrich = spec.enrich.iter().find(|(n, _)| n.get_ref() == name).map(|(_, e)| e);
        let stage = plan.enrichments().find(|e| e.source == i);
        if let (Some(e), Some(stage)) = (enrich, stage) {
            let key = |k: &str| format!("enrich.{name}.{k}");
            for (k, (js, join)) in e.join.iter().zip(&stage.joins).enumerate() {
                let j = js.get_ref();
                let context = &plan.sources[join.context];
                let context_root = event_root(context, &payloads[join.context], false);
                let events = Scope {
                    tree: &root,
                    source,
                    sampled: sampled(source),
                    label: label(),
                };
                let contexts = Scope {
                    tree: &context_root,
                    source: context,
                    sampled: sampled(context),
                    label: format!("source `{}`", context.name),
                };
                for (event_field, context_field) in &j.on {
                    let at = key(&format!("join[{k}].on.{event_field}"));
                    let span = key_span(self.text, context_field.span(), event_field);
                    self.path(&events, span, event_field, &at);
                    self.path(&contexts, context_field.span(), context_field.get_ref(), &at);
                }
                for (f, field) in j.fields.iter().flatten().enumerate() {
                    let at = key(&format!("join[{k}].fields[{f}]"));
                    self.path(&contexts, field.span(), field.get_ref(), &at);
                }
                if let (Some(text), Some(expr)) = (&j.when, &join.when) {
                    self.expr(&events, text, expr, &key(&format!("join[{k}].when")));
                }
                root.insert(&join.alias, attached(join, &payloads[join.context]));
            }
            for ((field, text), (_, expr)) in e.derive.iter().zip(&stage.derive) {
                let scope = Scope {
                    tree: &root,
                    source,
                    sampled: sampled(source),
                    label: label(),
                };
                self.expr(&scope, text, expr, &key(&format!("derive.{field}")));
                root.insert(field, FieldTree::open());
            }
            for (k, (rs, rule)) in e.rule.iter().zip(&stage.rules).enumerate() {
                let r = rs.get_ref();
                let scope = Scope {
                    tree: &root,
                    source,
                    sampled: sampled(source),
                    label: label(),
                };
                self.expr(&scope, &r.when, &rule.when, &key(&format!("rule[{k}].when")));
                let RuleAction::Transform { set, .. } = &rule.action else {
                    continue;
                };
                for ((field, text), (_, expr)) in r.set.iter().zip(set) {
                    self.expr(&scope, text, expr, &key(&format!("rule[{k}].set.{field}")));
                }
                for (field, _) in set {
                    root.insert(field, FieldTree::open());
                }
                let scope = Scope {
                    tree: &root,
                    source,
                    sampled: sampled(source),
                    label: label(),
                };
                for (f, field) in r.remove.iter().enumerate() {
                    self.path(
                        &scope,
                        field.span(),
                        field.get_ref(),
                        &key(&format!("rule[{k}].remove[{f}]")),
                    );
                }
                let mut renamed = Vec::new();
                for (from, to) in &r.rename {
                    let span = key_span(self.text, to.span(), from);
                    self.path(&scope, span, from, &key(&format!("rule[{k}].rename.{from}")));
                    let tree = root.fields.get(from).cloned().unwrap_or_else(FieldTree::open);
                    renamed.push((to.get_ref().clone(), tree));
                }
                for (to, tree) in renamed {
                    root.insert(&to, tree);
                }
            }
            let scope = Scope {
                tree: &root,
                source,
                sampled: sampled(source),
                label: label(),
            };
            for (k, field) in e.order_by.iter().enumerate() {
                self.path(&scope, field.span(), field.get_ref(), &key(&format!("order_by[{k}]")));
            }
        }

        root
    }

    /// Checks aggregate `k`'s references against the fields of what it reads.
    fn aggregate(&mut self, spec: &SpecFile, k: usize, agg: &AggregatePlan, scope: &Scope) {
        let a = spec.aggregates[k].get_ref();
        let key = |k2: &str| format!("aggregates[{k}].{k2}");
        if let (Some(text), Some(expr)) = (&a.filter, &agg.filter) {
            self.expr(scope, text, expr, &key("where"));
        }
        for (at, _, field) in a.group_by.entries() {
            self.path(scope, field.span(), field.get_ref(), &key(&format!("group_by{at}")));
        }
        for ((column, text), measure) in a.measures.iter().zip(&agg.measures) {
            for expr in measure.arg.iter().chain(measure.filter.iter()) {
                self.expr(scope, text, expr, &key(&format!("measures.{column}")));
            }
        }
    }

    /// Checks join `k`'s references against its sides' fields, and that no output column is
    /// written by both sides; returns the fields of its rows.
    fn join(
        &mut self,
        k: usize,
        spec: &S<super::spec::BinaryJoinSpec>,
        join: &BinaryJoinPlan,
        left: &Scope,
        right: &Scope,
    ) -> FieldTree {
        let x = spec.get_ref();
        let key = |k2: &str| format!("joins[{k}].{k2}");
        for (l, r) in x.on.get_ref() {
            // The left key is a TOML key: found by its text within the table.
            let at = find_word(&self.text[x.on.span()], l).map_or(x.on.span(), |o| {
                let start = x.on.span().start + o;
                start..start + l.len()
            });
            self.path(left, at, l, &key(&format!("on.{l}")));
            self.path(right, r.span(), r.get_ref(), &key(&format!("on.{l}")));
        }
        if let (Some(iv), super::join::JoinTime::Interval { .. }) = (&x.interval, &join.time) {
            if let Some(u) = &iv.get_ref().until {
                self.path(left, u.span(), u.get_ref(), &key("interval.until"));
            }
        }
        for (side, entries, scope) in [("left", &x.left_fields, left), ("right", &x.right_fields, right)] {
            for (n, e) in entries.iter().flatten().enumerate() {
                if let Ok((_, column, _)) = super::join::parse_field_entry(e.get_ref()) {
                    self.path(scope, e.span(), &column, &key(&format!("{side}_fields[{n}]")));
                }
            }
        }
        // The output's columns: the left's time and type, its columns, the window's, then the
        // right's; each name once.
        let (lt, ly) = (join.left_fields.0.as_str(), join.left_fields.1.as_str());
        let mut tree = FieldTree::default();
        let mut taken: Vec<String> = [lt, ly]
            .iter()
            .filter(|f| !f.is_empty())
            .map(|f| f.to_string())
            .collect();
        for f in &taken {
            tree.insert(f, FieldTree::scalar());
        }
        for (name, t) in side_columns(&join.left_columns, left.tree, None) {
            if name != lt && name != ly {
                taken.push(name.clone());
                tree.insert(&name, t);
            }
        }
        if let super::join::JoinTime::Window(_) = join.time {
            for w in ["window_start", "window_end"] {
                if taken.iter().any(|t| t == w) {
                    let span = x.window.as_ref().map_or(x.name.span(), |w| w.span());
                    self.clash(span, &key("window"), w, "the left's", "the window join's");
                }
                taken.push(w.to_string());
                tree.insert(w, FieldTree::scalar());
            }
        }
        let (rt, ry) = (join.right_fields.0.as_str(), join.right_fields.1.as_str());
        let right_names = side_columns(&join.right_columns, right.tree, Some((rt, ry)));
        for (name, t) in &right_names {
            if taken.contains(name) {
                let span = x
                    .right_fields
                    .as_ref()
                    .and_then(|f| f.iter().find(|e| e.get_ref().ends_with(name.as_str())))
                    .map_or(x.right.span(), |e| e.span());
                let k2 = if x.right_fields.is_some() {
                    "right_fields"
                } else {
                    "right"
                };
                self.clash(span, &key(k2), name, "the left's or the window's", "the right's");
            }
            tree.insert(name, t.clone());
        }
        tree.open |= left.tree.open && matches!(join.left_columns, super::join::Columns::All { .. });
        tree.open |= right.tree.open && matches!(join.right_columns, super::join::Columns::All { .. });
        let out_scope = Scope {
            tree: &tree,
            source: left.source,
            sampled: false,
            label: format!("the rows of join `{}`", join.name),
        };
        if let (Some(text), Some(expr)) = (&x.filter, &join.filter) {
            self.expr(&out_scope, text, expr, &key("where"));
        }
        tree
    }

    /// Reports an output column that two parts of a join would both write.
    fn clash(&mut self, span: Range<usize>, key: &str, column: &str, first: &str, second: &str) {
        let (line, column_at) = line_col(self.text, span.start);
        if self
            .first
            .as_ref()
            .is_some_and(|f| (f.line, f.column) <= (line, column_at))
        {
            return;
        }
        self.first = Some(SpecError {
            file: self.file.to_path_buf(),
            line,
            column: column_at,
            key: key.to_string(),
            message: format!("the joined rows would have two columns `{column}`: {first} and {second}"),
            help: Some(
                "name the right's columns apart: `right_prefix = \"r_\"`, or list them with an alias, `right_fields = [\"COLUMN as NAME\"]`"
                    .into(),
            ),
        });
    }

    /// Checks a field path written as a whole string value (`group_by`, keys, `order_by`).
    fn path(&mut self, scope: &Scope, span: Range<usize>, written: &str, key: &str) {
        let Ok(path) = FieldPath::parse(written) else {
            return; // validation already rejected it
        };
        if let Err(miss) = scope.tree.resolve(&path) {
            let at = value_span(self.text, span, written, 0);
            self.report(scope, at, key, &path, miss);
        }
    }

    /// Checks every field an expression reads; `text` is the spec value it was parsed from.
    fn expr(&mut self, scope: &Scope, text: &S<String>, expr: &Expr, key: &str) {
        let mut misses = Vec::new();
        expr.visit(&mut |e| {
            if let Expr::Field(f) = e {
                if let Err(miss) = scope.tree.resolve(&f.path) {
                    misses.push((f.path.clone(), miss));
                }
            }
        });
        for (path, miss) in misses {
            let value = text.get_ref();
            let at = match find_word(value, &path.to_string()) {
                Some(offset) => value_span(self.text, text.span(), value, offset),
                None => text.span(),
            };
            self.report(scope, at, key, &path, miss);
        }
    }

    fn report(&mut self, scope: &Scope, span: Range<usize>, key: &str, path: &FieldPath, miss: Miss) {
        let (line, column) = line_col(self.text, span.start);
        if self
            .first
            .as_ref()
            .is_some_and(|f| (f.line, f.column) <= (line, column))
        {
            return;
        }
        let (message, help) = describe(scope, path, &miss);
        self.first = Some(SpecError {
            file: self.file.to_path_buf(),
            line,
            column,
            key: key.to_string(),
            message,
            help: Some(help),
        });
    }
}

/// The message and help of an unknown reference.
fn describe(scope: &Scope, path: &FieldPath, miss: &Miss) -> (String, String) {
    let prefix = FieldPath {
        steps: path.steps[..miss.step].to_vec(),
        hint: Default::default(),
    };
    let source = &scope.source.name;
    let label = &scope.label;
    let within = if miss.step == 0 {
        label.clone()
    } else {
        format!("`{prefix}` ({label})")
    };
    let message = match (miss.kind, &path.steps[miss.step]) {
        (MissKind::NoField, Step::Field(name)) => format!("no field `{name}` in {within}"),
        (MissKind::Scalar, _) => {
            format!("`{prefix}` in {label} has no fields or elements, so `{path}` is always null")
        }
        _ => format!("`{prefix}` in {label} is not a list, so `{path}` is always null"),
    };
    let mut help = match &path.steps[miss.step] {
        Step::Field(name) => match closest(name.as_str(), miss.known.iter().cloned()) {
            Some(near) if miss.step == 0 => format!("did you mean `{near}`?"),
            Some(near) => format!("did you mean `{prefix}.{near}`?"),
            None => known_list(&miss.known),
        },
        Step::Index(_) => known_list(&miss.known),
    };
    if scope.sampled && miss.step == 0 {
        help.push_str(&format!(
            " (fields were read from the first {SAMPLE_LINES} lines of each file; if `{path}` appears later, \
             set `fields = \"open\"` under `[sources.{source}]`)"
        ));
    }
    (message, help)
}

fn known_list(known: &[String]) -> String {
    const SHOWN: usize = 12;
    let known: Vec<&String> = known.iter().filter(|n| !RULE_FIELDS.contains(&n.as_str())).collect();
    if known.is_empty() {
        return "no fields are known there".into();
    }
    let names: Vec<String> = known.iter().take(SHOWN).map(|n| format!("`{n}`")).collect();
    let more = known.len().saturating_sub(SHOWN);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!("the known fields are {}{more}", names.join(", "))
}

/// Byte offset of `word` in `text` where it is not part of a longer name.
fn find_word(text: &str, word: &str) -> Option<usize> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '$';
    let mut from = 0;
    while let Some(i) = text.get(from..)?.find(word) {
        let start = from + i;
        let end = start + word.len();
        let before = text[..start].chars().next_back();
        let after = text[end..].chars().next();
        if !before.is_some_and(|c| is_name(c) || c == '.') && !after.is_some_and(is_name) {
            return Some(start);
        }
        from = start + word.len().max(1);
    }
    None
}

/// The span of a table key that has no span of its own (`on` and `rename` keys): its last
/// occurrence before its value on the value's line, or the value's span.
fn key_span(text: &str, value: Range<usize>, key: &str) -> Range<usize> {
    let line_start = text[..value.start.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    match text.get(line_start..value.start).and_then(|line| line.rfind(key)) {
        Some(i) => line_start + i..line_start + i,
        None => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_found_whole() {
        assert_eq!(find_word("avg(a) where a > 1", "a"), Some(4));
        assert_eq!(find_word("x.a + a", "a"), Some(6));
        assert_eq!(find_word("region_id == region", "region"), Some(13));
        assert_eq!(find_word("abc", "b"), None);
    }

    #[test]
    fn keys_are_found_before_their_values() {
        let text = "[x]\non = { user_id = \"uid\" }\n";
        let value = text.find("\"uid\"").unwrap();
        let span = key_span(text, value..value + 5, "user_id");
        assert_eq!(&text[span.start..span.start + 7], "user_id");
        assert_eq!(key_span(text, value..value + 5, "nope"), value..value + 5);
    }
}
