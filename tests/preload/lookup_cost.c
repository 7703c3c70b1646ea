/*
 * What one "who is the real client of this socket" question costs, for
 * tests/preload_lookup_cost.rs: the two ways libttm could ask the eBPF
 * kit, side by side on the same sockets in the same run, next to a
 * syscall that does next to nothing.
 *
 *   lookup_cost raw MAP CONNS LOOPS
 *     Accepts CONNS connections (all held open at once), then on each:
 *       floor      getsockname(): a socket syscall no ttm program runs in
 *                  (the kit's cgroup/getsockopt program runs for every
 *                  getsockopt on its sockets, whatever the option)
 *       getsockopt getsockopt(SOL_IP, 1345): the kit's cgroup/getsockopt
 *                  program answers it from the socket's storage
 *       map        bpf(BPF_MAP_LOOKUP_ELEM) on the pinned MAP, key = the fd
 *       sol_tcp    getsockopt(IPPROTO_TCP, 1345): unanswered (ENOPROTOOPT), but
 *                  the cgroup/getsockopt program runs: how much of the
 *                  SOL_IP question is IP-level plumbing (lock_sock,
 *                  netfilter's sockopt table) a question at TCP level
 *                  would not pay
 *     LOOPS calls each, 5 rounds, interleaved; the minimum per method. Then
 *     the same with nothing recorded (on the listener: ENOPROTOOPT / ENOENT),
 *     and with 2 threads asking at once, each on its own socket (a global
 *     lock on either path would show there). Prints
 *       C <i> floor <ns> getsockopt <ns> map <ns> sol_tcp <ns> same <1|0>
 *       NOTHING floor <ns> getsockopt <ns> map <ns> sol_tcp <ns>
 *       THREADS 2 floor <ns> getsockopt <ns> map <ns> sol_tcp <ns>
 *     ("same": both ways returned the same 20 bytes), then replies
 *     "ok" to every client and exits.
 *
 *   lookup_cost hooked CONNS LOOPS
 *     As above, but times getpeername() into a sockaddr_storage (the
 *     call libttm hooks; run it preloaded) and prints
 *       H <i> getpeername <ns> lookups_per_call <x>
 *     where the lookups are libttm's, from ttm_stat's counters.
 *
 * Prints "READY <port>" once listening on 0.0.0.0. Figures only: the
 * test asserts what the answers are, never how fast they came.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define TTM_SO_GET_PEER 1345
#define ROUNDS 25
#define MAX_CONNS 64

struct ttm_peer {
	unsigned short af;
	unsigned short port;
	unsigned int addr[4];
};

enum method { FLOOR, GETSOCKOPT, MAP, SOL_TCP_LEVEL, METHODS };
static const char *method_name[METHODS] = {"floor", "getsockopt", "map", "sol_tcp"};

static int map_fd = -1;
static long loops;

static void die(const char *what)
{
	perror(what);
	exit(2);
}

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int ask(enum method m, int fd, struct ttm_peer *out)
{
	socklen_t len = sizeof(*out);

	switch (m) {
	case FLOOR: {
		struct sockaddr_storage ss;
		len = sizeof(ss);
		return getsockname(fd, (struct sockaddr *)&ss, &len);
	}
	case GETSOCKOPT:
		return getsockopt(fd, SOL_IP, TTM_SO_GET_PEER, out, &len);
	case SOL_TCP_LEVEL:
		return getsockopt(fd, IPPROTO_TCP, TTM_SO_GET_PEER, out, &len);
	case MAP:
	default: {
		union bpf_attr attr;
		int key = fd;

		memset(&attr, 0, sizeof(attr));
		attr.map_fd = (unsigned)map_fd;
		attr.key = (uint64_t)(uintptr_t)&key;
		attr.value = (uint64_t)(uintptr_t)out;
		return (int)syscall(SYS_bpf, BPF_MAP_LOOKUP_ELEM, &attr, sizeof(attr));
	}
	}
}

/* ns per call of LOOPS calls of m on fd. */
static double timed(enum method m, int fd)
{
	struct ttm_peer p;
	double t0 = now_ns();
	long i;

	for (i = 0; i < loops; i++)
		ask(m, fd, &p);
	return (now_ns() - t0) / (double)loops;
}

/* The minimum over ROUNDS interleaved rounds, per method. */
static void measure(int fd, double best[METHODS])
{
	int r, m;

	for (m = 0; m < METHODS; m++)
		best[m] = 1e18;
	for (r = 0; r < ROUNDS; r++)
		for (m = 0; m < METHODS; m++) {
			double ns = timed((enum method)((m + r) % METHODS), fd);
			int k = (m + r) % METHODS;
			if (ns < best[k])
				best[k] = ns;
		}
}

struct job {
	enum method m;
	int fd;
	pthread_barrier_t *go;
	double ns;
};

static void *thread_job(void *arg)
{
	struct job *j = arg;

	pthread_barrier_wait(j->go);
	j->ns = timed(j->m, j->fd);
	return NULL;
}

/* ns per call of each of 2 threads asking at once, each on its own fd;
 * the minimum over ROUNDS. */
