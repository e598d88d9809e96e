//! Calendar functions of a timestamp in a time zone: `hour_of_day(t, 'Europe/Paris')` and
//! `day_of_week(t, 'Europe/Paris')`. The zone is resolved when parsing ([`Zone`]); evaluation
//! only looks up the zone's UTC offset at that instant.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDateTime, Offset, TimeZone, Timelike};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::eval::{fail, Res, Val, V};
use super::func::arity_error;
use super::Expr;
use crate::value::Value;

/// A part of the local date and time of a timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimePart {
    /// 0 to 23.
    HourOfDay,
    /// ISO day number: 1 (Monday) to 7 (Sunday).
    DayOfWeek,
}

impl TimePart {
    /// Every part with its function name.
    pub const ALL: [(&'static str, TimePart); 2] = [
        ("hour_of_day", TimePart::HourOfDay),
        ("day_of_week", TimePart::DayOfWeek),
    ];

    pub fn name(self) -> &'static str {
        match self {
            TimePart::HourOfDay => "hour_of_day",
            TimePart::DayOfWeek => "day_of_week",
        }
    }
}

/// An IANA time zone resolved at parse time. Compares, prints and serializes as its name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Zone {
    pub tz: Tz,
}

impl Zone {
    /// The zone named exactly `name` (e.g. `Europe/Paris`, `UTC`), if the IANA database has it.
    pub fn new(name: &str) -> Option<Zone> {
        name.parse().ok().map(|tz| Zone { tz })
    }
    pub fn as_str(&self) -> &'static str {
        self.tz.name()
    }
}
impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Zone({})", self.as_str())
    }
}
impl Serialize for Zone {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Zone::new(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown time zone `{s}`")))
    }
}

/// Checks a call of `part`'s function and builds it (see [`super::func::build_call`]).
pub(super) fn build(part: TimePart, mut args: Vec<Expr>) -> Result<Expr, (Option<usize>, String)> {
    let name = part.name();
    if args.is_empty() || args.len() > 2 {
        return Err(arity_error(name, "1 or 2 arguments (time, 'time zone')", args.len()));
    }
    let zone = match args.get(1) {
        None => None,
        Some(Expr::Literal(Value::Str(s))) => Some(Zone::new(s).ok_or_else(|| {
            let message = format!("unknown time zone '{s}': use an IANA name such as 'Europe/Paris' or 'UTC'");
            (Some(1), message)
        })?),
        Some(_) => {
            let message = format!("the time zone of `{name}` must be a string literal, e.g. 'Europe/Paris'");
            return Err((Some(1), message));
        }
    };
    args.truncate(1);
    let time = Box::new(args.swap_remove(0));
    Ok(Expr::TimePart { part, time, zone })
}

/// Evaluates `part` of the time `t` (a timestamp or int epoch milliseconds) in `zone` (UTC when
/// `None`).
pub(super) fn eval(part: TimePart, t: V, zone: Option<&Zone>) -> Res<Val<'static>> {
    let ms = match t {
        V::Null => return Ok(Val::Null),
        V::Time(ms) | V::Int(ms) => ms,
        other => {
            let kind = other.kind();
            return fail(format!(
                "{}() needs a timestamp or epoch milliseconds, found {kind}",
                part.name()
            ));
        }
    };
    let Some(local) = local_time(ms, zone) else {
        return fail(format!("{}(): time {ms} is out of range", part.name()));
    };
    Ok(Val::Int(match part {
        TimePart::HourOfDay => i64::from(local.hour()),
        TimePart::DayOfWeek => i64::from(local.weekday().number_from_monday()),
    }))
}

