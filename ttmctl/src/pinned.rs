//! Reading what a pin directory holds, after the ttmctl that loaded it
//! has exited: the maps' contents and the links' programs and cgroups.

use anyhow::{Context, Result};
use aya::Pod;
use aya::maps::lpm_trie::LpmTrie;
use aya::maps::{Array, Map, MapData, PerCpuArray};
use std::path::{Path, PathBuf};

use crate::{cgroup, sys};
use ttm_cidr::Cidr;

fn open(dir: &Path, name: &str) -> Result<MapData> {
    let p = dir.join(name);
    MapData::from_pin(&p).with_context(|| format!("opening pinned map {}", p.display()))
}

/// Opens a pinned map read-only: all a reader needs, and all an
/// unprivileged user may do with the pins ttmctl makes world-readable.
pub fn open_readonly(path: &Path) -> Result<MapData> {
    let fd = sys::obj_get(path, sys::BPF_F_RDONLY).map_err(|e| unreadable(path, e))?;
    MapData::from_fd(fd).with_context(|| format!("reading pinned map {}", path.display()))
}

/// Why a pin could not be opened, in words an operator can act on: the
/// two refusals an unprivileged reader meets are not the same problem.
pub fn unreadable(path: &Path, e: std::io::Error) -> anyhow::Error {
    match e.raw_os_error() {
        Some(libc::EACCES) => anyhow::anyhow!(
            "{}: permission denied: the pin is not readable by this user (pins made by \
             an older ttmctl are 0600: `ttmctl load` again makes the maps world-readable), \
             or run as root",
            path.display()
        ),
        Some(libc::EPERM) => {
            let (major, minor, release) = crate::preflight::kernel_version();
            let disabled = std::fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "?".into());
            anyhow::anyhow!(
                "{}: the kernel refuses bpf(2) to this user ({}); run as root",
                path.display(),
                unprivileged_refusal((major, minor), &release, &disabled)
            )
        }
        _ => anyhow::anyhow!("{}: {e}", path.display()),
    }
}

/// The reason behind EPERM from BPF_OBJ_GET for an unprivileged caller.
fn unprivileged_refusal(kernel: (u32, u32), release: &str, disabled: &str) -> String {
    if kernel < (5, 19) && disabled != "0" {
        format!(
            "Linux {release} < 5.19 refuses every bpf(2) command to users without CAP_BPF \
             while kernel.unprivileged_bpf_disabled={disabled}"
        )
    } else {
        format!(
            "Linux {release}, kernel.unprivileged_bpf_disabled={disabled}: an LSM or missing capability"
        )
    }
}

/// Entry 0 of a pinned one-entry array.
pub fn array_value<V: Pod>(dir: &Path, name: &str) -> Result<V> {
    let arr: Array<MapData, V> = Array::try_from(Map::Array(open_readonly(&dir.join(name))?))?;
    Ok(arr.get(&0, 0)?)
}

/// Replaces entry 0 of a pinned one-entry array.
pub fn set_array_value<V: Pod>(dir: &Path, name: &str, value: V) -> Result<()> {
    let mut arr: Array<MapData, V> = Array::try_from(Map::Array(open(dir, name)?))?;
    arr.set(0, value, 0)?;
    Ok(())
}

/// Every slot of a pinned per-CPU u64 array, summed over CPUs.
pub fn counters(dir: &Path, name: &str, n: usize) -> Result<Vec<u64>> {
    counters_of(open_readonly(&dir.join(name))?, n)
}

/// The first `n` slots of a per-CPU u64 array, summed over CPUs.
pub fn counters_of(map: MapData, n: usize) -> Result<Vec<u64>> {
    let arr: PerCpuArray<MapData, u64> = PerCpuArray::try_from(Map::PerCpuArray(map))?;
    (0..n as u32)
        .map(|i| Ok(arr.get(&i, 0)?.iter().sum()))
        .collect()
}

pub fn trusted(dir: &Path, name: &str) -> Result<Vec<Cidr>> {
    let trie: LpmTrie<MapData, [u8; 16], u8> =
        LpmTrie::try_from(Map::LpmTrie(open_readonly(&dir.join(name))?))?;
    let mut out = Vec::new();
    for k in trie.keys() {
        let k = k?;
        // Entries with value 0 only keep the IPv4 space out of a covering
        // IPv6 prefix; they are not something the operator listed.
        if trie.get(&k, 0)? == 0 {
            continue;
        }
        if let Some(c) = Cidr::from_trie_key(k.prefix_len(), k.data()) {
            out.push(c);
        }
    }
    out.sort_by_key(|c| (!c.is_v4(), *c));
    Ok(out)
}

/// What a pinned link is attached to, and with which program.
pub struct LinkView {
    pub link_id: u32,
    pub prog_id: u32,
    /// 0 once the link is detached: the kernel lets go of a removed
    /// cgroup's links when the cgroup is finally freed.
    pub cgroup_id: u64,
    /// The directory of `cgroup_id`; None when no cgroup has that id any
    /// more (removed; a new one at the same path has another id).
    pub cgroup: Option<PathBuf>,
    /// None when the program's stats cannot be read (needs CAP_SYS_ADMIN).
    pub run_cnt: Option<u64>,
    pub run_time_ns: Option<u64>,
}

pub fn link(pin: &Path) -> Result<LinkView> {
    // A link opens read-write only, whatever the flags: its pin stays
    // 0600, as write access would let anyone detach it.
    let fd = sys::obj_get(pin, 0).map_err(|e| match e.raw_os_error() {
        Some(libc::EACCES) => anyhow::anyhow!(
            "{}: needs root: a link opens only read-write, and its pin is 0600 because \
             whoever can open it can detach it (without root, status shows the \
             configuration and counters only)",
            pin.display()
        ),
        _ => unreadable(pin, e),
    })?;
    let info = sys::link_info(&fd)?;
    let prog = aya::programs::loaded_programs()
        .flatten()
        .find(|p| p.id() == info.prog_id);
    Ok(LinkView {
        link_id: info.id,
        prog_id: info.prog_id,
        cgroup_id: info.cgroup_id,
        cgroup: (info.cgroup_id != 0)
            .then(|| cgroup::path_of(info.cgroup_id))
            .flatten(),
        run_cnt: prog.as_ref().map(|p| p.run_count()),
        run_time_ns: prog.as_ref().map(|p| p.run_time().as_nanos() as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unprivileged_refusals_name_their_cause() {
        let old = unprivileged_refusal((5, 15), "5.15.0-91-generic", "2");
        assert!(
            old.contains("< 5.19") && old.contains("unprivileged_bpf_disabled=2"),
            "{old}"
        );
        let new = unprivileged_refusal((6, 1), "6.1.0", "2");
        assert!(!new.contains("< 5.19"), "{new}");
        let e = unreadable(
            Path::new("/x/p"),
            std::io::Error::from_raw_os_error(libc::EACCES),
        );
        assert!(e.to_string().contains("ttmctl load` again"), "{e}");
    }
}
