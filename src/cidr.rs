//! `TTM_TRUSTED` prefixes. IPv4 is kept v4-mapped (`::ffff:a.b.c.d`, with
//! 96 added to the prefix length), as the eBPF kit's trie does, so one
//! comparison covers an AF_INET socket's `10.0.0.1` and an AF_INET6
//! socket's `::ffff:10.0.0.1` alike.

use core::fmt;
use core::net::{IpAddr, Ipv6Addr};
use core::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: u128,
    prefix: u8,
}

#[derive(Debug, PartialEq, Eq)]
pub struct CidrError;

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected ADDRESS or ADDRESS/PREFIX (IPv4 or IPv6)")
    }
}

fn mapped(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn mask(prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p => u128::MAX << (128 - u32::from(p)),
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        mapped(ip) & mask(self.prefix) == self.net
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a host prefix).
    /// Host bits below the prefix are ignored, as routers do.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let ip: IpAddr = addr.trim().parse().map_err(|_| CidrError)?;
        let (max, base) = match ip {
            IpAddr::V4(_) => (32u8, 96u8),
            IpAddr::V6(_) => (128u8, 0u8),
        };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                let p = p.trim();
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(CidrError);
                }
                match p.parse::<u8>() {
                    Ok(n) if n <= max => n,
                    _ => return Err(CidrError),
                }
            }
        };
        let prefix = prefix + base;
        Ok(Cidr {
            net: mapped(ip) & mask(prefix),
            prefix,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = Ipv6Addr::from(self.net);
        match ip.to_ipv4_mapped() {
            Some(v4) if self.prefix >= 96 => write!(f, "{v4}/{}", self.prefix - 96),
            _ => write!(f, "{ip}/{}", self.prefix),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_matches() {
        assert!(c("10.0.0.0/8").contains("10.200.1.1".parse().unwrap()));
        assert!(c("10.0.0.0/8").contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c("10.0.0.0/8").contains("11.0.0.1".parse().unwrap()));
        assert!(c("192.0.2.7").contains("192.0.2.7".parse().unwrap()));
        assert!(!c("192.0.2.7").contains("192.0.2.8".parse().unwrap()));
        assert!(c("2001:db8::/32").contains("2001:db8:1::1".parse().unwrap()));
        assert!(!c("2001:db8::/32").contains("2001:db9::1".parse().unwrap()));
        assert!(c("0.0.0.0/0").contains("203.0.113.1".parse().unwrap()));
        assert!(!c("0.0.0.0/0").contains("2001:db8::1".parse().unwrap()));
        assert!(c("::/0").contains("2001:db8::1".parse().unwrap()));
        assert!(c("10.1.2.3/8").contains("10.9.9.9".parse().unwrap()));
        assert_eq!(c("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(c("2001:db8::1/32").to_string(), "2001:db8::/32");
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10/8",
            "::/129",
            "x",
            "1.2.3.4/-1",
            "1.2.3.4/+8",
        ] {
            assert_eq!(bad.parse::<Cidr>(), Err(CidrError), "{bad:?}");
        }
    }
}
