/* recordings.c - see recordings.h.
 *
 * Repairs run one at a time as `consultd-media --finalize FILE` children, so
 * a crash in GStreamer while repairing cannot take the main process with it.
 */
#include "workers/recordings.h"

#include <errno.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/events.h"
#include "workers/sandbox.h"
#include "workers/uploads.h"
#include "proto.h"

typedef struct {
    gint64 consultation;
    gint64 started_at; /* as recorded; 0 if unknown */
    ConsultdRole role;
    char *file;
} Repair;

typedef struct {
    SigApp *app;
    gint64 consultation;
    GSubprocess *proc;
    GInputStream *out;
    GByteArray *buf;  /* stdout read and not yet taken as frames */
    GVariant *result; /* the run's "composed" message, once it came */
} Compose;

struct SigRecordings {
    SigApp *app;
    GQueue repairs; /* Repair * */
    gboolean repairing;
    GQueue composes; /* gint64 * consultation ids */
    Compose *composing;
    int compose_progress;
};

static void
repair_free(Repair *r)
{
    g_free(r->file);
    g_free(r);
}

char *
sig_recordings_path(SigApp *app, gint64 consultation, const char *file)
{
    g_autofree char *dir = consultd_recordings_dir(app->cfg->data_dir);
    return consultd_recording_path(dir, consultation, file);
}

void
sig_recording_report(SigApp *app, gint64 consultation, ConsultdRole role, const char *file,
                     ConsultdRecState state, const char *reason, gint64 started_at,
                     gint64 duration_ms, gint64 size)
{
    g_autoptr(GError) err = NULL;
    /* With a recording store, a file finalized here is ready once it is
     * there (workers/uploads.h). */
    gboolean upload = state == CONSULTD_REC_READY && sig_uploads_enabled(app);
    if (upload)
        state = CONSULTD_REC_UPLOADING;
    if (!store_recording_update(app->store, consultation, role, file, state, reason, started_at,
                                duration_ms, size, &err)) {
        g_warning("recording %" G_GINT64_FORMAT "/%s: %s", consultation, file, err->message);
        return;
    }
    g_info("recording %" G_GINT64_FORMAT "/%s: %s%s%s", consultation, file,
           consultd_rec_state_name(state), reason && *reason ? ": " : "", reason ? reason : "");
    sig_events_kick(app);
    if (upload)
        sig_uploads_queue(app, consultation, file, NULL);
    if (role != CONSULTD_ROLE_COMBINED &&
        (consultd_rec_state_settled(state) || state == CONSULTD_REC_UPLOADING))
        sig_recordings_compose_maybe(app, consultation);
    if (role == CONSULTD_ROLE_COMBINED && state != CONSULTD_REC_PROCESSING &&
        sig_uploads_enabled(app))
        sig_uploads_drop_local(app, consultation);
}

/* A finished participant file: ready, or on its way to the store. */
static gboolean
finished(const StoreRecording *r)
{
    return r->state == CONSULTD_REC_READY || r->state == CONSULTD_REC_UPLOADING;
}

static void repair_next(SigApp *app);

typedef struct {
    SigApp *app;
    Repair *r;
} RepairRun;

/* The one message of a `consultd-media --finalize` or `--compose` run that
 * has type OP, from its whole stdout OUT; NULL if there is none. */
static GVariant *
last_message(GByteArray *out, const char *op)
{
    GVariant *found = NULL, *m;
    while (out && (m = media_frame_pop(out))) {
        if (!strcmp(media_msg_op(m), op)) {
            g_clear_pointer(&found, g_variant_unref);
            found = m;
        } else {
            g_variant_unref(m);
        }
    }
    return found;
}

/* A run's outcome: its state (only READY_STATES count; anything else is
 * failed) with duration, size, lead and reason, from MSG (NULL: the run
 * reported nothing). */
