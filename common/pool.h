/* pool.h: the Redis connections of a tool that works on several queues:
 * one, or with a cluster URL one per primary, found by the slot of a key. */
#ifndef AQ_POOL_H
#define AQ_POOL_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#include "cluster.h"
#include "url.h"

struct pool_conn {
	struct url_addr at;
	redisContext *c;
};

struct redis_pool {
	const struct redis_url *url;
	struct pool_conn *conns;
	size_t n;
	struct cluster_map map;      /* with a cluster URL, read at first use */
	int mapped;
};

void redis_pool_init(struct redis_pool *p, const struct redis_url *u);

/* redis_pool_map: with a cluster URL, read the slot map unless it is
 * known; 0, or -1 with what each node answered in err. */
int redis_pool_map(struct redis_pool *p, char *err, size_t errlen);

/* redis_pool_try_for: the connection for key (a key of a queue, or
 * PREFIX:queues), made at first use; NULL when it cannot be, with the
 * reason in err and the exit status (as redis_try_connect) in *code. */
redisContext *redis_pool_try_for(struct redis_pool *p, const char *key,
    char *err, size_t errlen, int *code);

/* redis_pool_for: the connection for key (a key of a queue, or
 * PREFIX:queues), made at first use; exits like redis_connect when it
 * cannot be made. */
redisContext *redis_pool_for(struct redis_pool *p, const char *key);

/* redis_pool_for_queue: redis_pool_for a key of queue (of prefix). */
redisContext *redis_pool_for_queue(struct redis_pool *p, const char *prefix,
    const char *queue);

/* redis_pool_drop: close c, a connection of the pool that failed, and
 * forget the map: the next use reads it again and connects anew. */
void redis_pool_drop(struct redis_pool *p, redisContext *c);

/* redis_pool_remap: forget the map (a slot may have moved); the
 * connections stay. */
void redis_pool_remap(struct redis_pool *p);

/* redis_pool_close: close every connection and forget the map. */
void redis_pool_close(struct redis_pool *p);

#endif
