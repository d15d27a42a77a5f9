/* stream.c - see stream.h.
 *
 * Streams.  GET /api/events answers with a libmicrohttpd callback response.
 * Each stream owns a text buffer; the content reader copies from it and,
 * when it is empty, suspends the connection (returning 0 without suspending
 * would make MHD spin).  Pushing text resumes it.  So an idle stream costs a
 * suspended socket and a few hundred bytes, never a thread or a poll.
 *
 * Lifetime of a stream: created by sig_h_events(), registered in
 * st->streams, owned by its MHD response; the response's free callback
 * unregisters and frees it.  A closing stream ends its response with
 * END_OF_STREAM.
 *
 * Ordering: a stream starts at Last-Event-ID (or at the notify cursor) and
 * is back-filled from the log up to the notify cursor; the dispatcher
 * (core/events.c) then hands this module every later event in seq order,
 * so nothing is missed or doubled.
 */
#include "api/stream.h"

#include <glib-unix.h>
#include <string.h>

#include "core/events.h"

#define HEARTBEAT_S 15
#define BACKFILL_MAX 1000
#define STREAM_BUFFER_MAX (1 << 20) /* a reader this far behind is cut off */

typedef struct {
    SigStreams *st;
    StoreUser *user;  /* user->session_expires: when the stream must end */
    char *token_hash; /* the session it was opened with */
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

struct SigStreams {
    SigApp *app;
    GPtrArray *streams;   /* Stream *, not owned */
    GHashTable *presence; /* gint64 *teacher -> Presence * */
    guint heartbeat_timer;
    guint expiry_timer;
};

static void
stream_wake(Stream *s)
{
    if (!s->suspended)
        return;
    g_clear_handle_id(&s->hangup_watch, g_source_remove);
    s->suspended = FALSE;
    MHD_resume_connection(s->conn);
    sig_http_kick(s->st->app->http);
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
    g_string_append_printf(s->buf, "id: %" G_GINT64_FORMAT "\nevent: %s\ndata: %s\n\n", e->seq,
                           e->type, data);
    if (s->buf->len > STREAM_BUFFER_MAX) {
        g_message("events: closing the stream of %s: it is not reading", s->user->username);
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
    sig_http_kick(s->st->app->http);
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
            s->hangup_watch =
                g_unix_fd_add(ci->connect_fd, G_IO_IN | G_IO_HUP | G_IO_ERR, on_hangup, s);
        return 0;
    }
    size_t n = MIN(max, s->buf->len);
    memcpy(buf, s->buf->str, n);
    g_string_erase(s->buf, 0, n);
    return (ssize_t)n;
}

static Presence *
presence_of(SigStreams *st, gint64 teacher)
{
    Presence *p = g_hash_table_lookup(st->presence, &teacher);
    if (!p) {
        p = g_new0(Presence, 1);
        p->last_seen = g_get_monotonic_time();
        g_hash_table_insert(st->presence, g_memdup2(&teacher, sizeof teacher), p);
    }
    return p;
}

static void
stream_free(void *cls)
{
    Stream *s = cls;
    SigStreams *st = s->st;
    g_clear_handle_id(&s->hangup_watch, g_source_remove);
    if (s->user->role == STORE_ROLE_TEACHER) {
        Presence *p = presence_of(st, s->user->id);
        p->streams--;
        p->last_seen = g_get_monotonic_time();
    }
    g_ptr_array_remove_fast(st->streams, s);
    g_free(s->token_hash);
    store_user_free(s->user);
    g_string_free(s->buf, TRUE);
    g_free(s);
}

static guint
streams_of(SigStreams *st, gint64 user)
{
    guint n = 0;
    for (guint i = 0; i < st->streams->len; i++)
        if (((Stream *)st->streams->pdata[i])->user->id == user)
            n++;
    return n;
}

static gboolean
backfill(SigApp *app, Stream *s, gint64 upto)
{
    g_autoptr(GPtrArray) evs =
        store_events_range(app->store, s->last_seq, upto, BACKFILL_MAX, NULL);
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
    SigStreams *st = app->streams;
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
    if (streams_of(st, r->user->id) >= (guint)app->cfg->sse_per_user) {
        sig_req_header(r, "Retry-After", "10");
        sig_reply_error(r, 429, "too_many_streams",
                        "at most %" G_GINT64_FORMAT " event streams per user",
                        app->cfg->sse_per_user);
        return;
    }
    gint64 cursor = sig_events_followed(app);
    Stream *s = g_new0(Stream, 1);
    s->st = st;
    s->token_hash = g_strdup(r->token_hash);
    s->user = g_memdup2(r->user, sizeof *r->user);
    s->user->username = g_strdup(r->user->username);
    s->user->display_name = g_strdup(r->user->display_name);
    s->user->intro = g_strdup(r->user->intro);
    s->conn = r->conn;
    s->buf = g_string_new("retry: 3000\n: connected\n\n");
    s->last_seq = last_seq >= 0 ? MIN(last_seq, cursor) : cursor;
    gint64 pruned = last_seq >= 0 ? store_cursor(app->store, "pruned") : 0;
    if (last_seq >= 0 && last_seq < pruned) {
        /* Retention deleted events after LAST_SEQ: the client cannot be
         * brought up to date from the log and must reload its state. */
        g_string_append_printf(s->buf,
                               "id: %" G_GINT64_FORMAT "\nevent: reset\ndata: {\"reason\":"
                               "\"history_pruned\",\"pruned_upto\":%" G_GINT64_FORMAT "}\n\n",
                               cursor, pruned);
        s->last_seq = cursor;
    } else if (last_seq >= 0) {
        backfill(app, s, cursor);
    }
    g_ptr_array_add(st->streams, s);
    if (s->user->role == STORE_ROLE_TEACHER) {
        Presence *p = presence_of(st, s->user->id);
        p->streams++;
        p->last_seen = g_get_monotonic_time();
    }
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, s, stream_free);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    /* When a stream ends (shutdown, a slow reader), the connection goes too. */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    sig_reply_response(r, 200, resp);
}

