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
    /// Loaded instead of `program` where the kernel lacks what `program`
    /// needs (`load` finds out by trying; see `features`).
    pub fallback: Option<&'static str>,
    pub link_pin: &'static str,
    pub attach_type: u32,
    pub part: Part,
}

use crate::sys::attach;

/// The getsockopt program, the one attachment with a fallback.
pub fn getsockopt() -> &'static Attachment {
    &ATTACHMENTS[1]
}

pub const ATTACHMENTS: &[Attachment] = &[
    Attachment {
        program: "ttm_parse",
        fallback: None,
        link_pin: "link_parse",
        attach_type: attach::CGROUP_SOCK_OPS,
        part: Part::Core,
    },
    Attachment {
        program: "ttm_getsockopt",
        // Without bpf_set_retval (5.18) the 4096 ABI's errors cannot be
        // returned; the fallback leaves the kernel's answer instead.
        fallback: Some("ttm_getsockopt_compat"),
        link_pin: "link_getsockopt",
        attach_type: attach::CGROUP_GETSOCKOPT,
        part: Part::Core,
    },
    Attachment {
        program: "ttm_getpeername4",
        fallback: None,
        link_pin: "link_getpeername4",
        attach_type: attach::CGROUP_INET4_GETPEERNAME,
        part: Part::Rewrite,
    },
    Attachment {
        program: "ttm_getpeername6",
        fallback: None,
        link_pin: "link_getpeername6",
        attach_type: attach::CGROUP_INET6_GETPEERNAME,
        part: Part::Rewrite,
    },
    Attachment {
        program: "ttm_deferred",
        fallback: None,
        link_pin: "link_deferred",
        attach_type: attach::CGROUP_INET_INGRESS,
        part: Part::DeferAccept,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_getsockopt_has_a_fallback_without_bpf_set_retval() {
        let g = getsockopt();
        assert_eq!(g.program, "ttm_getsockopt");
        assert_eq!(g.fallback, Some("ttm_getsockopt_compat"));
        assert_eq!(g.attach_type, attach::CGROUP_GETSOCKOPT);
        let with: Vec<_> = ATTACHMENTS
            .iter()
            .filter(|a| a.fallback.is_some())
            .collect();
        assert_eq!(with.len(), 1);
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
