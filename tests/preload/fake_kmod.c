/*
 * A stand-in for the vendor's kernel module, for libttm's preload tests:
 * preloaded after libttm.so, its getsockopt answers SOL_IP/1345 for every
 * TCP socket with the client in FAKE_TTM_PEER ("198.51.100.7:5555" or
 * "[2001:db8::7]:5555"), like kgwttm does for a connection that came
 * through the LB. Everything else goes to libc. fake_kmod_calls counts
 * the 1345 questions, so a test can see how many lookups libttm made.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <linux/types.h>

struct ttm_peer {
	__u16 af;
	__be16 port;
	__u32 addr[4];
};

long fake_kmod_calls;

typedef int (*getsockopt_fn)(int, int, int, void *, socklen_t *);

/* Read at load time, like a module's state: nginx clears its workers'
 * environment before they accept. */
static char peer_spec[80];

__attribute__((constructor)) static void load(void)
{
	const char *s = getenv("FAKE_TTM_PEER");

	if (s)
		strncpy(peer_spec, s, sizeof(peer_spec) - 1);
}

static int parse_peer(struct ttm_peer *p)
{
	const char *s = peer_spec[0] ? peer_spec : NULL;
	char host[64];
	const char *colon;
	size_t n;

	if (!s)
		return -1;
	memset(p, 0, sizeof(*p));
	colon = strrchr(s, ':');
	if (!colon)
		return -1;
	p->port = htons((unsigned short)atoi(colon + 1));
	if (s[0] == '[') {
		n = (size_t)(colon - s) - 2;
		if (n >= sizeof(host))
			return -1;
		memcpy(host, s + 1, n);
		host[n] = 0;
		p->af = AF_INET6;
		return inet_pton(AF_INET6, host, p->addr) == 1 ? 0 : -1;
	}
	n = (size_t)(colon - s);
	if (n >= sizeof(host))
		return -1;
	memcpy(host, s, n);
	host[n] = 0;
	p->af = AF_INET;
	return inet_pton(AF_INET, host, p->addr) == 1 ? 0 : -1;
}

int getsockopt(int fd, int level, int optname, void *optval, socklen_t *optlen)
{
	static getsockopt_fn real;
	struct ttm_peer peer;
	int proto = 0;
	socklen_t plen = sizeof(proto);

	if (!real)
		real = (getsockopt_fn)dlsym(RTLD_NEXT, "getsockopt");
	if (level != SOL_IP || optname != 1345)
		return real(fd, level, optname, optval, optlen);
	__atomic_fetch_add(&fake_kmod_calls, 1, __ATOMIC_RELAXED);
	if (real(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &plen) < 0)
		return -1; /* EBADF, ENOTSOCK: the kernel's own answer */
	if (proto != IPPROTO_TCP || parse_peer(&peer) < 0) {
		errno = ENOPROTOOPT;
		return -1;
	}
	if (*optlen < sizeof(peer)) {
		errno = EINVAL;
		return -1;
	}
	memcpy(optval, &peer, sizeof(peer));
	*optlen = sizeof(peer);
	return 0;
}
