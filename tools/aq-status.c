/* aq-status: print the record of jobs by id, one JSON line per id, from
 * Redis or else the PostgreSQL ledger; ids come as arguments or on stdin
 * (bare, or the JSON lines aq-enqueue prints). With --state failed, the
 * failed jobs of a queue instead, newest first. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "id.h"
#include "idline.h"
#include "job.h"
#include "json.h"
#include "keys.h"
#include "ledger.h"
#include "log.h"
#include "mem.h"
#include "pool.h"
#include "redis.h"

#define LOOKUP_BATCH 256
#define LIMIT_DEFAULT 100
#define LIMIT_MAX 100000

enum { OPT_STATE = OPT_TOOL, OPT_LIMIT };

struct lookup {
	char id[ID_MAX + 1];
	char queue[QUEUE_MAX + 1];
};

struct status_run {
	struct config cfg;
	struct redis_pool pool;      /* a connection per node of a cluster */
	struct ledger ledger;        /* opened when Redis lacks a job */
	struct lookup batch[LOOKUP_BATCH];
	size_t n;
	struct jbuf out;
	unsigned long rejected, unknown;
	const char *state;           /* --state: list the jobs in it */
	long limit;                  /* --limit: at most so many */
	int listing;                 /* a job gone meanwhile is left out */
};

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: aq-status [-q queue] [-u url | --redis-url-file path] [--prefix p]\n"
	    "                 [--database-url url | --database-url-file path]\n"
	    "                 [--max-line size] [id ...]\n"
	    "       aq-status [-q queue] [-u url | --redis-url-file path] [--prefix p]\n"
	    "                 --state failed [--limit n]\n");
}

/* The ledger's records of the jobs of the batch Redis does not have (those
 * whose reply is empty); NULL without a ledger. */
static PGresult *
ledger_lookup(struct status_run *s, redisReply **replies)
{
	const char *queues[LOOKUP_BATCH], *ids[LOOKUP_BATCH];
	size_t n = 0;
	PGresult *r;

	if (!s->cfg.database_url)
		return NULL;
	for (size_t i = 0; i < s->n; i++) {
		if (replies[i]->type == REDIS_REPLY_ARRAY && replies[i]->elements > 0)
			continue;
		queues[n] = s->batch[i].queue;
		ids[n++] = s->batch[i].id;
	}
	if (n == 0)
		return NULL;
	if (!s->ledger.conn)
		ledger_open_or_die(&s->ledger, s->cfg.database_url,
		    s->cfg.database_from, s->cfg.prefix);
	if (!(r = ledger_records(&s->ledger, n, queues, ids)))
		die(EX_UNAVAILABLE, "cannot read the postgresql ledger at %s: %s",
		    s->ledger.shown, s->ledger.err);
	return r;
}

/* The row of r holding job l, or -1. */
static int
ledger_row(const PGresult *r, const struct lookup *l)
{
	for (int i = 0; r && i < pq.ntuples(r); i++)
		if (strcmp(pq.getvalue(r, i, 0), l->queue) == 0 &&
		    strcmp(pq.getvalue(r, i, 1), l->id) == 0)
			return i;
	return -1;
}

/* 1 when the hash reply r is a record whose status is blocked */
static int
is_blocked(const redisReply *r)
{
	for (size_t i = 0; i + 1 < r->elements; i += 2) {
		const redisReply *k = r->element[i], *v = r->element[i + 1];
		if (k->type == REDIS_REPLY_STRING && strcmp(k->str, "status") == 0)
			return v->type == REDIS_REPLY_STRING && strcmp(v->str, "blocked") == 0;
	}
	return 0;
}

/* A record from Redis; a blocked job's also says which parents it waits
 * for (one SMEMBERS more, for blocked jobs only). */
static void
write_redis_record(struct status_run *s, const struct lookup *l,
    const redisReply *r)
{
	struct keys k;
	char key[KEY_MAX + ID_MAX];

	if (!is_blocked(r)) {
		job_write_record(&s->out, l->id, l->queue, r);
		return;
	}
	keys_init(&k, s->cfg.prefix, l->queue);
	const char *argv[2] = {"SMEMBERS", keys_deps(&k, l->id, key, sizeof key)};
	redisReply *pending = redis_command_ok(redis_pool_for_queue(&s->pool,
	    s->cfg.prefix, l->queue), &s->cfg.redis, 2, argv);
	job_write_blocked(&s->out, l->id, l->queue, r, pending);
	freeReplyObject(pending);
}

/* HGETALL every job of the batch in one pipelined round trip, ask the
 * ledger for those Redis does not have, print them all in order. */
