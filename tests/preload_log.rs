//! What the library says on stderr: one info line naming the backend and
//! why, one warning per bad setting (with a safe default and no crash),
//! JSON lines with TTM_LOG_FORMAT=json, per-event lines at debug.

mod harness;
mod preload;

use preload::{Preload, normalize, probe, run};

fn stderr_of(env: &[(&str, &str)], preload: Preload) -> (String, String) {
    let r = run(&probe(), &["errors"], preload, env);
    (r.stdout, r.stderr)
}

#[test]
fn info_names_the_backend_once() {
    let (_, err) = stderr_of(&[("TTM_LOG", "info")], Preload::Libttm);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains(" info backend backend=none why=\"auto: nothing installed"),
        "{err}"
    );
    let (_, err) = stderr_of(
        &[("TTM_LOG", "info"), ("TTM_BACKEND", "off")],
        Preload::Libttm,
    );
    assert!(err.contains("backend=off why=\"TTM_BACKEND=off\""), "{err}");
    let (_, err) = stderr_of(
        &[("TTM_LOG", "info"), ("TTM_DISABLE", "1")],
        Preload::Libttm,
    );
    assert!(
        err.contains("backend=off why=\"TTM_DISABLE is set"),
        "{err}"
    );
    let (_, err) = stderr_of(&[("TTM_LOG", "warn")], Preload::Libttm);
    assert_eq!(err, "");
}

#[test]
fn bad_values_warn_once_and_change_nothing() {
    let (plain, _) = stderr_of(&[], Preload::Nothing);
    let bad = [
        ("TTM_LOG", "loud"),
        ("TTM_LOG_FORMAT", "xml"),
        ("TTM_DISABLE", "maybe"),
        ("TTM_TRUSTED", "10.0.0.0/33"),
        ("TTM_BACKEND", "bfp"),
        ("TTM_BPF_MAP", "relative"),
    ];
    let (out, err) = stderr_of(&bad, Preload::Libttm);
    assert_eq!(normalize(&out, true), normalize(&plain, true));
    for (var, _) in bad {
        let n = err
            .lines()
            .filter(|l| l.contains(&format!("var={var} ")))
            .count();
        assert_eq!(n, 1, "{var}: {err}");
    }
    assert_eq!(err.lines().count(), bad.len(), "{err}");
    // A forced backend that is not there: one warning, then pass-through.
    let (out, err) = stderr_of(&[("TTM_BACKEND", "bpf")], Preload::Libttm);
    assert_eq!(normalize(&out, true), normalize(&plain, true));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(" warn backend backend=none why=\"TTM_BACKEND=bpf but pinned map"),
        "{err}"
    );
}

#[test]
fn programs_not_listed_stay_silent() {
    let (_, err) = stderr_of(
        &[("TTM_PROGRAMS", "nginx"), ("TTM_BACKEND", "bogus")],
        Preload::Libttm,
    );
    assert_eq!(err, "");
    let (_, err) = stderr_of(
        &[("TTM_PROGRAMS", "nginx"), ("TTM_LOG", "info")],
        Preload::Libttm,
    );
    assert!(
        err.contains("backend=off why=\"program ") && err.contains("not in TTM_PROGRAMS"),
        "{err}"
    );
}

#[test]
fn json_lines() {
    let r = run(
        &probe(),
        &["matrix", "4"],
        Preload::LibttmAndFake,
        &[
            ("TTM_LOG", "debug"),
            ("TTM_LOG_FORMAT", "json"),
            ("TTM_BACKEND", "kmod"),
            ("FAKE_TTM_PEER", "[2001:db8::7]:5555"),
        ],
    );
    let mut events = std::collections::HashMap::<String, usize>::new();
    for line in r.stderr.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["ts"].is_f64() && v["pid"].is_i64() && v["level"].is_string(),
            "{line}"
        );
        *events
            .entry(v["event"].as_str().unwrap().to_owned())
            .or_default() += 1;
        if v["event"] == "rewrite" {
            assert_eq!(v["client"], "[2001:db8::7]:5555", "{line}");
            assert!(
                v["lb"].as_str().unwrap().starts_with("127.0.0.1:"),
                "{line}"
            );
        }
    }
    assert_eq!(events["backend"], 1, "{events:?}");
    assert_eq!(events["no_room_for_ipv6"], 1, "warned once: {events:?}");
    assert!(events["rewrite"] > 0 && events["pass"] > 0, "{events:?}");
}
