/* script.h: the Lua scripts of aq (common/lua/NAME.lua, embedded at build
 * time), loaded once per connection and called by EVALSHA, reloaded on
 * NOSCRIPT (after a Redis restart or SCRIPT FLUSH). */
#ifndef AQ_SCRIPT_H
#define AQ_SCRIPT_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#include "keys.h"
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
extern struct script script_retry;
extern struct script script_queue;

/* script_load: SCRIPT LOAD s into the server of c and remember its sha;
 * exits EX_UNAVAILABLE (naming the script and server) on failure. */
void script_load(redisContext *c, const struct redis_url *u, struct script *s);

/* script_try_load: script_load that reports instead of exiting: 0, or -1
 * with the reason in err. */
int script_try_load(redisContext *c, struct script *s, char *err, size_t errlen);

/* script_is_noscript: 1 when r is the NOSCRIPT error reply */
int script_is_noscript(const redisReply *r);

/*
 * Counts a script and its C callers share. Each is a local of the same name
 * in the script (common/lua/NAME.lua) that the script uses; tests/unit.c
 * reads them from the embedded scripts and fails when the two differ.
 */
#define REPORT_FIELDS 7       /* work.lua: ARGV per report */
#define CLAIM_FIELDS 6        /* work.lua: values per claimed job it returns */
#define WORK_REPLY_VALUES 5   /* work.lua: values it returns */
#define EVENT_FIXED_ARGS 3    /* event.lua: ARGV before the lines */
#define EVENT_LINE_FIELDS 2   /* event.lua: ARGV per line: type, data */
#define RENEW_FIXED_ARGS 10   /* renew.lua: ARGV before the jobs held */
#define RESTORE_FIELDS 9      /* restore.lua: ARGV per job */
#define HEALTH_FIGURES 15     /* health.lua: values it returns */
#define QUEUE_FIGURES 8       /* queue.lua: values pause, resume, limit, show return */

/*
 * A script call being built: "EVALSHA sha numkeys KEYS... ARGV...". Keys
 * come first; numkeys is counted, and the sha and numkeys are filled in
 * when the call is sent. All zeros is an empty builder. script_args_begin
 * starts a call and keeps the memory of the last one, so a builder reused
 * on a hot path stops allocating; script_args_free frees it. The words of
 * key, arg and argn are the caller's and must outlive the sending; those
 * of argll and argcopy are copied into the builder.
 */
struct script_args {
	struct script *script;
	const char **argv;
	size_t *lens;
	size_t *stored;             /* per word: its offset in store, or SIZE_MAX */
	int argc, cap, numkeys;
	char *store;                /* the words of argll and argcopy */
	size_t store_len, store_cap;
	char numkeys_text[16];
};

void script_args_begin(struct script_args *a, struct script *s);
void script_args_key(struct script_args *a, const char *key);
void script_args_keys(struct script_args *a, const char *const *keys, int n);
/* script_args_queue_keys: the KEYS_SCRIPT keys of keys_script_argv */
void script_args_queue_keys(struct script_args *a, const struct keys *k);
void script_args_arg(struct script_args *a, const char *s);
void script_args_argn(struct script_args *a, const char *s, size_t n);
void script_args_argll(struct script_args *a, long long v);
void script_args_argcopy(struct script_args *a, const char *s, size_t n);

/* script_args_nargs: the ARGV given so far. */
int script_args_nargs(const struct script_args *a);

/* script_args_seal: fill in the sha and numkeys; returns argc, and a->argv
 * and a->lens are the call as hiredis takes it (until a changes). */
int script_args_seal(struct script_args *a);

void script_args_free(struct script_args *a);

/* script_call: run the call a synchronously, loading its script first when
 * needed and again on NOSCRIPT (exiting like script_load when it cannot).
 * Returns the reply, NULL on a dead connection (c->err tells why); an
 * error reply is the caller's to judge. */
redisReply *script_call(redisContext *c, const struct redis_url *u,
    struct script_args *a);

/* script_call_array: script_call for a tool that ends when Redis fails:
 * the reply, an array of at least min elements. Exits EX_UNAVAILABLE
 * otherwise, naming the server, the script and what was being done
 * (doing: "cancelling jobs of queue q"). */
redisReply *script_call_array(redisContext *c, const struct redis_url *u,
    struct script_args *a, size_t min, const char *doing);

/* script_try_call: script_call that reports instead of exiting: NULL with
 * the reason in err when the script cannot be loaded, NULL with err empty
 * on a dead connection. */
redisReply *script_try_call(redisContext *c, struct script_args *a, char *err,
    size_t errlen);

/* script_append: pipeline the call a (its script must be loaded); the
 * reply is read with redisGetReply. REDIS_OK or REDIS_ERR. */
int script_append(redisContext *c, struct script_args *a);

#endif
