//! Helpers for libttm's own preload tests (`tests/preload_*.rs`): find the
//! built libttm.so, compile the C probe and the fake kernel module with
//! gcc, and run programs with and without the library on loopback.
//!
//! Every run starts from a clean environment for ttm (no inherited TTM_*
//! or LD_PRELOAD) and points TTM_BPF_MAP at a path that does not exist
//! (in a directory no `ttmctl load` exports a trust list for), so
//! whatever kernel side the host has loaded cannot change the outcome;
//! tests that want a backend preload `fake_kmod.c` and set TTM_BACKEND=kmod.
//!
//! `tests/preload_e2e.rs` (libttm on the real eBPF kit, in the harness's
//! namespaces) also builds its servers and client here: `accept_threads.c`,
//! `e2e_client.c` and the C example (`c_example`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

// Every preload test file compiles this module but uses only part of it.
#[allow(unused_imports)]
pub use crate::harness::binaries::{PYTHON, libttm, profile_dir};
pub const NO_MAP: &str = "/nonexistent/ttm-preload-tests/ttm_peers";

pub fn source(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/preload")
        .join(name)
}

/// A scratch directory for one test, removed by [`Scratch`]'s Drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let d = profile_dir()
            .join("preload-tests")
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Compiles C sources with gcc into `out` (a shared object with
/// `-shared`), failing the test with gcc's message.
pub fn gcc(out: &Path, args: &[&str], sources: &[&Path]) {
    let o = Command::new("gcc")
        .args(["-Wall", "-Wextra", "-Werror", "-O1", "-o"])
        .arg(out)
        .args(sources)
        .args(args)
        .output()
        .expect("gcc (scripts/deps.sh installs it)");
    assert!(
        o.status.success(),
        "gcc failed for {}:\n{}",
        out.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Builds once per source version: the output is named by a hash of the
/// source and flags, compiled under a temporary name and renamed into
/// place, so concurrent test processes and later runs share it.
fn built(cell: &'static OnceLock<PathBuf>, name: &str, src: &str, args: &[&str]) -> PathBuf {
    built_from(cell, name, &[source(src)], args)
}

/// As [`built`], for `files[0]` compiled anywhere in the repository;
/// the other files (headers it includes) are part of the hash.
fn built_from(
    cell: &'static OnceLock<PathBuf>,
    name: &str,
    files: &[PathBuf],
    args: &[&str],
) -> PathBuf {
    use std::hash::{Hash, Hasher};
    cell.get_or_init(|| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for f in files {
            std::fs::read(f)
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
                .hash(&mut h);
        }
        args.hash(&mut h);
        let dir = profile_dir().join("preload-tests");
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join(format!("{:016x}-{name}", h.finish()));
        if !out.exists() {
            let tmp = dir.join(format!("{}.{}.tmp", name, std::process::id()));
            gcc(&tmp, args, &[&files[0]]);
            std::fs::rename(&tmp, &out).unwrap();
        }
        out
    })
    .clone()
}

/// tests/preload/accept_threads.c: N threads accepting on one listener.
pub fn accept_threads() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    built(
        &P,
        "accept_threads",
        "accept_threads.c",
        &["-pthread", "-ldl"],
    )
}

/// tests/preload/lookup_cost.c: what one lookup costs, each way.
pub fn lookup_cost() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    built(
        &P,
        "lookup_cost",
        "lookup_cost.c",
        &["-O2", "-pthread", "-ldl"],
    )
}

/// tests/preload/e2e_client.c: the end-to-end tests' client.
pub fn e2e_client() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    built(&P, "e2e_client", "e2e_client.c", &["-pthread"])
}

/// examples/c/server.c, built as its README says (`-I include -ldl`).
pub fn c_example() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let include = format!("-I{}", root.join("include").display());
    let files = [root.join("examples/c/server.c"), root.join("include/ttm.h")];
    built_from(&P, "c_example", &files, &[include.as_str(), "-ldl"])
}

pub fn probe() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    built(&P, "probe", "probe.c", &["-ldl"])
}

pub fn fake_kmod() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    built(
        &P,
        "libfake_kmod.so",
        "fake_kmod.c",
        &["-shared", "-fPIC", "-ldl"],
    )
}

/// What to preload.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Preload {
    Nothing,
    Libttm,
    /// libttm.so, then the fake kmod (whose getsockopt libttm then calls).
    LibttmAndFake,
    /// The fake alone: what the program sees with a module and no libttm.
    Fake,
}

pub struct Run {
    pub stdout: String,
    pub stderr: String,
}

