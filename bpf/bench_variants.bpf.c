// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Benchmark only, not shipped: other designs of ttm_parse's per-connection
 * work (read the claim of the packet that created the socket, keep it
 * for the socket's life), priced by scripts/bench.sh against ttm_parse
 * itself on the same machine in the same run (issue 13). Each does the
 * same work as ttm_parse: the same parse.h walk and normalisation, one
 * stored claim per connection, counted in bench_found so the bench can
 * check it really stored one for every connection.
 *
 *   bench_fexit_v4/_v6  fexit on tcp_v4/v6_syn_recv_sock (the function
 *                       that creates every passive child: ACK, syncookie,
 *                       Fast Open): one run per connection instead of the
 *                       sockops program's four; the header read with
 *                       bpf_probe_read_kernel; the same SK_STORAGE. A
 *                       tracing program is not tied to a cgroup, so it
 *                       filters on the child's cgroup id itself.
 *   bench_hash          sockops, but the claim in a preallocated hash
 *                       keyed by socket cookie instead of SK_STORAGE
 *                       (no allocation per connection), deleted at
 *                       TCP_CLOSE through the state callback it asks for.
 *
 * Built twice by bench.sh, -DBENCH_FEXIT and -DBENCH_HASH, so that a
 * kernel refusing tracing programs still runs the other. SYN_RECV_ARGS:
 * tcp_v4_syn_recv_sock's argument count on the running kernel (7 since
 * opt_child_init was added), from its BTF, set by bench.sh. */
#include <linux/bpf.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>

#include "ttm.h"
#include "parse.h"

#ifndef SYN_RECV_ARGS
#define SYN_RECV_ARGS 6
#endif
#define TCP_CLOSE 7

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct kernfs_node {
	__u64 id;
} __attribute__((preserve_access_index));

struct cgroup {
	struct kernfs_node *kn;
} __attribute__((preserve_access_index));

struct sock_cgroup_data {
	struct cgroup *cgroup;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_cgroup_data sk_cgrp_data;
} __attribute__((preserve_access_index));

struct sk_buff {
	unsigned char *head;
	__u16 transport_header;
} __attribute__((preserve_access_index));

struct request_sock;
struct dst_entry;

/* Set by bench.sh before attaching: formats, and the server cgroup's id. */
struct bench_cfg {
	__u32 formats;
	__u32 pad;
	__u64 cgroup_id;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_cfg);
} bench_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct ttm_peer);
} bench_peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct ttm_peer);
} bench_by_cookie SEC(".maps");

/* 0 found and stored, 1 no claim, 2 not stored */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} bench_found SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&bench_found, &idx);

	if (c)
		*c += 1;
}

static __always_inline struct bench_cfg *cfg(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&bench_cfg, &zero);
}

#ifdef BENCH_FEXIT
static __always_inline int on_child(struct sock *child, struct sk_buff *skb)
{
	/* Room past the 60 bytes a TCP header can have: parse.h's walk reads
	 * at offsets it bounds to 63 past the base header. */
	__u8 buf[128] = {};
	struct ttm_peer peer = {};
	struct bench_cfg *c = cfg();
	__u32 len = 0;

	if (!c || !child || child->sk_cgrp_data.cgroup->kn->id != c->cgroup_id)
		return 0;
	if (bpf_probe_read_kernel(buf, 60, skb->head + skb->transport_header))
		return 0;
	if (parse_options(buf, buf + sizeof(buf), c->formats, &peer, &len) != PARSE_FOUND ||
	    !normalize(&peer)) {
		count(1);
		return 0;
	}
	if (bpf_sk_storage_get(&bench_peers, child, &peer, BPF_SK_STORAGE_GET_F_CREATE))
		count(0);
	else
		count(2);
	return 0;
}

#if SYN_RECV_ARGS == 7
#define SYN_RECV_PROTO                                                           \
	struct sock *sk, struct sk_buff *skb, struct request_sock *req,          \
		struct dst_entry *dst, struct request_sock *req_unhash,          \
		_Bool *own_req, void *opt_child_init, struct sock *ret
#else
#define SYN_RECV_PROTO                                                           \
	struct sock *sk, struct sk_buff *skb, struct request_sock *req,          \
		struct dst_entry *dst, struct request_sock *req_unhash,          \
		_Bool *own_req, struct sock *ret
#endif

SEC("fexit/tcp_v4_syn_recv_sock")
int BPF_PROG(bench_fexit_v4, SYN_RECV_PROTO)
{
	return on_child(ret, skb);
}

/* An IPv4 connection to a dual-stack listener goes through both. */
SEC("fexit/tcp_v6_syn_recv_sock")
int BPF_PROG(bench_fexit_v6, SYN_RECV_PROTO)
{
	if (ret && bpf_sk_storage_get(&bench_peers, ret, 0, 0))
		return 0;
	return on_child(ret, skb);
}
#endif

#ifdef BENCH_HASH
SEC("sockops")
int bench_hash(struct bpf_sock_ops *skops)
{
	struct ttm_peer peer = {};
	struct bench_cfg *c;
	void *data, *data_end;
	__u32 len = 0;
	__u64 cookie;

	if (skops->op == BPF_SOCK_OPS_STATE_CB) {
		if (skops->args[1] == TCP_CLOSE) {
			cookie = bpf_get_socket_cookie(skops);
			bpf_map_delete_elem(&bench_by_cookie, &cookie);
		}
		return 1;
	}
	if (skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	c = cfg();
	if (!c)
		return 1;
	data = (void *)(long)skops->skb_data;
	data_end = (void *)(long)skops->skb_data_end;
	if (data + sizeof(struct tcphdr) > data_end)
		return 1;
	if (parse_options(data, data_end, c->formats, &peer, &len) != PARSE_FOUND ||
	    !normalize(&peer)) {
		count(1);
		return 1;
	}
	cookie = bpf_get_socket_cookie(skops);
	if (bpf_map_update_elem(&bench_by_cookie, &cookie, &peer, BPF_ANY)) {
		count(2);
		return 1;
	}
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags |
						 BPF_SOCK_OPS_STATE_CB_FLAG);
	count(0);
	return 1;
}
#endif
