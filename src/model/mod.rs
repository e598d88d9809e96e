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

/// `x` rounded half away from zero, as an `i128` (saturating, as `as` does). Values below 2^63
/// (all but absurd ones) convert through `i64`, a machine instruction, with the same result as
/// the direct conversion, a library call. The exact fixed-point sums of aggregates and of
/// forecast errors round with it.
pub(crate) fn round_to_i128(x: f64) -> i128 {
    let rounded = x.round();
    if rounded.abs() < 9.0e18 {
        rounded as i64 as i128
    } else {
        rounded as i128
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
        for x in [0.5, -0.5, 1.5, 2.5, f64::MAX, f64::MIN, f64::INFINITY, f64::NAN] {
            assert_eq!(round_to_i128(x), x.round() as i128, "{x}");
        }
    }
}
