//! Accuracy on synthetic series (fixed seeds): the ensemble against the noise σ and the
//! baselines, through the rolling-origin driver. Every shape is run with the same settings, as a
//! spec would give them for all series of a metric: hourly steps, periods of a day and a week,
//! a 4-week training window refitted daily, 12 steps ahead, evaluated over the 2 weeks after the
//! first window. Run with `--nocapture` to see the figures.

use super::rolling::{rolling_origin, EvalSeries, EvalSettings, Evaluation};
use super::synthetic::{self, Synthetic, DAY, WEEK};
use crate::model::forecast::{ForecastConfig, Member, ModelKind};

const HORIZON: usize = 12;
const WINDOW: usize = 4 * WEEK;
const EVAL: usize = 2 * WEEK;

fn settings() -> EvalSettings {
    let forecast = ForecastConfig::new(HORIZON, vec![DAY, WEEK], WINDOW, DAY);
    EvalSettings {
        forecast,
        start: WINDOW,
        known_future_x: false,
    }
}

struct Figures {
    rmse1: f64,
    ensemble: f64,
    naive: f64,
    snaive: f64,
    coverage80: f64,
    coverage95: f64,
}

fn measure(s: &Synthetic, settings: &EvalSettings) -> (Evaluation, Figures) {
    let ev = rolling_origin(&[EvalSeries::values(s.name, &s.y)], settings).unwrap();
    let mase = |m: Member| ev.mean_over_horizons(s.name, m, HORIZON, |r| r.mase);
    let ens = Member::Ensemble;
    let f = Figures {
        rmse1: ev.rows(s.name, ens).find(|r| r.horizon == 1).unwrap().rmse,
        ensemble: mase(ens),
        naive: mase(Member::Model(ModelKind::Naive)),
        snaive: mase(Member::Model(ModelKind::SeasonalNaive)),
        coverage80: ev.mean_over_horizons(s.name, ens, HORIZON, |r| r.coverage80),
        coverage95: ev.mean_over_horizons(s.name, ens, HORIZON, |r| r.coverage95),
    };
    eprintln!(
        "{:>15}: RMSE(1) {:.3} = {:.3} σ = {:.3} σ_innovation; mean MASE(1..12) ensemble {:.3}, naive {:.3}, \
         seasonal naive {:.3} (ratio {:.3}); coverage 80% {:.3}, 95% {:.3}",
        s.name,
        f.rmse1,
        f.rmse1 / s.sigma,
        f.rmse1 / s.innovation_sigma,
        f.ensemble,
        f.naive,
        f.snaive,
        f.ensemble / f.snaive,
        f.coverage80,
        f.coverage95
    );
    for m in [ModelKind::Ets, ModelKind::Mstl, ModelKind::Ar] {
        eprintln!("{:>15}  {:>6}: mean MASE {:.3}", "", m.name(), mase(Member::Model(m)));
    }
    (ev, f)
}

const N: usize = WINDOW + EVAL + HORIZON - 1;

#[test]
fn seasonal_shapes_beat_the_noise_and_seasonal_naive() {
    for s in [synthetic::daily_weekly(1, N), synthetic::business_hours(2, N)] {
        let (_, f) = measure(&s, &settings());
        assert!(
            f.rmse1 <= 1.1 * s.sigma,
            "{}: one-step RMSE {} > 1.1 σ = {}",
            s.name,
            f.rmse1,
            1.1 * s.sigma
        );
        assert!(
            f.ensemble <= 0.9 * f.snaive,
            "{}: MASE {} > 0.9 × seasonal naive {}",
            s.name,
            f.ensemble,
            f.snaive
        );
        assert!(
            f.ensemble <= f.naive,
            "{}: MASE {} > naive {}",
            s.name,
            f.ensemble,
            f.naive
        );
        assert!(
            f.coverage80 > 0.6 && f.coverage95 > 0.8,
            "{}: coverage {} {}",
            s.name,
            f.coverage80,
            f.coverage95
        );
    }
}

#[test]
fn other_shapes_are_never_much_worse_than_naive() {
    for s in [
        synthetic::random_walk(3, N),
        synthetic::level_shifts(4, N),
        synthetic::spikes(5, N),
        synthetic::no_season(6, N),
    ] {
        let (_, f) = measure(&s, &settings());
        assert!(
            f.ensemble <= 1.1 * f.naive,
            "{}: MASE {} > 1.1 × naive {}",
            s.name,
            f.ensemble,
            f.naive
        );
    }
}

#[test]
fn detected_periods_do_as_well_as_given_ones() {
    let s = synthetic::daily_weekly(7, N);
    let mut settings = settings();
    settings.forecast.periods = Vec::new();
    let (_, f) = measure(&s, &settings);
    assert!(
        f.ensemble <= 0.9 * f.snaive && f.rmse1 <= 1.1 * s.sigma,
        "detected periods: {} vs {}",
        f.ensemble,
        f.snaive
    );
}

#[test]
fn short_series_use_baselines_and_say_why() {
    let s = synthetic::daily_weekly(8, 40);
    let mut settings = settings();
    settings.start = 30;
    let ev = rolling_origin(&[EvalSeries::values(s.name, &s.y)], &settings).unwrap();
    // `mstl` needs two cycles of its periods: it does not forecast. `ets` starts as plain
    // AutoETS at 8 samples and considers the season once it has two cycles.
    assert!(
        ev.errors.iter().all(|e| e.member != Member::Model(ModelKind::Mstl)),
        "mstl forecast on 40 samples"
    );
    let ets = ev.errors.iter().filter(|e| e.member == Member::Model(ModelKind::Ets));
    assert_eq!(
        ets.map(|e| e.origin).min(),
        Some(settings.start),
        "ets scored from the start"
    );
    // `ar` starts with its non-seasonal lags once it has 33 samples (3 lags, 30 rows).
    let ar: Vec<usize> = ev
        .errors
        .iter()
        .filter(|e| e.member == Member::Model(ModelKind::Ar))
        .map(|e| e.origin)
        .collect();
    assert_eq!(ar.iter().min(), Some(&33), "{ar:?}");
    assert!(ev.rows(s.name, Member::Ensemble).all(|r| r.mase.is_finite()));
    let mut forecast = settings.forecast.clone();
    forecast.models = vec![ModelKind::Mstl];
    let mut f = crate::model::forecast::SeriesForecaster::new(forecast).unwrap();
    for &y in &s.y {
        f.observe(crate::model::forecast::Obs::value(y)).unwrap();
    }
    assert_eq!(
        f.issued().used[0].to_string().split(" (").nth(1),
        Some("too short: 40 < 336)")
    );
}
