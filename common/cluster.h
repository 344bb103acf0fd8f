/* cluster.h: Redis Cluster: the hash slot of a key, and the map of the
 * primaries that serve the slots, read from the nodes of a URL. */
#ifndef AQ_CLUSTER_H
#define AQ_CLUSTER_H

#include <stddef.h>

#include "url.h"

#define CLUSTER_SLOTS 16384

/* cluster_key_slot: the slot of key[0..len), as Redis computes it: CRC16
 * (XMODEM) of the key, or of its hash tag (the text between the first '{'
 * and the next '}', when not empty), modulo 16384. */
unsigned cluster_key_slot(const char *key, size_t len);

struct cluster_range {
	unsigned lo, hi;              /* slots lo..hi, both included */
	struct url_addr primary;
};

/* Which primary serves which slots (CLUSTER SLOTS). */
struct cluster_map {
	struct cluster_range *ranges;
	size_t n;
};

/* cluster_map_read: read the map from the first node of u that answers
 * CLUSTER SLOTS (authenticating as u says). 0, or -1 with what each node
 * answered in err. */
int cluster_map_read(const struct redis_url *u, struct cluster_map *m,
    char *err, size_t errlen);

/* cluster_map_node: the primary that serves slot, or NULL when no node
 * does (the cluster is down or being set up). */
const struct url_addr *cluster_map_node(const struct cluster_map *m,
    unsigned slot);

void cluster_map_free(struct cluster_map *m);

#endif
