/* archive.h: what aq-sweep does between Redis and the PostgreSQL ledger:
 * archive each queue's state changes and finished jobs' events (read from
 * its log stream through a consumer group, acknowledged once committed),
 * and restore jobs the ledger holds that Redis lost. */
#ifndef AQ_ARCHIVE_H
#define AQ_ARCHIVE_H

#include <hiredis/hiredis.h>
#include <signal.h>

#include "json.h"
#include "ledger.h"
#include "url.h"

#define ARCHIVE_GROUP "aq-archive"
#define ARCHIVE_CONSUMER "aq-sweep"

struct archiver {
	redisContext *redis;           /* the server of the queue's keys */
	redisContext *registry;        /* of PREFIX:queues (a cluster node) */
	const struct redis_url *url;
	struct ledger *ledger;
	const char *prefix;
	long batch;                    /* jobs per transaction */
	long long restore_grace_ms;    /* see restore_queue */
	struct jbuf *out;              /* for the JSON lines printed */
	volatile sig_atomic_t *stop;   /* set: finish the batch, then return */
	char run_id[48];               /* of the server of redis */
	int temp_tables;               /* created in this ledger session */
	unsigned long printed;         /* lines printed */
};

/* Results of archive_queue and restore_queue: 0, or which side failed (the
 * message, naming the server and the queue, is printed). */
#define ARCHIVE_REDIS_FAILED -1
#define ARCHIVE_LEDGER_FAILED -2

/* archive_begin_pass: make the session's temporary tables. */
int archive_begin_pass(struct archiver *a);

/* archive_use_server: work on the queues of the server c from now on,
 * learning its run id (a restart or a failover changes it). */
int archive_use_server(struct archiver *a, redisContext *c);

/* restore_queue: put back on queue the jobs the ledger holds as not finished
 * that Redis does not have, with their attempts; printing
 * {"queue","action":"restored","id","status"} per job. All of them are
 * looked at when Redis restarted or lost the queue's ledger key since the
 * last look (the key then records this server's run id); otherwise only
 * those Redis never reported and that were enqueued restore_grace_ms ago
 * or more (an aq-enqueue killed between its commit and Redis). */
int restore_queue(struct archiver *a, const char *queue);

/* archive_queue: archive what the queue's log stream names (its entries
 * through the consumer group ARCHIVE_GROUP, pending ones first), then the
 * finished jobs still waiting for it (their log entries may have been
 * capped away): job records upserted, the events of finished jobs inserted,
 * one transaction per batch; the entries are acknowledged and the finished
 * jobs made trimmable only after the commit. Printing
 * {"queue","action":"archived","jobs","finished","events"} per batch. */
int archive_queue(struct archiver *a, const char *queue);

/* archive_ledger_queues: the queues the ledger knows (a new reply-like
 * result the caller pq.clear()s), or NULL (message printed). */
PGresult *archive_ledger_queues(struct archiver *a);

#endif
