/* aq-sweep: the janitor: recover jobs whose lease expired, promote due
 * delayed jobs, fail jobs waiting too long, forget dead workers, archive to
 * the PostgreSQL ledger and restore from it, trim finished jobs; one JSON
 * line per action, once or --every DURATION. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "archive.h"
#include "clock.h"
#include "config.h"
#include "id.h"
#include "json.h"
#include "keys.h"
#include "ledger.h"
#include "log.h"
#include "mem.h"
#include "pool.h"
#include "redis.h"
#include "script.h"

#define RETENTION_DEFAULT_MS (24LL * 3600 * 1000)
#define RESTORE_GRACE_DEFAULT_MS (60LL * 1000)

enum { OPT_EVERY = OPT_TOOL, OPT_MAX_WAIT, OPT_RETENTION, OPT_LOG_CAP, OPT_BATCH,
	OPT_RESTORE_GRACE };

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
};
static const struct action trim = {"trim", "trimmed", "id", 0};

struct sweeper {
	struct config cfg;
	const char *queues[QUEUES_MAX];
	int nqueues;
	long long every_ms, max_wait_ms, retention_ms;
	long log_cap, batch;
	long long restore_grace_ms;
	struct redis_pool pool;      /* one server, or a cluster's nodes */
	redisContext *redis;         /* of the queue being swept */
	redisContext *registry;      /* of PREFIX:queues */
	int pass_failed;             /* Redis failed in this pass: -1, or -2
	                              * when it refused the credentials */
	struct ledger ledger;        /* with --database-url: open while usable */
	struct archiver archiver;
	int ledger_down;             /* unusable: said once */
	int ledger_failed;           /* in this pass */
	char **names;                /* the queues of this pass */
	size_t nnames, capnames;
	struct script_args call;     /* an action's call, being built */
	struct jbuf out;
	unsigned long actions_taken;
	int down;                    /* Redis unreachable: said once a pass */
};

static volatile sig_atomic_t stop_requested;

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: aq-sweep [-q queue ...] [-u url | --redis-url-file path] [--prefix p]\n"
	    "                [--every duration] [--max-wait duration]\n"
	    "                [--retention duration] [--log-cap n] [--batch n]\n"
	    "                [--database-url url | --database-url-file path]\n"
	    "                [--restore-grace duration]\n");
}

/* The self-pipe of the stop signals: the handler writes a byte to it, so a
 * signal that arrives just before the sleep between passes still ends it. */
static int stop_pipe[2] = {-1, -1};

static void
on_stop(int sig)
{
	int saved = errno;

	(void)sig;
	stop_requested = 1;
	if (stop_pipe[1] >= 0 && write(stop_pipe[1], "", 1) < 0) {
		/* full: a byte is there already, which is all it takes */
	}
	errno = saved;
}

