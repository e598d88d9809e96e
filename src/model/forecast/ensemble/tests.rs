use super::*;

fn baselines(horizon: usize, period: usize) -> ForecastConfig {
    let mut cfg = ForecastConfig::new(horizon, vec![period], 100, 1000);
    cfg.models = Vec::new();
    cfg
}

fn feed(f: &mut SeriesForecaster, ys: &[f64]) -> Vec<Step> {
    ys.iter().map(|&y| f.observe(Obs::value(y)).unwrap()).collect()
}

/// Period 2: naive's one-step errors alternate 10, 9; seasonal naive's are all 1.
fn alternating(within: f64) -> SeriesForecaster {
    let mut cfg = baselines(1, 2);
    cfg.error_window = 3;
    cfg.min_errors = 2;
    cfg.selection = Selection::InverseError { power: 1.0, within };
    let mut f = SeriesForecaster::new(cfg).unwrap();
    feed(&mut f, &[0.0, 10.0, 1.0, 11.0, 2.0, 12.0, 3.0, 13.0]);
    f
}

#[test]
fn inverse_error_weights_on_hand_computed_errors() {
    let f = alternating(100.0);
    // Last 3 errors: naive 10, 9, 10 (mean 29/3); seasonal naive 1, 1, 1 (mean 1).
    // Weights ∝ 1/score: seasonal naive 1 / (1 + 3/29) = 29/32, naive 3/32.
    let issued = f.issued();
    let w = issued.used[0].weights;
    assert!(
        (w[ModelKind::SeasonalNaive as usize] - 29.0 / 32.0).abs() < 1e-12,
        "{w:?}"
    );
    assert!((w[ModelKind::Naive as usize] - 3.0 / 32.0).abs() < 1e-12);
    // Forecasts: seasonal naive 3 (y7), naive 13 (y8).
    assert!((issued.points[0].mean - (29.0 * 3.0 + 3.0 * 13.0) / 32.0).abs() < 1e-12);
    assert_eq!(issued.used[0].to_string(), "naive 0.09 + seasonal_naive 0.91");

    // The same errors with `within` 2: naive is too far behind the best.
    let f = alternating(2.0);
    assert_eq!(f.issued().used[0].to_string(), "seasonal_naive");
    assert_eq!(f.issued().points[0].mean, 3.0);
}

#[test]
fn selection_weights_rules() {
    let scores = [(0, 2.0), (2, 1.0), (4, 4.0)];
    let weights = |selection, scores: &[(usize, f64)]| {
        let mut w = [0.0; 5];
        selection_weights(selection, scores, &mut w);
        w
    };
    assert_eq!(weights(Selection::Best, &scores), [0.0, 0.0, 1.0, 0.0, 0.0]);
    let w = weights(
        Selection::InverseError {
            power: 2.0,
            within: 2.0,
        },
        &scores,
    );
    // (1/2)² and 1 → 0.2 and 0.8; the third is beyond 2 × best.
    assert!((w[0] - 0.2).abs() < 1e-12 && (w[2] - 0.8).abs() < 1e-12);
    assert_eq!((w[1], w[3], w[4]), (0.0, 0.0, 0.0));
    let zero = weights(
        Selection::InverseError {
            power: 1.0,
            within: 9.0,
        },
        &[(0, 0.0), (1, 0.0), (3, 1.0)],
    );
    assert_eq!(zero, [0.5, 0.5, 0.0, 0.0, 0.0]);
}

#[test]
fn realized_errors_name_origin_and_horizon() {
    let mut f = SeriesForecaster::new(baselines(3, 2)).unwrap();
    let steps = feed(&mut f, &[1.0, 2.0, 4.0, 8.0]);
    assert!(steps[0].errors.is_empty());
    // Sample 4 (value 8) closes naive forecasts issued after samples 1, 2, 3 (h = 3, 2, 1).
    let naive: Vec<(u64, usize, f64)> = steps[3]
        .errors
        .iter()
        .filter(|e| e.member == Member::Model(ModelKind::Naive))
        .map(|e| (e.origin, e.horizon, e.error()))
        .collect();
    assert_eq!(naive, vec![(1, 3, 7.0), (2, 2, 6.0), (3, 1, 4.0)]);
    // The ensemble's errors are reported too.
    assert!(steps[3]
        .errors
        .iter()
        .any(|e| e.member == Member::Ensemble && e.horizon == 1));
    // An imputed sample closes forecasts without errors.
    let step = f
        .observe(Obs {
            imputed: true,
            ..Obs::value(9.0)
        })
        .unwrap();
    assert!(step.errors.is_empty());
}

