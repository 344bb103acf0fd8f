/* sentinel.c: ask Redis Sentinel for the address of a primary, and check
 * that the server it names is one. */
#include "sentinel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "route.h"

static struct timeval
sentinel_timeout(void)
{
	struct timeval tv = {SENTINEL_TIMEOUT_MS / 1000,
	    (SENTINEL_TIMEOUT_MS % 1000) * 1000};

	return tv;
}

/* The [host, port] reply of get-master-addr-by-name into a; -1 when it is
 * not one. */
static int
take_address(const redisReply *r, struct url_addr *a)
{
	const redisReply *host, *port;
	char *end;
	long p;

	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2)
		return -1;
	host = r->element[0];
	port = r->element[1];
	if (host->type != REDIS_REPLY_STRING || port->type != REDIS_REPLY_STRING ||
	    host->len == 0 || host->len >= sizeof a->host)
		return -1;
	p = strtol(port->str, &end, 10);
	if (*end || p < 1 || p > 65535)
		return -1;
	memcpy(a->host, host->str, host->len + 1);
	a->port = (int)p;
	return 0;
}

/* Ask the sentinel s of u where its primary is: 0 with *a (ctx), or -1
 * with why. */
static int
ask_sentinel(const struct redis_url *u, const struct url_addr *s, void *ctx,
    char *why, size_t whylen)
{
	const char *master = u->master;
	struct url_addr *a = ctx;
	redisContext *c = redisConnectWithTimeout(s->host, s->port,
	    sentinel_timeout());
	redisReply *r;
	int rc = -1;

	if (!c) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	if (c->err) {
		snprintf(why, whylen, "%s", c->errstr);
		redisFree(c);
		return -1;
	}
	redisSetTimeout(c, sentinel_timeout());
	r = redisCommand(c, "SENTINEL get-master-addr-by-name %s", master);
	if (!r)
		snprintf(why, whylen, "%s", c->errstr);
	else if (r->type == REDIS_REPLY_ERROR)
		snprintf(why, whylen, "%.*s (is it a sentinel?)",
		    (int)strcspn(r->str, "\r\n") - (r->len > 0 &&
		    r->str[r->len - 1] == ' '), r->str);
	else if (r->type == REDIS_REPLY_NIL)
		snprintf(why, whylen, "monitors no primary of that name");
	else if (take_address(r, a) < 0)
		snprintf(why, whylen, "unexpected reply to SENTINEL "
		    "get-master-addr-by-name");
	else
		rc = 0;
	freeReplyObject(r);
	redisFree(c);
	return rc;
}

int
sentinel_primary(const struct redis_url *u, struct url_addr *a, char *err,
    size_t errlen)
{
	char place[URL_SOURCE_MAX + 64];
	size_t off;

	snprintf(err, errlen, "no sentinel named the primary %s (", u->master);
	if (route_ask_nodes(u, ask_sentinel, a, err, errlen) == 0)
		return 0;
	off = strlen(err);
	if (off < errlen)
		snprintf(err + off, errlen - off, "); are they running, and is the "
		    "name the one of their 'sentinel monitor'? the URL is in %s",
		    url_source_fix(u, place, sizeof place));
	return -1;
}

int
sentinel_role_check(const redisReply *role, const struct url_addr *a,
    const char *master, char *err, size_t errlen)
{
	const redisReply *kind;

	if (role->type == REDIS_REPLY_ERROR) {
		snprintf(err, errlen, "%s:%d, which the sentinels name primary %s, "
		    "refused ROLE (%s); the URL's user needs +role", a->host,
		    a->port, master, role->str);
		return -1;
	}
	if (role->type != REDIS_REPLY_ARRAY || role->elements < 1)
		return snprintf(err, errlen, "unexpected reply to ROLE"), -1;
	kind = role->element[0];
	if (kind->type == REDIS_REPLY_STRING && strcmp(kind->str, "master") == 0)
		return 0;
	snprintf(err, errlen, "%s:%d, which the sentinels name primary %s, is a "
	    "%s: a failover is under way", a->host, a->port, master,
	    kind->type == REDIS_REPLY_STRING ? kind->str : "server of no role");
	return -1;
}

int
sentinel_lost_role(const char *error)
{
	return strncmp(error, "READONLY", 8) == 0 ||
	    strncmp(error, "UNBLOCKED", 9) == 0 ||
	    strncmp(error, "NOREPLICAS", 10) == 0;
}
