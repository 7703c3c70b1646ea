//! The packages of `scripts/package.sh` (`make package`): ttm, libttm1,
//! libttm-dev (.deb) and ttm, ttm-libs, ttm-devel (.rpm). What each
//! contains, that lintian --pedantic and rpmlint find nothing to fix, that
//! the library and ttmctl they ship need nothing newer than glibc 2.17,
//! that the unit (its sandbox score and capabilities), the generated man
//! pages, completions and --version, and the service wrapper are sound;
//! that the arm64 packages run under qemu-user; and, as root, a full life
//! cycle on this machine: `dpkg -i`, the INSTALLED ttmctl (through the
//! service's own wrapper and /etc/ttm/ttm.conf) loading on a test cgroup,
//! a server preloaded with the INSTALLED libttm.so.1 seeing the client an
//! LB emulator claims, then `dpkg --purge` leaving no file, program or pin
//! behind.
//!
//! The packages are built once per test process into <target>/packages,
//! reusing the cargo target dir of the tests (the first build downloads
//! zig and cargo-zigbuild from PyPI and builds cargo-about, which takes a
//! few minutes).

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use harness::binaries::profile_dir;
use harness::bpffs::{PinDir, assert_nothing_left, attached_names};
use harness::{Finished, LbEmulator, PYTHON, Server, Topology, require_root, run_to_end};
use serde_json::Value;

/// The glibc every shipped ELF file must load on.
const GLIBC_BASELINE: (u32, u32) = (2, 17);
/// First line of the /etc/ttm/ttm.conf this test writes: a package found
/// installed with it was leaked by an earlier, killed run of this test.
const CONF_MARKER: &str = "# written by ttm tests/packaging.rs";
/// The client the LB emulator claims: an IPv6 client on an IPv4 listener,
/// which only the library can show (the kernel side cannot put an IPv6
/// address into a sockaddr_in).
const CLAIM: &str = "[2001:db8::7]:4242";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn multiarch() -> String {
    format!("{}-linux-gnu", std::env::consts::ARCH)
}

fn deb_libdir() -> String {
    format!("/usr/lib/{}", multiarch())
}

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Runs a command to its end (5 minutes at most) and returns stdout;
/// panics with stderr if it fails.
fn run_ok(cmd: &mut Command) -> String {
    let what = format!("{cmd:?}");
    run_to_end(cmd, Duration::from_secs(300)).expect_success(&what)
}

fn run(cmd: &mut Command) -> Finished {
    run_to_end(cmd, Duration::from_secs(300))
}

fn tool(program: &str, args: &[&str]) -> String {
    run_ok(Command::new(program).args(args))
}

/// A directory removed with everything in it on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let (id, _) = harness::unique_id();
        let p = std::env::temp_dir().join(format!("ttm-pkgtest-{what}-{id}"));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The Debian revision of the packages (scripts/package.sh's RELEASE).
const RELEASE: &str = "2";

/// The three Debian packages (and their RPM names) of the split.
const DEB_NAMES: [&str; 3] = ["ttm", "libttm1", "libttm-dev"];
const RPM_NAMES: [&str; 3] = ["ttm", "ttm-libs", "ttm-devel"];

struct Packages {
    /// By package name: ttm, libttm1, libttm-dev.
    debs: BTreeMap<String, PathBuf>,
    /// By package name: ttm, ttm-libs, ttm-devel.
    rpms: BTreeMap<String, PathBuf>,
}

impl Packages {
    fn deb(&self, name: &str) -> &Path {
        &self.debs[name]
    }

    fn rpm(&self, name: &str) -> &Path {
        &self.rpms[name]
    }
}

/// Runs `scripts/package.sh <args>` with the tests' cargo target dir and
/// returns the packages it printed, by name.
fn build_packages(args: &[&str]) -> Result<Packages, String> {
    let target = profile_dir()
        .parent()
        .expect("profile dir has a parent")
        .to_owned();
    let out = run_to_end(
        Command::new(root().join("scripts/package.sh"))
            .args(args)
            .current_dir(root())
            .env("CARGO_TARGET_DIR", &target),
        Duration::from_secs(2400),
    );
    if !out.status.success() || out.timed_out {
        return Err(format!(
            "scripts/package.sh {args:?} failed ({:?}, timed out: {}):\n{}\n{}",
            out.status, out.timed_out, out.stdout, out.stderr
        ));
    }
    let printed: Vec<PathBuf> = out
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| l.ends_with(".deb") || l.ends_with(".rpm"))
        .map(PathBuf::from)
        .collect();
    let mut p = Packages {
        debs: BTreeMap::new(),
        rpms: BTreeMap::new(),
    };
    for f in printed {
        if !f.is_file() {
            return Err(format!("{} does not exist", f.display()));
        }
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(deb) = name.strip_suffix(".deb") {
            // <name>_<version>_<arch>.deb
            let pkg = deb.split('_').next().unwrap().to_owned();
            p.debs.insert(pkg, f);
        } else {
            // <name>-<version>-<release>.<arch>.rpm
            let pkg = name
                .rsplitn(3, '-')
                .nth(2)
                .expect("<name>-<version>-<release>.<arch>.rpm")
                .to_owned();
            p.rpms.insert(pkg, f);
        }
    }
    let debs: Vec<&str> = p.debs.keys().map(String::as_str).collect();
    let rpms: Vec<&str> = p.rpms.keys().map(String::as_str).collect();
    let mut want_debs = DEB_NAMES.to_vec();
    want_debs.sort_unstable();
    let mut want_rpms = RPM_NAMES.to_vec();
    want_rpms.sort_unstable();
    if debs != want_debs || rpms != want_rpms {
        return Err(format!(
            "package.sh built {debs:?} and {rpms:?}:\n{}",
            out.stdout
        ));
    }
    Ok(p)
}

/// `scripts/package.sh` into <target>/packages, once per test process.
fn packages() -> &'static Packages {
    static BUILT: OnceLock<Result<Packages, String>> = OnceLock::new();
    match BUILT.get_or_init(|| build_packages(&[])) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

/// The three .deb unpacked (`dpkg-deb -x`) into one temporary directory,
/// as they are installed together.
fn unpacked_debs() -> TempDir {
    let dir = TempDir::new("deb");
    for deb in packages().debs.values() {
        run_ok(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dir.path()));
    }
    dir
}

/// Installed paths of each .deb (files and symlinks, no directories).
fn expected_deb_files(pkg: &str) -> BTreeSet<String> {
    let lib = deb_libdir();
    let doc = |f: &str| format!("/usr/share/doc/{pkg}/{f}");
    let mut files: Vec<String> = vec![doc("copyright"), doc("changelog.Debian.gz")];
    match pkg {
        "ttm" => {
            files.extend(
                [
                    "/etc/ttm/ttm.conf",
                    "/lib/systemd/system/ttm.service",
                    "/lib/systemd/system/ttm-check.service",
                    "/lib/systemd/system/ttm-check.timer",
                    "/usr/libexec/ttm/ttm-service",
                    "/usr/sbin/ttmctl",
                    "/usr/share/bash-completion/completions/ttmctl",
                    "/usr/share/fish/vendor_completions.d/ttmctl.fish",
                    "/usr/share/zsh/vendor-completions/_ttmctl",
                    "/usr/share/lintian/overrides/ttm",
                    "/usr/share/doc/ttm/README.md",
                    "/usr/share/doc/ttm/third-party-notices.txt",
                    "/usr/share/doc/ttm/examples/nginx-preload.conf",
                    "/usr/share/doc/ttm/examples/nginx.conf",
                ]
                .map(str::to_owned),
            );
            files.extend(
                man_pages_of_ttmctl()
                    .iter()
                    .map(|p| format!("/usr/share/man/man8/{p}.gz")),
            );
        }
        "libttm1" => files.extend([
            format!("{lib}/libttm.so.1"),
            "/usr/share/man/man7/libttm.7.gz".to_owned(),
            "/usr/share/lintian/overrides/libttm1".to_owned(),
            doc("third-party-notices.txt"),
        ]),
        "libttm-dev" => files.extend([
            "/usr/include/ttm.h".to_owned(),
            format!("{lib}/libttm.so"),
            format!("{lib}/pkgconfig/ttm.pc"),
            doc("examples/server.c"),
        ]),
        other => panic!("no package {other}"),
    }
    files.into_iter().collect()
}