static ConsultdRecState
outcome(GVariant *msg, gboolean allow_empty, gint64 *duration, gint64 *size, gint64 *lead,
        const char **reason)
{
    const char *name = "";
    ConsultdRecState st = CONSULTD_REC_FAILED;
    *duration = *size = *lead = 0;
    *reason = "the media process reported nothing";
    if (!msg)
        return st;
    g_variant_lookup(msg, "state", "&s", &name);
    g_variant_lookup(msg, "duration_ms", "x", duration);
    g_variant_lookup(msg, "size", "x", size);
    g_variant_lookup(msg, "lead_ms", "x", lead);
    *reason = "";
    g_variant_lookup(msg, "reason", "&s", reason);
    if (!consultd_rec_state_parse(name, &st) ||
        !(st == CONSULTD_REC_READY || st == CONSULTD_REC_FAILED ||
          (allow_empty && st == CONSULTD_REC_EMPTY)))
        st = CONSULTD_REC_FAILED;
    if (st != CONSULTD_REC_READY)
        *duration = *size = 0;
    return st;
}

static void
repair_done(GObject *src, GAsyncResult *res, gpointer data)
{
    RepairRun *run = data;
    SigApp *app = run->app;
    Repair *r = run->r;
    g_autoptr(GBytes) out = NULL;
    g_autoptr(GError) err = NULL;
    g_subprocess_communicate_finish(G_SUBPROCESS(src), res, &out, NULL, &err);
    if (!app->recordings) { /* shut down meanwhile: the next start repairs it */
        repair_free(r);
        g_free(run);
        return;
    }
    g_autoptr(GByteArray) buf = out ? g_bytes_unref_to_array(g_steal_pointer(&out)) : NULL;
    g_autoptr(GVariant) msg = last_message(buf, "finalized");
    gint64 duration, size, lead;
    const char *reason;
    ConsultdRecState state = outcome(msg, TRUE, &duration, &size, &lead, &reason);
    if (!msg && err)
        reason = err->message;
    g_message("repaired recording %" G_GINT64_FORMAT "/%s: %s", r->consultation, r->file,
              consultd_rec_state_name(state));
    /* The content starts LEAD ms before the first arrival (docs/recording.md,
     * Timing), as media/room.c rec_done() reports for a finalized one. */
    gint64 started = r->started_at > lead ? r->started_at - lead : r->started_at;
    sig_recording_report(app, r->consultation, r->role, r->file, state, *reason ? reason : NULL,
                         started, duration, size);
    repair_free(r);
    g_free(run);
    app->recordings->repairing = FALSE;
    repair_next(app);
}

static void
repair_next(SigApp *app)
{
    SigRecordings *rs = app->recordings;
    if (rs->repairing || g_queue_is_empty(&rs->repairs) || app->stopping)
        return;
    Repair *r = g_queue_pop_head(&rs->repairs);
    g_autofree char *path = sig_recordings_path(app, r->consultation, r->file);
    const char *argv[] = {app->media_bin, "--finalize", path, NULL};
    g_autoptr(GError) err = NULL;
    g_autoptr(GSubprocessLauncher) l =
        sig_sandbox_launcher(app, G_SUBPROCESS_FLAGS_STDOUT_PIPE, FALSE);
    GSubprocess *p = g_subprocess_launcher_spawnv(l, argv, &err);
    if (!p) {
        sig_recording_report(app, r->consultation, r->role, r->file, CONSULTD_REC_FAILED,
                             err->message, 0, 0, 0);
        repair_free(r);
        repair_next(app);
        return;
    }
    rs->repairing = TRUE;
    RepairRun *run = g_new0(RepairRun, 1);
    run->app = app;
    run->r = r;
    g_subprocess_communicate_async(p, NULL, NULL, repair_done, run);
    g_object_unref(p);
}

/* Several nodes share the recordings table, but each recording's files are
 * on the disk of the node that recorded it: a node repairs and combines
 * only what it finds on its own disk (the others' wait for their node,
 * which repairs them when it starts again). */
static gboolean
recorded_here(SigApp *app, gint64 consultation, const char *file)
{
    if (!store_shared(app->store) && !sig_uploads_enabled(app))
        return TRUE;
    g_autofree char *path = sig_recordings_path(app, consultation, file);
    return g_file_test(path, G_FILE_TEST_EXISTS);
}

