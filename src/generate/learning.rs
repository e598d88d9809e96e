//! The `learning` scenario: the event log of a language-learning app.
//!
//! Users (country, IANA timezone, serving region, free or ~15% premium, skill, app or browser)
//! open sessions; a session is `session_start`, several `attempt`s at quiz items, and usually a
//! `session_end` (~5% are abandoned without one). A new user's first session begins with a
//! `placement` test (~2% of events). Session starts follow a diurnal curve in the user's local
//! time (standard offsets of early March 2024; US users span three timezones, so `region` is a
//! function of the timezone). Items have a normal difficulty, 1–3 topics and Zipf popularity;
//! an attempt is correct with probability `logistic(1.3 (skill − difficulty) + 0.4)` and takes a
//! log-normal response time (median ~6.5 s). ~1% of users are bots (UA `python-requests/…`,
//! `curl/…` or containing `Bot`) that fire 30–90 attempts with sub-second response times.
//!
//! Delivery: rows come out in arrival order. Most events arrive within a second, the rest up to
//! 30 s late; ~0.1% arrive 10–60 minutes late; ~3% of rows are duplicate deliveries of an attempt
//! (same row, `client_attempt_id` included, 0.5–20 s after the original).
//!
//! Rate: the log starts at 2024-03-04T00:00:00Z and session arrivals are paced so that `n` events
//! span about `max(2 h, n × 86.4 ms)`: one simulated day per million events.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Exp1, StandardNormal};

use super::vocab::{agents, Agent, Kind, BOT_AGENTS, DIURNAL, LOCALES, TOPICS};

/// 2024-03-04T00:00:00Z in epoch milliseconds.
pub const START_MS: i64 = 1_709_510_400_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Mean rows per session (starts, placements, attempts, duplicates, ends), measured; it paces
/// session arrivals so that a million events span about a day.
const ROWS_PER_SESSION: f64 = 11.5;
const P_NEW_USER: f64 = 0.23;
const P_PREMIUM: f64 = 0.15;
const P_BOT: f64 = 0.01;
const P_ABANDON: f64 = 0.05;
const P_DUPLICATE: f64 = 0.0385;
const P_LATE: f64 = 0.001;

pub(crate) struct User {
    pub locale: usize,
    pub premium: bool,
    pub bot: bool,
    pub agent: usize,
    skill: f64,
}

pub(crate) struct Item {
    pub difficulty: f64,
    pub topics: Vec<&'static str>,
}

/// One generated row; which fields mean something depends on `kind`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Row {
    pub time: i64,
    pub kind: Kind,
    pub duplicate: bool,
    pub user: u32,
    pub session: u64,
    pub item: u32,
    /// Global attempt counter, the source of `client_attempt_id`.
    pub attempt: u64,
    pub attempt_number: u32,
    pub correct: bool,
    pub response_ms: f64,
    pub duration_ms: i64,
    pub attempt_count: u32,
    pub correct_count: u32,
    pub level: usize,
    pub score: f64,
}

#[derive(Clone, Copy, Default)]
enum Stage {
    #[default]
    Start,
    Placement,
    Attempt,
    End,
}

/// An open session.
#[derive(Default)]
struct Session {
    next: i64,
    id: u64,
    stage: Stage,
    user: u32,
    start: i64,
    placement: bool,
    planned: u32,
    done: u32,
    correct: u32,
    item: u32,
    response_ms: u64,
}

/// Cumulative weights, normalised to end at 1.
fn cdf(weights: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut acc = 0.0;
    let mut out: Vec<f64> = weights
        .into_iter()
        .map(|w| {
            acc += w;
            acc
        })
        .collect();
    out.iter_mut().for_each(|c| *c /= acc);
    out
}

fn pick(cdf: &[f64], rng: &mut ChaCha8Rng) -> usize {
    let u: f64 = rng.random();
    cdf.partition_point(|&c| c <= u).min(cdf.len() - 1)
}

fn activity(local_ms: i64) -> f64 {
    let h = local_ms.rem_euclid(DAY_MS) as f64 / HOUR_MS as f64;
    let (i, f) = (h as usize, h.fract());
    DIURNAL[i] * (1.0 - f) + DIURNAL[(i + 1) % 24] * f
}

/// The simulation: an event-time-ordered queue of sessions feeding an arrival-ordered buffer.
pub(crate) struct Learning {
    rng: ChaCha8Rng,
    pub salt: u64,
    pub users: Vec<User>,
    by_locale: Vec<Vec<u32>>,
    pub items: Vec<Item>,
    item_cdf: Vec<f64>,
    locale_cdf: Vec<f64>,
    pub agents: Vec<Agent>,
    client_cdf: Vec<f64>,
    /// Open sessions by (next event time, id).
    sessions: BTreeMap<(i64, u64), Session>,
    /// Rows awaiting delivery by (arrival time, emission order).
    pending: BTreeMap<(i64, u64), Row>,
    /// Mean milliseconds between candidate session starts.
    candidate_gap: f64,
    next_candidate: i64,
    clock: i64,
    seq: u64,
    pub session_count: u64,
    attempt_count: u64,
    /// Users created before the log starts (ids below this); later users join with a placement.
    pub initial_users: usize,
}

