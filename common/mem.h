/* mem.h: allocation that cannot return NULL: out of memory is fatal
 * (EX_OSERR); arrays of allocated strings. */
#ifndef AQ_MEM_H
#define AQ_MEM_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
/* xrealloc: like realloc, but p stays valid on failure because it exits */
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* xgrow: make room in p (room for *cap items of size bytes) for need
 * items: when *cap is less, p is reallocated to *cap doubled (first when
 * it is 0) as often as it takes, and *cap updated. Returns p. */
void *xgrow(void *p, size_t *cap, size_t need, size_t first, size_t size);

/* strv_cmp: the qsort and bsearch order of two char *: strcmp's. */
int strv_cmp(const void *a, const void *b);

/* strv_sort_unique: sort the allocated strings v[0..n) and free the
 * repeated ones; returns how many are left. */
size_t strv_sort_unique(char **v, size_t n);

#endif
