/* archive.c: aq-sweep's archive of Redis into the PostgreSQL ledger, and the
 * restore of what Redis lost from it. */
#include "archive.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "id.h"
#include "keys.h"
#include "log.h"
#include "mem.h"
#include "redis.h"
#include "script.h"

#define LOG_READ_COUNT "100"   /* log entries per read (each names many jobs) */
#define EVENTS_PAGE 100        /* event entries per XRANGE */
#define EVENTS_PAGE_S "100"

/* The jobs of one batch, and what Redis holds of them. */
struct batch {
	char **ids;
	size_t n, cap;
	redisReply **hashes;       /* HGETALL of each, NULL when not fetched */
	char *final;               /* each one finished */
	char *more;                /* ... and has more events than one page */
	char (*after)[64];         /* ... after this one ("(ID") */
	struct copybuf jobs, events;
	long finished, nevents;
};

/* ---- messages --------------------------------------------------------- */

static int
redis_failed_on(struct archiver *a, const redisContext *c, const char *queue,
    const char *doing, const redisReply *r)
{
	char shown[1024];

	redis_display(a->url, c, shown, sizeof shown);
	if (!r)
		warnmsg("lost the connection to redis at %s while %s of queue %s: %s",
		    shown, doing, queue, c->errstr);
	else
		warnmsg("redis at %s refused %s of queue %s: %s", shown, doing, queue,
		    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
	return ARCHIVE_REDIS_FAILED;
}

static int
redis_failed(struct archiver *a, const char *queue, const char *doing,
    const redisReply *r)
{
	return redis_failed_on(a, a->redis, queue, doing, r);
}

static int
ledger_failed(struct archiver *a, const char *queue)
{
	warnmsg("cannot archive queue %s in the postgresql ledger at %s: %s",
	    queue, a->ledger->shown, a->ledger->err);
	pq.clear(pq.exec(a->ledger->conn, "ROLLBACK"));
	return ARCHIVE_LEDGER_FAILED;
}

static void
print_line(struct archiver *a)
{
	if (jb_line(a->out) < 0)
		die_output();
	a->printed++;
}

/* ---- the pass --------------------------------------------------------- */

int
archive_use_server(struct archiver *a, redisContext *c)
{
	redisReply *r;
	const char *p;

	a->redis = c;
	r = redisCommand(c, "INFO server");
	if (!r || r->type != REDIS_REPLY_STRING ||
	    !(p = strstr(r->str, "run_id:"))) {
		int rc = redis_failed(a, "(all)", "INFO server", r);
		freeReplyObject(r);
		return rc;
	}
	p += 7;
	size_t n = strcspn(p, "\r\n");
	snprintf(a->run_id, sizeof a->run_id, "%.*s", (int)n, p);
	freeReplyObject(r);
	return 0;
}

int
archive_begin_pass(struct archiver *a)
{
	if (!a->temp_tables) {
		if (ledger_run(a->ledger, "creating the archive's temporary tables",
		    "CREATE TEMP TABLE IF NOT EXISTS archive_jobs ("
		    "  queue text, id text, status text, payload text, priority integer,"
		    "  max_attempts integer, timeout_ms bigint, run_at bigint,"
		    "  attempt integer, created bigint, started bigint, finished bigint,"
		    "  worker text, exit_code integer, result text, error text)"
		    "  ON COMMIT DELETE ROWS;"
		    "CREATE TEMP TABLE IF NOT EXISTS archive_events ("
		    "  queue text, job_id text, ms bigint, seq bigint, attempt integer,"
		    "  type text, data text) ON COMMIT DELETE ROWS") < 0)
			return ledger_failed(a, "(all)");
		a->temp_tables = 1;
	}
	return 0;
}

PGresult *
archive_ledger_queues(struct archiver *a)
{
	PGresult *r = ledger_exec(a->ledger, "listing the queues",
	    "SELECT queue FROM {S}.queues ORDER BY queue", 0, NULL);

	if (!r)
		warnmsg("cannot read the queues of the postgresql ledger at %s: %s",
		    a->ledger->shown, a->ledger->err);
	return r;
}

/* ---- a batch of jobs -------------------------------------------------- */

static void
batch_add(struct batch *b, const char *id, size_t n)
{
	b->ids = xgrow(b->ids, &b->cap, b->n + 1, 256, sizeof *b->ids);
	b->ids[b->n++] = xstrndup(id, n);
}

/* Sort the ids and drop the repeated ones (a job changes state many times). */
static void
batch_unique(struct batch *b)
{
	b->n = strv_sort_unique(b->ids, b->n);
}

static void
batch_clear(struct batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		free(b->ids[i]);
		if (b->hashes)
			freeReplyObject(b->hashes[i]);
	}
	free(b->hashes);
	free(b->final);
	free(b->more);
	free(b->after);
	b->hashes = NULL;
	b->final = b->more = NULL;
	b->after = NULL;
	b->n = 0;
	b->finished = b->nevents = 0;
	copy_reset(&b->jobs);
	copy_reset(&b->events);
}

