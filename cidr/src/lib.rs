//! Trusted load-balancer prefixes: the one parser and the one matching rule
//! shared by `ttmctl` (which loads them into the kernel side's LPM trie) and
//! `libttm.so` (which checks the address `accept()` returned against them).
//!
//! Both families live in one 128-bit space, IPv4 v4-mapped
//! (`::ffff:a.b.c.d`, prefix + 96), because that is how an AF_INET6 socket
//! sees an IPv4 peer and how the kernel trie is keyed. The mapping must
//! not leak trust across families, so the rule is:
//!
//! - an IPv4 address (or its v4-mapped form) matches only prefixes that lie
//!   inside `::ffff:0:0/96`, i.e. written as IPv4 (`10.0.0.0/8`) or as a
//!   v4-mapped IPv6 prefix (`::ffff:10.0.0.0/104`);
//! - an IPv6 address matches any prefix that covers it.
//!
//! So `::/0` trusts every IPv6 source and no IPv4 one; `0.0.0.0/0` every
//! IPv4 source. The trie gets the same rule from [`trie_entries`], which
//! adds a "not trusted" entry for `::ffff:0:0/96` when an IPv6 prefix
//! would otherwise cover the IPv4 space.
//!
//! Matching ([`Cidr::contains`]) never allocates: libttm.so calls it from
//! inside `accept()`.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::str::FromStr;

/// `::ffff:0:0/96`, where IPv4 lives in the shared space.
const V4_MAPPED_NET: u128 = 0xffff_u128 << 32;
const V4_MAPPED_PREFIX: u8 = 96;

/// A network prefix in the v4-mapped space, host bits clear.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    net: u128,
    /// 0..=128, in the shared space (an IPv4 /8 is 104).
    prefix: u8,
}

/// Why an entry was refused; [`CidrError`]'s `Display` names the entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    NotAnAddress,
    BadPrefixLength { max: u8 },
    HostBitsSet { suggestion: String },
}

/// A refused entry and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CidrError {
    pub entry: String,
    pub reason: Reason,
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: ", self.entry)?;
        match &self.reason {
            Reason::NotAnAddress => f.write_str(
                "not an IPv4 or IPv6 address (expected ADDRESS or ADDRESS/PREFIX, e.g. 10.0.0.0/8)",
            ),
            Reason::BadPrefixLength { max } => write!(f, "prefix length must be 0..={max}"),
            Reason::HostBitsSet { suggestion } => {
                write!(
                    f,
                    "host bits set after the prefix; did you mean {suggestion}?"
                )
            }
        }
    }
}

impl std::error::Error for CidrError {}

fn mask(prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p => u128::MAX << (128 - u32::from(p.min(128))),
    }
}

/// An address in the shared space; v4-mapped IPv6 counts as IPv4.
fn mapped(ip: IpAddr) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn in_v4_space(addr: u128) -> bool {
    addr & mask(V4_MAPPED_PREFIX) == V4_MAPPED_NET
}

impl Cidr {
    /// Parses `ADDRESS/PREFIX` or a bare `ADDRESS` (a single host), IPv4 or
    /// IPv6. Host bits below the prefix are an error, as in iproute2: a
    /// typo there would otherwise trust a network nobody meant.
    pub fn parse(entry: &str) -> Result<Cidr, CidrError> {
        let err = |reason| CidrError {
            entry: entry.to_owned(),
            reason,
        };
        let (addr, len) = match entry.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (entry, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| err(Reason::NotAnAddress))?;
        let (max, base) = match ip {
            IpAddr::V4(_) => (32u8, 96u8),
            IpAddr::V6(_) => (128u8, 0u8),
        };
        let len = match len {
            None => max,
            // Digits only: u8's parser would take "+8".
            Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => {
                match l.parse::<u8>() {
                    Ok(n) if n <= max => n,
                    _ => return Err(err(Reason::BadPrefixLength { max })),
                }
            }
            Some(_) => return Err(err(Reason::BadPrefixLength { max })),
        };
        let prefix = len + base;
        let net = mapped_written(ip) & mask(prefix);
        if net != mapped_written(ip) {
            let suggestion = Cidr { net, prefix }.written_as(ip.is_ipv4());
            return Err(err(Reason::HostBitsSet { suggestion }));
        }
        Ok(Cidr { net, prefix })
    }

