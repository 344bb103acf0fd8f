/* url.h: the Redis URL parser: redis://[[user]:password@]host[:port][/db],
 * unix://[[user]:password@]/path[?db=N] and
 * redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/name[/db]
 * and redis+cluster://[[user]:password@]host[:port][,host[:port]...];
 * passwords never leave it unmasked. */
#ifndef AQ_URL_H
#define AQ_URL_H

#include <stddef.h>

#define URL_HOST_MAX 256
#define URL_PATH_MAX 108 /* sizeof(sun_path) */
#define URL_SECRET_MAX 512
#define URL_SOURCE_MAX 256
#define URL_NODES_MAX 8           /* sentinels, or a cluster's seed nodes */
#define URL_MASTER_MAX 128
#define SENTINEL_DEFAULT_PORT 26379

/* Where a URL was given, for the advice of messages (set by config). */
enum url_source {
	URL_FROM_DEFAULT,             /* none given: redis://127.0.0.1:6379 */
	URL_FROM_FLAG,                /* --redis-url */
	URL_FROM_FLAG_FILE,           /* --redis-url-file PATH */
	URL_FROM_ENV,                 /* AQ_REDIS_URL */
	URL_FROM_ENV_FILE             /* AQ_REDIS_URL_FILE=PATH */
};

/* A TCP address, as a URL gives it. */
struct url_addr {
	char host[URL_HOST_MAX];      /* without the brackets of an IPv6 literal */
	int port;                     /* 1..65535 */
};

/* url_addr_equal: a and b are the same host (as written) and port. */
int url_addr_equal(const struct url_addr *a, const struct url_addr *b);

enum url_kind {
	URL_SERVER,                   /* redis:// or unix://: one server */
	URL_SENTINEL,                 /* redis+sentinel://: the primary they name */
	URL_CLUSTER                   /* redis+cluster://: the node of a key's slot */
};

struct redis_url {
	enum url_kind kind;
	int is_unix;                  /* 1: path is set; 0: host and port */
	char host[URL_HOST_MAX];      /* without the brackets of an IPv6 literal */
	int port;                     /* 1..65535, default 6379 */
	/* URL_SENTINEL: host and port are not given but asked of these
	 * sentinels, which know the primary named master (see sentinel.h);
	 * URL_CLUSTER: the nodes asked for the slot map (see cluster.h) */
	int nnodes;
	struct url_addr nodes[URL_NODES_MAX];
	char master[URL_MASTER_MAX];
	char path[URL_PATH_MAX];      /* unix socket path */
	char user[URL_SECRET_MAX];    /* ACL user; empty: the default user */
	char password[URL_SECRET_MAX];/* empty: no AUTH */
	int db;                       /* SELECT this when non-zero, 0..65535 */
	enum url_source source;       /* not set by url_parse: by its caller */
	char source_file[URL_SOURCE_MAX]; /* the file, for the _FILE sources */
};

/* url_parse: fill *u from text; on failure return -1 and put the reason in
 * err (never the password). Percent-escapes in user and password are decoded. */
int url_parse(const char *text, struct redis_url *u, char *err, size_t errlen);

/* url_display: write u as a URL with the password replaced by "***", for
 * messages; returns buf. */
char *url_display(const struct redis_url *u, char *buf, size_t len);

/* url_source_name: where u was given, for messages: "--redis-url",
 * "AQ_REDIS_URL", "--redis-url-file PATH", "AQ_REDIS_URL_FILE PATH" or
 * "the default"; returns buf. */
char *url_source_name(const struct redis_url *u, char *buf, size_t len);

/* url_source_fix: where a user puts the right URL instead, for the "what
 * to do" of messages: "--redis-url", "AQ_REDIS_URL", "the file PATH
 * (--redis-url-file)", or "AQ_REDIS_URL or --redis-url" for the default;
 * returns buf. */
char *url_source_fix(const struct redis_url *u, char *buf, size_t len);

/* url_forget: wipe the secrets of u (explicit_bzero). */
void url_forget(struct redis_url *u);

#endif