#[test]
fn short_series_fall_back_to_a_named_baseline() {
    let mut cfg = ForecastConfig::new(3, vec![24], 500, 24);
    cfg.models = vec![ModelKind::Mstl];
    let mut f = SeriesForecaster::new(cfg).unwrap();
    feed(&mut f, &[5.0; 10]);
    assert_eq!(f.issued().used[0].to_string(), "naive (too short: 10 < 48)");
    feed(&mut f, &[5.0; 20]);
    // Naive has a track record by now; the label still says why `ets` is not used.
    assert_eq!(f.issued().used[0].to_string(), "naive (too short: 30 < 48)");
    let steps = feed(&mut f, &[5.0; 18]);
    // At 48 samples the model is fitted (first time it can be) and warms up.
    assert!(steps[17].refits.iter().any(|(k, r)| *k == ModelKind::Mstl && r.is_ok()));
    assert_eq!(
        f.issued().used[0].to_string(),
        "naive 0.50 + seasonal_naive 0.50 (warming up: 0 < 12 errors)"
    );
    feed(&mut f, &[5.0; 12]);
    // `mstl` is eligible now: any label, but no fallback reason.
    assert_eq!(f.issued().used[0].fallback, None);
}

#[test]
fn bad_samples_are_errors_and_change_nothing() {
    let mut cfg = baselines(2, 2);
    cfg.exog = 1;
    let mut f = SeriesForecaster::new(cfg).unwrap();
    f.observe(Obs {
        x: &[1.0],
        ..Obs::value(1.0)
    })
    .unwrap();
    let before = f.clone();
    assert!(matches!(
        f.observe(Obs { x: &[1.0], ..Obs::value(f64::NAN) }),
        Err(ObserveError::NonFinite(v)) if v.is_nan()
    ));
    assert!(matches!(
        f.observe(Obs::value(2.0)),
        Err(ObserveError::Regressors { got: 0, expected: 1 })
    ));
    assert!(matches!(
        f.observe(Obs {
            x: &[f64::INFINITY],
            ..Obs::value(2.0)
        }),
        Err(ObserveError::NonFiniteRegressor { index: 0, .. })
    ));
    // (Debug, not ==: the scale is NaN before a refit.)
    assert_eq!(format!("{f:?}"), format!("{before:?}"));
}

#[test]
fn config_validation_names_the_field() {
    let mut cfg = ForecastConfig::new(0, vec![24], 100, 10);
    assert_eq!(cfg.validate().unwrap_err().field, "horizon");
    cfg.horizon = 3;
    cfg.periods = vec![1];
    assert_eq!(cfg.validate().unwrap_err().field, "periods");
    cfg.periods = vec![];
    cfg.min_errors = cfg.error_window + 1;
    let e = cfg.validate().unwrap_err();
    assert_eq!(
        e.to_string(),
        "`min_errors` must be between 1 and error_window (got 97)"
    );
}

