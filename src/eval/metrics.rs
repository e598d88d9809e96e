//! Forecast accuracy metrics, as defined in Hyndman & Athanasopoulos, *Forecasting: Principles
//! and Practice* (3rd ed., §5.8 and §5.9) and the M4 competition. `e = actual − forecast`.
//!
//! | metric | definition |
//! |---|---|
//! | MAE | `mean(|e|)` |
//! | RMSE | `√mean(e²)` |
//! | MASE | `MAE / q`, `q = mean over t > m of |y(t) − y(t−m)|` on the training data (seasonal naive's in-sample error; `m = 1` without a season) |
//! | sMAPE | `100 · mean(2|e| / (|y| + |ŷ|))`, a term with `y = ŷ = 0` counting 0 (M4) |
//! | coverage | share of actuals inside `[lo, hi]` (bounds included) |
//! | width | `mean(hi − lo)` |
//! | GMRAE | geometric mean of `|e| / |e*|`, `e*` the benchmark's error for the same target; pairs with a zero error are left out (their log is infinite) |
//! | Pearson `r` | `cov(x, y) / (σx σy)` |
//! | Spearman `ρ` | Pearson's `r` of the ranks, tied values sharing their mean rank |
//!
//! Every function returns NaN on empty input (or a zero MASE scale), never panics.

/// Mean absolute error.
pub fn mae(errors: &[f64]) -> f64 {
    errors.iter().map(|e| e.abs()).sum::<f64>() / errors.len() as f64
}

/// Root mean squared error.
pub fn rmse(errors: &[f64]) -> f64 {
    (errors.iter().map(|e| e * e).sum::<f64>() / errors.len() as f64).sqrt()
}

/// The MASE denominator: seasonal naive's mean absolute in-sample error on `train` with
/// period `m` (use 1 for a non-seasonal series). NaN when `train` has no more than `m` values.
pub fn mase_scale(train: &[f64], m: usize) -> f64 {
    let m = m.max(1);
    if train.len() <= m {
        return f64::NAN;
    }
    (m..train.len()).map(|t| (train[t] - train[t - m]).abs()).sum::<f64>() / (train.len() - m) as f64
}

/// Mean absolute scaled error.
pub fn mase(errors: &[f64], scale: f64) -> f64 {
    if scale > 0.0 {
        mae(errors) / scale
    } else {
        f64::NAN
    }
}

/// Symmetric MAPE in percent (0 to 200).
pub fn smape(actual: &[f64], forecast: &[f64]) -> f64 {
    let terms = actual.iter().zip(forecast).map(|(y, f)| {
        let d = y.abs() + f.abs();
        if d == 0.0 {
            0.0
        } else {
            2.0 * (y - f).abs() / d
        }
    });
    100.0 * terms.sum::<f64>() / actual.len().min(forecast.len()) as f64
}

/// Share of `actual` within `[lo, hi]`.
pub fn coverage(actual: &[f64], lo: &[f64], hi: &[f64]) -> f64 {
    let n = actual.len().min(lo.len()).min(hi.len());
    let inside = (0..n).filter(|&i| lo[i] <= actual[i] && actual[i] <= hi[i]).count();
    inside as f64 / n as f64
}

/// Mean interval width.
pub fn mean_width(lo: &[f64], hi: &[f64]) -> f64 {
    let n = lo.len().min(hi.len());
    (0..n).map(|i| hi[i] - lo[i]).sum::<f64>() / n as f64
}

/// Geometric mean of the positive finite values (NaN when there is none).
pub fn geometric_mean(values: &[f64]) -> f64 {
    let (mut s, mut n) = (0.0, 0usize);
    for v in values.iter().filter(|v| v.is_finite() && **v > 0.0) {
        s += v.ln();
        n += 1;
    }
    if n == 0 {
        f64::NAN
    } else {
        (s / n as f64).exp()
    }
}

/// Geometric mean relative absolute error of `errors` against `benchmark` (same targets).
pub fn gmrae(errors: &[f64], benchmark: &[f64]) -> f64 {
    let ratios: Vec<f64> = errors
        .iter()
        .zip(benchmark)
        .filter(|(e, b)| **e != 0.0 && **b != 0.0)
        .map(|(e, b)| (e / b).abs())
        .collect();
    geometric_mean(&ratios)
}

