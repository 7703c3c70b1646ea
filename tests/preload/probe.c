/*
 * Probe for libttm's preload tests: makes the socket calls a server makes
 * and prints what came back, one line per call:
 *
 *   <label> ret=<ok|-1> errno=<n> len=<n> addr=<hex> lookups=<n>
 *
 * errno is set to 777 before each call, so a successful call that prints
 * 777 kept the caller's errno. "lookups" is the number of backend
 * questions a fake kernel module (fake_kmod.c, when preloaded) has been
 * asked so far, or -1 without one. Run the same mode with and without
 * LD_PRELOAD=libttm.so and compare. Loopback only.
 *
 *   probe errors
 *   probe matrix 4|6|dual     TCP accept/accept4/getpeername, every size
 *   probe unix PATH           AF_UNIX accept/getpeername, every size
 *   probe udp                 connected UDP getpeername, every size
 *   probe capi                the C API through dlsym
 *   probe badlen              accept/accept4/getpeername with an addrlen
 *                             no memory is behind (see badlen())
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static const socklen_t sizes[] = {0, 1, 2, 8, 15, 16, 27, 28, 128};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

static long lookups(void)
{
	long *n = (long *)dlsym(RTLD_DEFAULT, "fake_kmod_calls");
	return n ? *n : -1;
}

static void die(const char *what)
{
	perror(what);
	exit(2);
}

/* buf is 256 bytes of 0xAA; only what the kernel (or libttm) wrote is
 * printed, plus one canary byte past the caller's buffer. */
static void report(const char *label, int ret, int err, socklen_t len, const unsigned char *buf,
		   socklen_t bufsize)
{
	size_t n = len < bufsize ? len : bufsize, i;

	printf("%s ret=%s errno=%d len=%u addr=", label, ret >= 0 ? "ok" : "-1", err, (unsigned)len);
	if (ret >= 0)
		for (i = 0; i < n; i++)
			printf("%02x", buf[i]);
	if (bufsize < 256 && buf[bufsize] != 0xAA)
		printf("!OVERRUN");
	printf(" lookups=%ld\n", lookups());
	fflush(stdout);
}

enum call { ACCEPT, ACCEPT4, GETPEERNAME };
static const char *call_name[] = {"accept", "accept4", "getpeername"};

/* One call with a buffer of `size` bytes; null_addr/null_len pass NULL. */
static int one(enum call c, int fd, const char *label, socklen_t size, int null_addr, int null_len)
{
	unsigned char buf[256];
	socklen_t len = size;
	struct sockaddr *a;
	socklen_t *l;
	int ret, err;
	char full[128];

	memset(buf, 0xAA, sizeof(buf));
	a = null_addr ? NULL : (struct sockaddr *)buf;
	l = null_len ? NULL : &len;
	errno = 777;
	if (c == ACCEPT)
		ret = accept(fd, a, l);
	else if (c == ACCEPT4)
		ret = accept4(fd, a, l, SOCK_CLOEXEC);
	else
		ret = getpeername(fd, a, l);
	err = errno;
	snprintf(full, sizeof(full), "%s %s size=%u null=%d%d", label, call_name[c], (unsigned)size,
		 null_addr, null_len);
	report(full, ret, err, null_len ? 0 : len, buf, null_addr ? 0 : size);
	return ret;
}

