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

/* The node serving key's slot, from the map (read at the first call). */
static struct url_addr
node_for(struct redis_pool *p, const char *key)
{
	char err[REDIS_ERR_MAX], shown[1024];
	const struct url_addr *a;
	unsigned slot = cluster_key_slot(key, strlen(key));

	if (!p->mapped) {
		if (cluster_map_read(p->url, &p->map, err, sizeof err) < 0)
			die(EX_UNAVAILABLE, "cannot connect to redis at %s: %s",
			    url_display(p->url, shown, sizeof shown), err);
		p->mapped = 1;
	}
	if (!(a = cluster_map_node(&p->map, slot)))
		die(EX_UNAVAILABLE, "redis at %s: no node of the cluster serves "
		    "slot %u (of %s): is the cluster down, or still being set up?",
		    url_display(p->url, shown, sizeof shown), slot, key);
	return *a;
}

redisContext *
redis_pool_for(struct redis_pool *p, const char *key)
{
	struct url_addr at = {.port = 0};
	struct redis_url node;
	struct pool_conn *c;

	if (p->url->kind == URL_CLUSTER)
		at = node_for(p, key);
	for (size_t i = 0; i < p->n; i++)
		if (p->url->kind != URL_CLUSTER || (p->conns[i].at.port == at.port &&
		    strcmp(p->conns[i].at.host, at.host) == 0))
			return p->conns[i].c;
	p->conns = xrealloc(p->conns, (p->n + 1) * sizeof *p->conns);
	c = &p->conns[p->n++];
	c->at = at;
	if (p->url->kind != URL_CLUSTER) {
		c->c = redis_connect(p->url);
		return c->c;
	}
	node = *p->url; /* the node itself, with the URL's user and password */
	node.kind = URL_SERVER;
	node.nnodes = 0;
	memcpy(node.host, at.host, sizeof node.host);
	node.port = at.port;
	c->c = redis_connect(&node);
	url_forget(&node);
	return c->c;
}

redisContext *
redis_pool_for_queue(struct redis_pool *p, const char *prefix, const char *queue)
{
	struct keys k;

	keys_init(&k, prefix, queue);
	return redis_pool_for(p, k.base);
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
