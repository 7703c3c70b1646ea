//! ttmctl's command line, in one place: main.rs parses it, and build.rs
//! (which includes this file) renders the man pages and the shell
//! completions from it, so they cannot drift from what ttmctl accepts.
//! The value parsers are named by module (`escape::`, `format::`,
//! `simulate::`, `trust::`): build.rs provides those names too.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

use crate::{escape, format, simulate, trust};

pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/ttm";
pub const DEFAULT_LB_PIN_DIR: &str = "/sys/fs/bpf/ttm-lb";

#[derive(Parser)]
#[command(
    name = "ttmctl",
    version = crate::VERSION,
    after_long_help = MANUAL,
    about = "Give servers behind a full-NAT load balancer their real clients, with eBPF instead of a kernel module",
    long_about = "ttmctl loads ttm's eBPF programs: they read the real client a full-NAT LB \
        (Kingsoft TTM, Alibaba/Huawei/DPVS/Tencent TOA) puts in a TCP option of the handshake, \
        answer the vendors' getsockopt ABIs (SOL_IP/1345, IPPROTO_IP/4096), and rewrite \
        accept()/getpeername() in-kernel where the socket's family can hold the client."
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Load, attach and pin the kernel side (again: replace it, with no gap)
    ///
    /// Loads the programs, attaches them to the cgroup v2 directory --cgroup (default: the
    /// cgroup2 root found in /proc/mounts, i.e. every socket on the host) and pins their links
    /// and maps under --pin-dir (bpffs is mounted on /sys/fs/bpf if missing). Loading again
    /// replaces the running set with no gap: the new programs are attached before the old
    /// links are unpinned, and the peer map is reused, so open connections keep their answers.
    ///
    /// The peer map <pin-dir>/ttm_peers is readable by everyone, so an unprivileged server
    /// (and libttm(7)) can look its sockets up by fd; so are the configuration and the
    /// counters, which loading again keeps. Without --trust any client that reaches the server
    /// directly can claim any address: load says so in a warning, and so does status.
    ///
    /// Load warns too when --cgroup is a unit's own cgroup (a name ending in .service or
    /// .scope, such as system.slice/nginx.service): systemd removes it when the unit stops or
    /// restarts, the programs attached to it go with it and status exits 2. Attach to a parent
    /// that stays, such as system.slice, which serves every unit below it.
    Load {
        /// cgroup v2 directory whose sockets are served [default: the cgroup2 root]
        #[arg(long, value_name = "DIR", value_parser = escape::path_arg)]
        cgroup: Option<PathBuf>,
        /// bpffs directory for pins; the peer map is <DIR>/ttm_peers
        #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_DIR, value_parser = escape::path_arg)]
        pin_dir: PathBuf,
        /// Honour options only from these LB source prefixes: CIDRs separated by commas
        /// and/or spaces (repeatable; IPv4 or IPv6), or `any` to honour every source.
        /// An IPv6 prefix covers IPv4 sources only when written inside ::ffff:0:0/96
        #[arg(long = "trust", value_name = "LIST", value_parser = trust::TrustArg::parse)]
        trust: Vec<trust::TrustArg>,
        /// Option format to parse, as KIND/LEN: 254/8 254/20 253/20 253/8 200/8 (repeatable)
        /// [default: 254/8 254/20 253/20]
        #[arg(long = "format", value_name = "KIND/LEN", value_parser = format::parse)]
        formats: Vec<u32>,
        /// Do not rewrite accept()/getpeername() in-kernel; answer getsockopt and the map only
        #[arg(long)]
        no_rewrite: bool,
        /// Skip the cgroup_skb program that reads the handshake packets the parser
        /// cannot see, and runs for every packet the cgroup's sockets receive: the
        /// third ACK that listeners with TCP_DEFER_ACCEPT (httpd's default
        /// AcceptFilter, nginx `deferred`, HAProxy `defer-accept`) or with a full
        /// accept queue drop, and the ACK of a TCP Fast Open handshake. Those
        /// connections then see the LB's address
        #[arg(long)]
        no_defer_accept: bool,
        /// Load the getsockopt program kernels without bpf_set_retval (5.10-5.17) get,
        /// on any kernel: getsockopt 4096 then leaves the kernel's ENOPROTOOPT where it
        /// would return EINVAL or ENOTCONN (to test the path older kernels take)
        #[arg(long)]
        getsockopt_compat: bool,
    },
    /// Detach and remove everything `load` pinned
    ///
    /// Removes every pin ttmctl made in --pin-dir, which detaches every program. Nothing else
    /// is left attached or pinned.
    Unload {
        #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_DIR, value_parser = escape::path_arg)]
        pin_dir: PathBuf,
    },
    /// Whether every program is attached to a live cgroup, the configuration and
    /// counters. Exit code: 0 ok, 1 error, 2 degraded (a program detached, its
    /// cgroup removed), 3 not loaded
    ///
    /// For each program, whether it is attached and to which cgroup, or that its cgroup was
    /// removed; the configuration; warnings (no --trust; a unit's own cgroup); and a counter for
    /// every outcome: found_v4 found_v6 no_option malformed bad_address untrusted no_packet
    /// storage_failed getsockopt_ttm getsockopt_nat64 getsockopt_error rewrite4 rewrite6, for
    /// dropped third ACKs stashed stash_refused stash_failed from_stash stash_stale
    /// stash_unmatched stash_cookie, and for TCP Fast Open fastopen fastopen_claim. Counters are
    /// kept across loads.
    ///
    /// The exit status is the verdict: 0 loaded and every program attached to a live cgroup,
    /// 1 error (state unreadable, bad arguments), 2 degraded (a program detached or its cgroup
    /// removed; load again re-attaches), 3 not loaded.
    ///
    /// --format json (or --json) gives the same with stable field names and "schema": 1, in one
    /// shape whether loaded or not; --format prometheus gives Prometheus text format
    /// (ttm_loaded, ttm_degraded, ttm_status_error, ttm_trust_enforced, ttm_trust_warning,
    /// ttm_program_attached, ttm_events_total, ttm_program_runs_total,
    /// ttm_program_run_seconds_total). --output FILE writes the report there atomically
    /// (temporary file and rename), e.g. for node_exporter's textfile collector. Without root,
    /// status reads the configuration and counters (Linux 5.19 or later) but not the links, and
    /// exits 1 saying so.
    Status {
        #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_DIR, value_parser = escape::path_arg)]
        pin_dir: PathBuf,
        /// Output format: text, json (schema-versioned, stable field names) or
        /// prometheus (text exposition format, e.g. for node_exporter's textfile collector)
        #[arg(long, value_enum, default_value = "text")]
        format: StatusFormat,
        /// Same as --format json
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// Write the report to FILE instead of stdout, atomically (temporary file and
        /// rename: a reader never sees half of it)
        #[arg(long, value_name = "FILE", value_parser = escape::path_arg)]
        output: Option<PathBuf>,
    },
    /// Check kernel, cgroup v2, bpffs, privileges and conflicting modules
    ///
    /// Checks the kernel version, BTF, cgroup v2, bpffs, privileges,
    /// kernel.unprivileged_bpf_disabled, a vendor TOA/TTM module already loaded (conflict on
    /// optname 1345), and runs the verifier on every program; each problem comes with what to
    /// do about it.
    Doctor {
        #[arg(long)]
        json: bool,
    },
    /// Find the LB's option format: watch the handshakes of a server's cgroup and
    /// report the TCP options they carry, from where, and the --format and --trust
    /// to load with. Attaches programs of its own beside a running `load`, gone on exit
    Detect {
        /// cgroup v2 directory where the server runs [default: --pid's cgroup, else the
        /// one ttm is loaded on]; the root cgroup is watched only when named here
        #[arg(long, value_name = "DIR", value_parser = escape::path_arg, conflicts_with = "pid")]
        cgroup: Option<PathBuf>,
        /// Watch the cgroup of this process, e.g. $(pidof -s nginx)
        #[arg(long, value_name = "PID")]
        pid: Option<u32>,
        /// Where ttm is loaded; its cgroup is watched when neither --cgroup nor --pid is given
        #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_DIR, value_parser = escape::path_arg)]
        pin_dir: PathBuf,
        /// Stop after N seconds
        #[arg(long, value_name = "N", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86400))]
        seconds: u64,
        /// Stop after M completed handshakes
        #[arg(long, value_name = "M", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
        handshakes: u64,
        /// Machine-readable report (stable field names)
        #[arg(long)]
        json: bool,
    },
    /// Emulate a full-NAT LB: put a TCP option into the third ACK of
    /// connections made from a cgroup
    ///
    /// A load balancer in a box, for tests: attached to a cgroup of client processes (never
    /// the root cgroup), it writes an option into the third ACK of every connection they make.
    #[command(subcommand)]
    Simulate(SimCmd),
}

