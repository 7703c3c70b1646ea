//! Pin directories on the BPF filesystem. A pin path that is not on bpffs
//! is refused (bpftool would silently mount one there; we say so instead),
//! except the conventional /sys/fs/bpf, which is mounted when missing.

use anyhow::{Context, Result, bail};
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::escape;

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
pub const DEFAULT_ROOT: &str = "/sys/fs/bpf";

fn fs_type(path: &Path) -> Option<i64> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statfs writes only the struct passed; the path is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    (unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0).then_some(st.f_type as i64)
}

/// Is `path` (an existing directory) on bpffs?
pub fn is_bpffs(path: &Path) -> bool {
    fs_type(path) == Some(BPF_FS_MAGIC)
}

/// Mounts bpffs on /sys/fs/bpf if nothing is mounted there.
pub fn ensure_default_mount() -> Result<()> {
    let root = Path::new(DEFAULT_ROOT);
    if is_bpffs(root) {
        return Ok(());
    }
    let (src, dst, ty) = (c"bpf", c"/sys/fs/bpf", c"bpf");
    // SAFETY: all strings are NUL-terminated literals; no data argument.
    let r = unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), ty.as_ptr(), 0, std::ptr::null()) };
    if r != 0 {
        bail!(
            "bpffs is not mounted on {DEFAULT_ROOT} and mounting it failed: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Fails when `dir` exists but is not a directory: on bpffs, most likely
/// a pinned map or link given where the directory holding it was meant.
pub fn require_dir(dir: &Path) -> Result<()> {
    let Ok(meta) = fs::metadata(dir) else {
        return Ok(());
    };
    if meta.is_dir() {
        return Ok(());
    }
    let shown = escape::path(dir);
    if is_bpffs(dir) {
        bail!(
            "pin dir {shown} is a pinned BPF object (a map, program or link), not a directory; \
             pass the directory that holds it{}",
            dir.parent()
                .map(|p| format!(" ({})", escape::path(p)))
                .unwrap_or_default()
        );
    }
    bail!("pin dir {shown} is not a directory");
}

/// Whether `dir` is the root of a mount (its parent is on another device).
fn is_mount_root(dir: &Path) -> bool {
    match (fs::metadata(dir), dir.parent().map(fs::metadata)) {
        (Ok(d), Some(Ok(p))) => d.dev() != p.dev(),
        _ => true,
    }
}

/// Creates `dir` on bpffs unless it exists, and returns its absolute path.
/// Its parent must exist on bpffs: a missing one is more likely a typo
/// than a wish for new directories that `unload` would then leave behind.
/// The directory itself is checked by `claim_pin_dir`, once locked: until
/// then an unload holding the lock may remove it again.
pub fn create_pin_dir(dir: &Path) -> Result<PathBuf> {
    let dir = std::path::absolute(dir).with_context(|| format!("pin dir {}", escape::path(dir)))?;
    let shown = escape::path(&dir);
    if dir.starts_with(DEFAULT_ROOT) {
        ensure_default_mount()?;
    }
    require_dir(&dir)?;
    let Some(parent) = dir.parent() else {
        bail!("pin dir {shown}: the filesystem root is no pin directory");
    };
    if !dir.exists() {
        if !parent.exists() {
            let existing = parent
                .ancestors()
                .find(|a| a.exists())
                .unwrap_or(Path::new("/"));
            if is_bpffs(existing) {
                bail!(
                    "pin dir {shown}: its parent {} does not exist; create it first \
                     (mkdir -p {}) or choose a directory in {}",
                    escape::path(parent),
                    escape::path(parent),
                    escape::path(existing)
                );
            }
            bail!(
                "pin dir {shown} is not on a BPF filesystem ({} is not bpffs); \
                 use a directory under {DEFAULT_ROOT}",
                escape::path(existing)
            );
        }
        if !parent.is_dir() {
            bail!(
                "pin dir {shown}: its parent {} is not a directory",
                escape::path(parent)
            );
        }
        if !is_bpffs(parent) {
            bail!(
                "pin dir {shown}: its parent {} is not on a BPF filesystem \
                 (mount -t bpf bpf {}, or use a directory under {DEFAULT_ROOT})",
                escape::path(parent),
                escape::path(parent)
            );
        }
        match fs::create_dir(&dir) {
            Ok(()) => {}
            // Another ttmctl made it first: the lock decides who goes on.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(e).with_context(|| format!("creating pin dir {shown}"));
            }
        }
    }
    Ok(dir)
}

/// Checks the (locked) pin dir `dir` is a directory of its own on bpffs,
/// and makes it world-searchable so an unprivileged server can reach the
/// peer map inside.
pub fn claim_pin_dir(dir: &Path) -> Result<()> {
    let shown = escape::path(dir);
    if !is_bpffs(dir) {
        bail!("pin dir {shown} is not on a BPF filesystem");
    }
    if is_mount_root(dir) {
        bail!(
            "pin dir {shown} is the root of a BPF filesystem; give ttm a directory of its \
             own in it, e.g. {}",
            escape::path(&dir.join("ttm"))
        );
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod 755 {shown}"))
}

pub fn chmod(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {:o} {}", mode, escape::path(path)))
}
