/* json.c: the JSON record builder and the validator built on jansson. */
#include "json.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"

static void
reserve(struct jbuf *b, size_t more)
{
	b->p = xgrow(b->p, &b->cap, b->len + more + 1, 256, 1);
}

static void
put(struct jbuf *b, const char *s, size_t n)
{
	reserve(b, n);
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
putc_(struct jbuf *b, char c)
{
	reserve(b, 1);
	b->p[b->len++] = c;
	b->p[b->len] = '\0';
}

void
jb_reset(struct jbuf *b)
{
	b->len = 0;
	b->depth = 0;
	if (b->p)
		b->p[0] = '\0';
}

void
jb_free(struct jbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

void
jb_obj_begin(struct jbuf *b)
{
	putc_(b, '{');
	if (b->depth >= JB_DEPTH - 1)
		die(EX_SOFTWARE, "internal error: JSON nested deeper than %d", JB_DEPTH);
	b->first[++b->depth] = 1;
}

void
jb_obj_end(struct jbuf *b)
{
	putc_(b, '}');
	if (b->depth > 0)
		b->depth--;
}

void
jb_key(struct jbuf *b, const char *key)
{
	if (!b->first[b->depth])
		putc_(b, ',');
	b->first[b->depth] = 0;
	jb_str(b, key, strlen(key));
	putc_(b, ':');
}

size_t
utf8_seq(const unsigned char *s, size_t n)
{
	size_t len;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0) {
		len = 2;
		cp = s[0] & 0x1f;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3;
		cp = s[0] & 0x0f;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

void
jb_str(struct jbuf *b, const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	static const char hex[] = "0123456789abcdef";

	reserve(b, n + 2);
	putc_(b, '"');
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		size_t seq;
		if (c == '"' || c == '\\') {
			char esc[2] = {'\\', (char)c};
			put(b, esc, 2);
			i++;
		} else if (c == '\n') {
			put(b, "\\n", 2);
			i++;
		} else if (c == '\t') {
			put(b, "\\t", 2);
			i++;
		} else if (c == '\r') {
			put(b, "\\r", 2);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
			put(b, esc, 6);
			i++;
		} else if ((seq = utf8_seq(s + i, n - i)) == 0) {
			put(b, "\\ufffd", 6);
			i++;
		} else {
			put(b, (const char *)s + i, seq);
			i += seq;
		}
	}
	putc_(b, '"');
}

void
jb_int(struct jbuf *b, int64_t v)
{
	char num[24];
	int n = snprintf(num, sizeof num, "%" PRId64, v);

	put(b, num, (size_t)n);
}

void
jb_millis(struct jbuf *b, int64_t ms)
{
	char num[32];
	uint64_t mag = ms < 0 ? -(uint64_t)ms : (uint64_t)ms; /* INT64_MIN too */
	int n = snprintf(num, sizeof num, "%s%" PRIu64 ".%03" PRIu64,
	    ms < 0 ? "-" : "", mag / 1000, mag % 1000);

	put(b, num, (size_t)n);
}

void
jb_raw(struct jbuf *b, const char *s, size_t n)
{
	put(b, s, n);
}

void
jb_null(struct jbuf *b)
{
	put(b, "null", 4);
}

void
jb_bool(struct jbuf *b, int v)
{
	if (v)
		put(b, "true", 4);
	else
		put(b, "false", 5);
}

void
jb_kstr(struct jbuf *b, const char *key, const char *s)
{
	jb_key(b, key);
	jb_str(b, s, strlen(s));
}

void
jb_kint(struct jbuf *b, const char *key, int64_t v)
{
	jb_key(b, key);
	jb_int(b, v);
}

int
jb_line(struct jbuf *b)
{
	putc_(b, '\n');
	return fwrite(b->p, 1, b->len, stdout) == b->len ? 0 : -1;
}

void
jb_json(struct jbuf *b, const char *s, size_t n)
{
	json_t *v;
	char *compact;

	if (!memchr(s, '\n', n) && !memchr(s, '\r', n)) {
		jb_raw(b, s, n);
		return;
	}
	v = json_loadb(s, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	compact = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	if (compact)
		jb_raw(b, compact, strlen(compact));
	else
		jb_str(b, s, n);
	free(compact);
	json_decref(v);
}

void
jb_json_or_str(struct jbuf *b, const char *s, size_t n)
{
	char err[64];

	if (n > 0 && json_check(s, n, err, sizeof err) == 0)
		jb_json(b, s, n);
	else
		jb_str(b, s, n);
}

int
json_check(const char *s, size_t n, char *err, size_t errlen)
{
	json_error_t e;
	json_t *v = json_loadb(s, n, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL |
	    JSON_ALLOW_NUL, &e);

	if (v) {
		json_decref(v);
		return 0;
	}
	snprintf(err, errlen, "invalid JSON at column %d: %s", e.column, e.text);
	return -1;
}
