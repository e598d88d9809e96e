//! How late a source's events were, for the run summary's advice on `allowed_lateness`.
//!
//! An event's *lateness* is how far its time is behind the largest event time before it in the
//! log (0 when it is the largest so far). It does not depend on `allowed_lateness`: an event is
//! late exactly when its lateness exceeds the setting. So counting late events by lateness over
//! a few round bounds tells exactly how many events each of those settings would have made late,
//! and the suggestion is measured, not guessed.

use crate::plan::duration::format_duration;

const S: u64 = 1_000;
const M: u64 = 60 * S;
const H: u64 = 60 * M;

/// Round settings the advice chooses from.
pub const BOUNDS_MS: [u64; 23] = [
    100,
    200,
    500,
    S,
    2 * S,
    5 * S,
    10 * S,
    15 * S,
    30 * S,
    M,
    2 * M,
    5 * M,
    10 * M,
    15 * M,
    30 * M,
    H,
    2 * H,
    3 * H,
    6 * H,
    12 * H,
    24 * H,
    48 * H,
    168 * H,
];

/// Share of a source's events above which the summary warns about late events, and which the
/// suggested setting keeps late events under.
pub const WARN_FRACTION: f64 = 0.01;

/// Counts of one source's on-time and late events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lateness {
    /// Events with a valid time, on time or late.
    pub events: u64,
    pub late: u64,
    /// `over[k]`: late events whose lateness exceeds `BOUNDS_MS[k]`.
    over: [u64; BOUNDS_MS.len()],
    /// Largest lateness of a late event.
    pub max_ms: u64,
}

/// What the summary says about a source with many late events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advice {
    pub events: u64,
    pub late: u64,
    pub max_ms: u64,
    /// The smallest round setting above the current one under which at most
    /// [`WARN_FRACTION`] of the events would have been late, and how many would have been.
    pub suggested: Option<(u64, u64)>,
}

impl Lateness {
    pub fn on_time(&mut self) {
        self.events += 1;
    }

    pub fn late(&mut self, lateness_ms: u64) {
        self.events += 1;
        self.late += 1;
        self.max_ms = self.max_ms.max(lateness_ms);
        for (bound, over) in BOUNDS_MS.iter().zip(self.over.iter_mut()) {
            if lateness_ms <= *bound {
                break;
            }
            *over += 1;
        }
    }

    pub fn merge(&mut self, other: &Lateness) {
        self.events += other.events;
        self.late += other.late;
        self.max_ms = self.max_ms.max(other.max_ms);
        for (mine, theirs) in self.over.iter_mut().zip(other.over) {
            *mine += theirs;
        }
    }

    /// Advice when more than [`WARN_FRACTION`] of the events were late under `current_ms`.
    pub fn advice(&self, current_ms: u64) -> Option<Advice> {
        if self.events == 0 || (self.late as f64) <= WARN_FRACTION * self.events as f64 {
            return None;
        }
        let allowed = (WARN_FRACTION * self.events as f64).floor() as u64;
        let suggested = BOUNDS_MS
            .iter()
            .zip(self.over)
            .find(|(bound, over)| **bound > current_ms && *over <= allowed)
            .map(|(bound, over)| (*bound, over));
        Some(Advice {
            events: self.events,
            late: self.late,
            max_ms: self.max_ms,
            suggested,
        })
    }
}

impl Advice {
    /// The summary's lines for source `name`, whose setting is `current_ms`.
    pub fn describe(&self, name: &str, current_ms: u64) -> String {
        let pct = |n: u64| 100.0 * n as f64 / self.events.max(1) as f64;
        let mut text = format!(
            "warning: {:.1}% of source `{name}`'s events were late ({} of {}) with allowed_lateness = \"{}\"",
            pct(self.late),
            self.late,
            self.events,
            format_duration(current_ms)
        );
        match self.suggested {
            Some((bound, late)) => text.push_str(&format!(
                "\n    with allowed_lateness = \"{}\" under [sources.{name}], {late} ({:.2}%) would have been late \
                 (measured on this run; late events were up to {} behind)",
                format_duration(bound),
                pct(late),
                approx(self.max_ms)
            )),
            None => text.push_str(&format!(
                "\n    events arrive up to {} behind; no setting up to {} keeps late events under {}%",
                approx(self.max_ms),
                format_duration(BOUNDS_MS[BOUNDS_MS.len() - 1]),
                WARN_FRACTION * 100.0
            )),
        }
        text
    }
}

/// A lateness in its largest unit, to one decimal: `58.3m`, `2.5s`, `120ms`.
fn approx(ms: u64) -> String {
    let units = [("d", 24 * H), ("h", H), ("m", M), ("s", S)];
    match units.iter().find(|(_, scale)| ms >= *scale) {
        Some((unit, scale)) => format!("{:.1}{unit}", ms as f64 / *scale as f64),
        None => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_is_the_smallest_bound_that_keeps_late_events_rare() {
        let mut l = Lateness::default();
        for _ in 0..300 {
            l.on_time();
        }
        // 690 events 1–25 s late, 10 events an hour late.
        for i in 0..690 {
            l.late(1_000 + (i % 25) * 1_000);
        }
        for _ in 0..10 {
            l.late(3_600_000);
        }
        let advice = l.advice(0).unwrap();
        assert_eq!((advice.events, advice.late, advice.max_ms), (1000, 700, 3_600_000));
        // 30 s leaves only the 10 hour-late events late: 1%.
        assert_eq!(advice.suggested, Some((30_000, 10)));
        let text = advice.describe("events", 0);
        assert!(
            text.contains("70.0%") && text.contains("\"30s\"") && text.contains("[sources.events]"),
            "{text}"
        );
        // A setting that already covers most lateness gives a larger one, or none.
        assert_eq!(l.advice(30_000).unwrap().suggested, Some((60_000, 10)));
        let mut few = Lateness::default();
        for _ in 0..99 {
            few.on_time();
        }
        few.late(5_000);
        assert_eq!(few.advice(0), None, "1% is not more than 1%");
    }

    #[test]
    fn merged_counts_equal_counts_of_the_whole() {
        let (mut a, mut b, mut whole) = (Lateness::default(), Lateness::default(), Lateness::default());
        for (i, ms) in [0u64, 150, 7_000, 90_000, 4_000_000, 0, 20].into_iter().enumerate() {
            let part = if i % 2 == 0 { &mut a } else { &mut b };
            for l in [part, &mut whole] {
                if ms == 0 {
                    l.on_time();
                } else {
                    l.late(ms);
                }
            }
        }
        a.merge(&b);
        assert_eq!(a, whole);
        let none = Lateness::default().advice(0);
        assert_eq!(none, None);
        let mut far = Lateness::default();
        far.late(1_000 * H);
        assert_eq!(far.advice(0).unwrap().suggested, None);
        assert!(far.advice(0).unwrap().describe("s", 0).contains("no setting"));
        assert_eq!(
            (approx(3_495_595), approx(2_500), approx(120)),
            ("58.3m".into(), "2.5s".into(), "120ms".into())
        );
    }
}