static void
batch_free(struct batch *b)
{
	batch_clear(b);
	free(b->ids);
	copy_free(&b->jobs);
	copy_free(&b->events);
	memset(b, 0, sizeof *b);
}

static const redisReply *
field_of(const redisReply *hash, const char *name)
{
	for (size_t i = 0; i + 1 < hash->elements; i += 2)
		if (hash->element[i]->type == REDIS_REPLY_STRING &&
		    strcmp(hash->element[i]->str, name) == 0 &&
		    hash->element[i + 1]->type == REDIS_REPLY_STRING)
			return hash->element[i + 1];
	return NULL;
}

/* The columns' ranges: PostgreSQL's integer, and epoch milliseconds of
 * the years 1 to 9999 for the times (to_timestamp takes no more). */
#define INT_COLUMN INT32_MIN, INT32_MAX
#define BIGINT_COLUMN INT64_MIN, INT64_MAX
#define MS_COLUMN -62135596800000LL, 253402300799999LL

/* A whole number stored by the scripts; anything else (a hash written by
 * hand), or one out of its column's range, goes in as NULL: one bad record
 * must not stop the archive of every other. */
static void
copy_stored_int(struct copybuf *c, const redisReply *v, long long min,
    long long max)
{
	char *end;
	long long n;

	if (!v) {
		copy_null(c);
		return;
	}
	errno = 0;
	n = strtoll(v->str, &end, 10);
	if (errno || end == v->str || *end || n < min || n > max)
		copy_null(c);
	else
		copy_int(c, n);
}

static void
copy_stored_text(struct copybuf *c, const redisReply *v)
{
	if (v)
		copy_text(c, v->str, v->len);
	else
		copy_null(c);
}

/* JSON as stored when it is JSON (it is, unless someone wrote the hash by
 * hand), else as a JSON string: the json column must take it. */
static void
copy_stored_json(struct copybuf *c, struct jbuf *tmp, const redisReply *v)
{
	char err[64];

	if (!v) {
		copy_null(c);
	} else if (json_check(v->str, v->len, err, sizeof err) == 0) {
		copy_text(c, v->str, v->len);
	} else {
		jb_reset(tmp);
		jb_str(tmp, v->str, v->len);
		copy_text(c, tmp->p, tmp->len);
	}
}

static void
job_row(struct batch *b, struct jbuf *tmp, const char *queue, const char *id,
    const redisReply *h)
{
	struct copybuf *c = &b->jobs;
	static const struct {
		const char *name;
		long long min, max;
	} ints[] = {{"priority", INT_COLUMN}, {"max_attempts", INT_COLUMN},
	    {"timeout_ms", BIGINT_COLUMN}, {"run_at", MS_COLUMN},
	    {"attempt", INT_COLUMN}, {"created", MS_COLUMN},
	    {"started", MS_COLUMN}, {"finished", MS_COLUMN}};
	const redisReply *payload = field_of(h, "payload");

	copy_text(c, queue, strlen(queue));
	copy_text(c, id, strlen(id));
	copy_stored_text(c, field_of(h, "status"));
	if (payload)
		copy_stored_json(c, tmp, payload);
	else
		copy_text(c, "null", 4);
	for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
		copy_stored_int(c, field_of(h, ints[i].name), ints[i].min, ints[i].max);
	copy_stored_text(c, field_of(h, "worker"));
	copy_stored_int(c, field_of(h, "exit_code"), INT_COLUMN);
	copy_stored_json(c, tmp, field_of(h, "result"));
	copy_stored_text(c, field_of(h, "error"));
	copy_row_end(c);
}

/* One event entry ["MS-SEQ", [field, value, ...]] of job id. */
static void
event_row(struct batch *b, struct jbuf *tmp, const char *queue, const char *id,
    const redisReply *e)
{
	struct copybuf *c = &b->events;
	unsigned long long ms, seq;
	const redisReply *type, *data;

	if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
	    e->element[1]->type != REDIS_REPLY_ARRAY ||
	    sscanf(e->element[0]->str, "%llu-%llu", &ms, &seq) != 2)
		return;
	type = field_of(e->element[1], "type");
	data = field_of(e->element[1], "data");
	copy_text(c, queue, strlen(queue));
	copy_text(c, id, strlen(id));
	copy_int(c, (int64_t)ms);
	copy_int(c, (int64_t)seq);
	copy_stored_int(c, field_of(e->element[1], "attempt"), INT_COLUMN);
	copy_text(c, type ? type->str : "event", type ? type->len : 5);
	if (data)
		copy_stored_json(c, tmp, data);
	else
		copy_text(c, "null", 4);
	copy_row_end(c);
	b->nevents++;
}

