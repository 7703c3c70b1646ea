//! The kernel side end to end: `ttmctl load` on a server cgroup, the LB
//! emulator (`ttmctl simulate`) writing the option into real handshakes
//! from a client cgroup in another namespace, and real servers reading the
//! real client through accept(), getpeername(), the vendor getsockopt ABIs
//! and the pinned map. Counters in `ttmctl status --json` are checked
//! against what was sent. Needs root.

mod harness;

use std::collections::HashSet;
use std::net::Ipv6Addr;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use harness::bpffs::{assert_nothing_left, attached_names};
use harness::ttmctl::{counter_of, ttmctl_ok};
use harness::{
    HeldConnection, KernelSide, LbEmulator, PYTHON, Server, Topology, connect, echo_server,
    fixture, run_client, run_to_end,
};
use serde_json::{Value, json};

const ENOENT: i64 = 2;
const EINVAL: i64 = 22;
const ENOPROTOOPT: i64 = 92;

/// Claimed clients: documentation ranges, unreachable from the namespaces.
const CLAIM4: &str = "203.0.113.7";
const CLAIM6: &str = "2001:db8::7";
const CLAIM_PORT: u64 = 4242;

const ALL_COUNTERS: [&str; 22] = [
    "found_v4",
    "found_v6",
    "no_option",
    "malformed",
    "bad_address",
    "untrusted",
    "no_packet",
    "storage_failed",
    "getsockopt_ttm",
    "getsockopt_nat64",
    "getsockopt_error",
    "rewrite4",
    "rewrite6",
    "stashed",
    "stash_refused",
    "stash_failed",
    "from_stash",
    "stash_stale",
    "stash_unmatched",
    "stash_cookie",
    "fastopen",
    "fastopen_claim",
];

/// Asserts the named counters have these values and every other counter
/// is 0: an outcome counted in the wrong place fails too.
fn assert_counters(ks: &KernelSide, expect: &[(&str, u64)]) {
    let status = ks.status();
    // The list above is the stable interface users key on: status must
    // report exactly these names, no fewer and no more.
    let mut names: Vec<&str> = status["counters"]
        .as_object()
        .expect("counters object")
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    let mut want = ALL_COUNTERS.to_vec();
    want.sort_unstable();
    assert_eq!(names, want, "counter names in ttmctl status --json");
    for name in ALL_COUNTERS {
        let want = expect
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| *v);
        assert_eq!(
            counter_of(&status, name),
            want,
            "counter {name}; all: {}",
            status["counters"]
        );
    }
}

