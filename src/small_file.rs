//! Reading a small file (/proc/modules, the trust list `ttmctl load`
//! exports) at load time.
//!
//! With open/read, not std::fs: std sizes its buffer with statx/fstat64,
//! which would raise the library's glibc baseline (fstat64 is GLIBC_2.33)
//! for a load-time read.

use std::ffi::CStr;

use crate::errno;

/// More than any file the library reads; a larger one is cut here.
const MAX: usize = 1 << 20;

/// The file's bytes (at most 1 MiB), or open(2)'s errno.
pub fn read(path: &CStr) -> Result<Vec<u8>, libc::c_int> {
    let mut out = Vec::new();
    // SAFETY: open(2) on a NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(errno::get());
    }
    let mut chunk = [0u8; 4096];
    while out.len() < MAX {
        // SAFETY: reads into a live buffer of its own length.
        let n = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
        if n > 0 {
            out.extend_from_slice(&chunk[..n as usize]);
        } else if n < 0 && errno::get() == libc::EINTR {
            continue;
        } else {
            break;
        }
    }
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_proc_file_and_says_none_for_a_missing_one() {
        let text = read(c"/proc/self/comm").unwrap();
        assert!(!text.is_empty() && text.ends_with(b"\n"));
        assert_eq!(read(c"/nonexistent/ttm"), Err(libc::ENOENT));
    }
}
