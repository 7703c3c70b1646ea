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
 *   ttm_deferred     cgroup_skb/ingress: the handshake packets ttm_parse
 *                    cannot see. It keeps the claim of an ACK the kernel
 *                    will drop (a TCP_DEFER_ACCEPT listener, a full accept
 *                    queue) for ttm_parse, and reads the ACK of a Fast Open
 *                    handshake, whose socket the SYN created
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
#define TCP_SYN_RECV 3
#define TCP_CLOSE_WAIT 8
#define TCP_LISTEN 10
#define TCP_NEW_SYN_RECV 12
#define TCPHDR_SYN 0x02
#define TCPHDR_RST 0x04
#define TCPHDR_ACK 0x10

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The kernel-internal fields ttm_deferred reads: a listener's
 * TCP_DEFER_ACCEPT (SYN-ACK retransmits to wait for data, 0 when off) and
 * accept queue fill; a request socket's initial sequence numbers; a Fast
 * Open child's sequence state. Only the paths are declared; the loader
 * relocates the offsets from the running kernel's BTF (CO-RE), so
 * ttm_deferred needs /sys/kernel/btf/vmlinux. */
struct sock {
	__u32 sk_ack_backlog;
	__u32 sk_max_ack_backlog;
} __attribute__((preserve_access_index));

struct inet_sock {
	struct sock sk;
} __attribute__((preserve_access_index));

struct request_sock_queue {
	__u8 rskq_defer_accept;
} __attribute__((preserve_access_index));

struct inet_connection_sock {
	struct inet_sock icsk_inet;
	struct request_sock_queue icsk_accept_queue;
} __attribute__((preserve_access_index));

struct request_sock;

struct tcp_sock {
	struct inet_connection_sock inet_conn;
	__u32 rcv_nxt;
	__u32 snd_una;
	__u32 snd_nxt;
	struct request_sock *fastopen_rsk;
} __attribute__((preserve_access_index));

struct tcp_request_sock {
	__u32 rcv_isn;
	__u32 snt_isn;
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

/* Claims of ACKs the kernel drops (a TCP_DEFER_ACCEPT listener, a full
 * accept queue), each checked against the request socket of its
 * handshake, until the connection they complete is created. Entries never
 * taken (a handshake reset before any data, an ACK that found room after
 * all) are reclaimed by the LRU. Pinned by name like ttm_peers, so a
 * handshake in flight across a reload is still served. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TTM_STASH_MAX);
	__type(key, struct ttm_conn_key);
	__type(value, struct ttm_stash);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ttm_stash SEC(".maps");

/* The same for syncookie handshakes (no request socket to check against;
 * see TTM_STASH_COOKIE_MAX): apart, so that forged ACKs cannot evict the
 * checked claims above. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TTM_STASH_COOKIE_MAX);
	__type(key, struct ttm_conn_key);
	__type(value, struct ttm_stash);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ttm_stash_cookie SEC(".maps");

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

/* Takes the entry of `key` out of `stash`: 1 if it is this socket's
 * (the ACK it came with is the one this socket was created for: same
 * sequence and acknowledgement numbers) and copied to *peer, 0 if it is
 * an earlier handshake's, -1 if there is none. */
static __always_inline int take_from(void *stash, struct ttm_conn_key *key,
				     struct bpf_sock_ops *skops,
				     struct ttm_peer *peer)
{
	struct ttm_stash *st;
	int match;

	st = bpf_map_lookup_elem(stash, key);
	if (!st)
		return -1;
	match = st->seq == skops->rcv_nxt && st->ack_seq == skops->snd_una;
	if (match)
		*peer = st->peer;
	bpf_map_delete_elem(stash, key);
	if (!match)
		count(TTM_CNT_STASH_STALE);
	return match;
}

/* The claim ttm_deferred kept for this socket's handshake, if any. */
static __always_inline int take_stash(struct bpf_sock_ops *skops,
				      struct ttm_peer *peer)
{
	struct ttm_conn_key key = {};
	int r;

