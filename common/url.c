/* url.c: parse Redis URLs (TCP, IPv6 literals, unix sockets, ACL users, db,
 * and the sentinels that name a primary). */
#include "url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
fail(char *err, size_t errlen, const char *why)
{
	snprintf(err, errlen, "%s", why);
	return -1;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode percent-escapes of s[0..n) into out (size outlen); -1 when malformed,
 * too long or when it would hold a NUL byte. */
static int
percent_decode(const char *s, size_t n, char *out, size_t outlen)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)s[i];
		if (c == '%') {
			int hi, lo;
			if (i + 2 >= n)
				return -1;
			hi = hexval(s[i + 1]);
			lo = hexval(s[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			c = hi * 16 + lo;
			i += 2;
		}
		if (c == 0 || o + 1 >= outlen)
			return -1;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return 0;
}

/* Parse a decimal in [lo, hi] from s[0..n); -1 when not one. */
static long
parse_bounded(const char *s, size_t n, long lo, long hi)
{
	long v = 0;

	if (n == 0 || n > 6)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v < lo || v > hi ? -1 : v;
}

/* userinfo is "[user][:password]"; both parts are optional. */
static int
parse_userinfo(const char *s, size_t n, struct redis_url *u, char *err,
    size_t errlen)
{
	const char *colon = memchr(s, ':', n);
	size_t ulen = colon ? (size_t)(colon - s) : n;

	if (percent_decode(s, ulen, u->user, sizeof u->user) < 0)
		return fail(err, errlen, "malformed or too long user name");
	if (colon && percent_decode(colon + 1, n - ulen - 1, u->password,
	    sizeof u->password) < 0)
		return fail(err, errlen, "malformed or too long password");
	if (!colon && ulen > 0) {
		/* "redis://secret@host" is how many clients spell a password. */
		memcpy(u->password, u->user, sizeof u->password);
		u->user[0] = '\0';
	}
	return 0;
}

/* "host[:port]" or "[v6]:port" into a; the port is left alone when none
 * is given. */
static int
parse_hostport(const char *s, size_t n, struct url_addr *a, char *err,
    size_t errlen)
{
	const char *host = s, *port = NULL;
	size_t hlen;

	if (n > 0 && s[0] == '[') {
		const char *close = memchr(s, ']', n);
		if (!close)
			return fail(err, errlen, "unclosed '[' in IPv6 address");
		host = s + 1;
		hlen = (size_t)(close - host);
		if (close + 1 < s + n) {
			if (close[1] != ':')
				return fail(err, errlen, "junk after IPv6 address");
			port = close + 2;
		}
	} else {
		const char *colon = memchr(s, ':', n);
		hlen = colon ? (size_t)(colon - s) : n;
		if (colon)
			port = colon + 1;
	}
	if (hlen == 0)
		return fail(err, errlen, "missing host");
	if (hlen >= sizeof a->host)
		return fail(err, errlen, "host name too long");
	for (size_t i = 0; i < hlen; i++)
		if (!(host[i] == '.' || host[i] == '-' || host[i] == ':' ||
		    host[i] == '_' || (host[i] >= '0' && host[i] <= '9') ||
		    (host[i] >= 'a' && host[i] <= 'z') ||
		    (host[i] >= 'A' && host[i] <= 'Z')))
			return fail(err, errlen, "invalid character in host");
	memcpy(a->host, host, hlen);
	a->host[hlen] = '\0';
	if (port) {
		long p = parse_bounded(port, (size_t)(s + n - port), 1, 65535);
		if (p < 0)
			return fail(err, errlen, "port must be a number from 1 to 65535");
		a->port = (int)p;
	}
	return 0;
}

static int
parse_db(const char *s, size_t n, struct redis_url *u, char *err, size_t errlen)
{
	long db;

	if (n == 0)
		return 0;
	db = parse_bounded(s, n, 0, 65535);
	if (db < 0)
		return fail(err, errlen, "database must be a number from 0 to 65535");
	u->db = (int)db;
	return 0;
}

/* After "scheme://": split off "userinfo@" found before the first '/'. */
static const char *
take_userinfo(const char *rest, struct redis_url *u, int *rc, char *err,
    size_t errlen)
{
	const char *slash = strchr(rest, '/');
	const char *at = strrchr(rest, '@');

	*rc = 0;
	if (slash && at && at > slash) {
		/* an '@' after the first '/' belongs to the path; look before */
		at = NULL;
		for (const char *p = rest; p < slash; p++)
			if (*p == '@')
				at = p;
	}
	if (!at)
		return rest;
	*rc = parse_userinfo(rest, (size_t)(at - rest), u, err, errlen);
	return at + 1;
}

static int
parse_unix(const char *rest, struct redis_url *u, char *err, size_t errlen)
{
	int rc;
	const char *path = take_userinfo(rest, u, &rc, err, errlen);
	const char *query;
	size_t plen;

	if (rc < 0)
		return -1;
	if (path[0] != '/')
		return fail(err, errlen, "unix socket path must be absolute (unix:///path)");
	query = strchr(path, '?');
	plen = query ? (size_t)(query - path) : strlen(path);
	if (plen >= sizeof u->path)
		return fail(err, errlen, "unix socket path too long");
	memcpy(u->path, path, plen);
	u->path[plen] = '\0';
	u->is_unix = 1;
	if (query) {
		if (strncmp(query, "?db=", 4) != 0)
			return fail(err, errlen, "the only query parameter is ?db=N");
		return parse_db(query + 4, strlen(query + 4), u, err, errlen);
	}
	return 0;
}

static int
parse_tcp(const char *rest, struct redis_url *u, char *err, size_t errlen)
{
	int rc;
	const char *hp = take_userinfo(rest, u, &rc, err, errlen);
	const char *slash;
	size_t hlen;
	struct url_addr a = {.port = 6379};

	if (rc < 0)
		return -1;
	slash = strchr(hp, '/');
	hlen = slash ? (size_t)(slash - hp) : strlen(hp);
	if (parse_hostport(hp, hlen, &a, err, errlen) < 0)
		return -1;
	memcpy(u->host, a.host, sizeof u->host);
	u->port = a.port;
	if (slash)
		return parse_db(slash + 1, strlen(slash + 1), u, err, errlen);
	return 0;
}

/* "host[:port],host[:port]...": sentinels or cluster nodes, port
 * default_port when none is given. */
static int
parse_nodes(const char *s, size_t n, int default_port, struct redis_url *u,
    char *err, size_t errlen)
{
	const char *end = s + n;

	while (s < end) {
		const char *comma = memchr(s, ',', (size_t)(end - s));
		size_t len = comma ? (size_t)(comma - s) : (size_t)(end - s);
		struct url_addr *a;

		if (u->nnodes == URL_NODES_MAX)
			return fail(err, errlen, u->kind == URL_SENTINEL ?
			    "more than 8 sentinels" : "more than 8 cluster nodes");
		a = &u->nodes[u->nnodes++];
		a->port = default_port;
		if (parse_hostport(s, len, a, err, errlen) < 0)
			return -1;
		s += len + (comma != NULL);
		if (comma && s == end)
			return fail(err, errlen, "missing host after the last ','");
	}
	return 0;
}

/* The primary's name, as the sentinels' configuration gives it. */
static int
parse_master(const char *s, size_t n, struct redis_url *u, char *err,
    size_t errlen)
{
	if (n == 0)
		return fail(err, errlen, "missing the primary's name: "
		    "redis+sentinel://host:port,.../name");
	if (n >= sizeof u->master)
		return fail(err, errlen, "primary's name too long");
	for (size_t i = 0; i < n; i++)
		if (!(s[i] == '.' || s[i] == '-' || s[i] == '_' ||
		    (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= 'A' && s[i] <= 'Z')))
			return fail(err, errlen, "invalid character in the primary's "
			    "name (A-Z a-z 0-9 . _ -)");
	memcpy(u->master, s, n);
	u->master[n] = '\0';
	return 0;
}

/* After "redis+sentinel://": [userinfo@]sentinels/name[/db]. The user and
 * password are the primary's; the sentinels are asked without them. */
static int
parse_sentinel_url(const char *rest, struct redis_url *u, char *err,
    size_t errlen)
{
	int rc;
	const char *hp = take_userinfo(rest, u, &rc, err, errlen);
	const char *slash, *name, *db;

	if (rc < 0)
		return -1;
	slash = strchr(hp, '/');
	if (!slash)
		return fail(err, errlen, "missing the primary's name: "
		    "redis+sentinel://host:port,.../name");
	u->kind = URL_SENTINEL;
	if (parse_nodes(hp, (size_t)(slash - hp), SENTINEL_DEFAULT_PORT, u, err,
	    errlen) < 0)
		return -1;
	name = slash + 1;
	db = strchr(name, '/');
	if (parse_master(name, db ? (size_t)(db - name) : strlen(name), u, err,
	    errlen) < 0)
		return -1;
	if (db)
		return parse_db(db + 1, strlen(db + 1), u, err, errlen);
	return 0;
}

/* After "redis+cluster://": [userinfo@]nodes[/]. A cluster has only
 * database 0; the user and password are the nodes'. */
static int
parse_cluster_url(const char *rest, struct redis_url *u, char *err,
    size_t errlen)
{
	int rc;
	const char *hp = take_userinfo(rest, u, &rc, err, errlen);
	size_t n = strlen(hp);

	if (rc < 0)
		return -1;
	if (n > 0 && hp[n - 1] == '/')
		n--;
	if (memchr(hp, '/', n))
		return fail(err, errlen, "a cluster has no database but 0: "
		    "redis+cluster://host:port,host:port");
	if (n == 0)
		return fail(err, errlen, "missing host");
	u->kind = URL_CLUSTER;
	return parse_nodes(hp, n, 6379, u, err, errlen);
}

int
url_parse(const char *text, struct redis_url *u, char *err, size_t errlen)
{
	memset(u, 0, sizeof *u);
	u->port = 6379;
	if (strlen(text) > 4096)
		return fail(err, errlen, "URL too long");
	for (const char *p = text; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return fail(err, errlen, "URL contains a space or control character");
	if (strncmp(text, "redis://", 8) == 0)
		return parse_tcp(text + 8, u, err, errlen);
	if (strncmp(text, "unix://", 7) == 0)
		return parse_unix(text + 7, u, err, errlen);
	if (strncmp(text, "redis+sentinel://", 17) == 0)
		return parse_sentinel_url(text + 17, u, err, errlen);
	if (strncmp(text, "redis+cluster://", 16) == 0)
		return parse_cluster_url(text + 16, u, err, errlen);
	if (strncmp(text, "rediss://", 9) == 0)
		return fail(err, errlen, "rediss:// (TLS) is not supported: "
		    "the hiredis this was built with has no TLS; run stunnel "
		    "as a TLS client and give its unix:// socket (see aq(7) TLS)");
	return fail(err, errlen, "URL must start with redis://, unix://, "
	    "redis+sentinel:// or redis+cluster://");
}

/* host:port, with brackets around an IPv6 literal. */
static void
display_addr(const char *host, int port, char *buf, size_t len)
{
	int v6 = strchr(host, ':') != NULL;

	snprintf(buf, len, "%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "", port);
}

/* redis+sentinel://AUTH@nodes/master/db, or redis+cluster://AUTH@nodes */
static void
display_nodes_url(const struct redis_url *u, const char *auth,
    const char *db, char *buf, size_t len)
{
	size_t off = (size_t)snprintf(buf, len, "redis+%s://%s",
	    u->kind == URL_SENTINEL ? "sentinel" : "cluster", auth);

	for (int i = 0; i < u->nnodes && off + 1 < len; i++) {
		if (i > 0)
			buf[off++] = ',';
		display_addr(u->nodes[i].host, u->nodes[i].port,
		    buf + off, len - off);
		off += strlen(buf + off);
	}
	if (off < len && u->kind == URL_SENTINEL)
		snprintf(buf + off, len - off, "/%s%s", u->master, db);
}

char *
url_display(const struct redis_url *u, char *buf, size_t len)
{
	char auth[URL_SECRET_MAX + 8] = "";
	char db[16] = "";

	if (u->user[0] || u->password[0])
		snprintf(auth, sizeof auth, "%s%s@", u->user,
		    u->password[0] ? ":***" : "");
	if (u->kind != URL_SERVER) {
		if (u->db)
			snprintf(db, sizeof db, "/%d", u->db);
		display_nodes_url(u, auth, db, buf, len);
	} else if (u->is_unix) {
		if (u->db)
			snprintf(db, sizeof db, "?db=%d", u->db);
		snprintf(buf, len, "unix://%s%s%s", auth, u->path, db);
	} else {
		char addr[URL_HOST_MAX + 16];
		if (u->db)
			snprintf(db, sizeof db, "/%d", u->db);
		display_addr(u->host, u->port, addr, sizeof addr);
		snprintf(buf, len, "redis://%s%s%s", auth, addr, db);
	}
	return buf;
}

char *
url_source_name(const struct redis_url *u, char *buf, size_t len)
{
	switch (u->source) {
	case URL_FROM_FLAG:
		snprintf(buf, len, "--redis-url");
		break;
	case URL_FROM_FLAG_FILE:
		snprintf(buf, len, "--redis-url-file %s", u->source_file);
		break;
	case URL_FROM_ENV:
		snprintf(buf, len, "AQ_REDIS_URL");
		break;
	case URL_FROM_ENV_FILE:
		snprintf(buf, len, "AQ_REDIS_URL_FILE %s", u->source_file);
		break;
	default:
		snprintf(buf, len, "the default");
		break;
	}
	return buf;
}

char *
url_source_fix(const struct redis_url *u, char *buf, size_t len)
{
	switch (u->source) {
	case URL_FROM_FLAG:
		snprintf(buf, len, "--redis-url");
		break;
	case URL_FROM_FLAG_FILE:
		snprintf(buf, len, "the file %s (--redis-url-file)", u->source_file);
		break;
	case URL_FROM_ENV:
		snprintf(buf, len, "AQ_REDIS_URL");
		break;
	case URL_FROM_ENV_FILE:
		snprintf(buf, len, "the file %s (AQ_REDIS_URL_FILE)", u->source_file);
		break;
	default:
		snprintf(buf, len, "AQ_REDIS_URL or --redis-url");
		break;
	}
	return buf;
}

void
url_forget(struct redis_url *u)
{
	explicit_bzero(u->password, sizeof u->password);
	explicit_bzero(u->user, sizeof u->user);
}

int
url_addr_equal(const struct url_addr *a, const struct url_addr *b)
{
	return a->port == b->port && strcmp(a->host, b->host) == 0;
}
