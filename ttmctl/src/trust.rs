//! `--trust`: which LB source addresses may set a client. One list syntax
//! with libttm's `TTM_TRUSTED` and ttm.conf's `TRUST=` (the `ttm_cidr`
//! crate), plus the word `any` for an operator who means it.

use anyhow::{Result, bail};
use ttm_cidr::Cidr;

/// Said by `load` (stderr) and `status` (text, JSON, metrics) while no
/// `--trust` was given.
pub const UNSET_WARNING: &str = "no --trust: options are honoured from every source, so a client \
    that reaches the server directly can claim any address; pass --trust with the LB's source \
    prefixes (or --trust any to accept this)";

/// What the `--trust` flags said, all of them together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// No `--trust` at all: every source, with a warning.
    Unset,
    /// `--trust any`: every source, on purpose.
    Any,
    /// Only these prefixes.
    Only(Vec<Cidr>),
}

/// One `--trust` value: a list (commas and/or whitespace) or `any`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustArg {
    Any,
    List(Vec<Cidr>),
}

impl TrustArg {
    /// clap value parser. An empty list is refused: it is what an unset
    /// `TRUST=` in ttm.conf expands to, and silently trusting every source
    /// there would be the insecure default this flag exists to avoid.
    pub fn parse(s: &str) -> Result<TrustArg> {
        if s.trim() == "any" {
            return Ok(TrustArg::Any);
        }
        let list = ttm_cidr::parse_list(s).map_err(|e| anyhow::anyhow!("{e}"))?;
        if list.is_empty() {
            bail!(
                "no trusted LB prefix given: set TRUST (ttm.conf) or --trust to the load \
                 balancer's source prefixes, e.g. 10.0.0.0/8, or to `any` to honour options \
                 from every source (a client reaching the server directly can then claim any \
                 address)"
            );
        }
        Ok(TrustArg::List(list))
    }
}

/// Folds every `--trust` given. `any` with prefixes is contradictory.
pub fn combine(args: Vec<TrustArg>) -> Result<Trust> {
    if args.is_empty() {
        return Ok(Trust::Unset);
    }
    let any = args.contains(&TrustArg::Any);
    let mut list = Vec::new();
    for a in args {
        if let TrustArg::List(l) = a {
            list.extend(l);
        }
    }
    match (any, list.is_empty()) {
        (true, true) => Ok(Trust::Any),
        (true, false) => bail!(
            "--trust any and --trust with prefixes contradict each other; give one or the other"
        ),
        (false, _) => Ok(Trust::Only(list)),
    }
}

impl Trust {
    pub fn prefixes(&self) -> &[Cidr] {
        match self {
            Trust::Only(l) => l,
            _ => &[],
        }
    }

    pub fn enforced(&self) -> bool {
        matches!(self, Trust::Only(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_any_and_empty() {
        assert_eq!(TrustArg::parse("any").unwrap(), TrustArg::Any);
        let TrustArg::List(l) = TrustArg::parse("10.0.0.0/24,2001:db8::/64 192.0.2.1").unwrap()
        else {
            panic!("not a list")
        };
        assert_eq!(l.len(), 3);
        for empty in ["", " ", ",", " , "] {
            let e = TrustArg::parse(empty).unwrap_err().to_string();
            assert!(e.contains("TRUST") && e.contains("any"), "{e}");
        }
        let e = TrustArg::parse("10.0.0.0/24,10.1.0.0/33")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"10.1.0.0/33\"") && e.contains("0..=32"), "{e}");
    }

    #[test]
    fn combining() {
        assert_eq!(combine(vec![]).unwrap(), Trust::Unset);
        assert_eq!(combine(vec![TrustArg::Any]).unwrap(), Trust::Any);
        let a = TrustArg::parse("10.0.0.0/8").unwrap();
        let b = TrustArg::parse("fd00::/8").unwrap();
        assert_eq!(combine(vec![a.clone(), b]).unwrap().prefixes().len(), 2);
        assert!(combine(vec![a, TrustArg::Any]).is_err());
    }
}