void
sig_recordings_repair(SigApp *app, GHashTable *only)
{
    g_autoptr(GPtrArray) rows = store_recordings_unfinished(app->store);
    for (guint i = 0; rows && i < rows->len; i++) {
        StoreRecording *rec = rows->pdata[i];
        if (only && !g_hash_table_contains(only, &rec->consultation_id))
            continue;
        if (rec->role == CONSULTD_ROLE_COMBINED)
            continue; /* composing is redone, not repaired: see compose_resume() */
        if (!recorded_here(app, rec->consultation_id, rec->file))
            continue;
        gboolean queued = FALSE;
        for (GList *l = app->recordings->repairs.head; l; l = l->next) {
            Repair *q = l->data;
            queued |= q->consultation == rec->consultation_id && !strcmp(q->file, rec->file);
        }
        if (queued)
            continue;
        Repair *r = g_new0(Repair, 1);
        r->consultation = rec->consultation_id;
        r->started_at = rec->started_at;
        r->role = rec->role;
        r->file = g_strdup(rec->file);
        g_queue_push_tail(&app->recordings->repairs, r);
    }
    repair_next(app);
}

/* --------------------------------------------------------------- retention */

/* A stored recording's object is gone (or could not be deleted: it stays
 * ready and is tried again at the next run). */
static void
pruned_in_store(SigApp *app, gint64 id, gboolean ok, gpointer data)
{
    const char *why = data;
    g_autoptr(GError) err = NULL;
    if (ok && !store_recording_deleted(app->store, id, why, &err))
        g_warning("retention: %s", err->message);
    else if (ok)
        g_message("retention: deleted recording %" G_GINT64_FORMAT " from the store (%s)", id, why);
    sig_events_kick(app);
}

guint
sig_recordings_prune(SigApp *app)
{
    const SigConfig *cfg = app->cfg;
    if (!cfg->retention_days && !cfg->retention_max_bytes)
        return 0;
    g_autoptr(GPtrArray) rows = store_recordings_ready_oldest(app->store, NULL);
    gint64 total = store_recordings_bytes(app->store);
    gint64 cutoff = cfg->retention_days ? store_now_ms() - cfg->retention_days * 86400000LL : 0;
    guint n = 0;
    for (guint i = 0; rows && i < rows->len; i++) {
        StoreRecording *r = rows->pdata[i];
        const char *why = r->created_at < cutoff                                         ? "max_age"
                          : cfg->retention_max_bytes && total > cfg->retention_max_bytes ? "quota"
                                                                                         : NULL;
        if (!why)
            continue;
        g_autofree char *path = sig_recordings_path(app, r->consultation_id, r->file);
        if (g_unlink(path) != 0 && errno != ENOENT) {
            g_warning("retention: cannot delete %s: %s", path, g_strerror(errno));
            continue;
        }
        if (*r->store) { /* in the store: deleted there, then marked */
            sig_uploads_delete(app, r, pruned_in_store, (gpointer)why);
            total -= r->size;
            n++;
            continue;
        }
        g_autoptr(GError) err = NULL;
        if (!store_recording_deleted(app->store, r->id, why, &err)) {
            g_warning("retention: %s", err->message);
            continue;
        }
        total -= r->size;
        n++;
        g_message("retention: deleted recording %" G_GINT64_FORMAT "/%s (%s)", r->consultation_id,
                  r->file, why);
    }
    if (n)
        sig_events_kick(app);
    return n;
}

/* ----------------------------------------------------------- composing */

/* The combined file: once a consultation is closed and its participants'
 * recordings are settled, `consultd-media --compose` runs as a child at the
 * lowest CPU priority, one at a time, so it never takes CPU from live
 * consultations.  Its progress lines are kept in memory for the API. */

int
sig_recordings_compose_progress(SigApp *app, gint64 consultation)
{
    SigRecordings *rs = app->recordings;
    return rs && rs->composing && rs->composing->consultation == consultation ? rs->compose_progress
                                                                              : -1;
}

static void compose_next(SigApp *app);

static void
compose_free(Compose *c)
{
    g_clear_object(&c->out);
    g_clear_object(&c->proc);
    g_byte_array_unref(c->buf);
    g_clear_pointer(&c->result, g_variant_unref);
    g_free(c);
}

static void
compose_finish(Compose *c)
{
    SigApp *app = c->app;
    gint64 duration, size, lead;
    const char *reason;
    ConsultdRecState state = outcome(c->result, FALSE, &duration, &size, &lead, &reason);
    g_autofree char *file =
        consultd_recording_file(CONSULTD_ROLE_COMBINED, CONSULTD_STREAM_CAMERA, 1);
    sig_recording_report(app, c->consultation, CONSULTD_ROLE_COMBINED, file, state,
                         state == CONSULTD_REC_READY ? NULL
                         : *reason                   ? reason
                                                     : "the composer stopped",
                         0, duration, size);
    compose_free(c);
    app->recordings->composing = NULL;
    app->recordings->compose_progress = -1;
    compose_next(app);
}

