//! The compatibility matrix (issue 4): real servers, unmodified, behind the
//! LB emulator, each asked what it thinks the client is, in every case
//! that applies; and docs/compatibility.md rendered from the answers.
//!
//! - [`catalogue`]: the servers, how each is built, started and read
//! - [`daemon`]: a server's process group in the server namespace
//! - [`matrix`]: the axes, what a report means, what each cell must show
//! - [`render`]: the document, from the observations

pub mod catalogue;
pub mod daemon;
pub mod matrix;
pub mod render;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{LbEmulator, PYTHON, Topology, run_to_end};
use catalogue::{Instance, Server, Source};
use daemon::Daemon;
use matrix::{Case, Cell, Listener, Mode, Report, Verdict};

/// One server's line of the matrix.
pub struct Row {
    pub server: Server,
    pub status: Status,
}

pub enum Status {
    /// Some program is missing: reported, never silently skipped.
    NotInstalled {
        missing: Vec<PathBuf>,
    },
    Ran {
        version: String,
        cells: Vec<Cell>,
    },
}

/// A directory of the run's own, for configs, pids and logs; removed on
/// drop, also when the test fails, unless `TTM_COMPAT_KEEP=1` asks to keep
/// it for a look at what the servers wrote.
pub struct WorkDir(PathBuf);

impl WorkDir {
    pub fn create(id: &str) -> WorkDir {
        let dir = std::env::temp_dir().join(format!("ttm-compat-{id}"));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        WorkDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if std::env::var_os("TTM_COMPAT_KEEP").is_some_and(|v| v == "1") {
            eprintln!("compat: kept {}", self.0.display());
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("compat: cannot remove {}: {e}", self.0.display());
        }
    }
}

/// Everything the servers of one run share.
pub struct Env<'a> {
    pub topo: &'a Topology,
    pub libttm: PathBuf,
    /// The kernel side's pinned peer map, for `TTM_BACKEND=bpf`.
    pub peers_map: PathBuf,
    pub work: &'a Path,
    pub build_dir: &'a Path,
}

/// `tests/compat/http_get.py` from the client side (whose cgroup the LB
/// emulator writes the option for): one GET per (port, path), records by
/// (port, path).
fn http_get(env: &Env, requests: &[(u16, String)]) -> HashMap<(u16, String), Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat/http_get.py");
    let mut cmd = env.topo.client().launch().command(PYTHON);
    cmd.arg("-B")
        .arg(script)
        .arg(env.topo.server_v4().to_string());
    for (port, path) in requests {
        cmd.arg(format!("{port}:{path}"));
    }
    let out = run_to_end(&mut cmd, Duration::from_secs(120));
    let records = out.json_lines();
    out.expect_success("http_get.py");
    records
        .into_iter()
        .map(|r| {
            let port = r["port"].as_u64().expect("port") as u16;
            let path = r["path"].as_str().expect("path").to_owned();
            ((port, path), r)
        })
        .collect()
}

/// The client's own end of a connection (the LB's address and source port,
/// which the server sees when ttm does not reach it).
fn local_of(rec: &Value) -> Option<SocketAddr> {
    let ip = rec["local"][0].as_str()?.parse().ok()?;
    let port = rec["local"][1].as_u64()? as u16;
    Some(SocketAddr::new(ip, port))
}

