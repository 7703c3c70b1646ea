//! Checks every command makes before touching the kernel, each failing with
//! one sentence that says what to do.

use anyhow::{Result, bail};

/// ttm's oldest kernel: TCP header options in sockops arrived in 5.10.
pub const MIN_KERNEL: (u32, u32) = (5, 10);

pub fn require_root(what: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "ttmctl {what} needs root (CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN to load and attach eBPF programs); run it with sudo"
        );
    }
    Ok(())
}

/// (major, minor, release string) of the running kernel.
pub fn kernel_version() -> (u32, u32, String) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse::<u32>().ok());
    let major = nums.next().unwrap_or(0);
    let minor = nums.next().unwrap_or(0);
    (major, minor, release)
}

/// Where the running kernel describes its own types. ttm_deferred reads a
/// listener's TCP_DEFER_ACCEPT setting through it (CO-RE).
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// 0 lets unprivileged processes use bpf(2); 1 and 2 do not (before
/// 5.19 that includes reading a pinned map).
pub const UNPRIVILEGED_BPF_DISABLED: &str = "/proc/sys/kernel/unprivileged_bpf_disabled";

pub fn kernel_btf() -> bool {
    std::path::Path::new(KERNEL_BTF).exists()
}

/// Before 5.11 the kernel charges BPF maps and programs to the loading
/// user's RLIMIT_MEMLOCK (64 KiB to 8 MiB by default) instead of the memory
/// cgroup, and refuses ttm's maps with EPERM well before they fit. Raised
/// to unlimited for this process, as libbpf and bpftool do; later kernels
/// ignore it, and a caller without CAP_SYS_RESOURCE keeps its own limit
/// (only root loads anything).
pub fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads one valid rlimit struct; a failure changes
    // nothing and is left to the map creation it would have helped.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
}

pub fn require_kernel() -> Result<()> {
    let (major, minor, release) = kernel_version();
    if (major, minor) < MIN_KERNEL {
        bail!(
            "kernel {release} is too old: ttm needs Linux >= {}.{} (TCP header options in sockops); \
             on older kernels use the vendor's module with libttm.so's kmod backend",
            MIN_KERNEL.0,
            MIN_KERNEL.1
        );
    }
    Ok(())
}