/// Pearson's correlation of `x` and `y` (NaN when either is constant or empty).
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &y[..n]);
    let (mx, my) = (x.iter().sum::<f64>() / n as f64, y.iter().sum::<f64>() / n as f64);
    let cov: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
    cov / (vx * vy).sqrt()
}

/// The ranks of `x`, 1-based, tied values sharing their mean rank.
pub fn ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut out = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        order[i..=j].iter().for_each(|&k| out[k] = mean);
        i = j + 1;
    }
    out
}

/// Spearman's rank correlation of `x` and `y`.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * (1.0 + b.abs())
    }

    #[test]
    fn scale_dependent_errors() {
        let e = [2.0, -1.0, 0.0, -3.0];
        assert!(close(mae(&e), 1.5));
        assert!(close(rmse(&e), (14.0f64 / 4.0).sqrt()));
        assert!(mae(&[]).is_nan());
    }

    #[test]
    fn mase_scales_by_seasonal_naive_in_sample_error() {
        // Quarterly training data, m = 4: |y(t) − y(t−4)| = 2, 2, 4, 1 → q = 9/4.
        let train = [10.0, 20.0, 30.0, 40.0, 12.0, 18.0, 34.0, 41.0];
        assert!(close(mase_scale(&train, 4), 9.0 / 4.0));
        // Non-seasonal: |Δy| = 10, 10, 10, 28, 6, 16, 7 → q = 87/7.
        assert!(close(mase_scale(&train, 1), 87.0 / 7.0));
        assert!(close(mase(&[4.5, -4.5], 9.0 / 4.0), 2.0));
        assert!(mase_scale(&train[..4], 4).is_nan());
        assert!(mase(&[1.0], 0.0).is_nan());
    }

    #[test]
    fn smape_m4_definition() {
        // 2·10/210 and 2·10/190, in percent, averaged.
        let s = smape(&[100.0, 100.0], &[110.0, 90.0]);
        assert!(close(s, 50.0 * (20.0 / 210.0 + 20.0 / 190.0)));
        // 0/0 counts as 0; an opposite-sign forecast is the maximum, 200.
        assert!(close(smape(&[0.0, 1.0], &[0.0, -1.0]), 100.0));
    }

    #[test]
    fn interval_coverage_and_width() {
        let y = [1.0, 5.0, 3.0, 10.0];
        let lo = [0.0, 5.0, 4.0, 0.0];
        let hi = [2.0, 6.0, 6.0, 9.0];
        assert!(close(coverage(&y, &lo, &hi), 0.5));
        assert!(close(mean_width(&lo, &hi), (2.0 + 1.0 + 2.0 + 9.0) / 4.0));
    }

    #[test]
    fn geometric_means_of_relative_errors() {
        assert!(close(geometric_mean(&[1.0, 4.0, 16.0]), 4.0));
        assert!(close(geometric_mean(&[2.0, 0.0, f64::NAN, 8.0]), 4.0));
        assert!(geometric_mean(&[0.0]).is_nan());
        // |1/2|, |−3/3|, |4/1| → (0.5 · 1 · 4)^(1/3) = 2^(1/3); the zero pair is left out.
        assert!(close(
            gmrae(&[1.0, -3.0, 4.0, 0.0], &[2.0, 3.0, 1.0, 5.0]),
            2f64.powf(1.0 / 3.0)
        ));
    }

    #[test]
    fn rank_correlation_of_a_published_example() {
        // Wikipedia, "Spearman's rank correlation coefficient": IQ against hours of TV per
        // week, ρ = −29/165.
        let iq = [106.0, 100.0, 86.0, 101.0, 99.0, 103.0, 97.0, 113.0, 112.0, 110.0];
        let tv = [7.0, 27.0, 2.0, 50.0, 28.0, 29.0, 20.0, 12.0, 6.0, 17.0];
        assert!(close(spearman(&iq, &tv), -29.0 / 165.0));
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        assert!(close(
            pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 7.0]),
            0.993_399_267_798_783
        ));
        assert!(pearson(&[1.0, 1.0], &[2.0, 3.0]).is_nan());
    }
}
