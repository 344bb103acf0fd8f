/* keys.c: build the key names of one queue. */
#include "keys.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* The keys of a queue: each is the base ("P:{Q}:") and its suffix. */
static const struct {
	size_t at;
	const char *suffix;
} queue_keys[] = {
	{offsetof(struct keys, job), "job:"},
	{offsetof(struct keys, events), "events:"},
	{offsetof(struct keys, worker), "worker:"},
	{offsetof(struct keys, wait), "wait"},
	{offsetof(struct keys, delayed), "delayed"},
	{offsetof(struct keys, active), "active"},
	{offsetof(struct keys, wake), "wake"},
	{offsetof(struct keys, log), "log"},
	{offsetof(struct keys, stats), "stats"},
	{offsetof(struct keys, seq), "seq"},
	{offsetof(struct keys, workers), "workers"},
	{offsetof(struct keys, cancel), "cancel"},
	{offsetof(struct keys, done), "done"},
	{offsetof(struct keys, ledger), "ledger"},
	{offsetof(struct keys, unarchived), "unarchived"},
	{offsetof(struct keys, failed), "failed"},
	{offsetof(struct keys, paused), "paused"},
	{offsetof(struct keys, blocked), "blocked"},
	{offsetof(struct keys, deps), "deps:"},
	{offsetof(struct keys, children), "children:"},
	{offsetof(struct keys, limits), "limits"},
	{offsetof(struct keys, rate), "rate"},
	{offsetof(struct keys, throttled), "throttled"},
};

void
keys_init(struct keys *k, const char *prefix, const char *queue)
{
	char base[KEY_BASE_MAX];

	memset(k, 0, sizeof *k);
	snprintf(base, sizeof base, "%s:{%s}:", prefix, queue);
	memcpy(k->base, base, sizeof base);
	for (size_t i = 0; i < sizeof queue_keys / sizeof queue_keys[0]; i++)
		snprintf((char *)k + queue_keys[i].at, KEY_MAX, "%s%s", base,
		    queue_keys[i].suffix);
	snprintf(k->queues, sizeof k->queues, "%s:queues", prefix);
}

int
keys_script_argv(const struct keys *k, const char **argv)
{
	const char *keys[KEYS_SCRIPT] = {k->wait, k->delayed, k->active, k->stats,
	    k->log, k->seq, k->wake, k->done, k->workers};

	memcpy(argv, keys, sizeof keys);
	return KEYS_SCRIPT;
}

int
keys_enqueue_argv(const struct keys *k, const char **argv)
{
	const char *keys[KEYS_ENQUEUE] = {k->wait, k->delayed, k->stats, k->log,
	    k->seq, k->wake};

	memcpy(argv, keys, sizeof keys);
	return KEYS_ENQUEUE;
}

int
keys_event_argv(const struct keys *k, const char *id, char *job, char *events,
    const char **argv)
{
	argv[0] = keys_job(k, id, job, KEY_MAX + ID_MAX);
	argv[1] = keys_events(k, id, events, KEY_MAX + ID_MAX);
	return KEYS_EVENT;
}

int
keys_renew_argv(const struct keys *k, const char *worker_hash, const char **argv)
{
	int n = keys_script_argv(k, argv);

	argv[n++] = worker_hash;
	return n;
}

/* The key of id under prefix ("P:{Q}:job:" and the like), in buf. */
static char *
key_of(const char *prefix, const char *id, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s", prefix, id);
	return buf;
}

char *
keys_job(const struct keys *k, const char *id, char *buf, size_t len)
{
	return key_of(k->job, id, buf, len);
}

char *
keys_events(const struct keys *k, const char *id, char *buf, size_t len)
{
	return key_of(k->events, id, buf, len);
}

char *
keys_worker(const struct keys *k, const char *id, char *buf, size_t len)
{
	return key_of(k->worker, id, buf, len);
}

char *
keys_deps(const struct keys *k, const char *id, char *buf, size_t len)
{
	return key_of(k->deps, id, buf, len);
}

char *
keys_channel(const char *prefix, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s:chan:%s", prefix, name);
	return buf;
}
