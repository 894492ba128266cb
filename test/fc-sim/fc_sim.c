/*
 * fc-sim: a Firecracker simulator for testing and benchmarking UFFD page-fault
 * handlers (snapfault).
 *
 * It does what Firecracker does when it restores a snapshot with a UFFD memory
 * backend (anonymous MAP_PRIVATE|MAP_NORESERVE guest memory, a uffd created via
 * /dev/userfaultfd already past UFFDIO_API with UFFD_FEATURE_EVENT_REMOVE, every
 * region registered in MISSING mode, one sendmsg of the JSON mappings with the
 * uffd as SCM_RIGHTS over a unix stream socket), then plays the guest: vCPU
 * threads read the first byte of pages, optionally verifying the whole page
 * against the memory file, optionally ballooning (MADV_DONTNEED) ranges.
 *
 * Build: gcc -O2 -pthread -Wall -Wextra -o build/fc-sim test/fc-sim/fc_sim.c
 *
 * Exit codes: 0 ok, 1 usage/setup error, 2 connect/sendmsg failed,
 *             3 verification mismatches, 4 --timeout-ms expired,
 *             5 a vCPU thread made no progress for --churn-stuck-ms (--churn-ms).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << 26)
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

#define EXIT_SETUP 1
#define EXIT_CONNECT 2
#define EXIT_MISMATCH 3
#define EXIT_TIMEOUT 4
#define EXIT_STUCK 5
#define MAX_REGIONS 64
#define MAX_BALLOONS 256
#define MAX_PRINTED_MISMATCHES 10

/* ---------------------------------------------------------------- options */

enum shape { SHAPE_NONE, SHAPE_KIB, SHAPE_PAGE_SIZE, SHAPE_BOTH };
enum pattern { PAT_SEQ, PAT_RANDOM, PAT_HOT };
enum bmode { BM_AFTER, BM_BEFORE, BM_CONCURRENT };

static const char *opt_socket;
static const char *opt_mem;
static uint64_t opt_page_size = 4096;
static enum shape opt_shape = SHAPE_BOTH;
static uint64_t opt_pad;
static const char *opt_raw;
static bool opt_no_fd, opt_no_send;
static int opt_threads = 1;
static enum pattern opt_pattern = PAT_SEQ;
static double opt_hot_fraction = 0.1;
static int64_t opt_touches = -1; /* -1: all of the pattern's pages */
static uint64_t opt_seed = 1;
static bool opt_verify;
static bool opt_write; /* first touch of a page is a write (a guest allocating fresh memory), not a read */
static const char *opt_balloon;
static enum bmode opt_bmode = BM_AFTER;
static uint64_t opt_hold_ms;
static uint64_t opt_pause_ms;
static uint64_t opt_send_delay_ms;
static int64_t opt_die_after = -1;
static bool opt_print_ready;
static const char *opt_regions;
static uint64_t opt_timeout_ms;
static uint64_t opt_churn_ms;       /* 0: no churn */
static uint64_t opt_churn_at;       /* byte offset of the churn window in guest memory */
static uint64_t opt_churn_window = 512; /* pages */
static uint64_t opt_churn_max = 8;  /* pages per remove, at most */
static uint64_t opt_churn_stuck_ms = 5000;
static int opt_churn_removers = 1;
static uint64_t opt_stall_ms;       /* 0: no stall report */

static const char *pattern_names[] = {"seq", "random", "hot"};

/* ------------------------------------------------------------------ state */

struct region {
	uint8_t *addr;
	uint64_t size;
	uint64_t offset;     /* in the memory file == global guest offset */
	uint64_t first_page; /* global page number of its first page */
	uint64_t npages;
};

static struct region regions[MAX_REGIONS];
static int nregions;
static uint64_t total_size, total_pages;
static int mem_fd = -1;
static uint8_t *in_balloon; /* per global page: 1 if inside a balloon range */
static atomic_bool balloon_inflated; /* set once the balloon ranges were madvised */

struct brange { uint64_t off, len; };
static struct brange balloons[MAX_BALLOONS];
static int nballoons;

static atomic_uint_fast64_t mismatches;
static atomic_uint_fast64_t zero_checked;
static atomic_uint_fast64_t printed_mismatches;
static atomic_int_fast64_t total_touch_count;

/* ---------------------------------------------------------------- helpers */

static void die(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("fc-sim: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(code);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* Parses a byte count with an optional K/M/G/T suffix (powers of 1024,
 * optionally followed by "B" or "iB"). Returns false on a malformed value. */
static bool parse_size_str(const char *s, const char **endp, uint64_t *out)
{
	if (!s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s)
		return false;
	uint64_t mul = 1;
	switch (*end) {
	case 'k': case 'K': mul = 1ull << 10; end++; break;
	case 'm': case 'M': mul = 1ull << 20; end++; break;
	case 'g': case 'G': mul = 1ull << 30; end++; break;
	case 't': case 'T': mul = 1ull << 40; end++; break;
	default: break;
	}
	if (mul != 1) {
		if (end[0] == 'i' && end[1] == 'B')
			end += 2;
		else if (end[0] == 'B')
			end++;
	}
	if (mul != 1 && v > UINT64_MAX / mul)
		return false;
	*out = (uint64_t)v * mul;
	if (endp)
		*endp = end;
	else if (*end)
		return false;
	return true;
}

static uint64_t parse_size_opt(const char *name, const char *s)
{
	uint64_t v;
	if (!parse_size_str(s, NULL, &v))
		die(EXIT_SETUP, "invalid size for --%s: '%s'", name, s);
	return v;
}

static uint64_t parse_u64_opt(const char *name, const char *s)
{
	char *end;
	errno = 0;
	if (!s || *s < '0' || *s > '9')
		die(EXIT_SETUP, "invalid number for --%s: '%s'", name, s ? s : "");
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || *end)
		die(EXIT_SETUP, "invalid number for --%s: '%s'", name, s);
	return v;
}

