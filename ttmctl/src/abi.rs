//! Rust mirrors of `bpf/ttm.h`: the layouts the eBPF programs read and
//! write. Any change there must be made here too; the tests below pin the
//! sizes the C compiler gives the same structs.

use aya::Pod;

pub const TTM_ABI_VERSION: u32 = 1;

/// `struct ttm_config`: one entry, read by the parser on every handshake.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TtmConfig {
    pub formats: u32,
    pub flags: u32,
    pub abi_version: u32,
    /// `enum ttm_missing`: kernel features `load` found missing.
    pub missing: u32,
}

pub const CFG_TRUST_ENFORCED: u32 = 1 << 0;
pub const CFG_REWRITE: u32 = 1 << 1;
pub const CFG_DEFER_ACCEPT: u32 = 1 << 2;
pub const CFG_TRUST_ANY: u32 = 1 << 3;
pub const CFG_GETSOCKOPT_COMPAT: u32 = 1 << 4;

pub const MISSING_SET_RETVAL: u32 = 1 << 0;
pub const MISSING_DEFER_ACCEPT: u32 = 1 << 1;
pub const MISSING_UNPRIV_READ: u32 = 1 << 2;

/// `TTM_CNT_SLOTS`: entries of the pinned `ttm_counters` map, more than
/// `COUNTERS` has, so the map fits versions that add counters.
pub const COUNTER_SLOTS: u32 = 64;

/// `struct ttm_lb_config`: what the LB emulator writes into the third ACK.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LbConfig {
    pub nchunks: u32,
    pub reserve: u32,
    pub flags: u32,
    pub chunk_len: [u8; LB_CHUNKS],
    pub chunk: [[u8; LB_CHUNK_MAX]; LB_CHUNKS],
}

pub const LB_CHUNKS: usize = 4;
pub const LB_CHUNK_MAX: usize = 40;
pub const LB_PORT_FROM_SOURCE: u32 = 1 << 0;

impl Default for LbConfig {
    fn default() -> Self {
        Self {
            nchunks: 0,
            reserve: 0,
            flags: 0,
            chunk_len: [0; LB_CHUNKS],
            chunk: [[0; LB_CHUNK_MAX]; LB_CHUNKS],
        }
    }
}

// SAFETY: both are repr(C), contain only integers and arrays of
// integers, and have no padding (sizes checked in tests), so every bit
// pattern is a valid value and none holds uninitialised bytes.
unsafe impl Pod for TtmConfig {}
// SAFETY: as above.
unsafe impl Pod for LbConfig {}

/// Counter slots of `ttm_counters`, in `enum ttm_counter` order, with the
/// names `ttmctl status` prints (a stable interface: tests and users key
/// on them).
pub const COUNTERS: &[&str] = &[
    "found_v4",
    "found_v6",
    "no_option",
    "malformed",
    "bad_address",
    "untrusted",
    "no_packet",
    "storage_failed",
    "getsockopt_ttm",
    "getsockopt_nat64",
    "getsockopt_error",
    "rewrite4",
    "rewrite6",
    // Added later, at the end of the enum so the slots above keep their index.
    "stashed",
    "stash_refused",
    "stash_failed",
    "from_stash",
    "stash_stale",
    "stash_unmatched",
    "stash_cookie",
    "fastopen",
    "fastopen_claim",
];

/// Counter slots of `ttm_lb_counters`, in `enum ttm_lb_counter` order.
pub const LB_COUNTERS: &[&str] = &["armed", "written", "reserve_failed", "store_failed"];

/// Map and link names inside a pin directory.
pub mod pins {
    pub const PEERS: &str = "ttm_peers";
    pub const STASH: &str = "ttm_stash";
    pub const STASH_COOKIE: &str = "ttm_stash_cookie";
    pub const CONFIG: &str = "ttm_config";
    pub const TRUSTED: &str = "ttm_trusted";
    pub const COUNTERS: &str = "ttm_counters";
    /// An older version's counters map, while its counts are carried over.
    pub const COUNTERS_OLD: &str = "ttm_counters_old";
    pub const LB_CONFIG: &str = "ttm_lb_config";
    pub const LB_COUNTERS: &str = "ttm_lb_counters";
    pub const LB_LINK: &str = "link_lb";
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    #[test]
    fn sizes_match_the_c_structs() {
        assert_eq!(size_of::<TtmConfig>(), 16);
        assert_eq!(
            size_of::<LbConfig>(),
            12 + LB_CHUNKS + LB_CHUNKS * LB_CHUNK_MAX
        );
    }

    #[test]
    fn flag_bits_match_the_header() {
        let header = include_str!("../../bpf/ttm.h");
        for (name, bit) in [
            ("TTM_CFG_TRUST_ENFORCED", CFG_TRUST_ENFORCED),
            ("TTM_CFG_REWRITE", CFG_REWRITE),
            ("TTM_CFG_DEFER_ACCEPT", CFG_DEFER_ACCEPT),
            ("TTM_CFG_TRUST_ANY", CFG_TRUST_ANY),
            ("TTM_CFG_GETSOCKOPT_COMPAT", CFG_GETSOCKOPT_COMPAT),
            ("TTM_MISSING_SET_RETVAL", MISSING_SET_RETVAL),
            ("TTM_MISSING_DEFER_ACCEPT", MISSING_DEFER_ACCEPT),
            ("TTM_MISSING_UNPRIV_READ", MISSING_UNPRIV_READ),
        ] {
            let decl = format!("{name} = 1 << {},", bit.trailing_zeros());
            assert!(header.contains(&decl), "bpf/ttm.h lacks `{decl}`");
        }
    }

    #[test]
    fn counter_slots_match_the_header_and_leave_room() {
        let header = include_str!("../../bpf/ttm.h");
        assert!(
            header.contains(&format!("#define TTM_CNT_SLOTS {COUNTER_SLOTS}\n")),
            "COUNTER_SLOTS differs from TTM_CNT_SLOTS in bpf/ttm.h"
        );
        assert!(header.contains("TTM_CFG_TRUST_ANY = 1 << 3,"));
        assert!(COUNTERS.len() < COUNTER_SLOTS as usize);
    }

    #[test]
    fn counter_names_cover_the_enum() {
        let header = include_str!("../../bpf/ttm.h");
        let count = |prefix: &str| {
            header
                .lines()
                .filter(|l| l.trim_start().starts_with(prefix) && !l.contains("_MAX"))
                .count()
        };
        assert_eq!(count("TTM_CNT_"), COUNTERS.len());
        assert_eq!(count("TTM_LB_CNT_"), LB_COUNTERS.len());
        // Same names in the same order: the index is the slot.
        let pos = |c: String| {
            header
                .find(&c)
                .unwrap_or_else(|| panic!("{c} missing from bpf/ttm.h"))
        };
        let cnt: Vec<_> = COUNTERS
            .iter()
            .map(|n| pos(format!("TTM_CNT_{},", n.to_uppercase())))
            .collect();
        assert!(cnt.is_sorted(), "COUNTERS out of enum ttm_counter order");
        let lb: Vec<_> = LB_COUNTERS
            .iter()
            .map(|n| pos(format!("TTM_LB_CNT_{},", n.to_uppercase())))
            .collect();
        assert!(
            lb.is_sorted(),
            "LB_COUNTERS out of enum ttm_lb_counter order"
        );
    }
}
