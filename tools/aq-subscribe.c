/* aq-subscribe: print the messages of pub/sub channels, the events of a job
 * (replay, then live, until it ends; from the PostgreSQL ledger once Redis
 * no longer has the job), or a queue's log of state changes, as JSON lines;
 * it reconnects after a Redis restart and resumes streams. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "id.h"
#include "json.h"
#include "keys.h"
#include "ledger.h"
#include "log.h"
#include "redis.h"

#define READ_BLOCK_MS 5000      /* one XREAD waits at most this long */
#define READ_COUNT "1000"
#define STREAM_ID_MAX 48

enum { OPT_PATTERN = OPT_TOOL, OPT_JOB, OPT_FOLLOW_QUEUE, OPT_AFTER, OPT_COUNT,
	OPT_TIMEOUT };

struct subscriber {
	struct config cfg;
	struct keys keys;
	int pattern;
	const char *job;             /* --job */
	int follow_queue;            /* --queue */
	char after[STREAM_ID_MAX];   /* the last stream id printed */
	long long seen;              /* --job: the events up to it, lost ones too */
	int seen_known;
	long count;                  /* --count: 0 for no limit */
	long printed;
	long long deadline_ms;       /* --timeout, monotonic; 0 for none */
	char **channels;
	int nchannels;
	redisContext *redis;
	struct ledger ledger;        /* opened when Redis lacks the job */
	struct jbuf out;
};

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: aq-subscribe [-u url | --redis-url-file path] [--prefix p]\n"
	    "                    [--count n] [--timeout duration] [--pattern] channel ...\n"
	    "       aq-subscribe [options] [-q queue] --job id [--after stream-id]\n"
	    "                    [--database-url url | --database-url-file path]\n"
	    "       aq-subscribe [options] -q queue --queue-log [--after stream-id]\n");
}

/* ms left before --timeout (at most cap), or cap without one; 0 when over. */
static long long
time_left(const struct subscriber *s, long long cap)
{
	long long left;

	if (!s->deadline_ms)
		return cap;
	left = s->deadline_ms - clock_mono_ms();
	return left <= 0 ? 0 : left < cap ? left : cap;
}

static void
emit(struct subscriber *s)
{
	if (jb_line(&s->out) < 0 || fflush(stdout) != 0)
		die_output();
	s->printed++;
}

static int
done_counting(const struct subscriber *s)
{
	return s->count > 0 && s->printed >= s->count;
}

/* ---- connections ------------------------------------------------------ */

/* Connect, retrying with backoff (a restart is survived) until --timeout. */
static void
connect_retrying(struct subscriber *s, int first)
{
	char err[REDIS_ERR_MAX], shown[1024];
	int code, backoff = REDIS_RETRY_MIN_MS;

	for (;;) {
		s->redis = redis_try_connect_for(&s->cfg.redis, s->keys.base, err,
		    sizeof err, &code);
		if (s->redis)
			return;
		if (first || code == EX_NOPERM)
			die(code, "cannot connect to redis at %s: %s",
			    url_display(&s->cfg.redis, shown, sizeof shown), err);
		if (s->deadline_ms && time_left(s, 1) == 0)
			die(EX_TEMPFAIL, "timed out while redis was unreachable");
		wait_readable(-1, backoff);
		backoff = redis_retry_next(backoff);
	}
}

static void
lost_connection(struct subscriber *s, const char *what)
{
	char shown[1024];

	warnmsg("lost the connection to redis at %s (%s); reconnecting%s",
	    url_display(&s->cfg.redis, shown, sizeof shown), s->redis->errstr,
	    what);
	redisFree(s->redis);
	s->redis = NULL;
	connect_retrying(s, 0);
}

/* ---- channels --------------------------------------------------------- */

