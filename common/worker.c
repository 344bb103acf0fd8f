/* worker.c: the worker engine: slots running handlers on one libuv loop
 * (a process per job, or with --lines one kept per slot), three Redis
 * connections (commands, the blocking wait, cancel notices). */
#define _GNU_SOURCE
#include "worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <jansson.h>

#include "aredis.h"
#include "child.h"
#include "id.h"
#include "json.h"
#include "keys.h"
#include "log.h"
#include "mem.h"
#include "redis.h"
#include "script.h"

#define RECOVER_MAX "100"
#define PROMOTE_MAX "100"
#define ERROR_TAIL 4096
#define WAIT_MAX_S 2.0
#define BACKOFF_CAP_MS (3600 * 1000LL)
#define SHUTDOWN_KILL_MS 2000
#define HELD_MAX (8 << 20)
#define DRAIN_MS 2000        /* output read after a handler's exit */
#define FLUSH_MS 2            /* reports wait at most this for a batch */
#define WORK_CALLS 2          /* work calls in flight: one runs in Redis while
                               * the next is on its way */
#define RESTART_MIN_MS 100   /* --lines: backoff of a handler that exits */
#define RESTART_MAX_MS 10000

enum stop_reason { STOP_NONE, STOP_TIMEOUT, STOP_CANCEL, STOP_SHUTDOWN, STOP_LEASE };

/* An outcome waiting to be reported (by the next work call). */
struct report {
	uint64_t seq;               /* names it in the work call that sends it */
	int sent;                   /* a work call carries it, unanswered yet */
	char id[ID_MAX + 1];
	char token[24];
	const char *outcome;        /* succeeded failed retry cancelled requeue */
	char *result, *error;
	char exit_code[8];
	char delay[24];
};

/* Output of a handler being cut into lines. */
struct lines {
	char *buf;
	size_t len, cap;
};

/*
 * A slot runs one job at a time. In exec mode its handler process is the
 * job's: started for it, and the job ends when the process has exited and
 * its pipes are closed. In line mode (--lines) the process is the slot's:
 * started for its first job and kept; a job ends with the next line of its
 * stdout, or with the process if it exits first (then it is started again
 * for the next job, after a backoff when it was not stopped by the worker).
 */
struct slot {
	struct worker *w;
	int index;
	int busy;                   /* a job is in flight */
	char id[ID_MAX + 1];
	char token[24];
	int attempt, max_attempts;
	int64_t timeout_ms;
	struct child child;
	uv_pipe_t in, out, err;
	int open_handles;           /* pipes not yet closed */
	int exited, status;         /* from waitpid */
	int exec_errno;             /* the command could not be run */
	enum stop_reason stop;
	int killed;                 /* SIGKILL sent */
	int lost;                   /* lease lost: report nothing */
	uint64_t lease_deadline;    /* child_now_ms clock: the worker kills */
	uint64_t keeper_deadline;   /* the keeper kills, should the worker not */
	struct lines outl, errl;
	char *last, *payload;       /* last stdout line: the result */
	size_t last_len;
	char *payload_in;           /* line mode: the job's, until delivered */
	size_t payload_in_len;
	char errtail[2 * ERROR_TAIL];
	size_t errtail_len;
	uv_timer_t timeout, kill, lease;
	uv_write_t write;
	uv_buf_t wbuf;
	char env[5][ID_MAX + QUEUE_MAX + 64];
	unsigned long dropped_events;
	unsigned long event_calls;  /* numbers this job's event calls */
	int up;                     /* line mode: the process runs, or its
	                             * pipes are still open */
	int crashes;                /* line mode: exits in a row, not asked for */
	uint64_t restart_at;        /* line mode: not started again before */
	int shutting;               /* line mode: stdin closed to end it */
	uint64_t guarded;           /* the keeper kills the process then (0: never) */
	uv_timer_t restart;
};

/*
 * A job claimed ahead (--prefetch): leased in Redis, renewed with the
 * others, started as soon as a slot frees up, so a slot never waits for a
 * round trip to Redis between two jobs.
 */
struct ahead {
	char id[ID_MAX + 1];
	char token[24];
	char *payload;
	size_t payload_len;
	int attempt, max_attempts;
	int64_t timeout_ms;          /* -1: the worker's */
	uint64_t renewed_at;         /* its lease runs from then */
};

struct held_call;

struct worker {
	const struct worker_options *o;
	struct held_call *held, **held_tail;
	size_t held_bytes;
	uv_loop_t *loop;
	struct keys keys;
	char host[256], pid[16], started[24], lease_str[24];
	struct aredis cmd, block, sub;
	struct slot *slots;
	int running;                /* busy slots */
	struct report *reports;
	size_t nreports, capreports;
	struct ahead *ahead;         /* claimed, waiting for a slot */
	size_t nahead;
	int work_in_flight;         /* work calls sent, unanswered (WORK_CALLS at most) */
	int claiming;               /* jobs those calls claim */
	uint64_t report_seq;
	int renew_in_flight, wait_in_flight;
	uint64_t renew_sent_at;
	long claimed;
	int draining, forced, done;
	int burst_idle;             /* --burst and a claim found nothing */
	int nothing_to_claim;       /* the last claim came back short: wait */
	int cmd_lost;               /* the command connection was lost ... */
	int announce_leases;        /* ... so say what is still ours when back */
	int give_up;                /* stop trying to report (Redis gone) */
	uv_timer_t renew, grace, flush;
	int flush_due;              /* reports waited FLUSH_MS: send them */
	uv_signal_t sigterm, sigint, sighup, sigchld;
	struct jbuf jb;
	int exit_code;
};

static void kick(struct worker *w);
static void maybe_finish_worker(struct worker *w);
static void start_ahead_jobs(struct worker *w);
static int out_of_work(const struct worker *w);

/* ---- small helpers ---------------------------------------------------- */

static void
lines_free(struct lines *l)
{
	free(l->buf);
	memset(l, 0, sizeof *l);
}

static uint64_t
random_u64(void)
{
	uint64_t v = 0;

	if (getrandom(&v, sizeof v, 0) != sizeof v)
		v = (uint64_t)time(NULL) ^ (uint64_t)getpid();
	return v;
}

/* Exponential backoff with jitter: backoff * 2^(attempt-1), +-25%, capped. */
static int64_t
retry_delay(const struct worker *w, int attempt)
{
	int64_t d = w->o->backoff_ms;

	for (int i = 1; i < attempt && d < BACKOFF_CAP_MS; i++)
		d *= 2;
	if (d > BACKOFF_CAP_MS)
		d = BACKOFF_CAP_MS;
	d = d * 3 / 4 + (int64_t)(random_u64() % (uint64_t)(d / 2 + 1));
	return d;
}

/* The text of a JSON document for s: s itself when it is JSON, else a JSON
 * string of it. Returns a new string. */
static char *
json_or_string(const char *s, size_t n)
{
	char err[64];
	struct jbuf b = {0};
	char *out;

	if (n > 0 && json_check(s, n, err, sizeof err) == 0)
		jb_json(&b, s, n);
	else
		jb_str(&b, s, n);
	out = xstrndup(b.p, b.len);
	jb_free(&b);
	return out;
}

/* ---- reports ---------------------------------------------------------- */

static void
report_free(struct report *r)
{
	free(r->result);
	free(r->error);
}

static struct report *
report_new(struct worker *w, const char *id, const char *token, const char *outcome)
{
	struct report *r;

	if (w->nreports == w->capreports) {
		w->capreports = w->capreports ? w->capreports * 2 : 16;
		w->reports = xrealloc(w->reports, w->capreports * sizeof *w->reports);
	}
	r = &w->reports[w->nreports++];
	memset(r, 0, sizeof *r);
	r->seq = ++w->report_seq;
	snprintf(r->id, sizeof r->id, "%s", id);
	snprintf(r->token, sizeof r->token, "%s", token);
	r->outcome = outcome;
	r->result = xstrdup("");
	r->error = xstrdup("");
	return r;
}

static struct report *
report_add(struct worker *w, const struct slot *s, const char *outcome)
{
	return report_new(w, s->id, s->token, outcome);
}

static struct report *
report_by_seq(struct worker *w, uint64_t seq)
{
	for (size_t i = 0; i < w->nreports; i++)
		if (w->reports[i].seq == seq)
			return &w->reports[i];
	return NULL;
}

