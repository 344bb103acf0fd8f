/* aq-run: run jobs directly, with no Redis: aq-run -- CMD ARGS runs CMD
 * for each JSON line of stdin as aq-worker would run it for a job, and
 * prints each job's final record, as aq-status prints it. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "child.h"
#include "config.h"
#include "handler.h"
#include "job.h"
#include "log.h"
#include "worker.h"

#define CONCURRENCY_MAX 1024

enum { OPT_GRACE = OPT_TOOL, OPT_TIMEOUT, OPT_BACKOFF, OPT_MAX_ATTEMPTS,
	OPT_LINES, OPT_EVENTS, OPT_WORKER_ID };

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: aq-run [-q queue] [-c n] [--max-attempts n] [--timeout duration]\n"
	    "              [--grace duration] [--backoff duration] [--lines] [--events]\n"
	    "              [--worker-id id] [--max-line size]\n"
	    "              -- command [argument ...]\n");
}

static void
parse_options(struct worker_options *o, struct direct_options *d,
    struct config *cfg, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"queue", required_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, OPT_VERSION},
		CONFIG_LONG_OPTIONS_LINES,
		{"concurrency", required_argument, NULL, 'c'},
		{"max-attempts", required_argument, NULL, OPT_MAX_ATTEMPTS},
		{"timeout", required_argument, NULL, OPT_TIMEOUT},
		{"grace", required_argument, NULL, OPT_GRACE},
		{"backoff", required_argument, NULL, OPT_BACKOFF},
		{"lines", no_argument, NULL, OPT_LINES},
		{"events", no_argument, NULL, OPT_EVENTS},
		{"worker-id", required_argument, NULL, OPT_WORKER_ID},
		{NULL, 0, NULL, 0},
	};
	int c;

	opterr = 0;
	/* "+": options after the command belong to the command */
	while ((c = getopt_long(argc, argv, "+:q:c:h", longopts, NULL)) != -1) {
		if (config_option(cfg, c, optarg, usage))
			continue;
		switch (c) {
		case 'c':
			o->concurrency = (int)option_int("--concurrency", optarg, 1,
			    CONCURRENCY_MAX);
			break;
		case OPT_MAX_ATTEMPTS:
			d->max_attempts = (int)option_int("--max-attempts", optarg, 1,
			    MAX_ATTEMPTS_LIMIT);
			break;
		case OPT_TIMEOUT:
			o->timeout_ms = option_duration("--timeout", optarg, 0);
			break;
		case OPT_GRACE:
			o->grace_ms = option_duration("--grace", optarg, 1);
			break;
		case OPT_BACKOFF:
			o->backoff_ms = option_duration("--backoff", optarg, 0);
			break;
		case OPT_LINES:
			o->lines = 1;
			break;
		case OPT_EVENTS:
			d->events = 1;
			break;
		case OPT_WORKER_ID:
			o->worker_id = optarg;
			break;
		default:
			config_bad_option(c, argv, longopts, usage);
		}
	}
}

int
main(int argc, char **argv)
{
	struct config cfg;
	struct worker_options o = {.concurrency = 1, .grace_ms = 10000,
	    .backoff_ms = 1000};
	struct direct_options d = {.max_attempts = MAX_ATTEMPTS_DEFAULT};

	log_init(argv[0]);
	config_init(&cfg);
	parse_options(&o, &d, &cfg, argc, argv);
	config_check_names(&cfg);
	if (optind >= argc)
		die_usage("no command to run: aq-run [options] -- command [argument ...]");
	o.argv = argv + optind;
	handler_check_or_die(o.argv[0]);
	o.cfg = &cfg;
	o.worker_id = handler_worker_id(o.worker_id);

	signal(SIGPIPE, SIG_IGN); /* a handler that does not read its payload */
	if (child_keeper_start() < 0)
		die(EX_OSERR, "cannot start the keeper process:");
	return finish_stdout(worker_run_direct(&o, &d, STDIN_FILENO));
}
