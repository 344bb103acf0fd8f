/* ledger.c: the PostgreSQL ledger: connection, schema migrations, COPY rows. */
#include "ledger.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "job.h"
#include "json.h"
#include "log.h"
#include "mem.h"

#define CONNECT_TIMEOUT_S "10"
#define SQL_MAX 8192

/*
 * The migrations, in order: migration i takes the schema from version i to
 * i + 1. Each runs once, inside the transaction that records it. {S} is
 * the schema. Every index costs the archive's upserts: the unfinished jobs
 * (read after Redis lost its data, rarely) are found through the primary
 * key; the unseen ones (read at every pass) have an index of their own,
 * which a row leaves once archived. Times are timestamptz, so the ledger reads well in psql;
 * JSON is json, not jsonb, so payloads, results and events come back byte
 * for byte as they went in.
 */
static const char *const migrations[LEDGER_SCHEMA_VERSION] = {
	"CREATE TABLE {S}.queues ("
	"  queue text PRIMARY KEY,"
	"  created timestamptz NOT NULL DEFAULT now());"
	"CREATE TABLE {S}.jobs ("
	"  queue text NOT NULL,"
	"  id text NOT NULL,"
	"  status text NOT NULL,"
	"  payload json NOT NULL,"
	"  priority integer NOT NULL DEFAULT 0,"
	"  max_attempts integer NOT NULL,"
	"  timeout_ms bigint,"
	"  run_at timestamptz,"
	"  attempt integer NOT NULL DEFAULT 0,"
	"  created timestamptz NOT NULL DEFAULT now(),"
	"  started timestamptz,"
	"  finished timestamptz,"
	"  worker text,"
	"  exit_code integer,"
	"  result json,"
	"  error text,"
	"  enqueued timestamptz NOT NULL DEFAULT now(),"
	"  seen boolean NOT NULL DEFAULT false,"
	"  archived timestamptz,"
	"  PRIMARY KEY (queue, id));"
	"CREATE INDEX jobs_unseen ON {S}.jobs (queue, enqueued)"
	"  WHERE NOT seen AND status NOT IN ('succeeded', 'failed', 'cancelled');"
	"CREATE TABLE {S}.events ("
	"  queue text NOT NULL,"
	"  job_id text NOT NULL,"
	"  ms bigint NOT NULL,"
	"  seq bigint NOT NULL,"
	"  attempt integer,"
	"  type text NOT NULL,"
	"  data json NOT NULL,"
	"  PRIMARY KEY (queue, job_id, ms, seq));",
};

/* Expand {S} in tmpl into out; -1 when it does not fit. */
static int
expand(const struct ledger *l, const char *tmpl, char *out, size_t n)
{
	size_t len = 0, slen = strlen(l->schema);

	for (const char *p = tmpl; *p; p++) {
		if (p[0] == '{' && p[1] == 'S' && p[2] == '}') {
			if (len + slen >= n)
				return -1;
			memcpy(out + len, l->schema, slen);
			len += slen;
			p += 2;
		} else {
			if (len + 1 >= n)
				return -1;
			out[len++] = *p;
		}
	}
	out[len] = '\0';
	return 0;
}

/* The last line of libpq's message, without its trailing newline. */
static void
set_error(struct ledger *l, const char *doing, const char *why)
{
	char msg[512];
	size_t n;

	snprintf(msg, sizeof msg, "%s", why && *why ? why : "unknown error");
	n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
		msg[--n] = '\0';
	/* one line: libpq's "...\n\tIs the server running..." */
	char *w = msg;
	for (char *p = msg; *p; p++) {
		if (*p == '\n' || *p == '\t') {
			if (w > msg && w[-1] != ' ')
				*w++ = ' ';
		} else {
			*w++ = *p;
		}
	}
	*w = '\0';
	if (doing)
		snprintf(l->err, sizeof l->err, "%s: %s", doing, msg);
	else
		snprintf(l->err, sizeof l->err, "%s", msg);
}

