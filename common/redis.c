/* redis.c: connect, authenticate and select over hiredis, with messages
 * that name the server (password masked) and the reason. */
#include "redis.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>

#include "log.h"
#include "route.h"
#include "sentinel.h"

static struct timeval
tv_ms(int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	return tv;
}

/* Where the password goes, for the "what to do" of an authentication
 * error: the URL's user info, with its forms, kept out of ps. */
static void
password_advice(const struct redis_url *u, const char *what, char *buf,
    size_t len)
{
	char place[URL_SOURCE_MAX + 64];

	snprintf(buf, len, "put %s in the URL of %s, as unix://%s@/path or "
	    "redis://%s@host; a file named by --redis-url-file or "
	    "AQ_REDIS_URL_FILE keeps it out of ps", what,
	    url_source_fix(u, place, sizeof place),
	    u->user[0] ? "user:password" : ":password",
	    u->user[0] ? "user:password" : ":password");
}

/* AUTH [user] password, then SELECT db; 0 or -1 with err and *code. */
static int
authenticate_and_select(redisContext *c, const struct redis_url *u, char *err,
    size_t errlen, int *code)
{
	char advice[URL_SOURCE_MAX + 256], place[URL_SOURCE_MAX + 64];
	redisReply *r;

	if (u->password[0]) {
		if (u->user[0])
			r = redisCommand(c, "AUTH %s %s", u->user, u->password);
		else
			r = redisCommand(c, "AUTH %s", u->password);
		if (!r) {
			snprintf(err, errlen, "%s", c->errstr);
			*code = EX_UNAVAILABLE;
			return -1;
		}
		if (r->type == REDIS_REPLY_ERROR) {
			/* the reply never holds the password: "<password>" */
			if (strstr(r->str, "without any password configured")) {
				snprintf(err, errlen, "the URL gives a password, but redis "
				    "has none set (%s); drop it from the URL of %s, or "
				    "give the server one (requirepass)", r->str,
				    url_source_fix(u, place, sizeof place));
			} else if (u->user[0]) {
				password_advice(u, "the right user and password", advice,
				    sizeof advice);
				snprintf(err, errlen, "redis refused the password of user "
				    "%s (%s); %s", u->user, r->str, advice);
			} else {
				password_advice(u, "the right password", advice,
				    sizeof advice);
				snprintf(err, errlen, "redis refused the password (%s); %s",
				    r->str, advice);
			}
			*code = EX_NOPERM;
			freeReplyObject(r);
			return -1;
		}
		freeReplyObject(r);
	}
	r = u->db ? redisCommand(c, "SELECT %d", u->db) : redisCommand(c, "PING");
	if (!r) {
		snprintf(err, errlen, "%s", c->errstr);
		*code = EX_UNAVAILABLE;
		return -1;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		if (strncmp(r->str, "NOAUTH", 6) == 0) {
			password_advice(u, "the password", advice, sizeof advice);
			snprintf(err, errlen, "redis wants a password and the URL gives "
			    "none (%s); %s", r->str, advice);
			*code = EX_NOPERM;
		} else if (u->db) {
			snprintf(err, errlen, "redis refused SELECT %d (%s); fix the "
			    "database number in the URL of %s", u->db, r->str,
			    url_source_fix(u, place, sizeof place));
			*code = EX_UNAVAILABLE;
		} else {
			snprintf(err, errlen, "redis refused PING (%s)", r->str);
			*code = EX_UNAVAILABLE;
		}
		freeReplyObject(r);
		return -1;
	}
	freeReplyObject(r);
	return 0;
}

/* Why a connection to u could not be made, from hiredis's reason, and what
 * to do: for a unix socket, what the path holds tells more than errno. */
static void
explain_unreachable(const struct redis_url *u, const struct url_addr *at,
    const char *why, char *err, size_t errlen)
{
	char place[URL_SOURCE_MAX + 64], detail[URL_PATH_MAX + 160] = "";
	struct stat st;

	if (u->kind == URL_SENTINEL) {
		snprintf(err, errlen, "%s:%d, which the sentinels name primary %s: "
		    "%s", at->host, at->port, u->master, why);
		return;
	}
	if (u->kind == URL_CLUSTER) {
		snprintf(err, errlen, "%s:%d, a node of the cluster: %s", at->host,
		    at->port, why);
		return;
	}
	if (u->is_unix) {
		int exists = stat(u->path, &st) == 0;
		if (!exists && errno == ENOENT)
			snprintf(detail, sizeof detail, ": the socket %s does not exist",
			    u->path);
		else if (exists && !S_ISSOCK(st.st_mode))
			snprintf(detail, sizeof detail, ": %s is not a socket", u->path);
		else if (strcmp(why, strerror(EACCES)) == 0)
			snprintf(detail, sizeof detail, ": this user may not use the "
			    "socket (its mode, redis' unixsocketperm, or its directory's)");
		else if (exists && strcmp(why, strerror(ECONNREFUSED)) == 0)
			snprintf(detail, sizeof detail, ": nothing listens on the socket "
			    "(left behind by a redis-server that stopped?)");
	}
	snprintf(err, errlen, "%s%s; is redis-server running there? if it runs "
	    "elsewhere, give its URL in %s", why, detail,
	    url_source_fix(u, place, sizeof place));
}

