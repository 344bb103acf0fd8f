/* unit.c: TAP unit tests of common/: URL parser, ids and names, UUIDv7,
 * durations and times, the line reader, JSON builder and validator, keys,
 * the scripts' keys and counts, the script call builder, job records. */
#include <jansson.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "duration.h"
#include "flow.h"
#include "id.h"
#include "job.h"
#include "json.h"
#include "jsonl.h"
#include "keys.h"
#include "script.h"
#include "log.h"
#include "mem.h"
#include "redis.h"
#include "cluster.h"
#include "url.h"

/* ---- the harness: TAP lines, plan at the end ---- */

static int tests_run, tests_failed;

static int
vcheck(int cond, const char *fmt, va_list ap)
{
	tests_run++;
	if (!cond)
		tests_failed++;
	printf("%sok %d - ", cond ? "" : "not ", tests_run);
	vprintf(fmt, ap);
	putchar('\n');
	return cond;
}

__attribute__((format(printf, 2, 3))) static int
check(int cond, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vcheck(cond, fmt, ap);
	va_end(ap);
	return r;
}

/* A diagnostic line: label and s[0..n) with unprintable bytes escaped. */
static void
diag_mem(const char *label, const char *s, size_t n)
{
	printf("#   %s: ", label);
	if (!s) {
		printf("(null)\n");
		return;
	}
	putchar('\'');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c >= 0x7f || c == '\\')
			printf("\\x%02x", c);
		else
			putchar(c);
	}
	printf("'\n");
}

__attribute__((format(printf, 5, 6))) static int
check_mem(const char *got, size_t gotlen, const char *want, size_t wantlen,
    const char *fmt, ...)
{
	va_list ap;
	int ok = got && gotlen == wantlen && memcmp(got, want, wantlen) == 0;

	va_start(ap, fmt);
	vcheck(ok, fmt, ap);
	va_end(ap);
	if (!ok) {
		diag_mem("got", got, got ? gotlen : 0);
		diag_mem("want", want, wantlen);
	}
	return ok;
}

__attribute__((format(printf, 3, 4))) static int
check_str(const char *got, const char *want, const char *fmt, ...)
{
	va_list ap;
	int ok = got && strcmp(got, want) == 0;

	va_start(ap, fmt);
	vcheck(ok, fmt, ap);
	va_end(ap);
	if (!ok) {
		diag_mem("got", got, got ? strlen(got) : 0);
		diag_mem("want", want, strlen(want));
	}
	return ok;
}

/* A string of n copies of c (caller frees). */
static char *
repeat(char c, size_t n)
{
	char *s = malloc(n + 1);

	if (!s) {
		perror("malloc");
		exit(2);
	}
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* ---- url.h ---- */

static int
url_ok(const char *text, struct redis_url *u)
{
	char err[256] = "";
	int rc = url_parse(text, u, err, sizeof err);

	if (!check(rc == 0, "url_parse accepts %s", text))
		printf("#   error: %s\n", err);
	return rc == 0;
}

static void
test_url_host_only_gets_defaults(void)
{
	struct redis_url u;

	if (!url_ok("redis://cache.example", &u))
		return;
	check(!u.is_unix && strcmp(u.host, "cache.example") == 0 &&
	    u.port == 6379 && u.db == 0 && !u.user[0] && !u.password[0],
	    "redis://host: that host, port 6379, db 0, no user or password");
}

static void
test_url_host_port(void)
{
	struct redis_url u;

	if (!url_ok("redis://cache.example:6380", &u))
		return;
	check(strcmp(u.host, "cache.example") == 0 && u.port == 6380 && u.db == 0,
	    "redis://host:port: host and port 6380, db 0");
}

static void
test_url_host_port_db(void)
{
	struct redis_url u;

	if (!url_ok("redis://10.0.0.7:6380/7", &u))
		return;
	check(strcmp(u.host, "10.0.0.7") == 0 && u.port == 6380 && u.db == 7,
	    "redis://host:port/db: host, port 6380, db 7");
}

static void
test_url_colon_password(void)
{
	struct redis_url u;

	if (!url_ok("redis://:s3cret@cache", &u))
		return;
	check_str(u.password, "s3cret", "redis://:pw@host: the password");
	check_str(u.user, "", "redis://:pw@host: no user (the default one)");
	check_str(u.host, "cache", "redis://:pw@host: the host after the @");
}

static void
test_url_user_password_port_db(void)
{
	struct redis_url u;

	if (!url_ok("redis://alice:s3cret@cache:6380/3", &u))
		return;
	check(strcmp(u.user, "alice") == 0 && strcmp(u.password, "s3cret") == 0 &&
	    strcmp(u.host, "cache") == 0 && u.port == 6380 && u.db == 3,
	    "redis://user:pw@host:port/3: user, password, host, port and db");
}

static void
test_url_bare_userinfo_is_password(void)
{
	struct redis_url u;

	if (!url_ok("redis://s3cret@cache", &u))
		return;
	check_str(u.password, "s3cret", "redis://pw@host: the lone userinfo is the password");
	check_str(u.user, "", "redis://pw@host: no user");
}

static void
test_url_percent_escapes(void)
{
	struct redis_url u;

	if (url_ok("redis://:p%40ss%3Aw%25rd@cache", &u))
		check_str(u.password, "p@ss:w%rd",
		    "url_parse decodes %%40, %%3A and %%25 in the password");
	if (url_ok("redis://al%40ice:p%3a@cache", &u)) {
		check_str(u.user, "al@ice", "url_parse decodes %%40 in the user");
		check_str(u.password, "p:", "url_parse decodes lowercase %%3a");
	}
	if (url_ok("redis://p%40ss@cache", &u))
		check_str(u.password, "p@ss", "url_parse decodes escapes of a bare password");
}

static void
test_url_ipv6(void)
{
	struct redis_url u;

	if (url_ok("redis://[::1]:6380/2", &u))
		check(strcmp(u.host, "::1") == 0 && u.port == 6380 && u.db == 2,
		    "redis://[::1]:6380/2: host ::1 without brackets, port 6380, db 2");
	if (url_ok("redis://:pw@[fe80::1]", &u))
		check(strcmp(u.host, "fe80::1") == 0 && u.port == 6379 &&
		    strcmp(u.password, "pw") == 0,
		    "redis://:pw@[fe80::1]: IPv6 host after a password, default port");
}

static void
test_url_unix(void)
{
	struct redis_url u;

	if (url_ok("unix:///run/redis/r.sock", &u))
		check(u.is_unix && strcmp(u.path, "/run/redis/r.sock") == 0 &&
		    u.db == 0 && !u.password[0],
		    "unix:///path: a unix socket at that path, db 0");
	if (url_ok("unix:///run/redis/r.sock?db=5", &u))
		check(u.is_unix && strcmp(u.path, "/run/redis/r.sock") == 0 && u.db == 5,
		    "unix:///path?db=5: the path without the query, db 5");
	if (url_ok("unix://:s3cret@/run/redis/r.sock", &u))
		check(u.is_unix && strcmp(u.path, "/run/redis/r.sock") == 0 &&
		    strcmp(u.password, "s3cret") == 0 && !u.user[0],
		    "unix://:pw@/path: the password and the path");
}

static void
test_url_unix_path_limit(void)
{
	char text[256];
	char *name = repeat('s', 106);
	struct redis_url u;
	char err[256];

	snprintf(text, sizeof text, "unix:///%s", name);  /* path of 107 bytes */
	if (url_ok(text, &u))
		check(strlen(u.path) == 107, "unix path of 107 bytes is kept whole");
	snprintf(text, sizeof text, "unix:///%ss", name);  /* 108 bytes */
	check(url_parse(text, &u, err, sizeof err) == -1 && strstr(err, "too long"),
	    "unix path of 108 bytes is rejected as too long");
	free(name);
}

struct bad_url {
	const char *text, *what, *reason;
};

static const struct bad_url bad_urls[] = {
	{"", "empty", "must start with"},
	{"cache:6379", "no scheme", "must start with"},
	{"http://cache", "http://", "must start with"},
	{"rediss://cache", "rediss:// (TLS)", "TLS"},
	{"redis://", "no host", "host"},
	{"redis://cache:0", "port 0", "port"},
	{"redis://cache:65536", "port 65536", "port"},
	{"redis://cache:abc", "port abc", "port"},
	{"redis://cache:", "empty port", "port"},
	{"redis://cache:-1", "port -1", "port"},
	{"redis://cache/65536", "db 65536", "database"},
	{"redis://cache/x", "db x", "database"},
	{"redis://cache:6379/1/2", "db 1/2", "database"},
	{"redis://[::1:6379", "unclosed [", "unclosed"},
	{"redis://[::1]x", "junk after ]", "IPv6"},
	{"unix://r.sock", "relative unix path", "absolute"},
	{"unix://run/r.sock", "unix path without leading /", "absolute"},
	{"unix:///r.sock?db=x", "unix db x", "database"},
	{"unix:///r.sock?timeout=1", "unknown query", "db=N"},
	{"redis://ca che", "a space", "space or control"},
	{"redis://cache\t", "a tab", "space or control"},
	{"redis://ca\x01" "che", "control char 0x01", "space or control"},
	{"redis://cache\x7f", "DEL", "space or control"},
	{"redis://:pw%4@cache", "truncated %4 in password", "password"},
	{"redis://:pw%@cache", "a lone % in password", "password"},
	{"redis://:pw%zz@cache", "non-hex escape", "password"},
	{"redis://:pw%00@cache", "escaped NUL", "password"},
	{"redis://us%4:pw@cache", "truncated escape in user", "user"},
	{"redis://ca_che!:6379", "bad host character", "host"},
	{"redis+sentinel://s1", "sentinels without a name", "primary's name"},
	{"redis+sentinel://s1/", "an empty name", "primary's name"},
	{"redis+sentinel://s1,/m", "a trailing comma", "missing host"},
	{"redis+sentinel://s1,,s2/m", "an empty sentinel", "missing host"},
	{"redis+sentinel://a,b,c,d,e,f,g,h,i/m", "9 sentinels", "more than 8"},
	{"redis+sentinel://s1/m!x", "a bad name", "invalid character"},
	{"redis+sentinel://s1:0/m", "sentinel port 0", "port"},
	{"redis+sentinel://s1/m/x", "sentinel db x", "database"},
	{"redis+cluster://", "a cluster without nodes", "missing host"},
	{"redis+cluster://n1/1", "a cluster db", "no database but 0"},
	{"redis+cluster://n1,/", "a trailing comma", "missing host"},
	{"redis+cluster://a,b,c,d,e,f,g,h,i", "9 nodes", "more than 8 cluster nodes"},
};

static void
test_url_sentinel(void)
{
	struct redis_url u;

	if (!url_ok("redis+sentinel://alice:s3cret@s1:26380,[::1],s3.example/my-primary_1/2", &u))
		return;
	check(u.kind == URL_SENTINEL && u.nnodes == 3 && !u.is_unix, "redis+sentinel://: 3 sentinels, TCP");
	check(strcmp(u.nodes[0].host, "s1") == 0 && u.nodes[0].port == 26380,
	    "redis+sentinel://: the first sentinel with its port");
	check(strcmp(u.nodes[1].host, "::1") == 0 && u.nodes[1].port == 26379,
	    "redis+sentinel://: an IPv6 sentinel, port 26379 by default");
	check(strcmp(u.nodes[2].host, "s3.example") == 0 &&
	    u.nodes[2].port == 26379, "redis+sentinel://: the third sentinel");
	check_str(u.master, "my-primary_1", "redis+sentinel://: the primary's name");
	check(u.db == 2 && strcmp(u.user, "alice") == 0 &&
	    strcmp(u.password, "s3cret") == 0,
	    "redis+sentinel://: the primary's db, user and password");
	if (url_ok("redis+sentinel://s1/m", &u))
		check(u.nnodes == 1 && u.db == 0 && !u.password[0],
		    "redis+sentinel://host/name: one sentinel, db 0, no password");
	if (url_ok("redis://cache", &u))
		check(u.kind == URL_SERVER && u.nnodes == 0, "redis://: one server, no nodes");
}

static void
test_url_cluster(void)
{
	struct redis_url u;

	if (url_ok("redis+cluster://:s3cret@n1:7000,[::1],n3.example:7002/", &u)) {
		check(u.kind == URL_CLUSTER && u.nnodes == 3 && !u.is_unix,
		    "redis+cluster://: 3 nodes, TCP");
		check(strcmp(u.nodes[0].host, "n1") == 0 && u.nodes[0].port == 7000 &&
		    strcmp(u.nodes[1].host, "::1") == 0 && u.nodes[1].port == 6379 &&
		    strcmp(u.nodes[2].host, "n3.example") == 0 && u.nodes[2].port == 7002,
		    "redis+cluster://: the nodes, port 6379 by default");
		check_str(u.password, "s3cret", "redis+cluster://: the nodes' password");
	}
	if (url_ok("redis+cluster://n1", &u))
		check(u.kind == URL_CLUSTER && u.nnodes == 1 && u.db == 0,
		    "redis+cluster://host: one node, db 0");
}

/* ---- cluster.h ---- */

static void
test_cluster_key_slot(void)
{
	static const struct { const char *key; unsigned slot; } cases[] = {
		/* as CLUSTER KEYSLOT of redis-server 7.0.15 gave them */
		{"foo", 12182}, {"bar", 5061}, {"somekey", 11058},
		{"{user1000}.following", 3443}, {"foo{}{bar}", 8363},
		{"foo{{bar}}zap", 4015}, {"foo{bar}{zap}", 5061},
		{"aq:{default}:wait", 5718}, {"aq:queues", 7347}, {"", 0},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		check(cluster_key_slot(cases[i].key, strlen(cases[i].key)) ==
		    cases[i].slot, "cluster_key_slot of '%s' is %u, as Redis says",
		    cases[i].key, cases[i].slot);
	check(cluster_key_slot("aq:{q}:job:1", 12) == cluster_key_slot("aq:{q}:wait", 11),
	    "cluster_key_slot: every key of a queue is in one slot");
}

static void
test_url_addr_equal(void)
{
	struct url_addr a = {"127.0.0.1", 7000}, b = {"127.0.0.1", 7000},
	    c = {"127.0.0.1", 7001}, d = {"localhost", 7000};

	check(url_addr_equal(&a, &b), "url_addr_equal: same host and port");
	check(!url_addr_equal(&a, &c), "url_addr_equal: another port differs");
	check(!url_addr_equal(&a, &d), "url_addr_equal: another host differs");
}

static void
test_url_rejections(void)
{
	for (size_t i = 0; i < sizeof bad_urls / sizeof bad_urls[0]; i++) {
		const struct bad_url *b = &bad_urls[i];
		struct redis_url u;
		char err[256] = "";
		int rc = url_parse(b->text, &u, err, sizeof err);
		if (!check(rc == -1 && strstr(err, b->reason) != NULL,
		    "url_parse rejects %s with a reason naming '%s'", b->what, b->reason))
			printf("#   rc %d, error '%s'\n", rc, err);
	}
}

static void
test_url_errors_hide_password(void)
{
	const char *texts[] = {
		"redis://:hunter2@cache:0",
		"redis://alice:hunter2@cache/x",
		"unix://:hunter2@relative",
		"redis://:hunter2@[::1",
	};

	for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
		struct redis_url u;
		char err[256] = "";
		int rc = url_parse(texts[i], &u, err, sizeof err);
		check(rc == -1 && err[0] && !strstr(err, "hunter2"),
		    "url_parse error for bad URL %zu with a password does not show it", i + 1);
	}
}

static void
display_is(const char *text, const char *want)
{
	struct redis_url u;
	char buf[1024];

	if (!url_ok(text, &u))
		return;
	url_display(&u, buf, sizeof buf);
	check_str(buf, want, "url_display of %s", text);
}

static void
test_url_display(void)
{
	display_is("redis://cache", "redis://cache:6379");
	display_is("redis://alice:s3cret@cache:6380/3", "redis://alice:***@cache:6380/3");
	display_is("redis://s3cret@cache", "redis://:***@cache:6379");
	display_is("redis://alice@cache", "redis://:***@cache:6379");
	display_is("redis://[::1]:6380/2", "redis://[::1]:6380/2");
	display_is("unix:///run/r.sock", "unix:///run/r.sock");
	display_is("unix://:s3cret@/run/r.sock?db=5", "unix://:***@/run/r.sock?db=5");
	display_is("redis+sentinel://alice:s3cret@s1:26380,[::1]/m/2",
	    "redis+sentinel://alice:***@s1:26380,[::1]:26379/m/2");
	display_is("redis+sentinel://s1/m", "redis+sentinel://s1:26379/m");
	display_is("redis+cluster://alice:s3cret@n1,n2:7001/",
	    "redis+cluster://alice:***@n1:6379,n2:7001");
}

static void
test_url_display_never_shows_password(void)
{
	const char *texts[] = {
		"redis://:s3cret@cache", "redis://bob:s3cret@cache:1/2",
		"redis://s3cret@[::1]", "unix://:s3cret@/r.sock?db=1",
		"redis://:s3cret%40x@cache",
	};

	for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
		struct redis_url u;
		char buf[1024];
		if (!url_ok(texts[i], &u))
			continue;
		url_display(&u, buf, sizeof buf);
		check(!strstr(buf, "s3cret") && strstr(buf, "***"),
		    "url_display of %s shows *** and not the password", texts[i]);
	}
}