static void
flush_batch(struct status_run *s)
{
	struct keys k;
	char key[KEY_MAX + ID_MAX];
	redisReply *replies[LOOKUP_BATCH];
	redisContext *conns[LOOKUP_BATCH]; /* a cluster: each job's node */
	PGresult *ledger;

	if (s->n == 0)
		return;
	for (size_t i = 0; i < s->n; i++) {
		const char *argv[2] = {"HGETALL", key};
		keys_init(&k, s->cfg.prefix, s->batch[i].queue);
		keys_job(&k, s->batch[i].id, key, sizeof key);
		conns[i] = redis_pool_for(&s->pool, k.base);
		if (redisAppendCommandArgv(conns[i], 2, argv, NULL) != REDIS_OK)
			redis_die_io(conns[i], &s->cfg.redis, "looking up jobs");
	}
	for (size_t i = 0; i < s->n; i++) /* each connection answers in order */
		replies[i] = redis_get_reply(conns[i], &s->cfg.redis, "looking up jobs");
	for (size_t i = 0; i < s->n; i++) {
		int tries = 0;
		if (redis_follow(conns[i], &s->cfg.redis, replies[i], &tries)) {
			/* the job's slot moved: ask its new node (and the
			 * connection stays there: the pool learns it by MOVED) */
			const char *argv[2] = {"HGETALL", key};
			keys_init(&k, s->cfg.prefix, s->batch[i].queue);
			keys_job(&k, s->batch[i].id, key, sizeof key);
			freeReplyObject(replies[i]);
			replies[i] = redis_command_ok(conns[i], &s->cfg.redis, 2, argv);
		}
		if (replies[i]->type == REDIS_REPLY_ERROR)
			die(EX_UNAVAILABLE, "redis refused HGETALL: %s", replies[i]->str);
	}
	ledger = ledger_lookup(s, replies);
	for (size_t i = 0; i < s->n; i++) {
		const redisReply *r = replies[i];
		int row;
		jb_reset(&s->out);
		if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
			write_redis_record(s, &s->batch[i], r);
		} else if ((row = ledger_row(ledger, &s->batch[i])) >= 0) {
			ledger_write_record(&s->out, ledger, row);
		} else if (s->listing) {
			freeReplyObject(replies[i]);
			continue;
		} else {
			job_write_unknown(&s->out, s->batch[i].id, s->batch[i].queue);
			s->unknown++;
		}
		if (jb_line(&s->out) < 0)
			die_output();
		freeReplyObject(replies[i]);
	}
	pq.clear(ledger);
	s->n = 0;
}

/* idline_fn: queue an id for looking up */
static void
add_lookup(void *ctx, const char *id, size_t n, const char *queue)
{
	struct status_run *s = ctx;
	struct lookup *l = &s->batch[s->n++];

	memcpy(l->id, id, n);
	l->id[n] = '\0';
	snprintf(l->queue, sizeof l->queue, "%s", queue);
	if (s->n == LOOKUP_BATCH)
		flush_batch(s);
}

/* jsonl_idle_fn: the input has nothing more yet: print what is asked for
 * (`tail -f ids | aq-status` answers each id as it comes) */
static void
on_idle(void *ctx)
{
	struct status_run *s = ctx;

	flush_batch(s);
	if (fflush(stdout) != 0)
		die_output();
}

/* The failed jobs of the queue, newest first, at most --limit, from its
 * failed set (by finish time): read as ids are, with no scan. */
static void
list_failed(struct status_run *s)
{
	struct keys k;
	char stop[24];
	const char *argv[] = {"ZRANGE", k.failed, "0", stop, "REV"};
	redisReply *r;

	keys_init(&k, s->cfg.prefix, s->cfg.queue);
	snprintf(stop, sizeof stop, "%ld", s->limit - 1);
	r = redis_command_ok(redis_pool_for_queue(&s->pool, s->cfg.prefix,
	    s->cfg.queue), &s->cfg.redis, 5, argv);
	s->listing = 1;
	for (size_t i = 0; i < r->elements; i++)
		if (r->element[i]->type == REDIS_REPLY_STRING &&
		    id_valid(r->element[i]->str, r->element[i]->len))
			add_lookup(s, r->element[i]->str, r->element[i]->len,
			    s->cfg.queue);
	flush_batch(s);
	freeReplyObject(r);
}

static void
parse_options(struct status_run *s, int argc, char **argv)
{
	static const struct option longopts[] = {
		CONFIG_LONG_OPTIONS,
		CONFIG_LONG_OPTIONS_LINES,
		CONFIG_LONG_OPTIONS_LEDGER,
		{"state", required_argument, NULL, OPT_STATE},
		{"limit", required_argument, NULL, OPT_LIMIT},
		{NULL, 0, NULL, 0},
	};
	int c;

	while ((c = config_getopt(&s->cfg, argc, argv, longopts, usage)) != -1) {
		switch (c) {
		case OPT_STATE:
			if (strcmp(optarg, "failed") != 0)
				die_usage("invalid --state '%.40s': want failed", optarg);
			s->state = optarg;
			break;
		case OPT_LIMIT:
			s->limit = option_int("--limit", optarg, 1, LIMIT_MAX);
			break;
		default:
			config_bad_option(c, argv, longopts, usage);
		}
	}
	if (s->limit && !s->state)
		die_usage("--limit goes with --state");
	if (s->state && optind < argc)
		die_usage("give ids or --state, not both");
	if (!s->limit)
		s->limit = LIMIT_DEFAULT;
}

int
main(int argc, char **argv)
{
	static struct status_run s;
	int read_failed = 0;

	log_init(argv[0]);
	config_init(&s.cfg);
	parse_options(&s, argc, argv);
	config_finish(&s.cfg);
	stdout_watch();
	ledger_config(&s.cfg);
	argc -= optind;
	argv += optind;
	idline_check_args(argc, argv);
	redis_pool_init(&s.pool, &s.cfg.redis);
	redis_pool_for_queue(&s.pool, s.cfg.prefix, s.cfg.queue); /* unreachable:
								     * exit now */

	if (s.state)
		list_failed(&s);
	else
		read_failed = idline_each(argc, argv, STDIN_FILENO, s.cfg.max_line,
		    s.cfg.queue, add_lookup, on_idle, &s, &s.rejected) < 0;
	flush_batch(&s);
	jb_free(&s.out);
	redis_pool_close(&s.pool);
	ledger_close(&s.ledger);
	config_free(&s.cfg);
	return finish_stdout(idline_exit(read_failed, s.rejected, s.unknown));
}
