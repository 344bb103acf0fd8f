/* route.h: where a connection for a key goes: the URL's server, the
 * primary its sentinels name, or the cluster node serving the key's slot. */
#ifndef AQ_ROUTE_H
#define AQ_ROUTE_H

#include <stddef.h>

#include "url.h"

/* route_server: the address for key (any key of the queue, or the
 * registry PREFIX:queues; NULL: a URL that is no cluster) in *at. 0, or
 * -1 with the reason in err. Blocks while it asks sentinels or a node. */
int route_server(const struct redis_url *u, const char *key,
    struct url_addr *at, char *err, size_t errlen);

/* route_ask_fn: ask node (of u's nodes) something; 0, or -1 with why. */
typedef int route_ask_fn(const struct redis_url *u, const struct url_addr *node,
    void *ctx, char *why, size_t whylen);

/* route_ask_nodes: ask each node of u in turn until one answers (0); -1
 * when none did, with "host:port: why; ..." appended to what err holds. */
int route_ask_nodes(const struct redis_url *u, route_ask_fn *ask, void *ctx,
    char *err, size_t errlen);

/* route_redirected: an error reply that says the cluster serves the slot
 * elsewhere now, or is moving it (MOVED, ASK, TRYAGAIN, CLUSTERDOWN):
 * nothing was done; routing again, later, finds the node. */
int route_redirected(const char *error);

#endif