static void
test_url_display_truncates(void)
{
	const char *texts[] = {"redis://a-long-host-name:6380/4",
	    "redis+sentinel://a-long-host:1,b-long-host:2,c:3/name/4",
	    "redis+cluster://a-long-host:1,b-long-host:2,c-long-host:3"};

	for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
		struct redis_url u;
		char buf[64];
		int ok = 1;
		if (!url_ok(texts[i], &u))
			continue;
		for (size_t n = 1; n < sizeof buf; n++) {
			memset(buf, 'X', sizeof buf);
			url_display(&u, buf, n);
			if (!memchr(buf, '\0', n) || buf[n] != 'X')
				ok = 0;
		}
		check(ok, "url_display of %s into buffers of 1 to 63 bytes stays "
		    "inside them, NUL-terminated", texts[i]);
	}
}

static int
all_zero(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

static void
test_url_forget(void)
{
	struct redis_url u;

	if (!url_ok("redis://alice:s3cret@cache:6380/3", &u))
		return;
	url_forget(&u);
	check(all_zero(u.password, sizeof u.password),
	    "url_forget zeroes every byte of the password");
	check(all_zero(u.user, sizeof u.user), "url_forget zeroes the user");
	check(strcmp(u.host, "cache") == 0 && u.port == 6380 && u.db == 3,
	    "url_forget leaves host, port and db");
}

/* ---- id.h: names ---- */

static void
test_id_valid(void)
{
	char *max = repeat('a', ID_MAX), *over = repeat('a', ID_MAX + 1);

	check(id_valid("a", 1), "id_valid: one character");
	check(id_valid("AZaz09._:@/-", 12), "id_valid: every allowed kind of character");
	check(id_valid(max, ID_MAX), "id_valid: 200 characters");
	check(!id_valid(over, ID_MAX + 1), "id_valid rejects 201 characters");
	check(!id_valid("", 0), "id_valid rejects the empty id");
	check(!id_valid("a b", 3), "id_valid rejects a space");
	check(!id_valid("a{b", 3), "id_valid rejects '{'");
	check(!id_valid("a}b", 3), "id_valid rejects '}'");
	check(!id_valid("ab\0cd", 5), "id_valid rejects a NUL inside");
	check(!id_valid("caf\xc3\xa9", 5), "id_valid rejects non-ASCII");
	check(!id_valid("a\nb", 3), "id_valid rejects a newline");
	check(id_valid("ab cd", 2), "id_valid looks at the n bytes only");
	free(max);
	free(over);
}

static void
test_queue_valid(void)
{
	char *max = repeat('q', QUEUE_MAX), *over = repeat('q', QUEUE_MAX + 1);

	check(queue_valid("default"), "queue_valid: a plain name");
	check(queue_valid("Mail.out_2-x"), "queue_valid: letters, digits, . _ -");
	check(queue_valid(max), "queue_valid: 100 characters");
	check(!queue_valid(over), "queue_valid rejects 101 characters");
	check(!queue_valid(""), "queue_valid rejects the empty name");
	check(!queue_valid("a:b"), "queue_valid rejects ':'");
	check(!queue_valid("a/b"), "queue_valid rejects '/'");
	check(!queue_valid("a{b}"), "queue_valid rejects braces");
	check(!queue_valid("a b"), "queue_valid rejects a space");
	check(!queue_valid("caf\xc3\xa9"), "queue_valid rejects non-ASCII");
	free(max);
	free(over);
}

static void
test_prefix_valid(void)
{
	char *max = repeat('p', PREFIX_MAX), *over = repeat('p', PREFIX_MAX + 1);

	check(prefix_valid("aq"), "prefix_valid: aq");
	check(prefix_valid("my_app:aq-1.0"), "prefix_valid: letters, digits, . _ : -");
	check(prefix_valid(max), "prefix_valid: 64 characters");
	check(!prefix_valid(over), "prefix_valid rejects 65 characters");
	check(!prefix_valid(""), "prefix_valid rejects the empty prefix");
	check(!prefix_valid("a{b"), "prefix_valid rejects '{' (hash tag)");
	check(!prefix_valid("a}b"), "prefix_valid rejects '}'");
	check(!prefix_valid("a/b"), "prefix_valid rejects '/'");
	check(!prefix_valid("a b"), "prefix_valid rejects a space");
	free(max);
	free(over);
}

/* ---- id.h: uuidv7 ---- */

static int
uuid_shape_ok(const char *s)
{
	if (strlen(s) != UUID_LEN)
		return 0;
	for (int i = 0; i < UUID_LEN; i++) {
		int dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash != (s[i] == '-'))
			return 0;
		if (!dash && !strchr("0123456789abcdef", s[i]))
			return 0;
	}
	return 1;
}

