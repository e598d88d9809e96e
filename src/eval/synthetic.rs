//! Synthetic load series of several shapes with known noise, for the accuracy tests. Hourly
//! steps: a day is 24 samples, a week 168. Each shape has its own form of seasonality, trend and
//! noise, so that passing the checks does not depend on one generator's exact form.

use std::f64::consts::PI;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

pub const DAY: usize = 24;
pub const WEEK: usize = 168;

/// One generated series.
pub struct Synthetic {
    pub name: &'static str,
    pub y: Vec<f64>,
    /// Standard deviation of the noise process (its stationary, marginal value).
    pub sigma: f64,
    /// Standard deviation of the noise's innovations (the best possible one-step error).
    pub innovation_sigma: f64,
}

/// AR(1) noise with innovation σ `s` and coefficient `phi`, started in its stationary law.
fn ar1(rng: &mut ChaCha8Rng, n: usize, phi: f64, s: f64) -> Vec<f64> {
    let innovation = Normal::new(0.0, s).unwrap();
    let mut e = Normal::new(0.0, s / (1.0 - phi * phi).sqrt()).unwrap().sample(rng);
    (0..n)
        .map(|_| {
            let v = e;
            e = phi * e + innovation.sample(rng);
            v
        })
        .collect()
}

fn marginal(phi: f64, s: f64) -> f64 {
    s / (1.0 - phi * phi).sqrt()
}

/// Daily and weekly seasonality (a two-harmonic daily shape, a smooth weekend dip), a linear
/// trend and AR(1) noise.
pub fn daily_weekly(seed: u64, n: usize) -> Synthetic {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (phi, s) = (0.5, 2.0);
    let noise = ar1(&mut rng, n, phi, s);
    let y = (0..n)
        .map(|t| {
            let d = 2.0 * PI * (t % DAY) as f64 / DAY as f64;
            let daily = 15.0 * d.sin() + 6.0 * (2.0 * d + 0.8).sin();
            let day_of_week = (t % WEEK) as f64 / DAY as f64;
            let weekend = if day_of_week >= 5.0 {
                -12.0 * (PI * (day_of_week - 5.0) / 2.0).sin()
            } else {
                0.0
            };
            100.0 + 0.01 * t as f64 + daily + weekend + noise[t]
        })
        .collect();
    Synthetic {
        name: "daily_weekly",
        y,
        sigma: marginal(phi, s),
        innovation_sigma: s,
    }
}

/// Business hours: a plateau from 8:00 to 18:00 with smooth edges, weekends at 40% of the
/// weekday amplitude, a slow decline and strongly autocorrelated noise.
pub fn business_hours(seed: u64, n: usize) -> Synthetic {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (phi, s) = (0.7, 1.5);
    let noise = ar1(&mut rng, n, phi, s);
    let logistic = |x: f64| 1.0 / (1.0 + (-x).exp());
    let y = (0..n)
        .map(|t| {
            let hour = (t % DAY) as f64;
            let open = logistic(1.5 * (hour - 8.0)) * logistic(1.5 * (18.0 - hour));
            let weekday = (t % WEEK) / DAY < 5;
            let amplitude = if weekday { 30.0 } else { 12.0 };
            60.0 - 0.005 * t as f64 + amplitude * open + noise[t]
        })
        .collect();
    Synthetic {
        name: "business_hours",
        y,
        sigma: marginal(phi, s),
        innovation_sigma: s,
    }
}

/// A random walk with unit steps.
pub fn random_walk(seed: u64, n: usize) -> Synthetic {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let step = Normal::new(0.0, 1.0).unwrap();
    let y = (0..n)
        .scan(50.0, |level, _| {
            *level += step.sample(&mut rng);
            Some(*level)
        })
        .collect();
    Synthetic {
        name: "random_walk",
        y,
        sigma: 1.0,
        innovation_sigma: 1.0,
    }
}

/// A daily pattern with two level shifts (up at 40%, down at 75% of the series).
pub fn level_shifts(seed: u64, n: usize) -> Synthetic {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (phi, s) = (0.4, 1.5);
    let noise = ar1(&mut rng, n, phi, s);
    let y = (0..n)
        .map(|t| {
            let d = 2.0 * PI * (t % DAY) as f64 / DAY as f64;
            let shift = if t >= n * 3 / 4 {
                5.0
            } else if t >= n * 2 / 5 {
                20.0
            } else {
                0.0
            };
            40.0 + 10.0 * d.cos() + shift + noise[t]
        })
        .collect();
    Synthetic {
        name: "level_shifts",
        y,
        sigma: marginal(phi, s),
        innovation_sigma: s,
    }
}

/// Daily and weekly seasonality with 1% of samples spiking by 5 to 10 σ.
pub fn spikes(seed: u64, n: usize) -> Synthetic {
    let mut base = daily_weekly(seed, n);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    for v in &mut base.y {
        if rng.random_bool(0.01) {
            *v += rng.random_range(5.0..10.0) * base.sigma;
        }
    }
    Synthetic { name: "spikes", ..base }
}

/// No seasonality: AR(2) around a slow trend.
pub fn no_season(seed: u64, n: usize) -> Synthetic {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let innovation = Normal::new(0.0, 1.0).unwrap();
    let (mut e1, mut e2) = (0.0, 0.0);
    let y = (0..n + 200)
        .map(|t| {
            let e = 0.6 * e1 + 0.2 * e2 + innovation.sample(&mut rng);
            (e2, e1) = (e1, e);
            20.0 + 0.02 * t as f64 + e
        })
        .skip(200)
        .collect();
    // Stationary σ of AR(2): σ² = (1 − φ2) / ((1 + φ2)((1 − φ2)² − φ1²)).
    let var = (1.0 - 0.2) / ((1.0 + 0.2) * ((1.0 - 0.2f64).powi(2) - 0.36));
    Synthetic {
        name: "no_season",
        y,
        sigma: var.sqrt(),
        innovation_sigma: 1.0,
    }
}
