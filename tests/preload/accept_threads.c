/*
 * Server for libttm's end-to-end tests (tests/preload_e2e.rs): THREADS
 * threads block in accept4() on one AF_INET listener at once, each with a
 * sockaddr_storage buffer, and answer every connection with one line
 *
 *   A <family> <ip> <port> G <af> <ip> <port> P <pid> T <thread>
 *
 * A: what accept4() returned (libttm's rewrite, widened for an IPv6
 * client); G: getsockopt(SOL_IP, 1345) on the same socket, answered by the
 * kernel side (or "G err <errno>"); P: the accepting process; T: the
 * accepting thread's index. It exits 0 after TOTAL connections, printing
 * "DONE <total> <threads that accepted at least once>", then
 * "LOOKUPS <n>": libttm's "lookups" counter (ttm_stat; -1 without libttm).
 *
 *   accept_threads [-f] [-r REUSE] THREADS TOTAL
 *
 * -r does what daemons do at start-up, after libttm's constructor ran:
 * closes every fd >= 3, then (unless REUSE is "closed") puts something
 * else at fds 3..15, so whatever number libttm may have kept there now
 * names another object:
 *   file      /dev/null
 *   socket    a UDP socket
 *   array4k   a new BPF ARRAY map, 4-byte keys, 4 KiB values, 1024 entries
 *   map:PATH  the pinned BPF map at PATH (e.g. another ttm's ttm_peers)
 *
 * Prints "READY <port>" once listening on 0.0.0.0, port chosen by the
 * kernel. With -f it forks once READY is out (libttm is loaded by then,
 * and its state is inherited): the child runs the threads, the parent
 * prints "FORKED <child pid>", waits for it and exits with its status.
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
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define TTM_SO_GET_PEER 1345
#define MAX_THREADS 256
#define REUSE_TOP 15

struct ttm_peer {
	unsigned short af;
	unsigned short port;
	unsigned int addr[4];
};

static int lst;
static long total;
static long done_count;
static long accepted_by[MAX_THREADS];

static void die(const char *what)
{
	perror(what);
	exit(2);
}

/* "<family> <ip> <port>" of a returned address. */
static void show(const struct sockaddr_storage *ss, socklen_t len, char *out, size_t n)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (ss->ss_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &s->sin_addr, ip, sizeof(ip));
		port = ntohs(s->sin_port);
	} else if (ss->ss_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof(ip));
		port = ntohs(s->sin6_port);
	}
	snprintf(out, n, "%d %s %u", ss->ss_family, ip, port);
}

