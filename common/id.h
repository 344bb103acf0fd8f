/* id.h: job ids (UUIDv7, generated) and the validation of ids, queue names
 * and key prefixes: anything that would become part of a Redis key. */
#ifndef AQ_ID_H
#define AQ_ID_H

#include <stddef.h>

#define ID_MAX 200
#define QUEUE_MAX 100
#define PREFIX_MAX 64
#define UUID_LEN 36

/* id_valid: 1 when s[0..n) is 1-200 of A-Za-z0-9._:@/- */
int id_valid(const char *s, size_t n);

/* queue_valid: 1 when s is 1-100 of A-Za-z0-9._- */
int queue_valid(const char *s);

/* prefix_valid: 1 when s is 1-64 of A-Za-z0-9._:- (no braces: they would
 * break the {queue} hash tag) */
int prefix_valid(const char *s);

/* uuidv7: write a new UUIDv7 (RFC 9562) and its NUL into out; ids from one
 * process are strictly increasing. Returns -1 when no randomness is to be had. */
int uuidv7(char out[UUID_LEN + 1]);

#endif
