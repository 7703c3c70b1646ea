//! `ttmctl detect` end to end: the LB emulator writes each known format,
//! and options ttm does not know, into real handshakes; `detect` watches
//! the server's cgroup while `ttmctl load` serves it, and must name what
//! was sent, byte for byte, with the right `--format` and `--trust` — and
//! leave the running kernel side serving and nothing of its own behind.
//! Needs root.

mod harness;

use std::process::Command;
use std::time::{Duration, Instant};

use harness::bpffs::{attached_names, attached_roles};
use harness::{KernelSide, LbEmulator, Server, Topology, connect, echo_server, ttmctl_path};
use serde_json::{Value, json};

const CLAIM4: &str = "203.0.113.7";
const CLAIM6: &str = "2001:db8::7";
const CLAIM_PORT: u64 = 4242;
const ENOPROTOOPT: i64 = 92;

/// ttm's own programs: what stays attached to the server's cgroup.
const TTM_PROGRAMS: [&str; 5] = [
    "ttm_deferred",
    "ttm_getpeername4",
    "ttm_getpeername6",
    "ttm_getsockopt",
    "ttm_parse",
];

/// `ttmctl detect <args>` running, returned once its programs are
/// attached (it says so on stderr).
fn start_detect(args: &[&str]) -> Server {
    let mut cmd = Command::new(ttmctl_path());
    cmd.arg("detect").args(args);
    let d = Server::interactive("ttmctl detect", cmd);
    d.wait_stderr(
        "ttm detect: watching",
        Duration::from_secs(60),
        &format!("ttmctl detect {args:?} did not start"),
    );
    d
}

/// Waits for detect to end on its own and returns what it printed.
fn finish(d: Server) -> String {
    let status = d.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "detect failed ({status}): {}", d.stderr());
    let mut out = String::new();
    while let Some(l) = d.next_line(Duration::from_secs(5)) {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

fn report(d: Server) -> Value {
    let out = finish(d);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("detect --json ({e}): {out}"))
}

/// The report's row for this packet kind and option ("254/8", "none").
fn row<'a>(v: &'a Value, packet: &str, option: &str) -> &'a Value {
    v["options"]
        .as_array()
        .expect("options")
        .iter()
        .find(|r| r["packet"] == packet && r["option"] == option)
        .unwrap_or_else(|| panic!("no {packet} row for option {option} in {v:#}"))
}

fn watch_args<'a>(topo: &'a Topology, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "--cgroup",
        topo.server_cgroup().to_str().unwrap(),
        "--seconds",
        "120",
        "--json",
    ];
    a.extend_from_slice(extra);
    a
}

