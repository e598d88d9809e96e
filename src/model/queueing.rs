//! Queueing: the mean waiting time of each class of a non-preemptive priority M/G/1 queue
//! (Cobham's formula), and a fluid backlog for windows in which the server is overloaded. Pure
//! maths, no timely; the routing evaluator (`eval::routing`) runs one queue per region.
//!
//! **Cobham (1954).** Classes `1..K`, 1 served first, each with Poisson arrivals at rate `λ_i`
//! and a service time `S_i` of any distribution; a started service is never interrupted. With
//! `ρ_i = λ_i E[S_i]` and `σ_k = ρ_1 + … + ρ_k`, an arrival of class `k` waits on average
//!
//! ```text
//! W_k = W0 / ((1 − σ_{k−1}) (1 − σ_k))        W0 = Σ_i λ_i E[S_i²] / 2   (σ_0 = 0)
//! ```
//!
//! `W0` is the mean residual work of the service in progress. It holds while `σ_k < 1`: class
//! `k` is stable even when lower classes are not (they wait forever; class `k` still sees their
//! residual services).
//!
//! **Overload.** A window of length `Δt` in which some `σ_k ≥ 1` has no steady state. Then
//! [`FluidQueue`] keeps, per class, the work that could not be served, carried from window to
//! window: the work of classes `1..k` queued, `P_k`, grows at `(Σ_{i≤k} a_i − c) / Δt` (`a_i`
//! the work of class `i` arriving in the window, `c` the work the server can do in it) and
//! drains at that rate when it is negative, never below 0. Classes `1..k` are served before the
//! others, so `P_k` does not depend on lower classes. An arrival of class `k` waits until the
//! server has done the work `P_k` ahead of it, with what the classes above `k` leave of its
//! capacity from then on, window by window ([`time_to_serve`]): when the capacity comes back
//! after an outage, the backlog drains at the restored rate, not at the outage's.
//!
//! [`cobham_capped`] is Cobham's formula with every `σ` capped at a maximum utilization below
//! 1 (the `regions` scenario caps at 0.98 before its own queueing formulas), so that it stays
//! finite; the evaluator adds the fluid wait to it. Below the cap, the fluid wait is 0 and the
//! capped formula is Cobham's.

/// One priority class at one server. Any time unit, the same for every field and class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Class {
    /// Arrivals per unit of time.
    pub rate: f64,
    /// `E[S]`, the mean service time.
    pub mean: f64,
    /// `E[S²]`, the second moment of the service time.
    pub second_moment: f64,
}

impl Class {
    /// A class with exponential service times: `E[S²] = 2 E[S]²`.
    pub fn exponential(rate: f64, mean: f64) -> Class {
        Class {
            rate,
            mean,
            second_moment: 2.0 * mean * mean,
        }
    }

    /// A class with deterministic service times: `E[S²] = E[S]²`.
    pub fn deterministic(rate: f64, mean: f64) -> Class {
        Class {
            rate,
            mean,
            second_moment: mean * mean,
        }
    }

    /// `ρ = λ E[S]`, the fraction of time the server spends on this class.
    pub fn load(&self) -> f64 {
        self.rate * self.mean
    }
}

/// `σ_k` for every `k`: the cumulative loads, highest priority first.
fn cumulative(classes: &[Class]) -> Vec<f64> {
    classes
        .iter()
        .scan(0.0, |s, c| {
            *s += c.load();
            Some(*s)
        })
        .collect()
}

/// Cobham's mean waiting time in queue of each class (highest priority first), service not
/// included; `f64::INFINITY` for a class with `σ_k ≥ 1`.
pub fn cobham(classes: &[Class]) -> Vec<f64> {
    let w0: f64 = classes.iter().map(|c| c.rate * c.second_moment).sum::<f64>() / 2.0;
    let sigma = cumulative(classes);
    (0..classes.len())
        .map(|k| {
            let before = if k == 0 { 0.0 } else { sigma[k - 1] };
            if sigma[k] >= 1.0 {
                f64::INFINITY
            } else {
                w0 / ((1.0 - before) * (1.0 - sigma[k]))
            }
        })
        .collect()
}