/* The rows of a page of job i's events (an XRANGE reply), and where the
 * next page starts when this one was full. */
static void
take_page(struct batch *b, struct jbuf *tmp, const char *queue, size_t i,
    const redisReply *r)
{
	for (size_t e = 0; e < r->elements; e++)
		event_row(b, tmp, queue, b->ids[i], r->element[e]);
	b->more[i] = r->elements == EVENTS_PAGE;
	if (b->more[i])
		snprintf(b->after[i], sizeof b->after[i], "(%s",
		    r->element[r->elements - 1]->element[0]->str);
}

/* What a transaction holds in memory at most, roughly: a batch of job
 * records ends before its records pass ARCHIVE_BATCH_BYTES (one record at
 * least), and events go to PostgreSQL (COPY, inside the transaction) each
 * time EVENTS_FLUSH_BYTES of them are read. Records are read HASH_GROUP
 * at a time, the first pages of events EVENTS_GROUP jobs at a time, pages
 * of EVENTS_PAGE events: with lines of the default 1 MiB at most, never
 * more than about 64 MiB (and for what jobs hold, far less). */
#define ARCHIVE_BATCH_BYTES (16 << 20)
#define EVENTS_FLUSH_BYTES (8 << 20)
#define HASH_GROUP 16
#define EVENTS_GROUP 4

/* The bytes of a reply's strings (a hash, an XRANGE page). */
static size_t
reply_bytes(const redisReply *r)
{
	size_t n = r->type == REDIS_REPLY_STRING ? r->len : 0;

	if (r->type == REDIS_REPLY_ARRAY)
		for (size_t i = 0; i < r->elements; i++)
			n += reply_bytes(r->element[i]);
	return n;
}

/* Send the events written so far to the temporary table, in the open
 * transaction, and empty the buffer. */
static int
flush_events(struct archiver *a, struct batch *b, const char *queue)
{
	if (b->events.len == 0)
		return 0;
	if (ledger_copy(a->ledger, "copying events", "COPY archive_events FROM STDIN",
	    &b->events) < 0)
		return ledger_failed(a, queue);
	copy_reset(&b->events);
	return 0;
}

/* The first page of events of the finished jobs among b's [from, to),
 * pipelined. */
static int
first_pages(struct archiver *a, struct batch *b, struct jbuf *tmp,
    const struct keys *k, const char *queue, size_t from, size_t to)
{
	char key[KEY_MAX + ID_MAX];
	const char *what = "reading the events of finished jobs";
	int rc = 0;

	for (size_t i = from; i < to; i++) {
		if (!b->final[i])
			continue;
		const char *argv[] = {"XRANGE", key, "-", "+", "COUNT", EVENTS_PAGE_S};
		keys_events(k, b->ids[i], key, sizeof key);
		if (redisAppendCommandArgv(a->redis, 6, argv, NULL) != REDIS_OK)
			return redis_failed(a, queue, what, NULL);
	}
	for (size_t i = from; i < to; i++) {
		void *reply = NULL;
		if (!b->final[i])
			continue;
		if (redisGetReply(a->redis, &reply) != REDIS_OK)
			return redis_failed(a, queue, what, NULL);
		redisReply *r = reply;
		if (r->type != REDIS_REPLY_ARRAY)
			rc = redis_failed(a, queue, what, r);
		else if (rc == 0)
			take_page(b, tmp, queue, i, r);
		freeReplyObject(r);
	}
	return rc;
}

/* The pages after the first of job i's events, one at a time. */
static int
more_pages(struct archiver *a, struct batch *b, struct jbuf *tmp,
    const struct keys *k, const char *queue, size_t i)
{
	char key[KEY_MAX + ID_MAX], from[64];
	int rc = 0;

	keys_events(k, b->ids[i], key, sizeof key);
	while (b->more[i] && rc == 0) {
		snprintf(from, sizeof from, "%s", b->after[i]);
		const char *argv[] = {"XRANGE", key, from, "+", "COUNT", EVENTS_PAGE_S};
		redisReply *r = redisCommandArgv(a->redis, 6, argv, NULL);
		if (!r || r->type != REDIS_REPLY_ARRAY) {
			rc = redis_failed(a, queue, "reading the events of finished jobs", r);
			freeReplyObject(r);
			break;
		}
		take_page(b, tmp, queue, i, r);
		freeReplyObject(r);
		if (b->events.len >= EVENTS_FLUSH_BYTES)
			rc = flush_events(a, b, queue);
	}
	return rc;
}

/* Every event of the finished jobs of b into the temporary table, inside
 * the open transaction. */
