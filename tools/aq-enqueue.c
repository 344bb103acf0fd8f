/* aq-enqueue: put jobs on a queue, payloads from arguments or JSON lines on
 * stdin, sent in pipelined batches (committed to the PostgreSQL ledger
 * first, when there is one); one JSON line out per job. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "duration.h"
#include "id.h"
#include "json.h"
#include "jsonl.h"
#include "keys.h"
#include "ledger.h"
#include "log.h"
#include "job.h"
#include "mem.h"
#include "redis.h"
#include "route.h"
#include "script.h"
#include "waiter.h"

#define BATCH_JOBS 200            /* jobs per script call */
#define LEDGER_BATCH_JOBS 1000    /* with a ledger: a commit costs more */
#define BATCH_BYTES (1 << 20)     /* or fewer when their payloads are large */
#define PIPELINE_DEPTH 4          /* batches sent before a reply is awaited */
#define AFTER_MAX 1000            /* parents of one job (--after) */
#define UNKNOWN_PARENT "unknown-parent:" /* enqueue.lua's reply, then the id */
#define UNKNOWN_PARENT_LEN (sizeof UNKNOWN_PARENT - 1)
#define REPLICAS_TIMEOUT_MS 5000  /* --replicas-timeout, by default */

enum { OPT_ID = OPT_TOOL, OPT_PRIORITY, OPT_DELAY, OPT_RUN_AT,
	OPT_MAX_ATTEMPTS, OPT_TIMEOUT, OPT_WAIT, OPT_WAIT_TIMEOUT, OPT_AFTER,
	OPT_REPLICAS, OPT_REPLICAS_TIMEOUT };

struct pending_job {
	size_t id_off, id_len, payload_off, payload_len;
	unsigned long lineno;
	char ledger_dup[16];          /* the ledger had the id: its status */
};

/* Jobs sent (or being filled) in one script call, kept until its reply. */
struct batch {
	char *arena;                  /* ids and payloads, back to back */
	size_t len, cap;
	struct pending_job *jobs;
	size_t n;
	redisReply *reply;            /* a reply read ahead (NOSCRIPT recovery) */
	long long acks;               /* --replicas: WAIT's reply after it */
};

struct enqueuer {
	struct config cfg;
	struct keys keys;
	struct job_options opt;
	const char *fixed_id;         /* --id */
	char priority[16], max_attempts[16], delay[24], run_at[24], timeout[24];
	redisContext *redis;
	struct ledger ledger;         /* with --database-url */
	struct copybuf rows;          /* a batch's rows for the ledger */
	char ledger_status[16];       /* "queued", "delayed" or "blocked" */
	char *after;                  /* --after: parent ids, space-separated */
	size_t after_len, after_cap, after_n;
	size_t batch_jobs;            /* jobs per batch */
	struct batch ring[PIPELINE_DEPTH + 1];
	size_t oldest, inflight;      /* ring[oldest] is the oldest sent batch */
	struct script_args call;      /* a batch's call, being built */
	struct jbuf out;
	unsigned long rejected;
	const char *input_name;       /* "line" or "argument", for messages */
	long long replicas;           /* --replicas: WAIT for these after a batch */
	char replicas_arg[24], replicas_timeout[24];
	long long replicas_timeout_ms;
	unsigned long unreplicated;   /* jobs fewer replicas acknowledged */
	int wait;                     /* --wait */
	long long wait_timeout_ms;    /* --wait-timeout; -1: none */
	struct waiter *waiter;
};

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: aq-enqueue [-q queue] [-u url | --redis-url-file path] [--prefix p]\n"
	    "                  [--id id] [--priority n] [--delay duration | --run-at time]\n"
	    "                  [--max-attempts n] [--timeout duration] [--max-line size]\n"
	    "                  [--after id[,id...]]...\n"
	    "                  [--replicas n [--replicas-timeout duration]]\n"
	    "                  [--database-url url | --database-url-file path]\n"
	    "                  [--wait [--wait-timeout duration]] [payload ...]\n");
}

static struct batch *
filling(struct enqueuer *e)
{
	return &e->ring[(e->oldest + e->inflight) % (PIPELINE_DEPTH + 1)];
}

static size_t
arena_put(struct batch *b, const char *s, size_t n)
{
	size_t off = b->len;

	b->arena = xgrow(b->arena, &b->cap, b->len + n, 64 * 1024, 1);
	memcpy(b->arena + b->len, s, n);
	b->len += n;
	return off;
}