static const char *
option_of(const PQconninfoOption *opts, const char *name)
{
	for (const PQconninfoOption *o = opts; o->keyword; o++)
		if (strcmp(o->keyword, name) == 0 && o->val && *o->val)
			return o->val;
	return NULL;
}

int
ledger_describe(const char *conninfo, char *shown, size_t n, char *err,
    size_t errlen)
{
	char *why = NULL;
	PQconninfoOption *opts;
	const char *host, *port, *db, *user;

	if (pq_load(err, errlen) < 0)
		return -1;
	opts = pq.conninfoParse(conninfo, &why);

	if (!opts) {
		/* libpq quotes the string, password and all: cut it off */
		char *at = why ? strstr(why, conninfo) : NULL;
		if (at) {
			while (at > why && (at[-1] == '"' || at[-1] == ' ' || at[-1] == ':'))
				at--;
			*at = '\0';
		}
		snprintf(err, errlen, "invalid database URL: %s",
		    why ? why : "out of memory");
		size_t len = strlen(err);
		while (len > 0 && (err[len - 1] == '\n' || err[len - 1] == ' '))
			err[--len] = '\0';
		pq.freemem(why);
		return -1;
	}
	host = option_of(opts, "host");
	if (!host)
		host = option_of(opts, "hostaddr");
	port = option_of(opts, "port");
	db = option_of(opts, "dbname");
	user = option_of(opts, "user");
	if (host && host[0] == '/')
		snprintf(shown, n, "postgresql://%s%s/%s?host=%s%s%s", user ? user : "",
		    user ? "@" : "", db ? db : "", host, port ? "&port=" : "",
		    port ? port : "");
	else
		snprintf(shown, n, "postgresql://%s%s%s%s%s/%s", user ? user : "",
		    user ? "@" : "", host ? host : "", port ? ":" : "", port ? port : "",
		    db ? db : "");
	pq.conninfoFree(opts);
	return 0;
}

void
ledger_config(struct config *c)
{
	char shown[320], err[512];

	config_database(c);
	if (c->database_url && pq_load(err, sizeof err) < 0)
		die(EX_UNAVAILABLE, "%s", err);
	if (c->database_url &&
	    ledger_describe(c->database_url, shown, sizeof shown, err, sizeof err) < 0)
		die(EX_USAGE, "%s (from %s)", err, c->database_from);
}

/* Notices (CREATE ... IF NOT EXISTS, and the like) are not for the user;
 * warnings are, with the server named. */
static void
on_notice(void *arg, const PGresult *res)
{
	const char *sev = pq.resultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *msg = pq.resultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	(void)arg;
	if (sev && strcmp(sev, "WARNING") == 0)
		warnmsg("postgresql says: %s", msg ? msg : "(no message)");
}

PGresult *
ledger_exec(struct ledger *l, const char *doing, const char *sql, int nparams,
    const char *const *params)
{
	char text[SQL_MAX];
	PGresult *r;
	ExecStatusType st;

	if (expand(l, sql, text, sizeof text) < 0)
		die(EX_SOFTWARE, "internal error: SQL of %s too long", doing);
	r = nparams > 0 ? pq.execParams(l->conn, text, nparams, NULL, params, NULL,
	    NULL, 0) : pq.exec(l->conn, text);
	st = pq.resultStatus(r);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return r;
	set_error(l, doing, r ? pq.resultErrorMessage(r) : pq.errorMessage(l->conn));
	if (!r || !*pq.resultErrorMessage(r))
		set_error(l, doing, pq.errorMessage(l->conn));
	pq.clear(r);
	return NULL;
}

int
ledger_run(struct ledger *l, const char *doing, const char *sql)
{
	PGresult *r = ledger_exec(l, doing, sql, 0, NULL);

	pq.clear(r);
	return r ? 0 : -1;
}

int
ledger_alive(const struct ledger *l)
{
	return l->conn && pq.status(l->conn) == CONNECTION_OK ? 0 : -1;
}

