/* jsonl.h: the one line reader of every tool's stdin: bounded line length,
 * line numbers for messages, CRLF and a missing final newline accepted. */
#ifndef AQ_JSONL_H
#define AQ_JSONL_H

#include <stddef.h>

#define JSONL_MAX_DEFAULT ((size_t)16 << 20)
#define JSONL_MAX_LIMIT ((size_t)1 << 30)

/* Called per line: line[0..len) without its "\n" or "\r\n", NUL-terminated,
 * writable; lineno counts from 1 over every line read, blank ones too.
 * A nonzero return stops the reading and is returned by jsonl_each. */
typedef int (*jsonl_fn)(char *line, size_t len, unsigned long lineno, void *ctx);

/* jsonl_each: call fn for every line of fd that is not blank (only spaces
 * and tabs). A line longer than max bytes is not passed on: it is reported on
 * stderr as "line N: ..." and counted in *rejected. Returns 0 at end of
 * input, -1 after reporting a read error, or fn's nonzero return. */
int jsonl_each(int fd, size_t max, jsonl_fn fn, void *ctx,
    unsigned long *rejected);

/* Called when the input has nothing more to read yet and the reader is
 * about to wait for it: a tool sends what it holds, so a slow producer
 * (tail -f | aq-enqueue) sees its lines go through at once. */
typedef void (*jsonl_idle_fn)(void *ctx);

/* jsonl_each_idle: jsonl_each, calling idle (when not NULL) before each
 * read that would block; the wait for input is wait_readable's, so a tool
 * that called stdout_watch ends there once the reader of its output has
 * gone. */
int jsonl_each_idle(int fd, size_t max, jsonl_fn fn, jsonl_idle_fn idle,
    void *ctx, unsigned long *rejected);

/* jsonl_trim: drop the spaces and tabs around s[0..*n) (NUL-terminated,
 * writable): the new end gets a NUL; returns the new start. */
char *jsonl_trim(char *s, size_t *n);

/* jsonl_parse_max: a --max-line value ("65536", "64K", "16M", "1G") into
 * *max; -1 when malformed, zero, or above JSONL_MAX_LIMIT. */
int jsonl_parse_max(const char *s, size_t *max);

#endif
