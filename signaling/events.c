/* events.c - see events.h.
 *
 * Streams.  GET /api/events answers with a libmicrohttpd callback response.
 * Each stream owns a text buffer; the content reader copies from it and,
 * when it is empty, suspends the connection (returning 0 without suspending
 * would make MHD spin).  Pushing text resumes it.  So an idle stream costs a
 * suspended socket and a few hundred bytes, never a thread or a poll.
 *
 * Lifetime of a stream: created by sig_h_events(), registered in ev->streams,
 * owned by its MHD response; the response's free callback unregisters and
 * frees it.  A closing stream ends its response with END_OF_STREAM.
 *
 * Ordering: a stream starts at Last-Event-ID (or at the notify cursor) and
 * is back-filled from the log up to the notify cursor; the dispatcher then
 * pushes every later event in seq order, so nothing is missed or doubled.
 */
#include "events.h"

#include <glib-unix.h>
#include <string.h>

#include "metrics.h"
#include "webhooks.h"

#define HEARTBEAT_S 15
#define BACKFILL_MAX 1000
#define DISPATCH_BATCH 256
#define STREAM_BUFFER_MAX (1 << 20) /* a reader this far behind is cut off */

typedef struct {
    SigEvents *ev;
    StoreUser *user;
    struct MHD_Connection *conn;
    GString *buf;
    gint64 last_seq;
    gboolean suspended, closing;
    guint hangup_watch; /* while suspended: the client's socket */
} Stream;

typedef struct {
    guint streams;
    gint64 last_seen; /* monotonic us */
} Presence;

struct SigEvents {
    SigApp *app;
    GPtrArray *streams;     /* Stream *, not owned */
    GHashTable *presence;   /* gint64 *teacher -> Presence * */
    guint dispatch_idle;
    guint64 generation;
    guint retry_timer;
    guint heartbeat_timer;
    guint poll_timer;
    char **webhook_urls;
};

/* ------------------------------------------------------------ who gets it */

gboolean
sig_event_for_user(SigApp *app, const StoreEvent *e, const StoreUser *u,
                   GArray *favorers)
{
    if (u->role == STORE_ROLE_ADMIN)
        return TRUE;
    if (e->teacher_id == u->id || (e->student_id && e->student_id == u->id))
        return TRUE;
    /* Presence changes also go to the students who favor the teacher. */
    if (u->role != STORE_ROLE_STUDENT)
        return FALSE;
    static const char *const presence[] = {"teacher.online", "teacher.offline",
                                           "teacher.busy", "teacher.available", NULL};
    if (!g_strv_contains(presence, e->type))
        return FALSE;
    g_autoptr(GArray) own = NULL;
    if (!favorers)
        favorers = own = store_favorers(app->store, e->teacher_id);
    for (guint i = 0; i < favorers->len; i++)
        if (g_array_index(favorers, gint64, i) == u->id)
            return TRUE;
    return FALSE;
}

json_t *
sig_event_json(const StoreEvent *e)
{
    json_t *data = json_loads(e->payload, 0, NULL);
    char id[32];
    g_snprintf(id, sizeof id, "evt_%" G_GINT64_FORMAT, e->seq);
    return json_pack("{s:s, s:I, s:s, s:o, s:o}", "id", id, "seq", (json_int_t)e->seq,
                     "type", e->type, "time", sig_json_time(e->created_at), "data",
                     data ? data : json_object());
}

/* --------------------------------------------------------------- streams */

static void
stream_wake(Stream *s)
{
    if (!s->suspended)
        return;
    g_clear_handle_id(&s->hangup_watch, g_source_remove);
    s->suspended = FALSE;
    MHD_resume_connection(s->conn);
    sig_http_kick(s->ev->app->http);
}

static void
stream_push_event(Stream *s, const StoreEvent *e)
{
    if (e->seq <= s->last_seq)
        return;
    s->last_seq = e->seq;
    json_t *j = sig_event_json(e);
    g_autofree char *data = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    g_string_append_printf(s->buf, "id: %" G_GINT64_FORMAT "\nevent: %s\ndata: %s\n\n",
                           e->seq, e->type, data);
    if (s->buf->len > STREAM_BUFFER_MAX) {
        g_message("events: closing the stream of %s: it is not reading",
                  s->user->username);
        s->closing = TRUE;
    }
    stream_wake(s);
}

/* A suspended connection is not polled by MHD, so a client that goes away
 * would only be noticed at the next heartbeat write.  Watching the socket
 * ourselves notices at once: an SSE client sends nothing after its request,
 * so readability means EOF (or a misbehaving client): end the stream. */
