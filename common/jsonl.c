/* jsonl.c: a read(2)-based line reader that holds at most one line (bounded)
 * in memory, whatever the size of its input. */
#include "jsonl.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"

struct reader {
	char *buf;
	size_t cap, start, end; /* unconsumed bytes are buf[start..end) */
	size_t max;
	unsigned long lineno;
	int skipping;           /* inside a line that was too long */
};

static int
blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t')
			return 0;
	return 1;
}

static void
too_long(struct reader *r, unsigned long *rejected)
{
	warnmsg("line %lu: longer than the limit of %zu bytes (--max-line), skipped",
	    r->lineno, r->max);
	(*rejected)++;
}

/* One complete line buf[s..s+n) (no newline): pass it on or drop it. */
static int
deliver(struct reader *r, size_t s, size_t n, jsonl_fn fn, void *ctx,
    unsigned long *rejected)
{
	char *line = r->buf + s;

	r->lineno++;
	if (r->skipping) {
		r->skipping = 0;
		return 0;
	}
	if (n > 0 && line[n - 1] == '\r')
		n--;
	if (n > r->max) {
		too_long(r, rejected);
		return 0;
	}
	if (blank(line, n))
		return 0;
	line[n] = '\0';
	return fn(line, n, r->lineno, ctx);
}

/* Make room to read: drop consumed bytes, grow up to max + 2 bytes. */
static void
make_room(struct reader *r, unsigned long *rejected)
{
	if (r->start > 0) {
		memmove(r->buf, r->buf + r->start, r->end - r->start);
		r->end -= r->start;
		r->start = 0;
	}
	if (r->end < r->cap)
		return;
	if (r->cap >= r->max + 2) {
		/* a line (plus "\r" and room for the NUL) that cannot fit */
		if (!r->skipping) {
			r->lineno++;
			too_long(r, rejected);
			r->lineno--;
			r->skipping = 1;
		}
		r->end = 0;
		return;
	}
	r->cap = r->cap * 2 < r->max + 2 ? r->cap * 2 : r->max + 2;
	r->buf = xrealloc(r->buf, r->cap);
}

static int
scan_lines(struct reader *r, jsonl_fn fn, void *ctx, unsigned long *rejected)
{
	char *nl;

	while ((nl = memchr(r->buf + r->start, '\n', r->end - r->start))) {
		size_t s = r->start, n = (size_t)(nl - (r->buf + s));
		int rc;
		r->start = s + n + 1;
		if ((rc = deliver(r, s, n, fn, ctx, rejected)) != 0)
			return rc;
	}
	return 0;
}

/* 1 when a read of fd would block (nothing buffered in the pipe yet). */
static int
would_block(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	return poll(&p, 1, 0) == 0;
}

int
jsonl_each(int fd, size_t max, jsonl_fn fn, void *ctx, unsigned long *rejected)
{
	return jsonl_each_idle(fd, max, fn, NULL, ctx, rejected);
}

int
jsonl_each_idle(int fd, size_t max, jsonl_fn fn, jsonl_idle_fn idle, void *ctx,
    unsigned long *rejected)
{
	struct reader r = {.max = max};
	int rc = 0;

	r.cap = max + 2 < 65536 ? max + 2 : 65536;
	r.buf = xmalloc(r.cap);
	for (;;) {
		ssize_t got;
		make_room(&r, rejected);
		if (fd >= 0 && would_block(fd)) {
			if (idle)
				idle(ctx);
			/* a tool with stdout_watch ends in there when the reader
			 * of its output goes away: all it read is done */
			(void)wait_readable(fd, -1);
		}
		got = read(fd, r.buf + r.end, r.cap - r.end);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			warnmsg("cannot read standard input after line %lu:", r.lineno);
			rc = -1;
			break;
		}
		if (got == 0) {
			/* a last line without its newline */
			if (r.end > r.start) {
				/* deliver needs one spare byte for the NUL: make_room kept it */
				rc = deliver(&r, r.start, r.end - r.start, fn, ctx, rejected);
			}
			break;
		}
		r.end += (size_t)got;
		if ((rc = scan_lines(&r, fn, ctx, rejected)) != 0)
			break;
	}
	free(r.buf);
	return rc;
}

char *
jsonl_trim(char *s, size_t *n)
{
	while (*n > 0 && (s[*n - 1] == ' ' || s[*n - 1] == '\t'))
		(*n)--;
	s[*n] = '\0';
	while (*n > 0 && (*s == ' ' || *s == '\t')) {
		s++;
		(*n)--;
	}
	return s;
}

int
jsonl_parse_max(const char *s, size_t *max)
{
	char *end;
	unsigned long long v;
	size_t mult = 1;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	if (*end == 'K' || *end == 'k')
		mult = 1024;
	else if (*end == 'M' || *end == 'm')
		mult = 1024 * 1024;
	else if (*end == 'G' || *end == 'g')
		mult = 1024 * 1024 * 1024;
	else if (*end != '\0')
		return -1;
	if (*end && end[1] != '\0')
		return -1;
	if (v == 0 || v > JSONL_MAX_LIMIT / mult)
		return -1;
	*max = (size_t)v * mult;
	return 0;
}