static void errors(void)
{
	int lst, sock, pipefd[2], r;
	struct sockaddr_in sin;

	lst = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (lst < 0 || bind(lst, (struct sockaddr *)&sin, sizeof(sin)) || listen(lst, 8))
		die("listen");
	for (r = 0; r < 3; r++)
		one(r, lst, "nothing-pending", 128, 0, 0);
	one(ACCEPT, lst, "nothing-pending", 0, 1, 1);
	one(ACCEPT4, lst, "nothing-pending", 0, 1, 1);
	one(ACCEPT, -1, "bad-fd", 128, 0, 0);
	one(ACCEPT4, 999, "bad-fd", 128, 0, 0);
	one(GETPEERNAME, 999, "bad-fd", 128, 0, 0);
	if (pipe(pipefd))
		die("pipe");
	one(ACCEPT, pipefd[0], "not-a-socket", 128, 0, 0);
	one(ACCEPT4, pipefd[0], "not-a-socket", 128, 0, 0);
	one(GETPEERNAME, pipefd[0], "not-a-socket", 128, 0, 0);
	sock = socket(AF_INET, SOCK_STREAM, 0);
	one(ACCEPT, sock, "not-listening", 128, 0, 0);
	one(ACCEPT4, sock, "not-listening", 128, 0, 0);
	one(GETPEERNAME, sock, "not-connected", 128, 0, 0);
	{
		unsigned char buf[256];
		socklen_t len = 128;
		memset(buf, 0xAA, sizeof(buf));
		errno = 777;
		r = accept4(lst, (struct sockaddr *)buf, &len, 0x40000000);
		report("bad-flags accept4", r, errno, len, buf, 128);
	}
	close(sock);
	close(lst);
	close(pipefd[0]);
	close(pipefd[1]);
}

static int tcp_listener(int family, struct sockaddr_storage *ss, socklen_t *sslen)
{
	int fd = socket(family, SOCK_STREAM, 0), one_ = 1;

	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		*sslen = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
		sin6->sin6_family = AF_INET6;
		*sslen = sizeof(*sin6);
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one_, sizeof(one_));
	if (fd < 0 || bind(fd, (struct sockaddr *)ss, *sslen) || listen(fd, 64) ||
	    getsockname(fd, (struct sockaddr *)ss, sslen))
		die("tcp listener");
	return fd;
}

static int tcp_client(int family, const struct sockaddr_storage *lss, socklen_t len)
{
	struct sockaddr_storage ss = *lss;
	int fd;

	if (family == AF_INET) {
		fd = socket(AF_INET, SOCK_STREAM, 0);
	} else if (family == AF_INET6) {
		((struct sockaddr_in6 *)&ss)->sin6_addr = in6addr_loopback;
		fd = socket(AF_INET6, SOCK_STREAM, 0);
	} else { /* dual: an IPv4 client to an AF_INET6 listener on :: */
		struct sockaddr_in sin;
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_port = ((struct sockaddr_in6 *)lss)->sin6_port;
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)))
			die("connect");
		return fd;
	}
	if (fd < 0 || connect(fd, (struct sockaddr *)&ss, len))
		die("connect");
	return fd;
}

static void matrix(const char *which)
{
	int family = !strcmp(which, "4") ? AF_INET : AF_INET6;
	int client_family = !strcmp(which, "4") ? AF_INET : !strcmp(which, "6") ? AF_INET6 : 0;
	struct sockaddr_storage ss;
	socklen_t sslen;
	int lst = tcp_listener(family, &ss, &sslen);
	int nulls[4][2] = {{0, 0}, {1, 1}, {1, 0}, {0, 1}};
	size_t i;
	int c, k;

	for (c = ACCEPT; c <= ACCEPT4; c++)
		for (i = 0; i < NSIZES; i++)
			for (k = 0; k < 4; k++) {
				int cl, fd;
				if (k > 0 && i > 0)
					continue; /* NULL pointers: once per call */
				cl = tcp_client(client_family, &ss, sslen);
				fd = one(c, lst, "tcp", sizes[i], nulls[k][0], nulls[k][1]);
				if (fd >= 0) {
					size_t j;
					for (j = 0; j < NSIZES; j++)
						one(GETPEERNAME, fd, "tcp-accepted", sizes[j], 0, 0);
					one(GETPEERNAME, fd, "tcp-accepted", 0, 1, 1);
					close(fd);
				}
				close(cl);
			}
	close(lst);
}