/// Runs `program args` with `env` on top of a clean ttm environment.
pub fn run(program: &Path, args: &[&str], preload: Preload, env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(program);
    cmd.args(args);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("TTM_") || k == "LD_PRELOAD" || k.starts_with("FAKE_TTM") {
            cmd.env_remove(&*k);
        }
    }
    cmd.env("TTM_BPF_MAP", NO_MAP);
    let list = match preload {
        Preload::Nothing => None,
        Preload::Libttm => Some(libttm().display().to_string()),
        Preload::LibttmAndFake => Some(format!("{}:{}", libttm().display(), fake_kmod().display())),
        Preload::Fake => Some(fake_kmod().display().to_string()),
    };
    if let Some(list) = list {
        cmd.env("LD_PRELOAD", list);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out: Output = cmd.output().unwrap();
    let run = Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        out.status.success(),
        "{} {args:?} ({preload:?}, {env:?}) failed: {:?}\nstdout:\n{}\nstderr:\n{}",
        program.display(),
        out.status,
        run.stdout,
        run.stderr
    );
    run
}

/// Masks what differs between two runs of the same scenario: the
/// ephemeral port of AF_INET/AF_INET6 addresses in the probe's `addr=`
/// fields. Optionally drops the `lookups=` field.
pub fn normalize(stdout: &str, keep_lookups: bool) -> String {
    let mut out = String::new();
    for line in stdout.lines() {
        let mut fields = Vec::new();
        for f in line.split(' ') {
            if let Some(hex) = f.strip_prefix("addr=") {
                fields.push(format!("addr={}", mask_port(hex)));
            } else if f.starts_with("lookups=") && !keep_lookups {
                continue;
            } else {
                fields.push(f.to_owned());
            }
        }
        out.push_str(&fields.join(" "));
        out.push('\n');
    }
    out
}

/// `0200xxxx...`/`0a00xxxx...` (AF_INET/AF_INET6, little-endian family):
/// bytes 2..4 are the port.
pub fn mask_port(hex: &str) -> String {
    if (hex.starts_with("0200") || hex.starts_with("0a00")) && hex.len() > 4 {
        let end = hex.len().min(8);
        format!("{}{}{}", &hex[..4], "p".repeat(end - 4), &hex[end..])
    } else {
        hex.to_owned()
    }
}

/// One probe output line, parsed.
#[derive(Debug)]
pub struct Line {
    pub label: String,
    pub call: String,
    pub size: u32,
    pub nulls: String,
    pub ok: bool,
    pub errno: i32,
    pub len: u32,
    pub addr: String,
    pub lookups: i64,
}

pub fn parse_lines(stdout: &str) -> Vec<Line> {
    stdout
        .lines()
        .filter(|l| l.contains(" ret="))
        .map(|l| {
            let mut words = l.split(' ');
            let label = words.next().unwrap().to_owned();
            let call = words.next().unwrap().to_owned();
            let mut line = Line {
                label,
                call,
                size: 0,
                nulls: String::new(),
                ok: false,
                errno: 0,
                len: 0,
                addr: String::new(),
                lookups: 0,
            };
            for w in words {
                let (k, v) = w.split_once('=').unwrap_or((w, ""));
                match k {
                    "size" => line.size = v.parse().unwrap(),
                    "null" => line.nulls = v.to_owned(),
                    "ret" => line.ok = v == "ok",
                    "errno" => line.errno = v.parse().unwrap(),
                    "len" => line.len = v.parse().unwrap(),
                    "addr" => line.addr = v.to_owned(),
                    "lookups" => line.lookups = v.parse().unwrap(),
                    _ => {}
                }
            }
            line
        })
        .collect()
}

/// The bytes the rewrite rules promise for a socket of `family` (2 or 10)
/// and a real client, in hex; None when the LB address must stay.
pub fn expected_hex(family: i32, client: std::net::SocketAddr, size: u32) -> Option<String> {
    use std::net::SocketAddr;
    let mut b = Vec::new();
    match (family, client) {
        (2, SocketAddr::V4(c)) => {
            b.extend_from_slice(&2u16.to_ne_bytes());
            b.extend_from_slice(&c.port().to_be_bytes());
            b.extend_from_slice(&c.ip().octets());
            b.extend_from_slice(&[0; 8]);
        }
        (2, SocketAddr::V6(_)) if size < 28 => return None,
        (_, c) => {
            let ip = match c {
                SocketAddr::V4(c) => c.ip().to_ipv6_mapped(),
                SocketAddr::V6(c) => *c.ip(),
            };
            b.extend_from_slice(&10u16.to_ne_bytes());
            b.extend_from_slice(&c.port().to_be_bytes());
            b.extend_from_slice(&[0; 4]);
            b.extend_from_slice(&ip.octets());
            b.extend_from_slice(&[0; 4]);
        }
    }
    let n = (size as usize).min(b.len());
    Some(b[..n].iter().map(|x| format!("{x:02x}")).collect())
}
