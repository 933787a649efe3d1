//! Rate-limit keys of network sources (the maker's per-source reply limit, the taker's
//! per-source verification limit), one rule for the socket path and the Python layer.
//!
//! - An IPv4 address, and an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack
//!   `[::]` socket reports for IPv4 peers), is keyed by its 32 bits, tagged
//!   `0xff00_0000 << 32`: one key per IPv4 host.
//! - Any other IPv6 address is keyed by its /64 prefix (one key per site: whoever holds a /64
//!   has 2^64 addresses to spoof from). `::1`, `::` and the deprecated IPv4-compatible
//!   `::a.b.c.d` all sit in `::/64` and share its key; NAT64 (`64:ff9b::/96`) peers share the
//!   translator's /64, like peers behind one NAT.
//! - The two key spaces never meet: an IPv4 key's top octet is `0xff`, the multicast prefix
//!   `ff00::/8`, which is never a source address (RFC 4291 §2.7; Linux drops such packets).
//!   An IPv6 source inside `ff00::/8` all the same gets [`UNKNOWN`], as does an address of
//!   another family or one that does not parse.
#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The tag of IPv4 keys (the upper 32 bits).
const V4_TAG: u64 = 0xff00_0000 << 32;

/// The shared key of sources without a usable address.
pub const UNKNOWN: u64 = u64::MAX;

/// The key of an IPv4 source.
#[must_use]
pub fn v4(addr: Ipv4Addr) -> u64 {
    V4_TAG | u64::from(u32::from(addr))
}

/// The key of an IPv6 source (IPv4-mapped addresses are keyed as IPv4).
#[must_use]
pub fn v6(addr: Ipv6Addr) -> u64 {
    if let Some(a) = addr.to_ipv4_mapped() {
        return v4(a);
    }
    let o = addr.octets();
    if o[0] == 0xff {
        return UNKNOWN;
    }
    u64::from_be_bytes([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
}

/// The key of any source address.
#[must_use]
pub fn of(addr: IpAddr) -> u64 {
    match addr {
        IpAddr::V4(a) => v4(a),
        IpAddr::V6(a) => v6(a),
    }
}

/// The key of an address given as its 4 (IPv4) or 16 (IPv6) raw octets; [`UNKNOWN`] for any
/// other length.
#[must_use]
pub fn of_octets(octets: &[u8]) -> u64 {
    if let Ok(a) = <[u8; 4]>::try_from(octets) {
        v4(Ipv4Addr::from(a))
    } else if let Ok(a) = <[u8; 16]>::try_from(octets) {
        v6(Ipv6Addr::from(a))
    } else {
        UNKNOWN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mapped_v4_is_keyed_as_v4_and_apart_from_v6() {
        let a: Ipv4Addr = "192.0.2.7".parse().unwrap();
        assert_eq!(v6(a.to_ipv6_mapped()), v4(a));
        let b: Ipv4Addr = "198.51.100.9".parse().unwrap();
        assert_ne!(v6(b.to_ipv6_mapped()), v6(a.to_ipv6_mapped()));
        assert_ne!(v6(Ipv6Addr::LOCALHOST), v6(a.to_ipv6_mapped()));
        assert_ne!(v4(Ipv4Addr::UNSPECIFIED), v6(Ipv6Addr::UNSPECIFIED));
        assert_eq!(of_octets(&[1, 2, 3]), UNKNOWN);
        assert_eq!(v6("ff02::1".parse().unwrap()), UNKNOWN);
    }

    proptest! {
        #[test]
        fn v4_and_v6_never_share_a_key(a in any::<u32>(), b in any::<u128>()) {
            let k6 = v6(Ipv6Addr::from(b));
            let mapped = Ipv6Addr::from(b).to_ipv4_mapped().is_some();
            prop_assert!(mapped || k6 != v4(Ipv4Addr::from(a)));
            // different IPv4 hosts never share a key, mapped or not
            let other = a.wrapping_add(1);
            prop_assert_ne!(v4(Ipv4Addr::from(a)), v6(Ipv4Addr::from(other).to_ipv6_mapped()));
        }

        #[test]
        fn v6_keys_are_the_64_prefix(b in any::<u128>()) {
            let a = Ipv6Addr::from(b);
            prop_assume!(a.to_ipv4_mapped().is_none() && a.octets()[0] != 0xff);
            prop_assert_eq!(v6(a), (b >> 64) as u64);
        }
    }
}
