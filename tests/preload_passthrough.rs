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
