//! Running processes inside a test's namespace and cgroup, and collecting
//! what they print without ever blocking a test forever.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

/// uid and gid of `nobody`/`nogroup` on Debian.
pub const NOBODY: u32 = 65534;

/// Where a process goes: a network namespace, a cgroup v2 leaf, and
/// optionally user nobody. `command()` returns a `std::process::Command`
/// that enters all of them between fork and exec.
#[derive(Clone, Debug)]
pub struct Launch {
    netns: PathBuf,
    cgroup: PathBuf,
    nobody: bool,
    envs: Vec<(OsString, OsString)>,
}

impl Launch {
    /// `netns` is a bind-mounted namespace file (/run/netns/<name>),
    /// `cgroup` a cgroup v2 directory.
    pub fn new(netns: impl Into<PathBuf>, cgroup: impl Into<PathBuf>) -> Launch {
        Launch {
            netns: netns.into(),
            cgroup: cgroup.into(),
            nobody: false,
            envs: Vec::new(),
        }
    }

    /// Run as user nobody (uid/gid 65534, no supplementary groups).
    pub fn nobody(mut self) -> Launch {
        self.nobody = true;
        self
    }

    /// An environment variable for the process (e.g. LD_PRELOAD).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Launch {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn cgroup(&self) -> &Path {
        &self.cgroup
    }

    pub fn netns(&self) -> &Path {
        &self.netns
    }

    /// A Command for `program` that, in the child before exec: joins the
    /// cgroup, enters the network namespace, then (if asked) drops to
    /// nobody, and dies with SIGKILL if the spawning *thread* exits (so
    /// spawn long-lived processes from the test's own thread, not from a
    /// helper thread that ends first).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        // Opened here, before fork: the child may only make
        // async-signal-safe calls, and open() of a path needing allocation
        // is not one. O_CLOEXEC (std's default) keeps them out of the
        // exec'd program.
        let cgroup_procs = OpenOptions::new()
            .write(true)
            .open(self.cgroup.join("cgroup.procs"))
            .unwrap_or_else(|e| panic!("open {}/cgroup.procs: {e}", self.cgroup.display()));
        let netns = File::open(&self.netns)
            .unwrap_or_else(|e| panic!("open netns {}: {e}", self.netns.display()));
        let cgroup_procs: OwnedFd = cgroup_procs.into();
        let netns: OwnedFd = netns.into();
        let nobody = self.nobody;

        let mut cmd = Command::new(program);
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        let hook = move || -> io::Result<()> {
            // Errors are reported through io::Error::last_os_error(),
            // which only wraps errno (no allocation).
            let check = |r: libc::c_long| {
                if r < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            };
            // SAFETY: between fork and exec; write(2), setns(2),
            // setgroups(2), setgid(2), setuid(2) and prctl(2) are
            // async-signal-safe system calls. The fds are owned by this
            // closure and open; the buffer is a static byte string.
            unsafe {
                // "0" moves the writing process itself.
                let n = libc::write(cgroup_procs.as_raw_fd(), b"0".as_ptr().cast(), 1);
                check(n as libc::c_long)?;
                check(libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) as libc::c_long)?;
                if nobody {
                    // After setns: entering a netns needs CAP_SYS_ADMIN.
                    check(libc::setgroups(0, std::ptr::null()) as libc::c_long)?;
                    check(libc::setgid(NOBODY) as libc::c_long)?;
                    check(libc::setuid(NOBODY) as libc::c_long)?;
                }
                // Last: a credential change clears the death signal. If the
                // test process is killed outright, its servers go too.
                check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) as libc::c_long)?;
            }
            Ok(())
        };
        // SAFETY: the hook only makes async-signal-safe system calls (see
        // above) and touches no lock or allocator.
        unsafe {
            cmd.pre_exec(hook);
        }
        cmd
    }
}

/// A process that ran to its end (or was killed at the timeout).
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    pub what: String,
}

impl Finished {
    /// Stdout, or a panic naming the command with its stderr.
    pub fn expect_success(self, what: &str) -> String {
        assert!(
            self.status.success() && !self.timed_out,
            "{what} failed ({}{}):\nstdout: {}\nstderr: {}",
            describe(self.status),
            if self.timed_out {
                ", killed at timeout"
            } else {
                ""
            },
            self.stdout.trim_end(),
            self.stderr.trim_end()
        );
        self.stdout
    }

    /// Every stdout line parsed as JSON (panics on a line that is not).
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("{}: stdout line is not JSON ({e}): {l}", self.what))
            })
            .collect()
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => format!("{status}"),
    }
}

fn drain<R: Read + Send + 'static>(mut r: R) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Spawns `cmd` with stdin closed, collects stdout/stderr, and kills it if
/// it has not exited within `timeout`.
pub fn run_to_end(cmd: &mut Command, timeout: Duration) -> Finished {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {what}: {e}"));
    let out = drain(child.stdout.take().expect("piped stdout"));
    let err = drain(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().expect("wait for killed child");
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("wait for {what}: {e}"),
        }
    };
    Finished {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        timed_out,
        what,
    }
}

/// A long-running process that prints one line per event: a server (which
/// prints `READY [port]` once listening), or an interactive client driven
/// through its stdin. Killed (and reaped) on drop.
pub struct Server {
    name: String,
    stdin: Mutex<Option<ChildStdin>>,
    // A Mutex so that &self methods can ask whether it died (try_wait).
    child: Mutex<Child>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// Set when stderr reached EOF: everything written is in `stderr`.
    stderr_eof: Arc<std::sync::atomic::AtomicBool>,
    port: Option<u16>,
}

