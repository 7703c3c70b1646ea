//! `ttmctl load`: load, configure, attach and pin the kernel side.

use anyhow::{Context, Result, bail};
use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, Map};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use crate::abi::{self, TtmConfig, pins};
use crate::features::{self, Feature};
use crate::objects::{ATTACHMENTS, Attachment, Part, TTM};
use crate::pinset::PinSet;
use crate::trust::Trust;
use crate::{bpffs, cgroup, counters, preflight, programs};

pub struct LoadArgs {
    pub cgroup: Option<PathBuf>,
    pub pin_dir: PathBuf,
    pub trust: Trust,
    pub formats: u32,
    pub rewrite: bool,
    pub defer_accept: bool,
    /// Load ttm_getsockopt_compat (no bpf_set_retval) even where the
    /// kernel has what ttm_getsockopt needs: the path 5.10-5.17 take.
    pub getsockopt_compat: bool,
}

/// What the kernel turned out to offer, decided while loading.
#[derive(Default)]
struct Outcome {
    /// `ttm_config.missing` bits.
    missing: u32,
    /// ttm_getsockopt_compat is the getsockopt program.
    getsockopt_compat: bool,
}

impl LoadArgs {
    /// Whether the programs of `part` are to be attached.
    fn wants(&self, part: Part) -> bool {
        match part {
            Part::Core => true,
            Part::Rewrite => self.rewrite,
            Part::DeferAccept => self.defer_accept,
        }
    }
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

/// Says on stderr what this kernel lacks and what that costs, and why ttm
/// concluded so.
fn warn_lacking(f: &Feature, why: &str) {
    eprintln!("ttm: warning: {} ({why}); see `ttmctl doctor`", f.lacking());
}

/// Unprivileged servers' map reads: nothing to try as root, so by version.
fn unprivileged_read_outcome() -> u32 {
    let (major, minor, _) = preflight::kernel_version();
    let sysctl = std::fs::read_to_string(preflight::UNPRIVILEGED_BPF_DISABLED).unwrap_or_default();
    if features::unprivileged_read_missing((major, minor), &sysctl) {
        warn_lacking(
            features::UNPRIV_READ,
            &format!("kernel.unprivileged_bpf_disabled = {}", sysctl.trim()),
        );
        abi::MISSING_UNPRIV_READ
    } else {
        0
    }
}

pub fn run(mut args: LoadArgs) -> Result<()> {
    preflight::require_root("load")?;
    preflight::require_kernel()?;
    let cg = match &args.cgroup {
        Some(dir) => cgroup::resolve(dir)?,
        None => cgroup::cgroup2_mount()?,
    };
    if let Some(unit) = cgroup::removed_on_restart(&cg) {
        eprintln!(
            "ttm: warning: {} is the cgroup of {unit}: systemd removes it when {unit} stops or \
             restarts, and the programs attached to it go with it (`ttmctl status` then exits 2). \
             Attach to a parent that stays, such as {}, which serves every unit below it",
            crate::escape::path(&cg),
            crate::escape::path(cg.parent().unwrap_or(&cg))
        );
    }
    let (dir, _lock) = crate::lock::PinDirLock::create(&args.pin_dir)?;
    if dir.join(pins::LB_LINK).exists() {
        bail!(
            "pin dir {} holds the LB emulator (ttmctl simulate); give ttm a directory of its own",
            crate::escape::path(&dir)
        );
    }
    let reload = dir.join(ATTACHMENTS[0].link_pin).exists();

    // What the kernel lacks, said once the command line has been accepted
    // (a wrong path gets its one sentence, not warnings before it).
    let mut outcome = Outcome {
        missing: unprivileged_read_outcome(),
        ..Outcome::default()
    };
    if args.defer_accept && !preflight::kernel_btf() {
        // The rest works without it; say what is missing rather than fail.
        warn_lacking(
            features::DEFER_ACCEPT,
            &format!("no kernel BTF at {}", preflight::KERNEL_BTF),
        );
        args.defer_accept = false;
        outcome.missing |= abi::MISSING_DEFER_ACCEPT;
    }

    let set_aside = counters::set_aside_incompatible(&dir)?;
    let result = load_into(&mut args, &mut outcome, &cg, &dir);
    match (set_aside, &result) {
        (Some(old), Ok(())) => old.carry_over(),
        (Some(old), Err(_)) => old.put_back(),
        (None, _) => {}
    }
    if result.is_err() && !reload {
        // Nothing was running before: leave nothing behind either.
        crate::unload::remove_pins(&dir);
    }
    result?;
    crate::export::write_or_warn(&dir, &args.trust);
    if args.trust == Trust::Unset {
        eprintln!("ttm: warning: {}", crate::trust::UNSET_WARNING);
    }
    println!(
        "ttm: {} at {} (pins in {}), formats {}, {}{}{}{}",
        if reload { "reloaded" } else { "loaded" },
        cg.display(),
        dir.display(),
        crate::format::names(args.formats).join(" "),
        if args.rewrite {
            "getpeername/accept rewritten in-kernel"
        } else {
            "getsockopt/map only"
        },
        if args.defer_accept {
            ""
        } else {
            ", TCP_DEFER_ACCEPT listeners not served"
        },
        if outcome.getsockopt_compat {
            ", getsockopt 4096 without error returns (ttm_getsockopt_compat)"
        } else {
            ""
        },
        match &args.trust {
            Trust::Only(list) => format!(
                ", options trusted only from {}",
                list.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            Trust::Any => ", options trusted from any source (--trust any)".into(),
            Trust::Unset => String::new(),
        }
    );
    Ok(())
}

/// Loads the getsockopt program: ttm_getsockopt, or its fallback when
/// asked to or when the verifier shows the kernel lacks bpf_set_retval.
/// Any other refusal is an error, not a missing feature. ttm_getsockopt is
/// tried even when the fallback is forced, so that `status` names what the
/// kernel lacks whichever program was asked for (as `doctor` does); loaded
/// and not attached, it goes with this process.
fn load_getsockopt(ebpf: &mut aya::Ebpf, forced: bool, outcome: &mut Outcome) -> Result<()> {
    let a = crate::objects::getsockopt();
    let fallback = a
        .fallback
        .context("the getsockopt program has no fallback")?;
    match programs::load(ebpf, a.program) {
        Ok(()) if !forced => return Ok(()),
        Ok(()) => {}
        Err(e) => {
            let e = format!("{e:#}");
            if features::is_missing_set_retval(&e) {
                warn_lacking(
                    features::SET_RETVAL,
                    "the verifier does not know bpf_set_retval",
                );
                outcome.missing |= abi::MISSING_SET_RETVAL;
            } else if !forced {
                bail!("{e}");
            }
        }
    }
    programs::load(ebpf, fallback)?;
    outcome.getsockopt_compat = true;
    Ok(())
}

/// The program `load_into` loaded for `a`.
fn loaded_program(a: &Attachment, outcome: &Outcome) -> &'static str {
    match a.fallback {
        Some(f) if outcome.getsockopt_compat => f,
        _ => a.program,
    }
}

fn load_into(args: &mut LoadArgs, outcome: &mut Outcome, cg: &Path, dir: &Path) -> Result<()> {
    // The peer map is pinned by name: a reload reuses it, so connections
    // accepted before the reload keep their answers. So are the counters,
    // which a reload thus keeps; readable by all for `ttmctl status`.
    let mut ebpf = programs::open(TTM, Some(dir))?;
    bpffs::chmod(&dir.join(pins::PEERS), 0o644)?;
    bpffs::chmod(&dir.join(pins::COUNTERS), 0o644)?;

    if args.defer_accept {
        // Optional: a kernel that refuses it still gets everything else.
        let a = ATTACHMENTS
            .iter()
            .find(|a| a.part == Part::DeferAccept)
            .context("no TCP_DEFER_ACCEPT program")?;
        if let Err(e) = programs::load(&mut ebpf, a.program) {
            warn_lacking(features::DEFER_ACCEPT, &format!("{e:#}"));
            args.defer_accept = false;
            outcome.missing |= abi::MISSING_DEFER_ACCEPT;
        }
    }
    let args = &*args;
    let wanted: Vec<_> = ATTACHMENTS.iter().filter(|a| args.wants(a.part)).collect();
    for a in wanted.iter().filter(|a| a.part != Part::DeferAccept) {
        if a.fallback.is_some() {
            load_getsockopt(&mut ebpf, args.getsockopt_compat, outcome)?;
        } else {
            programs::load(&mut ebpf, a.program)?;
        }
    }

    let mut flags = 0;
    if args.trust.enforced() {
        flags |= abi::CFG_TRUST_ENFORCED;
    }
    if args.trust == Trust::Any {
        flags |= abi::CFG_TRUST_ANY;
    }
    if args.rewrite {
        flags |= abi::CFG_REWRITE;
    }
    if args.defer_accept {
        flags |= abi::CFG_DEFER_ACCEPT;
    }
    if outcome.getsockopt_compat {
        flags |= abi::CFG_GETSOCKOPT_COMPAT;
    }
    {
        let map = ebpf.map_mut(pins::CONFIG).context("config map missing")?;
        let mut config: Array<_, TtmConfig> = Array::try_from(map)?;
        let value = TtmConfig {
            formats: args.formats,
            flags,
            abi_version: abi::TTM_ABI_VERSION,
            missing: outcome.missing,
        };
        config.set(0, value, 0).context("writing ttm_config")?;
    }
    {
        let map = ebpf.map_mut(pins::TRUSTED).context("trusted map missing")?;
        let mut trie: LpmTrie<_, [u8; 16], u8> = LpmTrie::try_from(map)?;
        // Value 0 marks a prefix as not trusted (the IPv4 space under a
        // covering IPv6 prefix); the programs check for 1.
        for (c, value) in ttm_cidr::trie_entries(args.trust.prefixes()) {
            let (len, bytes) = c.trie_key();
            trie.insert(&Key::new(len, bytes), value, 0)
                .with_context(|| format!("adding trusted prefix {c}"))?;
        }
    }

    let cgroup_file = File::open(cg).with_context(|| format!("opening cgroup {}", cg.display()))?;
    // Attach everything before any old link goes: from here until commit
    // both sets run, and they store and answer the same thing.
    let mut links = Vec::new();
    for a in &wanted {
        let program = loaded_program(a, outcome);
        links.push((
            a,
            programs::attach(&ebpf, program, &cgroup_file, a.attach_type)?,
        ));
    }

    let mut set = PinSet::new(dir);
    // Readable by all, like the counters: `ttmctl status` without root.
    // Links stay 0600 (whoever can open one can detach it).
    set.stage(map_fd(&ebpf, pins::CONFIG)?, pins::CONFIG, 0o644)?;
    set.stage(map_fd(&ebpf, pins::TRUSTED)?, pins::TRUSTED, 0o644)?;
    for (a, fd) in &links {
        set.stage(fd.as_fd(), a.link_pin, 0o600)?;
    }
    set.commit()?;

    // A reload with --no-rewrite or --no-defer-accept drops those links
    // of the old set.
    for a in ATTACHMENTS.iter().filter(|a| !args.wants(a.part)) {
        let _ = std::fs::remove_file(dir.join(a.link_pin));
    }
    Ok(())
}
