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

typedef struct {
    gint64 consultation;
    gint64 started_at; /* as recorded; 0 if unknown */
    char *role, *file;
} Repair;

typedef struct {
    SigApp *app;
    gint64 consultation;
    GSubprocess *proc;
    GDataInputStream *out;
    char *last;
} Compose;

struct SigRecordings {
    SigApp *app;
    GQueue repairs;      /* Repair * */
    gboolean repairing;
    GQueue composes;     /* gint64 * consultation ids */
    Compose *composing;
    int compose_progress;
};


static void
repair_free(Repair *r)
{
    g_free(r->role);
    g_free(r->file);
    g_free(r);
}

char *
sig_recordings_path(SigApp *app, gint64 consultation, const char *file)
{
    char id[32];
    g_snprintf(id, sizeof id, "%" G_GINT64_FORMAT, consultation);
    return g_build_filename(app->cfg->data_dir, "recordings", id, file, NULL);
}

void
sig_recording_report(SigApp *app, gint64 consultation, const char *role, const char *file,
                     const char *state, const char *reason, gint64 started_at,
                     gint64 duration_ms, gint64 size)
{
    g_autoptr(GError) err = NULL;
    if (!store_recording_update(app->store, consultation, role, file, state, reason,
                                started_at, duration_ms, size, &err)) {
        g_warning("recording %" G_GINT64_FORMAT "/%s: %s", consultation, file, err->message);
        return;
    }
    g_info("recording %" G_GINT64_FORMAT "/%s: %s%s%s", consultation, file, state,
           reason && *reason ? ": " : "", reason ? reason : "");
    sig_events_kick(app);
    if (strcmp(role, "combined") && strcmp(state, "recording") && strcmp(state, "processing"))
        sig_recordings_compose_maybe(app, consultation);
}

static void repair_next(SigApp *app);

typedef struct {
    SigApp *app;
    Repair *r;
} RepairRun;

static void
repair_done(GObject *src, GAsyncResult *res, gpointer data)
{
    RepairRun *run = data;
    SigApp *app = run->app;
    Repair *r = run->r;
    g_autofree char *out = NULL;
    g_autoptr(GError) err = NULL;
    g_subprocess_communicate_utf8_finish(G_SUBPROCESS(src), res, &out, NULL, &err);
    char state[16] = "failed";
    gint64 duration = 0, size = 0, lead = 0;
    char reason[256] = "";
    if (out)
        sscanf(out, "%15s %" G_GINT64_FORMAT " %" G_GINT64_FORMAT " %" G_GINT64_FORMAT
               " %255[^\n]", state, &duration, &size, &lead, reason);
    else
        g_strlcpy(reason, err ? err->message : "repair did not run", sizeof reason);
    if (strcmp(state, "ready") && strcmp(state, "empty") && strcmp(state, "failed"))
        g_strlcpy(state, "failed", sizeof state);
    g_message("repaired recording %" G_GINT64_FORMAT "/%s: %s", r->consultation, r->file, state);
    /* The content starts LEAD ms before the first arrival (docs/recording.md,
     * Timing), as media/room.c rec_done() reports for a finalized one. */
    gint64 started = r->started_at > lead ? r->started_at - lead : r->started_at;
    sig_recording_report(app, r->consultation, r->role, r->file, state,
                         *reason ? reason : NULL, started, duration, size);
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
    GSubprocess *p = g_subprocess_newv(argv, G_SUBPROCESS_FLAGS_STDOUT_PIPE, &err);
    if (!p) {
        sig_recording_report(app, r->consultation, r->role, r->file, "failed", err->message,
                             0, 0, 0);
        repair_free(r);
        repair_next(app);
        return;
    }
    rs->repairing = TRUE;
    RepairRun *run = g_new0(RepairRun, 1);
    run->app = app;
    run->r = r;
    g_subprocess_communicate_utf8_async(p, NULL, NULL, repair_done, run);
    g_object_unref(p);
}

void
sig_recordings_repair(SigApp *app, GHashTable *only)
{
    g_autoptr(GPtrArray) rows = store_recordings_unfinished(app->store);
    for (guint i = 0; rows && i < rows->len; i++) {
        StoreRecording *rec = rows->pdata[i];
        if (only && !g_hash_table_contains(only, &rec->consultation_id))
            continue;
        if (!strcmp(rec->role, "combined"))
            continue; /* composing is redone, not repaired: see compose_resume() */
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
        r->role = g_strdup(rec->role);
        r->file = g_strdup(rec->file);
        g_queue_push_tail(&app->recordings->repairs, r);
    }
    repair_next(app);
}

/* --------------------------------------------------------------- retention */

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
        const char *why = r->created_at < cutoff ? "max_age"
                        : cfg->retention_max_bytes && total > cfg->retention_max_bytes ? "quota"
                                                                                       : NULL;
        if (!why)
            continue;
        g_autofree char *path = sig_recordings_path(app, r->consultation_id, r->file);
        if (g_unlink(path) != 0 && errno != ENOENT) {
            g_warning("retention: cannot delete %s: %s", path, g_strerror(errno));
            continue;
        }
        g_autoptr(GError) err = NULL;
        if (!store_recording_deleted(app->store, r->id, why, &err)) {
            g_warning("retention: %s", err->message);
            continue;
        }
        total -= r->size;
        n++;
        g_message("retention: deleted recording %" G_GINT64_FORMAT "/%s (%s)",
                  r->consultation_id, r->file, why);
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
    return rs && rs->composing && rs->composing->consultation == consultation
               ? rs->compose_progress : -1;
}

