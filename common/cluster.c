/* cluster.c: hash slots, and the slot map a Redis Cluster node gives. */
#include "cluster.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "redis.h"
#include "route.h"

/* CRC16/XMODEM: polynomial 0x1021, initial value 0, as in Redis. */
static unsigned
crc16(const char *s, size_t n)
{
	unsigned crc = 0;

	for (size_t i = 0; i < n; i++) {
		crc ^= (unsigned)(unsigned char)s[i] << 8;
		for (int b = 0; b < 8; b++)
			crc = crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1;
		crc &= 0xffff;
	}
	return crc;
}

unsigned
cluster_key_slot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len);

	if (open) {
		size_t rest = len - (size_t)(open - key) - 1;
		const char *close = memchr(open + 1, '}', rest);
		if (close && close > open + 1)
			return crc16(open + 1, (size_t)(close - open - 1)) % CLUSTER_SLOTS;
	}
	return crc16(key, len) % CLUSTER_SLOTS;
}

/* One [lo, hi, [host, port, ...], replicas...] entry of CLUSTER SLOTS into
 * r; asked: the node that answered, for an empty host. -1 when malformed. */
static int
take_range(const redisReply *e, const struct url_addr *asked,
    struct cluster_range *r)
{
	const redisReply *node;

	if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
	    e->element[0]->type != REDIS_REPLY_INTEGER ||
	    e->element[1]->type != REDIS_REPLY_INTEGER ||
	    e->element[2]->type != REDIS_REPLY_ARRAY ||
	    e->element[2]->elements < 2)
		return -1;
	node = e->element[2];
	if (e->element[0]->integer < 0 || e->element[1]->integer >= CLUSTER_SLOTS ||
	    e->element[0]->integer > e->element[1]->integer ||
	    node->element[0]->type != REDIS_REPLY_STRING ||
	    node->element[1]->type != REDIS_REPLY_INTEGER ||
	    node->element[1]->integer < 1 || node->element[1]->integer > 65535 ||
	    node->element[0]->len >= sizeof r->primary.host)
		return -1;
	r->lo = (unsigned)e->element[0]->integer;
	r->hi = (unsigned)e->element[1]->integer;
	if (node->element[0]->len == 0 || strcmp(node->element[0]->str, "?") == 0)
		memcpy(r->primary.host, asked->host, sizeof r->primary.host);
	else
		memcpy(r->primary.host, node->element[0]->str, node->element[0]->len + 1);
	r->primary.port = (int)node->element[1]->integer;
	return 0;
}

/* The map in reply (from the node asked) into m; -1 when malformed. */
static int
take_map(const redisReply *reply, const struct url_addr *asked,
    struct cluster_map *m)
{
	if (reply->type != REDIS_REPLY_ARRAY)
		return -1;
	m->ranges = xcalloc(reply->elements ? reply->elements : 1, sizeof *m->ranges);
	m->n = 0;
	for (size_t i = 0; i < reply->elements; i++) {
		if (take_range(reply->element[i], asked, &m->ranges[m->n]) < 0) {
			cluster_map_free(m);
			return -1;
		}
		m->n++;
	}
	return 0;
}

/* Ask the node a of u for the map (ctx): 0, or -1 with why. */
static int
ask_node(const struct redis_url *u, const struct url_addr *a, void *ctx,
    char *why, size_t whylen)
{
	struct cluster_map *m = ctx;
	struct redis_url node = *u;
	redisContext *c;
	redisReply *r;
	int code, rc = -1;

	node.kind = URL_SERVER;
	node.nnodes = 0;
	snprintf(node.host, sizeof node.host, "%s", a->host);
	node.port = a->port;
	c = redis_try_connect(&node, why, whylen, &code);
	url_forget(&node);
	if (!c)
		return -1;
	r = redisCommand(c, "CLUSTER SLOTS");
	if (!r)
		snprintf(why, whylen, "%s", c->errstr);
	else if (r->type == REDIS_REPLY_ERROR)
		snprintf(why, whylen, "%s (is it a cluster node?)", r->str);
	else if (take_map(r, a, m) < 0)
		snprintf(why, whylen, "unexpected reply to CLUSTER SLOTS");
	else
		rc = 0;
	freeReplyObject(r);
	redisFree(c);
	return rc;
}

int
cluster_map_read(const struct redis_url *u, struct cluster_map *m, char *err,
    size_t errlen)
{
	size_t off;

	memset(m, 0, sizeof *m);
	snprintf(err, errlen, "no node gave the slot map (");
	if (route_ask_nodes(u, ask_node, m, err, errlen) == 0)
		return 0;
	off = strlen(err);
	if (off < errlen)
		snprintf(err + off, errlen - off, ")");
	return -1;
}

const struct url_addr *
cluster_map_node(const struct cluster_map *m, unsigned slot)
{
	for (size_t i = 0; i < m->n; i++)
		if (slot >= m->ranges[i].lo && slot <= m->ranges[i].hi)
			return &m->ranges[i].primary;
	return NULL;
}

void
cluster_map_free(struct cluster_map *m)
{
	free(m->ranges);
	m->ranges = NULL;
	m->n = 0;
}
