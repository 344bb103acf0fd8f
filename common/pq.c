/* pq.c: libpq loaded on first use, its functions looked up once. */
#include "pq.h"

#include <dlfcn.h>
#include <stdio.h>

/* Before the load, clearing no result is still a no-op (as PQclear(NULL)). */
static void
clear_nothing(PGresult *res)
{
	(void)res;
}

struct pq_api pq = {.clear = clear_nothing};

/* Debian's libpq5 (and every libpq since PostgreSQL 8.2) is soname 5. */
#define LIBPQ "libpq.so.5"

int
pq_load(char *err, size_t errlen)
{
	static int loaded;
	static const struct {
		const char *name;
		size_t off;
	} fns[] = {
#define FN(field, sym) {#sym, offsetof(struct pq_api, field)}
		FN(connectdbParams, PQconnectdbParams), FN(status, PQstatus),
		FN(errorMessage, PQerrorMessage), FN(finish, PQfinish),
		FN(exec, PQexec), FN(execParams, PQexecParams),
		FN(resultStatus, PQresultStatus),
		FN(resultErrorMessage, PQresultErrorMessage),
		FN(resultErrorField, PQresultErrorField), FN(clear, PQclear),
		FN(ntuples, PQntuples), FN(getvalue, PQgetvalue),
		FN(getlength, PQgetlength), FN(getisnull, PQgetisnull),
		FN(getResult, PQgetResult), FN(putCopyData, PQputCopyData),
		FN(putCopyEnd, PQputCopyEnd), FN(setNoticeReceiver, PQsetNoticeReceiver),
		FN(escapeIdentifier, PQescapeIdentifier), FN(freemem, PQfreemem),
		FN(conninfoParse, PQconninfoParse), FN(conninfoFree, PQconninfoFree),
#undef FN
	};
	void *lib;

	if (loaded)
		return 0;
	if (!(lib = dlopen(LIBPQ, RTLD_NOW | RTLD_LOCAL))) {
		snprintf(err, errlen, "cannot load %s, which the ledger needs (Debian: "
		    "libpq5): %s", LIBPQ, dlerror());
		return -1;
	}
	for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
		void *f = dlsym(lib, fns[i].name);
		if (!f) {
			snprintf(err, errlen, "%s has no %s: %s", LIBPQ, fns[i].name, dlerror());
			return -1;
		}
		*(void **)((char *)&pq + fns[i].off) = f;
	}
	loaded = 1;
	return 0;
}
