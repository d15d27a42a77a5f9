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
 * for media-end-grace seconds ends itself ("participants_left").  A shared
 * screen is its own session (stream "screen"): its reports become
 * screen.started/stopped, and it is not presence: a participant who only
 * shares a screen, camera gone, has left.
 */
#include "workers/media.h"

#include <errno.h>
#include <gio/gio.h>
#include <sodium.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/events.h"
#include "core/metrics.h"
#include "proto.h"
#include "workers/recordings.h"
#include "workers/sandbox.h"

#define OFFER_TIMEOUT_S 20
/* Offers a worker may have unanswered at once; more get 503 (retry). */
#define OFFERS_IN_FLIGHT_MAX 32
/* How long an offer waits for a worker that is starting or restarting
 * before it is refused with 503 (a standard WHIP client may not retry). */
#define WORKER_WAIT_S 10

/* An offer on its way: waiting for a ready worker (parked), then for the
 * worker's answer (pending). */
typedef struct {
    SigMedia *m;
    SigMediaSession *s; /* prepared: who, which direction, ufrag and mids;
                               * owned until it is sent (then m->sessions
                               * owns it, and it may go before the answer) */
    char *session_id;   /* once sent */
    char *sdp;
    SigOfferDone done;
    gpointer data;
    gboolean waited;  /* was parked: check the consultation again */
    guint32 req;      /* pending: the id the worker's reply echoes */
    SigWorkerProc *w; /* pending: where it went */
    guint timeout;
} Offer;

/* The supervisor's record of one consultd-media child (the child's own
 * state is media/worker.c's MediaWorker). */
struct SigWorkerProc {
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
    gboolean killing; /* the watchdog killed it; its exit is on its way */
    guint consultations;
    guint64 packets_in, packets_out, keyframes, lost;
    guint64 nacks_received, retransmitted, nacks_sent, recovered; /* loss repair */
    guint rooms, sessions;
};

struct SigMedia {
    SigApp *app;
    GPtrArray *workers;     /* SigWorkerProc * */
    GHashTable *pending;    /* guint32 req -> Offer * */
    GHashTable *sessions;   /* char *id -> SigMediaSession * */
    GHashTable *placement;  /* gint64 *consultation -> SigWorkerProc * */
    GHashTable *present;    /* gint64 *consultation -> guint publishers joined */
    GHashTable *end_timers; /* gint64 *consultation -> guint source id */
    GHashTable *finishing;  /* gint64 *consultation -> SigWorkerProc *: ended, its
                               * recordings possibly still being finalized
                               * there; forgotten once they are settled */
    guint32 next_req;
    guint64 restarts;
    guint64 stalls;
    guint watchdog;
    SigWorkerProc *fed; /* stands for the sender of sig_media_feed() */
    GQueue parked;      /* Offer *: offers that came while no worker
                               * was ready (start-up, restart after a crash):
                               * they wait for one, or WORKER_WAIT_S */
};

static void offer_dispatch(SigMedia *m, Offer *o);

static void worker_start(SigWorkerProc *w);

/* --------------------------------------------------------------- helpers */

