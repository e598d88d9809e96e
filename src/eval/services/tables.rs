//! The services evaluation's tables and summary lines, from the three parts' results.

use std::collections::BTreeMap;
use std::path::Path;

use super::pipes::{parse_pipe_events, replay, PipeStats};
use super::prediction::{adaptations, by_tick, model_scores, parse_hops, reconstruct, ChangeFit};
use super::resonance::{agreement, parse_scores, truth_quality, Agreement};
use super::{ServicesOptions, LOSS_RATIO_GOAL, PRECISION_GOAL, RECALL_GOAL};
use crate::eval::markov::{summarize, Regimes, Scored, Summary};
use crate::eval::metrics::ranks;
use crate::eval::routing::GOAL_COLUMNS;
use crate::eval::Evaluation;
use crate::generate::services::truth::Truth;
use crate::value::{format_time, Value};

pub const MARKOV_COLUMNS: [&str; 9] = [
    "predictor",
    "period",
    "hops",
    "bits_per_hop",
    "entropy_rate_bits",
    "loss_ratio",
    "top1",
    "bayes_top1",
    "top1_ratio",
];
pub const ADAPTATION_COLUMNS: [&str; 12] = [
    "change",
    "time",
    "kind",
    "old_entropy_rate_bits",
    "new_entropy_rate_bits",
    "reference_hops",
    "steady_ratio",
    "threshold_bits",
    "hops_after",
    "adapted",
    "adaptation_hops",
    "adaptation_ms",
];
pub const PIPE_COLUMNS: [&str; 16] = [
    "source",
    "target",
    "created_predicted",
    "created_demand",
    "used",
    "miss",
    "recall",
    "predicted_used",
    "predicted_unused",
    "pending",
    "precision",
    "openings_predicted",
    "median_lead_ms",
    "torn_down",
    "idle_s",
    "wasted_s",
];
pub const RESONANCE_COLUMNS: [&str; 7] = [
    "source",
    "target",
    "score",
    "base",
    "truth_quality",
    "score_rank",
    "quality_rank",
];

fn num(x: f64) -> Value {
    if x.is_finite() {
        Value::float(x)
    } else {
        Value::Null
    }
}

fn counted(what: &str, reasons: &BTreeMap<&'static str, usize>) -> Option<String> {
    (!reasons.is_empty()).then(|| {
        let parts: Vec<String> = reasons.iter().map(|(why, n)| format!("{n} {why}")).collect();
        format!("{what}: {}", parts.join(", "))
    })
}

/// One goal row: what was measured against what, and whether the target was met
/// (`None`: the issue sets no figure, or there is nothing to measure).
struct Goal {
    id: &'static str,
    goal: &'static str,
    target: &'static str,
    value: f64,
    baseline: &'static str,
    baseline_value: f64,
    met: Option<bool>,
}

impl Goal {
    fn row(&self) -> Vec<Value> {
        vec![
            Value::str(self.id),
            Value::str(self.goal),
            Value::str(self.target),
            num(self.value),
            Value::str(self.baseline),
            num(self.baseline_value),
            num(self.value / self.baseline_value),
            self.met.map_or(Value::Null, Value::Bool),
        ]
    }

    fn line(&self) -> String {
        let status = match self.met {
            Some(true) => "MET    ",
            Some(false) => "NOT MET",
            None => "       ",
        };
        let base = match self.baseline_value.is_finite() {
            true => format!(", {} {:.4}", self.baseline, self.baseline_value),
            false => String::new(),
        };
        format!(
            "{status} {}: sluice {:.4}{base} (goal {})",
            self.goal, self.value, self.target
        )
    }
}

/// The Markov part's results.
struct Markov {
    rows: Vec<Vec<Value>>,
    all: Option<(Summary, Option<(f64, Summary)>)>,
    fits: Vec<ChangeFit>,
    lines: Vec<String>,
}

