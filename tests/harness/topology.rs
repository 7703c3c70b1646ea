//! Two network namespaces joined by a veth pair, plus a cgroup v2 subtree
//! with a `server` and a `client` leaf: the smallest world in which a
//! client (standing in for the LB) connects to a server.
//!
//! Addresses, with N = this topology's number (0..=255):
//!   server  198.18.N.1/24   fd00:7474:N::1/64
//!   client  198.18.N.2/24   fd00:7474:N::2/64   (the "LB")
//!           198.18.N.3/24   fd00:7474:N::3/64   (a second, untrusted source)
//! 198.18.0.0/15 is the benchmarking range (RFC 2544), fd00::/8 is ULA:
//! neither can leak to a real network, and all of it lives inside
//! namespaces this harness made.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::cgroup::CgroupTree;
use super::netns::{NetNs, netns_exists};
use super::process::Launch;
use super::{require_root, unique_id};

/// One end of the topology: its namespace and cgroup.
pub struct Side {
    ns: NetNs,
    cgroup: PathBuf,
}

impl Side {
    pub fn netns(&self) -> &NetNs {
        &self.ns
    }

    pub fn cgroup(&self) -> &Path {
        &self.cgroup
    }

    /// Launch builder for processes on this side (root unless `.nobody()`).
    pub fn launch(&self) -> Launch {
        Launch::new(self.ns.path(), &self.cgroup)
    }
}

/// Names of everything a topology created, to check after it is gone.
#[derive(Clone, Debug)]
pub struct TopologyIds {
    pub netns: Vec<String>,
    pub cgroup_root: PathBuf,
}

impl TopologyIds {
    /// What still exists, as human-readable lines (empty when clean).
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        for ns in &self.netns {
            if netns_exists(ns) {
                left.push(format!("network namespace {ns}"));
            }
        }
        if self.cgroup_root.exists() {
            left.push(format!("cgroup {}", self.cgroup_root.display()));
        }
        left
    }

    pub fn assert_gone(&self) {
        let left = self.leftovers();
        assert!(left.is_empty(), "left behind: {}", left.join(", "));
    }
}

pub struct Topology {
    id: String,
    n: u8,
    // Field order is drop order for a half-built topology; `Drop` tears
    // down explicitly: processes and cgroups first, then namespaces.
    cgroups: CgroupTree,
    server: Side,
    client: Side,
}

impl Topology {
    pub fn new() -> Topology {
        require_root();
        let (id, counter) = unique_id();
        let n = (counter % 256) as u8;
        let cgroups = CgroupTree::create(&format!("ttm-test-{id}"), &["server", "client"]);
        let server = Side {
            ns: NetNs::create(&format!("ttm-{id}-srv")),
            cgroup: cgroups.child("server").to_owned(),
        };
        let client = Side {
            ns: NetNs::create(&format!("ttm-{id}-cli")),
            cgroup: cgroups.child("client").to_owned(),
        };
        let topo = Topology {
            id,
            n,
            cgroups,
            server,
            client,
        };
        topo.wire();
        topo
    }