/* Drop the reports that are not to be sent again (applied, or stale). */
static void
reports_drop(struct worker *w, const uint64_t *seqs, size_t n)
{
	size_t k = 0;

	for (size_t i = 0; i < w->nreports; i++) {
		int gone = 0;
		for (size_t j = 0; j < n && !gone; j++)
			gone = w->reports[i].seq == seqs[j];
		if (gone)
			report_free(&w->reports[i]);
		else
			w->reports[k++] = w->reports[i];
	}
	w->nreports = k;
}

static void
reports_clear(struct worker *w)
{
	for (size_t i = 0; i < w->nreports; i++)
		report_free(&w->reports[i]);
	w->nreports = 0;
}

/* The reports no work call in flight carries. */
static size_t
reports_unsent(const struct worker *w)
{
	size_t n = 0;

	for (size_t i = 0; i < w->nreports; i++)
		n += !w->reports[i].sent;
	return n;
}

/* ---- events: output lines of a handler -------------------------------- */

struct event_batch {
	const char **argv;
	size_t *lens;
	char **owned;
	int argc, cap, nowned;
};

static void
batch_push(struct event_batch *b, const char *s, size_t n, int owned)
{
	if (b->argc == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 16;
		b->argv = xrealloc(b->argv, (size_t)b->cap * sizeof *b->argv);
		b->lens = xrealloc(b->lens, (size_t)b->cap * sizeof *b->lens);
		b->owned = xrealloc(b->owned, (size_t)b->cap * sizeof *b->owned);
	}
	b->argv[b->argc] = s;
	b->lens[b->argc++] = n;
	if (owned)
		b->owned[b->nowned++] = (char *)s;
}

static void
batch_free(struct event_batch *b)
{
	for (int i = 0; i < b->nowned; i++)
		free(b->owned[i]);
	free(b->argv);
	free(b->lens);
	free(b->owned);
}

static void send_held(struct worker *w);
static void free_held(struct held_call *h);

/* Append the line to the batch as an event of type kind. */
static void
event_line(struct event_batch *b, const char *kind, const char *line, size_t n)
{
	char *data = json_or_string(line, n);

	batch_push(b, kind, strlen(kind), 0);
	batch_push(b, data, strlen(data), 1);
}

/*
 * Every event call is kept until Redis has answered it: one that a lost
 * connection took with it is sent again when the connection is back (before
 * any report, on the same connection, so in order); event.lua drops a call
 * it has applied already (by the job's event call number), so none is
 * recorded twice.
 */
struct held_call {
	struct held_call *next;
	int argc;
	char **argv;
	size_t *lens;
	size_t bytes;
	int sent;                  /* awaiting its reply */
};

/* Replies come in the order of the calls: this one answers the first. */
static void
on_event_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct worker *w = priv;
	struct held_call *h = w->held;

	(void)ac;
	if (!reply || script_is_noscript(reply)) {
		/* the connection went (or is made to go, to load the scripts
		 * again): send them all again when it is back */
		for (; h; h = h->next)
			h->sent = 0;
		if (reply)
			aredis_usable(&w->cmd, reply, "a job's output");
		return;
	}
	aredis_usable(&w->cmd, reply, "a job's output");
	if (!h)
		return;
	w->held = h->next;
	if (!w->held)
		w->held_tail = &w->held;
	w->held_bytes -= h->bytes;
	free_held(h);
}

static void
hold_call(struct worker *w, const struct event_batch *b)
{
	struct held_call *h = xcalloc(1, sizeof *h);

	h->argc = b->argc;
	h->argv = xcalloc((size_t)b->argc, sizeof *h->argv);
	h->lens = xcalloc((size_t)b->argc, sizeof *h->lens);
	for (int i = 0; i < b->argc; i++) {
		h->argv[i] = xmalloc(b->lens[i] + 1);
		memcpy(h->argv[i], b->argv[i], b->lens[i]);
		h->argv[i][b->lens[i]] = '\0';
		h->lens[i] = b->lens[i];
		h->bytes += b->lens[i];
	}
	w->held_bytes += h->bytes;
	*w->held_tail = h;
	w->held_tail = &h->next;
}

static void
free_held(struct held_call *h)
{
	for (int i = 0; i < h->argc; i++)
		free(h->argv[i]);
	free(h->argv);
	free(h->lens);
	free(h);
}

/* Send, in order, the event calls not sent yet (or lost with a connection). */
static void
send_held(struct worker *w)
{
	for (struct held_call *h = w->held; h; h = h->next) {
		if (h->sent)
			continue;
		if (aredis_command(&w->cmd, on_event_reply, w, h->argc,
		    (const char **)h->argv, h->lens) < 0)
			return;
		h->sent = 1;
	}
}

static void
send_events(struct slot *s, struct event_batch *b, char *jobkey, char *evkey)
{
	struct worker *w = s->w;
	char numkeys[16];
	int nlines = (b->argc - 8) / 2;

	if (nlines <= 0)
		return;
	script_argv(&script_event, 2, numkeys, b->argv, b->lens);
	b->argv[3] = jobkey;
	b->lens[3] = strlen(jobkey);
	b->argv[4] = evkey;
	b->lens[4] = strlen(evkey);
	if (w->held_bytes >= HELD_MAX) {
		s->dropped_events += (unsigned long)nlines;
		return;
	}
	hold_call(w, b);
	send_held(w);
}

static void
keep_error_tail(struct slot *s, const char *line, size_t n)
{
	if (n > ERROR_TAIL)
		line += n - ERROR_TAIL, n = ERROR_TAIL;
	if (s->errtail_len + n + 1 > sizeof s->errtail) {
		size_t keep = ERROR_TAIL - n - 1 < s->errtail_len ?
		    ERROR_TAIL - n - 1 : s->errtail_len;
		memmove(s->errtail, s->errtail + s->errtail_len - keep, keep);
		s->errtail_len = keep;
	}
	memcpy(s->errtail + s->errtail_len, line, n);
	s->errtail_len += n;
	s->errtail[s->errtail_len++] = '\n';
}

static void line_answer(struct slot *s, const char *line, size_t n);

static void
take_line(struct slot *s, int is_err, char *line, size_t n, struct event_batch *b)
{
	if (n > 0 && line[n - 1] == '\r')
		n--;
	if (is_err && !s->busy) { /* line mode, between jobs */
		fprintf(stderr, "%s: slot %d: %.*s\n", log_progname(), s->index,
		    (int)n, line);
		return;
	}
	if (is_err) {
		fprintf(stderr, "%s: %.*s\n", s->id, (int)n, line);
		keep_error_tail(s, line, n);
		event_line(b, "stderr", line, n);
		return;
	}
	if (s->w->o->lines) {
		line_answer(s, line, n);
		return;
	}
	free(s->last);
	s->last = xstrndup(line, n);
	s->last_len = n;
	event_line(b, "stdout", line, n);
}

/* Cut the lines out of l (and the rest too when at_eof or l is full). */
static void
cut_lines(struct slot *s, int is_err, struct lines *l, int at_eof,
    struct event_batch *b)
{
	size_t start = 0;
	char *nl;

	while ((nl = memchr(l->buf + start, '\n', l->len - start))) {
		take_line(s, is_err, l->buf + start, (size_t)(nl - l->buf) - start, b);
		start = (size_t)(nl - l->buf) + 1;
	}
	if (start < l->len && (at_eof || l->len - start >= s->w->o->cfg->max_line)) {
		take_line(s, is_err, l->buf + start, l->len - start, b);
		start = l->len;
	}
	memmove(l->buf, l->buf + start, l->len - start);
	l->len -= start;
}

/* ---- the handler's process and pipes --------------------------------- */

static void slot_maybe_complete(struct slot *s);

static void
on_pipe_closed(uv_handle_t *h)
{
	struct slot *s = h->data;

	s->open_handles--;
	slot_maybe_complete(s);
}

static void
close_pipe(uv_pipe_t *p)
{
	if (!uv_is_closing((uv_handle_t *)p))
		uv_close((uv_handle_t *)p, on_pipe_closed);
}

static void
on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct slot *s = h->data;
	struct lines *l = (uv_pipe_t *)h == &s->out ? &s->outl : &s->errl;

	(void)hint;
	if (l->cap - l->len < 65536) {
		l->cap = l->len + 65536;
		l->buf = xrealloc(l->buf, l->cap);
	}
	*buf = uv_buf_init(l->buf + l->len, (unsigned)(l->cap - l->len));
}

