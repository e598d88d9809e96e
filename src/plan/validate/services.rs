//! `[[services]]` entries → [`ServicesPlan`]: fields bound to the log's schema, durations,
//! ranges, and the resonance and pipe settings checked.

use super::super::services::{PipeRule, ServicesPlan};
use super::super::spec::{ServicesSpec, S};
use super::{Cx, SpecError};
use crate::event::{Accessor, FieldPath};
use crate::model::markov::Discount;
use crate::model::pipes::PipeConfig;

impl Cx<'_> {
    /// `services[i]`, reading an interaction log whose time and type fields are `fields`.
    pub(super) fn services(
        &self,
        i: usize,
        spec: &S<ServicesSpec>,
        fields: (&str, &str),
    ) -> Result<ServicesPlan, SpecError> {
        let s = spec.get_ref();
        let key = |k: &str| format!("services[{i}].{k}");
        let field = |f: &Option<S<String>>, k: &str, default: &str| -> Result<Accessor, SpecError> {
            let (text, span) = f
                .as_ref()
                .map_or((default.to_string(), spec.span()), |f| (f.get_ref().clone(), f.span()));
            let path = FieldPath::parse(&text).map_err(|e| self.error(span, &key(k), e.to_string(), None))?;
            Ok(Accessor::bind(path, fields.0, fields.1))
        };
        let duration = |d: &Option<S<String>>, k: &str, default: u64| -> Result<u64, SpecError> {
            match d {
                Some(d) => {
                    let ms = self.duration(d, &key(k))?;
                    if ms == 0 {
                        return Err(self.error(d.span(), &key(k), format!("{k} must be positive"), None));
                    }
                    Ok(ms)
                }
                None => Ok(default),
            }
        };
        let in_range = |v: Option<&S<f64>>, k: &str, default: f64, lo: f64, hi: f64, open_lo: bool| {
            let Some(v) = v else { return Ok(default) };
            let x = *v.get_ref();
            let ok = if open_lo { x > lo && x <= hi } else { x >= lo && x <= hi };
            if ok {
                Ok(x)
            } else {
                let range = if open_lo {
                    format!("in ({lo}, {hi}]")
                } else {
                    format!("in [{lo}, {hi}]")
                };
                Err(self.error(v.span(), &key(k), format!("{k} {x} is not {range}"), None))
            }
        };
        let max_order = s.max_order.as_ref().map_or(3, |o| *o.get_ref());
        if !(1..=3).contains(&max_order) {
            let span = s.max_order.as_ref().map_or(spec.span(), |o| o.span());
            return Err(self.error(
                span,
                &key("max_order"),
                format!("max_order {max_order} is not 1 to 3"),
                None,
            ));
        }
        let order = match &s.order {
            Some(o) if !(1..=max_order).contains(o.get_ref()) => {
                return Err(self.error(
                    o.span(),
                    &key("order"),
                    format!("order {} is not 1 to max_order ({max_order})", o.get_ref()),
                    None,
                ))
            }
            Some(o) => Some(*o.get_ref()),
            None => None,
        };
        let discount = match &s.discount {
            Some(_) => Some(Discount::Fixed(in_range(
                s.discount.as_ref(),
                "discount",
                0.5,
                0.0,
                1.0,
                true,
            )?)),
            None => None,
        };
        let reselect_every_ms = match &s.reselect_every {
            Some(r) if r.get_ref() == "off" => None,
            other => Some(duration(other, "reselect_every", 300_000)?),
        };
        let held_out = in_range(s.held_out.as_ref(), "held_out", 0.2, 0.0, 0.5, true)?;
        let window_ms = duration(&s.window, "window", 1_800_000)?;
        let mut long_windows_ms = Vec::new();
        if s.long_windows.is_none() {
            long_windows_ms.push(window_ms.saturating_mul(6));
        }
        for (j, w) in s.long_windows.iter().flatten().enumerate() {
            let ms = duration(&Some(w.clone()), &format!("long_windows[{j}]"), 0)?;
            let shorter = long_windows_ms.last().copied().unwrap_or(window_ms);
            if ms <= shorter {
                return Err(self.error(
                    w.span(),
                    &key(&format!("long_windows[{j}]")),
                    format!(
                        "long window {} is not longer than the window before it ({} ms)",
                        w.get_ref(),
                        shorter
                    ),
                    None,
                ));
            }
            long_windows_ms.push(ms);
        }
        let mix_share = in_range(s.mix_share.as_ref(), "mix_share", 0.001, 0.0, 0.5, false)?;
        let top_k = s.top_k.as_ref().map_or(3, |k| *k.get_ref());
        if !(1..=50).contains(&top_k) {
            let span = s.top_k.as_ref().map_or(spec.span(), |k| k.span());
            return Err(self.error(span, &key("top_k"), format!("top_k {top_k} is not 1 to 50"), None));
        }
        let resonance = match &s.resonance {
            Some(r) => {
                let cfg = *r.get_ref();
                cfg.validate()
                    .map_err(|e| self.error(r.span(), &key("resonance"), e.to_string(), None))?;
                cfg
            }
            None => Default::default(),
        };
        let pipes_spec = s.pipes.as_ref().map(|p| p.get_ref());
        let pkey = |k: &str| format!("pipes.{k}");
        let pget = |f: fn(&super::super::spec::PipesSpec) -> Option<&S<f64>>| pipes_spec.and_then(f);
        let defaults = PipeConfig::default();
        let pipes = PipeConfig {
            max_linger_ms: in_range(
                pget(|p| p.max_linger_ms.as_ref()),
                &pkey("max_linger_ms"),
                defaults.max_linger_ms,
                0.0,
                60_000.0,
                true,
            )?,
            max_batch: pipes_spec
                .and_then(|p| p.max_batch.as_ref())
                .map_or(defaults.max_batch, |b| *b.get_ref()),
            compress_from_bytes: in_range(
                pget(|p| p.compress_from_bytes.as_ref()),
                &pkey("compress_from_bytes"),
                defaults.compress_from_bytes,
                0.0,
                f64::MAX,
                false,
            )?,
            zstd_from_bytes: in_range(
                pget(|p| p.zstd_from_bytes.as_ref()),
                &pkey("zstd_from_bytes"),
                defaults.zstd_from_bytes,
                0.0,
                f64::MAX,
                false,
            )?,
            resonance_weight: in_range(
                pget(|p| p.resonance_weight.as_ref()),
                &pkey("resonance_weight"),
                defaults.resonance_weight,
                0.0,
                1.0,
                false,
            )?,
        };
        if let (Some(p), Err(e)) = (&s.pipes, pipes.validate()) {
            return Err(self.error(p.span(), &key("pipes"), e.to_string(), None));
        }
        let none = None;
        let pdur = |f: fn(&super::super::spec::PipesSpec) -> &Option<S<String>>| pipes_spec.map_or(&none, f);
        let target_precision = match pget(|p| p.target_precision.as_ref()) {
            Some(_) => Some(in_range(
                pget(|p| p.target_precision.as_ref()),
                &pkey("target_precision"),
                0.9,
                0.0,
                1.0,
                true,
            )?),
            None => None,
        };
        let precision_window = pipes_spec
            .and_then(|p| p.precision_window.as_ref())
            .map_or(200, |w| *w.get_ref())
            .max(1);
        let rules = s
            .rules
            .iter()
            .map(|r| {
                let r = r.get_ref();
                PipeRule {
                    source: r.source.clone().unwrap_or_else(|| "*".into()),
                    target: r.target.clone().unwrap_or_else(|| "*".into()),
                    filters: r.filters.clone(),
                    transforms: r.transforms.clone(),
                }
            })
            .collect();
        Ok(ServicesPlan {
            name: s.name.get_ref().clone(),
            sequence: field(&s.sequence_field, "sequence_field", "trace_id")?,
            source: field(&s.source_field, "source_field", "source")?,
            target: field(&s.target_field, "target_field", "target")?,
            kind: field(&s.kind_field, "kind_field", "kind")?,
            bytes: field(&s.bytes_field, "bytes_field", "bytes")?,
            latency: field(&s.latency_field, "latency_field", "latency_ms")?,
            max_order,
            order,
            discount,
            window_ms,
            long_windows_ms,
            mix_share,
            reselect_every_ms,
            held_out,
            transitions_every_ms: duration(&s.transitions_every, "transitions_every", 60_000)?,
            top_k,
            sequence_timeout_ms: duration(&s.sequence_timeout, "sequence_timeout", 5_000)?,
            resonance_window_ms: duration(&s.resonance_window, "resonance_window", 300_000)?,
            resonance,
            horizon_ms: duration(pdur(|p| &p.horizon), &pkey("horizon"), 2_000)?,
            threshold: in_range(pget(|p| p.threshold.as_ref()), &pkey("threshold"), 0.5, 0.0, 1.0, true)?,
            idle_timeout_ms: duration(pdur(|p| &p.idle_timeout), &pkey("idle_timeout"), 30_000)?,
            target_precision,
            precision_window,
            min_threshold: in_range(
                pget(|p| p.min_threshold.as_ref()),
                &pkey("min_threshold"),
                0.05,
                0.0,
                1.0,
                true,
            )?,
            feedback_calls: pipes_spec
                .and_then(|p| p.feedback_calls.as_ref())
                .map_or(20, |f| *f.get_ref())
                .max(1),
            pipes,
            rules,
        })
    }
}