static int64_t
uuid_ms(const char *s)
{
	int64_t ms = 0;

	for (int i = 0; i < 13; i++)
		if (s[i] != '-')
			ms = ms * 16 + (s[i] <= '9' ? s[i] - '0' : s[i] - 'a' + 10);
	return ms;
}

static int64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
test_uuidv7_format(void)
{
	char id[UUID_LEN + 1];
	int64_t before = wall_ms(), after;
	int rc = uuidv7(id);

	after = wall_ms();
	check(rc == 0, "uuidv7 returns 0");
	if (!check(uuid_shape_ok(id), "uuidv7: 8-4-4-4-12 lowercase hex"))
		diag_mem("got", id, strlen(id));
	check(id[14] == '7', "uuidv7: version nibble is 7");
	check(strchr("89ab", id[19]) != NULL, "uuidv7: variant bits are 10");
	if (!check(uuid_ms(id) >= before - 1 && uuid_ms(id) <= after + 1000,
	    "uuidv7: timestamp is the current time in ms"))
		printf("#   id ms %" PRId64 ", now %" PRId64 "\n", uuid_ms(id), before);
}

static void
test_uuidv7_increasing(void)
{
	char prev[UUID_LEN + 1], cur[UUID_LEN + 1];
	int bad_order = 0, bad_shape = 0;

	uuidv7(prev);
	for (int i = 0; i < 10000; i++) {
		if (uuidv7(cur) < 0 || !uuid_shape_ok(cur) || cur[14] != '7' ||
		    !strchr("89ab", cur[19]))
			bad_shape++;
		if (strcmp(prev, cur) >= 0)
			bad_order++;
		memcpy(prev, cur, sizeof cur);
	}
	check(bad_shape == 0, "uuidv7: 10,000 ids all well-formed v7");
	if (!check(bad_order == 0, "uuidv7: 10,000 consecutive ids strictly increasing"))
		printf("#   %d out of order\n", bad_order);
	check(llabs(uuid_ms(prev) - wall_ms()) < 1000,
	    "uuidv7: after 10,000 ids the timestamp is still within 1s of now");
}

/* ---- duration.h ---- */

struct dur_case {
	const char *text;
	int64_t ms;
};

static void
test_duration_accepts(void)
{
	static const struct dur_case cases[] = {
		{"250ms", 250}, {"30s", 30000}, {"5m", 300000}, {"1h", 3600000},
		{"1d", 86400000}, {"2", 2000}, {"1.5", 1500}, {"0.25s", 250},
		{"0", 0}, {"0ms", 0}, {"1.5h", 5400000}, {"2.5m", 150000},
		{"0.001", 1}, {"1.2345", 1234}, {"36600d", DURATION_MAX_MS},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int64_t ms = -7;
		int rc = duration_parse(cases[i].text, &ms);
		if (!check(rc == 0 && ms == cases[i].ms, "duration_parse(\"%s\") = %" PRId64
		    " ms", cases[i].text, cases[i].ms))
			printf("#   rc %d, ms %" PRId64 "\n", rc, ms);
	}
}

static void
test_duration_rejects(void)
{
	static const char *bad[] = {
		"", "-1", "5x", "1.", ".5", "1 s", " 1", "1s ", "s", "ms", "+1",
		"1e3", "1,5", "1ss", "1S",
		"36601d", "3162240001s", "3162240000001ms", "878401h", "52704001m",
		"99999999999999999999", "99999999999999999999ms",
		"1.0.0",
	};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int64_t ms = -7;
		check(duration_parse(bad[i], &ms) == -1, "duration_parse rejects \"%s\"", bad[i]);
	}
}

/* ---- flow.h ---- */

static void
test_flow_parse_rate(void)
{
	static const struct { const char *text; long n; int64_t ms; } good[] = {
		{"100/1s", 100, 1000}, {"5/1m", 5, 60000}, {"20/250ms", 20, 250},
		{"1/1d", 1, 86400000}, {"1000000/1.5", 1000000, 1500},
	};
	static const char *bad[] = {
		"", "5", "5/", "/1s", "0/1s", "-1/1s", "+5/1s", " 5/1s", "5/0",
		"5/0ms", "5/2d", "5/1s ", "5/x", "1000001/1s", "5//1s", "5/-1s",
		"99999999999999999999/1s",
	};

	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		long n = -7;
		int64_t ms = -7;
		check(flow_parse_rate(good[i].text, &n, &ms) == 0 && n == good[i].n &&
		    ms == good[i].ms, "flow_parse_rate(\"%s\") = %ld per %" PRId64 " ms",
		    good[i].text, good[i].n, good[i].ms);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		long n;
		int64_t ms;
		check(flow_parse_rate(bad[i], &n, &ms) == -1,
		    "flow_parse_rate rejects \"%s\"", bad[i]);
	}
}

static void
test_flow_json(void)
{
	static const struct {
		struct flow_state l;
		int all;
		const char *want;
	} cases[] = {
		{{0, 0, 0, 0}, 0, "{}"},
		{{0, 0, 0, 0}, 1, "{\"limits\":null,\"throttled_s\":null}"},
		{{20, 1000, 0, 0}, 0, "{\"limits\":{\"rate\":20,\"period_ms\":1000}}"},
		{{0, 0, 5, 1500}, 1,
		    "{\"limits\":{\"concurrency\":5},\"throttled_s\":1.500}"},
		{{3, 60000, 2, 0}, 0,
		    "{\"limits\":{\"rate\":3,\"period_ms\":60000,\"concurrency\":2}}"},
	};
	struct jbuf b = {0};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		jb_reset(&b);
		jb_obj_begin(&b);
		flow_json(&b, &cases[i].l, cases[i].all);
		jb_obj_end(&b);
		check_mem(b.p, b.len, cases[i].want, strlen(cases[i].want), "flow_json case %zu: %s",
		    i, cases[i].want);
	}
	jb_free(&b);
}

/* ---- duration.h: time_parse ---- */

static void
test_time_accepts(void)
{
	static const struct dur_case cases[] = {
		{"1795000000", 1795000000000LL},
		{"1795000000.250", 1795000000250LL},
		{"1795000000.5", 1795000000500LL},
		{"0", 0},
		{"2026-11-18T11:06:40Z", 1795000000000LL},
		{"2026-11-23T09:00:00Z", 1795424400000LL},
		{"2026-11-23T09:00:00.123Z", 1795424400123LL},
		{"2026-11-23T09:00:00.5Z", 1795424400500LL},
		{"2026-11-23T09:00:00+02:00", 1795417200000LL},
		{"2026-11-23T09:00:00-05:30", 1795444200000LL},
		{"2026-11-23T09:00:00.250+02:00", 1795417200250LL},
		{"2026-11-23t09:00:00z", 1795424400000LL},
		{"2026-11-23T09:00:00+00:00", 1795424400000LL},
		{"1970-01-01T00:00:00Z", 0},
		{"2028-02-29T00:00:00Z", 1835395200000LL},
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int64_t ms = -7;
		int rc = time_parse(cases[i].text, &ms);
		if (!check(rc == 0 && ms == cases[i].ms, "time_parse(\"%s\") = %" PRId64
		    " ms", cases[i].text, cases[i].ms))
			printf("#   rc %d, ms %" PRId64 "\n", rc, ms);
	}
}

static void
test_time_rejects(void)
{
	static const char *bad[] = {
		"", "garbage", "2026-02-30T00:00:00Z", "2027-02-29T00:00:00Z",
		"2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z", "2026-11-00T00:00:00Z",
		"2026-11-23T09:00:00", "2026-11-23T24:00:00Z", "2026-11-23T09:60:00Z",
		"2026-11-23", "2026-11-23T09:00Z", "2026-11-23T09:00:00.Z",
		"2026-11-23T09:00:00+2:00", "2026-11-23T09:00:00+0200",
		"2026-11-23T09:00:00Zjunk", "26-11-23T09:00:00Z",
		"1969-12-31T23:59:59Z", "1970-01-01T00:00:00+01:00",
		"-1", "1795000000x", "1795000000.", ".5",
	};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int64_t ms = -7;
		check(time_parse(bad[i], &ms) == -1, "time_parse rejects \"%s\"", bad[i]);
	}
}

/* Second 60 is accepted (sec > 60 is the check), so a real leap second,
 * always 23:59:60 UTC on a month's last day, must be accepted too. */
static void
test_time_leap_second(void)
{
	int64_t ms = -7;
	int rc = time_parse("2016-12-31T23:59:60Z", &ms);

	if (!check(rc == 0 && ms == 1483228800000LL,
	    "time_parse accepts the leap second 2016-12-31T23:59:60Z as 1483228800000"))
		printf("#   rc %d, ms %" PRId64 "\n", rc, ms);
	ms = -7;
	rc = time_parse("2016-12-31T18:59:60-05:00", &ms);
	if (!check(rc == 0 && ms == 1483228800000LL,
	    "time_parse accepts the same leap second written at -05:00"))
		printf("#   rc %d, ms %" PRId64 "\n", rc, ms);
}

/* ---- jsonl.h ---- */

#define SEEN_MAX 16

