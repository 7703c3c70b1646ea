//! libttm.so on top of the real eBPF kit: `ttmctl load` on the server
//! cgroup, the LB emulator (`ttmctl simulate`) writing the option into
//! real handshakes from the client namespace, and unmodified servers
//! (Debian's nginx, the C example, CPython, a 64-thread C server) running
//! under LD_PRELOAD with each backend: `kmod` (getsockopt 1345, answered
//! by the kit's cgroup/getsockopt program) and `bpf` (the kit's pinned
//! SK_STORAGE map). Needs root.

mod harness;
mod preload;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use harness::{KernelSide, Launch, LbEmulator, Server, Topology, connect, echo_server, run_to_end};
use serde_json::{Value, json};

/// Claimed clients: documentation ranges, unreachable from the namespaces.
const CLAIM4: &str = "203.0.113.7";
const CLAIM6: &str = "2001:db8::7";
const CLAIM_PORT: u16 = 4242;
const EPERM: i64 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    /// getsockopt(SOL_IP, 1345): the kit's cgroup/getsockopt answers it.
    Kmod,
    /// The kit's pinned map, TTM_BPF_MAP = KernelSide::peers_map().
    Bpf,
}

const BACKENDS: [Backend; 2] = [Backend::Kmod, Backend::Bpf];

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Kmod => "kmod",
            Backend::Bpf => "bpf",
        }
    }
}

fn claim(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// The server side with libttm preloaded. Every TTM_* setting is given
/// explicitly (empty means the default), so the environment the tests run
/// in cannot change the outcome; `backend` None leaves TTM_BACKEND to auto.
fn preloaded(topo: &Topology, ks: &KernelSide, backend: Option<Backend>) -> Launch {
    topo.server()
        .launch()
        .env("LD_PRELOAD", harness::libttm())
        .env("TTM_BACKEND", backend.map_or("auto", Backend::name))
        .env("TTM_BPF_MAP", ks.peers_map())
        .env("TTM_LOG", "info")
        .env("TTM_LOG_FORMAT", "text")
        .env("TTM_WIDEN", "")
        .env("TTM_TRUSTED", "")
        .env("TTM_PROGRAMS", "")
        .env("TTM_DISABLE", "")
}

/// The info line libttm prints at load for this backend.
fn backend_line(backend: Backend) -> String {
    format!(" info backend backend={} why=", backend.name())
}

/// One line of e2e_client.c: the client's own port and what it read.
#[derive(Debug)]
struct Conn {
    port: u16,
    /// The reply (CR dropped, LF as '|'), or the errno reading it.
    reply: Result<String, i32>,
}

/// Runs e2e_client.c on the client side: `total` connections to
/// `dst`:`port` from `threads` threads, `extra` options before them.
fn client(
    topo: &Topology,
    dst: &str,
    port: u16,
    extra: &[&str],
    threads: usize,
    total: usize,
) -> Vec<Conn> {
    let mut cmd = topo.client().launch().command(preload::e2e_client());
    cmd.args(extra).args([
        "-t",
        &threads.to_string(),
        "-n",
        &total.to_string(),
        dst,
        &port.to_string(),
    ]);
    let out = run_to_end(&mut cmd, Duration::from_secs(60 + total as u64 / 100));
    let what = format!("e2e_client {extra:?} {dst} {port}");
    let stdout = out.expect_success(&what);
    let conns: Vec<Conn> = stdout
        .lines()
        .map(|l| {
            let mut w = l.splitn(4, ' ');
            let (l_, p, kind, rest) = (w.next(), w.next(), w.next(), w.next().unwrap_or(""));
            assert_eq!(l_, Some("L"), "{what}: {l}");
            let port = p
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("{what}: {l}"));
            let reply = match kind {
                Some("R") => Ok(rest.to_owned()),
                Some("E") => Err(rest.parse().unwrap_or_else(|_| panic!("{what}: {l}"))),
                _ => panic!("{what}: {l}"),
            };
            Conn { port, reply }
        })
        .collect();
    assert_eq!(conns.len(), total, "{what}: {stdout}");
    conns
}

/// The reply of a connection that got one.
fn reply(c: &Conn) -> &str {
    c.reply
        .as_deref()
        .unwrap_or_else(|e| panic!("connection from port {} got no reply: errno {e}", c.port))
}

// ---------------------------------------------------------------- nginx

const NGINX: &str = "/usr/sbin/nginx";
const NGINX_PORT: u16 = 8080;
const HTTP_GET: &str = "GET / HTTP/1.0\nHost: ttm.test\n\n";

