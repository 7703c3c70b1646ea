//! A server under test as the distribution runs it: a process group (a
//! master and its workers, for nginx and Apache) in the topology's server
//! namespace and cgroup, its output in files of its instance directory,
//! the whole group killed on drop. The harness's `Server` wants a READY
//! line, which unmodified servers do not print: readiness here is the
//! listening socket itself, read from the namespace's /proc/net tables.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::matrix::Listener;

pub struct Daemon {
    name: String,
    child: Child,
    dir: PathBuf,
}

impl Daemon {
    /// Spawns `cmd` (from `Launch::command`) in a process group of its
    /// own, stdout and stderr to `dir/stdout` and `dir/stderr`.
    pub fn spawn(name: &str, mut cmd: Command, dir: &Path) -> Result<Daemon, String> {
        let file = |n: &str| {
            File::create(dir.join(n)).map_err(|e| format!("create {}/{n}: {e}", dir.display()))
        };
        cmd.stdin(Stdio::null())
            .stdout(file("stdout")?)
            .stderr(file("stderr")?)
            // Workers stay in the group: one kill(-pgid) reaches them all.
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {name} ({cmd:?}): {e}"))?;
        Ok(Daemon {
            name: name.to_owned(),
            child,
            dir: dir.to_owned(),
        })
    }

    /// Waits until a socket of the server's namespace listens on `port`,
    /// and checks it has the family `listener` stands for (a runtime that
    /// quietly opens AF_INET6 for `0.0.0.0` would test the wrong column).
    pub fn wait_listening(
        &mut self,
        port: u16,
        listener: Listener,
        within: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{} exited ({status}) before listening; {}",
                    self.name,
                    self.diagnostics()
                ));
            }
            let found: Vec<&str> = ["tcp", "tcp6"]
                .into_iter()
                .filter(|t| self.listens_in(t, port))
                .collect();
            match found[..] {
                [] => {}
                [table] if table == listener.proc_table() => return Ok(()),
                _ => {
                    return Err(format!(
                        "{} listens on port {port} in /proc/net/{} (expected only {}: {})",
                        self.name,
                        found.join(" and "),
                        listener.proc_table(),
                        listener.label()
                    ));
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} is not listening on port {port} after {within:?}; {}",
                    self.name,
                    self.diagnostics()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether /proc/<pid>/net/<table> (the table of the process's network
    /// namespace) has a LISTEN socket on `port`.
    fn listens_in(&self, table: &str, port: u16) -> bool {
        let path = format!("/proc/{}/net/{table}", self.child.id());
        let Ok(text) = std::fs::read_to_string(path) else {
            return false;
        };
        let want = format!(":{port:04X}");
        text.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // sl local_address rem_address st ...; 0A is TCP_LISTEN.
            f.len() > 3 && f[1].ends_with(&want) && f[3] == "0A"
        })
    }

    /// Whether the group leader still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The end of each file the server wrote, for error messages.
    pub fn diagnostics(&self) -> String {
        let mut out = Vec::new();
        for name in ["stderr", "stdout", "error.log"] {
            if let Ok(text) = std::fs::read_to_string(self.dir.join(name)) {
                let text = text.trim();
                if !text.is_empty() {
                    let tail: Vec<&str> = text.lines().rev().take(8).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    out.push(format!("{name}: {}", tail.join(" | ")));
                }
            }
        }
        if out.is_empty() {
            "it wrote nothing".into()
        } else {
            out.join("; ")
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) has no memory-safety preconditions. The group is
        // the one this guard created: Linux hands its id to no new process
        // while any member lives, and once all are gone kill finds none.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}
