//! Guards around `ttmctl`: the kernel side loaded on a topology's server
//! cgroup, and the LB emulator on its client cgroup. Each has a pin
//! directory of its own and undoes itself on drop.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::binaries::ttmctl_path;
use super::bpffs::{PinDir, ensure_bpffs};
use super::process::{Finished, run_to_end};
use super::topology::Topology;
use super::unique_id;

/// Runs `ttmctl <args>` (as root, in the host namespace: attaching to a
/// cgroup does not depend on the network namespace).
pub fn ttmctl(args: &[&str]) -> Finished {
    ensure_bpffs();
    run_to_end(
        Command::new(ttmctl_path()).args(args),
        Duration::from_secs(60),
    )
}

/// `ttmctl <args>`'s stdout; panics with its stderr if it fails.
pub fn ttmctl_ok(args: &[&str]) -> String {
    ttmctl(args).expect_success(&format!("ttmctl {}", args.join(" ")))
}

fn json(text: &str, what: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"))
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("harness paths are UTF-8")
}

/// Reports a failed cleanup: a test failure, unless the test already failed.
fn cleanup_failed(msg: String) {
    if std::thread::panicking() {
        eprintln!("harness: {msg}");
    } else {
        panic!("{msg}");
    }
}

/// Set to 1 (the kernel matrix does, for a second run of the getsockopt
/// tests): every `KernelSide` is loaded with `--getsockopt-compat`, the
/// getsockopt program kernels without bpf_set_retval (5.10-5.17) get.
pub const GETSOCKOPT_COMPAT_ENV: &str = "TTM_TEST_GETSOCKOPT_COMPAT";

pub fn getsockopt_compat_forced() -> bool {
    std::env::var_os(GETSOCKOPT_COMPAT_ENV).is_some_and(|v| v == "1")
}

/// The ttm programs loaded on the topology's server cgroup
/// (`ttmctl load`), unloaded on drop.
pub struct KernelSide<'t> {
    topo: &'t Topology,
    cgroup: PathBuf,
    pin: PinDir,
    loaded: bool,
}

impl<'t> KernelSide<'t> {
    /// `ttmctl load --cgroup <server> --pin-dir /sys/fs/bpf/ttm-test-<id> <extra>`.
    pub fn load(topo: &'t Topology, extra: &[&str]) -> KernelSide<'t> {
        KernelSide::load_on(topo, topo.server_cgroup(), extra)
    }

    /// The same on another cgroup of the test's own (e.g. a child of the
    /// server cgroup made with `ChildCgroup`).
    pub fn load_on(topo: &'t Topology, cgroup: &Path, extra: &[&str]) -> KernelSide<'t> {
        let (id, _) = unique_id();
        let mut ks = KernelSide {
            topo,
            cgroup: cgroup.to_owned(),
            pin: PinDir::new(&format!("ttm-test-{id}")),
            loaded: false,
        };
        ks.reload(extra);
        ks
    }

    fn load_args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "load",
            "--cgroup",
            path_str(&self.cgroup),
            "--pin-dir",
            path_str(self.pin.path()),
        ];
        if getsockopt_compat_forced() && !extra.contains(&"--getsockopt-compat") {
            args.push("--getsockopt-compat");
        }
        args.extend_from_slice(extra);
        args
    }

    /// Runs `ttmctl load` again on the same pin dir (replaces the set).
    pub fn reload(&mut self, extra: &[&str]) {
        // Counted as loaded before the call: a half-done load must be
        // cleaned up too.
        self.loaded = true;
        let args = self.load_args(extra);
        ttmctl_ok(&args);
    }

    /// Runs `ttmctl load` with these args and returns the outcome, for
    /// tests of rejected arguments.
    pub fn try_reload(&mut self, extra: &[&str]) -> Finished {
        self.loaded = true;
        let args = self.load_args(extra);
        ttmctl(&args)
    }

    pub fn pin_dir(&self) -> &Path {
        self.pin.path()
    }

    /// The pinned SK_STORAGE map the fixtures read by fd.
    pub fn peers_map(&self) -> PathBuf {
        self.pin.path().join("ttm_peers")
    }

    /// `ttmctl status --json --pin-dir <pin>`.
    pub fn status(&self) -> Value {
        let pin = path_str(self.pin.path());
        json(
            &ttmctl_ok(&["status", "--json", "--pin-dir", pin]),
            "ttmctl status --json",
        )
    }

    /// `ttmctl status --json` whatever its exit code: (code, document).
    /// The code is the verdict (0 ok, 1 error, 2 degraded, 3 not loaded).
    pub fn status_exit(&self) -> (i32, Value) {
        status_exit(self.pin.path())
    }

