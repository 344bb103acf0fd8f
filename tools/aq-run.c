/* aq-run: run jobs directly, with no Redis: aq-run -- CMD ARGS runs CMD
 * for each JSON line of stdin as aq-worker would run it for a job, and
 * prints each job's final record, as aq-status prints it. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"
#include "handler.h"
#include "job.h"
#include "log.h"
#include "worker.h"

enum { OPT_MAX_ATTEMPTS = OPT_TOOL, OPT_EVENTS };

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: aq-run [-q queue] [-c n] [--max-attempts n] [--timeout duration]\n"
	    "              [--grace duration] [--backoff duration] [--lines] [--events]\n"
	    "              [--throttle duration] [--worker-id id] [--max-line size]\n"
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
		HANDLER_LONG_OPTIONS,
		{"max-attempts", required_argument, NULL, OPT_MAX_ATTEMPTS},
		{"events", no_argument, NULL, OPT_EVENTS},
		{NULL, 0, NULL, 0},
	};
	int c;

	opterr = 0;
	/* "+": options after the command belong to the command */
	while ((c = getopt_long(argc, argv, "+:q:h" HANDLER_OPTSTRING, longopts, NULL)) != -1) {
		if (config_option(cfg, c, optarg, usage) || handler_option(o, c, optarg))
			continue;
		switch (c) {
		case OPT_MAX_ATTEMPTS:
			d->max_attempts = (int)option_int("--max-attempts", optarg, 1,
			    MAX_ATTEMPTS_LIMIT);
			break;
		case OPT_EVENTS:
			d->events = 1;
			break;
		default:
			config_bad_option(c, argv, longopts, usage);
		}
	}
}

int
main(int argc, char **argv)
{
	struct worker_options o = {HANDLER_DEFAULTS};
	struct direct_options d = {.max_attempts = MAX_ATTEMPTS_DEFAULT};
	struct config cfg;

	log_init(argv[0]);
	config_init(&cfg);
	parse_options(&o, &d, &cfg, argc, argv);
	config_check_names(&cfg);
	handler_command(&o, argc - optind, argv + optind);
	o.cfg = &cfg;

	handler_keeper_start();
	return finish_stdout(worker_run_direct(&o, &d, STDIN_FILENO));
}
