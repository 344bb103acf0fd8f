/* config.c: shared flags and environment, validated before any connection. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "duration.h"
#include "id.h"
#include "jsonl.h"
#include "log.h"
#include "mem.h"

#ifndef AQ_VERSION
#define AQ_VERSION "0.0.0"
#endif

static const char *
env_or(const char *name, const char *fallback)
{
	const char *v = getenv(name);

	return v && *v ? v : fallback;
}

void
config_init(struct config *c)
{
	memset(c, 0, sizeof *c);
	c->queue = env_or("AQ_QUEUE", CONFIG_DEFAULT_QUEUE);
	c->queue_from = getenv("AQ_QUEUE") && *getenv("AQ_QUEUE") ? "AQ_QUEUE" : "default";
	c->prefix = env_or("AQ_PREFIX", CONFIG_DEFAULT_PREFIX);
	c->prefix_from = getenv("AQ_PREFIX") && *getenv("AQ_PREFIX") ? "AQ_PREFIX" : "default";
	c->max_line = JSONL_MAX_DEFAULT;
}

int
config_option(struct config *c, int opt, const char *arg, void (*usage)(FILE *))
{
	switch (opt) {
	case 'q':
		c->queue = arg;
		c->queue_from = "--queue";
		return 1;
	case 'u':
		c->url_flag = arg;
		return 1;
	case OPT_REDIS_URL_FILE:
		c->url_file_flag = arg;
		return 1;
	case OPT_PREFIX:
		c->prefix = arg;
		c->prefix_from = "--prefix";
		return 1;
	case OPT_DATABASE_URL:
		c->db_flag = arg;
		return 1;
	case OPT_DATABASE_URL_FILE:
		c->db_file_flag = arg;
		return 1;
	case OPT_MAX_LINE:
		if (jsonl_parse_max(arg, &c->max_line) < 0)
			die(EX_USAGE, "invalid --max-line '%s': want a size from 1 "
			    "to 1G, like 65536, 64K or 16M", arg);
		return 1;
	case 'h':
		usage(stdout);
		exit(finish_stdout(0));
	case OPT_VERSION:
		printf("%s %s\n", log_progname(), AQ_VERSION);
		exit(finish_stdout(0));
	default:
		return 0;
	}
}

/* Read the first line of path (a URL holding a password) into a new string;
 * what names the server ("Redis", "database") in messages. */
static char *
read_url_file(const char *path, const char *what, const char *from)
{
	char buf[4200];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *nl;

	if (fd < 0)
		die(EX_NOINPUT, "cannot open the %s URL file %s (%s):", what, path, from);
	n = read(fd, buf, sizeof buf - 1);
	if (n < 0)
		die(EX_NOINPUT, "cannot read the %s URL file %s (%s):", what, path, from);
	close(fd);
	buf[n] = '\0';
	if ((nl = strpbrk(buf, "\r\n")))
		*nl = '\0';
	char *url = strdup(buf);
	explicit_bzero(buf, sizeof buf);
	if (!url)
		die(EX_OSERR, "out of memory");
	return url;
}

static void
parse_url_or_die(struct config *c, const char *text, const char *from)
{
	char err[256];

	if (url_parse(text, &c->redis, err, sizeof err) < 0)
		die(EX_USAGE, "invalid Redis URL (from %s): %s", from, err);
}

static void
resolve_url(struct config *c)
{
	const char *env_url = getenv("AQ_REDIS_URL");
	const char *env_file = getenv("AQ_REDIS_URL_FILE");

	if (c->url_flag && c->url_file_flag)
		die(EX_USAGE, "give --redis-url or --redis-url-file, not both");
	if (c->url_flag) {
		parse_url_or_die(c, c->url_flag, "--redis-url");
	} else if (c->url_file_flag || (!(env_url && *env_url) && env_file && *env_file)) {
		const char *from = c->url_file_flag ? "--redis-url-file" : "AQ_REDIS_URL_FILE";
		char *text = read_url_file(c->url_file_flag ? c->url_file_flag : env_file,
		    "Redis", from);
		parse_url_or_die(c, text, from);
		explicit_bzero(text, strlen(text));
		free(text);
	} else if (env_url && *env_url) {
		parse_url_or_die(c, env_url, "AQ_REDIS_URL");
	} else {
		parse_url_or_die(c, CONFIG_DEFAULT_URL, "the default");
	}
}