/* splitmix64: small, fast, deterministic PRNG */
static uint64_t rng_next(uint64_t *st)
{
	uint64_t z = (*st += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t *st, uint64_t n)
{
	/* Lemire-style rejection-free enough for test shuffles: use 128-bit mul */
	return (uint64_t)(((unsigned __int128)rng_next(st) * n) >> 64);
}

static int region_of_page(uint64_t gpage)
{
	int lo = 0, hi = nregions - 1;
	while (lo < hi) {
		int mid = (lo + hi + 1) / 2;
		if (regions[mid].first_page <= gpage)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

static inline uint8_t *page_addr(uint64_t gpage, int *reg_out)
{
	int r = region_of_page(gpage);
	if (reg_out)
		*reg_out = r;
	return regions[r].addr + (gpage - regions[r].first_page) * opt_page_size;
}

static void count_touch(void)
{
	if (opt_die_after < 0)
		return;
	int_fast64_t n = atomic_fetch_add(&total_touch_count, 1) + 1;
	if (n >= opt_die_after) {
		fprintf(stderr, "fc-sim: --die-after %" PRId64 " reached, raising SIGKILL\n", opt_die_after);
		raise(SIGKILL);
	}
}

static bool is_zero(const uint8_t *p, uint64_t n)
{
	const uint64_t *q = (const uint64_t *)p;
	for (uint64_t i = 0; i < n / 8; i++)
		if (q[i])
			return false;
	return true;
}

/* Compares the page at global page number gpage with what it should hold.
 * buf is a scratch buffer of page-size bytes. */
static void verify_page(uint64_t gpage, uint8_t *buf)
{
	int r;
	uint8_t *p = page_addr(gpage, &r);
	bool want_zero = balloon_inflated && in_balloon && in_balloon[gpage];
	bool ok;
	uint64_t diff_at = 0;
	uint8_t got = 0, want = 0;

	if (want_zero) {
		ok = is_zero(p, opt_page_size);
		if (!ok) {
			while (diff_at < opt_page_size && p[diff_at] == 0)
				diff_at++;
			got = p[diff_at];
		}
		atomic_fetch_add(&zero_checked, 1);
	} else {
		uint64_t off = gpage * opt_page_size, done = 0;
		while (done < opt_page_size) {
			ssize_t n = pread(mem_fd, buf + done, opt_page_size - done, (off_t)(off + done));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				fprintf(stderr, "fc-sim: pread of memory file at offset %" PRIu64 " failed: %s\n",
					off + done, n < 0 ? strerror(errno) : "unexpected end of file");
				exit(EXIT_SETUP);
			}
			done += (uint64_t)n;
		}
		ok = memcmp(p, buf, opt_page_size) == 0;
		if (!ok) {
			while (diff_at < opt_page_size && p[diff_at] == buf[diff_at])
				diff_at++;
			got = p[diff_at];
			want = buf[diff_at];
		}
	}
	if (!ok) {
		atomic_fetch_add(&mismatches, 1);
		if (atomic_fetch_add(&printed_mismatches, 1) < MAX_PRINTED_MISMATCHES)
			fprintf(stderr,
				"mismatch at region %d page %" PRIu64 " (addr %p): expected %s "
				"(first difference at byte %" PRIu64 ": got 0x%02x, want 0x%02x)\n",
				r, gpage - regions[r].first_page, (void *)p,
				want_zero ? "zeros" : "file bytes", diff_at, got, want);
	}
}

/* --------------------------------------------------------------- guest */

struct worker {
	pthread_t tid;
	const uint64_t *pages; /* global page numbers to touch, in order */
	uint64_t n;
	uint64_t *lat; /* latencies out, n entries */
	uint8_t *buf;  /* verify scratch */
};

static pthread_barrier_t start_barrier;

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	pthread_barrier_wait(&start_barrier);
	for (uint64_t i = 0; i < w->n; i++) {
		uint64_t g = w->pages[i];
		volatile uint8_t *p = page_addr(g, NULL);
		uint64_t t0 = now_ns();
		if (opt_write)
			/* A locked add of 0: a write fault straight away, and the page keeps its bytes (so --verify still holds). */
			__atomic_fetch_add((uint8_t *)p, 0, __ATOMIC_RELAXED);
		else
			(void)*p;
		uint64_t t1 = now_ns();
		w->lat[i] = t1 - t0;
		count_touch();
		if (opt_verify)
			verify_page(g, w->buf);
	}
	return NULL;
}

struct piece { uint8_t *addr; uint64_t len; };
static struct piece *bpieces;
static int nbpieces;

static void madvise_balloons(void)
{
	balloon_inflated = true;
	for (int i = 0; i < nbpieces; i++) {
		if (madvise(bpieces[i].addr, bpieces[i].len, MADV_DONTNEED) != 0)
			die(EXIT_SETUP, "madvise(MADV_DONTNEED, %p, %" PRIu64 ") failed: %s",
			    (void *)bpieces[i].addr, bpieces[i].len, strerror(errno));
	}
}

static void *balloon_thread_main(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&start_barrier);
	for (int i = 0; i < 20; i++) {
		madvise_balloons();
		sleep_ms(1);
	}
	return NULL;
}

/* Re-reads every balloon page (one thread) and checks it is all zeros. */
static void reread_balloons(uint8_t *buf)
{
	for (uint64_t g = 0; g < total_pages; g++) {
		if (!in_balloon[g])
			continue;
		volatile uint8_t *p = page_addr(g, NULL);
		(void)*p;
		count_touch();
		verify_page(g, buf);
	}
}