#[derive(Subcommand)]
pub enum SimCmd {
    /// Attach the emulator to a client cgroup (again: change the option in place)
    Start {
        /// cgroup v2 directory of the client processes (never the root)
        #[arg(long, value_name = "DIR", value_parser = escape::path_arg)]
        cgroup: PathBuf,
        #[arg(long, value_name = "DIR", default_value = DEFAULT_LB_PIN_DIR, value_parser = escape::path_arg)]
        pin_dir: PathBuf,
        /// Claimed client: IP:PORT, [IPv6]:PORT, or IP (port = each connection's own source port)
        #[arg(long, value_name = "ADDR", value_parser = simulate::Claim::parse, required_unless_present = "raw", conflicts_with = "raw")]
        client: Option<simulate::Claim>,
        /// Option format for --client as KIND/LEN [default: 254/8 for IPv4, 254/20 for IPv6]
        #[arg(long, value_name = "KIND/LEN", requires = "client")]
        format: Option<String>,
        /// Raw option bytes in hex (kind, length byte, data), written exactly as given
        /// (then NOP-padded to 4 bytes); repeat up to 4 times. A last chunk of a lone
        /// kind byte (`c9`) or length byte 1 (`c801`) builds a malformed list
        #[arg(long, value_name = "HEX", value_parser = simulate::parse_hex)]
        raw: Vec<Vec<u8>>,
    },
    /// Detach the emulator and remove its pins
    Stop {
        #[arg(long, value_name = "DIR", default_value = DEFAULT_LB_PIN_DIR, value_parser = escape::path_arg)]
        pin_dir: PathBuf,
    },
    /// What the emulator is writing and has written
    Status {
        #[arg(long, value_name = "DIR", default_value = DEFAULT_LB_PIN_DIR, value_parser = escape::path_arg)]
        pin_dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

/// `ttmctl status --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    Text,
    Json,
    /// Prometheus text exposition format (node_exporter textfile collector)
    Prometheus,
}

/// The rest of `ttmctl --help` and of ttmctl(8): build.rs turns each
/// "Heading:" line into a man page section and indented lines into
/// literal blocks.
pub const MANUAL: &str = "\
The systemd service:
ttm.service runs `ttmctl load` at boot with the options of /etc/ttm/ttm.conf, and `ttmctl \
unload` when stopped; `systemctl reload ttm` loads again with no gap. It is not enabled on \
installation, and refuses to start while TRUST is empty: set it first, then `systemctl \
enable --now ttm`. It starts ttm-check.timer, which every 30 s runs `ttm-service check`: \
`ttmctl status --format prometheus` into METRICS_FILE, and `ttmctl load` again when status \
says degraded. The variables of /etc/ttm/ttm.conf map to options: TRUST (CIDRs separated by \
spaces and/or commas, given to --trust as one list; required; `any` trusts every source), \
FORMATS (space-separated KIND/LEN, one --format each), CGROUP (--cgroup, absolute or \
relative to the cgroup2 mount; pick one that outlives your servers, such as system.slice), \
REWRITE=no (--no-rewrite), DEFER_ACCEPT=no (--no-defer-accept), PIN_DIR (--pin-dir, below \
/sys/fs/bpf), and METRICS_FILE, where ttm-check writes the metrics when its directory exists \
(default /var/lib/prometheus/node-exporter/ttm.prom). `/usr/libexec/ttm/ttm-service args` \
prints the command line the service runs. Removing the package stops the service and \
unloads PIN_DIR.

Exit status:
0 on success; 1 with one line on standard error saying what failed, bad arguments included. \
status exits 0 ok, 1 error, 2 degraded, 3 not loaded.

Files:
/sys/fs/bpf/ttm/ is the default pin directory; the peer map is ttm_peers. \
/run/ttm/ttm.json is the trust list of the kit pinned at /sys/fs/bpf/ttm, for libttm(7): \
written by load, removed by unload, one file per pin directory named after it \
(TTM_RUN_DIR moves it). /etc/ttm/ttm.conf holds the options of ttm.service, the unit is \
/usr/lib/systemd/system/ttm.service (/lib/systemd/system on Debian 12), beside \
ttm-check.service and ttm-check.timer. /var/lib/prometheus/node-exporter/ttm.prom is where \
ttm-check writes the metrics (METRICS_FILE).

Examples:
Attach to the sockets of system services only, trusting the LB subnet:
    ttmctl load --cgroup /sys/fs/cgroup/system.slice --trust 10.0.0.0/24
    ttmctl status
Check a server without an LB: clients started in /sys/fs/cgroup/lbtest claim to be \
203.0.113.7:4242:
    mkdir /sys/fs/cgroup/lbtest
    ttmctl simulate start --cgroup /sys/fs/cgroup/lbtest --client 203.0.113.7:4242
    sh -c 'echo $$ > /sys/fs/cgroup/lbtest/cgroup.procs; exec curl http://10.0.0.5/'
    ttmctl simulate stop

See also:
libttm(7), systemctl(1), bpftool(8), getsockopt(2)";

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// ttmctl-status(8) lists the counters by name: one added to the
    /// kernel side must be added to the page too.
    #[test]
    fn status_help_names_every_counter() {
        let cmd = Cli::command();
        let status = cmd.find_subcommand("status").expect("a status command");
        let text = status
            .get_long_about()
            .expect("status has a long help")
            .to_string();
        let words: Vec<&str> = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .collect();
        for name in crate::abi::COUNTERS {
            assert!(
                words.contains(name),
                "ttmctl status --help does not name {name}"
            );
        }
    }
}
