/* worker_impl.h: private to common/worker*.c (aq-worker sees worker.h): a
 * worker's state, slots, reports, jobs claimed ahead, the shared functions. */
#ifndef AQ_WORKER_IMPL_H
#define AQ_WORKER_IMPL_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "aredis.h"
#include "child.h"
#include "clock.h"
#include "id.h"
#include "json.h"
#include "keys.h"
#include "script.h"
#include "worker.h"

#define ERROR_TAIL 4096       /* bytes of a handler's stderr kept for `error` */
#define HELD_MAX (8 << 20)    /* bytes of event calls held for Redis at most */
#define SHUTDOWN_KILL_MS 2000 /* after the grace period, SIGTERM to SIGKILL */

enum stop_reason { STOP_NONE, STOP_TIMEOUT, STOP_CANCEL, STOP_SHUTDOWN, STOP_LEASE };

/* An outcome waiting to be reported (by the next work call). */
struct report {
	uint64_t seq;               /* names it in the work call that sends it */
	int sent;                   /* a work call carries it, unanswered yet */
	char id[ID_MAX + 1];
	char token[24];
	const char *outcome;        /* succeeded failed retry cancelled requeue */
	char *result, *error;      /* NULL: none (sent as "") */
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
	uint64_t lease_deadline;    /* clock_mono_ms clock: the worker kills */
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
	void *job;                  /* the backend's own record of the job */
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
	uint64_t unconfirmed;        /* --replicas: the claim's WAIT, not yet
	                              * answered (its number); 0: may start */
};

/*
 * The life of a worker, one state at a time (the order matters: from
 * DRAINING on, a stop signal came).
 *
 * WORKING      claims jobs as its free slots and --prefetch allow.
 *              -> OUT_OF_WORK, -> DRAINING on SIGTERM, SIGINT or SIGHUP.
 * OUT_OF_WORK  --burst found nothing to claim (with nothing running,
 *              waiting to be reported or claimed ahead), or --max-jobs
 *              jobs were claimed: no more claims; what runs finishes and
 *              is reported. -> DRAINING on a signal, -> DONE.
 * DRAINING     the first stop signal: no claims, the jobs claimed ahead go
 *              back on the queue, running jobs get the grace period.
 *              -> STOPPING on a second signal (exit code 75, handlers
 *              killed at once) or when the grace period ends with Redis in
 *              reach (handlers get SIGTERM, SIGKILL SHUTDOWN_KILL_MS
 *              later); -> ABANDONING when it ends with Redis out of
 *              reach; -> DONE.
 * STOPPING     handlers are stopped; their outcomes are still reported.
 *              The grace timer comes back every SHUTDOWN_KILL_MS while a
 *              handler runs or an outcome waits: -> ABANDONING when it
 *              finds Redis out of reach; -> DONE.
 * ABANDONING   Redis was out of reach at the end of the grace period: the
 *              worker ends as soon as no handler runs, leaving what it
 *              could not report to lease recovery (exit code 75). Redis
 *              coming back does not undo that; a second signal does:
 *              -> STOPPING at the next grace timer that finds Redis in
 *              reach after a second signal; -> DONE.
 * DONE         connections stopped, timers and signal handlers closed:
 *              the loop runs dry.
 */
enum worker_state { WORKING, OUT_OF_WORK, DRAINING, STOPPING, ABANDONING, DONE };

/* The command connection, for the word said when it comes back. */
enum cmd_link {
	CMD_UP,     /* connected, or connecting the first time */
	CMD_LOST,   /* lost: once back, say which leases held out */
	CMD_BACK,   /* back: the next renewal's reply is announced */
};

struct held_call;

/*
 * The backend of a worker: where its jobs come from and where what their
 * handlers say goes. The slots (worker_slot.c, worker_outcome.c) run the
 * handlers and call it; Redis is aq-worker's (backend_redis, the rest of
 * worker*.c), standard input and output aq-run's (worker_direct.c).
 */