impl Server {
    /// Spawns `cmd` and waits up to `ready_within` for its READY line.
    pub fn spawn(name: &str, cmd: Command, ready_within: Duration) -> Server {
        let mut server = Server::start(name, cmd, false);
        let ready = server.next_line(ready_within).unwrap_or_else(|| {
            panic!(
                "server {name} printed no READY within {ready_within:?}; {}",
                server.diagnostics()
            )
        });
        let rest = ready.strip_prefix("READY").unwrap_or_else(|| {
            panic!(
                "server {name}: expected READY, got {ready:?}; {}",
                server.diagnostics()
            )
        });
        server.port = rest.trim().parse().ok();
        server
    }

    /// Spawns `cmd` with its stdin piped (see `send_line`), without
    /// waiting for anything.
    pub fn interactive(name: &str, cmd: Command) -> Server {
        Server::start(name, cmd, true)
    }

    fn start(name: &str, mut cmd: Command, stdin: bool) -> Server {
        let mut child = cmd
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn server {name} ({cmd:?}): {e}"));
        let lines = line_reader(child.stdout.take().expect("piped stdout"));
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_eof = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let sink = Arc::clone(&stderr);
            let eof = Arc::clone(&stderr_eof);
            let mut err = child.stderr.take().expect("piped stderr");
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    sink.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push_str(&text);
                }
                eof.store(true, std::sync::atomic::Ordering::Release);
            });
        }
        Server {
            name: name.to_owned(),
            stdin: Mutex::new(child.stdin.take()),
            child: Mutex::new(child),
            lines,
            stderr,
            stderr_eof,
            port: None,
        }
    }

    /// Writes `line` and a newline to the process's stdin.
    pub fn send_line(&self, line: &str) {
        let mut stdin = self.stdin.lock().unwrap_or_else(|p| p.into_inner());
        let pipe = stdin
            .as_mut()
            .unwrap_or_else(|| panic!("{}: stdin is not piped", self.name));
        pipe.write_all(format!("{line}\n").as_bytes())
            .and_then(|()| pipe.flush())
            .unwrap_or_else(|e| panic!("{}: write stdin: {e}; {}", self.name, self.diagnostics()));
    }

    /// The port from the READY line (servers bound to port 0 report it).
    pub fn port(&self) -> u16 {
        self.port
            .unwrap_or_else(|| panic!("server {} reported no port", self.name))
    }

    pub fn pid(&self) -> u32 {
        self.child().id()
    }

    fn child(&self) -> std::sync::MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next stdout line, or None after `timeout` or at EOF.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// The next stdout line as JSON; panics (with the server's stderr) on
    /// timeout or a line that is not JSON.
    pub fn next_json(&self, timeout: Duration) -> Value {
        let line = self.next_line(timeout).unwrap_or_else(|| {
            panic!(
                "server {} printed no record within {timeout:?}; {}",
                self.name,
                self.diagnostics()
            )
        });
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("server {}: not JSON ({e}): {line}", self.name))
    }

    /// Exactly `n` records, each within `each` of the previous one.
    pub fn records(&self, n: usize, each: Duration) -> Vec<Value> {
        (0..n).map(|_| self.next_json(each)).collect()
    }

    /// Asserts the server prints nothing more within `quiet`.
    pub fn assert_no_more(&self, quiet: Duration) {
        if let Some(l) = self.next_line(quiet) {
            panic!("server {}: unexpected extra output: {l}", self.name);
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until the server's stderr contains `needle` (a message it
    /// prints once it has reached some state); panics with `what` and what
    /// it wrote after `timeout`.
    pub fn wait_stderr(&self, needle: &str, timeout: Duration, what: &str) {
        let deadline = Instant::now() + timeout;
        while !self.stderr().contains(needle) {
            assert!(Instant::now() < deadline, "{what}: {}", self.diagnostics());
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn diagnostics(&self) -> String {
        let status = match self.child().try_wait() {
            Ok(Some(s)) => describe(s),
            _ => "still running".into(),
        };
        // Give the stderr reader a moment to catch a dying server's message.
        thread::sleep(Duration::from_millis(100));
        format!("process {status}; stderr: {}", self.stderr().trim_end())
    }

    /// Waits for the server to exit on its own (e.g. after --count), and
    /// for its stderr to be read to the end, so `stderr()` then holds all
    /// it wrote (unless a child it left behind keeps the pipe open).
    pub fn wait_exit(&self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child().try_wait().expect("try_wait") {
                let eof_by = Instant::now() + Duration::from_secs(5);
                while !self.stderr_eof.load(std::sync::atomic::Ordering::Acquire)
                    && Instant::now() < eof_by
                {
                    thread::sleep(Duration::from_millis(5));
                }
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "server {} still running after {timeout:?}",
                self.name
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

fn line_reader(stdout: ChildStdout) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(l) => {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });
    rx
}

impl Drop for Server {
    fn drop(&mut self) {
        // Closing stdin first lets an interactive process end on its own.
        drop(self.stdin.lock().unwrap_or_else(|p| p.into_inner()).take());
        let mut child = self.child();
        let _ = child.kill();
        let _ = child.wait();
    }
}
