//! `ttmctl detect`: find the LB's option format. For a while (or a number
//! of handshakes) on the cgroup where the server runs, record the TCP
//! options of the packets that complete handshakes and of the ACKs that
//! reach listeners; report which kinds and lengths arrive, from which
//! sources, how often, what they decode to, and the `--format` and
//! `--trust` to load ttm with. A running `ttmctl load` is not touched:
//! detect's programs are its own, attached beside ttm's, and gone when it
//! exits.

mod decode;
mod report;
mod tally;
mod watch;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::objects::ATTACHMENTS;
use crate::{cgroup, escape, pinned, preflight};

pub struct Options {
    pub cgroup: Option<PathBuf>,
    pub pid: Option<u32>,
    pub pin_dir: PathBuf,
    pub seconds: u64,
    pub handshakes: u64,
    pub json: bool,
}

/// The cgroup to watch: --cgroup as given (the root too, since it was
/// named), else --pid's, else the one ttm is loaded on; never the root
/// unless named, because every connection on the host goes through it.
fn target(o: &Options) -> Result<PathBuf> {
    if let Some(dir) = &o.cgroup {
        let cg = cgroup::resolve(dir)?;
        if cgroup::is_root(&cg)? {
            eprintln!(
                "ttm detect: watching the root cgroup {}: every connection on this host",
                escape::path(&cg)
            );
        }
        return Ok(cg);
    }
    let (cg, whose) = match o.pid {
        Some(pid) => (cgroup::of_pid(pid)?, format!("process {pid}")),
        None => (loaded_on(&o.pin_dir)?, "ttm's".to_string()),
    };
    if cgroup::is_root(&cg)? {
        bail!(
            "{whose} cgroup is the root cgroup ({}), which holds every connection on the host; \
             pass --cgroup {} to watch it anyway, or --cgroup/--pid of the server",
            escape::path(&cg),
            escape::path(&cg)
        );
    }
    Ok(cg)
}

/// The cgroup ttm's parser is attached to at `pin_dir`.
fn loaded_on(pin_dir: &Path) -> Result<PathBuf> {
    let link = pin_dir.join(ATTACHMENTS[0].link_pin);
    if !link.exists() {
        bail!(
            "which cgroup? ttm is not loaded at {} to take it from: pass --cgroup DIR (where \
             the server runs, e.g. /sys/fs/cgroup/system.slice/nginx.service) or --pid PID \
             (of the server)",
            escape::path(pin_dir)
        );
    }
    pinned::link(&link)?.cgroup.with_context(|| {
        format!(
            "ttm at {} is attached to a cgroup that was removed; pass --cgroup or --pid",
            escape::path(pin_dir)
        )
    })
}

pub fn run(o: Options) -> Result<()> {
    preflight::require_root("detect")?;
    preflight::require_kernel()?;
    let cg = target(&o)?;
    let mut tally = tally::Tally::default();
    let limits = watch::Limits {
        time: Duration::from_secs(o.seconds),
        handshakes: o.handshakes,
    };
    let watched = watch::watch(&cg, &limits, &mut |ev| tally.add(&ev))?;
    let v = report::build(&cg, &watched, &tally);
    if o.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", report::text(&v));
    }
    Ok(())
}