/* With a sentinel URL: the server connected to at is the primary still
 * (ROLE); 0, or -1 with err. */
static int
check_primary(redisContext *c, const struct redis_url *u,
    const struct url_addr *at, char *err, size_t errlen)
{
	redisReply *r;
	int rc;

	if (u->kind != URL_SENTINEL)
		return 0;
	if (!(r = redisCommand(c, "ROLE"))) {
		snprintf(err, errlen, "%s", c->errstr);
		return -1;
	}
	rc = sentinel_role_check(r, at, u->master, err, errlen);
	freeReplyObject(r);
	return rc;
}

redisContext *
redis_try_connect(const struct redis_url *u, char *err, size_t errlen, int *code)
{
	return redis_try_connect_for(u, NULL, err, errlen, code);
}

redisContext *
redis_try_connect_for(const struct redis_url *u, const char *key, char *err,
    size_t errlen, int *code)
{
	struct url_addr at;

	*code = EX_UNAVAILABLE;
	if (route_server(u, key, &at, err, errlen) < 0)
		return NULL;
	return redis_try_connect_at(u, &at, err, errlen, code);
}

redisContext *
redis_try_connect_at(const struct redis_url *u, const struct url_addr *at,
    char *err, size_t errlen, int *code)
{
	redisContext *c;

	/* a server that closed the connection is an error to report, not a
	 * signal to die of (standard output's EPIPE: see die_output) */
	signal(SIGPIPE, SIG_IGN);
	*code = EX_UNAVAILABLE;
	if (u->is_unix)
		c = redisConnectUnixWithTimeout(u->path, tv_ms(REDIS_CONNECT_TIMEOUT_MS));
	else
		c = redisConnectWithTimeout(at->host, at->port, tv_ms(REDIS_CONNECT_TIMEOUT_MS));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (c->err) {
		explain_unreachable(u, at, c->errstr, err, errlen);
		redisFree(c);
		return NULL;
	}
	if (redisSetTimeout(c, tv_ms(REDIS_COMMAND_TIMEOUT_MS)) != REDIS_OK ||
	    authenticate_and_select(c, u, err, errlen, code) < 0 ||
	    check_primary(c, u, at, err, errlen) < 0) {
		if (c->err)
			snprintf(err, errlen, "%s", c->errstr);
		redisFree(c);
		return NULL;
	}
	return c;
}

int
redis_retry_next(int backoff_ms)
{
	return backoff_ms * 2 > REDIS_RETRY_MAX_MS ? REDIS_RETRY_MAX_MS : backoff_ms * 2;
}

redisContext *
redis_connect(const struct redis_url *u)
{
	return redis_connect_for(u, NULL);
}

redisContext *
redis_connect_for(const struct redis_url *u, const char *key)
{
	char err[REDIS_ERR_MAX], shown[1024];
	int code;
	redisContext *c = redis_try_connect_for(u, key, err, sizeof err, &code);

	if (!c)
		die(code, "cannot connect to redis at %s: %s",
		    url_display(u, shown, sizeof shown), err);
	return c;
}

char *
redis_display(const struct redis_url *u, const redisContext *c, char *buf,
    size_t len)
{
	size_t n;

	url_display(u, buf, len);
	n = strlen(buf);
	if (u->kind != URL_SERVER && c && c->connection_type == REDIS_CONN_TCP &&
	    c->tcp.host && n < len)
		snprintf(buf + n, len - n, " (%s %s:%d)", u->kind == URL_CLUSTER ?
		    "node" : "primary", c->tcp.host, c->tcp.port);
	return buf;
}

void
redis_die_io(redisContext *c, const struct redis_url *u, const char *doing)
{
	char shown[1024];

	die(EX_UNAVAILABLE, "lost the connection to redis at %s while %s: %s",
	    url_display(u, shown, sizeof shown), doing,
	    c->err ? c->errstr : "no reply");
}

/* Move c, in place, to the node at (a cluster's MOVED): connect there
 * and authenticate as u says. 0, or -1 (c->err set, or err). */
