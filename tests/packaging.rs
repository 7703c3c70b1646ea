//! The .deb and .rpm of `scripts/package.sh` (`make package`): what they
//! contain, that the library and ttmctl they ship need nothing newer than
//! glibc 2.17, that the unit, man pages, service wrapper and Kubernetes
//! manifest are sound, and, as root, a full life cycle on this machine:
//! `dpkg -i`, the INSTALLED ttmctl (through the service's own wrapper and
//! /etc/ttm/ttm.conf) loading on a test cgroup, a server preloaded with the
//! INSTALLED libttm.so.1 seeing the client an LB emulator claims, then
//! `dpkg --purge` leaving no file, program or pin behind.
//!
//! The packages are built once per test process into <target>/packages,
//! reusing the cargo target dir of the tests (the first build downloads
//! zig and cargo-zigbuild from PyPI and takes a few minutes).

mod harness;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
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

struct Packages {
    deb: PathBuf,
    rpm: PathBuf,
}

/// `scripts/package.sh` into <target>/packages, once per test process.
fn packages() -> &'static Packages {
    static BUILT: OnceLock<Result<Packages, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let target = profile_dir()
            .parent()
            .expect("profile dir has a parent")
            .to_owned();
        let out = run_to_end(
            Command::new(root().join("scripts/package.sh"))
                .current_dir(root())
                .env("CARGO_TARGET_DIR", &target),
            Duration::from_secs(2400),
        );
        if !out.status.success() || out.timed_out {
            return Err(format!(
                "scripts/package.sh failed ({:?}, timed out: {}):\n{}\n{}",
                out.status, out.timed_out, out.stdout, out.stderr
            ));
        }
        let find = |ext: &str| {
            out.stdout
                .lines()
                .map(str::trim)
                .find(|l| l.ends_with(ext))
                .map(PathBuf::from)
                .ok_or_else(|| format!("package.sh printed no {ext} path:\n{}", out.stdout))
        };
        let p = Packages {
            deb: find(".deb")?,
            rpm: find(".rpm")?,
        };
        for f in [&p.deb, &p.rpm] {
            if !f.is_file() {
                return Err(format!("{} does not exist", f.display()));
            }
        }
        Ok(p)
    });
    match built {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

/// The .deb unpacked (`dpkg-deb -x`) into a temporary directory.
fn unpacked_deb() -> TempDir {
    let dir = TempDir::new("deb");
    run_ok(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&packages().deb)
            .arg(dir.path()),
    );
    dir
}

/// Installed paths of the .deb (files and symlinks, no directories).
fn expected_deb_files() -> BTreeSet<String> {
    let lib = deb_libdir();
    [
        "/etc/ttm/ttm.conf".to_owned(),
        "/lib/systemd/system/ttm.service".to_owned(),
        "/lib/systemd/system/ttm-check.service".to_owned(),
        "/lib/systemd/system/ttm-check.timer".to_owned(),
        "/usr/include/ttm.h".to_owned(),
        format!("{lib}/libttm.so.1"),
        format!("{lib}/libttm.so"),
        format!("{lib}/pkgconfig/ttm.pc"),
        "/usr/libexec/ttm/ttm-service".to_owned(),
        "/usr/sbin/ttmctl".to_owned(),
        "/usr/share/doc/ttm/README.md".to_owned(),
        "/usr/share/doc/ttm/copyright".to_owned(),
        "/usr/share/doc/ttm/examples/nginx-preload.conf".to_owned(),
        "/usr/share/doc/ttm/examples/nginx.conf".to_owned(),
        "/usr/share/doc/ttm/examples/server.c".to_owned(),
        "/usr/share/man/man7/libttm.7.gz".to_owned(),
        "/usr/share/man/man8/ttmctl.8.gz".to_owned(),
    ]
    .into()
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
    let tree = unpacked_deb();
    let lib = tree
        .path()
        .join(deb_libdir().trim_start_matches('/'))
        .join("libttm.so.1");
    let ttmctl = tree.path().join("usr/sbin/ttmctl");
    assert_glibc_baseline(&lib);
    assert_glibc_baseline(&ttmctl);

    // Stripping kept what a preload and -lttm need.
    let dynamic = tool("readelf", &["-d", lib.to_str().unwrap()]);
    assert!(
        dynamic.contains("Library soname: [libttm.so.1]"),
        "{dynamic}"
    );
    let exports = tool("nm", &["-D", "--defined-only", lib.to_str().unwrap()]);
    for sym in [
        "accept",
        "accept4",
        "getpeername",
        "ttm_get_peer",
        "ttm_version",
    ] {
        assert!(
            exports.lines().any(|l| l.ends_with(&format!(" {sym}"))),
            "{sym} not exported:\n{exports}"
        );
    }

    // The .rpm ships the very same bytes.
    let dump = run_ok(
        Command::new("rpm")
            .args(["-qp", "--dump"])
            .arg(&packages().rpm),
    );
    for (rpm_path, file) in [
        ("/usr/lib64/libttm.so.1", &lib),
        ("/usr/sbin/ttmctl", &ttmctl),
    ] {
        let line = dump
            .lines()
            .find(|l| l.starts_with(&format!("{rpm_path} ")))
            .unwrap_or_else(|| panic!("{rpm_path} not in rpm --dump:\n{dump}"));
        let digest = line.split_whitespace().nth(3).expect("digest column");
        let sum = tool("sha256sum", &[file.to_str().unwrap()]);
        assert_eq!(
            digest,
            sum.split_whitespace().next().unwrap(),
            "{rpm_path}: rpm and deb differ"
        );
    }
}