#[test]
fn refit_schedule_phases_and_searches() {
    // Refits every 10 samples over a window of 30, a search every third refit.
    let mut cfg = ForecastConfig::new(1, vec![], 30, 10);
    cfg.search_every = 3;
    let at = |cfg: &ForecastConfig, phase: u64| -> Vec<(u64, Refit)> {
        (1..=100)
            .filter_map(|n| SeriesForecaster::schedule(cfg, phase, n).map(|r| (n, r)))
            .collect()
    };
    use Refit::{Keep as K, Search as S};
    // Phase 0: 1, 2, 4, 8 (below the interval), then every 10; all search while n ≤ 30, then
    // refits 3, 6, 9 (n = 30, 60, 90) do.
    assert_eq!(
        at(&cfg, 0),
        vec![
            (1, S),
            (2, S),
            (4, S),
            (8, S),
            (10, S),
            (20, S),
            (30, S),
            (40, K),
            (50, K),
            (60, S),
            (70, K),
            (80, K),
            (90, S),
            (100, K)
        ]
    );
    // Phase 14: shifted by 4 samples (14 mod 10), and by one refit (⌊14 / 10⌋) in the search turn.
    let shifted: Vec<(u64, Refit)> = at(&cfg, 14).into_iter().filter(|(n, _)| *n > 30).collect();
    assert_eq!(
        shifted,
        vec![(36, K), (46, S), (56, K), (66, K), (76, S), (86, K), (96, K)]
    );
    // Over many phases, a third of the refits after the window filled search, at any time.
    let searches = (0..300u64)
        .filter(|&p| (41..=50).any(|n| SeriesForecaster::schedule(&cfg, p, n) == Some(S)))
        .count();
    assert_eq!(searches, 100);
    // `search_every = 1`: every refit searches.
    cfg.search_every = 1;
    assert!(at(&cfg, 7).iter().all(|(_, r)| *r == S));
    cfg.search_every = 0;
    assert_eq!(cfg.validate().unwrap_err().field, "search_every");
}

/// A mix's name key stands for its text: where it has one, each weight's hundredths are what
/// `{:.2}` prints and its fallback is the name's, so two mixes with one key read the same, and
/// the key writes that name; near-ties have none.
#[test]
fn a_name_key_is_what_the_name_prints() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    // Ties and values next to them, where `{:.2}` and a rounded product could disagree.
    let awkward: [f64; 11] = [0.005, 0.015, 0.125, 0.135, 0.625, 0.995, 1.0, 0.0, 0.5, 0.285, 1e-9];
    let mut keyed = 0;
    for i in 0..200_000 {
        let mut weights = [0.0; 5];
        for w in &mut weights {
            *w = match rng.random_range(0..4) {
                0 => 0.0,
                1 => awkward[rng.random_range(0..awkward.len())],
                2 => {
                    let a = awkward[rng.random_range(0..awkward.len())];
                    f64::from_bits(a.to_bits().wrapping_add(rng.random_range(0..5)).wrapping_sub(2))
                }
                _ => rng.random::<f64>(),
            };
        }
        let fallback = match i % 50 {
            0 => Some(Fallback::AwaitingRefit),
            1 => Some(Fallback::TooShort { have: i, need: 48 }),
            _ => None,
        };
        let used = Used { weights, fallback };
        let Some(key) = used.name_key() else {
            assert!(
                weights
                    .iter()
                    .any(|w| *w > 0.0 && ((w * 100.0).fract() - 0.5).abs() < 1e-6 || *w > 1.0),
                "{weights:?} has a key"
            );
            continue;
        };
        keyed += 1;
        assert_eq!(key.fallback, fallback);
        let mut name = String::new();
        key.write_name(&mut name);
        assert_eq!(name, used.to_string());
        for (k, w) in key.hundredths.iter().zip(weights) {
            if w > 0.0 {
                assert_eq!(format!("{w:.2}"), format!("{}.{:02}", k / 100, k % 100), "{w:e}");
            } else {
                assert_eq!(*k, u8::MAX);
            }
        }
    }
    // These mixes are mostly ties and their neighbours, so most have no key.
    assert!(keyed > 20_000, "{keyed}");
    // Weights as an ensemble makes them: keyed unless a rounding tie is within 10⁻⁶.
    let plain = (0..10_000)
        .filter(|_| {
            let raw: [f64; 5] = std::array::from_fn(|_| rng.random::<f64>());
            let sum: f64 = raw.iter().sum();
            let used = Used {
                weights: raw.map(|w| w / sum),
                fallback: None,
            };
            used.name_key().is_some()
        })
        .count();
    assert!(plain >= 9_990, "{plain}");
}
