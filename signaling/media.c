/* media.c - see media.h.
 *
 * Workers.  Each worker is a consultd-media child with one end of a
 * SOCK_SEQPACKET socketpair on fd 3.  A consultation is placed on the worker
 * with the fewest consultations and stays there.  When a worker exits, its
 * pending offers fail (503), its live consultations become interrupted
 * (events tell both participants), its sessions are forgotten, and it is
 * restarted after a backoff (1 s doubling to 30 s, reset once it has run for
 * a minute).  HTTP, logins and requests never wait for a worker.
 *
 * Sessions.  A WHIP/WHEP session is created by POST, named by a random id in
 * its Location, and owned by the user who created it: PATCH and DELETE from
 * anyone else get 404.  Its ETag changes never (we have no ICE restart), so
 * If-Match only has to equal it.
 *
 * Presence of participants.  joined/left reports from the worker become
 * participant.joined/left events.  A live consultation with nobody publishing
 * for media-end-grace seconds ends itself ("participants_left").
 */
#include "media.h"

#include <errno.h>
#include <gio/gio.h>
#include <sodium.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "consult.h"
#include "ice.h"
#include "events.h"
#include "metrics.h"
#include "proto.h"
#include "recordings.h"
#include "sdpscan.h"

#define SDP_MAX (64 * 1024)
#define OFFER_TIMEOUT_S 20
/* How long an offer waits for a worker that is starting or restarting
 * before it is refused with 503 (a standard WHIP client may not retry). */
#define WORKER_WAIT_S 10

typedef struct Worker Worker;

typedef struct {
    guint32 req;
    SigReq *r;         /* suspended HTTP request */
    Worker *w;
    guint timeout;
} Pending;

typedef struct {
    char *id;
    char *etag;
    gint64 consultation;
    gint64 user;
    int role;          /* 0 teacher, 1 student */
    gboolean publish;
    char *remote_ufrag;
    GPtrArray *mids;   /* mid of each m-line of the offer, in order */
    Worker *w;
    gboolean answered;
    gboolean joined;   /* publish: media has arrived (counted in present) */
} MSession;

struct Worker {
    SigMedia *m;
    guint index;
    GSubprocess *proc;
    MediaChan *chan;
    GCancellable *cancel;
    gboolean ready;
    gint64 pid;
    gint64 started_at;
    guint backoff_s;
    guint restart_timer;
    guint consultations;
    guint64 packets_in, packets_out, keyframes, lost;
    guint64 nacks_received, retransmitted, nacks_sent, recovered; /* loss repair */
    guint rooms, sessions;
};

struct SigMedia {
    SigApp *app;
    GPtrArray *workers;       /* Worker * */
    GHashTable *pending;      /* guint32 req -> Pending * */
    GHashTable *sessions;     /* char *id -> MSession * */
    GHashTable *placement;    /* gint64 *consultation -> Worker * */
    GHashTable *present;      /* gint64 *consultation -> guint publishers joined */
    GHashTable *end_timers;   /* gint64 *consultation -> guint source id */
    GHashTable *finishing;    /* gint64 *consultation -> Worker *: ended, its
                               * recordings possibly still being finalized
                               * there; forgotten once they are settled */
    guint32 next_req;
    guint64 restarts;
    char *worker_bin;
    Worker *fed;              /* stands for the sender of sig_media_feed() */
    GQueue parked;            /* Parked *: offers waiting for a ready worker */
};

/* An offer that came while no worker was ready (start-up, restart after a
 * crash): its request stays suspended until one is, or WORKER_WAIT_S. */
typedef struct {
    SigMedia *m;
    SigReq *r;
    MSession *s;       /* prepared: who, which direction, ufrag and mids */
    guint timeout;
} Parked;

static void offer_dispatch(SigMedia *m, SigReq *r, MSession *s);
static void unavailable(SigReq *r, const char *message);

static const char *const role_names[] = {"teacher", "student"};

static void worker_start(Worker *w);

/* --------------------------------------------------------------- helpers */

static void
msession_free(MSession *s)
{
    g_free(s->id);
    g_free(s->etag);
    g_free(s->remote_ufrag);
    g_ptr_array_unref(s->mids);
    g_free(s);
}

static char *
random_hex(gsize bytes)
{
    guint8 raw[32];
    g_assert(bytes <= sizeof raw);
    randombytes_buf(raw, bytes);
    char *out = g_malloc(bytes * 2 + 1);
    sodium_bin2hex(out, bytes * 2 + 1, raw, bytes);
    return out;
}

static gboolean
is_live(StoreConsultStatus st)
{
    return st == STORE_CONSULT_LIVE || st == STORE_CONSULT_INTERRUPTED;
}

/* -------------------------------------------------------- worker reports */

