//! Trusted LB prefixes (`--trust CIDR`) and their LPM-trie keys.

use anyhow::{Result, bail};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A network prefix, IPv4 or IPv6, with no host bits set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub len: u8,
}

impl Cidr {
    /// Parses `ADDR/LEN`, or a bare address meaning a single host.
    pub fn parse(s: &str) -> Result<Self> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let Ok(addr) = a.trim().parse::<IpAddr>() else {
            bail!("bad --trust {s:?}: {a:?} is not an IPv4 or IPv6 address");
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            None => max,
            Some(l) => match l.trim().parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => bail!("bad --trust {s:?}: prefix length must be 0..={max}"),
            },
        };
        let cidr = Cidr { addr, len };
        let net = cidr.network();
        if net != addr {
            bail!("bad --trust {s:?}: host bits set; did you mean {net}/{len}?");
        }
        Ok(cidr)
    }

    fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        }
    }

    /// The trie key: IPv4 stored v4-mapped, as the parser looks it up.
    pub fn key(&self) -> (u32, [u8; 16]) {
        match self.addr {
            IpAddr::V4(a) => (96 + u32::from(self.len), a.to_ipv6_mapped().octets()),
            IpAddr::V6(a) => (u32::from(self.len), a.octets()),
        }
    }

    /// Back from a trie key (for `status`).
    pub fn from_key(prefix_len: u32, bytes: [u8; 16]) -> Self {
        let v6 = Ipv6Addr::from(bytes);
        match v6.to_ipv4_mapped() {
            Some(v4) if prefix_len >= 96 => Cidr {
                addr: IpAddr::V4(v4),
                len: (prefix_len - 96) as u8,
            },
            _ => Cidr {
                addr: IpAddr::V6(v6),
                len: prefix_len.min(128) as u8,
            },
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_both_families_through_the_trie_key() {
        for s in [
            "198.18.0.0/15",
            "10.1.2.3/32",
            "0.0.0.0/0",
            "fd00::/8",
            "::1/128",
        ] {
            let c = Cidr::parse(s).unwrap();
            let (len, bytes) = c.key();
            assert_eq!(Cidr::from_key(len, bytes), c, "{s}");
            assert_eq!(c.to_string(), s);
        }
        assert_eq!(Cidr::parse("198.18.0.2").unwrap().len, 32);
        assert_eq!(Cidr::parse("fd00::2").unwrap().len, 128);
    }

    #[test]
    fn rejects_what_iproute2_rejects() {
        for bad in [
            "198.18.0.1/24",
            "1.2.3.4/33",
            "fd00::1/64",
            "::/129",
            "nope",
            "1.2.3/8",
            "",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?} accepted");
        }
        let e = Cidr::parse("198.18.0.1/24").unwrap_err().to_string();
        assert!(e.contains("198.18.0.0/24"), "{e}");
    }
}
