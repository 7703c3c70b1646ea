//! The getsockopt examples of the runtimes a preloaded library cannot help
//! with (issue 12): examples/go/server.go, built with Debian's Go, and
//! examples/node/server.js, run by Node.js with koffi from npm, each on an
//! AF_INET listener behind the LB emulator with the kernel side loaded.
//! For an IPv4 client (4to4) both the runtime's own view and getsockopt
//! 1345 show the claimed client; for an IPv6 client (6to4) the runtime
//! sees the LB (no hook can put an IPv6 address into an AF_INET socket's
//! address) and getsockopt 1345 gives the real client. Needs root.

mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use harness::binaries::profile_dir;
use harness::{KernelSide, LbEmulator, PYTHON, Server, Topology, run_to_end};

const CLAIM4: &str = "203.0.113.7";
const CLAIM6: &str = "2001:db8::7";
const CLAIM_PORT: u16 = 4242;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Where the examples are built, once per target dir (kept between runs).
fn build_dir() -> PathBuf {
    profile_dir().join("compat-examples")
}

/// examples/go/server.go built by `go build` (standard library only, so
/// no module download: GOPROXY=off).
fn go_server() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = build_dir();
        let bin = dir.join("go-server");
        let out = run_to_end(
            Command::new("/usr/bin/go")
                .current_dir(examples().join("go"))
                .env("GOCACHE", dir.join("go-cache"))
                .env("GOPATH", dir.join("go-path"))
                .env("GOPROXY", "off")
                .env("GOFLAGS", "")
                .args(["build", "-o"])
                .arg(&bin)
                .arg("server.go"),
            Duration::from_secs(300),
        );
        out.expect_success("go build examples/go/server.go");
        bin
    })
}

/// A copy of examples/node with its dependencies installed by npm from
/// the package.json (koffi, pinned; no lock file is kept in the repo).
fn node_server() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = build_dir().join("node");
        std::fs::create_dir_all(&dir).expect("node example dir");
        for f in ["server.js", "package.json"] {
            std::fs::copy(examples().join("node").join(f), dir.join(f)).expect("copy");
        }
        let out = run_to_end(
            Command::new("npm")
                .current_dir(&dir)
                .env("npm_config_cache", build_dir().join("npm-cache"))
                .args([
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--no-package-lock",
                    "--omit=dev",
                ]),
            Duration::from_secs(300),
        );
        out.expect_success("npm install (examples/node)");
        dir.join("server.js")
    })
}

/// Runs the example server (it prints "listening on IP:PORT" first),
/// then one connection per case: 4to4 and 6to4 claims; the line it prints
/// and replies must name what the runtime saw and what getsockopt 1345
/// said.
fn serve(topo: &Topology, lb: &mut LbEmulator, cmd: Command, name: &str) {
    let server = Server::interactive(name, cmd);
    let first = server
        .next_line(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("{name} did not start: {}", server.stderr()));
    let port: u16 = first
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name}: no port in {first:?}"));
    let lb_addr = topo.client_v4().to_string();
    for (claim, ip) in [
        (format!("{CLAIM4}:{CLAIM_PORT}"), CLAIM4),
        (format!("[{CLAIM6}]:{CLAIM_PORT}"), CLAIM6),
    ] {
        lb.set(&["--client", &claim]);
        let out = run_to_end(
            topo.client().launch().command(PYTHON).args([
                "-c",
                "import socket, sys\n\
                 s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)\n\
                 print(s.getsockname()[1], s.recv(300).decode().strip())",
                &topo.server_v4().to_string(),
                &port.to_string(),
            ]),
            Duration::from_secs(30),
        );
        let reply = out.expect_success(&format!("client of {name}"));
        let (local_port, reply) = reply.trim().split_once(' ').expect("port and reply");
        let printed = server
            .next_line(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{name} printed nothing: {}", server.stderr()));
        assert_eq!(printed, reply, "{name}: printed and replied lines differ");
        let seen = if ip == CLAIM4 {
            // 4to4: the kernel side rewrote accept() in-kernel.
            format!("{CLAIM4}:{CLAIM_PORT}")
        } else {
            // 6to4 on AF_INET: the runtime can only see the LB.
            format!("{lb_addr}:{local_port}")
        };
        assert_eq!(
            reply,
            format!("accept {seen} ttm {ip} {CLAIM_PORT}"),
            "{name}, claim {claim}"
        );
    }
}

#[test]
fn go_example_reads_getsockopt_1345() {
    harness::require_root();
    let bin = go_server();
    let topo = Topology::new();
    let _ks = KernelSide::load(&topo, &[]);
    let mut lb = LbEmulator::start(&topo, &["--client", CLAIM4]);
    let mut cmd = topo.server().launch().command(bin);
    cmd.args(["-listen", "0.0.0.0:0", "-n", "2"]);
    serve(&topo, &mut lb, cmd, "examples/go/server.go");
}

#[test]
fn node_example_reads_getsockopt_1345() {
    harness::require_root();
    let script = node_server();
    let topo = Topology::new();
    let _ks = KernelSide::load(&topo, &[]);
    let mut lb = LbEmulator::start(&topo, &["--client", CLAIM4]);
    let mut cmd = topo.server().launch().command("/usr/bin/node");
    cmd.arg(script).args(["0.0.0.0", "0", "2"]);
    serve(&topo, &mut lb, cmd, "examples/node/server.js");
}
