/* Unit tests for recorder/journal.c and the journal -> WebM finalizing in
 * recorder/recorder.c: real VP8 and Opus RTP packets (encoded here by
 * GStreamer), written through the writer thread with the disorder a network
 * makes (reordering, duplicates, a sender's burst at the start, a file cut
 * in the middle of a record), then finalized and decoded back. */
#include <glib/gstdio.h>
#include <gst/app/gstappsink.h>
#include <gst/gst.h>
#include <string.h>

#include "journal.h"
#include "recorder.h"
#include "../tmpdir.h"

#define FRAMES 90 /* 3 s of 30 fps video */
#define AUDIO 150 /* 3 s of 20 ms Opus packets */

typedef struct {
    int track;
    gint64 pts; /* media time */
    GBytes *data;
} Pkt;

typedef struct {
    char *caps[2];
    GPtrArray *pkts; /* Pkt, in media time order */
    char *dir;
} Fx;

static void
pull_all(GstElement *pipe, const char *name, int track, Fx *f)
{
    GstElement *sink = gst_bin_get_by_name(GST_BIN(pipe), name);
    GstSample *s;
    while ((s = gst_app_sink_pull_sample(GST_APP_SINK(sink)))) {
        if (!f->caps[track])
            f->caps[track] = gst_caps_to_string(gst_sample_get_caps(s));
        GstBuffer *b = gst_sample_get_buffer(s);
        GstMapInfo mi;
        gst_buffer_map(b, &mi, GST_MAP_READ);
        Pkt *p = g_new0(Pkt, 1);
        p->track = track;
        p->pts = (gint64)GST_BUFFER_PTS(b);
        p->data = g_bytes_new(mi.data, mi.size);
        gst_buffer_unmap(b, &mi);
        g_ptr_array_add(f->pkts, p);
        gst_sample_unref(s);
    }
    gst_object_unref(sink);
}

static gint
by_pts(gconstpointer a, gconstpointer b)
{
    const Pkt *x = *(Pkt *const *)a, *y = *(Pkt *const *)b;
    return x->pts < y->pts ? -1 : x->pts > y->pts;
}

static void
pkt_free(gpointer data)
{
    Pkt *p = data;
    g_bytes_unref(p->data);
    g_free(p);
}

static void
setup(Fx *f, gconstpointer data)
{
    f->dir = g_dir_make_tmp("journal-test-XXXXXX", NULL);
    f->pkts = g_ptr_array_new_with_free_func(pkt_free);
    g_autofree char *desc = g_strdup_printf(
        "videotestsrc num-buffers=%d ! video/x-raw,width=320,height=240,framerate=30/1 "
        "! vp8enc deadline=1 keyframe-max-dist=30 ! rtpvp8pay mtu=500 ! appsink name=v sync=false "
        "audiotestsrc num-buffers=%d samplesperbuffer=960 ! audio/x-raw,rate=48000,channels=2 "
        "! opusenc ! rtpopuspay ! appsink name=a sync=false",
        FRAMES, AUDIO);
    GstElement *pipe = gst_parse_launch(desc, NULL);
    g_assert_nonnull(pipe);
    gst_element_set_state(pipe, GST_STATE_PLAYING);
    pull_all(pipe, "v", 0, f);
    pull_all(pipe, "a", 1, f);
    gst_element_set_state(pipe, GST_STATE_NULL);
    gst_object_unref(pipe);
    g_ptr_array_sort(f->pkts, by_pts);
    g_assert_cmpuint(f->pkts->len, >, FRAMES + AUDIO); /* several packets per frame */
}

static void
teardown(Fx *f, gconstpointer data)
{
    tmpdir_remove(f->dir);
    g_free(f->caps[0]);
    g_free(f->caps[1]);
    g_ptr_array_unref(f->pkts);
}

static void
on_closed(gpointer data, const char *error)
{
    g_assert_null(error);
    *(gboolean *)data = TRUE;
}

/* Writes the packets in ORDER (indexes into f->pkts) with their ARRIVAL
 * times through the writer thread, and waits for the file to be closed. */
static char *
write_journal(Fx *f, const guint *order, const gint64 *arrival, guint n)
{
    char *path = g_build_filename(f->dir, "t.webm", NULL);
    /* The writer is dropped at once: the journal keeps it as long as it
     * needs it. */
    JrnWriter *w = jrn_writer_new();
    Journal *j = jrn_open(w, path, NULL);
    jrn_writer_unref(w);
    g_assert_nonnull(j);
    for (int k = 0; k < 2; k++)
        g_assert_true(
            jrn_append(j, JRN_CAPS, k, 0, (const guint8 *)f->caps[k], strlen(f->caps[k])));
    for (guint i = 0; i < n; i++) {
        Pkt *p = f->pkts->pdata[order[i]];
        gsize len;
        const guint8 *d = g_bytes_get_data(p->data, &len);
        g_assert_true(jrn_append(j, JRN_RTP, p->track, arrival[i], d, len));
    }
    gboolean closed = FALSE;
    jrn_close(j, on_closed, &closed);
    while (!closed)
        g_main_context_iteration(NULL, TRUE);
    jrn_unref(j);
    return path;
}

