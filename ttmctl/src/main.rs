//! ttmctl: load, pin, inspect and unload ttm's eBPF kernel side, and
//! emulate a full-NAT load balancer for tests.

mod abi;
mod atomic_file;
mod bpffs;
mod cgroup;
mod counters;
mod detect;
mod doctor;
mod escape;
mod export;
mod format;
mod load;
mod lock;
mod metrics;
mod objects;
mod pinned;
mod pinset;
mod preflight;
mod programs;
mod simulate;
mod status;
mod sys;
mod trust;
mod unload;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/ttm";
pub const DEFAULT_LB_PIN_DIR: &str = "/sys/fs/bpf/ttm-lb";

#[derive(Parser)]
#[command(
    name = "ttmctl",
    version,
    about = "Give servers behind a full-NAT load balancer their real clients, with eBPF instead of a kernel module",
    long_about = "ttmctl loads ttm's eBPF programs: they read the real client a full-NAT LB \
        (Kingsoft TTM, Alibaba/Huawei/DPVS/Tencent TOA) puts in a TCP option of the handshake, \
        answer the vendors' getsockopt ABIs (SOL_IP/1345, IPPROTO_IP/4096), and rewrite \
        accept()/getpeername() in-kernel where the socket's family can hold the client."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Load, attach and pin the kernel side (again: replace it, with no gap)
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
    },
    /// Detach and remove everything `load` pinned
    Unload {
        #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_DIR, value_parser = escape::path_arg)]
        pin_dir: PathBuf,
    },
    /// Whether every program is attached to a live cgroup, the configuration and
    /// counters. Exit code: 0 ok, 1 error, 2 degraded (a program detached, its
    /// cgroup removed), 3 not loaded
    Status {
        #[arg(long, value_name = "DIR", default_value = DEFAULT_PIN_DIR, value_parser = escape::path_arg)]
        pin_dir: PathBuf,
        /// Output format: text, json (schema-versioned, stable field names) or
        /// prometheus (text exposition format, e.g. for node_exporter's textfile collector)
        #[arg(long, value_enum, default_value = "text")]
        format: status::Format,
        /// Same as --format json
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// Write the report to FILE instead of stdout, atomically (temporary file and
        /// rename: a reader never sees half of it)
        #[arg(long, value_name = "FILE", value_parser = escape::path_arg)]
        output: Option<PathBuf>,
    },
    /// Check kernel, cgroup v2, bpffs, privileges and conflicting modules
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
    #[command(subcommand)]
    Simulate(SimCmd),
}

#[derive(Subcommand)]
enum SimCmd {
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

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Load {
            cgroup,
            pin_dir,
            trust,
            formats,
            no_rewrite,
            no_defer_accept,
        } => load::run(load::LoadArgs {
            cgroup,
            pin_dir,
            trust: trust::combine(trust)?,
            formats: if formats.is_empty() {
                format::DEFAULT_MASK
            } else {
                formats.iter().fold(0, |a, b| a | b)
            },
            rewrite: !no_rewrite,
            defer_accept: !no_defer_accept,
        }),
        Cmd::Unload { pin_dir } => unload::run(&pin_dir, "unload"),
        Cmd::Status {
            pin_dir,
            format,
            json,
            output,
        } => {
            let format = if json { status::Format::Json } else { format };
            let code = status::run(&pin_dir, format, output.as_deref())?;
            std::process::exit(code)
        }
        Cmd::Doctor { json } => doctor::run(json),
        Cmd::Detect {
            cgroup,
            pid,
            pin_dir,
            seconds,
            handshakes,
            json,
        } => detect::run(detect::Options {
            cgroup,
            pid,
            pin_dir,
            seconds,
            handshakes,
            json,
        }),
        Cmd::Simulate(SimCmd::Start {
            cgroup,
            pin_dir,
            client,
            format,
            raw,
        }) => {
            let cfg = match client {
                Some(c) => simulate::encode(&c, format.as_deref())?,
                None => simulate::chunks(&raw)?,
            };
            simulate::start(&cgroup, &pin_dir, cfg)
        }
        Cmd::Simulate(SimCmd::Stop { pin_dir }) => unload::run(&pin_dir, "simulate stop"),
        Cmd::Simulate(SimCmd::Status { pin_dir, json }) => simulate::status(&pin_dir, json),
    }
}

/// clap's error text with every value it quotes from the command line
/// escaped (clap strips ANSI sequences, not newlines or lone control
/// bytes), then as any message of ours.
fn clap_error(e: &clap::Error) -> String {
    use clap::error::ContextValue;
    let mut text = e.render().to_string();
    for (_, v) in e.context() {
        let values = match v {
            ContextValue::String(s) => std::slice::from_ref(s),
            ContextValue::Strings(v) => v.as_slice(),
            _ => &[],
        };
        for s in values {
            text = text.replace(s.as_str(), &escape::value(s));
        }
    }
    escape::message(&text)
}

fn main() {
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        // clap's errors quote the offending value as given: escaped like
        // every other message. Help and version go out as clap writes them.
        if !e.use_stderr() {
            e.exit();
        }
        eprint!("{}", clap_error(&e));
        // 1 like every other error: clap's own 2 is what `status` says
        // for "degraded".
        std::process::exit(1);
    });
    if let Err(e) = run(cli) {
        eprintln!("ttmctl: {}", escape::message(&format!("{e:#}")));
        std::process::exit(1);
    }
}
