//! The full rewrite matrix through the hook's post-call path, with a fake
//! kernel (writes the LB address the way accept/getpeername do) and a fake
//! backend: socket family x client family x buffer size x NULL pointers.

use super::*;
use crate::peer::TtmPeer;
use core::cell::Cell;
use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use libc::{AF_INET, AF_INET6, AF_UNIX};

const SIZES: [socklen_t; 9] = [0, 1, 2, 8, 15, 16, 27, 28, 128];
const CANARY: u8 = 0xAA;
const SOCK: c_int = 7;

struct Fake {
    answer: Lookup,
    lookups: Cell<u32>,
}

impl Fake {
    fn new(answer: Lookup) -> Self {
        Fake {
            answer,
            lookups: Cell::new(0),
        }
    }
}

impl PeerSource for Fake {
    fn in_use(&self) -> bool {
        true
    }
    fn lookup(&self, fd: c_int) -> Lookup {
        assert_eq!(fd, SOCK);
        self.lookups.set(self.lookups.get() + 1);
        // A sloppy source: the hook must restore errno itself.
        errno::set(libc::ENOENT);
        self.answer
    }
}

fn hooks(answer: Lookup) -> Hooks<Fake> {
    crate::log::silence();
    Hooks {
        active: true,
        source: Fake::new(answer),
        trusted: None,
        widen: true,
    }
}

fn lb(family: i32) -> SockAddr {
    match family {
        AF_INET => SockAddr::v4(Ipv4Addr::new(10, 0, 0, 5), 40000),
        _ => SockAddr::v6("fd00::5".parse().unwrap(), 40000),
    }
}

fn client_v4() -> SocketAddr {
    "198.51.100.7:5555".parse().unwrap()
}

fn client_v6() -> SocketAddr {
    "[2001:db8::7]:5555".parse().unwrap()
}

/// What the rules say the caller must end up with, written out by hand
/// rather than through `rewrite::decide`.
fn expected(family: i32, client: SocketAddr, buf_len: socklen_t) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match (family, client) {
        (AF_INET, SocketAddr::V4(c)) => {
            out.extend_from_slice(&(AF_INET as u16).to_ne_bytes());
            out.extend_from_slice(&c.port().to_be_bytes());
            out.extend_from_slice(&c.ip().octets());
            out.extend_from_slice(&[0; 8]);
        }
        (AF_INET, SocketAddr::V6(_)) if buf_len < 28 => return None,
        (_, c) => {
            let ip = match c {
                SocketAddr::V4(c) => c.ip().to_ipv6_mapped(),
                SocketAddr::V6(c) => *c.ip(),
            };
            out.extend_from_slice(&(AF_INET6 as u16).to_ne_bytes());
            out.extend_from_slice(&c.port().to_be_bytes());
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&ip.octets());
            out.extend_from_slice(&[0; 4]);
        }
    }
    Some(out)
}

/// Plays the kernel: writes min(buffer, true length) bytes of `addr` and
/// stores the true length.
fn kernel_returns(buf: &mut [u8], len: &mut socklen_t, addr: &SockAddr) {
    let n = (*len as usize).min(addr.as_bytes().len());
    buf[..n].copy_from_slice(&addr.as_bytes()[..n]);
    *len = addr.len();
}

struct Run {
    buf: [u8; 256],
    len: socklen_t,
    lookups: u32,
    errno: c_int,
}

/// One hooked call: the caller's buffer of `buf_len` (or NULL pointers),
/// the kernel's answer `kernel`, the backend `h`.
fn run(
    h: Option<&Hooks<Fake>>,
    kernel: &SockAddr,
    buf_len: socklen_t,
    null_addr: bool,
    null_len: bool,
) -> Run {
    let mut buf = [CANARY; 256];
    let mut len = buf_len;
    let addr: *mut sockaddr = if null_addr {
        core::ptr::null_mut()
    } else {
        buf.as_mut_ptr().cast()
    };
    let addrlen: *mut socklen_t = if null_len {
        core::ptr::null_mut()
    } else {
        &mut len
    };
    // SAFETY: the pointers are NULL or our live buffers.
    let before = unsafe { addrlen::before_call(addr, addrlen) };
    if !null_addr && !null_len {
        kernel_returns(&mut buf, &mut len, kernel);
    }
    errno::set(4242);
    // SAFETY: buf holds 256 >= buf_len bytes; len is live.
    unsafe { after_call(h, Call::Accept4, SOCK, SOCK, addr, addrlen, before) };
    Run {
        buf,
        len,
        lookups: h.map_or(0, |h| h.source.lookups.get()),
        errno: errno::get(),
    }
}

