/* config.h: the settings every tool shares, from flags over environment over
 * defaults: Redis URL (or a file holding it), queue, key prefix, line limit. */
#ifndef AQ_CONFIG_H
#define AQ_CONFIG_H

#include <getopt.h>
#include <stddef.h>
#include <stdio.h>

#include "url.h"

#define CONFIG_DEFAULT_URL "redis://127.0.0.1:6379"
#define CONFIG_DEFAULT_QUEUE "default"
#define CONFIG_DEFAULT_PREFIX "aq"
#define REPLICAS_MAX 64 /* --replicas of aq-enqueue and aq-worker */

/* Long-only option codes shared by the tools; a tool's own start at OPT_TOOL. */
enum {
	OPT_REDIS_URL_FILE = 256,
	OPT_PREFIX,
	OPT_MAX_LINE,
	OPT_VERSION,
	OPT_DATABASE_URL,
	OPT_DATABASE_URL_FILE,
	OPT_HANDLER = 280,   /* handler.h's, of the tools that run handlers */
	OPT_TOOL = 300
};

/* The entries of struct option for the shared flags, for a tool's table. */
#define CONFIG_LONG_OPTIONS \
	{"queue", required_argument, NULL, 'q'}, \
	{"redis-url", required_argument, NULL, 'u'}, \
	{"redis-url-file", required_argument, NULL, OPT_REDIS_URL_FILE}, \
	{"prefix", required_argument, NULL, OPT_PREFIX}, \
	{"help", no_argument, NULL, 'h'}, \
	{"version", no_argument, NULL, OPT_VERSION}
#define CONFIG_LONG_OPTIONS_LINES \
	{"max-line", required_argument, NULL, OPT_MAX_LINE}
/* ... and for the tools that use the PostgreSQL ledger */
#define CONFIG_LONG_OPTIONS_LEDGER \
	{"database-url", required_argument, NULL, OPT_DATABASE_URL}, \
	{"database-url-file", required_argument, NULL, OPT_DATABASE_URL_FILE}

struct config {
	const char *queue;
	const char *prefix;
	size_t max_line;
	struct redis_url redis;  /* valid after config_finish */
	/* where the values came from, for messages: "--queue", "AQ_QUEUE", ... */
	const char *queue_from, *prefix_from;
	const char *url_flag, *url_file_flag;
	const char *db_flag, *db_file_flag;
	char *database_url;      /* after config_database: NULL for no ledger */
	const char *database_from;
};

/* config_init: defaults, then the environment (AQ_QUEUE, AQ_PREFIX). */
void config_init(struct config *c);

/* config_option: apply a shared flag (its getopt code and argument); returns
 * 1 when opt was one, 0 otherwise. -h and --version exit from here, with usage
 * printing the tool's usage line. Bad values exit with EX_USAGE. */
int config_option(struct config *c, int opt, const char *arg,
    void (*usage)(FILE *));

/* config_finish: validate queue and prefix, and read and parse the Redis URL:
 * --redis-url, --redis-url-file, AQ_REDIS_URL, AQ_REDIS_URL_FILE, default,
 * in that order. Exits with EX_USAGE (or EX_NOINPUT for an unreadable file)
 * naming the source of a bad value. */
void config_finish(struct config *c);

/* config_check_names: config_finish's check of the queue and prefix
 * alone, for a tool that has no Redis to reach. */
void config_check_names(const struct config *c);

/* config_database: the PostgreSQL ledger's connection string from
 * --database-url, --database-url-file, AQ_DATABASE_URL, AQ_DATABASE_URL_FILE
 * (in that order) into c->database_url, or NULL when none is given: no
 * ledger. Its syntax is checked when the ledger is opened (ledger.h). */
void config_database(struct config *c);

/* config_free: wipe and release what config_finish and config_database
 * read (passwords included). */
void config_free(struct config *c);

/* config_parse_shared: parse argv for a tool that takes only the shared
 * flags and --max-line (getopt's optind then points at the operands);
 * anything else prints usage and exits EX_USAGE. */
void config_parse_shared(struct config *c, int argc, char **argv,
    void (*usage)(FILE *));

/* config_parse_ledger: config_parse_shared, with the database flags too. */
void config_parse_ledger(struct config *c, int argc, char **argv,
    void (*usage)(FILE *));

/* CONFIG_OPTSTRING: the short options every tool shares, after a ':' so
 * that getopt_long reports a missing value (':') apart from an unknown
 * option ('?') and prints nothing itself: config_bad_option does. */
#define CONFIG_OPTSTRING ":q:u:h"

/* config_getopt: the next option of argv (getopt_long with
 * CONFIG_OPTSTRING and longopts) that config_option does not take, which
 * applies the shared flags on the way: its code, with optarg its value,
 * or -1 when the options end. A code the tool does not take (as '?' or
 * ':') goes to config_bad_option. */
int config_getopt(struct config *c, int argc, char **argv,
    const struct option *longopts, void (*usage)(FILE *));

/* config_bad_option: getopt_long returned c ('?' or ':', or a code the
 * tool does not take) for the option just parsed: exit EX_USAGE with a
 * message naming it ("unknown option '--bogus'", "option '--queue' needs
 * a value", "option '--burst' takes no value"), the usage, and a pointer
 * to -h. */
void config_bad_option(int c, char **argv, const struct option *longopts,
    void (*usage)(FILE *)) __attribute__((noreturn));

/* option_int: the integer value of option name in [lo, hi], or exit
 * EX_USAGE naming the option and the range. */
long option_int(const char *name, const char *arg, long lo, long hi);

/* option_queue: add arg, a -q of a tool that takes several queues, to
 * queues (*n of them so far, at most max), or exit EX_USAGE naming a bad
 * queue name or one -q too many. */
void option_queue(const char *arg, const char **queues, int *n, int max);

/* option_duration: a duration in ms (see duration.h) greater than zero
 * unless zero_ok, or exit EX_USAGE naming the option. */
long long option_duration(const char *name, const char *arg, int zero_ok);

#endif
