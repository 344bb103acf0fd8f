/* keys.c: build the key names of one queue. */
#include "keys.h"

#include <stdio.h>
#include <string.h>

void
keys_init(struct keys *k, const char *prefix, const char *queue)
{
	memset(k, 0, sizeof *k);
	snprintf(k->base, sizeof k->base, "%s:{%s}:", prefix, queue);
	snprintf(k->job, sizeof k->job, "%sjob:", k->base);
	snprintf(k->wait, sizeof k->wait, "%swait", k->base);
	snprintf(k->delayed, sizeof k->delayed, "%sdelayed", k->base);
	snprintf(k->active, sizeof k->active, "%sactive", k->base);
	snprintf(k->wake, sizeof k->wake, "%swake", k->base);
	snprintf(k->log, sizeof k->log, "%slog", k->base);
	snprintf(k->stats, sizeof k->stats, "%sstats", k->base);
	snprintf(k->seq, sizeof k->seq, "%sseq", k->base);
	snprintf(k->workers, sizeof k->workers, "%sworkers", k->base);
	snprintf(k->cancel, sizeof k->cancel, "%scancel", k->base);
	snprintf(k->done, sizeof k->done, "%sdone", k->base);
	snprintf(k->queues, sizeof k->queues, "%s:queues", prefix);
	snprintf(k->ledger, sizeof k->ledger, "%sledger", k->base);
	snprintf(k->unarchived, sizeof k->unarchived, "%sunarchived", k->base);
}

int
keys_script_argv(const struct keys *k, const char **argv)
{
	const char *keys[KEYS_SCRIPT] = {k->wait, k->delayed, k->active, k->stats,
	    k->log, k->seq, k->wake, k->done, k->workers};

	for (int i = 0; i < KEYS_SCRIPT; i++)
		argv[i] = keys[i];
	return KEYS_SCRIPT;
}
