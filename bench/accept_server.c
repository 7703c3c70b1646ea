/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * accept_server - the server side of scripts/bench.sh: accepts a fixed
 * number of connections the way most servers do (accept4 with a
 * sockaddr_storage buffer) and closes each at once, or holds them all open.
 *
 *   accept_server -a ADDR -p PORT -n COUNT [-H -R FILE] [-t SECONDS]
 *   accept_server -u PATH -n COUNT ...            (AF_UNIX stream socket)
 *
 *   -a ADDR    IPv4 or IPv6 address to listen on
 *   -p PORT    port
 *   -u PATH    listen on an AF_UNIX stream socket at PATH instead
 *   -n COUNT   accept this many connections, then exit
 *   -H         hold every accepted connection open; after COUNT, print
 *              "HELD", wait until FILE (-R) exists, close them all
 *   -g LOOPS   after each accept, call getpeername() LOOPS times on the
 *              new socket (sockaddr_storage buffer) and time it; prints
 *              "GETPEERNAME min_ns=M median_ns=D" over the connections
 *              before DONE. It prices one hooked call: the kernel's
 *              getpeername (and ttm_getpeername4 when loaded) plus, under
 *              libttm.so, its hook and backend lookup, i.e. what the
 *              library adds to every accept.
 *   -t SECONDS give up (exit 3) after this long; default 300
 *
 * Prints "READY backend=<name>" once listening (the backend is libttm's
 * ttm_backend() when libttm.so is preloaded, "-" otherwise) and
 * "DONE accepted=N" at the end. Between those two lines the only system
 * calls are the accept loop's own (accept4, close), plus what a preloaded
 * library adds: scripts/bench.sh counts them with strace.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void die(const char *what)
{
	fprintf(stderr, "accept_server: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void usage(void)
{
	fprintf(stderr, "usage: accept_server (-a ADDR -p PORT | -u PATH) -n COUNT [-H -R FILE] [-g LOOPS] [-t SECONDS]\n");
	exit(2);
}

/* Room for `want` descriptors: raise the hard limit too if allowed
 * (CAP_SYS_RESOURCE), else up to it; scripts/bench.sh spreads held
 * connections over several processes when the hard limit is lower. */
static void raise_nofile(long want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		die("getrlimit");
	if ((long)rl.rlim_cur >= want)
		return;
	struct rlimit up = { (rlim_t)want, rl.rlim_max > (rlim_t)want ? rl.rlim_max : (rlim_t)want };

	if (setrlimit(RLIMIT_NOFILE, &up) == 0)
		return;
	if ((long)rl.rlim_max < want) {
		fprintf(stderr, "accept_server: RLIMIT_NOFILE hard limit %ld < %ld and cannot be raised\n",
			(long)rl.rlim_max, want);
		exit(2);
	}
	rl.rlim_cur = (rlim_t)want;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		die("setrlimit RLIMIT_NOFILE");
}

static void on_alarm(int sig)
{
	static const char msg[] = "accept_server: timed out\n";

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0) {
		/* nothing more to do */
	}
	_exit(3);
}

int main(int argc, char **argv)
{
	const char *addr = NULL, *upath = NULL, *release = NULL;
	long count = -1, timeout = 300, loops = 0;
	int port = -1, hold = 0, opt, lfd, one = 1;

	while ((opt = getopt(argc, argv, "a:p:u:n:HR:t:g:")) != -1) {
		switch (opt) {
		case 'a': addr = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'u': upath = optarg; break;
		case 'n': count = atol(optarg); break;
		case 'H': hold = 1; break;
		case 'R': release = optarg; break;
		case 't': timeout = atol(optarg); break;
		case 'g': loops = atol(optarg); break;
		default: usage();
		}
	}
	if (count < 0 || (!upath && (!addr || port < 0)) || (hold && !release))
		usage();

	signal(SIGALRM, on_alarm);
	alarm((unsigned)timeout);
	if (hold)
		raise_nofile(count + 64);

	if (upath) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };

		if (strlen(upath) >= sizeof(sun.sun_path))
			usage();
		strcpy(sun.sun_path, upath);
		unlink(upath);
		lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (lfd < 0)
			die("socket");
		if (bind(lfd, (struct sockaddr *)&sun, sizeof(sun)) != 0)
			die("bind");
	} else {
		struct sockaddr_storage ss = { 0 };
		socklen_t sl;

		if (strchr(addr, ':')) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

			s6->sin6_family = AF_INET6;
			s6->sin6_port = htons(port);
			if (inet_pton(AF_INET6, addr, &s6->sin6_addr) != 1)
				usage();
			sl = sizeof(*s6);
		} else {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

			s4->sin_family = AF_INET;
			s4->sin_port = htons(port);
			if (inet_pton(AF_INET, addr, &s4->sin_addr) != 1)
				usage();
			sl = sizeof(*s4);
		}
		lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (lfd < 0)
			die("socket");
		setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(lfd, (struct sockaddr *)&ss, sl) != 0)
			die("bind");
	}
	if (listen(lfd, 4096) != 0)
		die("listen");

	/* Which backend a preloaded libttm.so chose (not a system call). */
	const char *(*backend)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "ttm_backend");
	int *held = NULL;
	double *per_call = NULL;

	if (loops > 0) {
		per_call = calloc((size_t)count + 1, sizeof(*per_call));
		if (!per_call)
			die("calloc");
	}

	if (hold) {
		held = calloc((size_t)count, sizeof(*held));
		if (!held)
			die("calloc");
	}
	printf("READY backend=%s\n", backend ? backend() : "-");
	fflush(stdout);

	long done = 0;
	while (done < count) {
		struct sockaddr_storage peer;
		socklen_t len = sizeof(peer);
		int fd = accept4(lfd, (struct sockaddr *)&peer, &len, SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			die("accept4");
		}
		if (loops > 0) {
			double t0 = now_ns();

			for (long i = 0; i < loops; i++) {
				struct sockaddr_storage p;
				socklen_t pl = sizeof(p);

				if (getpeername(fd, (struct sockaddr *)&p, &pl) != 0)
					die("getpeername");
			}
			per_call[done] = (now_ns() - t0) / loops;
		}
		if (hold)
			held[done] = fd;
		else
			close(fd);
		done++;
	}

	if (hold) {
		struct stat st;

		printf("HELD %ld\n", done);
		fflush(stdout);
		while (stat(release, &st) != 0) {
			struct timespec ts = { 0, 20 * 1000 * 1000 };

			nanosleep(&ts, NULL);
		}
		for (long i = 0; i < done; i++)
			close(held[i]);
	}
	if (loops > 0 && done > 0) {
		qsort(per_call, (size_t)done, sizeof(*per_call), cmp_double);
		printf("GETPEERNAME min_ns=%.1f median_ns=%.1f\n", per_call[0], per_call[done / 2]);
	}
	printf("DONE accepted=%ld\n", done);
	fflush(stdout);
	if (upath)
		unlink(upath);
	return 0;
}
