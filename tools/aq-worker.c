/* aq-worker: run any program as a reliable worker: aq-worker -- CMD ARGS
 * runs CMD once per job of the queue, with leases, retries, timeouts,
 * cancellation and graceful shutdown. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "child.h"
#include "config.h"
#include "id.h"
#include "log.h"
#include "redis.h"
#include "worker.h"

#define CONCURRENCY_MAX 1024
#define WORKER_ID_MAX 200

enum { OPT_LEASE = OPT_TOOL, OPT_GRACE, OPT_TIMEOUT, OPT_BACKOFF, OPT_MAX_JOBS,
	OPT_BURST, OPT_WORKER_ID, OPT_LINES, OPT_PREFETCH, OPT_THROTTLE };

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: aq-worker [-q queue] [-u url | --redis-url-file path] [--prefix p]\n"
	    "                 [-c n] [--lease duration] [--grace duration]\n"
	    "                 [--timeout duration] [--backoff duration] [--max-jobs n]\n"
	    "                 [--burst] [--lines] [--prefetch n] [--worker-id id]\n"
	    "                 [--throttle duration] [--max-line size]\n"
	    "                 -- command [argument ...]\n");
}

static void
parse_options(struct worker_options *o, struct config *cfg, int argc, char **argv)
{
	static const struct option longopts[] = {
		CONFIG_LONG_OPTIONS,
		CONFIG_LONG_OPTIONS_LINES,
		{"concurrency", required_argument, NULL, 'c'},
		{"lease", required_argument, NULL, OPT_LEASE},
		{"grace", required_argument, NULL, OPT_GRACE},
		{"timeout", required_argument, NULL, OPT_TIMEOUT},
		{"backoff", required_argument, NULL, OPT_BACKOFF},
		{"max-jobs", required_argument, NULL, OPT_MAX_JOBS},
		{"burst", no_argument, NULL, OPT_BURST},
		{"worker-id", required_argument, NULL, OPT_WORKER_ID},
		{"lines", no_argument, NULL, OPT_LINES},
		{"prefetch", required_argument, NULL, OPT_PREFETCH},
		{"throttle", required_argument, NULL, OPT_THROTTLE},
		{NULL, 0, NULL, 0},
	};
	int c;

	opterr = 0;
	/* "+": options after the command belong to the command */
	while ((c = getopt_long(argc, argv, "+" CONFIG_OPTSTRING "c:", longopts, NULL)) != -1) {
		if (config_option(cfg, c, optarg, usage))
			continue;
		switch (c) {
		case 'c':
			o->concurrency = (int)option_int("--concurrency", optarg, 1,
			    CONCURRENCY_MAX);
			break;
		case OPT_LEASE:
			o->lease_ms = option_duration("--lease", optarg, 0);
			if (o->lease_ms < 1000)
				die_usage("invalid --lease '%s': want 1s or more", optarg);
			break;
		case OPT_GRACE:
			o->grace_ms = option_duration("--grace", optarg, 1);
			break;
		case OPT_TIMEOUT:
			o->timeout_ms = option_duration("--timeout", optarg, 0);
			break;
		case OPT_BACKOFF:
			o->backoff_ms = option_duration("--backoff", optarg, 0);
			break;
		case OPT_MAX_JOBS:
			o->max_jobs = option_int("--max-jobs", optarg, 1, 1000000000L);
			break;
		case OPT_BURST:
			o->burst = 1;
			break;
		case OPT_WORKER_ID:
			o->worker_id = optarg;
			break;
		case OPT_LINES:
			o->lines = 1;
			break;
		case OPT_PREFETCH:
			o->prefetch = (int)option_int("--prefetch", optarg, 0, CONCURRENCY_MAX);
			break;
		case OPT_THROTTLE:
			o->throttle_ms = option_duration("--throttle", optarg, 1);
			if (o->throttle_ms > THROTTLE_MAX_MS)
				die_usage("invalid --throttle '%s': want 1d or less", optarg);
			break;
		default:
			config_bad_option(c, argv, longopts, usage);
		}
	}
}

