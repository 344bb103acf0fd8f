/* redis.h: the synchronous Redis connection of the command-line tools:
 * unix socket or TCP, AUTH (ACL user or password), SELECT, timeouts, and
 * errors that name the server without its password. */
#ifndef AQ_REDIS_H
#define AQ_REDIS_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#include "url.h"

#define REDIS_CONNECT_TIMEOUT_MS 5000
#define REDIS_COMMAND_TIMEOUT_MS 60000
#define REDIS_ERR_MAX 1024 /* room for the reason and what to do */

/* A lost connection is tried again after REDIS_RETRY_MIN_MS, then after
 * twice as long each time, up to REDIS_RETRY_MAX_MS (the worker's
 * connections, aq-subscribe, aq-enqueue --wait). */
#define REDIS_RETRY_MIN_MS 100
#define REDIS_RETRY_MAX_MS 5000

/* How a one-shot command rides out a slot that moves on a cluster: tries,
 * and the wait before each while the slot is being moved. */
#define REDIS_FOLLOW_TRIES 100
#define REDIS_FOLLOW_WAIT_MS 100

/* redis_retry_next: the wait after one of backoff_ms: doubled, capped. */
int redis_retry_next(int backoff_ms);

/* redis_try_connect: connect to u, authenticate and select its database.
 * Returns the context, or NULL with *code set to EX_UNAVAILABLE (cannot
 * reach) or EX_NOPERM (authentication refused) and in err (best
 * REDIS_ERR_MAX bytes) the reason, then what to do ("is redis-server
 * running there? ...", where the password goes), never the password. */
redisContext *redis_try_connect(const struct redis_url *u, char *err,
    size_t errlen, int *code);

/* redis_try_connect_for, redis_connect_for: the same, for a connection
 * that serves key (a key of the queue, or PREFIX:queues): with a cluster
 * URL, to the node serving its slot. */
redisContext *redis_try_connect_for(const struct redis_url *u, const char *key,
    char *err, size_t errlen, int *code);
redisContext *redis_connect_for(const struct redis_url *u, const char *key);

/* redis_try_connect_at: the same, to the server at (a node of a cluster,
 * the primary of sentinels), with u's user, password and database. */
redisContext *redis_try_connect_at(const struct redis_url *u,
    const struct url_addr *at, char *err, size_t errlen, int *code);

/* redis_connect: redis_try_connect, or exit with its code and the message
 * "cannot connect to redis at URL: reason; what to do". */
redisContext *redis_connect(const struct redis_url *u);

/* redis_follow: r, the reply to a command sent on c (a connection of u),
 * says a cluster serves the command's slot elsewhere (MOVED: c is moved to
 * that node), is moving it (ASK, TRYAGAIN) or is down (CLUSTERDOWN: a
 * short wait). 1: nothing was done, send the command again; 0: r is no
 * such reply, u is no cluster URL, or *tries (start at 0) ran out. */
int redis_follow(redisContext *c, const struct redis_url *u,
    const redisReply *r, int *tries);

/* redis_display: u as url_display shows it, followed for a sentinel or
 * cluster URL by the server c is connected to: "URL (node host:port)". */
char *redis_display(const struct redis_url *u, const redisContext *c,
    char *buf, size_t len);

/* redis_die_io: exit EX_UNAVAILABLE for a connection that failed mid-work
 * (c->err), naming the server and what was being done. */
void redis_die_io(redisContext *c, const struct redis_url *u,
    const char *doing) __attribute__((noreturn));

/* redis_command_ok: run argv synchronously; returns the reply, which is not
 * an error reply. Exits like redis_die_io on a dead connection, and with
 * EX_UNAVAILABLE naming the command on an error reply. */
redisReply *redis_command_ok(redisContext *c, const struct redis_url *u,
    int argc, const char **argv);

/* redis_get_reply: the next pipelined reply (never NULL: exits like
 * redis_die_io on a dead connection). */
redisReply *redis_get_reply(redisContext *c, const struct redis_url *u,
    const char *doing);

/* redis_await_reply: the next reply, as redisGetReply gives it (what was
 * appended is sent first), but waiting at most timeout_ms (< 0: no limit)
 * with wait_readable, so that a tool that called stdout_watch ends when
 * its reader goes away. 0 with *reply; 1 when the time ran out (c stays
 * usable); -1 when the connection failed (c->err). */
int redis_await_reply(redisContext *c, void **reply, long long timeout_ms);

/* redis_command_await: redisCommandArgv through redis_await_reply, for a
 * command that blocks (XREAD BLOCK): the reply, or NULL when the
 * connection failed or no reply came within timeout_ms (c->err says
 * which; c is then to be freed). */
redisReply *redis_command_await(redisContext *c, int argc, const char **argv,
    long long timeout_ms);

#endif