static int
copy_events(struct archiver *a, struct batch *b, const struct keys *k,
    const char *queue)
{
	struct jbuf tmp = {0};
	int rc = 0;

	for (size_t from = 0; from < b->n && rc == 0; from += EVENTS_GROUP) {
		size_t to = b->n - from > EVENTS_GROUP ? from + EVENTS_GROUP : b->n;
		rc = first_pages(a, b, &tmp, k, queue, from, to);
		for (size_t i = from; i < to && rc == 0; i++)
			rc = more_pages(a, b, &tmp, k, queue, i);
		if (rc == 0 && b->events.len >= EVENTS_FLUSH_BYTES)
			rc = flush_events(a, b, queue);
	}
	if (rc == 0)
		rc = flush_events(a, b, queue);
	jb_free(&tmp);
	return rc;
}

/* Keep the first n jobs of b (the others wait for the next batch). */
static void
batch_truncate(struct batch *b, size_t n)
{
	for (size_t i = n; i < b->n; i++)
		free(b->ids[i]);
	b->n = n;
}

/* HGETALL the jobs of b, HASH_GROUP per round trip, until their records
 * pass ARCHIVE_BATCH_BYTES: b keeps the jobs read; their COPY rows. */
static int
fetch_jobs(struct archiver *a, struct batch *b, const struct keys *k,
    const char *queue)
{
	const char *what = "reading jobs to archive";
	char key[KEY_MAX + ID_MAX];
	struct jbuf tmp = {0};
	size_t bytes = 0, read = 0;
	int rc = 0;

	b->hashes = xcalloc(b->n, sizeof *b->hashes);
	b->final = xcalloc(b->n, sizeof *b->final);
	b->more = xcalloc(b->n, sizeof *b->more);
	b->after = xcalloc(b->n, sizeof *b->after);
	while (read < b->n && bytes < ARCHIVE_BATCH_BYTES && rc == 0) {
		size_t to = b->n - read > HASH_GROUP ? read + HASH_GROUP : b->n;
		for (size_t i = read; i < to; i++) {
			const char *argv[2] = {"HGETALL", key};
			keys_job(k, b->ids[i], key, sizeof key);
			if (redisAppendCommandArgv(a->redis, 2, argv, NULL) != REDIS_OK)
				return redis_failed(a, queue, what, NULL);
		}
		for (; read < to; read++) {
			void *reply = NULL;
			if (redisGetReply(a->redis, &reply) != REDIS_OK)
				return redis_failed(a, queue, what, NULL);
			b->hashes[read] = reply;
			if (b->hashes[read]->type != REDIS_REPLY_ARRAY)
				rc = redis_failed(a, queue, what, b->hashes[read]);
			else
				bytes += reply_bytes(b->hashes[read]);
		}
	}
	batch_truncate(b, read);
	for (size_t i = 0; i < b->n && rc == 0; i++) {
		const redisReply *h = b->hashes[i];
		const redisReply *status;
		if (h->elements == 0 || !(status = field_of(h, "status")))
			continue; /* gone: nothing to archive */
		job_row(b, &tmp, queue, b->ids[i], h);
		if (ledger_final(status->str)) {
			b->final[i] = 1;
			b->finished++;
		}
	}
	jb_free(&tmp);
	return rc;
}

/* Write b's rows in one transaction, the events of its finished jobs read
 * meanwhile; upserts, so a replay changes nothing. The ids of b are unique
 * (batch_unique), as ON CONFLICT DO UPDATE wants. */
static int
write_batch(struct archiver *a, struct batch *b, const struct keys *k,
    const char *queue)
{
	struct ledger *l = a->ledger;
	const char *params[1] = {queue};
	PGresult *r;
	int rc;

	if (ledger_run(l, "starting a transaction", "BEGIN") < 0)
		return ledger_failed(a, queue);
	/* the ledger knows the queue, so that a flushed Redis loses none of
	 * its jobs (enqueued without the ledger, they are known from here) */
	r = ledger_exec(l, "registering the queue", "INSERT INTO {S}.queues (queue)"
	    " VALUES ($1) ON CONFLICT DO NOTHING", 1, params);
	pq.clear(r);
	if (!r ||
	    ledger_copy(l, "copying job records", "COPY archive_jobs FROM STDIN",
	    &b->jobs) < 0 ||
	    ledger_run(l, "upserting job records",
	    "INSERT INTO {S}.jobs AS j (queue, id, status, payload, priority,"
	    "  max_attempts, timeout_ms, run_at, attempt, created, started,"
	    "  finished, worker, exit_code, result, error, seen, archived)"
	    " SELECT queue, id, status, payload::json,"
	    "  coalesce(priority, 0), coalesce(max_attempts, 1), timeout_ms,"
	    "  to_timestamp(run_at / 1000.0), coalesce(attempt, 0),"
	    "  coalesce(to_timestamp(created / 1000.0), now()),"
	    "  to_timestamp(started / 1000.0), to_timestamp(finished / 1000.0),"
	    "  worker, exit_code, result::json, error, true, now()"
	    " FROM archive_jobs"
	    " ON CONFLICT (queue, id) DO UPDATE SET status = EXCLUDED.status,"
	    "  priority = EXCLUDED.priority, max_attempts = EXCLUDED.max_attempts,"
	    "  timeout_ms = EXCLUDED.timeout_ms, run_at = EXCLUDED.run_at,"
	    "  attempt = EXCLUDED.attempt, created = EXCLUDED.created,"
	    "  started = EXCLUDED.started, finished = EXCLUDED.finished,"
	    "  worker = EXCLUDED.worker, exit_code = EXCLUDED.exit_code,"
	    "  result = EXCLUDED.result, error = EXCLUDED.error, seen = true,"
	    "  archived = now()") < 0)
		return ledger_failed(a, queue);
	if (b->finished > 0 && (rc = copy_events(a, b, k, queue)) != 0) {
		if (rc == ARCHIVE_REDIS_FAILED) /* a ledger failure rolled back */
			pq.clear(pq.exec(l->conn, "ROLLBACK"));
		return rc;
	}
	if (b->nevents > 0 && ledger_run(l, "inserting events",
	    "INSERT INTO {S}.events (queue, job_id, ms, seq, attempt, type, data)"
	    " SELECT queue, job_id, ms, seq, attempt, type, data::json"
	    " FROM archive_events ON CONFLICT DO NOTHING") < 0)
		return ledger_failed(a, queue);
	if (ledger_run(l, "committing", "COMMIT") < 0)
		return ledger_failed(a, queue);
	return 0;
}