static gboolean
heartbeat(gpointer data)
{
    SigStreams *st = data;
    for (guint i = 0; i < st->streams->len; i++) {
        Stream *s = st->streams->pdata[i];
        /* Also how a stream whose client vanished is found: the write fails
         * and MHD closes the connection. */
        g_string_append(s->buf, ": heartbeat\n\n");
        stream_wake(s);
    }
    return G_SOURCE_CONTINUE;
}

/* Ends the streams for which MATCH says so (all, when MATCH is NULL). */
static guint
close_where(SigApp *app, gboolean (*match)(Stream *s, gconstpointer data), gconstpointer data)
{
    SigStreams *st = app->streams;
    guint n = 0;
    for (guint i = 0; st && i < st->streams->len; i++) {
        Stream *s = st->streams->pdata[i];
        if (!s->closing && (!match || match(s, data))) {
            s->closing = TRUE;
            stream_wake(s);
            n++;
        }
    }
    return n;
}

void
sig_streams_close_all(SigApp *app)
{
    close_where(app, NULL, NULL);
}

static gboolean
of_session(Stream *s, gconstpointer token_hash)
{
    return !g_strcmp0(s->token_hash, token_hash);
}

void
sig_streams_close_session(SigApp *app, const char *token_hash)
{
    close_where(app, of_session, token_hash);
}

typedef struct {
    gint64 user;
    const char *except; /* a session hash, or NULL */
} UserSessions;

static gboolean
of_user(Stream *s, gconstpointer data)
{
    const UserSessions *u = data;
    return s->user->id == u->user && g_strcmp0(s->token_hash, u->except);
}

void
sig_streams_close_user(SigApp *app, gint64 user, const char *except_token_hash)
{
    UserSessions u = {user, except_token_hash};
    close_where(app, of_user, &u);
}

