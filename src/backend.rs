//! Where the real client comes from, chosen once at load time.
//!
//! - `bpf`: the ttm eBPF kit (found by its pins at load time), asked
//!   `getsockopt(fd, SOL_IP, 1345)`: its cgroup/getsockopt program answers
//!   from the socket's own storage. The library keeps no map fd: a number
//!   it kept could be closed by a daemon and reused for another object
//!   (another map, a file, a socket), or name a map `ttmctl unload` and
//!   `load` have since replaced, and the kernel would answer for that
//!   object instead. The question names only the socket, so it always
//!   reaches whichever ttm programs serve the socket's cgroup now, needs
//!   no privilege on any kernel, and costs the same one syscall as a map
//!   lookup did (BENCHMARKS.md).
//! - `kmod`: the same question for the vendor's kgwttm module. With a
//!   module named `toa` (DPVS and its forks, which rewrite IPv4 clients in
//!   the kernel and answer only the NAT64 ABI) it asks
//!   `getsockopt(fd, IPPROTO_IP, 4096)` instead, the one question that
//!   module answers.
//! - `none` (nothing installed) and `off` (turned off): hooks cost nothing
//!   beyond the real call.
//!
//! Every backend only ever has data for TCP sockets (the kit parses TCP
//! options, the modules answer for TCP sockets), which is what lets the
//! hooks skip an SO_TYPE/SO_PROTOCOL syscall: a UDP socket simply gets
//! "nothing".

use std::ffi::CStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use libc::{c_int, socklen_t};

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
    /// The ttm eBPF kit, through its getsockopt answer.
    Bpf,
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
            Backend::Bpf => c"bpf",
        }
    }
}

impl PeerSource for Backend {
    fn in_use(&self) -> bool {
        matches!(self, Backend::Kmod(_) | Backend::Bpf)
    }