static void *timeout_main(void *arg)
{
	(void)arg;
	sleep_ms(opt_timeout_ms);
	fprintf(stderr, "fc-sim: --timeout-ms %" PRIu64 " expired (faults not resolved?)\n", opt_timeout_ms);
	_exit(EXIT_TIMEOUT);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static uint64_t percentile(const uint64_t *sorted, uint64_t n, double p)
{
	if (n == 0)
		return 0;
	/* nearest-rank */
	uint64_t rank = (uint64_t)(p * (double)n + 0.999999999);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return sorted[rank - 1];
}

/* ---------------------------------------------------------------- setup */

static void usage(FILE *f)
{
	fputs(
	    "usage: fc-sim --socket PATH [--mem FILE] [options]\n"
	    "  --socket PATH          unix socket of the UFFD handler (required)\n"
	    "  --mem FILE             snapshot memory file (required unless --regions and no --verify)\n"
	    "  --regions S[,S...]     region sizes (K/M/G suffixes); default one region = file size\n"
	    "  --page-size N          4096 (default) or 2097152 (hugetlbfs, needs reserved hugepages)\n"
	    "  --shape none|kib|page_size|both   page-size fields in the handshake (default both)\n"
	    "  --pad N                add \"x_padding\":\"a...\" (N chars) to each region object\n"
	    "  --raw-handshake FILE   send FILE's bytes verbatim instead of the JSON (uffd still attached)\n"
	    "  --no-fd                send the handshake without SCM_RIGHTS\n"
	    "  --no-send              connect, send nothing\n"
	    "  --threads N            vCPU threads (default 1)\n"
	    "  --pattern seq|random|hot       page visit order (default seq)\n"
	    "  --hot-fraction F       hot set fraction for --pattern hot (default 0.1)\n"
	    "  --touches N            total pages touched (default all of the pattern's pages)\n"
	    "  --seed S               PRNG seed (default 1)\n"
	    "  --verify               check every touched page against the file (or zeros)\n"
	    "  --write                touch each page first with a write (a guest allocating fresh memory)\n"
	    "  --balloon OFF:LEN[,..] guest-memory ranges to MADV_DONTNEED (K/M/G suffixes)\n"
	    "  --balloon-mode before|concurrent|after (default after)\n"
	    "  --hold-ms N            after printing, keep the socket open N ms\n"
	    "  --pause-ms N           after the handshake, wait N ms before touching (a guest idle at first)\n"
	    "  --send-delay-ms N      connect, then wait N ms before sending the handshake\n"
	    "  --die-after N          raise(SIGKILL) after N touches in total\n"
	    "  --print-pid-ready      print 'ready <pid>' on stderr once the handshake is sent\n"
	    "  --timeout-ms N         exit 4 if not finished after N ms (default: no timeout)\n"
	    "  --churn-ms N           balloon churn for N ms instead of a touch pattern: one thread keeps\n"
	    "                         MADV_DONTNEED-ing random 1..--churn-max page ranges of a window every\n"
	    "                         20-220 us while --threads threads keep reading random pages of it;\n"
	    "                         with --verify every read page is the file's bytes or zeros once removed\n"
	    "  --churn-at OFF         byte offset of the window in guest memory (default 0)\n"
	    "  --churn-window N       pages in the window (default 512)\n"
	    "  --churn-max N          pages a remove takes at most (default 8)\n"
	    "  --churn-removers N     threads removing at once (default 1)\n"
	    "  --churn-stuck-ms N     exit 5 once a reading thread made no progress for N ms (default 5000)\n"
	    "  --stall-report-ms N    (--churn-ms) report every read that took over N ms: \"stalls\" in the\n"
	    "                         JSON, [start, end] in CLOCK_MONOTONIC ns, at most 1024\n",
	    f);
}

static void parse_options(int argc, char **argv)
{
	enum {
		O_SOCKET = 256, O_MEM, O_PAGE_SIZE, O_SHAPE, O_PAD, O_RAW, O_NO_FD, O_NO_SEND,
		O_THREADS, O_PATTERN, O_HOT, O_TOUCHES, O_SEED, O_VERIFY, O_WRITE, O_BALLOON, O_BMODE,
		O_HOLD, O_PAUSE, O_SEND_DELAY, O_DIE, O_READY, O_REGIONS, O_TIMEOUT, O_CHURN, O_CHURN_AT, O_CHURN_WINDOW,
		O_CHURN_MAX, O_CHURN_STUCK, O_CHURN_REMOVERS, O_STALL, O_HELP
	};
	static const struct option opts[] = {
	    {"socket", required_argument, 0, O_SOCKET},
	    {"mem", required_argument, 0, O_MEM},
	    {"page-size", required_argument, 0, O_PAGE_SIZE},
	    {"shape", required_argument, 0, O_SHAPE},
	    {"pad", required_argument, 0, O_PAD},
	    {"raw-handshake", required_argument, 0, O_RAW},
	    {"no-fd", no_argument, 0, O_NO_FD},
	    {"no-send", no_argument, 0, O_NO_SEND},
	    {"threads", required_argument, 0, O_THREADS},
	    {"pattern", required_argument, 0, O_PATTERN},
	    {"hot-fraction", required_argument, 0, O_HOT},
	    {"touches", required_argument, 0, O_TOUCHES},
	    {"seed", required_argument, 0, O_SEED},
	    {"verify", no_argument, 0, O_VERIFY},
	    {"write", no_argument, 0, O_WRITE},
	    {"balloon", required_argument, 0, O_BALLOON},
	    {"balloon-mode", required_argument, 0, O_BMODE},
	    {"hold-ms", required_argument, 0, O_HOLD},
	    {"pause-ms", required_argument, 0, O_PAUSE},
	    {"send-delay-ms", required_argument, 0, O_SEND_DELAY},
	    {"die-after", required_argument, 0, O_DIE},
	    {"print-pid-ready", no_argument, 0, O_READY},
	    {"regions", required_argument, 0, O_REGIONS},
	    {"timeout-ms", required_argument, 0, O_TIMEOUT},
	    {"churn-ms", required_argument, 0, O_CHURN},
	    {"churn-at", required_argument, 0, O_CHURN_AT},
	    {"churn-window", required_argument, 0, O_CHURN_WINDOW},
	    {"churn-max", required_argument, 0, O_CHURN_MAX},
	    {"churn-stuck-ms", required_argument, 0, O_CHURN_STUCK},
	    {"churn-removers", required_argument, 0, O_CHURN_REMOVERS},
	    {"stall-report-ms", required_argument, 0, O_STALL},
	    {"help", no_argument, 0, O_HELP},
	    {0, 0, 0, 0}};
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case O_SOCKET: opt_socket = optarg; break;
		case O_MEM: opt_mem = optarg; break;
		case O_PAGE_SIZE:
			opt_page_size = parse_size_opt("page-size", optarg);
			if (opt_page_size != 4096 && opt_page_size != 2097152)
				die(EXIT_SETUP, "--page-size must be 4096 or 2097152, got %s", optarg);
			break;
		case O_SHAPE:
			if (!strcmp(optarg, "none")) opt_shape = SHAPE_NONE;
			else if (!strcmp(optarg, "kib")) opt_shape = SHAPE_KIB;
			else if (!strcmp(optarg, "page_size")) opt_shape = SHAPE_PAGE_SIZE;
			else if (!strcmp(optarg, "both")) opt_shape = SHAPE_BOTH;
			else die(EXIT_SETUP, "--shape must be none|kib|page_size|both, got '%s'", optarg);
			break;
		case O_PAD: opt_pad = parse_size_opt("pad", optarg); break;
		case O_RAW: opt_raw = optarg; break;
		case O_NO_FD: opt_no_fd = true; break;
		case O_NO_SEND: opt_no_send = true; break;
		case O_THREADS: {
			uint64_t t = parse_u64_opt("threads", optarg);
			if (t < 1 || t > 1024)
				die(EXIT_SETUP, "--threads must be 1..1024, got %s", optarg);
			opt_threads = (int)t;
			break;
		}
		case O_PATTERN:
			if (!strcmp(optarg, "seq")) opt_pattern = PAT_SEQ;
			else if (!strcmp(optarg, "random")) opt_pattern = PAT_RANDOM;
			else if (!strcmp(optarg, "hot")) opt_pattern = PAT_HOT;
			else die(EXIT_SETUP, "--pattern must be seq|random|hot, got '%s'", optarg);
			break;
		case O_HOT: {
			char *end;
			errno = 0;
			opt_hot_fraction = strtod(optarg, &end);
			if (errno || *end || end == optarg || !(opt_hot_fraction > 0.0) || opt_hot_fraction > 1.0)
				die(EXIT_SETUP, "--hot-fraction must be in (0, 1], got '%s'", optarg);
			break;
		}
		case O_TOUCHES: {
			uint64_t t = parse_u64_opt("touches", optarg);
			if (t > INT64_MAX)
				die(EXIT_SETUP, "--touches too large");
			opt_touches = (int64_t)t;
			break;
		}
		case O_SEED: opt_seed = parse_u64_opt("seed", optarg); break;
		case O_VERIFY: opt_verify = true; break;
		case O_WRITE: opt_write = true; break;
		case O_BALLOON: opt_balloon = optarg; break;
		case O_BMODE:
			if (!strcmp(optarg, "after")) opt_bmode = BM_AFTER;
			else if (!strcmp(optarg, "before")) opt_bmode = BM_BEFORE;
			else if (!strcmp(optarg, "concurrent")) opt_bmode = BM_CONCURRENT;
			else die(EXIT_SETUP, "--balloon-mode must be before|concurrent|after, got '%s'", optarg);
			break;
		case O_HOLD: opt_hold_ms = parse_u64_opt("hold-ms", optarg); break;
		case O_PAUSE: opt_pause_ms = parse_u64_opt("pause-ms", optarg); break;
		case O_SEND_DELAY: opt_send_delay_ms = parse_u64_opt("send-delay-ms", optarg); break;
		case O_DIE: {
			uint64_t t = parse_u64_opt("die-after", optarg);
			if (t > INT64_MAX)
				die(EXIT_SETUP, "--die-after too large");
			opt_die_after = (int64_t)t;
			break;
		}
		case O_READY: opt_print_ready = true; break;
		case O_REGIONS: opt_regions = optarg; break;
		case O_TIMEOUT: opt_timeout_ms = parse_u64_opt("timeout-ms", optarg); break;
		case O_CHURN: opt_churn_ms = parse_u64_opt("churn-ms", optarg); break;
		case O_CHURN_AT: opt_churn_at = parse_size_opt("churn-at", optarg); break;
		case O_CHURN_WINDOW: opt_churn_window = parse_u64_opt("churn-window", optarg); break;
		case O_CHURN_MAX: opt_churn_max = parse_u64_opt("churn-max", optarg); break;
		case O_CHURN_STUCK: opt_churn_stuck_ms = parse_u64_opt("churn-stuck-ms", optarg); break;
		case O_CHURN_REMOVERS: {
			uint64_t t = parse_u64_opt("churn-removers", optarg);
			if (t < 1 || t > 64)
				die(EXIT_SETUP, "--churn-removers must be 1..64, got %s", optarg);
			opt_churn_removers = (int)t;
			break;
		}
		case O_STALL: opt_stall_ms = parse_u64_opt("stall-report-ms", optarg); break;
		case O_HELP: usage(stdout); exit(0);
		default:
			if (optopt)
				die(EXIT_SETUP, "option needs an argument or is unknown: %s (see --help)", argv[optind - 1]);
			die(EXIT_SETUP, "unknown option: %s (see --help)", argv[optind - 1]);
		}
	}
	if (optind < argc)
		die(EXIT_SETUP, "unexpected argument: '%s' (see --help)", argv[optind]);
	if (!opt_socket)
		die(EXIT_SETUP, "--socket PATH is required (see --help)");
	if (!opt_mem && (!opt_regions || opt_verify))
		die(EXIT_SETUP, "--mem FILE is required (unless --regions is given and --verify is not)");
	if (opt_churn_ms && (opt_churn_window == 0 || opt_churn_max == 0 || opt_churn_stuck_ms == 0))
		die(EXIT_SETUP, "--churn-window, --churn-max and --churn-stuck-ms must be at least 1");
	if (opt_churn_ms && opt_balloon)
		die(EXIT_SETUP, "--churn-ms cannot be combined with --balloon");
	if (opt_no_send && (opt_raw || opt_no_fd))
		die(EXIT_SETUP, "--no-send cannot be combined with --raw-handshake or --no-fd");
}

