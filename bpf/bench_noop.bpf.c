// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Benchmark baseline: a sockops program that does nothing, attached beside
 * ttm_parse so bpf_stats prices both on the same connections. Not shipped:
 * scripts/bench-bpf.sh compiles and attaches it. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("sockops")
int ttm_noop(struct bpf_sock_ops *skops)
{
	return 1;
}
