/* clock.h: the clocks of aq in milliseconds, read in one place: monotonic
 * for timeouts, leases and deadlines, the epoch for times that are shown
 * or stored. */
#ifndef AQ_CLOCK_H
#define AQ_CLOCK_H

#include <stdint.h>

/* clock_mono_ms: CLOCK_MONOTONIC in whole ms (never goes back; the clock
 * of leases, timeouts and the keeper's deadlines). */
int64_t clock_mono_ms(void);

/* clock_mono_exact_ms: the same with the fraction of a ms, for latencies. */
double clock_mono_exact_ms(void);

/* clock_epoch_ms: this host's clock (CLOCK_REALTIME), ms since the epoch. */
int64_t clock_epoch_ms(void);

#endif
