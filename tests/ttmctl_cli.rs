//! ttmctl's promises about bad input: every mistake is one clear sentence
//! on stderr and a non-zero exit, nothing is left attached or pinned, and
//! `--help` documents every flag.

mod harness;

use harness::bpffs::{PinDir, attached_roles};
use harness::cgroup::CgroupTree;
use harness::{Server, bpffs, require_root, ttmctl_path, unique_id};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn ttmctl(args: &[&str]) -> Output {
    Command::new(ttmctl_path())
        .args(args)
        .output()
        .expect("run ttmctl")
}

/// Fails unless the command failed with one `ttmctl: ...` line containing
/// every `needle`.
fn expect_error(args: &[&str], needles: &[&str]) -> String {
    let out = ttmctl(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "ttmctl {args:?} succeeded; stderr: {err}"
    );
    for n in needles {
        assert!(
            err.contains(n),
            "ttmctl {args:?}: {n:?} not in stderr:\n{err}"
        );
    }
    err
}

fn expect_one_line(args: &[&str], needles: &[&str]) {
    let err = expect_error(args, needles);
    assert!(err.starts_with("ttmctl: "), "not a ttmctl error: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "more than one line: {err}"
    );
}

#[test]
fn help_documents_every_flag() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["load", "--help"],
            &[
                "--cgroup",
                "--pin-dir",
                "--trust",
                "--format",
                "--no-rewrite",
                "--no-defer-accept",
                "--getsockopt-compat",
            ],
        ),
        (&["unload", "--help"], &["--pin-dir"]),
        (
            &["status", "--help"],
            &[
                "--pin-dir",
                "--json",
                "--format",
                "prometheus",
                "--output",
                "3 not loaded",
            ],
        ),
        (&["doctor", "--help"], &["--json"]),
        (
            &["detect", "--help"],
            &[
                "--cgroup",
                "--pid",
                "--pin-dir",
                "--seconds",
                "--handshakes",
                "--json",
            ],
        ),
        (
            &["simulate", "start", "--help"],
            &["--cgroup", "--pin-dir", "--client", "--format", "--raw"],
        ),
        (&["simulate", "stop", "--help"], &["--pin-dir"]),
        (&["simulate", "status", "--help"], &["--pin-dir", "--json"]),
    ];
    for (args, flags) in cases {
        let out = ttmctl(args);
        assert!(out.status.success(), "ttmctl {args:?} failed");
        let help = String::from_utf8_lossy(&out.stdout);
        for f in *flags {
            assert!(
                help.contains(f),
                "ttmctl {args:?} does not document {f}:\n{help}"
            );
        }
    }
    let top = String::from_utf8_lossy(&ttmctl(&["--help"]).stdout).into_owned();
    for cmd in ["load", "unload", "status", "doctor", "detect", "simulate"] {
        assert!(top.contains(cmd), "top-level help lacks {cmd}");
    }
}

