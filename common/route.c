/* route.c: the server for a key, whatever the kind of the URL. */
#include "route.h"

#include <stdio.h>
#include <string.h>

#include "cluster.h"
#include "sentinel.h"

static int
route_cluster(const struct redis_url *u, const char *key, struct url_addr *at,
    char *err, size_t errlen)
{
	struct cluster_map m;
	const struct url_addr *a;
	unsigned slot;

	if (!key) {
		snprintf(err, errlen, "this tool cannot yet use a cluster");
		return -1;
	}
	if (cluster_map_read(u, &m, err, errlen) < 0)
		return -1;
	slot = cluster_key_slot(key, strlen(key));
	a = cluster_map_node(&m, slot);
	if (a)
		*at = *a;
	else
		snprintf(err, errlen, "no node of the cluster serves slot %u (of %s): "
		    "is the cluster down, or still being set up?", slot, key);
	cluster_map_free(&m);
	return a ? 0 : -1;
}

int
route_server(const struct redis_url *u, const char *key, struct url_addr *at,
    char *err, size_t errlen)
{
	switch (u->kind) {
	case URL_SENTINEL:
		return sentinel_primary(u, at, err, errlen);
	case URL_CLUSTER:
		return route_cluster(u, key, at, err, errlen);
	default:
		memcpy(at->host, u->host, sizeof at->host);
		at->port = u->port;
		return 0;
	}
}

int
route_ask_nodes(const struct redis_url *u, route_ask_fn *ask, void *ctx,
    char *err, size_t errlen)
{
	size_t off = strlen(err);

	for (int i = 0; i < u->nnodes; i++) {
		const struct url_addr *n = &u->nodes[i];
		char why[1024];
		if (ask(u, n, ctx, why, sizeof why) == 0)
			return 0;
		if (off < errlen)
			off += (size_t)snprintf(err + off, errlen - off, "%s%s:%d: %s",
			    i ? "; " : "", n->host, n->port, why);
	}
	return -1;
}

int
route_redirected(const char *error)
{
	return strncmp(error, "MOVED ", 6) == 0 || strncmp(error, "ASK ", 4) == 0 ||
	    strncmp(error, "TRYAGAIN", 8) == 0 || strncmp(error, "CLUSTERDOWN", 11) == 0;
}
