/* recorder.c - see recorder.h.
 *
 * Timestamps: buffers arrive stamped with the room pipeline's running time.
 * The first video keyframe fixes the recording's base; both streams are
 * rebased on it, so the file starts at 0 with a keyframe and audio and video
 * stay in step.  Buffers from before the base are dropped.  (A publisher
 * without video is therefore not recorded: see docs/recording.md.)
 *
 * Threads: appsink callbacks run on the room's streaming threads and touch
 * only the appsrcs and atomics.  Everything else (EOS wait, finalizing
 * hand-off, DONE) happens on the main loop; the remux itself runs on a GTask
 * thread so a long file never stalls the worker's control plane.
 */
#include "recorder.h"

#include "tap.h"

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <gst/app/gstappsink.h>
#include <gst/app/gstappsrc.h>
#include <gst/pbutils/pbutils.h>
#include <gst/rtp/gstrtpbuffer.h>
#include <gst/video/video.h>
#include <string.h>

enum { KIND_VIDEO, KIND_AUDIO, N_KINDS };

typedef struct {
    RecRecording *rec;
    int kind;
    GstElement *tee;
    RecTap tap;          /* in the room pipeline */
    GstElement *appsrc;  /* in the recording pipeline */
    gint caps_set;
} Branch;

struct RecRecording {
    char *path;
    GstElement *room_pipe;
    GstElement *pipe;
    Branch br[N_KINDS];
    gint64 base;       /* first PTS (ns), -1 until set; atomic */
    gint64 started_at; /* wall ms of the first buffer; atomic */
    guint bus_watch, eos_timer;
    RecDone done;
    gpointer done_data;
    gboolean stopping;
    char *error;
};

const char *
rec_path(RecRecording *rec)
{
    return rec->path;
}

gint64
rec_started_at(RecRecording *rec)
{
    return __atomic_load_n(&rec->started_at, __ATOMIC_ACQUIRE);
}

/* TRUE if RTP packet BUF starts a VP8 keyframe (RFC 7741: S=1, PID=0 and
 * the P bit of the VP8 payload header clear). */
static gboolean
vp8_keyframe_start(GstBuffer *buf)
{
    GstRTPBuffer rtp = GST_RTP_BUFFER_INIT;
    if (!gst_rtp_buffer_map(buf, GST_MAP_READ, &rtp))
        return FALSE;
    const guint8 *p = gst_rtp_buffer_get_payload(&rtp);
    guint n = gst_rtp_buffer_get_payload_len(&rtp);
    gboolean key = FALSE;
    if (n >= 1 && (p[0] & 0x10) && (p[0] & 0x07) == 0) {
        guint off = 1;
        if (p[0] & 0x80) { /* X: extension byte */
            guint8 x = n > 1 ? p[1] : 0;
            off = 2;
            if (x & 0x80) /* I: picture id, 7 or 15 bits */
                off += n > off && (p[off] & 0x80) ? 2 : 1;
            if (x & 0x40) /* L: TL0PICIDX */
                off++;
            if (x & 0x30) /* T or K */
                off++;
        }
        key = n > off && (p[off] & 0x01) == 0;
    }
    gst_rtp_buffer_unmap(&rtp);
    return key;
}