/// Every ttmctl command that has a man page, as argument lists ([] is
/// ttmctl itself): read from the `Commands:` of each --help, recursively,
/// of the ttmctl the tests build (the same clap definition).
fn ttmctl_commands() -> Vec<Vec<String>> {
    static COMMANDS: OnceLock<Vec<Vec<String>>> = OnceLock::new();
    COMMANDS
        .get_or_init(|| {
            let ttmctl = harness::ttmctl_path();
            let mut all = Vec::new();
            let mut todo = vec![Vec::<String>::new()];
            while let Some(cmd) = todo.pop() {
                let help = run_ok(Command::new(&ttmctl).args(&cmd).arg("--help"));
                let subs = help
                    .split("Commands:\n")
                    .nth(1)
                    .map(|rest| {
                        rest.lines()
                            .take_while(|l| !l.trim().is_empty())
                            .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
                            .filter_map(|l| l.split_whitespace().next())
                            .filter(|n| *n != "help")
                            .map(str::to_owned)
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                for sub in subs {
                    let mut next = cmd.clone();
                    next.push(sub);
                    todo.push(next);
                }
                all.push(cmd);
            }
            all.sort();
            all
        })
        .clone()
}

/// The man page of each command: ttmctl.8, ttmctl-<cmd>[-<sub>].8.
fn man_pages_of_ttmctl() -> Vec<String> {
    ttmctl_commands()
        .iter()
        .map(|cmd| {
            let mut name = "ttmctl".to_owned();
            for part in cmd {
                name.push('-');
                name.push_str(part);
            }
            format!("{name}.8")
        })
        .collect()
}

/// `dpkg-deb -c`: (path, is_dir, symlink target) for each member.
fn deb_members(deb: &Path) -> Vec<(String, bool, Option<String>)> {
    let out = run_ok(Command::new("dpkg-deb").arg("-c").arg(deb));
    out.lines()
        .map(|l| {
            // drwxr-xr-x root/root 0 2025-01-01 00:00 ./usr/ [-> target]
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f.len() >= 6, "dpkg-deb -c line: {l}");
            let path = f[5].trim_start_matches('.').to_owned();
            let is_dir = f[0].starts_with('d');
            let target = (f.len() == 8 && f[6] == "->").then(|| f[7].to_owned());
            let path = if is_dir && path.len() > 1 {
                path.trim_end_matches('/').to_owned()
            } else {
                path
            };
            (path, is_dir, target)
        })
        .collect()
}

/// (major, minor[, patch]) of every GLIBC_x.y[.z] version an ELF file
/// needs, from `objdump -T`.
fn glibc_versions(elf: &Path) -> BTreeSet<Vec<u32>> {
    let out = tool("objdump", &["-T", elf.to_str().expect("utf-8 path")]);
    out.split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| v.split('.').map(|n| n.parse().ok()).collect())
        .collect()
}

/// Asserts that `elf` needs no glibc symbol newer than the baseline and
/// only the libraries glibc 2.17 has.
fn assert_glibc_baseline(elf: &Path) {
    let versions = glibc_versions(elf);
    assert!(
        !versions.is_empty(),
        "{}: no GLIBC_ version at all?",
        elf.display()
    );
    let base = vec![GLIBC_BASELINE.0, GLIBC_BASELINE.1];
    let newer: Vec<String> = versions
        .iter()
        .filter(|v| **v > base)
        .map(|v| {
            let parts: Vec<String> = v.iter().map(u32::to_string).collect();
            format!("GLIBC_{}", parts.join("."))
        })
        .collect();
    if !newer.is_empty() {
        let symbols: Vec<String> = tool("objdump", &["-T", elf.to_str().unwrap()])
            .lines()
            .filter(|l| newer.iter().any(|n| l.contains(&format!("({n})"))))
            .map(str::to_owned)
            .collect();
        panic!(
            "{} needs {newer:?}, newer than GLIBC_{}.{}:\n{}",
            elf.display(),
            GLIBC_BASELINE.0,
            GLIBC_BASELINE.1,
            symbols.join("\n")
        );
    }
    let dynamic = tool("readelf", &["-d", elf.to_str().unwrap()]);
    for needed in dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1))
        .map(|s| s.trim_end_matches(']'))
    {
        assert!(
            ["libc.so.6", "libpthread.so.0", "libdl.so.2", "libm.so.6"].contains(&needed)
                || needed.starts_with("ld-linux"),
            "{} needs {needed}: the package depends on libc6 only",
            elf.display()
        );
    }
}

#[test]
fn packaged_binaries_need_glibc_2_17_at_most() {
    let tree = unpacked_debs();
    let lib = tree
        .path()
        .join(deb_libdir().trim_start_matches('/'))
        .join("libttm.so.1");
    let ttmctl = tree.path().join("usr/sbin/ttmctl");
    assert_glibc_baseline(&lib);
    assert_glibc_baseline(&ttmctl);

    // Stripping kept what a preload and -lttm need: the SONAME and every
    // symbol of the symbols file.
    let dynamic = tool("readelf", &["-d", lib.to_str().unwrap()]);
    assert!(
        dynamic.contains("Library soname: [libttm.so.1]"),
        "{dynamic}"
    );
    let exports = tool("nm", &["-D", "--defined-only", lib.to_str().unwrap()]);
    for sym in symbols_file_names() {
        assert!(
            exports.lines().any(|l| l.ends_with(&format!(" {sym}"))),
            "{sym} not exported:\n{exports}"
        );
    }

    // The .rpm ships the very same bytes.
    for (rpm, rpm_path, file) in [
        ("ttm-libs", "/usr/lib64/libttm.so.1", &lib),
        ("ttm", "/usr/sbin/ttmctl", &ttmctl),
    ] {
        let dump = run_ok(
            Command::new("rpm")
                .args(["-qp", "--dump"])
                .arg(packages().rpm(rpm)),
        );
        let line = dump
            .lines()
            .find(|l| l.starts_with(&format!("{rpm_path} ")))
            .unwrap_or_else(|| panic!("{rpm_path} not in rpm --dump of {rpm}:\n{dump}"));
        let digest = line.split_whitespace().nth(3).expect("digest column");
        let sum = tool("sha256sum", &[file.to_str().unwrap()]);
        assert_eq!(
            digest,
            sum.split_whitespace().next().unwrap(),
            "{rpm_path}: rpm and deb differ"
        );
    }
}

/// The names in packaging/deb/libttm1/symbols (` name@Base version`).
fn symbols_file_names() -> Vec<String> {
    let text = fs::read_to_string(root().join("packaging/deb/libttm1/symbols")).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix(' '))
        .map(|l| l.split('@').next().unwrap().to_owned())
        .collect()
}

#[test]
fn deb_contents_and_control() {
    let p = packages();
    for pkg in DEB_NAMES {
        let members = deb_members(p.deb(pkg));
        let files: BTreeSet<String> = members
            .iter()
            .filter(|(_, dir, _)| !dir)
            .map(|(p, _, _)| p.clone())
            .collect();
        assert_eq!(files, expected_deb_files(pkg), "files of {pkg}");
        if pkg == "libttm-dev" {
            let link = members
                .iter()
                .find(|(p, _, _)| p.ends_with("/libttm.so"))
                .expect("libttm.so");
            assert_eq!(link.2.as_deref(), Some("libttm.so.1"), "dev symlink");
        }
    }

    let field = |pkg: &str, name: &str| {
        tool("dpkg-deb", &["-f", p.deb(pkg).to_str().unwrap(), name])
            .trim()
            .to_owned()
    };
    let full = format!("{}-{RELEASE}", version());
    for pkg in DEB_NAMES {
        assert_eq!(field(pkg, "Package"), pkg);
        assert_eq!(field(pkg, "Version"), full);
        for f in ["Maintainer", "Homepage", "Description", "Section"] {
            assert!(!field(pkg, f).is_empty(), "{pkg} has no {f}");
        }
    }
    assert_eq!(field("ttm", "Depends"), "libc6 (>= 2.17)");
    assert_eq!(field("libttm1", "Depends"), "libc6 (>= 2.17)");
    assert_eq!(
        field("libttm-dev", "Depends"),
        format!("libttm1 (= {full})")
    );
    for pkg in ["libttm1", "libttm-dev"] {
        assert_eq!(field(pkg, "Multi-Arch"), "same", "{pkg}");
        // The files came from the one ttm package of 0.1.0-1.
        assert_eq!(field(pkg, "Replaces"), "ttm (<< 0.1.0-2~)", "{pkg}");
        assert_eq!(field(pkg, "Breaks"), "ttm (<< 0.1.0-2~)", "{pkg}");
    }
    assert_eq!(field("libttm1", "Section"), "libs");
    assert_eq!(field("libttm-dev", "Section"), "libdevel");

    let control = |pkg: &str| {
        let dir = TempDir::new("debctl");
        run_ok(
            Command::new("dpkg-deb")
                .arg("-e")
                .arg(p.deb(pkg))
                .arg(dir.path()),
        );
        dir
    };
    let ctl = control("ttm");
    assert_eq!(
        fs::read_to_string(ctl.path().join("conffiles")).unwrap(),
        "/etc/ttm/ttm.conf\n"
    );
    let prerm = fs::read_to_string(ctl.path().join("prerm")).unwrap();
    assert!(prerm.contains("ttm-service remove"), "{prerm}");
    assert!(
        prerm.contains("deb-systemd-invoke stop ttm-check.timer ttm-check.service ttm.service"),
        "{prerm}"
    );
    let postinst = fs::read_to_string(ctl.path().join("postinst")).unwrap();
    assert!(
        postinst.contains("deb-systemd-invoke try-reload-or-restart ttm.service"),
        "an upgrade reloads in place: {postinst}"
    );
    let postrm = fs::read_to_string(ctl.path().join("postrm")).unwrap();
    assert!(postrm.contains("deb-systemd-helper purge"), "{postrm}");
    for s in ["postinst", "prerm", "postrm"] {
        let mode = fs::metadata(ctl.path().join(s))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "{s} is not executable");
        run_ok(Command::new("sh").arg("-n").arg(ctl.path().join(s)));
    }

    // libttm1: the ldconfig trigger, shlibs and the symbols file.
    let ctl = control("libttm1");
    assert!(
        fs::read_to_string(ctl.path().join("triggers"))
            .unwrap()
            .contains("activate-noawait ldconfig")
    );
    assert_eq!(
        fs::read_to_string(ctl.path().join("shlibs")).unwrap(),
        format!("libttm 1 libttm1 (>= {})\n", version())
    );
    let symbols = fs::read_to_string(ctl.path().join("symbols")).unwrap();
    assert!(
        symbols.starts_with("libttm.so.1 libttm1 #MINVER#\n"),
        "{symbols}"
    );
    assert_eq!(
        symbols.lines().filter(|l| l.starts_with(' ')).count(),
        symbols_file_names().len()
    );

    let tree = unpacked_debs();
    // The pkg-config file points at the multiarch directory.
    let pc = fs::read_to_string(
        tree.path()
            .join(deb_libdir().trim_start_matches('/'))
            .join("pkgconfig/ttm.pc"),
    )
    .unwrap();
    assert!(pc.contains(&format!("libdir={}\n", deb_libdir())), "{pc}");
    assert!(pc.contains(&format!("Version: {}\n", version())), "{pc}");
    assert!(!pc.contains('@'), "unsubstituted placeholder:\n{pc}");
    // The nginx drop-in preloads the library where the package puts it.
    let dropin = fs::read_to_string(
        tree.path()
            .join("usr/share/doc/ttm/examples/nginx-preload.conf"),
    )
    .unwrap();
    assert!(
        dropin.contains(&format!(
            "Environment=LD_PRELOAD={}/libttm.so.1\n",
            deb_libdir()
        )),
        "{dropin}"
    );
    // Licenses and notices: the copyright file names both licenses, the
    // notices name crates linked into each binary.
    for pkg in DEB_NAMES {
        let copyright =
            fs::read_to_string(tree.path().join(format!("usr/share/doc/{pkg}/copyright"))).unwrap();
        assert!(copyright.contains("License: MIT or Apache-2.0"), "{pkg}");
        for placeholder in ["@MAINTAINER@", "@HOMEPAGE@", "@PACKAGE@"] {
            assert!(
                !copyright.contains(placeholder),
                "{placeholder} in {pkg}'s copyright"
            );
        }
        let changelog = tool(
            "zcat",
            &[tree
                .path()
                .join(format!("usr/share/doc/{pkg}/changelog.Debian.gz"))
                .to_str()
                .unwrap()],
        );
        assert!(
            changelog.starts_with(&format!("ttm ({full}) ")),
            "{pkg}'s changelog does not start at {full}:\n{changelog}"
        );
    }
    assert_notices(
        &tree
            .path()
            .join("usr/share/doc/ttm/third-party-notices.txt"),
        &["aya", "clap", "anyhow", "serde_json", "libc"],
    );
    assert_notices(
        &tree
            .path()
            .join("usr/share/doc/libttm1/third-party-notices.txt"),
        &["libc", "ctor"],
    );
}