/* The version recorded in the schema: 0 when there is none yet, -1 on error. */
static int
schema_version(struct ledger *l)
{
	char table[sizeof l->schema + 32];
	const char *params[1] = {table};
	PGresult *r;
	int v;

	snprintf(table, sizeof table, "%s.schema_version", l->schema);
	r = ledger_exec(l, "looking for the schema", "SELECT to_regclass($1) IS NOT NULL",
	    1, params);
	if (!r)
		return -1;
	v = strcmp(pq.getvalue(r, 0, 0), "t") == 0;
	pq.clear(r);
	if (!v)
		return 0;
	r = ledger_exec(l, "reading the schema version",
	    "SELECT coalesce(max(version), 0) FROM {S}.schema_version", 0, NULL);
	if (!r)
		return -1;
	v = atoi(pq.getvalue(r, 0, 0));
	pq.clear(r);
	return v;
}

/* Apply what is missing, in one transaction, under an advisory lock: a
 * tool that waited for the lock finds the work done. */
static int
migrate(struct ledger *l)
{
	char lockname[sizeof l->schema + 32];
	const char *params[1] = {lockname};
	PGresult *r;
	int v;

	snprintf(lockname, sizeof lockname, "aq ledger schema %s", l->schema);
	if (ledger_run(l, "starting the migration", "BEGIN") < 0)
		return -1;
	r = ledger_exec(l, "taking the migration lock",
	    "SELECT pg_advisory_xact_lock(hashtext($1))", 1, params);
	if (!r)
		goto fail;
	pq.clear(r);
	if (ledger_run(l, "creating the schema",
	    "CREATE SCHEMA IF NOT EXISTS {S};"
	    "CREATE TABLE IF NOT EXISTS {S}.schema_version ("
	    "  version integer PRIMARY KEY,"
	    "  applied timestamptz NOT NULL DEFAULT now())") < 0)
		goto fail;
	if ((v = schema_version(l)) < 0)
		goto fail;
	for (; v < LEDGER_SCHEMA_VERSION; v++) {
		char doing[64], num[16];
		const char *vp[1] = {num};
		snprintf(doing, sizeof doing, "migrating the schema to version %d", v + 1);
		snprintf(num, sizeof num, "%d", v + 1);
		if (ledger_run(l, doing, migrations[v]) < 0)
			goto fail;
		r = ledger_exec(l, doing, "INSERT INTO {S}.schema_version (version) "
		    "VALUES ($1)", 1, vp);
		if (!r)
			goto fail;
		pq.clear(r);
	}
	return ledger_run(l, "committing the migration", "COMMIT");
fail:
	pq.clear(pq.exec(l->conn, "ROLLBACK"));
	return -1;
}

static int
bring_schema_up_to_date(struct ledger *l)
{
	int v = schema_version(l);

	if (v < 0)
		return -1;
	if (v < LEDGER_SCHEMA_VERSION && migrate(l) < 0)
		return -1;
	if (v > LEDGER_SCHEMA_VERSION) {
		snprintf(l->err, sizeof l->err, "its schema %s is at version %d, "
		    "newer than this aq knows (%d): upgrade aq", l->schema, v,
		    LEDGER_SCHEMA_VERSION);
		return -1;
	}
	return 0;
}

int
ledger_connect(struct ledger *l, const char *conninfo, int *code)
{
	/* defaults first: what the connection string says wins, but for the
	 * client encoding, which comes after it: the text aq sends and reads
	 * is UTF-8 (invalid bytes made U+FFFD), whatever the database's */
	const char *keys[] = {"connect_timeout", "fallback_application_name",
	    "dbname", "client_encoding", NULL};
	const char *vals[] = {CONNECT_TIMEOUT_S, log_progname(), conninfo, "UTF8",
	    NULL};

	memset(l, 0, sizeof *l);
	*code = EX_USAGE;
	if (ledger_describe(conninfo, l->shown, sizeof l->shown, l->err,
	    sizeof l->err) < 0)
		return -1;
	*code = EX_UNAVAILABLE;
	l->conn = pq.connectdbParams(keys, vals, 1);
	if (!l->conn) {
		snprintf(l->err, sizeof l->err, "out of memory");
		return -1;
	}
	if (pq.status(l->conn) != CONNECTION_OK) {
		set_error(l, NULL, pq.errorMessage(l->conn));
		return -1;
	}
	pq.setNoticeReceiver(l->conn, on_notice, NULL);
	return 0;
}

