// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Benchmark only, not shipped: counts the live elements of an SK_STORAGE
 * map (ttm_peers), i.e. the sockets ttm keeps a client for. scripts/bench.sh
 * pins it with `bpftool iter pin ... map pinned <pin>/ttm_peers`; reading
 * the pinned file prints "elements N". With connections held open N is
 * their number; after they close it must be 0 (the storage dies with the
 * socket). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The kernel's iterator context, relocated against its BTF (CO-RE). */
struct seq_file;
struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 session_id;
	__u64 seq_num;
} __attribute__((preserve_access_index));

struct bpf_iter__bpf_sk_storage_map {
	struct bpf_iter_meta *meta;
	struct bpf_map *map;
	struct bpf_sock *sk;
	void *value;
} __attribute__((preserve_access_index));

__u64 elements;

SEC("iter/bpf_sk_storage_map")
int bench_count_storage(struct bpf_iter__bpf_sk_storage_map *ctx)
{
	struct seq_file *seq = ctx->meta->seq;

	if (ctx->meta->seq_num == 0)
		elements = 0;
	if (ctx->sk && ctx->value) {
		elements++;
		return 0;
	}
	if (!ctx->sk)
		BPF_SEQ_PRINTF(seq, "elements %llu\n", elements);
	return 0;
}