void
sig_media_session_free(SigMediaSession *s)
{
    if (!s)
        return;
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
offer_free(Offer *o)
{
    sig_media_session_free(o->s);
    g_free(o->session_id);
    g_free(o->sdp);
    g_free(o);
}

/* Ends offer O: tells its caller RES (with the answer's SDP, or why not)
 * and forgets it.  The session stays only if it was answered. */
static void
offer_finish(Offer *o, SigOfferResult res, const char *text)
{
    SigMedia *m = o->m;
    g_clear_handle_id(&o->timeout, g_source_remove);
    if (o->req)
        g_hash_table_steal(m->pending, &o->req);
    SigMediaSession *s = o->session_id ? g_hash_table_lookup(m->sessions, o->session_id) : o->s;
    if (res == SIG_OFFER_OK && !s) {
        res = SIG_OFFER_UNAVAILABLE; /* the session went while its offer was out */
        text = "the session ended before the media worker answered";
    }
    if (res == SIG_OFFER_OK)
        s->answered = TRUE;
    o->done(res, s, text, o->data);
    if (res != SIG_OFFER_OK && o->session_id)
        g_hash_table_remove(m->sessions, o->session_id);
    offer_free(o);
}

/* A worker's answer, or its error CODE and MESSAGE, to offer O. */
static void
offer_reply(Offer *o, const char *sdp, const char *code, const char *message)
{
    if (sdp) {
        offer_finish(o, SIG_OFFER_OK, sdp);
        return;
    }
    SigOfferResult res = !g_strcmp0(code, "bad_offer")  ? SIG_OFFER_BAD
                         : !g_strcmp0(code, "no_codec") ? SIG_OFFER_NO_CODEC
                                                        : SIG_OFFER_UNAVAILABLE;
    offer_finish(o, res, message ? message : "the media worker did not answer");
}

/* Answers the offers waiting for W (NULL: any worker) with 503 MESSAGE and
 * resumes their requests. */
static void
fail_pending(SigMedia *m, SigWorkerProc *w, const char *message)
{
    GHashTableIter it;
    Offer *o;
    g_autoptr(GPtrArray) lost = g_ptr_array_new();
    g_hash_table_iter_init(&it, m->pending);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&o))
        if (!w || o->w == w)
            g_ptr_array_add(lost, o);
    for (guint i = 0; i < lost->len; i++)
        offer_reply(lost->pdata[i], NULL, "worker_lost", message);
}

static gboolean
pending_timeout(gpointer data)
{
    Offer *o = data;
    o->timeout = 0;
    offer_reply(o, NULL, "timeout", "the media worker did not answer in time");
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
        g_autoptr(StoreConsultation) c =
            store_consultation_get(m->app->store, e->consultation, NULL);
        if (c && is_live(c->status) &&
            store_consultation_transition(m->app->store, c->id, STORE_CONSULT_ENDED,
                                          "participants_left", NULL)) {
            g_message("consultation %" G_GINT64_FORMAT " ended: both participants left", c->id);
            sig_events_kick(m->app); /* workers/reactions.c ends its media */
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
        guint id = g_timeout_add_seconds_full(
            G_PRIORITY_DEFAULT, (guint)m->app->cfg->media_end_grace, end_if_empty, e, g_free);
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
    ConsultdRole r;
    if (!consultd_role_parse(role, FALSE, &r))
        return;
    SigApp *app = m->app;
    SigMediaSession *ms = g_hash_table_lookup(m->sessions, session);
    if (!ms || ms->consultation != c)
        return; /* dropped already (DELETE, replaced, worker lost) */
    gboolean was_joined = ms->joined;
    ConsultdStream stream = ms->stream; /* ms may go below */
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
    /* That read may have run a fiber holding the database to its end (on
     * PostgreSQL), which can end this media (a lost lease): a joined that
     * arrives for media already ended must not resume the consultation. */
    if (!cons || (joined && !g_hash_table_contains(m->sessions, session)))
        return;
    store_participant_event(
        app->store, c, r, stream, joined,
        reason && (!strcmp(reason, "media-timeout") || !strcmp(reason, "no-media")) ? reason : NULL,
        NULL);
    if (stream == CONSULTD_STREAM_SCREEN) {
        sig_events_kick(app);
        return;
    }
    if (joined && cons->status == STORE_CONSULT_INTERRUPTED)
        store_consultation_transition(app->store, c, STORE_CONSULT_LIVE, NULL, NULL);
    presence_change(m, c, joined ? 1 : -1);
    sig_metrics_add(app->metrics, "consultd_media_participant_events_total",
                    "Participants joining and leaving media",
                    joined ? "kind=\"joined\"" : "kind=\"left\"", 1);
    sig_events_kick(app);
}

static void
on_worker_message(MediaChan *ch, GVariant *msg, gpointer data)
{
    SigWorkerProc *w = data;
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
        Offer *o = g_hash_table_lookup(m->pending, &req);
        SigMediaSession *s = g_hash_table_lookup(m->sessions, session);
        if (o && o->w == w)
            offer_reply(o, !strcmp(op, "answer") ? sdp : NULL, code, message);
        else if (s && !s->answered && s->w == w)
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
        ConsultdRole rrole;
        ConsultdRecState rstate;
        if (!consultd_role_parse(role, FALSE, &rrole) || !consultd_rec_state_parse(state, &rstate))
            return; /* not a report of ours */
        sig_recording_report(m->app, c, rrole, file, rstate, *reason ? reason : NULL, started,
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
        Offer *o;
        while ((o = g_queue_pop_head(&m->parked))) {
            g_clear_handle_id(&o->timeout, g_source_remove);
            offer_dispatch(m, o);
        }
    }
}

void
sig_media_feed(SigApp *app, const void *data, gsize len)
{
    SigMedia *m = app->media;
    if (!m->fed) {
        m->fed = g_new0(SigWorkerProc, 1);
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
    SigWorkerProc *w = data;
    w->restart_timer = 0;
    worker_start(w);
    return G_SOURCE_REMOVE;
}

/* Everything that depended on worker W is gone with it. */
static void
worker_lost(SigWorkerProc *w)
{
    SigMedia *m = w->m;
    SigApp *app = m->app;
    w->ready = FALSE;
    g_clear_pointer(&w->chan, media_chan_free);
    g_clear_object(&w->proc);
    fail_pending(m, w, "the media worker stopped; retry");
    GHashTableIter it;
    /* Its sessions are gone; its live consultations are interrupted, and
     * a screen being shared there has stopped. */
    SigMediaSession *s;
    g_autoptr(GPtrArray) gone =
        g_ptr_array_new_with_free_func((GDestroyNotify)sig_media_session_free);
    g_hash_table_iter_init(&it, m->sessions);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&s)) {
        if (s->w == w) {
            g_hash_table_iter_steal(&it);
            g_ptr_array_add(gone, s);
        }
    }
    /* Written once they are out of the table (a write may wait in a fiber). */
    for (guint i = 0; i < gone->len; i++) {
        s = gone->pdata[i];
        if (s->stream == CONSULTD_STREAM_SCREEN && s->publish && s->joined)
            store_participant_event(app->store, s->consultation, s->role, CONSULTD_STREAM_SCREEN,
                                    FALSE, "media_worker_lost", NULL);
    }
    gint64 *c;
    SigWorkerProc *pw;
    g_autoptr(GHashTable) lost_ids =
        g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
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
    SigWorkerProc *w = data;
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
        g_warning("media worker %u exited with %d", w->index, g_subprocess_get_exit_status(proc));
    worker_lost(w);
}

