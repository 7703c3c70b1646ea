/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Layouts shared by ttm_detect.bpf.c and `ttmctl detect`
 * (ttmctl/src/detect/watch.rs mirrors them; its tests check they agree).
 * Kept apart from ttm.h: detect is a diagnostic with no part in serving
 * connections, and its layouts may change without touching ttm's ABI.
 */
#ifndef TTM_DETECT_H
#define TTM_DETECT_H

#include <linux/types.h>

/* A TCP header holds at most 40 bytes of options. */
#define TTM_DETECT_OPTS 40

/* Which packet an event describes. */
enum ttm_detect_where {
	/* The packet that completed a handshake (sockops
	 * PASSIVE_ESTABLISHED: the third ACK, or the first data segment
	 * for a TCP_DEFER_ACCEPT listener, which drops the bare ACK). */
	TTM_DETECT_HANDSHAKE = 0,
	/* An ACK (not SYN, not RST) delivered to a listener: the third ACK
	 * of every handshake, also the one a TCP_DEFER_ACCEPT listener
	 * drops, and the first data segment of such a handshake. */
	TTM_DETECT_TO_LISTENER = 1,
};

/* One packet's TCP options and where it came from; 64 bytes. */
struct ttm_detect_event {
	__u32 src[4];     /* source address, network order; IPv4 v4-mapped */
	__u16 local_port; /* the server's port, host order */
	__u8 where;       /* enum ttm_detect_where */
	__u8 optlen;      /* option bytes the header declares (0..40) */
	__u8 copied;      /* of which present in the packet, copied below */
	__u8 pad[3];
	__u8 opts[TTM_DETECT_OPTS];
};

/* Per-CPU counters, exact even when the ring buffer overflows. */
enum ttm_detect_counter {
	TTM_DETECT_CNT_HANDSHAKES,   /* PASSIVE_ESTABLISHED callbacks */
	TTM_DETECT_CNT_TO_LISTENER,  /* ACKs delivered to listeners */
	TTM_DETECT_CNT_NO_PACKET,    /* handshake with no TCP header to read */
	TTM_DETECT_CNT_LOST,         /* events the ring buffer had no room for */
	TTM_DETECT_CNT_MAX,
};

#endif
