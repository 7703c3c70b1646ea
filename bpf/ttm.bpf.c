// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * ttm kernel side: read the real client a full-NAT load balancer hides in
 * a TCP option, keep it with the socket, and hand it back through the
 * vendor getsockopt ABIs and (optionally) getpeername()/accept().
 *
 * Small programs, one job each:
 *   ttm_parse        sockops: parse the option of the packet that completed
 *                    the handshake, store struct ttm_peer in ttm_peers (or,
 *                    when that packet has none, the claim ttm_deferred kept)
 *   ttm_deferred     cgroup_skb/ingress: keep the claim of an ACK addressed
 *                    to a listener, for servers using TCP_DEFER_ACCEPT
 *   ttm_getsockopt   cgroup/getsockopt: SOL_IP/1345 and IPPROTO_IP/4096
 *                    (ttm_getsockopt_compat: the same before Linux 5.18)
 *   ttm_getpeername4 cgroup/getpeername4: IPv4 client on AF_INET sockets
 *   ttm_getpeername6 cgroup/getpeername6: any client on AF_INET6 sockets
 *
 * None of them changes a socket it has no data for, and none turns a call
 * that worked into an error.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/socket.h>
#include <linux/tcp.h>
#include <linux/errno.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ttm.h"
#include "parse.h"

#ifndef SOL_IP
#define SOL_IP 0
#endif
#define TCP_ESTABLISHED 1
#define TCP_CLOSE_WAIT 8
#define TCP_LISTEN 10
#define TCPHDR_SYN 0x02
#define TCPHDR_RST 0x04
#define TCPHDR_ACK 0x10

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The one kernel-internal field ttm reads: whether a listener has
 * TCP_DEFER_ACCEPT (the number of SYN-ACK retransmits to wait for data,
 * 0 when off). Only the path is declared; the loader relocates the offset
 * from the running kernel's BTF (CO-RE), so ttm_deferred needs
 * /sys/kernel/btf/vmlinux. */
struct request_sock_queue {
	__u8 rskq_defer_accept;
} __attribute__((preserve_access_index));

struct inet_connection_sock {
	struct request_sock_queue icsk_accept_queue;
} __attribute__((preserve_access_index));

struct tcp_sock {
	struct inet_connection_sock inet_conn;
} __attribute__((preserve_access_index));

/* Per-socket real client. Freed by the kernel with the socket. Pinned by
 * name so a reload keeps the answers for connections already open. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct ttm_peer);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ttm_peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ttm_config);
} ttm_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, TTM_TRUST_MAX);
	__type(key, struct ttm_trust_key);
	__type(value, __u8);
} ttm_trusted SEC(".maps");

/* Claims of ACKs that reached a TCP_DEFER_ACCEPT listener, until the
 * connection they complete is created. Entries never taken (a handshake
 * reset before any data) are reclaimed by the LRU. Pinned by name like
 * ttm_peers, so a handshake in flight across a reload is still served. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TTM_STASH_MAX);
	__type(key, struct ttm_conn_key);
	__type(value, struct ttm_stash);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ttm_stash SEC(".maps");

/* Pinned by name like ttm_peers, so a reload or an upgrade keeps the
 * counts. Sized TTM_CNT_SLOTS, not TTM_CNT_MAX: a version that appends
 * counters still finds the pinned map the right shape and reuses it. */
_Static_assert(TTM_CNT_MAX <= TTM_CNT_SLOTS, "raise TTM_CNT_SLOTS (and the map is replaced once)");
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TTM_CNT_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ttm_counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&ttm_counters, &idx);

	if (c)
		*c += 1; /* per-CPU slot: no atomic needed */
}

/* Value 1: trusted. Value 0 keeps the IPv4 (v4-mapped) space out of an
 * IPv6 prefix that covers it, e.g. --trust ::/0 (ttm_cidr::trie_entries). */
static __always_inline int trusted_key(struct ttm_trust_key *key)
{
	__u8 *v = bpf_map_lookup_elem(&ttm_trusted, key);

	return v && *v == 1;
}

/* Is the packet's source (the LB's address) in the trusted prefixes? */
static __always_inline int trusted(struct bpf_sock_ops *skops)
{
	struct ttm_trust_key key = {};

	key.prefixlen = 128;
	if (skops->family == AF_INET) {
		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__u32 a = skops->remote_ip4;
		__builtin_memcpy(&key.addr[12], &a, 4);
	} else {
		__u32 a[4] = { skops->remote_ip6[0], skops->remote_ip6[1],
			       skops->remote_ip6[2], skops->remote_ip6[3] };
		__builtin_memcpy(key.addr, a, 16);
	}
	return trusted_key(&key);
}