static void compose_next(SigApp *app);

static void
compose_finish(Compose *c)
{
    SigApp *app = c->app;
    char state[16] = "failed", reason[256] = "the composer stopped";
    gint64 duration = 0, size = 0;
    if (c->last)
        sscanf(c->last, "%15s %" G_GINT64_FORMAT " %" G_GINT64_FORMAT " %255[^\n]", state,
               &duration, &size, reason);
    if (strcmp(state, "ready"))
        g_strlcpy(state, "failed", sizeof state);
    sig_recording_report(app, c->consultation, "combined", "combined.webm", state,
                         strcmp(state, "ready") ? reason : NULL, 0, duration, size);
    g_clear_object(&c->out);
    g_clear_object(&c->proc);
    g_free(c->last);
    g_free(c);
    app->recordings->composing = NULL;
    app->recordings->compose_progress = -1;
    compose_next(app);
}

static void
compose_line(GObject *src, GAsyncResult *res, gpointer data)
{
    Compose *c = data;
    g_autofree char *line = g_data_input_stream_read_line_finish(G_DATA_INPUT_STREAM(src), res,
                                                                 NULL, NULL);
    if (!line) {
        compose_finish(c);
        return;
    }
    if (g_str_has_prefix(line, "progress "))
        c->app->recordings->compose_progress = atoi(line + 9);
    else {
        g_free(c->last);
        c->last = g_steal_pointer(&line);
    }
    g_data_input_stream_read_line_async(c->out, G_PRIORITY_LOW, NULL, compose_line, c);
}

static void
lowest_priority(gpointer data)
{
    /* In the child, before exec: the composer only gets idle CPU. */
    if (nice(19) == -1)
        return;
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
    g_ptr_array_add(argv, sig_recordings_path(app, cid, "combined.webm"));
    gint64 base = G_MAXINT64;
    for (guint i = 0; recs && i < recs->len; i++) {
        StoreRecording *r = recs->pdata[i];
        if (!strcmp(r->state, "ready") && strcmp(r->role, "combined"))
            base = MIN(base, r->offset_ms);
    }
    /* Teacher first: the left half of the picture. */
    for (int pass = 0; pass < 2; pass++) {
        for (guint i = 0; recs && i < recs->len; i++) {
            StoreRecording *r = recs->pdata[i];
            if (strcmp(r->state, "ready") || strcmp(r->role, pass ? "student" : "teacher"))
                continue;
            g_autofree char *p = sig_recordings_path(app, cid, r->file);
            g_ptr_array_add(argv, g_strdup("--input"));
            g_ptr_array_add(argv, g_strdup_printf("%s@%" G_GINT64_FORMAT, p, r->offset_ms - base));
            break; /* the first file of each participant */
        }
    }
    g_ptr_array_add(argv, NULL);
    g_autoptr(GSubprocessLauncher) l = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDOUT_PIPE);
    g_subprocess_launcher_set_child_setup(l, lowest_priority, NULL, NULL);
    g_autoptr(GError) err = NULL;
    GSubprocess *p = g_subprocess_launcher_spawnv(l, (const char *const *)argv->pdata, &err);
    if (!p) {
        sig_recording_report(app, cid, "combined", "combined.webm", "failed", err->message, 0, 0, 0);
        compose_next(app);
        return;
    }
    Compose *c = g_new0(Compose, 1);
    c->app = app;
    c->consultation = cid;
    c->proc = p;
    c->out = g_data_input_stream_new(g_subprocess_get_stdout_pipe(p));
    rs->composing = c;
    rs->compose_progress = 0;
    g_data_input_stream_read_line_async(c->out, G_PRIORITY_LOW, NULL, compose_line, c);
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
    if (!c || c->status == STORE_CONSULT_LIVE || c->status == STORE_CONSULT_INTERRUPTED ||
        open || !ready)
        return;
    g_autoptr(GPtrArray) recs = store_recordings_list(app->store, consultation, NULL);
    for (guint i = 0; recs && i < recs->len; i++) {
        StoreRecording *r = recs->pdata[i];
        if (!strcmp(r->role, "combined") && strcmp(r->state, "processing"))
            return; /* done (or failed) already */
    }
    SigRecordings *rs = app->recordings;
    for (GList *l = rs->composes.head; l; l = l->next)
        if (*(gint64 *)l->data == consultation)
            return;
    if (rs->composing && rs->composing->consultation == consultation)
        return;
    sig_recording_report(app, consultation, "combined", "combined.webm", "processing", NULL,
                         0, 0, 0);
    g_queue_push_tail(&rs->composes, g_memdup2(&consultation, sizeof consultation));
    compose_next(app);
}

void
sig_recordings_compose_resume(SigApp *app)
{
    g_autoptr(GPtrArray) rows = store_recordings_unfinished(app->store);
    for (guint i = 0; rows && i < rows->len; i++) {
        StoreRecording *r = rows->pdata[i];
        if (!strcmp(r->role, "combined")) {
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
     * child; its completion finds app->recordings NULL and stops there. */
    g_queue_clear_full(&rs->repairs, (GDestroyNotify)repair_free);
    g_queue_clear_full(&rs->composes, g_free);
    rs->app->recordings = NULL;
    g_free(rs);
}