typedef struct {
    guint video, audio, backwards;
    gint64 first, last, max_step;
    gint64 first_audio;
} Decoded;

/* Decodes PATH; counts frames, checks video never goes back in time. */
static Decoded
decode(const char *path)
{
    g_autofree char *desc = g_strdup_printf(
        "filesrc location=\"%s\" ! matroskademux name=d d.video_0 ! queue ! vp8dec "
        "! appsink name=v sync=false d.audio_0 ! queue ! opusdec ! appsink name=a sync=false",
        path);
    GstElement *pipe = gst_parse_launch(desc, NULL);
    g_assert_nonnull(pipe);
    gst_element_set_state(pipe, GST_STATE_PLAYING);
    Decoded r = {0, 0, 0, -1, -1, 0, -1};
    GstElement *v = gst_bin_get_by_name(GST_BIN(pipe), "v");
    GstElement *a = gst_bin_get_by_name(GST_BIN(pipe), "a");
    GstSample *s;
    /* Pull alternately: the demuxer feeds both through bounded queues. */
    gboolean vdone = FALSE, adone = FALSE;
    while (!vdone || !adone) {
        if (!vdone && (s = gst_app_sink_try_pull_sample(GST_APP_SINK(v), 10 * GST_MSECOND))) {
            gint64 pts = (gint64)GST_BUFFER_PTS(gst_sample_get_buffer(s));
            if (r.video && pts <= r.last)
                r.backwards++;
            if (r.video)
                r.max_step = MAX(r.max_step, pts - r.last);
            if (r.first < 0)
                r.first = pts;
            r.last = pts;
            r.video++;
            gst_sample_unref(s);
        }
        vdone = vdone || gst_app_sink_is_eos(GST_APP_SINK(v));
        if (!adone && (s = gst_app_sink_try_pull_sample(GST_APP_SINK(a), 10 * GST_MSECOND))) {
            if (r.first_audio < 0)
                r.first_audio = (gint64)GST_BUFFER_PTS(gst_sample_get_buffer(s));
            r.audio++;
            gst_sample_unref(s);
        }
        adone = adone || gst_app_sink_is_eos(GST_APP_SINK(a));
    }
    gst_object_unref(v);
    gst_object_unref(a);
    gst_element_set_state(pipe, GST_STATE_NULL);
    gst_object_unref(pipe);
    return r;
}

static const char *
finalize(const char *path, gint64 *duration, gint64 *lead)
{
    g_autofree char *out = g_strconcat(path, ".final", NULL);
    gint64 size = 0;
    g_autoptr(GError) err = NULL;
    ConsultdRecState state = rec_finalize_file(path, out, duration, &size, lead, &err);
    if (err)
        g_test_message("finalize: %s", err->message);
    if (state == CONSULTD_REC_READY)
        g_assert_cmpint(g_rename(out, path), ==, 0);
    return consultd_rec_state_name(state);
}

/* Network disorder: neighbouring packets swapped, every 7th sent twice,
 * arrival jittered by up to 15 ms.  Every frame comes back, in order. */
static void
test_reordered_and_duplicated(Fx *f, gconstpointer data)
{
    guint n = f->pkts->len;
    g_autofree guint *order = g_new(guint, 2 * n);
    g_autofree gint64 *arrival = g_new(gint64, 2 * n);
    guint m = 0;
    GRand *rnd = g_rand_new_with_seed(7);
    for (guint i = 0; i < n; i++) {
        guint k = (i % 4 == 1 && i + 1 < n) ? i + 1 : (i % 4 == 2) ? i - 1 : i;
        Pkt *p = f->pkts->pdata[k];
        order[m] = k;
        arrival[m++] = p->pts + 20 * GST_MSECOND + g_rand_int_range(rnd, 0, 15) * GST_MSECOND;
        if (i % 7 == 3) {
            order[m] = k;
            arrival[m] = arrival[m - 1];
            m++;
        }
    }
    g_rand_free(rnd);
    g_autofree char *path = write_journal(f, order, arrival, m);
    gint64 duration = 0, lead = -1;
    g_assert_cmpstr(finalize(path, &duration, &lead), ==, "ready");
    g_assert_cmpint(ABS(duration - 3000), <, 100);
    g_assert_cmpint(ABS(lead + 20), <=, 3); /* the first frame came 20 ms after the journal's 0 */
    Decoded d = decode(path);
    g_assert_cmpuint(d.video, ==, FRAMES);
    g_assert_cmpuint(d.audio, >=, AUDIO - 2); /* the encoder's lookahead */
    g_assert_cmpuint(d.backwards, ==, 0);
    g_assert_cmpint(d.max_step, <, 40 * GST_MSECOND); /* the sender's spacing, not the jitter's */
}

