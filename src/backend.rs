//! Where the real client comes from, chosen once at load time.
//!
//! - `bpf`: the eBPF kit's pinned SK_STORAGE map, looked up by socket fd
//!   (one bpf(2) call per lookup; works for any kernel-side setup the kit
//!   was loaded with, without privileges where the pin is readable).
//! - `kmod`: `getsockopt(fd, SOL_IP, 1345)`, answered by the vendor's
//!   kgwttm module or by the eBPF kit's cgroup/getsockopt program. With a
//!   module named `toa` (DPVS and its forks, which rewrite IPv4 clients in
//!   the kernel and answer only the NAT64 ABI) it asks
//!   `getsockopt(fd, IPPROTO_IP, 4096)` instead, the one question that
//!   module answers.
//! - `none` (nothing installed) and `off` (turned off): hooks cost nothing
//!   beyond the real call.
//!
//! Every backend only ever has data for TCP sockets (the map is filled by
//! a sockops program, getsockopt answers come from the TCP option), which
//! is what lets the hooks skip an SO_TYPE/SO_PROTOCOL syscall: a UDP
//! socket simply gets "nothing".

use std::ffi::CStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use libc::{c_int, socklen_t};

use crate::bpf;
use crate::config::BackendChoice;
use crate::errno;
use crate::peer::{TOA_SO_GET_LOOKUP, TTM_SO_GET_PEER, ToaNat64Peer, TtmPeer};

/// Which getsockopt question the `kmod` backend asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KmodAbi {
    /// SOL_IP / 1345 / struct ttm_peer (kgwttm, the eBPF kit).
    Ttm,
    /// IPPROTO_IP / 4096 / struct toa_nat64_peer (toa).
    Nat64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Backend {
    /// Turned off by configuration (TTM_BACKEND=off, TTM_DISABLE, TTM_PROGRAMS).
    Off,
    /// Nothing usable is installed.
    None,
    Kmod(KmodAbi),
    Bpf {
        map_fd: c_int,
    },
}

/// What a lookup found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    Found(TtmPeer),
    /// The socket has no recorded client.
    Nothing,
    /// An unexpected error (errno value), e.g. EBADF for a bad fd.
    Failed(c_int),
}

/// Something that can say who the real client of a socket is. The hooks
/// are generic over it so tests can stand in for the kernel.
pub trait PeerSource {
    fn in_use(&self) -> bool;
    /// Async-signal-safe; leaves errno as it found it.
    fn lookup(&self, fd: c_int) -> Lookup;
}

impl Backend {
    pub fn name(&self) -> &'static CStr {
        match self {
            Backend::Off => c"off",
            Backend::None => c"none",
            Backend::Kmod(_) => c"kmod",
            Backend::Bpf { .. } => c"bpf",
        }
    }
}

impl PeerSource for Backend {
    fn in_use(&self) -> bool {
        matches!(self, Backend::Kmod(_) | Backend::Bpf { .. })
    }

    fn lookup(&self, fd: c_int) -> Lookup {
        let _errno = errno::Guard::save();
        let found = match *self {
            Backend::Off | Backend::None => return Lookup::Nothing,
            Backend::Bpf { map_fd } => bpf::lookup_peer(map_fd, fd),
            Backend::Kmod(KmodAbi::Ttm) => getsockopt_ttm(fd),
            Backend::Kmod(KmodAbi::Nat64) => getsockopt_nat64(fd),
        };
        match found {
            // An all-zero record is how a module says "nothing" without an
            // error; it is not a bogus client.
            Ok(Some(p)) if p == TtmPeer::default() => Lookup::Nothing,
            Ok(Some(p)) => Lookup::Found(p),
            Ok(None) => Lookup::Nothing,
            Err(e) => Lookup::Failed(e),
        }
    }
}

/// getsockopt errors that mean "no client recorded" rather than a fault:
/// ENOPROTOOPT (nobody answers the optname: no data, or not TCP), and
/// what modules use for "nothing for this socket".
fn means_nothing(e: c_int) -> bool {
    matches!(
        e,
        libc::ENOPROTOOPT
            | libc::ENOENT
            | libc::EINVAL
            | libc::ENOTCONN
            | libc::ENODATA
            | libc::EOPNOTSUPP
    )
}

/// Calls getsockopt through libc (not a raw syscall) so that a test can
/// stand in for a kernel module by preloading its own getsockopt.
fn getsockopt_into<T: Default>(
    fd: c_int,
    level: c_int,
    optname: c_int,
) -> Result<Option<T>, c_int> {
    let mut value = T::default();
    let mut len = core::mem::size_of::<T>() as socklen_t;
    // SAFETY: value is a live T of `len` bytes; getsockopt writes at most
    // len bytes and updates len.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            optname,
            core::ptr::from_mut(&mut value).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        let e = errno::get();
        return if means_nothing(e) { Ok(None) } else { Err(e) };
    }
    if len as usize != core::mem::size_of::<T>() {
        // Another module's struct under the same optname (Alibaba's VTOA
        // also uses 1345): not something we can read.
        return Err(libc::EPROTO);
    }
    Ok(Some(value))
}