/// Debian's nginx, unmodified, one process (`master_process off; daemon
/// off;`) in the server namespace and cgroup, everything it writes in a
/// scratch directory. Killed on drop (Server), and with the topology's
/// cgroup in any case.
struct Nginx {
    server: Server,
    dir: preload::Scratch,
}

impl Nginx {
    fn start(launch: &Launch, name: &str, listen: &str) -> Nginx {
        let dir = preload::Scratch::new(name);
        let d = dir.0.display();
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 256; }}
http {{
    default_type text/plain;
    log_format e2e '$remote_addr $remote_port $status';
    access_log {d}/access.log e2e;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen {listen};
        location / {{ return 200 "$remote_addr $remote_port\n"; }}
    }}
}}
"#
        );
        let conf_path = dir.0.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut cmd = launch.command(NGINX);
        cmd.arg("-p").arg(&dir.0).arg("-c").arg(&conf_path);
        let server = Server::interactive("nginx", cmd);
        let nginx = Nginx { server, dir };
        nginx.wait_listening();
        nginx
    }

    /// Polls the server namespace's socket tables (through nginx's own
    /// /proc/PID/net) until the listener is there.
    fn wait_listening(&self) {
        let pid = self.server.pid();
        let port = format!(":{NGINX_PORT:04X} ");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let listening = ["tcp", "tcp6"].iter().any(|t| {
                std::fs::read_to_string(format!("/proc/{pid}/net/{t}"))
                    .unwrap_or_default()
                    .lines()
                    .any(|l| {
                        let f: Vec<&str> = l.split_whitespace().collect();
                        f.len() > 3 && format!("{} ", f[1]).ends_with(&port) && f[3] == "0A"
                    })
            });
            if listening {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nginx is not listening on {NGINX_PORT}; stderr: {}",
                self.server.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The access log once it has `n` lines.
    fn access_log(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(self.dir.0.join("access.log")).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if lines.len() >= n || Instant::now() > deadline {
                assert_eq!(lines.len(), n, "access log: {text}");
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One HTTP GET to nginx over IPv4 (the LB reaches the server over IPv4
/// in every case here); returns the client's port and the response.
fn http_get(topo: &Topology) -> Conn {
    client(
        topo,
        &topo.server_v4().to_string(),
        NGINX_PORT,
        &["-r", HTTP_GET],
        1,
        1,
    )
    .pop()
    .unwrap()
}

/// The body of a 200 response, or a panic showing what came instead.
fn body_200(c: &Conn) -> String {
    let r = reply(c);
    assert!(
        r.starts_with("HTTP/1.1 200 OK|"),
        "not a 200 response: {c:?}"
    );
    let body = r.split_once("||").map_or("", |(_, b)| b);
    body.trim_end_matches('|').to_owned()
}

#[test]
fn nginx_logs_the_real_client_and_never_drops_a_connection() {
    let topo = Topology::new();
    let ks = KernelSide::load(&topo, &[]);
    let mut lb = LbEmulator::start(&topo, &["--client", &claim(CLAIM6, CLAIM_PORT)]);
    let launch = preloaded(&topo, &ks, None);
    let lb_addr = topo.client_v4().to_string();

    // Dual-stack listener: the kernel side alone shows both clients, IPv4
    // ones v4-mapped.
    let nginx = Nginx::start(
        &launch,
        "e2e-nginx-dual",
        &format!("[::]:{NGINX_PORT} ipv6only=off"),
    );
    let six = http_get(&topo);
    assert_eq!(body_200(&six), format!("{CLAIM6} {CLAIM_PORT}"));
    lb.set(&["--client", &claim(CLAIM4, CLAIM_PORT)]);
    let four = http_get(&topo);
    assert_eq!(body_200(&four), format!("::ffff:{CLAIM4} {CLAIM_PORT}"));
    assert_eq!(
        nginx.access_log(2),
        [
            format!("{CLAIM6} {CLAIM_PORT} 200"),
            format!("::ffff:{CLAIM4} {CLAIM_PORT} 200")
        ]
    );
    // Both lines are written at load time, one write each; the reader
    // thread may not have collected the second yet.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut err = nginx.server.stderr();
    while !err.contains(" info widen ") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        err = nginx.server.stderr();
    }
    assert!(
        err.contains(&backend_line(Backend::Bpf)),
        "auto picked the map: {err}"
    );
    assert!(
        err.contains(" info widen widen=off why=\"auto: nginx closes connections"),
        "{err}"
    );
    drop(nginx);

    // IPv4-only listener: the IPv4 client in-kernel; an IPv6 one cannot be
    // shown, and libttm does not widen for nginx: the LB address, served.
    let nginx = Nginx::start(&launch, "e2e-nginx-inet", &NGINX_PORT.to_string());
    let four = http_get(&topo);
    assert_eq!(body_200(&four), format!("{CLAIM4} {CLAIM_PORT}"));
    lb.set(&["--client", &claim(CLAIM6, CLAIM_PORT)]);
    let six = http_get(&topo);
    assert_eq!(body_200(&six), format!("{lb_addr} {}", six.port));
    assert_eq!(
        nginx.access_log(2),
        [
            format!("{CLAIM4} {CLAIM_PORT} 200"),
            format!("{lb_addr} {} 200", six.port)
        ]
    );
    drop(nginx);

    // The control: forced widening is exactly what nginx drops.
    let widen_on = launch.clone().env("TTM_WIDEN", "on");
    let nginx = Nginx::start(&widen_on, "e2e-nginx-widen", &NGINX_PORT.to_string());
    let dropped = http_get(&topo);
    assert!(
        !dropped.reply.as_ref().is_ok_and(|r| r.contains("HTTP/1.1")),
        "nginx answered a widened connection: {dropped:?}"
    );
    // Served nothing, logged nothing.
    std::thread::sleep(Duration::from_millis(200));
    nginx.access_log(0);
}

// ------------------------------------------------------- the C example

/// examples/c/server.c on 0.0.0.0 for one connection; returns its
/// per-connection lines ("accept: ..." etc.) and the client's view.
fn c_example_once(
    topo: &Topology,
    launch: &Launch,
    sockaddr_in: bool,
) -> (HashMap<String, String>, Conn, String) {
    let mut cmd = launch.command(preload::c_example());
    if sockaddr_in {
        cmd.arg("-4"); // accept() into a 16-byte struct sockaddr_in
    }
    cmd.args(["-b", "0.0.0.0", "-n", "1", "0"]);
    let server = Server::interactive("examples/c/server", cmd);
    let first = server
        .next_line(Duration::from_secs(20))
        .unwrap_or_else(|| {
            panic!(
                "examples/c/server printed nothing; stderr: {}",
                server.stderr()
            )
        });
    let port: u16 = first
        .strip_prefix("listening on 0.0.0.0:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
    let conn = client(topo, &topo.server_v4().to_string(), port, &[], 1, 1)
        .pop()
        .unwrap();
    let mut lines = HashMap::new();
    for _ in 0..4 {
        let l = server
            .next_line(Duration::from_secs(10))
            .unwrap_or_else(|| {
                panic!(
                    "examples/c/server: missing output; stderr: {}",
                    server.stderr()
                )
            });
        let (k, v) = l.split_once(": ").unwrap_or_else(|| panic!("{l}"));
        lines.insert(k.to_owned(), v.to_owned());
    }
    server.wait_exit(Duration::from_secs(10));
    (lines, conn, server.stderr())
}

#[test]
fn c_example_widened_with_sockaddr_storage_lb_address_with_sockaddr_in() {
    let topo = Topology::new();
    let ks = KernelSide::load(&topo, &[]);
    let _lb = LbEmulator::start(&topo, &["--client", &claim(CLAIM6, CLAIM_PORT)]);
    let real = claim(CLAIM6, CLAIM_PORT);
    for backend in BACKENDS {
        let launch = preloaded(&topo, &ks, Some(backend));
        let getsockopt = format!("addr {CLAIM6} port {CLAIM_PORT}");
        let api = format!("{real} (backend {})", backend.name());

        // sockaddr_storage: 6to4 widened by libttm (the kernel cannot).
        let (out, conn, err) = c_example_once(&topo, &launch, false);
        let what = format!("{backend:?} storage: {out:?} {err}");
        assert!(err.contains(&backend_line(backend)), "{what}");
        assert_eq!(out["accept"], real, "{what}");
        assert_eq!(out["getpeername"], real, "{what}");
        assert_eq!(out["getsockopt"], getsockopt, "{what}");
        assert_eq!(out["ttm_get_peer"], api, "{what}");
        assert_eq!(reply(&conn), format!("hello {real}|"), "{what}");

        // sockaddr_in: no room, the LB address (the client's own port);
        // getpeername (into a sockaddr_storage) and the API have it.
        let (out, conn, err) = c_example_once(&topo, &launch, true);
        let what = format!("{backend:?} sockaddr_in: {out:?} {err}");
        let lb = format!("{}:{}", topo.client_v4(), conn.port);
        assert_eq!(out["accept"], lb, "{what}");
        assert_eq!(out["getpeername"], real, "{what}");
        assert_eq!(out["getsockopt"], getsockopt, "{what}");
        assert_eq!(out["ttm_get_peer"], api, "{what}");
        assert_eq!(reply(&conn), format!("hello {lb}|"), "{what}");
        assert!(err.contains(" warn no_room_for_ipv6 "), "{what}");
    }
}

// ------------------------------------------------------------- Python

/// echo_server.py (tests/fixtures) under libttm; one connection from the
/// client side to `dst` (with client.py's `extra` options); returns the
/// server's record.
fn python_once(
    topo: &Topology,
    launch: &Launch,
    family: &str,
    dst: &str,
    extra: &[&str],
) -> (Value, u16) {
    let server = echo_server(launch, &["--family", family]);
    let rec = connect(&topo.client().launch(), dst, server.port(), 1, extra)
        .pop()
        .unwrap();
    let printed = server.next_json(Duration::from_secs(10));
    assert_eq!(printed, rec["reply"]);
    let port = rec["local"][1].as_u64().unwrap() as u16;
    (printed, port)
}

fn capi_peer(ip: &str, port: u16, backend: Backend) -> Value {
    let len = if ip.contains(':') { 28 } else { 16 };
    json!({"backend": backend.name(), "peer": [ip, port], "len": len})
}

#[test]
fn python_inet_keeps_the_lb_address_dual_stack_gets_the_client() {
    let topo = Topology::new();
    let ks = KernelSide::load(&topo, &[]);
    let mut lb = LbEmulator::start(&topo, &["--client", &claim(CLAIM6, CLAIM_PORT)]);
    let v4 = topo.server_v4().to_string();
    for backend in BACKENDS {
        let launch = preloaded(&topo, &ks, Some(backend));
        lb.set(&["--client", &claim(CLAIM6, CLAIM_PORT)]);
        // AF_INET: CPython's 16-byte buffer has no room for the IPv6
        // client; the API has it.
        let (r, port) = python_once(&topo, &launch, "inet", &v4, &[]);
        let lb_addr = json!([topo.client_v4().to_string(), port]);
        assert_eq!(r["accept"], lb_addr, "{backend:?}: {r}");
        assert_eq!(r["getpeername"], lb_addr, "{backend:?}: {r}");
        assert_eq!(
            r["capi"],
            capi_peer(CLAIM6, CLAIM_PORT, backend),
            "{backend:?}: {r}"
        );
        assert_eq!(r["ttm"]["ip"], json!(CLAIM6), "{backend:?}: {r}");
        // Dual-stack: the real IPv6 client in accept() and getpeername().
        let (r, _) = python_once(&topo, &launch, "dual", &v4, &[]);
        assert_eq!(r["accept"], json!([CLAIM6, CLAIM_PORT]), "{backend:?}: {r}");
        assert_eq!(
            r["getpeername"],
            json!([CLAIM6, CLAIM_PORT]),
            "{backend:?}: {r}"
        );
        assert_eq!(
            r["capi"],
            capi_peer(CLAIM6, CLAIM_PORT, backend),
            "{backend:?}: {r}"
        );
        // An IPv4 client: real on both.
        lb.set(&["--client", &claim(CLAIM4, CLAIM_PORT)]);
        let (r, _) = python_once(&topo, &launch, "inet", &v4, &[]);
        assert_eq!(r["accept"], json!([CLAIM4, CLAIM_PORT]), "{backend:?}: {r}");
        assert_eq!(
            r["capi"],
            capi_peer(CLAIM4, CLAIM_PORT, backend),
            "{backend:?}: {r}"
        );
        let (r, _) = python_once(&topo, &launch, "dual", &v4, &[]);
        let mapped = format!("::ffff:{CLAIM4}");
        assert_eq!(r["accept"], json!([mapped, CLAIM_PORT]), "{backend:?}: {r}");
        assert_eq!(
            r["capi"],
            capi_peer(CLAIM4, CLAIM_PORT, backend),
            "{backend:?}: {r}"
        );
    }
}

#[test]
fn trusted_list_excludes_an_unlisted_lb_address() {
    let topo = Topology::new();
    // The kernel leaves accept()/getpeername() alone: what changes them
    // here is libttm, and its TTM_TRUSTED.
    let ks = KernelSide::load(&topo, &["--no-rewrite"]);
    let _lb = LbEmulator::start(&topo, &["--client", &claim(CLAIM4, CLAIM_PORT)]);
    let trusted = format!("{}/32,{}/128", topo.client_v4(), topo.client_v6());
    let mapped = format!("::ffff:{CLAIM4}");
    for backend in BACKENDS {
        let launch = preloaded(&topo, &ks, Some(backend)).env("TTM_TRUSTED", &trusted);
        for (dst, good, bad, bad_seen) in topo.trust_cases() {
            let (r, _) = python_once(&topo, &launch, "dual", &dst, &["--source", &good]);
            assert_eq!(
                r["accept"],
                json!([mapped, CLAIM_PORT]),
                "{backend:?} {good}: {r}"
            );
            assert_eq!(r["capi"], capi_peer(CLAIM4, CLAIM_PORT, backend), "{r}");
            let (r, port) = python_once(&topo, &launch, "dual", &dst, &["--source", &bad]);
            assert_eq!(
                r["accept"],
                json!([bad_seen, port]),
                "{backend:?} {bad}: {r}"
            );
            assert_eq!(
                r["getpeername"],
                json!([bad_seen, port]),
                "{backend:?} {bad}: {r}"
            );
            assert_eq!(
                r["capi"],
                json!({"backend": backend.name(), "errno": EPERM}),
                "{backend:?} {bad}: {r}"
            );
            // The kernel side itself trusts every source: the claim is
            // there, libttm declines it.
            assert_eq!(r["ttm"]["ip"], json!(CLAIM4), "{r}");
        }
    }
}

// ------------------------------------------- the threaded C server

/// One line the accept_threads.c server sent back, as the client printed
/// it: "A <family> <ip> <port> G <af> <ip> <port> P <pid> T <thread>|".
#[derive(Debug, PartialEq, Eq)]
struct Accepted {
    family: u16,
    ip: String,
    port: u16,
    g_ip: String,
    g_port: u16,
    pid: u32,
    thread: u32,
}

fn parse_accepted(c: &Conn) -> Accepted {
    let r = reply(c).trim_end_matches('|');
    let w: Vec<&str> = r.split(' ').collect();
    let bad = || panic!("unexpected reply from port {}: {r}", c.port);
    if w.len() != 12 || w[0] != "A" || w[4] != "G" || w[8] != "P" || w[10] != "T" {
        bad();
    }
    let num = |s: &str| s.parse::<u32>().unwrap_or_else(|_| bad());
    Accepted {
        family: num(w[1]) as u16,
        ip: w[2].to_owned(),
        port: num(w[3]) as u16,
        g_ip: w[6].to_owned(),
        g_port: num(w[7]) as u16,
        pid: num(w[9]),
        thread: num(w[11]),
    }
}

/// Every connection was accepted as the claimed IPv6 client (widened on
/// the AF_INET listener) with its own port, and getsockopt agrees.
fn assert_each_rewritten(conns: &[Conn]) -> Vec<Accepted> {
    conns
        .iter()
        .map(|c| {
            let a = parse_accepted(c);
            let want = (10, CLAIM6, c.port, CLAIM6, c.port);
            assert_eq!(
                (a.family, a.ip.as_str(), a.port, a.g_ip.as_str(), a.g_port),
                want,
                "{c:?}"
            );
            a
        })
        .collect()
}

fn threaded_server(launch: &Launch, args: &[&str]) -> Server {
    let mut cmd = launch.command(preload::accept_threads());
    cmd.args(args);
    Server::spawn("accept_threads", cmd, Duration::from_secs(20))
}

#[test]
fn sixty_four_threads_ten_thousand_connections_each_its_own_client() {
    let topo = Topology::new();
    let ks = KernelSide::load(&topo, &[]);
    // IP-only claim: every connection claims its own source port, so a
    // record read for the wrong socket shows as a port mismatch.
    let lb = LbEmulator::start(&topo, &["--client", CLAIM6]);
    let (threads, total) = (64, 10_000);
    for (i, backend) in BACKENDS.into_iter().enumerate() {
        let launch = preloaded(&topo, &ks, Some(backend));
        let server = threaded_server(&launch, &[&threads.to_string(), &total.to_string()]);
        let started = Instant::now();
        let v4 = topo.server_v4().to_string();
        let conns = client(&topo, &v4, server.port(), &[], threads, total);
        let elapsed = started.elapsed();
        let accepted = assert_each_rewritten(&conns);
        // A port may come back for a later connection once the earlier
        // one is closed; two sockets alive at once (the only ones a mix-up
        // can confuse) always differ in it, client and server being fixed.
        let distinct = conns.iter().map(|c| c.port).collect::<HashSet<_>>().len();
        let done = server
            .next_line(Duration::from_secs(20))
            .unwrap_or_default();
        let used = accepted
            .iter()
            .map(|a| a.thread)
            .collect::<HashSet<_>>()
            .len();
        assert_eq!(done, format!("DONE {total} {used}"), "{backend:?}");
        assert!(
            used > threads / 2,
            "{backend:?}: only {used} of {threads} threads accepted"
        );
        assert_eq!(lb.stat("written"), (i as u64 + 1) * total as u64);
        let err = server.stderr();
        assert!(err.contains(&backend_line(backend)), "{err}");
        eprintln!(
            "{backend:?}: {total} connections ({distinct} client ports), \
             {used} accepting threads, {elapsed:?}"
        );
    }
}

#[test]
fn a_fork_after_load_keeps_rewriting() {
    let topo = Topology::new();
    let ks = KernelSide::load(&topo, &[]);
    let _lb = LbEmulator::start(&topo, &["--client", CLAIM6]);
    for backend in BACKENDS {
        let launch = preloaded(&topo, &ks, Some(backend));
        let server = threaded_server(&launch, &["-f", "4", "40"]);
        let forked = server
            .next_line(Duration::from_secs(10))
            .unwrap_or_default();
        let child: u32 = forked
            .strip_prefix("FORKED ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{forked:?}"));
        assert_ne!(child, server.pid());
        let conns = client(
            &topo,
            &topo.server_v4().to_string(),
            server.port(),
            &[],
            4,
            40,
        );
        for a in assert_each_rewritten(&conns) {
            assert_eq!(a.pid, child, "accepted by the forked child");
        }
        assert!(server.wait_exit(Duration::from_secs(10)).success());
    }
}

#[test]
fn a_server_running_as_nobody_gets_the_rewrite_through_both_backends() {
    let topo = Topology::new();
    let ks = KernelSide::load(&topo, &[]);
    let _lb = LbEmulator::start(&topo, &["--client", CLAIM6]);
    for backend in BACKENDS {
        let launch = preloaded(&topo, &ks, Some(backend)).nobody();
        let server = threaded_server(&launch, &["2", "10"]);
        let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
        assert!(
            status.lines().any(|l| l.starts_with("Uid:\t65534\t")),
            "{backend:?}: not nobody: {status}"
        );
        let conns = client(
            &topo,
            &topo.server_v4().to_string(),
            server.port(),
            &[],
            2,
            10,
        );
        assert_each_rewritten(&conns);
        assert!(server.wait_exit(Duration::from_secs(10)).success());
        let err = server.stderr();
        assert!(err.contains(&backend_line(backend)), "{backend:?}: {err}");
        // No backend warning (a map nobody cannot open would say so).
        assert!(!err.contains(" warn "), "{backend:?}: {err}");
    }
}

#[test]
fn auto_picks_the_kit_by_its_pins_and_says_so() {
    let topo = Topology::new();
    let ks = KernelSide::load(&topo, &[]);
    let _lb = LbEmulator::start(&topo, &["--client", CLAIM6]);
    let said = format!(
        " info backend backend=bpf why=\"auto: ttm eBPF kit pinned at {}; asking getsockopt(SOL_IP, 1345)",
        ks.pin_dir().display()
    );
    // TTM_BPF_MAP names the map (its directory is what counts), or
    // TTM_PIN_DIR names the directory and wins over TTM_BPF_MAP.
    let by_map = preloaded(&topo, &ks, None);
    let by_dir = preloaded(&topo, &ks, None)
        .env("TTM_BPF_MAP", "/nonexistent/ttm_peers")
        .env("TTM_PIN_DIR", ks.pin_dir());
    for launch in [by_map, by_dir] {
        let server = threaded_server(&launch, &["1", "1"]);
        let conns = client(
            &topo,
            &topo.server_v4().to_string(),
            server.port(),
            &[],
            1,
            1,
        );
        assert_each_rewritten(&conns);
        let err = server.stderr();
        assert!(err.contains(&said), "{err}");
    }

    // No kit where it is told to look: nothing is asked.
    let launch = preloaded(&topo, &ks, None).env("TTM_PIN_DIR", "/nonexistent/ttm");
    let server = threaded_server(&launch, &["1", "1"]);
    let conns = client(
        &topo,
        &topo.server_v4().to_string(),
        server.port(),
        &[],
        1,
        1,
    );
    let a = parse_accepted(&conns[0]);
    assert_eq!(
        (a.family, a.ip.as_str()),
        (2, topo.client_v4().to_string().as_str())
    );
    assert_eq!(lookups_after_done(&server, 1), 0);
    assert!(
        server
            .stderr()
            .contains(" info backend backend=none why=\"auto: nothing installed"),
        "{}",
        server.stderr()
    );
}

// ------------------------------- fds libttm does not own (issue 11, F1-F5)

/// The LOOKUPS line accept_threads prints after DONE: libttm's count of
/// backend questions.
fn lookups_after_done(server: &Server, total: usize) -> i64 {
    let done = server
        .next_line(Duration::from_secs(20))
        .unwrap_or_default();
    assert!(
        done.starts_with(&format!("DONE {total} ")),
        "{done:?}; stderr: {}",
        server.stderr()
    );
    let line = server.next_line(Duration::from_secs(5)).unwrap_or_default();
    line.strip_prefix("LOOKUPS ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line:?}"))
}

/// A server that does what daemons do at start-up, after libttm loaded:
/// closes every fd >= 3 and (unless `reuse` is "closed") puts another
/// object at the low numbers, where libttm once kept the kit's map. With
/// the default backend choice and with TTM_BACKEND=bpf, every connection
/// still gets its real client (an IPv6 one on an AF_INET listener: only
/// libttm can show it), the server lives, and nothing is logged as failed.
fn survives_fd_reuse(topo: &Topology, ks: &KernelSide, reuse: &str) {
    let _lb = LbEmulator::start(topo, &["--client", CLAIM6]);
    let v4 = topo.server_v4().to_string();
    for backend in [None, Some(Backend::Bpf)] {
        let launch = preloaded(topo, ks, backend);
        let server = threaded_server(&launch, &["-r", reuse, "2", "6"]);
        let conns = client(topo, &v4, server.port(), &[], 2, 6);
        assert_each_rewritten(&conns);
        lookups_after_done(&server, 6);
        let status = server.wait_exit(Duration::from_secs(10));
        let err = server.stderr();
        assert!(status.success(), "{reuse} {backend:?}: {status:?}: {err}");
        assert!(
            err.contains(&format!("fds 3..15 are now {reuse}")) || reuse == "closed",
            "{err}"
        );
        assert!(!err.contains(" warn "), "{reuse} {backend:?}: {err}");
    }
}

#[test]
fn f1_a_bpf_array_with_4k_values_at_libttms_old_fd_neither_crashes_nor_misleads() {
    let topo = Topology::new();
    let ks = KernelSide::load(&topo, &[]);
    survives_fd_reuse(&topo, &ks, "array4k");
}

#[test]
fn f4_another_instances_peer_map_at_libttms_old_fd_does_not_hide_the_client() {
    let topo = Topology::new();
    let ks = KernelSide::load(&topo, &[]);
    // Another ttm, on another cgroup: its map has nothing for our sockets.
    let other_topo = Topology::new();
    let other = KernelSide::load(&other_topo, &[]);
    let reuse = format!("map:{}", other.peers_map().display());
    survives_fd_reuse(&topo, &ks, &reuse);
}

#[test]
fn f5_closed_fds_and_a_file_or_socket_at_libttms_old_fd_do_not_hide_the_client() {
    let topo = Topology::new();
    let ks = KernelSide::load(&topo, &[]);
    for reuse in ["closed", "file", "socket"] {
        survives_fd_reuse(&topo, &ks, reuse);
    }
}

#[test]
fn f3_unload_then_load_under_a_running_server_keeps_the_real_client() {
    let topo = Topology::new();
    let mut ks = KernelSide::load(&topo, &[]);
    let _lb = LbEmulator::start(&topo, &["--client", CLAIM6]);
    let v4 = topo.server_v4().to_string();
    for backend in [None, Some(Backend::Bpf)] {
        let launch = preloaded(&topo, &ks, backend);
        let server = threaded_server(&launch, &["2", "8"]);
        assert_each_rewritten(&client(&topo, &v4, server.port(), &[], 2, 4));
        // A service restart: the old map goes with its pins, load makes
        // a new one (and new programs) while the server keeps running.
        ks.unload();
        ks.reload(&[]);
        assert_each_rewritten(&client(&topo, &v4, server.port(), &[], 2, 4));
        lookups_after_done(&server, 8);
        assert!(server.wait_exit(Duration::from_secs(10)).success());
        let err = server.stderr();
        assert!(!err.contains(" warn "), "{backend:?}: {err}");
    }
}

// ------------------- the trust list the kit exports (issue 10, item 6)

/// Where `ttmctl load` exports the trust list for the kit at `ks`.
fn export_file(ks: &KernelSide) -> PathBuf {
    let run_dir = std::env::var_os("TTM_RUN_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from("/run/ttm"), PathBuf::from);
    let mut name = ks.pin_dir().file_name().unwrap().to_owned();
    name.push(".json");
    run_dir.join(name)
}

/// `n` connections to a fresh accept_threads under `launch`: what each
/// accept returned (family, ip, port), libttm's lookups, its stderr.
fn served(topo: &Topology, launch: &Launch, n: usize) -> (Vec<(u16, String, u16)>, i64, String) {
    let server = threaded_server(launch, &["2", &n.to_string()]);
    let conns = client(
        topo,
        &topo.server_v4().to_string(),
        server.port(),
        &[],
        2,
        n,
    );
    let accepted = conns
        .iter()
        .map(|c| {
            let a = parse_accepted(c);
            (a.family, a.ip, a.port)
        })
        .collect();
    let lookups = lookups_after_done(&server, n);
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    (accepted, lookups, server.stderr())
}

#[test]
fn the_exported_trust_list_spares_the_lookup_where_the_kernel_rewrote() {
    use std::os::unix::fs::PermissionsExt;
    let topo = Topology::new();
    let lb_prefix = format!("{}/32", topo.client_v4());
    let mut ks = KernelSide::load(&topo, &["--trust", &lb_prefix]);
    let mut lb = LbEmulator::start(&topo, &["--client", &claim(CLAIM4, CLAIM_PORT)]);
    let n = 8;

    // What ttmctl load exported: world-readable, the documented shape.
    let file = export_file(&ks);
    let meta = std::fs::metadata(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert_eq!(meta.permissions().mode() & 0o777, 0o644);
    let doc: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let pin = std::fs::canonicalize(ks.pin_dir()).unwrap();
    assert_eq!(
        doc,
        json!({"schema": 1, "pin_dir": pin.to_str().unwrap(), "trusted": [lb_prefix], "any": false})
    );

    // No TTM_TRUSTED: the exported list applies. 4to4 on an AF_INET
    // listener: the kernel rewrote accept(), the address is no LB's, and
    // libttm asks nothing.
    let launch = preloaded(&topo, &ks, None);
    let real4 = (2, CLAIM4.to_owned(), CLAIM_PORT);
    let (accepted, lookups, err) = served(&topo, &launch, n);
    assert!(accepted.iter().all(|a| *a == real4), "{accepted:?}");
    assert_eq!(lookups, 0, "{err}");
    let said = format!(
        " info trusted prefixes=\"{lb_prefix}\" from=\"{}\"",
        file.display()
    );
    assert!(err.contains(&said), "{err}");

    // 6to4 on the same listener: the kernel cannot show it, the LB
    // address is in the list, one lookup each, widened.
    lb.set(&["--client", &claim(CLAIM6, CLAIM_PORT)]);
    let (accepted, lookups, _) = served(&topo, &launch, n);
    let real6 = (10, CLAIM6.to_owned(), CLAIM_PORT);
    assert!(accepted.iter().all(|a| *a == real6), "{accepted:?}");
    assert_eq!(lookups, n as i64);

    // TTM_TRUSTED overrides the file; without a file every LB address is
    // asked about. Both still show the real client.
    lb.set(&["--client", &claim(CLAIM4, CLAIM_PORT)]);
    let empty = preload::Scratch::new("no-export");
    for (what, launch) in [
        (
            "TTM_TRUSTED",
            preloaded(&topo, &ks, None).env("TTM_TRUSTED", "0.0.0.0/0"),
        ),
        (
            "no file",
            preloaded(&topo, &ks, None).env("TTM_RUN_DIR", &empty.0),
        ),
    ] {
        let (accepted, lookups, err) = served(&topo, &launch, n);
        assert!(accepted.iter().all(|a| *a == real4), "{what}: {accepted:?}");
        assert_eq!(lookups, n as i64, "{what}: {err}");
    }

    // unload takes the file with it.
    ks.unload();
    assert!(!file.exists(), "{} left behind", file.display());
}
