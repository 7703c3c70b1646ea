//! `make bench` still runs: scripts/bench.sh with tiny numbers prints its
//! one table with every row and sane values. Nothing here judges speed
//! (no timing assertions); only what is exact whatever the machine's load:
//! the syscall counts the library adds and the SK_STORAGE left after
//! close. Needs root, like the rest of the end-to-end suite.

mod harness;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use harness::{libttm, require_root, run_to_end, ttmctl_path};

const MODES: [&str; 5] = [
    "no ttm (baseline)",
    "libttm.so, nothing installed",
    "kernel side",
    "kernel side + libttm.so (kmod)",
    "kernel side + libttm.so (bpf)",
];

/// One row of the markdown table; `measure` carried down from the row that
/// names it.
#[derive(Debug)]
struct Row {
    measure: String,
    mode: String,
    median: String,
    vs: String,
    notes: String,
}

fn parse_table(stdout: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut measure = String::new();
    for line in stdout.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(
            cells.len(),
            7,
            "table row with {} cells: {line}",
            cells.len()
        );
        if cells[0] == "measure" {
            continue;
        }
        if !cells[0].is_empty() {
            measure = cells[0].to_string();
        }
        rows.push(Row {
            measure: measure.clone(),
            mode: cells[1].to_string(),
            median: cells[2].to_string(),
            vs: cells[4].to_string(),
            notes: cells[6].to_string(),
        });
    }
    rows
}

fn number(s: &str) -> f64 {
    s.replace(',', "")
        .trim_end_matches(" ns")
        .trim_end_matches(" B")
        .trim_end_matches('x')
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {s:?}"))
}

