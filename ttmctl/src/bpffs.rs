//! Pin directories on the BPF filesystem. A pin path that is not on bpffs
//! is refused (bpftool would silently mount one there; we say so instead),
//! except the conventional /sys/fs/bpf, which is mounted when missing.

use anyhow::{Context, Result, bail};
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

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

/// Creates `dir` (and missing parents) on bpffs, world-searchable so an
/// unprivileged server can reach the peer map inside.
pub fn create_pin_dir(dir: &Path) -> Result<PathBuf> {
    if dir.starts_with(DEFAULT_ROOT) {
        ensure_default_mount()?;
    }
    let parent = dir.parent().context("pin dir has no parent")?;
    if !parent.exists() || !is_bpffs(parent) && !dir.exists() {
        bail!(
            "pin dir {}: its parent {} is not on a BPF filesystem (mount -t bpf bpf {})",
            dir.display(),
            parent.display(),
            parent.display()
        );
    }
    if !dir.exists() {
        fs::create_dir(dir).with_context(|| format!("creating pin dir {}", dir.display()))?;
    }
    if !is_bpffs(dir) {
        bail!("pin dir {} is not on a BPF filesystem", dir.display());
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    Ok(dir.to_path_buf())
}

pub fn chmod(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {:o} {}", mode, path.display()))
}
