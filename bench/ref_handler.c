/*
 * ref-handler: a minimal C UFFD page-fault handler for Firecracker snapshot
 * restores, doing what Firecracker's own example handler does (the
 * benchmark's floor). One VM, one connection.
 *
 *   ref-handler <socket> <memory-file>
 *
 * Binds/listens on <socket>, accepts one connection, receives the JSON region
 * mappings plus the uffd (SCM_RIGHTS), mmaps <memory-file> read-only, and
 * serves page faults with UFFDIO_COPY of one page at a time. UFFD_EVENT_REMOVE
 * is accepted and ignored (no zeroing of removed ranges). Exits 0 when the
 * peer closes the socket.
 *
 * Build: gcc -O2 -Wall -Wextra -o build/ref-handler bench/ref_handler.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_REGIONS 256
#define MSG_BUF (64 * 1024)
#define READ_BATCH 16

struct region {
	uint64_t base, size, offset, page_size;
};

static struct region regions[MAX_REGIONS];
static int nregions;
static uint8_t *file_base;
static uint64_t file_size;
static int uffd = -1;
static uint64_t n_faults, n_copies, n_eexist, n_eagain, n_removes;

/* queue of read-but-unprocessed uffd messages */
static struct uffd_msg *queue;
static size_t q_head, q_tail, q_cap;

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("ref-handler: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

/* ------------------------------------------------------------ JSON scan */

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* p at '"'; returns the position after the closing quote, or NULL */
static const char *skip_string(const char *p, const char *end)
{
	p++;
	while (p < end && *p != '"') {
		if (*p == '\\')
			p++;
		p++;
	}
	return p < end ? p + 1 : NULL;
}

/* skips any JSON value (string, number, literal, nested object/array) */
static const char *skip_value(const char *p, const char *end)
{
	if (p >= end)
		return NULL;
	if (*p == '"')
		return skip_string(p, end);
	if (*p == '{' || *p == '[') {
		int depth = 0;
		while (p < end) {
			if (*p == '"') {
				p = skip_string(p, end);
				if (!p)
					return NULL;
				continue;
			}
			if (*p == '{' || *p == '[')
				depth++;
			else if (*p == '}' || *p == ']') {
				if (--depth == 0)
					return p + 1;
			}
			p++;
		}
		return NULL;
	}
	while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n' && *p != '\t' && *p != '\r')
		p++;
	return p;
}

static const char *parse_u64(const char *p, const char *end, uint64_t *out)
{
	if (p >= end || *p < '0' || *p > '9')
		return NULL;
	char tmp[32];
	size_t n = 0;
	while (p + n < end && p[n] >= '0' && p[n] <= '9' && n < sizeof(tmp) - 1) {
		tmp[n] = p[n];
		n++;
	}
	tmp[n] = 0;
	errno = 0;
	char *e;
	unsigned long long v = strtoull(tmp, &e, 10);
	if (errno || *e)
		return NULL;
	*out = v;
	return p + n;
}

static void parse_regions(const char *buf, size_t len)
{
	const char *p = buf, *end = buf + len;
	p = skip_ws(p, end);
	if (p >= end || *p != '[')
		die("handshake is not a JSON array");
	p = skip_ws(p + 1, end);
	if (p < end && *p == ']')
		die("handshake has no regions");
	for (;;) {
		if (p >= end || *p != '{')
			die("expected a region object at byte %td", p - buf);
		if (nregions >= MAX_REGIONS)
			die("too many regions");
		struct region r = {0};
		bool has_base = false, has_size = false, has_off = false;
		uint64_t ps = 0, pskib = 0;
		p = skip_ws(p + 1, end);
		while (p < end && *p != '}') {
			if (*p != '"')
				die("expected a key at byte %td", p - buf);
			const char *ks = p + 1;
			p = skip_string(p, end);
			if (!p)
				die("unterminated string");
			size_t klen = (size_t)(p - 1 - ks);
			p = skip_ws(p, end);
			if (p >= end || *p != ':')
				die("expected ':'");
			p = skip_ws(p + 1, end);
			uint64_t *dst = NULL;
#define KEY(s) (klen == sizeof(s) - 1 && !memcmp(ks, s, klen))
			if (KEY("base_host_virt_addr")) { dst = &r.base; has_base = true; }
			else if (KEY("size")) { dst = &r.size; has_size = true; }
			else if (KEY("offset")) { dst = &r.offset; has_off = true; }
			else if (KEY("page_size")) dst = &ps;
			else if (KEY("page_size_kib")) dst = &pskib;
#undef KEY
			if (dst) {
				p = parse_u64(p, end, dst);
				if (!p)
					die("bad number for key '%.*s'", (int)klen, ks);
			} else {
				p = skip_value(p, end);
				if (!p)
					die("bad value for key '%.*s'", (int)klen, ks);
			}
			p = skip_ws(p, end);
			if (p < end && *p == ',')
				p = skip_ws(p + 1, end);
		}
		if (p >= end)
			die("unterminated region object");
		p = skip_ws(p + 1, end);
		if (!has_base || !has_size || !has_off)
			die("region %d lacks base_host_virt_addr/size/offset", nregions);
		if (ps && pskib && ps != pskib)
			die("region %d: page_size %" PRIu64 " != page_size_kib %" PRIu64, nregions, ps, pskib);
		r.page_size = ps ? ps : pskib ? pskib : 4096;
		if (r.page_size & (r.page_size - 1))
			die("region %d: page size %" PRIu64 " is not a power of two", nregions, r.page_size);
		if (r.size == 0 || r.base % r.page_size || r.size % r.page_size)
			die("region %d: bad size/alignment", nregions);
		if (r.offset + r.size < r.offset || r.offset + r.size > file_size)
			die("region %d: offset %" PRIu64 " + size %" PRIu64 " beyond the memory file (%" PRIu64 ")",
			    nregions, r.offset, r.size, file_size);
		regions[nregions++] = r;
		if (p < end && *p == ',') {
			p = skip_ws(p + 1, end);
			continue;
		}
		if (p < end && *p == ']')
			break;
		die("expected ',' or ']' after region %d", nregions - 1);
	}
}

/* true once buf[0..len) holds a complete top-level JSON value */
static bool json_complete(const char *buf, size_t len)
{
	const char *p = skip_ws(buf, buf + len);
	if (p >= buf + len)
		return false;
	return skip_value(p, buf + len) != NULL;
}

/* ------------------------------------------------------------ uffd */

static void read_events(void)
{
	for (;;) {
		if (q_cap - q_tail < READ_BATCH) {
			if (q_head > 0) {
				memmove(queue, queue + q_head, (q_tail - q_head) * sizeof(*queue));
				q_tail -= q_head;
				q_head = 0;
			}
			if (q_cap - q_tail < READ_BATCH) {
				q_cap = q_cap ? q_cap * 2 : 256;
				queue = realloc(queue, q_cap * sizeof(*queue));
				if (!queue)
					die("out of memory");
			}
		}
		ssize_t n = read(uffd, queue + q_tail, READ_BATCH * sizeof(struct uffd_msg));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return;
			die("read(uffd): %s", strerror(errno));
		}
		if (n == 0 || n % (ssize_t)sizeof(struct uffd_msg))
			die("read(uffd) returned %zd bytes", n);
		q_tail += (size_t)n / sizeof(struct uffd_msg);
		if ((size_t)n < READ_BATCH * sizeof(struct uffd_msg))
			return;
	}
}

