//! Durations in specs: `500ms`, `30s`, `5m`, `1h`, `7d`, and sums such as `1h30m`. Units may be
//! spelled out (`7 minutes`, `1 hour 30 min`): see [`UNITS`].

/// Accepted unit spellings, with their length in milliseconds. Case does not matter, and spaces
/// may separate numbers and units.
pub const UNITS: [(&str, u64); 20] = [
    ("ms", 1),
    ("msec", 1),
    ("millisecond", 1),
    ("milliseconds", 1),
    ("s", 1_000),
    ("sec", 1_000),
    ("secs", 1_000),
    ("second", 1_000),
    ("seconds", 1_000),
    ("m", 60_000),
    ("min", 60_000),
    ("mins", 60_000),
    ("minute", 60_000),
    ("minutes", 60_000),
    ("h", 3_600_000),
    ("hour", 3_600_000),
    ("hours", 3_600_000),
    ("d", 86_400_000),
    ("day", 86_400_000),
    ("days", 86_400_000),
];

/// The units, for error messages.
pub const UNITS_HELP: &str = "units are ms, s, m (or min), h and d; spelled out too: seconds, minutes, hours, days";

/// Parses a duration into milliseconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("empty duration ({UNITS_HELP})"));
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("`{text}`: expected a number before `{rest}`"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{text}`: number too large"))?;
        rest = rest[digits..].trim_start();
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = rest[..unit_len].to_ascii_lowercase();
        let scale = match UNITS.iter().find(|(u, _)| *u == unit) {
            Some((_, scale)) => *scale,
            None if unit.is_empty() => return Err(format!("`{text}`: missing unit after {n} ({UNITS_HELP})")),
            None => return Err(format!("`{text}`: unknown unit `{unit}` ({UNITS_HELP})")),
        };
        total = n
            .checked_mul(scale)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("`{text}`: duration too large"))?;
        rest = rest[unit_len..].trim_start();
    }
    Ok(total)
}

/// Prints milliseconds in the largest exact unit (`3600000` → `1h`).
pub fn format_duration(ms: u64) -> String {
    for (unit, scale) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms > 0 && ms.is_multiple_of(scale) {
            return format!("{}{unit}", ms / scale);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(500));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("7d"), Ok(604_800_000));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(parse_duration("7 minutes"), Ok(420_000));
        assert_eq!(parse_duration("1 Hour 30 min"), Ok(5_400_000));
        assert_eq!(parse_duration("2 days"), Ok(172_800_000));
        assert_eq!(parse_duration("90 sec"), Ok(90_000));
        let missing = parse_duration("7").unwrap_err();
        assert!(
            missing.contains("missing unit") && missing.contains("ms, s, m"),
            "{missing}"
        );
        let unknown = parse_duration("7 fortnights").unwrap_err();
        assert!(
            unknown.contains("`fortnights`") && unknown.contains("minutes"),
            "{unknown}"
        );
        assert!(parse_duration("m").is_err());
        assert_eq!(format_duration(3_600_000), "1h");
        assert_eq!(format_duration(90_000), "90s");
        assert_eq!(format_duration(1500), "1500ms");
    }
}