static void
print_message(struct subscriber *s, const redisReply *r)
{
	size_t base = strlen(s->cfg.prefix) + KEYS_CHANNEL_EXTRA;
	int pm = r->elements == 4;
	const redisReply *chan = r->element[pm ? 2 : 1], *data = r->element[pm ? 3 : 2];

	jb_reset(&s->out);
	jb_obj_begin(&s->out);
	if (pm) {
		jb_key(&s->out, "pattern");
		jb_str(&s->out, r->element[1]->str + base, r->element[1]->len - base);
	}
	jb_key(&s->out, "channel");
	jb_str(&s->out, chan->str + (chan->len > base ? base : 0),
	    chan->len > base ? chan->len - base : chan->len);
	jb_key(&s->out, "data");
	jb_json_or_str(&s->out, data->str, data->len);
	jb_obj_end(&s->out);
	emit(s);
}

static void
subscribe_all(struct subscriber *s)
{
	const char **argv = calloc((size_t)s->nchannels + 1, sizeof *argv);
	char **names = calloc((size_t)s->nchannels, sizeof *names);

	if (!argv || !names)
		die(EX_OSERR, "out of memory");
	argv[0] = s->pattern ? "PSUBSCRIBE" : "SUBSCRIBE";
	for (int i = 0; i < s->nchannels; i++) {
		size_t n = strlen(s->cfg.prefix) + KEYS_CHANNEL_EXTRA +
		    strlen(s->channels[i]) + 1;
		names[i] = malloc(n);
		if (!names[i])
			die(EX_OSERR, "out of memory");
		keys_channel(s->cfg.prefix, s->channels[i], names[i], n);
		argv[i + 1] = names[i];
	}
	if (redisAppendCommandArgv(s->redis, s->nchannels + 1, argv, NULL) != REDIS_OK)
		redis_die_io(s->redis, &s->cfg.redis, "subscribing");
	for (int i = 0; i < s->nchannels; i++)
		free(names[i]);
	free(names);
	free(argv);
}

/* Pub/sub has no history: what is published while the connection is down
 * is lost; aq-subscribe(1) says so. */
static int
follow_channels(struct subscriber *s)
{
	subscribe_all(s);
	while (!done_counting(s)) {
		/* with --timeout, read for what is left of it; else block */
		long long left = s->deadline_ms ? time_left(s, s->deadline_ms) : -1;
		void *reply = NULL;
		int got;
		if (s->deadline_ms && left == 0)
			return EX_TEMPFAIL;
		/* no reader of stdout any more (| head -1): it ends in there */
		if ((got = redis_await_reply(s->redis, &reply, left)) == 1)
			return EX_TEMPFAIL;
		if (got < 0) {
			if (s->deadline_ms && time_left(s, 1) == 0)
				return EX_TEMPFAIL;
			lost_connection(s, "; messages published meanwhile are lost");
			subscribe_all(s);
			continue;
		}
		redisReply *r = reply;
		if (r->type == REDIS_REPLY_ARRAY && r->elements >= 3 &&
		    r->element[0]->type == REDIS_REPLY_STRING &&
		    (strcmp(r->element[0]->str, "message") == 0 ||
		    strcmp(r->element[0]->str, "pmessage") == 0))
			print_message(s, r);
		freeReplyObject(r);
	}
	return 0;
}

/* ---- streams: a job's events, a queue's log --------------------------- */

static const redisReply *
entry_field(const redisReply *fields, const char *name)
{
	for (size_t i = 0; i + 1 < fields->elements; i += 2)
		if (strcmp(fields->element[i]->str, name) == 0)
			return fields->element[i + 1];
	return NULL;
}

/* One event: its stream id, type, data (stored text) and attempt (NULL
 * when not stored). */
static void
print_event_fields(struct subscriber *s, const char *id, const char *type,
    const char *data, size_t len, const char *attempt)
{
	jb_reset(&s->out);
	jb_obj_begin(&s->out);
	jb_kstr(&s->out, "id", id);
	jb_kstr(&s->out, "type", type ? type : "event");
	jb_key(&s->out, "data");
	if (data)
		jb_json_or_str(&s->out, data, len);
	else
		jb_null(&s->out);
	if (attempt) {
		jb_key(&s->out, "attempt");
		jb_raw(&s->out, attempt, strlen(attempt));
	}
	jb_obj_end(&s->out);
	emit(s);
}

