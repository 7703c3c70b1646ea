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

/// Entry 0 of a pinned one-entry array.
pub fn array_value<V: Pod>(dir: &Path, name: &str) -> Result<V> {
    let arr: Array<MapData, V> = Array::try_from(Map::Array(open(dir, name)?))?;
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
    let arr: PerCpuArray<MapData, u64> = PerCpuArray::try_from(Map::PerCpuArray(open(dir, name)?))?;
    (0..n as u32)
        .map(|i| Ok(arr.get(&i, 0)?.iter().sum()))
        .collect()
}

pub fn trusted(dir: &Path, name: &str) -> Result<Vec<Cidr>> {
    let trie: LpmTrie<MapData, [u8; 16], u8> = LpmTrie::try_from(Map::LpmTrie(open(dir, name)?))?;
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
    pub cgroup_id: u64,
    pub cgroup: Option<PathBuf>,
    pub run_cnt: u64,
    pub run_time_ns: u64,
}

pub fn link(pin: &Path) -> Result<LinkView> {
    let fd =
        sys::obj_get(pin, 0).with_context(|| format!("opening pinned link {}", pin.display()))?;
    let info = sys::link_info(&fd)?;
    let prog = aya::programs::loaded_programs()
        .flatten()
        .find(|p| p.id() == info.prog_id);
    Ok(LinkView {
        link_id: info.id,
        prog_id: info.prog_id,
        cgroup_id: info.cgroup_id,
        cgroup: cgroup::path_of(info.cgroup_id),
        run_cnt: prog.as_ref().map_or(0, |p| p.run_count()),
        run_time_ns: prog.as_ref().map_or(0, |p| p.run_time().as_nanos() as u64),
    })
}