/// Cobham's formula with each `σ_k` capped at `max_utilization` (below 1), and `W0` counting
/// only the work the server does: when the total load `σ_K` exceeds the cap, every class's
/// rate is scaled by `max_utilization / σ_K`. Always finite; equal to [`cobham`] when
/// `σ_K ≤ max_utilization`.
pub fn cobham_capped(classes: &[Class], max_utilization: f64) -> Vec<f64> {
    let cap = max_utilization.clamp(0.0, 0.999_999);
    let sigma = cumulative(classes);
    let total = sigma.last().copied().unwrap_or(0.0);
    let served = if total > cap { cap / total } else { 1.0 };
    let w0: f64 = classes.iter().map(|c| served * c.rate * c.second_moment).sum::<f64>() / 2.0;
    (0..classes.len())
        .map(|k| {
            let before = if k == 0 { 0.0 } else { sigma[k - 1].min(cap) };
            w0 / ((1.0 - before) * (1.0 - sigma[k].min(cap)))
        })
        .collect()
}

/// The mean over `[0, 1]` of `max(0, p + s·x)` (a backlog `p ≥ 0` changing by `s` over the
/// window, never below 0), and its value at 1.
fn clipped_line(p: f64, s: f64) -> (f64, f64) {
    let end = p + s;
    if end >= 0.0 {
        (p + s / 2.0, end)
    } else {
        // Empty at x = p / −s < 1, then 0.
        (p * (p / -s) / 2.0, 0.0)
    }
}

/// Work that a server could not do, per class, carried from one window to the next.
#[derive(Debug, Clone, PartialEq)]
pub struct FluidQueue {
    backlog: Vec<f64>,
}

impl FluidQueue {
    /// An empty queue of `classes` classes.
    pub fn new(classes: usize) -> FluidQueue {
        FluidQueue {
            backlog: vec![0.0; classes],
        }
    }

    /// The work queued per class at the end of the last window.
    pub fn backlog(&self) -> &[f64] {
        &self.backlog
    }

    /// The work queued over all classes.
    pub fn total(&self) -> f64 {
        self.backlog.iter().sum()
    }

    /// Advances one window in which `arrivals[k]` work of class `k` arrives at a constant rate
    /// and the server can do `capacity` work (in the same unit). Returns, per class `k`, the
    /// window's mean of `P_k`, the work of classes `1..=k` queued (non-decreasing in `k`).
    pub fn step(&mut self, arrivals: &[f64], capacity: f64) -> Vec<f64> {
        let k = self.backlog.len();
        let capacity = capacity.max(0.0);
        let (mut queued, mut arrived) = (0.0, 0.0);
        let mut means = Vec::with_capacity(k);
        let mut ends = Vec::with_capacity(k);
        for i in 0..k {
            queued += self.backlog[i];
            arrived += arrivals.get(i).copied().unwrap_or(0.0).max(0.0);
            let (mean, end) = clipped_line(queued, arrived - capacity);
            means.push(mean.max(0.0));
            ends.push(end);
        }
        // Per class: the difference of consecutive prefix backlogs (non-decreasing in k).
        let mut below = 0.0;
        for (i, end) in ends.into_iter().enumerate() {
            self.backlog[i] = (end - below).max(0.0);
            below = end.max(below);
        }
        means
    }
}