/* One 4-byte load of the sockops context at a constant offset. Plain C
 * reads of the fields below are merged by clang, across the two branches
 * of conn_key(), into one load through a computed context pointer, which
 * the verifier refuses; an asm load stays exactly where it is written. */
#define SKOPS_U32(skops, field)                                              \
	({                                                                   \
		__u32 __v;                                                   \
		asm volatile("%0 = *(u32 *)(%1 + %2)"                        \
			     : "=r"(__v)                                     \
			     : "r"(skops),                                   \
			       "i"(__builtin_offsetof(struct bpf_sock_ops, field))); \
		__v;                                                         \
	})

/* The new socket's 4-tuple as ttm_deferred keyed its claim. A dual-stack
 * socket's IPv4 peer is v4-mapped already; an AF_INET one is mapped here. */
static __always_inline void conn_key(struct bpf_sock_ops *skops,
				     struct ttm_conn_key *key)
{
	if (skops->family == AF_INET) {
		key->local[2] = bpf_htonl(0xffff);
		key->local[3] = SKOPS_U32(skops, local_ip4);
		key->remote[2] = bpf_htonl(0xffff);
		key->remote[3] = SKOPS_U32(skops, remote_ip4);
	} else {
		key->local[0] = SKOPS_U32(skops, local_ip6[0]);
		key->local[1] = SKOPS_U32(skops, local_ip6[1]);
		key->local[2] = SKOPS_U32(skops, local_ip6[2]);
		key->local[3] = SKOPS_U32(skops, local_ip6[3]);
		key->remote[0] = SKOPS_U32(skops, remote_ip6[0]);
		key->remote[1] = SKOPS_U32(skops, remote_ip6[1]);
		key->remote[2] = SKOPS_U32(skops, remote_ip6[2]);
		key->remote[3] = SKOPS_U32(skops, remote_ip6[3]);
	}
	/* local_port is in host order; remote_port holds the network-order
	 * port in its upper half on little-endian (bpf_ntohl undoes both). */
	key->local_port = bpf_htons((__u16)skops->local_port);
	key->remote_port = bpf_htons((__u16)bpf_ntohl(skops->remote_port));
}

/* The claim ttm_deferred kept for this socket's handshake, if any: taken
 * out of the stash, and used only if the ACK it came with is the one this
 * socket was created for (same sequence and acknowledgement numbers). */
static __always_inline int take_stash(struct bpf_sock_ops *skops,
				      struct ttm_peer *peer)
{
	struct ttm_conn_key key = {};
	struct ttm_stash *st;
	int match;

	conn_key(skops, &key);
	st = bpf_map_lookup_elem(&ttm_stash, &key);
	if (!st)
		return 0;
	match = st->seq == skops->rcv_nxt && st->ack_seq == skops->snd_una;
	if (match)
		*peer = st->peer;
	bpf_map_delete_elem(&ttm_stash, &key);
	if (!match)
		count(TTM_CNT_STASH_STALE);
	return match;
}