    fn lookup(&self, fd: c_int) -> Lookup {
        let _errno = errno::Guard::save();
        let found = match *self {
            Backend::Off | Backend::None => return Lookup::Nothing,
            Backend::Bpf | Backend::Kmod(KmodAbi::Ttm) => getsockopt_ttm(fd),
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
    /// Names of loaded kernel modules.
    fn modules(&self) -> Vec<String>;
    fn exists(&self, path: &Path) -> bool;
}

/// The real host: /proc/modules, access(2).
pub struct RealHost;

impl Host for RealHost {
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

fn read_small_file(path: &CStr) -> String {
    String::from_utf8_lossy(&crate::small_file::read(path).unwrap_or_default()).into_owned()
}

/// Vendor modules we know, in order of preference, and their ABI.
const MODULES: [(&str, KmodAbi); 2] = [("kgwttm", KmodAbi::Ttm), ("toa", KmodAbi::Nat64)];

/// Pins `ttmctl load` always makes: their presence says the kit is loaded
/// there (one is enough: a reader may see the directory half-replaced by
/// a concurrent reload).
pub const KIT_PINS: [&str; 2] = ["ttm_peers", "link_getsockopt"];

/// Whether `pin_dir` holds the ttm eBPF kit's pins.
pub fn kit_at(pin_dir: &Path, host: &impl Host) -> bool {
    KIT_PINS.iter().any(|p| host.exists(&pin_dir.join(p)))
}

/// Picks the backend. `pin_dir` is where the kit is pinned (TTM_PIN_DIR,
/// or TTM_BPF_MAP's directory).
pub fn select(choice: BackendChoice, pin_dir: &Path, host: &impl Host) -> Selection {
    let dir = pin_dir.display();
    let module = || {
        let loaded = host.modules();
        MODULES
            .into_iter()
            .find(|(name, _)| loaded.iter().any(|l| l == name))
    };
    let pick = |backend, why: String| Selection {
        backend,
        why,
        warning: None,
    };
    const ASKED: &str =
        "asking getsockopt(SOL_IP, 1345), which its cgroup/getsockopt program answers";
    match choice {
        BackendChoice::Off => pick(Backend::Off, "TTM_BACKEND=off".into()),
        BackendChoice::Bpf if kit_at(pin_dir, host) => pick(
            Backend::Bpf,
            format!("TTM_BACKEND=bpf: ttm eBPF kit pinned at {dir}; {ASKED}"),
        ),
        BackendChoice::Bpf => Selection {
            backend: Backend::None,
            why: format!("TTM_BACKEND=bpf but no ttm eBPF kit is pinned at {dir}"),
            warning: Some(format!(
                "TTM_BACKEND=bpf but no ttm eBPF kit is pinned at {dir} (TTM_PIN_DIR, \
                 TTM_BPF_MAP); addresses stay as the kernel reports them"
            )),
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
            if kit_at(pin_dir, host) {
                return pick(
                    Backend::Bpf,
                    format!("auto: ttm eBPF kit pinned at {dir}; {ASKED}"),
                );
            }
            if let Some((name, abi)) = module() {
                return pick(
                    Backend::Kmod(abi),
                    format!("auto: kernel module {name} loaded (no ttm eBPF kit pinned at {dir})"),
                );
            }
            pick(
                Backend::None,
                format!(
                    "auto: nothing installed (no ttm eBPF kit pinned at {dir}; \
                     no kgwttm or toa module)"
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeHost {
        modules: Vec<&'static str>,
        files: Vec<&'static str>,
    }

    impl Host for FakeHost {
        fn modules(&self) -> Vec<String> {
            self.modules.iter().map(|s| s.to_string()).collect()
        }
        fn exists(&self, p: &Path) -> bool {
            self.files.iter().any(|f| Path::new(f) == p)
        }
    }

    const DIR: &str = "/sys/fs/bpf/ttm";

    fn host(modules: &[&'static str], files: &[&'static str]) -> FakeHost {
        FakeHost {
            modules: modules.to_vec(),
            files: files.to_vec(),
        }
    }

    fn auto(h: &FakeHost) -> Selection {
        select(BackendChoice::Auto, Path::new(DIR), h)
    }

    #[test]
    fn auto_prefers_the_kit_then_modules() {
        let map = "/sys/fs/bpf/ttm/ttm_peers";
        let link = "/sys/fs/bpf/ttm/link_getsockopt";
        for pins in [&[map][..], &[link], &[map, link]] {
            let s = auto(&host(&["kgwttm"], pins));
            assert_eq!(s.backend, Backend::Bpf, "{pins:?}");
            assert!(s.why.contains("pinned at /sys/fs/bpf/ttm"), "{}", s.why);
        }
        let s = auto(&host(&["x", "kgwttm"], &[]));
        assert_eq!(s.backend, Backend::Kmod(KmodAbi::Ttm));
        assert!(s.why.contains("kgwttm"), "{}", s.why);
        let s = auto(&host(&["toa"], &["/sys/fs/bpf/other/ttm_peers"]));
        assert_eq!(s.backend, Backend::Kmod(KmodAbi::Nat64));
        let s = auto(&host(&["toa_other"], &["/sys/fs/bpf/ttm/link_parse"]));
        assert_eq!(s.backend, Backend::None);
        assert!(s.why.contains("nothing installed"), "{}", s.why);
        assert!(s.warning.is_none());
    }

    #[test]
    fn explicit_choices() {
        let dir = Path::new(DIR);
        let kit = host(&["kgwttm"], &["/sys/fs/bpf/ttm/ttm_peers"]);
        assert_eq!(select(BackendChoice::Off, dir, &kit).backend, Backend::Off);
        assert_eq!(select(BackendChoice::Bpf, dir, &kit).backend, Backend::Bpf);
        let s = select(BackendChoice::Bpf, dir, &host(&["kgwttm"], &[]));
        assert_eq!(s.backend, Backend::None);
        assert!(s.warning.is_some());
        let s = select(BackendChoice::Kmod, dir, &kit);
        assert_eq!(s.backend, Backend::Kmod(KmodAbi::Ttm));
        let s = select(BackendChoice::Kmod, dir, &host(&["toa"], &[]));
        assert_eq!(s.backend, Backend::Kmod(KmodAbi::Nat64));
    }

    #[test]
    fn names() {
        assert_eq!(Backend::Off.name(), c"off");
        assert_eq!(Backend::None.name(), c"none");
        assert_eq!(Backend::Kmod(KmodAbi::Ttm).name(), c"kmod");
        assert_eq!(Backend::Bpf.name(), c"bpf");
        assert!(!Backend::None.in_use());
        assert!(Backend::Bpf.in_use());
        assert_eq!(Backend::None.lookup(0), Lookup::Nothing);
    }

    #[test]
    fn getsockopt_on_a_plain_socket_finds_nothing_and_keeps_errno() {
        // SAFETY: plain socket(2); closed below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        assert!(fd >= 0);
        errno::set(1234);
        for b in [
            Backend::Bpf,
            Backend::Kmod(KmodAbi::Ttm),
            Backend::Kmod(KmodAbi::Nat64),
        ] {
            assert_eq!(b.lookup(fd), Lookup::Nothing, "{b:?}");
            assert_eq!(errno::get(), 1234);
            assert_eq!(b.lookup(-1), Lookup::Failed(libc::EBADF), "{b:?}");
        }
        // SAFETY: fd is ours.
        unsafe { libc::close(fd) };
    }
}
