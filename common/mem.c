/* mem.c: allocation wrappers that exit with EX_OSERR when memory runs out;
 * arrays of allocated strings. */
#include "mem.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

static void *
check(void *p, size_t n)
{
	if (!p && n > 0)
		die(EX_OSERR, "out of memory allocating %zu bytes", n);
	return p;
}

void *
xmalloc(size_t n)
{
	return check(malloc(n ? n : 1), n);
}

void *
xcalloc(size_t n, size_t size)
{
	return check(calloc(n ? n : 1, size ? size : 1), n * size);
}

void *
xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	return check(q, n);
}

char *
xstrdup(const char *s)
{
	return check(strdup(s), strlen(s) + 1);
}

char *
xstrndup(const char *s, size_t n)
{
	return check(strndup(s, n), n + 1);
}

void *
xgrow(void *p, size_t *cap, size_t need, size_t first, size_t size)
{
	size_t n = *cap ? *cap : first;

	if (need <= *cap)
		return p;
	while (n < need)
		n *= 2;
	*cap = n;
	return xrealloc(p, n * size);
}

int
strv_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

size_t
strv_sort_unique(char **v, size_t n)
{
	size_t k = 0;

	if (n < 2)
		return n;
	qsort(v, n, sizeof *v, strv_cmp);
	for (size_t i = 0; i < n; i++) {
		if (k > 0 && strcmp(v[k - 1], v[i]) == 0)
			free(v[i]);
		else
			v[k++] = v[i];
	}
	return k;
}
