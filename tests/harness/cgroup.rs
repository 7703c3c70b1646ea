//! A cgroup v2 subtree of the test's own: `ttm-test-<id>/{server,client}`.
//!
//! Only this subtree is ever created, written to or removed; nothing is
//! attached to or placed in the root cgroup.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// The cgroup2 mount point, from /proc/mounts: on hybrid-layout machines it
/// is not /sys/fs/cgroup (here /sys/fs/cgroup/unified).
pub fn cgroup2_mount() -> &'static Path {
    static MOUNT: OnceLock<PathBuf> = OnceLock::new();
    MOUNT.get_or_init(|| {
        let mounts = fs::read_to_string("/proc/mounts").expect("read /proc/mounts");
        mounts
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let (_dev, dir, kind) = (f.next()?, f.next()?, f.next()?);
                (kind == "cgroup2").then(|| PathBuf::from(unescape_mount_path(dir)))
            })
            .next()
            .expect("no cgroup2 filesystem in /proc/mounts: ttm needs cgroup v2")
    })
}

/// /proc/mounts writes space, tab, newline and backslash as octal escapes.
fn unescape_mount_path(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// PIDs listed in `<dir>/cgroup.procs` (empty if the cgroup is gone).
pub fn procs(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Kills every process in the cgroup `root` and below, and waits until
/// none is left; Err holds the PIDs still listed after `timeout`.
/// cgroup.kill (5.14+) kills the whole subtree at once, including processes
/// forked while it runs; before it, the PIDs `dirs` (root and the cgroups
/// below it) list are signalled until none is left.
fn kill_subtree(root: &Path, dirs: &[PathBuf], timeout: Duration) -> Result<(), Vec<i32>> {
    let via_kill_file = fs::write(root.join("cgroup.kill"), "1").is_ok();
    let deadline = Instant::now() + timeout;
    loop {
        let left: Vec<i32> = dirs.iter().flat_map(|d| procs(d)).collect();
        if left.is_empty() && !populated(root) {
            return Ok(());
        }
        if !via_kill_file {
            for pid in &left {
                // SAFETY: kill(2) on a PID read from our own cgroup; a
                // stale PID at worst fails with ESRCH.
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
        }
        if Instant::now() > deadline {
            return Err(left);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Whether any process lives in `dir` or below (`cgroup.events`).
pub fn populated(dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.events"))
        .map(|t| t.lines().any(|l| l == "populated 1"))
        .unwrap_or(false)
}

/// A cgroup directory under the cgroup2 mount with leaf children, removed
/// (after killing what runs in it) on drop.
pub struct CgroupTree {
    root: PathBuf,
    children: Vec<PathBuf>,
    removed: bool,
}

impl CgroupTree {
    /// Creates `<cgroup2>/<name>` and `<cgroup2>/<name>/<child>` for each
    /// child. `name` must be a single new path component.
    pub fn create(name: &str, children: &[&str]) -> CgroupTree {
        assert!(
            !name.is_empty() && !name.contains('/') && name != "." && name != "..",
            "cgroup name {name:?} must be one path component"
        );
        let root = cgroup2_mount().join(name);
        if let Err(e) = fs::create_dir(&root) {
            panic!("cannot create cgroup {}: {e}", root.display());
        }
        // From here on Drop removes whatever exists.
        let mut tree = CgroupTree {
            root,
            children: Vec::new(),
            removed: false,
        };
        for child in children {
            let dir = tree.root.join(child);
            if let Err(e) = fs::create_dir(&dir) {
                panic!("cannot create cgroup {}: {e}", dir.display());
            }
            tree.children.push(dir);
        }
        tree
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of the child cgroup `name` (panics if it was not created).
    pub fn child(&self, name: &str) -> &Path {
        self.children
            .iter()
            .find(|c| c.file_name().is_some_and(|f| f == name))
            .unwrap_or_else(|| panic!("no child cgroup {name} in {}", self.root.display()))
    }

    /// Kills every process in the subtree and waits until it is empty.
    pub fn kill_all(&self, timeout: Duration) -> Result<(), String> {
        if !self.root.exists() {
            return Ok(());
        }
        let mut dirs = vec![self.root.clone()];
        dirs.extend(self.children.iter().cloned());
        kill_subtree(&self.root, &dirs, timeout).map_err(|left| {
            format!(
                "processes {left:?} still in {} after {timeout:?}",
                self.root.display()
            )
        })
    }

    /// Kills what runs in the subtree and removes it, children first.
    pub fn remove(&mut self) -> Result<(), String> {
        if self.removed {
            return Ok(());
        }
        self.kill_all(Duration::from_secs(10))?;
        for dir in self
            .children
            .iter()
            .rev()
            .chain(std::iter::once(&self.root))
        {
            rmdir_retrying(dir).map_err(|e| format!("rmdir {}: {e}", dir.display()))?;
        }
        self.removed = true;
        Ok(())
    }
}

/// rmdir that tolerates the short EBUSY window after the last process of a
/// cgroup exited, and a directory that is already gone.
fn rmdir_retrying(dir: &Path) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!("harness: {e}");
        }
    }
}

/// A cgroup made below another one the test owns (e.g. the `app.service`
/// of a slice), killed and removed on drop. Declare it after the
/// topology that owns its parent, so it goes first.
pub struct ChildCgroup {
    path: PathBuf,
}

impl ChildCgroup {
    /// Creates `<parent>/<name>`; `name` must be one new path component.
    pub fn create(parent: &Path, name: &str) -> ChildCgroup {
        assert!(
            !name.is_empty() && !name.contains('/') && name != "." && name != "..",
            "cgroup name {name:?} must be one path component"
        );
        let path = parent.join(name);
        fs::create_dir(&path)
            .unwrap_or_else(|e| panic!("cannot create cgroup {}: {e}", path.display()));
        ChildCgroup { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What systemd does to a unit's cgroup when the unit stops: kill
    /// what runs in it and remove the directory.
    pub fn remove(&self) -> Result<(), String> {
        if !self.path.exists() {
            return Ok(());
        }
        kill_subtree(
            &self.path,
            std::slice::from_ref(&self.path),
            Duration::from_secs(10),
        )
        .map_err(|_| format!("{} still populated", self.path.display()))?;
        rmdir_retrying(&self.path).map_err(|e| format!("rmdir {}: {e}", self.path.display()))
    }

    /// ... and what it does when the unit starts again: a new directory
    /// at the same path, which is another cgroup.
    pub fn recreate(&self) {
        self.remove().unwrap_or_else(|e| panic!("{e}"));
        fs::create_dir(&self.path)
            .unwrap_or_else(|e| panic!("cannot create cgroup {}: {e}", self.path.display()));
    }
}

impl Drop for ChildCgroup {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!("harness: {e}");
        }
    }
}
