//! Oracle property test: a [`SeriesForecaster`] maintained one sample at a time (ring-buffer
//! window, O(1) model updates, refits on the schedule, running error sums) equals, after every
//! sample, a recomputation from scratch over the same samples: each model refitted fresh on the
//! window of its last successful scheduled refit and run forward over the samples since, every
//! past forecast re-issued to recompute the errors, the weights and the ensemble. A refit
//! between searches starts from the model as its previous refit left it (it keeps that fit's
//! ETS form and parameters), not from the model the samples since have updated.

use proptest::prelude::*;

use super::decompose::detect_periods;
use super::ensemble::{blend, selection_weights};
use super::*;

struct Reference {
    /// Per origin `o = 1..=n` (index `o − 1`).
    issued: Vec<Issued>,
    fallback: Vec<Vec<bool>>,
    scale: Vec<f64>,
}

/// The state of every model after each sample, recomputed from the fits.
#[allow(clippy::needless_range_loop)] // `t` indexes several tables
fn reference(cfg: &ForecastConfig, phase: u64, y: &[f64], x: &[f64], imputed: &[bool]) -> Reference {
    let (n, k, h_max) = (y.len(), cfg.exog, cfg.horizon);
    let due = |t: usize| SeriesForecaster::schedule(cfg, phase, t as u64);
    let settings = cfg.settings();
    let start = |t: usize| t - t.min(cfg.window);
    let window = |t: usize| Window {
        y: &y[start(t)..t],
        x: &x[start(t) * k..t * k],
        k,
    };
    // Periods and scale in force after each sample.
    let (mut periods_at, mut scale_at) = (vec![cfg.periods.clone()], vec![f64::NAN]);
    for t in 1..=n {
        let (mut p, mut s) = (periods_at[t - 1].clone(), scale_at[t - 1]);
        if due(t).is_some() {
            let w = window(t).y;
            if cfg.periods.is_empty() {
                p = detect_periods(w, cfg.detect_periods);
            }
            let m = p.first().copied().filter(|&m| m < w.len()).unwrap_or(1);
            s = if w.len() > m {
                (m..w.len()).map(|i| (w[i] - w[i - m]).abs()).sum::<f64>() / (w.len() - m) as f64
            } else {
                f64::NAN
            };
        }
        periods_at.push(p);
        scale_at.push(s);
    }
    // Forecasts of each model at each origin.
    let kinds = cfg.kinds();
    let mut forecasts: Vec<Vec<Option<Vec<Point>>>> = Vec::new();
    for &kind in &kinds {
        let mut fits: Vec<(usize, AnyModel)> = Vec::new();
        for t in 1..=n {
            let fresh = AnyModel::new(kind, &settings);
            let early = fits.is_empty() && t - start(t) == fresh.min_samples(&periods_at[t]);
            let result = match due(t) {
                Some(Refit::Keep) => {
                    let mut m = fits.last().map_or(fresh, |(_, m)| m.clone());
                    m.refit_kept(window(t), &periods_at[t]).map(|()| m)
                }
                Some(Refit::Search) => {
                    let mut m = fresh;
                    m.refit(window(t), &periods_at[t]).map(|()| m)
                }
                None if early => {
                    let mut m = fresh;
                    m.refit(window(t), &periods_at[t]).map(|()| m)
                }
                None => continue,
            };
            if let Ok(m) = result {
                fits.push((t, m));
            }
        }
        let per_origin = (1..=n)
            .map(|o| {
                let (from, mut m) = match fits.iter().rev().find(|(t, _)| *t <= o) {
                    Some((t, m)) => (*t, m.clone()),
                    None => (0, AnyModel::new(kind, &settings)),
                };
                for i in from..o {
                    m.observe(y[i], &x[i * k..(i + 1) * k]);
                }
                m.forecast(h_max, &[])
            })
            .collect();
        forecasts.push(per_origin);
    }
    let fixed = |e: f64| (e.abs().min(1e20) * 4_294_967_296.0).round() as i128;
    let (mut issued, mut fallback) = (Vec::new(), Vec::new());
    for o in 1..=n {
        let (mut points, mut used, mut fb) = (Vec::new(), Vec::new(), Vec::new());
        for h in 1..=h_max {
            // Errors at horizon h: origins q with target q + h ≤ o, not imputed, last K.
            let score = |i: usize| -> Option<f64> {
                forecasts[i][o - 1].as_ref()?;
                let errs: Vec<i128> = (1..=o.saturating_sub(h))
                    .filter(|&q| !imputed[q + h - 1])
                    .filter_map(|q| {
                        forecasts[i][q - 1]
                            .as_ref()
                            .map(|f| fixed(y[q + h - 1] - f[h - 1].mean))
                    })
                    .collect();
                let last = &errs[errs.len().saturating_sub(cfg.error_window)..];
                (last.len() >= cfg.min_errors)
                    .then(|| last.iter().sum::<i128>() as f64 / 4_294_967_296.0 / last.len() as f64)
            };
            let scores: Vec<(usize, f64)> = (0..kinds.len())
                .filter_map(|i| score(i).map(|s| (kinds[i] as usize, s)))
                .collect();
            let mut weights = [0.0; 5];
            if scores.is_empty() {
                let has = |kind| {
                    kinds
                        .iter()
                        .position(|&k| k == kind)
                        .filter(|&i| forecasts[i][o - 1].is_some())
                };
                if let Some(i) = has(ModelKind::SeasonalNaive).or(has(ModelKind::Naive)) {
                    weights[kinds[i] as usize] = 1.0;
                }
            } else {
                selection_weights(cfg.selection, &scores, &mut weights);
            }
            let model_used = kinds.iter().any(|k| !k.is_baseline() && weights[*k as usize] > 0.0);
            let preferred = kinds.iter().position(|k| !k.is_baseline());
            fb.push(!model_used && preferred.is_some_and(|i| score(i).is_none()));
            let column: Vec<Option<Vec<Point>>> = forecasts.iter().map(|f| f[o - 1].clone()).collect();
            let members = kinds.iter().copied().zip(column.iter().map(|f| f.as_deref()));
            points.push(blend(&weights, members, h));
            used.push(Used {
                weights,
                fallback: None,
            });
        }
        let models = kinds
            .iter()
            .enumerate()
            .map(|(i, &kind)| (kind, forecasts[i][o - 1].clone()))
            .collect();
        issued.push(Issued {
            origin: o as u64,
            points,
            used,
            models,
        });
        fallback.push(fb);
    }
    Reference {
        issued,
        fallback,
        scale: scale_at,
    }
}

