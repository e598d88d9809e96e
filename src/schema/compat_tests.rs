//! Table-driven tests of the compatibility modes against Confluent's documented rules.

use super::compat::{check, verdicts, Compatibility, Compatibility::*};
use super::kind::Kind;
use super::schema::{FieldSchema, Schema};

fn field(kind: Kind, required: bool) -> FieldSchema {
    FieldSchema {
        required,
        ..FieldSchema::of([kind])
    }
}

/// The version every change starts from.
fn base() -> Schema {
    Schema::from_fields([
        ("id", field(Kind::Int, true)),
        ("note", field(Kind::String, false)),
        ("n", field(Kind::Int, true)),
        ("x", field(Kind::Float, true)),
        ("s", field(Kind::String, true)),
    ])
}

fn with(edit: impl FnOnce(&mut Schema)) -> Schema {
    let mut s = base();
    edit(&mut s);
    s
}

const Y: bool = true;
const N: bool = false;

#[test]
fn each_change_against_each_mode() {
    // Columns: BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE, NONE.
    type Edit = fn(&mut Schema);
    let table: [(&str, Edit, [bool; 7]); 11] = [
        (
            "add optional",
            |s| {
                s.fields.insert("extra".into(), field(Kind::String, false));
            },
            [Y, Y, Y, Y, Y, Y, Y],
        ),
        (
            "add required",
            |s| {
                s.fields.insert("extra".into(), field(Kind::String, true));
            },
            [N, N, Y, Y, N, N, Y],
        ),
        (
            "add required with default",
            |s| {
                let mut f = field(Kind::String, true);
                f.default = Some("none".into());
                s.fields.insert("extra".into(), f);
            },
            [Y, Y, Y, Y, Y, Y, Y],
        ),
        (
            "remove optional",
            |s| {
                s.fields.remove("note");
            },
            [Y, Y, Y, Y, Y, Y, Y],
        ),
        (
            "remove required",
            |s| {
                s.fields.remove("id");
            },
            [Y, Y, N, N, N, N, Y],
        ),
        (
            "widen int to float",
            |s| {
                s.fields.insert("n".into(), field(Kind::Float, true));
            },
            [Y, Y, N, N, N, N, Y],
        ),
        (
            "narrow float to int",
            |s| {
                s.fields.insert("x".into(), field(Kind::Int, true));
            },
            [N, N, Y, Y, N, N, Y],
        ),
        (
            "change string to int",
            |s| {
                s.fields.insert("s".into(), field(Kind::Int, true));
            },
            [N, N, N, N, N, N, Y],
        ),
        (
            "make optional required",
            |s| {
                s.fields.insert("note".into(), field(Kind::String, true));
            },
            [N, N, Y, Y, N, N, Y],
        ),
        (
            "make required optional",
            |s| {
                s.fields.insert("id".into(), field(Kind::Int, false));
            },
            [Y, Y, N, N, N, N, Y],
        ),
        (
            "rename a required field",
            |s| {
                let f = s.fields.remove("id").unwrap();
                s.fields.insert("ident".into(), f);
            },
            [N, N, N, N, N, N, Y],
        ),
    ];
    for (name, edit, expected) in table {
        let candidate = with(edit);
        for (history_len, history) in [(1, vec![base()]), (2, vec![base(), base()])] {
            for ((mode, verdict), want) in verdicts(&history, &candidate).into_iter().zip(expected) {
                assert_eq!(
                    verdict.is_ok(),
                    want,
                    "{name} under {mode} with {history_len} versions: {verdict:?}"
                );
                if let Err(e) = verdict {
                    assert_eq!(e.mode, mode);
                    assert!(e.against_version >= 1 && e.against_version <= history_len);
                }
            }
        }
    }
}

#[test]
fn rejections_name_the_path_and_rule() {
    let candidate = with(|s| {
        s.fields.insert("extra".into(), field(Kind::String, true));
    });
    let e = check(Backward, &[base()], &candidate).unwrap_err();
    assert_eq!(e.path, "extra");
    assert_eq!(e.against_version, 1);
    assert_eq!(
        e.to_string(),
        "BACKWARD: incompatible with version 1 at `extra`: the new schema cannot read old data: \
         a required field without default that the writer does not have"
    );
    let e = check(
        Full,
        &[base()],
        &with(|s| drop(s.fields.insert("n".into(), field(Kind::Float, true)))),
    )
    .unwrap_err();
    assert_eq!(
        (e.path.as_str(), e.rule.as_str()),
        (
            "n",
            "the old schema cannot read new data: written as float, read as int"
        )
    );
}

#[test]
fn defaults_and_nesting() {
    // FORWARD: deleting a required field is fine when the old schema has a default for it.
    let mut old = base();
    old.fields.get_mut("id").unwrap().default = Some(0.into());
    assert!(check(Forward, &[old], &with(|s| drop(s.fields.remove("id")))).is_ok());
    // A required field inside a new optional object does not break BACKWARD.
    let candidate = with(|s| {
        s.fields.insert("geo".into(), field(Kind::Object, false));
        s.fields.insert("geo.lat".into(), field(Kind::Float, true));
    });
    assert!(check(Backward, &[base()], &candidate).is_ok());
    // But it does when the object already existed.
    let old = candidate.clone();
    let mut new = candidate.clone();
    new.fields.insert("geo.lon".into(), field(Kind::Float, true));
    assert_eq!(check(Backward, &[old], &new).unwrap_err().path, "geo.lon");
    // Nullability.
    let mut nullable = base();
    nullable.fields.get_mut("s").unwrap().nullable = true;
    assert!(check(Backward, &[nullable.clone()], &base()).is_err());
    assert!(check(Forward, &[nullable.clone()], &base()).is_ok());
    assert!(check(Backward, &[base()], &nullable).is_ok());
}

#[test]
fn transitive_modes_check_every_version() {
    let int = |required| Schema::from_fields([("a", field(Kind::Int, required))]);
    let string = |required| Schema::from_fields([("a", field(Kind::String, required))]);
    let empty = Schema::default();
    // (mode, v1, v2, v3): v2 follows v1 and v3 follows v2, but v3 breaks against v1.
    let cases = [
        (Backward, int(true), empty.clone(), string(false)),
        (Forward, int(false), empty.clone(), string(true)),
        (Full, int(false), empty.clone(), string(false)),
    ];
    for (mode, v1, v2, v3) in cases {
        let transitive = match mode {
            Backward => BackwardTransitive,
            Forward => ForwardTransitive,
            _ => FullTransitive,
        };
        assert!(check(mode, std::slice::from_ref(&v1), &v2).is_ok(), "{mode}: v2");
        assert!(
            check(transitive, std::slice::from_ref(&v1), &v2).is_ok(),
            "{transitive}: v2"
        );
        assert!(check(mode, &[v1.clone(), v2.clone()], &v3).is_ok(), "{mode}: v3");
        let e = check(transitive, &[v1, v2], &v3).unwrap_err();
        assert_eq!((e.against_version, e.path.as_str()), (1, "a"), "{transitive}");
    }
}

#[test]
fn modes_parse() {
    for m in Compatibility::ALL {
        assert_eq!(m.name().parse::<Compatibility>(), Ok(m));
        assert_eq!(m.name().to_lowercase().parse::<Compatibility>(), Ok(m));
        assert_eq!(serde_json::to_value(m).unwrap(), serde_json::Value::from(m.name()));
    }
    assert_eq!("full-transitive".parse(), Ok(FullTransitive));
    assert!("SIDEWAYS".parse::<Compatibility>().is_err());
    assert!(check(Backward, &[], &base()).is_ok());
}