#[test]
fn deb_contents_and_control() {
    let p = packages();
    let members = deb_members(&p.deb);
    let files: BTreeSet<String> = members
        .iter()
        .filter(|(_, dir, _)| !dir)
        .map(|(p, _, _)| p.clone())
        .collect();
    assert_eq!(files, expected_deb_files());
    let link = members
        .iter()
        .find(|(p, _, _)| p.ends_with("/libttm.so"))
        .expect("libttm.so");
    assert_eq!(link.2.as_deref(), Some("libttm.so.1"), "dev symlink");

    let field = |name: &str| {
        tool("dpkg-deb", &["-f", p.deb.to_str().unwrap(), name])
            .trim()
            .to_owned()
    };
    assert_eq!(field("Package"), "ttm");
    assert_eq!(field("Version"), format!("{}-1", version()));
    assert_eq!(field("Depends"), "libc6 (>= 2.17)");

    let tree = unpacked_deb();
    let ctl = TempDir::new("debctl");
    run_ok(
        Command::new("dpkg-deb")
            .arg("-e")
            .arg(&p.deb)
            .arg(ctl.path()),
    );
    assert_eq!(
        fs::read_to_string(ctl.path().join("conffiles")).unwrap(),
        "/etc/ttm/ttm.conf\n"
    );
    let prerm = fs::read_to_string(ctl.path().join("prerm")).unwrap();
    assert!(prerm.contains("ttm-service stop"), "{prerm}");
    let postrm = fs::read_to_string(ctl.path().join("postrm")).unwrap();
    assert!(postrm.contains("deb-systemd-helper purge"), "{postrm}");
    assert!(
        fs::read_to_string(ctl.path().join("triggers"))
            .unwrap()
            .contains("activate-noawait ldconfig")
    );
    for s in ["postinst", "prerm", "postrm"] {
        let mode = fs::metadata(ctl.path().join(s))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "{s} is not executable");
        run_ok(Command::new("sh").arg("-n").arg(ctl.path().join(s)));
    }

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
}

