//! One owned socket address: a `sockaddr_storage` and its length, like
//! socket2's `SockAddr`. Everything the hooks hand to a caller goes through
//! [`SockAddr::copy_out`], the one place that knows the POSIX rule
//! "copy no more than the caller's buffer, report the true size".

use core::fmt;
use core::mem::{size_of, zeroed};
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libc::{
    AF_INET, AF_INET6, sa_family_t, sockaddr, sockaddr_in, sockaddr_in6, sockaddr_storage,
    socklen_t,
};

/// `sizeof(struct sockaddr_in)`: what the kernel reports for AF_INET.
pub const SIN_LEN: socklen_t = size_of::<sockaddr_in>() as socklen_t;
/// `sizeof(struct sockaddr_in6)`: what the kernel reports for AF_INET6.
pub const SIN6_LEN: socklen_t = size_of::<sockaddr_in6>() as socklen_t;
/// Bytes needed before the family of a returned address can be read.
pub const FAMILY_LEN: socklen_t = size_of::<sa_family_t>() as socklen_t;
const STORAGE_LEN: usize = size_of::<sockaddr_storage>();

#[derive(Clone, Copy)]
pub struct SockAddr {
    storage: sockaddr_storage,
    len: socklen_t,
}

impl SockAddr {
    fn zeroed() -> Self {
        SockAddr {
            // SAFETY: sockaddr_storage is plain bytes; all-zero is valid.
            storage: unsafe { zeroed() },
            len: 0,
        }
    }

    /// `struct sockaddr_in` for an IPv4 address and host-order port.
    pub fn v4(ip: Ipv4Addr, port: u16) -> Self {
        let mut out = Self::zeroed();
        // SAFETY: sockaddr_storage is larger than and aligned for
        // sockaddr_in, as POSIX requires of it.
        let sin = unsafe { &mut *(&raw mut out.storage).cast::<sockaddr_in>() };
        sin.sin_family = AF_INET as sa_family_t;
        sin.sin_port = port.to_be();
        sin.sin_addr.s_addr = u32::from_ne_bytes(ip.octets());
        out.len = SIN_LEN;
        out
    }

    /// `struct sockaddr_in6` for an IPv6 address and host-order port; flow
    /// info and scope are zero, as for any peer address the kernel reports
    /// for a global client.
    pub fn v6(ip: Ipv6Addr, port: u16) -> Self {
        let mut out = Self::zeroed();
        // SAFETY: sockaddr_storage is larger than and aligned for
        // sockaddr_in6.
        let sin6 = unsafe { &mut *(&raw mut out.storage).cast::<sockaddr_in6>() };
        sin6.sin6_family = AF_INET6 as sa_family_t;
        sin6.sin6_port = port.to_be();
        sin6.sin6_addr.s6_addr = ip.octets();
        out.len = SIN6_LEN;
        out
    }

    /// An IPv4 peer as an AF_INET6 socket shows it: `::ffff:a.b.c.d`.
    pub fn v4_mapped(ip: Ipv4Addr, port: u16) -> Self {
        Self::v6(ip.to_ipv6_mapped(), port)
    }

    /// The natural form of a client: AF_INET for IPv4, AF_INET6 for IPv6.
    pub fn from_socket_addr(addr: SocketAddr) -> Self {
        match addr {
            SocketAddr::V4(a) => Self::v4(*a.ip(), a.port()),
            SocketAddr::V6(a) => Self::v6(*a.ip(), a.port()),
        }
    }

