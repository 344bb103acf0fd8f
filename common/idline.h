/* idline.h: the ids the tools that look jobs up take (aq-status,
 * aq-cancel): as arguments, or as lines that are a bare id, a JSON string,
 * or a JSON object with "id" and optionally "queue" (aq-enqueue's output). */
#ifndef AQ_IDLINE_H
#define AQ_IDLINE_H

#include <jansson.h>
#include <stddef.h>

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

#endif
