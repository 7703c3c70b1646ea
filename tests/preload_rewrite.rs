//! The rewrite through real accept/accept4/getpeername calls, with a fake
//! kernel module (tests/preload/fake_kmod.c) answering getsockopt(SOL_IP,
//! 1345) for every TCP socket: socket family x client family x every buffer
//! size x NULL pointers, checked byte for byte against the rules; plus the
//! per-process controls and the C API with a backend present.

mod harness;
mod preload;

use std::net::SocketAddr;

use preload::{Preload, expected_hex, mask_port, normalize, parse_lines, probe, run};

const V4: &str = "198.51.100.7:5555";
const V6: &str = "[2001:db8::7]:5555";

fn with_fake(args: &[&str], client: &str, env: &[(&str, &str)]) -> String {
    let mut all = vec![("TTM_BACKEND", "kmod"), ("FAKE_TTM_PEER", client)];
    all.extend_from_slice(env);
    let r = run(&probe(), args, Preload::LibttmAndFake, &all);
    assert!(!r.stdout.contains("OVERRUN"), "{}", r.stdout);
    r.stdout
}

/// The kernel's own answer for the probe's loopback connections, on a
/// socket of `family`, as `len` and masked hex of `size` bytes.
fn kernel_answer(family: i32, which: &str, size: u32) -> (u32, String) {
    let bytes: Vec<u8> = match (family, which) {
        (2, _) => [&[2, 0, 0, 0, 127, 0, 0, 1][..], &[0; 8]].concat(),
        (_, "6") => {
            let mut b = vec![10, 0, 0, 0, 0, 0, 0, 0];
            b.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
            b.extend_from_slice(&[0; 4]);
            b
        }
        _ => {
            let mut b = vec![10, 0, 0, 0, 0, 0, 0, 0];
            b.extend_from_slice(&std::net::Ipv4Addr::LOCALHOST.to_ipv6_mapped().octets());
            b.extend_from_slice(&[0; 4]);
            b
        }
    };
    let n = (size as usize).min(bytes.len());
    let hex: String = bytes[..n].iter().map(|x| format!("{x:02x}")).collect();
    (bytes.len() as u32, mask_port(&hex))
}