static void *worker(void *arg)
{
	long index = (long)arg;

	for (;;) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		struct ttm_peer peer;
		socklen_t plen = sizeof(peer);
		char a[80], g[80], line[256];
		int fd, n;

		memset(&ss, 0, sizeof(ss));
		fd = accept4(lst, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			die("accept4");
		}
		show(&ss, len, a, sizeof(a));
		if (getsockopt(fd, SOL_IP, TTM_SO_GET_PEER, &peer, &plen) == 0) {
			char ip[INET6_ADDRSTRLEN] = "?";
			inet_ntop(peer.af, peer.addr, ip, sizeof(ip));
			snprintf(g, sizeof(g), "%u %s %u", peer.af, ip, ntohs(peer.port));
		} else {
			snprintf(g, sizeof(g), "err %d", errno);
		}
		n = snprintf(line, sizeof(line), "A %s G %s P %d T %ld\n", a, g, (int)getpid(), index);
		if (write(fd, line, (size_t)n) != n)
			perror("write");
		close(fd);
		__atomic_fetch_add(&accepted_by[index], 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&done_count, 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

typedef int (*stat_fn)(unsigned, const char **, unsigned long long *);

/* libttm's "lookups" counter, or -1 when libttm is not loaded. */
static long long lookups(void)
{
	stat_fn stat = (stat_fn)dlsym(RTLD_DEFAULT, "ttm_stat");
	unsigned long long v;
	const char *name;
	unsigned i;

	for (i = 0; stat && stat(i, &name, &v) == 0; i++)
		if (!strcmp(name, "lookups"))
			return (long long)v;
	return -1;
}

static int bpf_call(int cmd, union bpf_attr *attr)
{
	return (int)syscall(SYS_bpf, cmd, attr, sizeof(*attr));
}

/* The object -r REUSE names, as a new fd. */
static int reuse_object(const char *what)
{
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	if (!strcmp(what, "file"))
		return open("/dev/null", O_RDONLY);
	if (!strcmp(what, "socket"))
		return socket(AF_INET, SOCK_DGRAM, 0);
	if (!strcmp(what, "array4k")) {
		/* 4 MiB: before 5.11 a map is charged to RLIMIT_MEMLOCK,
		 * which is smaller by default (ttmctl raises its own too). */
		struct rlimit unlimited = { RLIM_INFINITY, RLIM_INFINITY };
		setrlimit(RLIMIT_MEMLOCK, &unlimited);
		attr.map_type = BPF_MAP_TYPE_ARRAY;
		attr.key_size = 4;
		attr.value_size = 4096;
		attr.max_entries = 1024;
		return bpf_call(BPF_MAP_CREATE, &attr);
	}
	if (!strncmp(what, "map:", 4)) {
		attr.pathname = (uint64_t)(uintptr_t)(what + 4);
		return bpf_call(BPF_OBJ_GET, &attr);
	}
	fprintf(stderr, "accept_threads: unknown -r %s\n", what);
	exit(2);
}

static void close_and_reuse(const char *what)
{
	long max = sysconf(_SC_OPEN_MAX), fd;
	int obj;

	for (fd = 3; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
		close((int)fd);
	if (!strcmp(what, "closed"))
		return;
	obj = reuse_object(what);
	if (obj < 0)
		die(what);
	for (fd = 3; fd <= REUSE_TOP; fd++)
		if (fd != obj && dup2(obj, (int)fd) < 0)
			die("dup2");
	fprintf(stderr, "accept_threads: fds 3..%d are now %s\n", REUSE_TOP, what);
}

static int serve(long threads)
{
	pthread_t t;
	long i, used = 0;

	for (i = 0; i < threads; i++)
		if (pthread_create(&t, NULL, worker, (void *)i))
			die("pthread_create");
	while (__atomic_load_n(&done_count, __ATOMIC_ACQUIRE) < total)
		usleep(2000);
	for (i = 0; i < threads; i++)
		used += __atomic_load_n(&accepted_by[i], __ATOMIC_RELAXED) > 0;
	printf("DONE %ld %ld\nLOOKUPS %lld\n", total, used, lookups());
	fflush(stdout);
	/* The other threads are still blocked in accept4(). */
	_exit(0);
}

int main(int argc, char **argv)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fork_first = 0, one = 1, status;
	long threads;
	pid_t child;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1 && !strcmp(argv[1], "-f")) {
		fork_first = 1;
		argv++;
		argc--;
	}
	if (argc > 2 && !strcmp(argv[1], "-r")) {
		close_and_reuse(argv[2]);
		argv += 2;
		argc -= 2;
	}
	if (argc != 3) {
		fprintf(stderr, "usage: accept_threads [-f] [-r REUSE] THREADS TOTAL\n");
		return 2;
	}
	threads = strtol(argv[1], NULL, 10);
	total = strtol(argv[2], NULL, 10);
	if (threads < 1 || threads > MAX_THREADS || total < 1) {
		fprintf(stderr, "accept_threads: bad THREADS or TOTAL\n");
		return 2;
	}
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	lst = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lst < 0)
		die("socket");
	setsockopt(lst, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lst, (struct sockaddr *)&sin, sizeof(sin)) || listen(lst, 4096) ||
	    getsockname(lst, (struct sockaddr *)&sin, &len))
		die("listen");
	printf("READY %u\n", ntohs(sin.sin_port));
	if (!fork_first)
		return serve(threads);
	child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		/* Go with the parent if the test kills it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		return serve(threads);
	}
	printf("FORKED %d\n", (int)child);
	if (waitpid(child, &status, 0) != child)
		die("waitpid");
	return WIFEXITED(status) ? WEXITSTATUS(status) : 3;
}
