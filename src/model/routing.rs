//! Routing scores: which region an event goes to, given each region's (predicted) load, the
//! event's priority and complexity, and the region that holds its shard. Pure maths, no timely.
//!
//! Every region `r` gets a score that is a weighted sum of three terms, each in `[0, 1]`:
//!
//! ```text
//! score(r) = w_latency  · boost · π · ℓ(r)        π = (11 − priority) / 10      ℓ(r) = g / (g + latency(r))
//!          + w_headroom ·         κ · h(r)        κ = complexity / 5            h(r) = mean(1 − cpu/100, 1 − memory/100, q / (q + queue(r)))
//!          + w_affinity · yield   · [r = home]
//! ```
//!
//! - `π` and `κ` make the latency term count more for urgent events (priority 1) and the
//!   headroom term more for heavy ones (complexity 5).
//! - `ℓ` is 1 at zero latency and ½ at the latency goal `g`; `h` is the mean spare fraction of
//!   cpu, memory and queue (`q` is the queue length that counts as half full).
//! - **Dynamic weighting**, a function of system health:
//!   - `yield` is 1 while the home region's predicted cpu is below `yield_from` percent, falls
//!     linearly to 0 at `yield_to`: affinity gives way when the home region runs hot;
//!   - `boost` is `1 + min(max_boost, max(0, latency(home)/g − 1))`: when the home region misses
//!     the latency goal, latency weighs up to `1 + max_boost` times more.
//! - A region with no load data has `ℓ = h = 0`: it is chosen only for affinity.
//!
//! The design this replaces averaged region *indices* (`0.7·best + 0.3·consistent`), which
//! picks a region that no term chose. Here shard consistency is one term of one score, and the
//! choice is the region with the highest score; ties go to the lower region index.

use serde::Serialize;

/// What a router knows of one region when it decides: predicted values where a forecast
/// exists, else the latest observed ones; `None` when neither exists yet.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RegionLoad {
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
    pub queue_length: Option<f64>,
    pub latency_ms: Option<f64>,
    /// Whether the region takes events (listed with a positive capacity).
    pub available: bool,
}

/// The weights of the three terms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Weights {
    pub latency: f64,
    pub headroom: f64,
    pub affinity: f64,
}

/// The health parameters of the dynamic weighting.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Health {
    /// `g`: the latency goal, in ms.
    pub latency_goal_ms: f64,
    /// `q`: the queue length at which the queue's headroom is ½.
    pub queue_half: f64,
    /// Home cpu (percent) where affinity starts to yield, and where it is gone.
    pub yield_from: f64,
    pub yield_to: f64,
    /// The largest extra factor on the latency term.
    pub max_boost: f64,
}

/// One region's score and its terms (weights applied).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Score {
    pub region: usize,
    pub total: f64,
    pub latency: f64,
    pub headroom: f64,
    pub affinity: f64,
}

/// Why the chosen region won.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The shard's home region scored best.
    Home,
    /// Another region scored better while the home region ran hot (affinity yielded).
    HomeHot,
    /// Another region scored better on latency and headroom.
    BetterScore,
    /// The home region is not available.
    HomeUnavailable,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 4] = [
        Reason::Home,
        Reason::HomeHot,
        Reason::BetterScore,
        Reason::HomeUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Home => "home",
            Reason::HomeHot => "home_hot",
            Reason::BetterScore => "better_score",
            Reason::HomeUnavailable => "home_unavailable",
        }
    }
}

/// A routing decision: the winner, the runner-up (when there are two available regions) and
/// why.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Decision {
    pub chosen: Score,
    pub runner_up: Option<Score>,
    pub reason: Reason,
    pub boost: f64,
    pub yield_: f64,
}

/// The linear fall from 1 to 0 between `from` and `to` (a step at `from` when they are equal).
fn falling(x: f64, from: f64, to: f64) -> f64 {
    if x <= from {
        1.0
    } else if x >= to {
        0.0
    } else {
        (to - x) / (to - from)
    }
}

/// The spare fraction of cpu, memory and queue, averaged over those known.
fn headroom(load: &RegionLoad, queue_half: f64) -> f64 {
    let parts = [
        load.cpu.map(|c| 1.0 - c / 100.0),
        load.memory.map(|m| 1.0 - m / 100.0),
        load.queue_length.map(|q| queue_half / (queue_half + q.max(0.0))),
    ];
    let (sum, known) = (parts.into_iter().flatten())
        .filter(|x| x.is_finite())
        .fold((0.0, 0usize), |(sum, n), x| (sum + x, n + 1));
    if known == 0 {
        return 0.0;
    }
    (sum / known as f64).clamp(0.0, 1.0)
}

