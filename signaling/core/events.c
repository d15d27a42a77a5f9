/* events.c - see events.h.
 *
 * One dispatcher run: store_dispatch() moves the projections and the
 * webhook queue forward in one transaction and returns the events it
 * applied; each listener then sees each of them, in seq order, on the loop.
 * Listeners are registered at start-up (api/stream.c: the live streams;
 * workers/reactions.c: what the media side does about them; the webhook
 * sender).
 */
#include "core/events.h"

#include <string.h>

#include "core/json.h"
#include "core/metrics.h"
#include "core/task.h"

#define DISPATCH_BATCH 256
#define PRUNE_BATCH 500
#define PRUNE_EVERY_S 60

typedef struct {
    SigEventFunc fn;
    gpointer data;
} Listener;

struct SigEvents {
    SigApp *app;
    GArray *listeners; /* Listener */
    guint dispatch_idle;
    guint64 generation;
    guint retry_timer;
    guint poll_timer;
    guint prune_timer, prune_idle;
    char **webhook_urls;
    gint64 followed; /* shared store: the last seq this node's listeners saw */
    SigTask dispatch_task, poll_task;
};

/* ------------------------------------------------------------ who gets it */

gboolean
sig_event_is_presence(const StoreEvent *e)
{
    static const char *const presence[] = {"teacher.online", "teacher.offline", "teacher.busy",
                                           "teacher.available", NULL};
    return g_strv_contains(presence, e->type);
}

static gboolean
is_line(const StoreEvent *e)
{
    return g_str_has_prefix(e->type, "line.");
}

gboolean
sig_event_reaches_others(const StoreEvent *e)
{
    return sig_event_is_presence(e) || is_line(e);
}

GArray *
sig_event_others(SigApp *app, const StoreEvent *e)
{
    if (is_line(e))
        return store_line_members(app->store, e->teacher_id);
    if (sig_event_is_presence(e))
        return store_favorers(app->store, e->teacher_id);
    return g_array_new(FALSE, FALSE, sizeof(gint64));
}

gboolean
sig_event_for_user(SigApp *app, const StoreEvent *e, const StoreUser *u, GArray *others)
{
    if (u->role == STORE_ROLE_ADMIN)
        return TRUE;
    if (e->teacher_id == u->id || (e->student_id && e->student_id == u->id))
        return TRUE;
    /* Presence changes also go to the students who favor the teacher; line
     * changes to the students waiting in it (their places moved). */
    if (u->role != STORE_ROLE_STUDENT || !sig_event_reaches_others(e))
        return FALSE;
    g_autoptr(GArray) own = NULL;
    if (!others)
        others = own = sig_event_others(app, e);
    for (guint i = 0; i < others->len; i++)
        if (g_array_index(others, gint64, i) == u->id)
            return TRUE;
    return FALSE;
}

json_t *
sig_event_json(const StoreEvent *e)
{
    json_t *data = json_loads(e->payload, 0, NULL);
    char id[32];
    g_snprintf(id, sizeof id, "evt_%" G_GINT64_FORMAT, e->seq);
    return json_pack("{s:s, s:I, s:s, s:o, s:o}", "id", id, "seq", (json_int_t)e->seq, "type",
                     e->type, "time", sig_json_time(e->created_at), "data",
                     data ? data : json_object());
}

/* ------------------------------------------------------------ dispatcher */

static gboolean dispatch(gpointer data);

static gboolean
retry_dispatch(gpointer data)
{
    SigEvents *ev = data;
    ev->retry_timer = 0;
    sig_events_kick(ev->app);
    return G_SOURCE_REMOVE;
}

static void
dispatch_run(gpointer data)
{
    SigEvents *ev = data;
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) evs =
        store_dispatch(ev->app->store, DISPATCH_BATCH, (const char *const *)ev->webhook_urls, &err);
    if (!evs) {
        g_warning("events: dispatch failed, retrying: %s", err->message);
        if (!ev->retry_timer)
            ev->retry_timer = g_timeout_add(200, retry_dispatch, ev);
        return;
    }
    gint64 upto = 0;
    if (store_shared(ev->app->store)) {
        /* Several nodes: whichever ran store_dispatch() moved the read
         * models; every node hands the log to its own listeners, in seq
         * order, from where it stands. */
        g_ptr_array_unref(evs);
        evs = store_events_follow(ev->app->store, ev->followed, DISPATCH_BATCH, &upto, &err);
        if (!evs) {
            g_warning("events: following the log failed, retrying: %s", err->message);
            if (!ev->retry_timer)
                ev->retry_timer = g_timeout_add(200, retry_dispatch, ev);
            return;
        }
        if (upto > ev->followed)
            ev->generation++;
        gboolean more = upto - ev->followed >= DISPATCH_BATCH;
        ev->followed = upto;
        if (more)
            sig_events_kick(ev->app);
    }
    if (evs->len)
        ev->generation++; /* the read models moved */
    for (guint i = 0; i < evs->len; i++)
        for (guint k = 0; k < ev->listeners->len; k++) {
            Listener *l = &g_array_index(ev->listeners, Listener, k);
            l->fn(ev->app, evs->pdata[i], l->data);
        }
    if (evs->len)
        sig_metrics_add(ev->app->metrics, "consultd_events_dispatched_total",
                        "Domain events applied to read models and streams", "", evs->len);
    if (evs->len == DISPATCH_BATCH)
        sig_events_kick(ev->app); /* more to do; let other sources run first */
}

