/* aq-cancel: cancel jobs by id: a queued or delayed job never runs, a
 * running job's worker is told to stop its handler; one JSON line per id.
 * Ids come as arguments or on stdin (bare, or the JSON lines aq-enqueue
 * prints). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "id.h"
#include "idline.h"
#include "job.h"
#include "json.h"
#include "keys.h"
#include "log.h"
#include "redis.h"
#include "script.h"

#define CANCEL_BATCH 256          /* ids per call of the cancel script */

struct target {
	char id[ID_MAX + 1];
	char queue[QUEUE_MAX + 1];
};

struct cancel_run {
	struct config cfg;
	redisContext *redis;
	struct target batch[CANCEL_BATCH]; /* all of one queue */
	size_t n;
	struct script_args call;      /* a batch's call, being built */
	struct jbuf out;
	unsigned long rejected, unsettled; /* unsettled: unknown or finished */
};

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: aq-cancel [-q queue] [-u url | --redis-url-file path] [--prefix p]\n"
	    "                 [--max-line size] [id ...]\n");
}

/* Print the outcome the script gave for one id. */
static void
report(struct cancel_run *s, const struct target *t, const redisReply *v)
{
	jb_reset(&s->out);
	if (strcmp(v->str, "unknown") == 0) {
		job_write_unknown(&s->out, t->id, t->queue);
		s->unsettled++;
	} else {
		int already = strncmp(v->str, "already:", 8) == 0;
		jb_obj_begin(&s->out);
		jb_kstr(&s->out, "id", t->id);
		jb_kstr(&s->out, "queue", t->queue);
		jb_kstr(&s->out, "status", already ? v->str + 8 : v->str);
		if (already) {
			jb_key(&s->out, "already");
			jb_raw(&s->out, "true", 4);
			s->unsettled++;
		}
		jb_obj_end(&s->out);
	}
	if (jb_line(&s->out) < 0)
		die_output();
}

/* Cancel the ids of the batch in one call of the cancel script. */
static void
flush_batch(struct cancel_run *s)
{
	struct script_args *a = &s->call;
	char shown[1024];
	struct keys k;
	redisReply *r;

	if (s->n == 0)
		return;
	keys_init(&k, s->cfg.prefix, s->batch[0].queue);
	script_args_begin(a, &script_cancel);
	script_args_queue_keys(a, &k);
	script_args_arg(a, k.base);
	script_args_arg(a, LOG_CAP);
	script_args_arg(a, k.cancel);
	for (size_t i = 0; i < s->n; i++)
		script_args_arg(a, s->batch[i].id);
	r = script_call(s->redis, &s->cfg.redis, a);
	if (!r)
		redis_die_io(s->redis, &s->cfg.redis, "cancelling jobs");
	if (r->type != REDIS_REPLY_ARRAY || r->elements != s->n)
		die(EX_UNAVAILABLE, "redis at %s refused to cancel jobs of queue "
		    "%s: %s", url_display(&s->cfg.redis, shown, sizeof shown),
		    s->batch[0].queue,
		    r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
	for (size_t i = 0; i < s->n; i++) {
		if (r->element[i]->type != REDIS_REPLY_STRING)
			die(EX_UNAVAILABLE, "redis at %s gave an unexpected reply "
			    "for job %s", url_display(&s->cfg.redis, shown,
			    sizeof shown), s->batch[i].id);
		report(s, &s->batch[i], r->element[i]);
	}
	freeReplyObject(r);
	s->n = 0;
}

/* idline_fn: queue an id for cancelling; a batch holds consecutive ids of
 * one queue. */
static void
add_target(void *ctx, const char *id, size_t n, const char *queue)
{
	struct cancel_run *s = ctx;
	struct target *t;

	if (s->n > 0 && strcmp(s->batch[0].queue, queue) != 0)
		flush_batch(s);
	t = &s->batch[s->n++];
	memcpy(t->id, id, n);
	t->id[n] = '\0';
	snprintf(t->queue, sizeof t->queue, "%s", queue);
	if (s->n == CANCEL_BATCH)
		flush_batch(s);
}

/* Nothing more to read yet: cancel what is held now, not when 256 ids or
 * the end of the input have come (tail -f ids | aq-cancel). */
static void
on_idle(void *ctx)
{
	flush_batch(ctx);
}

int
main(int argc, char **argv)
{
	static struct cancel_run s;
	int rc = 0;

	log_init(argv[0]);
	config_init(&s.cfg);
	config_parse_shared(&s.cfg, argc, argv, usage);
	config_finish(&s.cfg);
	stdout_watch();
	argc -= optind;
	argv += optind;
	idline_check_args(argc, argv);
	s.redis = redis_connect(&s.cfg.redis);

	if (idline_each(argc, argv, STDIN_FILENO, s.cfg.max_line, s.cfg.queue,
	    add_target, on_idle, &s, &s.rejected) < 0)
		rc = EX_IOERR;
	flush_batch(&s);
	if (rc == 0)
		rc = s.rejected ? EX_DATAERR : s.unsettled ? 1 : 0;
	jb_free(&s.out);
	script_args_free(&s.call);
	redisFree(s.redis);
	url_forget(&s.cfg.redis);
	return finish_stdout(rc);
}
