//! Pure model maths: no timely or differential imports. The dataflow calls these inside its
//! operators; each is unit- and property-tested alone.

pub mod aggregate;
pub mod forecast;
pub mod ip;
pub mod markov;
pub mod migration;
pub mod pipes;
pub mod placement;
pub mod queueing;
pub mod resonance;
pub mod routing;
pub mod session;
pub mod window;

/// `x` rounded half away from zero, as an `i128` (saturating, as `as` does): `x.round() as i128`.
/// Below 9·10^18 in magnitude (all but absurd values) it truncates through `i64` and rounds by
/// the remainder, which is exact: machine instructions, where `round` and the `i128` conversion
/// are library calls. The exact fixed-point sums of aggregates and of forecast errors round
/// with it.
pub(crate) fn round_to_i128(x: f64) -> i128 {
    if x.abs() < 9.0e18 {
        let t = x as i64;
        let rest = x - t as f64;
        i128::from(t + i64::from(rest >= 0.5) - i64::from(rest <= -0.5))
    } else {
        x.round() as i128
    }
}

#[cfg(test)]
mod tests {
    use super::round_to_i128;

    #[test]
    fn rounding_through_i64_equals_the_i128_conversion() {
        let mut v = 1e-12;
        while v < 1e40 {
            for x in [
                v,
                -v,
                v * 1.000_000_1,
                v + 0.5,
                -v - 0.5,
                9.0e18 - 1024.0,
                9.0e18,
                -9.0e18,
            ] {
                assert_eq!(round_to_i128(x), x.round() as i128, "{x}");
            }
            v *= 1.37;
        }
        let below_half = 0.5 - f64::EPSILON / 4.0;
        let edges = [
            0.5,
            1.5,
            2.5,
            below_half,
            4_503_599_627_370_495.5,
            2f64.powi(53) + 2.0,
            8.999e18,
            1e-300,
        ];
        let specials = [f64::MAX, f64::INFINITY, f64::NAN];
        for x in edges.into_iter().chain(specials).flat_map(|x| [x, -x]) {
            assert_eq!(round_to_i128(x), x.round() as i128, "{x}");
        }
        // Halves, and doubles of every exponent from random bits.
        let mut bits: u64 = 0x9e37_79b9_7f4a_7c15;
        for k in -5000..5000 {
            let half = f64::from(k) * 0.5;
            assert_eq!(round_to_i128(half), half.round() as i128, "{half}");
            bits = bits.wrapping_mul(0x5851_f42d_4c95_7f2d).wrapping_add(1);
            let x = f64::from_bits(bits);
            assert_eq!(round_to_i128(x), x.round() as i128, "{x}");
        }
    }
}
