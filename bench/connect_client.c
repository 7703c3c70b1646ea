/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * connect_client - the client side of scripts/bench.sh: makes COUNT short
 * connections (connect, wait for the server to close, close) from one or
 * several threads, or opens COUNT connections and holds them.
 *
 *   connect_client -a ADDR -p PORT -n COUNT [-c THREADS] [-t SECONDS]
 *   connect_client -u PATH -n COUNT ...                  (AF_UNIX)
 *   connect_client -a ADDR -p PORT -n COUNT -H -R FILE [-s SRC,SRC,...]
 *
 *   -c THREADS  connections are shared out among THREADS threads (1)
 *   -H          hold: open COUNT connections, print "HELD", wait until
 *               FILE (-R) exists, then close them all with RST (SO_LINGER
 *               0, so no TIME_WAIT is left behind)
 *   -s SRCS     source addresses to bind, round-robin (hold mode: each
 *               has its own ephemeral port range)
 *   -t SECONDS  give up (exit 3) after this long; default 300
 *
 * Prints "conns=N errors=E secs=S rate=R" (R = successful connections per
 * second, wall clock from the first connect to the last close).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

static struct sockaddr_storage dst;
static socklen_t dst_len;
static struct sockaddr_storage srcs[64];
static int nsrcs;
static long per_thread[256];
static long ok_count[256], err_count[256];

static void die(const char *what)
{
	fprintf(stderr, "connect_client: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void usage(void)
{
	fprintf(stderr, "usage: connect_client (-a ADDR -p PORT | -u PATH) -n COUNT [-c THREADS] [-H -R FILE] [-s SRC,...] [-t SECONDS]\n");
	exit(2);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int parse_addr(const char *a, int port, struct sockaddr_storage *ss, socklen_t *sl)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(a, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		*sl = sizeof(*s6);
		return inet_pton(AF_INET6, a, &s6->sin6_addr) == 1;
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

	s4->sin_family = AF_INET;
	s4->sin_port = htons(port);
	*sl = sizeof(*s4);
	return inet_pton(AF_INET, a, &s4->sin_addr) == 1;
}

/* One connected socket, or -1. */
static int open_one(long i)
{
	struct timeval tv = { 5, 0 };
	int fd = socket(dst.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)); /* bounds connect() */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (nsrcs) {
		int one = 1;
		struct sockaddr_storage *s = &srcs[i % nsrcs];

		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)s, s->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
									  : sizeof(struct sockaddr_in)) != 0) {
			close(fd);
			return -1;
		}
	}
	if (connect(fd, (struct sockaddr *)&dst, dst_len) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void *short_connections(void *arg)
{
	long t = (long)arg;

	for (long i = 0; i < per_thread[t]; i++) {
		char buf[64];
		ssize_t n;
		int fd = open_one(i);

		if (fd < 0) {
			err_count[t]++;
			continue;
		}
		/* The server closes at once: wait for its FIN so the accept is done. */
		while ((n = read(fd, buf, sizeof(buf))) > 0)
			;
		close(fd);
		if (n == 0)
			ok_count[t]++;
		else
			err_count[t]++;
	}
	return NULL;
}

static void on_alarm(int sig)
{
	static const char msg[] = "connect_client: timed out\n";

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0) {
		/* nothing more to do */
	}
	_exit(3);
}

int main(int argc, char **argv)
{
	const char *addr = NULL, *upath = NULL, *release = NULL;
	char *srclist = NULL;
	long count = -1, timeout = 300;
	int port = -1, threads = 1, hold = 0, opt;

	while ((opt = getopt(argc, argv, "a:p:u:n:c:HR:s:t:")) != -1) {
		switch (opt) {
		case 'a': addr = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'u': upath = optarg; break;
		case 'n': count = atol(optarg); break;
		case 'c': threads = atoi(optarg); break;
		case 'H': hold = 1; break;
		case 'R': release = optarg; break;
		case 's': srclist = optarg; break;
		case 't': timeout = atol(optarg); break;
		default: usage();
		}
	}
	if (count < 0 || threads < 1 || threads > 256 || (hold && !release))
		usage();
	signal(SIGALRM, on_alarm);
	alarm((unsigned)timeout);

	if (upath) {
		struct sockaddr_un *sun = (struct sockaddr_un *)&dst;

		if (strlen(upath) >= sizeof(sun->sun_path))
			usage();
		sun->sun_family = AF_UNIX;
		strcpy(sun->sun_path, upath);
		dst_len = sizeof(*sun);
	} else if (!addr || port < 0 || !parse_addr(addr, port, &dst, &dst_len)) {
		usage();
	}
	for (char *s = srclist ? strtok(srclist, ",") : NULL; s && nsrcs < 64; s = strtok(NULL, ",")) {
		socklen_t sl;

		if (!parse_addr(s, 0, &srcs[nsrcs++], &sl))
			usage();
	}

	if (hold) {
		struct rlimit rl;
		struct linger lg = { 1, 0 };
		struct stat st;
		int *fds = calloc((size_t)count, sizeof(int));
		long opened = 0, errors = 0;
		double t0 = now();

		if (!fds)
			die("calloc");
		/* Room for COUNT descriptors: raise the hard limit too if allowed
		 * (CAP_SYS_RESOURCE), else the soft limit up to the hard one. */
		if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
			die("getrlimit");
		if ((long)rl.rlim_cur < count + 64) {
			struct rlimit up = { (rlim_t)count + 64,
					     rl.rlim_max > (rlim_t)count + 64 ? rl.rlim_max : (rlim_t)count + 64 };

			if (setrlimit(RLIMIT_NOFILE, &up) != 0) {
				if ((long)rl.rlim_max < count + 64) {
					fprintf(stderr, "connect_client: RLIMIT_NOFILE hard limit %ld < %ld and cannot be raised\n",
						(long)rl.rlim_max, count + 64);
					exit(2);
				}
				rl.rlim_cur = (rlim_t)count + 64;
				if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
					die("setrlimit RLIMIT_NOFILE");
			}
		}
		for (long i = 0; i < count; i++) {
			int fd = open_one(i);

			if (fd < 0) {
				/* Stop early rather than spin when the network refuses. */
				if (++errors > 100)
					break;
				continue;
			}
			fds[opened++] = fd;
		}
		double t1 = now();

		printf("HELD %ld errors=%ld secs=%.3f\n", opened, errors, t1 - t0);
		fflush(stdout);
		while (stat(release, &st) != 0) {
			struct timespec ts = { 0, 20 * 1000 * 1000 };

			nanosleep(&ts, NULL);
		}
		for (long i = 0; i < opened; i++) {
			setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			close(fds[i]);
		}
		printf("CLOSED %ld\n", opened);
		return errors ? 1 : 0;
	}

	pthread_t tid[256];
	long ok = 0, errors = 0;

	for (int t = 0; t < threads; t++)
		per_thread[t] = count / threads + (t < count % threads);
	double t0 = now();

	for (int t = 0; t < threads; t++)
		if (pthread_create(&tid[t], NULL, short_connections, (void *)(long)t) != 0)
			die("pthread_create");
	for (int t = 0; t < threads; t++) {
		pthread_join(tid[t], NULL);
		ok += ok_count[t];
		errors += err_count[t];
	}
	double secs = now() - t0;

	printf("conns=%ld errors=%ld secs=%.4f rate=%.1f\n", ok, errors, secs, secs > 0 ? ok / secs : 0.0);
	return errors ? 1 : 0;
}
