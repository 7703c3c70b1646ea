//! What the option bytes `ttmctl detect` copied mean: the walk every TOA
//! module makes (the rules of bpf/parse.h), the names of standard
//! options, the formats ttm parses (`format::FORMATS`) and, for options
//! of another kind or length, the layouts their bytes look like.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::format::FORMATS;

const EOL: u8 = 0;
const NOP: u8 = 1;

/// One step of the walk over a packet's options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// A well-formed option: its bytes, kind and length byte included.
    Option(&'a [u8]),
    /// The walk stops here, as ttm's parser does: a kind with no length
    /// byte, or a length below 2 or past the options' end. Carries the
    /// bytes from there on.
    Malformed {
        kind: u8,
        len: Option<u8>,
        rest: &'a [u8],
    },
    /// The header declares more option bytes than the packet holds.
    Truncated,
}

/// Walks `opts` (the bytes present) of a header declaring `declared`
/// bytes of options: EOL stops, NOP is skipped, a length < 2 or one past
/// the declared end is malformed and stops the walk.
pub fn walk(opts: &[u8], declared: usize) -> Vec<Item<'_>> {
    let mut out = Vec::new();
    let mut off = 0;
    while off < declared {
        let Some(&kind) = opts.get(off) else {
            out.push(Item::Truncated);
            break;
        };
        if kind == EOL {
            break;
        }
        if kind == NOP {
            off += 1;
            continue;
        }
        if off + 1 >= declared {
            out.push(Item::Malformed {
                kind,
                len: None,
                rest: &opts[off..],
            });
            break;
        }
        let Some(&len) = opts.get(off + 1) else {
            out.push(Item::Truncated);
            break;
        };
        let end = off + usize::from(len);
        if len < 2 || end > declared {
            out.push(Item::Malformed {
                kind,
                len: Some(len),
                rest: &opts[off..],
            });
            break;
        }
        let Some(bytes) = opts.get(off..end) else {
            out.push(Item::Truncated);
            break;
        };
        out.push(Item::Option(bytes));
        off = end;
    }
    out
}

/// IANA names of the options any TCP stack sends; none carries a client.
pub fn standard_name(kind: u8) -> Option<&'static str> {
    Some(match kind {
        2 => "MSS",
        3 => "window scale",
        4 => "SACK permitted",
        5 => "SACK",
        8 => "timestamps",
        19 => "MD5 signature",
        28 => "user timeout",
        29 => "TCP-AO",
        30 => "MPTCP",
        34 => "Fast Open cookie",
        _ => return None,
    })
}

/// The ttm format of this kind and length: ("KIND/LEN", who sends it).
pub fn known_format(kind: u8, len: u8) -> Option<(String, &'static str)> {
    FORMATS
        .iter()
        .find(|(k, l, _, _)| *k == kind && *l == len)
        .map(|(k, l, _, who)| (format!("{k}/{l}"), *who))
}

/// A claimed client as ttm would store it (bpf/parse.h `normalize`):
/// v4-mapped becomes IPv4; None for one no client can have (port 0, an
/// unspecified address).
fn client(addr: IpAddr, port: u16) -> Option<SocketAddr> {
    let addr = match addr {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4),
        a => a,
    };
    (port != 0 && !addr.is_unspecified()).then_some(SocketAddr::new(addr, port))
}

fn port_and_addr(data: &[u8]) -> Option<Option<SocketAddr>> {
    let port = u16::from_be_bytes(data.get(0..2)?.try_into().ok()?);
    let addr = match data.len() {
        6 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&data[2..6]).ok()?)),
        18 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&data[2..18]).ok()?)),
        _ => return None,
    };
    Some(client(addr, port))
}

/// The client a known-format option claims: Some(None) when it decodes
/// to a claim no client can have; None if `opt` is no known format.
pub fn decode_known(opt: &[u8]) -> Option<Option<SocketAddr>> {
    let (&kind, &len) = (opt.first()?, opt.get(1)?);
    known_format(kind, len)?;
    port_and_addr(&opt[2..])
}

