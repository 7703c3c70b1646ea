//! The option formats LBs use, as `KIND/LEN` on the command line and as
//! bits of `ttm_config.formats` in the kernel.

use anyhow::{Result, bail};

/// (kind, len, bit in `enum ttm_format`, who sends it)
pub const FORMATS: &[(u8, u8, u32, &str)] = &[
    (
        254,
        8,
        1 << 0,
        "Alibaba LVS, DPVS, Huawei, UCloud compat (IPv4)",
    ),
    (254, 20, 1 << 1, "DPVS IPv6 and NAT64"),
    (253, 20, 1 << 2, "Alibaba LVS v6, Huawei ELB, Tencent NAT64"),
    (253, 8, 1 << 3, "UCloud \"Akamai\" (IPv4)"),
    (
        200,
        8,
        1 << 4,
        "original LVS TOA, UCloud, Tencent SNAT (IPv4)",
    ),
];

/// 254/8 + 254/20 + 253/20, as `TTM_FMT_DEFAULT`.
pub const DEFAULT_MASK: u32 = 0b111;

/// Parses `KIND/LEN` into its `ttm_format` bit.
pub fn parse(s: &str) -> Result<u32> {
    let supported = || {
        FORMATS
            .iter()
            .map(|(k, l, _, _)| format!("{k}/{l}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some((k, l)) = s.split_once('/') else {
        bail!(
            "bad --format {s:?}: expected KIND/LEN, one of {}",
            supported()
        );
    };
    let (Ok(kind), Ok(len)) = (k.trim().parse::<u8>(), l.trim().parse::<u8>()) else {
        bail!(
            "bad --format {s:?}: KIND and LEN are numbers, one of {}",
            supported()
        );
    };
    match FORMATS
        .iter()
        .find(|(fk, fl, _, _)| *fk == kind && *fl == len)
    {
        Some((_, _, bit, _)) => Ok(*bit),
        None => bail!("unsupported --format {s}: supported are {}", supported()),
    }
}

/// The names of the formats in a mask, in table order.
pub fn names(mask: u32) -> Vec<String> {
    FORMATS
        .iter()
        .filter(|(_, _, bit, _)| mask & bit != 0)
        .map(|(k, l, _, _)| format!("{k}/{l}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_known_format_and_nothing_else() {
        for (k, l, bit, _) in FORMATS {
            assert_eq!(parse(&format!("{k}/{l}")).unwrap(), *bit);
        }
        for bad in ["254", "254/9", "255/8", "x/8", "254/", "/8", "254/8/1", ""] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn default_is_the_three_issue_formats() {
        assert_eq!(names(DEFAULT_MASK), ["254/8", "254/20", "253/20"]);
    }
}
