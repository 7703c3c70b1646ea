//! Events tallied into rows: per kind of packet (handshake, ACK to a
//! listener) and per option seen on it, how many, from which sources, on
//! which server ports, a few samples, and the clients the option claims.
//! Memory stays bounded however long `detect` runs: every list is capped.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use super::decode::{self, Item};
use super::watch::{Event, Where};

/// Distinct source addresses kept per row; more are only counted.
pub const SOURCES_MAX: usize = 256;
/// Distinct samples and claims kept per row.
pub const SAMPLES_MAX: usize = 3;
const PORTS_MAX: usize = 16;

/// What a row counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Seen {
    /// A well-formed option of this kind and length.
    Option { kind: u8, len: u8 },
    /// The option list broke at an option of this kind (and length byte).
    Malformed { kind: u8, len: Option<u8> },
    /// The header declares more option bytes than the packet holds.
    Truncated,
    /// No option but standard ones: no client claimed at all.
    NoClientOption,
}

#[derive(Clone, Debug, Default)]
pub struct Row {
    pub packets: u64,
    pub sources: BTreeMap<IpAddr, u64>,
    /// Packets from sources past the first SOURCES_MAX.
    pub other_sources: u64,
    pub ports: BTreeSet<u16>,
    /// Distinct option bytes (from the option on, for a malformed list).
    pub samples: Vec<Vec<u8>>,
    /// Distinct clients claimed (for options of another format: if the
    /// guessed layout is right).
    pub claims: Vec<SocketAddr>,
    /// Packets whose option decodes to a client.
    pub valid_claims: u64,
    /// Packets whose option is in a known format but claims no client
    /// one can have (port 0, an unspecified address): ttm ignores them.
    pub bad_claims: u64,
}

impl Row {
    fn add(&mut self, src: IpAddr, port: u16) {
        self.packets += 1;
        if let Some(n) = self.sources.get_mut(&src) {
            *n += 1;
        } else if self.sources.len() < SOURCES_MAX {
            self.sources.insert(src, 1);
        } else {
            self.other_sources += 1;
        }
        if self.ports.len() < PORTS_MAX {
            self.ports.insert(port);
        }
    }

    fn sample(&mut self, bytes: &[u8]) {
        if self.samples.len() < SAMPLES_MAX && !self.samples.iter().any(|s| s == bytes) {
            self.samples.push(bytes.to_vec());
        }
    }

    fn claim(&mut self, claim: Option<SocketAddr>) {
        match claim {
            Some(c) => {
                self.valid_claims += 1;
                if self.claims.len() < SAMPLES_MAX && !self.claims.contains(&c) {
                    self.claims.push(c);
                }
            }
            None => self.bad_claims += 1,
        }
    }
}

#[derive(Debug, Default)]
pub struct Tally {
    pub rows: BTreeMap<(Where, Seen), Row>,
    /// Events recorded, per kind of packet.
    pub packets: BTreeMap<Where, u64>,
}

impl Tally {
    pub fn add(&mut self, ev: &Event) {
        let src = ev
            .src
            .to_ipv4_mapped()
            .map_or(IpAddr::V6(ev.src), IpAddr::V4);
        *self.packets.entry(ev.where_).or_default() += 1;
        let mut client_option = false;
        for item in decode::walk(&ev.opts, ev.optlen) {
            let (seen, bytes) = match item {
                Item::Option(b) => (
                    Seen::Option {
                        kind: b[0],
                        len: b[1],
                    },
                    Some(b),
                ),
                Item::Malformed { kind, len, rest } => (Seen::Malformed { kind, len }, Some(rest)),
                Item::Truncated => (Seen::Truncated, None),
            };
            if matches!(seen, Seen::Option { kind, .. } if decode::standard_name(kind).is_some()) {
                // Every client sends these: their samples say nothing.
                self.row(ev.where_, seen).add(src, ev.local_port);
                continue;
            }
            client_option = true;
            let row = self.row(ev.where_, seen);
            row.add(src, ev.local_port);
            if let Some(b) = bytes {
                row.sample(b);
                if let Seen::Option { .. } = seen {
                    match decode::decode_known(b) {
                        Some(claim) => row.claim(claim),
                        None => {
                            if let Some((_, c)) = decode::guess_layout(b) {
                                row.claim(Some(c));
                            }
                        }
                    }
                }
            }
        }
        if !client_option {
            self.row(ev.where_, Seen::NoClientOption)
                .add(src, ev.local_port);
        }
    }

