//! The kernel features ttm uses: the first Linux that has each, what stops
//! working without it, and, for those ttm can do without, how `load` finds
//! out (a verifier load wherever one can tell; the version where nothing
//! can be tried). `doctor`, `load` and `status` name them from here, and
//! README's REQUIREMENTS table is this list (a test keeps them equal).

use crate::abi;

pub struct Feature {
    /// Stable name (JSON `feature` field).
    pub name: &'static str,
    /// What it is, for the README table.
    pub what: &'static str,
    /// First mainline release that has it.
    pub since: (u32, u32),
    /// Bit in `ttm_config.missing` for features ttm can run without;
    /// 0 for those it cannot (all within `preflight::MIN_KERNEL`).
    pub missing_bit: u32,
    /// What stops working without it.
    pub without: &'static str,
}

pub const DEFER_ACCEPT: &Feature = &FEATURES[5];
pub const SET_RETVAL: &Feature = &FEATURES[6];
pub const UNPRIV_READ: &Feature = &FEATURES[7];

pub const FEATURES: [Feature; 8] = [
    Feature {
        name: "sk_storage",
        what: "`BPF_MAP_TYPE_SK_STORAGE`, looked up by socket fd from userspace",
        since: (5, 2),
        missing_bit: 0,
        without: "ttm cannot run: it keeps each socket's client there",
    },
    Feature {
        name: "cgroup_getsockopt",
        what: "`cgroup/getsockopt` programs",
        since: (5, 3),
        missing_bit: 0,
        without: "ttm cannot run: no getsockopt 1345/4096 answers",
    },
    Feature {
        name: "cgroup_link",
        what: "cgroup `bpf_link`s (`BPF_LINK_CREATE`), pinned",
        since: (5, 7),
        missing_bit: 0,
        without: "ttm cannot run: its programs would die with ttmctl",
    },
    Feature {
        name: "getpeername_hooks",
        what: "`cgroup/getpeername4`, `cgroup/getpeername6`",
        since: (5, 8),
        missing_bit: 0,
        without: "ttm cannot run: no in-kernel accept()/getpeername() rewrite",
    },
    Feature {
        name: "tcp_header_options",
        what: "TCP header options in `sockops` (the handshake's packet, `bpf_store_hdr_opt`)",
        since: (5, 10),
        missing_bit: 0,
        without: "ttm cannot run: the option cannot be read (nor written by `ttmctl simulate`)",
    },
    Feature {
        name: "defer_accept",
        what: "kernel BTF (`CONFIG_DEBUG_INFO_BTF`) and `bpf_skc_to_tcp_sock` in `cgroup_skb`",
        since: (5, 10),
        missing_bit: abi::MISSING_DEFER_ACCEPT,
        without: "listeners with TCP_DEFER_ACCEPT (httpd's default AcceptFilter, nginx \
                  `deferred`, HAProxy `defer-accept`) see the LB's address, and so do \
                  connections whose third ACK a full accept queue drops, and TCP Fast Open ones",
    },
    Feature {
        name: "bpf_set_retval",
        what: "`bpf_set_retval` in `cgroup/getsockopt`",
        since: (5, 18),
        missing_bit: abi::MISSING_SET_RETVAL,
        without: "getsockopt 4096 cannot refuse: where it would fail with EINVAL or ENOTCONN, \
                  callers get the kernel's ENOPROTOOPT (ttm_getsockopt_compat is loaded)",
    },
    Feature {
        name: "unprivileged_map_read",
        what: "reading a pinned map without privilege while `kernel.unprivileged_bpf_disabled` is set",
        since: (5, 19),
        missing_bit: abi::MISSING_UNPRIV_READ,
        without: "servers and `ttmctl status` not running as root cannot read the pinned \
                  maps (the peer map, counters); libttm.so is not affected: it asks \
                  getsockopt 1345, which works everywhere",
    },
];

impl Feature {
    pub fn since_str(&self) -> String {
        format!("{}.{}", self.since.0, self.since.1)
    }

    /// One line for `load`'s warnings and `doctor`.
    pub fn lacking(&self) -> String {
        format!(
            "this kernel lacks {} (Linux >= {}): {}",
            self.name,
            self.since_str(),
            self.without
        )
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "feature": self.name,
            "what": self.what,
            "since": self.since_str(),
            "effect": self.without,
        })
    }
}

/// The features a `ttm_config.missing` mask names.
pub fn missing(mask: u32) -> impl Iterator<Item = &'static Feature> {
    FEATURES
        .iter()
        .filter(move |f| f.missing_bit != 0 && mask & f.missing_bit != 0)
}