	conn_key(skops, &key);
	r = take_from(&ttm_stash, &key, skops, peer);
	if (r < 0)
		r = take_from(&ttm_stash_cookie, &key, skops, peer);
	return r > 0;
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
	if (res == PARSE_NONE && (((__u8 *)data)[13] & TCPHDR_SYN)) {
		/* Fast Open: the SYN created the socket, the ACK that carries
		 * the option comes later, and ttm_deferred reads it. */
		count(cfg->flags & TTM_CFG_DEFER_ACCEPT ? TTM_CNT_FASTOPEN
							: TTM_CNT_NO_OPTION);
		return 1;
	}
	if (res == PARSE_NONE) {
		/* The ACK with the option was dropped (TCP_DEFER_ACCEPT, a
		 * full accept queue) and this is a later packet. */
		if (!(cfg->flags & TTM_CFG_DEFER_ACCEPT) ||
		    !take_stash(skops, &peer)) {
			count(TTM_CNT_NO_OPTION);
			return 1;
		}
		from_stash = 1;
	}
	/* If this packet has an option while ttm_deferred kept one for the
	 * handshake (an LB writing it into data segments too, a listener
	 * that stopped deferring, an ACK that found room in the accept queue
	 * after all), the entry is left to the LRU: deleting it
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

/* A packet of a handshake as ttm_deferred reads it: the connection as the
 * server sees it, and in st the claim of its options with its sequence and
 * acknowledgement numbers. */
struct hs_packet {
	struct ttm_conn_key key;
	struct ttm_stash st;
	__u32 v6; /* came over IPv6 */
};

enum claim_result {
	CLAIM_NONE,        /* not an ACK (a SYN, a reset, not TCP over IP) */
	CLAIM_NO_OPTION,   /* an ACK without a known option */
	CLAIM_FOUND,       /* an ACK with a usable claim, from a trusted source */
	CLAIM_MALFORMED,
	CLAIM_BAD_ADDRESS,
	CLAIM_UNTRUSTED,
};

/* Reads the IP and TCP headers of skb into *p and parses and checks its
 * options as ttm_parse would. Direct packet access starts at the network
 * header. */
static __attribute__((noinline)) int read_handshake(struct __sk_buff *skb,
						    struct hs_packet *p)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ttm_config *cfg;
	struct tcphdr *th;
	__u32 zero = 0, len = 0, ihl;
	int res;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data;

		if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_TCP)
			return CLAIM_NONE;
		ihl = ip->ihl * 4;
		if (ihl < sizeof(*ip))
			return CLAIM_NONE;
		p->key.local[2] = bpf_htonl(0xffff);
		p->key.local[3] = ip->daddr;
		p->key.remote[2] = bpf_htonl(0xffff);
		p->key.remote[3] = ip->saddr;
		th = data + ihl;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data;

		/* Extension headers are not followed. */
		if ((void *)(ip6 + 1) > data_end || ip6->nexthdr != IPPROTO_TCP)
			return CLAIM_NONE;
		__builtin_memcpy(p->key.local, &ip6->daddr, 16);
		__builtin_memcpy(p->key.remote, &ip6->saddr, 16);
		p->v6 = 1;
		th = (void *)(ip6 + 1);
	} else {
		return CLAIM_NONE;
	}
	if ((void *)(th + 1) > data_end)
		return CLAIM_NONE;
	/* The ACK that completes a handshake: not a SYN, not a reset. */
	if ((((__u8 *)th)[13] & (TCPHDR_SYN | TCPHDR_RST | TCPHDR_ACK)) !=
	    TCPHDR_ACK)
		return CLAIM_NONE;
	p->key.local_port = th->dest;
	p->key.remote_port = th->source;
	p->st.seq = bpf_ntohl(th->seq);
	p->st.ack_seq = bpf_ntohl(th->ack_seq);

	cfg = bpf_map_lookup_elem(&ttm_config, &zero);
	if (!cfg)
		return CLAIM_NONE;
	res = parse_options(th, data_end, cfg->formats, &p->st.peer, &len);
	if (res == PARSE_NONE)
		return CLAIM_NO_OPTION;
	if (res == PARSE_MALFORMED)
		return CLAIM_MALFORMED;
	if (!normalize(&p->st.peer))
		return CLAIM_BAD_ADDRESS;
	if ((cfg->flags & TTM_CFG_TRUST_ENFORCED) && !trusted_src(p->key.remote))
		return CLAIM_UNTRUSTED;
	return CLAIM_FOUND;
}

