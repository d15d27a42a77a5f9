/* uploads.c - see uploads.h. */
#include "workers/uploads.h"

#include <errno.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>

#include "core/events.h"
#include "sigv4.h"

typedef struct {
    gint64 consultation;
    char *file;
    char *abort_id; /* a multipart upload an earlier run left, or NULL */
} Upload;

typedef struct {
    SigApp *app;
    Upload *up;
    GSubprocess *proc;
    GDataInputStream *out;
    gboolean ok;
    char *error; /* the child's "error ..." line */
} Run;

struct SigUploads {
    SigApp *app;
    char *bin;      /* consultd-objects */
    GQueue queue;   /* Upload * */
    Run *run;       /* the upload running, or NULL */
    guint retry;    /* timer while backing off */
    guint failures; /* in a row */
    guint deleting; /* deletions under way */
};

/* Where FILE of CONSULTATION is on this node's disk (as
 * sig_recordings_path(), which this file cannot include: recordings.c
 * includes it). */
static char *
local_path(SigApp *app, gint64 consultation, const char *file)
{
    g_autofree char *dir = consultd_recordings_dir(app->cfg->data_dir);
    return consultd_recording_path(dir, consultation, file);
}

static void
upload_free(Upload *up)
{
    g_free(up->file);
    g_free(up->abort_id);
    g_free(up);
}

gboolean
sig_uploads_enabled(SigApp *app)
{
    return strcmp(app->cfg->recordings_store, "local") != 0;
}

/* ----------------------------------------------------- the store's address */

/* Store WHERE (an s3:// one) as this node's settings reach it. */
static gboolean
s3_store(SigApp *app, const char *where, Sigv4Store *st)
{
    const SigConfig *cfg = app->cfg;
    return sigv4_store_parse(st, where, cfg->s3_endpoint, cfg->s3_region, cfg->s3_addressing);
}

static char *
key_of(gint64 consultation, const char *file)
{
    return g_strdup_printf("%" G_GINT64_FORMAT "/%s", consultation, file);
}

char *
sig_uploads_dir_path(const char *where, gint64 consultation, const char *file)
{
    if (!g_str_has_prefix(where, "dir:/"))
        return NULL;
    g_autofree char *key = key_of(consultation, file);
    return g_build_filename(where + 4, key, NULL);
}

gboolean
sig_uploads_redirects(SigApp *app, const char *where)
{
    return g_str_has_prefix(where, "s3://") && strcmp(app->cfg->recordings_serve, "proxy") != 0;
}

char *
sig_uploads_presign(SigApp *app, const char *where, gint64 consultation, const char *file)
{
    Sigv4Store st;
    if (!s3_store(app, where, &st))
        return NULL;
    g_autofree char *key = key_of(consultation, file);
    g_autofree char *host = NULL, *path = NULL;
    sigv4_store_locate(&st, key, &host, &path);
    const SigConfig *cfg = app->cfg;
    Sigv4Keys k = {cfg->s3_access_key, cfg->s3_secret_key, cfg->s3_region, "s3"};
    g_autofree char *date = sigv4_amz_date(g_get_real_time() / G_USEC_PER_SEC);
    g_autofree char *q =
        sigv4_presign_query(&k, "GET", host, path, "response-content-type=video%2Fwebm", date,
                            (guint)cfg->recordings_url_ttl);
    char *url = g_strdup_printf("%s://%s%s?%s", st.scheme, host, path, q);
    sigv4_store_clear(&st);
    return url;
}

char *
sig_uploads_media_origin(SigApp *app)
{
    const char *where = app->cfg->recordings_store;
    Sigv4Store st;
    if (!sig_uploads_redirects(app, where) || !s3_store(app, where, &st))
        return NULL;
    g_autofree char *host = NULL, *path = NULL;
    sigv4_store_locate(&st, NULL, &host, &path);
    char *origin = g_strdup_printf("%s://%s", st.scheme, host);
    sigv4_store_clear(&st);
    return origin;
}

/* ------------------------------------------------------------ the children */

static void
die_with_parent(gpointer data)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
}

/* A launcher for consultd-objects on store WHERE: the store and its secrets
 * in the environment.  It runs as this process's user, not the media
 * workers' (they must not read its environment). */
