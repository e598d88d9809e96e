//! The fields a source's records have, read at start-up for `sluice check` and `sluice run`:
//! the Parquet footer of each file (no rows are read), the first [`SAMPLE_LINES`] lines of each
//! NDJSON file, the header of each CSV file, and JSON Schemas pinned by a schema stage. The result is a
//! [`FieldTree`] of the payload (the time and type fields are not in it).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};

use super::SourceError;
use crate::plan::field_tree::FieldTree;
use crate::plan::{Format, SourcePlan};

pub use crate::plan::known_fields::SAMPLE_LINES;

/// The probe `crate::plan::known_fields` checks field references with: the sources' files.
pub struct Files;

impl crate::plan::known_fields::SchemaProbe for Files {
    fn files_exist(&self, source: &SourcePlan) -> Result<(), crate::error::PlanError> {
        Ok(files_exist(source)?)
    }
    fn payload_tree(&self, source: &SourcePlan) -> Result<FieldTree, crate::error::PlanError> {
        Ok(payload_tree(source)?)
    }
    fn pinned_tree(&self, path: &Path) -> Result<FieldTree, crate::error::PlanError> {
        Ok(pinned_tree(path)?)
    }
}

/// Reads and plans a spec file, checking every field it names against its sources' files.
/// `inputs` override source paths (`--input NAME=PATH`).
pub fn plan_file(
    path: &Path,
    inputs: &[(String, std::path::PathBuf)],
) -> Result<crate::plan::Plan, crate::error::PlanError> {
    crate::plan::plan_file_with(path, inputs, &Files)
}

/// The payload fields of a source's files.
pub fn payload_tree(plan: &SourcePlan) -> Result<FieldTree, SourceError> {
    let files = super::expand(plan)?;
    let mut tree = FieldTree::default();
    for path in &files {
        let file_tree = match plan.format {
            Format::Parquet => parquet_tree(plan, path)?,
            Format::Ndjson | Format::Tcp => ndjson_tree(plan, path)?,
            Format::Csv => csv_tree(plan, path)?,
        };
        tree.merge(file_tree);
    }
    Ok(tree)
}

/// The paths a source's files name, directories expanded; errors name a missing file.
pub fn files_exist(plan: &SourcePlan) -> Result<(), SourceError> {
    super::expand(plan).map(|_| ())
}

fn parquet_tree(plan: &SourcePlan, path: &Path) -> Result<FieldTree, SourceError> {
    let file = File::open(path).map_err(|e| SourceError::open(path, e))?;
    let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(|e| SourceError::open(path, e))?;
    let mut tree = FieldTree::default();
    for field in meta.schema().fields() {
        let name = field.name();
        if name != &plan.time_field && name != &plan.type_field {
            tree.insert(name, arrow_tree(field.data_type()));
        }
    }
    Ok(tree)
}

/// Structs are objects and lists lists, as `arrow_read` decodes them; every other column is a
/// scalar (maps and other nested types are read as JSON text).
fn arrow_tree(dtype: &DataType) -> FieldTree {
    let mut tree = FieldTree::scalar();
    match dtype {
        DataType::Struct(fields) => {
            for f in fields {
                tree.insert(f.name(), arrow_tree(f.data_type()));
            }
            // A struct without fields is an empty object: nothing is below it.
        }
        DataType::List(f) | DataType::LargeList(f) => tree.items = Some(Box::new(arrow_tree(f.data_type()))),
        _ => {}
    }
    tree
}

/// The columns of a CSV file's header (or the spec's `columns`), each a scalar.
fn csv_tree(plan: &SourcePlan, path: &Path) -> Result<FieldTree, SourceError> {
    let schema = super::csv::FileSchema::read(plan, path)?;
    let mut tree = FieldTree::default();
    for (i, field) in schema.schema.fields().iter().enumerate() {
        if i != schema.time && Some(i) != schema.kind {
            tree.insert(field.name(), FieldTree::scalar());
        }
    }
    Ok(tree)
}

