//! The rewrite rules, as one pure function of what the kernel returned and
//! who the real client is. No I/O, so the full matrix is unit-tested here.
//!
//! | socket family | real client | caller sees |
//! |---|---|---|
//! | AF_INET  | IPv4 | sockaddr_in of the client |
//! | AF_INET6 | IPv4 | sockaddr_in6 `::ffff:a.b.c.d` |
//! | AF_INET6 | IPv6 | sockaddr_in6 of the client |
//! | AF_INET  | IPv6 | sockaddr_in6 if widening is allowed and the caller's buffer holds 28 bytes, else the LB address stays |
//!
//! Widening hands a program an address of another family than its socket.
//! Most programs print or store whatever family they get; some drop the
//! connection instead. `TTM_WIDEN` (auto, the default, on, off) decides:
//! `auto` widens except in the programs of [`NO_WIDENING`].
//!
//! An answer that already names the client (the eBPF kit's getpeername
//! programs rewrite in the kernel) is left alone; with a trust list
//! (TTM_TRUSTED, or the one `ttmctl load --trust` exported), only answers
//! whose LB-side address is trusted are rewritten.

use core::net::SocketAddr;

use libc::{AF_INET, AF_INET6, socklen_t};

use crate::passthrough::Passthrough;
use crate::sockaddr::{SIN_LEN, SIN6_LEN, SockAddr};
use ttm_cidr::Cidr;

/// Programs known to drop a connection whose accepted address is wider
/// than their listener's family, matched against the process's names
/// (argv[0]'s basename and comm, as for TTM_PROGRAMS), each with the
/// reason. Under `TTM_WIDEN=auto` they are never widened: an IPv6 client on
/// their AF_INET listeners keeps the LB address, which is a logged line
/// that names the LB rather than a connection closed without a response.
/// Such servers get IPv6 clients from a dual-stack listener, where the
/// kernel side alone shows them (for nginx: `listen [::]:80 ipv6only=off;`).
pub const NO_WIDENING: [(&str, &str); 1] = [(
    // nginx and the forks that keep its binary name (OpenResty, Tengine,
    // freenginx). Checked against nginx 1.22 (Debian 12).
    "nginx",
    "closes connections whose address is wider than its listener's family \
     (ngx_event_accept formats it into a buffer of the listener's text length, \
     NGX_INET_ADDRSTRLEN on AF_INET; ngx_sock_ntop returns 0 for a sockaddr_in6 \
     and ngx_close_accepted_connection drops it silently)",
)];

/// What a successful accept/getpeername left in the caller's buffer.
pub struct Returned {
    /// The bytes the kernel wrote (zero past `visible`); its length is the
    /// true length the kernel reported in `*addrlen`.
    pub addr: SockAddr,
    /// How many bytes the kernel wrote: min(buffer, true length).
    pub visible: socklen_t,
    /// The caller's buffer size, `*addrlen` before the call.
    pub buf_len: socklen_t,
}

