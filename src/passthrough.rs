//! Every reason a hook hands the caller the kernel's answer unchanged, in
//! one enum, each counted (relaxed atomics: lock-free and
//! async-signal-safe). The counters are read through `ttm_stat()`.

use core::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Passthrough {
    /// Called before the load-time constructor ran.
    NotReady,
    /// TTM_DISABLE=1, or the program is not in TTM_PROGRAMS.
    Inactive,
    /// The real call failed; its errno goes back as it was.
    CallFailed,
    /// NULL address or length: the caller asked for no address (and a
    /// lookup would be a wasted syscall).
    NoAddress,
    /// The buffer is too small to hold even the family, so nothing about
    /// the address is visible and nothing observable could change.
    FamilyHidden,
    /// Not AF_INET/AF_INET6 (AF_UNIX, ...).
    NotInet,
    /// An AF_INET/AF_INET6 address of a length the kernel never returns.
    OddLength,
    /// No backend in use (nothing installed, or TTM_BACKEND=off).
    NoBackend,
    /// The backend has nothing for this socket: not TCP, not accepted
    /// through the LB, or the LB sent no address.
    NoPeer,
    /// The backend failed in an unexpected way (logged).
    BackendError,
    /// The backend's record names no possible client (family, port 0, ...).
    BadPeer,
    /// The kernel already returned the real client.
    AlreadyRewritten,
    /// The returned address is outside the trust list (TTM_TRUSTED, or
    /// the one `ttmctl load --trust` exported): a direct client, or a
    /// connection the kernel side already rewrote. No lookup was made.
    Untrusted,
    /// A trust list applies but the caller's short buffer hides the
    /// LB-side address, so trust cannot be checked.
    TrustUnknown,
    /// IPv6 client on an AF_INET socket whose caller's buffer cannot hold a
    /// sockaddr_in6: the LB address stays.
    NoRoomForIpv6,
    /// IPv6 client on an AF_INET socket, and widening to sockaddr_in6 is
    /// off for this program (TTM_WIDEN=off, or `auto` and the program drops
    /// widened addresses): the LB address stays.
    WideningOff,
}

impl Passthrough {
    pub const ALL: [Passthrough; 16] = [
        Passthrough::NotReady,
        Passthrough::Inactive,
        Passthrough::CallFailed,
        Passthrough::NoAddress,
        Passthrough::FamilyHidden,
        Passthrough::NotInet,
        Passthrough::OddLength,
        Passthrough::NoBackend,
        Passthrough::NoPeer,
        Passthrough::BackendError,
        Passthrough::BadPeer,
        Passthrough::AlreadyRewritten,
        Passthrough::Untrusted,
        Passthrough::TrustUnknown,
        Passthrough::NoRoomForIpv6,
        Passthrough::WideningOff,
    ];

    /// Stable names, as `ttm_stat()` and the logs show them.
    pub fn name(self) -> &'static str {
        match self {
            Passthrough::NotReady => "not_ready",
            Passthrough::Inactive => "inactive",
            Passthrough::CallFailed => "call_failed",
            Passthrough::NoAddress => "no_address",
            Passthrough::FamilyHidden => "family_hidden",
            Passthrough::NotInet => "not_inet",
            Passthrough::OddLength => "odd_length",
            Passthrough::NoBackend => "no_backend",
            Passthrough::NoPeer => "no_peer",
            Passthrough::BackendError => "backend_error",
            Passthrough::BadPeer => "bad_peer",
            Passthrough::AlreadyRewritten => "already_rewritten",
            Passthrough::Untrusted => "untrusted",
            Passthrough::TrustUnknown => "trust_unknown",
            Passthrough::NoRoomForIpv6 => "no_room_for_ipv6",
            Passthrough::WideningOff => "widening_off",
        }
    }

    pub fn count(self) {
        COUNTS[self as usize].fetch_add(1, Ordering::Relaxed);
    }
}

impl core::fmt::Display for Passthrough {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

static COUNTS: [AtomicU64; Passthrough::ALL.len()] =
    [const { AtomicU64::new(0) }; Passthrough::ALL.len()];
static REWRITTEN: AtomicU64 = AtomicU64::new(0);
static LOOKUPS: AtomicU64 = AtomicU64::new(0);

pub fn count_rewritten() {
    REWRITTEN.fetch_add(1, Ordering::Relaxed);
}

/// One backend question asked by a hook (a syscall): what the trust list
/// saves is visible as fewer of these.
pub fn count_lookup() {
    LOOKUPS.fetch_add(1, Ordering::Relaxed);
}

/// Counter `index` as (name, value): index 0 is "rewritten", then one per
/// [`Passthrough`] in declaration order (each call counts in exactly one
/// of these), then "lookups"; None past the end.
pub fn stat(index: usize) -> Option<(&'static str, u64)> {
    if index == 0 {
        return Some(("rewritten", REWRITTEN.load(Ordering::Relaxed)));
    }
    if index == Passthrough::ALL.len() + 1 {
        return Some(("lookups", LOOKUPS.load(Ordering::Relaxed)));
    }
    let reason = *Passthrough::ALL.get(index - 1)?;
    Some((
        reason.name(),
        COUNTS[reason as usize].load(Ordering::Relaxed),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_reason_in_order() {
        for (i, r) in Passthrough::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let names: std::collections::HashSet<_> =
            Passthrough::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), Passthrough::ALL.len());
        assert!(stat(Passthrough::ALL.len()).is_some());
        assert_eq!(
            stat(Passthrough::ALL.len() + 1).map(|s| s.0),
            Some("lookups")
        );
        assert!(stat(Passthrough::ALL.len() + 2).is_none());
    }
}
