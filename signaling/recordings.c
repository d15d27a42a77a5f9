/* recordings.c - recordings on the main process's side: state reports from
 * the media workers, repairs after crashes, the recordings API and replay
 * with byte ranges.
 *
 * Files are only ever found through the database: a request names a
 * consultation and a file name, both are looked up, and only a ready row
 * gives a path (its name checked to be a plain file name).  The client's
 * path never reaches open().
 *
 * Repairs run one at a time as `consultd-media --finalize FILE` children, so
 * a crash in GStreamer while repairing cannot take the main process with it.
 */
#include "recordings.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <stdlib.h>
#include <unistd.h>

#include "events.h"
#include "media.h"

typedef struct {
    gint64 consultation;
    gint64 started_at; /* as recorded; 0 if unknown */
    char *role, *file;
} Repair;

static GQueue repairs = G_QUEUE_INIT;
static gboolean repairing;

static void
repair_free(Repair *r)
{
    g_free(r->role);
    g_free(r->file);
    g_free(r);
}

static char *
recording_path(SigApp *app, gint64 consultation, const char *file)
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
    repairing = FALSE;
    repair_next(app);
}

static void
repair_next(SigApp *app)
{
    if (repairing || g_queue_is_empty(&repairs) || app->stopping)
        return;
    Repair *r = g_queue_pop_head(&repairs);
    g_autofree char *path = recording_path(app, r->consultation, r->file);
    const char *argv[] = {sig_media_worker_bin(app), "--finalize", path, NULL};
    g_autoptr(GError) err = NULL;
    GSubprocess *p = g_subprocess_newv(argv, G_SUBPROCESS_FLAGS_STDOUT_PIPE, &err);
    if (!p) {
        sig_recording_report(app, r->consultation, r->role, r->file, "failed", err->message,
                             0, 0, 0);
        repair_free(r);
        repair_next(app);
        return;
    }
    repairing = TRUE;
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
        for (GList *l = repairs.head; l; l = l->next) {
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
        g_queue_push_tail(&repairs, r);
    }
    repair_next(app);
}

/* ------------------------------------------------------------------- API */

/* The consultation {id} if the caller may see it; else replies 404. */
static StoreConsultation *
visible(SigReq *r)
{
    gint64 id = sig_req_id(r, 0);
    if (!id)
        return NULL;
    StoreConsultation *c = store_consultation_get(r->app->store, id, NULL);
    gint64 me = r->user->id;
    if (c && (r->user->role == STORE_ROLE_ADMIN || c->teacher_id == me || c->student_id == me))
        return c;
    store_consultation_free(c);
    sig_reply_error(r, 404, "not_found", "no consultation %" G_GINT64_FORMAT, id);
    return NULL;
}

json_t *
sig_recording_json(gint64 consultation, const char *file, const char *role,
                   const char *state, gint64 duration_ms, gint64 size, gint64 offset_ms)
{
    json_t *j = json_pack("{s:s, s:s, s:s, s:f, s:I, s:f}", "file", file, "role", role,
                          "state", state, "duration_seconds", duration_ms / 1000.0, "size",
                          (json_int_t)size, "offset_seconds", offset_ms / 1000.0);
    if (!strcmp(state, "ready")) {
        g_autofree char *url = g_strdup_printf("/recordings/%" G_GINT64_FORMAT "/%s",
                                               consultation, file);
        json_object_set_new(j, "url", json_string(url));
    }
    return j;
}

/* A recordings row as the API shows it (the fields both lists share). */
static json_t *
row_json(const StoreRecording *x)
{
    json_t *j = sig_recording_json(x->consultation_id, x->file, x->role, x->state,
                                   x->duration_ms, x->size, x->offset_ms);
    if (*x->reason)
        json_object_set_new(j, "reason", json_string(x->reason));
    return j;
}

void
sig_h_recordings_list(SigReq *r)
{
    g_autoptr(StoreConsultation) c = visible(r);
    if (!c)
        return;
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) rows = store_recordings_list(r->app->store, c->id, &err);
    if (!rows) {
        sig_reply_store_error(r, err);
        return;
    }
    json_t *arr = json_array();
    for (guint i = 0; i < rows->len; i++) {
        StoreRecording *x = rows->pdata[i];
        json_t *j = row_json(x);
        if (!strcmp(x->role, "combined") && !strcmp(x->state, "processing"))
            json_object_set_new(j, "progress",
                                json_integer(MAX(0, sig_recordings_compose_progress(c->id))));
        json_array_append_new(arr, j);
    }
    sig_reply_json(r, 200, json_pack("{s:I, s:o}", "consultation_id", (json_int_t)c->id,
                                     "recordings", arr));
}

