/* fuzz.c: one libFuzzer target for the parsers of untrusted input: the
 * first byte picks the parser (URL, duration, time, id, JSON check and
 * record builder, line reader), the rest is its input. */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "duration.h"
#include "id.h"
#include "json.h"
#include "jsonl.h"
#include "url.h"

static char *
cstring(const uint8_t *data, size_t n)
{
	char *s = malloc(n + 1);

	memcpy(s, data, n);
	s[n] = '\0';
	return s;
}

static const char *
scheme_of(const struct redis_url *u)
{
	if (u->kind == URL_SENTINEL)
		return "redis+sentinel://";
	if (u->kind == URL_CLUSTER)
		return "redis+cluster://";
	return u->is_unix ? "unix://" : "redis://";
}

static void
fuzz_url(const char *s)
{
	struct redis_url u;
	char err[256], shown[2048], userinfo[URL_SECRET_MAX + 32];

	if (url_parse(s, &u, err, sizeof err) == 0 && u.password[0]) {
		/* the password is shown as *** and nowhere else in the userinfo */
		url_display(&u, shown, sizeof shown);
		snprintf(userinfo, sizeof userinfo, "%s%s:***@",
		    scheme_of(&u), u.user);
		if (strncmp(shown, userinfo, strlen(userinfo)) != 0)
			abort();
	}
}

static void
fuzz_times(const char *s)
{
	int64_t v;

	if (duration_parse(s, &v) == 0 && (v < 0 || v > DURATION_MAX_MS))
		abort();
	if (time_parse(s, &v) == 0 && v < 0)
		abort();
}

static void
fuzz_json(const uint8_t *data, size_t n)
{
	char err[256];
	struct jbuf b = {0};

	id_valid((const char *)data, n);
	json_check((const char *)data, n, err, sizeof err);
	jb_obj_begin(&b);
	jb_key(&b, "s");
	jb_str(&b, (const char *)data, n);
	jb_obj_end(&b);
	/* whatever the bytes, the builder writes valid JSON */
	if (json_check(b.p, b.len, err, sizeof err) != 0)
		abort();
	jb_free(&b);
}

static int
count_line(char *line, size_t len, unsigned long lineno, void *ctx)
{
	(void)line;
	(void)lineno;
	if (len > 64)
		abort(); /* longer than the limit given below */
	++*(unsigned long *)ctx;
	return 0;
}

static void
fuzz_lines(const uint8_t *data, size_t n)
{
	int fd = memfd_create("fuzz", 0);
	unsigned long lines = 0, rejected = 0;
	int saved = dup(STDERR_FILENO);

	if (fd < 0 || write(fd, data, n) != (ssize_t)n || lseek(fd, 0, SEEK_SET) != 0)
		abort();
	freopen("/dev/null", "w", stderr); /* over-long line warnings */
	jsonl_each(fd, 64, count_line, &lines, &rejected);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(fd);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
	char *s;

	if (n == 0)
		return 0;
	s = cstring(data + 1, n - 1);
	switch (data[0] % 4) {
	case 0:
		fuzz_url(s);
		break;
	case 1:
		fuzz_times(s);
		break;
	case 2:
		fuzz_json(data + 1, n - 1);
		break;
	default:
		fuzz_lines(data + 1, n - 1);
		break;
	}
	free(s);
	return 0;
}