static void
on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	struct slot *s = st->data;
	int is_err = (uv_pipe_t *)st == &s->err;
	struct lines *l = is_err ? &s->errl : &s->outl;
	struct event_batch b = {0};
	char jobkey[KEY_MAX + ID_MAX], evkey[KEY_MAX + ID_MAX];

	(void)buf;
	if (n == 0)
		return;
	if (n > 0)
		l->len += (size_t)n;
	/* room for EVALSHA sha numkeys KEYS[2] token cap call-number */
	char callno[24];
	for (int i = 0; i < 8; i++)
		batch_push(&b, "", 0, 0);
	b.argv[5] = s->token;
	b.lens[5] = strlen(s->token);
	b.argv[6] = EVENTS_CAP;
	b.lens[6] = strlen(EVENTS_CAP);
	snprintf(callno, sizeof callno, "%lu", s->event_calls + 1);
	b.argv[7] = callno;
	b.lens[7] = strlen(callno);
	cut_lines(s, is_err, l, n < 0, &b);
	snprintf(jobkey, sizeof jobkey, "%s%s", s->w->keys.job, s->id);
	keys_events(&s->w->keys, s->id, evkey, sizeof evkey);
	if ((b.argc - 8) / 2 > 0)
		s->event_calls++;
	send_events(s, &b, jobkey, evkey);
	batch_free(&b);
	if (n < 0)
		close_pipe((uv_pipe_t *)st);
}

static void
on_payload_written(uv_write_t *req, int status)
{
	struct slot *s = req->data;

	(void)status; /* EPIPE: the handler did not read its input; its business */
	free(s->payload);
	s->payload = NULL;
	if (!s->w->o->lines)
		close_pipe(&s->in); /* line mode: the next job's line comes */
}

static void
on_kill(uv_timer_t *t)
{
	struct slot *s = t->data;

	if ((s->busy || s->up) && !s->exited && s->child.pid > 0) {
		child_signal_group(s->child.pid, SIGKILL);
		s->killed = 1;
	}
}

/* Stop the handler of s: SIGTERM to its group now, SIGKILL after grace_ms. */
static void
slot_stop(struct slot *s, enum stop_reason why, int64_t grace_ms)
{
	if (!s->busy || s->exited)
		return;
	if (s->stop == STOP_NONE || why == STOP_LEASE)
		s->stop = why;
	if (grace_ms == 0) {
		child_signal_group(s->child.pid, SIGKILL);
		s->killed = 1;
		return;
	}
	child_signal_group(s->child.pid, SIGTERM);
	if (!uv_is_active((uv_handle_t *)&s->kill))
		uv_timer_start(&s->kill, on_kill, (uint64_t)grace_ms, 0);
}

static void
on_timeout_fired(uv_timer_t *t)
{
	struct slot *s = t->data;

	warnmsg("job %s: timed out after %lld ms; stopping its handler", s->id,
	    (long long)s->timeout_ms);
	slot_stop(s, STOP_TIMEOUT, s->w->o->grace_ms);
}

static void
on_lease_deadline(uv_timer_t *t)
{
	struct slot *s = t->data;

	warnmsg("job %s: its lease could not be renewed before it expires; its "
	    "handler is killed (by the keeper already, if this worker was "
	    "stopped) so that the job never runs twice at once", s->id);
	s->lost = 1;
	slot_stop(s, STOP_LEASE, 0);
}

/* Renewals have failed for two thirds of the lease: the handler gets
 * SIGTERM now, so its TERM trap runs, and SIGKILL at the lease deadline,
 * before the lease can expire. */
static void
on_lease_term(uv_timer_t *t)
{
	struct slot *s = t->data;
	uint64_t now = child_now_ms();
	uint64_t left = s->lease_deadline > now ? s->lease_deadline - now : 0;

	warnmsg("job %s: its lease could not be renewed for two thirds of its "
	    "length; its handler gets SIGTERM now and SIGKILL in %llu ms, before "
	    "the lease expires, so that the job never runs twice at once",
	    s->id, (unsigned long long)left);
	s->lost = 1;
	if (left == 0) {
		slot_stop(s, STOP_LEASE, 0);
		return;
	}
	if (s->busy && !s->exited) {
		if (s->stop == STOP_NONE || s->stop == STOP_TIMEOUT)
			s->stop = STOP_LEASE;
		child_signal_group(s->child.pid, SIGTERM);
	}
	uv_timer_start(&s->lease, on_lease_deadline, left, 0);
}

/*
 * Tell the keeper to kill the handler of s at deadline unless it already
 * will at or before it (never later than a lease allows, so that is safe),
 * and not much before it (lease/3: the keeper must not end a job a live
 * worker keeps renewing). In line mode most jobs need no word to the keeper:
 * the process is guarded from its last job or its idle tick.
 */
static void
guard(struct slot *s, uint64_t deadline)
{
	uint64_t slack = (uint64_t)s->w->o->lease_ms / 3;

	if (s->child.pid <= 0 || s->exited)
		return;
	if (s->guarded && s->guarded <= deadline && s->guarded + slack >= deadline)
		return;
	child_guard(s->child.pid, deadline);
	s->guarded = deadline;
}

/*
 * The lease of s runs until at least sent_at + lease (it was claimed or
 * renewed by a call sent then): without a renewal by then, the worker
 * sends the handler SIGTERM at two thirds of it and SIGKILL a margin
 * before its end, and the keeper kills it half a margin later, should the
 * worker be stopped or hung.
 */
static void
slot_lease_renewed(struct slot *s, uint64_t sent_at)
{
	const struct worker *w = s->w;
	uint64_t margin = (uint64_t)(w->o->lease_ms / 5 > 400 ? w->o->lease_ms / 5 : 400);
	uint64_t deadline = sent_at + (uint64_t)w->o->lease_ms - margin;
	uint64_t now = child_now_ms();

	uint64_t term = sent_at + (uint64_t)w->o->lease_ms * 2 / 3;

	s->lease_deadline = deadline;
	s->keeper_deadline = deadline + margin / 2;
	guard(s, s->keeper_deadline);
	if (term < deadline)
		uv_timer_start(&s->lease, on_lease_term, term > now ? term - now : 0, 0);
	else
		uv_timer_start(&s->lease, on_lease_deadline, deadline > now ?
		    deadline - now : 0, 0);
}

static void
slot_env(struct slot *s, char *env[6])
{
	const struct worker *w = s->w;

	snprintf(s->env[0], sizeof s->env[0], "AQ_QUEUE=%s", w->o->cfg->queue);
	snprintf(s->env[1], sizeof s->env[1], "AQ_WORKER_ID=%s", w->o->worker_id);
	if (w->o->lines) { /* the process outlives its jobs: no job's own */
		snprintf(s->env[2], sizeof s->env[2], "AQ_SLOT=%d", s->index);
		env[0] = s->env[0], env[1] = s->env[1], env[2] = s->env[2];
		env[3] = NULL;
		return;
	}
	snprintf(s->env[2], sizeof s->env[2], "AQ_JOB_ID=%s", s->id);
	snprintf(s->env[3], sizeof s->env[3], "AQ_ATTEMPT=%d", s->attempt);
	snprintf(s->env[4], sizeof s->env[4], "AQ_MAX_ATTEMPTS=%d", s->max_attempts);
	for (int i = 0; i < 5; i++)
		env[i] = s->env[i];
	env[5] = NULL;
}

static void
open_pipe(struct slot *s, uv_pipe_t *p, int fd, int readable)
{
	uv_pipe_init(s->w->loop, p, 0);
	p->data = s;
	uv_pipe_open(p, fd);
	s->open_handles++;
	if (readable)
		uv_read_start((uv_stream_t *)p, on_alloc, on_read);
}

/* Start the handler process of s; its stdin stays open in line mode.
 * Returns 0, or -1 with s->exec_errno set (the command could not be run). */