/// `struct ttm_peer` as the 20 bytes getsockopt returns, in hex: af in
/// host order (little-endian here), port and address in network order.
fn peer_hex(ip: &str, port: u64) -> String {
    let (af, addr): (u16, Vec<u8>) = match ip.parse::<std::net::IpAddr>().expect("ip") {
        std::net::IpAddr::V4(a) => (2, [a.octets().to_vec(), vec![0; 12]].concat()),
        std::net::IpAddr::V6(a) => (10, a.octets().to_vec()),
    };
    let mut b = af.to_ne_bytes().to_vec();
    b.extend((port as u16).to_be_bytes());
    b.extend(addr);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What echo_server.py reports for getsockopt 1345 answered with this
/// client (the vendor's struct '!bbH4s12s' parse, plus length and bytes).
fn ttm_answer(ip: &str, port: u64) -> Value {
    let af = if ip.contains(':') { 10 } else { 2 };
    json!({"af": af, "ip": ip, "port": port, "len": 20, "raw": peer_hex(ip, port)})
}

/// What echo_server.py reports for the pinned map looked up by fd.
fn map_answer(ip: &str, port: u64) -> Value {
    let af = if ip.contains(':') { 10 } else { 2 };
    json!({"af": af, "ip": ip, "port": port, "raw": peer_hex(ip, port)})
}

/// What echo_server.py reports for getsockopt 4096 answered with this
/// (IPv6) client: in6_addr, be16 port, 2 bytes of padding.
fn nat64_answer(ip: &str, port: u64) -> Value {
    let a: Ipv6Addr = ip.parse().expect("ipv6");
    let mut raw: String = a.octets().iter().map(|x| format!("{x:02x}")).collect();
    raw.push_str(&format!("{port:04x}0000"));
    json!({"ip": ip, "port": port, "len": 20, "raw": raw})
}

/// Echo server on the server side, reading the map of `ks`.
fn server_for(topo: &Topology, ks: &KernelSide, family: &str) -> Server {
    let map = ks.peers_map();
    echo_server(
        &topo.server().launch(),
        &["--family", family, "--map", map.to_str().expect("utf-8")],
    )
}

/// One connection from the client side to `dst`; returns the client's
/// record {"local", "reply"} after checking the server printed the same
/// record it sent.
fn ask(topo: &Topology, server: &Server, dst: &str, extra: &[&str]) -> Value {
    let rec = connect(&topo.client().launch(), dst, server.port(), 1, extra)
        .pop()
        .expect("one record");
    let printed = server.next_json(Duration::from_secs(10));
    assert_eq!(
        printed, rec["reply"],
        "server printed another record than it sent"
    );
    rec
}

fn local_port(rec: &Value) -> u64 {
    rec["local"][1].as_u64().expect("local port")
}

/// The reply of a connection no ttm part touched: the kernel's own view
/// (`seen` is the client address as the listener's family shows it).
fn assert_untouched(rec: &Value, seen: &str) {
    let port = local_port(rec);
    let r = &rec["reply"];
    assert_eq!(r["accept"], json!([seen, port]), "{rec}");
    assert_eq!(r["getpeername"], json!([seen, port]), "{rec}");
    assert_eq!(r["ttm"], json!({"errno": ENOPROTOOPT}), "{rec}");
    assert_eq!(r["nat64"], json!({"errno": ENOPROTOOPT}), "{rec}");
    assert_eq!(r["map"]["errno"], json!(ENOENT), "{rec}");
}

#[test]
fn four_to_four_every_view_shows_the_claimed_client() {
    let topo = Topology::new();
    let ks = KernelSide::load(&topo, &[]);
    let lb = LbEmulator::start(&topo, &["--client", &format!("{CLAIM4}:{CLAIM_PORT}")]);
    let server = server_for(&topo, &ks, "inet");

    let rec = ask(&topo, &server, &topo.server_v4().to_string(), &[]);
    let r = &rec["reply"];
    assert_eq!(r["accept"], json!([CLAIM4, CLAIM_PORT]), "{rec}");
    assert_eq!(r["getpeername"], json!([CLAIM4, CLAIM_PORT]), "{rec}");
    assert_eq!(r["ttm"], ttm_answer(CLAIM4, CLAIM_PORT), "{rec}");
    assert_eq!(r["map"], map_answer(CLAIM4, CLAIM_PORT), "{rec}");
    // The NAT64 ABI answers IPv6 clients only.
    assert_eq!(
        r["nat64"],
        json!({"errno": ks.refusal_errno(EINVAL)}),
        "{rec}"
    );
    // The server's own end is not touched.
    assert_eq!(r["local"][0], json!(topo.server_v4().to_string()));

    assert_counters(
        &ks,
        &[
            ("found_v4", 1),
            ("getsockopt_ttm", 1),
            ("getsockopt_error", 1),
            // accept() with an address buffer, then getpeername().
            ("rewrite4", 2),
        ],
    );
    let lbs = lb.status();
    assert_eq!(
        (lbs["armed"].as_u64(), lbs["written"].as_u64()),
        (Some(1), Some(1)),
        "{lbs}"
    );
    assert_eq!(lbs["store_failed"], json!(0), "{lbs}");
    assert_eq!(lbs["reserve_failed"], json!(0), "{lbs}");

    let status = ks.status();
    assert_eq!(status["loaded"], json!(true), "{status}");
    assert_eq!(
        status["cgroup"],
        json!(topo.server_cgroup().to_str().unwrap()),
        "{status}"
    );
    assert_eq!(status["pin_dir"], json!(ks.pin_dir().to_str().unwrap()));
    assert_eq!(status["rewrite"], json!(true), "{status}");
    assert_eq!(
        status["formats"],
        json!(["254/8", "254/20", "253/20"]),
        "{status}"
    );
    assert_eq!(status["trusted"], json!([]), "{status}");
    let progs: HashSet<&str> = status["programs"]
        .as_array()
        .expect("programs")
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    let getsockopt = loaded_program(&status, "link_getsockopt");
    assert_eq!(
        progs,
        HashSet::from([
            "ttm_parse",
            getsockopt.as_str(),
            "ttm_getpeername4",
            "ttm_getpeername6",
            "ttm_deferred"
        ])
    );
    assert_eq!(status["defer_accept"], json!(true), "{status}");
}

#[test]
fn six_to_four_getsockopt_and_dual_stack_listener() {
    let topo = Topology::new();
    let ks = KernelSide::load(&topo, &[]);
    let _lb = LbEmulator::start(&topo, &["--client", &format!("[{CLAIM6}]:{CLAIM_PORT}")]);
    let v4 = topo.server_v4().to_string();

    // AF_INET listener: its sockaddr cannot hold the IPv6 client, so
    // accept()/getpeername() keep the LB's address; getsockopt has it.
    let server = server_for(&topo, &ks, "inet");
    let rec = ask(&topo, &server, &v4, &[]);
    let r = &rec["reply"];
    let lb = topo.client_v4().to_string();
    assert_eq!(r["accept"], json!([lb, local_port(&rec)]), "{rec}");
    assert_eq!(r["getpeername"], json!([lb, local_port(&rec)]), "{rec}");
    assert_eq!(r["ttm"], ttm_answer(CLAIM6, CLAIM_PORT), "{rec}");
    assert_eq!(r["ttm"]["af"], json!(10));
    assert_eq!(r["nat64"], nat64_answer(CLAIM6, CLAIM_PORT), "{rec}");
    assert_eq!(r["map"], map_answer(CLAIM6, CLAIM_PORT), "{rec}");
    drop(server);

    // Dual-stack listener, same IPv4 path from the LB: shown in-kernel.
    let server = server_for(&topo, &ks, "dual");
    let rec = ask(&topo, &server, &v4, &[]);
    let r = &rec["reply"];
    assert_eq!(r["accept"], json!([CLAIM6, CLAIM_PORT]), "{rec}");
    assert_eq!(r["getpeername"], json!([CLAIM6, CLAIM_PORT]), "{rec}");
    assert_eq!(r["ttm"], ttm_answer(CLAIM6, CLAIM_PORT), "{rec}");

    assert_counters(
        &ks,
        &[
            ("found_v6", 2),
            ("getsockopt_ttm", 2),
            ("getsockopt_nat64", 2),
            ("rewrite6", 2),
        ],
    );
}

#[test]
fn six_to_six_and_an_ipv4_claim_over_ipv6() {
    let topo = Topology::new();
    let ks = KernelSide::load(&topo, &[]);
    let mut lb = LbEmulator::start(&topo, &["--client", &format!("[{CLAIM6}]:{CLAIM_PORT}")]);
    let server = server_for(&topo, &ks, "inet6");
    let v6 = topo.server_v6().to_string();

    let rec = ask(&topo, &server, &v6, &[]);
    let r = &rec["reply"];
    assert_eq!(r["accept"], json!([CLAIM6, CLAIM_PORT]), "{rec}");
    assert_eq!(r["getpeername"], json!([CLAIM6, CLAIM_PORT]), "{rec}");
    assert_eq!(r["ttm"], ttm_answer(CLAIM6, CLAIM_PORT), "{rec}");
    assert_eq!(r["nat64"], nat64_answer(CLAIM6, CLAIM_PORT), "{rec}");
    assert_eq!(r["map"], map_answer(CLAIM6, CLAIM_PORT), "{rec}");

    // An IPv4 client behind an IPv6 LB link: v4-mapped on the v6 socket.
    lb.set(&["--client", &format!("{CLAIM4}:{CLAIM_PORT}")]);
    let rec = ask(&topo, &server, &v6, &[]);
    let r = &rec["reply"];
    let mapped = format!("::ffff:{CLAIM4}");
    assert_eq!(r["accept"], json!([mapped, CLAIM_PORT]), "{rec}");
    assert_eq!(r["ttm"], ttm_answer(CLAIM4, CLAIM_PORT), "{rec}");
    assert_eq!(
        r["nat64"],
        json!({"errno": ks.refusal_errno(EINVAL)}),
        "{rec}"
    );

    assert_counters(
        &ks,
        &[
            ("found_v6", 1),
            ("found_v4", 1),
            ("getsockopt_ttm", 2),
            ("getsockopt_nat64", 1),
            ("getsockopt_error", 1),
            ("rewrite6", 4),
        ],
    );
}

#[test]
fn every_wire_format_is_parsed_only_when_enabled() {
    let topo = Topology::new();
    let mut ks = KernelSide::load(&topo, &[]);
    let claim4 = format!("{CLAIM4}:{CLAIM_PORT}");
    let claim6 = format!("[{CLAIM6}]:{CLAIM_PORT}");
    let mut lb = LbEmulator::start(&topo, &["--client", &claim4]);
    let server = server_for(&topo, &ks, "dual");
    let v4 = topo.server_v4().to_string();
    let lb_seen = format!("::ffff:{}", topo.client_v4());

    // (LB format, claim, load --format list or empty for the default,
    // whether it must be found)
    let cases: [(&str, &str, &[&str], bool); 10] = [
        ("254/8", &claim4, &[], true),
        ("254/20", &claim6, &[], true),
        ("253/20", &claim6, &[], true),
        ("253/8", &claim4, &[], false),
        ("200/8", &claim4, &[], false),
        ("253/8", &claim4, &["253/8"], true),
        ("200/8", &claim4, &["200/8"], true),
        // Kind and length must both match an enabled format.
        ("254/8", &claim4, &["200/8"], false),
        ("200/8", &claim4, &["253/8"], false),
        ("254/20", &claim6, &["254/8", "200/8"], false),
    ];
    let (mut found, mut missed) = (0u64, 0u64);
    for (format, claim, load_formats, expect_found) in cases {
        let mut load_args = Vec::new();
        for f in load_formats {
            load_args.extend(["--format", f]);
        }
        ks.reload(&load_args);
        let want_formats: Vec<&str> = if load_formats.is_empty() {
            vec!["254/8", "254/20", "253/20"]
        } else {
            load_formats.to_vec()
        };
        assert_eq!(ks.status()["formats"], json!(want_formats));
        lb.set(&["--client", claim, "--format", format]);

        let rec = ask(&topo, &server, &v4, &[]);
        let what = format!("LB {format} {claim}, load {load_formats:?}: {rec}");
        let ip = if claim.starts_with('[') {
            CLAIM6
        } else {
            CLAIM4
        };
        if expect_found {
            found += 1;
            assert_eq!(rec["reply"]["ttm"], ttm_answer(ip, CLAIM_PORT), "{what}");
            let shown = if ip == CLAIM4 {
                format!("::ffff:{CLAIM4}")
            } else {
                ip.to_owned()
            };
            assert_eq!(rec["reply"]["accept"], json!([shown, CLAIM_PORT]), "{what}");
        } else {
            missed += 1;
            assert_untouched(&rec, &lb_seen);
        }
    }
    assert_eq!(lb.stat("written"), found + missed);
    assert_eq!(lb.stat("store_failed"), 0);
    // Counters may start afresh with each load or survive reloads: the
    // last load saw exactly one connection, which it did not parse.
    let no_option = ks.counter("no_option");
    assert!(
        no_option == 1 || no_option == missed,
        "no_option {no_option}: neither this load's 1 nor all loads' {missed}"
    );
    let found_all = ks.counter("found_v4") + ks.counter("found_v6");
    assert!(
        found_all == 0 || found_all == found,
        "found {found_all}: neither this load's 0 nor all loads' {found}"
    );
}

#[test]
fn no_option_leaves_connections_alone() {
    let topo = Topology::new();
    let ks = KernelSide::load(&topo, &[]);
    let server = server_for(&topo, &ks, "dual");
    for (dst, seen) in [
        (
            topo.server_v4().to_string(),
            format!("::ffff:{}", topo.client_v4()),
        ),
        (topo.server_v6().to_string(), topo.client_v6().to_string()),
    ] {
        let rec = ask(&topo, &server, &dst, &[]);
        assert_untouched(&rec, &seen);
    }
    assert_counters(&ks, &[("no_option", 2)]);
}

#[test]
fn malformed_option_lists_are_abandoned() {
    let topo = Topology::new();
    let ks = KernelSide::load(&topo, &[]);
    let valid = format!("fe08{CLAIM_PORT:04x}cb007107");
    let server = server_for(&topo, &ks, "inet");
    let v4 = topo.server_v4().to_string();
    let lb_seen = topo.client_v4().to_string();

    // A length byte below 2 abandons the list. (Nothing can follow it on
    // the wire: the kernel refuses to store after an option it cannot
    // walk, and `simulate` refuses to try.)
    let mut lb = LbEmulator::start(&topo, &["--raw", "c801"]);
    assert_untouched(&ask(&topo, &server, &v4, &[]), &lb_seen);
    lb.set(&["--raw", "ca02", "--raw", "c801"]);
    assert_untouched(&ask(&topo, &server, &v4, &[]), &lb_seen);
    assert_eq!(lb.stat("store_failed"), 0);
    // An option cut off by the end of the header: 4 bytes fill the
    // reserved space exactly (beside the 12 of timestamps), so no NOP
    // padding follows and the lone kind 0xc9 is the header's last byte.
    lb.set(&["--raw", "c803aa", "--raw", "c9"]);
    assert_untouched(&ask(&topo, &server, &v4, &[]), &lb_seen);
    assert_counters(&ks, &[("malformed", 3)]);

    // Positive controls on the same setup: an unknown option before ours
    // is skipped, and a broken one after ours does not matter (first
    // match wins).
    for raw in [
        vec!["--raw", "c802", "--raw", &valid],
        vec!["--raw", &valid, "--raw", "c801"],
    ] {
        lb.set(&raw);
        let rec = ask(&topo, &server, &v4, &[]);
        assert_eq!(
            rec["reply"]["ttm"],
            ttm_answer(CLAIM4, CLAIM_PORT),
            "{raw:?}: {rec}"
        );
        assert_eq!(
            rec["reply"]["accept"],
            json!([CLAIM4, CLAIM_PORT]),
            "{raw:?}: {rec}"
        );
    }
    assert_eq!(ks.counter("found_v4"), 2);
    assert_eq!(ks.counter("malformed"), 3);
}

#[test]
fn claims_no_client_can_have_are_refused() {
    let topo = Topology::new();
    let ks = KernelSide::load(&topo, &[]);
    let server = server_for(&topo, &ks, "inet");
    let v4 = topo.server_v4().to_string();
    let lb_seen = topo.client_v4().to_string();
    let mut lb = LbEmulator::start(&topo, &["--client", "0.0.0.0:99"]);
    assert_untouched(&ask(&topo, &server, &v4, &[]), &lb_seen);
    lb.set(&["--client", "[::]:99"]);
    assert_untouched(&ask(&topo, &server, &v4, &[]), &lb_seen);
    // Port 0 (ttmctl refuses to claim it, so written raw).
    lb.set(&["--raw", "fe080000cb007107"]);
    assert_untouched(&ask(&topo, &server, &v4, &[]), &lb_seen);
    assert_counters(&ks, &[("bad_address", 3)]);
}

#[test]
fn options_from_untrusted_sources_are_ignored() {
    let topo = Topology::new();
    let trust4 = format!("{}/32", topo.client_v4());
    let trust6 = format!("{}/128", topo.client_v6());
    // One list, comma-separated, as TRUST= and TTM_TRUSTED take it.
    let ks = KernelSide::load(&topo, &["--trust", &format!("{trust4},{trust6}")]);
    let status = ks.status();
    let mut trusted: Vec<&str> = status["trusted"]
        .as_array()
        .expect("trusted")
        .iter()
        .map(|v| v.as_str().expect("cidr"))
        .collect();
    trusted.sort();
    let mut want = vec![trust4.as_str(), trust6.as_str()];
    want.sort();
    assert_eq!(trusted, want, "{status}");

    let _lb = LbEmulator::start(&topo, &["--client", &format!("{CLAIM4}:{CLAIM_PORT}")]);
    let server = server_for(&topo, &ks, "dual");
    for (dst, trusted_src, untrusted_src, untrusted_seen) in topo.trust_cases() {
        let rec = ask(&topo, &server, &dst, &["--source", &trusted_src]);
        assert_eq!(rec["reply"]["ttm"], ttm_answer(CLAIM4, CLAIM_PORT), "{rec}");
        let rec = ask(&topo, &server, &dst, &["--source", &untrusted_src]);
        assert_untouched(&rec, &untrusted_seen);
    }
    assert_counters(
        &ks,
        &[
            ("found_v4", 2),
            ("untrusted", 2),
            ("getsockopt_ttm", 2),
            ("getsockopt_error", 2),
            ("rewrite6", 4),
        ],
    );
}

/// `::/0` trusts every IPv6 source, and no IPv4 one: IPv4 lives in the
/// trie as ::ffff:a.b.c.d, but an IPv6 prefix only covers it when written
/// inside ::ffff:0:0/96.
#[test]
fn an_ipv6_trust_prefix_does_not_cover_ipv4_sources() {
    let topo = Topology::new();
    let ks = KernelSide::load(&topo, &["--trust", "::/0"]);
    assert_eq!(ks.status()["trusted"], json!(["::/0"]));
    let _lb = LbEmulator::start(&topo, &["--client", &format!("{CLAIM4}:{CLAIM_PORT}")]);
    let server = server_for(&topo, &ks, "dual");
    let [v4, v6] = topo.trust_cases();
    for src in [&v6.1, &v6.2] {
        let rec = ask(&topo, &server, &v6.0, &["--source", src]);
        assert_eq!(rec["reply"]["ttm"], ttm_answer(CLAIM4, CLAIM_PORT), "{rec}");
    }
    let rec = ask(&topo, &server, &v4.0, &["--source", &v4.1]);
    assert_untouched(&rec, &format!("::ffff:{}", v4.1));
    let rec = ask(&topo, &server, &v4.0, &["--source", &v4.2]);
    assert_untouched(&rec, &v4.3);
    assert_counters(
        &ks,
        &[
            ("found_v4", 2),
            ("untrusted", 2),
            ("getsockopt_ttm", 2),
            ("getsockopt_error", 2),
            ("rewrite6", 4),
        ],
    );
}

#[test]
fn forced_syncookies_still_carry_the_client() {
    let topo = Topology::new();
    let srv_ns = topo.server().netns();
    srv_ns.sysctl("net.ipv4.tcp_syncookies", "2");
    let ks = KernelSide::load(&topo, &[]);
    let _lb = LbEmulator::start(&topo, &["--client", CLAIM4]);
    let server = server_for(&topo, &ks, "dual");
    let sent_before = srv_ns.netstat("TcpExt", "SyncookiesSent");
    let recv_before = srv_ns.netstat("TcpExt", "SyncookiesRecv");
    let n = 5;
    for dst in [topo.server_v4().to_string(), topo.server_v6().to_string()] {
        let recs = connect(&topo.client().launch(), &dst, server.port(), n, &[]);
        for rec in &recs {
            // IP-only claim: the claimed port is the connection's own.
            assert_eq!(
                rec["reply"]["ttm"],
                ttm_answer(CLAIM4, local_port(rec)),
                "{rec}"
            );
        }
        server.records(n, Duration::from_secs(10));
    }
    // Proof the handshakes really went through cookies (IPv4 and IPv6
    // share these counters).
    let sent = srv_ns.netstat("TcpExt", "SyncookiesSent") - sent_before;
    let recv = srv_ns.netstat("TcpExt", "SyncookiesRecv") - recv_before;
    assert!(
        sent >= 2 * n as u64 && recv >= 2 * n as u64,
        "cookies sent {sent}, received {recv}"
    );
    assert_eq!(ks.counter("found_v4"), 2 * n as u64);
}

#[test]
fn a_server_running_as_nobody_gets_every_answer() {
    let topo = Topology::new();
    let ks = KernelSide::load(&topo, &[]);
    // The map pin must be readable by others, its directories searchable.
    let map_mode = std::fs::metadata(ks.peers_map())
        .expect("map pin")
        .permissions()
        .mode();
    assert_eq!(map_mode & 0o777, 0o644, "ttm_peers pin mode {map_mode:o}");
    let _lb = LbEmulator::start(&topo, &["--client", &format!("[{CLAIM6}]:{CLAIM_PORT}")]);
    let map = ks.peers_map();
    let server = echo_server(
        &topo.server().launch().nobody(),
        &["--family", "dual", "--map", map.to_str().unwrap()],
    );
    let rec = ask(&topo, &server, &topo.server_v4().to_string(), &[]);
    let r = &rec["reply"];
    assert_eq!(r["accept"], json!([CLAIM6, CLAIM_PORT]), "{rec}");
    assert_eq!(r["ttm"], ttm_answer(CLAIM6, CLAIM_PORT), "{rec}");
    assert_eq!(r["nat64"], nat64_answer(CLAIM6, CLAIM_PORT), "{rec}");
    // The map itself only where the kernel lets an unprivileged process
    // open a pin (README REQUIREMENTS: unprivileged_map_read); elsewhere
    // the answers above are what such a server has, and `load` said so.
    if harness::bpffs::kernel_allows_unprivileged_reads() {
        assert_eq!(r["map"], map_answer(CLAIM6, CLAIM_PORT), "{rec}");
    } else {
        assert_eq!(
            r["map"],
            json!({"errno": libc::EPERM, "op": "obj_get"}),
            "{rec}"
        );
    }
}

#[test]
fn nat64_abi_answers_ipv6_clients_only() {
    let topo = Topology::new();
    let ks = KernelSide::load(&topo, &[]);
    let server = server_for(&topo, &ks, "inet");
    let v4 = topo.server_v4().to_string();
    let claim6 = "2001:db8:64::1";
    let mut lb = LbEmulator::start(&topo, &["--client", &format!("[{claim6}]:8080")]);
    let rec = ask(&topo, &server, &v4, &[]);
    assert_eq!(rec["reply"]["nat64"], nat64_answer(claim6, 8080), "{rec}");
    lb.set(&["--client", "198.51.100.20:8080"]);
    let rec = ask(&topo, &server, &v4, &[]);
    assert_eq!(
        rec["reply"]["nat64"],
        json!({"errno": ks.refusal_errno(EINVAL)}),
        "{rec}"
    );
    lb.stop();
    // No claim at all: not ours to answer, the kernel's ENOPROTOOPT.
    let rec = ask(&topo, &server, &v4, &[]);
    assert_eq!(
        rec["reply"]["nat64"],
        json!({"errno": ENOPROTOOPT}),
        "{rec}"
    );
    assert_counters(
        &ks,
        &[
            ("found_v6", 1),
            ("found_v4", 1),
            ("no_option", 1),
            ("getsockopt_ttm", 2),
            ("getsockopt_nat64", 1),
            ("getsockopt_error", 1),
            ("rewrite4", 2),
        ],
    );
}

#[test]
fn the_getsockopt_variant_without_bpf_set_retval_answers_the_same() {
    let topo = Topology::new();
    let ks = KernelSide::load(&topo, &["--getsockopt-compat"]);
    let status = ks.status();
    assert_eq!(status["getsockopt_compat"], json!(true), "{status}");
    assert_eq!(
        loaded_program(&status, "link_getsockopt"),
        "ttm_getsockopt_compat"
    );
    assert!(
        attached_names(topo.server_cgroup()).contains(&"ttm_getsockopt_compat".to_owned()),
        "{:?}",
        attached_names(topo.server_cgroup())
    );
    let server = server_for(&topo, &ks, "inet");
    let v4 = topo.server_v4().to_string();
    let mut lb = LbEmulator::start(&topo, &["--client", &format!("[{CLAIM6}]:{CLAIM_PORT}")]);
    let rec = ask(&topo, &server, &v4, &[]);
    assert_eq!(rec["reply"]["ttm"], ttm_answer(CLAIM6, CLAIM_PORT), "{rec}");
    assert_eq!(
        rec["reply"]["nat64"],
        nat64_answer(CLAIM6, CLAIM_PORT),
        "{rec}"
    );
    // Where ttm_getsockopt refuses with EINVAL, this one cannot refuse:
    // the kernel's own answer stands.
    lb.set(&["--client", &format!("{CLAIM4}:{CLAIM_PORT}")]);
    let rec = ask(&topo, &server, &v4, &[]);
    assert_eq!(rec["reply"]["ttm"], ttm_answer(CLAIM4, CLAIM_PORT), "{rec}");
    assert_eq!(
        rec["reply"]["nat64"],
        json!({"errno": ENOPROTOOPT}),
        "{rec}"
    );
    assert_eq!(ks.refusal_errno(EINVAL), ENOPROTOOPT);
    assert_counters(
        &ks,
        &[
            ("found_v6", 1),
            ("found_v4", 1),
            ("getsockopt_ttm", 2),
            ("getsockopt_nat64", 1),
            ("getsockopt_error", 1),
            ("rewrite4", 2),
        ],
    );
}

#[test]
fn status_and_doctor_name_the_same_missing_kernel_features() {
    let topo = Topology::new();
    let ks = KernelSide::load(&topo, &[]);
    let status = ks.status();
    let doctor: Value =
        serde_json::from_str(&ttmctl_ok(&["doctor", "--json"])).expect("doctor --json");
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("not a list: {v}"))
            .iter()
            .map(|f| f["feature"].as_str().expect("feature name").to_owned())
            .collect()
    };
    assert_eq!(
        sorted(names(&status["kernel"]["missing"])),
        sorted(names(&doctor["missing"])),
        "status: {status}\ndoctor: {doctor}"
    );
    // The variant without bpf_set_retval where the kernel lacks it, and
    // only there unless it was asked for.
    let lacks_retval = names(&doctor["missing"]).contains(&"bpf_set_retval".to_owned());
    let compat = status["getsockopt_compat"] == json!(true);
    assert!(compat || !lacks_retval, "{status}");
    if !harness::ttmctl::getsockopt_compat_forced() {
        assert_eq!(compat, lacks_retval, "{status}");
    }
    assert!(
        status["kernel"]["release"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{status}"
    );
}

