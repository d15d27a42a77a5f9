/* ratelimit.c - see ratelimit.h.
 *
 * Keys are kept in a hash table for lookup and in a queue in the order they
 * were first seen, so that the oldest can be evicted at MAX_KEYS.  A slot's
 * window restarts in place when it has passed.
 */
#include "core/ratelimit.h"

#define MAX_KEYS 100000

typedef struct {
    char *key;
    gint64 window_start; /* monotonic seconds */
    gint64 last;         /* monotonic seconds of the last counted hit */
    guint count;
    GList *link; /* in SigLimiter.order */
} Slot;

struct SigLimiter {
    guint max, window, max_keys;
    GHashTable *slots; /* char *key (the slot's) -> Slot * */
    GQueue order;      /* Slot *, oldest first */
    gint64 last_sweep;
};

static void
slot_free(gpointer data)
{
    Slot *s = data;
    g_free(s->key);
    g_free(s);
}

SigLimiter *
sig_limiter_new(guint max, guint window_secs)
{
    SigLimiter *l = g_new0(SigLimiter, 1);
    l->max = max;
    l->window = MAX(window_secs, 1);
    l->max_keys = MAX_KEYS;
    l->slots = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, slot_free);
    g_queue_init(&l->order);
    return l;
}

void
sig_limiter_free(SigLimiter *l)
{
    if (!l)
        return;
    g_queue_clear(&l->order);
    g_hash_table_destroy(l->slots);
    g_free(l);
}

void
sig_limiter_set_max_keys(SigLimiter *l, guint max_keys)
{
    l->max_keys = MAX(max_keys, 1);
}

guint
sig_limiter_size(SigLimiter *l)
{
    return g_hash_table_size(l->slots);
}

static void
drop(SigLimiter *l, Slot *s)
{
    g_queue_delete_link(&l->order, s->link);
    g_hash_table_remove(l->slots, s->key); /* frees S */
}

static void
sweep(SigLimiter *l, gint64 now)
{
    if (now - l->last_sweep < l->window)
        return;
    l->last_sweep = now;
    for (GList *it = l->order.head, *next; it; it = next) {
        next = it->next;
        Slot *s = it->data;
        if (now - s->window_start >= l->window)
            drop(l, s);
    }
}

static Slot *
lookup(SigLimiter *l, const char *key, gint64 now)
{
    sweep(l, now);
    Slot *s = g_hash_table_lookup(l->slots, key);
    if (s && now - s->window_start >= l->window) {
        s->window_start = now;
        s->count = 0;
    }
    return s;
}

static guint
check(SigLimiter *l, const char *key, gboolean count)
{
    gint64 now = g_get_monotonic_time() / G_USEC_PER_SEC;
    Slot *s = lookup(l, key, now);
    if (s && s->count >= l->max)
        return (guint)MAX(1, s->window_start + l->window - now);
    if (!count)
        return 0;
    if (!s) {
        while (g_hash_table_size(l->slots) >= l->max_keys)
            drop(l, g_queue_peek_head(&l->order));
        s = g_new0(Slot, 1);
        s->key = g_strdup(key);
        s->window_start = now;
        g_queue_push_tail(&l->order, s);
        s->link = l->order.tail;
        g_hash_table_insert(l->slots, s->key, s);
    }
    s->count++;
    s->last = now;
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

void
sig_limiter_reset(SigLimiter *l, const char *key)
{
    Slot *s = g_hash_table_lookup(l->slots, key);
    if (s)
        drop(l, s);
}

guint
sig_backoff_wait(SigLimiter *l, const SigBackoffRule *rule, const char *key)
{
    gint64 now = g_get_monotonic_time() / G_USEC_PER_SEC;
    Slot *s = lookup(l, key, now);
    if (!s || s->count <= rule->free)
        return 0;
    if (s->count >= rule->max)
        return (guint)MAX(1, s->window_start + l->window - now);
    guint shift = MIN(s->count - rule->free - 1, 16u);
    gint64 delay = MIN((gint64)1 << shift, (gint64)rule->cap_s);
    gint64 left = s->last + delay - now;
    return left > 0 ? (guint)left : 0;
}
