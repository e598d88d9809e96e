//! `[[joins]]` entries → [`BinaryJoinPlan`]: the kind, the time condition (none, `interval`
//! or `window`), the keys and columns bound to each side's fields, the `where` condition bound
//! to the joined row's. Field names are checked against the inputs' schemas later
//! (`known_fields`), which also rejects output columns that two sides would both write.

use super::super::join::{parse_field_entry, BinaryJoinPlan, Columns, JoinKind, JoinTime, Upper};
use super::super::spec::{BinaryJoinSpec, S};
use super::super::{Plan, StageRef};
use super::{valid_output_name, Cx, SpecError};
use crate::event::{Accessor, FieldPath};

impl Cx<'_> {
    /// `joins[i]`, reading `inputs` (left, right; already planned in `plan`).
    pub(super) fn binary_join(
        &self,
        i: usize,
        spec: &S<BinaryJoinSpec>,
        plan: &Plan,
        inputs: &[StageRef],
        tick_ms: u64,
    ) -> Result<BinaryJoinPlan, SpecError> {
        let j = spec.get_ref();
        let key = |k: &str| format!("joins[{i}].{k}");
        let name = j.name.get_ref().clone();
        if !valid_output_name(&name) {
            return Err(self.error(
                j.name.span(),
                &key("name"),
                format!("`{name}` is not a valid output name"),
                Some("letters, digits, `_` and `-` (it becomes a folder name)".into()),
            ));
        }
        let (left, right) = (&inputs[0], &inputs[1]);
        let (lt, ly) = plan.fields_of(left);
        let (rt, ry) = plan.fields_of(right);
        let kind = match j.kind.as_ref().map(|k| k.get_ref().as_str()) {
            None | Some("inner") => JoinKind::Inner,
            Some("left") => JoinKind::Left,
            Some(other) => {
                let k = j.kind.as_ref().expect("matched a value");
                return Err(self.error(
                    k.span(),
                    &key("kind"),
                    format!("unknown join kind `{other}`"),
                    Some("`\"inner\"` (the default) or `\"left\"` (left outer)".into()),
                ));
            }
        };

        // Keys.
        if j.on.get_ref().is_empty() {
            return Err(self.error(
                j.on.span(),
                &key("on"),
                "a join needs at least one key".into(),
                Some("`on = { left_column = \"right_column\" }`".into()),
            ));
        }
        let (mut on, mut left_key, mut right_key) = (Vec::new(), Vec::new(), Vec::new());
        for (l, r) in j.on.get_ref() {
            let lpath = FieldPath::parse(l)
                .map_err(|e| self.error(j.on.span(), &key(&format!("on.{l}")), e.to_string(), None))?;
            let rpath = FieldPath::parse(r.get_ref())
                .map_err(|e| self.error(r.span(), &key(&format!("on.{l}")), e.to_string(), None))?;
            on.push((l.clone(), r.get_ref().clone()));
            left_key.push(Accessor::bind(lpath, lt, ly));
            right_key.push(Accessor::bind(rpath, rt, ry));
        }

        // Time condition.
        let time = match (&j.interval, &j.window) {
            (Some(_), Some(w)) => {
                return Err(self.error(
                    w.span(),
                    &key("window"),
                    "a join takes `interval` or `window`, not both".into(),
                    None,
                ))
            }
            (None, None) => JoinTime::Changelog,
            (Some(iv), None) => {
                let s = iv.get_ref();
                let before_ms = match &s.before {
                    Some(b) => self.duration(b, &key("interval.before"))?,
                    None => 0,
                };
                let upper = match (&s.after, &s.until) {
                    (Some(a), None) => Upper::After(self.duration(a, &key("interval.after"))?),
                    (None, Some(u)) => {
                        let path = FieldPath::parse(u.get_ref())
                            .map_err(|e| self.error(u.span(), &key("interval.until"), e.to_string(), None))?;
                        Upper::Column {
                            field: u.get_ref().clone(),
                            accessor: Accessor::bind(path, lt, ly),
                        }
                    }
                    _ => {
                        return Err(self.error(
                            iv.span(),
                            &key("interval"),
                            "an interval needs `after = DURATION` or `until = \"LEFT_COLUMN\"` (one of them)".into(),
                            Some("`interval = { before = \"0s\", after = \"10s\" }`: the right row's time within [left time - before, left time + after]".into()),
                        ))
                    }
                };
                JoinTime::Interval { before_ms, upper }
            }
            (None, Some(w)) => {
                if w.get_ref().session.is_some() {
                    return Err(self.error(
                        w.span(),
                        &key("window"),
                        "a window join takes tumbling or sliding windows, not sessions".into(),
                        Some("`{ tumbling = \"10s\" }` or `{ size = \"10s\", slide = \"2s\" }`".into()),
                    ));
                }
                JoinTime::Window(self.window(w, &key("window"), tick_ms)?)
            }
        };
        if time != JoinTime::Changelog {
            for (input, side, s) in [(left, "left", &j.left), (right, "right", &j.right)] {
                if plan.retracts(input) {
                    return Err(self.error(
                        s.span(),
                        &key(side),
                        format!(
                            "`{}` revises what it emitted, and interval and window joins read insert-only inputs (their state is released as the watermark passes)",
                            s.get_ref()
                        ),
                        Some("join it without `interval` or `window` (a changelog join), or read an insert-only input".into()),
                    ));
                }
            }
        }

        // Columns.
        let listed = |entries: &Vec<S<String>>, side: &str, fields: (&str, &str)| -> Result<Columns, SpecError> {
            let mut out: Vec<(String, Accessor)> = Vec::new();
            for (n, e) in entries.iter().enumerate() {
                let k = key(&format!("{side}_fields[{n}]"));
                let (path, _, name) = parse_field_entry(e.get_ref()).map_err(|err| {
                    self.error(
                        e.span(),
                        &k,
                        err.to_string(),
                        Some("`\"COLUMN\"` or `\"COLUMN as NAME\"`".into()),
                    )
                })?;
                if out.iter().any(|(o, _)| *o == name) {
                    return Err(self.error(e.span(), &k, format!("column `{name}` is listed twice"), None));
                }
                out.push((name, Accessor::bind(path, fields.0, fields.1)));
            }
            Ok(Columns::Listed(out))
        };
        let left_columns = match &j.left_fields {
            Some(entries) => listed(entries, "left", (lt, ly))?,
            None => Columns::All {
                prefix: String::new(),
                skip: Vec::new(),
            },
        };
        let prefix = match &j.right_prefix {
            None => String::new(),
            Some(p) => {
                let text = p.get_ref();
                let plain = FieldPath::parse(&format!("{text}x"))
                    .is_ok_and(|f| f.steps.len() == 1 && f.head().is_some_and(|h| h.as_str() == format!("{text}x")));
                if text.is_empty() || !plain {
                    return Err(self.error(
                        p.span(),
                        &key("right_prefix"),
                        format!("`{text}` cannot begin field names"),
                        Some("letters, digits and `_`, such as `\"bid_\"`".into()),
                    ));
                }
                text.clone()
            }
        };
        let right_columns = match &j.right_fields {
            Some(entries) => {
                let Columns::Listed(mut cols) = listed(entries, "right", (rt, ry))? else {
                    unreachable!("listed columns")
                };
                // The prefix names the columns that have no alias.
                for ((name, _), e) in cols.iter_mut().zip(entries) {
                    if !e.get_ref().contains(char::is_whitespace) {
                        *name = format!("{prefix}{name}");
                    }
                }
                Columns::Listed(cols)
            }
            None => {
                // A right key column named as the left key it equals is that column already.
                let skip = on
                    .iter()
                    .zip(&right_key)
                    .filter(|((l, r), a)| l == r && matches!(a, Accessor::Payload(p) if p.steps.len() == 1))
                    .map(|((_, r), _)| r.clone())
                    .filter(|_| prefix.is_empty())
                    .collect();
                Columns::All { prefix, skip }
            }
        };
        let filter = match &j.filter {
            Some(f) => Some(self.expr(f, &key("where"), 0, f.get_ref())?.bind(lt, ly)),
            None => None,
        };
        Ok(BinaryJoinPlan {
            name,
            kind,
            time,
            on,
            left_key,
            right_key,
            left_columns,
            right_columns,
            left_fields: (lt.to_string(), ly.to_string()),
            right_fields: (rt.to_string(), ry.to_string()),
            filter,
            left_lag_ms: plan.lag_of(left),
            right_lag_ms: plan.lag_of(right),
        })
    }
}