static gboolean
on_hangup(int fd, GIOCondition cond, gpointer data)
{
    Stream *s = data;
    s->hangup_watch = 0;
    s->closing = TRUE;
    s->suspended = FALSE;
    MHD_resume_connection(s->conn);
    sig_http_kick(s->ev->app->http);
    return G_SOURCE_REMOVE;
}

static ssize_t
stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    Stream *s = cls;
    if (s->buf->len == 0) {
        if (s->closing)
            return MHD_CONTENT_READER_END_OF_STREAM;
        s->suspended = TRUE;
        MHD_suspend_connection(s->conn);
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(s->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci)
            s->hangup_watch = g_unix_fd_add(ci->connect_fd, G_IO_IN | G_IO_HUP | G_IO_ERR,
                                            on_hangup, s);
        return 0;
    }
    size_t n = MIN(max, s->buf->len);
    memcpy(buf, s->buf->str, n);
    g_string_erase(s->buf, 0, n);
    return (ssize_t)n;
}

static Presence *
presence_of(SigEvents *ev, gint64 teacher)
{
    Presence *p = g_hash_table_lookup(ev->presence, &teacher);
    if (!p) {
        p = g_new0(Presence, 1);
        p->last_seen = g_get_monotonic_time();
        g_hash_table_insert(ev->presence, g_memdup2(&teacher, sizeof teacher), p);
    }
    return p;
}

static void
stream_free(void *cls)
{
    Stream *s = cls;
    SigEvents *ev = s->ev;
    g_clear_handle_id(&s->hangup_watch, g_source_remove);
    if (s->user->role == STORE_ROLE_TEACHER) {
        Presence *p = presence_of(ev, s->user->id);
        p->streams--;
        p->last_seen = g_get_monotonic_time();
    }
    g_ptr_array_remove_fast(ev->streams, s);
    store_user_free(s->user);
    g_string_free(s->buf, TRUE);
    g_free(s);
}

static guint
streams_of(SigEvents *ev, gint64 user)
{
    guint n = 0;
    for (guint i = 0; i < ev->streams->len; i++)
        if (((Stream *)ev->streams->pdata[i])->user->id == user)
            n++;
    return n;
}

static gboolean
backfill(SigApp *app, Stream *s, gint64 upto)
{
    g_autoptr(GPtrArray) evs = store_events_range(app->store, s->last_seq, upto,
                                                  BACKFILL_MAX, NULL);
    if (!evs)
        return FALSE;
    for (guint i = 0; i < evs->len; i++) {
        StoreEvent *e = evs->pdata[i];
        if (sig_event_for_user(app, e, s->user, NULL))
            stream_push_event(s, e);
    }
    /* Everything up to UPTO was considered, relevant or not. */
    s->last_seq = MAX(s->last_seq, upto);
    return TRUE;
}

void
sig_h_events(SigReq *r)
{
    SigApp *app = r->app;
    SigEvents *ev = app->events;
    if (app->stopping) {
        sig_req_header(r, "Retry-After", "5");
        sig_reply_error(r, 503, "unavailable", "the server is shutting down");
        return;
    }
    const char *last = sig_req_get_header(r, "Last-Event-ID");
    if (!last)
        last = sig_req_query(r, "last_event_id");
    gint64 last_seq;
    if (!sig_parse_event_id(last, &last_seq)) {
        sig_reply_error(r, 400, "bad_last_event_id", "Last-Event-ID must be an event number");
        return;
    }
    if (streams_of(ev, r->user->id) >= (guint)app->cfg->sse_per_user) {
        sig_req_header(r, "Retry-After", "10");
        sig_reply_error(r, 429, "too_many_streams", "at most %" G_GINT64_FORMAT
                        " event streams per user", app->cfg->sse_per_user);
        return;
    }
    gint64 cursor = store_cursor(app->store, "notify");
    Stream *s = g_new0(Stream, 1);
    s->ev = ev;
    s->user = g_memdup2(r->user, sizeof *r->user);
    s->user->username = g_strdup(r->user->username);
    s->user->display_name = g_strdup(r->user->display_name);
    s->user->intro = g_strdup(r->user->intro);
    s->conn = r->conn;
    s->buf = g_string_new("retry: 3000\n: connected\n\n");
    s->last_seq = last_seq >= 0 ? MIN(last_seq, cursor) : cursor;
    if (last_seq >= 0)
        backfill(app, s, cursor);
    g_ptr_array_add(ev->streams, s);
    if (s->user->role == STORE_ROLE_TEACHER) {
        Presence *p = presence_of(ev, s->user->id);
        p->streams++;
        p->last_seen = g_get_monotonic_time();
    }
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, s,
                                          stream_free);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    /* When a stream ends (shutdown, a slow reader), the connection goes too. */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    sig_reply_response(r, 200, resp);
}

