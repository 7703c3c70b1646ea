//! The eBPF objects, compiled from `bpf/` by build.rs and embedded so that
//! `ttmctl` is one self-contained file.

/// Parser, getsockopt answers and getpeername rewrites (`bpf/ttm.bpf.c`).
pub static TTM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ttm.bpf.o"));

/// LB emulator (`bpf/ttm_lb.bpf.c`).
pub static TTM_LB: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ttm_lb.bpf.o"));

/// `ttmctl detect`'s option recorder (`bpf/ttm_detect.bpf.c`).
pub static TTM_DETECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ttm_detect.bpf.o"));

/// Which part of the kernel side a program belongs to; every part but
/// `Core` can be left out with a `ttmctl load` flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Core,
    /// The in-kernel getpeername/accept rewrite (`--no-rewrite`).
    Rewrite,
    /// Claims of ACKs dropped by TCP_DEFER_ACCEPT (`--no-defer-accept`).
    DeferAccept,
}

/// One attachable program of the kernel side and where its link is pinned.
pub struct Attachment {
    pub program: &'static str,
    /// (program, kernel version): loaded instead of `program` on older kernels.
    pub compat: Option<(&'static str, (u32, u32))>,
    pub link_pin: &'static str,
    pub attach_type: u32,
    pub part: Part,
}

use crate::sys::attach;

impl Attachment {
    /// The program to load on a kernel of this (major, minor).
    pub fn program_for(&self, kernel: (u32, u32)) -> &'static str {
        match self.compat {
            Some((old, since)) if kernel < since => old,
            _ => self.program,
        }
    }
}

pub const ATTACHMENTS: &[Attachment] = &[
    Attachment {
        program: "ttm_parse",
        compat: None,
        link_pin: "link_parse",
        attach_type: attach::CGROUP_SOCK_OPS,
        part: Part::Core,
    },
    Attachment {
        program: "ttm_getsockopt",
        // bpf_set_retval, for the 4096 ABI's error returns, is 5.18+.
        compat: Some(("ttm_getsockopt_compat", (5, 18))),
        link_pin: "link_getsockopt",
        attach_type: attach::CGROUP_GETSOCKOPT,
        part: Part::Core,
    },
    Attachment {
        program: "ttm_getpeername4",
        compat: None,
        link_pin: "link_getpeername4",
        attach_type: attach::CGROUP_INET4_GETPEERNAME,
        part: Part::Rewrite,
    },
    Attachment {
        program: "ttm_getpeername6",
        compat: None,
        link_pin: "link_getpeername6",
        attach_type: attach::CGROUP_INET6_GETPEERNAME,
        part: Part::Rewrite,
    },
    Attachment {
        program: "ttm_deferred",
        compat: None,
        link_pin: "link_deferred",
        attach_type: attach::CGROUP_INET_INGRESS,
        part: Part::DeferAccept,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_kernels_get_the_getsockopt_without_bpf_set_retval() {
        let g = &ATTACHMENTS[1];
        assert_eq!(g.program_for((5, 10)), "ttm_getsockopt_compat");
        assert_eq!(g.program_for((5, 17)), "ttm_getsockopt_compat");
        assert_eq!(g.program_for((5, 18)), "ttm_getsockopt");
        assert_eq!(g.program_for((6, 18)), "ttm_getsockopt");
        assert_eq!(ATTACHMENTS[0].program_for((5, 10)), "ttm_parse");
    }

    #[test]
    fn the_defer_accept_program_is_optional_and_on_ingress() {
        let d: Vec<_> = ATTACHMENTS
            .iter()
            .filter(|a| a.part == Part::DeferAccept)
            .collect();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].program, "ttm_deferred");
        assert_eq!(d[0].link_pin, "link_deferred");
        assert_eq!(d[0].attach_type, attach::CGROUP_INET_INGRESS);
        // The first attachment tells whether ttm is loaded: never optional.
        assert_eq!(ATTACHMENTS[0].part, Part::Core);
    }
}