static void
worker_start(SigWorkerProc *w)
{
    w->killing = FALSE;
    SigMedia *m = w->m;
    SigConfig *cfg = m->app->cfg;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        g_warning("media worker %u: socketpair: %s", w->index, g_strerror(errno));
        w->restart_timer = g_timeout_add_seconds(5, restart_worker, w);
        return;
    }
    g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(argv, g_strdup(m->app->media_bin));
    g_ptr_array_add(argv, g_strdup("--fd=3"));
    g_ptr_array_add(argv, g_strdup_printf("--media-timeout=%" G_GINT64_FORMAT, cfg->media_timeout));
    g_ptr_array_add(argv,
                    g_strdup_printf("--max-bitrate=%" G_GINT64_FORMAT, cfg->media_max_bitrate));
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
        g_autofree char *dir = consultd_recordings_dir(cfg->data_dir);
        g_autofree char *abs = g_canonicalize_filename(dir, NULL);
        g_ptr_array_add(argv, g_strdup_printf("--recordings-dir=%s", abs));
        g_ptr_array_add(argv, g_strdup_printf("--record-min-free-bytes=%" G_GINT64_FORMAT,
                                              cfg->record_min_free_bytes));
    }
    g_ptr_array_add(argv, NULL);
    g_autoptr(GSubprocessLauncher) l = sig_sandbox_launcher(m->app, G_SUBPROCESS_FLAGS_NONE, FALSE);
    g_subprocess_launcher_take_fd(l, sv[1], 3);
    g_autoptr(GError) err = NULL;
    w->proc = g_subprocess_launcher_spawnv(l, (const char *const *)argv->pdata, &err);
    if (!w->proc) {
        close(sv[0]);
        g_warning("media worker %u: cannot start %s: %s", w->index, m->app->media_bin,
                  err->message);
        w->restart_timer = g_timeout_add_seconds(5, restart_worker, w);
        return;
    }
    w->started_at = g_get_monotonic_time();
    w->chan = media_chan_new(sv[0], on_worker_message, on_worker_closed, w);
    g_subprocess_wait_async(w->proc, w->cancel, on_worker_exit, w);
}

