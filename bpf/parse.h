/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The TCP option walker, in its own header so the very same code is built
 * twice: into ttm.bpf.o, and natively (tests/parser/) where it is checked
 * case by case and fuzzed under AddressSanitizer.
 */
#ifndef TTM_PARSE_H
#define TTM_PARSE_H

#include <linux/tcp.h>
#include "ttm.h"

#ifdef __bpf__
#include <bpf/bpf_endian.h>
/* clang would otherwise drop a mask it can prove redundant, and the
 * verifier needs it to bound the packet offset on every iteration. */
#define TTM_BOUND(v, mask) asm volatile("%0 &= " #mask : "+r"(v))
#define ttm_htonl(x) bpf_htonl(x)
#else
#include <arpa/inet.h>
#define TTM_BOUND(v, mask) ((v) &= (mask))
#define ttm_htonl(x) htonl(x)
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
#endif

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif
#define TCPOPT_EOL 0
#define TCPOPT_NOP 1
#define TCP_OPTIONS_MAX 40


/* Which enabled format, if any, is this (kind, len)? */
static __always_inline __u32 format_of(__u8 kind, __u8 len, __u32 enabled)
{
	__u32 f = 0;

	if (kind == 254 && len == 8)
		f = TTM_FMT_254_8;
	else if (kind == 254 && len == 20)
		f = TTM_FMT_254_20;
	else if (kind == 253 && len == 20)
		f = TTM_FMT_253_20;
	else if (kind == 253 && len == 8)
		f = TTM_FMT_253_8;
	else if (kind == 200 && len == 8)
		f = TTM_FMT_200_8;
	return f & enabled;
}

enum parse_result {
	PARSE_FOUND,
	PARSE_NONE,
	PARSE_MALFORMED,
};

/* Walk the options of the TCP header at data..data_end the way every TOA
 * module does: EOL stops, NOP is skipped, a length < 2 or one running past
 * the header abandons the list; the first option matching an enabled
 * format wins. Fills *peer from it. */
static __always_inline int parse_options(void *data, void *data_end,
					 __u32 formats, struct ttm_peer *peer,
					 __u32 *found_len)
{
	struct tcphdr *th = data;
	__u8 *opts = data + sizeof(*th);
	__u32 optlen, off = 0;
	int i;

	if ((void *)(th + 1) > data_end)
		return PARSE_NONE;
	optlen = th->doff * 4;
	if (optlen <= sizeof(*th))
		return PARSE_NONE;
	optlen -= sizeof(*th);
	if (optlen > TCP_OPTIONS_MAX)
		return PARSE_MALFORMED;
	/* The header must be all there; sockops guarantees it, check anyway. */
	if ((void *)opts + optlen > data_end)
		return PARSE_MALFORMED;

	for (i = 0; i < TCP_OPTIONS_MAX; i++) {
		__u8 *p;
		__u8 kind, len;

		if (off >= optlen)
			return PARSE_NONE;
		TTM_BOUND(off, 0x3f);
		p = opts + off;
		if ((void *)(p + 1) > data_end)
			return PARSE_MALFORMED;
		kind = p[0];
		if (kind == TCPOPT_EOL)
			return PARSE_NONE;
		if (kind == TCPOPT_NOP) {
			off++;
			continue;
		}
		if (off + 1 >= optlen || (void *)(p + 2) > data_end)
			return PARSE_MALFORMED;
		len = p[1];
		if (len < 2 || off + len > optlen)
			return PARSE_MALFORMED;
		if (format_of(kind, len, formats)) {
			if (len == 8) {
				if ((void *)(p + 8) > data_end)
					return PARSE_MALFORMED;
				peer->af = AF_INET;
				__builtin_memcpy(&peer->port, p + 2, 2);
				__builtin_memcpy(&peer->addr[0], p + 4, 4);
			} else {
				if ((void *)(p + 20) > data_end)
					return PARSE_MALFORMED;
				peer->af = AF_INET6;
				__builtin_memcpy(&peer->port, p + 2, 2);
				__builtin_memcpy(peer->addr, p + 4, 16);
			}
			*found_len = len;
			return PARSE_FOUND;
		}
		off += len;
	}
	return PARSE_NONE;
}

/* A v4-mapped claim is an IPv4 client; store it as one so AF_INET
 * sockets can be given it in-kernel. Returns 0 for a claim no real client
 * can have (unspecified address, port 0). */
static __always_inline int normalize(struct ttm_peer *peer)
{
	if (peer->port == 0)
		return 0;
	if (peer->af == AF_INET6 && peer->addr[0] == 0 && peer->addr[1] == 0 &&
	    peer->addr[2] == ttm_htonl(0xffff)) {
		peer->af = AF_INET;
		peer->addr[0] = peer->addr[3];
		peer->addr[3] = 0;
		peer->addr[2] = 0;
	}
	if (peer->af == AF_INET)
		return peer->addr[0] != 0;
	return (peer->addr[0] | peer->addr[1] | peer->addr[2] | peer->addr[3]) != 0;
}

#endif
