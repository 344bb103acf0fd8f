/* worker_claim.c: the work call (report and claim in one round trip), the
 * claim budget, jobs claimed ahead, the blocking wait for new jobs. */
#include "worker_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "script.h"

#define PROMOTE_MAX "100"
#define WAIT_MAX_S 2.0
#define FLUSH_MS 2            /* reports wait at most this for a batch */
#define WORK_CALLS 2          /* work calls in flight: one runs in Redis while
                               * the next is on its way */

static int
free_slots(const struct worker *w)
{
	return w->o->concurrency - w->running;
}

static int
claim_budget(const struct worker *w)
{
	long n = free_slots(w) + w->o->prefetch - (long)w->nahead - w->claiming;

	if (worker_out_of_work(w))
		return 0;
	long left = w->o->max_jobs - w->claimed - (long)w->nahead - w->claiming;
	if (w->o->max_jobs > 0 && left < n)
		n = left;
	if (n < 0)
		n = 0;
	return (int)n;
}

static void start_wait(struct worker *w, long long next_due, long long now,
    int held);

/* work.lua's last value: what flow control did to the claim */
enum { HELD_NOT = 0, HELD_BY_LIMIT = 1, HELD_THROTTLED = 2 };

struct work_call {
	struct worker *w;
	uint64_t sent_at;
	uint64_t *seqs;             /* the reports it carries */
	size_t nreports;
	int k;
	uint64_t wait_id;           /* --replicas: the WAIT sent after it */
	int wait_failed;            /* ... could not be sent */
};

/* --replicas: how long a claim's WAIT may take: a tenth of the lease, at
 * most REPLICAS_WAIT_MAX_MS (the command connection, renewals too, waits
 * behind it). */
static int64_t
replicas_wait_ms(const struct worker *w)
{
	int64_t ms = w->o->lease_ms / 10;

	return ms < REPLICAS_WAIT_MAX_MS ? ms : REPLICAS_WAIT_MAX_MS;
}

/* --replicas: the WAIT after a claim, and the jobs it would confirm. */
struct wait_call {
	struct worker *w;
	uint64_t id;
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

/* Start a (taken off the list already) on s. */
static void
start_ahead(struct slot *s, struct ahead a)
{
	struct worker *w = s->w;

	if (++w->claimed >= w->o->max_jobs && w->o->max_jobs > 0)
		worker_no_more_work(w);
	slot_start(s, a.id, a.token, a.payload, a.payload_len, a.attempt,
	    a.max_attempts, a.timeout_ms, a.renewed_at); /* takes the payload */
}

/*
 * Start the jobs claimed ahead on the free slots, oldest first. Each is
 * taken off the list before it starts: a job whose command cannot be run
 * ends inside slot_start, and the slot it frees calls this again.
 */
void
start_ahead_jobs(struct worker *w)
{
	struct slot *s;

	while (w->nahead > 0 && !w->ahead[0].unconfirmed && (s = idle_slot(w))) {
		struct ahead a = w->ahead[0];
		memmove(w->ahead, w->ahead + 1, (w->nahead - 1) * sizeof *w->ahead);
		w->nahead--;
		start_ahead(s, a);
	}
}

/* The claimed jobs of a work reply: each CLAIM_FIELDS values (id, payload,
 * attempt, max_attempts, timeout ms or '', lease token) go behind those
 * claimed ahead, then as many as there are free slots start. */
static void
start_claimed(struct worker *w, const redisReply *claimed, uint64_t sent_at,
    uint64_t unconfirmed)
{
	size_t n = claimed->elements / CLAIM_FIELDS;

	w->ahead = xrealloc(w->ahead, (w->nahead + n + 1) * sizeof *w->ahead);
	for (size_t i = 0; i + CLAIM_FIELDS <= claimed->elements; i += CLAIM_FIELDS) {
		redisReply **job = claimed->element + i;
		struct ahead *a = &w->ahead[w->nahead++];
		snprintf(a->id, sizeof a->id, "%.*s", (int)job[0]->len, job[0]->str);
		snprintf(a->token, sizeof a->token, "%.*s", (int)job[5]->len, job[5]->str);
		a->payload = xmalloc(job[1]->len + 1); /* sent as a line */
		memcpy(a->payload, job[1]->str, job[1]->len);
		a->payload[job[1]->len] = '\n';
		a->payload_len = job[1]->len;
		a->attempt = (int)job[2]->integer;
		a->max_attempts = atoi(job[3]->str ? job[3]->str : "1");
		a->timeout_ms = job[4]->len ? atoll(job[4]->str) : -1;
		a->renewed_at = sent_at;
		a->unconfirmed = unconfirmed;
	}
	start_ahead_jobs(w);
}

/*
 * --replicas: the WAIT after the claim id answered. With as many replicas
 * as asked, its jobs may start; without, they go back on the queue
 * unstarted: this primary may be one a failover left behind, whose claims
 * the new primary never saw and gives to another worker.
 */
static void
confirm_claims(struct worker *w, uint64_t id, int ok)
{
	size_t kept = 0, back = 0;

	for (size_t i = 0; i < w->nahead; i++) {
		struct ahead *a = &w->ahead[i];
		if (a->unconfirmed != id) {
			w->ahead[kept++] = *a;
		} else if (ok) {
			a->unconfirmed = 0;
			w->ahead[kept++] = *a;
		} else {
			report_new(w, a->id, a->token, "requeue");
			free(a->payload);
			back++;
		}
	}
	w->nahead = kept;
	if (back > 0 && w->replicas_short++ == 0) /* said once a streak */
		warnmsg("%zu job%s claimed but not on %d replica%s within %lld ms: "
		    "back on the queue, unstarted (a failover under way, or a "
		    "replica down?); claims go on, and run once the replicas "
		    "have them", back, back == 1 ? "" : "s", w->o->replicas,
		    w->o->replicas == 1 ? "" : "s", (long long)replicas_wait_ms(w));
	if (ok && w->replicas_short > 0) {
		warnmsg("claims are on %d replica%s again", w->o->replicas,
		    w->o->replicas == 1 ? "" : "s");
		w->replicas_short = 0;
	}
	start_ahead_jobs(w);
}

static void
on_replicas_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct wait_call *wc = priv;
	struct worker *w = wc->w;
	redisReply *r = reply;