static void
compose_read(GObject *src, GAsyncResult *res, gpointer data)
{
    Compose *c = data;
    g_autoptr(GBytes) bytes = g_input_stream_read_bytes_finish(G_INPUT_STREAM(src), res, NULL);
    if (!c->app->recordings) { /* shut down meanwhile: compose_resume() redoes it */
        compose_free(c);
        return;
    }
    if (!bytes || g_bytes_get_size(bytes) == 0) {
        compose_finish(c);
        return;
    }
    gsize n;
    const guint8 *p = g_bytes_get_data(bytes, &n);
    g_byte_array_append(c->buf, p, (guint)n);
    GVariant *m;
    while ((m = media_frame_pop(c->buf))) {
        const char *op = media_msg_op(m);
        gint32 percent;
        if (!strcmp(op, "progress") && g_variant_lookup(m, "percent", "i", &percent)) {
            c->app->recordings->compose_progress = CLAMP(percent, 0, 100);
            g_variant_unref(m);
        } else if (!strcmp(op, "composed")) {
            g_clear_pointer(&c->result, g_variant_unref);
            c->result = m;
        } else {
            g_variant_unref(m);
        }
    }
    g_input_stream_read_bytes_async(c->out, 4096, G_PRIORITY_LOW, NULL, compose_read, c);
}

static void
compose_next(SigApp *app)
{
    SigRecordings *rs = app->recordings;
    if (rs->composing || g_queue_is_empty(&rs->composes) || app->stopping)
        return;
    gint64 *id = g_queue_pop_head(&rs->composes);
    gint64 cid = *id;
    g_free(id);
    g_autoptr(GPtrArray) recs = store_recordings_list(app->store, cid, NULL);
    g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(argv, g_strdup(app->media_bin));
    g_ptr_array_add(argv, g_strdup("--compose"));
    g_autofree char *combined =
        consultd_recording_file(CONSULTD_ROLE_COMBINED, CONSULTD_STREAM_CAMERA, 1);
    g_ptr_array_add(argv, sig_recordings_path(app, cid, combined));
    /* The first ready camera file of each participant that is on this disk
     * (a consultation that moved between nodes has files on several; each
     * node combines what it has), teacher first: the left half of the
     * picture; and every shared screen's file (up to COMPOSE_SCREENS_MAX),
     * shown large while it lasts. */
#define COMPOSE_SCREENS_MAX 8
    const StoreRecording *in[2 + COMPOSE_SCREENS_MAX] = {NULL};
    guint n_screens = 0;
    gint64 base = G_MAXINT64;
    for (guint i = 0; recs && i < recs->len; i++) {
        StoreRecording *r = recs->pdata[i];
        int k = r->role == CONSULTD_ROLE_TEACHER ? 0 : r->role == CONSULTD_ROLE_STUDENT ? 1 : -1;
        if (k >= 0 && consultd_recording_stream(r->file) == CONSULTD_STREAM_SCREEN)
            k = n_screens < COMPOSE_SCREENS_MAX ? 2 + (int)n_screens : -1;
        if (k < 0 || in[k] || !finished(r) || !recorded_here(app, cid, r->file))
            continue;
        in[k] = r;
        n_screens += k >= 2;
        base = MIN(base, r->offset_ms);
    }
    for (guint k = 0; k < G_N_ELEMENTS(in); k++) {
        if (!in[k])
            continue;
        g_autofree char *p = sig_recordings_path(app, cid, in[k]->file);
        g_ptr_array_add(argv, g_strdup(k < 2 ? "--input" : "--screen"));
        g_ptr_array_add(argv, g_strdup_printf("%s@%" G_GINT64_FORMAT, p, in[k]->offset_ms - base));
    }
    g_ptr_array_add(argv, NULL);
    /* The composer gets only idle CPU: nice 19. */
    g_autoptr(GSubprocessLauncher) l =
        sig_sandbox_launcher(app, G_SUBPROCESS_FLAGS_STDOUT_PIPE, TRUE);
    g_autoptr(GError) err = NULL;
    GSubprocess *p = g_subprocess_launcher_spawnv(l, (const char *const *)argv->pdata, &err);
    if (!p) {
        sig_recording_report(app, cid, CONSULTD_ROLE_COMBINED, combined, CONSULTD_REC_FAILED,
                             err->message, 0, 0, 0);
        compose_next(app);
        return;
    }
    Compose *c = g_new0(Compose, 1);
    c->app = app;
    c->consultation = cid;
    c->proc = p;
    c->out = g_object_ref(g_subprocess_get_stdout_pipe(p));
    c->buf = g_byte_array_new();
    rs->composing = c;
    rs->compose_progress = 0;
    g_input_stream_read_bytes_async(c->out, 4096, G_PRIORITY_LOW, NULL, compose_read, c);
}

