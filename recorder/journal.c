/* journal.c - see journal.h. */
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The writer thread and the journals it serves. */
struct JrnWriter {
    GMutex lock;
    GCond cond;
    GList *list; /* Journal refs */
    gboolean kick;
    GThread *thread;
};

struct Journal {
    gint refs;
    JrnWriter *w; /* a reference */
    char *path;
    int fd;              /* -1 once closed */
    GMutex lock;         /* pending, closing, aborted, error, dropped */
    GByteArray *pending; /* appended, not yet written */
    gboolean closing, aborted, writing;
    GCond written; /* signalled when a write ends (jrn_abort waits) */
    char *error;
    guint64 dropped;
    JrnClosed closed;
    gpointer closed_data;
    GMainContext *ctx;
};

static void
writer_clear(gpointer data)
{
    JrnWriter *w = data;
    g_mutex_clear(&w->lock);
    g_cond_clear(&w->cond);
}

JrnWriter *
jrn_writer_new(void)
{
    JrnWriter *w = g_atomic_rc_box_new0(JrnWriter);
    g_mutex_init(&w->lock);
    g_cond_init(&w->cond);
    return w;
}

void
jrn_writer_unref(JrnWriter *w)
{
    if (w)
        g_atomic_rc_box_release_full(w, writer_clear);
}

static Journal *
jrn_ref(Journal *j)
{
    g_atomic_int_inc(&j->refs);
    return j;
}

void
jrn_unref(Journal *j)
{
    if (!g_atomic_int_dec_and_test(&j->refs))
        return;
    if (j->fd >= 0)
        close(j->fd);
    g_byte_array_unref(j->pending);
    g_mutex_clear(&j->lock);
    g_cond_clear(&j->written);
    if (j->ctx)
        g_main_context_unref(j->ctx);
    g_free(j->error);
    g_free(j->path);
    jrn_writer_unref(j->w);
    g_free(j);
}

/* Writes all of DATA; FALSE with errno set on failure. */
static gboolean
write_all(int fd, const guint8 *data, gsize len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return FALSE;
        if (n == 0) {
            errno = EIO;
            return FALSE;
        }
        data += n;
        len -= (gsize)n;
    }
    return TRUE;
}

typedef struct {
    Journal *j;
    char *error;
} ClosedCall;

static gboolean
closed_on_loop(gpointer data)
{
    ClosedCall *c = data;
    g_mutex_lock(&c->j->lock);
    gboolean aborted = c->j->aborted; /* jrn_abort() ran first: no callback */
    g_mutex_unlock(&c->j->lock);
    if (!aborted)
        c->j->closed(c->j->closed_data, c->error);
    jrn_unref(c->j);
    g_free(c->error);
    g_free(c);
    return G_SOURCE_REMOVE;
}

/* Writer thread: writes out what J holds; TRUE when J is done with (closed
 * or aborted) and leaves the writer's list. */
static gboolean
flush_one(Journal *j)
{
    g_mutex_lock(&j->lock);
    if (j->aborted) {
        g_mutex_unlock(&j->lock);
        return TRUE;
    }
    GByteArray *out = j->pending;
    j->pending = g_byte_array_sized_new(out->len ? out->len : 4096);
    gboolean closing = j->closing;
    j->writing = TRUE;
    g_mutex_unlock(&j->lock);

    const char *err = NULL;
    if (out->len && !write_all(j->fd, out->data, out->len))
        err = g_strerror(errno);
    g_byte_array_unref(out);

    g_mutex_lock(&j->lock);
    j->writing = FALSE;
    g_cond_broadcast(&j->written);
    if (err && !j->error) {
        j->error = g_strdup(err);
        g_warning("recording %s: %s (the recording stops here; the consultation goes on)", j->path,
                  err);
    }
    gboolean done = closing && !j->aborted;
    if (done) {
        close(j->fd);
        j->fd = -1;
    }
    char *error = g_strdup(j->error);
    g_mutex_unlock(&j->lock);
    if (!done) {
        g_free(error);
        return FALSE;
    }
    ClosedCall *c = g_new0(ClosedCall, 1);
    c->j = jrn_ref(j);
    c->error = error;
    g_main_context_invoke(j->ctx, closed_on_loop, c);
    return TRUE;
}

static gpointer
ref_copy(gconstpointer j, gpointer unused)
{
    return jrn_ref((Journal *)j);
}

/* The writer thread: holds a reference to W while it runs. */
static gpointer
writer_main(gpointer data)
{
    JrnWriter *w = data;
    for (;;) {
        g_mutex_lock(&w->lock);
        gint64 until = g_get_monotonic_time() + JRN_FLUSH_MS * G_TIME_SPAN_MILLISECOND;
        while (!w->kick)
            if (!g_cond_wait_until(&w->cond, &w->lock, until))
                break;
        w->kick = FALSE;
        GList *all = g_list_copy_deep(w->list, ref_copy, NULL);
        g_mutex_unlock(&w->lock);
        for (GList *l = all; l; l = l->next) {
            if (!flush_one(l->data))
                continue;
            g_mutex_lock(&w->lock);
            GList *link = g_list_find(w->list, l->data);
            if (link) {
                w->list = g_list_delete_link(w->list, link);
                jrn_unref(l->data); /* the list's */
            }
            g_mutex_unlock(&w->lock);
        }
        g_list_free_full(all, (GDestroyNotify)jrn_unref);
        /* Nothing left to write: the thread ends (the next jrn_open()
         * starts another), so an idle worker keeps no thread for this. */
        g_mutex_lock(&w->lock);
        if (!w->list) {
            g_thread_unref(w->thread);
            w->thread = NULL;
            g_mutex_unlock(&w->lock);
            jrn_writer_unref(w);
            return NULL;
        }
        g_mutex_unlock(&w->lock);
    }
}

