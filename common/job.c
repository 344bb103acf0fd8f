/* job.c: job options and the JSON form of a job record. */
#include "job.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum field_kind { F_STRING, F_INT, F_MILLIS, F_JSON, F_IDS };

/* Hash fields in the order they are printed, and how; a field the record
 * leaves out to stay small (see enqueue.lua) is printed with its default. */
static const struct {
	const char *field, *name;
	enum field_kind kind;
	const char *dflt;
} fields[] = {
	{"status", "status", F_STRING, NULL},
	{"attempt", "attempt", F_INT, "0"},
	{"max_attempts", "max_attempts", F_INT, NULL},
	{"priority", "priority", F_INT, "0"},
	{"created", "created", F_MILLIS, NULL},
	{"run_at", "run_at", F_MILLIS, NULL},
	{"started", "started", F_MILLIS, NULL},
	{"finished", "finished", F_MILLIS, NULL},
	{"timeout_ms", "timeout", F_MILLIS, NULL},
	{"worker", "worker", F_STRING, NULL},
	{"exit_code", "exit_code", F_INT, NULL},
	{"payload", "payload", F_JSON, NULL},
	{"result", "result", F_JSON, NULL},
	{"error", "error", F_STRING, NULL},
	{"after", "after", F_IDS, NULL},
};

void
job_options_init(struct job_options *o)
{
	o->priority = 0;
	o->max_attempts = MAX_ATTEMPTS_DEFAULT;
	o->delay_ms = -1;
	o->run_at_ms = -1;
	o->timeout_ms = -1;
}

static const redisReply *
hash_get(const redisReply *hash, const char *field)
{
	for (size_t i = 0; i + 1 < hash->elements; i += 2) {
		const redisReply *k = hash->element[i];
		if (k->type == REDIS_REPLY_STRING && strlen(field) == k->len &&
		    memcmp(k->str, field, k->len) == 0)
			return hash->element[i + 1];
	}
	return NULL;
}

/* A stored integer, or 0 with -1 returned when it is not one. */
static int
as_int(const redisReply *v, int64_t *out)
{
	char *end;

	if (v->type == REDIS_REPLY_INTEGER) {
		*out = v->integer;
		return 0;
	}
	errno = 0;
	*out = strtoll(v->str, &end, 10);
	return errno || end == v->str || *end ? -1 : 0;
}

/* ids separated by spaces (ids hold none), as a JSON array of strings */
static void
write_ids(struct jbuf *b, const char *s, size_t len)
{
	size_t i = 0;
	int first = 1;

	jb_raw(b, "[", 1);
	while (i < len) {
		size_t n = 0;
		while (i + n < len && s[i + n] != ' ')
			n++;
		if (n > 0) {
			if (!first)
				jb_raw(b, ",", 1);
			jb_str(b, s + i, n);
			first = 0;
		}
		i += n + 1;
	}
	jb_raw(b, "]", 1);
}

static void
write_field(struct jbuf *b, const char *name, enum field_kind kind,
    const redisReply *v)
{
	int64_t n;

	jb_key(b, name);
	if (kind == F_INT || kind == F_MILLIS) {
		if (as_int(v, &n) < 0)
			jb_str(b, v->str, v->len); /* not ours: show it as it is */
		else if (kind == F_INT)
			jb_int(b, n);
		else
			jb_millis(b, n);
	} else if (kind == F_JSON) {
		jb_json_or_str(b, v->str, v->len);
	} else if (kind == F_IDS) {
		write_ids(b, v->str, v->len);
	} else {
		jb_str(b, v->str, v->len);
	}
}

_Static_assert(sizeof fields / sizeof fields[0] == JOB_FIELDS && JOB_AFTER + 1 == JOB_FIELDS,
    "JOB_FIELDS counts the fields of a record, enum job_field names them");

/* the record's fields, its object left open */
static void
write_values_open(struct jbuf *b, const char *id, const char *queue,
    const char *const *values, const size_t *lens)
{
	jb_obj_begin(b);
	jb_kstr(b, "id", id);
	jb_kstr(b, "queue", queue);
	for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
		if (values[i]) {
			redisReply v = {.type = REDIS_REPLY_STRING,
			    .str = (char *)values[i], .len = lens[i]};
			write_field(b, fields[i].name, fields[i].kind, &v);
		} else if (fields[i].dflt) {
			jb_key(b, fields[i].name);
			jb_raw(b, fields[i].dflt, strlen(fields[i].dflt));
		}
	}
}

void
job_write_values(struct jbuf *b, const char *id, const char *queue,
    const char *const *values, const size_t *lens)
{
	write_values_open(b, id, queue, values, lens);
	jb_obj_end(b);
}

static void
write_record_open(struct jbuf *b, const char *id, const char *queue,
    const redisReply *hash)
{
	const char *values[JOB_FIELDS];
	size_t lens[JOB_FIELDS];

	for (size_t i = 0; i < JOB_FIELDS; i++) {
		const redisReply *v = hash_get(hash, fields[i].field);
		int usable = v && v->type == REDIS_REPLY_STRING;
		values[i] = usable ? v->str : NULL;
		lens[i] = usable ? v->len : 0;
	}
	write_values_open(b, id, queue, values, lens);
}

void
job_write_record(struct jbuf *b, const char *id, const char *queue,
    const redisReply *hash)
{
	write_record_open(b, id, queue, hash);
	jb_obj_end(b);
}

/* 1 when the set reply set has the member s[0..n) */
static int
set_has(const redisReply *set, const char *s, size_t n)
{
	for (size_t i = 0; set->type == REDIS_REPLY_ARRAY && i < set->elements; i++) {
		const redisReply *m = set->element[i];
		if (m->type == REDIS_REPLY_STRING && m->len == n &&
		    memcmp(m->str, s, n) == 0)
			return 1;
	}
	return 0;
}

/* The parents pending holds, in the order of the field after (a set has
 * none of its own). */
void
job_write_blocked(struct jbuf *b, const char *id, const char *queue,
    const redisReply *hash, const redisReply *pending)
{
	const redisReply *after = hash_get(hash, "after");
	const char *s = after && after->type == REDIS_REPLY_STRING ? after->str : "";
	int first = 1;

	write_record_open(b, id, queue, hash);
	jb_key(b, "waiting_for");
	jb_raw(b, "[", 1);
	while (*s) {
		size_t n = strcspn(s, " ");
		if (n > 0 && set_has(pending, s, n)) {
			if (!first)
				jb_raw(b, ",", 1);
			jb_str(b, s, n);
			first = 0;
		}
		s += n + (s[n] == ' ');
	}
	jb_raw(b, "]", 1);
	jb_obj_end(b);
}

void
job_write_unknown(struct jbuf *b, const char *id, const char *queue)
{
	jb_obj_begin(b);
	jb_kstr(b, "id", id);
	jb_kstr(b, "queue", queue);
	jb_kstr(b, "status", "unknown");
	jb_obj_end(b);
}