/* What the callback saw: each line's number, length, bytes, NUL-termination. */
struct seen {
	int n;
	unsigned long lineno[SEEN_MAX];
	size_t len[SEEN_MAX];
	char *text[SEEN_MAX];
	int terminated;     /* every line had a NUL at line[len] */
	unsigned long stop_at; /* return stop_rc on this line number */
	int stop_rc;
	int idle_calls, idle_after; /* idle calls, lines seen at the first one */
	int idle_wfd;
};

static int
collect(char *line, size_t len, unsigned long lineno, void *ctx)
{
	struct seen *s = ctx;

	if (line[len] != '\0')
		s->terminated = 0;
	if (s->n < SEEN_MAX) {
		s->lineno[s->n] = lineno;
		s->len[s->n] = len;
		s->text[s->n] = malloc(len + 1);
		if (s->text[s->n])
			memcpy(s->text[s->n], line, len + 1);
	}
	s->n++;
	return lineno == s->stop_at ? s->stop_rc : 0;
}

static void
seen_init(struct seen *s)
{
	memset(s, 0, sizeof *s);
	s->terminated = 1;
	s->idle_wfd = -1;
}

static void
seen_free(struct seen *s)
{
	for (int i = 0; i < s->n && i < SEEN_MAX; i++)
		free(s->text[i]);
}

/* Line i of what was seen is number lineno with bytes want. */
static void
check_line(const struct seen *s, int i, unsigned long lineno, const char *want,
    size_t wantlen, const char *what)
{
	int ok = i < s->n && i < SEEN_MAX && s->lineno[i] == lineno &&
	    s->len[i] == wantlen && s->text[i] && memcmp(s->text[i], want, wantlen) == 0;

	if (!check(ok, "jsonl_each %s: line %lu is delivered as expected", what, lineno)) {
		if (i < s->n && i < SEEN_MAX) {
			printf("#   got line number %lu, len %zu\n", s->lineno[i], s->len[i]);
			diag_mem("got", s->text[i], s->len[i]);
		} else {
			printf("#   only %d lines delivered\n", s->n);
		}
	}
}

/* Save stderr into a temp file around a call that may warn. */
struct capture {
	int saved;
	FILE *f;
};

static void
capture_begin(struct capture *c)
{
	fflush(stderr);
	c->f = tmpfile();
	c->saved = dup(2);
	if (!c->f || c->saved < 0 || dup2(fileno(c->f), 2) < 0) {
		perror("capture stderr");
		exit(2);
	}
}

static void
capture_end(struct capture *c, char *out, size_t outlen)
{
	size_t n;

	fflush(stderr);
	dup2(c->saved, 2);
	close(c->saved);
	rewind(c->f);
	n = fread(out, 1, outlen - 1, c->f);
	out[n] = '\0';
	fclose(c->f);
}

/* A temp file holding data[0..n), positioned at its start. */
static FILE *
file_of(const char *data, size_t n)
{
	FILE *f = tmpfile();

	if (!f || fwrite(data, 1, n, f) != n || fflush(f) != 0) {
		perror("tmpfile");
		exit(2);
	}
	rewind(f);
	return f;
}

/* Run jsonl_each over data with max; stderr goes to warn. */
static int
feed(const char *data, size_t n, size_t max, struct seen *s,
    unsigned long *rejected, char *warn, size_t warnlen)
{
	FILE *f = file_of(data, n);
	struct capture c;
	int rc;

	*rejected = 0;
	capture_begin(&c);
	rc = jsonl_each(fileno(f), max, collect, s, rejected);
	capture_end(&c, warn, warnlen);
	fclose(f);
	return rc;
}

#define FEED(lit, max, s, rej, warn) \
	feed((lit), sizeof(lit) - 1, (max), (s), (rej), (warn), sizeof(warn))

static void
test_jsonl_plain_lines(void)
{
	struct seen s;
	unsigned long rej;
	char warn[512];
	int rc;

	seen_init(&s);
	rc = FEED("a\nbb\n{\"x\":1}\n", 64, &s, &rej, warn);
	check(rc == 0 && s.n == 3 && rej == 0 && warn[0] == '\0',
	    "jsonl_each plain lines: returns 0, 3 lines, nothing rejected or warned");
	check_line(&s, 0, 1, "a", 1, "plain");
	check_line(&s, 1, 2, "bb", 2, "plain");
	check_line(&s, 2, 3, "{\"x\":1}", 7, "plain");
	check(s.terminated, "jsonl_each passes each line NUL-terminated at len");
	seen_free(&s);
}

static void
test_jsonl_crlf(void)
{
	struct seen s;
	unsigned long rej;
	char warn[512];

	seen_init(&s);
	FEED("a\r\nbb\r\n\r\n", 64, &s, &rej, warn);
	check(s.n == 2, "jsonl_each CRLF: 2 lines, the CRLF-only line is blank");
	check_line(&s, 0, 1, "a", 1, "CRLF");
	check_line(&s, 1, 2, "bb", 2, "CRLF");
	seen_free(&s);
}

static void
test_jsonl_missing_final_newline(void)
{
	struct seen s;
	unsigned long rej;
	char warn[512];
	int rc;

	seen_init(&s);
	rc = FEED("a\nlast", 64, &s, &rej, warn);
	check(rc == 0 && s.n == 2, "jsonl_each delivers a last line without newline");
	check_line(&s, 1, 2, "last", 4, "no final newline");
	check(s.terminated, "jsonl_each NUL-terminates a last line without newline");
	seen_free(&s);
	seen_init(&s);
	FEED("x\nlast\r", 64, &s, &rej, warn);
	check_line(&s, 1, 2, "last", 4, "final CR without LF");
	seen_free(&s);
}

static void
test_jsonl_blank_lines_counted(void)
{
	struct seen s;
	unsigned long rej;
	char warn[512];

	seen_init(&s);
	FEED("\na\n\n  \t\n \r\nb\n\n", 64, &s, &rej, warn);
	check(s.n == 2 && rej == 0,
	    "jsonl_each skips blank and whitespace-only lines without rejecting them");
	check_line(&s, 0, 2, "a", 1, "blank lines");
	check_line(&s, 1, 6, "b", 1, "blank lines");
	seen_free(&s);
}

static void
test_jsonl_too_long_skipped(void)
{
	struct seen s;
	unsigned long rej;
	char warn[512];
	int rc;

	/* 17 bytes with max 16: the whole line fits the buffer, then is dropped */
	seen_init(&s);
	rc = FEED("short\n12345678901234567\nafter\n", 16, &s, &rej, warn);
	check(rc == 0 && rej == 1 && s.n == 2,
	    "jsonl_each max 16: a 17-byte line is skipped and counted in *rejected");
	check_line(&s, 0, 1, "short", 5, "max 16");
	check_line(&s, 1, 3, "after", 5, "after a 17-byte line");
	if (!check(strstr(warn, "line 2:") != NULL,
	    "jsonl_each reports the over-long line as \"line 2:\" on stderr"))
		diag_mem("stderr", warn, strlen(warn));
	seen_free(&s);
}

static void
test_jsonl_much_too_long_skipped(void)
{
	struct seen s;
	unsigned long rej;
	char warn[512];
	int rc;

	/* 60 bytes with max 16: longer than the buffer, dropped while reading */
	seen_init(&s);
	rc = FEED("one\n"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"
	    "\n"
	    "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\n"
	    "four\n", 16, &s, &rej, warn);
	check(rc == 0 && rej == 2 && s.n == 2,
	    "jsonl_each max 16: two 40+ byte lines each counted once in *rejected");
	check_line(&s, 0, 1, "one", 3, "long lines");
	check_line(&s, 1, 5, "four", 4, "after long lines");
	if (!check(strstr(warn, "line 2:") && strstr(warn, "line 4:"),
	    "jsonl_each names lines 2 and 4 as too long"))
		diag_mem("stderr", warn, strlen(warn));
	seen_free(&s);
}