static gboolean
expired(Stream *s, gconstpointer now)
{
    return s->user->session_expires && s->user->session_expires <= *(const gint64 *)now;
}

/* A session that runs out ends its streams within a second; logout,
 * deletion and password changes end them at once (the calls above). */
static gboolean
expiry_tick(gpointer data)
{
    SigStreams *st = data;
    gint64 now = store_now_ms();
    guint n = close_where(st->app, expired, &now);
    if (n)
        g_info("events: %u stream(s) ended: their sessions expired", n);
    return G_SOURCE_CONTINUE;
}

guint
sig_streams_count(SigApp *app)
{
    return app->streams ? app->streams->streams->len : 0;
}

/* -------------------------------------------------------------- presence */

void
sig_streams_teacher_seen(SigApp *app, gint64 teacher)
{
    presence_of(app->streams, teacher)->last_seen = g_get_monotonic_time();
}

gboolean
sig_streams_teacher_gone(SigApp *app, gint64 teacher, gint64 grace_s)
{
    Presence *p = presence_of(app->streams, teacher);
    return p->streams == 0 && g_get_monotonic_time() - p->last_seen >= grace_s * G_USEC_PER_SEC;
}

GArray *
sig_streams_teachers_present(SigApp *app)
{
    GArray *out = g_array_new(FALSE, FALSE, sizeof(gint64));
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, app->streams->presence);
    while (g_hash_table_iter_next(&it, &k, &v))
        if (((Presence *)v)->streams > 0)
            g_array_append_val(out, *(gint64 *)k);
    return out;
}

GArray *
sig_streams_students_present(SigApp *app)
{
    GArray *out = g_array_new(FALSE, FALSE, sizeof(gint64));
    GPtrArray *ss = app->streams->streams;
    for (guint i = 0; i < ss->len; i++) {
        const StoreUser *u = ((Stream *)ss->pdata[i])->user;
        if (u->role == STORE_ROLE_STUDENT)
            g_array_append_val(out, u->id);
    }
    return out;
}

/* ------------------------------------------------------------ lifecycle */

/* The dispatcher hands over every new event: it goes to the streams of the
 * users it concerns. */
static void
fan_out(SigApp *app, const StoreEvent *e, gpointer data)
{
    SigStreams *st = data;
    g_autoptr(GArray) also = NULL;
    /* Presence events also go to the teacher's favorers, line events to
     * the students in the teacher's line: looked up once per such event, if
     * a student listens, never for the others.  Before the loop: the
     * lookup may wait (a fiber, on PostgreSQL), and streams come and go
     * meanwhile. */
    for (guint i = 0; i < st->streams->len && !also && sig_event_reaches_others(e); i++)
        if (((Stream *)st->streams->pdata[i])->user->role == STORE_ROLE_STUDENT)
            also = sig_event_others(app, e);
    for (guint i = 0; i < st->streams->len; i++) {
        Stream *s = st->streams->pdata[i];
        if (sig_event_for_user(app, e, s->user, also))
            stream_push_event(s, e);
    }
}

SigStreams *
sig_streams_new(SigApp *app)
{
    SigStreams *st = g_new0(SigStreams, 1);
    st->app = app;
    st->streams = g_ptr_array_new();
    st->presence = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, g_free);
    st->heartbeat_timer = g_timeout_add_seconds(HEARTBEAT_S, heartbeat, st);
    st->expiry_timer = g_timeout_add_seconds(1, expiry_tick, st);
    app->streams = st;
    sig_events_listen(app, fan_out, st);
    return st;
}

void
sig_streams_free(SigStreams *st)
{
    if (!st)
        return;
    g_clear_handle_id(&st->heartbeat_timer, g_source_remove);
    g_clear_handle_id(&st->expiry_timer, g_source_remove);
    g_warn_if_fail(st->streams->len == 0);
    g_ptr_array_unref(st->streams);
    g_hash_table_destroy(st->presence);
    st->app->streams = NULL;
    g_free(st);
}
