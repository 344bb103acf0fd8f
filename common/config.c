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
			die_usage("invalid --max-line '%s': want a size from 1 "
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

/* Parse the Redis URL text, given at source (file: the file it was read
 * from), into c->redis, or exit EX_USAGE naming the source. */
static void
parse_url_or_die(struct config *c, const char *text, enum url_source source,
    const char *file)
{
	char err[256], from[URL_SOURCE_MAX + 32];
	int rc = url_parse(text, &c->redis, err, sizeof err);

	c->redis.source = source;
	snprintf(c->redis.source_file, sizeof c->redis.source_file, "%s",
	    file ? file : "");
	if (rc < 0)
		die(EX_USAGE, "invalid Redis URL (from %s): %s; want "
		    "redis://[[user]:password@]host[:port][/db], "
		    "unix://[[user]:password@]/path[?db=N], "
		    "redis+sentinel://[[user]:password@]host[:port][,host[:port]...]"
		    "/name[/db] or redis+cluster://[[user]:password@]host[:port]"
		    "[,host[:port]...] (aq(7) CONFIGURATION)",
		    url_source_name(&c->redis, from, sizeof from), err);
}

static void
resolve_url(struct config *c)
{
	const char *env_url = getenv("AQ_REDIS_URL");
	const char *env_file = getenv("AQ_REDIS_URL_FILE");

	if (c->url_flag && c->url_file_flag)
		die_usage("give --redis-url or --redis-url-file, not both");
	if (c->url_flag) {
		parse_url_or_die(c, c->url_flag, URL_FROM_FLAG, NULL);
	} else if (c->url_file_flag || (!(env_url && *env_url) && env_file && *env_file)) {
		const char *path = c->url_file_flag ? c->url_file_flag : env_file;
		char *text = read_url_file(path, "Redis",
		    c->url_file_flag ? "--redis-url-file" : "AQ_REDIS_URL_FILE");
		parse_url_or_die(c, text, c->url_file_flag ? URL_FROM_FLAG_FILE :
		    URL_FROM_ENV_FILE, path);
		explicit_bzero(text, strlen(text));
		free(text);
	} else if (env_url && *env_url) {
		parse_url_or_die(c, env_url, URL_FROM_ENV, NULL);
	} else {
		parse_url_or_die(c, CONFIG_DEFAULT_URL, URL_FROM_DEFAULT, NULL);
	}
}

void
config_check_names(const struct config *c)
{
	if (!queue_valid(c->queue))
		die_usage("invalid queue name '%.120s' (from %s): want 1 to %d "
		    "of A-Z a-z 0-9 . _ -", c->queue, c->queue_from, QUEUE_MAX);
	if (!prefix_valid(c->prefix))
		die_usage("invalid key prefix '%.80s' (from %s): want 1 to %d "
		    "of A-Z a-z 0-9 . _ : -", c->prefix, c->prefix_from, PREFIX_MAX);
}

void
config_finish(struct config *c)
{
	config_check_names(c);
	resolve_url(c);
}

void
config_database(struct config *c)
{
	const char *env_url = getenv("AQ_DATABASE_URL");
	const char *env_file = getenv("AQ_DATABASE_URL_FILE");

	if (c->db_flag && c->db_file_flag)
		die_usage("give --database-url or --database-url-file, not both");
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
		die_usage("invalid %s '%.40s': want a whole number from %ld to %ld",
		    name, arg, lo, hi);
	return v;
}

void
option_queue(const char *arg, const char **queues, int *n, int max)
{
	if (!queue_valid(arg))
		die_usage("invalid queue name '%.120s': want 1 to %d of "
		    "A-Z a-z 0-9 . _ -", arg, QUEUE_MAX);
	if (*n == max)
		die_usage("too many -q: at most %d", max);
	queues[(*n)++] = arg;
}

long long
option_duration(const char *name, const char *arg, int zero_ok)
{
	int64_t ms;

	if (duration_parse(arg, &ms) < 0 || (ms == 0 && !zero_ok))
		die_usage("invalid %s '%.40s': want a duration like 250ms, 30s, "
		    "5m, 1h or plain seconds%s", name, arg, zero_ok ? "" : ", above zero");
	return ms;
}

/* The long option of longopts that arg ("--name" or "--name=value")
 * names, in full or by an unambiguous abbreviation, or NULL. */
static const struct option *
long_option(const struct option *longopts, const char *arg)
{
	const struct option *found = NULL;
	int count = 0;
	size_t n;

	if (strncmp(arg, "--", 2) != 0)
		return NULL;
	arg += 2;
	n = strcspn(arg, "=");
	for (const struct option *o = longopts; o->name; o++) {
		if (strncmp(o->name, arg, n) != 0)
			continue;
		if (strlen(o->name) == n)
			return o;
		found = o;
		count++;
	}
	return count == 1 ? found : NULL;
}

/* The long options arg ("--pre" or "--pre=value") abbreviates, comma
 * separated, into buf; returns how many. */
static int
abbreviated(const struct option *longopts, const char *arg, char *buf, size_t len)
{
	size_t n, used = 0;
	int count = 0;

	buf[0] = '\0';
	if (strncmp(arg, "--", 2) != 0)
		return 0;
	arg += 2;
	n = strcspn(arg, "=");
	for (const struct option *o = longopts; o->name; o++) {
		if (strncmp(o->name, arg, n) != 0)
			continue;
		int w = snprintf(buf + used, len - used, "%s--%s", count ? ", " : "",
		    o->name);
		if (w > 0 && (size_t)w < len - used)
			used += (size_t)w;
		count++;
	}
	return count;
}

void
config_bad_option(int c, char **argv, const struct option *longopts,
    void (*usage)(FILE *))
{
	/* getopt_long has moved optind past the option, except after an
	 * unknown letter inside a cluster such as -xq */
	const char *arg = optind > 0 ? argv[optind - 1] : "";
	const struct option *o = long_option(longopts, arg);
	const char *prog = log_progname();
	char name[80], others[512];

	if (o && (c == ':' || optopt == o->val))
		snprintf(name, sizeof name, "--%s", o->name);
	else if (optopt > 0 && optopt < 256)
		snprintf(name, sizeof name, "-%c", optopt);
	else
		snprintf(name, sizeof name, "%.*s", (int)strcspn(arg, "="), arg);
	if (c == ':')
		fprintf(stderr, "%s: option '%s' needs a value; see '%s -h'\n",
		    prog, name, prog);
	else if (o && optopt == o->val && strchr(arg, '='))
		fprintf(stderr, "%s: option '%s' takes no value; see '%s -h'\n",
		    prog, name, prog);
	else if (!o && abbreviated(longopts, arg, others, sizeof others) > 1)
		fprintf(stderr, "%s: option '%s' is ambiguous: %s; see '%s -h'\n",
		    prog, name, others, prog);
	else
		fprintf(stderr, "%s: unknown option '%s'; see '%s -h'\n", prog, name,
		    prog);
	usage(stderr);
	exit(EX_USAGE);
}

int
config_getopt(struct config *c, int argc, char **argv,
    const struct option *longopts, void (*usage)(FILE *))
{
	int opt;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, CONFIG_OPTSTRING, longopts, NULL)) != -1)
		if (!config_option(c, opt, optarg, usage))
			return opt;
	return -1;
}

/* Parse argv with the shared flags of longopts only. */
static void
parse_only(struct config *c, int argc, char **argv, void (*usage)(FILE *),
    const struct option *longopts)
{
	int opt = config_getopt(c, argc, argv, longopts, usage);

	if (opt != -1)
		config_bad_option(opt, argv, longopts, usage);
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
