//! What libttm.so exports and needs: accept, accept4, getpeername and the
//! C API, nothing else; SONAME libttm.so.1; dlsym bound to its pre-2.34
//! version node.

mod harness;
mod preload;

use std::collections::BTreeSet;
use std::process::Command;

fn tool(cmd: &str, args: &[&str]) -> String {
    let lib = preload::libttm();
    let out = Command::new(cmd)
        .args(args)
        .arg(&lib)
        .output()
        .expect("binutils (gcc pulls it in)");
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn exports_exactly_the_hooks_and_the_c_api() {
    let out = tool("nm", &["-D", "--defined-only"]);
    let names: BTreeSet<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    let want: BTreeSet<&str> = [
        "accept",
        "accept4",
        "getpeername",
        "ttm_backend",
        "ttm_get_peer",
        "ttm_get_peer_raw",
        "ttm_stat",
        "ttm_version",
    ]
    .into();
    assert_eq!(names, want, "dynamic symbol table:\n{out}");
    // They are functions (T), not data.
    for l in out.lines() {
        assert_eq!(l.split_whitespace().nth(1), Some("T"), "{l}");
    }
}

#[test]
fn soname_is_libttm_so_1() {
    let out = tool("readelf", &["-d"]);
    assert!(out.contains("Library soname: [libttm.so.1]"), "{out}");
}

#[test]
fn dlsym_uses_the_old_version_node() {
    let out = tool("objdump", &["-T"]);
    let dlsym: Vec<&str> = out.lines().filter(|l| l.ends_with(" dlsym")).collect();
    assert_eq!(dlsym.len(), 1, "{out}");
    #[cfg(target_arch = "x86_64")]
    assert!(dlsym[0].contains("GLIBC_2.2.5"), "{}", dlsym[0]);
    #[cfg(target_arch = "aarch64")]
    assert!(dlsym[0].contains("GLIBC_2.17"), "{}", dlsym[0]);
    // The rest of the baseline comes from Rust's std; show it so a change
    // is visible in the test log.
    let mut versions: Vec<&str> = out
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("(GLIBC_") || w.starts_with("GLIBC_"))
        })
        .collect();
    versions.sort();
    versions.dedup();
    eprintln!("glibc version nodes needed: {versions:?}");
}
