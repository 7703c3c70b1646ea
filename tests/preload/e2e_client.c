/*
 * Client for libttm's end-to-end tests (tests/preload_e2e.rs): THREADS
 * threads make TOTAL connections to ADDR PORT between them, each thread one
 * connection after the other. On each it optionally sends REQUEST (with
 * "\n" turned into CRLF, e.g. an HTTP request), reads until the server
 * closes, and prints one line:
 *
 *   L <local port> R <reply, CR dropped, LF shown as |>
 *   L <local port> E <errno>      (reading failed, e.g. a reset)
 *
 * The local port is the client side's own (getsockname), the port a
 * `ttmctl simulate --client IP` claim carries. Exits 1 if a connection
 * could not be made ("C <errno>" lines), 0 otherwise.
 *
 *   e2e_client [-s SOURCE] [-r REQUEST] [-t THREADS] [-n TOTAL] ADDR PORT
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static struct sockaddr_storage dst, src;
static socklen_t dst_len, src_len;
static char request[1024];
static size_t request_len;
static long per_thread, extra;
static int failed;

static int parse(const char *ip, unsigned port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((unsigned short)port);
		*len = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((unsigned short)port);
		*len = sizeof(*sin6);
		return 0;
	}
	return -1;
}

static void one(void)
{
	struct timeval tv = {10, 0};
	struct sockaddr_storage me;
	socklen_t me_len = sizeof(me);
	char reply[4096], line[4200];
	size_t got = 0, i, o;
	unsigned port = 0;
	int fd, err = 0;
	ssize_t n;

	fd = socket(dst.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("socket");
		exit(2);
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if ((src_len && bind(fd, (struct sockaddr *)&src, src_len)) ||
	    connect(fd, (struct sockaddr *)&dst, dst_len)) {
		printf("C %d\n", errno);
		__atomic_store_n(&failed, 1, __ATOMIC_RELAXED);
		close(fd);
		return;
	}
	if (getsockname(fd, (struct sockaddr *)&me, &me_len) == 0)
		port = ntohs(me.ss_family == AF_INET ? ((struct sockaddr_in *)&me)->sin_port
						     : ((struct sockaddr_in6 *)&me)->sin6_port);
	if (request_len && write(fd, request, request_len) != (ssize_t)request_len)
		err = errno;
	while (!err && got < sizeof(reply)) {
		n = read(fd, reply + got, sizeof(reply) - got);
		if (n < 0)
			err = errno;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	if (err) {
		printf("L %u E %d\n", port, err);
		return;
	}
	for (i = 0, o = 0; i < got && o < sizeof(line) - 1; i++)
		if (reply[i] != '\r')
			line[o++] = reply[i] == '\n' ? '|' : reply[i];
	line[o] = 0;
	/* One printf per line: stdio locks the stream, lines stay whole. */
	printf("L %u R %s\n", port, line);
}

static void *run(void *arg)
{
	long i, n = per_thread + ((long)arg < extra);

	for (i = 0; i < n; i++)
		one();
	return NULL;
}

int main(int argc, char **argv)
{
	const char *source = NULL;
	long threads = 1, total = 1, i;
	pthread_t t[256];
	int opt;

	while ((opt = getopt(argc, argv, "s:r:t:n:")) != -1) {
		if (opt == 's') {
			source = optarg;
		} else if (opt == 'r') {
			const char *p;
			for (p = optarg; *p && request_len < sizeof(request) - 2; p++) {
				if (*p == '\n')
					request[request_len++] = '\r';
				request[request_len++] = *p;
			}
		} else if (opt == 't') {
			threads = strtol(optarg, NULL, 10);
		} else if (opt == 'n') {
			total = strtol(optarg, NULL, 10);
		} else {
			goto usage;
		}
	}
	if (optind != argc - 2 || threads < 1 || threads > 256 || total < 1 ||
	    parse(argv[optind], (unsigned)atoi(argv[optind + 1]), &dst, &dst_len) ||
	    (source && parse(source, 0, &src, &src_len)))
		goto usage;
	per_thread = total / threads;
	extra = total % threads;
	for (i = 0; i < threads; i++)
		if (pthread_create(&t[i], NULL, run, (void *)i)) {
			perror("pthread_create");
			return 2;
		}
	for (i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	fflush(stdout);
	return failed;

usage:
	fprintf(stderr, "usage: e2e_client [-s SOURCE] [-r REQUEST] [-t THREADS] [-n TOTAL] ADDR PORT\n");
	return 2;
}
