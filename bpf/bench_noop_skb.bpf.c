// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Benchmark baseline: a cgroup_skb/ingress program that does nothing,
 * attached beside ttm_deferred so bpf_stats prices both on the same
 * received segments: the floor a program run once per segment costs, and
 * bpf_stats' own share of it. Not shipped: scripts/bench.sh compiles and
 * attaches it. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("cgroup_skb/ingress")
int ttm_noop_skb(struct __sk_buff *skb)
{
	return 1;
}
