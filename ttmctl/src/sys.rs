//! The few bpf(2) commands aya 0.13 does not expose: opening any pinned
//! object, and the info of a link (which program, which cgroup).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const BPF_OBJ_GET: libc::c_long = 7;
/// `file_flags` of BPF_OBJ_GET: a read-only fd, which needs only read
/// permission on the pin.
pub const BPF_F_RDONLY: u32 = 1 << 3;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

fn bpf(cmd: libc::c_long, attr: &mut [u64; 16]) -> io::Result<libc::c_long> {
    // SAFETY: attr is a zero-initialised, 128-byte, 8-aligned buffer, larger
    // than every union bpf_attr member used here; the kernel reads and
    // writes at most the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr) as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `BPF_OBJ_GET`: an fd for whatever is pinned at `path`.
pub fn obj_get(path: &Path, flags: u32) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    let mut attr = [0u64; 16];
    attr[0] = c.as_ptr() as u64; // pathname
    attr[1] = u64::from(flags) << 32; // bpf_fd = 0, file_flags
    let fd = bpf(BPF_OBJ_GET, &mut attr)?;
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// The parts of `struct bpf_link_info` ttmctl reads.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkInfo {
    pub id: u32,
    pub prog_id: u32,
    /// For cgroup links: the cgroup id (= inode number of its directory).
    pub cgroup_id: u64,
}

pub fn link_info(fd: &OwnedFd) -> io::Result<LinkInfo> {
    // struct bpf_link_info: u32 type, id, prog_id; 8-aligned union at 16,
    // whose cgroup member is { u64 cgroup_id; u32 attach_type; }.
    let mut info = [0u64; 8];
    let mut attr = [0u64; 16];
    attr[0] = fd.as_raw_fd() as u64 | ((std::mem::size_of_val(&info) as u64) << 32);
    attr[1] = info.as_mut_ptr() as u64;
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(LinkInfo {
        id: (info[0] >> 32) as u32,
        prog_id: info[1] as u32,
        cgroup_id: info[2],
    })
}

const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_LINK_CREATE: libc::c_long = 28;

/// Attach types of `enum bpf_attach_type` that ttm uses.
pub mod attach {
    pub const CGROUP_INET_INGRESS: u32 = 0;
    pub const CGROUP_SOCK_OPS: u32 = 3;
    pub const CGROUP_GETSOCKOPT: u32 = 21;
    pub const CGROUP_INET4_GETPEERNAME: u32 = 29;
    pub const CGROUP_INET6_GETPEERNAME: u32 = 30;
}

/// `BPF_LINK_CREATE` of a loaded program on a cgroup. Cgroup links always
/// coexist with other programs (multi-attach), which is what lets a reload
/// attach the new set before the old one goes.
///
/// aya 0.13 creates such links too but keeps them private to its wrapper
/// types, so they could not be pinned; creating them here is a dozen lines.
pub fn link_create(
    prog: BorrowedFd<'_>,
    cgroup: BorrowedFd<'_>,
    attach_type: u32,
) -> io::Result<OwnedFd> {
    let mut attr = [0u64; 16];
    attr[0] = prog.as_raw_fd() as u64 | ((cgroup.as_raw_fd() as u64) << 32);
    attr[1] = u64::from(attach_type); // attach_type, flags = 0
    let fd = bpf(BPF_LINK_CREATE, &mut attr)?;
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `BPF_OBJ_PIN`: make `fd`'s object outlive this process at `path`.
pub fn obj_pin(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    let mut attr = [0u64; 16];
    attr[0] = c.as_ptr() as u64;
    attr[1] = fd.as_raw_fd() as u64;
    bpf(BPF_OBJ_PIN, &mut attr).map(|_| ())
}