static struct region *find_region(uint64_t addr)
{
	for (int i = 0; i < nregions; i++)
		if (addr >= regions[i].base && addr - regions[i].base < regions[i].size)
			return &regions[i];
	return NULL;
}

/* returns false if the peer is gone (ESRCH) */
static bool serve_fault(uint64_t addr)
{
	struct region *r = find_region(addr);
	if (!r) {
		fprintf(stderr, "ref-handler: fault at 0x%" PRIx64 " outside all regions, ignored\n", addr);
		return true;
	}
	uint64_t ps = r->page_size;
	uint64_t page = addr & ~(ps - 1);
	uint64_t done = 0;
	n_faults++;
	while (done < ps) {
		struct uffdio_copy c = {
		    .dst = page + done,
		    .src = (uint64_t)(uintptr_t)(file_base + r->offset + (page - r->base) + done),
		    .len = ps - done,
		    .mode = 0};
		if (ioctl(uffd, UFFDIO_COPY, &c) == 0) {
			n_copies++;
			return true;
		}
		int e = errno;
		if (c.copy > 0) { /* partial copy: go on with the rest */
			done += (uint64_t)c.copy;
			continue;
		}
		if (e == EEXIST) {
			n_eexist++;
			struct uffdio_range w = {.start = page, .len = ps};
			if (ioctl(uffd, UFFDIO_WAKE, &w) != 0 && errno != ESRCH)
				die("UFFDIO_WAKE 0x%" PRIx64 ": %s", page, strerror(errno));
			return true;
		}
		if (e == EAGAIN) {
			/* a non-cooperative event is pending: read the queue, retry */
			n_eagain++;
			size_t before = q_tail;
			read_events();
			if (q_tail == before)
				sched_yield();
			continue;
		}
		if (e == ESRCH)
			return false;
		die("UFFDIO_COPY 0x%" PRIx64 " (%" PRIu64 " bytes): %s", page, ps - done, strerror(e));
	}
	return true;
}