/* Build in e->call the enqueue.lua call of batch b (its ARGV in order). */
static void
build_call(struct enqueuer *e, const struct batch *b)
{
	struct script_args *a = &e->call;
	const char *keys[KEYS_ENQUEUE];
	const char *fixed[] = {e->keys.job, LOG_CAP, e->fixed_id ? "0" : "1",
	    e->priority, e->delay, e->run_at, e->max_attempts, e->timeout,
	    e->ledger.conn ? e->keys.ledger : "", e->keys.base,
	    e->after ? e->after : ""};

	script_args_begin(a, &script_enqueue);
	script_args_keys(a, keys, keys_enqueue_argv(&e->keys, keys));
	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
		script_args_arg(a, fixed[i]);
	for (size_t i = 0; i < b->n; i++) {
		const struct pending_job *j = &b->jobs[i];
		if (j->ledger_dup[0])
			continue; /* the ledger holds it: it is not enqueued again */
		script_args_argn(a, b->arena + j->id_off, j->id_len);
		script_args_argn(a, b->arena + j->payload_off, j->payload_len);
	}
}

/* --replicas: pipeline WAIT after a batch's call, so that its reply says
 * how many replicas have the batch (and all before it). */
static void
append_wait(struct enqueuer *e)
{
	const char *argv[] = {"WAIT", e->replicas_arg, e->replicas_timeout};

	if (e->replicas > 0 &&
	    redisAppendCommandArgv(e->redis, 3, argv, NULL) != REDIS_OK)
		redis_die_io(e->redis, &e->cfg.redis, "sending WAIT");
}

