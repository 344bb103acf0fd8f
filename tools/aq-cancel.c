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
#include "pool.h"
#include "redis.h"
#include "script.h"

struct cancel_run {
	struct config cfg;
	struct redis_pool pool;       /* a connection per node of a cluster */
	redisContext *redis;          /* the one of the batch's queue */
	struct idline_batch batch;    /* ids of one queue, sent together */
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
report(struct cancel_run *s, const struct idline_target *t, const redisReply *v)
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
send_batch(void *ctx)
{
	struct cancel_run *s = ctx;
	struct idline_batch *b = &s->batch;
	struct script_args *a = &s->call;
	char shown[1024], doing[QUEUE_MAX + 64];
	struct keys k;
	redisReply *r;

	keys_init(&k, s->cfg.prefix, b->t[0].queue);
	s->redis = redis_pool_for(&s->pool, k.base); /* the queue's node */
	script_args_begin(a, &script_cancel);
	script_args_queue_keys(a, &k);
	script_args_arg(a, k.base);
	script_args_arg(a, LOG_CAP);
	script_args_arg(a, k.cancel);
	for (size_t i = 0; i < b->n; i++)
		script_args_arg(a, b->t[i].id);
	snprintf(doing, sizeof doing, "cancelling jobs of queue %s", b->t[0].queue);
	r = script_call_array(s->redis, &s->cfg.redis, a, b->n, doing);
	for (size_t i = 0; i < b->n; i++) {
		if (r->element[i]->type != REDIS_REPLY_STRING)
			die(EX_UNAVAILABLE, "redis at %s gave an unexpected reply "
			    "for job %s", url_display(&s->cfg.redis, shown,
			    sizeof shown), b->t[i].id);
		report(s, &b->t[i], r->element[i]);
	}
	freeReplyObject(r);
	b->n = 0;
}

int
main(int argc, char **argv)
{
	static struct cancel_run s;
	int read_failed;

	log_init(argv[0]);
	config_init(&s.cfg);
	config_parse_shared(&s.cfg, argc, argv, usage);
	config_finish(&s.cfg);
	stdout_watch();
	argc -= optind;
	argv += optind;
	idline_check_args(argc, argv);
	redis_pool_init(&s.pool, &s.cfg.redis);
	/* unreachable: exit now */
	s.redis = redis_pool_for_queue(&s.pool, s.cfg.prefix, s.cfg.queue);
	s.batch.send = send_batch;
	s.batch.ctx = &s;

	/* ids that come slowly (tail -f ids | aq-cancel) are cancelled as
	 * they come, not when 256 ids or the end of the input have come */
	read_failed = idline_batch_each(argc, argv, STDIN_FILENO, s.cfg.max_line,
	    s.cfg.queue, &s.batch, &s.rejected) < 0;
	jb_free(&s.out);
	script_args_free(&s.call);
	redis_pool_close(&s.pool);
	url_forget(&s.cfg.redis);
	return finish_stdout(idline_exit(read_failed, s.rejected, s.unsettled));
}