static void
pending_finish(SigMedia *m, Pending *p, const char *sdp, MSession *s, const char *code,
               const char *message)
{
    SigReq *r = p->r;
    g_clear_handle_id(&p->timeout, g_source_remove);
    g_hash_table_remove(m->pending, &p->req); /* frees p */
    if (sdp && s) {
        s->answered = TRUE;
        g_autofree char *loc = g_strdup_printf("%s/%s/consultations/%" G_GINT64_FORMAT
                                               "/sessions/%s", m->app->cfg->public_url,
                                               s->publish ? "whip" : "whep", s->consultation,
                                               s->id);
        g_autofree char *etag = g_strdup_printf("\"%s\"", s->etag);
        sig_req_header(r, MHD_HTTP_HEADER_LOCATION, loc);
        sig_req_header(r, MHD_HTTP_HEADER_ETAG, etag);
        sig_req_header(r, "Access-Control-Expose-Headers", "Location, ETag, Link");
        sig_ice_link_headers(r);
        sig_reply_data(r, 201, "application/sdp", sdp, strlen(sdp));
    } else {
        gboolean client = code && (!strcmp(code, "bad_offer") || !strcmp(code, "no_codec"));
        if (!client)
            sig_req_header(r, "Retry-After", "2");
        sig_reply_error(r, client ? 400 : 503,
                        code && !strcmp(code, "no_codec") ? "no_usable_codec"
                        : client ? "bad_sdp" : "media_unavailable",
                        "%s", message ? message : "the media worker did not answer");
        if (s)
            g_hash_table_remove(m->sessions, s->id);
    }
    sig_req_resume(r);
}

/* Answers the offers waiting for W (NULL: any worker) with 503 MESSAGE and
 * resumes their requests. */
static void
fail_pending(SigMedia *m, Worker *w, const char *message)
{
    GHashTableIter it;
    Pending *p;
    g_autoptr(GPtrArray) lost = g_ptr_array_new();
    g_hash_table_iter_init(&it, m->pending);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&p))
        if (!w || p->w == w)
            g_ptr_array_add(lost, p);
    for (guint i = 0; i < lost->len; i++)
        pending_finish(m, lost->pdata[i], NULL, NULL, "worker_lost", message);
}

static gboolean
pending_timeout(gpointer data)
{
    Pending *p = data;
    p->timeout = 0;
    SigMedia *m = p->w->m;
    pending_finish(m, p, NULL, NULL, "timeout", "the media worker did not answer in time");
    return G_SOURCE_REMOVE;
}

static void
end_timer_fire_cancel(SigMedia *m, gint64 c)
{
    guint id = GPOINTER_TO_UINT(g_hash_table_lookup(m->end_timers, &c));
    if (id) {
        g_source_remove(id);
        g_hash_table_remove(m->end_timers, &c);
    }
}

typedef struct {
    SigMedia *m;
    gint64 consultation;
} EndCheck;

static gboolean
end_if_empty(gpointer data)
{
    EndCheck *e = data;
    SigMedia *m = e->m;
    g_hash_table_remove(m->end_timers, &e->consultation);
    if (GPOINTER_TO_UINT(g_hash_table_lookup(m->present, &e->consultation)) == 0) {
        g_autoptr(StoreConsultation) c = store_consultation_get(m->app->store, e->consultation, NULL);
        if (c && is_live(c->status) &&
            store_consultation_transition(m->app->store, c->id, STORE_CONSULT_ENDED,
                                          "participants_left", NULL)) {
            g_message("consultation %" G_GINT64_FORMAT " ended: both participants left",
                      c->id);
            sig_events_kick(m->app);
            sig_media_end(m->app, c->id);
        }
    }
    return G_SOURCE_REMOVE;
}

static void
presence_change(SigMedia *m, gint64 c, int delta)
{
    guint n = GPOINTER_TO_UINT(g_hash_table_lookup(m->present, &c));
    n = delta > 0 ? n + 1 : (n > 0 ? n - 1 : 0);
    g_hash_table_insert(m->present, g_memdup2(&c, sizeof c), GUINT_TO_POINTER(n));
    end_timer_fire_cancel(m, c);
    if (n == 0) {
        EndCheck *e = g_new0(EndCheck, 1);
        e->m = m;
        e->consultation = c;
        guint id = g_timeout_add_seconds_full(G_PRIORITY_DEFAULT,
                                              (guint)m->app->cfg->media_end_grace,
                                              end_if_empty, e, g_free);
        g_hash_table_insert(m->end_timers, g_memdup2(&c, sizeof c), GUINT_TO_POINTER(id));
    }
}

static void
on_joined_left(SigMedia *m, GVariant *msg, gboolean joined)
{
    gint64 c = 0;
    const char *role = "", *session = "", *reason = NULL;
    g_variant_lookup(msg, "consultation", "x", &c);
    g_variant_lookup(msg, "role", "&s", &role);
    g_variant_lookup(msg, "session", "&s", &session);
    g_variant_lookup(msg, "reason", "&s", &reason);
    if (strcmp(role, "teacher") && strcmp(role, "student"))
        return;
    SigApp *app = m->app;
    MSession *ms = g_hash_table_lookup(m->sessions, session);
    if (!ms || ms->consultation != c)
        return; /* dropped already (DELETE, replaced, worker lost) */
    gboolean was_joined = ms->joined;
    if (!joined) {
        g_hash_table_remove(m->sessions, session);
        if (!was_joined)
            return; /* never had media: nobody to say goodbye for */
    } else if (was_joined) {
        return;
    } else {
        ms->joined = TRUE;
    }
    g_autoptr(StoreConsultation) cons = store_consultation_get(app->store, c, NULL);
    if (!cons)
        return;
    store_participant_event(app->store, c, role, joined,
                            reason && (!strcmp(reason, "media-timeout") ||
                                       !strcmp(reason, "no-media")) ? reason : NULL, NULL);
    if (joined && cons->status == STORE_CONSULT_INTERRUPTED)
        store_consultation_transition(app->store, c, STORE_CONSULT_LIVE, NULL, NULL);
    presence_change(m, c, joined ? 1 : -1);
    sig_metrics_add(app->metrics, "consultd_media_participant_events_total",
                    "Participants joining and leaving media", joined ? "kind=\"joined\""
                                                                   : "kind=\"left\"", 1);
    sig_events_kick(app);
}

