/* worker_direct.c: aq-run's backend of the worker's slots, with no Redis:
 * jobs from JSON lines on standard input, retried in this process after
 * their backoff, their final records on standard output. */
#include "worker_impl.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "job.h"
#include "jsonl.h"
#include "log.h"
#include "mem.h"

#define RETRYING_MAX 1024    /* jobs waiting for a retry before reading waits */

struct djob {
	struct djob *next;
	char id[UUID_LEN + 1];
	char *payload;              /* the line, NUL-terminated */
	size_t payload_len;
	int attempt;
	int64_t created, started;   /* epoch ms */
	int64_t due;                /* a retry: clock_mono_ms it may run at */
	char *result, *error;
	char exit_code[8];
};

struct jobq {
	struct djob *head, **tail;
	size_t n;
};

struct direct {
	struct worker w;            /* first: the slots' worker is the run's */
	const struct direct_options *d;
	int fd;                     /* the input */
	struct jobq ready;          /* read, or due again, waiting for a slot */
	struct jobq retrying;       /* waiting for their backoff */
	size_t held;                /* jobs read, their record not printed */
	int input_over;             /* read to its end, or stopped reading */
	unsigned long rejected;
	int any_failed;
	uv_timer_t retry, grace;
	uv_signal_t sigterm, sigint, sighup, sigchld;
	struct jbuf out;
};

static struct direct *
direct_of(struct worker *w)
{
	return (struct direct *)w;
}

/* ---- job queues --------------------------------------------------------- */

static void
jobq_push(struct jobq *q, struct djob *j)
{
	j->next = NULL;
	*q->tail = j;
	q->tail = &j->next;
	q->n++;
}

static struct djob *
jobq_pop(struct jobq *q)
{
	struct djob *j = q->head;

	if (!j)
		return NULL;
	q->head = j->next;
	if (!q->head)
		q->tail = &q->head;
	q->n--;
	return j;
}

/* ---- records ------------------------------------------------------------ */

/* Print the final record of j, in aq-status's shape; forget j. */
static void
finish_job(struct direct *d, struct djob *j, const char *status)
{
	const char *v[JOB_FIELDS] = {NULL};
	size_t len[JOB_FIELDS];
	char attempt[16], max[16], created[24], started[24], finished[24], timeout[24];

	snprintf(attempt, sizeof attempt, "%d", j->attempt);
	snprintf(max, sizeof max, "%d", d->d->max_attempts);
	snprintf(created, sizeof created, "%lld", (long long)j->created);
	snprintf(started, sizeof started, "%lld", (long long)j->started);
	snprintf(finished, sizeof finished, "%lld", (long long)clock_epoch_ms());
	snprintf(timeout, sizeof timeout, "%lld", (long long)d->w.o->timeout_ms);
	v[JOB_STATUS] = status;
	v[JOB_ATTEMPT] = attempt;
	v[JOB_MAX_ATTEMPTS] = max;
	v[JOB_CREATED] = created;
	v[JOB_STARTED] = j->attempt > 0 ? started : NULL;
	v[JOB_FINISHED] = finished;
	v[JOB_TIMEOUT] = d->w.o->timeout_ms > 0 ? timeout : NULL;
	v[JOB_WORKER] = j->attempt > 0 ? d->w.o->worker_id : NULL;
	v[JOB_EXIT_CODE] = j->exit_code[0] ? j->exit_code : NULL;
	v[JOB_PAYLOAD] = j->payload;
	v[JOB_RESULT] = j->result;
	v[JOB_ERROR] = j->error;
	for (int i = 0; i < JOB_FIELDS; i++)
		len[i] = v[i] ? strlen(v[i]) : 0;
	jb_reset(&d->out);
	job_write_values(&d->out, j->id, d->w.o->cfg->queue, v, len);
	if (jb_line(&d->out) < 0 || fflush(stdout) != 0)
		die_output();
	d->any_failed |= strcmp(status, "succeeded") != 0;
	d->held--;
	free(j->payload);
	free(j->result);
	free(j->error);
	free(j);
}

/* The jobs of q will not run (aq-run was stopped): cancelled, saying so. */
static void
cancel_all(struct direct *d, struct jobq *q)
{
	struct djob *j;

	while ((j = jobq_pop(q))) {
		const char *before = j->error ? j->error : "";
		size_t n = strlen(before) + 96;
		char *why = xmalloc(n);
		snprintf(why, n, "aq-run was stopped before attempt %d%s%s",
		    j->attempt + 1, *before ? "; the last one: " : "", before);
		free(j->error);
		j->error = why;
		finish_job(d, j, "cancelled");
	}
}

/* ---- running jobs ------------------------------------------------------- */

/* Start the ready jobs on the free slots. A job whose command cannot be
 * run ends inside slot_start, and the slot it frees calls this again. */
static void
dispatch(struct direct *d)
{
	struct slot *s;

	while (d->w.state == WORKING && d->ready.head && (s = idle_slot(&d->w))) {
		struct djob *j = jobq_pop(&d->ready);
		char *line = xmalloc(j->payload_len + 1);
		memcpy(line, j->payload, j->payload_len);
		line[j->payload_len] = '\n';
		j->attempt++;
		j->started = clock_epoch_ms();
		s->job = j;
		slot_start(s, j->id, "", line, j->payload_len, j->attempt,
		    d->d->max_attempts, -1, (uint64_t)clock_mono_ms());
	}
}