/// Polls until detect's programs are gone from the cgroup (a link is
/// released by the kernel shortly after its last fd closes).
fn assert_only_ttm_attached(topo: &Topology) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let names = attached_roles(topo.server_cgroup());
        if names == TTM_PROGRAMS.map(String::from).to_vec() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "attached to the server cgroup after detect: {names:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn names_each_known_format_while_load_keeps_serving() {
    let topo = Topology::new();
    let ks = KernelSide::load(
        &topo,
        &[
            "--format", "254/8", "--format", "253/20", "--format", "200/8",
        ],
    );
    let mut lb = LbEmulator::start(&topo, &["--client", &format!("{CLAIM4}:{CLAIM_PORT}")]);
    let map = ks.peers_map();
    let server = echo_server(
        &topo.server().launch(),
        &["--family", "dual", "--map", map.to_str().unwrap()],
    );
    let lb_net = format!("198.18.{}.0/24", topo.n());
    let lb_net6 = format!(
        "{}/64",
        std::net::Ipv6Addr::new(0xfd00, 0x7474, topo.n().into(), 0, 0, 0, 0, 0)
    );
    let n = 3;
    // (LB format, claim, claimed ip, over IPv6, the LB's source, its network)
    for (fmt, claim, ip, v6, lb_src, net) in [
        (
            "254/8",
            format!("{CLAIM4}:{CLAIM_PORT}"),
            CLAIM4,
            false,
            topo.client_v4().to_string(),
            &lb_net,
        ),
        (
            "253/20",
            format!("[{CLAIM6}]:{CLAIM_PORT}"),
            CLAIM6,
            true,
            topo.client_v6().to_string(),
            &lb_net6,
        ),
        (
            "200/8",
            format!("{CLAIM4}:{CLAIM_PORT}"),
            CLAIM4,
            false,
            topo.client_v4().to_string(),
            &lb_net,
        ),
    ] {
        lb.set(&["--client", &claim, "--format", fmt]);
        let d = start_detect(&watch_args(&topo, &["--handshakes", "3"]));
        // The kernel side keeps answering while detect watches.
        let recs = connect(
            &topo.client().launch(),
            &topo.server_addr(v6).to_string(),
            server.port(),
            n,
            &[],
        );
        for rec in &recs {
            assert_eq!(rec["reply"]["ttm"]["ip"], json!(ip), "{fmt}: {rec}");
            assert_eq!(
                rec["reply"]["ttm"]["port"],
                json!(CLAIM_PORT),
                "{fmt}: {rec}"
            );
        }
        server.records(n, Duration::from_secs(10));
        let v = report(d);
        assert_eq!(v["schema"], json!(1));
        assert_eq!(v["stopped_by"], json!("handshakes"), "{v:#}");
        assert_eq!(v["handshakes"], json!(n), "{v:#}");
        assert_eq!(v["cgroup"], json!(topo.server_cgroup().to_str().unwrap()));
        let s = &v["suggest"];
        assert_eq!(s["formats"], json!([fmt]), "{v:#}");
        assert_eq!(s["trust"], json!([net]), "{v:#}");
        assert_eq!(s["args"], json!(["--format", fmt, "--trust", net]));
        assert_eq!(s["unsupported"], json!([]), "{v:#}");
        for packet in ["handshake", "to_listener"] {
            let r = row(&v, packet, fmt);
            assert_eq!(r["format"], json!(fmt), "{r:#}");
            assert_eq!(r["packets"], json!(n), "{r:#}");
            assert_eq!(r["valid_claims"], json!(n), "{r:#}");
            assert_eq!(r["claims"], json!([claim]), "{r:#}");
            assert_eq!(
                r["sources"],
                json!([{"addr": lb_src, "packets": n}]),
                "{r:#}"
            );
            assert_eq!(r["ports"], json!([server.port()]), "{r:#}");
        }
        // The timestamps every client sends are named as standard.
        assert_eq!(
            row(&v, "handshake", "8/10")["meaning"],
            "timestamps (standard)"
        );
        assert_only_ttm_attached(&topo);
    }
    // Every connection got its client, before, during and after detect.
    let found = ks.counter("found_v4") + ks.counter("found_v6");
    assert_eq!(found, 3 * n as u64);

    // The text report ends with the arguments to load with.
    let d = start_detect(&[
        "--cgroup",
        topo.server_cgroup().to_str().unwrap(),
        "--handshakes",
        "1",
    ]);
    connect(
        &topo.client().launch(),
        &topo.server_v4().to_string(),
        server.port(),
        1,
        &[],
    );
    let text = finish(d);
    assert!(
        text.ends_with(&format!(
            "load with: ttmctl load --format 200/8 --trust {lb_net}\n"
        )),
        "{text}"
    );
    assert!(text.contains("PACKET"), "{text}");
    assert_only_ttm_attached(&topo);
}

#[test]
fn reports_an_option_ttm_does_not_know_byte_for_byte() {
    let topo = Topology::new();
    let ks = KernelSide::load(&topo, &[]);
    // kind 252, length 22: the vendor's struct ttm_peer (af 2 in x86
    // order, port 4242, 203.0.113.7).
    let peer = format!("fc160200{CLAIM_PORT:04x}cb007107{}", "00".repeat(12));
    let mut lb = LbEmulator::start(&topo, &["--raw", &peer]);
    let map = ks.peers_map();
    let server = echo_server(
        &topo.server().launch(),
        &["--family", "inet", "--map", map.to_str().unwrap()],
    );
    let v4 = topo.server_v4().to_string();
    let d = start_detect(&watch_args(&topo, &["--handshakes", "2"]));
    for rec in connect(&topo.client().launch(), &v4, server.port(), 2, &[]) {
        // Not ttm's format: the kernel side leaves the connection alone.
        assert_eq!(rec["reply"]["ttm"], json!({"errno": ENOPROTOOPT}), "{rec}");
    }
    server.records(2, Duration::from_secs(10));
    let v = report(d);
    let r = row(&v, "handshake", "252/22");
    assert_eq!(r["format"], Value::Null, "{r:#}");
    assert_eq!(r["packets"], json!(2), "{r:#}");
    // Byte for byte what the LB sent.
    assert_eq!(r["samples"], json!([peer]), "{r:#}");
    assert!(
        r["layout"].as_str().unwrap_or("").contains("ttm_peer"),
        "{r:#}"
    );
    assert_eq!(r["claims"], json!([format!("{CLAIM4}:{CLAIM_PORT}")]));
    let s = &v["suggest"];
    assert_eq!(s["formats"], json!([]), "{v:#}");
    assert_eq!(s["args"], json!([]), "{v:#}");
    assert_eq!(s["unsupported"], json!(["252/22"]), "{v:#}");
    assert!(s["notes"].to_string().contains("252/22"), "{v:#}");
    assert_eq!(ks.counter("no_option"), 2);

    // F10: what --raw is given is what reaches the wire. An option ending
    // in a lone kind byte, the header's last (12 bytes of timestamps + 4).
    lb.set(&["--raw", "c803aa", "--raw", "c9"]);
    let d = start_detect(&watch_args(&topo, &["--handshakes", "1"]));
    connect(&topo.client().launch(), &v4, server.port(), 1, &[]);
    server.records(1, Duration::from_secs(10));
    let v = report(d);
    assert_eq!(row(&v, "handshake", "200/3")["samples"], json!(["c803aa"]));
    let m = row(&v, "handshake", "201/-");
    assert_eq!(m["samples"], json!(["c9"]), "{m:#}");
    assert!(
        m["meaning"].as_str().unwrap().contains("malformed"),
        "{m:#}"
    );
    assert_eq!(ks.counter("malformed"), 1);
    assert_only_ttm_attached(&topo);
}