/// Echo server whose listener has TCP_DEFER_ACCEPT (as httpd's default
/// `AcceptFilter http data` sets it), reading the map of `ks`. Its clients
/// must speak first (`--hello`).
fn deferred_server_for(topo: &Topology, ks: &KernelSide, family: &str) -> Server {
    let map = ks.peers_map();
    echo_server(
        &topo.server().launch(),
        &[
            "--family",
            family,
            "--defer-accept",
            "5",
            "--map",
            map.to_str().expect("utf-8"),
        ],
    )
}

#[test]
fn defer_accept_listeners_get_the_claim_of_the_dropped_third_ack() {
    let topo = Topology::new();
    let srv_ns = topo.server().netns();
    let ks = KernelSide::load(&topo, &[]);
    let mut lb = LbEmulator::start(&topo, &["--client", &format!("{CLAIM4}:{CLAIM_PORT}")]);
    let v4 = topo.server_v4().to_string();
    let drops_before = srv_ns.netstat("TcpExt", "TCPDeferAcceptDrop");

    // 4to4, AF_INET listener: every view, as without TCP_DEFER_ACCEPT.
    let server = deferred_server_for(&topo, &ks, "inet");
    let rec = ask(&topo, &server, &v4, &["--hello"]);
    let r = &rec["reply"];
    assert_eq!(r["accept"], json!([CLAIM4, CLAIM_PORT]), "{rec}");
    assert_eq!(r["getpeername"], json!([CLAIM4, CLAIM_PORT]), "{rec}");
    assert_eq!(r["ttm"], ttm_answer(CLAIM4, CLAIM_PORT), "{rec}");
    assert_eq!(r["map"], map_answer(CLAIM4, CLAIM_PORT), "{rec}");
    assert_eq!(
        r["nat64"],
        json!({"errno": ks.refusal_errno(EINVAL)}),
        "{rec}"
    );

    // 6to4 on the same listener: getsockopt and the map have the client.
    lb.set(&["--client", &format!("[{CLAIM6}]:{CLAIM_PORT}")]);
    let rec = ask(&topo, &server, &v4, &["--hello"]);
    let r = &rec["reply"];
    let lb_v4 = topo.client_v4().to_string();
    assert_eq!(r["accept"], json!([lb_v4, local_port(&rec)]), "{rec}");
    assert_eq!(r["ttm"], ttm_answer(CLAIM6, CLAIM_PORT), "{rec}");
    assert_eq!(r["nat64"], nat64_answer(CLAIM6, CLAIM_PORT), "{rec}");
    assert_eq!(r["map"], map_answer(CLAIM6, CLAIM_PORT), "{rec}");
    drop(server);

    // IPv6 from the LB (the claim read from behind an IPv6 header), on a
    // dual-stack listener: shown in-kernel.
    let server = deferred_server_for(&topo, &ks, "dual");
    let rec = ask(&topo, &server, &topo.server_v6().to_string(), &["--hello"]);
    let r = &rec["reply"];
    assert_eq!(r["accept"], json!([CLAIM6, CLAIM_PORT]), "{rec}");
    assert_eq!(r["getpeername"], json!([CLAIM6, CLAIM_PORT]), "{rec}");
    assert_eq!(r["ttm"], ttm_answer(CLAIM6, CLAIM_PORT), "{rec}");

    // The kernel did drop the third ACKs: the option was nowhere else.
    let drops = srv_ns.netstat("TcpExt", "TCPDeferAcceptDrop") - drops_before;
    assert!(drops >= 3, "TCPDeferAcceptDrop went up by {drops}, not 3");
    assert_counters(
        &ks,
        &[
            ("stashed", 3),
            ("from_stash", 3),
            ("found_v4", 1),
            ("found_v6", 2),
            ("getsockopt_ttm", 3),
            ("getsockopt_nat64", 2),
            ("getsockopt_error", 1),
            ("rewrite4", 2),
            ("rewrite6", 2),
        ],
    );
}

