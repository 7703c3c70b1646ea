//! The eBPF objects, compiled from `bpf/` by build.rs and embedded so that
//! `ttmctl` is one self-contained file.

/// Parser, getsockopt answers and getpeername rewrites (`bpf/ttm.bpf.c`).
pub static TTM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ttm.bpf.o"));

/// LB emulator (`bpf/ttm_lb.bpf.c`).
pub static TTM_LB: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ttm_lb.bpf.o"));

/// One attachable program of the kernel side and where its link is pinned.
pub struct Attachment {
    pub program: &'static str,
    pub link_pin: &'static str,
    pub attach_type: u32,
    /// Part of the optional in-kernel getpeername/accept rewrite.
    pub rewrite: bool,
}

use crate::sys::attach;

pub const ATTACHMENTS: &[Attachment] = &[
    Attachment {
        program: "ttm_parse",
        link_pin: "link_parse",
        attach_type: attach::CGROUP_SOCK_OPS,
        rewrite: false,
    },
    Attachment {
        program: "ttm_getsockopt",
        link_pin: "link_getsockopt",
        attach_type: attach::CGROUP_GETSOCKOPT,
        rewrite: false,
    },
    Attachment {
        program: "ttm_getpeername4",
        link_pin: "link_getpeername4",
        attach_type: attach::CGROUP_INET4_GETPEERNAME,
        rewrite: true,
    },
    Attachment {
        program: "ttm_getpeername6",
        link_pin: "link_getpeername6",
        attach_type: attach::CGROUP_INET6_GETPEERNAME,
        rewrite: true,
    },
];
