/* aredis.c: asynchronous hiredis on libuv with handshake and reconnection. */
#include "aredis.h"

#include <hiredis/adapters/libuv.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "redis.h"
#include "route.h"
#include "sentinel.h"

static void connect_now(struct aredis *r);
static void schedule_retry(struct aredis *r, const char *why);

void
aredis_init(struct aredis *r, uv_loop_t *loop, const struct redis_url *u,
    const char *name, struct script **scripts, aredis_state_fn *fn, void *ctx)
{
	memset(r, 0, sizeof *r);
	r->loop = loop;
	r->url = u;
	r->name = name;
	r->scripts = scripts;
	r->on_state = fn;
	r->ctx = ctx;
	r->backoff_ms = REDIS_RETRY_MIN_MS;
	uv_timer_init(loop, &r->retry);
	r->retry.data = r;
}

/* Drop the context now: pending callbacks get NULL. Only from a timer,
 * never inside a hiredis callback. */
static void
free_context(struct aredis *r)
{
	redisAsyncContext *ac = r->ac;

	if (ac)
		redisAsyncFree(ac); /* calls on_disconnect, which clears r->ac */
	r->ac = NULL;
}

static void
on_retry(uv_timer_t *t)
{
	struct aredis *r = t->data;

	if (r->stopping) {
		free_context(r);
		uv_close((uv_handle_t *)&r->retry, NULL);
		return;
	}
	if (r->ac) { /* aredis_drop */
		free_context(r);
		if (!uv_is_active((uv_handle_t *)&r->retry))
			schedule_retry(r, NULL);
	} else {
		connect_now(r);
	}
}

/* What r connects to, for messages: "redis at URL" (password masked), or
 * "sentinel at HOST:PORT". */
static char *
where(const struct aredis *r, char *buf, size_t len)
{
	char shown[1024];

	if (r->to_sentinels)
		snprintf(buf, len, "sentinel at %s:%d", r->at.host, r->at.port);
	else
		snprintf(buf, len, "redis at %s", url_display(r->url, shown,
		    sizeof shown));
	return buf;
}

static void
schedule_retry(struct aredis *r, const char *why)
{
	char shown[1024];

	if (r->stopping)
		return;
	if (r->failures++ == 0 && why)
		warnmsg("lost the %s connection to %s: %s; reconnecting",
		    r->name, where(r, shown, sizeof shown), why);
	uv_timer_start(&r->retry, on_retry, (uint64_t)r->backoff_ms, 0);
	r->backoff_ms = redis_retry_next(r->backoff_ms);
}

static void
become_ready(struct aredis *r)
{
	char shown[1024];

	r->ready = 1;
	r->refused = 0;
	r->backoff_ms = REDIS_RETRY_MIN_MS;
	if (r->failures > 0)
		warnmsg("the %s connection to %s is back", r->name,
		    where(r, shown, sizeof shown));
	r->failures = 0;
	r->on_state(r, 1, r->ctx);
}

/* One reply of the handshake (AUTH, SELECT, SCRIPT LOAD ...). */
static void
on_handshake(redisAsyncContext *ac, void *reply, void *priv)
{
	struct aredis *r = ac->data;
	redisReply *rep = reply;
	struct script *s = priv;

	if (!r || !rep)
		return;
	if (rep->type == REDIS_REPLY_ERROR) {
		char why[300], shown[1024];
		int auth = strncmp(rep->str, "WRONGPASS", 9) == 0 ||
		    strncmp(rep->str, "NOAUTH", 6) == 0 ||
		    strncmp(rep->str, "NOPERM", 6) == 0;
		snprintf(why, sizeof why, "%s", rep->str);
		redisAsyncDisconnect(ac);
		/* said once a streak, even after a loss was said: a password
		 * that stopped passing must not retry in silence */
		if (r->refused++ == 0)
			warnmsg("%s refused the %s connection (%s); trying "
			    "again with backoff%s", where(r, shown,
			    sizeof shown), r->name, why, auth ? ": the password of "
			    "the URL, or its user's ACL, no longer passes; fix it "
			    "and restart" : "");
		if (r->failures == 0)
			r->failures = 1; /* the loss that follows is this one */
		return;
	}
	if (s && rep->type == REDIS_REPLY_STRING && rep->len == 40) {
		memcpy(s->sha, rep->str, 40);
		s->sha[40] = '\0';
	}
	if (--r->handshake_left == 0)
		become_ready(r);
}

/* With a sentinel URL, the handshake's ROLE: the server named is the
 * primary still, or the connection is given up and the sentinels asked
 * again after the backoff. */
