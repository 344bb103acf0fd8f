/* keys.h: the Redis key layout of aq(7). Every key of a queue carries the
 * queue as a hash tag, PREFIX:{QUEUE}:..., so one script touches one slot. */
#ifndef AQ_KEYS_H
#define AQ_KEYS_H

#include "id.h"

#include <stddef.h>

/* Entries kept in a queue's log stream (XADD MAXLEN ~), and in a job's
 * event stream: as numbers, and as the strings the commands take. */
#define LOG_CAP_COUNT 100000
#define EVENTS_CAP_COUNT 10000
#define KEYS_STR_(x) #x
#define KEYS_STR(x) KEYS_STR_(x)
#define LOG_CAP KEYS_STR(LOG_CAP_COUNT)
#define EVENTS_CAP KEYS_STR(EVENTS_CAP_COUNT)

/* The most queues one tool handles at once (aq-sweep, aq-health: -q, or
 * the members of PREFIX:queues). */
#define QUEUES_MAX 1024

#define KEY_BASE_MAX (PREFIX_MAX + QUEUE_MAX + 8) /* "P:{Q}:" */
#define KEY_MAX (KEY_BASE_MAX + 16)

struct keys {
	char base[KEY_BASE_MAX];    /* "aq:{q}:" */
	char job[KEY_MAX];     /* "aq:{q}:job:" (the id follows) */
	char events[KEY_MAX];  /* "aq:{q}:events:" (a job id follows): stream */
	char worker[KEY_MAX];  /* "aq:{q}:worker:" (a worker id follows): hash */
	char wait[KEY_MAX];    /* sorted set: ready jobs by priority, then FIFO */
	char delayed[KEY_MAX]; /* sorted set: jobs by due time (ms) */
	char active[KEY_MAX];  /* sorted set: running jobs by lease expiry (ms) */
	char wake[KEY_MAX];    /* list: wake-up markers for blocked workers */
	char log[KEY_MAX];     /* stream: the queue's state changes */
	char stats[KEY_MAX];   /* hash: counters */
	char seq[KEY_MAX];     /* string: FIFO sequence within a priority */
	char workers[KEY_MAX]; /* sorted set: live workers by heartbeat expiry */
	char cancel[KEY_MAX];  /* pub/sub channel: ids of jobs to cancel */
	char done[KEY_MAX];    /* sorted set: finished jobs by finish time (ms) */
	char queues[KEY_MAX];  /* set "aq:queues": the known queue names */
	char ledger[KEY_MAX];  /* string: set while a PostgreSQL ledger archives
	                        * the queue (the Redis run id it last checked) */
	char unarchived[KEY_MAX]; /* sorted set: finished jobs the ledger has
	                           * not archived yet, by finish time (ms) */
	char failed[KEY_MAX];  /* sorted set: failed jobs by finish time (ms) */
	char paused[KEY_MAX];  /* string: set while the queue is paused (the
	                        * time it was, ms): workers claim nothing */
	char blocked[KEY_MAX]; /* sorted set: jobs waiting for their parents
	                        * (--after), by creation time (ms) */
	char deps[KEY_MAX];    /* "aq:{q}:deps:" (a job id follows): set of
	                        * the parents the job still waits for */
	char children[KEY_MAX]; /* "aq:{q}:children:" (a job id follows): set
	                         * of the blocked jobs waiting for it */
	char limits[KEY_MAX];  /* hash: the queue's flow limits (aq-queue limit):
	                        * rate, period_ms, concurrency */
	char rate[KEY_MAX];    /* sorted set: the claims of the last rate period
	                        * (id:lease token, by claim time ms) */
	char throttled[KEY_MAX]; /* string, with an expiry: set while a handler's
	                          * throttle pause holds the queue (until, ms) */
};

/* keys_init: the key names of queue under prefix (both already validated). */
void keys_init(struct keys *k, const char *prefix, const char *queue);

/* keys_job, keys_events, keys_worker: the name of job id's hash, of its
 * event stream, of worker id's hash, in buf (len bytes, KEY_MAX + ID_MAX is
 * enough); returns buf. */
char *keys_job(const struct keys *k, const char *id, char *buf, size_t len);
char *keys_events(const struct keys *k, const char *id, char *buf, size_t len);
char *keys_worker(const struct keys *k, const char *id, char *buf, size_t len);
/* keys_deps: the name of the set of parents blocked job id waits for. */
char *keys_deps(const struct keys *k, const char *id, char *buf, size_t len);

/* keys_channel: the Redis channel of aq-publish's channel name,
 * "PREFIX:chan:NAME", in buf; returns buf. KEYS_CHANNEL_EXTRA is what it
 * adds to the name besides the prefix. */
#define KEYS_CHANNEL_EXTRA 6 /* ":chan:" */
char *keys_channel(const char *prefix, const char *name, char *buf, size_t len);

/* The number of keys keys_script_argv gives. */
#define KEYS_SCRIPT 9

/* keys_script_argv: put the KEYS_SCRIPT keys every queue script but
 * enqueue takes (lib.lua's queue_keys: wait, delayed, active, stats, log,
 * seq, wake, done, workers) at argv[0...]; returns KEYS_SCRIPT. */
int keys_script_argv(const struct keys *k, const char **argv);

/* The KEYS of the scripts that take others, each in its script's order
 * (tests/unit.c holds the scripts to it):
 * keys_enqueue_argv: enqueue.lua's: wait, delayed, stats, log, seq, wake;
 * keys_event_argv: event.lua's for job id: its hash, built in job, then its
 *   event stream, built in events (each KEY_MAX + ID_MAX bytes);
 * keys_renew_argv: renew.lua's: the queue keys, then the worker's hash.
 * Each puts them at argv[0...] and returns how many. */
#define KEYS_ENQUEUE 6
#define KEYS_EVENT 2
#define KEYS_RENEW (KEYS_SCRIPT + 1)
int keys_enqueue_argv(const struct keys *k, const char **argv);
int keys_event_argv(const struct keys *k, const char *id, char *job,
    char *events, const char **argv);
int keys_renew_argv(const struct keys *k, const char *worker_hash,
    const char **argv);

#endif