enum handshake_kind {
	HS_REQUEST,  /* a request socket whose SYN and SYN-ACK this ACK answers */
	HS_LISTENER, /* no request socket: a syncookie ACK, or forged */
	HS_OTHER,    /* anything else: a request socket of another SYN, ... */
};

/* Which handshake in progress, if any, the ACK *p belongs to: the socket
 * lookup the kernel is about to make, and for a request socket the check
 * tcp_check_req() makes (the ACK answers its SYN-ACK, in sequence). */
static __always_inline int handshake_of(struct __sk_buff *skb,
					const struct hs_packet *p)
{
	struct bpf_sock_tuple t = {};
	struct tcp_request_sock *req;
	struct bpf_sock *s;
	int kind = HS_OTHER;

	if (p->v6) {
		__builtin_memcpy(t.ipv6.saddr, p->key.remote, 16);
		__builtin_memcpy(t.ipv6.daddr, p->key.local, 16);
		t.ipv6.sport = p->key.remote_port;
		t.ipv6.dport = p->key.local_port;
		s = bpf_skc_lookup_tcp(skb, &t, sizeof(t.ipv6),
				       BPF_F_CURRENT_NETNS, 0);
	} else {
		t.ipv4.saddr = p->key.remote[3];
		t.ipv4.daddr = p->key.local[3];
		t.ipv4.sport = p->key.remote_port;
		t.ipv4.dport = p->key.local_port;
		s = bpf_skc_lookup_tcp(skb, &t, sizeof(t.ipv4),
				       BPF_F_CURRENT_NETNS, 0);
	}
	if (!s)
		return HS_OTHER;
	if (s->state == TCP_LISTEN) {
		kind = HS_LISTENER;
	} else if (s->state == TCP_NEW_SYN_RECV) {
		req = bpf_skc_to_tcp_request_sock(s);
		if (req && req->rcv_isn + 1 == p->st.seq &&
		    req->snt_isn + 1 == p->st.ack_seq)
			kind = HS_REQUEST;
	}
	bpf_sk_release(s);
	return kind;
}

/* Why a listener's ACKs are kept (ttm_deferred). */
#define KEEP_DEFER 1 /* TCP_DEFER_ACCEPT: the bare ACK is dropped */
#define KEEP_FULL 2  /* the accept queue is full, or nearly (see below) */
#define KEEP_FULL_MARGIN 4

/* An ACK on its way to a listener that will drop it: keep a good claim
 * for ttm_parse, if the ACK belongs to a handshake in progress (forged
 * ACKs must not evict real claims from the LRU). */
static __attribute__((noinline)) int stash_claim(struct __sk_buff *skb,
						 __u32 why)
{
	struct hs_packet p = {};
	int res;

	res = read_handshake(skb, &p);
	if (res == CLAIM_NONE || res == CLAIM_NO_OPTION)
		return 0; /* a direct client, or a data segment after the ACK */
	if (res != CLAIM_FOUND) {
		count(TTM_CNT_STASH_REFUSED);
		return 0;
	}
	switch (handshake_of(skb, &p)) {
	case HS_REQUEST:
		if (bpf_map_update_elem(&ttm_stash, &p.key, &p.st, BPF_ANY))
			count(TTM_CNT_STASH_FAILED);
		else
			count(TTM_CNT_STASHED);
		return 0;
	case HS_LISTENER:
		/* A syncookie ACK the full queue will drop, or a forged one.
		 * Otherwise (TCP_DEFER_ACCEPT does not apply to cookies) the
		 * kernel creates the socket from this ACK, and ttm_parse
		 * reads it there. */
		if (!(why & KEEP_FULL))
			break;
		if (bpf_map_update_elem(&ttm_stash_cookie, &p.key, &p.st, BPF_ANY))
			count(TTM_CNT_STASH_FAILED);
		else
			count(TTM_CNT_STASH_COOKIE);
		return 0;
	}
	count(TTM_CNT_STASH_UNMATCHED);
	return 0;
}

