/* worker_lease.c: the leases of the jobs a worker holds: their renewal
 * (with the heartbeat), what happens when it fails, and cancel notices. */
#include "worker_impl.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "script.h"

#define RECOVER_MAX "100"

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
	uint64_t now = clock_mono_ms();
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
void
slot_lease_renewed(struct slot *s, uint64_t sent_at)
{
	const struct worker *w = s->w;
	uint64_t margin = (uint64_t)(w->o->lease_ms / 5 > 400 ? w->o->lease_ms / 5 : 400);
	uint64_t deadline = sent_at + (uint64_t)w->o->lease_ms - margin;
	uint64_t now = clock_mono_ms();

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

/* ---- renewal and heartbeat -------------------------------------------- */

struct renew_call {
	struct worker *w;
	uint64_t sent_at;
	int n;
	char (*ids)[ID_MAX + 1];
	char (*tokens)[24];
};

/* After an outage: which leases held out, which were lost, and which
 * jobs' outcomes Redis had applied before its answer was lost with it. */
static void
announce_leases(const struct renew_call *c, const redisReply *r)
{
	int kept = 0, done = 0;

	for (int i = 0; i < c->n && (size_t)i < r->elements; i++) {
		kept += strcmp(r->element[i]->str, "ok") == 0 ||
		    strcmp(r->element[i]->str, "cancel") == 0;
		done += strcmp(r->element[i]->str, "done") == 0;
	}
	warnmsg("back in touch with redis: still holding the leases of %d job%s; "
	    "%d lost; %d reported before the outage", kept, kept == 1 ? "" : "s",
	    c->n - kept - done, done);
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
	if (w->cmd_link == CMD_BACK) {
		w->cmd_link = CMD_UP;
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

/* The leases held: running handlers, outcomes not yet reported, jobs
 * claimed ahead. */
static struct renew_call *
leases_held(struct worker *w)
{
	size_t cap = (size_t)w->o->concurrency + w->nreports + w->nahead;
	struct renew_call *c = xcalloc(1, sizeof *c);

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
	return c;
}

/* Renew every lease held (renew.lua's ARGV, in its order). */
void
send_renew(struct worker *w)
{
	struct renew_call *c = leases_held(w);
	struct script_args *a = &w->call;
	const char *keys[KEYS_RENEW];
	char whash[KEY_MAX + 300];
	/* the heartbeat lives as long as a lease; recovery of other workers'
	 * expired leases rides along each renewal: one bounded ZRANGEBYSCORE,
	 * so a dead worker's jobs are back within lease + lease/3 with no
	 * aq-sweep running */
	const char *fixed[] = {w->keys.base, w->o->worker_id, w->lease_str,
	    w->lease_str, w->host, w->pid, w->o->cfg->queue, w->started,
	    RECOVER_MAX, LOG_CAP};
	_Static_assert(sizeof fixed / sizeof fixed[0] == RENEW_FIXED_ARGS,
	    "renew.lua takes RENEW_FIXED_ARGS values before the leases");

	keys_worker(&w->keys, w->o->worker_id, whash, sizeof whash);
	script_args_begin(a, &script_renew);
	script_args_keys(a, keys, keys_renew_argv(&w->keys, whash, keys));
	for (size_t i = 0; i < RENEW_FIXED_ARGS; i++)
		script_args_arg(a, fixed[i]);
	for (int i = 0; i < c->n; i++) {
		script_args_arg(a, c->ids[i]);
		script_args_arg(a, c->tokens[i]);
	}
	c->sent_at = clock_mono_ms();
	if (aredis_script(&w->cmd, on_renew_reply, c, a) == 0) {
		w->renew_in_flight = 1;
		w->renew_sent_at = c->sent_at;
	} else {
		free_renew_call(c);
	}
}

/* Line mode: a process between jobs holds no lease, but it is guarded
 * like one: were the worker stopped, the keeper would end it too. */
static void
guard_idle(struct worker *w)
{
	uint64_t now = clock_mono_ms();

	for (int i = 0; i < w->o->concurrency; i++)
		if (w->slots[i].up && !w->slots[i].busy)
			guard(&w->slots[i], now + (uint64_t)w->o->lease_ms);
}

void
on_renew_timer(uv_timer_t *t)
{
	struct worker *w = t->data;

	if (w->renew_in_flight) {
		/* a server that takes a whole renewal period to answer is gone */
		if (clock_mono_ms() - w->renew_sent_at >= (uint64_t)w->o->lease_ms / 3)
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
		worker_kick(w);
	}
}

/* ---- cancel notices --------------------------------------------------- */

void
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
