/* aq-retry: put failed jobs back on their queue with their attempts reset,
 * or delete them (--delete); one JSON line per job. Ids come as arguments
 * or on stdin (bare, or the JSON lines aq-enqueue and aq-status print), or
 * --all takes every failed job of the queue. */
#include <getopt.h>
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
#include "log.h"
#include "pool.h"
#include "redis.h"
#include "script.h"

#define ALL_BATCH 256                 /* failed jobs per call with --all */

enum { OPT_ALL = OPT_TOOL, OPT_DELETE };

struct retry_run {
	struct config cfg;
	struct redis_pool pool;       /* a connection per node of a cluster */
	const char *action;           /* "retry", or "delete" (--delete) */
	int all;                      /* --all */
	struct idline_batch batch;    /* ids of one queue, sent together */
	struct script_args call;      /* a call, being built */
	struct jbuf out;
	unsigned long rejected, refused; /* refused: unknown, not failed */
};

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: aq-retry [-q queue] [-u url | --redis-url-file path] [--prefix p]\n"
	    "                [--delete] [--max-line size] [id ...]\n"
	    "       aq-retry [-q queue] [-u url | --redis-url-file path] [--prefix p]\n"
	    "                [--delete] --all\n");
}

/* Print what became of job id of queue: the script's outcome. */
static void
report(struct retry_run *s, const char *id, const char *queue,
    const char *outcome)
{
	int refused = strncmp(outcome, "refused:", 8) == 0;
	int unarchived = strcmp(outcome, "unarchived") == 0;

	jb_reset(&s->out);
	if (strcmp(outcome, "unknown") == 0) {
		job_write_unknown(&s->out, id, queue);
		s->refused++;
	} else {
		jb_obj_begin(&s->out);
		jb_kstr(&s->out, "id", id);
		jb_kstr(&s->out, "queue", queue);
		jb_kstr(&s->out, "status", refused ? outcome + 8 :
		    unarchived ? "failed" : outcome);
		if (refused || unarchived) {
			jb_key(&s->out, strcmp(s->action, "delete") == 0 ?
			    "deleted" : "retried");
			jb_raw(&s->out, "false", 5);
			s->refused++;
		}
		if (unarchived) {
			jb_key(&s->out, "archived");
			jb_raw(&s->out, "false", 5);
		}
		jb_obj_end(&s->out);
	}
	if (jb_line(&s->out) < 0)
		die_output();
}

/* Begin a call of the retry script on queue (what: "ids" or "all"). */
static void
begin_call(struct retry_run *s, const struct keys *k, const char *what)
{
	script_args_begin(&s->call, &script_retry);
	script_args_queue_keys(&s->call, k);
	script_args_arg(&s->call, k->base);
	script_args_arg(&s->call, LOG_CAP);
	script_args_arg(&s->call, s->action);
	script_args_arg(&s->call, what);
}

/* Send the call and report each job it names; returns the entries it
 * looked at, and in *stayed how many of them stay failed. */
static long
send_call(struct retry_run *s, const char *queue, long *stayed)
{
	char doing[QUEUE_MAX + 64], shown[1024];
	redisReply *r;
	long looked;

	snprintf(doing, sizeof doing, "%s failed jobs of queue %s",
	    strcmp(s->action, "delete") == 0 ? "deleting" : "retrying", queue);
	r = script_call_array(redis_pool_for_queue(&s->pool, s->cfg.prefix, queue),
	    &s->cfg.redis, &s->call, 1, doing);
	if (r->element[0]->type != REDIS_REPLY_INTEGER || r->elements % 2 == 0)
		die(EX_UNAVAILABLE, "redis at %s gave an unexpected reply while %s",
		    url_display(&s->cfg.redis, shown, sizeof shown), doing);
	looked = (long)r->element[0]->integer;
	*stayed = 0;
	for (size_t i = 1; i + 1 < r->elements; i += 2) {
		const redisReply *id = r->element[i], *outcome = r->element[i + 1];
		if (id->type != REDIS_REPLY_STRING || outcome->type != REDIS_REPLY_STRING)
			die(EX_UNAVAILABLE, "redis at %s gave an unexpected reply "
			    "while %s", url_display(&s->cfg.redis, shown,
			    sizeof shown), doing);
		report(s, id->str, queue, outcome->str);
		*stayed += strcmp(outcome->str, "unarchived") == 0;
	}
	freeReplyObject(r);
	return looked;
}

