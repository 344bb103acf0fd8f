/* aq-queue: administer queues: pause them (their workers claim nothing),
 * resume them, limit their rate and concurrency, show their state, purge
 * their waiting jobs. One JSON line per queue, or per job purged. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "flow.h"
#include "id.h"
#include "json.h"
#include "keys.h"
#include "log.h"
#include "pool.h"
#include "redis.h"
#include "script.h"

#define PURGE_BATCH 500             /* waiting jobs cancelled per call */
#define PURGE_BATCH_MAX 10000

enum { OPT_YES = OPT_TOOL, OPT_BATCH, OPT_RATE, OPT_CONCURRENCY, OPT_CLEAR };

struct queue_run {
	struct config cfg;
	const char *command;         /* pause, resume, limit, show or purge */
	const char *queues[QUEUES_MAX];
	int nqueues;
	int yes;                     /* --yes */
	long batch;                  /* --batch */
	char rate[24], period_ms[24]; /* limit: --rate ("" kept, "off") */
	char concurrency[24];        /* limit: --concurrency ("" kept, "off") */
	struct redis_pool pool;       /* a connection per node of a cluster */
	struct script_args call;
	struct jbuf out;
};

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: aq-queue pause|resume|show [-q queue ...] [-u url | --redis-url-file path]\n"
	    "                [--prefix p]\n"
	    "       aq-queue limit [-q queue ...] [--rate n/duration | --rate off]\n"
	    "                [--concurrency n | --concurrency off] [--clear]\n"
	    "                [-u url | --redis-url-file path] [--prefix p]\n"
	    "       aq-queue purge [-q queue ...] --yes [--batch n]\n"
	    "                [-u url | --redis-url-file path] [--prefix p]\n");
}

/* Call queue.lua's action on queue; its reply, an array of at least min
 * elements. */
static redisReply *
call_queue(struct queue_run *s, const char *action, const char *queue,
    size_t min)
{
	char doing[QUEUE_MAX + 64];
	struct keys k;

	keys_init(&k, s->cfg.prefix, queue);
	script_args_begin(&s->call, &script_queue);
	script_args_queue_keys(&s->call, &k);
	script_args_arg(&s->call, action);
	script_args_arg(&s->call, k.base);
	script_args_arg(&s->call, LOG_CAP);
	script_args_argll(&s->call, s->batch);
	script_args_arg(&s->call, s->rate);
	script_args_arg(&s->call, s->period_ms);
	script_args_arg(&s->call, s->concurrency);
	snprintf(doing, sizeof doing, "doing %s on queue %s", action, queue);
	return script_call_array(redis_pool_for(&s->pool, k.base), &s->cfg.redis,
	    &s->call, min, doing);
}

/* The figure i of a reply of pause, resume or show. */
static long long
figure(const redisReply *r, size_t i)
{
	return r->element[i]->type == REDIS_REPLY_INTEGER ? r->element[i]->integer : 0;
}

/* pause, resume, limit, show: the action, then the queue's state as one
 * line; its limits and throttle hold only when set. */
static void
state_of(struct queue_run *s, const char *queue)
{
	redisReply *r = call_queue(s, s->command, queue, QUEUE_FIGURES);
	int paused = figure(r, 0) == 1;
	struct flow_state l = {figure(r, 4), figure(r, 5), figure(r, 6), figure(r, 7)};

	jb_reset(&s->out);
	jb_obj_begin(&s->out);
	jb_kstr(&s->out, "queue", queue);
	jb_key(&s->out, "paused");
	jb_bool(&s->out, paused);
	jb_kint(&s->out, "waiting", figure(r, 1));
	jb_kint(&s->out, "delayed", figure(r, 2));
	jb_kint(&s->out, "running", figure(r, 3));
	flow_json(&s->out, &l, 0);
	jb_obj_end(&s->out);
	freeReplyObject(r);
	if (jb_line(&s->out) < 0)
		die_output();
}

/* A paused or limited queue is known, as aq-enqueue makes it (outside the script:
 * PREFIX:queues is in another slot), so that aq-health shows it paused. */
static void
register_queue(struct queue_run *s, const char *queue)
{
	struct keys k;
	const char *argv[] = {"SADD", k.queues, queue};

	keys_init(&k, s->cfg.prefix, queue);
	freeReplyObject(redis_command_ok(redis_pool_for(&s->pool, k.queues),
	    &s->cfg.redis, 3, argv));
}

/* purge: cancel the waiting jobs of queue, a batch a call, one line each. */
static void
purge(struct queue_run *s, const char *queue)
{
	long long looked;

	do {
		redisReply *r = call_queue(s, "purge", queue, 1);
		looked = figure(r, 0);
		for (size_t i = 1; i < r->elements; i++) {
			if (r->element[i]->type != REDIS_REPLY_STRING)
				die(EX_UNAVAILABLE, "the purge of queue %s: unexpected "
				    "reply from redis", queue);
			jb_reset(&s->out);
			jb_obj_begin(&s->out);
			jb_kstr(&s->out, "id", r->element[i]->str);
			jb_kstr(&s->out, "queue", queue);
			jb_kstr(&s->out, "status", "cancelled");
			jb_obj_end(&s->out);
			if (jb_line(&s->out) < 0)
				die_output();
		}
		freeReplyObject(r);
	} while (looked == s->batch);
}

