/* aq-health: how Redis, the PostgreSQL ledger and the queues are, as one
 * JSON document (or the Prometheus text format), with thresholds that give
 * monitoring-plugin exit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. */
#include <getopt.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archive.h"
#include "clock.h"
#include "cluster.h"
#include "config.h"
#include "flow.h"
#include "id.h"
#include "json.h"
#include "keys.h"
#include "ledger.h"
#include "log.h"
#include "mem.h"
#include "redis.h"
#include "script.h"

#define ALERTS_MAX 64

enum level { OK, WARNING, CRITICAL, UNKNOWN };
static const char *level_names[] = {"OK", "WARNING", "CRITICAL", "UNKNOWN"};

enum { OPT_WORKERS = OPT_TOOL, OPT_PROMETHEUS, OPT_WARN_DEPTH, OPT_CRIT_DEPTH,
	OPT_WARN_AGE, OPT_CRIT_AGE, OPT_WARN_WORKERS, OPT_CRIT_WORKERS,
	OPT_WARN_ARCHIVE_LAG, OPT_CRIT_ARCHIVE_LAG };

static const char *counters[] = {"enqueued", "succeeded", "failed", "retried",
	"recovered", "cancelled"};
#define NCOUNTERS (sizeof counters / sizeof counters[0])

/* A Redis server: the one of the URL, or a primary of the cluster. */
struct node {
	struct url_addr at;          /* a primary of the cluster */
	unsigned slots;              /* the slots it serves */
	redisContext *c;
	int reachable;
	char why[REDIS_ERR_MAX];     /* when not reachable */
	double latency_ms;
	char version[32];
	long long used_memory;
	int cluster_fail;            /* CLUSTER INFO says cluster_state:fail */
	int script_loaded;
};

struct figures {
	const char *queue;
	long long waiting, delayed, active, workers, oldest_ms, now_ms;
	long long count[NCOUNTERS];
	long long unarchived;        /* finished, waiting for the ledger */
	long long log_lag;           /* log entries the archive has not read:
	                              * -1 no archive, -2 unknown */
	long long paused;            /* 1 while aq-queue pause holds it */
	long long blocked;           /* jobs waiting for their parents */
	struct flow_state flow;      /* limits, throttle hold (aq-queue limit) */
	struct node *node;           /* where its keys are */
	redisReply *worker_list;     /* --workers: ids, then HGETALL replies */
	redisReply **worker_info;
};

/* A threshold pair: alert when the value is above (or, for workers, below). */
struct limits {
	long long warn, crit;        /* -1: not set */
};

struct health {
	struct config cfg;
	const char *queues[QUEUES_MAX];
	int nqueues;
	int list_workers, prometheus;
	struct limits depth, age_ms, workers, archive_lag;
	struct node *nodes;          /* one, or a cluster's primaries */
	int nnodes;
	struct cluster_map map;      /* with a cluster URL */
	struct ledger ledger;        /* with --database-url */
	int ledger_up;
	double ledger_latency_ms;
	int reachable;               /* every node answered */
	char why[REDIS_ERR_MAX];     /* when not: the map's or the node's */
	struct figures *fig;
	int nfig;
	const char **unread;         /* queues whose node did not answer */
	int nunread;
	enum level level;
	char alerts[ALERTS_MAX][REDIS_ERR_MAX + 256];
	int nalerts;
	struct jbuf out;
};

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: aq-health [-q queue ...] [-u url | --redis-url-file path] [--prefix p]\n"
	    "                 [--workers] [--prometheus] [--warn-depth n] [--crit-depth n]\n"
	    "                 [--warn-age duration] [--crit-age duration]\n"
	    "                 [--warn-workers n] [--crit-workers n]\n"
	    "                 [--database-url url | --database-url-file path]\n"
	    "                 [--warn-archive-lag n] [--crit-archive-lag n]\n");
}