static gboolean
heartbeat(gpointer data)
{
    SigEvents *ev = data;
    for (guint i = 0; i < ev->streams->len; i++) {
        Stream *s = ev->streams->pdata[i];
        /* Also how a stream whose client vanished is found: the write fails
         * and MHD closes the connection. */
        g_string_append(s->buf, ": heartbeat\n\n");
        stream_wake(s);
    }
    return G_SOURCE_CONTINUE;
}

void
sig_events_close_all(SigApp *app)
{
    SigEvents *ev = app->events;
    if (!ev)
        return;
    for (guint i = 0; i < ev->streams->len; i++) {
        Stream *s = ev->streams->pdata[i];
        s->closing = TRUE;
        stream_wake(s);
    }
}

guint
sig_events_stream_count(SigApp *app)
{
    return app->events ? app->events->streams->len : 0;
}

/* -------------------------------------------------------------- presence */

void
sig_events_teacher_seen(SigApp *app, gint64 teacher)
{
    presence_of(app->events, teacher)->last_seen = g_get_monotonic_time();
}

gboolean
sig_events_teacher_gone(SigApp *app, gint64 teacher, gint64 grace_s)
{
    Presence *p = presence_of(app->events, teacher);
    return p->streams == 0 &&
           g_get_monotonic_time() - p->last_seen >= grace_s * G_USEC_PER_SEC;
}

/* ------------------------------------------------------------ dispatcher */

static void
fan_out(SigEvents *ev, const StoreEvent *e)
{
    g_autoptr(GArray) favorers = NULL;
    for (guint i = 0; i < ev->streams->len; i++) {
        Stream *s = ev->streams->pdata[i];
        if (!favorers && s->user->role == STORE_ROLE_STUDENT)
            favorers = store_favorers(ev->app->store, e->teacher_id);
        if (sig_event_for_user(ev->app, e, s->user, favorers))
            stream_push_event(s, e);
    }
}

static gboolean dispatch(gpointer data);

static gboolean
retry_dispatch(gpointer data)
{
    SigEvents *ev = data;
    ev->retry_timer = 0;
    sig_events_kick(ev->app);
    return G_SOURCE_REMOVE;
}

static gboolean
dispatch(gpointer data)
{
    SigEvents *ev = data;
    ev->dispatch_idle = 0;
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) evs = store_dispatch(ev->app->store, DISPATCH_BATCH,
                                              (const char *const *)ev->webhook_urls, &err);
    if (!evs) {
        g_warning("events: dispatch failed, retrying: %s", err->message);
        if (!ev->retry_timer)
            ev->retry_timer = g_timeout_add(200, retry_dispatch, ev);
        return G_SOURCE_REMOVE;
    }
    if (evs->len)
        ev->generation++; /* the read models moved */
    for (guint i = 0; i < evs->len; i++)
        fan_out(ev, evs->pdata[i]);
    if (evs->len) {
        sig_metrics_add(ev->app->metrics, "consultd_events_dispatched_total",
                        "Domain events applied to read models and streams", "", evs->len);
        sig_webhooks_kick(ev->app);
    }
    if (evs->len == DISPATCH_BATCH)
        sig_events_kick(ev->app); /* more to do; let other sources run first */
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
        ev->dispatch_idle = g_idle_add(dispatch, ev);
}

/* A safety net: events appended by another process (the CLI) or left by a
 * failed dispatch are picked up within a second. */
static gboolean
poll_log(gpointer data)
{
    SigEvents *ev = data;
    if (store_events_last_seq(ev->app->store) > store_cursor(ev->app->store, "notify"))
        sig_events_kick(ev->app);
    return G_SOURCE_CONTINUE;
}

SigEvents *
sig_events_new(SigApp *app)
{
    SigEvents *ev = g_new0(SigEvents, 1);
    ev->app = app;
    ev->streams = g_ptr_array_new();
    ev->presence = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, g_free);
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
    ev->heartbeat_timer = g_timeout_add_seconds(HEARTBEAT_S, heartbeat, ev);
    ev->poll_timer = g_timeout_add_seconds(1, poll_log, ev);
    app->events = ev;
    sig_events_kick(app); /* catch up with whatever the last run left */
    return ev;
}

void
sig_events_free(SigEvents *ev)
{
    if (!ev)
        return;
    g_clear_handle_id(&ev->dispatch_idle, g_source_remove);
    g_clear_handle_id(&ev->retry_timer, g_source_remove);
    g_clear_handle_id(&ev->heartbeat_timer, g_source_remove);
    g_clear_handle_id(&ev->poll_timer, g_source_remove);
    g_warn_if_fail(ev->streams->len == 0);
    g_ptr_array_unref(ev->streams);
    g_hash_table_destroy(ev->presence);
    g_strfreev(ev->webhook_urls);
    g_free(ev);
}
