/* pool.c: a connection per node of a cluster (or one), made when needed. */
#include "pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keys.h"
#include "log.h"
#include "mem.h"
#include "redis.h"

void
redis_pool_init(struct redis_pool *p, const struct redis_url *u)
{
	memset(p, 0, sizeof *p);
	p->url = u;
}

int
redis_pool_map(struct redis_pool *p, char *err, size_t errlen)
{
	if (p->url->kind != URL_CLUSTER || p->mapped)
		return 0;
	err[0] = '\0';
	if (cluster_map_read(p->url, &p->map, err, errlen) < 0)
		return -1;
	p->mapped = 1;
	return 0;
}

/* Where key's connection goes: the node serving its slot, from the map
 * (read at the first call); with another URL, anywhere (at.port 0). */
static int
node_for(struct redis_pool *p, const char *key, struct url_addr *at,
    char *err, size_t errlen)
{
	const struct url_addr *a;
	unsigned slot;

	memset(at, 0, sizeof *at);
	if (p->url->kind != URL_CLUSTER)
		return 0;
	if (redis_pool_map(p, err, errlen) < 0)
		return -1;
	slot = cluster_key_slot(key, strlen(key));
	if (!(a = cluster_map_node(&p->map, slot))) {
		snprintf(err, errlen, "no node of the cluster serves slot %u (of "
		    "%s): is the cluster down, or still being set up?", slot, key);
		return -1;
	}
	*at = *a;
	return 0;
}

static struct pool_conn *
find_conn(struct redis_pool *p, const struct url_addr *at)
{
	for (size_t i = 0; i < p->n; i++)
		if (url_addr_equal(&p->conns[i].at, at))
			return &p->conns[i];
	return NULL;
}

redisContext *
redis_pool_try_for(struct redis_pool *p, const char *key, char *err,
    size_t errlen, int *code)
{
	struct url_addr at;
	struct pool_conn *c;
	redisContext *made;

	*code = EX_UNAVAILABLE;
	if (node_for(p, key, &at, err, errlen) < 0)
		return NULL;
	if ((c = find_conn(p, &at)))
		return c->c;
	if (p->url->kind == URL_CLUSTER)
		made = redis_try_connect_at(p->url, &at, err, errlen, code);
	else
		made = redis_try_connect(p->url, err, errlen, code);
	if (!made)
		return NULL;
	p->conns = xrealloc(p->conns, (p->n + 1) * sizeof *p->conns);
	c = &p->conns[p->n++];
	c->at = at;
	c->c = made;
	return made;
}

redisContext *
redis_pool_for(struct redis_pool *p, const char *key)
{
	char err[REDIS_ERR_MAX], shown[1024];
	int code;
	redisContext *c = redis_pool_try_for(p, key, err, sizeof err, &code);

	if (!c)
		die(code, "cannot connect to redis at %s: %s",
		    url_display(p->url, shown, sizeof shown), err);
	return c;
}

redisContext *
redis_pool_for_queue(struct redis_pool *p, const char *prefix, const char *queue)
{
	struct keys k;

	keys_init(&k, prefix, queue);
	return redis_pool_for(p, k.base);
}

void
redis_pool_drop(struct redis_pool *p, redisContext *c)
{
	for (size_t i = 0; i < p->n; i++)
		if (p->conns[i].c == c) {
			redisFree(c);
			p->conns[i] = p->conns[--p->n];
			break;
		}
	redis_pool_remap(p);
}

void
redis_pool_remap(struct redis_pool *p)
{
	cluster_map_free(&p->map);
	p->mapped = 0;
}

void
redis_pool_close(struct redis_pool *p)
{
	for (size_t i = 0; i < p->n; i++)
		redisFree(p->conns[i].c);
	free(p->conns);
	cluster_map_free(&p->map);
	memset(p, 0, sizeof *p);
}