void
config_finish(struct config *c)
{
	if (!queue_valid(c->queue))
		die(EX_USAGE, "invalid queue name '%.120s' (from %s): want 1 to %d "
		    "of A-Z a-z 0-9 . _ -", c->queue, c->queue_from, QUEUE_MAX);
	if (!prefix_valid(c->prefix))
		die(EX_USAGE, "invalid key prefix '%.80s' (from %s): want 1 to %d "
		    "of A-Z a-z 0-9 . _ : -", c->prefix, c->prefix_from, PREFIX_MAX);
	resolve_url(c);
}

void
config_database(struct config *c)
{
	const char *env_url = getenv("AQ_DATABASE_URL");
	const char *env_file = getenv("AQ_DATABASE_URL_FILE");

	if (c->db_flag && c->db_file_flag)
		die(EX_USAGE, "give --database-url or --database-url-file, not both");
	if (c->db_flag) {
		c->database_url = xstrdup(c->db_flag);
		c->database_from = "--database-url";
	} else if (c->db_file_flag) {
		c->database_url = read_url_file(c->db_file_flag, "database",
		    "--database-url-file");
		c->database_from = "--database-url-file";
	} else if (env_url && *env_url) {
		c->database_url = xstrdup(env_url);
		c->database_from = "AQ_DATABASE_URL";
	} else if (env_file && *env_file) {
		c->database_url = read_url_file(env_file, "database",
		    "AQ_DATABASE_URL_FILE");
		c->database_from = "AQ_DATABASE_URL_FILE";
	}
	if (c->database_url && !*c->database_url)
		die(EX_USAGE, "the database URL (from %s) is empty", c->database_from);
}

void
config_free(struct config *c)
{
	if (c->database_url) {
		explicit_bzero(c->database_url, strlen(c->database_url));
		free(c->database_url);
		c->database_url = NULL;
	}
	url_forget(&c->redis);
}

long
option_int(const char *name, const char *arg, long lo, long hi)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || end == arg || *end || v < lo || v > hi)
		die(EX_USAGE, "invalid %s '%.40s': want a whole number from %ld to %ld",
		    name, arg, lo, hi);
	return v;
}

long long
option_duration(const char *name, const char *arg, int zero_ok)
{
	int64_t ms;

	if (duration_parse(arg, &ms) < 0 || (ms == 0 && !zero_ok))
		die(EX_USAGE, "invalid %s '%.40s': want a duration like 250ms, 30s, "
		    "5m, 1h or plain seconds%s", name, arg, zero_ok ? "" : ", above zero");
	return ms;
}

/* Parse argv with the shared flags of longopts only. */
static void
parse_only(struct config *c, int argc, char **argv, void (*usage)(FILE *),
    const struct option *longopts)
{
	int opt;

	while ((opt = getopt_long(argc, argv, "q:u:h", longopts, NULL)) != -1) {
		if (!config_option(c, opt, optarg, usage)) {
			usage(stderr);
			exit(EX_USAGE);
		}
	}
}

void
config_parse_shared(struct config *c, int argc, char **argv, void (*usage)(FILE *))
{
	static const struct option longopts[] = {
		CONFIG_LONG_OPTIONS,
		CONFIG_LONG_OPTIONS_LINES,
		{NULL, 0, NULL, 0},
	};

	parse_only(c, argc, argv, usage, longopts);
}

void
config_parse_ledger(struct config *c, int argc, char **argv, void (*usage)(FILE *))
{
	static const struct option longopts[] = {
		CONFIG_LONG_OPTIONS,
		CONFIG_LONG_OPTIONS_LINES,
		CONFIG_LONG_OPTIONS_LEDGER,
		{NULL, 0, NULL, 0},
	};

	parse_only(c, argc, argv, usage, longopts);
}
