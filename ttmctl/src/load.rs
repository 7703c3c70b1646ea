//! `ttmctl load`: load, configure, attach and pin the kernel side.

use anyhow::{Context, Result, bail};
use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, Map};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use crate::abi::{self, TtmConfig, pins};
use crate::cidr::Cidr;
use crate::objects::{ATTACHMENTS, TTM};
use crate::pinset::PinSet;
use crate::{bpffs, cgroup, preflight, programs};

pub struct LoadArgs {
    pub cgroup: Option<PathBuf>,
    pub pin_dir: PathBuf,
    pub trust: Vec<Cidr>,
    pub formats: u32,
    pub rewrite: bool,
}

/// The fd of a map aya created, whatever its type.
pub fn map_fd<'a>(ebpf: &'a aya::Ebpf, name: &str) -> Result<BorrowedFd<'a>> {
    let map = ebpf
        .map(name)
        .with_context(|| format!("map {name} missing"))?;
    let data = match map {
        Map::Array(d) | Map::PerCpuArray(d) | Map::LpmTrie(d) | Map::Unsupported(d) => d,
        _ => bail!("map {name} has an unexpected type"),
    };
    Ok(data.fd().as_fd())
}

pub fn run(args: LoadArgs) -> Result<()> {
    preflight::require_root("load")?;
    preflight::require_kernel()?;
    let cg = match &args.cgroup {
        Some(dir) => cgroup::resolve(dir)?,
        None => cgroup::cgroup2_mount()?,
    };
    let dir = bpffs::create_pin_dir(&args.pin_dir)?;
    let reload = dir.join(ATTACHMENTS[0].link_pin).exists();

    let result = load_into(&args, &cg, &dir);
    if result.is_err() && !reload {
        // Nothing was running before: leave nothing behind either.
        crate::unload::remove_pins(&dir);
    }
    result?;
    println!(
        "ttm: {} at {} (pins in {}), formats {}, {}{}",
        if reload { "reloaded" } else { "loaded" },
        cg.display(),
        dir.display(),
        crate::format::names(args.formats).join(" "),
        if args.rewrite {
            "getpeername/accept rewritten in-kernel"
        } else {
            "getsockopt/map only"
        },
        if args.trust.is_empty() {
            String::new()
        } else {
            format!(
                ", options trusted only from {}",
                args.trust
                    .iter()
                    .map(Cidr::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
    );
    Ok(())
}

fn load_into(args: &LoadArgs, cg: &Path, dir: &Path) -> Result<()> {
    // The peer map is pinned by name: a reload reuses it, so connections
    // accepted before the reload keep their answers.
    let mut ebpf = programs::open(TTM, Some(dir))?;
    bpffs::chmod(&dir.join(pins::PEERS), 0o644)?;

    let mut flags = 0;
    if !args.trust.is_empty() {
        flags |= abi::CFG_TRUST_ENFORCED;
    }
    if args.rewrite {
        flags |= abi::CFG_REWRITE;
    }
    {
        let map = ebpf.map_mut(pins::CONFIG).context("config map missing")?;
        let mut config: Array<_, TtmConfig> = Array::try_from(map)?;
        let value = TtmConfig {
            formats: args.formats,
            flags,
            abi_version: abi::TTM_ABI_VERSION,
            reserved: 0,
        };
        config.set(0, value, 0).context("writing ttm_config")?;
    }
    {
        let map = ebpf.map_mut(pins::TRUSTED).context("trusted map missing")?;
        let mut trie: LpmTrie<_, [u8; 16], u8> = LpmTrie::try_from(map)?;
        for c in &args.trust {
            let (len, bytes) = c.key();
            trie.insert(&Key::new(len, bytes), 1, 0)
                .with_context(|| format!("adding trusted prefix {c}"))?;
        }
    }

    let cgroup_file = File::open(cg).with_context(|| format!("opening cgroup {}", cg.display()))?;
    let wanted: Vec<_> = ATTACHMENTS
        .iter()
        .filter(|a| args.rewrite || !a.rewrite)
        .collect();
    let (major, minor, _) = preflight::kernel_version();
    for a in &wanted {
        programs::load(&mut ebpf, a.program_for((major, minor)))?;
    }
    // Attach everything before any old link goes: from here until commit
    // both sets run, and they store and answer the same thing.
    let mut links = Vec::new();
    for a in &wanted {
        links.push((
            a,
            programs::attach(&ebpf, a.program, &cgroup_file, a.attach_type)?,
        ));
    }

    let mut set = PinSet::new(dir);
    set.stage(map_fd(&ebpf, pins::CONFIG)?, pins::CONFIG, 0o600)?;
    set.stage(map_fd(&ebpf, pins::TRUSTED)?, pins::TRUSTED, 0o600)?;
    set.stage(map_fd(&ebpf, pins::COUNTERS)?, pins::COUNTERS, 0o600)?;
    for (a, fd) in &links {
        set.stage(fd.as_fd(), a.link_pin, 0o600)?;
    }
    set.commit()?;

    // A reload with --no-rewrite drops the rewrite links the old set had.
    for a in ATTACHMENTS.iter().filter(|a| a.rewrite && !args.rewrite) {
        let _ = std::fs::remove_file(dir.join(a.link_pin));
    }
    Ok(())
}