/* --replicas: the reply of the WAIT after b's call. */
static void
read_acks(struct enqueuer *e, struct batch *b)
{
	redisReply *r;

	if (e->replicas == 0)
		return;
	r = redis_get_reply(e->redis, &e->cfg.redis, "waiting for replicas");
	if (r->type != REDIS_REPLY_INTEGER) {
		char shown[1024];
		die(EX_UNAVAILABLE, "redis at %s refused WAIT: %s",
		    url_display(&e->cfg.redis, shown, sizeof shown),
		    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
	}
	b->acks = r->integer;
	freeReplyObject(r);
}

/* The replies of b: its call's, then (--replicas) its WAIT's. */
static void
read_batch_replies(struct enqueuer *e, struct batch *b)
{
	b->reply = redis_get_reply(e->redis, &e->cfg.redis, "sending jobs");
	read_acks(e, b);
}

static void
send_batch(struct enqueuer *e, struct batch *b)
{
	build_call(e, b);
	if (script_append(e->redis, &e->call) != REDIS_OK)
		redis_die_io(e->redis, &e->cfg.redis, "sending jobs");
	append_wait(e);
}

static redisReply *
call_batch_now(struct enqueuer *e, struct batch *b)
{
	redisReply *r;

	build_call(e, b);
	r = script_call(e->redis, &e->cfg.redis, &e->call);
	if (!r)
		redis_die_io(e->redis, &e->cfg.redis, "sending jobs");
	append_wait(e);
	read_acks(e, b);
	return r;
}

/* Redis did nothing of a batch that got r: the script cache was emptied
 * (NOSCRIPT: a restart or SCRIPT FLUSH), or, on a cluster, the queue's
 * slot is served elsewhere now or is being moved. */
static int
batch_refused(const struct enqueuer *e, const redisReply *r)
{
	return script_is_noscript(r) || (e->cfg.redis.kind == URL_CLUSTER && r &&
	    r->type == REDIS_REPLY_ERROR && route_redirected(r->str));
}

/*
 * A batch in flight was refused (batch_refused): read every outstanding
 * reply, then run again, in order, each refused batch, now, where the
 * script is loaded again and the slot's node followed (script_call). Their
 * order is kept.
 */
static void
recover_refused(struct enqueuer *e)
{
	for (size_t k = 1; k < e->inflight; k++)
		read_batch_replies(e, &e->ring[(e->oldest + k) % (PIPELINE_DEPTH + 1)]);
	for (size_t k = 0; k < e->inflight; k++) {
		struct batch *b = &e->ring[(e->oldest + k) % (PIPELINE_DEPTH + 1)];
		if (batch_refused(e, b->reply)) {
			freeReplyObject(b->reply);
			b->reply = call_batch_now(e, b);
		}
	}
}

/* Print job i of b, whose status is st[0..n) (Redis's reply, or the
 * ledger's "duplicate:STATUS"). */
static void
report_job(struct enqueuer *e, const struct batch *b, size_t i,
    const char *st, size_t n)
{
	const struct pending_job *j = &b->jobs[i];
	int dup = n > 10 && strncmp(st, "duplicate:", 10) == 0;

	if (e->waiter) { /* --wait: the final records are printed instead */
		waiter_add(e->waiter, b->arena + j->id_off, j->id_len);
		return;
	}
	jb_reset(&e->out);
	jb_obj_begin(&e->out);
	jb_key(&e->out, "id");
	jb_str(&e->out, b->arena + j->id_off, j->id_len);
	jb_kstr(&e->out, "queue", e->cfg.queue);
	jb_key(&e->out, "status");
	if (dup)
		jb_str(&e->out, st + 10, n - 10);
	else
		jb_str(&e->out, st, n);
	if (dup) {
		jb_key(&e->out, "duplicate");
		jb_raw(&e->out, "true", 4);
	}
	jb_obj_end(&e->out);
	if (jb_line(&e->out) < 0)
		die_output();
}

static void ledger_forget(struct enqueuer *, const struct batch *,
    const struct pending_job *);

/* Job i of b was not created: its parent (parent[0..n)) is no job of the
 * queue. Said like a malformed line; the ledger forgets it again. */
static void
reject_orphan(struct enqueuer *e, const struct batch *b, size_t i,
    const char *parent, size_t n)
{
	warnmsg("%s %lu: --after %.*s: no such job in queue %s (never enqueued, "
	    "or finished and trimmed), skipped", e->input_name, b->jobs[i].lineno,
	    (int)n, parent, e->cfg.queue);
	e->rejected++;
	ledger_forget(e, b, &b->jobs[i]);
}

/* The jobs of b that go to Redis: those the ledger did not already have. */
static size_t
redis_jobs(const struct batch *b)
{
	size_t n = 0;

	for (size_t i = 0; i < b->n; i++)
		n += !b->jobs[i].ledger_dup[0];
	return n;
}

/* Print the jobs of b, in order: Redis's reply r (NULL when none went to
 * Redis) has an element for each job the ledger did not hold. */
static void
report_batch(struct enqueuer *e, struct batch *b, const redisReply *r)
{
	char shown[1024];
	size_t k = 0;

	if (r && (r->type != REDIS_REPLY_ARRAY || r->elements != redis_jobs(b))) {
		die(EX_UNAVAILABLE, "redis at %s refused the jobs of %ss %lu-%lu: %s",
		    url_display(&e->cfg.redis, shown, sizeof shown), e->input_name,
		    b->jobs[0].lineno, b->jobs[b->n - 1].lineno,
		    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
	}
	for (size_t i = 0; i < b->n; i++) {
		char dup[32];
		if (b->jobs[i].ledger_dup[0]) {
			int n = snprintf(dup, sizeof dup, "duplicate:%s", b->jobs[i].ledger_dup);
			report_job(e, b, i, dup, (size_t)n);
			continue;
		}
		const redisReply *st = r ? r->element[k++] : NULL;
		if (!st || st->type != REDIS_REPLY_STRING)
			die(EX_UNAVAILABLE, "unexpected reply from the enqueue script");
		if (st->len > UNKNOWN_PARENT_LEN &&
		    strncmp(st->str, UNKNOWN_PARENT, UNKNOWN_PARENT_LEN) == 0)
			reject_orphan(e, b, i, st->str + UNKNOWN_PARENT_LEN,
			    st->len - UNKNOWN_PARENT_LEN);
		else
			report_job(e, b, i, st->str, st->len);
	}
}

/* --replicas: the jobs of b are enqueued; say so when fewer replicas than
 * asked had them within the time (they would be lost in a failover). */
static void
check_replicated(struct enqueuer *e, const struct batch *b)
{
	size_t n = redis_jobs(b);

	if (e->replicas == 0 || n == 0 || b->acks >= e->replicas)
		return;
	warnmsg("%ss %lu-%lu: enqueued, but %lld of %lld replicas acknowledged "
	    "them within %lld ms (--replicas-timeout): a failover now could "
	    "lose them", e->input_name, b->jobs[0].lineno,
	    b->jobs[b->n - 1].lineno, b->acks, e->replicas,
	    e->replicas_timeout_ms);
	e->unreplicated += n;
}

/* Wait for the reply of the oldest batch in flight and print its jobs. */
static void
complete_oldest(struct enqueuer *e)
{
	struct batch *b = &e->ring[e->oldest];
	redisReply *r;

	if (!b->reply) {
		read_batch_replies(e, b);
		if (batch_refused(e, b->reply))
			recover_refused(e);
	}
	r = b->reply;
	report_batch(e, b, r);
	check_replicated(e, b);
	freeReplyObject(r);
	b->reply = NULL;
	b->n = 0;
	b->len = 0;
	e->oldest = (e->oldest + 1) % (PIPELINE_DEPTH + 1);
	e->inflight--;
}

/* ---- the ledger ------------------------------------------------------ */

/* The ledger refused batch b (rolled back: none of it is anywhere). The
 * batches before it are committed and on their way to Redis: their lines
 * are printed first, so that what was enqueued is said. */
static void
die_ledger(struct enqueuer *e, const struct batch *b)
{
	while (e->inflight > 0)
		complete_oldest(e);
	die(EX_UNAVAILABLE, "cannot write the jobs of %ss %lu-%lu to the postgresql "
	    "ledger at %s: %s; they are not enqueued", e->input_name,
	    b->jobs[0].lineno, b->jobs[b->n - 1].lineno, e->ledger.shown,
	    e->ledger.err);
}

#define KEYED_INSERT_TRIES 3

/* A user-given id: insert it unless the ledger has it (the id is an
 * idempotency key there too, also once Redis has trimmed the job). */
static void
ledger_insert_keyed(struct enqueuer *e, struct batch *b, struct pending_job *j)
{
	char id[ID_MAX + 1], payload_end;
	char *payload = b->arena + j->payload_off;
	const char *params[8];
	char prio[16], attempts[16], timeout[24], run_at[40];
	PGresult *r;

	snprintf(id, sizeof id, "%.*s", (int)j->id_len, b->arena + j->id_off);
	payload_end = payload[j->payload_len];
	payload[j->payload_len] = '\0'; /* the next id starts there */
	snprintf(prio, sizeof prio, "%d", e->opt.priority);
	snprintf(attempts, sizeof attempts, "%d", e->opt.max_attempts);
	snprintf(timeout, sizeof timeout, "%s", e->timeout);
	ledger_time_text(run_at, sizeof run_at, e->opt.delay_ms, e->opt.run_at_ms);
	params[0] = e->cfg.queue;
	params[1] = id;
	params[2] = e->ledger_status;
	params[3] = payload;
	params[4] = prio;
	params[5] = attempts;
	params[6] = timeout[0] ? timeout : NULL;
	params[7] = run_at[0] ? run_at : NULL;
	/* No row back: the insert met a row that another enqueuer committed
	 * after this statement's snapshot was taken, so the SELECT could not
	 * see it. The statement again, with a new snapshot, sees it (or
	 * inserts, if it was deleted since); with no answer after a few, the
	 * job is taken as a duplicate, never enqueued twice. */
	for (int tries = 0; tries < KEYED_INSERT_TRIES; tries++) {
		r = ledger_exec(&e->ledger, "inserting a job",
		    "WITH ins AS (INSERT INTO {S}.jobs (queue, id, status, payload, priority,"
		    "  max_attempts, timeout_ms, run_at)"
		    "  VALUES ($1, $2, $3, $4::json, $5, $6, $7, $8)"
		    "  ON CONFLICT (queue, id) DO NOTHING RETURNING status)"
		    " SELECT '', status FROM ins UNION ALL"
		    " SELECT 'dup', status FROM {S}.jobs WHERE queue = $1 AND id = $2"
		    "  AND NOT EXISTS (SELECT FROM ins)", 8, params);
		if (!r) {
			payload[j->payload_len] = payload_end;
			die_ledger(e, b);
		}
		if (pq.ntuples(r) == 1) {
			if (strcmp(pq.getvalue(r, 0, 0), "dup") == 0)
				snprintf(j->ledger_dup, sizeof j->ledger_dup, "%s",
				    pq.getvalue(r, 0, 1));
			pq.clear(r);
			payload[j->payload_len] = payload_end;
			return;
		}
		pq.clear(r);
	}
	payload[j->payload_len] = payload_end;
	snprintf(j->ledger_dup, sizeof j->ledger_dup, "unknown");
}

/* Redis refused job j of b (its parent is unknown): the ledger, which took
 * it first, deletes it again, so that no restore brings it back. */
static void
ledger_forget(struct enqueuer *e, const struct batch *b,
    const struct pending_job *j)
{
	char id[ID_MAX + 1];
	const char *params[2] = {e->cfg.queue, id};
	PGresult *r;

	if (!e->ledger.conn)
		return;
	snprintf(id, sizeof id, "%.*s", (int)j->id_len, b->arena + j->id_off);
	r = ledger_exec(&e->ledger, "deleting a rejected job",
	    "DELETE FROM {S}.jobs WHERE queue = $1 AND id = $2 AND NOT seen",
	    2, params);
	if (!r)
		die(EX_UNAVAILABLE, "cannot delete job %s, rejected by redis, from "
		    "the postgresql ledger at %s: %s", id, e->ledger.shown,
		    e->ledger.err);
	pq.clear(r);
}

/* Generated ids are new: the batch goes in with one COPY, one commit, two
 * round trips. */
static void
ledger_copy_batch(struct enqueuer *e, struct batch *b)
{
	char run_at[40];

	ledger_time_text(run_at, sizeof run_at, e->opt.delay_ms, e->opt.run_at_ms);
	copy_reset(&e->rows);
	for (size_t i = 0; i < b->n; i++) {
		const struct pending_job *j = &b->jobs[i];
		copy_text(&e->rows, e->cfg.queue, strlen(e->cfg.queue));
		copy_text(&e->rows, b->arena + j->id_off, j->id_len);
		copy_text(&e->rows, e->ledger_status, strlen(e->ledger_status));
		copy_text(&e->rows, b->arena + j->payload_off, j->payload_len);
		copy_int(&e->rows, e->opt.priority);
		copy_int(&e->rows, e->opt.max_attempts);
		if (e->opt.timeout_ms >= 0)
			copy_int(&e->rows, e->opt.timeout_ms);
		else
			copy_null(&e->rows);
		if (run_at[0])
			copy_text(&e->rows, run_at, strlen(run_at));
		else
			copy_null(&e->rows);
		copy_row_end(&e->rows);
	}
	/* one COPY is one transaction of its own: committed when it ends */
	if (ledger_copy(&e->ledger, "copying the jobs", "COPY {S}.jobs (queue, id, "
	    "status, payload, priority, max_attempts, timeout_ms, run_at) FROM STDIN",
	    &e->rows) < 0)
		die_ledger(e, b);
}

/* Before Redis sees a batch, the ledger has committed it. */
static void
ledger_write(struct enqueuer *e, struct batch *b)
{
	if (!e->ledger.conn)
		return;
	if (e->fixed_id) {
		if (ledger_run(&e->ledger, "starting a transaction", "BEGIN") < 0)
			die_ledger(e, b);
		for (size_t i = 0; i < b->n; i++)
			ledger_insert_keyed(e, b, &b->jobs[i]);
		if (ledger_run(&e->ledger, "committing the jobs", "COMMIT") < 0)
			die_ledger(e, b);
	} else {
		ledger_copy_batch(e, b);
	}
}

static void
open_ledger(struct enqueuer *e)
{
	const char *params[1] = {e->cfg.queue};
	PGresult *r;

	if (!e->cfg.database_url)
		return;
	ledger_open_or_die(&e->ledger, e->cfg.database_url, e->cfg.database_from,
	    e->cfg.prefix);
	r = ledger_exec(&e->ledger, "registering the queue",
	    "INSERT INTO {S}.queues (queue) VALUES ($1) ON CONFLICT DO NOTHING", 1, params);
	if (!r)
		die(EX_UNAVAILABLE, "cannot use the postgresql ledger at %s: %s",
		    e->ledger.shown, e->ledger.err);
	pq.clear(r);
	e->batch_jobs = LEDGER_BATCH_JOBS;
	/* what the ledger says until aq-sweep archives Redis's word on it */
	snprintf(e->ledger_status, sizeof e->ledger_status, "%s", e->after ? "blocked" :
	    e->opt.delay_ms > 0 || e->opt.run_at_ms > clock_epoch_ms() ? "delayed" : "queued");
}

/* ---- sending ---------------------------------------------------------- */

static void
flush_filling(struct enqueuer *e)
{
	struct batch *b = filling(e);

	if (b->n == 0)
		return;
	ledger_write(e, b);
	if (redis_jobs(b) == 0) { /* all in the ledger already: printed in order */
		while (e->inflight > 0)
			complete_oldest(e);
		report_batch(e, b, NULL);
		b->n = 0;
		b->len = 0;
		return;
	}
	if (e->inflight == PIPELINE_DEPTH)
		complete_oldest(e);
	send_batch(e, b);
	e->inflight++;
}

/* Send everything held and wait for the replies: the input is idle. */
static void
send_all(void *ctx)
{
	struct enqueuer *e = ctx;

	flush_filling(e);
	while (e->inflight > 0)
		complete_oldest(e);
	if (fflush(stdout) != 0)
		die_output();
}

static void
add_job(struct enqueuer *e, const char *payload, size_t len, unsigned long lineno)
{
	struct batch *b = filling(e);
	struct pending_job *j;
	char uuid[UUID_LEN + 1];
	const char *id = e->fixed_id;

	if (!id) {
		if (uuidv7(uuid) < 0)
			die(EX_OSERR, "cannot generate a job id: no randomness:");
		id = uuid;
	}
	if (!b->jobs)
		b->jobs = xcalloc(LEDGER_BATCH_JOBS, sizeof *b->jobs);
	j = &b->jobs[b->n++];
	j->lineno = lineno;
	j->ledger_dup[0] = '\0';
	j->id_len = strlen(id);
	j->id_off = arena_put(b, id, j->id_len);
	j->payload_len = len;
	j->payload_off = arena_put(b, payload, len);
	if (b->n == e->batch_jobs || b->len >= BATCH_BYTES)
		flush_filling(e);
}

static int
on_line(char *line, size_t len, unsigned long lineno, void *ctx)
{
	struct enqueuer *e = ctx;
	char err[256];

	line = jsonl_trim(line, &len);
	if (json_check(line, len, err, sizeof err) < 0) {
		warnmsg("line %lu: %s, skipped", lineno, err);
		e->rejected++;
		return 0;
	}
	add_job(e, line, len, lineno);
	return 0;
}

/*
 * Payload arguments are all checked before any is sent: a command line is
 * taken whole or not at all. A raw newline can only stand between tokens
 * of valid JSON, so it becomes a space and the payload stays one line.
 */
static void
check_arguments(char **args, int n)
{
	char err[256];
	int bad = 0;

	for (int i = 0; i < n; i++) {
		for (char *p = args[i]; *p; p++)
			if (*p == '\n' || *p == '\r')
				*p = ' ';
		if (json_check(args[i], strlen(args[i]), err, sizeof err) < 0) {
			warnmsg("argument %d: %s", i + 1, err);
			bad = 1;
		}
	}
	if (bad)
		die(EX_DATAERR, "nothing enqueued: each payload argument is one "
		    "JSON value; quote a string twice, as '\"text\"' in a shell");
}

/* --after ID[,ID...]: each id is checked, then added to e->after. */
static void
add_parents(struct enqueuer *e, const char *list)
{
	const char *p = list;

	for (;;) {
		size_t n = strcspn(p, ",");
		if (!id_valid(p, n))
			die_usage("invalid --after '%s': want job ids of 1 to %d of "
			    "A-Z a-z 0-9 . _ : @ / -, separated by commas", list, ID_MAX);
		if (++e->after_n > AFTER_MAX)
			die_usage("too many --after ids: at most %d", AFTER_MAX);
		e->after = xgrow(e->after, &e->after_cap, e->after_len + n + 2, 256, 1);
		if (e->after_len > 0)
			e->after[e->after_len++] = ' ';
		memcpy(e->after + e->after_len, p, n);
		e->after_len += n;
		e->after[e->after_len] = '\0';
		if (p[n] == '\0')
			break;
		p += n + 1;
	}
}

/* --id ID --after ID: a job cannot wait for itself. */
static void
check_not_own_parent(const struct enqueuer *e)
{
	const char *p = e->after;
	size_t idlen;

	if (!e->fixed_id || !p)
		return;
	idlen = strlen(e->fixed_id);
	while (*p) {
		size_t n = strcspn(p, " ");
		if (n == idlen && memcmp(p, e->fixed_id, n) == 0)
			die_usage("--id %s --after %s: a job cannot wait for itself",
			    e->fixed_id, e->fixed_id);
		p += n + (p[n] == ' ');
	}
}

static void
parse_options(struct enqueuer *e, int argc, char **argv)
{
	static const struct option longopts[] = {
		CONFIG_LONG_OPTIONS,
		CONFIG_LONG_OPTIONS_LINES,
		{"id", required_argument, NULL, OPT_ID},
		{"priority", required_argument, NULL, OPT_PRIORITY},
		{"delay", required_argument, NULL, OPT_DELAY},
		{"run-at", required_argument, NULL, OPT_RUN_AT},
		{"max-attempts", required_argument, NULL, OPT_MAX_ATTEMPTS},
		{"timeout", required_argument, NULL, OPT_TIMEOUT},
		{"wait", no_argument, NULL, OPT_WAIT},
		{"wait-timeout", required_argument, NULL, OPT_WAIT_TIMEOUT},
		{"after", required_argument, NULL, OPT_AFTER},
		{"replicas", required_argument, NULL, OPT_REPLICAS},
		{"replicas-timeout", required_argument, NULL, OPT_REPLICAS_TIMEOUT},
		CONFIG_LONG_OPTIONS_LEDGER,
		{NULL, 0, NULL, 0},
	};
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, CONFIG_OPTSTRING, longopts, NULL)) != -1) {
		if (config_option(&e->cfg, c, optarg, usage))
			continue;
		switch (c) {
		case OPT_ID:
			if (!id_valid(optarg, strlen(optarg)))
				die_usage("invalid --id: want 1 to %d of "
				    "A-Z a-z 0-9 . _ : @ / -", ID_MAX);
			e->fixed_id = optarg;
			break;
		case OPT_PRIORITY:
			e->opt.priority = (int)option_int("--priority", optarg,
			    PRIORITY_MIN, PRIORITY_MAX);
			break;
		case OPT_DELAY:
			e->opt.delay_ms = option_duration("--delay", optarg, 1);
			break;
		case OPT_RUN_AT:
			if (time_parse(optarg, &e->opt.run_at_ms) < 0)
				die_usage("invalid --run-at: want RFC 3339 "
				    "(2026-11-23T09:00:00Z) or epoch seconds");
			break;
		case OPT_MAX_ATTEMPTS:
			e->opt.max_attempts = (int)option_int("--max-attempts",
			    optarg, 1, MAX_ATTEMPTS_LIMIT);
			break;
		case OPT_TIMEOUT:
			e->opt.timeout_ms = option_duration("--timeout", optarg, 0);
			break;
		case OPT_WAIT:
			e->wait = 1;
			break;
		case OPT_WAIT_TIMEOUT:
			e->wait_timeout_ms = option_duration("--wait-timeout", optarg, 1);
			break;
		case OPT_AFTER:
			add_parents(e, optarg);
			break;
		case OPT_REPLICAS:
			e->replicas = option_int("--replicas", optarg, 1, REPLICAS_MAX);
			break;
		case OPT_REPLICAS_TIMEOUT:
			e->replicas_timeout_ms = option_duration("--replicas-timeout",
			    optarg, 1);
			break;
		default:
			config_bad_option(c, argv, longopts, usage);
		}
	}
	if (e->opt.delay_ms >= 0 && e->opt.run_at_ms >= 0)
		die_usage("give --delay or --run-at, not both");
	if (e->wait_timeout_ms >= 0 && !e->wait)
		die_usage("--wait-timeout goes with --wait");
	if (e->replicas_timeout_ms >= 0 && e->replicas == 0)
		die_usage("--replicas-timeout goes with --replicas");
	check_not_own_parent(e);
}