static int
start_process(struct slot *s)
{
	struct worker *w = s->w;
	char *env[6];

	memset(&s->child, 0, sizeof s->child);
	s->exited = s->killed = s->shutting = 0;
	slot_env(s, env);
	s->guarded = s->busy ? s->keeper_deadline : 0;
	if (child_spawn(w->o->argv, env, s->guarded, &s->child) < 0) {
		s->exec_errno = errno;
		s->exited = 1;
		return -1;
	}
	open_pipe(s, &s->in, s->child.in, 0);
	open_pipe(s, &s->out, s->child.out, 1);
	open_pipe(s, &s->err, s->child.err, 1);
	s->up = w->o->lines;
	return 0;
}

/* Write the payload of s as one line to its handler's stdin. */
static void
send_payload(struct slot *s, const char *payload, size_t n)
{
	s->payload = xmalloc(n + 1);
	memcpy(s->payload, payload, n);
	s->payload[n] = '\n';
	s->wbuf = uv_buf_init(s->payload, (unsigned)n + 1);
	s->write.data = s;
	if (uv_write(&s->write, (uv_stream_t *)&s->in, &s->wbuf, 1,
	    on_payload_written) < 0) {
		free(s->payload);
		s->payload = NULL;
		if (!s->w->o->lines)
			close_pipe(&s->in);
	}
}

static void line_deliver(struct slot *s);

static void
on_restart_due(uv_timer_t *t)
{
	line_deliver(t->data);
}

/* Line mode: hand the job of s to the slot's process, starting it first
 * when it is not running (after its backoff, when it exited on its own). */
static void
line_deliver(struct slot *s)
{
	uint64_t now = child_now_ms();

	if (!s->busy)
		return;
	if (!s->up) {
		if (now < s->restart_at) {
			uv_timer_start(&s->restart, on_restart_due, s->restart_at - now, 0);
			return;
		}
		if (start_process(s) < 0) {
			slot_maybe_complete(s);
			return;
		}
	}
	send_payload(s, s->payload_in, s->payload_in_len);
}

static void
slot_start(struct slot *s, const char *id, const char *token, const char *payload,
    size_t payload_len, int attempt, int max_attempts, int64_t timeout_ms,
    uint64_t claimed_at)
{
	struct worker *w = s->w;

	snprintf(s->id, sizeof s->id, "%s", id);
	snprintf(s->token, sizeof s->token, "%s", token);
	s->attempt = attempt;
	s->max_attempts = max_attempts;
	s->timeout_ms = timeout_ms >= 0 ? timeout_ms : w->o->timeout_ms;
	s->busy = 1;
	s->lost = 0;
	s->stop = STOP_NONE;
	s->exec_errno = 0;
	s->errtail_len = 0;
	s->dropped_events = 0;
	s->event_calls = 0;
	w->running++;
	if (!w->o->lines)
		memset(&s->child, 0, sizeof s->child);
	slot_lease_renewed(s, claimed_at);
	if (s->timeout_ms > 0)
		uv_timer_start(&s->timeout, on_timeout_fired, (uint64_t)s->timeout_ms, 0);
	if (w->o->lines) {
		free(s->payload_in);
		s->payload_in = xstrndup(payload, payload_len);
		s->payload_in_len = payload_len;
		line_deliver(s);
		return;
	}
	if (start_process(s) < 0) {
		slot_maybe_complete(s);
		return;
	}
	send_payload(s, payload, payload_len);
}

/* Describe how the handler ended, for `error`. */
static void
describe_end(const struct slot *s, char *buf, size_t len)
{
	if (s->exec_errno)
		snprintf(buf, len, "cannot run %s: %s", s->w->o->argv[0],
		    strerror(s->exec_errno));
	else if (s->stop == STOP_TIMEOUT)
		snprintf(buf, len, "timed out after %lld ms", (long long)s->timeout_ms);
	else if (s->stop == STOP_CANCEL)
		snprintf(buf, len, "cancelled");
	else if (WIFSIGNALED(s->status))
		snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(s->status),
		    strsignal(WTERMSIG(s->status)));
	else if (s->w->o->lines)
		snprintf(buf, len, "its handler exited with status %d before it "
		    "answered", WEXITSTATUS(s->status));
	else
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(s->status));
}

/* The outcome of a job whose handler process ended (exec mode: it always
 * does; line mode: it exited or was stopped before answering, so even
 * status 0 is no answer). */
static const char *
decide_outcome(const struct slot *s)
{
	int code = !s->exec_errno && WIFEXITED(s->status) ? WEXITSTATUS(s->status) : -1;

	if (code == 0 && s->stop != STOP_TIMEOUT && !s->w->o->lines)
		return "succeeded";
	if (s->stop == STOP_SHUTDOWN)
		return "requeue";
	if (s->stop == STOP_CANCEL)
		return "cancelled";
	if (s->stop == STOP_TIMEOUT || code != 65)
		return "retry";
	return "failed";
}

/* Report a job that did not succeed: its outcome, why (then the tail of
 * its stderr), and a retry's delay; out of attempts, a retry fails. */
static void
report_failure(struct slot *s, const char *outcome, const char *why,
    const char *exit_code)
{
	struct worker *w = s->w;
	struct report *r = report_add(w, s, outcome);
	size_t n = strlen(why) + s->errtail_len + 2;

	snprintf(r->exit_code, sizeof r->exit_code, "%s", exit_code);
	free(r->error);
	r->error = xmalloc(n);
	snprintf(r->error, n, "%s%s%.*s", why, s->errtail_len ? "\n" : "",
	    (int)(s->errtail_len ? s->errtail_len - 1 : 0), s->errtail);
	if (strcmp(outcome, "retry") == 0)
		snprintf(r->delay, sizeof r->delay, "%lld",
		    (long long)retry_delay(w, s->attempt));
	if (strcmp(outcome, "retry") == 0 && s->attempt >= s->max_attempts)
		r->outcome = outcome = "failed";
	warnmsg("job %s: attempt %d of %d %s (%s)", s->id, s->attempt,
	    s->max_attempts, strcmp(outcome, "retry") == 0 ? "failed, will be retried" :
	    outcome, why);
}

static void
slot_report(struct slot *s)
{
	const char *outcome = decide_outcome(s);
	char why[512], code[8] = "";

	if (!s->exec_errno && WIFEXITED(s->status))
		snprintf(code, sizeof code, "%d", WEXITSTATUS(s->status));
	if (strcmp(outcome, "succeeded") == 0) {
		struct report *r = report_add(s->w, s, outcome);
		snprintf(r->exit_code, sizeof r->exit_code, "%s", code);
		free(r->result);
		r->result = s->last ? json_or_string(s->last, s->last_len) : xstrdup("null");
		return;
	}
	describe_end(s, why, sizeof why);
	report_failure(s, outcome, why, code);
}

/* The job of s is over (reported, or its lease lost): free the slot. */
static void
slot_job_done(struct slot *s)
{
	struct worker *w = s->w;

	uv_timer_stop(&s->timeout);
	uv_timer_stop(&s->kill);
	uv_timer_stop(&s->lease);
	uv_timer_stop(&s->restart);
	if (s->dropped_events)
		warnmsg("job %s: %lu output lines were not recorded: more than "
		    "%d MiB of output waited for redis (out of reach, or slower "
		    "than the handler writes)", s->id, s->dropped_events,
		    HELD_MAX >> 20);
	free(s->last);
	s->last = NULL;
	s->busy = 0;
	w->running--;
	start_ahead_jobs(w);
	kick(w);
}

/*
 * Line mode: the line that answers the job of s. A JSON object with
 * "aq_status": "failed" (no retry) or "retry" fails the attempt, with its
 * "error" as the error; any other line is the result.
 */
static void
line_answer(struct slot *s, const char *line, size_t n)
{
	json_t *doc = NULL, *st;
	const char *status;

	if (!s->busy || s->stop != STOP_NONE) {
		warnmsg("slot %d: its handler wrote a line with no job waiting "
		    "for it; dropped: %.*s", s->index, n > 200 ? 200 : (int)n, line);
		return;
	}
	s->crashes = 0;
	if (n > 0 && line[0] == '{' && memmem(line, n, "\"aq_status\"", 11) &&
	    (doc = json_loadb(line, n, 0, NULL)) && json_is_object(doc) &&
	    (st = json_object_get(doc, "aq_status")) && json_is_string(st) &&
	    (strcmp(status = json_string_value(st), "failed") == 0 ||
	    strcmp(status, "retry") == 0)) {
		json_t *e = json_object_get(doc, "error");
		char why[512];
		snprintf(why, sizeof why, "%s", json_is_string(e) ? json_string_value(e) :
		    "its handler answered aq_status failed");
		if (!s->lost) /* the outcome as a string of ours: doc goes */
			report_failure(s, strcmp(status, "retry") == 0 ? "retry" :
			    "failed", why, "");
	} else if (!s->lost) {
		struct report *r = report_add(s->w, s, "succeeded");
		free(r->result);
		r->result = json_or_string(line, n);
	}
	json_decref(doc);
	slot_job_done(s);
}

