/* proto.c - see proto.h. */
#include "proto.h"

#include <errno.h>
#include <glib-unix.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct MediaChan {
    int fd;
    guint watch;
    MediaChanFunc on_msg;
    MediaChanClosed on_closed;
    gpointer data;
    guint8 *buf;
    gboolean closed;
    /* Sending never blocks: what the socket does not take waits here, in
     * order, and goes when the socket is writable again. */
    GQueue out; /* GBytes *, whole messages */
    gsize out_bytes;
    GSource *out_watch;   /* while OUT is not empty */
    gint64 blocked_since; /* monotonic us the first waiting message was queued */
    gint64 last_received; /* monotonic us */
    gboolean overflowed;
};

static void
chan_close(MediaChan *ch)
{
    if (ch->closed)
        return;
    ch->closed = TRUE;
    ch->watch = 0; /* the callback returns G_SOURCE_REMOVE */
    if (ch->on_closed)
        ch->on_closed(ch, ch->data);
}

GVariant *
media_msg_decode(const void *data, gsize len)
{
    g_autoptr(GBytes) bytes = g_bytes_new(data, len);
    g_autoptr(GVariant) v =
        g_variant_ref_sink(g_variant_new_from_bytes(G_VARIANT_TYPE_VARDICT, bytes, FALSE));
    /* Serialized data from another process: normalize before use, so a
     * malformed message reads as defaults rather than anything worse. */
    return g_variant_get_normal_form(v);
}

static gboolean
on_ready(int fd, GIOCondition cond, gpointer data)
{
    MediaChan *ch = data;
    /* Read everything queued, one message per packet. */
    for (;;) {
        ssize_t n = recv(fd, ch->buf, MEDIA_MSG_MAX, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return G_SOURCE_CONTINUE;
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            chan_close(ch);
            return G_SOURCE_REMOVE;
        }
        ch->last_received = g_get_monotonic_time();
        g_autoptr(GVariant) msg = media_msg_decode(ch->buf, (gsize)n);
        ch->on_msg(ch, msg, ch->data);
        if (ch->closed)
            return G_SOURCE_REMOVE;
    }
}

MediaChan *
media_chan_new(int fd, MediaChanFunc on_msg, MediaChanClosed on_closed, gpointer data)
{
    MediaChan *ch = g_new0(MediaChan, 1);
    ch->fd = fd;
    ch->on_msg = on_msg;
    ch->on_closed = on_closed;
    ch->data = data;
    ch->buf = g_malloc(MEDIA_MSG_MAX);
    g_queue_init(&ch->out);
    ch->last_received = g_get_monotonic_time();
    int sz = 4 * MEDIA_MSG_MAX;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    GSource *src = g_unix_fd_source_new(fd, G_IO_IN | G_IO_HUP | G_IO_ERR);
    g_source_set_callback(src, G_SOURCE_FUNC(on_ready), ch, NULL);
    ch->watch = g_source_attach(src, g_main_context_get_thread_default());
    g_source_unref(src);
    return ch;
}

/* Sends DATA as one packet without waiting: 1 sent, 0 the socket is full,
 * -1 the peer is gone. */
static int
try_send(MediaChan *ch, const void *data, gsize len)
{
    ssize_t n;
    do
        n = send(ch->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n == (ssize_t)len)
        return 1;
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
}

static gboolean
on_writable(int fd, GIOCondition cond, gpointer data)
{
    MediaChan *ch = data;
    GBytes *b;
    while ((b = g_queue_peek_head(&ch->out))) {
        gsize len;
        const void *p = g_bytes_get_data(b, &len);
        int r = try_send(ch, p, len);
        if (r == 0)
            return G_SOURCE_CONTINUE;
        g_queue_pop_head(&ch->out);
        ch->out_bytes -= len;
        g_bytes_unref(b);
        if (r < 0)
            break; /* gone: the read side sees EOF and closes */
    }
    ch->blocked_since = 0;
    g_clear_pointer(&ch->out_watch, g_source_unref); /* G_SOURCE_REMOVE destroys it */
    return G_SOURCE_REMOVE;
}