/// The time a server needs to do `work`, given what it can spare for it over consecutive
/// intervals from now on: `(length, spare work)` each (its capacity minus the work of higher
/// classes arriving then; nothing when that is negative). After the last interval its rate
/// goes on. 0 for no work; `f64::INFINITY` when the work is never done.
pub fn time_to_serve(work: f64, intervals: impl IntoIterator<Item = (f64, f64)>) -> f64 {
    if work <= 0.0 {
        return 0.0;
    }
    let (mut left, mut elapsed) = (work, 0.0);
    let mut rate = 0.0;
    for (length, spare) in intervals {
        if length <= 0.0 {
            continue;
        }
        let spare = spare.max(0.0);
        rate = spare / length;
        if spare >= left {
            return elapsed + left / rate;
        }
        left -= spare;
        elapsed += length;
    }
    if rate > 0.0 {
        elapsed + left / rate
    } else {
        f64::INFINITY
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    #[test]
    fn one_class_is_the_m_m_1_and_m_d_1_queue() {
        // M/M/1: W = ρ / (μ − λ).
        for (lambda, mu) in [(0.5, 1.0), (3.0, 4.0), (0.1, 10.0)] {
            let w = cobham(&[Class::exponential(lambda, 1.0 / mu)]);
            let rho = lambda / mu;
            assert!(close(w[0], rho / (mu - lambda), 1e-12), "{w:?}");
        }
        // M/D/1 (Pollaczek–Khinchine): W = ρ / (2μ(1 − ρ)).
        let w = cobham(&[Class::deterministic(0.8, 1.0)]);
        assert!(close(w[0], 0.8 / (2.0 * 0.2), 1e-12));
        assert_eq!(cobham(&[Class::exponential(1.0, 1.0)]), vec![f64::INFINITY]);
    }

    /// Two classes of an M/M/1 queue, non-preemptive head of the line: λ_H = 1 and λ_L = 9 lots
    /// an hour, μ = 12 an hour for both. Published time in system (Prabhu 1981, Table 4.4, as
    /// worked in the literature): 9.545 min for high priority, 32.27 min for low.
    #[test]
    fn a_published_two_class_example() {
        let w = cobham(&[Class::exponential(1.0, 1.0 / 12.0), Class::exponential(9.0, 1.0 / 12.0)]);
        let minutes = |w: f64| (w + 1.0 / 12.0) * 60.0;
        assert!(close(minutes(w[0]), 9.545, 1e-4), "{}", minutes(w[0]));
        assert!(close(minutes(w[1]), 32.27, 1e-4), "{}", minutes(w[1]));
        // Mixed service: class 1 exponential, class 2 deterministic, both 1/4 s, λ = 2 and 1
        // per second: W0 = (2·2/16 + 1/16)/2 = 0.15625, σ = 0.5, 0.75.
        let w = cobham(&[Class::exponential(2.0, 0.25), Class::deterministic(1.0, 0.25)]);
        assert!(close(w[0], 0.15625 / 0.5, 1e-12));
        assert!(close(w[1], 0.15625 / (0.5 * 0.25), 1e-12));
    }

    #[test]
    fn a_stable_high_class_beside_an_overloaded_low_one() {
        let w = cobham(&[Class::exponential(0.3, 1.0), Class::exponential(2.0, 1.0)]);
        assert!(close(w[0], (0.3 * 2.0 + 2.0 * 2.0) / 2.0 / 0.7, 1e-12));
        assert_eq!(w[1], f64::INFINITY);
    }

    #[test]
    fn the_capped_formula_is_cobham_below_the_cap_and_finite_above() {
        let classes = [Class::exponential(0.2, 1.0), Class::exponential(0.5, 1.5)];
        assert_eq!(cobham_capped(&classes, 0.98), cobham(&classes));
        let over = [Class::exponential(0.5, 1.0), Class::exponential(2.0, 1.0)];
        let w = cobham_capped(&over, 0.98);
        assert!(w.iter().all(|x| x.is_finite() && *x > 0.0));
        // σ_K = 2.5 is capped: W0 counts 0.98 / 2.5 of the arrivals' residual work.
        let w0 = 0.98 / 2.5 * (0.5 * 2.0 + 2.0 * 2.0) / 2.0;
        assert!(close(w[0], w0 / 0.5, 1e-12));
        assert!(close(w[1], w0 / (0.5 * 0.02), 1e-9));
    }

    #[test]
    fn an_overload_backlog_grows_and_carries_over_until_drained() {
        let mut q = FluidQueue::new(2);
        // Window 1: 150 units of class-1 work and 50 of class 2 against a capacity of 100:
        // class 1 alone overloads; its backlog goes 0 → 50 (mean 25), classes 1–2 go 0 → 100
        // (mean 50).
        assert_eq!(q.step(&[150.0, 50.0], 100.0), vec![25.0, 50.0]);
        assert_eq!(q.backlog(), &[50.0, 50.0]);
        // Window 2: 20 of each arrive; prefix 1 goes 50 → −30, empty at 50/80 of the window:
        // mean 50 · 0.625 / 2; prefix 2 goes 100 → 40: mean 70.
        let m = q.step(&[20.0, 20.0], 100.0);
        assert!(close(m[0], 50.0 * 0.625 / 2.0, 1e-12), "{m:?}");
        assert!(close(m[1], 70.0, 1e-12), "{m:?}");
        assert_eq!(q.backlog(), &[0.0, 40.0]);
        // Window 3: nothing arrives; the 40 drain in 0.4 of the window.
        let m = q.step(&[0.0, 0.0], 100.0);
        assert_eq!(m[0], 0.0);
        assert!(close(m[1], 40.0 * 0.4 / 2.0, 1e-12));
        assert_eq!(q.total(), 0.0);
        // Without capacity, the work stays.
        let mut q = FluidQueue::new(1);
        assert_eq!(q.step(&[1.0], 0.0), vec![0.5]);
        assert_eq!(q.step(&[0.0], 0.0), vec![1.0]);
        assert_eq!(q.backlog(), &[1.0]);
    }

    #[test]
    fn a_backlog_drains_at_the_rate_to_come() {
        // 1000 units behind an outage: 10 per unit of time for 50 more, then 100 per unit.
        let t = time_to_serve(1000.0, [(50.0, 500.0), (100.0, 10_000.0)]);
        assert!(close(t, 50.0 + 5.0, 1e-12));
        // Higher classes take all of an interval: it waits it out.
        assert!(close(time_to_serve(10.0, [(5.0, -3.0), (5.0, 20.0)]), 7.5, 1e-12));
        // The last rate goes on; none at all is forever.
        assert!(close(time_to_serve(300.0, [(1.0, 100.0)]), 3.0, 1e-12));
        assert_eq!(time_to_serve(1.0, [(1.0, 0.0)]), f64::INFINITY);
        assert_eq!(time_to_serve(0.0, []), 0.0);
    }

    proptest! {
        /// Kleinrock's conservation law: for any non-preemptive work-conserving order,
        /// `Σ ρ_k W_k = σ_K W0 / (1 − σ_K)`, so with equal service distributions the rate-weighted
        /// mean wait is FCFS's: M/G/1's `λ E[S²] / (2 (1 − ρ))`.
        #[test]
        fn cobham_conserves_work(
            rates in prop::collection::vec(0.01f64..1.0, 1..6),
            mean in 0.05f64..1.0,
            scale in 0.05f64..0.95,
        ) {
            let total: f64 = rates.iter().sum();
            // Scale so that the total load is `scale` < 1.
            let classes: Vec<Class> = rates
                .iter()
                .map(|r| Class::exponential(r / total * scale / mean, mean))
                .collect();
            let w = cobham(&classes);
            let lambda: f64 = classes.iter().map(|c| c.rate).sum();
            let mean_wait = classes.iter().zip(&w).map(|(c, w)| c.rate * w).sum::<f64>() / lambda;
            let fcfs = lambda * 2.0 * mean * mean / (2.0 * (1.0 - scale));
            prop_assert!(close(mean_wait, fcfs, 1e-9), "{} vs {}", mean_wait, fcfs);
            // Higher classes never wait longer.
            prop_assert!(w.windows(2).all(|p| p[0] <= p[1] + 1e-12));
        }

        /// The fluid queue conserves work: what arrives is served or still queued, and the
        /// server never does more than its capacity nor idles while work is queued.
        #[test]
        fn the_fluid_queue_conserves_work(
            windows in prop::collection::vec((prop::collection::vec(0.0f64..50.0, 3), 0.0f64..60.0), 1..20),
        ) {
            let mut q = FluidQueue::new(3);
            for (arrivals, capacity) in windows {
                let before = q.total();
                let waits = q.step(&arrivals, capacity);
                let arrived: f64 = arrivals.iter().sum();
                let served = before + arrived - q.total();
                prop_assert!(served <= capacity + 1e-9);
                prop_assert!(served >= -1e-9);
                if q.total() > 1e-9 {
                    prop_assert!(close(served, capacity, 1e-9), "idle with work queued");
                }
                prop_assert!(waits.windows(2).all(|p| p[0] <= p[1] + 1e-12));
                prop_assert!(q.backlog().iter().all(|b| *b >= 0.0));
            }
        }
    }
}
