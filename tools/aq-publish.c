/* aq-publish: publish JSON lines from stdin to a pub/sub channel, or append
 * them as events of a job (what aq-subscribe --job follows). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "id.h"
#include "json.h"
#include "jsonl.h"
#include "keys.h"
#include "log.h"
#include "redis.h"

#define PIPELINE 256

enum { OPT_JOB = OPT_TOOL };

struct publisher {
	struct config cfg;
	struct keys keys;
	const char *job;             /* --job */
	char target[KEY_MAX + ID_MAX];
	redisContext *redis;
	int pending;                 /* commands sent, replies not read */
	unsigned long rejected, published;
};

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: aq-publish [-u url | --redis-url-file path] [--prefix p] [--max-line size]\n"
	    "                  channel\n"
	    "       aq-publish [options] [-q queue] --job id\n");
}

static void
read_replies(struct publisher *p)
{
	for (; p->pending > 0; p->pending--) {
		redisReply *r = redis_get_reply(p->redis, &p->cfg.redis, "publishing");
		if (r->type == REDIS_REPLY_ERROR)
			die(EX_UNAVAILABLE, "redis refused to publish: %s", r->str);
		freeReplyObject(r);
	}
}

static void
send_line(struct publisher *p, const char *line, size_t len)
{
	int rc;

	if (p->job) {
		const char *argv[] = {"XADD", p->target, "MAXLEN", "~", EVENTS_CAP, "*",
		    "type", "event", "data", line};
		size_t lens[] = {4, strlen(p->target), 6, 1, strlen(EVENTS_CAP), 1, 4, 5,
		    4, len};
		rc = redisAppendCommandArgv(p->redis, 10, argv, lens);
	} else {
		const char *argv[] = {"PUBLISH", p->target, line};
		size_t lens[] = {7, strlen(p->target), len};
		rc = redisAppendCommandArgv(p->redis, 3, argv, lens);
	}
	if (rc != REDIS_OK)
		redis_die_io(p->redis, &p->cfg.redis, "publishing");
	p->published++;
	if (++p->pending == PIPELINE)
		read_replies(p);
}

static int
on_line(char *line, size_t len, unsigned long lineno, void *ctx)
{
	struct publisher *p = ctx;
	char err[256];

	line = jsonl_trim(line, &len);
	if (json_check(line, len, err, sizeof err) < 0) {
		warnmsg("line %lu: %s, skipped", lineno, err);
		p->rejected++;
		return 0;
	}
	send_line(p, line, len);
	return 0;
}

/* Input paused: let what was sent be answered, so a slow producer's lines
 * go out as they come. */
static void
on_idle(void *ctx)
{
	read_replies(ctx);
}

static void
require_job(struct publisher *p)
{
	char key[KEY_MAX + ID_MAX];
	const char *argv[] = {"EXISTS", key};
	redisReply *r;

	keys_job(&p->keys, p->job, key, sizeof key);
	r = redis_command_ok(p->redis, &p->cfg.redis, 2, argv);
	if (r->integer != 1)
		die(1, "no job %s in queue %s", p->job, p->cfg.queue);
	freeReplyObject(r);
}

static void
parse_options(struct publisher *p, int argc, char **argv)
{
	static const struct option longopts[] = {
		CONFIG_LONG_OPTIONS,
		CONFIG_LONG_OPTIONS_LINES,
		{"job", required_argument, NULL, OPT_JOB},
		{NULL, 0, NULL, 0},
	};
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, CONFIG_OPTSTRING, longopts, NULL)) != -1) {
		if (config_option(&p->cfg, c, optarg, usage))
			continue;
		if (c != OPT_JOB)
			config_bad_option(c, argv, longopts, usage);
		if (!id_valid(optarg, strlen(optarg)))
			die_usage("invalid --job id: want 1 to %d of "
			    "A-Z a-z 0-9 . _ : @ / -", ID_MAX);
		p->job = optarg;
	}
	if (p->job ? optind != argc : optind != argc - 1)
		die_usage("give one channel, or --job ID");
	if (!p->job && !id_valid(argv[optind], strlen(argv[optind])))
		die_usage("invalid channel name '%.80s': want 1 to %d of "
		    "A-Z a-z 0-9 . _ : @ / -", argv[optind], ID_MAX);
}

int
main(int argc, char **argv)
{
	static struct publisher p;
	int rc = 0;

	log_init(argv[0]);
	config_init(&p.cfg);
	parse_options(&p, argc, argv);
	config_finish(&p.cfg);
	keys_init(&p.keys, p.cfg.prefix, p.cfg.queue);
	if (p.job)
		keys_events(&p.keys, p.job, p.target, sizeof p.target);
	else
		keys_channel(p.cfg.prefix, argv[optind], p.target, sizeof p.target);
	p.redis = redis_connect_for(&p.cfg.redis, p.target); /* a cluster
	    * node that holds the job's events; any, for a channel */
	if (p.job)
		require_job(&p);
	if (jsonl_each_idle(STDIN_FILENO, p.cfg.max_line, on_line, on_idle, &p,
	    &p.rejected) < 0)
		rc = EX_IOERR;
	read_replies(&p);
	if (rc == 0 && p.rejected)
		rc = EX_DATAERR;
	redisFree(p.redis);
	url_forget(&p.cfg.redis);
	return finish_stdout(rc);
}