static void setup_regions(void)
{
	uint64_t file_size = 0;
	bool have_file = false;
	if (opt_mem) {
		mem_fd = open(opt_mem, O_RDONLY | O_CLOEXEC);
		if (mem_fd < 0)
			die(EXIT_SETUP, "cannot open memory file '%s': %s", opt_mem, strerror(errno));
		struct stat st;
		if (fstat(mem_fd, &st) != 0)
			die(EXIT_SETUP, "fstat '%s': %s", opt_mem, strerror(errno));
		file_size = (uint64_t)st.st_size;
		have_file = true;
	}
	uint64_t sizes[MAX_REGIONS];
	int n = 0;
	if (opt_regions) {
		const char *s = opt_regions;
		for (;;) {
			const char *end;
			uint64_t v;
			if (n >= MAX_REGIONS)
				die(EXIT_SETUP, "too many --regions (max %d)", MAX_REGIONS);
			if (!parse_size_str(s, &end, &v) || (*end && *end != ','))
				die(EXIT_SETUP, "invalid --regions list '%s'", opt_regions);
			sizes[n++] = v;
			if (!*end)
				break;
			s = end + 1;
		}
	} else {
		sizes[n++] = file_size;
	}
	uint64_t off = 0;
	for (int i = 0; i < n; i++) {
		if (sizes[i] == 0)
			die(EXIT_SETUP, "region %d has size 0%s", i, opt_regions ? "" : " (empty memory file?)");
		if (sizes[i] % opt_page_size)
			die(EXIT_SETUP, "region %d size %" PRIu64 " is not a multiple of the page size %" PRIu64,
			    i, sizes[i], opt_page_size);
		if (off + sizes[i] < off)
			die(EXIT_SETUP, "region sizes overflow");
		regions[i].size = sizes[i];
		regions[i].offset = off;
		regions[i].first_page = off / opt_page_size;
		regions[i].npages = sizes[i] / opt_page_size;
		off += sizes[i];
	}
	nregions = n;
	total_size = off;
	total_pages = off / opt_page_size;
	if (have_file && total_size > file_size)
		die(EXIT_SETUP, "regions total %" PRIu64 " bytes exceeds the memory file size %" PRIu64,
		    total_size, file_size);
	if (total_pages > (SIZE_MAX / 16))
		die(EXIT_SETUP, "guest memory too large");

	if (opt_page_size == 2097152) {
		/* MAP_NORESERVE hugetlb mmaps succeed without pages; faults would fail later */
		uint64_t need = total_size / 2097152, free_pages = 0;
		FILE *f = fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "r");
		if (!f || fscanf(f, "%" SCNu64, &free_pages) != 1)
			die(EXIT_SETUP, "2 MiB hugepages are not supported here (cannot read "
					"/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages)");
		fclose(f);
		if (free_pages < need)
			die(EXIT_SETUP, "hugepages not reserved: need %" PRIu64 " free 2 MiB pages, %" PRIu64
					" free (echo N > /proc/sys/vm/nr_hugepages)", need, free_pages);
	}
	for (int i = 0; i < nregions; i++) {
		int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
		if (opt_page_size == 2097152)
			flags |= MAP_HUGETLB | MAP_HUGE_2MB;
		void *p = mmap(NULL, regions[i].size, PROT_READ | PROT_WRITE, flags, -1, 0);
		if (p == MAP_FAILED) {
			if (opt_page_size == 2097152)
				die(EXIT_SETUP,
				    "mmap of region %d (%" PRIu64 " bytes, MAP_HUGETLB 2 MiB) failed: %s "
				    "(hugepages not reserved? need %" PRIu64 " free in /proc/sys/vm/nr_hugepages)",
				    i, regions[i].size, strerror(errno), total_size / 2097152);
			die(EXIT_SETUP, "mmap of region %d (%" PRIu64 " bytes) failed: %s", i, regions[i].size,
			    strerror(errno));
		}
		regions[i].addr = p;
	}
}