/// Whether a verifier refusal of `ttm_getsockopt` is this kernel lacking
/// `bpf_set_retval` (older kernels call it an unknown or invalid function,
/// by name or by number 187), as opposed to any other refusal, which must
/// not be mistaken for a missing feature.
pub fn is_missing_set_retval(verifier_error: &str) -> bool {
    let e = verifier_error;
    (e.contains("bpf_set_retval") || e.contains("#187") || e.contains("func 187"))
        && (e.contains("unknown func") || e.contains("invalid func") || e.contains("cannot call"))
}

/// Unprivileged map reads: nothing to try as root, so by version, and only
/// a loss while the sysctl forbids unprivileged bpf(2).
pub fn unprivileged_read_missing(kernel: (u32, u32), unprivileged_bpf_disabled: &str) -> bool {
    kernel < UNPRIV_READ.since && unprivileged_bpf_disabled.trim() != "0"
}

/// README's REQUIREMENTS table, rendered from FEATURES.
#[cfg(test)]
pub fn readme_table() -> String {
    let mut t = String::from("| kernel feature | since | without it |\n|---|---|---|\n");
    for f in &FEATURES {
        t.push_str(&format!(
            "| {} | {} | {} |\n",
            f.what,
            f.since_str(),
            f.without
        ));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_features_have_distinct_bits_and_the_constants_point_at_them() {
        let bits: Vec<u32> = FEATURES
            .iter()
            .map(|f| f.missing_bit)
            .filter(|b| *b != 0)
            .collect();
        let mut dedup = bits.clone();
        dedup.dedup();
        assert_eq!(bits, dedup);
        assert_eq!(SET_RETVAL.missing_bit, abi::MISSING_SET_RETVAL);
        assert_eq!(DEFER_ACCEPT.missing_bit, abi::MISSING_DEFER_ACCEPT);
        assert_eq!(UNPRIV_READ.missing_bit, abi::MISSING_UNPRIV_READ);
        // Everything older than ttm's minimum is required.
        for f in &FEATURES {
            assert!(
                f.missing_bit != 0 || f.since <= crate::preflight::MIN_KERNEL,
                "{} is newer than the minimum kernel but not optional",
                f.name
            );
        }
    }

    #[test]
    fn the_readme_carries_this_table() {
        const BEGIN: &str =
            "<!-- kernel-features:begin (generated from ttmctl/src/features.rs) -->\n";
        const END: &str = "<!-- kernel-features:end -->";
        let readme = include_str!("../../README.md");
        let start = readme
            .find(BEGIN)
            .expect("README lacks the kernel-features:begin marker")
            + BEGIN.len();
        let len = readme[start..]
            .find(END)
            .expect("README lacks the kernel-features:end marker");
        assert_eq!(
            &readme[start..start + len],
            readme_table(),
            "README's REQUIREMENTS table differs from FEATURES; paste this between the markers:\n{}",
            readme_table()
        );
    }

    #[test]
    fn a_mask_names_its_features() {
        let names: Vec<_> = missing(abi::MISSING_SET_RETVAL | abi::MISSING_UNPRIV_READ)
            .map(|f| f.name)
            .collect();
        assert_eq!(names, ["bpf_set_retval", "unprivileged_map_read"]);
        assert_eq!(missing(0).count(), 0);
    }

    #[test]
    fn only_an_unknown_set_retval_counts_as_missing() {
        // The wording of a kernel that knows the helper's name but not for
        // this program type.
        assert!(is_missing_set_retval(
            "the kernel's verifier rejected ttm_getsockopt: ... unknown func bpf_set_retval#187"
        ));
        // Debian 11's 5.10 (kernel matrix), which predates the helper:
        // "40: (85) call unknown#187\ninvalid func unknown#187".
        assert!(is_missing_set_retval(
            "the kernel's verifier rejected ttm_getsockopt: 40: (85) call unknown#187\ninvalid func unknown#187"
        ));
        // Any other refusal is a bug to report, not a missing feature.
        assert!(!is_missing_set_retval(
            "the kernel's verifier rejected ttm_getsockopt: R1 invalid mem access 'scalar'"
        ));
    }

    #[test]
    fn unprivileged_reads_are_missing_only_before_5_19_with_the_sysctl_set() {
        assert!(unprivileged_read_missing((5, 15), "2\n"));
        assert!(unprivileged_read_missing((5, 18), "1"));
        assert!(!unprivileged_read_missing((5, 15), "0\n"));
        assert!(!unprivileged_read_missing((5, 19), "2"));
        assert!(!unprivileged_read_missing((6, 1), "2"));
    }
}
