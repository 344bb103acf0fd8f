/* flow.h: a queue's flow limits as aq-queue takes them and aq-queue and
 * aq-health print them (work.lua enforces them; see aq(7) FLOW CONTROL). */
#ifndef AQ_FLOW_H
#define AQ_FLOW_H

#include <stdint.h>

#include "json.h"

#define LIMIT_MAX 1000000L               /* jobs of a rate or concurrency limit */
#define LIMIT_PERIOD_MAX_MS (86400 * 1000LL) /* a rate's longest period: a day */

/* A queue's limits and throttle hold, as queue.lua and health.lua give
 * them: 0 for each one not set. */
struct flow_state {
	long long rate, period_ms, concurrency, throttled_ms;
};

/* flow_parse_rate: "N/DURATION" (N jobs per period: "100/1s", "5/1m",
 * "20/250ms"), N from 1 to LIMIT_MAX, the period above 0 and at most
 * LIMIT_PERIOD_MAX_MS; 0, or -1 when it is not one. */
int flow_parse_rate(const char *arg, long *n, int64_t *period_ms);

/* flow_json: the keys "limits" ({"rate", "period_ms", "concurrency"},
 * those set only) and "throttled_s" into the open object b; with all,
 * both always (null when none), else each only when set. */
void flow_json(struct jbuf *b, const struct flow_state *l, int all);

#endif