#[test]
fn with_no_defer_accept_such_listeners_keep_the_lb_address() {
    let topo = Topology::new();
    let mut ks = KernelSide::load(&topo, &["--no-defer-accept"]);
    let status = ks.status();
    assert_eq!(status["defer_accept"], json!(false), "{status}");
    assert!(
        !attached_names(topo.server_cgroup()).contains(&"ttm_deferred".to_owned()),
        "{status}"
    );
    assert!(!ks.pin_dir().join("link_deferred").exists());
    let _lb = LbEmulator::start(&topo, &["--client", &format!("{CLAIM4}:{CLAIM_PORT}")]);
    let server = deferred_server_for(&topo, &ks, "inet");
    let v4 = topo.server_v4().to_string();
    let rec = ask(&topo, &server, &v4, &["--hello"]);
    assert_untouched(&rec, &topo.client_v4().to_string());
    assert_counters(&ks, &[("no_option", 1)]);

    // Reloaded without the flag, the same listener gets its client.
    ks.reload(&[]);
    assert_eq!(ks.status()["defer_accept"], json!(true));
    assert!(ks.pin_dir().join("link_deferred").exists());
    let rec = ask(&topo, &server, &v4, &["--hello"]);
    assert_eq!(rec["reply"]["accept"], json!([CLAIM4, CLAIM_PORT]), "{rec}");
    // Counters are kept across the reload: the first connection's too.
    assert_counters(
        &ks,
        &[
            ("no_option", 1),
            ("stashed", 1),
            ("from_stash", 1),
            ("found_v4", 1),
            ("getsockopt_ttm", 1),
            ("getsockopt_error", 1),
            ("rewrite4", 2),
        ],
    );
    // And a reload with it detaches the program again.
    ks.reload(&["--no-defer-accept"]);
    assert!(!ks.pin_dir().join("link_deferred").exists());
    assert!(!attached_names(topo.server_cgroup()).contains(&"ttm_deferred".to_owned()));
}