static GstFlowReturn
on_sample(GstAppSink *sink, gpointer data)
{
    Branch *b = data;
    RecRecording *rec = b->rec;
    g_autoptr(GstSample) sample = gst_app_sink_pull_sample(sink);
    if (!sample)
        return GST_FLOW_OK;
    GstBuffer *in = gst_sample_get_buffer(sample);
    GstClockTime pts = GST_BUFFER_PTS(in);
    if (!GST_CLOCK_TIME_IS_VALID(pts))
        return GST_FLOW_OK;
    /* The file starts at the first video keyframe: audio before it would
     * make a file whose video begins late, which Chromium seeks badly in. */
    gint64 expect = -1;
    if (b->kind == KIND_VIDEO && __atomic_load_n(&rec->base, __ATOMIC_ACQUIRE) < 0 &&
        vp8_keyframe_start(in) &&
        __atomic_compare_exchange_n(&rec->base, &expect, (gint64)pts, FALSE,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        __atomic_store_n(&rec->started_at, g_get_real_time() / 1000, __ATOMIC_RELEASE);
    gint64 base = __atomic_load_n(&rec->base, __ATOMIC_ACQUIRE);
    if (base < 0 || (gint64)pts < base)
        return GST_FLOW_OK;
    if (!g_atomic_int_get(&b->caps_set)) {
        GstCaps *caps = gst_sample_get_caps(sample);
        if (caps) {
            gst_app_src_set_caps(GST_APP_SRC(b->appsrc), caps);
            g_atomic_int_set(&b->caps_set, 1);
        }
    }
    GstBuffer *out = gst_buffer_copy(in); /* metadata copy; memory shared */
    GST_BUFFER_PTS(out) = pts - base;
    GST_BUFFER_DTS(out) = GST_CLOCK_TIME_NONE;
    /* Ignoring the result is the isolation: see the top of recorder.h. */
    gst_app_src_push_buffer(GST_APP_SRC(b->appsrc), out);
    return GST_FLOW_OK;
}

void
rec_request_keyframe(RecRecording *rec)
{
    rec_tap_request_keyframe(&rec->br[KIND_VIDEO].tap);
}

static gboolean
on_bus(GstBus *bus, GstMessage *msg, gpointer data);

/* Recordings not yet finished (main loop only): what rec_abort_all()
 * stops when the process is about to exit. */
static GList *live;

/* Frees REC, its pipeline already in NULL. */
static void
rec_release(RecRecording *rec)
{
    live = g_list_remove(live, rec);
    for (int k = 0; k < N_KINDS; k++)
        gst_object_unref(rec->br[k].appsrc);
    gst_object_unref(rec->pipe);
    g_free(rec->error);
    g_free(rec->path);
    g_free(rec);
}

void
rec_abort_all(void)
{
    while (live) {
        RecRecording *rec = live->data;
        g_clear_handle_id(&rec->eos_timer, g_source_remove);
        g_clear_handle_id(&rec->bus_watch, g_source_remove);
        for (int k = 0; k < N_KINDS; k++)
            rec_tap_detach(&rec->br[k].tap);
        gst_element_set_state(rec->pipe, GST_STATE_NULL);
        g_message("recording %s: left for repair (the process is exiting)", rec->path);
        rec_release(rec);
    }
}

RecRecording *
rec_start(GstElement *room_pipe, GstElement *tee_video, GstElement *tee_audio,
          const char *path, GError **error)
{
    g_autofree char *dir = g_path_get_dirname(path);
    if (g_mkdir_with_parents(dir, 0750) != 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "cannot create %s", dir);
        return NULL;
    }
    g_autofree char *esc = g_strescape(path, NULL);
    g_autofree char *desc = g_strdup_printf(
        "appsrc name=v is-live=true format=time do-timestamp=false block=false "
        "  max-buffers=2000 leaky-type=downstream "
        "! rtpvp8depay wait-for-keyframe=true request-keyframe=true ! mux. "
        "appsrc name=a is-live=true format=time do-timestamp=false block=false "
        "  max-buffers=2000 leaky-type=downstream "
        "! rtpopusdepay ! opusparse ! mux. "
        "webmmux name=mux streamable=false ! filesink location=\"%s\" buffer-mode=unbuffered "
        "  async=false sync=false", esc);
    GError *perr = NULL;
    GstElement *pipe = gst_parse_launch(desc, &perr);
    if (!pipe) {
        g_propagate_error(error, perr);
        return NULL;
    }
    if (perr)
        g_clear_error(&perr);
    RecRecording *rec = g_new0(RecRecording, 1);
    live = g_list_prepend(live, rec);
    rec->path = g_strdup(path);
    rec->room_pipe = room_pipe;
    rec->pipe = pipe;
    rec->base = -1;
    GstElement *tees[N_KINDS] = {tee_video, tee_audio};
    const char *names[N_KINDS] = {"v", "a"};
    for (int k = 0; k < N_KINDS; k++) {
        Branch *b = &rec->br[k];
        b->rec = rec;
        b->kind = k;
        b->tee = tees[k];
        b->appsrc = gst_bin_get_by_name(GST_BIN(pipe), names[k]); /* a ref */
    }
    GstBus *bus = gst_pipeline_get_bus(GST_PIPELINE(pipe));
    rec->bus_watch = gst_bus_add_watch(bus, on_bus, rec);
    gst_object_unref(bus);
    if (gst_element_set_state(pipe, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "cannot open %s for writing", path);
        g_source_remove(rec->bus_watch);
        gst_element_set_state(pipe, GST_STATE_NULL);
        rec_release(rec);
        return NULL;
    }
    for (int k = 0; k < N_KINDS; k++)
        rec_tap_attach(&rec->br[k].tap, room_pipe, rec->br[k].tee, 256, on_sample, &rec->br[k]);
    rec_request_keyframe(rec);
    return rec;
}

/* ------------------------------------------------------------- stopping */

typedef struct {
    char *in, *out;
    RecDone done;
    gpointer data;
    const char *state;
    char *reason;
    gint64 duration_ms, size;
} Finish;

static void
finish_thread(GTask *task, gpointer src, gpointer data, GCancellable *c)
{
    Finish *f = data;
    g_autoptr(GError) err = NULL;
    f->state = rec_finalize_file(f->in, f->out, &f->duration_ms, &f->size, &err);
    if (err)
        f->reason = g_strdup(err->message);
    g_task_return_boolean(task, TRUE);
}

static void
finish_done(GObject *src, GAsyncResult *res, gpointer data)
{
    Finish *f = data;
    if (!strcmp(f->state, "ready")) {
        /* The finalized file replaces the raw one under the final name. */
        if (g_rename(f->out, f->in) != 0) {
            f->state = "failed";
            g_free(f->reason);
            f->reason = g_strdup("cannot rename the finalized file");
        }
    } else {
        g_unlink(f->out);
        if (!strcmp(f->state, "empty"))
            g_unlink(f->in);
    }
    f->done(f->data, f->in, f->state, f->reason, f->duration_ms, f->size);
    g_free(f->in);
    g_free(f->out);
    g_free(f->reason);
    g_free(f);
}

static void
rec_finish(RecRecording *rec)
{
    g_clear_handle_id(&rec->eos_timer, g_source_remove);
    g_clear_handle_id(&rec->bus_watch, g_source_remove);
    gst_element_set_state(rec->pipe, GST_STATE_NULL);
    gboolean got_media = rec_started_at(rec) != 0;
    Finish *f = g_new0(Finish, 1);
    f->in = g_strdup(rec->path);
    f->out = g_strconcat(rec->path, ".final", NULL);
    f->done = rec->done;
    f->data = rec->done_data;
    rec_release(rec);
    if (!got_media) {
        f->state = "empty";
        finish_done(NULL, NULL, f);
        return;
    }
    GTask *task = g_task_new(NULL, NULL, finish_done, f);
    g_task_set_task_data(task, f, NULL);
    g_task_run_in_thread(task, finish_thread);
    g_object_unref(task);
}

static gboolean
on_bus(GstBus *bus, GstMessage *msg, gpointer data)
{
    RecRecording *rec = data;
    switch (GST_MESSAGE_TYPE(msg)) {
    case GST_MESSAGE_EOS:
        if (rec->stopping) {
            rec->bus_watch = 0;
            rec_finish(rec);
            return G_SOURCE_REMOVE;
        }
        break;
    case GST_MESSAGE_ERROR: {
        g_autoptr(GError) err = NULL;
        gst_message_parse_error(msg, &err, NULL);
        /* The recording stops writing; the live consultation goes on. */
        g_warning("recording %s: %s", rec->path, err->message);
        if (!rec->error)
            rec->error = g_strdup(err->message);
        if (rec->stopping) {
            rec->bus_watch = 0;
            rec_finish(rec);
            return G_SOURCE_REMOVE;
        }
        break;
    }
    default:
        break;
    }
    return G_SOURCE_CONTINUE;
}

static gboolean
eos_timeout(gpointer data)
{
    RecRecording *rec = data;
    rec->eos_timer = 0;
    g_warning("recording %s: no EOS in time; finalizing what was written", rec->path);
    rec_finish(rec);
    return G_SOURCE_REMOVE;
}

void
rec_stop(RecRecording *rec, guint timeout_ms, RecDone done, gpointer data)
{
    g_return_if_fail(!rec->stopping);
    rec->stopping = TRUE;
    rec->done = done;
    rec->done_data = data;
    for (int k = 0; k < N_KINDS; k++) {
        rec_tap_detach(&rec->br[k].tap);
        gst_app_src_end_of_stream(GST_APP_SRC(rec->br[k].appsrc));
    }
    if (rec->error) {
        rec_finish(rec); /* a failed pipeline will not deliver EOS */
        return;
    }
    rec->eos_timer = g_timeout_add(timeout_ms, eos_timeout, rec);
}

/* ----------------------------------------------------------- finalizing */

static void
on_demux_pad(GstElement *demux, GstPad *pad, gpointer data)
{
    GstElement *mux = data;
    GstElement *pipe = GST_ELEMENT(gst_element_get_parent(demux));
    g_autoptr(GstCaps) caps = gst_pad_get_current_caps(pad);
    const char *name = caps ? gst_structure_get_name(gst_caps_get_structure(caps, 0)) : "";
    const char *templ = g_str_has_prefix(name, "video/") ? "video_%u"
                      : g_str_has_prefix(name, "audio/") ? "audio_%u" : NULL;
    if (templ) {
        /* Unbounded: the muxer waits for data on every pad, and a stream
         * that starts later than the other (video waits for a keyframe)
         * would otherwise fill a bounded queue and deadlock the remux. */
        GstElement *q = gst_element_factory_make("queue", NULL);
        g_object_set(q, "max-size-buffers", 0, "max-size-bytes", 0, "max-size-time",
                     (guint64)0, NULL);
        gst_bin_add(GST_BIN(pipe), q);
        gst_element_sync_state_with_parent(q);
        GstPad *qs = gst_element_get_static_pad(q, "sink");
        gst_pad_link(pad, qs);
        gst_object_unref(qs);
        GstPad *mp = gst_element_request_pad_simple(mux, templ);
        GstPad *qo = gst_element_get_static_pad(q, "src");
        gst_pad_link(qo, mp);
        gst_object_unref(qo);
        gst_object_unref(mp);
    }
    gst_object_unref(pipe);
}

/* Runs PIPE to EOS or error; TRUE on EOS. */
static gboolean
run_to_eos(GstElement *pipe, GError **error)
{
    GstBus *bus = gst_pipeline_get_bus(GST_PIPELINE(pipe));
    gst_element_set_state(pipe, GST_STATE_PLAYING);
    GstMessage *msg = gst_bus_timed_pop_filtered(bus, 300 * GST_SECOND,
                                                 GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
    gboolean ok = msg && GST_MESSAGE_TYPE(msg) == GST_MESSAGE_EOS;
    if (!ok) {
        GError *e = NULL;
        if (msg)
            gst_message_parse_error(msg, &e, NULL);
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s",
                    e ? e->message : "timed out");
        g_clear_error(&e);
    }
    if (msg)
        gst_message_unref(msg);
    gst_element_set_state(pipe, GST_STATE_NULL);
    gst_object_unref(bus);
    return ok;
}

const char *
rec_finalize_file(const char *in, const char *out, gint64 *duration_ms, gint64 *size,
                  GError **error)
{
    *duration_ms = *size = 0;
    GStatBuf st;
    if (g_stat(in, &st) != 0 || st.st_size < 64)
        return "empty"; /* nothing, or not even a header */
    GstElement *pipe = gst_pipeline_new("finalize");
    GstElement *src = gst_element_factory_make("filesrc", NULL);
    GstElement *demux = gst_element_factory_make("matroskademux", NULL);
    GstElement *mux = gst_element_factory_make("webmmux", NULL);
    GstElement *sink = gst_element_factory_make("filesink", NULL);
    g_object_set(src, "location", in, NULL);
    g_object_set(sink, "location", out, NULL);
    gst_bin_add_many(GST_BIN(pipe), src, demux, mux, sink, NULL);
    gst_element_link(src, demux);
    gst_element_link(mux, sink);
    g_signal_connect(demux, "pad-added", G_CALLBACK(on_demux_pad), mux);
    g_autoptr(GError) err = NULL;
    gboolean ok = run_to_eos(pipe, &err);
    gst_object_unref(pipe);
    /* A file cut short by a crash ends in an error after its last complete
     * cluster; what was remuxed up to there is still good. */
    GStatBuf ost;
    if (!ok && (g_stat(out, &ost) != 0 || ost.st_size < 64)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "remux failed: %s",
                    err ? err->message : "no output");
        return "failed";
    }
    /* Check the result decodes and read its duration and streams. */
    g_autoptr(GstDiscoverer) disc = gst_discoverer_new(30 * GST_SECOND, error);
    if (!disc)
        return "failed";
    g_autofree char *uri = gst_filename_to_uri(out, NULL);
    g_autoptr(GstDiscovererInfo) info = gst_discoverer_discover_uri(disc, uri, error);
    if (!info || gst_discoverer_info_get_result(info) != GST_DISCOVERER_OK) {
        if (error && !*error)
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "the remuxed file does not decode");
        return "failed";
    }
    GstClockTime d = gst_discoverer_info_get_duration(info);
    *duration_ms = GST_CLOCK_TIME_IS_VALID(d) ? (gint64)(d / GST_MSECOND) : 0;
    g_stat(out, &ost);
    *size = ost.st_size;
    if (*duration_ms == 0)
        return "empty";
    return "ready";
}