static void on_retry_due(uv_timer_t *t);

/* Arm the retry timer for the first job of d->retrying due. */
static void
arm_retry(struct direct *d)
{
	int64_t first = INT64_MAX, now = clock_mono_ms();

	for (struct djob *j = d->retrying.head; j; j = j->next)
		if (j->due < first)
			first = j->due;
	if (first == INT64_MAX)
		uv_timer_stop(&d->retry);
	else
		uv_timer_start(&d->retry, on_retry_due, first > now ? (uint64_t)(first - now) : 0, 0);
}

/* The jobs whose backoff is over go back to the ready jobs, in order. */
static void
on_retry_due(uv_timer_t *t)
{
	struct direct *d = t->data;
	struct jobq later = {.tail = &later.head};
	int64_t now = clock_mono_ms();
	struct djob *j;

	while ((j = jobq_pop(&d->retrying)))
		jobq_push(j->due <= now ? &d->ready : &later, j);
	d->retrying = later;
	if (!later.head)
		d->retrying.tail = &d->retrying.head;
	arm_retry(d);
	dispatch(d);
}

static void maybe_finish(struct direct *d);

/* ---- the backend -------------------------------------------------------- */

/* backend.started: no lease to keep; the keeper guards with no deadline. */
static void
direct_started(struct slot *s, uint64_t claimed_at)
{
	(void)s;
	(void)claimed_at;
}

static void
direct_events_begin(struct slot *s)
{
	(void)s;
}

/* backend.events_end: the lines of one read are out, with --events. */
static void
direct_events_end(struct slot *s)
{
	if (direct_of(s->w)->d->events && fflush(stdout) != 0)
		die_output();
}

/* backend.event: with --events, the line as an event line on stdout. */
static void
direct_event(struct slot *s, const char *kind, const char *line, size_t n)
{
	struct direct *d = direct_of(s->w);

	if (!d->d->events)
		return;
	jb_reset(&d->out);
	jb_obj_begin(&d->out);
	jb_kstr(&d->out, "id", s->id);
	jb_kstr(&d->out, "type", kind);
	jb_key(&d->out, "data");
	jb_json_or_str(&d->out, line, n);
	jb_kint(&d->out, "attempt", s->attempt);
	jb_obj_end(&d->out);
	if (jb_line(&d->out) < 0)
		die_output();
}

/* What an outcome makes of the job's status (a retry, only when stopping). */
static const char *
final_status(const char *outcome)
{
	if (strcmp(outcome, "succeeded") == 0 || strcmp(outcome, "failed") == 0)
		return outcome;
	return "cancelled"; /* cancelled, requeue (stopped), retry or throttled (stopping) */
}

/* backend.report: a retry waits for its backoff, a throttled job for its
 * hold (its attempt not counted); anything else is final. */
static void
direct_report(struct slot *s, struct report *r)
{
	struct direct *d = direct_of(s->w);
	struct djob *j = s->job;

	s->job = NULL;
	if (r->exit_code[0])
		memcpy(j->exit_code, r->exit_code, sizeof j->exit_code);
	if (r->error) {
		free(j->error);
		j->error = r->error;
	}
	free(j->result);
	j->result = r->result;
	if (strcmp(r->outcome, "throttled") == 0)
		j->attempt--; /* held, as aq-worker's queue: the attempt not counted */
	if ((strcmp(r->outcome, "retry") == 0 || strcmp(r->outcome, "throttled") == 0) &&
	    d->w.state == WORKING) {
		j->due = clock_mono_ms() + strtoll(r->delay, NULL, 10);
		jobq_push(&d->retrying, j);
		arm_retry(d);
		return;
	}
	finish_job(d, j, final_status(r->outcome));
}

static void
direct_freed(struct worker *w)
{
	dispatch(direct_of(w));
	maybe_finish(direct_of(w));
}

static void
direct_kick(struct worker *w)
{
	maybe_finish(direct_of(w));
}

static const struct backend backend_direct = {
	.started = direct_started,
	.events_begin = direct_events_begin,
	.event = direct_event,
	.events_end = direct_events_end,
	.report = direct_report,
	.freed = direct_freed,
	.kick = direct_kick,
};

/* ---- stopping ----------------------------------------------------------- */

/* The run is over once the input is, and every job it read is printed
 * (and, in line mode, the slots' processes are gone). */
static void
maybe_finish(struct direct *d)
{
	if (d->w.state == DONE || !d->input_over || d->w.running > 0 || d->held > 0)
		return;
	if (lines_still_up(&d->w))
		return;
	d->w.state = DONE;
	uv_close((uv_handle_t *)&d->retry, NULL);
	uv_close((uv_handle_t *)&d->grace, NULL);
	uv_close((uv_handle_t *)&d->sigterm, NULL);
	uv_close((uv_handle_t *)&d->sigint, NULL);
	uv_close((uv_handle_t *)&d->sighup, NULL);
	uv_close((uv_handle_t *)&d->sigchld, NULL);
}