/* Finds (or places) the worker of consultation C; NULL if none is ready. */
static SigWorkerProc *
worker_for(SigMedia *m, gint64 c)
{
    SigWorkerProc *w = g_hash_table_lookup(m->placement, &c);
    if (w && w->ready)
        return w;
    if (w)
        return NULL;
    SigWorkerProc *best = NULL;
    for (guint i = 0; i < m->workers->len; i++) {
        SigWorkerProc *x = m->workers->pdata[i];
        if (x->ready && (!best || x->consultations < best->consultations))
            best = x;
    }
    if (best) {
        best->consultations++;
        g_hash_table_insert(m->placement, g_memdup2(&c, sizeof c), best);
    }
    return best;
}

/* A worker that sends nothing (it reports stats every second) or reads
 * nothing for media-worker-stall seconds, or whose channel overflowed, is
 * killed; its exit makes it lost like a crash (worker_lost()): its
 * consultations interrupted, its offers answered 503, a new one started.
 * The main loop never waits for it: the channel never blocks (proto.h). */
static gboolean
watchdog(gpointer data)
{
    SigMedia *m = data;
    gint64 now = g_get_monotonic_time();
    gint64 limit = m->app->cfg->media_worker_stall * G_USEC_PER_SEC;
    for (guint i = 0; i < m->workers->len; i++) {
        SigWorkerProc *w = m->workers->pdata[i];
        if (!w->ready || !w->chan || !w->proc || w->killing)
            continue;
        gint64 blocked = media_chan_blocked_since(w->chan);
        const char *why = media_chan_overflowed(w->chan)     ? "its channel overflowed"
                          : blocked && now - blocked > limit ? "it stopped reading"
                          : now - media_chan_last_received(w->chan) > limit ? "it went silent"
                                                                            : NULL;
        if (!why)
            continue;
        g_warning("media worker %u (pid %" G_GINT64_FORMAT ") stalled: %s; killing it", w->index,
                  w->pid, why);
        w->killing = TRUE;
        m->stalls++;
        g_subprocess_force_exit(w->proc);
    }
    return G_SOURCE_CONTINUE;
}