static void
test_jsonl_exact_max(void)
{
	struct seen s;
	unsigned long rej;
	char warn[512];

	seen_init(&s);
	FEED("1234567890123456\n12345678901234567\n", 16, &s, &rej, warn);
	check(s.n == 1 && rej == 1, "jsonl_each max 16: 16 bytes accepted, 17 rejected");
	check_line(&s, 0, 1, "1234567890123456", 16, "exactly max");
	seen_free(&s);

	seen_init(&s);
	FEED("1234567890123456\r\nz\n", 16, &s, &rej, warn);
	check(s.n == 2 && rej == 0, "jsonl_each max 16: 16 bytes plus CRLF accepted");
	check_line(&s, 0, 1, "1234567890123456", 16, "max with CRLF");
	check_line(&s, 1, 2, "z", 1, "after max with CRLF");
	seen_free(&s);

	seen_init(&s);
	FEED("a\n1234567890123456", 16, &s, &rej, warn);
	check(rej == 0, "jsonl_each max 16: a last 16-byte line without newline is not rejected");
	check_line(&s, 1, 2, "1234567890123456", 16, "max without final newline");
	check(s.terminated, "jsonl_each NUL-terminates a max-long last line");
	seen_free(&s);

	seen_init(&s);
	FEED("a\n12345678901234567", 16, &s, &rej, warn);
	check(s.n == 1 && rej == 1,
	    "jsonl_each max 16: a last 17-byte line without newline is rejected");
	seen_free(&s);

	seen_init(&s);
	FEED("a\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 16, &s, &rej, warn);
	check(s.n == 1 && rej == 1,
	    "jsonl_each max 16: a long last line without newline is rejected once");
	seen_free(&s);
}

static void
test_jsonl_huge_line(void)
{
	size_t big = (size_t)1 << 20, n = big + 1 + 5;
	char *data = malloc(n);
	struct seen s;
	unsigned long rej;
	char warn[512];
	int rc;

	if (!data)
		exit(2);
	memset(data, 'x', big);
	memcpy(data + big, "\nnext\n", 6);
	seen_init(&s);
	rc = feed(data, n, 64, &s, &rej, warn, sizeof warn);
	check(rc == 0 && rej == 1 && s.n == 1,
	    "jsonl_each max 64: a 1 MiB line is rejected once");
	check_line(&s, 0, 2, "next", 4, "after a 1 MiB line");
	seen_free(&s);
	free(data);
}

/* A max above the first buffer (64 KiB): the buffer grows to hold the line. */
static void
test_jsonl_grows_to_max(void)
{
	size_t max = 200000, len = 150000;
	char *data = repeat('g', len + 1 + 200001 + 1 + 2);
	struct seen s;
	unsigned long rej;
	char warn[512];
	int rc;

	data[len] = '\n';              /* line 1: 150000 bytes */
	data[len + 1 + 200001] = '\n'; /* line 2: 200001 bytes, one too many */
	memcpy(data + len + 1 + 200001 + 1, "z\n", 2);
	seen_init(&s);
	rc = feed(data, len + 1 + 200001 + 1 + 2, max, &s, &rej, warn, sizeof warn);
	check(rc == 0 && s.n == 2 && rej == 1,
	    "jsonl_each max 200000: a 150000-byte line passes, a 200001-byte one is rejected");
	check(s.n >= 1 && s.len[0] == len && s.text[0] &&
	    strspn(s.text[0], "g") == len && s.lineno[0] == 1,
	    "jsonl_each max 200000: the 150000-byte line arrives whole");
	check_line(&s, 1, 3, "z", 1, "after a line over a large max");
	seen_free(&s);
	free(data);
}

static void
test_jsonl_embedded_nul(void)
{
	struct seen s;
	unsigned long rej;
	char warn[512];

	seen_init(&s);
	FEED("a\0b\n\0\n", 64, &s, &rej, warn);
	check(s.n == 2, "jsonl_each: lines with NUL bytes are not blank");
	check_line(&s, 0, 1, "a\0b", 3, "embedded NUL");
	check_line(&s, 1, 2, "\0", 1, "lone NUL");
	seen_free(&s);
}

static void
test_jsonl_callback_stops(void)
{
	struct seen s;
	unsigned long rej;
	char warn[512];
	int rc;

	seen_init(&s);
	s.stop_at = 2;
	s.stop_rc = 7;
	rc = FEED("a\nb\nc\nd\n", 64, &s, &rej, warn);
	check(rc == 7 && s.n == 2,
	    "jsonl_each returns the callback's 7 and reads no further line");
	seen_free(&s);

	seen_init(&s);
	s.stop_at = 2;
	s.stop_rc = -3;
	rc = FEED("a\nb", 64, &s, &rej, warn);
	check(rc == -3, "jsonl_each returns the callback's value for a last unterminated line");
	seen_free(&s);
}

static void
test_jsonl_read_error(void)
{
	struct seen s;
	struct capture c;
	unsigned long rej = 0;
	char warn[512];
	int rc;

	seen_init(&s);
	capture_begin(&c);
	rc = jsonl_each(-1, 64, collect, &s, &rej);
	capture_end(&c, warn, sizeof warn);
	check(rc == -1 && s.n == 0 && strstr(warn, "cannot read"),
	    "jsonl_each on an unreadable fd reports it and returns -1");
	seen_free(&s);
}

/* The idle callback writes the rest of the input, so only the idle call can
 * make the second line come. */
static void
feed_more(void *ctx)
{
	struct seen *s = ctx;

	if (s->idle_calls++ == 0) {
		s->idle_after = s->n;
		if (write(s->idle_wfd, "b\n", 2) != 2)
			perror("write");
		close(s->idle_wfd);
		s->idle_wfd = -1;
	}
}

static void
test_jsonl_idle(void)
{
	struct seen s;
	unsigned long rej = 0;
	int fds[2];
	int rc;

	if (pipe(fds) < 0) {
		perror("pipe");
		exit(2);
	}
	seen_init(&s);
	s.idle_wfd = fds[1];
	if (write(fds[1], "a\n", 2) != 2)
		perror("write");
	rc = jsonl_each_idle(fds[0], 64, collect, feed_more, &s, &rej);
	close(fds[0]);
	if (s.idle_wfd >= 0)
		close(s.idle_wfd);
	check(rc == 0 && s.n == 2 && s.idle_calls == 1 && s.idle_after == 1,
	    "jsonl_each_idle calls idle once, after line 1, when the pipe would block");
	check_line(&s, 1, 2, "b", 1, "written by the idle callback");
	seen_free(&s);
}

static void
test_jsonl_parse_max(void)
{
	static const struct {
		const char *text;
		size_t max;
	} good[] = {
		{"65536", 65536}, {"64K", 65536}, {"16M", (size_t)16 << 20},
		{"1G", (size_t)1 << 30}, {"1", 1}, {"1073741824", (size_t)1 << 30},
	};
	static const char *bad[] = {
		"0", "0K", "2G", "1025M", "1073741825", "", "12Q", "1KB", "-1",
		" 1", "K", "99999999999999999999999",
	};

	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		size_t max = 0;
		check(jsonl_parse_max(good[i].text, &max) == 0 && max == good[i].max,
		    "jsonl_parse_max(\"%s\") = %zu", good[i].text, good[i].max);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		size_t max = 0;
		check(jsonl_parse_max(bad[i], &max) == -1,
		    "jsonl_parse_max rejects \"%s\"", bad[i]);
	}
}

/* ---- json.h: json_check ---- */

static void
test_json_check_accepts(void)
{
	static const char *good[] = {
		"{}", "[1,2]", "\"s\"", "3", "-0.5e3", "null", "true", "false",
		"123456789012345678901234567890", "{\"a\":[{\"b\":null}]}",
		" {\"a\":1} \n", "\"\\u00e9\xc3\xa9\"",
	};
	static const char *what[] = {
		"{}", "[1,2]", "a string", "3", "-0.5e3", "null", "true", "false",
		"123456789012345678901234567890", "nested values",
		"a value between blanks", "an escaped and a raw UTF-8 letter",
	};

	_Static_assert(sizeof good / sizeof good[0] == sizeof what / sizeof what[0],
	    "one description per case");

	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		char err[256] = "";
		int rc = json_check(good[i], strlen(good[i]), err, sizeof err);
		if (!check(rc == 0, "json_check accepts %s", what[i]))
			printf("#   error: %s\n", err);
	}
	check(json_check("[1]junk", 3, (char[64]){0}, 64) == 0,
	    "json_check reads only the n bytes it is given");
}

static void
test_json_check_rejects(void)
{
	static const char *bad[] = {
		"{", "bad", "1 2", "\"\xff\"", "\"\xc3\"", "", "[1,]", "{'a':1}",
		"\"a\nb\"",
	};
	static const char *what[] = {
		"an unclosed {", "a bare word", "two values", "invalid UTF-8 0xff",
		"truncated UTF-8", "empty input", "a trailing comma", "single quotes",
		"a raw newline in a string",
	};

	_Static_assert(sizeof bad / sizeof bad[0] == sizeof what / sizeof what[0],
	    "one description per case");

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char err[256] = "";
		int rc = json_check(bad[i], strlen(bad[i]), err, sizeof err);
		if (!check(rc == -1 && strstr(err, "column"),
		    "json_check rejects %s with a reason naming the column", what[i]))
			printf("#   rc %d, error '%s'\n", rc, err);
	}
}

/* ---- json.h: the builder ---- */

static void
check_jb_str(const char *in, size_t n, const char *want, const char *what)
{
	struct jbuf b = {0};

	jb_str(&b, in, n);
	check_mem(b.p, b.len, want, strlen(want), "jb_str %s", what);
	jb_free(&b);
}

static void
test_jb_str_escapes(void)
{
	check_jb_str("plain", 5, "\"plain\"", "leaves plain text alone");
	check_jb_str("q\"b\\s", 5, "\"q\\\"b\\\\s\"", "escapes quote and backslash");
	check_jb_str("a\nb\tc\rd", 7, "\"a\\nb\\tc\\rd\"", "escapes newline, tab, CR");
	check_jb_str("\x01\x1f\x7f", 3, "\"\\u0001\\u001f\\u007f\"",
	    "escapes 0x01, 0x1f and DEL as \\u00XX");
	check_jb_str("a\0b", 3, "\"a\\u0000b\"", "escapes an embedded NUL");
	check_jb_str("", 0, "\"\"", "writes the empty string");
}

static void
test_jb_str_utf8(void)
{
	const char *ok = "h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";

	check_jb_str(ok, strlen(ok), "\"h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"",
	    "keeps valid 2-, 3- and 4-byte UTF-8");
	check_jb_str("a\xff" "b", 3, "\"a\\ufffdb\"", "replaces byte 0xff by \\ufffd");
	check_jb_str("a\xe2\x82", 3, "\"a\\ufffd\\ufffd\"",
	    "replaces a truncated sequence at the end");
	check_jb_str("\xc0\xaf", 2, "\"\\ufffd\\ufffd\"", "replaces an overlong encoding");
	check_jb_str("\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\"",
	    "replaces an encoded surrogate");
	check_jb_str("\xf4\x90\x80\x80", 4, "\"\\ufffd\\ufffd\\ufffd\\ufffd\"",
	    "replaces a code point above U+10FFFF");
}

static void
check_jb_millis(int64_t ms, const char *want)
{
	struct jbuf b = {0};

	jb_millis(&b, ms);
	check_mem(b.p, b.len, want, strlen(want), "jb_millis(%" PRId64 ") = %s", ms, want);
	jb_free(&b);
}

static void
check_jb_int(int64_t v, const char *want)
{
	struct jbuf b = {0};

	jb_int(&b, v);
	check_mem(b.p, b.len, want, strlen(want), "jb_int(%" PRId64 ") = %s", v, want);
	jb_free(&b);
}

static void
test_jb_numbers(void)
{
	check_jb_millis(1795000000123LL, "1795000000.123");
	check_jb_millis(5, "0.005");
	check_jb_millis(0, "0.000");
	check_jb_millis(30000, "30.000");
	check_jb_millis(-1500, "-1.500");
	check_jb_int(-42, "-42");
	check_jb_int(0, "0");
	check_jb_int(INT64_MIN, "-9223372036854775808");
	check_jb_int(INT64_MAX, "9223372036854775807");
}

static const char escapes_in[] = "q\"b\\s\nl\tt\x01 del\x7f";