/* A packet reaching a Fast Open child, which its SYN created before the
 * ACK carrying the option arrived: store the claim of the packet that
 * completes the handshake, unless the SYN had one. The child is
 * established, and no longer seen here, from that packet on. */
static __attribute__((noinline)) int fastopen_claim(struct __sk_buff *skb,
						    struct bpf_sock *sk)
{
	struct hs_packet p = {};
	struct ttm_peer *stored;
	struct tcp_sock *tp;
	struct bpf_sock *fsk;
	int res;

	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp || !tp->fastopen_rsk)
		return 0;
	fsk = bpf_sk_fullsock(sk);
	if (!fsk || bpf_sk_storage_get(&ttm_peers, fsk, 0, 0))
		return 0;
	res = read_handshake(skb, &p);
	if (res == CLAIM_NONE)
		return 0;
	/* Only the packet TCP accepts as the end of the handshake: in
	 * sequence, acknowledging the SYN-ACK (the child's snd_una starts
	 * past it) and nothing never sent. */
	if (p.st.seq != tp->rcv_nxt ||
	    p.st.ack_seq - tp->snd_una > tp->snd_nxt - tp->snd_una)
		return 0;
	switch (res) {
	case CLAIM_NO_OPTION:
		count(TTM_CNT_NO_OPTION);
		return 0;
	case CLAIM_MALFORMED:
		count(TTM_CNT_MALFORMED);
		return 0;
	case CLAIM_BAD_ADDRESS:
		count(TTM_CNT_BAD_ADDRESS);
		return 0;
	case CLAIM_UNTRUSTED:
		count(TTM_CNT_UNTRUSTED);
		return 0;
	}
	stored = bpf_sk_storage_get(&ttm_peers, fsk, &p.st.peer,
				    BPF_SK_STORAGE_GET_F_CREATE);
	if (!stored) {
		count(TTM_CNT_STORAGE_FAILED);
		return 0;
	}
	*stored = p.st.peer;
	count(p.st.peer.af == AF_INET ? TTM_CNT_FOUND_V4 : TTM_CNT_FOUND_V6);
	count(TTM_CNT_FASTOPEN_CLAIM);
	return 0;
}

/* Runs for every packet delivered to a socket of the cgroup. Established
 * traffic leaves at the state test: only listeners and Fast Open children
 * (full sockets still in SYN_RECV) go further, and of the listeners only
 * those that will drop a bare ACK: with TCP_DEFER_ACCEPT, or with an
 * accept queue full or nearly so (a listener with room creates the
 * connection from the ACK itself, and ttm_parse reads the option there).
 * Never drops anything. */
SEC("cgroup_skb/ingress")
int ttm_deferred(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	struct tcp_sock *tp;
	__u32 state, backlog, max, why = 0;

	if (!sk)
		return 1;
	state = sk->state;
	if (state == TCP_SYN_RECV) {
		fastopen_claim(skb, sk);
		return 1;
	}
	if (state != TCP_LISTEN)
		return 1;
	tp = bpf_skc_to_tcp_sock(sk); /* NULL for a listener of another protocol */
	if (!tp)
		return 1;
	if (tp->inet_conn.icsk_accept_queue.rskq_defer_accept)
		why |= KEEP_DEFER;
	/* The kernel drops the ACK when sk_ack_backlog > sk_max_ack_backlog
	 * (sk_acceptq_is_full), a few microseconds after this test. Other
	 * CPUs add to the queue meanwhile, several connections if this
	 * (virtual) CPU stalls there: keeping claims only from one place
	 * before full lost one in CI, and in one run of 35 of the test
	 * suite on a busy 2-vCPU host. So claims are kept from when the
	 * queue is within an eighth of its size, and four places, of full.
	 * A server that keeps up with its accept queue never comes near
	 * that; one with a tiny backlog always is. */
	backlog = tp->inet_conn.icsk_inet.sk.sk_ack_backlog;
	max = tp->inet_conn.icsk_inet.sk.sk_max_ack_backlog;
	if (backlog + max / 8 + KEEP_FULL_MARGIN > max)
		why |= KEEP_FULL;
	if (why)
		stash_claim(skb, why);
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
