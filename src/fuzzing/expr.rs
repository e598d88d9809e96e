//! The expression parser, printer and evaluator.

use crate::event::Event;
use crate::expr::parse;
use crate::value::{Sym, Value};

/// The bytes, read as UTF-8 (lossily), are an expression.
pub fn expr(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let e = match parse(&text) {
        Ok(e) => e,
        Err(err) => {
            assert!(err.column >= 1 && err.column <= text.chars().count() + 1, "{err:?}");
            let _ = err.to_string();
            return;
        }
    };
    // Print, parse again: the same expression, printed the same. Debug output tells an int
    // from an equal float, which `==` does not.
    let printed = e.to_string();
    let again = parse(&printed).unwrap_or_else(|err| panic!("`{printed}` printed from `{text}`: {err}"));
    assert_eq!(
        format!("{again:?}"),
        format!("{e:?}"),
        "`{printed}` printed from `{text}`"
    );
    assert_eq!(again.to_string(), printed);
    let bound = e.bind("ts", "event_type");
    let _ = bound.fields();
    static EVENT: std::sync::OnceLock<Event> = std::sync::OnceLock::new();
    let event = EVENT.get_or_init(event);
    let value = bound.eval(event);
    let truth = bound.is_true(event);
    match (&value, &truth) {
        (Ok(v), Ok(t)) => assert_eq!(*t, *v == Value::Bool(true)),
        (Err(_), Err(_)) => {}
        (v, t) => panic!("eval {v:?}, is_true {t:?}"),
    }
}

/// An event with a field of every kind, nested ones and edge values.
fn event() -> Event {
    let json = r#"{"i": 7, "neg": -3, "f": 2.5, "s": "Hello", "e": "", "b": true, "nb": false,
        "n": null, "l": [1, 2.0, "x"], "ln": [1, null], "o": {"a": 1, "b": {"c": "deep"}},
        "big": 9007199254740993, "max": 9223372036854775807, "min": -9223372036854775808,
        "z": 0, "nan_text": "NaN", "t": "2024-03-31T01:30:00Z", "odd name": 1, "user-agent": "ua"}"#;
    let Value::Object(mut fields) = Value::from_json(serde_json::from_str(json).expect("valid JSON")) else {
        unreachable!("an object")
    };
    let mut with_time: Vec<(Sym, Value)> = fields.to_vec();
    with_time.push((Sym::new("when"), Value::Time(1_711_848_600_000)));
    with_time.push((Sym::new("inf"), Value::float(f64::INFINITY)));
    with_time.push((Sym::new("nan"), Value::float(f64::NAN)));
    fields = crate::value::sort_fields(&mut with_time).into();
    Event {
        time: 1_700_000_000_000,
        kind: Sym::new("attempt"),
        payload: fields,
    }
}