/// The notices cargo-about generated list these crates with a license text.
fn assert_notices(path: &Path, crates: &[&str]) {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for c in crates {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("  {c} "))),
            "{c} not in {}",
            path.display()
        );
    }
    assert!(
        text.contains("Permission is hereby granted"),
        "no MIT text in {}",
        path.display()
    );
    // Only linked crates: none of the build script's own dependencies.
    for build_only in ["clap_mangen", "clap_complete", "sha2"] {
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with(&format!("  {build_only} "))),
            "{build_only} (build.rs only) in {}",
            path.display()
        );
    }
}

#[test]
fn rpm_contents_and_scriptlets() {
    let p = packages();
    let q = |pkg: &str, args: &[&str]| {
        run_ok(Command::new("rpm").arg("-qp").args(args).arg(p.rpm(pkg)))
    };
    let listed =
        |pkg: &str| -> BTreeSet<String> { q(pkg, &["-l"]).lines().map(str::to_owned).collect() };
    let set = |v: Vec<String>| -> BTreeSet<String> { v.into_iter().collect() };
    let lic = |pkg: &str, notices: bool| {
        let mut v = vec![
            format!("/usr/share/licenses/{pkg}"),
            format!("/usr/share/licenses/{pkg}/LICENSE-APACHE"),
            format!("/usr/share/licenses/{pkg}/LICENSE-MIT"),
        ];
        if notices {
            v.push(format!("/usr/share/licenses/{pkg}/third-party-notices.txt"));
        }
        v
    };
    let mut ttm: Vec<String> = [
        "/etc/ttm",
        "/etc/ttm/ttm.conf",
        "/usr/lib/systemd/system/ttm.service",
        "/usr/lib/systemd/system/ttm-check.service",
        "/usr/lib/systemd/system/ttm-check.timer",
        "/usr/libexec/ttm",
        "/usr/libexec/ttm/ttm-service",
        "/usr/sbin/ttmctl",
        "/usr/share/bash-completion/completions/ttmctl",
        "/usr/share/fish/vendor_completions.d/ttmctl.fish",
        "/usr/share/zsh/site-functions/_ttmctl",
        "/usr/share/doc/ttm",
        "/usr/share/doc/ttm/README.md",
        "/usr/share/doc/ttm/examples",
        "/usr/share/doc/ttm/examples/nginx-preload.conf",
        "/usr/share/doc/ttm/examples/nginx.conf",
    ]
    .map(str::to_owned)
    .to_vec();
    ttm.extend(
        man_pages_of_ttmctl()
            .iter()
            .map(|m| format!("/usr/share/man/man8/{m}.gz")),
    );
    ttm.extend(lic("ttm", true));
    assert_eq!(listed("ttm"), set(ttm));
    let mut libs = vec![
        "/usr/lib64/libttm.so.1".to_owned(),
        "/usr/share/man/man7/libttm.7.gz".to_owned(),
    ];
    libs.extend(lic("ttm-libs", true));
    assert_eq!(listed("ttm-libs"), set(libs));
    let mut devel: Vec<String> = [
        "/usr/include/ttm.h",
        "/usr/lib64/libttm.so",
        "/usr/lib64/pkgconfig/ttm.pc",
        "/usr/share/doc/ttm-devel",
        "/usr/share/doc/ttm-devel/examples",
        "/usr/share/doc/ttm-devel/examples/server.c",
    ]
    .map(str::to_owned)
    .to_vec();
    devel.extend(lic("ttm-devel", false));
    assert_eq!(listed("ttm-devel"), set(devel));

    assert_eq!(
        q("ttm", &["-c"]).trim(),
        "/etc/ttm/ttm.conf",
        "config files"
    );
    for pkg in RPM_NAMES {
        assert_eq!(
            q(
                pkg,
                &["--queryformat", "%{NAME} %{VERSION} %{RELEASE} %{ARCH}"]
            ),
            format!("{pkg} {} {RELEASE} {}", version(), std::env::consts::ARCH)
        );
        let changelog = q(pkg, &["--changelog"]);
        assert!(
            changelog.starts_with("* ")
                && changelog.contains(&format!("- {}-{RELEASE}", version())),
            "{pkg}: %changelog does not start at this release:\n{changelog}"
        );
    }

    // The scriptlets are the systemd macros' (no literal %, reload on
    // upgrade), plus the unload of a load made without systemd.
    let scripts = q("ttm", &["--scripts"]);
    assert!(!scripts.contains('%'), "unexpanded macro:\n{scripts}");
    let part = |name: &str| {
        scripts
            .split(&format!("{name} scriptlet"))
            .nth(1)
            .and_then(|s| s.split(" scriptlet").next())
            .unwrap_or_else(|| panic!("no {name} scriptlet:\n{scripts}"))
            .to_owned()
    };
    assert!(
        part("postinstall").contains("preset ttm.service"),
        "{scripts}"
    );
    let preun = part("preuninstall");
    assert!(
        preun.contains("disable --now ttm-check.timer ttm-check.service ttm.service"),
        "{scripts}"
    );
    assert!(preun.contains("ttm-service remove"), "{scripts}");
    assert!(
        part("postuninstall").contains("try-reload-or-restart ttm.service"),
        "{scripts}"
    );
    let lib_scripts = q("ttm-libs", &["--scripts"]);
    assert!(lib_scripts.contains("/sbin/ldconfig"), "{lib_scripts}");

    let provides = q("ttm-libs", &["--provides"]);
    assert!(
        provides.lines().any(|l| l.starts_with("libttm.so.1()")),
        "{provides}"
    );
    let requires = q("ttm-devel", &["--requires"]);
    assert!(
        requires.contains(&format!("ttm-libs(x86-64) = {}-{RELEASE}", version())),
        "{requires}"
    );
    // What rpm's dependency generator found agrees with the baseline.
    for pkg in RPM_NAMES {
        let requires = q(pkg, &["--requires"]);
        for line in requires.lines() {
            if let Some(v) = line
                .split("(GLIBC_")
                .nth(1)
                .and_then(|r| r.split(')').next())
            {
                let v: Vec<u32> = v.split('.').map(|n| n.parse().unwrap()).collect();
                assert!(
                    v <= vec![GLIBC_BASELINE.0, GLIBC_BASELINE.1],
                    "{pkg} requires {line}"
                );
            }
        }
        assert!(!requires.contains("pkg-config"), "{pkg}: {requires}");
    }
}