    /// Whether `ip` (the LB-side address a socket reports) is in this
    /// prefix, by the rule in the crate documentation. No allocation.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let a = mapped(ip);
        if in_v4_space(a) && !self.is_v4() {
            return false;
        }
        a & mask(self.prefix) == self.net
    }

    /// Whether this prefix lies in the IPv4 (v4-mapped) space.
    pub fn is_v4(&self) -> bool {
        self.prefix >= V4_MAPPED_PREFIX && in_v4_space(self.net)
    }

    /// Prefix length in the shared 128-bit space.
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// The kernel trie key: prefix length and address bytes, network order.
    pub fn trie_key(&self) -> (u32, [u8; 16]) {
        (u32::from(self.prefix), self.net.to_be_bytes())
    }

    /// Back from a trie key; None for a length over 128.
    pub fn from_trie_key(prefix_len: u32, bytes: [u8; 16]) -> Option<Cidr> {
        let prefix = u8::try_from(prefix_len).ok().filter(|p| *p <= 128)?;
        Some(Cidr {
            net: u128::from_be_bytes(bytes) & mask(prefix),
            prefix,
        })
    }

    /// An IPv6 prefix that, as raw bits, covers the IPv4 space.
    fn covers_v4_space(&self) -> bool {
        self.prefix <= V4_MAPPED_PREFIX && V4_MAPPED_NET & mask(self.prefix) == self.net
    }

    fn written_as(&self, v4: bool) -> String {
        if v4 && self.is_v4() {
            let a = Ipv4Addr::from((self.net & u128::from(u32::MAX)) as u32);
            format!("{a}/{}", self.prefix - V4_MAPPED_PREFIX)
        } else {
            format!("{}/{}", Ipv6Addr::from(self.net), self.prefix)
        }
    }
}

/// The address as written: a v4-mapped IPv6 literal stays in the v4 space,
/// so `::ffff:10.0.0.0/104` is an IPv4 prefix.
fn mapped_written(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cidr::parse(s)
    }
}

impl fmt::Display for Cidr {
    /// IPv4 prefixes as IPv4 (`10.0.0.0/8`), the rest as IPv6.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written_as(true))
    }
}

/// The entries of a list: separated by commas and/or whitespace, empty
/// ones skipped. `--trust`, `TRUST=` in ttm.conf and `TTM_TRUSTED` all
/// take this one syntax.
pub fn entries(list: &str) -> impl Iterator<Item = &str> {
    list.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|e| !e.is_empty())
}

/// Parses a whole list; the first bad entry is the error.
pub fn parse_list(list: &str) -> Result<Vec<Cidr>, CidrError> {
    entries(list).map(Cidr::parse).collect()
}

