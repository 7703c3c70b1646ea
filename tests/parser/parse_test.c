/*
 * The eBPF option walker (bpf/parse.h), built natively: every case the
 * kernel side must get right, including the malformed lists the LB
 * emulator cannot put on the wire (a length running past the header), then
 * a fuzz run under AddressSanitizer/UBSan that would catch any read outside
 * the header. Built and run by tests/bpf_parser.rs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "parse.h"

static int passed, failed;

#define CHECK(cond, ...)                                                   \
	do {                                                               \
		if (cond) {                                                \
			passed++;                                          \
		} else {                                                   \
			failed++;                                          \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                      \
			fputc('\n', stderr);                               \
		}                                                          \
	} while (0)

/* A TCP header with these option bytes, padded with EOL to a multiple of
 * 4, in a heap block of exactly the header's size so ASan sees overreads;
 * `cut` bytes are taken off the end of what the parser may read. */
static int run(const unsigned char *opts, int n, unsigned formats, int cut,
	       struct ttm_peer *peer)
{
	int optlen = (n + 3) & ~3;
	int total = 20 + optlen;
	unsigned char *pkt = malloc(total);
	struct tcphdr *th = (struct tcphdr *)pkt;
	__u32 found_len = 0;
	int r;

	memset(pkt, 0, total);
	th->doff = total / 4;
	if (n)
		memcpy(pkt + 20, opts, n);
	memset(peer, 0, sizeof(*peer));
	r = parse_options(pkt, pkt + total - cut, formats, peer, &found_len);
	free(pkt);
	return r;
}

#define OPTS(...) ((const unsigned char[]){ __VA_ARGS__ })
#define RUN(fmt, peer, ...) \
	run(OPTS(__VA_ARGS__), sizeof(OPTS(__VA_ARGS__)), fmt, 0, peer)
#define ALL (TTM_FMT_254_8 | TTM_FMT_254_20 | TTM_FMT_253_20 | TTM_FMT_253_8 | TTM_FMT_200_8)
#define V6 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7

