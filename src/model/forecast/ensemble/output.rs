//! What a series forecaster takes and gives: samples, issued forecasts with the models behind
//! each horizon, realized errors, and the errors of bad samples.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::forecast::{FitError, ModelKind, Point};

/// One new sample.
#[derive(Debug, Clone, Copy)]
pub struct Obs<'a> {
    pub y: f64,
    /// Its regressors (`exog` of them).
    pub x: &'a [f64],
    /// Made up by the gap rule: no error is counted against it.
    pub imputed: bool,
    /// Regressors of the target samples, row-major (optional; the last ones are carried).
    pub future_x: &'a [f64],
}

impl Obs<'static> {
    pub fn value(y: f64) -> Obs<'static> {
        Obs {
            y,
            x: &[],
            imputed: false,
            future_x: &[],
        }
    }
}

/// A sample that cannot enter a series. The dataflow sends it to dead letters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ObserveError {
    #[error("non-finite value {0}")]
    NonFinite(f64),
    #[error("{got} regressors, expected {expected}")]
    Regressors { got: usize, expected: usize },
    #[error("non-finite regressor {index}: {value}")]
    NonFiniteRegressor { index: usize, value: f64 },
}

impl ObserveError {
    pub fn reason(&self) -> &'static str {
        match self {
            ObserveError::NonFinite(_) | ObserveError::NonFiniteRegressor { .. } => "non_finite",
            ObserveError::Regressors { .. } => "regressors",
        }
    }
}

/// Who made a forecast: one model or the ensemble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Member {
    Model(ModelKind),
    Ensemble,
}

impl Member {
    pub fn name(self) -> &'static str {
        match self {
            Member::Model(k) => k.name(),
            Member::Ensemble => "ensemble",
        }
    }
}

/// A forecast whose target arrived.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RealizedError {
    pub member: Member,
    pub horizon: usize,
    /// Samples seen when the forecast was issued (its target is sample `origin + horizon`).
    pub origin: u64,
    pub forecast: Point,
    pub actual: f64,
}

impl RealizedError {
    /// `actual − forecast`.
    pub fn error(&self) -> f64 {
        self.actual - self.forecast.mean
    }
}

/// Why the ensemble fell back to a baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fallback {
    /// The preferred model needs more samples in the window.
    TooShort { have: usize, need: usize },
    /// Fitted, but not enough realized errors yet at this horizon.
    WarmingUp { have: usize, need: usize },
    /// No seasonal period is known (the model needs one).
    NoPeriod,
    /// The last refit failed (the refit report says why).
    FitFailed,
    /// Enough samples, waiting for the next refit.
    AwaitingRefit,
}

impl fmt::Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fallback::TooShort { have, need } => write!(f, "too short: {have} < {need}"),
            Fallback::WarmingUp { have, need } => write!(f, "warming up: {have} < {need} errors"),
            Fallback::NoPeriod => f.write_str("no seasonal period"),
            Fallback::FitFailed => f.write_str("fit failed"),
            Fallback::AwaitingRefit => f.write_str("awaiting refit"),
        }
    }
}

/// The models behind one horizon's forecast: a weight per [`ModelKind`] (indexed in
/// [`ModelKind::ALL`] order), and the fallback reason when a baseline stands in.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Used {
    pub weights: [f64; 5],
    pub fallback: Option<Fallback>,
}

impl Used {
    /// A key that two `Used` share only when they read the same ([`Display`](fmt::Display)):
    /// per model, 255 when it has no weight, else its weight in hundredths as `{:.2}` rounds it,
    /// and the fallback. `None` when that cannot be told without formatting: a weight outside
    /// `[0, 1]` or within 10⁻⁶ hundredths of a rounding tie. Rows name their mix of models on
    /// every sample; with this, the name is formatted only when the key changes.
    pub fn name_key(&self) -> Option<NameKey> {
        let mut hundredths = [u8::MAX; 5];
        for (k, w) in hundredths.iter_mut().zip(self.weights) {
            if w > 0.0 {
                // `w * 100` is within an ulp (about 10⁻¹⁴) of the exact product, so away from a
                // tie it rounds as `{:.2}` rounds the exact decimal value of `w`.
                let scaled = w * 100.0;
                let fraction = scaled - scaled.floor();
                if scaled > 100.0 || (fraction - 0.5).abs() < 1e-6 {
                    return None;
                }
                *k = scaled.round() as u8;
            }
        }
        Some(NameKey {
            hundredths,
            fallback: self.fallback,
        })
    }
}

/// What a [`Used`]'s name says, short of formatting it (see [`Used::name_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameKey {
    /// Per model in [`ModelKind::ALL`] order: its weight in hundredths, 255 when it has none.
    pub hundredths: [u8; 5],
    pub fallback: Option<Fallback>,
}

impl NameKey {
    /// Writes the name it stands for, as [`Used`]'s `Display` writes it, without formatting the
    /// weights as floats: `ets`, `ets 0.62 + ar 0.38`, `seasonal_naive (too short: 10 < 48)`.
    pub fn write_name(&self, out: &mut String) {
        let members = || (ModelKind::ALL.into_iter().zip(self.hundredths)).filter(|(_, k)| *k != u8::MAX);
        if members().count() == 1 {
            let (kind, _) = members().next().expect("counted");
            out.push_str(kind.name());
        } else {
            for (i, (kind, k)) in members().enumerate() {
                if i > 0 {
                    out.push_str(" + ");
                }
                out.push_str(kind.name());
                out.push(' ');
                out.push(char::from(b'0' + k / 100));
                out.push('.');
                out.push(char::from(b'0' + k % 100 / 10));
                out.push(char::from(b'0' + k % 10));
            }
        }
        if let Some(reason) = &self.fallback {
            use fmt::Write as _;
            write!(out, " ({reason})").expect("writing to a string");
        }
    }
}

impl fmt::Display for Used {
    /// `ets`, `ets 0.62 + ar 0.38`, or `seasonal_naive (too short: 10 < 48)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let members: Vec<(ModelKind, f64)> = ModelKind::ALL
            .into_iter()
            .zip(self.weights)
            .filter(|(_, w)| *w > 0.0)
            .collect();
        if let [(kind, _)] = members[..] {
            f.write_str(kind.name())?;
        } else {
            for (i, (kind, w)) in members.iter().enumerate() {
                let sep = if i > 0 { " + " } else { "" };
                write!(f, "{sep}{kind} {w:.2}")?;
            }
        }
        if let Some(reason) = &self.fallback {
            write!(f, " ({reason})")?;
        }
        Ok(())
    }
}

/// The current forecast of a series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Issued {
    /// Samples seen; the forecast targets samples `origin + 1 ..= origin + horizon`.
    pub origin: u64,
    /// The ensemble, `h = 1..=horizon`.
    pub points: Vec<Point>,
    pub used: Vec<Used>,
    /// Each model's own forecast (`None` while it cannot forecast).
    pub models: Vec<(ModelKind, Option<Vec<Point>>)>,
}

/// What one sample produced besides the new forecast.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Step {
    pub errors: Vec<RealizedError>,
    /// The models refitted at this sample and how each went.
    pub refits: Vec<(ModelKind, Result<(), FitError>)>,
}