/* Line mode: the process of s is gone (exited, pipes closed). Its next
 * start waits for a backoff unless the worker stopped it. */
static void
line_process_down(struct slot *s)
{
	int asked = s->stop != STOP_NONE || s->shutting || s->w->draining;
	int64_t delay = 0;

	s->up = 0;
	uv_timer_stop(&s->kill); /* the drain's or the shutdown's: it is over */
	if (!asked && !s->exec_errno) {
		s->crashes++;
		delay = RESTART_MIN_MS;
		for (int i = 1; i < s->crashes && delay < RESTART_MAX_MS; i++)
			delay *= 2;
		if (delay > RESTART_MAX_MS)
			delay = RESTART_MAX_MS;
		if (!s->busy)
			warnmsg("slot %d: its handler %s; starting it again for the "
			    "next job in %lld ms", s->index, WIFSIGNALED(s->status) ?
			    strsignal(WTERMSIG(s->status)) : "exited",
			    (long long)delay);
	}
	s->restart_at = child_now_ms() + (uint64_t)delay;
	lines_free(&s->outl);
	lines_free(&s->errl);
}

static void
slot_maybe_complete(struct slot *s)
{
	struct worker *w = s->w;

	if (!s->exited || s->open_handles > 0)
		return;
	if (w->o->lines && (s->up || s->exec_errno)) {
		int busy = s->busy;
		line_process_down(s);
		if (busy && s->lost)
			warnmsg("job %s: its lease was lost; its outcome is not "
			    "reported (the job will be recovered)", s->id);
		else if (busy)
			slot_report(s);
		s->exec_errno = 0;
		if (busy)
			slot_job_done(s);
		else
			kick(w);
		return;
	}
	if (!s->busy || w->o->lines)
		return;
	if (!s->lost)
		slot_report(s);
	else
		warnmsg("job %s: its lease was lost; its outcome is not reported "
		    "(the job will be recovered)", s->id);
	lines_free(&s->outl);
	lines_free(&s->errl);
	slot_job_done(s);
}

/* The handler exited, but something outside its process group (a daemon it
 * started) still holds its output open: stop reading, end the job. */
static void
on_drain_over(uv_timer_t *t)
{
	struct slot *s = t->data;

	if ((!s->busy && !s->up) || s->open_handles == 0)
		return;
	if (s->busy)
		warnmsg("job %s: its handler exited but a process it left behind "
		    "still holds its output open; not reading it any longer", s->id);
	else
		warnmsg("slot %d: its handler exited but a process it left behind "
		    "still holds its output open; not reading it any longer", s->index);
	close_pipe(&s->out);
	close_pipe(&s->err);
	close_pipe(&s->in);
}

static struct slot *
slot_by_pid(struct worker *w, pid_t pid)
{
	for (int i = 0; i < w->o->concurrency; i++) {
		const struct slot *s = &w->slots[i];
		if ((s->busy || s->up) && !s->exited && s->child.pid == pid)
			return &w->slots[i];
	}
	return NULL;
}

static struct slot *
slot_by_id(struct worker *w, const char *id, size_t n)
{
	for (int i = 0; i < w->o->concurrency; i++)
		if (w->slots[i].busy && strlen(w->slots[i].id) == n &&
		    memcmp(w->slots[i].id, id, n) == 0)
			return &w->slots[i];
	return NULL;
}

static void
on_sigchld(uv_signal_t *h, int sig)
{
	struct worker *w = h->data;
	int status;
	pid_t pid;

	(void)sig;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		struct slot *s = slot_by_pid(w, pid);
		if (!s)
			continue;
		s->exited = 1;
		s->status = status;
		/* what the handler left behind in its group goes with it */
		child_signal_group(pid, SIGKILL);
		child_forget(pid);
		uv_timer_stop(&s->timeout);
		uv_timer_start(&s->kill, on_drain_over, DRAIN_MS, 0);
		slot_maybe_complete(s);
	}
}

/* ---- Redis: the work call --------------------------------------------- */

static int
free_slots(const struct worker *w)
{
	return w->o->concurrency - w->running;
}

static int
claim_budget(const struct worker *w)
{
	long n = free_slots(w) + w->o->prefetch - (long)w->nahead - w->claiming;

	if (w->draining || w->done || w->burst_idle)
		return 0;
	long left = w->o->max_jobs - w->claimed - (long)w->nahead - w->claiming;
	if (w->o->max_jobs > 0 && left < n)
		n = left;
	if (n < 0)
		n = 0;
	return (int)n;
}

static struct slot *
free_slot(struct worker *w)
{
	for (int i = 0; i < w->o->concurrency; i++)
		if (!w->slots[i].busy)
			return &w->slots[i];
	return NULL;
}

static void start_wait(struct worker *w, long long next_due, long long now);

struct work_call {
	struct worker *w;
	uint64_t sent_at;
	uint64_t *seqs;             /* the reports it carries */
	size_t nreports;
	int k;
};

static void
free_work_call(struct work_call *c)
{
	free(c->seqs);
	free(c);
}

static void
apply_verdicts(struct worker *w, const struct work_call *c, const redisReply *verdicts)
{
	for (size_t i = 0; i < c->nreports && i < verdicts->elements; i++) {
		const struct report *r = report_by_seq(w, c->seqs[i]);
		if (r && strcmp(verdicts->element[i]->str, "stale") == 0)
			warnmsg("job %s: its lease was taken over before this worker "
			    "reported it; the outcome (%s) was dropped", r->id, r->outcome);
	}
	reports_drop(w, c->seqs, c->nreports);
}

static void
start_ahead(struct slot *s, struct ahead *a)
{
	s->w->claimed++;
	slot_start(s, a->id, a->token, a->payload, a->payload_len, a->attempt,
	    a->max_attempts, a->timeout_ms, a->renewed_at);
	free(a->payload);
}

/* Start the jobs claimed ahead on the free slots, oldest first. */
static void
start_ahead_jobs(struct worker *w)
{
	size_t k = 0;
	struct slot *s;

	while (k < w->nahead && (s = free_slot(w)))
		start_ahead(s, &w->ahead[k++]);
	memmove(w->ahead, w->ahead + k, (w->nahead - k) * sizeof *w->ahead);
	w->nahead -= k;
}

/* The claimed jobs of a work reply: each 6 values (id, payload, attempt,
 * max_attempts, timeout ms or '', lease token) go behind those claimed
 * ahead, then as many as there are free slots start. */
static void
start_claimed(struct worker *w, const redisReply *claimed, uint64_t sent_at)
{
	size_t n = claimed->elements / 6;

	w->ahead = xrealloc(w->ahead, (w->nahead + n + 1) * sizeof *w->ahead);
	for (size_t i = 0; i + 5 < claimed->elements; i += 6) {
		redisReply **job = claimed->element + i;
		struct ahead *a = &w->ahead[w->nahead++];
		snprintf(a->id, sizeof a->id, "%.*s", (int)job[0]->len, job[0]->str);
		snprintf(a->token, sizeof a->token, "%.*s", (int)job[5]->len, job[5]->str);
		a->payload = xstrndup(job[1]->str, job[1]->len);
		a->payload_len = job[1]->len;
		a->attempt = (int)job[2]->integer;
		a->max_attempts = atoi(job[3]->str ? job[3]->str : "1");
		a->timeout_ms = job[4]->len ? atoll(job[4]->str) : -1;
		a->renewed_at = sent_at;
	}
	start_ahead_jobs(w);
}

/* Jobs claimed ahead that will not run here (a shutdown): back on the
 * queue with the next work call, their attempt not counted. */
static void
requeue_ahead(struct worker *w)
{
	for (size_t i = 0; i < w->nahead; i++) {
		struct report *r = report_new(w, w->ahead[i].id, w->ahead[i].token,
		    "requeue");
		(void)r;
		free(w->ahead[i].payload);
	}
	w->nahead = 0;
}

