//! `ttmctl unload` and `ttmctl simulate stop`: remove every pin, which
//! detaches the links and frees the maps once nothing else holds them.

use anyhow::{Result, bail};
use std::fs;
use std::path::Path;

use crate::objects::ATTACHMENTS;
use crate::preflight;

/// Removes links first (so no program runs against half-removed maps),
/// then everything else, then the directory. Best effort: used on error
/// paths too.
pub fn remove_pins(dir: &Path) {
    for name in known_names() {
        let _ = fs::remove_file(dir.join(format!("staged_{name}")));
        let _ = fs::remove_file(dir.join(name));
    }
    let _ = fs::remove_dir(dir);
}

/// Every name ttmctl pins, links first. Only these are ever removed, so a
/// mistyped --pin-dir cannot wipe someone else's pins.
fn known_names() -> impl Iterator<Item = &'static str> {
    use crate::abi::pins;
    ATTACHMENTS.iter().map(|a| a.link_pin).chain([
        pins::LB_LINK,
        pins::CONFIG,
        pins::TRUSTED,
        pins::COUNTERS,
        pins::COUNTERS_OLD,
        pins::PEERS,
        pins::STASH,
        pins::STASH_COOKIE,
        pins::LB_CONFIG,
        pins::LB_COUNTERS,
    ])
}

fn is_ttm_pin_dir(dir: &Path) -> bool {
    known_names().any(|n| dir.join(n).exists())
}

pub fn run(dir: &Path, what: &str) -> Result<()> {
    preflight::require_root(what)?;
    let lock = crate::lock::PinDirLock::existing(dir)?;
    // First: without it libttm.so only looks up more, never trusts a
    // list the kernel no longer applies.
    crate::export::remove(dir);
    let Some(lock) = lock else {
        println!("ttm: nothing loaded at {}", dir.display());
        return Ok(());
    };
    if !crate::bpffs::is_bpffs(dir) {
        bail!(
            "{} is not on a BPF filesystem; refusing to remove it",
            dir.display()
        );
    }
    // A bpffs mount's root is nobody's pin dir, empty or not (a fresh
    // bpffs is empty: the check below would call it ours).
    let mount_root = dir.parent().is_none_or(|p| !crate::bpffs::is_bpffs(p));
    if !mount_root && fs::read_dir(dir).is_ok_and(|mut rd| rd.next().is_none()) {
        // An interrupted first load can leave just the directory.
        let _ = fs::remove_dir(dir);
        println!("ttm: nothing loaded at {}", dir.display());
        return Ok(());
    }
    if !is_ttm_pin_dir(dir) {
        bail!("{} holds no ttm pins; refusing to touch it", dir.display());
    }
    remove_pins(dir);
    // Not `dir.exists()`: a load waiting for the lock makes the path
    // again as soon as it is gone, and this unload did succeed.
    if lock.still_names(dir) {
        let left: Vec<_> = fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        bail!(
            "could not remove {} (still holds: {})",
            dir.display(),
            left.join(", ")
        );
    }
    println!("ttm: unloaded {}", dir.display());
    Ok(())
}
