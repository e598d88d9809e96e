//! IP addresses and CIDR ranges in one number line, and a table of non-overlapping ranges for
//! range joins (IP geolocation).
//!
//! IPv4 addresses are mapped into IPv6 space (`::ffff:a.b.c.d`), so one `u128` line holds both
//! families and an IPv4 address never falls in an IPv6 range that does not contain its mapped
//! form.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// An address on the `u128` line.
pub fn parse_ip(text: &str) -> Option<u128> {
    let addr: IpAddr = text.trim().parse().ok()?;
    Some(match addr {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    })
}

/// An inclusive range of addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpRange {
    pub first: u128,
    pub last: u128,
}

/// Why a CIDR does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("`{0}` is not a CIDR range such as `10.0.0.0/8` or `2001:db8::/32`")]
    Syntax(String),
    #[error("`{text}`: prefix length {len} is longer than {max}")]
    Prefix { text: String, len: u32, max: u32 },
}

/// Parses `a.b.c.d/n` or `x:y::/n` (a bare address is a one-address range). Host bits below
/// the prefix are ignored, as most geolocation tables expect.
pub fn parse_cidr(text: &str) -> Result<IpRange, CidrError> {
    let syntax = || CidrError::Syntax(text.to_string());
    let (addr, len) = match text.trim().split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u32>().map_err(|_| syntax())?)),
        None => (text.trim(), None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| syntax())?;
    let (base, max, offset) = match ip {
        IpAddr::V4(v4) => (u128::from(v4.to_ipv6_mapped()), 32, 96),
        IpAddr::V6(v6) => (u128::from(v6), 128, 0),
    };
    let len = len.unwrap_or(max);
    if len > max {
        return Err(CidrError::Prefix {
            text: text.to_string(),
            len,
            max,
        });
    }
    let host_bits = 128 - (len + offset);
    let mask = if host_bits == 128 { 0 } else { u128::MAX << host_bits };
    let first = base & mask;
    let last = first | !mask;
    Ok(IpRange { first, last })
}

/// Two rows name overlapping ranges.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("range `{new}` overlaps `{existing}`")]
pub struct Overlap {
    pub existing: String,
    pub new: String,
}

/// Non-overlapping ranges, each with a label (its CIDR text) and a value.
#[derive(Debug, Clone)]
pub struct RangeTable<V> {
    /// first → (last, label, value)
    ranges: BTreeMap<u128, (u128, String, V)>,
}

impl<V> Default for RangeTable<V> {
    fn default() -> Self {
        RangeTable {
            ranges: BTreeMap::new(),
        }
    }
}

impl<V> RangeTable<V> {
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Inserts a range, replacing the value of the same range; a range that overlaps a
    /// different one is refused.
    pub fn insert(&mut self, range: IpRange, label: &str, value: V) -> Result<(), Overlap> {
        if let Some((first, (last, existing, _))) = self.ranges.range(..=range.last).next_back() {
            let same = *first == range.first && *last == range.last;
            if !same && *last >= range.first {
                return Err(Overlap {
                    existing: existing.clone(),
                    new: label.to_string(),
                });
            }
        }
        self.ranges.insert(range.first, (range.last, label.to_string(), value));
        Ok(())
    }

    /// The range containing `ip`, with its label.
    pub fn get(&self, ip: u128) -> Option<(&str, &V)> {
        let (_, (last, label, value)) = self.ranges.range(..=ip).next_back()?;
        (ip <= *last).then_some((label.as_str(), value))
    }

    /// Every range's label and value, in address order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.ranges.values().map(|(_, label, value)| (label.as_str(), value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cidrs_cover_their_addresses() {
        let r = parse_cidr("10.1.0.0/16").unwrap();
        assert_eq!(r.first, parse_ip("10.1.0.0").unwrap());
        assert_eq!(r.last, parse_ip("10.1.255.255").unwrap());
        let r = parse_cidr("2001:db8::/32").unwrap();
        assert_eq!(r.first, parse_ip("2001:db8::").unwrap());
        assert_eq!(r.last, parse_ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff").unwrap());
        assert_eq!(
            parse_cidr("0.0.0.0/0").unwrap().last,
            parse_ip("255.255.255.255").unwrap()
        );
        assert_eq!(
            parse_cidr("::/0").unwrap(),
            IpRange {
                first: 0,
                last: u128::MAX
            }
        );
        let one = parse_cidr("192.168.1.7").unwrap();
        assert_eq!(one.first, one.last);
        // Host bits are ignored.
        assert_eq!(parse_cidr("10.1.2.3/16").unwrap(), parse_cidr("10.1.0.0/16").unwrap());
    }