/// For an option ttm does not parse: a layout its data could have, and
/// the client it would then claim. A guess, said to be one.
pub fn guess_layout(opt: &[u8]) -> Option<(&'static str, SocketAddr)> {
    let data = opt.get(2..)?;
    match data.len() {
        6 => Some(("port, IPv4 (the layout of 254/8)", port_and_addr(data)??)),
        18 => Some(("port, IPv6 (the layout of 254/20)", port_and_addr(data)??)),
        20 => {
            // struct ttm_peer, the vendor's getsockopt answer: af in the
            // sender's byte order, be16 port, 16 address bytes.
            let af = [
                u16::from_le_bytes([data[0], data[1]]),
                u16::from_be_bytes([data[0], data[1]]),
            ];
            let port = u16::from_be_bytes([data[2], data[3]]);
            let addr = if af.contains(&2) {
                IpAddr::V4(Ipv4Addr::new(data[4], data[5], data[6], data[7]))
            } else if af.contains(&10) {
                IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&data[4..20]).ok()?))
            } else {
                return None;
            };
            Some((
                "struct ttm_peer: af, port, address (Kingsoft's getsockopt layout)",
                client(addr, port)?,
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn walks_like_the_kernel_side_parser() {
        // NOP NOP timestamps, then a 254/8 option.
        let o = hex("0101080a0000000100000002fe081092cb007107");
        let items = walk(&o, o.len());
        assert_eq!(items, [Item::Option(&o[2..12]), Item::Option(&o[12..20])]);
        // EOL stops; what follows is not read.
        assert_eq!(walk(&hex("00fe08"), 3), []);
        // A length byte below 2 stops the walk, whatever follows.
        let o = hex("c801fe081092cb007107");
        assert_eq!(
            walk(&o, o.len()),
            [Item::Malformed {
                kind: 0xc8,
                len: Some(1),
                rest: &o[..]
            }]
        );
        // A kind as the last byte has no length.
        let o = hex("c803aac9");
        assert_eq!(
            walk(&o, 4),
            [
                Item::Option(&o[..3]),
                Item::Malformed {
                    kind: 0xc9,
                    len: None,
                    rest: &o[3..]
                }
            ]
        );
        // An option running past the declared end.
        let o = hex("c80aaabb");
        assert!(matches!(
            walk(&o, 4)[0],
            Item::Malformed { len: Some(10), .. }
        ));
        // The header declares 12 bytes, the packet holds 6.
        let o = hex("0101080a0000");
        assert_eq!(walk(&o, 12), [Item::Truncated]);
    }

    #[test]
    fn decodes_the_known_formats_as_ttm_stores_them() {
        let c = |s: &str| decode_known(&hex(s));
        assert_eq!(
            c("fe081092cb007107"),
            Some(Some("203.0.113.7:4242".parse().unwrap()))
        );
        assert_eq!(
            c("c8081092cb007107"),
            Some(Some("203.0.113.7:4242".parse().unwrap()))
        );
        // 253/20 carrying an IPv4 client v4-mapped.
        assert_eq!(
            c("fd14109200000000000000000000ffffcb007107"),
            Some(Some("203.0.113.7:4242".parse().unwrap()))
        );
        assert_eq!(
            c("fd14109220010db8000000000000000000000007"),
            Some(Some("[2001:db8::7]:4242".parse().unwrap()))
        );
        assert_eq!(c("fe080000cb007107"), Some(None)); // port 0
        assert_eq!(c("fe08109200000000"), Some(None)); // 0.0.0.0
        assert_eq!(c("fc081092cb007107"), None); // kind 252: not ttm's
        assert_eq!(c("fe0a1092cb0071070000"), None); // 254/10
    }

    #[test]
    fn guesses_layouts_of_other_options() {
        let g = |s: &str| {
            guess_layout(&hex(s)).map(|(l, c)| (l.split(' ').next().unwrap(), c.to_string()))
        };
        assert_eq!(
            g("fc081092cb007107"),
            Some(("port,", "203.0.113.7:4242".into()))
        );
        // struct ttm_peer, af little-endian (x86 sender).
        assert_eq!(
            g("fc1602001092cb007107000000000000000000000000"),
            Some(("struct", "203.0.113.7:4242".into()))
        );
        assert_eq!(
            g("fc160a00109220010db8000000000000000000000007"),
            Some(("struct", "[2001:db8::7]:4242".into()))
        );
        assert_eq!(g("fc1603001092cb007107000000000000000000000000"), None);
        assert_eq!(g("fc05aabbcc"), None);
        assert_eq!(standard_name(8), Some("timestamps"));
        assert_eq!(standard_name(254), None);
    }
}
