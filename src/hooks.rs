//! accept, accept4 and getpeername.
//!
//! House rules, all enforced here: the real function is called exactly
//! once; the caller's buffers are touched only after it succeeded; errno
//! comes back as the real call left it; nothing allocates, locks, uses
//! stdio or panics (these run in signal handlers and after fork); on any
//! doubt the kernel's answer goes back unchanged, with the reason counted.

use core::sync::atomic::AtomicBool;

use libc::{c_int, sockaddr, socklen_t};

use crate::addrlen;
use crate::backend::{Lookup, PeerSource};
use crate::errno;
use crate::interpose::interpose;
use crate::log::{self, Level, Value};
use crate::passthrough::{self, Passthrough};
use crate::rewrite::{self, Returned};
use crate::sockaddr::{FAMILY_LEN, SockAddr};
use ttm_cidr::Cidr;

interpose! {
    /// accept(2), with the real client in `*addr`.
    fn accept(fd: c_int, addr: *mut sockaddr, addrlen: *mut socklen_t) -> c_int
        = on_accept, fallback = raw::accept;
    /// accept4(2), with the real client in `*addr`.
    fn accept4(fd: c_int, addr: *mut sockaddr, addrlen: *mut socklen_t, flags: c_int) -> c_int
        = on_accept4, fallback = raw::accept4;
    /// getpeername(2), with the real client in `*addr`.
    fn getpeername(fd: c_int, addr: *mut sockaddr, addrlen: *mut socklen_t) -> c_int
        = on_getpeername, fallback = raw::getpeername;
}

/// The system calls themselves, for calls that arrive before the
/// constructor resolved libc's definitions (or if it could not).
mod raw {
    use libc::{c_int, c_long, sockaddr, socklen_t};

    /// # Safety
    /// accept(2)'s contract.
    pub unsafe fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
        // SAFETY: accept4 with no flags is accept (aarch64 has only accept4).
        unsafe { accept4(fd, addr, len, 0) }
    }

    /// # Safety
    /// accept4(2)'s contract.
    pub unsafe fn accept4(
        fd: c_int,
        addr: *mut sockaddr,
        len: *mut socklen_t,
        flags: c_int,
    ) -> c_int {
        // SAFETY: the kernel validates every argument; pointers are the
        // caller's, under accept4(2)'s contract.
        unsafe {
            libc::syscall(
                libc::SYS_accept4,
                c_long::from(fd),
                addr,
                len,
                c_long::from(flags),
            ) as c_int
        }
    }

    /// # Safety
    /// getpeername(2)'s contract.
    pub unsafe fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
        // SAFETY: as above.
        unsafe { libc::syscall(libc::SYS_getpeername, c_long::from(fd), addr, len) as c_int }
    }
}

/// What the hooks need, fixed at load time.
pub struct Hooks<S> {
    /// False under TTM_DISABLE=1 or when TTM_PROGRAMS does not name us.
    pub active: bool,
    pub source: S,
    /// The trust list: TTM_TRUSTED, or the one `ttmctl load --trust`
    /// exported; None trusts every LB address.
    pub trusted: Option<Vec<Cidr>>,
    /// TTM_WIDEN, resolved for this program: whether an IPv6 client may be
    /// shown on an AF_INET socket as a sockaddr_in6.
    pub widen: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Accept,
    Accept4,
    GetPeerName,
}

impl Call {
    fn name(self) -> &'static str {
        match self {
            Call::Accept => "accept",
            Call::Accept4 => "accept4",
            Call::GetPeerName => "getpeername",
        }
    }
}

fn hooks() -> Option<&'static Hooks<crate::backend::Backend>> {
    crate::init::STATE.get()
}

unsafe fn on_accept(fd: c_int, addr: *mut sockaddr, addrlen: *mut socklen_t) -> c_int {
    // SAFETY: the caller's arguments, under accept(2)'s contract.
    let buf_len = unsafe { addrlen::before_call(addr, addrlen) };
    // SAFETY: forwarded unchanged, once.
    let ret = unsafe { next::call::accept(fd, addr, addrlen) };
    // SAFETY: the real call's own arguments and result.
    unsafe { after_call(hooks(), Call::Accept, ret, ret, addr, addrlen, buf_len) };
    ret
}

unsafe fn on_accept4(
    fd: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
    flags: c_int,
) -> c_int {
    // SAFETY: the caller's arguments, under accept4(2)'s contract.
    let buf_len = unsafe { addrlen::before_call(addr, addrlen) };
    // SAFETY: forwarded unchanged, once.
    let ret = unsafe { next::call::accept4(fd, addr, addrlen, flags) };
    // SAFETY: the real call's own arguments and result.
    unsafe { after_call(hooks(), Call::Accept4, ret, ret, addr, addrlen, buf_len) };
    ret
}

unsafe fn on_getpeername(fd: c_int, addr: *mut sockaddr, addrlen: *mut socklen_t) -> c_int {
    // SAFETY: the caller's arguments, under getpeername(2)'s contract.
    let buf_len = unsafe { addrlen::before_call(addr, addrlen) };
    // SAFETY: forwarded unchanged, once.
    let ret = unsafe { next::call::getpeername(fd, addr, addrlen) };
    // SAFETY: the real call's own arguments and result.
    unsafe { after_call(hooks(), Call::GetPeerName, ret, fd, addr, addrlen, buf_len) };
    ret
}