/* ------------------------------------------------------------ composing */

typedef struct {
    GstElement *pipe, *vmix, *amix;
    gint64 offset_ns;
    guint index;
} ComposeInput;

static void
on_decoded_pad(GstElement *dec, GstPad *pad, gpointer data)
{
    ComposeInput *in = data;
    g_autoptr(GstCaps) caps = gst_pad_get_current_caps(pad);
    if (!caps)
        caps = gst_pad_query_caps(pad, NULL);
    const char *name = gst_structure_get_name(gst_caps_get_structure(caps, 0));
    gboolean video = g_str_has_prefix(name, "video/");
    if (!video && !g_str_has_prefix(name, "audio/"))
        return;
    const char *chain = video
        ? "videoconvert ! videoscale ! videorate ! video/x-raw,width=640,height=480,framerate=30/1"
        : "audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=2";
    GstElement *bin = gst_parse_bin_from_description(chain, TRUE, NULL);
    gst_bin_add(GST_BIN(in->pipe), bin);
    gst_element_sync_state_with_parent(bin);
    GstPad *sink = gst_element_get_static_pad(bin, "sink");
    gst_pad_link(pad, sink);
    gst_object_unref(sink);
    GstPad *src = gst_element_get_static_pad(bin, "src");
    /* Place this participant on the common timeline. */
    gst_pad_set_offset(src, in->offset_ns);
    GstPad *mp = gst_element_request_pad_simple(video ? in->vmix : in->amix, "sink_%u");
    if (video)
        g_object_set(mp, "xpos", (int)(640 * in->index), "ypos", 0, NULL);
    gst_pad_link(src, mp);
    gst_object_unref(src);
    gst_object_unref(mp);
}