static void
on_worker_message(MediaChan *ch, GVariant *msg, gpointer data)
{
    Worker *w = data;
    SigMedia *m = w->m;
    const char *op = media_msg_op(msg);
    if (!strcmp(op, "answer") || !strcmp(op, "error")) {
        guint32 req = 0;
        const char *session = "", *sdp = NULL, *code = NULL, *message = NULL;
        g_variant_lookup(msg, "req", "u", &req);
        g_variant_lookup(msg, "session", "&s", &session);
        g_variant_lookup(msg, "sdp", "&s", &sdp);
        g_variant_lookup(msg, "code", "&s", &code);
        g_variant_lookup(msg, "message", "&s", &message);
        Pending *p = g_hash_table_lookup(m->pending, &req);
        MSession *s = g_hash_table_lookup(m->sessions, session);
        if (p)
            pending_finish(m, p, !strcmp(op, "answer") ? sdp : NULL, s, code, message);
        else if (s && !s->answered)
            g_hash_table_remove(m->sessions, session);
    } else if (!strcmp(op, "joined")) {
        on_joined_left(m, msg, TRUE);
    } else if (!strcmp(op, "left")) {
        on_joined_left(m, msg, FALSE);
    } else if (!strcmp(op, "recording")) {
        gint64 c = 0, started = 0, duration = 0, size = 0;
        const char *role = "", *file = "", *state = "", *reason = "";
        g_variant_lookup(msg, "consultation", "x", &c);
        g_variant_lookup(msg, "role", "&s", &role);
        g_variant_lookup(msg, "file", "&s", &file);
        g_variant_lookup(msg, "state", "&s", &state);
        g_variant_lookup(msg, "reason", "&s", &reason);
        g_variant_lookup(msg, "started_at", "x", &started);
        g_variant_lookup(msg, "duration_ms", "x", &duration);
        g_variant_lookup(msg, "size", "x", &size);
        sig_recording_report(m->app, c, role, file, state, *reason ? reason : NULL, started,
                             duration, size);
        gint64 open, ready;
        store_recordings_progress(m->app->store, c, &open, &ready);
        if (!open)
            g_hash_table_remove(m->finishing, &c);
    } else if (!strcmp(op, "stats")) {
        g_variant_lookup(msg, "packets_in", "t", &w->packets_in);
        g_variant_lookup(msg, "packets_out", "t", &w->packets_out);
        g_variant_lookup(msg, "keyframe_requests", "t", &w->keyframes);
        g_variant_lookup(msg, "packets_lost", "t", &w->lost);
        g_variant_lookup(msg, "nacks_received", "t", &w->nacks_received);
        g_variant_lookup(msg, "retransmitted", "t", &w->retransmitted);
        g_variant_lookup(msg, "nacks_sent", "t", &w->nacks_sent);
        g_variant_lookup(msg, "recovered", "t", &w->recovered);
        g_variant_lookup(msg, "rooms", "u", &w->rooms);
        g_variant_lookup(msg, "sessions", "u", &w->sessions);
    } else if (!strcmp(op, "ready")) {
        g_variant_lookup(msg, "pid", "x", &w->pid);
        w->ready = TRUE;
        g_message("media worker %u ready (pid %" G_GINT64_FORMAT ")", w->index, w->pid);
        /* Offers that waited for a worker go now (on whichever is ready). */
        Parked *pk;
        while ((pk = g_queue_pop_head(&m->parked))) {
            g_source_remove(pk->timeout);
            offer_dispatch(m, pk->r, pk->s);
            g_free(pk);
        }
    }
}

void
sig_media_feed(SigApp *app, const void *data, gsize len)
{
    SigMedia *m = app->media;
    if (!m->fed) {
        m->fed = g_new0(Worker, 1);
        m->fed->m = m;
        m->fed->index = G_MAXUINT;
    }
    g_autoptr(GVariant) msg = media_msg_decode(data, len);
    on_worker_message(NULL, msg, m->fed);
}

/* ------------------------------------------------------ worker lifecycle */

static void
on_worker_closed(MediaChan *ch, gpointer data)
{
    /* The exit watch does the clean-up; EOF may come first. */
}

static gboolean
restart_worker(gpointer data)
{
    Worker *w = data;
    w->restart_timer = 0;
    worker_start(w);
    return G_SOURCE_REMOVE;
}