impl Learning {
    pub(crate) fn new(seed: u64, events: usize) -> Learning {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut items: Vec<Item> = (0..3000)
            .map(|_| {
                let mut topics = Vec::with_capacity(3);
                for _ in 0..rng.random_range(1..=3) {
                    let t = TOPICS[rng.random_range(0..TOPICS.len())];
                    if !topics.contains(&t) {
                        topics.push(t);
                    }
                }
                // `+ 0.0` turns -0.0 into 0.0, as `Value` does, so Parquet and NDJSON agree.
                let z: f64 = rng.sample(StandardNormal);
                let difficulty = (z * 100.0).round() / 100.0 + 0.0;
                Item { difficulty, topics }
            })
            .collect();
        // Zipf popularity over a shuffled ranking, so popular items are spread over the ids.
        let mut ranks: Vec<usize> = (1..=items.len()).collect();
        for i in (1..ranks.len()).rev() {
            ranks.swap(i, rng.random_range(0..=i));
        }
        let item_cdf = cdf(ranks.iter().map(|&r| (r as f64).powf(-1.07)));
        items.shrink_to_fit();
        let (agents, client_weights) = agents();
        let span_ms = (2 * HOUR_MS).max((events as f64 * DAY_MS as f64 / 1e6) as i64) as f64;
        let mean_activity = DIURNAL.iter().sum::<f64>() / 24.0;
        let gap_ms = span_ms * mean_activity * ROWS_PER_SESSION / (events.max(1) as f64);
        let mut g = Learning {
            salt: rng.random(),
            rng,
            users: Vec::new(),
            by_locale: vec![Vec::new(); LOCALES.len()],
            items,
            item_cdf,
            locale_cdf: cdf(LOCALES.iter().map(|l| f64::from(l.4))),
            agents,
            client_cdf: cdf(client_weights),
            sessions: BTreeMap::new(),
            pending: BTreeMap::new(),
            candidate_gap: gap_ms,
            next_candidate: START_MS,
            clock: START_MS,
            seq: 0,
            session_count: 0,
            attempt_count: 0,
            initial_users: (events / 40).clamp(200, 100_000),
        };
        for _ in 0..g.initial_users {
            let locale = pick(&g.locale_cdf, &mut g.rng);
            g.new_user(locale);
        }
        g
    }

    fn new_user(&mut self, locale: usize) -> u32 {
        let rng = &mut self.rng;
        let premium = rng.random_bool(P_PREMIUM);
        let bot = rng.random_bool(P_BOT);
        let agent = if bot {
            self.agents.len() - BOT_AGENTS.len() + rng.random_range(0..BOT_AGENTS.len())
        } else {
            pick(&self.client_cdf, rng)
        };
        let skill = if premium { 0.3 } else { 0.0 } + rng.sample::<f64, _>(StandardNormal);
        let id = self.users.len() as u32;
        self.users.push(User {
            locale,
            premium,
            bot,
            agent,
            skill,
        });
        self.by_locale[locale].push(id);
        id
    }

    /// Item `item`'s popularity: its probability of being picked relative to the average item's.
    pub(crate) fn item_popularity(&self, item: usize) -> f64 {
        let below = if item == 0 { 0.0 } else { self.item_cdf[item - 1] };
        (self.item_cdf[item] - below) * self.items.len() as f64
    }

    /// The next row in arrival order.
    pub(crate) fn next_row(&mut self) -> Row {
        loop {
            match self.pending.first_key_value() {
                Some((&(arrival, _), _)) if arrival <= self.clock => {
                    return self.pending.pop_first().expect("not empty").1;
                }
                _ => self.step(),
            }
        }
    }

    /// Advances the simulation to its next event (a candidate session start or a session step).
    fn step(&mut self) {
        let session_next = self.sessions.first_key_value().map_or(i64::MAX, |(k, _)| k.0);
        if self.next_candidate <= session_next {
            let t = self.next_candidate;
            self.clock = t;
            self.next_candidate = t + 1 + self.exp(self.candidate_gap) as i64;
            let locale = pick(&self.locale_cdf, &mut self.rng);
            if self.rng.random::<f64>() >= activity(t + LOCALES[locale].2 * 60_000) {
                return; // thinned: outside this locale's active hours
            }
            let users = &self.by_locale[locale];
            let placement = users.is_empty() || self.rng.random_bool(P_NEW_USER);
            let user = match placement {
                true => self.new_user(locale),
                false => users[self.rng.random_range(0..users.len())],
            };
            let u = &self.users[user as usize];
            let planned = match (u.bot, u.premium) {
                (true, _) => self.rng.random_range(30..=90),
                (false, premium) => {
                    let mean = if premium { 10.0 } else { 7.5 };
                    1 + (self.exp(mean) as u32).min(60)
                }
            };
            self.session_count += 1;
            let (next, id, start) = (t, self.session_count, t);
            let s = Session {
                next,
                id,
                user,
                start,
                placement,
                planned,
                ..Session::default()
            };
            self.sessions.insert((s.next, s.id), s);
        } else {
            let (_, s) = self.sessions.pop_first().expect("not empty");
            self.clock = s.next;
            self.advance(s);
        }
    }