#[test]
fn full_matrix() {
    let mut cases = 0;
    for family in [AF_INET, AF_INET6] {
        for client in [client_v4(), client_v6()] {
            for buf_len in SIZES {
                for (null_addr, null_len) in
                    [(false, false), (true, false), (false, true), (true, true)]
                {
                    let h = hooks(Lookup::Found(TtmPeer::from_client(client)));
                    let kernel = lb(family);
                    let r = run(Some(&h), &kernel, buf_len, null_addr, null_len);
                    let what = format!(
                        "family {family} client {client} buffer {buf_len} null {null_addr}/{null_len}"
                    );
                    cases += 1;
                    assert_eq!(r.errno, 4242, "{what}: errno");
                    // Nothing past the caller's buffer is ever written.
                    assert!(
                        r.buf[buf_len as usize..].iter().all(|&b| b == CANARY),
                        "{what}: overrun"
                    );

                    if null_addr || null_len {
                        assert_eq!(r.lookups, 0, "{what}: a NULL pointer costs no lookup");
                        assert!(r.buf.iter().all(|&b| b == CANARY), "{what}: untouched");
                        assert_eq!(r.len, buf_len, "{what}");
                        continue;
                    }
                    let visible = (buf_len as usize).min(kernel.as_bytes().len());
                    if buf_len < 2 {
                        assert_eq!(r.lookups, 0, "{what}: nothing visible, nothing to ask");
                    } else {
                        assert_eq!(r.lookups, 1, "{what}: exactly one lookup");
                    }
                    match expected(family, client, buf_len).filter(|_| buf_len >= 2) {
                        Some(want) => {
                            let n = (buf_len as usize).min(want.len());
                            assert_eq!(&r.buf[..n], &want[..n], "{what}: bytes");
                            assert_eq!(r.len as usize, want.len(), "{what}: true length");
                        }
                        None => {
                            // The kernel's answer, untouched.
                            assert_eq!(
                                &r.buf[..visible],
                                &kernel.as_bytes()[..visible],
                                "{what}: kept"
                            );
                            assert_eq!(r.len, kernel.len(), "{what}: kept length");
                        }
                    }
                }
            }
        }
    }
    assert_eq!(cases, 2 * 2 * 9 * 4);
}

#[test]
fn widening_reports_28_on_an_inet_socket() {
    let h = hooks(Lookup::Found(TtmPeer::from_client(client_v6())));
    let r = run(Some(&h), &lb(AF_INET), 28, false, false);
    assert_eq!(r.len, 28);
    assert_eq!(&r.buf[..2], &(AF_INET6 as u16).to_ne_bytes());
    assert_eq!(r.buf[28], CANARY);
    let h = hooks(Lookup::Found(TtmPeer::from_client(client_v6())));
    let r = run(Some(&h), &lb(AF_INET), 16, false, false);
    assert_eq!(r.len, 16);
    assert_eq!(&r.buf[..16], lb(AF_INET).as_bytes());
}

#[test]
fn unix_sockets_are_never_looked_up() {
    let path = b"\x01\x00/tmp/ttm.sock\0";
    // SAFETY: path is readable for its length.
    let unix = unsafe {
        SockAddr::from_raw(
            path.as_ptr().cast(),
            path.len() as socklen_t,
            path.len() as socklen_t,
        )
    };
    assert_eq!(i32::from(unix.family()), AF_UNIX);
    for buf_len in SIZES {
        let h = hooks(Lookup::Found(TtmPeer::from_client(client_v4())));
        let r = run(Some(&h), &unix, buf_len, false, false);
        assert_eq!(r.lookups, 0, "buffer {buf_len}");
        let visible = (buf_len as usize).min(path.len());
        assert_eq!(&r.buf[..visible], &path[..visible]);
        assert_eq!(r.len as usize, path.len());
    }
}

