/* aq-sweep: the janitor: recover jobs whose lease expired, promote due
 * delayed jobs, fail jobs waiting too long, forget dead workers, trim
 * finished jobs; one JSON line per action, once or --every DURATION. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "id.h"
#include "json.h"
#include "keys.h"
#include "log.h"
#include "mem.h"
#include "redis.h"
#include "script.h"

#define QUEUES_MAX 1024
#define RETENTION_DEFAULT_MS (24LL * 3600 * 1000)
#define LOG_CAP_DEFAULT 100000

enum { OPT_EVERY = OPT_TOOL, OPT_MAX_WAIT, OPT_RETENTION, OPT_LOG_CAP, OPT_BATCH };

/* An action of sweep.lua and how its results are printed. */
struct action {
	const char *name;     /* of sweep.lua */
	const char *verb;     /* "action" of the output line */
	const char *what;     /* the field an item is printed as */
	int pairs;            /* items come as id, new status */
};

static const struct action actions[] = {
	{"workers", "worker_removed", "worker", 0},
	{"recover", "recovered", "id", 1},
	{"promote", "promoted", "id", 0},
	{"stale", "failed_stale", "id", 0},
	{"trim", "trimmed", "id", 0},
};

struct sweeper {
	struct config cfg;
	const char *queues[QUEUES_MAX];
	int nqueues;
	long long every_ms, max_wait_ms, retention_ms;
	long log_cap, batch;
	redisContext *redis;
	struct jbuf out;
	unsigned long actions_taken;
	int down;                    /* Redis unreachable: said once */
};

static volatile sig_atomic_t stop_requested;

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: aq-sweep [-q queue ...] [-u url | --redis-url-file path] [--prefix p]\n"
	    "                [--every duration] [--max-wait duration]\n"
	    "                [--retention duration] [--log-cap n] [--batch n]\n");
}

static void
on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void
print_item(struct sweeper *s, const char *queue, const struct action *a,
    const redisReply *item, const redisReply *status)
{
	jb_reset(&s->out);
	jb_obj_begin(&s->out);
	jb_kstr(&s->out, "queue", queue);
	jb_kstr(&s->out, "action", a->verb);
	jb_key(&s->out, a->what);
	jb_str(&s->out, item->str, item->len);
	if (status) {
		jb_key(&s->out, "status");
		jb_str(&s->out, status->str, status->len);
	}
	jb_obj_end(&s->out);
	if (jb_line(&s->out) < 0)
		die_output();
	s->actions_taken++;
}

/* Run one action on one queue, batch after batch, until nothing is due.
 * Returns -1 when the connection failed (the message is printed). */
static int
sweep_action(struct sweeper *s, const char *queue, const struct action *a,
    long long param)
{
	struct keys k;
	char numkeys[16], cap[24], limit[24], p[24], shown[1024];
	const char *argv[3 + KEYS_SCRIPT + 5];
	size_t lens[3 + KEYS_SCRIPT + 5];

	keys_init(&k, s->cfg.prefix, queue);
	snprintf(cap, sizeof cap, "%ld", s->log_cap);
	snprintf(limit, sizeof limit, "%ld", s->batch);
	snprintf(p, sizeof p, "%lld", param);
	script_argv(&script_sweep, KEYS_SCRIPT, numkeys, argv, lens);
	int argc = 3 + keys_script_argv(&k, argv + 3);
	const char *args[] = {a->name, k.base, cap, limit, p};
	for (int i = 0; i < 5; i++)
		argv[argc++] = args[i];
	for (int i = 3; i < argc; i++)
		lens[i] = strlen(argv[i]);
	for (;;) {
		redisReply *r = script_call(s->redis, &s->cfg.redis, &script_sweep,
		    argc, argv, lens);
		size_t step = a->pairs ? 2 : 1, n;
		if (!r) {
			warnmsg("lost the connection to redis at %s while sweeping "
			    "queue %s: %s", url_display(&s->cfg.redis, shown, sizeof shown),
			    queue, s->redis->errstr);
			return -1;
		}
		if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
		    r->element[0]->type != REDIS_REPLY_INTEGER) {
			warnmsg("redis at %s refused the %s sweep of queue %s: %s",
			    url_display(&s->cfg.redis, shown, sizeof shown), a->name,
			    queue, r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
			freeReplyObject(r);
			return -1;
		}
		for (size_t i = 1; i + step - 1 < r->elements; i += step)
			print_item(s, queue, a, r->element[i], a->pairs ? r->element[i + 1] : NULL);
		n = (size_t)r->element[0]->integer; /* entries looked at */
		freeReplyObject(r);
		if ((long)n < s->batch || stop_requested)
			return 0;
	}
}

/* The queues to sweep: every queue in PREFIX:queues; NULL (reported)
 * when Redis failed. */
static redisReply *
known_queues(struct sweeper *s)
{
	struct keys k;
	const char *argv[2] = {"SMEMBERS", k.queues};
	char shown[1024];
	redisReply *r;

	keys_init(&k, s->cfg.prefix, "x");
	r = redisCommandArgv(s->redis, 2, argv, NULL);
	if (r && r->type == REDIS_REPLY_ARRAY)
		return r;
	warnmsg("cannot list the queues at redis %s: %s",
	    url_display(&s->cfg.redis, shown, sizeof shown),
	    r ? r->str : s->redis->errstr);
	freeReplyObject(r);
	return NULL;
}

