//! Inferred kinds agree with arrow-json's `infer_json_schema` on the same NDJSON wherever both
//! define the type: int, float, bool, string, lists and objects (recursively), `int + float →
//! float`, other scalar mixes → string, and null + a kind → that kind, nullable.

use std::collections::BTreeSet;
use std::io::Cursor;

use arrow::datatypes::{DataType, Fields};

use super::infer::{observe, Inferred};
use super::kind::Kind;
use super::path;
use super::testing::json_payload;

/// The kind arrow gives each path, recursively (`None` where arrow has no equivalent: `Null`).
fn arrow_kinds(fields: &Fields, at: &str, out: &mut Vec<(String, Option<Kind>)>) {
    for f in fields {
        walk(f.data_type(), &path::child(at, f.name()), out);
    }
}

fn walk(t: &DataType, p: &str, out: &mut Vec<(String, Option<Kind>)>) {
    let kind = match t {
        DataType::Null => None,
        DataType::Boolean => Some(Kind::Bool),
        DataType::Int64 => Some(Kind::Int),
        DataType::Float64 => Some(Kind::Float),
        DataType::Utf8 => Some(Kind::String),
        DataType::List(item) => {
            walk(item.data_type(), &path::items(p), out);
            Some(Kind::List)
        }
        DataType::Struct(fields) => {
            arrow_kinds(fields, p, out);
            Some(Kind::Object)
        }
        other => panic!("{p}: unexpected arrow type {other}"),
    };
    out.push((p.to_string(), kind));
}

#[test]
fn kinds_agree_with_arrow_json() {
    let lines = [
        r#"{"i":1,"f":1.5,"b":true,"s":"x","l":[1,2],"o":{"k":1,"n":{"z":"a"}},"mix":1,"lm":[1],"n":null,"ni":null,"sm":1,"bm":true}"#,
        r#"{"i":2,"f":2.0,"b":false,"s":"y","l":[],"o":{"k":2},"mix":2.5,"lm":[2.5],"ni":3,"sm":"a","bm":1}"#,
        r#"{"i":3,"s":"z","lo":[{"a":1},{"a":2.5,"b":"q"}],"o":{"k":3,"n":{"z":"b"}}}"#,
    ];
    let text = lines.join("\n");
    let (arrow, _) = arrow_json::reader::infer_json_schema(Cursor::new(text.as_bytes()), None).unwrap();
    let mut expected = Vec::new();
    arrow_kinds(arrow.fields(), "", &mut expected);

    let mut ours = Inferred::default();
    for line in lines {
        ours.merge(&observe(&json_payload(line)).unwrap());
    }
    let schema = ours.schema();
    let mut checked = BTreeSet::new();
    for (p, kind) in expected {
        let field = &schema.fields[&p];
        match kind {
            Some(k) => assert_eq!(field.kinds, BTreeSet::from([k]), "{p}"),
            None => assert!(field.kinds.is_empty() && field.nullable, "{p}"),
        }
        checked.insert(p);
    }
    for p in [
        "i", "f", "b", "s", "l", "l[]", "o", "o.k", "o.n.z", "mix", "lm[]", "lo[].a", "lo[].b", "sm", "bm",
    ] {
        assert!(checked.contains(p), "{p} not compared");
    }
    assert_eq!(schema.fields["mix"].kinds, BTreeSet::from([Kind::Float]));
    assert_eq!(schema.fields["sm"].kinds, BTreeSet::from([Kind::String]));
    assert_eq!(schema.fields["bm"].kinds, BTreeSet::from([Kind::String]));
    assert!(schema.fields["ni"].nullable);
    // Every path we infer, arrow infers too.
    assert_eq!(checked, schema.fields.keys().cloned().collect());
}
