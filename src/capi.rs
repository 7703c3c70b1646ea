//! The C API of include/ttm.h. Usable by linking -lttm or through dlsym
//! when the library is preloaded. Errors are -1 with errno, documented in
//! the header:
//! - ENOSYS: no backend (nothing installed, TTM_BACKEND=off, TTM_DISABLE,
//!   not in TTM_PROGRAMS);
//! - ENOENT: no real client recorded for this socket (not TCP, not from
//!   the LB, or the LB sent none);
//! - EPERM: the socket's LB-side address is outside the trust list
//!   (TTM_TRUSTED, or the one `ttmctl load --trust` exported);
//! - EINVAL: a NULL pointer argument;
//! - EBADF, ENOTSOCK, ...: the backend's own error for a bad fd.

use core::ffi::{c_char, c_int, c_uint, c_ulonglong};
use core::net::SocketAddr;

use libc::{sockaddr, socklen_t};

use crate::backend::{Lookup, PeerSource};
use crate::errno;
use crate::hooks;
use crate::init::STATE;
use crate::passthrough;
use crate::peer::TtmPeer;
use crate::sockaddr::SockAddr;

/// The backend's record for `fd` and the client it names, after the same
/// trust check the hooks apply.
fn lookup(fd: c_int) -> Result<(TtmPeer, SocketAddr), c_int> {
    let state = STATE.get().ok_or(libc::ENOSYS)?;
    if !state.active || !state.source.in_use() {
        return Err(libc::ENOSYS);
    }
    let peer = match state.source.lookup(fd) {
        Lookup::Found(p) => p,
        Lookup::Nothing => return Err(libc::ENOENT),
        Lookup::Failed(e) => return Err(e),
    };
    let client = peer.client().ok_or(libc::ENOENT)?;
    if let Some(list) = &state.trusted {
        let mut storage = [0u8; 128];
        let mut len = storage.len() as socklen_t;
        // SAFETY: storage is 128 writable bytes and len says so; the real
        // getpeername, not our hook.
        let rc =
            unsafe { hooks::next::call::getpeername(fd, storage.as_mut_ptr().cast(), &mut len) };
        if rc != 0 {
            return Err(errno::get());
        }
        // SAFETY: the kernel wrote min(128, len) bytes.
        let lb = unsafe { SockAddr::from_raw(storage.as_ptr().cast(), len.min(128), len) };
        let lb = lb.socket_addr().ok_or(libc::EPERM)?;
        let lb = SocketAddr::new(lb.ip().to_canonical(), lb.port());
        // An answer the kernel already shows is no secret.
        if lb != client && !list.iter().any(|c| c.contains(lb.ip())) {
            return Err(libc::EPERM);
        }
    }
    Ok((peer, client))
}

fn fail(e: c_int) -> c_int {
    errno::set(e);
    -1
}

/// `int ttm_get_peer(int fd, struct sockaddr *addr, socklen_t *addrlen)`:
/// the real client of `fd` in its own family (sockaddr_in for IPv4,
/// sockaddr_in6 for IPv6), with getpeername's length rules.
///
/// # Safety
/// `addr` writable for `*addrlen` bytes, `addrlen` readable and writable.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn ttm_get_peer(
    fd: c_int,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> c_int {
    if addr.is_null() || addrlen.is_null() {
        return fail(libc::EINVAL);
    }
    // SAFETY: addrlen is non-NULL and readable per the contract; callers
    // may pass it unaligned, as to getpeername.
    let buf_len = unsafe { addrlen.read_unaligned() };
    match lookup(fd) {
        Ok((_, client)) => {
            // SAFETY: addr holds buf_len writable bytes per the contract.
            unsafe { SockAddr::from_socket_addr(client).copy_out(addr, addrlen, buf_len) };
            0
        }
        Err(e) => fail(e),
    }
}

/// `int ttm_get_peer_raw(int fd, struct ttm_peer *out)`: the 20-byte
/// record as the vendor's getsockopt returns it.
///
/// # Safety
/// `out` writable for a struct ttm_peer.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn ttm_get_peer_raw(fd: c_int, out: *mut TtmPeer) -> c_int {
    if out.is_null() {
        return fail(libc::EINVAL);
    }
    match lookup(fd) {
        Ok((peer, _)) => {
            // SAFETY: out is writable per the contract; unaligned-safe
            // write because C callers may pack it anywhere.
            unsafe { out.write_unaligned(peer) };
            0
        }
        Err(e) => fail(e),
    }
}