gboolean
rec_compose(const char *const *inputs, const gint64 *offsets_ms, guint n_inputs,
            const char *out, void (*progress)(int percent, gpointer data), gpointer data,
            gint64 *duration_ms, gint64 *size, GError **error)
{
    *duration_ms = *size = 0;
    g_autofree char *esc = g_strescape(out, NULL);
    g_autofree char *desc = g_strdup_printf(
        "compositor name=vmix background=black ! video/x-raw,width=%u,height=480 ! "
        "videoconvert ! vp8enc deadline=1 cpu-used=8 target-bitrate=1200000 threads=1 ! "
        "queue ! mux. audiomixer name=amix ! audioconvert ! opusenc ! queue ! mux. "
        "webmmux name=mux ! filesink location=\"%s\"", 640 * MAX(n_inputs, 1), esc);
    GError *perr = NULL;
    GstElement *pipe = gst_parse_launch(desc, &perr);
    if (!pipe) {
        g_propagate_error(error, perr);
        return FALSE;
    }
    g_clear_error(&perr);
    GstElement *vmix = gst_bin_get_by_name(GST_BIN(pipe), "vmix");
    GstElement *amix = gst_bin_get_by_name(GST_BIN(pipe), "amix");
    ComposeInput *ins = g_new0(ComposeInput, n_inputs);
    gint64 total_ms = 0;
    for (guint i = 0; i < n_inputs; i++) {
        ins[i] = (ComposeInput){pipe, vmix, amix, offsets_ms[i] * GST_MSECOND, i};
        GstElement *src = gst_element_factory_make("filesrc", NULL);
        GstElement *dec = gst_element_factory_make("decodebin", NULL);
        g_object_set(src, "location", inputs[i], NULL);
        gst_bin_add_many(GST_BIN(pipe), src, dec, NULL);
        gst_element_link(src, dec);
        g_signal_connect(dec, "pad-added", G_CALLBACK(on_decoded_pad), &ins[i]);
    }
    GstBus *bus = gst_pipeline_get_bus(GST_PIPELINE(pipe));
    gst_element_set_state(pipe, GST_STATE_PLAYING);
    gboolean ok = FALSE, done = FALSE;
    while (!done) {
        GstMessage *msg = gst_bus_timed_pop_filtered(bus, GST_SECOND,
                                                     GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
        if (msg && GST_MESSAGE_TYPE(msg) == GST_MESSAGE_EOS) {
            ok = done = TRUE;
        } else if (msg) {
            GError *e = NULL;
            gst_message_parse_error(msg, &e, NULL);
            g_propagate_error(error, e);
            done = TRUE;
        } else if (progress) {
            gint64 pos = 0, dur = 0;
            if (gst_element_query_position(pipe, GST_FORMAT_TIME, &pos) &&
                gst_element_query_duration(pipe, GST_FORMAT_TIME, &dur) && dur > 0) {
                total_ms = dur / GST_MSECOND;
                progress((int)MIN(99, 100 * pos / dur), data);
            }
        }
        if (msg)
            gst_message_unref(msg);
    }
    gst_element_set_state(pipe, GST_STATE_NULL);
    gst_object_unref(bus);
    gst_object_unref(vmix);
    gst_object_unref(amix);
    gst_object_unref(pipe);
    g_free(ins);
    if (!ok)
        return FALSE;
    GStatBuf st;
    if (g_stat(out, &st) == 0)
        *size = st.st_size;
    g_autoptr(GstDiscoverer) disc = gst_discoverer_new(30 * GST_SECOND, NULL);
    g_autofree char *uri = gst_filename_to_uri(out, NULL);
    g_autoptr(GstDiscovererInfo) info = disc ? gst_discoverer_discover_uri(disc, uri, NULL) : NULL;
    *duration_ms = info ? (gint64)(gst_discoverer_info_get_duration(info) / GST_MSECOND) : total_ms;
    if (progress)
        progress(100, data);
    return TRUE;
}