fn getsockopt_ttm(fd: c_int) -> Result<Option<TtmPeer>, c_int> {
    getsockopt_into::<TtmPeer>(fd, libc::SOL_IP, TTM_SO_GET_PEER)
}

fn getsockopt_nat64(fd: c_int) -> Result<Option<TtmPeer>, c_int> {
    Ok(
        getsockopt_into::<ToaNat64Peer>(fd, libc::IPPROTO_IP, TOA_SO_GET_LOOKUP)?
            .map(|p| TtmPeer::from_nat64(&p)),
    )
}

/// The outcome of backend selection, with the reason to log at info.
#[derive(Debug)]
pub struct Selection {
    pub backend: Backend,
    pub why: String,
    /// Set when an explicit TTM_BACKEND could not be honoured.
    pub warning: Option<String>,
}

/// What the host has, gathered once (and faked in tests).
pub trait Host {
    fn open_map(&self, path: &CStr) -> io::Result<c_int>;
    /// Names of loaded kernel modules.
    fn modules(&self) -> Vec<String>;
    fn exists(&self, path: &Path) -> bool;
}

/// The real host: bpf(2), /proc/modules, stat.
pub struct RealHost;

impl Host for RealHost {
    fn open_map(&self, path: &CStr) -> io::Result<c_int> {
        bpf::open_peer_map(path)
    }

    fn modules(&self) -> Vec<String> {
        read_small_file(c"/proc/modules")
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect()
    }

    fn exists(&self, path: &Path) -> bool {
        let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: access(2) on a NUL-terminated path.
        unsafe { libc::access(c.as_ptr(), libc::F_OK) == 0 }
    }
}

/// Reads a /proc file with open/read, not std::fs: std sizes its buffer
/// with statx/fstat64, which would raise the library's glibc baseline
/// (fstat64 is GLIBC_2.33) for one load-time read.
fn read_small_file(path: &CStr) -> String {
    let mut out = Vec::new();
    // SAFETY: open(2) on a NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return String::new();
    }
    let mut chunk = [0u8; 4096];
    loop {
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
    String::from_utf8_lossy(&out).into_owned()
}

/// Vendor modules we know, in order of preference, and their ABI.
const MODULES: [(&str, KmodAbi); 2] = [("kgwttm", KmodAbi::Ttm), ("toa", KmodAbi::Nat64)];

/// The pin of the eBPF kit's getsockopt program, beside its map.
const KIT_GETSOCKOPT_PIN: &str = "link_getsockopt";