static void
on_work_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct work_call *call = priv;
	struct worker *w = call->w;
	redisReply *r = reply;

	(void)ac;
	if (w->work_in_flight > 0)
		w->work_in_flight--;
	w->claiming -= call->k;
	if (w->claiming < 0)
		w->claiming = 0;
	if (!aredis_usable(&w->cmd, r, "the work script") || r->type != REDIS_REPLY_ARRAY ||
	    r->elements != 4) {
		/* its reports stay, to be sent again (when the connection is back) */
		for (size_t i = 0; i < call->nreports; i++) {
			struct report *rep = report_by_seq(w, call->seqs[i]);
			if (rep)
				rep->sent = 0;
		}
		free_work_call(call);
		return;
	}
	apply_verdicts(w, call, r->element[0]);
	start_claimed(w, r->element[1], call->sent_at);
	if (call->k > 0 && r->element[1]->elements == 0 && w->o->burst &&
	    w->running == 0 && w->nreports == 0 && w->nahead == 0)
		w->burst_idle = 1;
	w->nothing_to_claim = call->k > 0 && r->element[1]->elements / 6 < (size_t)call->k;
	if (w->nothing_to_claim)
		start_wait(w, r->element[2]->integer, r->element[3]->integer);
	free_work_call(call);
	kick(w);
}

/* Build and send the work script: the reports no call carries yet and a
 * claim of k. */
static void
send_work(struct worker *w, int k)
{
	size_t n = reports_unsent(w), m = 0;
	int argc = 3 + KEYS_SCRIPT + 7 + (int)n * 7, a = 3;
	const char **argv = xcalloc((size_t)argc, sizeof *argv);
	size_t *lens = xcalloc((size_t)argc, sizeof *lens);
	char numkeys[16], kbuf[16], nbuf[24];
	struct work_call *call = xcalloc(1, sizeof *call);

	snprintf(kbuf, sizeof kbuf, "%d", k);
	snprintf(nbuf, sizeof nbuf, "%zu", n);
	const char *fixed[] = {w->keys.base, w->o->worker_id, w->lease_str, kbuf,
	    LOG_CAP, PROMOTE_MAX, nbuf};
	script_argv(&script_work, KEYS_SCRIPT, numkeys, argv, lens);
	a += keys_script_argv(&w->keys, argv + a);
	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
		argv[a++] = fixed[i];
	call->seqs = xcalloc(n + 1, sizeof *call->seqs);
	for (size_t i = 0; i < w->nreports; i++) {
		struct report *r = &w->reports[i];
		if (r->sent)
			continue;
		const char *f[] = {r->id, r->token, r->outcome, r->result, r->error,
		    r->exit_code, r->delay};
		for (int j = 0; j < 7; j++)
			argv[a++] = f[j];
		call->seqs[m++] = r->seq;
	}
	for (int i = 3; i < argc; i++)
		lens[i] = strlen(argv[i]);
	call->w = w;
	call->sent_at = child_now_ms();
	call->nreports = n;
	call->k = k;
	if (aredis_command(&w->cmd, on_work_reply, call, argc, argv, lens) == 0) {
		w->work_in_flight++;
		w->claiming += k;
		for (size_t i = 0; i < w->nreports; i++)
			w->reports[i].sent = 1;
	} else {
		free_work_call(call);
	}
	free(argv);
	free(lens);
}

static void
on_flush_due(uv_timer_t *t)
{
	struct worker *w = t->data;

	w->flush_due = 1;
	kick(w);
}

/*
 * Is a work call worth its round trip now? Each call costs Redis a fixed
 * price beside its per-job one, so while the slots have jobs claimed ahead
 * to go on with, reports wait for a batch (as many as there are slots, or
 * half the jobs claimed ahead if more) or for FLUSH_MS. A slot with nothing
 * to run, or a worker that is stopping, calls at once. Up to WORK_CALLS
 * are in flight; the second only when the first cannot fill the slots.
 */
static int
work_due(struct worker *w, int k)
{
	size_t unsent = reports_unsent(w);
	int claim = k > 0 && !w->nothing_to_claim;
	int starving = claim && (w->nahead == 0 || free_slots(w) > 0);
	size_t batch = (size_t)(w->o->prefetch / 2 > w->o->concurrency ?
	    w->o->prefetch / 2 : w->o->concurrency);

	if (w->work_in_flight >= WORK_CALLS ||
	    (w->work_in_flight > 0 && !starving && unsent < batch))
		return 0;
	/* an idle queue has nothing to batch with: its outcome goes at once */
	if (starving || w->draining || w->flush_due || w->burst_idle ||
	    w->nothing_to_claim || unsent >= batch || out_of_work(w))
		return unsent > 0 || claim;
	if (unsent > 0 && !uv_is_active((uv_handle_t *)&w->flush))
		uv_timer_start(&w->flush, on_flush_due, FLUSH_MS, 0);
	return 0;
}

/* Something changed: report what finished and claim what there is room for. */
static void
kick(struct worker *w)
{
	int k = claim_budget(w);

	if (!w->cmd.ready)
		goto check_end;
	if (work_due(w, k)) {
		uv_timer_stop(&w->flush);
		w->flush_due = 0;
		send_work(w, k);
	}
check_end:
	maybe_finish_worker(w);
}

/* ---- the blocking wait for new jobs ----------------------------------- */

static void
on_wait_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct worker *w = priv;

	(void)ac;
	w->wait_in_flight = 0;
	w->nothing_to_claim = 0;
	aredis_usable(&w->block, reply, "the wait for jobs");
	kick(w);
}

/*
 * Nothing to claim: block on the wake list until a job is queued, or the
 * next delayed job is due (both by the server's clock), at most WAIT_MAX_S.
 * In burst mode, there is no waiting: the worker ends when idle.
 */
static void
start_wait(struct worker *w, long long next_due, long long now)
{
	double secs = WAIT_MAX_S;
	char timeout[32];

	if (w->o->burst || w->wait_in_flight || !w->block.ready || claim_budget(w) == 0)
		return;
	if (next_due >= 0 && (double)(next_due - now) / 1000.0 < secs)
		secs = (double)(next_due - now) / 1000.0;
	if (secs < 0.01)
		secs = 0.01;
	snprintf(timeout, sizeof timeout, "%.3f", secs);
	const char *argv[] = {"BLPOP", w->keys.wake, timeout};
	if (aredis_command(&w->block, on_wait_reply, w, 3, argv, NULL) == 0)
		w->wait_in_flight = 1;
}

/* ---- renewal and heartbeat -------------------------------------------- */

struct renew_call {
	struct worker *w;
	uint64_t sent_at;
	int n;
	char (*ids)[ID_MAX + 1];
	char (*tokens)[24];
};

/* After an outage: which leases held out, which were lost. */
static void
announce_leases(const struct renew_call *c, const redisReply *r)
{
	int kept = 0;

	for (int i = 0; i < c->n && (size_t)i < r->elements; i++)
		kept += strcmp(r->element[i]->str, "lost") != 0;
	warnmsg("back in touch with redis: still holding the leases of %d job%s; "
	    "%d lost", kept, kept == 1 ? "" : "s", c->n - kept);
}

/* The job claimed ahead with this id and token, or NULL. */
static struct ahead *
ahead_by_id(struct worker *w, const char *id, size_t n, const char *token)
{
	for (size_t i = 0; i < w->nahead; i++)
		if (strlen(w->ahead[i].id) == n && memcmp(w->ahead[i].id, id, n) == 0 &&
		    (!token || strcmp(w->ahead[i].token, token) == 0))
			return &w->ahead[i];
	return NULL;
}

static void
ahead_drop(struct worker *w, struct ahead *a)
{
	free(a->payload);
	*a = w->ahead[--w->nahead];
}

/* A job claimed ahead that will not run: cancelled (reported so), or its
 * lease lost (nothing to report). */
static void
ahead_cancel(struct worker *w, struct ahead *a)
{
	struct report *r = report_new(w, a->id, a->token, "cancelled");

	free(r->error);
	r->error = xstrdup("cancelled");
	warnmsg("job %s: cancelled before it started", a->id);
	ahead_drop(w, a);
	kick(w);
}