static void
alert(struct health *h, enum level l, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
alert(struct health *h, enum level l, const char *fmt, ...)
{
	va_list ap;

	if (l > h->level)
		h->level = l;
	if (h->nalerts == ALERTS_MAX)
		return;
	va_start(ap, fmt);
	vsnprintf(h->alerts[h->nalerts++], sizeof h->alerts[0], fmt, ap);
	va_end(ap);
}

/* ---- gathering -------------------------------------------------------- */

/* A reply, or NULL after marking Redis unreachable with the reason. */
/* Node n failed, and why: on a cluster, the node is named first, as the
 * messages of a connection to a node are. */
static void node_failed(struct node *n, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
node_failed(struct node *n, const char *fmt, ...)
{
	va_list ap;
	size_t off = 0;

	if (n->at.port) /* a node of a cluster */
		off = (size_t)snprintf(n->why, sizeof n->why, "%s:%d, a node of the "
		    "cluster: ", n->at.host, n->at.port);
	if (off < sizeof n->why) {
		va_start(ap, fmt);
		vsnprintf(n->why + off, sizeof n->why - off, fmt, ap);
		va_end(ap);
	}
	n->reachable = 0;
}

/* A reply of node n, or NULL (an error): n is then unreachable, and why. */
static redisReply *
ask(struct node *n, int argc, const char **argv)
{
	redisReply *r;

	if (!n->reachable)
		return NULL;
	r = redisCommandArgv(n->c, argc, argv, NULL);
	if (!r || r->type == REDIS_REPLY_ERROR) {
		node_failed(n, "%s failed: %s", argv[0], r ? r->str : n->c->errstr);
		freeReplyObject(r);
		return NULL;
	}
	return r;
}

static long long
info_number(const char *info, const char *field)
{
	const char *p = strstr(info, field);

	return p ? atoll(p + strlen(field)) : -1;
}

/* Connect to n and read its figures: PING's round trip, version, memory
 * and, on a cluster, whether it sees the cluster failed. */
static void
check_node(struct health *h, struct node *n)
{
	char err[REDIS_ERR_MAX];
	int code;
	double t0;
	const char *ping[] = {"PING"}, *info[] = {"INFO", "server"},
	    *mem[] = {"INFO", "memory"}, *cluster[] = {"CLUSTER", "INFO"};
	redisReply *r;

	if (h->cfg.redis.kind == URL_CLUSTER)
		n->c = redis_try_connect_at(&h->cfg.redis, &n->at, err, sizeof err, &code);
	else
		n->c = redis_try_connect(&h->cfg.redis, err, sizeof err, &code);
	if (!n->c) {
		snprintf(n->why, sizeof n->why, "%s", err);
		return;
	}
	n->reachable = 1;
	t0 = clock_mono_exact_ms();
	if (!(r = ask(n, 1, ping)))
		return;
	n->latency_ms = clock_mono_exact_ms() - t0;
	freeReplyObject(r);
	if (!(r = ask(n, 2, info)))
		return;
	const char *v = strstr(r->str, "redis_version:");
	if (v)
		snprintf(n->version, sizeof n->version, "%.*s",
		    (int)strcspn(v + 14, "\r\n"), v + 14);
	freeReplyObject(r);
	if (!(r = ask(n, 2, mem)))
		return;
	n->used_memory = info_number(r->str, "used_memory:");
	freeReplyObject(r);
	if (h->cfg.redis.kind == URL_CLUSTER && (r = ask(n, 2, cluster))) {
		n->cluster_fail = strstr(r->str, "cluster_state:fail") != NULL;
		freeReplyObject(r);
	}
}

/* The primaries of the cluster, from its slot map, with their slots. */
static void
list_nodes(struct health *h)
{
	for (size_t i = 0; i < h->map.n; i++) {
		const struct cluster_range *r = &h->map.ranges[i];
		int k = 0;
		while (k < h->nnodes && !url_addr_equal(&h->nodes[k].at, &r->primary))
			k++;
		if (k == h->nnodes) {
			h->nodes = xrealloc(h->nodes, (size_t)(k + 1) * sizeof *h->nodes);
			memset(&h->nodes[k], 0, sizeof h->nodes[k]);
			h->nodes[k].at = r->primary;
			h->nnodes++;
		}
		h->nodes[k].slots += r->hi - r->lo + 1;
	}
}

/* Redis is reachable while every node is; why not is the first one's
 * reason (a cluster's, naming the node). */
static void
note_unreachable(struct health *h)
{
	for (int i = 0; i < h->nnodes && h->reachable; i++) {
		const struct node *n = &h->nodes[i];
		if (n->reachable)
			continue;
		h->reachable = 0;
		snprintf(h->why, sizeof h->why, "%s", n->why);
	}
}

/* The node of key (any key of a queue, or PREFIX:queues): the one server,
 * or the primary serving its slot; NULL when none does. */
static struct node *
node_of(struct health *h, const char *key)
{
	const struct url_addr *a;

	if (h->cfg.redis.kind != URL_CLUSTER)
		return h->nnodes ? &h->nodes[0] : NULL;
	if (!(a = cluster_map_node(&h->map, cluster_key_slot(key, strlen(key)))))
		return NULL;
	for (int i = 0; i < h->nnodes; i++)
		if (url_addr_equal(&h->nodes[i].at, a))
			return &h->nodes[i];
	return NULL;
}

/* Every server: the URL's, or each primary of the cluster's map. Redis is
 * reachable when all of them answered. */
static void
check_redis(struct health *h)
{
	if (h->cfg.redis.kind == URL_CLUSTER) {
		if (cluster_map_read(&h->cfg.redis, &h->map, h->why, sizeof h->why) < 0)
			return;
		list_nodes(h);
	} else {
		h->nodes = xcalloc(1, sizeof *h->nodes);
		h->nnodes = 1;
	}
	h->reachable = 1;
	for (int i = 0; i < h->nnodes; i++)
		check_node(h, &h->nodes[i]);
	note_unreachable(h);
}

/* The ledger answers (a connection and a query), or why not in its err. */
static void
check_ledger(struct health *h)
{
	int code;
	double t0 = clock_mono_exact_ms();

	if (!h->cfg.database_url)
		return;
	if (ledger_connect(&h->ledger, h->cfg.database_url, &code) < 0)
		return;
	if (ledger_run(&h->ledger, "querying", "SELECT 1") < 0)
		return;
	h->ledger_latency_ms = clock_mono_exact_ms() - t0;
	h->ledger_up = 1;
}

static void
list_queues(struct health *h)
{
	struct keys k;
	const char *argv[2] = {"SMEMBERS", k.queues};
	struct node *n;
	redisReply *r;

	if (h->nqueues > 0)
		return;
	keys_init(&k, h->cfg.prefix, "x");
	if (!(n = node_of(h, k.queues))) {
		alert(h, CRITICAL, "no node of the cluster serves %s: the queues "
		    "are not known", k.queues);
		return;
	}
	if (!(r = ask(n, 2, argv))) {
		if (h->cfg.redis.kind == URL_CLUSTER)
			alert(h, CRITICAL, "the queues are not known: %s is on node "
			    "%s:%d, which does not answer (-q names them)", k.queues,
			    n->at.host, n->at.port);
		return;
	}
	if (r->elements > QUEUES_MAX)
		alert(h, WARNING, "%zu queues: only %d are looked at", r->elements,
		    QUEUES_MAX);
	for (size_t i = 0; i < r->elements && h->nqueues < QUEUES_MAX; i++)
		if (queue_valid(r->element[i]->str))
			h->queues[h->nqueues++] = xstrdup(r->element[i]->str);
	freeReplyObject(r);
}

static void
read_figures(struct figures *f, const redisReply *r)
{
	long long *v[] = {&f->waiting, &f->delayed, &f->active, &f->workers,
	    &f->oldest_ms, &f->now_ms};
	const redisReply *stats = r->element[6];

	for (int i = 0; i < 6; i++)
		*v[i] = r->element[i]->integer;
	f->unarchived = r->element[7]->integer;
	f->log_lag = r->element[8]->integer;
	f->paused = r->element[9]->integer;
	f->blocked = r->element[10]->integer;
	f->flow.rate = r->element[11]->integer;
	f->flow.period_ms = r->element[12]->integer;
	f->flow.concurrency = r->element[13]->integer;
	f->flow.throttled_ms = r->element[14]->integer;
	for (size_t i = 0; i + 1 < stats->elements; i += 2)
		for (size_t c = 0; c < NCOUNTERS; c++)
			if (strcmp(stats->element[i]->str, counters[c]) == 0)
				f->count[c] = atoll(stats->element[i + 1]->str);
}

/* The live workers of a queue and their registration hashes. */
static void
read_workers(struct health *h, struct figures *f)
{
	struct keys k;
	char now[24], key[KEY_MAX + ID_MAX];
	const char *argv[] = {"ZRANGEBYSCORE", k.workers, now, "+inf"};

	keys_init(&k, h->cfg.prefix, f->queue);
	snprintf(now, sizeof now, "%lld", f->now_ms);
	if (!(f->worker_list = ask(f->node, 4, argv)))
		return;
	f->worker_info = xcalloc(f->worker_list->elements + 1, sizeof *f->worker_info);
	for (size_t i = 0; i < f->worker_list->elements; i++) {
		const char *hget[] = {"HGETALL", key};
		keys_worker(&k, f->worker_list->element[i]->str, key, sizeof key);
		if (!(f->worker_info[i] = ask(f->node, 2, hget)))
			return;
	}
}

static int
cmp_queue(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The figures of queue from health.lua, loaded again on NOSCRIPT; as
 * script_try_call, NULL with err set when it could not be loaded. */
static redisReply *
call_health(struct health *h, struct node *n, struct script_args *a,
    const char *queue, char *err, size_t errlen)
{
	struct keys k;

	keys_init(&k, h->cfg.prefix, queue);
	script_args_begin(a, &script_health);
	script_args_queue_keys(a, &k);
	script_args_arg(a, k.base);
	script_args_arg(a, ARCHIVE_GROUP);
	return script_try_call(n->c, a, err, errlen);
}

/* The figures of queue from its node, into f; -1 when there are none
 * (the node failed: unreachable, why said; or an unexpected reply: alert). */
static int
read_queue(struct health *h, struct node *n, struct script_args *call,
    const char *queue, struct figures *f)
{
	char err[512];
	redisReply *r;

	if (!n->script_loaded) {
		if (script_try_load(n->c, &script_health, err, sizeof err) < 0) {
			node_failed(n, "%s", err);
			return -1;
		}
		n->script_loaded = 1;
	}
	r = call_health(h, n, call, queue, err, sizeof err);
	if (r && r->type == REDIS_REPLY_ARRAY && r->elements != HEALTH_FIGURES) {
		alert(h, UNKNOWN, "queue %s: unexpected reply from the health "
		    "script", queue);
		freeReplyObject(r);
		return -1;
	}
	if (!r || r->type != REDIS_REPLY_ARRAY) {
		if (!r && err[0]) /* it could not be loaded again */
			node_failed(n, "%s", err);
		else
			node_failed(n, "the health script failed: %s",
			    r && r->type == REDIS_REPLY_ERROR ? r->str : n->c->errstr);
		freeReplyObject(r);
		return -1;
	}
	f->queue = queue;
	f->node = n;
	read_figures(f, r);
	freeReplyObject(r);
	return 0;
}

/* The figures of every queue whose node answers. On a cluster, a queue
 * whose node does not is named in an alert; on one server, the alert
 * about Redis says it all. */
static void
check_queues(struct health *h)
{
	struct script_args call = {0};
	struct keys k;

	if (h->nqueues == 0) { /* all of them: in a stable order */
		list_queues(h);
		qsort(h->queues, (size_t)h->nqueues, sizeof h->queues[0], cmp_queue);
	}
	h->fig = xcalloc((size_t)h->nqueues + 1, sizeof *h->fig);
	h->unread = xcalloc((size_t)h->nqueues + 1, sizeof *h->unread);
	for (int i = 0; i < h->nqueues; i++) {
		struct node *n;
		keys_init(&k, h->cfg.prefix, h->queues[i]);
		n = node_of(h, k.base);
		if (n && n->reachable &&
		    read_queue(h, n, &call, h->queues[i], &h->fig[h->nfig]) == 0) {
			if (h->list_workers)
				read_workers(h, &h->fig[h->nfig]);
			h->nfig++;
		} else if (!n || !n->reachable) {
			h->unread[h->nunread++] = h->queues[i];
		}
	}
	script_args_free(&call);
	note_unreachable(h);
}

/* ---- judging ---------------------------------------------------------- */

static void
judge_above(struct health *h, const char *queue, const char *what,
    long long value, const struct limits *l, const char *unit)
{
	if (l->crit >= 0 && value > l->crit)
		alert(h, CRITICAL, "queue %s: %s %lld%s (critical above %lld%s)", queue,
		    what, value, unit, l->crit, unit);
	else if (l->warn >= 0 && value > l->warn)
		alert(h, WARNING, "queue %s: %s %lld%s (warning above %lld%s)", queue,
		    what, value, unit, l->warn, unit);
}

/* ms as seconds for people: whole from 10 s up or when exact, else 0.1 s */
static const char *
seconds(long long ms, char *buf, size_t len)
{
	if (ms >= 10000 || ms % 1000 == 0)
		snprintf(buf, len, "%llds", (ms + (ms % 1000 == 0 ? 0 : 500)) / 1000);
	else
		snprintf(buf, len, "%.1fs", (double)ms / 1000);
	return buf;
}

/* The oldest waiting age against --warn-age/--crit-age, to the ms. */
static void
judge_age(struct health *h, const struct figures *f)
{
	char age[32], lim[32];
	const long long *limit = NULL;
	enum level l = OK;

	if (h->age_ms.crit >= 0 && f->oldest_ms > h->age_ms.crit)
		limit = &h->age_ms.crit, l = CRITICAL;
	else if (h->age_ms.warn >= 0 && f->oldest_ms > h->age_ms.warn)
		limit = &h->age_ms.warn, l = WARNING;
	if (limit)
		alert(h, l, "queue %s: oldest waiting %s (%s above %s)", f->queue,
		    seconds(f->oldest_ms, age, sizeof age),
		    l == CRITICAL ? "critical" : "warning", seconds(*limit, lim, sizeof lim));
}

/* What the ledger has yet to archive: finished jobs, plus log entries not
 * read (when known). */
static long long
archive_lag(const struct figures *f)
{
	return f->unarchived + (f->log_lag > 0 ? f->log_lag : 0);
}

/* A cluster: each primary that does not answer or sees the cluster
 * failed, and slots no primary serves, are critical. */
static void
judge_cluster(struct health *h)
{
	char shown[1024];
	unsigned served = 0;

	url_display(&h->cfg.redis, shown, sizeof shown);
	for (int i = 0; i < h->nnodes; i++) {
		const struct node *n = &h->nodes[i];
		served += n->slots;
		if (!n->reachable)
			alert(h, CRITICAL, "redis at %s: %s (%u slots)", shown, n->why,
			    n->slots);
		else if (n->cluster_fail)
			alert(h, CRITICAL, "redis at %s: node %s:%d says "
			    "cluster_state:fail (CLUSTER INFO)", shown, n->at.host,
			    n->at.port);
	}
	for (int i = 0; i < h->nunread; i++) {
		struct keys k;
		const struct node *n;
		keys_init(&k, h->cfg.prefix, h->unread[i]);
		if ((n = node_of(h, k.base)))
			alert(h, CRITICAL, "queue %s: no figures: its node %s:%d "
			    "does not answer", h->unread[i], n->at.host, n->at.port);
		else
			alert(h, CRITICAL, "queue %s: no figures: no node of the "
			    "cluster serves its slot", h->unread[i]);
	}
	if (served < CLUSTER_SLOTS)
		alert(h, CRITICAL, "redis at %s: %u of %d slots are served by no "
		    "node (CLUSTER SLOTS): their queues cannot be used", shown,
		    CLUSTER_SLOTS - served, CLUSTER_SLOTS);
}

static void
judge(struct health *h)
{
	char shown[1024];

	if (h->cfg.database_url && !h->ledger_up)
		alert(h, CRITICAL, "postgresql ledger at %s: %s", h->ledger.shown,
		    h->ledger.err);
	if (h->cfg.redis.kind == URL_CLUSTER && h->nnodes > 0)
		judge_cluster(h);
	else if (!h->reachable) {
		alert(h, CRITICAL, "redis at %s: %s", url_display(&h->cfg.redis, shown,
		    sizeof shown), h->why);
		return;
	}
	for (int i = 0; i < h->nfig; i++) {
		const struct figures *f = &h->fig[i];
		judge_above(h, f->queue, "waiting", f->waiting, &h->depth, "");
		if (h->cfg.database_url)
			judge_above(h, f->queue, "archive lag", archive_lag(f),
			    &h->archive_lag, " jobs and log entries");
		if (f->oldest_ms >= 0)
			judge_age(h, f);
		if (h->workers.crit >= 0 && f->workers < h->workers.crit)
			alert(h, CRITICAL, "queue %s: %lld live worker%s (critical below %lld)",
			    f->queue, f->workers, f->workers == 1 ? "" : "s", h->workers.crit);
		else if (h->workers.warn >= 0 && f->workers < h->workers.warn)
			alert(h, WARNING, "queue %s: %lld live worker%s (warning below %lld)",
			    f->queue, f->workers, f->workers == 1 ? "" : "s", h->workers.warn);
	}
}

/* ---- JSON ------------------------------------------------------------- */

static void
json_hash_fields(struct jbuf *b, const redisReply *hash)
{
	for (size_t i = 0; hash && i + 1 < hash->elements; i += 2) {
		const char *k = hash->element[i]->str, *v = hash->element[i + 1]->str;
		if (strcmp(k, "queue") == 0)
			continue; /* written already, from where it was found */
		jb_key(b, k);
		if (strcmp(k, "started") == 0 || strcmp(k, "heartbeat") == 0)
			jb_millis(b, atoll(v));
		else if (strcmp(k, "pid") == 0 || strcmp(k, "jobs") == 0)
			jb_int(b, atoll(v));
		else
			jb_str(b, v, strlen(v));
	}
}

static void
json_workers(struct health *h)
{
	struct jbuf *b = &h->out;

	jb_key(b, "workers");
	jb_raw(b, "[", 1);
	int first = 1;
	for (int i = 0; i < h->nfig; i++) {
		const struct figures *f = &h->fig[i];
		for (size_t w = 0; f->worker_list && w < f->worker_list->elements; w++) {
			if (!first)
				jb_raw(b, ",", 1);
			first = 0;
			jb_obj_begin(b);
			jb_kstr(b, "id", f->worker_list->element[w]->str);
			jb_kstr(b, "queue", f->queue);
			json_hash_fields(b, f->worker_info ? f->worker_info[w] : NULL);
			jb_obj_end(b);
		}
	}
	jb_raw(b, "]", 1);
}

static void
json_queue(struct jbuf *b, const struct figures *f)
{
	jb_obj_begin(b);
	jb_kstr(b, "queue", f->queue);
	jb_kint(b, "waiting", f->waiting);
	jb_kint(b, "delayed", f->delayed);
	jb_kint(b, "blocked", f->blocked);
	jb_kint(b, "active", f->active);
	jb_key(b, "oldest_waiting_s");
	if (f->oldest_ms >= 0)
		jb_millis(b, f->oldest_ms);
	else
		jb_null(b);
	jb_kint(b, "workers", f->workers);
	jb_key(b, "paused");
	jb_bool(b, f->paused);
	flow_json(b, &f->flow, 1);
	for (size_t c = 0; c < NCOUNTERS; c++)
		jb_kint(b, counters[c], f->count[c]);
	jb_kint(b, "unarchived", f->unarchived);
	jb_key(b, "archive_log_lag");
	if (f->log_lag >= 0)
		jb_int(b, f->log_lag);
	else
		jb_null(b);
	jb_obj_end(b);
}

static void
json_ledger(struct health *h)
{
	struct jbuf *b = &h->out;
	char ms[32];

	jb_key(b, "postgres");
	if (!h->cfg.database_url) {
		jb_null(b); /* no ledger */
		return;
	}
	jb_obj_begin(b);
	jb_kstr(b, "url", h->ledger.shown);
	jb_key(b, "reachable");
	jb_bool(b, h->ledger_up);
	if (h->ledger_up) {
		snprintf(ms, sizeof ms, "%.3f", h->ledger_latency_ms);
		jb_key(b, "latency_ms");
		jb_raw(b, ms, strlen(ms));
	} else {
		jb_kstr(b, "error", h->ledger.err);
	}
	jb_obj_end(b);
}

static void
json_node_figures(struct jbuf *b, const struct node *n)
{
	char ms[32];

	snprintf(ms, sizeof ms, "%.3f", n->latency_ms);
	jb_key(b, "latency_ms");
	jb_raw(b, ms, strlen(ms));
	jb_kstr(b, "version", n->version);
	jb_kint(b, "used_memory", n->used_memory);
}

/* A cluster's primaries: "nodes":[{"node","slots","reachable",...}]. */
static void
json_nodes(struct health *h)
{
	struct jbuf *b = &h->out;
	char addr[URL_HOST_MAX + 16];

	jb_key(b, "nodes");
	jb_raw(b, "[", 1);
	for (int i = 0; i < h->nnodes; i++) {
		const struct node *n = &h->nodes[i];
		if (i)
			jb_raw(b, ",", 1);
		jb_obj_begin(b);
		snprintf(addr, sizeof addr, "%s:%d", n->at.host, n->at.port);
		jb_kstr(b, "node", addr);
		jb_kint(b, "slots", n->slots);
		jb_key(b, "reachable");
		jb_bool(b, n->reachable);
		if (n->reachable) {
			json_node_figures(b, n);
			jb_kstr(b, "cluster_state", n->cluster_fail ? "fail" : "ok");
		} else {
			jb_kstr(b, "error", n->why);
		}
		jb_obj_end(b);
	}
	jb_raw(b, "]", 1);
}

static void
print_json(struct health *h)
{
	struct jbuf *b = &h->out;
	char shown[1024];

	jb_obj_begin(b);
	jb_kstr(b, "status", level_names[h->level]);
	jb_key(b, "redis");
	jb_obj_begin(b);
	jb_kstr(b, "url", url_display(&h->cfg.redis, shown, sizeof shown));
	jb_key(b, "reachable");
	jb_bool(b, h->reachable);
	if (h->cfg.redis.kind == URL_CLUSTER) {
		if (!h->reachable)
			jb_kstr(b, "error", h->why);
		json_nodes(h);
	} else if (h->reachable) {
		json_node_figures(b, &h->nodes[0]);
		if (h->cfg.redis.kind == URL_SENTINEL) { /* the server they named */
			snprintf(shown, sizeof shown, "%s:%d", h->nodes[0].c->tcp.host,
			    h->nodes[0].c->tcp.port);
			jb_kstr(b, "primary", shown);
		}
	} else {
		jb_kstr(b, "error", h->why);
	}
	jb_obj_end(b);
	json_ledger(h);
	jb_key(b, "queues");
	jb_raw(b, "[", 1);
	for (int i = 0; i < h->nfig; i++) {
		if (i)
			jb_raw(b, ",", 1);
		json_queue(b, &h->fig[i]);
	}
	jb_raw(b, "]", 1);
	if (h->list_workers)
		json_workers(h);
	jb_key(b, "alerts");
	jb_raw(b, "[", 1);
	for (int i = 0; i < h->nalerts; i++) {
		if (i)
			jb_raw(b, ",", 1);
		jb_str(b, h->alerts[i], strlen(h->alerts[i]));
	}
	jb_raw(b, "]", 1);
	jb_obj_end(b);
	if (jb_line(b) < 0)
		die_output();
}

/* ---- Prometheus ------------------------------------------------------- */

/* A label value: backslash, double quote and newline escaped. */
static void
prom_label(FILE *fp, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fprintf(fp, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", fp);
		else
			fputc(*s, fp);
	}
}

static void
prom_head(const char *name, const char *type, const char *help)
{
	printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
prom_queue_gauge(const struct health *h, const char *name, const char *help,
    size_t offset)
{
	prom_head(name, "gauge", help);
	for (int i = 0; i < h->nfig; i++) {
		printf("%s{queue=\"%s\"} %lld\n", name, h->fig[i].queue,
		    *(const long long *)((const char *)&h->fig[i] + offset));
	}
}

static const char *
hash_value(const redisReply *hash, const char *field)
{
	for (size_t i = 0; hash && i + 1 < hash->elements; i += 2)
		if (strcmp(hash->element[i]->str, field) == 0)
			return hash->element[i + 1]->str;
	return "";
}

static void
prom_workers(const struct health *h)
{
	prom_head("aq_worker_jobs", "gauge", "Jobs a live worker holds.");
	for (int i = 0; i < h->nfig; i++) {
		const struct figures *f = &h->fig[i];
		for (size_t w = 0; f->worker_list && w < f->worker_list->elements; w++) {
			const redisReply *info = f->worker_info ? f->worker_info[w] : NULL;
			printf("aq_worker_jobs{queue=\"%s\",worker=\"", f->queue);
			prom_label(stdout, f->worker_list->element[w]->str);
			printf("\",host=\"");
			prom_label(stdout, hash_value(info, "host"));
			printf("\"} %lld\n", atoll(hash_value(info, "jobs")));
		}
	}
}

/* A cluster: the same figures per primary, labelled node="host:port". */
static void
prom_nodes(const struct health *h)
{
	prom_head("aq_redis_node_up", "gauge",
	    "1 when the cluster's primary answered, 0 when it did not.");
	for (int i = 0; i < h->nnodes; i++)
		printf("aq_redis_node_up{node=\"%s:%d\"} %d\n", h->nodes[i].at.host,
		    h->nodes[i].at.port, h->nodes[i].reachable);
	prom_head("aq_redis_latency_seconds", "gauge", "Round trip of a PING.");
	for (int i = 0; i < h->nnodes; i++)
		if (h->nodes[i].reachable)
			printf("aq_redis_latency_seconds{node=\"%s:%d\"} %.6f\n",
			    h->nodes[i].at.host, h->nodes[i].at.port,
			    h->nodes[i].latency_ms / 1000);
	prom_head("aq_redis_used_memory_bytes", "gauge", "Memory Redis uses.");
	for (int i = 0; i < h->nnodes; i++)
		if (h->nodes[i].reachable)
			printf("aq_redis_used_memory_bytes{node=\"%s:%d\"} %lld\n",
			    h->nodes[i].at.host, h->nodes[i].at.port,
			    h->nodes[i].used_memory);
}

static void
print_prometheus(struct health *h)
{
	prom_head("aq_up", "gauge", "1 when Redis answered, 0 when it did not.");
	printf("aq_up %d\n", h->reachable);
	prom_head("aq_health_status", "gauge", "0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.");
	printf("aq_health_status %d\n", (int)h->level);
	if (h->cfg.redis.kind == URL_CLUSTER)
		prom_nodes(h);
	else if (h->reachable) {
		prom_head("aq_redis_latency_seconds", "gauge", "Round trip of a PING.");
		printf("aq_redis_latency_seconds %.6f\n", h->nodes[0].latency_ms / 1000);
		prom_head("aq_redis_used_memory_bytes", "gauge", "Memory Redis uses.");
		printf("aq_redis_used_memory_bytes %lld\n", h->nodes[0].used_memory);
	}
	prom_queue_gauge(h, "aq_queue_waiting", "Jobs queued and ready to run.",
	    offsetof(struct figures, waiting));
	prom_queue_gauge(h, "aq_queue_delayed", "Jobs waiting for their time or a retry.",
	    offsetof(struct figures, delayed));
	prom_queue_gauge(h, "aq_queue_blocked",
	    "Jobs waiting for their parents (aq-enqueue --after).",
	    offsetof(struct figures, blocked));
	prom_queue_gauge(h, "aq_queue_active", "Jobs running under a lease.",
	    offsetof(struct figures, active));
	prom_queue_gauge(h, "aq_queue_workers", "Live workers of the queue.",
	    offsetof(struct figures, workers));
	prom_queue_gauge(h, "aq_queue_paused",
	    "1 while the queue is paused (aq-queue pause): workers claim nothing.",
	    offsetof(struct figures, paused));
	prom_queue_gauge(h, "aq_queue_rate_limit",
	    "Claims the queue's rate limit allows per period (0: none).",
	    offsetof(struct figures, flow.rate));
	prom_queue_gauge(h, "aq_queue_concurrency_limit",
	    "Jobs the queue's concurrency limit lets run at once (0: none).",
	    offsetof(struct figures, flow.concurrency));
	prom_head("aq_queue_rate_period_seconds", "gauge",
	    "The period of the queue's rate limit (0: none).");
	for (int i = 0; i < h->nfig; i++)
		printf("aq_queue_rate_period_seconds{queue=\"%s\"} %.3f\n",
		    h->fig[i].queue, (double)h->fig[i].flow.period_ms / 1000);
	prom_head("aq_queue_throttled_seconds", "gauge",
	    "What is left of a handler's throttle hold on the queue (0: none).");
	for (int i = 0; i < h->nfig; i++)
		printf("aq_queue_throttled_seconds{queue=\"%s\"} %.3f\n",
		    h->fig[i].queue, (double)h->fig[i].flow.throttled_ms / 1000);
	if (h->cfg.database_url) {
		prom_head("aq_ledger_up", "gauge", "1 when the PostgreSQL ledger answered.");
		printf("aq_ledger_up %d\n", h->ledger_up);
		prom_queue_gauge(h, "aq_queue_unarchived",
		    "Finished jobs waiting for the ledger's archive.",
		    offsetof(struct figures, unarchived));
		prom_head("aq_queue_archive_log_lag", "gauge",
		    "Log entries the archive has not read (-1: no archive yet).");
		for (int i = 0; i < h->nfig; i++)
			printf("aq_queue_archive_log_lag{queue=\"%s\"} %lld\n",
			    h->fig[i].queue, h->fig[i].log_lag < 0 ? -1 : h->fig[i].log_lag);
	}
	prom_head("aq_queue_oldest_waiting_seconds", "gauge",
	    "Age of the job waiting longest (0 when none waits).");
	for (int i = 0; i < h->nfig; i++)
		printf("aq_queue_oldest_waiting_seconds{queue=\"%s\"} %.3f\n", h->fig[i].queue,
		    h->fig[i].oldest_ms > 0 ? (double)h->fig[i].oldest_ms / 1000 : 0.0);
	prom_head("aq_queue_jobs_total", "counter", "Jobs by event since the queue began.");
	for (int i = 0; i < h->nfig; i++)
		for (size_t c = 0; c < NCOUNTERS; c++)
			printf("aq_queue_jobs_total{queue=\"%s\",event=\"%s\"} %lld\n",
			    h->fig[i].queue, counters[c], h->fig[i].count[c]);
	if (h->list_workers)
		prom_workers(h);
}

/* ---- options and main ------------------------------------------------- */

static void
parse_options(struct health *h, int argc, char **argv)
{
	static const struct option longopts[] = {
		CONFIG_LONG_OPTIONS,
		{"workers", no_argument, NULL, OPT_WORKERS},
		{"prometheus", no_argument, NULL, OPT_PROMETHEUS},
		{"warn-depth", required_argument, NULL, OPT_WARN_DEPTH},
		{"crit-depth", required_argument, NULL, OPT_CRIT_DEPTH},
		{"warn-age", required_argument, NULL, OPT_WARN_AGE},
		{"crit-age", required_argument, NULL, OPT_CRIT_AGE},
		{"warn-workers", required_argument, NULL, OPT_WARN_WORKERS},
		{"crit-workers", required_argument, NULL, OPT_CRIT_WORKERS},
		{"warn-archive-lag", required_argument, NULL, OPT_WARN_ARCHIVE_LAG},
		{"crit-archive-lag", required_argument, NULL, OPT_CRIT_ARCHIVE_LAG},
		CONFIG_LONG_OPTIONS_LEDGER,
		{NULL, 0, NULL, 0},
	};
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, CONFIG_OPTSTRING, longopts, NULL)) != -1) {
		if (c == 'q') { /* repeatable here: several queues */
			option_queue(optarg, h->queues, &h->nqueues, QUEUES_MAX);
			continue;
		}
		if (config_option(&h->cfg, c, optarg, usage))
			continue;
		switch (c) {
		case OPT_WORKERS: h->list_workers = 1; break;
		case OPT_PROMETHEUS: h->prometheus = 1; break;
		case OPT_WARN_DEPTH: h->depth.warn = option_int("--warn-depth", optarg, 0, 1L << 40); break;
		case OPT_CRIT_DEPTH: h->depth.crit = option_int("--crit-depth", optarg, 0, 1L << 40); break;
		case OPT_WARN_AGE: h->age_ms.warn = option_duration("--warn-age", optarg, 1); break;
		case OPT_CRIT_AGE: h->age_ms.crit = option_duration("--crit-age", optarg, 1); break;
		case OPT_WARN_WORKERS: h->workers.warn = option_int("--warn-workers", optarg, 0, 100000); break;
		case OPT_CRIT_WORKERS: h->workers.crit = option_int("--crit-workers", optarg, 0, 100000); break;
		case OPT_WARN_ARCHIVE_LAG: h->archive_lag.warn = option_int("--warn-archive-lag", optarg, 0, 1L << 40); break;
		case OPT_CRIT_ARCHIVE_LAG: h->archive_lag.crit = option_int("--crit-archive-lag", optarg, 0, 1L << 40); break;
		default:
			config_bad_option(c, argv, longopts, usage);
		}
	}
	if (optind < argc)
		die_usage("unexpected argument '%.80s'", argv[optind]);
}

static void
print_summary(const struct health *h)
{
	if (h->nalerts == 0) {
		long long workers = 0;
		for (int i = 0; i < h->nfig; i++)
			workers += h->fig[i].workers;
		warnmsg("OK: %d queue%s, %lld live worker%s", h->nfig, h->nfig == 1 ? "" : "s",
		    workers, workers == 1 ? "" : "s");
		return;
	}
	fprintf(stderr, "%s: %s:", log_progname(), level_names[h->level]);
	for (int i = 0; i < h->nalerts; i++)
		fprintf(stderr, "%s %s", i ? ";" : "", h->alerts[i]);
	fputc('\n', stderr);
}

static void
cleanup(struct health *h, int given)
{
	for (int i = 0; i < h->nfig; i++) {
		struct figures *f = &h->fig[i];
		for (size_t w = 0; f->worker_list && w < f->worker_list->elements; w++)
			freeReplyObject(f->worker_info ? f->worker_info[w] : NULL);
		free(f->worker_info);
		freeReplyObject(f->worker_list);
	}
	free(h->fig);
	free(h->unread);
	if (!given)
		for (int i = 0; i < h->nqueues; i++)
			free((char *)h->queues[i]);
	for (int i = 0; i < h->nnodes; i++)
		if (h->nodes[i].c)
			redisFree(h->nodes[i].c);
	free(h->nodes);
	cluster_map_free(&h->map);
	ledger_close(&h->ledger);
	jb_free(&h->out);
	config_free(&h->cfg);
}

int
main(int argc, char **argv)
{
	static struct health h = {.depth = {-1, -1}, .age_ms = {-1, -1},
	    .workers = {-1, -1}, .archive_lag = {-1, -1}};
	int given;

	log_init(argv[0]);
	config_init(&h.cfg);
	parse_options(&h, argc, argv);
	config_finish(&h.cfg);
	stdout_watch();
	ledger_config(&h.cfg);
	given = h.nqueues > 0;
	check_redis(&h);
	check_ledger(&h);
	if (h.nnodes > 0)
		check_queues(&h);
	judge(&h);
	if (h.prometheus)
		print_prometheus(&h);
	else
		print_json(&h);
	if (fflush(stdout) != 0 || ferror(stdout))
		die_output();
	print_summary(&h);
	cleanup(&h, given);
	return finish_stdout((int)h.level);
}