    fn row(&mut self, w: Where, seen: Seen) -> &mut Row {
        self.rows.entry((w, seen)).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn ev(src: &str, where_: Where, opts: &[u8]) -> Event {
        let src: IpAddr = src.parse().unwrap();
        Event {
            src: match src {
                IpAddr::V4(a) => a.to_ipv6_mapped(),
                IpAddr::V6(a) => a,
            },
            local_port: 80,
            where_,
            optlen: opts.len(),
            opts: opts.to_vec(),
        }
    }

    const TS: [u8; 12] = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];

    #[test]
    fn rows_per_option_with_sources_and_claims() {
        let mut t = Tally::default();
        let toa = [0xfe, 8, 0x10, 0x92, 203, 0, 113, 7];
        for (src, port) in [
            ("198.18.0.2", 0x10u8),
            ("198.18.0.2", 0x11),
            ("198.18.0.9", 0x10),
        ] {
            let mut o = TS.to_vec();
            let mut opt = toa;
            opt[3] = port;
            o.extend(opt);
            t.add(&ev(src, Where::Handshake, &o));
        }
        t.add(&ev("2001:db8::1", Where::Handshake, &TS));
        t.add(&ev(
            "198.18.0.2",
            Where::ToListener,
            &[0xfe, 8, 0, 0, 1, 2, 3, 4],
        ));

        let r = &t.rows[&(Where::Handshake, Seen::Option { kind: 254, len: 8 })];
        assert_eq!(r.packets, 3);
        assert_eq!(r.sources[&"198.18.0.2".parse::<IpAddr>().unwrap()], 2);
        assert_eq!(r.sources.len(), 2);
        assert_eq!((r.valid_claims, r.bad_claims), (3, 0));
        assert_eq!(r.claims.len(), 2); // 4242 and 4241, twice the first
        assert_eq!(r.samples.len(), 2);
        let ts = &t.rows[&(Where::Handshake, Seen::Option { kind: 8, len: 10 })];
        assert_eq!((ts.packets, ts.samples.len()), (4, 0));
        let none = &t.rows[&(Where::Handshake, Seen::NoClientOption)];
        assert_eq!(none.packets, 1);
        assert!(
            none.sources
                .contains_key(&IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)))
        );
        let bad = &t.rows[&(Where::ToListener, Seen::Option { kind: 254, len: 8 })];
        assert_eq!((bad.valid_claims, bad.bad_claims), (0, 1));
        assert_eq!(t.packets[&Where::Handshake], 4);
    }

    #[test]
    fn sources_are_capped() {
        let mut t = Tally::default();
        for i in 0..(SOURCES_MAX as u32 + 10) {
            let a = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            t.add(&ev(&a.to_string(), Where::Handshake, &[]));
        }
        let r = &t.rows[&(Where::Handshake, Seen::NoClientOption)];
        assert_eq!((r.sources.len(), r.other_sources), (SOURCES_MAX, 10));
    }

    #[test]
    fn malformed_and_unknown_options() {
        let mut t = Tally::default();
        t.add(&ev("198.18.0.2", Where::Handshake, &[0xc8, 1, 1, 1]));
        let mut peer = vec![0xfc, 22, 2, 0, 0x10, 0x92, 203, 0, 113, 7];
        peer.resize(22, 0);
        t.add(&ev("198.18.0.2", Where::Handshake, &peer));
        let m = &t.rows[&(
            Where::Handshake,
            Seen::Malformed {
                kind: 0xc8,
                len: Some(1),
            },
        )];
        assert_eq!(m.samples, [vec![0xc8, 1, 1, 1]]);
        let u = &t.rows[&(Where::Handshake, Seen::Option { kind: 252, len: 22 })];
        assert_eq!(
            u.claims,
            ["203.0.113.7:4242".parse::<SocketAddr>().unwrap()]
        );
        assert!(
            !t.rows
                .contains_key(&(Where::Handshake, Seen::NoClientOption))
        );
    }
}
