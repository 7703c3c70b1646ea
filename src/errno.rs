//! The caller's errno must come back exactly as the real call left it, even
//! when a hook makes helper syscalls (a backend lookup that finds nothing
//! fails with ENOENT or ENOPROTOOPT by design).

use libc::c_int;

/// Reads the calling thread's errno.
pub fn get() -> c_int {
    // SAFETY: __errno_location returns a valid pointer to this thread's
    // errno for the thread's whole life; reading it is async-signal-safe.
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's errno.
pub fn set(value: c_int) {
    // SAFETY: as in `get`; errno is a plain thread-local int.
    unsafe { *libc::__errno_location() = value }
}

/// Restores errno to its value at construction when dropped, so every exit
/// path of a hook (including early returns) gives the caller its errno back.
#[must_use = "errno is restored when the guard is dropped"]
pub struct Guard(c_int);

impl Guard {
    pub fn save() -> Self {
        Guard(get())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        set(self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_restores_errno() {
        set(libc::EAGAIN);
        {
            let _g = Guard::save();
            set(libc::ENOENT);
        }
        assert_eq!(get(), libc::EAGAIN);
    }
}