/// lintian --pedantic finds nothing to say about the .deb files (infos
/// included) but what packaging/deb/*/lintian-overrides justify, and
/// every override is used; rpmlint finds no error in the .rpm files.
#[test]
fn lintian_and_rpmlint_are_clean() {
    let p = packages();
    let mut lintian = Command::new("lintian");
    lintian
        .args([
            "--pedantic",
            "-I",
            "-E",
            "--show-overrides",
            "--tag-display-limit",
            "0",
        ])
        .args(p.debs.values());
    let out = run(&mut lintian);
    eprintln!("lintian:\n{}{}", out.stdout, out.stderr);
    let tags: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with("N:") && !l.trim().is_empty())
        .collect();
    let overridden: Vec<&str> = tags
        .iter()
        .copied()
        .filter(|l| l.starts_with("O:"))
        .collect();
    let rest: Vec<&str> = tags
        .iter()
        .copied()
        .filter(|l| !l.starts_with("O:"))
        .collect();
    assert!(
        rest.is_empty(),
        "lintian --pedantic -I -E reports (status {:?}):\n{}",
        out.status,
        rest.join("\n")
    );
    assert!(out.status.success(), "lintian: {out:?}");
    // Every override line of packaging/deb/*/lintian-overrides matched.
    for pkg in ["ttm", "libttm1"] {
        let file = root().join(format!("packaging/deb/{pkg}/lintian-overrides"));
        for line in fs::read_to_string(&file)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let tag = line.split_whitespace().nth(1).expect("<pkg>: <tag>");
            assert!(
                overridden
                    .iter()
                    .any(|o| o.starts_with(&format!("O: {pkg}")) && o.contains(&format!(" {tag}"))),
                "override {line:?} matched nothing: {overridden:?}"
            );
        }
    }

    let out = run(Command::new("rpmlint")
        .arg("-c")
        .arg(root().join("packaging/rpm/rpmlint.toml"))
        .args(p.rpms.values()));
    eprintln!("rpmlint:\n{}", out.stdout);
    let errors: Vec<&str> = out.stdout.lines().filter(|l| l.contains(": E: ")).collect();
    assert!(errors.is_empty(), "rpmlint errors:\n{}", errors.join("\n"));
    assert!(
        out.stdout.contains(" 0 errors,"),
        "rpmlint summary: {}",
        out.stdout
    );
}

/// `systemd-analyze verify` works without systemd as PID 1 (it runs its
/// own manager in test mode); `--root` points it at the unpacked package,
/// where it checks the unit's syntax, dependencies and that its
/// ExecStart/ExecStop programs exist and are executable. The nginx drop-in
/// is verified the same way, against a stub nginx.service.
#[test]
fn unit_and_dropin_pass_systemd_analyze_verify() {
    let tree = unpacked_debs();
    fs::create_dir_all(tree.path().join("tmp")).unwrap();
    let verify = |unit: &str| {
        run(Command::new("systemd-analyze").args([
            "verify",
            "--man=no",
            "--generators=no",
            &format!("--root={}", tree.path().display()),
            unit,
        ]))
    };
    for unit in ["ttm.service", "ttm-check.service", "ttm-check.timer"] {
        let out = verify(&format!("/lib/systemd/system/{unit}"));
        assert!(
            out.status.success() && out.stdout.trim().is_empty() && out.stderr.trim().is_empty(),
            "systemd-analyze verify {unit}: {out:?}"
        );
    }

    // The checker does catch mistakes (so a pass above means something).
    let bad = tree.path().join("lib/systemd/system/ttm-broken.service");
    let unit = fs::read_to_string(tree.path().join("lib/systemd/system/ttm.service")).unwrap();
    fs::write(&bad, unit.replace("Type=oneshot", "Type=oneshoot")).unwrap();
    let out = verify("/lib/systemd/system/ttm-broken.service");
    assert!(
        out.stderr.contains("oneshoot"),
        "a bad Type= went unnoticed: {out:?}"
    );
    fs::remove_file(&bad).unwrap();

    // The drop-in, on a stand-in nginx.service.
    let stub_nginx = tree.path().join("usr/sbin/nginx");
    fs::write(&stub_nginx, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&stub_nginx, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(
        tree.path().join("lib/systemd/system/nginx.service"),
        "[Unit]\nDescription=stand-in\nDefaultDependencies=no\n[Service]\nExecStart=/usr/sbin/nginx\n",
    )
    .unwrap();
    let dropin_dir = tree.path().join("etc/systemd/system/nginx.service.d");
    fs::create_dir_all(&dropin_dir).unwrap();
    fs::copy(
        tree.path()
            .join("usr/share/doc/ttm/examples/nginx-preload.conf"),
        dropin_dir.join("ttm-preload.conf"),
    )
    .unwrap();
    let out = verify("/lib/systemd/system/nginx.service");
    assert!(
        out.status.success() && out.stderr.trim().is_empty(),
        "systemd-analyze verify nginx.service with the drop-in: {out:?}"
    );
    let shown = run_ok(Command::new("systemd-analyze").args([
        "cat-config",
        &format!("--root={}", tree.path().display()),
        "systemd/system/nginx.service.d/ttm-preload.conf",
    ]));
    assert!(shown.contains("LD_PRELOAD="), "{shown}");
}

/// The man pages of ttmctl are generated from its clap definition
/// (build.rs): one per command, each naming every option that command's
/// --help shows, rendering without a groff warning; libttm.7 documents
/// every variable the library reads.
#[test]
fn man_pages_are_generated_and_cover_every_option_and_variable() {
    let tree = unpacked_debs();
    let ttmctl = tree.path().join("usr/sbin/ttmctl");
    assert!(
        !root().join("packaging/man/ttmctl.8").exists(),
        "ttmctl.8 is generated by ttmctl/build.rs, not kept in packaging/man"
    );
    let page = |name: &str| -> String {
        tool(
            "zcat",
            &[tree
                .path()
                .join(format!("usr/share/man/man8/{name}.gz"))
                .to_str()
                .unwrap()],
        )
    };
    let pages = man_pages_of_ttmctl();
    assert!(pages.len() >= 9, "{pages:?}");
    for (cmd, name) in ttmctl_commands().iter().zip(&pages) {
        // roff writes "-" as "\\-" in options.
        let text = page(name).replace("\\-", "-");
        let mut args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        args.push("--help");
        let help = run_ok(Command::new(&ttmctl).args(&args));
        // The option lines of --help: "  -h, --help" / "      --pin-dir <DIR>".
        let opts: Vec<&str> = help
            .lines()
            .map(str::trim_start)
            .filter(|l| l.starts_with('-'))
            .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("--")))
            .map(|w| w.trim_end_matches(','))
            .collect();
        assert!(!opts.is_empty(), "ttmctl {cmd:?} --help shows no option");
        for opt in opts {
            assert!(
                text.contains(opt),
                "ttmctl {} has {opt}, {name} does not mention it",
                cmd.join(" ")
            );
        }
        let title = name.trim_end_matches(".8");
        assert!(
            text.contains(&format!(".TH {title} 8")),
            "{name} has no .TH {title} 8 title"
        );
    }
    // What issue 10 made of status, detect and the service, said in the
    // pages (the options above come from --help; this is the prose), with
    // roff's escapes of "-" and "'" undone.
    let prose = |name: &str| page(name).replace("\\-", "-").replace("\\*(Aq", "'");
    let status = prose("ttmctl-status.8");
    for said in [
        "--format",
        "--output",
        "prometheus",
        "0 loaded and every program attached",
        "2 degraded",
        "3 not loaded",
        "\"schema\": 1",
        "ttm_program_attached",
        "Counters are kept across loads",
        "stash_unmatched stash_cookie",
        "fastopen fastopen_claim",
        "a unit's own cgroup",
    ] {
        assert!(
            status.contains(said),
            "ttmctl-status.8 does not say {said:?}"
        );
    }
    let detect = prose("ttmctl-detect.8");
    for said in ["--pid", "--seconds", "--handshakes", "--format and --trust"] {
        assert!(
            detect.contains(said),
            "ttmctl-detect.8 does not say {said:?}"
        );
    }
    let load = prose("ttmctl-load.8");
    for said in [
        "system.slice/nginx.service",
        "full accept queue",
        "TCP Fast Open",
    ] {
        assert!(load.contains(said), "ttmctl-load.8 does not say {said:?}");
    }
    // The main page carries the manual's sections and lists every page.
    let main = page("ttmctl.8");
    let main_prose = prose("ttmctl.8");
    for said in [
        "ttm-check.timer",
        "METRICS_FILE",
        "refuses to start while TRUST is empty",
        "status exits 0 ok, 1 error, 2 degraded, 3 not loaded",
    ] {
        assert!(main_prose.contains(said), "ttmctl.8 does not say {said:?}");
    }
    assert_eq!(pages[0], "ttmctl.8");
    for section in [
        "SUBCOMMANDS",
        "EXIT STATUS",
        "FILES",
        "EXAMPLES",
        "SEE ALSO",
    ] {
        assert!(
            main.lines()
                .any(|l| l.starts_with(".SH") && l.trim_matches(['"', ' ']).ends_with(section)),
            "ttmctl.8 lacks a section {section}"
        );
    }
    for name in &pages[1..] {
        let sub = name.trim_end_matches(".8");
        if sub.matches('-').count() == 1 {
            assert!(
                main.replace("\\-", "-").contains(&format!("{sub}(8)")),
                "ttmctl.8 does not point at {sub}(8)"
            );
        }
    }
    // ... and the version the binary prints.
    let version_line = run_ok(Command::new(&ttmctl).arg("--version"));
    let v = version_line.trim().trim_start_matches("ttmctl ");
    assert!(
        main.replace("\\-", "-").contains(v),
        "ttmctl.8 does not show {v}"
    );

    // The variables the library reads, from its source.
    let page7 = fs::read_to_string(root().join("packaging/man/libttm.7"))
        .unwrap()
        .replace("\\-", "-");
    let config = fs::read_to_string(root().join("src/config.rs")).unwrap();
    let vars: BTreeSet<&str> = config
        .split('"')
        .filter(|s| s.starts_with("TTM_") && s.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect();
    assert!(vars.len() >= 7, "found only {vars:?} in src/config.rs");
    for v in &vars {
        assert!(page7.contains(v), "libttm.7 does not document {v}");
    }

    let mut pages: Vec<PathBuf> = man_pages_of_ttmctl()
        .iter()
        .map(|n| tree.path().join(format!("usr/share/man/man8/{n}.gz")))
        .collect();
    pages.push(tree.path().join("usr/share/man/man7/libttm.7.gz"));
    for page in pages {
        let text = tool("zcat", &[page.to_str().unwrap()]);
        let dir = TempDir::new("man");
        let plain = dir.path().join("page");
        fs::write(&plain, text).unwrap();
        let out = run(Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&plain)
            .env("LC_ALL", "C.UTF-8"));
        assert!(
            out.status.success() && out.stderr.trim().is_empty(),
            "groff warns on {}: {}",
            page.display(),
            out.stderr
        );
    }
    // The packaged libttm.7 is the one in the repository.
    let packed = tool(
        "zcat",
        &[tree
            .path()
            .join("usr/share/man/man7/libttm.7.gz")
            .to_str()
            .unwrap()],
    );
    assert_eq!(
        packed,
        fs::read_to_string(root().join("packaging/man/libttm.7")).unwrap()
    );
}

