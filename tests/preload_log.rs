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
        err.contains(" warn backend backend=none why=\"TTM_BACKEND=bpf but no ttm eBPF kit is pinned at /nonexistent/ttm-preload-tests "),
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

#[test]
fn control_characters_from_the_environment_and_the_program_name_are_escaped() {
    // Issue 11 F15: an ESC sequence in a value must not reach a terminal.
    let scratch = preload::Scratch::new("log-esc");
    let named = scratch.0.join("pro\x1b[2Jbe");
    std::fs::copy(probe(), &named).unwrap();
    let bad = "\x1b[31mbfp\x07\r\nx";
    for json in [false, true] {
        let format = if json { "json" } else { "text" };
        let r = run(
            &named,
            &["errors"],
            Preload::Libttm,
            &[
                ("TTM_BACKEND", bad),
                ("TTM_LOG", "info"),
                ("TTM_LOG_FORMAT", format),
            ],
        );
        let err = r.stderr;
        assert_eq!(
            err.lines().count(),
            2,
            "{format}: one warning, one info: {err:?}"
        );
        assert!(
            !err.chars().any(|c| c.is_control() && c != '\n'),
            "{format}: a control character reached stderr: {err:?}"
        );
        if json {
            for line in err.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(v["prog"], "pro\x1b[2Jbe", "{line}");
                if v["event"] == "config" {
                    assert_eq!(v["value"], bad, "{line}");
                }
            }
        } else {
            assert!(
                err.contains(r#" warn config var=TTM_BACKEND value="\x1b[31mbfp\x07\r\nx" "#),
                "{err:?}"
            );
            assert!(err.starts_with(r"ttm[pro\x1b[2Jbe:"), "{err:?}");
        }
    }
}

#[test]
fn an_exported_trust_list_that_cannot_be_believed_is_ignored_with_a_warning() {
    // Files ttmctl would never write; the real one is read in
    // tests/preload_e2e.rs. TTM_BACKEND=kmod: a backend in use, so the
    // list matters and is read.
    let scratch = preload::Scratch::new("log-export");
    let run_dir = scratch.0.join("run");
    let pins = scratch.0.join("ttm");
    std::fs::create_dir_all(&run_dir).unwrap();
    std::fs::create_dir_all(&pins).unwrap();
    let pins_s = pins.to_str().unwrap();
    let file = run_dir.join("ttm.json");
    let env = [
        ("TTM_BACKEND", "kmod"),
        ("TTM_PIN_DIR", pins_s),
        ("TTM_RUN_DIR", run_dir.to_str().unwrap()),
    ];
    let good =
        format!(r#"{{"schema":1,"pin_dir":"{pins_s}","trusted":["10.0.0.0/8"],"any":false}}"#);
    for (content, why) in [
        (good.as_str(), format!("no ttm pins in {pins_s}")),
        ("{", "not JSON".to_owned()),
        (
            r#"{"schema":1,"pin_dir":"/sys/fs/bpf/elsewhere/ttm","trusted":[],"any":true}"#,
            "it is for pin dir /sys/fs/bpf/elsewhere/ttm".to_owned(),
        ),
    ] {
        std::fs::write(&file, content).unwrap();
        let (_, err) = stderr_of(&env, Preload::Libttm);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(&format!(
                " warn trust_export file=\"{}\" why=\"{why}",
                file.display()
            )),
            "{content}: {err}"
        );
        assert!(
            err.contains("ignored: every LB address is looked up"),
            "{err}"
        );
    }
    // No file: nothing to say at the default level.
    std::fs::remove_file(&file).unwrap();
    let (_, err) = stderr_of(&env, Preload::Libttm);
    assert_eq!(err, "");
}
