/* Unit tests for media/proto.c: every message of media/proto.h survives
 * the channel (a SOCK_SEQPACKET socketpair) and the framed stdout of the
 * one-shot runs, field by field; and what a hostile peer sends reads as
 * defaults, never worse. */
#include <errno.h>
#include <glib-unix.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto.h"

/* One message of each type, in both directions, with every field. */
static GVariant *
sample(guint i)
{
    switch (i) {
    case 0:
        return media_msg("offer", "req", "u", 7, "session", "s", "ab12", "consultation", "x",
                         (gint64)42, "role", "s", "teacher", "dir", "s", "publish", "sdp", "s",
                         "v=0\r\n", NULL);
    case 1:
        return media_msg("trickle", "session", "s", "ab12", "mline", "u", 1, "candidate", "s",
                         "a=candidate:1 1 UDP 1 127.0.0.1 5000 typ host", NULL);
    case 2: return media_msg("close", "session", "s", "ab12", NULL);
    case 3: return media_msg("end", "consultation", "x", (gint64)42, NULL);
    case 4: return media_msg("ready", "pid", "x", (gint64)1234, NULL);
    case 5:
        return media_msg("answer", "req", "u", 7, "session", "s", "ab12", "sdp", "s", "v=0\r\n",
                         NULL);
    case 6:
        return media_msg("error", "req", "u", 7, "session", "s", "ab12", "code", "s", "no_codec",
                         "message", "s", "no VP8", NULL);
    case 7:
        return media_msg("joined", "consultation", "x", (gint64)42, "role", "s", "student",
                         "session", "s", "ab12", NULL);
    case 8:
        return media_msg("left", "consultation", "x", (gint64)42, "role", "s", "student", "session",
                         "s", "ab12", "reason", "s", "media-timeout", NULL);
    case 9:
        return media_msg("recording", "consultation", "x", (gint64)42, "role", "s", "teacher",
                         "file", "s", "teacher-2.webm", "state", "s", "ready", "reason", "s", "",
                         "started_at", "x", (gint64)1700000000000, "duration_ms", "x",
                         (gint64)61000, "size", "x", (gint64)123456, NULL);
    case 10:
        return media_msg("stats", "rooms", "u", 2, "sessions", "u", 4, "packets_in", "t",
                         (guint64)10, "packets_out", "t", (guint64)20, "packets_lost", "t",
                         (guint64)1, "keyframe_requests", "t", (guint64)3, "nacks_received", "t",
                         (guint64)5, "retransmitted", "t", (guint64)4, "nacks_sent", "t",
                         (guint64)6, "recovered", "t", (guint64)2, NULL);
    case 11:
        return media_msg("finalized", "state", "s", "ready", "duration_ms", "x", (gint64)5000,
                         "size", "x", (gint64)9999, "lead_ms", "x", (gint64)-3, "reason", "s", "",
                         NULL);
    case 12: return media_msg("progress", "percent", "i", 57, NULL);
    case 13:
        return media_msg("composed", "state", "s", "failed", "duration_ms", "x", (gint64)0, "size",
                         "x", (gint64)0, "reason", "s", "no inputs", NULL);
    default: return NULL;
    }
}
#define N_SAMPLES 14

typedef struct {
    GPtrArray *got;
    GMainLoop *loop;
    guint want;
} Sink;

static void
on_msg(MediaChan *ch, GVariant *msg, gpointer data)
{
    Sink *s = data;
    g_ptr_array_add(s->got, g_variant_ref(msg));
    if (s->got->len == s->want)
        g_main_loop_quit(s->loop);
}

static void
on_closed(MediaChan *ch, gpointer data)
{
}

static void
test_channel_round_trip(void)
{
    int sv[2];
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), ==, 0);
    Sink sink = {g_ptr_array_new_with_free_func((GDestroyNotify)g_variant_unref),
                 g_main_loop_new(NULL, FALSE), N_SAMPLES};
    MediaChan *tx = media_chan_new(sv[0], on_msg, on_closed, NULL);
    MediaChan *rx = media_chan_new(sv[1], on_msg, on_closed, &sink);
    for (guint i = 0; i < N_SAMPLES; i++)
        g_assert_true(media_chan_send(tx, sample(i)));
    g_main_loop_run(sink.loop);
    for (guint i = 0; i < N_SAMPLES; i++) {
        g_autoptr(GVariant) want = g_variant_ref_sink(sample(i));
        g_assert_true(g_variant_equal(want, sink.got->pdata[i]));
        g_assert_cmpstr(media_msg_op(sink.got->pdata[i]), ==, media_msg_op(want));
    }
    media_chan_free(tx);
    media_chan_free(rx);
    g_ptr_array_unref(sink.got);
    g_main_loop_unref(sink.loop);
}

static void
test_frames_round_trip(void)
{
    int p[2];
    g_assert_cmpint(pipe(p), ==, 0);
    for (guint i = 0; i < N_SAMPLES; i++)
        g_assert_true(media_frame_write(p[1], sample(i)));
    close(p[1]);
    g_autoptr(GByteArray) buf = g_byte_array_new();
    guint8 chunk[7]; /* small reads: frames arrive split */
    ssize_t n;
    guint i = 0;
    while ((n = read(p[0], chunk, sizeof chunk)) > 0) {
        g_byte_array_append(buf, chunk, (guint)n);
        GVariant *m;
        while ((m = media_frame_pop(buf))) {
            g_autoptr(GVariant) want = g_variant_ref_sink(sample(i++));
            g_assert_true(g_variant_equal(want, m));
            g_variant_unref(m);
        }
    }
    close(p[0]);
    g_assert_cmpuint(i, ==, N_SAMPLES);
    g_assert_cmpuint(buf->len, ==, 0);
}

static void
test_hostile_input(void)
{
    /* Garbage decodes as a dictionary with no op; a wrongly typed field
     * reads as the caller's default. */
    g_autoptr(GVariant) junk = media_msg_decode("\xff\x01garbage", 9);
    g_assert_cmpstr(media_msg_op(junk), ==, "");
    g_autoptr(GVariant) typed =
        g_variant_ref_sink(media_msg("joined", "consultation", "s", "not a number", NULL));
    gint64 c = 0;
    g_assert_false(g_variant_lookup(typed, "consultation", "x", &c));
    g_assert_cmpint(c, ==, 0);
    /* A frame length over the cap is not ours: the buffer is dropped. */
    g_autoptr(GByteArray) buf = g_byte_array_new();
    const guint8 huge[] = {0x7f, 0xff, 0xff, 0xff, 1, 2, 3};
    g_byte_array_append(buf, huge, sizeof huge);
    g_autoptr(GVariant) m = media_frame_pop(buf);
    g_assert_nonnull(m);
    g_assert_cmpstr(media_msg_op(m), ==, "");
    g_assert_cmpuint(buf->len, ==, 0);
    /* An incomplete frame waits for the rest. */
    const guint8 part[] = {0, 0, 0, 40, 1, 2};
    g_byte_array_append(buf, part, sizeof part);
    g_assert_null(media_frame_pop(buf));
    g_assert_cmpuint(buf->len, ==, sizeof part);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/proto/channel-round-trip", test_channel_round_trip);
    g_test_add_func("/proto/frames-round-trip", test_frames_round_trip);
    g_test_add_func("/proto/hostile-input", test_hostile_input);
    return g_test_run();
}
