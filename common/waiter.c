/* waiter.c: follow a queue's log until a set of jobs is final, through a
 * Redis restart. */
#include "waiter.h"

#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "id.h"
#include "job.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "redis.h"

#define QUIET_MS 2000           /* a log quiet this long: ask for the jobs */
#define BATCH 256

struct waiter {
	redisContext **cp;       /* the caller's connection, replaced on loss */
	const struct redis_url *url;
	const struct keys *keys;
	const char *queue;
	char after[48];          /* the log's last entry read */
	char **ids;              /* in input order */
	size_t n, cap;
	char **sorted;           /* the same, sorted, for lookups */
	unsigned char *final;    /* per sorted id */
	size_t left;             /* not final yet */
};

struct waiter *
waiter_new(redisContext **c, const struct redis_url *u, const struct keys *k,
    const char *queue)
{
	struct waiter *w = xcalloc(1, sizeof *w);
	const char *argv[] = {"XREVRANGE", k->log, "+", "-", "COUNT", "1"};
	redisReply *r = redis_command_ok(*c, u, 6, argv);

	w->cp = c;
	w->url = u;
	w->keys = k;
	w->queue = queue;
	snprintf(w->after, sizeof w->after, "%s", r->elements ?
	    r->element[0]->element[0]->str : "0-0");
	freeReplyObject(r);
	return w;
}

void
waiter_add(struct waiter *w, const char *id, size_t n)
{
	w->ids = xgrow(w->ids, &w->cap, w->n + 1, 1024, sizeof *w->ids);
	w->ids[w->n++] = xstrndup(id, n);
}

static long
find(const struct waiter *w, const char *id, size_t n)
{
	char key[ID_MAX + 1];
	char *k = key, **hit;

	if (n > ID_MAX)
		return -1;
	memcpy(key, id, n);
	key[n] = '\0';
	hit = bsearch(&k, w->sorted, w->n, sizeof *w->sorted, strv_cmp);
	return hit ? hit - w->sorted : -1;
}

static int
is_final(const char *status, size_t n)
{
	return (n == 9 && memcmp(status, "succeeded", 9) == 0) ||
	    (n == 6 && memcmp(status, "failed", 6) == 0) ||
	    (n == 9 && memcmp(status, "cancelled", 9) == 0);
}

static void
mark(struct waiter *w, long i)
{
	if (i >= 0 && !w->final[i]) {
		w->final[i] = 1;
		w->left--;
	}
}

/* Ask each job not yet final for its status (for jobs that were final
 * before the wait began, after a lost connection, and as a safety net for
 * a trimmed log). -1 when the connection failed. */
static int
check_all(struct waiter *w)
{
	char key[KEY_MAX + ID_MAX];
	redisContext *c = *w->cp;

	for (size_t start = 0; start < w->n; start += BATCH) {
		size_t end = start + BATCH < w->n ? start + BATCH : w->n, sent = 0;
		for (size_t i = start; i < end; i++) {
			if (w->final[i])
				continue;
			const char *argv[] = {"HGET", key, "status"};
			keys_job(w->keys, w->sorted[i], key, sizeof key);
			if (redisAppendCommandArgv(c, 3, argv, NULL) != REDIS_OK)
				return -1;
			sent++;
		}
		for (size_t i = start; i < end && sent > 0; i++) {
			void *reply = NULL;
			if (w->final[i])
				continue;
			if (redisGetReply(c, &reply) != REDIS_OK)
				return -1;
			redisReply *r = reply;
			if (r->type == REDIS_REPLY_ERROR)
				die(EX_UNAVAILABLE, "redis refused HGET while waiting for "
				    "jobs: %s", r->str);
			/* an id with no job (trimmed already) counts as final */
			if (r->type != REDIS_REPLY_STRING || is_final(r->str, r->len))
				mark(w, (long)i);
			freeReplyObject(r);
			sent--;
		}
	}
	return 0;
}

static void
read_log_entries(struct waiter *w, const redisReply *entries)
{
	for (size_t i = 0; i < entries->elements; i++) {
		const redisReply *e = entries->element[i], *f = e->element[1];
		const redisReply *status = NULL, *ids = NULL;
		snprintf(w->after, sizeof w->after, "%s", e->element[0]->str);
		for (size_t j = 0; j + 1 < f->elements; j += 2) {
			if (strcmp(f->element[j]->str, "status") == 0)
				status = f->element[j + 1];
			else if (strcmp(f->element[j]->str, "ids") == 0)
				ids = f->element[j + 1];
		}
		if (!status || !ids || !is_final(status->str, status->len))
			continue;
		for (const char *p = ids->str; *p;) {
			size_t n = strcspn(p, " ");
			long i = find(w, p, n);
			/* the same id given twice: every copy is final */
			while (i > 0 && strcmp(w->sorted[i - 1], w->sorted[i]) == 0)
				i--;
			for (long j = i; j >= 0 && (size_t)j < w->n &&
			    strcmp(w->sorted[j], w->sorted[i]) == 0; j++)
				mark(w, j);
			p += n + (p[n] == ' ');
		}
	}
}

