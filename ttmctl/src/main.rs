//! ttmctl: load, pin, inspect and unload ttm's eBPF kernel side, and
//! emulate a full-NAT load balancer for tests.

mod abi;
mod atomic_file;
mod bpffs;
mod cgroup;
mod cli;
mod counters;
mod detect;
mod doctor;
mod escape;
mod export;
mod features;
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
use clap::Parser;

use cli::{Cli, Cmd, SimCmd};
// simulate.rs names it in a message.
pub use cli::DEFAULT_LB_PIN_DIR;

/// `ttmctl --version`: the release, the commit it was built from and the
/// SHA-256 of the embedded eBPF object, which tells two builds of the same
/// version apart (build.rs sets both).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("TTM_GIT_COMMIT"),
    ", bpf sha256 ",
    env!("TTM_BPF_SHA256"),
    ")"
);

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Load {
            cgroup,
            pin_dir,
            trust,
            formats,
            no_rewrite,
            no_defer_accept,
            getsockopt_compat,
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
            getsockopt_compat,
        }),
        Cmd::Unload { pin_dir } => unload::run(&pin_dir, "unload"),
        Cmd::Status {
            pin_dir,
            format,
            json,
            output,
        } => {
            let format = if json {
                cli::StatusFormat::Json
            } else {
                format
            };
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
    preflight::raise_memlock_limit();
    if let Err(e) = run(cli) {
        eprintln!("ttmctl: {}", escape::message(&format!("{e:#}")));
        std::process::exit(1);
    }
}
