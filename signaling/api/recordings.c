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
#include "workers/uploads.h"

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
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:f, s:I, s:f}", "file", file, "role",
                          consultd_role_name(role), "stream",
                          consultd_stream_name(consultd_recording_stream(file)), "state",
                          consultd_rec_state_name(state), "duration_seconds", duration_ms / 1000.0,
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
            if (*x->store)
                json_object_set_new(j, "store", json_string(x->store));
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

/* Answers 416 for a range past the end of SIZE bytes. */
static void
reply_416(SigReq *r, gint64 size)
{
    g_autofree char *cr = g_strdup_printf("bytes */%" G_GINT64_FORMAT, size);
    sig_req_header(r, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
    sig_reply_error(r, 416, "range_not_satisfiable", "the file has %" G_GINT64_FORMAT " bytes",
                    size);
}

/* The byte range a replay asks of SIZE bytes (ETAG the file's): 1 with
 * *FROM..*TO, 0 for all of it, -1 unsatisfiable (as sig_parse_range). */
static int
wanted_range(SigReq *r, const char *etag, gint64 size, gint64 *from, gint64 *to)
{
    const char *range = sig_req_get_header(r, "Range");
    const char *if_range = sig_req_get_header(r, "If-Range");
    if (range && if_range && strcmp(if_range, etag))
        range = NULL; /* the client's copy is stale: send it all */
    *from = 0;
    *to = size - 1;
    sig_req_header(r, "Accept-Ranges", "bytes");
    sig_req_header(r, MHD_HTTP_HEADER_ETAG, etag);
    sig_req_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "private, max-age=300");
    return sig_parse_range(range, size, from, to);
}

static void
add_range_headers(struct MHD_Response *resp, int rr, gint64 from, gint64 to, gint64 size)
{
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "video/webm");
    if (rr > 0) {
        g_autofree char *cr = g_strdup_printf(
            "bytes %" G_GINT64_FORMAT "-%" G_GINT64_FORMAT "/%" G_GINT64_FORMAT, from, to, size);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
    }
}

/* Serves the file at PATH (this disk, or a dir: store's mount) for REC. */
static void
serve_path(SigReq *r, const StoreRecording *rec, const char *path)
{
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
    gint64 from, to;
    int rr = wanted_range(r, etag, size, &from, &to);
    if (rr < 0) {
        close(fd);
        reply_416(r, size);
        return;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_fd_at_offset64((uint64_t)(to - from + 1), fd, (uint64_t)from);
    if (!resp) {
        close(fd);
        sig_reply_error(r, 500, "internal", "cannot serve the file");
        return;
    }
    add_range_headers(resp, rr, from, to, size);
    sig_reply_response(r, rr > 0 ? 206 : 200, resp);
}

/* Proxy mode: a recording in an s3:// store streamed through this node.
 * A `consultd-objects get` child fetches the range from the store (its
 * Range passed on) and writes the bytes to a pipe; they are read
 * asynchronously into BUF, and MHD's reader takes them from there,
 * suspending the connection while BUF is empty (as the events stream
 * does).  The reply waits for the first bytes, so a store that is down
 * is a clean 502, not a truncated 206. */
#define PROXY_BUF_MAX (256 * 1024)

typedef struct {
    int ref;
    SigApp *app;
    SigReq *r; /* until the reply is queued */
    struct MHD_Connection *conn;
    GSubprocess *proc;
    GInputStream *in;
    GCancellable *cancel;
    GByteArray *buf;
    gboolean reading, eof, suspended;
    int rr;
    gint64 from, to, size, sent;
} Proxy;

static void
proxy_unref(Proxy *p)
{
    if (--p->ref > 0)
        return;
    if (p->proc)
        g_subprocess_force_exit(p->proc);
    g_clear_object(&p->proc);
    g_clear_object(&p->cancel);
    g_byte_array_unref(p->buf);
    g_free(p);
}

static void proxy_read(Proxy *p);

static ssize_t
proxy_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    Proxy *p = cls;
    if (p->buf->len == 0) {
        if (p->eof) /* short: the store stopped sending */
            return p->sent == p->to - p->from + 1 ? MHD_CONTENT_READER_END_OF_STREAM
                                                  : MHD_CONTENT_READER_END_WITH_ERROR;
        p->suspended = TRUE;
        MHD_suspend_connection(p->conn);
        proxy_read(p);
        return 0;
    }
    size_t n = MIN(max, p->buf->len);
    memcpy(buf, p->buf->data, n);
    g_byte_array_remove_range(p->buf, 0, (guint)n);
    p->sent += (gint64)n;
    proxy_read(p);
    return (ssize_t)n;
}

static void
proxy_gone(void *cls)
{
    Proxy *p = cls;
    g_cancellable_cancel(p->cancel);
    proxy_unref(p);
}

