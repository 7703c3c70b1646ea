//! The BPF filesystem and what is attached to a test's cgroups.

use std::ffi::CString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use super::process::run_to_end;

pub const BPFFS: &str = "/sys/fs/bpf";

/// Whether `dir` is itself a bpf mount, per /proc/mounts.
fn is_bpf_mount(dir: &str) -> bool {
    fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let mut f = l.split_whitespace();
            matches!((f.next(), f.next(), f.next()), (Some(_), Some(d), Some("bpf")) if d == dir)
        })
}

/// Makes sure /sys/fs/bpf is a bpffs mount. ttmctl does the same, but the
/// harness must not depend on the machine's state nor on that behaviour
/// (and bpftool silently mounts one wherever it pins otherwise).
pub fn ensure_bpffs() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        if is_bpf_mount(BPFFS) {
            return;
        }
        let target = CString::new(BPFFS).expect("no NUL");
        let kind = CString::new("bpf").expect("no NUL");
        // SAFETY: all pointers are valid NUL-terminated strings that
        // outlive the call; data may be NULL for bpffs.
        let r = unsafe {
            libc::mount(
                kind.as_ptr(),
                target.as_ptr(),
                kind.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        assert!(
            r == 0,
            "mount -t bpf bpf {BPFFS}: {}",
            io::Error::last_os_error()
        );
        assert!(is_bpf_mount(BPFFS), "{BPFFS} is still not a bpf mount");
    });
}

/// Programs attached to `cgroup` and every cgroup below it, as bpftool
/// reports them: [{"cgroup": path, "programs": [{"id","attach_type","name",..}]}],
/// only cgroups with programs. `bpftool cgroup tree` sees every attachment,
/// links and legacy ones alike, but bpftool 7.1 on a 5.10 kernel asks about
/// attach types that kernel does not know and then lists nothing; so the
/// cgroup links (all ttmctl makes) are added from `bpftool link show`.
/// Panics if bpftool cannot read the cgroup.
pub fn attached(cgroup: &Path) -> Vec<Value> {
    let mut tree = bpftool_json(&[
        "cgroup",
        "tree",
        cgroup.to_str().expect("UTF-8 cgroup path"),
    ]);
    let mut result: Vec<Value> = tree.as_array_mut().map(std::mem::take).unwrap_or_default();
    let mut below = Vec::new();
    cgroup_ids(cgroup, &mut below);
    let names = bpftool_json(&["prog", "show"]);
    let name_of = |id: &Value| {
        names
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["id"] == *id)
            .map_or(Value::Null, |p| p["name"].clone())
    };
    for link in bpftool_json(&["link", "show"])
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some((_, path)) = below
            .iter()
            .find(|(id, _)| link["type"] == "cgroup" && link["cgroup_id"] == *id)
        else {
            continue;
        };
        let path = path.display().to_string();
        if !result.iter().any(|c| c["cgroup"] == path.as_str()) {
            result.push(serde_json::json!({"cgroup": path, "programs": []}));
        }
        let entry = result
            .iter_mut()
            .find(|c| c["cgroup"] == path.as_str())
            .expect("just added");
        let programs = entry["programs"].as_array_mut().expect("bpftool's shape");
        if !programs.iter().any(|p| p["id"] == link["prog_id"]) {
            programs.push(serde_json::json!({
                "id": link["prog_id"],
                "attach_type": link["attach_type"],
                "name": name_of(&link["prog_id"]),
            }));
        }
    }
    result.retain(|c| c["programs"].as_array().is_some_and(|p| !p.is_empty()));
    result
}

/// `bpftool -j ARGS` parsed; panics if it fails.
fn bpftool_json(args: &[&str]) -> Value {
    let out = run_to_end(
        Command::new("bpftool").arg("-j").args(args),
        Duration::from_secs(30),
    );
    let text = out.expect_success(&format!("bpftool {}", args.join(" ")));
    if text.trim().is_empty() {
        return Value::Array(Vec::new());
    }
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("bpftool JSON ({e}): {text}"))
}

/// (cgroup id, path) of `dir` and every cgroup below it: a cgroup2
/// directory's inode number is its cgroup id.
fn cgroup_ids(dir: &Path, out: &mut Vec<(u64, PathBuf)>) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs::metadata(dir) else { return };
    out.push((meta.ino(), dir.to_path_buf()));
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            cgroup_ids(&entry.path(), out);
        }
    }
}

/// Names of all programs attached at or below `cgroup`.
pub fn attached_names(cgroup: &Path) -> Vec<String> {
    attached(cgroup)
        .iter()
        .flat_map(|c| c["programs"].as_array().cloned().unwrap_or_default())
        .map(|p| p["name"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// `attached_names`, sorted, with ttm_getsockopt_compat (what kernels
/// without bpf_set_retval run) named for the role it shares with
/// ttm_getsockopt, for tests that check which roles are attached.
pub fn attached_roles(cgroup: &Path) -> Vec<String> {
    let mut names: Vec<String> = attached_names(cgroup)
        .into_iter()
        .map(|n| {
            if n == "ttm_getsockopt_compat" {
                "ttm_getsockopt".to_owned()
            } else {
                n
            }
        })
        .collect();
    names.sort();
    names
}

/// Asserts that nothing is attached at or below `cgroup` and that none of
/// `pin_dirs` exists: what a test checks after `ttmctl unload` / `simulate
/// stop`, before the topology (and so the cgroup) goes away.
///
/// The kernel detaches a link whose last pin went in a deferred work
/// item, an instant after the unlink returned: a loaded machine can show
/// it still attached for a moment, so this waits up to 5 s for it to go.
pub fn assert_nothing_left(cgroup: &Path, pin_dirs: &[&Path]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let progs = attached(cgroup);
        let progs: Vec<&Value> = progs
            .iter()
            .filter(|c| c["programs"].as_array().is_some_and(|p| !p.is_empty()))
            .collect();
        if progs.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "programs still attached under {}: {progs:?}",
            cgroup.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for dir in pin_dirs {
        assert!(!dir.exists(), "pin dir {} left behind", dir.display());
    }
}

/// A directory on bpffs that this harness owns; removed recursively on
/// drop (unlinking a pinned link detaches it once nothing else holds it).
pub struct PinDir {
    path: PathBuf,
}

impl PinDir {
    /// `/sys/fs/bpf/<name>`; must not exist yet.
    pub fn new(name: &str) -> PinDir {
        ensure_bpffs();
        assert!(
            !name.is_empty() && !name.contains('/'),
            "bad pin dir name {name:?}"
        );
        let path = Path::new(BPFFS).join(name);
        assert!(
            !path.exists(),
            "{} exists already: leaked by an earlier run, or names are not unique",
            path.display()
        );
        PinDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the directory now (if it exists); Err says why not.
    pub fn remove(&self) -> io::Result<()> {
        match fs::remove_dir_all(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!("harness: rm -r {}: {e}", self.path.display());
        }
    }
}

/// The kernel lets an unprivileged user read a pinned map (read-only fd,
/// pin o+r) from Linux 5.19 on, and on older ones only while
/// kernel.unprivileged_bpf_disabled is 0 (Debian's default is 2).
pub fn kernel_allows_unprivileged_reads() -> bool {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut n = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse::<u32>().ok());
    let v = (n.next().unwrap_or(0), n.next().unwrap_or(0));
    let disabled = fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled")
        .map(|s| s.trim() != "0")
        .unwrap_or(true);
    v >= (5, 19) || !disabled
}