/// What to put in the kernel's trust trie for `list`: each prefix with
/// value 1 (trusted), plus `::ffff:0:0/96` with value 0 (not trusted) when
/// an IPv6 prefix covers the IPv4 space and no IPv4 /0 was given, so that
/// the trie's longest match follows [`Cidr::contains`].
pub fn trie_entries(list: &[Cidr]) -> Vec<(Cidr, u8)> {
    let mut out: Vec<(Cidr, u8)> = Vec::new();
    for c in list {
        if !out.iter().any(|(o, _)| o == c) {
            out.push((*c, 1));
        }
    }
    let v4_all = Cidr {
        net: V4_MAPPED_NET,
        prefix: V4_MAPPED_PREFIX,
    };
    if list.iter().any(|c| !c.is_v4() && c.covers_v4_space()) && !list.contains(&v4_all) {
        out.push((v4_all, 0));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn matches_within_each_family() {
        assert!(c("10.0.0.0/8").contains(ip("10.200.1.1")));
        assert!(c("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
        assert!(!c("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(c("192.0.2.7").contains(ip("192.0.2.7")));
        assert!(!c("192.0.2.7").contains(ip("192.0.2.8")));
        assert!(c("2001:db8::/32").contains(ip("2001:db8:1::1")));
        assert!(!c("2001:db8::/32").contains(ip("2001:db9::1")));
        assert!(c("0.0.0.0/0").contains(ip("203.0.113.1")));
        assert!(!c("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(c("::/0").contains(ip("2001:db8::1")));
    }

    #[test]
    fn an_ipv6_prefix_trusts_ipv4_only_when_written_inside_the_mapped_space() {
        for v6 in ["::/0", "::/1", "::/64", "::/80", "::fffe:0:0/95", "::/96"] {
            let p = c(v6);
            assert_eq!(p.covers_v4_space(), v6 != "::/96", "{v6}");
            assert!(!p.contains(ip("198.51.100.1")), "{v6}");
            assert!(!p.contains(ip("::ffff:198.51.100.1")), "{v6}");
        }
        assert!(c("::ffff:0:0/96").contains(ip("198.51.100.1")));
        assert!(c("::ffff:10.0.0.0/104").contains(ip("10.9.9.9")));
        assert!(!c("::ffff:10.0.0.0/104").contains(ip("11.9.9.9")));
        assert_eq!(c("::ffff:10.0.0.0/104"), c("10.0.0.0/8"));
        assert!(c("::ffff:0:0/96").is_v4());
        assert!(!c("::/0").is_v4());
    }

    #[test]
    fn refuses_with_the_entry_named() {
        for (bad, want) in [
            ("", "not an IPv4"),
            ("x", "not an IPv4"),
            ("10/8", "not an IPv4"),
            ("1.2.3/8", "not an IPv4"),
            ("10.0.0.0/33", "0..=32"),
            ("10.0.0.0/", "0..=32"),
            ("1.2.3.4/-1", "0..=32"),
            ("1.2.3.4/+8", "0..=32"),
            ("::/129", "0..=128"),
            ("198.18.0.1/24", "did you mean 198.18.0.0/24"),
            ("fd00::1/64", "did you mean fd00::/64"),
        ] {
            let e = Cidr::parse(bad).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(want), "{bad:?}: {msg}");
            assert!(msg.starts_with(&format!("{bad:?}")), "{msg}");
        }
    }

    #[test]
    fn one_list_syntax() {
        let want = vec![c("10.0.0.0/8"), c("192.0.2.1"), c("2001:db8::/32")];
        for s in [
            "10.0.0.0/8,192.0.2.1,2001:db8::/32",
            "10.0.0.0/8 192.0.2.1 2001:db8::/32",
            " 10.0.0.0/8, 192.0.2.1 ,\t2001:db8::/32\n",
            "10.0.0.0/8,,192.0.2.1  2001:db8::/32,",
        ] {
            assert_eq!(parse_list(s).unwrap(), want, "{s:?}");
        }
        assert_eq!(parse_list("").unwrap(), vec![]);
        let e = parse_list("10.0.0.0/8,10.1.0.0/33 2001:db8::/32").unwrap_err();
        assert_eq!(e.entry, "10.1.0.0/33");
    }

    #[test]
    fn displays_and_round_trips_through_the_trie_key() {
        for s in [
            "198.18.0.0/15",
            "10.1.2.3/32",
            "0.0.0.0/0",
            "fd00::/8",
            "::1/128",
            "::/0",
        ] {
            let p = c(s);
            assert_eq!(p.to_string(), s);
            let (len, bytes) = p.trie_key();
            assert_eq!(Cidr::from_trie_key(len, bytes), Some(p), "{s}");
        }
        assert_eq!(c("198.18.0.2").prefix_len(), 128);
        assert_eq!(c("10.0.0.0/8").prefix_len(), 104);
        assert_eq!(Cidr::from_trie_key(129, [0; 16]), None);
    }

    #[test]
    fn trie_entries_deny_the_ipv4_space_under_a_covering_ipv6_prefix() {
        let deny = (c("::ffff:0:0/96"), 0);
        assert_eq!(trie_entries(&[c("10.0.0.0/8")]), vec![(c("10.0.0.0/8"), 1)]);
        assert_eq!(
            trie_entries(&[c("2001:db8::/32")]),
            vec![(c("2001:db8::/32"), 1)]
        );
        assert_eq!(trie_entries(&[c("::/0")]), vec![(c("::/0"), 1), deny]);
        assert_eq!(
            trie_entries(&[c("::/0"), c("10.0.0.0/8"), c("10.0.0.0/8")]),
            vec![(c("::/0"), 1), (c("10.0.0.0/8"), 1), deny]
        );
        assert_eq!(
            trie_entries(&[c("::/0"), c("0.0.0.0/0")]),
            vec![(c("::/0"), 1), (c("0.0.0.0/0"), 1)]
        );
    }
}
