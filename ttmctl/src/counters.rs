//! The pinned `ttm_counters` map across loads. `load` reuses it (pinned
//! by name, like `ttm_peers`), so a reload or an upgrade keeps the counts.
//! A map of another shape, left by an older version (sized for fewer
//! counters, before the map had `TTM_CNT_SLOTS` entries), cannot be
//! reused: it is set aside, a new one is made, and once the new set runs
//! the old counts are added into it.

use anyhow::{Context, Result};
use aya::maps::{Map, MapData, MapType, PerCpuArray, PerCpuValues};
use std::fs;
use std::path::{Path, PathBuf};

use crate::abi::{COUNTER_SLOTS, pins};
use crate::pinned;

/// An incompatible counters map moved aside to `<dir>/ttm_counters_old`
/// before the load; the old programs keep counting into it until the new
/// set replaces them.
pub struct SetAside {
    aside: PathBuf,
    pin: PathBuf,
}

fn compatible(map: &MapData) -> Result<bool> {
    let info = map.info()?;
    Ok(info.map_type().ok() == Some(MapType::PerCpuArray)
        && info.key_size() == 4
        && info.value_size() == 8
        && info.max_entries() == COUNTER_SLOTS)
}

/// Before the object is opened: moves an incompatible pinned counters map
/// out of the way, so that a new one is created in its place.
pub fn set_aside_incompatible(dir: &Path) -> Result<Option<SetAside>> {
    let pin = dir.join(pins::COUNTERS);
    let aside = dir.join(pins::COUNTERS_OLD);
    if !pin.exists() {
        return Ok(None);
    }
    let map =
        MapData::from_pin(&pin).with_context(|| format!("opening pinned map {}", pin.display()))?;
    if compatible(&map)? {
        return Ok(None);
    }
    if aside.exists() {
        // An upgrade interrupted before it carried its counts over: they
        // are lost either way; make room for this one's.
        eprintln!(
            "ttm: warning: removing {} left by an interrupted load",
            aside.display()
        );
        fs::remove_file(&aside)?;
    }
    fs::rename(&pin, &aside).with_context(|| format!("moving {} aside", pin.display()))?;
    Ok(Some(SetAside { aside, pin }))
}

impl SetAside {
    /// After the new set is committed: adds the old map's counts into the
    /// new one and removes the old pin. The counts are read now, not
    /// before the load, so what the old programs counted while the new
    /// ones were loading is kept too. A failure here costs the old counts,
    /// never the load: it is a warning.
    pub fn carry_over(self) {
        if let Err(e) = self.add_into_new() {
            eprintln!("ttm: warning: counters of the previous version not carried over: {e:#}");
        }
        let _ = fs::remove_file(&self.aside);
    }

    fn add_into_new(&self) -> Result<()> {
        let old = pinned::open_readonly(&self.aside)?;
        let n = old.info()?.max_entries().min(COUNTER_SLOTS) as usize;
        let old = pinned::counters_of(old, n)?;
        let new = MapData::from_pin(&self.pin)
            .with_context(|| format!("opening pinned map {}", self.pin.display()))?;
        let mut new: PerCpuArray<MapData, u64> = PerCpuArray::try_from(Map::PerCpuArray(new))?;
        for (i, v) in old.iter().enumerate().filter(|(_, v)| **v != 0) {
            // Onto CPU 0's slot: the sum is all that is ever read. The new
            // programs may count on CPU 0 between the read and the write;
            // that window is one syscall long, once per upgrade.
            let mut vals = new.get(&(i as u32), 0)?.to_vec();
            vals[0] += v;
            new.set(i as u32, PerCpuValues::try_from(vals)?, 0)?;
        }
        Ok(())
    }

    /// The load failed: the old map goes back in place (the old set, still
    /// running, never stopped using it).
    pub fn put_back(self) {
        let _ = fs::remove_file(&self.pin);
        if let Err(e) = fs::rename(&self.aside, &self.pin) {
            eprintln!(
                "ttm: warning: could not put {} back: {e}",
                self.aside.display()
            );
        }
    }
}