static int
sweep_queue(struct sweeper *s, const char *queue)
{
	for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++) {
		long long param = 0;
		if (strcmp(actions[i].name, "stale") == 0) {
			if (s->max_wait_ms < 0)
				continue;
			param = s->max_wait_ms;
		} else if (strcmp(actions[i].name, "trim") == 0) {
			param = s->retention_ms;
		}
		if (sweep_action(s, queue, &actions[i], param) < 0)
			return -1;
	}
	return 0;
}

/* One pass over the queues. Returns -1 when Redis could not be reached. */
static int
sweep_pass(struct sweeper *s)
{
	char err[512], shown[1024];
	int code, rc = 0;

	if (!s->redis) {
		s->redis = redis_try_connect(&s->cfg.redis, err, sizeof err, &code);
		if (!s->redis) {
			if (!s->down++)
				warnmsg("cannot connect to redis at %s: %s%s",
				    url_display(&s->cfg.redis, shown, sizeof shown), err,
				    s->every_ms >= 0 ? "; trying again each pass" : "");
			return code == EX_NOPERM ? -2 : -1;
		}
		if (s->down) {
			warnmsg("redis at %s is back", url_display(&s->cfg.redis, shown,
			    sizeof shown));
			s->down = 0;
		}
	}
	if (s->nqueues > 0) {
		for (int i = 0; i < s->nqueues && rc == 0 && !stop_requested; i++)
			rc = sweep_queue(s, s->queues[i]);
	} else {
		redisReply *q = known_queues(s);
		if (!q)
			rc = -1;
		for (size_t i = 0; q && i < q->elements && rc == 0 && !stop_requested; i++)
			if (queue_valid(q->element[i]->str))
				rc = sweep_queue(s, q->element[i]->str);
		freeReplyObject(q);
	}
	if (fflush(stdout) != 0)
		die_output();
	if (rc < 0) {
		redisFree(s->redis);
		s->redis = NULL;
	}
	return rc;
}

static void
sleep_ms(long long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

	while (!stop_requested && nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void
add_queue(struct sweeper *s, const char *q)
{
	if (!queue_valid(q))
		die(EX_USAGE, "invalid queue name '%.120s': want 1 to %d of "
		    "A-Z a-z 0-9 . _ -", q, QUEUE_MAX);
	if (s->nqueues == QUEUES_MAX)
		die(EX_USAGE, "too many -q: at most %d", QUEUES_MAX);
	s->queues[s->nqueues++] = q;
}

static void
parse_options(struct sweeper *s, int argc, char **argv)
{
	static const struct option longopts[] = {
		CONFIG_LONG_OPTIONS,
		{"every", required_argument, NULL, OPT_EVERY},
		{"max-wait", required_argument, NULL, OPT_MAX_WAIT},
		{"retention", required_argument, NULL, OPT_RETENTION},
		{"log-cap", required_argument, NULL, OPT_LOG_CAP},
		{"batch", required_argument, NULL, OPT_BATCH},
		{NULL, 0, NULL, 0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "q:u:h", longopts, NULL)) != -1) {
		if (c == 'q') { /* repeatable here: several queues */
			add_queue(s, optarg);
			continue;
		}
		if (config_option(&s->cfg, c, optarg, usage))
			continue;
		switch (c) {
		case OPT_EVERY:
			s->every_ms = option_duration("--every", optarg, 0);
			break;
		case OPT_MAX_WAIT:
			s->max_wait_ms = option_duration("--max-wait", optarg, 0);
			break;
		case OPT_RETENTION:
			s->retention_ms = option_duration("--retention", optarg, 1);
			break;
		case OPT_LOG_CAP:
			s->log_cap = option_int("--log-cap", optarg, 100, 100000000L);
			break;
		case OPT_BATCH:
			s->batch = option_int("--batch", optarg, 1, 100000);
			break;
		default:
			usage(stderr);
			exit(EX_USAGE);
		}
	}
	if (optind < argc)
		die(EX_USAGE, "unexpected argument '%.80s'", argv[optind]);
}

int
main(int argc, char **argv)
{
	static struct sweeper s = {.every_ms = -1, .max_wait_ms = -1,
	    .retention_ms = RETENTION_DEFAULT_MS, .log_cap = LOG_CAP_DEFAULT,
	    .batch = 1000};
	struct sigaction sa = {.sa_handler = on_stop};
	int rc;

	log_init(argv[0]);
	config_init(&s.cfg);
	parse_options(&s, argc, argv);
	config_finish(&s.cfg);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	rc = sweep_pass(&s);
	if (s.every_ms < 0 && rc < 0)
		return finish_stdout(rc == -2 ? EX_NOPERM : EX_UNAVAILABLE);
	while (s.every_ms >= 0 && !stop_requested) {
		sleep_ms(s.every_ms);
		if (!stop_requested)
			sweep_pass(&s); /* a failure is logged; the next pass retries */
	}
	if (s.redis)
		redisFree(s.redis);
	jb_free(&s.out);
	url_forget(&s.cfg.redis);
	return finish_stdout(0);
}
