//! Session assignment: per group key, events closer than `gap` in event time form one session
//! `[first, last + gap)`. A new event extends a session, starts one, or merges several.
//!
//! Sessions are the connected components of the events under "less than `gap` apart", so they
//! are a function of the set of event times, whatever the order of insertion. Two sessions of
//! one key are always at least `gap` apart (`next.first - last >= gap`).

use std::collections::BTreeMap;

/// One session: its first and last event times and the state of its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session<S> {
    pub first: i64,
    pub last: i64,
    pub state: S,
}

impl<S> Session<S> {
    /// The session's end, `last + gap` (exclusive): no event at or after it can join.
    pub fn end(&self, gap: i64) -> i64 {
        self.last.saturating_add(gap)
    }
}

/// The sessions `[first, last]` of sorted event times, from scratch.
pub fn assign(times: &[i64], gap: i64) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for &t in times {
        match out.last_mut() {
            Some((_, last)) if t - *last < gap => *last = (*last).max(t),
            _ => out.push((t, t)),
        }
    }
    out
}

/// The sessions of one key, by first event time.
#[derive(Debug, Clone)]
pub struct Sessions<S> {
    by_first: BTreeMap<i64, (i64, S)>,
}

impl<S> Default for Sessions<S> {
    fn default() -> Self {
        Sessions {
            by_first: BTreeMap::new(),
        }
    }
}

impl<S> Sessions<S> {
    /// Adds an event (or several at one time) at `t` with `state`: the sessions within `gap`
    /// of `t` (`first - gap < t < last + gap`) and the event become one session, whose states
    /// are combined with `merge`. Returns the first event times of the sessions it replaced
    /// (empty for a new session) and the resulting session's first time.
    pub fn insert(&mut self, t: i64, state: S, gap: i64, mut merge: impl FnMut(&mut S, S)) -> (Vec<i64>, i64) {
        let reached = self.reach(t, gap);
        let (mut first, mut last, mut acc) = (t, t, state);
        for f in &reached {
            let (l, s) = self.by_first.remove(f).expect("listed above");
            first = first.min(*f);
            last = last.max(l);
            merge(&mut acc, s);
        }
        self.by_first.insert(first, (last, acc));
        (reached, first)
    }

    /// The first event times of the sessions an event at `t` joins (`first - gap < t < last +
    /// gap`), latest first.
    pub fn reach(&self, t: i64, gap: i64) -> Vec<i64> {
        // Sessions are ordered by both first and last, so those within reach are contiguous:
        // walk back from the last one that starts before `t + gap` while they end after `t`.
        self.by_first
            .range(..t.saturating_add(gap))
            .rev()
            .take_while(|(_, (last, _))| last.saturating_add(gap) > t)
            .map(|(first, _)| *first)
            .collect()
    }

    /// The session starting at `first`.
    pub fn get(&self, first: i64) -> Option<Session<&S>> {
        self.by_first.get(&first).map(|(last, state)| Session {
            first,
            last: *last,
            state,
        })
    }

    /// Removes the session starting at `first`.
    pub fn remove(&mut self, first: i64) -> Option<Session<S>> {
        self.by_first
            .remove(&first)
            .map(|(last, state)| Session { first, last, state })
    }

    /// The sessions, in time order.
    pub fn iter(&self) -> impl Iterator<Item = Session<&S>> + '_ {
        self.by_first.iter().map(|(first, (last, state))| Session {
            first: *first,
            last: *last,
            state,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.by_first.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_first.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_sessions() {
        // gap 10: 0 and 9 join, 19 is exactly 10 after 9 and starts a new session.
        assert_eq!(assign(&[0, 9, 19, 25, 40], 10), vec![(0, 9), (19, 25), (40, 40)]);
        assert_eq!(assign(&[], 10), vec![]);
        assert_eq!(assign(&[5, 5, 5], 1), vec![(5, 5)]);
    }

    #[test]
    fn an_event_merges_two_sessions() {
        let mut s: Sessions<u32> = Sessions::default();
        assert_eq!(s.insert(0, 1, 10, |a, b| *a += b), (vec![], 0));
        assert_eq!(s.insert(15, 1, 10, |a, b| *a += b), (vec![], 15));
        assert_eq!(s.len(), 2);
        // 8 is within 10 of both 0 and 15.
        let (replaced, first) = s.insert(8, 1, 10, |a, b| *a += b);
        assert_eq!(first, 0);
        assert_eq!(replaced.len(), 2);
        let only = s.get(0).unwrap();
        assert_eq!((only.first, only.last, *only.state, only.end(10)), (0, 15, 3, 25));
        assert_eq!(s.len(), 1);
        // Exactly `gap` after the last event is a new session.
        s.insert(25, 1, 10, |a, b| *a += b);
        // Exactly `gap` before the first event too.
        s.insert(-10, 1, 10, |a, b| *a += b);
        let got: Vec<(i64, i64, u32)> = s.iter().map(|x| (x.first, x.last, *x.state)).collect();
        assert_eq!(got, vec![(-10, -10, 1), (0, 15, 3), (25, 25, 1)]);
    }

    proptest! {
        /// Inserting in any order gives the from-scratch sessions, each with its events' count.
        #[test]
        fn insertion_in_any_order_is_assignment(times in proptest::collection::vec(-200i64..200, 0..40), gap in 1i64..30) {
            let mut s: Sessions<u32> = Sessions::default();
            for &t in &times {
                s.insert(t, 1, gap, |a, b| *a += b);
            }
            let mut sorted = times.clone();
            sorted.sort_unstable();
            let want: Vec<(i64, i64, u32)> = assign(&sorted, gap)
                .into_iter()
                .map(|(f, l)| (f, l, sorted.iter().filter(|t| (f..=l).contains(t)).count() as u32))
                .collect();
            let got: Vec<(i64, i64, u32)> = s.iter().map(|x| (x.first, x.last, *x.state)).collect();
            prop_assert_eq!(got, want);
        }
    }
}
