//! End-to-end test harness for ttm.
//!
//! The root crate is only a preloadable cdylib, so its tests drive real
//! processes: servers and clients in network namespaces and cgroup v2
//! leaves of their own, `ttmctl` attaching real programs to those cgroups,
//! and the fixtures in `tests/fixtures/` doing the socket calls a real
//! server does. Everything a test creates has a unique name and is torn
//! down by a guard's `Drop`, also when the test panics.
//!
//! Test files use it with `mod harness;`. A typical test:
//!
//! ```text
//! let topo = Topology::new();                      // netns pair + cgroups
//! let ks = KernelSide::load(&topo, &[]);           // ttmctl load on `server`
//! let _lb = LbEmulator::start(&topo, &["--client", "203.0.113.7:4242"]);
//! let server = echo_server(&topo.server().launch(),         // .nobody(),
//!     &["--family", "inet", "--map", map_path]);            // .env(..)
//! let recs = connect(&topo.client().launch(),
//!     &topo.server_v4().to_string(), server.port(), 1, &[]);
//! assert_eq!(recs[0]["reply"]["accept"], json!(["203.0.113.7", 4242]));
//! ```
//!
//! Guards borrow the topology, so the compiler keeps them declared after
//! it and they are dropped (unloaded, stopped) before it is torn down.

// Every test binary compiles this whole module but uses only part of it.
#![allow(dead_code, unused_imports)]

pub mod binaries;
pub mod bpffs;
pub mod cgroup;
pub mod fixtures;
pub mod netns;
pub mod process;
pub mod topology;
pub mod ttmctl;

use std::sync::atomic::{AtomicU32, Ordering};

pub use binaries::{PYTHON, fixture, libttm, ttmctl_path};
pub use fixtures::{HeldConnection, connect, echo_server, run_client};
pub use process::{Finished, Launch, Server, run_to_end};
pub use topology::{Topology, TopologyIds};
pub use ttmctl::{KernelSide, LbEmulator};

/// Fails the calling test with a clear message when it is not run as root:
/// namespaces, cgroups and eBPF need it, and a test that cannot do its job
/// must not pass silently.
pub fn require_root() {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "this test needs root (network namespaces, cgroups, eBPF); \
         run `sudo -E cargo test` or `make test` as root (euid is {euid})"
    );
}

/// `<pid>-<counter>`: unique among concurrently running test processes and
/// among the tests of one process, short enough to build interface names
/// of at most 15 bytes from.
pub fn unique_id() -> (String, u32) {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    (format!("{}-{n}", std::process::id()), n)
}
