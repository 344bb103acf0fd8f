/* script.c: SCRIPT LOAD once, EVALSHA always, reload on NOSCRIPT; the
 * builder of script calls. */
#include "script.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "redis.h"

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

/* ---- the builder ------------------------------------------------------ */

#define EXTERNAL SIZE_MAX

/* Room for one more word. */
static void
grow(struct script_args *a)
{
	if (a->argc < a->cap)
		return;
	a->cap = a->cap ? a->cap * 2 : 32;
	a->argv = xrealloc(a->argv, (size_t)a->cap * sizeof *a->argv);
	a->lens = xrealloc(a->lens, (size_t)a->cap * sizeof *a->lens);
	a->stored = xrealloc(a->stored, (size_t)a->cap * sizeof *a->stored);
}

static void
push(struct script_args *a, const char *s, size_t n, size_t stored)
{
	grow(a);
	a->argv[a->argc] = s;
	a->lens[a->argc] = n;
	a->stored[a->argc++] = stored;
}

/* Copy s[0..n) into the store; its offset (the store may move). */
static size_t
store(struct script_args *a, const char *s, size_t n)
{
	size_t at = a->store_len;

	a->store = xgrow(a->store, &a->store_cap, a->store_len + n, 256, 1);
	if (n > 0)
		memcpy(a->store + at, s, n);
	a->store_len += n;
	return at;
}

void
script_args_begin(struct script_args *a, struct script *s)
{
	a->script = s;
	a->argc = a->numkeys = 0;
	a->store_len = 0;
	push(a, "EVALSHA", 7, EXTERNAL);
	push(a, "", 0, EXTERNAL);     /* the sha, when sealed */
	push(a, "", 0, EXTERNAL);     /* numkeys, when sealed */
}

void
script_args_key(struct script_args *a, const char *key)
{
	if (a->argc != 3 + a->numkeys)
		die(EX_SOFTWARE, "the %s script call: key %s after an argument",
		    a->script->name, key);
	push(a, key, strlen(key), EXTERNAL);
	a->numkeys++;
}

void
script_args_keys(struct script_args *a, const char *const *keys, int n)
{
	for (int i = 0; i < n; i++)
		script_args_key(a, keys[i]);
}

void
script_args_queue_keys(struct script_args *a, const struct keys *k)
{
	const char *keys[KEYS_SCRIPT];

	script_args_keys(a, keys, keys_script_argv(k, keys));
}

void
script_args_arg(struct script_args *a, const char *s)
{
	push(a, s, strlen(s), EXTERNAL);
}

void
script_args_argn(struct script_args *a, const char *s, size_t n)
{
	push(a, s, n, EXTERNAL);
}

void
script_args_argcopy(struct script_args *a, const char *s, size_t n)
{
	size_t at = store(a, s, n);

	push(a, NULL, n, at);
}

void
script_args_argll(struct script_args *a, long long v)
{
	char text[24];
	int n = snprintf(text, sizeof text, "%lld", v);

	script_args_argcopy(a, text, (size_t)n);
}

int
script_args_nargs(const struct script_args *a)
{
	return a->argc - 3 - a->numkeys;
}

int
script_args_seal(struct script_args *a)
{
	int n = snprintf(a->numkeys_text, sizeof a->numkeys_text, "%d", a->numkeys);

	a->argv[1] = a->script->sha;
	a->lens[1] = strlen(a->script->sha);
	a->argv[2] = a->numkeys_text;
	a->lens[2] = (size_t)n;
	for (int i = 3; i < a->argc; i++)
		if (a->stored[i] != EXTERNAL)
			a->argv[i] = a->store + a->stored[i];
	return a->argc;
}

void
script_args_free(struct script_args *a)
{
	free(a->argv);
	free(a->lens);
	free(a->stored);
	free(a->store);
	memset(a, 0, sizeof *a);
}

/* ---- sending ---------------------------------------------------------- */

redisReply *
script_try_call(redisContext *c, struct script_args *a, char *err, size_t errlen)
{
	redisReply *r;

	err[0] = '\0';
	if (!a->script->sha[0] && script_try_load(c, a->script, err, errlen) < 0)
		return NULL;
	r = redisCommandArgv(c, script_args_seal(a), a->argv, a->lens);
	if (script_is_noscript(r)) {
		freeReplyObject(r);
		if (script_try_load(c, a->script, err, errlen) < 0)
			return NULL;
		r = redisCommandArgv(c, script_args_seal(a), a->argv, a->lens);
	}
	return r;
}

redisReply *
script_call(redisContext *c, const struct redis_url *u, struct script_args *a)
{
	char err[512], shown[1024];
	redisReply *r = script_try_call(c, a, err, sizeof err);
	int tries = 0;

	while (redis_follow(c, u, r, &tries)) {
		freeReplyObject(r);
		r = script_try_call(c, a, err, sizeof err);
	}

	if (!r && err[0])
		die(EX_UNAVAILABLE, "redis at %s: %s", url_display(u, shown,
		    sizeof shown), err);
	return r;
}

redisReply *
script_call_array(redisContext *c, const struct redis_url *u,
    struct script_args *a, size_t min, const char *doing)
{
	redisReply *r = script_call(c, u, a);
	char shown[1024];

	if (!r)
		redis_die_io(c, u, doing);
	if (r->type != REDIS_REPLY_ARRAY || r->elements < min)
		die(EX_UNAVAILABLE, "redis at %s refused the %s script while %s: %s",
		    url_display(u, shown, sizeof shown), a->script->name, doing,
		    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
	return r;
}

int
script_append(redisContext *c, struct script_args *a)
{
	return redisAppendCommandArgv(c, script_args_seal(a), a->argv, a->lens);
}
