/* worker_outcome.c: what the end of a handler means for its job: the
 * outcome, a retry's backoff, a throttle pause, the report; a line-mode
 * answer. */
#define _GNU_SOURCE
#include "worker_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "log.h"
#include "mem.h"

#define BACKOFF_CAP_MS (3600 * 1000LL)

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
	/* the service the handler calls is unavailable to it: hold the queue */
	if (code == EX_UNAVAILABLE && s->stop == STOP_NONE && !s->w->o->lines &&
	    s->w->o->throttle_ms > 0)
		return "throttled";
	if (s->stop == STOP_TIMEOUT || code != 65)
		return "retry";
	return "failed";
}

/*
 * The hold a throttled handler asked for, in ms: "retry_after" (seconds,
 * a number above 0 and at most a day) of the JSON object doc, or, when it
 * has none, --throttle. A bad value is said and the default taken.
 */
static int64_t
throttle_ms(const struct slot *s, json_t *doc)
{
	json_t *v = json_is_object(doc) ? json_object_get(doc, "retry_after") : NULL;
	double secs;
	int64_t ms;

	if (!v)
		return s->w->o->throttle_ms;
	secs = json_number_value(v);
	if (!json_is_number(v) || !(secs > 0) || secs * 1000 > (double)THROTTLE_MAX_MS) {
		warnmsg("job %s: its handler's retry_after is not a number of "
		    "seconds above 0 and at most 86400; the queue is held %lld ms",
		    s->id, (long long)s->w->o->throttle_ms);
		return s->w->o->throttle_ms;
	}
	ms = (int64_t)(secs * 1000 + 0.5);
	return ms > 0 ? ms : 1; /* a hold under half a millisecond still holds */
}

/* Report a throttled job: back on the queue, its attempt not counted, and
 * the whole queue held ms (aq-worker: work.lua does both, by the Redis
 * clock, and the jobs claimed ahead go back too; aq-run: the job waits ms). */
static void
report_throttled(struct slot *s, int64_t ms, const char *exit_code)
{
	struct report r = {.outcome = "throttled"};
	char why[128];

	snprintf(why, sizeof why, "throttled: its handler asked for the queue "
	    "to be held %lld ms", (long long)ms);
	snprintf(r.exit_code, sizeof r.exit_code, "%s", exit_code);
	snprintf(r.delay, sizeof r.delay, "%lld", (long long)ms);
	r.error = xstrdup(why);
	warnmsg("job %s: attempt %d of %d %s; it goes back on the queue, the "
	    "attempt not counted", s->id, s->attempt, s->max_attempts, why);
	s->w->backend->report(s, &r);
}

/* exec mode, exit 69: the hold named by the last stdout line, if any. */
static void
report_exec_throttled(struct slot *s, const char *exit_code)
{
	json_t *doc = s->last && s->last_len > 0 && s->last[0] == '{' ?
	    json_loadb(s->last, s->last_len, 0, NULL) : NULL;

	report_throttled(s, throttle_ms(s, doc), exit_code);
	json_decref(doc);
}

/* Report a job that did not succeed: its outcome, why (then the tail of
 * its stderr), and a retry's delay; out of attempts, a retry fails. */
static void
report_failure(struct slot *s, const char *outcome, const char *why,
    const char *exit_code)
{
	struct worker *w = s->w;
	struct report r = {.outcome = outcome};
	size_t n = strlen(why) + s->errtail_len + 2;

	snprintf(r.exit_code, sizeof r.exit_code, "%s", exit_code);
	r.error = xmalloc(n);
	snprintf(r.error, n, "%s%s%.*s", why, s->errtail_len ? "\n" : "",
	    (int)(s->errtail_len ? s->errtail_len - 1 : 0), s->errtail);
	if (strcmp(outcome, "retry") == 0)
		snprintf(r.delay, sizeof r.delay, "%lld",
		    (long long)retry_delay(w, s->attempt));
	if (strcmp(outcome, "retry") == 0 && s->attempt >= s->max_attempts)
		r.outcome = outcome = "failed";
	warnmsg("job %s: attempt %d of %d %s (%s)", s->id, s->attempt,
	    s->max_attempts, strcmp(outcome, "retry") == 0 ? "failed, will be retried" :
	    outcome, why);
	w->backend->report(s, &r);
}

/* Report a job that succeeded with result (a new string). */
static void
report_success(struct slot *s, char *result, const char *exit_code)
{
	struct report r = {.outcome = "succeeded", .result = result};

	snprintf(r.exit_code, sizeof r.exit_code, "%s", exit_code);
	s->w->backend->report(s, &r);
}

void
slot_report(struct slot *s)
{
	const char *outcome = decide_outcome(s);
	char why[512], code[8] = "";

	if (!s->exec_errno && WIFEXITED(s->status))
		snprintf(code, sizeof code, "%d", WEXITSTATUS(s->status));
	if (strcmp(outcome, "succeeded") == 0) {
		report_success(s, s->last ? json_or_string(s->last, s->last_len) :
		    xstrdup("null"), code);
		return;
	}
	if (strcmp(outcome, "throttled") == 0) {
		report_exec_throttled(s, code);
		return;
	}
	describe_end(s, why, sizeof why);
	report_failure(s, outcome, why, code);
}

/*
 * Line mode: the line that answers the job of s. A JSON object with
 * "aq_status": "failed" (no retry) or "retry" fails the attempt, with its
 * "error" as the error; "throttled" puts the job back and holds the queue
 * ("retry_after" seconds, or --throttle); any other line is the result.
 */
/* The "aq_status" of a line-mode answer that is a JSON object naming one
 * of ours (failed, retry, throttled), with *doc its parse; else NULL. */
static const char *
answer_status(const char *line, size_t n, json_t **doc)
{
	json_t *st;
	const char *status;

	if (n == 0 || line[0] != '{' || !memmem(line, n, "\"aq_status\"", 11) ||
	    !(*doc = json_loadb(line, n, 0, NULL)))
		return NULL;
	if (!json_is_object(*doc) || !(st = json_object_get(*doc, "aq_status")) ||
	    !json_is_string(st))
		return NULL;
	status = json_string_value(st);
	if (strcmp(status, "failed") == 0 || strcmp(status, "retry") == 0 ||
	    strcmp(status, "throttled") == 0)
		return status;
	return NULL;
}

void
line_answer(struct slot *s, const char *line, size_t n)
{
	json_t *doc = NULL;
	const char *status;
	int64_t hold;

	if (!s->busy || s->stop != STOP_NONE) {
		warnmsg("slot %d: its handler wrote a line with no job waiting "
		    "for it; dropped: %.*s", s->index, n > 200 ? 200 : (int)n, line);
		return;
	}
	s->crashes = 0;
	status = answer_status(line, n, &doc);
	if (s->lost) {
		/* its lease was taken over: nothing to report */
	} else if (status && strcmp(status, "throttled") == 0 &&
	    (hold = throttle_ms(s, doc)) > 0) {
		report_throttled(s, hold, "");
	} else if (status) { /* failed, retry, or throttled with --throttle 0 */
		json_t *e = json_object_get(doc, "error");
		char why[512];
		snprintf(why, sizeof why, "%s", json_is_string(e) ? json_string_value(e) :
		    "its handler answered aq_status failed");
		report_failure(s, strcmp(status, "failed") != 0 ? "retry" : "failed",
		    why, ""); /* the outcome as a string of ours: doc goes */
	} else {
		report_success(s, json_or_string(line, n), "");
	}
	json_decref(doc);
	slot_job_done(s);
}
