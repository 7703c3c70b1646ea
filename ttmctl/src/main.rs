//! ttmctl: load, pin, inspect and unload ttm's eBPF kernel side, and
//! emulate a full-NAT load balancer for tests.

mod abi;
mod bpffs;
mod cgroup;
mod cidr;
mod cli;
mod doctor;
mod format;
mod load;
mod objects;
mod pinned;
mod pinset;
mod preflight;
mod programs;
mod simulate;
mod status;
mod sys;
mod unload;

use anyhow::Result;
use clap::Parser;

use cli::{Cli, Cmd, SimCmd};

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
        } => load::run(load::LoadArgs {
            cgroup,
            pin_dir,
            trust,
            formats: if formats.is_empty() {
                format::DEFAULT_MASK
            } else {
                formats.iter().fold(0, |a, b| a | b)
            },
            rewrite: !no_rewrite,
            defer_accept: !no_defer_accept,
        }),
        Cmd::Unload { pin_dir } => unload::run(&pin_dir, "unload"),
        Cmd::Status { pin_dir, json } => status::run(&pin_dir, json),
        Cmd::Doctor { json } => doctor::run(json),
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

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("ttmctl: {e:#}");
        std::process::exit(1);
    }
}