SEC("sockops")
int ttm_parse(struct bpf_sock_ops *skops)
{
	struct ttm_peer peer = {};
	struct ttm_config *cfg;
	struct ttm_peer *stored;
	struct bpf_sock *sk;
	__u32 zero = 0, len = 0;
	void *data, *data_end;
	int res, from_stash = 0;

	if (skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;

	cfg = bpf_map_lookup_elem(&ttm_config, &zero);
	if (!cfg)
		return 1;
	data = (void *)(long)skops->skb_data;
	data_end = (void *)(long)skops->skb_data_end;
	if (data + sizeof(struct tcphdr) > data_end) {
		count(TTM_CNT_NO_PACKET);
		return 1;
	}

	res = parse_options(data, data_end, cfg->formats, &peer, &len);
	if (res == PARSE_NONE) {
		/* TCP_DEFER_ACCEPT: the ACK with the option was dropped and
		 * this is the first data segment. */
		if (!(cfg->flags & TTM_CFG_DEFER_ACCEPT) ||
		    !take_stash(skops, &peer)) {
			count(TTM_CNT_NO_OPTION);
			return 1;
		}
		from_stash = 1;
	}
	/* If this packet has an option while ttm_deferred kept one for the
	 * handshake (an LB writing it into data segments too, or a listener
	 * that stopped deferring), the entry is left to the LRU: deleting it
	 * costs a hash operation on every connection, and no other handshake
	 * can take it (take_stash() checks the sequence numbers). */
	if (res == PARSE_MALFORMED) {
		count(TTM_CNT_MALFORMED);
		return 1;
	}
	if (!normalize(&peer)) {
		count(TTM_CNT_BAD_ADDRESS);
		return 1;
	}
	if ((cfg->flags & TTM_CFG_TRUST_ENFORCED) && !trusted(skops)) {
		count(TTM_CNT_UNTRUSTED);
		return 1;
	}

	sk = skops->sk;
	if (!sk) {
		count(TTM_CNT_STORAGE_FAILED);
		return 1;
	}
	stored = bpf_sk_storage_get(&ttm_peers, sk, &peer,
				    BPF_SK_STORAGE_GET_F_CREATE);
	if (!stored) {
		count(TTM_CNT_STORAGE_FAILED);
		return 1;
	}
	/* Created from &peer already; an existing entry (a reload's overlap
	 * runs two parsers) is refreshed with the same answer. */
	*stored = peer;
	count(peer.af == AF_INET ? TTM_CNT_FOUND_V4 : TTM_CNT_FOUND_V6);
	if (from_stash)
		count(TTM_CNT_FROM_STASH);
	return 1;
}

/* The trust check of ttm_parse, on the source address of a packet
 * (IPv4 v4-mapped, as in struct ttm_conn_key). */
static __always_inline int trusted_src(const __u32 src[4])
{
	struct ttm_trust_key key = { .prefixlen = 128 };

	__builtin_memcpy(key.addr, src, 16);
	return trusted_key(&key);
}

/* An ACK on its way to a TCP_DEFER_ACCEPT listener, which will drop it if
 * it carries no data: parse and check it as ttm_parse would, keep a good
 * claim in ttm_stash. */
static __attribute__((noinline)) int stash_claim(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ttm_conn_key key = {};
	struct ttm_stash st = {};
	struct ttm_config *cfg;
	struct tcphdr *th;
	__u32 zero = 0, len = 0, ihl;
	int res;

	/* Direct packet access starts at the network header. */
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data;

		if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_TCP)
			return 0;
		ihl = ip->ihl * 4;
		if (ihl < sizeof(*ip))
			return 0;
		key.local[2] = bpf_htonl(0xffff);
		key.local[3] = ip->daddr;
		key.remote[2] = bpf_htonl(0xffff);
		key.remote[3] = ip->saddr;
		th = data + ihl;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data;

		/* Extension headers are not followed. */
		if ((void *)(ip6 + 1) > data_end || ip6->nexthdr != IPPROTO_TCP)
			return 0;
		__builtin_memcpy(key.local, &ip6->daddr, 16);
		__builtin_memcpy(key.remote, &ip6->saddr, 16);
		th = (void *)(ip6 + 1);
	} else {
		return 0;
	}
	if ((void *)(th + 1) > data_end)
		return 0;
	/* The ACK that completes a handshake: not a SYN, not a reset. */
	if ((((__u8 *)th)[13] & (TCPHDR_SYN | TCPHDR_RST | TCPHDR_ACK)) !=
	    TCPHDR_ACK)
		return 0;

	cfg = bpf_map_lookup_elem(&ttm_config, &zero);
	if (!cfg)
		return 0;
	res = parse_options(th, data_end, cfg->formats, &st.peer, &len);
	if (res == PARSE_NONE)
		return 0; /* a direct client, or a data segment after the ACK */
	if (res == PARSE_MALFORMED || !normalize(&st.peer) ||
	    ((cfg->flags & TTM_CFG_TRUST_ENFORCED) && !trusted_src(key.remote))) {
		count(TTM_CNT_STASH_REFUSED);
		return 0;
	}
	key.local_port = th->dest;
	key.remote_port = th->source;
	st.seq = bpf_ntohl(th->seq);
	st.ack_seq = bpf_ntohl(th->ack_seq);
	if (bpf_map_update_elem(&ttm_stash, &key, &st, BPF_ANY))
		count(TTM_CNT_STASH_FAILED);
	else
		count(TTM_CNT_STASHED);
	return 0;
}

/* Runs for every packet delivered to a socket of the cgroup: everything
 * but packets addressed to a listener leaves at the first test, and
 * everything but those of a TCP_DEFER_ACCEPT listener at the second (a
 * listener without it creates the connection from the ACK itself, and
 * ttm_parse reads the option there). Never drops anything. */
SEC("cgroup_skb/ingress")
int ttm_deferred(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	struct tcp_sock *tp;

	if (!sk || sk->state != TCP_LISTEN)
		return 1;
	tp = bpf_skc_to_tcp_sock(sk); /* NULL for a listener of another protocol */
	if (!tp || !tp->inet_conn.icsk_accept_queue.rskq_defer_accept)
		return 1;
	stash_claim(skb);
	return 1;
}