static void process_queue(void)
{
	while (q_head < q_tail) {
		struct uffd_msg m = queue[q_head++];
		switch (m.event) {
		case UFFD_EVENT_PAGEFAULT:
			(void)serve_fault(m.arg.pagefault.address);
			break;
		case UFFD_EVENT_REMOVE:
			n_removes++;
			break;
		default:
			fprintf(stderr, "ref-handler: ignoring uffd event 0x%x\n", m.event);
			break;
		}
	}
	q_head = q_tail = 0;
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: ref-handler <socket> <memory-file>\n");
		return 1;
	}
	const char *sock_path = argv[1], *mem_path = argv[2];

	int mfd = open(mem_path, O_RDONLY | O_CLOEXEC);
	if (mfd < 0)
		die("open '%s': %s", mem_path, strerror(errno));
	struct stat st;
	if (fstat(mfd, &st) != 0)
		die("fstat '%s': %s", mem_path, strerror(errno));
	file_size = (uint64_t)st.st_size;
	if (file_size == 0)
		die("memory file '%s' is empty", mem_path);
	file_base = mmap(NULL, file_size, PROT_READ, MAP_PRIVATE, mfd, 0);
	if (file_base == MAP_FAILED)
		die("mmap '%s': %s", mem_path, strerror(errno));
	close(mfd);

	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(sock_path) >= sizeof(sa.sun_path))
		die("socket path too long");
	strcpy(sa.sun_path, sock_path);
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		die("socket: %s", strerror(errno));
	if (unlink(sock_path) != 0 && errno != ENOENT)
		die("unlink '%s': %s", sock_path, strerror(errno));
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		die("bind '%s': %s", sock_path, strerror(errno));
	if (listen(lfd, 1) != 0)
		die("listen: %s", strerror(errno));
	int cfd;
	do
		cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	while (cfd < 0 && errno == EINTR);
	if (cfd < 0)
		die("accept: %s", strerror(errno));
	close(lfd);

	/* handshake: one sendmsg on the peer's side; read until the JSON is whole */
	char *buf = malloc(MSG_BUF + 1);
	if (!buf)
		die("out of memory");
	size_t len = 0;
	while (!json_complete(buf, len)) {
		if (len == MSG_BUF)
			die("handshake larger than %d bytes", MSG_BUF);
		union {
			struct cmsghdr h;
			char b[CMSG_SPACE(sizeof(int) * 8)];
		} ctl;
		struct iovec iov = {.iov_base = buf + len, .iov_len = MSG_BUF - len};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
				    .msg_controllen = sizeof(ctl.b)};
		ssize_t n = recvmsg(cfd, &mh, MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("recvmsg: %s", strerror(errno));
		if (n == 0)
			die("peer closed the socket before the handshake was complete");
		if (mh.msg_flags & MSG_CTRUNC)
			die("control data truncated");
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < nfd; i++) {
				int fd;
				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				if (uffd < 0)
					uffd = fd;
				else
					close(fd);
			}
		}
		len += (size_t)n;
	}
	buf[len] = 0;
	if (uffd < 0)
		die("no uffd received with the handshake");
	/* Firecracker's uffd is non-blocking already; make sure */
	int fl = fcntl(uffd, F_GETFL);
	if (fl < 0 || fcntl(uffd, F_SETFL, fl | O_NONBLOCK) != 0)
		die("fcntl(uffd): %s", strerror(errno));
	parse_regions(buf, len);
	free(buf);

	struct pollfd pfd[2] = {{.fd = uffd, .events = POLLIN}, {.fd = cfd, .events = POLLIN}};
	for (;;) {
		int r = poll(pfd, 2, -1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			die("poll: %s", strerror(errno));
		}
		if (pfd[0].revents & POLLIN) {
			read_events();
			process_queue();
		}
		if (pfd[0].revents & (POLLERR | POLLNVAL))
			die("uffd poll error (revents 0x%x)", pfd[0].revents);
		if (pfd[1].revents) {
			char tmp[256];
			ssize_t n = recv(cfd, tmp, sizeof(tmp), MSG_DONTWAIT);
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) ||
			    (n < 0 && (pfd[1].revents & (POLLHUP | POLLERR)))) {
				fprintf(stderr,
					"ref-handler: peer gone; faults %" PRIu64 " copies %" PRIu64 " eexist %" PRIu64
					" eagain %" PRIu64 " removes %" PRIu64 "\n",
					n_faults, n_copies, n_eexist, n_eagain, n_removes);
				return 0;
			}
			/* Firecracker never writes after the handshake: ignore data */
		}
	}
}
