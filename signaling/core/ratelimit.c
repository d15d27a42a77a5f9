/* ratelimit.c - see ratelimit.h. */
#include "core/ratelimit.h"

#define MAX_KEYS 100000

typedef struct {
    gint64 window_start; /* monotonic seconds */
    guint count;
} Slot;

struct SigLimiter {
    guint max, window;
    GHashTable *slots; /* char *key -> Slot * */
    gint64 last_sweep;
};

SigLimiter *
sig_limiter_new(guint max, guint window_secs)
{
    SigLimiter *l = g_new0(SigLimiter, 1);
    l->max = max;
    l->window = MAX(window_secs, 1);
    l->slots = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    return l;
}

void
sig_limiter_free(SigLimiter *l)
{
    if (!l)
        return;
    g_hash_table_destroy(l->slots);
    g_free(l);
}

static void
sweep(SigLimiter *l, gint64 now)
{
    if (now - l->last_sweep < l->window && g_hash_table_size(l->slots) < MAX_KEYS)
        return;
    l->last_sweep = now;
    GHashTableIter it;
    Slot *s;
    g_hash_table_iter_init(&it, l->slots);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&s))
        if (now - s->window_start >= l->window)
            g_hash_table_iter_remove(&it);
    if (g_hash_table_size(l->slots) >= MAX_KEYS)
        g_hash_table_remove_all(l->slots);
}

static guint
check(SigLimiter *l, const char *key, gboolean count)
{
    gint64 now = g_get_monotonic_time() / G_USEC_PER_SEC;
    sweep(l, now);
    Slot *s = g_hash_table_lookup(l->slots, key);
    if (s && now - s->window_start >= l->window) {
        s->window_start = now;
        s->count = 0;
    }
    if (s && s->count >= l->max)
        return (guint)MAX(1, s->window_start + l->window - now);
    if (!count)
        return 0;
    if (!s) {
        s = g_new0(Slot, 1);
        s->window_start = now;
        g_hash_table_insert(l->slots, g_strdup(key), s);
    }
    s->count++;
    return 0;
}

guint
sig_limiter_hit(SigLimiter *l, const char *key)
{
    return check(l, key, TRUE);
}

guint
sig_limiter_peek(SigLimiter *l, const char *key)
{
    return check(l, key, FALSE);
}
