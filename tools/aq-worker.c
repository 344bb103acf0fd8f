/* aq-worker: run any program as a reliable worker: aq-worker -- CMD ARGS
 * runs CMD once per job of the queue, with leases, retries, timeouts,
 * cancellation and graceful shutdown. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "child.h"
#include "config.h"
#include "handler.h"
#include "keys.h"
#include "log.h"
#include "redis.h"
#include "worker.h"

enum { OPT_LEASE = OPT_TOOL, OPT_MAX_JOBS, OPT_BURST, OPT_PREFETCH,
	OPT_REPLICAS };

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: aq-worker [-q queue] [-u url | --redis-url-file path] [--prefix p]\n"
	    "                 [-c n] [--lease duration] [--grace duration]\n"
	    "                 [--timeout duration] [--backoff duration] [--max-jobs n]\n"
	    "                 [--burst] [--lines] [--prefetch n] [--worker-id id]\n"
	    "                 [--throttle duration] [--max-line size] [--replicas n]\n"
	    "                 -- command [argument ...]\n");
}

static void
parse_options(struct worker_options *o, struct config *cfg, int argc, char **argv)
{
	static const struct option longopts[] = {
		CONFIG_LONG_OPTIONS,
		CONFIG_LONG_OPTIONS_LINES,
		HANDLER_LONG_OPTIONS,
		{"lease", required_argument, NULL, OPT_LEASE},
		{"max-jobs", required_argument, NULL, OPT_MAX_JOBS},
		{"burst", no_argument, NULL, OPT_BURST},
		{"prefetch", required_argument, NULL, OPT_PREFETCH},
		{"replicas", required_argument, NULL, OPT_REPLICAS},
		{NULL, 0, NULL, 0},
	};
	int c;

	opterr = 0;
	/* "+": options after the command belong to the command */
	while ((c = getopt_long(argc, argv, "+" CONFIG_OPTSTRING HANDLER_OPTSTRING, longopts, NULL)) != -1) {
		if (config_option(cfg, c, optarg, usage) || handler_option(o, c, optarg))
			continue;
		switch (c) {
		case OPT_LEASE:
			o->lease_ms = option_duration("--lease", optarg, 0);
			if (o->lease_ms < 1000)
				die_usage("invalid --lease '%s': want 1s or more", optarg);
			break;
		case OPT_MAX_JOBS:
			o->max_jobs = option_int("--max-jobs", optarg, 1, 1000000000L);
			break;
		case OPT_BURST:
			o->burst = 1;
			break;
		case OPT_PREFETCH:
			o->prefetch = (int)option_int("--prefetch", optarg, 0, CONCURRENCY_MAX);
			break;
		case OPT_REPLICAS:
			o->replicas = (int)option_int("--replicas", optarg, 1, REPLICAS_MAX);
			break;
		default:
			config_bad_option(c, argv, longopts, usage);
		}
	}
}

/* --replicas: Redis lets this user run WAIT (a WAIT 0 0 answers at once);
 * without it every claim would go back on the queue: exit 77 now (c is
 * freed then). */
static void
check_wait_allowed(redisContext *c, const struct redis_url *u)
{
	const char *argv[] = {"WAIT", "0", "0"};
	redisReply *r = redisCommandArgv(c, 3, argv, NULL);
	char shown[1024];

	if (!r)
		redis_die_io(c, u, "WAIT");
	if (r->type == REDIS_REPLY_ERROR) {
		char why[256];
		int code = strncmp(r->str, "NOPERM", 6) == 0 ? EX_NOPERM : EX_UNAVAILABLE;
		snprintf(why, sizeof why, "%s", r->str);
		freeReplyObject(r);
		redisFree(c);
		die(code, "--replicas: redis at %s refused WAIT: %s (the user needs "
		    "+wait: aq(7) ACCESS CONTROL)", url_display(u, shown,
		    sizeof shown), why);
	}
	freeReplyObject(r);
}

int
main(int argc, char **argv)
{
	struct config cfg;
	struct worker_options o = {HANDLER_DEFAULTS, .lease_ms = 30000, .prefetch = -1};
	redisContext *probe;
	struct keys probe_keys;

	log_init(argv[0]);
	config_init(&cfg);
	parse_options(&o, &cfg, argc, argv);
	config_finish(&cfg);
	/* no slot waits for Redis between two jobs; in line mode, where a job
	 * costs little besides Redis, calls of more jobs each (up to half the
	 * jobs claimed ahead are reported per call) spread the fixed cost of
	 * a call: a fifth less Redis time per job at -c 8 than with twice -c */
	if (o.prefetch < 0)
		o.prefetch = o.lines ? (o.concurrency * 4 > 32 ? o.concurrency * 4 : 32) :
		    o.concurrency;
	if (o.prefetch > CONCURRENCY_MAX)
		o.prefetch = CONCURRENCY_MAX;
	handler_command(&o, argc - optind, argv + optind);
	o.cfg = &cfg;

	keys_init(&probe_keys, cfg.prefix, cfg.queue);
	probe = redis_connect_for(&cfg.redis, probe_keys.base); /* exit 69 or 77
								  * now, not in the loop */
	if (o.replicas > 0)
		check_wait_allowed(probe, &cfg.redis);
	redisFree(probe);
	handler_keeper_start();
	warnmsg("worker %s on queue %s: running %s with %d slot%s%s", o.worker_id,
	    cfg.queue, o.argv[0], o.concurrency, o.concurrency == 1 ? "" : "s",
	    o.lines ? ", a line per job" : "");
	int rc = worker_run(&o);
	url_forget(&cfg.redis);
	return rc;
}