fn markov(
    rows: &[Vec<Value>],
    truth: Option<&Truth>,
    options: &ServicesOptions,
    from: Option<i64>,
    until: Option<i64>,
) -> Markov {
    let mut lines = Vec::new();
    let (parsed, skipped) = parse_hops(rows);
    lines.extend(counted("hops not scored", &skipped));
    if parsed.is_empty() {
        lines.push(format!("no hop to score ({} rows)", rows.len()));
        return Markov {
            rows: Vec::new(),
            all: None,
            fits: Vec::new(),
            lines,
        };
    }
    let depth = truth.map_or(1, |t| t.order).max(1);
    let rebuilt = reconstruct(&parsed, depth);
    if rebuilt.mismatches > 0 {
        lines.push(format!(
            "{} hops' contexts do not end at their trace's previous service",
            rebuilt.mismatches
        ));
    }
    let vocabulary: Vec<String> = truth.map_or_else(Vec::new, |t| t.services.iter().map(|s| s.name.clone()).collect());
    let scored = |s: &Scored| from.is_none_or(|f| s.time >= f) && until.is_none_or(|u| s.time < u);
    let keep = |v: Vec<Scored>| v.into_iter().filter(scored).collect::<Vec<Scored>>();
    let model_all = model_scores(&parsed, &rebuilt.rows);
    let model = keep(model_all.clone());
    let mut predictors: Vec<(&str, Vec<Scored>)> = vec![("sluice", model.clone())];
    for (label, order) in [("unigram", 0), ("first_order", 1)] {
        match by_tick(
            &rebuilt.hops,
            order,
            options.baseline_discount,
            options.baseline_window_ms,
            &vocabulary,
        ) {
            Ok(s) => predictors.push((label, keep(s))),
            Err(e) => lines.push(format!("{label} baseline not run: {e}")),
        }
    }
    let regimes = truth.map(|t| {
        Regimes::new(
            (0..t.regimes.len())
                .map(|r| (t.regimes[r].start_ms, t.chain(r)))
                .collect(),
        )
    });
    if let Some(r) = &regimes {
        predictors.push(("bayes", keep(r.score(&rebuilt.hops))));
    }
    // Periods: all hops, then each regime's.
    let regime_of = |s: &Scored| truth.map_or(0, |t| t.regime_at(s.time));
    let n_periods = truth.map_or(0, |t| t.regimes.len());
    let entropy = |part: &[Scored]| {
        truth.map(|t| {
            part.iter()
                .map(|s| t.regimes[t.regime_at(s.time)].entropy_rate_bits)
                .sum::<f64>()
                / part.len() as f64
        })
    };
    let mut out = Vec::new();
    let mut all = None;
    for period in 0..=n_periods {
        let part = |v: &[Scored]| -> Vec<Scored> {
            v.iter()
                .filter(|s| period == 0 || regime_of(s) == period - 1)
                .copied()
                .collect()
        };
        let label = match period {
            0 => "all".to_string(),
            p => format!("regime {}", p - 1),
        };
        let h = entropy(&part(&predictors[0].1));
        let bayes = predictors
            .iter()
            .find(|p| p.0 == "bayes")
            .map(|p| summarize(&part(&p.1)));
        for (name, s) in &predictors {
            let sum = summarize(&part(s));
            if sum.hops == 0 {
                continue;
            }
            let h = h.unwrap_or(f64::NAN);
            let b = bayes.map_or(f64::NAN, |b| b.top1);
            out.push(vec![
                Value::str(name),
                Value::str(&label),
                Value::Int(sum.hops as i64),
                num(sum.bits_per_hop),
                num(h),
                num(sum.bits_per_hop / h),
                num(sum.top1),
                num(b),
                num(sum.top1 / b),
            ]);
        }
        if period == 0 {
            let m = summarize(&predictors[0].1);
            all = (m.hops > 0).then_some((m, h.zip(bayes)));
            for (name, s) in &predictors {
                let sum = summarize(s);
                lines.push(format!(
                    "{name:<12} {:>9} hops · {:.4} bits/hop · top-1 {:.4}",
                    sum.hops, sum.bits_per_hop, sum.top1
                ));
            }
        }
    }
    let fits = truth.map_or_else(Vec::new, |t| {
        adaptations(
            &model_all,
            t,
            options.adaptation_window_hops,
            options.adaptation_tolerance,
        )
    });
    for f in &fits {
        lines.push(match f.adapted {
            Some(a) => format!(
                "change {} ({}, {}): adapted after {} s ({} hops)",
                f.change,
                f.kind,
                format_time(f.time_ms),
                a.ms as f64 / 1000.0,
                a.hops
            ),
            None => format!(
                "change {} ({}, {}): not adapted before the next change ({} hops after it)",
                f.change,
                f.kind,
                format_time(f.time_ms),
                f.hops_after
            ),
        });
    }
    Markov {
        rows: out,
        all,
        fits,
        lines,
    }
}

fn adaptation_rows(fits: &[ChangeFit]) -> Vec<Vec<Value>> {
    fits.iter()
        .map(|f| {
            vec![
                Value::Int(f.change as i64),
                Value::Time(f.time_ms),
                Value::str(&f.kind),
                num(f.old_bits),
                num(f.new_bits),
                Value::Int(f.reference_hops as i64),
                num(f.steady_ratio),
                num(f.threshold_bits),
                Value::Int(f.hops_after as i64),
                Value::Bool(f.adapted.is_some()),
                f.adapted.map_or(Value::Null, |a| Value::Int(a.hops as i64)),
                f.adapted.map_or(Value::Null, |a| Value::Int(a.ms)),
            ]
        })
        .collect()
}

