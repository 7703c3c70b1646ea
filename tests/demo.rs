//! `scripts/demo.sh`, as a user runs it: it must exit 0, show the real
//! client for 4to4 and 6to4 (vendor's Python example, stock nginx, the C
//! example under libttm.so) and leave nothing behind. The kernel matrix
//! runs it on every kernel too. Needs root.

mod harness;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use harness::cgroup::cgroup2_mount;
use harness::{libttm, require_root, run_to_end, ttmctl_path};

/// What the demo must print: one line per view of each case.
const EXPECTED: &[(&str, &str)] = &[
    (
        "4to4, accept()",
        "server| get client info: ('203.0.113.7', 4242)",
    ),
    (
        "4to4, getpeername()",
        "server| getpeername: ('203.0.113.7', 4242)",
    ),
    ("4to4, getsockopt 1345", "server| ipv4: 203.0.113.7"),
    ("6to4, getsockopt 1345", "server| ipv6: 2001:db8::7"),
    ("6to4, getsockopt 1345 port", "server| port: 4343"),
    ("nginx, 4to4", "nginx saw ::ffff:203.0.113.7"),
    ("nginx, 6to4", "nginx saw 2001:db8::7"),
    (
        "C example under libttm.so, 6to4",
        "server| accept: [2001:db8::7]:4343",
    ),
];

/// The demo's id (its shell's PID), from "cgroups in <cg2>/ttmdemo-<id>".
fn demo_id(out: &str) -> &str {
    out.split("cgroups in ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|cg| cg.rsplit_once("/ttmdemo-"))
        .map(|(_, id)| id)
        .unwrap_or_else(|| panic!("the demo did not say where its cgroups are:\n{out}"))
}

#[test]
fn the_demo_shows_the_real_client_and_cleans_up() {
    require_root();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = run_to_end(
        Command::new(root.join("scripts/demo.sh"))
            .current_dir(root)
            .env("TTMCTL", ttmctl_path())
            .env("LIBTTM", libttm()),
        // Minutes in a VM without hardware virtualisation.
        Duration::from_secs(900),
    );
    let text = format!("{}\n{}", out.stdout, out.stderr);
    assert!(
        out.status.success() && !out.timed_out,
        "demo.sh failed ({:?}, timed out: {}):\n{text}",
        out.status,
        out.timed_out
    );
    let missing: Vec<_> = EXPECTED
        .iter()
        .filter(|(_, line)| !text.contains(line))
        .map(|(what, line)| format!("{what}: {line:?}"))
        .collect();
    assert!(
        missing.is_empty(),
        "the demo did not show:\n  {}\n{text}",
        missing.join("\n  ")
    );

    let id = demo_id(&text);
    let left: Vec<String> = [
        format!("/run/netns/ttmdemo-s-{id}"),
        format!("/run/netns/ttmdemo-c-{id}"),
        format!("/sys/fs/bpf/ttmdemo-{id}"),
        format!("/sys/fs/bpf/ttmdemo-lb-{id}"),
        cgroup2_mount()
            .join(format!("ttmdemo-{id}"))
            .display()
            .to_string(),
    ]
    .into_iter()
    .filter(|p| Path::new(p).exists())
    .collect();
    assert!(left.is_empty(), "the demo left {left:?} behind");
}