/* Everything that depended on worker W is gone with it. */
static void
worker_lost(Worker *w)
{
    SigMedia *m = w->m;
    SigApp *app = m->app;
    w->ready = FALSE;
    g_clear_pointer(&w->chan, media_chan_free);
    g_clear_object(&w->proc);
    fail_pending(m, w, "the media worker stopped; retry");
    GHashTableIter it;
    /* Its sessions are gone; its live consultations are interrupted. */
    MSession *s;
    g_hash_table_iter_init(&it, m->sessions);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&s))
        if (s->w == w)
            g_hash_table_iter_remove(&it);
    gint64 *c;
    Worker *pw;
    g_autoptr(GHashTable) lost_ids = g_hash_table_new_full(g_int64_hash, g_int64_equal,
                                                           g_free, NULL);
    g_hash_table_iter_init(&it, m->placement);
    while (g_hash_table_iter_next(&it, (gpointer *)&c, (gpointer *)&pw)) {
        if (pw != w)
            continue;
        g_hash_table_add(lost_ids, g_memdup2(c, sizeof *c));
        g_autoptr(StoreConsultation) cons = store_consultation_get(app->store, *c, NULL);
        if (cons && cons->status == STORE_CONSULT_LIVE)
            store_consultation_transition(app->store, *c, STORE_CONSULT_INTERRUPTED,
                                          "media_worker_lost", NULL);
        g_hash_table_remove(m->present, c);
        end_timer_fire_cancel(m, *c);
        g_hash_table_iter_remove(&it);
    }
    /* ...and so were the recordings it was still finalizing. */
    g_hash_table_iter_init(&it, m->finishing);
    while (g_hash_table_iter_next(&it, (gpointer *)&c, (gpointer *)&pw)) {
        if (pw != w)
            continue;
        g_hash_table_add(lost_ids, g_memdup2(c, sizeof *c));
        g_hash_table_iter_remove(&it);
    }
    w->consultations = 0;
    /* Its recordings were cut short: repair what was written. */
    sig_recordings_repair(app, lost_ids);
    sig_events_kick(app);
    m->restarts++;
    if (app->stopping)
        return;
    if (g_get_monotonic_time() - w->started_at > 60 * G_USEC_PER_SEC)
        w->backoff_s = 1;
    w->backoff_s = MIN(w->backoff_s, (guint)m->app->cfg->media_restart_max);
    g_warning("media worker %u lost; restarting in %u s", w->index, w->backoff_s);
    w->restart_timer = g_timeout_add_seconds(w->backoff_s, restart_worker, w);
    w->backoff_s = MIN(w->backoff_s * 2, (guint)m->app->cfg->media_restart_max);
}

static void
on_worker_exit(GObject *src, GAsyncResult *res, gpointer data)
{
    Worker *w = data;
    g_autoptr(GError) err = NULL;
    g_subprocess_wait_finish(G_SUBPROCESS(src), res, &err);
    if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        return; /* sig_media_free() is tearing down */
    g_autoptr(GSubprocess) proc = G_SUBPROCESS(g_object_ref(src));
    if (proc != w->proc)
        return;
    if (g_subprocess_get_if_signaled(proc))
        g_warning("media worker %u (pid %" G_GINT64_FORMAT ") killed by signal %d", w->index,
                  w->pid, g_subprocess_get_term_sig(proc));
    else
        g_warning("media worker %u exited with %d", w->index,
                  g_subprocess_get_exit_status(proc));
    worker_lost(w);
}

static void
worker_start(Worker *w)
{
    SigMedia *m = w->m;
    SigConfig *cfg = m->app->cfg;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        g_warning("media worker %u: socketpair: %s", w->index, g_strerror(errno));
        w->restart_timer = g_timeout_add_seconds(5, restart_worker, w);
        return;
    }
    g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(argv, g_strdup(m->worker_bin));
    g_ptr_array_add(argv, g_strdup("--fd=3"));
    g_ptr_array_add(argv, g_strdup_printf("--media-timeout=%" G_GINT64_FORMAT,
                                          cfg->media_timeout));
    g_ptr_array_add(argv, g_strdup_printf("--max-bitrate=%" G_GINT64_FORMAT,
                                          cfg->media_max_bitrate));
    if (cfg->media_ice_loopback)
        g_ptr_array_add(argv, g_strdup("--ice-loopback"));
    if (*cfg->media_ice_addresses)
        g_ptr_array_add(argv, g_strdup_printf("--ice-addresses=%s", cfg->media_ice_addresses));
    if (cfg->media_port_min && cfg->media_port_max) {
        g_ptr_array_add(argv, g_strdup_printf("--min-port=%" G_GINT64_FORMAT, cfg->media_port_min));
        g_ptr_array_add(argv, g_strdup_printf("--max-port=%" G_GINT64_FORMAT, cfg->media_port_max));
    }
    if (*cfg->media_public_ip)
        g_ptr_array_add(argv, g_strdup_printf("--public-ip=%s", cfg->media_public_ip));
    if (*cfg->media_stun)
        g_ptr_array_add(argv, g_strdup_printf("--stun=%s", cfg->media_stun));
    if (cfg->record) {
        g_autofree char *dir = g_build_filename(cfg->data_dir, "recordings", NULL);
        g_autofree char *abs = g_canonicalize_filename(dir, NULL);
        g_ptr_array_add(argv, g_strdup_printf("--recordings-dir=%s", abs));
    }
    g_ptr_array_add(argv, NULL);
    g_autoptr(GSubprocessLauncher) l = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_NONE);
    g_subprocess_launcher_take_fd(l, sv[1], 3);
    g_autoptr(GError) err = NULL;
    w->proc = g_subprocess_launcher_spawnv(l, (const char *const *)argv->pdata, &err);
    if (!w->proc) {
        close(sv[0]);
        g_warning("media worker %u: cannot start %s: %s", w->index, m->worker_bin,
                  err->message);
        w->restart_timer = g_timeout_add_seconds(5, restart_worker, w);
        return;
    }
    w->started_at = g_get_monotonic_time();
    w->chan = media_chan_new(sv[0], on_worker_message, on_worker_closed, w);
    g_subprocess_wait_async(w->proc, w->cancel, on_worker_exit, w);
}