/* After the commit: acknowledge entries (n of them) and let the finished
 * (or vanished) jobs of b be trimmed. *moved gets how many were. */
static int
settle(struct archiver *a, const struct keys *k, const char *queue,
    const struct batch *b, const redisReply *const *entries, size_t n,
    long *moved)
{
	struct script_args call = {0};
	int rc = 0;

	script_args_begin(&call, &script_archive);
	script_args_queue_keys(&call, k);
	script_args_arg(&call, k->base);
	script_args_arg(&call, ARCHIVE_GROUP);
	script_args_argll(&call, (long long)n);
	for (size_t i = 0; i < n; i++)
		script_args_arg(&call, entries[i]->element[0]->str);
	for (size_t i = 0; b && i < b->n; i++) {
		const redisReply *h = b->hashes[i];
		const redisReply *st = h->elements ? field_of(h, "status") : NULL;
		if (!st || ledger_final(st->str))
			script_args_arg(&call, b->ids[i]);
	}
	redisReply *r = script_call(a->redis, a->url, &call);
	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2)
		rc = redis_failed(a, queue, "acknowledging the archive", r);
	else
		*moved = (long)r->element[1]->integer;
	freeReplyObject(r);
	script_args_free(&call);
	return rc;
}

static void
print_archived(struct archiver *a, const char *queue, const struct batch *b)
{
	jb_reset(a->out);
	jb_obj_begin(a->out);
	jb_kstr(a->out, "queue", queue);
	jb_kstr(a->out, "action", "archived");
	jb_kint(a->out, "jobs", (int64_t)b->n);
	jb_kint(a->out, "finished", b->finished);
	jb_kint(a->out, "events", b->nevents);
	jb_obj_end(a->out);
	print_line(a);
}

/* Archive the jobs of all, a->batch at a time; the entries (which named
 * them) are acknowledged with the last part, even when there is none. */
static int
archive_ids(struct archiver *a, const struct keys *k, const char *queue,
    const struct batch *all, const redisReply *const *entries, size_t nentries,
    long *moved)
{
	struct batch part = {0};
	size_t from = 0, to;
	int rc = 0, last;

	*moved = 0;
	do {
		long m = 0;
		to = all->n - from > (size_t)a->batch ? from + (size_t)a->batch : all->n;
		for (size_t i = from; i < to; i++)
			batch_add(&part, all->ids[i], strlen(all->ids[i]));
		if (part.n > 0 && (rc = fetch_jobs(a, &part, k, queue)) == 0 &&
		    (rc = write_batch(a, &part, k, queue)) == 0)
			print_archived(a, queue, &part);
		to = from + part.n; /* fewer when their records were big */
		last = to == all->n;
		if (rc == 0)
			rc = settle(a, k, queue, &part, entries, last ? nentries : 0, &m);
		*moved += m;
		batch_clear(&part);
		from = to;
	} while (!last && rc == 0);
	batch_free(&part);
	return rc;
}

/* The ids (space-separated) that the log entries name, into b. */
static void
collect_ids(struct batch *b, const redisReply *entries)
{
	for (size_t i = 0; i < entries->elements; i++) {
		const redisReply *e = entries->element[i];
		const redisReply *ids;
		if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
		    e->element[1]->type != REDIS_REPLY_ARRAY ||
		    !(ids = field_of(e->element[1], "ids")))
			continue; /* an entry capped away: nothing to read */
		for (const char *p = ids->str; *p;) {
			size_t n = strcspn(p, " ");
			if (n > 0 && n <= ID_MAX && id_valid(p, n))
				batch_add(b, p, n);
			p += n + (p[n] == ' ');
		}
	}
	batch_unique(b);
}

