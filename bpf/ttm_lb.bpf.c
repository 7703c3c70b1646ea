// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * LB emulator: what a full-NAT load balancer does to the third packet of
 * the handshake, done from the client side for tests and for users who
 * want to check a server without an LB. Attached to a cgroup of client
 * processes; every connection they make carries the configured option
 * bytes in the ACK that completes its handshake, and nowhere else.
 */
#include <linux/bpf.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ttm.h"

#define TCPHDR_SYN 0x02

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ttm_lb_config);
} ttm_lb_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TTM_LB_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} ttm_lb_counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&ttm_lb_counters, &idx);

	if (c)
		*c += 1;
}

static __always_inline void set_write_flag(struct bpf_sock_ops *skops, int on)
{
	__u32 flags = skops->bpf_sock_ops_cb_flags;

	if (on)
		flags |= BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG;
	else
		flags &= ~BPF_SOCK_OPS_WRITE_HDR_OPT_CB_FLAG;
	bpf_sock_ops_cb_flags_set(skops, flags);
}

static __always_inline int store_chunk(struct bpf_sock_ops *skops,
				       struct ttm_lb_config *cfg, __u32 i)
{
	__u8 buf[TTM_LB_CHUNK_MAX];
	__u32 len;

	if (i >= TTM_LB_CHUNKS)
		return 0;
	__builtin_memcpy(buf, cfg->chunk[i], TTM_LB_CHUNK_MAX);
	if (i == 0 && (cfg->flags & TTM_LB_PORT_FROM_SOURCE)) {
		__u16 port = bpf_htons((__u16)skops->local_port);

		__builtin_memcpy(&buf[2], &port, 2);
	}
	/* The length is read and checked only now, next to the call: Linux
	 * 6.1's verifier wants it proven >= 1 in the register passed, and
	 * forgets the bounds of a value checked before clang spills it to
	 * the stack (it did, to free registers for the copy above). */
	asm volatile("" ::: "memory");
	len = cfg->chunk_len[i];
	if (len < 2 || len > TTM_LB_CHUNK_MAX)
		return -1;
	return bpf_store_hdr_opt(skops, buf, len, 0);
}

SEC("sockops")
int ttm_lb(struct bpf_sock_ops *skops)
{
	struct ttm_lb_config *cfg;
	__u32 zero = 0;

	cfg = bpf_map_lookup_elem(&ttm_lb_config, &zero);
	if (!cfg || cfg->nchunks == 0)
		return 1;

	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		/* SYN-ACK received: the next packet out is the third ACK. */
		set_write_flag(skops, 1);
		count(TTM_LB_CNT_ARMED);
		break;
	case BPF_SOCK_OPS_HDR_OPT_LEN_CB:
		if (skops->skb_tcp_flags & TCPHDR_SYN)
			break;
		if (bpf_reserve_hdr_opt(skops, cfg->reserve & 0x3f, 0))
			count(TTM_LB_CNT_RESERVE_FAILED);
		break;
	case BPF_SOCK_OPS_WRITE_HDR_OPT_CB:
		if (skops->skb_tcp_flags & TCPHDR_SYN)
			break;
		for (__u32 i = 0; i < TTM_LB_CHUNKS; i++) {
			if (i >= cfg->nchunks)
				break;
			if (store_chunk(skops, cfg, i)) {
				count(TTM_LB_CNT_STORE_FAILED);
				break;
			}
		}
		/* Only the packet that completes the handshake carries it. */
		set_write_flag(skops, 0);
		count(TTM_LB_CNT_WRITTEN);
		break;
	}
	return 1;
}
