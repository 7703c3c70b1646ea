/*
 * Example TCP server behind a full-NAT load balancer: prints, for each
 * connection, the client as accept() and getpeername() show it, the
 * vendor getsockopt(SOL_IP, TTM_SO_GET_PEER) answer, and ttm_get_peer()
 * when libttm is there (preloaded or linked).
 *
 * Build (see README.md beside this file):
 *   cc -Wall -O2 -I../../include -o server server.c -ldl
 * Run under the shim:
 *   LD_PRELOAD=/path/to/libttm.so ./server -n 1 8080
 *
 * usage: server [-4] [-b BIND_ADDRESS] [-n CONNECTIONS] PORT
 *   BIND_ADDRESS defaults to :: (IPv4 and IPv6); PORT 0 picks one.
 *   -4: accept() into a struct sockaddr_in (16 bytes), as servers written
 *   for IPv4 only do: no room for an IPv6 client there, so libttm leaves
 *   the LB's address and ttm_get_peer() is the way to the client.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ttm.h"

/* "1.2.3.4:80" or "[2001:db8::1]:80" */
static const char *show(const struct sockaddr *sa, socklen_t len, char *out, size_t outlen)
{
	char ip[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
		snprintf(out, outlen, "%s:%u", ip, ntohs(sin->sin_port));
	} else if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
		snprintf(out, outlen, "[%s]:%u", ip, ntohs(sin6->sin6_port));
	} else {
		snprintf(out, outlen, "(family %d, %u bytes)", sa->sa_family, (unsigned)len);
	}
	return out;
}

static void serve(int fd, const struct sockaddr_storage *client, socklen_t client_len)
{
	typedef int (*get_peer_fn)(int, struct sockaddr *, socklen_t *);
	typedef const char *(*backend_fn)(void);
	get_peer_fn get_peer = (get_peer_fn)dlsym(RTLD_DEFAULT, "ttm_get_peer");
	backend_fn backend = (backend_fn)dlsym(RTLD_DEFAULT, "ttm_backend");
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct ttm_peer peer;
	char text[INET6_ADDRSTRLEN + 16], reply[256];

	printf("accept: %s\n", show((const struct sockaddr *)client, client_len, text, sizeof(text)));
	if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
		printf("getpeername: %s\n", show((struct sockaddr *)&ss, len, text, sizeof(text)));

	/* The vendor's way, unchanged: works with kgwttm or the eBPF kit. */
	len = sizeof(peer);
	if (getsockopt(fd, IPPROTO_IP, TTM_SO_GET_PEER, &peer, &len) < 0) {
		printf("getsockopt: %s\n", strerror(errno));
	} else {
		char ip[INET6_ADDRSTRLEN];
		inet_ntop(peer.af, &peer.all, ip, sizeof(ip));
		printf("getsockopt: addr %s port %u\n", ip, ntohs(peer.port));
	}

	if (get_peer) {
		len = sizeof(ss);
		if (get_peer(fd, (struct sockaddr *)&ss, &len) == 0)
			printf("ttm_get_peer: %s (backend %s)\n", show((struct sockaddr *)&ss, len, text, sizeof(text)),
			       backend());
		else
			printf("ttm_get_peer: %s (backend %s)\n", strerror(errno), backend());
	} else {
		printf("ttm_get_peer: libttm not loaded\n");
	}
	snprintf(reply, sizeof(reply), "hello %s\n", show((const struct sockaddr *)client, client_len, text, sizeof(text)));
	if (write(fd, reply, strlen(reply)) < 0)
		perror("write");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	const char *bind_addr = "::";
	long count = -1;
	int sin_only = 0;
	struct sockaddr_storage ss;
	socklen_t len;
	int opt, lst, on = 1, off = 0;
	char text[INET6_ADDRSTRLEN + 16];

	while ((opt = getopt(argc, argv, "4b:n:")) != -1) {
		if (opt == '4')
			sin_only = 1;
		else if (opt == 'b')
			bind_addr = optarg;
		else if (opt == 'n')
			count = strtol(optarg, NULL, 10);
		else
			goto usage;
	}
	if (optind != argc - 1)
		goto usage;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, bind_addr, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
		ss.ss_family = AF_INET;
		((struct sockaddr_in *)&ss)->sin_port = htons((unsigned short)atoi(argv[optind]));
		len = sizeof(struct sockaddr_in);
	} else if (inet_pton(AF_INET6, bind_addr, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
		ss.ss_family = AF_INET6;
		((struct sockaddr_in6 *)&ss)->sin6_port = htons((unsigned short)atoi(argv[optind]));
		len = sizeof(struct sockaddr_in6);
	} else {
		goto usage;
	}
	lst = socket(ss.ss_family, SOCK_STREAM, 0);
	if (lst < 0)
		return perror("socket"), 1;
	setsockopt(lst, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (ss.ss_family == AF_INET6) /* dual-stack, whatever the sysctl says */
		setsockopt(lst, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
	if (bind(lst, (struct sockaddr *)&ss, len) < 0 || listen(lst, 128) < 0)
		return perror("bind/listen"), 1;
	len = sizeof(ss);
	getsockname(lst, (struct sockaddr *)&ss, &len);
	printf("listening on %s\n", show((struct sockaddr *)&ss, len, text, sizeof(text)));
	fflush(stdout);

	while (count != 0) {
		struct sockaddr_storage client;
		socklen_t client_len = sin_only ? sizeof(struct sockaddr_in) : sizeof(client);
		int fd = accept(lst, (struct sockaddr *)&client, &client_len);

		if (fd < 0) {
			if (errno == EINTR)
				continue;
			return perror("accept"), 1;
		}
		serve(fd, &client, client_len);
		close(fd);
		if (count > 0)
			count--;
	}
	close(lst);
	return 0;

usage:
	fprintf(stderr, "usage: %s [-4] [-b BIND_ADDRESS] [-n CONNECTIONS] PORT\n", argv[0]);
	return 2;
}
