//! Shard migration: which shards move from a region whose load stays above the mean, and where
//! to. Pure maths, no timely; the router (`render::router`) calls
//! [`Migrator::evaluate`] once per interval with each region's load and each shard's event rate.
//!
//! - A region is **hot** when its load exceeds `mean × (1 + imbalance)`, and stays hot until it
//!   falls to `mean × (1 + imbalance − hysteresis)` (hysteresis: a region just under the trigger
//!   does not start and stop shedding at every evaluation).
//! - Shards move only from a region hot for at least `sustain` (a spike does not move shards),
//!   hottest region first, each to the region that is coolest at that moment.
//! - **Fewest moves.** The excess to shed is `load − mean × (1 + imbalance − hysteresis)`. Each
//!   move takes the shard with the largest event rate that neither sheds more than the excess
//!   nor leaves the receiving region hotter than the source: big shards first, so few moves fix
//!   the imbalance, and nothing overshoots into the opposite imbalance.
//! - A moved shard stays put for `cooldown`, and at most `max_moves` shards move per evaluation.
//! - **A move waits for its effect.** A region that shed or took a shard is neither source nor
//!   receiver again until `region_cooldown` has passed *and* its load is dated after the move
//!   (a sample taken, or a forecast issued, after it): migration does not act twice on a load
//!   that has not seen its last move.
//! - **The receiver's routed rate is bounded.** A move is refused when it would put the
//!   receiver's routed event rate per capacity (the rates of the shards it holds) above the
//!   mean, `Σ rate / Σ capacity`, by more than `imbalance`. The router knows every shard's rate,
//!   so this holds even when the load signal does not answer to the moves (a replay, or agents
//!   whose load follows another routing): the receivers fill up, in the router's own terms, and
//!   migration stops.
//!
//! **Load model.** A region's load (utilization, percent) is taken as proportional to the event
//! rate it serves over its capacity: moving `x` events/s moves `x × load(h)/rate(h)` points off
//! the source `h` and `x × load(h)/rate(h) × capacity(h)/capacity(c)` onto the receiver `c`.

use std::collections::BTreeMap;

use serde::Serialize;

/// The migration policy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MigrationConfig {
    pub imbalance: f64,
    pub hysteresis: f64,
    pub sustain_ms: i64,
    pub max_moves: usize,
    pub cooldown_ms: i64,
    /// A region that shed or took a shard sits out this long (and until a later load value).
    pub region_cooldown_ms: i64,
}

/// Each region's routed load: its event rate per capacity as a percentage of the mean,
/// `100 × (rate(r) / capacity(r)) / (Σ rate / Σ capacity)`, so that 100 is a balanced region.
/// All 0 when nothing is routed; a region without capacity counts for 0.
pub fn routed_loads(rates: &[f64], capacities: &[f64]) -> Vec<f64> {
    let total_rate: f64 = rates.iter().map(|r| r.max(0.0)).sum();
    let total_capacity: f64 = capacities.iter().filter(|c| **c > 0.0).sum();
    rates
        .iter()
        .zip(capacities)
        .map(|(r, c)| {
            if total_rate > 0.0 && *c > 0.0 {
                100.0 * (r.max(0.0) / c) / (total_rate / total_capacity)
            } else {
                0.0
            }
        })
        .collect()
}

/// One region as an evaluation sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegionState {
    /// Load, e.g. cpu percent (observed or forecast, as the spec says).
    pub load: f64,
    /// Capacity, in events per second (any unit shared by all regions).
    pub capacity: f64,
    /// When `load` was measured (ms): a sample's time, a forecast's issue, an interval's end.
    pub as_of: i64,
}

/// One shard: the region that holds it and its event rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shard {
    pub id: u64,
    pub region: usize,
    pub rate: f64,
}

/// A shard moved, with the loads of both regions before and after it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Move {
    pub shard: u64,
    pub from: usize,
    pub to: usize,
    pub from_load: (f64, f64),
    pub to_load: (f64, f64),
}