/* What a renewal said of a job claimed ahead (if it still waits). */
static void
ahead_renewed(struct worker *w, const char *id, const char *token, const char *v,
    uint64_t sent_at)
{
	struct ahead *a = ahead_by_id(w, id, strlen(id), token);

	if (!a)
		return; /* a pending report, or started since */
	if (strcmp(v, "ok") == 0) {
		a->renewed_at = sent_at;
	} else if (strcmp(v, "cancel") == 0) {
		ahead_cancel(w, a);
	} else {
		warnmsg("job %s: the lease was lost before it started", a->id);
		ahead_drop(w, a);
	}
}

static void
apply_renewal(struct worker *w, const struct renew_call *c, const redisReply *r)
{
	if (w->announce_leases) {
		w->announce_leases = 0;
		announce_leases(c, r);
	}
	for (int i = 0; i < c->n && (size_t)i < r->elements; i++) {
		const char *v = r->element[i]->str;
		struct slot *s = slot_by_id(w, c->ids[i], strlen(c->ids[i]));
		if (!s) {
			ahead_renewed(w, c->ids[i], c->tokens[i], v, c->sent_at);
			continue;
		}
		if (strcmp(s->token, c->tokens[i]) != 0)
			continue; /* a pending report, or a slot since reused */
		if (strcmp(v, "ok") == 0) {
			slot_lease_renewed(s, c->sent_at);
		} else if (strcmp(v, "cancel") == 0) {
			slot_lease_renewed(s, c->sent_at);
			if (s->stop != STOP_CANCEL) {
				warnmsg("job %s: cancelled; stopping its handler", s->id);
				slot_stop(s, STOP_CANCEL, w->o->grace_ms);
			}
		} else {
			warnmsg("job %s: the lease was lost (taken over or expired); "
			    "killing its handler", s->id);
			s->lost = 1;
			slot_stop(s, STOP_LEASE, 0);
		}
	}
}

static void
free_renew_call(struct renew_call *c)
{
	free(c->ids);
	free(c->tokens);
	free(c);
}

static void
on_renew_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct renew_call *c = priv;
	struct worker *w = c->w;
	redisReply *r = reply;

	(void)ac;
	w->renew_in_flight = 0;
	if (aredis_usable(&w->cmd, r, "the lease renewal") && r->type == REDIS_REPLY_ARRAY)
		apply_renewal(w, c, r);
	free_renew_call(c);
}

static void
add_held(struct renew_call *c, const char *id, const char *token)
{
	snprintf(c->ids[c->n], sizeof c->ids[c->n], "%s", id);
	snprintf(c->tokens[c->n], sizeof c->tokens[c->n], "%s", token);
	c->n++;
}

/* Renew every lease held: running handlers and outcomes not yet reported. */
static void
send_renew(struct worker *w)
{
	size_t cap = (size_t)w->o->concurrency + w->nreports + w->nahead;
	struct renew_call *c = xcalloc(1, sizeof *c);
	char numkeys[16], ttl[24], whash[KEY_MAX + 300];
	int a = 3;

	c->w = w;
	c->ids = xcalloc(cap + 1, sizeof *c->ids);
	c->tokens = xcalloc(cap + 1, sizeof *c->tokens);
	for (int i = 0; i < w->o->concurrency; i++)
		if (w->slots[i].busy && !w->slots[i].lost && w->slots[i].token[0])
			add_held(c, w->slots[i].id, w->slots[i].token);
	for (size_t i = 0; i < w->nreports; i++)
		add_held(c, w->reports[i].id, w->reports[i].token);
	for (size_t i = 0; i < w->nahead; i++)
		add_held(c, w->ahead[i].id, w->ahead[i].token);
	snprintf(ttl, sizeof ttl, "%lld", (long long)w->o->lease_ms);
	keys_worker(&w->keys, w->o->worker_id, whash, sizeof whash);
	int argc = 3 + KEYS_SCRIPT + 1 + 10 + 2 * c->n;
	const char **argv = xcalloc((size_t)argc, sizeof *argv);
	size_t *lens = xcalloc((size_t)argc, sizeof *lens);
	/* recovery of other workers' expired leases rides along each renewal:
	 * one bounded ZRANGEBYSCORE, so a dead worker's jobs are back within
	 * lease + lease/3 with no aq-sweep running */
	const char *recover = RECOVER_MAX;
	script_argv(&script_renew, KEYS_SCRIPT + 1, numkeys, argv, lens);
	a += keys_script_argv(&w->keys, argv + a);
	const char *fixed[] = {whash, w->keys.base, w->o->worker_id, w->lease_str,
	    ttl, w->host, w->pid, w->o->cfg->queue, w->started, recover, LOG_CAP};
	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
		argv[a++] = fixed[i];
	for (int i = 0; i < c->n; i++) {
		argv[a++] = c->ids[i];
		argv[a++] = c->tokens[i];
	}
	for (int i = 3; i < argc; i++)
		lens[i] = strlen(argv[i]);
	c->sent_at = child_now_ms();
	if (aredis_command(&w->cmd, on_renew_reply, c, argc, argv, lens) == 0) {
		w->renew_in_flight = 1;
		w->renew_sent_at = c->sent_at;
	} else {
		free_renew_call(c);
	}
	free(argv);
	free(lens);
}

/* Line mode: a process between jobs holds no lease, but it is guarded
 * like one: were the worker stopped, the keeper would end it too. */
static void
guard_idle(struct worker *w)
{
	uint64_t now = child_now_ms();

	for (int i = 0; i < w->o->concurrency; i++)
		if (w->slots[i].up && !w->slots[i].busy)
			guard(&w->slots[i], now + (uint64_t)w->o->lease_ms);
}

static void
on_renew_timer(uv_timer_t *t)
{
	struct worker *w = t->data;

	if (w->renew_in_flight) {
		/* a server that takes a whole renewal period to answer is gone */
		if (child_now_ms() - w->renew_sent_at >= (uint64_t)w->o->lease_ms / 3)
			aredis_drop(&w->cmd, "no answer to the lease renewal");
		return;
	}
	if (w->cmd.ready)
		send_renew(w);
	guard_idle(w);
	child_keeper_flush();
	if (w->nothing_to_claim && !w->wait_in_flight) {
		/* the wait connection is down: look now and then all the same */
		w->nothing_to_claim = 0;
		kick(w);
	}
}

/* ---- cancel notices --------------------------------------------------- */

static void
on_cancel_notice(redisAsyncContext *ac, void *reply, void *priv)
{
	struct worker *w = priv;
	redisReply *r = reply;
	struct slot *s;

	(void)ac;
	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING ||
	    strcmp(r->element[0]->str, "message") != 0)
		return;
	s = slot_by_id(w, r->element[2]->str, r->element[2]->len);
	if (!s) {
		struct ahead *a = ahead_by_id(w, r->element[2]->str, r->element[2]->len, NULL);
		if (a)
			ahead_cancel(w, a);
		return;
	}
	if (s->stop != STOP_CANCEL) {
		warnmsg("job %s: cancelled; stopping its handler", s->id);
		slot_stop(s, STOP_CANCEL, w->o->grace_ms);
	}
}

/* ---- connections ------------------------------------------------------ */

static void
on_cmd_state(struct aredis *r, int ready, void *ctx)
{
	struct worker *w = ctx;
	(void)r;

	if (!ready) {
		w->work_in_flight = w->renew_in_flight = w->claiming = 0;
		for (size_t i = 0; i < w->nreports; i++)
			w->reports[i].sent = 0; /* sent again when it is back */
		w->cmd_lost = 1;
		return;
	}
	w->announce_leases = w->cmd_lost;
	w->cmd_lost = 0;
	send_held(w);
	send_renew(w); /* register, and learn which leases are still ours */
	kick(w);
}

static void
on_block_state(struct aredis *r, int ready, void *ctx)
{
	struct worker *w = ctx;
	(void)r;

	w->wait_in_flight = 0;
	if (ready) {
		w->nothing_to_claim = 0;
		kick(w);
	}
}

static void
on_sub_state(struct aredis *r, int ready, void *ctx)
{
	struct worker *w = ctx;
	const char *argv[] = {"SUBSCRIBE", w->keys.cancel};

	if (!ready)
		return;
	aredis_command(r, on_cancel_notice, w, 2, argv, NULL);
}

/* ---- shutdown --------------------------------------------------------- */