static void unix_sockets(const char *path)
{
	struct sockaddr_un sun;
	int lst, cl, fd;
	size_t i;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strncpy(sun.sun_path, path, sizeof(sun.sun_path) - 1);
	unlink(path);
	lst = socket(AF_UNIX, SOCK_STREAM, 0);
	if (lst < 0 || bind(lst, (struct sockaddr *)&sun, sizeof(sun)) || listen(lst, 8))
		die("unix listener");
	for (i = 0; i < NSIZES; i++) {
		cl = socket(AF_UNIX, SOCK_STREAM, 0);
		if (cl < 0 || connect(cl, (struct sockaddr *)&sun, sizeof(sun)))
			die("unix connect");
		fd = one(i % 2 ? ACCEPT4 : ACCEPT, lst, "unix", sizes[i], 0, 0);
		one(GETPEERNAME, fd, "unix-accepted", sizes[i], 0, 0);
		one(GETPEERNAME, cl, "unix-client", sizes[i], 0, 0);
		close(fd);
		close(cl);
	}
	close(lst);
	unlink(path);
}

static void udp(void)
{
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	int s = socket(AF_INET, SOCK_DGRAM, 0), c = socket(AF_INET, SOCK_DGRAM, 0);
	size_t i;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(s, (struct sockaddr *)&a, sizeof(a)) || getsockname(s, (struct sockaddr *)&a, &alen) ||
	    connect(c, (struct sockaddr *)&a, sizeof(a)))
		die("udp");
	for (i = 0; i < NSIZES; i++)
		one(GETPEERNAME, c, "udp", sizes[i], 0, 0);
	close(s);
	close(c);
}

/*
 * Each call with a 128-byte buffer and an addrlen pointing where no memory
 * is: "small" (address 8, in the zero page), "top" (the last bytes of the
 * address space, the kernel's half) and "prot_none" (a page mapped
 * PROT_NONE). Each call runs in a child, so that a crash is a line:
 *
 *   badlen <where> <call> ret=<ok|-1> errno=<n> pending=<0|1>
 *   badlen <where> <call> signal=<n>
 *
 * pending: whether the connection made for the call can still be accepted
 * afterwards (an accept that fails with EFAULT has already taken it).
 */