/// Everything after the real call: decides, rewrites, counts and logs.
/// `ret` is the real call's result, `sock` the socket whose peer it
/// returned (the new fd for accept, the argument for getpeername).
///
/// # Safety
/// When `ret >= 0` and `buf_len` is Some, `addr` must be writable for
/// `buf_len` bytes and `addrlen` readable and writable: the real call just
/// succeeded with them.
pub unsafe fn after_call<S: PeerSource>(
    hooks: Option<&Hooks<S>>,
    call: Call,
    ret: c_int,
    sock: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
    buf_len: Option<socklen_t>,
) {
    let _errno = errno::Guard::save();
    // SAFETY: passed on from our caller.
    let outcome = unsafe { rewrite_in_place(hooks, ret, sock, addr, addrlen, buf_len) };
    match outcome {
        Ok((lb, client)) => {
            passthrough::count_rewritten();
            log::event(
                Level::Debug,
                "rewrite",
                &[
                    ("call", Value::Show(&call.name())),
                    ("fd", Value::Int(i64::from(sock))),
                    ("lb", Value::Show(&lb)),
                    ("client", Value::Show(&client)),
                ],
            );
        }
        Err(reason) => {
            reason.count();
            if reason == Passthrough::NoRoomForIpv6 && log::first(&WARNED_NO_ROOM) {
                log::event(
                    Level::Warn,
                    "no_room_for_ipv6",
                    &[
                        ("call", Value::Show(&call.name())),
                        ("fd", Value::Int(i64::from(sock))),
                        ("buffer", Value::Int(i64::from(buf_len.unwrap_or(0)))),
                        (
                            "why",
                            Value::Text(
                                "IPv6 client on an AF_INET socket whose caller's buffer cannot hold \
                                 a sockaddr_in6: the LB address stays (further cases are only counted)",
                            ),
                        ),
                    ],
                );
            }
            if reason == Passthrough::WideningOff && log::first(&WARNED_WIDENING_OFF) {
                log::event(
                    Level::Warn,
                    "widening_off",
                    &[
                        ("call", Value::Show(&call.name())),
                        ("fd", Value::Int(i64::from(sock))),
                        (
                            "why",
                            Value::Text(
                                "IPv6 client on an AF_INET socket, and widening is off for this \
                                 program (TTM_WIDEN; see the widen line at info): the LB address \
                                 stays (further cases are only counted); a dual-stack listener \
                                 shows IPv6 clients in-kernel",
                            ),
                        ),
                    ],
                );
            }
            log::event(
                Level::Debug,
                "pass",
                &[
                    ("call", Value::Show(&call.name())),
                    ("fd", Value::Int(i64::from(sock))),
                    ("reason", Value::Show(&reason)),
                ],
            );
        }
    }
}

static WARNED_NO_ROOM: AtomicBool = AtomicBool::new(false);
static WARNED_WIDENING_OFF: AtomicBool = AtomicBool::new(false);
static WARNED_BACKEND: AtomicBool = AtomicBool::new(false);

/// # Safety
/// As for [`after_call`].
unsafe fn rewrite_in_place<S: PeerSource>(
    hooks: Option<&Hooks<S>>,
    ret: c_int,
    sock: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
    buf_len: Option<socklen_t>,
) -> Result<(SockAddr, SockAddr), Passthrough> {
    if ret < 0 {
        return Err(Passthrough::CallFailed);
    }
    let hooks = hooks.ok_or(Passthrough::NotReady)?;
    if !hooks.active {
        return Err(Passthrough::Inactive);
    }
    let buf_len = buf_len.ok_or(Passthrough::NoAddress)?;
    if !hooks.source.in_use() {
        return Err(Passthrough::NoBackend);
    }
    // SAFETY: the real call succeeded, so the kernel wrote the true length.
    let true_len = unsafe { addrlen::after_call(addrlen) };
    if buf_len < FAMILY_LEN || true_len < FAMILY_LEN {
        return Err(Passthrough::FamilyHidden);
    }
    let visible = buf_len.min(true_len);
    // SAFETY: the kernel wrote `visible` bytes at addr.
    let returned = unsafe { SockAddr::from_raw(addr, visible, true_len) };
    if !matches!(i32::from(returned.family()), libc::AF_INET | libc::AF_INET6) {
        return Err(Passthrough::NotInet);
    }
    // With a trust list, an address outside it is left as it is whatever
    // the backend would say (decide() would refuse it), so the lookup, a
    // syscall, is skipped: connections the kernel side already rewrote,
    // and direct clients, cost nothing.
    if let Some(list) = hooks.trusted.as_deref()
        && let Some(lb) = returned.socket_addr()
        && !list.iter().any(|c| c.contains(lb.ip().to_canonical()))
    {
        return Err(Passthrough::Untrusted);
    }
    passthrough::count_lookup();
    let peer = match hooks.source.lookup(sock) {
        Lookup::Found(peer) => peer,
        Lookup::Nothing => return Err(Passthrough::NoPeer),
        Lookup::Failed(e) => {
            if log::first(&WARNED_BACKEND) {
                log::event(
                    Level::Warn,
                    "backend_error",
                    &[
                        ("fd", Value::Int(i64::from(sock))),
                        ("errno", Value::Int(i64::from(e))),
                        (
                            "why",
                            Value::Text(
                                "lookup failed; the kernel's address stays (further cases are only counted)",
                            ),
                        ),
                    ],
                );
            }
            return Err(Passthrough::BackendError);
        }
    };
    let client = peer.client().ok_or(Passthrough::BadPeer)?;
    let ret = Returned {
        addr: returned,
        visible,
        buf_len,
    };
    let target = rewrite::decide(&ret, client, hooks.trusted.as_deref(), hooks.widen)?;
    // SAFETY: addr holds buf_len writable bytes and addrlen is writable, as
    // the successful call showed.
    unsafe { target.copy_out(addr, addrlen, buf_len) };
    Ok((ret.addr, target))
}

#[cfg(test)]
mod tests;