/* purge without --yes: say what it would do, and do nothing. */
static void
refuse_purge(struct queue_run *s)
{
	for (int i = 0; i < s->nqueues; i++) {
		redisReply *r = call_queue(s, "show", s->queues[i], QUEUE_FIGURES);
		warnmsg("purge would cancel the %lld jobs waiting in queue %s (not "
		    "the running or delayed ones); add --yes to do it",
		    figure(r, 1), s->queues[i]);
		freeReplyObject(r);
	}
	exit(EX_USAGE);
}

/* The command on one queue. */
static void
run_command(struct queue_run *s, const char *queue)
{
	if (strcmp(s->command, "purge") == 0) {
		purge(s, queue);
		return;
	}
	if (strcmp(s->command, "pause") == 0 || strcmp(s->command, "limit") == 0)
		register_queue(s, queue);
	state_of(s, queue);
}

/* --rate N/DURATION or off */
static void
option_rate(struct queue_run *s, const char *arg)
{
	long n;
	int64_t period;

	if (strcmp(arg, "off") == 0) {
		snprintf(s->rate, sizeof s->rate, "off");
		return;
	}
	if (flow_parse_rate(arg, &n, &period) < 0)
		die_usage("invalid --rate '%.40s': want jobs/period, like 100/1s or "
		    "5/1m (1 to %ld jobs, a period up to 1d), or off", arg, LIMIT_MAX);
	snprintf(s->rate, sizeof s->rate, "%ld", n);
	snprintf(s->period_ms, sizeof s->period_ms, "%lld", (long long)period);
}

/* --concurrency N or off */
static void
option_concurrency(struct queue_run *s, const char *arg)
{
	if (strcmp(arg, "off") == 0)
		snprintf(s->concurrency, sizeof s->concurrency, "off");
	else
		snprintf(s->concurrency, sizeof s->concurrency, "%ld",
		    option_int("--concurrency", arg, 1, LIMIT_MAX));
}

static void
parse_options(struct queue_run *s, int argc, char **argv)
{
	static const struct option longopts[] = {
		CONFIG_LONG_OPTIONS,
		{"yes", no_argument, NULL, OPT_YES},
		{"batch", required_argument, NULL, OPT_BATCH},
		{"rate", required_argument, NULL, OPT_RATE},
		{"concurrency", required_argument, NULL, OPT_CONCURRENCY},
		{"clear", no_argument, NULL, OPT_CLEAR},
		{NULL, 0, NULL, 0},
	};
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, CONFIG_OPTSTRING, longopts, NULL)) != -1) {
		if (c == 'q') { /* repeatable here: several queues */
			option_queue(optarg, s->queues, &s->nqueues, QUEUES_MAX);
			continue;
		}
		if (config_option(&s->cfg, c, optarg, usage))
			continue;
		switch (c) {
		case OPT_YES:
			s->yes = 1;
			break;
		case OPT_BATCH:
			s->batch = option_int("--batch", optarg, 1, PURGE_BATCH_MAX);
			break;
		case OPT_RATE:
			option_rate(s, optarg);
			break;
		case OPT_CONCURRENCY:
			option_concurrency(s, optarg);
			break;
		case OPT_CLEAR:
			snprintf(s->rate, sizeof s->rate, "off");
			snprintf(s->concurrency, sizeof s->concurrency, "off");
			break;
		default:
			config_bad_option(c, argv, longopts, usage);
		}
	}
}

/* The command: the one operand, one of pause, resume, limit, show and
 * purge. */
static void
parse_command(struct queue_run *s, int argc, char **argv)
{
	static const char *commands[] = {"pause", "resume", "limit", "show", "purge"};
	int limits = s->rate[0] || s->concurrency[0];

	if (optind == argc)
		die_usage("no command: want pause, resume, limit, show or purge");
	if (optind + 1 < argc)
		die_usage("unexpected argument '%.80s'", argv[optind + 1]);
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (strcmp(argv[optind], commands[i]) == 0)
			s->command = commands[i];
	if (!s->command)
		die_usage("unknown command '%.80s': want pause, resume, limit, show "
		    "or purge", argv[optind]);
	if (strcmp(s->command, "purge") != 0 && (s->yes || s->batch))
		die_usage("--yes and --batch go with purge");
	if (strcmp(s->command, "limit") != 0 && limits)
		die_usage("--rate, --concurrency and --clear go with limit");
	if (strcmp(s->command, "limit") == 0 && !limits)
		die_usage("limit wants --rate, --concurrency or --clear");
}

int
main(int argc, char **argv)
{
	static struct queue_run s;

	log_init(argv[0]);
	config_init(&s.cfg);
	parse_options(&s, argc, argv);
	parse_command(&s, argc, argv);
	config_finish(&s.cfg);
	stdout_watch();
	if (s.nqueues == 0)
		s.queues[s.nqueues++] = s.cfg.queue;
	if (!s.batch)
		s.batch = PURGE_BATCH;
	redis_pool_init(&s.pool, &s.cfg.redis);
	/* unreachable: exit now */
	redis_pool_for_queue(&s.pool, s.cfg.prefix, s.queues[0]);

	if (strcmp(s.command, "purge") == 0 && !s.yes)
		refuse_purge(&s);
	for (int i = 0; i < s.nqueues; i++)
		run_command(&s, s.queues[i]);
	jb_free(&s.out);
	script_args_free(&s.call);
	redis_pool_close(&s.pool);
	url_forget(&s.cfg.redis);
	return finish_stdout(0);
}