static void
catch_stop_signals(void)
{
	struct sigaction sa = {.sa_handler = on_stop};

	if (pipe(stop_pipe) < 0)
		die(EX_OSERR, "cannot make a pipe for the stop signals:");
	for (int i = 0; i < 2; i++) {
		fcntl(stop_pipe[i], F_SETFD, FD_CLOEXEC);
		fcntl(stop_pipe[i], F_SETFL, O_NONBLOCK);
	}
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
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
	char shown[1024];

	keys_init(&k, s->cfg.prefix, queue);
	script_args_begin(&s->call, &script_sweep);
	script_args_queue_keys(&s->call, &k);
	script_args_arg(&s->call, a->name);
	script_args_arg(&s->call, k.base);
	script_args_argll(&s->call, s->log_cap);
	script_args_argll(&s->call, s->batch);
	script_args_argll(&s->call, param);
	for (;;) {
		redisReply *r = script_call(s->redis, &s->cfg.redis, &s->call);
		size_t step = a->pairs ? 2 : 1, n;
		if (!r) {
			warnmsg("lost the connection to redis at %s while sweeping "
			    "queue %s: %s", redis_display(&s->cfg.redis, s->redis, shown,
			    sizeof shown), queue, s->redis->errstr);
			return -1;
		}
		if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
		    r->element[0]->type != REDIS_REPLY_INTEGER) {
			warnmsg("redis at %s refused the %s sweep of queue %s: %s",
			    redis_display(&s->cfg.redis, s->redis, shown, sizeof shown), a->name,
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

static void
add_name(struct sweeper *s, const char *q)
{
	if (!queue_valid(q))
		return;
	s->names = xgrow(s->names, &s->capnames, s->nnames + 1, 64, sizeof *s->names);
	s->names[s->nnames++] = xstrdup(q);
}

static void
clear_names(struct sweeper *s)
{
	for (size_t i = 0; i < s->nnames; i++)
		free(s->names[i]);
	s->nnames = 0;
}

/* The queues to sweep: those given by -q; else every queue in
 * PREFIX:queues and, with a ledger, every queue it knows (after Redis lost
 * its data, only the ledger does). -1 (reported) when Redis failed. */
static int
list_queues(struct sweeper *s)
{
	struct keys k;
	const char *argv[2] = {"SMEMBERS", k.queues};
	char shown[1024];
	redisReply *r;

	clear_names(s);
	if (s->nqueues > 0) {
		for (int i = 0; i < s->nqueues; i++)
			add_name(s, s->queues[i]);
		return 0;
	}
	keys_init(&k, s->cfg.prefix, "x");
	argv[1] = k.queues;
	r = redisCommandArgv(s->registry, 2, argv, NULL);
	if (!r || r->type != REDIS_REPLY_ARRAY) {
		warnmsg("cannot list the queues at redis %s: %s",
		    redis_display(&s->cfg.redis, s->registry, shown, sizeof shown),
		    r ? r->str : s->registry->errstr);
		freeReplyObject(r);
		return -1;
	}
	for (size_t i = 0; i < r->elements; i++)
		add_name(s, r->element[i]->str);
	freeReplyObject(r);
	if (s->ledger.conn && !s->ledger_failed) {
		PGresult *q = archive_ledger_queues(&s->archiver);
		if (!q)
			s->ledger_failed = 1;
		for (int i = 0; q && i < pq.ntuples(q); i++)
			add_name(s, pq.getvalue(q, i, 0));
		pq.clear(q);
	}
	s->nnames = strv_sort_unique(s->names, s->nnames);
	return 0;
}

/* Without a ledger, say (once per run) that a queue's finished jobs are
 * kept for one: PREFIX:{Q}:ledger is set, so they wait to be archived. */
static int
warn_unarchived(struct sweeper *s, const char *queue)
{
	static char said[QUEUES_MAX][QUEUE_MAX + 1];
	static int nsaid;
	struct keys k;
	const char *argv[2] = {"ZCARD", k.unarchived};
	redisReply *r;

	for (int i = 0; i < nsaid; i++)
		if (strcmp(said[i], queue) == 0)
			return 0;
	keys_init(&k, s->cfg.prefix, queue);
	argv[1] = k.unarchived;
	if (!(r = redisCommandArgv(s->redis, 2, argv, NULL)))
		return -1;
	if (r->type == REDIS_REPLY_INTEGER && r->integer > 0) {
		warnmsg("queue %s is archived to a postgresql ledger, but no "
		    "--database-url is given: its %lld finished jobs wait for the "
		    "archive and are not trimmed (DEL %s to stop archiving it)",
		    queue, r->integer, k.ledger);
		if (nsaid < QUEUES_MAX)
			snprintf(said[nsaid++], sizeof said[0], "%s", queue);
	}
	freeReplyObject(r);
	return 0;
}

/* The ledger's part of a queue's sweep, before (restore) or after
 * (archive) the Redis actions. Returns -1 when Redis failed; a ledger
 * failure only marks the pass (nothing more is archived, nothing trimmed). */
static int
ledger_step(struct sweeper *s, const char *queue,
    int (*step)(struct archiver *, const char *))
{
	int rc;

	if (!s->ledger.conn || s->ledger_failed)
		return 0;
	rc = step(&s->archiver, queue);
	if (rc == ARCHIVE_LEDGER_FAILED) {
		s->ledger_failed = 1;
		return 0;
	}
	return rc;
}

static int
sweep_queue(struct sweeper *s, const char *queue)
{
	if (ledger_step(s, queue, restore_queue) < 0)
		return -1;
	for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++) {
		long long param = 0;
		if (strcmp(actions[i].name, "stale") == 0) {
			if (s->max_wait_ms < 0)
				continue;
			param = s->max_wait_ms;
		}
		if (sweep_action(s, queue, &actions[i], param) < 0)
			return -1;
	}
	if (ledger_step(s, queue, archive_queue) < 0)
		return -1;
	if (!s->cfg.database_url && warn_unarchived(s, queue) < 0)
		return -1;
	/* a ledger that failed may not have what trimming would delete */
	if (s->cfg.database_url && (!s->ledger.conn || s->ledger_failed))
		return 0;
	return sweep_action(s, queue, &trim, s->retention_ms);
}

/* With a ledger: (re)open it for this pass. A failure is said once, until
 * it works again; the pass then does its Redis work and trims nothing. */
static void
open_ledger(struct sweeper *s)
{
	int code;

	s->ledger_failed = 0;
	if (!s->cfg.database_url)
		return;
	if (s->ledger.conn && ledger_alive(&s->ledger) < 0) {
		ledger_close(&s->ledger);
		s->archiver.temp_tables = 0;
	}
	if (!s->ledger.conn) {
		if (ledger_open(&s->ledger, s->cfg.database_url, s->cfg.prefix, &code) < 0) {
			if (code == EX_USAGE)
				die(code, "%s (from %s)", s->ledger.err, s->cfg.database_from);
			if (!s->ledger_down++)
				warnmsg("cannot use the postgresql ledger at %s: %s; "
				    "archiving and restoring wait for it, nothing is "
				    "trimmed%s", s->ledger.shown, s->ledger.err,
				    s->every_ms >= 0 ? "; trying again each pass" : "");
			ledger_close(&s->ledger);
			s->ledger_failed = 1;
			return;
		}
		if (s->ledger_down) {
			warnmsg("the postgresql ledger at %s is back", s->ledger.shown);
			s->ledger_down = 0;
		}
	}
	if (archive_begin_pass(&s->archiver) == ARCHIVE_LEDGER_FAILED)
		s->ledger_failed = 1;
}

/* Redis failed in this pass: rc is -1, or -2 when it refused the
 * credentials (which the pass reports before anything else). */
static void
mark_failed(struct sweeper *s, int rc)
{
	if (!s->pass_failed || rc == -2)
		s->pass_failed = rc;
}

/* The connection for a key (of a queue, or PREFIX:queues), from the
 * pool; NULL when it cannot be made, said once until a pass works. */
static redisContext *
connection_for(struct sweeper *s, const char *key)
{
	char err[REDIS_ERR_MAX], shown[1024];
	int code;
	redisContext *c = redis_pool_try_for(&s->pool, key, err, sizeof err, &code);

	if (!c) {
		if (!s->down++)
			warnmsg("cannot connect to redis at %s: %s%s",
			    url_display(&s->cfg.redis, shown, sizeof shown), err,
			    s->every_ms >= 0 ? "; trying again each pass" : "");
		mark_failed(s, code == EX_NOPERM ? -2 : -1);
	}
	return c;
}

/* Forget a connection that failed: the next use connects again. */
static void
drop_connection(struct sweeper *s, redisContext *c)
{
	if (s->archiver.redis == c)
		s->archiver.redis = NULL; /* its run id is to be read again */
	if (s->registry == c)
		s->registry = NULL;
	redis_pool_drop(&s->pool, c);
	mark_failed(s, -1);
}

/* Sweep one queue on its server; -1 when that server failed (reported).
 * On a cluster, one node that fails does not stop the others' queues. */
static int
sweep_on_its_server(struct sweeper *s, const char *queue)
{
	struct keys k;

	keys_init(&k, s->cfg.prefix, queue);
	if (!(s->redis = connection_for(s, k.base)))
		return -1;
	if (s->ledger.conn && s->archiver.redis != s->redis &&
	    archive_use_server(&s->archiver, s->redis) < 0) {
		drop_connection(s, s->redis);
		return -1;
	}
	if (sweep_queue(s, queue) < 0) {
		drop_connection(s, s->redis);
		return -1;
	}
	return 0;
}

/* Before a pass: with sentinels, connect anew (after a failover, the old
 * primary takes writes until it is made a replica, and loses them then);
 * with a cluster, read the slot map again (a slot may have moved). */
static void
begin_pass(struct sweeper *s)
{
	s->pass_failed = 0;
	if (s->cfg.redis.kind == URL_SENTINEL) {
		redis_pool_close(&s->pool);
		redis_pool_init(&s->pool, &s->cfg.redis);
		s->archiver.redis = NULL;
	}
	redis_pool_remap(&s->pool);
	s->registry = NULL;
	s->archiver.registry = NULL;
}

/* One pass over the queues. Returns -1 when Redis (a node of the cluster)
 * could not be reached, -2 when it refused the credentials, -3 when only
 * the ledger failed. */
static int
sweep_pass(struct sweeper *s)
{
	char shown[1024];
	struct keys k;
	int one_server = s->cfg.redis.kind != URL_CLUSTER;

	begin_pass(s);
	keys_init(&k, s->cfg.prefix, "x");
	/* the registry: to list the queues, and for the ledger to register
	 * a queue it restores (on a cluster, a node of its own) */
	if ((s->nqueues == 0 || s->cfg.database_url) &&
	    !(s->registry = connection_for(s, k.queues)))
		return s->pass_failed;
	s->archiver.registry = s->registry;
	open_ledger(s);
	if (list_queues(s) < 0)
		drop_connection(s, s->registry);
	else
		for (size_t i = 0; i < s->nnames && !stop_requested; i++)
			if (sweep_on_its_server(s, s->names[i]) < 0 && one_server)
				break;
	if (fflush(stdout) != 0)
		die_output();
	if (s->pass_failed)
		return s->pass_failed;
	if (s->down) {
		warnmsg("redis at %s is back", url_display(&s->cfg.redis, shown,
		    sizeof shown));
		s->down = 0;
	}
	if (s->ledger_failed && s->ledger.conn && ledger_alive(&s->ledger) < 0) {
		ledger_close(&s->ledger);
		s->archiver.temp_tables = 0;
	}
	return s->ledger_failed ? -3 : 0;
}

/* Sleep ms, or until a stop signal, however close before it came. */
static void
sleep_ms(long long ms)
{
	long long until = clock_mono_ms() + ms, left;

	/* ... or until the reader of its output went away (stdout_watch) */
	while (!stop_requested && (left = until - clock_mono_ms()) > 0)
		if (wait_readable(stop_pipe[0], left) > 0)
			break;
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
		{"restore-grace", required_argument, NULL, OPT_RESTORE_GRACE},
		CONFIG_LONG_OPTIONS_LEDGER,
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
		case OPT_RESTORE_GRACE:
			s->restore_grace_ms = option_duration("--restore-grace", optarg, 1);
			break;
		default:
			config_bad_option(c, argv, longopts, usage);
		}
	}
	if (optind < argc)
		die_usage("unexpected argument '%.80s'", argv[optind]);
}

