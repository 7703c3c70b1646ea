/*
 * Force-included (gcc -include) into examples/c/server.c by libttm's
 * end-to-end tests: the example's accept() then gets a struct sockaddr_in
 * sized buffer (16 bytes), as in a server written with
 *
 *     struct sockaddr_in client;
 *     socklen_t len = sizeof(client);
 *     accept(lst, (struct sockaddr *)&client, &len);
 *
 * The rest of the example (getpeername() into a sockaddr_storage, the
 * getsockopt and ttm_get_peer() calls) is unchanged.
 */
#include <netinet/in.h>
#include <sys/socket.h>

static inline int example_accept_sin(int fd, struct sockaddr *addr, socklen_t *len)
{
	if (addr && len && *len > sizeof(struct sockaddr_in))
		*len = sizeof(struct sockaddr_in);
	return accept(fd, addr, len);
}

#define accept(fd, addr, len) example_accept_sin(fd, addr, len)