/* Finds (or places) the worker of consultation C; NULL if none is ready. */
static Worker *
worker_for(SigMedia *m, gint64 c)
{
    Worker *w = g_hash_table_lookup(m->placement, &c);
    if (w && w->ready)
        return w;
    if (w)
        return NULL;
    Worker *best = NULL;
    for (guint i = 0; i < m->workers->len; i++) {
        Worker *x = m->workers->pdata[i];
        if (x->ready && (!best || x->consultations < best->consultations))
            best = x;
    }
    if (best) {
        best->consultations++;
        g_hash_table_insert(m->placement, g_memdup2(&c, sizeof c), best);
    }
    return best;
}

static char *
find_worker_bin(void)
{
    const char *env = g_getenv("CONSULTD_MEDIA_BIN");
    if (env && *env)
        return g_strdup(env);
    g_autofree char *self = g_file_read_link("/proc/self/exe", NULL);
    if (self) {
        g_autofree char *dir = g_path_get_dirname(self);
        char *p = g_build_filename(dir, "consultd-media", NULL);
        if (g_file_test(p, G_FILE_TEST_IS_EXECUTABLE))
            return p;
        g_free(p);
    }
    char *p = g_find_program_in_path("consultd-media");
    return p ? p : g_strdup("consultd-media");
}

SigMedia *
sig_media_new(SigApp *app)
{
    SigMedia *m = g_new0(SigMedia, 1);
    m->app = app;
    m->workers = g_ptr_array_new();
    m->pending = g_hash_table_new_full(g_int_hash, g_int_equal, NULL, g_free);
    m->sessions = g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
                                        (GDestroyNotify)msession_free);
    m->placement = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    m->present = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    m->end_timers = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    m->finishing = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    m->worker_bin = find_worker_bin();
    app->media = m;
    for (gint64 i = 0; i < app->cfg->media_workers; i++) {
        Worker *w = g_new0(Worker, 1);
        w->m = m;
        w->index = (guint)i;
        w->backoff_s = 1;
        w->cancel = g_cancellable_new();
        g_ptr_array_add(m->workers, w);
        worker_start(w);
    }
    return m;
}

void
sig_media_free(SigMedia *m)
{
    if (!m)
        return;
    /* Offers still waiting for a worker's answer get one: freed silently,
     * they left suspended requests (and their timers), on which
     * libmicrohttpd aborted when HTTP stopped (issue 21, finding 5). */
    fail_pending(m, NULL, "the server is shutting down; retry");
    Parked *pk;
    while ((pk = g_queue_pop_head(&m->parked))) {
        g_source_remove(pk->timeout);
        msession_free(pk->s);
        unavailable(pk->r, "the server is shutting down");
        sig_req_resume(pk->r);
        g_free(pk);
    }
    for (guint i = 0; i < m->workers->len; i++) {
        Worker *w = m->workers->pdata[i];
        g_cancellable_cancel(w->cancel);
        g_clear_handle_id(&w->restart_timer, g_source_remove);
        /* Closing the channel makes the worker exit by itself; wait briefly,
         * then insist. */
        g_clear_pointer(&w->chan, media_chan_free);
        if (w->proc) {
            gint64 deadline = g_get_monotonic_time() + 3 * G_USEC_PER_SEC;
            /* GSubprocess reaps on GLib's worker thread: the identifier
             * turns NULL once the child has exited. */
            while (g_subprocess_get_identifier(w->proc) && g_get_monotonic_time() < deadline)
                g_usleep(10000);
            if (g_subprocess_get_identifier(w->proc)) {
                g_warning("media worker %u did not exit; killing it", w->index);
                g_subprocess_force_exit(w->proc);
            }
            g_subprocess_wait(w->proc, NULL, NULL);
            g_clear_object(&w->proc);
        }
        g_object_unref(w->cancel);
        g_free(w);
    }
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, m->end_timers);
    while (g_hash_table_iter_next(&it, &k, &v))
        g_source_remove(GPOINTER_TO_UINT(v));
    g_ptr_array_unref(m->workers);
    g_hash_table_destroy(m->pending);
    g_hash_table_destroy(m->sessions);
    g_hash_table_destroy(m->placement);
    g_hash_table_destroy(m->present);
    g_hash_table_destroy(m->end_timers);
    g_hash_table_destroy(m->finishing);
    g_free(m->worker_bin);
    g_free(m->fed);
    m->app->media = NULL;
    g_free(m);
}

