/* worker_outbox.c: what waits to be sent to Redis: outcomes to report,
 * and output lines as event calls, held until Redis has answered them;
 * the Redis backend of the slots. */
#include "worker_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keys.h"
#include "mem.h"
#include "script.h"

/* The text of a JSON document for s: s itself when it is JSON, else a JSON
 * string of it. Returns a new string. */
char *
json_or_string(const char *s, size_t n)
{
	struct jbuf b = {0};
	char *out;

	jb_json_or_str(&b, s, n);
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

struct report *
report_new(struct worker *w, const char *id, const char *token, const char *outcome)
{
	struct report *r;

	w->reports = xgrow(w->reports, &w->capreports, w->nreports + 1, 16,
	    sizeof *w->reports);
	r = &w->reports[w->nreports++];
	memset(r, 0, sizeof *r);
	r->seq = ++w->report_seq;
	snprintf(r->id, sizeof r->id, "%s", id);
	snprintf(r->token, sizeof r->token, "%s", token);
	r->outcome = outcome;
	return r;
}

/* backend.report: r, of the job of s, to be sent with the next work call;
 * a throttled job's queue is held, so the jobs claimed ahead go back. */
static void
report_take(struct slot *s, struct report *r)
{
	struct report *q = report_new(s->w, s->id, s->token, r->outcome);

	q->result = r->result;
	q->error = r->error;
	memcpy(q->exit_code, r->exit_code, sizeof q->exit_code);
	memcpy(q->delay, r->delay, sizeof q->delay);
	if (strcmp(r->outcome, "throttled") == 0)
		requeue_ahead(s->w); /* before a slot starts one of them */
}

struct report *
report_by_seq(struct worker *w, uint64_t seq)
{
	for (size_t i = 0; i < w->nreports; i++)
		if (w->reports[i].seq == seq)
			return &w->reports[i];
	return NULL;
}

/* Drop the reports that are not to be sent again (applied, or stale). */
void
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

void
reports_clear(struct worker *w)
{
	for (size_t i = 0; i < w->nreports; i++)
		report_free(&w->reports[i]);
	w->nreports = 0;
}

/* The reports no work call in flight carries. */
size_t
reports_unsent(const struct worker *w)
{
	size_t n = 0;

	for (size_t i = 0; i < w->nreports; i++)
		n += !w->reports[i].sent;
	return n;
}

/* ---- events: output lines of a handler -------------------------------- */

static void free_held(struct held_call *h);

void
events_begin(struct slot *s)
{
	struct worker *w = s->w;
	struct script_args *a = &w->events;
	const char *keys[KEYS_EVENT];

	script_args_begin(a, &script_event);
	script_args_keys(a, keys, keys_event_argv(&w->keys, s->id, w->event_keys[0],
	    w->event_keys[1], keys));
	script_args_arg(a, s->token);
	script_args_arg(a, EVENTS_CAP);
	script_args_argll(a, (long long)s->event_calls + 1);
}

void
event_line(struct slot *s, const char *kind, const char *line, size_t n)
{
	struct worker *w = s->w;

	jb_reset(&w->jb);
	jb_json_or_str(&w->jb, line, n);
	script_args_arg(&w->events, kind);
	script_args_argcopy(&w->events, w->jb.p, w->jb.len);
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

/* Keep a copy of the call a, to be sent (again, if need be) until Redis
 * answers it. */
static void
hold_call(struct worker *w, struct script_args *a)
{
	struct held_call *h = xcalloc(1, sizeof *h);

	h->argc = script_args_seal(a);
	h->argv = xcalloc((size_t)h->argc, sizeof *h->argv);
	h->lens = xcalloc((size_t)h->argc, sizeof *h->lens);
	for (int i = 0; i < h->argc; i++) {
		h->argv[i] = xmalloc(a->lens[i] + 1);
		memcpy(h->argv[i], a->argv[i], a->lens[i]);
		h->argv[i][a->lens[i]] = '\0';
		h->lens[i] = a->lens[i];
		h->bytes += a->lens[i];
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
void
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

void
send_events(struct slot *s)
{
	struct worker *w = s->w;
	int nlines = (script_args_nargs(&w->events) - EVENT_FIXED_ARGS) /
	    EVENT_LINE_FIELDS;

	if (nlines <= 0)
		return;
	s->event_calls++;
	if (w->held_bytes >= HELD_MAX) {
		s->dropped_events += (unsigned long)nlines;
		return;
	}
	hold_call(w, &w->events);
	send_held(w);
}

void
held_free_all(struct worker *w)
{
	while (w->held) {
		struct held_call *h = w->held;
		w->held = h->next;
		free_held(h);
	}
	w->held_tail = &w->held;
	w->held_bytes = 0;
}

/* ---- the backend ------------------------------------------------------ */

/* backend.freed: the jobs claimed ahead go on; report, claim, maybe end. */
static void
slot_freed(struct worker *w)
{
	start_ahead_jobs(w);
	worker_kick(w);
}

const struct backend backend_redis = {
	.started = slot_lease_renewed,
	.events_begin = events_begin,
	.event = event_line,
	.events_end = send_events,
	.report = report_take,
	.freed = slot_freed,
	.kick = worker_kick,
};
