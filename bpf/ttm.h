/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Types shared by the ttm eBPF programs and, by layout, by ttmctl and
 * libttm.so (ttmctl/src/abi.rs and src/peer.rs mirror them; tests check
 * that they agree).
 */
#ifndef TTM_BPF_H
#define TTM_BPF_H

#include <linux/types.h>

/* Vendor ABI (Kingsoft kgwttm): getsockopt(fd, SOL_IP, 1345, &peer, &len). */
#define TTM_BASE_CTL (64 + 1024 + 64 + 64 + 64 + 64)
#define TTM_SO_GET_PEER (TTM_BASE_CTL + 1)

/* DPVS / Huawei ELB / Tencent NAT64 ABI: getsockopt(fd, IPPROTO_IP, 4096). */
#define TOA_SO_GET_LOOKUP 4096

/* The value kept per socket is exactly the vendor's struct, so a map
 * lookup by fd returns the same 20 bytes getsockopt 1345 does. */
struct ttm_peer {
	__u16 af;   /* AF_INET or AF_INET6, host order (vendor layout) */
	__be16 port;
	__u32 addr[4]; /* IPv4 in addr[0]; IPv6 in all four; network order */
};

struct toa_nat64_peer {
	__u8 saddr[16];
	__be16 port;
	__u16 pad; /* the ABI's struct is 20 bytes on every architecture */
};

/* Wire formats, selectable at load time (struct ttm_config.formats). */
enum ttm_format {
	TTM_FMT_254_8 = 1 << 0,  /* Alibaba LVS, DPVS, Huawei: port + IPv4 */
	TTM_FMT_254_20 = 1 << 1, /* DPVS v6 / NAT64: port + IPv6 */
	TTM_FMT_253_20 = 1 << 2, /* Alibaba v6, Huawei ELB, Tencent NAT64 */
	TTM_FMT_253_8 = 1 << 3,  /* UCloud "Akamai" */
	TTM_FMT_200_8 = 1 << 4,  /* original LVS TOA, UCloud, Tencent SNAT */
};
#define TTM_FMT_DEFAULT (TTM_FMT_254_8 | TTM_FMT_254_20 | TTM_FMT_253_20)

enum ttm_config_flags {
	/* Options are honoured only from sources in the trusted map. */
	TTM_CFG_TRUST_ENFORCED = 1 << 0,
	/* getpeername4/6 programs attached (informational for status). */
	TTM_CFG_REWRITE = 1 << 1,
	/* ttm_deferred attached: the parser may take a claim it kept, and it
	 * reads the ACK of Fast Open handshakes. */
	TTM_CFG_DEFER_ACCEPT = 1 << 2,
	/* --trust any: every source on purpose (status gives no warning). */
	TTM_CFG_TRUST_ANY = 1 << 3,
	/* ttm_getsockopt_compat attached instead of ttm_getsockopt
	 * (informational for status). */
	TTM_CFG_GETSOCKOPT_COMPAT = 1 << 4,
};

/* Kernel features `ttmctl load` found missing, in ttm_config.missing. The
 * programs never read it; it tells `ttmctl status` what this kernel lacks. */
enum ttm_missing {
	TTM_MISSING_SET_RETVAL = 1 << 0,   /* bpf_set_retval (5.18) */
	TTM_MISSING_DEFER_ACCEPT = 1 << 1, /* kernel BTF / ttm_deferred refused */
	TTM_MISSING_UNPRIV_READ = 1 << 2,  /* unprivileged map reads (5.19) */
};

struct ttm_config {
	__u32 formats;
	__u32 flags;
	__u32 abi_version;
	__u32 missing; /* enum ttm_missing */
};
#define TTM_ABI_VERSION 1

/* LPM key for trusted LB prefixes; IPv4 is stored v4-mapped (::ffff:a.b.c.d
 * with 96 added to the prefix length) so one trie holds both families. */
struct ttm_trust_key {
	__u32 prefixlen;
	__u8 addr[16];
};
#define TTM_TRUST_MAX 1024

/* Two ways the kernel drops the third ACK (the one carrying the option)
 * and creates the socket later from a packet without it: a listener with
 * TCP_DEFER_ACCEPT (the first data segment creates it), and a listener
 * whose accept queue is full (the next packet of the handshake that finds
 * room creates it). The claim is read from that ACK on its way to the
 * listener and kept, keyed by the connection, until the parser takes it.
 * Addresses as seen by the server: IPv4 v4-mapped (::ffff:a.b.c.d),
 * network order. */
struct ttm_conn_key {
	__u32 local[4];
	__u32 remote[4];
	__be16 local_port;
	__be16 remote_port;
};

