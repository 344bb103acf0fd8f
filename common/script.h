/* script.h: the Lua scripts of aq (common/lua/NAME.lua, embedded at build
 * time), loaded once per connection and called by EVALSHA, reloaded on
 * NOSCRIPT (after a Redis restart or SCRIPT FLUSH). */
#ifndef AQ_SCRIPT_H
#define AQ_SCRIPT_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#include "url.h"

struct script {
	const char *name;
	const char *source;
	char sha[41]; /* set by script_load */
};

/* One per file in common/lua/, defined in the generated build/scripts.c. */
extern struct script script_enqueue;
extern struct script script_cancel;
extern struct script script_work;
extern struct script script_renew;
extern struct script script_event;
extern struct script script_sweep;
extern struct script script_health;
extern struct script script_archive;
extern struct script script_restore;

/* script_load: SCRIPT LOAD s into the server of c and remember its sha;
 * exits EX_UNAVAILABLE (naming the script and server) on failure. */
void script_load(redisContext *c, const struct redis_url *u, struct script *s);

/* script_try_load: script_load that reports instead of exiting: 0, or -1
 * with the reason in err. */
int script_try_load(redisContext *c, struct script *s, char *err, size_t errlen);

/* script_is_noscript: 1 when r is the NOSCRIPT error reply */
int script_is_noscript(const redisReply *r);

/* script_argv: the first two words of an EVALSHA of s with numkeys keys:
 * argv[0] = "EVALSHA", argv[1] = sha, argv[2] = numkeys (in buf). The caller
 * fills argv[3...] with keys then arguments. */
void script_argv(struct script *s, int numkeys, char buf[16],
    const char **argv, size_t *lens);

/* script_call: EVALSHA s synchronously, loading it first when needed and
 * again on NOSCRIPT; argv/lens hold "EVALSHA sha numkeys keys... args..."
 * as script_argv prepared them. Returns the reply, NULL on a dead
 * connection (c->err tells why); an error reply is the caller's to judge. */
redisReply *script_call(redisContext *c, const struct redis_url *u,
    struct script *s, int argc, const char **argv, size_t *lens);

#endif
