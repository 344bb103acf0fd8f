/* idline.h: the ids the tools that look jobs up take (aq-status,
 * aq-cancel, aq-retry): as arguments, or as lines that are a bare id, a
 * JSON string, or a JSON object with "id" and optionally "queue"
 * (aq-enqueue's output); and the batches of one queue they send them in. */
#ifndef AQ_IDLINE_H
#define AQ_IDLINE_H

#include <jansson.h>
#include <stddef.h>

#include "id.h"
#include "jsonl.h"

/* idline_check_args: exit EX_USAGE naming the first of the argc arguments
 * of argv that is not a valid id ("argument N: invalid id: ..."). */
void idline_check_args(int argc, char **argv);

/* idline_parse: the id of line[0..len), spaces and tabs around it ignored
 * (the line is trimmed in place). Returns 0 with *id and *n set, and *queue
 * set when the line is an object naming a queue (left as it is otherwise);
 * or -1 with the reason in *why. *id and *queue point into line or into
 * *doc, which the caller releases with json_decref (it may be NULL). */
int idline_parse(char *line, size_t len, json_t **doc, const char **id,
    size_t *n, const char **queue, const char **why);

/* Takes one id (of queue) that idline_line found. */
typedef void idline_fn(void *ctx, const char *id, size_t n, const char *queue);

/* idline_line: parse one input line (lineno for messages) with
 * idline_parse and pass its id to add, with its own queue or queue; a bad
 * line is reported on stderr ("line N: reason, skipped") and counted in
 * *rejected. */
void idline_line(char *line, size_t len, unsigned long lineno,
    const char *queue, idline_fn *add, void *ctx, unsigned long *rejected);

/* idline_each: the driver of aq-status and aq-cancel. Passes to add each
 * id of the argc arguments of argv (of queue) when there are any, else
 * each id of the lines of fd (at most max_line bytes each), calling idle
 * (when not NULL) whenever the input has nothing more yet. Bad lines are
 * reported and counted in *rejected. Returns 0, or -1 after reporting a
 * read error. The arguments were checked by idline_check_args. */
int idline_each(int argc, char **argv, int fd, size_t max_line,
    const char *queue, idline_fn *add, jsonl_idle_fn idle, void *ctx,
    unsigned long *rejected);

/*
 * The ids a tool sends to one script call: at most IDLINE_BATCH, all of
 * one queue. send (given ctx) sends t[0..n) and must leave n 0. All zeros
 * but send and ctx is an empty batch.
 */
#define IDLINE_BATCH 256

struct idline_target {
	char id[ID_MAX + 1];
	char queue[QUEUE_MAX + 1];
};

struct idline_batch {
	struct idline_target t[IDLINE_BATCH];
	size_t n;
	void (*send)(void *ctx);
	void *ctx;
};

/* idline_batch_add: an idline_fn whose ctx is a struct idline_batch: adds
 * id of queue, sending the batch first when it holds ids of another queue,
 * and after when it is full. */
void idline_batch_add(void *batch, const char *id, size_t n, const char *queue);

/* idline_batch_send: send what the batch holds, if anything; also a
 * jsonl_idle_fn (ctx: the batch), so that ids that come slowly (tail -f
 * ids | TOOL) are sent as they come, not when a batch is full. */
void idline_batch_send(void *batch);

/* idline_batch_each: idline_each into the batch b, sent whenever the
 * input pauses and when it ends. Returns as idline_each. */
int idline_batch_each(int argc, char **argv, int fd, size_t max_line,
    const char *queue, struct idline_batch *b, unsigned long *rejected);

/* idline_exit: the exit status of a tool that takes ids (aq(7) EXIT
 * CODES): EX_IOERR when its input could not be read (read_failed), else
 * EX_DATAERR when lines were rejected, else 1 when some id was unknown or
 * its job left as it was (unsettled), else 0. */
int idline_exit(int read_failed, unsigned long rejected, unsigned long unsettled);

#endif
