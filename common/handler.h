/* handler.h: what aq-worker and aq-run check of a handler command before
 * any job runs, and the worker id its jobs see (AQ_WORKER_ID). */
#ifndef AQ_HANDLER_H
#define AQ_HANDLER_H

#include <getopt.h>

#include "config.h"
#include "worker.h"

#define CONCURRENCY_MAX 1024

/* The options of how handlers run, shared by aq-worker and aq-run: -c
 * (HANDLER_OPTSTRING) and the long ones of HANDLER_LONG_OPTIONS. */
enum { OPT_GRACE = OPT_HANDLER, OPT_TIMEOUT, OPT_BACKOFF, OPT_LINES, OPT_WORKER_ID,
	OPT_THROTTLE };
#define HANDLER_OPTSTRING "c:"
#define HANDLER_LONG_OPTIONS \
	{"concurrency", required_argument, NULL, 'c'}, \
	{"grace", required_argument, NULL, OPT_GRACE}, \
	{"timeout", required_argument, NULL, OPT_TIMEOUT}, \
	{"backoff", required_argument, NULL, OPT_BACKOFF}, \
	{"lines", no_argument, NULL, OPT_LINES}, \
	{"worker-id", required_argument, NULL, OPT_WORKER_ID}, \
	{"throttle", required_argument, NULL, OPT_THROTTLE}

/* The defaults of those options, for a struct worker_options initializer. */
#define HANDLER_DEFAULTS .concurrency = 1, .grace_ms = 10000, .backoff_ms = 1000, \
	.throttle_ms = THROTTLE_DEFAULT_MS

/* handler_option: apply option c (a getopt code) with its value arg to o
 * when it is one of those: 1, else 0. A bad value exits EX_USAGE. */
int handler_option(struct worker_options *o, int c, const char *arg);

/* handler_command: the handler command, argv[0..argc) (the operands after
 * the options), into o->argv, and the worker id its jobs see into
 * o->worker_id: the one given (--worker-id), else AQ_WORKER_ID, else
 * host:pid. Exits EX_USAGE, saying what to do, when there is no command,
 * when it cannot be run or names in its #! line an interpreter that
 * cannot be (every job would fail), or when the worker id is invalid. */
void handler_command(struct worker_options *o, int argc, char **argv);

/* handler_keeper_start: ignore SIGPIPE (a handler that does not read its
 * payload) and start the keeper (child.h), or exit EX_OSERR. */
void handler_keeper_start(void);

#endif