static void
print_event(struct subscriber *s, const redisReply *entry)
{
	const redisReply *f = entry->element[1];
	const redisReply *type = entry_field(f, "type"), *data = entry_field(f, "data");
	const redisReply *attempt = entry_field(f, "attempt");

	print_event_fields(s, entry->element[0]->str, type ? type->str : NULL,
	    data ? data->str : NULL, data ? data->len : 0,
	    attempt ? attempt->str : NULL);
}

static void
print_log_entry(struct subscriber *s, const redisReply *entry)
{
	const redisReply *f = entry->element[1];
	const redisReply *status = entry_field(f, "status"), *ids = entry_field(f, "ids");
	const redisReply *until = entry_field(f, "until"); /* a throttle hold's end */

	jb_reset(&s->out);
	jb_obj_begin(&s->out);
	jb_kstr(&s->out, "id", entry->element[0]->str);
	jb_kstr(&s->out, "queue", s->cfg.queue);
	jb_kstr(&s->out, "status", status ? status->str : "");
	jb_key(&s->out, "ids");
	jb_raw(&s->out, "[", 1);
	for (const char *p = ids ? ids->str : ""; *p;) {
		size_t n = strcspn(p, " ");
		if (p != ids->str)
			jb_raw(&s->out, ",", 1);
		jb_str(&s->out, p, n);
		p += n + (p[n] == ' ');
	}
	jb_raw(&s->out, "]", 1);
	if (until)
		jb_kint(&s->out, "until", strtoll(until->str, NULL, 10));
	jb_obj_end(&s->out);
	emit(s);
}

