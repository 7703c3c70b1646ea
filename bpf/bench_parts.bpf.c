// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Benchmark only, not shipped: ttm_parse cut in two, so bpf_stats can price
 * each half on the same connections (scripts/bench.sh loads them with
 * bpftool next to bench_noop.bpf.c, with ttm itself NOT loaded, so the
 * storage half is the socket's first and only SK_STORAGE, as ttm's is).
 *
 *   bench_parse_only    everything ttm_parse does up to the store: config
 *                       lookup, option walk (the same parse.h), normalize,
 *                       a per-CPU counter; no bpf_sk_storage_get
 *   bench_storage_only  just bpf_sk_storage_get(F_CREATE) of a 20-byte
 *                       struct ttm_peer on PASSIVE_ESTABLISHED, no parse
 */
#include <linux/bpf.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ttm.h"
#include "parse.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct ttm_peer);
} bench_peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ttm_config);
} bench_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} bench_counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&bench_counters, &idx);

	if (c)
		*c += 1;
}

SEC("sockops")
int bench_parse_only(struct bpf_sock_ops *skops)
{
	struct ttm_peer peer = {};
	struct ttm_config *cfg;
	__u32 zero = 0, len = 0;
	void *data, *data_end;
	__u32 formats;
	int res;

	if (skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	cfg = bpf_map_lookup_elem(&bench_config, &zero);
	if (!cfg)
		return 1;
	/* The array starts zeroed; use ttm's default formats until set. */
	formats = cfg->formats ? cfg->formats : TTM_FMT_DEFAULT;
	data = (void *)(long)skops->skb_data;
	data_end = (void *)(long)skops->skb_data_end;
	if (data + sizeof(struct tcphdr) > data_end)
		return 1;
	res = parse_options(data, data_end, formats, &peer, &len);
	if (res == PARSE_FOUND && normalize(&peer))
		count(0);
	else
		count(1);
	return 1;
}

SEC("sockops")
int bench_storage_only(struct bpf_sock_ops *skops)
{
	struct ttm_peer peer = { .af = 2, .port = 1 };
	struct bpf_sock *sk;

	if (skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	sk = skops->sk;
	if (!sk)
		return 1;
	if (bpf_sk_storage_get(&bench_peers, sk, &peer, BPF_SK_STORAGE_GET_F_CREATE))
		count(2);
	else
		count(3);
	return 1;
}
