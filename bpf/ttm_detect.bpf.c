// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * `ttmctl detect`: which TCP options reach a cgroup's servers on the
 * packets that matter to ttm, so an operator can tell which --format the
 * LB sends without tcpdump. One job: copy the option bytes and the source
 * of those packets to userspace, which decodes and tallies them.
 *
 *   ttm_detect_ops  sockops: the packet that completed a handshake
 *   ttm_detect_ack  cgroup_skb/ingress: ACKs delivered to a listener
 *                   (what ttm_deferred reads for TCP_DEFER_ACCEPT)
 *
 * Both only read. They are attached beside ttm's programs (cgroup links
 * always multi-attach), change no socket and no packet, and set no
 * callback flags, so a running `ttmctl load` is not disturbed. Their links
 * are never pinned: they go when ttmctl exits, however it exits.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ttm_detect.h"

#define AF_INET 2
#define TCP_LISTEN 10
#define TCPHDR_SYN 0x02
#define TCPHDR_RST 0x04
#define TCPHDR_ACK 0x10
#define READ_CTX(field) (*(volatile __u32 *)&(field))

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* 1 MiB: ~14,000 events, 1.4 s of 10,000 handshakes a second between two
 * of ttmctl's reads (every 100 ms). An event that finds it full is
 * counted as lost, never waited for. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} detect_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TTM_DETECT_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} detect_counts SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&detect_counts, &idx);

	if (c)
		*c += 1; /* per-CPU slot: no atomic needed */
}

/* A zeroed event (ring buffer memory is not), or NULL when full. */
static __always_inline struct ttm_detect_event *new_event(__u8 where)
{
	struct ttm_detect_event *ev;

	ev = bpf_ringbuf_reserve(&detect_events, sizeof(*ev), 0);
	if (!ev) {
		count(TTM_DETECT_CNT_LOST);
		return NULL;
	}
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->where = where;
	return ev;
}

/* Copies the options of the TCP header at th (whose fixed 20 bytes the
 * caller checked are in the packet), as many as the packet holds. Every
 * offset is a constant once unrolled, which any verifier bounds. */
static __always_inline void copy_options(struct ttm_detect_event *ev,
					 struct tcphdr *th, void *data_end)
{
	__u8 *opts = (__u8 *)(th + 1);
	__u32 optlen = th->doff * 4;
	__u8 n = 0;

	optlen = optlen > sizeof(*th) ? optlen - sizeof(*th) : 0;
	if (optlen > TTM_DETECT_OPTS)
		optlen = TTM_DETECT_OPTS;
	ev->optlen = optlen;

	for (int i = 0; i < TTM_DETECT_OPTS; i++) {
		if (i >= optlen || (void *)(opts + i + 1) > data_end)
			break;
		ev->opts[i] = opts[i];
		n = i + 1;
	}
	ev->copied = n;
}

SEC("sockops")
int ttm_detect_ops(struct bpf_sock_ops *skops)
{
	struct ttm_detect_event *ev;
	void *data, *data_end;
	__u32 ip4, ip6[4];
	struct tcphdr *th;

	if (skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	count(TTM_DETECT_CNT_HANDSHAKES);
	data = (void *)(long)skops->skb_data;
	data_end = (void *)(long)skops->skb_data_end;
	th = data;
	if ((void *)(th + 1) > data_end) {
		count(TTM_DETECT_CNT_NO_PACKET);
		return 1;
	}
	ev = new_event(TTM_DETECT_HANDSHAKE);
	if (!ev)
		return 1;
	ev->local_port = skops->local_port;
	/* Every address field is read, whatever the family: clang merges
	 * reads made in two branches into one load through a computed
	 * context pointer, which the verifier refuses. Volatile reads made
	 * unconditionally stay where they are. */
	ip4 = READ_CTX(skops->remote_ip4);
	ip6[0] = READ_CTX(skops->remote_ip6[0]);
	ip6[1] = READ_CTX(skops->remote_ip6[1]);
	ip6[2] = READ_CTX(skops->remote_ip6[2]);
	ip6[3] = READ_CTX(skops->remote_ip6[3]);
	if (skops->family == AF_INET) {
		ev->src[2] = bpf_htonl(0xffff);
		ev->src[3] = ip4;
	} else {
		__builtin_memcpy(ev->src, ip6, 16);
	}
	copy_options(ev, th, data_end);
	bpf_ringbuf_submit(ev, 0);
	return 1;
}

/* An ACK on its way to a listener: the network header is at skb->data. */
static __always_inline void record_ack(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ttm_detect_event *ev;
	__u32 src[4] = {};
	struct tcphdr *th;
	__u32 ihl;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data;

		if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_TCP)
			return;
		ihl = ip->ihl * 4;
		if (ihl < sizeof(*ip))
			return;
		src[2] = bpf_htonl(0xffff);
		src[3] = ip->saddr;
		th = data + ihl;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data;

		/* Extension headers are not followed (nor by ttm_deferred). */
		if ((void *)(ip6 + 1) > data_end || ip6->nexthdr != IPPROTO_TCP)
			return;
		__builtin_memcpy(src, &ip6->saddr, 16);
		th = (void *)(ip6 + 1);
	} else {
		return;
	}
	if ((void *)(th + 1) > data_end)
		return;
	if ((((__u8 *)th)[13] & (TCPHDR_SYN | TCPHDR_RST | TCPHDR_ACK)) !=
	    TCPHDR_ACK)
		return;
	count(TTM_DETECT_CNT_TO_LISTENER);
	ev = new_event(TTM_DETECT_TO_LISTENER);
	if (!ev)
		return;
	__builtin_memcpy(ev->src, src, 16);
	ev->local_port = bpf_ntohs(th->dest);
	copy_options(ev, th, data_end);
	bpf_ringbuf_submit(ev, 0);
}

/* Runs for every packet the cgroup's sockets receive; all but those
 * delivered to a listener leave at the first test. Never drops. */
SEC("cgroup_skb/ingress")
int ttm_detect_ack(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;

	if (!sk || sk->state != TCP_LISTEN)
		return 1;
	record_ack(skb);
	return 1;
}