/// Scores every available region for an event of `priority` (1–10) and `complexity` (1–5)
/// whose shard lives in `home`; `None` when no region is available.
pub fn decide(
    regions: &[RegionLoad],
    home: Option<usize>,
    priority: i64,
    complexity: i64,
    weights: &Weights,
    health: &Health,
) -> Option<Decision> {
    let goal = health.latency_goal_ms;
    let urgency = (11 - priority.clamp(1, 10)) as f64 / 10.0;
    let weight = complexity.clamp(1, 5) as f64 / 5.0;
    let home_load = home.and_then(|h| regions.get(h)).filter(|l| l.available);
    let yield_ = home_load
        .and_then(|l| l.cpu)
        .map_or(1.0, |cpu| falling(cpu, health.yield_from, health.yield_to));
    let boost = 1.0
        + home_load
            .and_then(|l| l.latency_ms)
            .map_or(0.0, |lat| (lat / goal - 1.0).clamp(0.0, health.max_boost));
    let scores = regions.iter().enumerate().filter(|(_, l)| l.available).map(|(r, l)| {
        let ell = l
            .latency_ms
            .filter(|x| x.is_finite())
            .map_or(0.0, |lat| goal / (goal + lat.max(0.0)));
        let latency = weights.latency * boost * urgency * ell;
        let headroom = weights.headroom * weight * headroom(l, health.queue_half);
        let affinity = if Some(r) == home {
            weights.affinity * yield_
        } else {
            0.0
        };
        Score {
            region: r,
            total: latency + headroom + affinity,
            latency,
            headroom,
            affinity,
        }
    });
    // The two highest scores, in one pass with no allocation (a decision is made per event);
    // ties go to the lower index, as a stable sort by descending score would order them.
    let (mut chosen, mut runner_up): (Option<Score>, Option<Score>) = (None, None);
    for score in scores {
        let beats = |other: &Option<Score>| other.is_none_or(|o| score.total.total_cmp(&o.total).is_gt());
        if beats(&chosen) {
            runner_up = chosen.replace(score);
        } else if beats(&runner_up) {
            runner_up = Some(score);
        }
    }
    let chosen = chosen?;
    let reason = match home_load {
        None => Reason::HomeUnavailable,
        Some(_) if Some(chosen.region) == home => Reason::Home,
        Some(_) if yield_ < 1.0 => Reason::HomeHot,
        Some(_) => Reason::BetterScore,
    };
    Some(Decision {
        chosen,
        runner_up,
        reason,
        boost,
        yield_,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEIGHTS: Weights = Weights {
        latency: 1.0,
        headroom: 1.0,
        affinity: 1.0,
    };
    const HEALTH: Health = Health {
        latency_goal_ms: 100.0,
        queue_half: 10.0,
        yield_from: 80.0,
        yield_to: 95.0,
        max_boost: 2.0,
    };

    fn load(cpu: f64, latency: f64) -> RegionLoad {
        RegionLoad {
            cpu: Some(cpu),
            memory: Some(50.0),
            queue_length: Some(10.0),
            latency_ms: Some(latency),
            available: true,
        }
    }

    #[test]
    fn terms_have_their_closed_forms() {
        // Region 0: cpu 40, memory 50, queue 10 (½), latency 100 (= goal: ℓ = ½).
        let regions = [load(40.0, 100.0), load(90.0, 300.0)];
        let d = decide(&regions, Some(0), 1, 5, &WEIGHTS, &HEALTH).unwrap();
        assert_eq!(d.chosen.region, 0);
        assert_eq!(d.reason, Reason::Home);
        assert!((d.chosen.latency - 0.5).abs() < 1e-12); // π = 1, boost 1
        assert!((d.chosen.headroom - (0.6 + 0.5 + 0.5) / 3.0).abs() < 1e-12); // κ = 1
        assert_eq!(d.chosen.affinity, 1.0);
        let r = d.runner_up.unwrap();
        assert!((r.latency - 0.25).abs() < 1e-12);
        assert!((r.headroom - (0.1 + 0.5 + 0.5) / 3.0).abs() < 1e-12);
        assert_eq!(r.affinity, 0.0);
    }

    #[test]
    fn affinity_yields_when_home_runs_hot() {
        // Home at 92% cpu: yield (95 − 92) / 15 = 0.2.
        let regions = [load(92.0, 100.0), load(20.0, 20.0)];
        let d = decide(&regions, Some(0), 5, 3, &WEIGHTS, &HEALTH).unwrap();
        assert!((d.yield_ - 0.2).abs() < 1e-12);
        assert_eq!(d.chosen.region, 1);
        assert_eq!(d.reason, Reason::HomeHot);
        // Cool home: affinity holds even against a better region.
        let regions = [load(50.0, 100.0), load(20.0, 20.0)];
        let d = decide(&regions, Some(0), 5, 3, &WEIGHTS, &HEALTH).unwrap();
        assert_eq!((d.chosen.region, d.reason), (0, Reason::Home));
    }

    #[test]
    fn missed_latency_goals_boost_the_latency_term_for_urgent_events() {
        // Home misses the goal 2×: boost 2. An urgent event leaves, a lax one stays.
        let regions = [load(60.0, 200.0), load(60.0, 10.0)];
        let urgent = decide(&regions, Some(0), 1, 1, &WEIGHTS, &HEALTH).unwrap();
        assert!((urgent.boost - 2.0).abs() < 1e-12);
        assert_eq!((urgent.chosen.region, urgent.reason), (1, Reason::BetterScore));
        let lax = decide(&regions, Some(0), 10, 1, &WEIGHTS, &HEALTH).unwrap();
        assert_eq!(lax.chosen.region, 0);
        // The boost is capped.
        let regions = [load(60.0, 10_000.0), load(60.0, 10.0)];
        assert!((decide(&regions, Some(0), 1, 1, &WEIGHTS, &HEALTH).unwrap().boost - 3.0).abs() < 1e-12);
    }

    #[test]
    fn unavailable_regions_are_never_chosen_and_ties_go_to_the_lower_index() {
        let mut regions = [load(50.0, 50.0), load(50.0, 50.0), load(50.0, 50.0)];
        let d = decide(&regions, None, 5, 3, &WEIGHTS, &HEALTH).unwrap();
        assert_eq!((d.chosen.region, d.reason), (0, Reason::HomeUnavailable));
        regions[0].available = false;
        let d = decide(&regions, Some(0), 5, 3, &WEIGHTS, &HEALTH).unwrap();
        assert_eq!((d.chosen.region, d.reason), (1, Reason::HomeUnavailable));
        for r in &mut regions {
            r.available = false;
        }
        assert_eq!(decide(&regions, Some(0), 5, 3, &WEIGHTS, &HEALTH), None);
    }

    #[test]
    fn a_region_without_data_wins_only_by_affinity() {
        let empty = RegionLoad {
            available: true,
            ..RegionLoad::default()
        };
        let regions = [empty, load(10.0, 10.0)];
        let d = decide(&regions, Some(0), 5, 3, &WEIGHTS, &HEALTH).unwrap();
        assert_eq!(
            (d.chosen.latency, d.chosen.headroom, d.chosen.affinity),
            (0.0, 0.0, 1.0)
        );
        let no_affinity = Weights {
            affinity: 0.0,
            ..WEIGHTS
        };
        assert_eq!(
            decide(&regions, Some(0), 5, 3, &no_affinity, &HEALTH)
                .unwrap()
                .chosen
                .region,
            1
        );
    }

    proptest::proptest! {
        /// The winner and runner-up are the first two of a stable sort of every available
        /// region's score, highest first: ties (here frequent, loads on a coarse grid) go to
        /// the lower index.
        #[test]
        fn winner_and_runner_up_are_the_top_two_of_a_stable_sort(
            loads in proptest::collection::vec((0u8..4, 0u8..3, proptest::bool::weighted(0.8)), 1..9),
            home in proptest::option::of(0usize..9),
            priority in 1i64..=10,
            complexity in 1i64..=5,
        ) {
            let regions: Vec<RegionLoad> = loads
                .iter()
                .map(|&(cpu, latency, available)| RegionLoad {
                    available,
                    ..load(f64::from(cpu) * 25.0, f64::from(latency) * 50.0)
                })
                .collect();
            let d = decide(&regions, home, priority, complexity, &WEIGHTS, &HEALTH);
            let every: Vec<usize> = (0..regions.len()).filter(|&r| regions[r].available).collect();
            // Each region scored alone (as the only other region than itself, its score does
            // not depend on the others), then ordered by a stable sort.
            let mut scored: Vec<(usize, f64)> = every
                .iter()
                .map(|&r| {
                    let mut alone = regions.clone();
                    for (i, l) in alone.iter_mut().enumerate() {
                        l.available = i == r || (Some(i) == home && regions[i].available);
                    }
                    let d = decide(&alone, home, priority, complexity, &WEIGHTS, &HEALTH).unwrap();
                    let s = [Some(d.chosen), d.runner_up].into_iter().flatten().find(|s| s.region == r).unwrap();
                    (r, s.total)
                })
                .collect();
            scored.sort_by(|a, b| b.1.total_cmp(&a.1));
            proptest::prop_assert_eq!(d.map(|d| d.chosen.region), scored.first().map(|s| s.0));
            proptest::prop_assert_eq!(d.and_then(|d| d.runner_up).map(|s| s.region), scored.get(1).map(|s| s.0));
        }
    }
}