    /// Copies what the kernel wrote into a caller's buffer: `visible` bytes
    /// (`min(buffer, true length)`) of an address whose true length is
    /// `len`. Bytes past `visible` stay zero.
    ///
    /// # Safety
    /// `src` must be readable for `visible` bytes.
    pub unsafe fn from_raw(src: *const sockaddr, visible: socklen_t, len: socklen_t) -> Self {
        let mut out = Self::zeroed();
        let n = (visible as usize).min(STORAGE_LEN);
        // SAFETY: the caller vouches for `n <= visible` readable bytes; our
        // storage holds STORAGE_LEN >= n bytes; the two cannot overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(src.cast::<u8>(), (&raw mut out.storage).cast::<u8>(), n)
        };
        out.len = len;
        out
    }

    /// The true length (what `*addrlen` reports).
    pub fn len(&self) -> socklen_t {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn family(&self) -> sa_family_t {
        self.storage.ss_family
    }

    /// The first `len` bytes, capped at the storage size.
    pub fn as_bytes(&self) -> &[u8] {
        let n = (self.len as usize).min(STORAGE_LEN);
        // SAFETY: the storage is STORAGE_LEN initialised bytes and n is
        // capped to it; the slice borrows self.
        unsafe { core::slice::from_raw_parts((&raw const self.storage).cast::<u8>(), n) }
    }

    /// Address and port of an AF_INET/AF_INET6 address of the right length.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match (i32::from(self.family()), self.len) {
            (AF_INET, SIN_LEN) => {
                // SAFETY: family and length say this is a sockaddr_in; the
                // storage is aligned for it.
                let sin = unsafe { &*(&raw const self.storage).cast::<sockaddr_in>() };
                let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
                Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port)))
            }
            (AF_INET6, SIN6_LEN) => {
                // SAFETY: as above, for sockaddr_in6.
                let sin6 = unsafe { &*(&raw const self.storage).cast::<sockaddr_in6>() };
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                Some(SocketAddr::new(
                    IpAddr::V6(ip),
                    u16::from_be(sin6.sin6_port),
                ))
            }
            _ => None,
        }
    }

    /// POSIX copy-out for accept/getpeername: writes at most `buf_len`
    /// bytes of the address to `addr` and stores the true length in
    /// `*addrlen`, so a caller with a short buffer can tell it was cut.
    ///
    /// # Safety
    /// `addr` must be writable for `buf_len` bytes and `addrlen` writable,
    /// which the real call that just succeeded with them has shown.
    pub unsafe fn copy_out(
        &self,
        addr: *mut sockaddr,
        addrlen: *mut socklen_t,
        buf_len: socklen_t,
    ) {
        let bytes = self.as_bytes();
        let n = bytes.len().min(buf_len as usize);
        // SAFETY: `n <= buf_len` writable bytes per the caller; our bytes
        // are a separate object.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), addr.cast::<u8>(), n) };
        // SAFETY: writable per the caller; unaligned because the kernel
        // takes a socklen_t at any address, so callers may pass one.
        unsafe { addrlen.write_unaligned(self.len) };
    }
}

impl PartialEq for SockAddr {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl fmt::Debug for SockAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `1.2.3.4:80`, `[2001:db8::1]:80`, or `family=N len=M` for anything else.
/// Allocation-free (core::net), so the hooks may log with it.
impl fmt::Display for SockAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.socket_addr() {
            Some(a) => write!(f, "{a}"),
            None => write!(f, "family={} len={}", self.family(), self.len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_match_the_kernel_layouts() {
        let a = SockAddr::v4(Ipv4Addr::new(192, 0, 2, 1), 8080);
        assert_eq!(a.len(), 16);
        assert_eq!(&a.as_bytes()[..8], &[2, 0, 0x1f, 0x90, 192, 0, 2, 1]);
        let b = SockAddr::v4_mapped(Ipv4Addr::new(192, 0, 2, 1), 8080);
        assert_eq!(b.len(), 28);
        assert_eq!(b.as_bytes()[0..2], (AF_INET6 as u16).to_ne_bytes());
        assert_eq!(&b.as_bytes()[2..4], &[0x1f, 0x90]);
        assert_eq!(&b.as_bytes()[16..24], &[0, 0, 0xff, 0xff, 192, 0, 2, 1]);
        assert_eq!(b.to_string(), "[::ffff:192.0.2.1]:8080");
        assert_eq!(a.to_string(), "192.0.2.1:8080");
    }

    #[test]
    fn copy_out_truncates_and_reports_true_length() {
        let a = SockAddr::v6("2001:db8::1".parse().unwrap(), 443);
        for buf_len in [0u32, 1, 2, 15, 27, 28, 128] {
            let mut buf = [0xAAu8; 200];
            let mut len: socklen_t = 0;
            // SAFETY: buf holds 200 >= buf_len bytes.
            unsafe { a.copy_out(buf.as_mut_ptr().cast(), &mut len, buf_len) };
            let n = (buf_len as usize).min(28);
            assert_eq!(&buf[..n], &a.as_bytes()[..n]);
            assert!(buf[n..].iter().all(|&b| b == 0xAA));
            assert_eq!(len, 28);
        }
    }

    #[test]
    fn odd_addresses_have_no_socket_addr() {
        let raw = [1u8, 0, b'/', b'x'];
        // SAFETY: raw holds 4 bytes.
        let a = unsafe { SockAddr::from_raw(raw.as_ptr().cast(), 4, 4) };
        assert_eq!(a.socket_addr(), None);
        assert_eq!(a.to_string(), "family=1 len=4");
    }
}