SigMedia *
sig_media_new(SigApp *app)
{
    SigMedia *m = g_new0(SigMedia, 1);
    m->app = app;
    m->workers = g_ptr_array_new();
    m->pending = g_hash_table_new(g_int_hash, g_int_equal);
    m->sessions = g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
                                        (GDestroyNotify)sig_media_session_free);
    m->placement = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    m->present = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    m->end_timers = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    m->finishing = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    app->media = m;
    if (app->cfg->media_workers > 0)
        m->watchdog = g_timeout_add_seconds(1, watchdog, m);
    for (gint64 i = 0; i < app->cfg->media_workers; i++) {
        SigWorkerProc *w = g_new0(SigWorkerProc, 1);
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
    g_clear_handle_id(&m->watchdog, g_source_remove);
    Offer *o;
    while ((o = g_queue_pop_head(&m->parked)))
        offer_finish(o, SIG_OFFER_UNAVAILABLE, "the server is shutting down; retry");
    for (guint i = 0; i < m->workers->len; i++) {
        SigWorkerProc *w = m->workers->pdata[i];
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
    g_free(m->fed);
    m->app->media = NULL;
    g_free(m);
}

guint
sig_media_session_count(SigApp *app)
{
    return app->media ? g_hash_table_size(app->media->sessions) : 0;
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
        if (((SigWorkerProc *)m->workers->pdata[i])->ready)
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
        SigWorkerProc *w = m->workers->pdata[i];
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
    g_string_append_printf(
        out,
        "# HELP consultd_media_workers_ready Media workers running\n"
        "# TYPE consultd_media_workers_ready gauge\nconsultd_media_workers_ready %u\n"
        "# HELP consultd_media_worker_restarts_total Media worker restarts\n"
        "# TYPE consultd_media_worker_restarts_total counter\n"
        "consultd_media_worker_restarts_total %" G_GUINT64_FORMAT "\n"
        "# HELP consultd_media_worker_stalls_total Media workers killed by the watchdog\n"
        "# TYPE consultd_media_worker_stalls_total counter\n"
        "consultd_media_worker_stalls_total %" G_GUINT64_FORMAT "\n"
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
        "# HELP consultd_media_nacks_sent_total Packets NACKed to publishers (first NACKs and "
        "repeats)\n"
        "# TYPE consultd_media_nacks_sent_total counter\n"
        "consultd_media_nacks_sent_total %" G_GUINT64_FORMAT "\n"
        "# HELP consultd_media_recovered_total Packets missing from publishers that came after a "
        "NACK\n"
        "# TYPE consultd_media_recovered_total counter\n"
        "consultd_media_recovered_total %" G_GUINT64_FORMAT "\n",
        ready, m->restarts, m->stalls, rooms, sessions, in, outp, kf, lost, nr, rtx, ns, rec);
}

gboolean
sig_media_idle(SigApp *app)
{
    SigMedia *m = app->media;
    return !m || (g_hash_table_size(m->placement) == 0 && g_hash_table_size(m->finishing) == 0 &&
                  g_hash_table_size(m->sessions) == 0);
}

void
sig_media_end_all(SigApp *app)
{
    SigMedia *m = app->media;
    if (!m)
        return;
    g_autoptr(GArray) ids = g_array_new(FALSE, FALSE, sizeof(gint64));
    GHashTableIter it;
    gpointer k;
    g_hash_table_iter_init(&it, m->placement);
    while (g_hash_table_iter_next(&it, &k, NULL))
        g_array_append_val(ids, *(gint64 *)k);
    for (guint i = 0; i < ids->len; i++)
        sig_media_end(app, g_array_index(ids, gint64, i));
}

void
sig_media_end(SigApp *app, gint64 c)
{
    SigMedia *m = app->media;
    if (!m)
        return;
    SigWorkerProc *w = g_hash_table_lookup(m->placement, &c);
    if (w && w->chan)
        media_chan_send(w->chan, media_msg("end", "consultation", "x", c, NULL));
    gint64 open = 0, ready = 0;
    if (w)
        store_recordings_progress(app->store, c, &open, &ready);
    /* Only while its recordings are still being finalized there: the last
     * report forgets it, and one that came before this end (both
     * participants left first) would leave it here for good. */
    if (w && open)
        g_hash_table_insert(m->finishing, g_memdup2(&c, sizeof c), w);
    if (w && w->consultations)
        w->consultations--;
    GHashTableIter it;
    SigMediaSession *s;
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
session_drop(SigMedia *m, SigMediaSession *s, gboolean replaced)
{
    if (s->w->chan)
        media_chan_send(s->w->chan, media_msg("close", "session", "s", s->id, NULL));
    gboolean left = s->publish && s->joined;
    gint64 c = s->consultation;
    ConsultdRole role = s->role;
    ConsultdStream stream = s->stream;
    /* Forgotten before the event is written: on PostgreSQL that write may
     * wait in a fiber, while the worker's own messages about S go on. */
    g_hash_table_remove(m->sessions, s->id);
    if (!left)
        return;
    if (!replaced) {
        store_participant_event(m->app->store, c, role, stream, FALSE, "deleted", NULL);
        sig_events_kick(m->app);
    }
    if (stream == CONSULTD_STREAM_CAMERA)
        presence_change(m, c, -1);
}

/* --------------------------------------------------------------- offers */

static gboolean
parked_timeout(gpointer data)
{
    Offer *o = data;
    o->timeout = 0;
    g_queue_remove(&o->m->parked, o);
    offer_finish(o, SIG_OFFER_UNAVAILABLE, "no media worker became ready in time; retry");
    return G_SOURCE_REMOVE;
}

/* Sends offer O to its consultation's worker, or parks it while workers
 * are (re)starting. */
static void
offer_dispatch(SigMedia *m, Offer *o)
{
    SigMediaSession *s = o->s;
    gint64 id = s->consultation;
    if (o->waited) {
        /* It may have ended while the offer waited. */
        g_autoptr(StoreConsultation) c = store_consultation_get(m->app->store, id, NULL);
        if (!c || !is_live(c->status)) {
            offer_finish(o, SIG_OFFER_NOT_LIVE, "the consultation is no longer live");
            return;
        }
    }
    SigWorkerProc *w = worker_for(m, id);
    if (!w && m->workers->len > 0 && !o->waited) {
        o->waited = TRUE;
        o->timeout = g_timeout_add_seconds(WORKER_WAIT_S, parked_timeout, o);
        g_queue_push_tail(&m->parked, o);
        return;
    }
    if (!w) {
        offer_finish(o, SIG_OFFER_UNAVAILABLE,
                     m->workers->len ? "no media worker is available; retry"
                                     : "media is disabled on this server");
        return;
    }
    guint in_flight = 0;
    GHashTableIter pit;
    Offer *p;
    g_hash_table_iter_init(&pit, m->pending);
    while (g_hash_table_iter_next(&pit, NULL, (gpointer *)&p))
        in_flight += p->w == w;
    if (in_flight >= OFFERS_IN_FLIGHT_MAX) {
        offer_finish(o, SIG_OFFER_UNAVAILABLE, "the media worker is busy; retry");
        return;
    }
    /* Publishing (or receiving) again replaces the participant's previous
     * session of that direction. */
    GHashTableIter it;
    SigMediaSession *old;
    g_hash_table_iter_init(&it, m->sessions);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&old)) {
        if (old->consultation == id && old->role == s->role && old->stream == s->stream &&
            old->publish == s->publish) {
            session_drop(m, old, TRUE);
            break;
        }
    }
    s->id = random_hex(16);
    s->etag = random_hex(8);
    s->w = w;
    g_hash_table_insert(m->sessions, s->id, s);
    o->s = NULL;
    o->session_id = g_strdup(s->id);
    o->req = ++m->next_req;
    o->w = w;
    o->timeout = g_timeout_add_seconds(OFFER_TIMEOUT_S, pending_timeout, o);
    g_hash_table_insert(m->pending, &o->req, o);
    /* A publisher's recording goes on with the series the table knows
     * (the consultation may have been recorded on another node before). */
    guint rec_next =
        s->publish ? store_recordings_next_series(m->app->store, id, s->role, s->stream) : 0;
    if (!media_chan_send(w->chan, media_msg("offer", "req", "u", o->req, "session", "s", s->id,
                                            "consultation", "x", id, "role", "s",
                                            consultd_role_name(s->role), "stream", "s",
                                            consultd_stream_name(s->stream), "dir", "s",
                                            s->publish ? "publish" : "receive", "sdp", "s", o->sdp,
                                            "rec_next", "u", rec_next, NULL)))
        offer_reply(o, NULL, "worker_lost", "the media worker is not reachable");
}