/* The exit status of a single pass (sysexits). */
static int
pass_status(int rc)
{
	switch (rc) {
	case 0:
		return 0;
	case -2:
		return EX_NOPERM;
	default:
		return EX_UNAVAILABLE;
	}
}

int
main(int argc, char **argv)
{
	static struct sweeper s = {.every_ms = -1, .max_wait_ms = -1,
	    .retention_ms = RETENTION_DEFAULT_MS, .log_cap = LOG_CAP_COUNT,
	    .batch = 1000, .restore_grace_ms = RESTORE_GRACE_DEFAULT_MS};
	int rc;

	log_init(argv[0]);
	catch_stop_signals();
	config_init(&s.cfg);
	parse_options(&s, argc, argv);
	config_finish(&s.cfg);
	redis_pool_init(&s.pool, &s.cfg.redis);
	stdout_watch();
	ledger_config(&s.cfg);
	s.archiver = (struct archiver){.url = &s.cfg.redis, .ledger = &s.ledger,
	    .prefix = s.cfg.prefix, .batch = s.batch,
	    .restore_grace_ms = s.restore_grace_ms, .out = &s.out,
	    .stop = &stop_requested};

	rc = sweep_pass(&s);
	while (s.every_ms >= 0 && !stop_requested) {
		sleep_ms(s.every_ms);
		if (!stop_requested)
			sweep_pass(&s); /* a failure is logged; the next pass retries */
	}
	redis_pool_close(&s.pool);
	ledger_close(&s.ledger);
	clear_names(&s);
	free(s.names);
	script_args_free(&s.call);
	jb_free(&s.out);
	config_free(&s.cfg);
	return finish_stdout(s.every_ms < 0 ? pass_status(rc) : 0);
}