static int
ensure_group(struct archiver *a, const struct keys *k, const char *queue)
{
	const char *argv[] = {"XGROUP", "CREATE", k->log, ARCHIVE_GROUP, "0",
	    "MKSTREAM"};
	redisReply *r = redisCommandArgv(a->redis, 6, argv, NULL);
	int rc = 0;

	if (!r || (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0))
		rc = redis_failed(a, queue, "creating the archive's consumer group", r);
	freeReplyObject(r);
	return rc;
}

/* Read the log through the group: this consumer's pending entries first
 * (from a run that was killed before it acknowledged), then new ones. */
static int
archive_log(struct archiver *a, const struct keys *k, const char *queue)
{
	char start[64] = "0";
	int rc = 0;

	while (rc == 0 && !*a->stop) {
		const char *argv[] = {"XREADGROUP", "GROUP", ARCHIVE_GROUP,
		    ARCHIVE_CONSUMER, "COUNT", LOG_READ_COUNT, "STREAMS", k->log, start};
		redisReply *r = redisCommandArgv(a->redis, 9, argv, NULL);
		const redisReply *entries;
		struct batch ids = {0};
		long moved;

		if (!r || (r->type != REDIS_REPLY_ARRAY && r->type != REDIS_REPLY_NIL)) {
			rc = redis_failed(a, queue, "reading the log for the archive", r);
			freeReplyObject(r);
			break;
		}
		if (r->type == REDIS_REPLY_NIL || r->elements == 0 ||
		    (entries = r->element[0]->element[1])->elements == 0) {
			freeReplyObject(r);
			if (strcmp(start, ">") == 0)
				break;
			snprintf(start, sizeof start, ">"); /* pending done: new ones */
			continue;
		}
		collect_ids(&ids, entries);
		rc = archive_ids(a, k, queue, &ids, (const redisReply *const *)entries->element,
		    entries->elements, &moved);
		if (strcmp(start, ">") != 0)
			snprintf(start, sizeof start, "%s",
			    entries->element[entries->elements - 1]->element[0]->str);
		batch_free(&ids);
		freeReplyObject(r);
	}
	return rc;
}

/* Finished jobs whose log entry the archive never read (the log is capped):
 * whatever still waits in the unarchived set once the log is read. */
static int
archive_leftovers(struct archiver *a, const struct keys *k, const char *queue)
{
	long offset = 0;
	int rc = 0;

	while (rc == 0 && !*a->stop) {
		char from[24], to[24];
		snprintf(from, sizeof from, "%ld", offset);
		snprintf(to, sizeof to, "%ld", offset + a->batch - 1);
		const char *argv[] = {"ZRANGE", k->unarchived, from, to};
		redisReply *r = redisCommandArgv(a->redis, 4, argv, NULL);
		struct batch ids = {0};
		long moved = 0;

		if (!r || r->type != REDIS_REPLY_ARRAY) {
			rc = redis_failed(a, queue, "reading the unarchived jobs", r);
			freeReplyObject(r);
			break;
		}
		for (size_t i = 0; i < r->elements; i++)
			batch_add(&ids, r->element[i]->str, r->element[i]->len);
		size_t n = r->elements;
		freeReplyObject(r);
		if (n == 0) {
			batch_free(&ids);
			break;
		}
		rc = archive_ids(a, k, queue, &ids, NULL, 0, &moved);
		batch_free(&ids);
		offset += (long)n - moved; /* what stays was not finished after all */
		if ((long)n < a->batch)
			break;
	}
	return rc;
}

/* One sweeper archives a queue at a time: a second one would read a job's
 * record before the first wrote a later one, and could write the older
 * over it. Returns 1 when the queue's session lock is ours, 0 when another
 * holds it, or ARCHIVE_LEDGER_FAILED. */
static int
lock_queue(struct archiver *a, const char *queue, int take)
{
	char name[QUEUE_MAX + 200];
	const char *params[1] = {name};
	PGresult *r;
	int ours;

	snprintf(name, sizeof name, "aq archive %s %s", a->ledger->schema, queue);
	r = ledger_exec(a->ledger, take ? "taking the queue's archive lock" :
	    "releasing the queue's archive lock", take ?
	    "SELECT pg_try_advisory_lock(hashtext($1))" :
	    "SELECT pg_advisory_unlock(hashtext($1))", 1, params);
	if (!r)
		return ledger_failed(a, queue);
	ours = strcmp(pq.getvalue(r, 0, 0), "t") == 0;
	pq.clear(r);
	return ours;
}

