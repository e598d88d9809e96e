//! Window assignment: which `[start, end)` windows an event time falls in.
//!
//! Windows start at multiples of `slide` since the epoch and last `size`; tumbling windows are
//! the case `slide == size`. An event at `t` belongs to every window with `start <= t < start + size`.

use serde::Serialize;

/// Tumbling windows have `slide_ms == size_ms`; windows start at multiples of `slide_ms`
/// since the epoch and cover `[start, start + size_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WindowPlan {
    pub size_ms: u64,
    pub slide_ms: u64,
}

/// The starts of the windows containing `t`, in increasing order.
pub fn window_starts(w: WindowPlan, t: i64) -> impl Iterator<Item = i64> {
    let size = w.size_ms as i64;
    let slide = w.slide_ms as i64;
    let last = t.div_euclid(slide) * slide;
    let first = (t - size).div_euclid(slide) * slide + slide;
    (first..=last).step_by(slide as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tumbling_and_sliding() {
        let tumbling = WindowPlan {
            size_ms: 60,
            slide_ms: 60,
        };
        assert_eq!(window_starts(tumbling, 0).collect::<Vec<_>>(), vec![0]);
        assert_eq!(window_starts(tumbling, 59).collect::<Vec<_>>(), vec![0]);
        assert_eq!(window_starts(tumbling, 60).collect::<Vec<_>>(), vec![60]);
        assert_eq!(window_starts(tumbling, -1).collect::<Vec<_>>(), vec![-60]);
        let hop = WindowPlan {
            size_ms: 30,
            slide_ms: 10,
        };
        assert_eq!(window_starts(hop, 25).collect::<Vec<_>>(), vec![0, 10, 20]);
        assert_eq!(window_starts(hop, 30).collect::<Vec<_>>(), vec![10, 20, 30]);
    }

    proptest! {
        #[test]
        fn starts_are_exactly_the_covering_windows(t in -10_000i64..10_000, slide in 1u64..50, k in 1u64..6) {
            let w = WindowPlan { size_ms: slide * k, slide_ms: slide };
            let got: Vec<i64> = window_starts(w, t).collect();
            let want: Vec<i64> = (-20_000i64..20_000)
                .filter(|s| s.rem_euclid(slide as i64) == 0 && *s <= t && t < s + (slide * k) as i64)
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}
