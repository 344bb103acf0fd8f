/* flow.c: a queue's flow limits: the rate option parsed, the limits
 * and throttle hold written as JSON. */
#include "flow.h"

#include <errno.h>
#include <stdlib.h>

#include "duration.h"

int
flow_parse_rate(const char *arg, long *n, int64_t *period_ms)
{
	char *end;

	errno = 0;
	*n = strtol(arg, &end, 10);
	if (errno || end == arg || *end != '/' || *n < 1 || *n > LIMIT_MAX ||
	    arg[0] < '0' || arg[0] > '9')
		return -1;
	if (duration_parse(end + 1, period_ms) < 0 || *period_ms <= 0 ||
	    *period_ms > LIMIT_PERIOD_MAX_MS)
		return -1;
	return 0;
}

void
flow_json(struct jbuf *b, const struct flow_state *l, int all)
{
	if (l->rate > 0 || l->concurrency > 0) {
		jb_key(b, "limits");
		jb_obj_begin(b);
		if (l->rate > 0) {
			jb_kint(b, "rate", l->rate);
			jb_kint(b, "period_ms", l->period_ms);
		}
		if (l->concurrency > 0)
			jb_kint(b, "concurrency", l->concurrency);
		jb_obj_end(b);
	} else if (all) {
		jb_key(b, "limits");
		jb_null(b);
	}
	if (l->throttled_ms > 0) {
		jb_key(b, "throttled_s");
		jb_millis(b, l->throttled_ms);
	} else if (all) {
		jb_key(b, "throttled_s");
		jb_null(b);
	}
}