/* Writes every packet in media order, arriving when ARRIVE says. */
static char *
write_in_order(Fx *f, gint64 (*arrive)(int track, gint64 media))
{
    guint n = f->pkts->len;
    g_autofree guint *order = g_new(guint, n);
    g_autofree gint64 *arrival = g_new(gint64, n);
    for (guint i = 0; i < n; i++) {
        Pkt *p = f->pkts->pdata[i];
        order[i] = i;
        arrival[i] = arrive(p->track, p->pts);
    }
    return write_journal(f, order, arrival, n);
}

static gint64 burst; /* test_burst_at_start(): how much was held back */

/* The first BURST held back and sent in one burst at 10 ms. */
static gint64
burst_arrival(int track, gint64 media)
{
    return MAX(media, burst) - burst + 10 * GST_MSECOND;
}

static gint64
on_time(int track, gint64 media)
{
    return media;
}

/* The camera's first frame 300 ms after the microphone's first packet. */
static gint64
video_late(int track, gint64 media)
{
    return track == 0 ? media + 300 * GST_MSECOND : media;
}

/* A sender that held its first DATA ms back and sent them in one burst:
 * the frames keep their spacing, the file keeps its length and starts with
 * the picture, and the lead says how far before the first arrival its
 * content begins.  Over a second, such a burst once passed for a sender
 * that restarted its clock: its frames were put at their arrival, the
 * video began 1 s into the file, and Chromium could not seek in it. */
static void
test_burst_at_start(Fx *f, gconstpointer data)
{
    gint ms = GPOINTER_TO_INT(data);
    burst = ms * GST_MSECOND;
    g_autofree char *path = write_in_order(f, burst_arrival);
    gint64 duration = 0, lead = 0;
    g_assert_cmpstr(finalize(path, &duration, &lead), ==, "ready");
    g_assert_cmpint(ABS(duration - 3000), <, 100);
    g_assert_cmpint(ABS(lead - (ms - 10)), <=, 40);
    Decoded d = decode(path);
    g_assert_cmpint(d.first, ==, 0);
    g_assert_cmpint(d.first_audio, >=, 0);
    g_assert_cmpuint(d.video, ==, FRAMES);
    g_assert_cmpuint(d.backwards, ==, 0);
    g_assert_cmpint(d.max_step, <, 40 * GST_MSECOND);
}

/* Sound that came before the first picture is not in the file: the file
 * starts with the picture at 0 (Chromium's <video>, given sound first,
 * stalled at 0 and never finished a seek), still in step with the sound;
 * the lead says the file starts 300 ms after the first arrival. */
static void
test_audio_before_video(Fx *f, gconstpointer data)
{
    g_autofree char *path = write_in_order(f, video_late);
    gint64 duration = 0, lead = 0;
    g_assert_cmpstr(finalize(path, &duration, &lead), ==, "ready");
    g_assert_cmpint(ABS(lead + 300), <=, 20);
    Decoded d = decode(path);
    g_assert_cmpuint(d.video, ==, FRAMES);
    g_assert_cmpint(d.first, ==, 0);
    g_assert_cmpint(d.first_audio, >=, 0);
    g_assert_cmpint(d.first_audio, <, 20 * GST_MSECOND);
    /* 300 ms of 20 ms packets dropped, give or take one, and the lookahead */
    g_assert_cmpuint(d.audio, >=, AUDIO - 15 - 3);
    g_assert_cmpuint(d.audio, <=, AUDIO - 15 + 1);
}

/* A crash cut the file in the middle of a record: what came before is a
 * playable recording; a file with only a header is empty. */
static void
test_cut_short(Fx *f, gconstpointer data)
{
    g_autofree char *path = write_in_order(f, on_time);
    g_autofree char *bytes = NULL;
    gsize len = 0;
    g_assert_true(g_file_get_contents(path, &bytes, &len, NULL));
    g_assert_true(g_file_set_contents(path, bytes, (gssize)(len * 2 / 3 + 5), NULL));
    gint64 duration = 0, lead = 0;
    g_assert_cmpstr(finalize(path, &duration, &lead), ==, "ready");
    g_assert_cmpint(duration, >, 1000);
    g_assert_cmpint(duration, <, 2600);
    Decoded d = decode(path);
    g_assert_cmpuint(d.video, >, FRAMES / 3);
    g_assert_cmpuint(d.video, <, FRAMES);

    g_assert_true(g_file_set_contents(path, JRN_MAGIC, JRN_MAGIC_LEN, NULL));
    g_assert_cmpstr(finalize(path, &duration, &lead), ==, "empty");
}

int
main(int argc, char **argv)
{
    gst_init(&argc, &argv);
    g_test_init(&argc, &argv, NULL);
    g_test_add("/journal/reordered-and-duplicated", Fx, NULL, setup, test_reordered_and_duplicated,
               teardown);
    g_test_add("/journal/burst-at-start", Fx, GINT_TO_POINTER(500), setup, test_burst_at_start,
               teardown);
    g_test_add("/journal/long-burst-at-start", Fx, GINT_TO_POINTER(1500), setup,
               test_burst_at_start, teardown);
    g_test_add("/journal/audio-before-video", Fx, NULL, setup, test_audio_before_video, teardown);
    g_test_add("/journal/cut-short", Fx, NULL, setup, test_cut_short, teardown);
    return g_test_run();
}
