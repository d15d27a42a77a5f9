/* ratelimit.h - fixed-window counters per key (client address, username,
 * user) and failure back-off per key.
 *
 * A limiter allows MAX hits per key in each WINDOW seconds.  Memory is
 * bounded: stale keys are swept as windows pass, and at most MAX_KEYS keys
 * are held; past that the key seen first is evicted (never all of them: a
 * flood of new keys must not wipe the lockouts of the others).
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
/* Forgets KEY (a success that clears earlier failures). */
void sig_limiter_reset(SigLimiter *l, const char *key);
/* Keys held (for tests). */
guint sig_limiter_size(SigLimiter *l);
/* Lowers the most keys held (tests; default 100,000). */
void sig_limiter_set_max_keys(SigLimiter *l, guint max_keys);

/* Back-off for failures of one key (a login's username and client
 * address): the first FREE failures cost nothing, each one after doubles a
 * wait from 1 s up to CAP_S; MAX failures in WINDOW_S lock the key until the
 * window passes.  A success resets it. */
typedef struct {
    guint free, max, cap_s, window_s;
} SigBackoffRule;

/* Seconds KEY must wait before its next attempt under RULE, 0 if none; a
 * limiter made with sig_limiter_new(rule.max, rule.window_s). */
guint sig_backoff_wait(SigLimiter *l, const SigBackoffRule *rule, const char *key);
