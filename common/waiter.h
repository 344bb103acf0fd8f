/* waiter.h: waiting for jobs to reach a final state (aq-enqueue --wait):
 * the queue's log stream tells when, so any number of jobs is waited for
 * with one connection and no polling per job. */
#ifndef AQ_WAITER_H
#define AQ_WAITER_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#include "keys.h"
#include "url.h"

struct waiter;

/* waiter_new: start watching queue's log from its current end; call it
 * before the jobs are enqueued, so no transition can slip by. Exits
 * EX_UNAVAILABLE when Redis fails. While it waits, a lost connection *c is
 * replaced by a new one (a Redis restart is waited out). */
struct waiter *waiter_new(redisContext **c, const struct redis_url *u,
    const struct keys *k, const char *queue);

/* waiter_add: wait for job id[0..n) too (ids are kept in input order). */
void waiter_add(struct waiter *w, const char *id, size_t n);

/* waiter_wait: block until every job added is final (0), or timeout_ms
 * passes (EX_TEMPFAIL; < 0: no limit). */
int waiter_wait(struct waiter *w, long long timeout_ms);

/* waiter_print: print the record of every job added, in order; returns 0
 * when all succeeded, 1 otherwise. */
int waiter_print(struct waiter *w);

void waiter_free(struct waiter *w);

#endif