static double two_threads(enum method m, int fd0, int fd1)
{
	double best = 1e18;
	int r;

	for (r = 0; r < ROUNDS; r++) {
		pthread_barrier_t go;
		struct job j[2] = {{m, fd0, &go, 0}, {m, fd1, &go, 0}};
		pthread_t t[2];
		double worst;
		int i;

		pthread_barrier_init(&go, NULL, 2);
		for (i = 0; i < 2; i++)
			if (pthread_create(&t[i], NULL, thread_job, &j[i]))
				die("pthread_create");
		for (i = 0; i < 2; i++)
			pthread_join(t[i], NULL);
		pthread_barrier_destroy(&go);
		worst = j[0].ns > j[1].ns ? j[0].ns : j[1].ns;
		if (worst < best)
			best = worst;
	}
	return best;
}

typedef int (*stat_fn)(unsigned, const char **, unsigned long long *);

/* libttm's "lookups" counter (ttm_stat): backend questions asked. */
static unsigned long long ttm_lookups(void)
{
	stat_fn stat = (stat_fn)dlsym(RTLD_DEFAULT, "ttm_stat");
	unsigned long long v;
	const char *name;
	unsigned i;

	for (i = 0; stat && stat(i, &name, &v) == 0; i++)
		if (!strcmp(name, "lookups"))
			return v;
	return 0;
}

static double hooked(int fd, double *lookups)
{
	double best = 1e18;
	unsigned long long before = ttm_lookups();
	int r;

	for (r = 0; r < ROUNDS; r++) {
		double t0 = now_ns(), ns;
		long i;

		for (i = 0; i < loops; i++) {
			struct sockaddr_storage ss;
			socklen_t len = sizeof(ss);
			getpeername(fd, (struct sockaddr *)&ss, &len);
		}
		ns = (now_ns() - t0) / (double)loops;
		if (ns < best)
			best = ns;
	}
	*lookups = (double)(ttm_lookups() - before) / (double)(ROUNDS * loops);
	return best;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int lst, one = 1, raw, conns[MAX_CONNS];
	long n, i;

	setvbuf(stdout, NULL, _IOLBF, 0);
	raw = argc == 5 && !strcmp(argv[1], "raw");
	if (!raw && !(argc == 4 && !strcmp(argv[1], "hooked"))) {
		fprintf(stderr, "usage: lookup_cost raw MAP CONNS LOOPS | hooked CONNS LOOPS\n");
		return 2;
	}
	n = strtol(argv[raw ? 3 : 2], NULL, 10);
	loops = strtol(argv[raw ? 4 : 3], NULL, 10);
	if (n < 2 || n > MAX_CONNS || loops < 1) {
		fprintf(stderr, "lookup_cost: CONNS 2..%d, LOOPS >= 1\n", MAX_CONNS);
		return 2;
	}
	if (raw) {
		union bpf_attr attr;

		memset(&attr, 0, sizeof(attr));
		attr.pathname = (uint64_t)(uintptr_t)argv[2];
		attr.file_flags = BPF_F_RDONLY;
		map_fd = (int)syscall(SYS_bpf, BPF_OBJ_GET, &attr, sizeof(attr));
		if (map_fd < 0)
			die("BPF_OBJ_GET");
	}
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	lst = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lst < 0)
		die("socket");
	setsockopt(lst, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lst, (struct sockaddr *)&sin, sizeof(sin)) || listen(lst, MAX_CONNS) ||
	    getsockname(lst, (struct sockaddr *)&sin, &len))
		die("listen");
	printf("READY %u\n", ntohs(sin.sin_port));
	for (i = 0; i < n; i++)
		if ((conns[i] = accept4(lst, NULL, NULL, SOCK_CLOEXEC)) < 0)
			die("accept4");
	for (i = 0; i < n; i++) {
		if (raw) {
			double best[METHODS];
			struct ttm_peer a, b;
			int same, m;

			memset(&a, 0, sizeof(a));
			memset(&b, 0xff, sizeof(b));
			same = ask(GETSOCKOPT, conns[i], &a) == 0 && ask(MAP, conns[i], &b) == 0 &&
			       !memcmp(&a, &b, sizeof(a));
			measure(conns[i], best);
			printf("C %ld", i);
			for (m = 0; m < METHODS; m++)
				printf(" %s %.1f", method_name[m], best[m]);
			printf(" same %d\n", same);
		} else {
			double lookups, ns = hooked(conns[i], &lookups);
			printf("H %ld getpeername %.1f lookups_per_call %.3f\n", i, ns, lookups);
		}
	}
	if (raw) {
		double best[METHODS];
		int m;

		measure(lst, best);
		printf("NOTHING");
		for (m = 0; m < METHODS; m++)
			printf(" %s %.1f", method_name[m], best[m]);
		printf("\n");
		printf("THREADS 2");
		for (m = 0; m < METHODS; m++)
			printf(" %s %.1f", method_name[m], two_threads((enum method)m, conns[0], conns[1]));
		printf("\n");
	}
	for (i = 0; i < n; i++) {
		if (write(conns[i], "ok\n", 3) != 3)
			perror("write");
		close(conns[i]);
	}
	printf("DONE\n");
	return 0;
}
