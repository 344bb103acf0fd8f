/* aq-queue: administer queues: pause them (their workers claim nothing),
 * resume them, show their state, purge their waiting jobs. One JSON line
 * per queue, or per job purged. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "id.h"
#include "json.h"
#include "keys.h"
#include "log.h"
#include "redis.h"
#include "script.h"

#define PURGE_BATCH 500             /* waiting jobs cancelled per call */
#define PURGE_BATCH_MAX 10000

enum { OPT_YES = OPT_TOOL, OPT_BATCH };

struct queue_run {
	struct config cfg;
	const char *command;         /* pause, resume, show or purge */
	const char *queues[QUEUES_MAX];
	int nqueues;
	int yes;                     /* --yes */
	long batch;                  /* --batch */
	redisContext *redis;
	struct script_args call;
	struct jbuf out;
};

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: aq-queue pause|resume|show [-q queue ...] [-u url | --redis-url-file path]\n"
	    "                [--prefix p]\n"
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
	snprintf(doing, sizeof doing, "doing %s on queue %s", action, queue);
	return script_call_array(s->redis, &s->cfg.redis, &s->call, min, doing);
}

/* The figure i of a reply of pause, resume or show. */
static long long
figure(const redisReply *r, size_t i)
{
	return r->element[i]->type == REDIS_REPLY_INTEGER ? r->element[i]->integer : 0;
}

/* pause, resume, show: the action, then the queue's state as one line. */
static void
state_of(struct queue_run *s, const char *queue)
{
	redisReply *r = call_queue(s, s->command, queue, QUEUE_FIGURES);
	int paused = figure(r, 0) == 1;

	jb_reset(&s->out);
	jb_obj_begin(&s->out);
	jb_kstr(&s->out, "queue", queue);
	jb_key(&s->out, "paused");
	jb_raw(&s->out, paused ? "true" : "false", paused ? 4 : 5);
	jb_kint(&s->out, "waiting", figure(r, 1));
	jb_kint(&s->out, "delayed", figure(r, 2));
	jb_kint(&s->out, "running", figure(r, 3));
	jb_obj_end(&s->out);
	freeReplyObject(r);
	if (jb_line(&s->out) < 0)
		die_output();
}

/* A paused queue is known, as aq-enqueue makes it (outside the script:
 * PREFIX:queues is in another slot), so that aq-health shows it paused. */
static void
register_queue(struct queue_run *s, const char *queue)
{
	struct keys k;
	const char *argv[] = {"SADD", k.queues, queue};

	keys_init(&k, s->cfg.prefix, queue);
	freeReplyObject(redis_command_ok(s->redis, &s->cfg.redis, 3, argv));
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
	if (strcmp(s->command, "pause") == 0)
		register_queue(s, queue);
	state_of(s, queue);
}

static void
parse_options(struct queue_run *s, int argc, char **argv)
{
	static const struct option longopts[] = {
		CONFIG_LONG_OPTIONS,
		{"yes", no_argument, NULL, OPT_YES},
		{"batch", required_argument, NULL, OPT_BATCH},
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
		default:
			config_bad_option(c, argv, longopts, usage);
		}
	}
}

/* The command: the one operand, one of pause, resume, show and purge. */
static void
parse_command(struct queue_run *s, int argc, char **argv)
{
	static const char *commands[] = {"pause", "resume", "show", "purge"};

	if (optind == argc)
		die_usage("no command: want pause, resume, show or purge");
	if (optind + 1 < argc)
		die_usage("unexpected argument '%.80s'", argv[optind + 1]);
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (strcmp(argv[optind], commands[i]) == 0)
			s->command = commands[i];
	if (!s->command)
		die_usage("unknown command '%.80s': want pause, resume, show or "
		    "purge", argv[optind]);
	if (strcmp(s->command, "purge") != 0 && (s->yes || s->batch))
		die_usage("--yes and --batch go with purge");
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
	s.redis = redis_connect(&s.cfg.redis);

	if (strcmp(s.command, "purge") == 0 && !s.yes)
		refuse_purge(&s);
	for (int i = 0; i < s.nqueues; i++)
		run_command(&s, s.queues[i]);
	jb_free(&s.out);
	script_args_free(&s.call);
	redisFree(s.redis);
	url_forget(&s.cfg.redis);
	return finish_stdout(0);
}