static int
move_to(redisContext *c, const struct redis_url *u, const struct url_addr *at)
{
	char err[REDIS_ERR_MAX];
	char *host;
	int code;

	if (c->connection_type != REDIS_CONN_TCP || !(host = strdup(at->host)))
		return -1;
	free(c->tcp.host); /* hiredis's, from its default allocator: malloc */
	c->tcp.host = host;
	c->tcp.port = at->port;
	if (redisReconnect(c) != REDIS_OK ||
	    redisSetTimeout(c, tv_ms(REDIS_COMMAND_TIMEOUT_MS)) != REDIS_OK)
		return -1;
	if (authenticate_and_select(c, u, err, sizeof err, &code) < 0) {
		if (!c->err)
			snprintf(c->errstr, sizeof c->errstr, "%.100s", err);
		c->err = c->err ? c->err : REDIS_ERR_OTHER;
		return -1;
	}
	return 0;
}

/* The node of "MOVED slot host:port" (an empty host: c's own). */
static int
moved_to(const redisContext *c, const char *error, struct url_addr *at)
{
	const char *addr = strchr(error + 6, ' '), *colon;
	size_t n;

	if (!addr || !(colon = strrchr(++addr, ':')) || !colon[1])
		return -1;
	n = (size_t)(colon - addr);
	if (n == 0 && c->tcp.host)
		snprintf(at->host, sizeof at->host, "%s", c->tcp.host);
	else if (n < sizeof at->host)
		snprintf(at->host, sizeof at->host, "%.*s", (int)n, addr);
	else
		return -1;
	at->port = atoi(colon + 1);
	return at->port > 0 && at->port < 65536 ? 0 : -1;
}

int
redis_follow(redisContext *c, const struct redis_url *u, const redisReply *r,
    int *tries)
{
	struct url_addr at;

	if (u->kind != URL_CLUSTER || !r || r->type != REDIS_REPLY_ERROR ||
	    !route_redirected(r->str) || ++*tries > REDIS_FOLLOW_TRIES)
		return 0;
	if (strncmp(r->str, "MOVED ", 6) == 0 && moved_to(c, r->str, &at) == 0)
		return move_to(c, u, &at) == 0;
	nanosleep(&(struct timespec){0, REDIS_FOLLOW_WAIT_MS * 1000000L}, NULL);
	return 1;
}

redisReply *
redis_command_ok(redisContext *c, const struct redis_url *u, int argc,
    const char **argv)
{
	redisReply *r = redisCommandArgv(c, argc, argv, NULL);
	char shown[1024];
	int tries = 0;

	while (redis_follow(c, u, r, &tries)) {
		freeReplyObject(r);
		r = redisCommandArgv(c, argc, argv, NULL);
	}
	if (!r)
		redis_die_io(c, u, argv[0]);
	if (r->type == REDIS_REPLY_ERROR)
		die(EX_UNAVAILABLE, "redis at %s refused %s: %s%s",
		    url_display(u, shown, sizeof shown), argv[0], r->str,
		    u->kind == URL_SENTINEL && sentinel_lost_role(r->str) ?
		    " (the server stopped being the "
		    "primary: a failover; nothing was done, run again)" :
		    u->kind == URL_CLUSTER && route_redirected(r->str) ?
		    " (the cluster serves the slot elsewhere now, or is moving "
		    "it; nothing was done, run again)" : "");
	return r;
}

redisReply *
redis_get_reply(redisContext *c, const struct redis_url *u, const char *doing)
{
	void *r = NULL;

	if (redisGetReply(c, &r) != REDIS_OK || !r)
		redis_die_io(c, u, doing);
	return r;
}

int
redis_await_reply(redisContext *c, void **reply, long long timeout_ms)
{
	void *aux = NULL;
	int done = 0;

	*reply = NULL;
	if (redisGetReplyFromReader(c, &aux) != REDIS_OK)
		return -1;
	while (!aux) {
		while (!done)
			if (redisBufferWrite(c, &done) != REDIS_OK)
				return -1;
		int ready = wait_readable(c->fd, timeout_ms);
		if (ready == 0)
			return 1;
		if (ready < 0) {
			c->err = REDIS_ERR_IO;
			snprintf(c->errstr, sizeof c->errstr, "%s", strerror(errno));
			return -1;
		}
		if (redisBufferRead(c) != REDIS_OK ||
		    redisGetReplyFromReader(c, &aux) != REDIS_OK)
			return -1;
	}
	*reply = aux;
	return 0;
}

redisReply *
redis_command_await(redisContext *c, int argc, const char **argv,
    long long timeout_ms)
{
	void *reply;
	int rc;

	if (redisAppendCommandArgv(c, argc, argv, NULL) != REDIS_OK)
		return NULL;
	if ((rc = redis_await_reply(c, &reply, timeout_ms)) == 1) {
		c->err = REDIS_ERR_IO;
		snprintf(c->errstr, sizeof c->errstr, "no reply to %s within %lld s",
		    argv[0], timeout_ms / 1000);
	}
	return rc == 0 ? reply : NULL;
}