fn pipe_row(source: &str, target: &str, s: &PipeStats) -> Vec<Value> {
    let n = |x: usize| Value::Int(x as i64);
    vec![
        Value::str(source),
        Value::str(target),
        n(s.created_predicted),
        n(s.created_demand),
        n(s.used),
        n(s.miss),
        num(s.recall()),
        n(s.predicted_used),
        n(s.predicted_unused),
        n(s.pending),
        num(s.precision()),
        num(s.openings_predicted()),
        num(s.median_lead_ms()),
        n(s.torn_down),
        num(s.idle_ms as f64 / 1000.0),
        num(s.wasted_ms as f64 / 1000.0),
    ]
}

fn resonance_rows(a: &Agreement) -> Vec<Vec<Value>> {
    let score_ranks = ranks(&a.pairs.iter().map(|p| p.2).collect::<Vec<_>>());
    let quality_ranks = ranks(&a.pairs.iter().map(|p| p.4).collect::<Vec<_>>());
    a.pairs
        .iter()
        .enumerate()
        .map(|(i, (source, target, score, base, quality))| {
            vec![
                Value::str(source),
                Value::str(target),
                num(*score),
                num(*base),
                num(*quality),
                num(score_ranks[i]),
                num(quality_ranks[i]),
            ]
        })
        .collect()
}

/// The selection output's summary line: re-selections and the last choice of each window.
fn selection_line(rows: &[Vec<Value>]) -> Option<String> {
    let mut chosen: Vec<(i64, i64, i64, String, f64)> = rows
        .iter()
        .filter(|r| r.get(5) == Some(&Value::Bool(true)))
        .filter_map(|r| {
            match (
                r.first(),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4).and_then(Value::as_f64),
            ) {
                (
                    Some(Value::Time(t) | Value::Int(t)),
                    Some(Value::Int(w)),
                    Some(Value::Int(k)),
                    Some(Value::Str(d)),
                    Some(b),
                ) => Some((*w, *t, *k, d.to_string(), b)),
                _ => None,
            }
        })
        .collect();
    chosen.sort_by_key(|a| (a.0, a.1));
    let mut windows: Vec<String> = Vec::new();
    for (i, (w, t, k, d, b)) in chosen.iter().enumerate() {
        if chosen.get(i + 1).is_some_and(|next| next.0 == *w) {
            continue;
        }
        windows.push(format!(
            "window {}: last at {}, order {k}, discount {d}, {b:.4} bits/hop held out",
            crate::plan::duration::format_duration(*w as u64),
            format_time(*t)
        ));
    }
    if windows.is_empty() {
        return None;
    }
    Some(format!(
        "{} re-selections ({} candidate rows); {}",
        chosen.len(),
        rows.len(),
        windows.join("; ")
    ))
}

