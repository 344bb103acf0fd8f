/* ledger.h: the PostgreSQL ledger of aq(7): connecting (messages never show
 * a password), the schema the tools create and migrate themselves, and the
 * statements and COPY rows the tools write with. Workers never use it. */
#ifndef AQ_LEDGER_H
#define AQ_LEDGER_H

#include "pq.h"
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "json.h"

/* The schema version this build creates and understands. */
#define LEDGER_SCHEMA_VERSION 1

struct ledger {
	PGconn *conn;
	char shown[320];   /* where, for messages: postgresql://user@host:port/db */
	char schema[160];  /* the schema (the key prefix), quoted: "aq" */
	char err[768];     /* why the last call failed */
};

/* ledger_describe: check that conninfo (a libpq connection string or URI)
 * parses, and write where it points, without its password, into shown.
 * Returns 0, or -1 with the reason in err. */
int ledger_describe(const char *conninfo, char *shown, size_t n, char *err,
    size_t errlen);

/* ledger_config: config_database, then check the URL's syntax: a bad one
 * exits EX_USAGE naming where it came from, before anything connects. */
void ledger_config(struct config *c);

/* ledger_connect: ledger_open without the schema: for a look that must
 * change nothing (aq-health). l->schema is not set. */
int ledger_connect(struct ledger *l, const char *conninfo, int *code);

/* ledger_open: connect to conninfo, named the tool (log_progname) in
 * pg_stat_activity, and bring the schema of prefix up to date (several
 * tools starting at once migrate it once: one transaction under an
 * advisory lock). Returns 0, or -1 with the reason in l->err and *code
 * EX_USAGE (malformed conninfo) or EX_UNAVAILABLE (anything else). */
int ledger_open(struct ledger *l, const char *conninfo, const char *prefix,
    int *code);

/* ledger_open_or_die: ledger_open, or exit with its code and "cannot use
 * the postgresql ledger at WHERE: why" (from names the setting). */
void ledger_open_or_die(struct ledger *l, const char *conninfo,
    const char *from, const char *prefix);

/* ledger_close: disconnect (l may be unopened). */
void ledger_close(struct ledger *l);

/* ledger_exec: run sql (with {S} standing for the schema) with text
 * parameters. Returns the result, which the caller pq.clear()s, when it
 * succeeded; NULL with "doing: reason" in l->err otherwise. */
PGresult *ledger_exec(struct ledger *l, const char *doing, const char *sql,
    int nparams, const char *const *params);

/* ledger_run: ledger_exec without parameters or a result: 0 or -1. */
int ledger_run(struct ledger *l, const char *doing, const char *sql);

/* ledger_alive: 0 when the connection is usable, -1 when it broke. */
int ledger_alive(const struct ledger *l);

/* Rows for COPY ... FROM STDIN in text format, built in memory. */
struct copybuf {
	char *p;
	size_t len, cap;
	int fields;        /* of the row being written */
};

/* copy_text: the next field of the row: s[0..n) escaped for COPY, with
 * invalid UTF-8 and NUL bytes (which PostgreSQL text cannot hold) made
 * U+FFFD. copy_null: a NULL field. copy_int: a number. copy_row_end: end
 * the row. copy_reset: empty the buffer, keeping its memory; copy_free. */
void copy_text(struct copybuf *b, const char *s, size_t n);
void copy_null(struct copybuf *b);
void copy_int(struct copybuf *b, int64_t v);
void copy_row_end(struct copybuf *b);
void copy_reset(struct copybuf *b);
void copy_free(struct copybuf *b);

/* ledger_copy: run the COPY ... FROM STDIN statement sql ({S}: the
 * schema) and send it the rows of b. Returns 0, or -1 with l->err set. */
int ledger_copy(struct ledger *l, const char *doing, const char *sql,
    const struct copybuf *b);

/* ledger_records: the ledger's records of the jobs ids[i] of queues[i]
 * (n of them; ids and queue names already validated): rows of queue, id,
 * then the JOB_FIELDS fields of job.h as stored text (NULL: not stored).
 * NULL with l->err set on failure. */
PGresult *ledger_records(struct ledger *l, size_t n, const char *const *queues,
    const char *const *ids);

/* ledger_write_record: the record of row of such a result, as
 * job_write_record prints one. */
void ledger_write_record(struct jbuf *b, const PGresult *r, int row);

/* ledger_text_array: {"a","b",...} for a text[] parameter, in b; the
 * strings are ids or queue names, which need no escaping. */
void ledger_text_array(struct jbuf *b, size_t n, const char *const *s);


/* ledger_time_text: the time delay_ms from now, or else run_at_ms (epoch
 * ms), as timestamptz text ("2026-12-03 09:00:00.250+00"); "" when both
 * are negative (not given). */
void ledger_time_text(char *buf, size_t n, int64_t delay_ms, int64_t run_at_ms);

/* Final states: 1 for succeeded, failed and cancelled. */
int ledger_final(const char *status);

#endif
