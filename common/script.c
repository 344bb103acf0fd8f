/* script.c: SCRIPT LOAD once, EVALSHA always, reload on NOSCRIPT. */
#include "script.h"

#include <stdio.h>
#include <string.h>

#include "log.h"

int
script_try_load(redisContext *c, struct script *s, char *err, size_t errlen)
{
	redisReply *r = redisCommand(c, "SCRIPT LOAD %s", s->source);

	if (!r || r->type != REDIS_REPLY_STRING || r->len != 40) {
		snprintf(err, errlen, "cannot load the %s script: %s", s->name,
		    !r ? c->errstr : r->type == REDIS_REPLY_ERROR ? r->str :
		    "unexpected reply");
		freeReplyObject(r);
		return -1;
	}
	memcpy(s->sha, r->str, 40);
	s->sha[40] = '\0';
	freeReplyObject(r);
	return 0;
}

void
script_load(redisContext *c, const struct redis_url *u, struct script *s)
{
	char err[512], shown[1024];

	if (script_try_load(c, s, err, sizeof err) < 0)
		die(EX_UNAVAILABLE, "redis at %s: %s", url_display(u, shown,
		    sizeof shown), err);
}

int
script_is_noscript(const redisReply *r)
{
	return r && r->type == REDIS_REPLY_ERROR &&
	    strncmp(r->str, "NOSCRIPT", 8) == 0;
}

void
script_argv(struct script *s, int numkeys, char buf[16], const char **argv,
    size_t *lens)
{
	int n = snprintf(buf, 16, "%d", numkeys);

	argv[0] = "EVALSHA";
	lens[0] = 7;
	argv[1] = s->sha;
	lens[1] = 40;
	argv[2] = buf;
	lens[2] = (size_t)n;
}

redisReply *
script_call(redisContext *c, const struct redis_url *u, struct script *s,
    int argc, const char **argv, size_t *lens)
{
	redisReply *r;

	if (!s->sha[0])
		script_load(c, u, s);
	argv[1] = s->sha;
	r = redisCommandArgv(c, argc, argv, lens);
	if (script_is_noscript(r)) {
		freeReplyObject(r);
		script_load(c, u, s);
		r = redisCommandArgv(c, argc, argv, lens);
	}
	return r;
}