const char *
sig_media_worker_bin(SigApp *app)
{
    return app->media ? app->media->worker_bin : "consultd-media";
}

gboolean
sig_media_ready(SigApp *app, char **why)
{
    SigMedia *m = app->media;
    if (!m || m->workers->len == 0) {
        *why = g_strdup("media disabled (media-workers = 0)");
        return TRUE; /* disabled is a configuration, not a failure */
    }
    for (guint i = 0; i < m->workers->len; i++)
        if (((Worker *)m->workers->pdata[i])->ready)
            return TRUE;
    *why = g_strdup("no media worker is running");
    return FALSE;
}

void
sig_media_metrics(SigApp *app, GString *out)
{
    SigMedia *m = app->media;
    if (!m)
        return;
    guint ready = 0, rooms = 0, sessions = 0;
    guint64 in = 0, outp = 0, kf = 0, lost = 0, nr = 0, rtx = 0, ns = 0, rec = 0;
    for (guint i = 0; i < m->workers->len; i++) {
        Worker *w = m->workers->pdata[i];
        ready += w->ready;
        rooms += w->rooms;
        sessions += w->sessions;
        in += w->packets_in;
        outp += w->packets_out;
        kf += w->keyframes;
        lost += w->lost;
        nr += w->nacks_received;
        rtx += w->retransmitted;
        ns += w->nacks_sent;
        rec += w->recovered;
    }
    g_string_append_printf(out,
        "# HELP consultd_media_workers_ready Media workers running\n"
        "# TYPE consultd_media_workers_ready gauge\nconsultd_media_workers_ready %u\n"
        "# HELP consultd_media_worker_restarts_total Media worker restarts\n"
        "# TYPE consultd_media_worker_restarts_total counter\n"
        "consultd_media_worker_restarts_total %" G_GUINT64_FORMAT "\n"
        "# HELP consultd_media_rooms Consultations with a media pipeline\n"
        "# TYPE consultd_media_rooms gauge\nconsultd_media_rooms %u\n"
        "# HELP consultd_media_sessions Live WHIP/WHEP sessions\n"
        "# TYPE consultd_media_sessions gauge\nconsultd_media_sessions %u\n"
        "# HELP consultd_media_packets_in_total RTP packets received from publishers\n"
        "# TYPE consultd_media_packets_in_total counter\n"
        "consultd_media_packets_in_total %" G_GUINT64_FORMAT "\n"
        "# HELP consultd_media_packets_out_total RTP packets relayed to subscribers\n"
        "# TYPE consultd_media_packets_out_total counter\n"
        "consultd_media_packets_out_total %" G_GUINT64_FORMAT "\n"
        "# HELP consultd_media_keyframe_requests_total Keyframe requests sent upstream\n"
        "# TYPE consultd_media_keyframe_requests_total counter\n"
        "consultd_media_keyframe_requests_total %" G_GUINT64_FORMAT "\n"
        "# HELP consultd_media_packets_lost_total RTP packets publishers sent that never arrived\n"
        "# TYPE consultd_media_packets_lost_total counter\n"
        "consultd_media_packets_lost_total %" G_GUINT64_FORMAT "\n"
        "# HELP consultd_media_nacks_received_total Packets subscribers NACKed\n"
        "# TYPE consultd_media_nacks_received_total counter\n"
        "consultd_media_nacks_received_total %" G_GUINT64_FORMAT "\n"
        "# HELP consultd_media_retransmitted_total NACKed packets sent again to subscribers\n"
        "# TYPE consultd_media_retransmitted_total counter\n"
        "consultd_media_retransmitted_total %" G_GUINT64_FORMAT "\n"
        "# HELP consultd_media_nacks_sent_total Packets NACKed to publishers (first NACKs and repeats)\n"
        "# TYPE consultd_media_nacks_sent_total counter\n"
        "consultd_media_nacks_sent_total %" G_GUINT64_FORMAT "\n"
        "# HELP consultd_media_recovered_total Packets missing from publishers that came after a NACK\n"
        "# TYPE consultd_media_recovered_total counter\n"
        "consultd_media_recovered_total %" G_GUINT64_FORMAT "\n",
        ready, m->restarts, rooms, sessions, in, outp, kf, lost, nr, rtx, ns, rec);
}

void
sig_media_end(SigApp *app, gint64 c)
{
    SigMedia *m = app->media;
    if (!m)
        return;
    Worker *w = g_hash_table_lookup(m->placement, &c);
    if (w && w->chan)
        media_chan_send(w->chan, media_msg("end", "consultation", "x", c, NULL));
    if (w)
        g_hash_table_insert(m->finishing, g_memdup2(&c, sizeof c), w);
    if (w && w->consultations)
        w->consultations--;
    GHashTableIter it;
    MSession *s;
    g_hash_table_iter_init(&it, m->sessions);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&s))
        if (s->consultation == c)
            g_hash_table_iter_remove(&it);
    g_hash_table_remove(m->placement, &c);
    g_hash_table_remove(m->present, &c);
    end_timer_fire_cancel(m, c);
}

