//! Named network namespaces (`ip netns`), deleted on drop.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::run_to_end;

/// Where `ip netns add` bind-mounts a namespace; processes join it by
/// opening this file and calling setns(2).
pub fn netns_path(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// Whether a namespace of this name still exists (for leak checks).
pub fn netns_exists(name: &str) -> bool {
    netns_path(name).exists()
}

/// A network namespace this harness created. Dropping it deletes it.
pub struct NetNs {
    name: String,
    deleted: bool,
}

impl NetNs {
    pub fn create(name: &str) -> NetNs {
        assert!(
            !netns_exists(name),
            "network namespace {name} exists already: a previous run leaked it \
             (`ip netns del {name}`), or names are not unique"
        );
        run_to_end(
            Command::new("ip").args(["netns", "add", name]),
            Duration::from_secs(10),
        )
        .expect_success(&format!("ip netns add {name}"));
        NetNs {
            name: name.to_owned(),
            deleted: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> PathBuf {
        netns_path(&self.name)
    }

    /// `ip -n <ns> <args>`; panics with ip's stderr when it fails.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("ip");
        cmd.arg("-n").arg(&self.name).args(args);
        run_to_end(&mut cmd, Duration::from_secs(10)).expect_success(&format!(
            "ip -n {} {}",
            self.name,
            args.join(" ")
        ))
    }

    /// Runs a command inside the namespace as root in the test's own
    /// cgroup (`ip netns exec`); for inspection and sysctls, not for the
    /// processes under test (use `Launch` for those).
    pub fn exec(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(args);
        run_to_end(&mut cmd, Duration::from_secs(10)).expect_success(&format!(
            "ip netns exec {} {}",
            self.name,
            args.join(" ")
        ))
    }

    /// Sets a per-namespace sysctl (net.* ones are per netns).
    pub fn sysctl(&self, key: &str, value: &str) {
        self.exec(&["sysctl", "-q", "-w", &format!("{key}={value}")]);
        let now = self.exec(&["sysctl", "-n", key]);
        assert_eq!(
            now.trim(),
            value,
            "sysctl {key} in {} did not stick",
            self.name
        );
    }

    /// A counter from /proc/net/netstat or /proc/net/snmp as seen inside
    /// the namespace, e.g. ("TcpExt", "SyncookiesSent").
    pub fn netstat(&self, group: &str, field: &str) -> u64 {
        let mut text = self.exec(&["cat", "/proc/net/netstat"]);
        text.push_str(&self.exec(&["cat", "/proc/net/snmp"]));
        let prefix = format!("{group}:");
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(&prefix)).collect();
        for pair in lines.chunks(2) {
            if let [names, values] = pair {
                let names = names.split_whitespace().skip(1);
                let values = values.split_whitespace().skip(1);
                for (n, v) in names.zip(values) {
                    if n == field {
                        return v.parse().expect("netstat value is a number");
                    }
                }
            }
        }
        panic!("no {group} {field} in /proc/net/netstat of {}", self.name)
    }

    /// Deletes the namespace now; Err says why it could not be.
    pub fn delete(&mut self) -> Result<(), String> {
        if self.deleted {
            return Ok(());
        }
        let out = run_to_end(
            Command::new("ip").args(["netns", "del", &self.name]),
            Duration::from_secs(10),
        );
        if !out.status.success() && netns_exists(&self.name) {
            return Err(format!(
                "ip netns del {} failed: {}",
                self.name,
                out.stderr.trim()
            ));
        }
        self.deleted = true;
        Ok(())
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(e) = self.delete() {
            eprintln!("harness: {e}");
        }
    }
}
