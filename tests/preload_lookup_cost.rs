//! What one "who is this socket's real client" question costs, measured
//! (never asserted: a timed test on a shared machine is noise), and that
//! the two ways of asking the eBPF kit give the same answer. Run with
//! `--nocapture` to see the figures; BENCHMARKS.md records a run.
//!
//! Both questions are asked on the same sockets in the same run
//! (tests/preload/lookup_cost.c): `getsockopt(SOL_IP, 1345)`, answered by
//! the kit's cgroup/getsockopt program (what libttm asks), and
//! `bpf(BPF_MAP_LOOKUP_ELEM)` on the pinned map by fd (what it asked
//! before it stopped keeping a map fd), next to getsockname() (a socket
//! syscall no ttm program runs in) and the same optname at IPPROTO_TCP
//! (what the IP-level plumbing costs). Then the hooked getpeername()
//! under libttm.so (use `--release` for figures): without the library,
//! with it off, with the kit's exported trust list, and with every address
//! looked up.

mod harness;
mod preload;

use std::time::Duration;

use harness::{KernelSide, Launch, LbEmulator, Server, Topology, run_to_end};

const CONNS: usize = 4;
const LOOPS: &str = "2000";

/// Runs lookup_cost with `args` under `launch`, one held connection per
/// CONNS from the LB side; returns its output lines.
fn run(topo: &Topology, launch: &Launch, args: &[&str]) -> Vec<String> {
    let mut cmd = launch.command(preload::lookup_cost());
    cmd.args(args);
    let server = Server::spawn("lookup_cost", cmd, Duration::from_secs(20));
    let mut client = topo.client().launch().command(preload::e2e_client());
    let n = CONNS.to_string();
    client.args(["-t", &n, "-n", &n, &topo.server_v4().to_string()]);
    client.arg(server.port().to_string());
    let out = run_to_end(&mut client, Duration::from_secs(120)).expect_success("e2e_client");
    assert_eq!(
        out.lines().filter(|l| l.ends_with(" R ok|")).count(),
        CONNS,
        "{out}"
    );
    let mut lines = Vec::new();
    while let Some(l) = server.next_line(Duration::from_secs(60)) {
        if l == "DONE" {
            assert!(server.wait_exit(Duration::from_secs(10)).success());
            return lines;
        }
        lines.push(l);
    }
    panic!("lookup_cost stopped early: {lines:?}; {}", server.stderr());
}

/// `word value` pairs after the first `skip` words of a line.
fn figures(line: &str, skip: usize) -> Vec<(String, f64)> {
    let w: Vec<&str> = line.split(' ').skip(skip).collect();
    w.chunks(2)
        .filter_map(|c| Some((c[0].to_owned(), c.get(1)?.parse().ok()?)))
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn getsockopt_and_the_map_give_the_same_answer_and_what_each_costs() {
    let topo = Topology::new();
    let lb_prefix = format!("{}/32", topo.client_v4());
    let ks = KernelSide::load(&topo, &["--trust", &lb_prefix]);
    let _lb = LbEmulator::start(&topo, &["--client", "203.0.113.7"]);
    let map = ks.peers_map();
    let lines = run(
        &topo,
        &topo.server().launch(),
        &["raw", map.to_str().unwrap(), &CONNS.to_string(), LOOPS],
    );
    let per_conn: Vec<&String> = lines.iter().filter(|l| l.starts_with("C ")).collect();
    assert_eq!(per_conn.len(), CONNS, "{lines:?}");
    for l in &per_conn {
        assert!(
            l.ends_with(" same 1"),
            "getsockopt and the map disagree: {l}"
        );
    }
    let mut report = Vec::new();
    for method in ["floor", "getsockopt", "map", "sol_tcp"] {
        let ns: Vec<f64> = per_conn
            .iter()
            .flat_map(|l| figures(l, 2))
            .filter(|(m, _)| m == method)
            .map(|(_, v)| v)
            .collect();
        report.push(format!(
            "{method} {:.0} ns (median of {CONNS} sockets)",
            median(ns)
        ));
    }
    for prefix in ["NOTHING", "THREADS 2"] {
        let l = lines
            .iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} line: {lines:?}"));
        report.push(l.clone());
    }

    // The hooked getpeername(): the kernel side rewrote it (an IPv4
    // client on an AF_INET socket), so libttm has nothing to add. With
    // the kit's exported trust list the address is not an LB's and no
    // lookup is made; with TTM_TRUSTED=0.0.0.0/0 every call asks. Beside
    // them: no libttm at all, and libttm with TTM_BACKEND=off.
    let preloaded = |backend: &str, trusted: &str| {
        topo.server()
            .launch()
            .env("LD_PRELOAD", harness::libttm())
            .env("TTM_BPF_MAP", &map)
            .env("TTM_TRUSTED", trusted)
            .env("TTM_BACKEND", backend)
            .env("TTM_LOG", "")
            .env("TTM_PROGRAMS", "")
            .env("TTM_DISABLE", "")
    };
    for (what, launch, lookups) in [
        ("no libttm", topo.server().launch(), 0.0),
        ("libttm, TTM_BACKEND=off", preloaded("off", ""), 0.0),
        ("libttm, exported list", preloaded("", ""), 0.0),
        (
            "libttm, TTM_TRUSTED=0.0.0.0/0",
            preloaded("", "0.0.0.0/0"),
            1.0,
        ),
    ] {
        let lines = run(&topo, &launch, &["hooked", &CONNS.to_string(), LOOPS]);
        let h: Vec<Vec<(String, f64)>> = lines
            .iter()
            .filter(|l| l.starts_with("H "))
            .map(|l| figures(l, 2))
            .collect();
        assert_eq!(h.len(), CONNS, "{lines:?}");
        for f in &h {
            assert_eq!(
                f[1],
                ("lookups_per_call".to_owned(), lookups),
                "{what}: {lines:?}"
            );
        }
        let ns = median(h.iter().map(|f| f[0].1).collect());
        report.push(format!(
            "getpeername, {what}: {ns:.0} ns, {lookups} lookups per call"
        ));
    }
    eprintln!("lookup cost:\n  {}", report.join("\n  "));
}