/// The address the caller should see instead of `ret`, or why it keeps
/// the kernel's answer. `client` is canonical (IPv4 never v4-mapped);
/// `widen` is the TTM_WIDEN decision for this process.
pub fn decide(
    ret: &Returned,
    client: SocketAddr,
    trusted: Option<&[Cidr]>,
    widen: bool,
) -> Result<SockAddr, Passthrough> {
    let family = i32::from(ret.addr.family());
    let kernel_len = match family {
        AF_INET => SIN_LEN,
        AF_INET6 => SIN6_LEN,
        _ => return Err(Passthrough::NotInet),
    };
    if ret.addr.len() != kernel_len {
        return Err(Passthrough::OddLength);
    }
    let target = match (family, client) {
        (AF_INET, SocketAddr::V4(c)) => Ok(SockAddr::v4(*c.ip(), c.port())),
        (_, SocketAddr::V4(c)) => Ok(SockAddr::v4_mapped(*c.ip(), c.port())),
        (AF_INET6, SocketAddr::V6(c)) => Ok(SockAddr::v6(*c.ip(), c.port())),
        // The widening: an AF_INET socket, but room for a sockaddr_in6.
        // Off by policy counts as such whatever the buffer: more room
        // would not change the outcome.
        (_, SocketAddr::V6(_)) if !widen => Err(Passthrough::WideningOff),
        (_, SocketAddr::V6(c)) if ret.buf_len >= SIN6_LEN => Ok(SockAddr::v6(*c.ip(), c.port())),
        (_, SocketAddr::V6(_)) => Err(Passthrough::NoRoomForIpv6),
    };

    if ret.visible >= kernel_len {
        let lb = ret.addr.socket_addr().ok_or(Passthrough::OddLength)?;
        let lb = SocketAddr::new(lb.ip().to_canonical(), lb.port());
        if lb == client {
            return Err(Passthrough::AlreadyRewritten);
        }
        if let Some(list) = trusted
            && !list.iter().any(|c| c.contains(lb.ip()))
        {
            return Err(Passthrough::Untrusted);
        }
    } else {
        // Only a prefix of the LB address is visible: enough to see that a
        // rewrite would change nothing, not enough to check trust.
        let n = ret.visible as usize;
        if let Ok(t) = &target
            && t.len() == ret.addr.len()
            && t.as_bytes().get(..n) == ret.addr.as_bytes().get(..n)
        {
            return Err(Passthrough::AlreadyRewritten);
        }
        if trusted.is_some() {
            return Err(Passthrough::TrustUnknown);
        }
    }
    target
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};

    const LB4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
    const LB_PORT: u16 = 40000;

    fn lb_on(family: i32) -> SockAddr {
        if family == AF_INET {
            SockAddr::v4(LB4, LB_PORT)
        } else {
            SockAddr::v4_mapped(LB4, LB_PORT)
        }
    }

    fn returned(addr: SockAddr, buf_len: socklen_t) -> Returned {
        let visible = buf_len.min(addr.len());
        let bytes = addr.as_bytes();
        // SAFETY: bytes holds addr.len() >= visible bytes.
        let addr = unsafe { SockAddr::from_raw(bytes.as_ptr().cast(), visible, addr.len()) };
        Returned {
            addr,
            visible,
            buf_len,
        }
    }

    fn v4() -> SocketAddr {
        "198.51.100.7:5555".parse().unwrap()
    }

    fn v6() -> SocketAddr {
        "[2001:db8::7]:5555".parse().unwrap()
    }

    #[test]
    fn the_four_cases_with_room() {
        let r = returned(lb_on(AF_INET), 128);
        assert_eq!(
            decide(&r, v4(), None, true),
            Ok(SockAddr::v4(Ipv4Addr::new(198, 51, 100, 7), 5555))
        );
        assert_eq!(
            decide(&r, v6(), None, true),
            Ok(SockAddr::v6("2001:db8::7".parse().unwrap(), 5555))
        );
        let r = returned(lb_on(AF_INET6), 128);
        assert_eq!(
            decide(&r, v4(), None, true),
            Ok(SockAddr::v4_mapped(Ipv4Addr::new(198, 51, 100, 7), 5555))
        );
        assert_eq!(
            decide(&r, v6(), None, true),
            Ok(SockAddr::v6("2001:db8::7".parse().unwrap(), 5555))
        );
    }

    #[test]
    fn widening_needs_28_bytes() {
        for buf in [16, 17, 27] {
            assert_eq!(
                decide(&returned(lb_on(AF_INET), buf), v6(), None, true),
                Err(Passthrough::NoRoomForIpv6),
                "{buf}"
            );
        }
        for buf in [2, 8, 15] {
            assert_eq!(
                decide(&returned(lb_on(AF_INET), buf), v6(), None, true),
                Err(Passthrough::NoRoomForIpv6),
                "{buf}"
            );
        }
        assert!(decide(&returned(lb_on(AF_INET), 28), v6(), None, true).is_ok());
    }

    #[test]
    fn widening_off_keeps_the_lb_address_and_changes_nothing_else() {
        for buf in [2, 16, 27, 28, 128] {
            assert_eq!(
                decide(&returned(lb_on(AF_INET), buf), v6(), None, false),
                Err(Passthrough::WideningOff),
                "{buf}"
            );
        }
        // Every case that needs no widening is decided as before.
        for buf in [2, 8, 16, 28, 128] {
            for (fam, client) in [(AF_INET, v4()), (AF_INET6, v4()), (AF_INET6, v6())] {
                let r = returned(lb_on(fam), buf);
                assert_eq!(
                    decide(&r, client, None, false),
                    decide(&r, client, None, true),
                    "family {fam} client {client} buffer {buf}"
                );
            }
        }
        // Trust is still checked first: an untrusted LB says so.
        let other: Vec<Cidr> = vec!["192.0.2.0/24".parse().unwrap()];
        assert_eq!(
            decide(&returned(lb_on(AF_INET), 128), v6(), Some(&other), false),
            Err(Passthrough::Untrusted)
        );
    }

    #[test]
    fn nginx_is_never_widened_by_default() {
        let names: Vec<&str> = NO_WIDENING.iter().map(|(n, _)| *n).collect();
        assert!(names.contains(&"nginx"), "{names:?}");
        for (name, why) in NO_WIDENING {
            assert!(!name.is_empty() && !name.contains('/'), "{name}");
            assert!(why.len() > 20, "{name}: give the reason");
        }
    }

    #[test]
    fn already_rewritten_by_the_kernel() {
        let c = v4();
        let SocketAddr::V4(c4) = c else {
            unreachable!()
        };
        for buf in [2, 8, 16, 128] {
            let r = returned(SockAddr::v4(*c4.ip(), c4.port()), buf);
            assert_eq!(
                decide(&r, c, None, true),
                Err(Passthrough::AlreadyRewritten),
                "{buf}"
            );
            let r = returned(SockAddr::v4_mapped(*c4.ip(), c4.port()), buf);
            assert_eq!(
                decide(&r, c, None, true),
                Err(Passthrough::AlreadyRewritten),
                "{buf}"
            );
        }
        let r = returned(SockAddr::v6("2001:db8::7".parse().unwrap(), 5555), 128);
        assert_eq!(
            decide(&r, v6(), None, true),
            Err(Passthrough::AlreadyRewritten)
        );
        // A different port is a different answer.
        let r = returned(SockAddr::v4(*c4.ip(), 1), 128);
        assert!(decide(&r, c, None, true).is_ok());
    }

    #[test]
    fn trust() {
        let lb_net: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let other: Vec<Cidr> = vec![
            "192.0.2.0/24".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        for fam in [AF_INET, AF_INET6] {
            let r = returned(lb_on(fam), 128);
            assert!(decide(&r, v4(), Some(&lb_net), true).is_ok());
            assert_eq!(
                decide(&r, v4(), Some(&other), true),
                Err(Passthrough::Untrusted)
            );
            assert_eq!(
                decide(&r, v4(), Some(&[]), true),
                Err(Passthrough::Untrusted)
            );
            let r = returned(lb_on(fam), 8);
            assert_eq!(
                decide(&r, v4(), Some(&lb_net), true),
                Err(Passthrough::TrustUnknown)
            );
        }
        let r = returned(SockAddr::v6("2001:db8:1::1".parse().unwrap(), 80), 128);
        assert!(decide(&r, v4(), Some(&other), true).is_ok());
    }

    #[test]
    fn odd_answers_stay() {
        let a = lb_on(AF_INET);
        let bytes = a.as_bytes();
        // SAFETY: reading 16 bytes that exist, claiming a true length of 20.
        let odd = unsafe { SockAddr::from_raw(bytes.as_ptr().cast(), 16, 20) };
        let r = Returned {
            addr: odd,
            visible: 16,
            buf_len: 128,
        };
        assert_eq!(decide(&r, v4(), None, true), Err(Passthrough::OddLength));
        let unix = [1u8, 0];
        // SAFETY: 2 readable bytes.
        let u = unsafe { SockAddr::from_raw(unix.as_ptr().cast(), 2, 2) };
        let r = Returned {
            addr: u,
            visible: 2,
            buf_len: 2,
        };
        assert_eq!(decide(&r, v4(), None, true), Err(Passthrough::NotInet));
    }

    #[test]
    fn mapped_lb_is_compared_canonically() {
        let r = returned(SockAddr::v6(Ipv6Addr::LOCALHOST, 1), 128);
        assert!(decide(&r, v4(), None, true).is_ok());
    }
}