static void
on_grace_over(uv_timer_t *t)
{
	struct direct *d = t->data;

	if (d->w.running > 0)
		warnmsg("grace period over: stopping %d handler%s", d->w.running,
		    d->w.running == 1 ? "" : "s");
	d->w.state = STOPPING;
	slots_shutdown(&d->w, SHUTDOWN_KILL_MS);
	maybe_finish(d);
}

/* A stop signal: read no more, cancel what waits, let the running jobs
 * finish for the grace period; a second one kills them now. */
static void
on_signal(uv_signal_t *h, int sig)
{
	struct direct *d = direct_of(h->data);

	if (d->w.state != WORKING) {
		warnmsg("second %s: stopping now", strsignal(sig));
		d->w.state = STOPPING;
		slots_shutdown(&d->w, 0);
		maybe_finish(d);
		return;
	}
	warnmsg("%s: reading no more jobs; waiting up to %lld ms for %d running",
	    strsignal(sig), (long long)d->w.o->grace_ms, d->w.running);
	d->w.state = DRAINING;
	cancel_all(d, &d->ready);
	cancel_all(d, &d->retrying);
	uv_timer_stop(&d->retry);
	uv_timer_start(&d->grace, on_grace_over, (uint64_t)d->w.o->grace_ms, 0);
	maybe_finish(d);
}

/* ---- the input ---------------------------------------------------------- */

static void
add_job(struct direct *d, const char *payload, size_t n)
{
	struct djob *j = xcalloc(1, sizeof *j);

	if (uuidv7(j->id) < 0)
		die(EX_OSERR, "cannot generate a job id: no randomness:");
	j->payload = xstrndup(payload, n);
	j->payload_len = n;
	j->created = clock_epoch_ms();
	d->held++;
	jobq_push(&d->ready, j);
}

/* jsonl_fn: a payload is a job; the next line is read once it has a slot
 * (and fewer than RETRYING_MAX jobs wait for a retry). */
static int
on_line(char *line, size_t len, unsigned long lineno, void *ctx)
{
	struct direct *d = ctx;
	char err[256];
	char *payload = jsonl_trim(line, &len);

	if (d->w.state != WORKING)
		return 1;
	if (json_check(payload, len, err, sizeof err) == 0) {
		add_job(d, payload, len);
		dispatch(d);
	} else {
		warnmsg("line %lu: %s, skipped", lineno, err);
		d->rejected++;
	}
	while (d->w.state == WORKING && (d->ready.n > 0 || d->retrying.n >= RETRYING_MAX))
		uv_run(d->w.loop, UV_RUN_ONCE);
	return d->w.state != WORKING;
}

/* jsonl_idle_fn: the input has nothing yet: run the loop until it has, or
 * until a stop signal; then the input is /dev/null, whose end the reader
 * sees at once. */
static void
on_input_idle(void *ctx)
{
	struct direct *d = ctx;

	for (;;) {
		uv_run(d->w.loop, UV_RUN_NOWAIT);
		if (d->w.state != WORKING)
			break;
		struct pollfd p[2] = {{.fd = d->fd, .events = POLLIN},
		    {.fd = uv_backend_fd(d->w.loop), .events = POLLIN}};
		if (poll(p, 2, uv_backend_timeout(d->w.loop)) > 0 && p[0].revents)
			return;
	}
	int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (null < 0 || dup2(null, d->fd) < 0)
		die(EX_OSERR, "cannot stop reading the input:");
	close(null);
}

/* ---- setup -------------------------------------------------------------- */

int
worker_run_direct(const struct worker_options *o, const struct direct_options *opt,
    int fd)
{
	static struct direct d;
	uv_loop_t loop;
	int read_failed;

	d.w.o = o;
	d.w.backend = &backend_direct;
	d.w.loop = &loop;
	d.d = opt;
	d.fd = fd;
	d.ready.tail = &d.ready.head;
	d.retrying.tail = &d.retrying.head;
	uv_loop_init(&loop);
	init_slots(&d.w);
	init_signal(&d.w, &d.sigterm, SIGTERM, on_signal);
	init_signal(&d.w, &d.sigint, SIGINT, on_signal);
	init_signal(&d.w, &d.sighup, SIGHUP, on_signal);
	init_signal(&d.w, &d.sigchld, SIGCHLD, on_sigchld);
	uv_timer_init(&loop, &d.retry);
	d.retry.data = &d;
	uv_timer_init(&loop, &d.grace);
	d.grace.data = &d;

	read_failed = jsonl_each_idle(fd, o->cfg->max_line, on_line, on_input_idle,
	    &d, &d.rejected) < 0;
	d.input_over = 1;
	maybe_finish(&d);
	uv_run(&loop, UV_RUN_DEFAULT);

	end_loop(&loop);
	free_slots_of(&d.w);
	jb_free(&d.out);
	if (read_failed)
		return EX_IOERR;
	if (d.rejected > 0)
		return EX_DATAERR;
	return d.any_failed ? 1 : 0;
}