static void cases(void)
{
	struct ttm_peer p;
	int r;

	r = run(NULL, 0, ALL, 0, &p);
	CHECK(r == PARSE_NONE, "no options: %d", r);

	r = RUN(ALL, &p, 254, 8, 0x10, 0x92, 203, 0, 113, 7);
	CHECK(r == PARSE_FOUND && p.af == AF_INET && p.port == htons(4242) &&
		      p.addr[0] == htonl(0xcb007107),
	      "254/8: %d af %u", r, p.af);

	r = RUN(ALL, &p, 254, 20, 0x10, 0x93, V6);
	CHECK(r == PARSE_FOUND && p.af == AF_INET6 && p.port == htons(4243) &&
		      ((unsigned char *)p.addr)[15] == 7,
	      "254/20: %d", r);

	r = RUN(ALL, &p, 253, 20, 0, 80, V6);
	CHECK(r == PARSE_FOUND && p.af == AF_INET6, "253/20: %d", r);
	r = RUN(ALL, &p, 253, 8, 0, 80, 1, 2, 3, 4);
	CHECK(r == PARSE_FOUND && p.af == AF_INET, "253/8: %d", r);
	r = RUN(ALL, &p, 200, 8, 0, 80, 1, 2, 3, 4);
	CHECK(r == PARSE_FOUND && p.af == AF_INET, "200/8: %d", r);

	/* Disabled formats and other lengths are skipped, not taken. */
	r = RUN(TTM_FMT_DEFAULT, &p, 200, 8, 0, 80, 1, 2, 3, 4);
	CHECK(r == PARSE_NONE, "200/8 disabled: %d", r);
	r = RUN(TTM_FMT_DEFAULT, &p, 253, 8, 0, 80, 1, 2, 3, 4);
	CHECK(r == PARSE_NONE, "253/8 disabled: %d", r);
	r = RUN(ALL, &p, 254, 6, 0, 80, 1, 2);
	CHECK(r == PARSE_NONE, "254/6 is no format: %d", r);
	r = RUN(ALL, &p, 254, 6, 0, 80, 1, 2, 254, 8, 0, 81, 9, 9, 9, 9);
	CHECK(r == PARSE_FOUND && p.port == htons(81), "skip 254/6 then 254/8: %d", r);

	/* Behind the kernel's own options; first match wins. */
	r = RUN(ALL, &p, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2,
		254, 8, 0, 80, 1, 2, 3, 4, 253, 20, 0, 81, V6);
	CHECK(r == PARSE_FOUND && p.af == AF_INET && p.port == htons(80),
	      "NOP NOP TS 254/8 253/20: %d", r);

	/* EOL ends the list: what follows is not read. */
	r = RUN(ALL, &p, 0, 254, 8, 0, 80, 1, 2, 3, 4);
	CHECK(r == PARSE_NONE, "EOL first: %d", r);

	/* Malformed: abandoned, never half-read. */
	r = RUN(ALL, &p, 200, 1, 254, 8, 0, 80, 1, 2, 3, 4);
	CHECK(r == PARSE_MALFORMED, "length 1: %d", r);
	r = RUN(ALL, &p, 5, 0, 254, 8, 0, 80, 1, 2, 3, 4);
	CHECK(r == PARSE_MALFORMED, "length 0: %d", r);
	r = RUN(ALL, &p, 1, 1, 1, 200, 39, 0, 0, 0);
	CHECK(r == PARSE_MALFORMED, "length past the header end: %d", r);
	r = RUN(ALL, &p, 1, 1, 1, 254);
	CHECK(r == PARSE_MALFORMED, "kind in the last byte, no length: %d", r);
	r = RUN(ALL, &p, 254, 20, 0, 80, 1, 2, 3, 4);
	CHECK(r == PARSE_MALFORMED, "254/20 cut short by the header end: %d", r);
	r = run(OPTS(254, 8, 0, 80, 1, 2, 3, 4), 8, ALL, 4, &p);
	CHECK(r == PARSE_MALFORMED, "header longer than the packet data: %d", r);

	/* normalize(): v4-mapped is IPv4; no real client has port 0 or an
	 * unspecified address. */
	r = RUN(ALL, &p, 254, 20, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4);
	CHECK(r == PARSE_FOUND && normalize(&p) && p.af == AF_INET &&
		      p.addr[0] == htonl(0x01020304) && p.addr[3] == 0,
	      "v4-mapped becomes AF_INET");
	r = RUN(ALL, &p, 254, 8, 0, 0, 1, 2, 3, 4);
	CHECK(r == PARSE_FOUND && !normalize(&p), "port 0 refused");
	r = RUN(ALL, &p, 254, 8, 0, 80, 0, 0, 0, 0);
	CHECK(r == PARSE_FOUND && !normalize(&p), "0.0.0.0 refused");
	r = RUN(ALL, &p, 254, 20, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
	CHECK(r == PARSE_FOUND && !normalize(&p), ":: refused");
}

/* Random option areas, random lengths, random truncation: ASan/UBSan
 * abort on any bad read; a found option must be one that fits. */
static void fuzz(unsigned rounds)
{
	unsigned seed = 0x7474;
	for (unsigned i = 0; i < rounds; i++) {
		unsigned char opts[40];
		struct ttm_peer p;
		int n, cut, r;

		for (int j = 0; j < 40; j++) {
			seed = seed * 1103515245 + 12345;
			/* Bias towards the bytes that matter. */
			static const unsigned char pick[] = { 0, 1, 2, 4, 8, 20, 39, 40, 200, 253, 254, 255 };
			opts[j] = (seed >> 16) & 1 ? pick[(seed >> 8) % sizeof(pick)] : seed >> 24;
		}
		n = (seed >> 4) % 41;
		cut = (seed >> 12) % 5;
		if (cut > 20 + ((n + 3) & ~3) - 20)
			cut = 0;
		r = run(opts, n, ALL, cut, &p);
		if (r == PARSE_FOUND && p.af != AF_INET && p.af != AF_INET6) {
			failed++;
			fprintf(stderr, "FAIL fuzz round %u: found af %u\n", i, p.af);
			return;
		}
	}
	passed++;
}

int main(int argc, char **argv)
{
	cases();
	fuzz(argc > 1 ? (unsigned)atoi(argv[1]) : 200000);
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
