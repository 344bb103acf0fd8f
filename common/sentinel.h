/* sentinel.h: find the primary a redis+sentinel:// URL names, by asking its
 * sentinels in turn; and tell whether a server still is that primary. */
#ifndef AQ_SENTINEL_H
#define AQ_SENTINEL_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#include "url.h"

/* A sentinel that does not answer within this is passed over for the next. */
#define SENTINEL_TIMEOUT_MS 500

/* sentinel_primary: in *a, the primary named by the first sentinel of u
 * (a sentinel URL) that knows it (SENTINEL get-master-addr-by-name). 0,
 * or -1 with what each sentinel answered in err. Blocks up to
 * SENTINEL_TIMEOUT_MS twice per sentinel that does not answer (aredis
 * calls it off its loop, on libuv's thread pool: it touches nothing but
 * u, a and err). */
int sentinel_primary(const struct redis_url *u, struct url_addr *a, char *err,
    size_t errlen);

/* sentinel_role_check: the reply of ROLE from a (the server the sentinels
 * named) says it is a primary: 0; or -1 with the reason in err (a replica
 * after a failover the sentinels have not seen yet). */
int sentinel_role_check(const redisReply *role, const struct url_addr *a,
    const char *master, char *err, size_t errlen);

/* sentinel_lost_role: an error reply that says the server stopped being
 * a primary that takes writes (READONLY; UNBLOCKED on a demotion;
 * NOREPLICAS under min-replicas-to-write): its clients reconnect, which
 * asks the sentinels again. */
int sentinel_lost_role(const char *error);

#endif
