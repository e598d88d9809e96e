//! Range tables checked at load: before a run, every file-backed context source of an
//! `ip_range` join is read once and its CIDR ranges are checked for overlaps, so a bad table is a
//! clear error naming the file, the rows and both ranges instead of a stream of dead letters.

use crate::error::RunError;
use crate::event::Accessor;
use crate::model::ip::{parse_cidr, RangeTable};
use crate::plan::{Matching, Plan};
use crate::source::{reader, Decoded, Layout};
use crate::value::Value;

/// Checks the range tables of `plan`'s `ip_range` joins; `layouts` are the sources' layouts.
pub fn check(plan: &Plan, layouts: &[Layout]) -> Result<(), RunError> {
    let joins = plan
        .enrichments()
        .flat_map(|e| &e.joins)
        .filter(|j| j.matching == Matching::IpRange);
    for join in joins {
        let (source, layout) = (&plan.sources[join.context], &layouts[join.context]);
        if layout.files.is_empty() {
            continue;
        }
        let cidr: &Accessor = &join.context_key[0];
        // Versions of one range are fine; a range overlapping a different one is not.
        let mut table: RangeTable<String> = RangeTable::default();
        let mut failure: Option<RunError> = None;
        let mut read = reader(source, layout);
        for split in &layout.splits {
            let mut check_chunk = |chunk: &mut Vec<Decoded>| {
                for decoded in chunk.drain(..) {
                    let Decoded::Event(row, pos) = decoded else { continue };
                    let Some(Value::Str(text)) = cidr.get(&row) else {
                        continue;
                    };
                    let Ok(range) = parse_cidr(&text) else { continue };
                    let here = layout.location(split, pos);
                    if let (Err(e), None) = (table.insert(range, &text, here.clone()), &failure) {
                        let first = parse_cidr(&e.existing)
                            .ok()
                            .and_then(|r| table.get(r.first))
                            .map_or(String::new(), |(_, at)| format!(" at {at}"));
                        failure = Some(RunError::Source {
                            path: layout.files[split.file].clone(),
                            message: format!(
                                "context `{}`: range `{}` at {here} overlaps range `{}`{first}; the ranges of an ip_range join must not overlap",
                                source.name, e.new, e.existing
                            ),
                        });
                    }
                }
            };
            read.read(split, &mut check_chunk)?;
            if let Some(e) = failure {
                return Err(e);
            }
        }
    }
    Ok(())
}
