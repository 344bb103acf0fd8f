/* duration.h: durations ("250ms", "30s", "5m", "1h", "1.5" seconds) and
 * points in time (RFC 3339 or epoch seconds), both in milliseconds. */
#ifndef AQ_DURATION_H
#define AQ_DURATION_H

#include <stdint.h>

/* Longest accepted duration: 100 years, so sums stay exact in Lua doubles. */
#define DURATION_MAX_MS (100LL * 366 * 24 * 3600 * 1000)

/* duration_parse: *ms from "N", "N.F", "Nms", "Ns", "Nm", "Nh", "Nd" (no sign,
 * no spaces); -1 when malformed or longer than DURATION_MAX_MS. */
int duration_parse(const char *s, int64_t *ms);

/* time_parse: *ms since the epoch from epoch seconds ("1795000000",
 * "1795000000.5") or RFC 3339 ("2026-11-23T09:00:00Z", with optional
 * fraction and a Z or +hh:mm offset); -1 when malformed or out of range. */
int time_parse(const char *s, int64_t *epoch_ms);

#endif