/// The shipped completions complete subcommands and options in bash and
/// fish (asked the way each shell asks), and zsh loads its function.
#[test]
fn shell_completions_complete_subcommands_and_options() {
    let tree = unpacked_debs();
    let bash = tree
        .path()
        .join("usr/share/bash-completion/completions/ttmctl");
    let complete_bash = |line: &str| -> Vec<String> {
        let words: Vec<&str> = line.split(' ').collect();
        let script = format!(
            "source {}\nCOMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE='{line}'\nCOMP_POINT={}\n\
             _ttmctl ttmctl '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
            bash.display(),
            words.join(" "),
            words.len() - 1,
            line.len(),
            words[words.len() - 1],
            words[words.len() - 2],
        );
        run_ok(Command::new("bash").args(["--norc", "-c", &script]))
            .lines()
            .map(|l| l.trim().to_owned())
            .collect()
    };
    let got = complete_bash("ttmctl lo");
    assert_eq!(got, ["load"], "bash: ttmctl lo<TAB>");
    let got = complete_bash("ttmctl load --pi");
    assert_eq!(got, ["--pin-dir"], "bash: ttmctl load --pi<TAB>");
    let got = complete_bash("ttmctl simulate st");
    assert!(
        got.contains(&"start".to_owned()) && got.contains(&"stop".to_owned()),
        "bash: ttmctl simulate st<TAB>: {got:?}"
    );

    let fish = tree
        .path()
        .join("usr/share/fish/vendor_completions.d/ttmctl.fish");
    let complete_fish = |line: &str| -> Vec<String> {
        let script = format!("source {}; complete -C '{line}'", fish.display());
        run_ok(Command::new("fish").args(["--no-config", "-c", &script]))
            .lines()
            .map(|l| l.split('\t').next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        complete_fish("ttmctl unl"),
        ["unload"],
        "fish: ttmctl unl<TAB>"
    );
    assert_eq!(
        complete_fish("ttmctl status --pi"),
        ["--pin-dir"],
        "fish: ttmctl status --pi<TAB>"
    );

    let zsh = tree.path().join("usr/share/zsh/vendor-completions/_ttmctl");
    run_ok(Command::new("zsh").arg("-n").arg(&zsh));
    let script = format!(
        "autoload -U compinit && compinit -u -D && source {} && whence -w _ttmctl",
        zsh.display()
    );
    let out = run_ok(Command::new("zsh").args(["-f", "-c", &script]));
    assert_eq!(out.trim(), "_ttmctl: function", "zsh: {out}");
    let text = fs::read_to_string(&zsh).unwrap();
    for sub in [
        "load",
        "unload",
        "status",
        "doctor",
        "simulate",
        "--pin-dir",
    ] {
        assert!(text.contains(sub), "_ttmctl does not know {sub}");
    }
}

/// `ttmctl --version`: the version, the commit it was built from, and the
/// SHA-256 of the eBPF object it embeds, found in the binary itself.
#[test]
fn ttmctl_version_names_its_commit_and_embedded_bpf_object() {
    let tree = unpacked_debs();
    let ttmctl = tree.path().join("usr/sbin/ttmctl");
    let line = run_ok(Command::new(&ttmctl).arg("--version"));
    let rest = line
        .trim()
        .strip_prefix(&format!("ttmctl {} (commit ", version()))
        .unwrap_or_else(|| panic!("ttmctl --version: {line}"));
    let (commit, rest) = rest.split_once(", bpf sha256 ").expect("bpf sha256");
    let hash = rest.strip_suffix(')').expect("closing parenthesis");
    let head = run(Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(root()));
    if head.status.success() {
        assert_eq!(commit, head.stdout.trim(), "commit in ttmctl --version");
    } else {
        assert_eq!(commit, "unknown", "no git checkout: {line}");
    }
    assert_eq!(hash.len(), 64, "{line}");
    // The eBPF ELF objects inside ttmctl (e_machine 247 = EM_BPF), each
    // cut at the end of its section header table.
    let bin = fs::read(&ttmctl).unwrap();
    let mut sums = Vec::new();
    let dir = TempDir::new("bpfobj");
    let starts: Vec<usize> = bin
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"\x7fELF")
        .map(|(at, _)| at)
        .collect();
    for (i, at) in starts.into_iter().enumerate() {
        let h = &bin[at..];
        if h.len() < 64 || h[4] != 2 || u16::from_le_bytes([h[18], h[19]]) != 247 {
            continue;
        }
        let shoff = u64::from_le_bytes(h[0x28..0x30].try_into().unwrap()) as usize;
        let shentsize = u16::from_le_bytes([h[0x3a], h[0x3b]]) as usize;
        let shnum = u16::from_le_bytes([h[0x3c], h[0x3d]]) as usize;
        let obj = dir.path().join(format!("obj{i}.o"));
        let bytes = &h[..shoff + shentsize * shnum];
        fs::write(&obj, bytes).unwrap();
        let sum = tool("sha256sum", &[obj.to_str().unwrap()]);
        // ttm.bpf.o is the object with the parser program.
        let is_ttm = bytes.windows(9).any(|w| w == b"ttm_parse");
        sums.push((is_ttm, sum.split_whitespace().next().unwrap().to_owned()));
    }
    assert!(sums.len() >= 2, "eBPF objects embedded: {sums:?}");
    let ttm: Vec<&String> = sums.iter().filter(|(t, _)| *t).map(|(_, s)| s).collect();
    assert_eq!(
        ttm,
        [hash],
        "--version names ttm.bpf.o, the one object with ttm_parse ({sums:?})"
    );
}

/// `systemd-analyze security` rates the shipped ttm.service and
/// ttm-check.service (which runs the same ttmctl load) below 5 (the
/// scores are printed), and the same units without their sandbox above:
/// the check can fail.
#[test]
fn ttm_service_sandbox_scores_below_5() {
    let tree = unpacked_debs();
    let score = |root_dir: &Path, unit: &str| -> (f64, Finished) {
        let out = run(Command::new("systemd-analyze").args([
            "security",
            "--offline=yes",
            "--threshold=49",
            &format!("--root={}", root_dir.display()),
            unit,
        ]));
        let overall = out
            .stdout
            .lines()
            .find_map(|l| {
                l.split(&format!("Overall exposure level for {unit}: "))
                    .nth(1)
            })
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no overall exposure level: {out:?}"));
        (overall, out)
    };
    for unit in ["ttm.service", "ttm-check.service"] {
        let (shipped, out) = score(tree.path(), unit);
        eprintln!("systemd-analyze security {unit}: {shipped}");
        assert!(shipped < 5.0, "{unit}: exposure {shipped}:\n{}", out.stdout);
        assert!(out.status.success(), "below --threshold=49: {out:?}");
    }

    // Only the units' [Unit] and Exec lines: the tool must rate them unsafe.
    for unit in ["ttm.service", "ttm-check.service"] {
        let unit_path = tree.path().join("lib/systemd/system").join(unit);
        let text = fs::read_to_string(&unit_path).unwrap();
        assert!(text.contains("\n# The sandbox"), "{unit}");
        let bare: String = text
            .lines()
            .take_while(|l| !l.starts_with("# The sandbox"))
            .map(|l| format!("{l}\n"))
            .collect();
        fs::write(&unit_path, bare).unwrap();
        let (unsandboxed, out) = score(tree.path(), unit);
        assert!(
            unsandboxed >= 5.0,
            "{unit} without the sandbox: {unsandboxed}"
        );
        assert!(!out.status.success(), "above --threshold=49: {out:?}");
    }
}