static GSubprocessLauncher *
launcher(SigApp *app, const char *where, GSubprocessFlags flags)
{
    const SigConfig *cfg = app->cfg;
    GSubprocessLauncher *l = g_subprocess_launcher_new(flags);
    g_subprocess_launcher_set_child_setup(l, die_with_parent, NULL, NULL);
    g_subprocess_launcher_setenv(l, "CONSULTD_RECORDINGS_STORE", where, TRUE);
    g_subprocess_launcher_setenv(l, "CONSULTD_S3_ENDPOINT", cfg->s3_endpoint, TRUE);
    g_subprocess_launcher_setenv(l, "CONSULTD_S3_REGION", cfg->s3_region, TRUE);
    g_subprocess_launcher_setenv(l, "CONSULTD_S3_ACCESS_KEY", cfg->s3_access_key, TRUE);
    g_subprocess_launcher_setenv(l, "CONSULTD_S3_SECRET_KEY", cfg->s3_secret_key, TRUE);
    g_subprocess_launcher_setenv(l, "CONSULTD_S3_ADDRESSING", cfg->s3_addressing, TRUE);
    g_autofree char *part = g_strdup_printf("%" G_GINT64_FORMAT, cfg->s3_part_size);
    g_subprocess_launcher_setenv(l, "CONSULTD_S3_PART_SIZE", part, TRUE);
    return l;
}

/* --------------------------------------------------------------- uploading */

static void run_next(SigUploads *u);

static gboolean
retry_now(gpointer data)
{
    SigUploads *u = data;
    u->retry = 0;
    run_next(u);
    return G_SOURCE_REMOVE;
}

/* Whether the combined file of CONSULTATION may still need its
 * participants' files on this disk (so they stay after their upload). */
static gboolean
compose_pending(SigApp *app, gint64 consultation)
{
    if (!app->cfg->compose)
        return FALSE;
    g_autoptr(GPtrArray) recs = store_recordings_list(app->store, consultation, NULL);
    for (guint i = 0; recs && i < recs->len; i++) {
        StoreRecording *r = recs->pdata[i];
        if (r->role == CONSULTD_ROLE_COMBINED)
            return r->state == CONSULTD_REC_PROCESSING;
    }
    return TRUE; /* not composed yet */
}

void
sig_uploads_drop_local(SigApp *app, gint64 consultation)
{
    g_autoptr(GPtrArray) recs = store_recordings_list(app->store, consultation, NULL);
    for (guint i = 0; recs && i < recs->len; i++) {
        StoreRecording *r = recs->pdata[i];
        if (r->state != CONSULTD_REC_READY || !*r->store)
            continue;
        g_autofree char *path = local_path(app, consultation, r->file);
        if (g_unlink(path) == 0)
            g_info("recording %" G_GINT64_FORMAT "/%s: local copy removed (stored in %s)",
                   consultation, r->file, r->store);
    }
}

static void
run_finish(Run *run)
{
    SigApp *app = run->app;
    SigUploads *u = app->uploads;
    Upload *up = run->up;
    if (!u) { /* shutting down */
        upload_free(up);
    } else {
        u->run = NULL;
        g_autoptr(GError) err = NULL;
        const char *where = app->cfg->recordings_store;
        if (run->ok &&
            store_recording_stored(app->store, up->consultation, up->file, where, &err)) {
            g_message("recording %" G_GINT64_FORMAT "/%s: stored in %s", up->consultation, up->file,
                      where);
            u->failures = 0;
            sig_events_kick(app);
            /* The local copy goes, unless the combined file is still to
             * be made from it (sig_uploads_drop_local() then). */
            if (g_str_has_prefix(up->file, "combined") || !compose_pending(app, up->consultation)) {
                g_autofree char *path = local_path(app, up->consultation, up->file);
                g_unlink(path);
            }
            upload_free(up);
        } else if (run->ok) {
            /* Not uploading any more (written off, deleted): nothing to do. */
            g_warning("recording %" G_GINT64_FORMAT "/%s: stored, but %s", up->consultation,
                      up->file, err->message);
            upload_free(up);
        } else {
            /* Keep it local and uploading, say why, and try again later. */
            g_autofree char *why = g_strdup_printf("store: %s", run->error ? run->error : "failed");
            if (strlen(why) > 300)
                why[300] = '\0';
            store_recording_upload_note(app->store, up->consultation, up->file,
                                        up->abort_id ? up->abort_id : "", why, NULL);
            g_warning("recording %" G_GINT64_FORMAT "/%s: upload failed: %s", up->consultation,
                      up->file, why);
            sig_events_kick(app);
            g_queue_push_tail(&u->queue, up);
            u->failures++;
            guint delay =
                (guint)MIN((gint64)1 << MIN(u->failures, 12u), app->cfg->upload_retry_max);
            u->retry = g_timeout_add_seconds(delay, retry_now, u);
        }
        run_next(u);
    }
    g_clear_object(&run->proc);
    g_clear_object(&run->out);
    g_free(run->error);
    g_free(run);
}