pub fn select(choice: BackendChoice, map: &CStr, host: &impl Host) -> Selection {
    let map_path = Path::new(std::ffi::OsStr::from_bytes(map.to_bytes()));
    let map_name = map_path.display();
    let module = || {
        let loaded = host.modules();
        MODULES
            .into_iter()
            .find(|(name, _)| loaded.iter().any(|l| l == name))
    };
    // The kit is there even when its map is not readable to us: its pin
    // is visible, or its getsockopt program is pinned beside it.
    let kit_present = || {
        host.exists(map_path)
            || map_path
                .parent()
                .is_some_and(|dir| host.exists(&dir.join(KIT_GETSOCKOPT_PIN)))
    };
    let pick = |backend, why: String| Selection {
        backend,
        why,
        warning: None,
    };
    match choice {
        BackendChoice::Off => pick(Backend::Off, "TTM_BACKEND=off".into()),
        BackendChoice::Bpf => match host.open_map(map) {
            Ok(map_fd) => pick(
                Backend::Bpf { map_fd },
                format!("TTM_BACKEND=bpf: pinned map {map_name} opened read-only"),
            ),
            Err(e) => Selection {
                backend: Backend::None,
                why: format!("TTM_BACKEND=bpf but pinned map {map_name} cannot be used ({e})"),
                warning: Some(format!(
                    "TTM_BACKEND=bpf but pinned map {map_name} cannot be used ({e}); \
                     addresses stay as the kernel reports them"
                )),
            },
        },
        BackendChoice::Kmod => match module() {
            Some((name, abi)) => pick(
                Backend::Kmod(abi),
                format!("TTM_BACKEND=kmod: kernel module {name} loaded"),
            ),
            None => pick(
                Backend::Kmod(KmodAbi::Ttm),
                "TTM_BACKEND=kmod: asking getsockopt(SOL_IP, 1345) (no kgwttm/toa module listed; \
                 the eBPF kit answers it)"
                    .into(),
            ),
        },
        BackendChoice::Auto => {
            let map_err = match host.open_map(map) {
                Ok(map_fd) => {
                    return pick(
                        Backend::Bpf { map_fd },
                        format!("auto: pinned map {map_name} opened read-only"),
                    );
                }
                Err(e) => e,
            };
            if let Some((name, abi)) = module() {
                return pick(
                    Backend::Kmod(abi),
                    format!("auto: kernel module {name} loaded (pinned map {map_name}: {map_err})"),
                );
            }
            if kit_present() {
                return pick(
                    Backend::Kmod(KmodAbi::Ttm),
                    format!(
                        "auto: ttm eBPF kit present but pinned map {map_name} not readable \
                         ({map_err}); using its getsockopt answer"
                    ),
                );
            }
            pick(
                Backend::None,
                format!(
                    "auto: nothing installed (pinned map {map_name}: {map_err}; \
                     no kgwttm or toa module; no ttm eBPF program)"
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeHost {
        map: Result<c_int, c_int>,
        modules: Vec<&'static str>,
        files: Vec<&'static str>,
    }

    impl Host for FakeHost {
        fn open_map(&self, _: &CStr) -> io::Result<c_int> {
            self.map.map_err(io::Error::from_raw_os_error)
        }
        fn modules(&self) -> Vec<String> {
            self.modules.iter().map(|s| s.to_string()).collect()
        }
        fn exists(&self, p: &Path) -> bool {
            self.files.iter().any(|f| Path::new(f) == p)
        }
    }

    const MAP: &CStr = c"/sys/fs/bpf/ttm/ttm_peers";

    fn host(
        map: Result<c_int, c_int>,
        modules: &[&'static str],
        files: &[&'static str],
    ) -> FakeHost {
        FakeHost {
            map,
            modules: modules.to_vec(),
            files: files.to_vec(),
        }
    }

    #[test]
    fn auto_prefers_the_map_then_modules_then_the_kit() {
        let s = select(BackendChoice::Auto, MAP, &host(Ok(9), &["kgwttm"], &[]));
        assert_eq!(s.backend, Backend::Bpf { map_fd: 9 });
        let s = select(
            BackendChoice::Auto,
            MAP,
            &host(Err(libc::ENOENT), &["x", "kgwttm"], &[]),
        );
        assert_eq!(s.backend, Backend::Kmod(KmodAbi::Ttm));
        assert!(s.why.contains("kgwttm"), "{}", s.why);
        let s = select(
            BackendChoice::Auto,
            MAP,
            &host(Err(libc::ENOENT), &["toa"], &[]),
        );
        assert_eq!(s.backend, Backend::Kmod(KmodAbi::Nat64));
        let s = select(
            BackendChoice::Auto,
            MAP,
            &host(Err(libc::EPERM), &[], &["/sys/fs/bpf/ttm/ttm_peers"]),
        );
        assert_eq!(s.backend, Backend::Kmod(KmodAbi::Ttm));
        let s = select(
            BackendChoice::Auto,
            MAP,
            &host(Err(libc::ENOENT), &[], &["/sys/fs/bpf/ttm/link_getsockopt"]),
        );
        assert_eq!(s.backend, Backend::Kmod(KmodAbi::Ttm));
        let s = select(
            BackendChoice::Auto,
            MAP,
            &host(Err(libc::ENOENT), &["toa_other"], &[]),
        );
        assert_eq!(s.backend, Backend::None);
        assert!(s.why.contains("nothing installed"), "{}", s.why);
        assert!(s.warning.is_none());
    }

    #[test]
    fn explicit_choices() {
        let s = select(BackendChoice::Off, MAP, &host(Ok(3), &["kgwttm"], &[]));
        assert_eq!(s.backend, Backend::Off);
        let s = select(BackendChoice::Bpf, MAP, &host(Err(libc::ENOENT), &[], &[]));
        assert_eq!(s.backend, Backend::None);
        assert!(s.warning.is_some());
        let s = select(BackendChoice::Kmod, MAP, &host(Ok(3), &[], &[]));
        assert_eq!(s.backend, Backend::Kmod(KmodAbi::Ttm));
        let s = select(BackendChoice::Kmod, MAP, &host(Ok(3), &["toa"], &[]));
        assert_eq!(s.backend, Backend::Kmod(KmodAbi::Nat64));
    }

    #[test]
    fn names() {
        assert_eq!(Backend::Off.name(), c"off");
        assert_eq!(Backend::None.name(), c"none");
        assert_eq!(Backend::Kmod(KmodAbi::Ttm).name(), c"kmod");
        assert_eq!(Backend::Bpf { map_fd: 1 }.name(), c"bpf");
        assert!(!Backend::None.in_use());
        assert_eq!(Backend::None.lookup(0), Lookup::Nothing);
    }

    #[test]
    fn kmod_on_a_plain_socket_finds_nothing_and_keeps_errno() {
        // SAFETY: plain socket(2); closed below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        assert!(fd >= 0);
        errno::set(1234);
        assert_eq!(Backend::Kmod(KmodAbi::Ttm).lookup(fd), Lookup::Nothing);
        assert_eq!(Backend::Kmod(KmodAbi::Nat64).lookup(fd), Lookup::Nothing);
        assert_eq!(errno::get(), 1234);
        assert_eq!(
            Backend::Kmod(KmodAbi::Ttm).lookup(-1),
            Lookup::Failed(libc::EBADF)
        );
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
    }
}
