/* redis.c: connect, authenticate and select over hiredis, with messages
 * that name the server (password masked) and the reason. */
#include "redis.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "log.h"

static struct timeval
tv_ms(int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	return tv;
}

/* AUTH [user] password, then SELECT db; 0 or -1 with err and *code. */
static int
authenticate_and_select(redisContext *c, const struct redis_url *u, char *err,
    size_t errlen, int *code)
{
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
			snprintf(err, errlen, "authentication refused: %s", r->str);
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
		int noauth = strncmp(r->str, "NOAUTH", 6) == 0;
		snprintf(err, errlen, "%s%s", noauth ? "authentication required "
		    "(give a password in the URL): " : "", r->str);
		*code = noauth ? EX_NOPERM : EX_UNAVAILABLE;
		freeReplyObject(r);
		return -1;
	}
	freeReplyObject(r);
	return 0;
}

redisContext *
redis_try_connect(const struct redis_url *u, char *err, size_t errlen, int *code)
{
	redisContext *c;

	/* a server that closed the connection is an error to report, not a
	 * signal to die of (standard output's EPIPE: see die_output) */
	signal(SIGPIPE, SIG_IGN);
	if (u->is_unix)
		c = redisConnectUnixWithTimeout(u->path, tv_ms(REDIS_CONNECT_TIMEOUT_MS));
	else
		c = redisConnectWithTimeout(u->host, u->port, tv_ms(REDIS_CONNECT_TIMEOUT_MS));
	*code = EX_UNAVAILABLE;
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (c->err) {
		snprintf(err, errlen, "%s", c->errstr);
		redisFree(c);
		return NULL;
	}
	if (redisSetTimeout(c, tv_ms(REDIS_COMMAND_TIMEOUT_MS)) != REDIS_OK ||
	    authenticate_and_select(c, u, err, errlen, code) < 0) {
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
	char err[512], shown[1024];
	int code;
	redisContext *c = redis_try_connect(u, err, sizeof err, &code);

	if (!c)
		die(code, "cannot connect to redis at %s: %s",
		    url_display(u, shown, sizeof shown), err);
	return c;
}

void
redis_die_io(redisContext *c, const struct redis_url *u, const char *doing)
{
	char shown[1024];

	die(EX_UNAVAILABLE, "lost the connection to redis at %s while %s: %s",
	    url_display(u, shown, sizeof shown), doing,
	    c->err ? c->errstr : "no reply");
}

redisReply *
redis_command_ok(redisContext *c, const struct redis_url *u, int argc,
    const char **argv)
{
	redisReply *r = redisCommandArgv(c, argc, argv, NULL);
	char shown[1024];

	if (!r)
		redis_die_io(c, u, argv[0]);
	if (r->type == REDIS_REPLY_ERROR)
		die(EX_UNAVAILABLE, "redis at %s refused %s: %s",
		    url_display(u, shown, sizeof shown), argv[0], r->str);
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
