/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * ttm.h - real client addresses behind a full-NAT load balancer.
 *
 * Two ways to use it:
 *
 *  1. The vendor ABI, needing nothing but this header: after accept(),
 *
 *         struct ttm_peer peer;
 *         socklen_t len = sizeof(peer);
 *         getsockopt(fd, IPPROTO_IP, TTM_SO_GET_PEER, &peer, &len);
 *
 *     answered by the vendor's kgwttm module or by the ttm eBPF kit.
 *
 *  2. libttm: link with `pkg-config --cflags --libs ttm` (-lttm), or look
 *     the functions up with dlsym(RTLD_DEFAULT, "ttm_get_peer") when
 *     libttm.so is preloaded. Note that linking -lttm also interposes
 *     accept, accept4 and getpeername, exactly as LD_PRELOAD does
 *     (TTM_DISABLE=1 turns that off, and the API with it).
 *
 * Preloaded (or linked), libttm also rewrites what accept(), accept4() and
 * getpeername() return. An IPv6 client on an AF_INET socket is shown as a
 * struct sockaddr_in6 when the caller's buffer holds 28 bytes ("widening"),
 * except where TTM_WIDEN says otherwise: auto (the default) skips programs
 * known to drop such a connection (nginx), on widens always, off never.
 * Where it is skipped the LB address stays; ttm_get_peer() still answers.
 *
 * The API never changes a socket. Errors are -1 with errno:
 *   ENOSYS  no backend: nothing installed, TTM_BACKEND=off, TTM_DISABLE=1,
 *           or the program is not in TTM_PROGRAMS (ttm_backend() says which)
 *   ENOENT  no real client is recorded for this socket: not TCP, not
 *           accepted through the load balancer, or the balancer sent none
 *   EPERM   the socket's LB-side address is outside the trust list (TTM_TRUSTED,
 *           or the one `ttmctl load --trust` exported)
 *   EINVAL  a NULL pointer argument
 *   EBADF, ENOTSOCK, ...  the kernel's error for a bad descriptor
 */
#ifndef TTM_H
#define TTM_H

#include <linux/types.h>
#include <netinet/in.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Vendor ABI (Kingsoft kgwttm): getsockopt(fd, SOL_IP, TTM_SO_GET_PEER). */
#define TTM_BASE_CTL (64 + 1024 + 64 + 64 + 64 + 64) /* base */
#define TTM_SO_GET_PEER (TTM_BASE_CTL + 1)            /* 1345 */

/* Anonymous unions are C11 and C++, not C99; the vendor's struct has one,
 * and __extension__ keeps -pedantic quiet about it with GCC and clang. */
#if defined(__GNUC__) || defined(__clang__)
#define TTM_EXTENSION __extension__
#else
#define TTM_EXTENSION
#endif

/* The vendor's struct, byte for byte (20 bytes): af in host order, port
 * and address in network order, an IPv4 address in ip / all[0]. */
struct ttm_peer {
    __u16 af;
    __be16 port;
    TTM_EXTENSION union {
        __u32 all[4];
        __be32 ip;
        __be32 ip6[4];
        struct in_addr in;
        struct in6_addr in6;
    };
};

/* The real client of the accepted TCP socket fd, as a sockaddr_in (IPv4
 * client) or sockaddr_in6 (IPv6 client), whatever the socket's family.
 * Length rules as getpeername(): at most *addrlen bytes are written and
 * *addrlen is set to the address's true size. Returns 0, or -1 and errno. */
int ttm_get_peer(int fd, struct sockaddr *addr, socklen_t *addrlen);

/* The same record in the vendor's layout. Returns 0, or -1 and errno. */
int ttm_get_peer_raw(int fd, struct ttm_peer *out);

/* The backend in use: "bpf", "kmod", "none" (nothing installed) or "off"
 * (turned off by TTM_BACKEND, TTM_DISABLE or TTM_PROGRAMS). */
const char *ttm_backend(void);

/* The library's version, e.g. "0.1.0". */
const char *ttm_version(void);

/* Counters of what the hooks did: index 0 is "rewritten", the next ones
 * name each reason an address was left as the kernel returned it (e.g.
 * "no_room_for_ipv6": the buffer cannot hold a sockaddr_in6; "widening_off":
 * TTM_WIDEN keeps this program from being given one); every hooked call
 * counts in exactly one of these. Then "lookups": the backend questions
 * (one syscall each) the hooks asked. New counters are added at the end.
 * Iterate from 0 until it returns -1 (errno EINVAL). name and value may
 * be NULL. */
int ttm_stat(unsigned int index, const char **name, unsigned long long *value);

#ifdef __cplusplus
}
#endif

#endif /* TTM_H */