/* 1 when ids (space-separated) names id */
static int
names_id(const char *ids, const char *id)
{
	size_t n = strlen(id);

	for (const char *p = ids; (p = strstr(p, id)); p += n)
		if ((p == ids || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
			return 1;
	return 0;
}

static int
final_status(const char *status)
{
	return strcmp(status, "succeeded") == 0 || strcmp(status, "failed") == 0 ||
	    strcmp(status, "cancelled") == 0;
}

/* The job's status now, or NULL (a new string, or NULL for no such job). */
static char *
job_status(struct subscriber *s)
{
	char key[KEY_MAX + ID_MAX];
	const char *argv[3] = {"HGET", key, "status"};
	redisReply *r;
	char *out;

	keys_job(&s->keys, s->job, key, sizeof key);
	r = redisCommandArgv(s->redis, 3, argv, NULL);
	if (!r)
		return (char *)-1;
	out = r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
	freeReplyObject(r);
	return out;
}

/* The entries ever added to a stream and those it holds, from its XINFO
 * STREAM reply: -1 when the reply is not one (no such stream). */
static long long
stream_trimmed(const redisReply *info)
{
	long long added = -1, length = -1;

	for (size_t i = 0; info->type == REDIS_REPLY_ARRAY && i + 1 < info->elements;
	    i += 2) {
		const redisReply *k = info->element[i], *v = info->element[i + 1];
		if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_INTEGER)
			continue;
		if (strcmp(k->str, "entries-added") == 0)
			added = v->integer;
		else if (strcmp(k->str, "length") == 0)
			length = v->integer;
	}
	return added >= 0 && length >= 0 ? added - length : -1;
}

/* One read of the stream after s->after, with the stream's XINFO in the
 * same transaction, so both see it at one moment: the EXEC reply, or NULL
 * when the connection failed. */
static redisReply *
read_page(struct subscriber *s, const char *stream, const char *count)
{
	char from[STREAM_ID_MAX + 1];
	const char *multi[] = {"MULTI"}, *exec[] = {"EXEC"};
	const char *info[] = {"XINFO", "STREAM", stream};
	const char *range[] = {"XRANGE", stream, from, "+", "COUNT", count};
	redisReply *r = NULL;

	snprintf(from, sizeof from, "(%s", s->after);
	redisAppendCommandArgv(s->redis, 1, multi, NULL);
	redisAppendCommandArgv(s->redis, 3, info, NULL);
	redisAppendCommandArgv(s->redis, count ? 6 : 4, range, NULL);
	redisAppendCommandArgv(s->redis, 1, exec, NULL);
	for (int i = 0; i < 4; i++) {
		void *reply = NULL;
		if (redisGetReply(s->redis, &reply) != REDIS_OK) {
			freeReplyObject(r);
			return NULL;
		}
		if (i < 3)
			freeReplyObject(reply);
		else
			r = reply;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
		freeReplyObject(r);
		return NULL;
	}
	return r;
}

/* "MS-SEQ": -1, 0 or 1 as a is before, at or after b. */
static int
cmp_stream_id(const char *a, const char *b)
{
	unsigned long long am = 0, as = 0, bm = 0, bs = 0;

	sscanf(a, "%llu-%llu", &am, &as);
	sscanf(b, "%llu-%llu", &bm, &bs);
	return am != bm ? (am < bm ? -1 : 1) : as != bs ? (as < bs ? -1 : 1) : 0;
}

static void
print_gap(struct subscriber *s, long long lost)
{
	jb_reset(&s->out);
	jb_obj_begin(&s->out);
	jb_kstr(&s->out, "type", "gap");
	jb_kstr(&s->out, "after", s->after);
	jb_key(&s->out, "lost");
	if (lost >= 0)
		jb_int(&s->out, lost);
	else
		jb_null(&s->out);
	jb_obj_end(&s->out);
	s->printed--; /* not counted as an event */
	emit(s);
}

/*
 * A job's event stream is capped: a follower that falls behind the cap, or
 * replays a stream that was capped, must not skip what was trimmed in
 * silence. It knows how many entries lie up to its position (s->seen:
 * printed, trimmed or skipped); the stream counts the entries ever added;
 * the trimmed ones are the first (added - length). More trimmed than seen
 * is a gap: a line says so, and the reading goes on after it.
 */
static void
note_gap(struct subscriber *s, const redisReply *info)
{
	long long trimmed = stream_trimmed(info);

	if (trimmed < 0 || trimmed <= s->seen)
		return;
	print_gap(s, trimmed - s->seen);
	s->seen = trimmed;
}

/*
 * Where --after puts the follower: how many entries lie up to it. When it
 * is past the first entry still held, exactly (what was added, less what
 * lies after it). When it is before it and the stream was trimmed, the
 * entries trimmed after it cannot be counted: that is a gap of unknown
 * size (or none, when the given entry was the last one trimmed).
 */
static int
count_seen(struct subscriber *s, const char *stream)
{
	redisReply *r = read_page(s, stream, NULL);
	const redisReply *info, *rest;
	long long added = -1, trimmed;
	const char *first = NULL;

	if (!r)
		return -1;
	info = r->element[0];
	rest = r->element[1];
	trimmed = stream_trimmed(info);
	for (size_t i = 0; info->type == REDIS_REPLY_ARRAY && i + 1 < info->elements;
	    i += 2) {
		const redisReply *k = info->element[i], *v = info->element[i + 1];
		if (k->type != REDIS_REPLY_STRING)
			continue;
		if (strcmp(k->str, "entries-added") == 0 && v->type == REDIS_REPLY_INTEGER)
			added = v->integer;
		else if (strcmp(k->str, "first-entry") == 0 &&
		    v->type == REDIS_REPLY_ARRAY && v->elements == 2)
			first = v->element[0]->str;
	}
	s->seen_known = 1;
	if (trimmed < 0 || rest->type != REDIS_REPLY_ARRAY) {
		s->seen = 0; /* no such stream (yet) */
	} else if (trimmed > 0 && (!first || cmp_stream_id(s->after, first) < 0) &&
	    rest->elements > 0) {
		print_gap(s, -1);
		s->seen = trimmed;
	} else {
		s->seen = added - (long long)rest->elements;
	}
	freeReplyObject(r);
	return 0;
}

/* Read the stream after s->after to its end, printing each entry. */
static int
drain(struct subscriber *s, const char *stream, int events)
{
	if (events && !s->seen_known) {
		if (strcmp(s->after, "0-0") == 0) {
			s->seen = 0;
			s->seen_known = 1;
		} else if (count_seen(s, stream) < 0) {
			return -1;
		}
	}
	for (;;) {
		redisReply *r = read_page(s, stream, READ_COUNT);
		if (!r)
			return -1;
		const redisReply *page = r->element[1];
		if (events)
			note_gap(s, r->element[0]);
		size_t n = page->type == REDIS_REPLY_ARRAY ? page->elements : 0;
		for (size_t i = 0; i < n && !done_counting(s); i++) {
			snprintf(s->after, sizeof s->after, "%s", page->element[i]->element[0]->str);
			s->seen++;
			if (events)
				print_event(s, page->element[i]);
			else
				print_log_entry(s, page->element[i]);
		}
		freeReplyObject(r);
		if (n < 1000 || done_counting(s))
			return 0;
	}
}

static void
print_end(struct subscriber *s, const char *status)
{
	jb_reset(&s->out);
	jb_obj_begin(&s->out);
	jb_kstr(&s->out, "type", "end");
	jb_kstr(&s->out, "status", status);
	jb_obj_end(&s->out);
	s->printed--; /* not counted as an event */
	emit(s);
}

/* The id of the last entry of the log now ("0-0" when empty): the job's end
 * is watched for from there on. */
static int
log_tail(struct subscriber *s, char *out)
{
	const char *argv[] = {"XREVRANGE", s->keys.log, "+", "-", "COUNT", "1"};
	redisReply *r = redisCommandArgv(s->redis, 6, argv, NULL);

	if (!r)
		return -1;
	snprintf(out, STREAM_ID_MAX, "%s", r->type == REDIS_REPLY_ARRAY && r->elements ?
	    r->element[0]->element[0]->str : "0-0");
	freeReplyObject(r);
	return 0;
}

/* Did this XREAD reply carry a log entry naming the job? The log's last
 * id seen is kept in logid. */
static int
log_names_job(const struct subscriber *s, const redisReply *r, char *logid)
{
	int named = 0;

	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
		const redisReply *stream = r->element[i];
		if (strcmp(stream->element[0]->str, s->keys.log) != 0)
			continue;
		for (size_t j = 0; j < stream->element[1]->elements; j++) {
			const redisReply *e = stream->element[1]->element[j];
			const redisReply *ids = entry_field(e->element[1], "ids");
			snprintf(logid, STREAM_ID_MAX, "%s", e->element[0]->str);
			named |= ids && names_id(ids->str, s->job);
		}
	}
	return named;
}