static void
build_sample(struct jbuf *b)
{
	jb_obj_begin(b);
	jb_kstr(b, "s", escapes_in);
	jb_key(b, "bad");
	jb_str(b, "a\xff" "b", 3);
	jb_kstr(b, "utf", "h\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
	jb_key(b, "t");
	jb_millis(b, 1795000000123LL);
	jb_kint(b, "neg", -42);
	jb_key(b, "n");
	jb_null(b);
	jb_key(b, "raw");
	jb_raw(b, "[1,{}]", 6);
	jb_obj_end(b);
}

static void
test_jb_object_text(void)
{
	struct jbuf b = {0};
	const char *want = "{\"s\":\"q\\\"b\\\\s\\nl\\tt\\u0001 del\\u007f\","
	    "\"bad\":\"a\\ufffdb\",\"utf\":\"h\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\","
	    "\"t\":1795000000.123,\"neg\":-42,\"n\":null,\"raw\":[1,{}]}";

	build_sample(&b);
	check_mem(b.p, b.len, want, strlen(want), "jbuf object: the exact text");
	check(b.p && b.p[b.len] == '\0', "jbuf keeps its text NUL-terminated");
	jb_free(&b);
}

static void
test_jb_object_parses_back(void)
{
	struct jbuf b = {0};
	json_error_t e;
	json_t *v;

	build_sample(&b);
	v = json_loads(b.p, 0, &e);
	if (!check(v != NULL, "jbuf object parses with jansson"))
		printf("#   %s at column %d\n", e.text, e.column);
	if (v) {
		check_str(json_string_value(json_object_get(v, "s")), escapes_in,
		    "jansson reads back the escaped string");
		check_str(json_string_value(json_object_get(v, "bad")), "a\xef\xbf\xbd" "b",
		    "jansson reads back U+FFFD for the invalid byte");
		check_str(json_string_value(json_object_get(v, "utf")),
		    "h\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "jansson reads back the UTF-8");
		check(json_integer_value(json_object_get(v, "neg")) == -42,
		    "jansson reads back -42");
		check(json_is_real(json_object_get(v, "t")) &&
		    json_real_value(json_object_get(v, "t")) > 1795000000.12 &&
		    json_real_value(json_object_get(v, "t")) < 1795000000.13,
		    "jansson reads back the time as seconds");
		check(json_is_null(json_object_get(v, "n")) &&
		    json_array_size(json_object_get(v, "raw")) == 2,
		    "jansson reads back null and the raw array");
		json_decref(v);
	}
	jb_free(&b);
}

static void
test_jb_invalid_utf8_output_is_valid(void)
{
	static const char junk[] = "\xff\xfe\xc0\xaf\xed\xa0\x80\xf8\x88\x80\x80\x80"
	    "\xe2\x28\xa1\x80\xf4\x90\x80\x80\xc3";
	struct jbuf b = {0};
	json_t *v;

	jb_str(&b, junk, sizeof junk - 1);
	v = json_loads(b.p, JSON_DECODE_ANY, NULL);
	check(v && json_is_string(v), "jb_str of assorted invalid UTF-8 is valid JSON");
	json_decref(v);
	jb_free(&b);
}

static void
test_jb_nesting_and_reset(void)
{
	struct jbuf b = {0};
	const char *want = "{\"a\":{\"b\":1,\"c\":{}},\"d\":2}";

	jb_obj_begin(&b);
	jb_key(&b, "a");
	jb_obj_begin(&b);
	jb_kint(&b, "b", 1);
	jb_key(&b, "c");
	jb_obj_begin(&b);
	jb_obj_end(&b);
	jb_obj_end(&b);
	jb_kint(&b, "d", 2);
	jb_obj_end(&b);
	check_mem(b.p, b.len, want, strlen(want), "jbuf nested objects: commas per level");
	jb_reset(&b);
	jb_obj_begin(&b);
	jb_kint(&b, "x", 1);
	jb_obj_end(&b);
	check_mem(b.p, b.len, "{\"x\":1}", 7, "jb_reset starts a fresh document");
	jb_free(&b);
	check(b.p == NULL && b.len == 0, "jb_free releases and empties the buffer");
	jb_reset(&b);
	jb_obj_begin(&b);
	jb_obj_end(&b);
	check_mem(b.p, b.len, "{}", 2, "jbuf can be reused after jb_free and jb_reset");
	jb_free(&b);
}

static void
test_jb_grows(void)
{
	struct jbuf b = {0};
	char *big = repeat('z', 5000);
	int ok;

	jb_str(&b, big, 5000);
	ok = b.len == 5002 && b.p[0] == '"' && b.p[5001] == '"' && b.p[5002] == '\0';
	for (size_t i = 1; ok && i < 5001; i++)
		ok = b.p[i] == 'z';
	check(ok, "jbuf grows to hold a 5000-byte string");
	free(big);
	jb_free(&b);
}

static void
test_jb_json_or_str(void)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{"{\"a\":1}", "{\"a\":1}"},
		{"42", "42"},
		{"plain text", "\"plain text\""},
		{"{\"a\":", "\"{\\\"a\\\":\""},
		{"", "\"\""},
		{"[1,\n2]", "[1,2]"},
	};
	struct jbuf b = {0};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		jb_reset(&b);
		jb_json_or_str(&b, cases[i].in, strlen(cases[i].in));
		check_mem(b.p, b.len, cases[i].out, strlen(cases[i].out),
		    "jb_json_or_str: JSON as it is, anything else a string (case %zu)", i);
	}
	jb_free(&b);
}

/* jb_millis negates a negative ms: INT64_MIN must not overflow. */
static void
test_jb_millis_int64_min(void)
{
	check_jb_millis(INT64_MIN, "-9223372036854775.808");
}

/* ---- keys.h ---- */

static void
test_keys_short(void)
{
	struct keys k = {0};

	keys_init(&k, "aq", "q");
	check_str(k.base, "aq:{q}:", "keys_init: base");
	check_str(k.job, "aq:{q}:job:", "keys_init: job");
	check_str(k.wait, "aq:{q}:wait", "keys_init: wait");
	check_str(k.delayed, "aq:{q}:delayed", "keys_init: delayed");
	check_str(k.active, "aq:{q}:active", "keys_init: active");
	check_str(k.wake, "aq:{q}:wake", "keys_init: wake");
	check_str(k.log, "aq:{q}:log", "keys_init: log");
	check_str(k.stats, "aq:{q}:stats", "keys_init: stats");
	check_str(k.seq, "aq:{q}:seq", "keys_init: seq");
	check_str(k.queues, "aq:queues", "keys_init: queues");
	check_str(k.events, "aq:{q}:events:", "keys_init: events");
	check_str(k.worker, "aq:{q}:worker:", "keys_init: worker");
	check_str(k.failed, "aq:{q}:failed", "keys_init: failed");
	check_str(k.paused, "aq:{q}:paused", "keys_init: paused");
	check_str(k.limits, "aq:{q}:limits", "keys_init: limits");
	check_str(k.rate, "aq:{q}:rate", "keys_init: rate");
	check_str(k.throttled, "aq:{q}:throttled", "keys_init: throttled");
}

/* lua_field: in the Lua source src, within the text from the first
 * from_text up to the next to_text, the text after "NAME = " up to the
 * next ',' or '}', without spaces: "KEYS[3]" or "base..'events:'"; ""
 * when NAME is not there. */
static const char *
lua_field(const char *src, const char *from_text, const char *to_text,
    const char *name, char *buf, size_t len)
{
	const char *from = strstr(src, from_text), *to, *at, *end;
	char pat[64];
	size_t n = 0;

	buf[0] = '\0';
	if (!from || !(to = strstr(from + strlen(from_text), to_text)))
		return buf;
	snprintf(pat, sizeof pat, "%s = ", name);
	for (at = strstr(from, pat); at && at[-1] != ' ' && at[-1] != '{';)
		at = strstr(at + 1, pat);
	if (!at || at > to)
		return buf;
	at += strlen(pat);
	end = at + strcspn(at, ",}\n");
	for (; at < end && n + 1 < len; at++)
		if (*at != ' ')
			buf[n++] = *at;
	buf[n] = '\0';
	return buf;
}

/* lua_key: NAME's key in lib.lua's queue_keys (as embedded in every script). */
static const char *
lua_key(const char *name, char *buf, size_t len)
{
	return lua_field(script_work.source, "local function queue_keys(base)",
	    "\nend", name, buf, len);
}

static void
test_keys_match_lib_lua(void)
{
	struct keys k = {0};
	const char *argv[KEYS_SCRIPT];
	const struct { const char *name, *c; } by_name[] = {
		{"wait", k.wait}, {"delayed", k.delayed}, {"active", k.active},
		{"stats", k.stats}, {"log", k.log}, {"seq", k.seq},
		{"wake", k.wake}, {"done", k.done}, {"workers", k.workers},
	};
	const struct { const char *name, *c; } derived[] = {
		{"job", k.job}, {"events", k.events}, {"worker", k.worker},
		{"ledger", k.ledger}, {"unarchived", k.unarchived},
		{"failed", k.failed}, {"paused", k.paused},
		{"blocked", k.blocked}, {"deps", k.deps}, {"children", k.children},
		{"limits", k.limits}, {"rate", k.rate},
		{"throttled", k.throttled},
	};
	char lua[128], want[128];
	int bad = 0;

	keys_init(&k, "aq", "q");
	check(keys_script_argv(&k, argv) == KEYS_SCRIPT &&
	    sizeof by_name / sizeof by_name[0] == KEYS_SCRIPT,
	    "keys_script_argv gives KEYS_SCRIPT keys, lib.lua names as many");
	/* KEYS[i] in lib.lua is the key keys_script_argv puts at i - 1 */
	for (int i = 0; i < KEYS_SCRIPT; i++) {
		snprintf(want, sizeof want, "KEYS[%d]", i + 1);
		lua_key(by_name[i].name, lua, sizeof lua);
		if (strcmp(lua, want) != 0 || strcmp(argv[i], by_name[i].c) != 0) {
			bad++;
			printf("#   %s: lib.lua has %s, C puts %s at %d\n",
			    by_name[i].name, lua, argv[i], i + 1);
		}
	}
	check(bad == 0, "lib.lua's queue_keys takes KEYS in keys_script_argv's order");
	/* the keys lib.lua derives from the base are the ones keys_init builds */
	bad = 0;
	for (size_t i = 0; i < sizeof derived / sizeof derived[0]; i++) {
		lua_key(derived[i].name, lua, sizeof lua);
		snprintf(want, sizeof want, "base..'%s'", derived[i].c + strlen(k.base));
		if (strcmp(lua, want) != 0) {
			bad++;
			printf("#   %s: lib.lua has %s, C has %s\n", derived[i].name,
			    lua, derived[i].c);
		}
	}
	check(bad == 0, "lib.lua's job, events, worker, ledger, unarchived, failed, "
	    "paused, blocked, deps, children, limits, rate and throttled keys are keys_init's");
}