/// What the server reported for the request of `path`.
fn report(server: Server, dir: &Path, path: &str, rec: &Value) -> Result<Report, String> {
    if let Some(e) = rec["error"].as_str() {
        return Err(format!("request failed: {e}"));
    }
    if rec["status"].as_u64() != Some(200) {
        return Err(format!("HTTP status {}, not 200", rec["status"]));
    }
    match server.source() {
        Source::Body => {
            let body = rec["body"].as_str().unwrap_or("");
            let mut lines = body.lines();
            let raw = lines.next().unwrap_or("").trim().to_owned();
            let getsockopt = lines
                .find_map(|l| l.strip_prefix("1345 "))
                .map(|g| g.trim().to_owned());
            Ok(Report { raw, getsockopt })
        }
        Source::Log(file) => {
            // Logged when the response is done: shortly after the client
            // got it, at worst.
            let prefix = format!("{path} ");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let text = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
                if let Some(line) = text.lines().find(|l| l.starts_with(&prefix)) {
                    return Ok(Report {
                        raw: line[prefix.len()..].trim().to_owned(),
                        getsockopt: None,
                    });
                }
                if Instant::now() >= deadline {
                    return Err(format!("no line for {path} in its {file}"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// One server, every case: six processes (listener x mode) started at
/// once, each asked once per case. `base_port` and the next five ports are
/// this server's. `build` is the outcome of compiling its handler.
pub fn run_server(
    env: &Env,
    lb: &mut LbEmulator,
    server: Server,
    base_port: u16,
    build: Result<(), String>,
) -> Row {
    let missing = server.missing();
    if !missing.is_empty() {
        return Row {
            server,
            status: Status::NotInstalled { missing },
        };
    }
    let version = server
        .version()
        .unwrap_or_else(|e| format!("(version unknown: {e})"));

    struct Running {
        listener: Listener,
        mode: Mode,
        port: u16,
        dir: PathBuf,
        daemon: Result<Daemon, String>,
    }
    let mut running = Vec::new();
    let variants = Listener::ALL
        .iter()
        .flat_map(|l| Mode::ALL.iter().map(move |m| (*l, *m)));
    for (i, (listener, mode)) in variants.enumerate() {
        let port = base_port + i as u16;
        let dir = env.work.join(format!(
            "{}-{}-{}",
            server.key(),
            listener.tag(),
            mode.tag()
        ));
        let daemon = build.clone().and_then(|()| {
            std::fs::create_dir(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
            let inst = Instance {
                dir: &dir,
                port,
                listener,
                build_dir: env.build_dir,
            };
            server.configure(&inst)?;
            let mut cmd = server.command(&env.topo.server().launch(), &inst);
            // The servers inherit the test's environment: a libttm.so or
            // TTM_* setting of the caller's must not change a cell.
            for (key, _) in std::env::vars_os() {
                let k = key.to_string_lossy();
                if k == "LD_PRELOAD" || k.starts_with("TTM_") {
                    cmd.env_remove(&key);
                }
            }
            if let Some(backend) = mode.backend() {
                cmd.env("LD_PRELOAD", &env.libttm)
                    .env("TTM_BACKEND", backend)
                    .env("TTM_BPF_MAP", &env.peers_map);
            }
            let name = format!("{} ({}, {})", server.name(), listener.label(), mode.label());
            Daemon::spawn(&name, cmd, &dir)
        });
        running.push(Running {
            listener,
            mode,
            port,
            dir,
            daemon,
        });
    }
    // Started all at once, waited for afterwards: their start-ups overlap.
    for r in &mut running {
        if let Ok(d) = &mut r.daemon
            && let Err(e) = d.wait_listening(r.port, r.listener, Duration::from_secs(60))
        {
            r.daemon = Err(e);
        }
    }

    let mut cells = Vec::new();
    for case in Case::ALL {
        lb.set(&["--client", case.claim_arg()]);
        let path_of = |r: &Running| {
            format!(
                "/compat/{}-{}-{}",
                r.listener.tag(),
                r.mode.tag(),
                case.label()
            )
        };
        let requests: Vec<(u16, String)> = running
            .iter()
            .filter(|r| r.daemon.is_ok())
            .map(|r| (r.port, path_of(r)))
            .collect();
        let mut records = http_get(env, &requests);
        for r in &mut running {
            let path = path_of(r);
            let verdict = match &mut r.daemon {
                Err(e) => Verdict::Failed { error: e.clone() },
                Ok(daemon) => {
                    let rec = records
                        .remove(&(r.port, path.clone()))
                        .expect("http_get.py answers every request");
                    let lb_end = local_of(&rec);
                    let mut got = report(server, &r.dir, &path, &rec);
                    if let Err(e) = &mut got {
                        let state = if daemon.running() {
                            "running"
                        } else {
                            "exited"
                        };
                        e.push_str(&format!("; server {state}; {}", daemon.diagnostics()));
                    }
                    match lb_end {
                        Some(lb_end) => Verdict::judge(got, case.claim(), lb_end),
                        None => Verdict::Failed {
                            error: got.err().unwrap_or_else(|| "no local address".into()),
                        },
                    }
                }
            };
            cells.push(Cell {
                case,
                listener: r.listener,
                mode: r.mode,
                verdict,
            });
        }
    }
    Row {
        server,
        status: Status::Ran { version, cells },
    }
}