static void setup_balloons(void)
{
	if (!opt_balloon)
		return;
	const char *s = opt_balloon;
	for (;;) {
		const char *end;
		uint64_t off, len;
		if (nballoons >= MAX_BALLOONS)
			die(EXIT_SETUP, "too many --balloon ranges (max %d)", MAX_BALLOONS);
		if (!parse_size_str(s, &end, &off) || *end != ':')
			die(EXIT_SETUP, "invalid --balloon list '%s' (want OFF:LEN[,OFF:LEN...])", opt_balloon);
		s = end + 1;
		if (!parse_size_str(s, &end, &len) || (*end && *end != ','))
			die(EXIT_SETUP, "invalid --balloon list '%s' (want OFF:LEN[,OFF:LEN...])", opt_balloon);
		if (len == 0 || off % opt_page_size || len % opt_page_size)
			die(EXIT_SETUP, "--balloon range %" PRIu64 ":%" PRIu64 " must be non-empty and aligned to the page size %" PRIu64,
			    off, len, opt_page_size);
		if (off + len < off || off + len > total_size)
			die(EXIT_SETUP, "--balloon range %" PRIu64 ":%" PRIu64 " lies outside guest memory (%" PRIu64 " bytes)",
			    off, len, total_size);
		balloons[nballoons].off = off;
		balloons[nballoons].len = len;
		nballoons++;
		if (!*end)
			break;
		s = end + 1;
	}
	in_balloon = calloc(total_pages, 1);
	if (!in_balloon)
		die(EXIT_SETUP, "out of memory");
	/* split each range at region boundaries into madvise pieces */
	bpieces = calloc((size_t)nballoons * (size_t)nregions, sizeof(*bpieces));
	if (!bpieces)
		die(EXIT_SETUP, "out of memory");
	for (int b = 0; b < nballoons; b++) {
		uint64_t lo = balloons[b].off, hi = lo + balloons[b].len;
		for (uint64_t g = lo / opt_page_size; g < hi / opt_page_size; g++)
			in_balloon[g] = 1;
		for (int r = 0; r < nregions; r++) {
			uint64_t rlo = regions[r].offset, rhi = rlo + regions[r].size;
			uint64_t a = lo > rlo ? lo : rlo, z = hi < rhi ? hi : rhi;
			if (a >= z)
				continue;
			bpieces[nbpieces].addr = regions[r].addr + (a - rlo);
			bpieces[nbpieces].len = z - a;
			nbpieces++;
		}
	}
}

static int create_uffd(void)
{
	int uffd = -1;
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		uffd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		int saved = errno;
		close(dev);
		if (uffd < 0)
			fprintf(stderr, "fc-sim: USERFAULTFD_IOC_NEW failed (%s), falling back to the syscall\n",
				strerror(saved));
	}
	if (uffd < 0) {
		uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
		if (uffd < 0)
			die(EXIT_SETUP, "cannot create a userfaultfd (/dev/userfaultfd and the syscall both failed): %s",
			    strerror(errno));
	}
	struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE};
	if (ioctl(uffd, UFFDIO_API, &api) != 0)
		die(EXIT_SETUP, "UFFDIO_API (features EVENT_REMOVE) failed: %s", strerror(errno));
	for (int i = 0; i < nregions; i++) {
		struct uffdio_register reg = {
		    .range = {.start = (uint64_t)(uintptr_t)regions[i].addr, .len = regions[i].size},
		    .mode = UFFDIO_REGISTER_MODE_MISSING};
		if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0)
			die(EXIT_SETUP, "UFFDIO_REGISTER of region %d (%p, %" PRIu64 " bytes) failed: %s", i,
			    (void *)regions[i].addr, regions[i].size, strerror(errno));
	}
	return uffd;
}

static char *build_json(size_t *len_out)
{
	size_t cap = (size_t)nregions * (256 + opt_pad) + 16;
	char *s = malloc(cap);
	if (!s)
		die(EXIT_SETUP, "out of memory");
	size_t n = 0;
	s[n++] = '[';
	for (int i = 0; i < nregions; i++) {
		n += (size_t)snprintf(s + n, cap - n,
				      "%s{\"base_host_virt_addr\":%" PRIu64 ",\"size\":%" PRIu64 ",\"offset\":%" PRIu64,
				      i ? "," : "", (uint64_t)(uintptr_t)regions[i].addr, regions[i].size,
				      regions[i].offset);
		if (opt_shape == SHAPE_PAGE_SIZE || opt_shape == SHAPE_BOTH)
			n += (size_t)snprintf(s + n, cap - n, ",\"page_size\":%" PRIu64, opt_page_size);
		if (opt_shape == SHAPE_KIB || opt_shape == SHAPE_BOTH)
			n += (size_t)snprintf(s + n, cap - n, ",\"page_size_kib\":%" PRIu64, opt_page_size);
		if (opt_pad) {
			n += (size_t)snprintf(s + n, cap - n, ",\"x_padding\":\"");
			memset(s + n, 'a', opt_pad);
			n += opt_pad;
			s[n++] = '"';
		}
		s[n++] = '}';
	}
	s[n++] = ']';
	s[n] = 0;
	*len_out = n;
	return s;
}