/* lua_const: N of "local NAME = N" in the Lua source src; -1 when none. */
static long
lua_const(const char *src, const char *name)
{
	char pat[64];
	const char *at;

	snprintf(pat, sizeof pat, "\nlocal %s = ", name);
	if (!(at = strstr(src, pat)))
		return -1;
	return strtol(at + strlen(pat), NULL, 10);
}

static void
test_counts_match_scripts(void)
{
	const struct {
		const struct script *s;
		const char *name;
		long c;
	} counts[] = {
		{&script_work, "REPORT_FIELDS", REPORT_FIELDS},
		{&script_work, "CLAIM_FIELDS", CLAIM_FIELDS},
		{&script_work, "WORK_REPLY_VALUES", WORK_REPLY_VALUES},
		{&script_event, "EVENT_FIXED_ARGS", EVENT_FIXED_ARGS},
		{&script_event, "EVENT_LINE_FIELDS", EVENT_LINE_FIELDS},
		{&script_renew, "RENEW_FIXED_ARGS", RENEW_FIXED_ARGS},
		{&script_restore, "RESTORE_FIELDS", RESTORE_FIELDS},
		{&script_health, "HEALTH_FIGURES", HEALTH_FIGURES},
		{&script_queue, "QUEUE_FIGURES", QUEUE_FIGURES},
	};

	for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
		long lua = lua_const(counts[i].s->source, counts[i].name);
		if (!check(lua == counts[i].c, "%s.lua's %s is script.h's",
		    counts[i].s->name, counts[i].name))
			printf("#   %s.lua has %ld, script.h %ld\n", counts[i].s->name,
			    lua, counts[i].c);
	}
}

/* The keys C gives a script (argv[0..n)) are those its table K (from the
 * text "local K = {") names KEYS[1..n], by name. */
static void
check_script_keys(const struct script *s, const char *const *argv, int n,
    const char *const *names, const char *const *want, int nwant)
{
	char lua[128], index[32];
	int bad = n != nwant;

	for (int i = 0; i < nwant && !bad; i++) {
		snprintf(index, sizeof index, "KEYS[%d]", i + 1);
		lua_field(s->source, "local K = {", "}", names[i], lua, sizeof lua);
		if (strcmp(lua, index) != 0 || strcmp(argv[i], want[i]) != 0) {
			bad++;
			printf("#   %s: %s.lua has %s, C puts %s at %d\n", names[i],
			    s->name, lua, argv[i], i + 1);
		}
	}
	check(bad == 0, "%s.lua takes its %d KEYS in the order C gives them",
	    s->name, nwant);
}

static void
test_script_keys_match(void)
{
	struct keys k = {0};
	const char *argv[KEYS_RENEW + 1];
	char job[KEY_MAX + ID_MAX], events[KEY_MAX + ID_MAX], lua[128], want[32];
	int n;

	keys_init(&k, "aq", "q");
	const char *enqueue_names[] = {"wait", "delayed", "stats", "log", "seq", "wake"};
	const char *enqueue_keys[] = {k.wait, k.delayed, k.stats, k.log, k.seq, k.wake};
	n = keys_enqueue_argv(&k, argv);
	check_script_keys(&script_enqueue, argv, n, enqueue_names, enqueue_keys,
	    KEYS_ENQUEUE);

	const char *event_names[] = {"job", "events"};
	const char *event_keys[] = {"aq:{q}:job:j1", "aq:{q}:events:j1"};
	n = keys_event_argv(&k, "j1", job, events, argv);
	check_script_keys(&script_event, argv, n, event_names, event_keys, KEYS_EVENT);

	/* renew.lua: the queue keys, then worker_hash = KEYS[KEYS_RENEW] */
	snprintf(want, sizeof want, "KEYS[%d]", KEYS_RENEW);
	lua_field(script_renew.source, "\nlocal worker_hash", "\n", "worker_hash",
	    lua, sizeof lua);
	check(keys_renew_argv(&k, "aq:{q}:worker:w1", argv) == KEYS_RENEW &&
	    strcmp(argv[KEYS_RENEW - 1], "aq:{q}:worker:w1") == 0 &&
	    strcmp(argv[0], k.wait) == 0 && strcmp(lua, want) == 0,
	    "renew.lua's worker hash is KEYS[KEYS_RENEW], where keys_renew_argv puts it");
	if (strcmp(lua, want) != 0)
		printf("#   renew.lua has worker_hash = %s, C puts it at %s\n", lua, want);
}

/* ---- script.h: the builder of script calls ---- */

static void
test_script_args_words(void)
{
	static struct script s = {"t", "", "0123456789012345678901234567890123456789"};
	struct script_args a = {0};
	static const char *want[] = {"EVALSHA", s.sha, "2", "k1", "k2", "a", "-42",
	    "b\0c", "x"};
	size_t want_len[] = {7, 40, 1, 2, 2, 1, 3, 3, 1};
	int argc, bad = 0;

	script_args_begin(&a, &s);
	script_args_key(&a, "k1");
	script_args_key(&a, "k2");
	script_args_arg(&a, "a");
	script_args_argll(&a, -42);
	script_args_argcopy(&a, "b\0c", 3);
	script_args_argn(&a, "xyz", 1);
	check(script_args_nargs(&a) == 4, "script_args_nargs counts the ARGV");
	argc = script_args_seal(&a);
	check(argc == 9, "script_args_seal gives EVALSHA, sha, numkeys, keys, args");
	for (int i = 0; i < argc && i < 9; i++)
		if (a.lens[i] != want_len[i] || memcmp(a.argv[i], want[i], want_len[i]) != 0) {
			bad++;
			diag_mem("got", a.argv[i], a.lens[i]);
			diag_mem("want", want[i], want_len[i]);
		}
	check(bad == 0, "script_args: the words and their lengths, numkeys counted");
	script_args_free(&a);
}

static void
test_script_args_reuse(void)
{
	static struct script s = {"t", "", ""};
	struct script_args a = {0};
	const char **argv;
	char *store;
	int bad = 0;

	/* more stored words than the first allocations hold: they move */
	script_args_begin(&a, &s);
	script_args_key(&a, "k");
	for (long long i = 0; i < 1000; i++)
		script_args_argll(&a, i * 1000003);
	script_args_seal(&a);
	for (int i = 0; i < 1000; i++) {
		char text[32];
		snprintf(text, sizeof text, "%lld", (long long)i * 1000003);
		if (a.lens[4 + i] != strlen(text) || memcmp(a.argv[4 + i], text,
		    a.lens[4 + i]) != 0)
			bad++;
	}
	check(bad == 0, "script_args: numbers stay right as the store grows");
	argv = a.argv;
	store = a.store;
	script_args_begin(&a, &s);
	for (long long i = 0; i < 1000; i++)
		script_args_argll(&a, i);
	check(script_args_seal(&a) == 1003 && a.numkeys == 0 && a.argv == argv &&
	    a.store == store, "script_args_begin keeps the memory: a call as "
	    "large again allocates nothing");
	script_args_free(&a);
	check(a.argv == NULL && a.store == NULL && a.cap == 0,
	    "script_args_free leaves an empty builder");
}

/* ---- mem.h: arrays of strings; redis.h: the retry backoff ---- */

static void
test_xgrow(void)
{
	size_t cap = 0;
	int *v = NULL, *before;

	v = xgrow(v, &cap, 1, 16, sizeof *v);
	check(v && cap == 16, "xgrow: first room for 16");
	before = v;
	v = xgrow(v, &cap, 16, 16, sizeof *v);
	check(v == before && cap == 16, "xgrow: room enough, nothing moves");
	v = xgrow(v, &cap, 100, 16, sizeof *v);
	v[99] = 1;
	check(cap == 128, "xgrow: doubled until 100 items fit");
	free(v);
}

static void
test_strv_sort_unique(void)
{
	const char *in[] = {"b", "a", "c", "a", "b", "a"};
	char *v[6];
	size_t n;

	for (size_t i = 0; i < 6; i++)
		v[i] = xstrdup(in[i]);
	n = strv_sort_unique(v, 6);
	check(n == 3 && strcmp(v[0], "a") == 0 && strcmp(v[1], "b") == 0 &&
	    strcmp(v[2], "c") == 0, "strv_sort_unique sorts and keeps one of each");
	for (size_t i = 0; i < n; i++)
		free(v[i]); /* the repeats are freed already: ASan tells */
	v[0] = xstrdup("x");
	check(strv_sort_unique(v, 1) == 1 && strcmp(v[0], "x") == 0 &&
	    strv_sort_unique(v, 0) == 0, "strv_sort_unique: one string, none");
	free(v[0]);
}

static void
test_redis_retry_backoff(void)
{
	int ms = REDIS_RETRY_MIN_MS, steps = 0;

	while (ms < REDIS_RETRY_MAX_MS && steps++ < 100)
		ms = redis_retry_next(ms);
	check(REDIS_RETRY_MIN_MS == 100 && ms == REDIS_RETRY_MAX_MS &&
	    redis_retry_next(ms) == REDIS_RETRY_MAX_MS && steps == 6,
	    "the retry backoff doubles from 100 ms and stays at 5 s");
}

static void
test_keys_of_ids(void)
{
	struct keys k = {0};
	char buf[KEY_MAX + ID_MAX];

	keys_init(&k, "aq", "q");
	check_str(keys_job(&k, "j1", buf, sizeof buf), "aq:{q}:job:j1", "keys_job");
	check_str(keys_events(&k, "j1", buf, sizeof buf), "aq:{q}:events:j1", "keys_events");
	check_str(keys_worker(&k, "h:1", buf, sizeof buf), "aq:{q}:worker:h:1", "keys_worker");
	check_str(keys_channel("aq", "news", buf, sizeof buf), "aq:chan:news", "keys_channel");
	check(strlen("aq:chan:news") == strlen("aq") + KEYS_CHANNEL_EXTRA + strlen("news"),
	    "KEYS_CHANNEL_EXTRA is what keys_channel adds");
	check(strcmp(LOG_CAP, "100000") == 0 && strcmp(EVENTS_CAP, "10000") == 0 &&
	    LOG_CAP_COUNT == 100000 && EVENTS_CAP_COUNT == 10000,
	    "the caps as numbers and as strings agree");
}