#[test]
fn bad_flag_values_are_refused_before_touching_the_kernel() {
    require_root();
    let (id, _) = unique_id();
    let pin = format!("/sys/fs/bpf/ttm-cli-{id}");
    expect_error(
        &["load", "--pin-dir", &pin, "--trust", "198.18.0.1/24"],
        &["host bits", "198.18.0.0/24"],
    );
    expect_error(
        &["load", "--pin-dir", &pin, "--trust", "not-an-ip"],
        &["--trust"],
    );
    expect_error(
        &["load", "--pin-dir", &pin, "--trust", "fd00::/129"],
        &["0..=128"],
    );
    // A list names its bad entry; an empty one (an unset TRUST=) is refused.
    expect_error(
        &[
            "load",
            "--pin-dir",
            &pin,
            "--trust",
            "10.0.0.0/24,10.1.0.0/33",
        ],
        &["\"10.1.0.0/33\"", "0..=32"],
    );
    expect_error(
        &["load", "--pin-dir", &pin, "--trust", ""],
        &["no trusted LB prefix", "any"],
    );
    expect_error(
        &[
            "load",
            "--pin-dir",
            &pin,
            "--trust",
            "any",
            "--trust",
            "10.0.0.0/8",
        ],
        &["contradict"],
    );
    expect_error(
        &["load", "--pin-dir", &pin, "--format", "254/9"],
        &["254/8", "200/8"],
    );
    expect_error(&["load", "--pin-dir", &pin, "--format", "x"], &["KIND/LEN"]);
    expect_error(
        &["simulate", "start", "--cgroup", "/tmp", "--raw", "zz"],
        &["hex"],
    );
    expect_error(
        &[
            "simulate",
            "start",
            "--cgroup",
            "/tmp",
            "--client",
            "1.2.3.4:0",
        ],
        &["port 0"],
    );
    expect_error(&["simulate", "start", "--cgroup", "/tmp"], &["--client"]);
    expect_error(
        &[
            "simulate", "start", "--cgroup", "/tmp", "--client", "1.2.3.4", "--raw", "c802",
        ],
        &["cannot be used with"],
    );
    expect_one_line(
        &["simulate", "start", "--cgroup", "/tmp", "--raw", "0102"],
        &["EOL/NOP"],
    );
    // F10: the kernel writes as many bytes as the length byte says; the
    // rest would be dropped without a word.
    expect_one_line(
        &[
            "simulate",
            "start",
            "--cgroup",
            "/tmp",
            "--raw",
            "c804aabbccdd",
        ],
        &["c804aabbccdd", "covers 4 of its 6 bytes"],
    );
    // Nothing is written after an option the kernel cannot walk, nor a
    // kind twice.
    expect_one_line(
        &[
            "simulate", "start", "--cgroup", "/tmp", "--raw", "c801", "--raw", "c902",
        ],
        &["ends the list"],
    );
    expect_one_line(
        &[
            "simulate", "start", "--cgroup", "/tmp", "--raw", "c802", "--raw", "c803aa",
        ],
        &["each option kind once"],
    );
    assert!(!Path::new(&pin).exists(), "a refused load left {pin}");
}