static char *read_file(const char *path, size_t *len_out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die(EXIT_SETUP, "cannot open --raw-handshake file '%s': %s", path, strerror(errno));
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	if (!buf)
		die(EXIT_SETUP, "out of memory");
	for (;;) {
		if (n == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			if (!buf)
				die(EXIT_SETUP, "out of memory");
		}
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die(EXIT_SETUP, "read '%s': %s", path, strerror(errno));
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	*len_out = n;
	return buf;
}

static int connect_socket(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(opt_socket) >= sizeof(sa.sun_path))
		die(EXIT_SETUP, "socket path too long: '%s'", opt_socket);
	strcpy(sa.sun_path, opt_socket);
	uint64_t deadline = now_ns() + 10ull * 1000000000ull;
	int last_err = 0;
	for (;;) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			die(EXIT_SETUP, "socket(AF_UNIX): %s", strerror(errno));
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		last_err = errno;
		close(fd);
		if (now_ns() >= deadline)
			break;
		sleep_ms(10);
	}
	fprintf(stderr, "fc-sim: cannot connect to '%s' within 10 s: %s\n", opt_socket, strerror(last_err));
	exit(EXIT_CONNECT);
}

static void send_handshake(int sock, int uffd)
{
	size_t len;
	char *msg = opt_raw ? read_file(opt_raw, &len) : build_json(&len);
	struct iovec iov = {.iov_base = msg, .iov_len = len};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	memset(&ctl, 0, sizeof(ctl));
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (!opt_no_fd) {
		mh.msg_control = ctl.buf;
		mh.msg_controllen = sizeof(ctl.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &uffd, sizeof(int));
	}
	if (len == 0)
		fprintf(stderr, "fc-sim: warning: empty handshake payload\n");
	ssize_t r;
	do
		r = sendmsg(sock, &mh, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		fprintf(stderr, "fc-sim: sendmsg of the handshake failed: %s\n", strerror(errno));
		exit(EXIT_CONNECT);
	}
	if ((size_t)r != len) {
		fprintf(stderr, "fc-sim: sendmsg sent only %zd of %zu bytes\n", r, len);
		exit(EXIT_CONNECT);
	}
	free(msg);
}

/* Builds the ordered list of global page numbers the guest visits. */
static uint64_t *build_pattern(uint64_t *n_out)
{
	uint64_t *pages = malloc((total_pages ? total_pages : 1) * sizeof(uint64_t));
	if (!pages)
		die(EXIT_SETUP, "out of memory");
	uint64_t n = 0;
	bool exclude = opt_bmode == BM_CONCURRENT && in_balloon;
	for (uint64_t g = 0; g < total_pages; g++)
		if (!exclude || !in_balloon[g])
			pages[n++] = g;
	uint64_t rng = opt_seed;
	if (opt_pattern == PAT_RANDOM) {
		for (uint64_t i = n; i > 1; i--) {
			uint64_t j = rng_below(&rng, i);
			uint64_t t = pages[i - 1]; pages[i - 1] = pages[j]; pages[j] = t;
		}
	} else if (opt_pattern == PAT_HOT) {
		uint64_t k = (uint64_t)(opt_hot_fraction * (double)n + 0.5);
		if (k == 0 && n > 0)
			k = 1;
		if (k > n)
			k = n;
		/* partial Fisher-Yates: a random k-subset in random order */
		for (uint64_t i = 0; i < k; i++) {
			uint64_t j = i + rng_below(&rng, n - i);
			uint64_t t = pages[i]; pages[i] = pages[j]; pages[j] = t;
		}
		n = k;
	}
	if (opt_touches >= 0 && (uint64_t)opt_touches < n)
		n = (uint64_t)opt_touches;
	*n_out = n;
	return pages;
}

/* ----------------------------------------------------------------- churn */

/*
 * Balloon churn, as free-page reporting makes it: one thread keeps removing
 * small random ranges of a window of guest memory while the vCPU threads keep
 * reading random pages of it, so REMOVE events race faults on the same pages.
 * A read that never returns is a frozen vCPU (exit 5); a page that is neither
 * the snapshot's bytes nor zeros after a remove is a wrong byte (exit 3).
 */
static uint64_t churn_first;           /* first global page of the window */
static const uint8_t *churn_file;      /* the memory file, mapped read-only */
static atomic_uchar *churn_removed;    /* per window page: set before its first madvise */
static atomic_bool churn_stop;
static atomic_uint_fast64_t churn_removes;

struct churn_reader {
	pthread_t tid;
	int index;
	uint64_t seed;
	atomic_uint_fast64_t last_ns; /* when the last read returned */
	atomic_uint_fast64_t page;    /* the window page being read */
	uint64_t reads;
};

/*
 * Checks the page at window index w word by word: each word is the file's or,
 * once the page was removed, zero (a remove racing the check zeroes a suffix).
 * `whole`: the page must be entirely one or the other (nothing races it).
 */
static void churn_check(uint64_t w, bool whole)
{
	uint64_t g = churn_first + w;
	const uint64_t *got = (const uint64_t *)page_addr(g, NULL);
	const uint64_t *want = (const uint64_t *)(churn_file + g * opt_page_size);
	uint64_t words = opt_page_size / 8, zeros = 0, bad_at = UINT64_MAX;
	for (uint64_t i = 0; i < words; i++) {
		uint64_t v = got[i];
		if (v == want[i])
			continue;
		if (v == 0) {
			zeros++;
			continue;
		}
		bad_at = i;
		break;
	}
	bool removed = atomic_load(&churn_removed[w]);
	const char *why = NULL;
	if (bad_at != UINT64_MAX)
		why = "a word that is neither the file's nor zero";
	else if (zeros && !removed)
		why = "zeros in a page that was never removed";
	else if (whole && zeros && zeros != words && !is_zero((const uint8_t *)got, opt_page_size))
		why = "a page partly the file's and partly zeros";
	if (!why)
		return;
	atomic_fetch_add(&mismatches, 1);
	if (atomic_fetch_add(&printed_mismatches, 1) < MAX_PRINTED_MISMATCHES)
		fprintf(stderr, "mismatch at window page %" PRIu64 " (guest page %" PRIu64 "): %s\n", w, g, why);
}

/* Reads that waited over --stall-report-ms: how long a handler's death or takeover held a vCPU up. */
#define MAX_STALLS 1024
static uint64_t stalls[MAX_STALLS][2];
static atomic_uint stall_count;