#[test]
fn kept_claims_pass_the_same_checks() {
    let topo = Topology::new();
    let trust = format!("{}/32", topo.client_v4());
    let ks = KernelSide::load(&topo, &["--trust", &trust]);
    let server = deferred_server_for(&topo, &ks, "inet");
    let v4 = topo.server_v4().to_string();

    // A malformed option list (a length byte below 2) is not kept.
    let mut lb = LbEmulator::start(&topo, &["--raw", "c801"]);
    let rec = ask(&topo, &server, &v4, &["--hello"]);
    assert_untouched(&rec, &topo.client_v4().to_string());
    // Nor a claim from a source outside --trust.
    lb.set(&["--client", &format!("{CLAIM4}:{CLAIM_PORT}")]);
    let untrusted = topo.untrusted_v4().to_string();
    let rec = ask(&topo, &server, &v4, &["--hello", "--source", &untrusted]);
    assert_untouched(&rec, &untrusted);
    // The trusted source's is.
    let rec = ask(&topo, &server, &v4, &["--hello"]);
    assert_eq!(rec["reply"]["accept"], json!([CLAIM4, CLAIM_PORT]), "{rec}");
    assert_counters(
        &ks,
        &[
            ("stash_refused", 2),
            ("no_option", 2),
            ("stashed", 1),
            ("from_stash", 1),
            ("found_v4", 1),
            ("getsockopt_ttm", 1),
            ("getsockopt_error", 1),
            ("rewrite4", 2),
        ],
    );
}