static gboolean
dispatch(gpointer data)
{
    SigEvents *ev = data;
    ev->dispatch_idle = 0;
    sig_task_run(&ev->dispatch_task);
    return G_SOURCE_REMOVE;
}

guint64
sig_events_generation(SigApp *app)
{
    return app->events ? app->events->generation : 0;
}

void
sig_events_kick(SigApp *app)
{
    SigEvents *ev = app->events;
    if (ev)
        ev->generation++;
    if (ev && !ev->dispatch_idle)
        /* At the requests' own priority, not idle's: under a sustained
         * stream of requests an idle source hardly ever runs, and the read
         * models and every events stream fell behind until the load
         * stopped (35,000-48,000 events behind after 10 s of writes at
         * full speed; docs/benchmarks.md).  Kicks still coalesce. */
        ev->dispatch_idle = g_idle_add_full(G_PRIORITY_DEFAULT, dispatch, ev, NULL);
}

gint64
sig_events_followed(SigApp *app)
{
    SigEvents *ev = app->events;
    if (ev && store_shared(app->store))
        return ev->followed;
    return store_cursor(app->store, "notify");
}

/* A safety net: events appended by another process (the CLI) or another
 * node whose NOTIFY was missed, or left by a failed dispatch, are picked
 * up within a second. */
static void
poll_log(gpointer data)
{
    SigEvents *ev = data;
    gint64 last = store_events_last_seq(ev->app->store);
    if (last > store_cursor(ev->app->store, "notify") ||
        (store_shared(ev->app->store) && last > ev->followed))
        sig_events_kick(ev->app);
}

/* ------------------------------------------------------------- retention */

/* One batch of retention; -1 on a database error. */
static gint64
prune_batch(SigApp *app)
{
    gint64 days = app->cfg->event_retention_days;
    if (!days)
        return 0;
    g_autoptr(GError) err = NULL;
    gint64 n = store_events_prune(app->store, store_now_ms() - days * 86400000, PRUNE_BATCH, &err);
    if (n < 0)
        g_warning("events: retention: %s", err->message);
    return n;
}

/* Batches at low priority, one per loop turn, until none is left: never
 * one long transaction on the request path. */
static gboolean
prune_step(gpointer data)
{
    SigEvents *ev = data;
    if (prune_batch(ev->app) > 0)
        return G_SOURCE_CONTINUE;
    ev->prune_idle = 0;
    return G_SOURCE_REMOVE;
}

static gboolean
prune_tick(gpointer data)
{
    SigEvents *ev = data;
    if (!ev->prune_idle)
        ev->prune_idle = g_idle_add_full(G_PRIORITY_LOW, prune_step, ev, NULL);
    return G_SOURCE_CONTINUE;
}

gint64
sig_events_prune_all(SigApp *app)
{
    gint64 total = 0, n;
    while ((n = prune_batch(app)) > 0)
        total += n;
    return total;
}

SigEvents *
sig_events_new(SigApp *app)
{
    SigEvents *ev = g_new0(SigEvents, 1);
    ev->app = app;
    ev->listeners = g_array_new(FALSE, FALSE, sizeof(Listener));
    ev->webhook_urls = g_strsplit(app->cfg->webhook_urls, ",", -1);
    /* Drop empty entries ("" or a trailing comma). */
    guint k = 0;
    for (guint i = 0; ev->webhook_urls[i]; i++) {
        char *u = g_strstrip(ev->webhook_urls[i]);
        if (*u)
            ev->webhook_urls[k++] = u;
        else
            g_free(u);
    }
    ev->webhook_urls[k] = NULL;
    /* A node starts following the shared log where the dispatcher stands:
     * its streams resume older events from the log (Last-Event-ID). */
    ev->followed = store_cursor(app->store, "notify");
    ev->dispatch_task = SIG_TASK_INIT(app, dispatch_run, ev);
    ev->poll_task = SIG_TASK_INIT(app, poll_log, ev);
    ev->poll_timer = g_timeout_add_seconds(1, sig_task_tick, &ev->poll_task);
    ev->prune_timer = g_timeout_add_seconds(PRUNE_EVERY_S, prune_tick, ev);
    app->events = ev;
    sig_events_kick(app); /* catch up with whatever the last run left */
    return ev;
}

void
sig_events_listen(SigApp *app, SigEventFunc fn, gpointer data)
{
    Listener l = {fn, data};
    g_array_append_val(app->events->listeners, l);
}

void
sig_events_free(SigEvents *ev)
{
    if (!ev)
        return;
    g_clear_handle_id(&ev->dispatch_idle, g_source_remove);
    g_clear_handle_id(&ev->retry_timer, g_source_remove);
    g_clear_handle_id(&ev->poll_timer, g_source_remove);
    g_clear_handle_id(&ev->prune_timer, g_source_remove);
    g_clear_handle_id(&ev->prune_idle, g_source_remove);
    g_array_unref(ev->listeners);
    g_strfreev(ev->webhook_urls);
    g_free(ev);
}