/// Every table of the evaluation of stage `name`; `truth` is the truth file read, or why there
/// is none.
pub fn evaluate(
    name: &str,
    outputs: &BTreeMap<String, Vec<Vec<Value>>>,
    truth: Result<(&Path, &Truth), &str>,
    options: &ServicesOptions,
    from: Option<i64>,
    until: Option<i64>,
) -> Vec<Evaluation> {
    let output = |suffix: &str| outputs.get(&format!("{name}_{suffix}")).map(Vec::as_slice);
    let t = truth.ok().map(|t| t.1);
    let mut summary = vec![match truth {
        Ok((path, t)) => format!(
            "truth {} · order {} · {} regimes · {} changes",
            path.display(),
            t.order,
            t.regimes.len(),
            t.changes.len()
        ),
        Err(why) => format!("no truth ({why}): the entropy rate, Bayes top-1, adaptation and resonance need one"),
    }];
    let mut goals = Vec::new();
    let mut tables = Vec::new();
    let table = |suffix: &str, columns: &[&str], rows: Vec<Vec<Value>>, detail: bool| Evaluation {
        name: format!("{name}_{suffix}"),
        columns: columns.iter().map(|c| c.to_string()).collect(),
        rows,
        summary: Vec::new(),
        detail,
    };

    // Markov.
    match output("hops") {
        Some(rows) => {
            let m = markov(rows, t, options, from, until);
            summary.extend(m.lines);
            if let Some((model, truth_side)) = m.all {
                let (h, bayes) = truth_side.map_or((f64::NAN, f64::NAN), |(h, b)| (h, b.top1));
                goals.push(Goal {
                    id: "log_loss",
                    goal: "log-loss of the next service (bits per hop) over the entropy rate",
                    target: "<= 1.02 x entropy rate",
                    value: model.bits_per_hop,
                    baseline: "entropy_rate",
                    baseline_value: h,
                    met: h.is_finite().then(|| model.bits_per_hop / h <= LOSS_RATIO_GOAL),
                });
                goals.push(Goal {
                    id: "top1",
                    goal: "top-1 accuracy over the Bayes predictor's on the same hops",
                    target: "reported",
                    value: model.top1,
                    baseline: "bayes",
                    baseline_value: bayes,
                    met: None,
                });
            }
            tables.push(table("markov_eval", &MARKOV_COLUMNS, m.rows, false));
            if t.is_some() {
                tables.push(table(
                    "adaptation_eval",
                    &ADAPTATION_COLUMNS,
                    adaptation_rows(&m.fits),
                    false,
                ));
            }
        }
        None => summary.push(format!("no `{name}_hops` output: no Markov evaluation")),
    }
    if let Some(line) = output("selection").and_then(selection_line) {
        summary.push(line);
    }

    // Pipes.
    match output("pipe_events") {
        Some(rows) => {
            let (events, skipped) = parse_pipe_events(rows);
            summary.extend(counted("pipe events not read", &skipped));
            let report = replay(&events, from, until);
            summary.extend(counted("pipe events that do not fit the lifecycle", &report.problems));
            let a = &report.all;
            summary.push(format!(
                "pipes: {} predicted, {} on demand, {} pending (open and unused at the end, left out of precision), {} torn down",
                a.created_predicted, a.created_demand, a.pending, a.torn_down
            ));
            let precision = a.precision();
            let recall = a.recall();
            let lead = a.median_lead_ms();
            goals.push(Goal {
                id: "pipe_precision",
                goal: "predicted pipes used ÷ predicted pipes used or torn down",
                target: ">= 0.9",
                value: precision,
                baseline: "",
                baseline_value: f64::NAN,
                met: precision.is_finite().then_some(precision >= PRECISION_GOAL),
            });
            goals.push(Goal {
                id: "pipe_recall",
                goal: "hops that found a pipe ÷ hops that looked for one",
                target: ">= 0.8",
                value: recall,
                baseline: "",
                baseline_value: f64::NAN,
                met: recall.is_finite().then_some(recall >= RECALL_GOAL),
            });
            goals.push(Goal {
                id: "pipe_openings",
                goal: "calls that found no pipe kept open by earlier traffic and were served by a predicted one",
                target: "reported",
                value: a.openings_predicted(),
                baseline: "",
                baseline_value: f64::NAN,
                met: None,
            });
            goals.push(Goal {
                id: "pipe_lead",
                goal: "median lead time of first uses of predicted pipes (ms)",
                target: "> 0",
                value: lead,
                baseline: "",
                baseline_value: f64::NAN,
                met: lead.is_finite().then_some(lead > 0.0),
            });
            goals.push(Goal {
                id: "pipe_wasted",
                goal: "idle pipe-seconds of never-used predicted pipes, over all torn-down pipes'",
                target: "reported",
                value: a.wasted_ms as f64 / 1000.0,
                baseline: "idle_s",
                baseline_value: a.idle_ms as f64 / 1000.0,
                met: None,
            });
            let mut rows = vec![pipe_row("*", "*", a)];
            rows.extend(report.pairs.iter().map(|((s, t), p)| pipe_row(s, t, p)));
            tables.push(table("pipes_eval", &PIPE_COLUMNS, rows, true));
        }
        None => summary.push(format!("no `{name}_pipe_events` output: no pipe evaluation")),
    }

    // Resonance.
    match (output("resonance"), t) {
        (Some(rows), Some(t)) => {
            let (scores, skipped) = parse_scores(rows);
            summary.extend(counted("resonance rows not read", &skipped));
            let last = t.regimes.len() - 1;
            let a = agreement(&scores, &truth_quality(t, last, &options.resonance));
            summary.push(format!(
                "resonance: {} pairs scored and in the final regime; {} of its edges unscored, {} scored pairs it does not use; Pearson {:.4}",
                a.pairs.len(),
                a.unscored_edges,
                a.unknown_pairs,
                a.pearson
            ));
            goals.push(Goal {
                id: "resonance_rank",
                goal: "Spearman correlation of the final scores with the truth's edge quality",
                target: "reported",
                value: a.spearman,
                baseline: "base_score",
                baseline_value: a.spearman_base,
                met: None,
            });
            tables.push(table("resonance_eval", &RESONANCE_COLUMNS, resonance_rows(&a), true));
        }
        (Some(_), None) => summary.push("resonance: not compared (needs a truth)".into()),
        (None, _) => summary.push(format!("no `{name}_resonance` output: no resonance evaluation")),
    }

    summary.extend(goals.iter().map(Goal::line));
    let mut goal_table = table("goals", &GOAL_COLUMNS, goals.iter().map(Goal::row).collect(), false);
    goal_table.summary = summary;
    let mut out = vec![goal_table];
    out.extend(tables);
    out
}