#[test]
fn nothing_known_leaves_the_kernel_answer() {
    for answer in [
        Lookup::Nothing,
        Lookup::Failed(libc::EBADF),
        Lookup::Found(TtmPeer::default()),
    ] {
        for family in [AF_INET, AF_INET6] {
            let h = hooks(answer);
            let r = run(Some(&h), &lb(family), 128, false, false);
            assert_eq!(&r.buf[..lb(family).as_bytes().len()], lb(family).as_bytes());
            assert_eq!(r.len, lb(family).len());
            assert_eq!(r.errno, 4242);
        }
    }
}

#[test]
fn inactive_unready_and_failed_calls_do_nothing() {
    let kernel = lb(AF_INET);
    let mut h = hooks(Lookup::Found(TtmPeer::from_client(client_v4())));
    h.active = false;
    let r = run(Some(&h), &kernel, 128, false, false);
    assert_eq!((r.lookups, &r.buf[..16]), (0, kernel.as_bytes()));

    let r = run(None, &kernel, 128, false, false);
    assert_eq!(&r.buf[..16], kernel.as_bytes());

    let h = hooks(Lookup::Found(TtmPeer::from_client(client_v4())));
    let mut buf = [CANARY; 64];
    let mut len: socklen_t = 64;
    errno::set(libc::EAGAIN);
    // SAFETY: live buffers.
    unsafe {
        after_call(
            Some(&h),
            Call::Accept,
            -1,
            -1,
            buf.as_mut_ptr().cast(),
            &mut len,
            Some(64),
        )
    };
    assert_eq!(errno::get(), libc::EAGAIN);
    assert_eq!((len, h.source.lookups.get()), (64, 0));
    assert!(buf.iter().all(|&b| b == CANARY));
}

#[test]
fn trusted_list_applies_to_the_lb_side() {
    let mut h = hooks(Lookup::Found(TtmPeer::from_client(client_v4())));
    h.trusted = Some(vec!["192.0.2.0/24".parse().unwrap()]);
    let r = run(Some(&h), &lb(AF_INET), 128, false, false);
    assert_eq!(&r.buf[..16], lb(AF_INET).as_bytes());
    let mut h = hooks(Lookup::Found(TtmPeer::from_client(client_v4())));
    h.trusted = Some(vec!["10.0.0.0/8".parse().unwrap()]);
    let r = run(Some(&h), &lb(AF_INET), 128, false, false);
    assert_eq!(&r.buf[4..8], &[198, 51, 100, 7]);
}

#[test]
fn kernel_rewrite_is_left_alone() {
    let c = client_v4();
    let h = hooks(Lookup::Found(TtmPeer::from_client(c)));
    let already = SockAddr::v4_mapped(Ipv4Addr::new(198, 51, 100, 7), 5555);
    let r = run(Some(&h), &already, 128, false, false);
    assert_eq!(&r.buf[..28], already.as_bytes());
    let _ = Ipv6Addr::LOCALHOST;
}

#[test]
fn widening_off_keeps_the_kernel_answer_for_ipv6_clients_on_inet_sockets() {
    for buf_len in SIZES {
        for (family, client) in [
            (AF_INET, client_v6()),
            (AF_INET, client_v4()),
            (AF_INET6, client_v4()),
            (AF_INET6, client_v6()),
        ] {
            let mut h = hooks(Lookup::Found(TtmPeer::from_client(client)));
            h.widen = false;
            let kernel = lb(family);
            let r = run(Some(&h), &kernel, buf_len, false, false);
            let what = format!("family {family} client {client} buffer {buf_len}");
            assert_eq!(r.errno, 4242, "{what}");
            assert!(
                r.buf[buf_len as usize..].iter().all(|&b| b == CANARY),
                "{what}: overrun"
            );
            let widening = family == AF_INET && client.is_ipv6();
            match expected(family, client, buf_len).filter(|_| buf_len >= 2 && !widening) {
                Some(want) => {
                    let n = (buf_len as usize).min(want.len());
                    assert_eq!(&r.buf[..n], &want[..n], "{what}: bytes");
                    assert_eq!(r.len as usize, want.len(), "{what}: true length");
                }
                None => {
                    let visible = (buf_len as usize).min(kernel.as_bytes().len());
                    assert_eq!(&r.buf[..visible], &kernel.as_bytes()[..visible], "{what}");
                    assert_eq!(r.len, kernel.len(), "{what}: kept length");
                }
            }
        }
    }
}