static void
kick(JrnWriter *w)
{
    g_mutex_lock(&w->lock);
    w->kick = TRUE;
    g_cond_signal(&w->cond);
    g_mutex_unlock(&w->lock);
}

Journal *
jrn_open(JrnWriter *w, const char *path, GError **error)
{
    int fd = g_open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0 || !write_all(fd, (const guint8 *)JRN_MAGIC, JRN_MAGIC_LEN)) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(e), "cannot write %s: %s", path,
                    g_strerror(e));
        return NULL;
    }
    Journal *j = g_new0(Journal, 1);
    j->refs = 1;
    j->path = g_strdup(path);
    j->fd = fd;
    j->pending = g_byte_array_sized_new(64 * 1024);
    g_mutex_init(&j->lock);
    g_cond_init(&j->written);
    j->w = g_atomic_rc_box_acquire(w);
    g_mutex_lock(&w->lock);
    if (!w->thread)
        w->thread = g_thread_new("rec-writer", writer_main, g_atomic_rc_box_acquire(w));
    w->list = g_list_prepend(w->list, jrn_ref(j));
    g_mutex_unlock(&w->lock);
    return j;
}

gboolean
jrn_append(Journal *j, guint8 type, guint8 track, gint64 pts, const guint8 *data, gsize len)
{
    if (len > G_MAXUINT16)
        return FALSE;
    guint8 h[JRN_RECORD_HEADER] = {type, track, (guint8)(len >> 8), (guint8)len};
    guint64 p = (guint64)pts;
    for (int i = 0; i < 8; i++)
        h[4 + i] = (guint8)(p >> (56 - 8 * i));
    gboolean ok, wake = FALSE;
    g_mutex_lock(&j->lock);
    ok = !j->closing && !j->aborted && !j->error &&
         j->pending->len + sizeof h + len <= JRN_PENDING_MAX;
    if (ok) {
        g_byte_array_append(j->pending, h, sizeof h);
        g_byte_array_append(j->pending, data, (guint)len);
        wake = j->pending->len >= JRN_FLUSH_BYTES &&
               j->pending->len - sizeof h - len < JRN_FLUSH_BYTES;
    } else if (!j->closing && !j->aborted && !j->error && j->dropped++ == 0) {
        g_warning("recording %s: the disk is not keeping up; dropping packets", j->path);
    }
    g_mutex_unlock(&j->lock);
    if (wake)
        kick(j->w);
    return ok;
}

void
jrn_close(Journal *j, JrnClosed closed, gpointer data)
{
    g_mutex_lock(&j->lock);
    j->closing = TRUE;
    j->closed = closed;
    j->closed_data = data;
    j->ctx = g_main_context_ref_thread_default();
    g_mutex_unlock(&j->lock);
    kick(j->w);
}

void
jrn_abort(Journal *j, guint timeout_ms)
{
    gint64 until = g_get_monotonic_time() + (gint64)timeout_ms * G_TIME_SPAN_MILLISECOND;
    g_mutex_lock(&j->lock);
    j->aborted = TRUE;
    while (j->writing)
        if (!g_cond_wait_until(&j->written, &j->lock, until))
            break;
    if (!j->writing && j->fd >= 0) {
        if (j->pending->len && !j->error)
            write_all(j->fd, j->pending->data, j->pending->len);
        g_byte_array_set_size(j->pending, 0);
        close(j->fd);
        j->fd = -1;
    }
    g_mutex_unlock(&j->lock);
    kick(j->w); /* the writer drops it from its list */
}

guint64
jrn_dropped(Journal *j)
{
    g_mutex_lock(&j->lock);
    guint64 n = j->dropped;
    g_mutex_unlock(&j->lock);
    return n;
}

/* ---------------------------------------------------------------- reading */

gboolean
jrn_reader_open(JrnReader *r, const char *path)
{
    memset(r, 0, sizeof *r);
    r->f = g_fopen(path, "rb");
    char magic[JRN_MAGIC_LEN];
    if (!r->f || fread(magic, 1, sizeof magic, r->f) != sizeof magic ||
        memcmp(magic, JRN_MAGIC, JRN_MAGIC_LEN) != 0) {
        if (r->f)
            fclose(r->f);
        r->f = NULL;
        return FALSE;
    }
    r->cap = G_MAXUINT16 + 1;
    r->buf = g_malloc(r->cap);
    return TRUE;
}

gboolean
jrn_next(JrnReader *r, guint8 *type, guint8 *track, gint64 *pts, const guint8 **data, gsize *len)
{
    guint8 h[JRN_RECORD_HEADER];
    if (!r->f || fread(h, 1, sizeof h, r->f) != sizeof h)
        return FALSE;
    if (h[0] != JRN_CAPS && h[0] != JRN_RTP)
        return FALSE;
    gsize n = ((gsize)h[2] << 8) | h[3];
    if (fread(r->buf, 1, n, r->f) != n)
        return FALSE;
    guint64 p = 0;
    for (int i = 0; i < 8; i++)
        p = (p << 8) | h[4 + i];
    *type = h[0];
    *track = h[1];
    *pts = (gint64)p;
    *data = r->buf;
    *len = n;
    return TRUE;
}

void
jrn_reader_close(JrnReader *r)
{
    if (r->f)
        fclose(r->f);
    g_free(r->buf);
    memset(r, 0, sizeof *r);
}

gboolean
jrn_is_journal(const char *path)
{
    JrnReader r;
    gboolean yes = jrn_reader_open(&r, path);
    jrn_reader_close(&r);
    return yes;
}