fn ndjson_tree(plan: &SourcePlan, path: &Path) -> Result<FieldTree, SourceError> {
    let file = File::open(path).map_err(|e| SourceError::open(path, e))?;
    let mut reader = BufReader::new(file);
    let mut tree = FieldTree::default();
    let mut line = Vec::new();
    let mut seen = 0;
    while seen < SAMPLE_LINES {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| SourceError::read(path, e))?;
        if n == 0 {
            break;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        seen += 1;
        // Lines that do not parse become dead letters when the source is read; they name no fields.
        if let Ok(serde_json::Value::Object(mut map)) = serde_json::from_slice(&line) {
            map.remove(&plan.time_field);
            map.remove(&plan.type_field);
            if !map.is_empty() {
                tree.observe(&serde_json::Value::Object(map));
            }
        }
    }
    Ok(tree)
}

/// The fields of a pinned JSON Schema file. A field of any kind, or an object or list whose
/// contents the schema leaves unsaid, is open.
pub fn pinned_tree(path: &Path) -> Result<FieldTree, SourceError> {
    use crate::schema::{Kind, Schema};
    let text = std::fs::read_to_string(path).map_err(|e| SourceError::open(path, e))?;
    let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| SourceError::open(path, e))?;
    let schema = Schema::from_json_schema(&doc).map_err(|e| SourceError::open(path, e))?;
    let root = schema.tree().map_err(|e| SourceError::open(path, e))?;
    fn convert(node: &crate::schema::schema::Node) -> FieldTree {
        let kinds = node.kinds();
        let any = node.field.as_ref().is_some_and(|f| f.kinds.is_empty() && !f.nullable);
        let mut tree = FieldTree {
            open: any || (kinds.contains(&Kind::Object) && node.fields.is_empty()),
            ..FieldTree::default()
        };
        for (name, child) in &node.fields {
            tree.insert(name, convert(child));
        }
        tree.items = match &node.items {
            Some(items) => Some(Box::new(convert(items))),
            None if kinds.contains(&Kind::List) => Some(Box::new(FieldTree::open())),
            None => None,
        };
        tree
    }
    let mut tree = convert(&root);
    // The root is the payload: an object, whatever the document says of its kind.
    tree.open = false;
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::FieldPath;

    fn plan(format: Format, path: &Path) -> SourcePlan {
        SourcePlan {
            name: "s".into(),
            format,
            paths: vec![path.to_path_buf()],
            time_field: "ts".into(),
            type_field: "kind".into(),
            fixed_type: None,
            time_unit_ms: 1.0,
            allowed_lateness_ms: 0,
            projection: None,
            limits: Default::default(),
            csv: Default::default(),
            fields: crate::plan::Fields::Closed,
        }
    }

    fn known(tree: &FieldTree, p: &str) -> bool {
        tree.resolve(&FieldPath::parse(p).unwrap()).is_ok()
    }

    #[test]
    fn ndjson_fields_come_from_the_first_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.ndjson");
        let mut text = String::from("{\"ts\":1,\"kind\":\"a\",\"user\":{\"id\":1},\"tags\":[\"x\"]}\nnot json\n\n");
        for _ in 0..SAMPLE_LINES {
            text.push_str("{\"ts\":2,\"kind\":\"a\",\"n\":1}\n");
        }
        text.push_str("{\"ts\":3,\"kind\":\"a\",\"late_field\":1}\n");
        std::fs::write(&path, text).unwrap();
        let tree = payload_tree(&plan(Format::Ndjson, &path)).unwrap();
        for p in ["user.id", "tags[0]", "n"] {
            assert!(known(&tree, p), "{p}");
        }
        for p in ["ts", "kind", "user.name", "late_field"] {
            assert!(!known(&tree, p), "{p}");
        }
        let missing = payload_tree(&plan(Format::Ndjson, &dir.path().join("nope.ndjson"))).unwrap_err();
        assert!(missing.to_string().contains("nope.ndjson"), "{missing}");
    }

    #[test]
    fn pinned_schemas_name_their_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let doc = serde_json::json!({
            "type": "object",
            "properties": {
                "amount": {"type": "number"},
                "address": {"type": "object", "properties": {"city": {"type": "string"}}},
                "extra": {}
            }
        });
        std::fs::write(&path, doc.to_string()).unwrap();
        let tree = pinned_tree(&path).unwrap();
        for p in ["amount", "address.city", "extra.whatever"] {
            assert!(known(&tree, p), "{p}");
        }
        for p in ["amont", "address.zip"] {
            assert!(!known(&tree, p), "{p}");
        }
    }
}