	(void)ac;
	if (w->work_in_flight > 0)
		w->work_in_flight--;
	confirm_claims(w, wc->id, aredis_usable(&w->cmd, r, "WAIT") &&
	    r->type == REDIS_REPLY_INTEGER && r->integer >= w->o->replicas);
	free(wc);
	worker_kick(w);
}

/* --replicas: pipeline WAIT behind the work call c that claims; 0, or -1
 * when it could not be sent (its claims then go back at once). */
static int
send_replicas_wait(struct worker *w, struct work_call *c)
{
	char n[16], ms[24];
	const char *argv[] = {"WAIT", n, ms};
	struct wait_call *wc = xcalloc(1, sizeof *wc);

	snprintf(n, sizeof n, "%d", w->o->replicas);
	snprintf(ms, sizeof ms, "%lld", (long long)replicas_wait_ms(w));
	wc->w = w;
	wc->id = c->wait_id = ++w->wait_seq;
	if (aredis_command(&w->cmd, on_replicas_reply, wc, 3, argv, NULL) < 0) {
		free(wc);
		return -1;
	}
	w->work_in_flight++;
	return 0;
}

/* Jobs claimed ahead that will not run here (a shutdown): back on the
 * queue with the next work call, their attempt not counted. */
void
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
	    r->elements != WORK_REPLY_VALUES) {
		/* its reports stay, to be sent again (when the connection is back) */
		for (size_t i = 0; i < call->nreports; i++) {
			struct report *rep = report_by_seq(w, call->seqs[i]);
			if (rep)
				rep->sent = 0;
		}
		free_work_call(call);
		return;
	}
	long long held = r->element[4]->integer;
	apply_verdicts(w, call, r->element[0]);
	if (held == HELD_THROTTLED && w->nahead > 0)
		requeue_ahead(w); /* they would meet the same throttled service */
	start_claimed(w, r->element[1], call->sent_at, call->wait_id);
	if (call->wait_id && call->wait_failed)
		confirm_claims(w, call->wait_id, 0);
	/* a burst worker ends on an empty or paused queue, but waits out a
	 * limit or a throttle while jobs wait */
	if (call->k > 0 && r->element[1]->elements == 0 && w->o->burst &&
	    held == HELD_NOT && w->running == 0 && w->nreports == 0 && w->nahead == 0)
		worker_no_more_work(w);
	w->nothing_to_claim = call->k > 0 && r->element[1]->elements / CLAIM_FIELDS <
	    (size_t)call->k;
	if (w->nothing_to_claim)
		start_wait(w, r->element[2]->integer, r->element[3]->integer,
		    held != HELD_NOT);
	free_work_call(call);
	worker_kick(w);
}

