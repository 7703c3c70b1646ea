//! The caller's `socklen_t *addrlen`: its value before the real call (the
//! caller's buffer size, which the kernel overwrites with the true
//! length), read without ever turning a call libc would fail with EFAULT
//! into a crash where that can be told without a syscall.
//!
//! Why the read cannot be made fault-proof for every pointer: the buffer
//! size is needed (how many bytes may be written, whether a sockaddr_in6
//! fits) and only `*addrlen` holds it; after the real call it holds the
//! true length instead. A pointer into unmapped or PROT_NONE memory can be
//! told apart from a good one only by touching it (a fault, which only a
//! process-wide SIGSEGV handler could catch: not something a preloaded
//! library may install over the program's own, the JVM's or a
//! sanitizer's) or by asking the kernel (one more syscall on every call).
//! Handing the real call a copy of the length needs the value first; the
//! real call's own answer (success or EFAULT) comes after the value is
//! gone. So pointers that cannot name user memory at all (the zero page,
//! beyond the top of the user address space) are left to the kernel,
//! which returns EFAULT as without the library, and any other pointer is
//! read: one into an unmapped or PROT_NONE page of the user range gets
//! SIGSEGV, where libc alone would return EFAULT.

use core::mem::size_of;

use libc::{sockaddr, socklen_t};

/// Below this nothing is mapped (vm.mmap_min_addr is at least one page
/// unless root set it to 0 to map the zero page on purpose).
const LOWEST_MAPPABLE: usize = 4096;

/// The top of the user address space as the kernel hands it out by
/// default (47 bits on x86-64, 48 on arm64; a process gets more only by
/// asking mmap for a higher address). A pointer at or above it is left to
/// the kernel: the worst case, a program that mapped memory up there on
/// purpose, keeps the kernel's answer unrewritten.
#[cfg(target_arch = "x86_64")]
const USER_TOP: usize = 1 << 47;
#[cfg(target_arch = "aarch64")]
const USER_TOP: usize = 1 << 48;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const USER_TOP: usize = usize::MAX;

/// Whether `p` can name user memory at all, judged from its value alone.
fn may_be_mapped(p: *const socklen_t) -> bool {
    let a = p.addr();
    // arm64 ignores the top byte of an address (pointer tags).
    #[cfg(target_arch = "aarch64")]
    let a = a & ((1usize << 56) - 1);
    a >= LOWEST_MAPPABLE && a <= USER_TOP - size_of::<socklen_t>()
}

/// The caller's buffer size, read before the call. None when the caller
/// wants no address (either pointer NULL: no syscall is spent on it), or
/// when `addrlen` cannot point to user memory (the real call then fails
/// with EFAULT as it would without the library).
///
/// # Safety
/// `addrlen`, if it passes the checks above, must be readable: the
/// accept/getpeername contract. See the module comment for what happens
/// when it is not.
pub unsafe fn before_call(addr: *mut sockaddr, addrlen: *mut socklen_t) -> Option<socklen_t> {
    if addr.is_null() || addrlen.is_null() || !may_be_mapped(addrlen) {
        return None;
    }
    // SAFETY: per the function's contract. Unaligned: the kernel takes a
    // socklen_t at any address, so callers may pass one.
    Some(unsafe { addrlen.read_unaligned() })
}

/// The true length the kernel stored.
///
/// # Safety
/// The real call just succeeded with `addrlen`, so it is readable.
pub unsafe fn after_call(addrlen: *const socklen_t) -> socklen_t {
    // SAFETY: per the function's contract; unaligned as above.
    unsafe { addrlen.read_unaligned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_that_cannot_be_user_memory_are_not_read() {
        let mut buf = [0u8; 8];
        let addr: *mut sockaddr = buf.as_mut_ptr().cast();
        for bad in [1usize, 8, 4095, usize::MAX - 3, usize::MAX & !3] {
            let p = core::ptr::without_provenance_mut::<socklen_t>(bad);
            // SAFETY: never dereferenced: it fails the checks first.
            assert_eq!(unsafe { before_call(addr, p) }, None, "{bad:#x}");
        }
        #[cfg(target_arch = "x86_64")]
        {
            let kernel = core::ptr::without_provenance_mut::<socklen_t>(0xffff_8000_0000_0000);
            // SAFETY: as above.
            assert_eq!(unsafe { before_call(addr, kernel) }, None);
        }
    }

    #[test]
    fn a_good_pointer_is_read_even_unaligned() {
        let mut raw = [0u8; 12];
        let mut buf = [0u8; 8];
        raw[1..5].copy_from_slice(&77u32.to_ne_bytes());
        // SAFETY: raw[1..5] is a live, unaligned socklen_t.
        let p = unsafe { raw.as_mut_ptr().add(1) }.cast::<socklen_t>();
        // SAFETY: p is readable.
        assert_eq!(unsafe { before_call(buf.as_mut_ptr().cast(), p) }, Some(77));
        // SAFETY: as above.
        assert_eq!(unsafe { after_call(p) }, 77);
        let mut len: socklen_t = 5;
        // SAFETY: NULL addr: nothing is read.
        let no_addr = unsafe { before_call(core::ptr::null_mut(), &mut len) };
        assert_eq!(no_addr, None);
    }
}
