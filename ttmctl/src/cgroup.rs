//! Finding cgroup v2: its mount (never assumed to be /sys/fs/cgroup — hybrid
//! layouts mount it elsewhere), a cgroup directory's id, and back.

use anyhow::{Context, Result, bail};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::escape;

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
const CGROUP1_SUPER_MAGIC: i64 = 0x0027_e0eb;

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
    let shown = escape::path(dir);
    let canon = match fs::canonicalize(dir) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("cgroup {shown}: no such directory")
        }
        Err(e) => bail!("cgroup {shown}: {e}"),
    };
    let c = std::ffi::CString::new(canon.as_os_str().as_encoded_bytes())?;
    // SAFETY: statfs only writes the struct we pass; the path is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        bail!("cgroup {shown}: {}", std::io::Error::last_os_error());
    }
    let mount = || {
        cgroup2_mount()
            .map(|p| escape::path(&p))
            .unwrap_or_else(|_| "missing".into())
    };
    match st.f_type as i64 {
        CGROUP2_SUPER_MAGIC => {}
        CGROUP1_SUPER_MAGIC => bail!(
            "{shown} is in a cgroup v1 hierarchy; ttm attaches to cgroup v2 (mounted here at {})",
            mount()
        ),
        _ => bail!(
            "{shown} is not a cgroup v2 directory (the cgroup2 mount here is {})",
            mount()
        ),
    }
    if !canon.is_dir() {
        // e.g. <cgroup>/cgroup.procs: attaching to it fails with EBADF.
        bail!(
            "{shown} is a file of the cgroup filesystem, not a cgroup; pass the directory \
             that holds it ({})",
            canon.parent().map(escape::path).unwrap_or_default()
        );
    }
    Ok(canon)
}

/// Whether `dir` (resolved) is the root of the cgroup2 hierarchy, which
/// holds every process on the host. Its directory is inode 1 wherever it
/// is mounted.
pub fn is_root(dir: &Path) -> Result<bool> {
    Ok(dir == cgroup2_mount()? || id(dir)? == 1)
}

/// The cgroup v2 directory of a process, from /proc/PID/cgroup's `0::`
/// line, resolved.
pub fn of_pid(pid: u32) -> Result<PathBuf> {
    let text = match fs::read_to_string(format!("/proc/{pid}/cgroup")) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("no process {pid}"),
        Err(e) => bail!("reading /proc/{pid}/cgroup: {e}"),
    };
    let Some(rel) = text.lines().find_map(|l| l.strip_prefix("0::")) else {
        bail!("process {pid} is in no cgroup v2 (only in v1 hierarchies)");
    };
    if rel.ends_with(" (deleted)") {
        bail!("process {pid}'s cgroup {} was removed", escape::value(rel));
    }
    resolve(&cgroup2_mount()?.join(rel.trim_start_matches('/')))
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