/// The capabilities ttm.service keeps (CapabilityBoundingSet=) are enough
/// to load and unload, and no capability at all is not: run as root with
/// the bounding set cut down by setpriv.
#[test]
fn the_units_capabilities_are_enough_to_load() {
    require_root();
    let tree = unpacked_debs();
    let ttmctl = tree.path().join("usr/sbin/ttmctl");
    let caps_of = |unit: &str| -> Vec<String> {
        let text = fs::read_to_string(tree.path().join("lib/systemd/system").join(unit)).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
            .unwrap_or_else(|| panic!("no CapabilityBoundingSet= in {unit}"))
            .split_whitespace()
            .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
            .collect()
    };
    let caps = caps_of("ttm.service");
    // ttm-check.service runs the same load, and status.
    assert_eq!(caps_of("ttm-check.service"), caps);
    let topo = Topology::new();
    let (id, _) = harness::unique_id();
    let pin = PinDir::new(&format!("ttm-caps-{id}"));
    harness::bpffs::ensure_bpffs();
    let with_caps = |bounding: &str, args: &[&str]| -> Finished {
        run(Command::new("setpriv")
            .arg(format!("--bounding-set=-all{bounding}"))
            .args(["--inh-caps=-all", "--"])
            .arg(&ttmctl)
            .args(args))
    };
    let cg = topo.server_cgroup().to_str().unwrap();
    let pin_s = pin.path().to_str().unwrap();
    let load = ["load", "--cgroup", cg, "--pin-dir", pin_s];
    let denied = with_caps("", &load);
    assert!(
        !denied.status.success(),
        "load with no capability: {denied:?}"
    );
    let bounding = format!(",{}", caps.join(","));
    let loaded = with_caps(&bounding, &load);
    assert!(loaded.status.success(), "load with {caps:?}: {loaded:?}");
    let names = attached_names(topo.server_cgroup());
    assert!(names.iter().any(|n| n == "ttm_parse"), "{names:?}");
    // ttm-check's status reads the links: exit 0, every program attached.
    let status = ["status", "--pin-dir", pin_s, "--format", "prometheus"];
    let checked = with_caps(&bounding, &status);
    assert_eq!(
        checked.status.code(),
        Some(0),
        "status with {caps:?}: {checked:?}"
    );
    assert!(
        checked.stdout.lines().any(|l| l == "ttm_degraded 0"),
        "{checked:?}"
    );
    let unloaded = with_caps(&bounding, &["unload", "--pin-dir", pin_s]);
    assert!(
        unloaded.status.success(),
        "unload with {caps:?}: {unloaded:?}"
    );
    assert_nothing_left(topo.server_cgroup(), &[pin.path()]);
}

/// What /usr/libexec/ttm/ttm-service makes of /etc/ttm/ttm.conf.
#[test]
fn service_wrapper_turns_the_config_into_one_ttmctl_command() {
    let dir = TempDir::new("conf");
    let args_for = |conf: &str| {
        let path = dir.path().join("ttm.conf");
        fs::write(&path, conf).unwrap();
        run(Command::new(root().join("packaging/ttm-service"))
            .arg("args")
            .env("TTM_SERVICE_CONF", &path))
    };
    let ok = |conf: &str| {
        let out = args_for(conf);
        assert!(out.status.success(), "{conf}: {out:?}");
        out.stdout.trim().to_owned()
    };
    // The shipped file has no TRUST: the service refuses to start, says
    // which file to edit and what to put there, and runs no ttmctl.
    let shipped = fs::read_to_string(root().join("packaging/ttm.conf")).unwrap();
    for conf in [shipped.clone(), "TRUST=\" , \"\n".into()] {
        let refused = args_for(&conf);
        assert_eq!(refused.status.code(), Some(1), "{conf}: {refused:?}");
        assert!(
            refused.stderr.contains("TRUST is empty")
                && refused.stderr.contains("TRUST=any")
                && refused.stderr.contains("ttm.conf"),
            "{refused:?}"
        );
        let calls = dir.path().join("calls");
        let stub = dir.path().join("ttmctl");
        fs::write(
            &stub,
            format!("#!/bin/sh\necho \"$*\" >> {}\n", calls.display()),
        )
        .unwrap();
        fs::set_permissions(&stub, fs::Permissions::from_mode(0o755)).unwrap();
        let start = run(Command::new(root().join("packaging/ttm-service"))
            .arg("start")
            .env("TTM_SERVICE_CONF", dir.path().join("ttm.conf"))
            .env("TTMCTL", &stub));
        assert_eq!(start.status.code(), Some(1), "{start:?}");
        assert!(start.stderr.contains("not loading"), "{start:?}");
        assert!(!calls.exists(), "ttmctl ran despite an empty TRUST");
    }
    // The list goes to ttmctl as one argument (its parser takes commas
    // and spaces); `any` is passed as such.
    assert_eq!(
        ok(&format!("{shipped}\nTRUST=any\n")),
        "/usr/sbin/ttmctl load --pin-dir /sys/fs/bpf/ttm --trust=any"
    );
    let cg2 = harness::cgroup::cgroup2_mount().display().to_string();
    assert_eq!(
        ok(
            "TRUST=\"10.0.0.0/24  2001:db8::/64\"\nFORMATS=\"254/8 200/8\"\n\
            CGROUP=system.slice\nREWRITE=no\nDEFER_ACCEPT=no\nPIN_DIR=/sys/fs/bpf/lb\n"
        ),
        format!(
            "/usr/sbin/ttmctl load --pin-dir /sys/fs/bpf/lb --cgroup {cg2}/system.slice \
             '--trust=10.0.0.0/24  2001:db8::/64' --format=254/8 --format=200/8 --no-rewrite \
             --no-defer-accept"
        )
    );
    assert_eq!(
        ok("CGROUP=/sys/fs/cgroup/x\nTRUST=10.0.0.0/8,*\nPIN_DIR=\n"),
        "/usr/sbin/ttmctl load --pin-dir /sys/fs/bpf/ttm --cgroup /sys/fs/cgroup/x '--trust=10.0.0.0/8,*'",
        "no globbing, empty PIN_DIR is the default"
    );
    let bad = args_for("TRUST=any\nREWRITE=maybe\n");
    assert!(!bad.status.success(), "{bad:?}");
    assert!(bad.stderr.contains("REWRITE must be yes or no"), "{bad:?}");
    let bad = args_for("TRUST=any\nDEFER_ACCEPT=later\n");
    assert!(!bad.status.success(), "{bad:?}");
    assert!(
        bad.stderr.contains("DEFER_ACCEPT must be yes or no"),
        "{bad:?}"
    );
    let usage = run(Command::new(root().join("packaging/ttm-service")).arg("restart"));
    assert_eq!(usage.status.code(), Some(2), "{usage:?}");
}

// ---------------------------------------------------------------------
// Installing on this machine.

/// An exclusive lock (flock) over installing the ttm package, across the
/// test processes of everyone on the machine; released on drop.
struct InstallLock(#[allow(dead_code)] File);

impl InstallLock {
    fn take() -> InstallLock {
        let f = File::create("/run/lock/ttm-packaging-test.lock").expect("create lock file");
        // SAFETY: flock(2) on a descriptor this File owns for its lifetime.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock: {}", io::Error::last_os_error());
        InstallLock(f)
    }
}

/// Whether dpkg knows any of the three packages (installed, half
/// installed or with config files left).
fn package_installed() -> bool {
    DEB_NAMES.iter().any(|pkg| {
        let out = run(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]));
        out.status.success()
            && (out.stdout.contains("install ok installed")
                || out.stdout.contains("config-files")
                || out.stdout.contains("half-"))
    })
}

