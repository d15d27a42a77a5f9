/* tap.c - see tap.h. */
#include "tap.h"

#include <gst/video/video.h>

void
rec_tap_attach(RecTap *t, GstElement *pipe, GstElement *tee, guint max_buffers,
               RecTapFunc on_sample, gpointer data)
{
    g_return_if_fail(t->sink == NULL);
    t->pipe = pipe;
    t->tee = tee;
    t->sink = gst_element_factory_make("appsink", NULL);
    g_object_set(t->sink, "sync", FALSE, "async", FALSE, "max-buffers", max_buffers, "drop",
                 TRUE, "enable-last-sample", FALSE, NULL);
    GstAppSinkCallbacks cb = {.new_sample = on_sample};
    gst_app_sink_set_callbacks(GST_APP_SINK(t->sink), &cb, data, NULL);
    gst_bin_add(GST_BIN(pipe), t->sink);
    gst_element_sync_state_with_parent(t->sink);
    t->pad = gst_element_request_pad_simple(tee, "src_%u");
    GstPad *sp = gst_element_get_static_pad(t->sink, "sink");
    gst_pad_link(t->pad, sp);
    gst_object_unref(sp);
}

void
rec_tap_detach(RecTap *t)
{
    if (!t->sink)
        return;
    GstPad *sp = gst_element_get_static_pad(t->sink, "sink");
    gst_pad_unlink(t->pad, sp);
    gst_object_unref(sp);
    gst_element_release_request_pad(t->tee, t->pad);
    g_clear_object(&t->pad);
    gst_element_set_state(t->sink, GST_STATE_NULL);
    gst_bin_remove(GST_BIN(t->pipe), t->sink);
    t->sink = NULL;
}

static gboolean
send_upstream(RecTap *t, GstEvent *ev)
{
    GstElement *sink = t->sink ? gst_object_ref(t->sink) : NULL;
    if (!sink) {
        gst_event_unref(ev);
        return FALSE;
    }
    GstPad *sp = gst_element_get_static_pad(sink, "sink");
    gst_pad_push_event(sp, ev);
    gst_object_unref(sp);
    gst_object_unref(sink);
    return TRUE;
}

gboolean
rec_tap_request_keyframe(RecTap *t)
{
    return send_upstream(
        t, gst_video_event_new_upstream_force_key_unit(GST_CLOCK_TIME_NONE, TRUE, 0));
}