/// `const char *ttm_backend(void)`: "bpf", "kmod", "none" or "off".
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn ttm_backend() -> *const c_char {
    match STATE.get() {
        Some(s) if s.active => s.source.name().as_ptr(),
        Some(_) => c"off".as_ptr(),
        None => c"none".as_ptr(),
    }
}

/// `const char *ttm_version(void)`: the library's version, e.g. "0.1.0".
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn ttm_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// `int ttm_stat(unsigned index, const char **name, unsigned long long *value)`:
/// counter `index` (0 = "rewritten", then one per pass-through reason,
/// then "lookups": backend questions the hooks asked); -1/EINVAL past
/// the last. Either out pointer may be NULL.
///
/// # Safety
/// Non-NULL `name` and `value` must be writable.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn ttm_stat(
    index: c_uint,
    name: *mut *const c_char,
    value: *mut c_ulonglong,
) -> c_int {
    let Some((n, v)) = passthrough::stat(index as usize) else {
        return fail(libc::EINVAL);
    };
    if !name.is_null() {
        let c_name = STAT_NAMES
            .iter()
            .find(|c| c.to_bytes() == n.as_bytes())
            .map_or(c"?".as_ptr(), |c| c.as_ptr());
        // SAFETY: non-NULL and writable per the contract.
        unsafe { name.write(c_name) };
    }
    if !value.is_null() {
        // SAFETY: non-NULL and writable per the contract.
        unsafe { value.write(v) };
    }
    0
}

/// NUL-terminated copies of the counter names (checked against
/// `passthrough::stat` in a test).
const STAT_NAMES: [&core::ffi::CStr; 18] = [
    c"rewritten",
    c"not_ready",
    c"inactive",
    c"call_failed",
    c"no_address",
    c"family_hidden",
    c"not_inet",
    c"odd_length",
    c"no_backend",
    c"no_peer",
    c"backend_error",
    c"bad_peer",
    c"already_rewritten",
    c"untrusted",
    c"trust_unknown",
    c"no_room_for_ipv6",
    c"widening_off",
    c"lookups",
];

#[cfg(test)]
mod tests {
    use super::*;
    use core::ffi::CStr;

    #[test]
    fn stat_names_match() {
        for (i, c) in STAT_NAMES.iter().enumerate() {
            let (n, _) = passthrough::stat(i).unwrap();
            assert_eq!(c.to_str().unwrap(), n);
        }
        assert!(passthrough::stat(STAT_NAMES.len()).is_none());
        let mut name = core::ptr::null();
        let mut value = 99;
        // SAFETY: live out pointers.
        assert_eq!(unsafe { ttm_stat(0, &mut name, &mut value) }, 0);
        // SAFETY: ttm_stat returned one of STAT_NAMES.
        assert_eq!(unsafe { CStr::from_ptr(name) }, c"rewritten");
        // SAFETY: NULL outs are allowed.
        let r = unsafe { ttm_stat(1000, core::ptr::null_mut(), core::ptr::null_mut()) };
        assert_eq!(r, -1);
        assert_eq!(errno::get(), libc::EINVAL);
    }

    #[test]
    fn without_state_there_is_no_backend() {
        // The unit-test binary never runs the constructor.
        // SAFETY: version and backend are static strings.
        let v = unsafe { CStr::from_ptr(ttm_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
        // SAFETY: as above.
        assert_eq!(unsafe { CStr::from_ptr(ttm_backend()) }, c"none");
        let mut buf = [0u8; 128];
        let mut len: socklen_t = 128;
        // SAFETY: live buffers.
        let r = unsafe { ttm_get_peer(0, buf.as_mut_ptr().cast(), &mut len) };
        assert_eq!(r, -1);
        assert_eq!(errno::get(), libc::ENOSYS);
        // SAFETY: NULL is rejected before use.
        let r = unsafe { ttm_get_peer(0, core::ptr::null_mut(), &mut len) };
        assert_eq!(r, -1);
        assert_eq!(errno::get(), libc::EINVAL);
        // SAFETY: NULL is rejected before use.
        assert_eq!(unsafe { ttm_get_peer_raw(0, core::ptr::null_mut()) }, -1);
        assert_eq!(errno::get(), libc::EINVAL);
    }
}