int
archive_queue(struct archiver *a, const char *queue)
{
	struct keys k;
	int rc, lock;

	keys_init(&k, a->prefix, queue);
	if ((lock = lock_queue(a, queue, 1)) <= 0)
		return lock; /* another sweeper is archiving it: its turn */
	if ((rc = ensure_group(a, &k, queue)) == 0 &&
	    (rc = archive_log(a, &k, queue)) == 0)
		rc = archive_leftovers(a, &k, queue);
	if (rc == ARCHIVE_LEDGER_FAILED) {
		/* released all the same when the session lives on (its
		 * transaction rolled back): it would keep the queue from the
		 * other sweepers; a session that died took it along */
		if (ledger_alive(a->ledger) == 0)
			pq.clear(pq.exec(a->ledger->conn, "SELECT pg_advisory_unlock_all()"));
		return rc;
	}
	if (lock_queue(a, queue, 0) < 0)
		return ARCHIVE_LEDGER_FAILED;
	return rc;
}

/* ---- restore ---------------------------------------------------------- */

static void
print_restored(struct archiver *a, const char *queue, const char *id,
    const redisReply *status)
{
	jb_reset(a->out);
	jb_obj_begin(a->out);
	jb_kstr(a->out, "queue", queue);
	jb_kstr(a->out, "action", "restored");
	jb_kstr(a->out, "id", id);
	jb_key(a->out, "status");
	jb_str(a->out, status->str, status->len);
	jb_obj_end(a->out);
	print_line(a);
}

/* Which candidates of rows Redis lacks, by one pipelined EXISTS each: into
 * missing[], their count returned; -1 when Redis failed. Most candidates
 * are there (a first look at a queue, a restart with its data), and only
 * the others need their payloads sent. */
static int
lacking(struct archiver *a, const struct keys *k, const char *queue,
    const PGresult *rows, int *missing)
{
	char key[KEY_MAX + ID_MAX];
	int n = pq.ntuples(rows), m = 0, rc = 0;

	for (int i = 0; i < n; i++) {
		const char *argv[2] = {"EXISTS", key};
		keys_job(k, pq.getvalue(rows, i, 0), key, sizeof key);
		if (redisAppendCommandArgv(a->redis, 2, argv, NULL) != REDIS_OK)
			return redis_failed(a, queue, "looking for jobs to restore", NULL);
	}
	for (int i = 0; i < n; i++) {
		void *reply = NULL;
		if (redisGetReply(a->redis, &reply) != REDIS_OK)
			return redis_failed(a, queue, "looking for jobs to restore", NULL);
		redisReply *r = reply;
		if (r->type != REDIS_REPLY_INTEGER)
			rc = redis_failed(a, queue, "looking for jobs to restore", r);
		else if (r->integer == 0)
			missing[m++] = i;
		freeReplyObject(r);
	}
	return rc < 0 ? rc : m;
}

/* Give restore.lua the candidates of rows (RESTORE_FIELDS columns each)
 * that Redis lacks; it looks again, atomically. */
static int
restore_rows(struct archiver *a, const struct keys *k, const char *queue,
    const PGresult *rows)
{
	int *missing = xcalloc((size_t)pq.ntuples(rows) + 1, sizeof *missing);
	int n = lacking(a, k, queue, rows, missing);
	if (n <= 0) {
		free(missing);
		return n < 0 ? n : 0;
	}
	struct script_args call = {0};
	int rc = 0;

	script_args_begin(&call, &script_restore);
	script_args_queue_keys(&call, k);
	script_args_arg(&call, k->base);
	script_args_arg(&call, LOG_CAP);
	for (int i = 0; i < n; i++)
		for (int f = 0; f < RESTORE_FIELDS; f++)
			script_args_argn(&call, pq.getvalue(rows, missing[i], f),
			    (size_t)pq.getlength(rows, missing[i], f));
	redisReply *r = script_call(a->redis, a->url, &call);
	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != (size_t)n) {
		rc = redis_failed(a, queue, "restoring jobs from the ledger", r);
	} else {
		for (int i = 0; i < n; i++)
			if (strcmp(r->element[i]->str, "exists") != 0)
				print_restored(a, queue, pq.getvalue(rows, missing[i], 0),
				    r->element[i]);
	}
	freeReplyObject(r);
	script_args_free(&call);
	free(missing);
	return rc;
}

#define RESTORE_COLUMNS \
	"SELECT id, payload, status, attempt, max_attempts, priority," \
	"  coalesce(timeout_ms::text, '')," \
	"  coalesce(round(extract(epoch FROM run_at) * 1000)::bigint::text, '')," \
	"  round(extract(epoch FROM created) * 1000)::bigint" \
	" FROM {S}.jobs WHERE queue = $1" \
	"  AND status NOT IN ('succeeded', 'failed', 'cancelled')"