static void badlen(void)
{
	long page = sysconf(_SC_PAGESIZE);
	void *none = mmap(NULL, (size_t)page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct {
		const char *name;
		socklen_t *p;
	} where[] = {{"small", (socklen_t *)8},
		     {"top", (socklen_t *)(UINTPTR_MAX - 7)},
		     {"prot_none", (socklen_t *)none}};
	size_t w;
	int c;

	if (none == MAP_FAILED)
		die("mmap");
	for (w = 0; w < sizeof(where) / sizeof(where[0]); w++)
		for (c = ACCEPT; c <= GETPEERNAME; c++) {
			struct sockaddr_storage ss;
			socklen_t sslen;
			int lst = tcp_listener(AF_INET, &ss, &sslen), cl, fd = -1, status;
			pid_t pid;

			fcntl(lst, F_SETFL, O_NONBLOCK);
			cl = tcp_client(AF_INET, &ss, sslen);
			if (c == GETPEERNAME && (fd = accept(lst, NULL, NULL)) < 0)
				die("accept");
			pid = fork();
			if (pid < 0)
				die("fork");
			if (pid == 0) {
				unsigned char buf[128];
				int ret, err, more;

				errno = 777;
				if (c == ACCEPT)
					ret = accept(lst, (struct sockaddr *)buf, where[w].p);
				else if (c == ACCEPT4)
					ret = accept4(lst, (struct sockaddr *)buf, where[w].p, 0);
				else
					ret = getpeername(fd, (struct sockaddr *)buf, where[w].p);
				err = errno;
				more = accept(lst, NULL, NULL) >= 0;
				printf("badlen %s %s ret=%s errno=%d pending=%d\n", where[w].name,
				       call_name[c], ret >= 0 ? "ok" : "-1", err,
				       c == GETPEERNAME ? 0 : more);
				fflush(stdout);
				_exit(0);
			}
			if (waitpid(pid, &status, 0) != pid)
				die("waitpid");
			if (WIFSIGNALED(status))
				printf("badlen %s %s signal=%d\n", where[w].name, call_name[c],
				       WTERMSIG(status));
			if (fd >= 0)
				close(fd);
			close(cl);
			close(lst);
		}
	munmap(none, (size_t)page);
}

typedef int (*get_peer_fn)(int, struct sockaddr *, socklen_t *);
typedef int (*get_raw_fn)(int, void *);
typedef const char *(*str_fn)(void);
typedef int (*stat_fn)(unsigned, const char **, unsigned long long *);

static void capi(void)
{
	str_fn backend = (str_fn)dlsym(RTLD_DEFAULT, "ttm_backend");
	str_fn version = (str_fn)dlsym(RTLD_DEFAULT, "ttm_version");
	get_peer_fn get_peer = (get_peer_fn)dlsym(RTLD_DEFAULT, "ttm_get_peer");
	get_raw_fn get_raw = (get_raw_fn)dlsym(RTLD_DEFAULT, "ttm_get_peer_raw");
	stat_fn stat = (stat_fn)dlsym(RTLD_DEFAULT, "ttm_stat");
	struct sockaddr_storage ss, peer;
	socklen_t sslen, plen = sizeof(peer);
	unsigned char raw[20];
	const char *name;
	unsigned long long value;
	unsigned i;
	int lst, cl, fd, r;

	if (!backend || !version || !get_peer || !get_raw || !stat) {
		printf("capi missing\n");
		return;
	}
	printf("backend=%s version=%s\n", backend(), version());
	lst = tcp_listener(AF_INET, &ss, &sslen);
	cl = tcp_client(AF_INET, &ss, sslen);
	fd = accept(lst, NULL, NULL);
	errno = 0;
	r = get_peer(fd, (struct sockaddr *)&peer, &plen);
	printf("get_peer ret=%d errno=%d len=%u addr=", r, r ? errno : 0, (unsigned)plen);
	for (i = 0; r == 0 && i < plen && i < sizeof(peer); i++)
		printf("%02x", ((unsigned char *)&peer)[i]);
	printf("\n");
	errno = 0;
	r = get_raw(fd, raw);
	printf("get_peer_raw ret=%d errno=%d raw=", r, r ? errno : 0);
	for (i = 0; r == 0 && i < sizeof(raw); i++)
		printf("%02x", raw[i]);
	printf("\n");
	r = get_peer(fd, NULL, &plen);
	printf("get_peer_null ret=%d errno=%d\n", r, errno);
	r = get_peer(-1, (struct sockaddr *)&peer, &plen);
	printf("get_peer_badfd ret=%d errno=%d\n", r, errno);
	for (i = 0; stat(i, &name, &value) == 0; i++)
		printf("stat %s=%llu\n", name, value);
	printf("stat_end errno=%d\n", errno);
	close(fd);
	close(cl);
	close(lst);
}

/* With PROBE_STATS=1, libttm's counters after the run (when preloaded). */
static void stats(void)
{
	stat_fn stat = (stat_fn)dlsym(RTLD_DEFAULT, "ttm_stat");
	const char *name;
	unsigned long long value;
	unsigned i;

	if (!stat || !getenv("PROBE_STATS"))
		return;
	for (i = 0; stat(i, &name, &value) == 0; i++)
		printf("stat %s=%llu\n", name, value);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 2 && !strcmp(argv[1], "errors"))
		errors();
	else if (argc >= 3 && !strcmp(argv[1], "matrix"))
		matrix(argv[2]);
	else if (argc >= 3 && !strcmp(argv[1], "unix"))
		unix_sockets(argv[2]);
	else if (argc >= 2 && !strcmp(argv[1], "udp"))
		udp();
	else if (argc >= 2 && !strcmp(argv[1], "capi"))
		capi();
	else if (argc >= 2 && !strcmp(argv[1], "badlen"))
		badlen();
	else {
		fprintf(stderr, "usage: probe errors|matrix 4|6|dual|unix PATH|udp|capi|badlen\n");
		return 2;
	}
	stats();
	return 0;
}