/* Build and send the work script: the reports no call carries yet and a
 * claim of k. */
/* A report as work.lua takes it. */
static void
add_report(struct script_args *a, const struct report *r)
{
	const char *fields[] = {r->id, r->token, r->outcome,
	    r->result ? r->result : "", r->error ? r->error : "",
	    r->exit_code, r->delay};
	_Static_assert(sizeof fields / sizeof fields[0] == REPORT_FIELDS,
	    "work.lua takes REPORT_FIELDS values per report");

	for (size_t i = 0; i < REPORT_FIELDS; i++)
		script_args_arg(a, fields[i]);
}

/* Build and send the work call (work.lua's ARGV, in its order). */
static void
send_work(struct worker *w, int k)
{
	size_t n = reports_unsent(w), m = 0;
	struct script_args *a = &w->call;
	struct work_call *call = xcalloc(1, sizeof *call);

	script_args_begin(a, &script_work);
	script_args_queue_keys(a, &w->keys);
	script_args_arg(a, w->keys.base);
	script_args_arg(a, w->o->worker_id);
	script_args_arg(a, w->lease_str);
	script_args_argll(a, k);
	script_args_arg(a, LOG_CAP);
	script_args_arg(a, PROMOTE_MAX);
	script_args_argll(a, (long long)n);
	call->seqs = xcalloc(n + 1, sizeof *call->seqs);
	for (size_t i = 0; i < w->nreports; i++) {
		if (w->reports[i].sent)
			continue;
		add_report(a, &w->reports[i]);
		call->seqs[m++] = w->reports[i].seq;
	}
	call->w = w;
	call->sent_at = clock_mono_ms();
	call->nreports = n;
	call->k = k;
	if (aredis_script(&w->cmd, on_work_reply, call, a) == 0) {
		w->work_in_flight++;
		w->claiming += k;
		if (k > 0 && w->o->replicas > 0 && send_replicas_wait(w, call) < 0)
			call->wait_failed = 1;
		for (size_t i = 0; i < w->nreports; i++)
			w->reports[i].sent = 1;
	} else {
		free_work_call(call);
	}
}

static void
on_flush_due(uv_timer_t *t)
{
	struct worker *w = t->data;

	w->flush_due = 1;
	worker_kick(w);
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
	if (starving || w->flush_due || w->nothing_to_claim || unsent >= batch ||
	    worker_out_of_work(w))
		return unsent > 0 || claim;
	if (unsent > 0 && !uv_is_active((uv_handle_t *)&w->flush))
		uv_timer_start(&w->flush, on_flush_due, FLUSH_MS, 0);
	return 0;
}

/* Something changed: report what finished and claim what there is room for. */
void
worker_kick(struct worker *w)
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
	worker_maybe_finish(w);
}

/* ---- jobs claimed ahead ---------------------------------------------- */

/* The job claimed ahead with this id and token, or NULL. */
struct ahead *
ahead_by_id(struct worker *w, const char *id, size_t n, const char *token)
{
	for (size_t i = 0; i < w->nahead; i++)
		if (strlen(w->ahead[i].id) == n && memcmp(w->ahead[i].id, id, n) == 0 &&
		    (!token || strcmp(w->ahead[i].token, token) == 0))
			return &w->ahead[i];
	return NULL;
}

void
ahead_drop(struct worker *w, struct ahead *a)
{
	free(a->payload);
	*a = w->ahead[--w->nahead];
}

/* A job claimed ahead that will not run: cancelled (reported so), or its
 * lease lost (nothing to report). */
void
ahead_cancel(struct worker *w, struct ahead *a)
{
	struct report *r = report_new(w, a->id, a->token, "cancelled");

	free(r->error);
	r->error = xstrdup("cancelled");
	warnmsg("job %s: cancelled before it started", a->id);
	ahead_drop(w, a);
	worker_kick(w);
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
	worker_kick(w);
}

/*
 * Nothing to claim: block on the wake list until a job is queued, or the
 * next delayed job is due, or the rate window or throttle that held the
 * claim back ends (all by the server's clock), at most WAIT_MAX_S. In
 * burst mode, there is no waiting unless flow control held jobs back: the
 * worker ends when idle.
 */
static void
start_wait(struct worker *w, long long next_due, long long now, int held)
{
	double secs = WAIT_MAX_S;
	char timeout[32];

	if ((w->o->burst && !held) || w->wait_in_flight || !w->block.ready || claim_budget(w) == 0)
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