/* Parses a single "bytes=" range against SIZE.  Returns 1 and sets
 * [*from, *to] for a satisfiable range, 0 to serve the whole file (absent,
 * malformed or several ranges: RFC 9110 lets a server ignore those), -1 for
 * an unsatisfiable one. */
int
sig_parse_range(const char *h, gint64 size, gint64 *from, gint64 *to)
{
    if (!h || strncmp(h, "bytes=", 6) || strchr(h, ','))
        return 0;
    errno = 0;
    const char *p = h + 6;
    char *end;
    if (*p == '-') {
        if (!g_ascii_isdigit(p[1]))
            return 0;
        guint64 n = g_ascii_strtoull(p + 1, &end, 10);
        if (*end || errno == ERANGE)
            return 0;
        if (n == 0 || size == 0)
            return -1;
        *from = n >= (guint64)size ? 0 : size - (gint64)n;
        *to = size - 1;
        return 1;
    }
    if (!g_ascii_isdigit(*p))
        return 0;
    errno = 0;
    guint64 a = g_ascii_strtoull(p, &end, 10);
    if (*end != '-' || errno == ERANGE)
        return 0;
    guint64 b = (guint64)size - 1;
    if (end[1]) {
        if (!g_ascii_isdigit(end[1]))
            return 0;
        char *e2;
        b = g_ascii_strtoull(end + 1, &e2, 10);
        if (*e2 || errno == ERANGE || b < a)
            return 0;
    }
    if (a >= (guint64)size)
        return -1;
    *from = (gint64)a;
    *to = (gint64)MIN(b, (guint64)size - 1);
    return 1;
}

void
sig_h_recording_file(SigReq *r)
{
    g_autoptr(StoreConsultation) c = visible(r);
    if (!c)
        return;
    const char *file = r->params[1];
    g_autoptr(StoreRecording) rec = store_recording_get_ready(r->app->store, c->id, file);
    if (!rec || strchr(rec->file, '/') || rec->file[0] == '.') {
        sig_reply_error(r, 404, "not_found", "no such recording");
        return;
    }
    g_autofree char *path = recording_path(r->app, c->id, rec->file);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0)
            close(fd);
        sig_reply_error(r, 404, "not_found", "the recording file is missing");
        return;
    }
    gint64 size = st.st_size;
    g_autofree char *etag = g_strdup_printf("\"r%" G_GINT64_FORMAT "-%" G_GINT64_FORMAT "-%ld\"",
                                            rec->id, size, (long)st.st_mtime);
    const char *range = sig_req_get_header(r, "Range");
    const char *if_range = sig_req_get_header(r, "If-Range");
    if (range && if_range && strcmp(if_range, etag))
        range = NULL; /* the client's copy is stale: send it all */
    gint64 from = 0, to = size - 1;
    int rr = sig_parse_range(range, size, &from, &to);
    sig_req_header(r, "Accept-Ranges", "bytes");
    sig_req_header(r, MHD_HTTP_HEADER_ETAG, etag);
    sig_req_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "private, max-age=300");
    if (rr < 0) {
        close(fd);
        g_autofree char *cr = g_strdup_printf("bytes */%" G_GINT64_FORMAT, size);
        sig_req_header(r, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
        sig_reply_error(r, 416, "range_not_satisfiable", "the file has %" G_GINT64_FORMAT
                        " bytes", size);
        return;
    }
    struct MHD_Response *resp = MHD_create_response_from_fd_at_offset64(
        (uint64_t)(to - from + 1), fd, (uint64_t)from);
    if (!resp) {
        close(fd);
        sig_reply_error(r, 500, "internal", "cannot serve the file");
        return;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "video/webm");
    if (rr > 0) {
        g_autofree char *cr = g_strdup_printf("bytes %" G_GINT64_FORMAT "-%" G_GINT64_FORMAT
                                              "/%" G_GINT64_FORMAT, from, to, size);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
    }
    sig_reply_response(r, rr > 0 ? 206 : 200, resp);
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
        g_autofree char *path = recording_path(app, r->consultation_id, r->file);
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

void
sig_h_retention_run(SigReq *r)
{
    guint n = sig_recordings_prune(r->app);
    sig_reply_json(r, 200, json_pack("{s:I, s:I}", "deleted", (json_int_t)n, "bytes",
                                     (json_int_t)store_recordings_bytes(r->app->store)));
}

void
sig_h_admin_recordings(SigReq *r)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) rows = store_recordings_all(r->app->store, 500, &err);
    if (!rows) {
        sig_reply_store_error(r, err);
        return;
    }
    json_t *arr = json_array();
    for (guint i = 0; i < rows->len; i++) {
        StoreRecording *x = rows->pdata[i];
        json_t *j = row_json(x);
        json_object_set_new(j, "consultation_id", json_integer(x->consultation_id));
        json_object_set_new(j, "created_at", sig_json_time(x->created_at));
        json_array_append_new(arr, j);
    }
    struct statvfs vfs;
    json_t *disk = json_null();
    if (statvfs(r->app->cfg->data_dir, &vfs) == 0)
        disk = json_pack("{s:I, s:I}", "free_bytes", (json_int_t)vfs.f_bavail * vfs.f_frsize,
                         "total_bytes", (json_int_t)vfs.f_blocks * vfs.f_frsize);
    sig_reply_json(r, 200, json_pack("{s:o, s:I, s:o, s:{s:I, s:I}}", "recordings", arr,
                                     "bytes", (json_int_t)store_recordings_bytes(r->app->store),
                                     "disk", disk, "retention", "days",
                                     (json_int_t)r->app->cfg->retention_days, "max_bytes",
                                     (json_int_t)r->app->cfg->retention_max_bytes));
}