#[test]
fn full_matrix_through_real_calls() {
    let mut checked = 0;
    for which in ["4", "6", "dual"] {
        let family = if which == "4" { 2 } else { 10 };
        for client in [V4, V6] {
            let client_addr: SocketAddr = client.parse().unwrap();
            let out = with_fake(&["matrix", which], client, &[]);
            let mut last_lookups = 0;
            for l in parse_lines(&out) {
                let what = format!(
                    "socket {which}, client {client}: {} {} size {} null {}",
                    l.label, l.call, l.size, l.nulls
                );
                let asked = l.lookups - last_lookups;
                last_lookups = l.lookups;
                assert_eq!(l.errno, if l.ok { 777 } else { 14 }, "{what}: errno");
                if l.nulls != "00" {
                    // accept(fd, NULL, NULL) and friends: no lookup at all.
                    assert_eq!(asked, 0, "{what}: a NULL pointer costs no lookup");
                    continue;
                }
                assert!(l.ok, "{what}");
                if l.size < 2 {
                    assert_eq!(asked, 0, "{what}: family not visible, no lookup");
                } else {
                    assert_eq!(asked, 1, "{what}: exactly one lookup");
                }
                match expected_hex(family, client_addr, l.size).filter(|_| l.size >= 2) {
                    Some(hex) => {
                        assert_eq!(l.addr, hex, "{what}: bytes");
                        let true_len = if family == 2 && client_addr.is_ipv4() {
                            16
                        } else {
                            28
                        };
                        assert_eq!(l.len, true_len, "{what}: length");
                    }
                    None => {
                        let (len, hex) = kernel_answer(family, which, l.size);
                        assert_eq!(
                            (l.len, mask_port(&l.addr)),
                            (len, hex),
                            "{what}: kernel's answer"
                        );
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 300, "only {checked} calls checked");
}

#[test]
fn the_fake_alone_does_not_rewrite() {
    // Without libttm the getsockopt answer is there but accept shows the
    // kernel's address: the rewrite above is libttm's doing.
    let r = run(
        &probe(),
        &["matrix", "4"],
        Preload::Fake,
        &[("FAKE_TTM_PEER", V4)],
    );
    let plain = run(&probe(), &["matrix", "4"], Preload::Nothing, &[]);
    assert_eq!(normalize(&r.stdout, false), normalize(&plain.stdout, false));
}

#[test]
fn unix_sockets_are_never_asked_about() {
    let scratch = preload::Scratch::new("rw-unix");
    let path = scratch.0.join("s.sock");
    let out = with_fake(&["unix", path.to_str().unwrap()], V4, &[]);
    for l in parse_lines(&out) {
        assert_eq!(l.lookups, 0, "{l:?}");
    }
}

#[test]
fn udp_is_left_alone() {
    // The backend decides TCP-ness (a real one never has data for UDP; the
    // fake checks SO_PROTOCOL like the kernel side does).
    let with = with_fake(&["udp"], V4, &[]);
    let without = run(&probe(), &["udp"], Preload::Nothing, &[]).stdout;
    assert_eq!(normalize(&with, false), normalize(&without, false));
}

#[test]
fn failing_calls_are_not_looked_up() {
    let with = with_fake(&["errors"], V4, &[]);
    let without = run(&probe(), &["errors"], Preload::Nothing, &[]).stdout;
    assert_eq!(normalize(&with, false), normalize(&without, false));
    for l in parse_lines(&with) {
        assert_eq!(l.lookups, 0, "{l:?}");
    }
}

fn first_accept_addr(out: &str) -> String {
    parse_lines(out)
        .into_iter()
        .find(|l| l.call == "accept" && l.size == 128 && l.nulls == "00")
        .map(|l| l.addr)
        .unwrap()
}

#[test]
fn per_process_controls() {
    let rewritten = expected_hex(2, V4.parse().unwrap(), 128).unwrap();
    let cases: &[(&[(&str, &str)], bool)] = &[
        (&[], true),
        (&[("TTM_DISABLE", "1")], false),
        (&[("TTM_DISABLE", "0")], true),
        (&[("TTM_PROGRAMS", "nginx,python3")], false),
        (&[("TTM_TRUSTED", "127.0.0.0/8")], true),
        (&[("TTM_TRUSTED", "10.0.0.0/8,2001:db8::/32")], false),
        (&[("TTM_TRUSTED", "garbage")], false),
        (&[("TTM_BACKEND", "off")], false),
        (&[("TTM_BACKEND", "bpf")], false),
    ];
    // The probe's file name (argv[0]'s basename) selects it.
    let name = probe().file_name().unwrap().to_str().unwrap().to_owned();
    let listed = format!("nginx,{name}");
    let listed_env = [("TTM_PROGRAMS", listed.as_str())];
    let cases = [cases, &[(&listed_env[..], true)]].concat();
    for (env, rewrites) in &cases {
        let out = with_fake(&["matrix", "4"], V4, env);
        let addr = first_accept_addr(&out);
        assert_eq!(addr == rewritten, *rewrites, "{env:?}: {addr}");
        if !rewrites {
            assert!(
                addr.starts_with("0200") && addr.contains("7f000001"),
                "{env:?}: {addr}"
            );
        }
    }
}

#[test]
fn c_api_with_a_backend() {
    for (client, hex) in [(V4, "0200"), (V6, "0a00")] {
        let out = with_fake(&["capi"], client, &[]);
        assert!(out.contains("backend=kmod version="), "{out}");
        let addr: SocketAddr = client.parse().unwrap();
        let want = expected_hex(if addr.is_ipv4() { 2 } else { 10 }, addr, 128).unwrap();
        assert!(want.starts_with(hex));
        assert!(
            out.contains(&format!(
                "get_peer ret=0 errno=0 len={} addr={want}\n",
                want.len() / 2
            )),
            "{out}"
        );
        let raw = match addr {
            SocketAddr::V4(_) => "0200 15b3 c6336407 000000000000000000000000",
            SocketAddr::V6(_) => "0a00 15b3 20010db8000000000000000000000007",
        }
        .replace(' ', "");
        assert!(
            out.contains(&format!("get_peer_raw ret=0 errno=0 raw={raw}\n")),
            "{out}"
        );
        assert!(out.contains("get_peer_null ret=-1 errno=22"), "{out}");
        assert!(out.contains("get_peer_badfd ret=-1 errno=9"), "{out}");
    }
    let out = with_fake(&["capi"], V4, &[("TTM_TRUSTED", "10.0.0.0/8")]);
    assert!(
        out.contains("get_peer ret=-1 errno=1 "),
        "EPERM when untrusted: {out}"
    );
    let out = with_fake(&["capi"], V4, &[("TTM_DISABLE", "1")]);
    assert!(
        out.contains("backend=off") && out.contains("get_peer ret=-1 errno=38 "),
        "{out}"
    );
}

/// `stat NAME=VALUE` lines of a run with PROBE_STATS=1.
fn stats(out: &str) -> std::collections::HashMap<String, u64> {
    out.lines()
        .filter_map(|l| l.strip_prefix("stat "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.parse().unwrap()))
        .collect()
}

#[test]
fn counters_add_up() {
    for (which, client) in [("4", V6), ("dual", V4)] {
        let out = with_fake(&["matrix", which], client, &[("PROBE_STATS", "1")]);
        let lines = parse_lines(&out);
        let mut s = stats(&out);
        let lookups = s.remove("lookups").expect("a lookups counter");
        assert_eq!(
            s.values().sum::<u64>(),
            lines.len() as u64,
            "every call counted once: {s:?}"
        );
        // The fake module counts the questions it was asked, too.
        assert_eq!(
            lookups as i64,
            lines.last().unwrap().lookups,
            "ttm_stat's lookups and the backend's count agree"
        );
        let rewritten = lines
            .iter()
            .filter(|l| l.ok && l.nulls == "00" && l.size >= 2)
            // dual: 2 bytes show only the family, which a rewrite keeps.
            .filter(|l| {
                if which == "4" {
                    l.size >= 28
                } else {
                    l.size > 2
                }
            })
            .count() as u64;
        assert_eq!(s["rewritten"], rewritten, "{s:?}");
        assert_eq!(
            s["call_failed"],
            lines.iter().filter(|l| !l.ok).count() as u64
        );
        assert_eq!(
            s["family_hidden"],
            lines
                .iter()
                .filter(|l| l.ok && l.nulls == "00" && l.size < 2)
                .count() as u64
        );
        if which == "4" {
            // IPv6 client, AF_INET socket, buffer 2..27: the LB address stays.
            assert_eq!(
                s["no_room_for_ipv6"],
                lines
                    .iter()
                    .filter(|l| l.nulls == "00" && (2..28).contains(&l.size))
                    .count() as u64
            );
        }
    }
    let capi = with_fake(&["capi"], V6, &[]);
    // The capi run accepts with NULL pointers once: counted, not rewritten.
    assert!(capi.contains("stat no_address=1\n"), "{capi}");
    assert!(capi.contains("stat rewritten=0\n"), "{capi}");
    assert!(capi.contains("stat_end errno=22"), "{capi}");
}

/// The probe under another name: TTM_WIDEN=auto decides by program name.
fn probe_named(scratch: &preload::Scratch, name: &str) -> std::path::PathBuf {
    let p = scratch.0.join(name);
    std::fs::copy(probe(), &p).unwrap();
    p
}

#[test]
fn widening_policy_by_program_and_ttm_widen() {
    let scratch = preload::Scratch::new("rw-widen");
    let nginx = probe_named(&scratch, "nginx");
    let widened = expected_hex(2, V6.parse().unwrap(), 128).unwrap();
    // (program, TTM_WIDEN, widened?)
    let cases = [
        (probe(), None, true),
        (probe(), Some("auto"), true),
        (probe(), Some("off"), false),
        (nginx.clone(), None, false),
        (nginx.clone(), Some("auto"), false),
        (nginx.clone(), Some("bogus"), false),
        (nginx.clone(), Some("on"), true),
    ];
    for (program, widen, widens) in cases {
        let mut env = vec![
            ("TTM_BACKEND", "kmod"),
            ("FAKE_TTM_PEER", V6),
            ("PROBE_STATS", "1"),
            ("TTM_LOG", "info"),
        ];
        if let Some(w) = widen {
            env.push(("TTM_WIDEN", w));
        }
        let r = run(&program, &["matrix", "4"], Preload::LibttmAndFake, &env);
        let what = format!("{} TTM_WIDEN={widen:?}", program.display());
        let addr = first_accept_addr(&r.stdout);
        let s = stats(&r.stdout);
        let lines = parse_lines(&r.stdout);
        // Calls whose buffer could hold a sockaddr_in6 (and are not NULL).
        let roomy = lines
            .iter()
            .filter(|l| l.ok && l.nulls == "00" && l.size >= 28)
            .count() as u64;
        let visible = lines
            .iter()
            .filter(|l| l.ok && l.nulls == "00" && l.size >= 2)
            .count() as u64;
        if widens {
            assert_eq!(addr, widened, "{what}");
            assert_eq!(s["rewritten"], roomy, "{what}: {s:?}");
            assert_eq!(s["no_room_for_ipv6"], visible - roomy, "{what}: {s:?}");
            assert_eq!(s["widening_off"], 0, "{what}: {s:?}");
            assert!(!r.stderr.contains(" info widen "), "{what}: {}", r.stderr);
        } else {
            assert!(
                addr.starts_with("0200") && addr.contains("7f000001"),
                "{what}: the LB address stays: {addr}"
            );
            assert_eq!(s["rewritten"], 0, "{what}: {s:?}");
            // Off by policy is counted as such, whatever the buffer size.
            assert_eq!(s["widening_off"], visible, "{what}: {s:?}");
            assert_eq!(s["no_room_for_ipv6"], 0, "{what}: {s:?}");
            let info: Vec<&str> = r
                .stderr
                .lines()
                .filter(|l| l.contains(" info widen "))
                .collect();
            assert_eq!(info.len(), 1, "{what}: {}", r.stderr);
            let why = if widen == Some("off") {
                "why=\"TTM_WIDEN=off\""
            } else {
                "why=\"auto: nginx closes connections"
            };
            assert!(info[0].contains(why), "{what}: {}", info[0]);
            assert_eq!(
                r.stderr.matches(" warn widening_off ").count(),
                1,
                "{what}: warned once: {}",
                r.stderr
            );
        }
        assert_eq!(
            r.stderr.matches("var=TTM_WIDEN ").count(),
            usize::from(widen == Some("bogus")),
            "{what}: {}",
            r.stderr
        );
    }
}

#[test]
fn trusted_list_spares_the_lookup_for_other_addresses() {
    // Returned addresses here are 127.0.0.1 / ::1. Outside TTM_TRUSTED
    // they stay whatever the backend says, so asking costs a syscall for
    // nothing; inside it (and without a list) every visible one is asked.
    // `::/0` trusts every IPv6 address and no IPv4 one (ttm_cidr's rule);
    // the list takes commas and/or spaces.
    for which in ["4", "6"] {
        let v6_only = i64::from(which == "6");
        for (trusted, want_asked) in [
            (None, 1),
            (Some("10.0.0.0/8,2001:db8::/32"), 0),
            (Some("127.0.0.0/8 ::1"), 1),
            (Some("::/0"), v6_only),
        ] {
            let env: Vec<(&str, &str)> = trusted.iter().map(|t| ("TTM_TRUSTED", *t)).collect();
            let out = with_fake(&["matrix", which], V4, &env);
            let full = if which == "4" { 16 } else { 28 };
            let mut last = 0;
            let mut seen = 0;
            for l in parse_lines(&out) {
                let asked = l.lookups - last;
                last = l.lookups;
                if l.ok && l.nulls == "00" && l.size >= full {
                    assert_eq!(asked, want_asked, "{which} {trusted:?}: {l:?}");
                    seen += 1;
                }
            }
            assert!(seen > 0, "no fully visible address in the matrix");
        }
    }
}
