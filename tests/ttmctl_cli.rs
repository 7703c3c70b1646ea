//! ttmctl's promises about bad input: every mistake is one clear sentence
//! on stderr and a non-zero exit, nothing is left attached or pinned, and
//! `--help` documents every flag.

mod harness;

use harness::cgroup::CgroupTree;
use harness::{bpffs, require_root, ttmctl_path, unique_id};
use std::path::Path;
use std::process::{Command, Output};

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
    for cmd in ["load", "unload", "status", "doctor", "simulate"] {
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
    for args in [&["load"][..], &["unload"], &["simulate", "stop"]] {
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
