use super::*;

fn baselines_only(horizon: usize, periods: Vec<usize>) -> ForecastConfig {
    let mut cfg = ForecastConfig::new(horizon, periods, 100, 1000);
    cfg.models = Vec::new();
    cfg
}

#[test]
fn naive_errors_by_hand() {
    // A line: naive's h-step error is h at every origin; in-sample naive error 1 → MASE = h.
    let y: Vec<f64> = (1..=8).map(f64::from).collect();
    let settings = EvalSettings {
        forecast: baselines_only(2, vec![]),
        start: 2,
        known_future_x: false,
    };
    let ev = rolling_origin(&[EvalSeries::values("line", &y)], &settings).unwrap();
    let naive = Member::Model(ModelKind::Naive);
    let rows: Vec<(usize, usize, f64)> = ev
        .errors
        .iter()
        .filter(|r| r.member == naive && r.origin <= 3)
        .map(|r| (r.origin, r.horizon, r.actual - r.forecast.mean))
        .collect();
    assert_eq!(rows, vec![(2, 1, 1.0), (2, 2, 2.0), (3, 1, 1.0), (3, 2, 2.0)]);
    assert_eq!(ev.scales, vec![("line".to_string(), 1.0)]);
    let by_h: Vec<(usize, usize, f64)> = ev.rows("line", naive).map(|r| (r.horizon, r.n, r.mase)).collect();
    // Origins 2..=7 for h = 1 (6 targets), 2..=6 for h = 2.
    assert_eq!(by_h, vec![(1, 6, 1.0), (2, 5, 2.0)]);
    assert_eq!(ev.mean_over_horizons("line", naive, 2, |r| r.mase), 1.5);
    assert!(ev.mean_over_horizons("line", naive, 3, |r| r.mase).is_nan());
}

#[test]
fn shapes_are_checked() {
    let y = [1.0; 10];
    let mut settings = EvalSettings {
        forecast: baselines_only(2, vec![]),
        start: 2,
        known_future_x: false,
    };
    settings.forecast.exog = 1;
    let e = rolling_origin(&[EvalSeries::values("s", &y)], &settings).unwrap_err();
    assert!(e.to_string().starts_with("series `s`: 0 regressor values"), "{e}");
    settings.forecast.exog = 0;
    let bad = [1.0, f64::NAN, 2.0];
    let e = rolling_origin(&[EvalSeries::values("s", &bad)], &settings).unwrap_err();
    assert_eq!(e.to_string(), "series `s`, sample 1: non-finite value NaN");
}

/// A seasonal series with a regressor, for the leakage test.
fn seasonal(n: usize) -> (Vec<f64>, Vec<f64>) {
    let x: Vec<f64> = (0..n).map(|t| ((t * 37) % 11) as f64 / 11.0).collect();
    let y = (0..n)
        .map(|t| {
            let day = (2.0 * std::f64::consts::PI * t as f64 / 24.0).sin();
            50.0 + 10.0 * day + 0.05 * t as f64 + 3.0 * x[t] + ((t * 7919) % 13) as f64 / 13.0
        })
        .collect();
    (y, x)
}

#[test]
fn no_forecast_sees_a_sample_at_or_after_its_origin() {
    let (y, x) = seasonal(320);
    let mut cfg = ForecastConfig::new(6, vec![24], 200, 24);
    cfg.exog = 1;
    cfg.min_errors = 4;
    for known_future_x in [false, true] {
        let settings = EvalSettings {
            forecast: cfg.clone(),
            start: 120,
            known_future_x,
        };
        let series = |y: &'_ [f64], x: &'_ [f64]| -> Evaluation {
            rolling_origin(
                &[EvalSeries {
                    name: "s",
                    y,
                    x,
                    imputed: &[],
                }],
                &settings,
            )
            .unwrap()
        };
        let base = series(&y, &x);
        for j in [130usize, 200, 290] {
            let mut y2 = y.clone();
            for (i, v) in y2.iter_mut().enumerate().skip(j) {
                *v += 25.0 + (i % 5) as f64;
            }
            // Regressors of samples at or after j change too, unless they are known future
            // values (then a forecast may see those up to its horizon).
            let mut x2 = x.clone();
            if !known_future_x {
                for v in x2.iter_mut().skip(j) {
                    *v = 1.0 - *v;
                }
            }
            let other = series(&y2, &x2);
            let (mut same, mut changed) = (0, 0);
            for (a, b) in base.errors.iter().zip(&other.errors) {
                assert_eq!((a.origin, a.horizon, a.member), (b.origin, b.horizon, b.member));
                if a.origin <= j {
                    assert_eq!(a.forecast, b.forecast, "origin {} ≤ {j}: {:?}", a.origin, a.member);
                    same += 1;
                } else if a.forecast != b.forecast {
                    changed += 1;
                }
            }
            assert!(same > 0);
            assert!(changed > 0, "perturbing from {j} changed no later forecast");
        }
    }
}