/* Every unfinished job of the ledger, in id order, a batch at a time; but
 * one Redis never reported and enqueued less than restore_grace_ms ago may
 * be on its way there from an aq-enqueue that just committed it: that one
 * is left to restore_unseen, whose grace covers it (restored now, it would
 * be enqueued a second time when it arrives, and could run twice). */
static int
restore_all(struct archiver *a, const struct keys *k, const char *queue)
{
	char after[ID_MAX + 1] = "", limit[24], grace[32];
	int rc = 0;

	snprintf(limit, sizeof limit, "%ld", a->batch);
	snprintf(grace, sizeof grace, "%lld", a->restore_grace_ms);
	/* fresh statistics, or the planner may sort every job for each page
	 * instead of walking the primary key (rare: after a restart) */
	if (ledger_run(a->ledger, "analyzing the jobs", "ANALYZE {S}.jobs") < 0)
		return ledger_failed(a, queue);
	while (rc == 0 && !*a->stop) {
		const char *params[] = {queue, after, limit, grace};
		PGresult *r = ledger_exec(a->ledger, "reading the unfinished jobs",
		    RESTORE_COLUMNS " AND id > $2"
		    "  AND (seen OR enqueued <= now() - $4::bigint * interval '1 ms')"
		    " ORDER BY id LIMIT $3", 4, params);
		if (!r)
			return ledger_failed(a, queue);
		int n = pq.ntuples(r);
		if (n > 0) {
			rc = restore_rows(a, k, queue, r);
			snprintf(after, sizeof after, "%s", pq.getvalue(r, n - 1, 0));
		}
		pq.clear(r);
		if (n < a->batch)
			break;
	}
	return rc;
}

/* Unfinished jobs Redis never reported, enqueued restore_grace_ms ago or
 * more: restored if Redis lacks them, and marked seen either way. */
static int
restore_unseen(struct archiver *a, const struct keys *k, const char *queue)
{
	char limit[24], grace[32];
	int rc = 0;

	snprintf(limit, sizeof limit, "%ld", a->batch);
	snprintf(grace, sizeof grace, "%lld", a->restore_grace_ms);
	while (rc == 0 && !*a->stop) {
		const char *params[] = {queue, grace, limit};
		PGresult *r = ledger_exec(a->ledger, "reading the jobs redis never reported",
		    RESTORE_COLUMNS " AND NOT seen"
		    "  AND enqueued <= now() - $2::bigint * interval '1 ms'"
		    " ORDER BY enqueued LIMIT $3", 3, params);
		if (!r)
			return ledger_failed(a, queue);
		int n = pq.ntuples(r);
		if (n > 0 && (rc = restore_rows(a, k, queue, r)) == 0) {
			struct jbuf arr = {0};
			const char **ids = xcalloc((size_t)n, sizeof *ids);
			for (int i = 0; i < n; i++)
				ids[i] = pq.getvalue(r, i, 0);
			ledger_text_array(&arr, (size_t)n, ids);
			free(ids);
			const char *up[] = {queue, arr.p};
			PGresult *u = ledger_exec(a->ledger, "marking jobs seen",
			    "UPDATE {S}.jobs SET seen = true WHERE queue = $1"
			    " AND id = ANY($2::text[])", 2, up);
			jb_free(&arr);
			if (!u)
				rc = ledger_failed(a, queue);
			pq.clear(u);
		}
		pq.clear(r);
		if (n < a->batch)
			break;
	}
	return rc;
}

int
restore_queue(struct archiver *a, const char *queue)
{
	struct keys k;
	const char *get[] = {"GET", k.ledger};
	int rc, lost;

	keys_init(&k, a->prefix, queue);
	get[1] = k.ledger;
	redisReply *r = redisCommandArgv(a->redis, 2, get, NULL);
	if (!r || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL)) {
		rc = redis_failed(a, queue, "reading the ledger key", r);
		freeReplyObject(r);
		return rc;
	}
	lost = r->type == REDIS_REPLY_NIL || strcmp(r->str, a->run_id) != 0;
	freeReplyObject(r);
	if (!lost)
		return restore_unseen(a, &k, queue);
	if ((rc = restore_all(a, &k, queue)) < 0 || *a->stop)
		return rc;
	const char *set[] = {"SET", k.ledger, a->run_id};
	const char *sadd[] = {"SADD", k.queues, queue};
	r = redisCommandArgv(a->redis, 3, set, NULL);
	if (!r || r->type == REDIS_REPLY_ERROR) {
		rc = redis_failed(a, queue, "setting the ledger key", r);
		freeReplyObject(r);
		return rc;
	}
	freeReplyObject(r);
	r = redisCommandArgv(a->registry, 3, sadd, NULL);
	if (!r || r->type == REDIS_REPLY_ERROR)
		rc = redis_failed_on(a, a->registry, queue, "registering the queue", r);
	freeReplyObject(r);
	return rc;
}