    /// Emits `s`'s current event and reschedules it (or closes it).
    fn advance(&mut self, mut s: Session) {
        let (bot, skill) = (self.users[s.user as usize].bot, self.users[s.user as usize].skill);
        let (time, user, session) = (s.next, s.user, s.id);
        let mut row = Row {
            time,
            user,
            session,
            ..Row::default()
        };
        match s.stage {
            Stage::Start if s.placement => {
                s.stage = Stage::Placement;
                s.next += self.rng.random_range(180_000..720_000);
            }
            Stage::Start => self.schedule_attempt(&mut s, bot),
            Stage::Placement => {
                row.kind = Kind::Placement;
                row.level = [-1.2, -0.4, 0.3, 1.0, 1.7].iter().filter(|&&t| skill >= t).count();
                let noise = 6.0 * self.rng.sample::<f64, _>(StandardNormal);
                row.score = ((50.0 + 18.0 * skill + noise).clamp(0.0, 100.0) * 10.0).round() / 10.0;
                self.schedule_attempt(&mut s, bot);
            }
            Stage::Attempt => {
                let difficulty = self.items[s.item as usize].difficulty;
                let p = if bot {
                    0.35
                } else {
                    1.0 / (1.0 + (-(1.3 * (skill - difficulty) + 0.4)).exp())
                };
                s.done += 1;
                self.attempt_count += 1;
                row.correct = self.rng.random_bool(p);
                s.correct += u32::from(row.correct);
                (row.kind, row.item, row.attempt) = (Kind::Attempt, s.item, self.attempt_count);
                (row.attempt_number, row.response_ms) = (s.done, s.response_ms as f64 / 10.0);
                if s.done < s.planned {
                    self.schedule_attempt(&mut s, bot);
                } else if self.rng.random_bool(P_ABANDON) {
                    self.emit(row);
                    return;
                } else {
                    s.stage = Stage::End;
                    s.next += if bot {
                        self.rng.random_range(50..500)
                    } else {
                        self.rng.random_range(1_000..20_000)
                    };
                }
            }
            Stage::End => {
                row.kind = Kind::SessionEnd;
                (row.duration_ms, row.attempt_count, row.correct_count) = (s.next - s.start, s.done, s.correct);
                self.emit(row);
                return;
            }
        }
        self.emit(row);
        self.sessions.insert((s.next, s.id), s);
    }

    /// Picks the session's next item and schedules the attempt at it.
    fn schedule_attempt(&mut self, s: &mut Session, bot: bool) {
        s.stage = Stage::Attempt;
        s.item = pick(&self.item_cdf, &mut self.rng) as u32;
        let difficulty = self.items[s.item as usize].difficulty;
        let (pause, response) = if bot {
            (self.rng.random_range(10.0..150.0), self.rng.random_range(120.0..950.0))
        } else {
            let pause = 400.0 + self.exp(3500.0);
            // Log-normal, median 6.5 s, slower on harder items.
            let z: f64 = self.rng.sample(StandardNormal);
            let r = 6500.0 * (0.55 * z).exp() * (1.0 + 0.12 * difficulty).max(0.5);
            (pause, r.clamp(350.0, 180_000.0))
        };
        s.response_ms = (response * 10.0).round() as u64;
        s.next += (pause + response).round() as i64;
    }

    /// An exponential sample with mean `mean`.
    fn exp(&mut self, mean: f64) -> f64 {
        mean * self.rng.sample::<f64, _>(Exp1)
    }

    /// Queues `row` for delivery with an arrival delay, and sometimes a duplicate delivery.
    fn emit(&mut self, row: Row) {
        let u: f64 = self.rng.random();
        let delay = if u < P_LATE {
            self.rng.random_range(10 * 60_000..=60 * 60_000)
        } else if u < 0.6 {
            self.rng.random_range(0..1_000)
        } else {
            (self.exp(6_000.0) as i64).min(30_000)
        };
        let arrival = row.time + delay;
        self.pending.insert((arrival, self.seq), row);
        if row.kind == Kind::Attempt && self.rng.random_bool(P_DUPLICATE) {
            let redelivery = arrival + self.rng.random_range(500..20_000);
            let dup = Row { duplicate: true, ..row };
            self.pending.insert((redelivery, self.seq + 1), dup);
        }
        self.seq += 2;
    }
}