/// Bitwise equality of points (NaN bounds included).
fn same_points(a: &[Point], b: &[Point]) -> bool {
    let bits = |p: &Point| [p.mean, p.lo80, p.hi80, p.lo95, p.hi95].map(f64::to_bits);
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| bits(a) == bits(b))
}

fn check(cfg: ForecastConfig, phase: u64, y: Vec<f64>, x: Vec<f64>, imputed: Vec<bool>) -> Result<(), TestCaseError> {
    let reference = reference(&cfg, phase, &y, &x, &imputed);
    let mut f = SeriesForecaster::new(cfg.clone()).unwrap().with_phase(phase);
    let k = cfg.exog;
    for t in 1..=y.len() {
        let obs = Obs {
            y: y[t - 1],
            x: &x[(t - 1) * k..t * k],
            imputed: imputed[t - 1],
            future_x: &[],
        };
        let step = f.observe(obs).unwrap();
        let (got, want) = (f.issued(), &reference.issued[t - 1]);
        prop_assert!(
            same_points(&got.points, &want.points),
            "t={t}: {:?} vs {:?}",
            got.points,
            want.points
        );
        for ((kind, a), (_, b)) in got.models.iter().zip(&want.models) {
            let same = match (a, b) {
                (Some(a), Some(b)) => same_points(a, b),
                (None, None) => true,
                _ => false,
            };
            prop_assert!(same, "t={t} {kind}: {a:?} vs {b:?}");
        }
        for (h, (u, w)) in got.used.iter().zip(&want.used).enumerate() {
            prop_assert_eq!(u.weights, w.weights, "t={} h={}", t, h + 1);
            prop_assert_eq!(
                u.fallback.is_some(),
                reference.fallback[t - 1][h],
                "t={} h={}: {}",
                t,
                h + 1,
                u
            );
        }
        prop_assert_eq!(f.scale().to_bits(), reference.scale[t].to_bits(), "t={}", t);
        // Errors realized at t: every forecast issued at an origin t − h that targets t.
        let mut expected: Vec<(Member, usize, u64)> = Vec::new();
        if !imputed[t - 1] {
            for h in 1..=cfg.horizon.min(t - 1) {
                let at = &reference.issued[t - 1 - h];
                for (kind, p) in &at.models {
                    if p.is_some() {
                        expected.push((Member::Model(*kind), h, (t - h) as u64));
                    }
                }
                expected.push((Member::Ensemble, h, (t - h) as u64));
            }
        }
        let mut realized: Vec<(Member, usize, u64)> =
            step.errors.iter().map(|e| (e.member, e.horizon, e.origin)).collect();
        expected.sort();
        realized.sort();
        prop_assert_eq!(realized, expected, "t={}", t);
    }
    Ok(())
}