static void
test_keys_longest_not_truncated(void)
{
	char *prefix = repeat('p', PREFIX_MAX), *queue = repeat('q', QUEUE_MAX);
	static const char *suffix[] = {
		"job:", "wait", "delayed", "active", "wake", "log", "stats", "seq",
	};
	struct keys k = {0};
	const char *got[8];
	char want[512];
	int bad = 0;

	check(prefix_valid(prefix) && queue_valid(queue),
	    "the 64-byte prefix and 100-byte queue are valid");
	keys_init(&k, prefix, queue);
	got[0] = k.job, got[1] = k.wait, got[2] = k.delayed, got[3] = k.active;
	got[4] = k.wake, got[5] = k.log, got[6] = k.stats, got[7] = k.seq;
	for (int i = 0; i < 8; i++) {
		snprintf(want, sizeof want, "%s:{%s}:%s", prefix, queue, suffix[i]);
		if (strcmp(got[i], want) != 0) {
			bad++;
			printf("#   %s key truncated to %zu bytes\n", suffix[i], strlen(got[i]));
		}
	}
	check(bad == 0, "keys_init with the longest prefix and queue truncates no key");
	snprintf(want, sizeof want, "%s:{%s}:", prefix, queue);
	check_str(k.base, want, "keys_init with the longest names: base whole");
	snprintf(want, sizeof want, "%s:queues", prefix);
	check_str(k.queues, want, "keys_init with the longest prefix: queues whole");
	free(prefix);
	free(queue);
}

/* ---- job.h ---- */

/* A hand-built HGETALL reply: an array of field, value strings. */
static redisReply *
hash_reply(const char *const *kv, size_t n)
{
	redisReply *r = calloc(1, sizeof *r);

	if (!r || !(r->element = calloc(n ? n : 1, sizeof *r->element)))
		exit(2);
	r->type = REDIS_REPLY_ARRAY;
	r->elements = n;
	for (size_t i = 0; i < n; i++) {
		redisReply *e = calloc(1, sizeof *e);
		if (!e || !(e->str = strdup(kv[i])))
			exit(2);
		e->type = REDIS_REPLY_STRING;
		e->len = strlen(kv[i]);
		r->element[i] = e;
	}
	return r;
}

static void
hash_free(redisReply *r)
{
	for (size_t i = 0; i < r->elements; i++) {
		free(r->element[i]->str);
		free(r->element[i]);
	}
	free(r->element);
	free(r);
}

static void
record_is(const char *const *kv, size_t n, const char *want, const char *what)
{
	redisReply *h = hash_reply(kv, n);
	struct jbuf b = {0};
	json_t *v;

	job_write_record(&b, "J1", "q", h);
	check_mem(b.p, b.len, want, strlen(want), "job_write_record %s", what);
	v = json_loads(b.p ? b.p : "", 0, NULL);
	check(v != NULL, "job_write_record %s: the record parses as JSON", what);
	json_decref(v);
	jb_free(&b);
	hash_free(h);
}

static void
test_job_record_order_and_forms(void)
{
	/* every field, in the reverse of the printed order, plus unknown ones */
	static const char *const kv[] = {
		"error", "boom \"x\"",
		"result", "[true]",
		"payload", "{\"x\": 1}",
		"exit_code", "2",
		"worker", "host:42",
		"bogus", "zzz",
		"timeout_ms", "30000",
		"finished", "1795000002000",
		"started", "1795000001000",
		"run_at", "1795000000500",
		"created", "1795000000123",
		"priority", "-5",
		"max_attempts", "3",
		"attempt", "1",
		"status", "failed",
		"id", "forged",
	};

	record_is(kv, sizeof kv / sizeof kv[0],
	    "{\"id\":\"J1\",\"queue\":\"q\",\"status\":\"failed\",\"attempt\":1,"
	    "\"max_attempts\":3,\"priority\":-5,\"created\":1795000000.123,"
	    "\"run_at\":1795000000.500,\"started\":1795000001.000,"
	    "\"finished\":1795000002.000,\"timeout\":30.000,\"worker\":\"host:42\","
	    "\"exit_code\":2,\"payload\":{\"x\": 1},\"result\":[true],"
	    "\"error\":\"boom \\\"x\\\"\"}",
	    "of every field: fixed order, times in seconds, payload raw, unknown ignored");
}

static void
test_job_record_minimal(void)
{
	static const char *const kv[] = {
		"status", "queued", "created", "5", "payload", "{\"a\":[1,2]}",
	};

	record_is(kv, sizeof kv / sizeof kv[0],
	    "{\"id\":\"J1\",\"queue\":\"q\",\"status\":\"queued\",\"attempt\":0,"
	    "\"priority\":0,\"created\":0.005,\"payload\":{\"a\":[1,2]}}",
	    "of a new job: the fields set, attempt and priority defaulting to 0");
}

static void
test_job_record_after(void)
{
	static const char *const kv[] = {
		"status", "blocked", "created", "5", "payload", "1",
		"after", "a.1 b/2 c",
	};
	static const char *const pending_kv[] = {"c", "a.1", "stale"};
	redisReply *h = hash_reply(kv, sizeof kv / sizeof kv[0]);
	redisReply *pending = hash_reply(pending_kv, 3);
	const char *want = "{\"id\":\"J1\",\"queue\":\"q\",\"status\":\"blocked\","
	    "\"attempt\":0,\"priority\":0,\"created\":0.005,\"payload\":1,"
	    "\"after\":[\"a.1\",\"b/2\",\"c\"]";
	struct jbuf b = {0};
	char full[512];

	snprintf(full, sizeof full, "%s}", want);
	record_is(kv, sizeof kv / sizeof kv[0], full,
	    "of a child: its parents (--after) as an array of ids");
	job_write_blocked(&b, "J1", "q", h, pending);
	snprintf(full, sizeof full, "%s,\"waiting_for\":[\"a.1\",\"c\"]}", want);
	check_mem(b.p, b.len, full, strlen(full), "job_write_blocked: waiting_for "
	    "lists the pending parents in the order of after, nothing else");
	jb_free(&b);
	hash_free(h);
	hash_free(pending);
}

static void
test_job_record_bad_values(void)
{
	static const char *const kv[] = {
		"status", "queued", "payload", "not json {", "priority", "high",
		"created", "soon", "result", "",
	};

	record_is(kv, sizeof kv / sizeof kv[0],
	    "{\"id\":\"J1\",\"queue\":\"q\",\"status\":\"queued\",\"attempt\":0,"
	    "\"priority\":\"high\","
	    "\"created\":\"soon\",\"payload\":\"not json {\",\"result\":\"\"}",
	    "with bad stored values: shown as JSON strings");
}

/* Any client can write the hash: a stored time of INT64_MIN reaches jb_millis. */
static void
test_job_record_created_int64_min(void)
{
	static const char *const kv[] = {
		"status", "queued", "attempt", "0", "priority", "0",
		"created", "-9223372036854775808",
	};

	record_is(kv, sizeof kv / sizeof kv[0],
	    "{\"id\":\"J1\",\"queue\":\"q\",\"status\":\"queued\",\"attempt\":0,"
	    "\"priority\":0,\"created\":-9223372036854775.808}",
	    "with created -9223372036854775808 (INT64_MIN)");
}

static void
test_job_write_unknown(void)
{
	struct jbuf b = {0};
	const char *want = "{\"id\":\"J9\",\"queue\":\"mail\",\"status\":\"unknown\"}";

	job_write_unknown(&b, "J9", "mail");
	check_mem(b.p, b.len, want, strlen(want), "job_write_unknown: id, queue, status unknown");
	jb_free(&b);
}

static void
test_job_options_init(void)
{
	struct job_options o;

	memset(&o, 0x55, sizeof o);
	job_options_init(&o);
	check(o.priority == 0 && o.max_attempts == MAX_ATTEMPTS_DEFAULT &&
	    o.delay_ms == -1 && o.run_at_ms == -1 && o.timeout_ms == -1,
	    "job_options_init: priority 0, 3 attempts, no delay, run_at or timeout");
}

int
main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	log_init("unit");

	test_url_host_only_gets_defaults();
	test_url_host_port();
	test_url_host_port_db();
	test_url_colon_password();
	test_url_user_password_port_db();
	test_url_bare_userinfo_is_password();
	test_url_percent_escapes();
	test_url_ipv6();
	test_url_unix();
	test_url_unix_path_limit();
	test_url_sentinel();
	test_url_cluster();
	test_cluster_key_slot();
	test_url_addr_equal();
	test_url_rejections();
	test_url_errors_hide_password();
	test_url_display();
	test_url_display_never_shows_password();
	test_url_display_truncates();
	test_url_forget();

	test_id_valid();
	test_queue_valid();
	test_prefix_valid();
	test_uuidv7_format();
	test_uuidv7_increasing();

	test_duration_accepts();
	test_flow_parse_rate();
	test_flow_json();
	test_duration_rejects();
	test_time_accepts();
	test_time_rejects();
	test_time_leap_second();

	test_jsonl_plain_lines();
	test_jsonl_crlf();
	test_jsonl_missing_final_newline();
	test_jsonl_blank_lines_counted();
	test_jsonl_too_long_skipped();
	test_jsonl_much_too_long_skipped();
	test_jsonl_exact_max();
	test_jsonl_huge_line();
	test_jsonl_grows_to_max();
	test_jsonl_embedded_nul();
	test_jsonl_callback_stops();
	test_jsonl_read_error();
	test_jsonl_idle();
	test_jsonl_parse_max();

	test_json_check_accepts();
	test_json_check_rejects();
	test_jb_str_escapes();
	test_jb_str_utf8();
	test_jb_numbers();
	test_jb_object_text();
	test_jb_object_parses_back();
	test_jb_invalid_utf8_output_is_valid();
	test_jb_nesting_and_reset();
	test_jb_grows();
	test_jb_json_or_str();
	test_xgrow();
	test_strv_sort_unique();
	test_redis_retry_backoff();

	test_keys_short();
	test_keys_longest_not_truncated();
	test_keys_match_lib_lua();
	test_counts_match_scripts();
	test_script_keys_match();
	test_script_args_words();
	test_script_args_reuse();
	test_keys_of_ids();
	test_job_record_order_and_forms();
	test_job_record_minimal();
	test_job_record_after();
	test_job_record_bad_values();
	test_job_write_unknown();
	test_job_options_init();

	/* last: the negation of INT64_MIN in jb_millis aborts under UBSan */
	test_jb_millis_int64_min();
	test_job_record_created_int64_min();

	printf("1..%d\n", tests_run);
	return tests_failed ? 1 : 0;
}
