/* worker_slot.c: the slots of a worker and their handler processes: start,
 * pipes, output cut into lines, stop, reaping; line mode's kept processes. */
#include "worker_impl.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "log.h"
#include "mem.h"

#define DRAIN_MS 2000        /* output read after a handler's exit */
#define RESTART_MIN_MS 100   /* --lines: backoff of a handler that exits */
#define RESTART_MAX_MS 10000

void
lines_free(struct lines *l)
{
	free(l->buf);
	memset(l, 0, sizeof *l);
}

static void slot_maybe_complete(struct slot *s);

/* ---- a handler's output, cut into lines ------------------------------ */

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

static void
take_line(struct slot *s, int is_err, char *line, size_t n)
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
		s->w->backend->event(s, "stderr", line, n);
		return;
	}
	if (s->w->o->lines) {
		line_answer(s, line, n);
		return;
	}
	free(s->last);
	s->last = xstrndup(line, n);
	s->last_len = n;
	s->w->backend->event(s, "stdout", line, n);
}

/* Cut the lines out of l (and the rest too when at_eof or l is full). */
static void
cut_lines(struct slot *s, int is_err, struct lines *l, int at_eof)
{
	size_t start = 0;
	char *nl;

	while ((nl = memchr(l->buf + start, '\n', l->len - start))) {
		take_line(s, is_err, l->buf + start, (size_t)(nl - l->buf) - start);
		start = (size_t)(nl - l->buf) + 1;
	}
	if (start < l->len && (at_eof || l->len - start >= s->w->o->cfg->max_line)) {
		take_line(s, is_err, l->buf + start, l->len - start);
		start = l->len;
	}
	memmove(l->buf, l->buf + start, l->len - start);
	l->len -= start;
}

/* ---- the handler's process and pipes --------------------------------- */

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

	(void)buf;
	if (n == 0)
		return;
	if (n > 0)
		l->len += (size_t)n;
	s->w->backend->events_begin(s); /* the lines cut are its events */
	cut_lines(s, is_err, l, n < 0);
	s->w->backend->events_end(s);
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
void
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

void
slots_shutdown(struct worker *w, int64_t grace_ms)
{
	for (int i = 0; i < w->o->concurrency; i++) {
		slot_stop(&w->slots[i], STOP_SHUTDOWN, grace_ms);
		if (w->slots[i].up && !w->slots[i].busy && !w->slots[i].exited)
			child_signal_group(w->slots[i].child.pid, SIGKILL);
	}
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

/* Write line (n bytes, its newline included) to the handler's stdin,
 * owning it until written: exec mode hands over the job's payload, which
 * the handler reads before its job can end; line mode a copy, since a
 * handler may answer before it read the whole line, and the next job
 * would take the buffer from under the write. */
static void
send_line(struct slot *s, char *line, size_t n)
{
	s->payload = line;
	s->wbuf = uv_buf_init(s->payload, (unsigned)n);
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
	uint64_t now = clock_mono_ms();

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
	char *line = xmalloc(s->payload_in_len + 1);
	memcpy(line, s->payload_in, s->payload_in_len + 1);
	send_line(s, line, s->payload_in_len + 1);
}

void
slot_start(struct slot *s, const char *id, const char *token, char *payload,
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
	w->backend->started(s, claimed_at);
	if (s->timeout_ms > 0)
		uv_timer_start(&s->timeout, on_timeout_fired, (uint64_t)s->timeout_ms, 0);
	if (w->o->lines) {
		free(s->payload_in); /* the last job's, kept for its restarts */
		s->payload_in = payload;
		s->payload_in_len = payload_len;
		line_deliver(s);
		return;
	}
	if (start_process(s) < 0) {
		free(payload);
		slot_maybe_complete(s);
		return;
	}
	send_line(s, payload, payload_len + 1);
}

/* The job of s is over (reported, or its lease lost): free the slot. */
void
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
	w->backend->freed(w);
}

/* Line mode: the process of s is gone (exited, pipes closed). Its next
 * start waits for a backoff unless the worker stopped it. */
static void
line_process_down(struct slot *s)
{
	int asked = s->stop != STOP_NONE || s->shutting || s->w->state >= DRAINING;
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
	s->restart_at = clock_mono_ms() + (uint64_t)delay;
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
			w->backend->kick(w);
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

struct slot *
idle_slot(struct worker *w)
{
	for (int i = 0; i < w->o->concurrency; i++)
		if (!w->slots[i].busy)
			return &w->slots[i];
	return NULL;
}

struct slot *
slot_by_id(struct worker *w, const char *id, size_t n)
{
	for (int i = 0; i < w->o->concurrency; i++)
		if (w->slots[i].busy && strlen(w->slots[i].id) == n &&
		    memcmp(w->slots[i].id, id, n) == 0)
			return &w->slots[i];
	return NULL;
}

void
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
		if (w->o->lines) /* line mode keeps it open: no one reads it now */
			close_pipe(&s->in);
		slot_maybe_complete(s);
	}
}

void
free_slots_of(struct worker *w)
{
	for (int i = 0; i < w->o->concurrency; i++) {
		free(w->slots[i].last);
		free(w->slots[i].payload);
		free(w->slots[i].payload_in);
		lines_free(&w->slots[i].outl);
		lines_free(&w->slots[i].errl);
	}
	free(w->slots);
	w->slots = NULL;
}

void
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

/* Line mode, the worker ending: close the stdin of every handler still up,
 * as their end of input, killing those that do not exit within the grace
 * period. 1 while one is up. */
int
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
