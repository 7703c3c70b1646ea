//! A set of pins replaced as one: every new object is pinned under a
//! temporary name first, then renamed over the old one. rename(2) on bpffs
//! is atomic, so a path always names a live object, and an old link is
//! detached only after its replacement is attached.

use anyhow::{Context, Result};
use std::fs;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use crate::{bpffs, sys};

pub struct PinSet {
    dir: PathBuf,
    staged: Vec<(PathBuf, PathBuf, u32)>,
}

impl PinSet {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            staged: Vec::new(),
        }
    }

    /// Pins `fd` as `staged_<name>`, to become `name` with `mode` on commit.
    pub fn stage(&mut self, fd: BorrowedFd<'_>, name: &str, mode: u32) -> Result<()> {
        // bpffs refuses dots in names, so no ".name.new".
        let tmp = self.dir.join(format!("staged_{name}"));
        let _ = fs::remove_file(&tmp); // a crashed earlier run's leftover
        sys::obj_pin(fd, &tmp).with_context(|| format!("pinning {}", tmp.display()))?;
        self.staged.push((tmp, self.dir.join(name), mode));
        Ok(())
    }

    /// Renames every staged pin into place.
    pub fn commit(mut self) -> Result<()> {
        for (tmp, dst, mode) in std::mem::take(&mut self.staged) {
            bpffs::chmod(&tmp, mode)?;
            fs::rename(&tmp, &dst)
                .with_context(|| format!("replacing {} with the new object", dst.display()))?;
        }
        Ok(())
    }
}

impl Drop for PinSet {
    /// Not committed: the staged pins go, and with them the new links.
    fn drop(&mut self) {
        for (tmp, _, _) in &self.staged {
            let _ = fs::remove_file(tmp);
        }
    }
}