    /// veth pair created directly inside the two namespaces (its names are
    /// never visible in the host namespace), addresses, links up.
    fn wire(&self) {
        let (srv, cli) = (&self.server.ns, &self.client.ns);
        let (vs, vc) = (self.veth_server(), self.veth_client());
        let out = super::run_to_end(
            std::process::Command::new("ip").args([
                "link",
                "add",
                "name",
                &vs,
                "netns",
                srv.name(),
                "type",
                "veth",
                "peer",
                "name",
                &vc,
                "netns",
                cli.name(),
            ]),
            Duration::from_secs(10),
        );
        out.expect_success("ip link add veth pair");
        for (ns, dev, v4, v6) in [
            (srv, &vs, vec![self.server_v4()], vec![self.server_v6()]),
            (
                cli,
                &vc,
                vec![self.client_v4(), self.untrusted_v4()],
                vec![self.client_v6(), self.untrusted_v6()],
            ),
        ] {
            ns.ip(&["link", "set", "lo", "up"]);
            // The first IPv4 address is the primary, i.e. the default source.
            for a in v4 {
                ns.ip(&["addr", "add", &format!("{a}/24"), "dev", dev]);
            }
            for (i, a) in v6.iter().enumerate() {
                // nodad: usable at once instead of after ~1 s of DAD.
                // IPv6 would otherwise pick the newest address as default
                // source; the extra one is deprecated (preferred_lft 0) so
                // it is used only when a client binds it explicitly.
                let mut args = vec!["-6", "addr", "add"];
                let cidr = format!("{a}/64");
                args.extend([cidr.as_str(), "dev", dev, "nodad"]);
                if i > 0 {
                    args.extend(["preferred_lft", "0"]);
                }
                ns.ip(&args);
            }
            ns.ip(&["link", "set", dev, "up"]);
        }
        // The carrier comes up asynchronously once both ends are up.
        for (ns, dev) in [(srv, &vs), (cli, &vc)] {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let state = ns.ip(&["-o", "link", "show", "dev", dev]);
                if state.contains(",LOWER_UP") && state.contains("state UP") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{dev} in {} did not come up: {state}",
                    ns.name()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn n(&self) -> u8 {
        self.n
    }

    pub fn veth_server(&self) -> String {
        format!("s{}", self.id)
    }

    pub fn veth_client(&self) -> String {
        format!("c{}", self.id)
    }

    pub fn server(&self) -> &Side {
        &self.server
    }

    pub fn client(&self) -> &Side {
        &self.client
    }

    pub fn server_cgroup(&self) -> &Path {
        &self.server.cgroup
    }

    pub fn client_cgroup(&self) -> &Path {
        &self.client.cgroup
    }

    /// The topology's own cgroup (parent of `server` and `client`).
    pub fn cgroup_root(&self) -> &Path {
        self.cgroups.root()
    }

    pub fn server_v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.n, 1)
    }

    pub fn client_v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.n, 2)
    }

    pub fn untrusted_v4(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.n, 3)
    }

    fn v6(&self, host: u16) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, 0x7474, self.n.into(), 0, 0, 0, 0, host)
    }

    pub fn server_v6(&self) -> Ipv6Addr {
        self.v6(1)
    }

    pub fn client_v6(&self) -> Ipv6Addr {
        self.v6(2)
    }

    pub fn untrusted_v6(&self) -> Ipv6Addr {
        self.v6(3)
    }

    /// For each family: the server address to connect to, the LB's
    /// (trusted) source, the other (untrusted) source, and how a
    /// dual-stack server shows the untrusted one.
    pub fn trust_cases(&self) -> [(String, String, String, String); 2] {
        [
            (
                self.server_v4().to_string(),
                self.client_v4().to_string(),
                self.untrusted_v4().to_string(),
                format!("::ffff:{}", self.untrusted_v4()),
            ),
            (
                self.server_v6().to_string(),
                self.client_v6().to_string(),
                self.untrusted_v6().to_string(),
                self.untrusted_v6().to_string(),
            ),
        ]
    }

    /// Server address of the family of `like`.
    pub fn server_addr(&self, v6: bool) -> IpAddr {
        if v6 {
            self.server_v6().into()
        } else {
            self.server_v4().into()
        }
    }

    pub fn ids(&self) -> TopologyIds {
        TopologyIds {
            netns: vec![
                self.server.ns.name().to_owned(),
                self.client.ns.name().to_owned(),
            ],
            cgroup_root: self.cgroups.root().to_owned(),
        }
    }

    /// Tears everything down now; Err lists what could not be removed.
    pub fn teardown(&mut self) -> Result<(), String> {
        let mut errors = Vec::new();
        // Kill processes first: a live process would keep its namespace.
        if let Err(e) = self.cgroups.remove() {
            errors.push(e);
        }
        for ns in [&mut self.server.ns, &mut self.client.ns] {
            if let Err(e) = ns.delete() {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

impl Default for Topology {
    fn default() -> Self {
        Topology::new()
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            // A leak is a failure of the test run, but panicking while
            // already unwinding would abort and hide the first failure.
            if std::thread::panicking() {
                eprintln!("harness: topology {} teardown: {e}", self.id);
            } else {
                panic!("topology {} teardown: {e}", self.id);
            }
        }
    }
}