/* The per-job script arguments shared by every job of this run. */
static void
format_options(struct enqueuer *e)
{
	snprintf(e->priority, sizeof e->priority, "%d", e->opt.priority);
	snprintf(e->max_attempts, sizeof e->max_attempts, "%d", e->opt.max_attempts);
	if (e->opt.delay_ms >= 0)
		snprintf(e->delay, sizeof e->delay, "%lld", (long long)e->opt.delay_ms);
	if (e->opt.run_at_ms >= 0)
		snprintf(e->run_at, sizeof e->run_at, "%lld", (long long)e->opt.run_at_ms);
	if (e->opt.timeout_ms >= 0)
		snprintf(e->timeout, sizeof e->timeout, "%lld", (long long)e->opt.timeout_ms);
	if (e->replicas_timeout_ms < 0)
		e->replicas_timeout_ms = REPLICAS_TIMEOUT_MS;
	snprintf(e->replicas_arg, sizeof e->replicas_arg, "%lld", e->replicas);
	snprintf(e->replicas_timeout, sizeof e->replicas_timeout, "%lld",
	    e->replicas_timeout_ms);
}

/* Register the queue before its first job exists: aq-sweep finds it by
 * aq:queues, which lives outside the queue's hash slot. */
static void
connect_and_prepare(struct enqueuer *e)
{
	const char *sadd[] = {"SADD", e->keys.queues, e->cfg.queue};
	redisContext *registry;

	e->redis = redis_connect_for(&e->cfg.redis, e->keys.base);
	registry = e->cfg.redis.kind == URL_CLUSTER ? /* in a slot of its own */
	    redis_connect_for(&e->cfg.redis, e->keys.queues) : e->redis;
	freeReplyObject(redis_command_ok(registry, &e->cfg.redis, 3, sadd));
	if (registry != e->redis)
		redisFree(registry);
	script_load(e->redis, &e->cfg.redis, &script_enqueue);
	if (e->wait)
		e->waiter = waiter_new(&e->redis, &e->cfg.redis, &e->keys, e->cfg.queue);
}

