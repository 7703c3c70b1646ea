//! Loading an embedded object with aya and attaching its programs to a
//! cgroup through links ttmctl can pin.

use anyhow::{Context, Result, bail};
use aya::programs::Program;
use aya::{Ebpf, EbpfLoader};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use crate::sys;

/// Parses and relocates `object`; maps marked pin-by-name are reused from,
/// or pinned into, `pin_dir`.
pub fn open(object: &[u8], pin_dir: Option<&Path>) -> Result<Ebpf> {
    let mut loader = EbpfLoader::new();
    // aya has no typed wrapper for SK_STORAGE maps; it still creates them.
    loader.allow_unsupported_maps();
    if let Some(dir) = pin_dir {
        loader.map_pin_path(dir);
    }
    loader.load(object).map_err(|e| {
        anyhow::anyhow!(
            "loading the eBPF object failed: {e}\n\
             (if a previous ttm left an incompatible map behind, run `ttmctl unload` first)"
        )
    })
}

/// Runs the verifier on one program; its log is part of the error.
pub fn load(ebpf: &mut Ebpf, name: &str) -> Result<()> {
    let prog = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the embedded object"))?;
    let r = match prog {
        Program::SockOps(p) => p.load(),
        Program::CgroupSockopt(p) => p.load(),
        Program::CgroupSockAddr(p) => p.load(),
        Program::CgroupSkb(p) => p.load(),
        _ => bail!("program {name} has a type ttmctl does not attach"),
    };
    r.map_err(|e| anyhow::anyhow!("the kernel's verifier rejected {name}: {e}"))
}

/// Attaches a loaded program to `cgroup` and returns the link's fd.
pub fn attach(ebpf: &Ebpf, name: &str, cgroup: &File, attach_type: u32) -> Result<OwnedFd> {
    let prog = ebpf
        .program(name)
        .with_context(|| format!("program {name} missing"))?;
    let fd = prog
        .fd()
        .with_context(|| format!("program {name} not loaded"))?;
    sys::link_create(fd.as_fd(), cgroup.as_fd(), attach_type)
        .with_context(|| format!("attaching {name} to the cgroup"))
}