int
ledger_open(struct ledger *l, const char *conninfo, const char *prefix, int *code)
{
	char *quoted;

	if (ledger_connect(l, conninfo, code) < 0)
		return -1;
	quoted = pq.escapeIdentifier(l->conn, prefix, strlen(prefix));
	if (!quoted || strlen(quoted) >= sizeof l->schema) {
		set_error(l, "quoting the schema name", pq.errorMessage(l->conn));
		pq.freemem(quoted);
		return -1;
	}
	snprintf(l->schema, sizeof l->schema, "%s", quoted);
	pq.freemem(quoted);
	return bring_schema_up_to_date(l);
}

void
ledger_open_or_die(struct ledger *l, const char *conninfo, const char *from,
    const char *prefix)
{
	int code;

	if (ledger_open(l, conninfo, prefix, &code) == 0)
		return;
	if (code == EX_USAGE)
		die(code, "%s (from %s)", l->err, from);
	die(code, "cannot use the postgresql ledger at %s: %s", l->shown, l->err);
}

void
ledger_close(struct ledger *l)
{
	if (l->conn)
		pq.finish(l->conn);
	l->conn = NULL;
}

/* ---- COPY rows -------------------------------------------------------- */

static void
copy_reserve(struct copybuf *b, size_t more)
{
	b->p = xgrow(b->p, &b->cap, b->len + more, 64 * 1024, 1);
}

static void
copy_put(struct copybuf *b, const char *s, size_t n)
{
	copy_reserve(b, n);
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void
copy_sep(struct copybuf *b)
{
	if (b->fields++ > 0)
		copy_put(b, "\t", 1);
}

void
copy_text(struct copybuf *b, const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;

	copy_sep(b);
	copy_reserve(b, n + 16);
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		size_t seq;
		if (c == '\\') {
			copy_put(b, "\\\\", 2);
			i++;
		} else if (c == '\t') {
			copy_put(b, "\\t", 2);
			i++;
		} else if (c == '\n') {
			copy_put(b, "\\n", 2);
			i++;
		} else if (c == '\r') {
			copy_put(b, "\\r", 2);
			i++;
		} else if (c == 0 || (seq = utf8_seq(s + i, n - i)) == 0) {
			copy_put(b, "\xef\xbf\xbd", 3);
			i++;
		} else {
			copy_put(b, str + i, seq);
			i += seq;
		}
	}
}

void
copy_null(struct copybuf *b)
{
	copy_sep(b);
	copy_put(b, "\\N", 2);
}

void
copy_int(struct copybuf *b, int64_t v)
{
	char num[24];
	int n = snprintf(num, sizeof num, "%" PRId64, v);

	copy_sep(b);
	copy_put(b, num, (size_t)n);
}

void
copy_row_end(struct copybuf *b)
{
	copy_put(b, "\n", 1);
	b->fields = 0;
}

void
copy_reset(struct copybuf *b)
{
	b->len = 0;
	b->fields = 0;
}

