// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * ttm kernel side: read the real client a full-NAT load balancer hides in
 * a TCP option, keep it with the socket, and hand it back through the
 * vendor getsockopt ABIs and (optionally) getpeername()/accept().
 *
 * Four small programs, one job each:
 *   ttm_parse        sockops: parse the option of the packet that completed
 *                    the handshake, store struct ttm_peer in ttm_peers
 *   ttm_getsockopt   cgroup/getsockopt: SOL_IP/1345 and IPPROTO_IP/4096
 *                    (ttm_getsockopt_compat: the same before Linux 5.18)
 *   ttm_getpeername4 cgroup/getpeername4: IPv4 client on AF_INET sockets
 *   ttm_getpeername6 cgroup/getpeername6: any client on AF_INET6 sockets
 *
 * None of them changes a socket it has no data for, and none turns a call
 * that worked into an error.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/in6.h>
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

char LICENSE[] SEC("license") = "Dual BSD/GPL";

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

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TTM_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} ttm_counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&ttm_counters, &idx);

	if (c)
		*c += 1; /* per-CPU slot: no atomic needed */
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
	return bpf_map_lookup_elem(&ttm_trusted, &key) != NULL;
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
	int res;

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
		count(TTM_CNT_NO_OPTION);
		return 1;
	}
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
