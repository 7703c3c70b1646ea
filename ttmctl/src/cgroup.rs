//! Finding cgroup v2: its mount (never assumed to be /sys/fs/cgroup — hybrid
//! layouts mount it elsewhere), a cgroup directory's id, and back.

use anyhow::{Context, Result, bail};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// The first cgroup2 mount in /proc/mounts.
pub fn cgroup2_mount() -> Result<PathBuf> {
    let mounts = fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[2] == "cgroup2").then(|| PathBuf::from(unescape(f[1])))
        })
        .next()
        .context(
            "no cgroup v2 mount in /proc/mounts; ttm attaches to cgroup v2 \
             (mount -t cgroup2 none /sys/fs/cgroup, or boot with systemd.unified_cgroup_hierarchy=1)",
        )
}

/// /proc/mounts escapes spaces and the like as \ooo.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks that `dir` is a cgroup v2 directory and returns it canonical.
pub fn resolve(dir: &Path) -> Result<PathBuf> {
    let canon = fs::canonicalize(dir)
        .with_context(|| format!("cgroup {}: no such directory", dir.display()))?;
    let c = std::ffi::CString::new(canon.as_os_str().as_encoded_bytes())?;
    // SAFETY: statfs only writes the struct we pass; the path is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        bail!(
            "cgroup {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
    }
    if st.f_type as i64 != CGROUP2_SUPER_MAGIC {
        bail!(
            "{} is not a cgroup v2 directory (the cgroup2 mount here is {})",
            dir.display(),
            cgroup2_mount()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "missing".into())
        );
    }
    Ok(canon)
}

/// A cgroup's id as the kernel reports it in link info: its inode number.
pub fn id(dir: &Path) -> Result<u64> {
    Ok(fs::metadata(dir)?.ino())
}

/// The directory of the cgroup with this id, searched under the mount.
pub fn path_of(id: u64) -> Option<PathBuf> {
    let root = cgroup2_mount().ok()?;
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        // A cgroup removed while we walk is simply not the one sought;
        // giving up the whole walk would report a live cgroup as gone.
        let Ok(meta) = fs::metadata(&dir) else {
            continue;
        };
        if meta.ino() == id {
            return Some(dir);
        }
        if let Ok(rd) = fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
    None
}

/// The systemd unit whose own cgroup `dir` is, if it is one that systemd
/// removes when the unit stops or restarts (a service, or a scope such as
/// a container's): programs attached to it go with it, and the directory
/// made for the next run is another cgroup.
pub fn removed_on_restart(dir: &Path) -> Option<String> {
    let name = dir.file_name()?.to_str()?;
    [".service", ".scope"]
        .iter()
        .any(|s| name.len() > s.len() && name.ends_with(s))
        .then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_units_own_cgroup_is_told_from_a_slice() {
        let u = |p: &str| removed_on_restart(Path::new(p));
        assert_eq!(
            u("/sys/fs/cgroup/system.slice/nginx.service").as_deref(),
            Some("nginx.service")
        );
        assert_eq!(
            u("/sys/fs/cgroup/kubepods.slice/x/cri-containerd-ab.scope").as_deref(),
            Some("cri-containerd-ab.scope")
        );
        assert_eq!(u("/sys/fs/cgroup/system.slice"), None);
        assert_eq!(u("/sys/fs/cgroup"), None);
        assert_eq!(u("/sys/fs/cgroup/.service"), None);
    }

    #[test]
    fn unescapes_proc_mounts_octal() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape(r"/trail\04"), r"/trail\04");
    }
}
