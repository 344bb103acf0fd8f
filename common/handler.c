/* handler.c: what aq-worker and aq-run check of a handler command before
 * any job runs, and the worker id its jobs see. */
#include "handler.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "child.h"
#include "id.h"
#include "log.h"

#define WORKER_ID_MAX 200

/* AQ_WORKER_ID, --worker-id, or host:pid; ids follow the job id rules. */
static const char *
worker_id(const char *given)
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

/* The handler command cmd cannot be run, or names in its #! line an
 * interpreter that cannot be: exit EX_USAGE, as every job would fail. */
static void
check_command(const char *cmd)
{
	char interp[256];

	if (child_find_command(cmd) < 0)
		die_cannot_run(cmd);
	if (child_check_interpreter(cmd, interp, sizeof interp) < 0)
		die_bad_interpreter(cmd, interp);
}

void
handler_command(struct worker_options *o, int argc, char **argv)
{
	if (argc < 1)
		die_usage("no command to run: %s [options] -- command [argument ...]",
		    log_progname());
	o->argv = argv;
	check_command(argv[0]);
	o->worker_id = worker_id(o->worker_id);
}

void
handler_keeper_start(void)
{
	signal(SIGPIPE, SIG_IGN); /* a handler that does not read its payload */
	if (child_keeper_start() < 0)
		die(EX_OSERR, "cannot start the keeper process:");
}

int
handler_option(struct worker_options *o, int c, const char *arg)
{
	switch (c) {
	case 'c':
		o->concurrency = (int)option_int("--concurrency", arg, 1, CONCURRENCY_MAX);
		return 1;
	case OPT_GRACE:
		o->grace_ms = option_duration("--grace", arg, 1);
		return 1;
	case OPT_TIMEOUT:
		o->timeout_ms = option_duration("--timeout", arg, 0);
		return 1;
	case OPT_BACKOFF:
		o->backoff_ms = option_duration("--backoff", arg, 0);
		return 1;
	case OPT_LINES:
		o->lines = 1;
		return 1;
	case OPT_WORKER_ID:
		o->worker_id = arg;
		return 1;
	case OPT_THROTTLE:
		o->throttle_ms = option_duration("--throttle", arg, 1);
		if (o->throttle_ms > THROTTLE_MAX_MS)
			die_usage("invalid --throttle '%s': want 1d or less", arg);
		return 1;
	default:
		return 0;
	}
}