fn purge() -> Finished {
    run(Command::new("dpkg")
        .arg("--purge")
        .args(DEB_NAMES)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// The ttm package installed by this test: purged on drop unless the test
/// purged it already, so a failing test leaves nothing installed.
struct Installed {
    purged: bool,
}

impl Installed {
    fn install(debs: &[&Path]) -> Installed {
        if package_installed() {
            let conf = fs::read_to_string("/etc/ttm/ttm.conf").unwrap_or_default();
            assert!(
                conf.starts_with(CONF_MARKER),
                "ttm packages are installed on this machine, and not by this test: \
                 refusing to replace them (dpkg --purge ttm libttm1 libttm-dev, then run again)"
            );
            eprintln!("packaging: purging a ttm package left by an earlier run");
            purge().expect_success("dpkg --purge ttm (left by an earlier run)");
        }
        let guard = Installed { purged: false };
        run_ok(
            Command::new("dpkg")
                .arg("-i")
                .args(debs)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        );
        guard
    }

    fn purge(&mut self) {
        self.purged = true;
        purge().expect_success("dpkg --purge ttm");
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if self.purged {
            return;
        }
        let out = purge();
        if !out.status.success() {
            eprintln!("packaging: dpkg --purge ttm failed: {}", out.stderr);
        }
    }
}

/// Paths whose name contains "ttm", below the directories a package can
/// touch (/etc, /usr, /var/lib; /lib is /usr/lib here or is walked too).
fn ttm_named_paths() -> BTreeSet<PathBuf> {
    fn walk(dir: &Path, out: &mut BTreeSet<PathBuf>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_name()
                .to_string_lossy()
                .to_lowercase()
                .contains("ttm")
            {
                out.insert(p.clone());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&p, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    for top in ["/etc", "/usr", "/var/lib", "/lib"] {
        let p = Path::new(top);
        if fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) {
            walk(p, &mut out);
        }
    }
    out
}

fn exists_no_follow(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok()
}

/// The whole life cycle on this machine, through the installed files only.
#[test]
fn install_load_preload_purge_leaves_nothing_behind() {
    require_root();
    let debs: Vec<&Path> = DEB_NAMES.iter().map(|n| packages().deb(n)).collect();
    let _lock = InstallLock::take();

    // What the packages will create, and which of their directories exist
    // already (those stay after the purge).
    let members: Vec<(String, bool, Option<String>)> =
        debs.iter().flat_map(|d| deb_members(d)).collect();
    let member_dirs: BTreeSet<String> = members
        .iter()
        .filter(|(_, dir, _)| *dir)
        .map(|(p, _, _)| p.clone())
        .collect();
    let preexisting_dirs: BTreeSet<String> = member_dirs
        .iter()
        .filter(|p| exists_no_follow(Path::new(p)))
        .cloned()
        .collect();
    let named_before = ttm_named_paths();

    let mut installed = Installed::install(&debs);

    // dpkg's own record matches each package.
    let mut listed: Vec<String> = Vec::new();
    for pkg in DEB_NAMES {
        // dpkg -L names the root "/.".
        let of_pkg: Vec<String> = tool("dpkg", &["-L", pkg])
            .lines()
            .map(|l| {
                if l == "/." {
                    "/".to_owned()
                } else {
                    l.to_owned()
                }
            })
            .collect();
        let files: BTreeSet<String> = of_pkg
            .iter()
            .filter(|p| !member_dirs.contains(*p))
            .cloned()
            .collect();
        assert_eq!(files, expected_deb_files(pkg), "dpkg -L {pkg}");
        for f in &files {
            assert!(exists_no_follow(Path::new(f)), "{f} not installed");
        }
        listed.extend(of_pkg);
    }
    let lib = PathBuf::from(format!("{}/libttm.so.1", deb_libdir()));
    let ttmctl = Path::new("/usr/sbin/ttmctl");
    let wrapper = Path::new("/usr/libexec/ttm/ttm-service");
    assert_glibc_baseline(&lib);
    assert!(
        tool("ldconfig", &["-p"]).contains("libttm.so.1 "),
        "the ldconfig trigger did not put libttm.so.1 in the cache"
    );
    assert!(
        tool(ttmctl.to_str().unwrap(), &["--version"])
            .starts_with(&format!("ttmctl {} (commit ", version())),
        "ttmctl --version"
    );

    // The installed unit verifies on the installed system, man pages
    // (its Documentation=) and programs included.
    for unit in ["ttm.service", "ttm-check.service", "ttm-check.timer"] {
        let out = run(Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("/lib/systemd/system/{unit}")));
        assert!(
            out.status.success() && out.stderr.trim().is_empty(),
            "systemd-analyze verify {unit} (installed): {out:?}"
        );
    }
    // An administrator enables it (offline: no systemd running here).
    let wants = Path::new("/etc/systemd/system/multi-user.target.wants/ttm.service");
    run_ok(Command::new("systemctl").args(["enable", "ttm.service"]));
    assert!(
        exists_no_follow(wants),
        "systemctl enable made no {}",
        wants.display()
    );

    // The C API through the installed header, ttm.pc and -lttm link.
    let scratch = TempDir::new("cc");
    let api = scratch.path().join("api.c");
    fs::write(
        &api,
        "#include <stdio.h>\n#include <ttm.h>\n\
         int main(void) { printf(\"%s %s\\n\", ttm_version(), ttm_backend()); return 0; }\n",
    )
    .unwrap();
    let flags = tool("pkg-config", &["--cflags", "--libs", "ttm"]);
    assert!(flags.contains("-lttm"), "{flags}");
    let api_bin = scratch.path().join("api");
    run_ok(
        Command::new("cc")
            .arg("-Wall")
            .arg("-Werror")
            .arg("-o")
            .arg(&api_bin)
            .arg(&api)
            .args(flags.split_whitespace()),
    );
    let ldd = tool("ldd", &[api_bin.to_str().unwrap()]);
    assert!(
        ldd.lines()
            .any(|l| l.contains("libttm.so.1 => ") && l.contains(&multiarch())),
        "{ldd}"
    );
    let api_out = run_ok(Command::new(&api_bin).env("TTM_BPF_MAP", "/nonexistent/ttm_peers"));
    assert!(api_out.starts_with(&format!("{} ", version())), "{api_out}");

    // The installed example server, built against the installed header.
    let server_bin = scratch.path().join("server");
    run_ok(
        Command::new("cc")
            .args(["-Wall", "-O2", "-o"])
            .arg(&server_bin)
            .arg("/usr/share/doc/libttm-dev/examples/server.c")
            .arg("-ldl"),
    );

    // The kernel side, loaded the way ttm.service does it: the installed
    // wrapper reading /etc/ttm/ttm.conf, running the installed ttmctl.
    let topo = Topology::new();
    let (id, _) = harness::unique_id();
    let pin = PinDir::new(&format!("ttm-pkg-{id}"));
    let metrics = scratch.path().join("ttm.prom");
    let conf = format!(
        "{CONF_MARKER} (pid {})\nTRUST=\"{}/32 {}/128\"\nFORMATS=\"254/8 254/20\"\n\
         CGROUP=\"{}\"\nREWRITE=yes\nPIN_DIR=\"{}\"\nMETRICS_FILE=\"{}\"\n",
        std::process::id(),
        topo.client_v4(),
        topo.client_v6(),
        topo.server_cgroup().display(),
        pin.path().display(),
        metrics.display()
    );
    fs::write("/etc/ttm/ttm.conf", conf).unwrap();
    assert_eq!(
        tool(wrapper.to_str().unwrap(), &["args"]).trim(),
        format!(
            "/usr/sbin/ttmctl load --pin-dir {} --cgroup {} '--trust={}/32 {}/128' \
             --format=254/8 --format=254/20",
            pin.path().display(),
            topo.server_cgroup().display(),
            topo.client_v4(),
            topo.client_v6()
        )
    );
    tool(wrapper.to_str().unwrap(), &["start"]);
    let names = attached_names(topo.server_cgroup());
    assert!(
        names.iter().any(|n| n == "ttm_parse"),
        "after ttm-service start: {names:?}"
    );
    let status = || -> Value {
        serde_json::from_str(&tool(
            ttmctl.to_str().unwrap(),
            &[
                "status",
                "--json",
                "--pin-dir",
                pin.path().to_str().unwrap(),
            ],
        ))
        .expect("ttmctl status --json")
    };

    // An LB claims an IPv6 client on an IPv4 connection.
    let _lb = LbEmulator::start(&topo, &["--client", CLAIM]);
    let map = pin.path().join("ttm_peers");
    // The example server on the server side with these variables (and no
    // inherited TTM_* or LD_PRELOAD); returns its four lines, the client's
    // reply and the server's stderr.
    let serve = |env: &[(&str, &OsStr)], nobody: bool| -> Vec<String> {
        let mut launch = topo.server().launch();
        if nobody {
            launch = launch.nobody();
        }
        let mut cmd = launch.command(&server_bin);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("TTM_") || k == "LD_PRELOAD" {
                cmd.env_remove(&k);
            }
        }
        cmd.envs(env.iter().copied());
        cmd.args(["-b", "0.0.0.0", "-n", "1", "0"]);
        let server = Server::interactive("examples/server.c", cmd);
        let listening = server
            .next_line(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("server did not start: {}", server.stderr()));
        let port = listening
            .rsplit(':')
            .next()
            .and_then(|p| p.trim().parse::<u16>().ok())
            .unwrap_or_else(|| panic!("no port in {listening:?}"));
        let client = run(topo.client().launch().command(PYTHON).args([
            "-c",
            "import socket, sys\n\
             s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)\n\
             print(s.recv(200).decode().strip())",
            &topo.server_v4().to_string(),
            &port.to_string(),
        ]));
        let reply = client.expect_success("client");
        let mut lines: Vec<String> = (0..4)
            .map(|_| {
                server
                    .next_line(Duration::from_secs(10))
                    .unwrap_or_else(|| {
                        panic!("server printed too little; stderr: {}", server.stderr())
                    })
            })
            .collect();
        server.wait_exit(Duration::from_secs(10));
        lines.push(format!("client: {}", reply.trim()));
        lines.push(format!("stderr: {}", server.stderr().trim()));
        lines
    };

    // Without the library: the kernel cannot put an IPv6 client into the
    // IPv4 socket's address, so accept() shows the LB.
    let plain = serve(&[], false);
    let lb = topo.client_v4().to_string();
    assert!(
        plain[0].starts_with(&format!("accept: {lb}:")),
        "{plain:#?}"
    );
    assert_eq!(plain[3], "ttm_get_peer: libttm not loaded", "{plain:#?}");
    // With the installed library preloaded: the real client everywhere.
    let preload: (&str, &OsStr) = ("LD_PRELOAD", lib.as_os_str());
    let log: (&str, &OsStr) = ("TTM_LOG", OsStr::new("info"));
    let seen = serve(&[preload, ("TTM_BPF_MAP", map.as_os_str()), log], false);
    assert_eq!(
        seen[..5],
        [
            format!("accept: {CLAIM}"),
            format!("getpeername: {CLAIM}"),
            "getsockopt: addr 2001:db8::7 port 4242".to_owned(),
            format!("ttm_get_peer: {CLAIM} (backend bpf)"),
            format!("client: hello {CLAIM}"),
        ],
        "{seen:#?}"
    );
    assert!(seen[5].contains("backend=bpf"), "TTM_LOG=info: {seen:#?}");
    // As in a Kubernetes pod (docs/kubernetes.md): unprivileged, no bpffs
    // in sight, TTM_BACKEND=kmod asks the getsockopt ABI that the kernel
    // side answers.
    let pod = serve(
        &[
            preload,
            ("TTM_BPF_MAP", OsStr::new("/nonexistent/ttm_peers")),
            ("TTM_BACKEND", OsStr::new("kmod")),
            log,
        ],
        true,
    );
    assert_eq!(
        pod[..5],
        [
            format!("accept: {CLAIM}"),
            format!("getpeername: {CLAIM}"),
            "getsockopt: addr 2001:db8::7 port 4242".to_owned(),
            format!("ttm_get_peer: {CLAIM} (backend kmod)"),
            format!("client: hello {CLAIM}"),
        ],
        "{pod:#?}"
    );
    // The installed kernel side parsed every connection's option.
    let st = status();
    assert_eq!(st["counters"]["found_v6"], 3, "ttmctl status --json: {st}");
    // What ttm-check.timer runs: the metrics file says loaded.
    tool(wrapper.to_str().unwrap(), &["check"]);
    let prom = fs::read_to_string(&metrics).expect("ttm-service check wrote METRICS_FILE");
    assert!(prom.lines().any(|l| l == "ttm_loaded 1"), "{prom}");

    // Purge: prerm unloads what ttm.conf's PIN_DIR holds, dpkg removes
    // every file it installed and the conffile, postrm the enablement.
    installed.purge();
    assert!(!package_installed(), "ttm still known to dpkg after purge");
    assert_nothing_left(topo.server_cgroup(), &[pin.path()]);
    // ...and no metrics file goes on reporting on a removed ttm.
    assert!(!metrics.exists(), "{} left after purge", metrics.display());
    for p in &listed {
        let path = Path::new(p);
        if preexisting_dirs.contains(p) {
            continue;
        }
        assert!(
            !exists_no_follow(path),
            "{p} was installed by the package and is still there after purge"
        );
    }
    assert!(!exists_no_follow(wants), "{} left behind", wants.display());
    let named_after = ttm_named_paths();
    let new: Vec<&PathBuf> = named_after.difference(&named_before).collect();
    assert!(new.is_empty(), "left behind after purge: {new:?}");
    assert!(
        !tool("ldconfig", &["-p"]).contains("libttm.so.1 "),
        "libttm.so.1 still in the linker cache"
    );
}

// ---------------------------------------------------------------------
// arm64, cross-built and run under qemu-user.

/// `scripts/package.sh --arch aarch64` (after the host's packages: the
/// two builds share the target dir and its tools).
fn arm64_packages() -> &'static Packages {
    static BUILT: OnceLock<Result<Packages, String>> = OnceLock::new();
    packages();
    match BUILT.get_or_init(|| build_packages(&["--arch", "aarch64"])) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

/// The arm64 packages are what their names say (ELF machine, Debian and
/// RPM architecture, glibc 2.17 at most), lint as clean as the host's,
/// and run under qemu-aarch64-static (Debian's qemu-user-static; the
/// arm64 C library from Debian's libc6:arm64): ttmctl answers --version
/// and --help, and the example server, cross-compiled with the packaging
/// zig for arm64 against the arm64 libttm-dev, runs with the arm64
/// libttm.so.1 preloaded, whose accept() hook serves a real connection
/// and logs its backend choice.
#[test]
fn arm64_packages_build_lint_and_run_under_qemu() {
    let p = arm64_packages();
    if std::env::consts::ARCH == "aarch64" {
        return; // built natively above; nothing to emulate
    }
    for (pkg, deb) in &p.debs {
        assert_eq!(
            tool("dpkg-deb", &["-f", deb.to_str().unwrap(), "Architecture"]).trim(),
            "arm64",
            "{pkg}"
        );
    }
    for (pkg, rpm) in &p.rpms {
        assert_eq!(
            run_ok(
                Command::new("rpm")
                    .args(["-qp", "--queryformat", "%{ARCH}"])
                    .arg(rpm)
            ),
            "aarch64",
            "{pkg}"
        );
    }
    let tree = TempDir::new("arm64");
    for deb in p.debs.values() {
        run_ok(Command::new("dpkg-deb").arg("-x").arg(deb).arg(tree.path()));
    }
    let ttmctl = tree.path().join("usr/sbin/ttmctl");
    let lib = tree.path().join("usr/lib/aarch64-linux-gnu/libttm.so.1");
    for elf in [&ttmctl, &lib] {
        let header = tool("readelf", &["-h", elf.to_str().unwrap()]);
        assert!(header.contains("AArch64"), "{}: {header}", elf.display());
        assert_glibc_baseline(elf);
    }

    let out = run(Command::new("lintian")
        .args(["--pedantic", "-I", "-E", "--tag-display-limit", "0"])
        .args(p.debs.values()));
    let tags: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with("N:") && !l.trim().is_empty())
        .collect();
    assert!(tags.is_empty() && out.status.success(), "lintian: {out:?}");
    let out = run(Command::new("rpmlint")
        .arg("-c")
        .arg(root().join("packaging/rpm/rpmlint.toml"))
        .args(p.rpms.values()));
    assert!(out.stdout.contains(" 0 errors,"), "rpmlint: {}", out.stdout);

    let qemu = "qemu-aarch64-static";
    let shown = run_ok(Command::new(qemu).arg(&ttmctl).arg("--version"));
    assert!(
        shown.starts_with(&format!("ttmctl {} (commit ", version())),
        "{shown}"
    );
    let help = run_ok(Command::new(qemu).arg(&ttmctl).args(["load", "--help"]));
    assert!(help.contains("--pin-dir"), "{help}");
    let bad = run(Command::new(qemu)
        .arg(&ttmctl)
        .args(["load", "--trust", "10.0.0.1/8"]));
    assert!(
        !bad.status.success() && bad.stderr.contains("host bits set"),
        "a bad --trust under qemu: {bad:?}"
    );

    // The example server for arm64, with the zig package.sh installed.
    let target = profile_dir().parent().unwrap().to_owned();
    let server = tree.path().join("server");
    run_ok(
        Command::new(target.join("pkgtools/venv/bin/python"))
            .args([
                "-m",
                "ziglang",
                "cc",
                "-target",
                "aarch64-linux-gnu.2.17",
                "-O2",
                "-I",
            ])
            .arg(tree.path().join("usr/include"))
            .arg("-o")
            .arg(&server)
            .arg(
                tree.path()
                    .join("usr/share/doc/libttm-dev/examples/server.c"),
            )
            .arg("-ldl"),
    );
    let mut cmd = Command::new(qemu);
    cmd.arg(&server)
        .args(["-b", "127.0.0.1", "-n", "1", "0"])
        .env("LD_PRELOAD", &lib)
        .env("TTM_LOG", "info");
    let srv = Server::interactive("arm64 examples/c/server.c", cmd);
    let listening = srv
        .next_line(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("arm64 server did not start: {}", srv.stderr()));
    let port = listening.rsplit(':').next().unwrap().trim().to_owned();
    let reply = run_ok(Command::new(PYTHON).args([
        "-c",
        "import socket, sys\n\
         s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)\n\
         print(s.getsockname()[1], s.recv(200).decode().strip())",
        &port,
    ]));
    let (client_port, reply) = reply.trim().split_once(' ').unwrap();
    assert_eq!(reply, format!("hello 127.0.0.1:{client_port}"));
    let lines: Vec<String> = (0..4)
        .map(|_| {
            srv.next_line(Duration::from_secs(10))
                .unwrap_or_else(|| panic!("arm64 server: {}", srv.stderr()))
        })
        .collect();
    assert_eq!(
        lines[0],
        format!("accept: 127.0.0.1:{client_port}"),
        "{lines:?}"
    );
    // Loaded (the unloaded answer is "libttm not loaded"); no backend
    // here, as qemu-user has no bpf(2).
    assert!(
        lines[3].starts_with("ttm_get_peer: ") && lines[3].ends_with("(backend none)"),
        "{lines:?}"
    );
    srv.wait_exit(Duration::from_secs(10));
    assert!(
        srv.stderr().contains("backend=none"),
        "no TTM_LOG line from the arm64 libttm.so.1: {}",
        srv.stderr()
    );
}