/* The job is not in Redis: print what the ledger holds of its events after
 * s->after, then its end. Returns the exit status; -1 when the ledger holds
 * it as not finished (Redis lost it: aq-sweep puts it back, so wait). Exits
 * 1 when the ledger does not know it either. */
static int
follow_from_ledger(struct subscriber *s)
{
	char ms[24] = "0", seq[24] = "0";
	const char *params[4] = {s->cfg.queue, s->job, ms, seq};
	PGresult *r;
	int rc;

	if (!s->ledger.conn)
		ledger_open_or_die(&s->ledger, s->cfg.database_url,
		    s->cfg.database_from, s->cfg.prefix);
	sscanf(s->after, "%20[0-9]-%20[0-9]", ms, seq);
	r = ledger_exec(&s->ledger, "reading the job's events",
	    "SELECT ms::text || '-' || seq::text, type, data::text, attempt::text"
	    " FROM {S}.events WHERE queue = $1 AND job_id = $2"
	    "  AND (ms, seq) > ($3::bigint, $4::bigint) ORDER BY ms, seq", 4, params);
	if (!r)
		die(EX_UNAVAILABLE, "cannot read the postgresql ledger at %s: %s",
		    s->ledger.shown, s->ledger.err);
	for (int i = 0; i < pq.ntuples(r) && !done_counting(s); i++) {
		snprintf(s->after, sizeof s->after, "%s", pq.getvalue(r, i, 0));
		print_event_fields(s, pq.getvalue(r, i, 0), pq.getvalue(r, i, 1),
		    pq.getvalue(r, i, 2), (size_t)pq.getlength(r, i, 2),
		    pq.getisnull(r, i, 3) ? NULL : pq.getvalue(r, i, 3));
	}
	pq.clear(r);
	r = ledger_exec(&s->ledger, "reading the job's status",
	    "SELECT status FROM {S}.jobs WHERE queue = $1 AND id = $2", 2, params);
	if (!r)
		die(EX_UNAVAILABLE, "cannot read the postgresql ledger at %s: %s",
		    s->ledger.shown, s->ledger.err);
	if (pq.ntuples(r) == 0)
		die(1, "no job %s in queue %s", s->job, s->cfg.queue);
	if (!final_status(pq.getvalue(r, 0, 0))) {
		pq.clear(r);
		return -1;
	}
	print_end(s, pq.getvalue(r, 0, 0));
	rc = strcmp(pq.getvalue(r, 0, 0), "succeeded") == 0 ? 0 : 1;
	pq.clear(r);
	return rc;
}