struct backend {
	/* started: the job of s started; its claim was sent at claimed_at */
	void (*started)(struct slot *s, uint64_t claimed_at);
	/* events_begin, event, events_end: the output lines of the job of s
	 * read at once: events_begin, then event for each (kind "stdout" or
	 * "stderr"), then events_end */
	void (*events_begin)(struct slot *s);
	void (*event)(struct slot *s, const char *kind, const char *line, size_t n);
	void (*events_end)(struct slot *s);
	/* report: the outcome of the job of s (r's id and token unset); takes
	 * r->result and r->error */
	void (*report)(struct slot *s, struct report *r);
	/* freed: a job ended, its slot is free */
	void (*freed)(struct worker *w);
	/* kick: something else changed (a line-mode process went down) */
	void (*kick)(struct worker *w);
};

/* backend_redis: aq-worker's. */
extern const struct backend backend_redis;

struct worker {
	const struct worker_options *o;
	const struct backend *backend;
	struct held_call *held, **held_tail;
	size_t held_bytes;
	struct script_args events;  /* the event call being built */
	char event_keys[KEYS_EVENT][KEY_MAX + ID_MAX];
	struct script_args call;    /* a work or renew call being built */
	uv_loop_t *loop;
	struct keys keys;
	char host[256], pid[16], started[24], lease_str[24];
	struct aredis cmd, block, sub;
	struct aredis watch;        /* sentinel URL: +switch-master notices */
	struct slot *slots;
	int running;                /* busy slots */
	struct report *reports;
	size_t nreports, capreports;
	struct ahead *ahead;         /* claimed, waiting for a slot */
	size_t nahead;
	enum worker_state state;
	enum cmd_link cmd_link;
	/* I/O bookkeeping, not states of the worker: calls awaiting their
	 * replies, and what the last claim and the flush timer said; each
	 * changes with a reply or a timer, in any state */
	int work_in_flight;         /* work calls sent, unanswered (WORK_CALLS at most) */
	int claiming;               /* jobs those calls claim */
	int renew_in_flight, wait_in_flight;
	uint64_t renew_sent_at;
	int nothing_to_claim;       /* the last claim came back short: wait */
	int flush_due;              /* reports waited FLUSH_MS: send them */
	uint64_t report_seq;
	uint64_t wait_seq;          /* --replicas: the WAITs sent */
	int replicas_short;         /* ... that came back short, in a row */
	long claimed;
	uv_timer_t renew, grace, flush;
	uv_signal_t sigterm, sigint, sighup, sigchld;
	struct jbuf jb;             /* an output line as event data */
	int exit_code;              /* EX_TEMPFAIL once a second signal came
	                             * (or, at the end, outcomes were lost) */
};

/* ---- worker.c: lifecycle ---------------------------------------------- */

/* worker_maybe_finish: end the worker (stop its connections and timers, so
 * the loop runs dry) once nothing is left to run or report and it was told
 * to stop or ran out of work. */
void worker_maybe_finish(struct worker *w);

/* worker_out_of_work: 1 when the worker claims no more jobs (any state
 * but WORKING). */
int worker_out_of_work(const struct worker *w);

/* init_signal: start h, its data w, calling cb on sig. */
void init_signal(struct worker *w, uv_signal_t *h, int sig, uv_signal_cb cb);

/* end_loop: the loop ran dry: close every handle left, let the closes
 * run, close the loop. */
void end_loop(uv_loop_t *loop);

/* worker_no_more_work: WORKING -> OUT_OF_WORK (--burst found nothing, or
 * --max-jobs jobs were claimed); no change in any other state. */
void worker_no_more_work(struct worker *w);

/* ---- worker_slot.c: slots and their handler processes ------------------ */

/* init_slots: the -c slots of w, their timers initialised. */
void init_slots(struct worker *w);

/* slot_start: run the job on the free slot s; claimed_at is when the call
 * that leased it was sent (its lease runs from then). The slot takes
 * payload, malloc'd with room for the newline at payload[payload_len]
 * that ends it as a line (struct ahead's). */
void slot_start(struct slot *s, const char *id, const char *token,
    char *payload, size_t payload_len, int attempt, int max_attempts,
    int64_t timeout_ms, uint64_t claimed_at);

/* slot_stop: SIGTERM to the handler's group now, SIGKILL after grace_ms
 * (at once when 0); why is remembered for the outcome. */
void slot_stop(struct slot *s, enum stop_reason why, int64_t grace_ms);

/* slots_shutdown: the end of a grace period: slot_stop every handler
 * (STOP_SHUTDOWN, SIGKILL grace_ms later); a line-mode process between
 * jobs gets SIGKILL. */