#[test]
fn bench_prints_every_row_with_sane_numbers() {
    require_root();
    let root = env!("CARGO_MANIFEST_DIR");
    let mut cmd = Command::new(format!("{root}/scripts/bench.sh"));
    cmd.current_dir(root)
        .env("QUICK", "1")
        .env("TTMCTL", ttmctl_path())
        .env("LIBTTM", libttm())
        .env("BENCH_N", "200")
        .env("BENCH_REPS", "1")
        .env("BENCH_NGINX_SECS", "1")
        .env("BENCH_BPF_N", "200")
        .env("BENCH_HOOK_CONNS", "2")
        .env("BENCH_HOOK_LOOPS", "500")
        .env("BENCH_SYS_N", "40")
        .env("BENCH_MEM_CONNS", "300")
        .env("BENCH_MEM_REPS", "1")
        // The script stops itself (and cleans up) well before our own kill.
        .env("BENCH_TIME_LIMIT", "150");
    let out = run_to_end(&mut cmd, Duration::from_secs(200));
    assert!(
        out.status.success() && !out.timed_out,
        "scripts/bench.sh failed ({:?}, timed out: {}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        out.timed_out,
        out.stdout,
        out.stderr
    );
    let rows = parse_table(&out.stdout);
    let dump = || out.stdout.clone();
    assert!(
        !out.stdout.contains("n/a"),
        "a value is missing:\n{}",
        dump()
    );

    let find = |measure: &str, mode: &str| -> &Row {
        rows.iter()
            .find(|r| r.measure.starts_with(measure) && r.mode == mode)
            .unwrap_or_else(|| panic!("no row {measure:?} / {mode:?} in:\n{}", dump()))
    };

    // Throughput and CPU per connection: every mode, a positive number.
    for measure in [
        "accept loop, 1 client thread (conn/s)",
        "accept loop, 1 client thread (CPU",
        "accept loop, 8 client threads (conn/s)",
        "accept loop, 8 client threads (CPU",
        "nginx, Connection: close (req/s",
        "nginx, Connection: close (CPU",
        "nginx, keep-alive (req/s)",
        "nginx, keep-alive (CPU",
        "one hooked call",
    ] {
        for mode in MODES {
            let r = find(measure, mode);
            assert!(number(&r.median) > 0.0, "{r:?}");
        }
    }

    // bpf_stats: every program ran, at a positive cost per connection.
    for (measure, programs) in [
        (
            "BPF ns per connection (bpf_stats), ttm loaded",
            &[
                "ttm_parse (sockops: parse + store)",
                "ttm_getpeername4 (accept4 rewrite)",
                "ttm_getsockopt (kmod backend's 1345)",
                "do-nothing sockops (same runs)",
            ][..],
        ),
        (
            "BPF ns per connection, ttm_parse in halves",
            &[
                "ttm_parse's parsing alone",
                "bpf_sk_storage_get(F_CREATE) alone",
                "do-nothing sockops (same runs)",
            ][..],
        ),
    ] {
        for p in programs {
            let r = find(measure, p);
            assert!(number(&r.median) > 0.0, "{r:?}");
            assert!(number(&r.vs) > 0.0, "{r:?}");
        }
    }
    assert!(
        find(
            "BPF ns per connection (bpf_stats)",
            "ttm_parse (sockops: parse + store)"
        )
        .notes
        .contains("runs/conn"),
        "{}",
        dump()
    );

    for mode in &MODES[1..] {
        find("estimated capacity vs base", mode);
    }

    // Established traffic: with and without ttm_deferred against no ttm,
    // and ttm_deferred's cost per received segment, bulk and keep-alive.
    let estab = [
        "no ttm (baseline)",
        "kernel side",
        "kernel side without ttm_deferred",
    ];
    for measure in [
        "established traffic: one iperf3 stream, both ends on one CPU (Gbit/s)",
        "established traffic: one iperf3 stream (CPU",
        "nginx, keep-alive (req/s)",
    ] {
        for mode in estab {
            assert!(number(&find(measure, mode).median) > 0.0, "{}", dump());
        }
    }
    for kind in ["one iperf3 stream", "nginx keep-alive (wrk)"] {
        for prog in ["ttm_deferred", "do-nothing cgroup_skb"] {
            let r = find(
                "established traffic, per received segment",
                &format!("{kind}: {prog}"),
            );
            assert!(number(&r.median) > 0.0, "{r:?}");
            assert!(r.notes.starts_with("runs/segment "), "{r:?}");
        }
        let r = find("estimated established-traffic capacity", kind);
        assert!(number(&r.vs) > 0.0, "{r:?}");
    }

    // Per-connection design variants, side by side: each stored exactly
    // one claim per connection (a variant that does less proves nothing).
    // The tracing one is priced only where the kernel loads it.
    for mode in [
        "no ttm (baseline)",
        "ttm_parse: sockops + SK_STORAGE (as shipped)",
    ] {
        find(
            "per-connection design variants: accept loop, 1 client thread (conn/s)",
            mode,
        );
    }
    for mode in [
        "ttm_parse: sockops + SK_STORAGE (as shipped)",
        "sockops + preallocated hash by socket cookie",
    ] {
        let r = find(
            "per-connection design variants: BPF ns per connection",
            mode,
        );
        assert!(number(&r.median) > 0.0, "{r:?}");
        assert!(r.notes.contains("claims stored/conn 1.00"), "{r:?}");
    }
    let fexit = "fexit tcp_v4/v6_syn_recv_sock + SK_STORAGE";
    if let Some(r) = rows.iter().find(|r| r.mode == fexit) {
        assert!(r.notes.contains("claims stored/conn 1.00"), "{r:?}");
    } else {
        assert!(
            out.stdout
                .contains("- skipped: var-fexit: this kernel refused"),
            "{}",
            dump()
        );
    }

    // Syscalls: exact counts, whatever the load.
    let syscalls = "syscalls per accepted connection";
    let expect: HashMap<&str, f64> = [
        ("TCP, libttm.so, nothing installed", 0.0),
        ("TCP, libttm.so bpf backend", 1.0),
        ("TCP, libttm.so kmod backend", 1.0),
        ("AF_UNIX, libttm.so bpf backend", 0.0),
        ("AF_UNIX, libttm.so kmod backend", 0.0),
    ]
    .into_iter()
    .collect();
    for base in ["TCP, no libttm.so", "AF_UNIX, no libttm.so"] {
        let r = find(syscalls, base);
        let v = number(&r.median);
        assert!((1.5..=4.0).contains(&v), "{r:?}");
    }
    for (mode, extra) in &expect {
        let r = find(syscalls, mode);
        let got = number(&r.vs);
        assert!(
            (got - extra).abs() < 0.01,
            "{mode}: {got} extra syscalls per connection, expected {extra}: {r:?}"
        );
    }

    // Memory: ttm's storage is charged to the socket while it is open and
    // gone once every connection has closed.
    for mode in ["no ttm (baseline)", "kernel side (ttm loaded)"] {
        find("kernel memory per open connection", mode);
    }
    assert!(number(&find("sk_omem per accepted socket", "kernel side (ttm loaded)").median) > 0.0);
    let left = find(
        "ttm's SK_STORAGE elements after they close",
        "kernel side (ttm loaded)",
    );
    assert_eq!(number(&left.median), 0.0, "{left:?}");
    assert!(left.notes.contains("while open: 300 of 300"), "{left:?}");
}