/* Replay the job's events, then follow them live; the job's end is seen on
 * the queue's log, read in the same XREAD, so no polling is needed. */
static int
follow_job(struct subscriber *s)
{
	char events[KEY_MAX + ID_MAX], logid[STREAM_ID_MAX] = "", block[24];
	char *status = NULL;
	int check = 1, rc;

	keys_events(&s->keys, s->job, events, sizeof events);
	for (;;) {
		if (!logid[0] && log_tail(s, logid) < 0)
			goto reconnect;
		if (check) {
			free(status);
			if ((status = job_status(s)) == (char *)-1) {
				status = NULL;
				goto reconnect;
			}
			if (!status && !s->cfg.database_url)
				die(1, "no job %s in queue %s", s->job, s->cfg.queue);
			if (!status) {
				if ((rc = follow_from_ledger(s)) >= 0 || done_counting(s))
					return rc < 0 ? 0 : rc;
				long long nap = time_left(s, 1000);
				if (s->deadline_ms && nap == 0)
					return EX_TEMPFAIL;
				wait_readable(-1, nap);
				continue; /* until aq-sweep has put it back */
			}
			check = 0;
		}
		if (drain(s, events, 1) < 0)
			goto reconnect;
		if (final_status(status) || done_counting(s))
			break;
		long long left = time_left(s, READ_BLOCK_MS);
		if (s->deadline_ms && left == 0) {
			free(status);
			return EX_TEMPFAIL;
		}
		snprintf(block, sizeof block, "%lld", left);
		const char *argv[] = {"XREAD", "COUNT", READ_COUNT, "BLOCK", block,
		    "STREAMS", events, s->keys.log, s->after, logid};
		redisReply *r = redis_command_await(s->redis, 10, argv,
		    left + REDIS_COMMAND_TIMEOUT_MS);
		if (!r)
			goto reconnect;
		/* events are printed by the next drain; the status is looked at
		 * again when the log names the job, or after a quiet while */
		check = r->type == REDIS_REPLY_NIL || log_names_job(s, r, logid);
		freeReplyObject(r);
		continue;
reconnect:
		lost_connection(s, "");
		logid[0] = '\0';
		check = 1;
	}
	if (final_status(status))
		print_end(s, status);
	rc = !final_status(status) || strcmp(status, "succeeded") == 0 ? 0 : 1;
	free(status);
	return rc;
}

static int
follow_log(struct subscriber *s)
{
	char block[24];

	if (!s->after[0] && log_tail(s, s->after) < 0)
		die(EX_UNAVAILABLE, "lost the connection to redis");
	while (!done_counting(s)) {
		long long left = time_left(s, READ_BLOCK_MS);
		if (s->deadline_ms && left == 0)
			return EX_TEMPFAIL;
		snprintf(block, sizeof block, "%lld", left);
		const char *argv[] = {"XREAD", "COUNT", READ_COUNT, "BLOCK", block,
		    "STREAMS", s->keys.log, s->after};
		redisReply *r = redis_command_await(s->redis, 8, argv,
		    left + REDIS_COMMAND_TIMEOUT_MS);
		if (!r) {
			lost_connection(s, "");
			continue;
		}
		if (r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
			const redisReply *entries = r->element[0]->element[1];
			for (size_t i = 0; i < entries->elements && !done_counting(s); i++) {
				snprintf(s->after, sizeof s->after, "%s",
				    entries->element[i]->element[0]->str);
				print_log_entry(s, entries->element[i]);
			}
		}
		freeReplyObject(r);
	}
	return 0;
}

/* ---- options ---------------------------------------------------------- */

