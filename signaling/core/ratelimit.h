/* ratelimit.h - fixed-window counters per key (IP address, username, user).
 *
 * A limiter allows MAX hits per key in each WINDOW seconds.  Memory is
 * bounded: stale keys are swept as windows pass, and at most MAX_KEYS keys
 * are held (past that the oldest window is forgotten early, which errs on the
 * side of letting a client through rather than growing without bound).
 */
#pragma once

#include <glib.h>

typedef struct SigLimiter SigLimiter;

SigLimiter *sig_limiter_new(guint max, guint window_secs);
void sig_limiter_free(SigLimiter *l); /* NULL-safe */
/* Counts a hit for KEY.  Returns 0 if it is allowed, else the seconds until
 * the key may try again (for Retry-After); a refused hit is not counted. */
guint sig_limiter_hit(SigLimiter *l, const char *key);
/* Like sig_limiter_hit() but counts nothing. */
guint sig_limiter_peek(SigLimiter *l, const char *key);