/// The state that makes decisions sticky: since when each region is hot, and when each shard
/// and each region last moved.
#[derive(Debug, Clone, Default)]
pub struct Migrator {
    hot_since: BTreeMap<usize, i64>,
    moved_at: BTreeMap<u64, i64>,
    region_moved_at: BTreeMap<usize, i64>,
}

impl Migrator {
    /// The moves at time `now` (ms). `shards` lists where each shard is and its event rate;
    /// regions are indexed as in `regions`.
    pub fn evaluate(
        &mut self,
        now: i64,
        config: &MigrationConfig,
        regions: &[RegionState],
        shards: &[Shard],
    ) -> Vec<Move> {
        let n = regions.len();
        if n < 2 {
            self.hot_since.clear();
            return Vec::new();
        }
        let mean = regions.iter().map(|r| r.load).sum::<f64>() / n as f64;
        let (trigger, release) = (
            mean * (1.0 + config.imbalance),
            mean * (1.0 + config.imbalance - config.hysteresis),
        );
        for (r, region) in regions.iter().enumerate() {
            if region.load > trigger {
                self.hot_since.entry(r).or_insert(now);
            } else if region.load <= release {
                self.hot_since.remove(&r);
            }
        }
        self.hot_since.retain(|r, _| *r < n);
        self.moved_at.retain(|_, t| now - *t < config.cooldown_ms);
        // A region sits out until its cool-down has passed and its load is dated after its move.
        self.region_moved_at
            .retain(|r, t| *r < n && (now - *t < config.region_cooldown_ms || regions[*r].as_of <= *t));
        let settled: Vec<bool> = (0..n).map(|r| !self.region_moved_at.contains_key(&r)).collect();

        let mut loads: Vec<f64> = regions.iter().map(|r| r.load).collect();
        let mut rates = vec![0.0; n];
        for s in shards.iter().filter(|s| s.region < n) {
            rates[s.region] += s.rate.max(0.0);
        }
        // The receivers' bound on routed events per capacity.
        let total_capacity: f64 = regions.iter().map(|r| r.capacity).filter(|c| *c > 0.0).sum();
        let rate_bound = rates.iter().sum::<f64>() / total_capacity * (1.0 + config.imbalance);
        let mut sources: Vec<usize> = self
            .hot_since
            .iter()
            .filter(|(r, since)| now - **since >= config.sustain_ms && settled[**r])
            .map(|(r, _)| *r)
            .collect();
        sources.sort_by(|a, b| loads[*b].total_cmp(&loads[*a]).then(a.cmp(b)));
        let mut placed: BTreeMap<u64, usize> = BTreeMap::new();
        let mut moves = Vec::new();
        for h in sources {
            if rates[h] <= 0.0 {
                continue;
            }
            // Load points per event/s on `h`, measured.
            let cost = loads[h] / rates[h];
            let mut candidates: Vec<&Shard> = shards
                .iter()
                .filter(|s| s.region == h && s.rate > 0.0 && !self.moved_at.contains_key(&s.id))
                .collect();
            // Largest rate first; ties by id.
            candidates.sort_by(|a, b| b.rate.total_cmp(&a.rate).then(a.id.cmp(&b.id)));
            while moves.len() < config.max_moves && loads[h] > release {
                let cold = (0..n)
                    .filter(|r| *r != h && !self.hot_since.contains_key(r) && regions[*r].capacity > 0.0 && settled[*r])
                    .min_by(|a, b| loads[*a].total_cmp(&loads[*b]).then(a.cmp(b)));
                let Some(c) = cold else { break };
                let excess = loads[h] - release;
                let fits = |s: &&Shard| {
                    let off = s.rate * cost;
                    let on = off * regions[h].capacity / regions[c].capacity;
                    off <= excess
                        && loads[c] + on <= loads[h] - off
                        && (rates[c] + s.rate) / regions[c].capacity <= rate_bound
                };
                let Some(at) = candidates.iter().position(|s| !placed.contains_key(&s.id) && fits(s)) else {
                    break;
                };
                let s = candidates.remove(at);
                let off = s.rate * cost;
                let on = off * regions[h].capacity / regions[c].capacity;
                let (from_before, to_before) = (loads[h], loads[c]);
                loads[h] -= off;
                loads[c] += on;
                rates[h] -= s.rate;
                rates[c] += s.rate;
                placed.insert(s.id, c);
                self.moved_at.insert(s.id, now);
                self.region_moved_at.insert(h, now);
                self.region_moved_at.insert(c, now);
                moves.push(Move {
                    shard: s.id,
                    from: h,
                    to: c,
                    from_load: (from_before, loads[h]),
                    to_load: (to_before, loads[c]),
                });
            }
        }
        moves
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: MigrationConfig = MigrationConfig {
        imbalance: 0.2,
        hysteresis: 0.1,
        sustain_ms: 300_000,
        max_moves: 8,
        cooldown_ms: 900_000,
        region_cooldown_ms: 0,
    };

    fn regions(loads: &[f64]) -> Vec<RegionState> {
        loads
            .iter()
            .map(|l| RegionState {
                load: *l,
                capacity: 100.0,
                as_of: i64::MAX,
            })
            .collect()
    }

    fn shards(region: usize, rates: &[f64], first_id: u64) -> Vec<Shard> {
        rates
            .iter()
            .enumerate()
            .map(|(i, r)| Shard {
                id: first_id + i as u64,
                region,
                rate: *r,
            })
            .collect()
    }

    #[test]
    fn balanced_regions_move_nothing() {
        let mut m = Migrator::default();
        let all = [shards(0, &[10.0, 10.0], 0), shards(1, &[10.0, 10.0], 10)].concat();
        assert!(m.evaluate(0, &CONFIG, &regions(&[50.0, 50.0]), &all).is_empty());
        assert!(m.evaluate(600_000, &CONFIG, &regions(&[50.0, 50.0]), &all).is_empty());
    }

    #[test]
    fn a_spike_shorter_than_sustain_moves_nothing_and_a_sustained_one_the_fewest_shards() {
        // Region 0 at 80 (rate 40: 2 points per event/s), region 1 at 20: mean 50, trigger 60,
        // release 55; the excess is 25 points, 12.5 events/s.
        let all = [shards(0, &[10.0, 5.0, 5.0, 20.0], 0), shards(1, &[10.0], 10)].concat();
        let mut m = Migrator::default();
        assert!(m.evaluate(0, &CONFIG, &regions(&[80.0, 20.0]), &all).is_empty());
        assert!(m.evaluate(200_000, &CONFIG, &regions(&[80.0, 20.0]), &all).is_empty());
        let moves = m.evaluate(300_000, &CONFIG, &regions(&[80.0, 20.0]), &all);
        // The 20 events/s shard would shed 40 > 25 points: the 10 one moves (20 points), then a
        // 5 one would shed 10 > 5 left: stop.
        assert_eq!(moves.len(), 1);
        assert_eq!((moves[0].shard, moves[0].from, moves[0].to), (0, 0, 1));
        assert_eq!(moves[0].from_load, (80.0, 60.0));
        assert_eq!(moves[0].to_load, (20.0, 40.0));
    }

    #[test]
    fn hysteresis_keeps_a_hot_region_shedding_until_it_is_below_the_release() {
        let mut m = Migrator::default();
        let config = MigrationConfig {
            sustain_ms: 0,
            max_moves: 1,
            ..CONFIG
        };
        // Mean 50: trigger 60, release 55. Region 0 at 70 is hot and moves one shard.
        let all = [shards(0, &[1.0; 20], 0), shards(1, &[1.0], 100)].concat();
        assert_eq!(m.evaluate(0, &config, &regions(&[70.0, 30.0]), &all).len(), 1);
        // At 59 (between release and trigger) it keeps shedding...
        assert_eq!(m.evaluate(1, &config, &regions(&[59.0, 41.0]), &all[1..]).len(), 1);
        // ...while a region that was never hot does not start at 59.
        let mut fresh = Migrator::default();
        assert!(fresh
            .evaluate(1, &config, &regions(&[59.0, 41.0]), &all[1..])
            .is_empty());
        // Below the release it stops, and must be hot again to restart.
        assert!(m.evaluate(2, &config, &regions(&[54.0, 46.0]), &all[2..]).is_empty());
        assert!(m.evaluate(3, &config, &regions(&[59.0, 41.0]), &all[2..]).is_empty());
    }

    #[test]
    fn moves_are_capped_go_to_the_coolest_region_and_moved_shards_cool_down() {
        let config = MigrationConfig {
            sustain_ms: 0,
            max_moves: 2,
            ..CONFIG
        };
        let mut m = Migrator::default();
        // Region 0 at 90 with ten 1 events/s shards (9 points each); regions 1 and 2 at 30.
        let all = [
            shards(0, &[1.0; 10], 0),
            shards(1, &[1.0; 10], 100),
            shards(2, &[1.0; 10], 200),
        ]
        .concat();
        let moves = m.evaluate(0, &config, &regions(&[90.0, 30.0, 30.0]), &all);
        assert_eq!(moves.len(), 2, "capped");
        // Each move goes to the coolest region at that moment (ties to the lower index).
        assert_eq!((moves[0].to, moves[1].to), (1, 2));
        assert_eq!((moves[0].shard, moves[1].shard), (0, 1));

        // The world flips: region 1 turns hot. Shards 0 and 1, now there, are the first by id
        // but cool down: two others move.
        let moved: Vec<Shard> = all
            .iter()
            .map(|s| match moves.iter().find(|m| m.shard == s.id) {
                Some(_) => Shard { region: 1, ..*s },
                None => *s,
            })
            .collect();
        let back = m.evaluate(1, &config, &regions(&[10.0, 90.0, 50.0]), &moved);
        assert_eq!(back.iter().map(|b| b.shard).collect::<Vec<_>>(), [100, 101]);
        // After the cooldown they may move again.
        let later = m.evaluate(1_000_000, &config, &regions(&[10.0, 90.0, 50.0]), &moved);
        assert_eq!(later.iter().map(|b| b.shard).collect::<Vec<_>>(), [0, 1]);
    }

    #[test]
    fn a_receiver_never_ends_hotter_than_the_source() {
        // One huge shard: moving it would invert the imbalance, so nothing moves.
        let config = MigrationConfig {
            sustain_ms: 0,
            ..CONFIG
        };
        let mut m = Migrator::default();
        let all = [shards(0, &[100.0], 0), shards(1, &[1.0], 10)].concat();
        assert!(m.evaluate(0, &config, &regions(&[90.0, 10.0]), &all).is_empty());
        // A smaller receiver capacity makes each move cost it more.
        let mut m = Migrator::default();
        let all = [shards(0, &[5.0, 5.0, 5.0, 5.0], 0), shards(1, &[1.0], 10)].concat();
        // Region 0: 80 points at 20 events/s; each 5 events/s shard sheds 20 points and adds 40
        // to the half-size region 1: one move makes 60 and 60, a second would invert them.
        let small = [
            RegionState {
                load: 80.0,
                capacity: 100.0,
                as_of: 0,
            },
            RegionState {
                load: 20.0,
                capacity: 50.0,
                as_of: 0,
            },
        ];
        let moves = m.evaluate(0, &config, &small, &all);
        assert_eq!(moves.len(), 1);
        assert_eq!((moves[0].from_load, moves[0].to_load), ((80.0, 60.0), (20.0, 60.0)));
    }

    fn dated(loads: &[f64], as_of: i64) -> Vec<RegionState> {
        loads
            .iter()
            .map(|l| RegionState {
                load: *l,
                capacity: 100.0,
                as_of,
            })
            .collect()
    }

    #[test]
    fn a_move_that_would_overfill_the_receivers_routed_rate_is_refused() {
        let config = MigrationConfig {
            sustain_ms: 0,
            ..CONFIG
        };
        // By cpu, region 0 (90) should shed 26 more points after a first move. But region 1
        // already routes 12 events/s: the mean is 22 / 200 = 0.11 per unit of capacity, the
        // bound 0.132. A first shard makes 0.13; a second would make 0.14.
        let all = [shards(0, &[1.0; 10], 0), shards(1, &[12.0], 100)].concat();
        let mut m = Migrator::default();
        let moves = m.evaluate(0, &config, &regions(&[90.0, 10.0]), &all);
        assert_eq!(moves.len(), 1);
        assert_eq!((moves[0].from_load, moves[0].to_load), ((90.0, 81.0), (10.0, 19.0)));
        // With a receiver that routes less, the same cpu moves three (the fourth would shed
        // more than the excess left).
        let all = [shards(0, &[1.0; 10], 0), shards(1, &[2.0], 100)].concat();
        let mut m = Migrator::default();
        assert_eq!(m.evaluate(0, &config, &regions(&[90.0, 10.0]), &all).len(), 3);
    }

    #[test]
    fn a_region_that_moved_waits_for_its_cooldown_and_a_later_load() {
        let config = MigrationConfig {
            sustain_ms: 0,
            max_moves: 1,
            region_cooldown_ms: 600_000,
            ..CONFIG
        };
        let all = [shards(0, &[1.0; 10], 0), shards(2, &[1.0; 10], 100)].concat();
        let mut m = Migrator::default();
        let loads = [90.0, 10.0, 50.0];
        assert_eq!(m.evaluate(0, &config, &dated(&loads, 0), &all).len(), 1);
        // Within the cool-down nothing moves, though the load is fresh and still hot.
        assert!(m.evaluate(300_000, &config, &dated(&loads, 300_000), &all).is_empty());
        // After it, a load dated at the move (not after it) still holds both regions.
        assert!(m.evaluate(600_000, &config, &dated(&loads, 0), &all).is_empty());
        // A load dated after the move releases them.
        assert_eq!(m.evaluate(600_000, &config, &dated(&loads, 1), &all).len(), 1);
        // The receiver sits out too: with two hot regions, the second sheds to region 2, not
        // to region 1, the coolest, whose load is still dated at the first move.
        let config = MigrationConfig {
            region_cooldown_ms: 0,
            ..config
        };
        let all = [shards(0, &[1.0; 10], 0), shards(3, &[1.0; 10], 300)].concat();
        let mut m = Migrator::default();
        let hot = [90.0, 10.0, 20.0, 90.0];
        let first = m.evaluate(0, &config, &dated(&hot, 0), &all);
        assert_eq!((first[0].from, first[0].to), (0, 1));
        let next = m.evaluate(1, &config, &dated(&hot, 0), &all);
        assert_eq!((next[0].from, next[0].to), (3, 2));
    }

    #[test]
    fn routed_loads_are_rates_per_capacity_against_the_mean() {
        assert_eq!(routed_loads(&[30.0, 10.0], &[100.0, 100.0]), [150.0, 50.0]);
        assert_eq!(routed_loads(&[30.0, 15.0], &[200.0, 100.0]), [100.0, 100.0]);
        // A region without capacity counts for nothing; nothing routed is all 0.
        assert_eq!(routed_loads(&[10.0, 0.0, 0.0], &[100.0, 100.0, 0.0]), [200.0, 0.0, 0.0]);
        assert_eq!(routed_loads(&[0.0, 0.0], &[100.0, 100.0]), [0.0, 0.0]);
    }
}