    /// One counter from `status()["counters"]`.
    pub fn counter(&self, name: &str) -> u64 {
        counter_of(&self.status(), name)
    }

    /// What getsockopt 4096 answers where it refuses with `errno`: that
    /// errno from ttm_getsockopt, the kernel's ENOPROTOOPT from the
    /// variant without bpf_set_retval (as `status` says which is loaded).
    pub fn refusal_errno(&self, errno: i64) -> i64 {
        let status = self.status();
        match status["getsockopt_compat"].as_bool() {
            Some(true) => i64::from(libc::ENOPROTOOPT),
            Some(false) => errno,
            None => panic!("no getsockopt_compat in status: {status}"),
        }
    }

    /// `ttmctl unload`; panics if it fails. Drop then has nothing to do.
    pub fn unload(&mut self) {
        let pin = path_str(self.pin.path()).to_owned();
        ttmctl_ok(&["unload", "--pin-dir", &pin]);
        self.loaded = false;
    }
}

/// `ttmctl status --json --pin-dir <pin>` whatever its exit code.
pub fn status_exit(pin: &Path) -> (i32, Value) {
    let out = ttmctl(&["status", "--json", "--pin-dir", path_str(pin)]);
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("ttmctl status killed: {out:?}"));
    (code, json(&out.stdout, "ttmctl status --json"))
}

/// `status["counters"][name]` as a number (panics naming what is there).
pub fn counter_of(status: &Value, name: &str) -> u64 {
    status["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in status: {status}"))
}

impl Drop for KernelSide<'_> {
    fn drop(&mut self) {
        if !self.loaded {
            return;
        }
        let pin = path_str(self.pin.path()).to_owned();
        let out = ttmctl(&["unload", "--pin-dir", &pin]);
        if out.status.success() && !self.pin.path().exists() {
            return;
        }
        // Last resort: unpinning the links detaches the programs.
        let rm = self.pin.remove();
        cleanup_failed(format!(
            "ttmctl unload --pin-dir {pin} failed ({:?}: {}); rm -r: {rm:?}",
            out.status,
            out.stderr.trim()
        ));
    }
}

/// The LB emulator (`ttmctl simulate`) on the topology's client cgroup,
/// stopped on drop.
pub struct LbEmulator<'t> {
    topo: &'t Topology,
    pin: PinDir,
    active: bool,
}

impl<'t> LbEmulator<'t> {
    /// `ttmctl simulate start --cgroup <client> --pin-dir
    /// /sys/fs/bpf/ttm-lb-<id> <args>`, e.g. `&["--client", "203.0.113.7:4242"]`.
    pub fn start(topo: &'t Topology, args: &[&str]) -> LbEmulator<'t> {
        let (id, _) = unique_id();
        let mut lb = LbEmulator {
            topo,
            pin: PinDir::new(&format!("ttm-lb-{id}")),
            active: false,
        };
        lb.set(args);
        lb
    }

    /// Starts again with new option args: updates the option in place.
    pub fn set(&mut self, args: &[&str]) {
        self.active = true;
        let mut all = vec![
            "simulate",
            "start",
            "--cgroup",
            path_str(self.topo.client_cgroup()),
            "--pin-dir",
            path_str(self.pin.path()),
        ];
        all.extend_from_slice(args);
        ttmctl_ok(&all);
    }

    pub fn pin_dir(&self) -> &Path {
        self.pin.path()
    }

    /// `ttmctl simulate status --json`: {"armed","written","reserve_failed","store_failed"}.
    pub fn status(&self) -> Value {
        let pin = path_str(self.pin.path());
        json(
            &ttmctl_ok(&["simulate", "status", "--json", "--pin-dir", pin]),
            "ttmctl simulate status --json",
        )
    }

    /// One number from `status()`.
    pub fn stat(&self, name: &str) -> u64 {
        let s = self.status();
        s[name]
            .as_u64()
            .unwrap_or_else(|| panic!("no {name} in simulate status: {s}"))
    }

    pub fn stop(&mut self) {
        let pin = path_str(self.pin.path()).to_owned();
        ttmctl_ok(&["simulate", "stop", "--pin-dir", &pin]);
        self.active = false;
    }
}

impl Drop for LbEmulator<'_> {
    fn drop(&mut self) {
        if !self.active {
            return;
        }
        let pin = path_str(self.pin.path()).to_owned();
        let out = ttmctl(&["simulate", "stop", "--pin-dir", &pin]);
        if out.status.success() && !self.pin.path().exists() {
            return;
        }
        let rm = self.pin.remove();
        cleanup_failed(format!(
            "ttmctl simulate stop --pin-dir {pin} failed ({:?}: {}); rm -r: {rm:?}",
            out.status,
            out.stderr.trim()
        ));
    }
}
