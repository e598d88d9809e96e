//! The `uploads` scenario's geo ranges: `R` non-overlapping CIDR blocks, computed one at a time
//! from the seed (no table is kept), so any `R` costs no memory.
//!
//! A quarter of the ranges (at least one) are IPv6, the rest IPv4. The IPv4 space
//! `1.0.0.0`–`223.255.255.255` is cut into equal slots, one per IPv4 range, and so is
//! `2000::/4` for IPv6; each range is one aligned block inside its slot (a `/16` to `/24`, or a
//! `/32` to `/48`, smaller when slots are small), at a random aligned offset, and never more than
//! half the slot. Ranges therefore come out sorted by address and never overlap, and every slot
//! has room outside its block: `Geo::outside` draws addresses there, which fall in no range.
//! Each range is in one of 42 cities of 25 countries ([`super::vocab`]), with its coordinates moved by up to ±0.05°.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::vocab::CITIES;
use crate::generate::schema::mix;

const V4_LO: u128 = 1 << 24;
const V4_HI: u128 = 224 << 24;
const V6_LO: u128 = 0x2000 << 112;
const V6_HI: u128 = 0x3000 << 112;

/// One range: the block `[start, start + 2^host_bits)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Range {
    pub start: u128,
    pub host_bits: u32,
    pub v6: bool,
}

impl Range {
    pub(crate) fn size(&self) -> u128 {
        1 << self.host_bits
    }

    /// The prefix length.
    pub(crate) fn prefix(&self) -> u32 {
        if self.v6 {
            128 - self.host_bits
        } else {
            32 - self.host_bits
        }
    }

    /// Writes the range as CIDR text (`10.1.0.0/16`, `2001:db8:12::/48`).
    pub(crate) fn write_cidr(&self, w: &mut impl fmt::Write) -> fmt::Result {
        write_ip(w, self.start, self.v6)?;
        write!(w, "/{}", self.prefix())
    }
}

/// Writes an address in its usual text form.
pub(crate) fn write_ip(w: &mut impl fmt::Write, addr: u128, v6: bool) -> fmt::Result {
    if v6 {
        write!(w, "{}", Ipv6Addr::from(addr))
    } else {
        write!(w, "{}", Ipv4Addr::from(addr as u32))
    }
}

/// The layout of the ranges for one seed and count.
#[derive(Clone, Debug)]
pub(crate) struct Geo {
    salt: u64,
    pub v4: usize,
    pub v6: usize,
    city_cdf: Vec<u64>,
}

impl Geo {
    /// `ranges` ranges (at least 2) laid out from `seed`.
    pub(crate) fn new(seed: u64, ranges: usize) -> Geo {
        let v6 = (ranges / 4).max(1);
        let mut acc = 0;
        let city_cdf = CITIES
            .iter()
            .map(|c| {
                acc += u64::from(c.4);
                acc
            })
            .collect();
        Geo {
            salt: mix(seed ^ 0x6765_6f72_616e_6765),
            v4: ranges - v6,
            v6,
            city_cdf,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.v4 + self.v6
    }

    /// A hash of range `i` and `k`, uniform over `u64`.
    fn hash(&self, i: usize, k: u64) -> u64 {
        mix(self.salt ^ mix(((i as u64) << 4) | k))
    }

    /// Range `i`'s slot `[lo, hi)` and family.
    fn slot(&self, i: usize) -> (u128, u128, bool) {
        let (lo, hi, n, j, v6) = match i < self.v4 {
            true => (V4_LO, V4_HI, self.v4, i, false),
            false => (V6_LO, V6_HI, self.v6, i - self.v4, true),
        };
        let width = (hi - lo) / n as u128;
        (lo + j as u128 * width, lo + (j as u128 + 1) * width, v6)
    }

    /// Range `i` (IPv4 for `i < v4`, then IPv6), in address order.
    pub(crate) fn range(&self, i: usize) -> Range {
        let (lo, hi, v6) = self.slot(i);
        // The largest block that is at most half the slot.
        let max_bits = 127 - ((hi - lo) / 2).leading_zeros();
        let (small, large) = if v6 { (80, 96) } else { (8, 16) };
        let large = max_bits.min(large);
        let small = small.min(large);
        let host_bits = small + (self.hash(i, 0) % u64::from(large - small + 1)) as u32;
        let size = 1u128 << host_bits;
        let first = lo.div_ceil(size) * size;
        let positions = (hi - first - size) / size + 1;
        let start = first + (u128::from(self.hash(i, 1)) % positions) * size;
        Range { start, host_bits, v6 }
    }

    /// Range `i`'s (country, city, latitude, longitude).
    pub(crate) fn place(&self, i: usize) -> (&'static str, &'static str, f64, f64) {
        let total = self.city_cdf[self.city_cdf.len() - 1];
        let x = self.hash(i, 2) % total;
        let c = &CITIES[self.city_cdf.partition_point(|&c| c <= x)];
        let jitter = |k| (self.hash(i, k) % 1001) as f64 / 10_000.0 - 0.05;
        let round4 = |x: f64| (x * 10_000.0).round() / 10_000.0 + 0.0;
        (c.0, c.1, round4(c.2 + jitter(3)), round4(c.3 + jitter(4)))
    }

    /// The address at `r` (a uniform 128-bit number) inside range `i`.
    pub(crate) fn inside(&self, i: usize, r: u128) -> u128 {
        let range = self.range(i);
        range.start + r % range.size()
    }

    /// An address at `r` in range `i`'s slot but outside its block, hence outside every range.
    pub(crate) fn outside(&self, i: usize, r: u128) -> u128 {
        let (lo, hi, _) = self.slot(i);
        let range = self.range(i);
        if range.start > lo {
            lo + r % (range.start - lo)
        } else {
            let end = range.start + range.size();
            end + r % (hi - end)
        }
    }

    /// A user's home range of the family `v6`: most of the user's uploads come from it.
    pub(crate) fn home(&self, user: u32, v6: bool) -> usize {
        let h = mix(self.salt.rotate_left(29) ^ ((u64::from(user) << 1) | u64::from(v6)));
        match v6 {
            false => (h % self.v4 as u64) as usize,
            true => self.v4 + (h % self.v6 as u64) as usize,
        }
    }
}

/// The CIDR text of `range`.
#[cfg(test)]
pub(crate) fn cidr(range: &Range) -> String {
    let mut s = String::new();
    range.write_cidr(&mut s).expect("formatting into a String");
    s
}

/// Parses CIDR text into its address range `[start, end)` and family (IPv4 as `u32` values).
#[cfg(test)]
pub(crate) fn parse_cidr(text: &str) -> (u128, u128, bool) {
    let (addr, len) = text.split_once('/').expect("a prefix length");
    let len: u32 = len.parse().expect("a number");
    match addr.parse::<Ipv4Addr>() {
        Ok(a) => {
            let start = u128::from(u32::from(a));
            (start, start + (1u128 << (32 - len)), false)
        }
        Err(_) => {
            let start = u128::from(addr.parse::<Ipv6Addr>().expect("an address"));
            (start, start + (1u128 << (128 - len)), true)
        }
    }
}

/// Parses an address (IPv4 as a `u32` value).
#[cfg(test)]
pub(crate) fn parse_ip(text: &str) -> (u128, bool) {
    match text.parse::<Ipv4Addr>() {
        Ok(a) => (u128::from(u32::from(a)), false),
        Err(_) => (u128::from(text.parse::<Ipv6Addr>().expect("an address")), true),
    }
}
