//! Interposition: export a libc function under its own name and keep a way
//! to reach the definition it hides.
//!
//! The real symbol is looked up with `dlsym(RTLD_NEXT)` exactly once, from
//! the load-time constructor ([`crate::init`]), never from a hook: dlsym is
//! not async-signal-safe, may allocate, and calling it from a hook that
//! runs during another library's start-up is how preload shims recurse.
//! A call that arrives before the constructor ran (another library's
//! constructor accepting, say), or after a failed lookup, goes to the raw
//! system call instead: same kernel answer, no recursion, no panic, no
//! retry loop. The only thing lost on that path is whatever another
//! interposer further down the chain would have done.

use core::ffi::{CStr, c_char, c_void};
use core::sync::atomic::{AtomicPtr, Ordering};

// glibc 2.34 moved dlsym into libc.so.6 under a new version node; binding
// the original node keeps the library loadable on older distributions (the
// project's symbol baseline is GLIBC_2.17). Both nodes are the same code.
#[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
core::arch::global_asm!(".symver ttm_dlsym_compat, dlsym@GLIBC_2.2.5");
#[cfg(all(target_arch = "aarch64", target_env = "gnu"))]
core::arch::global_asm!(".symver ttm_dlsym_compat, dlsym@GLIBC_2.17");

#[cfg(all(
    any(target_arch = "x86_64", target_arch = "aarch64"),
    target_env = "gnu"
))]
unsafe extern "C" {
    #[link_name = "ttm_dlsym_compat"]
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}
#[cfg(not(all(
    any(target_arch = "x86_64", target_arch = "aarch64"),
    target_env = "gnu"
)))]
use libc::dlsym;

/// The next definition of one interposed function, found at load time.
pub struct Next {
    name: &'static CStr,
    addr: AtomicPtr<c_void>,
}

impl Next {
    pub const fn new(name: &'static CStr) -> Self {
        Next {
            name,
            addr: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    pub fn name(&self) -> &'static CStr {
        self.name
    }

    /// Looks the symbol up once. `ours` is our own export of the same name:
    /// finding it again (a second copy of this library, odd link orders)
    /// would make the hook call itself forever, so it counts as a failure.
    /// Returns whether a usable definition was found; on failure the hook
    /// keeps using the raw system call.
    pub fn resolve(&self, ours: *const c_void) -> bool {
        // SAFETY: RTLD_NEXT with a NUL-terminated name is dlsym's documented
        // use from a shared object; called from the constructor only, where
        // the dynamic loader's lock is not held by this thread's caller.
        let found = unsafe { dlsym(libc::RTLD_NEXT, self.name.as_ptr()) };
        if found.is_null() || found.cast_const() == ours {
            return false;
        }
        self.addr.store(found, Ordering::Release);
        true
    }

    /// The resolved address, or null before/without a successful `resolve`.
    pub fn get(&self) -> *mut c_void {
        self.addr.load(Ordering::Acquire)
    }
}

/// Defines interposed functions.
///
/// ```text
/// interpose! {
///     /// docs
///     fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int
///         = hook_fn, fallback = raw_syscall_fn;
/// }
/// ```
///
/// For each entry it generates:
/// - `next::NAME`, a [`Next`] holding the real definition;
/// - `next::call::NAME(args)`, which calls the real definition, or the
///   `fallback` (a raw system call with the same contract) when there is
///   none, so a hook can always call "libc" exactly once;
/// - the exported `extern "C" fn NAME(args)`, which forwards to `hook_fn`.
///   Unit-test builds do not export it (the test binary would interpose its
///   own libc calls);
/// - `resolve_all()`, for the constructor, returning the names that failed.
macro_rules! interpose {
    ($(
        $(#[$attr:meta])*
        fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty
            = $hook:path, fallback = $fallback:path;
    )*) => {
        /// The definitions our exports hide, and typed calls into them.
        pub mod next {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[allow(non_upper_case_globals)]
                pub static $name: $crate::interpose::Next = $crate::interpose::Next::new(
                    match ::core::ffi::CStr::from_bytes_with_nul(
                        concat!(stringify!($name), "\0").as_bytes(),
                    ) {
                        Ok(name) => name,
                        Err(_) => panic!("symbol name with a NUL"),
                    },
                );
            )*

            /// Calls into libc (or the raw system call), exactly once each.
            pub mod call {
                #[allow(unused_imports)]
                use super::super::*;
                $(
                    /// # Safety
                    /// The caller upholds the C function's contract for the
                    /// arguments, exactly as for the libc function itself.
                    #[inline]
                    pub unsafe fn $name($($arg: $ty),*) -> $ret {
                        let addr = super::$name.get();
                        if addr.is_null() {
                            // SAFETY: forwarded under the caller's contract.
                            return unsafe { $fallback($($arg),*) };
                        }
                        // SAFETY: `addr` is what dlsym returned for this very
                        // name, so it is the C function with this prototype.
                        let real = unsafe { ::core::mem::transmute::<*mut ::core::ffi::c_void, unsafe extern "C" fn($($ty),*) -> $ret>(addr) };
                        // SAFETY: forwarded under the caller's contract.
                        unsafe { real($($arg),*) }
                    }
                )*
            }
        }

        $(
            $(#[$attr])*
            ///
            /// # Safety
            /// The C function's own contract; called by C code only.
            #[cfg_attr(not(test), unsafe(no_mangle))]
            pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
                // SAFETY: the C caller's contract is passed on unchanged.
                unsafe { $hook($($arg),*) }
            }
        )*

        /// Resolves every real symbol; returns the names that stay on the
        /// raw-syscall fallback.
        pub fn resolve_all() -> impl Iterator<Item = &'static ::core::ffi::CStr> {
            [$(
                (&next::$name, $name as unsafe extern "C" fn($($ty),*) -> $ret as *const ::core::ffi::c_void),
            )*]
            .into_iter()
            .filter(|(next, ours)| !next.resolve(*ours))
            .map(|(next, _)| next.name())
        }
    };
}
pub(crate) use interpose;