static void
run_exited(GObject *src, GAsyncResult *res, gpointer data)
{
    Run *run = data;
    g_subprocess_wait_finish(G_SUBPROCESS(src), res, NULL);
    run->ok = run->ok && g_subprocess_get_if_exited(run->proc) &&
              g_subprocess_get_exit_status(run->proc) == 0;
    if (!run->ok && !run->error)
        run->error = g_strdup("consultd-objects ended without an answer");
    run_finish(run);
}

static void
run_line(GObject *src, GAsyncResult *res, gpointer data)
{
    Run *run = data;
    g_autofree char *line = g_data_input_stream_read_line_finish_utf8(run->out, res, NULL, NULL);
    if (!line) {
        g_subprocess_wait_async(run->proc, NULL, run_exited, run);
        return;
    }
    SigApp *app = run->app;
    if (g_str_has_prefix(line, "upload-id ") && app->uploads) {
        /* Kept on the row at once: if this node dies, its next start aborts it. */
        g_free(run->up->abort_id);
        run->up->abort_id = g_strdup(line + 10);
        store_recording_upload_note(app->store, run->up->consultation, run->up->file,
                                    run->up->abort_id, "", NULL);
    } else if (g_str_has_prefix(line, "ok ")) {
        run->ok = TRUE;
    } else if (g_str_has_prefix(line, "error ")) {
        g_free(run->error);
        run->error = g_strdup(line + 6);
    }
    g_data_input_stream_read_line_async(run->out, G_PRIORITY_DEFAULT, NULL, run_line, run);
}

static void
run_next(SigUploads *u)
{
    SigApp *app = u->app;
    if (u->run || u->retry || g_queue_is_empty(&u->queue) || app->stopping)
        return;
    Upload *up = g_queue_pop_head(&u->queue);
    g_autofree char *path = local_path(app, up->consultation, up->file);
    g_autofree char *key = key_of(up->consultation, up->file);
    g_autoptr(GSubprocessLauncher) l =
        launcher(app, app->cfg->recordings_store, G_SUBPROCESS_FLAGS_STDOUT_PIPE);
    const char *argv[] = {u->bin, "put", path, key, up->abort_id, NULL};
    g_autoptr(GError) err = NULL;
    GSubprocess *p = g_subprocess_launcher_spawnv(l, argv, &err);
    Run *run = g_new0(Run, 1);
    run->app = app;
    run->up = up;
    if (!p) {
        run->error = g_strdup(err->message);
        u->run = run;
        run_finish(run);
        return;
    }
    run->proc = p;
    run->out = g_data_input_stream_new(g_subprocess_get_stdout_pipe(p));
    u->run = run;
    g_data_input_stream_read_line_async(run->out, G_PRIORITY_DEFAULT, NULL, run_line, run);
}

void
sig_uploads_queue(SigApp *app, gint64 consultation, const char *file, const char *abort_id)
{
    SigUploads *u = app->uploads;
    if (!u)
        return;
    for (GList *l = u->queue.head; l; l = l->next) {
        Upload *q = l->data;
        if (q->consultation == consultation && !strcmp(q->file, file))
            return;
    }
    if (u->run && u->run->up->consultation == consultation && !strcmp(u->run->up->file, file))
        return;
    Upload *up = g_new0(Upload, 1);
    up->consultation = consultation;
    up->file = g_strdup(file);
    up->abort_id = abort_id && *abort_id ? g_strdup(abort_id) : NULL;
    g_queue_push_tail(&u->queue, up);
    run_next(u);
}

void
sig_uploads_resume(SigApp *app)
{
    if (!app->uploads)
        return;
    g_autoptr(GPtrArray) rows = store_recordings_uploading(app->store);
    for (guint i = 0; rows && i < rows->len; i++) {
        StoreRecording *r = rows->pdata[i];
        g_autofree char *path = local_path(app, r->consultation_id, r->file);
        if (g_file_test(path, G_FILE_TEST_EXISTS)) /* this node's */
            sig_uploads_queue(app, r->consultation_id, r->file, r->upload_id);
    }
}