#[test]
fn wrong_places_get_one_clear_sentence_and_leave_nothing() {
    require_root();
    bpffs::ensure_bpffs();
    let (id, _) = unique_id();
    let pin = format!("/sys/fs/bpf/ttm-cli-{id}");

    expect_one_line(
        &["load", "--cgroup", "/tmp", "--pin-dir", &pin],
        &["/tmp", "not a cgroup v2 directory"],
    );
    expect_one_line(
        &["load", "--cgroup", "/nonexistent-ttm", "--pin-dir", &pin],
        &["no such directory"],
    );
    assert!(!Path::new(&pin).exists(), "a refused load left {pin}");

    let not_bpffs = std::env::temp_dir().join(format!("ttm-cli-{id}"));
    let cg = CgroupTree::create(&format!("ttm-cli-{id}"), &["server"]);
    expect_one_line(
        &[
            "load",
            "--cgroup",
            cg.child("server").to_str().unwrap(),
            "--pin-dir",
            not_bpffs.to_str().unwrap(),
        ],
        &["not on a BPF filesystem"],
    );
    assert!(
        !not_bpffs.exists(),
        "a refused load created {}",
        not_bpffs.display()
    );
    assert!(
        bpffs::attached(cg.child("server")).is_empty(),
        "a refused load attached programs"
    );

    // unload never removes what is not ours, even when pointed at bpffs' root.
    expect_one_line(
        &["unload", "--pin-dir", "/sys/fs/bpf"],
        &["holds no ttm pins"],
    );
    // The emulator refuses the root cgroup: it would tag every connection.
    let root = harness::cgroup::cgroup2_mount()
        .to_str()
        .unwrap()
        .to_string();
    expect_one_line(
        &[
            "simulate",
            "start",
            "--cgroup",
            &root,
            "--pin-dir",
            &pin,
            "--client",
            "203.0.113.7:1",
        ],
        &["root cgroup"],
    );
    assert!(!Path::new(&pin).exists());
    // Nothing loaded: unload is a no-op that says so (systemd ExecStop-safe).
    let out = ttmctl(&["unload", "--pin-dir", &pin]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing loaded"));
}

#[test]
fn unprivileged_users_are_told_to_use_root() {
    require_root();
    // status is not here: it reads what an unprivileged user may
    // (tests/operations.rs).
    for args in [
        &["load"][..],
        &["unload"],
        &["simulate", "stop"],
        &["detect", "--cgroup", "/tmp"],
    ] {
        let out = Command::new("setpriv")
            .args(["--reuid", "nobody", "--regid", "nogroup", "--clear-groups"])
            .arg(ttmctl_path())
            .args(args)
            .output()
            .expect("setpriv");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "ttmctl {args:?} as nobody succeeded");
        assert!(
            err.contains("needs root"),
            "ttmctl {args:?} as nobody: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
}

#[test]
fn doctor_passes_here_and_reports_every_check() {
    require_root();
    let out = ttmctl(&["doctor", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("doctor --json is JSON");
    assert!(out.status.success(), "doctor failed: {v:#}");
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    for n in [
        "kernel",
        "cgroup2",
        "bpffs",
        "privileges",
        "vendor module",
        "verifier",
        "bpf_set_retval",
        "defer-accept",
    ] {
        assert!(names.contains(&n), "doctor lacks the {n} check: {names:?}");
    }
    let verifier = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "verifier")
        .unwrap();
    assert_eq!(verifier["status"], "ok", "{verifier:#}");
    // This machine has kernel BTF: the optional TCP_DEFER_ACCEPT program
    // must load too.
    let deferred = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "defer-accept")
        .unwrap();
    assert_eq!(deferred["status"], "ok", "{deferred:#}");
}

/// Every one of `commands` started at once, and their outcomes.
fn run_at_once(commands: &[&[&str]]) -> Vec<Output> {
    let children: Vec<_> = commands
        .iter()
        .map(|args| {
            Command::new(ttmctl_path())
                .args(*args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn ttmctl")
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait for ttmctl"))
        .collect()
}

const TTM_PROGRAMS: [&str; 5] = [
    "ttm_deferred",
    "ttm_getpeername4",
    "ttm_getpeername6",
    "ttm_getsockopt",
    "ttm_parse",
];

/// What is attached to `cgroup` settles on `want` (a replaced link is
/// detached by the kernel an instant after its pin goes).
fn assert_attached(cgroup: &Path, want: &[&str], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let names = attached_roles(cgroup);
        if names == want {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: attached {names:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// F9: loads and unloads started at once on one pin dir take turns: each
/// one succeeds, and what is left is one whole set, or nothing.
#[test]
fn concurrent_loads_and_unloads_on_one_pin_dir_take_turns() {
    require_root();
    let (id, _) = unique_id();
    let cg = CgroupTree::create(&format!("ttm-cli-{id}"), &["server"]);
    let pin = PinDir::new(&format!("ttm-cli-{id}"));
    let server = cg.child("server");
    let (c, p) = (server.to_str().unwrap(), pin.path().to_str().unwrap());
    let load: &[&str] = &["load", "--cgroup", c, "--pin-dir", p, "--trust", "any"];
    let unload: &[&str] = &["unload", "--pin-dir", p];
    let status = || -> serde_json::Value {
        let out = ttmctl(&["status", "--json", "--pin-dir", p]);
        serde_json::from_slice(&out.stdout).expect("status --json")
    };
    let (mut waited, rounds) = (0, 8);
    for round in 0..rounds {
        let what = format!("round {round}, three loads at once");
        for out in run_at_once(&[load, load, load]) {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{what}: a load failed: {err}");
            waited += usize::from(err.contains("is working on"));
        }
        // Never a success with nothing loaded: every program, once.
        let s = status();
        assert_eq!(s["loaded"], true, "{what}: {s}");
        assert_eq!(
            s["programs"].as_array().map(Vec::len),
            Some(5),
            "{what}: {s}"
        );
        assert_attached(server, &TTM_PROGRAMS, &what);

        let what = format!("round {round}, loads and unloads at once");
        for out in run_at_once(&[load, unload, load, unload]) {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{what}: failed: {err}");
        }
        // Whoever went last, the state is whole: loaded, or nothing left.
        if status()["loaded"] == true {
            assert_attached(server, &TTM_PROGRAMS, &what);
        } else {
            assert!(
                !pin.path().exists(),
                "{what}: unloaded but the pin dir stays"
            );
            assert_attached(server, &[], &what);
        }
    }
    let out = ttmctl(unload);
    assert!(out.status.success());
    assert_attached(server, &[], "after the last unload");
    assert!(!pin.path().exists());
    // Three at once, every round: some had to wait, and said so.
    assert!(waited > 0, "no load ever waited for another");
    eprintln!("{waited} of {} loads waited for another", 3 * rounds);
}

/// F9: a command finding another at work on its pin dir says so, waits,
/// and goes on once it is done.
#[test]
fn a_command_waits_for_another_on_its_pin_dir_and_says_so() {
    require_root();
    let (id, _) = unique_id();
    let cg = CgroupTree::create(&format!("ttm-cli-{id}"), &["server"]);
    let pin = PinDir::new(&format!("ttm-cli-{id}"));
    let p = pin.path().to_str().unwrap();
    let c = cg.child("server").to_str().unwrap();
    let out = ttmctl(&["load", "--cgroup", c, "--pin-dir", p, "--trust", "any"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // This test holds the lock, as a running ttmctl would.
    let dir = std::fs::File::open(pin.path()).expect("open pin dir");
    // SAFETY: flock on an fd this test owns.
    let r = unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(r, 0, "flock: {}", std::io::Error::last_os_error());
    let mut cmd = Command::new(ttmctl_path());
    cmd.args(["unload", "--pin-dir", p]);
    let unload = Server::interactive("ttmctl unload", cmd);
    unload.wait_stderr(
        "is working on",
        Duration::from_secs(20),
        "no word of waiting",
    );
    let err = unload.stderr();
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    assert!(err.contains(p), "{err}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        pin.path().exists(),
        "unload went ahead while the lock was held"
    );
    drop(dir);
    assert!(
        unload.wait_exit(Duration::from_secs(20)).success(),
        "{}",
        unload.stderr()
    );
    assert!(!pin.path().exists());
    assert_attached(cg.child("server"), &[], "after unload");
}

/// F13: each wrong place is named for what it is.
#[test]
fn wrong_kinds_of_path_are_named_for_what_they_are() {
    require_root();
    bpffs::ensure_bpffs();
    let (id, _) = unique_id();
    let cg = CgroupTree::create(&format!("ttm-cli-{id}"), &["server"]);
    let pin = PinDir::new(&format!("ttm-cli-{id}"));
    let p = pin.path().to_str().unwrap();
    let c = cg.child("server").to_str().unwrap();

    // A file of the cgroup filesystem: was "Bad file descriptor".
    let procs = format!("{c}/cgroup.procs");
    for args in [
        &["load", "--cgroup", &procs, "--pin-dir", p][..],
        &[
            "simulate",
            "start",
            "--cgroup",
            &procs,
            "--pin-dir",
            p,
            "--client",
            "203.0.113.7:1",
        ],
        &["detect", "--cgroup", &procs],
    ] {
        expect_one_line(
            args,
            &["is a file of the cgroup filesystem, not a cgroup", c],
        );
    }
    assert!(!pin.path().exists());
    // A cgroup v1 hierarchy, where this machine has one.
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    if let Some(v1) = mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == "cgroup")
    {
        expect_one_line(
            &["load", "--cgroup", v1[1], "--pin-dir", p],
            &["cgroup v1 hierarchy"],
        );
    }
    // A pin dir whose parent is missing on bpffs: was "not on a BPF
    // filesystem", which it is.
    let deep = format!("{p}/missing/ttm");
    expect_one_line(
        &["load", "--cgroup", c, "--pin-dir", &deep],
        &[
            &format!("its parent {p}/missing does not exist"),
            "mkdir -p",
        ],
    );
    // The root of bpffs is nobody's pin dir.
    expect_one_line(
        &["load", "--cgroup", c, "--pin-dir", "/sys/fs/bpf"],
        &["root of a BPF filesystem"],
    );
    assert!(!pin.path().exists(), "a refused load left {p}");

    // A pin given as the pin dir: was a ttm_stash pinning error.
    let out = ttmctl(&["load", "--cgroup", c, "--pin-dir", p, "--trust", "any"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let map = format!("{p}/ttm_peers");
    for args in [
        &["load", "--cgroup", c, "--pin-dir", &map][..],
        &["unload", "--pin-dir", &map],
        &["status", "--pin-dir", &map],
        &[
            "simulate",
            "start",
            "--cgroup",
            c,
            "--pin-dir",
            &map,
            "--client",
            "203.0.113.7:1",
        ],
        &["simulate", "stop", "--pin-dir", &map],
        &["simulate", "status", "--pin-dir", &map],
    ] {
        expect_one_line(
            args,
            &[
                "is a pinned BPF object",
                &format!("the directory that holds it ({p})"),
            ],
        );
    }
    // The emulator does not move in with the kernel side (its stop would
    // remove both).
    expect_one_line(
        &[
            "simulate",
            "start",
            "--cgroup",
            c,
            "--pin-dir",
            p,
            "--client",
            "203.0.113.7:1",
        ],
        &["holds ttm's kernel side"],
    );
    assert_attached(cg.child("server"), &TTM_PROGRAMS, "after the refusals");
    // Nor the kernel side with the emulator.
    let lb = PinDir::new(&format!("ttm-cli-lb-{id}"));
    let l = lb.path().to_str().unwrap();
    let out = ttmctl(&[
        "simulate",
        "start",
        "--cgroup",
        c,
        "--pin-dir",
        l,
        "--client",
        "203.0.113.7:1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    expect_one_line(
        &["load", "--cgroup", c, "--pin-dir", l, "--trust", "any"],
        &["holds the LB emulator"],
    );
    assert!(
        ttmctl(&["simulate", "stop", "--pin-dir", l])
            .status
            .success()
    );
    let out = ttmctl(&["unload", "--pin-dir", p]);
    assert!(out.status.success());
    assert_attached(cg.child("server"), &[], "after unload");
}

/// F15: control characters in values ttmctl echoes are escaped, in its
/// own errors and in clap's.
#[test]
fn control_characters_in_echoed_values_are_escaped() {
    require_root();
    let cases: &[&[&str]] = &[
        &["load", "--pin-dir", "/sys/fs/bpf/ttm\x1b[31mred"],
        &["load", "--cgroup", "/tmp/\x1b]0;title\x07"],
        &["load", "--cgroup", "/tmp/x\nttmctl: forged line"],
        &["unload", "--pin-dir", "/sys/fs/bpf/\x1b[2J"],
        &["status", "--pin-dir", "/sys/fs/bpf/\u{9b}2J"],
        &["load", "--format", "254/8\x1b[2J"],
        &["load", "--trust", "10.0.0.0/8,\x1b[1m10.1.0.0/16"],
        &[
            "simulate",
            "start",
            "--cgroup",
            "/tmp",
            "--client",
            "1.2.3.4\x1b[0m:80",
        ],
        &["simulate", "start", "--cgroup", "/tmp", "--raw", "c8\x1b"],
        &["detect", "--cgroup", "/tmp/\x1b[31m"],
        &["detect", "--pin-dir", "/sys/fs/bpf/\x07"],
        &["detect", "--seconds", "1\nttmctl: forged line"],
        &["load", "--bogus\nttmctl: forged line"],
        &["bogus\nttmctl: forged line"],
    ];
    for args in cases {
        let out = ttmctl(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "ttmctl {args:?} succeeded");
        let raw: Vec<char> = err
            .chars()
            .filter(|c| c.is_control() && *c != '\n')
            .collect();
        assert!(
            raw.is_empty(),
            "ttmctl {args:?}: raw {raw:?} in stderr:\n{err}"
        );
        assert!(
            err.contains("\\x1b")
                || err.contains("\\u{1b}")
                || err.contains("\\x07")
                || err.contains("\\x0a")
                || err.contains("\\u{9b}"),
            "ttmctl {args:?}: the value is not shown escaped:\n{err}"
        );
        assert!(
            !err.lines().any(|l| l.starts_with("ttmctl: forged")),
            "ttmctl {args:?}: a forged line:\n{err}"
        );
    }
}