/* Refusing needs bpf_set_retval (Linux 5.18). Before that the program is
 * built without it and leaves the kernel's ENOPROTOOPT instead. */
static __always_inline int refuse(int err, const int can_refuse)
{
	count(TTM_CNT_GETSOCKOPT_ERROR);
	if (can_refuse)
		bpf_set_retval(err);
	return 1;
}

static __always_inline int answer_getsockopt(struct bpf_sockopt *ctx,
					     const int can_refuse)
{
	struct bpf_sock *sk = ctx->sk;
	void *optval = ctx->optval;
	void *optval_end = ctx->optval_end;
	struct ttm_peer *peer;
	int optname = ctx->optname;

	if (ctx->level != SOL_IP)
		return 1;
	if (optname != TTM_SO_GET_PEER && optname != TOA_SO_GET_LOOKUP)
		return 1;
	/* A vendor module answered already: its word stands. */
	if (ctx->retval == 0)
		return 1;
	if (!sk || sk->protocol != IPPROTO_TCP)
		return 1;
	peer = bpf_sk_storage_get(&ttm_peers, sk, 0, 0);
	if (!peer)
		return 1; /* nothing to say: the kernel's ENOPROTOOPT stands */

	if (optname == TTM_SO_GET_PEER) {
		if (optval + sizeof(struct ttm_peer) > optval_end)
			return refuse(-EINVAL, can_refuse);
		__builtin_memcpy(optval, peer, sizeof(struct ttm_peer));
		*(volatile __s32 *)&ctx->optlen = sizeof(struct ttm_peer);
		*(volatile __s32 *)&ctx->retval = 0;
		count(TTM_CNT_GETSOCKOPT_TTM);
		return 1;
	}

	/* DPVS NAT64 ABI: IPv6 clients only, EINVAL when there is nothing to
	 * return or the buffer is short, ENOTCONN when not connected. */
	if (sk->state != TCP_ESTABLISHED && sk->state != TCP_CLOSE_WAIT)
		return refuse(-ENOTCONN, can_refuse);
	if (peer->af != AF_INET6)
		return refuse(-EINVAL, can_refuse);
	if (optval + sizeof(struct toa_nat64_peer) > optval_end)
		return refuse(-EINVAL, can_refuse);
	{
		struct toa_nat64_peer out = {};

		__builtin_memcpy(out.saddr, peer->addr, 16);
		out.port = peer->port;
		__builtin_memcpy(optval, &out, sizeof(out));
	}
	*(volatile __s32 *)&ctx->optlen = sizeof(struct toa_nat64_peer);
	*(volatile __s32 *)&ctx->retval = 0;
	count(TTM_CNT_GETSOCKOPT_NAT64);
	return 1;
}

SEC("cgroup/getsockopt")
int ttm_getsockopt(struct bpf_sockopt *ctx)
{
	return answer_getsockopt(ctx, 1);
}

/* For kernels 5.10..5.17, chosen by ttmctl. */
SEC("cgroup/getsockopt")
int ttm_getsockopt_compat(struct bpf_sockopt *ctx)
{
	return answer_getsockopt(ctx, 0);
}

static __always_inline struct ttm_peer *peer_of(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;

	if (!sk || sk->protocol != IPPROTO_TCP)
		return NULL;
	return bpf_sk_storage_get(&ttm_peers, sk, 0, 0);
}

SEC("cgroup/getpeername4")
int ttm_getpeername4(struct bpf_sock_addr *ctx)
{
	struct ttm_peer *peer = peer_of(ctx);

	/* An AF_INET sockaddr cannot hold an IPv6 client: leave the LB's
	 * address; libttm.so widens it in userspace where the caller can. */
	if (!peer || peer->af != AF_INET)
		return 1;
	ctx->user_ip4 = peer->addr[0];
	ctx->user_port = peer->port;
	count(TTM_CNT_REWRITE4);
	return 1;
}

SEC("cgroup/getpeername6")
int ttm_getpeername6(struct bpf_sock_addr *ctx)
{
	struct ttm_peer *peer = peer_of(ctx);

	if (!peer)
		return 1;
	if (peer->af == AF_INET) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = peer->addr[0];
	} else {
		ctx->user_ip6[0] = peer->addr[0];
		ctx->user_ip6[1] = peer->addr[1];
		ctx->user_ip6[2] = peer->addr[2];
		ctx->user_ip6[3] = peer->addr[3];
	}
	ctx->user_port = peer->port;
	count(TTM_CNT_REWRITE6);
	return 1;
}