void
sig_media_offer(SigApp *app, SigMediaSession *s, const char *sdp, SigOfferDone done, gpointer data)
{
    SigMedia *m = app->media;
    if (!m) {
        done(SIG_OFFER_UNAVAILABLE, s, "media is disabled on this server", data);
        sig_media_session_free(s);
        return;
    }
    Offer *o = g_new0(Offer, 1);
    o->m = m;
    o->s = s;
    o->sdp = g_strdup(sdp);
    o->done = done;
    o->data = data;
    offer_dispatch(m, o);
}

SigMediaSession *
sig_media_session_find(SigApp *app, const char *id)
{
    return app->media && id ? g_hash_table_lookup(app->media->sessions, id) : NULL;
}

void
sig_media_session_trickle(SigMediaSession *s, guint mline, const char *candidate)
{
    if (s->w->chan)
        media_chan_send(s->w->chan, media_msg("trickle", "session", "s", s->id, "mline", "u", mline,
                                              "candidate", "s", candidate, NULL));
}

void
sig_media_session_delete(SigApp *app, SigMediaSession *s)
{
    session_drop(app->media, s, FALSE);
}

GArray *
sig_media_workers(SigApp *app)
{
    GArray *out = g_array_new(FALSE, TRUE, sizeof(SigWorkerInfo));
    SigMedia *m = app->media;
    for (guint i = 0; m && i < m->workers->len; i++) {
        SigWorkerProc *w = m->workers->pdata[i];
        SigWorkerInfo info = {i, w->ready, w->pid, w->consultations, 0};
        GHashTableIter it;
        Offer *o;
        g_hash_table_iter_init(&it, m->pending);
        while (g_hash_table_iter_next(&it, NULL, (gpointer *)&o))
            info.offers_waiting += o->w == w;
        g_array_append_val(out, info);
    }
    return out;
}