/// The wall-clock time in `zone` at `ms` milliseconds since the epoch, if representable.
fn local_time(ms: i64, zone: Option<&Zone>) -> Option<NaiveDateTime> {
    let utc = DateTime::from_timestamp_millis(ms)?.naive_utc();
    match zone {
        None => Some(utc),
        Some(zone) => utc.checked_add_offset(zone.tz.offset_from_utc_datetime(&utc).fix()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::eval::tests::check;
    use crate::expr::parse;
    use crate::expr::parse::tests::check_errors;

    // The test event's `ts` is 1_700_000_000_000: Tuesday 2023-11-14 22:13:20 UTC, which is
    // Wednesday 00:13:20 in Paris (UTC+1 in winter) and Tuesday 17:13:20 in New York (UTC-5).
    #[test]
    fn hour_of_day_and_day_of_week() {
        check(&[
            ("hour_of_day(ts)", "22"),
            ("hour_of_day(ts, 'UTC')", "22"),
            ("hour_of_day(ts, 'Europe/Paris')", "23"),
            ("HOUR_OF_DAY(ts, 'America/New_York')", "17"),
            ("hour_of_day(ts, 'Asia/Kolkata')", "3"),
            ("day_of_week(ts)", "2"),
            ("day_of_week(ts, 'Europe/Paris')", "2"),
            ("day_of_week(ts, 'Asia/Kolkata')", "3"),
            ("day_of_week(ts, 'America/New_York')", "2"),
            ("day_of_week(ts, 'Pacific/Kiritimati')", "3"),
            // Int epoch milliseconds are accepted too, including before 1970.
            ("hour_of_day(1700000000000, 'Europe/Paris')", "23"),
            ("hour_of_day(0)", "0"),
            ("day_of_week(0)", "4"),
            ("hour_of_day(-1)", "23"),
            ("day_of_week(-1)", "3"),
            ("hour_of_day(ts + 3600000, 'Europe/Paris')", "0"),
            ("day_of_week(ts + 3600000, 'Europe/Paris')", "3"),
            // Summer time: 2024-07-01 12:00 UTC is 14:00 in Paris, a Monday.
            ("hour_of_day(1719835200000, 'Europe/Paris')", "14"),
            ("day_of_week(1719835200000, 'Europe/Paris')", "1"),
            // Sunday 2024-06-30 23:00 UTC.
            ("day_of_week(1719788400000)", "7"),
            ("day_of_week(1719788400000, 'Europe/Paris')", "1"),
            ("hour_of_day(ts) between 20 and 23", "true"),
            ("hour_of_day(n)", "null"),
            ("day_of_week(missing, 'Europe/Paris')", "null"),
            (
                "hour_of_day(s)",
                "error: hour_of_day() needs a timestamp or epoch milliseconds, found string",
            ),
            (
                "day_of_week(f)",
                "error: day_of_week() needs a timestamp or epoch milliseconds, found float",
            ),
            ("day_of_week(b, 'UTC')", "error: found bool"),
            (
                "hour_of_day(max)",
                "error: hour_of_day(): time 9223372036854775807 is out of range",
            ),
            ("day_of_week(min, 'Europe/Paris')", "error: out of range"),
        ]);
    }

    #[test]
    fn zones_are_checked_when_parsing() {
        check_errors(&[
            (
                "hour_of_day(ts, 'Europe/Pariss')",
                17,
                "unknown time zone 'Europe/Pariss'",
            ),
            (
                "day_of_week(ts, 'europe/paris')",
                17,
                "use an IANA name such as 'Europe/Paris'",
            ),
            (
                "a and hour_of_day(ts, tz)",
                23,
                "the time zone of `hour_of_day` must be a string literal",
            ),
            (
                "day_of_week(ts, 1)",
                17,
                "the time zone of `day_of_week` must be a string literal",
            ),
            (
                "hour_of_day()",
                1,
                "`hour_of_day` takes 1 or 2 arguments (time, 'time zone'), found 0",
            ),
            (
                "x == day_of_week(ts, 'UTC', 1)",
                6,
                "`day_of_week` takes 1 or 2 arguments",
            ),
        ]);
    }

    #[test]
    fn zones_print_compare_and_serialize_by_name() {
        let e = parse("hour_of_day(t, 'Europe/Paris')").unwrap();
        let Expr::TimePart { zone: Some(zone), .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(zone.tz, Tz::Europe__Paris);
        assert_eq!(format!("{zone:?}"), "Zone(Europe/Paris)");
        assert_eq!(serde_json::to_string(zone).unwrap(), "\"Europe/Paris\"");
        assert_ne!(e, parse("hour_of_day(t, 'UTC')").unwrap());
        assert_ne!(
            parse("hour_of_day(t)").unwrap(),
            parse("hour_of_day(t, 'UTC')").unwrap()
        );
        assert!(serde_json::from_str::<Zone>("\"Mars/Olympus\"").is_err());
        // Every zone's name resolves back to that zone, so printing always reparses.
        for tz in chrono_tz::TZ_VARIANTS {
            assert_eq!(Zone::new(tz.name()).map(|z| z.tz), Some(tz));
        }
    }
}
