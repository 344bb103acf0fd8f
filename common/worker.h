/* worker.h: the worker engine behind aq-worker: one libuv loop that claims
 * jobs, runs a handler per job, streams its output, renews leases, obeys
 * cancellations and timeouts, reports outcomes, and shuts down gracefully;
 * and the same slots fed from standard input, behind aq-run. */
#ifndef AQ_WORKER_H
#define AQ_WORKER_H

#include <stdint.h>

#include "config.h"

/* A handler's throttle pause (exit 69, or a line-mode answer): the hold
 * when it names none, and the longest it may name. */
#define THROTTLE_DEFAULT_MS 30000
#define THROTTLE_MAX_MS (86400 * 1000LL)

struct worker_options {
	const struct config *cfg;
	const char *worker_id;      /* AQ_WORKER_ID, --worker-id or host:pid */
	char **argv;                /* the handler command */
	int concurrency;            /* -c */
	int64_t lease_ms;           /* --lease */
	int64_t grace_ms;           /* --grace */
	int64_t timeout_ms;         /* --timeout: 0 for none */
	int64_t backoff_ms;         /* --backoff: first retry delay */
	long max_jobs;              /* --max-jobs: 0 for no limit */
	int burst;                  /* --burst: exit when there is nothing to do */
	int lines;                  /* --lines: one process per slot, a line per job */
	int prefetch;               /* --prefetch: jobs claimed ahead of a free slot */
	int64_t throttle_ms;        /* --throttle: how long a handler's exit 69
	                             * holds the queue when it names no
	                             * retry_after; 0: exit 69 is a failure */
	int replicas;               /* --replicas: a claim runs once this many
	                             * replicas have it; 0: at once */
};

#define REPLICAS_WAIT_MAX_MS 1000   /* aq-worker's WAIT: at most this long */

/* worker_run: work until told to stop (or out of work with burst or
 * max_jobs); returns the exit code: 0, or EX_TEMPFAIL when stopped at once
 * by a second signal. */
int worker_run(const struct worker_options *o);

/* What aq-run adds to worker_options: how it makes and shows its jobs. */
struct direct_options {
	int max_attempts;           /* --max-attempts */
	int events;                 /* --events: output lines on stdout too */
};

/* worker_run_direct: aq-run's engine, with no Redis: each JSON line of fd
 * is a job, run by the handler of o on its slots as worker_run runs one
 * (the same slots), retried in this process after its backoff; the final
 * record of each job goes to stdout. Returns the exit code: 0 when every
 * job succeeded, 1 when one did not, EX_DATAERR when lines were rejected,
 * EX_IOERR when the input could not be read. */
int worker_run_direct(const struct worker_options *o,
    const struct direct_options *d, int fd);

#endif