static void
on_grace_over(uv_timer_t *t)
{
	struct worker *w = t->data;

	if (w->running > 0)
		warnmsg("grace period over: stopping %d handler%s; what they do not "
		    "finish goes back on the queue", w->running, w->running == 1 ? "" : "s");
	for (int i = 0; i < w->o->concurrency; i++) {
		slot_stop(&w->slots[i], STOP_SHUTDOWN, SHUTDOWN_KILL_MS);
		if (w->slots[i].up && !w->slots[i].busy && !w->slots[i].exited)
			child_signal_group(w->slots[i].child.pid, SIGKILL);
	}
	if (!w->cmd.ready || w->forced)
		w->give_up = !w->cmd.ready;
	if (w->running > 0 || (w->nreports > 0 && !w->give_up))
		uv_timer_start(&w->grace, on_grace_over, SHUTDOWN_KILL_MS, 0);
	maybe_finish_worker(w);
}

static void
on_signal(uv_signal_t *h, int sig)
{
	struct worker *w = h->data;

	if (w->draining) {
		warnmsg("second %s: stopping now", strsignal(sig));
		w->forced = 1;
		w->exit_code = EX_TEMPFAIL;
		for (int i = 0; i < w->o->concurrency; i++)
			slot_stop(&w->slots[i], STOP_SHUTDOWN, 0);
		uv_timer_start(&w->grace, on_grace_over, (uint64_t)SHUTDOWN_KILL_MS, 0);
		maybe_finish_worker(w);
		return;
	}
	w->draining = 1;
	requeue_ahead(w);
	warnmsg("%s: no new jobs; waiting up to %lld ms for %d running", strsignal(sig),
	    (long long)w->o->grace_ms, w->running);
	uv_timer_start(&w->grace, on_grace_over, (uint64_t)w->o->grace_ms, 0);
	kick(w);
}

static void
close_any(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static int
out_of_work(const struct worker *w)
{
	return w->draining || w->burst_idle ||
	    (w->o->max_jobs > 0 && w->claimed >= w->o->max_jobs);
}

/* Line mode, the worker ending: close the stdin of every handler still up,
 * as their end of input, killing those that do not exit within the grace
 * period. 1 while one is up. */
static int
lines_still_up(struct worker *w)
{
	int up = 0;

	for (int i = 0; i < w->o->concurrency; i++) {
		struct slot *s = &w->slots[i];
		if (!s->up)
			continue;
		up = 1;
		if (!s->shutting) {
			s->shutting = 1;
			close_pipe(&s->in);
			uv_timer_start(&s->kill, on_kill, (uint64_t)w->o->grace_ms, 0);
		}
	}
	return up;
}

/* The worker is done when nothing runs, nothing is left to report (or
 * Redis stayed out of reach past the grace period), and it was told to
 * stop or ran out of work. Then the loop is let to run dry. */
static void
maybe_finish_worker(struct worker *w)
{
	if (w->done || w->running > 0 || !out_of_work(w) || w->work_in_flight)
		return;
	if (w->nreports > 0 && !w->give_up)
		return;
	if (lines_still_up(w))
		return;
	if (w->nreports > 0) {
		warnmsg("%zu outcomes could not be reported: redis is unreachable; "
		    "their jobs will be recovered when their leases expire", w->nreports);
		w->exit_code = EX_TEMPFAIL;
	}
	w->done = 1;
	aredis_stop(&w->cmd);
	aredis_stop(&w->block);
	aredis_stop(&w->sub);
	uv_close((uv_handle_t *)&w->renew, NULL);
	uv_close((uv_handle_t *)&w->grace, NULL);
	uv_close((uv_handle_t *)&w->flush, NULL);
	uv_close((uv_handle_t *)&w->sigterm, NULL);
	uv_close((uv_handle_t *)&w->sigint, NULL);
	uv_close((uv_handle_t *)&w->sighup, NULL);
	uv_close((uv_handle_t *)&w->sigchld, NULL);
}

/* ---- setup ------------------------------------------------------------ */

static struct script *cmd_scripts[] = {&script_work, &script_renew, &script_event, NULL};

static void
init_slots(struct worker *w)
{
	w->slots = xcalloc((size_t)w->o->concurrency, sizeof *w->slots);
	for (int i = 0; i < w->o->concurrency; i++) {
		struct slot *s = &w->slots[i];
		s->w = w;
		s->index = i;
		uv_timer_t *timers[] = {&s->timeout, &s->kill, &s->lease, &s->restart};
		for (int j = 0; j < 4; j++) {
			uv_timer_init(w->loop, timers[j]);
			timers[j]->data = s;
		}
	}
}

static void
init_signal(struct worker *w, uv_signal_t *h, int sig, uv_signal_cb cb)
{
	uv_signal_init(w->loop, h);
	h->data = w;
	uv_signal_start(h, cb, sig);
}

/* Take the worker out of the registry: a clean exit leaves no trace. */
static void
unregister(struct worker *w)
{
	char err[256], whash[KEY_MAX + 300];
	int code;
	redisContext *c = redis_try_connect(&w->o->cfg->redis, err, sizeof err, &code);

	if (!c)
		return;
	keys_worker(&w->keys, w->o->worker_id, whash, sizeof whash);
	const char *zrem[] = {"ZREM", w->keys.workers, w->o->worker_id};
	const char *del[] = {"DEL", whash};
	redisAppendCommandArgv(c, 3, zrem, NULL);
	redisAppendCommandArgv(c, 2, del, NULL);
	for (int i = 0; i < 2; i++) {
		void *r = NULL;
		if (redisGetReply(c, &r) != REDIS_OK)
			break;
		freeReplyObject(r);
	}
	redisFree(c);
}

static void
cleanup(struct worker *w)
{
	for (int i = 0; i < w->o->concurrency; i++) {
		free(w->slots[i].last);
		free(w->slots[i].payload);
		free(w->slots[i].payload_in);
		lines_free(&w->slots[i].outl);
		lines_free(&w->slots[i].errl);
	}
	reports_clear(w);
	free(w->reports);
	for (size_t i = 0; i < w->nahead; i++)
		free(w->ahead[i].payload);
	free(w->ahead);
	while (w->held) {
		struct held_call *h = w->held;
		w->held = h->next;
		free_held(h);
	}
	free(w->slots);
	jb_free(&w->jb);
}

int
worker_run(const struct worker_options *o)
{
	static struct worker w;
	uv_loop_t loop;

	w.o = o;
	w.loop = &loop;
	w.held_tail = &w.held;
	uv_loop_init(&loop);
	keys_init(&w.keys, o->cfg->prefix, o->cfg->queue);
	if (gethostname(w.host, sizeof w.host) < 0)
		snprintf(w.host, sizeof w.host, "unknown");
	snprintf(w.pid, sizeof w.pid, "%d", (int)getpid());
	snprintf(w.started, sizeof w.started, "%lld", (long long)time(NULL) * 1000);
	snprintf(w.lease_str, sizeof w.lease_str, "%lld", (long long)o->lease_ms);
	init_slots(&w);
	init_signal(&w, &w.sigterm, SIGTERM, on_signal);
	init_signal(&w, &w.sigint, SIGINT, on_signal);
	init_signal(&w, &w.sighup, SIGHUP, on_signal);
	init_signal(&w, &w.sigchld, SIGCHLD, on_sigchld);
	uv_timer_init(&loop, &w.grace);
	w.grace.data = &w;
	uv_timer_init(&loop, &w.flush);
	w.flush.data = &w;
	uv_timer_init(&loop, &w.renew);
	w.renew.data = &w;
	uv_timer_start(&w.renew, on_renew_timer, (uint64_t)o->lease_ms / 3,
	    (uint64_t)o->lease_ms / 3);
	aredis_init(&w.cmd, &loop, &o->cfg->redis, "command", cmd_scripts,
	    on_cmd_state, &w);
	aredis_init(&w.block, &loop, &o->cfg->redis, "wait", NULL, on_block_state, &w);
	aredis_init(&w.sub, &loop, &o->cfg->redis, "cancel notice", NULL,
	    on_sub_state, &w);
	aredis_start(&w.cmd);
	aredis_start(&w.block);
	aredis_start(&w.sub);

	uv_run(&loop, UV_RUN_DEFAULT);

	unregister(&w);
	uv_walk(&loop, close_any, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	cleanup(&w);
	return w.exit_code;
}
