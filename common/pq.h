/* pq.h: libpq, loaded when a tool first needs the ledger (dlopen), so the
 * tools start as fast without one as if they did not know PostgreSQL:
 * libpq and what it pulls in (TLS, Kerberos, LDAP) cost a tool 6 ms and
 * 6 MiB at each start. Call the functions through pq: pq.exec(...). */
#ifndef AQ_PQ_H
#define AQ_PQ_H

#include <libpq-fe.h>
#include <stddef.h>

struct pq_api {
	PGconn *(*connectdbParams)(const char *const *keys, const char *const *values,
	    int expand_dbname);
	ConnStatusType (*status)(const PGconn *conn);
	char *(*errorMessage)(const PGconn *conn);
	void (*finish)(PGconn *conn);
	PGresult *(*exec)(PGconn *conn, const char *query);
	PGresult *(*execParams)(PGconn *conn, const char *command, int nParams,
	    const Oid *paramTypes, const char *const *paramValues,
	    const int *paramLengths, const int *paramFormats, int resultFormat);
	ExecStatusType (*resultStatus)(const PGresult *res);
	char *(*resultErrorMessage)(const PGresult *res);
	char *(*resultErrorField)(const PGresult *res, int fieldcode);
	void (*clear)(PGresult *res);
	int (*ntuples)(const PGresult *res);
	char *(*getvalue)(const PGresult *res, int tup_num, int field_num);
	int (*getlength)(const PGresult *res, int tup_num, int field_num);
	int (*getisnull)(const PGresult *res, int tup_num, int field_num);
	PGresult *(*getResult)(PGconn *conn);
	int (*putCopyData)(PGconn *conn, const char *buffer, int nbytes);
	int (*putCopyEnd)(PGconn *conn, const char *errormsg);
	PQnoticeReceiver (*setNoticeReceiver)(PGconn *conn, PQnoticeReceiver proc,
	    void *arg);
	char *(*escapeIdentifier)(PGconn *conn, const char *str, size_t len);
	void (*freemem)(void *ptr);
	PQconninfoOption *(*conninfoParse)(const char *conninfo, char **errmsg);
	void (*conninfoFree)(PQconninfoOption *connOptions);
};

/* The functions, once pq_load has succeeded. */
extern struct pq_api pq;

/* pq_load: load libpq (once); 0, or -1 with the reason in err. */
int pq_load(char *err, size_t errlen);

#endif