    #[test]
    fn bad_cidrs_are_errors() {
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "300.0.0.0/8",
            "abc",
            "10.0.0.0/x",
        ] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_ip("not an ip"), None);
    }

    #[test]
    fn lookups_respect_range_edges() {
        let mut t = RangeTable::default();
        t.insert(parse_cidr("10.0.0.0/24").unwrap(), "10.0.0.0/24", 1).unwrap();
        t.insert(parse_cidr("10.0.1.0/24").unwrap(), "10.0.1.0/24", 2).unwrap();
        t.insert(parse_cidr("2001:db8::/48").unwrap(), "2001:db8::/48", 3)
            .unwrap();
        let at = |ip: &str| t.get(parse_ip(ip).unwrap()).map(|(_, v)| *v);
        assert_eq!(at("9.255.255.255"), None);
        assert_eq!(at("10.0.0.0"), Some(1));
        assert_eq!(at("10.0.0.255"), Some(1));
        assert_eq!(at("10.0.1.0"), Some(2));
        assert_eq!(at("10.0.1.255"), Some(2));
        assert_eq!(at("10.0.2.0"), None);
        assert_eq!(at("2001:db8::1"), Some(3));
        assert_eq!(at("2001:db8:0:ffff:ffff:ffff:ffff:ffff"), Some(3));
        assert_eq!(at("2001:db8:1::"), None);
    }

    #[test]
    fn overlapping_ranges_are_refused_and_same_range_replaces() {
        let mut t = RangeTable::default();
        t.insert(parse_cidr("10.0.0.0/16").unwrap(), "10.0.0.0/16", 1).unwrap();
        let err = t
            .insert(parse_cidr("10.0.5.0/24").unwrap(), "10.0.5.0/24", 2)
            .unwrap_err();
        assert_eq!(err.existing, "10.0.0.0/16");
        assert!(t.insert(parse_cidr("9.0.0.0/8").unwrap(), "9.0.0.0/8", 2).is_ok());
        assert!(t.insert(parse_cidr("0.0.0.0/0").unwrap(), "0.0.0.0/0", 2).is_err());
        t.insert(parse_cidr("10.0.0.0/16").unwrap(), "10.0.0.0/16", 7).unwrap();
        assert_eq!(t.get(parse_ip("10.0.3.3").unwrap()).map(|(_, v)| *v), Some(7));
    }

    proptest! {
        /// Lookups agree with a scan over the ranges that were accepted.
        #[test]
        fn lookup_equals_scan(ranges in prop::collection::vec((0u32..1000, 24u32..=32), 0..40), probes in prop::collection::vec(0u32..1000, 0..40)) {
            let mut t = RangeTable::default();
            let mut kept: Vec<(IpRange, usize)> = Vec::new();
            for (i, (base, len)) in ranges.into_iter().enumerate() {
                let text = format!("10.0.{}.{}/{}", base / 256, base % 256, len);
                let r = parse_cidr(&text).unwrap();
                let overlaps = kept.iter().any(|(k, _)| k.first <= r.last && r.first <= k.last && *k != r);
                match t.insert(r, &text, i) {
                    Ok(()) => {
                        prop_assert!(!overlaps);
                        kept.retain(|(k, _)| *k != r);
                        kept.push((r, i));
                    }
                    Err(_) => prop_assert!(overlaps),
                }
            }
            for p in probes {
                let ip = parse_ip(&format!("10.0.{}.{}", p / 256, p % 256)).unwrap();
                let scan = kept.iter().find(|(k, _)| k.first <= ip && ip <= k.last).map(|(_, v)| *v);
                prop_assert_eq!(t.get(ip).map(|(_, v)| *v), scan);
            }
        }
    }
}