/* The connection was lost: connect again, with a backoff, until the
 * deadline (-1: none); like aq-subscribe, a Redis restart is survived.
 * 0, or EX_TEMPFAIL when the deadline passed. */
static int
reconnect(struct waiter *w, long long deadline, const char *why)
{
	char err[REDIS_ERR_MAX], shown[1024];
	int code, backoff = REDIS_RETRY_MIN_MS;
	redisContext *c;

	url_display(w->url, shown, sizeof shown);
	warnmsg("lost the connection to redis at %s while waiting for the jobs "
	    "(%s); reconnecting", shown, why);
	redisFree(*w->cp);
	*w->cp = NULL;
	for (;;) {
		if ((c = redis_try_connect_for(w->url, w->keys->base, err, sizeof err,
		    &code)))
			break;
		if (code == EX_NOPERM)
			die(code, "cannot connect to redis at %s: %s", shown, err);
		if (deadline >= 0 && clock_mono_ms() + backoff > deadline)
			return EX_TEMPFAIL;
		usleep((useconds_t)backoff * 1000);
		backoff = redis_retry_next(backoff);
	}
	*w->cp = c;
	warnmsg("redis at %s is back; looking at the jobs again", shown);
	return 0;
}

int
waiter_wait(struct waiter *w, long long timeout_ms)
{
	long long deadline = timeout_ms >= 0 ? clock_mono_ms() + timeout_ms : -1;
	char block[24];

	w->sorted = xcalloc(w->n + 1, sizeof *w->sorted);
	memcpy(w->sorted, w->ids, w->n * sizeof *w->ids);
	qsort(w->sorted, w->n, sizeof *w->sorted, strv_cmp);
	w->final = xcalloc(w->n + 1, 1);
	w->left = w->n;
	while (check_all(w) < 0)
		if (reconnect(w, deadline, (*w->cp)->errstr) != 0)
			return EX_TEMPFAIL;
	while (w->left > 0) {
		long long left = deadline < 0 ? QUIET_MS : deadline - clock_mono_ms();
		if (left <= 0)
			return EX_TEMPFAIL;
		snprintf(block, sizeof block, "%lld", left < QUIET_MS ? left : QUIET_MS);
		const char *argv[] = {"XREAD", "COUNT", "1000", "BLOCK", block,
		    "STREAMS", w->keys->log, w->after};
		/* nobody reads the outcomes any more (stdout_watch): end */
		redisReply *r = redis_command_await(*w->cp, 8, argv,
		    (left < QUIET_MS ? left : QUIET_MS) + REDIS_COMMAND_TIMEOUT_MS);
		int lost = !r;
		if (r && r->type == REDIS_REPLY_ERROR)
			die(EX_UNAVAILABLE, "redis refused XREAD while waiting for jobs: %s",
			    r->str);
		if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 1)
			read_log_entries(w, r->element[0]->element[1]);
		else if (r && r->type == REDIS_REPLY_NIL)
			lost = check_all(w) < 0; /* a quiet while: ask directly */
		freeReplyObject(r);
		/* what finished meanwhile may be in no log entry we read: ask */
		while (lost) {
			if (reconnect(w, deadline, (*w->cp)->errstr) != 0)
				return EX_TEMPFAIL;
			lost = check_all(w) < 0;
		}
	}
	return 0;
}

int
waiter_print(struct waiter *w)
{
	struct jbuf b = {0};
	char key[KEY_MAX + ID_MAX];
	int rc = 0;

	for (size_t start = 0; start < w->n; start += BATCH) {
		size_t end = start + BATCH < w->n ? start + BATCH : w->n;
		for (size_t i = start; i < end; i++) {
			const char *argv[] = {"HGETALL", key};
			keys_job(w->keys, w->ids[i], key, sizeof key);
			redisAppendCommandArgv(*w->cp, 2, argv, NULL);
		}
		for (size_t i = start; i < end; i++) {
			redisReply *r = redis_get_reply(*w->cp, w->url, "reading jobs");
			const redisReply *st = NULL;
			jb_reset(&b);
			if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
				job_write_record(&b, w->ids[i], w->queue, r);
				for (size_t j = 0; j + 1 < r->elements; j += 2)
					if (strcmp(r->element[j]->str, "status") == 0)
						st = r->element[j + 1];
			} else {
				job_write_unknown(&b, w->ids[i], w->queue);
			}
			if (!st || strcmp(st->str, "succeeded") != 0)
				rc = 1;
			if (jb_line(&b) < 0)
				die_output();
			freeReplyObject(r);
		}
	}
	jb_free(&b);
	return rc;
}

void
waiter_free(struct waiter *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->n; i++)
		free(w->ids[i]);
	free(w->ids);
	free(w->sorted);
	free(w->final);
	free(w);
}
