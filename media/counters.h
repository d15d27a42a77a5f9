/* counters.h - the media worker's process-wide counters: bumped on
 * streaming threads (atomics, relaxed: each is a count on its own), read by
 * the worker's stats tick and sent to the main process for /metrics. */
#pragma once

#include <glib.h>

typedef enum {
    MEDIA_PACKETS_IN,        /* RTP packets from publishers */
    MEDIA_PACKETS_OUT,       /* relayed to subscribers */
    MEDIA_KEYFRAME_REQUESTS, /* sent to publishers */
    MEDIA_NACKS_RECEIVED,    /* packets subscribers NACKed */
    MEDIA_RETRANSMITTED,     /* of those, sent again from a relay's history */
    MEDIA_NACKS_SENT,        /* packets NACKed to publishers, repeats included */
    MEDIA_RECOVERED,         /* of the missing ones, those that came after all */
    MEDIA_LOST_CLOSED,       /* publishers' lost packets, of sessions closed */
    MEDIA_N_COUNTERS
} MediaCounter;

extern guint64 media_counters[MEDIA_N_COUNTERS];

static inline void
media_count(MediaCounter c)
{
    __atomic_fetch_add(&media_counters[c], 1, __ATOMIC_RELAXED);
}

static inline void
media_count_n(MediaCounter c, guint64 n)
{
    __atomic_fetch_add(&media_counters[c], n, __ATOMIC_RELAXED);
}

static inline guint64
media_counter(MediaCounter c)
{
    return __atomic_load_n(&media_counters[c], __ATOMIC_RELAXED);
}