/* Retry (or delete) the ids of the batch in one call. */
static void
send_batch(void *ctx)
{
	struct retry_run *s = ctx;
	struct idline_batch *b = &s->batch;
	struct keys k;
	long stayed;

	keys_init(&k, s->cfg.prefix, b->t[0].queue);
	begin_call(s, &k, "ids");
	for (size_t i = 0; i < b->n; i++)
		script_args_arg(&s->call, b->t[i].id);
	send_call(s, b->t[0].queue, &stayed);
	b->n = 0;
}

/* --all: every job of the queue's failed set when it starts, oldest first,
 * ALL_BATCH a call (a job that fails again meanwhile is not taken again). */
static void
retry_all(struct retry_run *s)
{
	struct keys k;
	const char *argv[] = {"ZCARD", k.failed};
	long long total, offset = 0, done = 0;
	redisReply *r;

	keys_init(&k, s->cfg.prefix, s->cfg.queue);
	r = redis_command_ok(redis_pool_for_queue(&s->pool, s->cfg.prefix,
	    s->cfg.queue), &s->cfg.redis, 2, argv);
	total = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
	freeReplyObject(r);
	while (done < total) {
		long long n = total - done < ALL_BATCH ? total - done : ALL_BATCH;
		long looked, stayed;
		begin_call(s, &k, "all");
		script_args_argll(&s->call, offset);
		script_args_argll(&s->call, n);
		looked = send_call(s, s->cfg.queue, &stayed);
		offset += stayed;
		done += looked;
		if (looked < n)
			break;
	}
}

static void
parse_options(struct retry_run *s, int argc, char **argv)
{
	static const struct option longopts[] = {
		CONFIG_LONG_OPTIONS,
		CONFIG_LONG_OPTIONS_LINES,
		{"all", no_argument, NULL, OPT_ALL},
		{"delete", no_argument, NULL, OPT_DELETE},
		{NULL, 0, NULL, 0},
	};
	int c;

	while ((c = config_getopt(&s->cfg, argc, argv, longopts, usage)) != -1) {
		switch (c) {
		case OPT_ALL:
			s->all = 1;
			break;
		case OPT_DELETE:
			s->action = "delete";
			break;
		default:
			config_bad_option(c, argv, longopts, usage);
		}
	}
	if (s->all && optind < argc)
		die_usage("give ids or --all, not both");
}

int
main(int argc, char **argv)
{
	static struct retry_run s = {.action = "retry"};
	int read_failed = 0;

	log_init(argv[0]);
	config_init(&s.cfg);
	parse_options(&s, argc, argv);
	config_finish(&s.cfg);
	stdout_watch();
	argc -= optind;
	argv += optind;
	idline_check_args(argc, argv);
	redis_pool_init(&s.pool, &s.cfg.redis);
	/* unreachable: exit now */
	redis_pool_for_queue(&s.pool, s.cfg.prefix, s.cfg.queue);
	s.batch.send = send_batch;
	s.batch.ctx = &s;

	if (s.all)
		retry_all(&s);
	else
		read_failed = idline_batch_each(argc, argv, STDIN_FILENO,
		    s.cfg.max_line, s.cfg.queue, &s.batch, &s.rejected) < 0;
	jb_free(&s.out);
	script_args_free(&s.call);
	redis_pool_close(&s.pool);
	url_forget(&s.cfg.redis);
	return finish_stdout(idline_exit(read_failed, s.rejected, s.refused));
}
