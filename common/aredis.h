/* aredis.h: an asynchronous Redis connection on a libuv loop (hiredis's
 * libuv adapter) that authenticates, selects, loads the scripts, and
 * reconnects with backoff for as long as it is started. */
#ifndef AQ_AREDIS_H
#define AQ_AREDIS_H

#include <stdint.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <uv.h>

#include "script.h"
#include "url.h"

struct aredis;

/* Told when the connection becomes ready (1: authenticated, database
 * selected, scripts loaded) or is lost (0). Commands whose replies were
 * pending when it was lost get their callback with a NULL reply first. */
typedef void aredis_state_fn(struct aredis *r, int ready, void *ctx);

/* The same refusal of a command is said once in this long at most. */
#define AREDIS_REFUSAL_QUIET_MS 60000

struct aredis {
	uv_loop_t *loop;
	const struct redis_url *url;
	const char *name;             /* what it is for, in messages */
	struct script **scripts;      /* NULL-terminated, loaded on connect */
	aredis_state_fn *on_state;
	void *ctx;
	redisAsyncContext *ac;        /* NULL while disconnected */
	struct url_addr at;           /* the server: the URL's, or the primary
	                               * the sentinels named at the last connect */
	int ready;
	int stopping;
	int backoff_ms;
	int failures;                 /* in a row, for quieter messages */
	char refusal[64];             /* the command refused, said at ... */
	uint64_t refusal_said_ms;     /* ... (uv_now), and since then: */
	unsigned long refusals_unsaid;
	int refused;                  /* handshakes refused in a row */
	int handshake_left;           /* replies awaited before ready */
	int to_sentinels;             /* aredis_to_sentinels: connect to them */
	const char *route;            /* aredis_route: the key served */
	struct url_addr hint;         /* aredis_follow: the next server to try */
	uv_work_t ask;                /* the sentinels, asked off the loop */
	int asking;
	int ask_rc;
	struct url_addr named;        /* their answer */
	char ask_err[URL_NODES_MAX * (URL_HOST_MAX + 300)];
	int next_sentinel;            /* the one to try at the next connect */
	uv_timer_t retry;
};

/* aredis_init: set r up; nothing connects before aredis_start. */
void aredis_init(struct aredis *r, uv_loop_t *loop, const struct redis_url *u,
    const char *name, struct script **scripts, aredis_state_fn *fn, void *ctx);

/* aredis_route: make r (initialised, not started) serve key (a key of its
 * queue): with a cluster URL, it connects to the node serving key's slot,
 * and again after a redirection (MOVED, ASK ...). key must outlive r. */
void aredis_route(struct aredis *r, const char *key);

/* aredis_to_sentinels: make r (initialised, not started) a connection to
 * the sentinels of its URL, not to the primary: each connect tries the
 * next sentinel, without AUTH, SELECT or scripts (for SUBSCRIBE
 * +switch-master). */
void aredis_to_sentinels(struct aredis *r);

/* aredis_start: connect now, and again after every loss, with a backoff
 * from 100 ms to 5 s; losses and recoveries are logged on stderr. */
void aredis_start(struct aredis *r);

/* aredis_stop: disconnect for good (pending callbacks get NULL) and close
 * the retry timer; the loop can then end. */
void aredis_stop(struct aredis *r);

/* aredis_command: send argv; cb(ac, reply, priv) gets the reply, or NULL
 * when the connection is lost first. Returns -1 (cb not called) when r is
 * not ready. */
int aredis_command(struct aredis *r, redisCallbackFn *cb, void *priv, int argc,
    const char **argv, const size_t *lens);

/* aredis_script: aredis_command of the script call a (sealed here). */
int aredis_script(struct aredis *r, redisCallbackFn *cb, void *priv,
    struct script_args *a);

/* aredis_follow: the sentinels announced that primary to is the new one:
 * drop the connection (as aredis_drop, saying why) and reconnect to to,
 * without asking a sentinel (one that has not heard yet would name the
 * old primary); the handshake's ROLE still checks it. */
void aredis_follow(struct aredis *r, const struct url_addr *to, const char *why);

/* aredis_usable: 1 when reply can be used; 0 for NULL (connection lost) or
 * an error reply, which is logged, and for NOSCRIPT (the server forgot the
 * scripts) also makes r reconnect, which loads them again. */
int aredis_usable(struct aredis *r, const redisReply *reply, const char *what);

/* aredis_drop: give the connection up (as if lost) and reconnect; for a
 * server that stopped answering. */
void aredis_drop(struct aredis *r, const char *why);

#endif