static void note_stall(uint64_t t0, uint64_t t1)
{
	if (!opt_stall_ms || t1 - t0 <= opt_stall_ms * 1000000ull)
		return;
	unsigned i = atomic_fetch_add(&stall_count, 1);
	if (i < MAX_STALLS) {
		stalls[i][0] = t0;
		stalls[i][1] = t1;
	}
}

/* Reads window page w (the fault, if any, blocks here), notes the progress, checks the page. */
static void churn_touch(struct churn_reader *r, uint64_t w, bool whole)
{
	atomic_store(&r->page, w);
	volatile uint8_t *p = page_addr(churn_first + w, NULL);
	uint64_t t0 = now_ns();
	(void)*p;
	uint64_t t1 = now_ns();
	note_stall(t0, t1);
	atomic_store(&r->last_ns, t1);
	r->reads++;
	if (opt_verify)
		churn_check(w, whole);
}

static void *churn_reader_main(void *arg)
{
	struct churn_reader *r = arg;
	pthread_barrier_wait(&start_barrier);
	while (!atomic_load(&churn_stop))
		churn_touch(r, rng_below(&r->seed, opt_churn_window), false);
	return NULL;
}

struct churn_remover {
	pthread_t tid;
	uint64_t seed;
	uint64_t deadline;
};

