/* idline.c: ids from arguments and from lines of input. */
#include "idline.h"

#include <stdio.h>
#include <string.h>

#include "id.h"
#include "jsonl.h"
#include "log.h"

#define ID_RULE "invalid id (ids are 1 to 200 of A-Z a-z 0-9 . _ : @ / -)"

void
idline_check_args(int argc, char **argv)
{
	for (int i = 0; i < argc; i++)
		if (!id_valid(argv[i], strlen(argv[i])))
			die_usage("argument %d: invalid id '%.80s': want 1 to %d of "
			    "A-Z a-z 0-9 . _ : @ / -", i + 1, argv[i], ID_MAX);
}

int
idline_parse(char *line, size_t len, json_t **doc, const char **id,
    size_t *n, const char **queue, const char **why)
{
	json_error_t e;
	json_t *v;

	*doc = NULL;
	line = jsonl_trim(line, &len);
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

void
idline_line(char *line, size_t len, unsigned long lineno, const char *queue,
    idline_fn *add, void *ctx, unsigned long *rejected)
{
	const char *id, *why = NULL;
	json_t *doc;
	size_t n;

	if (idline_parse(line, len, &doc, &id, &n, &queue, &why) < 0) {
		warnmsg("line %lu: %s, skipped", lineno, why);
		(*rejected)++;
	} else {
		add(ctx, id, n, queue);
	}
	json_decref(doc);
}

/* What idline_each's line and idle callbacks need: the tool's own. */
struct each_run {
	const char *queue;
	idline_fn *add;
	jsonl_idle_fn idle;
	void *ctx;
	unsigned long *rejected;
};

static int
each_line(char *line, size_t len, unsigned long lineno, void *ctx)
{
	struct each_run *r = ctx;

	idline_line(line, len, lineno, r->queue, r->add, r->ctx, r->rejected);
	return 0;
}

static void
each_idle(void *ctx)
{
	struct each_run *r = ctx;

	r->idle(r->ctx);
}

int
idline_each(int argc, char **argv, int fd, size_t max_line, const char *queue,
    idline_fn *add, jsonl_idle_fn idle, void *ctx, unsigned long *rejected)
{
	struct each_run r = {queue, add, idle, ctx, rejected};

	if (argc == 0)
		return jsonl_each_idle(fd, max_line, each_line,
		    idle ? each_idle : NULL, &r, rejected) < 0 ? -1 : 0;
	for (int i = 0; i < argc; i++)
		add(ctx, argv[i], strlen(argv[i]), queue);
	return 0;
}

void
idline_batch_send(void *batch)
{
	struct idline_batch *b = batch;

	if (b->n > 0)
		b->send(b->ctx);
}

void
idline_batch_add(void *batch, const char *id, size_t n, const char *queue)
{
	struct idline_batch *b = batch;
	struct idline_target *t;

	if (b->n > 0 && strcmp(b->t[0].queue, queue) != 0)
		idline_batch_send(b);
	t = &b->t[b->n++];
	memcpy(t->id, id, n);
	t->id[n] = '\0';
	snprintf(t->queue, sizeof t->queue, "%s", queue);
	if (b->n == IDLINE_BATCH)
		idline_batch_send(b);
}

int
idline_batch_each(int argc, char **argv, int fd, size_t max_line,
    const char *queue, struct idline_batch *b, unsigned long *rejected)
{
	int rc = idline_each(argc, argv, fd, max_line, queue, idline_batch_add,
	    idline_batch_send, b, rejected);

	idline_batch_send(b);
	return rc;
}

int
idline_exit(int read_failed, unsigned long rejected, unsigned long unsettled)
{
	if (read_failed)
		return EX_IOERR;
	return rejected ? EX_DATAERR : unsettled ? 1 : 0;
}