/* Forgets session S, which the client ended (DELETE) or replaced (a new
 * POST of the same role and direction).  A publisher that had joined
 * leaves: on DELETE with an event, on replacement silently (they are still
 * there, on the new session). */
static void
session_drop(SigMedia *m, MSession *s, gboolean replaced)
{
    if (s->w->chan)
        media_chan_send(s->w->chan, media_msg("close", "session", "s", s->id, NULL));
    if (s->publish && s->joined) {
        if (!replaced) {
            store_participant_event(m->app->store, s->consultation, role_names[s->role],
                                    FALSE, "deleted", NULL);
            sig_events_kick(m->app);
        }
        presence_change(m, s->consultation, -1);
    }
    g_hash_table_remove(m->sessions, s->id);
}

/* ------------------------------------------------------------- endpoints */

static const char *
content_type(SigReq *r)
{
    const char *ct = sig_req_get_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    return ct ? ct : "";
}

static void
media_post(SigReq *r, gboolean publish)
{
    SigApp *app = r->app;
    SigMedia *m = app->media;
    gint64 id = sig_req_id(r, 0);
    if (!id)
        return;
    g_autoptr(GError) err = NULL;
    g_autoptr(StoreConsultation) c = store_consultation_get(app->store, id, &err);
    if (!c) {
        sig_reply_store_error(r, err);
        return;
    }
    int role = c->teacher_id == r->user->id ? 0 : c->student_id == r->user->id ? 1 : -1;
    if (role < 0) {
        sig_reply_error(r, 403, "forbidden", "only the consultation's participants take part");
        return;
    }
    if (!is_live(c->status)) {
        sig_reply_error(r, 409, "not_live", "the consultation is %s, not live",
                        store_consult_status_name(c->status));
        return;
    }
    if (g_ascii_strncasecmp(content_type(r), "application/sdp", 15)) {
        sig_reply_error(r, 415, "unsupported_media_type", "the offer must be application/sdp");
        return;
    }
    if (r->body->len > SDP_MAX) {
        sig_reply_error(r, 413, "body_too_large", "an SDP offer may have at most %d bytes",
                        SDP_MAX);
        return;
    }
    const char *sdp = r->body->str;
    if (strlen(sdp) != r->body->len || !g_utf8_validate(sdp, -1, NULL) ||
        !g_str_has_prefix(sdp, "v=0")) {
        sig_reply_error(r, 400, "bad_sdp", "the body is not an SDP offer");
        return;
    }
    SigSdpOffer *scan = sig_sdp_scan(sdp);
    if (!sig_sdp_offer_usable(scan)) {
        sig_sdp_offer_free(scan);
        sig_reply_error(r, 400, "bad_sdp",
                        "the offer needs m= lines, a=ice-ufrag and a=fingerprint");
        return;
    }
    MSession *s = g_new0(MSession, 1);
    s->remote_ufrag = g_steal_pointer(&scan->ufrag);
    s->mids = g_ptr_array_ref(scan->mids);
    sig_sdp_offer_free(scan);
    s->consultation = id;
    s->user = r->user->id;
    s->role = role;
    s->publish = publish;
    offer_dispatch(m, r, s);
}

static void
unavailable(SigReq *r, const char *message)
{
    sig_req_header(r, "Retry-After", "2");
    sig_reply_error(r, 503, "media_unavailable", "%s", message);
}

static gboolean
parked_timeout(gpointer data)
{
    Parked *pk = data;
    g_queue_remove(&pk->m->parked, pk);
    msession_free(pk->s);
    unavailable(pk->r, "no media worker became ready in time; retry");
    sig_req_resume(pk->r);
    g_free(pk);
    return G_SOURCE_REMOVE;
}

/* Sends the prepared offer S to the consultation's worker, or parks it
 * while workers are (re)starting.  R may already be suspended (a parked
 * offer on its second try). */
static void
offer_dispatch(SigMedia *m, SigReq *r, MSession *s)
{
    gboolean publish = s->publish;
    gint64 id = s->consultation;
    int role = s->role;
    const char *sdp = r->body->str;
    gboolean waited = r->suspended;
    if (waited) {
        /* It may have ended while the offer waited. */
        g_autoptr(StoreConsultation) c = store_consultation_get(m->app->store, id, NULL);
        if (!c || !is_live(c->status)) {
            msession_free(s);
            sig_reply_error(r, 409, "not_live", "the consultation is no longer live");
            sig_req_resume(r);
            return;
        }
    }
    Worker *w = m ? worker_for(m, id) : NULL;
    if (!w && m && m->workers->len > 0 && !waited) {
        Parked *pk = g_new0(Parked, 1);
        pk->m = m;
        pk->r = r;
        pk->s = s;
        pk->timeout = g_timeout_add_seconds(WORKER_WAIT_S, parked_timeout, pk);
        g_queue_push_tail(&m->parked, pk);
        sig_req_suspend(r);
        return;
    }
    if (!w) {
        msession_free(s);
        unavailable(r, m && m->workers->len ? "no media worker is available; retry"
                                            : "media is disabled on this server");
        if (waited)
            sig_req_resume(r);
        return;
    }
    /* Publishing (or receiving) again replaces the participant's previous
     * session of that direction. */
    GHashTableIter it;
    MSession *old;
    g_hash_table_iter_init(&it, m->sessions);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&old)) {
        if (old->consultation == id && old->role == role && old->publish == publish) {
            session_drop(m, old, TRUE);
            break;
        }
    }
    s->id = random_hex(16);
    s->etag = random_hex(8);
    s->w = w;
    g_hash_table_insert(m->sessions, s->id, s);
    Pending *p = g_new0(Pending, 1);
    p->req = ++m->next_req;
    p->r = r;
    p->w = w;
    p->timeout = g_timeout_add_seconds(OFFER_TIMEOUT_S, pending_timeout, p);
    g_hash_table_insert(m->pending, &p->req, p);
    if (!r->suspended)
        sig_req_suspend(r);
    if (!media_chan_send(w->chan, media_msg("offer", "req", "u", p->req, "session", "s", s->id,
                                            "consultation", "x", id, "role", "s",
                                            role_names[role], "dir", "s",
                                            publish ? "publish" : "receive", "sdp", "s", sdp,
                                            NULL)))
        pending_finish(m, p, NULL, s, "worker_lost", "the media worker is not reachable");
}