gboolean
sig_uploads_idle(SigApp *app)
{
    SigUploads *u = app->uploads;
    return !u || (!u->run && g_queue_is_empty(&u->queue) && !u->deleting);
}

/* ---------------------------------------------------------------- deleting */

typedef struct {
    SigApp *app;
    gint64 id;
    SigUploadsDone done;
    gpointer data;
} Delete;

static void
delete_done(GObject *src, GAsyncResult *res, gpointer data)
{
    Delete *d = data;
    g_autofree char *out = NULL;
    g_autoptr(GError) err = NULL;
    gboolean ok = g_subprocess_communicate_utf8_finish(G_SUBPROCESS(src), res, &out, NULL, &err) &&
                  g_subprocess_get_if_exited(G_SUBPROCESS(src)) &&
                  g_subprocess_get_exit_status(G_SUBPROCESS(src)) == 0;
    if (!ok)
        g_warning("recording %" G_GINT64_FORMAT ": could not delete it from the store: %s", d->id,
                  out && *out ? g_strstrip(out)
                  : err       ? err->message
                              : "failed");
    if (d->app->uploads) {
        d->app->uploads->deleting--;
        d->done(d->app, d->id, ok, d->data);
    }
    g_free(d);
}

void
sig_uploads_delete(SigApp *app, const StoreRecording *r, SigUploadsDone done, gpointer data)
{
    g_autofree char *key = key_of(r->consultation_id, r->file);
    g_autoptr(GSubprocessLauncher) l = launcher(app, r->store, G_SUBPROCESS_FLAGS_STDOUT_PIPE);
    const char *argv[] = {app->uploads->bin, "delete", key, NULL};
    g_autoptr(GError) err = NULL;
    g_autoptr(GSubprocess) p = g_subprocess_launcher_spawnv(l, argv, &err);
    if (!p) {
        g_warning("recording %" G_GINT64_FORMAT ": %s", r->id, err->message);
        done(app, r->id, FALSE, data);
        return;
    }
    app->uploads->deleting++;
    Delete *d = g_new0(Delete, 1);
    d->app = app;
    d->id = r->id;
    d->done = done;
    d->data = data;
    g_subprocess_communicate_utf8_async(p, NULL, NULL, delete_done, d);
}

/* ---------------------------------------------------------------- fetching */

GSubprocess *
sig_uploads_fetch(SigApp *app, const char *where, gint64 consultation, const char *file,
                  gint64 from, gint64 to, GError **error)
{
    g_autofree char *key = key_of(consultation, file);
    g_autofree char *a = g_strdup_printf("%" G_GINT64_FORMAT, from);
    g_autofree char *b = g_strdup_printf("%" G_GINT64_FORMAT, to);
    g_autoptr(GSubprocessLauncher) l =
        launcher(app, where, G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_SILENCE);
    const char *argv[] = {app->uploads->bin, "get", key, a, b, NULL};
    return g_subprocess_launcher_spawnv(l, argv, error);
}

/* ------------------------------------------------------------------- setup */

SigUploads *
sig_uploads_new(SigApp *app)
{
    SigUploads *u = g_new0(SigUploads, 1);
    u->app = app;
    u->bin = sig_find_bin("consultd-objects", "CONSULTD_OBJECTS_BIN");
    g_queue_init(&u->queue);
    app->uploads = u;
    if (sig_uploads_enabled(app))
        g_message("recordings go to %s once finalized (served by %s)", app->cfg->recordings_store,
                  sig_uploads_redirects(app, app->cfg->recordings_store) ? "redirect" : "proxy");
    return u;
}

void
sig_uploads_free(SigUploads *u)
{
    if (!u)
        return;
    g_clear_handle_id(&u->retry, g_source_remove);
    /* A running upload dies with us (PR_SET_PDEATHSIG) or is told now; its
     * row stays uploading with its upload id, for the next start. */
    if (u->run && u->run->proc)
        g_subprocess_send_signal(u->run->proc, SIGTERM);
    g_queue_clear_full(&u->queue, (GDestroyNotify)upload_free);
    u->app->uploads = NULL;
    g_free(u->bin);
    g_free(u);
}