static void
on_role(redisAsyncContext *ac, void *reply, void *priv)
{
	struct aredis *r = ac->data;
	char why[URL_HOST_MAX + 256];

	(void)priv;
	if (!r || !reply)
		return;
	if (sentinel_role_check(reply, &r->at, r->url->master, why,
	    sizeof why) < 0) {
		redisAsyncDisconnect(ac);
		if (r->refused++ == 0)
			warnmsg("the %s connection: %s; asking the sentinels again "
			    "with backoff", r->name, why);
		if (r->failures == 0)
			r->failures = 1;
		return;
	}
	if (--r->handshake_left == 0)
		become_ready(r);
}

static void
send_handshake(struct aredis *r)
{
	const struct redis_url *u = r->url;
	char db[16];

	r->handshake_left = 1;
	if (r->to_sentinels) {
		redisAsyncCommand(r->ac, on_handshake, NULL, "PING");
		return;
	}
	if (u->password[0]) {
		r->handshake_left++;
		if (u->user[0])
			redisAsyncCommand(r->ac, on_handshake, NULL, "AUTH %s %s",
			    u->user, u->password);
		else
			redisAsyncCommand(r->ac, on_handshake, NULL, "AUTH %s",
			    u->password);
	}
	if (u->db) {
		snprintf(db, sizeof db, "%d", u->db);
		r->handshake_left++;
		redisAsyncCommand(r->ac, on_handshake, NULL, "SELECT %s", db);
	}
	if (u->kind == URL_SENTINEL) {
		r->handshake_left++;
		redisAsyncCommand(r->ac, on_role, NULL, "ROLE");
	}
	for (struct script **s = r->scripts; s && *s; s++) {
		r->handshake_left++;
		redisAsyncCommand(r->ac, on_handshake, *s, "SCRIPT LOAD %s",
		    (*s)->source);
	}
	redisAsyncCommand(r->ac, on_handshake, NULL, "PING");
}

static void
on_connect(const redisAsyncContext *ac, int status)
{
	struct aredis *r = ac->data;

	if (!r)
		return;
	if (status != REDIS_OK) {
		r->ac = NULL; /* hiredis frees it after this callback */
		schedule_retry(r, ac->errstr);
		return;
	}
	send_handshake(r);
}

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
	struct aredis *r = ac->data;
	int was_ready;

	(void)status;
	if (!r)
		return;
	was_ready = r->ready;
	r->ac = NULL;
	r->ready = 0;
	if (was_ready)
		r->on_state(r, 0, r->ctx);
	schedule_retry(r, ac->err ? ac->errstr : "connection closed");
}

/* Connect to r->at (or the URL's unix socket). */
static void
connect_to(struct aredis *r)
{
	const struct redis_url *u = r->url;

	r->ac = u->is_unix ? redisAsyncConnectUnix(u->path) :
	    redisAsyncConnect(r->at.host, r->at.port);
	if (!r->ac) {
		schedule_retry(r, "out of memory");
		return;
	}
	if (r->ac->err) {
		char why[256];
		snprintf(why, sizeof why, "%s", r->ac->errstr);
		redisAsyncFree(r->ac);
		r->ac = NULL;
		schedule_retry(r, why);
		return;
	}
	r->ac->data = r;
	redisLibuvAttach(r->ac, r->loop);
	redisAsyncSetConnectCallback(r->ac, on_connect);
	redisAsyncSetDisconnectCallback(r->ac, on_disconnect);
}

/* On libuv's thread pool: the sentinels, or the cluster's nodes, are
 * asked where to go; one that does not answer costs time the loop
 * (leases, handlers) must not wait for. Only r->named, r->ask_rc and
 * r->ask_err are written. */
static void
ask_route(uv_work_t *req)
{
	struct aredis *r = req->data;

	r->ask_rc = route_server(r->url, r->route, &r->named, r->ask_err,
	    sizeof r->ask_err);
}

/* The sentinels (or nodes) answered: connect to the server they named (a
 * new one is said), or to the primary a +switch-master announced
 * meanwhile. */
static void
on_route_answer(uv_work_t *req, int status)
{
	struct aredis *r = req->data;
	struct url_addr was = r->at;

	r->asking = 0;
	if (r->stopping)
		return;
	if (status != 0 || (r->ask_rc < 0 && r->hint.port == 0)) {
		if (r->refused++ == 0)
			warnmsg("the %s connection: %s; asking again with backoff",
			    r->name, status != 0 ? uv_strerror(status) : r->ask_err);
		schedule_retry(r, NULL);
		return;
	}
	r->at = r->hint.port != 0 ? r->hint : r->named;
	r->hint.port = 0;
	if (was.port != 0 && !url_addr_equal(&was, &r->at))
		warnmsg("the %s %s:%d now (was %s:%d); the %s connection follows "
		    "it", r->url->kind == URL_SENTINEL ? "sentinels name primary "
		    "of" : "cluster serves the queue from", r->at.host,
		    r->at.port, was.host, was.port, r->name);
	connect_to(r);
}