gboolean
media_chan_send(MediaChan *ch, GVariant *msg)
{
    g_autoptr(GVariant) m = g_variant_ref_sink(msg);
    if (ch->closed || ch->overflowed)
        return FALSE;
    gsize len = g_variant_get_size(m);
    if (len > MEDIA_MSG_MAX) {
        g_warning("media channel: message of %" G_GSIZE_FORMAT " bytes dropped", len);
        return FALSE;
    }
    if (g_queue_is_empty(&ch->out)) {
        int r = try_send(ch, g_variant_get_data(m), len);
        if (r != 0)
            return r > 0;
    }
    if (ch->out_bytes + len > MEDIA_CHAN_QUEUE_MAX) {
        /* The peer has not read for a long while: it is stuck, or worse.
         * Nothing more is queued; the owner sees media_chan_overflowed(). */
        ch->overflowed = TRUE;
        return FALSE;
    }
    g_queue_push_tail(&ch->out, g_variant_get_data_as_bytes(m));
    ch->out_bytes += len;
    if (!ch->out_watch) {
        ch->blocked_since = g_get_monotonic_time();
        ch->out_watch = g_unix_fd_source_new(ch->fd, G_IO_OUT);
        g_source_set_callback(ch->out_watch, G_SOURCE_FUNC(on_writable), ch, NULL);
        g_source_attach(ch->out_watch, g_main_context_get_thread_default());
    }
    return TRUE;
}

gint64
media_chan_blocked_since(MediaChan *ch)
{
    return ch->blocked_since;
}

gint64
media_chan_last_received(MediaChan *ch)
{
    return ch->last_received;
}

gboolean
media_chan_overflowed(MediaChan *ch)
{
    return ch->overflowed;
}

void
media_chan_free(MediaChan *ch)
{
    if (!ch)
        return;
    if (ch->watch) {
        GSource *s =
            g_main_context_find_source_by_id(g_main_context_get_thread_default(), ch->watch);
        if (s)
            g_source_destroy(s);
    }
    if (ch->out_watch) {
        g_source_destroy(ch->out_watch);
        g_source_unref(ch->out_watch);
    }
    g_queue_clear_full(&ch->out, (GDestroyNotify)g_bytes_unref);
    close(ch->fd);
    g_free(ch->buf);
    g_free(ch);
}

GVariant *
media_msg(const char *op, const char *first_key, ...)
{
    GVariantBuilder b;
    g_variant_builder_init(&b, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add(&b, "{sv}", "op", g_variant_new_string(op));
    va_list ap;
    va_start(ap, first_key);
    for (const char *key = first_key; key; key = va_arg(ap, const char *)) {
        const char *type = va_arg(ap, const char *);
        GVariant *v = g_variant_new_va(type, NULL, &ap);
        g_variant_builder_add(&b, "{sv}", key, v);
    }
    va_end(ap);
    return g_variant_builder_end(&b);
}

const char *
media_msg_op(GVariant *msg)
{
    const char *op = "";
    g_variant_lookup(msg, "op", "&s", &op);
    return op;
}

/* ---------------------------------------------------------------- frames */

gboolean
media_frame_write(int fd, GVariant *msg)
{
    g_autoptr(GVariant) v = g_variant_ref_sink(msg);
    gsize len = g_variant_get_size(v);
    if (len > MEDIA_MSG_MAX)
        return FALSE;
    /* Copied, not g_variant_store()d at frame + 4: GVariant serializes
     * only into suitably aligned memory. */
    g_autoptr(GBytes) data = g_variant_get_data_as_bytes(v);
    g_autofree guint8 *frame = g_malloc(4 + len);
    guint32 be = GUINT32_TO_BE((guint32)len);
    memcpy(frame, &be, 4);
    if (len)
        memcpy(frame + 4, g_bytes_get_data(data, NULL), len);
    for (gsize off = 0; off < 4 + len;) {
        ssize_t n = write(fd, frame + off, 4 + len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return FALSE;
        off += (gsize)n;
    }
    return TRUE;
}

GVariant *
media_frame_pop(GByteArray *buf)
{
    if (buf->len < 4)
        return NULL;
    guint32 be;
    memcpy(&be, buf->data, 4);
    gsize len = GUINT32_FROM_BE(be);
    if (len > MEDIA_MSG_MAX) {
        /* Not a frame of ours: nothing after it can be trusted either. */
        g_byte_array_set_size(buf, 0);
        return media_msg_decode("", 0);
    }
    if (buf->len < 4 + len)
        return NULL;
    GVariant *msg = media_msg_decode(buf->data + 4, len);
    g_byte_array_remove_range(buf, 0, (guint)(4 + len));
    return msg;
}