#[test]
fn a_kept_claim_goes_to_its_own_handshake_only() {
    let topo = Topology::new();
    let ks = KernelSide::load(&topo, &[]);
    let mut lb = LbEmulator::start(&topo, &["--client", &format!("{CLAIM4}:{CLAIM_PORT}")]);
    let server = deferred_server_for(&topo, &ks, "inet");
    let v4 = topo.server_v4().to_string();
    // Below the ephemeral range, so no other connection of the client's
    // namespace can hold it.
    let port = (20000 + u16::from(topo.n())).to_string();

    // A handshake whose ACK (and claim) reached the listener, reset before
    // it sent data: the server never gets a socket, the claim stays kept.
    let rec = connect(
        &topo.client().launch(),
        &v4,
        server.port(),
        1,
        &["--source-port", &port, "--abort"],
    );
    assert_eq!(rec[0]["aborted"], json!(true), "{rec:?}");
    // The reset must have removed the request socket before the next SYN
    // of this 4-tuple arrives (from another CPU it could overtake it).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = topo.server().netns().exec(&[
            "ss",
            "-Htn",
            "state",
            "syn-recv",
            &format!("( sport = :{} )", server.port()),
        ]);
        if left.trim().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "request socket stays: {left}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The same 4-tuple again, without any option: another handshake, so
    // the kept claim is not its client.
    lb.stop();
    let rec = ask(&topo, &server, &v4, &["--source-port", &port, "--hello"]);
    assert_untouched(&rec, &topo.client_v4().to_string());
    assert_counters(&ks, &[("stashed", 1), ("stash_stale", 1), ("no_option", 1)]);
}

/// The source ports of the connections of `recs` whose server did not get
/// their own claim (IP-only claim: the port is the connection's own).
fn without_their_claim(recs: &[Value]) -> Vec<u64> {
    recs.iter()
        .filter(|r| r["reply"]["ttm"] != ttm_answer(CLAIM4, local_port(r)))
        .map(local_port)
        .collect()
}

/// The server namespace's TcpExt counters of ACKs dropped on their way
/// to a listener: what a failure of the accept-queue test prints.
const TCP_DROP_MIBS: [&str; 6] = [
    "ListenOverflows",
    "ListenDrops",
    "SyncookiesSent",
    "SyncookiesRecv",
    "SyncookiesFailed",
    "TCPBacklogDrop",
];

#[test]
fn a_full_accept_queue_loses_no_claim() {
    let topo = Topology::new();
    let srv_ns = topo.server().netns();
    let ks = KernelSide::load(&topo, &[]);
    let _lb = LbEmulator::start(&topo, &["--client", CLAIM4]);
    let map = ks.peers_map();
    let v4 = topo.server_v4().to_string();
    let (n, parallel) = (48, "6");
    let (mut kept, mut taken) = (0, 0);
    // Forced syncookies (no request socket at all), then cookies only when
    // the SYN queue overflows (request sockets and cookies mixed).
    for cookies in ["2", "1"] {
        srv_ns.sysctl("net.ipv4.tcp_syncookies", cookies);
        let server = echo_server(
            &topo.server().launch(),
            &[
                "--family",
                "inet",
                "--backlog",
                "2",
                "--hello",
                "--map",
                map.to_str().expect("utf-8"),
            ],
        );
        let overflows = srv_ns.netstat("TcpExt", "ListenOverflows");
        // Groups of connections whose third ACKs all arrive together,
        // 200 ms after their SYNs: more than the queue holds, so the
        // kernel drops some of those ACKs, and creates these connections
        // later from their first data segment, which has no option.
        let recs = connect(
            &topo.client().launch(),
            &v4,
            server.port(),
            n,
            &["--parallel", parallel, "--late-ack", "--hello"],
        );
        let seen = server.records(n, Duration::from_secs(10));
        let missed = without_their_claim(&recs);
        assert!(
            missed.is_empty(),
            "syncookies={cookies}: {}/{n} accepted without their client (ports {missed:?})\n\
             server records: {:?}\ncounters: {}\nTcpExt: {:?}",
            missed.len(),
            seen.iter()
                .filter(|r| missed.contains(&r["accept"][1].as_u64().unwrap_or(0)))
                .collect::<Vec<_>>(),
            ks.status()["counters"],
            TCP_DROP_MIBS
                .iter()
                .map(|f| (f, srv_ns.netstat("TcpExt", f)))
                .collect::<Vec<_>>()
        );
        let overflows = srv_ns.netstat("TcpExt", "ListenOverflows") - overflows;
        let status = ks.status();
        let now_kept = counter_of(&status, "stashed") + counter_of(&status, "stash_cookie");
        let now_taken = counter_of(&status, "from_stash");
        // Proof the scenario happened: ACKs dropped, connections created
        // from a later packet with a kept claim.
        assert!(
            overflows > 0 && now_taken > taken,
            "syncookies={cookies}: {overflows} overflows, {} claims taken: nothing was dropped",
            now_taken - taken
        );
        eprintln!(
            "syncookies={cookies}: {n} connections, {overflows} listen overflows, \
             {} claims kept, {} taken",
            now_kept - kept,
            now_taken - taken
        );
        (kept, taken) = (now_kept, now_taken);
    }
    let status = ks.status();
    for name in [
        "stash_unmatched",
        "stash_failed",
        "stash_stale",
        "no_option",
    ] {
        assert_eq!(counter_of(&status, name), 0, "{name}: {status}");
    }
    assert_eq!(counter_of(&status, "found_v4"), 2 * n as u64, "{status}");
}