static void *churn_remover_main(void *arg)
{
	struct churn_remover *cr = arg;
	uint64_t seed = cr->seed;
	uint64_t deadline = cr->deadline;
	pthread_barrier_wait(&start_barrier);
	while (now_ns() < deadline) {
		uint64_t w = rng_below(&seed, opt_churn_window);
		uint64_t len = 1 + rng_below(&seed, opt_churn_max);
		if (w + len > opt_churn_window)
			len = opt_churn_window - w;
		int reg;
		uint8_t *addr = page_addr(churn_first + w, &reg);
		uint64_t left_in_region = regions[reg].first_page + regions[reg].npages - (churn_first + w);
		if (len > left_in_region)
			len = left_in_region;
		for (uint64_t i = 0; i < len; i++)
			atomic_store(&churn_removed[w + i], 1);
		if (madvise(addr, len * opt_page_size, MADV_DONTNEED) != 0)
			die(EXIT_SETUP, "churn: madvise(MADV_DONTNEED, %p, %" PRIu64 ") failed: %s",
			    (void *)addr, len * opt_page_size, strerror(errno));
		atomic_fetch_add(&churn_removes, 1);
		struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(20000 + rng_below(&seed, 200000))};
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static void *churn_final_main(void *arg)
{
	struct churn_reader *r = arg;
	for (uint64_t w = 0; w < opt_churn_window; w++)
		churn_touch(r, w, true);
	return NULL;
}

/* A read that does not return is a vCPU frozen by its handler: exit 5. */
static void churn_watch(struct churn_reader *r)
{
	uint64_t t = now_ns(), last = atomic_load(&r->last_ns);
	if (last == UINT64_MAX || t <= last || t - last <= opt_churn_stuck_ms * 1000000ull)
		return;
	uint64_t w = atomic_load(&r->page);
	fprintf(stderr, "fc-sim: vCPU thread %d made no progress for %" PRIu64 " ms reading window page %" PRIu64
		" (guest page %" PRIu64 "): its fault is never resolved\n", r->index, (t - last) / 1000000, w, churn_first + w);
	fflush(stderr);
	_exit(EXIT_STUCK);
}

static int run_churn(uint64_t t_handshake)
{
	churn_first = opt_churn_at / opt_page_size;
	if (opt_churn_at % opt_page_size || churn_first + opt_churn_window > total_pages)
		die(EXIT_SETUP, "--churn-at %" PRIu64 " with --churn-window %" PRIu64 " must be page-aligned and inside guest memory (%" PRIu64 " pages)",
		    opt_churn_at, opt_churn_window, total_pages);
	if (opt_verify) {
		if (mem_fd < 0)
			die(EXIT_SETUP, "--churn-ms with --verify needs --mem");
		void *m = mmap(NULL, total_size, PROT_READ, MAP_SHARED, mem_fd, 0);
		if (m == MAP_FAILED)
			die(EXIT_SETUP, "mmap of the memory file failed: %s", strerror(errno));
		churn_file = m;
	}
	churn_removed = calloc(opt_churn_window, sizeof(*churn_removed));
	struct churn_reader *rd = calloc((size_t)opt_threads, sizeof(*rd));
	if (!churn_removed || !rd)
		die(EXIT_SETUP, "out of memory");
	if (pthread_barrier_init(&start_barrier, NULL, (unsigned)opt_threads + (unsigned)opt_churn_removers + 1) != 0)
		die(EXIT_SETUP, "pthread_barrier_init failed");
	uint64_t deadline = now_ns() + opt_churn_ms * 1000000ull;
	for (int i = 0; i < opt_threads; i++) {
		rd[i].index = i;
		rd[i].seed = opt_seed * 7919 + (uint64_t)i;
		atomic_store(&rd[i].last_ns, now_ns());
		int e = pthread_create(&rd[i].tid, NULL, churn_reader_main, &rd[i]);
		if (e)
			die(EXIT_SETUP, "pthread_create: %s", strerror(e));
	}
	struct churn_remover rm[64];
	for (int i = 0; i < opt_churn_removers; i++) {
		rm[i].seed = (opt_seed ^ 0x5eed) + (uint64_t)i * 104729;
		rm[i].deadline = deadline;
		int e = pthread_create(&rm[i].tid, NULL, churn_remover_main, &rm[i]);
		if (e)
			die(EXIT_SETUP, "pthread_create: %s", strerror(e));
	}
	pthread_barrier_wait(&start_barrier);
	uint64_t t_start = now_ns();
	for (int i = 0; i < opt_threads; i++)
		atomic_store(&rd[i].last_ns, t_start);
	for (;;) {
		sleep_ms(20);
		uint64_t t = now_ns();
		if (t >= deadline)
			atomic_store(&churn_stop, true);
		bool stopping = atomic_load(&churn_stop), all_done = stopping;
		for (int i = 0; i < opt_threads; i++) {
			if (atomic_load(&rd[i].last_ns) == UINT64_MAX)
				continue; /* joined */
			churn_watch(&rd[i]);
			if (stopping && pthread_tryjoin_np(rd[i].tid, NULL) == 0)
				atomic_store(&rd[i].last_ns, UINT64_MAX);
			else
				all_done = false;
		}
		if (all_done)
			break;
	}
	for (int i = 0; i < opt_churn_removers; i++)
		pthread_join(rm[i].tid, NULL);
	uint64_t t_end = now_ns();
	uint64_t reads = 0;
	for (int i = 0; i < opt_threads; i++)
		reads += rd[i].reads;
	/* Nothing races now: every page of the window is touched once more (a page
	 * the handler wrongly believes installed would freeze this pass) and is
	 * wholly the file's or, once removed, zeros. */
	struct churn_reader last = {.index = opt_threads};
	atomic_store(&last.last_ns, now_ns());
	int e = pthread_create(&last.tid, NULL, churn_final_main, &last);
	if (e)
		die(EXIT_SETUP, "pthread_create: %s", strerror(e));
	while (pthread_tryjoin_np(last.tid, NULL) != 0) {
		sleep_ms(20);
		churn_watch(&last);
	}
	reads += last.reads;
	uint64_t mm = atomic_load(&mismatches);
	printf("{\"touches\":%" PRIu64 ",\"removes\":%" PRIu64 ",\"elapsed_ns\":%" PRIu64 ",\"mismatches\":%" PRIu64
	       ",\"threads\":%d,\"pattern\":\"churn\",\"since_handshake_ns\":%" PRIu64 ",\"stalls\":[",
	       reads, (uint64_t)atomic_load(&churn_removes), t_end - t_start, mm, opt_threads, t_end - t_handshake);
	unsigned ns = atomic_load(&stall_count);
	for (unsigned i = 0; i < ns && i < MAX_STALLS; i++)
		printf("%s[%" PRIu64 ",%" PRIu64 "]", i ? "," : "", stalls[i][0], stalls[i][1]);
	printf("]}\n");
	fflush(stdout);
	return mm ? EXIT_MISMATCH : 0;
}

/* ----------------------------------------------------------------- main */

int main(int argc, char **argv)
{
	parse_options(argc, argv);
	setvbuf(stderr, NULL, _IOLBF, 0);
	if (opt_timeout_ms) {
		pthread_t t;
		if (pthread_create(&t, NULL, timeout_main, NULL) != 0)
			die(EXIT_SETUP, "pthread_create failed");
		pthread_detach(t);
	}
	setup_regions();
	setup_balloons();

	uint64_t npat;
	uint64_t *pattern = build_pattern(&npat);

	int uffd = create_uffd();
	int sock = connect_socket();
	if (opt_send_delay_ms)
		sleep_ms(opt_send_delay_ms);
	/* Firecracker resumes the guest right after the handshake: restore time counts from here. */
	uint64_t t_handshake = now_ns();
	if (!opt_no_send)
		send_handshake(sock, uffd);
	if (opt_print_ready)
		fprintf(stderr, "ready %d\n", (int)getpid());
	/* sock and uffd stay open until exit, like Firecracker's */
	if (opt_pause_ms)
		sleep_ms(opt_pause_ms);
	if (opt_churn_ms) {
		int rc = run_churn(t_handshake);
		if (opt_hold_ms)
			sleep_ms(opt_hold_ms);
		return rc;
	}

	uint8_t *scratch = NULL;
	if (opt_verify || nballoons) {
		scratch = aligned_alloc(4096, opt_page_size);
		if (!scratch)
			die(EXIT_SETUP, "out of memory");
	}

	if (nballoons && opt_bmode == BM_BEFORE)
		madvise_balloons();

	/* touching phase */
	int nt = opt_threads;
	struct worker *w = calloc((size_t)nt, sizeof(*w));
	uint64_t *lat = malloc((npat ? npat : 1) * sizeof(uint64_t));
	if (!w || !lat)
		die(EXIT_SETUP, "out of memory");
	bool balloon_thread = nballoons && opt_bmode == BM_CONCURRENT;
	if (pthread_barrier_init(&start_barrier, NULL, (unsigned)nt + 1 + (balloon_thread ? 1 : 0)) != 0)
		die(EXIT_SETUP, "pthread_barrier_init failed");
	uint64_t pos = 0;
	for (int i = 0; i < nt; i++) {
		uint64_t cnt = npat / (uint64_t)nt + ((uint64_t)i < npat % (uint64_t)nt ? 1 : 0);
		w[i].pages = pattern + pos;
		w[i].lat = lat + pos;
		w[i].n = cnt;
		pos += cnt;
		if (opt_verify) {
			w[i].buf = aligned_alloc(4096, opt_page_size);
			if (!w[i].buf)
				die(EXIT_SETUP, "out of memory");
		}
		int e = pthread_create(&w[i].tid, NULL, worker_main, &w[i]);
		if (e)
			die(EXIT_SETUP, "pthread_create: %s", strerror(e));
	}
	pthread_t btid;
	if (balloon_thread) {
		int e = pthread_create(&btid, NULL, balloon_thread_main, NULL);
		if (e)
			die(EXIT_SETUP, "pthread_create: %s", strerror(e));
	}
	pthread_barrier_wait(&start_barrier);
	uint64_t t_start = now_ns();
	for (int i = 0; i < nt; i++)
		pthread_join(w[i].tid, NULL);
	uint64_t t_end = now_ns();
	if (balloon_thread)
		pthread_join(btid, NULL);

	if (nballoons && opt_bmode == BM_AFTER)
		madvise_balloons();
	if (nballoons && (opt_bmode == BM_AFTER || opt_bmode == BM_CONCURRENT))
		reread_balloons(scratch);

	uint64_t elapsed = t_end - t_start;
	qsort(lat, npat, sizeof(uint64_t), cmp_u64);
	double fps = elapsed ? (double)npat * 1e9 / (double)elapsed : 0.0;
	uint64_t mm = atomic_load(&mismatches);
	printf("{\"touches\":%" PRIu64 ",\"elapsed_ns\":%" PRIu64 ",\"faults_per_sec\":%.1f,"
	       "\"p50_ns\":%" PRIu64 ",\"p90_ns\":%" PRIu64 ",\"p99_ns\":%" PRIu64 ",\"max_ns\":%" PRIu64 ","
	       "\"mismatches\":%" PRIu64 ",\"zero_checked\":%" PRIu64 ",\"threads\":%d,\"pattern\":\"%s\","
	       "\"since_handshake_ns\":%" PRIu64 "}\n",
	       npat, elapsed, fps, percentile(lat, npat, 0.50), percentile(lat, npat, 0.90),
	       percentile(lat, npat, 0.99), npat ? lat[npat - 1] : 0, mm,
	       (uint64_t)atomic_load(&zero_checked), nt, pattern_names[opt_pattern], t_end - t_handshake);
	fflush(stdout);
	if (opt_hold_ms)
		sleep_ms(opt_hold_ms);
	(void)sock;
	(void)uffd;
	return mm ? EXIT_MISMATCH : 0;
}