/* ----------------------------------------------------------- composing */

/* The combined file: once a consultation is closed and its participants'
 * recordings are settled, `consultd-media --compose` runs as a child at the
 * lowest CPU priority, one at a time, so it never takes CPU from live
 * consultations.  Its progress lines are kept in memory for the API. */

typedef struct {
    SigApp *app;
    gint64 consultation;
    GSubprocess *proc;
    GDataInputStream *out;
    char *last;
} Compose;

static GQueue composes = G_QUEUE_INIT; /* gint64 * consultation ids */
static Compose *composing;
static int compose_progress = -1;
static gint64 compose_id;

int
sig_recordings_compose_progress(gint64 consultation)
{
    return composing && compose_id == consultation ? compose_progress : -1;
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
    composing = NULL;
    compose_progress = -1;
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
        compose_progress = atoi(line + 9);
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
    if (composing || g_queue_is_empty(&composes) || app->stopping)
        return;
    gint64 *id = g_queue_pop_head(&composes);
    gint64 cid = *id;
    g_free(id);
    g_autoptr(GPtrArray) recs = store_recordings_list(app->store, cid, NULL);
    g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(argv, g_strdup(sig_media_worker_bin(app)));
    g_ptr_array_add(argv, g_strdup("--compose"));
    g_ptr_array_add(argv, recording_path(app, cid, "combined.webm"));
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
            g_autofree char *p = recording_path(app, cid, r->file);
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
    composing = c;
    compose_id = cid;
    compose_progress = 0;
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
    for (GList *l = composes.head; l; l = l->next)
        if (*(gint64 *)l->data == consultation)
            return;
    if (composing && compose_id == consultation)
        return;
    sig_recording_report(app, consultation, "combined", "combined.webm", "processing", NULL,
                         0, 0, 0);
    g_queue_push_tail(&composes, g_memdup2(&consultation, sizeof consultation));
    compose_next(app);
}

void
sig_recordings_compose_resume(SigApp *app)
{
    g_autoptr(GPtrArray) rows = store_recordings_unfinished(app->store);
    for (guint i = 0; rows && i < rows->len; i++) {
        StoreRecording *r = rows->pdata[i];
        if (!strcmp(r->role, "combined")) {
            g_queue_push_tail(&composes, g_memdup2(&r->consultation_id, sizeof(gint64)));
        }
    }
    compose_next(app);
}

