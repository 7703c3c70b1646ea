//! libttm.so: shows servers behind a full-NAT load balancer their real
//! clients, by rewriting what `accept`, `accept4` and `getpeername` return
//! with the address the kernel side (the vendor's kgwttm module or the ttm
//! eBPF kit) recorded for the socket. Also a small C API (`include/ttm.h`).
//!
//! Everything that can fail or allocate happens once, in the load-time
//! constructor ([`init`]). The hooks only read what it left behind, so they
//! stay async-signal-safe: no allocation, no locks, no stdio, no panics.
//!
//! Module map, one concept each:
//! - [`interpose`]: the macro that exports a hook and finds the real symbol
//! - [`hooks`]: the three hooks and what they do after the real call
//! - [`addrlen`]: the caller's length pointer, read before the call
//! - [`rewrite`]: the pure decision "what should the caller see"
//! - [`passthrough`]: every reason a hook leaves the kernel's answer, counted
//! - [`sockaddr`]: one owned socket address with POSIX copy-out
//! - [`peer`]: the vendor's `struct ttm_peer`
//! - [`backend`]: where the real client comes from (the eBPF kit or a vendor
//!   module, both asked through getsockopt)
//! - [`config`]: the environment, read once
//! - [`trust_export`]: the trust list `ttmctl load` exports, read once
//! - [`log`]: async-signal-safe one-line logging to stderr
//! - [`capi`]: `ttm_get_peer` and friends
//! - [`errno`]: keeping the caller's errno intact
//! - [`small_file`]: load-time reads of /proc and /run files

#![cfg(target_os = "linux")]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod addrlen;
pub mod backend;
pub mod capi;
pub mod config;
pub mod errno;
pub mod hooks;
pub mod init;
pub mod interpose;
pub mod log;
pub mod passthrough;
pub mod peer;
pub mod rewrite;
pub mod small_file;
pub mod sockaddr;
pub mod trust_export;