static int
stream_id_valid(const char *s)
{
	size_t n = strspn(s, "0123456789");

	if (n == 0 || n > 20)
		return 0;
	if (s[n] == '\0')
		return 1;
	return s[n] == '-' && strspn(s + n + 1, "0123456789") == strlen(s + n + 1) &&
	    strlen(s + n + 1) > 0 && strlen(s + n + 1) <= 20;
}

static int
channel_valid(const char *c, int pattern)
{
	size_t n = strlen(c);

	if (!pattern)
		return id_valid(c, n);
	for (size_t i = 0; i < n; i++)
		if (!id_valid(c + i, 1) && !strchr("*?[]^", c[i]))
			return 0;
	return n >= 1 && n <= ID_MAX;
}

static void
parse_options(struct subscriber *s, int argc, char **argv)
{
	static const struct option longopts[] = {
		CONFIG_LONG_OPTIONS,
		{"pattern", no_argument, NULL, OPT_PATTERN},
		{"job", required_argument, NULL, OPT_JOB},
		{"queue-log", no_argument, NULL, OPT_FOLLOW_QUEUE},
		{"after", required_argument, NULL, OPT_AFTER},
		{"count", required_argument, NULL, OPT_COUNT},
		{"timeout", required_argument, NULL, OPT_TIMEOUT},
		CONFIG_LONG_OPTIONS_LEDGER,
		{NULL, 0, NULL, 0},
	};
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, CONFIG_OPTSTRING, longopts, NULL)) != -1) {
		if (config_option(&s->cfg, c, optarg, usage))
			continue;
		switch (c) {
		case OPT_PATTERN:
			s->pattern = 1;
			break;
		case OPT_JOB:
			if (!id_valid(optarg, strlen(optarg)))
				die_usage("invalid --job id: want 1 to %d of "
				    "A-Z a-z 0-9 . _ : @ / -", ID_MAX);
			s->job = optarg;
			break;
		case OPT_FOLLOW_QUEUE:
			s->follow_queue = 1;
			break;
		case OPT_AFTER:
			if (!stream_id_valid(optarg))
				die_usage("invalid --after '%.60s': want a stream id "
				    "like 1795000000000-0", optarg);
			snprintf(s->after, sizeof s->after, "%s", optarg);
			break;
		case OPT_COUNT:
			s->count = option_int("--count", optarg, 1, 1000000000L);
			break;
		case OPT_TIMEOUT:
			s->deadline_ms = clock_mono_ms() + option_duration("--timeout", optarg, 0);
			break;
		default:
			config_bad_option(c, argv, longopts, usage);
		}
	}
	s->channels = argv + optind;
	s->nchannels = argc - optind;
	if ((s->job != NULL) + s->follow_queue + (s->nchannels > 0) != 1)
		die_usage("give channels, --job ID, or --queue-log (one of them)");
	if (s->after[0] && !s->job && !s->follow_queue)
		die_usage("--after goes with --job or --queue-log");
	for (int i = 0; i < s->nchannels; i++)
		if (!channel_valid(s->channels[i], s->pattern))
			die_usage("invalid channel name '%.80s': want 1 to %d of "
			    "A-Z a-z 0-9 . _ : @ / -%s", s->channels[i], ID_MAX,
			    s->pattern ? " and * ? [ ] ^" : "");
}

int
main(int argc, char **argv)
{
	static struct subscriber s;
	int rc;

	log_init(argv[0]);
	config_init(&s.cfg);
	parse_options(&s, argc, argv);
	config_finish(&s.cfg);
	stdout_watch();
	if (s.job)
		ledger_config(&s.cfg);
	keys_init(&s.keys, s.cfg.prefix, s.cfg.queue);
	if (s.job && !s.after[0])
		snprintf(s.after, sizeof s.after, "0-0");
	connect_retrying(&s, 1);
	if (s.job)
		rc = follow_job(&s);
	else if (s.follow_queue)
		rc = follow_log(&s);
	else
		rc = follow_channels(&s);
	if (rc == EX_TEMPFAIL)
		warnmsg("timed out");
	redisFree(s.redis);
	ledger_close(&s.ledger);
	jb_free(&s.out);
	config_free(&s.cfg);
	return finish_stdout(rc);
}