/* AQ_WORKER_ID, --worker-id, or host:pid; ids follow the job id rules. */
static const char *
resolve_worker_id(const char *given)
{
	static char id[WORKER_ID_MAX + 1];
	char host[128];
	const char *env = getenv("AQ_WORKER_ID");

	if (!given && env && *env)
		given = env;
	if (given) {
		if (!id_valid(given, strlen(given)))
			die_usage("invalid worker id '%.80s': want 1 to %d of "
			    "A-Z a-z 0-9 . _ : @ / -", given, ID_MAX);
		return given;
	}
	if (gethostname(host, sizeof host) < 0 || !id_valid(host, strnlen(host, sizeof host)))
		snprintf(host, sizeof host, "host");
	snprintf(id, sizeof id, "%s:%d", host, (int)getpid());
	return id;
}

/* The handler command cannot be run (errno says why): exit EX_USAGE,
 * before anything is claimed, saying what to do. */
static void
die_cannot_run(const char *cmd)
{
	int e = errno;
	const char *why = strerror(e);
	char cwd[512];
	struct stat st;

	if (e == ENOENT && !strchr(cmd, '/'))
		die(EX_USAGE, "cannot run %s: %s: no %s in any directory of PATH; "
		    "give its path (./%s), or add its directory to PATH", cmd, why,
		    cmd, cmd);
	if (e == ENOENT)
		die(EX_USAGE, "cannot run %s: %s; give the path of the handler "
		    "after -- (a relative one starts from %s)", cmd, why,
		    getcwd(cwd, sizeof cwd) ? cwd : "the current directory");
	if (e == EISDIR)
		die(EX_USAGE, "cannot run %s: %s; give the handler's file, not a "
		    "directory", cmd, why);
	if (e == EACCES && stat(cmd, &st) == 0 && !S_ISREG(st.st_mode))
		die(EX_USAGE, "cannot run %s: %s: not a regular file; give the "
		    "handler's file", cmd, why);
	if (e == EACCES && stat(cmd, &st) == 0)
		die(EX_USAGE, "cannot run %s: %s: it is not executable; make it so "
		    "(chmod +x %s), or give its interpreter first (-- sh %s)", cmd,
		    why, cmd, cmd);
	die(EX_USAGE, "cannot run %s: %s", cmd, why);
}

/* The #! line of the handler names an interpreter that cannot be run
 * (errno says why): exit EX_USAGE, as the kernel would fail every job. */
static void
die_bad_interpreter(const char *cmd, const char *interp)
{
	const char *why = strerror(errno);
	size_t n = strlen(interp);

	if (n > 0 && interp[n - 1] == '\r')
		die(EX_USAGE, "cannot run %s: its #! line names %.*s followed by a "
		    "carriage return: the file has CRLF line ends; convert them "
		    "(sed -i 's/\\r$//' %s)", cmd, (int)n - 1, interp, cmd);
	die(EX_USAGE, "cannot run %s: its #! line names %s: %s; fix that line, "
	    "or give an interpreter first (-- sh %s)", cmd, interp, why, cmd);
}

int
main(int argc, char **argv)
{
	struct config cfg;
	struct worker_options o = {.concurrency = 1, .lease_ms = 30000,
	    .grace_ms = 10000, .backoff_ms = 1000, .prefetch = -1,
	    .throttle_ms = THROTTLE_DEFAULT_MS};
	redisContext *probe;
	char interp[256];

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
	if (optind >= argc)
		die_usage("no command to run: aq-worker [options] -- command [argument ...]");
	o.argv = argv + optind;
	if (child_find_command(o.argv[0]) < 0)
		die_cannot_run(o.argv[0]);
	if (child_check_interpreter(o.argv[0], interp, sizeof interp) < 0)
		die_bad_interpreter(o.argv[0], interp);
	o.cfg = &cfg;
	o.worker_id = resolve_worker_id(o.worker_id);

	probe = redis_connect(&cfg.redis); /* exit 69 or 77 now, not in the loop */
	redisFree(probe);
	signal(SIGPIPE, SIG_IGN); /* a handler that does not read its payload */
	if (child_keeper_start() < 0)
		die(EX_OSERR, "cannot start the keeper process:");
	warnmsg("worker %s on queue %s: running %s with %d slot%s%s", o.worker_id,
	    cfg.queue, o.argv[0], o.concurrency, o.concurrency == 1 ? "" : "s",
	    o.lines ? ", a line per job" : "");
	int rc = worker_run(&o);
	url_forget(&cfg.redis);
	return rc;
}