static void
proxy_reply(Proxy *p)
{
    SigReq *r = g_steal_pointer(&p->r);
    if (p->buf->len == 0) {
        sig_reply_error(r, 502, "store_unavailable",
                        "the recording store did not send the recording; retry");
    } else {
        p->ref++; /* the response's */
        struct MHD_Response *resp = MHD_create_response_from_callback(
            (uint64_t)(p->to - p->from + 1), 64 * 1024, proxy_reader, p, proxy_gone);
        add_range_headers(resp, p->rr, p->from, p->to, p->size);
        sig_reply_response(r, p->rr > 0 ? 206 : 200, resp);
    }
    sig_req_resume(r);
}

static void
proxy_read_done(GObject *src, GAsyncResult *res, gpointer data)
{
    Proxy *p = data;
    g_autoptr(GError) err = NULL;
    GBytes *b = g_input_stream_read_bytes_finish(G_INPUT_STREAM(src), res, &err);
    p->reading = FALSE;
    if (!g_cancellable_is_cancelled(p->cancel)) {
        if (!b || g_bytes_get_size(b) == 0)
            p->eof = TRUE;
        else
            g_byte_array_append(p->buf, g_bytes_get_data(b, NULL), (guint)g_bytes_get_size(b));
        if (p->r) {
            proxy_reply(p);
        } else if (p->suspended) {
            p->suspended = FALSE;
            MHD_resume_connection(p->conn);
            sig_http_kick(p->app->http);
        }
        if (!p->eof && p->buf->len < PROXY_BUF_MAX)
            proxy_read(p);
    }
    if (b)
        g_bytes_unref(b);
    proxy_unref(p);
}

static void
proxy_read(Proxy *p)
{
    if (p->reading || p->eof || p->buf->len >= PROXY_BUF_MAX ||
        g_cancellable_is_cancelled(p->cancel))
        return;
    p->reading = TRUE;
    p->ref++;
    g_input_stream_read_bytes_async(g_subprocess_get_stdout_pipe(p->proc), 64 * 1024,
                                    G_PRIORITY_DEFAULT, p->cancel, proxy_read_done, p);
}

static void
serve_proxied(SigReq *r, const StoreRecording *rec)
{
    g_autofree char *etag =
        g_strdup_printf("\"s%" G_GINT64_FORMAT "-%" G_GINT64_FORMAT "\"", rec->id, rec->size);
    gint64 from, to;
    int rr = wanted_range(r, etag, rec->size, &from, &to);
    if (rr < 0) {
        reply_416(r, rec->size);
        return;
    }
    g_autoptr(GError) err = NULL;
    GSubprocess *proc =
        sig_uploads_fetch(r->app, rec->store, rec->consultation_id, rec->file, from, to, &err);
    if (!proc) {
        sig_reply_error(r, 500, "internal", "cannot reach the recording store");
        return;
    }
    Proxy *p = g_new0(Proxy, 1);
    p->ref = 1;
    p->app = r->app;
    p->r = r;
    p->conn = r->conn;
    p->proc = proc;
    p->cancel = g_cancellable_new();
    p->buf = g_byte_array_new();
    p->rr = rr;
    p->from = from;
    p->to = to;
    p->size = rec->size;
    sig_req_suspend(r); /* proxy_reply() answers, at the first bytes */
    proxy_read(p);
    proxy_unref(p);
}

/* A ready recording lives on the disk of the node that made it ('' store),
 * in a dir: store every node mounts, or in an s3:// store: replayed from
 * there by a redirect to a presigned URL or through this node. */
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
    SigApp *app = r->app;
    if (g_str_has_prefix(rec->store, "dir:")) {
        g_autofree char *path = sig_uploads_dir_path(rec->store, c->id, rec->file);
        serve_path(r, rec, path);
        return;
    }
    if (g_str_has_prefix(rec->store, "s3:")) {
        if (!sig_uploads_redirects(app, rec->store)) {
            serve_proxied(r, rec);
            return;
        }
        g_autofree char *url = sig_uploads_presign(app, rec->store, c->id, rec->file);
        sig_req_header(r, "Location", url);
        sig_req_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        sig_reply_json(r, 302, json_pack("{s:s}", "location", url));
        return;
    }
    g_autofree char *path = sig_recordings_path(app, c->id, rec->file);
    if (store_shared(app->store) && *rec->node_id && strcmp(rec->node_id, app->cfg->node_id) &&
        !g_file_test(path, G_FILE_TEST_EXISTS)) {
        /* On another node's disk: the entry point routes its prefix there. */
        g_autofree char *loc = g_strdup_printf("/n/%s/recordings/%" G_GINT64_FORMAT "/%s",
                                               rec->node_id, c->id, rec->file);
        sig_req_header(r, "Location", loc);
        sig_reply_json(r, 307, json_pack("{s:s}", "location", loc));
        return;
    }
    serve_path(r, rec, path);
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
