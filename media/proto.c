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
    int sz = 4 * MEDIA_MSG_MAX;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    GSource *src = g_unix_fd_source_new(fd, G_IO_IN | G_IO_HUP | G_IO_ERR);
    g_source_set_callback(src, G_SOURCE_FUNC(on_ready), ch, NULL);
    ch->watch = g_source_attach(src, g_main_context_get_thread_default());
    g_source_unref(src);
    return ch;
}

gboolean
media_chan_send(MediaChan *ch, GVariant *msg)
{
    g_autoptr(GVariant) m = g_variant_ref_sink(msg);
    if (ch->closed)
        return FALSE;
    gsize len = g_variant_get_size(m);
    if (len > MEDIA_MSG_MAX) {
        g_warning("media channel: message of %" G_GSIZE_FORMAT " bytes dropped", len);
        return FALSE;
    }
    ssize_t n;
    do
        n = send(ch->fd, g_variant_get_data(m), len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n == (ssize_t)len;
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