#[test]
fn forged_acks_cannot_evict_the_claims_of_real_handshakes() {
    let topo = Topology::new();
    let ks = KernelSide::load(&topo, &[]);
    let _lb = LbEmulator::start(&topo, &["--client", CLAIM4]);
    let server = deferred_server_for(&topo, &ks, "inet");
    let v4 = topo.server_v4().to_string();
    let real = 40;
    // The real handshakes first: their third ACKs (and claims) are kept,
    // and the connections stay silent, so not created, during the flood.
    let mut cmd = topo.client().launch().command(PYTHON);
    cmd.arg(fixture("client.py")).args([
        "--addr",
        &v4,
        "--port",
        &server.port().to_string(),
        "--count",
        &real.to_string(),
        "--pause",
        "--hello",
        "--timeout",
        "60",
    ]);
    let clients = Server::interactive("client.py --pause", cmd);
    assert_eq!(
        clients.next_json(Duration::from_secs(30)),
        json!({"open": real})
    );
    // Three times what ttm_stash holds (TTM_STASH_MAX), from the trusted
    // LB address, each with a claim and a 4-tuple of its own.
    let forged = 3 * 16384;
    let mut cmd = topo.client().launch().command(PYTHON);
    cmd.arg(fixture("forge_acks.py")).args([
        "--src",
        &topo.client_v4().to_string(),
        "--dst",
        &v4,
        "--dport",
        &server.port().to_string(),
        "--count",
        &forged.to_string(),
        "--option",
        "fe081a0ac0000242",
    ]);
    let out = run_to_end(&mut cmd, Duration::from_secs(300));
    let flood = out.expect_success("forge_acks.py");
    assert_eq!(
        serde_json::from_str::<Value>(flood.trim()).expect("JSON"),
        json!({"sent": forged})
    );
    clients.send_line("");
    let recs = clients.records(real, Duration::from_secs(30));
    let lost = without_their_claim(&recs);
    assert!(
        lost.is_empty(),
        "{}/{real} real clients lost their claim (ports {lost:?})",
        lost.len()
    );
    server.records(real, Duration::from_secs(10));
    // The forger sweeps source ports from 1024: those that hit a real
    // connection's 4-tuple are refused too (not that handshake's
    // sequence numbers), and leave its claim alone.
    let swept = 1024..1024 + forged;
    let hit = recs
        .iter()
        .filter(|r| swept.contains(&local_port(r)))
        .count() as u64;
    let real = real as u64;
    // Every other forged ACK is counted once. One that hits a real
    // handshake's request socket reaches the listener's ingress program
    // twice on 6.18 and not at all on Debian 12's 6.1 (the kernel matrix
    // saw forged - hit there): either way its claim is left alone, as
    // checked above.
    let unmatched = ks.counter("stash_unmatched");
    assert!(
        (forged - hit..=forged + hit).contains(&unmatched),
        "stash_unmatched {unmatched}: not {forged} forged ACKs +/- the {hit} that hit real handshakes"
    );
    assert_counters(
        &ks,
        &[
            ("stashed", real),
            ("from_stash", real),
            ("found_v4", real),
            ("stash_unmatched", unmatched),
            ("getsockopt_ttm", real),
            ("getsockopt_error", real),
            ("rewrite4", 2 * real),
        ],
    );
}

#[test]
fn fast_open_connections_get_the_claim_of_the_handshakes_ack() {
    let topo = Topology::new();
    let srv_ns = topo.server().netns();
    // Server: Fast Open on, no cookie required (0x202); client: Fast Open
    // on, data in the SYN without a cookie (0x5). Every connection is one.
    srv_ns.sysctl("net.ipv4.tcp_fastopen", "514");
    topo.client().netns().sysctl("net.ipv4.tcp_fastopen", "5");
    let ks = KernelSide::load(&topo, &[]);
    let mut lb = LbEmulator::start(&topo, &["--client", &format!("{CLAIM4}:{CLAIM_PORT}")]);
    let map = ks.peers_map();
    let server = echo_server(
        &topo.server().launch(),
        &[
            "--family",
            "dual",
            "--fastopen",
            "16",
            "--map",
            map.to_str().expect("utf-8"),
        ],
    );
    let passive = srv_ns.netstat("TcpExt", "TCPFastOpenPassive");
    let mapped = format!("::ffff:{CLAIM4}");
    // What a failure needs to be told apart: was it Fast Open, what did the
    // programs count, what did the LB write.
    let diag = |lb: &LbEmulator| {
        format!(
            "TCPFastOpenPassive +{}, counters {}, LB {}",
            srv_ns.netstat("TcpExt", "TCPFastOpenPassive") - passive,
            ks.status()["counters"],
            lb.status()
        )
    };
    let mut accepts_rewritten = 0;
    for (dst, lb_addr) in [
        (
            topo.server_v4().to_string(),
            format!("::ffff:{}", topo.client_v4()),
        ),
        (topo.server_v6().to_string(), topo.client_v6().to_string()),
    ] {
        let rec = ask(&topo, &server, &dst, &["--fastopen"]);
        let r = &rec["reply"];
        // Fast Open lets accept() return at the SYN, before the ACK that
        // carries the claim: it shows the claim only if that ACK came
        // first. What the server asks once it has read the data the client
        // sent after the handshake has it every time.
        if r["accept"] == json!([mapped, CLAIM_PORT]) {
            accepts_rewritten += 1;
        } else {
            assert_eq!(
                r["accept"],
                json!([lb_addr, local_port(&rec)]),
                "{rec}; {}",
                diag(&lb)
            );
        }
        assert_eq!(
            r["getpeername"],
            json!([mapped, CLAIM_PORT]),
            "{rec}; {}",
            diag(&lb)
        );
        assert_eq!(r["ttm"], ttm_answer(CLAIM4, CLAIM_PORT), "{rec}");
        assert_eq!(r["map"], map_answer(CLAIM4, CLAIM_PORT), "{rec}");
    }
    // Without an option in the handshake the socket is left alone.
    lb.stop();
    let rec = ask(
        &topo,
        &server,
        &topo.server_v6().to_string(),
        &["--fastopen"],
    );
    assert_untouched(&rec, &topo.client_v6().to_string());
    // Proof these were Fast Open connections, created at the SYN.
    let went_up = srv_ns.netstat("TcpExt", "TCPFastOpenPassive") - passive;
    assert_eq!(went_up, 3, "not all Fast Open: {}", diag(&lb));
    assert_counters(
        &ks,
        &[
            ("fastopen", 3),
            ("fastopen_claim", 2),
            ("found_v4", 2),
            ("no_option", 1),
            ("getsockopt_ttm", 2),
            ("getsockopt_error", 2),
            ("rewrite6", 2 + accepts_rewritten),
        ],
    );
}

