//! Calendar functions of a timestamp in a time zone: `hour_of_day(t, 'Europe/Paris')` and
//! `day_of_week(t, 'Europe/Paris')`. The zone is resolved when parsing ([`Zone`]); evaluation
//! only looks up the zone's UTC offset at that instant.

use std::fmt::{self, Write};

use chrono::format::{Item, StrftimeItems};
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

/// A strftime format (`'%Y-%m-%d %H:%M'`) checked at parse time. Compares, prints and
/// serializes as its source.
#[derive(Clone)]
pub struct TimeFormat {
    source: String,
    items: Vec<Item<'static>>,
}

impl TimeFormat {
    /// The format, or why chrono cannot read it.
    pub fn new(source: &str) -> Result<TimeFormat, String> {
        let items = StrftimeItems::new(source)
            .parse_to_owned()
            .map_err(|_| format!("invalid time format '{source}': use strftime codes such as '%Y-%m-%d %H:%M'"))?;
        Ok(TimeFormat {
            source: source.to_owned(),
            items,
        })
    }
    pub fn as_str(&self) -> &str {
        &self.source
    }
}
impl PartialEq for TimeFormat {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}
impl fmt::Debug for TimeFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TimeFormat({:?})", self.source)
    }
}
impl Serialize for TimeFormat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}
impl<'de> Deserialize<'de> for TimeFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        TimeFormat::new(&s).map_err(serde::de::Error::custom)
    }
}

/// The zone argument `args[i]` of `name`, if given: a string literal naming an IANA zone.
fn zone_arg(name: &str, args: &[Expr], i: usize) -> Result<Option<Zone>, (Option<usize>, String)> {
    match args.get(i) {
        None => Ok(None),
        Some(Expr::Literal(Value::Str(s))) => Ok(Some(Zone::new(s).ok_or_else(|| {
            let message = format!("unknown time zone '{s}': use an IANA name such as 'Europe/Paris' or 'UTC'");
            (Some(i), message)
        })?)),
        Some(_) => {
            let message = format!("the time zone of `{name}` must be a string literal, e.g. 'Europe/Paris'");
            Err((Some(i), message))
        }
    }
}

/// Checks a call of `part`'s function and builds it (see [`super::func::build_call`]).
pub(super) fn build(part: TimePart, mut args: Vec<Expr>) -> Result<Expr, (Option<usize>, String)> {
    let name = part.name();
    if args.is_empty() || args.len() > 2 {
        return Err(arity_error(name, "1 or 2 arguments (time, 'time zone')", args.len()));
    }
    let zone = zone_arg(name, &args, 1)?;
    args.truncate(1);
    let time = Box::new(args.swap_remove(0));
    Ok(Expr::TimePart { part, time, zone })
}

/// Checks a call of `format_time(time, 'format', 'zone')` and builds it.
pub(super) fn build_format(mut args: Vec<Expr>) -> Result<Expr, (Option<usize>, String)> {
    const NAME: &str = "format_time";
    if !(2..=3).contains(&args.len()) {
        return Err(arity_error(
            NAME,
            "2 or 3 arguments (time, 'format', 'time zone')",
            args.len(),
        ));
    }
    let Expr::Literal(Value::Str(source)) = &args[1] else {
        return Err((
            Some(1),
            format!("the format of `{NAME}` must be a string literal, e.g. '%H:%M'"),
        ));
    };
    let format = TimeFormat::new(source).map_err(|m| (Some(1), m))?;
    let zone = zone_arg(NAME, &args, 2)?;
    args.truncate(1);
    let time = Box::new(args.swap_remove(0));
    Ok(Expr::FormatTime { time, format, zone })
}

/// The epoch milliseconds of `t` for `name`: null stays null, anything but a timestamp or an int
/// is an error.
fn millis(name: &str, t: V) -> Res<Option<i64>> {
    match t {
        V::Null => Ok(None),
        V::Time(ms) | V::Int(ms) => Ok(Some(ms)),
        other => fail(format!(
            "{name}() needs a timestamp or epoch milliseconds, found {}",
            other.kind()
        )),
    }
}

/// Formats the time `t` with `format` in `zone` (UTC when `None`).
pub(super) fn eval_format(format: &TimeFormat, t: V, zone: Option<&Zone>) -> Res<Val<'static>> {
    let Some(ms) = millis("format_time", t)? else {
        return Ok(Val::Null);
    };
    let utc = DateTime::from_timestamp_millis(ms).filter(|_| local_time(ms, zone).is_some());
    let Some(utc) = utc else {
        return fail(format!("format_time(): time {ms} is out of range"));
    };
    let items = format.items.iter();
    let mut text = String::new();
    let written = match zone {
        None => write!(text, "{}", utc.format_with_items(items)),
        Some(zone) => write!(text, "{}", utc.with_timezone(&zone.tz).format_with_items(items)),
    };
    if written.is_err() {
        return fail(format!("format_time(): '{}' cannot format time {ms}", format.as_str()));
    }
    Ok(Val::Own(Box::new(Value::Str(text.into()))))
}

/// Evaluates `part` of the time `t` (a timestamp or int epoch milliseconds) in `zone` (UTC when
/// `None`).
pub(super) fn eval(part: TimePart, t: V, zone: Option<&Zone>) -> Res<Val<'static>> {
    let Some(ms) = millis(part.name(), t)? else {
        return Ok(Val::Null);
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
    fn format_time_in_a_zone() {
        check(&[
            ("format_time(ts, '%H:%M')", "'22:13'"),
            ("format_time(ts, '%Y-%m-%d %H:%M:%S')", "'2023-11-14 22:13:20'"),
            ("format_time(ts, '%H:%M', 'Europe/Paris')", "'23:13'"),
            (
                "format_time(ts, '%A %H:%M %z', 'Asia/Kolkata')",
                "'Wednesday 03:43 +0530'",
            ),
            (
                "format_time(ts, '%Y-%m-%dT%H:%M:%S%.3f%:z')",
                "'2023-11-14T22:13:20.000+00:00'",
            ),
            ("format_time(1719835200000, '%H %Z', 'Europe/Paris')", "'14 CEST'"),
            ("format_time(0, '%Y')", "'1970'"),
            ("format_time(-1, '%Y-%m-%d %H:%M:%S%.3f')", "'1969-12-31 23:59:59.999'"),
            ("format_time(ts, 'literal %% only')", "'literal % only'"),
            ("format_time(n, '%H')", "null"),
            (
                "format_time(s, '%H')",
                "error: format_time() needs a timestamp or epoch milliseconds, found string",
            ),
            (
                "format_time(max, '%H')",
                "error: format_time(): time 9223372036854775807 is out of range",
            ),
        ]);
        check_errors(&[
            (
                "format_time(ts)",
                1,
                "`format_time` takes 2 or 3 arguments (time, 'format', 'time zone')",
            ),
            (
                "format_time(ts, f)",
                17,
                "the format of `format_time` must be a string literal",
            ),
            ("format_time(ts, '%Q')", 17, "invalid time format '%Q'"),
            (
                "format_time(ts, '%H', 'Mars/Base')",
                23,
                "unknown time zone 'Mars/Base'",
            ),
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
