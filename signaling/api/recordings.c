/* recordings.c - see recordings.h.
 *
 * Files are only ever found through the database: a request names a
 * consultation and a file name, both are looked up, and only a ready row
 * gives a path (its name checked to be a plain file name).  The client's
 * path never reaches open().
 */
#include "api/recordings.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "core/events.h"
#include "workers/recordings.h"

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
sig_recording_json(gint64 consultation, const char *file, ConsultdRole role, ConsultdRecState state,
                   gint64 duration_ms, gint64 size, gint64 offset_ms)
{
    json_t *j =
        json_pack("{s:s, s:s, s:s, s:f, s:I, s:f}", "file", file, "role", consultd_role_name(role),
                  "state", consultd_rec_state_name(state), "duration_seconds", duration_ms / 1000.0,
                  "size", (json_int_t)size, "offset_seconds", offset_ms / 1000.0);
    if (state == CONSULTD_REC_READY) {
        g_autofree char *url =
            g_strdup_printf("/recordings/%" G_GINT64_FORMAT "/%s", consultation, file);
        json_object_set_new(j, "url", json_string(url));
    }
    return j;
}

/* A recordings row as the API shows it (the fields both lists share). */
static json_t *
row_json(const StoreRecording *x)
{
    json_t *j = sig_recording_json(x->consultation_id, x->file, x->role, x->state, x->duration_ms,
                                   x->size, x->offset_ms);
    if (*x->reason)
        json_object_set_new(j, "reason", json_string(x->reason));
    return j;
}

/* ROWS as the API lists them: the admin's list adds the consultation and
 * the time; a consultation's list adds a combined file's progress. */
static json_t *
rows_json(SigApp *app, GPtrArray *rows, gboolean admin)
{
    json_t *arr = json_array();
    for (guint i = 0; i < rows->len; i++) {
        StoreRecording *x = rows->pdata[i];
        json_t *j = row_json(x);
        if (admin) {
            json_object_set_new(j, "id", json_integer(x->id));
            json_object_set_new(j, "consultation_id", json_integer(x->consultation_id));
            if (*x->node_id)
                json_object_set_new(j, "node_id", json_string(x->node_id));
            json_object_set_new(j, "created_at", sig_json_time(x->created_at));
        } else if (x->role == CONSULTD_ROLE_COMBINED && x->state == CONSULTD_REC_PROCESSING) {
            int p = sig_recordings_compose_progress(app, x->consultation_id);
            json_object_set_new(j, "progress", json_integer(MAX(0, p)));
        }
        json_array_append_new(arr, j);
    }
    return arr;
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
    json_t *arr = rows_json(r->app, rows, FALSE);
    sig_reply_json(
        r, 200, json_pack("{s:I, s:o}", "consultation_id", (json_int_t)c->id, "recordings", arr));
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
    g_autofree char *path = sig_recordings_path(r->app, c->id, rec->file);
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
        sig_reply_error(r, 416, "range_not_satisfiable", "the file has %" G_GINT64_FORMAT " bytes",
                        size);
        return;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_fd_at_offset64((uint64_t)(to - from + 1), fd, (uint64_t)from);
    if (!resp) {
        close(fd);
        sig_reply_error(r, 500, "internal", "cannot serve the file");
        return;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "video/webm");
    if (rr > 0) {
        g_autofree char *cr = g_strdup_printf(
            "bytes %" G_GINT64_FORMAT "-%" G_GINT64_FORMAT "/%" G_GINT64_FORMAT, from, to, size);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
    }
    sig_reply_response(r, rr > 0 ? 206 : 200, resp);
}

/* --------------------------------------------------------------- admin */

void
sig_h_retention_run(SigReq *r)
{
    guint n = sig_recordings_prune(r->app);
    gint64 rows = sig_events_prune_all(r->app);
    sig_reply_json(r, 200,
                   json_pack("{s:I, s:I, s:I}", "deleted", (json_int_t)n, "bytes",
                             (json_int_t)store_recordings_bytes(r->app->store),
                             "event_rows_deleted", (json_int_t)rows));
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
    json_t *arr = rows_json(r->app, rows, TRUE);
    struct statvfs vfs;
    json_t *disk = json_null();
    if (statvfs(r->app->cfg->data_dir, &vfs) == 0)
        disk = json_pack("{s:I, s:I}", "free_bytes", (json_int_t)vfs.f_bavail * vfs.f_frsize,
                         "total_bytes", (json_int_t)vfs.f_blocks * vfs.f_frsize);
    sig_reply_json(r, 200,
                   json_pack("{s:o, s:I, s:o, s:{s:I, s:I}}", "recordings", arr, "bytes",
                             (json_int_t)store_recordings_bytes(r->app->store), "disk", disk,
                             "retention", "days", (json_int_t)r->app->cfg->retention_days,
                             "max_bytes", (json_int_t)r->app->cfg->retention_max_bytes));
}

void
sig_h_admin_recording_write_off(SigReq *r)
{
    gint64 id = sig_req_id(r, 0);
    if (!id)
        return;
    g_autoptr(GError) err = NULL;
    if (!store_recording_write_off(r->app->store, id, &err)) {
        sig_reply_store_error(r, err);
        return;
    }
    g_message("recording %" G_GINT64_FORMAT " written off by %s: its node is lost", id,
              r->user->username);
    sig_events_kick(r->app);
    sig_reply_json(r, 200,
                   json_pack("{s:I, s:s, s:s}", "id", (json_int_t)id, "state", "failed", "reason",
                             "node_lost"));
}
