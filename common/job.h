/* job.h: the job's options as the tools take them, and the job record as
 * the tools print it (from the Redis hash, whose fields aq(7) lists). */
#ifndef AQ_JOB_H
#define AQ_JOB_H

#include <hiredis/hiredis.h>
#include <stdint.h>

#include "json.h"

#define PRIORITY_MIN -1000
#define PRIORITY_MAX 1000
#define MAX_ATTEMPTS_DEFAULT 3
#define MAX_ATTEMPTS_LIMIT 1000

/* What a job is enqueued with; -1 marks "not given" for the times. */
struct job_options {
	int priority;        /* PRIORITY_MIN..PRIORITY_MAX, default 0 */
	int max_attempts;    /* 1..MAX_ATTEMPTS_LIMIT */
	int64_t delay_ms;    /* run this long after enqueueing */
	int64_t run_at_ms;   /* or at this time (epoch ms) */
	int64_t timeout_ms;  /* the handler's time limit */
};

/* job_options_init: the defaults (priority 0, 3 attempts, no delay, no
 * timeout of its own). */
void job_options_init(struct job_options *o);

/* job_write_record: append to b the JSON record of the job id of queue
 * from the fields of its hash (an HGETALL reply, not empty): id, queue,
 * status, attempt and priority (0 when not stored), then what is set of
 * max_attempts, created, run_at, started, finished, timeout, worker,
 * exit_code, payload, result, error. Times are epoch seconds with
 * milliseconds; payload and result are embedded as JSON (as a string when
 * what is stored is not JSON). */
void job_write_record(struct jbuf *b, const char *id, const char *queue,
    const redisReply *hash);

/* job_write_blocked: job_write_record, and the key waiting_for: the
 * members of the set reply pending (the parents a blocked job still waits
 * for), as an array of strings. */
void job_write_blocked(struct jbuf *b, const char *id, const char *queue,
    const redisReply *hash, const redisReply *pending);

/* The number of fields of a record: status, attempt, max_attempts,
 * priority, created, run_at, started, finished, timeout_ms, worker,
 * exit_code, payload, result, error, after (the Redis hash's names), in the order
 * job_write_values takes their values. */
#define JOB_FIELDS 15

/* The index of each field among the values job_write_values takes. */
enum job_field {
	JOB_STATUS, JOB_ATTEMPT, JOB_MAX_ATTEMPTS, JOB_PRIORITY, JOB_CREATED,
	JOB_RUN_AT, JOB_STARTED, JOB_FINISHED, JOB_TIMEOUT, JOB_WORKER,
	JOB_EXIT_CODE, JOB_PAYLOAD, JOB_RESULT, JOB_ERROR, JOB_AFTER
};

/* job_write_values: job_write_record from the stored text of each field
 * (values[i] of lens[i] bytes, NULL when not stored; times in epoch ms):
 * how the ledger's rows are printed like Redis's hashes. */
void job_write_values(struct jbuf *b, const char *id, const char *queue,
    const char *const *values, const size_t *lens);

/* job_write_unknown: append {"id":…,"queue":…,"status":"unknown"}. */
void job_write_unknown(struct jbuf *b, const char *id, const char *queue);

#endif