#[test]
fn sees_the_option_a_deferring_listener_gets_only_on_the_ack() {
    let topo = Topology::new();
    let ks = KernelSide::load(&topo, &[]);
    let _lb = LbEmulator::start(&topo, &["--client", &format!("{CLAIM4}:{CLAIM_PORT}")]);
    let map = ks.peers_map();
    let server = echo_server(
        &topo.server().launch(),
        &[
            "--family",
            "inet",
            "--defer-accept",
            "5",
            "--map",
            map.to_str().unwrap(),
        ],
    );
    let d = start_detect(&watch_args(&topo, &["--handshakes", "2"]));
    let recs = connect(
        &topo.client().launch(),
        &topo.server_v4().to_string(),
        server.port(),
        2,
        &["--hello"],
    );
    for rec in &recs {
        assert_eq!(rec["reply"]["ttm"]["ip"], json!(CLAIM4), "{rec}");
    }
    server.records(2, Duration::from_secs(10));
    let v = report(d);
    // The socket is made from the first data segment, which has none.
    assert_eq!(row(&v, "handshake", "none")["packets"], json!(2), "{v:#}");
    assert_eq!(
        row(&v, "to_listener", "254/8")["packets"],
        json!(2),
        "{v:#}"
    );
    assert_eq!(v["suggest"]["formats"], json!(["254/8"]));
    assert!(
        v["suggest"]["notes"]
            .to_string()
            .contains("TCP_DEFER_ACCEPT"),
        "{v:#}"
    );
    assert_only_ttm_attached(&topo);
}

#[test]
fn ends_on_a_signal_and_leaves_nothing_attached() {
    let topo = Topology::new();
    let _ks = KernelSide::load(&topo, &[]);
    // SIGTERM (as Ctrl-C's SIGINT): stops, reports what it saw, exits 0.
    let d = start_detect(&watch_args(&topo, &[]));
    assert!(attached_names(topo.server_cgroup()).contains(&"ttm_detect_ops".to_string()));
    // SAFETY: kill(2) on a child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(d.pid() as i32, libc::SIGTERM) }, 0);
    let v = report(d);
    assert_eq!(v["stopped_by"], json!("signal"), "{v:#}");
    assert_only_ttm_attached(&topo);

    // SIGKILL runs none of its code: the links die with its fds.
    let d = start_detect(&watch_args(&topo, &[]));
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(d.pid() as i32, libc::SIGKILL) }, 0);
    d.wait_exit(Duration::from_secs(10));
    assert_only_ttm_attached(&topo);
}

#[test]
fn finds_the_cgroup_from_a_pid_or_the_loaded_ttm_never_the_root_unasked() {
    let topo = Topology::new();
    let ks = KernelSide::load(&topo, &[]);
    let server = echo_server(&topo.server().launch(), &["--family", "inet"]);
    let want = json!(topo.server_cgroup().to_str().unwrap());
    let pid = server.pid().to_string();
    let pin = ks.pin_dir().to_str().unwrap();
    for args in [vec!["--pid", pid.as_str()], vec!["--pin-dir", pin]] {
        let mut a = args.clone();
        a.extend(["--seconds", "1", "--json"]);
        let v = report(start_detect(&a));
        assert_eq!(v["cgroup"], want, "{args:?}: {v:#}");
        assert_eq!(v["stopped_by"], json!("time"));
    }
    assert_only_ttm_attached(&topo);

    let fail = |args: &[&str], needle: &str| {
        let out = Command::new(ttmctl_path())
            .arg("detect")
            .args(args)
            .output()
            .expect("run ttmctl");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "detect {args:?} succeeded");
        assert!(err.contains(needle), "detect {args:?}: {err}");
    };
    fail(
        &["--pin-dir", "/sys/fs/bpf/ttm-detect-test-none"],
        "pass --cgroup DIR",
    );
    // Kernel threads live in the root cgroup.
    let kthreadd = std::fs::read_to_string("/proc/2/comm").unwrap_or_default();
    assert_eq!(kthreadd.trim(), "kthreadd", "pid 2 is not kthreadd here");
    fail(&["--pid", "2"], "root cgroup");
    fail(&["--pid", "999999999"], "no process 999999999");
    fail(
        &[
            "--cgroup",
            topo.server_cgroup().to_str().unwrap(),
            "--pid",
            "1",
        ],
        "cannot be used with",
    );
    fail(&["--cgroup", "/tmp", "--seconds", "0"], "--seconds");
}