const PINS: [&str; 11] = [
    "ttm_peers",
    "ttm_stash",
    "ttm_stash_cookie",
    "ttm_config",
    "ttm_trusted",
    "ttm_counters",
    "link_parse",
    "link_getsockopt",
    "link_getpeername4",
    "link_getpeername6",
    "link_deferred",
];

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The program `ttmctl status` says runs behind the link pinned as `link`.
fn loaded_program(status: &Value, link: &str) -> String {
    status["programs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["link"] == link)
        .and_then(|p| p["name"].as_str())
        .unwrap_or_else(|| panic!("no program behind {link} in status: {status}"))
        .to_owned()
}

#[test]
fn load_reload_unload_leave_nothing_behind() {
    let topo = Topology::new();
    assert_eq!(attached_names(topo.cgroup_root()), Vec::<String>::new());
    let mut ks = KernelSide::load(&topo, &[]);
    let pin = ks.pin_dir().to_owned();
    let names = |dir: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(sorted(names(&pin)), sorted(PINS.map(String::from).to_vec()));
    // ttm_getsockopt, or its variant without bpf_set_retval where that
    // was loaded instead.
    let getsockopt = loaded_program(&ks.status(), "link_getsockopt");
    assert_eq!(
        sorted(attached_names(topo.cgroup_root())),
        sorted(
            [
                "ttm_parse",
                &getsockopt,
                "ttm_getpeername4",
                "ttm_getpeername6",
                "ttm_deferred"
            ]
            .map(String::from)
            .to_vec()
        )
    );
    // Only the server cgroup: the client's is untouched.
    assert_eq!(attached_names(topo.client_cgroup()), Vec::<String>::new());

    let mut lb = LbEmulator::start(&topo, &["--client", &format!("{CLAIM4}:{CLAIM_PORT}")]);
    assert_eq!(
        attached_names(topo.client_cgroup()),
        vec!["ttm_lb".to_owned()]
    );
    let server = echo_server(
        &topo.server().launch(),
        &[
            "--family",
            "inet",
            "--hold",
            "--map",
            ks.peers_map().to_str().unwrap(),
        ],
    );
    let held = HeldConnection::open(
        &topo.client().launch(),
        &topo.server_v4().to_string(),
        server.port(),
        3,
    );
    assert_eq!(held.first()["reply"]["ttm"], ttm_answer(CLAIM4, CLAIM_PORT));

    // Reload without the rewrite: the open connection keeps its answer
    // (the peer map survives reloads), getpeername shows the LB again.
    ks.reload(&["--no-rewrite"]);
    assert_eq!(ks.status()["rewrite"], json!(false));
    assert_eq!(
        sorted(attached_names(topo.server_cgroup())),
        sorted(
            ["ttm_parse", &getsockopt, "ttm_deferred"]
                .map(String::from)
                .to_vec()
        ),
        "a reload must replace the set, not add to it"
    );
    let again = held.ask_again();
    let r = &again["reply"];
    assert_eq!(r["ttm"], ttm_answer(CLAIM4, CLAIM_PORT), "{again}");
    assert_eq!(r["map"], map_answer(CLAIM4, CLAIM_PORT), "{again}");
    assert_eq!(
        r["getpeername"],
        json!([topo.client_v4().to_string(), local_port(&again)]),
        "{again}"
    );

    // Reload with the rewrite again: shown in-kernel again.
    ks.reload(&[]);
    assert_eq!(sorted(names(&pin)), sorted(PINS.map(String::from).to_vec()));
    assert_eq!(attached_names(topo.server_cgroup()).len(), 5);
    let again = held.ask_again();
    assert_eq!(
        again["reply"]["getpeername"],
        json!([CLAIM4, CLAIM_PORT]),
        "{again}"
    );

    ks.unload();
    assert_nothing_left(topo.server_cgroup(), &[&pin]);
    let (code, status) = harness::ttmctl::status_exit(&pin);
    assert_eq!(code, 3, "status after unload: not loaded; {status}");
    assert_eq!(status["loaded"], json!(false), "{status}");
    // The open connection is no longer answered by anything.
    let again = held.ask_again();
    let r = &again["reply"];
    assert_eq!(r["ttm"], json!({"errno": ENOPROTOOPT}), "{again}");
    assert_eq!(r["map"]["errno"], json!(ENOENT), "{again}");
    assert_eq!(
        r["getpeername"],
        json!([topo.client_v4().to_string(), local_port(&again)]),
        "{again}"
    );

    // And the emulator's stop leaves nothing either.
    let lb_pin = lb.pin_dir().to_owned();
    lb.stop();
    assert_nothing_left(topo.cgroup_root(), &[&pin, &lb_pin]);
}

#[test]
fn reloading_under_load_misses_no_connection() {
    let topo = Topology::new();
    let mut ks = KernelSide::load(&topo, &[]);
    let _lb = LbEmulator::start(&topo, &["--client", CLAIM4]);
    let server = server_for(&topo, &ks, "inet");
    let launch = topo.client().launch();
    let (dst, port) = (topo.server_v4().to_string(), server.port().to_string());
    let batch = "100";
    let done = std::sync::atomic::AtomicBool::new(false);
    let reloads = 5;
    // Clients connect in back-to-back batches until the reloads are over,
    // so every reload overlaps connections whatever the machine's speed.
    let outs = std::thread::scope(|s| {
        let client = s.spawn(|| {
            let mut outs = Vec::new();
            while outs.is_empty() || !done.load(std::sync::atomic::Ordering::SeqCst) {
                let args = ["--addr", &dst, "--port", &port, "--count", batch];
                outs.push(run_client(&launch, &args, Duration::from_secs(120)));
            }
            outs
        });
        for _ in 0..reloads {
            ks.reload(&[]);
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        client.join().expect("client thread")
    });
    let mut recs = Vec::new();
    for out in outs {
        recs.extend(out.json_lines());
        out.expect_success("client.py during reloads");
    }
    assert!(recs.len() >= 100);
    for rec in &recs {
        assert_eq!(
            rec["reply"]["ttm"],
            ttm_answer(CLAIM4, local_port(rec)),
            "{rec}"
        );
    }
    server.records(recs.len(), Duration::from_secs(10));
    eprintln!("{} connections over {reloads} reloads", recs.len());
}

#[test]
fn two_thousand_connections_each_get_their_own_client() {
    let topo = Topology::new();
    let ks = KernelSide::load(&topo, &[]);
    // IP-only claim: every connection claims its own source port, so a
    // claim stored on, or read from, the wrong socket shows as a mismatch.
    let lb = LbEmulator::start(&topo, &["--client", CLAIM4]);
    let server = server_for(&topo, &ks, "inet");
    let n = 2000;
    let started = Instant::now();
    let recs = connect(
        &topo.client().launch(),
        &topo.server_v4().to_string(),
        server.port(),
        n,
        &[],
    );
    let elapsed = started.elapsed();
    let mut ports = HashSet::new();
    for rec in &recs {
        let port = local_port(rec);
        // The server closes first, so its side holds TIME_WAIT and the
        // client may reuse a port; each record still names its own.
        ports.insert(port);
        let r = &rec["reply"];
        assert_eq!(r["accept"], json!([CLAIM4, port]), "{rec}");
        assert_eq!(r["getpeername"], json!([CLAIM4, port]), "{rec}");
        assert_eq!(r["ttm"], ttm_answer(CLAIM4, port), "{rec}");
        assert_eq!(r["map"], map_answer(CLAIM4, port), "{rec}");
    }
    assert!(
        ports.len() > n / 2,
        "only {} distinct source ports in {n} connections: the check above proves little",
        ports.len()
    );
    // The server printed the very records the clients got, in order.
    let printed = server.records(n, Duration::from_secs(10));
    for (p, rec) in printed.iter().zip(&recs) {
        assert_eq!(p, &rec["reply"]);
    }
    let n = n as u64;
    assert_counters(
        &ks,
        &[
            ("found_v4", n),
            ("getsockopt_ttm", n),
            ("getsockopt_error", n),
            ("rewrite4", 2 * n),
        ],
    );
    let lbs = lb.status();
    assert_eq!(lbs["armed"], json!(n), "{lbs}");
    assert_eq!(lbs["written"], json!(n), "{lbs}");
    eprintln!("{n} connections in {elapsed:?}");
}
