/* json.h: JSON out (a small builder that writes records without a tree, so
 * stored JSON is copied byte for byte) and JSON in (validation with a reason). */
#ifndef AQ_JSON_H
#define AQ_JSON_H

#include <stddef.h>
#include <stdint.h>

#define JB_DEPTH 16

/* A growable buffer holding JSON text being written. */
struct jbuf {
	char *p;
	size_t len, cap;
	int depth;
	int first[JB_DEPTH]; /* per nesting level: nothing written yet */
};

/* jb_reset: empty b for a new document, keeping its memory. */
void jb_reset(struct jbuf *b);
/* jb_free: release b's memory; b can be reused after jb_reset. */
void jb_free(struct jbuf *b);

void jb_obj_begin(struct jbuf *b);
void jb_obj_end(struct jbuf *b);
/* jb_key: write the separator and "key": inside an object */
void jb_key(struct jbuf *b, const char *key);
/* jb_str: s[0..n) as a JSON string; invalid UTF-8 becomes U+FFFD */
void jb_str(struct jbuf *b, const char *s, size_t n);
void jb_int(struct jbuf *b, int64_t v);
/* jb_millis: a time or duration in ms as seconds with 3 decimals */
void jb_millis(struct jbuf *b, int64_t ms);
/* jb_raw: s[0..n) as it is: the caller vouches that it is one JSON value */
void jb_raw(struct jbuf *b, const char *s, size_t n);
void jb_null(struct jbuf *b);
/* jb_bool: true when v is not 0, else false */
void jb_bool(struct jbuf *b, int v);
/* jb_json: s[0..n), valid JSON, as one line: copied as it is unless it
 * holds a raw line break, then re-encoded compact */
void jb_json(struct jbuf *b, const char *s, size_t n);
/* jb_json_or_str: s[0..n) with jb_json when it is JSON, else as a JSON
 * string (a handler's output, stored data that need not be JSON) */
void jb_json_or_str(struct jbuf *b, const char *s, size_t n);

/* Shorthands: key and value. */
void jb_kstr(struct jbuf *b, const char *key, const char *s);
void jb_kint(struct jbuf *b, const char *key, int64_t v);

/* jb_line: append "\n" and write b to stdout; returns -1 on write error. */
int jb_line(struct jbuf *b);

/* utf8_seq: the length of the valid UTF-8 sequence at s (of at most n > 0
 * bytes): 1 to 4, or 0 when it is not valid (overlong, surrogate, cut). */
size_t utf8_seq(const unsigned char *s, size_t n);

/* json_check: 0 when s[0..n) is exactly one JSON value (any type, UTF-8);
 * otherwise -1 with the reason and column in err. */
int json_check(const char *s, size_t n, char *err, size_t errlen);

#endif
