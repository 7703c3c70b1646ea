//! With nothing installed, with TTM_DISABLE=1, and for every call that
//! fails or is not TCP, a program sees exactly what it sees without the
//! library: same return, errno and bytes (ports masked: they differ between
//! any two runs). Real C and Python programs, loopback only.

mod harness;
mod preload;

use preload::{PYTHON, Preload, normalize, probe, run, source};

fn same_as_without(args: &[&str], env: &[(&str, &str)]) {
    let without = run(&probe(), args, Preload::Nothing, &[]);
    let with = run(&probe(), args, Preload::Libttm, env);
    assert_eq!(
        normalize(&with.stdout, true),
        normalize(&without.stdout, true),
        "probe {args:?} with libttm ({env:?}) differs"
    );
    assert!(
        !with.stdout.contains("OVERRUN") && !with.stdout.is_empty(),
        "{}",
        with.stdout
    );
    assert_eq!(with.stderr, "", "silent at the default log level");
}

#[test]
fn failing_calls_keep_their_errno() {
    // EAGAIN (non-blocking, nothing pending), EBADF, ENOTSOCK, EINVAL (not
    // listening, bad flags), ENOTCONN.
    let out = run(&probe(), &["errors"], Preload::Libttm, &[]).stdout;
    for errno in [11, 9, 88, 22, 107] {
        assert!(
            out.contains(&format!("errno={errno} ")),
            "errno {errno} missing:\n{out}"
        );
    }
    same_as_without(&["errors"], &[]);
    same_as_without(&["errors"], &[("TTM_BACKEND", "kmod")]);
    same_as_without(&["errors"], &[("TTM_DISABLE", "1")]);
}

#[test]
fn tcp_without_a_backend_is_untouched() {
    for family in ["4", "6", "dual"] {
        same_as_without(&["matrix", family], &[]);
        // A backend that has nothing for these sockets: ENOPROTOOPT from
        // every lookup, and still the caller's errno (777) on success.
        same_as_without(&["matrix", family], &[("TTM_BACKEND", "kmod")]);
    }
}

#[test]
fn disabled_is_pure_pass_through() {
    for family in ["4", "dual"] {
        same_as_without(&["matrix", family], &[("TTM_DISABLE", "1")]);
    }
}

#[test]
fn unix_and_udp_sockets_are_untouched() {
    let scratch = preload::Scratch::new("unix");
    let path = scratch.0.join("s.sock");
    let path = path.to_str().unwrap();
    same_as_without(&["unix", path], &[]);
    same_as_without(&["unix", path], &[("TTM_BACKEND", "kmod")]);
    same_as_without(&["udp"], &[]);
    same_as_without(&["udp"], &[("TTM_BACKEND", "kmod")]);
}

#[test]
fn python_sees_what_it_sees_without_the_library() {
    let script = source("probe.py");
    let script = script.to_str().unwrap();
    let scratch = preload::Scratch::new("py");
    let path = scratch.0.join("py.sock");
    let path = path.to_str().unwrap();
    let without = run(PYTHON.as_ref(), &[script, path], Preload::Nothing, &[]);
    assert!(
        without.stdout.contains("BlockingIOError"),
        "{}",
        without.stdout
    );
    for env in [
        &[][..],
        &[("TTM_BACKEND", "kmod")][..],
        &[("TTM_DISABLE", "1")][..],
    ] {
        let with = run(PYTHON.as_ref(), &[script, path], Preload::Libttm, env);
        assert_eq!(with.stdout, without.stdout, "{env:?}");
        assert_eq!(with.stderr, "");
    }
}

#[test]
fn an_addrlen_with_no_memory_behind_it_fails_as_without_the_library_where_it_can() {
    // Issue 11 F2. libttm reads *addrlen before the real call (the kernel
    // overwrites it), so a pointer must be readable when the library can
    // not tell it is not. Pointers that cannot be user memory at all are
    // left to the kernel: EFAULT, the connection taken, exactly as
    // without the library. A PROT_NONE page cannot be told from good
    // memory without a syscall or a SIGSEGV handler (README, libttm.so
    // rules): that case is pinned here as documented, SIGSEGV.
    let without = run(&probe(), &["badlen"], Preload::Nothing, &[]).stdout;
    let with = run(
        &probe(),
        &["badlen"],
        Preload::LibttmAndFake,
        &[
            ("TTM_BACKEND", "kmod"),
            ("FAKE_TTM_PEER", "198.51.100.7:5555"),
        ],
    )
    .stdout;
    let lines = |out: &str| -> Vec<String> { out.lines().map(str::to_owned).collect() };
    let (without, with) = (lines(&without), lines(&with));
    assert_eq!(without.len(), 9, "{without:#?}");
    for l in &without {
        assert!(l.contains(" ret=-1 errno=14 "), "libc alone: {l}");
    }
    // An accept that fails on addrlen has taken its connection.
    assert!(
        without
            .iter()
            .any(|l| l.ends_with(" accept ret=-1 errno=14 pending=0"))
    );
    for (w, l) in without.iter().zip(&with) {
        if l.starts_with("badlen prot_none ") {
            let call = l.split(' ').nth(2).unwrap();
            assert_eq!(l, &format!("badlen prot_none {call} signal=11"));
        } else {
            assert_eq!(l, w, "same as without the library");
        }
    }
    assert_eq!(with.len(), without.len(), "{with:#?}");
}
