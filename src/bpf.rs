//! The three bpf(2) commands libttm needs, on hand-written `union bpf_attr`
//! prefixes (the kernel accepts a shorter attr and treats the rest as 0).

use core::mem::size_of;
use std::ffi::CStr;
use std::io;

use libc::c_int;

use crate::peer::TtmPeer;

const BPF_MAP_LOOKUP_ELEM: c_int = 1;
const BPF_OBJ_GET: c_int = 7;
const BPF_OBJ_GET_INFO_BY_FD: c_int = 15;
const BPF_F_RDONLY: u32 = 1 << 3;
const BPF_MAP_TYPE_SK_STORAGE: u32 = 24;

#[repr(C)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

#[repr(C)]
struct MapElemAttr {
    map_fd: u32,
    pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The head of `struct bpf_map_info`.
#[repr(C)]
#[derive(Default)]
struct MapInfo {
    map_type: u32,
    id: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}

/// bpf(2). Returns the result or -1 with errno set.
///
/// # Safety
/// `attr` must be a valid attr for `cmd` whose pointers are valid.
unsafe fn bpf<T>(cmd: c_int, attr: &mut T) -> c_int {
    // SAFETY: per the caller; the kernel reads/writes at most size_of::<T>()
    // bytes of attr and what its pointers name.
    unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            core::ptr::from_mut(attr),
            size_of::<T>() as libc::c_uint,
        ) as c_int
    }
}

/// Opens the pinned ttm peer map read-only and close-on-exec, and checks
/// it is what we will read 20 bytes from: an SK_STORAGE map with an int
/// key and a struct ttm_peer value. A map of another value size would
/// make the kernel write past our buffer, so an unverifiable map is
/// refused rather than trusted.
pub fn open_peer_map(path: &CStr) -> io::Result<c_int> {
    let mut get = ObjGetAttr {
        pathname: path.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: BPF_F_RDONLY,
    };
    // SAFETY: pathname points to a NUL-terminated string alive for the call.
    let fd = unsafe { bpf(BPF_OBJ_GET, &mut get) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let close = |err: io::Error| {
        // SAFETY: fd is ours, just opened, and not shared yet.
        unsafe { libc::close(fd) };
        err
    };
    // The kernel opens bpf objects O_CLOEXEC; make sure of it anyway, since
    // a leaked map fd in an exec'd child would outlive this library.
    // SAFETY: fcntl on an fd we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(close(io::Error::last_os_error()));
    }
    if flags & libc::FD_CLOEXEC == 0 {
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
            return Err(close(io::Error::last_os_error()));
        }
    }
    let mut info = MapInfo::default();
    let mut attr = InfoAttr {
        bpf_fd: fd as u32,
        info_len: size_of::<MapInfo>() as u32,
        info: core::ptr::from_mut(&mut info) as u64,
    };
    // SAFETY: info points to a live MapInfo of info_len bytes.
    if unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) } < 0 {
        return Err(close(io::Error::last_os_error()));
    }
    if info.map_type != BPF_MAP_TYPE_SK_STORAGE
        || info.key_size != size_of::<c_int>() as u32
        || info.value_size != size_of::<TtmPeer>() as u32
    {
        return Err(close(io::Error::other(format!(
            "not the ttm peer map (type {}, key {} bytes, value {} bytes; \
             expected type {BPF_MAP_TYPE_SK_STORAGE}, 4, 20)",
            info.map_type, info.key_size, info.value_size
        ))));
    }
    Ok(fd)
}

/// Looks up the socket `fd`'s entry. `Ok(None)` when the socket has none
/// (ENOENT: not TCP, or no option was parsed for it). Async-signal-safe;
/// errno is clobbered (the caller keeps it).
pub fn lookup_peer(map_fd: c_int, fd: c_int) -> Result<Option<TtmPeer>, c_int> {
    let key: c_int = fd;
    let mut value = TtmPeer::default();
    let mut attr = MapElemAttr {
        map_fd: map_fd as u32,
        pad: 0,
        key: core::ptr::from_ref(&key) as u64,
        value: core::ptr::from_mut(&mut value) as u64,
        flags: 0,
    };
    // SAFETY: key and value are live locals of the map's verified key and
    // value sizes (open_peer_map checked 4 and 20 bytes).
    if unsafe { bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) } == 0 {
        return Ok(Some(value));
    }
    match crate::errno::get() {
        libc::ENOENT => Ok(None),
        e => Err(e),
    }
}