fn config() -> impl Strategy<Value = ForecastConfig> {
    (
        1usize..=4,
        prop_oneof![Just(vec![]), Just(vec![4]), Just(vec![4, 12]), Just(vec![6])],
        16usize..=60,
        3usize..=20,
        proptest::sample::subsequence(vec![ModelKind::Ets, ModelKind::Mstl, ModelKind::Ar], 0..=3),
        0usize..=1,
        (1usize..=10, 0.0f64..1.0, 1usize..=3),
        prop_oneof![
            Just(Selection::Best),
            Just(Selection::InverseError {
                power: 1.0,
                within: 3.0
            }),
            Just(Selection::InverseError {
                power: 2.0,
                within: 1.2
            }),
        ],
    )
        .prop_map(
            |(horizon, periods, window, refit_every, models, exog, (error_window, min, search_every), selection)| {
                let mut cfg = ForecastConfig::new(horizon, periods, window, refit_every);
                cfg.search_every = search_every;
                cfg.models = models;
                cfg.exog = exog;
                cfg.error_window = error_window;
                cfg.min_errors = 1 + (min * error_window as f64) as usize % error_window;
                cfg.selection = selection;
                cfg.ar_order = 2;
                cfg
            },
        )
}

fn samples() -> impl Strategy<Value = (Vec<f64>, Vec<f64>, Vec<bool>)> {
    (30usize..110).prop_flat_map(|n| {
        (
            proptest::collection::vec(-1.0f64..1.0, n),
            proptest::collection::vec(-1.0f64..1.0, n),
            proptest::collection::vec(proptest::bool::weighted(0.1), n),
        )
            .prop_map(|(noise, x, imputed)| {
                // A seasonal shape with a wandering level, so that every model has work to do.
                let mut level = 10.0;
                let y = noise
                    .iter()
                    .enumerate()
                    .map(|(t, e)| {
                        level += 0.3 * e;
                        level + 3.0 * ((t % 4) as f64 - 1.5) + 2.0 * x[t] + e
                    })
                    .collect();
                (y, x, imputed)
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn incremental_equals_from_scratch(cfg in config(), phase in 0u64..256, (y, x, imputed) in samples()) {
        let x = if cfg.exog == 0 { Vec::new() } else { x };
        check(cfg, phase, y, x, imputed)?;
    }
}
