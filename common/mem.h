/* mem.h: allocation that cannot return NULL: out of memory is fatal (EX_OSERR). */
#ifndef AQ_MEM_H
#define AQ_MEM_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
/* xrealloc: like realloc, but p stays valid on failure because it exits */
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#endif