/* --wait: block until every job enqueued is final, print their records;
 * 0 when all succeeded, 1 when any did not, 75 on --wait-timeout, 65
 * (kept) when input lines were rejected. */
static int
wait_for_outcomes(struct enqueuer *e, int rc)
{
	int waited;

	if (fflush(stdout) != 0)
		die_output();
	waited = waiter_wait(e->waiter, e->wait_timeout_ms);
	int outcome = waiter_print(e->waiter);
	if (waited == EX_TEMPFAIL) {
		warnmsg("timed out waiting for the jobs (--wait-timeout)");
		return EX_TEMPFAIL;
	}
	return rc ? rc : outcome;
}

static void
cleanup(struct enqueuer *e)
{
	for (size_t i = 0; i <= PIPELINE_DEPTH; i++) {
		free(e->ring[i].arena);
		free(e->ring[i].jobs);
	}
	script_args_free(&e->call);
	jb_free(&e->out);
	copy_free(&e->rows);
	waiter_free(e->waiter);
	free(e->after);
	redisFree(e->redis);
	ledger_close(&e->ledger);
	config_free(&e->cfg);
}

int
main(int argc, char **argv)
{
	static struct enqueuer e = {.wait_timeout_ms = -1, .batch_jobs = BATCH_JOBS,
	    .replicas_timeout_ms = -1};
	int rc = 0;

	log_init(argv[0]);
	config_init(&e.cfg);
	job_options_init(&e.opt);
	parse_options(&e, argc, argv);
	config_finish(&e.cfg);
	stdout_watch();
	ledger_config(&e.cfg);
	argc -= optind;
	argv += optind;
	if (e.fixed_id && argc > 1)
		die_usage("--id names one job: give one payload argument");
	check_arguments(argv, argc);
	keys_init(&e.keys, e.cfg.prefix, e.cfg.queue);
	format_options(&e);
	connect_and_prepare(&e);
	open_ledger(&e);

	if (argc > 0) {
		e.input_name = "argument";
		for (int i = 0; i < argc; i++) {
			size_t len = strlen(argv[i]);
			char *payload = jsonl_trim(argv[i], &len);
			add_job(&e, payload, len, (unsigned long)i + 1);
		}
	} else {
		e.input_name = "line";
		if (jsonl_each_idle(STDIN_FILENO, e.cfg.max_line, on_line,
		    send_all, &e, &e.rejected) < 0)
			rc = EX_IOERR;
	}
	send_all(&e);
	if (rc == 0 && e.rejected > 0)
		rc = EX_DATAERR;
	if (rc == 0 && e.unreplicated > 0)
		rc = EX_TEMPFAIL;
	if (e.waiter && rc != EX_IOERR)
		rc = wait_for_outcomes(&e, rc);
	cleanup(&e);
	return finish_stdout(rc);
}