void
sig_h_whip_post(SigReq *r)
{
    media_post(r, TRUE);
}

void
sig_h_whep_post(SigReq *r)
{
    media_post(r, FALSE);
}

void
sig_h_whip_options(SigReq *r)
{
    sig_req_header(r, "Accept-Post", "application/sdp");
    sig_req_header(r, MHD_HTTP_HEADER_ALLOW, "OPTIONS, POST");
    sig_reply_empty(r, 204);
}

/* The session named by the path, if it is the caller's; else replies 404. */
static MSession *
own_session(SigReq *r)
{
    SigMedia *m = r->app->media;
    MSession *s = m ? g_hash_table_lookup(m->sessions, r->params[1]) : NULL;
    gint64 id = sig_req_id(r, 0);
    if (!id)
        return NULL;
    gboolean whip = g_str_has_prefix(r->path, "/whip/");
    if (!s || s->consultation != id || s->user != r->user->id || s->publish != whip) {
        sig_reply_error(r, 404, "not_found", "no such session");
        return NULL;
    }
    const char *im = sig_req_get_header(r, MHD_HTTP_HEADER_IF_MATCH);
    if (im && !sig_etag_match(im, s->etag)) {
        sig_reply_error(r, 412, "precondition_failed", "If-Match does not match the ETag");
        return NULL;
    }
    return s;
}

static void
trickle_one(guint mline, const char *candidate, gpointer data)
{
    MSession *s = data;
    if (s->w->chan)
        media_chan_send(s->w->chan, media_msg("trickle", "session", "s", s->id, "mline", "u",
                                              mline, "candidate", "s", candidate, NULL));
}

void
sig_h_media_session_patch(SigReq *r)
{
    MSession *s = own_session(r);
    if (!s)
        return;
    if (g_ascii_strncasecmp(content_type(r), "application/trickle-ice-sdpfrag", 31)) {
        sig_reply_error(r, 415, "unsupported_media_type",
                        "PATCH takes application/trickle-ice-sdpfrag");
        return;
    }
    /* Candidates go on to the worker as GVariant strings, which must be
     * UTF-8 (GLib refuses others with a critical). */
    if (strlen(r->body->str) != r->body->len || r->body->len > SDP_MAX ||
        !g_utf8_validate(r->body->str, (gssize)r->body->len, NULL)) {
        sig_reply_error(r, 400, "bad_sdpfrag", "the fragment is not UTF-8 text");
        return;
    }
    /* An ICE restart (new credentials) is not supported by webrtcbin 1.22:
     * RFC 9725 allows 422 for that when only trickle is. */
    if (!sig_sdpfrag_each(r->body->str, s->remote_ufrag, s->mids, trickle_one, s)) {
        sig_reply_error(r, 422, "ice_restart_unsupported", "ICE restarts are not supported");
        return;
    }
    sig_reply_empty(r, 204);
}

void
sig_h_media_session_delete(SigReq *r)
{
    MSession *s = own_session(r);
    if (!s)
        return;
    session_drop(r->app->media, s, FALSE);
    sig_reply_json(r, 200, json_pack("{s:b}", "ok", 1));
}

void
sig_h_media_worker_pids(SigReq *r)
{
    json_t *arr = json_array();
    SigMedia *m = r->app->media;
    for (guint i = 0; m && i < m->workers->len; i++) {
        Worker *w = m->workers->pdata[i];
        /* Offers sent to it and not answered yet. */
        json_int_t waiting = 0;
        GHashTableIter it;
        Pending *p;
        g_hash_table_iter_init(&it, m->pending);
        while (g_hash_table_iter_next(&it, NULL, (gpointer *)&p))
            waiting += p->w == w;
        json_array_append_new(arr, json_pack("{s:I, s:b, s:I, s:I, s:I}", "index", (json_int_t)i,
                                             "ready", w->ready, "pid", (json_int_t)w->pid,
                                             "consultations", (json_int_t)w->consultations,
                                             "offers_waiting", waiting));
    }
    sig_reply_json(r, 200, json_pack("{s:o}", "workers", arr));
}