struct ttm_stash {
	struct ttm_peer peer;
	/* The ACK's sequence and acknowledgement numbers: the new socket's
	 * rcv_nxt and snd_una, so a claim is only ever given to the very
	 * handshake it came with. */
	__u32 seq;
	__u32 ack_seq;
};
#define TTM_STASH_MAX 16384
/* Claims of ACKs that match no request socket but reach a listener whose
 * accept queue is full: a syncookie handshake the kernel will drop, which
 * nothing can tell from a forged ACK before the kernel checks the cookie.
 * Kept apart (ttm_stash_cookie) so that forged ACKs can only ever evict
 * each other, never a claim checked against its request socket. */
#define TTM_STASH_COOKIE_MAX 4096

/* Slots of the pinned ttm_counters map: fixed, and more than enum
 * ttm_counter uses, so the map outlives versions that add counters. */
#define TTM_CNT_SLOTS 64

/* One counter per outcome; ttmctl prints them by these names. */
enum ttm_counter {
	TTM_CNT_FOUND_V4,        /* option parsed, IPv4 client stored */
	TTM_CNT_FOUND_V6,        /* option parsed, IPv6 client stored */
	TTM_CNT_NO_OPTION,       /* handshake completed without a known option */
	TTM_CNT_MALFORMED,       /* option list abandoned (bad length, truncated) */
	TTM_CNT_BAD_ADDRESS,     /* option claimed an unspecified address or port 0 */
	TTM_CNT_UNTRUSTED,       /* option from a source outside --trust */
	TTM_CNT_NO_PACKET,       /* no TCP header visible to parse */
	TTM_CNT_STORAGE_FAILED,  /* bpf_sk_storage_get could not allocate */
	TTM_CNT_GETSOCKOPT_TTM,  /* SOL_IP/1345 answered */
	TTM_CNT_GETSOCKOPT_NAT64, /* IPPROTO_IP/4096 answered */
	TTM_CNT_GETSOCKOPT_ERROR, /* one of the two refused (short buffer, ...) */
	TTM_CNT_REWRITE4,        /* getpeername4/accept rewritten */
	TTM_CNT_REWRITE6,        /* getpeername6/accept rewritten */
	/* Added later: kept at the end so the indices above stay. */
	TTM_CNT_STASHED,         /* claim of an ACK to a listener, checked against its request socket, kept in ttm_stash */
	TTM_CNT_STASH_REFUSED,   /* ACK to a listener: option malformed, bad or untrusted */
	TTM_CNT_STASH_FAILED,    /* ttm_stash could not take the claim */
	TTM_CNT_FROM_STASH,      /* handshake completed without option, claim from ttm_stash */
	TTM_CNT_STASH_STALE,     /* ttm_stash entry of an earlier handshake on the same 4-tuple, not used */
	TTM_CNT_STASH_UNMATCHED, /* ACK to a listener matching no handshake in progress: claim not kept */
	TTM_CNT_STASH_COOKIE,    /* ACK to a full listener, no request socket (syncookie): kept in ttm_stash_cookie */
	TTM_CNT_FASTOPEN,        /* Fast Open SYN created the socket without a claim: the handshake's ACK is read */
	TTM_CNT_FASTOPEN_CLAIM,  /* Fast Open: claim read from the handshake's ACK after the SYN created the socket */
	TTM_CNT_MAX,
};

/* ---- LB emulator (ttm_lb.bpf.c) ---- */
#define TTM_LB_CHUNKS 4
#define TTM_LB_CHUNK_MAX 40

struct ttm_lb_config {
	__u32 nchunks;   /* how many bpf_store_hdr_opt calls */
	__u32 reserve;   /* bytes reserved in the third ACK */
	__u32 flags;     /* TTM_LB_PORT_FROM_SOURCE */
	__u8 chunk_len[TTM_LB_CHUNKS]; /* length passed to bpf_store_hdr_opt */
	__u8 chunk[TTM_LB_CHUNKS][TTM_LB_CHUNK_MAX];
};
/* Bytes 2..3 of chunk 0 become the connection's own source port, so a test
 * can tell every connection's claim apart. */
#define TTM_LB_PORT_FROM_SOURCE (1 << 0)

enum ttm_lb_counter {
	TTM_LB_CNT_ARMED,      /* handshake completed, option scheduled */
	TTM_LB_CNT_WRITTEN,    /* option written into the third ACK */
	TTM_LB_CNT_RESERVE_FAILED,
	TTM_LB_CNT_STORE_FAILED,
	TTM_LB_CNT_MAX,
};

#endif