void
copy_free(struct copybuf *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

int
ledger_copy(struct ledger *l, const char *doing, const char *sql,
    const struct copybuf *b)
{
	char text[SQL_MAX];
	PGresult *r;
	int ok;

	if (expand(l, sql, text, sizeof text) < 0)
		die(EX_SOFTWARE, "internal error: SQL of %s too long", doing);
	r = pq.exec(l->conn, text);
	if (pq.resultStatus(r) != PGRES_COPY_IN) {
		set_error(l, doing, r ? pq.resultErrorMessage(r) : pq.errorMessage(l->conn));
		pq.clear(r);
		return -1;
	}
	pq.clear(r);
	/* libpq buffers; one call per MiB keeps its buffer small */
	for (size_t off = 0; off < b->len;) {
		size_t n = b->len - off > (1 << 20) ? (1 << 20) : b->len - off;
		if (pq.putCopyData(l->conn, b->p + off, (int)n) != 1) {
			set_error(l, doing, pq.errorMessage(l->conn));
			return -1;
		}
		off += n;
	}
	if (pq.putCopyEnd(l->conn, NULL) != 1) {
		set_error(l, doing, pq.errorMessage(l->conn));
		return -1;
	}
	r = pq.getResult(l->conn);
	ok = pq.resultStatus(r) == PGRES_COMMAND_OK;
	if (!ok)
		set_error(l, doing, r ? pq.resultErrorMessage(r) : pq.errorMessage(l->conn));
	pq.clear(r);
	while ((r = pq.getResult(l->conn)))
		pq.clear(r);
	return ok ? 0 : -1;
}

void
ledger_text_array(struct jbuf *b, size_t n, const char *const *s)
{
	jb_reset(b);
	jb_raw(b, "{", 1);
	for (size_t i = 0; i < n; i++) {
		if (i)
			jb_raw(b, ",", 1);
		jb_raw(b, "\"", 1);
		jb_raw(b, s[i], strlen(s[i]));
		jb_raw(b, "\"", 1);
	}
	jb_raw(b, "}", 1);
}

/* epoch ms of a timestamptz column, as text */
#define MS(col) "round(extract(epoch FROM " col ") * 1000)::bigint::text"

PGresult *
ledger_records(struct ledger *l, size_t n, const char *const *queues,
    const char *const *ids)
{
	struct jbuf qa = {0}, ia = {0};
	PGresult *r;

	ledger_text_array(&qa, n, queues);
	ledger_text_array(&ia, n, ids);
	const char *params[2] = {qa.p, ia.p};
	/* the order of job.h's JOB_FIELDS */
	r = ledger_exec(l, "reading job records",
	    "SELECT queue, id, status, attempt::text, max_attempts::text,"
	    "  priority::text, " MS("created") ", " MS("run_at") ","
	    "  " MS("started") ", " MS("finished") ", timeout_ms::text, worker,"
	    "  exit_code::text, payload::text, result::text, error,"
	    "  NULL::text" /* after: the ledger keeps no parents */
	    " FROM {S}.jobs WHERE (queue, id) IN"
	    "  (SELECT * FROM unnest($1::text[], $2::text[]))", 2, params);
	jb_free(&qa);
	jb_free(&ia);
	return r;
}

void
ledger_write_record(struct jbuf *b, const PGresult *r, int row)
{
	const char *values[JOB_FIELDS];
	size_t lens[JOB_FIELDS];

	for (int i = 0; i < JOB_FIELDS; i++) {
		int null = pq.getisnull(r, row, i + 2);
		values[i] = null ? NULL : pq.getvalue(r, row, i + 2);
		lens[i] = null ? 0 : (size_t)pq.getlength(r, row, i + 2);
	}
	job_write_values(b, pq.getvalue(r, row, 1), pq.getvalue(r, row, 0), values, lens);
}

void
ledger_time_text(char *buf, size_t n, int64_t delay_ms, int64_t run_at_ms)
{
	int64_t ms = delay_ms >= 0 ? clock_epoch_ms() + delay_ms : run_at_ms;
	time_t secs;
	struct tm tm;

	buf[0] = '\0';
	if (delay_ms < 0 && run_at_ms < 0)
		return;
	secs = (time_t)(ms / 1000);
	if (!gmtime_r(&secs, &tm))
		return;
	snprintf(buf, n, "%04d-%02d-%02d %02d:%02d:%02d.%03d+00", tm.tm_year + 1900,
	    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	    (int)(ms % 1000));
}

int
ledger_final(const char *status)
{
	return strcmp(status, "succeeded") == 0 || strcmp(status, "failed") == 0 ||
	    strcmp(status, "cancelled") == 0;
}