void slots_shutdown(struct worker *w, int64_t grace_ms);

/* slot_job_done: the job of s is over (reported, or its lease lost): free
 * the slot, start a job claimed ahead on it, kick the worker. */
void slot_job_done(struct slot *s);

/* idle_slot: a slot with no job in flight, or NULL. */
struct slot *idle_slot(struct worker *w);

/* slot_by_id: the busy slot running job id[0..n), or NULL. */
struct slot *slot_by_id(struct worker *w, const char *id, size_t n);

/* on_sigchld: reap the handlers that exited. */
void on_sigchld(uv_signal_t *h, int sig);

/* free_slots_of: free what the slots of w hold (the loop is over). */
void free_slots_of(struct worker *w);

/* lines_still_up: line mode, the worker ending: close the stdin of every
 * handler still up (killed after the grace period); 1 while one is up. */
int lines_still_up(struct worker *w);

void lines_free(struct lines *l);

/* ---- worker_outcome.c: what a handler's end means --------------------- */

/* slot_report: the outcome of the job of s, whose process ended, as a
 * report. */
void slot_report(struct slot *s);

/* line_answer: line mode: the stdout line that answers the job of s. */
void line_answer(struct slot *s, const char *line, size_t n);

/* ---- worker_outbox.c: what waits to be sent to Redis ------------------- */

/* json_or_string: s[0..n) itself when it is JSON, else as a JSON string;
 * a new string. */
char *json_or_string(const char *s, size_t n);

/* report_new: a new report of job id, its result and error empty; valid
 * until the reports change. */
struct report *report_new(struct worker *w, const char *id, const char *token,
    const char *outcome);

/* report_by_seq: the report numbered seq, or NULL. */
struct report *report_by_seq(struct worker *w, uint64_t seq);

/* reports_drop: forget the reports numbered seqs[0..n) (applied, or stale). */
void reports_drop(struct worker *w, const uint64_t *seqs, size_t n);

void reports_clear(struct worker *w);

/* reports_unsent: the reports no work call in flight carries. */
size_t reports_unsent(const struct worker *w);

/* events_begin: start the event call of the job of s in w->events (its
 * keys, lease token, stream cap and call number); event_line adds a line
 * to it as an event of type kind; send_events holds the call, unless it
 * has no line or too much is held already (its lines are then counted as
 * dropped), and sends it. */
void events_begin(struct slot *s);
void event_line(struct slot *s, const char *kind, const char *line, size_t n);
void send_events(struct slot *s);

/* send_held: send, in order, the event calls held and not sent yet. */
void send_held(struct worker *w);

/* held_free_all: forget every event call held. */
void held_free_all(struct worker *w);

/* ---- worker_claim.c: the work call and jobs claimed ahead -------------- */

/* worker_kick: something changed: report what finished, claim what there
 * is room for (when a work call is worth it now), maybe end the worker. */
void worker_kick(struct worker *w);

/* start_ahead_jobs: start the jobs claimed ahead on the free slots. */
void start_ahead_jobs(struct worker *w);

/* requeue_ahead: the jobs claimed ahead go back on the queue (shutdown). */
void requeue_ahead(struct worker *w);

/* ahead_by_id: the job claimed ahead with id[0..n) (and token, unless
 * NULL), or NULL. */
struct ahead *ahead_by_id(struct worker *w, const char *id, size_t n,
    const char *token);

/* ahead_drop: forget a job claimed ahead (its lease was lost). */
void ahead_drop(struct worker *w, struct ahead *a);

/* ahead_cancel: a job claimed ahead was cancelled: report it so, drop it. */
void ahead_cancel(struct worker *w, struct ahead *a);

/* ---- worker_lease.c: leases, heartbeat and cancel notices -------------- */

/* slot_lease_renewed: the lease of s runs from sent_at: arm the timers that
 * stop its handler should no renewal come in time. */
void slot_lease_renewed(struct slot *s, uint64_t sent_at);

/* send_renew: renew every lease held, heartbeat, recover others' expired
 * leases. */
void send_renew(struct worker *w);

/* on_renew_timer: every lease/3: send_renew, or give up on a silent server. */
void on_renew_timer(uv_timer_t *t);

/* on_cancel_notice: a message on the queue's cancel channel. */
void on_cancel_notice(redisAsyncContext *ac, void *reply, void *priv);

#endif