#[test]
fn rpm_contents_and_scriptlets() {
    let rpm = &packages().rpm;
    let q = |args: &[&str]| run_ok(Command::new("rpm").arg("-qp").args(args).arg(rpm));
    let listed: BTreeSet<String> = q(&["-l"]).lines().map(str::to_owned).collect();
    let want: BTreeSet<String> = [
        "/etc/ttm",
        "/etc/ttm/ttm.conf",
        "/usr/include/ttm.h",
        "/usr/lib/systemd/system/ttm.service",
        "/usr/lib/systemd/system/ttm-check.service",
        "/usr/lib/systemd/system/ttm-check.timer",
        "/usr/lib64/libttm.so",
        "/usr/lib64/libttm.so.1",
        "/usr/lib64/pkgconfig/ttm.pc",
        "/usr/libexec/ttm",
        "/usr/libexec/ttm/ttm-service",
        "/usr/sbin/ttmctl",
        "/usr/share/doc/ttm",
        "/usr/share/doc/ttm/README.md",
        "/usr/share/doc/ttm/copyright",
        "/usr/share/doc/ttm/examples",
        "/usr/share/doc/ttm/examples/nginx-preload.conf",
        "/usr/share/doc/ttm/examples/nginx.conf",
        "/usr/share/doc/ttm/examples/server.c",
        "/usr/share/man/man7/libttm.7.gz",
        "/usr/share/man/man8/ttmctl.8.gz",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(listed, want);
    assert_eq!(q(&["-c"]).trim(), "/etc/ttm/ttm.conf", "config files");
    assert_eq!(
        q(&["--queryformat", "%{NAME} %{VERSION} %{RELEASE} %{ARCH}"]),
        format!("ttm {} 1 {}", version(), std::env::consts::ARCH)
    );

    let scripts = q(&["--scripts"]);
    let preun = scripts
        .split("preuninstall scriptlet")
        .nth(1)
        .unwrap_or_else(|| panic!("no %preun:\n{scripts}"));
    assert!(preun.contains("ttm-service stop"), "{scripts}");
    assert!(scripts.contains("/sbin/ldconfig"), "{scripts}");

    let provides = q(&["--provides"]);
    assert!(
        provides.lines().any(|l| l.starts_with("libttm.so.1()")),
        "{provides}"
    );
    // What rpm's dependency generator found agrees with the baseline.
    let requires = q(&["--requires"]);
    for line in requires.lines() {
        if let Some(v) = line
            .split("(GLIBC_")
            .nth(1)
            .and_then(|r| r.split(')').next())
        {
            let v: Vec<u32> = v.split('.').map(|n| n.parse().unwrap()).collect();
            assert!(
                v <= vec![GLIBC_BASELINE.0, GLIBC_BASELINE.1],
                "rpm requires {line}"
            );
        }
    }
    assert!(!requires.contains("pkg-config"), "{requires}");
}

/// `systemd-analyze verify` works without systemd as PID 1 (it runs its
/// own manager in test mode); `--root` points it at the unpacked package,
/// where it checks the unit's syntax, dependencies and that its
/// ExecStart/ExecStop programs exist and are executable. The nginx drop-in
/// is verified the same way, against a stub nginx.service.
#[test]
fn unit_and_dropin_pass_systemd_analyze_verify() {
    let tree = unpacked_deb();
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

/// Every option of every ttmctl command is in ttmctl.8, every variable
/// the library reads is in libttm.7, and both render without a warning.
#[test]
fn man_pages_render_and_cover_every_option_and_variable() {
    let tree = unpacked_deb();
    let ttmctl = tree.path().join("usr/sbin/ttmctl");
    let page8 = fs::read_to_string(root().join("packaging/man/ttmctl.8")).unwrap();
    let page7 = fs::read_to_string(root().join("packaging/man/libttm.7")).unwrap();
    // roff writes "-" as "\-" in options.
    let page8_plain = page8.replace("\\-", "-");
    let page7_plain = page7.replace("\\-", "-");
    for cmd in [
        &["load"][..],
        &["unload"],
        &["status"],
        &["doctor"],
        &["simulate", "start"],
        &["simulate", "stop"],
        &["simulate", "status"],
    ] {
        let mut args: Vec<&str> = cmd.to_vec();
        args.push("--help");
        let help = run_ok(Command::new(&ttmctl).args(&args));
        for opt in help
            .split_whitespace()
            .filter(|w| w.starts_with("--"))
            .map(|w| w.trim_end_matches([',', '.', ']', ')']))
            .map(|w| w.split(['=', '[']).next().unwrap_or(w))
            .filter(|w| *w != "--help" && *w != "--version")
        {
            assert!(
                page8_plain.contains(opt),
                "ttmctl {} has {opt}, ttmctl.8 does not mention it",
                cmd.join(" ")
            );
        }
        assert!(page8_plain.contains(&cmd.join(" ")), "{cmd:?}");
    }
    // The variables the library reads, from its source.
    let config = fs::read_to_string(root().join("src/config.rs")).unwrap();
    let vars: BTreeSet<&str> = config
        .split('"')
        .filter(|s| s.starts_with("TTM_") && s.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect();
    assert!(vars.len() >= 7, "found only {vars:?} in src/config.rs");
    for v in &vars {
        assert!(page7_plain.contains(v), "libttm.7 does not document {v}");
    }

    for page in ["packaging/man/ttmctl.8", "packaging/man/libttm.7"] {
        let out = run(Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(root().join(page))
            .env("LC_ALL", "C.UTF-8"));
        assert!(
            out.status.success() && out.stderr.trim().is_empty(),
            "groff warns on {page}: {}",
            out.stderr
        );
    }
    // The packaged pages are these, compressed.
    for (src, packed) in [
        ("packaging/man/ttmctl.8", "usr/share/man/man8/ttmctl.8.gz"),
        ("packaging/man/libttm.7", "usr/share/man/man7/libttm.7.gz"),
    ] {
        let unpacked = tool("zcat", &[tree.path().join(packed).to_str().unwrap()]);
        assert_eq!(unpacked, fs::read_to_string(root().join(src)).unwrap());
    }
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

/// The Kubernetes manifest parses, has the parts docs/kubernetes.md
/// relies on, and its container script builds the right `ttmctl load`
/// (run here with a stand-in ttmctl that records its arguments). No
/// cluster is involved.
#[test]
fn kubernetes_manifest_parses_and_loads_with_the_configured_options() {
    let manifest = root().join("packaging/kubernetes/daemonset.yaml");
    let script = r#"
import json, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
print(json.dumps(docs))
"#;
    let out = run_ok(Command::new(PYTHON).args(["-c", script]).arg(&manifest));
    let docs: Vec<Value> = serde_json::from_str(out.trim()).expect("JSON");
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Namespace", "ConfigMap", "DaemonSet"]);
    let ds = &docs[2];
    let pod = &ds["spec"]["template"]["spec"];
    assert!(pod["hostPID"].is_null(), "hostPID is not needed");
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["privileged"], true);
    assert_eq!(
        c["lifecycle"]["preStop"]["exec"]["command"],
        serde_json::json!(["ttmctl", "unload", "--pin-dir", "/sys/fs/bpf/ttm"])
    );
    let volumes = pod["volumes"].as_array().unwrap();
    let host_path = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"] == name)
            .and_then(|v| v["hostPath"]["path"].as_str())
            .unwrap_or_else(|| panic!("no hostPath volume {name}"))
            .to_owned()
    };
    assert_eq!(host_path("bpffs"), "/sys/fs/bpf");
    assert_eq!(host_path("cgroup2"), "/sys/fs/cgroup");
    assert_eq!(host_path("libttm"), "/var/lib/ttm");
    assert_eq!(host_path("textfile"), "/var/lib/prometheus/node-exporter");
    let mounts = c["volumeMounts"].as_array().unwrap();
    let mount_of = |name: &str| {
        mounts
            .iter()
            .find(|m| m["name"] == name)
            .and_then(|m| m["mountPath"].as_str())
            .unwrap_or_else(|| panic!("no mount of {name}"))
            .to_owned()
    };
    assert_eq!(mount_of("bpffs"), "/sys/fs/bpf");
    assert_eq!(mount_of("cgroup2"), "/host/cgroup");
    assert_eq!(mount_of("textfile"), "/host/textfile");
    // The readiness probe is status: not ready while degraded or unloaded.
    assert_eq!(
        c["readinessProbe"]["exec"]["command"],
        serde_json::json!(["ttmctl", "status", "--pin-dir", "/sys/fs/bpf/ttm"])
    );

    // The container's script, with the ConfigMap's variables and a
    // stand-in ttmctl; it must stay up until SIGTERM, then exit 0.
    let cmd: Vec<String> = c["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(&cmd[..2], ["/bin/sh", "-c"]);
    let dir = TempDir::new("k8s");
    let log = dir.path().join("calls");
    let stub = dir.path().join("ttmctl");
    fs::write(
        &stub,
        // The first status says "degraded" (exit 2): the script must load
        // again.
        format!(
            "#!/bin/sh\necho \"$*\" >> {log}\n\
             if [ \"$1\" = status ] && ! [ -e {log}.once ]; then touch {log}.once; exit 2; fi\n",
            log = log.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&stub, fs::Permissions::from_mode(0o755)).unwrap();
    let config = &docs[1]["data"];
    let mut sh = Command::new("/bin/sh");
    sh.args(["-c", &cmd[2]])
        .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
        .env("TRUST", "10.0.0.0/24 2001:db8::/64")
        .env("FORMATS", config["FORMATS"].as_str().unwrap())
        .env("CGROUP", "kubepods.slice")
        .process_group(0);
    let server = Server::interactive("daemonset script", sh);
    let _group = KillGroup(server.pid() as i32);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while fs::read_to_string(&log).unwrap_or_default().lines().count() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "script ran no ttmctl load + status + load: {:?}",
            fs::read_to_string(&log)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on the pid of a child this test spawned and has not
    // reaped (Server reaps it on drop).
    let rc = unsafe { libc::kill(server.pid() as i32, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM should end the script cleanly"
    );
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        "load --cgroup /host/cgroup/kubepods.slice --pin-dir /sys/fs/bpf/ttm \
         --trust 10.0.0.0/24 2001:db8::/64\n\
         status --pin-dir /sys/fs/bpf/ttm --format prometheus --output /host/textfile/ttm.prom\n\
         load --cgroup /host/cgroup/kubepods.slice --pin-dir /sys/fs/bpf/ttm \
         --trust 10.0.0.0/24 2001:db8::/64\n"
    );
}

/// Kills a process group (a script and its children) on drop.
struct KillGroup(i32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        // SAFETY: kill(2) of a process group this test created with
        // process_group(0); at worst ESRCH once it is gone.
        unsafe { libc::kill(-self.0, libc::SIGKILL) };
    }
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

fn package_installed() -> bool {
    let out = run(Command::new("dpkg-query").args(["-W", "-f=${Status}", "ttm"]));
    out.status.success()
        && (out.stdout.contains("install ok installed")
            || out.stdout.contains("config-files")
            || out.stdout.contains("half-"))
}

fn purge() -> Finished {
    run(Command::new("dpkg")
        .args(["--purge", "ttm"])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// The ttm package installed by this test: purged on drop unless the test
/// purged it already, so a failing test leaves nothing installed.
struct Installed {
    purged: bool,
}

impl Installed {
    fn install(deb: &Path) -> Installed {
        if package_installed() {
            let conf = fs::read_to_string("/etc/ttm/ttm.conf").unwrap_or_default();
            assert!(
                conf.starts_with(CONF_MARKER),
                "the ttm package is installed on this machine, and not by this test: \
                 refusing to replace it (dpkg --purge ttm, then run again)"
            );
            eprintln!("packaging: purging a ttm package left by an earlier run");
            purge().expect_success("dpkg --purge ttm (left by an earlier run)");
        }
        let guard = Installed { purged: false };
        run_ok(
            Command::new("dpkg")
                .arg("-i")
                .arg(deb)
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
    let deb = &packages().deb;
    let _lock = InstallLock::take();

    // What the package will create, and which of its directories exist
    // already (those stay after the purge).
    let members = deb_members(deb);
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

    let mut installed = Installed::install(deb);

    // dpkg's own record matches the package.
    // dpkg -L names the root "/.".
    let listed: Vec<String> = tool("dpkg", &["-L", "ttm"])
        .lines()
        .map(|l| {
            if l == "/." {
                "/".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect();
    let listed_files: BTreeSet<String> = listed
        .iter()
        .filter(|p| !member_dirs.contains(*p))
        .cloned()
        .collect();
    assert_eq!(listed_files, expected_deb_files(), "dpkg -L ttm");
    for f in &listed_files {
        assert!(exists_no_follow(Path::new(f)), "{f} not installed");
    }
    let lib = PathBuf::from(format!("{}/libttm.so.1", deb_libdir()));
    let ttmctl = Path::new("/usr/sbin/ttmctl");
    let wrapper = Path::new("/usr/libexec/ttm/ttm-service");
    assert_glibc_baseline(&lib);
    assert!(
        tool("ldconfig", &["-p"]).contains("libttm.so.1 "),
        "the ldconfig trigger did not put libttm.so.1 in the cache"
    );
    assert_eq!(
        tool(ttmctl.to_str().unwrap(), &["--version"]).trim(),
        format!("ttmctl {}", version())
    );

    // The installed unit verifies on the installed system, man pages
    // (its Documentation=) and programs included.
    let out =
        run(Command::new("systemd-analyze").args(["verify", "/lib/systemd/system/ttm.service"]));
    assert!(
        out.status.success() && out.stderr.trim().is_empty(),
        "systemd-analyze verify (installed): {out:?}"
    );
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
            .arg("/usr/share/doc/ttm/examples/server.c")
            .arg("-ldl"),
    );

    // The kernel side, loaded the way ttm.service does it: the installed
    // wrapper reading /etc/ttm/ttm.conf, running the installed ttmctl.
    let topo = Topology::new();
    let (id, _) = harness::unique_id();
    let pin = PinDir::new(&format!("ttm-pkg-{id}"));
    let conf = format!(
        "{CONF_MARKER} (pid {})\nTRUST=\"{}/32 {}/128\"\nFORMATS=\"254/8 254/20\"\n\
         CGROUP=\"{}\"\nREWRITE=yes\nPIN_DIR=\"{}\"\n",
        std::process::id(),
        topo.client_v4(),
        topo.client_v6(),
        topo.server_cgroup().display(),
        pin.path().display()
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

    // Purge: prerm unloads what ttm.conf's PIN_DIR holds, dpkg removes
    // every file it installed and the conffile, postrm the enablement.
    installed.purge();
    assert!(!package_installed(), "ttm still known to dpkg after purge");
    assert_nothing_left(topo.server_cgroup(), &[pin.path()]);
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