/* Connect to the URL's server; to the next of its sentinels (a sentinel
 * watch); to the primary a +switch-master announced (aredis_follow); or
 * to the primary the sentinels name, once they answer. */
static void
connect_now(struct aredis *r)
{
	const struct redis_url *u = r->url;

	if (r->stopping || r->ac || r->asking)
		return;
	if (r->to_sentinels) {
		r->at = u->nodes[r->next_sentinel++ % u->nnodes];
	} else if (r->hint.port != 0) {
		r->at = r->hint;
		r->hint.port = 0;
	} else if (u->kind != URL_SERVER) {
		r->asking = 1;
		r->ask.data = r;
		if (uv_queue_work(r->loop, &r->ask, ask_route, on_route_answer) == 0)
			return;
		r->asking = 0;
		schedule_retry(r, "cannot queue the question of where to connect");
		return;
	} else {
		memcpy(r->at.host, u->host, sizeof r->at.host);
		r->at.port = u->port;
	}
	connect_to(r);
}

void
aredis_route(struct aredis *r, const char *key)
{
	r->route = key;
}

void
aredis_to_sentinels(struct aredis *r)
{
	r->to_sentinels = 1;
}

void
aredis_start(struct aredis *r)
{
	r->stopping = 0;
	connect_now(r);
}

void
aredis_stop(struct aredis *r)
{
	if (r->stopping)
		return;
	r->stopping = 1;
	r->ready = 0;
	uv_timer_start(&r->retry, on_retry, 0, 0);
}

int
aredis_command(struct aredis *r, redisCallbackFn *cb, void *priv, int argc,
    const char **argv, const size_t *lens)
{
	if (!r->ready || !r->ac)
		return -1;
	return redisAsyncCommandArgv(r->ac, cb, priv, argc, argv, lens) == REDIS_OK ?
	    0 : -1;
}

int
aredis_script(struct aredis *r, redisCallbackFn *cb, void *priv,
    struct script_args *a)
{
	int argc = script_args_seal(a);

	return aredis_command(r, cb, priv, argc, a->argv, a->lens);
}

void
aredis_drop(struct aredis *r, const char *why)
{
	char shown[1024];

	if (!r->ac || r->stopping)
		return;
	if (r->failures++ == 0)
		warnmsg("giving up the %s connection to %s: %s; reconnecting",
		    r->name, where(r, shown, sizeof shown), why);
	uv_timer_start(&r->retry, on_retry, 0, 0);
}

void
aredis_follow(struct aredis *r, const struct url_addr *to, const char *why)
{
	r->hint = *to;
	aredis_drop(r, why);
}

/* A command Redis refuses is said once a minute at most: an ACL that
 * lacks it (WAIT under --replicas) refuses it at every call. */
static void
say_refusal(struct aredis *r, const char *what, const char *error)
{
	uint64_t now = uv_now(r->loop);

	if (strcmp(r->refusal, what) == 0 &&
	    now - r->refusal_said_ms < AREDIS_REFUSAL_QUIET_MS) {
		r->refusals_unsaid++;
		return;
	}
	if (strcmp(r->refusal, what) == 0 && r->refusals_unsaid > 0)
		warnmsg("redis refused %s: %s (%lu times since it was last "
		    "said)", what, error, r->refusals_unsaid + 1);
	else
		warnmsg("redis refused %s: %s", what, error);
	snprintf(r->refusal, sizeof r->refusal, "%s", what);
	r->refusal_said_ms = now;
	r->refusals_unsaid = 0;
}

int
aredis_usable(struct aredis *r, const redisReply *reply, const char *what)
{
	if (!reply)
		return 0;
	if (reply->type != REDIS_REPLY_ERROR)
		return 1;
	if ((r->url->kind == URL_SENTINEL && sentinel_lost_role(reply->str)) ||
	    (r->url->kind == URL_CLUSTER && route_redirected(reply->str))) {
		/* a failover demoted the server, or the cluster moved the slot:
		 * the sentinels, or the slot map, name the new one */
		if (r->ac && r->failures++ == 0)
			warnmsg("redis refused %s: %s; %s, reconnecting", what,
			    reply->str, r->url->kind == URL_SENTINEL ? "the server "
			    "is no longer the primary" : "the cluster serves the "
			    "queue elsewhere now, or is moving it");
		if (r->ac)
			redisAsyncDisconnect(r->ac);
		return 0;
	}
	if (strncmp(reply->str, "NOSCRIPT", 8) == 0) {
		/* reconnecting loads them again; replies pending still arrive */
		if (r->ac && r->failures++ == 0)
			warnmsg("redis forgot aq's scripts (NOSCRIPT); reconnecting");
		if (r->ac)
			redisAsyncDisconnect(r->ac);
		return 0;
	}
	say_refusal(r, what, reply->str);
	return 0;
}