void
sig_recordings_compose_maybe(SigApp *app, gint64 consultation)
{
    if (!app->cfg->compose)
        return;
    g_autoptr(StoreConsultation) c = store_consultation_get(app->store, consultation, NULL);
    gint64 open = 0, ready = 0;
    if (c)
        store_recordings_progress(app->store, consultation, &open, &ready);
    if (!c || c->status == STORE_CONSULT_LIVE || c->status == STORE_CONSULT_INTERRUPTED || open ||
        !ready)
        return;
    g_autoptr(GPtrArray) recs = store_recordings_list(app->store, consultation, NULL);
    gboolean here = FALSE;
    for (guint i = 0; recs && i < recs->len; i++) {
        StoreRecording *r = recs->pdata[i];
        if (r->role == CONSULTD_ROLE_COMBINED && r->state != CONSULTD_REC_PROCESSING)
            return; /* done (or failed) already */
        here |= r->role != CONSULTD_ROLE_COMBINED && finished(r) &&
                recorded_here(app, consultation, r->file);
    }
    if (!here)
        return; /* recorded on another node, which combines it */
    SigRecordings *rs = app->recordings;
    for (GList *l = rs->composes.head; l; l = l->next)
        if (*(gint64 *)l->data == consultation)
            return;
    if (rs->composing && rs->composing->consultation == consultation)
        return;
    g_autofree char *combined =
        consultd_recording_file(CONSULTD_ROLE_COMBINED, CONSULTD_STREAM_CAMERA, 1);
    sig_recording_report(app, consultation, CONSULTD_ROLE_COMBINED, combined,
                         CONSULTD_REC_PROCESSING, NULL, 0, 0, 0);
    g_queue_push_tail(&rs->composes, g_memdup2(&consultation, sizeof consultation));
    compose_next(app);
}

gboolean
sig_recordings_idle(SigApp *app)
{
    SigRecordings *rs = app->recordings;
    return !rs || (!rs->repairing && !rs->composing && g_queue_is_empty(&rs->repairs) &&
                   g_queue_is_empty(&rs->composes));
}

void
sig_recordings_compose_resume(SigApp *app)
{
    g_autoptr(GPtrArray) rows = store_recordings_unfinished(app->store);
    for (guint i = 0; rows && i < rows->len; i++) {
        StoreRecording *r = rows->pdata[i];
        if (r->role == CONSULTD_ROLE_COMBINED) {
            g_queue_push_tail(&app->recordings->composes,
                              g_memdup2(&r->consultation_id, sizeof(gint64)));
        }
    }
    compose_next(app);
}

SigRecordings *
sig_recordings_new(SigApp *app)
{
    SigRecordings *rs = g_new0(SigRecordings, 1);
    rs->app = app;
    g_queue_init(&rs->repairs);
    g_queue_init(&rs->composes);
    rs->compose_progress = -1;
    app->recordings = rs;
    return rs;
}

void
sig_recordings_free(SigRecordings *rs)
{
    if (!rs)
        return;
    /* A repair or a composer still running keeps its own reference to its
     * child; its completion finds app->recordings NULL and stops there
     * (repair_done(), compose_read()). */
    g_queue_clear_full(&rs->repairs, (GDestroyNotify)repair_free);
    g_queue_clear_full(&rs->composes, g_free);
    rs->app->recordings = NULL;
    g_free(rs);
}
