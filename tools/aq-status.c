/* aq-status: print the record of jobs by id, one JSON line per id; ids come
 * as arguments or on stdin (bare, or the JSON lines aq-enqueue prints). */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "id.h"
#include "job.h"
#include "json.h"
#include "jsonl.h"
#include "keys.h"
#include "log.h"
#include "mem.h"
#include "redis.h"

#define LOOKUP_BATCH 256
#define ID_RULE "invalid id (ids are 1 to 200 of A-Z a-z 0-9 . _ : @ / -)"

struct lookup {
	char id[ID_MAX + 1];
	char queue[QUEUE_MAX + 1];
};

struct status_run {
	struct config cfg;
	redisContext *redis;
	struct lookup batch[LOOKUP_BATCH];
	size_t n;
	struct jbuf out;
	unsigned long rejected, unknown;
};

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: aq-status [-q queue] [-u url | --redis-url-file path] [--prefix p]\n"
	    "                 [--max-line size] [id ...]\n");
}

/* HGETALL every job of the batch in one pipelined round trip, print them. */
static void
flush_batch(struct status_run *s)
{
	struct keys k;
	char key[KEY_MAX + ID_MAX];

	for (size_t i = 0; i < s->n; i++) {
		const char *argv[2] = {"HGETALL", key};
		keys_init(&k, s->cfg.prefix, s->batch[i].queue);
		snprintf(key, sizeof key, "%s%s", k.job, s->batch[i].id);
		if (redisAppendCommandArgv(s->redis, 2, argv, NULL) != REDIS_OK)
			redis_die_io(s->redis, &s->cfg.redis, "looking up jobs");
	}
	for (size_t i = 0; i < s->n; i++) {
		redisReply *r = redis_get_reply(s->redis, &s->cfg.redis, "looking up jobs");
		if (r->type == REDIS_REPLY_ERROR)
			die(EX_UNAVAILABLE, "redis refused HGETALL: %s", r->str);
		jb_reset(&s->out);
		if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
			job_write_record(&s->out, s->batch[i].id, s->batch[i].queue, r);
		} else {
			job_write_unknown(&s->out, s->batch[i].id, s->batch[i].queue);
			s->unknown++;
		}
		if (jb_line(&s->out) < 0)
			die(EX_IOERR, "cannot write to standard output:");
		freeReplyObject(r);
	}
	s->n = 0;
}

static void
add_lookup(struct status_run *s, const char *id, size_t n, const char *queue)
{
	struct lookup *l = &s->batch[s->n++];

	memcpy(l->id, id, n);
	l->id[n] = '\0';
	snprintf(l->queue, sizeof l->queue, "%s", queue);
	if (s->n == LOOKUP_BATCH)
		flush_batch(s);
}

/*
 * A line is a bare id, a JSON string, or a JSON object with "id" and
 * optionally "queue" (so aq-enqueue's output can be piped in). Returns 0
 * with *id, *n and *queue set, or -1 with the reason in why.
 */
static int
parse_id_line(const char *line, size_t len, json_t **doc, const char **id,
    size_t *n, const char **queue, const char **why)
{
	json_error_t e;
	json_t *v;

	*doc = NULL;
	if (line[0] != '{' && line[0] != '"') {
		*id = line;
		*n = len;
		return id_valid(line, len) ? 0 : (*why = ID_RULE, -1);
	}
	*doc = json_loadb(line, len, JSON_DECODE_ANY, &e);
	if (!*doc)
		return *why = "invalid JSON", -1;
	v = json_is_object(*doc) ? json_object_get(*doc, "id") : *doc;
	if (!json_is_string(v))
		return *why = "no \"id\" string in the object", -1;
	*id = json_string_value(v);
	*n = json_string_length(v);
	if (!id_valid(*id, *n))
		return *why = ID_RULE, -1;
	v = json_is_object(*doc) ? json_object_get(*doc, "queue") : NULL;
	if (v) {
		if (!json_is_string(v) || !queue_valid(json_string_value(v)))
			return *why = "invalid \"queue\"", -1;
		*queue = json_string_value(v);
	}
	return 0;
}

static int
on_line(char *line, size_t len, unsigned long lineno, void *ctx)
{
	struct status_run *s = ctx;
	const char *id, *queue = s->cfg.queue, *why = NULL;
	json_t *doc;
	size_t n;

	while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t'))
		line[--len] = '\0';
	while (*line == ' ' || *line == '\t')
		line++, len--;
	if (parse_id_line(line, len, &doc, &id, &n, &queue, &why) < 0) {
		warnmsg("line %lu: %s, skipped", lineno, why);
		s->rejected++;
	} else {
		add_lookup(s, id, n, queue);
	}
	json_decref(doc);
	return 0;
}

static void
parse_options(struct status_run *s, int argc, char **argv)
{
	static const struct option longopts[] = {
		CONFIG_LONG_OPTIONS,
		CONFIG_LONG_OPTIONS_LINES,
		{NULL, 0, NULL, 0},
	};
	int c;

	while ((c = getopt_long(argc, argv, "q:u:h", longopts, NULL)) != -1) {
		if (!config_option(&s->cfg, c, optarg, usage)) {
			usage(stderr);
			exit(EX_USAGE);
		}
	}
}

int
main(int argc, char **argv)
{
	static struct status_run s;
	int rc = 0;

	log_init(argv[0]);
	config_init(&s.cfg);
	parse_options(&s, argc, argv);
	config_finish(&s.cfg);
	argc -= optind;
	argv += optind;
	for (int i = 0; i < argc; i++)
		if (!id_valid(argv[i], strlen(argv[i])))
			die(EX_USAGE, "argument %d: invalid id: want 1 to %d of "
			    "A-Z a-z 0-9 . _ : @ / -", i + 1, ID_MAX);
	s.redis = redis_connect(&s.cfg.redis);

	if (argc > 0) {
		for (int i = 0; i < argc; i++)
			add_lookup(&s, argv[i], strlen(argv[i]), s.cfg.queue);
	} else if (jsonl_each(STDIN_FILENO, s.cfg.max_line, on_line, &s,
	    &s.rejected) < 0) {
		rc = EX_IOERR;
	}
	flush_batch(&s);
	if (rc == 0)
		rc = s.rejected ? EX_DATAERR : s.unknown ? 1 : 0;
	jb_free(&s.out);
	redisFree(s.redis);
	url_forget(&s.cfg.redis);
	return finish_stdout(rc);
}
