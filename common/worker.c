/* worker.c: the worker engine's lifecycle: setup, its three Redis
 * connections, the stop signals and grace period, the end of the loop. */
#include "worker_impl.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "redis.h"
#include "script.h"

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
		w->cmd_link = CMD_LOST;
		return;
	}
	w->cmd_link = w->cmd_link == CMD_LOST ? CMD_BACK : CMD_UP;
	send_held(w);
	send_renew(w); /* register, and learn which leases are still ours */
	worker_kick(w);
}

static void
on_block_state(struct aredis *r, int ready, void *ctx)
{
	struct worker *w = ctx;
	(void)r;

	w->wait_in_flight = 0;
	if (ready) {
		w->nothing_to_claim = 0;
		worker_kick(w);
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

/* A sentinel announced a failover (+switch-master "NAME OLDHOST OLDPORT
 * NEWHOST NEWPORT"): of our primary, the connections still on the old one
 * go to the new one now, not when the old one is made a replica (up to
 * seconds later, all the while taking writes that will be lost). */
_Static_assert(URL_MASTER_MAX == 128 && URL_HOST_MAX == 256,
    "the widths of on_switch_master's sscanf");

static void
on_switch_master(redisAsyncContext *ac, void *reply, void *priv)
{
	struct worker *w = priv;
	redisReply *r = reply;
	const char *master = w->o->cfg->redis.master;
	char name[URL_MASTER_MAX], why[URL_MASTER_MAX + URL_HOST_MAX + 64];
	struct url_addr to;

	(void)ac;
	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING ||
	    strcmp(r->element[0]->str, "message") != 0 ||
	    r->element[2]->type != REDIS_REPLY_STRING ||
	    sscanf(r->element[2]->str, "%127s %*s %*d %255s %d", name, to.host,
	    &to.port) != 3 || strcmp(name, master) != 0 ||
	    to.port < 1 || to.port > 65535)
		return;
	snprintf(why, sizeof why, "the sentinels switched primary %s to %s:%d",
	    master, to.host, to.port);
	aredis_follow(&w->cmd, &to, why);
	aredis_follow(&w->block, &to, why);
	aredis_follow(&w->sub, &to, why);
}

static void
on_watch_state(struct aredis *r, int ready, void *ctx)
{
	const char *argv[] = {"SUBSCRIBE", "+switch-master"};

	if (ready)
		aredis_command(r, on_switch_master, ctx, 2, argv, NULL);
}

/* ---- shutdown --------------------------------------------------------- */

/* A second signal came: the exit code says so. */
static int
stopped_at_once(const struct worker *w)
{
	return w->exit_code == EX_TEMPFAIL;
}

/* The grace period is over (and then every SHUTDOWN_KILL_MS while a handler
 * runs or an outcome waits): stop the handlers; with Redis out of reach,
 * give up reporting (see enum worker_state). */
static void
on_grace_over(uv_timer_t *t)
{
	struct worker *w = t->data;

	if (w->running > 0)
		warnmsg("grace period over: stopping %d handler%s; what they do not "
		    "finish goes back on the queue", w->running, w->running == 1 ? "" : "s");
	slots_shutdown(w, SHUTDOWN_KILL_MS);
	if (!w->cmd.ready)
		w->state = ABANDONING;
	else if (w->state == DRAINING || stopped_at_once(w))
		w->state = STOPPING;
	if (w->running > 0 || (w->nreports > 0 && w->state != ABANDONING))
		uv_timer_start(&w->grace, on_grace_over, SHUTDOWN_KILL_MS, 0);
	worker_maybe_finish(w);
}

static void
on_signal(uv_signal_t *h, int sig)
{
	struct worker *w = h->data;

	if (w->state >= DRAINING) {
		warnmsg("second %s: stopping now", strsignal(sig));
		w->exit_code = EX_TEMPFAIL;
		if (w->state == DRAINING)
			w->state = STOPPING;
		for (int i = 0; i < w->o->concurrency; i++)
			slot_stop(&w->slots[i], STOP_SHUTDOWN, 0);
		uv_timer_start(&w->grace, on_grace_over, (uint64_t)SHUTDOWN_KILL_MS, 0);
		worker_maybe_finish(w);
		return;
	}
	w->state = DRAINING;
	requeue_ahead(w);
	warnmsg("%s: no new jobs; waiting up to %lld ms for %d running", strsignal(sig),
	    (long long)w->o->grace_ms, w->running);
	uv_timer_start(&w->grace, on_grace_over, (uint64_t)w->o->grace_ms, 0);
	worker_kick(w);
}

static void
close_handle(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

void
end_loop(uv_loop_t *loop)
{
	uv_walk(loop, close_handle, NULL);
	uv_run(loop, UV_RUN_DEFAULT);
	uv_loop_close(loop);
}

int
worker_out_of_work(const struct worker *w)
{
	return w->state != WORKING;
}

void
worker_no_more_work(struct worker *w)
{
	if (w->state == WORKING)
		w->state = OUT_OF_WORK;
}

/* The worker is done when nothing runs, nothing is left to report (or
 * Redis stayed out of reach past the grace period), and it was told to
 * stop or ran out of work. Then the loop is let to run dry. */
void
worker_maybe_finish(struct worker *w)
{
	if (w->state == DONE || w->running > 0 || !worker_out_of_work(w) ||
	    w->work_in_flight)
		return;
	if (w->nreports > 0 && w->state != ABANDONING)
		return;
	if (lines_still_up(w))
		return;
	if (w->nreports > 0) {
		warnmsg("%zu outcomes could not be reported: redis is unreachable; "
		    "their jobs will be recovered when their leases expire", w->nreports);
		w->exit_code = EX_TEMPFAIL;
	}
	w->state = DONE;
	aredis_stop(&w->cmd);
	aredis_stop(&w->block);
	aredis_stop(&w->sub);
	if (w->o->cfg->redis.kind == URL_SENTINEL)
		aredis_stop(&w->watch);
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

void
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
	redisContext *c = redis_try_connect_for(&w->o->cfg->redis, w->keys.base,
	    err, sizeof err, &code);

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
	free_slots_of(w);
	reports_clear(w);
	free(w->reports);
	for (size_t i = 0; i < w->nahead; i++)
		free(w->ahead[i].payload);
	free(w->ahead);
	held_free_all(w);
	script_args_free(&w->events);
	script_args_free(&w->call);
	jb_free(&w->jb);
}

int
worker_run(const struct worker_options *o)
{
	static struct worker w;
	uv_loop_t loop;

	w.o = o;
	w.backend = &backend_redis;
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
	aredis_route(&w.cmd, w.keys.base);
	aredis_route(&w.block, w.keys.base);
	aredis_route(&w.sub, w.keys.base);
	aredis_start(&w.cmd);
	aredis_start(&w.block);
	aredis_start(&w.sub);
	if (o->cfg->redis.kind == URL_SENTINEL) {
		aredis_init(&w.watch, &loop, &o->cfg->redis, "sentinel watch", NULL,
		    on_watch_state, &w);
		aredis_to_sentinels(&w.watch);
		aredis_start(&w.watch);
	}

	uv_run(&loop, UV_RUN_DEFAULT);

	unregister(&w);
	end_loop(&loop);
	cleanup(&w);
	return w.exit_code;
}
